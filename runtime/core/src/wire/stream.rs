//! Decoding a byte stream that arrives in pieces (QUIC hands it over in
//! packet-sized chunks) without gathering batch frames first: the records of
//! an `Input` or `Output` frame are decoded straight from each piece into
//! the batch's `Vec<Record>`, so a record's bytes are read once. Only the
//! 20 bytes before a batch's records, a record cut between two pieces, and
//! the other (small) frames are gathered in a buffer.
//!
//! It checks exactly what [`super::decode`] checks, in the same order, and
//! gives the same errors.

use std::marker::PhantomData;

use bytes::{Buf, Bytes, BytesMut};

use super::batch::{get_record, records_of, BATCH_PREFIX};
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
                // The count was checked against the length, and the length
                // against the cap: this reserves at most the cap.
                let records = match self.spare.take() {
                    Some(mut spare) => {
                        spare.reserve(declared as usize);
                        spare
                    }
                    None => Vec::with_capacity(declared as usize),
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
            // Any other frame is gathered whole (room for all of it at once,
            // within the cap), then decoded.
            self.head
                .reserve((LEN_BYTES + len).saturating_sub(self.head.len()));
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
