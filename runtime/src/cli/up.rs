//! `tandem up`, the agent of a 1+1 graph, and the instance processes it
//! starts (`tandem instance`, hidden).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use tandem::graph_file::GraphFileError;
use tandem::up::graph::{Opening, SplitGraph, SplitGraphError};
use tandem_core::ha::Color;

use super::{INTERRUPTED, INVALID, UNREADABLE};

/// The options of `tandem up`, as given.
pub struct UpOptions {
    /// Certificates, checkpoints and (by default) the control socket.
    pub state_dir: PathBuf,
    /// Where the control socket lives instead.
    pub runtime_dir: Option<PathBuf>,
    /// Bundle trust and the gateway's identity.
    pub config_dir: PathBuf,
    /// The fleet controller's enrolment, when not CONFIG/enrolment.json.
    pub controller_enrolment: Option<PathBuf>,
    /// Stop after this long.
    pub run_for: Option<Duration>,
    /// Where the agent listens for its instances.
    pub listen: std::net::SocketAddr,
    /// How often the instances checkpoint.
    pub checkpoint_every: Duration,
    /// Most records a node takes from a ring in one pass.
    pub batch: usize,
    /// The executable the instances run, when not this one.
    pub binary: Option<PathBuf>,
    /// Where shadow output is appended.
    pub shadow_log: Option<PathBuf>,
    /// Where Prometheus metrics are served.
    pub metrics: Option<std::net::SocketAddr>,
}

/// Loads a graph and cuts it for 1+1; errors are printed, the code says
/// which kind.
fn load_split(file: &Path) -> Result<SplitGraph, u8> {
    tandem::up::graph::load(file, Opening::Any).map_err(|e| {
        eprintln!("{e}");
        match e {
            SplitGraphError::Graph(GraphFileError::Unreadable { .. }) => UNREADABLE,
            SplitGraphError::Graph(GraphFileError::Invalid(_)) | SplitGraphError::Split { .. } => {
                INVALID
            }
        }
    })
}

/// `tandem up FILE`: runs until Ctrl-C (or --for).
pub fn up(file: &Path, options: UpOptions) -> ExitCode {
    let graph = match load_split(file) {
        Ok(graph) => graph,
        Err(code) => return ExitCode::from(code),
    };
    let program = match options.binary {
        Some(binary) => match tandem::private::trusted_executable(&binary) {
            Ok(program) => program,
            Err(e) => {
                eprintln!("tandem: --binary {e}");
                return ExitCode::from(INVALID);
            }
        },
        None => match std::env::current_exe() {
            Ok(program) => program,
            Err(e) => {
                eprintln!("tandem: cannot find this executable to start instances: {e}");
                return ExitCode::from(UNREADABLE);
            }
        },
    };
    let enrolment = tandem::ctl::enrol::locate(
        options.controller_enrolment.as_deref(),
        Some(&options.config_dir),
    );
    let state = tandem::up::dirs::StateDir::new(options.state_dir)
        .with_runtime_dir(options.runtime_dir)
        .with_config_dir(Some(options.config_dir));
    let config = tandem::up::agent::AgentConfig {
        listen: options.listen,
        checkpoint_every: options.checkpoint_every,
        run_for: options.run_for,
        batch: options.batch,
        shadow_log: options.shadow_log,
        ..graph.agent_config(state, program)
    };
    // The link to a fleet controller, when enrolled (docs/fleet.md).
    if let Some(enrolment) = enrolment {
        let link = tandem::up::fleet_link::FleetLink::new(
            &enrolment,
            config.state.socket(),
            config.state.root(),
        );
        if let Err(e) = link.and_then(tandem::up::fleet_link::FleetLink::start) {
            eprintln!("tandem: {e}");
            return ExitCode::from(INVALID);
        }
    }
    match tandem::up::agent::run_with_metrics(config, options.metrics) {
        Ok(()) => ExitCode::SUCCESS,
        // The agent said why, and killed the instances.
        Err(tandem::up::agent::AgentError::Abandoned) => ExitCode::from(INTERRUPTED),
        Err(e) => {
            eprintln!("tandem: {e}");
            ExitCode::from(UNREADABLE)
        }
    }
}

/// `tandem instance`: one instance, started by the agent.
pub fn instance(
    file: &Path,
    color: Color,
    agent: std::net::SocketAddr,
    state_dir: PathBuf,
    batch: usize,
    channels_of: Option<&Path>,
) -> ExitCode {
    let launch = tandem::up::instance::Launch {
        file: file.to_path_buf(),
        color,
        agent,
        state_dir,
        batch,
        channels_of: channels_of.map(Path::to_path_buf),
    };
    match launch.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tandem {color}: {e}");
            ExitCode::from(UNREADABLE)
        }
    }
}
