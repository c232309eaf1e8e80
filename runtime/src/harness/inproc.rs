//! The agent on a thread of this process, for benches whose own sink
//! observes the merged output (`AgentConfig::egress`); its instances are
//! processes of this executable ([`super::serve_roles`]).

use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::agent::{Agent, Control};
use crate::up::agent::{AgentConfig, AgentError};
use crate::up::dirs::StateDir;
use crate::up::graph::{self, Opening};

/// The longest wait for anything the agent does.
const BOUND: Duration = Duration::from_secs(60);

/// What `tandem up FILE --state-dir STATE` runs, with instances started as
/// `program instance ..`: a loopback listener, a checkpoint a second,
/// batches of 1024, the graph's own sinks; change fields to taste.
pub fn agent_config(file: &Path, state: &Path, program: PathBuf) -> Result<AgentConfig, String> {
    // The error names the file already.
    graph::load(file, Opening::Any)
        .map(|graph| graph.agent_config(StateDir::new(state), program))
        .map_err(|e| e.to_string())
}

/// An agent running on a thread of this process until its `run_for` ends.
#[derive(Debug)]
pub struct InProcess {
    control: Control,
    state: StateDir,
    agent: JoinHandle<Result<(), AgentError>>,
    /// When its `run_for` ends, if it has one.
    ends_at: Option<Instant>,
}

impl Agent for InProcess {
    fn control(&self) -> &Control {
        &self.control
    }

    fn context(&self) -> String {
        "(the agent runs in this process: its log is this process's stderr)".to_owned()
    }

    fn ended(&self) -> Option<String> {
        self.agent
            .is_finished()
            .then(|| "its thread returned".to_owned())
    }

    fn bound(&self) -> Duration {
        BOUND
    }
}

impl InProcess {
    /// Starts the agent `config` describes (see [`agent_config`]).
    pub fn start(config: AgentConfig) -> InProcess {
        let state = config.state.clone();
        let ends_at = config.run_for.map(|d| Instant::now() + d);
        let agent = std::thread::spawn(move || crate::up::agent::run(config));
        InProcess {
            control: Control::of(state.root()),
            state,
            agent,
            ends_at,
        }
    }

    pub fn state(&self) -> &StateDir {
        &self.state
    }

    /// Waits for the agent to return: what it returned, or why not. One
    /// that has not returned `grace` after its `run_for` ended (or, with
    /// none, `grace` from now) is left behind, so that one stuck shutdown
    /// does not stall a whole bench.
    pub fn finish(self, grace: Duration) -> Result<(), Unfinished> {
        let deadline = self.ends_at.unwrap_or_else(Instant::now) + grace;
        while !self.agent.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if !self.agent.is_finished() {
            return Err(Unfinished::LeftBehind(grace));
        }
        match self.agent.join() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Unfinished::Failed(e)),
            Err(_) => Err(Unfinished::Panicked),
        }
    }
}

/// How an in-process agent did not end well.
#[derive(Debug)]
pub enum Unfinished {
    /// It had not returned this long after its run ended; its thread runs on.
    LeftBehind(Duration),
    /// It returned this error.
    Failed(AgentError),
    /// Its thread panicked.
    Panicked,
}

impl std::fmt::Display for Unfinished {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unfinished::LeftBehind(grace) => write!(
                f,
                "the agent did not return {:.0} s after its run ended; left behind",
                grace.as_secs_f64()
            ),
            Unfinished::Failed(e) => write!(f, "the agent ended with an error: {e}"),
            Unfinished::Panicked => f.write_str("the agent panicked"),
        }
    }
}
