//! Sources and sinks: the edge of a graph.
//!
//! They are built in the agent process and may touch files and stdout. Sources
//! are still deterministic functions of the ingress times they are polled at
//! and of their parameters, so a replay or a test on a virtual clock gives the
//! same records every time.
//!
//! | kind | role | file |
//! |---|---|---|
//! | `synthetic` | source | [`synthetic`] |
//! | `csv` | source | [`csv`] |
//! | `sim.battery` | source | [`sim_battery`] |
//! | `sim.heatpump` | source | [`sim_heatpump`] |
//! | `sim.ev` | source | [`sim_ev`] |
//! | `stdout` | sink | [`stdout`] |
//! | `file` | sink | [`file`](mod@file) |
//! | `count` | sink | [`count`] |
//! | `mqtt` | sink | [`mqtt`] (through a [`spool`]) |

pub mod count;
pub mod csv;
pub mod file;
pub mod lines;
pub mod mqtt;
pub mod sim;
pub mod sim_battery;
pub mod sim_ev;
pub mod sim_heatpump;
pub mod spool;
pub mod stdout;
pub mod synthetic;
pub mod toggles;

use tandem_core::vertex::Check;
use tandem_core::{BuildContext, BuildError, Builder, ChannelId, KindSpec};

/// The kinds this module provides.
pub static KINDS: &[&KindSpec] = &[
    &synthetic::KIND,
    &csv::KIND,
    &sim_battery::KIND,
    &sim_heatpump::KIND,
    &sim_ev::KIND,
    &stdout::KIND,
    &file::KIND,
    &count::KIND,
    &toggles::KIND,
    &mqtt::KIND,
];

/// The load-time checks of these kinds. The others refuse nothing that
/// their parameters' declared ranges let through (or only what they find
/// in files when they open them).
pub static CHECKS: &[(&KindSpec, Check)] = &[
    (&synthetic::KIND, synthetic::check),
    (&csv::KIND, csv::check),
    (&toggles::KIND, check_toggles),
    (&mqtt::KIND, mqtt::check),
];

/// Building a `toggles` source touches nothing (it makes the channel that
/// would feed it), so its check builds one and drops it.
fn check_toggles(ctx: &BuildContext<'_>) -> Result<(), BuildError> {
    match toggles::KIND.build {
        Builder::Source(build) => build(ctx).map(drop),
        Builder::Vertex(_) | Builder::Sink(_) => Ok(()),
    }
}

/// A parameter the plan should have filled in was missing or of another type.
fn missing(ctx: &BuildContext<'_>, name: &str) -> BuildError {
    BuildError::new(format!(
        "`{}`: parameter `{name}` is missing or has the wrong type",
        ctx.id
    ))
}

pub(crate) fn float_param(ctx: &BuildContext<'_>, name: &str) -> Result<f64, BuildError> {
    ctx.params.float(name).ok_or_else(|| missing(ctx, name))
}

pub(crate) fn int_param(ctx: &BuildContext<'_>, name: &str) -> Result<i64, BuildError> {
    ctx.params.int(name).ok_or_else(|| missing(ctx, name))
}

pub(crate) fn bool_param(ctx: &BuildContext<'_>, name: &str) -> Result<bool, BuildError> {
    ctx.params.bool(name).ok_or_else(|| missing(ctx, name))
}

pub(crate) fn duration_param(ctx: &BuildContext<'_>, name: &str) -> Result<i64, BuildError> {
    ctx.params
        .duration_ns(name)
        .ok_or_else(|| missing(ctx, name))
}

pub(crate) fn text_param<'a>(ctx: &'a BuildContext<'_>, name: &str) -> Result<&'a str, BuildError> {
    ctx.params.text(name).ok_or_else(|| missing(ctx, name))
}

pub(crate) fn names_param<'a>(
    ctx: &'a BuildContext<'_>,
    name: &str,
) -> Result<&'a [String], BuildError> {
    ctx.params.names(name).ok_or_else(|| missing(ctx, name))
}

/// The output channels, checked to be exactly `n` (the plan gives one per output).
pub(crate) fn outputs<const N: usize>(
    ctx: &BuildContext<'_>,
) -> Result<[ChannelId; N], BuildError> {
    <[ChannelId; N]>::try_from(ctx.outputs).map_err(|_| {
        BuildError::new(format!(
            "`{}`: expected {N} output channels, the plan gave {}",
            ctx.id,
            ctx.outputs.len()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::KINDS;
    use tandem_core::{ParamDefault, ParamType, ParamValue};

    #[test]
    fn every_io_kind_is_registered_with_its_role() {
        let registry = crate::registry();
        let sources = registry.names(tandem_core::Role::Source);
        let sinks = registry.names(tandem_core::Role::Sink);
        for name in [
            "synthetic",
            "csv",
            "sim.battery",
            "sim.heatpump",
            "sim.ev",
            "toggles",
        ] {
            assert!(sources.contains(&name), "source {name}");
        }
        for name in ["stdout", "file", "count", "mqtt"] {
            assert!(sinks.contains(&name), "sink {name}");
        }
        assert_eq!(KINDS.len(), 10);
    }

    #[test]
    fn generated_sources_give_the_same_records_for_the_same_polls() {
        #![allow(clippy::unwrap_used)]
        use super::testing::{drive, source, NEW_YEAR_2026};
        use tandem_core::EventTime;
        for kind in [
            &super::synthetic::KIND,
            &super::sim_battery::KIND,
            &super::sim_heatpump::KIND,
            &super::sim_ev::KIND,
        ] {
            let run = || {
                let (mut src, _) = source("n", kind, &[]).unwrap();
                drive(
                    src.as_mut(),
                    NEW_YEAR_2026.add_nanos(777),
                    EventTime(i64::MAX),
                    200,
                )
            };
            let (a, b) = (run(), run());
            assert!(a.len() >= 199, "{}: {} records", kind.name, a.len());
            assert_eq!(a.len(), b.len(), "{}", kind.name);
            assert!(a.iter().zip(&b).all(|(x, y)| x.bit_eq(y)), "{}", kind.name);
            assert!(
                a.windows(2).all(|w| w[0].time <= w[1].time),
                "{}",
                kind.name
            );
        }
    }

    #[test]
    fn kinds_are_unique_and_their_defaults_fit_their_types() {
        let mut names: Vec<&str> = KINDS.iter().map(|k| k.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), KINDS.len());
        for kind in KINDS {
            for p in kind.params {
                let ok = match (p.ty, ParamValue::from_default(p.default)) {
                    (_, None) => {
                        matches!(p.default, ParamDefault::Required | ParamDefault::Optional)
                    }
                    (ParamType::Float { min, max }, Some(ParamValue::Float(v))) => {
                        (min..=max).contains(&v)
                    }
                    (ParamType::Int { min, max }, Some(ParamValue::Int(v))) => {
                        (min..=max).contains(&v)
                    }
                    (ParamType::Duration { min_ns, max_ns }, Some(ParamValue::Duration(v))) => {
                        (min_ns..=max_ns).contains(&v)
                    }
                    (ParamType::Choice(options), Some(ParamValue::Text(v))) => {
                        options.contains(&v.as_str())
                    }
                    (ParamType::Bool, Some(ParamValue::Bool(_)))
                    | (ParamType::Text, Some(ParamValue::Text(_)))
                    | (ParamType::Names, Some(ParamValue::Names(_))) => true,
                    _ => false,
                };
                assert!(
                    ok,
                    "{}.{}: default {:?} does not fit {:?}",
                    kind.name, p.name, p.default, p.ty
                );
            }
            if let Some(from) = kind.outputs_from {
                assert!(kind
                    .params
                    .iter()
                    .any(|p| p.name == from && p.ty == ParamType::Names));
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Building kinds by hand in tests, the way the plan would.
    #![allow(clippy::unwrap_used)]

    use std::path::PathBuf;
    use std::sync::Arc;
    use tandem_core::{
        BuildContext, Builder, ChannelId, ChannelTable, EventTime, KindSpec, ParamValue, Params,
        Record, Sink, Source,
    };

    /// Parameters with defaults filled in and `set` applied on top.
    pub fn params(kind: &KindSpec, set: &[(&str, ParamValue)]) -> Params {
        let mut params = Params::new();
        for spec in kind.params {
            if let Some(v) = ParamValue::from_default(spec.default) {
                params.insert(spec.name, v);
            }
        }
        for (name, value) in set {
            assert!(
                kind.params.iter().any(|p| p.name == *name),
                "{} has no param {name}",
                kind.name
            );
            params.insert(name, value.clone());
        }
        params
    }

    /// A channel table holding the outputs of node `id` of `kind`, and the outputs.
    pub fn outputs(id: &str, kind: &KindSpec, params: &Params) -> (ChannelTable, Vec<ChannelId>) {
        let mut table = ChannelTable::new();
        let mut outs = Vec::new();
        for o in kind.outputs {
            let name = if o.suffix.is_empty() {
                id.to_owned()
            } else {
                format!("{id}.{}", o.suffix)
            };
            outs.push(table.intern(&name, o.unit));
        }
        if let Some(from) = kind.outputs_from {
            for n in params.names(from).unwrap() {
                outs.push(table.intern(&format!("{id}.{n}"), ""));
            }
        }
        (table, outs)
    }

    /// Builds a source as the plan would.
    pub fn source(
        id: &str,
        kind: &KindSpec,
        set: &[(&str, ParamValue)],
    ) -> Result<(Box<dyn Source>, Arc<ChannelTable>), tandem_core::BuildError> {
        let params = params(kind, set);
        let (table, outs) = outputs(id, kind, &params);
        let table = Arc::new(table);
        let ctx = BuildContext {
            id,
            params: &params,
            inputs: &[],
            outputs: &outs,
            channels: &table,
        };
        match kind.build {
            Builder::Source(build) => build(&ctx).map(|s| (s, table)),
            _ => panic!("{} is not a source", kind.name),
        }
    }

    /// Builds a sink over `table`, reading `inputs`.
    pub fn sink(
        id: &str,
        kind: &KindSpec,
        set: &[(&str, ParamValue)],
        table: &Arc<ChannelTable>,
        inputs: &[ChannelId],
    ) -> Result<Box<dyn Sink>, tandem_core::BuildError> {
        let params = params(kind, set);
        let ctx = BuildContext {
            id,
            params: &params,
            inputs,
            outputs: &[],
            channels: table,
        };
        match kind.build {
            Builder::Sink(build) => build(&ctx),
            _ => panic!("{} is not a sink", kind.name),
        }
    }

    /// Polls a source on a virtual clock from `start` until it is exhausted,
    /// `max_polls` polls were made, or the next poll would be after `until`.
    pub fn drive(
        source: &mut dyn Source,
        start: EventTime,
        until: EventTime,
        max_polls: usize,
    ) -> Vec<Record> {
        let mut out = Vec::new();
        let mut now = start;
        for _ in 0..max_polls {
            match source.poll(now, &mut out) {
                Some(next) if next <= until => {
                    assert!(
                        next > now,
                        "a source asked to be polled at {next:?} <= {now:?}"
                    );
                    now = next;
                }
                _ => break,
            }
        }
        out
    }

    /// A fresh, empty directory for one test.
    pub fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tandem-io-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Text parameter.
    pub fn text(s: &str) -> ParamValue {
        ParamValue::Text(s.to_owned())
    }

    /// Names parameter.
    pub fn names(list: &[&str]) -> ParamValue {
        ParamValue::Names(list.iter().map(|s| (*s).to_owned()).collect())
    }

    /// 2026-01-01T00:00:00Z.
    pub const NEW_YEAR_2026: EventTime = EventTime::from_secs(1_767_225_600);
}
