//! `tandem up`: the graph as 1+1, an agent process and two instance processes.
//!
//! - [`agent`]: sources, junctions and sinks; supervises the instances.
//!   Its hub (`hub/`) is the one loop that owns the HA supervisor and
//!   drives live upgrades (`hub/upgrade.rs`); it starts and restarts
//!   instances through `processes.rs`, writes shadow output through
//!   `shadow_log.rs`; `links.rs` moves frames between each instance link
//!   and the hub.
//! - [`instance`]: the vertices between a relay and a forwarding sink.
//! - [`ends`]: those junction ends inside a topology.
//! - [`graph`]: the graph file loaded and cut for 1+1, and the agent's
//!   configuration written once.
//! - [`dirs`]: the state directory's layout.
//! - [`status`]: what `tandem status` shows.
//! - [`control`]: the control socket, the requests it takes, and why the
//!   hub refuses one.
//! - `toggles.rs`: the graph's feature toggles and their kept positions.

pub mod agent;
pub mod ask;
pub mod control;
pub mod dirs;
pub mod ends;
pub mod fleet_link;
pub mod graph;
mod hub;
pub mod instance;
mod links;
mod processes;
mod shadow_log;
pub mod status;
mod toggles;

pub use toggles::ToggleError;
