//! Frames over one QUIC bidirectional stream.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use quinn::VarInt;
use tandem_core::wire::{self, BatchKind, EncodeError, Frame, FrameError};
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
    /// The peer sent a frame that failed validation; the connection was closed.
    #[error("bad frame from peer, connection closed: {0}")]
    BadFrame(#[from] FrameError),
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

/// One authenticated connection and its frame stream.
#[derive(Debug)]
pub struct Link {
    /// The QUIC connection (peer address, certificates, close).
    pub connection: quinn::Connection,
    /// Frames from the peer.
    pub reader: FrameReader,
    /// Frames to the peer.
    pub writer: FrameWriter,
}

impl Link {
    pub(crate) fn new(
        connection: quinn::Connection,
        send: quinn::SendStream,
        recv: quinn::RecvStream,
        stats: Arc<NetStats>,
        max_frame_len: usize,
    ) -> Link {
        Link {
            reader: FrameReader {
                recv,
                buf: BytesMut::with_capacity(READ_CHUNK),
                max_frame_len,
                connection: connection.clone(),
                stats,
            },
            writer: FrameWriter {
                send,
                scratch: BytesMut::new(),
            },
            connection,
        }
    }
}

/// Decodes frames from a stream. On a bad frame it closes the whole
/// connection with [`CLOSE_BAD_FRAME`] and counts it: a byte stream cannot
/// be resynchronised, and a peer sending garbage is not to be trusted.
#[derive(Debug)]
pub struct FrameReader {
    recv: quinn::RecvStream,
    buf: BytesMut,
    max_frame_len: usize,
    connection: quinn::Connection,
    stats: Arc<NetStats>,
}

impl FrameReader {
    /// The next frame; `Ok(None)` when the peer finished the stream cleanly
    /// between frames. Cancel-safe: dropping the future loses no bytes.
    pub async fn next(&mut self) -> Result<Option<Frame>, LinkError> {
        loop {
            match wire::decode_with_limit(&mut self.buf, self.max_frame_len) {
                Ok(Some(frame)) => return Ok(Some(frame)),
                Ok(None) => {}
                Err(e) => {
                    self.reject();
                    return Err(LinkError::BadFrame(e));
                }
            }
            match self.recv.read_chunk(READ_CHUNK, true).await? {
                Some(chunk) => self.buf.extend_from_slice(&chunk.bytes),
                None if self.buf.is_empty() => return Ok(None),
                None => {
                    self.reject();
                    return Err(LinkError::EndedMidFrame {
                        buffered: self.buf.len(),
                    });
                }
            }
        }
    }

    fn reject(&mut self) {
        NetStats::count(&self.stats.bad_frames);
        self.connection
            .close(VarInt::from_u32(CLOSE_BAD_FRAME), b"bad frame");
        self.buf = BytesMut::new();
    }
}

/// Writes frames to a stream. Encode a batch once with
/// [`tandem_core::wire::encode_to_bytes`] or [`tandem_core::wire::encode_batch`]
/// and hand clones of the same [`Bytes`] to several writers: no copy.
#[derive(Debug)]
pub struct FrameWriter {
    send: quinn::SendStream,
    scratch: BytesMut,
}

impl FrameWriter {
    /// Encodes and sends one frame.
    pub async fn send(&mut self, frame: &Frame) -> Result<(), LinkError> {
        wire::encode(frame, &mut self.scratch)?;
        let bytes = self.scratch.split().freeze();
        self.send_bytes(bytes).await
    }

    /// Encodes `records` as an `Input` or `Output` frame straight from the
    /// slice and sends it.
    pub async fn send_batch(
        &mut self,
        kind: BatchKind,
        frontier: Seq,
        records: &[Record],
    ) -> Result<(), LinkError> {
        wire::encode_batch(kind, frontier, records, &mut self.scratch)?;
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
