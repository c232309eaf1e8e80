//! An edge between two workers: a `ringbuf` SPSC ring of records plus the
//! producer's frontier, with the edge's overflow policy.
//!
//! The producer pushes records, then publishes its frontier with `Release`;
//! the consumer loads the frontier with `Acquire` before it reads records, so
//! every record at or below a frontier it has seen is already in the ring.

use crossbeam_utils::sync::Unparker;
use crossbeam_utils::CachePadded;
use ringbuf::traits::{Consumer, Observer, Producer, Split};
use ringbuf::{HeapCons, HeapProd, HeapRb};
use std::collections::VecDeque;
use std::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use tandem_core::{Overflow, Record, Seq};

/// Counters of one ring, readable from any thread.
#[derive(Debug, Default)]
pub struct RingCounters {
    /// Records dropped by the overflow policy.
    pub drops: AtomicU64,
    /// Highest occupancy seen by the producer after a push.
    pub high_water: AtomicUsize,
}

#[derive(Debug)]
struct Shared {
    frontier: CachePadded<AtomicU64>,
    /// Set by a producer about to park on a full ring; the consumer wakes it.
    producer_waiting: AtomicBool,
    counters: Arc<RingCounters>,
}

/// Creates a ring of `capacity` records. `consumer` wakes the consuming
/// worker; `producer` wakes the producing one when it waits for room.
pub fn ring(
    capacity: usize,
    overflow: Overflow,
    consumer: Unparker,
    producer: Unparker,
) -> (RingTx, RingRx) {
    let (prod, cons) = HeapRb::<Record>::new(capacity.max(1)).split();
    let shared = Arc::new(Shared {
        frontier: CachePadded::new(AtomicU64::new(0)),
        producer_waiting: AtomicBool::new(false),
        counters: Arc::new(RingCounters::default()),
    });
    let pending = match overflow {
        Overflow::DropOldest => VecDeque::with_capacity(capacity),
        _ => VecDeque::new(),
    };
    (
        RingTx {
            prod,
            shared: shared.clone(),
            overflow,
            capacity,
            pending,
            pending_frontier: Seq::ZERO,
            published: Seq::ZERO,
            consumer,
        },
        RingRx {
            cons,
            shared,
            producer,
        },
    )
}

/// The producing end. `Send`, owned by one worker.
pub struct RingTx {
    prod: HeapProd<Record>,
    shared: Arc<Shared>,
    overflow: Overflow,
    capacity: usize,
    /// drop_oldest only: the newest records that did not fit yet.
    pending: VecDeque<Record>,
    /// Frontier to publish once `pending` has drained.
    pending_frontier: Seq,
    published: Seq,
    consumer: Unparker,
}

impl std::fmt::Debug for RingTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingTx")
            .field("occupied", &self.prod.occupied_len())
            .field("capacity", &self.capacity)
            .field("overflow", &self.overflow)
            .field("published", &self.published)
            .finish()
    }
}

impl RingTx {
    /// The overflow policy.
    pub fn overflow(&self) -> Overflow {
        self.overflow
    }

    /// `block`: pushes as many of `records` (sorted by seq) as fit, never
    /// waiting, and publishes `frontier`, or just below the first record that
    /// did not fit. Returns how many were pushed; the caller keeps the rest
    /// and tries again later.
    pub fn push_some(&mut self, records: &[Record], frontier: Seq) -> usize {
        let pushed = self.prod.push_slice(records);
        if pushed > 0 {
            self.note_occupancy();
        }
        let published = match records.get(pushed) {
            None => frontier,
            // Everything below the first record not yet sent is out.
            Some(next) => Seq(next.seq.0.saturating_sub(1)).min(frontier),
        };
        self.publish(published, pushed > 0);
        pushed
    }

    /// `drop_newest` and `drop_oldest`: sends `records` and `frontier`,
    /// dropping and counting what the policy says, never waiting.
    pub fn send_dropping(&mut self, records: &[Record], frontier: Seq) {
        match self.overflow {
            Overflow::Block | Overflow::DropNewest => {
                let pushed = self.prod.push_slice(records);
                self.count_drops(records.len() - pushed);
                if pushed > 0 {
                    self.note_occupancy();
                }
                self.publish(frontier, pushed > 0);
            }
            Overflow::DropOldest => {
                // Keep at most `capacity` of the newest records beside the ring.
                let keep = records.len().min(self.capacity);
                let excess = (self.pending.len() + keep).saturating_sub(self.capacity);
                self.pending.drain(..excess.min(self.pending.len()));
                self.count_drops(excess + records.len() - keep);
                self.pending
                    .extend(records[records.len() - keep..].iter().copied());
                self.pending_frontier = self.pending_frontier.max(frontier);
                self.flush_pending();
            }
        }
    }

    /// Asks the consumer to wake this ring's producer when it frees room.
    /// Returns true if the ring is still full, so parking is safe.
    pub fn arm_wakeup(&self) -> bool {
        self.shared.producer_waiting.store(true, Ordering::SeqCst);
        // Pairs with the fence in `RingRx::release`: either the consumer sees
        // the flag, or this load sees the room it made.
        fence(Ordering::SeqCst);
        self.prod.is_full()
    }

    /// drop_oldest: moves what now fits from the side buffer into the ring.
    /// Returns true while records are still waiting.
    pub fn flush_pending(&mut self) -> bool {
        if self.overflow != Overflow::DropOldest {
            return false;
        }
        let mut moved = false;
        while !self.pending.is_empty() {
            let (front, _) = self.pending.as_slices();
            let pushed = self.prod.push_slice(front);
            if pushed == 0 {
                break;
            }
            self.pending.drain(..pushed);
            moved = true;
        }
        if moved {
            self.note_occupancy();
        }
        let frontier = match self.pending.front() {
            Some(first) => Seq(first.seq.0.saturating_sub(1)).min(self.pending_frontier),
            None => self.pending_frontier,
        };
        self.publish(frontier, moved);
        !self.pending.is_empty()
    }

    /// Publishes `frontier` if it rose, and wakes the consumer when there is
    /// something new for it.
    fn publish(&mut self, frontier: Seq, pushed: bool) {
        let rose = frontier > self.published;
        if rose {
            self.published = frontier;
            // Pairs with the Acquire load in `RingRx::frontier`: records
            // pushed before this store are visible to a consumer that sees it.
            self.shared.frontier.store(frontier.0, Ordering::Release);
        }
        if rose || pushed {
            self.consumer.unpark();
        }
    }

    fn count_drops(&self, n: usize) {
        if n > 0 {
            self.shared
                .counters
                .drops
                .fetch_add(n as u64, Ordering::Relaxed);
        }
    }

    fn note_occupancy(&self) {
        let occupied = self.prod.occupied_len();
        self.shared
            .counters
            .high_water
            .fetch_max(occupied, Ordering::Relaxed);
    }

    /// The ring's counters.
    pub fn counters(&self) -> Arc<RingCounters> {
        self.shared.counters.clone()
    }

    /// drop_oldest: true while records wait beside the ring.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Frontier published so far.
    pub fn published(&self) -> Seq {
        self.published
    }
}

/// The consuming end. `Send`, owned by one worker.
pub struct RingRx {
    cons: HeapCons<Record>,
    shared: Arc<Shared>,
    producer: Unparker,
}

impl std::fmt::Debug for RingRx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingRx")
            .field("occupied", &self.cons.occupied_len())
            .field("frontier", &self.frontier())
            .finish()
    }
}

impl RingRx {
    /// The producer's frontier. Load it before reading records.
    pub fn frontier(&self) -> Seq {
        // Pairs with the Release store in `RingTx::publish`.
        Seq(self.shared.frontier.load(Ordering::Acquire))
    }

    /// The records waiting, as up to two slices, without copying.
    pub fn peek(&self) -> (&[Record], &[Record]) {
        self.cons.as_slices()
    }

    /// Drops the first `n` records (after they were processed from `peek`)
    /// and wakes a producer waiting for room.
    pub fn release(&mut self, n: usize) {
        if n == 0 {
            return;
        }
        self.cons.skip(n);
        // Pairs with the fence in `RingTx::arm_wakeup`.
        fence(Ordering::SeqCst);
        if self.shared.producer_waiting.swap(false, Ordering::SeqCst) {
            self.producer.unpark();
        }
    }

    /// Records waiting.
    pub fn len(&self) -> usize {
        self.cons.occupied_len()
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.cons.is_empty()
    }

    /// The ring's counters.
    pub fn counters(&self) -> Arc<RingCounters> {
        self.shared.counters.clone()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crossbeam_utils::sync::Parker;
    use tandem_core::{ChannelId, EventTime};

    fn recs(seqs: std::ops::RangeInclusive<u64>) -> Vec<Record> {
        seqs.map(|s| Record::new(Seq(s), EventTime(s as i64), ChannelId(0), s as f64))
            .collect()
    }

    fn drain(rx: &mut RingRx) -> Vec<u64> {
        let (a, b) = rx.peek();
        let out: Vec<u64> = a.iter().chain(b).map(|r| r.seq.0).collect();
        rx.release(out.len());
        out
    }

    fn pair(cap: usize, overflow: Overflow) -> (RingTx, RingRx) {
        let parker = Parker::new();
        ring(
            cap,
            overflow,
            parker.unparker().clone(),
            parker.unparker().clone(),
        )
    }

    #[test]
    fn drop_newest_keeps_what_was_queued_and_counts_the_rest() {
        let (mut tx, mut rx) = pair(4, Overflow::DropNewest);
        tx.send_dropping(&recs(1..=6), Seq(6));
        assert_eq!(drain(&mut rx), vec![1, 2, 3, 4]);
        assert_eq!(rx.frontier(), Seq(6));
        assert_eq!(rx.counters().drops.load(Ordering::Relaxed), 2);
        assert_eq!(rx.counters().high_water.load(Ordering::Relaxed), 4);
    }

    #[test]
    fn drop_oldest_delivers_the_newest_once_the_consumer_catches_up() {
        let (mut tx, mut rx) = pair(4, Overflow::DropOldest);
        tx.send_dropping(&recs(1..=4), Seq(4));
        tx.send_dropping(&recs(5..=12), Seq(12));
        // 5..=8 are older than what waits beside the ring and are dropped.
        assert_eq!(rx.counters().drops.load(Ordering::Relaxed), 4);
        assert_eq!(
            rx.frontier(),
            Seq(8),
            "frontier passes the dropped, stops below the waiting"
        );
        assert_eq!(drain(&mut rx), vec![1, 2, 3, 4]);
        assert!(!tx.flush_pending());
        assert_eq!(drain(&mut rx), vec![9, 10, 11, 12]);
        assert_eq!(rx.frontier(), Seq(12));
    }

    #[test]
    fn block_pushes_what_fits_and_the_rest_later_losing_nothing() {
        let (mut tx, mut rx) = pair(8, Overflow::Block);
        let consumer = std::thread::spawn(move || {
            let mut seen = Vec::new();
            while rx.frontier() < Seq(1000) || !rx.is_empty() {
                seen.extend(drain(&mut rx));
                std::hint::spin_loop();
            }
            seen
        });
        for chunk in recs(1..=1000).chunks(37) {
            let mut rest = chunk;
            while !rest.is_empty() {
                let pushed = tx.push_some(rest, chunk.last().unwrap().seq);
                rest = &rest[pushed..];
                std::hint::spin_loop();
            }
        }
        let seen = consumer.join().unwrap();
        assert_eq!(seen, (1..=1000).collect::<Vec<_>>());
        assert_eq!(tx.counters().drops.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_partly_pushed_batch_publishes_the_frontier_below_what_waits() {
        let (mut tx, rx) = pair(3, Overflow::Block);
        assert_eq!(tx.push_some(&recs(1..=5), Seq(5)), 3);
        assert_eq!(rx.frontier(), Seq(3));
        assert!(tx.arm_wakeup(), "still full: safe to park");
    }
}
