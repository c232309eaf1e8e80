//! `sim.battery`: a simulated home battery (a 16-cell LFP pack).
//!
//! A fixed daily cycle, in C-rates (current / capacity), UTC:
//!
//! | hours | current | state of charge |
//! |---|---|---|
//! | 00-07 | -0.025 C (night base load) | 27.5 % -> 10 % |
//! | 07-11 | 0 | 10 % |
//! | 11-16 | +0.16 C (solar surplus) | 10 % -> 90 % |
//! | 16-17 | 0 | 90 % |
//! | 17-22 | -0.12 C (evening load) | 90 % -> 30 % |
//! | 22-23 | 0 | 30 % |
//! | 23-24 | -0.025 C | 30 % -> 27.5 % |
//!
//! Current is positive when charging. Voltage is the open-circuit voltage
//! `48 V + 0.05 V/% * soc` plus `current * R`, with `R = 1 Ω·Ah / capacity`
//! (10 mΩ at 100 Ah). Temperature is `20 °C + 10 K * |C-rate|`.

use super::float_param;
use super::sim::{Model, SimSource, SimTime, PERIOD, SPEED};
use tandem_core::{
    Arity, BuildContext, BuildError, Builder, KindSpec, OutputSpec, ParamDefault, ParamSpec,
    ParamType, Source,
};

/// The `sim.battery` kind.
pub static KIND: KindSpec = KindSpec {
    name: "sim.battery",
    version: 1,
    doc: "simulated home battery: charges in the midday sun, discharges in the evening",
    input_names: &[],
    arity: Arity::NONE,
    outputs: &[
        OutputSpec::named("voltage", "V"),
        OutputSpec::named("current", "A"),
        OutputSpec::named("soc", "%"),
        OutputSpec::named("temperature", "C"),
    ],
    outputs_from: None,
    params: &[
        PERIOD,
        SPEED,
        ParamSpec {
            name: "capacity_ah",
            ty: ParamType::Float {
                min: 1.0,
                max: 10_000.0,
            },
            default: ParamDefault::Float(100.0),
            doc: "capacity in ampere-hours",
        },
    ],
    state_schema: None,
    migrations: &[],
    build: Builder::Source(build),
};

/// Hour segments of the day: (start, end, C-rate).
const PROFILE: [(f64, f64, f64); 7] = [
    (0.0, 7.0, -0.025),
    (7.0, 11.0, 0.0),
    (11.0, 16.0, 0.16),
    (16.0, 17.0, 0.0),
    (17.0, 22.0, -0.12),
    (22.0, 23.0, 0.0),
    (23.0, 24.0, -0.025),
];

/// State of charge at midnight, %.
const SOC_AT_MIDNIGHT: f64 = 27.5;

fn build(ctx: &BuildContext<'_>) -> Result<Box<dyn Source>, BuildError> {
    let capacity_ah = float_param(ctx, "capacity_ah")?;
    if !(capacity_ah.is_finite() && capacity_ah > 0.0) {
        return Err(BuildError::new(format!(
            "`{}`: capacity_ah {capacity_ah} is not a positive number of ampere-hours",
            ctx.id
        )));
    }
    Ok(Box::new(SimSource::<_, 4>::build(
        ctx,
        Battery { capacity_ah },
    )?))
}

/// The battery model.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Battery {
    /// Capacity, ampere-hours.
    pub capacity_ah: f64,
}

impl Battery {
    /// C-rate and state of charge (%) at `hour` of the day.
    fn c_rate_and_soc(hour: f64) -> (f64, f64) {
        let mut soc = SOC_AT_MIDNIGHT;
        for (start, end, rate) in PROFILE {
            if hour < end {
                soc += 100.0 * rate * (hour - start).max(0.0);
                return (rate, soc);
            }
            soc += 100.0 * rate * (end - start);
        }
        (0.0, soc)
    }
}

impl Model<4> for Battery {
    fn read(&self, at: SimTime) -> [f64; 4] {
        let (rate, soc) = Battery::c_rate_and_soc(at.hour());
        let current = rate * self.capacity_ah;
        let voltage = 48.0 + 0.05 * soc + current / self.capacity_ah;
        let temperature = 20.0 + 10.0 * rate.abs();
        [voltage, current, soc, temperature]
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::io::testing::{drive, source, NEW_YEAR_2026};
    use tandem_core::ParamValue;

    fn reading_at(hour: f64, capacity_ah: f64) -> [f64; 4] {
        let (mut src, _) = source(
            "bat",
            &KIND,
            &[("capacity_ah", ParamValue::Float(capacity_ah))],
        )
        .unwrap();
        let mut out = Vec::new();
        let now = NEW_YEAR_2026.add_nanos((hour * 3600e9) as i64);
        src.poll(now, &mut out);
        assert!(out.iter().all(|r| r.time == now));
        [out[0].value, out[1].value, out[2].value, out[3].value]
    }

    fn close(got: [f64; 4], want: [f64; 4]) {
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-9, "{got:?} != {want:?}");
        }
    }

    #[test]
    fn charges_at_midday_and_discharges_in_the_evening() {
        // 12:00: 1 h into +0.16 C from 10 %: 26 %, 16 A, 48 + 1.3 + 0.16 V.
        close(reading_at(12.0, 100.0), [49.46, 16.0, 26.0, 21.6]);
        // 19:00: 2 h into -0.12 C from 90 %: 66 %, -12 A.
        close(reading_at(19.0, 100.0), [51.18, -12.0, 66.0, 21.2]);
        // 03:00: 3 h into -0.025 C from 27.5 %.
        close(reading_at(3.0, 100.0), [48.975, -2.5, 20.0, 20.25]);
        // 16:30 idle and full; a bigger pack carries more current at the same C-rate.
        close(reading_at(16.5, 200.0), [52.5, 0.0, 90.0, 20.0]);
        close(reading_at(13.0, 200.0), [50.26, 32.0, 42.0, 21.6]);
    }

    #[test]
    fn soc_is_continuous_and_returns_to_its_start_after_a_day() {
        let mut last = Battery::c_rate_and_soc(0.0).1;
        for minute in 1..=1440 {
            let soc = Battery::c_rate_and_soc(f64::from(minute) / 60.0).1;
            assert!(
                (soc - last).abs() <= 16.0 / 60.0 + 1e-9,
                "jump at minute {minute}"
            );
            assert!((10.0 - 1e-9..=90.0 + 1e-9).contains(&soc));
            last = soc;
        }
        assert!((last - SOC_AT_MIDNIGHT).abs() < 1e-9);
    }

    #[test]
    fn polls_every_period_on_whole_periods_and_repeats_itself() {
        let run = || {
            let (mut src, table) = source(
                "bat",
                &KIND,
                &[("period", ParamValue::Duration(5_000_000_000))],
            )
            .unwrap();
            let start = NEW_YEAR_2026.add_nanos(1_234);
            let out = drive(src.as_mut(), start, start.add_nanos(20_000_000_000), 100);
            (out, table)
        };
        let (a, table) = run();
        let (b, _) = run();
        let times: Vec<i64> = a
            .iter()
            .step_by(4)
            .map(|r| r.time.0 - NEW_YEAR_2026.0)
            .collect();
        assert_eq!(
            times,
            [
                1_234,
                5_000_000_000,
                10_000_000_000,
                15_000_000_000,
                20_000_000_000
            ]
        );
        let names: Vec<&str> = a.iter().take(4).map(|r| table.name(r.channel)).collect();
        assert_eq!(
            names,
            ["bat.voltage", "bat.current", "bat.soc", "bat.temperature"]
        );
        assert!(a.iter().zip(&b).all(|(x, y)| x.bit_eq(y)));
    }
}
