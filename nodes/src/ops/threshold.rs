//! `threshold`: an alarm with hysteresis and a hold count.
//!
//! With `direction = "above"` a sample supports raising when
//! `value >= raise` and supports clearing when `value < clear`
//! (`clear <= raise`). With `direction = "below"` it is mirrored: raise when
//! `value <= raise`, clear when `value > clear` (`clear >= raise`). The alarm
//! changes after `hold` consecutive supporting samples; a sample that does
//! not support the change resets the count.
//!
//! Output is 1.0 (raised) or 0.0 (cleared), emitted on transitions only, plus
//! once at the first sample with the state after that sample (so a
//! subscriber always learns the initial state). A non-finite sample is
//! skipped: no output, the count is unchanged.

use super::common;
use rkyv::{Archive, Deserialize, Serialize};
use tandem_core::{
    freeze, thaw, Arity, BuildContext, BuildError, Builder, ChannelId, KindSpec, OutputSpec,
    ParamDefault, ParamSpec, ParamType, Record, SchemaId, Snapshot, SnapshotError, Vertex,
};

/// State schema of `threshold` v1: [`ThresholdState`].
pub const SCHEMA: SchemaId = SchemaId(1002);

const DIRECTIONS: &[&str] = &["above", "below"];

/// The `threshold` kind, version 1.
pub static THRESHOLD: KindSpec = KindSpec {
    name: "threshold",
    version: 1,
    doc: "alarm with hysteresis and hold count: 1 when raised, 0 when cleared, on transitions",
    input_names: &["in"],
    arity: Arity::exactly(1),
    outputs: &[OutputSpec::main("")],
    outputs_from: None,
    params: &[
        ParamSpec {
            name: "raise",
            ty: ParamType::ANY_FLOAT,
            default: ParamDefault::Required,
            doc: "level that raises the alarm (reached or passed in `direction`), in the input's unit",
        },
        ParamSpec {
            name: "clear",
            ty: ParamType::ANY_FLOAT,
            default: ParamDefault::Required,
            doc: "level the value must cross back past to clear, in the input's unit; at most `raise` for \"above\", at least `raise` for \"below\"",
        },
        ParamSpec {
            name: "direction",
            ty: ParamType::Choice(DIRECTIONS),
            default: ParamDefault::Text("above"),
            doc: "\"above\": alarm on high values; \"below\": alarm on low values",
        },
        ParamSpec {
            name: "hold",
            ty: ParamType::Int {
                min: 1,
                max: 1_000_000,
            },
            default: ParamDefault::Int(1),
            doc: "consecutive samples needed to raise and to clear, a count",
        },
    ],
    state_schema: Some(SCHEMA),
    migrations: &[],
    build: Builder::Vertex(build),
};

fn build(ctx: &BuildContext<'_>) -> Result<Box<dyn Vertex>, BuildError> {
    let raise = common::float(ctx, "raise")?;
    let clear = common::float(ctx, "clear")?;
    let direction = common::text(ctx, "direction")?;
    let above = match direction {
        "above" => true,
        "below" => false,
        other => return Err(common::bad_choice(ctx, "direction", other, DIRECTIONS)),
    };
    if above && clear > raise {
        return Err(BuildError::new(format!(
            "vertex `{}`: `clear` ({clear}) must be at most `raise` ({raise}) for an alarm above; lower `clear` or set `direction = \"below\"`",
            ctx.id
        ))
        .at("clear"));
    }
    if !above && clear < raise {
        return Err(BuildError::new(format!(
            "vertex `{}`: `clear` ({clear}) must be at least `raise` ({raise}) for an alarm below; raise `clear` or set `direction = \"above\"`",
            ctx.id
        ))
        .at("clear"));
    }
    let hold = u32::try_from(common::int(ctx, "hold")?)
        .ok()
        .filter(|h| *h >= 1)
        .ok_or_else(|| {
            BuildError::new(format!(
                "vertex `{}`: `hold` must be a count from 1 to 1000000",
                ctx.id
            ))
        })?;
    Ok(Box::new(Threshold {
        input: common::input(ctx, 0)?,
        output: common::output(ctx)?,
        raise,
        clear,
        above,
        hold,
        state: ThresholdState::default(),
    }))
}

/// The alarm and its pending count.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq)]
pub struct ThresholdState {
    /// The first sample has been seen (and the initial state emitted).
    pub started: bool,
    /// The alarm is raised.
    pub raised: bool,
    /// Consecutive samples so far that support changing the alarm.
    pub streak: u32,
}

/// A running `threshold` vertex.
#[derive(Debug)]
pub struct Threshold {
    input: ChannelId,
    output: ChannelId,
    raise: f64,
    clear: f64,
    above: bool,
    hold: u32,
    state: ThresholdState,
}

impl Threshold {
    /// Whether `value` supports leaving the current alarm state.
    fn supports_change(&self, raised: bool, value: f64) -> bool {
        match (raised, self.above) {
            (false, true) => value >= self.raise,
            (false, false) => value <= self.raise,
            (true, true) => value < self.clear,
            (true, false) => value > self.clear,
        }
    }
}

impl Vertex for Threshold {
    fn process(&mut self, input: &[Record], out: &mut Vec<Record>) {
        let mut s = self.state;
        for r in input {
            if r.channel != self.input || !r.value.is_finite() {
                continue;
            }
            s.streak = if self.supports_change(s.raised, r.value) {
                s.streak.saturating_add(1)
            } else {
                0
            };
            let flip = s.streak >= self.hold;
            if flip {
                s.raised = !s.raised;
                s.streak = 0;
            }
            if flip || !s.started {
                out.push(r.derive(self.output, if s.raised { 1.0 } else { 0.0 }));
            }
            s.started = true;
        }
        self.state = s;
    }

    fn snapshot(&self) -> Option<Snapshot> {
        Some(freeze(SCHEMA, &self.state))
    }

    fn restore(&mut self, snapshot: &Snapshot) -> Result<(), SnapshotError> {
        self.state = thaw(SCHEMA, snapshot)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::ops::testkit::*;
    use tandem_core::Quality;

    fn seq_values(out: &[Record]) -> Vec<(u64, f64)> {
        out.iter().map(|r| (r.seq.0, r.value)).collect()
    }

    fn high() -> Vec<(&'static str, tandem_core::ParamValue)> {
        vec![("raise", f(50.0)), ("clear", f(40.0)), ("hold", i(2))]
    }

    #[test]
    fn raises_and_clears_with_hysteresis_and_hold() {
        let mut v = vertex(&THRESHOLD, &high());
        let input = series(&[45.0, 55.0, 48.0, 60.0, 61.0, 45.0, 35.0, 45.0, 35.0, 30.0]);
        let out = run(v.as_mut(), &input);
        // 45: initial state, cleared. 55 then 48 breaks the hold. 60, 61:
        // two in a row, raised at seq 5. 45 is above clear (40), no count.
        // 35, 45 breaks; 35, 30: cleared at seq 10.
        assert_eq!(seq_values(&out), [(1, 0.0), (5, 1.0), (10, 0.0)]);
        assert_eq!(out[1].time, input[4].time);
        assert!(out.iter().all(|r| r.channel == OUT));
    }

    #[test]
    fn falling_alarm_for_low_values() {
        let given = [
            ("raise", f(20.0)),
            ("clear", f(25.0)),
            ("direction", t("below")),
        ];
        let mut v = vertex(&THRESHOLD, &given);
        let out = run(v.as_mut(), &series(&[30.0, 19.0, 22.0, 25.0, 26.0]));
        // 25 is not above clear; 26 is.
        assert_eq!(seq_values(&out), [(1, 0.0), (2, 1.0), (5, 0.0)]);
    }

    #[test]
    fn first_sample_already_over_emits_raised_once() {
        let mut v = vertex(&THRESHOLD, &[("raise", f(1.0)), ("clear", f(0.0))]);
        let out = run(v.as_mut(), &series(&[5.0, 6.0]));
        assert_eq!(seq_values(&out), [(1, 1.0)]);
    }

    #[test]
    fn non_finite_neither_counts_nor_resets() {
        let mut v = vertex(&THRESHOLD, &high());
        let out = run(
            v.as_mut(),
            &series(&[0.0, 55.0, f64::NAN, 56.0, f64::INFINITY]),
        );
        assert_eq!(seq_values(&out), [(1, 0.0), (4, 1.0)]);
    }

    #[test]
    fn keeps_quality_of_the_deciding_sample_and_ignores_other_channels() {
        let mut v = vertex(&THRESHOLD, &[("raise", f(1.0)), ("clear", f(0.0))]);
        let input = [
            rec(1, 0, 0.5),
            rec_on(OTHER, 2, 0, 9.0),
            rec(3, 0, 2.0).flagged(Quality::ESTIMATED),
        ];
        let out = run(v.as_mut(), &input);
        assert_eq!(seq_values(&out), [(1, 0.0), (3, 1.0)]);
        assert_eq!(out[1].quality, Quality::ESTIMATED);
    }

    #[test]
    fn inverted_levels_are_build_errors() {
        let err = build_err(&THRESHOLD, &[("raise", f(10.0)), ("clear", f(20.0))]);
        assert!(err.contains("must be at most `raise`"), "{err}");
        let err = build_err(
            &THRESHOLD,
            &[
                ("raise", f(20.0)),
                ("clear", f(10.0)),
                ("direction", t("below")),
            ],
        );
        assert!(err.contains("must be at least `raise`"), "{err}");
    }

    fn mixed() -> Vec<Record> {
        let mut input = series(&[
            45.0,
            55.0,
            48.0,
            60.0,
            61.0,
            f64::NAN,
            45.0,
            35.0,
            45.0,
            35.0,
            30.0,
            70.0,
        ]);
        input.insert(3, rec_on(OTHER, 99, 2500, 100.0));
        input
    }

    #[test]
    fn output_does_not_depend_on_batching() {
        check_split_invariant(&THRESHOLD, &high(), &[IN], &mixed());
    }

    #[test]
    fn continues_after_restore_and_refuses_damage() {
        check_snapshot_resume(&THRESHOLD, &high(), &[IN], &mixed());
    }
}
