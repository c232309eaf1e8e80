//! The `tandem` command: the list of subcommands, each handed to its
//! function in [`cli`].

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tandem_core::Layout;

/// Writes a line to stdout: `Err(`[`cli::ReaderGone`]`)` when the reader
/// has gone away (`tandem check | head`), for the command to end quietly.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*).map_err(|_| crate::cli::ReaderGone)
    }};
}

/// [`outln!`] without the newline.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        write!(std::io::stdout().lock(), $($arg)*).map_err(|_| crate::cli::ReaderGone)
    }};
}

mod cli;

use cli::agent::AgentDirs;
use cli::{checkpoint_interval_arg, duration_arg, speed_arg};

/// tandem: a stream-processing runtime for home-energy gateways.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate graph files and print their plans. Exit 0 valid, 1 invalid, 2 unreadable.
    Check {
        /// Graph files (TOML).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Plan with this layout instead of the file's.
        #[arg(long, value_enum)]
        layout: Option<LayoutArg>,
    },
    /// Run a graph in one instance until Ctrl-C (or --for), then print per-node stats.
    Run {
        /// Graph file (TOML).
        file: PathBuf,
        /// Stop after this long ("10s", "2m"); of event time with --clock virtual.
        #[arg(long = "for", value_parser = duration_arg)]
        run_for: Option<Duration>,
        /// Group nodes onto workers this way instead of the file's layout.
        #[arg(long, value_enum)]
        layout: Option<LayoutArg>,
        /// `wall` polls sources in real time; `virtual` runs simulated time as fast as possible.
        #[arg(long, value_enum, conflicts_with = "speed")]
        clock: Option<ClockArg>,
        /// Run simulated time this many times faster than real time (implies --clock virtual).
        #[arg(long, value_parser = speed_arg)]
        speed: Option<f64>,
        /// Start of virtual time, seconds since the Unix epoch.
        #[arg(long, default_value_t = 1_767_225_600,
              value_parser = clap::value_parser!(i64).range(0..=4_102_444_800))]
        start: i64,
        /// Most records a node takes from a ring in one pass.
        #[arg(long, default_value_t = 1024,
              value_parser = clap::value_parser!(u32).range(1..=1 << 20))]
        batch: u32,
        /// Keep vertex state here: resume from the newest checkpoint that
        /// verifies, checkpoint periodically and on Ctrl-C.
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// How often to checkpoint when --state-dir is given.
        #[arg(long, value_parser = checkpoint_interval_arg, default_value = "10s")]
        checkpoint_every: Duration,
    },
    /// Run the graph as 1+1: this agent owns the sources, junctions and
    /// sinks, and starts a blue and a green instance process that both run
    /// the vertices. Losing either instance loses nothing; a lost one is
    /// restarted and rejoins from the other's state. Ctrl-C stops.
    Up {
        /// The graph file (TOML).
        #[arg(env = "TANDEM_GRAPH")]
        file: PathBuf,
        /// Certificates, checkpoints and the control socket live here.
        #[arg(long, env = "TANDEM_STATE_DIR", default_value = tandem::up::dirs::DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
        /// The control socket lives here instead (a service: /run/tandem).
        #[arg(long, env = "TANDEM_RUNTIME_DIR")]
        runtime_dir: Option<PathBuf>,
        /// Bundle trust (keys/TRACK/*.pub, tracks.toml) and the gateway's
        /// identity (gateway.toml) for `tandem install` (docs/bundles.md).
        #[arg(long, env = "TANDEM_CONFIG_DIR", default_value = tandem::bundle::trust::DEFAULT_CONFIG_DIR)]
        config_dir: PathBuf,
        /// Dial the fleet controller this enrolment names (`tandem ctl
        /// enrol`); default: CONFIG/enrolment.json when it exists (docs/fleet.md).
        #[arg(long, env = "TANDEM_CONTROLLER_ENROLMENT")]
        controller_enrolment: Option<PathBuf>,
        /// Stop after this long (such as 30s).
        #[arg(long = "for", value_parser = duration_arg)]
        run_for: Option<Duration>,
        /// UDP address the agent listens on for its instances.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: std::net::SocketAddr,
        /// How often the instances checkpoint (each time at a barrier).
        #[arg(long, value_parser = checkpoint_interval_arg, default_value = "1s")]
        checkpoint_every: Duration,
        /// Most records a node takes from a ring in one pass.
        #[arg(long, default_value_t = 1024,
              value_parser = clap::value_parser!(u32).range(1..=1 << 20))]
        batch: u32,
        /// The tandem executable instances run (default: this one).
        #[arg(long)]
        binary: Option<PathBuf>,
        /// Append the output of shadow instances (a new version under
        /// comparison) to this file as JSON lines tagged "shadow": true.
        /// Sinks, and so devices, never receive shadow output.
        #[arg(long)]
        shadow_log: Option<PathBuf>,
        /// Serve Prometheus metrics at http://ADDR/metrics, with /livez
        /// and /readyz (such as 127.0.0.1:9464); off when absent.
        #[arg(long, env = "TANDEM_METRICS", value_name = "ADDR")]
        metrics: Option<std::net::SocketAddr>,
    },
    /// Show what a running `tandem up` is doing: each instance's role,
    /// process, version, lag and rate, and the divergence count.
    Status {
        #[command(flatten)]
        agent: AgentDirs,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Upgrade the vertices of a running `tandem up` to NEW: the green
    /// instance restarts on it from blue's state (migrating state whose
    /// schema changed), runs as a shadow compared with the old version, and
    /// is promoted after the supervision period if its output matches; then
    /// blue is replaced by a second copy. Divergence past the policy, a
    /// crash or missed heartbeats roll it back.
    Upgrade {
        /// The new graph file (same name, sources, sinks and channels).
        new: PathBuf,
        #[command(flatten)]
        agent: AgentDirs,
        /// The tandem executable the new version runs (default: the running one).
        #[arg(long)]
        binary: Option<PathBuf>,
        /// Length of each supervision period (default: `[ha] supervise` of NEW).
        #[arg(long, value_parser = duration_arg, conflicts_with = "supervise_records")]
        supervise: Option<Duration>,
        /// Instead, end each supervision period once this many output
        /// records have been compared.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        supervise_records: Option<u64>,
        /// How long each phase may last (beyond its supervision period)
        /// before the upgrade rolls back on its own, with the reason shown
        /// (default: 60s).
        #[arg(long, value_parser = duration_arg)]
        phase_timeout: Option<Duration>,
    },
    /// Abandon a running upgrade: the old version serves again (it never
    /// stopped, so its state is current) and the new one is replaced by it.
    Rollback {
        #[command(flatten)]
        agent: AgentDirs,
    },
    /// Switch a feature toggle of a running `tandem up` (a `toggles` source
    /// of its graph): the switch is a record in the input stream, so both
    /// instances switch at the same origin sequence number.
    Toggle {
        /// The toggle: NAME, or SOURCE.NAME when several sources have NAME.
        name: String,
        /// on or off.
        #[arg(value_parser = ["on", "off"])]
        state: String,
        #[command(flatten)]
        agent: AgentDirs,
    },
    /// A live view of a running `tandem up`: instances with their role,
    /// lag, rate and restarts; each source, vertex and sink with its rates
    /// and latency; divergence and the upgrade phase. `q` quits.
    Top {
        #[command(flatten)]
        agent: AgentDirs,
        /// How often the view is refreshed.
        #[arg(long, value_parser = duration_arg, default_value = "1s")]
        every: Duration,
    },
    /// One instance of `tandem up` (started by the agent).
    #[command(hide = true)]
    Instance {
        /// The graph file.
        file: PathBuf,
        /// Which instance.
        #[arg(long)]
        color: ColorArg,
        /// The agent's address.
        #[arg(long)]
        agent: std::net::SocketAddr,
        /// The agent's state directory.
        #[arg(long)]
        state_dir: PathBuf,
        /// Most records a node takes from a ring in one pass.
        #[arg(long, default_value_t = 1024,
              value_parser = clap::value_parser!(u32).range(1..=1 << 20))]
        batch: u32,
        /// The agent's graph, when it differs (channel ids follow its table).
        #[arg(long)]
        channels_of: Option<PathBuf>,
    },
    /// Compare two versions of a graph node by node and say whether an
    /// upgrade from OLD to NEW keeps every vertex's state. Exit 0 safe (or
    /// identical), 1 refused (state would be lost), 2 unreadable or invalid files.
    Diff {
        /// The graph running now (TOML).
        old: PathBuf,
        /// The graph to upgrade to (TOML).
        new: PathBuf,
        /// Accept dropping the state of removed vertices.
        #[arg(long)]
        allow_drop: bool,
    },
    /// Make, sign and check bundles: signed archives of a graph (and a
    /// runtime binary) that `tandem install` upgrades a gateway to
    /// (docs/bundles.md).
    Bundle {
        #[command(subcommand)]
        action: cli::bundle::BundleCommand,
    },
    /// Install a bundle on a running `tandem up` (a live upgrade, after
    /// every check; refused with the reason and nothing changed otherwise),
    /// or record a signed revocation.
    Install {
        /// The bundle or revocation file.
        file: PathBuf,
        #[command(flatten)]
        agent: AgentDirs,
    },
    /// The fleet controller: enrol gateways, roll bundles out to tracks
    /// in waves, serve the fleet's web page (docs/fleet.md).
    Ctl {
        #[command(subcommand)]
        action: tandem::ctl::cli::CtlCommand,
    },
    /// List the kinds of sources, vertices and sinks, with their parameters.
    Kinds {
        /// Show only this kind.
        name: Option<String>,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LayoutArg {
    Single,
    Chains,
    Spread,
}

impl From<LayoutArg> for Layout {
    fn from(l: LayoutArg) -> Layout {
        match l {
            LayoutArg::Single => Layout::Single,
            LayoutArg::Chains => Layout::Chains,
            LayoutArg::Spread => Layout::Spread,
        }
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ColorArg {
    Blue,
    Green,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ClockArg {
    Wall,
    Virtual,
}

impl From<ColorArg> for tandem_core::ha::Color {
    fn from(c: ColorArg) -> tandem_core::ha::Color {
        match c {
            ColorArg::Blue => tandem_core::ha::Color::Blue,
            ColorArg::Green => tandem_core::ha::Color::Green,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tandem::logging::init(log_name(&cli.command));
    let done = match cli.command {
        Command::Check { files, layout } => cli::graph::check(&files, layout.map(Layout::from)),
        Command::Run {
            file,
            run_for,
            layout,
            clock,
            speed,
            start,
            batch,
            state_dir,
            checkpoint_every,
        } => Ok(cli::run::command(
            &file,
            layout.map(Layout::from),
            cli::run::RunArgs {
                run_for,
                clock,
                speed,
                start,
                batch,
                state_dir,
                checkpoint_every,
            },
        )),
        Command::Diff {
            old,
            new,
            allow_drop,
        } => cli::graph::diff(&old, &new, allow_drop),
        Command::Kinds { name } => cli::graph::kinds(name.as_deref()),
        Command::Ctl { action } => Ok(tandem::ctl::cli::run(action)),
        Command::Up {
            file,
            state_dir,
            runtime_dir,
            config_dir,
            controller_enrolment,
            run_for,
            listen,
            checkpoint_every,
            batch,
            binary,
            shadow_log,
            metrics,
        } => Ok(cli::up::up(
            &file,
            cli::up::UpOptions {
                state_dir,
                runtime_dir,
                config_dir,
                controller_enrolment,
                run_for,
                listen,
                checkpoint_every,
                batch: batch as usize,
                binary,
                shadow_log,
                metrics,
            },
        )),
        Command::Status { agent, json } => cli::agent::status(&agent, json),
        Command::Top { agent, every } => cli::agent::top(&agent, every),
        Command::Upgrade {
            new,
            agent,
            binary,
            supervise,
            supervise_records,
            phase_timeout,
        } => cli::agent::upgrade(
            &agent,
            cli::agent::Upgrade {
                new,
                binary,
                supervise,
                supervise_records,
                phase_timeout,
            },
        ),
        Command::Bundle { action } => cli::bundle::run(action),
        Command::Install { file, agent } => cli::agent::install(&agent, file),
        Command::Rollback { agent } => cli::agent::rollback(&agent),
        Command::Toggle { name, state, agent } => cli::agent::toggle(&agent, &name, &state),
        Command::Instance {
            file,
            color,
            agent,
            state_dir,
            batch,
            channels_of,
        } => Ok(cli::up::instance(
            &file,
            color.into(),
            agent,
            state_dir,
            batch as usize,
            channels_of.as_deref(),
        )),
    };
    done.unwrap_or_else(ExitCode::from)
}

/// How a process's log lines begin: instances name their colour.
fn log_name(command: &Command) -> &'static str {
    match command {
        Command::Instance {
            color: ColorArg::Blue,
            ..
        } => "tandem blue",
        Command::Instance {
            color: ColorArg::Green,
            ..
        } => "tandem green",
        _ => "tandem",
    }
}
