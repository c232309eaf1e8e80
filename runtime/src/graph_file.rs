//! Reading a graph file from disk, with the kinds of this build: the one
//! loader behind `tandem check/run/diff/up`, the instances and the agent's
//! upgrades.

use std::io::Read as _;
use std::path::Path;

use tandem_core::graph::{self, Diagnostics, Loaded};
use thiserror::Error;

/// The largest graph file read: far beyond any real graph, far below a
/// gateway's memory.
pub const MAX_GRAPH_BYTES: u64 = 16 << 20;

/// A graph file that could not be loaded.
#[derive(Debug, Error)]
pub enum GraphFileError {
    /// It could not be read, or is far too large to be a graph file.
    #[error("{file}: error: cannot read graph file: {reason}")]
    Unreadable {
        /// The path, as given.
        file: String,
        /// Why.
        reason: String,
    },
    /// It was read but is not a valid graph: every error, one per line.
    #[error("{0}")]
    Invalid(Diagnostics),
}

/// Reads (at most [`MAX_GRAPH_BYTES`], also from devices that never end)
/// and validates the graph file at `path`.
pub fn load(path: &Path) -> Result<Loaded, GraphFileError> {
    let opened = std::fs::File::open(path);
    load_from(path, opened)
}

/// Like [`load`], for files named by others (the agent's control requests):
/// refuses anything but a regular file, without waiting on it (opening a
/// FIFO for reading would wait for a writer).
pub fn load_regular(path: &Path) -> Result<Loaded, GraphFileError> {
    let opened = crate::private::open_regular(path).and_then(|f| {
        f.ok_or_else(|| {
            std::io::Error::other(
                "it is not a regular file (a FIFO, device, socket or directory); \
                 name a graph file on disk",
            )
        })
    });
    load_from(path, opened)
}

fn load_from(
    path: &Path,
    opened: std::io::Result<std::fs::File>,
) -> Result<Loaded, GraphFileError> {
    let file = path.display().to_string();
    let unreadable = |reason: String| GraphFileError::Unreadable {
        file: file.clone(),
        reason,
    };
    let mut bytes = Vec::new();
    opened
        .and_then(|f| f.take(MAX_GRAPH_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|e| unreadable(e.to_string()))?;
    if bytes.len() as u64 > MAX_GRAPH_BYTES {
        return Err(unreadable(format!(
            "it is larger than {} MiB; a graph file is a few KiB of TOML",
            MAX_GRAPH_BYTES >> 20
        )));
    }
    graph::load(&file, &bytes, &tandem_nodes::registry()).map_err(GraphFileError::Invalid)
}
