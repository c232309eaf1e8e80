//! What the supervisor reports: for logs, status, and process control.

use super::msg::{Color, Role};
use super::upstream::RetentionError;
use crate::record::Seq;

/// Why an instance was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LostReason {
    /// Its connection closed.
    Disconnected,
    /// It missed its heartbeat deadline.
    HeartbeatTimeout,
    /// It fell behind the retention ring.
    Overrun,
    /// A new `Hello` arrived for its colour.
    Replaced,
    /// It was restoring from the other instance, which was lost.
    DonorLost,
    /// It stayed behind its live peer for the stall timeout without
    /// processing anything more (its vertices stuck while it answered).
    Stalled,
}

/// What the supervisor reports: for logs, status, and process control.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// An instance said hello.
    Connected {
        /// The instance.
        color: Color,
        /// Its version.
        version: u32,
    },
    /// An instance was dropped; the runtime closes its connection and restarts it.
    Lost {
        /// The instance.
        color: Color,
        /// Why.
        reason: LostReason,
    },
    /// No live peer to restore from: the instance starts from the oldest
    /// retained input, so state older than that is gone.
    ColdStart {
        /// The instance.
        color: Color,
        /// First input seq it is fed.
        from: Seq,
    },
    /// A rejoin began: barrier placed, snapshot asked of the donor.
    RejoinStarted {
        /// The rejoining instance.
        color: Color,
        /// The barrier.
        barrier: u64,
        /// Where it sits.
        at: Seq,
    },
    /// The ring moved past the barrier before replay could start; a new
    /// rejoin follows. A larger retention (or faster snapshot) avoids it.
    RetentionMoved {
        /// The rejoining instance.
        color: Color,
        /// The barrier it restored at.
        barrier: u64,
        /// The error, naming the oldest retained seq.
        error: RetentionError,
    },
    /// The snapshot was not restored within the rejoin timeout; a new rejoin follows.
    RejoinTimedOut {
        /// The rejoining instance.
        color: Color,
        /// The barrier given up on.
        barrier: u64,
    },
    /// The restored state hash differs from the donor's; a new rejoin follows.
    RestoreMismatch {
        /// The rejoining instance.
        color: Color,
        /// The barrier.
        barrier: u64,
        /// The donor's hash.
        donor: u64,
        /// The restored instance's hash.
        restored: u64,
    },
    /// The instance restored and is being replayed its input.
    Restored {
        /// The instance.
        color: Color,
        /// The barrier.
        barrier: u64,
    },
    /// The instance's role changed.
    RoleChanged {
        /// The instance.
        color: Color,
        /// Its new role.
        role: Role,
    },
    /// Outputs between the two seqs were never delivered: the donor died
    /// before its output up to the restore point arrived, or an instance
    /// that starts serving ran so far ahead while it did not serve that
    /// some of its copies were dropped from the full comparison queue.
    OutputGap {
        /// Last output frontier of the donor.
        from: Seq,
        /// The restore point of the survivor.
        to: Seq,
    },
    /// Both instances reported their state hash at a barrier.
    StateHashes {
        /// The barrier.
        barrier: u64,
        /// Blue's hash.
        blue: u64,
        /// Green's hash.
        green: u64,
    },
}
