//! `tandem up` end to end: an agent in this process, a blue and a green
//! instance process (this same executable, run as `<exe> instance ...`), and
//! a probe sink that timestamps what the agent's downstream junction emits.
//!
//! `cargo bench --bench ha -- --json` prints human-readable figures and, as
//! its last line, one JSON object:
//!
//! - `records_per_sec`: agent -> both instances -> agent sink, through a
//!   5-vertex chain (scale, range_check, deadband, ewma, integrate), counted
//!   at the probe once both instances serve; the run says if they stopped;
//! - `p50_us`, `p99_us`: source-to-sink latency at a moderate rate (a record's
//!   event time is its ingress wall time);
//! - `failover_gap_p99_ms`: the sink's longest silence around a SIGKILL of a
//!   serving instance, over repeated kills;
//! - `snapshot_10mb_ms`: 10 MB of vertex state snapshotted, encoded as a
//!   checkpoint image, sent in 1 MB chunks over a loopback quinn link,
//!   decoded and restored into a fresh vertex (median of a few runs);
//! - `one_vertex_records_per_sec`: the throughput run with `scale` alone
//!   on each instance instead of the five vertices: what the path carries
//!   when the vertices cost next to nothing;
//! - `one_copy_records_per_sec`, `one_copy_ratio_raw_quinn`: the
//!   throughput run with green withholding its output records (it still
//!   reports its progress), so that each output record crosses to the agent
//!   once: the ceiling of any protocol that keeps both instances fed and
//!   emits every record (a digest from the second instance, say), and its
//!   ratio to raw quinn;
//! - `baselines.raw_quinn`: one raw quinn stream with the same frames, the
//!   faster of two samples, one before the throughput parts and one after
//!   them (the best of three runs each): on a shared machine one short
//!   window can fall in a slow spell and flatter the ratio;
//! - `agent_peak_rss_mb`, `blue_peak_rss_mb`, `green_peak_rss_mb`: peak
//!   resident memory (VmHWM) of each process at the end of a saturation run
//!   like the throughput one, with the agent as a process of its own (this
//!   executable as `<exe> up ...`, the graph's own `count` sink), so that
//!   the agent's figure is not the bench's; target at most 64 MB each.
//!
//! Environment: `TANDEM_HA_RATE` (source rate of the throughput run, default
//! 15e6 records/s, more than the path carries on a 2-core machine: the agent
//! holds its input back when an instance falls behind, so the sink's rate is
//! the capacity), `TANDEM_HA_KILLS` (default 10),
//! `TANDEM_HA_FAILOVER_SECS` (default 35), `TANDEM_HA_ONLY` (a comma list of
//! raw, throughput, one, ceiling, rss, latency, failover, snapshot).
//!
//! Agents start through `tandem::harness`, the one harness for `tandem up`
//! in tests and benches.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tandem_workspace::median;

use bytes::Bytes;
use hdrhistogram::Histogram;
use tandem::checkpoint::{self, format, Checkpoint, GraphStamp};
use tandem::harness::proc::{cpu_by_thread, peak_rss_bytes, try_signal};
use tandem::harness::{
    agent_config, status, Agent as _, InProcess, Launcher, Scratch, WITHHOLD_OUTPUT,
};
use tandem::net::{Client, Server, SiteCa, TransportOptions};
use tandem_core::ha::ToAgent;
use tandem_core::{
    freeze, thaw, Record, SchemaId, Seq, Sink, SinkError, Snapshot, SnapshotError, Vertex,
};

/// Records per source poll and per node pass in the throughput run.
const BATCH: usize = 4096;
/// How long after its run an agent may take to drain and return.
const GRACE: Duration = Duration::from_secs(12);

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One clock for the probe's silences.
fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

fn since_origin_ns() -> u64 {
    origin().elapsed().as_nanos() as u64
}

// ---------------------------------------------------------------- graph

/// `[ha] retention` of the memory run: about a twelfth of a second at the
/// rate the path carries, at which the second instance still joins (its
/// snapshot's barrier waits behind the queues toward the serving one).
const RSS_RETENTION: u64 = 1 << 19;
/// Records per second offered in the memory run: about all the path carries
/// on this machine (6.2 M/s), the most at which the second instance joins
/// with [`RSS_RETENTION`].
const RSS_RATE: f64 = 6e6;

/// Half a second of input at `rate`: a rejoin (snapshot, restore) takes
/// far less.
fn rejoin_retention(rate: f64) -> u64 {
    ((rate * 0.5) as u64).clamp(65_536, 16_777_216)
}

/// What each instance runs between the source and the probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Chain {
    /// scale, range_check, deadband, ewma, integrate (two records out for
    /// each record in): the bench's graph.
    Five,
    /// scale alone (one out for each in): what the path carries when the
    /// vertices cost next to nothing.
    One,
}

/// Source on the agent; `chain` on each instance; the probe on the agent;
/// `retention` records kept for replay.
fn graph_text(rate: f64, batch: usize, retention: u64, chain: Chain) -> String {
    let text = format!(
        r#"
[graph]
name = "ha-bench"

# A rejoining instance replays from this ring: at millions of records per
# second the default (65536, tens of milliseconds) is gone before a snapshot
# is restored, and the instance never rejoins.
[ha]
retention = {retention}

[sources.gen]
kind = "synthetic"
rate = {rate:?}
batch = {batch}
shape = "counter"

[vertices.scale]
kind = "scale"
inputs = ["gen.value"]
factor = 1.5
offset = 2.0

[vertices.range]
kind = "range_check"
inputs = ["scale"]
min = -1e18
max = 1e18

[vertices.deadband]
kind = "deadband"
inputs = ["range"]
band = 0.0

[vertices.ewma]
kind = "ewma"
inputs = ["deadband"]
alpha = 0.125

[vertices.integrate]
kind = "integrate"
inputs = ["ewma"]

[sinks.probe]
kind = "count"
inputs = ["integrate"]
"#
    );
    match chain {
        Chain::Five => text,
        Chain::One => {
            // The same file, cut after `scale`, the probe reading it.
            let cut = text.find("[vertices.range]").unwrap_or(text.len());
            format!(
                "{}[sinks.probe]\nkind = \"count\"\ninputs = [\"scale\"]\n",
                &text[..cut]
            )
        }
    }
}

// ---------------------------------------------------------------- probe

/// What the probe sink saw, shared with the bench's main thread.
#[derive(Debug)]
struct Probe {
    records: AtomicU64,
    /// `since_origin_ns` of the last write with records.
    last_ns: AtomicU64,
    /// Longest time between two writes with records since last reset.
    max_gap_ns: AtomicU64,
    /// Latency is recorded only while this is set.
    measuring: AtomicBool,
    latency: Mutex<Histogram<u64>>,
}

impl Probe {
    fn new() -> Arc<Probe> {
        Arc::new(Probe {
            records: AtomicU64::new(0),
            last_ns: AtomicU64::new(since_origin_ns()),
            max_gap_ns: AtomicU64::new(0),
            measuring: AtomicBool::new(false),
            latency: Mutex::new(
                Histogram::new_with_bounds(1, 600_000_000, 3).expect("constant bounds are valid"),
            ),
        })
    }

    /// The longest silence since the last call, including the one going on now.
    fn take_max_gap_ns(&self) -> u64 {
        let now = since_origin_ns();
        let ongoing = now.saturating_sub(self.last_ns.load(Ordering::Relaxed));
        self.max_gap_ns.swap(0, Ordering::Relaxed).max(ongoing)
    }
}

struct ProbeSink(Arc<Probe>);

impl Sink for ProbeSink {
    fn write(&mut self, records: &[Record]) -> Result<(), SinkError> {
        if records.is_empty() {
            return Ok(());
        }
        let p = &self.0;
        let now = since_origin_ns();
        let gap = now.saturating_sub(p.last_ns.swap(now, Ordering::Relaxed));
        p.max_gap_ns.fetch_max(gap, Ordering::Relaxed);
        p.records.fetch_add(records.len() as u64, Ordering::Relaxed);
        if p.measuring.load(Ordering::Relaxed) {
            let wall = tandem::ingress::wall_now().0;
            let mut h = p.latency.lock().unwrap_or_else(|e| e.into_inner());
            for r in records {
                h.saturating_record(wall.saturating_sub(r.time.0).max(1) as u64);
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

// ---------------------------------------------------------------- agent

/// A running `tandem up` of [`graph_text`] in this process, ended by its
/// `run_for`, with the probe as its sink.
struct Up {
    agent: InProcess,
    probe: Arc<Probe>,
    dir: Scratch,
}

fn this_exe() -> std::path::PathBuf {
    std::env::current_exe().expect("bench executable path")
}

fn start_up(label: &str, rate: f64, batch: usize, run_for: Duration, chain: Chain) -> Up {
    start_up_with(label, rate, batch, run_for, chain, Output::Both)
}

/// What the instances send the agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Output {
    /// Both send every output record, as `tandem up` does.
    Both,
    /// Green sends only its progress, no records
    /// (`tandem::harness::WITHHOLD_OUTPUT`): each output record crosses to
    /// the agent once, the least any protocol that emits it could send.
    BlueOnly,
}

fn start_up_with(
    label: &str,
    rate: f64,
    batch: usize,
    run_for: Duration,
    chain: Chain,
    output: Output,
) -> Up {
    let dir = Scratch::new(&format!("ha-bench-{label}"));
    let file = dir.write(
        "ha-bench.toml",
        &graph_text(rate, batch, rejoin_retention(rate), chain),
    );
    let mut config = agent_config(&file, &dir.state(), this_exe())
        .unwrap_or_else(|e| panic!("bench graph: {e}"));
    config.run_for = Some(run_for);
    config.batch = batch;
    if output == Output::BlueOnly {
        config.instance.args = vec![WITHHOLD_OUTPUT.into(), "green".into()];
    }
    let probe = Probe::new();
    config
        .egress
        .sinks
        .insert("probe".to_owned(), Box::new(ProbeSink(probe.clone())));
    Up {
        agent: InProcess::start(config),
        probe,
        dir,
    }
}

/// Role and pid of blue and green, both serving.
fn serving(status: &serde_json::Value) -> Option<[u32; 2]> {
    let list = status["instances"].as_array()?;
    let [blue, green] = list.as_slice() else {
        return None;
    };
    let pid = |i: &serde_json::Value| -> Option<u32> {
        (i["role"] == "serving").then_some(u32::try_from(i["pid"].as_u64()?).ok()?)
    };
    Some([pid(blue)?, pid(green)?])
}

impl Up {
    /// Restarts of both instances so far.
    fn restarts(&self) -> u64 {
        status::restarts(&self.agent.status())
    }

    /// Waits until both instances serve; their pids (blue, green).
    fn both_serving(&self, within: Duration) -> Option<[u32; 2]> {
        self.agent.poll_status(within, serving)
    }

    /// Waits for the agent to end its `run_for`; one stuck in its shutdown
    /// is left behind (its instances are already reaped by then), with its
    /// directory, so that it does not stall the whole bench.
    fn finish(self, grace: Duration) {
        match self.agent.finish(grace) {
            Ok(()) => {}
            Err(e @ tandem::harness::Unfinished::LeftBehind(_)) => {
                eprintln!("ha bench: {e}");
                println!("  (agent shutdown hung: left behind, see stderr)");
                std::mem::forget(self.dir);
            }
            Err(e) => eprintln!("ha bench: {e}"),
        }
    }
}

// ---------------------------------------------------------------- memory

/// The 64 MB target of issue 11, per process.
const RSS_TARGET_MB: f64 = 64.0;

fn peak_rss_mb(pid: u32) -> Option<f64> {
    peak_rss_bytes(pid).map(|b| b as f64 / (1 << 20) as f64)
}

/// `name: N MB` against the target, or that it was not read.
fn rss_line(name: &str, mb: Option<f64>) -> String {
    match mb {
        Some(mb) => format!(
            "{name} {mb:.1} MB ({})",
            if mb <= RSS_TARGET_MB { "ok" } else { "OVER" }
        ),
        None => format!("{name} not read"),
    }
}

/// Peak resident memory (MB) of the agent, blue and green at the end of
/// `warm + measure` at `rate`, the agent a process of its own (this
/// executable as `<exe> up ...`) with the graph's own `count` sink.
fn peak_rss(rate: f64, warm: Duration, measure: Duration) -> [Option<f64>; 3] {
    let dir = Scratch::new("ha-bench-rss");
    // A larger ring adds 32 bytes per record (docs/ha.md, "Memory").
    let file = dir.write(
        "ha-bench.toml",
        &graph_text(rate, BATCH, RSS_RETENTION, Chain::Five),
    );
    let mut up = Launcher::new(this_exe(), file, dir.state())
        .args(["--batch", &BATCH.to_string(), "--checkpoint-every", "1s"])
        .bound(Duration::from_secs(60))
        .spawn();
    let Some(pids) = up.poll_status(Duration::from_secs(8), serving) else {
        println!("  NOT both serving after 8 s: no memory figures");
        return [None; 3];
    };
    std::thread::sleep(warm);
    let emitted = |up: &tandem::harness::Up| up.status()["emitted"].as_u64().unwrap_or(0);
    let (n0, t0) = (emitted(&up), Instant::now());
    std::thread::sleep(measure);
    // The status is refreshed every 250 ms: a rough rate, to show the run saturated.
    let (n1, t1) = (emitted(&up), Instant::now());
    println!(
        "  agent as its own process: about {:.2} M records/s emitted (from its status)",
        n1.saturating_sub(n0) as f64 / (t1 - t0).as_secs_f64() / 1e6
    );
    let agent = u32::try_from(up.pid()).ok();
    let figures = [
        agent.and_then(peak_rss_mb),
        peak_rss_mb(pids[0]),
        peak_rss_mb(pids[1]),
    ];
    if status::restarts(&up.status()) > 0 {
        println!("  (instances restarted during the run: their figures are the replacements')");
    }
    try_signal(up.pid(), libc::SIGTERM);
    match up.exited_within(GRACE) {
        Some(exit) if exit.success() => {}
        Some(exit) => eprintln!("ha bench: the agent process exited {exit}\n{}", up.log()),
        None => eprintln!("ha bench: the agent process did not stop within {GRACE:?}; killed"),
    }
    figures
}

// ---------------------------------------------------------------- cpu

/// CPU seconds per thread name of process `pid`: where the time of a run
/// goes, without a profiler.
fn cpu_seconds_by_thread(pid: u32) -> BTreeMap<String, f64> {
    cpu_by_thread(pid)
        .into_iter()
        .map(|(name, used)| (name, used.as_secs_f64()))
        .collect()
}

/// CPU of this process's threads and of each instance over a window.
struct CpuWindow {
    before: Vec<(String, BTreeMap<String, f64>)>,
    pids: Vec<(String, u32)>,
    at: Instant,
}

impl CpuWindow {
    fn start(pids: Vec<(String, u32)>) -> CpuWindow {
        let before = pids
            .iter()
            .map(|(name, pid)| (name.clone(), cpu_seconds_by_thread(*pid)))
            .collect();
        CpuWindow {
            before,
            pids,
            at: Instant::now(),
        }
    }

    /// Prints each process's share of a core over the window, by thread name.
    fn report(self) {
        let secs = self.at.elapsed().as_secs_f64();
        for ((name, pid), (_, before)) in self.pids.iter().zip(&self.before) {
            let after = cpu_seconds_by_thread(*pid);
            let mut used: Vec<(String, f64)> = after
                .iter()
                .map(|(t, a)| (t.clone(), (a - before.get(t).unwrap_or(&0.0)) / secs))
                .filter(|(_, u)| *u >= 0.01)
                .collect();
            used.sort_by(|a, b| b.1.total_cmp(&a.1));
            let total: f64 = used.iter().map(|u| u.1).sum();
            let threads: Vec<String> = used
                .iter()
                .map(|(t, u)| format!("{t} {:.0}%", u * 100.0))
                .collect();
            println!(
                "  cpu {name}: {:.0}% of a core ({})",
                total * 100.0,
                threads.join(", ")
            );
        }
    }
}

// ---------------------------------------------------------------- runs

/// Records per second at the probe, measured for `measure` after `warm`,
/// and how many instance restarts happened in that window.
fn throughput(
    rate: f64,
    warm: Duration,
    measure: Duration,
    chain: Chain,
    output: Output,
) -> (f64, u64) {
    let up = start_up_with(
        "throughput",
        rate,
        BATCH,
        warm + measure + Duration::from_secs(4),
        chain,
        output,
    );
    let started = Instant::now();
    match up.both_serving(Duration::from_secs(8)) {
        Some(_) => println!(
            "  both instances serving after {:.0} ms",
            started.elapsed().as_secs_f64() * 1e3
        ),
        None => println!("  NOT both serving after 8 s: the figure below is one instance's"),
    }
    std::thread::sleep(warm);
    let r0 = up.restarts();
    let mut pids = vec![("agent (this process)".to_owned(), std::process::id())];
    let now = up.agent.status();
    for i in now["instances"].as_array().into_iter().flatten() {
        if let (Some(color), Some(pid)) = (i["color"].as_str(), i["pid"].as_u64()) {
            pids.push((format!("{color} instance"), pid as u32));
        }
    }
    let cpu = CpuWindow::start(pids.clone());
    let (n0, t0) = (up.probe.records.load(Ordering::Relaxed), Instant::now());
    std::thread::sleep(measure);
    let (n1, t1) = (up.probe.records.load(Ordering::Relaxed), Instant::now());
    cpu.report();
    let peaks: Vec<String> = pids
        .iter()
        .map(|(name, pid)| rss_line(name, peak_rss_mb(*pid)))
        .collect();
    println!(
        "  peak rss: {} (this process holds the bench as well as the agent: see the rss part)",
        peaks.join(", ")
    );
    if up.both_serving(Duration::ZERO).is_none() {
        println!("  NOT both serving at the end of the window");
    }
    let restarts = up.restarts().saturating_sub(r0);
    up.finish(GRACE);
    ((n1 - n0) as f64 / (t1 - t0).as_secs_f64(), restarts)
}

/// Latency histogram (ns) at `rate` records/s, one record per poll.
fn latency(rate: f64, warm: Duration, measure: Duration) -> Histogram<u64> {
    let up = start_up(
        "latency",
        rate,
        1,
        warm + measure + Duration::from_secs(4),
        Chain::Five,
    );
    let _ = up.both_serving(Duration::from_secs(5));
    std::thread::sleep(warm);
    up.probe.measuring.store(true, Ordering::Relaxed);
    std::thread::sleep(measure);
    up.probe.measuring.store(false, Ordering::Relaxed);
    let h = up
        .probe
        .latency
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    up.finish(GRACE);
    h
}

/// What repeated SIGKILLs of a serving instance did to the sink.
struct Failover {
    /// Longest silence (ns) around each kill.
    gaps: Vec<u64>,
    /// Longest silence (ns) in a quiet window of the same length before each kill.
    quiet: Vec<u64>,
    /// Time (ms) from each kill until both instances served again.
    recovered_ms: Vec<f64>,
    /// Instance restarts over the run, the bench's kills included.
    restarts: u64,
}

fn failover(kills: usize, budget: Duration) -> Failover {
    // 200 k records/s, 100 per poll: the probe hears something every 0.5 ms.
    let up = start_up("failover", 200_000.0, 100, budget, Chain::Five);
    let deadline = Instant::now() + budget - Duration::from_secs(3);
    let window = Duration::from_millis(500);
    let mut result = Failover {
        gaps: Vec::new(),
        quiet: Vec::new(),
        recovered_ms: Vec::new(),
        restarts: 0,
    };
    for k in 0..kills {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(pids) = up.both_serving(left) else {
            eprintln!(
                "ha bench: stopped after {k} kills: the instances were not both serving in time"
            );
            break;
        };
        std::thread::sleep(Duration::from_millis(200));
        up.probe.take_max_gap_ns();
        std::thread::sleep(window);
        result.quiet.push(up.probe.take_max_gap_ns());
        // Status is refreshed every 250 ms: read the pids again, as one
        // may have been restarted since.
        let Some(pids) = up.both_serving(Duration::from_millis(500)).or(Some(pids)) else {
            break;
        };
        let victim = pids[k % 2];
        // SAFETY: kill(2) with a pid the agent reported for its own child.
        let killed = unsafe { libc::kill(victim as libc::pid_t, libc::SIGKILL) };
        let at = Instant::now();
        if killed != 0 {
            eprintln!("ha bench: cannot kill pid {victim} (restarted meanwhile?); skipped");
            continue;
        }
        std::thread::sleep(window);
        result.gaps.push(up.probe.take_max_gap_ns());
        let left = deadline.saturating_duration_since(Instant::now());
        if up.both_serving(left).is_some() {
            result.recovered_ms.push(at.elapsed().as_secs_f64() * 1e3);
        }
    }
    result.restarts = up.restarts();
    up.finish(GRACE);
    result
}

/// A throughput part compared with the raw stream sampled before it: runs
/// it and prints its line; its records per second.
fn compared_part(
    what: &str,
    rate: f64,
    chain: Chain,
    output: Output,
    raw_before: Option<f64>,
) -> f64 {
    let (tput, restarts) = throughput(
        rate,
        Duration::from_secs(2),
        Duration::from_secs(4),
        chain,
        output,
    );
    let of_raw = raw_before.map_or(String::new(), |r| {
        format!(" ({:.2} of raw quinn before it)", tput / r)
    });
    println!(
        "end to end, {what:<31}{:>8.2} M records/s{of_raw}, {restarts} instance restarts while measuring",
        tput / 1e6,
    );
    tput
}

// ---------------------------------------------------------------- snapshot

/// A vertex whose whole state is a block of words, frozen with rkyv like
/// every product vertex.
struct Blob {
    words: Vec<u64>,
}

const BLOB_SCHEMA: SchemaId = SchemaId(990_001);

impl Vertex for Blob {
    fn process(&mut self, input: &[Record], out: &mut Vec<Record>) {
        out.extend_from_slice(input);
    }

    fn snapshot(&self) -> Option<Snapshot> {
        Some(freeze(BLOB_SCHEMA, &self.words))
    }

    fn restore(&mut self, snapshot: &Snapshot) -> Result<(), SnapshotError> {
        self.words = thaw(BLOB_SCHEMA, snapshot)?;
        Ok(())
    }
}

/// Milliseconds of each phase of one snapshot move.
#[derive(Clone, Copy, Debug, Default)]
struct SnapshotRun {
    freeze: f64,
    encode: f64,
    transfer: f64,
    decode: f64,
    restore: f64,
    total: f64,
}

const SNAPSHOT_BYTES: usize = 10 << 20;
const CHUNK: usize = 1 << 20;

/// Moves a 10 MB vertex state between two vertices through a quinn link, `runs` times.
fn snapshot_runs(runs: usize) -> Vec<SnapshotRun> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move {
        let ca = SiteCa::generate().expect("in-memory CA");
        let trust = ca.trust().expect("trust");
        let local = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let server = Server::bind(
            local,
            &ca.issue_identity("agent").expect("identity"),
            &trust,
            TransportOptions::for_peer(local),
        )
        .expect("server");
        let addr = server.local_addr().expect("bound");
        let client = Client::new(
            local,
            &ca.issue_identity("blue").expect("identity"),
            &trust,
            TransportOptions::for_peer(local),
        )
        .expect("client");
        let accepting = tokio::spawn(async move {
            let link = server.accept().await.expect("a connection");
            (link.establish().await.expect("established"), server)
        });
        let mut sender = client.connect(addr, "agent").await.expect("connected");
        // The server sees the stream once something is sent on it.
        sender
            .writer
            .send(&ToAgent::Heartbeat {
                sent_ns: 0,
                seq: 0,
                processed: Seq::ZERO,
            })
            .await
            .expect("sent");
        let (mut receiver, _server) = accepting.await.expect("accept task");
        let _ = receiver.reader.next().await;

        let donor = Blob {
            words: (0..SNAPSHOT_BYTES as u64 / 8)
                .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
                .collect(),
        };
        let stamp = GraphStamp {
            name: "ha-bench".into(),
            hash: 1,
        };
        let mut out = Vec::new();
        for run in 0..runs {
            let start = Instant::now();
            let snap = donor.snapshot().expect("stateful");
            let frozen = Instant::now();
            let mut vertices = BTreeMap::new();
            vertices.insert("blob".to_owned(), snap);
            let image = Bytes::from(format::encode(&Checkpoint {
                graph: stamp.clone(),
                seq: Seq(run as u64 + 1),
                vertices,
            }));
            let encoded = Instant::now();
            let total = image.len() as u64;
            let send = async {
                for offset in (0..image.len()).step_by(CHUNK) {
                    let end = (offset + CHUNK).min(image.len());
                    sender
                        .writer
                        .send(&ToAgent::SnapshotChunk {
                            barrier: run as u64,
                            vertex: 0,
                            offset: offset as u64,
                            total,
                            bytes: image.slice(offset..end),
                        })
                        .await
                        .expect("chunk sent");
                }
                sender
                    .writer
                    .send(&ToAgent::SnapshotEnd {
                        barrier: run as u64,
                        vertices: 1,
                        state_hash: 0,
                    })
                    .await
                    .expect("end sent");
            };
            let receive = async {
                let mut got = Vec::with_capacity(total as usize);
                loop {
                    match receiver.reader.next().await.expect("frame") {
                        Some(ToAgent::SnapshotChunk { bytes, .. }) => got.extend_from_slice(&bytes),
                        Some(ToAgent::SnapshotEnd { .. }) => return got,
                        Some(_) => {}
                        None => panic!("the link ended inside a snapshot"),
                    }
                }
            };
            let ((), got) = tokio::join!(send, receive);
            let transferred = Instant::now();
            let checkpoint = format::decode(&got).expect("image decodes");
            let decoded = Instant::now();
            let mut fresh = Blob { words: Vec::new() };
            let report =
                checkpoint::restore(&checkpoint, [("blob", &mut fresh as &mut dyn Vertex)]);
            let restored = Instant::now();
            assert!(report.is_complete(), "restore: {report}");
            assert_eq!(fresh.words, donor.words, "restored state differs");
            let ms = |a: Instant, b: Instant| (b - a).as_secs_f64() * 1e3;
            out.push(SnapshotRun {
                freeze: ms(start, frozen),
                encode: ms(frozen, encoded),
                transfer: ms(encoded, transferred),
                decode: ms(transferred, decoded),
                restore: ms(decoded, restored),
                total: ms(start, restored),
            });
        }
        out
    })
}

// ---------------------------------------------------------------- main

fn quantile_ms(v: &[u64], q: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_unstable();
    if v.is_empty() {
        return f64::NAN;
    }
    let i = ((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1;
    v[i] as f64 / 1e6
}

/// A figure for the JSON line: `null` when the part did not run or failed.
fn num(v: Option<f64>, digits: usize) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v:.digits$}"),
        _ => "null".to_owned(),
    }
}

/// The best of three runs of one raw quinn stream, a second or so each.
fn raw_quinn() -> f64 {
    (0..3)
        .map(|_| {
            tandem::net::raw_quinn_records_per_sec(3000, BATCH)
                .expect("raw quinn run")
                .records_per_sec()
        })
        .fold(0.0, f64::max)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // `<exe> instance ..` and `<exe> up ..`: what agents start, and the rss part.
    tandem::harness::serve_roles("ha bench", &args);
    let json = args.iter().any(|a| a == "--json");
    let _ = origin();
    let rate: f64 = env_or("TANDEM_HA_RATE", 15e6);
    let kills: usize = env_or("TANDEM_HA_KILLS", 10);
    // `TANDEM_HA_ONLY=throughput,failover` runs only those parts.
    let only: String = env_or("TANDEM_HA_ONLY", String::new());
    let runs = |part: &str| only.is_empty() || only.split(',').any(|p| p == part);

    println!("tandem up, agent + blue + green on loopback quinn, 5 vertices per instance");
    // The baseline is sampled before the throughput parts and again after
    // them, and the faster is the one compared with: on a shared machine a
    // short window alone can fall in a slow spell and flatter the ratio.
    let raw_before = runs("raw").then(raw_quinn);
    if let Some(raw) = raw_before {
        println!(
            "raw quinn stream, {BATCH}-record frames:  {:>8.2} M records/s",
            raw / 1e6
        );
    }

    let tput = runs("throughput").then(|| {
        let (tput, restarts) = throughput(
            rate,
            Duration::from_secs(2),
            Duration::from_secs(4),
            Chain::Five,
            Output::Both,
        );
        println!(
            "end to end, source at {:.1} M/s:        {:>8.2} M records/s, {restarts} instance restarts while measuring",
            rate / 1e6,
            tput / 1e6,
        );
        tput
    });

    // The same path with one vertex: how much of the limit is the vertices'.
    let one = runs("one").then(|| {
        compared_part(
            "one vertex instead of five:",
            rate,
            Chain::One,
            Output::Both,
            raw_before,
        )
    });

    // Again, after the parts that are compared with it.
    let raw_after = raw_before
        .filter(|_| tput.is_some() || one.is_some())
        .map(|_| raw_quinn());
    let raw = match (raw_before, raw_after) {
        (Some(before), Some(after)) => {
            println!(
                "raw quinn stream again, after them:       {:>8.2} M records/s (the faster of the two is the baseline)",
                after / 1e6
            );
            Some(before.max(after))
        }
        (before, _) => before,
    };
    let ratio = tput.zip(raw).map(|(t, r)| t / r);

    let lat = runs("latency").then(|| {
        let lat_rate = 10_000.0;
        let h = latency(lat_rate, Duration::from_secs(2), Duration::from_secs(3));
        let us = |p: f64| h.value_at_quantile(p) as f64 / 1e3;
        println!(
            "latency source->sink at {:.0}k records/s: p50 {:.0} us, p99 {:.0} us, p999 {:.0} us, max {:.0} us ({} records)",
            lat_rate / 1e3,
            us(0.5),
            us(0.99),
            us(0.999),
            h.max() as f64 / 1e3,
            h.len()
        );
        (us(0.5), us(0.99))
    });

    let gap = runs("failover").then(|| {
        let f = failover(kills, Duration::from_secs(env_or("TANDEM_HA_FAILOVER_SECS", 35)));
        println!(
            "failover, {} SIGKILLs of a serving instance: sink silence p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            f.gaps.len(),
            quantile_ms(&f.gaps, 0.5),
            quantile_ms(&f.gaps, 0.99),
            quantile_ms(&f.gaps, 1.0)
        );
        println!(
            "  same window without a kill: silence max {:.1} ms; back to both serving: median {:.0} ms; {} restarts for {} kills",
            quantile_ms(&f.quiet, 1.0),
            median(f.recovered_ms.clone()),
            f.restarts,
            f.gaps.len()
        );
        println!(
            "  gaps (ms): {:?}",
            f.gaps
                .iter()
                .map(|g| (*g as f64 / 1e5).round() / 10.0)
                .collect::<Vec<_>>()
        );
        quantile_ms(&f.gaps, 0.99)
    });

    let snap = runs("snapshot").then(|| {
        let runs = snapshot_runs(6);
        let runs = &runs[1..]; // the first run also faults in fresh pages
        let pick = |f: fn(&SnapshotRun) -> f64| median(runs.iter().map(f).collect());
        let snap = pick(|r| r.total);
        println!(
            "10 MB snapshot -> encode -> quinn -> decode -> restore: median {snap:.1} ms \
             (freeze {:.1}, encode {:.1}, transfer {:.1}, decode {:.1}, restore {:.1})",
            pick(|r| r.freeze),
            pick(|r| r.encode),
            pick(|r| r.transfer),
            pick(|r| r.decode),
            pick(|r| r.restore),
        );
        // Counters for where those milliseconds go: the image is checksummed
        // twice on each side (envelope and file) and copied several times.
        let image = vec![0x5au8; SNAPSHOT_BYTES];
        let t = Instant::now();
        let crc = (0..5).fold(0u32, |a, _| {
            a ^ crc32fast::hash(std::hint::black_box(&image))
        });
        let crc_ms = t.elapsed().as_secs_f64() * 1e3 / 5.0;
        let t = Instant::now();
        let copies = (0..5)
            .map(|_| std::hint::black_box(image.clone()).len())
            .sum::<usize>();
        let copy_ms = t.elapsed().as_secs_f64() * 1e3 / 5.0;
        std::hint::black_box((crc, copies));
        println!(
            "  per 10 MB on this machine: crc32fast {crc_ms:.1} ms, a fresh copy {copy_ms:.1} ms"
        );
        snap
    });

    // The same path with green's output withheld: each output record
    // crosses to the agent once. No protocol that keeps both instances fed
    // and emits every record carries less, so this is the ceiling of any
    // such protocol (a digest from the second instance, say) on this machine.
    // After the latency-bound parts: its agent holds the most memory of all
    // the parts in this process, and the kernel's reclaim of it afterwards
    // can disturb them (a failover gap of 21 ms right after it in one run,
    // against 5 ms in a failover-only run of the same build).
    let ceiling = runs("ceiling").then(|| {
        compared_part(
            "green's output withheld:",
            rate,
            Chain::Five,
            Output::BlueOnly,
            raw_before,
        )
    });

    // Last: the memory run frees a few hundred MB at its end, and the
    // kernel's reclaim afterwards disturbs the latency-bound parts.
    let rss = runs("rss").then(|| {
        let [agent, blue, green] =
            peak_rss(RSS_RATE, Duration::from_secs(2), Duration::from_secs(4));
        println!(
            "peak rss after saturation at {:.1} M/s, retention {} records, agent its own process: {}, {}, {} (target <= {RSS_TARGET_MB:.0} MB each; the other parts keep {} records, {:.0} MiB more on the agent)",
            RSS_RATE / 1e6,
            RSS_RETENTION,
            rss_line("agent", agent),
            rss_line("blue", blue),
            rss_line("green", green),
            rejoin_retention(rate),
            rejoin_retention(RSS_RATE).saturating_sub(RSS_RETENTION) as f64 * 32.0 / (1 << 20) as f64,
        );
        [agent, blue, green]
    });
    let rss_mb = |i: usize| rss.and_then(|r| r[i]);

    if let Some(ratio) = ratio {
        println!("ratio: end to end is {ratio:.2} of raw quinn (target >= 0.33)");
    }
    let ceiling_ratio = ceiling.zip(raw).map(|(c, r)| c / r);
    if let Some(c) = ceiling_ratio {
        println!("ceiling: with each output record crossing once, end to end would be {c:.2} of raw quinn");
    }
    println!("targets: >= 2 M records/s, failover gap p99 <= 10 ms, 10 MB snapshot <= 25 ms, peak rss <= {RSS_TARGET_MB:.0} MB per process");
    let line = format!(
        r#"{{"records_per_sec": {}, "p50_us": {}, "p99_us": {}, "failover_gap_p99_ms": {}, "snapshot_10mb_ms": {}, "ratio_raw_quinn": {}, "agent_peak_rss_mb": {}, "blue_peak_rss_mb": {}, "green_peak_rss_mb": {}, "peak_rss_target_mb": {RSS_TARGET_MB:.0}, "one_vertex_records_per_sec": {}, "one_copy_records_per_sec": {}, "one_copy_ratio_raw_quinn": {}, "baselines": {{"raw_quinn": {}}}}}"#,
        num(tput, 0),
        num(lat.map(|l| l.0), 1),
        num(lat.map(|l| l.1), 1),
        num(gap, 2),
        num(snap, 2),
        num(ratio, 3),
        num(rss_mb(0), 1),
        num(rss_mb(1), 1),
        num(rss_mb(2), 1),
        num(one, 0),
        num(ceiling, 0),
        num(ceiling_ratio, 3),
        num(raw, 0),
    );
    if json {
        println!("{line}");
    } else {
        println!("(run with -- --json for one JSON line)\n{line}");
    }
}
