//! An instance process: the vertices of a graph between a relay (input from
//! the agent) and a forwarding sink (output to the agent), over one QUIC link.
//!
//! Three threads share the work:
//! - the network (a current-thread tokio runtime): reads frames, answers
//!   heartbeats at once, and writes whatever the others queue;
//! - control: owns the [`Topology`]; feeds input, takes barrier snapshots,
//!   checkpoints, streams and restores snapshots, in frame order;
//! - the topology's workers, whose output sink encodes `Output` frames.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tandem_core::ha::{Color, Role, ToAgent, ToInstance};
use tandem_core::split::{FROM_AGENT, TO_AGENT};
use tandem_core::wire::{self, BatchKind};
use tandem_core::{ChannelId, ChannelTable, Plan, Record, Seq};
use thiserror::Error;
use tokio::sync::mpsc::UnboundedSender;

use super::dirs::StateDir;
use super::ends::{relay, Batch, Encode, Encoded, RelayFeed};
use crate::checkpoint::{self, format, Checkpoint, CheckpointStore, GraphStamp};
use crate::net::{CaError, Client, EndpointError, LinkError, TransportOptions};
use crate::topology::{Attached, BarrierError, RunOptions, StartError, Topology};
use crate::Clock;

/// The agent sends heartbeats every few milliseconds: silence this long
/// means it is gone, and the instance exits.
const AGENT_SILENCE: Duration = Duration::from_secs(3);
/// Bytes of snapshot per frame.
const CHUNK: usize = 1 << 20;
/// Largest snapshot accepted from the agent.
const MAX_SNAPSHOT: u64 = 1 << 30;
// What bounds an instance's memory (docs/ha.md, "Memory"): input waits in
// QUIC's flow control, then in CONTROL_FRAMES and RELAY_BATCHES frames of at
// most the agent's batch (4096 records, 128 KiB); output in OUTPUT_BYTES.

/// Records per `Output` frame at most (128 KiB).
const OUTPUT_RECORDS: usize = 4096;
/// Output bytes waiting for the link beyond which the topology waits.
const OUTPUT_BYTES: usize = 8 << 20;
/// Frames read from the link and not yet handled, at most.
const CONTROL_FRAMES: usize = 16;
/// Input batches handed to the topology and not yet taken, at most.
const RELAY_BATCHES: usize = 16;
/// Snapshots kept for a `SnapshotRequest` that arrives after its barrier.
const KEPT: usize = 2;

/// Why the agent's command line for an instance is not one.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum LaunchError {
    /// The arguments do not start with `instance`.
    #[error("expected `instance ...`")]
    NotInstance,
    /// A flag came last, without its value.
    #[error("`{0}` needs a value")]
    NoValue(String),
    /// `--color` names no colour.
    #[error("no colour `{0}`; blue or green")]
    Color(String),
    /// `--agent` is not an address.
    #[error("--agent: {0}")]
    Agent(std::net::AddrParseError),
    /// `--batch` is not a count.
    #[error("--batch: {0}")]
    Batch(std::num::ParseIntError),
    /// A required argument is missing (`--color`, `--agent`, `--state-dir`, the graph file).
    #[error("no {0}")]
    Missing(&'static str),
}

/// Why an instance stopped other than by the agent closing its link.
#[derive(Debug, Error)]
pub enum InstanceError {
    /// The command line is not the agent's (see [`Launch::parse`]).
    #[error(transparent)]
    Launch(#[from] LaunchError),
    /// The graph file could not be loaded.
    #[error(transparent)]
    Graph(#[from] crate::graph_file::GraphFileError),
    /// The graph cannot be cut for 1+1.
    #[error("{file}: error: {source}")]
    Split {
        /// The graph file.
        file: std::path::PathBuf,
        /// What is wrong with it.
        source: tandem_core::split::SplitError,
    },
    /// The network runtime or the control thread could not start.
    #[error("cannot start the {what}: {source}")]
    Start {
        /// "network runtime" or "control thread".
        what: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// The instance's certificate or the site's trust could not be read.
    #[error("no certificate for {name}: {source}")]
    Certificate {
        /// Whose.
        name: &'static str,
        /// Why.
        source: CaError,
    },
    /// The QUIC endpoint could not be set up.
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    /// The agent could not be reached.
    #[error("cannot reach the agent at {agent}: {source}")]
    Connect {
        /// Its address.
        agent: SocketAddr,
        /// Why.
        source: LinkError,
    },
    /// The link to the agent failed.
    #[error(transparent)]
    Link(#[from] LinkError),
    /// Nothing came from the agent for this long: it is gone.
    #[error("the agent has been silent for {0:?}")]
    AgentSilent(Duration),
    /// The control thread stopped on an error.
    #[error(transparent)]
    Control(#[from] ControlError),
    /// The control thread ended without saying why (it panicked).
    #[error("the control thread stopped")]
    ControlStopped,
}

/// Why the control thread stopped the instance.
#[derive(Debug, Error)]
pub enum ControlError {
    /// The graph's topology could not be started.
    #[error("cannot start the graph: {0}")]
    Start(#[from] StartError),
    /// Snapshots at a barrier could not be taken.
    #[error("barrier {id}: {source}")]
    Barrier {
        /// The barrier.
        id: u64,
        /// Why.
        source: BarrierError,
    },
    /// The topology is not running after it was started.
    #[error("the topology did not start")]
    NotStarted,
    /// A snapshot chunk from the agent does not continue what came before.
    #[error(
        "snapshot chunk at {offset} of {total} bytes does not follow the {received} bytes received"
    )]
    Chunk {
        /// Its offset.
        offset: u64,
        /// The whole snapshot's length.
        total: u64,
        /// Bytes received so far.
        received: usize,
    },
}

/// What an instance needs to run.
#[derive(Debug)]
pub struct InstanceConfig {
    /// Which instance.
    pub color: Color,
    /// Where the agent listens.
    pub agent: SocketAddr,
    /// The state directory (certificates, checkpoints).
    pub state: StateDir,
    /// The instance part of the graph.
    pub plan: Plan,
    /// The graph's stamp (name and hash).
    pub stamp: GraphStamp,
    /// Most records a node takes from a ring in one pass.
    pub batch: usize,
    /// When this instance runs another graph than the agent (during an
    /// upgrade), how channel ids translate between the two.
    pub channels: Option<ChannelMap>,
}

/// Channel ids of the agent's graph and of this instance's graph, matched
/// by name. The new version of an upgrade may add channels; those the agent
/// does not know are not sent to it (its sinks never read them).
#[derive(Clone, Debug)]
pub struct ChannelMap {
    to_local: Vec<Option<ChannelId>>,
    to_agent: Vec<Option<ChannelId>>,
}

impl ChannelMap {
    /// The map between the agent's channels and this instance's; `None`
    /// when they are the same table.
    pub fn between(agent: &ChannelTable, local: &ChannelTable) -> Option<ChannelMap> {
        if agent == local {
            return None;
        }
        // Indexed by id in `from`: the id of the same name in `to`.
        let map = |from: &ChannelTable, to: &ChannelTable| {
            (0..from.len())
                .map(|i| {
                    let id = ChannelId(u32::try_from(i).unwrap_or(u32::MAX));
                    to.get(from.name(id))
                })
                .collect()
        };
        Some(ChannelMap {
            to_local: map(agent, local),
            to_agent: map(local, agent),
        })
    }

    /// Rewrites channel ids through `map`, dropping records of channels it lacks.
    fn translate(map: &[Option<ChannelId>], records: &mut Vec<Record>) {
        records.retain_mut(|r| match map.get(r.channel.index()).copied().flatten() {
            Some(c) => {
                r.channel = c;
                true
            }
            None => false,
        });
    }
}

/// What the agent puts on an instance's command line:
/// `instance --color C --agent ADDR --state-dir DIR --batch N [--channels-of F] FILE`.
#[derive(Clone, Debug)]
pub struct Launch {
    /// The graph file.
    pub file: std::path::PathBuf,
    /// Which instance.
    pub color: Color,
    /// The agent's address.
    pub agent: SocketAddr,
    /// The agent's state directory.
    pub state_dir: std::path::PathBuf,
    /// Records per node pass.
    pub batch: usize,
    /// The agent's graph, when this instance runs another one (an upgrade).
    pub channels_of: Option<std::path::PathBuf>,
}

impl Launch {
    /// Parses the arguments after the program name (`instance ...`): for a
    /// bench or test executable that is its own instance. The `tandem`
    /// command parses the same arguments with its own parser.
    pub fn parse(args: &[String]) -> Result<Launch, InstanceError> {
        Launch::parse_words(args).map_err(InstanceError::Launch)
    }

    fn parse_words(args: &[String]) -> Result<Launch, LaunchError> {
        let mut words = args.iter().map(String::as_str);
        if words.next() != Some("instance") {
            return Err(LaunchError::NotInstance);
        }
        let (mut color, mut agent, mut state_dir, mut batch) = (None, None, None, 1024);
        let (mut channels_of, mut file) = (None, None);
        while let Some(word) = words.next() {
            let mut value = || {
                words
                    .next()
                    .ok_or_else(|| LaunchError::NoValue(word.to_owned()))
            };
            match word {
                "--color" => {
                    color = Some(match value()? {
                        "blue" => Color::Blue,
                        "green" => Color::Green,
                        other => return Err(LaunchError::Color(other.to_owned())),
                    })
                }
                "--agent" => agent = Some(value()?.parse().map_err(LaunchError::Agent)?),
                "--state-dir" => state_dir = Some(value()?.into()),
                "--batch" => batch = value()?.parse().map_err(LaunchError::Batch)?,
                "--channels-of" => channels_of = Some(value()?.into()),
                path => file = Some(path.into()),
            }
        }
        Ok(Launch {
            file: file.ok_or(LaunchError::Missing("graph file"))?,
            color: color.ok_or(LaunchError::Missing("--color"))?,
            agent: agent.ok_or(LaunchError::Missing("--agent"))?,
            state_dir: state_dir.ok_or(LaunchError::Missing("--state-dir"))?,
            batch,
            channels_of,
        })
    }

    /// Loads the graph (and the agent's, for channel ids) and runs the
    /// instance until the agent closes its link.
    pub fn run(self) -> Result<(), InstanceError> {
        let loaded = crate::graph_file::load(&self.file)?;
        let split =
            tandem_core::split::split(&loaded.plan).map_err(|source| InstanceError::Split {
                file: self.file.clone(),
                source,
            })?;
        let channels = match &self.channels_of {
            None => None,
            Some(file) => {
                let agent = crate::graph_file::load(file)?;
                ChannelMap::between(&agent.plan.channels, &split.instance.channels)
            }
        };
        run(InstanceConfig {
            color: self.color,
            agent: self.agent,
            state: StateDir::new(self.state_dir),
            stamp: GraphStamp::of_plan(&loaded.name, &loaded.plan),
            plan: split.instance,
            batch: self.batch,
            channels,
        })
    }
}

/// The version an instance reports: the low bits of its graph hash, so two
/// instances of the same graph agree and an upgraded graph differs.
pub fn version_of(stamp: &GraphStamp) -> u32 {
    (stamp.hash ^ (stamp.hash >> 32)) as u32
}

/// Runs until the agent closes the link (`Ok`) or the link fails (`Err`,
/// with the reason).
pub fn run(config: InstanceConfig) -> Result<(), InstanceError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| InstanceError::Start {
            what: "network runtime",
            source,
        })?;
    runtime.block_on(serve(config))
}

async fn serve(config: InstanceConfig) -> Result<(), InstanceError> {
    let name = config.color.name();
    let certificate = |source| InstanceError::Certificate { name, source };
    let identity = config.state.identity(name).map_err(certificate)?;
    let trust = config.state.trust().map_err(certificate)?;
    let bind: SocketAddr = if config.agent.is_ipv6() {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    };
    let client = Client::new(
        bind,
        &identity,
        &trust,
        TransportOptions::for_peer(config.agent),
    )?;
    let link = client
        .connect(config.agent, "agent")
        .await
        .map_err(|source| InstanceError::Connect {
            agent: config.agent,
            source,
        })?;
    let (mut reader, mut writer) = (link.reader, link.writer);
    let (tx, mut queued) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
    let out = Outbox {
        tx,
        budget: Arc::new(Budget::default()),
    };
    let hello = ToAgent::Hello {
        color: config.color,
        version: version_of(&config.stamp),
        pid: std::process::id(),
    };
    send(&out, hello);
    let budget = out.budget.clone();
    let writing = tokio::spawn(async move {
        while let Some(bytes) = queued.recv().await {
            let len = bytes.len();
            if writer.send_bytes(bytes).await.is_err() {
                break;
            }
            budget.release(len);
        }
        budget.close();
    });
    // Vertex figures, for the agent's collector (see `crate::metrics::feed`).
    let figures = crate::metrics::feed::socket_path(config.state.root(), config.color);
    if let Err(e) = crate::metrics::feed::serve_vertices(figures.clone()) {
        tracing::warn!(
            "{}: cannot answer for vertex figures ({e}); the agent shows none",
            figures.display()
        );
    }
    let processed = Arc::new(AtomicU64::new(0));
    // Bounded, and so is the relay after it: an instance behind stops
    // reading its link, QUIC's flow control holds the agent's writer, and
    // the agent holds its input back.
    let (to_control, mut control_rx) = tokio::sync::mpsc::channel::<ToInstance>(CONTROL_FRAMES);
    // Input batch buffers the topology is done with come back to the reader.
    let (spares, spare) = crossbeam_channel::bounded::<Vec<Record>>(4);
    let control = Control::new(config, out.clone(), processed.clone(), spares);
    // The control thread says when it stops, and why: the link is then
    // given up, and the error returned (no exit from inside a loop).
    let (stopped_tx, mut stopped) = tokio::sync::oneshot::channel::<Result<(), ControlError>>();
    let controlling = std::thread::Builder::new()
        .name("tandem-control".into())
        .spawn(move || {
            let _ = stopped_tx.send(control.run(&mut control_rx));
        })
        .map_err(|source| InstanceError::Start {
            what: "control thread",
            source,
        })?;
    let result = loop {
        if reader.wants_spare() {
            if let Ok(buffer) = spare.try_recv() {
                reader.give(buffer);
            }
        }
        let next = tokio::select! {
            next = tokio::time::timeout(AGENT_SILENCE, reader.next()) => next,
            ended = &mut stopped => break match ended {
                Ok(Err(e)) => Err(InstanceError::Control(e)),
                _ => Err(InstanceError::ControlStopped),
            },
        };
        let msg = match next {
            Err(_) => break Err(InstanceError::AgentSilent(AGENT_SILENCE)),
            Ok(Err(e)) => break Err(InstanceError::Link(e)),
            Ok(Ok(None)) => break Ok(()),
            Ok(Ok(Some(msg))) => msg,
        };
        match msg {
            ToInstance::Heartbeat { sent_ns, seq } => {
                let processed = Seq(processed.load(Ordering::Relaxed));
                send(
                    &out,
                    ToAgent::Heartbeat {
                        sent_ns,
                        seq,
                        processed,
                    },
                );
            }
            msg => {
                if to_control.send(msg).await.is_err() {
                    // It stopped: say why, if it did.
                    break match stopped.try_recv() {
                        Ok(Err(e)) => Err(InstanceError::Control(e)),
                        _ => Err(InstanceError::ControlStopped),
                    };
                }
            }
        }
    };
    drop(to_control);
    let _ = tokio::task::spawn_blocking(move || controlling.join()).await;
    // The topology's output sink may still hold a sender: do not wait for it.
    writing.abort();
    out.budget.close();
    client.close();
    result
}

fn send(out: &Outbox, msg: ToAgent) {
    if let Ok(bytes) = wire::encode_to_bytes(&msg) {
        out.push(bytes);
    }
}

/// Bytes on their way to the agent.
#[derive(Clone, Debug)]
struct Outbox {
    tx: UnboundedSender<Bytes>,
    budget: Arc<Budget>,
}

impl Outbox {
    /// Queues bytes at once (control frames: never held back).
    fn push(&self, bytes: Bytes) {
        self.budget.take(bytes.len());
        let _ = self.tx.send(bytes);
    }

    /// Queues output, first waiting while more than [`OUTPUT_BYTES`] wait
    /// for the link: the topology then stops, its input backs up to the
    /// link, and the agent holds its input back.
    fn push_output(&self, bytes: Bytes) {
        self.budget.wait_below(OUTPUT_BYTES);
        self.push(bytes);
    }
}

/// Bytes queued to the link and not yet written.
#[derive(Debug, Default)]
struct Budget {
    queued: std::sync::Mutex<(usize, bool)>,
    room: std::sync::Condvar,
}

impl Budget {
    fn take(&self, len: usize) {
        self.queued.lock().unwrap_or_else(|e| e.into_inner()).0 += len;
    }

    fn release(&self, len: usize) {
        let mut q = self.queued.lock().unwrap_or_else(|e| e.into_inner());
        q.0 = q.0.saturating_sub(len);
        self.room.notify_all();
    }

    /// The link is gone: nobody waits any more.
    fn close(&self) {
        self.queued.lock().unwrap_or_else(|e| e.into_inner()).1 = true;
        self.room.notify_all();
    }

    fn wait_below(&self, limit: usize) {
        let mut q = self.queued.lock().unwrap_or_else(|e| e.into_inner());
        while q.0 > limit && !q.1 {
            q = self.room.wait(q).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// A snapshot taken at a barrier, encoded as a checkpoint image.
struct Kept {
    barrier: u64,
    image: Bytes,
    vertices: u32,
    hash: u64,
}

enum Phase {
    /// Not started: a snapshot may be on its way (rejoin), or the first
    /// input starts it from the local checkpoint (cold start).
    Waiting {
        barrier: Option<u64>,
        image: Vec<u8>,
    },
    Running {
        topology: Topology,
        feed: RelayFeed,
        /// State restored at this sequence number: input at or below it is
        /// already in the state.
        start: Seq,
    },
}

struct Control {
    config: InstanceConfig,
    out: Outbox,
    processed: Arc<AtomicU64>,
    phase: Phase,
    role: Role,
    store: Option<CheckpointStore>,
    kept: VecDeque<Kept>,
    requested: Option<u64>,
    /// Emptied input buffers, back to the link's reader.
    spares: crossbeam_channel::Sender<Vec<Record>>,
}

impl Control {
    fn new(
        config: InstanceConfig,
        out: Outbox,
        processed: Arc<AtomicU64>,
        spares: crossbeam_channel::Sender<Vec<Record>>,
    ) -> Self {
        let store = match CheckpointStore::open(config.state.checkpoints(config.color)) {
            Ok(store) => Some(store),
            Err(e) => {
                tracing::warn!("{e}; running without checkpoints");
                None
            }
        };
        Control {
            config,
            out,
            processed,
            phase: Phase::Waiting {
                barrier: None,
                image: Vec::new(),
            },
            role: Role::Starting,
            store,
            kept: VecDeque::new(),
            requested: None,
            spares,
        }
    }

    /// Handles frames until the link ends (`Ok`) or one cannot be (`Err`);
    /// either way the topology is stopped.
    fn run(mut self, rx: &mut tokio::sync::mpsc::Receiver<ToInstance>) -> Result<(), ControlError> {
        let mut result = Ok(());
        while let Some(msg) = rx.blocking_recv() {
            if let Err(e) = self.handle(msg) {
                result = Err(e);
                break;
            }
        }
        if let Phase::Running { topology, feed, .. } = self.phase {
            drop(feed);
            topology.stop();
            topology.wait_timeout(Duration::from_secs(2));
        }
        result
    }

    fn handle(&mut self, msg: ToInstance) -> Result<(), ControlError> {
        match msg {
            ToInstance::Input { frontier, records } => {
                let map = self.config.channels.clone();
                let spares = self.spares.clone();
                let (feed, start) = self.running()?;
                let mut records = if records.first().is_some_and(|r| r.seq <= start) {
                    records.into_iter().filter(|r| r.seq > start).collect()
                } else {
                    records
                };
                if let Some(map) = &map {
                    ChannelMap::translate(&map.to_local, &mut records);
                }
                feed.send(Batch { frontier, records });
                while let Some(buffer) = feed.take_spare() {
                    if spares.try_send(buffer).is_err() {
                        break;
                    }
                }
            }
            ToInstance::Barrier { id, at } => self.barrier(id, at)?,
            ToInstance::SnapshotRequest { barrier } => {
                if self.kept.iter().any(|k| k.barrier == barrier) {
                    self.stream(barrier);
                } else {
                    self.requested = Some(barrier);
                }
            }
            ToInstance::SnapshotChunk {
                barrier,
                offset,
                total,
                bytes,
                ..
            } => {
                let Phase::Waiting {
                    barrier: current,
                    image,
                } = &mut self.phase
                else {
                    return Ok(());
                };
                if *current != Some(barrier) {
                    *current = Some(barrier);
                    image.clear();
                }
                let fits = offset == image.len() as u64
                    && total <= MAX_SNAPSHOT
                    && offset + bytes.len() as u64 <= total;
                if !fits {
                    return Err(ControlError::Chunk {
                        offset,
                        total,
                        received: image.len(),
                    });
                }
                image.extend_from_slice(&bytes);
            }
            ToInstance::SnapshotEnd {
                barrier,
                state_hash,
                ..
            } => self.restore(barrier, state_hash)?,
            ToInstance::SetRole { role } => {
                if role != self.role {
                    tracing::info!("{role}");
                }
                self.role = role;
            }
            ToInstance::Heartbeat { .. } => {}
        }
        Ok(())
    }

    /// The running topology's feed, starting it cold first if need be.
    fn running(&mut self) -> Result<(&RelayFeed, Seq), ControlError> {
        if matches!(self.phase, Phase::Waiting { .. }) {
            let local = self.config.state.newest_checkpoint(&self.config.stamp.name);
            if let Some((path, checkpoint)) = &local {
                tracing::info!(
                    "starting from {} (origin sequence {})",
                    path.display(),
                    checkpoint.seq
                );
            }
            self.start(local.map(|(_, c)| c))?;
        }
        match &self.phase {
            Phase::Running { feed, start, .. } => Ok((feed, *start)),
            Phase::Waiting { .. } => Err(ControlError::NotStarted),
        }
    }

    fn start(&mut self, checkpoint: Option<Checkpoint>) -> Result<(), ControlError> {
        let (feed, source) = relay(Some(RELAY_BATCHES));
        let out = self.out.clone();
        let processed = self.processed.clone();
        let map = self.config.channels.as_ref().map(|m| m.to_agent.clone());
        // Each output record is encoded once, into the frame sent to the
        // agent; frames of at most OUTPUT_RECORDS, cut where the frontier
        // allows (the next frame may start with the same seq).
        let sink = Encode::new(BatchKind::Output, OUTPUT_RECORDS, move |encoded| {
            // At the end of the stream the instance is stopping; the agent
            // learns nothing from that.
            let Encoded::Batch(batch) = encoded else {
                return;
            };
            let frontier = batch.frontier();
            out.push_output(batch.bytes().clone());
            processed.fetch_max(frontier.0, Ordering::Relaxed);
        })
        .with_channels(map);
        let mut attached = Attached::default();
        attached
            .sources
            .insert(FROM_AGENT.to_owned(), Box::new(source));
        attached.sinks.insert(TO_AGENT.to_owned(), Box::new(sink));
        let options = RunOptions {
            clock: Clock::Wall,
            span: None,
            hold_at_end: false,
            batch: self.config.batch,
        };
        let (topology, report) =
            Topology::start_with(&self.config.plan, options, checkpoint.as_ref(), attached)?;
        if let Some(report) = report {
            if !report.is_complete() {
                tracing::info!("{report}");
            }
        }
        let start = checkpoint.map_or(Seq::ZERO, |c| c.seq);
        self.processed.store(start.0, Ordering::Relaxed);
        self.phase = Phase::Running {
            topology,
            feed,
            start,
        };
        Ok(())
    }

    fn barrier(&mut self, id: u64, at: Seq) -> Result<(), ControlError> {
        self.running()?;
        let Phase::Running {
            topology, start, ..
        } = &mut self.phase
        else {
            return Ok(());
        };
        if at < *start {
            // Placed before this instance's restore point (a cold start from
            // a newer checkpoint): it has no state there to report.
            return Ok(());
        }
        let placed = topology.place_barrier(at);
        let taken = topology
            .barrier_snapshots(placed, Duration::from_secs(30))
            .map_err(|source| ControlError::Barrier { id, source })?;
        let checkpoint = Checkpoint {
            graph: self.config.stamp.clone(),
            seq: taken.at,
            vertices: taken.vertices,
        };
        let hash = checkpoint::state_hash(&checkpoint.vertices);
        send(&self.out, ToAgent::StateHash { barrier: id, hash });
        if self.role == Role::Serving {
            if let Some(store) = self.store.as_mut() {
                if let Err(e) = store.save(&checkpoint) {
                    tracing::warn!("checkpoint not saved: {e}");
                }
            }
        }
        if self.kept.len() == KEPT {
            self.kept.pop_front();
        }
        self.kept.push_back(Kept {
            barrier: id,
            image: Bytes::from(format::encode(&checkpoint)),
            vertices: u32::try_from(checkpoint.vertices.len()).unwrap_or(u32::MAX),
            hash,
        });
        if self.requested == Some(id) {
            self.requested = None;
            self.stream(id);
        }
        Ok(())
    }

    /// Sends the snapshot kept for `barrier` to the agent, to relay.
    fn stream(&self, barrier: u64) {
        let Some(kept) = self.kept.iter().find(|k| k.barrier == barrier) else {
            return;
        };
        let total = kept.image.len() as u64;
        let mut offset = 0;
        while offset < kept.image.len() {
            let end = (offset + CHUNK).min(kept.image.len());
            send(
                &self.out,
                ToAgent::SnapshotChunk {
                    barrier,
                    vertex: 0,
                    offset: offset as u64,
                    total,
                    bytes: kept.image.slice(offset..end),
                },
            );
            offset = end;
        }
        send(
            &self.out,
            ToAgent::SnapshotEnd {
                barrier,
                vertices: kept.vertices,
                state_hash: kept.hash,
            },
        );
    }

    /// The donor's snapshot is complete: check it, start from it, and say so.
    fn restore(&mut self, barrier: u64, donor_hash: u64) -> Result<(), ControlError> {
        let Phase::Waiting {
            barrier: current,
            image,
        } = &mut self.phase
        else {
            return Ok(());
        };
        if *current != Some(barrier) {
            return Ok(());
        }
        let image = std::mem::take(image);
        *current = None;
        let checkpoint = match format::decode(&image) {
            Ok(checkpoint) => checkpoint,
            Err(e) => {
                tracing::warn!("the snapshot of barrier {barrier} was refused: {e}");
                send(
                    &self.out,
                    ToAgent::Restored {
                        barrier,
                        state_hash: !donor_hash,
                    },
                );
                return Ok(());
            }
        };
        let hash = checkpoint::state_hash(&checkpoint.vertices);
        if hash != donor_hash {
            send(
                &self.out,
                ToAgent::Restored {
                    barrier,
                    state_hash: hash,
                },
            );
            return Ok(());
        }
        self.start(Some(checkpoint))?;
        send(
            &self.out,
            ToAgent::Restored {
                barrier,
                state_hash: hash,
            },
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tandem_core::EventTime;

    #[test]
    fn a_long_output_is_split_into_frames_that_never_promise_too_much() {
        use tandem_core::Sink as _;
        let records: Vec<Record> = (0..OUTPUT_RECORDS as u64 * 2 + 10)
            .map(|i| Record::new(Seq(100 + i / 2), EventTime(0), ChannelId(0), 0.0))
            .collect();
        let frames = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let into = frames.clone();
        let mut sink = Encode::new(BatchKind::Output, OUTPUT_RECORDS, move |e| {
            if let Encoded::Batch(b) = e {
                let mut buf = bytes::BytesMut::from(&b.bytes()[..]);
                into.lock()
                    .unwrap()
                    .push(wire::decode::<ToAgent>(&mut buf).unwrap().unwrap());
            }
        });
        let end = Seq(1_000_000);
        // Written in pieces, as a topology does.
        for piece in records.chunks(1000) {
            sink.write(piece).unwrap();
        }
        sink.advance(end);
        let frames = std::mem::take(&mut *frames.lock().unwrap());
        assert_eq!(frames.len(), 3);
        let mut sent = 0;
        for (i, frame) in frames.iter().enumerate() {
            let ToAgent::Output {
                frontier,
                records: part,
            } = frame
            else {
                panic!("not an output frame");
            };
            sent += part.len();
            // Nothing in a later frame is at or below this frame's frontier.
            if let Some(next) = records.get(sent) {
                assert!(*frontier < next.seq, "frame {i} promised {frontier}");
            } else {
                assert_eq!(*frontier, end);
            }
        }
        assert_eq!(sent, records.len());
    }

    #[test]
    fn output_for_a_link_that_does_not_drain_stays_within_its_bound() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
        let out = Outbox {
            tx,
            budget: Arc::new(Budget::default()),
        };
        let frame = Bytes::from(vec![0u8; 1 << 20]);
        let frames = 64;
        let pusher = {
            let (out, frame) = (out.clone(), frame.clone());
            std::thread::spawn(move || {
                for _ in 0..frames {
                    out.push_output(frame.clone());
                }
            })
        };
        // The link writes nothing: the topology's sink is held once more
        // than OUTPUT_BYTES wait, with one frame over at most.
        let admitted = OUTPUT_BYTES / frame.len() + 1;
        for _ in 0..admitted {
            assert!(rx.blocking_recv().is_some());
        }
        let queued = out.budget.queued.lock().unwrap().0;
        assert_eq!(queued, admitted * frame.len());
        assert!(queued <= OUTPUT_BYTES + frame.len());
        assert!(rx.try_recv().is_err(), "nothing more is queued");
        // The link drains: everything goes, nothing is lost.
        out.budget.release(queued);
        let mut written = admitted;
        while written < frames {
            let bytes = rx.blocking_recv().unwrap();
            out.budget.release(bytes.len());
            written += 1;
        }
        pusher.join().unwrap();
        assert_eq!(out.budget.queued.lock().unwrap().0, 0);
    }

    #[test]
    fn the_agents_command_line_parses_and_a_bad_one_says_what_is_missing() {
        let args: Vec<String> = "instance --color green --agent 127.0.0.1:4000 --state-dir /s \
                                 --batch 64 --channels-of /old.toml /new.toml"
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        let launch = Launch::parse(&args).unwrap();
        assert_eq!(launch.color, Color::Green);
        assert_eq!(launch.batch, 64);
        assert_eq!(launch.file, std::path::PathBuf::from("/new.toml"));
        assert_eq!(launch.channels_of, Some("/old.toml".into()));
        let err = Launch::parse(&args[..4]).unwrap_err();
        assert_eq!(err.to_string(), "`--agent` needs a value");
        let err = Launch::parse(&["instance".to_owned(), "/g.toml".to_owned()]).unwrap_err();
        assert_eq!(err.to_string(), "no --color");
        assert!(matches!(
            err,
            InstanceError::Launch(LaunchError::Missing("--color"))
        ));
    }

    #[test]
    fn channels_are_matched_by_name_and_unknown_ones_are_not_sent() {
        let mut agent = ChannelTable::new();
        let (a, b) = (agent.intern("a", ""), agent.intern("b", ""));
        let mut local = ChannelTable::new();
        let (la, new, lb) = (
            local.intern("a", ""),
            local.intern("a.peak", ""),
            local.intern("b", ""),
        );
        let map = ChannelMap::between(&agent, &local).expect("tables differ");
        let record = |c| Record::new(Seq(1), EventTime(0), c, 1.0);
        let mut input = vec![record(a), record(b)];
        ChannelMap::translate(&map.to_local, &mut input);
        assert_eq!(
            input.iter().map(|r| r.channel).collect::<Vec<_>>(),
            [la, lb]
        );
        let mut output = vec![record(la), record(new), record(lb)];
        ChannelMap::translate(&map.to_agent, &mut output);
        assert_eq!(output.iter().map(|r| r.channel).collect::<Vec<_>>(), [a, b]);
        assert!(ChannelMap::between(&agent, &agent).is_none());
    }
}
