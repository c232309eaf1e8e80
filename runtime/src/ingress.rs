//! Ingress: polls the sources when they are due, stamps origin sequence
//! numbers, and sets the frontier of everything it has sent.
//!
//! All sources of a graph are polled by this one sequencer, so the origin
//! sequence is a total order of the input. On the wall clock, sources are
//! polled when due in real time; on the virtual clock, time jumps straight to
//! the next due source, so replays and simulations run as fast as the graph.
//!
//! With a [`Reservation`] (a state directory), numbers are reserved durably
//! ahead of stamping, a block at a time, so that a run after a crash numbers
//! above everything this one may have emitted (see
//! [`crate::checkpoint::numbering`]). The write blocks this thread once per
//! half block; when it fails, sources are not polled until it succeeds.

use crate::barrier::Control;
use crate::checkpoint::Reservation;
use crate::node::{Body, NodeRt};
use crossbeam_utils::sync::Unparker;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Wake, Waker};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tandem_core::{EventTime, Seq};

/// How the ingress tells time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Clock {
    /// Real time: sources are polled when due, event time is the wall clock.
    Wall,
    /// Simulated time starting at `start`.
    Virtual {
        /// Event time of the first poll.
        start: EventTime,
        /// Event time runs this many times faster than wall time; `None`
        /// runs as fast as the graph goes.
        speed: Option<f64>,
    },
}

/// What one ingress pass did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Sources were polled, or the stream just ended.
    Polled,
    /// Nothing is due for this long.
    Idle(Duration),
    /// The stream has ended and END was sent.
    Ended,
}

struct Slot {
    /// Index of the source node in the worker.
    node: usize,
    due: Option<EventTime>,
    /// Set by the source's waker: poll it now, whatever `due` says.
    woken: Arc<AtomicBool>,
    /// Records polled past a pending barrier, released when it lifts.
    held: Vec<tandem_core::Record>,
}

/// Wakes the ingress worker on behalf of one source.
struct SourceWaker {
    woken: Arc<AtomicBool>,
    unparker: Unparker,
}

impl Wake for SourceWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // Pairs with the Acquire swap in `Ingress::step`.
        self.woken.store(true, Ordering::Release);
        self.unparker.unpark();
    }
}

pub(crate) struct Ingress {
    slots: Vec<Slot>,
    clock: Clock,
    origin: Instant,
    origin_time: EventTime,
    /// Stop polling past this ingress time.
    until: Option<EventTime>,
    next_seq: u64,
    ended: bool,
    /// Reused list of the sources due in a pass.
    order: Vec<usize>,
    /// The lowest frontier reported by relaying sources polled in this pass.
    relayed: Option<Seq>,
    /// Frontier sent so far.
    frontier: Seq,
    /// Ingress time of the last pass (virtual time never runs backwards).
    last_now: EventTime,
    /// The frontier to send once held records are released.
    held_frontier: Option<Seq>,
    /// With `hold_at_end`: told when the span is over.
    input_ended: Option<crossbeam_channel::Sender<()>>,
    /// Numbers reserved durably ahead of stamping, when they must outlive a crash.
    reservation: Option<Reservation>,
}

/// How long to wait before asking the state directory for numbers again.
const RESERVE_RETRY: Duration = Duration::from_millis(100);

/// Longest wait for a source to come due before the clock is read again
/// (the wall clock may have been stepped meanwhile), and for a barrier to
/// lift or a stop at the end of the input (both unpark the worker at once).
const IDLE_RECHECK: Duration = Duration::from_secs(1);

impl Ingress {
    /// An ingress for the source nodes at `nodes` (worker-local indices),
    /// on a worker woken by `unparker`. Hands every source its waker. New
    /// input is numbered after `after`, within `reservation` if given.
    pub fn new(
        nodes: Vec<usize>,
        all: &mut [NodeRt],
        unparker: &Unparker,
        clock: Clock,
        span: Option<Duration>,
        after: Seq,
        reservation: Option<Reservation>,
    ) -> Ingress {
        let origin = Instant::now();
        let origin_time = match clock {
            Clock::Wall => wall_now(),
            Clock::Virtual { start, .. } => start,
        };
        let until =
            span.map(|d| origin_time.add_nanos(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)));
        let slots = nodes
            .into_iter()
            .map(|node| {
                let woken = Arc::new(AtomicBool::new(false));
                if let Some(Body::Source(source)) = all.get_mut(node).map(|n| &mut n.body) {
                    source.set_waker(Waker::from(Arc::new(SourceWaker {
                        woken: woken.clone(),
                        unparker: unparker.clone(),
                    })));
                }
                Slot {
                    node,
                    due: Some(origin_time),
                    woken,
                    held: Vec::new(),
                }
            })
            .collect();
        Ingress {
            slots,
            clock,
            origin,
            origin_time,
            until,
            next_seq: after.0,
            ended: false,
            order: Vec::new(),
            relayed: None,
            frontier: after,
            last_now: origin_time,
            held_frontier: None,
            input_ended: None,
            reservation,
        }
    }

    /// Polls what is due. `stop` ends the stream after this pass. While a
    /// barrier is pending, nothing past it is sent.
    pub fn step(&mut self, nodes: &mut [NodeRt], stop: bool, control: &Control) -> Step {
        control.resolve(self.frontier);
        let barrier = control.pending().map(|p| p.at);
        if self.ended {
            return Step::Ended;
        }
        // Records held at a barrier that has lifted, or moved past them, go first.
        if let Some(held) = self.held_frontier {
            match barrier {
                None => {
                    self.release(nodes, None);
                    return Step::Polled;
                }
                Some(at) if at > self.frontier => {
                    self.release(nodes, Some(at.min(held)));
                    return Step::Polled;
                }
                Some(_) => {}
            }
        }
        if barrier.is_some_and(|at| self.frontier >= at) && !stop {
            // Everything up to the barrier is out; wait for it to lift.
            return Step::Idle(IDLE_RECHECK);
        }
        // A woken source is due now.
        for slot in &mut self.slots {
            // Pairs with the Release store in `SourceWaker::wake_by_ref`.
            if slot.due.is_some() && slot.woken.swap(false, Ordering::Acquire) {
                slot.due = Some(EventTime(i64::MIN));
            }
        }
        let next_due = self.slots.iter().filter_map(|s| s.due).min();
        let now = match (self.clock, next_due) {
            (_, None) => return self.hold_or_end(nodes, stop),
            (Clock::Wall, Some(_)) => self.wall_time(),
            (Clock::Virtual { .. }, Some(due)) => due.max(self.last_now),
        };
        self.last_now = now;
        if stop {
            return self.end(nodes);
        }
        if self.until.is_some_and(|until| now > until) {
            return self.hold_or_end(nodes, stop);
        }
        let Some(next_due) = next_due else {
            return self.end(nodes);
        };
        if next_due > now {
            let wait = u64::try_from(next_due.0.saturating_sub(now.0)).unwrap_or(0);
            return Step::Idle(Duration::from_nanos(wait).min(IDLE_RECHECK));
        }
        if let Clock::Virtual {
            speed: Some(speed), ..
        } = self.clock
        {
            // Paced simulated time: wait until the wall clock has caught up.
            let event_elapsed = now.0.saturating_sub(self.origin_time.0) as f64;
            let target = Duration::from_secs_f64((event_elapsed / speed / 1e9).max(0.0));
            let elapsed = self.origin.elapsed();
            if target > elapsed {
                return Step::Idle((target - elapsed).min(IDLE_RECHECK));
            }
        }
        // At least the next number must be reserved before anything is
        // polled; this writes a new mark when the reservation runs low.
        if let Some(reservation) = &mut self.reservation {
            if reservation.cover(Seq(self.next_seq).next()).is_err() {
                return Step::Idle(RESERVE_RETRY);
            }
        }
        // Poll in order of due time, then declaration order.
        let mut order = std::mem::take(&mut self.order);
        order.clear();
        order
            .extend((0..self.slots.len()).filter(|&i| self.slots[i].due.is_some_and(|d| d <= now)));
        order.sort_by_key(|&i| (self.slots[i].due, i));
        for &i in &order {
            let slot = &mut self.slots[i];
            let node = &mut nodes[slot.node];
            let Body::Source(source) = &mut node.body else {
                continue;
            };
            let timer = node.stats.start_call();
            let before = node.out.len();
            slot.due = source.poll(now, &mut node.out);
            node.stats.end_call(timer);
            node.stats.errors = source.errors();
            match source.relayed_frontier() {
                // Relayed records keep the sequence numbers they came with.
                Some(frontier) => {
                    self.relayed = Some(self.relayed.map_or(frontier, |f| f.min(frontier)))
                }
                None => {
                    if let Some(reservation) = &mut self.reservation {
                        let last = self
                            .next_seq
                            .saturating_add((node.out.len() - before) as u64);
                        if reservation.cover(Seq(last)).is_err() {
                            // A pass larger than half a block, on a disk that
                            // fails: what has no number that is sure to be
                            // new is dropped, never numbered.
                            let room = reservation.reserved().0.saturating_sub(self.next_seq);
                            let keep = before + usize::try_from(room).unwrap_or(usize::MAX);
                            if keep < node.out.len() {
                                tracing::warn!(
                                    "source `{}`: {} records dropped: no origin \
                                     sequence numbers reserved for them",
                                    node.stats.id,
                                    node.out.len() - keep
                                );
                                node.out.truncate(keep);
                            }
                        }
                    }
                    for record in &mut node.out[before..] {
                        self.next_seq += 1;
                        record.seq = Seq(self.next_seq);
                    }
                }
            }
            node.stats.records_out += (node.out.len() - before) as u64;
        }
        self.order = order;
        let mut frontier = self
            .relayed
            .take()
            .unwrap_or(Seq(self.next_seq))
            .max(self.frontier);
        // Read the barrier again after polling: input fed after a barrier was
        // placed is then sure to see it.
        if let Some(at) = control.pending().map(|p| p.at) {
            if frontier > at {
                // Hold what lies past the barrier.
                for slot in &mut self.slots {
                    let out = &mut nodes[slot.node].out;
                    let keep = out.partition_point(|r| r.seq <= at);
                    slot.held.extend(out.drain(keep..));
                }
                self.held_frontier = Some(frontier);
                frontier = at;
            }
        }
        self.frontier = frontier;
        for slot in &self.slots {
            nodes[slot.node].frontier = frontier;
        }
        Step::Polled
    }

    /// The input is over (the span has passed, or every source is
    /// exhausted): end the stream, or, with `hold_at_end`, hold here until
    /// stopped and say so once.
    fn hold_or_end(&mut self, nodes: &mut [NodeRt], stop: bool) -> Step {
        match &self.input_ended {
            Some(tx) if !stop => {
                let _ = tx.try_send(());
                Step::Idle(IDLE_RECHECK)
            }
            _ => self.end(nodes),
        }
    }

    /// At the end of the input, hold and tell `tx` instead of ending.
    pub fn hold_at_end(mut self, tx: Option<crossbeam_channel::Sender<()>>) -> Ingress {
        self.input_ended = tx;
        self
    }

    /// Sends what was held at a barrier: all of it with the frontier it came
    /// with, or, when a new barrier lies inside the held range, what lies up
    /// to it.
    fn release(&mut self, nodes: &mut [NodeRt], up_to: Option<Seq>) {
        let Some(held) = self.held_frontier else {
            return;
        };
        let frontier = match up_to {
            Some(at) if at < held => at,
            _ => held,
        };
        for slot in &mut self.slots {
            let keep = slot.held.partition_point(|r| r.seq <= frontier);
            nodes[slot.node].out.extend(slot.held.drain(..keep));
        }
        if frontier == held {
            self.held_frontier = None;
        }
        self.frontier = self.frontier.max(frontier);
        for slot in &self.slots {
            nodes[slot.node].frontier = self.frontier;
        }
    }

    /// The frontier sent so far.
    pub fn frontier(&self) -> Seq {
        self.frontier
    }

    fn end(&mut self, nodes: &mut [NodeRt]) -> Step {
        self.release(nodes, None);
        self.ended = true;
        // A barrier still pending below the end is reported as passed, never
        // as a snapshot of a state that lacks what lay between.
        self.frontier = Seq::END;
        for slot in &self.slots {
            nodes[slot.node].frontier = Seq::END;
        }
        Step::Polled
    }

    fn wall_time(&self) -> EventTime {
        let elapsed = i64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(i64::MAX);
        self.origin_time.add_nanos(elapsed)
    }
}

/// The wall clock as event time.
pub fn wall_now() -> EventTime {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    EventTime(nanos)
}
