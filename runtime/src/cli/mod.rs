//! What each subcommand of `tandem` does; main.rs holds the list of
//! commands and hands each to its function here. Part of the binary, not
//! of the library: a function prints what the user sees and returns the
//! exit code.
//!
//! - [`graph`]: `check`, `diff` and `kinds`, and how a graph file is loaded.
//! - [`run`]: `tandem run`.
//! - [`up`]: `tandem up` and the instances it starts.
//! - [`agent`]: the commands that ask a running `tandem up` (`status`,
//!   `upgrade`, `rollback`, `toggle`, `install`, `top`).
//! - [`bundle`]: `tandem bundle ...`.
//!
//! `tandem ctl ...` lives with the controller, in `tandem::ctl::cli`.

use std::process::ExitCode;
use std::time::Duration;

use tandem_core::param::parse_duration;

pub mod agent;
pub mod bundle;
pub mod graph;
pub mod run;
pub mod up;

/// Exit code of a graph that failed validation, a refused request, a
/// refused bundle.
pub const INVALID: u8 = 1;
/// Exit code of a file that could not be read.
pub const UNREADABLE: u8 = 2;
/// Exit code of a run that a second stop signal ended without draining.
pub const INTERRUPTED: u8 = tandem::up::agent::INTERRUPTED_EXIT;

/// The reader of stdout went away (`tandem check | head`): the command
/// stops printing and ends quietly with 141, as a SIGPIPE would end it.
#[derive(Debug)]
pub struct ReaderGone;

/// The exit code of a command whose reader went away.
pub const READER_GONE: u8 = 141;

impl From<ReaderGone> for ExitCode {
    fn from(_: ReaderGone) -> ExitCode {
        ExitCode::from(READER_GONE)
    }
}

/// How a command that prints ends: its exit code, or [`ReaderGone`].
pub type Printed = Result<ExitCode, ReaderGone>;

/// `--for`, `--every` and the like: `500ms`, `10s`, `2m`, `1h`.
pub fn duration_arg(text: &str) -> Result<Duration, String> {
    parse_duration(text)
        .map(|ns| Duration::from_nanos(ns.unsigned_abs()))
        .ok_or_else(|| format!("`{text}` is not a duration; use e.g. 500ms, 10s, 2m, 1h"))
}

/// `--checkpoint-every`: a duration of 10 ms or more.
pub fn checkpoint_interval_arg(text: &str) -> Result<Duration, String> {
    let d = duration_arg(text)?;
    if d < Duration::from_millis(10) {
        return Err(format!(
            "`{text}` is too short between checkpoints; use 10ms or more, such as 10s"
        ));
    }
    Ok(d)
}

/// `--speed`: how many times faster than real time.
pub fn speed_arg(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if (1e-6..=1e9).contains(&v) => Ok(v),
        _ => Err(format!(
            "`{text}` is not a speed; use a number from 0.000001 to 1000000000, such as 60 (a minute per second)"
        )),
    }
}
