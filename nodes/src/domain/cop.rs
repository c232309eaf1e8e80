//! `cop`: heat-pump coefficient of performance over whole compressor cycles,
//! defrost excluded.
//!
//! Every input is held (sample and hold) until its next record. On each
//! record of any input, the interval since the previous record is integrated
//! with the held values if a cycle is running: thermal power
//! `flow [l/min] / 60 x density [kg/l] x cp [J/(kg K)] x (supply - return) [K]`
//! and electrical power, both in watts, times the interval. Intervals while
//! defrost is held active are left out of both energies.
//!
//! A cycle runs from a good `running` record that turns the compressor on to
//! one that turns it off (values >= 0.5 are on). At its end the cycle's COP,
//! thermal and electrical energy are emitted with the seq and time of the
//! record that ended it. A cycle shorter than `min_cycle`, or with no
//! positive electrical energy, is not reported: the running count of such
//! cycles is emitted on `.skipped` instead (short cycling is worth seeing).
//!
//! A cycle's outputs are `UNCERTAIN` when any part of it could not be
//! integrated: an interval with a held input that is bad or not yet seen
//! (that interval is left out of both energies, so the COP stays a ratio of
//! like with like), an interval longer than `max_gap`, event time running
//! backwards, or a cycle whose start was not seen (the first `running`
//! record after a start was already on). Cooling cycles have supply below
//! return and give a negative COP.

use super::support::{self, uncertain_if};
use tandem_core::{
    freeze, thaw, Arity, BuildContext, BuildError, Builder, ChannelId, KindSpec, OutputSpec,
    ParamDefault, ParamSpec, ParamType, Record, SchemaId, Snapshot, SnapshotError, Vertex,
};

/// State schema of `cop` version 1.
pub const SCHEMA: SchemaId = SchemaId(32_001);

const NS_PER_MIN: i64 = 60_000_000_000;
const JOULES_PER_KWH: f64 = 3.6e6;

const FLOW: usize = 0;
const SUPPLY: usize = 1;
const RETURN: usize = 2;
const POWER: usize = 3;
const RUNNING: usize = 4;
const DEFROST: usize = 5;
const INPUTS: usize = 6;

/// The `cop` kind.
pub static KIND: KindSpec = KindSpec {
    name: "cop",
    version: 1,
    doc: "heat-pump COP per compressor cycle, defrost excluded, with the cycle's thermal and electrical energy",
    input_names: &["flow", "supply", "return", "power", "running", "defrost"],
    arity: Arity::exactly(INPUTS),
    outputs: &[
        OutputSpec::main(""),
        OutputSpec::named("thermal_kwh", "kWh"),
        OutputSpec::named("electric_kwh", "kWh"),
        OutputSpec::named("skipped", ""),
    ],
    outputs_from: None,
    params: &[
        ParamSpec {
            name: "cp",
            ty: ParamType::Float {
                min: 100.0,
                max: 10_000.0,
            },
            default: ParamDefault::Float(4186.0),
            doc: "specific heat capacity of the heat-transfer fluid, J/(kg K) (water 4186; 30 % glycol about 3800)",
        },
        ParamSpec {
            name: "density",
            ty: ParamType::Float { min: 0.5, max: 2.0 },
            default: ParamDefault::Float(1.0),
            doc: "density of the fluid, kg/l, to turn the flow in l/min into kg/s",
        },
        ParamSpec {
            name: "min_cycle",
            ty: ParamType::Duration {
                min_ns: 0,
                max_ns: 24 * 60 * NS_PER_MIN,
            },
            default: ParamDefault::Duration(5 * NS_PER_MIN),
            doc: "compressor cycles shorter than this (event time, on to off) are counted on `.skipped`, not reported",
        },
        ParamSpec {
            name: "max_gap",
            ty: ParamType::Duration {
                min_ns: 1_000_000,
                max_ns: 24 * 60 * NS_PER_MIN,
            },
            default: ParamDefault::Duration(NS_PER_MIN),
            doc: "longest event time between two input records that is integrated with held values; longer silences are left out and make the cycle uncertain",
        },
    ],
    state_schema: Some(SCHEMA),
    migrations: &[],
    build: Builder::Vertex(build),
};

#[derive(Debug)]
struct Config {
    inputs: [ChannelId; INPUTS],
    cop: ChannelId,
    thermal: ChannelId,
    electric: ChannelId,
    skipped: ChannelId,
    /// `cp x density / 60`: watts per (l/min x K).
    watts_per_lpm_kelvin: f64,
    min_cycle_ns: i64,
    max_gap_ns: i64,
}

/// The latest record of one input.
#[derive(Clone, Copy, Debug, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct Held {
    value: f64,
    good: bool,
}

/// A compressor cycle in progress.
#[derive(Clone, Copy, Debug, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct Cycle {
    /// Event time the compressor was turned on, ns.
    start: i64,
    /// Thermal energy so far, J.
    thermal_j: f64,
    /// Electrical energy so far, J.
    electric_j: f64,
    /// Part of the cycle could not be integrated.
    uncertain: bool,
}

/// Everything `cop` remembers between records.
#[derive(Clone, Debug, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct CopState {
    /// Latest record of each input, in input order.
    held: [Option<Held>; INPUTS],
    /// The compressor state of the latest good `running` record.
    running: Option<bool>,
    /// Event time integrated up to, ns.
    last_time: Option<i64>,
    /// The cycle in progress.
    cycle: Option<Cycle>,
    /// Cycles not reported so far (too short or no electrical energy).
    skipped: u64,
}

#[derive(Debug)]
struct Cop {
    cfg: Config,
    state: CopState,
}

fn build(ctx: &BuildContext<'_>) -> Result<Box<dyn Vertex>, BuildError> {
    let inputs = support::inputs(
        ctx,
        &["flow", "supply", "return", "power", "running", "defrost"],
    )?;
    let cfg = Config {
        inputs,
        cop: support::output(ctx, 0)?,
        thermal: support::output(ctx, 1)?,
        electric: support::output(ctx, 2)?,
        skipped: support::output(ctx, 3)?,
        watts_per_lpm_kelvin: support::float(ctx, "cp")? * support::float(ctx, "density")? / 60.0,
        min_cycle_ns: support::duration_ns(ctx, "min_cycle")?,
        max_gap_ns: support::duration_ns(ctx, "max_gap")?,
    };
    Ok(Box::new(Cop {
        cfg,
        state: CopState {
            held: [None; INPUTS],
            running: None,
            last_time: None,
            cycle: None,
            skipped: 0,
        },
    }))
}

impl Cop {
    /// Integrates the cycle in progress with the held values up to `now`.
    fn integrate(&mut self, now: i64) {
        let st = &mut self.state;
        let Some(last) = st.last_time else {
            st.last_time = Some(now);
            return;
        };
        let dt_ns = now.saturating_sub(last);
        if dt_ns < 0 {
            // Time ran backwards: keep the later mark so nothing is counted twice.
            if let Some(cycle) = st.cycle.as_mut() {
                cycle.uncertain = true;
            }
            return;
        }
        st.last_time = Some(now);
        let Some(cycle) = st.cycle.as_mut() else {
            return;
        };
        if dt_ns == 0 {
            return;
        }
        if dt_ns > self.cfg.max_gap_ns {
            cycle.uncertain = true;
            return;
        }
        let good = |i: usize| st.held.get(i).copied().flatten().filter(|h| h.good);
        let defrost = good(DEFROST).map(|h| h.value >= 0.5);
        let running = good(RUNNING).map(|h| h.value >= 0.5);
        match (
            good(FLOW),
            good(SUPPLY),
            good(RETURN),
            good(POWER),
            running,
            defrost,
        ) {
            (_, _, _, _, Some(true), Some(true)) => {} // defrost: left out by design
            (Some(flow), Some(supply), Some(ret), Some(power), Some(true), Some(false)) => {
                let dt = dt_ns as f64 / 1e9;
                let thermal_w =
                    flow.value * self.cfg.watts_per_lpm_kelvin * (supply.value - ret.value);
                let thermal_j = cycle.thermal_j + thermal_w * dt;
                let electric_j = cycle.electric_j + power.value * dt;
                if thermal_j.is_finite() && electric_j.is_finite() {
                    cycle.thermal_j = thermal_j;
                    cycle.electric_j = electric_j;
                } else {
                    cycle.uncertain = true; // readings beyond any heat pump
                }
            }
            _ => cycle.uncertain = true,
        }
    }

    /// Applies a good `running` record; ends or starts a cycle.
    fn on_running(&mut self, record: &Record, out: &mut Vec<Record>) {
        let on = record.value >= 0.5;
        let was = self.state.running.replace(on);
        let now = record.time.0;
        match (was, on, self.state.cycle) {
            (_, true, None) => {
                self.state.cycle = Some(Cycle {
                    start: now,
                    thermal_j: 0.0,
                    electric_j: 0.0,
                    // A start not seen as an off -> on transition is partial.
                    uncertain: was.is_none(),
                });
            }
            (_, false, Some(cycle)) => {
                self.state.cycle = None;
                let quality = uncertain_if(cycle.uncertain);
                let long_enough = now.saturating_sub(cycle.start) >= self.cfg.min_cycle_ns;
                if long_enough && cycle.electric_j > 0.0 {
                    let cop = cycle.thermal_j / cycle.electric_j;
                    let r = Record {
                        seq: record.seq,
                        time: record.time,
                        channel: self.cfg.cop,
                        quality,
                        value: cop,
                    };
                    out.push(r);
                    out.push(Record {
                        channel: self.cfg.thermal,
                        value: cycle.thermal_j / JOULES_PER_KWH,
                        ..r
                    });
                    out.push(Record {
                        channel: self.cfg.electric,
                        value: cycle.electric_j / JOULES_PER_KWH,
                        ..r
                    });
                } else {
                    self.state.skipped = self.state.skipped.saturating_add(1);
                    out.push(Record {
                        seq: record.seq,
                        time: record.time,
                        channel: self.cfg.skipped,
                        quality,
                        value: self.state.skipped as f64,
                    });
                }
            }
            _ => {}
        }
    }
}

impl Vertex for Cop {
    fn process(&mut self, input: &[Record], out: &mut Vec<Record>) {
        for record in input {
            let Some(index) = self.cfg.inputs.iter().position(|&c| c == record.channel) else {
                continue;
            };
            self.integrate(record.time.0);
            let good = support::usable(record);
            if let Some(slot) = self.state.held.get_mut(index) {
                *slot = Some(Held {
                    value: record.value,
                    good,
                });
            }
            if index == RUNNING && good {
                self.on_running(record, out);
            }
        }
    }

    fn snapshot(&self) -> Option<Snapshot> {
        Some(freeze(SCHEMA, &self.state))
    }

    fn restore(&mut self, snapshot: &Snapshot) -> Result<(), SnapshotError> {
        let state: CopState = thaw(SCHEMA, snapshot)?;
        // Energies a run can leave are finite (non-finite intervals are left out).
        if let Some(c) = &state.cycle {
            if !(c.thermal_j.is_finite() && c.electric_j.is_finite()) {
                return Err(SnapshotError::Invalid(format!(
                    "cop cycle energies {} J thermal, {} J electric are not finite",
                    c.thermal_j, c.electric_j
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
    use tandem_core::{ParamValue, Quality};

    const G: Quality = Quality::GOOD;
    const U: Quality = Quality::UNCERTAIN;
    /// 12 l/min of water heated by 5 K: 0.2 kg/s x 4186 J/(kg K) x 5 K.
    const THERMAL_W: f64 = 4186.0;

    fn fixture(extra: &[(&str, ParamValue)]) -> Fixture {
        let mut set = vec![("max_gap", ParamValue::Duration(600_000_000_000))];
        set.extend(extra.iter().cloned());
        Fixture::new(&KIND, &set)
    }

    /// All inputs at t: 12 l/min, 35 / 30 °C, `power` W, compressor off, no defrost.
    fn idle(t: f64, power: f64) -> Vec<(f64, usize, f64, Quality)> {
        vec![
            (t, FLOW, 12.0, G),
            (t, SUPPLY, 35.0, G),
            (t, RETURN, 30.0, G),
            (t, POWER, power, G),
            (t, RUNNING, 0.0, G),
            (t, DEFROST, 0.0, G),
        ]
    }

    fn rows(
        head: Vec<(f64, usize, f64, Quality)>,
        tail: &[(f64, usize, f64, Quality)],
    ) -> Vec<(f64, usize, f64, Quality)> {
        let mut all = head;
        all.extend_from_slice(tail);
        all
    }

    /// (COP, thermal kWh, electric kWh, quality) of each reported cycle.
    fn cycles(fx: &Fixture, out: &[Record]) -> Vec<(f64, f64, f64, Quality)> {
        let cop = on(out, fx.output(0));
        let th = on(out, fx.output(1));
        let el = on(out, fx.output(2));
        assert_eq!((cop.len(), th.len()), (el.len(), el.len()));
        cop.iter()
            .zip(th.iter().zip(&el))
            .map(|(c, (t, e))| {
                assert_eq!((c.0, c.2), (t.0, t.2));
                assert_eq!((c.0, c.2), (e.0, e.2));
                (c.1, t.1, e.1, c.2)
            })
            .collect()
    }

    #[track_caller]
    fn expect_cycle(got: (f64, f64, f64, Quality), thermal_j: f64, electric_j: f64, q: Quality) {
        close(got.0, thermal_j / electric_j, 1e-12);
        close(got.1, thermal_j / 3.6e6, 1e-12);
        close(got.2, electric_j / 3.6e6, 1e-12);
        assert_eq!(got.3, q);
    }

    #[test]
    fn cop_of_one_cycle_leaves_defrost_out() {
        let fx = fixture(&[]);
        let input = feed(
            &fx,
            &rows(
                idle(0.0, 1000.0),
                &[
                    (10.0, RUNNING, 1.0, G),
                    (160.0, POWER, 2000.0, G),
                    (310.0, DEFROST, 1.0, G),
                    (340.0, POWER, 3000.0, G),
                    (370.0, DEFROST, 0.0, G),
                    (370.0, POWER, 2000.0, G),
                    (670.0, RUNNING, 0.0, G),
                ],
            ),
        );
        let out = run_whole(&fx, &input);
        // Integrated: 10..310 s and 370..670 s = 600 s of 4186 W thermal;
        // electric 150 s x 1000 W + 150 s x 2000 W + 300 s x 2000 W.
        let got = cycles(&fx, &out);
        assert_eq!(got.len(), 1);
        expect_cycle(got[0], 600.0 * THERMAL_W, 1_050_000.0, G);
        // The outputs carry the seq and time of the record that ended the cycle.
        assert!(out.iter().all(|r| r.seq == input.last().unwrap().seq));
        assert!(out.iter().all(|r| r.time.0 == 670_000_000_000));
    }

    #[test]
    fn cp_and_density_scale_thermal_power() {
        let fx = fixture(&[
            ("cp", ParamValue::Float(3800.0)),
            ("density", ParamValue::Float(1.05)),
        ]);
        let out = run_whole(
            &fx,
            &feed(
                &fx,
                &rows(
                    idle(0.0, 1000.0),
                    &[(0.0, RUNNING, 1.0, G), (400.0, RUNNING, 0.0, G)],
                ),
            ),
        );
        // 12 l/min x 1.05 kg/l / 60 = 0.21 kg/s; x 3800 x 5 K = 3990 W.
        expect_cycle(cycles(&fx, &out)[0], 400.0 * 3990.0, 400_000.0, G);
    }

    #[test]
    fn short_and_powerless_cycles_are_counted_not_reported() {
        let fx = fixture(&[("min_cycle", ParamValue::Duration(300_000_000_000))]);
        let out = run_whole(
            &fx,
            &feed(
                &fx,
                &rows(
                    idle(0.0, 1000.0),
                    &[
                        (0.0, RUNNING, 1.0, G),
                        (299.0, RUNNING, 0.0, G), // 299 s: short
                        (400.0, POWER, 0.0, G),
                        (400.0, RUNNING, 1.0, G),
                        (800.0, RUNNING, 0.0, G), // no electrical energy
                        (900.0, POWER, 1000.0, G),
                        (900.0, RUNNING, 1.0, G),
                        (1200.0, RUNNING, 0.0, G), // exactly min_cycle: reported
                    ],
                ),
            ),
        );
        let skipped = on(&out, fx.output(3));
        assert_eq!(skipped, vec![(299.0, 1.0, G), (800.0, 2.0, G)]);
        let got = cycles(&fx, &out);
        assert_eq!(got.len(), 1);
        expect_cycle(got[0], 300.0 * THERMAL_W, 300_000.0, G);
    }

    #[test]
    fn bad_input_is_left_out_and_flags_the_cycle() {
        let fx = fixture(&[]);
        let out = run_whole(
            &fx,
            &feed(
                &fx,
                &rows(
                    idle(0.0, 1000.0),
                    &[
                        (0.0, RUNNING, 1.0, G),
                        (100.0, SUPPLY, 85.0, Quality::DEVICE_FAULT), // open sensor
                        (200.0, SUPPLY, 35.0, G),
                        (400.0, RUNNING, 0.0, G),
                        (500.0, RUNNING, 1.0, G),
                        (900.0, RUNNING, 0.0, G), // the next cycle is clean again
                    ],
                ),
            ),
        );
        let got = cycles(&fx, &out);
        assert_eq!(got.len(), 2);
        // 100..200 s left out of both energies.
        expect_cycle(got[0], 300.0 * THERMAL_W, 300_000.0, U);
        expect_cycle(got[1], 400.0 * THERMAL_W, 400_000.0, G);
    }

    #[test]
    fn a_silence_longer_than_max_gap_is_left_out() {
        let fx = fixture(&[("max_gap", ParamValue::Duration(60_000_000_000))]);
        let mut r = idle(0.0, 1000.0);
        r.push((0.0, RUNNING, 1.0, G));
        for t in (60..=300).step_by(60) {
            r.push((t as f64, POWER, 1000.0, G));
        }
        r.push((400.0, POWER, 1000.0, G)); // 100 s of silence before this
        r.push((400.0, RUNNING, 0.0, G));
        let out = run_whole(&fx, &feed(&fx, &r));
        expect_cycle(cycles(&fx, &out)[0], 300.0 * THERMAL_W, 300_000.0, U);
    }

    #[test]
    fn a_cycle_whose_start_was_not_seen_is_uncertain() {
        let fx = fixture(&[]);
        let mut r = idle(0.0, 1000.0);
        r[4].2 = 1.0; // first running record already on
        r.push((500.0, RUNNING, 0.0, G));
        let out = run_whole(&fx, &feed(&fx, &r));
        expect_cycle(cycles(&fx, &out)[0], 500.0 * THERMAL_W, 500_000.0, U);
    }

    fn scenario(fx: &Fixture) -> Vec<Record> {
        feed(
            fx,
            &rows(
                idle(0.0, 900.0),
                &[
                    (5.0, RUNNING, 1.0, G),
                    (50.0, FLOW, 11.0, G),
                    (60.0, DEFROST, 1.0, G),
                    (90.0, DEFROST, 0.0, G),
                    (95.0, RETURN, 29.0, Quality::STALE),
                    (99.0, RETURN, 29.5, G),
                    (120.0, RUNNING, 0.0, G),
                    (130.0, RUNNING, 1.0, G),
                    (200.0, RUNNING, f64::NAN, G),
                    (500.0, POWER, 1200.0, G),
                    (520.0, RUNNING, 0.0, G),
                ],
            ),
        )
    }

    #[test]
    fn output_does_not_depend_on_batching() {
        let fx = fixture(&[("min_cycle", ParamValue::Duration(60_000_000_000))]);
        let input = scenario(&fx);
        assert_eq!(cycles(&fx, &run_whole(&fx, &input)).len(), 2);
        check_split_independence(&fx, &input);
    }

    #[test]
    fn snapshot_resumes_where_it_left_off() {
        let fx = fixture(&[("min_cycle", ParamValue::Duration(60_000_000_000))]);
        check_snapshot_resume(&fx, &scenario(&fx));
    }

    #[test]
    fn damaged_snapshot_is_refused() {
        let fx = fixture(&[]);
        let input = scenario(&fx);
        check_damaged_snapshot_refused(&fx, &input[..input.len() - 1]);
    }
}
