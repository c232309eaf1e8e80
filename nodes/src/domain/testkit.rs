//! Test harness shared by the domain vertices: build a kind from parameters
//! with its defaults filled in, feed records, and check the properties every
//! stateful vertex owes the runtime (split-independence, snapshot resume,
//! damaged snapshots refused).

#![allow(clippy::unwrap_used)]

use crate::testkit;
use std::sync::Arc;
use tandem_core::{
    BuildContext, BuildError, Builder, ChannelId, ChannelTable, EventTime, KindSpec, ParamValue,
    Params, Quality, Record, Seq, Vertex,
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
        let params = testkit::params(kind, set);
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
    testkit::run(fx.build().as_mut(), input)
}

/// Panics unless both runs are identical bit for bit.
#[track_caller]
pub fn assert_bit_identical(a: &[Record], b: &[Record]) {
    testkit::assert_bit_eq(a, b, "outputs");
}

/// The same output whole and however the input is split into calls.
pub fn check_split_independence(fx: &Fixture, input: &[Record]) {
    testkit::check_split_invariant(&|| fx.build(), input);
}

/// Snapshot and resume at every cut point equals an uninterrupted run.
pub fn check_snapshot_resume(fx: &Fixture, input: &[Record]) {
    testkit::check_snapshot_resume(&|| fx.build(), input);
}

/// Damaged snapshots are refused, and leave the vertex as it was.
pub fn check_damaged_snapshot_refused(fx: &Fixture, input: &[Record]) {
    testkit::check_damaged_snapshot_refused(&|| fx.build(), input);
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
