//! The one harness for running `tandem up` in tests and benches
//! (`runtime/tests`, `tests/`, `benches/`); nothing else starts an agent.
//!
//! - [`Scratch`]: a directory of a test's own, removed on drop unless the
//!   test failed; [`wait_for`]: a bounded wait on an event.
//! - [`Launcher`] and [`Up`]: `tandem up` as a process of a given
//!   executable (the `tandem` binary, or a bench executable that serves the
//!   `up` and `instance` roles through [`serve_roles`]), its stderr and its
//!   instances' collected, killed on drop.
//! - [`InProcess`]: the agent on a thread of this process, for benches
//!   whose sink of their own observes the merged output.
//! - [`Agent`]: what both answer: status over the control socket and
//!   bounded waits for both instances serving, equal state hashes, a phase.
//! - [`status`]: readings of a status answer; [`proc`]: signals, process
//!   liveness and peak memory from /proc.
//!
//! Behind the `harness` feature, which only dev-dependencies turn on: the
//! `tandem` a gateway runs does not carry it.

mod agent;
mod inproc;
pub mod proc;
mod process;
mod roles;
mod scratch;
pub mod status;

pub use agent::{Agent, Control};
pub use inproc::{agent_config, InProcess, Unfinished};
pub use process::{release_binary, Launcher, Up};
pub(crate) use roles::withholds_output;
pub use roles::{serve_roles, WITHHOLD_OUTPUT};
pub use scratch::{wait_for, Scratch, POLL};
