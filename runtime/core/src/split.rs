//! A plan cut in three for `tandem up` (see ARCHITECTURE, "1+1: instances and
//! junctions"): the agent runs the sources and the sinks, each instance runs
//! the vertices, and junctions join the parts.
//!
//! - **ingress** (agent): every source, and a [`JUNCTION`] sink taking every
//!   source channel that something reads: the upstream junction's input.
//! - **instance** (blue and green): a [`RELAY`] source replaying those
//!   channels with their origin sequence numbers, every vertex, and a
//!   [`JUNCTION`] sink taking every channel a sink reads: the instance's
//!   output toward the downstream junction.
//! - **egress** (agent): a [`RELAY`] source of the merged output, and every sink.
//!
//! A sink that reads a source channel directly gets it through the
//! instances too, so that every record reaching a sink has passed the
//! downstream junction once. Channel ids are the same in all three plans.

use crate::plan::{AssembleError, EdgeSettings, Layout, NodeDraft, Plan};
use crate::vertex::{Arity, BuildError, Builder, KindSpec, Role};
use crate::{ChannelId, Params};
use core::fmt;
use std::collections::{BTreeMap, BTreeSet};

/// Id of the junction sink of the ingress part.
pub const TO_INSTANCES: &str = "ha.to_instances";
/// Id of the relay source of the instance part.
pub const FROM_AGENT: &str = "ha.from_agent";
/// Id of the junction sink of the instance part.
pub const TO_AGENT: &str = "ha.to_agent";
/// Id of the relay source of the egress part.
pub const FROM_INSTANCES: &str = "ha.from_instances";

/// The kind of the relay sources; the runtime attaches them.
pub static RELAY: KindSpec = KindSpec {
    name: "ha.relay",
    version: 1,
    doc: "records from the other side of a junction, with their origin sequence numbers",
    input_names: &[],
    arity: Arity::NONE,
    outputs: &[],
    outputs_from: None,
    params: &[],
    state_schema: None,
    migrations: &[],
    build: Builder::Source(|ctx| Err(attached_only(ctx.id))),
};

/// The kind of the junction sinks; the runtime attaches them.
pub static JUNCTION: KindSpec = KindSpec {
    name: "ha.junction",
    version: 1,
    doc: "records toward the other side of a junction",
    input_names: &[],
    arity: Arity::at_least(1),
    outputs: &[],
    outputs_from: None,
    params: &[],
    state_schema: None,
    migrations: &[],
    build: Builder::Sink(|ctx| Err(attached_only(ctx.id))),
};

fn attached_only(id: &str) -> BuildError {
    BuildError::new(format!(
        "`{id}` is a junction end of `tandem up`; only the runtime builds it"
    ))
}

/// The three parts of a plan.
#[derive(Clone, Debug)]
pub struct Split {
    /// Sources and the upstream junction's input (agent).
    pub ingress: Plan,
    /// Vertices between a relay and a junction sink (each instance).
    pub instance: Plan,
    /// The merged output's relay and the sinks (agent).
    pub egress: Plan,
    /// Channels sent from the agent to the instances, ascending.
    pub inputs: Vec<ChannelId>,
    /// Channels sent from the instances to the agent, ascending.
    pub outputs: Vec<ChannelId>,
}

/// Why a plan cannot run as 1+1.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SplitError {
    /// No source channel is read by anything: the instances would get no input.
    NoInput,
    /// No sink reads anything: nothing would leave the instances.
    NoSinks,
    /// A part could not be assembled.
    Assemble(AssembleError),
}

impl fmt::Display for SplitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SplitError::NoInput => f.write_str(
                "no vertex or sink reads a source channel; `tandem up` needs input for the instances",
            ),
            SplitError::NoSinks => f.write_str(
                "the graph has no sink; `tandem up` needs one, such as [sinks.out] with kind = \"stdout\"",
            ),
            SplitError::Assemble(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for SplitError {}

/// Cuts `plan` in three. The instance part keeps the plan's layout; the
/// agent's parts run on one worker each.
pub fn split(plan: &Plan) -> Result<Split, SplitError> {
    let role = |i: usize| plan.nodes[i].role();
    let mut inputs = BTreeSet::new();
    let mut outputs = BTreeSet::new();
    for edge in &plan.edges {
        if role(edge.from) == Role::Source {
            inputs.extend(edge.channels.iter().copied());
        }
        if role(edge.to) == Role::Sink {
            outputs.extend(edge.channels.iter().copied());
        }
    }
    if inputs.is_empty() {
        return Err(SplitError::NoInput);
    }
    if outputs.is_empty() {
        return Err(SplitError::NoSinks);
    }
    let inputs: Vec<ChannelId> = inputs.into_iter().collect();
    let outputs: Vec<ChannelId> = outputs.into_iter().collect();
    let settings = edge_settings(plan);
    let default_edge = EdgeSettings::default();

    let kept = |r: Role, pinned: bool| {
        plan.nodes
            .iter()
            .filter(move |n| n.role() == r)
            .map(move |n| NodeDraft {
                id: n.id.clone(),
                kind: n.kind,
                params: n.params.clone(),
                inputs: n.inputs.clone(),
                outputs: n.outputs.clone(),
                worker: n.pin.clone().filter(|_| pinned),
            })
    };
    let relay = |id: &str, outputs: &[ChannelId]| NodeDraft {
        id: id.to_owned(),
        kind: &RELAY,
        params: Params::new(),
        inputs: Vec::new(),
        outputs: outputs.to_vec(),
        worker: None,
    };
    let junction = |id: &str, inputs: &[ChannelId]| NodeDraft {
        id: id.to_owned(),
        kind: &JUNCTION,
        params: Params::new(),
        inputs: inputs.to_vec(),
        outputs: Vec::new(),
        worker: None,
    };
    let assemble = |drafts: Vec<NodeDraft>, layout: Layout| {
        Plan::assemble(
            (*plan.channels).clone(),
            drafts,
            default_edge,
            &settings,
            layout,
        )
        .map_err(SplitError::Assemble)
    };

    let ingress = assemble(
        kept(Role::Source, false)
            .chain([junction(TO_INSTANCES, &inputs)])
            .collect(),
        Layout::Single,
    )?;
    let instance = assemble(
        [relay(FROM_AGENT, &inputs)]
            .into_iter()
            .chain(kept(Role::Vertex, true))
            .chain([junction(TO_AGENT, &outputs)])
            .collect(),
        plan.layout,
    )?;
    let egress = assemble(
        [relay(FROM_INSTANCES, &outputs)]
            .into_iter()
            .chain(kept(Role::Sink, false))
            .collect(),
        Layout::Single,
    )?;
    Ok(Split {
        ingress,
        instance,
        egress,
        inputs,
        outputs,
    })
}

/// The plan's ring settings by (producer id, consumer id), so the instance
/// part keeps the `[[edges]]` overrides between its vertices.
fn edge_settings(plan: &Plan) -> BTreeMap<(String, String), EdgeSettings> {
    plan.edges
        .iter()
        .map(|e| {
            (
                (plan.nodes[e.from].id.clone(), plan.nodes[e.to].id.clone()),
                e.settings,
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::graph;
    use crate::vertex::Registry;

    static SOURCE: KindSpec = KindSpec {
        name: "t.source",
        version: 1,
        doc: "",
        input_names: &[],
        arity: Arity::NONE,
        outputs: &[
            crate::vertex::OutputSpec::named("a", ""),
            crate::vertex::OutputSpec::named("b", ""),
        ],
        outputs_from: None,
        params: &[],
        state_schema: None,
        migrations: &[],
        build: Builder::Source(|_| Err(BuildError::new("test"))),
    };
    static VERTEX: KindSpec = KindSpec {
        name: "t.vertex",
        version: 1,
        doc: "",
        input_names: &[],
        arity: Arity::at_least(1),
        outputs: &[crate::vertex::OutputSpec::main("")],
        outputs_from: None,
        params: &[],
        state_schema: None,
        migrations: &[],
        build: Builder::Vertex(crate::vertex::idle),
    };
    static SINK: KindSpec = KindSpec {
        name: "t.sink",
        version: 1,
        doc: "",
        input_names: &[],
        arity: Arity::at_least(1),
        outputs: &[],
        outputs_from: None,
        params: &[],
        state_schema: None,
        migrations: &[],
        build: Builder::Sink(|_| Err(BuildError::new("test"))),
    };

    fn load(text: &str) -> Plan {
        let mut registry = Registry::new();
        registry.register(&[&SOURCE, &VERTEX, &SINK]);
        graph::load("t.toml", text.as_bytes(), &registry)
            .unwrap()
            .plan
    }

    fn ids(plan: &Plan) -> Vec<&str> {
        plan.nodes.iter().map(|n| n.id.as_str()).collect()
    }

    fn names(plan: &Plan, channels: &[ChannelId]) -> Vec<String> {
        channels
            .iter()
            .map(|&c| plan.channels.name(c).to_owned())
            .collect()
    }

    const GRAPH: &str = r#"
[sources.s]
kind = "t.source"
[vertices.v]
kind = "t.vertex"
inputs = ["s.a"]
worker = "w1"
[vertices.w]
kind = "t.vertex"
inputs = ["v"]
[sinks.out]
kind = "t.sink"
inputs = ["w", "s.b"]
[[edges]]
from = "v"
to = "w"
capacity = 256
"#;

    #[test]
    fn sources_and_sinks_stay_with_the_agent_and_vertices_go_to_the_instances() {
        let plan = load(GRAPH);
        let split = split(&plan).unwrap();
        assert_eq!(ids(&split.ingress), ["s", TO_INSTANCES]);
        assert_eq!(ids(&split.instance), [FROM_AGENT, "v", "w", TO_AGENT]);
        assert_eq!(ids(&split.egress), [FROM_INSTANCES, "out"]);
        // `s.b` goes straight to a sink, so it crosses the instances too.
        assert_eq!(names(&plan, &split.inputs), ["s.a", "s.b"]);
        assert_eq!(names(&plan, &split.outputs), ["s.b", "w"]);
        assert_eq!(split.ingress.workers.len(), 1);
        assert_eq!(split.egress.workers.len(), 1);
    }

    #[test]
    fn the_instance_part_keeps_pins_and_ring_overrides() {
        let split = split(&load(GRAPH)).unwrap();
        let instance = &split.instance;
        let v = instance.nodes.iter().position(|n| n.id == "v").unwrap();
        assert_eq!(instance.workers[instance.nodes[v].worker].name, "w1");
        let edge = instance
            .edges
            .iter()
            .find(|e| instance.nodes[e.from].id == "v" && instance.nodes[e.to].id == "w")
            .unwrap();
        assert_eq!(edge.settings.capacity, 256);
        // The channel table is shared: ids mean the same in every part.
        assert_eq!(*instance.channels, *split.egress.channels);
    }

    #[test]
    fn a_graph_without_sinks_cannot_run_as_one_plus_one() {
        let plan = load(
            "[sources.s]\nkind = \"t.source\"\n[vertices.v]\nkind = \"t.vertex\"\ninputs = [\"s.a\"]\n",
        );
        let err = split(&plan).unwrap_err();
        assert_eq!(err, SplitError::NoSinks);
        assert!(err.to_string().contains("[sinks.out]"));
    }
}
