//! Relaying sources and barrier-aligned snapshots of a running graph.
#![allow(clippy::unwrap_used)]

mod common;

use common::{collected, draft, params, take, COLLECT, DOUBLE};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tandem::{RunOptions, Topology};
use tandem_core::{
    Arity, BuildContext, Builder, ChannelId, ChannelTable, EdgeSettings, EventTime, KindSpec,
    Layout, OutputSpec, Overflow, ParamValue, Params, Plan, Record, Source,
};

/// Relays batches that already carry sequence numbers, sent from another
/// thread; polled only when woken (its timer is an hour away).
struct Relay {
    rx: crossbeam_channel::Receiver<(Vec<Record>, tandem_core::Seq)>,
    waker_slot: Arc<Mutex<Option<std::task::Waker>>>,
    frontier: tandem_core::Seq,
    channel: ChannelId,
}

impl Source for Relay {
    fn poll(&mut self, now: EventTime, out: &mut Vec<Record>) -> Option<EventTime> {
        loop {
            match self.rx.try_recv() {
                Ok((records, frontier)) => {
                    out.extend(records.into_iter().map(|mut r| {
                        r.channel = self.channel;
                        r
                    }));
                    self.frontier = frontier;
                }
                Err(crossbeam_channel::TryRecvError::Empty) => {
                    return Some(now.add_nanos(3_600_000_000_000))
                }
                Err(crossbeam_channel::TryRecvError::Disconnected) => return None,
            }
        }
    }
    fn relayed_frontier(&self) -> Option<tandem_core::Seq> {
        Some(self.frontier)
    }
    fn set_waker(&mut self, waker: std::task::Waker) {
        *self.waker_slot.lock().unwrap() = Some(waker);
    }
}

type RelayFeed = (
    crossbeam_channel::Receiver<(Vec<Record>, tandem_core::Seq)>,
    Arc<Mutex<Option<std::task::Waker>>>,
);
static RELAY_FEED: Mutex<Option<RelayFeed>> = Mutex::new(None);

static RELAY: KindSpec = KindSpec {
    name: "t.relay",
    version: 1,
    doc: "relay",
    input_names: &[],
    arity: Arity::NONE,
    outputs: &[OutputSpec::main("")],
    outputs_from: None,
    params: &[],
    state_schema: None,
    migrations: &[],
    build: Builder::Source(|ctx| {
        let (rx, waker_slot) = RELAY_FEED.lock().unwrap().take().unwrap();
        Ok(Box::new(Relay {
            rx,
            waker_slot,
            frontier: tandem_core::Seq::ZERO,
            channel: ctx.outputs[0],
        }))
    }),
};

#[test]
fn a_relaying_source_keeps_sequence_numbers_and_is_polled_when_woken() {
    let _turn = RELAY_TESTS.lock().unwrap_or_else(|e| e.into_inner());
    let (tx, rx) = crossbeam_channel::unbounded();
    let waker_slot = Arc::new(Mutex::new(None));
    *RELAY_FEED.lock().unwrap() = Some((rx, waker_slot.clone()));
    let mut ch = ChannelTable::new();
    let c = ch.intern("relay", "");
    let d = ch.intern("x", "");
    let drafts = vec![
        draft("relay", &RELAY, Params::new(), vec![], vec![c], None),
        draft("x", &DOUBLE, Params::new(), vec![c], vec![d], None),
        draft(
            "out",
            &COLLECT,
            params(&[("tag", ParamValue::Text("relay".into()))]),
            vec![d],
            vec![],
            Some("sink".into()),
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
    let topology = Topology::start(&plan, RunOptions::default()).unwrap();
    let waker = waker_slot
        .lock()
        .unwrap()
        .clone()
        .expect("the ingress hands out a waker");
    for (i, seqs) in [[10u64, 20, 30], [31, 35, 40]].iter().enumerate() {
        let batch = seqs
            .iter()
            .map(|&s| Record::new(tandem_core::Seq(s), EventTime(0), ChannelId(0), s as f64))
            .collect();
        tx.send((batch, tandem_core::Seq(seqs[2]))).unwrap();
        waker.wake_by_ref();
        // Without the wake the source would not be polled for an hour.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while collected().lock().unwrap().get("relay").map_or(0, Vec::len) < 3 * (i + 1) {
            assert!(
                std::time::Instant::now() < deadline,
                "batch {i} was not delivered"
            );
            std::thread::yield_now();
        }
    }
    drop(tx);
    waker.wake_by_ref();
    assert!(topology.wait_timeout(Duration::from_secs(10)));
    topology.join().unwrap();
    let got: Vec<(u64, f64)> = take("relay").iter().map(|r| (r.seq.0, r.value)).collect();
    assert_eq!(
        got,
        vec![
            (10, 20.0),
            (20, 40.0),
            (30, 60.0),
            (31, 62.0),
            (35, 70.0),
            (40, 80.0)
        ]
    );
}

/// Relay tests share `RELAY_FEED`; they take turns.
static RELAY_TESTS: Mutex<()> = Mutex::new(());

/// relay -> energy (`integrate` v1, per second) -> collect, a worker each.
struct EnergyRig {
    topology: Topology,
    plan: Plan,
    tx: crossbeam_channel::Sender<(Vec<Record>, tandem_core::Seq)>,
    waker: std::task::Waker,
    relay: ChannelId,
    energy: ChannelId,
    params: Params,
    kind: &'static KindSpec,
    tag: String,
}

impl EnergyRig {
    fn start(tag: &str) -> EnergyRig {
        let (tx, rx) = crossbeam_channel::unbounded();
        let waker_slot = Arc::new(Mutex::new(None));
        *RELAY_FEED.lock().unwrap() = Some((rx, waker_slot.clone()));
        let kind = tandem_nodes::registry().get("integrate", Some(1)).unwrap();
        let mut ch = ChannelTable::new();
        let relay = ch.intern("relay", "");
        let energy = ch.intern("energy", "");
        let mut p = Params::new();
        p.insert("per", ParamValue::Text("s".into()));
        p.insert("max_gap", ParamValue::Duration(60_000_000_000));
        let drafts = vec![
            draft("relay", &RELAY, Params::new(), vec![], vec![relay], None),
            draft("energy", kind, p.clone(), vec![relay], vec![energy], None),
            draft(
                "out",
                &COLLECT,
                params(&[("tag", ParamValue::Text(tag.into()))]),
                vec![energy],
                vec![],
                None,
            ),
        ];
        let edge = EdgeSettings {
            capacity: 16,
            overflow: Overflow::Block,
        };
        let plan = Plan::assemble(ch, drafts, edge, &BTreeMap::new(), Layout::Spread).unwrap();
        assert_eq!(plan.workers.len(), 3);
        let topology = Topology::start(&plan, RunOptions::default()).unwrap();
        let waker = waker_slot.lock().unwrap().clone().unwrap();
        EnergyRig {
            topology,
            plan,
            tx,
            waker,
            relay,
            energy,
            params: p,
            kind,
            tag: tag.into(),
        }
    }

    /// Records `from..=to`, one a second, value = seq.
    fn records(&self, from: u64, to: u64) -> Vec<Record> {
        (from..=to)
            .map(|s| {
                Record::new(
                    tandem_core::Seq(s),
                    EventTime::from_secs(s as i64),
                    self.relay,
                    s as f64,
                )
            })
            .collect()
    }

    /// Hands records `from..=to` to the relay and wakes the ingress.
    fn feed(&self, from: u64, to: u64) {
        self.tx
            .send((self.records(from, to), tandem_core::Seq(to)))
            .unwrap();
        self.waker.wake_by_ref();
    }

    /// The snapshot of a fresh integrator fed exactly `1..=upto`.
    fn reference(&self, upto: u64) -> tandem_core::Snapshot {
        let ctx = BuildContext {
            id: "energy",
            params: &self.params,
            inputs: &[self.relay],
            outputs: &[self.energy],
            channels: &self.plan.channels,
        };
        let Builder::Vertex(build) = self.kind.build else {
            unreachable!()
        };
        let mut v = build(&ctx).unwrap();
        v.process(&self.records(1, upto), &mut Vec::new());
        v.snapshot().unwrap()
    }

    /// Ends the input, waits for the run, and returns the sequence numbers the sink saw.
    fn finish(self) -> Vec<u64> {
        drop(self.tx);
        self.waker.wake_by_ref();
        assert!(self.topology.wait_timeout(Duration::from_secs(10)));
        self.topology.join().unwrap();
        take(&self.tag).iter().map(|r| r.seq.0).collect()
    }
}

#[test]
fn a_barrier_snapshot_holds_exactly_the_records_up_to_it() {
    let _turn = RELAY_TESTS.lock().unwrap_or_else(|e| e.into_inner());
    let mut rig = EnergyRig::start("barrier");
    rig.feed(1, 60);
    // The rest arrives while the barrier is pending; only up to 100 may pass.
    let placed = rig.topology.place_barrier(tandem_core::Seq(100));
    let feeder = {
        let (tx, waker) = (rig.tx.clone(), rig.waker.clone());
        let batches = [rig.records(61, 100), rig.records(101, 150)];
        std::thread::spawn(move || {
            for batch in batches {
                let to = batch.last().unwrap().seq;
                tx.send((batch, to)).unwrap();
                waker.wake_by_ref();
            }
        })
    };
    let snapshots = rig
        .topology
        .barrier_snapshots(placed, Duration::from_secs(20))
        .unwrap();
    feeder.join().unwrap();
    assert_eq!(snapshots.at, tandem_core::Seq(100));
    assert_eq!(snapshots.vertices.len(), 1, "one stateful vertex");
    assert_eq!(snapshots.vertices["energy"], rig.reference(100));
    // A barrier the ingress has passed is refused, saying where it is.
    let err = rig
        .topology
        .snapshot_at(tandem_core::Seq(50), Duration::from_secs(5))
        .unwrap_err();
    assert!(err.to_string().contains("behind the ingress"), "{err}");
    // The stream went on past the barrier.
    assert_eq!(rig.finish(), (1..=150).collect::<Vec<_>>());
}

#[test]
fn a_barrier_placed_inside_what_the_last_one_held_snapshots_at_its_own_position() {
    let _turn = RELAY_TESTS.lock().unwrap_or_else(|e| e.into_inner());
    // Whether the ingress released the held records before the second
    // barrier arrives is a race; repeat to see both sides of it.
    for _ in 0..10 {
        let mut rig = EnergyRig::start("rebarrier");
        let first = rig.topology.place_barrier(tandem_core::Seq(100));
        rig.feed(1, 150);
        rig.topology
            .barrier_snapshots(first, Duration::from_secs(20))
            .unwrap();
        // At once, before the ingress may have released 101..150: either the
        // snapshot is exactly the state at 120, or the barrier is refused as
        // passed; never a snapshot of another state.
        match rig
            .topology
            .snapshot_at(tandem_core::Seq(120), Duration::from_secs(20))
        {
            Ok(second) => {
                assert_eq!(second.at, tandem_core::Seq(120));
                assert_eq!(
                    second.vertices["energy"],
                    rig.reference(120),
                    "not the state at 120"
                );
            }
            Err(tandem::BarrierError::Passed { frontier, .. }) => {
                assert_eq!(frontier, tandem_core::Seq(150))
            }
            Err(other) => panic!("{other}"),
        }
        assert_eq!(rig.finish(), (1..=150).collect::<Vec<_>>());
    }
}
