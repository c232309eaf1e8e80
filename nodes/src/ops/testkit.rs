//! Test support: build a kind by hand, and the checks every operator owes
//! (split invariance, snapshot resume, refusal of damaged snapshots).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::testkit;
pub(crate) use crate::testkit::{assert_bit_eq, params, run};
use std::sync::Arc;
use tandem_core::{
    BuildContext, BuildError, Builder, ChannelId, ChannelTable, EventTime, KindSpec, ParamValue,
    Quality, Record, Seq, Vertex,
};

/// The first input channel in tests.
pub(crate) const IN: ChannelId = ChannelId(1);
/// The second input channel in tests.
pub(crate) const IN2: ChannelId = ChannelId(2);
/// A channel no vertex under test listens to.
pub(crate) const OTHER: ChannelId = ChannelId(9);
/// The output channel in tests.
pub(crate) const OUT: ChannelId = ChannelId(100);

/// A float parameter value.
pub(crate) fn f(v: f64) -> ParamValue {
    ParamValue::Float(v)
}
/// An integer parameter value.
pub(crate) fn i(v: i64) -> ParamValue {
    ParamValue::Int(v)
}
/// A choice/text parameter value.
pub(crate) fn t(v: &str) -> ParamValue {
    ParamValue::Text(v.to_owned())
}
/// A boolean parameter value.
pub(crate) fn b(v: bool) -> ParamValue {
    ParamValue::Bool(v)
}
/// A duration parameter value in milliseconds.
pub(crate) fn ms(v: i64) -> ParamValue {
    ParamValue::Duration(v * 1_000_000)
}

/// A good record on `channel` at `time_ms` milliseconds.
pub(crate) fn rec_on(channel: ChannelId, seq: u64, time_ms: i64, value: f64) -> Record {
    Record::new(Seq(seq), EventTime::from_millis(time_ms), channel, value)
}

/// A good record on [`IN`].
pub(crate) fn rec(seq: u64, time_ms: i64, value: f64) -> Record {
    rec_on(IN, seq, time_ms, value)
}

/// A record on [`IN`] at second `i` with seq `i + 1` for each value.
pub(crate) fn series(values: &[f64]) -> Vec<Record> {
    values
        .iter()
        .enumerate()
        .map(|(n, v)| rec(n as u64 + 1, n as i64 * 1000, *v))
        .collect()
}

/// Builds `kind` with inputs `inputs` and output [`OUT`].
pub(crate) fn try_build(
    kind: &KindSpec,
    given: &[(&str, ParamValue)],
    inputs: &[ChannelId],
) -> Result<Box<dyn Vertex>, BuildError> {
    let params = params(kind, given);
    let channels = Arc::new(ChannelTable::new());
    let ctx = BuildContext {
        id: "v",
        params: &params,
        inputs,
        outputs: &[OUT],
        channels: &channels,
    };
    match kind.build {
        Builder::Vertex(build) => build(&ctx),
        _ => panic!("{} is not a vertex", kind.name),
    }
}

/// Builds `kind` on input [`IN`], panicking on a build error.
pub(crate) fn vertex(kind: &KindSpec, given: &[(&str, ParamValue)]) -> Box<dyn Vertex> {
    try_build(kind, given, &[IN]).unwrap()
}

/// The build error message.
pub(crate) fn build_err(kind: &KindSpec, given: &[(&str, ParamValue)]) -> String {
    match try_build(kind, given, &[IN]) {
        Ok(_) => panic!("{} built with {given:?}", kind.name),
        Err(e) => e.message,
    }
}

/// The output values.
pub(crate) fn values(out: &[Record]) -> Vec<f64> {
    out.iter().map(|r| r.value).collect()
}

/// The output qualities.
pub(crate) fn qualities(out: &[Record]) -> Vec<Quality> {
    out.iter().map(|r| r.quality).collect()
}

/// Output independent of how input is split into calls.
pub(crate) fn check_split_invariant(
    kind: &KindSpec,
    given: &[(&str, ParamValue)],
    inputs: &[ChannelId],
    input: &[Record],
) {
    testkit::check_split_invariant(&|| try_build(kind, given, inputs).unwrap(), input);
}

/// Snapshot and resume at every cut equals an uninterrupted run, and damaged
/// snapshots are refused without harm.
pub(crate) fn check_snapshot_resume(
    kind: &KindSpec,
    given: &[(&str, ParamValue)],
    inputs: &[ChannelId],
    input: &[Record],
) {
    let build = || try_build(kind, given, inputs).unwrap();
    testkit::check_snapshot_resume(&build, input);
    testkit::check_damaged_snapshot_refused(&build, input);
}
