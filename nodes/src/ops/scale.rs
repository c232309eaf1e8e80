//! `scale`: `out = value * factor + offset`, one output per input record.
//!
//! Stateless. A result that is not finite (NaN or infinite input, or an
//! overflow) passes through flagged `OUT_OF_RANGE`.

use super::common::{self, map_values};
use tandem_core::{
    Arity, BuildContext, BuildError, Builder, ChannelId, KindSpec, OutputSpec, ParamDefault,
    ParamSpec, ParamType, Record, Vertex,
};

/// The `scale` kind, version 1.
pub static SCALE: KindSpec = KindSpec {
    name: "scale",
    version: 1,
    doc: "linear map of each value: value * factor + offset",
    input_names: &["in"],
    arity: Arity::exactly(1),
    outputs: &[OutputSpec::main("")],
    outputs_from: None,
    params: &[
        ParamSpec {
            name: "factor",
            ty: ParamType::ANY_FLOAT,
            default: ParamDefault::Float(1.0),
            doc: "multiplier, output unit per input unit",
        },
        ParamSpec {
            name: "offset",
            ty: ParamType::ANY_FLOAT,
            default: ParamDefault::Float(0.0),
            doc: "added after multiplying, in the output unit",
        },
    ],
    state_schema: None,
    migrations: &[],
    build: Builder::Vertex(build),
};

fn build(ctx: &BuildContext<'_>) -> Result<Box<dyn Vertex>, BuildError> {
    Ok(Box::new(Scale {
        input: common::input(ctx, 0)?,
        output: common::output(ctx)?,
        factor: common::float(ctx, "factor")?,
        offset: common::float(ctx, "offset")?,
    }))
}

/// A running `scale` vertex.
#[derive(Debug)]
pub struct Scale {
    input: ChannelId,
    output: ChannelId,
    factor: f64,
    offset: f64,
}

impl Vertex for Scale {
    fn process(&mut self, input: &[Record], out: &mut Vec<Record>) {
        let (factor, offset) = (self.factor, self.offset);
        map_values(input, out, self.input, self.output, |v| v * factor + offset);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::ops::testkit::*;
    use tandem_core::Quality;

    #[test]
    fn multiplies_then_adds_keeping_seq_time_and_quality() {
        let mut v = vertex(&SCALE, &[("factor", f(0.1)), ("offset", f(-40.0))]);
        let input = [
            rec(1, 0, 400.0),
            rec(2, 1000, 650.0).flagged(Quality::ESTIMATED),
        ];
        let out = run(v.as_mut(), &input);
        // 400 * 0.1 - 40 = 0, 650 * 0.1 - 40 = 25 (0.1 * 650 rounds to 65 exactly).
        assert_eq!(values(&out), [0.0, 25.0]);
        assert_eq!(out[1].seq, input[1].seq);
        assert_eq!(out[1].time, input[1].time);
        assert_eq!(out[1].channel, OUT);
        assert_eq!(qualities(&out), [Quality::GOOD, Quality::ESTIMATED]);
    }

    #[test]
    fn defaults_are_identity() {
        let mut v = vertex(&SCALE, &[]);
        let out = run(v.as_mut(), &series(&[1.5, -2.0, 0.0]));
        assert_eq!(values(&out), [1.5, -2.0, 0.0]);
    }

    #[test]
    fn ignores_other_channels() {
        let mut v = vertex(&SCALE, &[("factor", f(2.0))]);
        let out = run(v.as_mut(), &[rec_on(OTHER, 1, 0, 1.0), rec(2, 0, 3.0)]);
        assert_eq!(values(&out), [6.0]);
    }

    #[test]
    fn non_finite_passes_flagged() {
        let mut v = vertex(&SCALE, &[("factor", f(1e300))]);
        let out = run(
            v.as_mut(),
            &[rec(1, 0, f64::NAN), rec(2, 0, 1e10), rec(3, 0, 1.0)],
        );
        assert!(out[0].value.is_nan());
        assert_eq!(out[1].value, f64::INFINITY);
        assert_eq!(
            qualities(&out),
            [Quality::OUT_OF_RANGE, Quality::OUT_OF_RANGE, Quality::GOOD]
        );
    }

    #[test]
    fn output_does_not_depend_on_batching() {
        let input = series(&[1.0, f64::NAN, 3.0, -7.25, 1e9]);
        check_split_invariant(
            &SCALE,
            &[("factor", f(3.0)), ("offset", f(1.0))],
            &[IN],
            &input,
        );
    }

    #[test]
    fn is_stateless() {
        let v = vertex(&SCALE, &[]);
        assert!(v.snapshot().is_none());
    }
}
