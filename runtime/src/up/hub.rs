//! The agent's hub: the one task that owns the HA supervisor, and the
//! instance processes it starts, watches and restarts.

use std::ffi::OsString;
use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tandem_core::ha::{
    Color, Event, HaConfig, LivenessConfig, Nanos, Role, Supervisor, ToAgent, Tolerances,
    UpstreamConfig,
};
use tandem_core::wire;
use tandem_core::{Record, Seq};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

use super::control::Envelope;
use super::dirs::StateDir;
use super::ends::Batch;
use super::status::{InstanceStatus, Status};
use super::upgrade::{Release, Upgrade};
use crate::topology::Topology;
use tandem_nodes::io::toggles::Switches;

use super::agent::{AgentConfig, Ingress, BACKLOG_BYTES, EGRESS_BATCHES};
use super::links::Conn;

/// One instance slot: its process and its link.
#[derive(Default)]
pub(super) struct Slot {
    pub(super) child: Option<Child>,
    /// It has served or shadowed since it was started.
    pub(super) live: bool,
    pub(super) respawn_at: Option<Instant>,
    pub(super) failures: u32,
    pub(super) restarts: u64,
    pub(super) conn: Option<(u64, UnboundedSender<Bytes>, Arc<AtomicUsize>)>,
    pub(super) pid: Option<u32>,
    pub(super) received: u64,
    pub(super) rate: f64,
}

pub(super) struct Hub {
    pub(super) sup: Supervisor,
    pub(super) origin: Instant,
    pub(super) slots: [Slot; 2],
    /// What each colour runs (they differ during an upgrade).
    pub(super) releases: [Release; 2],
    /// What the graph is, outside an upgrade.
    pub(super) current: Release,
    pub(super) upgrade: Option<Upgrade>,
    pub(super) last_upgrade: serde_json::Value,
    /// Bundles: the install running, the floor, the last outcome.
    pub(super) bundles: crate::bundle::install::Installs,
    /// The graph's `toggles` sources, by node id.
    pub(super) toggles: Vec<(String, Switches)>,
    /// Each toggle's position as last asked (the graph's `on` list at start).
    pub(super) toggle_positions: std::collections::BTreeMap<String, bool>,
    /// Positions to keep on disk: a writer off this loop saves the latest.
    pub(super) kept_toggles: tokio::sync::watch::Sender<std::collections::BTreeMap<String, bool>>,
    /// Losses the agent caused itself (restarts onto another release).
    pub(super) expect_loss: [bool; 2],
    pub(super) name: String,
    /// Shadow outputs go here, with the channel names of `channels`.
    pub(super) shadow_log: Option<std::io::BufWriter<std::fs::File>>,
    pub(super) channels: Arc<tandem_core::ChannelTable>,
    pub(super) state: StateDir,
    pub(super) args: Vec<OsString>,
    /// The graph the agent's sources and sinks come from: instances on
    /// another graph translate channel ids to its table.
    pub(super) base_file: PathBuf,
    pub(super) batch: usize,
    pub(super) addr: SocketAddr,
    pub(super) checkpoint_every: Duration,
    pub(super) run_for: Option<Duration>,
    pub(super) net: Arc<crate::net::NetStats>,
    pub(super) emitted: Vec<Record>,
    pub(super) sent_frontier: Seq,
    pub(super) divergence_logged: usize,
    pub(super) hashes: Option<(u64, u64, u64)>,
    /// Its heartbeat and the node figures, shared with the metrics endpoint.
    pub(super) board: Arc<crate::metrics::Board>,
    pub(super) tty: bool,
    /// What systemd is told: ready, watchdog pings, stopping.
    pub(super) service: crate::service::Notifier,
}

impl Hub {
    pub(super) fn new(
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
            // Numbering resumes after the checkpoint, or past it, above every
            // number the last run may have used: the retention ring starts
            // there, and an instance restored at its checkpoint is told that
            // nothing lies in between.
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
                    tracing::warn!(
                        "{}: cannot open the shadow log: {e}; shadow output is not kept",
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
            bundles: crate::bundle::install::Installs::open(config.state.bundle_gateway()),
            toggles: Vec::new(),
            toggle_positions: Default::default(),
            kept_toggles: tokio::sync::watch::channel(Default::default()).0,
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
            board: crate::metrics::board(),
            tty: std::io::stderr().is_terminal(),
            service: crate::service::Notifier::from_env(),
        }
    }

    pub(super) fn now(&self) -> Nanos {
        Nanos(i64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(i64::MAX))
    }

    /// Logs what happened (see [`crate::logging`]).
    pub(super) fn log(&self, line: &str) {
        tracing::info!("{line}");
    }

    /// Logs what went wrong or may need a person.
    pub(super) fn warn(&self, line: &str) {
        tracing::warn!("{line}");
    }

    pub(super) async fn run(
        &mut self,
        mut ingress: tokio::sync::mpsc::Receiver<Ingress>,
        mut conns: tokio::sync::mpsc::Receiver<Conn>,
        mut stop: UnboundedReceiver<()>,
        mut requests: UnboundedReceiver<Envelope>,
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
            // Fed on every turn, not on the tick, which a burst of frames
            // can hold off: only a loop that stops turning starves it.
            self.service.tick(Instant::now());
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
                        self.warn("second stop signal: exiting without draining");
                        self.kill_all();
                        std::process::exit(130);
                    }
                    self.log("stopping: draining in-flight records, taking a last checkpoint");
                    self.service.stopping("draining in-flight records, taking a last checkpoint");
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
                Some((request, reply)) = requests.recv() => {
                    let _ = reply.send(self.request(request));
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
                    // Ready once the gateway is redundant (docs/service.md).
                    if !self.service.is_ready()
                        && Color::BOTH.iter().all(|&c| self.sup.role(c) == Some(Role::Serving))
                    {
                        self.service.ready("blue and green serving");
                    }
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
                        self.warn("stopping without the last checkpoint: the instances did not finish in 10 s");
                    }
                    return;
                }
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
                let slot = &mut self.slots[color.index()];
                if slot.child.as_ref().is_some_and(|c| c.id() != pid) {
                    self.warn(&format!(
                        "{color}: hello from pid {pid}, which this agent did not start; refused"
                    ));
                    return;
                }
                slot.conn = Some((conn, tx, queued));
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
    pub(super) fn log_shadow(&mut self, color: Color, records: &[Record]) {
        let version = self.sup.version(color).map(|v| format!("{v:08x}"));
        let Some(log) = self.shadow_log.as_mut() else {
            return;
        };
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
                tracing::warn!("cannot write the shadow log; shadow output is not kept");
                self.shadow_log = None;
                return;
            }
        }
    }

    pub(super) fn color_of(&self, conn: u64) -> Option<Color> {
        Color::BOTH.into_iter().find(|c| {
            self.slots[c.index()]
                .conn
                .as_ref()
                .is_some_and(|(id, _, _)| *id == conn)
        })
    }

    pub(super) fn send(&self, color: Color, bytes: Bytes) {
        if let Some((_, tx, queued)) = &self.slots[color.index()].conn {
            queued.fetch_add(bytes.len(), Ordering::Relaxed);
            let _ = tx.send(bytes);
        }
    }

    /// An instance with four times [`BACKLOG_BYTES`] waiting for it (one
    /// catching up that cannot) is lost and restarted: queues are bounded.
    pub(super) fn drop_laggards(&mut self) {
        for color in Color::BOTH {
            let behind = self.slots[color.index()]
                .conn
                .as_ref()
                .is_some_and(|(_, _, queued)| queued.load(Ordering::Relaxed) > 4 * BACKLOG_BYTES);
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
                && self.slots[c.index()]
                    .conn
                    .as_ref()
                    .is_some_and(|(_, _, queued)| queued.load(Ordering::Relaxed) > BACKLOG_BYTES)
        })
    }

    /// Sends what the supervisor queued, emits what it merged, handles its events.
    pub(super) fn flush(&mut self, to_sinks: &super::ends::RelayFeed) {
        for color in Color::BOTH {
            while let Some(msg) = self.sup.poll_control(color) {
                if let Ok(bytes) = wire::encode_to_bytes(&msg) {
                    self.send(color, bytes);
                }
            }
        }
        while let Some((recipients, msg)) = self.sup.poll_input() {
            // Encoded once; both instances get the same bytes.
            if let Ok(bytes) = wire::encode_to_bytes(&msg) {
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
            for d in divergences.iter().skip(self.divergence_logged) {
                self.warn(&format!("divergence: {d}"));
            }
            self.divergence_logged = divergences.len();
        }
    }

    pub(super) fn event(&mut self, event: Event) {
        match event {
            Event::Lost { color, reason } => {
                let expected = std::mem::take(&mut self.expect_loss[color.index()]);
                if expected {
                    let file = self.releases[color.index()].file.display().to_string();
                    self.log(&format!("{color}: restarting on {file}"));
                } else {
                    self.warn(&format!("{color}: lost ({reason:?}); restarting it"));
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
                    self.warn(&format!(
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
            Event::OutputGap { from, to } => self.warn(&format!(
                "output between origin sequences {from} and {to} was never delivered: \
                 the instance that made it was lost before its peer had restored past it"
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

    pub(super) fn spawn(&mut self, color: Color) {
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
        for var in crate::service::INHERITED {
            command.env_remove(var);
        }
        #[cfg(target_os = "linux")]
        {
            use std::os::unix::process::CommandExt as _;
            // A process group of its own (setpgid(0, 0)): a terminal's
            // Ctrl-C reaches the agent only, and the instance stops when the
            // agent has drained it and closes its link.
            command.process_group(0);
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
                slot.child = Some(child);
            }
            Err(e) => {
                let program = self.releases[color.index()].program.display().to_string();
                self.warn(&format!("{color}: cannot start `{program}`: {e}"));
                self.schedule_respawn(color, true);
            }
        }
    }

    /// Kills `color`'s process and schedules a new one; `expected` when the
    /// agent asked for it (an upgrade), so it is not counted as a failure.
    pub(super) fn stop_child(&mut self, color: Color, expected: bool) {
        let slot = &mut self.slots[color.index()];
        if let Some(mut child) = slot.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        slot.pid = None;
        self.schedule_respawn(color, !expected);
    }

    /// An instance that dies before it ever served or shadowed backs off
    /// (up to 5 s: it cannot start, and restarting it at once would spin);
    /// one that was live restarts at once.
    pub(super) fn schedule_respawn(&mut self, color: Color, failed: bool) {
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

    pub(super) fn poll_children(&mut self) {
        for color in Color::BOTH {
            let slot = &mut self.slots[color.index()];
            let exited = slot
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                slot.child = None;
                slot.conn = None;
                self.warn(&format!("{color}: exited ({status})"));
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

    pub(super) fn close_links(&mut self) {
        for slot in &mut self.slots {
            slot.conn = None;
        }
    }

    pub(super) fn kill_all(&mut self) {
        for slot in &mut self.slots {
            if let Some(child) = slot.child.as_mut() {
                let _ = child.kill();
            }
        }
    }

    /// Waits up to `grace` for the instances to exit, then kills them.
    pub(super) fn reap(&mut self, grace: Duration) {
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
    pub(super) fn refresh_status(&mut self, dt: f64) {
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
    pub(super) fn status(&self) -> Status {
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
                version: self.sup.version(color),
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
            observed: self.board.observed(),
            bundles: self.bundles.json(),
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

pub(super) fn nanos(d: Duration) -> Nanos {
    Nanos(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

pub(super) async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
