//! The upstream junction: keeps a bounded retention ring of the last ingress
//! records, feeds each attached instance from its own cursor into that ring
//! (live instances sit at the head, a rejoining one replays from its restore
//! point), and slots barriers into each instance's input in sequence order.
//!
//! Drive it with [`Upstream::handle_ingress`] for every sequenced batch and
//! drain [`Upstream::poll_transmit`] per instance until it returns `None`;
//! both instances at the head get the same records, so the runtime may encode
//! the batch once and send the bytes twice.

use super::msg::{Color, ToInstance};
use crate::record::{Record, Seq};
use std::collections::VecDeque;
use thiserror::Error;

/// Sizes of the upstream junction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UpstreamConfig {
    /// Records kept for replay (the retention ring), at least 1.
    pub retention: usize,
    /// Most records per `Input` message, at least 1.
    pub max_batch: usize,
    /// Most barriers remembered for instances that have not passed them yet.
    pub max_barriers: usize,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            retention: 1 << 16,
            max_batch: 4096,
            max_barriers: 64,
        }
    }
}

/// Why a replay cannot start where asked.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum RetentionError {
    /// Records at or after the requested sequence number were already dropped
    /// from the retention ring; a replay can start at `oldest` at the earliest.
    #[error("retention ring has moved past seq {from}: the oldest replayable seq is {oldest}; place a new barrier or enlarge the retention")]
    Moved {
        /// Where the replay was asked to start.
        from: Seq,
        /// The first sequence number that can still be replayed.
        oldest: Seq,
    },
}

/// A barrier placed in the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BarrierMark {
    /// Barrier id, increasing from 1.
    pub id: u64,
    /// It follows every record with `seq <= at`.
    pub at: Seq,
}

/// What the upstream junction reports on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpstreamEvent {
    /// An instance fell so far behind that records it was still owed left the
    /// retention ring; its cursor was detached and it must rejoin.
    Overrun {
        /// The instance.
        color: Color,
        /// Everything at or below this was sent to it.
        sent: Seq,
        /// The oldest record still retained.
        oldest: Seq,
    },
}

/// Which instances a frame is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recipients([bool; 2]);

impl Recipients {
    /// Both instances.
    pub const BOTH: Recipients = Recipients([true, true]);

    /// One instance.
    pub const fn only(color: Color) -> Recipients {
        match color {
            Color::Blue => Recipients([true, false]),
            Color::Green => Recipients([false, true]),
        }
    }

    /// True when the frame is for `color`.
    pub const fn contains(self, color: Color) -> bool {
        self.0[color.index()]
    }

    /// The instances the frame is for.
    pub fn iter(self) -> impl Iterator<Item = Color> {
        Color::BOTH.into_iter().filter(move |c| self.contains(*c))
    }
}

/// Where one instance is in the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Cursor {
    /// Every record with `seq <= sent` has been handed out for this instance.
    sent: Seq,
    /// The next barrier id this instance is owed.
    next_barrier: u64,
}

/// The upstream junction of one unit.
#[derive(Debug)]
pub struct Upstream {
    config: UpstreamConfig,
    ring: VecDeque<Record>,
    /// Highest seq dropped from the ring (ZERO when none was).
    evicted: Seq,
    /// Ingress frontier: nothing more will be ingested at or below it.
    head: Seq,
    barriers: VecDeque<BarrierMark>,
    next_barrier: u64,
    cursors: [Option<Cursor>; 2],
    events: VecDeque<UpstreamEvent>,
    rejected: u64,
}

impl Upstream {
    /// An empty junction; nothing has been ingested.
    pub fn new(config: UpstreamConfig) -> Upstream {
        let config = UpstreamConfig {
            retention: config.retention.max(1),
            max_batch: config.max_batch.max(1),
            max_barriers: config.max_barriers.max(1),
        };
        Upstream {
            config,
            ring: VecDeque::with_capacity(config.retention),
            evicted: Seq::ZERO,
            head: Seq::ZERO,
            barriers: VecDeque::new(),
            next_barrier: 1,
            cursors: [None, None],
            events: VecDeque::new(),
            rejected: 0,
        }
    }

    /// Takes a sequenced ingress batch. Records must have strictly increasing
    /// sequence numbers above the previous frontier; others are dropped and
    /// counted in [`Upstream::rejected`].
    pub fn handle_ingress(&mut self, frontier: Seq, records: &[Record]) {
        for record in records {
            let last = self.ring.back().map_or(self.evicted, |r| r.seq);
            if record.seq <= self.head || record.seq <= last {
                self.rejected += 1;
                continue;
            }
            if self.ring.len() == self.config.retention {
                if let Some(old) = self.ring.pop_front() {
                    self.evicted = old.seq;
                }
            }
            self.ring.push_back(*record);
        }
        let last = self.ring.back().map_or(Seq::ZERO, |r| r.seq);
        self.head = self.head.max(frontier).max(last);
        for color in Color::BOTH {
            if let Some(cursor) = self.cursors[color.index()] {
                if cursor.sent < self.evicted {
                    self.cursors[color.index()] = None;
                    self.events.push_back(UpstreamEvent::Overrun {
                        color,
                        sent: cursor.sent,
                        oldest: self.oldest(),
                    });
                }
            }
        }
    }

    /// The ingress frontier: the live edge.
    pub fn head(&self) -> Seq {
        self.head
    }

    /// The first sequence number a replay can still start at.
    pub fn oldest(&self) -> Seq {
        self.evicted.next()
    }

    /// Records dropped because their seq was not above the previous one.
    pub fn rejected(&self) -> u64 {
        self.rejected
    }

    /// Places a barrier after everything ingested so far.
    pub fn place_barrier(&mut self) -> BarrierMark {
        let mark = BarrierMark {
            id: self.next_barrier,
            at: self.head,
        };
        self.next_barrier += 1;
        if self.barriers.len() == self.config.max_barriers {
            self.barriers.pop_front();
        }
        self.barriers.push_back(mark);
        mark
    }

    /// The retained records with `seq >= from`, oldest first.
    pub fn replay_from(
        &self,
        from: Seq,
    ) -> Result<impl Iterator<Item = &Record> + '_, RetentionError> {
        self.check_replay(from)?;
        let start = self.ring.partition_point(|r| r.seq < from);
        Ok(self.ring.range(start..))
    }

    fn check_replay(&self, from: Seq) -> Result<(), RetentionError> {
        if from <= self.evicted {
            return Err(RetentionError::Moved {
                from,
                oldest: self.oldest(),
            });
        }
        Ok(())
    }

    /// Feeds `color` from `from` on: replayed records first, then live input,
    /// with every barrier placed at or after `from`. Fails, leaving the
    /// instance detached, when the ring has moved past `from`.
    pub fn start_replay(&mut self, color: Color, from: Seq) -> Result<(), RetentionError> {
        self.cursors[color.index()] = None;
        self.check_replay(from)?;
        let next_barrier = self
            .barriers
            .iter()
            .find(|b| b.at >= from)
            .map_or(self.next_barrier, |b| b.id);
        self.cursors[color.index()] = Some(Cursor {
            sent: Seq(from.0.saturating_sub(1)),
            next_barrier,
        });
        Ok(())
    }

    /// Stops feeding `color` (lost, or about to be restored).
    pub fn detach(&mut self, color: Color) {
        self.cursors[color.index()] = None;
        self.prune_barriers();
    }

    /// True when `color` is being fed.
    pub fn is_attached(&self, color: Color) -> bool {
        self.cursors[color.index()].is_some()
    }

    /// Everything at or below this was handed out for `color` (None when detached).
    pub fn sent(&self, color: Color) -> Option<Seq> {
        self.cursors[color.index()].map(|c| c.sent)
    }

    /// The next message for `color`: input or a barrier, in sequence order.
    pub fn poll_transmit(&mut self, color: Color) -> Option<ToInstance> {
        let mut cursor = self.cursors[color.index()]?;
        let barrier = self
            .barriers
            .iter()
            .find(|b| b.id >= cursor.next_barrier)
            .copied();
        if let Some(b) = barrier {
            if cursor.sent >= b.at {
                cursor.next_barrier = b.id + 1;
                self.cursors[color.index()] = Some(cursor);
                self.prune_barriers();
                return Some(ToInstance::Barrier { id: b.id, at: b.at });
            }
        }
        let limit = barrier.map_or(self.head, |b| b.at);
        let start = self.ring.partition_point(|r| r.seq <= cursor.sent);
        let count = self
            .ring
            .range(start..)
            .take(self.config.max_batch)
            .take_while(|r| r.seq <= limit)
            .count();
        let end = start + count;
        let upto = self
            .ring
            .get(end)
            .map_or(self.head, |r| Seq(r.seq.0 - 1))
            .min(limit.max(cursor.sent));
        if count == 0 && upto <= cursor.sent {
            return None;
        }
        let records: Vec<Record> = self.ring.range(start..end).copied().collect();
        cursor.sent = upto;
        self.cursors[color.index()] = Some(cursor);
        Some(ToInstance::Input {
            frontier: upto,
            records,
        })
    }

    /// The next input frame and whom it is for. When both instances are at
    /// the same place (the usual case: both live at the head) the frame is
    /// for both, so the runtime encodes it once and sends the bytes twice.
    pub fn poll_input(&mut self) -> Option<(Recipients, ToInstance)> {
        if let [Some(blue), Some(green)] = self.cursors {
            if blue == green {
                let msg = self.poll_transmit(Color::Blue)?;
                self.cursors[Color::Green.index()] = self.cursors[Color::Blue.index()];
                self.prune_barriers();
                return Some((Recipients::BOTH, msg));
            }
        }
        Color::BOTH
            .into_iter()
            .find_map(|c| Some((Recipients::only(c), self.poll_transmit(c)?)))
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<UpstreamEvent> {
        self.events.pop_front()
    }

    fn prune_barriers(&mut self) {
        while let Some(front) = self.barriers.front() {
            let passed = self
                .cursors
                .iter()
                .flatten()
                .all(|c| c.next_barrier > front.id);
            if !passed {
                break;
            }
            self.barriers.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::record::{ChannelId, EventTime};

    fn rec(seq: u64) -> Record {
        Record::new(Seq(seq), EventTime(0), ChannelId(0), seq as f64)
    }

    fn ingest(up: &mut Upstream, seqs: core::ops::RangeInclusive<u64>) {
        let records: Vec<Record> = seqs.clone().map(rec).collect();
        up.handle_ingress(Seq(*seqs.end()), &records);
    }

    fn drain(up: &mut Upstream, color: Color) -> Vec<ToInstance> {
        core::iter::from_fn(|| up.poll_transmit(color)).collect()
    }

    fn seqs(msgs: &[ToInstance]) -> Vec<u64> {
        msgs.iter()
            .flat_map(|m| match m {
                ToInstance::Input { records, .. } => records.iter().map(|r| r.seq.0).collect(),
                _ => Vec::new(),
            })
            .collect()
    }

    fn config(retention: usize, max_batch: usize) -> UpstreamConfig {
        UpstreamConfig {
            retention,
            max_batch,
            max_barriers: 8,
        }
    }

    #[test]
    fn both_instances_get_the_same_input() {
        let mut up = Upstream::new(config(100, 100));
        up.start_replay(Color::Blue, Seq(1)).unwrap();
        up.start_replay(Color::Green, Seq(1)).unwrap();
        ingest(&mut up, 1..=5);
        let blue = drain(&mut up, Color::Blue);
        let green = drain(&mut up, Color::Green);
        assert_eq!(blue, green);
        assert_eq!(seqs(&blue), vec![1, 2, 3, 4, 5]);
        assert!(matches!(
            blue[0],
            ToInstance::Input {
                frontier: Seq(5),
                ..
            }
        ));
    }

    #[test]
    fn input_at_the_same_place_is_one_frame_for_both() {
        let mut up = Upstream::new(config(100, 3));
        up.start_replay(Color::Blue, Seq(1)).unwrap();
        ingest(&mut up, 1..=4);
        up.start_replay(Color::Green, Seq(3)).unwrap();
        ingest(&mut up, 5..=6);
        let frames: Vec<(Recipients, ToInstance)> =
            core::iter::from_fn(|| up.poll_input()).collect();
        let for_color = |c: Color| -> Vec<ToInstance> {
            frames
                .iter()
                .filter(|(to, _)| to.contains(c))
                .map(|(_, m)| m.clone())
                .collect()
        };
        assert_eq!(seqs(&for_color(Color::Blue)), vec![1, 2, 3, 4, 5, 6]);
        assert_eq!(seqs(&for_color(Color::Green)), vec![3, 4, 5, 6]);
        // Once green caught up, frames are shared.
        ingest(&mut up, 7..=8);
        let shared: Vec<(Recipients, ToInstance)> =
            core::iter::from_fn(|| up.poll_input()).collect();
        assert_eq!(shared.len(), 1);
        assert_eq!(shared[0].0, Recipients::BOTH);
        assert_eq!(seqs(&[shared[0].1.clone()]), vec![7, 8]);
    }

    #[test]
    fn barrier_follows_its_records_and_precedes_later_ones() {
        let mut up = Upstream::new(config(100, 100));
        up.start_replay(Color::Blue, Seq(1)).unwrap();
        ingest(&mut up, 1..=3);
        let mark = up.place_barrier();
        assert_eq!(mark, BarrierMark { id: 1, at: Seq(3) });
        ingest(&mut up, 4..=6);
        let msgs = drain(&mut up, Color::Blue);
        assert_eq!(msgs.len(), 3);
        assert_eq!(seqs(&msgs[..1]), vec![1, 2, 3]);
        assert_eq!(msgs[1], ToInstance::Barrier { id: 1, at: Seq(3) });
        assert_eq!(seqs(&msgs[2..]), vec![4, 5, 6]);
    }

    #[test]
    fn replay_after_the_ring_moved_names_the_oldest_seq() {
        let mut up = Upstream::new(config(4, 100));
        ingest(&mut up, 1..=10);
        let err = up.replay_from(Seq(6)).err().unwrap();
        assert_eq!(
            err,
            RetentionError::Moved {
                from: Seq(6),
                oldest: Seq(7)
            }
        );
        let replay: Vec<u64> = up.replay_from(Seq(8)).unwrap().map(|r| r.seq.0).collect();
        assert_eq!(replay, vec![8, 9, 10]);
        assert!(up.start_replay(Color::Green, Seq(5)).is_err());
        assert!(!up.is_attached(Color::Green));
    }

    #[test]
    fn replay_is_cut_into_batches_and_reaches_the_live_edge() {
        let mut up = Upstream::new(config(100, 2));
        ingest(&mut up, 1..=5);
        let barrier = up.place_barrier();
        up.start_replay(Color::Green, Seq(3)).unwrap();
        ingest(&mut up, 6..=6);
        let msgs = drain(&mut up, Color::Green);
        assert_eq!(seqs(&msgs), vec![3, 4, 5, 6]);
        assert!(msgs.contains(&ToInstance::Barrier {
            id: barrier.id,
            at: Seq(5)
        }));
        assert_eq!(up.sent(Color::Green), Some(Seq(6)));
    }

    #[test]
    fn an_instance_left_behind_is_detached_and_reported() {
        let mut up = Upstream::new(config(4, 100));
        up.start_replay(Color::Blue, Seq(1)).unwrap();
        ingest(&mut up, 1..=2);
        drain(&mut up, Color::Blue);
        ingest(&mut up, 3..=10);
        assert_eq!(
            up.poll_event(),
            Some(UpstreamEvent::Overrun {
                color: Color::Blue,
                sent: Seq(2),
                oldest: Seq(7)
            })
        );
        assert_eq!(up.poll_transmit(Color::Blue), None);
    }

    #[test]
    fn frontier_advances_without_records() {
        let mut up = Upstream::new(config(4, 100));
        up.start_replay(Color::Blue, Seq(1)).unwrap();
        up.handle_ingress(Seq(9), &[]);
        assert_eq!(
            drain(&mut up, Color::Blue),
            vec![ToInstance::Input {
                frontier: Seq(9),
                records: vec![]
            }]
        );
        ingest(&mut up, 3..=3);
        assert_eq!(up.rejected(), 1);
    }
}
