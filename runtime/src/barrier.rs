//! Barrier-aligned snapshots of a running topology.
//!
//! To snapshot at origin sequence `s`, the ingress releases nothing beyond
//! `s` and holds what it polls past it. Every worker, once all its inputs
//! have passed `s` with nothing left to process, snapshots its vertices and
//! reports. Every vertex has then processed exactly the records up to `s`,
//! whatever the layout. When all workers have reported, the ingress releases
//! what it held and the stream goes on.

use crossbeam_channel::{Receiver, Sender};
use crossbeam_utils::sync::Unparker;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tandem_core::{Seq, Snapshot};

/// What one worker reports for a barrier.
#[derive(Debug)]
pub(crate) enum Report {
    /// The snapshots of its stateful vertices, by id.
    Snapshots(Vec<(String, Snapshot)>),
    /// The ingress had already sent records past the barrier.
    Passed(Seq),
}

/// Shared between the topology and its workers.
#[derive(Debug)]
pub(crate) struct Control {
    /// The barrier's sequence number; 0 when none is pending.
    at: AtomicU64,
    /// Counts barriers, so a worker reports each one once.
    generation: AtomicU64,
    /// Set by `place_now`: the ingress puts the barrier where it is.
    resolve: AtomicBool,
    reports: Sender<(u64, Report)>,
    /// Every worker's: a barrier the ingress places is news to all of them.
    workers: Vec<Unparker>,
}

/// A barrier a worker sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Pending {
    pub at: Seq,
    pub generation: u64,
}

impl Control {
    /// Control of the workers woken by `workers`.
    pub fn new(workers: Vec<Unparker>) -> (Control, Receiver<(u64, Report)>) {
        let (reports, rx) = crossbeam_channel::unbounded();
        (
            Control {
                at: AtomicU64::new(0),
                generation: AtomicU64::new(0),
                resolve: AtomicBool::new(false),
                reports,
                workers,
            },
            rx,
        )
    }

    /// The pending barrier, if any. Cheap: three loads per worker pass.
    ///
    /// `at` and `generation` are read between two reads of `generation`, so
    /// a pass never pairs one barrier's position with the next one's number:
    /// `lift` clears `at` before `place` bumps `generation`, and a reader that
    /// sees the bump sees the cleared or the new `at`.
    pub fn pending(&self) -> Option<Pending> {
        loop {
            // Both Acquire loads pair with the AcqRel bump in `place`/`place_now`.
            let generation = self.generation.load(Ordering::Acquire);
            // Pairs with the Release stores in `place`, `resolve` and `lift`.
            let at = self.at.load(Ordering::Acquire);
            if self.generation.load(Ordering::Acquire) == generation {
                return (at != 0).then_some(Pending {
                    at: Seq(at),
                    generation,
                });
            }
        }
    }

    /// Places a barrier at `at` (which must be at least 1).
    pub fn place(&self, at: Seq) -> u64 {
        // Pairs with the Acquire loads in `pending`.
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        // Pairs with the Acquire load in `pending`.
        self.at.store(at.0.max(1), Ordering::Release);
        generation
    }

    /// Places a barrier wherever the ingress is when it next looks: at the
    /// frontier it has sent so far.
    pub fn place_now(&self) -> u64 {
        // Pairs with the Acquire loads in `pending`.
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        // Pairs with the Acquire swap in `resolve`.
        self.resolve.store(true, Ordering::Release);
        generation
    }

    /// For the ingress: if a barrier waits to be placed, place it at
    /// `frontier`, and wake every worker (each may already have looked for
    /// it, found none, and be about to park) so that each reports it.
    pub fn resolve(&self, frontier: Seq) {
        // Pairs with the Release store in `place_now`.
        if self.resolve.swap(false, Ordering::Acquire) {
            // Pairs with the Acquire loads in `pending` and `at`.
            self.at.store(frontier.0.max(1), Ordering::Release);
            for worker in &self.workers {
                worker.unpark();
            }
        }
    }

    /// Where the pending barrier is (0 when none is placed yet).
    pub fn at(&self) -> Seq {
        // Pairs with the Release store in `resolve`.
        Seq(self.at.load(Ordering::Acquire))
    }

    /// Lifts the barrier: the ingress releases what it held.
    pub fn lift(&self) {
        self.resolve.store(false, Ordering::Relaxed);
        // Pairs with the Acquire loads in `pending`.
        self.at.store(0, Ordering::Release);
    }

    /// A worker's report for barrier `generation`.
    pub fn report(&self, generation: u64, report: Report) {
        let _ = self.reports.send((generation, report));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossbeam_utils::sync::Parker;
    use std::time::{Duration, Instant};

    #[test]
    fn a_barrier_the_ingress_places_wakes_every_worker() {
        let workers: Vec<Parker> = (0..3).map(|_| Parker::new()).collect();
        let (control, _reports) =
            Control::new(workers.iter().map(|p| p.unparker().clone()).collect());
        let generation = control.place_now();
        // Placed "now": nowhere yet, until the ingress looks.
        assert_eq!(control.pending(), None);
        control.resolve(Seq(7));
        assert_eq!(
            control.pending(),
            Some(Pending {
                at: Seq(7),
                generation
            })
        );
        // Each worker, parked on nothing else, sees it at once.
        for worker in &workers {
            let parked = Instant::now();
            worker.park_timeout(Duration::from_secs(30));
            assert!(
                parked.elapsed() < Duration::from_secs(20),
                "a worker slept through the barrier"
            );
        }
    }
}
