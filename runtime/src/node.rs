//! One node as a worker runs it: its input ports, its body, its output links.

use crate::ring::{RingRx, RingTx};
use crate::stats::NodeStats;
use tandem_core::{Record, Seq, Sink, Source, Vertex};

/// What a node does with its input.
pub(crate) enum Body {
    Source(Box<dyn Source>),
    Vertex(Box<dyn Vertex>),
    Sink(Box<dyn Sink>),
}

/// Where an input port's records come from.
pub(crate) enum PortFrom {
    /// An upstream node on the same worker writes into `Port::buf`.
    Local,
    /// Another worker, through a ring.
    Ring(RingRx),
}

/// One edge into a node.
pub(crate) struct Port {
    pub from: PortFrom,
    /// Records delivered (local) or pulled from the ring and waiting to be merged.
    pub buf: Vec<Record>,
    /// Nothing more will arrive at or below this sequence number.
    pub frontier: Seq,
}

/// Where one edge out of a node goes.
pub(crate) enum OutTo {
    /// A node later on the same worker: index into the worker's nodes, and its port.
    Local {
        node: usize,
        port: usize,
    },
    Ring(RingTx),
}

/// One edge out of a node.
pub(crate) struct OutLink {
    pub to: OutTo,
    /// Per channel id: does this edge carry it? `None` when it carries all the node's outputs.
    pub filter: Option<Vec<bool>>,
    /// `block` rings: output that did not fit yet, from `unsent_from` on.
    pub unsent: Vec<Record>,
    pub unsent_from: usize,
    /// The frontier to publish once `unsent` is out.
    pub unsent_frontier: Seq,
}

impl OutLink {
    /// A link to `to`.
    pub fn new(to: OutTo, filter: Option<Vec<bool>>) -> OutLink {
        OutLink {
            to,
            filter,
            unsent: Vec::new(),
            unsent_from: 0,
            unsent_frontier: Seq::ZERO,
        }
    }

    /// True while output waits for room in this link's ring.
    pub fn has_unsent(&self) -> bool {
        self.unsent_from < self.unsent.len()
            || matches!(&self.to, OutTo::Ring(tx) if tx.overflow() == tandem_core::Overflow::DropOldest && tx.has_pending())
    }
}

/// A node with everything it needs at run time.
pub(crate) struct NodeRt {
    pub body: Body,
    pub ports: Vec<Port>,
    pub outs: Vec<OutLink>,
    /// Output of the last run, delivered and cleared by the worker.
    pub out: Vec<Record>,
    /// Merge buffer for nodes with several ports.
    pub merged: Vec<Record>,
    /// Merge cursor per port.
    pub heads: Vec<usize>,
    /// Scratch for filtered output.
    pub scratch: Vec<Record>,
    /// Output frontier.
    pub frontier: Seq,
    /// True once END has been seen on every input and sent on every output.
    pub done: bool,
    /// A sink that has written since its last flush.
    pub unflushed: bool,
    pub stats: NodeStats,
    /// Most records taken from one ring in one pass.
    pub batch: usize,
}

impl NodeRt {
    /// Runs the node on whatever input is ready. Returns true if it did anything.
    pub fn run(&mut self) -> bool {
        if self.done || matches!(self.body, Body::Source(_)) {
            return false;
        }
        let before = self.frontier;
        let worked = if self.ports.len() == 1 {
            self.run_single()
        } else {
            self.run_merged()
        };
        if self.frontier > before {
            if let Body::Sink(sink) = &mut self.body {
                sink.advance(self.frontier);
            }
        }
        worked
    }

    fn run_single(&mut self) -> bool {
        let before = self.frontier;
        let port = &mut self.ports[0];
        match &mut port.from {
            PortFrom::Local => {
                let frontier = port.frontier;
                let input = std::mem::take(&mut port.buf);
                let worked = !input.is_empty();
                if worked {
                    apply(&mut self.body, &mut self.stats, &input, &mut self.out);
                    self.unflushed = true;
                }
                let mut input = input;
                input.clear();
                self.ports[0].buf = input;
                self.frontier = self.frontier.max(frontier);
                worked || self.frontier > before
            }
            PortFrom::Ring(rx) => {
                let frontier = rx.frontier();
                let (all_a, all_b) = rx.peek();
                let a = &all_a[..all_a.len().min(self.batch)];
                let b = &all_b[..all_b.len().min(self.batch - a.len())];
                let taken = a.len() + b.len();
                // The first record left behind, if the batch limit cut the run short.
                let next = all_a
                    .get(a.len())
                    .or_else(|| all_b.get(b.len()))
                    .map(|r| r.seq);
                if !a.is_empty() {
                    apply(&mut self.body, &mut self.stats, a, &mut self.out);
                    self.unflushed = true;
                }
                if !b.is_empty() {
                    apply(&mut self.body, &mut self.stats, b, &mut self.out);
                }
                rx.release(taken);
                // Below the first record left behind, everything has been seen.
                let effective = match next {
                    Some(seq) => frontier.min(Seq(seq.0.saturating_sub(1))),
                    None => frontier,
                };
                port.frontier = port.frontier.max(effective);
                self.frontier = self.frontier.max(effective);
                taken > 0 || self.frontier > before
            }
        }
    }

    fn run_merged(&mut self) -> bool {
        let before = self.frontier;
        let cap = self.batch.saturating_mul(4);
        let mut pulled = false;
        for port in &mut self.ports {
            if let PortFrom::Ring(rx) = &mut port.from {
                let frontier = rx.frontier();
                let room = cap.saturating_sub(port.buf.len());
                let (a, b) = rx.peek();
                let a = &a[..a.len().min(room)];
                let b = &b[..b.len().min(room - a.len())];
                let taken = a.len() + b.len();
                port.buf.extend_from_slice(a);
                port.buf.extend_from_slice(b);
                let left = rx.len() > taken;
                rx.release(taken);
                pulled |= taken > 0;
                let effective = match (left, port.buf.last()) {
                    (true, Some(last)) => frontier.min(Seq(last.seq.0.saturating_sub(1))),
                    (true, None) => port.frontier,
                    (false, _) => frontier,
                };
                port.frontier = port.frontier.max(effective);
            }
        }
        let frontier = self
            .ports
            .iter()
            .map(|p| p.frontier)
            .min()
            .unwrap_or(Seq::END);
        // Merge every record at or below the common frontier, by (seq, port).
        self.merged.clear();
        let heads = &mut self.heads;
        heads.clear();
        heads.resize(self.ports.len(), 0);
        loop {
            let mut best: Option<(Seq, usize)> = None;
            for (i, port) in self.ports.iter().enumerate() {
                if let Some(r) = port.buf.get(heads[i]) {
                    if r.seq <= frontier && best.is_none_or(|(s, _)| r.seq < s) {
                        best = Some((r.seq, i));
                    }
                }
            }
            let Some((_, i)) = best else { break };
            self.merged.push(self.ports[i].buf[heads[i]]);
            heads[i] += 1;
        }
        for (port, &n) in self.ports.iter_mut().zip(heads.iter()) {
            port.buf.drain(..n);
        }
        let worked = !self.merged.is_empty();
        if worked {
            let merged = std::mem::take(&mut self.merged);
            apply(&mut self.body, &mut self.stats, &merged, &mut self.out);
            self.merged = merged;
            self.unflushed = true;
        }
        self.frontier = self.frontier.max(frontier);
        worked || pulled || self.frontier > before
    }

    /// True when every input has ended and nothing is left to process.
    pub fn inputs_finished(&self) -> bool {
        self.ports.iter().all(|p| {
            p.frontier == Seq::END
                && p.buf.is_empty()
                && match &p.from {
                    PortFrom::Local => true,
                    PortFrom::Ring(rx) => rx.is_empty(),
                }
        })
    }

    /// Flushes a sink that has written since its last flush.
    pub fn flush(&mut self) {
        if !self.unflushed {
            return;
        }
        self.unflushed = false;
        if let Body::Sink(sink) = &mut self.body {
            if let Err(e) = sink.flush() {
                if self.stats.errors == 0 {
                    eprintln!("tandem: {e}");
                }
                self.stats.errors += 1;
            }
        }
    }

    /// Flushes a sink at the end of the stream.
    pub fn finish(&mut self) {
        self.unflushed = true;
        self.flush();
    }

    /// Sends `out` and the frontier along every ring link, never waiting;
    /// local links are delivered by the worker. A `block` ring that cannot
    /// take everything keeps the rest on the link, and the node does not run
    /// again until it is out.
    pub fn send_rings(&mut self) {
        for link in &mut self.outs {
            let OutTo::Ring(tx) = &mut link.to else {
                continue;
            };
            let records: &[Record] = match &link.filter {
                None => &self.out,
                Some(filter) => {
                    self.scratch.clear();
                    self.scratch.extend(
                        self.out
                            .iter()
                            .filter(|r| filter.get(r.channel.index()).copied().unwrap_or(false)),
                    );
                    &self.scratch
                }
            };
            if records.is_empty() && self.frontier <= tx.published() {
                continue;
            }
            if tx.overflow() == tandem_core::Overflow::Block {
                let pushed = tx.push_some(records, self.frontier);
                if pushed < records.len() {
                    link.unsent.clear();
                    link.unsent.extend_from_slice(&records[pushed..]);
                    link.unsent_from = 0;
                    link.unsent_frontier = self.frontier;
                }
            } else {
                tx.send_dropping(records, self.frontier);
            }
        }
    }

    /// Moves output that waited for room into the rings. Returns true if
    /// anything moved.
    pub fn flush_links(&mut self) -> bool {
        let mut moved = false;
        for link in &mut self.outs {
            let OutTo::Ring(tx) = &mut link.to else {
                continue;
            };
            if link.unsent_from < link.unsent.len() {
                let rest = &link.unsent[link.unsent_from..];
                let pushed = tx.push_some(rest, link.unsent_frontier);
                link.unsent_from += pushed;
                moved |= pushed > 0;
                if link.unsent_from == link.unsent.len() {
                    link.unsent.clear();
                    link.unsent_from = 0;
                }
            }
            let before = tx.has_pending();
            let still = tx.flush_pending();
            moved |= before && !still;
        }
        moved
    }

    /// True while some output waits for room in a ring.
    pub fn has_unsent(&self) -> bool {
        self.outs.iter().any(OutLink::has_unsent)
    }

    /// Asks the consumers of the rings this node waits on to wake this
    /// worker. Returns true if they are all still full, so parking is safe.
    pub fn arm_wakeups(&self) -> bool {
        self.outs
            .iter()
            .filter(|l| l.has_unsent())
            .all(|l| match &l.to {
                OutTo::Ring(tx) => tx.arm_wakeup(),
                OutTo::Local { .. } => true,
            })
    }
}

/// Runs a vertex or sink on `input`, timing the call if it is one of those
/// sampled.
fn apply(body: &mut Body, stats: &mut NodeStats, input: &[Record], out: &mut Vec<Record>) {
    let timer = stats.start_call();
    let before = out.len();
    match body {
        Body::Vertex(v) => v.process(input, out),
        Body::Sink(s) => {
            if let Err(e) = s.write(input) {
                if stats.errors == 0 {
                    eprintln!("tandem: {e}");
                }
                stats.errors += 1;
            }
        }
        Body::Source(_) => {}
    }
    stats.records_in += input.len() as u64;
    stats.records_out += (out.len() - before) as u64;
    stats.end_call(timer);
}
