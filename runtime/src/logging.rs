//! Logs of the agent and its instances, through `tracing`.
//!
//! - **Levels.** `TANDEM_LOG` filters what is shown, as
//!   `LEVEL[,TARGET=LEVEL...]`: `info` by default, with quinn and rustls at
//!   `warn` (`TANDEM_LOG=debug,quinn=debug` shows the QUIC connections'
//!   own events, which earlier builds dropped).
//! - **Where.** Under systemd, when stderr is the journal (systemd sets
//!   `JOURNAL_STREAM` to its device and inode), events go to journald with
//!   their level as the priority, so `journalctl -u tandem -p warning`
//!   works; everywhere else to stderr, one line each:
//!   `tandem: message`, `tandem: warning: message`, `tandem blue: message`
//!   for an instance.
//!
//! Command output (`tandem check`'s errors, tables) is not a log and is
//! printed as it was.

use std::fmt;
use std::io::IsTerminal as _;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::Layer as _;

/// The filter when `TANDEM_LOG` is unset.
pub const DEFAULT_FILTER: &str = "info,quinn=warn,quinn_proto=warn,rustls=warn";

/// Starts logging for this process; `name` begins each line on stderr
/// (`tandem`, `tandem blue`). A bad `TANDEM_LOG` is reported and the
/// default used. Later calls do nothing.
pub fn init(name: &'static str) {
    let spec = std::env::var("TANDEM_LOG").ok();
    let (filter, bad) = filter(spec.as_deref());
    let journal = stderr_is_journal()
        && match tracing_journald::layer() {
            Ok(layer) => tracing_subscriber::registry()
                .with(layer.with_filter(filter.clone()))
                .try_init()
                .is_ok(),
            // No journald socket: stderr still reaches the journal.
            Err(_) => false,
        };
    if !journal {
        let layer = tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .event_format(Line {
                name,
                clear_status: std::io::stderr().is_terminal(),
            })
            .with_filter(filter);
        let _ = tracing_subscriber::registry().with(layer).try_init();
    }
    if let Some(bad) = bad {
        tracing::warn!("TANDEM_LOG: {bad}; logging at the default `{DEFAULT_FILTER}`");
    }
}

/// The filter `spec` asks for, or the default and why `spec` was refused.
fn filter(spec: Option<&str>) -> (Targets, Option<String>) {
    let default = || {
        DEFAULT_FILTER
            .parse::<Targets>()
            .unwrap_or_else(|_| Targets::new().with_default(Level::INFO))
    };
    match spec.map(str::trim).filter(|s| !s.is_empty()) {
        None => (default(), None),
        Some(spec) => match spec.parse::<Targets>() {
            Ok(targets) => (targets, None),
            Err(e) => (
                default(),
                Some(format!(
                    "`{spec}` is not a filter ({e}); write LEVEL[,TARGET=LEVEL...] such as `debug` or `info,quinn=debug`"
                )),
            ),
        },
    }
}

/// True when stderr is the journal stream systemd connected (its device
/// and inode are in `JOURNAL_STREAM`, as `DEV:INODE`).
fn stderr_is_journal() -> bool {
    use std::os::unix::fs::MetadataExt as _;
    let Ok(stream) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = stream.split_once(':') else {
        return false;
    };
    let Ok(meta) = std::fs::metadata("/proc/self/fd/2") else {
        return false;
    };
    dev.parse() == Ok(meta.dev()) && ino.parse() == Ok(meta.ino())
}

/// One event as one line: `NAME: [LEVEL: ]message[ field=value...]`.
struct Line {
    name: &'static str,
    /// Clear the agent's status line first (stderr is a terminal).
    clear_status: bool,
}

impl<S, N> FormatEvent<S, N> for Line
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        if self.clear_status {
            write!(writer, "\r\x1b[K")?;
        }
        let meta = event.metadata();
        write!(writer, "{}: ", self.name)?;
        match *meta.level() {
            Level::ERROR => write!(writer, "error: ")?,
            Level::WARN => write!(writer, "warning: ")?,
            Level::INFO => {}
            level => write!(
                writer,
                "{}: {}: ",
                level.as_str().to_lowercase(),
                meta.target()
            )?,
        }
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filter_is_read_or_refused_with_what_would_be_valid() {
        let (targets, bad) = filter(Some("debug,quinn=trace"));
        assert!(bad.is_none());
        assert!(targets.would_enable("quinn", &Level::TRACE));
        assert!(targets.would_enable("tandem", &Level::DEBUG));

        let (targets, bad) = filter(None);
        assert!(bad.is_none());
        assert!(targets.would_enable("tandem", &Level::INFO));
        assert!(!targets.would_enable("tandem", &Level::DEBUG));
        assert!(!targets.would_enable("quinn", &Level::INFO));
        assert!(targets.would_enable("quinn", &Level::WARN));

        let (targets, bad) = filter(Some("loud=very"));
        let bad = bad.expect("refused");
        assert!(bad.contains("`loud=very` is not a filter"), "{bad}");
        assert!(bad.contains("LEVEL[,TARGET=LEVEL...]"), "{bad}");
        assert!(targets.would_enable("tandem", &Level::INFO));
    }

    #[test]
    fn the_journal_is_used_only_when_stderr_is_it() {
        // This test's stderr is not a journal stream of that inode.
        std::env::set_var("JOURNAL_STREAM", "0:0");
        assert!(!stderr_is_journal());
        std::env::remove_var("JOURNAL_STREAM");
        assert!(!stderr_is_journal());
    }
}
