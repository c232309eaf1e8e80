//! The upstream junction: keeps a bounded retention ring of the last ingress
//! batches, **encoded once** as `Input` frames, feeds each attached instance
//! from its own cursor into that ring (live instances sit at the head, a
//! rejoining one replays from its restore point), and slots barriers into
//! each instance's input in sequence order.
//!
//! Drive it with [`Upstream::handle_input`] for every batch the ingress
//! encoded ([`BatchEncoder`], one `Input` frame of at most
//! [`UpstreamConfig::max_batch`] records each), or [`Upstream::handle_ingress`]
//! with plain records (encoded here), and drain [`Upstream::poll_input`] (or
//! [`Upstream::poll_transmit`] per instance) until it returns `None`. A frame
//! is [`Transmit::Encoded`]: the very bytes kept in the ring, to write to
//! the link as they are, to both instances, and again for a replay. Barriers
//! are placed at the head, after a whole batch, so a replay from a barrier
//! starts at a frame boundary; only a replay from elsewhere (none the
//! supervisor asks for) re-encodes part of one frame.
//!
//! Memory: the ring holds at most [`UpstreamConfig::retention`] records'
//! worth, 32 bytes each, plus the newest frame, evicting whole frames oldest
//! first; a frame counts its records and its own slot and header
//! (`FRAME_WEIGHT`, a few records' worth), so that the bound holds for a
//! trickle of small frames as for large ones.

use super::msg::{Color, ToInstance};
use crate::record::{Record, Seq};
use crate::wire::{self, BatchEncoder, BatchKind, EncodedBatch, WireError};
use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;
use thiserror::Error;

/// Sizes of the upstream junction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UpstreamConfig {
    /// Records kept for replay (the retention ring), at least 1; each frame
    /// counts its records and a few records' worth for itself (32 bytes a
    /// record: this bounds the ring's memory).
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

/// A frame for an instance, as the upstream junction hands it out.
#[derive(Clone, Debug, PartialEq)]
pub enum Transmit {
    /// A whole encoded frame (an `Input`), shared with the retention ring:
    /// write these bytes as they are.
    Encoded(Bytes),
    /// A message to encode (a barrier, a control frame).
    Message(ToInstance),
}

impl Transmit {
    /// The message, decoding an encoded frame (tests and simulations read
    /// frames this way; the runtime writes the bytes).
    pub fn into_message(self) -> Result<ToInstance, WireError> {
        match self {
            Transmit::Message(msg) => Ok(msg),
            Transmit::Encoded(bytes) => {
                let mut buf = BytesMut::from(&bytes[..]);
                wire::decode::<ToInstance>(&mut buf)?
                    .ok_or(WireError::TooShort { len: bytes.len() })
            }
        }
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

/// One retained frame: it holds every input record in `(after, frontier]`.
#[derive(Clone, Debug)]
struct Retained {
    after: Seq,
    batch: EncodedBatch,
}

/// What a frame costs the ring beside its records, in records' worth (32
/// bytes each): its slot in the ring and its header. A trickle of one-record
/// frames, a slow source's, would otherwise hold several times what its
/// records count.
pub(crate) const FRAME_WEIGHT: usize =
    (std::mem::size_of::<Retained>() + wire::BATCH_PREFIX).div_ceil(wire::RECORD_BYTES);

impl Retained {
    /// What it counts against the retention: its records and
    /// [`FRAME_WEIGHT`].
    fn weight(&self) -> usize {
        self.batch.len() + FRAME_WEIGHT
    }
}

/// The upstream junction of one unit.
#[derive(Debug)]
pub struct Upstream {
    config: UpstreamConfig,
    ring: VecDeque<Retained>,
    /// Sum of the ring's weights.
    retained: usize,
    /// Frontier of the last frame dropped from the ring (ZERO when none was).
    evicted: Seq,
    /// Ingress frontier: nothing more will be ingested at or below it.
    head: Seq,
    barriers: VecDeque<BarrierMark>,
    next_barrier: u64,
    cursors: [Option<Cursor>; 2],
    /// For an instance being restored from a snapshot at a barrier: that
    /// barrier's id. Barriers placed after it are kept for it, to be sent
    /// once its replay starts ([`Upstream::start_replay_after`]).
    restoring: [Option<u64>; 2],
    events: VecDeque<UpstreamEvent>,
    rejected: u64,
    /// Encodes what comes as plain records, and re-encodes partial frames.
    encoder: BatchEncoder,
}

impl Upstream {
    /// An empty junction; nothing has been ingested.
    pub fn new(config: UpstreamConfig) -> Upstream {
        let config = UpstreamConfig {
            retention: config.retention.max(1),
            max_batch: config.max_batch.clamp(1, wire::MAX_BATCH_RECORDS),
            max_barriers: config.max_barriers.max(1),
        };
        Upstream {
            config,
            ring: VecDeque::new(),
            retained: 0,
            evicted: Seq::ZERO,
            head: Seq::ZERO,
            barriers: VecDeque::new(),
            next_barrier: 1,
            cursors: [None, None],
            restoring: [None, None],
            events: VecDeque::new(),
            rejected: 0,
            encoder: BatchEncoder::new(BatchKind::Input, config.max_batch),
        }
    }

    /// The sizes it runs with (after clamping).
    pub fn config(&self) -> UpstreamConfig {
        self.config
    }

    /// Takes a sequenced ingress batch as plain records, encoding it here.
    /// Records must have strictly increasing sequence numbers above the
    /// previous frontier; others are dropped and counted in
    /// [`Upstream::rejected`].
    pub fn handle_ingress(&mut self, frontier: Seq, records: &[Record]) {
        let mut last = self.head;
        let in_order = records.iter().all(|r| {
            let ok = r.seq > last;
            last = r.seq;
            ok
        });
        if in_order {
            self.encoder.push(records);
        } else {
            let mut last = self.head;
            let kept: Vec<Record> = records
                .iter()
                .filter(|r| {
                    let ok = r.seq > last;
                    last = last.max(r.seq);
                    ok
                })
                .copied()
                .collect();
            self.rejected += (records.len() - kept.len()) as u64;
            self.encoder.push(&kept);
        }
        self.encoder.finish(frontier.max(self.head));
        while let Some(batch) = self.encoder.poll() {
            self.retain(batch);
        }
    }

    /// Takes one `Input` frame encoded by the ingress (the hot path: its
    /// bytes are kept and sent as they are). A frame whose records are not
    /// all above the head is re-encoded without those, which are counted in
    /// [`Upstream::rejected`].
    pub fn handle_input(&mut self, batch: EncodedBatch) {
        if batch.first().is_none_or(|first| first > self.head) {
            self.retain(batch);
        } else {
            let records: Vec<Record> = batch.records().collect();
            self.handle_ingress(batch.frontier(), &records);
        }
    }

    fn retain(&mut self, batch: EncodedBatch) {
        let frontier = batch.frontier().max(batch.last().unwrap_or(Seq::ZERO));
        if frontier <= self.head && batch.is_empty() {
            return;
        }
        let retained = Retained {
            after: self.head,
            batch,
        };
        self.head = self.head.max(frontier);
        self.retained += retained.weight();
        self.ring.push_back(retained);
        while self.retained > self.config.retention && self.ring.len() > 1 {
            if let Some(old) = self.ring.pop_front() {
                self.retained -= old.weight();
                self.evicted = old.batch.frontier().max(old.after);
            }
        }
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

    /// The id of the last barrier placed (0: none yet).
    pub fn last_barrier(&self) -> u64 {
        self.next_barrier.saturating_sub(1)
    }

    /// The first sequence number a replay can still start at.
    pub fn oldest(&self) -> Seq {
        self.evicted.next()
    }

    /// Records dropped because their seq was not above the previous one.
    pub fn rejected(&self) -> u64 {
        self.rejected + self.encoder.rejected()
    }

    /// Records' worth retained for replay (each frame's records and its
    /// own weight), at most [`UpstreamConfig::retention`] plus the newest
    /// frame's.
    pub fn retained(&self) -> usize {
        self.retained
    }

    /// Bytes of the frames retained for replay.
    pub fn retained_bytes(&self) -> usize {
        self.ring.iter().map(|r| r.batch.bytes().len()).sum()
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
    ) -> Result<impl Iterator<Item = Record> + '_, RetentionError> {
        self.check_replay(from)?;
        let start = self.ring.partition_point(|r| r.batch.frontier() < from);
        Ok(self
            .ring
            .range(start..)
            .flat_map(|r| r.batch.records())
            .filter(move |r| r.seq >= from))
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
        let next_barrier = self
            .barriers
            .iter()
            .find(|b| b.at >= from)
            .map_or(self.next_barrier, |b| b.id);
        self.replay(color, from, next_barrier)
    }

    /// Feeds `color`, restored at `barrier` (placed at `from - 1`), from
    /// `from` on, with every barrier placed after that one: those placed
    /// while it was restored ([`Upstream::detach_restoring`]) too, and one
    /// placed at the same point in the input. Fails as
    /// [`Upstream::start_replay`] does.
    pub fn start_replay_after(
        &mut self,
        color: Color,
        from: Seq,
        barrier: u64,
    ) -> Result<(), RetentionError> {
        self.replay(color, from, barrier + 1)
    }

    fn replay(&mut self, color: Color, from: Seq, next_barrier: u64) -> Result<(), RetentionError> {
        self.cursors[color.index()] = None;
        self.restoring[color.index()] = None;
        let checked = self.check_replay(from);
        if checked.is_ok() {
            self.cursors[color.index()] = Some(Cursor {
                sent: Seq(from.0.saturating_sub(1)),
                next_barrier,
            });
        }
        self.prune_barriers();
        checked
    }

    /// Stops feeding `color` (lost, or about to be restored).
    pub fn detach(&mut self, color: Color) {
        self.cursors[color.index()] = None;
        self.restoring[color.index()] = None;
        self.prune_barriers();
    }

    /// Stops feeding `color`, which is to be restored from a snapshot at
    /// `barrier`: the barriers placed after it are kept until its replay
    /// starts (at most [`UpstreamConfig::max_barriers`] of them).
    pub fn detach_restoring(&mut self, color: Color, barrier: u64) {
        self.cursors[color.index()] = None;
        self.restoring[color.index()] = Some(barrier);
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

    /// The next frame for `color`: input or a barrier, in sequence order.
    pub fn poll_transmit(&mut self, color: Color) -> Option<Transmit> {
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
                return Some(Transmit::Message(ToInstance::Barrier {
                    id: b.id,
                    at: b.at,
                }));
            }
        }
        let limit = barrier.map_or(self.head, |b| b.at);
        if cursor.sent >= limit {
            return None;
        }
        // The frame holding the first seq not yet sent.
        let index = self
            .ring
            .partition_point(|r| r.batch.frontier().max(r.after) <= cursor.sent);
        let retained = self.ring.get(index)?;
        let frontier = retained.batch.frontier();
        let transmit = if retained.after == cursor.sent && frontier <= limit {
            cursor.sent = frontier;
            Transmit::Encoded(retained.batch.bytes().clone())
        } else {
            // A replay from inside a frame, or a frame across a barrier
            // (neither happens with barriers at the head): re-encode the part.
            let upto = frontier.min(limit);
            let sent = cursor.sent;
            let mut part = BytesMut::new();
            let records: Vec<Record> = retained
                .batch
                .records()
                .filter(|r| r.seq > sent && r.seq <= upto)
                .collect();
            wire::encode_batch(BatchKind::Input, upto, &records, &mut part).ok()?;
            cursor.sent = upto;
            Transmit::Encoded(part.freeze())
        };
        self.cursors[color.index()] = Some(cursor);
        Some(transmit)
    }

    /// The next input frame and whom it is for. When both instances are at
    /// the same place (the usual case: both live at the head) the frame is
    /// for both: the same bytes go to both links.
    pub fn poll_input(&mut self) -> Option<(Recipients, Transmit)> {
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
                .all(|c| c.next_barrier > front.id)
                && self.restoring.iter().flatten().all(|&at| at >= front.id);
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
    use crate::wire::BATCH_PREFIX;

    fn rec(seq: u64) -> Record {
        Record::new(Seq(seq), EventTime(0), ChannelId(0), seq as f64)
    }

    fn ingest(up: &mut Upstream, seqs: core::ops::RangeInclusive<u64>) {
        let records: Vec<Record> = seqs.clone().map(rec).collect();
        up.handle_ingress(Seq(*seqs.end()), &records);
    }

    /// One batch per record: the ring evicts whole frames.
    fn ingest_each(up: &mut Upstream, seqs: core::ops::RangeInclusive<u64>) {
        for seq in seqs {
            ingest(up, seq..=seq);
        }
    }

    fn drain(up: &mut Upstream, color: Color) -> Vec<ToInstance> {
        core::iter::from_fn(|| up.poll_transmit(color))
            .map(|t| t.into_message().unwrap())
            .collect()
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
        let frames: Vec<(Recipients, ToInstance)> = core::iter::from_fn(|| up.poll_input())
            .map(|(to, t)| (to, t.into_message().unwrap()))
            .collect();
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
        let shared: Vec<(Recipients, ToInstance)> = core::iter::from_fn(|| up.poll_input())
            .map(|(to, t)| (to, t.into_message().unwrap()))
            .collect();
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
        // Four one-record frames.
        let mut up = Upstream::new(config(4 * (1 + FRAME_WEIGHT), 100));
        ingest_each(&mut up, 1..=10);
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
        ingest_each(&mut up, 3..=10);
        // Reported as soon as the first record it is owed (3) leaves.
        assert_eq!(
            up.poll_event(),
            Some(UpstreamEvent::Overrun {
                color: Color::Blue,
                sent: Seq(2),
                oldest: Seq(4)
            })
        );
        assert_eq!(up.poll_event(), None);
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

    #[test]
    fn the_ring_keeps_at_most_its_retention_whatever_comes_in() {
        // Ten frames of 100 records, each with its own weight.
        let frame = 100 + FRAME_WEIGHT;
        let mut up = Upstream::new(config(10 * frame, 100));
        up.start_replay(Color::Blue, Seq(1)).unwrap();
        let mut seq = 0;
        for _ in 0..500 {
            ingest(&mut up, seq + 1..=seq + 100);
            seq += 100;
            drain(&mut up, Color::Blue);
            // Whole frames are evicted: at most the retention plus the newest.
            assert!(up.retained() <= 11 * frame, "{} retained", up.retained());
            assert!(up.retained_bytes() <= 11 * (BATCH_PREFIX + 100 * 32));
        }
        assert_eq!(up.retained(), 10 * frame);
        assert_eq!(up.oldest(), Seq(seq - 999));
        // Frames with no record count too: a frontier-only trickle is
        // bounded, in frames as in bytes.
        for _ in 0..5000 {
            seq += 1;
            up.handle_ingress(Seq(seq), &[]);
        }
        assert!(up.retained() <= 10 * frame + FRAME_WEIGHT);
        assert!(up.ring.len() <= 10 * frame / FRAME_WEIGHT + 1);
        assert_eq!(up.head(), Seq(seq));
    }

    #[test]
    fn a_trickle_of_small_frames_is_held_to_the_retention_in_bytes() {
        // One record a frame, as a slow source sends them: the ring keeps
        // fewer records than the retention counts, not more memory.
        let retention = 1000;
        let mut up = Upstream::new(config(retention, 100));
        ingest_each(&mut up, 1..=10_000);
        let held = up.ring.len() * std::mem::size_of::<Retained>() + up.retained_bytes();
        assert!(
            held <= (retention + 1 + FRAME_WEIGHT) * wire::RECORD_BYTES,
            "{held} bytes for a retention of {retention} records"
        );
        assert_eq!(up.ring.len(), retention / (1 + FRAME_WEIGHT));
    }

    #[test]
    fn both_instances_and_a_replay_get_the_bytes_encoded_at_ingress() {
        let mut up = Upstream::new(config(100, 100));
        up.start_replay(Color::Blue, Seq(1)).unwrap();
        up.start_replay(Color::Green, Seq(1)).unwrap();
        let mut encoder = BatchEncoder::new(BatchKind::Input, 100);
        encoder.push(&(1..=5).map(rec).collect::<Vec<_>>());
        encoder.finish(Seq(5));
        let batch = encoder.poll().unwrap();
        let pointer = batch.bytes().as_ptr();
        up.handle_input(batch);
        let (to, frame) = up.poll_input().unwrap();
        assert_eq!(to, Recipients::BOTH);
        let Transmit::Encoded(bytes) = frame else {
            panic!("input is sent encoded");
        };
        assert_eq!(bytes.as_ptr(), pointer, "sent without copying");
        // Green is lost and comes back from a barrier at 0: the same bytes again.
        up.detach(Color::Green);
        up.start_replay(Color::Green, Seq(1)).unwrap();
        let Some(Transmit::Encoded(again)) = up.poll_transmit(Color::Green) else {
            panic!("replay is sent encoded");
        };
        assert_eq!(again.as_ptr(), pointer, "replayed without copying");
        // A frame that repeats what was ingested is cut down to what is new.
        let mut late = BatchEncoder::new(BatchKind::Input, 100);
        late.push(&(4..=7).map(rec).collect::<Vec<_>>());
        late.finish(Seq(7));
        up.handle_input(late.poll().unwrap());
        assert_eq!(up.rejected(), 2);
        assert_eq!(seqs(&drain(&mut up, Color::Blue)), vec![6, 7]);
    }
}
