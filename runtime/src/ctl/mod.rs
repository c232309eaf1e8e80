//! `tandem ctl`: the fleet controller. It holds the fleet's inventory,
//! enrols gateways (a certificate from its CA), talks to their agents over
//! QUIC with mutual TLS, rolls bundles out to a track in waves, and serves
//! a web page of the fleet. See docs/fleet.md.
//!
//! - [`plan`]: the rollout planner, a pure state machine.
//! - [`verdict`]: what counts as a gateway's success.
//! - [`fleet`]: the controller's state (inventory, rollouts, reports), pure.
//! - [`inventory`]: the controller's directory, tracks and `fleet.json`.
//! - [`enrol`]: the enrolment file a gateway is given.
//! - [`wire`]: the fleet link's frames; [`transport`]: its QUIC endpoints.
//! - [`bundle_check`]: what the controller checks of a bundle it rolls out.
//! - [`daemon`]: `tandem ctl serve`, the driver; [`web`]: its page.
//! - [`cli`]: the `tandem ctl` subcommands.

pub mod bundle_check;
pub mod cli;
pub mod daemon;
pub mod enrol;
pub mod fleet;
pub mod inventory;
pub mod plan;
pub mod transport;
pub mod verdict;
pub mod web;
pub mod wire;
