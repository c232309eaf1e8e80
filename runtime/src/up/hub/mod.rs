//! The agent's hub: the one task that owns the HA supervisor, and the
//! instance processes it starts, watches and restarts. [`upgrade`] is its
//! driving of live upgrades and its answers to the control socket.

mod upgrade;

use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tandem_core::ha::{
    Color, Event, HaConfig, LivenessConfig, Nanos, Role, Supervisor, ToAgent, ToInstance,
    Tolerances, Transmit, UpstreamConfig,
};
use tandem_core::wire;
use tandem_core::{Record, Seq};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

use super::control::Envelope;
use super::ends::Batch;
use super::processes::{Exited, Launch, Processes, Release};
use super::shadow_log::ShadowLog;
use super::status::{InstanceStatus, Status};
use super::toggles::Toggles;
use crate::topology::Topology;
use upgrade::Upgrades;

use super::graph::AgentConfig;
use super::links::Conn;

/// Bytes queued toward an instance beyond which the hub stops taking input
/// until it has caught up (four times that loses the instance).
const BACKLOG_BYTES: usize = 8 << 20;
/// Merged records waiting for the sinks beyond which input waits (1 MiB:
/// sinks that keep up take a batch at a time).
pub(super) const EGRESS_RECORDS: usize = 1 << 15;

/// What the ingress topology hands the hub.
pub(super) enum Ingress {
    /// One `Input` frame, encoded once at ingress.
    Batch(tandem_core::wire::EncodedBatch),
    /// The sources ended.
    Ended,
}

/// How often the loop turns with nothing to do: the heartbeat `/livez`
/// reads, the status figures (and the terminal's line), the shadow log's
/// flush.
const HOUSEKEEPING: Duration = Duration::from_millis(250);
/// How often a running upgrade checks its policy and deadlines.
const UPGRADE_TICK: Duration = Duration::from_millis(20);
/// How long a drain may take before the agent stops without it.
const DRAIN: Duration = Duration::from_secs(10);

/// An instance's link, once it said hello.
pub(super) struct Link {
    pub(super) conn: u64,
    pub(super) tx: UnboundedSender<Bytes>,
    /// Bytes queued to `tx` and not yet written.
    pub(super) queued: Arc<AtomicUsize>,
}

/// An instance's output rate, as status shows it.
#[derive(Clone, Copy, Debug, Default)]
struct Rate {
    received: u64,
    per_sec: f64,
}

/// What the hub is given besides the configuration: the parts `agent.rs`
/// wires up before the hub starts.
pub(super) struct Wiring {
    /// Where the agent listens for instances.
    pub(super) addr: SocketAddr,
    /// Origin sequence numbers already used: numbering resumes above.
    pub(super) after: Seq,
    pub(super) net: Arc<crate::net::NetStats>,
    /// When the agent started: link events carry times since then.
    pub(super) origin: Instant,
    /// Its heartbeat and the node figures, shared with the metrics endpoint.
    pub(super) board: Arc<crate::metrics::Board>,
    /// The graph's feature toggles.
    pub(super) toggles: Toggles,
}

/// What the hub's loop reads: the agent's event sources.
pub(super) struct Inputs<'a> {
    pub(super) ingress: tokio::sync::mpsc::Receiver<Ingress>,
    pub(super) conns: tokio::sync::mpsc::Receiver<Conn>,
    pub(super) stop: UnboundedReceiver<()>,
    pub(super) requests: UnboundedReceiver<Envelope>,
    pub(super) ingress_topology: &'a Topology,
    pub(super) to_sinks: &'a super::ends::RelayFeed,
}

/// How the hub's loop ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Ended {
    /// Everything ingested reached the sinks and the last checkpoint was taken.
    Drained,
    /// The drain did not finish in time, or `--for` ended it.
    Unfinished,
    /// A second stop signal: exit at once, without draining.
    Abandoned,
}

pub(super) struct Hub {
    pub(super) sup: Supervisor,
    pub(super) origin: Instant,
    pub(super) processes: Processes,
    exits: Option<UnboundedReceiver<Exited>>,
    pub(super) links: [Option<Link>; 2],
    rates: [Rate; 2],
    /// What each colour runs (they differ during an upgrade), the upgrade
    /// in progress and the last one's outcome.
    pub(super) upgrades: Upgrades,
    /// Bundles: the install running, the floor, the last outcome.
    pub(super) bundles: crate::bundle::install::Installs,
    /// The graph's feature toggles.
    pub(super) toggles: Toggles,
    pub(super) name: String,
    shadow_log: ShadowLog,
    addr: SocketAddr,
    checkpoint_every: Duration,
    run_for: Option<Duration>,
    net: Arc<crate::net::NetStats>,
    emitted: Vec<Record>,
    /// Control frames and barriers are encoded here (the blocks are reused).
    frames: bytes::BytesMut,
    sent_frontier: Seq,
    divergence_logged: usize,
    hashes: Option<(u64, u64, u64)>,
    board: Arc<crate::metrics::Board>,
    tty: bool,
    /// What systemd is told: ready, watchdog pings, stopping.
    service: crate::service::Notifier,
}

/// How long a live instance may stay behind its live peer without
/// progress before it is lost (docs/ha.md, "Liveness"): four heartbeat
/// timeouts, and at least a second, so that a pause of one process (a
/// large snapshot, the scheduler) is not taken for a stuck one.
fn stall_timeout(timeout: Duration) -> Duration {
    (timeout * 4).max(Duration::from_secs(1))
}

impl Hub {
    pub(super) fn new(config: &AgentConfig, wiring: Wiring) -> Hub {
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
                interval: Nanos::from_duration(config.ha.heartbeat),
                timeout: Nanos::from_duration(config.ha.timeout),
                // An instance working through earlier input, with none
                // coming, hears from the agent well before it gives up on it.
                keepalive: Nanos::from_duration(super::instance::AGENT_SILENCE / 3),
            },
            stall_timeout: Nanos::from_duration(stall_timeout(config.ha.timeout)),
            ..HaConfig::default()
        };
        let mut sup = Supervisor::new(ha);
        if wiring.after > Seq::ZERO {
            // Numbering resumes after the checkpoint, or past it, above every
            // number the last run may have used: the retention ring starts
            // there, and an instance restored at its checkpoint is told that
            // nothing lies in between.
            sup.handle_ingress(Nanos(0), wiring.after, &[]);
        }
        let channels = config.split.egress.channels.clone();
        let current = Release {
            file: config.file.clone(),
            program: config.instance.program.clone(),
            version: super::instance::version_of(&config.stamp),
            split: config.split.clone(),
        };
        let launch = Launch {
            args: config.instance.args.clone(),
            agent: wiring.addr,
            state_dir: config.state.root().to_path_buf(),
            batch: config.batch,
            base_file: config.file.clone(),
        };
        let (processes, exits) = Processes::new(launch, wiring.origin);
        Hub {
            sup,
            origin: wiring.origin,
            processes,
            exits: Some(exits),
            links: Default::default(),
            rates: Default::default(),
            upgrades: Upgrades::new(current),
            bundles: crate::bundle::install::Installs::open(config.state.bundle_gateway()),
            toggles: wiring.toggles,
            name: config.stamp.name.clone(),
            shadow_log: ShadowLog::open(config.shadow_log.as_deref(), channels),
            addr: wiring.addr,
            checkpoint_every: config.checkpoint_every,
            run_for: config.run_for,
            net: wiring.net,
            emitted: Vec::new(),
            frames: bytes::BytesMut::new(),
            sent_frontier: Seq::ZERO,
            divergence_logged: 0,
            hashes: None,
            board: wiring.board,
            tty: std::io::stderr().is_terminal(),
            service: crate::service::Notifier::from_env(),
        }
    }

    /// Starts both instances.
    pub(super) fn start(&mut self) {
        for color in Color::BOTH {
            self.processes.spawn(color, self.upgrades.release(color));
        }
    }

    /// The toggles' positions as last asked.
    pub(super) fn toggle_positions(&self) -> std::collections::BTreeMap<String, bool> {
        self.toggles.positions()
    }

    pub(super) fn now(&self) -> Nanos {
        Nanos::from_duration(self.origin.elapsed())
    }

    /// Logs what happened (see [`crate::logging`]).
    pub(super) fn log(&self, line: &str) {
        tracing::info!("{line}");
    }

    /// Logs what went wrong or may need a person.
    pub(super) fn warn(&self, line: &str) {
        tracing::warn!("{line}");
    }

    /// The agent's loop: takes one event at a time (a stop signal, an
    /// ingress batch, a link event, an instance's exit, a control request,
    /// or a deadline), then sends what the supervisor queued. With nothing
    /// to do it sleeps until the next deadline: heartbeats, a restart, a
    /// checkpoint, or the housekeeping of [`HOUSEKEEPING`].
    pub(super) async fn run(&mut self, inputs: Inputs<'_>) -> Ended {
        let Inputs {
            mut ingress,
            mut conns,
            mut stop,
            mut requests,
            ingress_topology,
            to_sinks,
        } = inputs;
        let mut exits = self.exits.take().unwrap_or_else(|| {
            // Only one loop may run; a second one hears of no exits.
            tokio::sync::mpsc::unbounded_channel().1
        });
        let started = Instant::now();
        let mut next_checkpoint = started + self.checkpoint_every;
        let mut next_housekeeping = started;
        let mut last_housekeeping = started;
        let mut next_upgrade_tick = started;
        let run_until = self.run_for.map(|d| tokio::time::Instant::now() + d);
        let mut stopping: Option<Instant> = None;
        let mut input_ended = false;
        let mut final_barrier: Option<u64> = None;
        loop {
            // Fed on every turn, and at least every HOUSEKEEPING: only a
            // loop that stops turning starves them.
            let turn = Instant::now();
            self.service.tick(turn);
            self.board.beat();
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
                // The pings it queued go now: the loop may sleep until a
                // deadline that counts from them (an idle instance's next
                // wake-up is its ping's deadline, not another ping).
                self.flush(to_sinks);
            }
            let deadlines = [
                self.sup
                    .poll_timeout()
                    .map(|n| turn + Nanos(n.0.saturating_sub(self.now().0)).to_duration()),
                self.processes.next_start(),
                stopping.is_none().then_some(next_checkpoint),
                Some(next_housekeeping),
                self.upgrades.phase().is_some().then_some(next_upgrade_tick),
                stopping.map(|since| since + DRAIN),
                self.service.next_ping(),
            ];
            let wake = deadlines.into_iter().flatten().min();
            let wake = wake.map(tokio::time::Instant::from_std);
            let takes_input =
                !input_ended && !self.backlogged() && to_sinks.queued_records() < EGRESS_RECORDS;
            tokio::select! {
                biased;
                Some(()) = stop.recv() => {
                    if stopping.is_some() {
                        self.warn("second stop signal: exiting without draining");
                        return Ended::Abandoned;
                    }
                    self.log("stopping: draining in-flight records, taking a last checkpoint");
                    self.service.stopping("draining in-flight records, taking a last checkpoint");
                    stopping = Some(Instant::now());
                    ingress_topology.stop();
                }
                _ = sleep_until(run_until), if stopping.is_none() => {
                    stopping = Some(Instant::now());
                    ingress_topology.stop();
                }
                Some(msg) = ingress.recv(), if takes_input => match msg {
                    Ingress::Batch(batch) => self.sup.handle_input(self.now(), batch),
                    Ingress::Ended => {
                        input_ended = true;
                        stopping.get_or_insert_with(Instant::now);
                        final_barrier = Some(self.sup.place_barrier().id);
                    }
                },
                Some(event) = conns.recv() => self.connection_event(event),
                Some(exited) = exits.recv() => self.child_exited(exited),
                Some((request, reply)) = requests.recv() => {
                    let _ = reply.send(self.request(request));
                }
                _ = sleep_until(wake) => {}
            }
            // Whatever woke the loop, what is due now is done.
            let at = Instant::now();
            if self.sup.poll_timeout().is_some_and(|t| t <= self.now()) {
                self.sup.handle_timeout(self.now());
            }
            let due: Vec<Color> = self.processes.due(at).collect();
            for color in due {
                self.processes.spawn(color, self.upgrades.release(color));
            }
            if at >= next_checkpoint {
                next_checkpoint = at + self.checkpoint_every;
                if stopping.is_none() && Color::BOTH.iter().any(|&c| self.sup.is_live(c)) {
                    let _ = self.sup.place_barrier();
                }
            }
            if self.upgrades.phase().is_some() && at >= next_upgrade_tick {
                next_upgrade_tick = at + UPGRADE_TICK;
                self.upgrade_tick();
            }
            if at >= next_housekeeping {
                next_housekeeping = at + HOUSEKEEPING;
                self.shadow_log.flush();
                self.refresh_status(at.duration_since(last_housekeeping).as_secs_f64());
                last_housekeeping = at;
            }
            self.flush(to_sinks);
            self.drop_laggards();
            // Ready once the gateway is redundant (docs/service.md).
            if !self.service.is_ready()
                && Color::BOTH
                    .iter()
                    .all(|&c| self.sup.role(c) == Some(Role::Serving))
            {
                self.service.ready("blue and green serving");
            }
            if let Some(since) = stopping {
                let drained = input_ended
                    && self.sup.downstream().frontier() >= self.sup.upstream().head()
                    && final_barrier.is_some_and(|b| self.sup.checkpointed(b));
                if drained {
                    return Ended::Drained;
                }
                if since.elapsed() > DRAIN {
                    self.warn("stopping without the last checkpoint: the instances did not finish in 10 s");
                    return Ended::Unfinished;
                }
            }
        }
    }

    /// An instance process exited: it is reaped, its link dropped, and the
    /// supervisor told (or, before its hello, a new one scheduled).
    fn child_exited(&mut self, exited: Exited) {
        let color = exited.color;
        let Some(status) = self.processes.reap_exited(exited) else {
            return;
        };
        self.links[color.index()] = None;
        self.warn(&format!("{color}: exited ({status})"));
        if self.sup.role(color).is_some() {
            self.sup.handle_disconnected(color);
        } else {
            // It died before its hello: no Lost event will come.
            self.upgrade_lost(color);
            if self.processes.is_idle(color) {
                self.processes.schedule_respawn(color, true);
            }
        }
    }

    pub(super) fn connection_event(&mut self, event: Conn) {
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
                // Only the process running now: a hello still queued from
                // one the agent has killed (or none it started) is not it.
                if self.processes.pid(color) != Some(pid) {
                    self.warn(&format!(
                        "{color}: hello from pid {pid}, which this agent did not start; refused"
                    ));
                    return;
                }
                self.links[color.index()] = Some(Link { conn, tx, queued });
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
            Conn::Frame {
                conn,
                msg,
                at,
                spares,
                ..
            } => {
                if let Some(color) = self.color_of(conn) {
                    if let ToAgent::Output { records, .. } = &msg {
                        if self.sup.role(color) == Some(Role::Shadow) {
                            self.shadow_log
                                .append(color, self.sup.version(color), records);
                        }
                    }
                    self.sup.handle_message(at, color, msg);
                    // Batch buffers done with go back to the link's decoder.
                    while let Some(spare) = self.sup.take_spare_buffer() {
                        if spares.try_send(spare).is_err() {
                            break;
                        }
                    }
                }
            }
            Conn::Closed { conn, error } => {
                if let Some(color) = self.color_of(conn) {
                    match error {
                        None => self.log(&format!("{color}: link closed by the instance")),
                        Some(e) => self.log(&format!("{color}: link closed: {e}")),
                    }
                    self.links[color.index()] = None;
                    self.sup.handle_disconnected(color);
                }
            }
        }
    }

    pub(super) fn color_of(&self, conn: u64) -> Option<Color> {
        Color::BOTH.into_iter().find(|c| {
            self.links[c.index()]
                .as_ref()
                .is_some_and(|link| link.conn == conn)
        })
    }

    /// Encodes a control frame or a barrier into the hub's reused buffer.
    fn encode(&mut self, msg: &ToInstance) -> Result<Bytes, wire::EncodeError> {
        wire::encode(msg, &mut self.frames)?;
        Ok(self.frames.split().freeze())
    }

    pub(super) fn send(&self, color: Color, bytes: Bytes) {
        if let Some(link) = &self.links[color.index()] {
            link.queued.fetch_add(bytes.len(), Ordering::Relaxed);
            let _ = link.tx.send(bytes);
        }
    }

    /// An instance with four times [`BACKLOG_BYTES`] waiting for it (one
    /// catching up that cannot) is lost and restarted: queues are bounded.
    pub(super) fn drop_laggards(&mut self) {
        for color in Color::BOTH {
            let behind = self.links[color.index()]
                .as_ref()
                .is_some_and(|link| link.queued.load(Ordering::Relaxed) > 4 * BACKLOG_BYTES);
            if behind && self.sup.role(color).is_some() {
                self.warn(&format!(
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
    pub(super) fn backlogged(&self) -> bool {
        Color::BOTH.into_iter().any(|c| {
            self.sup.role(c).is_some()
                && self.links[c.index()]
                    .as_ref()
                    .is_some_and(|link| link.queued.load(Ordering::Relaxed) > BACKLOG_BYTES)
        })
    }

    /// Sends what the supervisor queued, emits what it merged, handles its events.
    pub(super) fn flush(&mut self, to_sinks: &super::ends::RelayFeed) {
        for color in Color::BOTH {
            while let Some(msg) = self.sup.poll_control(color) {
                if let Ok(bytes) = self.encode(&msg) {
                    self.send(color, bytes);
                }
            }
        }
        // A replay (an instance catching up) is queued as its link drains,
        // not all at once: the queue stays near BACKLOG_BYTES.
        while !self.backlogged() {
            let Some((recipients, frame)) = self.sup.poll_input_frame() else {
                break;
            };
            // Input is the bytes encoded at ingress and kept in the
            // retention ring: both instances get them as they are.
            let bytes = match frame {
                Transmit::Encoded(bytes) => bytes,
                Transmit::Message(msg) => match self.encode(&msg) {
                    Ok(bytes) => bytes,
                    Err(_) => continue,
                },
            };
            for color in recipients.iter() {
                self.send(color, bytes.clone());
            }
        }
        self.sup.poll_emitted(&mut self.emitted);
        let frontier = self.sup.downstream().frontier();
        if !self.emitted.is_empty() || frontier > self.sent_frontier {
            self.sent_frontier = frontier;
            // The merged records go on in their own buffer; the next ones
            // fill one the egress is done with.
            let records = std::mem::replace(&mut self.emitted, to_sinks.spare());
            to_sinks.send(Batch { frontier, records });
        }
        while let Some(event) = self.sup.poll_event() {
            self.event(event);
        }
        let divergences = self.sup.downstream().divergences();
        if divergences.len() > self.divergence_logged {
            for d in divergences.iter().skip(self.divergence_logged) {
                self.warn(&format!("divergence: {d}"));
            }
            self.divergence_logged = divergences.len();
        }
    }

    pub(super) fn event(&mut self, event: Event) {
        match event {
            Event::Lost { color, reason } => {
                let now = self.now();
                // A restart the upgrade asked for, or a failure it reacts to.
                let restart = self.upgrades.handle_supervisor_event(now, &event) == Some(true);
                if restart {
                    let file = self.upgrades.release(color).file.display().to_string();
                    self.log(&format!("{color}: restarting on {file}"));
                } else {
                    self.warn(&format!("{color}: lost ({reason:?}); restarting it"));
                    self.drive_upgrade();
                }
                self.links[color.index()] = None;
                self.processes.stop(color, restart);
            }
            Event::StateHashes {
                barrier,
                blue,
                green,
            } => {
                let same_version = self.sup.version(Color::Blue) == self.sup.version(Color::Green);
                if blue != green && same_version {
                    self.warn(&format!(
                        "state hashes differ at barrier {barrier}: blue {blue:016x}, green {green:016x}"
                    ));
                }
                self.hashes = Some((barrier, blue, green));
            }
            Event::RoleChanged { color, role } => {
                self.log(&format!("{color}: {role}"));
                self.processes.mark_live(color);
                let now = self.now();
                self.upgrades.handle_supervisor_event(now, &event);
                self.drive_upgrade();
            }
            Event::ColdStart { color, from } => {
                self.log(&format!(
                    "{color}: no live peer to restore from: it starts from its newest checkpoint, \
                     replayed from origin sequence {from} on"
                ));
            }
            Event::Connected { color, version } => {
                let pid = self.processes.pid(color).unwrap_or(0);
                self.log(&format!(
                    "{color}: connected (pid {pid}, version {version:08x})"
                ));
            }
            Event::OutputGap { from, to } => self.warn(&format!(
                "output between origin sequences {from} and {to} was never delivered: \
                 the instance that made it was lost before its peer had restored past it, \
                 or the instance now serving ran further ahead, while it did not serve, \
                 than the comparison queue holds"
            )),
            Event::RetentionMoved {
                color,
                barrier,
                error,
            } => self.warn(&format!(
                "{color}: the retention ring moved past barrier {barrier} ({error}); \
                 retrying with a new barrier (a larger [ha] retention avoids this)"
            )),
            Event::RejoinTimedOut { color, barrier } => self.warn(&format!(
                "{color}: no snapshot restored for barrier {barrier} in time; retrying"
            )),
            Event::RestoreMismatch { color, barrier, .. } => self.warn(&format!(
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

    /// The supervisor forgot its divergences: the next ones are logged.
    pub(super) fn divergences_cleared(&mut self) {
        self.divergence_logged = 0;
    }

    /// Drops both links: the instances drain and stop.
    pub(super) fn close_links(&mut self) {
        self.links = Default::default();
    }

    /// Kills both instances, without waiting.
    pub(super) fn kill_all(&mut self) {
        self.processes.kill_all();
    }

    /// Waits up to `grace` for the instances to exit, then kills them.
    pub(super) fn reap(&mut self, grace: Duration) {
        self.processes.reap(grace);
    }

    /// Updates each instance's output rate and the terminal's status line.
    pub(super) fn refresh_status(&mut self, dt: f64) {
        for color in Color::BOTH {
            let rate = &mut self.rates[color.index()];
            let received = self.sup.downstream().stats().received[color.index()];
            // Smoothed over a few refreshes: outputs come in bursts.
            let now_rate = received.saturating_sub(rate.received) as f64 / dt.max(1e-3);
            rate.per_sec = 0.75 * rate.per_sec + 0.25 * now_rate;
            rate.received = received;
        }
        if self.tty {
            eprint!("\r\x1b[K{}", self.status().line());
        }
    }

    /// What `tandem status` shows, as of now.
    pub(super) fn status(&self) -> Status {
        let head = self.sup.upstream().head();
        let mut instances = Vec::new();
        for color in Color::BOTH {
            let role = self.sup.role(color);
            instances.push(InstanceStatus {
                color,
                role: role.unwrap_or(Role::Starting),
                connected: role.is_some(),
                pid: self.processes.pid(color),
                version: self.sup.version(color),
                lag: role.map(|_| head.0.saturating_sub(self.sup.processed(color).0)),
                records_per_sec: self.rates[color.index()].per_sec,
                restarts: self.processes.restarts(color),
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
            observed: self.board.observed(),
            bundles: self.bundles.json(),
            toggles: self.toggles.positions().into_iter().collect(),
            upgrade: self.upgrade_json(),
        }
    }
}

pub(super) async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
