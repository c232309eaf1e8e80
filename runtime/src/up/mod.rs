//! `tandem up`: the graph as 1+1, an agent process and two instance processes.
//!
//! - [`agent`]: sources, junctions and sinks; supervises the instances.
//!   Its hub (`hub.rs`) owns the HA supervisor and the instance processes;
//!   `links.rs` moves frames between each instance link and the hub.
//! - [`instance`]: the vertices between a relay and a forwarding sink.
//! - [`ends`]: those junction ends inside a topology.
//! - [`dirs`]: the state directory's layout.
//! - [`status`]: what `tandem status` shows, and the control socket.
//! - [`upgrade`]: live upgrades, and the requests of the control socket.

pub mod agent;
pub mod dirs;
pub mod ends;
mod hub;
pub mod instance;
mod links;
pub mod status;
pub mod upgrade;

use std::path::Path;

/// The largest graph file read: far beyond any real graph, far below a
/// gateway's memory.
pub const MAX_GRAPH_BYTES: u64 = 16 << 20;

/// Reads and loads a graph file with the kinds of this build; the error is
/// every diagnostic, as `tandem check` prints them.
pub fn load_graph(path: &Path) -> Result<tandem_core::graph::Loaded, String> {
    use std::io::Read as _;
    let shown = path.display().to_string();
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_GRAPH_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|e| format!("{shown}: error: cannot read graph file: {e}"))?;
    if bytes.len() as u64 > MAX_GRAPH_BYTES {
        return Err(format!(
            "{shown}: error: it is larger than {} MiB; a graph file is a few KiB of TOML",
            MAX_GRAPH_BYTES >> 20
        ));
    }
    tandem_core::graph::load(&shown, &bytes, &tandem_nodes::registry()).map_err(|d| d.to_string())
}
