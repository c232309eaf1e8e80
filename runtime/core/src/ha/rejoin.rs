//! The supervisor: owns the two instance slots of a unit, their roles, and
//! the barrier-and-rejoin protocol, on top of the upstream junction, the
//! downstream junction and heartbeat liveness.
//!
//! Rejoin of a new instance while the other one is live (the donor):
//! 1. `Hello`: a barrier is placed at the live edge `at`, the donor is asked
//!    for its snapshot there, and the downstream junction starts keeping the
//!    donor's output above `at` for comparison.
//! 2. The donor's `SnapshotChunk`s and `SnapshotEnd` are relayed.
//! 3. `Restored`: if the state hash matches the donor's, input is replayed to
//!    the new instance from `at + 1` out of the retention ring (or, if the
//!    ring has moved past `at`, [`Event::RetentionMoved`] and a new barrier).
//! 4. When its processed seq reaches the ingress frontier within a margin, it
//!    becomes serving (same version as the donor) or shadow (another version).
//!
//! An instance with no live peer starts cold from the oldest retained input.
//! A lost instance is dropped at once; the other carries on serving alone.
//!
//! Driving it (one agent thread, quinn-proto style):
//! - connection's first frame `Hello`, then every frame:
//!   [`Supervisor::handle_message`]; connection closed: [`Supervisor::handle_disconnected`];
//! - each sequenced ingress batch: [`Supervisor::handle_ingress`];
//! - at [`Supervisor::poll_timeout`]: [`Supervisor::handle_timeout`];
//! - after any of those: drain [`Supervisor::poll_transmit`] for both colours
//!   (or [`Supervisor::poll_control`] for both, then [`Supervisor::poll_input`]
//!   to send frames both instances need once),
//!   [`Supervisor::poll_emitted`] into the sinks, [`Supervisor::poll_event`]
//!   for logs and process control ([`Event::Lost`]: close and restart it).

use super::downstream::{Downstream, DownstreamConfig, Tolerances};
use super::event::{Event, LostReason};
use super::liveness::{Liveness, LivenessConfig};
use super::msg::{Color, Nanos, Role, ToAgent, ToInstance};
use super::upstream::{BarrierMark, Recipients, Transmit, Upstream, UpstreamConfig, UpstreamEvent};
use crate::record::{Record, Seq};
use crate::wire::EncodedBatch;
use std::collections::VecDeque;

/// Settings of one unit's HA machinery.
#[derive(Clone, Debug)]
pub struct HaConfig {
    /// Retention ring and batching.
    pub upstream: UpstreamConfig,
    /// Merge bounds.
    pub downstream: DownstreamConfig,
    /// Per-channel comparison tolerances.
    pub tolerances: Tolerances,
    /// Heartbeat interval and timeout.
    pub liveness: LivenessConfig,
    /// A catching-up instance is caught up when its processed seq is within
    /// this many sequence numbers of the ingress frontier.
    pub catch_up_margin: u64,
    /// A rejoin whose snapshot has not been restored this long after it
    /// started, or after the last piece of it was relayed, starts over with
    /// a new barrier.
    pub rejoin_timeout: Nanos,
    /// A live instance that stays behind its live peer this long without
    /// processing anything more is lost: it answers pings (its network
    /// thread does) while its vertices are stuck.
    pub stall_timeout: Nanos,
}

impl Default for HaConfig {
    fn default() -> Self {
        HaConfig {
            upstream: UpstreamConfig::default(),
            downstream: DownstreamConfig::default(),
            tolerances: Tolerances::default(),
            liveness: LivenessConfig::default(),
            catch_up_margin: 1024,
            rejoin_timeout: Nanos::from_millis(10_000),
            stall_timeout: Nanos::from_millis(2_000),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Absent,
    /// Waiting for the donor's snapshot at `barrier`.
    Restoring {
        barrier: u64,
        at: Seq,
        donor_hash: Option<u64>,
        deadline: Nanos,
    },
    /// Restored at `at`, replaying toward the live edge.
    CatchingUp {
        at: Seq,
    },
    /// Serving or shadow.
    Live,
}

#[derive(Clone, Copy, Debug)]
struct Slot {
    phase: Phase,
    role: Role,
    version: u32,
    processed: Seq,
    /// The last barrier this process's state is known at: one it reported
    /// its state hash at, or the one whose snapshot it restored (0: none).
    checkpoint: u64,
    /// Since when it has been live behind its live peer with no progress.
    behind_since: Option<Nanos>,
}

const EMPTY: Slot = Slot {
    phase: Phase::Absent,
    role: Role::Starting,
    version: 0,
    processed: Seq::ZERO,
    checkpoint: 0,
    behind_since: None,
};

const HASHES_KEPT: usize = 16;

/// The HA supervisor of one unit (see the module docs for how to drive it).
#[derive(Debug)]
pub struct Supervisor {
    upstream: Upstream,
    downstream: Downstream,
    liveness: Liveness,
    margin: u64,
    rejoin_timeout: Nanos,
    stall_timeout: Nanos,
    slots: [Slot; 2],
    control: [VecDeque<ToInstance>; 2],
    events: VecDeque<Event>,
    hashes: VecDeque<(u64, [Option<u64>; 2])>,
    /// Every instance owes an answer, idle or not ([`Supervisor::set_vigilant`]).
    vigilant: bool,
}

impl Supervisor {
    /// No instance connected, nothing ingested.
    pub fn new(config: HaConfig) -> Supervisor {
        Supervisor {
            upstream: Upstream::new(config.upstream),
            downstream: Downstream::new(config.downstream, config.tolerances),
            liveness: Liveness::new(config.liveness),
            margin: config.catch_up_margin,
            rejoin_timeout: config.rejoin_timeout,
            stall_timeout: config.stall_timeout,
            slots: [EMPTY; 2],
            control: [VecDeque::new(), VecDeque::new()],
            events: VecDeque::new(),
            hashes: VecDeque::new(),
            vigilant: false,
        }
    }

    /// While `on`, every instance owes the agent an answer, idle or not: it
    /// is pinged after each heartbeat interval of silence and lost at the
    /// timeout, as under load. An upgrade turns this on while it runs: its
    /// fences take an instance's progress as proof that it is not hung, and
    /// on an idle unit that proof is only as fresh as its last answer.
    pub fn set_vigilant(&mut self, now: Nanos, on: bool) {
        if self.vigilant != on {
            self.vigilant = on;
            self.update_owed(now);
        }
    }

    /// The upstream junction (retention, head).
    pub fn upstream(&self) -> &Upstream {
        &self.upstream
    }

    /// The downstream junction (stats, divergences).
    pub fn downstream(&self) -> &Downstream {
        &self.downstream
    }

    /// Forgets the divergences kept so far (see [`Downstream::clear_divergences`]).
    pub fn clear_divergences(&mut self) {
        self.downstream.clear_divergences();
    }

    /// The role of `color`: `None` when absent, `Starting` while restoring or catching up.
    pub fn role(&self, color: Color) -> Option<Role> {
        let slot = &self.slots[color.index()];
        (slot.phase != Phase::Absent).then_some(slot.role)
    }

    /// True when `color` is serving or shadow (not absent, restoring or catching up).
    pub fn is_live(&self, color: Color) -> bool {
        self.slots[color.index()].phase == Phase::Live
    }

    /// Every input at or below this was processed by `color`, as its output
    /// frames' frontiers and its heartbeat answers said.
    pub fn processed(&self, color: Color) -> Seq {
        self.slots[color.index()].processed
    }

    /// The version `color` said it runs, when present.
    pub fn version(&self, color: Color) -> Option<u32> {
        let slot = &self.slots[color.index()];
        (slot.phase != Phase::Absent).then_some(slot.version)
    }

    /// Makes `color` serving and the other instance, if live, its shadow:
    /// the promotion of a new version during an upgrade, or a rollback to
    /// the old one. Output already emitted is never emitted again. Returns
    /// false (and changes nothing) unless `color` is live.
    pub fn promote(&mut self, color: Color) -> bool {
        if !self.is_live(color) {
            return false;
        }
        if self.slots[color.index()].role != Role::Serving {
            self.set_role(color, Role::Serving);
        }
        let other = color.other();
        if self.is_live(other) && self.slots[other.index()].role != Role::Shadow {
            self.set_role(other, Role::Shadow);
        }
        true
    }

    /// A sequenced ingress batch, as records (encoded here), at `now`.
    pub fn handle_ingress(&mut self, now: Nanos, frontier: Seq, records: &[Record]) {
        self.upstream.handle_ingress(frontier, records);
        self.overruns();
        self.update_owed(now);
    }

    /// A sequenced ingress batch encoded once at ingress (the hot path): its
    /// bytes are retained and sent to the instances as they are.
    pub fn handle_input(&mut self, now: Nanos, batch: EncodedBatch) {
        self.upstream.handle_input(batch);
        self.overruns();
        self.update_owed(now);
    }

    /// Tells liveness what each instance owes as of `now`: a live instance
    /// owes nothing once it has processed all the input there is and no
    /// rejoin is under way (it is then pinged only to keep it alive, which
    /// is what makes an idle gateway's heartbeats cheap); any other owes
    /// an answer, and is expected to give it within the timeout.
    fn update_owed(&mut self, now: Nanos) {
        let head = self.upstream.head();
        let rejoining = self
            .slots
            .iter()
            .any(|s| matches!(s.phase, Phase::Restoring { .. } | Phase::CatchingUp { .. }));
        for color in Color::BOTH {
            let slot = self.slots[color.index()];
            let owes =
                self.vigilant || rejoining || slot.phase != Phase::Live || slot.processed < head;
            self.liveness.owes(now, color, owes);
        }
        self.update_behind(now);
    }

    /// Notes since when each live instance has been behind its live peer.
    /// Any progress of its own starts the count again ([`Supervisor::progressed`]),
    /// so only one that processes nothing while its peer goes on ever
    /// reaches the stall timeout: one whose vertices are stuck while its
    /// network thread answers pings. A stall of the agent's own, or input
    /// both instances are slow on, holds both back alike and loses neither.
    fn update_behind(&mut self, now: Nanos) {
        for color in Color::BOTH {
            let peer = self.slots[color.other().index()];
            let slot = &mut self.slots[color.index()];
            let behind = slot.phase == Phase::Live
                && peer.phase == Phase::Live
                && slot.processed < peer.processed;
            if !behind {
                slot.behind_since = None;
            } else if slot.behind_since.is_none() {
                slot.behind_since = Some(now);
            }
        }
    }

    /// When `color` is lost for staying behind without progress, if it is behind.
    fn stall_deadline(&self, color: Color) -> Option<Nanos> {
        let since = self.slots[color.index()].behind_since?;
        Some(since.add(self.stall_timeout))
    }

    fn overruns(&mut self) {
        while let Some(UpstreamEvent::Overrun { color, .. }) = self.upstream.poll_event() {
            self.lose(color, LostReason::Overrun);
        }
    }

    /// `color`'s connection closed.
    pub fn handle_disconnected(&mut self, color: Color) {
        self.lose(color, LostReason::Disconnected);
    }

    /// Sends due pings, drops instances past their heartbeat deadline, and
    /// restarts rejoins past theirs.
    pub fn handle_timeout(&mut self, now: Nanos) {
        self.update_owed(now);
        while let Some(color) = self.liveness.poll_timeout(now) {
            self.lose(color, LostReason::HeartbeatTimeout);
        }
        for color in Color::BOTH {
            if self.stall_deadline(color).is_some_and(|d| d <= now) {
                self.lose(color, LostReason::Stalled);
            }
        }
        for color in Color::BOTH {
            if let Phase::Restoring {
                barrier, deadline, ..
            } = self.slots[color.index()].phase
            {
                if deadline <= now {
                    self.events
                        .push_back(Event::RejoinTimedOut { color, barrier });
                    self.start_rejoin(now, color);
                }
            }
        }
        while let Some((color, seq)) = self.liveness.poll_ping(now) {
            self.control[color.index()].push_back(ToInstance::Heartbeat {
                sent_ns: now.0,
                seq,
            });
        }
    }

    /// When to call [`Supervisor::handle_timeout`] next.
    pub fn poll_timeout(&self) -> Option<Nanos> {
        let rejoins = self.slots.iter().filter_map(|s| match s.phase {
            Phase::Restoring { deadline, .. } => Some(deadline),
            _ => None,
        });
        let stalls = Color::BOTH
            .into_iter()
            .filter_map(|c| self.stall_deadline(c));
        self.liveness
            .next_wakeup()
            .into_iter()
            .chain(rejoins)
            .chain(stalls)
            .min()
    }

    /// A frame from the instance on `color`'s connection. A `Hello` starts
    /// (or restarts) the instance of `color`; one naming the other colour is
    /// ignored: a connection speaks for the colour its certificate is for,
    /// and an instance cannot take its peer's slot by saying hello as it.
    /// The runtime drops frames of a connection superseded by a newer hello.
    pub fn handle_message(&mut self, now: Nanos, color: Color, msg: ToAgent) {
        // Any frame proves the instance alive, and puts its next ping off: a
        // heartbeat answer can wait behind a burst of output on the same
        // stream, and an instance whose output keeps coming needs none.
        if !matches!(msg, ToAgent::Hello { .. }) && self.slots[color.index()].phase != Phase::Absent
        {
            self.liveness.handle_heard(now, color);
        }
        match msg {
            ToAgent::Hello {
                color: named,
                version,
                ..
            } => {
                if named == color {
                    self.hello(now, color, version);
                }
            }
            ToAgent::Output { frontier, records } => {
                if self.slots[color.index()].phase != Phase::Absent {
                    let head = self.upstream.head();
                    let frontier = frontier.min(head);
                    // The decoded batch itself goes on to the sinks when it can.
                    self.downstream
                        .handle_output_owned(color, frontier, records, head);
                    self.progressed(color, frontier);
                }
            }
            ToAgent::SnapshotChunk {
                barrier,
                vertex,
                offset,
                total,
                bytes,
            } => {
                if self.restoring_from(color, barrier) {
                    self.snapshot_progressed(now, color.other());
                    self.control[color.other().index()].push_back(ToInstance::SnapshotChunk {
                        barrier,
                        vertex,
                        offset,
                        total,
                        bytes,
                    });
                }
            }
            ToAgent::SnapshotEnd {
                barrier,
                vertices,
                state_hash,
            } => {
                if self.restoring_from(color, barrier) {
                    self.snapshot_progressed(now, color.other());
                    let joiner = &mut self.slots[color.other().index()];
                    if let Phase::Restoring { donor_hash, .. } = &mut joiner.phase {
                        *donor_hash = Some(state_hash);
                    }
                    self.control[color.other().index()].push_back(ToInstance::SnapshotEnd {
                        barrier,
                        vertices,
                        state_hash,
                    });
                }
            }
            ToAgent::Restored {
                barrier,
                state_hash,
            } => self.restored(now, color, barrier, state_hash),
            ToAgent::StateHash { barrier, hash } => self.state_hash(color, barrier, hash),
            ToAgent::Heartbeat { processed, .. } => {
                if self.slots[color.index()].phase != Phase::Absent {
                    self.progressed(color, processed.min(self.upstream.head()));
                }
            }
        }
        self.update_owed(now);
    }

    /// `color` has processed the input up to `processed`: a heartbeat's
    /// answer says so, and so does an output frame's frontier (an instance
    /// sends it once the input below it is processed), which is how progress
    /// is known while output flows and no ping goes out.
    fn progressed(&mut self, color: Color, processed: Seq) {
        let slot = &mut self.slots[color.index()];
        if processed > slot.processed {
            // Behind or not, it moves: the stall count starts again.
            slot.behind_since = None;
        }
        slot.processed = slot.processed.max(processed);
        self.check_caught_up(color);
    }

    /// Places a barrier after everything ingested so far; live instances
    /// report their state hash there ([`Event::StateHashes`]).
    pub fn place_barrier(&mut self) -> BarrierMark {
        let mark = self.upstream.place_barrier();
        if self.hashes.len() == HASHES_KEPT {
            self.hashes.pop_front();
        }
        self.hashes.push_back((mark.id, [None, None]));
        mark
    }

    /// True when every live instance (serving or shadow), and at least one,
    /// has reported its state hash at `barrier` or a later one: it has
    /// processed all input up to there and snapshotted its vertices (a
    /// serving one keeps that snapshot as its checkpoint). What a stop waits
    /// for. An instance that is down (lost, restarting, still restoring)
    /// reports nothing and is not waited for, nor is one that restored from
    /// a snapshot taken at a later barrier (it never sees `barrier`); only
    /// the running process's own reports count, not an earlier one's.
    pub fn checkpointed(&self, barrier: u64) -> bool {
        let mut live = self
            .slots
            .iter()
            .filter(|s| s.phase == Phase::Live)
            .peekable();
        live.peek().is_some() && live.all(|s| s.checkpoint >= barrier)
    }

    /// The next frame for `color`: control frames first, then input
    /// (encoded: the bytes kept in the retention ring) and barriers.
    pub fn poll_transmit_frame(&mut self, color: Color) -> Option<Transmit> {
        if let Some(msg) = self.control[color.index()].pop_front() {
            return Some(Transmit::Message(msg));
        }
        self.upstream.poll_transmit(color)
    }

    /// [`Supervisor::poll_transmit_frame`], decoded: for tests and the
    /// simulation, which read messages (the runtime writes the bytes).
    pub fn poll_transmit(&mut self, color: Color) -> Option<ToInstance> {
        self.poll_transmit_frame(color)?.into_message().ok()
    }

    /// The next control frame for `color` (roles, snapshot traffic, pings).
    /// Drain both colours' control frames before [`Supervisor::poll_input`].
    pub fn poll_control(&mut self, color: Color) -> Option<ToInstance> {
        self.control[color.index()].pop_front()
    }

    /// The next input or barrier frame and whom it is for: one frame for both
    /// instances when they are at the same place (the same bytes to both).
    pub fn poll_input_frame(&mut self) -> Option<(Recipients, Transmit)> {
        self.upstream.poll_input()
    }

    /// [`Supervisor::poll_input_frame`], decoded (tests and the simulation).
    pub fn poll_input(&mut self) -> Option<(Recipients, ToInstance)> {
        let (to, frame) = self.poll_input_frame()?;
        Some((to, frame.into_message().ok()?))
    }

    /// A buffer an output batch came in, emptied: give it to the link's
    /// decoder (see [`Downstream::take_spare`]).
    pub fn take_spare_buffer(&mut self) -> Option<Vec<Record>> {
        self.downstream.take_spare()
    }

    /// Moves the records to emit toward the sinks onto the end of `out`.
    pub fn poll_emitted(&mut self, out: &mut Vec<Record>) {
        self.downstream.poll_emitted(out);
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn hello(&mut self, now: Nanos, color: Color, version: u32) {
        if self.slots[color.index()].phase != Phase::Absent {
            self.lose(color, LostReason::Replaced);
        }
        self.liveness.watch(now, color);
        self.slots[color.index()] = Slot { version, ..EMPTY };
        self.events.push_back(Event::Connected { color, version });
        if self.slots[color.other().index()].phase == Phase::Live {
            self.start_rejoin(now, color);
        } else {
            self.cold_start(color);
        }
    }

    fn start_rejoin(&mut self, now: Nanos, color: Color) {
        let donor = color.other();
        let mark = self.upstream.place_barrier();
        self.upstream.detach_restoring(color, mark.id);
        self.slots[color.index()].phase = Phase::Restoring {
            barrier: mark.id,
            at: mark.at,
            donor_hash: None,
            deadline: now.add(self.rejoin_timeout),
        };
        self.slots[color.index()].role = Role::Starting;
        self.downstream.expect(color, mark.at, Role::Starting);
        self.control[donor.index()].push_back(ToInstance::SnapshotRequest { barrier: mark.id });
        self.events.push_back(Event::RejoinStarted {
            color,
            barrier: mark.id,
            at: mark.at,
        });
    }

    fn cold_start(&mut self, color: Color) {
        let from = self.upstream.oldest();
        // Cannot fail: `oldest` is by definition still retained.
        let _ = self.upstream.start_replay(color, from);
        self.downstream
            .expect(color, Seq(from.0.saturating_sub(1)), Role::Serving);
        self.slots[color.index()].phase = Phase::Live;
        self.events.push_back(Event::ColdStart { color, from });
        self.set_role(color, Role::Serving);
    }

    fn set_role(&mut self, color: Color, role: Role) {
        self.slots[color.index()].role = role;
        if let Some((from, to)) = self.downstream.set_role(color, role) {
            self.events.push_back(Event::OutputGap { from, to });
        }
        self.control[color.index()].push_back(ToInstance::SetRole { role });
        self.events.push_back(Event::RoleChanged { color, role });
    }

    /// A piece of `joiner`'s snapshot was relayed: a large snapshot that
    /// keeps coming is not timed out, only one that stops coming for
    /// [`HaConfig::rejoin_timeout`] (the last piece gives the restore itself
    /// as long).
    fn snapshot_progressed(&mut self, now: Nanos, joiner: Color) {
        if let Phase::Restoring { deadline, .. } = &mut self.slots[joiner.index()].phase {
            *deadline = (*deadline).max(now.add(self.rejoin_timeout));
        }
    }

    /// True when `donor`'s peer is restoring from `donor` at `barrier`.
    fn restoring_from(&self, donor: Color, barrier: u64) -> bool {
        self.slots[donor.index()].phase == Phase::Live
            && matches!(
                self.slots[donor.other().index()].phase,
                Phase::Restoring { barrier: b, .. } if b == barrier
            )
    }

    fn restored(&mut self, now: Nanos, color: Color, barrier: u64, state_hash: u64) {
        let Phase::Restoring {
            barrier: expected,
            at,
            donor_hash,
            ..
        } = self.slots[color.index()].phase
        else {
            return;
        };
        if barrier != expected {
            return;
        }
        if let Some(donor) = donor_hash.filter(|h| *h != state_hash) {
            self.events.push_back(Event::RestoreMismatch {
                color,
                barrier,
                donor,
                restored: state_hash,
            });
            self.start_rejoin(now, color);
            return;
        }
        match self.upstream.start_replay_after(color, at.next(), barrier) {
            Ok(()) => {
                self.slots[color.index()].phase = Phase::CatchingUp { at };
                self.slots[color.index()].processed = at;
                self.slots[color.index()].checkpoint = barrier;
                self.events.push_back(Event::Restored { color, barrier });
                self.check_caught_up(color);
            }
            Err(error) => {
                self.events.push_back(Event::RetentionMoved {
                    color,
                    barrier,
                    error,
                });
                self.start_rejoin(now, color);
            }
        }
    }

    fn check_caught_up(&mut self, color: Color) {
        let slot = self.slots[color.index()];
        if !matches!(slot.phase, Phase::CatchingUp { .. }) {
            return;
        }
        // Caught up with the live peer, or with the input if there is none:
        // under load the serving instance is behind the head too.
        let peer = self.slots[color.other().index()];
        let target = if peer.phase == Phase::Live && peer.processed > Seq::ZERO {
            peer.processed.min(self.upstream.head())
        } else {
            self.upstream.head()
        };
        if slot.processed.0.saturating_add(self.margin) < target.0 {
            return;
        }
        self.slots[color.index()].phase = Phase::Live;
        let other = self.slots[color.other().index()];
        let role = if other.phase == Phase::Live && other.version != slot.version {
            Role::Shadow
        } else {
            Role::Serving
        };
        self.set_role(color, role);
    }

    fn state_hash(&mut self, color: Color, barrier: u64, hash: u64) {
        // A barrier not placed yet is a faulty peer's, and is not believed
        // (it would stand for every checkpoint to come).
        let slot = &mut self.slots[color.index()];
        if slot.phase != Phase::Absent && barrier <= self.upstream.last_barrier() {
            slot.checkpoint = slot.checkpoint.max(barrier);
        }
        let Some(entry) = self.hashes.iter_mut().find(|(id, _)| *id == barrier) else {
            return;
        };
        entry.1[color.index()] = Some(hash);
        if let [Some(blue), Some(green)] = entry.1 {
            self.events.push_back(Event::StateHashes {
                barrier,
                blue,
                green,
            });
        }
    }

    fn lose(&mut self, color: Color, reason: LostReason) {
        let slot = self.slots[color.index()];
        if slot.phase == Phase::Absent {
            return;
        }
        let frontier = self.downstream.instance_frontier(color);
        self.slots[color.index()] = EMPTY;
        self.upstream.detach(color);
        self.downstream.instance_lost(color);
        self.liveness.forget(color);
        self.control[color.index()].clear();
        self.events.push_back(Event::Lost { color, reason });
        let other = color.other();
        // No live peer to be behind any more.
        self.slots[other.index()].behind_since = None;
        let peer = self.slots[other.index()];
        match peer.phase {
            Phase::Absent => {}
            // Its donor is gone before the restore completed. It may hold a
            // partial or restored state, so feeding it input from the oldest
            // retained seq could count input twice: restart it instead, and
            // it starts cold from a clean process.
            Phase::Restoring { .. } if slot.phase == Phase::Live => {
                self.lose(other, LostReason::DonorLost);
            }
            Phase::Restoring { .. } => {}
            Phase::CatchingUp { at } => {
                if slot.phase == Phase::Live && frontier < at {
                    self.events.push_back(Event::OutputGap {
                        from: frontier,
                        to: at,
                    });
                }
                self.slots[other.index()].phase = Phase::Live;
                self.set_role(other, Role::Serving);
            }
            Phase::Live => {
                if peer.role != Role::Serving {
                    self.set_role(other, Role::Serving);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::ha::upstream::{RetentionError, FRAME_WEIGHT};
    use crate::record::{ChannelId, EventTime};

    const BLUE: Color = Color::Blue;
    const GREEN: Color = Color::Green;
    const NOW: Nanos = Nanos(0);

    fn supervisor(retention: usize) -> Supervisor {
        Supervisor::new(HaConfig {
            upstream: UpstreamConfig {
                retention,
                ..UpstreamConfig::default()
            },
            catch_up_margin: 0,
            ..HaConfig::default()
        })
    }

    fn ingest(s: &mut Supervisor, seqs: core::ops::RangeInclusive<u64>) {
        let records: Vec<Record> = seqs
            .clone()
            .map(|q| Record::new(Seq(q), EventTime(0), ChannelId(0), q as f64))
            .collect();
        s.handle_ingress(NOW, Seq(*seqs.end()), &records);
    }

    fn hello(s: &mut Supervisor, color: Color, version: u32) {
        s.handle_message(
            NOW,
            color,
            ToAgent::Hello {
                color,
                version,
                pid: 1,
            },
        );
    }

    fn drain(s: &mut Supervisor, color: Color) -> Vec<ToInstance> {
        core::iter::from_fn(|| s.poll_transmit(color)).collect()
    }

    fn events(s: &mut Supervisor) -> Vec<Event> {
        core::iter::from_fn(|| s.poll_event()).collect()
    }

    fn heartbeat(s: &mut Supervisor, color: Color, processed: u64) {
        heartbeat_at(s, NOW, color, processed);
    }

    /// `color`'s answer to a ping, at `at`.
    fn heartbeat_at(s: &mut Supervisor, at: Nanos, color: Color, processed: u64) {
        let msg = ToAgent::Heartbeat {
            sent_ns: 0,
            seq: 0,
            processed: Seq(processed),
        };
        s.handle_message(at, color, msg);
    }

    /// `color`'s output frame, as its link hands it to the supervisor.
    fn deliver(s: &mut Supervisor, color: Color, frontier: Seq, records: &[Record]) {
        let records = records.to_vec();
        s.handle_message(NOW, color, ToAgent::Output { frontier, records });
    }

    /// Green says it restored the snapshot at `barrier`, with `state_hash`.
    fn restored(s: &mut Supervisor, barrier: u64, state_hash: u64) {
        let msg = ToAgent::Restored {
            barrier,
            state_hash,
        };
        s.handle_message(NOW, GREEN, msg);
    }

    fn state_hash(s: &mut Supervisor, color: Color, barrier: u64) {
        s.handle_message(NOW, color, ToAgent::StateHash { barrier, hash: 7 });
    }

    /// Blue cold-starts and processes 1..=3; green says hello.
    fn blue_serving_green_joining(retention: usize, green_version: u32) -> Supervisor {
        let mut s = supervisor(retention);
        hello(&mut s, BLUE, 1);
        ingest(&mut s, 1..=3);
        drain(&mut s, BLUE);
        hello(&mut s, GREEN, green_version);
        s
    }

    #[test]
    fn first_instance_starts_cold_and_serves() {
        let mut s = supervisor(16);
        hello(&mut s, BLUE, 1);
        assert_eq!(s.role(BLUE), Some(Role::Serving));
        let ev = events(&mut s);
        assert!(ev.contains(&Event::ColdStart {
            color: BLUE,
            from: Seq(1)
        }));
        ingest(&mut s, 1..=2);
        let msgs = drain(&mut s, BLUE);
        assert!(msgs.contains(&ToInstance::SetRole {
            role: Role::Serving
        }));
        assert!(msgs
            .iter()
            .any(|m| matches!(m, ToInstance::Input { records, .. } if records.len() == 2)));
    }

    #[test]
    fn a_new_instance_restores_at_a_barrier_replays_and_serves() {
        let mut s = blue_serving_green_joining(16, 1);
        assert_eq!(s.role(GREEN), Some(Role::Starting));
        ingest(&mut s, 4..=5);
        let to_blue = drain(&mut s, BLUE);
        assert_eq!(to_blue[0], ToInstance::SnapshotRequest { barrier: 1 });
        assert!(to_blue.contains(&ToInstance::Barrier { id: 1, at: Seq(3) }));
        // Nothing for green before it restored.
        assert!(drain(&mut s, GREEN).is_empty());
        let chunk = ToAgent::SnapshotChunk {
            barrier: 1,
            vertex: 0,
            offset: 0,
            total: 2,
            bytes: bytes::Bytes::from_static(&[7, 8]),
        };
        s.handle_message(NOW, BLUE, chunk);
        let end = ToAgent::SnapshotEnd {
            barrier: 1,
            vertices: 1,
            state_hash: 42,
        };
        s.handle_message(NOW, BLUE, end);
        let relayed = drain(&mut s, GREEN);
        assert_eq!(relayed.len(), 2);
        assert!(
            matches!(relayed[0], ToInstance::SnapshotChunk { ref bytes, .. } if bytes[..] == [7, 8])
        );
        restored(&mut s, 1, 42);
        let replay = drain(&mut s, GREEN);
        let seqs: Vec<u64> = replay
            .iter()
            .flat_map(|m| match m {
                ToInstance::Input { records, .. } => records.iter().map(|r| r.seq.0).collect(),
                _ => Vec::new(),
            })
            .collect();
        assert_eq!(seqs, vec![4, 5]);
        heartbeat(&mut s, GREEN, 4);
        assert_eq!(s.role(GREEN), Some(Role::Starting));
        heartbeat(&mut s, GREEN, 5);
        assert_eq!(s.role(GREEN), Some(Role::Serving));
        assert_eq!(
            drain(&mut s, GREEN),
            vec![ToInstance::SetRole {
                role: Role::Serving
            }]
        );
    }

    #[test]
    fn another_version_stays_shadow() {
        let mut s = blue_serving_green_joining(16, 2);
        restored(&mut s, 1, 0);
        heartbeat(&mut s, GREEN, 3);
        assert_eq!(s.role(GREEN), Some(Role::Shadow));
        // The serving one dies: the shadow takes over.
        s.handle_disconnected(BLUE);
        assert_eq!(s.role(GREEN), Some(Role::Serving));
        assert_eq!(s.role(BLUE), None);
    }

    #[test]
    fn promotion_swaps_serving_and_shadow_and_never_emits_twice() {
        let mut s = blue_serving_green_joining(16, 2);
        assert!(!s.promote(GREEN), "green is still restoring");
        restored(&mut s, 1, 0);
        heartbeat(&mut s, GREEN, 3);
        assert_eq!(s.role(GREEN), Some(Role::Shadow));
        ingest(&mut s, 4..=5);
        let out = |seq: u64| vec![Record::new(Seq(seq), EventTime(0), ChannelId(0), 1.0)];
        deliver(&mut s, BLUE, Seq(4), &out(4));
        assert!(s.promote(GREEN));
        assert_eq!(s.role(GREEN), Some(Role::Serving));
        assert_eq!(s.role(BLUE), Some(Role::Shadow));
        // Green's copy of 4 was already emitted from blue; 5 comes from green only.
        deliver(&mut s, GREEN, Seq(4), &out(4));
        deliver(&mut s, GREEN, Seq(5), &out(5));
        deliver(&mut s, BLUE, Seq(5), &out(5));
        let mut emitted = Vec::new();
        s.poll_emitted(&mut emitted);
        let seqs: Vec<u64> = emitted.iter().map(|r| r.seq.0).collect();
        assert_eq!(seqs, [4, 5]);
        // And back: a rollback is a promotion of the old version.
        assert!(s.promote(BLUE));
        assert_eq!(s.role(BLUE), Some(Role::Serving));
        assert_eq!(s.role(GREEN), Some(Role::Shadow));
    }

    #[test]
    fn a_ring_that_moved_past_the_barrier_gets_a_new_barrier() {
        // Four one-record frames.
        let mut s = blue_serving_green_joining(4 * (1 + FRAME_WEIGHT), 1);
        for seq in 4..=10 {
            ingest(&mut s, seq..=seq);
            drain(&mut s, BLUE);
        }
        restored(&mut s, 1, 0);
        let ev = events(&mut s);
        assert!(ev.contains(&Event::RetentionMoved {
            color: GREEN,
            barrier: 1,
            error: RetentionError::Moved {
                from: Seq(4),
                oldest: Seq(7)
            }
        }));
        assert!(ev.contains(&Event::RejoinStarted {
            color: GREEN,
            barrier: 2,
            at: Seq(10)
        }));
        assert_eq!(
            drain(&mut s, BLUE),
            vec![
                ToInstance::SnapshotRequest { barrier: 2 },
                ToInstance::Barrier { id: 2, at: Seq(10) }
            ]
        );
    }

    #[test]
    fn a_restore_that_does_not_match_the_donor_is_retried() {
        let mut s = blue_serving_green_joining(16, 1);
        let end = ToAgent::SnapshotEnd {
            barrier: 1,
            vertices: 1,
            state_hash: 42,
        };
        s.handle_message(NOW, BLUE, end);
        events(&mut s);
        restored(&mut s, 1, 41);
        assert_eq!(
            events(&mut s),
            vec![
                Event::RestoreMismatch {
                    color: GREEN,
                    barrier: 1,
                    donor: 42,
                    restored: 41
                },
                Event::RejoinStarted {
                    color: GREEN,
                    barrier: 2,
                    at: Seq(3)
                }
            ]
        );
        // No input for green until a restore matches.
        assert!(!drain(&mut s, GREEN)
            .iter()
            .any(|m| matches!(m, ToInstance::Input { .. })));
    }

    #[test]
    fn a_rejoin_whose_snapshot_keeps_coming_is_given_time_until_it_stops() {
        let mut s = Supervisor::new(HaConfig {
            rejoin_timeout: Nanos::from_millis(100),
            ..HaConfig::default()
        });
        let ms = Nanos::from_millis;
        hello(&mut s, BLUE, 1);
        ingest(&mut s, 1..=3);
        hello(&mut s, GREEN, 1);
        events(&mut s);
        // A large snapshot: a chunk every 60 ms, for longer than the timeout.
        for (i, t) in [60, 120, 180].into_iter().enumerate() {
            let chunk = ToAgent::SnapshotChunk {
                barrier: 1,
                vertex: 0,
                offset: i as u64,
                total: 4,
                bytes: bytes::Bytes::from_static(&[7]),
            };
            s.handle_message(ms(t), BLUE, chunk);
            for color in [BLUE, GREEN] {
                heartbeat_at(&mut s, ms(t + 5), color, 3);
            }
            s.handle_timeout(ms(t + 10));
            assert_eq!(events(&mut s), vec![], "at {t} ms");
        }
        // Then no more chunks: it starts over 100 ms after the last one.
        for color in [BLUE, GREEN] {
            heartbeat_at(&mut s, ms(240), color, 3);
        }
        s.handle_timeout(ms(279));
        assert!(!events(&mut s)
            .iter()
            .any(|e| matches!(e, Event::RejoinTimedOut { .. })));
        s.handle_timeout(ms(280));
        assert!(events(&mut s).contains(&Event::RejoinTimedOut {
            color: GREEN,
            barrier: 1
        }));
    }

    #[test]
    fn a_rejoin_whose_snapshot_never_comes_starts_over() {
        let mut s = Supervisor::new(HaConfig {
            rejoin_timeout: Nanos::from_millis(100),
            ..HaConfig::default()
        });
        hello(&mut s, BLUE, 1);
        ingest(&mut s, 1..=3);
        hello(&mut s, GREEN, 1);
        events(&mut s);
        let beat = |s: &mut Supervisor, ms: i64| {
            for color in [BLUE, GREEN] {
                let msg = ToAgent::Heartbeat {
                    sent_ns: 0,
                    seq: 0,
                    processed: Seq(3),
                };
                s.handle_message(Nanos::from_millis(ms), color, msg);
            }
        };
        beat(&mut s, 90);
        s.handle_timeout(Nanos::from_millis(99));
        assert_eq!(events(&mut s), vec![]);
        s.handle_timeout(Nanos::from_millis(100));
        assert_eq!(
            events(&mut s),
            vec![
                Event::RejoinTimedOut {
                    color: GREEN,
                    barrier: 1
                },
                Event::RejoinStarted {
                    color: GREEN,
                    barrier: 2,
                    at: Seq(3)
                }
            ]
        );
        // The late snapshot of the first barrier is no longer relayed.
        let late = ToAgent::SnapshotEnd {
            barrier: 1,
            vertices: 1,
            state_hash: 0,
        };
        s.handle_message(Nanos::from_millis(101), BLUE, late);
        assert!(!drain(&mut s, GREEN)
            .iter()
            .any(|m| matches!(m, ToInstance::SnapshotEnd { .. })));
    }

    #[test]
    fn state_hashes_of_both_instances_are_reported_together() {
        let mut s = blue_serving_green_joining(16, 1);
        let mark = s.place_barrier();
        events(&mut s);
        s.handle_message(
            NOW,
            BLUE,
            ToAgent::StateHash {
                barrier: mark.id,
                hash: 7,
            },
        );
        assert_eq!(events(&mut s), vec![]);
        s.handle_message(
            NOW,
            GREEN,
            ToAgent::StateHash {
                barrier: mark.id,
                hash: 8,
            },
        );
        assert_eq!(
            events(&mut s),
            vec![Event::StateHashes {
                barrier: mark.id,
                blue: 7,
                green: 8
            }]
        );
    }

    #[test]
    fn a_barrier_is_checkpointed_once_every_live_instance_reported_it() {
        let mut s = blue_serving_green_joining(16, 1);
        // Blue is live, green still restoring: blue's report is enough.
        let first = s.place_barrier().id;
        assert!(!s.checkpointed(first));
        state_hash(&mut s, BLUE, first);
        assert!(s.checkpointed(first));
        // Both live: both must report.
        restored(&mut s, 1, 0);
        heartbeat(&mut s, GREEN, 3);
        assert!(s.is_live(GREEN));
        let second = s.place_barrier().id;
        state_hash(&mut s, BLUE, second);
        assert!(!s.checkpointed(second));
        state_hash(&mut s, GREEN, second);
        assert!(s.checkpointed(second));
        // A later barrier's report covers an earlier one; none covers a later,
        // and a report of a barrier never placed is not believed.
        assert!(s.checkpointed(first));
        assert!(!s.checkpointed(second + 1));
        state_hash(&mut s, BLUE, u64::MAX);
        state_hash(&mut s, GREEN, u64::MAX);
        let third = s.place_barrier().id;
        assert!(!s.checkpointed(third));
        // Nobody live: nothing is checkpointed.
        s.handle_disconnected(BLUE);
        s.handle_disconnected(GREEN);
        assert!(!s.checkpointed(first));
    }

    #[test]
    fn a_stop_waits_for_neither_an_instance_restored_past_its_barrier_nor_a_dead_ones_report() {
        let mut s = blue_serving_green_joining(64, 1);
        let restore = |s: &mut Supervisor, barrier| {
            restored(s, barrier, 0);
            heartbeat(s, GREEN, s.upstream().head().0);
            assert!(s.is_live(GREEN));
        };
        restore(&mut s, 1);
        // The final barrier; blue reports it, green is lost before it does,
        // comes back and restores from a snapshot taken after it.
        let last = s.place_barrier().id;
        state_hash(&mut s, BLUE, last);
        assert!(!s.checkpointed(last));
        s.handle_disconnected(GREEN);
        drain(&mut s, BLUE);
        hello(&mut s, GREEN, 1);
        let rejoin = match drain(&mut s, BLUE).first() {
            Some(ToInstance::SnapshotRequest { barrier }) => *barrier,
            other => panic!("a snapshot request, not {other:?}"),
        };
        restore(&mut s, rejoin);
        assert!(s.checkpointed(last));
        // Green reports the next barrier, then both die; green starts cold:
        // what its last process reported does not count for this one.
        let next = s.place_barrier().id;
        state_hash(&mut s, GREEN, next);
        s.handle_disconnected(BLUE);
        s.handle_disconnected(GREEN);
        hello(&mut s, GREEN, 1);
        assert!(s.is_live(GREEN));
        assert!(!s.checkpointed(next));
        state_hash(&mut s, GREEN, next);
        assert!(s.checkpointed(next));
    }

    #[test]
    fn an_instance_cannot_claim_progress_past_its_input() {
        let mut s = blue_serving_green_joining(16, 1);
        ingest(&mut s, 4..=5);
        // Green, restoring, claims to have processed everything there will ever be.
        restored(&mut s, 1, 0);
        heartbeat(&mut s, GREEN, u64::MAX);
        assert_eq!(s.processed(GREEN), Seq(5));
        // Blue's output frontier is held to the input too: the sinks' stream
        // does not end because an instance says END.
        deliver(&mut s, BLUE, Seq::END, &[]);
        assert_eq!(s.downstream().frontier(), Seq(5));
    }

    #[test]
    fn output_proves_an_instance_alive_while_its_heartbeat_answers_wait() {
        let mut s = supervisor(512);
        hello(&mut s, BLUE, 1);
        ingest(&mut s, 1..=400);
        // Output keeps coming, every 40 ms, but no heartbeat answer for 200 ms.
        for ms in (40..=200).step_by(40) {
            let output = ToAgent::Output {
                frontier: Seq(ms as u64),
                records: Vec::new(),
            };
            s.handle_message(Nanos::from_millis(ms), BLUE, output);
            s.handle_timeout(Nanos::from_millis(ms));
        }
        assert!(s.is_live(BLUE));
        // Silence is what loses it.
        s.handle_timeout(Nanos::from_millis(200 + 60));
        assert_eq!(s.role(BLUE), None);
    }

    #[test]
    fn a_silent_instance_is_lost_and_its_restoring_peer_restarted() {
        let mut s = blue_serving_green_joining(16, 1);
        let beat = ToAgent::Heartbeat {
            sent_ns: 0,
            seq: 1,
            processed: Seq::ZERO,
        };
        s.handle_message(Nanos::from_millis(990), GREEN, beat);
        s.handle_timeout(Nanos::from_millis(1000));
        let ev = events(&mut s);
        assert!(ev.contains(&Event::Lost {
            color: BLUE,
            reason: LostReason::HeartbeatTimeout
        }));
        assert!(ev.contains(&Event::Lost {
            color: GREEN,
            reason: LostReason::DonorLost
        }));
        // Green comes back as a fresh process: it starts cold and serves.
        hello(&mut s, GREEN, 1);
        assert_eq!(s.role(GREEN), Some(Role::Serving));
        assert!(events(&mut s).contains(&Event::ColdStart {
            color: GREEN,
            from: Seq(1)
        }));
    }

    #[test]
    fn under_load_catching_up_means_reaching_the_serving_peer_not_the_head() {
        let mut s = blue_serving_green_joining(64, 1);
        ingest(&mut s, 4..=40);
        // Blue, serving, is itself 30 records behind the input.
        heartbeat(&mut s, BLUE, 10);
        restored(&mut s, 1, 0);
        heartbeat(&mut s, GREEN, 9);
        assert_eq!(s.role(GREEN), Some(Role::Starting));
        heartbeat(&mut s, GREEN, 10);
        assert_eq!(s.role(GREEN), Some(Role::Serving));
    }

    fn output(frontier: u64) -> ToAgent {
        ToAgent::Output {
            frontier: Seq(frontier),
            records: Vec::new(),
        }
    }

    fn pinged(s: &mut Supervisor, color: Color) -> bool {
        drain(s, color)
            .iter()
            .any(|m| matches!(m, ToInstance::Heartbeat { .. }))
    }

    #[test]
    fn while_output_flows_no_ping_goes_out_and_progress_is_known() {
        let mut s = supervisor(64);
        hello(&mut s, BLUE, 1);
        ingest(&mut s, 1..=40);
        drain(&mut s, BLUE);
        // Output every 4 ms, within the 5 ms heartbeat interval.
        for frontier in 1..=40 {
            let at = Nanos::from_millis(4 * frontier as i64);
            s.handle_message(at, BLUE, output(frontier));
            s.handle_timeout(at);
            assert!(!pinged(&mut s, BLUE), "pinged at {at:?}");
        }
        assert_eq!(s.processed(BLUE), Seq(40));
        // More input at 160 ms, no output: pinged one interval later.
        ingest(&mut s, 41..=41);
        s.handle_timeout(Nanos::from_millis(164));
        assert!(!pinged(&mut s, BLUE));
        s.handle_timeout(Nanos::from_millis(165));
        assert!(pinged(&mut s, BLUE));
        assert!(s.is_live(BLUE));
    }

    /// Blue serving alone, its input (up to 10, at 0 ms) answered at 2 ms.
    fn idle_blue() -> Supervisor {
        let mut s = supervisor(64);
        hello(&mut s, BLUE, 1);
        s.handle_ingress(Nanos::from_millis(0), Seq(10), &[]);
        s.handle_message(Nanos::from_millis(2), BLUE, output(10));
        drain(&mut s, BLUE);
        // Nothing is asked of it before the 1 s keepalive.
        assert_eq!(s.poll_timeout(), Some(Nanos::from_millis(1000)));
        s
    }

    /// Blue, owing an answer from `since` ms on and silent: pinged one 5 ms
    /// interval later, lost at the 50 ms timeout.
    fn pinged_then_lost(s: &mut Supervisor, since: i64) {
        let ms = Nanos::from_millis;
        s.handle_timeout(ms(since + 5));
        assert!(pinged(s, BLUE));
        s.handle_timeout(ms(since + 49));
        assert!(s.is_live(BLUE));
        s.handle_timeout(ms(since + 50));
        assert_eq!(s.role(BLUE), None);
    }

    #[test]
    fn a_vigilant_supervisor_expects_an_answer_from_an_idle_instance_too() {
        let mut s = idle_blue();
        // An upgrade starts at 100 ms: silence counts from then on.
        s.set_vigilant(Nanos::from_millis(100), true);
        pinged_then_lost(&mut s, 100);
    }

    #[test]
    fn an_idle_instance_is_pinged_only_to_keep_it_alive_until_input_comes() {
        let mut s = idle_blue();
        let ms = Nanos::from_millis;
        // All its input answered: however quiet it is, nothing is asked of
        // it before the keepalive (the 5 ms interval and the 50 ms timeout
        // would have pinged it 200 times and lost it).
        s.handle_timeout(ms(999));
        assert!(!pinged(&mut s, BLUE));
        s.handle_timeout(ms(1000));
        assert!(pinged(&mut s, BLUE));
        let answer = ToAgent::Heartbeat {
            sent_ns: 0,
            seq: 2,
            processed: Seq(10),
        };
        s.handle_message(ms(1001), BLUE, answer);
        // Input at 1.5 s: now it owes an answer, and its silence counts.
        s.handle_ingress(ms(1500), Seq(11), &[]);
        pinged_then_lost(&mut s, 1500);
    }

    /// Blue serving at 10 of 40; green restored at 3, catching up.
    fn green_catching_up() -> Supervisor {
        let mut s = blue_serving_green_joining(64, 1);
        ingest(&mut s, 4..=40);
        s.handle_message(NOW, BLUE, output(10));
        restored(&mut s, 1, 0);
        s
    }

    #[test]
    fn a_catching_up_instance_serves_once_its_output_reaches_the_serving_peer() {
        let mut s = green_catching_up();
        s.handle_message(NOW, GREEN, output(9));
        assert_eq!(s.role(GREEN), Some(Role::Starting));
        s.handle_message(NOW, GREEN, output(10));
        assert_eq!(s.role(GREEN), Some(Role::Serving));
    }

    /// At `t` ms: blue's output moves on to `10 + t / 100`, green answers
    /// a ping with `green` processed, and what is due is done.
    fn tick(s: &mut Supervisor, t: i64, green: u64) {
        let at = Nanos::from_millis(t);
        s.handle_message(at, BLUE, output(10 + t as u64 / 100));
        heartbeat_at(s, at, GREEN, green);
        s.handle_timeout(at);
    }

    fn serving_pair() -> Supervisor {
        let mut s = green_catching_up();
        s.handle_message(NOW, GREEN, output(10));
        assert_eq!(s.role(GREEN), Some(Role::Serving));
        events(&mut s);
        s
    }

    #[test]
    fn a_shadow_that_ran_past_the_comparison_queue_reports_the_gap_when_it_serves() {
        let mut s = Supervisor::new(HaConfig {
            upstream: UpstreamConfig {
                retention: 1024,
                ..UpstreamConfig::default()
            },
            downstream: DownstreamConfig {
                max_pending: 4,
                ..DownstreamConfig::default()
            },
            catch_up_margin: 0,
            ..HaConfig::default()
        });
        let rec = |q: u64| Record::new(Seq(q), EventTime(0), ChannelId(0), q as f64);
        hello(&mut s, BLUE, 1);
        ingest(&mut s, 1..=3);
        let upto = |n: u64| (1..=n).map(rec).collect::<Vec<_>>();
        deliver(&mut s, BLUE, Seq(3), &upto(3));
        hello(&mut s, GREEN, 2);
        restored(&mut s, 1, 0);
        heartbeat(&mut s, GREEN, 3);
        assert_eq!(s.role(GREEN), Some(Role::Shadow));
        ingest(&mut s, 4..=10);
        // The shadow runs six ahead of blue, two more than the queue holds.
        deliver(&mut s, GREEN, Seq(9), &(4..=9).map(rec).collect::<Vec<_>>());
        let mut emitted = Vec::new();
        s.poll_emitted(&mut emitted);
        events(&mut s);
        s.handle_disconnected(BLUE);
        assert_eq!(s.role(GREEN), Some(Role::Serving));
        s.poll_emitted(&mut emitted);
        let seqs: Vec<u64> = emitted.iter().map(|r| r.seq.0).collect();
        assert_eq!(seqs, [1, 2, 3, 6, 7, 8, 9]);
        assert!(events(&mut s).contains(&Event::OutputGap {
            from: Seq(3),
            to: Seq(5)
        }));
    }

    #[test]
    fn barriers_placed_while_an_instance_restores_reach_it_after_its_restore() {
        // A barrier at the rejoin barrier's own point (an idle unit stopping
        // at once), and one after input that came while green restored.
        for more_input in [false, true] {
            let mut s = blue_serving_green_joining(16, 1);
            if more_input {
                ingest(&mut s, 4..=5);
            }
            let last = s.place_barrier();
            // Blue passes it long before green has restored.
            drain(&mut s, BLUE);
            state_hash(&mut s, BLUE, last.id);
            restored(&mut s, 1, 0);
            let to_green = drain(&mut s, GREEN);
            assert!(
                to_green.contains(&ToInstance::Barrier {
                    id: last.id,
                    at: last.at
                }),
                "green was sent {to_green:?}"
            );
            // So a stop there waits for green's report, and gets it.
            heartbeat(&mut s, GREEN, last.at.0);
            assert!(s.is_live(GREEN));
            assert!(!s.checkpointed(last.id));
            state_hash(&mut s, GREEN, last.id);
            assert!(s.checkpointed(last.id));
        }
    }

    #[test]
    fn a_record_numbered_past_the_input_is_refused_and_its_stream_goes_on() {
        let mut s = serving_pair();
        let rec = |q: u64| Record::new(Seq(q), EventTime(0), ChannelId(0), q as f64);
        deliver(&mut s, BLUE, Seq(10), &[rec(u64::MAX - 1)]);
        deliver(&mut s, BLUE, Seq(11), &[rec(11)]);
        let mut emitted = Vec::new();
        s.poll_emitted(&mut emitted);
        assert_eq!(emitted, vec![rec(11)]);
        assert_eq!(s.downstream().stats().invalid, 1);
    }

    #[test]
    fn an_instance_cannot_say_hello_as_its_peer() {
        let mut s = serving_pair();
        // On blue's connection, a hello naming green.
        let hello = ToAgent::Hello {
            color: GREEN,
            version: 1,
            pid: 9,
        };
        s.handle_message(NOW, BLUE, hello);
        assert!(events(&mut s).is_empty());
        assert_eq!(s.role(GREEN), Some(Role::Serving));
        assert_eq!(s.role(BLUE), Some(Role::Serving));
    }

    #[test]
    fn an_instance_that_answers_but_stays_behind_its_peer_without_progress_is_lost() {
        let mut s = serving_pair();
        // Green's vertices are stuck at 10; its network thread answers.
        for t in (100..=2000).step_by(100) {
            tick(&mut s, t, 10);
        }
        assert!(s.is_live(GREEN), "lost before the 2 s stall timeout");
        // Behind since 100 ms: lost at 2.1 s, and blue serves on.
        tick(&mut s, 2100, 10);
        assert_eq!(
            events(&mut s),
            vec![Event::Lost {
                color: GREEN,
                reason: LostReason::Stalled
            }]
        );
        assert_eq!(s.role(BLUE), Some(Role::Serving));
    }

    #[test]
    fn an_instance_slower_than_its_peer_but_moving_is_not_lost() {
        let mut s = serving_pair();
        // Green moves one step every 400 ms, further and further behind.
        for t in (100..=3000).step_by(100) {
            tick(&mut s, t, 10 + t as u64 / 400);
        }
        assert!(s.is_live(GREEN));
        assert!(!events(&mut s)
            .iter()
            .any(|e| matches!(e, Event::Lost { .. })));
    }

    /// The seqs of the records in `msgs`.
    fn input_seqs(msgs: &[ToInstance]) -> Vec<u64> {
        msgs.iter()
            .flat_map(|m| match m {
                ToInstance::Input { records, .. } => records.iter().map(|r| r.seq.0).collect(),
                _ => Vec::new(),
            })
            .collect()
    }

    #[test]
    fn after_a_whole_gateway_restart_numbering_jumps_and_nothing_in_between_is_awaited() {
        // The last run checkpointed at 500 and may have used numbers up to
        // 1000: the agent starts the ring at 1000, the ingress numbers from 1001.
        let mut s = supervisor(16);
        s.handle_ingress(NOW, Seq(1000), &[]);
        // Blue starts cold, from its checkpoint at 500: it is told that
        // nothing lies between, then gets the new input.
        hello(&mut s, BLUE, 1);
        assert_eq!(s.role(BLUE), Some(Role::Serving));
        ingest(&mut s, 1001..=1003);
        let to_blue = drain(&mut s, BLUE);
        assert_eq!(input_seqs(&to_blue), [1001, 1002, 1003]);
        assert!(to_blue.iter().all(|m| match m {
            ToInstance::Input { frontier, .. } => *frontier >= Seq(1000),
            _ => true,
        }));
        // Its output is emitted at once: the jump is no gap to wait for.
        let out = |seq: u64| Record::new(Seq(seq), EventTime(0), ChannelId(0), seq as f64);
        deliver(&mut s, BLUE, Seq(1000), &[]);
        deliver(&mut s, BLUE, Seq(1003), &[out(1001), out(1002), out(1003)]);
        let mut emitted = Vec::new();
        s.poll_emitted(&mut emitted);
        let seqs: Vec<u64> = emitted.iter().map(|r| r.seq.0).collect();
        assert_eq!(seqs, [1001, 1002, 1003]);
        assert_eq!(s.downstream().frontier(), Seq(1003));
        // Green joins from blue's state at the live edge, and is replayed
        // only what came after it.
        heartbeat(&mut s, BLUE, 1003);
        hello(&mut s, GREEN, 1);
        assert!(events(&mut s).contains(&Event::RejoinStarted {
            color: GREEN,
            barrier: 1,
            at: Seq(1003)
        }));
        ingest(&mut s, 1004..=1005);
        restored(&mut s, 1, 0);
        assert_eq!(input_seqs(&drain(&mut s, GREEN)), [1004, 1005]);
        // Within the run, a lost instance rejoins as it always did.
        s.handle_disconnected(GREEN);
        hello(&mut s, GREEN, 1);
        assert!(events(&mut s).contains(&Event::RejoinStarted {
            color: GREEN,
            barrier: 2,
            at: Seq(1005)
        }));
    }

    #[test]
    fn a_catching_up_instance_serves_alone_when_its_donor_dies() {
        let mut s = blue_serving_green_joining(16, 1);
        ingest(&mut s, 4..=9);
        restored(&mut s, 1, 0);
        assert_eq!(s.role(GREEN), Some(Role::Starting));
        s.handle_disconnected(BLUE);
        assert_eq!(s.role(GREEN), Some(Role::Serving));
    }
}
