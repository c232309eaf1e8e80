//! The body of each message, both directions: type bytes and layouts.
//!
//! ```text
//! agent -> instance (ToInstance)           instance -> agent (ToAgent)
//! 0x01 input          frontier u64,        0x81 hello          color u8 (0 blue,
//!                     count u32, records                       1 green), version
//! 0x02 barrier        id u64, at u64                           u32, pid u32
//! 0x03 snapshot req.  barrier u64          0x82 output         as input
//! 0x04 snapshot chunk barrier u64,         0x83 snapshot chunk as 0x04
//!                     vertex u32, offset   0x84 snapshot end   as 0x05
//!                     u64, total u64,      0x85 restored       barrier u64,
//!                     len u32, bytes                           state_hash u64
//! 0x05 snapshot end   barrier u64,         0x86 state hash     barrier u64,
//!                     vertices u32,                            hash u64
//!                     state_hash u64       0x87 heartbeat      sent_ns i64,
//! 0x06 set role       role u8 (0 serving,                      seq u64,
//!                     1 shadow, 2 starting)                    processed u64
//! 0x07 heartbeat      sent_ns i64, seq u64
//! ```

use super::codec::{Body, Codec};
use super::{batch_body_len, put_records, WireError, TO_AGENT_BIT};
use crate::ha::{Color, Role, ToAgent, ToInstance};
use crate::record::{Record, Seq};
use bytes::{BufMut, Bytes, BytesMut};

pub(super) const INPUT: u8 = 0x01;
const BARRIER: u8 = 0x02;
const SNAPSHOT_REQUEST: u8 = 0x03;
const SNAPSHOT_CHUNK: u8 = 0x04;
const SNAPSHOT_END: u8 = 0x05;
const SET_ROLE: u8 = 0x06;
const HEARTBEAT: u8 = 0x07;

const HELLO: u8 = TO_AGENT_BIT | 0x01;
pub(super) const OUTPUT: u8 = TO_AGENT_BIT | 0x02;
const SNAPSHOT_CHUNK_BACK: u8 = TO_AGENT_BIT | 0x03;
const SNAPSHOT_END_BACK: u8 = TO_AGENT_BIT | 0x04;
const RESTORED: u8 = TO_AGENT_BIT | 0x05;
const STATE_HASH: u8 = TO_AGENT_BIT | 0x06;
const HEARTBEAT_BACK: u8 = TO_AGENT_BIT | 0x07;

/// The name of the message a type byte stands for, either direction.
pub(super) const fn type_name(ty: u8) -> Option<&'static str> {
    Some(match ty {
        INPUT => "input",
        BARRIER => "barrier",
        SNAPSHOT_REQUEST => "snapshot request",
        SNAPSHOT_CHUNK | SNAPSHOT_CHUNK_BACK => "snapshot chunk",
        SNAPSHOT_END | SNAPSHOT_END_BACK => "snapshot end",
        SET_ROLE => "set role",
        HEARTBEAT | HEARTBEAT_BACK => "heartbeat",
        HELLO => "hello",
        OUTPUT => "output",
        RESTORED => "restored",
        STATE_HASH => "state hash",
        _ => return None,
    })
}

/// Bytes of the body of a message that always has the same size, either
/// direction, by type byte (as `body_len` writes them); `None` for batches
/// and snapshot chunks, whose size is in the frame.
pub(super) const fn fixed_body_len(ty: u8) -> Option<usize> {
    Some(match ty {
        BARRIER | HEARTBEAT | RESTORED | STATE_HASH => 16,
        SNAPSHOT_REQUEST => 8,
        SNAPSHOT_END | SNAPSHOT_END_BACK => 20,
        SET_ROLE => 1,
        HELLO => 9,
        HEARTBEAT_BACK => 24,
        _ => return None,
    })
}

const CHUNK_HEAD: usize = 32;

fn chunk_len(bytes: &Bytes) -> usize {
    CHUNK_HEAD.saturating_add(bytes.len())
}

fn put_chunk(
    dst: &mut BytesMut,
    barrier: u64,
    vertex: u32,
    offset: u64,
    total: u64,
    bytes: &Bytes,
) {
    dst.put_u64_le(barrier);
    dst.put_u32_le(vertex);
    dst.put_u64_le(offset);
    dst.put_u64_le(total);
    // Under the cap, so it fits in a u32.
    dst.put_u32_le(bytes.len() as u32);
    dst.put_slice(bytes);
}

impl Codec for ToInstance {
    fn type_byte(&self) -> u8 {
        match self {
            ToInstance::Input { .. } => INPUT,
            ToInstance::Barrier { .. } => BARRIER,
            ToInstance::SnapshotRequest { .. } => SNAPSHOT_REQUEST,
            ToInstance::SnapshotChunk { .. } => SNAPSHOT_CHUNK,
            ToInstance::SnapshotEnd { .. } => SNAPSHOT_END,
            ToInstance::SetRole { .. } => SET_ROLE,
            ToInstance::Heartbeat { .. } => HEARTBEAT,
        }
    }

    fn body_len(&self) -> usize {
        match self {
            ToInstance::Input { records, .. } => batch_body_len(records.len()),
            ToInstance::Barrier { .. } | ToInstance::Heartbeat { .. } => 16,
            ToInstance::SnapshotRequest { .. } => 8,
            ToInstance::SnapshotChunk { bytes, .. } => chunk_len(bytes),
            ToInstance::SnapshotEnd { .. } => 20,
            ToInstance::SetRole { .. } => 1,
        }
    }

    fn put_body(&self, dst: &mut BytesMut) {
        match self {
            ToInstance::Input { frontier, records } => put_records(dst, *frontier, records),
            ToInstance::Barrier { id, at } => {
                dst.put_u64_le(*id);
                dst.put_u64_le(at.0);
            }
            ToInstance::SnapshotRequest { barrier } => dst.put_u64_le(*barrier),
            ToInstance::SnapshotChunk {
                barrier,
                vertex,
                offset,
                total,
                bytes,
            } => put_chunk(dst, *barrier, *vertex, *offset, *total, bytes),
            ToInstance::SnapshotEnd {
                barrier,
                vertices,
                state_hash,
            } => {
                dst.put_u64_le(*barrier);
                dst.put_u32_le(*vertices);
                dst.put_u64_le(*state_hash);
            }
            ToInstance::SetRole { role } => dst.put_u8(match role {
                Role::Serving => 0,
                Role::Shadow => 1,
                Role::Starting => 2,
            }),
            ToInstance::Heartbeat { sent_ns, seq } => {
                dst.put_i64_le(*sent_ns);
                dst.put_u64_le(*seq);
            }
        }
    }

    fn owns(ty: u8) -> bool {
        (INPUT..=HEARTBEAT).contains(&ty)
    }

    fn from_batch(frontier: Seq, records: Vec<Record>) -> ToInstance {
        ToInstance::Input { frontier, records }
    }

    fn take_body(ty: u8, b: &mut Body) -> Result<ToInstance, WireError> {
        Ok(match ty {
            INPUT => {
                let (frontier, records) = b.batch()?;
                ToInstance::Input { frontier, records }
            }
            BARRIER => ToInstance::Barrier {
                id: b.u64()?,
                at: b.seq()?,
            },
            SNAPSHOT_REQUEST => ToInstance::SnapshotRequest { barrier: b.u64()? },
            SNAPSHOT_CHUNK => {
                let (barrier, vertex, offset, total) = (b.u64()?, b.u32()?, b.u64()?, b.u64()?);
                ToInstance::SnapshotChunk {
                    barrier,
                    vertex,
                    offset,
                    total,
                    bytes: b.chunk(offset, total)?,
                }
            }
            SNAPSHOT_END => ToInstance::SnapshotEnd {
                barrier: b.u64()?,
                vertices: b.u32()?,
                state_hash: b.u64()?,
            },
            SET_ROLE => ToInstance::SetRole {
                role: match b.u8()? {
                    0 => Role::Serving,
                    1 => Role::Shadow,
                    2 => Role::Starting,
                    value => {
                        return Err(WireError::InvalidEnum {
                            field: "set role role",
                            value,
                            expected: "0 (serving), 1 (shadow) or 2 (starting)",
                        })
                    }
                },
            },
            HEARTBEAT => ToInstance::Heartbeat {
                sent_ns: b.i64()?,
                seq: b.u64()?,
            },
            _ => return Err(WireError::UnknownType(ty)),
        })
    }
}

impl Codec for ToAgent {
    fn type_byte(&self) -> u8 {
        match self {
            ToAgent::Hello { .. } => HELLO,
            ToAgent::Output { .. } => OUTPUT,
            ToAgent::SnapshotChunk { .. } => SNAPSHOT_CHUNK_BACK,
            ToAgent::SnapshotEnd { .. } => SNAPSHOT_END_BACK,
            ToAgent::Restored { .. } => RESTORED,
            ToAgent::StateHash { .. } => STATE_HASH,
            ToAgent::Heartbeat { .. } => HEARTBEAT_BACK,
        }
    }

    fn body_len(&self) -> usize {
        match self {
            ToAgent::Hello { .. } => 9,
            ToAgent::Output { records, .. } => batch_body_len(records.len()),
            ToAgent::SnapshotChunk { bytes, .. } => chunk_len(bytes),
            ToAgent::SnapshotEnd { .. } => 20,
            ToAgent::Restored { .. } | ToAgent::StateHash { .. } => 16,
            ToAgent::Heartbeat { .. } => 24,
        }
    }

    fn put_body(&self, dst: &mut BytesMut) {
        match self {
            ToAgent::Hello {
                color,
                version,
                pid,
            } => {
                dst.put_u8(match color {
                    Color::Blue => 0,
                    Color::Green => 1,
                });
                dst.put_u32_le(*version);
                dst.put_u32_le(*pid);
            }
            ToAgent::Output { frontier, records } => put_records(dst, *frontier, records),
            ToAgent::SnapshotChunk {
                barrier,
                vertex,
                offset,
                total,
                bytes,
            } => put_chunk(dst, *barrier, *vertex, *offset, *total, bytes),
            ToAgent::SnapshotEnd {
                barrier,
                vertices,
                state_hash,
            } => {
                dst.put_u64_le(*barrier);
                dst.put_u32_le(*vertices);
                dst.put_u64_le(*state_hash);
            }
            ToAgent::Restored {
                barrier,
                state_hash: hash,
            }
            | ToAgent::StateHash { barrier, hash } => {
                dst.put_u64_le(*barrier);
                dst.put_u64_le(*hash);
            }
            ToAgent::Heartbeat {
                sent_ns,
                seq,
                processed,
            } => {
                dst.put_i64_le(*sent_ns);
                dst.put_u64_le(*seq);
                dst.put_u64_le(processed.0);
            }
        }
    }

    fn owns(ty: u8) -> bool {
        (HELLO..=HEARTBEAT_BACK).contains(&ty)
    }

    fn from_batch(frontier: Seq, records: Vec<Record>) -> ToAgent {
        ToAgent::Output { frontier, records }
    }

    fn take_body(ty: u8, b: &mut Body) -> Result<ToAgent, WireError> {
        Ok(match ty {
            HELLO => ToAgent::Hello {
                color: match b.u8()? {
                    0 => Color::Blue,
                    1 => Color::Green,
                    value => {
                        return Err(WireError::InvalidEnum {
                            field: "hello color",
                            value,
                            expected: "0 (blue) or 1 (green)",
                        })
                    }
                },
                version: b.u32()?,
                pid: b.u32()?,
            },
            OUTPUT => {
                let (frontier, records) = b.batch()?;
                ToAgent::Output { frontier, records }
            }
            SNAPSHOT_CHUNK_BACK => {
                let (barrier, vertex, offset, total) = (b.u64()?, b.u32()?, b.u64()?, b.u64()?);
                ToAgent::SnapshotChunk {
                    barrier,
                    vertex,
                    offset,
                    total,
                    bytes: b.chunk(offset, total)?,
                }
            }
            SNAPSHOT_END_BACK => ToAgent::SnapshotEnd {
                barrier: b.u64()?,
                vertices: b.u32()?,
                state_hash: b.u64()?,
            },
            RESTORED => ToAgent::Restored {
                barrier: b.u64()?,
                state_hash: b.u64()?,
            },
            STATE_HASH => ToAgent::StateHash {
                barrier: b.u64()?,
                hash: b.u64()?,
            },
            HEARTBEAT_BACK => ToAgent::Heartbeat {
                sent_ns: b.i64()?,
                seq: b.u64()?,
                processed: b.seq()?,
            },
            _ => return Err(WireError::UnknownType(ty)),
        })
    }
}
