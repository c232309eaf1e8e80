//! The planner in memory: hand-written cases, then many seeded fleets
//! whose gateways go offline, restart and fail at random.
#![allow(clippy::unwrap_used)]

use super::*;

fn id(name: &str) -> GatewayId {
    GatewayId::parse(name).unwrap()
}

fn member(name: &str, hardware: &str, devices: &[&str], online: bool) -> Member {
    let devices: Vec<String> = devices.iter().map(|d| (*d).to_owned()).collect();
    Member {
        id: id(name),
        category: Category::new(hardware, &devices),
        online,
    }
}

fn bundle() -> BundleRef {
    BundleRef {
        sha256: "ab".repeat(32),
        name: "home".into(),
        version: "2.0.0".into(),
    }
}

fn fleet(n: usize) -> Vec<Member> {
    (0..n)
        .map(|i| {
            let (hw, dev) = if i % 3 == 0 {
                ("pi4", "inverter-x")
            } else {
                ("cm4", "battery-y")
            };
            member(&format!("gw-{i:02}"), hw, &[dev], true)
        })
        .collect()
}

#[test]
fn gateway_names_are_dns_like() {
    assert!(GatewayId::parse("gw-01").is_ok());
    for bad in ["", "-gw", "GW", "gw_1", "gw.1", &"a".repeat(64)] {
        let e = GatewayId::parse(bad).unwrap_err();
        assert!(e.contains("not a gateway name"), "{e}");
    }
}

#[test]
fn categories_ignore_device_order() {
    let a = Category::new("pi4", &["b".into(), "a".into(), "a".into()]);
    let b = Category::new("pi4", &["a".into(), "b".into()]);
    assert_eq!(a, b);
    assert_eq!(a.to_string(), "pi4 [a, b]");
}

#[test]
fn policies_are_checked() {
    let p = Policy {
        waves: vec![10, 50],
        ..Policy::default()
    };
    assert_eq!(p.validate().unwrap().waves, vec![10, 50, 100]);
    let bad = Policy {
        waves: vec![50, 10],
        ..Policy::default()
    };
    assert!(bad.validate().unwrap_err().contains("must increase"));
    let bad = Policy {
        success_percent: 0,
        ..Policy::default()
    };
    assert!(bad.validate().is_err());
}

#[test]
fn wave_zero_is_one_gateway_of_each_category() {
    let members = fleet(10);
    let waves = plan_waves(&members, &[50, 100]);
    let first: Vec<&str> = waves[0].iter().map(|&i| members[i].id.as_str()).collect();
    assert_eq!(first, ["gw-00", "gw-01"]);
    // 50% of 10 is 5: three more after the two canaries; then the rest.
    assert_eq!(waves[1].len(), 3);
    assert_eq!(waves[2].len(), 5);
    let all: BTreeSet<usize> = waves.iter().flatten().copied().collect();
    assert_eq!(all.len(), 10);
}

#[test]
fn empty_tracks_are_refused() {
    let e = Rollout::new(Millis(0), 1, "stable", bundle(), Policy::default(), &[]).unwrap_err();
    assert!(e.to_string().contains("has no gateways"), "{e}");
}

#[test]
fn a_good_bundle_goes_wave_by_wave() {
    let members = fleet(6);
    let mut r = Rollout::new(
        Millis(0),
        1,
        "stable",
        bundle(),
        Policy::default(),
        &members,
    )
    .unwrap();
    let mut sent = Vec::new();
    while let Some(g) = r.poll_send(Millis(1)) {
        sent.push(g);
    }
    assert_eq!(sent, [id("gw-00"), id("gw-01")], "only the canaries first");
    r.handle_accepted(Millis(2), &sent[0]);
    r.handle_outcome(Millis(3), &sent[0], Ok(()));
    assert!(
        r.poll_send(Millis(3)).is_none(),
        "wave 1 waits for all canaries"
    );
    r.handle_outcome(Millis(4), &sent[1], Ok(()));
    let mut rest = Vec::new();
    while let Some(g) = r.poll_send(Millis(5)) {
        rest.push(g);
    }
    // 25% of 6 rounds up to 2: both canaries already are, so wave 1 is the rest.
    assert_eq!(rest.len(), 4);
    for g in &rest {
        r.handle_outcome(Millis(6), g, Ok(()));
    }
    assert!(matches!(r.state, RolloutState::Complete { .. }));
}

#[test]
fn a_failed_canary_halts_and_touches_nobody_else() {
    let members = fleet(6);
    let mut r = Rollout::new(
        Millis(0),
        1,
        "stable",
        bundle(),
        Policy::default(),
        &members,
    )
    .unwrap();
    let a = r.poll_send(Millis(1)).unwrap();
    let b = r.poll_send(Millis(1)).unwrap();
    r.handle_outcome(Millis(2), &a, Err("rolled back: divergence".into()));
    assert!(r.poll_send(Millis(3)).is_none());
    let RolloutState::Halted { reason, .. } = &r.state else {
        panic!("{:?}", r.state)
    };
    assert!(
        reason.contains("gw-00: rolled back: divergence"),
        "{reason}"
    );
    // The other canary was already sent: its outcome is still recorded.
    r.handle_outcome(Millis(4), &b, Ok(()));
    assert_eq!(r.counts().get("skipped"), Some(&4));
    assert_eq!(r.counts().get("succeeded"), Some(&1));
}

#[test]
fn offline_gateways_get_it_when_back_and_restarted_ones_again() {
    let mut members = fleet(3);
    members[1].online = false;
    let policy = Policy {
        waves: vec![100],
        success_percent: 50,
        halt_after_failures: 1,
    };
    let mut r = Rollout::new(Millis(0), 1, "stable", bundle(), policy, &members).unwrap();
    assert_eq!(r.poll_send(Millis(1)), Some(id("gw-00")));
    assert_eq!(r.poll_send(Millis(1)), None, "gw-01 is offline");
    r.handle_accepted(Millis(2), &id("gw-00"));
    // gw-00 restarts mid-upgrade: back, not installing, no outcome.
    r.handle_offline(Millis(3), &id("gw-00"));
    r.handle_online(Millis(4), &id("gw-00"));
    r.handle_idle(Millis(4), &id("gw-00"));
    assert_eq!(r.poll_send(Millis(5)), Some(id("gw-00")));
    r.handle_outcome(Millis(6), &id("gw-00"), Ok(()));
    // 50% of wave 0 (two canaries) is one: wave 1 starts.
    assert_eq!(r.poll_send(Millis(7)), Some(id("gw-02")));
    r.handle_outcome(Millis(8), &id("gw-02"), Ok(()));
    assert!(matches!(r.state, RolloutState::Complete { .. }));
    r.handle_online(Millis(9), &id("gw-01"));
    assert_eq!(r.poll_send(Millis(9)), Some(id("gw-01")), "late, but sent");
    assert_eq!(r.targets.iter().map(|t| t.sends).sum::<u32>(), 4);
}

#[test]
fn rollouts_survive_a_round_trip_through_json() {
    let mut r = Rollout::new(
        Millis(0),
        7,
        "canary",
        bundle(),
        Policy::default(),
        &fleet(4),
    )
    .unwrap();
    let _ = r.poll_send(Millis(1));
    let text = serde_json::to_string(&r).unwrap();
    let back: Rollout = serde_json::from_str(&text).unwrap();
    assert_eq!(back.targets, r.targets);
    assert_eq!(back.state, r.state);
}

/// xorshift64*: a small deterministic generator for the simulations.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// One simulated fleet: gateways go offline and back, restart mid-upgrade,
/// and some fail. Checks the rules a fleet operator relies on at every step.
fn simulate(seed: u64) {
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let n = 1 + rng.below(30) as usize;
    let categories = 1 + rng.below(4);
    let members: Vec<Member> = (0..n)
        .map(|i| {
            let c = rng.below(categories);
            member(
                &format!("gw-{i:02}"),
                &format!("hw{c}"),
                &[&format!("dev{}", c % 2)],
                rng.below(4) != 0,
            )
        })
        .collect();
    let bad: BTreeSet<GatewayId> = members
        .iter()
        .filter(|_| rng.below(8) == 0)
        .map(|m| m.id.clone())
        .collect();
    let policy = Policy {
        waves: if rng.below(2) == 0 {
            vec![10, 50, 100]
        } else {
            vec![100]
        },
        success_percent: [50, 80, 100][rng.below(3) as usize],
        halt_after_failures: 1 + rng.below(2) as u32,
    }
    .validate()
    .unwrap();
    let mut r = Rollout::new(Millis(0), 1, "t", bundle(), policy.clone(), &members).unwrap();
    let mut online: BTreeMap<GatewayId, bool> =
        members.iter().map(|m| (m.id.clone(), m.online)).collect();
    let mut in_flight: BTreeSet<GatewayId> = BTreeSet::new();
    let mut sent_after_halt = false;
    for step in 1..4000u64 {
        let now = Millis(step);
        match rng.below(10) {
            0 => {
                // A gateway goes offline, or comes back (maybe restarted).
                let m = &members[rng.below(n as u64) as usize];
                let up = online.get_mut(&m.id).unwrap();
                *up = !*up;
                if *up {
                    r.handle_online(now, &m.id);
                    if rng.below(2) == 0 {
                        in_flight.remove(&m.id);
                        r.handle_idle(now, &m.id);
                    }
                } else {
                    r.handle_offline(now, &m.id);
                }
            }
            1..=4 => {
                if let Some(g) = r.poll_send(now) {
                    assert!(online[&g], "seed {seed}: sent to offline {g}");
                    sent_after_halt |= !r.is_active();
                    // The canaries come first.
                    let t = r.targets.iter().find(|t| t.id == g).unwrap();
                    for earlier in 0..t.wave {
                        let (done, _) = r.wave_progress(earlier);
                        assert!(
                            done >= r.wave_needs(earlier),
                            "seed {seed}: {g} of wave {} sent before wave {earlier} met its threshold",
                            t.wave
                        );
                    }
                    in_flight.insert(g);
                }
            }
            _ => {
                let ready: Vec<GatewayId> =
                    in_flight.iter().filter(|g| online[*g]).cloned().collect();
                if let Some(g) = ready.get(rng.below(ready.len().max(1) as u64) as usize) {
                    in_flight.remove(g);
                    if bad.contains(g) {
                        r.handle_outcome(now, g, Err("rolled back".into()));
                    } else {
                        r.handle_accepted(now, g);
                        r.handle_outcome(now, g, Ok(()));
                    }
                }
            }
        }
        while r.poll_event().is_some() {}
        let failed = r.counts().get("failed").copied().unwrap_or(0);
        if failed as u32 >= policy.halt_after_failures {
            assert!(
                !r.is_active(),
                "seed {seed}: {failed} failures, still running"
            );
        }
        if let Some(g) = r.poll_send(now) {
            // Put it back: only the branch above sends.
            r.handle_offline(now, &g);
            r.handle_online(now, &g);
        }
    }
    assert!(!sent_after_halt, "seed {seed}: sent after the halt");
    // Bring everybody back and let every upgrade finish: a rollout without
    // failures reaches every gateway.
    for m in &members {
        r.handle_online(Millis(5000), &m.id);
    }
    for _ in 0..4 * n {
        while let Some(g) = r.poll_send(Millis(5001)) {
            in_flight.insert(g);
        }
        for g in std::mem::take(&mut in_flight) {
            let outcome = if bad.contains(&g) {
                Err("rolled back".into())
            } else {
                Ok(())
            };
            r.handle_outcome(Millis(5002), &g, outcome);
        }
    }
    let reached = r
        .targets
        .iter()
        .filter(|t| matches!(t.state, TargetState::Succeeded { .. }))
        .count();
    if bad.is_empty() {
        assert_eq!(reached, n, "seed {seed}: {:?}", r.counts());
        assert!(
            matches!(r.state, RolloutState::Complete { .. }),
            "seed {seed}"
        );
    }
    if !r.is_active() {
        // Nobody beyond the waves already started was touched.
        for t in &r.targets {
            if t.wave > r.wave {
                assert!(
                    matches!(t.state, TargetState::Skipped { .. }),
                    "seed {seed}"
                );
                assert_eq!(t.sends, 0, "seed {seed}");
            }
        }
    }
}

#[test]
fn seeded_fleets_keep_the_rules() {
    let seeds: u64 = std::env::var("TANDEM_ROLLOUT_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(500);
    for seed in 0..seeds {
        simulate(seed);
    }
}
