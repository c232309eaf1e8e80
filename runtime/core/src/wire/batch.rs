//! Batch frames (`Input`, `Output`) encoded once, straight from the records
//! a sink is written, into blocks of memory that are handed out as
//! [`Bytes`] and reused.
//!
//! A [`BatchEncoder`] writes each record's 32 bytes exactly once, into the
//! frame it belongs to, in its current block. A frame is closed (its length,
//! frontier and count patched in) when it is full or when the frontier is
//! given, and handed out as an [`EncodedBatch`] sharing the block: the
//! agent's retention ring keeps those bytes and sends them to both
//! instances, and replays them, without copying them again. A new block is
//! taken only when the current one has no room for a whole frame, so steady
//! state allocates once per block, not per batch; a block whose frames have
//! all been dropped is taken back as it is.

use std::collections::VecDeque;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::{BatchKind, HEADER_BYTES, LEN_BYTES, MAGIC, MAX_FRAME_LEN, RECORD_BYTES, VERSION};
use crate::record::{ChannelId, EventTime, Quality, Record, Seq};

/// Bytes before the first record of a batch frame: length prefix, header,
/// frontier and count.
pub const BATCH_PREFIX: usize = LEN_BYTES + HEADER_BYTES + 12;

/// Records [`Staged`] encodes before it copies them into the frame (2 KiB
/// on the stack).
const STAGED: usize = 64;

/// Default size of an encoder's blocks.
pub const BLOCK_BYTES: usize = 1 << 20;

/// Most records one batch frame can carry under [`MAX_FRAME_LEN`].
pub const MAX_BATCH_RECORDS: usize = (MAX_FRAME_LEN - HEADER_BYTES - 12) / RECORD_BYTES;

/// One encoded `Input` or `Output` frame (length prefix included) and what
/// it covers. Only a [`BatchEncoder`] makes them, so the bytes always are
/// one valid frame holding exactly the records it says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodedBatch {
    frontier: Seq,
    first: Option<Seq>,
    last: Option<Seq>,
    records: u32,
    bytes: Bytes,
}

impl EncodedBatch {
    /// Nothing more will come at or below this.
    pub fn frontier(&self) -> Seq {
        self.frontier
    }

    /// The seq of its first record, `None` when it has none.
    pub fn first(&self) -> Option<Seq> {
        self.first
    }

    /// The seq of its last record, `None` when it has none.
    pub fn last(&self) -> Option<Seq> {
        self.last
    }

    /// How many records it carries.
    pub fn len(&self) -> usize {
        self.records as usize
    }

    /// True when it carries no record (a frontier only).
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// The whole frame, ready to write to a link.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// Its records, decoded (for the rare replay that starts inside a frame).
    pub fn records(&self) -> impl Iterator<Item = Record> + '_ {
        records_of(self.bytes.get(BATCH_PREFIX..).unwrap_or_default())
    }
}

/// The frame being filled: it starts at offset 0 of the encoder's arena.
#[derive(Clone, Copy, Debug)]
struct Open {
    count: u32,
    first: Seq,
    last: Seq,
}

/// Encodes batch frames of one kind straight from record slices (see the
/// module docs). Feed it with [`BatchEncoder::push`] and
/// [`BatchEncoder::finish`], take the frames with [`BatchEncoder::poll`].
///
/// `Input` frames carry strictly increasing sequence numbers above the
/// last frontier: a record at or below either is dropped and counted
/// ([`BatchEncoder::rejected`]). `Output` frames may repeat a seq (one
/// input can make several outputs).
#[derive(Debug)]
pub struct BatchEncoder {
    kind: BatchKind,
    arena: BytesMut,
    block: usize,
    max_records: usize,
    open: Option<Open>,
    last: Option<Seq>,
    frontier: Seq,
    rejected: u64,
    blocks: u64,
    ready: VecDeque<EncodedBatch>,
}

impl BatchEncoder {
    /// An encoder of `kind` frames of at most `max_records` records (1 to
    /// [`MAX_BATCH_RECORDS`]), in blocks of [`BLOCK_BYTES`] (or one whole
    /// frame, if larger).
    pub fn new(kind: BatchKind, max_records: usize) -> BatchEncoder {
        BatchEncoder::with_block(kind, max_records, BLOCK_BYTES)
    }

    /// [`BatchEncoder::new`] with blocks of `block` bytes.
    pub fn with_block(kind: BatchKind, max_records: usize, block: usize) -> BatchEncoder {
        let max_records = max_records.clamp(1, MAX_BATCH_RECORDS);
        let frame = BATCH_PREFIX + max_records * RECORD_BYTES;
        BatchEncoder {
            kind,
            arena: BytesMut::new(),
            block: block.max(frame),
            max_records,
            open: None,
            last: None,
            frontier: Seq::ZERO,
            rejected: 0,
            blocks: 0,
            ready: VecDeque::new(),
        }
    }

    /// Most records per frame.
    pub fn max_records(&self) -> usize {
        self.max_records
    }

    /// Input records dropped because their seq was not above the one before
    /// them and the last frontier.
    pub fn rejected(&self) -> u64 {
        self.rejected
    }

    /// Blocks taken so far (reused ones included): in steady state this
    /// grows by one per block of frames, not per batch.
    pub fn blocks(&self) -> u64 {
        self.blocks
    }

    /// The frontier of the last frame closed.
    pub fn frontier(&self) -> Seq {
        self.frontier
    }

    /// Encodes `records`, in order, into the open frame; a full frame is
    /// closed when the next record comes, with the frontier that record
    /// allows (just below its seq).
    ///
    /// Records go in runs, as many as the open frame has room for (and, for
    /// `Input`, as long as their seqs rise), each encoded in one tight loop:
    /// the frame's bookkeeping is done once per run, not once per record.
    pub fn push(&mut self, records: &[Record]) {
        let mut rest = records;
        let mut staged = Staged::new();
        while let Some(first) = rest.first() {
            if self.kind == BatchKind::Input
                && (first.seq <= self.frontier || self.last.is_some_and(|l| first.seq <= l))
            {
                self.rejected += 1;
                rest = rest.get(1..).unwrap_or_default();
                continue;
            }
            let mut open = match self.open {
                Some(open) if (open.count as usize) < self.max_records => open,
                Some(_) => {
                    self.close(Seq(first.seq.0.saturating_sub(1)));
                    self.open_frame(first.seq)
                }
                None => self.open_frame(first.seq),
            };
            let room = (self.max_records - open.count as usize).min(rest.len());
            let run = match self.kind {
                BatchKind::Input => rising_prefix(rest.get(..room).unwrap_or_default()),
                BatchKind::Output => room,
            };
            let (taken, after) = rest.split_at(run);
            for record in taken {
                staged.push(&mut self.arena, record);
            }
            staged.flush(&mut self.arena);
            if let Some(last) = taken.last() {
                open.count += run as u32;
                open.last = last.seq;
                self.last = Some(last.seq);
            }
            self.open = Some(open);
            rest = after;
        }
    }

    /// Closes the open frame with `frontier` (raised to its last record and
    /// to the previous frontier). With no open frame, an empty frame is
    /// made when `frontier` moves: the receiver learns that nothing lies below.
    pub fn finish(&mut self, frontier: Seq) {
        if self.open.is_none() {
            if frontier <= self.frontier {
                return;
            }
            self.open_frame(frontier);
        }
        self.close(frontier);
    }

    /// The next frame closed, oldest first.
    pub fn poll(&mut self) -> Option<EncodedBatch> {
        self.ready.pop_front()
    }

    /// Starts a frame at offset 0 of the arena, with room for a whole one.
    fn open_frame(&mut self, first: Seq) -> Open {
        let whole = BATCH_PREFIX + self.max_records * RECORD_BYTES;
        if self.arena.capacity() - self.arena.len() < whole {
            // Takes the block back when every frame cut from it is gone;
            // else a new one. The arena is empty here: nothing is copied.
            self.arena.reserve(self.block);
            self.blocks += 1;
        }
        self.arena.put_u32_le(0);
        self.arena.put_slice(&MAGIC);
        self.arena.put_u8(VERSION);
        self.arena.put_u8(self.kind.type_byte());
        self.arena.put_u64_le(0);
        self.arena.put_u32_le(0);
        let open = Open {
            count: 0,
            first,
            last: first,
        };
        self.open = Some(open);
        open
    }

    fn close(&mut self, frontier: Seq) {
        let Some(open) = self.open.take() else {
            return;
        };
        let frontier = if open.count == 0 {
            frontier.max(self.frontier)
        } else {
            frontier.max(self.frontier).max(match self.kind {
                // Input seqs are unique: the frame covers its last record.
                BatchKind::Input => open.last,
                BatchKind::Output => Seq::ZERO,
            })
        };
        // Under the cap by construction (`max_records`), so these fit.
        let len = (HEADER_BYTES + 12 + open.count as usize * RECORD_BYTES) as u32;
        if let Some(head) = self.arena.get_mut(..BATCH_PREFIX) {
            head[..4].copy_from_slice(&len.to_le_bytes());
            head[8..16].copy_from_slice(&frontier.0.to_le_bytes());
            head[16..20].copy_from_slice(&open.count.to_le_bytes());
        }
        let bytes = self.arena.split().freeze();
        self.frontier = frontier;
        self.ready.push_back(EncodedBatch {
            frontier,
            first: (open.count > 0).then_some(open.first),
            last: (open.count > 0).then_some(open.last),
            records: open.count,
            bytes,
        });
    }
}

/// How many of `records`, from the first, have strictly rising seqs (at
/// least one, when there is one).
fn rising_prefix(records: &[Record]) -> usize {
    let rises = records
        .windows(2)
        .take_while(|pair| pair[0].seq < pair[1].seq)
        .count();
    (rises + 1).min(records.len())
}

/// The records of `bytes`, 32 bytes each (a shorter tail is not one).
pub(super) fn records_of(bytes: &[u8]) -> impl Iterator<Item = Record> + '_ {
    bytes.as_chunks::<RECORD_BYTES>().0.iter().map(get_record)
}

/// One record, as [`Staged`] wrote it.
pub(super) fn get_record(b: &[u8; RECORD_BYTES]) -> Record {
    let mut r = &b[..];
    Record {
        seq: Seq(r.get_u64_le()),
        time: EventTime(r.get_i64_le()),
        channel: ChannelId(r.get_u32_le()),
        quality: Quality(r.get_u32_le()),
        value: f64::from_bits(r.get_u64_le()),
    }
}

/// Records encoded on the stack, a few dozen at a time, and copied into
/// their frame in one piece: a copy per record cost more than the encoding.
pub(super) struct Staged {
    records: [[u8; RECORD_BYTES]; STAGED],
    len: usize,
}

impl Staged {
    pub(super) fn new() -> Staged {
        Staged {
            records: [[0; RECORD_BYTES]; STAGED],
            len: 0,
        }
    }

    /// Encodes `r`; what is staged goes to `dst` first when full.
    #[inline]
    pub(super) fn push(&mut self, dst: &mut BytesMut, r: &Record) {
        if self.len == STAGED {
            self.flush(dst);
        }
        self.records[self.len] = record_bytes(r);
        self.len += 1;
    }

    /// Appends what is staged to `dst`.
    pub(super) fn flush(&mut self, dst: &mut BytesMut) {
        dst.put_slice(self.records[..self.len].as_flattened());
        self.len = 0;
    }
}

/// The 32 bytes of one record on the wire.
#[inline]
fn record_bytes(r: &Record) -> [u8; RECORD_BYTES] {
    let mut b = [0u8; RECORD_BYTES];
    b[0..8].copy_from_slice(&r.seq.0.to_le_bytes());
    b[8..16].copy_from_slice(&r.time.0.to_le_bytes());
    b[16..20].copy_from_slice(&r.channel.0.to_le_bytes());
    b[20..24].copy_from_slice(&r.quality.0.to_le_bytes());
    b[24..32].copy_from_slice(&r.value.to_bits().to_le_bytes());
    b
}
