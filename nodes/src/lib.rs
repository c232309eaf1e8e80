//! tandem-nodes: the processing vocabulary.
//!
//! - [`ops`]: generic operators (scale, range check, windows, ...). Pure and
//!   deterministic; they run inside instances.
//! - [`domain`]: home-energy vertices (state of charge, heat-pump COP, EV
//!   charging sessions). Pure and deterministic too.
//! - [`io`]: sources and sinks, which touch devices and files and run at the
//!   edge of the graph.
//! - [`devices`]: sources that poll sensor chips through the firmware drivers,
//!   on simulated chips or on a Linux gateway's buses.
//! - [`modbus`]: sources that poll whole devices over Modbus TCP or RTU.

pub mod devices;
pub mod domain;
pub mod io;
pub mod modbus;
pub mod ops;
#[cfg(test)]
mod testkit;

use tandem_core::Registry;

/// Every kind this build knows.
pub fn registry() -> Registry {
    let mut registry = Registry::new();
    registry.register(ops::KINDS);
    registry.register(domain::KINDS);
    registry.register(io::KINDS);
    registry.register(devices::KINDS);
    registry.register(modbus::KINDS);
    registry.register_checks(io::CHECKS);
    registry.register_checks(devices::CHECKS);
    registry.register_checks(modbus::CHECKS);
    registry
}
