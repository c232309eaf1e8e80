//! What the simulated devices (`sim.battery`, `sim.heatpump`, `sim.ev`) share:
//! a simulated clock and polling on a fixed period.
//!
//! A simulated device is a pure function of the time of day: its reading at
//! ingress time `now` depends on nothing else, so the same polls give the same
//! records, whatever came before. The `speed` parameter compresses the day: at
//! `speed = 8640` a simulated day lasts 10 s of ingress time. Time of day is
//! taken in UTC. Polls fall on whole multiples of `period` after the first.

use super::{duration_param, float_param};
use tandem_core::{
    BuildContext, BuildError, ChannelId, EventTime, ParamDefault, ParamSpec, ParamType, Record,
    Seq, Source,
};

/// Nanoseconds in a day.
pub const DAY_NS: i64 = 86_400 * 1_000_000_000;

/// The `period` parameter every simulated device has.
pub const PERIOD: ParamSpec = ParamSpec {
    name: "period",
    ty: ParamType::Duration {
        min_ns: 1_000_000,
        max_ns: 3_600_000_000_000,
    },
    default: ParamDefault::Duration(1_000_000_000),
    doc: "time between readings (ingress time)",
};

/// The `speed` parameter every simulated device has.
pub const SPEED: ParamSpec = ParamSpec {
    name: "speed",
    ty: ParamType::Float { min: 1.0, max: 1e7 },
    default: ParamDefault::Float(1.0),
    doc: "simulated seconds per ingress second: 8640 runs a day in 10 s",
};

/// The simulated day and time of day at an ingress time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SimTime {
    /// Simulated days since the epoch.
    pub day: i64,
    /// Simulated seconds since midnight UTC, in `[0, 86400)`.
    pub sod: f64,
}

impl SimTime {
    /// Hours since midnight, in `[0, 24)`.
    pub fn hour(self) -> f64 {
        self.sod / 3600.0
    }
}

/// Maps ingress time to simulated time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SimClock {
    /// Ingress nanoseconds per simulated day.
    day_ns: i64,
}

impl SimClock {
    /// A clock running `speed` times faster than ingress time.
    pub fn new(speed: f64) -> SimClock {
        let day_ns = (DAY_NS as f64 / speed).round();
        let day_ns = if day_ns.is_finite() && day_ns >= 1.0 && day_ns <= DAY_NS as f64 {
            day_ns as i64
        } else {
            DAY_NS
        };
        SimClock { day_ns }
    }

    /// The simulated time at ingress time `now`.
    pub fn at(self, now: EventTime) -> SimTime {
        let day = now.0.div_euclid(self.day_ns);
        let into = now.0.rem_euclid(self.day_ns);
        // Integer scaling so that at speed 1 the time of day is exact.
        let sod_ns = i128::from(into) * i128::from(DAY_NS) / i128::from(self.day_ns);
        SimTime {
            day,
            sod: sod_ns as f64 / 1e9,
        }
    }
}

/// A device model: its readings at a simulated time.
pub trait Model<const N: usize>: Send {
    /// The `N` outputs, in the order of the kind's outputs.
    fn read(&self, at: SimTime) -> [f64; N];
}

/// A source polling a [`Model`] every `period`.
#[derive(Debug)]
pub struct SimSource<M, const N: usize> {
    model: M,
    channels: [ChannelId; N],
    clock: SimClock,
    period_ns: i64,
}

impl<M: Model<N>, const N: usize> SimSource<M, N> {
    /// A source from the `period` and `speed` parameters and the kind's outputs.
    pub fn build(ctx: &BuildContext<'_>, model: M) -> Result<SimSource<M, N>, BuildError> {
        Ok(SimSource {
            model,
            channels: super::outputs::<N>(ctx)?,
            clock: SimClock::new(float_param(ctx, "speed")?),
            period_ns: duration_param(ctx, "period")?.max(1),
        })
    }

    /// The model.
    pub fn model(&self) -> &M {
        &self.model
    }
}

impl<M: Model<N>, const N: usize> Source for SimSource<M, N> {
    fn poll(&mut self, now: EventTime, out: &mut Vec<Record>) -> Option<EventTime> {
        let values = self.model.read(self.clock.at(now));
        for (channel, value) in self.channels.iter().zip(values) {
            out.push(Record::new(Seq::ZERO, now, *channel, value));
        }
        let next = now
            .0
            .div_euclid(self.period_ns)
            .saturating_add(1)
            .saturating_mul(self.period_ns);
        Some(EventTime(next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_is_exact_at_speed_one_and_compresses_days() {
        let c = SimClock::new(1.0);
        let t = c.at(EventTime::from_secs(1_767_225_600 + 19 * 3600 + 7));
        assert_eq!(
            t,
            SimTime {
                day: 20_454,
                sod: 68_407.0
            }
        );
        let fast = SimClock::new(8640.0);
        // A simulated day is 10 s: 2.5 s in is 06:00.
        let t = fast.at(EventTime::from_millis(2_500));
        assert_eq!(
            t,
            SimTime {
                day: 0,
                sod: 21_600.0
            }
        );
        assert_eq!(fast.at(EventTime::from_millis(12_500)).day, 1);
    }
}
