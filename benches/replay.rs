//! A recorded CSV file replayed through `tandem run --clock virtual`: 2 M
//! readings through scale, range check, deadband, EWMA and a counting sink,
//! against plain single-threaded loops doing the same five steps on the same
//! file in the same run.
//!
//! The figure is the release binary `target/release/tandem` run as a child
//! process, timed from spawn to exit (graph load, file open and thread
//! start included); the bench builds it first with `cargo build --release -p
//! tandem`. Its peak RSS is the child's `ru_maxrss` from `wait4`, for a
//! 0.5 M and a 2 M reading file, to show memory independent of file size.
//!
//! Baselines, each one thread, records in batches of 1024 as the executor
//! moves them:
//! - the same reader (`tandem_nodes::io::csv::reader`) feeding the five steps
//!   directly: the limit for this parser on this machine, no executor;
//! - the file read with `BufRead::read_until` and fields parsed with
//!   `str::parse`, as a plain program would;
//! - the five steps alone over records already in memory.
//!
//! The CSV files are written deterministically to `target/tmp/replay-bench/`.
//! `cargo bench --bench replay -- --json` prints a table and, as its last
//! line, one JSON object. `TANDEM_BENCH_ROUNDS` sets the rounds (default 5);
//! every figure is the median over rounds, with the range beside it.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tandem_core::graph;
use tandem_core::{BuildContext, Builder, ChannelId, EventTime, Quality, Record, Seq, Vertex};
use tandem_nodes::io::csv::reader::{RowReader, BUFFER};
use tandem_workspace::rounds;

/// Readings in the headline file, and in the small one for memory.
const LARGE: u64 = 2_000_000;
const SMALL: u64 = 500_000;
/// Records per pass, as `tandem run`'s default `--batch`.
const BATCH: usize = 1024;

fn bench_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("replay-bench");
    std::fs::create_dir_all(&dir).expect("create target/tmp/replay-bench");
    dir
}

/// Writes `rows` readings as the `file` sink's `csv` format does: a battery
/// inverter's power every 250 ms, mostly with two decimals, one in four a
/// computed value printed in full, now and then `uncertain`.
fn write_csv(path: &Path, rows: u64) {
    let partial = path.with_extension("partial");
    let mut out = BufWriter::with_capacity(1 << 20, File::create(&partial).expect("create csv"));
    writeln!(out, "seq,time_ns,channel,value,quality").expect("write csv");
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut power = 0.0f64;
    for i in 1..=rows {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let step = (x % 2001) as f64 - 1000.0;
        power = (power + step * 0.37).clamp(-5000.0, 5000.0);
        let time = 1_767_225_600_000_000_000i64 + i as i64 * 250_000_000;
        let quality = if x.is_multiple_of(97) {
            "uncertain"
        } else {
            "good"
        };
        let written = if x.is_multiple_of(4) {
            writeln!(out, "{i},{time},power,{power},{quality}")
        } else {
            writeln!(out, "{i},{time},power,{power:.2},{quality}")
        };
        written.expect("write csv");
    }
    out.flush().expect("write csv");
    drop(out);
    std::fs::rename(&partial, path).expect("rename csv");
}

fn graph_text(csv: &Path) -> String {
    format!(
        r#"
[graph]
name = "replay-bench"

[sources.rec]
kind = "csv"
path = "{}"
channels = ["power"]

[vertices.scale]
kind = "scale"
inputs = ["rec.power"]
factor = 0.001
offset = 0.0

[vertices.range]
kind = "range_check"
inputs = ["scale"]
min = -4.0
max = 4.0

[vertices.deadband]
kind = "deadband"
inputs = ["range"]
band = 0.0

[vertices.ewma]
kind = "ewma"
inputs = ["deadband"]
alpha = 0.125

[sinks.count]
kind = "count"
inputs = ["ewma"]
"#,
        csv.display()
    )
}

/// A replay file and its graph.
struct Job {
    rows: u64,
    csv: PathBuf,
    graph: PathBuf,
    bytes: u64,
}

fn job(rows: u64) -> Job {
    let dir = bench_dir();
    let csv = dir.join(format!("readings-{rows}.csv"));
    write_csv(&csv, rows);
    let graph = dir.join(format!("replay-{rows}.toml"));
    std::fs::write(&graph, graph_text(&csv)).expect("write graph");
    let bytes = std::fs::metadata(&csv).map(|m| m.len()).unwrap_or(0);
    Job {
        rows,
        csv,
        graph,
        bytes,
    }
}

/// One `tandem run` of a job.
struct Run {
    wall: Duration,
    cpu: Duration,
    peak_rss_kb: u64,
}

/// Runs `job` through `tandem run`; its sink must count `expected` records.
fn run_tandem(binary: &Path, job: &Job, layout: &str, expected: u64) -> Run {
    let log = bench_dir().join(format!("run-{}-{layout}.log", job.rows));
    let stderr = File::create(&log).expect("create log");
    // The child starts from this process's image, so its `ru_maxrss` begins
    // at this process's peak: bring that down to what is resident now.
    reset_peak_rss();
    let start = Instant::now();
    // Reaped below by `wait4`, which also gives its resource usage.
    #[allow(clippy::zombie_processes)]
    let child = Command::new(binary)
        .arg("run")
        .arg(&job.graph)
        .args(["--clock", "virtual", "--layout", layout])
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("spawn tandem run");
    let pid = libc::pid_t::try_from(child.id()).expect("pid fits");
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid value for wait4 to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our child, not yet waited for; both pointers are to
    // live locals of the right types.
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = start.elapsed();
    assert_eq!(waited, pid, "wait4: {}", std::io::Error::last_os_error());
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "tandem run failed:\n{text}"
    );
    // Rows of the table: `<node> <role> <worker> <in> <out> ...`.
    let column = |node: &str, i: usize| {
        text.lines()
            .find_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.first() == Some(&node)).then(|| f.get(i)?.parse::<u64>().ok())?
            })
            .unwrap_or(0)
    };
    assert_eq!(column("rec", 4), job.rows, "every reading read:\n{text}");
    assert_eq!(column("count", 3), expected, "the sink counts:\n{text}");
    let time = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    Run {
        wall,
        cpu: time(usage.ru_utime) + time(usage.ru_stime),
        peak_rss_kb: usage.ru_maxrss as u64,
    }
}

/// Sets this process's peak RSS to its current RSS (Linux `clear_refs` 5).
fn reset_peak_rss() {
    if std::fs::write("/proc/self/clear_refs", "5").is_err() {
        eprintln!("warning: cannot reset the peak RSS; child peaks include this bench's");
    }
}

/// This process's resident set, in kB.
fn own_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The four vertices of the graph, built by their kinds, and the input channel.
fn operators(job: &Job) -> (Vec<Box<dyn Vertex>>, ChannelId) {
    let text = std::fs::read(&job.graph).expect("read graph");
    let loaded = graph::load("replay.toml", &text, &tandem_nodes::registry())
        .unwrap_or_else(|d| panic!("bench graph is invalid:\n{d}"));
    let plan = loaded.plan;
    let vertices = plan
        .nodes
        .iter()
        .filter_map(|node| match node.kind.build {
            Builder::Vertex(build) => Some(
                build(&BuildContext {
                    id: &node.id,
                    params: &node.params,
                    inputs: &node.inputs,
                    outputs: &node.outputs,
                    channels: &plan.channels,
                })
                .expect("vertex builds"),
            ),
            _ => None,
        })
        .collect::<Vec<_>>();
    assert_eq!(vertices.len(), 4, "scale, range, deadband, ewma");
    let channel = plan.channels.get("rec.power").expect("rec.power");
    (vertices, channel)
}

/// Runs the four vertices over `batch`, then counts what comes out.
struct Steps {
    vertices: Vec<Box<dyn Vertex>>,
    a: Vec<Record>,
    b: Vec<Record>,
    counted: u64,
}

impl Steps {
    fn new(vertices: Vec<Box<dyn Vertex>>) -> Steps {
        Steps {
            vertices,
            a: Vec::with_capacity(BATCH),
            b: Vec::with_capacity(BATCH),
            counted: 0,
        }
    }

    fn run(&mut self, batch: &[Record]) {
        let (mut a, mut b) = (std::mem::take(&mut self.a), std::mem::take(&mut self.b));
        a.clear();
        a.extend_from_slice(batch);
        for v in &mut self.vertices {
            b.clear();
            v.process(&a, &mut b);
            std::mem::swap(&mut a, &mut b);
        }
        self.counted += a.len() as u64;
        (self.a, self.b) = (a, b);
    }
}

/// The same reader as the `csv` source, straight into the five steps.
/// Returns records per second and what the count step counted.
fn same_reader_loop(job: &Job) -> (f64, u64) {
    let (vertices, channel) = operators(job);
    let start = Instant::now();
    let file = File::open(&job.csv).expect("open csv");
    let mut reader = RowReader::new(file, BUFFER, [("power".to_owned(), channel)])
        .unwrap_or_else(|e| panic!("{e}"));
    let mut steps = Steps::new(vertices);
    let mut batch = Vec::with_capacity(BATCH);
    let mut seq = 0u64;
    while let Some(mut row) = reader.next_row().unwrap_or_else(|e| panic!("{e}")) {
        seq += 1;
        row.seq = Seq(seq);
        batch.push(row);
        if batch.len() == BATCH {
            steps.run(&batch);
            batch.clear();
        }
    }
    steps.run(&batch);
    assert_eq!(seq, job.rows);
    (
        job.rows as f64 / start.elapsed().as_secs_f64(),
        steps.counted,
    )
}

/// Lines read with `read_until`, fields parsed with `str::parse`.
fn std_parse_loop(job: &Job, expected: u64) -> f64 {
    let (vertices, channel) = operators(job);
    let start = Instant::now();
    let mut input = BufReader::with_capacity(BUFFER, File::open(&job.csv).expect("open csv"));
    let mut steps = Steps::new(vertices);
    let mut batch = Vec::with_capacity(BATCH);
    let mut line = Vec::with_capacity(256);
    let mut seq = 0u64;
    input.read_until(b'\n', &mut line).expect("header");
    loop {
        line.clear();
        if input.read_until(b'\n', &mut line).expect("read csv") == 0 {
            break;
        }
        let text = std::str::from_utf8(&line).expect("utf-8").trim_end();
        let mut fields = text.split(',');
        let (_, time, name, value, quality) = (
            fields.next(),
            fields.next().and_then(|t| t.parse::<i64>().ok()),
            fields.next(),
            fields.next().and_then(|v| v.parse::<f64>().ok()),
            fields.next(),
        );
        assert_eq!(name, Some("power"));
        seq += 1;
        batch.push(Record {
            seq: Seq(seq),
            time: EventTime(time.expect("time")),
            channel,
            quality: if quality == Some("good") {
                Quality::GOOD
            } else {
                Quality::UNCERTAIN
            },
            value: value.expect("value"),
        });
        if batch.len() == BATCH {
            steps.run(&batch);
            batch.clear();
        }
    }
    steps.run(&batch);
    assert_eq!(steps.counted, expected);
    job.rows as f64 / start.elapsed().as_secs_f64()
}

/// The five steps alone, over the file's records already in memory.
fn operators_in_memory(job: &Job, records: &[Record], expected: u64) -> f64 {
    let (vertices, _) = operators(job);
    let mut steps = Steps::new(vertices);
    let start = Instant::now();
    for batch in records.chunks(BATCH) {
        steps.run(batch);
    }
    assert_eq!(steps.counted, expected);
    job.rows as f64 / start.elapsed().as_secs_f64()
}

fn read_all(job: &Job) -> Vec<Record> {
    let (_, channel) = operators(job);
    let file = File::open(&job.csv).expect("open csv");
    let mut reader = RowReader::new(file, BUFFER, [("power".to_owned(), channel)])
        .unwrap_or_else(|e| panic!("{e}"));
    let mut records = Vec::with_capacity(job.rows as usize);
    while let Some(mut row) = reader.next_row().unwrap_or_else(|e| panic!("{e}")) {
        row.seq = Seq(records.len() as u64 + 1);
        records.push(row);
    }
    records
}

/// Median and range of a series.
#[derive(Clone, Copy)]
struct Spread {
    median: f64,
    min: f64,
    max: f64,
}

fn spread(values: &[f64]) -> Spread {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    Spread {
        median: v[v.len() / 2],
        min: v[0],
        max: v[v.len() - 1],
    }
}

fn main() {
    let json = std::env::args().any(|a| a == "--json");
    let rounds = rounds(5).max(1);
    let binary = tandem::harness::release_binary(Path::new(env!("CARGO_MANIFEST_DIR")));
    let large = job(LARGE);
    let small = job(SMALL);
    let mrs = |s: Spread| {
        format!(
            "{:6.2} M records/s  ({:.2} to {:.2})",
            s.median / 1e6,
            s.min / 1e6,
            s.max / 1e6
        )
    };
    println!(
        "{} readings, {:.0} MB of CSV ({}); {} rounds, median (range)",
        LARGE,
        large.bytes as f64 / 1e6,
        large.csv.display(),
        rounds
    );

    // What the count step sees: the deadband drops repeated values.
    let (_, expected) = same_reader_loop(&large);
    let (_, expected_small) = same_reader_loop(&small);
    let (mut chains, mut spread_layout, mut same, mut plain, mut ratios) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut cpu_chains, mut cpu_spread) = (Vec::new(), Vec::new());
    let (mut rss_large, mut rss_small) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let (limit, counted) = same_reader_loop(&large);
        assert_eq!(counted, expected);
        let run = run_tandem(&binary, &large, "chains", expected);
        let rate = LARGE as f64 / run.wall.as_secs_f64();
        same.push(limit);
        chains.push(rate);
        ratios.push(rate / limit);
        cpu_chains.push(run.cpu.as_secs_f64() / run.wall.as_secs_f64());
        rss_large.push(run.peak_rss_kb as f64);
        plain.push(std_parse_loop(&large, expected));
        let run = run_tandem(&binary, &large, "spread", expected);
        spread_layout.push(LARGE as f64 / run.wall.as_secs_f64());
        cpu_spread.push(run.cpu.as_secs_f64() / run.wall.as_secs_f64());
        rss_small.push(run_tandem(&binary, &small, "chains", expected_small).peak_rss_kb as f64);
    }
    // Last: holding the file's records makes this process large.
    let floor_kb = own_rss_kb();
    let in_memory = {
        let records = read_all(&large);
        let rates: Vec<f64> = (0..rounds)
            .map(|_| operators_in_memory(&large, &records, expected))
            .collect();
        spread(&rates)
    };
    let (chains, spread_layout, same, plain, ratio) = (
        spread(&chains),
        spread(&spread_layout),
        spread(&same),
        spread(&plain),
        spread(&ratios),
    );
    let (cpu_chains, cpu_spread) = (spread(&cpu_chains), spread(&cpu_spread));
    let (rss_large, rss_small) = (spread(&rss_large), spread(&rss_small));
    println!(
        "tandem run, chains (1 worker):    {}  cpu {:.2} cores",
        mrs(chains),
        cpu_chains.median
    );
    println!(
        "tandem run, spread (6 workers):   {}  cpu {:.2} cores",
        mrs(spread_layout),
        cpu_spread.median
    );
    println!("loop, same reader, no executor:   {}", mrs(same));
    println!("loop, read_until + str::parse:    {}", mrs(plain));
    println!("five steps alone, in memory:      {}", mrs(in_memory));
    println!(
        "ratio tandem run / same-reader loop, per round: {:.2} ({:.2} to {:.2})",
        ratio.median, ratio.min, ratio.max
    );
    println!(
        "peak RSS of tandem run: {:.1} MB for {} readings ({:.0} MB file), {:.1} MB for {} ({:.0} MB file)",
        rss_small.median / 1024.0,
        SMALL,
        small.bytes as f64 / 1e6,
        rss_large.median / 1024.0,
        LARGE,
        large.bytes as f64 / 1e6
    );
    println!(
        "  (a child's figure is at least this bench's own RSS when it spawned, {:.1} MB)",
        floor_kb as f64 / 1024.0
    );
    let line = format!(
        r#"{{"records_per_sec": {:.0}, "records_per_sec_min": {:.0}, "records_per_sec_max": {:.0}, "ratio_to_same_reader_loop": {:.3}, "spread_layout_records_per_sec": {:.0}, "cpu_cores_chains": {:.2}, "cpu_cores_spread": {:.2}, "peak_rss_kb": {{"{}": {:.0}, "{}": {:.0}}}, "file_bytes": {{"{}": {}, "{}": {}}}, "baselines": {{"same_reader_loop": {:.0}, "std_parse_loop": {:.0}, "operators_in_memory": {:.0}}}}}"#,
        chains.median,
        chains.min,
        chains.max,
        ratio.median,
        spread_layout.median,
        cpu_chains.median,
        cpu_spread.median,
        SMALL,
        rss_small.median,
        LARGE,
        rss_large.median,
        SMALL,
        small.bytes,
        LARGE,
        large.bytes,
        same.median,
        plain.median,
        in_memory.median
    );
    if json {
        println!("{line}");
    } else {
        println!("(run with -- --json for one JSON line)\n{line}");
    }
}
