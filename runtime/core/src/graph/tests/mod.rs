//! Graph-file loading against a registry of fake kinds.
#![allow(clippy::unwrap_used)]

mod errors;
mod fuzz;
mod ha;
mod kinds;
mod plans;

use super::*;
use crate::param::{ParamDefault, ParamSpec, ParamType};
use crate::plan::Overflow;
use crate::plan::Plan;
use crate::vertex::{Arity, BuildContext, BuildError, Builder, KindSpec, OutputSpec, Sink, Source};

fn no_source(_: &BuildContext<'_>) -> Result<Box<dyn Source>, BuildError> {
    Err(BuildError::new("test kind"))
}
fn no_sink(_: &BuildContext<'_>) -> Result<Box<dyn Sink>, BuildError> {
    Err(BuildError::new("test kind"))
}

const SOURCE: KindSpec = KindSpec {
    name: "sim.battery",
    version: 1,
    doc: "a simulated battery",
    input_names: &[],
    arity: Arity::NONE,
    outputs: &[
        OutputSpec::named("current", "A"),
        OutputSpec::named("voltage", "V"),
    ],
    outputs_from: None,
    params: &[ParamSpec {
        name: "period",
        ty: ParamType::Duration {
            min_ns: 1_000_000,
            max_ns: 3_600_000_000_000,
        },
        default: ParamDefault::Duration(1_000_000_000),
        doc: "poll period",
    }],
    state_schema: None,
    migrations: &[],
    build: Builder::Source(no_source),
};

static BATTERY: KindSpec = SOURCE;
static METER: KindSpec = KindSpec {
    name: "sim.meter",
    outputs: &[OutputSpec::main("W")],
    params: &[],
    ..SOURCE
};
static GEN: KindSpec = KindSpec {
    name: "sim.gen",
    outputs: &[OutputSpec::named("count", "")],
    outputs_from: Some("channels"),
    params: &[ParamSpec {
        name: "channels",
        ty: ParamType::Names,
        default: ParamDefault::Required,
        doc: "generated channels",
    }],
    ..SOURCE
};

const EWMA: KindSpec = KindSpec {
    name: "ewma",
    version: 1,
    doc: "exponentially weighted moving average",
    input_names: &["value"],
    arity: Arity::exactly(1),
    outputs: &[OutputSpec::main("")],
    outputs_from: None,
    params: &[ParamSpec {
        name: "alpha",
        ty: ParamType::Float { min: 0.0, max: 1.0 },
        default: ParamDefault::Float(0.5),
        doc: "weight of the newest value",
    }],
    state_schema: None,
    migrations: &[],
    build: Builder::Vertex(crate::vertex::idle),
};
static EWMA_1: KindSpec = EWMA;
static EWMA_2: KindSpec = KindSpec { version: 2, ..EWMA };

static KNOBS: KindSpec = KindSpec {
    name: "knobs",
    input_names: &[],
    arity: Arity::at_least(1),
    params: &[
        ParamSpec {
            name: "gain",
            ty: ParamType::Float {
                min: -10.0,
                max: 10.0,
            },
            default: ParamDefault::Required,
            doc: "",
        },
        ParamSpec {
            name: "count",
            ty: ParamType::Int { min: 1, max: 10 },
            default: ParamDefault::Int(3),
            doc: "",
        },
        ParamSpec {
            name: "on",
            ty: ParamType::Bool,
            default: ParamDefault::Bool(false),
            doc: "",
        },
        ParamSpec {
            name: "window",
            ty: ParamType::Duration {
                min_ns: 1_000_000_000,
                max_ns: 3_600_000_000_000,
            },
            default: ParamDefault::Duration(5_000_000_000),
            doc: "",
        },
        ParamSpec {
            name: "mode",
            ty: ParamType::Choice(&["mean", "max"]),
            default: ParamDefault::Text("mean"),
            doc: "",
        },
        ParamSpec {
            name: "label",
            ty: ParamType::Text,
            default: ParamDefault::Optional,
            doc: "",
        },
        ParamSpec {
            name: "tags",
            ty: ParamType::Names,
            default: ParamDefault::Names(&[]),
            doc: "",
        },
    ],
    ..EWMA
};

static SOC: KindSpec = KindSpec {
    name: "soc",
    input_names: &["current", "voltage"],
    arity: Arity::exactly(2),
    outputs: &[OutputSpec::main("%"), OutputSpec::named("energy", "Wh")],
    params: &[ParamSpec {
        name: "capacity_ah",
        ty: ParamType::Float {
            min: 1.0,
            max: 10_000.0,
        },
        default: ParamDefault::Required,
        doc: "capacity",
    }],
    ..EWMA
};

static STDOUT: KindSpec = KindSpec {
    name: "stdout",
    version: 1,
    doc: "prints records",
    input_names: &[],
    arity: Arity::at_least(1),
    outputs: &[],
    outputs_from: None,
    params: &[],
    state_schema: None,
    migrations: &[],
    build: Builder::Sink(no_sink),
};

fn registry() -> Registry {
    let mut r = Registry::new();
    r.register(&[
        &BATTERY, &METER, &GEN, &EWMA_1, &EWMA_2, &KNOBS, &SOC, &STDOUT,
    ]);
    r
}

const HOME: &str = r#"[graph]
name = "home"
capacity = 1024

[sources.battery]
kind = "sim.battery"
period = "500ms"

[sources.meter]
kind = "sim.meter"

[vertices.soc]
kind = "soc"
inputs = ["battery.current", "battery.voltage"]
capacity_ah = 100

[vertices.smooth]
kind = "ewma"
version = 1
inputs = ["soc"]
alpha = 0.2

[sinks.out]
kind = "stdout"
inputs = ["smooth", "meter", "soc.energy"]

[[edges]]
from = "soc"
to = "smooth"
capacity = 256
overflow = "drop_oldest"
"#;

fn load_str(src: &str) -> Result<Loaded, Diagnostics> {
    load("g.toml", src.as_bytes(), &registry())
}

/// The diagnostics of a file that must not load, one string per error.
fn errors(src: &str) -> Vec<String> {
    match load_str(src) {
        Ok(_) => panic!("loaded but should not have:\n{src}"),
        Err(d) => d.iter().map(ToString::to_string).collect(),
    }
}

/// The home graph with `from` replaced by `to` (which must occur once).
fn home_with(from: &str, to: &str) -> String {
    assert_eq!(HOME.matches(from).count(), 1, "{from}");
    HOME.replace(from, to)
}

fn ids(plan: &Plan, nodes: &[usize]) -> Vec<String> {
    nodes.iter().map(|&i| plan.nodes[i].id.clone()).collect()
}

fn workers(plan: &Plan) -> Vec<(String, Vec<String>)> {
    plan.workers
        .iter()
        .map(|w| (w.name.clone(), ids(plan, &w.nodes)))
        .collect()
}

fn rings(plan: &Plan) -> Vec<(String, String, usize, Overflow)> {
    plan.edges
        .iter()
        .filter(|e| !e.fused)
        .map(|e| {
            (
                plan.nodes[e.from].id.clone(),
                plan.nodes[e.to].id.clone(),
                e.settings.capacity,
                e.settings.overflow,
            )
        })
        .collect()
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}
