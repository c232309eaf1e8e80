//! Origin sequence numbers after whole-gateway crashes: `tandem up` is
//! killed (SIGKILL; its instances die with it) five times while its output
//! is past the last checkpoint, and restarted on the same state directory
//! each time. A consumer that de-duplicates by (channel, seq) must never
//! see one pair twice with different data, and numbering must go on above
//! everything emitted before the crash.
//!
//! The ingress's side of it runs in process too, on a disk that can fail.
//!
//! Every wait is on an event (a status answer, the output file, a process
//! gone) with a bound.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use tandem::harness::proc::gone;
use tandem::harness::{Agent as _, Launcher, Scratch, Up, POLL};

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tandem::checkpoint::numbering::MarkFile;
use tandem::checkpoint::sim::SimDisk;
use tandem::checkpoint::{Reservation, Storage};
use tandem::topology::Attached;
use tandem::up::dirs::StateDir;
use tandem::{Clock, RunOptions, Topology};
use tandem_core::ha::Color;
use tandem_core::{EventTime, Record, Seq, Sink, SinkError};

/// The longest any one awaited event may take.
const LIMIT: Duration = Duration::from_secs(30);
/// How far past the newest checkpoint the output must be when the agent is killed.
const PAST_CHECKPOINT: u64 = 1000;

/// This file's graph and logs, in a test's directory.
trait Files {
    fn output(&self) -> PathBuf;
    fn log(&self, run: usize) -> PathBuf;
    fn graph(&self) -> PathBuf;
}

impl Files for Scratch {
    fn output(&self) -> PathBuf {
        self.0.join("out.csv")
    }

    fn log(&self, run: usize) -> PathBuf {
        self.0.join(format!("agent-{run}.log"))
    }

    /// Two synthetic channels at 2000 records/s each (a counter, so a
    /// record's value says which record of its run it is) and an integrator
    /// over one of them, all written to `out.csv`.
    fn graph(&self) -> PathBuf {
        let file = self.0.join("graph.toml");
        std::fs::write(
            &file,
            format!(
                r#"[graph]
name = "seqtest"

[ha]
timeout = "1s"

[sources.gen]
kind = "synthetic"
channels = ["a", "b"]
rate = 2000
shape = "counter"

[vertices.energy]
kind = "integrate"
inputs = ["gen.a"]

[sinks.out]
kind = "file"
inputs = ["gen.*", "energy"]
path = "{}"
format = "csv"
"#,
                self.output().display()
            ),
        )
        .unwrap();
        file
    }
}

/// `tandem up` with a checkpoint every 3 s, its stderr in `log`.
fn start(graph: &Path, state: &Path, log: &Path) -> Up {
    Launcher::new(env!("CARGO_BIN_EXE_tandem"), graph, state)
        .args(["--checkpoint-every", "3s"])
        .log_to(log)
        .bound(LIMIT)
        .spawn()
}

/// SIGKILL, then waits until the agent and `instances` are gone; its log.
fn kill(agent: Up, instances: &[i32]) -> String {
    let log = agent.kill();
    tandem::harness::wait_for(
        &format!("instances {instances:?} to die with their agent"),
        LIMIT,
        || log.clone(),
        || instances.iter().all(|&pid| gone(pid)).then_some(()),
    );
    log
}

/// The newest checkpoint either instance wrote, by sequence number.
fn newest_checkpoint(state: &Path) -> Option<u64> {
    Color::BOTH
        .into_iter()
        .flat_map(|color| std::fs::read_dir(StateDir::new(state).checkpoints(color)).into_iter())
        .flatten()
        .filter_map(|entry| {
            let name = entry.ok()?.file_name();
            Some(tandem::checkpoint::parse_file_name(name.to_str()?)?.0)
        })
        .max()
}

/// One output line: `seq,time_ns,channel,value,quality`.
#[derive(Clone, Debug, PartialEq)]
struct Row {
    seq: u64,
    channel: String,
    /// Everything but the key: time, value and quality, as written.
    data: String,
}

/// The rows one run wrote: the bytes from `from` on. Only the last line may
/// be cut short (by a SIGKILL), and it is left out; the header is skipped.
fn rows(bytes: &[u8], from: usize) -> Vec<Row> {
    let text = String::from_utf8_lossy(bytes.get(from..).unwrap_or_default());
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    complete
        .lines()
        .filter(|line| !line.is_empty() && !line.starts_with("seq,"))
        .map(|line| {
            let fields: Vec<&str> = line.split(',').collect();
            assert_eq!(fields.len(), 5, "a torn line inside a run: {line:?}");
            Row {
                seq: fields[0].parse().unwrap(),
                channel: fields[2].to_owned(),
                data: format!("{},{},{}", fields[1], fields[3], fields[4]),
            }
        })
        .collect()
}

fn file_len(path: &Path) -> usize {
    std::fs::metadata(path).map_or(0, |m| m.len() as usize)
}

#[test]
fn numbers_after_whole_gateway_crashes_are_never_reused() {
    let dir = Scratch::new("seq-crashes");
    let graph = dir.graph();
    let output = dir.output();
    // Where each run's output starts in the file.
    let mut starts = Vec::new();
    let mut logs = String::new();
    for run in 0..6 {
        let from = file_len(&output);
        starts.push(from);
        let before = newest_checkpoint(&dir.state());
        let agent = start(&graph, &dir.state(), &dir.log(run));
        let pids = agent.serving_pids(&[]);
        if run == 5 {
            agent.wait_until("output after the last restart", || {
                let bytes = std::fs::read(&output).ok()?;
                (rows(&bytes, from).len() > 2000).then_some(())
            });
            logs.push_str(&agent.stop_with(libc::SIGINT));
            break;
        }
        // A checkpoint of this run, then output well past it: a crash now
        // leaves records after the checkpoint that were emitted.
        agent.wait_until("a checkpoint of this run", || {
            newest_checkpoint(&dir.state()).filter(|&seq| before.is_none_or(|b| seq > b))
        });
        agent.wait_until("output past the newest checkpoint", || {
            let newest = newest_checkpoint(&dir.state())?;
            let bytes = std::fs::read(&output).ok()?;
            let last = rows(&bytes, from).last()?.seq;
            (last > newest + PAST_CHECKPOINT).then_some(())
        });
        logs.push_str(&kill(agent, &pids));
    }

    let bytes = std::fs::read(&output).unwrap();
    let mut seen: BTreeMap<(String, u64), (usize, String)> = BTreeMap::new();
    let mut reused = Vec::new();
    let mut backwards = Vec::new();
    let mut highest: Option<u64> = None;
    for (run, &from) in starts.iter().enumerate() {
        let to = starts.get(run + 1).copied().unwrap_or(bytes.len());
        let rows = rows(&bytes[..to], from);
        assert!(!rows.is_empty(), "run {run} wrote nothing:\n{logs}");
        let first = rows.iter().map(|r| r.seq).min().unwrap();
        if let Some(highest) = highest.filter(|&h| first <= h) {
            backwards.push(format!(
                "run {run} numbered from {first}, not above {highest} that an earlier run emitted"
            ));
        }
        highest = highest.max(rows.iter().map(|r| r.seq).max());
        for row in rows {
            let key = (row.channel.clone(), row.seq);
            match seen.get(&key) {
                Some((earlier, data)) if *data != row.data => reused.push(format!(
                    "{} seq {}: run {earlier} wrote {data}, run {run} wrote {}",
                    row.channel, row.seq, row.data
                )),
                Some(_) => {}
                None => {
                    seen.insert(key, (run, row.data));
                }
            }
        }
    }
    assert!(
        reused.is_empty() && backwards.is_empty(),
        "{} (channel, seq) pairs were emitted twice with different data, e.g.\n{}\n{}",
        reused.len(),
        reused
            .iter()
            .take(5)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n"),
        backwards.join("\n")
    );
}

/// A disk in memory that fails every operation while `failing` is set.
#[derive(Clone, Default)]
struct Flaky {
    disk: Arc<Mutex<SimDisk>>,
    failing: Arc<AtomicBool>,
}

impl Flaky {
    fn with<T>(&self, op: impl FnOnce(&mut SimDisk) -> io::Result<T>) -> io::Result<T> {
        if self.failing.load(Ordering::Relaxed) {
            return Err(io::Error::other("the disk is gone"));
        }
        op(&mut self.disk.lock().unwrap())
    }

    /// The mark a crash now would leave (every crash image agrees).
    fn mark(&self) -> Seq {
        let images = self.disk.lock().unwrap().crash_images();
        let marks: Vec<Option<Seq>> = images
            .into_iter()
            .map(|image| MarkFile::with_storage("state", image).load().unwrap())
            .collect();
        assert!(marks.windows(2).all(|w| w[0] == w[1]), "{marks:?}");
        marks[0].unwrap()
    }
}

impl Storage for Flaky {
    fn create(&mut self, path: &Path) -> io::Result<()> {
        self.with(|d| d.create(path))
    }
    fn write(&mut self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        self.with(|d| d.write(path, bytes))
    }
    fn sync_file(&mut self, path: &Path) -> io::Result<()> {
        self.with(|d| d.sync_file(path))
    }
    fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()> {
        self.with(|d| d.rename(from, to))
    }
    fn sync_dir(&mut self, dir: &Path) -> io::Result<()> {
        self.with(|d| d.sync_dir(dir))
    }
    fn list(&mut self, dir: &Path) -> io::Result<Vec<String>> {
        self.with(|d| d.list(dir))
    }
    fn read(&mut self, path: &Path) -> io::Result<Vec<u8>> {
        self.with(|d| d.read(path))
    }
    fn remove(&mut self, path: &Path) -> io::Result<()> {
        self.with(|d| d.remove(path))
    }
}

/// Keeps the sequence numbers it is given.
struct Seqs(Arc<Mutex<Vec<u64>>>);

impl Sink for Seqs {
    fn write(&mut self, records: &[Record]) -> Result<(), SinkError> {
        self.0
            .lock()
            .unwrap()
            .extend(records.iter().map(|r| r.seq.0));
        Ok(())
    }
    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

/// Runs a 100 000 records/s synthetic source for `span` of virtual time
/// with `reservation`; the numbers the sink saw, and the running topology.
fn numbered_run(
    dir: &Scratch,
    span: Duration,
    reservation: Reservation,
) -> (Topology, Arc<Mutex<Vec<u64>>>) {
    let graph = dir.0.join("fast.toml");
    std::fs::write(
        &graph,
        r#"[sources.gen]
kind = "synthetic"
rate = 100000

[sinks.out]
kind = "stdout"
inputs = ["gen.*"]
"#,
    )
    .unwrap();
    let plan = tandem::graph_file::load(&graph).unwrap().plan;
    let seqs = Arc::new(Mutex::new(Vec::new()));
    let mut attached = Attached::default();
    attached
        .sinks
        .insert("out".to_owned(), Box::new(Seqs(seqs.clone())));
    let options = RunOptions {
        clock: Clock::Virtual {
            start: EventTime::from_secs(1_767_225_600),
            speed: None,
        },
        span: Some(span),
        hold_at_end: false,
        batch: 1024,
    };
    let (topology, _) =
        Topology::start_numbered(&plan, options, None, attached, Some(reservation)).unwrap();
    (topology, seqs)
}

/// Every number from `first` on, once, in order; the last one.
fn contiguous_from(seqs: &[u64], first: u64) -> u64 {
    assert_eq!(seqs.first(), Some(&first));
    for pair in seqs.windows(2) {
        assert_eq!(pair[1], pair[0] + 1, "a gap or a repeat");
    }
    *seqs.last().unwrap()
}

#[test]
fn the_ingress_never_numbers_past_what_the_disk_has_reserved() {
    let dir = Scratch::new("seq-ingress");
    let disk = Flaky::default();
    let state = Path::new("state");
    const BLOCK: u64 = 1000;

    // A run: every number it stamps was on disk first.
    let reservation =
        Reservation::with_storage(state, Box::new(disk.clone()), Seq::ZERO, BLOCK).unwrap();
    let (topology, seqs) = numbered_run(&dir, Duration::from_secs(1), reservation);
    topology.join().unwrap();
    let last = contiguous_from(&seqs.lock().unwrap(), 1);
    assert_eq!(last, 100_000);
    let first_mark = disk.mark();
    assert!(
        first_mark.0 >= last && first_mark.0 <= last + BLOCK,
        "mark {first_mark} after {last} records"
    );

    // The next run starts above the mark. The disk fails once the first
    // block is reserved: input stops at its end, numbered no further.
    let reservation =
        Reservation::with_storage(state, Box::new(disk.clone()), Seq::ZERO, BLOCK).unwrap();
    assert_eq!(reservation.after(), first_mark);
    disk.failing.store(true, Ordering::Relaxed);
    let (topology, seqs) = numbered_run(&dir, Duration::from_secs(1), reservation);
    let end_of_block = first_mark.0 + BLOCK;
    let deadline = Instant::now() + LIMIT;
    while seqs.lock().unwrap().last() != Some(&end_of_block) {
        assert!(
            Instant::now() < deadline,
            "input did not reach {end_of_block}"
        );
        assert!(seqs.lock().unwrap().last() < Some(&end_of_block));
        std::thread::sleep(POLL);
    }
    assert_eq!(disk.mark().0, end_of_block);
    // The disk is back: input goes on, still under the mark.
    disk.failing.store(false, Ordering::Relaxed);
    topology.join().unwrap();
    let last = contiguous_from(&seqs.lock().unwrap(), first_mark.0 + 1);
    assert!(last > end_of_block);
    assert!(disk.mark().0 >= last, "{} < {last}", disk.mark());
}
