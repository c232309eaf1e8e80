//! Test kinds shared by the executor tests: a doubler, an order-sensitive
//! fold, and a sink that collects what it sees by tag.
#![allow(clippy::unwrap_used, dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tandem_core::plan::NodeDraft;
use tandem_core::{
    Arity, Builder, ChannelId, KindSpec, OutputSpec, ParamDefault, ParamSpec, ParamType,
    ParamValue, Params, Record, Sink, SinkError, Vertex,
};

/// Doubles its input.
pub struct Double(pub ChannelId);
impl Vertex for Double {
    fn process(&mut self, input: &[Record], out: &mut Vec<Record>) {
        out.extend(input.iter().map(|r| r.derive(self.0, r.value * 2.0)));
    }
}

pub static DOUBLE: KindSpec = KindSpec {
    name: "t.double",
    version: 1,
    doc: "doubles",
    input_names: &["in"],
    arity: Arity::exactly(1),
    outputs: &[OutputSpec::main("")],
    outputs_from: None,
    params: &[],
    state_schema: None,
    migrations: &[],
    build: Builder::Vertex(|ctx| Ok(Box::new(Double(ctx.outputs[0])))),
};

/// Emits a running value that depends on the order of everything it sees:
/// `acc = acc * 0.5 + value`. Any reordering changes the output.
pub struct Fold(pub ChannelId, pub f64);
impl Vertex for Fold {
    fn process(&mut self, input: &[Record], out: &mut Vec<Record>) {
        for r in input {
            self.1 = self.1 * 0.5 + r.value;
            out.push(r.derive(self.0, self.1));
        }
    }
}

pub static FOLD: KindSpec = KindSpec {
    name: "t.fold",
    version: 1,
    doc: "order-sensitive fold",
    input_names: &["x", "y"],
    arity: Arity::at_least(1),
    outputs: &[OutputSpec::main("")],
    outputs_from: None,
    params: &[],
    state_schema: None,
    migrations: &[],
    build: Builder::Vertex(|ctx| Ok(Box::new(Fold(ctx.outputs[0], 0.0)))),
};

pub type Collected = Arc<Mutex<BTreeMap<String, Vec<Record>>>>;
pub static COLLECTED: Mutex<Option<Collected>> = Mutex::new(None);

pub fn collected() -> Collected {
    COLLECTED
        .lock()
        .unwrap()
        .get_or_insert_with(Default::default)
        .clone()
}

pub struct Collect {
    tag: String,
    into: Collected,
}
impl Sink for Collect {
    fn write(&mut self, records: &[Record]) -> Result<(), SinkError> {
        self.into
            .lock()
            .unwrap()
            .entry(self.tag.clone())
            .or_default()
            .extend_from_slice(records);
        Ok(())
    }
    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

pub static COLLECT: KindSpec = KindSpec {
    name: "t.collect",
    version: 1,
    doc: "collects",
    input_names: &[],
    arity: Arity::at_least(1),
    outputs: &[],
    outputs_from: None,
    params: &[ParamSpec {
        name: "tag",
        ty: ParamType::Text,
        default: ParamDefault::Required,
        doc: "key",
    }],
    state_schema: None,
    migrations: &[],
    build: Builder::Sink(|ctx| {
        Ok(Box::new(Collect {
            tag: ctx.params.text("tag").unwrap_or("").to_owned(),
            into: collected(),
        }))
    }),
};

pub fn take(tag: &str) -> Vec<Record> {
    collected().lock().unwrap().remove(tag).unwrap_or_default()
}

pub fn params(pairs: &[(&str, ParamValue)]) -> Params {
    let mut p = Params::new();
    for (k, v) in pairs {
        p.insert(k, v.clone());
    }
    p
}

/// A node for `Plan::assemble`; `worker` pins it.
pub fn draft(
    id: &str,
    kind: &'static KindSpec,
    params: Params,
    inputs: Vec<ChannelId>,
    outputs: Vec<ChannelId>,
    worker: Option<String>,
) -> NodeDraft {
    NodeDraft {
        id: id.into(),
        kind,
        params,
        inputs,
        outputs,
        worker,
    }
}
pub mod fleet;
pub mod mqtt;
pub mod up;
