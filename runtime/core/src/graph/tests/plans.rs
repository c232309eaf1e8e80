//! Valid files: the plan they give.

use super::*;
use crate::graph::GraphSettings;
use crate::param::ParamValue;
use crate::plan::{EdgeSettings, Layout, Overflow};
use crate::record::ChannelId;

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

    // Chains: soc and smooth each read one producer, so they run where it
    // runs (the ingress worker); out merges three producers and starts its own.
    assert_eq!(
        workers(plan),
        [
            (
                "ingress".to_owned(),
                strings(&["battery", "meter", "soc", "smooth"])
            ),
            ("out".to_owned(), strings(&["out"])),
        ]
    );
    let block = Overflow::Block;
    assert_eq!(
        rings(plan),
        [
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
