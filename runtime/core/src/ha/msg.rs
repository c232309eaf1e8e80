//! The messages of the 1+1 HA protocol (see `ha-protocol.md`): what the agent
//! sends an instance ([`ToInstance`]) and what an instance sends the agent
//! ([`ToAgent`]), with the small types they carry. The wire codec encodes
//! exactly these; the state machines of this module consume and produce them.

use crate::record::{ChannelId, Record, Seq};
use bytes::Bytes;
use core::fmt;

/// Which of the two instances of a unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Color {
    /// The blue instance.
    Blue,
    /// The green instance.
    Green,
}

impl Color {
    /// Both colours, in index order.
    pub const BOTH: [Color; 2] = [Color::Blue, Color::Green];

    /// The other instance.
    #[must_use]
    pub const fn other(self) -> Color {
        match self {
            Color::Blue => Color::Green,
            Color::Green => Color::Blue,
        }
    }

    /// 0 for blue, 1 for green: an index into per-instance arrays.
    pub const fn index(self) -> usize {
        match self {
            Color::Blue => 0,
            Color::Green => 1,
        }
    }

    /// The name, as written in logs and status.
    pub const fn name(self) -> &'static str {
        match self {
            Color::Blue => "blue",
            Color::Green => "green",
        }
    }

    /// The colour of that [`Color::name`], if it is one.
    pub fn from_name(name: &str) -> Option<Color> {
        Color::BOTH.into_iter().find(|c| c.name() == name)
    }
}

impl fmt::Display for Color {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What an instance's output is used for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Its output goes to the sinks (the first copy of each record wins).
    Serving,
    /// Its output is compared with the serving instance's but never emitted.
    Shadow,
    /// Connected, restoring or catching up; not yet serving or shadow (status only).
    Starting,
}

impl Role {
    /// The name, as written in logs and status.
    pub const fn name(self) -> &'static str {
        match self {
            Role::Serving => "serving",
            Role::Shadow => "shadow",
            Role::Starting => "starting",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One output stream leaving the instances toward a sink.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(transparent)]
pub struct StreamId(pub u32);

impl StreamId {
    /// The stream of a channel: one stream per output channel.
    pub const fn of(channel: ChannelId) -> StreamId {
        StreamId(channel.0)
    }

    /// The id as an index into per-stream tables.
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Monotonic time in nanoseconds from an origin the runtime picks; the state
/// machines only ever compare and add to it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(transparent)]
pub struct Nanos(pub i64);

impl Nanos {
    /// Nanoseconds in one millisecond.
    pub const PER_MILLI: i64 = 1_000_000;

    /// Time from milliseconds.
    pub const fn from_millis(ms: i64) -> Nanos {
        Nanos(ms.saturating_mul(Self::PER_MILLI))
    }

    /// Time from a duration (a driver's clock reading since its origin, or
    /// a setting), at most `i64::MAX` nanoseconds.
    pub fn from_duration(d: std::time::Duration) -> Nanos {
        Nanos(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
    }

    /// As a duration (a time before the origin, negative, as none).
    pub fn to_duration(self) -> std::time::Duration {
        std::time::Duration::from_nanos(u64::try_from(self.0).unwrap_or(0))
    }

    /// This time plus a duration.
    #[must_use]
    pub const fn add(self, d: Nanos) -> Nanos {
        Nanos(self.0.saturating_add(d.0))
    }
}

/// agent -> instance.
#[derive(Clone, Debug, PartialEq)]
pub enum ToInstance {
    /// A batch of ingress records (the same batch goes to both instances).
    Input {
        /// Nothing more will come at or below this sequence number.
        frontier: Seq,
        /// The records, in sequence order.
        records: Vec<Record>,
    },
    /// After every input record with `seq <= at`: snapshot and report the state hash.
    Barrier {
        /// Barrier id, increasing.
        id: u64,
        /// The sequence number the barrier follows.
        at: Seq,
    },
    /// Stream the snapshot taken at `barrier` (serving instance only).
    SnapshotRequest {
        /// The barrier id.
        barrier: u64,
    },
    /// A piece of one vertex's snapshot, relayed to the restoring instance.
    SnapshotChunk {
        /// The barrier the snapshot was taken at.
        barrier: u64,
        /// The vertex, by index in the plan.
        vertex: u32,
        /// Offset of `bytes` in that vertex's snapshot.
        offset: u64,
        /// Length of that vertex's whole snapshot.
        total: u64,
        /// The bytes.
        bytes: Bytes,
    },
    /// The last piece of a snapshot: restore now.
    SnapshotEnd {
        /// The barrier the snapshot was taken at.
        barrier: u64,
        /// How many vertices the snapshot holds.
        vertices: u32,
        /// The state hash of the donor at the barrier.
        state_hash: u64,
    },
    /// From now on, serve or shadow.
    SetRole {
        /// The new role.
        role: Role,
    },
    /// Liveness ping; the instance answers with its own heartbeat.
    Heartbeat {
        /// When the agent sent it.
        sent_ns: i64,
        /// Heartbeat number.
        seq: u64,
    },
}

/// instance -> agent.
#[derive(Clone, Debug, PartialEq)]
pub enum ToAgent {
    /// First frame on a connection.
    Hello {
        /// Which instance this is.
        color: Color,
        /// The version of the graph code it runs.
        version: u32,
        /// Its process id, for logs.
        pid: u32,
    },
    /// Records toward the sinks, in sequence order.
    Output {
        /// Nothing more will come at or below this sequence number.
        frontier: Seq,
        /// The records.
        records: Vec<Record>,
    },
    /// A piece of a snapshot, as asked by [`ToInstance::SnapshotRequest`].
    SnapshotChunk {
        /// The barrier the snapshot was taken at.
        barrier: u64,
        /// The vertex, by index in the plan.
        vertex: u32,
        /// Offset of `bytes` in that vertex's snapshot.
        offset: u64,
        /// Length of that vertex's whole snapshot.
        total: u64,
        /// The bytes.
        bytes: Bytes,
    },
    /// The last piece of a snapshot.
    SnapshotEnd {
        /// The barrier the snapshot was taken at.
        barrier: u64,
        /// How many vertices the snapshot holds.
        vertices: u32,
        /// The state hash at the barrier.
        state_hash: u64,
    },
    /// The instance restored the snapshot of `barrier`.
    Restored {
        /// The barrier id.
        barrier: u64,
        /// Its state hash after restoring.
        state_hash: u64,
    },
    /// The instance passed a barrier.
    StateHash {
        /// The barrier id.
        barrier: u64,
        /// Its state hash there.
        hash: u64,
    },
    /// Answer to a heartbeat.
    Heartbeat {
        /// The agent's `sent_ns`, echoed.
        sent_ns: i64,
        /// The agent's heartbeat number, echoed.
        seq: u64,
        /// Every input record at or below this has been processed.
        processed: Seq,
    },
}

#[cfg(test)]
mod tests {
    use super::{Color, Nanos};
    use std::time::Duration;

    #[test]
    fn a_colour_is_found_by_its_name_and_nothing_else() {
        for c in Color::BOTH {
            assert_eq!(Color::from_name(c.name()), Some(c));
        }
        assert_eq!(Color::from_name("Blue"), None);
        assert_eq!(Color::from_name(""), None);
    }

    #[test]
    fn nanos_and_durations_convert_both_ways_within_their_ranges() {
        let d = Duration::from_micros(1500);
        assert_eq!(Nanos::from_duration(d).to_duration(), d);
        assert_eq!(Nanos::from_duration(Duration::MAX), Nanos(i64::MAX));
        // Before the origin: no time at all, not a wrapped-around one.
        assert_eq!(Nanos(-5).to_duration(), Duration::ZERO);
    }
}
