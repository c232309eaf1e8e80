//! A worker: one thread running a fused chain of nodes in topological order.

use crate::barrier::{Control, Pending, Report};
use crate::ingress::{Ingress, Step};
use crate::node::{Body, NodeRt, OutTo, PortFrom};
use crate::stats::NodeStats;
use crate::sync::{Idle, Wake};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Longest park while idle. Whatever gives a worker work unparks it at
/// once (a push into a ring it reads, room in a ring it writes, a source's
/// waker, a barrier placed or lifted, a stop), so this only bounds how long
/// a worker sleeps on nothing; each wake-up costs an idle gateway CPU.
const IDLE_PARK: Duration = Duration::from_secs(1);

pub(crate) struct Worker {
    pub nodes: Vec<NodeRt>,
    pub ingress: Option<Ingress>,
    pub wake: Wake,
    /// Ends the stream at the ingress (drain, then exit).
    pub stop: Arc<AtomicBool>,
    /// Gives up at once: a worker failed.
    pub abort: Arc<AtomicBool>,
    /// Barriers for aligned snapshots.
    pub barrier: Arc<Control>,
    /// Per node, this pass: may not run (its output, or a local consumer's,
    /// waits for room in a ring).
    pub stalled: Vec<bool>,
}

impl Worker {
    /// Runs until every node has seen the end of its input. Returns the nodes' stats.
    pub fn run(mut self) -> Vec<NodeStats> {
        let mut idle = Idle::new();
        let mut reported = 0u64;
        let sources: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| matches!(self.nodes[i].body, Body::Source(_)))
            .collect();
        let batch = self.nodes.iter().map(|n| n.batch).max().unwrap_or(1);
        loop {
            if self.abort.load(Ordering::Relaxed) {
                break;
            }
            let mut worked = false;
            let mut wait = IDLE_PARK;
            let mut sources_only = false;
            let pending = self.barrier.pending();
            self.find_stalled();
            let sources_stalled = self
                .nodes
                .iter()
                .zip(&self.stalled)
                .any(|(n, &stalled)| stalled && matches!(n.body, Body::Source(_)));
            if let Some(ingress) = self.ingress.as_mut().filter(|_| !sources_stalled) {
                let stop = self.stop.load(Ordering::Relaxed);
                // One ingress pass may give a single record (on the virtual
                // clock, each row of a replay is due at a time of its own):
                // poll again while passes give records, up to a batch, so
                // that the nodes run once per batch rather than per record.
                loop {
                    let before = output_len(&self.nodes, &sources);
                    match ingress.step(&mut self.nodes, stop, &self.barrier) {
                        Step::Polled => {
                            worked = true;
                            let after = output_len(&self.nodes, &sources);
                            if after <= before || after >= batch {
                                break;
                            }
                        }
                        Step::Idle(d) => {
                            wait = d;
                            // The ingress worker has no rings in: until a
                            // source is due, nothing can arrive.
                            sources_only = true;
                            break;
                        }
                        Step::Ended => break,
                    }
                }
            }
            for i in 0..self.nodes.len() {
                if self.nodes[i].has_unsent() {
                    worked |= self.nodes[i].flush_links();
                }
                if self.stalled[i] {
                    continue;
                }
                worked |= self.nodes[i].run();
                worked |= self.deliver(i);
            }
            if let Some(p) = pending.filter(|p| p.generation != reported) {
                if self.report_barrier(p) {
                    reported = p.generation;
                }
            }
            if self.nodes.iter().all(|n| n.done) {
                break;
            }
            if worked {
                idle.reset();
            } else {
                // Out of work: make what the sinks wrote visible before waiting.
                for node in &mut self.nodes {
                    node.flush();
                }
                let waiting = self.nodes.iter().any(NodeRt::has_unsent);
                let armed = self
                    .nodes
                    .iter()
                    .filter(|n| n.has_unsent())
                    .all(NodeRt::arm_wakeups);
                if !armed {
                    // Room appeared while arming: go round again at once.
                    continue;
                }
                if sources_only && !waiting {
                    idle.wait_for_due(&self.wake.parker, wait);
                } else {
                    idle.wait(&self.wake.parker, wait);
                }
            }
        }
        self.nodes.into_iter().map(|n| n.stats).collect()
    }

    /// Marks the nodes that may not run this pass: those whose output waits
    /// for room in a ring, and, so that no local buffer grows without bound,
    /// those feeding such a node on this worker. Consumers come later in
    /// topological order, so one backward sweep settles it.
    fn find_stalled(&mut self) {
        self.stalled.clear();
        self.stalled.resize(self.nodes.len(), false);
        for i in (0..self.nodes.len()).rev() {
            let node = &self.nodes[i];
            self.stalled[i] = node.has_unsent()
                || node.outs.iter().any(|link| match link.to {
                    OutTo::Local { node: j, .. } => self.stalled.get(j).copied().unwrap_or(false),
                    OutTo::Ring(_) => false,
                });
        }
    }

    /// Snapshots this worker's vertices once everything up to the barrier has
    /// gone through them. Returns true once reported.
    fn report_barrier(&mut self, p: Pending) -> bool {
        if let Some(ingress) = &self.ingress {
            if ingress.frontier() > p.at {
                self.barrier
                    .report(p.generation, Report::Passed(ingress.frontier()));
                return true;
            }
        }
        let settled = self.nodes.iter().all(|node| match node.body {
            Body::Source(_) => node.frontier >= p.at,
            _ => node.ports.iter().all(|port| {
                port.frontier >= p.at
                    && port.buf.is_empty()
                    && match &port.from {
                        PortFrom::Local => true,
                        PortFrom::Ring(rx) => rx.is_empty(),
                    }
            }),
        });
        if !settled {
            return false;
        }
        let snapshots = self
            .nodes
            .iter()
            .filter_map(|node| match &node.body {
                Body::Vertex(v) => v.snapshot().map(|s| (node.stats.id.clone(), s)),
                _ => None,
            })
            .collect();
        self.barrier
            .report(p.generation, Report::Snapshots(snapshots));
        true
    }

    /// Hands node `i`'s output to its consumers. Returns true if anything moved.
    fn deliver(&mut self, i: usize) -> bool {
        let (head, tail) = self.nodes.split_at_mut(i + 1);
        let node = &mut head[i];
        if node.done {
            return false;
        }
        let moved = !node.out.is_empty();
        let frontier = node.frontier;
        // A lone local consumer taking everything gets the buffer itself.
        if let [link] = node.outs.as_slice() {
            if let (OutTo::Local { node: to, port }, None) = (&link.to, &link.filter) {
                let port = &mut tail[to - i - 1].ports[*port];
                if port.buf.is_empty() {
                    std::mem::swap(&mut port.buf, &mut node.out);
                }
            }
        }
        for link in &node.outs {
            if let OutTo::Local { node: to, port } = link.to {
                let port = &mut tail[to - i - 1].ports[port];
                match &link.filter {
                    None => port.buf.extend_from_slice(&node.out),
                    Some(filter) => port.buf.extend(
                        node.out
                            .iter()
                            .filter(|r| filter.get(r.channel.index()).copied().unwrap_or(false)),
                    ),
                }
                port.frontier = port.frontier.max(frontier);
            }
        }
        node.send_rings();
        let waiting = node.has_unsent();
        node.out.clear();
        let ended = match node.body {
            Body::Source(_) => frontier == tandem_core::Seq::END,
            _ => node.inputs_finished() && frontier == tandem_core::Seq::END,
        };
        if ended && !waiting {
            node.finish();
            node.done = true;
        }
        moved
    }
}

/// Records the sources at `sources` have polled and not yet delivered.
fn output_len(nodes: &[NodeRt], sources: &[usize]) -> usize {
    sources
        .iter()
        .filter_map(|&i| nodes.get(i))
        .map(|n| n.out.len())
        .sum()
}
