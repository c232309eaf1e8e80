//! Live figures of every node of every topology in this process, readable
//! from any thread while the workers run.
//!
//! A worker owns its nodes' [`NodeStats`](crate::stats::NodeStats) and hands
//! them back only when it ends. So that an agent or instance can report
//! figures while it runs, each `NodeStats` also owns a [`LiveNode`]: a few
//! atomics it stores after every call, and a latency histogram of fixed
//! log-linear buckets it adds to. Storing them is a handful of `Relaxed`
//! atomic writes on a cache line only that worker writes: no lock, no
//! allocation. Each counter is read on its own; no reader needs two of them
//! to agree, so none pairs with another.
//!
//! Nodes register themselves when their stats are created ([`nodes`] lists
//! those still alive), so the figures need no path through the topology.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use tandem_core::Role;

/// Sub-buckets per power of two: each bucket is at most 1/8 wide of its
/// lower bound, so a quantile is known within 12.5 %.
const SUB_BITS: u32 = 3;
const SUB: u64 = 1 << SUB_BITS;
/// Durations are clamped here (about 137 s).
const MAX_NS: u64 = (1 << 37) - 1;
/// Buckets needed to reach `MAX_NS`.
pub const BUCKETS: usize = bucket_of(MAX_NS) + 1;

/// The bucket holding `ns` nanoseconds (clamped to `MAX_NS`).
pub const fn bucket_of(ns: u64) -> usize {
    let ns = if ns > MAX_NS { MAX_NS } else { ns };
    if ns < SUB {
        return ns as usize;
    }
    let exp = 63 - ns.leading_zeros();
    let mantissa = (ns >> (exp - SUB_BITS)) & (SUB - 1);
    ((exp - SUB_BITS + 1) as u64 * SUB + mantissa) as usize
}

/// The smallest duration, in nanoseconds, that falls in bucket `index`.
pub fn bucket_floor(index: usize) -> u64 {
    let index = index as u64;
    if index < SUB {
        return index;
    }
    let exp = index / SUB + u64::from(SUB_BITS) - 1;
    let mantissa = index % SUB;
    (SUB + mantissa) << (exp - u64::from(SUB_BITS))
}

/// Processing latency: calls, their total, and a histogram of them.
#[derive(Debug)]
pub struct LiveLatency {
    calls: AtomicU64,
    total_ns: AtomicU64,
    buckets: Box<[AtomicU64]>,
}

impl Default for LiveLatency {
    fn default() -> Self {
        LiveLatency {
            calls: AtomicU64::new(0),
            total_ns: AtomicU64::new(0),
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl LiveLatency {
    /// Records `calls` calls of `ns` each (one timed call standing for the
    /// untimed ones around it).
    fn record(&self, ns: u64, calls: u64) {
        self.calls.fetch_add(calls, Ordering::Relaxed);
        self.total_ns
            .fetch_add(ns.saturating_mul(calls), Ordering::Relaxed);
        if let Some(bucket) = self.buckets.get(bucket_of(ns)) {
            bucket.fetch_add(calls, Ordering::Relaxed);
        }
    }

    /// The histogram as it is now.
    pub fn sample(&self) -> LatencySample {
        LatencySample {
            calls: self.calls.load(Ordering::Relaxed),
            total_ns: self.total_ns.load(Ordering::Relaxed),
            buckets: self
                .buckets
                .iter()
                .enumerate()
                .filter_map(|(i, b)| {
                    let n = b.load(Ordering::Relaxed);
                    (n > 0).then(|| (u16::try_from(i).unwrap_or(u16::MAX), n))
                })
                .collect(),
        }
    }
}

/// A latency histogram at one moment: calls, their total, and the
/// non-empty buckets as `(index, count)` in index order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LatencySample {
    /// Calls timed.
    pub calls: u64,
    /// Their total duration.
    pub total_ns: u64,
    /// Non-empty buckets, `(index, count)`, by index.
    pub buckets: Vec<(u16, u64)>,
}

/// One node's live figures (see the module doc).
#[derive(Debug)]
pub struct LiveNode {
    /// Node id in the graph.
    pub id: String,
    /// Source, vertex or sink.
    pub role: Role,
    records_in: AtomicU64,
    records_out: AtomicU64,
    errors: AtomicU64,
    /// The rings into the node: their drops and high-water marks are read
    /// when sampled, not copied on every call.
    rings: Mutex<Vec<Arc<crate::ring::RingCounters>>>,
    latency: LiveLatency,
}

/// A node's figures at one moment.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeSample {
    /// Node id in the graph.
    pub id: String,
    /// Source, vertex or sink.
    pub role: Role,
    /// Records consumed.
    pub records_in: u64,
    /// Records produced.
    pub records_out: u64,
    /// Source bus errors, sink write errors.
    pub errors: u64,
    /// Records the overflow policies of the rings into it dropped.
    pub drops: u64,
    /// Highest occupancy of a ring into it, in records.
    pub high_water: u64,
    /// Time per call.
    pub latency: LatencySample,
}

impl LiveNode {
    /// Figures of node `id`, registered so that [`nodes`] lists them while
    /// they are alive.
    pub fn register(id: &str, role: Role) -> Arc<LiveNode> {
        let node = Arc::new(LiveNode {
            id: id.to_owned(),
            role,
            records_in: AtomicU64::new(0),
            records_out: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            rings: Mutex::new(Vec::new()),
            latency: LiveLatency::default(),
        });
        let mut all = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
        all.retain(|n| n.strong_count() > 0);
        all.push(Arc::downgrade(&node));
        node
    }

    /// Stores the counters as the worker has them after a call.
    pub fn store(&self, records_in: u64, records_out: u64, errors: u64) {
        self.records_in.store(records_in, Ordering::Relaxed);
        self.records_out.store(records_out, Ordering::Relaxed);
        self.errors.store(errors, Ordering::Relaxed);
    }

    /// Adds a ring into the node, whose drops and high-water mark are its own.
    pub(crate) fn attach_ring(&self, ring: Arc<crate::ring::RingCounters>) {
        self.rings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(ring);
    }

    /// Adds one call's duration.
    pub fn record_latency(&self, ns: u64) {
        self.latency.record(ns, 1);
    }

    /// Records one timed call of `ns` standing for `calls` calls (the
    /// executor times one call in a stride; see `stats.rs`).
    pub fn record_latency_n(&self, ns: u64, calls: u64) {
        self.latency.record(ns, calls);
    }

    /// The figures as they are now.
    pub fn sample(&self) -> NodeSample {
        let rings = self.rings.lock().unwrap_or_else(|e| e.into_inner());
        NodeSample {
            id: self.id.clone(),
            role: self.role,
            records_in: self.records_in.load(Ordering::Relaxed),
            records_out: self.records_out.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            drops: rings
                .iter()
                .map(|r| r.drops.load(Ordering::Relaxed))
                .fold(0, u64::saturating_add),
            high_water: rings
                .iter()
                .map(|r| r.high_water.load(Ordering::Relaxed) as u64)
                .max()
                .unwrap_or(0),
            latency: self.latency.sample(),
        }
    }
}

static REGISTRY: Mutex<Vec<Weak<LiveNode>>> = Mutex::new(Vec::new());

/// Every node of this process whose stats are alive, in creation order.
pub fn nodes() -> Vec<Arc<LiveNode>> {
    REGISTRY
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter_map(Weak::upgrade)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_each_holds_its_floor() {
        let mut last = 0;
        for ns in 1..100_000u64 {
            let b = bucket_of(ns);
            assert!(b == last || b == last + 1, "{ns} jumps from {last} to {b}");
            last = b;
        }
        for index in 0..BUCKETS {
            assert_eq!(bucket_of(bucket_floor(index)), index);
        }
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn a_bucket_is_at_most_an_eighth_wider_than_its_floor() {
        for index in SUB as usize..BUCKETS - 1 {
            let (lo, hi) = (bucket_floor(index), bucket_floor(index + 1));
            assert!((hi - lo) * 8 <= lo, "bucket {index}: {lo}..{hi}");
        }
    }

    #[test]
    fn a_registered_node_is_listed_until_dropped() {
        let node = LiveNode::register("live-test-node", Role::Vertex);
        node.store(3, 2, 0);
        let ring = Arc::new(crate::ring::RingCounters::default());
        ring.drops.store(1, Ordering::Relaxed);
        ring.high_water.store(7, Ordering::Relaxed);
        node.attach_ring(ring);
        node.record_latency(1_000);
        let listed = nodes()
            .into_iter()
            .find(|n| n.id == "live-test-node")
            .map(|n| n.sample());
        let sample = listed.expect("listed");
        assert_eq!((sample.records_in, sample.records_out), (3, 2));
        assert_eq!((sample.drops, sample.high_water), (1, 7));
        assert_eq!(sample.latency.calls, 1);
        assert_eq!(sample.latency.buckets, [(bucket_of(1_000) as u16, 1)]);
        drop(node);
        assert!(nodes().iter().all(|n| n.id != "live-test-node"));
    }

    #[test]
    fn a_sampled_call_counts_for_the_calls_it_stands_for() {
        let node = LiveNode::register("live-test-sampled", Role::Vertex);
        node.record_latency_n(1_000, 8);
        node.record_latency(2_000);
        let sample = node.sample().latency;
        assert_eq!(sample.calls, 9);
        assert_eq!(sample.total_ns, 10_000);
        let count = |ns: u64| {
            sample
                .buckets
                .iter()
                .find(|(b, _)| *b as usize == bucket_of(ns))
                .map(|(_, n)| *n)
        };
        assert_eq!((count(1_000), count(2_000)), (Some(8), Some(1)));
    }
}
