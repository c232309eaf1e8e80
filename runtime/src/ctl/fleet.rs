//! The controller's state: the inventory, who is online, the rollouts,
//! and what gateways reported. Pure like the planner (time is a
//! parameter); the daemon owns one and drives it.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde_json::{json, Value};

use super::inventory::{Gateway, Saved, Tracks};
use super::plan::{BundleRef, GatewayId, Member, Millis, Rollout, RolloutState, TargetState};
use super::verdict::{judge, Verdict};
use super::wire::Report;

/// Log lines kept for the web page.
const LOG_LINES: usize = 200;
/// History entries kept per gateway.
const HISTORY: usize = 50;

/// The controller's state.
#[derive(Debug, Default)]
pub struct Fleet {
    /// What `fleet.json` holds.
    pub saved: Saved,
    /// Tracks and their thresholds.
    pub tracks: Tracks,
    /// Connected gateways.
    pub online: BTreeSet<GatewayId>,
    /// Gateways whose first report since connecting has not come yet.
    fresh: BTreeSet<GatewayId>,
    /// What happened, newest last.
    pub log: VecDeque<(Millis, String)>,
    /// Lines ever added to the log.
    pub noted: u64,
    /// Something changed that `fleet.json` should keep.
    pub dirty: bool,
}

impl Fleet {
    /// The controller's state as saved.
    pub fn new(mut saved: Saved, tracks: Tracks) -> Fleet {
        // Nobody is connected yet: what was sent and not answered is sent
        // again when its gateway is back.
        let ids: Vec<GatewayId> = saved.gateways.keys().cloned().collect();
        for r in &mut saved.rollouts {
            for id in &ids {
                r.handle_offline(Millis(0), id);
            }
        }
        Fleet {
            saved,
            tracks,
            ..Fleet::default()
        }
    }

    fn note(&mut self, now: Millis, line: String) {
        if self.log.len() == LOG_LINES {
            self.log.pop_front();
        }
        self.log.push_back((now, line));
        self.noted += 1;
    }

    /// Adds a gateway to the inventory (or changes its record).
    pub fn enrol(&mut self, now: Millis, gateway: Gateway) {
        let line = format!(
            "{}: enrolled ({}, track {})",
            gateway.id,
            gateway.category(),
            gateway.track
        );
        let id = gateway.id.clone();
        let kept = self.saved.gateways.remove(&id);
        let gateway = Gateway {
            runtime: kept.as_ref().and_then(|k| k.runtime.clone()),
            last_seen: kept.as_ref().and_then(|k| k.last_seen),
            status: kept.as_ref().map_or(Value::Null, |k| k.status.clone()),
            history: kept.map(|k| k.history).unwrap_or_default(),
            ..gateway
        };
        self.saved.gateways.insert(id, gateway);
        self.note(now, line);
        self.dirty = true;
    }

    /// A gateway connected and said hello; `Err` refuses it.
    pub fn connected(&mut self, now: Millis, id: &GatewayId, runtime: &str) -> Result<(), String> {
        let Some(g) = self.saved.gateways.get_mut(id) else {
            return Err(format!("{id} is not enrolled with this controller"));
        };
        g.runtime = Some(runtime.to_owned());
        g.last_seen = Some(now);
        self.online.insert(id.clone());
        self.fresh.insert(id.clone());
        for r in &mut self.saved.rollouts {
            r.handle_online(now, id);
        }
        self.note(now, format!("{id}: connected (runtime {runtime})"));
        self.dirty = true;
        Ok(())
    }

    /// A gateway's connection closed.
    pub fn disconnected(&mut self, now: Millis, id: &GatewayId) {
        if !self.online.remove(id) {
            return;
        }
        self.fresh.remove(id);
        if let Some(g) = self.saved.gateways.get_mut(id) {
            g.last_seen = Some(now);
        }
        for r in &mut self.saved.rollouts {
            r.handle_offline(now, id);
        }
        self.note(now, format!("{id}: disconnected"));
        self.dirty = true;
    }

    /// A gateway's report: its status and bundle history. Outcomes in it
    /// settle its place in rollouts; the first report after a connection
    /// also says whether an upgrade it took was cut short.
    pub fn report(&mut self, now: Millis, id: &GatewayId, report: Report) {
        let first = self.fresh.remove(id);
        let known: BTreeSet<String> = self
            .saved
            .gateways
            .get(id)
            .map(|g| g.history.iter().map(Value::to_string).collect())
            .unwrap_or_default();
        let mut fresh_lines = Vec::new();
        for entry in &report.history {
            if !known.contains(&entry.to_string()) {
                fresh_lines.push(describe(entry, self.pushed(id, entry)));
            }
        }
        // What the agent's status says it is installing, as (name, version).
        let running = &report.status["bundles"]["installing"];
        let running = match (running["name"].as_str(), running["version"].as_str()) {
            (Some(name), Some(version)) => Some((name.to_owned(), version.to_owned())),
            _ => None,
        };
        let Some(g) = self.saved.gateways.get_mut(id) else {
            return;
        };
        g.status = report.status;
        g.last_seen = Some(now);
        g.history = report.history;
        let excess = g.history.len().saturating_sub(HISTORY);
        g.history.drain(..excess);
        let history = g.history.clone();
        for line in fresh_lines {
            self.note(now, format!("{id}: {line}"));
        }
        for r in self.saved.rollouts.iter_mut() {
            let Some(state) = r.state_of(id) else {
                continue;
            };
            if matches!(
                state,
                TargetState::Waiting | TargetState::Succeeded { .. } | TargetState::Failed { .. }
            ) {
                continue;
            }
            let verdict = history.iter().rev().find_map(|e| judge(e, &r.bundle));
            match verdict {
                Some(Verdict::Success) => r.handle_outcome(now, id, Ok(())),
                Some(Verdict::Failure(reason)) => r.handle_outcome(now, id, Err(reason)),
                None if first
                    && report.installing.as_deref() != Some(r.bundle.sha256.as_str())
                    && running.as_ref()
                        != Some(&(r.bundle.name.clone(), r.bundle.version.clone())) =>
                {
                    r.handle_idle(now, id);
                }
                None => {}
            }
        }
        self.drain_events(now);
        self.dirty = true;
    }

    /// A gateway's answer to a bundle: taken (verified, upgrade started) or refused.
    pub fn answer(
        &mut self,
        now: Millis,
        id: &GatewayId,
        sha256: &str,
        accepted: bool,
        text: &str,
    ) {
        for r in self
            .saved
            .rollouts
            .iter_mut()
            .filter(|r| r.bundle.sha256 == sha256)
        {
            if accepted {
                r.handle_accepted(now, id);
            } else {
                r.handle_outcome(now, id, Err(format!("refused: {text}")));
            }
        }
        let what = if accepted { "took" } else { "refused" };
        self.note(
            now,
            format!("{id}: {what} bundle {}: {text}", short(sha256)),
        );
        self.drain_events(now);
        self.dirty = true;
    }

    /// Starts a rollout of `bundle` to `track`; its number.
    pub fn start_rollout(
        &mut self,
        now: Millis,
        track: &str,
        bundle: BundleRef,
    ) -> Result<u64, String> {
        if let Some(r) = self
            .saved
            .rollouts
            .iter()
            .find(|r| r.track == track && matches!(r.state, RolloutState::Running))
        {
            return Err(format!(
                "rollout {} of {} {} to track `{track}` is still running; wait for it to \
                 complete or halt",
                r.id, r.bundle.name, r.bundle.version
            ));
        }
        let members: Vec<Member> = self
            .saved
            .gateways
            .values()
            .filter(|g| g.track == track)
            .map(|g| Member {
                id: g.id.clone(),
                category: g.category(),
                online: self.online.contains(&g.id),
            })
            .collect();
        let id = self.saved.newest_rollout() + 1;
        let policy = self.tracks.get(track).policy;
        let rollout =
            Rollout::new(now, id, track, bundle, policy, &members).map_err(|e| e.to_string())?;
        self.note(
            now,
            format!(
                "rollout {id}: {} {} to track `{track}`: {} gateways in {} waves",
                rollout.bundle.name,
                rollout.bundle.version,
                rollout.targets.len(),
                rollout.waves
            ),
        );
        self.saved.rollouts.push(rollout);
        self.drain_events(now);
        self.dirty = true;
        Ok(id)
    }

    /// The next bundle to send: which gateway, which rollout.
    pub fn poll_send(&mut self, now: Millis, up_to: u64) -> Option<(GatewayId, u64)> {
        let gateways = &self.saved.gateways;
        let ready = |id: &GatewayId| gateways.get(id).is_some_and(|g| ready(&g.status));
        for r in self.saved.rollouts.iter_mut().filter(|r| r.id <= up_to) {
            if let Some(g) = r.poll_send_if(now, ready) {
                self.dirty = true;
                return Some((g, r.id));
            }
        }
        None
    }

    /// A send that could not go out: the gateway is offline after all.
    pub fn unsent(&mut self, now: Millis, id: &GatewayId) {
        self.disconnected(now, id);
        for r in &mut self.saved.rollouts {
            r.handle_offline(now, id);
        }
    }

    fn drain_events(&mut self, now: Millis) {
        let mut lines = Vec::new();
        for r in &mut self.saved.rollouts {
            while let Some(event) = r.poll_event() {
                lines.push(format!("rollout {}: {event}", r.id));
            }
        }
        for line in lines {
            self.note(now, line);
        }
    }

    /// Whether the controller sent the bundle of history `entry` to `id`.
    fn pushed(&self, id: &GatewayId, entry: &Value) -> bool {
        self.saved.rollouts.iter().any(|r| {
            judge(entry, &r.bundle).is_some()
                && r.targets.iter().any(|t| &t.id == id && t.sends > 0)
        })
    }

    /// Everything, as JSON: for `tandem ctl status --json`, the web page
    /// and its polling.
    pub fn snapshot(&self, now: Millis) -> Value {
        let gateways: Vec<Value> = self
            .saved
            .gateways
            .values()
            .map(|g| self.gateway_json(g))
            .collect();
        let rollouts: Vec<Value> = self.saved.rollouts.iter().rev().map(rollout_json).collect();
        let log: Vec<Value> = self
            .log
            .iter()
            .rev()
            .take(50)
            .map(|(at, line)| json!({"at": at.0, "line": line}))
            .collect();
        json!({
            "now": now.0,
            "gateways": gateways,
            "rollouts": rollouts,
            "log": log,
        })
    }

    fn gateway_json(&self, g: &Gateway) -> Value {
        let instances = super::wire::instances(&g.status);
        let history: Vec<Value> = g
            .history
            .iter()
            .rev()
            .take(10)
            .map(|e| {
                let mut e = e.clone();
                if let Some(obj) = e.as_object_mut() {
                    let by = if self.pushed(&g.id, &Value::Object(obj.clone())) {
                        "controller"
                    } else {
                        "local"
                    };
                    obj.insert("via".into(), by.into());
                }
                e
            })
            .collect();
        json!({
            "id": g.id.as_str(),
            "hardware": g.hardware,
            "devices": g.devices,
            "category": g.category().to_string(),
            "track": g.track,
            "online": self.online.contains(&g.id),
            "last_seen": g.last_seen.map(|m| m.0),
            "runtime": g.runtime,
            "graph": g.status["graph"],
            "version": g.status["bundles"]["installed"].clone(),
            "graph_hash": instances.first().map(|i| i["version"].clone()),
            "instances": instances,
            "divergence": g.status["divergence"],
            "compared": g.status["compared"],
            "upgrade": g.status["upgrade"]["phase"],
            "bundles": g.status["bundles"],
            "history": history,
        })
    }

    /// Every gateway halted or failed in rollouts, with the reasons.
    pub fn problems(&self) -> BTreeMap<GatewayId, String> {
        let mut out = BTreeMap::new();
        for r in &self.saved.rollouts {
            for t in &r.targets {
                match &t.state {
                    TargetState::Failed { reason, .. } => {
                        out.insert(t.id.clone(), format!("rollout {}: failed: {reason}", r.id));
                    }
                    TargetState::Skipped { reason } => {
                        out.insert(t.id.clone(), format!("rollout {}: {reason}", r.id));
                    }
                    _ => {}
                }
            }
        }
        out
    }
}

/// Whether an agent whose status is `status` can start an upgrade now:
/// both instances connected and serving, no upgrade or install running.
/// One that cannot would refuse the bundle; it waits, due, instead.
pub fn ready(status: &Value) -> bool {
    let serving = status["instances"].as_array().is_some_and(|all| {
        all.len() == 2
            && all
                .iter()
                .all(|i| i["role"] == "serving" && i["connected"] == true)
    });
    serving && status["upgrade"]["phase"] == "idle" && status["bundles"]["installing"].is_null()
}

/// A rollout as JSON, with each wave's progress.
pub fn rollout_json(r: &Rollout) -> Value {
    let waves: Vec<Value> = (0..r.waves)
        .map(|w| {
            let (done, size) = r.wave_progress(w);
            let gateways: Vec<Value> =
                r.targets
                    .iter()
                    .filter(|t| t.wave == w)
                    .map(|t| {
                        let reason = match &t.state {
                            TargetState::Failed { reason, .. }
                            | TargetState::Skipped { reason } => Some(reason.clone()),
                            _ => None,
                        };
                        json!({
                            "id": t.id.as_str(), "category": t.category.to_string(),
                            "state": t.state.name(), "online": t.online, "sends": t.sends,
                            "reason": reason,
                        })
                    })
                    .collect();
            json!({
                "wave": w, "succeeded": done, "size": size, "needs": r.wave_needs(w),
                "started": w <= r.wave, "gateways": gateways,
            })
        })
        .collect();
    let (state, reason) = match &r.state {
        RolloutState::Running => ("running", None),
        RolloutState::Complete { .. } => ("complete", None),
        RolloutState::Halted { reason, .. } => ("halted", Some(reason.clone())),
    };
    json!({
        "id": r.id,
        "track": r.track,
        "bundle": {"name": r.bundle.name, "version": r.bundle.version, "sha256": r.bundle.sha256},
        "state": state,
        "reason": reason,
        "wave": r.wave,
        "waves": waves,
        "counts": r.counts(),
        "started": r.started.0,
        "policy": {
            "waves": r.policy.waves,
            "success_percent": r.policy.success_percent,
            "halt_after_failures": r.policy.halt_after_failures,
        },
    })
}

/// The first 12 hex digits of a digest, for logs.
pub fn short(sha256: &str) -> &str {
    sha256.get(..12).unwrap_or(sha256)
}

/// One history entry, for the log.
fn describe(entry: &Value, pushed: bool) -> String {
    let via = if pushed { "" } else { " (installed locally)" };
    let name = entry["name"].as_str().unwrap_or("?");
    let version = entry["version"].as_str().unwrap_or("?");
    let outcome = entry["outcome"]
        .as_str()
        .or(entry["result"].as_str())
        .unwrap_or("?");
    match entry["reason"].as_str() {
        Some(reason) => format!("{name} {version}: {outcome}: {reason}{via}"),
        None => format!("{name} {version}: {outcome}{via}"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::ctl::plan::Policy;

    fn enrolled(ids: &[&str]) -> Fleet {
        let mut fleet = Fleet::new(Saved::default(), Tracks::default());
        for (i, id) in ids.iter().enumerate() {
            let gw = GatewayId::parse(id).unwrap();
            let gateway = Gateway::new(
                gw.clone(),
                format!("hw{i}"),
                vec!["d".into()],
                "stable".into(),
                Millis(0),
            );
            fleet.enrol(Millis(0), gateway);
            fleet.connected(Millis(1), &gw, "0.1.0").unwrap();
            fleet.report(Millis(1), &gw, ready_report());
        }
        fleet
    }

    fn ready_report() -> Report {
        Report {
            status: json!({
                "instances": [{"role": "serving", "connected": true},
                              {"role": "serving", "connected": true}],
                "upgrade": {"phase": "idle"},
                "bundles": {"installing": null},
            }),
            ..Report::default()
        }
    }

    fn bundle() -> BundleRef {
        BundleRef {
            sha256: "cd".repeat(32),
            name: "fleet".into(),
            version: "2.0.0".into(),
        }
    }

    #[test]
    fn reports_settle_rollouts_and_restarts_are_sent_again() {
        let mut fleet = enrolled(&["gw-1", "gw-2"]);
        let (a, b) = (
            GatewayId::parse("gw-1").unwrap(),
            GatewayId::parse("gw-2").unwrap(),
        );
        assert!(fleet
            .connected(Millis(1), &GatewayId::parse("gw-9").unwrap(), "x")
            .is_err());
        fleet.start_rollout(Millis(2), "stable", bundle()).unwrap();
        assert_eq!(fleet.saved.rollouts[0].policy, Policy::default());
        let mut sent = vec![fleet.poll_send(Millis(3), u64::MAX).unwrap().0];
        sent.push(fleet.poll_send(Millis(3), u64::MAX).unwrap().0);
        assert_eq!(
            sent,
            [a.clone(), b.clone()],
            "two categories: both canaries"
        );
        fleet.answer(Millis(4), &a, &bundle().sha256, true, "installing");
        let promoted = json!({"bundle": "fleet 2.0.0", "name": "fleet", "version": "2.0.0",
            "result": "promoted", "comparison": {"compared": 40, "mismatched": 0}});
        fleet.report(
            Millis(5),
            &a,
            Report {
                history: vec![promoted],
                ..Report::default()
            },
        );
        // gw-2 restarts before its outcome: back, idle, sent again.
        fleet.disconnected(Millis(6), &b);
        fleet.connected(Millis(7), &b, "0.1.0").unwrap();
        fleet.report(Millis(8), &b, ready_report());
        assert_eq!(fleet.poll_send(Millis(9), u64::MAX), Some((b.clone(), 1)));
        let r = &fleet.saved.rollouts[0];
        assert_eq!(r.state_of(&a).map(TargetState::name), Some("succeeded"));
        let snapshot = fleet.snapshot(Millis(10));
        assert_eq!(snapshot["gateways"][0]["history"][0]["via"], "controller");
        // A USB install of another bundle is a local one.
        let usb = json!({"bundle": "tools 1.0.0", "name": "tools", "version": "1.0.0",
                         "result": "promoted"});
        fleet.report(
            Millis(11),
            &b,
            Report {
                history: vec![usb],
                ..Report::default()
            },
        );
        let snapshot = fleet.snapshot(Millis(12));
        assert_eq!(snapshot["gateways"][1]["history"][0]["via"], "local");
        assert!(fleet
            .log
            .iter()
            .any(|(_, l)| l.contains("installed locally")));
    }

    #[test]
    fn a_rollout_is_sent_only_once_it_is_on_disk() {
        let mut fleet = enrolled(&["gw-1"]);
        let id = fleet.start_rollout(Millis(2), "stable", bundle()).unwrap();
        assert_eq!(fleet.poll_send(Millis(3), id - 1), None);
        assert!(fleet.poll_send(Millis(3), id).is_some());
    }

    #[test]
    fn a_link_lost_mid_install_is_not_sent_again() {
        let mut fleet = enrolled(&["gw-1"]);
        let id = GatewayId::parse("gw-1").unwrap();
        fleet.start_rollout(Millis(2), "stable", bundle()).unwrap();
        assert!(fleet.poll_send(Millis(3), u64::MAX).is_some());
        fleet.answer(Millis(4), &id, &bundle().sha256, true, "installing");
        fleet.disconnected(Millis(5), &id);
        fleet.connected(Millis(6), &id, "0.1.0").unwrap();
        let status = json!({"bundles": {"installing": {"name": "fleet", "version": "2.0.0"}}});
        fleet.report(
            Millis(7),
            &id,
            Report {
                status,
                ..Report::default()
            },
        );
        assert_eq!(
            fleet.poll_send(Millis(8), u64::MAX),
            None,
            "its agent is still upgrading"
        );
        let r = &fleet.saved.rollouts[0];
        assert_eq!(r.state_of(&id).map(TargetState::name), Some("installing"));
    }

    #[test]
    fn a_restarted_controller_sends_again_what_was_not_answered() {
        let mut fleet = enrolled(&["gw-1"]);
        fleet.start_rollout(Millis(2), "stable", bundle()).unwrap();
        assert!(fleet.poll_send(Millis(3), u64::MAX).is_some());
        let saved = fleet.saved.clone();
        let mut again = Fleet::new(saved, Tracks::default());
        assert_eq!(
            again.poll_send(Millis(4), u64::MAX),
            None,
            "nobody is connected yet"
        );
        let id = GatewayId::parse("gw-1").unwrap();
        again.connected(Millis(5), &id, "0.1.0").unwrap();
        assert_eq!(again.poll_send(Millis(6), u64::MAX), Some((id, 1)));
    }
}
