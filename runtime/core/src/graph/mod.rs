//! Graph files: TOML text parsed into a spec that remembers where every key
//! and value is, validated against a [`Registry`] into a [`Plan`].
//!
//! [`load`] collects every error of a file, each as a [`Diagnostic`] with a
//! line and column, rather than stopping at the first.

mod diag;
mod kind_check;
mod params;
mod spec;
mod suggest;
mod text;
mod validate;

#[cfg(test)]
mod tests;

pub use diag::{Diagnostic, Diagnostics};

use crate::plan::{EdgeSettings, Layout, Plan};
use crate::vertex::Registry;
use diag::Report;
use std::time::Duration;
use toml::de::DeTable;

/// Graph-level settings from `[graph]`, defaults filled in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GraphSettings {
    /// How nodes are grouped onto workers (`layout`, default `chains`).
    pub layout: Layout,
    /// Ring settings of every edge without an `[[edges]]` override
    /// (`capacity`, default 4096; `overflow`, default `block`).
    pub edge: EdgeSettings,
}

impl Default for GraphSettings {
    fn default() -> Self {
        GraphSettings {
            layout: Layout::Chains,
            edge: EdgeSettings::default(),
        }
    }
}

/// The `[ha]` settings of `tandem up`, defaults filled in.
#[derive(Clone, Debug, PartialEq)]
pub struct HaSettings {
    /// `retention`: input records the upstream junction keeps for replay to a
    /// rejoining instance. Default 65536; 1024 ..= 16 Mi.
    pub retention: usize,
    /// `heartbeat`: an instance not heard from this long is pinged. Default:
    /// a fifth of the timeout, at most "100ms" ([`HaSettings::heartbeat_for`]);
    /// 1 ms ..= 1 s.
    pub heartbeat: Duration,
    /// `timeout`: an instance silent this long is lost and restarted. Default
    /// "500ms"; at least 3 heartbeats, at most 60 s.
    pub timeout: Duration,
    /// `[ha.tolerance]`: absolute tolerance per output channel when the two
    /// instances' outputs are compared (default exact), in file order. Keys
    /// are channel names (`"cop" = 1e-9`, `"battery.soc" = 0.001`), each a
    /// channel of the graph, given once; values are finite floats >= 0.
    pub tolerances: Vec<(crate::ChannelId, f64)>,
    /// `supervise`: how long a new vertex version runs as a shadow before it
    /// is promoted, and again before the old version is replaced, during a live
    /// upgrade. Event time, default "10s"; 0 s ..= 1 day.
    pub supervise: Duration,
    /// `max_mismatch`: highest fraction of compared output records that may
    /// differ during supervision before an upgrade is rolled back. Default 0.0;
    /// 0.0 ..= 1.0.
    pub max_mismatch: f64,
}

impl Default for HaSettings {
    fn default() -> Self {
        HaSettings {
            retention: 65536,
            heartbeat: HaSettings::heartbeat_for(Duration::from_millis(500)),
            timeout: Duration::from_millis(500),
            tolerances: Vec::new(),
            supervise: Duration::from_secs(10),
            max_mismatch: 0.0,
        }
    }
}

impl HaSettings {
    /// The heartbeat when a file gives none: five in a timeout, and no more
    /// often than every 100 ms, so an idle gateway's links cost next to
    /// nothing (each heartbeat is a QUIC round trip per instance) while a
    /// hung instance is still noticed within its timeout. Any frame proves an
    /// instance alive and puts its next ping off, so while output flows one
    /// heartbeat a second goes out.
    pub fn heartbeat_for(timeout: Duration) -> Duration {
        (timeout / 5).clamp(Duration::from_millis(1), Duration::from_millis(100))
    }
}

/// A graph file loaded and validated.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// The plan, laid out with `settings.layout`.
    pub plan: Plan,
    /// `name` from `[graph]`, or `"graph"`.
    pub name: String,
    /// The `[graph]` settings.
    pub settings: GraphSettings,
    /// The `[ha]` settings.
    pub ha: HaSettings,
}

/// Parses and validates the graph file `bytes`, named `file` in diagnostics.
///
/// Returns every error found, in file order; never panics on any input.
pub fn load(file: &str, bytes: &[u8], registry: &Registry) -> Result<Loaded, Diagnostics> {
    let text = match text::decode(bytes) {
        Ok(text) => text,
        Err(bad) => {
            let mut report = Report::default();
            report.at(&(bad.offset..bad.offset), bad.message);
            return Err(report.into_diagnostics(file, bad.prefix));
        }
    };
    let (doc, errors) = DeTable::parse_recoverable(text);
    if !errors.is_empty() {
        return Err(syntax_errors(file, text, &errors));
    }
    let mut report = Report::default();
    let spec = spec::read(text, &doc, &mut report);
    match validate::validate(text, &spec, registry, &mut report) {
        Some(loaded) if report.is_empty() => Ok(loaded),
        _ => Err(report.into_diagnostics(file, text)),
    }
}

/// TOML syntax errors, at most one per line (later ones on a line are
/// usually consequences of the first).
fn syntax_errors(file: &str, text: &str, errors: &[toml::de::Error]) -> Diagnostics {
    let mut report = Report::default();
    let mut lines = std::collections::BTreeSet::new();
    for e in errors {
        let offset = e.span().map_or(0, |s| s.start);
        if !lines.insert(diag::line_col(text, offset).0) {
            continue;
        }
        let message = e.message().trim();
        let key = e.span().and_then(|s| text.get(s)).unwrap_or("").trim();
        let message = if message == "duplicate key" && !key.is_empty() {
            format!("invalid TOML: duplicate key `{key}`; each key and table may appear once")
        } else {
            format!("invalid TOML: {message}")
        };
        report.at(&(offset..offset), message);
    }
    report.into_diagnostics(file, text)
}
