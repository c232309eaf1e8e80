//! `ewma`: exponentially weighted moving average, one output per input.
//!
//! `y = alpha * x + (1 - alpha) * y_prev`; the first sample starts the
//! average (`y = x`). A non-finite sample is skipped: no output, the average
//! is unchanged.

use super::common;
use rkyv::{Archive, Deserialize, Serialize};
use tandem_core::{
    freeze, thaw, Arity, BuildContext, BuildError, Builder, ChannelId, KindSpec, OutputSpec,
    ParamDefault, ParamSpec, ParamType, Record, SchemaId, Snapshot, SnapshotError, Vertex,
};

/// State schema of `ewma` v1: [`EwmaState`].
pub const SCHEMA: SchemaId = SchemaId(1004);

/// The `ewma` kind, version 1.
pub static EWMA: KindSpec = KindSpec {
    name: "ewma",
    version: 1,
    doc: "exponentially weighted moving average: y = alpha * x + (1 - alpha) * y",
    input_names: &["in"],
    arity: Arity::exactly(1),
    outputs: &[OutputSpec::main("")],
    outputs_from: None,
    params: &[ParamSpec {
        name: "alpha",
        ty: ParamType::Float { min: 0.0, max: 1.0 },
        default: ParamDefault::Required,
        doc: "weight of the newest sample, in (0, 1], unitless; 1 follows the input exactly",
    }],
    state_schema: Some(SCHEMA),
    migrations: &[],
    build: Builder::Vertex(build),
};

fn build(ctx: &BuildContext<'_>) -> Result<Box<dyn Vertex>, BuildError> {
    let alpha = common::float(ctx, "alpha")?;
    if !(alpha > 0.0 && alpha <= 1.0) {
        return Err(BuildError::new(format!(
            "vertex `{}`: `alpha = {alpha}` would never move the average; use a value above 0 and at most 1",
            ctx.id
        ))
        .at("alpha"));
    }
    Ok(Box::new(Ewma {
        input: common::input(ctx, 0)?,
        output: common::output(ctx)?,
        alpha,
        keep: 1.0 - alpha,
        state: EwmaState::default(),
    }))
}

/// The running average.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq)]
pub struct EwmaState {
    /// A sample has been seen and `value` holds the average.
    pub started: bool,
    /// The average so far.
    pub value: f64,
}

/// A running `ewma` vertex.
#[derive(Debug)]
pub struct Ewma {
    input: ChannelId,
    output: ChannelId,
    alpha: f64,
    keep: f64,
    state: EwmaState,
}

impl Vertex for Ewma {
    fn process(&mut self, input: &[Record], out: &mut Vec<Record>) {
        out.reserve(input.len());
        let (alpha, keep, to) = (self.alpha, self.keep, self.output);
        let EwmaState {
            mut started,
            mut value,
        } = self.state;
        for r in input {
            if r.channel != self.input || !r.value.is_finite() {
                continue;
            }
            value = if started {
                alpha * r.value + keep * value
            } else {
                r.value
            };
            started = true;
            out.push(r.derive(to, value));
        }
        self.state = EwmaState { started, value };
    }

    fn snapshot(&self) -> Option<Snapshot> {
        Some(freeze(SCHEMA, &self.state))
    }

    fn restore(&mut self, snapshot: &Snapshot) -> Result<(), SnapshotError> {
        let state: EwmaState = thaw(SCHEMA, snapshot)?;
        if !state.value.is_finite() {
            return Err(SnapshotError::Invalid(
                "ewma average is not finite".to_owned(),
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
    use tandem_core::Quality;

    #[test]
    fn hand_computed_average() {
        let mut v = vertex(&EWMA, &[("alpha", f(0.5))]);
        let input = series(&[0.0, 10.0, 10.0, 4.0]);
        let out = run(v.as_mut(), &input);
        // 0; .5*10 + .5*0 = 5; .5*10 + .5*5 = 7.5; .5*4 + .5*7.5 = 5.75
        assert_eq!(values(&out), [0.0, 5.0, 7.5, 5.75]);
        for (o, i) in out.iter().zip(&input) {
            assert_eq!((o.seq, o.time, o.channel), (i.seq, i.time, OUT));
        }
    }

    #[test]
    fn alpha_one_follows_the_input() {
        let mut v = vertex(&EWMA, &[("alpha", f(1.0))]);
        let out = run(v.as_mut(), &series(&[3.0, -1.0, 1e300]));
        assert_eq!(values(&out), [3.0, -1.0, 1e300]);
    }

    #[test]
    fn alpha_zero_is_a_build_error() {
        let err = build_err(&EWMA, &[("alpha", f(0.0))]);
        assert!(err.contains("use a value above 0 and at most 1"), "{err}");
    }

    #[test]
    fn non_finite_is_skipped_and_does_not_poison() {
        let mut v = vertex(&EWMA, &[("alpha", f(0.5))]);
        let input = series(&[2.0, f64::NAN, f64::NEG_INFINITY, 4.0]);
        let out = run(v.as_mut(), &input);
        assert_eq!(values(&out), [2.0, 3.0]);
        assert_eq!(out[1].seq, input[3].seq);
    }

    #[test]
    fn keeps_quality_and_ignores_other_channels() {
        let mut v = vertex(&EWMA, &[("alpha", f(0.5))]);
        let out = run(
            v.as_mut(),
            &[
                rec(1, 0, 2.0).flagged(Quality::ESTIMATED),
                rec_on(OTHER, 2, 0, 100.0),
            ],
        );
        assert_eq!(values(&out), [2.0]);
        assert_eq!(qualities(&out), [Quality::ESTIMATED]);
    }

    fn mixed() -> Vec<Record> {
        let mut input = series(&[1.0, 5.0, f64::NAN, -3.0, 0.1, 0.2, 7.0]);
        input.insert(2, rec_on(OTHER, 50, 1500, 4.0));
        input
    }

    #[test]
    fn output_does_not_depend_on_batching() {
        check_split_invariant(&EWMA, &[("alpha", f(0.3))], &[IN], &mixed());
    }

    #[test]
    fn continues_after_restore_and_refuses_damage() {
        check_snapshot_resume(&EWMA, &[("alpha", f(0.3))], &[IN], &mixed());
    }
}
