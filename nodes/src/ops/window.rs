//! `window`: event-time windows, tumbling or sliding, with one aggregate.
//!
//! Windows end at multiples of `slide` from the Unix epoch (tumbling windows
//! use `slide = size`, so they end at multiples of `size`) and cover
//! `[end - size, end)`. Event time is cut into panes of length `slide`; the
//! state is a fixed ring of `size / slide` pane aggregates, sized when the
//! vertex is built.
//!
//! A window closes when a record of the input arrives whose event time is at
//! or past its end; no wall clock is involved. Its output has time = window
//! end, the seq of the record that closed it, and the union of the qualities
//! of the records in it. One record can close several windows (after a gap);
//! they are emitted in order of their ends. Empty windows emit nothing.
//!
//! - A non-finite value is not aggregated; the window it falls in is flagged
//!   `UNCERTAIN` (its time still closes windows).
//! - A record older than the newest pane (late) is dropped: the windows it
//!   belongs to have been emitted or would be inconsistent with them.

use super::common;
use rkyv::{Archive, Deserialize, Serialize};
use tandem_core::param::format_duration;
use tandem_core::{
    freeze, thaw, Arity, BuildContext, BuildError, Builder, ChannelId, EventTime, KindSpec,
    OutputSpec, ParamDefault, ParamSpec, ParamType, Quality, Record, SchemaId, Snapshot,
    SnapshotError, Vertex,
};

/// State schema of `window` v1: [`WindowState`].
pub const SCHEMA: SchemaId = SchemaId(1003);

/// Most panes (`size / slide`) a sliding window may have.
pub const MAX_PANES: i64 = 256;

const MODES: &[&str] = &["tumbling", "sliding"];
const AGGS: &[&str] = &["mean", "min", "max", "sum", "count", "last"];

/// The `window` kind, version 1.
pub static WINDOW: KindSpec = KindSpec {
    name: "window",
    version: 1,
    doc: "event-time tumbling or sliding windows with mean, min, max, sum, count or last",
    input_names: &["in"],
    arity: Arity::exactly(1),
    outputs: &[OutputSpec::main("")],
    outputs_from: None,
    params: &[
        ParamSpec {
            name: "mode",
            ty: ParamType::Choice(MODES),
            default: ParamDefault::Text("tumbling"),
            doc: "\"tumbling\": back-to-back windows; \"sliding\": overlapping windows every `slide`",
        },
        ParamSpec {
            name: "size",
            ty: ParamType::Duration {
                min_ns: 1,
                max_ns: common::MAX_DURATION_NS,
            },
            default: ParamDefault::Required,
            doc: "length of each window, event time",
        },
        ParamSpec {
            name: "slide",
            ty: ParamType::Duration {
                min_ns: 1,
                max_ns: common::MAX_DURATION_NS,
            },
            default: ParamDefault::Optional,
            doc: "sliding only: time between window ends, event time; must divide `size`, at most 256 panes (size / slide)",
        },
        ParamSpec {
            name: "agg",
            ty: ParamType::Choice(AGGS),
            default: ParamDefault::Text("mean"),
            doc: "aggregate: \"mean\", \"min\", \"max\", \"sum\" (input unit), \"count\" (records), \"last\"",
        },
    ],
    state_schema: Some(SCHEMA),
    migrations: &[],
    build: Builder::Vertex(build),
};

/// The aggregate a window emits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Agg {
    Mean,
    Min,
    Max,
    Sum,
    Count,
    Last,
}

fn build(ctx: &BuildContext<'_>) -> Result<Box<dyn Vertex>, BuildError> {
    let size = common::duration(ctx, "size")?;
    let slide = ctx.params.duration_ns("slide");
    let slide = match (common::text(ctx, "mode")?, slide) {
        ("tumbling", None) => size,
        ("tumbling", Some(_)) => {
            return Err(BuildError::new(format!(
                "vertex `{}`: `slide` applies only to sliding windows; remove it or set `mode = \"sliding\"`",
                ctx.id
            ))
            .at("slide"))
        }
        ("sliding", Some(slide)) => slide,
        ("sliding", None) => {
            return Err(BuildError::new(format!(
                "vertex `{}`: a sliding window needs `slide`, the time between window ends (such as \"1m\")",
                ctx.id
            ))
            .at("mode"))
        }
        (other, _) => return Err(common::bad_choice(ctx, "mode", other, MODES)),
    };
    if slide <= 0 || size % slide != 0 {
        return Err(BuildError::new(format!(
            "vertex `{}`: `slide` ({}) must divide `size` ({}) evenly, such as size \"15m\" with slide \"1m\"",
            ctx.id,
            format_duration(slide),
            format_duration(size)
        ))
        .at("slide"));
    }
    let panes = size / slide;
    if panes > MAX_PANES {
        return Err(BuildError::new(format!(
            "vertex `{}`: `size / slide` is {panes} panes, more than the {MAX_PANES} a window keeps; use a longer `slide` that divides `size`, such as \"{}\"",
            ctx.id,
            format_duration(fitting_slide(size))
        ))
        .at("slide"));
    }
    let agg = match common::text(ctx, "agg")? {
        "mean" => Agg::Mean,
        "min" => Agg::Min,
        "max" => Agg::Max,
        "sum" => Agg::Sum,
        "count" => Agg::Count,
        "last" => Agg::Last,
        other => return Err(common::bad_choice(ctx, "agg", other, AGGS)),
    };
    Ok(Box::new(Window {
        input: common::input(ctx, 0)?,
        output: common::output(ctx)?,
        slide,
        agg,
        state: WindowState {
            started: false,
            current: 0,
            panes: vec![Pane::default(); panes as usize],
        },
    }))
}

/// The shortest slide that divides `size` into at most [`MAX_PANES`] panes
/// and is a whole number of the largest unit (s, ms, us) `size` is.
fn fitting_slide(size: i64) -> i64 {
    let unit = [1_000_000_000, 1_000_000, 1_000]
        .into_iter()
        .find(|u| size % u == 0)
        .unwrap_or(1);
    let panes = (1..=MAX_PANES)
        .rev()
        .find(|k| (size / unit) % k == 0)
        .unwrap_or(1);
    size / panes
}

/// The aggregate of one pane (`slide` of event time), or of a whole window.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq)]
pub struct Pane {
    /// Finite values aggregated.
    pub count: u64,
    /// Their sum.
    pub sum: f64,
    /// Their minimum (meaningless when `count` is 0).
    pub min: f64,
    /// Their maximum (meaningless when `count` is 0).
    pub max: f64,
    /// The latest of them (meaningless when `count` is 0).
    pub last: f64,
    /// Union of the quality bits of every record that fell in.
    pub quality: u32,
    /// A non-finite value fell in and was not aggregated.
    pub skipped: bool,
}

impl Pane {
    fn add(&mut self, r: &Record) {
        self.quality |= r.quality.0;
        if !r.value.is_finite() {
            self.skipped = true;
            return;
        }
        if self.count == 0 {
            self.min = r.value;
            self.max = r.value;
        } else {
            self.min = self.min.min(r.value);
            self.max = self.max.max(r.value);
        }
        self.count = self.count.saturating_add(1);
        self.sum += r.value;
        self.last = r.value;
    }

    /// Adds `later`, a pane after all of `self`'s.
    fn merge(&mut self, later: &Pane) {
        self.quality |= later.quality;
        self.skipped |= later.skipped;
        if later.count == 0 {
            return;
        }
        if self.count == 0 {
            self.min = later.min;
            self.max = later.max;
        } else {
            self.min = self.min.min(later.min);
            self.max = self.max.max(later.max);
        }
        self.count = self.count.saturating_add(later.count);
        self.sum += later.sum;
        self.last = later.last;
    }

    /// What a run can leave in a pane: a sum of huge finite values may have
    /// overflowed to an infinity, but nothing is NaN.
    fn is_finite(&self) -> bool {
        !self.sum.is_nan() && self.min.is_finite() && self.max.is_finite() && self.last.is_finite()
    }
}

/// The ring of panes and where it stands.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct WindowState {
    /// A record has been seen and `current` is meaningful.
    pub started: bool,
    /// Index (event time / slide) of the newest pane.
    pub current: i64,
    /// Pane `j` lives at `j mod panes.len()`, for the `panes.len()` newest.
    pub panes: Vec<Pane>,
}

/// A running `window` vertex.
#[derive(Debug)]
pub struct Window {
    input: ChannelId,
    output: ChannelId,
    slide: i64,
    agg: Agg,
    state: WindowState,
}

impl Window {
    fn slot(&self, pane: i64) -> usize {
        // The ring is never empty (at least one pane is built) and its
        // length fits an i64 (at most MAX_PANES).
        pane.rem_euclid(self.state.panes.len().max(1) as i64) as usize
    }

    /// Emits the windows that end after pane `current` and at or before
    /// the start of pane `to`, then clears the panes up to `to`.
    fn advance(&mut self, to: i64, closing: &Record, out: &mut Vec<Record>) {
        let n = self.state.panes.len() as i64;
        let current = self.state.current;
        let last_end = to.min(current.saturating_add(n));
        // Inclusive ranges, so a pane index at i64::MAX ends the loop
        // instead of overflowing it.
        for end in current.saturating_add(1)..=last_end {
            // Window ending at pane index `end` covers panes end - n .. end - 1,
            // of which those after `current` are empty.
            let mut window = Pane::default();
            for j in end.saturating_sub(n)..=current {
                if let Some(pane) = self.state.panes.get(self.slot(j)) {
                    window.merge(pane);
                }
            }
            if window.count > 0 {
                out.push(self.emit(&window, end, closing));
            }
        }
        for j in current.saturating_add(1)..=last_end {
            let slot = self.slot(j);
            if let Some(pane) = self.state.panes.get_mut(slot) {
                *pane = Pane::default();
            }
        }
        self.state.current = to;
    }

    fn emit(&self, window: &Pane, end: i64, closing: &Record) -> Record {
        let value = match self.agg {
            Agg::Mean => window.sum / window.count as f64,
            Agg::Min => window.min,
            Agg::Max => window.max,
            Agg::Sum => window.sum,
            Agg::Count => window.count as f64,
            Agg::Last => window.last,
        };
        let mut quality = Quality(window.quality);
        if window.skipped {
            quality |= Quality::UNCERTAIN;
        }
        Record {
            seq: closing.seq,
            time: EventTime(end.saturating_mul(self.slide)),
            channel: self.output,
            quality: common::flag_non_finite(quality, value),
            value,
        }
    }
}

impl Vertex for Window {
    fn process(&mut self, input: &[Record], out: &mut Vec<Record>) {
        for r in input {
            if r.channel != self.input {
                continue;
            }
            let pane = r.time.0.div_euclid(self.slide);
            if !self.state.started {
                self.state.started = true;
                self.state.current = pane;
            } else if pane > self.state.current {
                self.advance(pane, r, out);
            } else if pane < self.state.current {
                continue;
            }
            let slot = self.slot(pane);
            if let Some(p) = self.state.panes.get_mut(slot) {
                p.add(r);
            }
        }
    }

    fn snapshot(&self) -> Option<Snapshot> {
        Some(freeze(SCHEMA, &self.state))
    }

    fn restore(&mut self, snapshot: &Snapshot) -> Result<(), SnapshotError> {
        let state: WindowState = thaw(SCHEMA, snapshot)?;
        if state.panes.len() != self.state.panes.len() {
            return Err(SnapshotError::Invalid(format!(
                "window state has {} panes but this window has {}; its `size` or `slide` changed, which needs a migration",
                state.panes.len(),
                self.state.panes.len()
            )));
        }
        if !state.panes.iter().all(|p| p.count == 0 || p.is_finite()) {
            return Err(SnapshotError::Invalid(
                "window pane holds a non-finite aggregate".to_owned(),
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
    fn event_times_at_the_end_of_i64_neither_overflow_nor_hang() {
        let mut v = vertex(&WINDOW, &[("size", ParamValue::Duration(1))]);
        let input = [
            Record::new(tandem_core::Seq(1), EventTime(i64::MAX - 1), IN, 1.0),
            Record::new(tandem_core::Seq(2), EventTime(i64::MAX), IN, 2.0),
        ];
        let out = run(v.as_mut(), &input);
        assert_eq!(
            values(&out),
            [1.0],
            "the first pane closes; the last stays open"
        );
    }

    #[test]
    fn a_sum_past_f64_max_is_flagged_and_its_state_still_restores() {
        let mut v = vertex(&WINDOW, &[("size", ms(10_000)), ("agg", t("sum"))]);
        let out = run(
            v.as_mut(),
            &[rec(1, 0, 1e308), rec(2, 1, 1e308), rec(3, 10_000, 1.0)],
        );
        assert_eq!(out.len(), 1);
        assert!(out[0].value.is_infinite());
        let snapshot = v.snapshot().unwrap();
        let mut fresh = vertex(&WINDOW, &[("size", ms(10_000)), ("agg", t("sum"))]);
        fresh.restore(&snapshot).unwrap();
    }
    use tandem_core::ParamValue;

    fn tumbling(agg: &str) -> Vec<(&'static str, ParamValue)> {
        vec![("size", ms(10_000)), ("agg", t(agg))]
    }

    fn sliding(agg: &str) -> Vec<(&'static str, ParamValue)> {
        vec![
            ("mode", t("sliding")),
            ("size", ms(10_000)),
            ("slide", ms(5_000)),
            ("agg", t(agg)),
        ]
    }

    /// (seq, time in s, value) of each output.
    fn outputs(out: &[Record]) -> Vec<(u64, i64, f64)> {
        out.iter()
            .map(|r| (r.seq.0, r.time.0 / 1_000_000_000, r.value))
            .collect()
    }

    fn input() -> Vec<Record> {
        vec![
            rec(1, 1_000, 2.0),
            rec(2, 4_000, 4.0),
            rec(3, 9_999, 9.0),
            rec(4, 10_000, 1.0),
            rec(5, 12_000, 3.0),
            rec(6, 31_000, 5.0),
        ]
    }

    #[test]
    fn tumbling_windows_close_on_event_time() {
        let mut v = vertex(&WINDOW, &tumbling("mean"));
        let out = run(v.as_mut(), &input());
        // [0,10): 2, 4, 9 -> mean 5, closed by seq 4 at 10 s.
        // [10,20): 1, 3 -> 2, closed by seq 6 at 31 s; [20,30) is empty.
        assert_eq!(outputs(&out), [(4, 10, 5.0), (6, 20, 2.0)]);
        assert!(out.iter().all(|r| r.channel == OUT));
    }

    #[test]
    fn every_aggregate_by_hand() {
        let cases = [
            ("min", [2.0, 1.0]),
            ("max", [9.0, 3.0]),
            ("sum", [15.0, 4.0]),
            ("count", [3.0, 2.0]),
            ("last", [9.0, 3.0]),
        ];
        for (agg, expected) in cases {
            let mut v = vertex(&WINDOW, &tumbling(agg));
            assert_eq!(values(&run(v.as_mut(), &input())), expected, "{agg}");
        }
    }

    #[test]
    fn sliding_windows_overlap() {
        let mut v = vertex(&WINDOW, &sliding("sum"));
        let out = run(v.as_mut(), &input());
        // Panes of 5 s: [0,5) 2+4=6, [5,10) 9, [10,15) 1+3=4.
        // End 5 s (panes -1, 0): 6, closed by seq 3 at 9.999 s; end 10 s:
        // 6+9=15, closed by seq 4 at 10 s; end 15 s: 9+4=13 and end 20 s: 4,
        // both closed by seq 6 at 31 s; at 25 s and 30 s nothing is left.
        assert_eq!(
            outputs(&out),
            [(3, 5, 6.0), (4, 10, 15.0), (6, 15, 13.0), (6, 20, 4.0)]
        );
    }

    #[test]
    fn quality_union_and_non_finite_make_the_window_uncertain() {
        let mut v = vertex(&WINDOW, &tumbling("mean"));
        let input = [
            rec(1, 0, 1.0).flagged(Quality::ESTIMATED),
            rec(2, 1_000, f64::NAN),
            rec(3, 2_000, 3.0),
            rec(4, 10_000, 5.0),
            rec(5, 20_000, 0.0),
        ];
        let out = run(v.as_mut(), &input);
        assert_eq!(values(&out), [2.0, 5.0]);
        assert_eq!(
            qualities(&out),
            [Quality::ESTIMATED | Quality::UNCERTAIN, Quality::GOOD]
        );
    }

    #[test]
    fn late_records_and_other_channels_are_dropped() {
        let mut v = vertex(&WINDOW, &tumbling("sum"));
        let input = [
            rec(1, 0, 1.0),
            rec(2, 10_000, 2.0),
            rec(3, 9_000, 100.0),
            rec_on(OTHER, 4, 30_000, 7.0),
            rec(5, 20_000, 0.0),
        ];
        let out = run(v.as_mut(), &input);
        assert_eq!(outputs(&out), [(2, 10, 1.0), (5, 20, 2.0)]);
    }

    #[test]
    fn negative_times_align_to_the_epoch() {
        let mut v = vertex(&WINDOW, &tumbling("count"));
        let out = run(
            v.as_mut(),
            &[rec(1, -15_000, 1.0), rec(2, -1, 1.0), rec(3, 0, 1.0)],
        );
        assert_eq!(outputs(&out), [(2, -10, 1.0), (3, 0, 1.0)]);
    }

    #[test]
    fn bad_shapes_are_build_errors() {
        let err = build_err(&WINDOW, &[("mode", t("sliding")), ("size", ms(10_000))]);
        assert!(err.contains("needs `slide`"), "{err}");
        let err = build_err(&WINDOW, &[("size", ms(10_000)), ("slide", ms(5_000))]);
        assert!(err.contains("only to sliding"), "{err}");
        let mut given = sliding("sum");
        given[2] = ("slide", ms(3_000));
        let err = build_err(&WINDOW, &given);
        assert!(
            err.contains("`slide` (3s) must divide `size` (10s)"),
            "{err}"
        );
        given[2] = ("slide", ParamValue::Duration(1_000_000));
        given[1] = ("size", ms(1_000));
        let err = build_err(&WINDOW, &given);
        assert!(err.contains("1000 panes, more than the 256"), "{err}");
    }

    #[test]
    fn restore_into_another_shape_is_refused() {
        let mut a = vertex(&WINDOW, &sliding("sum"));
        let _ = run(a.as_mut(), &input()[..2]);
        let snap = a.snapshot().unwrap();
        let mut b = vertex(&WINDOW, &tumbling("sum"));
        let err = b.restore(&snap).unwrap_err();
        assert!(
            err.to_string()
                .contains("has 2 panes but this window has 1"),
            "{err}"
        );
    }

    fn mixed() -> Vec<Record> {
        let mut input = input();
        input.insert(2, rec(20, 4_500, f64::NAN));
        input.insert(4, rec(21, 3_000, 50.0));
        input.insert(5, rec_on(OTHER, 22, 60_000, 1.0));
        input.push(rec(30, 33_000, -1.0).flagged(Quality::ESTIMATED));
        input.push(rec(31, 47_000, 2.0));
        input.push(rec(32, 200_000, 2.0));
        input
    }

    #[test]
    fn output_does_not_depend_on_batching() {
        for agg in AGGS {
            check_split_invariant(&WINDOW, &tumbling(agg), &[IN], &mixed());
            check_split_invariant(&WINDOW, &sliding(agg), &[IN], &mixed());
        }
    }

    #[test]
    fn continues_after_restore_and_refuses_damage() {
        check_snapshot_resume(&WINDOW, &tumbling("mean"), &[IN], &mixed());
        check_snapshot_resume(&WINDOW, &sliding("last"), &[IN], &mixed());
    }
}
