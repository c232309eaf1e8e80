//! A running plan: nodes built, rings created, one thread per worker.

use crate::barrier::{Control, Report as BarrierReport};
use crate::checkpoint::{self, Checkpoint, Reservation, RestoreReport};
use crate::ingress::{Clock, Ingress};
use crate::node::{Body, NodeRt, OutLink, OutTo, Port, PortFrom};
use crate::ring::{ring, RingRx, RingTx};
use crate::stats::{NodeStats, Report};
use crate::sync::Wake;
use crate::worker::Worker;
use crossbeam_channel::{Receiver, Sender};
use crossbeam_utils::sync::Unparker;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use tandem_core::{BuildContext, Builder, Plan, Seq};
use thiserror::Error;

/// How to run a plan.
#[derive(Clone, Copy, Debug)]
pub struct RunOptions {
    /// Wall or virtual clock.
    pub clock: Clock,
    /// Stop polling sources after this much ingress time (then drain and exit).
    pub span: Option<Duration>,
    /// When the input is over (the end of `span`, or every source exhausted),
    /// hold instead of ending the stream, and say so on
    /// [`Topology::input_ended`]; the stream ends on [`Topology::stop`]. Lets
    /// a caller take a last barrier snapshot of everything the input produced.
    pub hold_at_end: bool,
    /// Most records a node takes from a ring in one pass.
    pub batch: usize,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            clock: Clock::Wall,
            span: None,
            hold_at_end: false,
            batch: 1024,
        }
    }
}

/// Sources and sinks built by the caller, by node id, for
/// [`Topology::start_with`].
#[derive(Default)]
pub struct Attached {
    /// Sources by node id.
    pub sources: BTreeMap<String, Box<dyn tandem_core::Source>>,
    /// Sinks by node id.
    pub sinks: BTreeMap<String, Box<dyn tandem_core::Sink>>,
}

impl std::fmt::Debug for Attached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attached")
            .field("sources", &self.sources.keys().collect::<Vec<_>>())
            .field("sinks", &self.sinks.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// The plan could not be started.
#[derive(Debug, Error)]
pub enum StartError {
    /// Kinds refused to build nodes (a device that cannot be opened, a file
    /// that cannot be read). Every failing node is listed, one message each;
    /// each message names its node.
    #[error("{}", .0.join("\n"))]
    Build(Vec<String>),
    /// Some sources relay sequenced records and others need stamping: the
    /// input would have no single order.
    #[error("sources {relaying:?} relay already-sequenced records but {stamping:?} need stamping; a graph takes one or the other")]
    MixedSequencing {
        /// Ids of relaying sources.
        relaying: Vec<String>,
        /// Ids of sources the ingress stamps.
        stamping: Vec<String>,
    },
    /// More than one source relays sequenced records: the ingress takes its
    /// frontier from one relay (the instance side of a junction).
    #[error(
        "sources {0:?} all relay sequenced records; a graph takes at most one relaying source"
    )]
    SeveralRelays(Vec<String>),
    /// The operating system refused a thread.
    #[error("cannot start worker thread `{worker}`: {source}")]
    Spawn {
        /// Worker name.
        worker: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// A barrier snapshot could not be taken.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum BarrierError {
    /// Records past the barrier had already been sent.
    #[error("barrier at {at} is behind the ingress, which has sent up to {frontier}; place it at or after {frontier}")]
    Passed {
        /// The barrier asked for.
        at: Seq,
        /// The ingress frontier.
        frontier: Seq,
    },
    /// The run has ended: there is nothing left to snapshot.
    #[error("the run has ended; no barrier can be placed")]
    Ended,
    /// Not every worker reached the barrier in time (the input has not
    /// reached it yet, or the run is ending).
    #[error("not every worker reached the barrier at {at} within {waited:?}")]
    Timeout {
        /// The barrier asked for.
        at: Seq,
        /// How long it waited.
        waited: Duration,
    },
}

/// A barrier placed in a running topology, to collect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "collect the barrier with `barrier_snapshots`, or the stream stays held"]
pub struct PlacedBarrier {
    /// Its origin sequence number.
    pub at: Seq,
    generation: u64,
}

/// The snapshots taken at a barrier.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BarrierSnapshots {
    /// The barrier's origin sequence number.
    pub at: Seq,
    /// Snapshots of the stateful vertices, by id.
    pub vertices: BTreeMap<String, tandem_core::Snapshot>,
}

/// A run ended badly.
#[derive(Debug, Error)]
pub enum RunError {
    /// A worker thread panicked: a bug in a node or the executor.
    #[error("worker `{0}` panicked; the run was aborted")]
    WorkerPanicked(String),
}

/// A plan running on its worker threads.
#[derive(Debug)]
pub struct Topology {
    handles: Vec<(String, JoinHandle<Vec<NodeStats>>)>,
    order: Vec<String>,
    stop: Arc<AtomicBool>,
    abort: Arc<AtomicBool>,
    unparkers: Vec<Unparker>,
    done: Receiver<()>,
    barrier: Arc<Control>,
    reports: Receiver<(u64, BarrierReport)>,
    input_ended: Receiver<()>,
}

impl Topology {
    /// Builds every node and starts the workers.
    pub fn start(plan: &Plan, options: RunOptions) -> Result<Topology, StartError> {
        Topology::start_from(plan, options, None).map(|(t, _)| t)
    }

    /// Builds every node, restores the vertices a checkpoint holds, and
    /// starts the workers; the ingress numbers new input after the
    /// checkpoint's sequence number. Returns what was restored.
    pub fn start_from(
        plan: &Plan,
        options: RunOptions,
        checkpoint: Option<&Checkpoint>,
    ) -> Result<(Topology, Option<RestoreReport>), StartError> {
        Topology::start_with(plan, options, checkpoint, Attached::default())
    }

    /// [`Topology::start_from`], with some nodes built by the caller instead
    /// of by their kind: the junction ends of `tandem up`, which carry
    /// channels to the network.
    pub fn start_with(
        plan: &Plan,
        options: RunOptions,
        checkpoint: Option<&Checkpoint>,
        attached: Attached,
    ) -> Result<(Topology, Option<RestoreReport>), StartError> {
        Topology::start_numbered(plan, options, checkpoint, attached, None)
    }

    /// [`Topology::start_with`], numbering new input within `reservation`
    /// when given: after [`Reservation::after`] (at least the checkpoint's
    /// sequence number), never past what is reserved on disk, so that
    /// numbers stay unique across crashes. For `tandem run --state-dir` and
    /// the agent's ingress.
    pub fn start_numbered(
        plan: &Plan,
        options: RunOptions,
        checkpoint: Option<&Checkpoint>,
        mut attached: Attached,
        reservation: Option<Reservation>,
    ) -> Result<(Topology, Option<RestoreReport>), StartError> {
        let wakes: Vec<Wake> = plan.workers.iter().map(|_| Wake::new()).collect();
        let mut txs: BTreeMap<usize, RingTx> = BTreeMap::new();
        let mut rxs: BTreeMap<usize, RingRx> = BTreeMap::new();
        for (e, edge) in plan.edges.iter().enumerate() {
            if edge.fused {
                continue;
            }
            let consumer = wakes[plan.nodes[edge.to].worker].unparker.clone();
            let producer = wakes[plan.nodes[edge.from].worker].unparker.clone();
            let (tx, rx) = ring(
                edge.settings.capacity,
                edge.settings.overflow,
                consumer,
                producer,
            );
            txs.insert(e, tx);
            rxs.insert(e, rx);
        }
        // Position of every node inside its worker.
        let mut local = vec![0usize; plan.nodes.len()];
        for worker in &plan.workers {
            for (pos, &n) in worker.nodes.iter().enumerate() {
                local[n] = pos;
            }
        }
        let batch = options.batch.max(1);
        let mut built: Vec<Option<NodeRt>> = Vec::with_capacity(plan.nodes.len());
        let mut refused: Vec<String> = Vec::new();
        for node in &plan.nodes {
            let ctx = BuildContext {
                id: &node.id,
                params: &node.params,
                inputs: &node.inputs,
                outputs: &node.outputs,
                channels: &plan.channels,
            };
            let body = if let Some(source) = attached.sources.remove(&node.id) {
                Ok(Body::Source(source))
            } else if let Some(sink) = attached.sinks.remove(&node.id) {
                Ok(Body::Sink(sink))
            } else {
                match node.kind.build {
                    Builder::Source(build) => build(&ctx).map(Body::Source),
                    Builder::Vertex(build) => build(&ctx).map(Body::Vertex),
                    Builder::Sink(build) => build(&ctx).map(Body::Sink),
                }
            };
            let body = match body {
                Ok(body) => body,
                Err(e) => {
                    refused.push(e.message);
                    built.push(None);
                    continue;
                }
            };
            let mut stats = NodeStats::new(&node.id, node.role(), node.worker);
            let inputs = node.in_edges.len();
            let merging = inputs > 1;
            let filtering = node
                .out_edges
                .iter()
                .any(|&e| plan.edges[e].channels.len() < node.outputs.len());
            let ports = node
                .in_edges
                .iter()
                .map(|e| Port {
                    from: match rxs.remove(e) {
                        Some(rx) => {
                            stats.add_ring_in(rx.counters());
                            PortFrom::Ring(rx)
                        }
                        None => PortFrom::Local,
                    },
                    buf: Vec::with_capacity(batch),
                    frontier: Seq::ZERO,
                })
                .collect();
            let outs = node
                .out_edges
                .iter()
                .map(|&e| {
                    let edge = &plan.edges[e];
                    let filter = (edge.channels.len() < node.outputs.len()).then(|| {
                        let mut wanted = vec![false; plan.channels.len()];
                        for c in &edge.channels {
                            if let Some(w) = wanted.get_mut(c.index()) {
                                *w = true;
                            }
                        }
                        wanted
                    });
                    let to = match txs.remove(&e) {
                        Some(tx) => OutTo::Ring(tx),
                        None => OutTo::Local {
                            node: local[edge.to],
                            port: plan.nodes[edge.to]
                                .in_edges
                                .iter()
                                .position(|&i| i == e)
                                .unwrap_or(0),
                        },
                    };
                    OutLink::new(to, filter)
                })
                .collect();
            built.push(Some(NodeRt {
                body,
                ports,
                outs,
                out: Vec::with_capacity(batch),
                // Room for one batch per input; a merge that falls further
                // behind (up to four batches per input, see `run_merged`)
                // grows once and keeps the room.
                merged: Vec::with_capacity(if merging { batch * inputs } else { 0 }),
                heads: Vec::with_capacity(inputs),
                scratch: Vec::with_capacity(if filtering { batch } else { 0 }),
                frontier: Seq::ZERO,
                done: false,
                unflushed: false,
                stats,
                batch,
            }));
        }
        if !refused.is_empty() {
            return Err(StartError::Build(refused));
        }
        // State written by older schemas of a kind is migrated first.
        let upgraded = checkpoint.map(|ckpt| upgrade_checkpoint(plan, ckpt));
        let restored = upgraded.as_ref().map(|ckpt| {
            checkpoint::restore(
                ckpt,
                built.iter_mut().flatten().filter_map(|node| match node {
                    NodeRt {
                        body: Body::Vertex(v),
                        stats,
                        ..
                    } => Some((stats.id.as_str(), v.as_mut())),
                    _ => None,
                }),
            )
        });
        // A reservation resumes above its checkpoint already.
        let after = reservation.as_ref().map_or_else(
            || checkpoint.map_or(Seq::ZERO, |c| c.seq),
            Reservation::after,
        );
        let mut reservation = reservation;
        let (mut relaying, mut stamping) = (Vec::new(), Vec::new());
        for (node, rt) in plan.nodes.iter().zip(&built) {
            if let Some(NodeRt {
                body: Body::Source(source),
                ..
            }) = rt
            {
                match source.relayed_frontier() {
                    Some(_) => relaying.push(node.id.clone()),
                    None => stamping.push(node.id.clone()),
                }
            }
        }
        if !relaying.is_empty() && !stamping.is_empty() {
            return Err(StartError::MixedSequencing { relaying, stamping });
        }
        if relaying.len() > 1 {
            return Err(StartError::SeveralRelays(relaying));
        }

        let stop = Arc::new(AtomicBool::new(false));
        let abort = Arc::new(AtomicBool::new(false));
        let (control, reports) = Control::new(wakes.iter().map(|w| w.unparker.clone()).collect());
        let (span_tx, input_ended) = if options.hold_at_end {
            let (tx, rx) = crossbeam_channel::bounded::<()>(1);
            (Some(tx), rx)
        } else {
            (None, crossbeam_channel::never())
        };
        let barrier = Arc::new(control);
        let (done_tx, done) = crossbeam_channel::bounded::<()>(0);
        let unparkers: Vec<Unparker> = wakes.iter().map(|w| w.unparker.clone()).collect();
        let mut handles = Vec::with_capacity(plan.workers.len());
        for ((w, worker), wake) in plan.workers.iter().enumerate().zip(wakes) {
            let mut nodes: Vec<NodeRt> = worker
                .nodes
                .iter()
                .filter_map(|&n| built[n].take())
                .collect();
            let sources: Vec<usize> = nodes
                .iter()
                .enumerate()
                .filter(|(_, n)| matches!(n.body, Body::Source(_)))
                .map(|(i, _)| i)
                .collect();
            let ingress = (w == 0).then(|| {
                Ingress::new(
                    sources,
                    &mut nodes,
                    &wake.unparker,
                    options.clock,
                    options.span,
                    after,
                    reservation.take(),
                )
                .hold_at_end(span_tx.clone())
            });
            let runner = Worker {
                nodes,
                ingress,
                wake,
                stop: stop.clone(),
                abort: abort.clone(),
                barrier: barrier.clone(),
                stalled: Vec::new(),
            };
            let done_tx: Sender<()> = done_tx.clone();
            let abort_on_panic = abort.clone();
            let everyone = unparkers.clone();
            let handle = std::thread::Builder::new()
                .name(format!("tandem-{}", worker.name))
                .spawn(move || {
                    let guard = PanicGuard {
                        abort: abort_on_panic,
                        unparkers: everyone,
                    };
                    let stats = runner.run();
                    std::mem::forget(guard);
                    drop(done_tx);
                    stats
                })
                .map_err(|source| StartError::Spawn {
                    worker: worker.name.clone(),
                    source,
                })?;
            handles.push((worker.name.clone(), handle));
        }
        let topology = Topology {
            handles,
            order: plan.nodes.iter().map(|n| n.id.clone()).collect(),
            stop,
            abort,
            unparkers,
            done,
            barrier,
            reports,
            input_ended,
        };
        Ok((topology, restored))
    }

    /// Places a barrier at origin sequence `at`: from now on the ingress
    /// sends nothing past `at` until the barrier's snapshots are collected
    /// with [`Topology::barrier_snapshots`]. Place it before input past `at`
    /// reaches a relaying source.
    pub fn place_barrier(&mut self, at: Seq) -> PlacedBarrier {
        let generation = self.barrier.place(at);
        self.unpark_all();
        PlacedBarrier { at, generation }
    }

    /// Places a barrier where the ingress is now: at the frontier of what
    /// it has sent so far. For periodic checkpoints.
    pub fn place_barrier_now(&mut self) -> PlacedBarrier {
        let generation = self.barrier.place_now();
        self.unpark_all();
        PlacedBarrier {
            at: Seq::ZERO,
            generation,
        }
    }

    /// Waits until every worker has snapshotted its vertices at the barrier,
    /// then lets the stream go on. Each vertex has processed exactly the
    /// records up to the barrier, on any layout. Returns where the barrier
    /// was and the snapshots of the stateful vertices by id.
    pub fn barrier_snapshots(
        &mut self,
        placed: PlacedBarrier,
        timeout: Duration,
    ) -> Result<BarrierSnapshots, BarrierError> {
        let PlacedBarrier { at, generation } = placed;
        let deadline = std::time::Instant::now() + timeout;
        let mut snapshots = BTreeMap::new();
        let mut reported = 0;
        let result = loop {
            if reported == self.handles.len() {
                break Ok(BarrierSnapshots {
                    at: self.barrier.at(),
                    vertices: std::mem::take(&mut snapshots),
                });
            }
            let report = crossbeam_channel::select! {
                recv(self.reports) -> report => report.ok(),
                recv(self.done) -> _ => break Err(BarrierError::Ended),
                default(deadline.saturating_duration_since(std::time::Instant::now())) => None,
            };
            match report {
                Some((g, _)) if g != generation => {}
                Some((_, BarrierReport::Snapshots(list))) => {
                    snapshots.extend(list);
                    reported += 1;
                }
                Some((_, BarrierReport::Passed(frontier))) => {
                    break Err(BarrierError::Passed { at, frontier });
                }
                None => {
                    break Err(BarrierError::Timeout {
                        at,
                        waited: timeout,
                    })
                }
            }
        };
        self.barrier.lift();
        self.unpark_all();
        result
    }

    /// [`Topology::place_barrier`] then [`Topology::barrier_snapshots`].
    pub fn snapshot_at(
        &mut self,
        at: Seq,
        timeout: Duration,
    ) -> Result<BarrierSnapshots, BarrierError> {
        let placed = self.place_barrier(at);
        self.barrier_snapshots(placed, timeout)
    }

    fn unpark_all(&self) {
        for u in &self.unparkers {
            u.unpark();
        }
    }

    /// Ends the input: sources stop, everything in flight drains to the sinks.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        self.unpark_all();
    }

    /// Waits up to `timeout` for every worker to finish. True if they have.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        matches!(
            self.done.recv_timeout(timeout),
            Err(crossbeam_channel::RecvTimeoutError::Disconnected)
        )
    }

    /// Receives once when the input is over and the ingress holds (with
    /// [`RunOptions::hold_at_end`]).
    pub fn input_ended(&self) -> &Receiver<()> {
        &self.input_ended
    }

    /// A receiver that disconnects when every worker has finished (for `select!`).
    pub fn finished(&self) -> &Receiver<()> {
        &self.done
    }

    /// Waits for the workers and gathers their stats in plan order.
    pub fn join(self) -> Result<Report, RunError> {
        let mut all: Vec<NodeStats> = Vec::new();
        let mut failed = None;
        for (name, handle) in self.handles {
            match handle.join() {
                Ok(stats) => all.extend(stats),
                Err(_) => failed = Some(name),
            }
        }
        if let Some(name) = failed {
            self.abort.store(true, Ordering::Relaxed);
            return Err(RunError::WorkerPanicked(name));
        }
        let order = &self.order;
        all.sort_by_key(|s| {
            order
                .iter()
                .position(|id| *id == s.id)
                .unwrap_or(usize::MAX)
        });
        Ok(Report { nodes: all })
    }
}

/// The checkpoint with every snapshot brought to its vertex kind's current
/// state schema where a migration chain exists; others are left for
/// `restore` to refuse with the schema named.
fn upgrade_checkpoint(plan: &Plan, checkpoint: &Checkpoint) -> Checkpoint {
    let mut upgraded = checkpoint.clone();
    for (id, snapshot) in &mut upgraded.vertices {
        if let Some(node) = plan.node(id) {
            if let Ok(current) = node.kind.upgrade(snapshot) {
                *snapshot = current;
            }
        }
    }
    upgraded
}

/// Aborts the other workers if this one unwinds, so none waits forever for it.
struct PanicGuard {
    abort: Arc<AtomicBool>,
    unparkers: Vec<Unparker>,
}

impl Drop for PanicGuard {
    fn drop(&mut self) {
        self.abort.store(true, Ordering::Relaxed);
        for u in &self.unparkers {
            u.unpark();
        }
    }
}
