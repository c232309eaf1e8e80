//! Frames to and from the protocol messages of [`crate::ha`]: the state
//! machines speak [`ToInstance`] and [`ToAgent`], the wire speaks [`Frame`].
//! A frame that is valid on the wire but travels the wrong way (an `Input`
//! sent to the agent) is an [`UnexpectedFrame`], and closes the link like any
//! other bad frame.

use super::{Frame, FrameType, WireRole};
use crate::ha::{Role, ToAgent, ToInstance};
use core::fmt;

/// A well-formed frame that the receiving side never takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnexpectedFrame {
    /// The frame's type.
    pub frame_type: FrameType,
    /// Who received it: "agent" or "instance".
    pub at: &'static str,
}

impl fmt::Display for UnexpectedFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a {} frame is never sent to the {}",
            self.frame_type.name(),
            self.at
        )
    }
}

impl std::error::Error for UnexpectedFrame {}

impl WireRole {
    /// The role this carries.
    pub const fn role(self) -> Role {
        match self {
            WireRole::Serving => Role::Serving,
            WireRole::Shadow => Role::Shadow,
        }
    }

    /// The wire form of `role`; `Starting` is never sent and travels as `Shadow`
    /// (its output is not emitted either way).
    pub const fn of(role: Role) -> WireRole {
        match role {
            Role::Serving => WireRole::Serving,
            Role::Shadow | Role::Starting => WireRole::Shadow,
        }
    }
}

impl From<ToInstance> for Frame {
    fn from(msg: ToInstance) -> Frame {
        match msg {
            ToInstance::Input { frontier, records } => Frame::Input { frontier, records },
            ToInstance::Barrier { id, at } => Frame::Barrier { id, at },
            ToInstance::SnapshotRequest { barrier } => Frame::SnapshotRequest { barrier },
            ToInstance::SnapshotChunk {
                barrier,
                vertex,
                offset,
                total,
                bytes,
            } => Frame::SnapshotChunk {
                barrier,
                vertex,
                offset,
                total,
                bytes,
            },
            ToInstance::SnapshotEnd {
                barrier,
                vertices,
                state_hash,
            } => Frame::SnapshotEnd {
                barrier,
                vertices,
                state_hash,
            },
            ToInstance::SetRole { role } => Frame::SetRole {
                role: WireRole::of(role),
            },
            ToInstance::Heartbeat { sent_ns, seq } => Frame::Heartbeat {
                sent_ns,
                seq,
                processed: crate::Seq::ZERO,
            },
        }
    }
}

impl From<ToAgent> for Frame {
    fn from(msg: ToAgent) -> Frame {
        match msg {
            ToAgent::Hello {
                color,
                version,
                pid,
            } => Frame::Hello {
                color,
                version,
                pid,
            },
            ToAgent::Output { frontier, records } => Frame::Output { frontier, records },
            ToAgent::SnapshotChunk {
                barrier,
                vertex,
                offset,
                total,
                bytes,
            } => Frame::SnapshotChunk {
                barrier,
                vertex,
                offset,
                total,
                bytes,
            },
            ToAgent::SnapshotEnd {
                barrier,
                vertices,
                state_hash,
            } => Frame::SnapshotEnd {
                barrier,
                vertices,
                state_hash,
            },
            ToAgent::Restored {
                barrier,
                state_hash,
            } => Frame::Restored {
                barrier,
                state_hash,
            },
            ToAgent::StateHash { barrier, hash } => Frame::StateHash { barrier, hash },
            ToAgent::Heartbeat {
                sent_ns,
                seq,
                processed,
            } => Frame::Heartbeat {
                sent_ns,
                seq,
                processed,
            },
        }
    }
}

impl TryFrom<Frame> for ToAgent {
    type Error = UnexpectedFrame;

    fn try_from(frame: Frame) -> Result<ToAgent, UnexpectedFrame> {
        Ok(match frame {
            Frame::Hello {
                color,
                version,
                pid,
            } => ToAgent::Hello {
                color,
                version,
                pid,
            },
            Frame::Output { frontier, records } => ToAgent::Output { frontier, records },
            Frame::SnapshotChunk {
                barrier,
                vertex,
                offset,
                total,
                bytes,
            } => ToAgent::SnapshotChunk {
                barrier,
                vertex,
                offset,
                total,
                bytes,
            },
            Frame::SnapshotEnd {
                barrier,
                vertices,
                state_hash,
            } => ToAgent::SnapshotEnd {
                barrier,
                vertices,
                state_hash,
            },
            Frame::Restored {
                barrier,
                state_hash,
            } => ToAgent::Restored {
                barrier,
                state_hash,
            },
            Frame::StateHash { barrier, hash } => ToAgent::StateHash { barrier, hash },
            Frame::Heartbeat {
                sent_ns,
                seq,
                processed,
            } => ToAgent::Heartbeat {
                sent_ns,
                seq,
                processed,
            },
            other @ (Frame::Input { .. }
            | Frame::Barrier { .. }
            | Frame::SnapshotRequest { .. }
            | Frame::SetRole { .. }) => {
                return Err(UnexpectedFrame {
                    frame_type: other.frame_type(),
                    at: "agent",
                })
            }
        })
    }
}

impl TryFrom<Frame> for ToInstance {
    type Error = UnexpectedFrame;

    fn try_from(frame: Frame) -> Result<ToInstance, UnexpectedFrame> {
        Ok(match frame {
            Frame::Input { frontier, records } => ToInstance::Input { frontier, records },
            Frame::Barrier { id, at } => ToInstance::Barrier { id, at },
            Frame::SnapshotRequest { barrier } => ToInstance::SnapshotRequest { barrier },
            Frame::SnapshotChunk {
                barrier,
                vertex,
                offset,
                total,
                bytes,
            } => ToInstance::SnapshotChunk {
                barrier,
                vertex,
                offset,
                total,
                bytes,
            },
            Frame::SnapshotEnd {
                barrier,
                vertices,
                state_hash,
            } => ToInstance::SnapshotEnd {
                barrier,
                vertices,
                state_hash,
            },
            Frame::SetRole { role } => ToInstance::SetRole { role: role.role() },
            Frame::Heartbeat { sent_ns, seq, .. } => ToInstance::Heartbeat { sent_ns, seq },
            other @ (Frame::Hello { .. }
            | Frame::Output { .. }
            | Frame::Restored { .. }
            | Frame::StateHash { .. }) => {
                return Err(UnexpectedFrame {
                    frame_type: other.frame_type(),
                    at: "instance",
                })
            }
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::ha::Color;
    use crate::{ChannelId, EventTime, Record, Seq};

    #[test]
    fn every_message_survives_the_wire_both_ways() {
        let records = vec![Record::new(Seq(4), EventTime(9), ChannelId(2), 1.5)];
        let to_instance = [
            ToInstance::Input {
                frontier: Seq(4),
                records: records.clone(),
            },
            ToInstance::Barrier { id: 3, at: Seq(4) },
            ToInstance::SnapshotRequest { barrier: 3 },
            ToInstance::SnapshotEnd {
                barrier: 3,
                vertices: 2,
                state_hash: 77,
            },
            ToInstance::SetRole { role: Role::Shadow },
            ToInstance::Heartbeat { sent_ns: 5, seq: 6 },
        ];
        for msg in to_instance {
            let bytes = super::super::encode_to_bytes(&Frame::from(msg.clone())).unwrap();
            let frame = super::super::decode(&mut bytes::BytesMut::from(&bytes[..]))
                .unwrap()
                .unwrap();
            assert_eq!(ToInstance::try_from(frame).unwrap(), msg);
        }
        let to_agent = [
            ToAgent::Hello {
                color: Color::Green,
                version: 2,
                pid: 7,
            },
            ToAgent::Output {
                frontier: Seq(4),
                records,
            },
            ToAgent::Restored {
                barrier: 1,
                state_hash: 2,
            },
            ToAgent::StateHash {
                barrier: 1,
                hash: 2,
            },
        ];
        for msg in to_agent {
            let frame = Frame::from(msg.clone());
            assert_eq!(ToAgent::try_from(frame.clone()).unwrap(), msg);
            let wrong_way = ToInstance::try_from(frame).unwrap_err();
            assert_eq!(wrong_way.at, "instance");
        }
    }

    #[test]
    fn a_frame_sent_the_wrong_way_says_which_and_where() {
        let err = ToAgent::try_from(Frame::Barrier { id: 1, at: Seq(2) }).unwrap_err();
        assert_eq!(
            err.to_string(),
            "a barrier frame is never sent to the agent"
        );
    }
}
