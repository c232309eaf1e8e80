//! Ingress: polls the sources when they are due, stamps origin sequence
//! numbers, and sets the frontier of everything it has sent.
//!
//! All sources of a graph are polled by this one sequencer, so the origin
//! sequence is a total order of the input. On the wall clock, sources are
//! polled when due in real time; on the virtual clock, time jumps straight to
//! the next due source, so replays and simulations run as fast as the graph.

use crate::node::{Body, NodeRt};
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
}

impl Ingress {
    /// An ingress for the source nodes at `nodes` (worker-local indices).
    pub fn new(nodes: Vec<usize>, clock: Clock, span: Option<Duration>) -> Ingress {
        let origin = Instant::now();
        let origin_time = match clock {
            Clock::Wall => wall_now(),
            Clock::Virtual { start, .. } => start,
        };
        let until =
            span.map(|d| origin_time.add_nanos(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)));
        Ingress {
            slots: nodes
                .into_iter()
                .map(|node| Slot {
                    node,
                    due: Some(origin_time),
                })
                .collect(),
            clock,
            origin,
            origin_time,
            until,
            next_seq: 0,
            ended: false,
            order: Vec::new(),
        }
    }

    /// Polls what is due. `stop` ends the stream after this pass.
    pub fn step(&mut self, nodes: &mut [NodeRt], stop: bool) -> Step {
        if self.ended {
            return Step::Ended;
        }
        let next_due = self.slots.iter().filter_map(|s| s.due).min();
        let now = match (self.clock, next_due) {
            (_, None) => return self.end(nodes),
            (Clock::Wall, Some(_)) => self.wall_time(),
            (Clock::Virtual { .. }, Some(due)) => due,
        };
        if stop || self.until.is_some_and(|until| now > until) {
            return self.end(nodes);
        }
        let Some(next_due) = next_due else {
            return self.end(nodes);
        };
        if next_due > now {
            let wait = u64::try_from(next_due.0.saturating_sub(now.0)).unwrap_or(0);
            return Step::Idle(Duration::from_nanos(wait).min(Duration::from_millis(100)));
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
                return Step::Idle((target - elapsed).min(Duration::from_millis(100)));
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
            let start = Instant::now();
            let before = node.out.len();
            slot.due = source.poll(now, &mut node.out);
            node.stats.record_latency(start.elapsed().as_nanos() as u64);
            node.stats.errors = source.errors();
            for record in &mut node.out[before..] {
                self.next_seq += 1;
                record.seq = Seq(self.next_seq);
            }
            node.stats.records_out += (node.out.len() - before) as u64;
        }
        self.order = order;
        let frontier = Seq(self.next_seq);
        for slot in &self.slots {
            nodes[slot.node].frontier = frontier;
        }
        Step::Polled
    }

    fn end(&mut self, nodes: &mut [NodeRt]) -> Step {
        self.ended = true;
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
