//! The commands that ask a running `tandem up` through its control socket
//! (`tandem::up::control`): `status`, `upgrade`, `rollback`, `toggle`,
//! `install` and `top`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use tandem::up::ask::AskError;

use super::{Printed, INVALID};

/// Where a command finds the control socket of a running `tandem up`.
#[derive(Debug, clap::Args)]
pub struct AgentDirs {
    /// The state directory `tandem up` was given (default: .tandem, or the
    /// service's /run/tandem socket when .tandem has none).
    #[arg(long, env = "TANDEM_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// The runtime directory `tandem up` was given.
    #[arg(long, env = "TANDEM_RUNTIME_DIR")]
    runtime_dir: Option<PathBuf>,
}

impl AgentDirs {
    /// The control socket, as the agent placed it.
    fn socket(&self) -> PathBuf {
        tandem::up::dirs::locate_socket(
            self.state_dir.as_deref(),
            self.runtime_dir.as_deref(),
            Path::exists,
        )
    }
}

/// What `tandem upgrade` asks for.
pub struct Upgrade {
    /// The new graph file.
    pub new: PathBuf,
    /// The executable it runs, when not the running one.
    pub binary: Option<PathBuf>,
    /// Each supervision period's length, when not the graph's.
    pub supervise: Option<Duration>,
    /// Or the output records compared per period.
    pub supervise_records: Option<u64>,
    /// How long a phase may last before the upgrade rolls back, when not
    /// the agent's default.
    pub phase_timeout: Option<Duration>,
}

/// `tandem upgrade`: the files are named absolutely, as the agent reads
/// them from its own working directory.
pub fn upgrade(agent: &AgentDirs, upgrade: Upgrade) -> Printed {
    let absolute = |p: PathBuf| std::fs::canonicalize(&p).unwrap_or(p);
    let line = format!(
        "upgrade\t{}\t{}\t{}\t{}\t{}",
        absolute(upgrade.new).display(),
        upgrade
            .binary
            .map(absolute)
            .map_or(String::new(), |b| b.display().to_string()),
        upgrade
            .supervise
            .map_or(String::new(), |d| d.as_millis().to_string()),
        upgrade
            .supervise_records
            .map_or(String::new(), |n| n.to_string()),
        upgrade
            .phase_timeout
            .map_or(String::new(), |d| d.as_millis().to_string()),
    );
    ask(agent, &line)
}

/// `tandem install FILE`.
pub fn install(agent: &AgentDirs, file: PathBuf) -> Printed {
    let absolute = std::fs::canonicalize(&file).unwrap_or(file);
    ask(agent, &format!("install\t{}", absolute.display()))
}

/// `tandem rollback`.
pub fn rollback(agent: &AgentDirs) -> Printed {
    ask(agent, "rollback")
}

/// `tandem toggle NAME on|off`.
pub fn toggle(agent: &AgentDirs, name: &str, state: &str) -> Printed {
    ask(agent, &format!("toggle\t{name}\t{state}"))
}

/// `tandem top`.
pub fn top(agent: &AgentDirs, every: Duration) -> Printed {
    match tandem::top::run(&agent.socket(), every) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            eprintln!("tandem: {e}");
            Ok(ExitCode::from(INVALID))
        }
    }
}

/// Sends one request to the agent and prints its answer; exit 1 when it refuses.
fn ask(agent: &AgentDirs, line: &str) -> Printed {
    match tandem::up::ask::ask(&agent.socket(), line) {
        Ok(text) => {
            outln!("{text}")?;
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Ok(not_answered(&e)),
    }
}

/// Says why the agent gave no answer to use; exit 1.
fn not_answered(e: &AskError) -> ExitCode {
    match e {
        AskError::Unanswered { socket, source } => eprintln!(
            "tandem: no `tandem up` answers on {} ({source}); give the --state-dir (or \
             --runtime-dir) it was started with; for the service, `systemctl status tandem` says \
             whether it runs",
            socket.display()
        ),
        AskError::Refused(_) | AskError::Silent { .. } | AskError::Unexpected(_) => {
            eprintln!("tandem: {e}")
        }
    }
    ExitCode::from(INVALID)
}

/// `tandem status [--json]`.
pub fn status(agent: &AgentDirs, json: bool) -> Printed {
    // A refusal (another user, a busy agent) is an error, with --json too.
    let answer = match tandem::up::ask::ask_status(&agent.socket()) {
        Ok(answer) => answer,
        Err(e) => return Ok(not_answered(&e)),
    };
    if json {
        outln!("{answer}")?;
        return Ok(ExitCode::SUCCESS);
    }
    match tandem::up::status::render(&answer) {
        Ok(text) => {
            out!("{text}")?;
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("tandem: {e}");
            Ok(ExitCode::from(INVALID))
        }
    }
}
