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
use std::sync::{Arc, Mutex};
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
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use super::dirs::StateDir;
use super::ends::{relay, Batch, Forward};
use super::status::{self, InstanceStatus, Status};
use crate::checkpoint::{Checkpoint, GraphStamp};
use crate::net::{Link, Server, TransportOptions};
use crate::topology::{Attached, RunOptions, Topology};
use crate::Clock;

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
    /// Sinks built by the caller instead of by their kind, by node id
    /// (benches and tests that observe the merged output).
    pub egress: Attached,
}

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
    },
    Frame {
        conn: u64,
        msg: ToAgent,
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
        TransportOptions::default(),
    )
    .map_err(|e| e.to_string())?;
    let addr = server.local_addr().map_err(|e| e.to_string())?;

    // Egress: merged output -> sinks.
    let (to_sinks, from_hub) = relay();
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
    let (ingress_tx, ingress_rx) = unbounded_channel::<Ingress>();
    let sink = Forward::new(move |frontier: Seq, records: &mut Vec<Record>| {
        let msg = if frontier == Seq::END {
            Ingress::Ended
        } else {
            Ingress::Batch(frontier, std::mem::take(records))
        };
        let _ = ingress_tx.send(msg);
    });
    let mut attached = Attached::default();
    attached
        .sinks
        .insert(TO_INSTANCES.to_owned(), Box::new(sink));
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

    let (conn_tx, conn_rx) = unbounded_channel::<Conn>();
    let server = Arc::new(server);
    let stats = server.stats().clone();
    tokio::spawn(accept(server.clone(), conn_tx));

    let status = Arc::new(Mutex::new(String::from("{}")));
    let socket = config.state.socket();
    let _ = std::fs::remove_file(&socket);
    match tokio::net::UnixListener::bind(&socket) {
        Ok(listener) => {
            tokio::spawn(status::serve(listener, status.clone()));
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

    let mut hub = Hub::new(&config, addr, after, status, stats);
    eprintln!(
        "tandem: up `{}`: agent on {addr}, blue and green instances starting; Ctrl-C stops",
        config.stamp.name
    );
    hub.spawn(Color::Blue);
    hub.spawn(Color::Green);
    hub.run(ingress_rx, conn_rx, stop_rx, &ingress, &to_sinks)
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

/// Accepts instance connections; each runs in its own task.
async fn accept(server: Arc<Server>, events: UnboundedSender<Conn>) {
    let mut next = 0u64;
    while let Some(pending) = server.accept().await {
        next += 1;
        let conn = next;
        let events = events.clone();
        tokio::spawn(async move {
            match pending.establish().await {
                Ok(link) => connection(conn, link, events).await,
                Err(e) => eprintln!("tandem: refused a connection: {e}"),
            }
        });
    }
}

/// One instance link: the first frame must be `Hello`; then frames go to
/// the hub, and what the hub queues goes out.
async fn connection(conn: u64, link: Link, events: UnboundedSender<Conn>) {
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
        }))) => (color, version, pid),
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
    if events
        .send(Conn::Hello {
            conn,
            color,
            version,
            pid,
            tx,
        })
        .is_err()
    {
        return;
    }
    tokio::spawn(async move {
        while let Some(bytes) = rx.recv().await {
            if writer.send_bytes(bytes).await.is_err() {
                return;
            }
        }
        let _ = writer.finish();
    });
    loop {
        match reader.next().await {
            Ok(Some(frame)) => match ToAgent::try_from(frame) {
                Ok(msg) => {
                    if events.send(Conn::Frame { conn, msg }).is_err() {
                        return;
                    }
                }
                Err(unexpected) => {
                    connection.close(
                        quinn::VarInt::from_u32(crate::net::CLOSE_BAD_FRAME),
                        b"unexpected frame",
                    );
                    let _ = events.send(closed(unexpected.to_string()));
                    return;
                }
            },
            Ok(None) => {
                let _ = events.send(closed("the instance closed its link".into()));
                return;
            }
            Err(e) => {
                let _ = events.send(closed(e.to_string()));
                return;
            }
        }
    }
}

/// One instance slot: its process and its link.
#[derive(Default)]
struct Slot {
    child: Option<Child>,
    spawned: Option<Instant>,
    respawn_at: Option<Instant>,
    failures: u32,
    restarts: u64,
    conn: Option<(u64, UnboundedSender<Bytes>)>,
    version: Option<u32>,
    pid: Option<u32>,
    received: u64,
    rate: f64,
}

struct Hub {
    sup: Supervisor,
    origin: Instant,
    slots: [Slot; 2],
    file: PathBuf,
    name: String,
    state: StateDir,
    instance: InstanceCommand,
    batch: usize,
    addr: SocketAddr,
    checkpoint_every: Duration,
    run_for: Option<Duration>,
    status: Arc<Mutex<String>>,
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
        status: Arc<Mutex<String>>,
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
        Hub {
            sup,
            origin: Instant::now(),
            slots: Default::default(),
            file: config.file.clone(),
            name: config.stamp.name.clone(),
            state: config.state.clone(),
            instance: config.instance.clone(),
            batch: config.batch,
            addr,
            checkpoint_every: config.checkpoint_every,
            run_for: config.run_for,
            status,
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
        mut ingress: UnboundedReceiver<Ingress>,
        mut conns: UnboundedReceiver<Conn>,
        mut stop: UnboundedReceiver<()>,
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
                self.sup.handle_timeout(now);
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
                Some(msg) = ingress.recv(), if !input_ended => match msg {
                    Ingress::Batch(frontier, records) => self.sup.handle_ingress(frontier, &records),
                    Ingress::Ended => {
                        input_ended = true;
                        stopping.get_or_insert_with(Instant::now);
                        final_barrier = Some(self.sup.place_barrier().id);
                    }
                },
                Some(event) = conns.recv() => self.connection_event(event),
                _ = sleep_until(timeout) => {
                    let now = self.now();
                    self.sup.handle_timeout(now);
                }
                _ = tick.tick() => {
                    self.poll_children();
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
            } => {
                let slot = &mut self.slots[color.index()];
                if slot.child.as_ref().is_some_and(|c| c.id() != pid) {
                    self.log(&format!(
                        "{color}: hello from pid {pid}, which this agent did not start; refused"
                    ));
                    return;
                }
                slot.conn = Some((conn, tx));
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
            Conn::Frame { conn, msg } => {
                if let Some(color) = self.color_of(conn) {
                    self.sup.handle_message(now, color, msg);
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

    fn color_of(&self, conn: u64) -> Option<Color> {
        Color::BOTH.into_iter().find(|c| {
            self.slots[c.index()]
                .conn
                .as_ref()
                .is_some_and(|(id, _)| *id == conn)
        })
    }

    fn send(&self, color: Color, bytes: Bytes) {
        if let Some((_, tx)) = &self.slots[color.index()].conn {
            let _ = tx.send(bytes);
        }
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
                self.log(&format!("{color}: lost ({reason:?}); restarting it"));
                self.slots[color.index()].conn = None;
                self.stop_child(color);
            }
            Event::StateHashes {
                barrier,
                blue,
                green,
            } => {
                if blue != green {
                    self.log(&format!(
                        "state hashes differ at barrier {barrier}: blue {blue:016x}, green {green:016x}"
                    ));
                }
                self.hashes = Some((barrier, blue, green));
            }
            Event::RoleChanged { color, role } => {
                self.log(&format!("{color}: {role}"));
            }
            Event::ColdStart { color, from } => {
                self.log(&format!("{color}: starting from origin sequence {from}"));
            }
            Event::RejoinStarted { color, barrier, at } => self.log(&format!(
                "{color}: rejoining from a snapshot at barrier {barrier} (origin sequence {at})"
            )),
            Event::Restored { color, barrier } => {
                self.log(&format!("{color}: restored barrier {barrier}, catching up"));
            }
            other => self.log(&format!("{other:?}")),
        }
    }

    fn spawn(&mut self, color: Color) {
        let mut command = Command::new(&self.instance.program);
        command
            .args(&self.instance.args)
            .arg("instance")
            .arg("--color")
            .arg(color.name())
            .arg("--agent")
            .arg(self.addr.to_string())
            .arg("--state-dir")
            .arg(self.state.root())
            .arg("--batch")
            .arg(self.batch.to_string())
            .arg(&self.file)
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
                slot.spawned = Some(Instant::now());
            }
            Err(e) => {
                let program = self.instance.program.display().to_string();
                self.log(&format!("{color}: cannot start `{program}`: {e}"));
                self.schedule_respawn(color);
            }
        }
    }

    fn stop_child(&mut self, color: Color) {
        let slot = &mut self.slots[color.index()];
        if let Some(mut child) = slot.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.schedule_respawn(color);
    }

    /// A quick death backs off (up to 5 s); a long life restarts at once.
    fn schedule_respawn(&mut self, color: Color) {
        let slot = &mut self.slots[color.index()];
        slot.restarts += 1;
        let short_lived = slot
            .spawned
            .is_none_or(|t| t.elapsed() < Duration::from_secs(1));
        slot.failures = if short_lived { slot.failures + 1 } else { 0 };
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
                    self.schedule_respawn(color);
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

    fn refresh_status(&mut self, dt: f64) {
        let head = self.sup.upstream().head();
        let mut instances = Vec::new();
        for color in Color::BOTH {
            let slot = &mut self.slots[color.index()];
            let received = self.sup.downstream().stats().received[color.index()];
            slot.rate = received.saturating_sub(slot.received) as f64 / dt.max(1e-3);
            slot.received = received;
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
        let status = Status {
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
        };
        if self.tty {
            eprint!("\r\x1b[K{}", status.line());
        }
        *self.status.lock().unwrap_or_else(|e| e.into_inner()) = status.json();
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
