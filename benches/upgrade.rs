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
//!
//! The agent starts through `tandem::harness`, the one harness for
//! `tandem up` in tests and benches.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tandem::harness::{agent_config, Agent as _, InProcess, Scratch};
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

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // `<exe> instance ..`: what the agent starts.
    tandem::harness::serve_roles("upgrade bench", &args);
    let json = args.iter().any(|a| a == "--json");
    let dir = Scratch::new("upgrade-bench");
    let old = dir.write("old.toml", &graph(1));
    let new = dir.write("new.toml", &graph(2));
    let program = std::env::current_exe().expect("this executable");
    let mut config = agent_config(&old, &dir.state(), program).expect("the bench graph loads");
    let seen = Arc::new(Mutex::new(Seen::default()));
    config
        .egress
        .sinks
        .insert("out".to_owned(), Box::new(Probe(seen.clone())));
    config.run_for = Some(Duration::from_secs(30));
    config.checkpoint_every = Duration::from_secs(1);
    config.batch = 1024;
    let agent = InProcess::start(config);

    agent.wait_both_serving();
    // Warm up, then a steady window as long as the upgrade will take.
    std::thread::sleep(Duration::from_secs(2));
    let steady_from = Instant::now();
    std::thread::sleep(Duration::from_secs(4));
    let steady_to = Instant::now();

    let asked = Instant::now();
    let line = format!("upgrade\t{}\t\t{}", new.display(), SUPERVISE.as_millis());
    if let Err(e) = agent.control().ask(&line) {
        panic!("upgrade not started: {e}");
    }
    let done = agent.wait_for("the upgrade to finish", |v| {
        v["upgrade"]["phase"] == "idle" && !v["upgrade"]["last"].is_null()
    });
    let finished = Instant::now();
    let last = &done["upgrade"]["last"];
    assert_eq!(
        last["result"], "promoted",
        "the upgrade did not go through: {done}"
    );
    agent.wait_both_serving();
    std::thread::sleep(Duration::from_secs(1));
    // Stop the agent: its run ends at `run_for`; the rest of the run only
    // adds records to check.
    if let Err(e) = agent.finish(Duration::from_secs(12)) {
        eprintln!("upgrade bench: {e}");
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
    drop(dir);
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
