//! The Plan: a validated, immutable graph in topological order, its nodes
//! grouped into workers and the rings between them.

use crate::channel::ChannelTable;
use crate::param::Params;
use crate::record::ChannelId;
use crate::vertex::{KindSpec, Role};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// What a producer does when the ring to a slower consumer is full.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Overflow {
    /// Wait for room (nothing is lost; upstream slows down).
    #[default]
    Block,
    /// Keep the newest records: drop the oldest ones still waiting.
    DropOldest,
    /// Keep what is queued: drop the records that do not fit.
    DropNewest,
}

impl Overflow {
    /// Names as written in graph files.
    pub const NAMES: [&'static str; 3] = ["block", "drop_oldest", "drop_newest"];

    /// Parses a graph-file name.
    pub fn parse(name: &str) -> Option<Overflow> {
        match name {
            "block" => Some(Overflow::Block),
            "drop_oldest" => Some(Overflow::DropOldest),
            "drop_newest" => Some(Overflow::DropNewest),
            _ => None,
        }
    }

    /// The graph-file name.
    pub fn name(self) -> &'static str {
        match self {
            Overflow::Block => "block",
            Overflow::DropOldest => "drop_oldest",
            Overflow::DropNewest => "drop_newest",
        }
    }
}

/// How nodes are grouped onto worker threads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Layout {
    /// Every node on one worker.
    Single,
    /// A node with one producer runs on its producer's worker; a node merging
    /// several producers starts its own. `worker = "name"` pins are honoured.
    #[default]
    Chains,
    /// Every vertex and sink on a worker of its own; sources share the ingress worker.
    Spread,
}

impl Layout {
    /// Names as written on the command line and in graph files.
    pub const NAMES: [&'static str; 3] = ["single", "chains", "spread"];

    /// Parses a name.
    pub fn parse(name: &str) -> Option<Layout> {
        match name {
            "single" => Some(Layout::Single),
            "chains" => Some(Layout::Chains),
            "spread" => Some(Layout::Spread),
            _ => None,
        }
    }

    /// The name.
    pub fn name(self) -> &'static str {
        match self {
            Layout::Single => "single",
            Layout::Chains => "chains",
            Layout::Spread => "spread",
        }
    }
}

/// Default capacity of a ring between workers, in records.
pub const DEFAULT_CAPACITY: usize = 4096;

/// Ring settings of one edge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EdgeSettings {
    /// Capacity in records.
    pub capacity: usize,
    /// Policy when full.
    pub overflow: Overflow,
}

impl Default for EdgeSettings {
    fn default() -> Self {
        EdgeSettings {
            capacity: DEFAULT_CAPACITY,
            overflow: Overflow::Block,
        }
    }
}

/// A node as validation hands it to [`Plan::assemble`].
#[derive(Clone, Debug)]
pub struct NodeDraft {
    /// Id in the graph file.
    pub id: String,
    /// Its kind and version.
    pub kind: &'static KindSpec,
    /// Validated parameters.
    pub params: Params,
    /// Channels consumed, in file order.
    pub inputs: Vec<ChannelId>,
    /// Channels produced, in the order of the kind's outputs.
    pub outputs: Vec<ChannelId>,
    /// A `worker = "name"` pin, if any.
    pub worker: Option<String>,
}

/// A node of the plan.
#[derive(Clone, Debug)]
pub struct PlanNode {
    /// Id in the graph file.
    pub id: String,
    /// Its kind and version.
    pub kind: &'static KindSpec,
    /// Validated parameters.
    pub params: Params,
    /// Channels consumed, in file order.
    pub inputs: Vec<ChannelId>,
    /// Channels produced.
    pub outputs: Vec<ChannelId>,
    /// The worker it runs on.
    pub worker: usize,
    /// The `worker = "name"` pin it was given, if any.
    pub pin: Option<String>,
    /// Edges into it, by index into [`Plan::edges`].
    pub in_edges: Vec<usize>,
    /// Edges out of it.
    pub out_edges: Vec<usize>,
}

impl PlanNode {
    /// Source, vertex or sink.
    pub fn role(&self) -> Role {
        self.kind.role()
    }
}

/// A connection from one node's outputs to another node's inputs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanEdge {
    /// Producing node (index into [`Plan::nodes`]).
    pub from: usize,
    /// Consuming node.
    pub to: usize,
    /// The channels that flow along it.
    pub channels: Vec<ChannelId>,
    /// Ring settings (used when the edge crosses workers).
    pub settings: EdgeSettings,
    /// True when both ends run on the same worker: no ring, a local buffer.
    pub fused: bool,
}

/// One worker thread and the nodes it runs, in topological order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanWorker {
    /// A name for stats and thread names.
    pub name: String,
    /// Indices into [`Plan::nodes`].
    pub nodes: Vec<usize>,
}

/// Why drafts could not be assembled into a plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AssembleError {
    /// The nodes form a cycle (ids along it, first repeated at the end).
    Cycle(Vec<String>),
    /// `worker` pins make two workers feed each other.
    WorkerCycle(Vec<String>),
}

impl fmt::Display for AssembleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AssembleError::Cycle(path) => write!(f, "cycle: {}", path.join(" -> ")),
            AssembleError::WorkerCycle(path) => write!(
                f,
                "worker pins make workers feed each other: {}; pin these nodes to one worker or remove the pins",
                path.join(" -> ")
            ),
        }
    }
}

/// A validated graph, ready to run. Immutable; [`Plan::relayout`] gives a new one.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Interned channels.
    pub channels: Arc<ChannelTable>,
    /// Nodes in topological order: sources first.
    pub nodes: Vec<PlanNode>,
    /// Edges, ordered by consumer then producer.
    pub edges: Vec<PlanEdge>,
    /// Workers; worker 0 is the ingress and holds every source.
    pub workers: Vec<PlanWorker>,
    /// The layout the workers were formed with.
    pub layout: Layout,
}

impl Plan {
    /// Orders drafts topologically, derives edges from channels, and groups
    /// nodes into workers. Validation has already checked that every input
    /// channel has exactly one producer.
    ///
    /// `edge_settings` overrides ring settings per (producer id, consumer id).
    pub fn assemble(
        channels: ChannelTable,
        drafts: Vec<NodeDraft>,
        default_edge: EdgeSettings,
        edge_settings: &BTreeMap<(String, String), EdgeSettings>,
        layout: Layout,
    ) -> Result<Plan, AssembleError> {
        let order = topological_order(&drafts)?;
        let mut position = vec![0; drafts.len()];
        for (pos, &draft) in order.iter().enumerate() {
            position[draft] = pos;
        }
        let mut drafts: Vec<Option<NodeDraft>> = drafts.into_iter().map(Some).collect();
        let mut nodes: Vec<PlanNode> = Vec::with_capacity(order.len());
        for &index in &order {
            let Some(d) = drafts[index].take() else {
                continue;
            };
            nodes.push(PlanNode {
                id: d.id,
                kind: d.kind,
                params: d.params,
                inputs: d.inputs,
                outputs: d.outputs,
                worker: 0,
                pin: d.worker,
                in_edges: Vec::new(),
                out_edges: Vec::new(),
            });
        }

        let mut producer: BTreeMap<ChannelId, usize> = BTreeMap::new();
        for (i, node) in nodes.iter().enumerate() {
            for &c in &node.outputs {
                producer.insert(c, i);
            }
        }
        let mut edges = Vec::new();
        for (to, node) in nodes.iter().enumerate() {
            let mut by_producer: BTreeMap<usize, Vec<ChannelId>> = BTreeMap::new();
            for &c in &node.inputs {
                if let Some(&from) = producer.get(&c) {
                    let chans = by_producer.entry(from).or_default();
                    if !chans.contains(&c) {
                        chans.push(c);
                    }
                }
            }
            for (from, channels) in by_producer {
                let key = (nodes[from].id.clone(), node.id.clone());
                let settings = edge_settings.get(&key).copied().unwrap_or(default_edge);
                edges.push(PlanEdge {
                    from,
                    to,
                    channels,
                    settings,
                    fused: false,
                });
            }
        }
        for (e, edge) in edges.iter().enumerate() {
            nodes[edge.from].out_edges.push(e);
            nodes[edge.to].in_edges.push(e);
        }
        let mut plan = Plan {
            channels: Arc::new(channels),
            nodes,
            edges,
            workers: Vec::new(),
            layout,
        };
        plan.assign_workers(layout)?;
        Ok(plan)
    }

    /// The same graph grouped onto workers another way.
    pub fn relayout(&self, layout: Layout) -> Result<Plan, AssembleError> {
        let mut plan = self.clone();
        plan.assign_workers(layout)?;
        Ok(plan)
    }

    /// The node with this id.
    pub fn node(&self, id: &str) -> Option<&PlanNode> {
        self.nodes.iter().find(|n| n.id == id)
    }

    fn assign_workers(&mut self, layout: Layout) -> Result<(), AssembleError> {
        let mut names: Vec<String> = vec!["ingress".to_owned()];
        let mut pinned: BTreeMap<String, usize> = BTreeMap::new();
        for i in 0..self.nodes.len() {
            let node = &self.nodes[i];
            let worker = if node.role() == Role::Source || layout == Layout::Single {
                0
            } else if layout == Layout::Spread {
                names.push(node.id.clone());
                names.len() - 1
            } else if let Some(pin) = &node.pin {
                match pinned.get(pin) {
                    Some(&w) => w,
                    None => {
                        names.push(pin.clone());
                        pinned.insert(pin.clone(), names.len() - 1);
                        names.len() - 1
                    }
                }
            } else {
                // A node fed by one producer runs where that producer runs;
                // a node merging several producers starts a worker of its own.
                let chained = match node.in_edges.as_slice() {
                    [e] => Some(self.nodes[self.edges[*e].from].worker),
                    _ => None,
                };
                chained.unwrap_or_else(|| {
                    names.push(node.id.clone());
                    names.len() - 1
                })
            };
            self.nodes[i].worker = worker;
        }
        self.workers = names
            .into_iter()
            .map(|name| PlanWorker {
                name,
                nodes: Vec::new(),
            })
            .collect();
        for (i, node) in self.nodes.iter().enumerate() {
            self.workers[node.worker].nodes.push(i);
        }
        for edge in &mut self.edges {
            edge.fused = self.nodes[edge.from].worker == self.nodes[edge.to].worker;
        }
        self.layout = layout;
        self.check_workers_acyclic()
    }

    fn check_workers_acyclic(&self) -> Result<(), AssembleError> {
        let n = self.workers.len();
        let mut succ: Vec<Vec<usize>> = vec![Vec::new(); n];
        for edge in self.edges.iter().filter(|e| !e.fused) {
            let (a, b) = (self.nodes[edge.from].worker, self.nodes[edge.to].worker);
            if !succ[a].contains(&b) {
                succ[a].push(b);
            }
        }
        match find_cycle(&succ) {
            Some(cycle) => Err(AssembleError::WorkerCycle(
                cycle
                    .into_iter()
                    .map(|w| self.workers[w].name.clone())
                    .collect(),
            )),
            None => Ok(()),
        }
    }

    /// Number of edges that cross workers and so are rings.
    pub fn ring_count(&self) -> usize {
        self.edges.iter().filter(|e| !e.fused).count()
    }
}

/// Kahn's algorithm; ties go to the node declared first, so the order is stable.
fn topological_order(drafts: &[NodeDraft]) -> Result<Vec<usize>, AssembleError> {
    let mut producer: BTreeMap<ChannelId, usize> = BTreeMap::new();
    for (i, d) in drafts.iter().enumerate() {
        for &c in &d.outputs {
            producer.insert(c, i);
        }
    }
    let mut succ: Vec<Vec<usize>> = vec![Vec::new(); drafts.len()];
    let mut indegree = vec![0usize; drafts.len()];
    for (i, d) in drafts.iter().enumerate() {
        let mut ups: Vec<usize> = d
            .inputs
            .iter()
            .filter_map(|c| producer.get(c).copied())
            .collect();
        ups.sort_unstable();
        ups.dedup();
        for up in ups {
            succ[up].push(i);
            indegree[i] += 1;
        }
    }
    // Sources first, then everything else, each in declaration order.
    let rank = |i: usize| (drafts[i].kind.role() != Role::Source, i);
    let mut ready: std::collections::BTreeSet<(bool, usize)> = (0..drafts.len())
        .filter(|&i| indegree[i] == 0)
        .map(rank)
        .collect();
    let mut order = Vec::with_capacity(drafts.len());
    while let Some(first) = ready.pop_first() {
        let i = first.1;
        order.push(i);
        for &s in &succ[i] {
            indegree[s] -= 1;
            if indegree[s] == 0 {
                ready.insert(rank(s));
            }
        }
    }
    if order.len() == drafts.len() {
        return Ok(order);
    }
    let cycle = find_cycle(&succ).unwrap_or_default();
    Err(AssembleError::Cycle(
        cycle.into_iter().map(|i| drafts[i].id.clone()).collect(),
    ))
}

/// A cycle in a directed graph, as a path whose last element repeats the first.
pub fn find_cycle(succ: &[Vec<usize>]) -> Option<Vec<usize>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    let mut mark = vec![Mark::New; succ.len()];
    for start in 0..succ.len() {
        if mark[start] != Mark::New {
            continue;
        }
        // Iterative DFS: (node, next successor to visit).
        let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
        mark[start] = Mark::Open;
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            if let Some(&s) = succ[node].get(*next) {
                *next += 1;
                match mark[s] {
                    Mark::New => {
                        mark[s] = Mark::Open;
                        stack.push((s, 0));
                    }
                    Mark::Open => {
                        let from = stack.iter().position(|&(n, _)| n == s).unwrap_or(0);
                        let mut path: Vec<usize> = stack[from..].iter().map(|&(n, _)| n).collect();
                        path.push(s);
                        return Some(path);
                    }
                    Mark::Done => {}
                }
            } else {
                mark[node] = Mark::Done;
                stack.pop();
            }
        }
    }
    None
}

impl fmt::Display for Plan {
    /// The plan as `tandem check` prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "plan: {} sources, {} vertices, {} sinks, {} channels, layout {}",
            self.nodes
                .iter()
                .filter(|n| n.role() == Role::Source)
                .count(),
            self.nodes
                .iter()
                .filter(|n| n.role() == Role::Vertex)
                .count(),
            self.nodes.iter().filter(|n| n.role() == Role::Sink).count(),
            self.channels.len(),
            self.layout.name()
        )?;
        for (w, worker) in self.workers.iter().enumerate() {
            writeln!(f, "worker {w} ({}):", worker.name)?;
            for &i in &worker.nodes {
                let node = &self.nodes[i];
                let role = match node.role() {
                    Role::Source => "source",
                    Role::Vertex => "vertex",
                    Role::Sink => "sink",
                };
                write!(
                    f,
                    "  {role:<6} {} ({} v{})",
                    node.id, node.kind.name, node.kind.version
                )?;
                if !node.inputs.is_empty() {
                    let ins: Vec<&str> =
                        node.inputs.iter().map(|&c| self.channels.name(c)).collect();
                    write!(f, " <- {}", ins.join(", "))?;
                }
                if !node.outputs.is_empty() {
                    let outs: Vec<&str> = node
                        .outputs
                        .iter()
                        .map(|&c| self.channels.name(c))
                        .collect();
                    write!(f, " -> {}", outs.join(", "))?;
                }
                writeln!(f)?;
            }
        }
        let rings: Vec<&PlanEdge> = self.edges.iter().filter(|e| !e.fused).collect();
        if rings.is_empty() {
            writeln!(f, "rings: none (everything fused)")?;
        } else {
            writeln!(f, "rings:")?;
            for edge in rings {
                let (from, to) = (&self.nodes[edge.from], &self.nodes[edge.to]);
                writeln!(
                    f,
                    "  {} (worker {}) -> {} (worker {}): capacity {}, overflow {}",
                    from.id,
                    from.worker,
                    to.id,
                    to.worker,
                    edge.settings.capacity,
                    edge.settings.overflow.name()
                )?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_cycle_returns_the_path() {
        let succ = vec![vec![1], vec![2], vec![0], vec![]];
        assert_eq!(find_cycle(&succ), Some(vec![0, 1, 2, 0]));
        let dag = vec![vec![1, 2], vec![3], vec![3], vec![]];
        assert_eq!(find_cycle(&dag), None);
    }
}
