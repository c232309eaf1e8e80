//! A [`Spec`] checked against the registry and turned into a [`Plan`]:
//! kinds, parameters, channels, inputs, arity, cycles and edge settings.
//! Every error is reported; a node whose kind or outputs are unknown does
//! not cause follow-up errors in the nodes that read from it.

use super::diag::{line_col, Report};
use super::kind_check::{self, Sound};
use super::params;
use super::spec::{got, noun, show_duration, NodeSpec, Sp, Span, Spec};
use super::suggest::{hint, list};
use super::{GraphSettings, HaSettings, Loaded};
use crate::channel::ChannelTable;
use crate::param::Params;
use crate::plan::{find_cycle, AssembleError, EdgeSettings, Layout, NodeDraft, Plan};
use crate::vertex::{KindSpec, Registry, Role};
use std::collections::{BTreeMap, BTreeSet};

/// A node being validated.
struct Node<'s, 'a, 'i> {
    spec: &'s NodeSpec<'a, 'i>,
    kind: Option<&'static KindSpec>,
    params: Params,
    /// Channel names and units, in the order of the kind's outputs.
    outputs: Vec<(String, &'static str)>,
    /// False when the kind or the outputs could not be determined.
    outputs_known: bool,
    /// Resolved inputs: producer node and channel name, in file order.
    inputs: Vec<(usize, String)>,
    /// False when some input could not be resolved.
    inputs_known: bool,
    /// False when an error was reported about its parameters or arity.
    params_known: bool,
}

impl<'s> Node<'s, '_, '_> {
    fn id(&self) -> &'s str {
        &self.spec.id.value
    }

    fn who(&self) -> String {
        format!("{} `{}`", noun(self.spec.role), self.id())
    }
}

/// Checks the spec; `None` when anything was reported.
pub(crate) fn validate(
    text: &str,
    spec: &Spec<'_, '_>,
    registry: &Registry,
    report: &mut Report,
) -> Option<Loaded> {
    let settings = GraphSettings {
        layout: spec.layout.unwrap_or(Layout::Chains),
        edge: EdgeSettings {
            capacity: spec.capacity.unwrap_or(crate::plan::DEFAULT_CAPACITY),
            overflow: spec.overflow.unwrap_or_default(),
        },
    };
    let mut nodes = unique_nodes(text, spec, report);
    if !nodes.iter().any(|n| n.spec.role == Role::Source) {
        report.at(
            &(0..0),
            "the graph has no sources; declare one such as [sources.battery] with a `kind`",
        );
    }
    for node in &mut nodes {
        node.kind = resolve_kind(node.spec, registry, report);
        if let Some(kind) = node.kind {
            check_node(text, node, kind, report);
        }
    }
    let by_id: BTreeMap<&str, usize> = nodes.iter().enumerate().map(|(i, n)| (n.id(), i)).collect();
    for i in 0..nodes.len() {
        let (inputs, known) = resolve_inputs(&nodes, i, &by_id, &spec.stray_ids, report);
        if let Some(node) = nodes.get_mut(i) {
            node.inputs = inputs;
            node.inputs_known = known;
        }
    }
    for node in &mut nodes {
        if !check_arity(node, report) {
            node.params_known = false;
        }
    }
    kind_check::check(&sound(&nodes), registry, report);
    let cyclic = report_cycles(&nodes, report);
    let edge_settings = edge_settings(text, spec, &nodes, &by_id, settings.edge, report);
    let mut ha = ha_settings(text, spec, report);
    let tolerances = tolerances(text, spec, &nodes, &by_id, report);
    if !report.is_empty() || cyclic {
        return None;
    }
    let plan = assemble(nodes, settings, &edge_settings, report)?;
    ha.tolerances = tolerances
        .into_iter()
        .filter_map(|(name, tolerance)| Some((plan.channels.get(name)?, tolerance)))
        .collect();
    Some(Loaded {
        plan,
        name: spec.name.clone().unwrap_or_else(|| "graph".to_owned()),
        settings,
        ha,
    })
}

/// Nodes with distinct ids, in file order; later duplicates are reported.
fn unique_nodes<'s, 'a, 'i>(
    text: &str,
    spec: &'s Spec<'a, 'i>,
    report: &mut Report,
) -> Vec<Node<'s, 'a, 'i>> {
    let mut seen: BTreeMap<&str, &NodeSpec<'_, '_>> = BTreeMap::new();
    let mut nodes = Vec::new();
    for node in &spec.nodes {
        if let Some(first) = seen.get(node.id.value.as_str()) {
            let (line, _) = line_col(text, first.id.span.start);
            report.at(
                &node.id.span,
                format!(
                    "duplicate node id `{}`: already declared as a {} on line {line}; ids are unique across [sources], [vertices] and [sinks]",
                    node.id.value,
                    noun(first.role)
                ),
            );
            continue;
        }
        seen.insert(&node.id.value, node);
        nodes.push(Node {
            spec: node,
            kind: None,
            params: Params::new(),
            outputs: Vec::new(),
            outputs_known: false,
            inputs: Vec::new(),
            inputs_known: false,
            params_known: false,
        });
    }
    nodes
}

fn resolve_kind(
    node: &NodeSpec<'_, '_>,
    registry: &Registry,
    report: &mut Report,
) -> Option<&'static KindSpec> {
    let role = node.role;
    let known = registry.names(role);
    let Some(name) = &node.kind else {
        if !node.has_kind {
            report.at(
                &node.id.span,
                format!(
                    "{} `{}` has no `kind`; known {} kinds: {}",
                    noun(role),
                    node.id.value,
                    noun(role),
                    list(known.iter().copied())
                ),
            );
        }
        return None;
    };
    let Some(latest) = registry.get(&name.value, None) else {
        report.at(
            &name.span,
            format!(
                "unknown {} kind `{}`{}",
                noun(role),
                name.value,
                hint(
                    &name.value,
                    known.iter().copied(),
                    &format!("known kinds: {}", list(known.iter().copied()))
                )
            ),
        );
        return None;
    };
    if latest.role() != role {
        report.at(
            &name.span,
            format!(
                "`{}` is a {} kind, declare it under [{}]",
                name.value,
                noun(latest.role()),
                latest.role().table()
            ),
        );
        return None;
    }
    let Some(version) = &node.version else {
        return Some(latest);
    };
    let kind = registry.get(&name.value, Some(version.value));
    if kind.is_none() {
        let versions: Vec<String> = registry
            .versions(&name.value)
            .iter()
            .map(u32::to_string)
            .collect();
        report.at(
            &version.span,
            format!(
                "{} kind `{}` has no version {}; known versions: {}",
                noun(role),
                name.value,
                version.value,
                list(versions.iter().map(String::as_str))
            ),
        );
    }
    kind
}

/// Parameters, outputs and the worker pin of a node whose kind is known.
fn check_node(
    text: &str,
    node: &mut Node<'_, '_, '_>,
    kind: &'static KindSpec,
    report: &mut Report,
) {
    let spec = node.spec;
    if let (Role::Source, Some(worker)) = (spec.role, &spec.worker) {
        report.at(
            &worker.span,
            format!(
                "source `{}` cannot be pinned to a worker: sources run on the ingress worker; remove `worker`",
                spec.id.value
            ),
        );
    }
    let before = report.len();
    let (params, names_span) = params::check(text, spec, kind, report);
    let id = &spec.id.value;
    let mut outputs: Vec<(String, &'static str)> = kind
        .outputs
        .iter()
        .map(|o| {
            let name = if o.suffix.is_empty() {
                id.clone()
            } else {
                format!("{id}.{}", o.suffix)
            };
            (name, o.unit)
        })
        .collect();
    let mut known = true;
    if let Some(from) = kind.outputs_from {
        match params.names(from) {
            Some(names) => {
                let mut taken: BTreeSet<String> = outputs.iter().map(|(c, _)| c.clone()).collect();
                for name in names {
                    let channel = format!("{id}.{name}");
                    if !taken.insert(channel.clone()) {
                        report.at(
                            names_span.as_ref().unwrap_or(&spec.id.span),
                            format!(
                                "parameter `{from}` of `{}` names `{name}`, which is already an output of `{}`; outputs: {}",
                                kind.name,
                                kind.name,
                                list(outputs.iter().map(|(c, _)| c.as_str()))
                            ),
                        );
                        known = false;
                    } else {
                        outputs.push((channel, ""));
                    }
                }
            }
            None => known = !spec.params.iter().any(|(k, _)| k.value == from),
        }
    }
    node.params = params;
    node.outputs = outputs;
    node.outputs_known = known;
    node.params_known = report.len() == before;
}

/// Resolves one node's inputs; the flag is false when some could not be.
fn resolve_inputs(
    nodes: &[Node<'_, '_, '_>],
    index: usize,
    by_id: &BTreeMap<&str, usize>,
    stray_ids: &BTreeSet<String>,
    report: &mut Report,
) -> (Vec<(usize, String)>, bool) {
    let Some(node) = nodes.get(index) else {
        return (Vec::new(), false);
    };
    let spec = node.spec;
    let inputs = match (&spec.inputs, spec.role) {
        (Some(inputs), Role::Source) => {
            report.at(
                &inputs.key,
                format!(
                    "source `{}` takes no inputs: sources read from devices; remove `inputs`",
                    spec.id.value
                ),
            );
            return (Vec::new(), true);
        }
        (None, Role::Source) => return (Vec::new(), true),
        (None, _) => {
            report.at(
                &spec.id.span,
                format!(
                    "{} has no inputs; add `inputs = [...]` naming the channels it reads{}",
                    node.who(),
                    reads(node.kind)
                ),
            );
            return (Vec::new(), false);
        }
        (Some(inputs), _) if inputs.items.is_empty() && inputs.complete => {
            report.at(
                &inputs.value,
                format!(
                    "{} has no inputs; name the channels it reads{}",
                    node.who(),
                    reads(node.kind)
                ),
            );
            return (Vec::new(), false);
        }
        (Some(inputs), _) => inputs,
    };
    let mut resolved: Vec<(usize, String)> = Vec::new();
    let mut read: BTreeSet<String> = BTreeSet::new();
    let mut known = inputs.complete;
    for item in &inputs.items {
        match resolve_input(nodes, node, item, by_id, stray_ids) {
            Ok(channels) => {
                for (producer, channel) in channels {
                    if !read.insert(channel.clone()) {
                        report.at(
                            &item.span,
                            format!("{} reads `{channel}` twice", node.who()),
                        );
                        known = false;
                    } else {
                        resolved.push((producer, channel));
                    }
                }
            }
            Err(Some(message)) => {
                report.at(&item.span, message);
                known = false;
            }
            Err(None) => known = false,
        }
    }
    (resolved, known)
}

/// `" (`soc` reads current, voltage)"` from a kind's input names, or `""`.
fn reads(kind: Option<&KindSpec>) -> String {
    match kind {
        Some(k) if !k.input_names.is_empty() => {
            format!(" (`{}` reads {})", k.name, k.input_names.join(", "))
        }
        _ => String::new(),
    }
}

/// One entry of `inputs`: the channels it names. `Err(None)` when the
/// producer's outputs are unknown (its own error is reported already).
fn resolve_input(
    nodes: &[Node<'_, '_, '_>],
    node: &Node<'_, '_, '_>,
    item: &Sp<String>,
    by_id: &BTreeMap<&str, usize>,
    stray_ids: &BTreeSet<String>,
) -> Result<Vec<(usize, String)>, Option<String>> {
    let name = item.value.as_str();
    let who = node.who();
    let (producer_id, rest) = match name.split_once('.') {
        Some((p, r)) => (p, Some(r)),
        None => (name, None),
    };
    let Some((&p, producer)) = by_id
        .get_key_value(producer_id)
        .and_then(|(_, p)| nodes.get(*p).map(|n| (p, n)))
    else {
        if stray_ids.contains(producer_id) {
            return Err(None);
        }
        let every: Vec<&str> = nodes
            .iter()
            .flat_map(|n| n.outputs.iter().map(|(c, _)| c.as_str()))
            .collect();
        let ids: Vec<&str> = nodes.iter().map(|n| n.id()).collect();
        let tail = format!("existing outputs: {}", list(every.iter().copied()));
        let near = if rest.is_some() && rest != Some("*") {
            hint(name, every.iter().copied(), &tail)
        } else {
            hint(producer_id, ids.iter().copied(), &tail)
        };
        return Err(Some(format!(
            "{who} has no input `{name}`: there is no node `{producer_id}`{near}"
        )));
    };
    if !producer.outputs_known {
        return Err(None);
    }
    let outputs: Vec<&str> = producer.outputs.iter().map(|(c, _)| c.as_str()).collect();
    if outputs.is_empty() {
        return Err(Some(format!(
            "{who} has no input `{name}`: `{producer_id}` is a {} and has no outputs",
            noun(producer.spec.role)
        )));
    }
    let all = || outputs.iter().map(|c| (p, (*c).to_owned())).collect();
    match rest {
        Some("*") => Ok(all()),
        None if outputs.contains(&name) => Ok(vec![(p, name.to_owned())]),
        None => Err(Some(format!(
            "{who} has no input `{name}`: `{producer_id}` has several outputs, name them: {} (or `{producer_id}.*` for all)",
            list(outputs.iter().copied())
        ))),
        Some(_) if outputs.contains(&name) => Ok(vec![(p, name.to_owned())]),
        Some(_) if outputs == [producer_id] => Err(Some(format!(
            "{who} has no input `{name}`: `{producer_id}` has one output, named `{producer_id}`"
        ))),
        Some(_) => Err(Some(format!(
            "{who} has no input `{name}`{}",
            hint(
                name,
                outputs.iter().copied(),
                &format!("existing outputs: {}", list(outputs.iter().copied()))
            )
        ))),
    }
}

/// Reports a node reading too few or too many inputs; false when it does.
fn check_arity(node: &Node<'_, '_, '_>, report: &mut Report) -> bool {
    let (Some(kind), Some(inputs)) = (node.kind, &node.spec.inputs) else {
        return true;
    };
    if node.spec.role == Role::Source || !node.inputs_known || node.inputs.is_empty() {
        return true;
    }
    let n = node.inputs.len();
    let arity = kind.arity;
    if n >= arity.min && n <= arity.max {
        return true;
    }
    let plural = |k: usize| if k == 1 { "input" } else { "inputs" };
    let takes = if arity.min == arity.max {
        format!("exactly {} {}", arity.min, plural(arity.min))
    } else if arity.max == usize::MAX {
        format!("at least {} {}", arity.min, plural(arity.min))
    } else {
        format!("{} to {} inputs", arity.min, arity.max)
    };
    let names = if kind.input_names.is_empty() {
        String::new()
    } else {
        format!(" ({})", kind.input_names.join(", "))
    };
    let got: Vec<&str> = node.inputs.iter().map(|(_, c)| c.as_str()).collect();
    report.at(
        &inputs.value,
        format!(
            "{} (kind `{}`) takes {takes}{names}, got {n}: {}",
            node.who(),
            kind.name,
            got.join(", ")
        ),
    );
    false
}

/// The nodes whose kind, parameters, inputs and outputs are all known and
/// valid: those their kind can check.
fn sound<'n, 'a, 'i>(nodes: &'n [Node<'_, 'a, 'i>]) -> Vec<Sound<'n, 'a, 'i>> {
    nodes
        .iter()
        .filter(|n| n.params_known && n.outputs_known && n.inputs_known)
        .filter_map(|n| {
            Some(Sound {
                spec: n.spec,
                kind: n.kind?,
                params: &n.params,
                inputs: n.inputs.iter().map(|(_, c)| c.as_str()).collect(),
                outputs: &n.outputs,
            })
        })
        .collect()
}

/// Reports each cycle among the nodes; true when there was one.
fn report_cycles(nodes: &[Node<'_, '_, '_>], report: &mut Report) -> bool {
    let mut succ: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    for (i, node) in nodes.iter().enumerate() {
        for &(p, _) in &node.inputs {
            if let Some(s) = succ.get_mut(p) {
                if !s.contains(&i) {
                    s.push(i);
                }
            }
        }
    }
    let mut found = false;
    while let Some(mut path) = find_cycle(&succ) {
        found = true;
        path.pop();
        let first = path
            .iter()
            .enumerate()
            .min_by_key(|(_, n)| **n)
            .map_or(0, |(i, _)| i);
        path.rotate_left(first);
        let Some(&start) = path.first() else { break };
        path.push(start);
        let ids: Vec<&str> = path
            .iter()
            .filter_map(|&i| nodes.get(i).map(|n| n.id()))
            .collect();
        let span = nodes
            .get(start)
            .and_then(|n| n.spec.inputs.as_ref())
            .map_or(0..0, |inputs| inputs.key.clone());
        report.at(&span, format!("cycle: {}", ids.join(" -> ")));
        // Take the cycle's nodes out so the next search finds another one.
        let members: BTreeSet<usize> = path.iter().copied().collect();
        for (i, s) in succ.iter_mut().enumerate() {
            if members.contains(&i) {
                s.clear();
            } else {
                s.retain(|t| !members.contains(t));
            }
        }
    }
    found
}

/// `[[edges]]` overrides by (producer id, consumer id), each for an existing edge.
fn edge_settings(
    text: &str,
    spec: &Spec<'_, '_>,
    nodes: &[Node<'_, '_, '_>],
    by_id: &BTreeMap<&str, usize>,
    default: EdgeSettings,
    report: &mut Report,
) -> BTreeMap<(String, String), EdgeSettings> {
    let mut out = BTreeMap::new();
    let mut first_at: BTreeMap<(String, String), Span> = BTreeMap::new();
    let ids: Vec<&str> = nodes.iter().map(|n| n.id()).collect();
    for edge in &spec.edges {
        let (Some(from), Some(to)) = (&edge.from, &edge.to) else {
            continue;
        };
        let mut ends = Vec::new();
        for end in [from, to] {
            match by_id.get(end.value.as_str()).and_then(|&i| nodes.get(i)) {
                Some(n) => ends.push(n),
                None if spec.stray_ids.contains(&end.value) => {}
                None => report.at(
                    &end.span,
                    format!(
                        "no node `{}`{}",
                        end.value,
                        hint(
                            &end.value,
                            ids.iter().copied(),
                            &format!("nodes: {}", list(ids.iter().copied()))
                        )
                    ),
                ),
            }
        }
        let [producer, consumer] = ends.as_slice() else {
            continue;
        };
        let p = by_id.get(producer.id()).copied();
        if !consumer.inputs.iter().any(|(q, _)| Some(*q) == p) {
            // When some input could not be resolved, the edge may be among them.
            if consumer.inputs_known && producer.outputs_known {
                let feeds: BTreeSet<&str> = nodes
                    .iter()
                    .filter(|n| n.inputs.iter().any(|(q, _)| Some(*q) == p))
                    .map(|n| n.id())
                    .collect();
                let to_span = to.span.clone();
                let (from, to) = (&from.value, &to.value);
                let message = format!(
                    "there is no edge from `{from}` to `{to}`: `{to}` does not read from `{from}`; `{from}` feeds: {}",
                    list(feeds.iter().copied())
                );
                report.at(&to_span, message);
            }
            continue;
        }
        let key = (from.value.clone(), to.value.clone());
        if let Some(first) = first_at.get(&key) {
            let (line, _) = line_col(text, first.start);
            report.at(
                &edge.header,
                format!(
                    "settings for the edge from `{}` to `{}` are given twice; the first is on line {line}",
                    from.value, to.value
                ),
            );
            continue;
        }
        first_at.insert(key.clone(), edge.header.clone());
        out.insert(
            key,
            EdgeSettings {
                capacity: edge.capacity.unwrap_or(default.capacity),
                overflow: edge.overflow.unwrap_or(default.overflow),
            },
        );
    }
    out
}

/// `[ha]` with defaults filled in, the timeout checked against the heartbeat;
/// tolerances are left to [`tolerances`].
fn ha_settings(text: &str, spec: &Spec<'_, '_>, report: &mut Report) -> HaSettings {
    let ha = &spec.ha;
    let default = HaSettings::default();
    let timeout = ha.timeout.as_ref().map_or(default.timeout, |t| t.value);
    let heartbeat = ha
        .heartbeat
        .as_ref()
        .map_or_else(|| HaSettings::heartbeat_for(timeout), |h| h.value);
    // A bad heartbeat is reported already; no timeout is checked against it.
    let heartbeat_known = ha.heartbeat.is_some() || !ha.has_heartbeat;
    let least = heartbeat.saturating_mul(3);
    if heartbeat_known && timeout < least {
        match (&ha.timeout, &ha.heartbeat) {
            (Some(t), _) => report.at(
                &t.span,
                format!(
                    "`timeout` must be at least 3 heartbeats, {} with `heartbeat` {}, got {}",
                    show_duration(least),
                    show_duration(heartbeat),
                    got(text, &t.span)
                ),
            ),
            (None, Some(h)) => report.at(
                &h.span,
                format!(
                    "`heartbeat` {} needs a `timeout` of at least 3 heartbeats ({}), longer than the default {}; set `timeout` in [ha] or shorten `heartbeat`",
                    show_duration(heartbeat),
                    show_duration(least),
                    show_duration(timeout)
                ),
            ),
            (None, None) => {}
        }
    }
    HaSettings {
        retention: ha.retention.unwrap_or(default.retention),
        heartbeat,
        timeout,
        tolerances: Vec::new(),
        supervise: ha.supervise.unwrap_or(default.supervise),
        max_mismatch: ha.max_mismatch.unwrap_or(default.max_mismatch),
    }
}

/// `[ha.tolerance]` entries whose names are channels of the graph, each once.
/// A name whose node has unknown outputs is left out silently: that node's
/// own error is reported already.
fn tolerances<'s>(
    text: &str,
    spec: &'s Spec<'_, '_>,
    nodes: &[Node<'_, '_, '_>],
    by_id: &BTreeMap<&str, usize>,
    report: &mut Report,
) -> Vec<(&'s str, f64)> {
    let channels: Vec<&str> = nodes
        .iter()
        .flat_map(|n| n.outputs.iter().map(|(c, _)| c.as_str()))
        .collect();
    let mut first_at: BTreeMap<&str, &Span> = BTreeMap::new();
    let mut out = Vec::new();
    for (name, tolerance) in &spec.ha.tolerances {
        let channel = name.value.as_str();
        if let Some(first) = first_at.get(channel) {
            let (line, _) = line_col(text, first.start);
            report.at(
                &name.span,
                format!("the tolerance of `{channel}` is given twice; the first is on line {line}"),
            );
            continue;
        }
        first_at.insert(channel, &name.span);
        if channels.contains(&channel) {
            out.push((channel, *tolerance));
            continue;
        }
        let producer = channel.split('.').next().unwrap_or(channel);
        let unknown = match by_id.get(producer).and_then(|&i| nodes.get(i)) {
            Some(node) => !node.outputs_known,
            None => spec.stray_ids.contains(producer),
        };
        if !unknown {
            report.at(
                &name.span,
                format!(
                    "[ha.tolerance] names `{channel}`, which is not a channel of the graph{}",
                    hint(
                        channel,
                        channels.iter().copied(),
                        &format!("channels: {}", list(channels.iter().copied()))
                    )
                ),
            );
        }
    }
    out
}

/// Interns channels, builds drafts and hands them to [`Plan::assemble`].
fn assemble(
    nodes: Vec<Node<'_, '_, '_>>,
    settings: GraphSettings,
    edge_settings: &BTreeMap<(String, String), EdgeSettings>,
    report: &mut Report,
) -> Option<Plan> {
    let mut channels = ChannelTable::new();
    for node in &nodes {
        for (name, unit) in &node.outputs {
            channels.intern(name, unit);
        }
    }
    let specs: Vec<&NodeSpec<'_, '_>> = nodes.iter().map(|n| n.spec).collect();
    let mut drafts = Vec::with_capacity(nodes.len());
    for node in nodes {
        let kind = node.kind?;
        drafts.push(NodeDraft {
            id: node.id().to_owned(),
            kind,
            params: node.params,
            inputs: node
                .inputs
                .iter()
                .filter_map(|(_, c)| channels.get(c))
                .collect(),
            outputs: node
                .outputs
                .iter()
                .filter_map(|(c, _)| channels.get(c))
                .collect(),
            worker: node.spec.worker.as_ref().map(|w| w.value.clone()),
        });
    }
    match Plan::assemble(
        channels,
        drafts,
        settings.edge,
        edge_settings,
        settings.layout,
    ) {
        Ok(plan) => Some(plan),
        Err(e) => {
            let span = match &e {
                AssembleError::Cycle(path) => path
                    .first()
                    .and_then(|id| specs.iter().find(|n| n.id.value == *id))
                    .and_then(|n| n.inputs.as_ref().map(|i| i.key.clone())),
                AssembleError::WorkerCycle(path) => path
                    .first()
                    .and_then(|w| {
                        specs
                            .iter()
                            .find_map(|n| n.worker.as_ref().filter(|pin| pin.value == *w))
                    })
                    .map(|pin| pin.span.clone()),
            };
            report.at(&span.unwrap_or(0..0), e.to_string());
            None
        }
    }
}
