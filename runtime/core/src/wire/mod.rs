//! The HA protocol on the wire: [`ToInstance`] and [`ToAgent`] encoded
//! directly, length-prefixed, versioned, size-capped, validated before use.
//!
//! Every frame on the wire is
//!
//! ```text
//! len: u32 LE        bytes that follow (header + body), at most the cap
//! magic: [u8; 2]     b"TD"
//! version: u8        VERSION (2)
//! type: u8           which message; bit 0x80 set: instance -> agent
//! body               per message, fixed little-endian fields
//! ```
//!
//! The direction is part of the type byte: agent -> instance messages are
//! 0x01..=0x07, instance -> agent messages 0x81..=0x87, so a frame going
//! the wrong way never decodes as the other direction's message (it is a
//! [`WireError::WrongWay`]). The layout of each body is in `messages.rs`,
//! the golden bytes of each message in `tests.rs`.
//!
//! Records are 32 fixed bytes each (seq u64, time i64, channel u32,
//! quality u32, value f64 bits), so a batch encodes with one reservation and
//! no per-record allocation, and decoding checks the declared count against
//! the frame length before touching a record. Decoding never panics on any
//! input: an unknown type, version, enum value, a short or long body, or a
//! length over the cap is a typed [`WireError`].
//!
//! Version 1 (until this layout) had one type space for both directions; a
//! version-1 peer is refused with [`WireError::Version`], which says to
//! upgrade the agent and the instances together.

use crate::ha::{ToAgent, ToInstance};
use crate::record::{Record, Seq};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use codec::Body;

mod batch;
mod error;
mod messages;
mod stream;
#[cfg(test)]
mod tests;

pub use batch::{BatchEncoder, EncodedBatch, BATCH_PREFIX, BLOCK_BYTES, MAX_BATCH_RECORDS};
pub use error::{EncodeError, WireError};
pub use stream::StreamDecoder;

/// First two bytes of every frame header.
pub const MAGIC: [u8; 2] = *b"TD";
/// The wire format version this code writes and reads.
pub const VERSION: u8 = 2;
/// Bytes of the length prefix.
pub const LEN_BYTES: usize = 4;
/// Bytes of the header after the length prefix: magic, version, type.
pub const HEADER_BYTES: usize = 4;
/// Bytes of one encoded record.
pub const RECORD_BYTES: usize = 32;
/// Default cap on the length field (header + body), 16 MiB.
pub const MAX_FRAME_LEN: usize = 16 << 20;
/// Set in the type byte of every instance -> agent message.
pub const TO_AGENT_BIT: u8 = 0x80;

/// A message of one direction of the HA protocol: [`ToInstance`] or
/// [`ToAgent`]. Sealed: the wire carries exactly these two.
pub trait Message: codec::Codec + Sized {
    /// Who receives it, as named in errors: "instance" or "agent".
    const TO: &'static str;
    /// The batch message of this direction (`Input` or `Output`).
    const BATCH: BatchKind;

    /// The message's name, as in errors ("snapshot chunk").
    fn name(&self) -> &'static str {
        messages::type_name(self.type_byte()).unwrap_or("unknown")
    }

    /// Bytes after the length prefix (header + body) this message encodes to.
    fn encoded_len(&self) -> usize {
        HEADER_BYTES.saturating_add(self.body_len())
    }
}

/// The sealed half of [`Message`]: what the codec needs of a message.
mod codec {
    use super::{Record, Seq, WireError, RECORD_BYTES};
    use bytes::{Buf, Bytes, BytesMut};

    pub trait Codec: Sized {
        /// The type byte of this message.
        fn type_byte(&self) -> u8;
        /// Bytes of its body.
        fn body_len(&self) -> usize;
        /// Appends the body; `dst` has room for [`Codec::body_len`] bytes.
        fn put_body(&self, dst: &mut BytesMut);
        /// Whether `ty` is a type byte of this direction.
        fn owns(ty: u8) -> bool;
        /// The message of type `ty` (one [`Codec::owns`]) from its body.
        fn take_body(ty: u8, body: &mut Body) -> Result<Self, WireError>;
        /// This direction's batch message (`Input` or `Output`).
        fn from_batch(frontier: Seq, records: Vec<Record>) -> Self;
    }

    /// Bounds-checked reads from a frame body.
    #[derive(Debug)]
    pub struct Body {
        pub(crate) name: &'static str,
        pub(crate) bytes: Bytes,
    }

    impl Body {
        pub(crate) fn need(&self, n: usize) -> Result<(), WireError> {
            if self.bytes.remaining() < n {
                return Err(WireError::Truncated {
                    frame_type: self.name,
                    needed: n,
                    available: self.bytes.remaining(),
                });
            }
            Ok(())
        }
        pub(crate) fn u8(&mut self) -> Result<u8, WireError> {
            self.need(1)?;
            Ok(self.bytes.get_u8())
        }
        pub(crate) fn u32(&mut self) -> Result<u32, WireError> {
            self.need(4)?;
            Ok(self.bytes.get_u32_le())
        }
        pub(crate) fn u64(&mut self) -> Result<u64, WireError> {
            self.need(8)?;
            Ok(self.bytes.get_u64_le())
        }
        pub(crate) fn i64(&mut self) -> Result<i64, WireError> {
            self.need(8)?;
            Ok(self.bytes.get_i64_le())
        }
        pub(crate) fn seq(&mut self) -> Result<Seq, WireError> {
            self.u64().map(Seq)
        }
        pub(crate) fn end(self) -> Result<(), WireError> {
            if self.bytes.has_remaining() {
                return Err(WireError::TrailingBytes {
                    frame_type: self.name,
                    extra: self.bytes.remaining(),
                });
            }
            Ok(())
        }

        /// The frontier, the count and the records after it; the count must
        /// match the bytes left exactly, checked before any record is read or
        /// allocated.
        pub(crate) fn batch(&mut self) -> Result<(Seq, Vec<Record>), WireError> {
            let frontier = self.seq()?;
            let declared = self.u32()?;
            let room = self.bytes.remaining();
            if (declared as usize).checked_mul(RECORD_BYTES) != Some(room) {
                return Err(WireError::RecordCountMismatch {
                    frame_type: self.name,
                    declared,
                    bytes: room,
                });
            }
            let mut records = Vec::with_capacity(declared as usize);
            records.extend(super::batch::records_of(&self.bytes));
            self.bytes.advance(room);
            Ok((frontier, records))
        }

        /// The bytes of a snapshot chunk after its length: exactly what is
        /// left, and within `offset..total`.
        pub(crate) fn chunk(&mut self, offset: u64, total: u64) -> Result<Bytes, WireError> {
            let declared = self.u32()?;
            if declared as usize != self.bytes.remaining() {
                return Err(WireError::ChunkLengthMismatch {
                    declared,
                    bytes: self.bytes.remaining(),
                });
            }
            if offset
                .checked_add(u64::from(declared))
                .is_none_or(|end| end > total)
            {
                return Err(WireError::ChunkOutOfRange {
                    offset,
                    len: u64::from(declared),
                    total,
                });
            }
            Ok(self.bytes.split_to(declared as usize))
        }
    }
}

impl Message for ToInstance {
    const TO: &'static str = "instance";
    const BATCH: BatchKind = BatchKind::Input;
}

impl Message for ToAgent {
    const TO: &'static str = "agent";
    const BATCH: BatchKind = BatchKind::Output;
}

/// Which batch message [`encode_batch`] writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BatchKind {
    /// Agent -> instance: [`ToInstance::Input`].
    Input,
    /// Instance -> agent: [`ToAgent::Output`].
    Output,
}

impl BatchKind {
    const fn type_byte(self) -> u8 {
        match self {
            BatchKind::Input => messages::INPUT,
            BatchKind::Output => messages::OUTPUT,
        }
    }

    const fn name(self) -> &'static str {
        match self {
            BatchKind::Input => "input",
            BatchKind::Output => "output",
        }
    }
}

fn batch_body_len(records: usize) -> usize {
    12usize.saturating_add(records.saturating_mul(RECORD_BYTES))
}

fn put_header(dst: &mut BytesMut, len: usize, ty: u8) {
    // `len` was checked against the cap (<= u32::MAX) by the caller.
    dst.put_u32_le(len as u32);
    dst.put_slice(&MAGIC);
    dst.put_u8(VERSION);
    dst.put_u8(ty);
}

fn check_len(name: &'static str, len: usize, max: usize) -> Result<(), EncodeError> {
    let max = max.min(u32::MAX as usize);
    if len > max {
        return Err(EncodeError::TooLarge {
            frame_type: name,
            len,
            max,
        });
    }
    Ok(())
}

fn put_records(dst: &mut BytesMut, frontier: Seq, records: &[Record]) {
    dst.put_u64_le(frontier.0);
    // Under the cap, so the count fits in a u32.
    dst.put_u32_le(records.len() as u32);
    let mut staged = batch::Staged::new();
    for r in records {
        staged.push(dst, r);
    }
    staged.flush(dst);
}

/// Appends an `Input` or `Output` message carrying `records` to `dst`,
/// straight from the slice: one reservation, no per-record allocation.
pub fn encode_batch(
    kind: BatchKind,
    frontier: Seq,
    records: &[Record],
    dst: &mut BytesMut,
) -> Result<(), EncodeError> {
    encode_batch_with_limit(kind, frontier, records, dst, MAX_FRAME_LEN)
}

/// [`encode_batch`] with a cap other than [`MAX_FRAME_LEN`].
pub fn encode_batch_with_limit(
    kind: BatchKind,
    frontier: Seq,
    records: &[Record],
    dst: &mut BytesMut,
    max: usize,
) -> Result<(), EncodeError> {
    let len = HEADER_BYTES.saturating_add(batch_body_len(records.len()));
    check_len(kind.name(), len, max)?;
    dst.reserve(LEN_BYTES + len);
    put_header(dst, len, kind.type_byte());
    put_records(dst, frontier, records);
    Ok(())
}

/// Appends `msg` to `dst` with the default cap.
pub fn encode<M: Message>(msg: &M, dst: &mut BytesMut) -> Result<(), EncodeError> {
    encode_with_limit(msg, dst, MAX_FRAME_LEN)
}

/// Encodes `msg` once into shared bytes, to send to several peers without copying.
pub fn encode_to_bytes<M: Message>(msg: &M) -> Result<Bytes, EncodeError> {
    let mut buf = BytesMut::new();
    encode(msg, &mut buf)?;
    Ok(buf.freeze())
}

/// Appends `msg` to `dst`, refusing messages whose length is over `max`;
/// nothing is written on error.
pub fn encode_with_limit<M: Message>(
    msg: &M,
    dst: &mut BytesMut,
    max: usize,
) -> Result<(), EncodeError> {
    let len = msg.encoded_len();
    check_len(msg.name(), len, max)?;
    dst.reserve(LEN_BYTES + len);
    put_header(dst, len, msg.type_byte());
    msg.put_body(dst);
    Ok(())
}

/// Takes one `M` off the front of `src` with the default cap.
///
/// `Ok(None)`: `src` holds no whole frame yet; read more and call again
/// (nothing was consumed; room for the announced frame is reserved, within
/// the cap). `Ok(Some(msg))`: the frame's bytes were consumed. `Err`: the
/// stream is bad (or the frame goes the other way); what is left in `src`
/// is unspecified, drop the connection.
pub fn decode<M: Message>(src: &mut BytesMut) -> Result<Option<M>, WireError> {
    decode_with_limit(src, MAX_FRAME_LEN)
}

/// [`decode`] with a cap other than [`MAX_FRAME_LEN`].
pub fn decode_with_limit<M: Message>(
    src: &mut BytesMut,
    max: usize,
) -> Result<Option<M>, WireError> {
    let Some(prefix) = src.get(..LEN_BYTES) else {
        return Ok(None);
    };
    let len = u32::from_le_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
    if len > max {
        return Err(WireError::TooLarge { len, max });
    }
    if len < HEADER_BYTES {
        return Err(WireError::TooShort { len });
    }
    // Check the header as soon as it is here, before waiting for the body.
    if let Some(header) = src.get(LEN_BYTES..LEN_BYTES + HEADER_BYTES) {
        check_header::<M>(header)?;
    }
    let whole = LEN_BYTES + len;
    if src.len() < whole {
        src.reserve(whole - src.len());
        return Ok(None);
    }
    let mut bytes = src.split_to(whole).freeze();
    bytes.advance(LEN_BYTES);
    let ty = check_header::<M>(&bytes[..HEADER_BYTES])?;
    bytes.advance(HEADER_BYTES);
    let mut body = Body {
        name: messages::type_name(ty).unwrap_or("unknown"),
        bytes,
    };
    let msg = M::take_body(ty, &mut body)?;
    body.end()?;
    Ok(Some(msg))
}

fn check_header<M: Message>(header: &[u8]) -> Result<u8, WireError> {
    let [m0, m1, version, ty] = *header else {
        return Err(WireError::TooShort { len: header.len() });
    };
    if [m0, m1] != MAGIC {
        return Err(WireError::BadMagic { found: [m0, m1] });
    }
    if version != VERSION {
        return Err(WireError::Version { found: version });
    }
    if M::owns(ty) {
        return Ok(ty);
    }
    match messages::type_name(ty) {
        Some(name) => Err(WireError::WrongWay {
            frame_type: name,
            to: M::TO,
        }),
        None => Err(WireError::UnknownType(ty)),
    }
}
