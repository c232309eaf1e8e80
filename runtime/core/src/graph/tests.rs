//! Graph-file loading against a registry of fake kinds.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::record::ChannelId;
use crate::param::{ParamDefault, ParamSpec, ParamType, ParamValue};
use crate::plan::Overflow;
use crate::vertex::{Arity, BuildContext, BuildError, Builder, KindSpec, OutputSpec, Sink, Source, Vertex};
use proptest::prelude::*;

fn no_source(_: &BuildContext<'_>) -> Result<Box<dyn Source>, BuildError> {
    Err(BuildError::new("test kind"))
}
fn no_vertex(_: &BuildContext<'_>) -> Result<Box<dyn Vertex>, BuildError> {
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
    outputs: &[OutputSpec::named("current", "A"), OutputSpec::named("voltage", "V")],
    outputs_from: None,
    params: &[ParamSpec {
        name: "period",
        ty: ParamType::Duration { min_ns: 1_000_000, max_ns: 3_600_000_000_000 },
        default: ParamDefault::Duration(1_000_000_000),
        doc: "poll period",
    }],
    state_schema: None,
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
    build: Builder::Vertex(no_vertex),
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
            ty: ParamType::Float { min: -10.0, max: 10.0 },
            default: ParamDefault::Required,
            doc: "",
        },
        ParamSpec {
            name: "count",
            ty: ParamType::Int { min: 1, max: 10 },
            default: ParamDefault::Int(3),
            doc: "",
        },
        ParamSpec { name: "on", ty: ParamType::Bool, default: ParamDefault::Bool(false), doc: "" },
        ParamSpec {
            name: "window",
            ty: ParamType::Duration { min_ns: 1_000_000_000, max_ns: 3_600_000_000_000 },
            default: ParamDefault::Duration(5_000_000_000),
            doc: "",
        },
        ParamSpec {
            name: "mode",
            ty: ParamType::Choice(&["mean", "max"]),
            default: ParamDefault::Text("mean"),
            doc: "",
        },
        ParamSpec { name: "label", ty: ParamType::Text, default: ParamDefault::Optional, doc: "" },
        ParamSpec { name: "tags", ty: ParamType::Names, default: ParamDefault::Names(&[]), doc: "" },
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
        ty: ParamType::Float { min: 1.0, max: 10_000.0 },
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
    build: Builder::Sink(no_sink),
};

fn registry() -> Registry {
    let mut r = Registry::new();
    r.register(&[&BATTERY, &METER, &GEN, &EWMA_1, &EWMA_2, &KNOBS, &SOC, &STDOUT]);
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
    plan.workers.iter().map(|w| (w.name.clone(), ids(plan, &w.nodes))).collect()
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

#[test]
fn home_graph_loads_into_a_plan() {
    let loaded = load_str(HOME).unwrap();
    assert_eq!(loaded.name, "home");
    assert_eq!(loaded.settings.layout, Layout::Chains);
    assert_eq!(loaded.settings.edge, EdgeSettings { capacity: 1024, overflow: Overflow::Block });
    let plan = &loaded.plan;
    let order: Vec<&str> = plan.nodes.iter().map(|n| n.id.as_str()).collect();
    assert_eq!(order, ["battery", "meter", "soc", "smooth", "out"]);

    let channels: Vec<(&str, &str)> = (0..plan.channels.len() as u32)
        .map(|i| (plan.channels.name(ChannelId(i)), plan.channels.unit(ChannelId(i))))
        .collect();
    assert_eq!(
        channels,
        [
            ("battery.current", "A"),
            ("battery.voltage", "V"),
            ("meter", "W"),
            ("soc", "%"),
            ("soc.energy", "Wh"),
            ("smooth", ""),
        ]
    );
    let out = plan.node("out").unwrap();
    let ins: Vec<&str> = out.inputs.iter().map(|&c| plan.channels.name(c)).collect();
    assert_eq!(ins, ["smooth", "meter", "soc.energy"]);

    let soc = plan.node("soc").unwrap();
    assert_eq!(soc.kind.name, "soc");
    assert_eq!(soc.params.float("capacity_ah"), Some(100.0));
    let battery = plan.node("battery").unwrap();
    assert_eq!(battery.params.duration_ns("period"), Some(500_000_000));
    let smooth = plan.node("smooth").unwrap();
    assert_eq!((smooth.kind.version, smooth.params.float("alpha")), (1, Some(0.2)));

    // Chains: soc is the only consumer of battery, so it runs on the ingress
    // worker; smooth and out each start a chain of their own.
    assert_eq!(
        workers(plan),
        [
            ("ingress".to_owned(), strings(&["battery", "meter", "soc"])),
            ("smooth".to_owned(), strings(&["smooth"])),
            ("out".to_owned(), strings(&["out"])),
        ]
    );
    let block = Overflow::Block;
    assert_eq!(
        rings(plan),
        [
            ("soc".to_owned(), "smooth".to_owned(), 256, Overflow::DropOldest),
            ("meter".to_owned(), "out".to_owned(), 1024, block),
            ("soc".to_owned(), "out".to_owned(), 1024, block),
            ("smooth".to_owned(), "out".to_owned(), 1024, block),
        ]
    );
}

#[test]
fn layouts_group_the_same_graph_differently() {
    let single = load_str(&home_with("capacity = 1024", "capacity = 1024\nlayout = \"single\"")).unwrap();
    assert_eq!(single.settings.layout, Layout::Single);
    assert_eq!(
        workers(&single.plan),
        [("ingress".to_owned(), strings(&["battery", "meter", "soc", "smooth", "out"]))]
    );
    assert!(rings(&single.plan).is_empty());

    let spread = load_str(&home_with("capacity = 1024", "layout = \"spread\"")).unwrap();
    assert_eq!(
        workers(&spread.plan),
        [
            ("ingress".to_owned(), strings(&["battery", "meter"])),
            ("soc".to_owned(), strings(&["soc"])),
            ("smooth".to_owned(), strings(&["smooth"])),
            ("out".to_owned(), strings(&["out"])),
        ]
    );
    let d = crate::plan::DEFAULT_CAPACITY;
    let block = Overflow::Block;
    assert_eq!(
        rings(&spread.plan),
        [
            ("battery".to_owned(), "soc".to_owned(), d, block),
            ("soc".to_owned(), "smooth".to_owned(), 256, Overflow::DropOldest),
            ("meter".to_owned(), "out".to_owned(), d, block),
            ("soc".to_owned(), "out".to_owned(), d, block),
            ("smooth".to_owned(), "out".to_owned(), d, block),
        ]
    );
}

#[test]
fn worker_pins_put_nodes_together() {
    let src = home_with("alpha = 0.2", "alpha = 0.2\nworker = \"w1\"")
        .replace("kind = \"stdout\"", "kind = \"stdout\"\nworker = \"w1\"");
    let plan = load_str(&src).unwrap().plan;
    assert_eq!(
        workers(&plan),
        [
            ("ingress".to_owned(), strings(&["battery", "meter", "soc"])),
            ("w1".to_owned(), strings(&["smooth", "out"])),
        ]
    );
    assert_eq!(plan.node("out").unwrap().pin.as_deref(), Some("w1"));
}

#[test]
fn defaults_fill_in_what_the_file_leaves_out() {
    let src = r#"
[sources.battery]
kind = "sim.battery"
[vertices.k]
kind = "knobs"
inputs = ["battery.*"]
gain = -2
window = 90
[sinks.out]
kind = "stdout"
inputs = ["k"]
"#;
    let loaded = load_str(src).unwrap();
    assert_eq!(loaded.name, "graph");
    assert_eq!(loaded.settings, GraphSettings::default());
    let k = loaded.plan.node("k").unwrap();
    let ins: Vec<&str> = k.inputs.iter().map(|&c| loaded.plan.channels.name(c)).collect();
    assert_eq!(ins, ["battery.current", "battery.voltage"]);
    assert_eq!(k.params.get("gain"), Some(&ParamValue::Float(-2.0)));
    assert_eq!(k.params.int("count"), Some(3));
    assert_eq!(k.params.bool("on"), Some(false));
    assert_eq!(k.params.duration_ns("window"), Some(90_000_000_000));
    assert_eq!(k.params.text("mode"), Some("mean"));
    assert_eq!(k.params.text("label"), None);
    assert_eq!(k.params.names("tags"), Some(&[][..]));
    assert_eq!(loaded.plan.node("battery").unwrap().params.duration_ns("period"), Some(1_000_000_000));
    // The latest version when none is given.
    let ewma = home_with("version = 1\n", "");
    assert_eq!(load_str(&ewma).unwrap().plan.node("smooth").unwrap().kind.version, 2);
}

#[test]
fn names_parameters_add_outputs() {
    let src = r#"
[sources.gen]
kind = "sim.gen"
channels = ["power", "l1.power"]
[sinks.out]
kind = "stdout"
inputs = ["gen.*"]
"#;
    let plan = load_str(src).unwrap().plan;
    let out = plan.node("out").unwrap();
    let ins: Vec<&str> = out.inputs.iter().map(|&c| plan.channels.name(c)).collect();
    assert_eq!(ins, ["gen.count", "gen.power", "gen.l1.power"]);
}
