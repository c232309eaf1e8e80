//! What a graph is made of: vertices (pure operators), sources and sinks, and
//! the kinds that build them from validated parameters.

use crate::channel::ChannelTable;
use crate::param::{ParamSpec, Params};
use crate::record::{ChannelId, EventTime, Record, Seq};
use crate::state::{SchemaId, Snapshot, SnapshotError};
use core::task::Waker;
use std::sync::Arc;
use thiserror::Error;

/// A processing step. Pure and deterministic: no clock, no randomness, no I/O.
///
/// `process` receives the vertex's input records in origin-sequence order
/// (several inputs already merged) and appends its output to `out`. Its output
/// must depend only on the sequence of records it has seen, never on how that
/// sequence was cut into calls: the executor batches differently on different
/// worker layouts, and all instances must agree bit for bit.
///
/// An output record carries the `seq` of the input record that caused it, so
/// output sequence numbers never fall below the input being processed (the
/// frontier already sent downstream would otherwise be broken).
pub trait Vertex: Send {
    /// Consumes `input`, appending output records to `out`.
    fn process(&mut self, input: &[Record], out: &mut Vec<Record>);

    /// The vertex's state, or `None` for a stateless vertex.
    fn snapshot(&self) -> Option<Snapshot> {
        None
    }

    /// Replaces the state with a snapshot taken by a vertex of the same kind.
    /// On error the vertex's state is left as it was.
    fn restore(&mut self, snapshot: &Snapshot) -> Result<(), SnapshotError> {
        let _ = snapshot;
        Err(SnapshotError::Stateless)
    }
}

/// Where records enter a graph: a device poller, a generator, a file replay.
///
/// Sources run at ingress, which stamps origin sequence numbers on what they
/// return; a source leaves `seq` at zero.
pub trait Source: Send {
    /// Reads at ingress time `now`, appending records. Returns the ingress
    /// time at which to be polled next, or `None` once exhausted.
    fn poll(&mut self, now: EventTime, out: &mut Vec<Record>) -> Option<EventTime>;

    /// Errors counted so far (bus errors, timeouts); polling goes on regardless.
    fn errors(&self) -> u64 {
        0
    }

    /// For a source that relays records already carrying origin sequence
    /// numbers (the instance side of a junction): the frontier of what it has
    /// delivered so far. The ingress then keeps the records' `seq` and takes
    /// this as its frontier instead of stamping. `None` (the default) for
    /// sources that read devices.
    fn relayed_frontier(&self) -> Option<Seq> {
        None
    }

    /// Called once before the first poll with a waker that makes the ingress
    /// poll again at once. Sources fed from another thread call it when data
    /// arrives, so the ingress need not poll them on a timer.
    fn set_waker(&mut self, waker: Waker) {
        let _ = waker;
    }
}

/// Where records leave a graph.
pub trait Sink: Send {
    /// Writes records, in order.
    fn write(&mut self, records: &[Record]) -> Result<(), SinkError>;

    /// Makes everything written so far durable or visible.
    fn flush(&mut self) -> Result<(), SinkError>;

    /// Every record at or below `frontier` has been written; none will come.
    /// Called after writing, whenever the input frontier moves (with
    /// [`Seq::END`] at the end of the stream). Sinks that forward records
    /// elsewhere (the instance side of a junction) pass it on.
    fn advance(&mut self, frontier: Seq) {
        let _ = frontier;
    }
}

/// A sink failed to write.
#[derive(Debug, Error)]
#[error("sink `{sink}`: {source}")]
pub struct SinkError {
    /// The sink's id in the graph.
    pub sink: String,
    /// What failed.
    #[source]
    pub source: std::io::Error,
}

/// What a kind is given to build an instance of itself.
#[derive(Debug)]
pub struct BuildContext<'a> {
    /// The node's id in the graph file.
    pub id: &'a str,
    /// Validated parameters, every declared one present (defaults filled in).
    pub params: &'a Params,
    /// Input channels, in the order the graph file lists them.
    pub inputs: &'a [ChannelId],
    /// Output channels, in the order of [`KindSpec::outputs`].
    pub outputs: &'a [ChannelId],
    /// Every channel of the graph, for sinks that print names.
    pub channels: &'a Arc<ChannelTable>,
}

/// A kind could not be built from its parameters. The message names the
/// node (``vertex `soc`: ...``) and says what would be valid; the loader
/// prints it at the parameter at fault, or at the node.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("{message}")]
pub struct BuildError {
    /// What is wrong and what would be valid.
    pub message: String,
    /// The parameter at fault, if one is: a graph file's loader points at
    /// its value (at the node when the file leaves it to its default).
    pub param: Option<&'static str>,
}

impl BuildError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> BuildError {
        BuildError {
            message: message.into(),
            param: None,
        }
    }

    /// The same error, blaming parameter `param`.
    #[must_use]
    pub fn at(self, param: &'static str) -> BuildError {
        BuildError {
            param: Some(param),
            ..self
        }
    }
}

/// The pure part of building a source or a sink: every check of its
/// parameters, taken together, that its builder makes before it opens a
/// file or a device. It touches nothing. A graph file's loader runs it (it
/// builds vertices, which are pure, but never sources or sinks), and the
/// kind's builder makes the same checks, so what `tandem check` accepts
/// `tandem run` builds. See [`Registry::register_checks`].
pub type Check = fn(&BuildContext<'_>) -> Result<(), BuildError>;

/// Which part of a graph a kind plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Produces records at ingress.
    Source,
    /// Transforms records; runs inside instances.
    Vertex,
    /// Consumes records at the edge.
    Sink,
}

impl Role {
    /// The graph-file table this role is declared in.
    pub fn table(self) -> &'static str {
        match self {
            Role::Source => "sources",
            Role::Vertex => "vertices",
            Role::Sink => "sinks",
        }
    }
}

/// How to build a node of a kind.
#[derive(Clone, Copy)]
pub enum Builder {
    /// Builds a source.
    Source(fn(&BuildContext<'_>) -> Result<Box<dyn Source>, BuildError>),
    /// Builds a vertex.
    Vertex(fn(&BuildContext<'_>) -> Result<Box<dyn Vertex>, BuildError>),
    /// Builds a sink.
    Sink(fn(&BuildContext<'_>) -> Result<Box<dyn Sink>, BuildError>),
}

impl core::fmt::Debug for Builder {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Builder::Source(_) => "Builder::Source",
            Builder::Vertex(_) => "Builder::Vertex",
            Builder::Sink(_) => "Builder::Sink",
        })
    }
}

impl Builder {
    /// The role of what this builds.
    pub fn role(&self) -> Role {
        match self {
            Builder::Source(_) => Role::Source,
            Builder::Vertex(_) => Role::Vertex,
            Builder::Sink(_) => Role::Sink,
        }
    }
}

/// How many inputs a kind takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arity {
    /// At least this many.
    pub min: usize,
    /// At most this many.
    pub max: usize,
}

impl Arity {
    /// No inputs (sources).
    pub const NONE: Arity = Arity { min: 0, max: 0 };
    /// Exactly `n` inputs.
    pub const fn exactly(n: usize) -> Arity {
        Arity { min: n, max: n }
    }
    /// `min` or more inputs.
    pub const fn at_least(min: usize) -> Arity {
        Arity {
            min,
            max: usize::MAX,
        }
    }
}

/// One output channel a kind produces, named `<node id>` or `<node id>.<suffix>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutputSpec {
    /// Empty for the node id itself, else the suffix after the dot.
    pub suffix: &'static str,
    /// Unit of the channel ("" for none).
    pub unit: &'static str,
}

impl OutputSpec {
    /// The output named after the node itself.
    pub const fn main(unit: &'static str) -> OutputSpec {
        OutputSpec { suffix: "", unit }
    }
    /// The output `<node id>.<suffix>`.
    pub const fn named(suffix: &'static str, unit: &'static str) -> OutputSpec {
        OutputSpec { suffix, unit }
    }
}

/// A kind of node, at one version: its interface and how to build it.
#[derive(Clone, Copy, Debug)]
pub struct KindSpec {
    /// The name used in graph files (`kind = "ewma"`).
    pub name: &'static str,
    /// The version of the kind's behaviour (`version = 2`).
    pub version: u32,
    /// One line saying what it does.
    pub doc: &'static str,
    /// Names of its inputs, for documentation and messages; may be shorter than `arity.max`.
    pub input_names: &'static [&'static str],
    /// How many inputs it takes.
    pub arity: Arity,
    /// The channels it produces.
    pub outputs: &'static [OutputSpec],
    /// A [`crate::ParamType::Names`] parameter whose entries are further outputs,
    /// `<node id>.<entry>`, after the fixed ones (CSV columns, generator channels).
    pub outputs_from: Option<&'static str>,
    /// Its parameters.
    pub params: &'static [ParamSpec],
    /// State schema id, for stateful vertices.
    pub state_schema: Option<SchemaId>,
    /// Conversions of state written by older schemas of this kind, each one
    /// step; [`KindSpec::upgrade`] chains them.
    pub migrations: &'static [Migration],
    /// Builds it.
    pub build: Builder,
}

impl KindSpec {
    /// Source, vertex or sink.
    pub fn role(&self) -> Role {
        self.build.role()
    }

    /// Brings a snapshot written under an older state schema up to this
    /// kind's schema by chaining its migrations. A snapshot already at the
    /// current schema is returned as it is.
    pub fn upgrade(&self, snapshot: &Snapshot) -> Result<Snapshot, SnapshotError> {
        let Some(target) = self.state_schema else {
            return Err(SnapshotError::Stateless);
        };
        let mut current = snapshot.clone();
        // Each step moves to another schema; a chain longer than the list is a loop.
        for _ in 0..=self.migrations.len() {
            if current.schema == target {
                return Ok(current);
            }
            let Some(step) = self.migrations.iter().find(|m| m.from == current.schema) else {
                break;
            };
            current = (step.migrate)(&current)?;
        }
        Err(SnapshotError::SchemaMismatch {
            expected: target,
            found: snapshot.schema,
        })
    }
}

/// One step of state migration: state written under schema `from`, as the
/// same kind's state under schema `to`.
#[derive(Clone, Copy, Debug)]
pub struct Migration {
    /// The schema it reads.
    pub from: SchemaId,
    /// The schema it writes.
    pub to: SchemaId,
    /// The conversion: thaw the old struct, build the new one, freeze it.
    pub migrate: fn(&Snapshot) -> Result<Snapshot, SnapshotError>,
}

/// Every kind a build of tandem knows, by name and version.
#[derive(Clone, Debug, Default)]
pub struct Registry {
    kinds: Vec<&'static KindSpec>,
    /// The [`Check`] of a source or sink kind, by name and version.
    checks: Vec<(&'static str, u32, Check)>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Adds kinds. A later (name, version) pair replaces an earlier one.
    pub fn register(&mut self, kinds: &[&'static KindSpec]) {
        for kind in kinds {
            self.kinds
                .retain(|k| !(k.name == kind.name && k.version == kind.version));
            self.kinds.push(kind);
        }
        self.kinds
            .sort_by(|a, b| (a.name, a.version).cmp(&(b.name, b.version)));
    }

    /// Declares the [`Check`] of source and sink kinds. A later check of the
    /// same (name, version) replaces an earlier one.
    pub fn register_checks(&mut self, checks: &[(&'static KindSpec, Check)]) {
        for &(kind, check) in checks {
            self.checks
                .retain(|(name, version, _)| !(*name == kind.name && *version == kind.version));
            self.checks.push((kind.name, kind.version, check));
        }
    }

    /// The [`Check`] declared for `kind`, if any.
    pub fn check(&self, kind: &KindSpec) -> Option<Check> {
        self.checks
            .iter()
            .find(|(name, version, _)| *name == kind.name && *version == kind.version)
            .map(|(_, _, check)| *check)
    }

    /// The kind `name` at `version`, or at its latest version when `version` is `None`.
    pub fn get(&self, name: &str, version: Option<u32>) -> Option<&'static KindSpec> {
        self.kinds
            .iter()
            .copied()
            .filter(|k| k.name == name)
            .filter(|k| version.is_none_or(|v| k.version == v))
            .max_by_key(|k| k.version)
    }

    /// Every version of `name`, ascending.
    pub fn versions(&self, name: &str) -> Vec<u32> {
        self.kinds
            .iter()
            .filter(|k| k.name == name)
            .map(|k| k.version)
            .collect()
    }

    /// All kinds, sorted by name then version.
    pub fn kinds(&self) -> impl Iterator<Item = &'static KindSpec> + '_ {
        self.kinds.iter().copied()
    }

    /// Distinct kind names of one role, sorted.
    pub fn names(&self, role: Role) -> Vec<&'static str> {
        let mut names: Vec<_> = self
            .kinds
            .iter()
            .filter(|k| k.role() == role)
            .map(|k| k.name)
            .collect();
        names.dedup();
        names
    }
}

/// Builds a vertex that emits nothing: the fake vertex kinds of the core's
/// tests, which graph loading builds like any other.
#[cfg(test)]
pub(crate) fn idle(_: &BuildContext<'_>) -> Result<Box<dyn Vertex>, BuildError> {
    struct Idle;
    impl Vertex for Idle {
        fn process(&mut self, _: &[Record], _: &mut Vec<Record>) {}
    }
    Ok(Box::new(Idle))
}
