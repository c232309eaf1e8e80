//! A graph file loaded and cut for 1+1: the one place where `tandem up`,
//! the in-process harness and an upgrade request read the graph an agent
//! runs, and where the agent's configuration is first written.

use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tandem_core::graph::{HaSettings, Loaded};
use tandem_core::split::{Split, SplitError};
use thiserror::Error;

use crate::checkpoint::GraphStamp;
use crate::graph_file::GraphFileError;
use crate::topology::Attached;
use crate::up::dirs::StateDir;
use crate::Clock;

/// How the graph file is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opening {
    /// Whatever the path names, read to its end (`tandem up FILE`).
    Any,
    /// A regular file only, never waited on: a path named by others (a
    /// control request), which must not hang the agent on a FIFO.
    RegularFile,
}

/// A valid graph and its cut in three for 1+1.
#[derive(Debug)]
pub struct SplitGraph {
    /// The file, as given.
    pub file: PathBuf,
    /// The graph.
    pub loaded: Loaded,
    /// Its sources, instances' part and sinks.
    pub split: Split,
}

/// Why a graph file cannot run as 1+1.
#[derive(Debug, Error)]
pub enum SplitGraphError {
    /// The file is unreadable or not a valid graph.
    #[error(transparent)]
    Graph(#[from] GraphFileError),
    /// A valid graph that cannot run as 1+1.
    #[error("{}: error: {source}", file.display())]
    Split {
        /// The file, as given.
        file: PathBuf,
        /// Why.
        source: SplitError,
    },
}

/// Loads and validates the graph at `file` and cuts it for 1+1 (blocking).
pub fn load(file: &Path, opening: Opening) -> Result<SplitGraph, SplitGraphError> {
    let loaded = match opening {
        Opening::Any => crate::graph_file::load(file)?,
        Opening::RegularFile => crate::graph_file::load_regular(file)?,
    };
    match tandem_core::split::split(&loaded.plan) {
        Ok(split) => Ok(SplitGraph {
            file: file.to_path_buf(),
            loaded,
            split,
        }),
        Err(source) => Err(SplitGraphError::Split {
            file: file.to_path_buf(),
            source,
        }),
    }
}

impl SplitGraph {
    /// An agent running this graph with `state`, starting its instances as
    /// `program instance ..`: a loopback listener on any port, a
    /// checkpoint a second, batches of 1024, the wall clock, the graph's
    /// own sinks, no shadow log, no end. Change fields to taste.
    pub fn agent_config(self, state: StateDir, program: PathBuf) -> AgentConfig {
        AgentConfig {
            stamp: GraphStamp::of_plan(&self.loaded.name, &self.loaded.plan),
            file: self.file,
            split: self.split,
            ha: self.loaded.ha,
            state,
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            checkpoint_every: Duration::from_secs(1),
            run_for: None,
            clock: Clock::Wall,
            batch: 1024,
            instance: InstanceCommand {
                program,
                args: Vec::new(),
            },
            shadow_log: None,
            egress: Default::default(),
        }
    }
}

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
