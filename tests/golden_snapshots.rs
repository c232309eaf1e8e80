//! Golden snapshot files: the state of every stateful vertex kind, as the
//! code that defined its state schema wrote it.
//!
//! `tests/golden/<kind>-v<version>-schema<id>.snap` holds the encoded
//! snapshot envelope of a vertex of that kind after the `history` input of
//! its case below. The ordinary run loads every file, restores it into a
//! freshly built vertex, feeds the case's `more` input and checks the output
//! is what a vertex that ran `history` itself produces. A change to a state
//! struct that keeps its schema id fails here: the old bytes no longer mean
//! the same state. Files of older schemas stay: each must still upgrade,
//! through the kind's migrations, into every registered version of the kind
//! that keeps state.
//!
//! A new stateful kind (or a new schema) needs a case in [`cases`] and its
//! file, written by
//!
//! ```text
//! TANDEM_WRITE_GOLDEN=1 cargo test --test golden_snapshots -- --ignored
//! ```
//!
//! which writes the file of each kind's current schema and never touches
//! files of other schemas. The ordinary run never writes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use tandem_core::{
    BuildContext, Builder, ChannelId, ChannelTable, EventTime, KindSpec, ParamValue, Params,
    Record, Role, Seq, Snapshot, Vertex,
};

/// Seconds since the start, input index, value.
type Row = (f64, usize, f64);

/// A vertex kind at one version, its parameters, and the input that brings
/// it to a representative state (`history`) and continues from there (`more`).
struct Case {
    kind: &'static str,
    version: u32,
    params: Vec<(&'static str, ParamValue)>,
    history: Vec<Row>,
    more: Vec<Row>,
}

fn f(v: f64) -> ParamValue {
    ParamValue::Float(v)
}
fn t(v: &str) -> ParamValue {
    ParamValue::Text(v.to_owned())
}
fn secs(v: i64) -> ParamValue {
    ParamValue::Duration(v * 1_000_000_000)
}

/// One sample per second on input 0.
fn series(from: usize, values: &[f64]) -> Vec<Row> {
    values
        .iter()
        .enumerate()
        .map(|(i, &v)| ((from + i) as f64, 0, v))
        .collect()
}

/// Heat-pump samples at second `s`: flow, supply, return, power, running, defrost.
fn heatpump(s: f64, running: f64, power: f64) -> Vec<Row> {
    vec![
        (s, 0, 18.0),
        (s, 1, 35.0 + s / 10.0),
        (s, 2, 30.0),
        (s, 3, power),
        (s, 4, running),
        (s, 5, 0.0),
    ]
}

/// EV charger samples at second `s`: pilot, current, power.
fn charger(s: f64, pilot: f64, amps: f64) -> Vec<Row> {
    vec![(s, 0, pilot), (s, 1, amps), (s, 2, amps * 230.0)]
}

fn cases() -> Vec<Case> {
    let integrate = |version| Case {
        kind: "integrate",
        version,
        params: vec![("per", t("s")), ("max_gap", secs(5))],
        history: series(0, &[1000.0, 1000.0, 3000.0, -250.0]),
        more: series(4, &[500.0, 0.0, 12.5]),
    };
    vec![
        Case {
            kind: "deadband",
            version: 1,
            params: vec![("band", f(0.5))],
            history: series(0, &[10.0, 10.2, 11.0, 11.1]),
            more: series(4, &[11.45, 11.6, 13.0, 12.9]),
        },
        Case {
            kind: "threshold",
            version: 1,
            params: vec![("raise", f(40.0)), ("clear", f(37.0))],
            history: series(0, &[35.0, 41.0, 42.0, 43.0, 39.0]),
            more: series(5, &[38.0, 36.0, 35.0, 41.0, 44.0, 45.0]),
        },
        Case {
            kind: "window",
            version: 1,
            params: vec![("size", secs(4)), ("agg", t("mean"))],
            history: series(0, &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0]),
            more: series(6, &[64.0, 1.0, 2.0, 3.0, 5.0]),
        },
        Case {
            kind: "ewma",
            version: 1,
            params: vec![("alpha", f(0.3))],
            history: series(0, &[1.0, 2.0, 3.0]),
            more: series(3, &[4.0, 5.0, -1.0]),
        },
        Case {
            kind: "rate",
            version: 1,
            params: vec![],
            history: series(0, &[0.0, 10.0, 30.0]),
            more: series(3, &[35.0, 35.0, 20.0]),
        },
        integrate(1),
        integrate(2),
        Case {
            kind: "select",
            version: 1,
            params: vec![],
            // Inputs: off, on, toggle.
            history: vec![
                (0.0, 0, 10.0),
                (0.0, 1, 20.0),
                (1.0, 2, 1.0),
                (2.0, 0, 11.0),
                (2.0, 1, 21.0),
            ],
            more: vec![
                (3.0, 0, 12.0),
                (3.0, 1, 22.0),
                (4.0, 2, 0.0),
                (5.0, 0, 13.0),
                (5.0, 1, 23.0),
            ],
        },
        Case {
            kind: "join",
            version: 1,
            params: vec![
                ("op", t("mul")),
                ("tolerance", ParamValue::Duration(500_000_000)),
            ],
            history: vec![(0.0, 0, 230.0), (0.1, 1, 2.0), (1.0, 0, 231.0)],
            more: vec![
                (1.2, 1, 3.0),
                (2.0, 0, 229.0),
                (2.1, 1, -1.0),
                (3.0, 1, 4.0),
            ],
        },
        Case {
            kind: "stale",
            version: 1,
            params: vec![("timeout", secs(5))],
            history: vec![(0.0, 0, 1.0), (1.0, 1, 0.0), (3.0, 1, 0.0)],
            more: vec![(7.0, 1, 0.0), (8.0, 0, 2.0), (9.0, 1, 0.0), (14.0, 1, 0.0)],
        },
        Case {
            kind: "soc",
            version: 1,
            params: vec![
                ("capacity_ah", f(100.0)),
                ("initial_soc", f(50.0)),
                ("cells", ParamValue::Int(16)),
            ],
            history: (0..6)
                .flat_map(|s| [(s as f64, 0, -10.0), (s as f64, 1, 52.0)])
                .collect(),
            more: (6..10)
                .flat_map(|s| [(s as f64, 0, 20.0), (s as f64, 1, 53.5)])
                .collect(),
        },
        Case {
            kind: "cop",
            version: 1,
            params: vec![("min_cycle", secs(2))],
            history: (0..5)
                .flat_map(|s| heatpump(s as f64, 1.0, 2000.0))
                .collect(),
            more: (5..9)
                .flat_map(|s| heatpump(s as f64, 1.0, 2100.0))
                .chain(heatpump(9.0, 0.0, 50.0))
                .collect(),
        },
        Case {
            kind: "ev_session",
            version: 1,
            params: vec![],
            history: [
                charger(0.0, 1.0, 0.0),
                charger(1.0, 2.0, 16.0),
                charger(2.0, 2.0, 16.0),
            ]
            .concat(),
            more: [
                charger(3.0, 2.0, 15.5),
                charger(4.0, 2.0, 10.0),
                charger(5.0, 1.0, 0.0),
                charger(6.0, 0.0, 0.0),
            ]
            .concat(),
        },
    ]
}

const START_NS: i64 = 1_767_225_600_000_000_000;

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn file_name(kind: &KindSpec) -> String {
    let schema = kind.state_schema.expect("stateful kind");
    format!("{}-v{}-schema{}.snap", kind.name, kind.version, schema)
}

/// Parses `<kind>-v<version>-schema<id>.snap`.
fn parse_name(name: &str) -> Option<(String, u32, u32)> {
    let stem = name.strip_suffix(".snap")?;
    let (rest, schema) = stem.rsplit_once("-schema")?;
    let (kind, version) = rest.rsplit_once("-v")?;
    Some((kind.to_owned(), version.parse().ok()?, schema.parse().ok()?))
}

/// A vertex of `kind` with input channels 1.., output channels 100.., and
/// the kind's defaults filled in under `given` (as validation would).
fn build(kind: &KindSpec, given: &[(&str, ParamValue)]) -> Box<dyn Vertex> {
    let mut params = Params::new();
    for spec in kind.params {
        if let Some(v) = ParamValue::from_default(spec.default) {
            params.insert(spec.name, v);
        }
    }
    for (name, v) in given {
        assert!(
            kind.params.iter().any(|s| s.name == *name),
            "{} has no parameter {name}",
            kind.name
        );
        params.insert(name, v.clone());
    }
    let inputs = inputs(kind);
    let outputs: Vec<ChannelId> = (0..kind.outputs.len() as u32)
        .map(|i| ChannelId(100 + i))
        .collect();
    let ctx = BuildContext {
        id: "golden",
        params: &params,
        inputs: &inputs,
        outputs: &outputs,
        channels: &Arc::new(ChannelTable::new()),
    };
    match kind.build {
        Builder::Vertex(build) => build(&ctx)
            .unwrap_or_else(|e| panic!("{} v{} does not build: {e}", kind.name, kind.version)),
        _ => panic!("{} is not a vertex", kind.name),
    }
}

fn inputs(kind: &KindSpec) -> Vec<ChannelId> {
    let n = kind.input_names.len().max(kind.arity.min);
    (0..n as u32).map(|i| ChannelId(1 + i)).collect()
}

/// The rows as records, numbered on from `first_seq`.
fn records(kind: &KindSpec, rows: &[Row], first_seq: u64) -> Vec<Record> {
    let inputs = inputs(kind);
    rows.iter()
        .enumerate()
        .map(|(i, &(s, input, value))| {
            Record::new(
                Seq(first_seq + i as u64),
                EventTime(START_NS + (s * 1e9).round() as i64),
                inputs[input],
                value,
            )
        })
        .collect()
}

fn run(v: &mut dyn Vertex, input: &[Record]) -> Vec<Record> {
    let mut out = Vec::new();
    v.process(input, &mut out);
    out
}

#[track_caller]
fn assert_bit_eq(a: &[Record], b: &[Record], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: {a:?} vs {b:?}");
    for (n, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(x.bit_eq(y), "{what}: record {n} differs: {x:?} vs {y:?}");
    }
}

fn case_for<'a>(cases: &'a [Case], kind: &KindSpec) -> Option<&'a Case> {
    cases
        .iter()
        .find(|c| c.kind == kind.name && c.version == kind.version)
}

fn stateful_kinds() -> Vec<&'static KindSpec> {
    tandem_nodes::registry()
        .kinds()
        .filter(|k| k.role() == Role::Vertex && k.state_schema.is_some())
        .collect()
}

/// What the vertex that wrote the golden file emits after `more`.
fn continued_by_itself(kind: &KindSpec, case: &Case) -> Vec<Record> {
    let history = records(kind, &case.history, 1);
    let more = records(kind, &case.more, 1 + history.len() as u64);
    let mut v = build(kind, &case.params);
    let _ = run(v.as_mut(), &history);
    run(v.as_mut(), &more)
}

#[test]
fn every_stateful_kind_has_a_golden_file_of_its_current_schema() {
    let cases = cases();
    let mut missing = Vec::new();
    for kind in stateful_kinds() {
        if case_for(&cases, kind).is_none() {
            missing.push(format!(
                "{} v{} has no case in tests/golden_snapshots.rs",
                kind.name, kind.version
            ));
        } else if !golden_dir().join(file_name(kind)).is_file() {
            missing.push(format!("tests/golden/{} is missing", file_name(kind)));
        }
    }
    assert!(
        missing.is_empty(),
        "{}\nadd the case, then write the file with \
         `TANDEM_WRITE_GOLDEN=1 cargo test --test golden_snapshots -- --ignored`",
        missing.join("\n")
    );
}

#[test]
fn every_golden_file_of_a_current_schema_restores_and_continues_as_its_writer_would() {
    let cases = cases();
    for kind in stateful_kinds() {
        let Some(case) = case_for(&cases, kind) else {
            continue;
        };
        let path = golden_dir().join(file_name(kind));
        let Ok(bytes) = std::fs::read(&path) else {
            continue; // reported by the test above
        };
        let what = path.display().to_string();
        let snapshot = Snapshot::decode(&bytes).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(Some(snapshot.schema), kind.state_schema, "{what}");
        let fresh = build(kind, &case.params).snapshot();
        assert_ne!(
            fresh.as_ref(),
            Some(&snapshot),
            "{what}: the case leaves no state"
        );
        let mut restored = build(kind, &case.params);
        restored
            .restore(&snapshot)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let first = 1 + case.history.len() as u64;
        let out = run(restored.as_mut(), &records(kind, &case.more, first));
        let expected = continued_by_itself(kind, case);
        assert!(
            !expected.is_empty(),
            "{what}: the case's `more` emits nothing"
        );
        assert_bit_eq(&out, &expected, &what);
    }
}

#[test]
fn every_golden_file_of_an_older_schema_upgrades_into_every_stateful_version() {
    let registry = tandem_nodes::registry();
    let cases = cases();
    let mut checked = 0;
    for entry in std::fs::read_dir(golden_dir()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let (kind_name, written_by, schema) = parse_name(&name)
            .unwrap_or_else(|| panic!("{name} is not named <kind>-v<version>-schema<id>.snap"));
        let snapshot = Snapshot::decode(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(
            snapshot.schema.0, schema,
            "{name}: header and name disagree"
        );
        for version in registry.versions(&kind_name) {
            let kind = registry.get(&kind_name, Some(version)).unwrap();
            // Versions up to the writer's read their own schema (checked
            // above) or never knew the file's; later ones must migrate it.
            if version <= written_by || kind.state_schema.is_none() {
                continue;
            }
            let upgraded = kind.upgrade(&snapshot).unwrap_or_else(|e| {
                panic!("{name} does not upgrade into {kind_name} v{version}: {e}")
            });
            let case = case_for(&cases, kind).expect("checked above");
            let mut v = build(kind, &case.params);
            v.restore(&upgraded).unwrap_or_else(|e| {
                panic!("{name} upgraded does not restore into {kind_name} v{version}: {e}")
            });
            checked += 1;
        }
    }
    // integrate v1's file upgrades into v2 at least.
    assert!(checked >= 1);
}

#[test]
fn integrate_v1_state_from_its_golden_file_continues_its_total_in_v2() {
    let registry = tandem_nodes::registry();
    let (v1, v2) = (
        registry.get("integrate", Some(1)).unwrap(),
        registry.get("integrate", Some(2)).unwrap(),
    );
    let cases = cases();
    let case = case_for(&cases, v1).unwrap();
    let bytes = std::fs::read(golden_dir().join(file_name(v1))).unwrap();
    let upgraded = v2.upgrade(&Snapshot::decode(&bytes).unwrap()).unwrap();
    let mut v = build(v2, &case.params);
    v.restore(&upgraded).unwrap();
    let first = 1 + case.history.len() as u64;
    let totals: Vec<Record> = run(v.as_mut(), &records(v2, &case.more, first))
        .into_iter()
        .filter(|r| r.channel == ChannelId(100))
        .collect();
    assert_bit_eq(
        &totals,
        &continued_by_itself(v1, case),
        "integrate v1 -> v2",
    );
}

/// Writes the golden file of every stateful kind's current schema.
#[test]
#[ignore = "writes tests/golden; run with TANDEM_WRITE_GOLDEN=1 and --ignored"]
fn write_golden_files() {
    if std::env::var("TANDEM_WRITE_GOLDEN").as_deref() != Ok("1") {
        eprintln!("TANDEM_WRITE_GOLDEN=1 is not set: nothing written");
        return;
    }
    std::fs::create_dir_all(golden_dir()).unwrap();
    let cases = cases();
    for kind in stateful_kinds() {
        let case = case_for(&cases, kind)
            .unwrap_or_else(|| panic!("{} v{} has no case", kind.name, kind.version));
        let mut v = build(kind, &case.params);
        let _ = run(v.as_mut(), &records(kind, &case.history, 1));
        let snapshot = v.snapshot().expect("a stateful kind snapshots");
        let path = golden_dir().join(file_name(kind));
        std::fs::write(&path, snapshot.encode()).unwrap();
        eprintln!("wrote {}", path.display());
    }
}
