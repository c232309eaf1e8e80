//! The fleet link's frames: between a gateway's agent and its controller,
//! over one QUIC stream the agent opens.
//!
//! A frame is a 4-byte big-endian length of what follows, then a version
//! byte ([`VERSION`]), a kind byte, and the body:
//!
//! - kind 1, a message: JSON ([`ToController`] or [`ToGateway`]);
//! - kind 2, a bundle: a 4-byte big-endian length, that many bytes of JSON
//!   (a [`ToGateway::Bundle`] header), then the bundle file's bytes.
//!
//! Each direction has its own limit ([`Direction::MAX_FRAME`]): an agent
//! sends the controller small JSON messages ([`MAX_MESSAGE_FRAME`]), the
//! controller sends bundles ([`MAX_FRAME`]). A longer frame is refused from
//! its length prefix, before anything is allocated for it; so are other
//! versions and kinds. Nothing in a frame is trusted before it decodes.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// The frame format's version.
pub const VERSION: u8 = 1;
/// The longest frame: a bundle of up to 64 MiB less its header.
pub const MAX_FRAME: usize = 64 << 20;
/// The longest frame an agent sends its controller: JSON messages only.
pub const MAX_MESSAGE_FRAME: usize = 1 << 20;
const KIND_MESSAGE: u8 = 1;
const KIND_BUNDLE: u8 = 2;

/// A direction of the link, named by the messages it carries.
pub trait Direction: DeserializeOwned {
    /// The longest frame [`read`] accepts in this direction.
    const MAX_FRAME: usize;
}

impl Direction for ToController {
    const MAX_FRAME: usize = MAX_MESSAGE_FRAME;
}

impl Direction for ToGateway {
    const MAX_FRAME: usize = MAX_FRAME;
}

/// From an agent to its controller.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToController {
    /// First on every connection.
    Hello {
        /// The gateway's name (its certificate must be for it).
        gateway: String,
        /// The runtime's version (`tandem --version`).
        runtime: String,
    },
    /// What the gateway is doing, on connect and on every change.
    Report(Report),
    /// The answer to a bundle: accepted (verified, upgrade started) or refused.
    Answer {
        /// The bundle's SHA-256.
        sha256: String,
        /// True when the agent took it.
        accepted: bool,
        /// The agent's answer line.
        text: String,
    },
}

/// A gateway's report.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// `tandem status --json` of its agent.
    pub status: Value,
    /// The newest entries of its bundle history (`DIR/bundles/history.jsonl`),
    /// USB installs included, oldest first.
    pub history: Vec<Value>,
    /// The SHA-256 of a bundle the controller sent that this agent took and
    /// has no outcome for yet. After a restart it is gone: the upgrade was
    /// cut short.
    pub installing: Option<String>,
}

/// Each instance of an agent's `status` as the controller shows it:
/// colour, role, graph version and connection (its counters are left out).
pub fn instances(status: &Value) -> Vec<Value> {
    status["instances"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| {
            json!({
                "color": i["color"], "role": i["role"], "version": i["version"],
                "connected": i["connected"],
            })
        })
        .collect()
}

/// From the controller to an agent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToGateway {
    /// The header of a bundle frame: install it.
    Bundle {
        /// The rollout it belongs to.
        rollout: u64,
        /// SHA-256 of the bytes that follow, hex.
        sha256: String,
        /// The manifest's name.
        name: String,
        /// The manifest's version.
        version: String,
    },
}

/// A decoded frame.
#[derive(Debug, PartialEq)]
pub enum Decoded<M> {
    /// A message.
    Message(M),
    /// A bundle: its header and bytes.
    Bundle(M, Vec<u8>),
}

/// Why a frame was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Longer than the limit of its direction.
    #[error("a frame of {len} bytes is longer than the limit of {max}")]
    TooLong {
        /// The length the frame announced (or would have).
        len: usize,
        /// The limit: [`MAX_FRAME`] or [`MAX_MESSAGE_FRAME`].
        max: usize,
    },
    /// Shorter than its header.
    #[error("a frame of {0} bytes is too short for its header")]
    TooShort(usize),
    /// Another format version.
    #[error("frame version {0}, this tandem speaks version {VERSION}: upgrade the older side")]
    Version(u8),
    /// An unknown kind byte.
    #[error("unknown frame kind {0}")]
    Kind(u8),
    /// The JSON did not decode into a message.
    #[error("a message that does not decode: {0}")]
    Json(String),
}

/// The SHA-256 of `bytes`, in lowercase hex: how bundles are named on the link.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    use std::fmt::Write as _;
    let digest = sha2::Sha256::digest(bytes);
    let mut out = String::with_capacity(64);
    for b in digest {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Encodes a message frame, length prefix included.
pub fn encode_message<M: Serialize>(message: &M) -> Vec<u8> {
    let json = serde_json::to_vec(message).unwrap_or_default();
    let mut out = Vec::with_capacity(6 + json.len());
    out.extend_from_slice(&((2 + json.len()) as u32).to_be_bytes());
    out.extend_from_slice(&[VERSION, KIND_MESSAGE]);
    out.extend_from_slice(&json);
    out
}

/// Encodes a bundle frame: `header`, then `bytes`.
pub fn encode_bundle<M: Serialize>(header: &M, bytes: &[u8]) -> Result<Vec<u8>, FrameError> {
    let json = serde_json::to_vec(header).unwrap_or_default();
    let len = 2 + 4 + json.len() + bytes.len();
    if len > MAX_FRAME {
        return Err(FrameError::TooLong {
            len,
            max: MAX_FRAME,
        });
    }
    let mut out = Vec::with_capacity(4 + len);
    out.extend_from_slice(&(len as u32).to_be_bytes());
    out.extend_from_slice(&[VERSION, KIND_BUNDLE]);
    out.extend_from_slice(&(json.len() as u32).to_be_bytes());
    out.extend_from_slice(&json);
    out.extend_from_slice(bytes);
    Ok(out)
}

/// The length a frame's 4-byte prefix announces, checked against `max`.
pub fn frame_len(prefix: [u8; 4], max: usize) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(prefix) as usize;
    if len > max {
        return Err(FrameError::TooLong { len, max });
    }
    if len < 2 {
        return Err(FrameError::TooShort(len));
    }
    Ok(len)
}

/// Decodes a frame's body (what follows its length prefix).
pub fn decode<M: DeserializeOwned>(body: &[u8]) -> Result<Decoded<M>, FrameError> {
    let (&[version, kind], rest) = body
        .split_first_chunk::<2>()
        .ok_or(FrameError::TooShort(body.len()))?;
    if version != VERSION {
        return Err(FrameError::Version(version));
    }
    let json = |bytes: &[u8]| -> Result<M, FrameError> {
        serde_json::from_slice(bytes).map_err(|e| FrameError::Json(e.to_string()))
    };
    match kind {
        KIND_MESSAGE => Ok(Decoded::Message(json(rest)?)),
        KIND_BUNDLE => {
            let (len, rest) = rest
                .split_first_chunk::<4>()
                .ok_or(FrameError::TooShort(body.len()))?;
            let len = u32::from_be_bytes(*len) as usize;
            if len > rest.len() {
                return Err(FrameError::TooShort(body.len()));
            }
            let (header, bytes) = rest.split_at(len);
            Ok(Decoded::Bundle(json(header)?, bytes.to_vec()))
        }
        other => Err(FrameError::Kind(other)),
    }
}

/// Reads one frame from `recv`; `Ok(None)` when the peer finished cleanly.
/// A frame longer than `M`'s [`Direction::MAX_FRAME`] is refused before its
/// body is read.
///
/// Not cancel-safe: dropped part-way, it leaves `recv` inside a frame. Keep
/// it out of `select!`; a task of its own that forwards frames is.
pub async fn read<M: Direction>(
    recv: &mut quinn::RecvStream,
) -> Result<Option<Decoded<M>>, String> {
    let mut prefix = [0u8; 4];
    match recv.read_exact(&mut prefix).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(0)) => return Ok(None),
        Err(e) => return Err(e.to_string()),
    }
    let len = frame_len(prefix, M::MAX_FRAME).map_err(|e| e.to_string())?;
    let mut body = vec![0u8; len];
    recv.read_exact(&mut body)
        .await
        .map_err(|e| e.to_string())?;
    decode(&body).map(Some).map_err(|e| e.to_string())
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::ctl::transport::{self, CONTROLLER_NAME};

    /// A controller and a gateway `gw-1` connected over loopback QUIC, with
    /// the endpoints that keep them up.
    pub(crate) struct Link {
        pub(crate) gateway: quinn::Connection,
        pub(crate) controller: quinn::Connection,
        _endpoints: (quinn::Endpoint, quinn::Endpoint),
    }

    /// Connects a [`Link`]; its CA lives in a directory named after `test`.
    pub(crate) async fn link(test: &str) -> Link {
        let dir = std::env::temp_dir().join(format!("tandem-wire-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let ca = crate::net::SiteCa::open_or_create(&dir).unwrap();
        let trust = ca.trust().unwrap();
        let identity = ca.issue_identity(CONTROLLER_NAME).unwrap();
        let server = transport::server(([127, 0, 0, 1], 0).into(), &identity, &trust).unwrap();
        let addr = server.local_addr().unwrap();
        let identity = ca.issue_identity("gw-1").unwrap();
        let (client, config) = transport::client(addr, &identity, &trust).unwrap();
        let dial = async {
            let connecting = client.connect_with(config, addr, CONTROLLER_NAME).unwrap();
            connecting.await.unwrap()
        };
        let accept = async { server.accept().await.unwrap().await.unwrap() };
        let (gateway, controller) = tokio::join!(dial, accept);
        let _ = std::fs::remove_dir_all(&dir);
        Link {
            gateway,
            controller,
            _endpoints: (client, server),
        }
    }

    pub(crate) fn block_on<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(future)
    }

    #[test]
    fn a_frame_over_its_directions_limit_is_refused_before_its_body() {
        block_on(async {
            let link = link("limit").await;
            let (mut send, _recv) = link.gateway.open_bi().await.unwrap();
            let hello = ToController::Hello {
                gateway: "gw-1".into(),
                runtime: "0.1.0".into(),
            };
            send.write_all(&encode_message(&hello)).await.unwrap();
            // A prefix announcing a bundle-sized frame, and no body: the
            // refusal comes from the prefix alone.
            let len = MAX_MESSAGE_FRAME + 1;
            send.write_all(&(len as u32).to_be_bytes()).await.unwrap();
            send.write_all(&[VERSION, KIND_MESSAGE]).await.unwrap();
            let (_send, mut recv) = link.controller.accept_bi().await.unwrap();
            assert_eq!(
                read::<ToController>(&mut recv).await,
                Ok(Some(Decoded::Message(hello)))
            );
            let refused = tokio::time::timeout(
                std::time::Duration::from_secs(5),
                read::<ToController>(&mut recv),
            );
            let max = MAX_MESSAGE_FRAME;
            assert_eq!(
                refused.await.unwrap(),
                Err(FrameError::TooLong { len, max }.to_string())
            );
        });
    }

    #[test]
    fn messages_and_bundles_round_trip() {
        let hello = ToController::Hello {
            gateway: "gw-1".into(),
            runtime: "0.1.0".into(),
        };
        let frame = encode_message(&hello);
        let len = frame_len(frame[..4].try_into().unwrap(), MAX_MESSAGE_FRAME).unwrap();
        assert_eq!(len, frame.len() - 4);
        assert_eq!(decode(&frame[4..]), Ok(Decoded::Message(hello)));

        let header = ToGateway::Bundle {
            rollout: 3,
            sha256: "00".repeat(32),
            name: "home".into(),
            version: "1.2.0".into(),
        };
        let frame = encode_bundle(&header, b"bytes of a bundle").unwrap();
        assert_eq!(
            decode(&frame[4..]),
            Ok(Decoded::Bundle(header, b"bytes of a bundle".to_vec()))
        );
    }

    #[test]
    fn each_direction_has_its_own_limit() {
        // A bundle-sized frame is fine towards a gateway, not towards the
        // controller, whose messages are small JSON.
        let len = (MAX_MESSAGE_FRAME as u32 + 1).to_be_bytes();
        assert_eq!(
            frame_len(len, ToGateway::MAX_FRAME),
            Ok(MAX_MESSAGE_FRAME + 1)
        );
        assert_eq!(
            frame_len(len, ToController::MAX_FRAME),
            Err(FrameError::TooLong {
                len: MAX_MESSAGE_FRAME + 1,
                max: MAX_MESSAGE_FRAME
            })
        );
        assert_eq!(ToGateway::MAX_FRAME, MAX_FRAME);
    }

    #[test]
    fn bad_frames_are_refused_by_name() {
        assert_eq!(
            frame_len((MAX_FRAME as u32 + 1).to_be_bytes(), MAX_FRAME),
            Err(FrameError::TooLong {
                len: MAX_FRAME + 1,
                max: MAX_FRAME
            })
        );
        assert_eq!(
            decode::<ToGateway>(&[2, 1, b'{', b'}']),
            Err(FrameError::Version(2))
        );
        assert_eq!(decode::<ToGateway>(&[1, 9]), Err(FrameError::Kind(9)));
        assert!(matches!(
            decode::<ToGateway>(&[1, 1, b'{', b'}']),
            Err(FrameError::Json(_))
        ));
        // A bundle header longer than the frame.
        assert!(matches!(
            decode::<ToGateway>(&[1, 2, 0, 0, 1, 0, b'{']),
            Err(FrameError::TooShort(_))
        ));
    }
}
