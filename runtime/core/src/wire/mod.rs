//! Frames exchanged between the agent and instances: length-prefixed,
//! versioned, size-capped, validated before use.
//!
//! Every frame on the wire is
//!
//! ```text
//! len: u32 LE        bytes that follow (header + body), at most the cap
//! magic: [u8; 2]     b"TD"
//! version: u8        VERSION (1)
//! type: u8           FrameType
//! body               per type, fixed little-endian fields
//! ```
//!
//! Records are 32 fixed bytes each (seq u64, time i64, channel u32,
//! quality u32, value f64 bits), so a batch encodes with one reservation and
//! no per-record allocation, and decoding checks the declared count against
//! the frame length before touching a record. Decoding never panics on any
//! input: an unknown type, version, enum value, a short or long body, or a
//! length over the cap is a typed [`FrameError`].

use crate::ha::Color;
use crate::record::{ChannelId, EventTime, Quality, Record, Seq};
use bytes::{Buf, BufMut, Bytes, BytesMut};

mod convert;
mod error;
#[cfg(test)]
mod tests;

pub use convert::UnexpectedFrame;
pub use error::{EncodeError, FrameError};

/// First two bytes of every frame header.
pub const MAGIC: [u8; 2] = *b"TD";
/// The wire format version this code writes and reads.
pub const VERSION: u8 = 1;
/// Bytes of the length prefix.
pub const LEN_BYTES: usize = 4;
/// Bytes of the header after the length prefix: magic, version, type.
pub const HEADER_BYTES: usize = 4;
/// Bytes of one encoded record.
pub const RECORD_BYTES: usize = 32;
/// Default cap on the length field (header + body), 16 MiB.
pub const MAX_FRAME_LEN: usize = 16 << 20;

/// Role of an instance, as carried in `SetRole`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WireRole {
    /// Wire value 0: outputs are emitted.
    Serving,
    /// Wire value 1: outputs are compared, never emitted.
    Shadow,
}

/// The type byte of a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameType {
    /// Instance -> agent, first frame.
    Hello = 0x01,
    /// Agent -> instance, ingress records.
    Input = 0x02,
    /// Instance -> agent, records toward sinks.
    Output = 0x03,
    /// Agent -> instance, a barrier in the input stream.
    Barrier = 0x04,
    /// Agent -> instance, stream the snapshot at a barrier.
    SnapshotRequest = 0x05,
    /// Both ways, one piece of one vertex's snapshot.
    SnapshotChunk = 0x06,
    /// Both ways, the snapshot at a barrier is complete.
    SnapshotEnd = 0x07,
    /// Instance -> agent, a snapshot was restored.
    Restored = 0x08,
    /// Instance -> agent, state hash after a barrier.
    StateHash = 0x09,
    /// Agent -> instance, serving or shadow.
    SetRole = 0x0a,
    /// Both ways, liveness.
    Heartbeat = 0x0b,
}

impl FrameType {
    /// The type for a type byte, if it is one.
    pub const fn from_u8(byte: u8) -> Option<FrameType> {
        Some(match byte {
            0x01 => FrameType::Hello,
            0x02 => FrameType::Input,
            0x03 => FrameType::Output,
            0x04 => FrameType::Barrier,
            0x05 => FrameType::SnapshotRequest,
            0x06 => FrameType::SnapshotChunk,
            0x07 => FrameType::SnapshotEnd,
            0x08 => FrameType::Restored,
            0x09 => FrameType::StateHash,
            0x0a => FrameType::SetRole,
            0x0b => FrameType::Heartbeat,
            _ => return None,
        })
    }

    /// The name used in error messages.
    pub const fn name(self) -> &'static str {
        match self {
            FrameType::Hello => "hello",
            FrameType::Input => "input",
            FrameType::Output => "output",
            FrameType::Barrier => "barrier",
            FrameType::SnapshotRequest => "snapshot request",
            FrameType::SnapshotChunk => "snapshot chunk",
            FrameType::SnapshotEnd => "snapshot end",
            FrameType::Restored => "restored",
            FrameType::StateHash => "state hash",
            FrameType::SetRole => "set role",
            FrameType::Heartbeat => "heartbeat",
        }
    }
}

/// One message of the HA protocol (see the module docs for the layout).
#[derive(Clone, Debug, PartialEq)]
pub enum Frame {
    /// First frame of an instance.
    Hello {
        /// Which instance.
        color: Color,
        /// Runtime/graph version the instance runs.
        version: u32,
        /// Process id, for logs and supervision.
        pid: u32,
    },
    /// Ingress records; the same bytes go to both instances.
    Input {
        /// Nothing more at or below this sequence number.
        frontier: Seq,
        /// The records, in seq order.
        records: Vec<Record>,
    },
    /// Records toward sinks.
    Output {
        /// Nothing more at or below this sequence number.
        frontier: Seq,
        /// The records, in seq order.
        records: Vec<Record>,
    },
    /// Snapshot (or hash) once every input record with `seq <= at` is processed.
    Barrier {
        /// Barrier id.
        id: u64,
        /// Last input sequence number before the barrier.
        at: Seq,
    },
    /// Stream the snapshot taken at `barrier`.
    SnapshotRequest {
        /// Barrier id.
        barrier: u64,
    },
    /// `bytes` of vertex `vertex`'s snapshot, at `offset` of `total`.
    SnapshotChunk {
        /// Barrier id.
        barrier: u64,
        /// Vertex index in the plan.
        vertex: u32,
        /// Byte offset of this chunk in the vertex's snapshot.
        offset: u64,
        /// Total bytes of the vertex's snapshot; `offset + bytes.len() <= total`.
        total: u64,
        /// The chunk.
        bytes: Bytes,
    },
    /// The snapshot at `barrier` is complete.
    SnapshotEnd {
        /// Barrier id.
        barrier: u64,
        /// How many vertices were sent.
        vertices: u32,
        /// Hash of the whole state at the barrier.
        state_hash: u64,
    },
    /// A snapshot was restored.
    Restored {
        /// Barrier id.
        barrier: u64,
        /// Hash of the restored state.
        state_hash: u64,
    },
    /// State hash after passing a barrier.
    StateHash {
        /// Barrier id.
        barrier: u64,
        /// Hash of the state at the barrier.
        hash: u64,
    },
    /// Serving or shadow.
    SetRole {
        /// The new role.
        role: WireRole,
    },
    /// Liveness. The agent sends `processed: Seq::ZERO`; an instance sends
    /// the highest input sequence number it has processed.
    Heartbeat {
        /// Sender's clock, nanoseconds since the Unix epoch.
        sent_ns: i64,
        /// Heartbeat counter.
        seq: u64,
        /// Highest input seq processed (instance -> agent).
        processed: Seq,
    },
}

impl Frame {
    /// The frame's type byte.
    pub fn frame_type(&self) -> FrameType {
        match self {
            Frame::Hello { .. } => FrameType::Hello,
            Frame::Input { .. } => FrameType::Input,
            Frame::Output { .. } => FrameType::Output,
            Frame::Barrier { .. } => FrameType::Barrier,
            Frame::SnapshotRequest { .. } => FrameType::SnapshotRequest,
            Frame::SnapshotChunk { .. } => FrameType::SnapshotChunk,
            Frame::SnapshotEnd { .. } => FrameType::SnapshotEnd,
            Frame::Restored { .. } => FrameType::Restored,
            Frame::StateHash { .. } => FrameType::StateHash,
            Frame::SetRole { .. } => FrameType::SetRole,
            Frame::Heartbeat { .. } => FrameType::Heartbeat,
        }
    }

    /// Bytes after the length prefix (header + body) this frame encodes to.
    pub fn encoded_len(&self) -> usize {
        HEADER_BYTES
            + match self {
                Frame::Hello { .. } => 9,
                Frame::Input { records, .. } | Frame::Output { records, .. } => {
                    batch_body_len(records.len())
                }
                Frame::Barrier { .. } | Frame::Restored { .. } | Frame::StateHash { .. } => 16,
                Frame::SnapshotRequest { .. } => 8,
                Frame::SnapshotChunk { bytes, .. } => 32usize.saturating_add(bytes.len()),
                Frame::SnapshotEnd { .. } => 20,
                Frame::SetRole { .. } => 1,
                Frame::Heartbeat { .. } => 24,
            }
    }
}

fn batch_body_len(records: usize) -> usize {
    12usize.saturating_add(records.saturating_mul(RECORD_BYTES))
}

fn put_header(dst: &mut BytesMut, len: usize, ty: FrameType) {
    // `len` was checked against the cap (<= u32::MAX) by the caller.
    dst.put_u32_le(len as u32);
    dst.put_slice(&MAGIC);
    dst.put_u8(VERSION);
    dst.put_u8(ty as u8);
}

fn check_len(ty: FrameType, len: usize, max: usize) -> Result<(), EncodeError> {
    let max = max.min(u32::MAX as usize);
    if len > max {
        return Err(EncodeError::TooLarge {
            frame_type: ty.name(),
            len,
            max,
        });
    }
    Ok(())
}

fn put_record(dst: &mut BytesMut, r: &Record) {
    dst.put_u64_le(r.seq.0);
    dst.put_i64_le(r.time.0);
    dst.put_u32_le(r.channel.0);
    dst.put_u32_le(r.quality.0);
    dst.put_u64_le(r.value.to_bits());
}

/// Appends an `Input` or `Output` frame carrying `records` to `dst`, straight
/// from the slice: one reservation, no per-record allocation.
pub fn encode_batch(
    ty: BatchKind,
    frontier: Seq,
    records: &[Record],
    dst: &mut BytesMut,
) -> Result<(), EncodeError> {
    encode_batch_with_limit(ty, frontier, records, dst, MAX_FRAME_LEN)
}

/// [`encode_batch`] with a cap other than [`MAX_FRAME_LEN`].
pub fn encode_batch_with_limit(
    ty: BatchKind,
    frontier: Seq,
    records: &[Record],
    dst: &mut BytesMut,
    max: usize,
) -> Result<(), EncodeError> {
    let ty = ty.frame_type();
    let len = HEADER_BYTES.saturating_add(batch_body_len(records.len()));
    check_len(ty, len, max)?;
    let count = u32::try_from(records.len()).map_err(|_| EncodeError::TooLarge {
        frame_type: ty.name(),
        len,
        max,
    })?;
    dst.reserve(LEN_BYTES + len);
    put_header(dst, len, ty);
    dst.put_u64_le(frontier.0);
    dst.put_u32_le(count);
    for r in records {
        put_record(dst, r);
    }
    Ok(())
}

/// Which batch frame [`encode_batch`] writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BatchKind {
    /// Agent -> instance.
    Input,
    /// Instance -> agent.
    Output,
}

impl BatchKind {
    fn frame_type(self) -> FrameType {
        match self {
            BatchKind::Input => FrameType::Input,
            BatchKind::Output => FrameType::Output,
        }
    }
}

/// Appends `frame` to `dst` with the default cap.
pub fn encode(frame: &Frame, dst: &mut BytesMut) -> Result<(), EncodeError> {
    encode_with_limit(frame, dst, MAX_FRAME_LEN)
}

/// Encodes `frame` once into shared bytes, to send to several peers without copying.
pub fn encode_to_bytes(frame: &Frame) -> Result<Bytes, EncodeError> {
    let mut buf = BytesMut::new();
    encode(frame, &mut buf)?;
    Ok(buf.freeze())
}

/// Appends `frame` to `dst`, refusing frames whose length is over `max`.
pub fn encode_with_limit(frame: &Frame, dst: &mut BytesMut, max: usize) -> Result<(), EncodeError> {
    let ty = frame.frame_type();
    match frame {
        Frame::Input { frontier, records } => {
            return encode_batch_with_limit(BatchKind::Input, *frontier, records, dst, max)
        }
        Frame::Output { frontier, records } => {
            return encode_batch_with_limit(BatchKind::Output, *frontier, records, dst, max)
        }
        _ => {}
    }
    let len = frame.encoded_len();
    check_len(ty, len, max)?;
    dst.reserve(LEN_BYTES + len);
    put_header(dst, len, ty);
    match frame {
        Frame::Hello {
            color,
            version,
            pid,
        } => {
            dst.put_u8(match color {
                Color::Blue => 0,
                Color::Green => 1,
            });
            dst.put_u32_le(*version);
            dst.put_u32_le(*pid);
        }
        Frame::Input { .. } | Frame::Output { .. } => {}
        Frame::Barrier { id, at } => {
            dst.put_u64_le(*id);
            dst.put_u64_le(at.0);
        }
        Frame::SnapshotRequest { barrier } => dst.put_u64_le(*barrier),
        Frame::SnapshotChunk {
            barrier,
            vertex,
            offset,
            total,
            bytes,
        } => {
            dst.put_u64_le(*barrier);
            dst.put_u32_le(*vertex);
            dst.put_u64_le(*offset);
            dst.put_u64_le(*total);
            // Under the cap, so it fits in a u32.
            dst.put_u32_le(bytes.len() as u32);
            dst.put_slice(bytes);
        }
        Frame::SnapshotEnd {
            barrier,
            vertices,
            state_hash,
        } => {
            dst.put_u64_le(*barrier);
            dst.put_u32_le(*vertices);
            dst.put_u64_le(*state_hash);
        }
        Frame::Restored {
            barrier,
            state_hash,
        } => {
            dst.put_u64_le(*barrier);
            dst.put_u64_le(*state_hash);
        }
        Frame::StateHash { barrier, hash } => {
            dst.put_u64_le(*barrier);
            dst.put_u64_le(*hash);
        }
        Frame::SetRole { role } => dst.put_u8(match role {
            WireRole::Serving => 0,
            WireRole::Shadow => 1,
        }),
        Frame::Heartbeat {
            sent_ns,
            seq,
            processed,
        } => {
            dst.put_i64_le(*sent_ns);
            dst.put_u64_le(*seq);
            dst.put_u64_le(processed.0);
        }
    }
    Ok(())
}

/// Takes one frame off the front of `src` with the default cap.
///
/// `Ok(None)`: `src` holds no whole frame yet; read more and call again
/// (nothing was consumed; room for the announced frame is reserved, within
/// the cap). `Ok(Some(frame))`: the frame's bytes were consumed. `Err`: the
/// stream is bad; what is left in `src` is unspecified, drop the connection.
pub fn decode(src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
    decode_with_limit(src, MAX_FRAME_LEN)
}

/// [`decode`] with a cap other than [`MAX_FRAME_LEN`].
pub fn decode_with_limit(src: &mut BytesMut, max: usize) -> Result<Option<Frame>, FrameError> {
    let Some(prefix) = src.get(..LEN_BYTES) else {
        return Ok(None);
    };
    let len = u32::from_le_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    if len < HEADER_BYTES {
        return Err(FrameError::TooShort { len });
    }
    // Check the header as soon as it is here, before waiting for the body.
    if let Some(header) = src.get(LEN_BYTES..LEN_BYTES + HEADER_BYTES) {
        check_header(header)?;
    }
    let whole = LEN_BYTES + len;
    if src.len() < whole {
        src.reserve(whole - src.len());
        return Ok(None);
    }
    let mut body = src.split_to(whole).freeze();
    body.advance(LEN_BYTES);
    let ty = check_header(&body[..HEADER_BYTES])?;
    body.advance(HEADER_BYTES);
    decode_body(ty, body).map(Some)
}

fn check_header(header: &[u8]) -> Result<FrameType, FrameError> {
    let [m0, m1, version, ty] = *header else {
        return Err(FrameError::TooShort { len: header.len() });
    };
    if [m0, m1] != MAGIC {
        return Err(FrameError::BadMagic { found: [m0, m1] });
    }
    if version != VERSION {
        return Err(FrameError::UnsupportedVersion { found: version });
    }
    FrameType::from_u8(ty).ok_or(FrameError::UnknownType(ty))
}

/// Bounds-checked reads from a frame body.
struct Body {
    ty: FrameType,
    bytes: Bytes,
}

impl Body {
    fn need(&self, n: usize) -> Result<(), FrameError> {
        if self.bytes.remaining() < n {
            return Err(FrameError::Truncated {
                frame_type: self.ty.name(),
                needed: n,
                available: self.bytes.remaining(),
            });
        }
        Ok(())
    }
    fn u8(&mut self) -> Result<u8, FrameError> {
        self.need(1)?;
        Ok(self.bytes.get_u8())
    }
    fn u32(&mut self) -> Result<u32, FrameError> {
        self.need(4)?;
        Ok(self.bytes.get_u32_le())
    }
    fn u64(&mut self) -> Result<u64, FrameError> {
        self.need(8)?;
        Ok(self.bytes.get_u64_le())
    }
    fn i64(&mut self) -> Result<i64, FrameError> {
        self.need(8)?;
        Ok(self.bytes.get_i64_le())
    }
    fn end(self) -> Result<(), FrameError> {
        if self.bytes.has_remaining() {
            return Err(FrameError::TrailingBytes {
                frame_type: self.ty.name(),
                extra: self.bytes.remaining(),
            });
        }
        Ok(())
    }
}

fn decode_body(ty: FrameType, bytes: Bytes) -> Result<Frame, FrameError> {
    let mut b = Body { ty, bytes };
    let frame = match ty {
        FrameType::Hello => {
            let color = match b.u8()? {
                0 => Color::Blue,
                1 => Color::Green,
                value => {
                    return Err(FrameError::InvalidEnum {
                        field: "hello color",
                        value,
                        expected: "0 (blue) or 1 (green)",
                    })
                }
            };
            Frame::Hello {
                color,
                version: b.u32()?,
                pid: b.u32()?,
            }
        }
        FrameType::Input | FrameType::Output => {
            let frontier = Seq(b.u64()?);
            let records = decode_records(&mut b)?;
            if ty == FrameType::Input {
                Frame::Input { frontier, records }
            } else {
                Frame::Output { frontier, records }
            }
        }
        FrameType::Barrier => Frame::Barrier {
            id: b.u64()?,
            at: Seq(b.u64()?),
        },
        FrameType::SnapshotRequest => Frame::SnapshotRequest { barrier: b.u64()? },
        FrameType::SnapshotChunk => {
            let barrier = b.u64()?;
            let vertex = b.u32()?;
            let offset = b.u64()?;
            let total = b.u64()?;
            let declared = b.u32()?;
            if declared as usize != b.bytes.remaining() {
                return Err(FrameError::ChunkLengthMismatch {
                    declared,
                    bytes: b.bytes.remaining(),
                });
            }
            if offset
                .checked_add(u64::from(declared))
                .is_none_or(|end| end > total)
            {
                return Err(FrameError::ChunkOutOfRange {
                    offset,
                    len: u64::from(declared),
                    total,
                });
            }
            let bytes = b.bytes.split_to(declared as usize);
            Frame::SnapshotChunk {
                barrier,
                vertex,
                offset,
                total,
                bytes,
            }
        }
        FrameType::SnapshotEnd => Frame::SnapshotEnd {
            barrier: b.u64()?,
            vertices: b.u32()?,
            state_hash: b.u64()?,
        },
        FrameType::Restored => Frame::Restored {
            barrier: b.u64()?,
            state_hash: b.u64()?,
        },
        FrameType::StateHash => Frame::StateHash {
            barrier: b.u64()?,
            hash: b.u64()?,
        },
        FrameType::SetRole => {
            let role = match b.u8()? {
                0 => WireRole::Serving,
                1 => WireRole::Shadow,
                value => {
                    return Err(FrameError::InvalidEnum {
                        field: "set role role",
                        value,
                        expected: "0 (serving) or 1 (shadow)",
                    })
                }
            };
            Frame::SetRole { role }
        }
        FrameType::Heartbeat => Frame::Heartbeat {
            sent_ns: b.i64()?,
            seq: b.u64()?,
            processed: Seq(b.u64()?),
        },
    };
    b.end()?;
    Ok(frame)
}

/// Reads the count and the records after it; the count must match the
/// bytes left exactly, checked before any record is read or allocated.
fn decode_records(b: &mut Body) -> Result<Vec<Record>, FrameError> {
    let declared = b.u32()?;
    let room = b.bytes.remaining();
    if (declared as usize).checked_mul(RECORD_BYTES) != Some(room) {
        return Err(FrameError::RecordCountMismatch {
            frame_type: b.ty.name(),
            declared,
            bytes: room,
        });
    }
    let mut records = Vec::with_capacity(declared as usize);
    for chunk in b.bytes.chunks_exact(RECORD_BYTES) {
        let mut r = chunk;
        records.push(Record {
            seq: Seq(r.get_u64_le()),
            time: EventTime(r.get_i64_le()),
            channel: ChannelId(r.get_u32_le()),
            quality: Quality(r.get_u32_le()),
            value: f64::from_bits(r.get_u64_le()),
        });
    }
    b.bytes.advance(room);
    Ok(records)
}
