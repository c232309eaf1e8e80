//! 1+1 high availability, as pure state machines: junctions, roles,
//! liveness, barriers and rejoin. Inputs are `handle_*(now, ..)`, outputs
//! `poll_*()`; time is a parameter ([`Nanos`], monotonic, from the runtime).
//!
//! - [`msg`]: the protocol messages ([`ToInstance`], [`ToAgent`]) shared with the wire codec.
//! - [`upstream`]: retention ring, per-instance input cursors, barriers, replay.
//! - [`downstream`]: merge by (stream, seq, ordinal), emit once, compare with tolerances.
//! - [`liveness`]: heartbeat deadlines.
//! - [`event`]: what the supervisor reports.
//! - [`rejoin`]: the [`Supervisor`] that owns the above, the roles and the
//!   barrier-and-rejoin protocol; the agent drives one per unit.
//! - [`upgrade`]: the [`Upgrader`] beside it: what each colour runs, and the
//!   phases of a live upgrade (transfer, shadow, promoted, replacing) with
//!   their rollback rules and deadlines.
//! - [`restart`]: when a lost instance is started again ([`Restarts`]: at
//!   once, or backing off while it keeps dying before it serves).
//!
//! A seeded simulation (`sim`, tests only) runs the supervisor against two
//! simulated instances over a delaying, reordering network with crashes and
//! hangs, and live upgrades through every phase with crashes and hangs in
//! each; `TANDEM_SIM_SEED=<n> cargo test -p tandem-core ha::sim` replays a
//! seed with a trace.

pub mod downstream;
pub mod event;
pub mod liveness;
pub mod msg;
pub mod rejoin;
pub mod restart;
#[cfg(test)]
mod sim;
pub mod upgrade;
pub mod upstream;

pub use downstream::{Divergence, Downstream, DownstreamConfig, DownstreamStats, Tolerances};
pub use event::{Event, LostReason};
pub use liveness::{Liveness, LivenessConfig};
pub use msg::{Color, Nanos, Role, StreamId, ToAgent, ToInstance};
pub use rejoin::{HaConfig, Supervisor};
pub use restart::Restarts;
pub use upgrade::Upgrader;
pub use upstream::{
    BarrierMark, Recipients, RetentionError, Transmit, Upstream, UpstreamConfig, UpstreamEvent,
};
