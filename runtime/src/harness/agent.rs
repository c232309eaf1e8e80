//! What a running agent answers, in or out of this process: its status over
//! the control socket, and bounded waits on what it says.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::scratch::POLL;
use super::status;
use crate::up::dirs::StateDir;

/// The control socket of the agent on a state directory.
#[derive(Clone, Debug)]
pub struct Control {
    socket: PathBuf,
}

impl Control {
    /// The socket of the agent on `state` (no runtime directory).
    pub fn of(state: &Path) -> Control {
        Control {
            socket: StateDir::new(state).socket(),
        }
    }

    /// Sends one request line; what follows `ok: ` in the answer, or why not.
    pub fn ask(&self, line: &str) -> Result<String, crate::up::ask::AskError> {
        crate::up::ask::ask(&self.socket, line)
    }

    /// The status, once the agent answers with one (it answers `{}` until
    /// its first refresh).
    pub fn status(&self) -> Option<Value> {
        let answer = crate::up::ask::ask_status(&self.socket).ok()?;
        let status: Value = serde_json::from_str(&answer).ok()?;
        status.get("instances").is_some().then_some(status)
    }
}

/// A running agent: its status, and waits bounded by [`Agent::bound`] that
/// give up early, with the log, when it ended.
pub trait Agent {
    fn control(&self) -> &Control;

    /// What a failed wait shows: what the agent and its instances logged.
    fn context(&self) -> String;

    /// Why the agent cannot answer any more, once it ended.
    fn ended(&self) -> Option<String>;

    /// The longest any one awaited event may take.
    fn bound(&self) -> Duration;

    /// The status, or `Null` while the agent does not answer one.
    fn status(&self) -> Value {
        self.control().status().unwrap_or(Value::Null)
    }

    /// Polls the status up to `within` until `probe` gives something;
    /// `None` when it did not (benches go on with what they have).
    fn poll_status<T>(
        &self,
        within: Duration,
        mut probe: impl FnMut(&Value) -> Option<T>,
    ) -> Option<T> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(found) = self.control().status().as_ref().and_then(&mut probe) {
                return Some(found);
            }
            if Instant::now() >= deadline || self.ended().is_some() {
                return None;
            }
            std::thread::sleep(POLL);
        }
    }

    /// Waits until `probe` gives something (a file, a log line); panics
    /// naming `what` with the log after [`Agent::bound`], or as soon as the
    /// agent ended.
    fn wait_until<T>(&self, what: &str, probe: impl FnMut() -> Option<T>) -> T {
        wait(self, what, String::new, probe)
    }

    /// Waits until the status satisfies `probe`; panics naming `what` with
    /// the last status and the log after [`Agent::bound`], or as soon as
    /// the agent ended.
    fn wait_status<T>(&self, what: &str, mut probe: impl FnMut(&Value) -> Option<T>) -> T {
        let last = std::cell::RefCell::new(Value::Null);
        let shown = || format!("; last status {}", last.borrow());
        wait(self, what, shown, || {
            let status = self.control().status()?;
            let found = probe(&status);
            *last.borrow_mut() = status;
            found
        })
    }

    /// Waits until `done` holds of the status; that status.
    fn wait_for(&self, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        self.wait_status(what, |v| done(v).then(|| v.clone()))
    }

    /// Waits until both instances are connected and serving with no
    /// upgrade under way.
    fn wait_both_serving(&self) -> Value {
        self.wait_for("both instances serving", status::both_serving)
    }

    /// Waits until blue and green both serve, neither with a pid in
    /// `gone` (instances killed before); their pids.
    fn serving_pids(&self, gone: &[i32]) -> [i32; 2] {
        self.wait_status("both instances serving", |s| {
            let pids = status::serving_pids(s)?;
            pids.iter().all(|p| !gone.contains(p)).then_some(pids)
        })
    }

    /// Waits for a barrier placed from now on at which both instances'
    /// state hashes are equal.
    fn wait_equal_hashes(&self) -> Value {
        let after = status::last_barrier_id(&self.status());
        self.wait_for("a barrier with equal state hashes", |v| {
            status::last_barrier_id(v) > after && v["last_barrier"]["equal"] == true
        })
    }

    /// Waits until the upgrade is in `phase` (such as `shadow`, `idle`).
    fn wait_phase(&self, phase: &str) -> Value {
        self.wait_for(&format!("upgrade phase {phase}"), |v| {
            v["upgrade"]["phase"] == phase
        })
    }

    /// Records the agent has emitted toward its sinks.
    fn emitted(&self) -> u64 {
        self.wait_status("a status", |s| s["emitted"].as_u64())
    }

    /// Waits until the agent has emitted `more` records beyond what it had.
    fn wait_emitting(&self, more: u64) {
        let from = self.emitted();
        self.wait_status(&format!("{more} records emitted after {from}"), |s| {
            (s["emitted"].as_u64()? >= from + more).then_some(())
        });
    }
}

/// The one bounded wait of [`Agent`]: `shown()` adds to the message.
fn wait<A: Agent + ?Sized, T>(
    agent: &A,
    what: &str,
    shown: impl Fn() -> String,
    mut probe: impl FnMut() -> Option<T>,
) -> T {
    let bound = agent.bound();
    let deadline = Instant::now() + bound;
    loop {
        if let Some(found) = probe() {
            return found;
        }
        if let Some(why) = agent.ended() {
            panic!(
                "the agent ended ({why}) while waiting for {what}{}\nagent log:\n{}",
                shown(),
                agent.context()
            );
        }
        assert!(
            Instant::now() < deadline,
            "no {what} within {bound:?}{}\nagent log:\n{}",
            shown(),
            agent.context()
        );
        std::thread::sleep(POLL);
    }
}
