//! 1+1 high availability, as pure state machines: junctions, roles,
//! liveness, barriers and rejoin. Inputs are `handle_*(now, ..)`, outputs
//! `poll_*()`; time is a parameter.

pub mod downstream;
pub mod liveness;
pub mod msg;
pub mod rejoin;
#[cfg(test)]
mod sim;
pub mod upstream;

pub use downstream::{Divergence, Downstream, DownstreamConfig, DownstreamStats, Tolerances};
pub use liveness::{Liveness, LivenessConfig};
pub use msg::{Color, Nanos, Role, StreamId, ToAgent, ToInstance};
pub use rejoin::{Event, HaConfig, LostReason, Supervisor};
pub use upstream::{BarrierMark, RetentionError, Upstream, UpstreamConfig, UpstreamEvent};
