//! Checkpoints in the state directory: what survives a crash, what is
//! refused, and vertex state that resumes where it left off.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tandem::checkpoint::sim::{Damage, FailAfter, SimDisk};
use tandem::checkpoint::{
    capture, file_name, restore, Checkpoint, CheckpointStore, FormatError, GraphStamp, Refusal,
    Storage,
};
use tandem_core::{
    BuildContext, Builder, ChannelId, ChannelTable, EventTime, ParamValue, Params, Record,
    SchemaId, Seq, Snapshot, SnapshotError, Vertex,
};

const HOUR_NS: i64 = 3_600_000_000_000;
const IN: ChannelId = ChannelId(0);
const OUT: ChannelId = ChannelId(1);

/// A state directory of its own under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir =
            std::env::temp_dir().join(format!("tandem-checkpoint-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn stamp() -> GraphStamp {
    GraphStamp {
        name: "home".to_owned(),
        hash: 0x5eed_cafe_f00d_0001,
    }
}

/// A checkpoint whose one snapshot says which sequence number it was taken at.
fn checkpoint(seq: u64) -> Checkpoint {
    let mut vertices = BTreeMap::new();
    vertices.insert(
        "energy".to_owned(),
        Snapshot {
            schema: SchemaId(9001),
            payload: (seq as f64).to_le_bytes().to_vec(),
        },
    );
    Checkpoint {
        graph: stamp(),
        seq: Seq(seq),
        vertices,
    }
}

fn names(store: &mut CheckpointStore<SimDisk>) -> Vec<String> {
    let dir = store.dir().to_path_buf();
    store.storage_mut().names_in(&dir)
}

// ---------------------------------------------------------------- store

#[test]
fn round_trip_on_the_real_file_system() {
    let tmp = TempDir::new("round-trip");
    let mut store = CheckpointStore::open(&tmp.0).unwrap();
    assert!(store.load_latest().unwrap().latest.is_none());

    let path = store.save(&checkpoint(42)).unwrap();
    assert_eq!(path, tmp.0.join("ckpt-00000000000000000042.tdc"));

    // A new process: a new store over the same directory.
    let mut again = CheckpointStore::open(&tmp.0).unwrap();
    let recovery = again.load_latest().unwrap();
    let (from, loaded) = recovery.latest.unwrap();
    assert_eq!(from, path);
    assert_eq!(loaded, checkpoint(42));
    assert!(recovery.skipped.is_empty());
    let left: Vec<String> = std::fs::read_dir(&tmp.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(left, ["ckpt-00000000000000000042.tdc"]);
}

#[test]
fn keeps_the_newest_three_by_default_and_k_when_told() {
    let mut store = CheckpointStore::with_storage("state", SimDisk::new());
    for seq in [5, 10, 15, 20, 25] {
        store.save(&checkpoint(seq)).unwrap();
    }
    assert_eq!(
        names(&mut store),
        [file_name(Seq(15)), file_name(Seq(20)), file_name(Seq(25))]
    );

    let mut store = CheckpointStore::with_storage("state", SimDisk::new()).keep(1);
    for seq in [5, 10, 15] {
        store.save(&checkpoint(seq)).unwrap();
    }
    assert_eq!(names(&mut store), [file_name(Seq(15))]);
    assert_eq!(
        store.load_latest().unwrap().checkpoint(),
        Some(&checkpoint(15))
    );
}

#[test]
fn other_files_in_the_state_directory_are_left_alone() {
    let tmp = TempDir::new("strays");
    std::fs::create_dir_all(&tmp.0).unwrap();
    std::fs::write(tmp.0.join("notes.txt"), b"mine").unwrap();
    std::fs::write(
        tmp.0.join("ckpt-00000000000000000007.tdc.tmp"),
        b"TDCK half",
    )
    .unwrap();
    let mut store = CheckpointStore::open(&tmp.0).unwrap().keep(1);
    store.save(&checkpoint(3)).unwrap();
    store.save(&checkpoint(4)).unwrap();

    let recovery = store.load_latest().unwrap();
    assert_eq!(recovery.checkpoint(), Some(&checkpoint(4)));
    assert_eq!(
        recovery.cleaned,
        [tmp.0.join("ckpt-00000000000000000007.tdc.tmp")]
    );
    let mut left: Vec<String> = std::fs::read_dir(&tmp.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(left, ["ckpt-00000000000000000004.tdc", "notes.txt"]);
}

#[test]
fn a_missing_state_directory_is_an_error_that_says_what_to_check() {
    let mut store = CheckpointStore::with_storage("state", FailAfter::new(SimDisk::new(), 0));
    let err = store.load_latest().unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot list state: injected failure after 0 operations; check that the state \
         directory exists, is writable and has free space"
    );
    let err = store.save(&checkpoint(1)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot create state/ckpt-00000000000000000001.tdc.tmp: injected failure after 0 \
         operations; check that the state directory exists, is writable and has free space"
    );
}

// ---------------------------------------------------------------- crashes

/// Saves `seq` on `disk`, with every operation after the first `n` failing,
/// then checks every disk a crash at that moment could leave: the newest
/// checkpoint that loads is the one before or the new one, never nothing when
/// something was there before, and the new one whenever `save` said so.
/// Returns whether the save ran to completion.
fn crash_while_saving(disk: &SimDisk, before: Option<u64>, seq: u64, n: usize) -> bool {
    let mut store = CheckpointStore::with_storage("state", FailAfter::new(disk.clone(), n));
    let result = store.save(&checkpoint(seq));
    let storage = store.into_storage();
    let finished = storage.done() < n;
    let inner = storage.into_inner();
    for (i, image) in inner.crash_images().into_iter().enumerate() {
        let mut store = CheckpointStore::with_storage("state", image);
        let recovery = store.load_latest().unwrap();
        let loaded = recovery.checkpoint().map(|c| c.seq.0);
        let ctx = format!("crash after {n} operations, image {i}, save said {result:?}");
        if result.is_ok() {
            assert_eq!(loaded, Some(seq), "{ctx}");
        } else {
            assert!(
                loaded == before || loaded == Some(seq),
                "{ctx}: loaded {loaded:?}"
            );
        }
        if let Some(c) = recovery.checkpoint() {
            assert_eq!(*c, checkpoint(c.seq.0), "{ctx}");
        }
        assert!(
            names(&mut store).iter().all(|n| !n.ends_with(".tmp")),
            "{ctx}: temp file left after load"
        );
    }
    finished
}

#[test]
fn a_crash_at_any_operation_of_a_save_leaves_the_old_or_the_new_checkpoint() {
    let mut store = CheckpointStore::with_storage("state", SimDisk::new()).keep(2);
    store.save(&checkpoint(10)).unwrap();
    store.save(&checkpoint(20)).unwrap();
    let disk = store.into_storage();
    let mut n = 0;
    while !crash_while_saving(&disk, Some(20), 30, n) {
        n += 1;
        assert!(n < 100, "save never finished");
    }
    // create, write, fsync, rename, fsync dir, list, remove: every one was cut.
    assert!(n >= 7, "only {n} operations were tried");
}

#[test]
fn a_crash_during_the_first_save_leaves_nothing_or_the_new_checkpoint() {
    let disk = SimDisk::new();
    let mut n = 0;
    while !crash_while_saving(&disk, None, 1, n) {
        n += 1;
        assert!(n < 100, "save never finished");
    }
}

#[test]
fn a_crash_just_after_a_save_returned_keeps_it() {
    let mut store = CheckpointStore::with_storage("state", SimDisk::new());
    store.save(&checkpoint(1)).unwrap();
    store.save(&checkpoint(2)).unwrap();
    for image in store.storage_mut().crash_images() {
        let mut after = CheckpointStore::with_storage("state", image);
        assert_eq!(
            after.load_latest().unwrap().checkpoint(),
            Some(&checkpoint(2))
        );
    }
}

// ---------------------------------------------------------------- damage

/// Three checkpoints saved, then the newest damaged.
fn damaged_newest(damage: Damage) -> CheckpointStore<SimDisk> {
    let mut store = CheckpointStore::with_storage("state", SimDisk::new());
    for seq in [41, 42, 43] {
        store.save(&checkpoint(seq)).unwrap();
    }
    let newest = PathBuf::from("state").join(file_name(Seq(43)));
    store.storage_mut().damage(&newest, damage).unwrap();
    store
}

fn newest_len() -> usize {
    tandem::checkpoint::format::encode(&checkpoint(43)).len()
}

#[test]
fn a_truncated_newest_checkpoint_is_refused_and_the_previous_used() {
    let mut store = damaged_newest(Damage::Truncate(50));
    let recovery = store.load_latest().unwrap();
    assert_eq!(recovery.checkpoint(), Some(&checkpoint(42)));
    assert_eq!(recovery.skipped.len(), 1);
    assert_eq!(
        recovery.skipped[0].to_string(),
        format!(
            "checkpoint state/ckpt-00000000000000000043.tdc is truncated: 50 bytes, the header \
             says {}; using the previous checkpoint ckpt-00000000000000000042.tdc",
            newest_len()
        )
    );
}

#[test]
fn a_newest_checkpoint_with_a_zeroed_tail_is_refused_as_corrupt() {
    let mut store = damaged_newest(Damage::ZeroFrom(45));
    let recovery = store.load_latest().unwrap();
    assert_eq!(recovery.checkpoint(), Some(&checkpoint(42)));
    let msg = recovery.skipped[0].to_string();
    assert!(
        msg.starts_with("checkpoint state/ckpt-00000000000000000043.tdc fails its checksum"),
        "{msg}"
    );
    assert!(
        msg.ends_with(
            "the file is corrupt; using the previous checkpoint ckpt-00000000000000000042.tdc"
        ),
        "{msg}"
    );
}

#[test]
fn every_bit_flip_in_the_newest_checkpoint_falls_back_to_the_previous() {
    for bit in 0..newest_len() * 8 {
        let mut store = damaged_newest(Damage::FlipBit(bit));
        let recovery = store.load_latest().unwrap();
        assert_eq!(
            recovery.checkpoint(),
            Some(&checkpoint(42)),
            "bit {bit} flipped"
        );
        assert!(
            matches!(recovery.skipped[0].reason, Refusal::Format(_)),
            "bit {bit}"
        );
    }
}

#[test]
fn refusals_go_back_as_far_as_needed_and_say_when_nothing_is_left() {
    let mut store = damaged_newest(Damage::Truncate(0));
    let middle = PathBuf::from("state").join(file_name(Seq(42)));
    store
        .storage_mut()
        .damage(&middle, Damage::FlipBit(200))
        .unwrap();
    let recovery = store.load_latest().unwrap();
    assert_eq!(recovery.checkpoint(), Some(&checkpoint(41)));
    let paths: Vec<&Path> = recovery.skipped.iter().map(|s| s.path.as_path()).collect();
    assert_eq!(
        paths,
        [
            Path::new("state/ckpt-00000000000000000043.tdc"),
            Path::new("state/ckpt-00000000000000000042.tdc")
        ]
    );
    assert!(matches!(
        recovery.skipped[0].reason,
        Refusal::Format(FormatError::ShortHeader { got: 0 })
    ));

    let oldest = PathBuf::from("state").join(file_name(Seq(41)));
    store
        .storage_mut()
        .damage(&oldest, Damage::Truncate(3))
        .unwrap();
    let recovery = store.load_latest().unwrap();
    assert!(recovery.latest.is_none());
    assert_eq!(recovery.skipped.len(), 3);
    assert_eq!(
        recovery.skipped[2].to_string(),
        "checkpoint state/ckpt-00000000000000000041.tdc is truncated: 3 bytes, shorter than \
         the 40-byte header; no older checkpoint verifies, so vertex state starts empty"
    );
}

// ---------------------------------------------------------------- vertices

fn integrate() -> Box<dyn Vertex> {
    let kind = tandem_nodes::registry()
        .get("integrate", Some(1))
        .expect("integrate is registered");
    let mut params = Params::new();
    params.insert("per", ParamValue::Text("h".to_owned()));
    params.insert("max_gap", ParamValue::Duration(2 * HOUR_NS));
    let channels = Arc::new(ChannelTable::new());
    let ctx = BuildContext {
        id: "energy",
        params: &params,
        inputs: &[IN],
        outputs: &[OUT],
        channels: &channels,
    };
    match kind.build {
        Builder::Vertex(build) => build(&ctx).expect("integrate builds"),
        _ => panic!("integrate is a vertex"),
    }
}

/// Power samples, one per hour from `from_hour`, with sequence numbers to match.
fn power(from_hour: i64, watts: &[f64]) -> Vec<Record> {
    watts
        .iter()
        .enumerate()
        .map(|(i, &w)| {
            let h = from_hour + i as i64;
            Record::new(Seq(h as u64 + 1), EventTime(h * HOUR_NS), IN, w)
        })
        .collect()
}

fn totals(vertex: &mut dyn Vertex, input: &[Record]) -> Vec<f64> {
    let mut out = Vec::new();
    vertex.process(input, &mut out);
    out.iter().map(|r| r.value).collect()
}

/// A stateful test vertex keeping a running sum as 8 little-endian bytes.
struct Sum(f64);

impl Vertex for Sum {
    fn process(&mut self, input: &[Record], _out: &mut Vec<Record>) {
        self.0 += input.iter().map(|r| r.value).sum::<f64>();
    }
    fn snapshot(&self) -> Option<Snapshot> {
        Some(Snapshot {
            schema: SchemaId(9001),
            payload: self.0.to_le_bytes().to_vec(),
        })
    }
    fn restore(&mut self, snapshot: &Snapshot) -> Result<(), SnapshotError> {
        if snapshot.schema != SchemaId(9001) {
            return Err(SnapshotError::SchemaMismatch {
                expected: SchemaId(9001),
                found: snapshot.schema,
            });
        }
        let bytes: [u8; 8] = snapshot.payload.as_slice().try_into().map_err(|_| {
            SnapshotError::Invalid(format!("{} bytes, expected 8", snapshot.payload.len()))
        })?;
        self.0 = f64::from_le_bytes(bytes);
        Ok(())
    }
}

/// A stateless test vertex.
struct Pass;

impl Vertex for Pass {
    fn process(&mut self, input: &[Record], out: &mut Vec<Record>) {
        out.extend_from_slice(input);
    }
}

#[test]
fn an_energy_integrator_continues_from_its_total_after_every_process_is_killed() {
    let tmp = TempDir::new("integrate");
    let first = power(0, &[1000.0, 1000.0, 3000.0]);
    let second = power(3, &[1000.0, 0.0]);

    // The gateway runs, checkpoints at the barrier after seq 3, then loses power.
    {
        let mut graph: BTreeMap<String, Box<dyn Vertex>> = BTreeMap::new();
        graph.insert("energy".to_owned(), integrate());
        graph.insert("pass".to_owned(), Box::new(Pass));
        let energy = graph.get_mut("energy").unwrap();
        assert_eq!(totals(energy.as_mut(), &first), [0.0, 1000.0, 3000.0]);
        let ckpt = capture(
            stamp(),
            Seq(3),
            graph.iter().map(|(id, v)| (id.as_str(), v.as_ref())),
        );
        assert_eq!(ckpt.vertices.keys().collect::<Vec<_>>(), ["energy"]);
        CheckpointStore::open(&tmp.0).unwrap().save(&ckpt).unwrap();
    }

    // `tandem up` again: fresh vertices, state from the checkpoint.
    let mut graph: BTreeMap<String, Box<dyn Vertex>> = BTreeMap::new();
    graph.insert("energy".to_owned(), integrate());
    graph.insert("pass".to_owned(), Box::new(Pass));
    let recovery = CheckpointStore::open(&tmp.0)
        .unwrap()
        .load_latest()
        .unwrap();
    let ckpt = recovery.checkpoint().expect("the checkpoint is found");
    assert_eq!(ckpt.seq, Seq(3));
    let report = restore(
        ckpt,
        graph
            .iter_mut()
            .map(|(id, v)| (id.as_str(), v.as_mut() as &mut dyn Vertex)),
    );
    assert!(report.is_complete(), "{report}");
    assert_eq!(report.restored, ["energy"]);

    // 3000 Wh so far; (3000 + 1000) / 2 = 2000 Wh more, then (1000 + 0) / 2 = 500.
    let energy = graph.get_mut("energy").unwrap();
    assert_eq!(totals(energy.as_mut(), &second), [5000.0, 5500.0]);

    // Bit for bit what a run that never stopped gives.
    let mut unbroken = integrate();
    let all: Vec<Record> = first.iter().chain(&second).copied().collect();
    assert_eq!(totals(unbroken.as_mut(), &all)[3..], [5000.0, 5500.0]);

    // Without the checkpoint it would have started again from zero.
    assert_eq!(totals(integrate().as_mut(), &second), [0.0, 500.0]);
}

#[test]
fn restore_reports_vertices_missing_unknown_and_refusing() {
    let mut ckpt = checkpoint(7);
    ckpt.vertices.insert(
        "gone".to_owned(),
        Snapshot {
            schema: SchemaId(9001),
            payload: 1.0f64.to_le_bytes().to_vec(),
        },
    );
    ckpt.vertices.insert(
        "changed".to_owned(),
        Snapshot {
            schema: SchemaId(1),
            payload: vec![],
        },
    );
    let mut energy = Sum(0.0);
    let mut added = Sum(0.0);
    let mut changed = Sum(0.0);
    let mut pass = Pass;
    let vertices: Vec<(&str, &mut dyn Vertex)> = vec![
        ("energy", &mut energy),
        ("added", &mut added),
        ("changed", &mut changed),
        ("pass", &mut pass),
    ];
    let report = restore(&ckpt, vertices);
    assert_eq!(report.restored, ["energy"]);
    assert_eq!(report.missing, ["added"]);
    assert_eq!(report.unknown, ["gone"]);
    assert_eq!(report.refused.len(), 1);
    assert!(!report.is_complete());
    assert_eq!(
        report.to_string(),
        "vertex `added` has no state in the checkpoint; it starts empty\n\
         the checkpoint holds state for `gone`, which is not in the graph; it is ignored\n\
         vertex `changed` refused its checkpointed state: state schema 1 cannot be restored \
         into schema 9001; a migration from 1 is required; it starts empty\n\
         1 vertex resumed from the checkpoint"
    );
    assert_eq!(energy.0, 7.0);
    assert_eq!(changed.0, 0.0);
}

// ---------------------------------------------------------------- golden

/// Written by the first checkpoint format (version 1); must load forever, or
/// be refused by a later version with a message that says what to do.
const GOLDEN_V1: &[u8] = include_bytes!("data/ckpt-v1.tdc");

/// What the golden file holds: an `integrate` at 3000 Wh and a test sum.
fn golden_contents() -> Checkpoint {
    let mut energy = integrate();
    totals(energy.as_mut(), &power(0, &[1000.0, 1000.0, 3000.0]));
    let sum = Sum(12.5);
    capture(
        stamp(),
        Seq(3),
        [("energy", energy.as_ref()), ("sum", &sum as &dyn Vertex)],
    )
}

#[test]
fn a_checkpoint_written_by_format_1_still_loads_and_resumes() {
    let golden = tandem::checkpoint::format::decode(GOLDEN_V1).unwrap();
    assert_eq!(golden.graph, stamp());
    assert_eq!(golden.seq, Seq(3));
    assert_eq!(
        golden.vertices.keys().collect::<Vec<_>>(),
        ["energy", "sum"]
    );
    assert_eq!(golden, golden_contents());

    let mut energy = integrate();
    let mut sum = Sum(0.0);
    let report = restore(
        &golden,
        [
            ("energy", energy.as_mut()),
            ("sum", &mut sum as &mut dyn Vertex),
        ],
    );
    assert!(report.is_complete(), "{report}");
    assert_eq!(sum.0, 12.5);
    assert_eq!(totals(energy.as_mut(), &power(3, &[1000.0])), [5000.0]);
}

#[test]
fn format_1_is_still_what_this_build_writes() {
    // If this fails the format changed: bump FORMAT_VERSION, keep reading
    // version 1, and add a golden file for the new version.
    assert_eq!(
        tandem::checkpoint::format::encode(&golden_contents()),
        GOLDEN_V1
    );
}

#[test]
#[ignore = "writes the golden file; run once per new format version"]
fn write_golden_file() {
    // `cargo test -- --ignored` alone must not overwrite what older code wrote.
    if std::env::var_os("TANDEM_WRITE_GOLDEN").is_none() {
        return;
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/ckpt-v1.tdc");
    std::fs::write(path, tandem::checkpoint::format::encode(&golden_contents())).unwrap();
}

fn home_graph(edit: impl Fn(String) -> String) -> tandem_core::graph::Loaded {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../graphs/home.toml");
    let text = edit(std::fs::read_to_string(path).unwrap());
    tandem_core::graph::load("home.toml", text.as_bytes(), &tandem_nodes::registry()).unwrap()
}

#[test]
fn the_graph_stamp_changes_with_the_graph_but_not_with_its_layout() {
    let home = home_graph(|t| t);
    let stamp = GraphStamp::of_plan(&home.name, &home.plan);
    assert_eq!(stamp.name, "home");
    assert_eq!(stamp, GraphStamp::of_plan("home", &home_graph(|t| t).plan));
    for layout in [
        tandem_core::Layout::Single,
        tandem_core::Layout::Chains,
        tandem_core::Layout::Spread,
    ] {
        let relaid = home.plan.relayout(layout).unwrap();
        assert_eq!(GraphStamp::of_plan("home", &relaid), stamp, "{layout:?}");
    }
    let edited = home_graph(|t| t.replacen("initial_soc = 50", "initial_soc = 60", 1));
    assert_ne!(GraphStamp::of_plan("home", &edited.plan).hash, stamp.hash);
}

#[test]
fn the_storage_trait_is_usable_on_its_own() {
    // A test backend and the real one answer the same calls.
    let mut disk = SimDisk::new();
    let p = Path::new("d/f");
    disk.create(p).unwrap();
    disk.write(p, b"ab").unwrap();
    disk.write(p, b"c").unwrap();
    assert_eq!(disk.read(p).unwrap(), b"abc");
    disk.rename(p, Path::new("d/g")).unwrap();
    assert_eq!(disk.list(Path::new("d")).unwrap(), ["g"]);
    assert!(disk.read(p).is_err());
    disk.remove(Path::new("d/g")).unwrap();
    assert!(disk.list(Path::new("d")).unwrap().is_empty());
}
