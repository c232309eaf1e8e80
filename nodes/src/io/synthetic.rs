//! `synthetic`: a generator for benches and demos.
//!
//! Record `k` of every channel has event time `t0 + round(k * 1e9 / rate)` ns,
//! where `t0` is the ingress time of the first poll, and a value that is a
//! pure function of `k` and the channel's position, so a run is reproducible.
//! Records are emitted `batch` per channel at a time, once the last record of
//! the batch is due, so no record is ever stamped after the poll that emits it.

use super::{duration_param, float_param, int_param, names_param, text_param};
use tandem_core::{
    Arity, BuildContext, BuildError, Builder, ChannelId, EventTime, KindSpec, ParamDefault,
    ParamSpec, ParamType, Record, Seq, Source,
};

/// Shapes of the generated signal.
pub const SHAPES: &[&str] = &["sine", "ramp", "constant", "counter"];

/// The `synthetic` kind.
pub static KIND: KindSpec = KindSpec {
    name: "synthetic",
    version: 1,
    doc: "generates reproducible signals (sine, ramp, constant, counter) at a fixed rate",
    input_names: &[],
    arity: Arity::NONE,
    outputs: &[],
    outputs_from: Some("channels"),
    params: &[
        ParamSpec {
            name: "channels",
            ty: ParamType::Names,
            default: ParamDefault::Names(&["value"]),
            doc: "output channels, each `<id>.<name>`",
        },
        ParamSpec {
            name: "rate",
            ty: ParamType::Float {
                min: 1e-6,
                max: 1e9,
            },
            default: ParamDefault::Float(1.0),
            doc: "records per second per channel",
        },
        ParamSpec {
            name: "shape",
            ty: ParamType::Choice(SHAPES),
            default: ParamDefault::Text("sine"),
            doc: "sine: amplitude*sin(2*pi*phase); ramp: amplitude*phase (sawtooth); constant: amplitude; counter: the record index k",
        },
        ParamSpec {
            name: "amplitude",
            ty: ParamType::ANY_FLOAT,
            default: ParamDefault::Float(1.0),
            doc: "amplitude of the shape, in the channel's unit (unused by counter)",
        },
        ParamSpec {
            name: "period",
            ty: ParamType::Duration {
                min_ns: 1,
                max_ns: i64::MAX,
            },
            default: ParamDefault::Duration(60_000_000_000),
            doc: "period of sine and ramp; channel i of n is shifted by i/n of a period",
        },
        ParamSpec {
            name: "batch",
            ty: ParamType::Int {
                min: 0,
                max: 1_000_000,
            },
            default: ParamDefault::Int(0),
            doc: "records per channel per poll; 0 = as many as 1 ms of data, at least 1",
        },
    ],
    state_schema: None,
    migrations: &[],
    build: Builder::Source(build),
};

/// The signal shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// `amplitude * sin(2 pi phase)`.
    Sine,
    /// `amplitude * phase`, phase in `[0, 1)`.
    Ramp,
    /// `amplitude`.
    Constant,
    /// The record index.
    Counter,
}

/// The generator.
#[derive(Debug)]
pub struct Synthetic {
    channels: Vec<ChannelId>,
    /// Nanoseconds between records, as a float so any rate works.
    interval_ns: f64,
    shape: Shape,
    amplitude: f64,
    period_ns: i64,
    batch: u64,
    /// Ingress time of the first poll.
    start: Option<EventTime>,
    /// Index of the next record to emit.
    next: u64,
}

/// Most records one poll of a `synthetic` source may emit.
const MAX_PER_POLL: u64 = 1 << 20;

/// The load-time check of the kind: building a generator touches nothing,
/// so it is built and dropped.
pub(crate) fn check(ctx: &BuildContext<'_>) -> Result<(), BuildError> {
    build(ctx).map(drop)
}

fn build(ctx: &BuildContext<'_>) -> Result<Box<dyn Source>, BuildError> {
    let names = names_param(ctx, "channels")?;
    if names.is_empty() {
        return Err(BuildError::new(format!(
            "`{}`: `channels` is empty; name at least one, such as [\"value\"]",
            ctx.id
        ))
        .at("channels"));
    }
    let rate = float_param(ctx, "rate")?;
    if !(rate.is_finite() && rate > 0.0) {
        return Err(BuildError::new(format!(
            "`{}`: rate {rate} is not a positive number of records per second",
            ctx.id
        )));
    }
    let shape = match text_param(ctx, "shape")? {
        "sine" => Shape::Sine,
        "ramp" => Shape::Ramp,
        "constant" => Shape::Constant,
        "counter" => Shape::Counter,
        other => {
            return Err(BuildError::new(format!(
                "`{}`: shape `{other}` is not one of sine, ramp, constant, counter",
                ctx.id
            )))
        }
    };
    let period_ns = duration_param(ctx, "period")?.max(1);
    let (batch, blame) = match int_param(ctx, "batch")? {
        n if n > 0 => (n.unsigned_abs(), "batch"),
        _ => (((rate * 1e-3).floor() as u64).max(1), "rate"),
    };
    // One poll emits `batch` records per channel; keep a poll to a size a
    // gateway can hold (a million records, 32 MB).
    let per_poll = batch.saturating_mul(names.len() as u64);
    if per_poll > MAX_PER_POLL {
        return Err(BuildError::new(format!(
            "`{}`: {} channels x batch {batch} is {per_poll} records per poll; at most {MAX_PER_POLL}: \
             lower `batch` (or `rate`, which sets it when `batch` is 0)",
            ctx.id,
            names.len()
        ))
        .at(blame));
    }
    if ctx.outputs.len() != names.len() {
        return Err(BuildError::new(format!(
            "`{}`: expected one output channel per entry of `channels` ({}), the plan gave {}",
            ctx.id,
            names.len(),
            ctx.outputs.len()
        )));
    }
    Ok(Box::new(Synthetic {
        channels: ctx.outputs.to_vec(),
        interval_ns: 1e9 / rate,
        shape,
        amplitude: float_param(ctx, "amplitude")?,
        period_ns,
        batch,
        start: None,
        next: 0,
    }))
}

impl Synthetic {
    /// Nanoseconds from the first record to record `k`.
    fn offset_ns(&self, k: u64) -> i64 {
        let ns = (k as f64 * self.interval_ns).round();
        if ns >= i64::MAX as f64 {
            i64::MAX
        } else {
            ns as i64
        }
    }

    /// The value of record `k` on channel `i` of `n`.
    fn value(&self, k: u64, offset_ns: i64, i: usize, n: usize) -> f64 {
        let phase = || {
            // Integer remainder first so the phase keeps its precision for any k.
            let base = offset_ns.rem_euclid(self.period_ns) as f64 / self.period_ns as f64;
            let shifted = base + i as f64 / n as f64;
            shifted - shifted.floor()
        };
        match self.shape {
            Shape::Sine => self.amplitude * (std::f64::consts::TAU * phase()).sin(),
            Shape::Ramp => self.amplitude * phase(),
            Shape::Constant => self.amplitude,
            Shape::Counter => k as f64,
        }
    }
}

impl Source for Synthetic {
    fn poll(&mut self, now: EventTime, out: &mut Vec<Record>) -> Option<EventTime> {
        let start = *self.start.get_or_insert(now);
        let last = self.next.saturating_add(self.batch - 1);
        let due = start.add_nanos(self.offset_ns(last));
        if due > now {
            return Some(due);
        }
        let n = self.channels.len();
        out.reserve(n.saturating_mul(self.batch as usize));
        for k in self.next..=last {
            let offset = self.offset_ns(k);
            let time = start.add_nanos(offset);
            for (i, channel) in self.channels.iter().enumerate() {
                let value = self.value(k, offset, i, n);
                out.push(Record::new(Seq::ZERO, time, *channel, value));
            }
        }
        self.next = last.saturating_add(1);
        let next_last = self.next.saturating_add(self.batch - 1);
        Some(start.add_nanos(self.offset_ns(next_last)))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::io::testing::{drive, names, source, text, NEW_YEAR_2026};
    use tandem_core::ParamValue;

    fn values(records: &[Record]) -> Vec<f64> {
        records.iter().map(|r| r.value).collect()
    }

    #[test]
    fn counter_at_4_hz_is_spaced_250_ms_from_the_first_poll() {
        let (mut src, table) = source(
            "gen",
            &KIND,
            &[("rate", ParamValue::Float(4.0)), ("shape", text("counter"))],
        )
        .unwrap();
        let out = drive(
            src.as_mut(),
            NEW_YEAR_2026,
            NEW_YEAR_2026.add_nanos(1_000_000_000),
            100,
        );
        assert_eq!(values(&out), [0.0, 1.0, 2.0, 3.0, 4.0]);
        let times: Vec<i64> = out.iter().map(|r| r.time.0 - NEW_YEAR_2026.0).collect();
        assert_eq!(
            times,
            [0, 250_000_000, 500_000_000, 750_000_000, 1_000_000_000]
        );
        assert!(out
            .iter()
            .all(|r| r.seq == Seq::ZERO && r.quality.is_good()));
        assert_eq!(table.name(out[0].channel), "gen.value");
    }

    #[test]
    fn ramp_and_sine_follow_the_period_and_shift_each_channel() {
        let (mut src, table) = source(
            "gen",
            &KIND,
            &[
                ("rate", ParamValue::Float(4.0)),
                ("shape", text("ramp")),
                ("amplitude", ParamValue::Float(8.0)),
                ("period", ParamValue::Duration(1_000_000_000)),
                ("channels", names(&["a", "b"])),
            ],
        )
        .unwrap();
        let out = drive(src.as_mut(), EventTime(0), EventTime(1_250_000_000), 100);
        let a = table.get("gen.a").unwrap();
        let b = table.get("gen.b").unwrap();
        let of = |c| {
            values(
                &out.iter()
                    .filter(|r| r.channel == c)
                    .copied()
                    .collect::<Vec<_>>(),
            )
        };
        assert_eq!(of(a), [0.0, 2.0, 4.0, 6.0, 0.0, 2.0]);
        assert_eq!(of(b), [4.0, 6.0, 0.0, 2.0, 4.0, 6.0]);

        let (mut src, _) = source(
            "gen",
            &KIND,
            &[
                ("rate", ParamValue::Float(4.0)),
                ("amplitude", ParamValue::Float(2.0)),
                ("period", ParamValue::Duration(1_000_000_000)),
            ],
        )
        .unwrap();
        let out = drive(src.as_mut(), EventTime(0), EventTime(750_000_000), 100);
        let expect = [0.0, 2.0, 0.0, -2.0];
        for (got, want) in values(&out).iter().zip(expect) {
            assert!((got - want).abs() < 1e-12, "{got} != {want}");
        }
    }

    #[test]
    fn batches_hold_a_millisecond_and_are_emitted_once_due() {
        let (mut src, _) = source(
            "gen",
            &KIND,
            &[
                ("rate", ParamValue::Float(100_000.0)),
                ("shape", text("constant")),
                ("amplitude", ParamValue::Float(3.5)),
            ],
        )
        .unwrap();
        let mut out = Vec::new();
        // 100 records per poll, 10 us apart: the first batch ends 990 us in.
        let next = src.poll(EventTime(0), &mut out);
        assert_eq!((out.len(), next), (0, Some(EventTime(990_000))));
        let next = src.poll(EventTime(990_000), &mut out);
        assert_eq!((out.len(), next), (100, Some(EventTime(1_990_000))));
        assert!(out.iter().all(|r| r.value == 3.5 && r.time.0 <= 990_000));
        assert_eq!(out.last().unwrap().time, EventTime(990_000));
    }

    #[test]
    fn same_polls_give_the_same_records() {
        let run = || {
            let (mut src, _) = source(
                "gen",
                &KIND,
                &[
                    ("rate", ParamValue::Float(1000.0)),
                    ("batch", ParamValue::Int(7)),
                    ("channels", names(&["x", "y", "z"])),
                ],
            )
            .unwrap();
            drive(src.as_mut(), NEW_YEAR_2026, EventTime(i64::MAX), 500)
        };
        let (a, b) = (run(), run());
        // The first poll only learns the start: 499 batches of 7 records on 3 channels.
        assert_eq!(a.len(), 499 * 7 * 3);
        assert!(a.iter().zip(&b).all(|(x, y)| x.bit_eq(y)));
    }
}
