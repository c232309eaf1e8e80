//! Bundles: signed archives that carry a new release of a graph (and
//! optionally of the runtime) to a gateway, and the gateway's checks
//! before it runs one as a live upgrade. docs/bundles.md is the reference.
//!
//! - [`manifest`]: what a bundle states (pure).
//! - [`sign`]: ed25519 keys and signatures.
//! - [`trust`]: the tracks, keys and identity a gateway is configured
//!   with, and the k-of-n rule.
//! - [`archive`]: the ustar container, read defensively in two passes.
//! - [`policy`]: expiry, compatibility, constraints, kinds and
//!   migrations, the floor, revocations (pure).
//! - [`verify`]: all of it, in order.
//! - [`floor`], [`revocation`]: what a gateway keeps, durably.
//! - [`build`]: `tandem bundle build`, `sign` and `revoke`.
//! - [`install`]: the gateway side: verify and unpack off the agent's
//!   loop, then follow the upgrade to its outcome.
//!
//! For a controller pushing to a gateway, the way in is
//! `tandem::up::control::install` on the agent (the same request as
//! `tandem install`), or, to check a file without an agent,
//! [`install::Gateway::check`].

pub mod archive;
pub mod build;
pub mod command;
pub mod floor;
mod hex;
pub mod install;
pub mod manifest;
pub mod policy;
pub mod revocation;
pub mod sign;
pub mod time;
pub mod trust;
pub mod verify;

pub use install::{Gateway, InstallError, Prepared, Unpacked};
pub use manifest::Manifest;
pub use time::UnixTime;
pub use verify::{Contents, Refusal, Verified};

#[cfg(test)]
mod tests;
