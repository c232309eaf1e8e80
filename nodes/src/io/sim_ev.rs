//! `sim.ev`: a simulated EV charger (IEC 61851 control pilot) and its car.
//!
//! Every simulated day (UTC, compressed by `speed`, see [`super::sim`]):
//! the car arrives at 18:00 (pilot B), starts charging at 18:02 (pilot C) on
//! three phases of 230 V at `current` amperes (16 A: 11.04 kW) until it has
//! taken the day's energy, 10, 20 or 30 kWh in turn (simulated day number
//! mod 3), then waits connected (B) and leaves at 07:30 the next morning (A).
//!
//! Pilot states are numbers: 0 = A (no car), 1 = B (connected), 2 = C
//! (charging), 3 = D (charging with ventilation), 4 = E (no power), 5 = F (fault).

use super::float_param;
use super::sim::{Model, SimSource, SimTime, PERIOD, SPEED};
use tandem_core::{
    Arity, BuildContext, BuildError, Builder, KindSpec, OutputSpec, ParamDefault, ParamSpec,
    ParamType, Source,
};

/// The `sim.ev` kind.
pub static KIND: KindSpec = KindSpec {
    name: "sim.ev",
    version: 1,
    doc: "simulated EV charger: a car arrives in the evening, charges at ~11 kW and leaves in the morning",
    input_names: &[],
    arity: Arity::NONE,
    outputs: &[
        OutputSpec::named("pilot", ""),
        OutputSpec::named("current", "A"),
        OutputSpec::named("power", "W"),
    ],
    outputs_from: None,
    params: &[
        PERIOD,
        SPEED,
        ParamSpec {
            name: "current",
            ty: ParamType::Float {
                min: 6.0,
                max: 32.0,
            },
            default: ParamDefault::Float(16.0),
            doc: "charging current per phase, A (three phases at 230 V)",
        },
    ],
    state_schema: None,
    migrations: &[],
    build: Builder::Source(build),
};

/// Pilot state A: no car.
pub const PILOT_A: f64 = 0.0;
/// Pilot state B: car connected, not charging.
pub const PILOT_B: f64 = 1.0;
/// Pilot state C: charging.
pub const PILOT_C: f64 = 2.0;

/// Arrival, seconds into the day (18:00).
const ARRIVE_S: f64 = 18.0 * 3600.0;
/// Charging starts this long after arrival, s.
const HANDSHAKE_S: f64 = 120.0;
/// Departure, seconds into the next day (07:30).
const LEAVE_S: f64 = 7.5 * 3600.0;
/// Phase voltage, V.
const VOLTS: f64 = 230.0;

fn build(ctx: &BuildContext<'_>) -> Result<Box<dyn Source>, BuildError> {
    let current = float_param(ctx, "current")?;
    if !(current.is_finite() && current > 0.0) {
        return Err(BuildError::new(format!(
            "`{}`: current {current} is not a positive number of amperes",
            ctx.id
        )));
    }
    Ok(Box::new(SimSource::<_, 3>::build(ctx, Ev { current })?))
}

/// The charger model.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Ev {
    /// Charging current per phase, A.
    pub current: f64,
}

impl Ev {
    /// Charging power, W.
    pub fn power_w(&self) -> f64 {
        3.0 * VOLTS * self.current
    }

    /// Energy the car takes in the session that starts on simulated `day`, kWh.
    pub fn session_kwh(day: i64) -> f64 {
        10.0 + 10.0 * day.rem_euclid(3) as f64
    }
}

impl Model<3> for Ev {
    fn read(&self, at: SimTime) -> [f64; 3] {
        let (day, since_arrival) = if at.sod >= ARRIVE_S {
            (at.day, at.sod - ARRIVE_S)
        } else if at.sod < LEAVE_S {
            (at.day - 1, at.sod + 86_400.0 - ARRIVE_S)
        } else {
            return [PILOT_A, 0.0, 0.0];
        };
        let charge_s = Ev::session_kwh(day) * 3.6e6 / self.power_w();
        if since_arrival >= HANDSHAKE_S && since_arrival < HANDSHAKE_S + charge_s {
            [PILOT_C, self.current, self.power_w()]
        } else {
            [PILOT_B, 0.0, 0.0]
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::io::testing::{drive, source, NEW_YEAR_2026};
    use tandem_core::{EventTime, ParamValue};

    /// Reading at `day` days and `hh:mm` after 2026-01-01T00:00Z (day 20454, 10 kWh).
    fn reading_at(day: i64, hh: i64, mm: i64) -> [f64; 3] {
        let (mut src, _) = source("ev", &KIND, &[]).unwrap();
        let mut out = Vec::new();
        let now = NEW_YEAR_2026.add_nanos((day * 86_400 + hh * 3600 + mm * 60) * 1_000_000_000);
        src.poll(now, &mut out);
        [out[0].value, out[1].value, out[2].value]
    }

    #[test]
    fn a_session_arrives_charges_finishes_and_leaves() {
        assert_eq!(reading_at(0, 12, 0), [PILOT_A, 0.0, 0.0]);
        assert_eq!(reading_at(0, 18, 1), [PILOT_B, 0.0, 0.0]);
        assert_eq!(reading_at(0, 18, 30), [PILOT_C, 16.0, 11_040.0]);
        // 10 kWh at 11.04 kW takes 54.3 min: done by 18:57.
        assert_eq!(reading_at(0, 18, 56), [PILOT_C, 16.0, 11_040.0]);
        assert_eq!(reading_at(0, 18, 57), [PILOT_B, 0.0, 0.0]);
        // Still connected overnight, gone at 07:30.
        assert_eq!(reading_at(1, 7, 29), [PILOT_B, 0.0, 0.0]);
        assert_eq!(reading_at(1, 7, 30), [PILOT_A, 0.0, 0.0]);
        // The next day takes 20 kWh: 108.7 min, until 19:50:42.
        assert_eq!(reading_at(1, 19, 50), [PILOT_C, 16.0, 11_040.0]);
        assert_eq!(reading_at(1, 19, 51), [PILOT_B, 0.0, 0.0]);
    }

    #[test]
    fn a_compressed_day_shows_a_whole_session_in_ten_seconds() {
        let (mut src, table) = source(
            "ev",
            &KIND,
            &[
                ("speed", ParamValue::Float(8640.0)),
                ("period", ParamValue::Duration(10_000_000)),
            ],
        )
        .unwrap();
        let start = EventTime(0);
        let out = drive(src.as_mut(), start, EventTime(10_000_000_000 - 1), 2000);
        let pilot = table.get("ev.pilot").unwrap();
        let mut states: Vec<f64> = out
            .iter()
            .filter(|r| r.channel == pilot)
            .map(|r| r.value)
            .collect();
        assert_eq!(states.len(), 1000);
        states.dedup();
        assert_eq!(states, [PILOT_B, PILOT_A, PILOT_B, PILOT_C, PILOT_B]);
    }
}
