//! Messages over one QUIC bidirectional stream, typed by direction: the
//! agent's end of a link reads [`ToAgent`] and writes [`ToInstance`], an
//! instance's end the other way round.

use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use quinn::VarInt;
use tandem_core::ha::{ToAgent, ToInstance};
use tandem_core::wire::{self, EncodeError, Message, StreamDecoder, WireError, VERSION};
use tandem_core::{Record, Seq};
use thiserror::Error;

use super::{NetStats, CLOSE_BAD_FRAME};

/// Bytes asked of the stream per read.
const READ_CHUNK: usize = 64 * 1024;

/// Why a link could not be set up, read or written.
#[derive(Debug, Error)]
pub enum LinkError {
    /// The connection could not be started (bad server name, endpoint closed).
    #[error("cannot connect: {0}")]
    Connect(#[from] quinn::ConnectError),
    /// The handshake failed: the peer presented no certificate or one not
    /// issued by this site's CA, spoke another ALPN, or went away.
    #[error("handshake failed: {0}")]
    Handshake(quinn::ConnectionError),
    /// The connection was lost or closed.
    #[error("connection lost: {0}")]
    Connection(quinn::ConnectionError),
    /// Reading the stream failed.
    #[error("cannot read from the link: {0}")]
    Read(#[from] quinn::ReadError),
    /// Writing the stream failed.
    #[error("cannot write to the link: {0}")]
    Write(#[from] quinn::WriteError),
    /// The stream was already finished or reset.
    #[error("the link's stream is closed: {0}")]
    Closed(#[from] quinn::ClosedStream),
    /// The peer sent a frame that failed validation, or one going the wrong
    /// way; the connection was closed.
    #[error("bad frame from peer, connection closed: {0}")]
    BadFrame(#[from] WireError),
    /// The peer speaks another version of the wire format (an agent and
    /// instances of different releases); the connection was closed.
    #[error("wire format {found} from {peer}; this tandem speaks {VERSION}: upgrade the agent and instances together")]
    Version {
        /// The version byte the peer sent.
        found: u8,
        /// Who sent it.
        peer: SocketAddr,
    },
    /// The peer finished the stream in the middle of a frame; the
    /// connection was closed.
    #[error(
        "peer ended the stream inside a frame ({buffered} bytes of it received), connection closed"
    )]
    EndedMidFrame {
        /// Bytes of the unfinished frame.
        buffered: usize,
    },
    /// A frame to send is over the cap.
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

/// One authenticated connection and its message stream: reads `In`,
/// writes `Out`.
#[derive(Debug)]
pub struct Link<In: Message, Out: Message> {
    /// The QUIC connection (peer address, certificates, close).
    pub connection: quinn::Connection,
    /// Messages from the peer.
    pub reader: FrameReader<In>,
    /// Messages to the peer.
    pub writer: FrameWriter<Out>,
}

/// The agent's end of an instance link.
pub type AgentLink = Link<ToAgent, ToInstance>;
/// An instance's end of its link to the agent.
pub type InstanceLink = Link<ToInstance, ToAgent>;

impl<In: Message, Out: Message> Link<In, Out> {
    pub(crate) fn new(
        connection: quinn::Connection,
        send: quinn::SendStream,
        recv: quinn::RecvStream,
        stats: Arc<NetStats>,
        max_frame_len: usize,
    ) -> Link<In, Out> {
        Link {
            reader: FrameReader {
                recv,
                decoder: StreamDecoder::new(max_frame_len),
                piece: Bytes::new(),
                max_frame_len,
                connection: connection.clone(),
                stats,
                message: PhantomData,
            },
            writer: FrameWriter {
                send,
                scratch: BytesMut::new(),
                message: PhantomData,
            },
            connection,
        }
    }
}

/// Decodes messages of type `M` from a stream. On a bad frame, or one
/// going the wrong way, it closes the whole connection with
/// [`CLOSE_BAD_FRAME`] and counts it: a byte stream cannot be
/// resynchronised, and a peer sending garbage is not to be trusted.
///
/// The records of a batch are decoded straight from the pieces QUIC hands
/// over ([`StreamDecoder`]): a record's bytes are read once, not gathered
/// into a frame first.
#[derive(Debug)]
pub struct FrameReader<M: Message> {
    recv: quinn::RecvStream,
    decoder: StreamDecoder<M>,
    /// What is left of the last piece read.
    piece: Bytes,
    max_frame_len: usize,
    connection: quinn::Connection,
    stats: Arc<NetStats>,
    message: PhantomData<fn() -> M>,
}

impl<M: Message> FrameReader<M> {
    /// The next message; `Ok(None)` when the peer finished the stream
    /// cleanly between frames. Cancel-safe: dropping the future loses no bytes.
    pub async fn next(&mut self) -> Result<Option<M>, LinkError> {
        loop {
            match self.decoder.decode(&mut self.piece) {
                Ok(Some(msg)) => return Ok(Some(msg)),
                Ok(None) => {}
                Err(WireError::Version { found }) => {
                    self.reject();
                    return Err(LinkError::Version {
                        found,
                        peer: self.connection.remote_address(),
                    });
                }
                Err(e) => {
                    self.reject();
                    return Err(LinkError::BadFrame(e));
                }
            }
            match self.recv.read_chunk(READ_CHUNK, true).await? {
                Some(chunk) => self.piece = chunk.bytes,
                None if self.decoder.is_idle() => return Ok(None),
                None => {
                    let buffered = self.decoder.buffered();
                    self.reject();
                    return Err(LinkError::EndedMidFrame { buffered });
                }
            }
        }
    }

    /// A buffer to decode the next batch into (see [`StreamDecoder::give`]).
    pub fn give(&mut self, spare: Vec<Record>) {
        self.decoder.give(spare);
    }

    /// True when it has no buffer for the next batch.
    pub fn wants_spare(&self) -> bool {
        !self.decoder.has_spare()
    }

    fn reject(&mut self) {
        NetStats::count(&self.stats.bad_frames);
        self.connection
            .close(VarInt::from_u32(CLOSE_BAD_FRAME), b"bad frame");
        self.decoder = StreamDecoder::new(self.max_frame_len);
        self.piece = Bytes::new();
    }
}

/// Writes messages of type `M` to a stream. Encode a batch once with
/// [`tandem_core::wire::encode_to_bytes`] or [`tandem_core::wire::encode_batch`]
/// and hand clones of the same [`Bytes`] to several writers: no copy.
#[derive(Debug)]
pub struct FrameWriter<M: Message> {
    send: quinn::SendStream,
    scratch: BytesMut,
    message: PhantomData<fn(M)>,
}

impl<M: Message> FrameWriter<M> {
    /// Encodes and sends one message.
    pub async fn send(&mut self, msg: &M) -> Result<(), LinkError> {
        wire::encode(msg, &mut self.scratch)?;
        let bytes = self.scratch.split().freeze();
        self.send_bytes(bytes).await
    }

    /// Encodes `records` as this direction's batch (`Input` to an
    /// instance, `Output` to the agent) straight from the slice and sends it.
    pub async fn send_batch(&mut self, frontier: Seq, records: &[Record]) -> Result<(), LinkError> {
        wire::encode_batch(M::BATCH, frontier, records, &mut self.scratch)?;
        let bytes = self.scratch.split().freeze();
        self.send_bytes(bytes).await
    }

    /// Sends bytes that already hold whole encoded frames, as they are.
    pub async fn send_bytes(&mut self, bytes: Bytes) -> Result<(), LinkError> {
        self.send.write_chunk(bytes).await?;
        Ok(())
    }

    /// Ends the stream after what was sent: the peer's reader returns `Ok(None)`.
    pub fn finish(&mut self) -> Result<(), LinkError> {
        self.send.finish()?;
        Ok(())
    }
}
