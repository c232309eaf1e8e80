//! The checkpoint file format: a versioned header, every vertex's snapshot
//! envelope keyed by vertex id, and a whole-file CRC-32.
//!
//! Layout, little-endian throughout:
//!
//! | offset | bytes | field |
//! |---|---|---|
//! | 0 | 4 | magic `TDCK` |
//! | 4 | 2 | format version (1) |
//! | 6 | 2 | reserved, zero |
//! | 8 | 8 | file length in bytes, trailer included |
//! | 16 | 8 | barrier sequence number ([`Seq`]) the checkpoint was taken at |
//! | 24 | 8 | graph hash |
//! | 32 | 4 | vertex count `v` |
//! | 36 | 4 | graph name length `n` |
//! | 40 | n | graph name, UTF-8 |
//! | | | then `v` times, in ascending id order: |
//! | | 4 | vertex id length `m` |
//! | | m | vertex id, UTF-8 |
//! | | 4 | snapshot length `k` |
//! | | k | snapshot envelope ([`Snapshot::encode`], itself versioned and CRC-checked) |
//! | len - 4 | 4 | CRC-32 (IEEE) of every byte before it |
//!
//! The length is checked before the checksum so that a file cut short by a
//! crash is reported as truncated, with both sizes, rather than as corrupt.
//! The body is parsed only after the checksum matches, and every length in it
//! is bounded by the bytes actually present.

use super::{Checkpoint, GraphStamp};
use std::collections::BTreeMap;
use tandem_core::{Seq, Snapshot, SnapshotError};
use thiserror::Error;

/// The first four bytes of every checkpoint file.
pub const MAGIC: [u8; 4] = *b"TDCK";
/// The format version this build writes and reads.
pub const FORMAT_VERSION: u16 = 1;
/// Bytes before the graph name.
pub const HEADER_LEN: usize = 40;
/// Bytes of the CRC trailer.
const TRAILER_LEN: usize = 4;

/// Why bytes are not a checkpoint this build can use.
///
/// Messages are phrased to follow the file's name: "checkpoint
/// /var/lib/tandem/ckpt-…42.tdc is truncated: 812 bytes, the header says 4096".
#[derive(Debug, Error, PartialEq, Eq)]
pub enum FormatError {
    /// Shorter than the fixed header.
    #[error("is truncated: {got} bytes, shorter than the {HEADER_LEN}-byte header")]
    ShortHeader {
        /// Bytes present.
        got: usize,
    },
    /// Shorter than the length the header declares: the write did not finish.
    #[error("is truncated: {got} bytes, the header says {need}")]
    Truncated {
        /// Bytes present.
        got: usize,
        /// Bytes the header declares.
        need: u64,
    },
    /// Longer than the length the header declares.
    #[error("has {got} bytes, but the header says {need}: it was overwritten or appended to")]
    TrailingBytes {
        /// Bytes present.
        got: usize,
        /// Bytes the header declares.
        need: u64,
    },
    /// Does not start with [`MAGIC`].
    #[error("is not a tandem checkpoint (it does not start with `TDCK`)")]
    BadMagic,
    /// Written in a format this build does not read.
    #[error(
        "has checkpoint format {found}, but this tandem reads format {FORMAT_VERSION}; \
         run the tandem that wrote it, or move the file away to start from an older checkpoint"
    )]
    UnsupportedFormat {
        /// The version in the header.
        found: u16,
    },
    /// The CRC does not match: some bytes were damaged.
    #[error("fails its checksum (stored {stored:#010x}, computed {computed:#010x}): the file is corrupt")]
    Checksum {
        /// CRC in the trailer.
        stored: u32,
        /// CRC of the bytes read.
        computed: u32,
    },
    /// The checksum matched but the body does not parse: written by a broken encoder.
    #[error("is malformed at byte {at}: {what}")]
    Malformed {
        /// Offset of the field that is wrong.
        at: usize,
        /// What is wrong with it.
        what: &'static str,
    },
    /// One vertex's snapshot envelope does not decode.
    #[error("holds an unreadable snapshot for vertex `{vertex}`: {source}")]
    Snapshot {
        /// The vertex id.
        vertex: String,
        /// Why the envelope was refused.
        #[source]
        source: SnapshotError,
    },
}

/// The file bytes of `checkpoint`.
pub fn encode(checkpoint: &Checkpoint) -> Vec<u8> {
    let name = checkpoint.graph.name.as_bytes();
    let body: usize = checkpoint
        .vertices
        .iter()
        .map(|(id, snapshot)| 8 + id.len() + snapshot.encoded_len())
        .sum();
    let len = HEADER_LEN + name.len() + body + TRAILER_LEN;
    // One buffer of the final size: each snapshot's payload is copied once.
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&(len as u64).to_le_bytes());
    out.extend_from_slice(&checkpoint.seq.0.to_le_bytes());
    out.extend_from_slice(&checkpoint.graph.hash.to_le_bytes());
    out.extend_from_slice(&len_u32(checkpoint.vertices.len()).to_le_bytes());
    out.extend_from_slice(&len_u32(name.len()).to_le_bytes());
    out.extend_from_slice(name);
    for (id, snapshot) in &checkpoint.vertices {
        put_bytes(&mut out, id.as_bytes());
        out.extend_from_slice(&len_u32(snapshot.encoded_len()).to_le_bytes());
        snapshot.encode_into(&mut out);
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Reads a checkpoint, refusing anything that does not verify.
pub fn decode(bytes: &[u8]) -> Result<Checkpoint, FormatError> {
    let got = bytes.len();
    let start = bytes.get(..MAGIC.len()).unwrap_or(bytes);
    if !MAGIC.starts_with(start) {
        return Err(FormatError::BadMagic);
    }
    let header = bytes
        .get(..HEADER_LEN)
        .ok_or(FormatError::ShortHeader { got })?;
    let mut r = Reader {
        bytes: header,
        at: 4,
    };
    let format = r.u16()?;
    if format != FORMAT_VERSION {
        return Err(FormatError::UnsupportedFormat { found: format });
    }
    let _reserved = r.u16()?;
    let need = r.u64()?;
    if (got as u64) < need {
        return Err(FormatError::Truncated { got, need });
    }
    if (got as u64) > need {
        return Err(FormatError::TrailingBytes { got, need });
    }
    // From here on `got == need`, and `got >= HEADER_LEN`.
    let (covered, trailer) = bytes
        .split_last_chunk::<TRAILER_LEN>()
        .ok_or(FormatError::ShortHeader { got })?;
    if covered.len() < HEADER_LEN {
        return Err(FormatError::Malformed {
            at: 8,
            what: "the declared length leaves no room for the checksum",
        });
    }
    let stored = u32::from_le_bytes(*trailer);
    let computed = crc32fast::hash(covered);
    if stored != computed {
        return Err(FormatError::Checksum { stored, computed });
    }
    let seq = Seq(r.u64()?);
    let hash = r.u64()?;
    let count = r.u32()?;
    let name_len = r.u32()?;
    let mut r = Reader {
        bytes: covered,
        at: HEADER_LEN,
    };
    let name = r.text(name_len as usize, "the graph name is not UTF-8")?;
    let mut vertices = BTreeMap::new();
    for _ in 0..count {
        let id_len = r.u32()?;
        let id = r.text(id_len as usize, "a vertex id is not UTF-8")?;
        let at = r.at;
        let snap_len = r.u32()?;
        let envelope = r.take(snap_len as usize)?;
        let snapshot = Snapshot::decode(envelope).map_err(|source| FormatError::Snapshot {
            vertex: id.clone(),
            source,
        })?;
        if vertices.insert(id, snapshot).is_some() {
            return Err(FormatError::Malformed {
                at,
                what: "a vertex id appears twice",
            });
        }
    }
    if r.at != covered.len() {
        return Err(FormatError::Malformed {
            at: r.at,
            what: "bytes left over after the last vertex",
        });
    }
    Ok(Checkpoint {
        graph: GraphStamp { name, hash },
        seq,
        vertices,
    })
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&len_u32(bytes.len()).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// Lengths above 4 GiB cannot occur for ids and snapshots held in memory on a
/// gateway; saturating keeps the encoder total, and the decoder would refuse
/// such a file rather than misread it.
fn len_u32(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

/// A bounds-checked little-endian cursor.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], FormatError> {
        let end = self.at.checked_add(n);
        let slice =
            end.and_then(|end| self.bytes.get(self.at..end))
                .ok_or(FormatError::Malformed {
                    at: self.at,
                    what: "a length runs past the end of the file",
                })?;
        self.at += n;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], FormatError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u16(&mut self) -> Result<u16, FormatError> {
        self.array().map(u16::from_le_bytes)
    }

    fn u32(&mut self) -> Result<u32, FormatError> {
        self.array().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Result<u64, FormatError> {
        self.array().map(u64::from_le_bytes)
    }

    fn text(&mut self, n: usize, what: &'static str) -> Result<String, FormatError> {
        let at = self.at;
        let bytes = self.take(n)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| FormatError::Malformed { at, what })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tandem_core::SchemaId;

    fn sample() -> Checkpoint {
        let mut vertices = BTreeMap::new();
        vertices.insert(
            "energy".to_owned(),
            Snapshot {
                schema: SchemaId(1006),
                payload: vec![1, 2, 3, 4, 5, 6, 7, 8],
            },
        );
        vertices.insert(
            "avg".to_owned(),
            Snapshot {
                schema: SchemaId(7),
                payload: vec![9; 3],
            },
        );
        Checkpoint {
            graph: GraphStamp {
                name: "home".to_owned(),
                hash: 0x0123_4567_89ab_cdef,
            },
            seq: Seq(42),
            vertices,
        }
    }

    #[test]
    fn round_trips() {
        let c = sample();
        assert_eq!(decode(&encode(&c)).unwrap(), c);
    }

    #[test]
    fn empty_checkpoint_round_trips() {
        let c = Checkpoint {
            graph: GraphStamp {
                name: String::new(),
                hash: 0,
            },
            seq: Seq::ZERO,
            vertices: BTreeMap::new(),
        };
        let bytes = encode(&c);
        assert_eq!(bytes.len(), HEADER_LEN + TRAILER_LEN);
        assert_eq!(decode(&bytes).unwrap(), c);
    }

    #[test]
    fn header_fields_sit_where_the_table_says() {
        let bytes = encode(&sample());
        assert_eq!(&bytes[0..4], b"TDCK");
        assert_eq!(&bytes[4..6], &[1, 0]);
        assert_eq!(&bytes[6..8], &[0, 0]);
        assert_eq!(&bytes[8..16], &(bytes.len() as u64).to_le_bytes());
        assert_eq!(&bytes[16..24], &42u64.to_le_bytes());
        assert_eq!(&bytes[24..32], &0x0123_4567_89ab_cdefu64.to_le_bytes());
        assert_eq!(&bytes[32..36], &2u32.to_le_bytes());
        assert_eq!(&bytes[36..40], &4u32.to_le_bytes());
        assert_eq!(&bytes[40..44], b"home");
        // Vertices in ascending id order: "avg" before "energy".
        assert_eq!(&bytes[44..48], &3u32.to_le_bytes());
        assert_eq!(&bytes[48..51], b"avg");
    }

    #[test]
    fn every_truncation_is_refused() {
        let bytes = encode(&sample());
        for len in 0..bytes.len() {
            let err = decode(&bytes[..len]).unwrap_err();
            if len >= HEADER_LEN {
                assert_eq!(
                    err,
                    FormatError::Truncated {
                        got: len,
                        need: bytes.len() as u64
                    }
                );
            }
        }
    }

    #[test]
    fn every_single_bit_flip_is_refused() {
        let bytes = encode(&sample());
        for bit in 0..bytes.len() * 8 {
            let mut damaged = bytes.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(decode(&damaged).is_err(), "bit {bit} flipped was accepted");
        }
    }

    #[test]
    fn zeroed_tail_is_refused_as_corrupt() {
        let mut bytes = encode(&sample());
        let half = bytes.len() / 2;
        bytes[half..].fill(0);
        assert!(matches!(
            decode(&bytes),
            Err(FormatError::Checksum { stored: 0, .. })
        ));
    }

    #[test]
    fn newer_format_is_refused_with_what_to_do() {
        let mut bytes = encode(&sample());
        bytes[4] = 2;
        let err = decode(&bytes).unwrap_err();
        assert_eq!(err, FormatError::UnsupportedFormat { found: 2 });
        assert_eq!(
            err.to_string(),
            "has checkpoint format 2, but this tandem reads format 1; run the tandem that \
             wrote it, or move the file away to start from an older checkpoint"
        );
    }

    #[test]
    fn other_files_are_not_checkpoints() {
        assert_eq!(decode(b"TDST\x01\x00"), Err(FormatError::BadMagic));
        assert_eq!(decode(b"{}"), Err(FormatError::BadMagic));
        assert_eq!(decode(b""), Err(FormatError::ShortHeader { got: 0 }));
    }

    #[test]
    fn a_length_running_past_the_end_is_refused_even_with_a_good_checksum() {
        let mut bytes = encode(&sample());
        // Claim a 1000-byte graph name, then fix the checksum.
        bytes[36..40].copy_from_slice(&1000u32.to_le_bytes());
        let n = bytes.len() - TRAILER_LEN;
        let crc = crc32fast::hash(&bytes[..n]);
        bytes[n..].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(
            decode(&bytes),
            Err(FormatError::Malformed {
                at: HEADER_LEN,
                what: "a length runs past the end of the file"
            })
        );
    }
}
