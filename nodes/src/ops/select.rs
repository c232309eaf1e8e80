//! `select`: one of two inputs, chosen by a feature toggle.
//!
//! Inputs are `off`, `on` and `toggle` (a channel of a `toggles` source).
//! While the toggle is 0 the `off` input's records are emitted, otherwise
//! the `on` input's; a toggle record switches at its own origin sequence
//! number, so both instances of a unit switch at the same record. The toggle
//! position is the state: a rejoining instance resumes it.

use super::common;
use rkyv::{Archive, Deserialize, Serialize};
use tandem_core::{
    freeze, thaw, Arity, BuildContext, BuildError, Builder, ChannelId, KindSpec, OutputSpec,
    ParamDefault, ParamSpec, ParamType, Record, SchemaId, Snapshot, SnapshotError, Vertex,
};

/// State schema of `select` v1: [`SelectState`].
pub const SCHEMA: SchemaId = SchemaId(1009);

/// The `select` kind, version 1.
pub static SELECT: KindSpec = KindSpec {
    name: "select",
    version: 1,
    doc: "emits the `off` input or the `on` input, as a feature toggle says; switches at the toggle record's sequence number",
    input_names: &["off", "on", "toggle"],
    arity: Arity::exactly(3),
    outputs: &[OutputSpec::main("")],
    outputs_from: None,
    params: &[ParamSpec {
        name: "initially",
        ty: ParamType::Choice(&["off", "on"]),
        default: ParamDefault::Text("off"),
        doc: "the position before the first toggle record",
    }],
    state_schema: Some(SCHEMA),
    migrations: &[],
    build: Builder::Vertex(build),
};

fn build(ctx: &BuildContext<'_>) -> Result<Box<dyn Vertex>, BuildError> {
    Ok(Box::new(Select {
        off: common::input(ctx, 0)?,
        on: common::input(ctx, 1)?,
        toggle: common::input(ctx, 2)?,
        output: common::output(ctx)?,
        state: SelectState {
            on: common::text(ctx, "initially")? == "on",
        },
    }))
}

/// What `select` remembers: the toggle's position.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SelectState {
    /// True while the `on` input is emitted.
    pub on: bool,
}

/// A running `select` vertex.
#[derive(Debug)]
pub struct Select {
    off: ChannelId,
    on: ChannelId,
    toggle: ChannelId,
    output: ChannelId,
    state: SelectState,
}

impl Vertex for Select {
    fn process(&mut self, input: &[Record], out: &mut Vec<Record>) {
        for r in input {
            if r.channel == self.toggle {
                // A non-finite toggle value says nothing: keep the position.
                if r.value.is_finite() {
                    self.state.on = r.value != 0.0;
                }
            } else if r.channel == if self.state.on { self.on } else { self.off } {
                out.push(r.derive(self.output, r.value));
            }
        }
    }

    fn snapshot(&self) -> Option<Snapshot> {
        Some(freeze(SCHEMA, &self.state))
    }

    fn restore(&mut self, snapshot: &Snapshot) -> Result<(), SnapshotError> {
        self.state = thaw(SCHEMA, snapshot)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::ops::testkit::*;
    use tandem_core::{EventTime, Seq};

    const TOGGLE: ChannelId = ChannelId(3);

    fn on(seq: u64, channel: u32, value: f64) -> Record {
        Record::new(Seq(seq), EventTime(seq as i64), ChannelId(channel), value)
    }

    fn select() -> Box<dyn Vertex> {
        try_build(&SELECT, &[], &[IN, IN2, TOGGLE]).unwrap()
    }

    #[test]
    fn switches_at_the_toggle_record_and_keeps_its_position() {
        let mut v = select();
        // Inputs: off = channel 1, on = channel 2, toggle = channel 3.
        let input = [
            on(1, 1, 10.0),
            on(1, 2, 20.0),
            on(2, 3, 1.0),
            on(3, 1, 11.0),
            on(3, 2, 21.0),
            on(4, 3, f64::NAN),
            on(5, 2, 22.0),
        ];
        let out = run(v.as_mut(), &input);
        assert_eq!(values(&out), [10.0, 21.0, 22.0]);
        let snapshot = v.snapshot().unwrap();
        let mut fresh = select();
        fresh.restore(&snapshot).unwrap();
        let out = run(fresh.as_mut(), &[on(6, 1, 12.0), on(6, 2, 23.0)]);
        assert_eq!(values(&out), [23.0]);
    }
}
