//! The checks every stateful vertex owes the runtime, shared by the tests of
//! all vertex kinds: output independent of how input is split into calls,
//! snapshot and resume equal to an uninterrupted run, damaged snapshots
//! refused without harm.

#![allow(clippy::unwrap_used)]

use tandem_core::{
    KindSpec, ParamValue, Params, Record, SchemaId, Snapshot, SnapshotError, Vertex,
};

/// Builds a fresh instance of the vertex under test.
pub(crate) type Build<'a> = &'a dyn Fn() -> Box<dyn Vertex>;

/// Params as validation would hand them: the kind's defaults, then `given`.
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

/// Runs `input` through `v` in one call.
pub(crate) fn run(v: &mut dyn Vertex, input: &[Record]) -> Vec<Record> {
    let mut out = Vec::new();
    v.process(input, &mut out);
    out
}

/// Asserts two outputs are bit-identical.
#[track_caller]
pub(crate) fn assert_bit_eq(a: &[Record], b: &[Record], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: {a:?} vs {b:?}");
    for (n, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(x.bit_eq(y), "{what}: record {n} differs: {x:?} vs {y:?}");
    }
}

/// Whole input in one call, in chunks of 1, 2, 3 and 7, and with empty calls
/// in between, all give the same output bit for bit.
pub(crate) fn check_split_invariant(build: Build<'_>, input: &[Record]) {
    let expected = run(build().as_mut(), input);
    for chunk in [1, 2, 3, 7] {
        let mut v = build();
        let mut out = Vec::new();
        v.process(&[], &mut out);
        for part in input.chunks(chunk) {
            v.process(part, &mut out);
        }
        v.process(&[], &mut out);
        assert_bit_eq(&expected, &out, &format!("chunks of {chunk}"));
    }
}

/// For every cut point: run up to it, snapshot through the encoded envelope,
/// restore into a fresh instance, continue; the output equals an
/// uninterrupted run.
pub(crate) fn check_snapshot_resume(build: Build<'_>, input: &[Record]) {
    let expected = run(build().as_mut(), input);
    for cut in 0..=input.len() {
        let mut first = build();
        let mut out = run(first.as_mut(), &input[..cut]);
        let bytes = first.snapshot().expect("stateful vertex").encode();
        let mut second = build();
        second.restore(&Snapshot::decode(&bytes).unwrap()).unwrap();
        second.process(&input[cut..], &mut out);
        assert_bit_eq(&expected, &out, &format!("restored at cut {cut}"));
    }
}

/// Every truncation and every single bit flip of a snapshot taken half way
/// through `input` is refused; so are a foreign payload and another schema
/// (named in the error). A refused restore leaves the vertex running on its
/// own state.
pub(crate) fn check_damaged_snapshot_refused(build: Build<'_>, input: &[Record]) {
    let expected = run(build().as_mut(), input);
    let cut = input.len() / 2;
    let mut first = build();
    let _ = run(first.as_mut(), &input[..cut]);
    let snapshot = first.snapshot().expect("stateful vertex");
    let bytes = snapshot.encode();
    let restore = |bytes: &[u8]| Snapshot::decode(bytes).and_then(|s| build().restore(&s));
    assert!(restore(&bytes).is_ok());
    for len in 0..bytes.len() {
        assert!(
            restore(&bytes[..len]).is_err(),
            "truncated to {len} bytes was accepted"
        );
    }
    for bit in 0..bytes.len() * 8 {
        let mut damaged = bytes.clone();
        damaged[bit / 8] ^= 1 << (bit % 8);
        assert!(restore(&damaged).is_err(), "bit {bit} flipped was accepted");
    }
    let foreign = Snapshot {
        schema: snapshot.schema,
        payload: vec![0xA5; 7],
    };
    let other = Snapshot {
        schema: SchemaId(u32::MAX),
        payload: snapshot.payload.clone(),
    };
    let mut survivor = build();
    let mut out = run(survivor.as_mut(), &input[..cut]);
    assert!(survivor.restore(&foreign).is_err());
    assert!(matches!(
        survivor.restore(&other),
        Err(SnapshotError::SchemaMismatch { .. })
    ));
    survivor.process(&input[cut..], &mut out);
    assert_bit_eq(&expected, &out, "after refused restores");
}
