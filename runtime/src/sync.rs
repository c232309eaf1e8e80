//! Waking idle workers. One place that says how a worker waits, so every
//! wait in the executor spins briefly or parks, and never busy-waits long.

use crossbeam_utils::sync::{Parker, Unparker};
use std::time::{Duration, Instant};

/// How long an idle worker spins before it parks, when spinning pays.
const SPIN: Duration = Duration::from_micros(20);
/// A worker that has stopped spinning still spins one idle period in this
/// many, to notice when work comes quickly again (once parked, it cannot
/// tell: the time it sees includes its own wake-up).
const PROBE: u32 = 8;

/// Backoff for one worker: call [`Idle::wait`] each time a pass found nothing
/// to do, and [`Idle::reset`] each time one found work. A worker whose work
/// has been arriving within [`SPIN`] of running out spins for it (records
/// arriving microseconds apart are picked up without a wake-up); one whose
/// last idle period was longer parks at once (but for one period in
/// [`PROBE`]), so a worker waiting for batches that come every few hundred
/// microseconds does not burn a core between them, and an idle graph uses
/// no CPU.
#[derive(Debug)]
pub struct Idle {
    /// When the current idle period began.
    since: Option<Instant>,
    /// The last idle period ended within [`SPIN`]: spinning is worth it.
    spin: bool,
    /// Idle periods so far, for [`PROBE`].
    periods: u32,
}

impl Idle {
    /// Fresh backoff.
    pub fn new() -> Idle {
        Idle {
            since: None,
            spin: true,
            periods: 0,
        }
    }

    /// Work was found: ends the idle period, and learns from its length
    /// whether the next one should spin.
    #[inline]
    pub fn reset(&mut self) {
        if let Some(since) = self.since.take() {
            self.spin = since.elapsed() < SPIN;
            self.periods = self.periods.wrapping_add(1);
        }
    }

    /// Waits until `until_due` has passed or an unpark arrives, for a worker
    /// whose only work is polling sources (the ingress): spinning cannot
    /// make a source due sooner, so it parks, unless the wait is shorter
    /// than a spin (a park that short oversleeps).
    pub fn wait_for_due(&mut self, parker: &Parker, until_due: Duration) {
        self.since.get_or_insert_with(Instant::now);
        if until_due < SPIN {
            spin();
        } else {
            parker.park_timeout(until_due);
        }
    }

    /// Waits a little: spins (when spinning has been paying) until [`SPIN`]
    /// has passed, then parks up to `limit`. An unpark ends the park at once.
    pub fn wait(&mut self, parker: &Parker, limit: Duration) {
        let since = *self.since.get_or_insert_with(Instant::now);
        let spinning = self.spin || self.periods.is_multiple_of(PROBE);
        if spinning && since.elapsed() < SPIN {
            spin();
        } else {
            parker.park_timeout(limit);
        }
    }
}

/// A moment's busy wait.
fn spin() {
    for _ in 0..16 {
        std::hint::spin_loop();
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
