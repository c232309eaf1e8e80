//! Graph-file loading against a registry of fake kinds.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::param::{ParamDefault, ParamSpec, ParamType, ParamValue};
use crate::plan::Overflow;
use crate::record::ChannelId;
use crate::vertex::{
    Arity, BuildContext, BuildError, Builder, KindSpec, OutputSpec, Sink, Source, Vertex,
};
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

#[test]
fn home_graph_loads_into_a_plan() {
    let loaded = load_str(HOME).unwrap();
    assert_eq!(loaded.name, "home");
    assert_eq!(loaded.settings.layout, Layout::Chains);
    assert_eq!(
        loaded.settings.edge,
        EdgeSettings {
            capacity: 1024,
            overflow: Overflow::Block
        }
    );
    let plan = &loaded.plan;
    let order: Vec<&str> = plan.nodes.iter().map(|n| n.id.as_str()).collect();
    assert_eq!(order, ["battery", "meter", "soc", "smooth", "out"]);

    let channels: Vec<(&str, &str)> = (0..plan.channels.len() as u32)
        .map(|i| {
            (
                plan.channels.name(ChannelId(i)),
                plan.channels.unit(ChannelId(i)),
            )
        })
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
    assert_eq!(
        (smooth.kind.version, smooth.params.float("alpha")),
        (1, Some(0.2))
    );

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
            (
                "soc".to_owned(),
                "smooth".to_owned(),
                256,
                Overflow::DropOldest
            ),
            ("meter".to_owned(), "out".to_owned(), 1024, block),
            ("soc".to_owned(), "out".to_owned(), 1024, block),
            ("smooth".to_owned(), "out".to_owned(), 1024, block),
        ]
    );
}

#[test]
fn layouts_group_the_same_graph_differently() {
    let single = load_str(&home_with(
        "capacity = 1024",
        "capacity = 1024\nlayout = \"single\"",
    ))
    .unwrap();
    assert_eq!(single.settings.layout, Layout::Single);
    assert_eq!(
        workers(&single.plan),
        [(
            "ingress".to_owned(),
            strings(&["battery", "meter", "soc", "smooth", "out"])
        )]
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
            (
                "soc".to_owned(),
                "smooth".to_owned(),
                256,
                Overflow::DropOldest
            ),
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
    let ins: Vec<&str> = k
        .inputs
        .iter()
        .map(|&c| loaded.plan.channels.name(c))
        .collect();
    assert_eq!(ins, ["battery.current", "battery.voltage"]);
    assert_eq!(k.params.get("gain"), Some(&ParamValue::Float(-2.0)));
    assert_eq!(k.params.int("count"), Some(3));
    assert_eq!(k.params.bool("on"), Some(false));
    assert_eq!(k.params.duration_ns("window"), Some(90_000_000_000));
    assert_eq!(k.params.text("mode"), Some("mean"));
    assert_eq!(k.params.text("label"), None);
    assert_eq!(k.params.names("tags"), Some(&[][..]));
    assert_eq!(
        loaded
            .plan
            .node("battery")
            .unwrap()
            .params
            .duration_ns("period"),
        Some(1_000_000_000)
    );
    // The latest version when none is given.
    let ewma = home_with("version = 1\n", "");
    assert_eq!(
        load_str(&ewma)
            .unwrap()
            .plan
            .node("smooth")
            .unwrap()
            .kind
            .version,
        2
    );
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

fn check(src: &str, expected: &[&str]) {
    let expected: Vec<String> = expected.iter().map(|e| format!("g.toml:{e}")).collect();
    assert_eq!(errors(src), expected);
}

const SOC_INPUTS: &str = r#"inputs = ["battery.current", "battery.voltage"]"#;
const OUT_INPUTS: &str = r#"inputs = ["smooth", "meter", "soc.energy"]"#;

#[test]
fn toml_syntax_errors_point_at_the_parser_position() {
    check(
        "[graph\nname = 1\n",
        &["1:7: error: invalid TOML: unclosed table, expected `]`"],
    );
}

#[test]
fn bytes_that_are_not_text_are_refused_at_the_first_bad_byte() {
    let utf8 = load("g.toml", b"[graph]\nname = \"\xff\"\n", &registry()).unwrap_err();
    assert_eq!(
        utf8.to_string(),
        "g.toml:2:9: error: not UTF-8 text: invalid byte 0xff; graph files are UTF-8 TOML text"
    );
    let binary = load("g.toml", b"[graph]\n\x00\x01", &registry()).unwrap_err();
    assert_eq!(
        binary.to_string(),
        "g.toml:2:1: error: not a text file: control byte 0x00; graph files are UTF-8 TOML text"
    );
}

#[test]
fn unknown_tables_and_graph_keys_name_the_valid_ones() {
    check(
        &home_with("capacity = 1024", "layot = \"single\"\n[sourcs]"),
        &[
            "3:1: error: unknown key `layot` in [graph]; did you mean `layout`? valid keys: name, layout, capacity, overflow",
            "4:2: error: unknown table `[sourcs]`; did you mean `[sources]`? valid tables: [graph], [sources], [vertices], [sinks], [[edges]]",
        ],
    );
}

#[test]
fn nodes_in_an_unknown_table_are_reported_once() {
    check(
        &home_with("[vertices.smooth]", "[vertexes.smooth]"),
        &["17:2: error: unknown table `[vertexes]`; did you mean `[vertices]`? valid tables: [graph], [sources], [vertices], [sinks], [[edges]]"],
    );
}

#[test]
fn unknown_kinds_suggest_the_nearest_of_their_role() {
    check(
        &home_with(r#"kind = "ewma""#, r#"kind = "ewm""#),
        &["18:8: error: unknown vertex kind `ewm`; did you mean `ewma`? known kinds: ewma, knobs, soc"],
    );
    check(
        &home_with("[sinks.out]", "[vertices.out]"),
        &["24:8: error: `stdout` is a sink kind, declare it under [sinks]"],
    );
    check(
        &home_with("version = 1", "version = 3"),
        &["19:11: error: vertex kind `ewma` has no version 3; known versions: 1, 2"],
    );
    check(
        &home_with("[sources.meter]\nkind = \"sim.meter\"", "[sources.meter]"),
        &["9:10: error: source `meter` has no `kind`; known source kinds: sim.battery, sim.gen, sim.meter"],
    );
}

#[test]
fn parameters_are_checked_against_the_kind() {
    check(
        &home_with("alpha = 0.2", "alpah = 0.2"),
        &["21:1: error: unknown parameter `alpah` of `ewma`; did you mean `alpha`? parameters of `ewma`: alpha"],
    );
    check(
        &home_with("alpha = 0.2", "alpha = 3"),
        &["21:9: error: parameter `alpha` of `ewma` must be a number from 0 to 1, got 3"],
    );
    check(
        &home_with("capacity_ah = 100", ""),
        &["12:11: error: vertex `soc` needs parameter `capacity_ah` of `soc`: a number from 1 to 10000"],
    );
}

#[test]
fn every_parameter_type_is_checked_and_every_error_reported() {
    let src = r#"[sources.battery]
kind = "sim.battery"
[vertices.k]
kind = "knobs"
inputs = ["battery.*"]
count = 2.5
on = "yes"
window = "5 parsecs"
mode = "maen"
label = 3
tags = ["Bad", "ok", "ok"]
[sinks.out]
kind = "stdout"
inputs = ["k"]
"#;
    check(
        src,
        &[
            "3:11: error: vertex `k` needs parameter `gain` of `knobs`: a number from -10 to 10",
            "6:9: error: parameter `count` of `knobs` must be an integer from 1 to 10, got 2.5",
            "7:6: error: parameter `on` of `knobs` must be true or false, got \"yes\"",
            "8:10: error: parameter `window` of `knobs` must be a duration from 1s to 1h (such as \"500ms\", \"5s\", \"2m\", \"1h\"), got \"5 parsecs\"",
            "9:8: error: parameter `mode` of `knobs` must be one of \"mean\", \"max\", got \"maen\"; did you mean `mean`?",
            "10:9: error: parameter `label` of `knobs` must be a string, got 3",
            "11:9: error: parameter `tags` of `knobs`: \"Bad\" is not a valid name; names are lowercase letters, digits and `_` (dots may separate parts)",
            "11:22: error: parameter `tags` of `knobs` lists `ok` twice",
        ],
    );
    check(
        "[sources.gen]\nkind = \"sim.gen\"\nchannels = [\"count\"]\n[sinks.out]\nkind = \"stdout\"\ninputs = [\"gen.*\"]\n",
        &["3:12: error: parameter `channels` of `sim.gen` names `count`, which is already an output of `sim.gen`; outputs: gen.count"],
    );
}

#[test]
fn unknown_inputs_say_what_exists() {
    check(
        &home_with(SOC_INPUTS, r#"inputs = ["battery.curent", "battery.voltage"]"#),
        &["14:11: error: vertex `soc` has no input `battery.curent`; did you mean `battery.current`? existing outputs: battery.current, battery.voltage"],
    );
    check(
        &home_with(OUT_INPUTS, r#"inputs = ["smooth", "meter.x", "battery", "batery.soc", "out"]"#),
        &[
            "25:21: error: sink `out` has no input `meter.x`: `meter` has one output, named `meter`",
            "25:32: error: sink `out` has no input `battery`: `battery` has several outputs, name them: battery.current, battery.voltage (or `battery.*` for all)",
            "25:43: error: sink `out` has no input `batery.soc`: there is no node `batery`; existing outputs: battery.current, battery.voltage, meter, soc, soc.energy, smooth",
            "25:57: error: sink `out` has no input `out`: `out` is a sink and has no outputs",
        ],
    );
}

#[test]
fn inputs_must_match_the_role_and_arity() {
    check(
        &home_with(SOC_INPUTS, r#"inputs = ["battery.current"]"#),
        &["14:10: error: vertex `soc` (kind `soc`) takes exactly 2 inputs (current, voltage), got 1: battery.current"],
    );
    check(
        &home_with(SOC_INPUTS, r#"inputs = ["battery.*", "meter"]"#),
        &["14:10: error: vertex `soc` (kind `soc`) takes exactly 2 inputs (current, voltage), got 3: battery.current, battery.voltage, meter"],
    );
    check(
        &home_with("period = \"500ms\"", "period = \"500ms\"\ninputs = [\"meter\"]\nworker = \"w1\""),
        &[
            "8:1: error: source `battery` takes no inputs: sources read from devices; remove `inputs`",
            "9:10: error: source `battery` cannot be pinned to a worker: sources run on the ingress worker; remove `worker`",
        ],
    );
    check(
        &home_with(OUT_INPUTS, ""),
        &["23:8: error: sink `out` has no inputs; add `inputs = [...]` naming the channels it reads"],
    );
    check(
        &home_with(r#"inputs = ["soc"]"#, "inputs = []"),
        &["20:10: error: vertex `smooth` has no inputs; name the channels it reads (`ewma` reads value)"],
    );
}

#[test]
fn a_channel_is_read_once() {
    check(
        &home_with(
            OUT_INPUTS,
            r#"inputs = ["battery.*", "smooth", "battery.voltage"]"#,
        ),
        &["25:34: error: sink `out` reads `battery.voltage` twice"],
    );
}

#[test]
fn node_ids_are_unique_across_tables() {
    check(
        &home_with("[sinks.out]", "[sinks.soc]"),
        &["23:8: error: duplicate node id `soc`: already declared as a vertex on line 12; ids are unique across [sources], [vertices] and [sinks]"],
    );
    check(
        "[sources.Battery]\nkind = \"sim.battery\"\n[sinks]\nout = 3\n",
        &[
            "1:10: error: `Battery` is not a valid node id: use lowercase letters, digits and `_`, starting with a letter",
            "4:1: error: sink `out` must be a table such as [sinks.out] with `kind = ...` below it",
        ],
    );
    check("", &["1:1: error: the graph has no sources; declare one such as [sources.battery] with a `kind`"]);
}

#[test]
fn cycles_are_printed_as_their_path() {
    check(
        &home_with(SOC_INPUTS, r#"inputs = ["battery.current", "smooth"]"#),
        &["14:1: error: cycle: soc -> smooth -> soc"],
    );
}

#[test]
fn edge_settings_must_name_an_existing_edge() {
    check(
        &home_with("from = \"soc\"", "from = \"battery\"").replace("to = \"smooth\"", "to = \"out\""),
        &["29:6: error: there is no edge from `battery` to `out`: `out` does not read from `battery`; `battery` feeds: soc"],
    );
    check(
        &home_with("to = \"smooth\"", "to = \"smoth\"\nweight = 2"),
        &[
            "29:6: error: no node `smoth`; did you mean `smooth`? nodes: battery, meter, soc, smooth, out",
            "30:1: error: unknown key `weight` in [[edges]]; valid keys: from, to, capacity, overflow",
        ],
    );
    check(
        &format!("{HOME}[[edges]]\nfrom = \"soc\"\nto = \"smooth\"\n[[edges]]\nfrom = \"soc\"\n"),
        &[
            "32:1: error: settings for the edge from `soc` to `smooth` are given twice; the first is on line 27",
            "35:1: error: edge needs `from` and `to` (node ids); missing: to",
        ],
    );
}

#[test]
fn capacities_overflow_and_layout_are_checked() {
    check(
        &home_with("capacity = 256", "capacity = 99999999")
            .replace("capacity = 1024", "capacity = 1\noverflow = \"drop\""),
        &[
            "3:12: error: `capacity` must be an integer from 2 to 16777216 (records), got 1",
            "4:12: error: `overflow` must be one of \"block\", \"drop_oldest\", \"drop_newest\", got \"drop\"",
            "31:12: error: `capacity` must be an integer from 2 to 16777216 (records), got 99999999",
        ],
    );
    check(
        &home_with("capacity = 1024", "layout = \"chain\""),
        &["3:10: error: `layout` must be one of \"single\", \"chains\", \"spread\", got \"chain\"; did you mean `chains`?"],
    );
}

#[test]
fn worker_pins_that_feed_each_other_are_refused() {
    let src = home_with("alpha = 0.2", "alpha = 0.2\nworker = \"a\"")
        .replace("capacity_ah = 100", "capacity_ah = 100\nworker = \"b\"")
        .replace("kind = \"stdout\"", "kind = \"stdout\"\nworker = \"b\"");
    check(
        &src,
        &["16:10: error: worker pins make workers feed each other: b -> a -> b; pin these nodes to one worker or remove the pins"],
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = load("g.toml", &bytes, &registry());
    }

    #[test]
    fn mutated_graph_files_never_panic(
        cut in 0usize..HOME.len(),
        flips in proptest::collection::vec((0usize..HOME.len(), any::<u8>()), 0..6),
        insert in proptest::collection::vec((0usize..HOME.len(), "[\\[\\]\"=.,*a-z0-9 \n]{0,12}"), 0..3),
    ) {
        let mut bytes = HOME.as_bytes().to_vec();
        for (at, text) in insert.iter().rev() {
            let at = (*at).min(bytes.len());
            bytes.splice(at..at, text.bytes());
        }
        for (at, xor) in flips {
            if let Some(b) = bytes.get_mut(at) {
                *b ^= xor;
            }
        }
        let _ = load("g.toml", &bytes, &registry());
        let _ = load("g.toml", &bytes[..cut.min(bytes.len())], &registry());
    }
}

#[test]
fn crlf_files_and_toml_number_forms_load() {
    let crlf = HOME.replace('\n', "\r\n");
    assert_eq!(load_str(&crlf).unwrap().name, "home");
    check(
        &home_with("alpha = 0.2", "alpha = 3").replace('\n', "\r\n"),
        &["21:9: error: parameter `alpha` of `ewma` must be a number from 0 to 1, got 3"],
    );
    let hex = load_str(&home_with("capacity_ah = 100", "capacity_ah = 0x10")).unwrap();
    assert_eq!(
        hex.plan.node("soc").unwrap().params.float("capacity_ah"),
        Some(16.0)
    );
    check(
        &home_with("alpha = 0.2", "alpha = nan\nfoo = 1979-05-27"),
        &[
            "21:9: error: parameter `alpha` of `ewma` must be a number from 0 to 1, got nan",
            "22:1: error: unknown parameter `foo` of `ewma`; parameters of `ewma`: alpha",
        ],
    );
}

#[test]
fn duplicate_keys_and_tables_are_syntax_errors_naming_the_key() {
    check(
        "[graph]\nname = \"a\"\n[graph]\nname = \"b\"\n",
        &[
            "3:2: error: invalid TOML: duplicate key `graph`; each key and table may appear once",
            "4:1: error: invalid TOML: duplicate key `name`; each key and table may appear once",
        ],
    );
}

#[test]
fn a_bad_entry_does_not_cause_follow_up_errors() {
    // The number is reported; soc's arity is not, nor are inputs that read
    // from a node whose kind is unknown.
    check(
        &home_with(SOC_INPUTS, r#"inputs = ["battery.current", 3]"#)
            .replace(r#"kind = "ewma""#, r#"kind = "nope""#),
        &[
            "14:30: error: each input must be a channel name such as \"battery.soc\", got 3",
            "18:8: error: unknown vertex kind `nope`; known kinds: ewma, knobs, soc",
        ],
    );
}

#[test]
fn values_spanning_lines_are_shown_on_one() {
    check(
        &home_with("alpha = 0.2", "alpha = [\n  1,\n  2,\n]"),
        &["21:9: error: parameter `alpha` of `ewma` must be a number from 0 to 1, got [ 1, 2, ]"],
    );
    check(
        &home_with("[sinks.out]", "[sinks.\"o\\nut\"]"),
        &["23:8: error: `o\\nut` is not a valid node id: use lowercase letters, digits and `_`, starting with a letter"],
    );
}
