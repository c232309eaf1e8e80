//! A live upgrade of the vertices, as the agent runs it (ARCHITECTURE,
//! "Rejoin and upgrade without losing state"):
//!
//! 1. **transfer**: the new colour's instance is restarted on the new graph;
//!    it restores a barrier snapshot of the serving (old) one, migrating state
//!    whose schema changed, and replays to the live edge.
//! 2. **shadow**: it runs beside the old version; the downstream junction
//!    compares their outputs. After the supervision period, with the mismatch
//!    rate within policy (the new graph's `[ha] max_mismatch` above the noise
//!    floor measured between the two old instances before the upgrade), it
//!    is promoted: new serving, old shadow.
//! 3. **promoted**: after a second period within policy, the old instance is
//!    restarted on the new graph too, restoring the new version's state.
//! 4. **replacing**: when that second copy serves, the upgrade is done.
//!
//! A rollback (asked for, divergence past policy, or the new instance lost
//! in phases 1 to 3) makes the old instance serve again and restarts the new
//! colour on the old graph; the old one never stopped, so its state is current.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tandem_core::ha::{Color, Role};
use tandem_core::split::Split;
use tandem_nodes::io::toggles::Switches;

use super::control::{InstallRequest, Request, UpgradeRequest};
use super::hub::Hub;
use crate::bundle::install::Running;
use crate::bundle::Prepared;
use crate::checkpoint::GraphStamp;

/// How long an upgrade phase may last by default (beyond its supervision
/// period); `tandem upgrade --phase-timeout` sets another.
pub const DEFAULT_PHASE_TIMEOUT: Duration = Duration::from_secs(60);

/// Where an upgrade is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// The new version restores and catches up.
    Transfer,
    /// The new version runs as a shadow, compared with the old.
    Shadow,
    /// The new version serves; the old one is its shadow.
    Promoted,
    /// The old instance is being replaced by a second copy of the new version.
    Replacing,
}

impl Phase {
    /// The name in status.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Transfer => "transfer",
            Phase::Shadow => "shadow",
            Phase::Promoted => "promoted",
            Phase::Replacing => "replacing",
        }
    }
}

/// The graph and executable an instance runs.
#[derive(Clone, Debug)]
pub struct Release {
    /// The graph file.
    pub file: PathBuf,
    /// The tandem executable.
    pub program: PathBuf,
    /// Its version (see `instance::version_of`).
    pub version: u32,
    /// The graph cut for 1+1.
    pub split: Split,
}

/// A running upgrade.
#[derive(Debug)]
pub struct Upgrade {
    /// Where it is.
    pub phase: Phase,
    /// Since when.
    pub since: Instant,
    /// When the command came.
    pub started: Instant,
    /// The colour that runs the new version first.
    pub new_color: Color,
    /// What ran before.
    pub old: Release,
    /// What runs after.
    pub new: Release,
    /// How long each supervision period lasts (wall time)...
    pub supervise: Duration,
    /// ... or, when set, how many output records it compares.
    pub supervise_records: Option<u64>,
    /// How long a phase may last beyond its supervision period before the
    /// upgrade rolls back (see [`Upgrade::overdue`]).
    pub phase_timeout: Duration,
    /// Mismatch rate allowed above the noise floor.
    pub max_mismatch: f64,
    /// Mismatch rate between the two old instances before the upgrade.
    pub noise_floor: f64,
    /// Downstream (compared, diverged) when the current period began.
    pub baseline: (u64, u64),
    /// Downstream (compared, diverged) now.
    pub current: (u64, u64),
    /// Milliseconds from the command to the shadow running, and to promotion.
    pub to_shadow_ms: Option<f64>,
    /// Milliseconds from the command to promotion.
    pub to_promoted_ms: Option<f64>,
}

impl Upgrade {
    /// Records compared and mismatched in the current period.
    pub fn window(&self) -> (u64, u64) {
        (
            self.current.0.saturating_sub(self.baseline.0),
            self.current.1.saturating_sub(self.baseline.1),
        )
    }

    /// Mismatched over compared in the current period (0 when nothing was compared).
    pub fn mismatch_rate(&self) -> f64 {
        let (compared, mismatched) = self.window();
        if compared == 0 {
            0.0
        } else {
            mismatched as f64 / compared as f64
        }
    }

    /// True when the mismatch rate is past the policy. A period with no
    /// mismatch allowed fails at the first one.
    pub fn past_policy(&self) -> bool {
        let (_, mismatched) = self.window();
        mismatched > 0 && self.mismatch_rate() > self.max_mismatch + self.noise_floor
    }

    /// True once the current period has lasted its time, or compared its
    /// records.
    pub fn period_over(&self) -> bool {
        match self.supervise_records {
            Some(records) => self.window().0 >= records,
            None => self.since.elapsed() >= self.supervise,
        }
    }

    /// Why the current phase has lasted too long, if it has: transfer and
    /// replacing may take `phase_timeout`; shadow and promoted their
    /// supervision period and then `phase_timeout` more (a period counted in
    /// records: `phase_timeout` in all).
    pub fn overdue(&self) -> Option<String> {
        let allowed = match (self.phase, self.supervise_records) {
            (Phase::Shadow | Phase::Promoted, None) => self.supervise + self.phase_timeout,
            _ => self.phase_timeout,
        };
        (self.since.elapsed() > allowed).then(|| {
            format!(
                "phase {} did not end within its deadline of {:.1} s",
                self.phase.name(),
                allowed.as_secs_f64()
            )
        })
    }

    /// Starts a new period in `phase`.
    pub fn enter(&mut self, phase: Phase) {
        self.phase = phase;
        self.since = Instant::now();
        self.baseline = self.current;
    }

    /// The `upgrade` object of the status JSON.
    pub fn json(&self) -> Value {
        let (compared, mismatched) = self.window();
        json!({
            "phase": self.phase.name(),
            "from": format!("{:08x}", self.old.version),
            "to": format!("{:08x}", self.new.version),
            "from_graph": self.old.file.display().to_string(),
            "to_graph": self.new.file.display().to_string(),
            "new_color": self.new_color.name(),
            "compared": compared,
            "mismatched": mismatched,
            "mismatch_rate": self.mismatch_rate(),
            "noise_floor": self.noise_floor,
            "max_mismatch": self.max_mismatch,
            "supervise_ms": self.supervise.as_millis() as u64,
            "supervise_records": self.supervise_records,
            "phase_timeout_ms": self.phase_timeout.as_millis() as u64,
            "phase_elapsed_ms": self.since.elapsed().as_millis() as u64,
            "to_shadow_ms": self.to_shadow_ms,
            "to_promoted_ms": self.to_promoted_ms,
        })
    }
}

/// Why an upgrade to `new` cannot start: it must change vertices only, keep
/// every channel, and lose no state.
pub fn refuse(old: &Split, new: &Split) -> Option<String> {
    let names = |split: &Split, channels: &[tandem_core::ChannelId]| -> Vec<String> {
        channels
            .iter()
            .map(|&c| split.instance.channels.name(c).to_owned())
            .collect()
    };
    if names(old, &old.inputs) != names(new, &new.inputs) {
        return Some(
            "the new graph reads other source channels than the running one; an upgrade \
             changes vertices only"
                .into(),
        );
    }
    let produced = names(new, &new.outputs);
    let missing: Vec<String> = names(old, &old.outputs)
        .into_iter()
        .filter(|n| !produced.contains(n))
        .collect();
    if !missing.is_empty() {
        return Some(format!(
            "the new graph no longer produces {} for the sinks; an upgrade keeps every channel the sinks read",
            missing.join(", ")
        ));
    }
    let same_edges = |a: &tandem_core::Plan, b: &tandem_core::Plan| {
        crate::checkpoint::GraphStamp::of_plan("", a).hash
            == crate::checkpoint::GraphStamp::of_plan("", b).hash
    };
    if !same_edges(&old.ingress, &new.ingress) || !same_edges(&old.egress, &new.egress) {
        return Some(
            "the new graph changes sources or sinks; an upgrade changes vertices only \
             (restart `tandem up` to change devices or outputs)"
                .into(),
        );
    }
    let refusals = tandem_core::diff::diff(&old.instance, &new.instance).refusals(false);
    if !refusals.is_empty() {
        let reasons: Vec<String> = refusals.iter().map(ToString::to_string).collect();
        return Some(format!(
            "the upgrade would lose state: {}",
            reasons.join("; ")
        ));
    }
    None
}

/// Requests from the control socket, and the upgrade they drive.
impl Hub {
    /// Answers a request of the control socket.
    pub(super) fn request(&mut self, request: Request) -> Result<String, String> {
        match request {
            Request::Status => Ok(self.status().json()),
            Request::Upgrade(upgrade) => self.start_upgrade(*upgrade),
            Request::Rollback => self.rollback("asked for by `tandem rollback`"),
            Request::Toggle { name, on } => self.toggle(&name, on),
            Request::Gateway(answer) => {
                let _ = answer.send(self.bundles.gateway.clone());
                Ok(String::new())
            }
            Request::Install(install) => self.install(*install),
        }
    }

    /// Takes a bundle the control socket checked and unpacked: starts its
    /// live upgrade (or records a revocation, or the refusal).
    fn install(&mut self, request: InstallRequest) -> Result<String, String> {
        let InstallRequest {
            file,
            prepared,
            what,
        } = request;
        let refuse = |hub: &mut Hub, reason: String| {
            hub.warn(&format!("install of {what} refused: {reason}"));
            hub.bundles.refused(&what, &reason);
            Err(reason)
        };
        let mut unpacked = match prepared {
            Err(reason) => return refuse(self, reason.to_string()),
            Ok(Prepared::Revocation { revocation, .. }) => {
                let answer = self.bundles.revoke(revocation);
                if let Ok(text) = &answer {
                    self.log(text);
                }
                return answer;
            }
            Ok(Prepared::Bundle(unpacked)) => unpacked,
        };
        let shown = file.display();
        if let Some(reason) = self.bundles.recheck(&unpacked.manifest) {
            return refuse(self, format!("{shown} is refused: {reason}"));
        }
        if let Some(running) = &self.upgrade {
            return refuse(
                self,
                format!(
                    "{shown} is refused: an upgrade is running (phase {}); wait for it or `tandem rollback`",
                    running.phase.name()
                ),
            );
        }
        let serving = |c: Color| self.sup.is_live(c) && self.sup.role(c) == Some(Role::Serving);
        if !Color::BOTH.into_iter().all(serving) {
            return refuse(
                self,
                format!("{shown} is refused: both instances must be serving before an upgrade starts; see `tandem status`"),
            );
        }
        let in_use = |r: &Release| r.file.starts_with(unpacked.dir());
        if self.releases.iter().any(in_use) || in_use(&self.current) {
            return refuse(
                self,
                format!("{shown} is refused: {} runs now", unpacked.manifest.id()),
            );
        }
        if let Err(e) = unpacked.commit() {
            return refuse(
                self,
                format!(
                    "cannot unpack into {} ({e}); nothing changed",
                    unpacked.dir().display()
                ),
            );
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
                self.bundles.running = Some(Running {
                    name: unpacked.manifest.name.to_string(),
                    version: unpacked.manifest.version.clone(),
                    dir: unpacked.dir().to_path_buf(),
                });
                let signers: Vec<String> =
                    unpacked.signers.iter().map(ToString::to_string).collect();
                self.log(&format!(
                    "installing {} from {shown} (signed by {})",
                    unpacked.manifest.id(),
                    signers.join(", ")
                ));
                Ok(format!("{} accepted; {started}", unpacked.manifest.id()))
            }
            Err(reason) => {
                unpacked.discard();
                refuse(self, format!("{shown} is refused: {reason}"))
            }
        }
    }

    /// Switches toggle `name` (`NAME` or `SOURCE.NAME`) through its source.
    pub(super) fn toggle(&mut self, name: &str, on: bool) -> Result<String, String> {
        let all: Vec<(String, &Switches, &str)> = self
            .toggles
            .iter()
            .flat_map(|(id, sw)| sw.names().map(move |n| (format!("{id}.{n}"), sw, n)))
            .collect();
        if all.is_empty() {
            return Err(
                "the graph has no toggles; declare them with a source such as \
                 [sources.features] kind = \"toggles\", names = [\"new_cop\"]"
                    .into(),
            );
        }
        let matching: Vec<&(String, &Switches, &str)> = all
            .iter()
            .filter(|(full, _, short)| full == name || *short == name)
            .collect();
        let listed = || {
            all.iter()
                .map(|(full, _, _)| full.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        match matching.as_slice() {
            [(full, switches, short)] => {
                switches.switch(short, on);
                self.toggle_positions.insert(full.clone(), on);
                // Kept on disk by the writer `keep_toggles` runs, not here:
                // an fsync on this loop would hold the records up.
                self.kept_toggles
                    .send_replace(self.toggle_positions.clone());
                let state = if on { "on" } else { "off" };
                self.log(&format!("toggle {full} {state}"));
                Ok(format!(
                    "{full} {state}: both instances switch at the same origin sequence number"
                ))
            }
            [] => Err(format!(
                "no toggle `{name}`; the graph's toggles are {}",
                listed()
            )),
            _ => Err(format!(
                "`{name}` names several toggles; give one of {}",
                listed()
            )),
        }
    }

    /// Starts an upgrade whose files the control socket read and checked.
    pub(super) fn start_upgrade(&mut self, request: UpgradeRequest) -> Result<String, String> {
        let UpgradeRequest {
            file,
            loaded,
            split,
            program,
            supervise,
            records,
            phase_timeout,
        } = request;
        let program = program.unwrap_or_else(|| self.current.program.clone());
        if let Some(running) = &self.upgrade {
            return Err(format!(
                "an upgrade is running (phase {}); wait for it or `tandem rollback`",
                running.phase.name()
            ));
        }
        let serving = |c: Color| self.sup.is_live(c) && self.sup.role(c) == Some(Role::Serving);
        if !Color::BOTH.into_iter().all(serving) {
            return Err(
                "both instances must be serving before an upgrade starts; see `tandem status`"
                    .into(),
            );
        }
        let shown = file.display().to_string();
        let stamp = GraphStamp::of_plan(&loaded.name, &loaded.plan);
        if loaded.name != self.name {
            return Err(format!(
                "{shown} is graph `{}`, not `{}`; keep `name = \"{}\"` under [graph]",
                loaded.name, self.name, self.name
            ));
        }
        let version = super::instance::version_of(&stamp);
        if version == self.current.version {
            return Err(format!("{shown} is the graph running now"));
        }
        if let Some(reason) = refuse(&self.current.split, &split) {
            return Err(format!("{shown}: {reason}"));
        }
        let stats = self.sup.downstream().stats();
        let noise_floor = if stats.compared == 0 {
            0.0
        } else {
            stats.diverged as f64 / stats.compared as f64
        };
        let new = Release {
            file,
            program,
            version,
            split,
        };
        let new_color = Color::Green;
        let now = Instant::now();
        // Keep the first differences of this comparison.
        self.sup.clear_divergences();
        self.divergence_logged = 0;
        self.upgrade = Some(Upgrade {
            phase: Phase::Transfer,
            since: now,
            started: now,
            new_color,
            old: self.current.clone(),
            new: new.clone(),
            supervise: supervise.unwrap_or(loaded.ha.supervise),
            supervise_records: records,
            phase_timeout: phase_timeout.unwrap_or(DEFAULT_PHASE_TIMEOUT),
            max_mismatch: loaded.ha.max_mismatch,
            noise_floor,
            baseline: (stats.compared, stats.diverged),
            current: (stats.compared, stats.diverged),
            to_shadow_ms: None,
            to_promoted_ms: None,
        });
        self.restart_on(new_color, new);
        Ok(format!(
            "upgrading to {shown} ({version:08x}): {new_color} restarts on it from {}'s state and runs as a shadow; `tandem status` shows the phase",
            new_color.other()
        ))
    }

    /// Restarts `color` on `release` (its instance is dropped at once).
    pub(super) fn restart_on(&mut self, color: Color, release: Release) {
        self.releases[color.index()] = release;
        if self.sup.role(color).is_some() {
            self.expect_loss[color.index()] = true;
            self.sup.handle_disconnected(color);
        } else {
            self.processes.stop(color, true);
        }
    }

    pub(super) fn rollback(&mut self, reason: &str) -> Result<String, String> {
        let Some(upgrade) = &self.upgrade else {
            return Err("no upgrade is running".into());
        };
        if upgrade.phase == Phase::Replacing {
            return Err(
                "too late: the old version is being replaced by a second copy of the new one; \
                 upgrade again to the old graph instead"
                    .into(),
            );
        }
        let new_color = upgrade.new_color;
        let old = upgrade.old.clone();
        let phase = upgrade.phase;
        self.sup.promote(new_color.other());
        self.restart_on(new_color, old);
        self.warn(&format!(
            "upgrade rolled back in phase {}: {reason}",
            phase.name()
        ));
        self.last_upgrade = serde_json::json!({
            "result": "rolled back",
            "phase": phase.name(),
            "reason": reason,
        });
        self.bundles.rolled_back(reason);
        self.upgrade = None;
        Ok(format!(
            "rolled back: {} serves the old version, {new_color} restarts on it",
            new_color.other()
        ))
    }

    pub(super) fn upgrade_tick(&mut self) {
        let stats = self.sup.downstream().stats();
        let Some(upgrade) = self.upgrade.as_mut() else {
            return;
        };
        upgrade.current = (stats.compared, stats.diverged);
        if let Some(late) = upgrade.overdue() {
            self.upgrade_overdue(late);
            return;
        }
        if !matches!(upgrade.phase, Phase::Shadow | Phase::Promoted) {
            return;
        }
        if upgrade.past_policy() {
            let (compared, mismatched) = upgrade.window();
            let mut reason = format!(
                "{mismatched} of {compared} compared records differ (rate {:.4}), above the {} allowed over a noise floor of {:.4}",
                upgrade.mismatch_rate(),
                upgrade.max_mismatch,
                upgrade.noise_floor
            );
            if let Some(first) = self.sup.downstream().divergences().first() {
                reason.push_str(&format!("; the first: {first}"));
            }
            let _ = self.rollback(&reason);
            return;
        }
        if !upgrade.period_over() {
            return;
        }
        let new_color = upgrade.new_color;
        match upgrade.phase {
            Phase::Shadow => {
                if self.sup.promote(new_color) {
                    upgrade.to_promoted_ms = Some(upgrade.started.elapsed().as_secs_f64() * 1e3);
                    upgrade.enter(Phase::Promoted);
                    self.log(&format!(
                        "upgrade: {new_color} promoted; the old version shadows it"
                    ));
                }
            }
            Phase::Promoted => {
                let new = upgrade.new.clone();
                upgrade.enter(Phase::Replacing);
                self.log(
                    "upgrade: replacing the old instance with a second copy of the new version",
                );
                self.restart_on(new_color.other(), new);
            }
            Phase::Transfer | Phase::Replacing => {}
        }
    }

    /// A phase outlived its deadline. Until the old version is replaced it
    /// still runs with current state, so the upgrade rolls back; once it is
    /// being replaced there is no old state to go back to, so the new
    /// version stays and the second copy keeps being restarted.
    fn upgrade_overdue(&mut self, late: String) {
        let Some(upgrade) = &self.upgrade else {
            return;
        };
        let new_color = upgrade.new_color;
        let why = match (self.sup.role(new_color), upgrade.phase) {
            (None, Phase::Transfer) => "; the new version's instance never connected",
            (Some(_), Phase::Transfer) => "; the new version's instance did not catch up",
            (_, Phase::Shadow | Phase::Promoted) if upgrade.supervise_records.is_some() => {
                "; too few records were compared"
            }
            _ => "",
        };
        if upgrade.phase != Phase::Replacing {
            let _ = self.rollback(&format!("{late}{why}"));
            return;
        }
        let old_color = new_color.other();
        let done = upgrade.new.clone();
        let warning = format!(
            "{late}: {old_color}'s second copy of the new version is not serving yet; it keeps \
             being restarted (the old version's state is gone, so there is nothing to roll back to)"
        );
        self.warn(&format!(
            "upgrade done with one instance serving: {warning}"
        ));
        self.last_upgrade = serde_json::json!({
            "result": "promoted",
            "to": format!("{:08x}", done.version),
            "to_graph": done.file.display().to_string(),
            "to_shadow_ms": upgrade.to_shadow_ms,
            "to_promoted_ms": upgrade.to_promoted_ms,
            "warning": warning,
        });
        self.current = done;
        self.upgrade = None;
        self.bundle_committed();
    }

    /// An instance was lost on its own during an upgrade.
    pub(super) fn upgrade_lost(&mut self, color: Color) {
        let Some(upgrade) = &self.upgrade else {
            return;
        };
        if color == upgrade.new_color && upgrade.phase != Phase::Replacing {
            let _ = self.rollback("the new version's instance was lost");
        } else if upgrade.phase == Phase::Transfer {
            // The old one is gone before the new one restored: neither has
            // state to give. Both restart on the old graph.
            let _ = self.rollback("the old version's instance was lost during the transfer");
        } else if color != upgrade.new_color && upgrade.phase != Phase::Replacing {
            // The old one is gone: the new one is all there is. It serves,
            // and the old colour comes back as a second copy of it.
            let new = upgrade.new.clone();
            self.releases[color.index()] = new;
            if let Some(upgrade) = self.upgrade.as_mut() {
                upgrade.enter(Phase::Replacing);
            }
            self.log("upgrade: the old instance was lost; the new version serves and is copied");
        }
    }

    pub(super) fn upgrade_role(&mut self, color: Color, role: Role) {
        let Some(upgrade) = self.upgrade.as_mut() else {
            return;
        };
        match (upgrade.phase, role) {
            (Phase::Transfer, Role::Shadow) if color == upgrade.new_color => {
                upgrade.to_shadow_ms = Some(upgrade.started.elapsed().as_secs_f64() * 1e3);
                upgrade.enter(Phase::Shadow);
            }
            (Phase::Replacing, Role::Serving) if color != upgrade.new_color => {
                let done = upgrade.new.clone();
                self.last_upgrade = serde_json::json!({
                    "result": "promoted",
                    "to": format!("{:08x}", done.version),
                    "to_graph": done.file.display().to_string(),
                    "to_shadow_ms": upgrade.to_shadow_ms,
                    "to_promoted_ms": upgrade.to_promoted_ms,
                    "done_ms": upgrade.started.elapsed().as_secs_f64() * 1e3,
                });
                self.log(&format!(
                    "upgrade done: both instances run {}",
                    done.file.display()
                ));
                self.current = done;
                self.upgrade = None;
                self.bundle_committed();
            }
            _ => {}
        }
    }

    /// The upgrade of a bundle committed (the old version is replaced):
    /// its version becomes the floor.
    fn bundle_committed(&mut self) {
        if let Some(what) = self.bundles.promoted() {
            self.log(&format!(
                "bundle {what} installed; the anti-rollback floor is raised to it"
            ));
        }
    }
}
