//! tandem: the shell around the pure core. Worker threads and rings, the
//! ingress that polls sources, and the command line.

mod barrier;
pub mod bundle;
pub mod checkpoint;
pub mod cpu;
pub mod ctl;
pub mod graph_file;
// The one harness for `tandem up` in tests and benches; only their
// dev-dependencies turn the feature on.
#[cfg(feature = "harness")]
#[doc(hidden)]
pub mod harness;
pub mod ingress;
pub mod logging;
pub mod metrics;
pub mod net;
mod node;
pub mod private;
pub mod ring;
pub mod service;
pub mod stats;
mod sync;
pub mod top;
pub mod topology;
pub mod up;
mod worker;

pub use ingress::Clock;
pub use stats::Report;
pub use topology::{
    Attached, BarrierError, BarrierSnapshots, PlacedBarrier, RunError, RunOptions, StartError,
    Topology,
};
