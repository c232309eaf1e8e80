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
use tandem_core::ha::Color;
use tandem_core::split::Split;

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
