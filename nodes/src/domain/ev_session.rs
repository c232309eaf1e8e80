//! `ev_session`: EV charging sessions from the IEC 61851 control-pilot state.
//!
//! The `pilot` input is the pilot state as a number, as the charger's ADC
//! driver encodes it:
//!
//! | value | IEC 61851 state | meaning |
//! |---|---|---|
//! | 0 | A | no vehicle connected |
//! | 1 | B | vehicle connected, not charging |
//! | 2 | C | charging |
//! | 3 | D | charging, ventilation required |
//! | 4 | E | error (pilot shorted or EVSE not powered) |
//! | 5 | F | fault (EVSE unavailable) |
//!
//! Any other value, or a record with a quality flag, is not a pilot state:
//! it changes nothing and makes the session in progress `UNCERTAIN`.
//!
//! A session starts when a good pilot record says B, C or D and none is in
//! progress; it stops on A. The main output is 1.0 at the start and 0.0 at
//! the stop, nothing in between. At the stop the session's energy (kWh),
//! peak current (A) and duration (s) are emitted, all with the seq and time
//! of the pilot record that ended it. A session whose start was not seen
//! (the first pilot state known is already B, C or D) is `UNCERTAIN` from its
//! start. E or F during a session flags its stop outputs `DEVICE_FAULT`.
//!
//! Energy integrates power by the trapezoid rule between good power samples,
//! counting only the event time the pilot was held in C or D within each
//! interval: `(p0 + p1) / 2 x time in C/D`. The part of the last interval
//! before a stop is counted with the last power held. Bad power samples are
//! bridged; intervals longer than `max_gap` are not integrated; both make the
//! session `UNCERTAIN`, as does a bad current sample.

use super::support::{self, uncertain_if, Sample};
use tandem_core::{
    freeze, thaw, Arity, BuildContext, BuildError, Builder, ChannelId, KindSpec, OutputSpec,
    ParamDefault, ParamSpec, ParamType, Quality, Record, SchemaId, Snapshot, SnapshotError, Vertex,
};

/// State schema of `ev_session` version 1.
pub const SCHEMA: SchemaId = SchemaId(33_001);

const NS_PER_MIN: i64 = 60_000_000_000;
const JOULES_PER_KWH: f64 = 3.6e6;

/// IEC 61851 pilot states in the input encoding.
const STATE_A: u8 = 0;
const STATE_C: u8 = 2;
const STATE_D: u8 = 3;
const STATE_E: u8 = 4;
const STATE_F: u8 = 5;

/// The `ev_session` kind.
pub static KIND: KindSpec = KindSpec {
    name: "ev_session",
    version: 1,
    doc: "EV charging sessions from the IEC 61851 pilot state (0=A 1=B 2=C 3=D 4=E 5=F): start/stop, energy, peak current, duration",
    input_names: &["pilot", "current", "power"],
    arity: Arity::exactly(3),
    outputs: &[
        OutputSpec::main(""),
        OutputSpec::named("energy", "kWh"),
        OutputSpec::named("peak_current", "A"),
        OutputSpec::named("duration", "s"),
    ],
    outputs_from: None,
    params: &[ParamSpec {
        name: "max_gap",
        ty: ParamType::Duration {
            min_ns: 1_000_000,
            max_ns: 24 * 60 * NS_PER_MIN,
        },
        default: ParamDefault::Duration(NS_PER_MIN),
        doc: "longest event time between good power samples that is integrated; longer gaps are left out of the energy and make the session uncertain",
    }],
    state_schema: Some(SCHEMA),
    migrations: &[],
    build: Builder::Vertex(build),
};

/// The pilot state a value encodes, if it is one.
fn pilot_state(value: f64) -> Option<u8> {
    let valid = value.is_finite() && value.fract() == 0.0 && (0.0..=5.0).contains(&value);
    // Exact: an integer from 0 to 5.
    valid.then_some(value as u8)
}

fn charging(state: Option<u8>) -> bool {
    matches!(state, Some(STATE_C | STATE_D))
}

#[derive(Debug)]
struct Config {
    pilot: ChannelId,
    current: ChannelId,
    power: ChannelId,
    main: ChannelId,
    energy: ChannelId,
    peak_current: ChannelId,
    duration: ChannelId,
    max_gap_ns: i64,
}

/// A session in progress.
#[derive(Clone, Copy, Debug, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct Session {
    /// Event time it started, ns.
    start: i64,
    /// Energy so far, J.
    energy_j: f64,
    /// Highest good current so far, A.
    peak_a: Option<f64>,
    /// Part of it could not be measured.
    uncertain: bool,
    /// The pilot went to E or F during it.
    fault: bool,
}

/// Everything `ev_session` remembers between records.
#[derive(Clone, Debug, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct EvState {
    /// The latest good pilot state.
    pilot: Option<u8>,
    /// The session in progress.
    session: Option<Session>,
    /// The last good power sample, W.
    power: Option<Sample>,
    /// Event time in C or D since the last good power sample, ns.
    charging_ns: i64,
    /// Event time the pilot has been accounted up to, ns.
    mark: Option<i64>,
}

#[derive(Debug)]
struct EvSession {
    cfg: Config,
    state: EvState,
}

fn build(ctx: &BuildContext<'_>) -> Result<Box<dyn Vertex>, BuildError> {
    let [pilot, current, power] = support::inputs(ctx, &["pilot", "current", "power"])?;
    let cfg = Config {
        pilot,
        current,
        power,
        main: support::output(ctx, 0)?,
        energy: support::output(ctx, 1)?,
        peak_current: support::output(ctx, 2)?,
        duration: support::output(ctx, 3)?,
        max_gap_ns: support::duration_ns(ctx, "max_gap")?,
    };
    Ok(Box::new(EvSession {
        cfg,
        state: EvState {
            pilot: None,
            session: None,
            power: None,
            charging_ns: 0,
            mark: None,
        },
    }))
}

impl EvSession {
    /// Counts the time the held pilot state spent in C or D up to `now`.
    fn advance(&mut self, now: i64) {
        let st = &mut self.state;
        match st.mark {
            Some(mark) if now < mark => {
                // Time ran backwards: keep the later mark so nothing is counted twice.
                if let Some(s) = st.session.as_mut() {
                    s.uncertain = true;
                }
            }
            Some(mark) => {
                if charging(st.pilot) {
                    st.charging_ns = st.charging_ns.saturating_add(now.saturating_sub(mark));
                }
                st.mark = Some(now);
            }
            None => st.mark = Some(now),
        }
    }

    fn on_power(&mut self, record: &Record) {
        let st = &mut self.state;
        if !support::usable(record) {
            // Bridged: the next good sample integrates from the last good one.
            if let Some(s) = st.session.as_mut() {
                s.uncertain = true;
            }
            return;
        }
        let now = Sample::of(record);
        let charged_ns = core::mem::take(&mut st.charging_ns);
        let prev = st.power.replace(now);
        let Some(session) = st.session.as_mut() else {
            return;
        };
        if charged_ns == 0 {
            return;
        }
        match prev {
            Some(p) if now.time.saturating_sub(p.time) <= self.cfg.max_gap_ns => {
                let dt_ns = now.time.saturating_sub(p.time).max(0);
                let ns = charged_ns.min(dt_ns) as f64;
                let energy_j = session.energy_j + (p.value + now.value) / 2.0 * ns / 1e9;
                if energy_j.is_finite() {
                    session.energy_j = energy_j;
                } else {
                    session.uncertain = true; // power beyond any charger
                }
            }
            _ => session.uncertain = true,
        }
    }

    fn on_pilot(&mut self, record: &Record, out: &mut Vec<Record>) {
        let state = if record.quality.is_good() {
            pilot_state(record.value)
        } else {
            None
        };
        let Some(state) = state else {
            if let Some(s) = self.state.session.as_mut() {
                s.uncertain = true;
            }
            return;
        };
        let was = self.state.pilot.replace(state);
        let now = record.time.0;
        match (state, self.state.session.as_mut()) {
            (STATE_A, Some(_)) => self.stop(record, out),
            (STATE_E | STATE_F, Some(s)) => s.fault = true,
            (STATE_A | STATE_E | STATE_F, None) | (_, Some(_)) => {}
            (_, None) => {
                let unseen = was.is_none();
                self.state.session = Some(Session {
                    start: now,
                    energy_j: 0.0,
                    peak_a: None,
                    uncertain: unseen,
                    fault: false,
                });
                out.push(Record {
                    seq: record.seq,
                    time: record.time,
                    channel: self.cfg.main,
                    quality: uncertain_if(unseen),
                    value: 1.0,
                });
            }
        }
    }

    fn stop(&mut self, record: &Record, out: &mut Vec<Record>) {
        let st = &mut self.state;
        let Some(mut session) = st.session.take() else {
            return;
        };
        let charged_ns = core::mem::take(&mut st.charging_ns);
        if charged_ns > 0 {
            match st.power {
                Some(p) if record.time.0.saturating_sub(p.time) <= self.cfg.max_gap_ns => {
                    let energy_j = session.energy_j + p.value * charged_ns as f64 / 1e9;
                    if energy_j.is_finite() {
                        session.energy_j = energy_j;
                    } else {
                        session.uncertain = true;
                    }
                }
                _ => session.uncertain = true,
            }
        }
        let mut quality = uncertain_if(session.uncertain);
        if session.fault {
            quality |= Quality::DEVICE_FAULT;
        }
        let r = Record {
            seq: record.seq,
            time: record.time,
            channel: self.cfg.main,
            quality,
            value: 0.0,
        };
        out.push(r);
        out.push(Record {
            channel: self.cfg.energy,
            value: session.energy_j / JOULES_PER_KWH,
            ..r
        });
        out.push(match session.peak_a {
            Some(a) => Record {
                channel: self.cfg.peak_current,
                value: a,
                ..r
            },
            None => Record {
                channel: self.cfg.peak_current,
                value: 0.0,
                ..r
            }
            .flagged(Quality::UNCERTAIN),
        });
        out.push(Record {
            channel: self.cfg.duration,
            value: record
                .time
                .secs_since(tandem_core::EventTime(session.start)),
            ..r
        });
    }
}

impl Vertex for EvSession {
    fn process(&mut self, input: &[Record], out: &mut Vec<Record>) {
        for record in input {
            let channel = record.channel;
            if channel != self.cfg.pilot && channel != self.cfg.current && channel != self.cfg.power
            {
                continue;
            }
            self.advance(record.time.0);
            if channel == self.cfg.pilot {
                self.on_pilot(record, out);
            } else if channel == self.cfg.power {
                self.on_power(record);
            } else if let Some(s) = self.state.session.as_mut() {
                if support::usable(record) {
                    s.peak_a = Some(s.peak_a.map_or(record.value, |p| p.max(record.value)));
                } else {
                    s.uncertain = true;
                }
            }
        }
    }

    fn snapshot(&self) -> Option<Snapshot> {
        Some(freeze(SCHEMA, &self.state))
    }

    fn restore(&mut self, snapshot: &Snapshot) -> Result<(), SnapshotError> {
        let state: EvState = thaw(SCHEMA, snapshot)?;
        if state.pilot.is_some_and(|p| p > STATE_F) {
            return Err(SnapshotError::Invalid(format!(
                "ev_session state holds pilot state {:?}, not 0..5",
                state.pilot
            )));
        }
        if state.charging_ns < 0 {
            return Err(SnapshotError::Invalid(format!(
                "ev_session state holds {} ns of charging time, below zero",
                state.charging_ns
            )));
        }
        if let Some(session) = &state.session {
            // Energy may be negative (a car feeding back), never infinite or NaN.
            let peak_ok = session.peak_a.is_none_or(f64::is_finite);
            if !(session.energy_j.is_finite() && peak_ok) {
                return Err(SnapshotError::Invalid(format!(
                    "ev_session session holds energy {} J and peak {:?} A; both must be finite",
                    session.energy_j, session.peak_a
                )));
            }
        }
        self.state = state;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::domain::testkit::*;

    const G: Quality = Quality::GOOD;
    const U: Quality = Quality::UNCERTAIN;
    const P: usize = 0;
    const I: usize = 1;
    const W: usize = 2;

    fn fixture() -> Fixture {
        Fixture::new(&KIND, &[])
    }

    #[test]
    fn event_times_far_apart_neither_overflow_nor_count_backwards() {
        let fx = fixture();
        let input = feed(
            &fx,
            &[
                (-5e9, P, 2.0, G),
                (-5e9, W, 1000.0, G),
                (5e9, W, 1000.0, G),
                (5e9, P, 0.0, G),
            ],
        );
        let out = run_whole(&fx, &input);
        let [_, energy, _, duration] = outputs(&fx, &out);
        assert!(
            energy.iter().chain(&duration).all(|(_, v, _)| *v >= 0.0),
            "{out:?}"
        );
    }

    /// (time s, value, quality) of each output channel: main, energy, peak, duration.
    fn outputs(fx: &Fixture, out: &[Record]) -> [Vec<(f64, f64, Quality)>; 4] {
        [0, 1, 2, 3].map(|i| on(out, fx.output(i)))
    }

    #[test]
    fn one_session_with_energy_only_while_charging() {
        let fx = fixture();
        let input = feed(
            &fx,
            &[
                (0.0, P, 0.0, G),
                (0.0, W, 0.0, G),
                (0.0, I, 0.0, G),
                (10.0, P, 1.0, G), // B: session starts
                (20.0, W, 0.0, G),
                (20.0, P, 2.0, G), // C
                (30.0, W, 7200.0, G),
                (30.0, I, 32.0, G),
                (40.0, W, 7200.0, G),
                (40.0, I, 31.0, G),
                (45.0, P, 1.0, G), // B: charging ends inside 40..50
                (50.0, W, 0.0, G),
                (50.0, I, 0.0, G),
                (60.0, P, 0.0, G), // A: session stops
            ],
        );
        let out = run_whole(&fx, &input);
        let [main, energy, peak, duration] = outputs(&fx, &out);
        assert_eq!(main, vec![(10.0, 1.0, G), (60.0, 0.0, G)]);
        // 20..30: (0 + 7200) / 2 x 10 s = 36 kJ; 30..40: 72 kJ;
        // 40..50: (7200 + 0) / 2 x 5 s in C = 18 kJ. 126 kJ = 0.035 kWh.
        assert_eq!(energy.len(), 1);
        close(energy[0].1, 0.035, 1e-12);
        assert_eq!((energy[0].0, energy[0].2), (60.0, G));
        assert_eq!(peak, vec![(60.0, 32.0, G)]);
        assert_eq!(duration, vec![(60.0, 50.0, G)]);
        assert!(out[1..].iter().all(|r| r.seq == input[13].seq));
        assert_eq!(out[0].seq, input[3].seq);
    }

    #[test]
    fn unplugging_while_charging_counts_the_tail_with_the_held_power() {
        let fx = fixture();
        let out = run_whole(
            &fx,
            &feed(
                &fx,
                &[
                    (0.0, P, 0.0, G),
                    (0.0, W, 0.0, G),
                    (10.0, P, 2.0, G), // straight to C
                    (20.0, W, 3600.0, G),
                    (25.0, P, 0.0, G), // A while charging
                    (30.0, W, 0.0, G),
                ],
            ),
        );
        let [main, energy, _, duration] = outputs(&fx, &out);
        assert_eq!(main, vec![(10.0, 1.0, G), (25.0, 0.0, G)]);
        // 10..20: 1800 W x 10 s = 18 kJ; 20..25 held 3600 W = 18 kJ: 0.01 kWh.
        close(energy[0].1, 0.01, 1e-12);
        assert_eq!(duration, vec![(25.0, 15.0, G)]);
    }

    #[test]
    fn error_and_fault_states_flag_the_session() {
        let fx = fixture();
        let out = run_whole(
            &fx,
            &feed(
                &fx,
                &[
                    (0.0, P, 0.0, G),
                    (1.0, P, 4.0, G), // E with no session: no start
                    (5.0, P, 1.0, G),
                    (6.0, P, 5.0, G), // F during the session
                    (7.0, P, 1.0, G),
                    (8.0, P, 0.0, G),
                ],
            ),
        );
        let [main, energy, peak, duration] = outputs(&fx, &out);
        let f = Quality::DEVICE_FAULT;
        assert_eq!(main, vec![(5.0, 1.0, G), (8.0, 0.0, f)]);
        assert_eq!(energy, vec![(8.0, 0.0, f)]);
        // No current sample in the session: 0 A, and not to be trusted.
        assert_eq!(peak, vec![(8.0, 0.0, f | U)]);
        assert_eq!(duration, vec![(8.0, 3.0, f)]);
    }

    #[test]
    fn a_session_already_running_at_start_is_uncertain() {
        let fx = fixture();
        let out = run_whole(
            &fx,
            &feed(
                &fx,
                &[
                    (0.0, W, 1000.0, G),
                    (0.0, I, 6.0, G),
                    (0.0, P, 2.0, G),
                    (36.0, W, 1000.0, G),
                    (36.0, P, 0.0, G),
                ],
            ),
        );
        let [main, energy, peak, _] = outputs(&fx, &out);
        assert_eq!(main, vec![(0.0, 1.0, U), (36.0, 0.0, U)]);
        close(energy[0].1, 0.01, 1e-12);
        // The current sample came before the session was known.
        assert_eq!(peak, vec![(36.0, 0.0, U)]);
    }

    #[test]
    fn bad_samples_are_bridged_or_ignored_and_flag_the_session() {
        let fx = fixture();
        let out = run_whole(
            &fx,
            &feed(
                &fx,
                &[
                    (0.0, P, 0.0, G),
                    (0.0, W, 0.0, G),
                    (10.0, P, 2.0, G),
                    (10.0, W, 3600.0, G),
                    (20.0, W, 99_999.0, Quality::COMM_ERROR), // bridged
                    (20.0, I, 400.0, Quality::OUT_OF_RANGE),  // not a peak
                    (25.0, P, 2.5, G),                        // not a pilot state
                    (30.0, W, 3600.0, G),
                    (30.0, I, 16.0, G),
                    (40.0, P, 0.0, G),
                ],
            ),
        );
        let [main, energy, peak, _] = outputs(&fx, &out);
        assert_eq!(main, vec![(10.0, 1.0, G), (40.0, 0.0, U)]);
        // 10..30 at 3600 W = 72 kJ, 30..40 held 3600 W = 36 kJ: 0.03 kWh.
        close(energy[0].1, 0.03, 1e-12);
        assert_eq!(peak, vec![(40.0, 16.0, U)]);
    }

    #[test]
    fn a_power_gap_is_left_out() {
        let fx = fixture();
        let out = run_whole(
            &fx,
            &feed(
                &fx,
                &[
                    (0.0, P, 0.0, G),
                    (0.0, P, 2.0, G),
                    (0.0, W, 3600.0, G),
                    (30.0, W, 3600.0, G),
                    (130.0, W, 3600.0, G), // 100 s > max_gap 60 s
                    (160.0, W, 3600.0, G),
                    (160.0, P, 1.0, G),
                    (170.0, P, 0.0, G),
                ],
            ),
        );
        let [main, energy, _, _] = outputs(&fx, &out);
        assert_eq!(main, vec![(0.0, 1.0, G), (170.0, 0.0, U)]);
        close(energy[0].1, 60.0 * 3600.0 / 3.6e6, 1e-12);
    }

    #[test]
    fn pilot_encoding_is_exact() {
        assert_eq!(pilot_state(0.0), Some(STATE_A));
        assert_eq!(pilot_state(3.0), Some(STATE_D));
        assert_eq!(pilot_state(5.0), Some(STATE_F));
        for bad in [-1.0, 6.0, 2.5, f64::NAN, f64::INFINITY] {
            assert_eq!(pilot_state(bad), None, "{bad}");
        }
    }

    fn scenario(fx: &Fixture) -> Vec<Record> {
        feed(
            fx,
            &[
                (0.0, P, 0.0, G),
                (0.0, W, 0.0, G),
                (5.0, P, 1.0, G),
                (10.0, P, 2.0, G),
                (12.0, W, 7000.0, G),
                (12.0, I, 30.0, G),
                (20.0, W, 7100.0, G),
                (21.0, P, 4.0, G),
                (22.0, P, 3.0, G),
                (25.0, I, 31.0, Quality::STALE),
                (30.0, W, 7050.0, G),
                (35.0, P, 0.0, G),
                (40.0, P, 1.0, G),
                (41.0, W, 100.0, G),
            ],
        )
    }

    #[test]
    fn output_does_not_depend_on_batching() {
        let fx = fixture();
        check_split_independence(&fx, &scenario(&fx));
    }

    #[test]
    fn snapshot_resumes_where_it_left_off() {
        let fx = fixture();
        check_snapshot_resume(&fx, &scenario(&fx));
    }

    #[test]
    fn damaged_snapshot_is_refused() {
        let fx = fixture();
        let input = scenario(&fx);
        check_damaged_snapshot_refused(&fx, &input[..10]);
    }
}
