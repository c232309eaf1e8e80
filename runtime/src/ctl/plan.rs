//! The rollout planner: which gateway gets a bundle when, as a pure state
//! machine. No clock, no sockets: the daemon feeds it `handle_*(now, ..)`
//! (a gateway came online, accepted, refused, reported an outcome) and
//! takes `poll_send()` (the next gateway to send the bundle to) and
//! `poll_event()` (what to log and show).
//!
//! A rollout of one bundle to one track goes in waves. Wave 0 is one
//! gateway of each configuration [`Category`] of the track; the waves after
//! it take the rest up to each cumulative percentage of [`Policy::waves`].
//! Wave `n + 1` starts only once `success_percent` of wave `n` (rounded up)
//! has [succeeded](TargetState::Succeeded). `halt_after_failures` failures
//! anywhere halt it: nothing more is sent, and every gateway not yet sent
//! to is [skipped](TargetState::Skipped) with the reason.
//!
//! A gateway that is offline when its wave starts is sent the bundle when
//! it comes back; one that restarts before it reports an outcome is sent it
//! again ([`Rollout::handle_idle`]).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;

use serde::{Deserialize, Serialize};

/// Wall time in milliseconds since the Unix epoch, as the driver read it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Millis(pub u64);

/// A gateway's name: its certificate's name too, so DNS-like:
/// `[a-z0-9][a-z0-9-]*`, at most 63 bytes.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct GatewayId(String);

impl GatewayId {
    /// Checks `text` is a usable gateway name.
    pub fn parse(text: &str) -> Result<GatewayId, String> {
        let ok = !text.is_empty()
            && text.len() <= 63
            && text
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !text.starts_with('-');
        if text == super::transport::CONTROLLER_NAME {
            // Its certificate would carry the name gateways check the
            // controller's by: whoever held it could pose as the controller.
            return Err(format!(
                "`{text}` is the controller's own name and cannot be a gateway's: \
                 choose another, such as `gw-0042`"
            ));
        }
        if ok {
            Ok(GatewayId(text.to_owned()))
        } else {
            Err(format!(
                "`{text}` is not a gateway name: use lowercase letters, digits and `-` \
                 (at most 63, not starting with `-`), such as `gw-0042`"
            ))
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for GatewayId {
    type Error = String;
    fn try_from(text: String) -> Result<GatewayId, String> {
        GatewayId::parse(&text)
    }
}

impl From<GatewayId> for String {
    fn from(id: GatewayId) -> String {
        id.0
    }
}

impl fmt::Display for GatewayId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A configuration category: the hardware and the set of device models.
/// Two gateways with the same hardware and the same devices (in any order)
/// are one category.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Category {
    /// The gateway's hardware model.
    pub hardware: String,
    /// Its device models, sorted, without repeats.
    pub devices: Vec<String>,
}

impl Category {
    /// A category; `devices` are sorted and deduplicated.
    pub fn new(hardware: &str, devices: &[String]) -> Category {
        let set: BTreeSet<String> = devices.iter().cloned().collect();
        Category {
            hardware: hardware.to_owned(),
            devices: set.into_iter().collect(),
        }
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} [{}]", self.hardware, self.devices.join(", "))
    }
}

/// How a track rolls out: its waves and thresholds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Cumulative percentages of the track's gateways reached by the waves
    /// after wave 0, strictly increasing, the last 100.
    pub waves: Vec<u8>,
    /// Percentage of a wave that must have succeeded before the next starts.
    pub success_percent: u8,
    /// This many failed gateways halt the rollout, fleet-wide.
    pub halt_after_failures: u32,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            waves: vec![25, 100],
            success_percent: 100,
            halt_after_failures: 1,
        }
    }
}

impl Policy {
    /// Checks the numbers; a missing final 100 is added.
    pub fn validate(mut self) -> Result<Policy, String> {
        if self.waves.last() != Some(&100) {
            self.waves.push(100);
        }
        if self.waves.iter().any(|&p| p == 0 || p > 100) {
            return Err(format!(
                "waves {:?}: each wave is a cumulative percentage from 1 to 100",
                self.waves
            ));
        }
        if self.waves.windows(2).any(|w| w[0] >= w[1]) {
            return Err(format!(
                "waves {:?}: percentages must increase, such as [10, 50, 100]",
                self.waves
            ));
        }
        if !(1..=100).contains(&self.success_percent) {
            return Err(format!(
                "success_percent {}: use 1 to 100",
                self.success_percent
            ));
        }
        if self.halt_after_failures == 0 {
            return Err("halt_after_failures 0: use 1 or more (1: the first failure halts)".into());
        }
        Ok(self)
    }
}

/// Which bundle a rollout carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleRef {
    /// SHA-256 of the bundle file, hex.
    pub sha256: String,
    /// The manifest's name.
    pub name: String,
    /// The manifest's version.
    pub version: String,
}

/// Where one gateway is in a rollout.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum TargetState {
    /// Its wave has not started.
    Waiting,
    /// Its wave started; it gets the bundle when it is online.
    Due,
    /// The bundle was sent; no answer yet.
    Sent {
        /// When.
        at: Millis,
    },
    /// The gateway accepted the bundle (it verified) and is upgrading.
    Installing {
        /// When it accepted.
        at: Millis,
    },
    /// Promoted, and its shadow comparison stayed within policy.
    Succeeded {
        /// When it said so.
        at: Millis,
    },
    /// Refused, rolled back, or promoted without a clean comparison.
    Failed {
        /// When it said so.
        at: Millis,
        /// Why, as the gateway reported it.
        reason: String,
    },
    /// Never sent: the rollout halted first.
    Skipped {
        /// Why.
        reason: String,
    },
}

impl TargetState {
    /// A short name for tables: waiting, due, sent, installing, ...
    pub fn name(&self) -> &'static str {
        match self {
            TargetState::Waiting => "waiting",
            TargetState::Due => "due",
            TargetState::Sent { .. } => "sent",
            TargetState::Installing { .. } => "installing",
            TargetState::Succeeded { .. } => "succeeded",
            TargetState::Failed { .. } => "failed",
            TargetState::Skipped { .. } => "skipped",
        }
    }

    fn settled(&self) -> bool {
        matches!(
            self,
            TargetState::Succeeded { .. }
                | TargetState::Failed { .. }
                | TargetState::Skipped { .. }
        )
    }
}

/// One gateway of a rollout.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    /// Which.
    pub id: GatewayId,
    /// Its configuration category.
    pub category: Category,
    /// Its wave (0: the canaries).
    pub wave: usize,
    /// Where it is.
    pub state: TargetState,
    /// Connected to the controller now.
    pub online: bool,
    /// Times the bundle was sent to it.
    pub sends: u32,
}

/// The rollout as a whole.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum RolloutState {
    /// Waves are going out.
    Running,
    /// Every wave started and the last met its threshold. Gateways still
    /// due (offline) get the bundle when they come back.
    Complete {
        /// When.
        at: Millis,
    },
    /// Too many failures: nothing more is sent.
    Halted {
        /// When.
        at: Millis,
        /// Why.
        reason: String,
    },
}

/// What a rollout reports, for logs and the web page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A wave started.
    WaveStarted {
        /// Which.
        wave: usize,
        /// Its gateways.
        gateways: Vec<GatewayId>,
    },
    /// A gateway succeeded.
    Succeeded(GatewayId),
    /// A gateway failed.
    Failed(GatewayId, String),
    /// The rollout halted.
    Halted(String),
    /// The last wave met its threshold.
    Complete,
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::WaveStarted { wave, gateways } => {
                let names: Vec<&str> = gateways.iter().map(GatewayId::as_str).collect();
                write!(f, "wave {wave} started: {}", names.join(", "))
            }
            Event::Succeeded(id) => write!(f, "{id}: succeeded"),
            Event::Failed(id, reason) => write!(f, "{id}: failed: {reason}"),
            Event::Halted(reason) => write!(f, "halted: {reason}"),
            Event::Complete => write!(f, "complete: every wave met its threshold"),
        }
    }
}

/// A gateway of the track when the rollout starts.
#[derive(Clone, Debug)]
pub struct Member {
    /// Which.
    pub id: GatewayId,
    /// Its category.
    pub category: Category,
    /// Connected now.
    pub online: bool,
}

/// One rollout of one bundle to one track.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Rollout {
    /// Its number, unique in the controller.
    pub id: u64,
    /// The track.
    pub track: String,
    /// The bundle.
    pub bundle: BundleRef,
    /// Waves and thresholds.
    pub policy: Policy,
    /// Every gateway of the track, by wave, then name.
    pub targets: Vec<Target>,
    /// How many waves.
    pub waves: usize,
    /// The latest wave started.
    pub wave: usize,
    /// Where it is.
    pub state: RolloutState,
    /// When it started.
    pub started: Millis,
    #[serde(skip)]
    events: VecDeque<Event>,
}

/// Splits `members` into waves: one of each category first (the first by
/// name), then the rest by name up to each cumulative percentage.
pub fn plan_waves(members: &[Member], waves: &[u8]) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..members.len()).collect();
    order.sort_by(|&a, &b| members[a].id.cmp(&members[b].id));
    let mut seen = BTreeSet::new();
    let (canaries, rest): (Vec<usize>, Vec<usize>) = order
        .into_iter()
        .partition(|&i| seen.insert(members[i].category.clone()));
    let total = members.len();
    let mut planned = vec![canaries];
    let mut taken = planned[0].len();
    let mut rest = rest.into_iter();
    for &percent in waves {
        let reach = (total * usize::from(percent)).div_ceil(100);
        let wave: Vec<usize> = rest.by_ref().take(reach.saturating_sub(taken)).collect();
        taken += wave.len();
        if !wave.is_empty() {
            planned.push(wave);
        }
    }
    planned
}

/// Why a rollout cannot start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RolloutError {
    /// The track has no gateways.
    EmptyTrack(String),
}

impl fmt::Display for RolloutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RolloutError::EmptyTrack(track) => write!(
                f,
                "track `{track}` has no gateways; enrol some with `tandem ctl enrol ID --track {track}`"
            ),
        }
    }
}

impl Rollout {
    /// Plans a rollout and starts wave 0.
    pub fn new(
        now: Millis,
        id: u64,
        track: &str,
        bundle: BundleRef,
        policy: Policy,
        members: &[Member],
    ) -> Result<Rollout, RolloutError> {
        if members.is_empty() {
            return Err(RolloutError::EmptyTrack(track.to_owned()));
        }
        let planned = plan_waves(members, &policy.waves);
        let mut targets = Vec::with_capacity(members.len());
        for (wave, indices) in planned.iter().enumerate() {
            for &i in indices {
                targets.push(Target {
                    id: members[i].id.clone(),
                    category: members[i].category.clone(),
                    wave,
                    state: TargetState::Waiting,
                    online: members[i].online,
                    sends: 0,
                });
            }
        }
        let mut rollout = Rollout {
            id,
            track: track.to_owned(),
            bundle,
            policy,
            targets,
            waves: planned.len(),
            wave: 0,
            state: RolloutState::Running,
            started: now,
            events: VecDeque::new(),
        };
        rollout.start_wave(0);
        Ok(rollout)
    }

    fn target(&mut self, id: &GatewayId) -> Option<&mut Target> {
        self.targets.iter_mut().find(|t| &t.id == id)
    }

    /// The gateway's place in this rollout, if it has one.
    pub fn state_of(&self, id: &GatewayId) -> Option<&TargetState> {
        self.targets.iter().find(|t| &t.id == id).map(|t| &t.state)
    }

    /// True while the rollout may still send bundles.
    pub fn is_active(&self) -> bool {
        !matches!(self.state, RolloutState::Halted { .. })
    }

    /// The gateway connected.
    pub fn handle_online(&mut self, _now: Millis, id: &GatewayId) {
        if let Some(t) = self.target(id) {
            t.online = true;
        }
    }

    /// The gateway's connection closed. A bundle sent but not answered is
    /// sent again when it is back, unless it reports an outcome first.
    pub fn handle_offline(&mut self, _now: Millis, id: &GatewayId) {
        if let Some(t) = self.target(id) {
            t.online = false;
            if matches!(t.state, TargetState::Sent { .. }) {
                t.state = TargetState::Due;
            }
        }
    }

    /// The gateway, back after a restart or a lost connection, is not
    /// installing this bundle and has no outcome for it: its upgrade was
    /// cut short. It is sent the bundle again (unless the rollout halted).
    pub fn handle_idle(&mut self, _now: Millis, id: &GatewayId) {
        let halted = !self.is_active();
        if let Some(t) = self.target(id) {
            if matches!(
                t.state,
                TargetState::Sent { .. } | TargetState::Installing { .. }
            ) {
                t.state = if halted {
                    TargetState::Skipped {
                        reason: "its upgrade was cut short after the rollout halted".into(),
                    }
                } else {
                    TargetState::Due
                };
            }
        }
    }

    /// The gateway accepted the bundle and started its upgrade.
    pub fn handle_accepted(&mut self, now: Millis, id: &GatewayId) {
        if let Some(t) = self.target(id) {
            if matches!(t.state, TargetState::Sent { .. } | TargetState::Due) {
                t.state = TargetState::Installing { at: now };
            }
        }
    }

    /// The gateway reported the outcome of this bundle: `Ok` when it was
    /// promoted with a clean comparison, else the reason it failed (a
    /// refusal, a rollback, a comparison past policy).
    pub fn handle_outcome(&mut self, now: Millis, id: &GatewayId, outcome: Result<(), String>) {
        let Some(t) = self.target(id) else {
            return;
        };
        if t.state.settled() && !matches!(t.state, TargetState::Skipped { .. }) {
            return;
        }
        let gateway = t.id.clone();
        match outcome {
            Ok(()) => {
                t.state = TargetState::Succeeded { at: now };
                self.events.push_back(Event::Succeeded(gateway));
            }
            Err(reason) => {
                t.state = TargetState::Failed {
                    at: now,
                    reason: reason.clone(),
                };
                self.events.push_back(Event::Failed(gateway, reason));
            }
        }
        self.advance(now);
    }

    /// The next gateway to send the bundle to; it is marked sent. The
    /// driver sends it at once, or calls [`Rollout::handle_offline`].
    pub fn poll_send(&mut self, now: Millis) -> Option<GatewayId> {
        self.poll_send_if(now, |_| true)
    }

    /// [`Rollout::poll_send`] among the gateways `ready` accepts (those
    /// whose agent can start an upgrade now: both instances serving, no
    /// upgrade running); the others stay due.
    pub fn poll_send_if(
        &mut self,
        now: Millis,
        ready: impl Fn(&GatewayId) -> bool,
    ) -> Option<GatewayId> {
        if !self.is_active() {
            return None;
        }
        let t = self
            .targets
            .iter_mut()
            .find(|t| t.online && t.state == TargetState::Due && ready(&t.id))?;
        t.state = TargetState::Sent { at: now };
        t.sends += 1;
        Some(t.id.clone())
    }

    /// The next thing that happened.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Gateways of `wave` that succeeded, and how many it has.
    pub fn wave_progress(&self, wave: usize) -> (usize, usize) {
        let of_wave = self.targets.iter().filter(|t| t.wave == wave);
        let size = of_wave.clone().count();
        let done = of_wave
            .filter(|t| matches!(t.state, TargetState::Succeeded { .. }))
            .count();
        (done, size)
    }

    /// Succeeded gateways `wave` needs before the next wave starts.
    pub fn wave_needs(&self, wave: usize) -> usize {
        let (_, size) = self.wave_progress(wave);
        (size * usize::from(self.policy.success_percent)).div_ceil(100)
    }

    fn failures(&self) -> Vec<&Target> {
        self.targets
            .iter()
            .filter(|t| matches!(t.state, TargetState::Failed { .. }))
            .collect()
    }

    fn start_wave(&mut self, wave: usize) {
        self.wave = wave;
        let mut gateways = Vec::new();
        for t in self.targets.iter_mut().filter(|t| t.wave == wave) {
            if t.state == TargetState::Waiting {
                t.state = TargetState::Due;
            }
            gateways.push(t.id.clone());
        }
        self.events.push_back(Event::WaveStarted { wave, gateways });
    }

    fn advance(&mut self, now: Millis) {
        if !self.is_active() {
            return;
        }
        let failures = self.failures();
        if failures.len() as u64 >= u64::from(self.policy.halt_after_failures) {
            let named: Vec<String> = failures
                .iter()
                .map(|t| match &t.state {
                    TargetState::Failed { reason, .. } => format!("{}: {reason}", t.id),
                    _ => t.id.to_string(),
                })
                .collect();
            let reason = format!(
                "{} gateway(s) failed, the track's limit is {}: {}",
                failures.len(),
                self.policy.halt_after_failures,
                named.join("; ")
            );
            for t in &mut self.targets {
                if matches!(t.state, TargetState::Waiting | TargetState::Due) {
                    t.state = TargetState::Skipped {
                        reason: "not sent: the rollout halted".into(),
                    };
                }
            }
            self.state = RolloutState::Halted {
                at: now,
                reason: reason.clone(),
            };
            self.events.push_back(Event::Halted(reason));
            return;
        }
        while matches!(self.state, RolloutState::Running) {
            let (done, _) = self.wave_progress(self.wave);
            if done < self.wave_needs(self.wave) {
                return;
            }
            if self.wave + 1 < self.waves {
                self.start_wave(self.wave + 1);
            } else {
                self.state = RolloutState::Complete { at: now };
                self.events.push_back(Event::Complete);
            }
        }
    }

    /// Counts of gateways by state name, for summaries.
    pub fn counts(&self) -> BTreeMap<&'static str, usize> {
        let mut counts = BTreeMap::new();
        for t in &self.targets {
            *counts.entry(t.state.name()).or_insert(0) += 1;
        }
        counts
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
