//! Test support: build a kind by hand, and the checks every operator owes
//! (split invariance, snapshot resume, refusal of damaged snapshots).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use tandem_core::{
    BuildContext, BuildError, Builder, ChannelId, ChannelTable, EventTime, KindSpec, ParamValue,
    Params, Quality, Record, Seq, Snapshot, SnapshotError, Vertex,
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

/// Params as validation would hand them: given values plus declared defaults.
pub(crate) fn params(kind: &KindSpec, given: &[(&str, ParamValue)]) -> Params {
    let mut p = Params::new();
    for spec in kind.params {
        if let Some(v) = ParamValue::from_default(spec.default) {
            p.insert(spec.name, v);
        }
    }
    for (name, v) in given {
        assert!(
            kind.params.iter().any(|s| s.name == *name),
            "{} has no parameter {name}",
            kind.name
        );
        p.insert(name, v.clone());
    }
    p
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

/// Runs `input` through `v` in one call.
pub(crate) fn run(v: &mut dyn Vertex, input: &[Record]) -> Vec<Record> {
    let mut out = Vec::new();
    v.process(input, &mut out);
    out
}

/// The output values.
pub(crate) fn values(out: &[Record]) -> Vec<f64> {
    out.iter().map(|r| r.value).collect()
}

/// The output qualities.
pub(crate) fn qualities(out: &[Record]) -> Vec<Quality> {
    out.iter().map(|r| r.quality).collect()
}

/// Asserts two outputs are bit-identical.
pub(crate) fn assert_bit_eq(a: &[Record], b: &[Record], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: {a:?} vs {b:?}");
    for (n, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(x.bit_eq(y), "{what}: record {n} differs: {x:?} vs {y:?}");
    }
}

/// Whole input in one call, one record per call, and uneven chunks all give
/// the same output bit for bit.
pub(crate) fn check_split_invariant(
    kind: &KindSpec,
    given: &[(&str, ParamValue)],
    inputs: &[ChannelId],
    input: &[Record],
) {
    let mut whole = try_build(kind, given, inputs).unwrap();
    let expected = run(whole.as_mut(), input);
    for chunk in [1, 2, 3, 7] {
        let mut v = try_build(kind, given, inputs).unwrap();
        let mut out = Vec::new();
        for part in input.chunks(chunk) {
            v.process(part, &mut out);
        }
        // An empty call in the middle changes nothing either.
        v.process(&[], &mut out);
        assert_bit_eq(&expected, &out, &format!("chunks of {chunk}"));
    }
}

/// For every cut point: run up to it, snapshot through the encoded envelope,
/// restore into a fresh instance, continue; the output equals an
/// uninterrupted run. Damaged snapshots are refused and leave the vertex as
/// it was.
pub(crate) fn check_snapshot_resume(
    kind: &KindSpec,
    given: &[(&str, ParamValue)],
    inputs: &[ChannelId],
    input: &[Record],
) {
    let mut whole = try_build(kind, given, inputs).unwrap();
    let expected = run(whole.as_mut(), input);
    for cut in 0..=input.len() {
        let mut first = try_build(kind, given, inputs).unwrap();
        let mut out = run(first.as_mut(), &input[..cut]);
        let bytes = first.snapshot().expect("stateful vertex").encode();
        let mut second = try_build(kind, given, inputs).unwrap();
        second.restore(&Snapshot::decode(&bytes).unwrap()).unwrap();
        second.process(&input[cut..], &mut out);
        assert_bit_eq(&expected, &out, &format!("restored at cut {cut}"));
    }

    let cut = input.len() / 2;
    let mut first = try_build(kind, given, inputs).unwrap();
    let _ = run(first.as_mut(), &input[..cut]);
    let bytes = first.snapshot().unwrap().encode();
    for len in 0..bytes.len() {
        let mut v = try_build(kind, given, inputs).unwrap();
        let result = Snapshot::decode(&bytes[..len]).and_then(|s| v.restore(&s));
        assert!(result.is_err(), "truncated to {len} bytes was accepted");
    }
    for bit in 0..bytes.len() * 8 {
        let mut damaged = bytes.clone();
        damaged[bit / 8] ^= 1 << (bit % 8);
        let mut v = try_build(kind, given, inputs).unwrap();
        let result = Snapshot::decode(&damaged).and_then(|s| v.restore(&s));
        assert!(result.is_err(), "bit {bit} flipped was accepted");
    }

    // A refused snapshot leaves the vertex running on its own state.
    let mut damaged = bytes.clone();
    let last = damaged.len() - 1;
    damaged[last] ^= 0x10;
    let mut survivor = try_build(kind, given, inputs).unwrap();
    let mut out = run(survivor.as_mut(), &input[..cut]);
    assert!(Snapshot::decode(&damaged)
        .and_then(|s| survivor.restore(&s))
        .is_err());
    survivor.process(&input[cut..], &mut out);
    assert_bit_eq(&expected, &out, "after a refused restore");

    // A snapshot of another schema is refused with the schema named.
    let foreign = Snapshot {
        schema: tandem_core::SchemaId(u32::MAX),
        payload: Snapshot::decode(&bytes).unwrap().payload,
    };
    let mut v = try_build(kind, given, inputs).unwrap();
    assert!(matches!(
        v.restore(&foreign),
        Err(SnapshotError::SchemaMismatch { .. })
    ));
}
