//! Waking idle workers. One place that says how a worker waits, so every
//! wait in the executor spins briefly, then yields, then parks.

use crossbeam_utils::sync::{Parker, Unparker};
use std::time::{Duration, Instant};

/// How long an idle worker spins before it starts yielding its core.
const SPIN: Duration = Duration::from_micros(20);
/// How long it yields before it parks.
const YIELD: Duration = Duration::from_micros(50);

/// Backoff for one worker: call [`Idle::wait`] each time a pass found nothing
/// to do. A worker that just had work spins briefly (records arriving within
/// microseconds are picked up without a wake-up), then yields, then parks, so
/// an idle graph uses no CPU.
#[derive(Debug)]
pub struct Idle {
    since: Option<Instant>,
}

impl Idle {
    /// Fresh backoff.
    pub fn new() -> Idle {
        Idle { since: None }
    }

    /// Work was found: the next idle period starts spinning again.
    pub fn reset(&mut self) {
        self.since = None;
    }

    /// Waits until `until_due` has passed or an unpark arrives, for a worker
    /// whose only work is polling sources (the ingress): spinning cannot
    /// make a source due sooner, so it parks unless the wait is shorter than
    /// a spin.
    pub fn wait_for_due(&mut self, parker: &Parker, until_due: Duration) {
        if until_due < SPIN {
            self.wait(parker, until_due);
        } else {
            parker.park_timeout(until_due);
        }
    }

    /// Waits a little: spin, then yield, then park up to `limit`. An unpark
    /// ends the park at once.
    pub fn wait(&mut self, parker: &Parker, limit: Duration) {
        let since = *self.since.get_or_insert_with(Instant::now);
        let idle = since.elapsed();
        if idle < SPIN {
            for _ in 0..16 {
                std::hint::spin_loop();
            }
        } else if idle < YIELD {
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
