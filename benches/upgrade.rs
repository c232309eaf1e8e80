//! A live upgrade under load, end to end: `tandem up` (the agent, in this
//! process) with two instance processes (this same executable, run as
//! `<exe> instance ...`), upgraded from `integrate` v1 to v2 (a state
//! migration) while a source runs at a steady rate.
//!
//! `cargo bench --bench upgrade -- --json` prints the figures and, as its
//! last line, one JSON object:
//! - `to_shadow_ms`: from the upgrade request to the new version running as
//!   a shadow (restored from a migrated snapshot, caught up);
//! - `to_promoted_ms`: to its promotion, with a 1 s supervision period;
//! - `cutover_gap_ms`: the sink's longest silence from the request until the
//!   upgrade is done (the old instance replaced too);
//! - `lost`, `duplicates`: origin sequence numbers missing at the sink, or
//!   seen twice, over the whole run;
//! - `baselines.steady_gap_ms`: the sink's longest silence over as long a
//!   window of the same run with no upgrade.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tandem::checkpoint::GraphStamp;
use tandem::up::agent::{AgentConfig, InstanceCommand};
use tandem::up::dirs::StateDir;
use tandem::up::instance::Launch;
use tandem::{Attached, Clock};
use tandem_core::{Record, Sink, SinkError};

/// Records per second from the source.
const RATE: u32 = 20_000;
/// Each supervision period.
const SUPERVISE: Duration = Duration::from_secs(1);

fn graph(version: u32) -> String {
    format!(
        r#"[graph]
name = "upgrade-bench"

[ha]
retention = 1000000

[sources.gen]
kind = "synthetic"
channels = ["power"]
rate = {RATE}
shape = "constant"
amplitude = 1000.0

[vertices.calib]
kind = "scale"
inputs = ["gen.power"]

[vertices.energy]
kind = "integrate"
version = {version}
inputs = ["calib"]

[sinks.out]
kind = "count"
inputs = ["energy"]
"#
    )
}

/// What reached the sink, and when.
#[derive(Default)]
struct Seen {
    seqs: Vec<u64>,
    arrivals: Vec<Instant>,
}

struct Probe(Arc<Mutex<Seen>>);

impl Sink for Probe {
    fn write(&mut self, records: &[Record]) -> Result<(), SinkError> {
        if records.is_empty() {
            return Ok(());
        }
        let mut seen = self.0.lock().unwrap_or_else(|e| e.into_inner());
        seen.arrivals.push(Instant::now());
        seen.seqs.extend(records.iter().map(|r| r.seq.0));
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

/// The longest time without an arrival within `[from, to]`.
fn longest_gap(arrivals: &[Instant], from: Instant, to: Instant) -> Duration {
    let mut last = from;
    let mut longest = Duration::ZERO;
    for &t in arrivals.iter().filter(|&&t| t >= from && t <= to) {
        longest = longest.max(t - last);
        last = t;
    }
    longest.max(to.saturating_duration_since(last))
}

fn status(state: &StateDir) -> Value {
    tandem::up::control::request(&state.socket(), "status")
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or(Value::Null)
}

fn wait_for(state: &StateDir, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = status(state);
        if !v.is_null() && done(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "no {what} within 60 s: {v}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn both_serving(v: &Value) -> bool {
    v["instances"].as_array().is_some_and(|all| {
        all.iter()
            .all(|i| i["role"] == "serving" && i["connected"] == true)
    })
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write a graph file");
    path
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("instance") {
        let code = match Launch::parse(&args).and_then(Launch::run) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("upgrade bench instance: {e}");
                2
            }
        };
        std::process::exit(code);
    }
    let json = args.iter().any(|a| a == "--json");
    let dir = std::env::temp_dir().join(format!("tandem-upgrade-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let old = write(&dir, "old.toml", &graph(1));
    let new = write(&dir, "new.toml", &graph(2));
    let loaded = tandem::graph_file::load(&old).expect("the bench graph loads");
    let split = tandem_core::split::split(&loaded.plan).expect("the bench graph splits");
    let state = StateDir::new(dir.join("state"));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut egress = Attached::default();
    egress
        .sinks
        .insert("out".to_owned(), Box::new(Probe(seen.clone())));
    let run_for = Duration::from_secs(30);
    let config = AgentConfig {
        file: old.clone(),
        stamp: GraphStamp::of_plan(&loaded.name, &loaded.plan),
        split,
        ha: loaded.ha.clone(),
        state: state.clone(),
        listen: "127.0.0.1:0".parse().expect("an address"),
        checkpoint_every: Duration::from_secs(1),
        run_for: Some(run_for),
        clock: Clock::Wall,
        batch: 1024,
        instance: InstanceCommand {
            program: std::env::current_exe().expect("this executable"),
            args: Vec::new(),
        },
        shadow_log: None,
        egress,
    };
    let agent = std::thread::spawn(move || tandem::up::agent::run(config));

    wait_for(&state, "both instances serving", both_serving);
    // Warm up, then a steady window as long as the upgrade will take.
    std::thread::sleep(Duration::from_secs(2));
    let steady_from = Instant::now();
    std::thread::sleep(Duration::from_secs(4));
    let steady_to = Instant::now();

    let asked = Instant::now();
    let line = format!("upgrade\t{}\t\t{}", new.display(), SUPERVISE.as_millis());
    let answer = tandem::up::control::request(&state.socket(), &line).expect("the agent answers");
    assert!(answer.starts_with("ok: "), "upgrade refused: {answer}");
    let done = wait_for(&state, "the upgrade to finish", |v| {
        v["upgrade"]["phase"] == "idle" && !v["upgrade"]["last"].is_null()
    });
    let finished = Instant::now();
    let last = &done["upgrade"]["last"];
    assert_eq!(
        last["result"], "promoted",
        "the upgrade did not go through: {done}"
    );
    wait_for(&state, "both instances serving again", both_serving);
    std::thread::sleep(Duration::from_secs(1));
    // Stop the agent: its run ends at `run_for`; the rest of the run only
    // adds records to check.
    let stopped = agent.join().expect("the agent thread");
    if let Err(e) = stopped {
        eprintln!("agent: {e}");
    }

    let seen = seen.lock().unwrap_or_else(|e| e.into_inner());
    let mut seqs = seen.seqs.clone();
    let total = seqs.len();
    seqs.sort_unstable();
    let duplicates = seqs.windows(2).filter(|w| w[0] == w[1]).count();
    seqs.dedup();
    let span = seqs.last().copied().unwrap_or(0) - seqs.first().copied().unwrap_or(0) + 1;
    let lost = span as usize - seqs.len();
    let cutover = longest_gap(&seen.arrivals, asked, finished);
    let steady = longest_gap(&seen.arrivals, steady_from, steady_to);
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let to_shadow = last["to_shadow_ms"].as_f64().unwrap_or(f64::NAN);
    let to_promoted = last["to_promoted_ms"].as_f64().unwrap_or(f64::NAN);

    println!("upgrade of integrate v1 -> v2 (state migration) at {RATE} records/s, supervision {SUPERVISE:?} per period:");
    println!("  to shadow:           {to_shadow:8.1} ms");
    println!("  to promoted:         {to_promoted:8.1} ms");
    println!("  done (old replaced): {:8.1} ms", ms(finished - asked));
    println!(
        "  sink's longest silence during the upgrade: {:6.2} ms",
        ms(cutover)
    );
    println!(
        "  sink's longest silence in a steady window:  {:6.2} ms (baseline)",
        ms(steady)
    );
    println!("  records at the sink: {total}; lost {lost}, duplicates {duplicates}");
    let _ = std::fs::remove_dir_all(&dir);
    if json {
        println!(
            "{}",
            serde_json::json!({
                "to_shadow_ms": (to_shadow * 10.0).round() / 10.0,
                "to_promoted_ms": (to_promoted * 10.0).round() / 10.0,
                "cutover_gap_ms": (ms(cutover) * 100.0).round() / 100.0,
                "lost": lost,
                "duplicates": duplicates,
                "baselines": { "steady_gap_ms": (ms(steady) * 100.0).round() / 100.0 },
            })
        );
    }
}
