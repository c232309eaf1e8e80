//! Throughput and latency of a 5-vertex chain through the tandem executor,
//! against the same operators over crossbeam and std channels, and against a
//! raw `ringbuf` slice transfer, all in this one process.
//!
//! `cargo bench --bench pipeline -- --json` prints human-readable figures
//! and, as its last line, one JSON object. Set `TANDEM_BENCH_RECORDS` to
//! change the number of records per throughput run (default 40 million).

use hdrhistogram::Histogram;
use ringbuf::traits::{Consumer, Producer, Split};
use ringbuf::HeapRb;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;
use tandem::{Clock, RunOptions, Topology};
use tandem_core::graph;
use tandem_core::{
    Arity, BuildContext, BuildError, Builder, ChannelId, EventTime, KindSpec, OutputSpec,
    ParamDefault, ParamSpec, ParamType, Record, Registry, Seq, Sink, SinkError, Source, Vertex,
};

/// Records per source poll and per pass over a ring, in every variant.
const BATCH: usize = 4096;
/// Capacity of the ring between the two threads, in every variant that has one.
const RING: usize = 16384;

fn records_per_run() -> u64 {
    std::env::var("TANDEM_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40_000_000)
}

/// One clock for stamping and measuring latency.
fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

fn since_origin_ns() -> i64 {
    origin().elapsed().as_nanos() as i64
}

fn value_of(i: u64) -> f64 {
    // Changes every record, so a zero-width deadband passes everything; a
    // mask, not a modulo, so generating costs no division.
    (i & 0xffff) as f64 * 0.25
}

/// Emits `count` records, `batch` per poll. With `stamp`, a record's event
/// time is the moment it leaves the source, and polls are `every` apart.
struct Gen {
    next: u64,
    count: u64,
    batch: usize,
    stamp: bool,
    every: i64,
    channel: ChannelId,
}

impl Source for Gen {
    fn poll(&mut self, now: EventTime, out: &mut Vec<Record>) -> Option<EventTime> {
        if self.next >= self.count {
            return None;
        }
        let n = (self.count - self.next).min(self.batch as u64);
        for _ in 0..n {
            let time = if self.stamp {
                EventTime(since_origin_ns())
            } else {
                EventTime(self.next as i64)
            };
            out.push(Record::new(
                Seq::ZERO,
                time,
                self.channel,
                value_of(self.next),
            ));
            self.next += 1;
        }
        Some(now.add_nanos(self.every))
    }
}

static GEN: KindSpec = KindSpec {
    name: "bench.gen",
    version: 1,
    doc: "benchmark generator",
    input_names: &[],
    arity: Arity::NONE,
    outputs: &[OutputSpec::named("value", "")],
    outputs_from: None,
    params: &[
        ParamSpec {
            name: "count",
            ty: ParamType::Int {
                min: 0,
                max: i64::MAX,
            },
            default: ParamDefault::Required,
            doc: "records",
        },
        ParamSpec {
            name: "batch",
            ty: ParamType::Int {
                min: 1,
                max: 1 << 20,
            },
            default: ParamDefault::Int(BATCH as i64),
            doc: "records per poll",
        },
        ParamSpec {
            name: "stamp",
            ty: ParamType::Bool,
            default: ParamDefault::Bool(false),
            doc: "stamp wall time",
        },
        ParamSpec {
            name: "every",
            ty: ParamType::Duration {
                min_ns: 0,
                max_ns: i64::MAX,
            },
            default: ParamDefault::Duration(0),
            doc: "poll period",
        },
    ],
    state_schema: None,
    migrations: &[],
    build: Builder::Source(build_gen),
};

fn build_gen(ctx: &BuildContext<'_>) -> Result<Box<dyn Source>, BuildError> {
    let p = ctx.params;
    Ok(Box::new(Gen {
        next: 0,
        count: p.int("count").unwrap_or(0) as u64,
        batch: p.int("batch").unwrap_or(BATCH as i64) as usize,
        stamp: p.bool("stamp").unwrap_or(false),
        every: p.duration_ns("every").unwrap_or(0),
        channel: ctx.outputs[0],
    }))
}

/// Records a latency run lets pass before it measures.
const WARM_UP: u64 = 20_000;

/// What the counting sink saw.
static SEEN: AtomicU64 = AtomicU64::new(0);
static LATENCY: Mutex<Option<Histogram<u64>>> = Mutex::new(None);

/// Counts records; with `latency`, records how long each took from the source.
struct Count {
    latency: Option<Histogram<u64>>,
    seen: u64,
}

impl Sink for Count {
    fn write(&mut self, records: &[Record]) -> Result<(), SinkError> {
        if let Some(h) = &mut self.latency {
            let now = since_origin_ns();
            // Steady state only: the first records also time thread start-up
            // and the first touches of fresh ring pages.
            let warm = (WARM_UP.saturating_sub(self.seen) as usize).min(records.len());
            for r in &records[warm..] {
                h.saturating_record(now.saturating_sub(r.time.0).max(1) as u64);
            }
        }
        self.seen += records.len() as u64;
        Ok(())
    }
    fn flush(&mut self) -> Result<(), SinkError> {
        // Called whenever the worker runs out of work; the figures are
        // handed over once, when the run ends and the sink is dropped.
        Ok(())
    }
}

impl Drop for Count {
    fn drop(&mut self) {
        SEEN.store(self.seen, Ordering::Relaxed);
        if let Some(h) = self.latency.take() {
            *LATENCY.lock().unwrap_or_else(|e| e.into_inner()) = Some(h);
        }
    }
}

static COUNT: KindSpec = KindSpec {
    name: "bench.count",
    version: 1,
    doc: "benchmark counting sink",
    input_names: &[],
    arity: Arity::at_least(1),
    outputs: &[],
    outputs_from: None,
    params: &[ParamSpec {
        name: "latency",
        ty: ParamType::Bool,
        default: ParamDefault::Bool(false),
        doc: "measure latency",
    }],
    state_schema: None,
    migrations: &[],
    build: Builder::Sink(|ctx| {
        Ok(Box::new(Count {
            latency: ctx
                .params
                .bool("latency")
                .unwrap_or(false)
                .then(new_histogram),
            seen: 0,
        }))
    }),
};

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("constant bounds are valid")
}

fn registry() -> Registry {
    let mut r = tandem_nodes::registry();
    r.register(&[&GEN, &COUNT]);
    r
}

/// The chain as a graph file: source and scale on the ingress worker (which
/// also stamps sequence numbers); range check, deadband, EWMA and the
/// counting sink on a second worker.
fn graph_text(count: u64, batch: usize, latency: bool, every: &str) -> String {
    format!(
        r#"
[graph]
name = "pipeline-bench"
layout = "chains"
capacity = {RING}

[sources.gen]
kind = "bench.gen"
count = {count}
batch = {batch}
stamp = {latency}
every = "{every}"

[vertices.scale]
kind = "scale"
inputs = ["gen.value"]
factor = 1.5
offset = 2.0

[vertices.range]
kind = "range_check"
inputs = ["scale"]
min = -1e12
max = 1e12
worker = "w1"

[vertices.deadband]
kind = "deadband"
inputs = ["range"]
band = 0.0
worker = "w1"

[vertices.ewma]
kind = "ewma"
inputs = ["deadband"]
alpha = 0.125
worker = "w1"

[sinks.count]
kind = "bench.count"
inputs = ["ewma"]
latency = {latency}
worker = "w1"
"#
    )
}

fn run_tandem(
    count: u64,
    batch: usize,
    latency: bool,
    clock: Clock,
    every: &str,
) -> (f64, Option<Histogram<u64>>) {
    let text = graph_text(count, batch, latency, every);
    let loaded = match graph::load("pipeline-bench.toml", text.as_bytes(), &registry()) {
        Ok(l) => l,
        Err(d) => panic!("bench graph is invalid:\n{d}"),
    };
    assert_eq!(loaded.plan.workers.len(), 2, "the bench runs on 2 workers");
    SEEN.store(0, Ordering::Relaxed);
    let options = RunOptions {
        clock,
        span: None,
        hold_at_end: false,
        batch: BATCH,
    };
    let start = Instant::now();
    let topology = Topology::start(&loaded.plan, options).expect("bench graph starts");
    topology.finished().recv().ok();
    let elapsed = start.elapsed();
    topology.join().expect("bench run completes");
    let seen = SEEN.load(Ordering::Relaxed);
    assert_eq!(seen, count, "the sink must see every record");
    let hist = LATENCY.lock().unwrap_or_else(|e| e.into_inner()).take();
    (seen as f64 / elapsed.as_secs_f64(), hist)
}

/// The operators of one thread, in order.
type Stage = Vec<Box<dyn Vertex>>;

/// The same four operators, built from the same registry.
fn chain() -> (Stage, Stage) {
    let text = graph_text(1, 1, false, "0s");
    let loaded = graph::load("chain.toml", text.as_bytes(), &registry()).expect("valid");
    let mut first = Vec::new();
    let mut second = Vec::new();
    for node in &loaded.plan.nodes {
        let Builder::Vertex(build) = node.kind.build else {
            continue;
        };
        let ctx = BuildContext {
            id: &node.id,
            params: &node.params,
            inputs: &node.inputs,
            outputs: &node.outputs,
            channels: &loaded.plan.channels,
        };
        let v = build(&ctx).expect("builds");
        if node.pin.is_some() {
            second.push(v)
        } else {
            first.push(v)
        }
    }
    assert_eq!((first.len(), second.len()), (1, 3));
    (first, second)
}

fn input_channel() -> ChannelId {
    let text = graph_text(1, 1, false, "0s");
    let loaded = graph::load("chain.toml", text.as_bytes(), &registry()).expect("valid");
    loaded
        .plan
        .channels
        .get("gen.value")
        .expect("gen.value exists")
}

fn run_stage(
    stage: &mut [Box<dyn Vertex>],
    input: &[Record],
    a: &mut Vec<Record>,
    b: &mut Vec<Record>,
) {
    a.clear();
    a.extend_from_slice(input);
    for v in stage.iter_mut() {
        b.clear();
        v.process(a, b);
        std::mem::swap(a, b);
    }
}

fn generate(channel: ChannelId, from: u64, n: usize, into: &mut Vec<Record>) {
    into.clear();
    for i in from..from + n as u64 {
        into.push(Record::new(
            Seq(i + 1),
            EventTime(i as i64),
            channel,
            value_of(i),
        ));
    }
}

/// The chain on two threads with records sent one at a time over a channel.
fn run_channel<S, R>(
    count: u64,
    (tx, rx): (S, R),
    send: fn(&S, Record),
    recv_batch: fn(&R, &mut Vec<Record>) -> bool,
) -> f64
where
    S: Send + 'static,
    R: Send + 'static,
{
    let (mut first, mut second) = chain();
    let channel = input_channel();
    let start = Instant::now();
    let consumer = std::thread::spawn(move || {
        let (mut inbox, mut a, mut b) = (Vec::with_capacity(BATCH), Vec::new(), Vec::new());
        let mut seen = 0u64;
        while recv_batch(&rx, &mut inbox) {
            run_stage(&mut second, &inbox, &mut a, &mut b);
            seen += a.len() as u64;
            inbox.clear();
        }
        seen
    });
    let (mut batch, mut a, mut b) = (Vec::with_capacity(BATCH), Vec::new(), Vec::new());
    let mut next = 0u64;
    while next < count {
        let n = (count - next).min(BATCH as u64) as usize;
        generate(channel, next, n, &mut batch);
        next += n as u64;
        run_stage(&mut first, &batch, &mut a, &mut b);
        for r in &a {
            send(&tx, *r);
        }
    }
    drop(tx);
    let seen = consumer.join().expect("consumer thread");
    assert_eq!(seen, count);
    count as f64 / start.elapsed().as_secs_f64()
}

fn crossbeam_baseline(count: u64) -> f64 {
    run_channel(
        count,
        crossbeam_channel::bounded::<Record>(RING),
        |tx, r| tx.send(r).expect("consumer alive"),
        |rx, inbox| {
            let Ok(first) = rx.recv() else { return false };
            inbox.push(first);
            while inbox.len() < BATCH {
                match rx.try_recv() {
                    Ok(r) => inbox.push(r),
                    Err(_) => break,
                }
            }
            true
        },
    )
}

fn mpsc_baseline(count: u64) -> f64 {
    run_channel(
        count,
        std::sync::mpsc::sync_channel::<Record>(RING),
        |tx, r| tx.send(r).expect("consumer alive"),
        |rx, inbox| {
            let Ok(first) = rx.recv() else { return false };
            inbox.push(first);
            while inbox.len() < BATCH {
                match rx.try_recv() {
                    Ok(r) => inbox.push(r),
                    Err(_) => break,
                }
            }
            true
        },
    )
}

/// Records moved between two threads in slices through a bare ringbuf: no operators.
fn raw_ringbuf(count: u64) -> f64 {
    let (mut prod, mut cons) = HeapRb::<Record>::new(RING).split();
    let channel = input_channel();
    let start = Instant::now();
    let consumer = std::thread::spawn(move || {
        let mut buf = vec![Record::new(Seq::ZERO, EventTime(0), channel, 0.0); BATCH];
        let mut seen = 0u64;
        let mut checksum = 0.0;
        while seen < count {
            let n = cons.pop_slice(&mut buf);
            if n == 0 {
                std::hint::spin_loop();
                continue;
            }
            checksum += buf[n - 1].value;
            seen += n as u64;
        }
        std::hint::black_box(checksum);
        seen
    });
    let mut batch = Vec::with_capacity(BATCH);
    let mut next = 0u64;
    while next < count {
        let n = (count - next).min(BATCH as u64) as usize;
        generate(channel, next, n, &mut batch);
        next += n as u64;
        let mut rest: &[Record] = &batch;
        while !rest.is_empty() {
            let pushed = prod.push_slice(rest);
            rest = &rest[pushed..];
            if pushed == 0 {
                std::hint::spin_loop();
            }
        }
    }
    let seen = consumer.join().expect("consumer thread");
    assert_eq!(seen, count);
    count as f64 / start.elapsed().as_secs_f64()
}

fn best_of<F: FnMut() -> f64>(runs: usize, mut f: F) -> f64 {
    (0..runs).map(|_| f()).fold(0.0, f64::max)
}

fn main() {
    let json = std::env::args().any(|a| a == "--json");
    let count = records_per_run();
    let _ = origin();
    let mrs = |r: f64| r / 1e6;

    let tandem_rate = best_of(3, || {
        run_tandem(
            count,
            BATCH,
            false,
            Clock::Virtual {
                start: EventTime(0),
                speed: None,
            },
            "0s",
        )
        .0
    });
    println!(
        "tandem executor, 2 workers:      {:>8.1} M records/s",
        mrs(tandem_rate)
    );
    let crossbeam = best_of(3, || crossbeam_baseline(count / 4));
    println!(
        "same chain over crossbeam:       {:>8.1} M records/s",
        mrs(crossbeam)
    );
    let mpsc = best_of(3, || mpsc_baseline(count / 4));
    println!(
        "same chain over std mpsc:        {:>8.1} M records/s",
        mrs(mpsc)
    );
    let raw = best_of(3, || raw_ringbuf(count));
    println!(
        "raw ringbuf slices, no operators:{:>8.1} M records/s",
        mrs(raw)
    );

    // Latency at a paced rate (one record every 2 us) where queues stay short,
    // after a warm-up of WARM_UP records.
    let (_, paced) = run_tandem(200_000 + WARM_UP, 1, true, Clock::Wall, "2us");
    let paced = paced.expect("latency histogram");
    let q = |h: &Histogram<u64>, p: f64| h.value_at_quantile(p);
    println!(
        "latency source->sink at 500k records/s: p50 {} ns, p99 {} ns, p999 {} ns",
        q(&paced, 0.5),
        q(&paced, 0.99),
        q(&paced, 0.999)
    );
    let (_, saturated) = run_tandem(
        count / 4,
        BATCH,
        true,
        Clock::Virtual {
            start: EventTime(0),
            speed: None,
        },
        "0s",
    );
    if let Some(h) = saturated {
        println!(
            "latency at saturation (queueing in full rings): p50 {} ns, p99 {} ns",
            q(&h, 0.5),
            q(&h, 0.99)
        );
    }
    println!(
        "ratios: {:.1}x crossbeam, {:.1}x std mpsc, {:.0}% of raw ringbuf",
        tandem_rate / crossbeam,
        tandem_rate / mpsc,
        100.0 * tandem_rate / raw
    );
    let line = format!(
        r#"{{"records_per_sec": {:.0}, "p50_ns": {}, "p99_ns": {}, "p999_ns": {}, "baselines": {{"crossbeam_channel": {:.0}, "std_mpsc": {:.0}, "raw_ringbuf": {:.0}}}}}"#,
        tandem_rate,
        q(&paced, 0.5),
        q(&paced, 0.99),
        q(&paced, 0.999),
        crossbeam,
        mpsc,
        raw
    );
    if json {
        println!("{line}");
    } else {
        println!("(run with -- --json for one JSON line)\n{line}");
    }
}
