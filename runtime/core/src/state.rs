//! Vertex state snapshots: an rkyv payload inside a versioned, checksummed envelope.
//!
//! Envelope layout, little-endian:
//!
//! | bytes | field |
//! |---|---|
//! | 4 | magic `TDST` |
//! | 2 | envelope format version (1) |
//! | 2 | reserved, zero |
//! | 4 | state schema id |
//! | 4 | payload length |
//! | 4 | CRC-32 (IEEE) of the 16 header bytes above and the payload |
//! | n | payload: the state struct archived by rkyv |
//!
//! The payload is only ever read through rkyv's validated access, after the
//! checksum has matched, so neither a flipped bit nor a truncated file can
//! produce a state that was never written.

use rkyv::api::high::{HighDeserializer, HighSerializer, HighValidator};
use rkyv::bytecheck::CheckBytes;
use rkyv::rancor;
use rkyv::ser::allocator::ArenaHandle;
use rkyv::util::AlignedVec;
use thiserror::Error;

/// Identifies the layout of a vertex kind's state. Changes whenever the state struct does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SchemaId(pub u32);

impl core::fmt::Display for SchemaId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}", self.0)
    }
}

const MAGIC: [u8; 4] = *b"TDST";
const FORMAT_VERSION: u16 = 1;
const HEADER_LEN: usize = 20;

/// The frozen state of one vertex.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// Layout of `payload`.
    pub schema: SchemaId,
    /// rkyv bytes of the state struct.
    pub payload: Vec<u8>,
}

/// Why a snapshot could not be read or applied.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SnapshotError {
    /// Fewer bytes than the header or the declared payload need.
    #[error("snapshot is truncated: {got} bytes, expected at least {need}")]
    Truncated {
        /// Bytes present.
        got: usize,
        /// Bytes the header says there should be.
        need: usize,
    },
    /// The bytes do not start with the snapshot magic.
    #[error("not a tandem snapshot (bad magic); expected a file written by `tandem`")]
    BadMagic,
    /// Written by a newer or unknown envelope format.
    #[error("snapshot envelope format {found} is not supported; this build reads format {FORMAT_VERSION}")]
    UnsupportedFormat {
        /// The format version in the header.
        found: u16,
    },
    /// More bytes than the header declares.
    #[error("snapshot has {extra} trailing bytes after its payload")]
    TrailingBytes {
        /// Bytes past the payload.
        extra: usize,
    },
    /// The checksum does not match: the bytes were damaged.
    #[error("snapshot checksum mismatch (stored {stored:#010x}, computed {computed:#010x}): the snapshot is corrupt")]
    Checksum {
        /// CRC in the header.
        stored: u32,
        /// CRC of the bytes read.
        computed: u32,
    },
    /// The state was written by another schema, and no migration applies.
    #[error("state schema {found} cannot be restored into schema {expected}; a migration from {found} is required")]
    SchemaMismatch {
        /// The schema the vertex expects.
        expected: SchemaId,
        /// The schema in the snapshot.
        found: SchemaId,
    },
    /// The payload failed rkyv validation.
    #[error("snapshot payload is invalid: {0}")]
    Invalid(String),
    /// The vertex keeps no state.
    #[error("this vertex kind is stateless and takes no snapshot")]
    Stateless,
}

impl Snapshot {
    /// The envelope bytes: header, checksum and payload.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode_into(&mut out);
        out
    }

    /// Bytes [`Snapshot::encode`] produces.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + self.payload.len()
    }

    /// Appends the envelope to `out` (one copy of the payload: for
    /// checkpoint images that hold many snapshots).
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.reserve(self.encoded_len());
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&self.schema.0.to_le_bytes());
        let len = u32::try_from(self.payload.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&len.to_le_bytes());
        let crc = checksum(&out[start..], &self.payload);
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&self.payload);
    }

    /// Reads an envelope, checking magic, format, length and checksum.
    pub fn decode(bytes: &[u8]) -> Result<Snapshot, SnapshotError> {
        let header = bytes.get(..HEADER_LEN).ok_or(SnapshotError::Truncated {
            got: bytes.len(),
            need: HEADER_LEN,
        })?;
        if header[0..4] != MAGIC {
            return Err(SnapshotError::BadMagic);
        }
        let format = u16::from_le_bytes([header[4], header[5]]);
        if format != FORMAT_VERSION {
            return Err(SnapshotError::UnsupportedFormat { found: format });
        }
        let schema = SchemaId(u32::from_le_bytes([
            header[8], header[9], header[10], header[11],
        ]));
        let len = u32::from_le_bytes([header[12], header[13], header[14], header[15]]) as usize;
        let stored = u32::from_le_bytes([header[16], header[17], header[18], header[19]]);
        let need = HEADER_LEN.saturating_add(len);
        let payload = bytes
            .get(HEADER_LEN..need)
            .ok_or(SnapshotError::Truncated {
                got: bytes.len(),
                need,
            })?;
        if bytes.len() > need {
            return Err(SnapshotError::TrailingBytes {
                extra: bytes.len() - need,
            });
        }
        let computed = checksum(&header[..16], payload);
        if computed != stored {
            return Err(SnapshotError::Checksum { stored, computed });
        }
        Ok(Snapshot {
            schema,
            payload: payload.to_vec(),
        })
    }
}

fn checksum(header: &[u8], payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(header);
    hasher.update(payload);
    hasher.finalize()
}

/// Archives `state` with rkyv under `schema`.
pub fn freeze<T>(schema: SchemaId, state: &T) -> Snapshot
where
    T: for<'a> rkyv::Serialize<HighSerializer<Vec<u8>, ArenaHandle<'a>, rancor::Error>>,
{
    // Serializing plain state structs into a growable buffer cannot fail;
    // an error here would be a bug in a derive, so it yields an empty payload
    // that `thaw` refuses rather than a panic. Written straight into the
    // payload's Vec: no second copy of a large state.
    let payload =
        rkyv::api::high::to_bytes_in::<_, rancor::Error>(state, Vec::new()).unwrap_or_default();
    Snapshot { schema, payload }
}

/// Restores a state archived by [`freeze`], through validated access only.
pub fn thaw<T>(expected: SchemaId, snapshot: &Snapshot) -> Result<T, SnapshotError>
where
    T: rkyv::Archive,
    T::Archived: for<'a> CheckBytes<HighValidator<'a, rancor::Error>>
        + rkyv::Deserialize<T, HighDeserializer<rancor::Error>>,
{
    if snapshot.schema != expected {
        return Err(SnapshotError::SchemaMismatch {
            expected,
            found: snapshot.schema,
        });
    }
    // rkyv needs its archive aligned; a Vec<u8> is not guaranteed to be,
    // though a large one from the allocator usually is: copy only if not.
    let payload = &snapshot.payload;
    if (payload.as_ptr() as usize).is_multiple_of(16) {
        return rkyv::from_bytes::<T, rancor::Error>(payload)
            .map_err(|e| SnapshotError::Invalid(e.to_string()));
    }
    let mut aligned = AlignedVec::<16>::with_capacity(payload.len());
    aligned.extend_from_slice(payload);
    rkyv::from_bytes::<T, rancor::Error>(&aligned)
        .map_err(|e| SnapshotError::Invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, PartialEq)]
    struct Counter {
        total: f64,
        count: u64,
        last: Option<i64>,
    }

    const SCHEMA: SchemaId = SchemaId(7);

    fn sample() -> Counter {
        Counter {
            total: 12.5,
            count: 3,
            last: Some(-4),
        }
    }

    #[test]
    fn round_trips_through_envelope() {
        let bytes = freeze(SCHEMA, &sample()).encode();
        let back: Counter = thaw(SCHEMA, &Snapshot::decode(&bytes).unwrap()).unwrap();
        assert_eq!(back, sample());
    }

    #[test]
    fn every_truncation_is_refused() {
        let bytes = freeze(SCHEMA, &sample()).encode();
        for len in 0..bytes.len() {
            assert!(
                Snapshot::decode(&bytes[..len]).is_err(),
                "truncated to {len} bytes was accepted"
            );
        }
    }

    #[test]
    fn every_single_bit_flip_is_refused() {
        let bytes = freeze(SCHEMA, &sample()).encode();
        for bit in 0..bytes.len() * 8 {
            let mut damaged = bytes.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            let result = Snapshot::decode(&damaged).and_then(|s| thaw::<Counter>(SCHEMA, &s));
            assert!(result.is_err(), "bit {bit} flipped was accepted");
        }
    }

    #[test]
    fn other_schema_is_refused_with_reason() {
        let snap = freeze(SchemaId(1), &sample());
        let err = thaw::<Counter>(SCHEMA, &snap).unwrap_err();
        assert_eq!(
            err.to_string(),
            "state schema 1 cannot be restored into schema 7; a migration from 1 is required"
        );
    }

    #[test]
    fn garbage_payload_with_good_checksum_is_refused() {
        let snap = Snapshot {
            schema: SCHEMA,
            payload: vec![0xff; 5],
        };
        let decoded = Snapshot::decode(&snap.encode()).unwrap();
        assert!(matches!(
            thaw::<Counter>(SCHEMA, &decoded),
            Err(SnapshotError::Invalid(_))
        ));
    }
}
