//! The agent of `tandem up`: owns the sources, the junctions and the sinks,
//! and supervises a blue and a green instance process running the vertices.
//!
//! One hub task owns the [`Supervisor`] (the pure state machine of
//! `tandem_core::ha`) and is the only place that changes it. Everything else
//! sends it events: sequenced ingress batches from the ingress topology's
//! junction sink, frames from each instance connection, control requests
//! from `tandem status`, and ticks. After each event the hub drains what the
//! supervisor wants sent (one encoded `Bytes` per input batch, cloned to
//! both instances), what it emits toward the sinks (into the egress
//! topology's relay), and its events (logs, and restarts of lost instances).

use std::ffi::OsString;
use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tandem_core::graph::HaSettings;
use tandem_core::ha::{
    Color, Event, HaConfig, LivenessConfig, Nanos, Role, Supervisor, ToAgent, Tolerances,
    UpstreamConfig,
};
use tandem_core::split::{Split, FROM_INSTANCES, TO_INSTANCES};
use tandem_core::wire::{self, Frame};
use tandem_core::{Record, Seq};
use tokio::sync::mpsc::{unbounded_channel, Sender, UnboundedReceiver, UnboundedSender};

use super::dirs::StateDir;
use super::ends::{relay, Batch, Forward};
use super::status::{self, InstanceStatus, Request, Status};
use super::upgrade::{self, Phase, Release, Upgrade};
use crate::checkpoint::{Checkpoint, GraphStamp};
use crate::net::{Link, Server, TransportOptions};
use crate::topology::{Attached, RunOptions, Topology};
use crate::Clock;
use tandem_nodes::io::toggles::{Switches, Toggles};

/// How to start an instance process: `program [args..] instance --color ...`.
#[derive(Clone, Debug)]
pub struct InstanceCommand {
    /// The executable (by default this one).
    pub program: PathBuf,
    /// Arguments before `instance`.
    pub args: Vec<OsString>,
}

/// Everything `tandem up` was asked to do.
#[derive(Debug)]
pub struct AgentConfig {
    /// The graph file (instances load it too).
    pub file: PathBuf,
    /// The graph's stamp.
    pub stamp: GraphStamp,
    /// The graph cut in three.
    pub split: Split,
    /// HA settings (the `[ha]` table).
    pub ha: HaSettings,
    /// The state directory.
    pub state: StateDir,
    /// Where to listen for instances.
    pub listen: SocketAddr,
    /// How often instances checkpoint (a barrier each time).
    pub checkpoint_every: Duration,
    /// Stop after this long (wall time).
    pub run_for: Option<Duration>,
    /// Clock of the sources.
    pub clock: Clock,
    /// Records per node pass.
    pub batch: usize,
    /// How to start instances.
    pub instance: InstanceCommand,
    /// Where to write the outputs of shadow instances (JSON lines tagged
    /// `"shadow": true`), for people to study a new version's output.
    pub shadow_log: Option<PathBuf>,
    /// Sinks built by the caller instead of by their kind, by node id
    /// (benches and tests that observe the merged output).
    pub egress: Attached,
}

/// Ingress batches waiting for the hub at most.
const INGRESS_BATCHES: usize = 256;
/// Bytes queued toward an instance beyond which the hub stops taking input
/// until it has caught up.
const BACKLOG_BYTES: usize = 32 << 20;
/// Link events waiting for the hub at most.
const CONN_EVENTS: usize = 1024;
/// Merged batches waiting for the sinks beyond which input waits.
const EGRESS_BATCHES: usize = 1024;

/// Runs the agent until Ctrl-C, `--for`, or the end of the input.
pub fn run(mut config: AgentConfig) -> Result<(), String> {
    let _lock = config.state.lock()?;
    let ca = config
        .state
        .site_ca()
        .map_err(|e| format!("site CA: {e}"))?;
    for name in ["agent", "blue", "green"] {
        config
            .state
            .issue(&ca, name)
            .map_err(|e| format!("certificate for {name}: {e}"))?;
    }
    let resume = config.state.newest_checkpoint(&config.stamp.name);
    let after = match &resume {
        Some((path, checkpoint)) => {
            eprintln!(
                "tandem: resuming from {} (origin sequence {})",
                path.display(),
                checkpoint.seq
            );
            checkpoint.seq
        }
        None => Seq::ZERO,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("tandem-agent")
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the network runtime: {e}"))?;
    let egress = std::mem::take(&mut config.egress);
    runtime.block_on(serve(config, after, egress))
}

enum Ingress {
    Batch(Seq, Vec<Record>),
    Ended,
}

enum Conn {
    Hello {
        conn: u64,
        color: Color,
        version: u32,
        pid: u32,
        tx: UnboundedSender<Bytes>,
        /// Bytes queued to `tx` and not yet written.
        queued: Arc<AtomicUsize>,
    },
    Frame {
        conn: u64,
        msg: ToAgent,
        /// When it arrived (nanoseconds since the agent started): liveness
        /// is judged by arrival, however long the hub took to get to it.
        at: Nanos,
    },
    Closed {
        conn: u64,
        reason: String,
    },
}

async fn serve(config: AgentConfig, after: Seq, mut attached: Attached) -> Result<(), String> {
    let identity = config.state.identity("agent").map_err(|e| e.to_string())?;
    let trust = config.state.trust().map_err(|e| e.to_string())?;
    let server = Server::bind(
        config.listen,
        &identity,
        &trust,
        TransportOptions::for_peer(config.listen),
    )
    .map_err(|e| e.to_string())?;
    let addr = server.local_addr().map_err(|e| e.to_string())?;

    // Egress: merged output -> sinks.
    // Unbounded, so the hub never waits on it; the hub holds input back
    // while more than EGRESS_BATCHES wait for the sinks.
    let (to_sinks, from_hub) = relay(None);
    attached
        .sources
        .insert(FROM_INSTANCES.to_owned(), Box::new(from_hub));
    let options = RunOptions {
        clock: Clock::Wall,
        span: None,
        hold_at_end: false,
        batch: config.batch,
    };
    let (egress, _) = Topology::start_with(&config.split.egress, options, None, attached)
        .map_err(|e| e.to_string())?;

    // Ingress: sources -> sequenced batches for the hub.
    // Bounded: when the hub stops taking batches (both instances behind),
    // the ingress worker waits here, and the sources are polled later.
    let (ingress_tx, ingress_rx) = tokio::sync::mpsc::channel::<Ingress>(INGRESS_BATCHES);
    let sink = Forward::new(move |frontier: Seq, records: &mut Vec<Record>| {
        let msg = if frontier == Seq::END {
            Ingress::Ended
        } else {
            Ingress::Batch(frontier, std::mem::take(records))
        };
        // A plain worker thread, outside the runtime: it may block. It fails
        // only once the hub is gone.
        let _ = ingress_tx.blocking_send(msg);
    });
    let mut attached = Attached::default();
    attached
        .sinks
        .insert(TO_INSTANCES.to_owned(), Box::new(sink));
    let toggles = attach_toggles(&config.split.ingress, &mut attached)?;
    let options = RunOptions {
        clock: config.clock,
        span: config
            .run_for
            .filter(|_| matches!(config.clock, Clock::Virtual { .. })),
        hold_at_end: false,
        batch: config.batch,
    };
    let numbering = Checkpoint {
        graph: config.stamp.clone(),
        seq: after,
        vertices: Default::default(),
    };
    let (ingress, _) =
        Topology::start_with(&config.split.ingress, options, Some(&numbering), attached)
            .map_err(|e| e.to_string())?;

    // Bounded: when the hub is behind, links stop being read, and the
    // instances' output waits in QUIC's flow control and then in them.
    let (conn_tx, conn_rx) = tokio::sync::mpsc::channel::<Conn>(CONN_EVENTS);
    let server = Arc::new(server);
    let stats = server.stats().clone();
    let origin = Instant::now();
    tokio::spawn(accept(server.clone(), conn_tx, origin));

    let (request_tx, request_rx) = unbounded_channel::<Request>();
    let socket = config.state.socket();
    let _ = std::fs::remove_file(&socket);
    match tokio::net::UnixListener::bind(&socket) {
        Ok(listener) => {
            tokio::spawn(status::serve(listener, request_tx));
        }
        Err(e) => eprintln!(
            "tandem: {}: cannot open the control socket ({e}); `tandem status` will not answer",
            socket.display()
        ),
    }

    let (stop_tx, stop_rx) = unbounded_channel::<()>();
    if let Err(e) = ctrlc::set_handler(move || {
        let _ = stop_tx.send(());
    }) {
        eprintln!("tandem: cannot install the Ctrl-C handler: {e}");
    }

    let mut hub = Hub::new(&config, addr, after, stats);
    hub.origin = origin;
    hub.toggle_positions = toggles
        .iter()
        .flat_map(|(id, sw, on)| {
            sw.names()
                .map(|n| (format!("{id}.{n}"), on.iter().any(|o| o == n)))
                .collect::<Vec<_>>()
        })
        .collect();
    hub.toggles = toggles.into_iter().map(|(id, sw, _)| (id, sw)).collect();
    eprintln!(
        "tandem: up `{}`: agent on {addr}, blue and green instances starting; Ctrl-C stops",
        config.stamp.name
    );
    hub.spawn(Color::Blue);
    hub.spawn(Color::Green);
    hub.run(
        ingress_rx, conn_rx, stop_rx, request_rx, &ingress, &to_sinks,
    )
    .await;

    // Orderly end: instances are told by their link closing.
    hub.close_links();
    tokio::task::block_in_place(|| hub.reap(Duration::from_secs(2)));
    server.close();
    let _ = std::fs::remove_file(&socket);
    ingress.stop();
    drop(to_sinks);
    let _ = ingress.join();
    match egress.join() {
        Ok(report) => eprint!("{}", report.table()),
        Err(e) => return Err(e.to_string()),
    }
    Ok(())
}

/// Builds the graph's `toggles` sources so that `tandem toggle` can switch
/// them, and attaches them to the ingress. Returns them by node id.
fn attach_toggles(
    ingress: &tandem_core::Plan,
    attached: &mut Attached,
) -> Result<Vec<(String, Switches, Vec<String>)>, String> {
    let mut toggles = Vec::new();
    for node in ingress.nodes.iter().filter(|n| n.kind.name == "toggles") {
        let ctx = tandem_core::BuildContext {
            id: &node.id,
            params: &node.params,
            inputs: &node.inputs,
            outputs: &node.outputs,
            channels: &ingress.channels,
        };
        let (source, switches) = Toggles::switchable(&ctx).map_err(|e| e.message)?;
        attached.sources.insert(node.id.clone(), Box::new(source));
        let on = node
            .params
            .names("on")
            .map(<[String]>::to_vec)
            .unwrap_or_default();
        toggles.push((node.id.clone(), switches, on));
    }
    Ok(toggles)
}

/// Accepts instance connections; each runs in its own task.
async fn accept(server: Arc<Server>, events: Sender<Conn>, origin: Instant) {
    let mut next = 0u64;
    while let Some(pending) = server.accept().await {
        next += 1;
        let conn = next;
        let events = events.clone();
        tokio::spawn(async move {
            match pending.establish().await {
                Ok(link) => connection(conn, link, events, origin).await,
                Err(e) => eprintln!("tandem: refused a connection: {e}"),
            }
        });
    }
}

/// One instance link: the first frame must be `Hello`; then frames go to
/// the hub, and what the hub queues goes out.
async fn connection(conn: u64, link: Link, events: Sender<Conn>, origin: Instant) {
    let Link {
        connection,
        mut reader,
        mut writer,
    } = link;
    let closed = |reason: String| Conn::Closed { conn, reason };
    let first = tokio::time::timeout(Duration::from_secs(5), reader.next()).await;
    let (color, version, pid) = match first {
        Ok(Ok(Some(Frame::Hello {
            color,
            version,
            pid,
        }))) if crate::net::peer_is(&connection, color.name()) => (color, version, pid),
        Ok(Ok(Some(Frame::Hello { color, .. }))) => {
            eprintln!("tandem: a peer claimed to be {color} without {color}'s certificate; closed");
            connection.close(
                quinn::VarInt::from_u32(crate::net::CLOSE_BAD_FRAME),
                b"certificate is not for that colour",
            );
            return;
        }
        Ok(Ok(Some(other))) => {
            connection.close(
                quinn::VarInt::from_u32(crate::net::CLOSE_BAD_FRAME),
                b"hello expected",
            );
            eprintln!(
                "tandem: a peer sent a {} frame before its hello; closed",
                other.frame_type().name()
            );
            return;
        }
        Ok(Ok(None)) | Err(_) => return,
        Ok(Err(e)) => {
            eprintln!("tandem: {e}");
            return;
        }
    };
    let (tx, mut rx) = unbounded_channel::<Bytes>();
    let queued = Arc::new(AtomicUsize::new(0));
    if events
        .send(Conn::Hello {
            conn,
            color,
            version,
            pid,
            tx,
            queued: queued.clone(),
        })
        .await
        .is_err()
    {
        return;
    }
    tokio::spawn(async move {
        while let Some(bytes) = rx.recv().await {
            let len = bytes.len();
            if writer.send_bytes(bytes).await.is_err() {
                return;
            }
            queued.fetch_sub(len, Ordering::Relaxed);
        }
        let _ = writer.finish();
    });
    loop {
        match reader.next().await {
            Ok(Some(frame)) => match ToAgent::try_from(frame) {
                Ok(msg) => {
                    let at = Nanos(i64::try_from(origin.elapsed().as_nanos()).unwrap_or(i64::MAX));
                    if events.send(Conn::Frame { conn, msg, at }).await.is_err() {
                        return;
                    }
                }
                Err(unexpected) => {
                    connection.close(
                        quinn::VarInt::from_u32(crate::net::CLOSE_BAD_FRAME),
                        b"unexpected frame",
                    );
                    let _ = events.send(closed(unexpected.to_string())).await;
                    return;
                }
            },
            Ok(None) => {
                let _ = events
                    .send(closed("the instance closed its link".into()))
                    .await;
                return;
            }
            Err(e) => {
                let _ = events.send(closed(e.to_string())).await;
                return;
            }
        }
    }
}

/// One instance slot: its process and its link.
#[derive(Default)]
struct Slot {
    child: Option<Child>,
    /// It has served or shadowed since it was started.
    live: bool,
    respawn_at: Option<Instant>,
    failures: u32,
    restarts: u64,
    conn: Option<(u64, UnboundedSender<Bytes>, Arc<AtomicUsize>)>,
    version: Option<u32>,
    pid: Option<u32>,
    received: u64,
    rate: f64,
}

struct Hub {
    sup: Supervisor,
    origin: Instant,
    slots: [Slot; 2],
    /// What each colour runs (they differ during an upgrade).
    releases: [Release; 2],
    /// What the graph is, outside an upgrade.
    current: Release,
    upgrade: Option<Upgrade>,
    last_upgrade: serde_json::Value,
    /// The graph's `toggles` sources, by node id.
    toggles: Vec<(String, Switches)>,
    /// Each toggle's position as last asked (the graph's `on` list at start).
    toggle_positions: std::collections::BTreeMap<String, bool>,
    /// Losses the agent caused itself (restarts onto another release).
    expect_loss: [bool; 2],
    name: String,
    /// Shadow outputs go here, with the channel names of `channels`.
    shadow_log: Option<std::io::BufWriter<std::fs::File>>,
    channels: Arc<tandem_core::ChannelTable>,
    state: StateDir,
    args: Vec<OsString>,
    /// The graph the agent's sources and sinks come from: instances on
    /// another graph translate channel ids to its table.
    base_file: PathBuf,
    batch: usize,
    addr: SocketAddr,
    checkpoint_every: Duration,
    run_for: Option<Duration>,
    net: Arc<crate::net::NetStats>,
    emitted: Vec<Record>,
    sent_frontier: Seq,
    divergence_logged: usize,
    hashes: Option<(u64, u64, u64)>,
    tty: bool,
}

impl Hub {
    fn new(
        config: &AgentConfig,
        addr: SocketAddr,
        after: Seq,
        net: Arc<crate::net::NetStats>,
    ) -> Hub {
        let mut tolerances = Tolerances::exact();
        for &(channel, abs) in &config.ha.tolerances {
            tolerances = tolerances.with(channel, abs);
        }
        let ha = HaConfig {
            upstream: UpstreamConfig {
                retention: config.ha.retention,
                ..UpstreamConfig::default()
            },
            tolerances,
            liveness: LivenessConfig {
                interval: nanos(config.ha.heartbeat),
                timeout: nanos(config.ha.timeout),
            },
            ..HaConfig::default()
        };
        let mut sup = Supervisor::new(ha);
        if after > Seq::ZERO {
            // Numbering resumes after the checkpoint: the retention ring starts there.
            sup.handle_ingress(after, &[]);
        }
        let shadow_log = config.shadow_log.as_ref().and_then(|path| {
            let opened = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path);
            match opened {
                Ok(file) => Some(std::io::BufWriter::new(file)),
                Err(e) => {
                    eprintln!(
                        "tandem: {}: cannot open the shadow log: {e}; shadow output is not kept",
                        path.display()
                    );
                    None
                }
            }
        });
        let current = Release {
            file: config.file.clone(),
            program: config.instance.program.clone(),
            version: super::instance::version_of(&config.stamp),
            split: config.split.clone(),
        };
        Hub {
            sup,
            origin: Instant::now(),
            slots: Default::default(),
            releases: [current.clone(), current.clone()],
            current,
            upgrade: None,
            last_upgrade: serde_json::Value::Null,
            toggles: Vec::new(),
            toggle_positions: Default::default(),
            expect_loss: [false; 2],
            name: config.stamp.name.clone(),
            shadow_log,
            channels: config.split.egress.channels.clone(),
            state: config.state.clone(),
            args: config.instance.args.clone(),
            base_file: config.file.clone(),
            batch: config.batch,
            addr,
            checkpoint_every: config.checkpoint_every,
            run_for: config.run_for,
            net,
            emitted: Vec::new(),
            sent_frontier: Seq::ZERO,
            divergence_logged: 0,
            hashes: None,
            tty: std::io::stderr().is_terminal(),
        }
    }

    fn now(&self) -> Nanos {
        Nanos(i64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(i64::MAX))
    }

    fn log(&self, line: &str) {
        if self.tty {
            eprintln!("\r\x1b[Ktandem: {line}");
        } else {
            eprintln!("tandem: {line}");
        }
    }

    async fn run(
        &mut self,
        mut ingress: tokio::sync::mpsc::Receiver<Ingress>,
        mut conns: tokio::sync::mpsc::Receiver<Conn>,
        mut stop: UnboundedReceiver<()>,
        mut requests: UnboundedReceiver<Request>,
        ingress_topology: &Topology,
        to_sinks: &super::ends::RelayFeed,
    ) {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_checkpoint = Instant::now();
        let mut last_status = Instant::now();
        let deadline = self.run_for.map(|d| tokio::time::Instant::now() + d);
        let mut stopping: Option<Instant> = None;
        let mut input_ended = false;
        let mut final_barrier: Option<u64> = None;
        loop {
            // Pings and deadlines first: with a burst of frames always ready
            // (an instance catching up), the biased select below would
            // never reach the timeout branch.
            let now = self.now();
            if self.sup.poll_timeout().is_some_and(|t| t <= now) {
                // Frames that arrived before now may prove an instance alive:
                // take them first (they carry their arrival time).
                for _ in 0..4096 {
                    match conns.try_recv() {
                        Ok(event) => self.connection_event(event),
                        Err(_) => break,
                    }
                }
                self.sup.handle_timeout(self.now());
            }
            let timeout = self.sup.poll_timeout().map(|n| {
                let d =
                    Duration::from_nanos(u64::try_from((n.0 - self.now().0).max(0)).unwrap_or(0));
                tokio::time::Instant::now() + d
            });
            tokio::select! {
                biased;
                Some(()) = stop.recv() => {
                    if stopping.is_some() {
                        self.log("second Ctrl-C: exiting without draining");
                        self.kill_all();
                        std::process::exit(130);
                    }
                    self.log("stopping: draining in-flight records, taking a last checkpoint");
                    stopping = Some(Instant::now());
                    ingress_topology.stop();
                }
                _ = sleep_until(deadline), if stopping.is_none() => {
                    stopping = Some(Instant::now());
                    ingress_topology.stop();
                }
                Some(msg) = ingress.recv(), if !input_ended && !self.backlogged() && to_sinks.len() < EGRESS_BATCHES => match msg {
                    Ingress::Batch(frontier, records) => self.sup.handle_ingress(frontier, &records),
                    Ingress::Ended => {
                        input_ended = true;
                        stopping.get_or_insert_with(Instant::now);
                        final_barrier = Some(self.sup.place_barrier().id);
                    }
                },
                Some(event) = conns.recv() => self.connection_event(event),
                Some((line, reply)) = requests.recv() => {
                    let answer = match self.request(&line) {
                        Ok(json) if line == "status" => json,
                        Ok(text) => format!("ok: {text}"),
                        Err(text) => format!("error: {text}"),
                    };
                    let _ = reply.send(answer);
                }
                _ = sleep_until(timeout) => {
                    let now = self.now();
                    self.sup.handle_timeout(now);
                }
                _ = tick.tick() => {
                    self.drop_laggards();
                    if let Some(log) = self.shadow_log.as_mut() {
                        let _ = std::io::Write::flush(log);
                    }
                    self.poll_children();
                    self.upgrade_tick();
                    if last_checkpoint.elapsed() >= self.checkpoint_every && stopping.is_none() {
                        last_checkpoint = Instant::now();
                        if Color::BOTH.iter().any(|&c| self.sup.is_live(c)) {
                            let _ = self.sup.place_barrier();
                        }
                    }
                    if last_status.elapsed() >= Duration::from_millis(250) {
                        let dt = last_status.elapsed().as_secs_f64();
                        last_status = Instant::now();
                        self.refresh_status(dt);
                    }
                }
            }
            self.flush(to_sinks);
            if let Some(since) = stopping {
                let drained = input_ended
                    && self.sup.downstream().frontier() >= self.sup.upstream().head()
                    && final_barrier.is_some_and(|b| self.hashes.is_some_and(|(h, _, _)| h >= b));
                if drained || since.elapsed() > Duration::from_secs(10) {
                    if !drained {
                        self.log("stopping without the last checkpoint: the instances did not finish in 10 s");
                    }
                    return;
                }
            }
        }
    }

    fn connection_event(&mut self, event: Conn) {
        let now = self.now();
        match event {
            Conn::Hello {
                conn,
                color,
                version,
                pid,
                tx,
                queued,
            } => {
                let slot = &mut self.slots[color.index()];
                if slot.child.as_ref().is_some_and(|c| c.id() != pid) {
                    self.log(&format!(
                        "{color}: hello from pid {pid}, which this agent did not start; refused"
                    ));
                    return;
                }
                slot.conn = Some((conn, tx, queued));
                slot.version = Some(version);
                slot.pid = Some(pid);
                self.sup.handle_message(
                    now,
                    color,
                    ToAgent::Hello {
                        color,
                        version,
                        pid,
                    },
                );
            }
            Conn::Frame { conn, msg, at } => {
                if let Some(color) = self.color_of(conn) {
                    if let ToAgent::Output { records, .. } = &msg {
                        if self.sup.role(color) == Some(Role::Shadow) {
                            self.log_shadow(color, records);
                        }
                    }
                    self.sup.handle_message(at, color, msg);
                }
            }
            Conn::Closed { conn, reason } => {
                if let Some(color) = self.color_of(conn) {
                    self.log(&format!("{color}: link closed: {reason}"));
                    self.slots[color.index()].conn = None;
                    self.sup.handle_disconnected(color);
                }
            }
        }
    }

    /// Appends a shadow instance's output records to the shadow log.
    fn log_shadow(&mut self, color: Color, records: &[Record]) {
        let Some(log) = self.shadow_log.as_mut() else {
            return;
        };
        let version = self.slots[color.index()]
            .version
            .map(|v| format!("{v:08x}"));
        for r in records {
            let quality: Vec<&str> = tandem_core::Quality::NAMES
                .iter()
                .filter(|(q, _)| r.quality.contains(*q))
                .map(|(_, name)| *name)
                .collect();
            let line = serde_json::json!({
                "shadow": true,
                "color": color.name(),
                "version": version,
                "seq": r.seq.0,
                "time_ns": r.time.0,
                "channel": self.channels.name(r.channel),
                "value": r.value,
                "quality": if quality.is_empty() { "good".to_owned() } else { quality.join("|") },
            });
            if std::io::Write::write_all(log, format!("{line}\n").as_bytes()).is_err() {
                eprintln!("tandem: cannot write the shadow log; shadow output is not kept");
                self.shadow_log = None;
                return;
            }
        }
    }

    fn color_of(&self, conn: u64) -> Option<Color> {
        Color::BOTH.into_iter().find(|c| {
            self.slots[c.index()]
                .conn
                .as_ref()
                .is_some_and(|(id, _, _)| *id == conn)
        })
    }

    fn send(&self, color: Color, bytes: Bytes) {
        if let Some((_, tx, queued)) = &self.slots[color.index()].conn {
            queued.fetch_add(bytes.len(), Ordering::Relaxed);
            let _ = tx.send(bytes);
        }
    }

    /// An instance with four times [`BACKLOG_BYTES`] waiting for it (one
    /// catching up that cannot) is lost and restarted: queues are bounded.
    fn drop_laggards(&mut self) {
        for color in Color::BOTH {
            let behind = self.slots[color.index()]
                .conn
                .as_ref()
                .is_some_and(|(_, _, queued)| queued.load(Ordering::Relaxed) > 4 * BACKLOG_BYTES);
            if behind && self.sup.role(color).is_some() {
                self.log(&format!(
                    "{color}: more than {} MiB waiting for it; it cannot keep up",
                    (4 * BACKLOG_BYTES) >> 20
                ));
                self.sup.handle_disconnected(color);
            }
        }
    }

    /// True when an instance has more than [`BACKLOG_BYTES`] waiting to be
    /// written to it: input waits, so that nothing is dropped, memory stays
    /// bounded, and an instance catching up does catch up. A hung instance
    /// holds input back until its heartbeat timeout.
    fn backlogged(&self) -> bool {
        Color::BOTH.into_iter().any(|c| {
            self.sup.role(c).is_some()
                && self.slots[c.index()]
                    .conn
                    .as_ref()
                    .is_some_and(|(_, _, queued)| queued.load(Ordering::Relaxed) > BACKLOG_BYTES)
        })
    }

    /// Sends what the supervisor queued, emits what it merged, handles its events.
    fn flush(&mut self, to_sinks: &super::ends::RelayFeed) {
        for color in Color::BOTH {
            while let Some(msg) = self.sup.poll_control(color) {
                if let Ok(bytes) = wire::encode_to_bytes(&Frame::from(msg)) {
                    self.send(color, bytes);
                }
            }
        }
        while let Some((recipients, msg)) = self.sup.poll_input() {
            // Encoded once; both instances get the same bytes.
            if let Ok(bytes) = wire::encode_to_bytes(&Frame::from(msg)) {
                for color in recipients.iter() {
                    self.send(color, bytes.clone());
                }
            }
        }
        self.sup.poll_emitted(&mut self.emitted);
        let frontier = self.sup.downstream().frontier();
        if !self.emitted.is_empty() || frontier > self.sent_frontier {
            self.sent_frontier = frontier;
            to_sinks.send(Batch {
                frontier,
                records: std::mem::take(&mut self.emitted),
            });
        }
        while let Some(event) = self.sup.poll_event() {
            self.event(event);
        }
        let divergences = self.sup.downstream().divergences();
        if divergences.len() > self.divergence_logged {
            for d in &divergences[self.divergence_logged..] {
                self.log(&format!("divergence: {d}"));
            }
            self.divergence_logged = divergences.len();
        }
    }

    fn event(&mut self, event: Event) {
        match event {
            Event::Lost { color, reason } => {
                let expected = std::mem::take(&mut self.expect_loss[color.index()]);
                if expected {
                    let file = self.releases[color.index()].file.display().to_string();
                    self.log(&format!("{color}: restarting on {file}"));
                } else {
                    self.log(&format!("{color}: lost ({reason:?}); restarting it"));
                    self.upgrade_lost(color);
                }
                self.slots[color.index()].conn = None;
                self.stop_child(color, expected);
            }
            Event::StateHashes {
                barrier,
                blue,
                green,
            } => {
                let same_version = self.sup.version(Color::Blue) == self.sup.version(Color::Green);
                if blue != green && same_version {
                    self.log(&format!(
                        "state hashes differ at barrier {barrier}: blue {blue:016x}, green {green:016x}"
                    ));
                }
                self.hashes = Some((barrier, blue, green));
            }
            Event::RoleChanged { color, role } => {
                self.log(&format!("{color}: {role}"));
                self.slots[color.index()].live = true;
                self.upgrade_role(color, role);
            }
            Event::ColdStart { color, from } => {
                self.log(&format!(
                    "{color}: no live peer to restore from: it starts from its newest checkpoint, \
                     replayed from origin sequence {from} on"
                ));
            }
            Event::Connected { color, version } => {
                let pid = self.slots[color.index()].pid.unwrap_or(0);
                self.log(&format!(
                    "{color}: connected (pid {pid}, version {version:08x})"
                ));
            }
            Event::OutputGap { from, to } => self.log(&format!(
                "warning: output between origin sequences {from} and {to} was never delivered: \
                 the instance that made it was lost before its peer had restored past it"
            )),
            Event::RetentionMoved {
                color,
                barrier,
                error,
            } => self.log(&format!(
                "{color}: the retention ring moved past barrier {barrier} ({error}); \
                 retrying with a new barrier (a larger [ha] retention avoids this)"
            )),
            Event::RejoinTimedOut { color, barrier } => self.log(&format!(
                "{color}: no snapshot restored for barrier {barrier} in time; retrying"
            )),
            Event::RestoreMismatch { color, barrier, .. } => self.log(&format!(
                "{color}: restored state of barrier {barrier} differs from the donor's; retrying"
            )),
            Event::RejoinStarted { color, barrier, at } => self.log(&format!(
                "{color}: rejoining from a snapshot at barrier {barrier} (origin sequence {at})"
            )),
            Event::Restored { color, barrier } => {
                self.log(&format!("{color}: restored barrier {barrier}, catching up"));
            }
        }
    }

    fn spawn(&mut self, color: Color) {
        let release = &self.releases[color.index()];
        let mut command = Command::new(&release.program);
        command
            .args(&self.args)
            .arg("instance")
            .arg("--color")
            .arg(color.name())
            .arg("--agent")
            .arg(self.addr.to_string())
            .arg("--state-dir")
            .arg(self.state.root())
            .arg("--batch")
            .arg(self.batch.to_string())
            .args(
                (release.file != self.base_file)
                    .then(|| {
                        [
                            OsString::from("--channels-of"),
                            self.base_file.clone().into(),
                        ]
                    })
                    .into_iter()
                    .flatten(),
            )
            .arg(&release.file)
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        #[cfg(target_os = "linux")]
        {
            use std::os::unix::process::CommandExt as _;
            // SAFETY: prctl is async-signal-safe; it only sets a flag of the child.
            unsafe {
                command.pre_exec(|| {
                    // The instance dies with the agent, however the agent ends.
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
        }
        let slot = &mut self.slots[color.index()];
        slot.respawn_at = None;
        match command.spawn() {
            Ok(child) => {
                slot.pid = Some(child.id());
                slot.version = None;
                slot.child = Some(child);
            }
            Err(e) => {
                let program = self.releases[color.index()].program.display().to_string();
                self.log(&format!("{color}: cannot start `{program}`: {e}"));
                self.schedule_respawn(color, true);
            }
        }
    }

    /// Kills `color`'s process and schedules a new one; `expected` when the
    /// agent asked for it (an upgrade), so it is not counted as a failure.
    fn stop_child(&mut self, color: Color, expected: bool) {
        let slot = &mut self.slots[color.index()];
        if let Some(mut child) = slot.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        slot.pid = None;
        slot.version = None;
        self.schedule_respawn(color, !expected);
    }

    /// An instance that dies before it ever served or shadowed backs off
    /// (up to 5 s: it cannot start, and restarting it at once would spin);
    /// one that was live restarts at once.
    fn schedule_respawn(&mut self, color: Color, failed: bool) {
        let slot = &mut self.slots[color.index()];
        slot.restarts += 1;
        slot.failures = if failed && !slot.live {
            slot.failures + 1
        } else {
            0
        };
        slot.live = false;
        let delay = if slot.failures <= 1 {
            Duration::ZERO
        } else {
            Duration::from_millis(100 << slot.failures.min(6)).min(Duration::from_secs(5))
        };
        slot.respawn_at = Some(Instant::now() + delay);
    }

    fn poll_children(&mut self) {
        for color in Color::BOTH {
            let slot = &mut self.slots[color.index()];
            let exited = slot
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                slot.child = None;
                slot.conn = None;
                self.log(&format!("{color}: exited ({status})"));
                if self.sup.role(color).is_some() {
                    self.sup.handle_disconnected(color);
                } else {
                    // It died before its hello: no Lost event will come.
                    self.upgrade_lost(color);
                    if self.slots[color.index()].respawn_at.is_none() {
                        self.schedule_respawn(color, true);
                    }
                }
            }
            let slot = &self.slots[color.index()];
            if slot.child.is_none() && slot.respawn_at.is_some_and(|t| t <= Instant::now()) {
                self.spawn(color);
            }
        }
    }

    fn close_links(&mut self) {
        for slot in &mut self.slots {
            slot.conn = None;
        }
    }

    fn kill_all(&mut self) {
        for slot in &mut self.slots {
            if let Some(child) = slot.child.as_mut() {
                let _ = child.kill();
            }
        }
    }

    /// Waits up to `grace` for the instances to exit, then kills them.
    fn reap(&mut self, grace: Duration) {
        let deadline = Instant::now() + grace;
        for slot in &mut self.slots {
            let Some(child) = slot.child.as_mut() else {
                continue;
            };
            while Instant::now() < deadline {
                if child.try_wait().ok().flatten().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
            slot.child = None;
        }
    }

    /// Updates each instance's output rate and the terminal's status line.
    fn refresh_status(&mut self, dt: f64) {
        for color in Color::BOTH {
            let slot = &mut self.slots[color.index()];
            let received = self.sup.downstream().stats().received[color.index()];
            // Smoothed over a few refreshes: outputs come in bursts.
            let now_rate = received.saturating_sub(slot.received) as f64 / dt.max(1e-3);
            slot.rate = 0.75 * slot.rate + 0.25 * now_rate;
            slot.received = received;
        }
        if self.tty {
            eprint!("\r\x1b[K{}", self.status().line());
        }
    }

    /// What `tandem status` shows, as of now.
    fn status(&self) -> Status {
        let head = self.sup.upstream().head();
        let mut instances = Vec::new();
        for color in Color::BOTH {
            let slot = &self.slots[color.index()];
            let role = self.sup.role(color);
            instances.push(InstanceStatus {
                color,
                role: role.unwrap_or(Role::Starting),
                connected: role.is_some(),
                pid: slot.pid,
                version: slot.version,
                lag: role.map(|_| head.0.saturating_sub(self.sup.processed(color).0)),
                records_per_sec: slot.rate,
                restarts: slot.restarts,
            });
        }
        let down = self.sup.downstream().stats();
        Status {
            graph: self.name.clone(),
            agent_pid: std::process::id(),
            listen: self.addr,
            head: head.0,
            emitted: down.emitted,
            compared: down.compared,
            divergence: down.diverged,
            instances,
            last_barrier: self.hashes,
            bad_frames: self.net.bad_frames(),
            refused: self.net.refused(),
            toggles: self
                .toggle_positions
                .iter()
                .map(|(name, &on)| (name.clone(), on))
                .collect(),
            upgrade: match &self.upgrade {
                Some(upgrade) => {
                    let mut json = upgrade.json();
                    let first: Vec<String> = self
                        .sup
                        .downstream()
                        .divergences()
                        .iter()
                        .take(5)
                        .map(ToString::to_string)
                        .collect();
                    json["first_differences"] = serde_json::json!(first);
                    json
                }
                None => serde_json::json!({ "phase": "idle", "last": self.last_upgrade }),
            },
        }
    }
}

fn nanos(d: Duration) -> Nanos {
    Nanos(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Requests from the control socket, and the upgrade they drive.
impl Hub {
    /// `upgrade FILE [PROGRAM [SUPERVISE_MS [RECORDS]]]`, tab-separated;
    /// `rollback`; `toggle NAME on|off`; `status`.
    fn request(&mut self, line: &str) -> Result<String, String> {
        let mut words = line.split('\t');
        match words.next() {
            Some("status") => Ok(self.status().json()),
            Some("upgrade") => {
                let file = words
                    .next()
                    .filter(|f| !f.is_empty())
                    .ok_or("upgrade needs a graph file")?;
                let program = words
                    .next()
                    .filter(|p| !p.is_empty())
                    .map_or_else(|| self.current.program.clone(), PathBuf::from);
                let supervise = match words.next().filter(|s| !s.is_empty()) {
                    Some(ms) => {
                        Some(Duration::from_millis(ms.parse().map_err(|_| {
                            format!("`{ms}` is not a number of milliseconds")
                        })?))
                    }
                    None => None,
                };
                let records = match words.next().filter(|s| !s.is_empty()) {
                    Some(n) => Some(
                        n.parse()
                            .map_err(|_| format!("`{n}` is not a number of records"))?,
                    ),
                    None => None,
                };
                self.start_upgrade(PathBuf::from(file), program, supervise, records)
            }
            Some("rollback") => self.rollback("asked for by `tandem rollback`"),
            Some("toggle") => {
                let name = words.next().unwrap_or("");
                let on = match words.next() {
                    Some("on") => true,
                    Some("off") => false,
                    other => {
                        return Err(format!(
                            "a toggle is switched `on` or `off`, not `{}`",
                            other.unwrap_or("")
                        ))
                    }
                };
                self.toggle(name, on)
            }
            _ => Err(format!(
                "unknown request `{line}`; the agent takes `status`, `upgrade` and `rollback`"
            )),
        }
    }

    /// Switches toggle `name` (`NAME` or `SOURCE.NAME`) through its source.
    fn toggle(&mut self, name: &str, on: bool) -> Result<String, String> {
        let all: Vec<(String, &Switches, &str)> = self
            .toggles
            .iter()
            .flat_map(|(id, sw)| sw.names().map(move |n| (format!("{id}.{n}"), sw, n)))
            .collect();
        if all.is_empty() {
            return Err(
                "the graph has no toggles; declare them with a source such as \
                 [sources.features] kind = \"toggles\", names = [\"new_cop\"]"
                    .into(),
            );
        }
        let matching: Vec<&(String, &Switches, &str)> = all
            .iter()
            .filter(|(full, _, short)| full == name || *short == name)
            .collect();
        let listed = || {
            all.iter()
                .map(|(full, _, _)| full.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        match matching.as_slice() {
            [(full, switches, short)] => {
                switches.switch(short, on);
                self.toggle_positions.insert(full.clone(), on);
                let state = if on { "on" } else { "off" };
                self.log(&format!("toggle {full} {state}"));
                Ok(format!(
                    "{full} {state}: both instances switch at the same origin sequence number"
                ))
            }
            [] => Err(format!(
                "no toggle `{name}`; the graph's toggles are {}",
                listed()
            )),
            _ => Err(format!(
                "`{name}` names several toggles; give one of {}",
                listed()
            )),
        }
    }

    fn start_upgrade(
        &mut self,
        file: PathBuf,
        program: PathBuf,
        supervise: Option<Duration>,
        records: Option<u64>,
    ) -> Result<String, String> {
        if let Some(running) = &self.upgrade {
            return Err(format!(
                "an upgrade is running (phase {}); wait for it or `tandem rollback`",
                running.phase.name()
            ));
        }
        let serving = |c: Color| self.sup.is_live(c) && self.sup.role(c) == Some(Role::Serving);
        if !Color::BOTH.into_iter().all(serving) {
            return Err(
                "both instances must be serving before an upgrade starts; see `tandem status`"
                    .into(),
            );
        }
        let shown = file.display().to_string();
        let loaded = super::load_graph(&file)?;
        let split = tandem_core::split::split(&loaded.plan).map_err(|e| format!("{shown}: {e}"))?;
        let stamp = GraphStamp::of_plan(&loaded.name, &loaded.plan);
        if loaded.name != self.name {
            return Err(format!(
                "{shown} is graph `{}`, not `{}`; keep `name = \"{}\"` under [graph]",
                loaded.name, self.name, self.name
            ));
        }
        let version = super::instance::version_of(&stamp);
        if version == self.current.version {
            return Err(format!("{shown} is the graph running now"));
        }
        if let Some(reason) = upgrade::refuse(&self.current.split, &split) {
            return Err(format!("{shown}: {reason}"));
        }
        let stats = self.sup.downstream().stats();
        let noise_floor = if stats.compared == 0 {
            0.0
        } else {
            stats.diverged as f64 / stats.compared as f64
        };
        let new = Release {
            file: std::fs::canonicalize(&file).unwrap_or(file),
            program,
            version,
            split,
        };
        let new_color = Color::Green;
        let now = Instant::now();
        // Keep the first differences of this comparison.
        self.sup.clear_divergences();
        self.divergence_logged = 0;
        self.upgrade = Some(Upgrade {
            phase: Phase::Transfer,
            since: now,
            started: now,
            new_color,
            old: self.current.clone(),
            new: new.clone(),
            supervise: supervise.unwrap_or(loaded.ha.supervise),
            supervise_records: records,
            max_mismatch: loaded.ha.max_mismatch,
            noise_floor,
            baseline: (stats.compared, stats.diverged),
            current: (stats.compared, stats.diverged),
            to_shadow_ms: None,
            to_promoted_ms: None,
        });
        self.restart_on(new_color, new);
        Ok(format!(
            "upgrading to {shown} ({version:08x}): {new_color} restarts on it from {}'s state and runs as a shadow; `tandem status` shows the phase",
            new_color.other()
        ))
    }

    /// Restarts `color` on `release` (its instance is dropped at once).
    fn restart_on(&mut self, color: Color, release: Release) {
        self.releases[color.index()] = release;
        if self.sup.role(color).is_some() {
            self.expect_loss[color.index()] = true;
            self.sup.handle_disconnected(color);
        } else {
            self.stop_child(color, true);
        }
    }

    fn rollback(&mut self, reason: &str) -> Result<String, String> {
        let Some(upgrade) = &self.upgrade else {
            return Err("no upgrade is running".into());
        };
        if upgrade.phase == Phase::Replacing {
            return Err(
                "too late: the old version is being replaced by a second copy of the new one; \
                 upgrade again to the old graph instead"
                    .into(),
            );
        }
        let new_color = upgrade.new_color;
        let old = upgrade.old.clone();
        let phase = upgrade.phase;
        self.sup.promote(new_color.other());
        self.restart_on(new_color, old);
        self.log(&format!(
            "upgrade rolled back in phase {}: {reason}",
            phase.name()
        ));
        self.last_upgrade = serde_json::json!({
            "result": "rolled back",
            "phase": phase.name(),
            "reason": reason,
        });
        self.upgrade = None;
        Ok(format!(
            "rolled back: {} serves the old version, {new_color} restarts on it",
            new_color.other()
        ))
    }

    fn upgrade_tick(&mut self) {
        let stats = self.sup.downstream().stats();
        let Some(upgrade) = self.upgrade.as_mut() else {
            return;
        };
        upgrade.current = (stats.compared, stats.diverged);
        if !matches!(upgrade.phase, Phase::Shadow | Phase::Promoted) {
            return;
        }
        if upgrade.past_policy() {
            let (compared, mismatched) = upgrade.window();
            let mut reason = format!(
                "{mismatched} of {compared} compared records differ (rate {:.4}), above the {} allowed over a noise floor of {:.4}",
                upgrade.mismatch_rate(),
                upgrade.max_mismatch,
                upgrade.noise_floor
            );
            if let Some(first) = self.sup.downstream().divergences().first() {
                reason.push_str(&format!("; the first: {first}"));
            }
            let _ = self.rollback(&reason);
            return;
        }
        if !upgrade.period_over() {
            return;
        }
        let new_color = upgrade.new_color;
        match upgrade.phase {
            Phase::Shadow => {
                if self.sup.promote(new_color) {
                    upgrade.to_promoted_ms = Some(upgrade.started.elapsed().as_secs_f64() * 1e3);
                    upgrade.enter(Phase::Promoted);
                    self.log(&format!(
                        "upgrade: {new_color} promoted; the old version shadows it"
                    ));
                }
            }
            Phase::Promoted => {
                let new = upgrade.new.clone();
                upgrade.enter(Phase::Replacing);
                self.log(
                    "upgrade: replacing the old instance with a second copy of the new version",
                );
                self.restart_on(new_color.other(), new);
            }
            Phase::Transfer | Phase::Replacing => {}
        }
    }

    /// An instance was lost on its own during an upgrade.
    fn upgrade_lost(&mut self, color: Color) {
        let Some(upgrade) = &self.upgrade else {
            return;
        };
        if color == upgrade.new_color && upgrade.phase != Phase::Replacing {
            let _ = self.rollback("the new version's instance was lost");
        } else if upgrade.phase == Phase::Transfer {
            // The old one is gone before the new one restored: neither has
            // state to give. Both restart on the old graph.
            let _ = self.rollback("the old version's instance was lost during the transfer");
        } else if color != upgrade.new_color && upgrade.phase != Phase::Replacing {
            // The old one is gone: the new one is all there is. It serves,
            // and the old colour comes back as a second copy of it.
            let new = upgrade.new.clone();
            self.releases[color.index()] = new;
            if let Some(upgrade) = self.upgrade.as_mut() {
                upgrade.enter(Phase::Replacing);
            }
            self.log("upgrade: the old instance was lost; the new version serves and is copied");
        }
    }

    fn upgrade_role(&mut self, color: Color, role: Role) {
        let Some(upgrade) = self.upgrade.as_mut() else {
            return;
        };
        match (upgrade.phase, role) {
            (Phase::Transfer, Role::Shadow) if color == upgrade.new_color => {
                upgrade.to_shadow_ms = Some(upgrade.started.elapsed().as_secs_f64() * 1e3);
                upgrade.enter(Phase::Shadow);
            }
            (Phase::Replacing, Role::Serving) if color != upgrade.new_color => {
                let done = upgrade.new.clone();
                self.last_upgrade = serde_json::json!({
                    "result": "promoted",
                    "to": format!("{:08x}", done.version),
                    "to_graph": done.file.display().to_string(),
                    "to_shadow_ms": upgrade.to_shadow_ms,
                    "to_promoted_ms": upgrade.to_promoted_ms,
                    "done_ms": upgrade.started.elapsed().as_secs_f64() * 1e3,
                });
                self.log(&format!(
                    "upgrade done: both instances run {}",
                    done.file.display()
                ));
                self.current = done;
                self.upgrade = None;
            }
            _ => {}
        }
    }
}
