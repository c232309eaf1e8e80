//! `tandem up`: the graph as 1+1, an agent process and two instance processes.
//!
//! - [`agent`]: sources, junctions and sinks; supervises the instances.
//! - [`instance`]: the vertices between a relay and a forwarding sink.
//! - [`ends`]: those junction ends inside a topology.
//! - [`dirs`]: the state directory's layout.
//! - [`status`]: what `tandem status` shows, and the control socket.

pub mod agent;
pub mod dirs;
pub mod ends;
pub mod instance;
pub mod status;
pub mod upgrade;
