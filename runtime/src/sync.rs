//! Waking idle workers. One place that says how a worker waits, so every
//! wait in the executor spins briefly, then yields, then parks.

use crossbeam_utils::sync::{Parker, Unparker};
use std::time::Duration;

/// How long a worker spins before it yields, then parks.
const SPIN_ROUNDS: u32 = 64;
const YIELD_ROUNDS: u32 = 16;

/// Backoff for one worker: call [`Idle::wait`] each time a pass found nothing to do.
#[derive(Debug)]
pub struct Idle {
    rounds: u32,
}

impl Idle {
    /// Fresh backoff.
    pub fn new() -> Idle {
        Idle { rounds: 0 }
    }

    /// Work was found: the next idle period starts spinning again.
    pub fn reset(&mut self) {
        self.rounds = 0;
    }

    /// Waits a little longer each round; parks (up to `limit`) once spinning
    /// and yielding have not helped. An unpark ends the park at once.
    pub fn wait(&mut self, parker: &Parker, limit: Duration) {
        self.rounds = self.rounds.saturating_add(1);
        if self.rounds < SPIN_ROUNDS {
            std::hint::spin_loop();
        } else if self.rounds < SPIN_ROUNDS + YIELD_ROUNDS {
            std::thread::yield_now();
        } else {
            parker.park_timeout(limit);
        }
    }
}

impl Default for Idle {
    fn default() -> Self {
        Idle::new()
    }
}

/// A worker's parker and a handle others use to wake it.
#[derive(Debug)]
pub struct Wake {
    /// Owned by the worker thread.
    pub parker: Parker,
    /// Cloned into every ring end that may need to wake the worker.
    pub unparker: Unparker,
}

impl Wake {
    /// A new parker pair.
    pub fn new() -> Wake {
        let parker = Parker::new();
        let unparker = parker.unparker().clone();
        Wake { parker, unparker }
    }
}

impl Default for Wake {
    fn default() -> Self {
        Wake::new()
    }
}
