//! What changes between two versions of a graph, and whether vertex state
//! survives the change.
//!
//! [`diff`] compares two validated [`Plan`]s node by node, by id: nodes
//! added, removed, or changed in kind, kind version, parameters or inputs.
//! For each node it works out what happens to its state when the new graph
//! resumes from the old one's checkpoint ([`StateFate`]), and
//! [`GraphDiff::refusals`] lists every change that would lose state:
//!
//! - a vertex kept under its id whose state schema changed and whose new
//!   kind has no migration chain from the old schema;
//! - a vertex kept under its id whose kind changed (its state is another
//!   type: a changed key type), or whose new version keeps no state;
//! - a stateful vertex removed, unless dropping state is allowed.
//!
//! State lost on a kept id is always refused: the fix is a migration, or a
//! new id for the new vertex (and the old one removed, with drop allowed).
//! The diff is pure: it reads two plans and runs no migration.

use crate::plan::Plan;
use crate::state::SchemaId;
use crate::vertex::KindSpec;
use crate::ParamValue;
use std::collections::BTreeMap;
use std::fmt;

/// A parameter whose value differs.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamChange {
    /// The parameter's name.
    pub name: String,
    /// Its value in the old graph (`None`: not set, no default).
    pub old: Option<ParamValue>,
    /// Its value in the new graph.
    pub new: Option<ParamValue>,
}

/// What happens to a node's state when the new graph resumes from a
/// checkpoint of the old one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StateFate {
    /// The node keeps no state, before or after.
    Stateless,
    /// Same state schema: restored as it is.
    Kept(SchemaId),
    /// The schema changed and the new kind migrates the old state through
    /// this chain of schemas (first `from`, last the new schema).
    Migrated(Vec<SchemaId>),
    /// A new stateful node (or one that kept no state before): starts empty.
    Fresh(SchemaId),
    /// The schema changed and the new kind has no migration chain from the old one.
    NoMigration {
        /// Schema of the old state.
        from: SchemaId,
        /// Schema the new kind keeps.
        to: SchemaId,
    },
    /// The kind changed under the same id: the old state is another type.
    KindChanged {
        /// Schema of the old state.
        from: SchemaId,
    },
    /// The new version of the kind keeps no state: the old state is dropped.
    Discarded(SchemaId),
    /// The node was removed with its state.
    Dropped(SchemaId),
}

impl StateFate {
    /// True when state that exists now would not reach the new graph.
    pub fn loses_state(&self) -> bool {
        matches!(
            self,
            StateFate::NoMigration { .. }
                | StateFate::KindChanged { .. }
                | StateFate::Discarded(_)
                | StateFate::Dropped(_)
        )
    }
}

/// How one node differs between the two graphs.
#[derive(Clone, Debug)]
pub enum Change {
    /// Only in the new graph.
    Added {
        /// Its kind.
        kind: &'static KindSpec,
    },
    /// Only in the old graph.
    Removed {
        /// Its kind.
        kind: &'static KindSpec,
    },
    /// In both, with a different kind, version, parameters or inputs.
    Changed {
        /// The old kind.
        old: &'static KindSpec,
        /// The new kind.
        new: &'static KindSpec,
        /// Parameters whose values differ, by name.
        params: Vec<ParamChange>,
        /// Input channel names, old and new, when they differ.
        inputs: Option<(Vec<String>, Vec<String>)>,
    },
}

/// One node that differs.
#[derive(Clone, Debug)]
pub struct NodeDiff {
    /// The node's id.
    pub id: String,
    /// How it differs.
    pub change: Change,
    /// What happens to its state.
    pub state: StateFate,
}

/// An upgrade that would lose state: the node and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The node's id.
    pub id: String,
    /// The old kind.
    pub old: &'static str,
    /// The new kind, when the node is kept.
    pub new: Option<&'static str>,
    /// How the state would be lost.
    pub fate: StateFate,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (id, old, new) = (&self.id, self.old, self.new.unwrap_or(""));
        match &self.fate {
            StateFate::NoMigration { from, to } => write!(
                f,
                "vertex `{id}`: {new} has no migration from state schema {from} to {to}; \
                 its state would be lost (add a migration to the kind, or keep the old version)"
            ),
            StateFate::KindChanged { from } => write!(
                f,
                "vertex `{id}` changes kind from {old} to {new} (changed key type): \
                 its state (schema {from}) cannot be carried over; give the new vertex \
                 another id and remove this one with --allow-drop"
            ),
            StateFate::Discarded(from) => write!(
                f,
                "vertex `{id}`: the new version of {new} keeps no state; its state \
                 (schema {from}) would be lost; give the new vertex another id and remove \
                 this one with --allow-drop"
            ),
            StateFate::Dropped(from) => write!(
                f,
                "vertex `{id}` ({old}) is removed and its state (schema {from}) would be \
                 dropped; pass --allow-drop to accept"
            ),
            other => write!(f, "vertex `{id}`: {other:?}"),
        }
    }
}

/// Every node that differs between two graphs, by id.
#[derive(Clone, Debug, Default)]
pub struct GraphDiff {
    /// The nodes that differ, sorted by id.
    pub nodes: Vec<NodeDiff>,
}

impl GraphDiff {
    /// True when no node differs.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The changes that would lose state. A removed stateful vertex is
    /// refused unless `allow_drop`; state lost on a kept id always is.
    pub fn refusals(&self, allow_drop: bool) -> Vec<Refusal> {
        self.nodes
            .iter()
            .filter(|n| n.state.loses_state())
            .filter(|n| !(allow_drop && matches!(n.state, StateFate::Dropped(_))))
            .map(|n| {
                let (old, new) = match n.change {
                    Change::Added { kind } => (kind.name, Some(kind.name)),
                    Change::Removed { kind } => (kind.name, None),
                    Change::Changed { old, new, .. } => (old.name, Some(new.name)),
                };
                Refusal {
                    id: n.id.clone(),
                    old,
                    new,
                    fate: n.state.clone(),
                }
            })
            .collect()
    }
}

impl fmt::Display for GraphDiff {
    /// One line per node that differs: `+` added, `-` removed, `~` changed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for n in &self.nodes {
            writeln!(f, "{n}")?;
        }
        Ok(())
    }
}

impl fmt::Display for NodeDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let id = &self.id;
        match &self.change {
            Change::Added { kind } => {
                write!(f, "+ {id}: {} v{}", kind.name, kind.version)?;
            }
            Change::Removed { kind } => {
                write!(f, "- {id}: {} v{}", kind.name, kind.version)?;
            }
            Change::Changed {
                old,
                new,
                params,
                inputs,
            } => {
                if old.name == new.name && old.version == new.version {
                    write!(f, "~ {id}: {} v{}", old.name, old.version)?;
                } else if old.name == new.name {
                    write!(
                        f,
                        "~ {id}: {} v{} -> v{}",
                        old.name, old.version, new.version
                    )?;
                } else {
                    write!(
                        f,
                        "~ {id}: {} v{} -> {} v{}",
                        old.name, old.version, new.name, new.version
                    )?;
                }
                for p in params {
                    write!(
                        f,
                        ", {} {} -> {}",
                        p.name,
                        show(p.old.as_ref()),
                        show(p.new.as_ref())
                    )?;
                }
                if let Some((was, is)) = inputs {
                    write!(f, ", inputs")?;
                    let added = is.iter().filter(|c| !was.contains(c));
                    let removed = was.iter().filter(|c| !is.contains(c));
                    let mut any = false;
                    for (sign, channel) in added.map(|c| ('+', c)).chain(removed.map(|c| ('-', c)))
                    {
                        write!(f, " {sign}{channel}")?;
                        any = true;
                    }
                    if !any {
                        write!(f, " reordered")?;
                    }
                }
            }
        }
        match &self.state {
            StateFate::Stateless | StateFate::Kept(_) => Ok(()),
            StateFate::Migrated(chain) => {
                let (from, to) = (chain.first(), chain.last());
                match (from, to) {
                    (Some(from), Some(to)) if chain.len() > 2 => {
                        let steps: Vec<String> = chain.iter().map(|s| s.to_string()).collect();
                        write!(
                            f,
                            ", state schema {from} -> {to} (migration available: {})",
                            steps.join(" -> ")
                        )
                    }
                    (Some(from), Some(to)) => {
                        write!(f, ", state schema {from} -> {to} (migration available)")
                    }
                    _ => Ok(()),
                }
            }
            StateFate::Fresh(s) => write!(f, ", state schema {s} (starts empty)"),
            StateFate::NoMigration { from, to } => {
                write!(
                    f,
                    ", state schema {from} -> {to} (no migration: state lost)"
                )
            }
            StateFate::KindChanged { from } => {
                write!(f, ", changed key type (state schema {from} lost)")
            }
            StateFate::Discarded(s) => write!(f, ", keeps no state (state schema {s} lost)"),
            StateFate::Dropped(s) => write!(f, ", state schema {s} dropped"),
        }
    }
}

/// A parameter value as a graph file would write it.
fn show(value: Option<&ParamValue>) -> String {
    match value {
        None => "(unset)".to_owned(),
        Some(ParamValue::Float(v)) => format!("{v:?}"),
        Some(ParamValue::Int(v)) => v.to_string(),
        Some(ParamValue::Bool(v)) => v.to_string(),
        Some(ParamValue::Duration(ns)) => format!("\"{}\"", crate::param::format_duration(*ns)),
        Some(ParamValue::Text(t)) => format!("{t:?}"),
        Some(ParamValue::Names(names)) => format!("{names:?}"),
    }
}

/// The schemas a snapshot of `from` passes through to reach `kind`'s
/// schema, following `kind.migrations` one step at a time as
/// [`KindSpec::upgrade`] does; `None` when no chain gets there.
pub fn migration_chain(kind: &KindSpec, from: SchemaId) -> Option<Vec<SchemaId>> {
    let target = kind.state_schema?;
    let mut chain = vec![from];
    let mut current = from;
    // Each step moves to another schema; a chain longer than the list is a loop.
    for _ in 0..=kind.migrations.len() {
        if current == target {
            return Some(chain);
        }
        let step = kind.migrations.iter().find(|m| m.from == current)?;
        current = step.to;
        chain.push(current);
    }
    None
}

/// The state fate of a node whose kind goes from `old` to `new` under one id.
fn fate(old: &'static KindSpec, new: &'static KindSpec) -> StateFate {
    match (old.state_schema, new.state_schema) {
        (None, None) => StateFate::Stateless,
        (None, Some(to)) => StateFate::Fresh(to),
        (Some(from), _) if old.name != new.name || old.role() != new.role() => {
            StateFate::KindChanged { from }
        }
        (Some(from), None) => StateFate::Discarded(from),
        (Some(from), Some(to)) if from == to => StateFate::Kept(from),
        (Some(from), Some(to)) => match migration_chain(new, from) {
            Some(chain) => StateFate::Migrated(chain),
            None => StateFate::NoMigration { from, to },
        },
    }
}

/// Compares two plans node by node, by id.
pub fn diff(old: &Plan, new: &Plan) -> GraphDiff {
    let by_id = |plan: &Plan| -> BTreeMap<String, usize> {
        plan.nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.id.clone(), i))
            .collect()
    };
    let (old_ids, new_ids) = (by_id(old), by_id(new));
    let mut ids: Vec<&String> = old_ids.keys().chain(new_ids.keys()).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut nodes = Vec::new();
    for id in ids {
        let was = old_ids.get(id).and_then(|&i| old.nodes.get(i));
        let is = new_ids.get(id).and_then(|&i| new.nodes.get(i));
        let (change, state) = match (was, is) {
            (None, None) => continue,
            (None, Some(n)) => (
                Change::Added { kind: n.kind },
                n.kind
                    .state_schema
                    .map_or(StateFate::Stateless, StateFate::Fresh),
            ),
            (Some(o), None) => (
                Change::Removed { kind: o.kind },
                o.kind
                    .state_schema
                    .map_or(StateFate::Stateless, StateFate::Dropped),
            ),
            (Some(o), Some(n)) => {
                let params = param_changes(o, n);
                let names = |plan: &Plan, node: &crate::plan::PlanNode| -> Vec<String> {
                    node.inputs
                        .iter()
                        .map(|&c| plan.channels.name(c).to_owned())
                        .collect()
                };
                let (was_in, is_in) = (names(old, o), names(new, n));
                let inputs = (was_in != is_in).then_some((was_in, is_in));
                let same_kind = std::ptr::eq(o.kind, n.kind)
                    || (o.kind.name == n.kind.name && o.kind.version == n.kind.version);
                if same_kind && params.is_empty() && inputs.is_none() {
                    continue;
                }
                (
                    Change::Changed {
                        old: o.kind,
                        new: n.kind,
                        params,
                        inputs,
                    },
                    fate(o.kind, n.kind),
                )
            }
        };
        nodes.push(NodeDiff {
            id: id.clone(),
            change,
            state,
        });
    }
    GraphDiff { nodes }
}

fn param_changes(old: &crate::plan::PlanNode, new: &crate::plan::PlanNode) -> Vec<ParamChange> {
    let mut names: Vec<&str> = old
        .params
        .iter()
        .chain(new.params.iter())
        .map(|(n, _)| n)
        .collect();
    names.sort_unstable();
    names.dedup();
    names
        .into_iter()
        .filter_map(|name| {
            let (a, b) = (old.params.get(name), new.params.get(name));
            // Compare floats by bits: a NaN default would otherwise always differ.
            let same = match (a, b) {
                (Some(ParamValue::Float(x)), Some(ParamValue::Float(y))) => {
                    x.to_bits() == y.to_bits()
                }
                _ => a == b,
            };
            (!same).then(|| ParamChange {
                name: name.to_owned(),
                old: a.cloned(),
                new: b.cloned(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::graph;
    use crate::param::{ParamDefault, ParamSpec, ParamType};
    use crate::state::Snapshot;
    use crate::vertex::{
        Arity, BuildContext, BuildError, Builder, Migration, OutputSpec, Registry, Source,
    };
    use crate::SnapshotError;

    fn no_source(_: &BuildContext<'_>) -> Result<Box<dyn Source>, BuildError> {
        Err(BuildError::new("test kind"))
    }
    fn relabel(s: &Snapshot) -> Result<Snapshot, SnapshotError> {
        Ok(Snapshot {
            schema: SchemaId(s.schema.0 + 1),
            payload: s.payload.clone(),
        })
    }

    static METER: KindSpec = KindSpec {
        name: "meter",
        version: 1,
        doc: "a meter",
        input_names: &[],
        arity: Arity::NONE,
        outputs: &[OutputSpec::main("W")],
        outputs_from: None,
        params: &[],
        state_schema: None,
        migrations: &[],
        build: Builder::Source(no_source),
    };
    const STEPS: &[Migration] = &[
        Migration {
            from: SchemaId(1),
            to: SchemaId(2),
            migrate: relabel,
        },
        Migration {
            from: SchemaId(2),
            to: SchemaId(3),
            migrate: relabel,
        },
    ];
    const ACC: KindSpec = KindSpec {
        name: "acc",
        version: 1,
        doc: "accumulates",
        input_names: &["in"],
        arity: Arity::exactly(1),
        outputs: &[OutputSpec::main("")],
        outputs_from: None,
        params: &[ParamSpec {
            name: "gain",
            ty: ParamType::Float {
                min: 0.0,
                max: 10.0,
            },
            default: ParamDefault::Float(1.0),
            doc: "gain",
        }],
        state_schema: Some(SchemaId(1)),
        migrations: &[],
        build: Builder::Vertex(crate::vertex::idle),
    };
    static ACC_1: KindSpec = ACC;
    static ACC_2: KindSpec = KindSpec {
        version: 2,
        state_schema: Some(SchemaId(2)),
        migrations: STEPS,
        ..ACC
    };
    static ACC_3: KindSpec = KindSpec {
        version: 3,
        state_schema: Some(SchemaId(3)),
        migrations: STEPS,
        ..ACC
    };
    static ACC_4: KindSpec = KindSpec {
        version: 4,
        state_schema: Some(SchemaId(4)),
        ..ACC
    };
    static ACC_5: KindSpec = KindSpec {
        version: 5,
        state_schema: None,
        ..ACC
    };
    static PEAK: KindSpec = KindSpec {
        name: "peak",
        state_schema: Some(SchemaId(9)),
        ..ACC
    };
    static PASS: KindSpec = KindSpec {
        name: "pass",
        state_schema: None,
        ..ACC
    };

    fn load(vertices: &str) -> Plan {
        let mut r = Registry::new();
        r.register(&[&METER, &ACC_1, &ACC_2, &ACC_3, &ACC_4, &ACC_5, &PEAK, &PASS]);
        let text =
            format!("[sources.m]\nkind = \"meter\"\n\n[sources.n]\nkind = \"meter\"\n\n{vertices}");
        graph::load("g.toml", text.as_bytes(), &r).unwrap().plan
    }

    fn node(id: &str, kind: &str, version: u32, extra: &str) -> String {
        format!(
            "[vertices.{id}]\nkind = \"{kind}\"\nversion = {version}\ninputs = [\"m\"]\n{extra}\n"
        )
    }

    fn lines(old: &str, new: &str) -> String {
        diff(&load(old), &load(new)).to_string()
    }

    #[test]
    fn identical_graphs_have_no_diff() {
        let g = node("a", "acc", 1, "") + &node("p", "pass", 1, "");
        assert!(diff(&load(&g), &load(&g)).is_empty());
    }

    #[test]
    fn migrations_chain_through_every_step() {
        let d = diff(
            &load(&node("a", "acc", 1, "")),
            &load(&node("a", "acc", 3, "")),
        );
        assert_eq!(
            d.nodes[0].state,
            StateFate::Migrated(vec![SchemaId(1), SchemaId(2), SchemaId(3)])
        );
        assert_eq!(
            d.to_string(),
            "~ a: acc v1 -> v3, state schema 1 -> 3 (migration available: 1 -> 2 -> 3)\n"
        );
        assert!(d.refusals(false).is_empty());
        // The chain the diff finds is the one `upgrade` runs.
        let old = Snapshot {
            schema: SchemaId(1),
            payload: vec![],
        };
        assert_eq!(ACC_3.upgrade(&old).unwrap().schema, SchemaId(3));
        assert_eq!(migration_chain(&ACC_4, SchemaId(1)), None);
        assert!(ACC_4.upgrade(&old).is_err());
    }

    #[test]
    fn params_and_inputs_are_shown_old_to_new() {
        let old = node("a", "acc", 1, "") + &node("p", "pass", 1, "");
        let new = node("a", "acc", 1, "gain = 2.5")
            + &node("p", "pass", 1, "").replace("[\"m\"]", "[\"n\"]");
        assert_eq!(
            lines(&old, &new),
            "~ a: acc v1, gain 1.0 -> 2.5\n~ p: pass v1, inputs +n -m\n"
        );
        assert!(diff(&load(&old), &load(&new)).refusals(false).is_empty());
    }

    #[test]
    fn every_way_of_losing_state_is_refused_with_its_reason() {
        let old = node("a", "acc", 1, "")
            + &node("b", "acc", 1, "")
            + &node("c", "acc", 1, "")
            + &node("d", "acc", 1, "");
        let new = node("a", "acc", 4, "")
            + &node("b", "peak", 1, "")
            + &node("c", "acc", 5, "")
            + &node("e", "pass", 1, "");
        let d = diff(&load(&old), &load(&new));
        assert_eq!(
            d.to_string(),
            "~ a: acc v1 -> v4, state schema 1 -> 4 (no migration: state lost)\n\
             ~ b: acc v1 -> peak v1, changed key type (state schema 1 lost)\n\
             ~ c: acc v1 -> v5, keeps no state (state schema 1 lost)\n\
             - d: acc v1, state schema 1 dropped\n\
             + e: pass v1\n"
        );
        let refused: Vec<String> = d.refusals(false).iter().map(|r| r.to_string()).collect();
        assert_eq!(refused.len(), 4);
        assert_eq!(
            refused[0],
            "vertex `a`: acc has no migration from state schema 1 to 4; its state would be lost \
             (add a migration to the kind, or keep the old version)"
        );
        assert_eq!(
            refused[3],
            "vertex `d` (acc) is removed and its state (schema 1) would be dropped; \
             pass --allow-drop to accept"
        );
        let allowed: Vec<String> = d.refusals(true).iter().map(|r| r.id.clone()).collect();
        assert_eq!(allowed, ["a", "b", "c"]);
    }

    #[test]
    fn new_stateful_vertices_start_empty_and_are_not_refused() {
        let d = diff(
            &load(&node("p", "pass", 1, "")),
            &load(&node("p", "peak", 1, "")),
        );
        assert_eq!(d.nodes[0].state, StateFate::Fresh(SchemaId(9)));
        assert!(d.refusals(false).is_empty());
    }
}
