//! `join`: combines two inputs that meet in event time.
//!
//! Each record of input `a` or `b` is held as that input's latest. When a
//! record arrives and the other input's latest record is within `tolerance`
//! of it in event time, `a op b` is emitted, stamped with the arriving
//! record, with the union of both records' quality. A result that is not
//! finite (division by zero) is flagged `OUT_OF_RANGE`.
//!
//! A non-finite input value is skipped: no output, and it does not replace
//! that input's latest record.

use super::common;
use rkyv::{Archive, Deserialize, Serialize};
use tandem_core::{
    freeze, thaw, Arity, BuildContext, BuildError, Builder, ChannelId, KindSpec, OutputSpec,
    ParamDefault, ParamSpec, ParamType, Quality, Record, SchemaId, Snapshot, SnapshotError, Vertex,
};

/// State schema of `join` v1: [`JoinState`].
pub const SCHEMA: SchemaId = SchemaId(1007);

const OPS: &[&str] = &["add", "sub", "mul", "div", "min", "max"];

/// The `join` kind, version 1.
pub static JOIN: KindSpec = KindSpec {
    name: "join",
    version: 1,
    doc: "a op b for records of two inputs that meet within an event-time tolerance",
    input_names: &["a", "b"],
    arity: Arity::exactly(2),
    outputs: &[OutputSpec::main("")],
    outputs_from: None,
    params: &[
        ParamSpec {
            name: "op",
            ty: ParamType::Choice(OPS),
            default: ParamDefault::Required,
            doc: "\"add\" (a + b), \"sub\" (a - b), \"mul\" (a * b), \"div\" (a / b), \"min\", \"max\"",
        },
        ParamSpec {
            name: "tolerance",
            ty: ParamType::Duration {
                min_ns: 0,
                max_ns: common::MAX_DURATION_NS,
            },
            default: ParamDefault::Required,
            doc: "largest event-time distance between the two records combined; \"0s\" needs equal times",
        },
    ],
    state_schema: Some(SCHEMA),
    migrations: &[],
    build: Builder::Vertex(build),
};

/// How the two values combine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Add,
    Sub,
    Mul,
    Div,
    Min,
    Max,
}

impl Op {
    fn apply(self, a: f64, b: f64) -> f64 {
        match self {
            Op::Add => a + b,
            Op::Sub => a - b,
            Op::Mul => a * b,
            Op::Div => a / b,
            Op::Min => a.min(b),
            Op::Max => a.max(b),
        }
    }
}

fn build(ctx: &BuildContext<'_>) -> Result<Box<dyn Vertex>, BuildError> {
    let op = match common::text(ctx, "op")? {
        "add" => Op::Add,
        "sub" => Op::Sub,
        "mul" => Op::Mul,
        "div" => Op::Div,
        "min" => Op::Min,
        "max" => Op::Max,
        other => return Err(common::bad_choice(ctx, "op", other, OPS)),
    };
    let a = common::input(ctx, 0)?;
    let b = common::input(ctx, 1)?;
    if a == b {
        return Err(BuildError::new(format!(
            "vertex `{}`: inputs `a` and `b` are the same channel; join two different channels",
            ctx.id
        )));
    }
    let tolerance = u64::try_from(common::duration(ctx, "tolerance")?).map_err(|_| {
        BuildError::new(format!(
            "vertex `{}`: `tolerance` must not be negative",
            ctx.id
        ))
    })?;
    Ok(Box::new(Join {
        inputs: [a, b],
        output: common::output(ctx)?,
        op,
        tolerance,
        state: JoinState::default(),
    }))
}

/// The latest finite record of one input.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq)]
pub struct Latest {
    /// A record has been held.
    pub present: bool,
    /// Its event time, ns.
    pub time: i64,
    /// Its value.
    pub value: f64,
    /// Its quality bits.
    pub quality: u32,
}

/// The latest record of each input, `a` then `b`.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq)]
pub struct JoinState {
    /// Latest of input `a`.
    pub a: Latest,
    /// Latest of input `b`.
    pub b: Latest,
}

/// A running `join` vertex.
#[derive(Debug)]
pub struct Join {
    inputs: [ChannelId; 2],
    output: ChannelId,
    op: Op,
    tolerance: u64,
    state: JoinState,
}

impl Vertex for Join {
    fn process(&mut self, input: &[Record], out: &mut Vec<Record>) {
        let mut s = self.state;
        for r in input {
            let from_a = r.channel == self.inputs[0];
            if !(from_a || r.channel == self.inputs[1]) || !r.value.is_finite() {
                continue;
            }
            let (mine, other) = if from_a {
                (&mut s.a, s.b)
            } else {
                (&mut s.b, s.a)
            };
            if other.present && r.time.0.abs_diff(other.time) <= self.tolerance {
                let value = if from_a {
                    self.op.apply(r.value, other.value)
                } else {
                    self.op.apply(other.value, r.value)
                };
                let quality = common::flag_non_finite(r.quality | Quality(other.quality), value);
                let mut o = r.derive(self.output, value);
                o.quality = quality;
                out.push(o);
            }
            *mine = Latest {
                present: true,
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
        let state: JoinState = thaw(SCHEMA, snapshot)?;
        if !(state.a.value.is_finite() && state.b.value.is_finite()) {
            return Err(SnapshotError::Invalid(
                "join holds a non-finite value".to_owned(),
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
    use tandem_core::ParamValue;

    fn given(op: &str) -> Vec<(&'static str, ParamValue)> {
        vec![("op", t(op)), ("tolerance", ms(500))]
    }

    fn join(op: &str, input: &[Record]) -> Vec<Record> {
        let mut v = try_build(&JOIN, &given(op), &[IN, IN2]).unwrap();
        run(v.as_mut(), input)
    }

    fn input() -> Vec<Record> {
        vec![
            rec_on(IN, 1, 0, 10.0),
            rec_on(IN2, 2, 200, 4.0),
            rec_on(IN, 3, 1000, 20.0),
            rec_on(IN2, 4, 1100, 5.0),
            rec_on(IN, 5, 1200, 2.5),
        ]
    }

    #[test]
    fn combines_records_that_meet_within_tolerance() {
        let out = join("sub", &input());
        // seq 2 meets seq 1 (200 ms apart): 10 - 4. seq 3 is 800 ms after
        // seq 2: nothing. seq 4 meets seq 3: 20 - 5. seq 5 meets seq 4: 2.5 - 5.
        let got: Vec<(u64, f64)> = out.iter().map(|r| (r.seq.0, r.value)).collect();
        assert_eq!(got, [(2, 6.0), (4, 15.0), (5, -2.5)]);
        assert_eq!(out[0].time, input()[1].time);
        assert!(out.iter().all(|r| r.channel == OUT));
    }

    #[test]
    fn every_op_by_hand() {
        let input = [rec_on(IN, 1, 0, 6.0), rec_on(IN2, 2, 0, 3.0)];
        for (op, expected) in [
            ("add", 9.0),
            ("sub", 3.0),
            ("mul", 18.0),
            ("div", 2.0),
            ("min", 3.0),
            ("max", 6.0),
        ] {
            assert_eq!(values(&join(op, &input)), [expected], "{op}");
        }
    }

    #[test]
    fn quality_is_the_union_and_division_by_zero_is_flagged() {
        let input = [
            rec_on(IN, 1, 0, 1.0).flagged(Quality::ESTIMATED),
            rec_on(IN2, 2, 0, 0.0).flagged(Quality::COMM_ERROR),
        ];
        let out = join("div", &input);
        assert_eq!(out[0].value, f64::INFINITY);
        assert_eq!(
            out[0].quality,
            Quality::ESTIMATED | Quality::COMM_ERROR | Quality::OUT_OF_RANGE
        );
    }

    #[test]
    fn non_finite_and_other_channels_are_skipped() {
        let input = [
            rec_on(IN, 1, 0, 1.0),
            rec_on(IN, 2, 0, f64::NAN),
            rec_on(OTHER, 3, 0, 100.0),
            rec_on(IN2, 4, 0, 2.0),
        ];
        assert_eq!(values(&join("add", &input)), [3.0]);
    }

    #[test]
    fn same_channel_twice_is_a_build_error() {
        let Err(err) = try_build(&JOIN, &given("add"), &[IN, IN]) else {
            panic!("built a join of one channel with itself");
        };
        assert!(err.message.contains("are the same channel"), "{err}");
    }

    fn mixed() -> Vec<Record> {
        let mut input = input();
        input.insert(1, rec_on(IN, 10, 100, f64::INFINITY));
        input.insert(3, rec_on(OTHER, 11, 300, 1.0));
        input.push(rec_on(IN2, 12, 1300, 0.0).flagged(Quality::UNCERTAIN));
        input.push(rec_on(IN, 13, 5000, 1.0));
        input.push(rec_on(IN2, 14, 5500, 7.0));
        input
    }

    #[test]
    fn output_does_not_depend_on_batching() {
        check_split_invariant(&JOIN, &given("div"), &[IN, IN2], &mixed());
    }

    #[test]
    fn continues_after_restore_and_refuses_damage() {
        check_snapshot_resume(&JOIN, &given("sub"), &[IN, IN2], &mixed());
    }
}
