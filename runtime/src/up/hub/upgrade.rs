//! Live upgrades as the agent drives them, and the other requests of the
//! control socket.
//!
//! The upgrade itself (transfer, shadow, promoted, replacing; when it rolls
//! back, when a phase is late) is the core's pure state machine,
//! [`Upgrader`] (`tandem_core::ha::upgrade`, docs/ha.md "Live upgrades").
//! This module is its driver: it checks a request before anything runs
//! (the graph's name and version, what the new graph would change, a
//! bundle's install), maps the upgrader's releases to graph files and
//! executables ([`Release`]), feeds it the supervisor's role changes and
//! losses and a tick with the hub's clock ([`Hub::now`]), and turns its
//! actions into promotions and process restarts and its events into logs,
//! status and the bundle history.

use std::time::Duration;

use serde_json::{json, Value};
use tandem_core::ha::upgrade::{
    Applied, Outcome, Period, Phase, Policy, RollbackError, UpgradeEvent, Upgrader, NEW_COLOR,
};
use tandem_core::ha::{Color, Nanos};
use tandem_core::split::Split;

use super::Hub;
use crate::bundle::install::Running;
use crate::bundle::Prepared;
use crate::checkpoint::GraphStamp;
use crate::up::control::{
    InstallRefusal, InstallRequest, Refusal, Refused, Request, UpgradeError, UpgradeRequest,
};
use crate::up::processes::Release;

/// How long an upgrade phase may last by default (beyond its supervision
/// period); `tandem upgrade --phase-timeout` sets another.
pub const DEFAULT_PHASE_TIMEOUT: Duration = Duration::from_secs(60);

/// What each colour runs, the upgrade in progress and the last outcome.
pub type Upgrades = Upgrader<Release>;

/// Why an upgrade to `new` cannot start: it must change vertices only, keep
/// every channel, and lose no state.
pub fn refuse(old: &Split, new: &Split) -> Option<Refusal> {
    let names = |split: &Split, channels: &[tandem_core::ChannelId]| -> Vec<String> {
        channels
            .iter()
            .map(|&c| split.instance.channels.name(c).to_owned())
            .collect()
    };
    if names(old, &old.inputs) != names(new, &new.inputs) {
        return Some(Refusal::OtherInputs);
    }
    let produced = names(new, &new.outputs);
    let missing: Vec<String> = names(old, &old.outputs)
        .into_iter()
        .filter(|n| !produced.contains(n))
        .collect();
    if !missing.is_empty() {
        return Some(Refusal::MissingOutputs(missing));
    }
    let same_edges = |a: &tandem_core::Plan, b: &tandem_core::Plan| {
        GraphStamp::of_plan("", a).hash == GraphStamp::of_plan("", b).hash
    };
    if !same_edges(&old.ingress, &new.ingress) || !same_edges(&old.egress, &new.egress) {
        return Some(Refusal::OtherEnds);
    }
    let refusals = tandem_core::diff::diff(&old.instance, &new.instance).refusals(false);
    if !refusals.is_empty() {
        return Some(Refusal::LosesState(
            refusals.iter().map(ToString::to_string).collect(),
        ));
    }
    None
}

/// Milliseconds, for status.
fn ms(n: Nanos) -> f64 {
    n.0 as f64 / 1e6
}

/// Requests from the control socket, and the upgrade they drive.
impl Hub {
    /// Answers a request of the control socket: the answer is text there.
    pub(super) fn request(&mut self, request: Request) -> Result<String, Refused> {
        match request {
            Request::Status => Ok(self.status().json()),
            Request::Upgrade(upgrade) => Ok(self.start_upgrade(*upgrade)?),
            Request::Rollback => Ok(self.rollback()?),
            Request::Toggle { name, on } => {
                let said = self.toggles.switch(&name, on)?;
                self.log(&said);
                Ok(format!(
                    "{said}: both instances switch at the same origin sequence number"
                ))
            }
            Request::Gateway(answer) => {
                let _ = answer.send(self.bundles.gateway.clone());
                Ok(String::new())
            }
            Request::Install(install) => Ok(self.install(*install)?),
        }
    }

    /// Takes a bundle the control socket checked and unpacked: starts its
    /// live upgrade (or records a revocation, or the refusal).
    fn install(&mut self, request: InstallRequest) -> Result<String, InstallRefusal> {
        let InstallRequest {
            file,
            prepared,
            what,
        } = request;
        let refuse = |hub: &mut Hub, refusal: InstallRefusal| {
            let reason = refusal.to_string();
            hub.warn(&format!("install of {what} refused: {reason}"));
            hub.bundles.refused(&what, &reason);
            Err(refusal)
        };
        let mut unpacked = match prepared {
            Err(error) => return refuse(self, error.into()),
            Ok(Prepared::Revocation { revocation, .. }) => {
                let answer = self.bundles.revoke(revocation);
                if let Ok(text) = &answer {
                    self.log(text);
                }
                return answer.map_err(InstallRefusal::Revocation);
            }
            Ok(Prepared::Bundle(unpacked)) => unpacked,
        };
        if let Some(reason) = self.bundles.recheck(&unpacked.manifest) {
            let reason = Box::new(reason);
            return refuse(self, InstallRefusal::Policy { file, reason });
        }
        if let Err(error) = self.upgrades.check_start(&self.sup) {
            return refuse(self, InstallRefusal::Start { file, error });
        }
        let in_use = |r: &Release| r.file.starts_with(unpacked.dir());
        if Color::BOTH
            .into_iter()
            .any(|c| in_use(self.upgrades.release(c)))
            || in_use(self.upgrades.current())
        {
            let id = unpacked.manifest.id();
            return refuse(self, InstallRefusal::InUse { file, id });
        }
        if let Err(error) = unpacked.commit() {
            let dir = unpacked.dir().to_path_buf();
            return refuse(self, InstallRefusal::Unpack { dir, error });
        }
        let request = UpgradeRequest {
            file: unpacked.graph_file(),
            loaded: unpacked.loaded.clone(),
            split: unpacked.split.clone(),
            program: unpacked.binary(),
            supervise: None,
            records: None,
            phase_timeout: None,
        };
        match self.start_upgrade(request) {
            Ok(started) => {
                self.bundles.began(Running {
                    name: unpacked.manifest.name.to_string(),
                    version: unpacked.manifest.version.clone(),
                    dir: unpacked.dir().to_path_buf(),
                });
                let signers: Vec<String> =
                    unpacked.signers.iter().map(ToString::to_string).collect();
                self.log(&format!(
                    "installing {} from {} (signed by {})",
                    unpacked.manifest.id(),
                    file.display(),
                    signers.join(", ")
                ));
                Ok(format!("{} accepted; {started}", unpacked.manifest.id()))
            }
            Err(error) => {
                unpacked.discard();
                refuse(self, InstallRefusal::Upgrade { file, error })
            }
        }
    }

    /// Starts an upgrade whose files the control socket read and checked.
    pub(super) fn start_upgrade(
        &mut self,
        request: UpgradeRequest,
    ) -> Result<String, UpgradeError> {
        let UpgradeRequest {
            file,
            loaded,
            split,
            program,
            supervise,
            records,
            phase_timeout,
        } = request;
        self.upgrades.check_start(&self.sup)?;
        if loaded.name != self.name {
            return Err(UpgradeError::OtherGraph {
                file,
                found: loaded.name,
                running: self.name.clone(),
            });
        }
        let current = self.upgrades.current();
        let version =
            crate::up::instance::version_of(&GraphStamp::of_plan(&loaded.name, &loaded.plan));
        if version == current.version {
            return Err(UpgradeError::SameVersion { file });
        }
        if let Some(refusal) = refuse(&current.split, &split) {
            return Err(UpgradeError::Refused { file, refusal });
        }
        let policy = Policy {
            period: match records {
                Some(records) => Period::Records(records),
                None => Period::Time(Nanos::from_duration(
                    supervise.unwrap_or(loaded.ha.supervise),
                )),
            },
            phase_timeout: Nanos::from_duration(phase_timeout.unwrap_or(DEFAULT_PHASE_TIMEOUT)),
            max_mismatch: loaded.ha.max_mismatch,
        };
        let shown = file.display().to_string();
        let new = Release {
            program: program.unwrap_or_else(|| current.program.clone()),
            file,
            version,
            split,
        };
        let now = self.now();
        self.upgrades.start(now, new, policy, &self.sup)?;
        self.drive_upgrade();
        Ok(format!(
            "upgrading to {shown} ({version:08x}): {NEW_COLOR} restarts on it from {}'s state and runs as a shadow; `tandem status` shows the phase",
            NEW_COLOR.other()
        ))
    }

    /// `tandem rollback`.
    fn rollback(&mut self) -> Result<String, RollbackError> {
        self.upgrades.handle_rollback()?;
        self.drive_upgrade();
        Ok(format!(
            "rolled back: {} serves the old version, {NEW_COLOR} restarts on it",
            NEW_COLOR.other()
        ))
    }

    /// The upgrade's policy and deadlines, checked now.
    pub(super) fn upgrade_tick(&mut self) {
        let now = self.now();
        self.upgrades.handle_tick(now, &self.sup);
        self.drive_upgrade();
    }

    /// `color`'s process ended before its hello: the supervisor never knew
    /// it, and no `Event::Lost` will come.
    pub(super) fn upgrade_lost(&mut self, color: Color) {
        let now = self.now();
        self.upgrades.handle_lost(now, color);
        self.drive_upgrade();
    }

    /// Does what the upgrader asks (to the supervisor through
    /// `Upgrader::apply`, as the simulation drives it; to the processes
    /// here), and says what happened.
    pub(super) fn drive_upgrade(&mut self) {
        while let Some(applied) = self.upgrades.apply(&mut self.sup) {
            match applied {
                // This comparison's first differences are logged anew.
                Applied::ClearedDivergences => self.divergences_cleared(),
                // Its `Lost` follows, known for a restart: stopped then.
                Applied::Promoted(_) | Applied::Dropped(_) => {}
                Applied::Stop(color) => self.processes.stop(color, true),
            }
        }
        while let Some(event) = self.upgrades.poll_event() {
            match event {
                UpgradeEvent::Entered(Phase::Promoted) => self.log(&format!(
                    "upgrade: {NEW_COLOR} promoted; the old version shadows it"
                )),
                UpgradeEvent::Entered(Phase::Replacing) => self.log(
                    "upgrade: replacing the old instance with a second copy of the new version",
                ),
                UpgradeEvent::Entered(phase) => self.log(&format!("upgrade: phase {phase}")),
                UpgradeEvent::OldLost(_) => self.log(
                    "upgrade: the old instance was lost; the new version serves and is copied",
                ),
                UpgradeEvent::Ended(Outcome::RolledBack { phase, reason }) => {
                    let reason = reason.to_string();
                    self.warn(&format!("upgrade rolled back in phase {phase}: {reason}"));
                    self.bundles.rolled_back(&reason);
                }
                UpgradeEvent::Ended(Outcome::Promoted { warning, .. }) => {
                    match warning {
                        Some(warning) => {
                            self.warn(&format!(
                                "upgrade done with one instance serving: {warning}"
                            ));
                        }
                        None => self.log(&format!(
                            "upgrade done: both instances run {}",
                            self.upgrades.current().file.display()
                        )),
                    }
                    // The old version is replaced: a bundle's version becomes the floor.
                    if let Some(what) = self.bundles.promoted() {
                        self.log(&format!(
                            "bundle {what} installed; the anti-rollback floor is raised to it"
                        ));
                    }
                }
            }
        }
        // While an upgrade runs, a hung instance is found at the timeout
        // however idle the unit is (see `Supervisor::set_vigilant`).
        let now = self.now();
        self.sup.set_vigilant(now, self.upgrades.phase().is_some());
    }

    /// The `upgrade` object of the status JSON: the running upgrade's
    /// figures, or `{"phase": "idle"}` with the last outcome.
    pub(super) fn upgrade_json(&self) -> Value {
        let (Some(status), Some(new)) = (
            self.upgrades.status(self.now()),
            self.upgrades.upgrading_to(),
        ) else {
            return json!({ "phase": "idle", "last": self.last_upgrade_json() });
        };
        let old = self.upgrades.current();
        let first: Vec<String> = self
            .sup
            .downstream()
            .divergences()
            .iter()
            .take(5)
            .map(ToString::to_string)
            .collect();
        let (supervise_ms, supervise_records) = match status.policy.period {
            Period::Time(period) => (Some(ms(period).round() as u64), None),
            Period::Records(records) => (None, Some(records)),
        };
        json!({
            "phase": status.phase.name(),
            "from": format!("{:08x}", old.version),
            "to": format!("{:08x}", new.version),
            "from_graph": old.file.display().to_string(),
            "to_graph": new.file.display().to_string(),
            "new_color": NEW_COLOR.name(),
            "compared": status.compared,
            "mismatched": status.mismatched,
            "mismatch_rate": status.mismatch_rate,
            "noise_floor": status.noise_floor,
            "max_mismatch": status.policy.max_mismatch,
            "supervise_ms": supervise_ms,
            "supervise_records": supervise_records,
            "phase_timeout_ms": ms(status.policy.phase_timeout).round() as u64,
            "phase_elapsed_ms": ms(status.phase_elapsed) as u64,
            "to_shadow_ms": status.timings.to_shadow.map(ms),
            "to_promoted_ms": status.timings.to_promoted.map(ms),
            "first_differences": first,
        })
    }

    /// How the last upgrade ended, for status.
    fn last_upgrade_json(&self) -> Value {
        match self.upgrades.last() {
            None => Value::Null,
            Some(Outcome::RolledBack { phase, reason }) => json!({
                "result": "rolled back",
                "phase": phase.name(),
                "reason": reason.to_string(),
            }),
            Some(Outcome::Promoted { timings, warning }) => {
                let done = self.upgrades.current();
                let mut last = json!({
                    "result": "promoted",
                    "to": format!("{:08x}", done.version),
                    "to_graph": done.file.display().to_string(),
                    "to_shadow_ms": timings.to_shadow.map(ms),
                    "to_promoted_ms": timings.to_promoted.map(ms),
                });
                if let Some(done) = timings.done {
                    last["done_ms"] = json!(ms(done));
                }
                if let Some(warning) = warning {
                    last["warning"] = json!(warning.to_string());
                }
                last
            }
        }
    }
}
