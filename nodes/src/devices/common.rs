//! What the device sources share: polling on whole periods, the fault
//! injection window of simulated chips, and turning a failed read into a
//! flagged record.

use super::bus::{Bus, Wire};
use crate::io::{duration_param, int_param, text_param};
use tandem_core::{
    BuildContext, BuildError, ChannelId, EventTime, ParamDefault, ParamSpec, ParamType, Quality,
    Record, Seq,
};

/// An `address` parameter for an I2C chip, with the chip's usual address.
pub const fn address(name: &'static str, default: i64, doc: &'static str) -> ParamSpec {
    ParamSpec {
        name,
        ty: ParamType::Int {
            min: 0x08,
            max: 0x77,
        },
        default: ParamDefault::Int(default),
        doc,
    }
}

/// `inject_every`: how often the injected fault comes back.
pub const INJECT_EVERY: ParamSpec = ParamSpec {
    name: "inject_every",
    ty: ParamType::Duration {
        min_ns: 1_000_000,
        max_ns: 86_400_000_000_000,
    },
    default: ParamDefault::Duration(60_000_000_000),
    doc: "bus = \"sim\" only: the injected fault is active at the start of every such span of ingress time",
};

/// `inject_for`: how long the injected fault lasts each time.
pub const INJECT_FOR: ParamSpec = ParamSpec {
    name: "inject_for",
    ty: ParamType::Duration {
        min_ns: 0,
        max_ns: 86_400_000_000_000,
    },
    default: ParamDefault::Duration(1_000_000_000),
    doc: "bus = \"sim\" only: how long the injected fault lasts each time (ingress time)",
};

/// When a source is polled next: on whole multiples of its `period`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Schedule {
    period_ns: i64,
}

impl Schedule {
    /// From the `period` parameter.
    pub fn of(ctx: &BuildContext<'_>) -> Result<Schedule, BuildError> {
        Ok(Schedule {
            period_ns: duration_param(ctx, "period")?.max(1),
        })
    }

    /// The first whole period after `now`.
    pub fn next(self, now: EventTime) -> EventTime {
        EventTime(
            now.0
                .div_euclid(self.period_ns)
                .saturating_add(1)
                .saturating_mul(self.period_ns),
        )
    }
}

/// A fault injected into a simulated chip during a window that repeats in
/// ingress time: active while `now mod every < for`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Injection<F> {
    /// The fault, `None` for `inject = "none"`.
    pub fault: Option<F>,
    every_ns: i64,
    for_ns: i64,
}

impl<F: Copy> Injection<F> {
    /// From the `inject`, `inject_every` and `inject_for` parameters;
    /// `parse` maps every `inject` choice but `"none"` to a fault.
    pub fn of(
        ctx: &BuildContext<'_>,
        parse: impl Fn(&str) -> Option<F>,
    ) -> Result<Injection<F>, BuildError> {
        let name = text_param(ctx, "inject")?;
        let fault = match name {
            "none" => None,
            other => Some(parse(other).ok_or_else(|| {
                BuildError::new(format!("`{}`: unknown fault `{other}` to inject", ctx.id))
            })?),
        };
        Ok(Injection {
            fault,
            every_ns: duration_param(ctx, "inject_every")?.max(1),
            for_ns: duration_param(ctx, "inject_for")?,
        })
    }

    /// The fault active at `now`, if any.
    pub fn at(&self, now: EventTime) -> Option<F> {
        self.fault
            .filter(|_| now.0.rem_euclid(self.every_ns) < self.for_ns)
    }

    /// Refuses fault injection on a real bus.
    fn only_on_sim(&self, ctx: &BuildContext<'_>) -> Result<(), BuildError> {
        match self.fault {
            None => Ok(()),
            Some(_) => Err(BuildError::new(format!(
                "`{}`: faults can only be injected into a simulated chip: set inject = \"none\" or bus = \"sim\"",
                ctx.id
            ))
            .at("inject")),
        }
    }
}

/// The `bus` of a chip on `wire`, and its fault injection (see
/// [`Injection::of`]), which only a simulated chip takes: what every device
/// source checks before it opens a bus, and what its kind's check is made of.
pub fn bus_and_injection<F: Copy>(
    ctx: &BuildContext<'_>,
    wire: Wire,
    parse: impl Fn(&str) -> Option<F>,
) -> Result<(Bus, Injection<F>), BuildError> {
    let bus = Bus::of(ctx, wire)?;
    let inject = Injection::of(ctx, parse)?;
    if bus != Bus::Sim {
        inject.only_on_sim(ctx)?;
    }
    Ok((bus, inject))
}

/// An I2C address parameter as a 7-bit address.
pub fn address_param(ctx: &BuildContext<'_>, name: &str) -> Result<u8, BuildError> {
    let value = int_param(ctx, name)?;
    u8::try_from(value)
        .ok()
        .filter(|a| (0x08..=0x77).contains(a))
        .ok_or_else(|| {
            BuildError::new(format!(
                "`{}`: {name} {value} is not a 7-bit I2C address (0x08 to 0x77)",
                ctx.id
            ))
        })
}

/// A read that failed: how its record is flagged.
pub type Reading = Result<f64, Quality>;

/// Appends the record of one quantity: its value, or NaN flagged with why
/// it could not be read.
pub fn push(out: &mut Vec<Record>, now: EventTime, channel: ChannelId, reading: Reading) {
    out.push(match reading {
        Ok(value) => Record::new(Seq::ZERO, now, channel, value),
        Err(quality) => Record {
            seq: Seq::ZERO,
            time: now,
            channel,
            quality,
            value: f64::NAN,
        },
    });
}

/// Counts errors and remembers whether the bus has failed in this poll, so
/// that a dead chip is not asked again for every quantity.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Errors so far.
    pub errors: u64,
    /// The bus failed in the current poll.
    pub bus_down: bool,
}

impl Tally {
    /// Starts a poll.
    pub fn begin(&mut self) {
        self.bus_down = false;
    }

    /// Reads one quantity unless the bus already failed in this poll.
    ///
    /// `read` returns the value, or the quality flag of the failure and
    /// whether it was a bus error. Each failure counts one error; after a bus
    /// error the rest of the poll's quantities are flagged
    /// [`Quality::COMM_ERROR`] without being read.
    pub fn read(&mut self, read: impl FnOnce() -> Result<f64, (Quality, bool)>) -> Reading {
        if self.bus_down {
            return Err(Quality::COMM_ERROR);
        }
        read().map_err(|(quality, bus)| {
            self.errors = self.errors.saturating_add(1);
            self.bus_down |= bus;
            quality
        })
    }

    /// Counts one error that is not a failed read (a device alarm).
    pub fn count(&mut self) {
        self.errors = self.errors.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bus_error_ends_the_poll_and_counts_once() {
        let mut t = Tally::default();
        t.begin();
        assert_eq!(t.read(|| Ok(1.5)), Ok(1.5));
        assert_eq!(
            t.read(|| Err((Quality::OUT_OF_RANGE, false))),
            Err(Quality::OUT_OF_RANGE)
        );
        assert_eq!(t.read(|| Ok(2.0)), Ok(2.0));
        assert_eq!(
            t.read(|| Err((Quality::COMM_ERROR, true))),
            Err(Quality::COMM_ERROR)
        );
        assert_eq!(t.read(|| Ok(3.0)), Err(Quality::COMM_ERROR));
        assert_eq!(t.errors, 2);
        t.begin();
        assert_eq!(t.read(|| Ok(3.0)), Ok(3.0));
    }

    #[test]
    fn polls_fall_on_whole_periods() {
        let s = Schedule { period_ns: 1_000 };
        assert_eq!(s.next(EventTime(0)), EventTime(1_000));
        assert_eq!(s.next(EventTime(1_234)), EventTime(2_000));
        assert_eq!(s.next(EventTime(-1)), EventTime(0));
    }
}
