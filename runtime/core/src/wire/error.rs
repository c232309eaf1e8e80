//! Errors of the wire codec: one enum for encoding, one for decoding.

use thiserror::Error;

use super::{HEADER_BYTES, MAGIC, RECORD_BYTES, VERSION};

/// Why a frame could not be encoded.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum EncodeError {
    /// The frame is larger than the cap; split the batch or the chunk.
    #[error("{frame_type} frame of {len} bytes is over the cap of {max} bytes; send smaller batches or chunks")]
    TooLarge {
        /// Type of the frame.
        frame_type: &'static str,
        /// Its length after the prefix.
        len: usize,
        /// The cap.
        max: usize,
    },
}

/// Why bytes received are not a valid message for their receiver. The
/// connection they came on should be dropped: the stream cannot be
/// resynchronised.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum WireError {
    /// The length prefix is over the cap (checked before anything is allocated).
    #[error("frame length {len} is over the cap of {max} bytes")]
    TooLarge {
        /// Declared length.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// The length prefix is smaller than a header.
    #[error("frame length {len} is shorter than the {HEADER_BYTES}-byte header")]
    TooShort {
        /// Declared length.
        len: usize,
    },
    /// The frame does not start with the magic bytes: not a tandem peer.
    #[error("bad magic {found:02x?}, expected {MAGIC:02x?}: the peer does not speak tandem")]
    BadMagic {
        /// The two bytes found.
        found: [u8; 2],
    },
    /// The peer speaks another version of the wire format: the agent and
    /// its instances run different releases.
    #[error("wire format {found} from the peer; this tandem speaks {VERSION}: upgrade the agent and instances together")]
    Version {
        /// The version byte found.
        found: u8,
    },
    /// The type byte names no message.
    #[error("unknown frame type 0x{0:02x}")]
    UnknownType(u8),
    /// A well-formed message of the other direction: the receiver never
    /// takes it (an `output` sent to an instance).
    #[error("a {frame_type} frame is never sent to the {to}")]
    WrongWay {
        /// The message found.
        frame_type: &'static str,
        /// Who received it: "agent" or "instance".
        to: &'static str,
    },
    /// The length prefix is not the one size the message its header names
    /// always has; refused from the header, before the body is gathered.
    #[error("{frame_type} frame length {len} is not valid: a {frame_type} frame is always {expected} bytes (header and body)")]
    WrongLength {
        /// Type of the frame.
        frame_type: &'static str,
        /// Declared length.
        len: usize,
        /// The length every frame of this type has.
        expected: usize,
    },
    /// The body ends before its fixed fields do.
    #[error("{frame_type} frame body is truncated: needs {needed} more bytes, has {available}")]
    Truncated {
        /// Type of the frame.
        frame_type: &'static str,
        /// Bytes the next field needs.
        needed: usize,
        /// Bytes left in the body.
        available: usize,
    },
    /// The body is longer than its fields.
    #[error("{frame_type} frame has {extra} bytes after its last field")]
    TrailingBytes {
        /// Type of the frame.
        frame_type: &'static str,
        /// Bytes left over.
        extra: usize,
    },
    /// The record count does not match the bytes that follow it.
    #[error("{frame_type} frame declares {declared} records but carries {bytes} bytes of records ({RECORD_BYTES} each)")]
    RecordCountMismatch {
        /// Type of the frame.
        frame_type: &'static str,
        /// Count in the frame.
        declared: u32,
        /// Bytes after the count.
        bytes: usize,
    },
    /// The chunk length does not match the bytes that follow it.
    #[error("snapshot chunk declares {declared} bytes but carries {bytes}")]
    ChunkLengthMismatch {
        /// Length in the frame.
        declared: u32,
        /// Bytes after the length.
        bytes: usize,
    },
    /// The chunk lies outside its vertex's snapshot.
    #[error("snapshot chunk at offset {offset} with {len} bytes runs past the total of {total}")]
    ChunkOutOfRange {
        /// Offset in the frame.
        offset: u64,
        /// Chunk length.
        len: u64,
        /// Total in the frame.
        total: u64,
    },
    /// An enum field holds a value with no meaning.
    #[error("{field} value {value} is not valid (expected {expected})")]
    InvalidEnum {
        /// Which field.
        field: &'static str,
        /// The byte found.
        value: u8,
        /// What would be valid.
        expected: &'static str,
    },
}
