//! `range_check`: flags values outside `[min, max]` with `OUT_OF_RANGE`.
//!
//! Stateless; every record of the input passes through with its value
//! unchanged. NaN and infinities are outside every range and are flagged.

use super::common;
use tandem_core::{
    Arity, BuildContext, BuildError, Builder, ChannelId, KindSpec, OutputSpec, ParamDefault,
    ParamSpec, ParamType, Quality, Record, Vertex,
};

/// The `range_check` kind, version 1.
pub static RANGE_CHECK: KindSpec = KindSpec {
    name: "range_check",
    version: 1,
    doc: "passes values through, flagging those outside [min, max] (and NaN) out_of_range",
    input_names: &["in"],
    arity: Arity::exactly(1),
    outputs: &[OutputSpec::main("")],
    outputs_from: None,
    params: &[
        ParamSpec {
            name: "min",
            ty: ParamType::ANY_FLOAT,
            default: ParamDefault::Required,
            doc: "smallest valid value, inclusive, in the input's unit",
        },
        ParamSpec {
            name: "max",
            ty: ParamType::ANY_FLOAT,
            default: ParamDefault::Required,
            doc: "largest valid value, inclusive, in the input's unit; at least `min`",
        },
    ],
    state_schema: None,
    migrations: &[],
    build: Builder::Vertex(build),
};

fn build(ctx: &BuildContext<'_>) -> Result<Box<dyn Vertex>, BuildError> {
    let min = common::float(ctx, "min")?;
    let max = common::float(ctx, "max")?;
    if min > max {
        return Err(BuildError::new(format!(
            "vertex `{}`: `min` ({min}) is above `max` ({max}); swap them",
            ctx.id
        ))
        .at("min"));
    }
    Ok(Box::new(RangeCheck {
        input: common::input(ctx, 0)?,
        output: common::output(ctx)?,
        min,
        max,
    }))
}

/// A running `range_check` vertex.
#[derive(Debug)]
pub struct RangeCheck {
    input: ChannelId,
    output: ChannelId,
    min: f64,
    max: f64,
}

impl Vertex for RangeCheck {
    fn process(&mut self, input: &[Record], out: &mut Vec<Record>) {
        let (min, max, to) = (self.min, self.max, self.output);
        out.reserve(input.len());
        for r in input {
            if r.channel == self.input {
                // `&` not `&&`: both compares, no branch. NaN fails both.
                let inside = (r.value >= min) & (r.value <= max);
                let flag = u32::from(!inside) * Quality::OUT_OF_RANGE.0;
                out.push(Record {
                    seq: r.seq,
                    time: r.time,
                    channel: to,
                    quality: Quality(r.quality.0 | flag),
                    value: r.value,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::ops::testkit::*;

    const OOR: Quality = Quality::OUT_OF_RANGE;
    const GOOD: Quality = Quality::GOOD;

    #[test]
    fn flags_outside_inclusive_bounds_and_keeps_values() {
        let mut v = vertex(&RANGE_CHECK, &[("min", f(0.0)), ("max", f(100.0))]);
        let input = series(&[
            -0.1,
            0.0,
            50.0,
            100.0,
            100.5,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ]);
        let out = run(v.as_mut(), &input);
        assert_eq!(qualities(&out), [OOR, GOOD, GOOD, GOOD, OOR, OOR, OOR, OOR]);
        for (o, i) in out.iter().zip(&input) {
            assert_eq!(o.value.to_bits(), i.value.to_bits());
            assert_eq!((o.seq, o.time, o.channel), (i.seq, i.time, OUT));
        }
    }

    #[test]
    fn keeps_existing_flags_and_ignores_other_channels() {
        let mut v = vertex(&RANGE_CHECK, &[("min", f(0.0)), ("max", f(1.0))]);
        let input = [
            rec(1, 0, 2.0).flagged(Quality::COMM_ERROR),
            rec_on(OTHER, 2, 0, 0.5),
        ];
        let out = run(v.as_mut(), &input);
        assert_eq!(qualities(&out), [Quality::COMM_ERROR | OOR]);
    }

    #[test]
    fn min_above_max_is_a_build_error() {
        let err = build_err(&RANGE_CHECK, &[("min", f(5.0)), ("max", f(1.0))]);
        assert_eq!(err, "vertex `v`: `min` (5) is above `max` (1); swap them");
    }

    #[test]
    fn output_does_not_depend_on_batching() {
        let input = series(&[1.0, 20.0, f64::NAN, -3.0, 4.0]);
        check_split_invariant(
            &RANGE_CHECK,
            &[("min", f(0.0)), ("max", f(5.0))],
            &[IN],
            &input,
        );
    }
}
