//! The executor on small test kinds: same input, same output on every worker
//! layout and batch size; stop drains everything in flight; overflow
//! policies; bursts through diamonds of blocking rings.
#![allow(clippy::unwrap_used)]

mod common;

use common::{collected, draft, params, take, Collected, COLLECT, DOUBLE, FOLD};

use std::collections::BTreeMap;

use std::time::Duration;
use tandem::{Clock, RunOptions, Topology};
use tandem_core::plan::DEFAULT_CAPACITY;
use tandem_core::{
    Arity, BuildContext, BuildError, Builder, ChannelId, ChannelTable, EdgeSettings, EventTime,
    KindSpec, Layout, OutputSpec, Overflow, ParamDefault, ParamSpec, ParamType, ParamValue, Params,
    Plan, Record, Sink, SinkError, Source,
};

/// Emits `a` = n and `b` = 1000 + n every `step`, `count` times.
struct Counter {
    n: u64,
    count: u64,
    step: i64,
    a: ChannelId,
    b: ChannelId,
}

impl Source for Counter {
    fn poll(&mut self, now: EventTime, out: &mut Vec<Record>) -> Option<EventTime> {
        if self.count != 0 && self.n >= self.count {
            return None;
        }
        self.n += 1;
        out.push(Record::new(Default::default(), now, self.a, self.n as f64));
        out.push(Record::new(
            Default::default(),
            now,
            self.b,
            1000.0 + self.n as f64,
        ));
        Some(now.add_nanos(self.step))
    }
}

fn build_counter(ctx: &BuildContext<'_>) -> Result<Box<dyn Source>, BuildError> {
    Ok(Box::new(Counter {
        n: 0,
        count: ctx.params.int("count").unwrap_or(0) as u64,
        step: ctx.params.duration_ns("step").unwrap_or(1_000_000),
        a: ctx.outputs[0],
        b: ctx.outputs[1],
    }))
}

static COUNTER: KindSpec = KindSpec {
    name: "t.counter",
    version: 1,
    doc: "test counter",
    input_names: &[],
    arity: Arity::NONE,
    outputs: &[OutputSpec::named("a", ""), OutputSpec::named("b", "")],
    outputs_from: None,
    params: &[
        ParamSpec {
            name: "count",
            ty: ParamType::Int {
                min: 0,
                max: i64::MAX,
            },
            default: ParamDefault::Int(0),
            doc: "polls, 0 = forever",
        },
        ParamSpec {
            name: "step",
            ty: ParamType::Duration {
                min_ns: 1,
                max_ns: i64::MAX,
            },
            default: ParamDefault::Duration(1_000_000),
            doc: "poll period",
        },
    ],
    state_schema: None,
    migrations: &[],
    build: Builder::Source(build_counter),
};

/// Two counters at different rates; `x` doubles one, `fold` merges x with the
/// other counter's `b`; the sink merges fold with the first counter's `b`.
fn diamond(tag: &str, layout: Layout, capacity: usize) -> Plan {
    let mut ch = ChannelTable::new();
    let s1 = [ch.intern("s1.a", ""), ch.intern("s1.b", "")];
    let s2 = [ch.intern("s2.a", ""), ch.intern("s2.b", "")];
    let x = ch.intern("x", "");
    let fold = ch.intern("fold", "");
    let drafts = vec![
        draft(
            "s1",
            &COUNTER,
            params(&[
                ("count", ParamValue::Int(400)),
                ("step", ParamValue::Duration(1_000_000)),
            ]),
            vec![],
            s1.to_vec(),
            None,
        ),
        draft(
            "s2",
            &COUNTER,
            params(&[
                ("count", ParamValue::Int(150)),
                ("step", ParamValue::Duration(3_000_000)),
            ]),
            vec![],
            s2.to_vec(),
            None,
        ),
        draft("x", &DOUBLE, Params::new(), vec![s1[0]], vec![x], None),
        draft(
            "fold",
            &FOLD,
            Params::new(),
            vec![x, s2[1]],
            vec![fold],
            None,
        ),
        draft(
            "out",
            &COLLECT,
            params(&[("tag", ParamValue::Text(tag.into()))]),
            vec![fold, s1[1]],
            vec![],
            None,
        ),
    ];
    let edge = EdgeSettings {
        capacity,
        overflow: Overflow::Block,
    };
    Plan::assemble(ch, drafts, edge, &BTreeMap::new(), layout).unwrap()
}

fn run_virtual(plan: &Plan, batch: usize) -> tandem::Report {
    let options = RunOptions {
        clock: Clock::Virtual {
            start: EventTime::from_secs(1_767_225_600),
            speed: None,
        },
        span: None,
        hold_at_end: false,
        batch,
    };
    let topology = Topology::start(plan, options).unwrap();
    assert!(
        topology.wait_timeout(Duration::from_secs(60)),
        "the run did not finish"
    );
    topology.join().unwrap()
}

#[test]
fn same_input_gives_bit_identical_output_on_every_layout_and_batch_size() {
    let mut reference: Option<Vec<Record>> = None;
    for layout in [Layout::Single, Layout::Chains, Layout::Spread] {
        for (batch, capacity) in [(1024, DEFAULT_CAPACITY), (3, 4), (1, 2)] {
            let tag = format!("det-{}-{batch}", layout.name());
            let plan = diamond(&tag, layout, capacity);
            if layout == Layout::Spread {
                assert_eq!(plan.workers.len(), 4, "ingress + x + fold + out");
            }
            run_virtual(&plan, batch);
            let got = take(&tag);
            // 400 records of s1.b, and fold emits once per x (400) and s2.b (150).
            assert_eq!(got.len(), 400 + 400 + 150, "{tag}");
            assert!(
                got.windows(2).all(|w| w[0].seq <= w[1].seq),
                "{tag}: sink saw records out of order"
            );
            match &reference {
                None => reference = Some(got),
                Some(expected) => {
                    let same = expected.len() == got.len()
                        && expected.iter().zip(&got).all(|(a, b)| a.bit_eq(b));
                    assert!(same, "{tag} differs from the first layout");
                }
            }
        }
    }
}

#[test]
fn stats_count_what_each_node_did() {
    let plan = diamond("stats", Layout::Spread, 64);
    let report = run_virtual(&plan, 16);
    take("stats");
    assert_eq!(report.node("s1").unwrap().records_out, 800);
    assert_eq!(report.node("x").unwrap().records_in, 400);
    assert_eq!(report.node("fold").unwrap().records_in, 550);
    assert_eq!(report.node("out").unwrap().records_in, 950);
    assert!(report.node("out").unwrap().high_water() <= 64);
    assert_eq!(report.node("out").unwrap().drops(), 0);
    let table = report.table();
    assert!(table.contains("fold"), "{table}");
}

#[test]
fn stop_drains_what_is_in_flight_and_ends_every_worker() {
    let mut ch = ChannelTable::new();
    let s = [ch.intern("s.a", ""), ch.intern("s.b", "")];
    let drafts = vec![
        draft(
            "s",
            &COUNTER,
            params(&[
                ("count", ParamValue::Int(0)),
                ("step", ParamValue::Duration(100_000)),
            ]),
            vec![],
            s.to_vec(),
            None,
        ),
        draft(
            "out",
            &COLLECT,
            params(&[("tag", ParamValue::Text("stop".into()))]),
            vec![s[0]],
            vec![],
            Some("sinks".into()),
        ),
    ];
    let plan = Plan::assemble(
        ch,
        drafts,
        EdgeSettings::default(),
        &BTreeMap::new(),
        Layout::Chains,
    )
    .unwrap();
    assert_eq!(plan.workers.len(), 2);
    let topology = Topology::start(&plan, RunOptions::default()).unwrap();
    // The source never ends by itself: the run ends only because of stop().
    assert!(!topology.wait_timeout(Duration::from_millis(20)));
    topology.stop();
    assert!(
        topology.wait_timeout(Duration::from_secs(10)),
        "stop did not end the run"
    );
    let report = topology.join().unwrap();
    let got = take("stop");
    let produced = report.node("s").unwrap().records_out;
    assert!(produced > 0);
    // Every `a` record produced reached the sink: nothing in flight was lost.
    assert_eq!(got.len() as u64, produced / 2);
    let values: Vec<f64> = got.iter().map(|r| r.value).collect();
    let expected: Vec<f64> = (1..=got.len()).map(|n| n as f64).collect();
    assert_eq!(values, expected);
}

static BURST_DONE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Emits records 1..=1000 in one poll, then says it is done.
struct Burst(ChannelId, bool);
impl Source for Burst {
    fn poll(&mut self, now: EventTime, out: &mut Vec<Record>) -> Option<EventTime> {
        if self.1 {
            BURST_DONE.store(true, std::sync::atomic::Ordering::SeqCst);
            return None;
        }
        self.1 = true;
        out.extend((1..=1000).map(|n| Record::new(Default::default(), now, self.0, n as f64)));
        Some(now)
    }
}

static BURST: KindSpec = KindSpec {
    name: "t.burst",
    version: 1,
    doc: "burst",
    input_names: &[],
    arity: Arity::NONE,
    outputs: &[OutputSpec::main("")],
    outputs_from: None,
    params: &[],
    state_schema: None,
    migrations: &[],
    build: Builder::Source(|ctx| Ok(Box::new(Burst(ctx.outputs[0], false)))),
};

/// A sink whose first write waits until the burst source is done, so the
/// ring in front of it overflows.
struct Held(Collected);
impl Sink for Held {
    fn write(&mut self, records: &[Record]) -> Result<(), SinkError> {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !BURST_DONE.load(std::sync::atomic::Ordering::SeqCst) {
            assert!(
                std::time::Instant::now() < deadline,
                "the burst never finished"
            );
            std::thread::yield_now();
        }
        self.0
            .lock()
            .unwrap()
            .entry("held".into())
            .or_default()
            .extend_from_slice(records);
        Ok(())
    }
    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

static HELD: KindSpec = KindSpec {
    name: "t.held",
    version: 1,
    doc: "held",
    input_names: &[],
    arity: Arity::at_least(1),
    outputs: &[],
    outputs_from: None,
    params: &[],
    state_schema: None,
    migrations: &[],
    build: Builder::Sink(|_| Ok(Box::new(Held(collected())))),
};

fn overflow_run(overflow: Overflow) -> (Vec<f64>, u64) {
    // A blocking ring waits for the sink, so the sink is held only when the
    // policy drops instead.
    BURST_DONE.store(
        overflow == Overflow::Block,
        std::sync::atomic::Ordering::SeqCst,
    );
    let mut ch = ChannelTable::new();
    let c = ch.intern("burst", "");
    let drafts = vec![
        draft("burst", &BURST, Params::new(), vec![], vec![c], None),
        draft(
            "held",
            &HELD,
            Params::new(),
            vec![c],
            vec![],
            Some("slow".into()),
        ),
    ];
    let edge = EdgeSettings {
        capacity: 8,
        overflow,
    };
    let plan = Plan::assemble(ch, drafts, edge, &BTreeMap::new(), Layout::Chains).unwrap();
    let report = run_virtual(&plan, 1024);
    let got: Vec<f64> = take("held").iter().map(|r| r.value).collect();
    (got, report.node("held").unwrap().drops())
}

#[test]
fn overflow_policies_drop_what_they_say_and_count_it() {
    // One test, run in sequence: the burst flag is shared.
    let (got, drops) = overflow_run(Overflow::DropNewest);
    assert_eq!(
        got,
        (1..=8).map(f64::from).collect::<Vec<_>>(),
        "drop_newest keeps the first"
    );
    assert_eq!(drops, 992);

    let (got, drops) = overflow_run(Overflow::DropOldest);
    assert_eq!(
        got,
        (993..=1000).map(f64::from).collect::<Vec<_>>(),
        "drop_oldest keeps the newest"
    );
    assert_eq!(drops, 992);

    let (got, drops) = overflow_run(Overflow::Block);
    assert_eq!(
        got,
        (1..=1000).map(f64::from).collect::<Vec<_>>(),
        "block loses nothing"
    );
    assert_eq!(drops, 0);
}

/// Emits `count` pairs (a = n, b = n) in one poll, then ends: a burst far
/// larger than any ring.
struct Pairs {
    count: u64,
    a: ChannelId,
    b: ChannelId,
    done: bool,
}

impl Source for Pairs {
    fn poll(&mut self, now: EventTime, out: &mut Vec<Record>) -> Option<EventTime> {
        if self.done {
            return None;
        }
        self.done = true;
        for n in 1..=self.count {
            out.push(Record::new(Default::default(), now, self.a, n as f64));
            out.push(Record::new(Default::default(), now, self.b, n as f64));
        }
        Some(now.add_nanos(1))
    }
}

static PAIRS: KindSpec = KindSpec {
    name: "t.pairs",
    version: 1,
    doc: "burst of pairs",
    input_names: &[],
    arity: Arity::NONE,
    outputs: &[OutputSpec::named("a", ""), OutputSpec::named("b", "")],
    outputs_from: None,
    params: &[ParamSpec {
        name: "count",
        ty: ParamType::Int {
            min: 0,
            max: i64::MAX,
        },
        default: ParamDefault::Int(0),
        doc: "pairs",
    }],
    state_schema: None,
    migrations: &[],
    build: Builder::Source(|ctx| {
        Ok(Box::new(Pairs {
            count: ctx.params.int("count").unwrap_or(0) as u64,
            a: ctx.outputs[0],
            b: ctx.outputs[1],
            done: false,
        }))
    }),
};

/// s.a -> x -> fold, s.b -> fold: a diamond whose two paths meet in a merge.
fn burst_diamond(
    tag: &str,
    count: i64,
    layout: Layout,
    capacity: usize,
    batch: usize,
) -> Vec<Record> {
    let mut ch = ChannelTable::new();
    let s = [ch.intern("s.a", ""), ch.intern("s.b", "")];
    let x = ch.intern("x", "");
    let fold = ch.intern("fold", "");
    let drafts = vec![
        draft(
            "s",
            &PAIRS,
            params(&[("count", ParamValue::Int(count))]),
            vec![],
            s.to_vec(),
            None,
        ),
        draft("x", &DOUBLE, Params::new(), vec![s[0]], vec![x], None),
        draft(
            "fold",
            &FOLD,
            Params::new(),
            vec![x, s[1]],
            vec![fold],
            None,
        ),
        draft(
            "out",
            &COLLECT,
            params(&[("tag", ParamValue::Text(tag.into()))]),
            vec![fold],
            vec![],
            None,
        ),
    ];
    let edge = EdgeSettings {
        capacity,
        overflow: Overflow::Block,
    };
    let plan = Plan::assemble(ch, drafts, edge, &BTreeMap::new(), layout).unwrap();
    let options = RunOptions {
        clock: Clock::Virtual {
            start: EventTime::from_secs(1_767_225_600),
            speed: None,
        },
        span: None,
        hold_at_end: false,
        batch,
    };
    let topology = Topology::start(&plan, options).unwrap();
    let finished = topology.wait_timeout(Duration::from_secs(30));
    if !finished {
        topology.stop();
    }
    assert!(
        finished,
        "{tag}: a burst through a diamond of blocking rings deadlocked"
    );
    topology.join().unwrap();
    take(tag)
}

#[test]
fn bursts_larger_than_any_ring_cross_a_diamond_of_blocking_rings() {
    let reference = burst_diamond("burst-single", 2_000, Layout::Single, 4, 1);
    assert_eq!(
        reference.len(),
        4_000,
        "fold emits once per x and once per s.b"
    );
    for (layout, capacity, batch) in [
        (Layout::Spread, 4, 1),
        (Layout::Spread, 16, 7),
        (Layout::Chains, 4, 3),
        (Layout::Spread, DEFAULT_CAPACITY, 1024),
    ] {
        let tag = format!("burst-{}-{capacity}-{batch}", layout.name());
        let got = burst_diamond(&tag, 2_000, layout, capacity, batch);
        let same =
            got.len() == reference.len() && got.iter().zip(&reference).all(|(a, b)| a.bit_eq(b));
        assert!(same, "{tag} differs from the single-worker run");
    }
    // The reviewer's case at default sizes: a 40k-record burst.
    let big = burst_diamond("burst-big", 20_000, Layout::Spread, DEFAULT_CAPACITY, 1024);
    assert_eq!(big.len(), 40_000);
}
