//! `stale`: detects a watched channel that stopped reporting, in event time.
//!
//! Inputs: the watched channel first, then any number of channels used only
//! as an event-time clock. When a record of any input arrives whose time is
//! more than `timeout` after the latest watched record, one record flagged
//! `STALE` is emitted (value and quality of the last finite watched record, seq and
//! time of the record that noticed). When the watched channel resumes, its
//! record is emitted as it is (not `STALE`). The first watched record is
//! emitted too, so a subscriber learns the starting value. With
//! `pass_through = true` every watched record is forwarded as well.
//!
//! A watched record with a non-finite value still proves the channel alive;
//! it is forwarded flagged `OUT_OF_RANGE` and does not replace the last
//! value a `STALE` record repeats. Nothing is stale before the first watched
//! record.

use super::common;
use rkyv::{Archive, Deserialize, Serialize};
use tandem_core::{
    freeze, thaw, Arity, BuildContext, BuildError, Builder, ChannelId, KindSpec, OutputSpec,
    ParamDefault, ParamSpec, ParamType, Quality, Record, SchemaId, Snapshot, SnapshotError, Vertex,
};

/// State schema of `stale` v1: [`StaleState`].
pub const SCHEMA: SchemaId = SchemaId(1008);

/// The `stale` kind, version 1.
pub static STALE: KindSpec = KindSpec {
    name: "stale",
    version: 1,
    doc: "flags a watched channel stale when other inputs' event time runs past its last record + timeout",
    input_names: &["watched", "clock"],
    arity: Arity::at_least(1),
    outputs: &[OutputSpec::main("")],
    outputs_from: None,
    params: &[
        ParamSpec {
            name: "timeout",
            ty: ParamType::Duration {
                min_ns: 1,
                max_ns: common::MAX_DURATION_NS,
            },
            default: ParamDefault::Required,
            doc: "event time without a watched record after which it is stale",
        },
        ParamSpec {
            name: "pass_through",
            ty: ParamType::Bool,
            default: ParamDefault::Bool(false),
            doc: "also forward every watched record, not only the first, the stale one and the one resuming",
        },
    ],
    state_schema: Some(SCHEMA),
    migrations: &[],
    build: Builder::Vertex(build),
};

fn build(ctx: &BuildContext<'_>) -> Result<Box<dyn Vertex>, BuildError> {
    let watched = common::input(ctx, 0)?;
    let clocks: Vec<ChannelId> = ctx
        .inputs
        .iter()
        .skip(1)
        .copied()
        .filter(|c| *c != watched)
        .collect();
    Ok(Box::new(Stale {
        watched,
        clocks,
        output: common::output(ctx)?,
        timeout: common::duration(ctx, "timeout")?,
        pass_through: common::boolean(ctx, "pass_through")?,
        state: StaleState::default(),
    }))
}

/// What `stale` knows of the watched channel.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq)]
pub struct StaleState {
    /// A watched record has been seen.
    pub seen: bool,
    /// Latest event time of a watched record, ns.
    pub time: i64,
    /// Last finite watched value (0 until one arrives).
    pub value: f64,
    /// Quality bits of the record `value` came from.
    pub quality: u32,
    /// A `STALE` record has been emitted and the channel has not resumed.
    pub stale: bool,
}

/// A running `stale` vertex.
#[derive(Debug)]
pub struct Stale {
    watched: ChannelId,
    clocks: Vec<ChannelId>,
    output: ChannelId,
    timeout: i64,
    pass_through: bool,
    state: StaleState,
}

impl Vertex for Stale {
    fn process(&mut self, input: &[Record], out: &mut Vec<Record>) {
        let mut s = self.state;
        for r in input {
            let watched = r.channel == self.watched;
            if !watched && !self.clocks.contains(&r.channel) {
                continue;
            }
            if s.seen && !s.stale && r.time.0.saturating_sub(s.time) > self.timeout {
                s.stale = true;
                out.push(Record {
                    seq: r.seq,
                    time: r.time,
                    channel: self.output,
                    quality: Quality(s.quality) | Quality::STALE,
                    value: s.value,
                });
            }
            if watched {
                if self.pass_through || s.stale || !s.seen {
                    let o = r.derive(self.output, r.value);
                    out.push(o.flagged(common::flag_non_finite(Quality::GOOD, r.value)));
                }
                s.time = if s.seen {
                    s.time.max(r.time.0)
                } else {
                    r.time.0
                };
                s.seen = true;
                s.stale = false;
                if r.value.is_finite() {
                    s.value = r.value;
                    s.quality = r.quality.0;
                }
            }
        }
        self.state = s;
    }

    fn snapshot(&self) -> Option<Snapshot> {
        Some(freeze(SCHEMA, &self.state))
    }

    fn restore(&mut self, snapshot: &Snapshot) -> Result<(), SnapshotError> {
        let state: StaleState = thaw(SCHEMA, snapshot)?;
        if !state.value.is_finite() {
            return Err(SnapshotError::Invalid(
                "stale last value is not finite".to_owned(),
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

    fn given(pass_through: bool) -> Vec<(&'static str, ParamValue)> {
        vec![("timeout", ms(5_000)), ("pass_through", b(pass_through))]
    }

    /// (seq, value, stale?) of each output.
    fn outputs(out: &[Record]) -> Vec<(u64, f64, bool)> {
        out.iter()
            .map(|r| (r.seq.0, r.value, r.quality.contains(Quality::STALE)))
            .collect()
    }

    fn input() -> Vec<Record> {
        vec![
            rec_on(IN, 1, 0, 7.0),
            rec_on(IN2, 2, 3_000, 0.0),
            rec_on(IN, 3, 4_000, 8.0),
            rec_on(IN2, 4, 9_000, 0.0),
            rec_on(IN2, 5, 9_001, 0.0),
            rec_on(IN2, 6, 12_000, 0.0),
            rec_on(IN, 7, 13_000, 9.0),
            rec_on(IN, 8, 14_000, 10.0),
        ]
    }

    #[test]
    fn goes_stale_once_and_resumes() {
        let mut v = try_build(&STALE, &given(false), &[IN, IN2]).unwrap();
        let out = run(v.as_mut(), &input());
        // First watched record; at 9 s the last watched (4 s) is exactly
        // 5 s old, not more; at 9.001 s it is stale, once; resumes at 13 s.
        assert_eq!(
            outputs(&out),
            [(1, 7.0, false), (5, 8.0, true), (7, 9.0, false)]
        );
        assert_eq!(out[1].time, input()[4].time);
        assert!(out.iter().all(|r| r.channel == OUT));
    }

    #[test]
    fn pass_through_forwards_every_watched_record() {
        let mut v = try_build(&STALE, &given(true), &[IN, IN2]).unwrap();
        let out = run(v.as_mut(), &input());
        assert_eq!(
            outputs(&out),
            [
                (1, 7.0, false),
                (3, 8.0, false),
                (5, 8.0, true),
                (7, 9.0, false),
                (8, 10.0, false)
            ]
        );
    }

    #[test]
    fn a_late_watched_record_is_stale_then_resumes() {
        let mut v = try_build(&STALE, &given(false), &[IN]).unwrap();
        let out = run(v.as_mut(), &[rec(1, 0, 1.0), rec(2, 6_000, 2.0)]);
        assert_eq!(
            outputs(&out),
            [(1, 1.0, false), (2, 1.0, true), (2, 2.0, false)]
        );
    }

    #[test]
    fn stale_record_keeps_the_last_quality_and_value() {
        let mut v = try_build(&STALE, &given(false), &[IN, IN2]).unwrap();
        let input = [
            rec_on(IN, 1, 0, 3.0).flagged(Quality::ESTIMATED),
            rec_on(IN, 2, 1_000, f64::NAN),
            rec_on(OTHER, 3, 60_000, 0.0),
            rec_on(IN2, 4, 7_000, 0.0),
        ];
        let out = run(v.as_mut(), &input);
        // The NaN keeps the channel alive until 6 s but does not become the
        // value; the foreign channel's 60 s is no clock.
        assert_eq!(outputs(&out), [(1, 3.0, false), (4, 3.0, true)]);
        assert_eq!(out[1].quality, Quality::ESTIMATED | Quality::STALE);
    }

    fn mixed() -> Vec<Record> {
        let mut input = input();
        input.insert(2, rec_on(OTHER, 20, 100_000, 1.0));
        input.insert(3, rec_on(IN, 21, 3_500, f64::NAN));
        input.push(rec_on(IN2, 30, 30_000, 0.0));
        input.push(rec_on(IN, 31, 29_000, 4.0));
        input.push(rec_on(IN2, 32, 40_000, 0.0));
        input
    }

    #[test]
    fn output_does_not_depend_on_batching() {
        check_split_invariant(&STALE, &given(false), &[IN, IN2], &mixed());
        check_split_invariant(&STALE, &given(true), &[IN, IN2], &mixed());
    }

    #[test]
    fn continues_after_restore_and_refuses_damage() {
        check_snapshot_resume(&STALE, &given(true), &[IN, IN2], &mixed());
    }
}
