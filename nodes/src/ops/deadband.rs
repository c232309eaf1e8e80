//! `deadband`: report by exception.
//!
//! A record is emitted when it is the first, when its quality differs from
//! the last emitted record's, when `|value - last emitted value| > band`
//! (with `band = 0`: on any change), or when at least `max_silence` of event
//! time has passed since the last emission.
//!
//! A non-finite value is always emitted, flagged `OUT_OF_RANGE`, and never
//! becomes the reference value; because its quality differs, the first
//! finite value after it is emitted too.

use super::common;
use rkyv::{Archive, Deserialize, Serialize};
use tandem_core::{
    freeze, thaw, Arity, BuildContext, BuildError, Builder, ChannelId, KindSpec, OutputSpec,
    ParamDefault, ParamSpec, ParamType, Quality, Record, SchemaId, Snapshot, SnapshotError, Vertex,
};

/// State schema of `deadband` v1: [`DeadbandState`].
pub const SCHEMA: SchemaId = SchemaId(1001);

/// The `deadband` kind, version 1.
pub static DEADBAND: KindSpec = KindSpec {
    name: "deadband",
    version: 1,
    doc: "emits a value only when it moved more than `band`, its quality changed, or `max_silence` passed",
    input_names: &["in"],
    arity: Arity::exactly(1),
    outputs: &[OutputSpec::main("")],
    outputs_from: None,
    params: &[
        ParamSpec {
            name: "band",
            ty: ParamType::Float {
                min: 0.0,
                max: 1e12,
            },
            default: ParamDefault::Float(0.0),
            doc: "emit when the value moved strictly more than this from the last emitted value, in the input's unit; 0 emits on any change",
        },
        ParamSpec {
            name: "max_silence",
            ty: ParamType::Duration {
                min_ns: 1,
                max_ns: common::MAX_DURATION_NS,
            },
            default: ParamDefault::Optional,
            doc: "event time after which the current value is emitted even if unchanged (a heartbeat); unset: never",
        },
    ],
    state_schema: Some(SCHEMA),
    migrations: &[],
    build: Builder::Vertex(build),
};

fn build(ctx: &BuildContext<'_>) -> Result<Box<dyn Vertex>, BuildError> {
    Ok(Box::new(Deadband {
        input: common::input(ctx, 0)?,
        output: common::output(ctx)?,
        band: common::float(ctx, "band")?,
        max_silence: ctx.params.duration_ns("max_silence"),
        state: DeadbandState::default(),
    }))
}

/// What `deadband` remembers of its last emission.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq)]
pub struct DeadbandState {
    /// A finite value has been emitted and `value` holds it.
    pub has_value: bool,
    /// The last emitted finite value: the reference for the band.
    pub value: f64,
    /// Quality bits of the last emitted record.
    pub quality: u32,
    /// Event time (ns) of the last emitted record.
    pub time: i64,
}

/// A running `deadband` vertex.
#[derive(Debug)]
pub struct Deadband {
    input: ChannelId,
    output: ChannelId,
    band: f64,
    max_silence: Option<i64>,
    state: DeadbandState,
}

impl Vertex for Deadband {
    fn process(&mut self, input: &[Record], out: &mut Vec<Record>) {
        out.reserve(input.len());
        let (band, to) = (self.band, self.output);
        let has_silence = self.max_silence.is_some();
        let silence = self.max_silence.unwrap_or(i64::MAX);
        let mut s = self.state;
        for r in input {
            if r.channel != self.input {
                continue;
            }
            let silent = has_silence & (r.time.0.saturating_sub(s.time) >= silence);
            if r.value.is_finite() {
                let emit = !s.has_value
                    | (r.quality.0 != s.quality)
                    | ((r.value - s.value).abs() > band)
                    | silent;
                if emit {
                    out.push(r.derive(to, r.value));
                    s = DeadbandState {
                        has_value: true,
                        value: r.value,
                        quality: r.quality.0,
                        time: r.time.0,
                    };
                }
            } else {
                let flagged = r.derive(to, r.value).flagged(Quality::OUT_OF_RANGE);
                out.push(flagged);
                s.quality = flagged.quality.0;
                s.time = r.time.0;
            }
        }
        self.state = s;
    }

    fn snapshot(&self) -> Option<Snapshot> {
        Some(freeze(SCHEMA, &self.state))
    }

    fn restore(&mut self, snapshot: &Snapshot) -> Result<(), SnapshotError> {
        let state: DeadbandState = thaw(SCHEMA, snapshot)?;
        if !state.value.is_finite() {
            return Err(SnapshotError::Invalid(
                "deadband reference value is not finite".to_owned(),
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
    fn emits_only_moves_beyond_the_band() {
        let mut v = vertex(&DEADBAND, &[("band", f(0.5))]);
        let input = series(&[10.0, 10.25, 10.75, 10.75, 11.5, 11.0, 10.875]);
        let out = run(v.as_mut(), &input);
        // 10 first; 10.25 moved .25; 10.75 moved .75; 11.5 moved .75 from
        // 10.75; 11.0 moved exactly .5 (not more); 10.875 moved .625.
        assert_eq!(values(&out), [10.0, 10.75, 11.5, 10.875]);
        let seqs: Vec<u64> = out.iter().map(|r| r.seq.0).collect();
        assert_eq!(seqs, [1, 3, 5, 7]);
        assert_eq!(out[1].time, input[2].time);
        assert!(out.iter().all(|r| r.channel == OUT));
    }

    #[test]
    fn band_zero_emits_every_change() {
        let mut v = vertex(&DEADBAND, &[]);
        let out = run(v.as_mut(), &series(&[1.0, 1.0, 2.0, 2.0, 1.0]));
        assert_eq!(values(&out), [1.0, 2.0, 1.0]);
    }

    #[test]
    fn quality_change_is_an_exception() {
        let mut v = vertex(&DEADBAND, &[("band", f(100.0))]);
        let input = [
            rec(1, 0, 10.0),
            rec(2, 1000, 10.0).flagged(Quality::ESTIMATED),
            rec(3, 2000, 10.0).flagged(Quality::ESTIMATED),
            rec(4, 3000, 10.0),
        ];
        let out = run(v.as_mut(), &input);
        let seqs: Vec<u64> = out.iter().map(|r| r.seq.0).collect();
        assert_eq!(seqs, [1, 2, 4]);
        assert_eq!(
            qualities(&out),
            [Quality::GOOD, Quality::ESTIMATED, Quality::GOOD]
        );
    }

    #[test]
    fn max_silence_emits_a_heartbeat() {
        let mut v = vertex(&DEADBAND, &[("band", f(100.0)), ("max_silence", ms(3000))]);
        // One record per second, constant value: emitted at 0 s, 3 s, 6 s.
        let out = run(v.as_mut(), &series(&[5.0; 8]));
        let times: Vec<i64> = out.iter().map(|r| r.time.0 / 1_000_000_000).collect();
        assert_eq!(times, [0, 3, 6]);
    }

    #[test]
    fn non_finite_is_flagged_and_never_the_reference() {
        let mut v = vertex(&DEADBAND, &[("band", f(1.0))]);
        let input = series(&[10.0, f64::NAN, f64::INFINITY, 10.5, 10.5, 11.25]);
        let out = run(v.as_mut(), &input);
        let seqs: Vec<u64> = out.iter().map(|r| r.seq.0).collect();
        // NaN and inf are emitted flagged; 10.5 is emitted because quality
        // went back to good; 11.25 moved only .75 from 10.5.
        assert_eq!(seqs, [1, 2, 3, 4]);
        assert_eq!(
            qualities(&out),
            [
                Quality::GOOD,
                Quality::OUT_OF_RANGE,
                Quality::OUT_OF_RANGE,
                Quality::GOOD
            ]
        );
        assert_eq!(out[3].value, 10.5);
    }

    #[test]
    fn ignores_other_channels() {
        let mut v = vertex(&DEADBAND, &[]);
        let out = run(
            v.as_mut(),
            &[rec(1, 0, 1.0), rec_on(OTHER, 2, 0, 9.0), rec(3, 0, 1.0)],
        );
        assert_eq!(values(&out), [1.0]);
    }

    fn mixed() -> Vec<Record> {
        let mut input = series(&[1.0, 1.2, 2.0, f64::NAN, 2.0, 2.1, 3.5, 3.5, 3.5, 0.0]);
        input[5] = input[5].flagged(Quality::UNCERTAIN);
        input.insert(4, rec_on(OTHER, 99, 4000, 7.0));
        input
    }

    #[test]
    fn output_does_not_depend_on_batching() {
        let given = [("band", f(0.5)), ("max_silence", ms(2500))];
        check_split_invariant(&DEADBAND, &given, &[IN], &mixed());
    }

    #[test]
    fn continues_after_restore_and_refuses_damage() {
        let given = [("band", f(0.5)), ("max_silence", ms(2500))];
        check_snapshot_resume(&DEADBAND, &given, &[IN], &mixed());
    }
}
