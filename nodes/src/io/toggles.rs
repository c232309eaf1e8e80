//! `toggles`: feature toggles as records in the input stream.
//!
//! Each name is a channel `<id>.<name>` whose value is 1 (on) or 0 (off).
//! The first poll emits every toggle's initial value (`on` lists those that
//! start on). Under `tandem up` the agent feeds the source: `tandem toggle
//! NAME on|off` becomes one record here, and because the ingress gives it an
//! origin sequence number like any reading, both instances switch at the
//! same point of the input. Vertices read a toggle as an input channel (see
//! `select`). Under `tandem run` nothing feeds it: the initial values hold.

use super::names_param;
use std::sync::{Arc, Mutex};
use std::task::Waker;
use tandem_core::{
    Arity, BuildContext, BuildError, Builder, ChannelId, EventTime, KindSpec, ParamDefault,
    ParamSpec, ParamType, Record, Seq, Source,
};

/// The `toggles` kind.
pub static KIND: KindSpec = KindSpec {
    name: "toggles",
    version: 1,
    doc: "feature toggles: one 0/1 channel per name, switched at one origin sequence number by `tandem toggle`",
    input_names: &[],
    arity: Arity::NONE,
    outputs: &[],
    outputs_from: Some("names"),
    params: &[
        ParamSpec {
            name: "names",
            ty: ParamType::Names,
            default: ParamDefault::Required,
            doc: "the toggles, each a channel `<id>.<name>`",
        },
        ParamSpec {
            name: "on",
            ty: ParamType::Names,
            default: ParamDefault::Names(&[]),
            doc: "toggles that start on; the others start off",
        },
    ],
    state_schema: None,
    migrations: &[],
    build: Builder::Source(|ctx| Ok(Box::new(Toggles::new(ctx, None)?))),
};

/// A running `toggles` source.
#[derive(Debug)]
pub struct Toggles {
    initial: Vec<(ChannelId, f64)>,
    switches: Option<crossbeam_channel::Receiver<(ChannelId, f64)>>,
    waker: Arc<Mutex<Option<Waker>>>,
}

/// The feeding end of a switchable `toggles` source (the agent keeps it).
#[derive(Clone, Debug)]
pub struct Switches {
    names: Vec<(String, ChannelId)>,
    tx: crossbeam_channel::Sender<(ChannelId, f64)>,
    waker: Arc<Mutex<Option<Waker>>>,
}

impl Switches {
    /// The toggle names this source has.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(|(n, _)| n.as_str())
    }

    /// Queues a switch of `name`; false when this source has no such toggle.
    pub fn switch(&self, name: &str, on: bool) -> bool {
        let Some(&(_, channel)) = self.names.iter().find(|(n, _)| n == name) else {
            return false;
        };
        let sent = self.tx.send((channel, if on { 1.0 } else { 0.0 })).is_ok();
        if let Some(waker) = self
            .waker
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            waker.wake_by_ref();
        }
        sent
    }
}

impl Toggles {
    fn new(
        ctx: &BuildContext<'_>,
        switches: Option<crossbeam_channel::Receiver<(ChannelId, f64)>>,
    ) -> Result<Toggles, BuildError> {
        let names = names_param(ctx, "names")?;
        let on = names_param(ctx, "on")?;
        if let Some(unknown) = on.iter().find(|n| !names.contains(n)) {
            return Err(BuildError::new(format!(
                "`{}`: `on` names `{unknown}`, which is not in `names` ({})",
                ctx.id,
                names.join(", ")
            )));
        }
        if ctx.outputs.len() != names.len() {
            return Err(BuildError::new(format!(
                "`{}`: {} toggles but {} output channels",
                ctx.id,
                names.len(),
                ctx.outputs.len()
            )));
        }
        let initial = names
            .iter()
            .zip(ctx.outputs)
            .map(|(n, &c)| (c, if on.contains(n) { 1.0 } else { 0.0 }))
            .collect();
        Ok(Toggles {
            initial,
            switches,
            waker: Arc::new(Mutex::new(None)),
        })
    }

    /// A source the returned [`Switches`] can switch while it runs.
    pub fn switchable(ctx: &BuildContext<'_>) -> Result<(Toggles, Switches), BuildError> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let toggles = Toggles::new(ctx, Some(rx))?;
        let names = names_param(ctx, "names")?
            .iter()
            .cloned()
            .zip(ctx.outputs.iter().copied())
            .collect();
        let switches = Switches {
            names,
            tx,
            waker: toggles.waker.clone(),
        };
        Ok((toggles, switches))
    }
}

/// Polled only when woken.
const IDLE_NS: i64 = 3_600_000_000_000;

impl Source for Toggles {
    fn poll(&mut self, now: EventTime, out: &mut Vec<Record>) -> Option<EventTime> {
        for (channel, value) in self.initial.drain(..) {
            out.push(Record::new(Seq::ZERO, now, channel, value));
        }
        let switches = self.switches.as_ref()?;
        while let Ok((channel, value)) = switches.try_recv() {
            out.push(Record::new(Seq::ZERO, now, channel, value));
        }
        Some(now.add_nanos(IDLE_NS))
    }

    fn set_waker(&mut self, waker: Waker) {
        *self.waker.lock().unwrap_or_else(|e| e.into_inner()) = Some(waker);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::io::testing::{names, source, NEW_YEAR_2026};

    #[test]
    fn initial_values_first_then_each_switch_once() {
        let set = [
            ("names", names(&["new_cop", "boost"])),
            ("on", names(&["boost"])),
        ];
        let (mut built, table) = source("t", &KIND, &set).unwrap();
        let mut out = Vec::new();
        let next = built.poll(NEW_YEAR_2026, &mut out);
        let values: Vec<(&str, f64)> = out
            .iter()
            .map(|r| (table.name(r.channel), r.value))
            .collect();
        assert_eq!(values, [("t.new_cop", 0.0), ("t.boost", 1.0)]);
        // Nothing feeds a plain toggles source: it is done.
        assert_eq!(next, None);
    }
}
