//! `integrate`: trapezoid-rule integral over event time, e.g. power to energy.
//!
//! At each sample the area `(previous + value) / 2 * dt` is added to a
//! running total, which is emitted (stamped with the sample; quality the
//! union of both samples'). With `per = "h"` watts become watt-hours, with
//! `per = "s"` joules. The total is summed with Neumaier compensation, so a
//! meter running for years does not lose small increments.
//!
//! - The first sample emits the total (0 on a fresh start) and starts the
//!   integral.
//! - A gap longer than `max_gap` is not integrated across: no area is added,
//!   the total is emitted flagged `UNCERTAIN`, and the sample starts anew.
//! - A sample whose time is not after the previous one (`dt <= 0`) or whose
//!   value is not finite is skipped: no output, state unchanged.
//!
//! The total lives in the snapshot: a restored instance continues from it.

use super::common;
use rkyv::{Archive, Deserialize, Serialize};
use tandem_core::{
    freeze, thaw, Arity, BuildContext, BuildError, Builder, ChannelId, KindSpec, OutputSpec,
    ParamDefault, ParamSpec, ParamType, Quality, Record, SchemaId, Snapshot, SnapshotError, Vertex,
};

/// State schema of `integrate` v1: [`IntegrateState`].
pub const SCHEMA: SchemaId = SchemaId(1006);

const PER: &[&str] = &["s", "h"];

/// The `integrate` kind, version 1.
pub static INTEGRATE: KindSpec = KindSpec {
    name: "integrate",
    version: 1,
    doc: "running trapezoid integral over event time (W to Wh or J), emitted at each sample",
    input_names: &["in"],
    arity: Arity::exactly(1),
    outputs: &[OutputSpec::main("")],
    outputs_from: None,
    params: PARAMS,
    state_schema: Some(SCHEMA),
    migrations: &[],
    build: Builder::Vertex(build),
};

/// The parameters of every version of `integrate`.
pub(super) const PARAMS: &[ParamSpec] = &[
    ParamSpec {
        name: "per",
        ty: ParamType::Choice(PER),
        default: ParamDefault::Text("h"),
        doc: "time unit of the integral: \"h\" (W to Wh) or \"s\" (W to J)",
    },
    ParamSpec {
        name: "max_gap",
        ty: ParamType::Duration {
            min_ns: 1,
            max_ns: common::MAX_DURATION_NS,
        },
        default: ParamDefault::Duration(60_000_000_000),
        doc: "longest event-time gap between samples that is integrated across; longer gaps add nothing and flag the total uncertain",
    },
];

fn build(ctx: &BuildContext<'_>) -> Result<Box<dyn Vertex>, BuildError> {
    Ok(Box::new(Integrate {
        input: common::input(ctx, 0)?,
        output: common::output(ctx)?,
        rule: Rule::from_params(ctx)?,
        state: IntegrateState::default(),
    }))
}

/// How samples are integrated: the unit of time and the longest gap bridged.
#[derive(Clone, Copy, Debug)]
pub(super) struct Rule {
    /// Twice the nanoseconds per unit of the integral (the trapezoid's 1/2).
    two_ns_per_unit: f64,
    /// Longest gap integrated across, ns.
    max_gap: i64,
}

impl Rule {
    /// The rule from the `per` and `max_gap` parameters.
    pub(super) fn from_params(ctx: &BuildContext<'_>) -> Result<Rule, BuildError> {
        let per = common::text(ctx, "per")?;
        let ns_per_unit = match per {
            "s" => 1e9,
            "h" => 3600e9,
            other => return Err(common::bad_choice(ctx, "per", other, PER)),
        };
        Ok(Rule {
            two_ns_per_unit: 2.0 * ns_per_unit,
            max_gap: common::duration(ctx, "max_gap")?,
        })
    }
}

/// The running total and the sample it ends at.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq)]
pub struct IntegrateState {
    /// The running total (add `compensation` for the best estimate).
    pub total: f64,
    /// Neumaier compensation: low-order bits lost from `total`.
    pub compensation: f64,
    /// A previous sample is held.
    pub has_previous: bool,
    /// Its event time, ns.
    pub time: i64,
    /// Its value.
    pub value: f64,
    /// Its quality bits.
    pub quality: u32,
}

impl IntegrateState {
    fn add(&mut self, x: f64) {
        let t = self.total + x;
        if self.total.abs() >= x.abs() {
            self.compensation += (self.total - t) + x;
        } else {
            self.compensation += (x - t) + self.total;
        }
        self.total = t;
    }

    /// The best estimate of the integral.
    pub(super) fn value(&self) -> f64 {
        self.total + self.compensation
    }

    /// Takes one sample of the input channel: adds its area and holds it.
    /// Returns the quality of the total to emit, or `None` when the sample
    /// is skipped (not finite, or not after the held one).
    pub(super) fn accept(&mut self, r: &Record, rule: Rule) -> Option<Quality> {
        if !r.value.is_finite() {
            return None;
        }
        let mut quality = r.quality;
        if self.has_previous {
            let dt = r.time.0.saturating_sub(self.time);
            if dt <= 0 {
                return None;
            }
            if dt > rule.max_gap {
                quality |= Quality::UNCERTAIN;
            } else {
                let area = (self.value + r.value) * dt as f64 / rule.two_ns_per_unit;
                if area.is_finite() && (self.total + area).is_finite() {
                    self.add(area);
                    quality |= Quality(self.quality);
                } else {
                    // An interval no meter could measure (values near f64::MAX):
                    // left out, as a gap is, so the total stays a number.
                    quality |= Quality::UNCERTAIN;
                }
            }
        }
        self.has_previous = true;
        self.time = r.time.0;
        self.value = r.value;
        self.quality = r.quality.0;
        Some(common::flag_non_finite(quality, self.value()))
    }

    /// Refuses a restored state that no run could have written.
    pub(super) fn check(&self) -> Result<(), SnapshotError> {
        if self.total.is_finite() && self.compensation.is_finite() && self.value.is_finite() {
            Ok(())
        } else {
            Err(SnapshotError::Invalid(
                "integrate total or last sample is not finite".to_owned(),
            ))
        }
    }
}

/// A running `integrate` vertex.
#[derive(Debug)]
pub struct Integrate {
    input: ChannelId,
    output: ChannelId,
    rule: Rule,
    state: IntegrateState,
}

impl Vertex for Integrate {
    fn process(&mut self, input: &[Record], out: &mut Vec<Record>) {
        let mut s = self.state;
        for r in input {
            if r.channel != self.input {
                continue;
            }
            let Some(quality) = s.accept(r, self.rule) else {
                continue;
            };
            let mut o = r.derive(self.output, s.value());
            o.quality = quality;
            out.push(o);
        }
        self.state = s;
    }

    fn snapshot(&self) -> Option<Snapshot> {
        Some(freeze(SCHEMA, &self.state))
    }

    fn restore(&mut self, snapshot: &Snapshot) -> Result<(), SnapshotError> {
        let state: IntegrateState = thaw(SCHEMA, snapshot)?;
        state.check()?;
        self.state = state;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::ops::testkit::*;

    #[test]
    fn intervals_past_f64_max_are_left_out_and_the_total_stays_a_number() {
        let mut v = vertex(&INTEGRATE, &[("per", t("s"))]);
        let out = run(
            v.as_mut(),
            &[rec(1, 0, 1e308), rec(2, 1000, 1e308), rec(3, 2000, 1.0)],
        );
        assert!(out.iter().all(|r| r.value.is_finite()), "{out:?}");
        assert!(out[1].quality.contains(Quality::UNCERTAIN));
        let snapshot = v.snapshot().unwrap();
        let mut fresh = vertex(&INTEGRATE, &[("per", t("s"))]);
        fresh
            .restore(&snapshot)
            .expect("the state a run reached must restore");
    }

    const HOUR: i64 = 3_600_000;

    fn hourly() -> Vec<(&'static str, tandem_core::ParamValue)> {
        vec![("per", t("h")), ("max_gap", ms(HOUR))]
    }

    #[test]
    fn watts_to_watt_hours_by_trapezoid() {
        let mut v = vertex(&INTEGRATE, &hourly());
        let input = [
            rec(1, 0, 1000.0),
            rec(2, HOUR / 2, 1000.0),
            rec(3, HOUR, 3000.0),
            rec(4, 3 * HOUR, 0.0),
            rec(5, 3 * HOUR + HOUR / 2, 0.0),
        ];
        let out = run(v.as_mut(), &input);
        // 0; 1000 W for 0.5 h = 500 Wh; (1000 + 3000) / 2 * 0.5 h = 1000 Wh
        // more; a 2 h gap adds nothing and is uncertain; 0 W adds nothing.
        assert_eq!(values(&out), [0.0, 500.0, 1500.0, 1500.0, 1500.0]);
        assert_eq!(
            qualities(&out),
            [
                Quality::GOOD,
                Quality::GOOD,
                Quality::GOOD,
                Quality::UNCERTAIN,
                Quality::GOOD
            ]
        );
        assert_eq!(
            (out[2].seq, out[2].time, out[2].channel),
            (input[2].seq, input[2].time, OUT)
        );
    }

    #[test]
    fn watts_to_joules() {
        let mut v = vertex(&INTEGRATE, &[("per", t("s"))]);
        let out = run(v.as_mut(), &[rec(1, 0, 2.0), rec(2, 3000, 4.0)]);
        // (2 + 4) / 2 W * 3 s = 9 J.
        assert_eq!(values(&out), [0.0, 9.0]);
    }

    #[test]
    fn restored_meter_continues_from_its_total() {
        let mut before = vertex(&INTEGRATE, &hourly());
        let _ = run(before.as_mut(), &[rec(1, 0, 1000.0), rec(2, HOUR, 1000.0)]);
        let bytes = before.snapshot().unwrap().encode();
        let mut after = vertex(&INTEGRATE, &hourly());
        after.restore(&Snapshot::decode(&bytes).unwrap()).unwrap();
        let out = run(after.as_mut(), &[rec(3, 2 * HOUR, 500.0)]);
        // 1000 Wh so far, then (1000 + 500) / 2 W * 1 h = 750 Wh.
        assert_eq!(values(&out), [1750.0]);
    }

    #[test]
    fn skips_non_finite_and_non_increasing_time() {
        let mut v = vertex(&INTEGRATE, &[("per", t("s"))]);
        let input = [
            rec(1, 0, 1.0),
            rec(2, 1000, f64::NAN),
            rec(3, 0, 100.0),
            rec_on(OTHER, 4, 1500, 1e9),
            rec(5, 2000, 3.0),
        ];
        let out = run(v.as_mut(), &input);
        // (1 + 3) / 2 W * 2 s = 4 J, from seq 1 to seq 5.
        assert_eq!(values(&out), [0.0, 4.0]);
        assert_eq!(out[1].seq.0, 5);
    }

    #[test]
    fn many_small_increments_are_not_lost() {
        let mut v = vertex(&INTEGRATE, &[("per", t("s"))]);
        // 2e10 J, then a gap (default max_gap is 60 s), then 0.002 W for
        // one million 1 ms steps: 2e-6 J each, 2 J in all. Plain f64 sums
        // would round every step to one ulp of 2e10 (3.8e-6) and end ~1.8 J high.
        let mut input = vec![rec(1, 0, 2e10), rec(2, 1000, 2e10)];
        input.extend((0..=1_000_000).map(|n| rec(n + 3, 100_000 + n as i64, 0.002)));
        let out = run(v.as_mut(), &input);
        let total = out.last().unwrap().value;
        let expected = 2e10 + 2.0;
        assert!((total - expected).abs() < 1e-5, "{total} vs {expected}");
    }

    fn mixed() -> Vec<Record> {
        vec![
            rec(1, 0, 100.0),
            rec(2, 1000, 200.0),
            rec(3, 1000, 7.0),
            rec(4, 1500, f64::NAN),
            rec_on(OTHER, 5, 1600, 2.0),
            rec(6, 2500, 50.0).flagged(Quality::ESTIMATED),
            rec(7, 9000, 60.0),
            rec(8, 9500, 10.0),
        ]
    }

    #[test]
    fn output_does_not_depend_on_batching() {
        let given = [("per", t("s")), ("max_gap", ms(5000))];
        check_split_invariant(&INTEGRATE, &given, &[IN], &mixed());
    }

    #[test]
    fn continues_after_restore_and_refuses_damage() {
        let given = [("per", t("s")), ("max_gap", ms(5000))];
        check_snapshot_resume(&INTEGRATE, &given, &[IN], &mixed());
    }
}
