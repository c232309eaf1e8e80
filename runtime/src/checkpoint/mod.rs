//! Periodic checkpoints of vertex state in the state directory.
//!
//! At a barrier the runtime [`capture`]s every stateful vertex's snapshot
//! into a [`Checkpoint`] and hands it to a [`CheckpointStore`], which writes
//! it durably (temp file, fsync, rename, fsync of the directory) and keeps
//! the newest few. On start, [`CheckpointStore::load_latest`] finds the
//! newest checkpoint that verifies, refusing damaged ones with a message
//! that names the file, and [`restore`] hands each snapshot back to the
//! vertex with the same id.
//!
//! The file format is in [`mod@format`]; the file operations sit behind
//! [`Storage`] so that [`sim`] can fail them or crash in the middle.
//!
//! [`numbering`] keeps origin sequence numbers unique across crashes: a
//! high-water mark of the numbers a run may have used, reserved ahead.

pub mod format;
pub mod numbering;
pub mod sim;
mod storage;
mod store;

pub use format::FormatError;
pub use numbering::Reservation;
pub use storage::{FsStorage, Storage};
pub use store::{
    file_name, parse_file_name, CheckpointStore, Recovery, Refusal, Skipped, StoreError,
    DEFAULT_KEEP,
};

use std::collections::BTreeMap;
use std::fmt;
use tandem_core::{ParamValue, Plan, Seq, Snapshot, SnapshotError, Vertex};

/// Which graph a checkpoint belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GraphStamp {
    /// The graph's name.
    pub name: String,
    /// A hash of the graph's definition, chosen by the runtime; a different
    /// hash means the graph changed since the checkpoint was taken.
    pub hash: u64,
}

impl GraphStamp {
    /// The stamp of a loaded graph: its name, and a hash of what its state
    /// depends on (each node's id, kind, kind version, state schema and
    /// parameters, by id) but not of how it is laid out on workers or in
    /// what order the file lists the nodes.
    ///
    /// The hash is FNV-1a over a fixed little-endian encoding, so it is the
    /// same on every build and platform.
    pub fn of_plan(name: &str, plan: &Plan) -> GraphStamp {
        let mut nodes: Vec<_> = plan.nodes.iter().collect();
        nodes.sort_by(|a, b| a.id.cmp(&b.id));
        let mut h = Fnv::new();
        for node in nodes {
            h.text(&node.id);
            h.text(node.kind.name);
            h.bytes(&node.kind.version.to_le_bytes());
            h.bytes(
                &node
                    .kind
                    .state_schema
                    .map_or(u64::MAX, |s| u64::from(s.0))
                    .to_le_bytes(),
            );
            for (param, value) in node.params.iter() {
                h.text(param);
                match value {
                    ParamValue::Float(v) => h.tagged(0, &v.to_bits().to_le_bytes()),
                    ParamValue::Int(v) => h.tagged(1, &v.to_le_bytes()),
                    ParamValue::Bool(v) => h.tagged(2, &[u8::from(*v)]),
                    ParamValue::Duration(v) => h.tagged(3, &v.to_le_bytes()),
                    ParamValue::Text(v) => h.tagged(4, v.as_bytes()),
                    ParamValue::Names(names) => {
                        h.tagged(5, &(names.len() as u64).to_le_bytes());
                        for n in names {
                            h.text(n);
                        }
                    }
                }
            }
            h.bytes(&[0xff]);
        }
        GraphStamp {
            name: name.to_owned(),
            hash: h.0,
        }
    }
}

/// A hash of vertex state: equal for two instances exactly when every
/// vertex holds the same bytes under the same schema. FNV-1a over the
/// vertices in id order, as [`GraphStamp`] is.
pub fn state_hash(vertices: &BTreeMap<String, Snapshot>) -> u64 {
    let mut h = Fnv::new();
    for (id, snapshot) in vertices {
        h.text(id);
        h.bytes(&snapshot.schema.0.to_le_bytes());
        h.tagged(0x73, &snapshot.payload);
    }
    h.0
}

/// 64-bit FNV-1a, with length-prefixed fields so that ("ab", "c") and
/// ("a", "bc") hash differently.
struct Fnv(u64);

impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    fn bytes(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn text(&mut self, text: &str) {
        self.tagged(0x74, text.as_bytes());
    }

    fn tagged(&mut self, tag: u8, bytes: &[u8]) {
        self.bytes(&[tag]);
        self.bytes(&(bytes.len() as u64).to_le_bytes());
        self.bytes(bytes);
    }
}

/// The state of every stateful vertex of a graph at one barrier.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The graph it was taken from.
    pub graph: GraphStamp,
    /// The barrier: every record up to and including this sequence number is
    /// reflected in the state, none after it.
    pub seq: Seq,
    /// Each vertex's snapshot, by vertex id.
    pub vertices: BTreeMap<String, Snapshot>,
}

/// Snapshots every vertex that keeps state; stateless vertices are left out.
///
/// Call it at a barrier, when every vertex has processed exactly the records
/// up to `seq`.
pub fn capture<'a, I>(graph: GraphStamp, seq: Seq, vertices: I) -> Checkpoint
where
    I: IntoIterator<Item = (&'a str, &'a dyn Vertex)>,
{
    let vertices = vertices
        .into_iter()
        .filter_map(|(id, v)| Some((id.to_owned(), v.snapshot()?)))
        .collect();
    Checkpoint {
        graph,
        seq,
        vertices,
    }
}

/// What [`restore`] did with each vertex. None of it is an error: a vertex
/// without a snapshot starts empty, and the runtime decides what to log.
#[derive(Debug, Default)]
pub struct RestoreReport {
    /// Vertices that took their snapshot.
    pub restored: Vec<String>,
    /// Stateful vertices of the graph with no snapshot in the checkpoint
    /// (added since it was taken): they start empty.
    pub missing: Vec<String>,
    /// Snapshots for vertices the graph no longer has: ignored.
    pub unknown: Vec<String>,
    /// Vertices that refused their snapshot (its schema changed, say): they
    /// start empty.
    pub refused: Vec<(String, SnapshotError)>,
}

impl RestoreReport {
    /// True when every snapshot went to a vertex and every stateful vertex got one.
    pub fn is_complete(&self) -> bool {
        self.missing.is_empty() && self.unknown.is_empty() && self.refused.is_empty()
    }
}

impl fmt::Display for RestoreReport {
    /// One line per vertex that did not resume, then a summary.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for id in &self.missing {
            writeln!(
                f,
                "vertex `{id}` has no state in the checkpoint; it starts empty"
            )?;
        }
        for id in &self.unknown {
            writeln!(
                f,
                "the checkpoint holds state for `{id}`, which is not in the graph; it is ignored"
            )?;
        }
        for (id, e) in &self.refused {
            writeln!(
                f,
                "vertex `{id}` refused its checkpointed state: {e}; it starts empty"
            )?;
        }
        let n = self.restored.len();
        let noun = if n == 1 { "vertex" } else { "vertices" };
        write!(f, "{n} {noun} resumed from the checkpoint")
    }
}

/// Gives each vertex the snapshot the checkpoint holds under its id.
///
/// A vertex whose `restore` fails keeps the state it had (a freshly built
/// vertex: empty), as [`Vertex::restore`] replaces state only on success.
pub fn restore<'a, 'v: 'a, I>(checkpoint: &Checkpoint, vertices: I) -> RestoreReport
where
    I: IntoIterator<Item = (&'a str, &'a mut (dyn Vertex + 'v))>,
{
    let mut report = RestoreReport::default();
    let mut seen: BTreeMap<&str, ()> = BTreeMap::new();
    for (id, vertex) in vertices {
        match checkpoint.vertices.get_key_value(id) {
            Some((key, snapshot)) => {
                seen.insert(key.as_str(), ());
                match vertex.restore(snapshot) {
                    Ok(()) => report.restored.push(id.to_owned()),
                    Err(e) => report.refused.push((id.to_owned(), e)),
                }
            }
            None => {
                if vertex.snapshot().is_some() {
                    report.missing.push(id.to_owned());
                }
            }
        }
    }
    report.unknown = checkpoint
        .vertices
        .keys()
        .filter(|k| !seen.contains_key(k.as_str()))
        .cloned()
        .collect();
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_matches_the_published_vectors() {
        // FNV-1a 64 test vectors from the reference implementation.
        let mut h = Fnv::new();
        assert_eq!(h.0, 0xcbf2_9ce4_8422_2325);
        h.bytes(b"a");
        assert_eq!(h.0, 0xaf63_dc4c_8601_ec8c);
        let mut h = Fnv::new();
        h.bytes(b"foobar");
        assert_eq!(h.0, 0x8594_4171_f739_67e8);
    }

    #[test]
    fn fields_are_length_prefixed() {
        let mut a = Fnv::new();
        a.text("ab");
        a.text("c");
        let mut b = Fnv::new();
        b.text("a");
        b.text("bc");
        assert_ne!(a.0, b.0);
    }
}
