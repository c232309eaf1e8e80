//! Per-node metrics: records in and out, drops, ring high-water mark, and
//! processing latency in an hdrhistogram.

use crate::metrics::live::LiveNode;
use crate::ring::RingCounters;
use hdrhistogram::Histogram;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;
use tandem_core::Role;

/// What reading the clock twice costs, about, in nanoseconds.
const TIMING_COST_NS: u64 = 50;
/// Timing takes at most about 1/`OVERHEAD` of a node's time.
const OVERHEAD: u64 = 64;
/// At least one call in this many is timed.
const MAX_STRIDE: u32 = 256;

/// Which calls of a node are timed: one in `stride`, where `stride` keeps
/// reading the clock to about 1/64 of the node's time (1 for calls longer
/// than 1.6 us, up to 256 for calls of tens of nanoseconds). Which
/// call is timed never depends on that call's own duration, so each timed
/// call stands for `stride` calls in the histogram.
#[derive(Debug)]
struct Sampler {
    /// Calls to leave untimed before the next timed one.
    skip: u32,
    /// How many calls the next timed one stands for.
    stride: u32,
}

impl Sampler {
    /// The first call is timed.
    fn new() -> Sampler {
        Sampler { skip: 0, stride: 1 }
    }

    /// The stride after a timed call that took `nanos`.
    fn stride_after(nanos: u64) -> u32 {
        let stride = (TIMING_COST_NS * OVERHEAD) / nanos.max(1);
        u32::try_from(stride)
            .unwrap_or(MAX_STRIDE)
            .clamp(1, MAX_STRIDE)
    }
}

/// Metrics of one node, kept by the worker that runs it.
#[derive(Debug)]
pub struct NodeStats {
    /// Node id.
    pub id: String,
    /// Source, vertex or sink.
    pub role: Role,
    /// Worker index.
    pub worker: usize,
    /// Records consumed.
    pub records_in: u64,
    /// Records produced.
    pub records_out: u64,
    /// Errors (source bus errors, sink write errors).
    pub errors: u64,
    /// Nanoseconds per `process`/`write` call that had input.
    pub latency_ns: Histogram<u64>,
    /// Counters of the rings into this node.
    pub(crate) rings_in: Vec<Arc<RingCounters>>,
    /// The same figures, for readers on other threads while the node runs.
    live: Arc<LiveNode>,
    /// Which calls are timed for `latency_ns`.
    sampler: Sampler,
}

impl NodeStats {
    pub(crate) fn new(id: &str, role: Role, worker: usize) -> NodeStats {
        NodeStats {
            id: id.to_owned(),
            role,
            worker,
            records_in: 0,
            records_out: 0,
            errors: 0,
            // Three significant figures from 1 ns to 60 s; a value past the
            // top is clamped rather than lost.
            latency_ns: Histogram::new_with_bounds(1, 60_000_000_000, 3)
                .expect("constant histogram bounds are valid"),
            rings_in: Vec::new(),
            live: LiveNode::register(id, role),
            sampler: Sampler::new(),
        }
    }

    /// Starts a `process`/`write`/`poll` call: the clock when this call is
    /// one of those timed (see [`Sampler`]), for [`NodeStats::end_call`].
    #[inline]
    pub(crate) fn start_call(&mut self) -> Option<Instant> {
        match self.sampler.skip.checked_sub(1) {
            Some(skip) => {
                self.sampler.skip = skip;
                None
            }
            None => Some(Instant::now()),
        }
    }

    /// Ends a call begun with [`NodeStats::start_call`]. A timed call goes
    /// into the histogram standing for the calls left untimed before it,
    /// and publishes the live figures;
    /// an untimed one only publishes the counters.
    #[inline]
    pub(crate) fn end_call(&mut self, started: Option<Instant>) {
        if let Some(started) = started {
            let nanos = u64::try_from(started.elapsed().as_nanos())
                .unwrap_or(u64::MAX)
                .max(1);
            self.record_weighted(nanos, u64::from(self.sampler.stride));
            self.sampler.stride = Sampler::stride_after(nanos);
            self.sampler.skip = self.sampler.stride - 1;
        }
        // Three stores to this node's own figures; drops and high-water
        // marks are read from the rings when sampled.
        self.live
            .store(self.records_in, self.records_out, self.errors);
    }

    /// Counts the ring into this node that `counters` belong to.
    pub(crate) fn add_ring_in(&mut self, counters: Arc<RingCounters>) {
        self.live.attach_ring(counters.clone());
        self.rings_in.push(counters);
    }

    /// Records a call of `nanos` standing for `calls` calls, in the
    /// histogram and the live figures ([`crate::metrics::live`]).
    fn record_weighted(&mut self, nanos: u64, calls: u64) {
        self.latency_ns.saturating_record_n(nanos, calls);
        self.live.record_latency_n(nanos, calls);
    }

    /// Records dropped by overflow policies on the rings into this node.
    pub fn drops(&self) -> u64 {
        self.rings_in
            .iter()
            .map(|c| c.drops.load(Ordering::Relaxed))
            .sum()
    }

    /// Highest occupancy of any ring into this node, in records.
    pub fn high_water(&self) -> usize {
        self.rings_in
            .iter()
            .map(|c| c.high_water.load(Ordering::Relaxed))
            .max()
            .unwrap_or(0)
    }
}

/// Everything a run measured.
#[derive(Debug, Default)]
pub struct Report {
    /// One entry per node, in plan order.
    pub nodes: Vec<NodeStats>,
}

impl Report {
    /// The stats of node `id`.
    pub fn node(&self, id: &str) -> Option<&NodeStats> {
        self.nodes.iter().find(|n| n.id == id)
    }

    /// The table `tandem run` prints on exit.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<20} {:<6} {:>3} {:>12} {:>12} {:>8} {:>7} {:>9} {:>9} {:>9}",
            "node", "role", "wkr", "in", "out", "drops", "hwm", "p50", "p99", "p999"
        );
        for n in &self.nodes {
            let role = match n.role {
                Role::Source => "source",
                Role::Vertex => "vertex",
                Role::Sink => "sink",
            };
            let lat = |q: f64| {
                if n.latency_ns.is_empty() {
                    "-".to_owned()
                } else {
                    format_ns(n.latency_ns.value_at_quantile(q))
                }
            };
            let _ = writeln!(
                out,
                "{:<20} {:<6} {:>3} {:>12} {:>12} {:>8} {:>7} {:>9} {:>9} {:>9}",
                n.id,
                role,
                n.worker,
                n.records_in,
                n.records_out,
                n.drops(),
                n.high_water(),
                lat(0.5),
                lat(0.99),
                lat(0.999)
            );
            if n.errors > 0 {
                let _ = writeln!(out, "{:<20} {} errors", "", n.errors);
            }
        }
        out
    }
}

/// `"850ns"`, `"12.3us"`, `"4.1ms"`.
pub fn format_ns(ns: u64) -> String {
    if ns < 1_000 {
        format!("{ns}ns")
    } else if ns < 1_000_000 {
        format!("{:.1}us", ns as f64 / 1e3)
    } else if ns < 1_000_000_000 {
        format!("{:.1}ms", ns as f64 / 1e6)
    } else {
        format!("{:.2}s", ns as f64 / 1e9)
    }
}
