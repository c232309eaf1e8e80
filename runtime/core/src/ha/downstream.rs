//! The downstream junction: merges the outputs of the two instances of a
//! unit. Each output record is keyed by (stream, seq, ordinal), the ordinal
//! counting earlier records of the same stream and seq in that instance's
//! output. A key is emitted the first time a **serving** instance delivers it,
//! so every stream leaves in key order, exactly once, whichever instance is
//! ahead, dies or rejoins. The other copy (from a serving or shadow instance)
//! is compared with the first, exactly or within a per-channel absolute
//! tolerance, and disagreements are counted and the first few kept.
//!
//! Memory is bounded: per stream, one ring holds the copies that one instance
//! delivered and the other has not yet, at most
//! [`DownstreamConfig::max_pending`] over all streams (40 bytes each); an
//! entry leaves when its twin arrives, when the other instance's frontier
//! passes it (a divergence: it will never come), when the other instance is
//! lost, or when the rings are full (counted as uncompared).

use super::msg::{Color, Role, StreamId};
use crate::record::{ChannelId, Record, Seq};
use std::collections::VecDeque;

/// Sizes of the downstream junction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DownstreamConfig {
    /// Stream ids must be below this; records of other streams are counted as invalid.
    pub max_streams: u32,
    /// Most copies waiting for their twin, over all streams; past it the
    /// oldest of the stream at hand (or the new copy) goes uncompared.
    pub max_pending: usize,
    /// How many divergent pairs to keep for logging.
    pub keep_divergences: usize,
}

impl Default for DownstreamConfig {
    fn default() -> Self {
        DownstreamConfig {
            max_streams: 4096,
            max_pending: 1 << 16,
            keep_divergences: 16,
        }
    }
}

/// Per-channel comparison tolerances. Exact (bitwise) unless set.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tolerances {
    absolute: Vec<f64>,
}

impl Tolerances {
    /// Every channel compared bit for bit.
    pub fn exact() -> Tolerances {
        Tolerances::default()
    }

    /// Values of `channel` agree when they differ by at most `abs` (other
    /// fields must still be equal). A negative or NaN `abs` means exact.
    #[must_use]
    pub fn with(mut self, channel: ChannelId, abs: f64) -> Tolerances {
        if self.absolute.len() <= channel.index() {
            self.absolute.resize(channel.index() + 1, 0.0);
        }
        if let Some(slot) = self.absolute.get_mut(channel.index()) {
            *slot = if abs >= 0.0 { abs } else { 0.0 };
        }
        self
    }

    /// The absolute tolerance of `channel` (0 = exact).
    pub fn absolute(&self, channel: ChannelId) -> f64 {
        self.absolute.get(channel.index()).copied().unwrap_or(0.0)
    }

    /// True when the two copies agree.
    pub fn agree(&self, a: &Record, b: &Record) -> bool {
        if a.bit_eq(b) {
            return true;
        }
        let tol = self.absolute(a.channel);
        tol > 0.0
            && a.seq == b.seq
            && a.time == b.time
            && a.channel == b.channel
            && a.quality == b.quality
            && (a.value - b.value).abs() <= tol
    }
}

/// Two copies of one output that disagree, or a copy whose twin never came.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Divergence {
    /// The stream.
    pub stream: StreamId,
    /// Origin sequence number.
    pub seq: Seq,
    /// Ordinal within (stream, seq).
    pub ordinal: u32,
    /// Blue's copy, if it made one.
    pub blue: Option<Record>,
    /// Green's copy, if it made one.
    pub green: Option<Record>,
}

impl core::fmt::Display for Divergence {
    /// `stream 3 at origin sequence 17 (#0): blue 1.5, green 1.25`; a
    /// missing copy is `none`.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let copy = |r: &Option<Record>| match r {
            Some(r) => format!("{} (quality {})", r.value, r.quality.0),
            None => "none".to_owned(),
        };
        write!(
            f,
            "stream {} at origin sequence {} (#{}): blue {}, green {}",
            self.stream,
            self.seq,
            self.ordinal,
            copy(&self.blue),
            copy(&self.green)
        )
    }
}

/// Counters of the downstream junction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DownstreamStats {
    /// Records received, per colour.
    pub received: [u64; 2],
    /// Records emitted toward the sinks.
    pub emitted: u64,
    /// Pairs compared (agreeing or not).
    pub compared: u64,
    /// Pairs that disagreed, plus copies whose twin will never come.
    pub diverged: u64,
    /// Copies dropped without comparison (other instance lost or restored past them, ring full).
    pub uncompared: u64,
    /// Records refused: unknown stream, out of seq order within an
    /// instance, or numbered past the input ingested so far.
    pub invalid: u64,
}

/// A record's place in its stream: origin sequence, then ordinal. Ordered
/// as pairs are; [`Key::NONE`] sorts below every key a record can have (a
/// record's seq is at least 1), and stands for "none yet" without an
/// `Option` around each key on the per-record path. The ordinal is a whole
/// word: a queued copy built with a 4-byte one and copied into its queue
/// with 8-byte loads stalled the copy (a failed store-to-load forward) on
/// every record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    seq: Seq,
    ordinal: u64,
}

impl Key {
    const NONE: Key = Key {
        seq: Seq::ZERO,
        ordinal: 0,
    };
}

#[derive(Clone, Copy, Debug)]
struct Pending {
    record: Record,
    ordinal: u64,
}

impl Pending {
    fn key(&self) -> Key {
        Key {
            seq: self.record.seq,
            ordinal: self.ordinal,
        }
    }
}

#[derive(Debug)]
struct Stream {
    /// Highest key emitted ([`Key::NONE`]: none yet).
    emitted: Key,
    /// Last key received from each instance (for ordinals and order checks).
    last: [Key; 2],
    /// Copies from `owner` waiting for the other instance's twin, in key order.
    queue: VecDeque<Pending>,
    owner: Color,
    /// The highest key dropped from a full queue: its twin, when it comes,
    /// has nothing to be compared with, and is no divergence.
    overflowed: Key,
}

impl Stream {
    fn new() -> Stream {
        Stream {
            emitted: Key::NONE,
            last: [Key::NONE; 2],
            queue: VecDeque::new(),
            owner: Color::Blue,
            overflowed: Key::NONE,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Instance {
    /// Its outputs are expected (connected, or restoring).
    present: bool,
    role: Role,
    /// It restored at this seq: it never delivers outputs at or below it.
    start: Seq,
    /// It will deliver nothing more at or below this.
    frontier: Seq,
}

const ABSENT: Instance = Instance {
    present: false,
    role: Role::Starting,
    start: Seq::ZERO,
    frontier: Seq::ZERO,
};

/// Emptied batch buffers kept for the decoder, at most.
const SPARES: usize = 4;

/// The downstream junction of one unit.
#[derive(Debug)]
pub struct Downstream {
    config: DownstreamConfig,
    tolerances: Tolerances,
    streams: Vec<Stream>,
    instances: [Instance; 2],
    emitted: Vec<Record>,
    frontier: Seq,
    divergences: Vec<Divergence>,
    stats: DownstreamStats,
    /// Copies waiting for their twin, over all streams.
    pending: usize,
    /// Room the streams' queues hold, over all streams (a queue keeps its
    /// room as it empties, until [`Downstream::trim`]).
    room: usize,
    /// Emptied batch buffers, for the decoder to fill again.
    spares: Vec<Vec<Record>>,
}

impl Downstream {
    /// A junction expecting no instance yet.
    pub fn new(config: DownstreamConfig, tolerances: Tolerances) -> Downstream {
        Downstream {
            config,
            tolerances,
            streams: Vec::new(),
            instances: [ABSENT; 2],
            emitted: Vec::new(),
            frontier: Seq::ZERO,
            divergences: Vec::new(),
            stats: DownstreamStats::default(),
            pending: 0,
            room: 0,
            spares: Vec::new(),
        }
    }

    /// From now on expect outputs of `color` above `after` (its restore point,
    /// or ZERO for an instance starting from nothing), in `role`. Copies of
    /// the other instance above `after` are kept for comparison from now on.
    pub fn expect(&mut self, color: Color, after: Seq, role: Role) {
        self.instances[color.index()] = Instance {
            present: true,
            role,
            start: after,
            frontier: after,
        };
        let mut dropped = 0u64;
        for stream in &mut self.streams {
            stream.last[color.index()] = Key::NONE;
            if stream.owner == color {
                dropped += stream.queue.len() as u64;
                stream.queue.clear();
            } else {
                while stream.queue.front().is_some_and(|p| p.record.seq <= after) {
                    stream.queue.pop_front();
                    dropped += 1;
                }
            }
        }
        self.stats.uncompared += dropped;
        self.pending = self.pending.saturating_sub(dropped as usize);
    }

    /// Changes the role of a present instance. An instance that starts
    /// serving may already have delivered records no serving instance has:
    /// those waiting for their twin are emitted now, in order. Returns the
    /// origin sequence numbers between which some of its copies were never
    /// emitted: dropped from a full queue (it ran more than
    /// [`DownstreamConfig::max_pending`] copies ahead) while it was not
    /// serving, so that no instance will emit them.
    pub fn set_role(&mut self, color: Color, role: Role) -> Option<(Seq, Seq)> {
        let me = &mut self.instances[color.index()];
        let was = me.role;
        me.role = role;
        if role != Role::Serving || was == Role::Serving || !me.present {
            return None;
        }
        self.frontier = self.frontier.max(me.frontier);
        let partner_present = self.instances[color.other().index()].present;
        let mut gap: Option<(Seq, Seq)> = None;
        for stream in &mut self.streams {
            if stream.owner != color {
                continue;
            }
            if stream.overflowed > stream.emitted {
                let (from, to) = (stream.emitted.seq, stream.overflowed.seq);
                gap = Some(gap.map_or((from, to), |(f, t)| (f.min(from), t.max(to))));
            }
            for pending in &stream.queue {
                let key = pending.key();
                if key > stream.emitted {
                    stream.emitted = key;
                    self.emitted.push(pending.record);
                    self.stats.emitted += 1;
                }
            }
            if !partner_present {
                self.stats.uncompared += stream.queue.len() as u64;
                self.pending = self.pending.saturating_sub(stream.queue.len());
                stream.queue.clear();
            }
        }
        gap
    }

    /// The role of `color`, `None` when it is not expected.
    pub fn role(&self, color: Color) -> Option<Role> {
        let i = &self.instances[color.index()];
        i.present.then_some(i.role)
    }

    /// `color` died: its outputs are no longer waited for. Copies waiting for
    /// a twin are dropped uncompared, except those of a survivor that is not
    /// serving: they are emitted if it is promoted ([`Downstream::set_role`]).
    pub fn instance_lost(&mut self, color: Color) {
        self.instances[color.index()] = ABSENT;
        let survivor_serving = self.instances[color.other().index()].role == Role::Serving;
        let mut dropped = 0u64;
        for stream in &mut self.streams {
            if stream.owner == color || survivor_serving {
                dropped += stream.queue.len() as u64;
                stream.queue.clear();
            }
        }
        self.stats.uncompared += dropped;
        self.pending = self.pending.saturating_sub(dropped as usize);
    }

    /// Takes a copy of one `Output` message of `color` (the tests' way in;
    /// the supervisor hands over the decoded batch itself,
    /// [`Downstream::handle_output_owned`]).
    #[cfg(test)]
    pub fn handle_output(&mut self, color: Color, frontier: Seq, records: &[Record]) {
        self.handle_output_owned(color, frontier, records.to_vec(), Seq(u64::MAX));
    }

    /// Takes one `Output` message of `color`: its frontier and its decoded
    /// batch, which it may keep: when every record of it is emitted (the
    /// serving instance ahead, the usual case) and nothing else waits, the
    /// batch itself is what [`Downstream::poll_emitted`] hands out, with no
    /// copy. `head` is the input ingested so far: no record can come of
    /// input after it, and one numbered past it is refused (counted
    /// invalid), or it would hold its stream's emission above every honest
    /// record to come.
    pub fn handle_output_owned(
        &mut self,
        color: Color,
        frontier: Seq,
        records: Vec<Record>,
        head: Seq,
    ) {
        if !self.instances[color.index()].present {
            self.stats.invalid += records.len() as u64;
            return;
        }
        self.stats.received[color.index()] += records.len() as u64;
        // While every record so far is emitted, none is copied yet.
        let mut whole = self.emitted.is_empty();
        for (i, record) in records.iter().enumerate() {
            let emit = self.handle_record(color, record, head);
            if whole && !emit {
                self.emitted
                    .extend_from_slice(records.get(..i).unwrap_or_default());
                whole = false;
            } else if !whole && emit {
                self.emitted.push(*record);
            }
        }
        if whole && !records.is_empty() {
            let emptied = std::mem::replace(&mut self.emitted, records);
            self.keep_spare(emptied);
        } else {
            self.keep_spare(records);
        }
        self.handle_frontier(color, frontier);
    }

    /// Keeps an emptied buffer for [`Downstream::take_spare`] (a few at most).
    fn keep_spare(&mut self, mut buffer: Vec<Record>) {
        if buffer.capacity() > 0 && self.spares.len() < SPARES {
            buffer.clear();
            self.spares.push(buffer);
        }
    }

    /// A buffer a batch came in and that is now empty: hand it back to the
    /// decoder, so that steady state allocates none.
    pub fn take_spare(&mut self) -> Option<Vec<Record>> {
        self.spares.pop()
    }

    /// Merges one record; true when it is to be emitted now.
    fn handle_record(&mut self, color: Color, record: &Record, head: Seq) -> bool {
        let c = color.index();
        let o = color.other().index();
        let stream_id = StreamId::of(record.channel);
        let index = stream_id.index();
        if stream_id.0 >= self.config.max_streams {
            self.stats.invalid += 1;
            return false;
        }
        if self.streams.len() <= index {
            self.streams.resize_with(index + 1, Stream::new);
        }
        let me = self.instances[c];
        let partner = self.instances[o];
        let Some(stream) = self.streams.get_mut(index) else {
            return false;
        };
        let last = stream.last[c];
        let ordinal = if last.seq == record.seq {
            last.ordinal.saturating_add(1)
        } else if last.seq > record.seq {
            self.stats.invalid += 1;
            return false;
        } else {
            0
        };
        if record.seq <= me.start || record.seq > head {
            self.stats.invalid += 1;
            return false;
        }
        let key = Key {
            seq: record.seq,
            ordinal,
        };
        stream.last[c] = key;
        let emit = me.role == Role::Serving && key > stream.emitted;
        if emit {
            stream.emitted = key;
            self.stats.emitted += 1;
        }
        if !partner.present || record.seq <= partner.start {
            return emit;
        }
        if key <= stream.overflowed {
            // Its twin was dropped from a full queue (and counted then).
            return emit;
        }
        if stream.owner != color {
            while let Some(front) = stream.queue.front().copied() {
                if front.key() > key {
                    // We made a record the partner did not make before its next one.
                    note(
                        &mut self.stats,
                        &mut self.divergences,
                        self.config.keep_divergences,
                        stream_id,
                        key,
                        (color, Some(*record)),
                        None,
                    );
                    return emit;
                }
                stream.queue.pop_front();
                self.pending = self.pending.saturating_sub(1);
                if front.key() == key {
                    self.stats.compared += 1;
                    if !self.tolerances.agree(&front.record, record) {
                        note(
                            &mut self.stats,
                            &mut self.divergences,
                            self.config.keep_divergences,
                            stream_id,
                            key,
                            (color, Some(*record)),
                            Some(front.record),
                        );
                    }
                    return emit;
                }
                // The partner made `front`, we skipped it.
                note(
                    &mut self.stats,
                    &mut self.divergences,
                    self.config.keep_divergences,
                    stream_id,
                    front.key(),
                    (color, None),
                    Some(front.record),
                );
            }
        }
        if record.seq <= partner.frontier {
            // The partner has passed this seq without making this record.
            note(
                &mut self.stats,
                &mut self.divergences,
                self.config.keep_divergences,
                stream_id,
                key,
                (color, Some(*record)),
                None,
            );
            return emit;
        }
        if self.pending >= self.config.max_pending {
            self.stats.uncompared += 1;
            // The queue, if any, is this instance's (the loop above emptied
            // the partner's): its oldest goes; with none, this copy does.
            match stream.queue.pop_front() {
                Some(dropped) => {
                    stream.overflowed = stream.overflowed.max(dropped.key());
                    self.pending -= 1;
                }
                None => {
                    stream.overflowed = stream.overflowed.max(key);
                    return emit;
                }
            }
        }
        stream.owner = color;
        let room = stream.queue.capacity();
        stream.queue.push_back(Pending {
            record: *record,
            ordinal,
        });
        let grown = stream.queue.capacity() - room;
        self.pending += 1;
        if grown > 0 {
            self.room += grown;
            if self.room > 2 * self.config.max_pending {
                self.trim();
            }
        }
        emit
    }

    /// Gives back the room of queues that hold far less than it, once all
    /// of them together have room for more than twice
    /// [`DownstreamConfig::max_pending`] copies: copies spread over many
    /// streams one after another (each queue keeping its room as it
    /// empties) stay within about three times `max_pending` in all. With a
    /// stream or two, as at saturation, it never runs.
    fn trim(&mut self) {
        for stream in &mut self.streams {
            let len = stream.queue.len();
            if len * 2 < stream.queue.capacity() {
                stream.queue.shrink_to(len);
            }
        }
        self.room = self.streams.iter().map(|s| s.queue.capacity()).sum();
    }

    fn handle_frontier(&mut self, color: Color, frontier: Seq) {
        let me = &mut self.instances[color.index()];
        if frontier <= me.frontier {
            return;
        }
        me.frontier = frontier;
        if me.role == Role::Serving {
            self.frontier = self.frontier.max(frontier);
        }
        for (index, stream) in self.streams.iter_mut().enumerate() {
            if stream.owner == color {
                continue;
            }
            while let Some(front) = stream.queue.front().copied() {
                if front.record.seq > frontier {
                    break;
                }
                stream.queue.pop_front();
                self.pending = self.pending.saturating_sub(1);
                let stream_id = StreamId(u32::try_from(index).unwrap_or(u32::MAX));
                note(
                    &mut self.stats,
                    &mut self.divergences,
                    self.config.keep_divergences,
                    stream_id,
                    front.key(),
                    (color, None),
                    Some(front.record),
                );
            }
        }
    }

    /// Moves the records to emit, in order per stream, onto the end of `out`
    /// (an empty `out` takes the buffer itself, and leaves its own).
    pub fn poll_emitted(&mut self, out: &mut Vec<Record>) {
        if out.is_empty() {
            std::mem::swap(out, &mut self.emitted);
        } else {
            out.append(&mut self.emitted);
        }
    }

    /// Every output at or below this has been emitted: the sinks' frontier.
    pub fn frontier(&self) -> Seq {
        self.frontier
    }

    /// The output frontier `color` reported last.
    pub fn instance_frontier(&self, color: Color) -> Seq {
        self.instances[color.index()].frontier
    }

    /// Counters.
    pub fn stats(&self) -> DownstreamStats {
        self.stats
    }

    /// The first divergences seen (at most `keep_divergences`).
    pub fn divergences(&self) -> &[Divergence] {
        &self.divergences
    }

    /// Forgets the divergences kept so far, so that the first ones of what
    /// comes next (an upgrade's comparison) are kept. Counters stay.
    pub fn clear_divergences(&mut self) {
        self.divergences.clear();
    }

    /// Copies waiting for their twin, over all streams (at most
    /// [`DownstreamConfig::max_pending`]).
    pub fn pending(&self) -> usize {
        self.pending
    }
}

/// Counts a divergence and keeps it if there is room. `mine` is the copy of
/// the instance whose message revealed it, `theirs` the other instance's.
fn note(
    stats: &mut DownstreamStats,
    kept: &mut Vec<Divergence>,
    keep: usize,
    stream: StreamId,
    key: Key,
    mine: (Color, Option<Record>),
    theirs: Option<Record>,
) {
    stats.diverged += 1;
    if kept.len() >= keep {
        return;
    }
    let (color, record) = mine;
    let (blue, green) = match color {
        Color::Blue => (record, theirs),
        Color::Green => (theirs, record),
    };
    kept.push(Divergence {
        stream,
        seq: key.seq,
        ordinal: u32::try_from(key.ordinal).unwrap_or(u32::MAX),
        blue,
        green,
    });
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::record::EventTime;

    const BLUE: Color = Color::Blue;
    const GREEN: Color = Color::Green;

    fn rec(seq: u64, channel: u32, value: f64) -> Record {
        Record::new(Seq(seq), EventTime(seq as i64), ChannelId(channel), value)
    }

    /// Two streams; seq 3 makes two records on stream 0.
    fn output(seqs: core::ops::RangeInclusive<u64>) -> Vec<Record> {
        let mut out = Vec::new();
        for seq in seqs {
            out.push(rec(seq, 0, seq as f64));
            if seq == 3 {
                out.push(rec(seq, 0, -1.0));
            }
            out.push(rec(seq, 1, 10.0 * seq as f64));
        }
        out
    }

    fn both_serving() -> Downstream {
        let mut d = Downstream::new(DownstreamConfig::default(), Tolerances::exact());
        d.expect(BLUE, Seq::ZERO, Role::Serving);
        d.expect(GREEN, Seq::ZERO, Role::Serving);
        d
    }

    fn emitted(d: &mut Downstream) -> Vec<Record> {
        let mut out = Vec::new();
        d.poll_emitted(&mut out);
        out
    }

    /// Order is promised per stream only: group by stream, keeping order within.
    fn by_stream(mut records: Vec<Record>) -> Vec<Record> {
        records.sort_by_key(|r| r.channel);
        records
    }

    #[test]
    fn each_record_is_emitted_once_whichever_instance_is_ahead() {
        let mut d = both_serving();
        d.handle_output(BLUE, Seq(2), &output(1..=2));
        d.handle_output(GREEN, Seq(4), &output(1..=4));
        d.handle_output(BLUE, Seq(5), &output(3..=5));
        d.handle_output(GREEN, Seq(5), &output(5..=5));
        assert_eq!(emitted(&mut d), output(1..=5));
        let stats = d.stats();
        assert_eq!(stats.emitted, 11);
        assert_eq!(stats.compared, 11);
        assert_eq!(stats.diverged, 0);
        assert_eq!(d.pending(), 0);
        assert_eq!(d.frontier(), Seq(5));
    }

    #[test]
    fn one_instance_dying_loses_nothing_and_duplicates_nothing() {
        let mut d = both_serving();
        d.handle_output(BLUE, Seq(4), &output(1..=4));
        d.handle_output(GREEN, Seq(2), &output(1..=2));
        d.instance_lost(BLUE);
        d.handle_output(GREEN, Seq(6), &output(3..=6));
        assert_eq!(emitted(&mut d), output(1..=6));
        assert_eq!(d.stats().diverged, 0);
        assert_eq!(d.pending(), 0);
    }

    #[test]
    fn a_rejoining_instance_is_compared_above_its_restore_point() {
        let mut d = both_serving();
        d.handle_output(BLUE, Seq(2), &output(1..=2));
        d.handle_output(GREEN, Seq(2), &output(1..=2));
        d.instance_lost(GREEN);
        d.handle_output(BLUE, Seq(3), &output(3..=3));
        // Green restores at seq 3 while blue is already there.
        d.expect(GREEN, Seq(3), Role::Starting);
        d.handle_output(BLUE, Seq(5), &output(4..=5));
        d.handle_output(GREEN, Seq(5), &output(4..=5));
        d.set_role(GREEN, Role::Serving);
        d.handle_output(GREEN, Seq(6), &output(6..=6));
        d.handle_output(BLUE, Seq(6), &output(6..=6));
        assert_eq!(emitted(&mut d), output(1..=6));
        let stats = d.stats();
        assert_eq!(stats.diverged, 0);
        assert_eq!(stats.compared, 4 + 4 + 2);
        assert_eq!(d.pending(), 0);
    }

    #[test]
    fn a_joiner_promoted_ahead_of_the_server_emits_what_it_already_delivered() {
        let mut d = both_serving();
        d.handle_output(BLUE, Seq(2), &output(1..=2));
        d.handle_output(GREEN, Seq(2), &output(1..=2));
        d.instance_lost(GREEN);
        d.expect(GREEN, Seq(2), Role::Starting);
        // Green replays faster than blue's output arrives, and is promoted.
        d.handle_output(GREEN, Seq(5), &output(3..=5));
        d.set_role(GREEN, Role::Serving);
        d.handle_output(GREEN, Seq(6), &output(6..=6));
        d.handle_output(BLUE, Seq(6), &output(3..=6));
        assert_eq!(by_stream(emitted(&mut d)), by_stream(output(1..=6)));
        assert_eq!(d.stats().diverged, 0);
        assert_eq!(d.pending(), 0);
    }

    #[test]
    fn a_shadow_promoted_after_the_server_died_emits_what_it_already_delivered() {
        let mut d = Downstream::new(DownstreamConfig::default(), Tolerances::exact());
        d.expect(BLUE, Seq::ZERO, Role::Serving);
        d.expect(GREEN, Seq::ZERO, Role::Shadow);
        d.handle_output(BLUE, Seq(2), &output(1..=2));
        d.handle_output(GREEN, Seq(4), &output(1..=4));
        d.instance_lost(BLUE);
        d.set_role(GREEN, Role::Serving);
        d.handle_output(GREEN, Seq(5), &output(5..=5));
        assert_eq!(by_stream(emitted(&mut d)), by_stream(output(1..=5)));
        assert_eq!(d.pending(), 0);
    }

    #[test]
    fn shadow_output_is_compared_never_emitted() {
        let tol = Tolerances::exact().with(ChannelId(1), 0.5);
        let mut d = Downstream::new(DownstreamConfig::default(), tol);
        d.expect(BLUE, Seq::ZERO, Role::Serving);
        d.expect(GREEN, Seq::ZERO, Role::Shadow);
        let mut shadow = output(1..=2);
        shadow[1].value += 0.25; // channel 1: within tolerance
        shadow[2].value += 1e-9; // channel 0: exact, so a divergence
        d.handle_output(GREEN, Seq(2), &shadow);
        assert!(emitted(&mut d).is_empty());
        d.handle_output(BLUE, Seq(2), &output(1..=2));
        assert_eq!(emitted(&mut d), output(1..=2));
        assert_eq!(d.stats().diverged, 1);
        let div = d.divergences()[0];
        assert_eq!((div.stream, div.seq, div.ordinal), (StreamId(0), Seq(2), 0));
        assert_eq!(div.blue.unwrap().value, 2.0);
        assert_eq!(div.green.unwrap().value, 2.0 + 1e-9);
    }

    #[test]
    fn a_missing_twin_is_a_divergence_once_the_frontier_passes_it() {
        let mut d = both_serving();
        d.handle_output(BLUE, Seq(2), &output(1..=2));
        let mut green = output(1..=2);
        green.remove(1); // seq 1 stream 1 never made by green
        d.handle_output(GREEN, Seq(2), &green);
        assert_eq!(d.stats().diverged, 1);
        assert_eq!(d.divergences()[0].green, None);
        assert_eq!(d.pending(), 0);
    }

    #[test]
    fn out_of_order_and_unknown_streams_are_refused() {
        let config = DownstreamConfig {
            max_streams: 2,
            ..DownstreamConfig::default()
        };
        let mut d = Downstream::new(config, Tolerances::exact());
        d.expect(BLUE, Seq::ZERO, Role::Serving);
        d.handle_output(
            BLUE,
            Seq(5),
            &[rec(5, 0, 1.0), rec(4, 0, 1.0), rec(5, 7, 1.0)],
        );
        assert_eq!(emitted(&mut d), vec![rec(5, 0, 1.0)]);
        assert_eq!(d.stats().invalid, 2);
    }

    /// Both instances serving from the start, `max_pending` copies per stream.
    fn both_serving_with_room_for(max_pending: usize) -> Downstream {
        let config = DownstreamConfig {
            max_pending,
            ..DownstreamConfig::default()
        };
        let mut d = Downstream::new(config, Tolerances::exact());
        d.expect(BLUE, Seq::ZERO, Role::Serving);
        d.expect(GREEN, Seq::ZERO, Role::Serving);
        d
    }

    #[test]
    fn a_twin_dropped_from_a_full_queue_is_uncompared_not_a_divergence() {
        let mut d = both_serving_with_room_for(4);
        let stream: Vec<Record> = (1..=10).map(|q| rec(q, 0, q as f64)).collect();
        d.handle_output(BLUE, Seq(10), &stream);
        d.handle_output(GREEN, Seq(10), &stream);
        let stats = d.stats();
        assert_eq!(
            (stats.compared, stats.diverged, stats.uncompared),
            (4, 0, 6)
        );
        // A real difference after the dropped ones still counts.
        d.handle_output(BLUE, Seq(11), &[rec(11, 0, 1.0)]);
        d.handle_output(GREEN, Seq(11), &[rec(11, 0, 2.0)]);
        assert_eq!(d.stats().diverged, 1);
    }

    #[test]
    fn pending_copies_are_bounded() {
        let mut d = both_serving_with_room_for(4);
        d.handle_output(BLUE, Seq(10), &output(1..=10));
        // Over both streams.
        assert_eq!(d.pending(), 4);
        assert_eq!(d.stats().uncompared, 21 - 4);
    }

    #[test]
    fn a_batch_emitted_whole_is_handed_on_as_it_is_and_a_mixed_one_in_order() {
        let mut d = both_serving();
        let batch = output(1..=4);
        let pointer = batch.as_ptr();
        d.handle_output_owned(BLUE, Seq(4), batch, Seq(u64::MAX));
        let out = emitted(&mut d);
        assert_eq!(out, output(1..=4));
        assert_eq!(out.as_ptr(), pointer, "the decoded batch itself goes on");
        // Green's copies of 1..=4 are compared, not emitted; 5 and 6 are new.
        d.handle_output_owned(GREEN, Seq(6), output(1..=6), Seq(u64::MAX));
        assert_eq!(emitted(&mut d), output(5..=6));
        // Green's batch, copied from, comes back empty for the next one.
        let spare = d.take_spare().unwrap();
        assert!(spare.is_empty() && spare.capacity() >= output(1..=6).len());
        let stats = d.stats();
        assert_eq!((stats.compared, stats.diverged), (9, 0));
        // Behind what was emitted, slices and owned batches agree.
        d.handle_output(BLUE, Seq(7), &output(5..=7));
        d.handle_output_owned(GREEN, Seq(8), output(7..=8), Seq(u64::MAX));
        assert_eq!(emitted(&mut d), output(7..=8));
    }

    #[test]
    fn copies_waiting_for_their_twin_are_bounded_over_all_streams() {
        let mut d = both_serving_with_room_for(10);
        // Blue runs far ahead on 100 streams; green says nothing.
        for seq in 1..=50u64 {
            let batch: Vec<Record> = (0..100).map(|c| rec(seq, c, seq as f64)).collect();
            d.handle_output(BLUE, Seq(seq), &batch);
            assert!(d.pending() <= 10);
        }
        assert_eq!(d.pending(), 10);
        let held: usize = d.streams.iter().map(|s| s.queue.len()).sum();
        assert_eq!(held, 10, "the count is the rings' length");
        assert_eq!(d.stats().uncompared, 5000 - 10);
        assert_eq!(emitted(&mut d).len(), 5000);
        // Green catches up: what was dropped is no divergence.
        for seq in 1..=50u64 {
            let batch: Vec<Record> = (0..100).map(|c| rec(seq, c, seq as f64)).collect();
            d.handle_output(GREEN, Seq(seq), &batch);
        }
        assert_eq!(d.stats().diverged, 0);
        assert_eq!(d.stats().compared, 10);
        assert_eq!(d.pending(), 0);
    }

    #[test]
    fn queues_emptied_one_stream_after_another_give_their_room_back() {
        let mut d = both_serving_with_room_for(2048);
        // On 64 streams in turn, blue runs 1000 copies ahead, then green
        // catches up: never more than 1000 waiting at once.
        for c in 0..64u32 {
            let batch: Vec<Record> = (1..=1000).map(|q| rec(q, c, q as f64)).collect();
            d.handle_output(BLUE, Seq::ZERO, &batch);
            d.handle_output(GREEN, Seq::ZERO, &batch);
            assert_eq!(d.pending(), 0);
        }
        let room: usize = d.streams.iter().map(|s| s.queue.capacity()).sum();
        assert!(room <= 3 * 2048, "room for {room} copies is kept");
        assert_eq!(d.stats().compared, 64_000);
    }
}
