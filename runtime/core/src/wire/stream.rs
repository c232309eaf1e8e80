//! Decoding a byte stream that arrives in pieces (QUIC hands it over in
//! packet-sized chunks) without gathering batch frames first: the records of
//! an `Input` or `Output` frame are decoded straight from each piece into
//! the batch's `Vec<Record>`, so a record's bytes are read once. Only the
//! 20 bytes before a batch's records, a record cut between two pieces, and
//! the other (small) frames are gathered in a buffer.
//!
//! It checks what [`super::decode`] checks, in the same order, and gives
//! the same errors, with one check more and sooner: a message whose body
//! always has one size (a heartbeat, a barrier, ...) declared with another
//! length is refused as soon as its header is here
//! ([`WireError::WrongLength`]), where `decode` waits for the body and finds
//! it truncated or too long. A frame other than a batch is given room for
//! at most [`UPFRONT`] bytes at once, then as its bytes arrive: a peer
//! declaring a 16 MiB snapshot chunk costs what it sends, not the cap. A
//! batch's records likewise: room for at most [`UPFRONT`] bytes of them at
//! once, from a count checked against the length, then as they come.

use std::marker::PhantomData;

use bytes::{Buf, Bytes, BytesMut};

use super::batch::{get_record, records_of, BATCH_PREFIX};
use super::messages::{fixed_body_len, type_name};
use super::{
    check_header, decode_with_limit, Message, WireError, HEADER_BYTES, LEN_BYTES, RECORD_BYTES,
};
use crate::record::{Record, Seq};

/// A batch frame whose records are arriving.
#[derive(Debug)]
struct Filling {
    frontier: Seq,
    /// Records still to come.
    left: usize,
    records: Vec<Record>,
    /// The first bytes of a record cut between two pieces.
    carry: [u8; RECORD_BYTES],
    carry_len: usize,
}

impl Filling {
    /// Decodes the records in `src`, as many as the frame still holds.
    fn fill(&mut self, src: &mut Bytes) {
        if self.carry_len > 0 {
            let take = (RECORD_BYTES - self.carry_len).min(src.len());
            self.carry[self.carry_len..self.carry_len + take].copy_from_slice(&src[..take]);
            src.advance(take);
            self.carry_len += take;
            if self.carry_len < RECORD_BYTES {
                return;
            }
            self.records.push(get_record(&self.carry));
            self.left -= 1;
            self.carry_len = 0;
        }
        let whole = (src.len() / RECORD_BYTES).min(self.left);
        let bytes = whole * RECORD_BYTES;
        self.records.extend(records_of(&src[..bytes]));
        src.advance(bytes);
        self.left -= whole;
        if self.left > 0 && !src.is_empty() {
            // Less than a record is left in this piece.
            let take = src.len();
            self.carry[..take].copy_from_slice(src);
            self.carry_len = take;
            src.advance(take);
        }
    }
}

/// Room a frame is given before its bytes arrive: a whole snapshot chunk
/// (1 MiB and its fields), or a batch of 65536 records, at once.
pub const UPFRONT: usize = 2 << 20;

/// Takes messages of type `M` off a stream that arrives in pieces (see the
/// module docs).
#[derive(Debug)]
pub struct StreamDecoder<M: Message> {
    max: usize,
    /// The start of the frame under way: its prefix and header, a batch's
    /// frontier and count, or the whole of a small frame.
    head: BytesMut,
    batch: Option<Filling>,
    /// A buffer to decode the next batch into, given back by its consumer.
    spare: Option<Vec<Record>>,
    message: PhantomData<fn() -> M>,
}

impl<M: Message> StreamDecoder<M> {
    /// A decoder refusing frames longer than `max` (after the length prefix).
    pub fn new(max: usize) -> StreamDecoder<M> {
        StreamDecoder {
            max,
            head: BytesMut::new(),
            batch: None,
            spare: None,
            message: PhantomData,
        }
    }

    /// A buffer to decode the next batch into (emptied first), so that
    /// steady state allocates none: whoever consumes the batches hands their
    /// buffers back. One is kept; a batch larger than it grows it.
    pub fn give(&mut self, mut spare: Vec<Record>) {
        if self.spare.is_none() && spare.capacity() > 0 {
            spare.clear();
            self.spare = Some(spare);
        }
    }

    /// True when it holds a buffer for the next batch.
    pub fn has_spare(&self) -> bool {
        self.spare.is_some()
    }

    /// True between frames: nothing of a frame is held.
    pub fn is_idle(&self) -> bool {
        self.head.is_empty() && self.batch.is_none()
    }

    /// Bytes of the frame under way received so far.
    pub fn buffered(&self) -> usize {
        self.head.len()
            + self.batch.as_ref().map_or(0, |f| {
                BATCH_PREFIX + f.records.len() * RECORD_BYTES + f.carry_len
            })
    }

    /// Takes bytes off the front of `src` until one message is whole
    /// (`Ok(Some)`, the rest of `src` left for the next call) or `src` is
    /// used up (`Ok(None)`). `Err`: the stream is bad; drop the connection.
    pub fn decode(&mut self, src: &mut Bytes) -> Result<Option<M>, WireError> {
        loop {
            if let Some(filling) = self.batch.as_mut() {
                filling.fill(src);
                if filling.left > 0 {
                    return Ok(None);
                }
                let done = self.batch.take();
                return Ok(done.map(|f| M::from_batch(f.frontier, f.records)));
            }
            let start = LEN_BYTES + HEADER_BYTES;
            if self.head.len() < start {
                self.gather(src, start);
                if self.head.len() >= LEN_BYTES {
                    self.check_len()?;
                }
                if self.head.len() < start {
                    return Ok(None);
                }
            }
            let len = self.check_len()?;
            let ty = check_header::<M>(&self.head[LEN_BYTES..start])?;
            if let Some(body) = fixed_body_len(ty) {
                if len != HEADER_BYTES + body {
                    return Err(WireError::WrongLength {
                        frame_type: type_name(ty).unwrap_or("unknown"),
                        len,
                        expected: HEADER_BYTES + body,
                    });
                }
            }
            if ty == M::BATCH.type_byte() && len >= HEADER_BYTES + 12 {
                self.gather(src, BATCH_PREFIX);
                if self.head.len() < BATCH_PREFIX {
                    return Ok(None);
                }
                let mut fields = &self.head[start..BATCH_PREFIX];
                let frontier = Seq(fields.get_u64_le());
                let declared = fields.get_u32_le();
                let room = len - HEADER_BYTES - 12;
                if (declared as usize).checked_mul(RECORD_BYTES) != Some(room) {
                    return Err(WireError::RecordCountMismatch {
                        frame_type: M::BATCH.name(),
                        declared,
                        bytes: room,
                    });
                }
                self.head.clear();
                // Room for the whole batch up to UPFRONT's worth at once (a
                // batch of `tandem up`: 4096 records, 128 KiB); a larger one
                // grows as its records come.
                let upfront = (declared as usize).min(UPFRONT / RECORD_BYTES);
                let records = match self.spare.take() {
                    Some(mut spare) => {
                        spare.reserve(upfront);
                        spare
                    }
                    None => Vec::with_capacity(upfront),
                };
                self.batch = Some(Filling {
                    frontier,
                    left: declared as usize,
                    records,
                    carry: [0; RECORD_BYTES],
                    carry_len: 0,
                });
                continue;
            }
            // Any other frame is gathered whole, then decoded. `head` takes
            // room for a whole frame up to UPFRONT at once (a snapshot
            // chunk, 1 MiB, in one allocation and one copy); past that it
            // grows as bytes arrive, not by the length declared, so a peer
            // declaring a frame at the cap costs what it sends.
            self.head.reserve(
                (LEN_BYTES + len)
                    .min(UPFRONT)
                    .saturating_sub(self.head.len()),
            );
            self.gather(src, LEN_BYTES + len);
            if self.head.len() < LEN_BYTES + len {
                return Ok(None);
            }
            let msg = decode_with_limit::<M>(&mut self.head, self.max)?;
            self.head.clear();
            return Ok(msg);
        }
    }

    /// Moves bytes from `src` into `head` until it holds `upto`.
    fn gather(&mut self, src: &mut Bytes, upto: usize) {
        let take = upto.saturating_sub(self.head.len()).min(src.len());
        self.head.extend_from_slice(&src[..take]);
        src.advance(take);
    }

    /// Bytes `head` has room for (what a frame under way costs).
    #[cfg(test)]
    fn head_capacity(&self) -> usize {
        self.head.capacity()
    }

    /// The length prefix, checked against the cap and the header.
    fn check_len(&self) -> Result<usize, WireError> {
        let mut prefix = &self.head[..LEN_BYTES];
        let len = prefix.get_u32_le() as usize;
        if len > self.max {
            return Err(WireError::TooLarge { len, max: self.max });
        }
        if len < HEADER_BYTES {
            return Err(WireError::TooShort { len });
        }
        Ok(len)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use bytes::{BufMut, Bytes, BytesMut};

    use super::super::codec::Codec;
    use super::super::{encode, encode_to_bytes, MAGIC, MAX_FRAME_LEN, VERSION};
    use super::*;
    use crate::ha::{Color, Role, ToAgent, ToInstance};
    use crate::record::{ChannelId, EventTime};

    /// A length prefix and header, nothing of the body.
    fn header(len: u32, ty: u8) -> Bytes {
        let mut b = BytesMut::new();
        b.put_u32_le(len);
        b.put_slice(&MAGIC);
        b.put_u8(VERSION);
        b.put_u8(ty);
        b.freeze()
    }

    #[test]
    fn a_fixed_size_message_with_another_length_is_refused_from_its_header() {
        // A heartbeat to the agent declaring 1 MiB: refused with only its
        // 8 header bytes in, nothing gathered for the body.
        let mut decoder = StreamDecoder::<ToAgent>::new(MAX_FRAME_LEN);
        let bytes = header(1 << 20, 0x87);
        for i in 0..bytes.len() - 1 {
            assert_eq!(decoder.decode(&mut bytes.slice(i..i + 1)), Ok(None));
        }
        let err = decoder.decode(&mut bytes.slice(bytes.len() - 1..));
        assert_eq!(
            err,
            Err(WireError::WrongLength {
                frame_type: "heartbeat",
                len: 1 << 20,
                expected: 28
            })
        );
        assert_eq!(
            err.unwrap_err().to_string(),
            "heartbeat frame length 1048576 is not valid: a heartbeat frame is always 28 bytes (header and body)"
        );
        // Too short is refused the same way: the agent's 20-byte heartbeat
        // is not the instance's, nor a 9-byte hello a 10-byte one.
        let mut decoder = StreamDecoder::<ToAgent>::new(MAX_FRAME_LEN);
        assert_eq!(
            decoder.decode(&mut header(20, 0x87)),
            Err(WireError::WrongLength {
                frame_type: "heartbeat",
                len: 20,
                expected: 28
            })
        );
        let mut decoder = StreamDecoder::<ToAgent>::new(MAX_FRAME_LEN);
        assert_eq!(
            decoder.decode(&mut header(14, 0x81)),
            Err(WireError::WrongLength {
                frame_type: "hello",
                len: 14,
                expected: 13
            })
        );
        let mut decoder = StreamDecoder::<ToInstance>::new(MAX_FRAME_LEN);
        assert_eq!(
            decoder.decode(&mut header(28, 0x07)),
            Err(WireError::WrongLength {
                frame_type: "heartbeat",
                len: 28,
                expected: 20
            })
        );
    }

    #[test]
    fn every_fixed_size_message_has_the_length_its_type_says() {
        let to_instance = [
            ToInstance::Barrier { id: 1, at: Seq(2) },
            ToInstance::SnapshotRequest { barrier: 1 },
            ToInstance::SnapshotEnd {
                barrier: 1,
                vertices: 2,
                state_hash: 3,
            },
            ToInstance::SetRole { role: Role::Shadow },
            ToInstance::Heartbeat {
                sent_ns: -1,
                seq: 2,
            },
        ];
        let to_agent = [
            ToAgent::Hello {
                color: Color::Green,
                version: 1,
                pid: 2,
            },
            ToAgent::SnapshotEnd {
                barrier: 1,
                vertices: 2,
                state_hash: 3,
            },
            ToAgent::Restored {
                barrier: 1,
                state_hash: 2,
            },
            ToAgent::StateHash {
                barrier: 1,
                hash: 2,
            },
            ToAgent::Heartbeat {
                sent_ns: -1,
                seq: 2,
                processed: Seq(3),
            },
        ];
        let mut instance = StreamDecoder::<ToInstance>::new(MAX_FRAME_LEN);
        for msg in to_instance {
            assert_eq!(
                fixed_body_len(msg.type_byte()),
                Some(msg.body_len()),
                "{msg:?}"
            );
            let mut bytes = encode_to_bytes(&msg).unwrap();
            assert_eq!(instance.decode(&mut bytes), Ok(Some(msg)));
        }
        let mut agent = StreamDecoder::<ToAgent>::new(MAX_FRAME_LEN);
        for msg in to_agent {
            assert_eq!(
                fixed_body_len(msg.type_byte()),
                Some(msg.body_len()),
                "{msg:?}"
            );
            let mut bytes = encode_to_bytes(&msg).unwrap();
            assert_eq!(agent.decode(&mut bytes), Ok(Some(msg)));
        }
        // Batches and snapshot chunks carry their size.
        for ty in [0x01, 0x04, 0x82, 0x83] {
            assert_eq!(fixed_body_len(ty), None, "type 0x{ty:02x}");
        }
    }

    #[test]
    fn a_large_batch_takes_room_as_its_records_come() {
        let records: Vec<Record> = (1..=400_000u64)
            .map(|q| Record::new(Seq(q), EventTime(0), ChannelId(0), q as f64))
            .collect();
        let batch = ToAgent::Output {
            frontier: Seq(400_000),
            records,
        };
        let mut bytes = encode_to_bytes(&batch).unwrap();
        let mut decoder = StreamDecoder::<ToAgent>::new(MAX_FRAME_LEN);
        // The header, the count and a first packet's worth of records.
        let mut first = bytes.split_to(1200);
        assert_eq!(decoder.decode(&mut first), Ok(None));
        let reserved = decoder.batch.as_ref().map_or(0, |b| b.records.capacity());
        assert!(
            reserved * RECORD_BYTES <= UPFRONT,
            "{reserved} records reserved for 1200 bytes of a 12.8 MB batch"
        );
        // The rest, in packets, gives the batch back whole.
        let mut got = None;
        while !bytes.is_empty() {
            let mut piece = bytes.split_to(bytes.len().min(1200));
            if let Some(msg) = decoder.decode(&mut piece).unwrap() {
                got = Some(msg);
            }
        }
        assert_eq!(got, Some(batch));
    }

    #[test]
    fn a_large_snapshot_chunk_takes_room_as_its_bytes_come() {
        let chunk = ToAgent::SnapshotChunk {
            barrier: 7,
            vertex: 1,
            offset: 0,
            total: 8 << 20,
            bytes: Bytes::from(vec![0xa5; 8 << 20]),
        };
        let mut bytes = BytesMut::new();
        encode(&chunk, &mut bytes).unwrap();
        let mut bytes = bytes.freeze();
        let mut decoder = StreamDecoder::<ToAgent>::new(MAX_FRAME_LEN);
        // The header, the chunk's fields and a first packet's worth.
        let mut first = bytes.split_to(1200);
        assert_eq!(decoder.decode(&mut first), Ok(None));
        assert_eq!(decoder.buffered(), 1200);
        assert!(
            decoder.head_capacity() <= UPFRONT,
            "{} bytes reserved for 1200 received of an 8 MiB chunk",
            decoder.head_capacity()
        );
        // The rest, in packets, gives the chunk back whole.
        let mut got = None;
        while !bytes.is_empty() {
            let mut piece = bytes.split_to(bytes.len().min(1200));
            if let Some(msg) = decoder.decode(&mut piece).unwrap() {
                got = Some(msg);
            }
        }
        assert_eq!(got, Some(chunk));
        assert!(decoder.is_idle());
    }
}
