//! `rate`: rate of change between consecutive samples.
//!
//! `out = (value - previous value) / (time - previous time)`, per second,
//! minute or hour of event time, stamped with the later sample; its quality
//! is the union of both samples'. The first sample only starts the rate.
//!
//! A sample whose time is not after the previous sample's (`dt <= 0`: a
//! duplicate or out-of-order timestamp) is skipped: no output, and the
//! previous sample stays the reference. A non-finite sample is skipped the
//! same way. A result that overflows is flagged `OUT_OF_RANGE`.

use super::common;
use rkyv::{Archive, Deserialize, Serialize};
use tandem_core::{
    freeze, thaw, Arity, BuildContext, BuildError, Builder, ChannelId, KindSpec, OutputSpec,
    ParamDefault, ParamSpec, ParamType, Quality, Record, SchemaId, Snapshot, SnapshotError, Vertex,
};

/// State schema of `rate` v1: [`RateState`].
pub const SCHEMA: SchemaId = SchemaId(1005);

const PER: &[&str] = &["s", "min", "h"];

/// The `rate` kind, version 1.
pub static RATE: KindSpec = KindSpec {
    name: "rate",
    version: 1,
    doc: "rate of change between consecutive samples, per second (or minute, hour)",
    input_names: &["in"],
    arity: Arity::exactly(1),
    outputs: &[OutputSpec::main("")],
    outputs_from: None,
    params: &[ParamSpec {
        name: "per",
        ty: ParamType::Choice(PER),
        default: ParamDefault::Text("s"),
        doc: "time unit of the rate: \"s\", \"min\" or \"h\" (output unit is input unit per this)",
    }],
    state_schema: Some(SCHEMA),
    migrations: &[],
    build: Builder::Vertex(build),
};

fn build(ctx: &BuildContext<'_>) -> Result<Box<dyn Vertex>, BuildError> {
    let per = common::text(ctx, "per")?;
    let ns_per_unit = match per {
        "s" => 1e9,
        "min" => 60e9,
        "h" => 3600e9,
        other => return Err(common::bad_choice(ctx, "per", other, PER)),
    };
    Ok(Box::new(Rate {
        input: common::input(ctx, 0)?,
        output: common::output(ctx)?,
        ns_per_unit,
        state: RateState::default(),
    }))
}

/// The previous sample.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq)]
pub struct RateState {
    /// A previous sample is held.
    pub has_previous: bool,
    /// Its event time, ns.
    pub time: i64,
    /// Its value.
    pub value: f64,
    /// Its quality bits.
    pub quality: u32,
}

/// A running `rate` vertex.
#[derive(Debug)]
pub struct Rate {
    input: ChannelId,
    output: ChannelId,
    ns_per_unit: f64,
    state: RateState,
}

impl Vertex for Rate {
    fn process(&mut self, input: &[Record], out: &mut Vec<Record>) {
        let mut s = self.state;
        for r in input {
            if r.channel != self.input || !r.value.is_finite() {
                continue;
            }
            if s.has_previous {
                let dt = r.time.0.saturating_sub(s.time);
                if dt <= 0 {
                    continue;
                }
                let rate = (r.value - s.value) * self.ns_per_unit / dt as f64;
                let quality = common::flag_non_finite(r.quality | Quality(s.quality), rate);
                let mut o = r.derive(self.output, rate);
                o.quality = quality;
                out.push(o);
            }
            s = RateState {
                has_previous: true,
                time: r.time.0,
                value: r.value,
                quality: r.quality.0,
            };
        }
        self.state = s;
    }

    fn snapshot(&self) -> Option<Snapshot> {
        Some(freeze(SCHEMA, &self.state))
    }

    fn restore(&mut self, snapshot: &Snapshot) -> Result<(), SnapshotError> {
        let state: RateState = thaw(SCHEMA, snapshot)?;
        if !state.value.is_finite() {
            return Err(SnapshotError::Invalid(
                "rate previous value is not finite".to_owned(),
            ));
        }
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
    fn hand_computed_rates() {
        let mut v = vertex(&RATE, &[]);
        let input = [rec(1, 0, 0.0), rec(2, 2000, 10.0), rec(3, 2500, 9.0)];
        let out = run(v.as_mut(), &input);
        // 10 over 2 s = 5/s; -1 over 0.5 s = -2/s.
        assert_eq!(values(&out), [5.0, -2.0]);
        assert_eq!(
            (out[0].seq, out[0].time, out[0].channel),
            (input[1].seq, input[1].time, OUT)
        );
    }

    #[test]
    fn per_hour() {
        let mut v = vertex(&RATE, &[("per", t("h"))]);
        // 1 kWh more after 30 minutes: 2 kWh per hour.
        let out = run(v.as_mut(), &[rec(1, 0, 10.0), rec(2, 1_800_000, 11.0)]);
        assert_eq!(values(&out), [2.0]);
    }

    #[test]
    fn duplicate_and_backward_times_are_skipped() {
        let mut v = vertex(&RATE, &[]);
        let input = [
            rec(1, 1000, 0.0),
            rec(2, 1000, 50.0),
            rec(3, 500, 50.0),
            rec(4, 3000, 4.0),
        ];
        let out = run(v.as_mut(), &input);
        // Only seq 4, against seq 1: 4 over 2 s.
        assert_eq!(values(&out), [2.0]);
        assert_eq!(out[0].seq.0, 4);
    }

    #[test]
    fn quality_is_the_union_of_both_samples() {
        let mut v = vertex(&RATE, &[]);
        let input = [
            rec(1, 0, 0.0).flagged(Quality::ESTIMATED),
            rec(2, 1000, 1.0).flagged(Quality::UNCERTAIN),
            rec(3, 2000, 2.0),
        ];
        let out = run(v.as_mut(), &input);
        assert_eq!(
            qualities(&out),
            [Quality::ESTIMATED | Quality::UNCERTAIN, Quality::UNCERTAIN]
        );
    }

    #[test]
    fn non_finite_and_other_channels_are_skipped() {
        let mut v = vertex(&RATE, &[]);
        let input = [
            rec(1, 0, 0.0),
            rec(2, 1000, f64::NAN),
            rec_on(OTHER, 3, 1500, 1e6),
            rec(4, 2000, 6.0),
        ];
        assert_eq!(values(&run(v.as_mut(), &input)), [3.0]);
    }

    fn mixed() -> Vec<Record> {
        vec![
            rec(1, 0, 1.0),
            rec(2, 1000, 3.0),
            rec(3, 1000, 9.0),
            rec_on(OTHER, 4, 1200, 2.0),
            rec(5, 1500, f64::NAN),
            rec(6, 2250, -1.5),
            rec(7, 100, 0.0),
            rec(8, 4000, 0.25),
        ]
    }

    #[test]
    fn output_does_not_depend_on_batching() {
        check_split_invariant(&RATE, &[("per", t("min"))], &[IN], &mixed());
    }

    #[test]
    fn continues_after_restore_and_refuses_damage() {
        check_snapshot_resume(&RATE, &[("per", t("min"))], &[IN], &mixed());
    }
}
