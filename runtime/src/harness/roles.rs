//! A bench executable as `tandem`: `<exe> instance ..` is an instance (what
//! an agent starts), `<exe> up GRAPH --state-dir DIR ..` an agent with the
//! graph's own sinks, as a process of its own (so that what it costs, its
//! memory, is its own).
//!
//! `<exe> withhold-output COLOR instance ..` is an instance that, if it is
//! `COLOR`, sends the agent no output records, only its progress (the
//! frontiers it has processed): the `ha` bench's ceiling, what the path
//! would carry if each output record crossed to the agent once. Only a
//! bench asks for it; the `tandem` a gateway runs cannot.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use clap::Parser;

use tandem_core::ha::Color;

use crate::up::instance::Launch;

/// The role word before `instance` that withholds one colour's output.
pub const WITHHOLD_OUTPUT: &str = "withhold-output";

/// The colour whose output this process withholds, if any.
static WITHHELD: OnceLock<Color> = OnceLock::new();

/// True when this process is an instance of `color` asked to withhold its
/// output records ([`WITHHOLD_OUTPUT`]).
pub(crate) fn withholds_output(color: Color) -> bool {
    WITHHELD.get() == Some(&color)
}

/// The options of `tandem up` a bench uses.
#[derive(Debug, Parser)]
#[command(name = "up", no_binary_name = true)]
struct UpArgs {
    file: PathBuf,
    #[arg(long)]
    state_dir: PathBuf,
    /// Stop after this long (such as 30s).
    #[arg(long = "for", value_parser = duration)]
    run_for: Option<Duration>,
    #[arg(long, value_parser = duration, default_value = "1s")]
    checkpoint_every: Duration,
    #[arg(long, default_value_t = 1024)]
    batch: usize,
}

fn duration(text: &str) -> Result<Duration, String> {
    tandem_core::param::parse_duration(text)
        .and_then(|ns| u64::try_from(ns).ok())
        .map(Duration::from_nanos)
        .ok_or_else(|| format!("`{text}` is not a duration (such as 500ms, 10s)"))
}

/// Runs the role `args` (this process's, the program name first) ask for,
/// and exits; returns when they ask for none. `name` starts error lines.
pub fn serve_roles(name: &str, args: &[String]) {
    let mut args = args;
    if args.get(1).map(String::as_str) == Some(WITHHOLD_OUTPUT) {
        match args.get(2).and_then(|c| Color::from_name(c)) {
            Some(color) => {
                let _ = WITHHELD.set(color);
                args = &args[2..];
            }
            None => {
                eprintln!("{name}: `{WITHHOLD_OUTPUT}` wants a colour, blue or green");
                std::process::exit(2)
            }
        }
    }
    let result = match args.get(1).map(String::as_str) {
        Some("instance") => Launch::parse(&args[1..])
            .and_then(Launch::run)
            .map_err(|e| e.to_string()),
        Some("up") => up(&args[2..]),
        _ => return,
    };
    match result {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("{name}: {e}");
            std::process::exit(1)
        }
    }
}

fn up(args: &[String]) -> Result<(), String> {
    let args = UpArgs::try_parse_from(args).map_err(|e| e.to_string())?;
    crate::logging::init("tandem");
    let program = std::env::current_exe().map_err(|e| format!("this executable: {e}"))?;
    let mut config = super::agent_config(&args.file, &args.state_dir, program)?;
    config.run_for = args.run_for;
    config.checkpoint_every = args.checkpoint_every;
    config.batch = args.batch;
    match crate::up::agent::run(config) {
        // A second stop signal: as `tandem up` exits.
        Err(crate::up::agent::AgentError::Abandoned) => {
            std::process::exit(i32::from(crate::up::agent::INTERRUPTED_EXIT))
        }
        ended => ended.map_err(|e| e.to_string()),
    }
}
