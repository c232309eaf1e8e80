//! Graph files: TOML text parsed into a spec that remembers where every key
//! and value is, validated against a [`Registry`] into a [`Plan`].
//!
//! [`load`] collects every error of a file, each as a [`Diagnostic`] with a
//! line and column, rather than stopping at the first.

mod diag;
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

/// A graph file loaded and validated.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// The plan, laid out with `settings.layout`.
    pub plan: Plan,
    /// `name` from `[graph]`, or `"graph"`.
    pub name: String,
    /// The `[graph]` settings.
    pub settings: GraphSettings,
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
