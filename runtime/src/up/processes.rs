//! The instance processes the agent starts, watches and restarts.
//!
//! Each child has a watcher thread blocked on its pidfd: it reports the exit
//! on a channel the hub's loop reads, so the hub learns of a death at once
//! and without polling, and reaps the child itself.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tandem_core::ha::{Color, Nanos, Restarts};
use tandem_core::split::Split;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

/// The graph and executable an instance runs.
#[derive(Clone, Debug)]
pub struct Release {
    /// The graph file.
    pub file: PathBuf,
    /// The tandem executable.
    pub program: PathBuf,
    /// Its version (see `instance::version_of`).
    pub version: u32,
    /// The graph cut for 1+1.
    pub split: Split,
}

/// A child that has exited (its process id), as its watcher saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Exited {
    pub(super) color: Color,
    pub(super) pid: u32,
}

/// What every instance is started with, whatever its release.
#[derive(Clone, Debug)]
pub(super) struct Launch {
    /// Arguments before `instance`.
    pub(super) args: Vec<OsString>,
    /// Where the agent listens for instances.
    pub(super) agent: SocketAddr,
    /// The state directory.
    pub(super) state_dir: PathBuf,
    /// Records per node pass.
    pub(super) batch: usize,
    /// The graph the agent's sources and sinks come from: instances on
    /// another graph translate channel ids to its table.
    pub(super) base_file: PathBuf,
}

/// Blue's and green's processes; when each starts again is the core's
/// policy ([`Restarts`]).
pub(super) struct Processes {
    launch: Launch,
    children: [Option<Child>; 2],
    restarts: Restarts,
    /// What the policy's times count from: the hub's origin, so that they
    /// are the supervisor's times too.
    origin: Instant,
    exits: UnboundedSender<Exited>,
}

impl Processes {
    /// No process yet, times counted from the hub's `origin`; exits are
    /// reported on the receiver returned.
    pub(super) fn new(launch: Launch, origin: Instant) -> (Processes, UnboundedReceiver<Exited>) {
        let (exits, exited) = unbounded_channel();
        let processes = Processes {
            launch,
            children: Default::default(),
            restarts: Restarts::new(),
            origin,
            exits,
        };
        (processes, exited)
    }

    /// The process id of `color`'s running child.
    pub(super) fn pid(&self, color: Color) -> Option<u32> {
        self.children[color.index()].as_ref().map(Child::id)
    }

    /// Times `color` was restarted.
    pub(super) fn restarts(&self, color: Color) -> u64 {
        self.restarts.restarts(color)
    }

    /// `color` serves or shadows: a later death restarts it at once.
    pub(super) fn mark_live(&mut self, color: Color) {
        self.restarts.handle_live(color);
    }

    /// True when `color` has no process and none is scheduled.
    pub(super) fn is_idle(&self, color: Color) -> bool {
        self.children[color.index()].is_none() && self.restarts.due(color).is_none()
    }

    /// Starts `color` on `release`. A start that fails is retried later.
    pub(super) fn spawn(&mut self, color: Color, release: &Release) {
        let launch = &self.launch;
        let mut command = Command::new(&release.program);
        command
            .args(&launch.args)
            .arg("instance")
            .arg("--color")
            .arg(color.name())
            .arg("--agent")
            .arg(launch.agent.to_string())
            .arg("--state-dir")
            .arg(&launch.state_dir)
            .arg("--batch")
            .arg(launch.batch.to_string())
            .args(
                (release.file != launch.base_file)
                    .then(|| {
                        [
                            OsString::from("--channels-of"),
                            launch.base_file.clone().into(),
                        ]
                    })
                    .into_iter()
                    .flatten(),
            )
            .arg(&release.file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            // The instance dies with this agent, however it ends: the
            // instance arranges it (`instance::AGENT_PID`), so that no hook
            // runs between fork and exec and the start is a posix_spawn,
            // which does not make this process's pages copy-on-write.
            .env(super::instance::AGENT_PID, std::process::id().to_string());
        for var in crate::service::INHERITED {
            command.env_remove(var);
        }
        #[cfg(unix)]
        {
            use std::os::unix::process::CommandExt as _;
            // A process group of its own (setpgid(0, 0)): a terminal's
            // Ctrl-C reaches the agent only, and the instance stops when the
            // agent has drained it and closes its link.
            command.process_group(0);
        }
        self.restarts.handle_started(color);
        match command.spawn() {
            Ok(child) => {
                watch(color, child.id(), self.exits.clone());
                self.children[color.index()] = Some(child);
            }
            Err(e) => {
                tracing::warn!("{color}: cannot start `{}`: {e}", release.program.display());
                self.schedule_respawn(color, true);
            }
        }
    }

    /// Kills `color`'s process and schedules a new one; `expected` when the
    /// agent asked for it (an upgrade), so it is not counted as a failure.
    pub(super) fn stop(&mut self, color: Color, expected: bool) {
        if let Some(mut child) = self.children[color.index()].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.schedule_respawn(color, !expected);
    }

    /// Reaps `exited` if it is `color`'s current child (a watcher may report
    /// one the agent already killed and reaped): its status, and the slot
    /// is empty.
    pub(super) fn reap_exited(&mut self, exited: Exited) -> Option<ExitStatus> {
        let slot = &mut self.children[exited.color.index()];
        let child = slot.as_mut().filter(|c| c.id() == exited.pid)?;
        let status = child.try_wait().ok().flatten()?;
        *slot = None;
        Some(status)
    }

    /// Schedules `color`'s next start: at once, or after a pause when it
    /// keeps dying before it serves (`failed`; see [`Restarts`]).
    pub(super) fn schedule_respawn(&mut self, color: Color, failed: bool) {
        let now = self.nanos(Instant::now());
        self.restarts.handle_stopped(now, color, failed);
    }

    /// When the next scheduled start is due.
    pub(super) fn next_start(&self) -> Option<Instant> {
        self.restarts.poll_timeout().map(|t| self.instant(t))
    }

    /// The colours whose start is due at `now` (their slots are empty).
    pub(super) fn due(&self, now: Instant) -> impl Iterator<Item = Color> + '_ {
        let now = self.nanos(now);
        Color::BOTH.into_iter().filter(move |&c| {
            self.children[c.index()].is_none() && self.restarts.due(c).is_some_and(|t| t <= now)
        })
    }

    /// `at` on the policy's clock.
    fn nanos(&self, at: Instant) -> Nanos {
        Nanos::from_duration(at.saturating_duration_since(self.origin))
    }

    /// The instant of `t` on the policy's clock.
    fn instant(&self, t: Nanos) -> Instant {
        self.origin + t.to_duration()
    }

    /// Kills every instance, without waiting.
    pub(super) fn kill_all(&mut self) {
        for child in self.children.iter_mut().flatten() {
            let _ = child.kill();
        }
    }

    /// Waits up to `grace` for the instances to exit (their links are
    /// closed: they drain and stop), then kills them.
    pub(super) fn reap(&mut self, grace: Duration) {
        let deadline = Instant::now() + grace;
        for slot in &mut self.children {
            let Some(mut child) = slot.take() else {
                continue;
            };
            wait_exit(&child, deadline.saturating_duration_since(Instant::now()));
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts the watcher that reports `pid`'s exit. Its pidfd is opened here,
/// before anything may reap the child, so it cannot name another process.
fn watch(color: Color, pid: u32, exits: UnboundedSender<Exited>) {
    let Some(fd) = pidfd(pid) else {
        tracing::warn!("{color}: cannot watch process {pid}: pidfd_open failed");
        return;
    };
    let watcher = std::thread::Builder::new()
        .name(format!("watch-{color}"))
        .stack_size(64 << 10)
        .spawn(move || {
            while !exited(&fd, None) {}
            let _ = exits.send(Exited { color, pid });
        });
    if let Err(e) = watcher {
        // Its death is still seen when its link closes or its heartbeat
        // stops; only a death before its hello would go unnoticed.
        tracing::warn!("{color}: cannot watch process {pid}: {e}");
    }
}

/// Waits up to `grace` for `child` to exit.
fn wait_exit(child: &Child, grace: Duration) {
    let Some(fd) = pidfd(child.id()) else {
        return;
    };
    let deadline = Instant::now() + grace;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        if exited(&fd, Some(left)) {
            return;
        }
    }
}

/// A descriptor that becomes readable when process `pid` exits.
fn pidfd(pid: u32) -> Option<OwnedFd> {
    let id = libc::pid_t::try_from(pid).ok()?;
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor
    // (or -1); it touches no memory of ours.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, id, 0) };
    let fd = libc::c_int::try_from(fd).ok().filter(|&fd| fd >= 0)?;
    // SAFETY: a descriptor just opened, owned by nothing else.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// True once the process of `fd` has exited; false after `bound` (none:
/// no bound) or an interruption.
fn exited(fd: &OwnedFd, bound: Option<Duration>) -> bool {
    let mut poll = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = bound.map_or(-1, |b| {
        libc::c_int::try_from(b.as_millis().max(1)).unwrap_or(libc::c_int::MAX)
    });
    // SAFETY: one valid pollfd for the length of the call.
    let ready = unsafe { libc::poll(&mut poll, 1, ms) };
    if ready < 0 && std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
        // A descriptor that cannot be polled: do not spin on it.
        return true;
    }
    ready > 0
}
