//! The `tandem` command.

use clap::{Parser, Subcommand, ValueEnum};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;
use tandem::checkpoint::{Checkpoint, CheckpointStore, GraphStamp};
use tandem::{Clock, RunOptions, Topology};
use tandem_core::graph::Loaded;
use tandem_core::param::{format_duration, parse_duration};
use tandem_core::{EventTime, Layout, ParamDefault, Role};

/// Writes a line to stdout. When the reader has gone away (`tandem check |
/// head`), the command ends quietly with 141, as a SIGPIPE would end it.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if writeln!(std::io::stdout().lock(), $($arg)*).is_err() {
            std::process::exit(141);
        }
    }};
}

/// [`outln!`] without the newline.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if write!(std::io::stdout().lock(), $($arg)*).is_err() {
            std::process::exit(141);
        }
    }};
}

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
        /// before the upgrade rolls back on its own, with the reason shown.
        #[arg(long, value_parser = duration_arg, default_value = "60s")]
        phase_timeout: Duration,
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
        action: BundleCommand,
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

/// `tandem bundle ...`.
#[derive(Debug, Subcommand)]
enum BundleCommand {
    /// Make a signing key pair: NAME.key (secret, 0600) and NAME.pub.
    Keygen {
        /// The key's name.
        name: String,
        /// Where to write the two files.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// Build an unsigned bundle of a graph (and a binary).
    Build {
        /// The graph the upgrade runs.
        #[arg(long)]
        graph: PathBuf,
        /// Further graph files to carry.
        #[arg(long = "with-graph")]
        extra_graphs: Vec<PathBuf>,
        /// A tandem executable the new instances run.
        #[arg(long)]
        binary: Option<PathBuf>,
        /// The bundle's name (its versions replace each other).
        #[arg(long)]
        name: String,
        /// Its semantic version (such as 1.2.0).
        #[arg(long = "version")]
        bundle_version: String,
        /// The release track whose keys sign it.
        #[arg(long, default_value = "stable")]
        track: String,
        /// Expiry, UTC (2027-01-31T00:00:00Z); default: --expires-in from now.
        #[arg(long, conflicts_with = "expires_in")]
        expires: Option<String>,
        /// Expiry from now, in days (90d) or a duration.
        #[arg(long, default_value = "90d")]
        expires_in: String,
        /// A hardware id it is for (repeat; default any).
        #[arg(long = "hardware", default_value = "*")]
        hardware: Vec<String>,
        /// A site id it is for (repeat; default any).
        #[arg(long = "site", default_value = "*")]
        sites: Vec<String>,
        /// A bundle that must be installed (`battery-graph >= 2.14`; repeat).
        #[arg(long)]
        depends: Vec<String>,
        /// A bundle that must not be installed (repeat).
        #[arg(long)]
        conflicts: Vec<String>,
        /// The oldest runtime it runs on.
        #[arg(long)]
        min_runtime: Option<String>,
        /// The bundle file to write.
        #[arg(long, short)]
        output: PathBuf,
    },
    /// Add a signature to a bundle or revocation, in place.
    Sign {
        /// The file.
        file: PathBuf,
        /// The secret key (NAME.key).
        #[arg(long)]
        key: PathBuf,
    },
    /// Check a bundle as a gateway would, now. Exit 0 accepted, 1 refused.
    Verify {
        /// The bundle or revocation.
        file: PathBuf,
        #[command(flatten)]
        gateway: GatewayDirs,
    },
    /// Show what a bundle holds and why a gateway would refuse it.
    Inspect {
        /// The bundle or revocation.
        file: PathBuf,
        #[command(flatten)]
        gateway: GatewayDirs,
    },
    /// Write a signed revocation of one version of a bundle.
    Revoke {
        /// The bundle's name.
        name: String,
        /// The version to revoke.
        #[arg(value_name = "VERSION")]
        revoked: String,
        /// The secret key that signs it (add more with `tandem bundle sign`).
        #[arg(long)]
        key: PathBuf,
        /// The track whose keys sign it.
        #[arg(long, default_value = "stable")]
        track: String,
        /// Why, for people.
        #[arg(long, default_value = "")]
        reason: String,
        /// The file to write.
        #[arg(long, short)]
        output: PathBuf,
    },
}

/// Whose trust and state `tandem bundle verify|inspect` check against.
#[derive(Debug, clap::Args)]
struct GatewayDirs {
    /// The gateway's config directory (trusted keys, tracks, identity).
    #[arg(long, env = "TANDEM_CONFIG_DIR", default_value = tandem::bundle::trust::DEFAULT_CONFIG_DIR)]
    config_dir: PathBuf,
    /// Its state directory (the anti-rollback floor and revocations).
    #[arg(long, env = "TANDEM_STATE_DIR", default_value = tandem::up::dirs::DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
}

/// Where a command finds the control socket of a running `tandem up`.
#[derive(Debug, clap::Args)]
struct AgentDirs {
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

fn duration_arg(text: &str) -> Result<Duration, String> {
    parse_duration(text)
        .map(|ns| Duration::from_nanos(ns.unsigned_abs()))
        .ok_or_else(|| format!("`{text}` is not a duration; use e.g. 500ms, 10s, 2m, 1h"))
}

fn checkpoint_interval_arg(text: &str) -> Result<Duration, String> {
    let d = duration_arg(text)?;
    if d < Duration::from_millis(10) {
        return Err(format!(
            "`{text}` is too short between checkpoints; use 10ms or more, such as 10s"
        ));
    }
    Ok(d)
}

fn speed_arg(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if (1e-6..=1e9).contains(&v) => Ok(v),
        _ => Err(format!(
            "`{text}` is not a speed; use a number from 0.000001 to 1000000000, such as 60 (a minute per second)"
        )),
    }
}

/// Exit code of a graph that failed validation.
const INVALID: u8 = 1;
/// Exit code of a file that could not be read.
const UNREADABLE: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tandem::logging::init(log_name(&cli.command));
    match cli.command {
        Command::Check { files, layout } => check(&files, layout.map(Layout::from)),
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
        } => {
            let clock = match (clock.unwrap_or(ClockArg::Wall), speed) {
                (ClockArg::Wall, None) => Clock::Wall,
                (_, speed) => Clock::Virtual {
                    start: EventTime::from_secs(start),
                    speed,
                },
            };
            let options = RunOptions {
                clock,
                // On the wall clock `run` enforces --for itself, so it can
                // checkpoint before the stream drains.
                span: run_for.filter(|_| matches!(clock, Clock::Virtual { .. })),
                // So that a run can checkpoint everything its input produced.
                hold_at_end: state_dir.is_some(),
                batch: batch as usize,
            };
            let durability = state_dir.map(|dir| Durability {
                dir,
                every: checkpoint_every,
            });
            run(
                &file,
                layout.map(Layout::from),
                options,
                run_for,
                durability,
            )
        }
        Command::Diff {
            old,
            new,
            allow_drop,
        } => diff(&old, &new, allow_drop),
        Command::Kinds { name } => kinds(name.as_deref()),
        Command::Ctl { action } => tandem::ctl::cli::run(action),
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
        } => up(
            &file,
            UpOptions {
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
        ),
        Command::Status { agent, json } => status(&agent, json),
        Command::Top { agent, every } => match tandem::top::run(&agent.socket(), every) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("tandem: {e}");
                ExitCode::from(INVALID)
            }
        },
        Command::Upgrade {
            new,
            agent,
            binary,
            supervise,
            supervise_records,
            phase_timeout,
        } => {
            let absolute = |p: PathBuf| std::fs::canonicalize(&p).unwrap_or(p);
            let line = format!(
                "upgrade\t{}\t{}\t{}\t{}\t{}",
                absolute(new).display(),
                binary
                    .map(absolute)
                    .map_or(String::new(), |b| b.display().to_string()),
                supervise.map_or(String::new(), |d| d.as_millis().to_string()),
                supervise_records.map_or(String::new(), |n| n.to_string()),
                phase_timeout.as_millis()
            );
            ask_agent(&agent, &line)
        }
        Command::Bundle { action } => bundle(action),
        Command::Install { file, agent } => {
            let absolute = std::fs::canonicalize(&file).unwrap_or(file);
            ask_agent(&agent, &format!("install\t{}", absolute.display()))
        }
        Command::Rollback { agent } => ask_agent(&agent, "rollback"),
        Command::Toggle { name, state, agent } => {
            ask_agent(&agent, &format!("toggle\t{name}\t{state}"))
        }
        Command::Instance {
            file,
            color,
            agent,
            state_dir,
            batch,
            channels_of,
        } => instance(
            &file,
            color,
            agent,
            state_dir,
            batch as usize,
            channels_of.as_deref(),
        ),
    }
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

struct UpOptions {
    state_dir: PathBuf,
    runtime_dir: Option<PathBuf>,
    config_dir: PathBuf,
    controller_enrolment: Option<PathBuf>,
    run_for: Option<Duration>,
    listen: std::net::SocketAddr,
    checkpoint_every: Duration,
    batch: usize,
    binary: Option<PathBuf>,
    shadow_log: Option<PathBuf>,
    metrics: Option<std::net::SocketAddr>,
}

/// Loads a graph and cuts it for 1+1; errors are printed.
fn load_split(file: &Path) -> Result<(Loaded, tandem_core::split::Split), u8> {
    let loaded = load(file, None)?;
    match tandem_core::split::split(&loaded.plan) {
        Ok(split) => Ok((loaded, split)),
        Err(e) => {
            eprintln!("{}: error: {e}", file.display());
            Err(INVALID)
        }
    }
}

fn up(file: &Path, options: UpOptions) -> ExitCode {
    let (loaded, split) = match load_split(file) {
        Ok(parts) => parts,
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
    let config = tandem::up::agent::AgentConfig {
        file: file.to_path_buf(),
        stamp: GraphStamp::of_plan(&loaded.name, &loaded.plan),
        split,
        ha: loaded.ha.clone(),
        state: tandem::up::dirs::StateDir::new(options.state_dir)
            .with_runtime_dir(options.runtime_dir)
            .with_config_dir(Some(options.config_dir)),
        listen: options.listen,
        checkpoint_every: options.checkpoint_every,
        run_for: options.run_for,
        clock: Clock::Wall,
        batch: options.batch,
        instance: tandem::up::agent::InstanceCommand {
            program,
            args: Vec::new(),
        },
        egress: Default::default(),
        shadow_log: options.shadow_log,
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
        Err(e) => {
            eprintln!("tandem: {e}");
            ExitCode::from(UNREADABLE)
        }
    }
}

/// Sends one request to the agent and prints its answer; exit 1 when it refuses.
fn ask_agent(agent: &AgentDirs, line: &str) -> ExitCode {
    let socket = agent.socket();
    match tandem::up::control::request(&socket, line) {
        Ok(answer) => match answer.strip_prefix("ok: ") {
            Some(text) => {
                outln!("{text}");
                ExitCode::SUCCESS
            }
            None => {
                eprintln!(
                    "tandem: {}",
                    answer.strip_prefix("error: ").unwrap_or(&answer)
                );
                ExitCode::from(INVALID)
            }
        },
        Err(e) => {
            eprintln!("tandem: {}", no_agent(&socket, &e));
            ExitCode::from(INVALID)
        }
    }
}

/// What to say when no agent answers on `socket`.
fn no_agent(socket: &Path, e: &dyn std::fmt::Display) -> String {
    format!(
        "no `tandem up` answers on {} ({e}); give the --state-dir (or --runtime-dir) it was \
         started with; for the service, `systemctl status tandem` says whether it runs",
        socket.display()
    )
}

fn status(agent: &AgentDirs, json: bool) -> ExitCode {
    let socket = agent.socket();
    let answer = match tandem::up::control::request(&socket, "status") {
        Ok(answer) => answer,
        Err(e) => {
            eprintln!("tandem: {}", no_agent(&socket, &e));
            return ExitCode::from(INVALID);
        }
    };
    if json {
        outln!("{answer}");
        return ExitCode::SUCCESS;
    }
    match tandem::up::status::render(&answer) {
        Ok(text) => {
            out!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tandem: {e}");
            ExitCode::from(INVALID)
        }
    }
}

fn instance(
    file: &Path,
    color: ColorArg,
    agent: std::net::SocketAddr,
    state_dir: PathBuf,
    batch: usize,
    channels_of: Option<&Path>,
) -> ExitCode {
    let color = match color {
        ColorArg::Blue => tandem_core::ha::Color::Blue,
        ColorArg::Green => tandem_core::ha::Color::Green,
    };
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

/// Reads and validates one graph file. Errors are printed; the code says which kind.
fn load(path: &Path, layout: Option<Layout>) -> Result<Loaded, u8> {
    let shown = path.display().to_string();
    let mut loaded = tandem::graph_file::load(path).map_err(|e| {
        eprintln!("{e}");
        match e {
            tandem::graph_file::GraphFileError::Unreadable { .. } => UNREADABLE,
            tandem::graph_file::GraphFileError::Invalid(_) => INVALID,
        }
    })?;
    if let Some(layout) = layout {
        loaded.plan = loaded.plan.relayout(layout).map_err(|e| {
            eprintln!("{shown}: error: {e}");
            INVALID
        })?;
    }
    Ok(loaded)
}

fn check(files: &[PathBuf], layout: Option<Layout>) -> ExitCode {
    let mut worst = 0u8;
    for file in files {
        match load(file, layout) {
            Ok(loaded) => {
                outln!("{}: ok", file.display());
                out!("{}", loaded.plan);
            }
            Err(code) => worst = worst.max(code),
        }
    }
    ExitCode::from(worst)
}

/// Exit code of an upgrade `tandem diff` refuses.
const REFUSED: u8 = 1;

fn diff(old: &Path, new: &Path, allow_drop: bool) -> ExitCode {
    // Both files are read and checked, so that every error is shown at once.
    let (old_graph, new_graph) = (load(old, None), load(new, None));
    let (Ok(old_graph), Ok(new_graph)) = (old_graph, new_graph) else {
        return ExitCode::from(UNREADABLE);
    };
    let changes = tandem_core::diff::diff(&old_graph.plan, &new_graph.plan);
    out!("{changes}");
    let mut refusals: Vec<String> = changes
        .refusals(allow_drop)
        .iter()
        .map(ToString::to_string)
        .collect();
    let stateful = old_graph
        .plan
        .nodes
        .iter()
        .any(|n| n.kind.state_schema.is_some());
    if old_graph.name != new_graph.name && stateful {
        refusals.push(format!(
            "the graph is renamed from `{}` to `{}`: checkpoints of `{}` would not be resumed; \
             keep `name = \"{}\"` under [graph]",
            old_graph.name, new_graph.name, old_graph.name, old_graph.name
        ));
    }
    if !refusals.is_empty() {
        for reason in &refusals {
            eprintln!("error: {reason}");
        }
        eprintln!(
            "tandem: upgrade refused: {} change(s) would lose state",
            refusals.len()
        );
        return ExitCode::from(REFUSED);
    }
    let dropped: Vec<&str> = changes
        .nodes
        .iter()
        .filter(|n| matches!(n.state, tandem_core::diff::StateFate::Dropped(_)))
        .map(|n| n.id.as_str())
        .collect();
    if changes.is_empty() && old_graph.name == new_graph.name {
        outln!("no change");
    } else if dropped.is_empty() {
        outln!("safe: the state of every vertex carries over");
    } else {
        outln!(
            "safe with --allow-drop: the state of every vertex carries over but {}",
            dropped.join(", ")
        );
    }
    ExitCode::SUCCESS
}

/// Where and how often `tandem run` checkpoints.
struct Durability {
    dir: PathBuf,
    every: Duration,
}

fn run(
    file: &Path,
    layout: Option<Layout>,
    options: RunOptions,
    run_for: Option<Duration>,
    durability: Option<Durability>,
) -> ExitCode {
    let loaded = match load(file, layout) {
        Ok(loaded) => loaded,
        Err(code) => return ExitCode::from(code),
    };
    let plan = &loaded.plan;
    let stamp = GraphStamp::of_plan(&loaded.name, plan);
    let mut store = match durability.as_ref().map(|d| CheckpointStore::open(&d.dir)) {
        None => None,
        Some(Ok(store)) => Some(store),
        Some(Err(e)) => {
            eprintln!("tandem: {e}");
            return ExitCode::from(UNREADABLE);
        }
    };
    // One run per state directory: a second would prune and clean up the
    // first one's checkpoints under its feet.
    let _lock = match durability
        .as_ref()
        .map(|d| tandem::up::dirs::StateDir::new(&d.dir).lock())
    {
        Some(Err(message)) => {
            eprintln!("tandem: {message}");
            return ExitCode::from(UNREADABLE);
        }
        Some(Ok(lock)) => Some(lock),
        None => None,
    };
    let resume = match store.as_mut().map(|s| s.load_latest()) {
        None => None,
        Some(Err(e)) => {
            eprintln!("tandem: {e}");
            return ExitCode::from(UNREADABLE);
        }
        Some(Ok(recovery)) => {
            for skipped in &recovery.skipped {
                eprintln!("tandem: {skipped}");
            }
            match recovery.latest {
                Some((path, checkpoint)) if checkpoint.graph.name == stamp.name => {
                    eprintln!(
                        "tandem: resuming from {} (origin sequence {})",
                        path.display(),
                        checkpoint.seq
                    );
                    if matches!(options.clock, Clock::Virtual { .. }) {
                        eprintln!(
                            "tandem: warning: virtual time starts again at --start; vertices whose \
                             state lies later wait until event time passes it: give a --start after \
                             the run that wrote this checkpoint"
                        );
                    }
                    Some(checkpoint)
                }
                Some((path, checkpoint)) => {
                    eprintln!(
                        "tandem: {}: error: holds checkpoints of graph `{}`, not `{}` (newest: {}); \
                         give each graph a --state-dir of its own",
                        durability.as_ref().map_or(String::new(), |d| d.dir.display().to_string()),
                        checkpoint.graph.name,
                        stamp.name,
                        path.display()
                    );
                    return ExitCode::from(UNREADABLE);
                }
                None => None,
            }
        }
    };
    let (interrupt_tx, interrupt) = crossbeam_channel::bounded::<()>(4);
    if let Err(e) = ctrlc::set_handler(move || {
        let _ = interrupt_tx.try_send(());
    }) {
        eprintln!("tandem: cannot install the handler of Ctrl-C and SIGTERM: {e}");
    }
    let started = std::time::Instant::now();
    let cpu_before = tandem::cpu::process_cpu_time();
    // Numbers the last run may have emitted past its checkpoint stay used.
    let checkpointed = resume.as_ref().map_or(tandem_core::Seq::ZERO, |c| c.seq);
    let numbering = match durability
        .as_ref()
        .map(|d| tandem::checkpoint::Reservation::open(&d.dir, checkpointed))
    {
        None => None,
        Some(Ok(numbering)) => Some(numbering),
        Some(Err(e)) => {
            eprintln!("tandem: {e}");
            return ExitCode::from(UNREADABLE);
        }
    };
    let started_topology = Topology::start_numbered(
        plan,
        options,
        resume.as_ref(),
        tandem::topology::Attached::default(),
        numbering,
    );
    let mut topology = match started_topology {
        Ok((t, restored)) => {
            if let Some(report) = restored {
                eprintln!("tandem: {report}");
            }
            t
        }
        Err(e) => {
            for line in e.to_string().lines() {
                eprintln!("{}: error: {line}", file.display());
            }
            return ExitCode::from(INVALID);
        }
    };
    eprintln!(
        "tandem: running `{}` on {} workers ({} rings); Ctrl-C stops",
        loaded.name,
        plan.workers.len(),
        plan.ring_count()
    );
    // On the wall clock --for is a deadline here; on the virtual clock the
    // ingress stops by itself after that much event time.
    let deadline = match (options.clock, run_for) {
        (Clock::Wall, Some(d)) => crossbeam_channel::after(d),
        _ => crossbeam_channel::never(),
    };
    let ticks = match &durability {
        Some(d) => crossbeam_channel::tick(d.every),
        None => crossbeam_channel::never(),
    };
    let finished = topology.finished().clone();
    let input_ended = topology.input_ended().clone();
    loop {
        crossbeam_channel::select! {
            recv(interrupt) -> _ => {
                eprintln!("tandem: stopping: draining in-flight records, flushing sinks");
                if let Some(store) = store.as_mut() {
                    checkpoint(&mut topology, store, &stamp);
                }
                topology.stop();
                break;
            }
            recv(deadline) -> _ => {
                if let Some(store) = store.as_mut() {
                    checkpoint(&mut topology, store, &stamp);
                }
                topology.stop();
                break;
            }
            recv(input_ended) -> _ => {
                if let Some(store) = store.as_mut() {
                    checkpoint(&mut topology, store, &stamp);
                }
                topology.stop();
                break;
            }
            recv(ticks) -> _ => {
                if let Some(store) = store.as_mut() {
                    checkpoint(&mut topology, store, &stamp);
                }
            }
            recv(finished) -> _ => break,
        }
    }
    crossbeam_channel::select! {
        recv(interrupt) -> _ => {
            eprintln!("tandem: second stop signal: exiting without draining");
            return ExitCode::from(130);
        }
        recv(topology.finished()) -> _ => {}
    }
    match topology.join() {
        Ok(report) => {
            eprint!("{}", report.table());
            let wall = started.elapsed();
            if let (Some(before), Some(after)) = (cpu_before, tandem::cpu::process_cpu_time()) {
                let used = after.saturating_sub(before);
                eprintln!(
                    "cpu: {:.2}% of one core over {:.1} s ({} ms of CPU time)",
                    100.0 * used.as_secs_f64() / wall.as_secs_f64().max(1e-9),
                    wall.as_secs_f64(),
                    used.as_millis()
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tandem: {e}");
            ExitCode::from(3)
        }
    }
}

/// Snapshots every vertex at a barrier where the ingress is now and saves
/// the checkpoint. Failures are reported and the run goes on.
fn checkpoint(topology: &mut Topology, store: &mut CheckpointStore, stamp: &GraphStamp) {
    let placed = topology.place_barrier_now();
    match topology.barrier_snapshots(placed, Duration::from_secs(10)) {
        Ok(taken) => {
            let checkpoint = Checkpoint {
                graph: stamp.clone(),
                seq: taken.at,
                vertices: taken.vertices,
            };
            match store.save(&checkpoint) {
                Ok(path) => eprintln!(
                    "tandem: checkpoint {} at origin sequence {}",
                    path.display(),
                    checkpoint.seq
                ),
                Err(e) => eprintln!("tandem: checkpoint not saved: {e}"),
            }
        }
        Err(e) => eprintln!("tandem: checkpoint skipped: {e}"),
    }
}

/// `tandem bundle ...`: prints what was done; exit 1 with the reason otherwise.
fn bundle(action: BundleCommand) -> ExitCode {
    use tandem::bundle::command;
    let done = match action {
        BundleCommand::Keygen { name, dir } => command::keygen(&name, &dir),
        BundleCommand::Build {
            graph,
            extra_graphs,
            binary,
            name,
            bundle_version,
            track,
            expires,
            expires_in,
            hardware,
            sites,
            depends,
            conflicts,
            min_runtime,
            output,
        } => bundle_spec(BundleArgs {
            graph,
            extra_graphs,
            binary,
            name,
            version: bundle_version,
            track,
            expires,
            expires_in,
            hardware,
            sites,
            depends,
            conflicts,
            min_runtime,
        })
        .and_then(|spec| command::build(&spec, &output)),
        BundleCommand::Sign { file, key } => command::sign(&file, &key),
        BundleCommand::Verify { file, gateway } => {
            command::verify(&file, &gateway.config_dir, &gateway.state_dir)
        }
        BundleCommand::Inspect { file, gateway } => {
            command::inspect(&file, &gateway.config_dir, &gateway.state_dir)
        }
        BundleCommand::Revoke {
            name,
            revoked,
            key,
            track,
            reason,
            output,
        } => revocation(&name, &revoked, &track, reason)
            .and_then(|r| command::revoke(&r, &key, &output)),
    };
    match done {
        Ok(text) => {
            outln!("{}", text.trim_end());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tandem: {e}");
            ExitCode::from(INVALID)
        }
    }
}

/// The arguments of `tandem bundle build`, as given.
struct BundleArgs {
    graph: PathBuf,
    extra_graphs: Vec<PathBuf>,
    binary: Option<PathBuf>,
    name: String,
    version: String,
    track: String,
    expires: Option<String>,
    expires_in: String,
    hardware: Vec<String>,
    sites: Vec<String>,
    depends: Vec<String>,
    conflicts: Vec<String>,
    min_runtime: Option<String>,
}

fn bundle_name(what: &str, text: &str) -> Result<tandem::bundle::manifest::Name, String> {
    tandem::bundle::manifest::Name::parse(text)
        .ok_or_else(|| format!("`{text}` is not a {what} name; use a-z, 0-9, `.`, `_` and `-`"))
}

fn semver_arg(what: &str, text: &str) -> Result<semver::Version, String> {
    semver::Version::parse(text)
        .map_err(|_| format!("{what} `{text}` is not a semantic version; use e.g. 1.2.0"))
}

fn bundle_spec(a: BundleArgs) -> Result<tandem::bundle::build::BuildSpec, String> {
    use tandem::bundle::manifest::Constraint;
    use tandem::bundle::UnixTime;
    let expires = match &a.expires {
        Some(at) => UnixTime::parse_rfc3339(at).ok_or_else(|| {
            format!("--expires `{at}` is not a UTC time such as 2027-01-31T00:00:00Z")
        })?,
        None => {
            let secs = match a.expires_in.strip_suffix('d').map(str::parse::<u64>) {
                Some(Ok(days)) => days.saturating_mul(86_400),
                _ => duration_arg(&a.expires_in)?.as_secs(),
            };
            // The wall clock, read once for this build.
            UnixTime::now().plus(secs)
        }
    };
    let constraints = |list: &[String]| {
        list.iter()
            .map(|c| {
                Constraint::parse(c).ok_or_else(|| {
                    format!("`{c}` is not a constraint; use a bundle name and an optional requirement such as `battery-graph >= 2.14`")
                })
            })
            .collect::<Result<Vec<_>, _>>()
    };
    Ok(tandem::bundle::build::BuildSpec {
        name: bundle_name("bundle", &a.name)?,
        version: semver_arg("--version", &a.version)?,
        track: bundle_name("track", &a.track)?,
        expires,
        hardware: a.hardware,
        sites: a.sites,
        min_runtime: a
            .min_runtime
            .as_deref()
            .map(|v| semver_arg("--min-runtime", v))
            .transpose()?,
        depends: constraints(&a.depends)?,
        conflicts: constraints(&a.conflicts)?,
        graph: a.graph,
        extra_graphs: a.extra_graphs,
        binary: a.binary,
    })
}

fn revocation(
    name: &str,
    version: &str,
    track: &str,
    reason: String,
) -> Result<tandem::bundle::revocation::Revocation, String> {
    Ok(tandem::bundle::revocation::Revocation {
        name: bundle_name("bundle", name)?,
        version: semver_arg("the version", version)?,
        track: bundle_name("track", track)?,
        reason,
    })
}

fn kinds(only: Option<&str>) -> ExitCode {
    let registry = tandem_nodes::registry();
    let mut found = false;
    for role in [Role::Source, Role::Vertex, Role::Sink] {
        for kind in registry.kinds().filter(|k| k.role() == role) {
            if only.is_some_and(|n| n != kind.name) {
                continue;
            }
            found = true;
            outln!(
                "[{}] {} v{}: {}",
                role.table(),
                kind.name,
                kind.version,
                kind.doc
            );
            if !kind.input_names.is_empty() {
                outln!("    inputs: {}", kind.input_names.join(", "));
            }
            let outs: Vec<String> = kind
                .outputs
                .iter()
                .map(|o| {
                    let name = if o.suffix.is_empty() {
                        "<id>".to_owned()
                    } else {
                        format!("<id>.{}", o.suffix)
                    };
                    if o.unit.is_empty() {
                        name
                    } else {
                        format!("{name} [{}]", o.unit)
                    }
                })
                .chain(kind.outputs_from.map(|p| format!("<id>.<each of `{p}`>")))
                .collect();
            if !outs.is_empty() {
                outln!("    outputs: {}", outs.join(", "));
            }
            if let Some(schema) = kind.state_schema {
                outln!("    state schema: {schema}");
            }
            for p in kind.params {
                let default = match p.default {
                    ParamDefault::Required => "required".to_owned(),
                    ParamDefault::Optional => "optional".to_owned(),
                    ParamDefault::Float(v) => format!("default {v}"),
                    ParamDefault::Int(v) => format!("default {v}"),
                    ParamDefault::Bool(v) => format!("default {v}"),
                    ParamDefault::Duration(v) => format!("default \"{}\"", format_duration(v)),
                    ParamDefault::Text(v) => format!("default \"{v}\""),
                    ParamDefault::Names(v) => format!("default {v:?}"),
                };
                outln!(
                    "    {} = {} ({default}): {}",
                    p.name,
                    p.ty.expected(),
                    p.doc
                );
            }
        }
    }
    if !found {
        if let Some(name) = only {
            eprintln!("error: no kind `{name}`; `tandem kinds` lists them all");
            return ExitCode::from(INVALID);
        }
    }
    ExitCode::SUCCESS
}
