//! tandem-core: the pure core of tandem.
//!
//! Records and batches, the [`Vertex`] trait and the kind [`Registry`], graph
//! files parsed into a [`Plan`], and the snapshot codec. Nothing here reads a
//! clock, spawns a thread, opens a socket or touches a file: time and bytes
//! are parameters. The Cargo.toml of this crate is the proof.

pub mod channel;
pub mod diff;
pub mod graph;
pub mod ha;
pub mod param;
pub mod plan;
pub mod record;
pub mod split;
pub mod state;
pub mod vertex;
pub mod wire;

pub use channel::ChannelTable;
pub use param::{ParamDefault, ParamSpec, ParamType, ParamValue, Params};
pub use plan::{EdgeSettings, Layout, Overflow, Plan};
pub use record::{Batch, ChannelId, EventTime, Quality, Record, Seq};
pub use state::{freeze, thaw, SchemaId, Snapshot, SnapshotError};
pub use vertex::{
    Arity, BuildContext, BuildError, Builder, KindSpec, Migration, OutputSpec, Registry, Role,
    Sink, SinkError, Source, Vertex,
};
