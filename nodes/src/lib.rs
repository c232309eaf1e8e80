//! tandem-nodes: the processing vocabulary.
//!
//! - [`ops`]: generic operators (scale, range check, windows, ...). Pure and
//!   deterministic; they run inside instances.
//! - [`domain`]: home-energy vertices (state of charge, heat-pump COP, EV
//!   charging sessions). Pure and deterministic too.
//! - [`io`]: sources and sinks, which touch devices and files and run at the
//!   edge of the graph.

pub mod domain;
pub mod io;
pub mod ops;

use tandem_core::Registry;

/// Every kind this build knows.
pub fn registry() -> Registry {
    let mut registry = Registry::new();
    registry.register(ops::KINDS);
    registry.register(domain::KINDS);
    registry.register(io::KINDS);
    registry
}
