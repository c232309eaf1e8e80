//! `sim.heatpump`: a simulated air-to-water heat pump.
//!
//! All times are simulated time of day, UTC (see [`super::sim`]).
//!
//! - Outdoor temperature: `2 + 5 sin(2π (h - 9) / 24)` °C: -3 °C at 03:00, 7 °C at 15:00.
//! - The compressor cycles every `cycle`: on for a duty fraction
//!   `clamp((18 - outdoor) / 20, 0.2, 1)` of it (outdoor taken at the cycle's
//!   start), then off. Below -2 °C it runs continuously.
//! - While on: flow 15 l/min; the supply target is weather-compensated,
//!   `30 + 0.5 (15 - outdoor)` °C, return 5 K below; both ramp linearly from
//!   25 °C over 5 minutes after an off phase. Electrical power is `60 W` (pump)
//!   plus heat / COP, heat = `0.25 kg/s * 4186 J/(kg K) * (supply - return)`,
//!   COP = `3.3 + 0.1 outdoor` (at least 1.5).
//! - Defrost: while on and below 5 °C outdoor, the first 5 minutes of every
//!   `defrost_every` reverse the cycle: supply 3 K below return, 1860 W.
//! - While off: no flow, 10 W standby, water cooling back to 25 °C over 15 minutes.

use super::duration_param;
use super::sim::{Model, SimSource, SimTime, PERIOD, SPEED};
use std::f64::consts::TAU;
use tandem_core::{
    Arity, BuildContext, BuildError, Builder, KindSpec, OutputSpec, ParamDefault, ParamSpec,
    ParamType, Source,
};

/// The `sim.heatpump` kind.
pub static KIND: KindSpec = KindSpec {
    name: "sim.heatpump",
    version: 1,
    doc:
        "simulated air-to-water heat pump: weather-compensated on/off cycles with periodic defrost",
    input_names: &[],
    arity: Arity::NONE,
    outputs: &[
        OutputSpec::named("supply", "C"),
        OutputSpec::named("return", "C"),
        OutputSpec::named("outdoor", "C"),
        OutputSpec::named("flow", "l/min"),
        OutputSpec::named("power", "W"),
        OutputSpec::named("compressor", ""),
        OutputSpec::named("defrost", ""),
    ],
    outputs_from: None,
    params: &[
        PERIOD,
        SPEED,
        ParamSpec {
            name: "cycle",
            ty: ParamType::Duration {
                min_ns: 60_000_000_000,
                max_ns: 86_400_000_000_000,
            },
            default: ParamDefault::Duration(1_800_000_000_000),
            doc: "length of one on/off cycle, simulated time",
        },
        ParamSpec {
            name: "defrost_every",
            ty: ParamType::Duration {
                min_ns: 600_000_000_000,
                max_ns: 86_400_000_000_000,
            },
            default: ParamDefault::Duration(10_800_000_000_000),
            doc: "time between defrosts when cold, simulated time",
        },
    ],
    state_schema: None,
    migrations: &[],
    build: Builder::Source(build),
};

/// Water temperature with the compressor off for long, °C.
const IDLE_C: f64 = 25.0;
/// Time to reach the supply target after an off phase, s.
const RAMP_S: f64 = 300.0;
/// Time for the water to cool back to idle, s.
const COOL_S: f64 = 900.0;
/// Length of a defrost, s.
const DEFROST_S: f64 = 300.0;
/// Flow while the pump runs, l/min.
const FLOW_L_MIN: f64 = 15.0;
/// Circulation pump power, W.
const PUMP_W: f64 = 60.0;
/// Power during a defrost, W.
const DEFROST_W: f64 = 1860.0;
/// Standby power, W.
const STANDBY_W: f64 = 10.0;

fn build(ctx: &BuildContext<'_>) -> Result<Box<dyn Source>, BuildError> {
    let model = HeatPump {
        cycle_s: duration_param(ctx, "cycle")?.max(1) as f64 / 1e9,
        defrost_every_s: duration_param(ctx, "defrost_every")?.max(1) as f64 / 1e9,
    };
    Ok(Box::new(SimSource::<_, 7>::build(ctx, model)?))
}

/// The heat-pump model.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HeatPump {
    /// On/off cycle length, simulated seconds.
    pub cycle_s: f64,
    /// Time between defrosts, simulated seconds.
    pub defrost_every_s: f64,
}

/// Outdoor temperature at `sod` seconds into the day, °C.
pub fn outdoor(sod: f64) -> f64 {
    2.0 + 5.0 * (TAU * (sod / 3600.0 - 9.0) / 24.0).sin()
}

/// Fraction of a cycle the compressor runs at this outdoor temperature.
fn duty(outdoor: f64) -> f64 {
    ((18.0 - outdoor) / 20.0).clamp(0.2, 1.0)
}

impl Model<7> for HeatPump {
    fn read(&self, at: SimTime) -> [f64; 7] {
        let sod = at.sod;
        let start = (sod / self.cycle_s).floor() * self.cycle_s;
        let tau = sod - start;
        let on_for = duty(outdoor(start)) * self.cycle_s;
        // After a cycle with no off phase the water is already hot.
        let continuous = duty(outdoor(start - self.cycle_s)) >= 1.0;
        let ramp = |secs: f64| {
            if continuous {
                1.0
            } else {
                (secs / RAMP_S).min(1.0)
            }
        };
        let out = outdoor(sod);
        let supply_target = 30.0 + 0.5 * (15.0 - out);
        let return_target = supply_target - 5.0;
        let toward = |target: f64, r: f64| IDLE_C + (target - IDLE_C) * r;

        if tau < on_for {
            let r = ramp(tau);
            let ret = toward(return_target, r);
            if out < 5.0 && sod.rem_euclid(self.defrost_every_s) < DEFROST_S {
                return [ret - 3.0, ret, out, FLOW_L_MIN, DEFROST_W, 1.0, 1.0];
            }
            let supply = toward(supply_target, r);
            let heat_w = FLOW_L_MIN / 60.0 * 4186.0 * (supply - ret);
            let cop = (3.3 + 0.1 * out).max(1.5);
            [
                supply,
                ret,
                out,
                FLOW_L_MIN,
                PUMP_W + heat_w / cop,
                1.0,
                0.0,
            ]
        } else {
            let k = ramp(on_for) * (1.0 - (tau - on_for) / COOL_S).max(0.0);
            let supply = toward(supply_target, k);
            let ret = toward(return_target, k);
            [supply, ret, out, 0.0, STANDBY_W, 0.0, 0.0]
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::io::testing::{drive, source, NEW_YEAR_2026};

    fn reading_at(hh: i64, mm: i64) -> [f64; 7] {
        let (mut src, _) = source("hp", &KIND, &[]).unwrap();
        let mut out = Vec::new();
        let now = NEW_YEAR_2026.add_nanos((hh * 3600 + mm * 60) * 1_000_000_000);
        src.poll(now, &mut out);
        let mut values = [0.0; 7];
        for (v, r) in values.iter_mut().zip(&out) {
            *v = r.value;
        }
        values
    }

    fn close(got: [f64; 7], want: [f64; 7]) {
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-3, "{got:?} != {want:?}");
        }
    }

    #[test]
    fn outdoor_swings_between_night_and_afternoon() {
        assert!((outdoor(3.0 * 3600.0) + 3.0).abs() < 1e-12);
        assert!((outdoor(9.0 * 3600.0) - 2.0).abs() < 1e-12);
        assert!((outdoor(15.0 * 3600.0) - 7.0).abs() < 1e-12);
    }

    #[test]
    fn runs_continuously_in_the_cold_night_with_a_defrost_every_three_hours() {
        // 03:20, -2.980973 °C: supply 30 + 0.5 * 17.980973, return 5 K below,
        // 60 W + 5232.5 W / (3.3 - 0.2980973).
        close(
            reading_at(3, 20),
            [38.990487, 33.990487, -2.980973, 15.0, 1803.061188, 1.0, 0.0],
        );
        // 03:02 is in the defrost that starts at 03:00: supply 3 K below return.
        close(
            reading_at(3, 2),
            [30.999905, 33.999905, -2.99981, 15.0, 1860.0, 1.0, 1.0],
        );
    }

    #[test]
    fn cycles_on_and_off_on_a_mild_afternoon() {
        // 15:00 starts a cycle at 7 °C: on for 0.55 * 30 min = 16.5 min.
        // 15:02: 2 of 5 ramp minutes, 40 % of the way from 25 °C; ΔT 2 K.
        close(
            reading_at(15, 2),
            [
                28.600038,
                26.600038,
                6.99981,
                15.0,
                60.0 + 2093.0 / 3.999981,
                1.0,
                0.0,
            ],
        );
        // 15:10: at target; no defrost above 5 °C.
        close(
            reading_at(15, 10),
            [
                34.002379,
                29.002379,
                6.995241,
                15.0,
                60.0 + 5232.5 / 3.999524,
                1.0,
                0.0,
            ],
        );
        // 15:20: off for 3.5 min, 7/30 of the way back to 25 °C.
        close(
            reading_at(15, 20),
            [31.907293, 28.07396, 6.980973, 0.0, 10.0, 0.0, 0.0],
        );
    }

    #[test]
    fn a_compressed_day_cycles_and_defrosts() {
        let (mut src, table) = source(
            "hp",
            &KIND,
            &[
                ("speed", tandem_core::ParamValue::Float(8640.0)),
                ("period", tandem_core::ParamValue::Duration(10_000_000)),
            ],
        )
        .unwrap();
        let out = drive(
            src.as_mut(),
            tandem_core::EventTime(0),
            tandem_core::EventTime(10_000_000_000),
            2000,
        );
        let of = |name: &str| -> Vec<f64> {
            let c = table.get(name).unwrap();
            out.iter()
                .filter(|r| r.channel == c)
                .map(|r| r.value)
                .collect()
        };
        let compressor = of("hp.compressor");
        let starts = compressor.windows(2).filter(|w| w == &[0.0, 1.0]).count();
        let defrosts = of("hp.defrost")
            .windows(2)
            .filter(|w| w == &[0.0, 1.0])
            .count();
        assert_eq!(compressor.len(), 1001);
        assert!(starts >= 10, "{starts} compressor starts");
        assert!(defrosts >= 2, "{defrosts} defrosts");
    }
}
