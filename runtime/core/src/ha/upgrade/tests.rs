//! One test per transition of the [`Upgrader`], on plain inputs: what a
//! tick reads of the supervisor is given as a [`Seen`].

#![allow(clippy::unwrap_used)]

use super::*;
use crate::ha::msg::StreamId;

const MS: i64 = 1_000_000;
const OLD: Color = Color::Blue;
const NEW: Color = Color::Green;

fn policy(period: Period) -> Policy {
    Policy {
        period,
        phase_timeout: Nanos(1_000 * MS),
        max_mismatch: 0.0,
    }
}

/// An upgrader from release 1 to 2 started at 0 with 100 ms periods.
fn started(period: Period) -> Upgrader<u32> {
    let mut up = Upgrader::new(1);
    assert_eq!(up.begin(Nanos(0), 2, policy(period), true, (0, 0)), Ok(()));
    up
}

fn actions(up: &mut Upgrader<u32>) -> Vec<Action> {
    std::iter::from_fn(|| up.poll_action()).collect()
}

fn events(up: &mut Upgrader<u32>) -> Vec<UpgradeEvent> {
    std::iter::from_fn(|| up.poll_event()).collect()
}

fn seen(compared: u64, diverged: u64) -> Seen {
    Seen {
        compared,
        diverged,
        first: None,
        new_role: Some(Role::Shadow),
        new_live: true,
        new_processed: Seq(compared),
        old_processed: Seq(compared),
        head: Seq(compared),
    }
}

/// Through transfer into shadow at 20 ms.
fn shadowing(period: Period) -> Upgrader<u32> {
    let mut up = started(period);
    up.handle_role(Nanos(20 * MS), NEW, Role::Shadow);
    actions(&mut up);
    events(&mut up);
    up
}

/// Through shadow into promoted at 120 ms.
fn promoted() -> Upgrader<u32> {
    let mut up = shadowing(Period::Time(Nanos(100 * MS)));
    up.tick(Nanos(120 * MS), seen(50, 0));
    actions(&mut up);
    events(&mut up);
    assert_eq!(up.phase(), Some(Phase::Promoted));
    up
}

fn rolled_back(up: &mut Upgrader<u32>) -> (Phase, RollbackReason) {
    let ended = events(up).into_iter().find_map(|e| match e {
        UpgradeEvent::Ended(Outcome::RolledBack { phase, reason }) => Some((phase, reason)),
        _ => None,
    });
    let (phase, reason) = ended.expect("no rollback");
    assert_eq!(actions(up), [Action::Promote(OLD), Action::Restart(NEW)]);
    assert_eq!(up.phase(), None);
    assert_eq!(
        (*up.release(OLD), *up.release(NEW), *up.current()),
        (1, 1, 1)
    );
    (phase, reason)
}

#[test]
fn start_restarts_the_new_colour_on_the_new_release() {
    let mut up = Upgrader::new(1);
    let start = up.begin(Nanos(5), 2, policy(Period::Records(10)), true, (1000, 10));
    assert_eq!(start, Ok(()));
    assert_eq!(
        actions(&mut up),
        [Action::ClearDivergences, Action::Restart(NEW)]
    );
    assert_eq!((*up.release(OLD), *up.release(NEW)), (1, 2));
    let status = up.status(Nanos(5 + 7 * MS)).unwrap();
    assert_eq!(status.phase, Phase::Transfer);
    assert_eq!(status.noise_floor, 0.01);
    assert_eq!((status.compared, status.mismatched), (0, 0));
    assert_eq!(status.phase_elapsed, Nanos(7 * MS));
}

#[test]
fn start_is_refused_while_one_runs_or_without_redundancy() {
    let mut up = started(Period::Records(10));
    let again = up.begin(Nanos(1), 3, policy(Period::Records(10)), true, (0, 0));
    assert_eq!(
        again.unwrap_err().to_string(),
        "an upgrade is running (phase transfer); wait for it or `tandem rollback`"
    );
    let mut idle = Upgrader::new(1);
    let lonely = idle.begin(Nanos(1), 2, policy(Period::Records(10)), false, (0, 0));
    assert_eq!(lonely, Err(StartError::NotRedundant));
    assert!(actions(&mut idle).is_empty());
    assert_eq!(*idle.release(NEW), 1);
}

#[test]
fn the_new_colour_as_shadow_ends_the_transfer() {
    let mut up = started(Period::Records(10));
    up.handle_role(Nanos(3 * MS), OLD, Role::Shadow);
    up.handle_role(Nanos(4 * MS), NEW, Role::Serving);
    assert_eq!(up.phase(), Some(Phase::Transfer));
    up.handle_role(Nanos(20 * MS), NEW, Role::Shadow);
    assert_eq!(up.phase(), Some(Phase::Shadow));
    assert_eq!(events(&mut up), [UpgradeEvent::Entered(Phase::Shadow)]);
    assert_eq!(
        up.status(Nanos(20 * MS)).unwrap().timings.to_shadow,
        Some(Nanos(20 * MS))
    );
}

#[test]
fn a_period_in_time_promotes_then_replaces() {
    let mut up = shadowing(Period::Time(Nanos(100 * MS)));
    up.tick(Nanos(119 * MS), seen(40, 0));
    assert_eq!(up.phase(), Some(Phase::Shadow));
    assert_eq!(up.poll_timeout(), Some(Nanos(120 * MS)));
    up.tick(Nanos(120 * MS), seen(50, 0));
    assert_eq!(up.phase(), Some(Phase::Promoted));
    assert_eq!(actions(&mut up), [Action::Promote(NEW)]);
    assert_eq!(events(&mut up), [UpgradeEvent::Entered(Phase::Promoted)]);
    // The second period counts from the promotion.
    let status = up.status(Nanos(120 * MS)).unwrap();
    assert_eq!(
        (status.compared, status.timings.to_promoted),
        (0, Some(Nanos(120 * MS)))
    );
    up.tick(Nanos(220 * MS), seen(90, 0));
    assert_eq!(up.phase(), Some(Phase::Replacing));
    assert_eq!(actions(&mut up), [Action::Restart(OLD)]);
    assert_eq!(
        (*up.release(OLD), *up.release(NEW), *up.current()),
        (2, 2, 1)
    );
}

#[test]
fn a_period_in_records_waits_for_them() {
    let mut up = shadowing(Period::Records(30));
    up.tick(Nanos(900 * MS), seen(29, 0));
    assert_eq!(up.phase(), Some(Phase::Shadow));
    up.tick(Nanos(901 * MS), seen(30, 0));
    assert_eq!(up.phase(), Some(Phase::Promoted));
}

#[test]
fn shadow_is_not_promoted_while_the_new_instance_is_not_live() {
    let mut up = shadowing(Period::Time(Nanos(100 * MS)));
    let gone = Seen {
        new_live: false,
        new_role: None,
        ..seen(50, 0)
    };
    up.tick(Nanos(150 * MS), gone);
    assert_eq!(up.phase(), Some(Phase::Shadow));
    assert!(actions(&mut up).is_empty());
}

#[test]
fn the_old_instance_is_replaced_only_once_the_new_one_has_processed_the_period() {
    let mut up = promoted();
    // Hung: it says nothing more, but is live until its heartbeat deadline.
    let hung = |head: u64| Seen {
        new_processed: Seq(100),
        head: Seq(head),
        ..seen(90, 0)
    };
    up.tick(Nanos(220 * MS), hung(150));
    up.tick(Nanos(300 * MS), hung(190));
    assert_eq!(up.phase(), Some(Phase::Promoted));
    assert!(actions(&mut up).is_empty());
    // It processed what was input when the period ended (150); that the
    // head has moved on since does not hold it back.
    let alive = Seen {
        new_processed: Seq(150),
        head: Seq(230),
        ..seen(90, 0)
    };
    up.tick(Nanos(310 * MS), alive);
    assert_eq!(up.phase(), Some(Phase::Replacing));
}

#[test]
fn a_rollback_waits_for_the_old_instance_to_show_it_is_not_hung() {
    let mut up = shadowing(Period::Records(100));
    // The old one hung at 60: nothing compared since, the deadline passes.
    let hung = |head: u64| Seen {
        old_processed: Seq(60),
        head: Seq(head),
        ..seen(60, 0)
    };
    up.tick(Nanos(1_021 * MS), hung(400));
    up.tick(Nanos(1_030 * MS), hung(420));
    assert_eq!(up.phase(), Some(Phase::Shadow));
    assert!(actions(&mut up).is_empty());
    // Found lost at its heartbeat deadline: the new one serves and is copied.
    up.handle_lost(Nanos(1_050 * MS), OLD);
    assert_eq!(events(&mut up), [UpgradeEvent::OldLost(OLD)]);

    // One that was only slow rolls back once it has processed the input
    // of the moment the rollback was due.
    let mut up = shadowing(Period::Records(100));
    up.tick(Nanos(1_021 * MS), hung(400));
    let caught_up = Seen {
        old_processed: Seq(400),
        head: Seq(450),
        ..seen(60, 0)
    };
    up.tick(Nanos(1_025 * MS), caught_up);
    let (_, reason) = rolled_back(&mut up);
    assert!(matches!(reason, RollbackReason::Overdue { .. }), "{reason}");
}

#[test]
fn the_second_copy_serving_ends_the_upgrade_promoted() {
    let mut up = promoted();
    up.tick(Nanos(220 * MS), seen(90, 0));
    actions(&mut up);
    events(&mut up);
    up.handle_role(Nanos(230 * MS), NEW, Role::Serving);
    assert_eq!(up.phase(), Some(Phase::Replacing));
    up.handle_role(Nanos(250 * MS), OLD, Role::Serving);
    let timings = Timings {
        to_shadow: Some(Nanos(20 * MS)),
        to_promoted: Some(Nanos(120 * MS)),
        done: Some(Nanos(250 * MS)),
    };
    let outcome = Outcome::Promoted {
        timings,
        warning: None,
    };
    assert_eq!(events(&mut up), [UpgradeEvent::Ended(outcome)]);
    assert_eq!(up.last(), Some(&outcome));
    assert_eq!(
        (*up.release(OLD), *up.release(NEW), *up.current()),
        (2, 2, 2)
    );
    assert_eq!(up.phase(), None);
    assert_eq!(up.poll_timeout(), None);
}

#[test]
fn a_mismatch_past_policy_rolls_back_with_the_figures_and_the_first_difference() {
    let mut up = Upgrader::new(1);
    let policy = Policy {
        max_mismatch: 0.01,
        ..policy(Period::Time(Nanos(100 * MS)))
    };
    // Noise floor 0.02 before the upgrade.
    up.begin(Nanos(0), 2, policy, true, (100, 2)).unwrap();
    up.handle_role(Nanos(10 * MS), NEW, Role::Shadow);
    events(&mut up);
    actions(&mut up);
    // 3 in 100: within 0.01 over the floor of 0.02.
    up.tick(Nanos(20 * MS), seen(200, 5));
    assert_eq!(up.phase(), Some(Phase::Shadow));
    let first = Divergence {
        stream: StreamId(7),
        seq: Seq(42),
        ordinal: 0,
        blue: None,
        green: None,
    };
    let over = Seen {
        first: Some(first),
        ..seen(300, 10)
    };
    up.tick(Nanos(30 * MS), over);
    let (phase, reason) = rolled_back(&mut up);
    assert_eq!(phase, Phase::Shadow);
    assert_eq!(
        reason.to_string(),
        "8 of 200 compared records differ (rate 0.0400), above the 0.01 allowed over a \
         noise floor of 0.0200; the first: stream 7 at origin sequence 42 (#0): blue none, green none"
    );
}

#[test]
fn no_mismatch_allowed_fails_at_the_first_one_even_in_promoted() {
    let mut up = promoted();
    up.tick(Nanos(130 * MS), seen(1000, 1));
    let (phase, reason) = rolled_back(&mut up);
    assert_eq!(phase, Phase::Promoted);
    assert!(
        matches!(reason, RollbackReason::Mismatch(m) if m.mismatched == 1 && m.compared == 950)
    );
}

#[test]
fn a_mismatch_in_transfer_is_not_the_new_versions() {
    let mut up = started(Period::Records(10));
    up.tick(Nanos(10 * MS), seen(10, 10));
    assert_eq!(up.phase(), Some(Phase::Transfer));
}

#[test]
fn asking_rolls_back_until_the_old_colour_is_replaced() {
    let mut up = shadowing(Period::Records(10));
    assert_eq!(up.handle_rollback(), Ok(()));
    let (phase, reason) = rolled_back(&mut up);
    assert_eq!(
        (phase, reason.to_string().as_str()),
        (Phase::Shadow, "asked for by `tandem rollback`")
    );
    assert_eq!(
        up.handle_rollback().unwrap_err().to_string(),
        "no upgrade is running"
    );

    let mut up = promoted();
    up.tick(Nanos(220 * MS), seen(90, 0));
    assert_eq!(up.handle_rollback(), Err(RollbackError::TooLate));
    assert_eq!(up.phase(), Some(Phase::Replacing));
}

#[test]
fn the_new_instance_lost_before_replacing_rolls_back() {
    for phase in [Phase::Transfer, Phase::Shadow, Phase::Promoted] {
        let mut up = match phase {
            Phase::Transfer => started(Period::Records(10)),
            Phase::Shadow => shadowing(Period::Records(10)),
            _ => promoted(),
        };
        actions(&mut up);
        up.handle_lost(Nanos(200 * MS), NEW);
        let (at, reason) = rolled_back(&mut up);
        assert_eq!((at, reason), (phase, RollbackReason::NewLost), "{phase}");
        assert_eq!(reason.to_string(), "the new version's instance was lost");
    }
}

#[test]
fn the_old_instance_lost_in_transfer_rolls_back() {
    let mut up = started(Period::Records(10));
    actions(&mut up);
    up.handle_lost(Nanos(5 * MS), OLD);
    let (_, reason) = rolled_back(&mut up);
    assert_eq!(
        reason.to_string(),
        "the old version's instance was lost during the transfer"
    );
}

#[test]
fn the_old_instance_lost_later_leaves_the_new_one_serving_and_copied() {
    for mut up in [shadowing(Period::Records(10)), promoted()] {
        up.handle_lost(Nanos(200 * MS), OLD);
        assert_eq!(up.phase(), Some(Phase::Replacing));
        assert_eq!(events(&mut up), [UpgradeEvent::OldLost(OLD)]);
        // No restart: the driver restarts a lost instance anyway, on
        // what it now runs.
        assert!(actions(&mut up).is_empty());
        assert_eq!(*up.release(OLD), 2);
        up.handle_role(Nanos(210 * MS), OLD, Role::Serving);
        assert!(matches!(
            up.last(),
            Some(Outcome::Promoted { warning: None, .. })
        ));
        assert_eq!(*up.current(), 2);
    }
}

#[test]
fn losses_while_replacing_change_nothing() {
    let mut up = promoted();
    up.tick(Nanos(220 * MS), seen(90, 0));
    actions(&mut up);
    up.handle_lost(Nanos(230 * MS), NEW);
    up.handle_lost(Nanos(231 * MS), OLD);
    assert_eq!(up.phase(), Some(Phase::Replacing));
    assert!(actions(&mut up).is_empty());
}

#[test]
fn a_transfer_past_its_deadline_rolls_back_saying_why() {
    let mut up = started(Period::Records(10));
    actions(&mut up);
    let silent = Seen {
        new_role: None,
        new_live: false,
        ..Seen::default()
    };
    up.tick(Nanos(1_000 * MS), silent);
    assert_eq!(up.phase(), Some(Phase::Transfer));
    assert_eq!(up.poll_timeout(), Some(Nanos(1_000 * MS + 1)));
    up.tick(Nanos(1_000 * MS + 1), silent);
    let (_, reason) = rolled_back(&mut up);
    assert_eq!(
        reason.to_string(),
        "phase transfer did not end within its deadline of 1.0 s; the new version's instance never connected"
    );

    let mut up = started(Period::Records(10));
    actions(&mut up);
    let starting = Seen {
        new_role: Some(Role::Starting),
        ..silent
    };
    up.tick(Nanos(1_001 * MS), starting);
    let (_, reason) = rolled_back(&mut up);
    assert!(reason.to_string().ends_with("did not catch up"), "{reason}");
}

#[test]
fn a_supervision_period_has_its_length_plus_the_phase_timeout() {
    let mut up = shadowing(Period::Time(Nanos(100 * MS)));
    // Not live, so not promoted; the deadline is 20 + 100 + 1000 ms.
    let gone = Seen {
        new_live: false,
        ..seen(0, 0)
    };
    up.tick(Nanos(1_120 * MS), gone);
    assert_eq!(up.phase(), Some(Phase::Shadow));
    up.tick(Nanos(1_121 * MS), gone);
    let (phase, reason) = rolled_back(&mut up);
    assert_eq!(phase, Phase::Shadow);
    assert_eq!(
        reason.to_string(),
        "phase shadow did not end within its deadline of 1.1 s"
    );

    let mut up = shadowing(Period::Records(100));
    up.tick(Nanos(1_021 * MS), seen(99, 0));
    let (_, reason) = rolled_back(&mut up);
    assert_eq!(
        reason.to_string(),
        "phase shadow did not end within its deadline of 1.0 s; too few records were compared"
    );
}

#[test]
fn replacing_past_its_deadline_ends_promoted_with_a_warning() {
    let mut up = promoted();
    up.tick(Nanos(220 * MS), seen(90, 0));
    actions(&mut up);
    events(&mut up);
    up.tick(Nanos(1_221 * MS), seen(90, 0));
    let ended = events(&mut up);
    let [UpgradeEvent::Ended(Outcome::Promoted {
        warning: Some(warning),
        timings,
    })] = ended[..]
    else {
        panic!("{ended:?}");
    };
    assert_eq!(timings.done, None);
    assert_eq!(
        warning.to_string(),
        "phase replacing did not end within its deadline of 1.0 s: blue's second copy of the \
         new version is not serving yet; it keeps being restarted (the old version's state is \
         gone, so there is nothing to roll back to)"
    );
    // Nothing to roll back to: both run the new release from now on.
    assert!(actions(&mut up).is_empty());
    assert_eq!((*up.release(OLD), *up.current()), (2, 2));
}

#[test]
fn inputs_without_an_upgrade_do_nothing() {
    let mut up = Upgrader::new(1);
    up.handle_lost(Nanos(0), NEW);
    up.handle_role(Nanos(0), OLD, Role::Serving);
    up.tick(Nanos(0), seen(10, 10));
    assert!(actions(&mut up).is_empty() && events(&mut up).is_empty());
    assert_eq!(
        (up.phase(), up.last(), up.poll_timeout()),
        (None, None, None)
    );
}

#[test]
fn the_supervisors_events_drive_it_as_the_calls_they_stand_for() {
    // A role change: the new instance shadows, the upgrade moves on.
    let mut up = started(Period::Time(Nanos(100 * MS)));
    let shadow = Event::RoleChanged {
        color: NEW,
        role: Role::Shadow,
    };
    assert_eq!(up.handle_supervisor_event(Nanos(20 * MS), &shadow), None);
    assert_eq!(up.phase(), Some(Phase::Shadow));
    // A loss it did not cause: a failure, which rolls it back.
    let lost = Event::Lost {
        color: NEW,
        reason: crate::ha::LostReason::Disconnected,
    };
    assert_eq!(
        up.handle_supervisor_event(Nanos(30 * MS), &lost),
        Some(false)
    );
    assert!(matches!(
        up.last(),
        Some(Outcome::RolledBack {
            reason: RollbackReason::NewLost,
            ..
        })
    ));
}
