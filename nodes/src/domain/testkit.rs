//! Test harness shared by the domain vertices: build a kind from parameters
//! with its defaults filled in, feed records, and check the properties every
//! stateful vertex owes the runtime (split-independence, snapshot resume,
//! damaged snapshots refused).

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use tandem_core::{
    BuildContext, BuildError, Builder, ChannelId, ChannelTable, EventTime, KindSpec, ParamValue,
    Params, Quality, Record, Seq, Snapshot, Vertex,
};

/// A node of one kind wired to channels `0..inputs` in, and the next ones out.
pub struct Fixture {
    pub kind: &'static KindSpec,
    pub params: Params,
    pub inputs: Vec<ChannelId>,
    pub outputs: Vec<ChannelId>,
    pub channels: Arc<ChannelTable>,
}

impl Fixture {
    /// The kind with its defaults, overridden by `set`.
    pub fn new(kind: &'static KindSpec, set: &[(&str, ParamValue)]) -> Fixture {
        let mut params = Params::new();
        for spec in kind.params {
            if let Some(v) = ParamValue::from_default(spec.default) {
                params.insert(spec.name, v);
            }
        }
        for (name, value) in set {
            assert!(
                kind.params.iter().any(|p| p.name == *name),
                "{} has no parameter {name}",
                kind.name
            );
            params.insert(name, value.clone());
        }
        let mut table = ChannelTable::new();
        let inputs = kind
            .input_names
            .iter()
            .map(|n| table.intern(&format!("in.{n}"), ""))
            .collect();
        let outputs = kind
            .outputs
            .iter()
            .map(|o| {
                if o.suffix.is_empty() {
                    table.intern("node", o.unit)
                } else {
                    table.intern(&format!("node.{}", o.suffix), o.unit)
                }
            })
            .collect();
        Fixture {
            kind,
            params,
            inputs,
            outputs,
            channels: Arc::new(table),
        }
    }

    /// Builds the vertex, or the kind's refusal.
    pub fn try_build(&self) -> Result<Box<dyn Vertex>, BuildError> {
        let ctx = BuildContext {
            id: "node",
            params: &self.params,
            inputs: &self.inputs,
            outputs: &self.outputs,
            channels: &self.channels,
        };
        match self.kind.build {
            Builder::Vertex(build) => build(&ctx),
            _ => panic!("{} is not a vertex", self.kind.name),
        }
    }

    /// Builds the vertex.
    pub fn build(&self) -> Box<dyn Vertex> {
        self.try_build().unwrap()
    }

    /// Input channel `i`.
    pub fn input(&self, i: usize) -> ChannelId {
        self.inputs[i]
    }

    /// Output channel `i`.
    pub fn output(&self, i: usize) -> ChannelId {
        self.outputs[i]
    }
}

/// Builds merged input with consecutive sequence numbers from
/// (seconds, input index, value, quality) rows.
pub fn feed(fx: &Fixture, rows: &[(f64, usize, f64, Quality)]) -> Vec<Record> {
    rows.iter()
        .enumerate()
        .map(|(i, &(secs, input, value, quality))| Record {
            seq: Seq(i as u64 + 1),
            time: EventTime((secs * 1e9).round() as i64),
            channel: fx.input(input),
            quality,
            value,
        })
        .collect()
}

/// All of `input` in one call.
pub fn run_whole(fx: &Fixture, input: &[Record]) -> Vec<Record> {
    let mut v = fx.build();
    let mut out = Vec::new();
    v.process(input, &mut out);
    out
}

/// Panics unless both runs are identical bit for bit.
pub fn assert_bit_identical(a: &[Record], b: &[Record]) {
    assert_eq!(a.len(), b.len(), "{a:#?}\nvs\n{b:#?}");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(x.bit_eq(y), "record {i} differs: {x:?} vs {y:?}");
    }
}

/// The same output whole, one record at a time, and in chunks of three.
pub fn check_split_independence(fx: &Fixture, input: &[Record]) {
    let whole = run_whole(fx, input);
    for size in [1, 3] {
        let mut v = fx.build();
        let mut out = Vec::new();
        for chunk in input.chunks(size) {
            v.process(chunk, &mut out);
        }
        assert_bit_identical(&whole, &out);
    }
    let mut v = fx.build();
    let mut out = Vec::new();
    v.process(&[], &mut out);
    v.process(input, &mut out);
    assert_bit_identical(&whole, &out);
}

/// For every cut point: run up to it, snapshot through the byte envelope,
/// restore into a fresh instance, run the rest; the output equals an uninterrupted run.
pub fn check_snapshot_resume(fx: &Fixture, input: &[Record]) {
    let whole = run_whole(fx, input);
    for cut in 0..=input.len() {
        let mut first = fx.build();
        let mut out = Vec::new();
        first.process(&input[..cut], &mut out);
        let bytes = first.snapshot().expect("stateful vertex").encode();
        let mut second = fx.build();
        second.restore(&Snapshot::decode(&bytes).unwrap()).unwrap();
        second.process(&input[cut..], &mut out);
        assert_bit_identical(&whole, &out);
    }
}

/// Every truncation and every single bit flip of a snapshot taken after
/// `input` is refused with an error, and the refused vertex goes on as before.
pub fn check_damaged_snapshot_refused(fx: &Fixture, input: &[Record]) {
    let mut v = fx.build();
    let mut out = Vec::new();
    v.process(input, &mut out);
    let bytes = v.snapshot().expect("stateful vertex").encode();
    let restore = |bytes: &[u8]| {
        let mut fresh = fx.build();
        Snapshot::decode(bytes).and_then(|s| fresh.restore(&s))
    };
    assert!(restore(&bytes).is_ok());
    for len in 0..bytes.len() {
        assert!(restore(&bytes[..len]).is_err(), "truncated to {len} bytes");
    }
    for bit in 0..bytes.len() * 8 {
        let mut damaged = bytes.clone();
        damaged[bit / 8] ^= 1 << (bit % 8);
        assert!(restore(&damaged).is_err(), "bit {bit} flipped");
    }
    // A well-formed envelope around a payload that is not this kind's state.
    let foreign = Snapshot {
        schema: v.snapshot().unwrap().schema,
        payload: vec![0xA5; 7],
    };
    let mut fresh = fx.build();
    assert!(fresh.restore(&foreign).is_err());
    // Another kind's schema.
    let other = Snapshot {
        schema: tandem_core::SchemaId(u32::MAX),
        payload: v.snapshot().unwrap().payload,
    };
    assert!(fresh.restore(&other).is_err());
    // The failed restores left the fresh vertex as built.
    let mut after = Vec::new();
    fresh.process(input, &mut after);
    assert_bit_identical(&out, &after);
}

/// Records of output channel `ch`, as (seconds, value, quality).
pub fn on(out: &[Record], ch: ChannelId) -> Vec<(f64, f64, Quality)> {
    out.iter()
        .filter(|r| r.channel == ch)
        .map(|r| (r.time.as_secs_f64(), r.value, r.quality))
        .collect()
}

/// Panics unless `a` and `b` are within `tol`.
#[track_caller]
pub fn close(a: f64, b: f64, tol: f64) {
    assert!((a - b).abs() <= tol, "{a} is not within {tol} of {b}");
}
