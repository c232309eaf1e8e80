//! Live upgrades in the seeded simulation: the [`Upgrader`] driven beside the
//! supervisor, as the runtime drives it, on the same simulated unit. The new
//! release is the simulation's graph with another version number (2, from
//! 1): matching (the same outputs) or diverging (its sums off by 0.5). One
//! crash or hang may be injected into either instance during one phase
//! (transfer, shadow, promoted or replacing), on top of the usual kills
//! before the upgrade. What must hold:
//!
//! - every phase ends by its deadline, or at most a heartbeat timeout after
//!   it (a rollback waits for the old instance to show it is not hung, or to
//!   be found lost), and the upgrade ends;
//! - a diverging upgrade always rolls back, and the old version serves with
//!   current state: the sink gets exactly the reference output;
//! - a matching one ends promoted with both instances on the new version,
//!   unless a crash forced a rollback (the new instance lost before the
//!   replacing phase, or the old one during the transfer) or the phase
//!   deadlines were set too tight to make it;
//! - the sink gets exactly the reference output unless a fault took the one
//!   instance holding the state (then nothing is repeated or reordered), and
//!   both instances end in the same state.
//!
//! `TANDEM_SIM_SEED=<n> cargo test -p tandem-core ha::sim::upgrade` replays
//! one seed with a trace.

use super::{
    input_since_cold_start, reference, run_seeds, sink_matches_reference, stream, Ev, Instance,
    Scenario, Sim, HONEST, INPUTS, MS, OUT_BASE,
};
use crate::ha::event::Event;
use crate::ha::msg::{Color, Nanos, ToAgent};
use crate::ha::upgrade::{
    Applied, Outcome, Period, Phase, Policy, RollbackReason, UpgradeEvent, Upgrader, NEW_COLOR,
};
use crate::record::{Record, Seq};
use std::collections::BTreeMap;

/// The version running before the upgrade.
const OLD: u32 = 1;
/// The version upgraded to.
const NEW: u32 = 2;

/// One crash or hang, in one phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Fault {
    phase: Phase,
    victim: Color,
    hang: bool,
    /// After the phase began.
    delay: i64,
}

/// How one seed's upgrade goes.
#[derive(Clone, Copy, Debug)]
struct Plan {
    /// The new version's sums are off by 0.5.
    diverging: bool,
    policy: Policy,
    /// Phase deadlines short enough to be missed.
    tight: bool,
    fault: Option<Fault>,
    start_at: i64,
}

impl Plan {
    fn draw(sim: &mut Sim, diverging: bool) -> Plan {
        let rng = &mut sim.rng;
        let period = if rng.chance(50) {
            Period::Time(Nanos(rng.range(20, 80) * MS))
        } else {
            Period::Records(rng.range(20, 200) as u64)
        };
        let tight = rng.chance(25);
        let phase_timeout = if tight {
            Nanos(rng.range(20, 70) * MS)
        } else {
            Nanos(1_000 * MS)
        };
        let max_mismatch = if rng.chance(50) { 0.0 } else { 0.05 };
        // A diverging new version serving alone would emit its outputs: the
        // old one is only killed while it is the one holding state
        // (transfer), where that is a loss of both, not an upgrade's doing.
        let faults: &[(Phase, Color)] = if diverging {
            &[
                (Phase::Transfer, Color::Blue),
                (Phase::Transfer, NEW_COLOR),
                (Phase::Shadow, NEW_COLOR),
            ]
        } else {
            &[
                (Phase::Transfer, Color::Blue),
                (Phase::Transfer, NEW_COLOR),
                (Phase::Shadow, Color::Blue),
                (Phase::Shadow, NEW_COLOR),
                (Phase::Promoted, Color::Blue),
                (Phase::Promoted, NEW_COLOR),
                (Phase::Replacing, Color::Blue),
                (Phase::Replacing, NEW_COLOR),
            ]
        };
        let fault = (!rng.chance(15)).then(|| {
            let (phase, victim) = faults[rng.range(0, faults.len() as i64 - 1) as usize];
            let within = match phase {
                Phase::Transfer | Phase::Replacing => 8,
                Phase::Shadow | Phase::Promoted => 30,
            };
            Fault {
                phase,
                victim,
                hang: rng.chance(40),
                delay: rng.range(0, within * MS),
            }
        });
        Plan {
            diverging,
            policy: Policy {
                period,
                phase_timeout,
                max_mismatch,
            },
            tight,
            fault,
            // After the base simulation's kills, and after a hang among them
            // was detected (100 ms): the upgrade meets only its own fault.
            start_at: rng.range(200, 240) * MS,
        }
    }
}

#[derive(Debug)]
enum Timer {
    Start,
    Fault,
}

/// A fault that was injected.
#[derive(Clone, Copy, Debug)]
struct Injected {
    fault: Fault,
    /// The other instance was live: it holds the state.
    safe: bool,
    /// The supervisor found the victim lost.
    found: bool,
    /// The upgrader restarted the other instance before the victim was
    /// found lost: a hang within a heartbeat of the old colour's
    /// replacement is not seen in time, and takes the state with it.
    overtaken: bool,
}

/// The simulated unit with its upgrader, driven as the runtime drives them.
struct UpgradeSim {
    sim: Sim,
    plan: Plan,
    up: Upgrader<u32>,
    timers: BTreeMap<(i64, u64), Timer>,
    /// Frames of processes at or below this generation are refused (they were
    /// stopped before their hello arrived, as the runtime refuses a hello
    /// from a process it did not start).
    fenced: [u64; 2],
    phase: Option<(Phase, i64)>,
    injected: Option<Injected>,
    ended: Option<(i64, Outcome)>,
    late: Vec<String>,
}

impl UpgradeSim {
    fn new(seed: u64, diverging: bool, trace: bool) -> UpgradeSim {
        let scenario = Scenario {
            chaos_until: 80 * MS,
            ..HONEST
        };
        let mut sim = Sim::new(seed, scenario, trace);
        // Input flows until the upgrade has ended.
        sim.ingress_until = i64::MAX / 2;
        let plan = Plan::draw(&mut sim, diverging);
        if trace {
            eprintln!("upgrade plan: {plan:?}");
        }
        let mut up = UpgradeSim {
            sim,
            plan,
            up: Upgrader::new(OLD),
            timers: BTreeMap::new(),
            fenced: [0; 2],
            phase: None,
            injected: None,
            ended: None,
            late: Vec::new(),
        };
        up.timer(plan.start_at, Timer::Start);
        up
    }

    fn timer(&mut self, at: i64, timer: Timer) {
        self.sim.order += 1;
        self.timers.insert((at, self.sim.order), timer);
    }

    fn trace(&self, what: &str) {
        if self.sim.trace {
            eprintln!("{:>9.3} ms  upgrade: {what}", self.sim.ms());
        }
    }

    /// Runs the unit's events and the upgrade's timers in time order.
    fn run(&mut self, until: i64) {
        loop {
            let unit = self.sim.queue.first_key_value().map(|(k, _)| *k);
            let mine = self.timers.first_key_value().map(|(k, _)| *k);
            let next = match (unit, mine) {
                (Some(u), Some(m)) => u.min(m),
                (Some(k), None) | (None, Some(k)) => k,
                (None, None) => break,
            };
            if next.0 > until {
                break;
            }
            self.sim.now = next.0;
            if Some(next) == mine {
                if let Some(timer) = self.timers.remove(&next) {
                    self.on_timer(timer);
                }
            } else if let Some(ev) = self.sim.queue.remove(&next) {
                self.step(ev);
            }
            self.pump();
        }
        self.sim.now = until;
    }

    fn step(&mut self, ev: Ev) {
        match ev {
            Ev::Start(color) => self.start(color),
            Ev::ToAgent(color, gen, _) if gen <= self.fenced[color.index()] => {}
            Ev::Tick => {
                self.sim.step(Ev::Tick);
                let now = Nanos(self.sim.now);
                self.up.handle_tick(now, &self.sim.agent);
            }
            ev => self.sim.step(ev),
        }
    }

    /// Starts `color`'s process on the release the upgrader says it runs.
    fn start(&mut self, color: Color) {
        let sim = &mut self.sim;
        sim.starting[color.index()] = false;
        sim.restarts.handle_started(color);
        sim.gens[color.index()] += 1;
        let gen = sim.gens[color.index()];
        let version = *self.up.release(color);
        let skew = (version == NEW && self.plan.diverging).then_some(Seq(0));
        sim.procs[color.index()] = Some(Instance::new(gen, skew));
        let hello = ToAgent::Hello {
            color,
            version,
            pid: gen as u32,
        };
        let t = sim.delivery(color, 1);
        sim.at(t, Ev::ToAgent(color, gen, hello));
    }

    fn on_timer(&mut self, timer: Timer) {
        match timer {
            Timer::Start => {
                let now = Nanos(self.sim.now);
                match self.up.start(now, NEW, self.plan.policy, &self.sim.agent) {
                    Ok(_) => {
                        self.trace("started");
                        self.entered(Phase::Transfer);
                    }
                    // Not redundant yet (kills before the upgrade): later.
                    Err(_) => self.timer(self.sim.now + 10 * MS, Timer::Start),
                }
            }
            Timer::Fault => self.inject(),
        }
    }

    /// Kills or hangs the plan's victim, if the phase is still on; waits
    /// for its process if it is not up yet.
    fn inject(&mut self) {
        let Some(fault) = self.plan.fault else {
            return;
        };
        if self.up.phase() != Some(fault.phase) {
            self.trace(&format!("{fault:?} missed its phase"));
            return;
        }
        let sim = &mut self.sim;
        let (victim, other) = (fault.victim, fault.victim.other());
        let Some(gen) = sim.procs[victim.index()].as_ref().map(|p| p.gen) else {
            self.timer(self.sim.now + 2 * MS, Timer::Fault);
            return;
        };
        let safe = sim.procs[other.index()].is_some() && sim.agent.is_live(other);
        sim.procs[victim.index()] = None;
        if !fault.hang {
            let t = sim.now + sim.rng.range(MS / 2, 2 * MS);
            sim.at(t, Ev::Disconnected(victim, gen));
        }
        self.injected = Some(Injected {
            fault,
            safe,
            found: false,
            overtaken: false,
        });
        self.trace(&format!("injected {fault:?}, safe {safe}"));
    }

    /// Drains the unit (as the base simulation does), feeds the upgrader
    /// the supervisor's events, and applies what the upgrader asks, until
    /// nothing more happens.
    fn pump(&mut self) {
        loop {
            let seen = self.sim.events.len();
            self.sim.pump();
            let now = Nanos(self.sim.now);
            for i in seen..self.sim.events.len() {
                let event = &self.sim.events[i].1;
                if let Event::Lost { color, .. } = *event {
                    if let Some(a) = self.injected.as_mut().filter(|a| a.fault.victim == color) {
                        a.found = true;
                    }
                }
                self.up.handle_supervisor_event(now, event);
            }
            let acted = self.apply();
            self.sim.agent.set_vigilant(now, self.up.phase().is_some());
            self.progress();
            if !acted {
                return;
            }
        }
    }

    /// Applies the upgrader's actions to the supervisor (as the runtime
    /// does, through [`Upgrader::apply`]) and to the processes.
    fn apply(&mut self) -> bool {
        let mut acted = false;
        while let Some(applied) = self.up.apply(&mut self.sim.agent) {
            self.trace(&format!("{applied:?}"));
            acted = true;
            let color = match applied {
                Applied::ClearedDivergences | Applied::Promoted(_) => continue,
                Applied::Dropped(color) | Applied::Stop(color) => color,
            };
            if let Some(a) = self.injected.as_mut() {
                if a.fault.victim == color.other() && !a.found {
                    a.overtaken = true;
                    a.safe = false;
                }
            }
            if applied == Applied::Stop(color) {
                // Not connected: whatever runs is stopped before its hello
                // counts, and a new process started.
                let sim = &mut self.sim;
                sim.procs[color.index()] = None;
                self.fenced[color.index()] = sim.gens[color.index()];
                sim.restart(color, false);
            } else {
                // Dropped: its loss comes next, a stop asked for, and the
                // base simulation restarts it.
                self.sim.stopping[color.index()] = true;
            }
        }
        acted
    }

    /// Follows the phases: checks each ended by its deadline, schedules the
    /// fault, notes the outcome.
    fn progress(&mut self) {
        while let Some(event) = self.up.poll_event() {
            self.trace(&format!("{event:?}"));
            match event {
                UpgradeEvent::Entered(phase) => self.entered(phase),
                UpgradeEvent::OldLost(_) => self.entered(Phase::Replacing),
                UpgradeEvent::Ended(outcome) => {
                    self.close_phase();
                    self.ended = Some((self.sim.now, outcome));
                    // Input goes on a while, then stops so the unit settles.
                    self.sim.ingress_until = self.sim.now + 50 * MS;
                }
            }
        }
    }

    fn entered(&mut self, phase: Phase) {
        self.close_phase();
        self.phase = Some((phase, self.sim.now));
        if let Some(fault) = self.plan.fault.filter(|f| f.phase == phase) {
            self.timer(self.sim.now + fault.delay, Timer::Fault);
        }
    }

    fn close_phase(&mut self) {
        let Some((phase, since)) = self.phase.take() else {
            return;
        };
        let lasted = self.sim.now - since;
        // Deadlines are checked on the 1 ms tick; a rollback past one waits
        // for the old instance to show it is not hung (its next heartbeat
        // after the input of that moment), or to be found lost when it is: a
        // heartbeat timeout (100 ms) after its last frame, which the network
        // may have held up to 33 ms.
        let allowed = self.plan.policy.allowed(phase).0 + MS + 133 * MS;
        if lasted > allowed {
            self.late.push(format!(
                "phase {phase} lasted {:.3} ms, allowed {:.3} ms",
                lasted as f64 / MS as f64,
                allowed as f64 / MS as f64
            ));
        }
    }
}

/// True when `fault` makes a matching upgrade roll back.
fn forces_rollback(fault: Fault) -> bool {
    match fault.phase {
        Phase::Transfer => true,
        Phase::Shadow | Phase::Promoted => fault.victim == NEW_COLOR,
        Phase::Replacing => false,
    }
}

/// Runs one upgrade to its end and the unit until it settles.
fn simulate_upgrade(seed: u64, diverging: bool, trace: bool) -> Result<UpgradeSim, String> {
    let mut u = UpgradeSim::new(seed, diverging, trace);
    // Long enough for every phase to reach its deadline twice over.
    let longest = Phase::ALL
        .iter()
        .map(|p| u.plan.policy.allowed(*p).0)
        .sum::<i64>();
    let give_up = u.plan.start_at + 2 * longest + 1_000 * MS;
    while u.ended.is_none() && u.sim.now < give_up {
        let next = u.sim.now + 10 * MS;
        u.run(next);
    }
    let Some((end, _)) = u.ended else {
        return Err(format!(
            "the upgrade did not end by {} ms: {:?}",
            give_up / MS,
            u.up.status(Nanos(u.sim.now))
        ));
    };
    let settle_by = end + 3_000 * MS;
    u.run(end + 60 * MS);
    while !u.sim.settled() && u.sim.now < settle_by {
        let next = u.sim.now + 10 * MS;
        u.run(next);
    }
    if !u.sim.settled() {
        return Err(format!(
            "instances not settled {} ms after the upgrade: blue {:?}, green {:?}",
            settle_by / MS,
            u.sim.agent.role(Color::Blue),
            u.sim.agent.role(Color::Green)
        ));
    }
    let mark = u.sim.agent.place_barrier();
    u.pump();
    // Two delay spikes (up to 30 ms each way) are within this.
    u.run(u.sim.now + 100 * MS);
    let Some(&(_, blue, green)) = u.sim.hashes.iter().find(|h| h.0 == mark.id) else {
        return Err(format!("no state hashes at the final barrier {}", mark.id));
    };
    if blue != green {
        return Err(format!(
            "state hashes differ at the final barrier: blue {blue:#x}, green {green:#x}"
        ));
    }
    Ok(u)
}

/// The sink holds exactly the reference output from the one cold start on,
/// and both instances its state.
fn exact(sim: &Sim) -> Result<(), String> {
    let input = input_since_cold_start(sim)?;
    sink_matches_reference(sim, &input)?;
    let mut state = super::Graph::default();
    reference_state(&input, &mut state);
    for color in Color::BOTH {
        let graph = sim.procs[color.index()].as_ref().map(|p| &p.graph);
        if graph != Some(&state) {
            return Err(format!(
                "{color} ends in state {graph:?}, expected {state:?}"
            ));
        }
    }
    Ok(())
}

fn reference_state(input: &[Record], graph: &mut super::Graph) {
    let mut out = Vec::new();
    for r in input {
        graph.process(r, 0.0, &mut out);
    }
}

/// Nothing at the sink is repeated or out of order.
fn no_repeats(sim: &Sim) -> Result<(), String> {
    let expected = reference(&sim.input);
    for channel in (0..INPUTS).map(|ch| OUT_BASE + ch) {
        let mut want: BTreeMap<Seq, usize> = BTreeMap::new();
        for r in stream(&expected, channel) {
            *want.entry(r.seq).or_default() += 1;
        }
        let got = stream(&sim.sink, channel);
        if let Some(pair) = got.windows(2).find(|p| p[1].seq < p[0].seq) {
            return Err(format!(
                "stream {channel}: seq {} emitted after {}",
                pair[1].seq, pair[0].seq
            ));
        }
        let mut seen: BTreeMap<Seq, usize> = BTreeMap::new();
        for r in &got {
            let n = seen.entry(r.seq).or_default();
            *n += 1;
            if *n > want.get(&r.seq).copied().unwrap_or(0) {
                return Err(format!("stream {channel}: seq {} emitted twice", r.seq));
            }
        }
    }
    Ok(())
}

/// Every property of one seed's upgrade.
fn check_upgrade(seed: u64, diverging: bool, trace: bool) -> Result<(), String> {
    let u = simulate_upgrade(seed, diverging, trace)?;
    if !u.late.is_empty() {
        return Err(u.late.join("; "));
    }
    let Some((_, outcome)) = u.ended else {
        return Err("the upgrade did not end".to_owned());
    };
    let promoted = matches!(outcome, Outcome::Promoted { .. });
    let forced = u.injected.is_some_and(|a| forces_rollback(a.fault));
    let overtaken = u.injected.is_some_and(|a| a.overtaken);
    if diverging && promoted {
        return Err(format!("a diverging upgrade was promoted: {outcome:?}"));
    }
    if !diverging && !promoted && !forced && !u.plan.tight {
        return Err(format!("a matching upgrade rolled back: {outcome:?}"));
    }
    if !diverging && forced && promoted && !overtaken {
        return Err(format!(
            "promoted though {:?} forced a rollback",
            u.injected
        ));
    }
    let version = if promoted { NEW } else { OLD };
    for color in Color::BOTH {
        let runs = u.sim.agent.version(color);
        if runs != Some(version) || *u.up.release(color) != version {
            return Err(format!(
                "{color} runs {runs:?} (the upgrader says {}) after {outcome:?}, expected {version}",
                u.up.release(color)
            ));
        }
    }
    if *u.up.current() != version {
        return Err(format!("the current release is {}", u.up.current()));
    }
    match u.injected {
        Some(a) if !a.safe => no_repeats(&u.sim),
        _ => exact(&u.sim),
    }
}

#[test]
fn matching_upgrades_end_promoted_unless_a_crash_forces_a_rollback() {
    run_seeds("upgrade matching", |seed, trace| {
        check_upgrade(seed, false, trace)
    });
}

#[test]
fn diverging_upgrades_always_roll_back_and_the_old_version_serves() {
    run_seeds("upgrade diverging", |seed, trace| {
        check_upgrade(seed, true, trace)
    });
}

#[test]
fn upgrades_meet_faults_in_every_phase_and_end_every_way() {
    // The simulation must reach the paths it claims to test.
    let mut injected: BTreeMap<(&str, Color, bool), usize> = BTreeMap::new();
    let mut ends: BTreeMap<String, usize> = BTreeMap::new();
    let mut overtaken = 0;
    let matching = (1..=160).map(|seed| (seed, false));
    let diverging = (1..=60).map(|seed| (seed, true));
    for (seed, diverging) in matching.chain(diverging) {
        {
            let u = simulate_upgrade(seed, diverging, false).unwrap();
            if let Some(a) = u.injected {
                overtaken += usize::from(a.overtaken);
                *injected
                    .entry((a.fault.phase.name(), a.fault.victim, a.fault.hang))
                    .or_default() += 1;
            }
            let end = match u.ended.map(|e| e.1) {
                Some(Outcome::Promoted { warning: None, .. }) => "promoted".to_owned(),
                Some(Outcome::Promoted { .. }) => "promoted with a warning".to_owned(),
                Some(Outcome::RolledBack { reason, .. }) => match reason {
                    RollbackReason::Asked => "asked".to_owned(),
                    RollbackReason::Mismatch(_) => "mismatch".to_owned(),
                    RollbackReason::Overdue { deadline, .. } => {
                        format!("overdue in {}", deadline.phase)
                    }
                    RollbackReason::NewLost => "new lost".to_owned(),
                    RollbackReason::OldLostInTransfer => "old lost in transfer".to_owned(),
                },
                None => "none".to_owned(),
            };
            *ends.entry(end).or_default() += 1;
        }
    }
    for phase in Phase::ALL {
        for victim in Color::BOTH {
            for hang in [false, true] {
                let n = injected
                    .get(&(phase.name(), victim, hang))
                    .copied()
                    .unwrap_or(0);
                assert!(
                    n >= 2,
                    "{} {victim} in {phase} injected {n} times: {injected:?}",
                    if hang { "hang of" } else { "crash of" }
                );
            }
        }
    }
    for end in [
        "promoted",
        "promoted with a warning",
        "mismatch",
        "overdue in transfer",
        "overdue in shadow",
        "new lost",
        "old lost in transfer",
    ] {
        assert!(
            ends.get(end).copied().unwrap_or(0) >= 2,
            "`{end}` reached fewer than twice: {ends:?}"
        );
    }
    // Without the fences (an instance restarted only once the other has
    // shown it is not hung) a hang would often take the state with it.
    let all: usize = injected.values().sum();
    assert!(
        overtaken * 50 <= all,
        "{overtaken} of {all} faults were overtaken by a restart of the other instance"
    );
}
