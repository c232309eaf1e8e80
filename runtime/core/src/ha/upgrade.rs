//! A live upgrade of a unit's vertices, as a pure state machine beside the
//! [`Supervisor`] (ARCHITECTURE, "Rejoin and upgrade without losing state"):
//!
//! 1. **transfer**: the new colour's instance is restarted on the new
//!    release; it restores a barrier snapshot of the serving (old) one and
//!    replays to the live edge, where the supervisor makes it a shadow.
//! 2. **shadow**: it runs beside the old version; the downstream junction
//!    compares their outputs. After the supervision period, with the
//!    mismatch rate within policy (`max_mismatch` above the noise floor
//!    measured between the two old instances before the upgrade), it is
//!    promoted: new serving, old shadow.
//! 3. **promoted**: after a second period within policy, the old colour is
//!    restarted on the new release too, restoring the new version's state.
//! 4. **replacing**: when that second copy serves, the upgrade is done.
//!
//! A rollback (asked for, divergence past policy, a phase past its deadline,
//! or the new instance lost in phases 1 to 3, or the old one in phase 1)
//! makes the old instance serve again and restarts the new colour on the old
//! release; the old one never stopped, so its state is current. The old
//! instance lost in phase 2 or 3 leaves the new one serving alone: the old
//! colour comes back as a second copy of it (phase 4). A phase past its
//! deadline in phase 4 ends the upgrade as promoted, with a warning: the old
//! state is gone, there is nothing to roll back to.
//!
//! A hung instance looks live until its heartbeat deadline (the driver makes
//! the supervisor vigilant while an upgrade runs, so that holds on an idle
//! unit too: [`Supervisor::set_vigilant`]), so neither step
//! that restarts an instance trusts the other one blindly: the old colour is
//! replaced only once the new instance has processed the input ingested when
//! the promoted period ended, and a rollback past policy or a deadline waits
//! until the old instance has processed the input of that moment (a hung one
//! is found lost meanwhile, and the new one serves). Each waits at most a
//! heartbeat timeout past the deadline.
//!
//! Green always runs the new version first ([`NEW_COLOR`]). Releases are
//! opaque (`R`: the runtime's files and executable, the simulation's version
//! number); [`Upgrader::release`] says which one each colour runs, and is
//! what the driver starts an instance on. Driving it, beside the supervisor:
//! - a request: [`Upgrader::start`] or [`Upgrader::handle_rollback`];
//! - every event of the supervisor: [`Upgrader::handle_supervisor_event`]
//!   (a role change, or a loss the upgrade did not cause itself); an
//!   instance process that ended before the supervisor knew it (no
//!   [`Event::Lost`] will come): [`Upgrader::handle_lost`];
//! - periodically (the proofs that an instance is not hung come with its
//!   output and heartbeats, not at a time known in advance), and at least at
//!   [`Upgrader::poll_timeout`]: [`Upgrader::handle_tick`];
//! - after any of those: [`Upgrader::apply`] until it returns `None` (it
//!   applies each action to the supervisor and says what is left for the
//!   processes), and drain the supervisor's events into the first point
//!   again; then [`Upgrader::poll_event`] (logs, the outcome).
//!
//! The runtime's agent and the seeded simulation drive it the same way,
//! through these calls: what the simulation checks is what runs.

use super::downstream::Divergence;
use super::event::Event;
use super::msg::{Color, Nanos, Role};
use super::rejoin::Supervisor;
use crate::record::Seq;
use core::fmt;
use std::collections::VecDeque;

mod reason;
#[cfg(test)]
mod tests;

pub use reason::{
    Deadline, Lateness, Mismatch, RollbackError, RollbackReason, StartError, Warning,
};

/// Where an upgrade is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    /// The new version restores and catches up.
    Transfer,
    /// The new version runs as a shadow, compared with the old.
    Shadow,
    /// The new version serves; the old one is its shadow.
    Promoted,
    /// The old colour is being replaced by a second copy of the new version.
    Replacing,
}

impl Phase {
    /// Every phase, in order.
    pub const ALL: [Phase; 4] = [
        Phase::Transfer,
        Phase::Shadow,
        Phase::Promoted,
        Phase::Replacing,
    ];

    /// The name in status and logs.
    pub const fn name(self) -> &'static str {
        match self {
            Phase::Transfer => "transfer",
            Phase::Shadow => "shadow",
            Phase::Promoted => "promoted",
            Phase::Replacing => "replacing",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How long a supervision period (shadow, then promoted) lasts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Period {
    /// This much time.
    Time(Nanos),
    /// Until this many output records were compared.
    Records(u64),
}

/// What an upgrade must meet to go on.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Policy {
    /// Each supervision period.
    pub period: Period,
    /// How long a phase may last beyond its supervision period (see
    /// [`Policy::allowed`]).
    pub phase_timeout: Nanos,
    /// Mismatch rate allowed above the noise floor (0: none).
    pub max_mismatch: f64,
}

impl Policy {
    /// How long `phase` may last: transfer and replacing `phase_timeout`;
    /// shadow and promoted their supervision period and then `phase_timeout`
    /// more (a period counted in records: `phase_timeout` in all).
    pub fn allowed(&self, phase: Phase) -> Nanos {
        match (phase, self.period) {
            (Phase::Shadow | Phase::Promoted, Period::Time(period)) => {
                period.add(self.phase_timeout)
            }
            _ => self.phase_timeout,
        }
    }
}

/// Times from the start of an upgrade.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timings {
    /// To the new version running as a shadow.
    pub to_shadow: Option<Nanos>,
    /// To its promotion.
    pub to_promoted: Option<Nanos>,
    /// To both instances serving on it.
    pub done: Option<Nanos>,
}

/// How an upgrade ended.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Outcome {
    /// The new release is the current one.
    Promoted {
        /// How long it took.
        timings: Timings,
        /// Set when it ended with one instance serving.
        warning: Option<Warning>,
    },
    /// The old release serves on; the new colour restarts on it.
    RolledBack {
        /// The phase it was in.
        phase: Phase,
        /// Why.
        reason: RollbackReason,
    },
}

/// What the upgrade asks of the supervisor and the processes; drivers see
/// it carried out by [`Upgrader::apply`], as an [`Applied`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    /// Forget the divergences kept so far
    /// ([`Supervisor::clear_divergences`]): keep this comparison's first ones.
    ClearDivergences,
    /// Make `color` serve and the other, if live, shadow it
    /// ([`Supervisor::promote`]).
    Promote(Color),
    /// Stop `color`'s instance and start it again on what
    /// [`Upgrader::release`] says it runs (that changed with this action).
    /// The loss this causes is expected: [`Upgrader::apply`] drops the
    /// instance, and [`Upgrader::handle_supervisor_event`] knows it.
    Restart(Color),
}

/// What [`Upgrader::apply`] did to the supervisor, and what is left for the
/// driver to do to the processes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// The divergences kept so far were forgotten: this comparison keeps
    /// its first ones.
    ClearedDivergences,
    /// `color` serves now, and the other, if live, shadows it.
    Promoted(Color),
    /// `color` was connected and is dropped, to be restarted on what
    /// [`Upgrader::release`] says it runs now: the supervisor reports it
    /// lost ([`Event::Lost`], which [`Upgrader::handle_supervisor_event`]
    /// knows for a restart); stop its process and start the new one then.
    Dropped(Color),
    /// `color` was not connected: stop whatever process runs as it (its
    /// hello, if one is on its way, must not count) and start one on what
    /// [`Upgrader::release`] says.
    Stop(Color),
}

/// What happened, for logs and status.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum UpgradeEvent {
    /// A phase began: the one before it ended within policy.
    Entered(Phase),
    /// The old instance was lost in shadow or promoted: the new version
    /// serves alone, and the old colour comes back as a second copy of it
    /// (phase replacing).
    OldLost(Color),
    /// The upgrade ended.
    Ended(Outcome),
}

/// The colour restarted on the new release first (and on the old one again
/// by a rollback); the other keeps the old release, serving, until the new
/// one is promoted.
///
/// Always green: an upgrade starts only when both instances serve the
/// current release, so either could go first and nothing but the names
/// depends on which. Fixing it means every upgrade and rollback restarts
/// the same colour, the one the docs, logs and status (`new_color`) name.
pub const NEW_COLOR: Color = Color::Green;

/// The colour that keeps the old version while the new one is tried.
const OLD_COLOR: Color = NEW_COLOR.other();

/// The figures of a running upgrade, for status.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct UpgradeStatus {
    /// Where it is.
    pub phase: Phase,
    /// Its policy.
    pub policy: Policy,
    /// The mismatch rate between the two old instances before it.
    pub noise_floor: f64,
    /// Records compared in the current period.
    pub compared: u64,
    /// Of those, how many differed.
    pub mismatched: u64,
    /// Mismatched over compared (0 when nothing was compared).
    pub mismatch_rate: f64,
    /// How long the current phase has lasted.
    pub phase_elapsed: Nanos,
    /// Times so far.
    pub timings: Timings,
}

#[derive(Clone, Debug)]
struct Run<R> {
    phase: Phase,
    since: Nanos,
    started: Nanos,
    new: R,
    policy: Policy,
    noise_floor: f64,
    /// Downstream (compared, diverged) when the current period began, and now.
    baseline: (u64, u64),
    current: (u64, u64),
    /// The ingress head when the period was over: it ends once the new
    /// instance has processed that far, proof that it is not hung.
    fence: Option<Seq>,
    /// The same for the old instance, before a rollback restarts the new one.
    old_fence: Option<Seq>,
    timings: Timings,
}

impl<R> Run<R> {
    fn window(&self) -> (u64, u64) {
        (
            self.current.0.saturating_sub(self.baseline.0),
            self.current.1.saturating_sub(self.baseline.1),
        )
    }

    fn enter(&mut self, now: Nanos, phase: Phase) {
        self.phase = phase;
        self.since = now;
        self.baseline = self.current;
        self.fence = None;
        self.old_fence = None;
    }

    fn overdue(&self, now: Nanos) -> Option<Deadline> {
        let allowed = self.policy.allowed(self.phase);
        (elapsed(now, self.since) > allowed).then_some(Deadline {
            phase: self.phase,
            allowed,
        })
    }

    /// True when the mismatches of this period are past policy; a period
    /// with no mismatch allowed fails at the first one.
    fn past_policy(&self) -> bool {
        let (compared, mismatched) = self.window();
        mismatched > 0 && rate(compared, mismatched) > self.policy.max_mismatch + self.noise_floor
    }

    fn period_over(&self, now: Nanos) -> bool {
        match self.policy.period {
            Period::Records(records) => self.window().0 >= records,
            Period::Time(period) => elapsed(now, self.since) >= period,
        }
    }
}

/// What a tick reads of the supervisor.
#[derive(Clone, Copy, Debug, Default)]
struct Seen {
    compared: u64,
    diverged: u64,
    first: Option<Divergence>,
    /// The new colour's role (`None`: not connected).
    new_role: Option<Role>,
    new_live: bool,
    /// Input the new colour processed, as its output and heartbeats said.
    new_processed: Seq,
    /// The same of the old colour.
    old_processed: Seq,
    /// Input ingested.
    head: Seq,
}

impl Seen {
    fn of(sup: &Supervisor) -> Seen {
        let stats = sup.downstream().stats();
        Seen {
            compared: stats.compared,
            diverged: stats.diverged,
            first: sup.downstream().divergences().first().copied(),
            new_role: sup.role(NEW_COLOR),
            new_live: sup.is_live(NEW_COLOR),
            new_processed: sup.processed(NEW_COLOR),
            old_processed: sup.processed(OLD_COLOR),
            head: sup.upstream().head(),
        }
    }
}

/// The upgrades of one unit: what each colour runs, the running upgrade if
/// any, and the last outcome (see the module docs for how to drive it).
#[derive(Clone, Debug)]
pub struct Upgrader<R> {
    current: R,
    run: Option<Run<R>>,
    last: Option<Outcome>,
    actions: VecDeque<Action>,
    events: VecDeque<UpgradeEvent>,
    /// Colours [`Upgrader::apply`] dropped: their next loss is a restart.
    dropped: [bool; 2],
}

impl<R> Upgrader<R> {
    /// Both colours run `current`; no upgrade.
    pub fn new(current: R) -> Upgrader<R> {
        Upgrader {
            current,
            run: None,
            last: None,
            actions: VecDeque::new(),
            events: VecDeque::new(),
            dropped: [false; 2],
        }
    }

    /// The release outside an upgrade (the old one during one).
    pub fn current(&self) -> &R {
        &self.current
    }

    /// The release being upgraded to, while an upgrade runs.
    pub fn upgrading_to(&self) -> Option<&R> {
        self.run.as_ref().map(|run| &run.new)
    }

    /// What `color` runs, or is to be started on: during an upgrade the
    /// new colour runs the new release, and the old colour too once it is
    /// being replaced.
    pub fn release(&self, color: Color) -> &R {
        match &self.run {
            Some(run) if color == NEW_COLOR || run.phase == Phase::Replacing => &run.new,
            _ => &self.current,
        }
    }

    /// The running upgrade's phase.
    pub fn phase(&self) -> Option<Phase> {
        self.run.as_ref().map(|run| run.phase)
    }

    /// How the last upgrade ended.
    pub fn last(&self) -> Option<&Outcome> {
        self.last.as_ref()
    }

    /// The running upgrade's figures as of `now`.
    pub fn status(&self, now: Nanos) -> Option<UpgradeStatus> {
        let run = self.run.as_ref()?;
        let (compared, mismatched) = run.window();
        Some(UpgradeStatus {
            phase: run.phase,
            policy: run.policy,
            noise_floor: run.noise_floor,
            compared,
            mismatched,
            mismatch_rate: rate(compared, mismatched),
            phase_elapsed: elapsed(now, run.since),
            timings: run.timings,
        })
    }

    /// Starts an upgrade to `new`: [`NEW_COLOR`] restarts on it from the
    /// other's state. Both instances must be serving.
    pub fn start(
        &mut self,
        now: Nanos,
        new: R,
        policy: Policy,
        sup: &Supervisor,
    ) -> Result<(), StartError> {
        let stats = sup.downstream().stats();
        self.begin(
            now,
            new,
            policy,
            redundant(sup),
            (stats.compared, stats.diverged),
        )
    }

    /// Why [`Upgrader::start`] would refuse now, if it would.
    pub fn check_start(&self, sup: &Supervisor) -> Result<(), StartError> {
        self.refusal(redundant(sup))
    }

    /// Why an upgrade cannot start, given whether both instances serve.
    fn refusal(&self, redundant: bool) -> Result<(), StartError> {
        match &self.run {
            Some(run) => Err(StartError::Running { phase: run.phase }),
            None if !redundant => Err(StartError::NotRedundant),
            None => Ok(()),
        }
    }

    fn begin(
        &mut self,
        now: Nanos,
        new: R,
        policy: Policy,
        redundant: bool,
        (compared, diverged): (u64, u64),
    ) -> Result<(), StartError> {
        self.refusal(redundant)?;
        self.run = Some(Run {
            phase: Phase::Transfer,
            since: now,
            started: now,
            new,
            policy,
            noise_floor: rate(compared, diverged),
            baseline: (compared, diverged),
            current: (compared, diverged),
            fence: None,
            old_fence: None,
            timings: Timings::default(),
        });
        self.actions.push_back(Action::ClearDivergences);
        self.actions.push_back(Action::Restart(NEW_COLOR));
        Ok(())
    }

    /// `tandem rollback`: possible until the old colour is being replaced.
    /// [`NEW_COLOR`] restarts on the old release.
    pub fn handle_rollback(&mut self) -> Result<(), RollbackError> {
        match &self.run {
            None => Err(RollbackError::NotRunning),
            Some(run) if run.phase == Phase::Replacing => Err(RollbackError::TooLate),
            Some(_) => {
                self.roll_back(RollbackReason::Asked);
                Ok(())
            }
        }
    }

    /// The supervisor changed `color`'s role.
    pub(crate) fn handle_role(&mut self, now: Nanos, color: Color, role: Role) {
        let Some(run) = self.run.as_mut() else {
            return;
        };
        match (run.phase, role) {
            (Phase::Transfer, Role::Shadow) if color == NEW_COLOR => {
                run.timings.to_shadow = Some(elapsed(now, run.started));
                run.enter(now, Phase::Shadow);
                self.events.push_back(UpgradeEvent::Entered(Phase::Shadow));
            }
            (Phase::Replacing, Role::Serving) if color == OLD_COLOR => {
                run.timings.done = Some(elapsed(now, run.started));
                let timings = run.timings;
                self.end_promoted(timings, None);
            }
            _ => {}
        }
    }

    /// An instance was lost that the driver did not stop itself.
    pub fn handle_lost(&mut self, now: Nanos, color: Color) {
        let Some(run) = self.run.as_mut() else {
            return;
        };
        match run.phase {
            Phase::Replacing => {}
            _ if color == NEW_COLOR => self.roll_back(RollbackReason::NewLost),
            Phase::Transfer => self.roll_back(RollbackReason::OldLostInTransfer),
            Phase::Shadow | Phase::Promoted => {
                // The new one is all there is: it serves, and the old colour
                // comes back (the driver restarts it) as a second copy.
                run.enter(now, Phase::Replacing);
                self.events.push_back(UpgradeEvent::OldLost(color));
            }
        }
    }

    /// Reads the comparison figures and roles of `sup`: rolls back past
    /// policy or a deadline, and moves on when a period is over.
    pub fn handle_tick(&mut self, now: Nanos, sup: &Supervisor) {
        if self.run.is_some() {
            self.tick(now, Seen::of(sup));
        }
    }

    fn tick(&mut self, now: Nanos, seen: Seen) {
        let Some(run) = self.run.as_mut() else {
            return;
        };
        run.current = (seen.compared, seen.diverged);
        let overdue = run.overdue(now);
        let past_policy = matches!(run.phase, Phase::Shadow | Phase::Promoted) && run.past_policy();
        // A rollback restarts the new instance: not before the old one has
        // shown it is not hung (it processed the input of the moment the
        // rollback was due), or the state would be left to a hung one. One
        // that is hung is found lost at its heartbeat deadline, and the new
        // one serves instead.
        if past_policy || overdue.is_some_and(|d| d.phase != Phase::Replacing) {
            let fence = *run.old_fence.get_or_insert(seen.head);
            if seen.old_processed < fence {
                return;
            }
        }
        if let Some(deadline) = overdue {
            self.overdue(deadline, seen.new_role);
            return;
        }
        if past_policy {
            let (compared, mismatched) = run.window();
            let mismatch = Mismatch {
                compared,
                mismatched,
                max_mismatch: run.policy.max_mismatch,
                noise_floor: run.noise_floor,
                first: seen.first,
            };
            self.roll_back(RollbackReason::Mismatch(mismatch));
            return;
        }
        if !run.period_over(now) {
            return;
        }
        // A hung instance is live until its heartbeat deadline: the period
        // ends once the new one has processed the input of its end. Replacing
        // the old instance by then would leave the state to a hung one.
        let fence = *run.fence.get_or_insert(seen.head);
        if !seen.new_live || seen.new_processed < fence {
            return;
        }
        match run.phase {
            Phase::Shadow => {
                run.timings.to_promoted = Some(elapsed(now, run.started));
                run.enter(now, Phase::Promoted);
                self.actions.push_back(Action::Promote(NEW_COLOR));
                self.events
                    .push_back(UpgradeEvent::Entered(Phase::Promoted));
            }
            Phase::Promoted => {
                run.enter(now, Phase::Replacing);
                self.actions.push_back(Action::Restart(OLD_COLOR));
                self.events
                    .push_back(UpgradeEvent::Entered(Phase::Replacing));
            }
            _ => {}
        }
    }

    /// A phase outlived its deadline. Until the old version is replaced it
    /// still runs with current state, so the upgrade rolls back; once it is
    /// being replaced there is no old state to go back to, so the new
    /// version stays and the second copy keeps being restarted.
    fn overdue(&mut self, deadline: Deadline, new_role: Option<Role>) {
        let Some(run) = &self.run else {
            return;
        };
        let why = match (deadline.phase, new_role, run.policy.period) {
            (Phase::Transfer, None, _) => Some(Lateness::NeverConnected),
            (Phase::Transfer, Some(_), _) => Some(Lateness::NotCaughtUp),
            (Phase::Shadow | Phase::Promoted, _, Period::Records(_)) => {
                Some(Lateness::TooFewRecords)
            }
            _ => None,
        };
        if deadline.phase != Phase::Replacing {
            self.roll_back(RollbackReason::Overdue { deadline, why });
            return;
        }
        let warning = Warning::NotServingYet {
            deadline,
            color: OLD_COLOR,
        };
        let timings = run.timings;
        self.end_promoted(timings, Some(warning));
    }

    fn roll_back(&mut self, reason: RollbackReason) {
        let Some(run) = self.run.take() else {
            return;
        };
        self.actions.push_back(Action::Promote(OLD_COLOR));
        self.actions.push_back(Action::Restart(NEW_COLOR));
        self.end(Outcome::RolledBack {
            phase: run.phase,
            reason,
        });
    }

    fn end_promoted(&mut self, timings: Timings, warning: Option<Warning>) {
        if let Some(run) = self.run.take() {
            self.current = run.new;
            self.end(Outcome::Promoted { timings, warning });
        }
    }

    fn end(&mut self, outcome: Outcome) {
        self.last = Some(outcome);
        self.events.push_back(UpgradeEvent::Ended(outcome));
    }

    /// When to call [`Upgrader::handle_tick`] next: the end of a period
    /// counted in time, or just past the phase's deadline.
    pub fn poll_timeout(&self) -> Option<Nanos> {
        let run = self.run.as_ref()?;
        let deadline = run.since.add(run.policy.allowed(run.phase)).add(Nanos(1));
        let period_end = match (run.phase, run.policy.period) {
            (Phase::Shadow | Phase::Promoted, Period::Time(period)) => Some(run.since.add(period)),
            _ => None,
        };
        Some(period_end.map_or(deadline, |end| end.min(deadline)))
    }

    /// The next action, not applied: the unit tests read what the machine
    /// asks without a supervisor (drivers use [`Upgrader::apply`]).
    #[cfg(test)]
    pub(crate) fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Takes one event of the supervisor: a role change, or a loss. For
    /// [`Event::Lost`], whether the upgrade caused it ([`Applied::Dropped`]:
    /// a restart onto another release, not a failure); a loss it did not
    /// cause is one the upgrade reacts to ([`Upgrader::handle_lost`]).
    pub fn handle_supervisor_event(&mut self, now: Nanos, event: &Event) -> Option<bool> {
        match *event {
            Event::Lost { color, .. } => {
                let caused = std::mem::take(&mut self.dropped[color.index()]);
                if !caused {
                    self.handle_lost(now, color);
                }
                Some(caused)
            }
            Event::RoleChanged { color, role } => {
                self.handle_role(now, color, role);
                None
            }
            _ => None,
        }
    }

    /// Applies the next action to `sup`, and says what is left to do to
    /// the processes; `None` when there is nothing more to do.
    pub fn apply(&mut self, sup: &mut Supervisor) -> Option<Applied> {
        Some(match self.actions.pop_front()? {
            Action::ClearDivergences => {
                sup.clear_divergences();
                Applied::ClearedDivergences
            }
            Action::Promote(color) => {
                sup.promote(color);
                Applied::Promoted(color)
            }
            Action::Restart(color) if sup.role(color).is_some() => {
                self.dropped[color.index()] = true;
                sup.handle_disconnected(color);
                Applied::Dropped(color)
            }
            Action::Restart(color) => Applied::Stop(color),
        })
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<UpgradeEvent> {
        self.events.pop_front()
    }
}

/// Both instances serve (neither restores, catches up or shadows).
fn redundant(sup: &Supervisor) -> bool {
    Color::BOTH
        .into_iter()
        .all(|c| sup.is_live(c) && sup.role(c) == Some(Role::Serving))
}

fn elapsed(now: Nanos, since: Nanos) -> Nanos {
    Nanos(now.0.saturating_sub(since.0))
}

fn rate(compared: u64, mismatched: u64) -> f64 {
    if compared == 0 {
        0.0
    } else {
        mismatched as f64 / compared as f64
    }
}
