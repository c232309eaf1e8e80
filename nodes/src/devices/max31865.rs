//! `max31865`: a platinum RTD (PT100 or PT1000) read through a MAX31865
//! converter on SPI, with the firmware driver
//! [`tandem_firmware::max31865::Max31865`].
//!
//! The converter runs in continuous conversion; every `period` the source
//! reads the RTD register and emits the temperature (main output, °C, by
//! Callendar-Van Dusen) and the resistance (`.resistance`, Ω). On its first
//! poll, and after a bus error, it writes the configuration (bias on,
//! automatic conversion, wiring and mains filter).
//!
//! | failure | flag of both records |
//! |---|---|
//! | SPI bus error | `COMM_ERROR` |
//! | fault bit set (open sensor or lead, over/under voltage); the fault status is then cleared | `DEVICE_FAULT` |
//! | a resistance outside -200..850 °C (temperature only; the resistance is still good) | `OUT_OF_RANGE` |
//!
//! Each failure counts one error ([`Source::errors`]) and polling goes on.
//!
//! With `bus = "sim"` the converter is the firmware's [`SimMax31865`]; before
//! every read its RTD is set to the temperature the
//! [`crate::io::sim_heatpump`] model (`sim.heatpump`) gives at the poll's
//! ingress time for `sim_point` (the supply or return water, or the outdoor
//! air). Keep `speed`, `sim_cycle` and `sim_defrost_every` equal to those of
//! a `sim.heatpump` source it stands beside, so that both tell one story.

use super::bus::{open_spi, Bus, Wire};
use super::common::{
    bus_and_injection, push, Injection, Schedule, Tally, INJECT_EVERY, INJECT_FOR,
};
use crate::io::sim::{Model, SimClock, PERIOD, SPEED};
use crate::io::sim_heatpump::HeatPump;
use crate::io::{duration_param, float_param, int_param, outputs, text_param};
use embedded_hal::spi::SpiDevice;
use tandem_core::{
    Arity, BuildContext, BuildError, Builder, ChannelId, EventTime, KindSpec, OutputSpec,
    ParamDefault, ParamSpec, ParamType, Quality, Record, Source,
};
use tandem_firmware::max31865::{self, Filter, Max31865, Sensor, Wires};
use tandem_firmware::rtd;
use tandem_firmware::sim::SimMax31865;

/// SPI clock on a real bus (the chip takes up to 5 MHz).
const SPI_HZ: u32 = 1_000_000;

/// The `max31865` kind.
pub static KIND: KindSpec = KindSpec {
    name: "max31865",
    version: 1,
    doc: "platinum RTD temperature (PT100/PT1000) through a MAX31865 converter on SPI",
    input_names: &[],
    arity: Arity::NONE,
    outputs: &[
        OutputSpec::main("C"),
        OutputSpec::named("resistance", "ohm"),
    ],
    outputs_from: None,
    params: &[
        PERIOD,
        super::bus::BUS,
        ParamSpec {
            name: "sensor",
            ty: ParamType::Choice(&["pt100", "pt1000"]),
            default: ParamDefault::Text("pt100"),
            doc: "RTD type: R0 = 100 or 1000 ohm",
        },
        ParamSpec {
            name: "r_ref",
            ty: ParamType::Float {
                min: 10.0,
                max: 100_000.0,
            },
            default: ParamDefault::Optional,
            doc: "reference resistor on the board, ohm (default 430 for pt100, 4300 for pt1000)",
        },
        ParamSpec {
            name: "wires",
            ty: ParamType::Int { min: 2, max: 4 },
            default: ParamDefault::Int(3),
            doc: "RTD wiring: 2, 3 or 4 wires",
        },
        ParamSpec {
            name: "filter",
            ty: ParamType::Choice(&["50hz", "60hz"]),
            default: ParamDefault::Text("50hz"),
            doc: "mains frequency to reject",
        },
        SPEED,
        ParamSpec {
            name: "sim_point",
            ty: ParamType::Choice(&["supply", "return", "outdoor"]),
            default: ParamDefault::Text("supply"),
            doc: "bus = \"sim\" only: which temperature of the simulated heat pump the RTD measures",
        },
        ParamSpec {
            name: "sim_cycle",
            ty: ParamType::Duration {
                min_ns: 60_000_000_000,
                max_ns: 86_400_000_000_000,
            },
            default: ParamDefault::Duration(1_800_000_000_000),
            doc: "bus = \"sim\" only: the simulated heat pump's on/off cycle (as `cycle` of sim.heatpump)",
        },
        ParamSpec {
            name: "sim_defrost_every",
            ty: ParamType::Duration {
                min_ns: 600_000_000_000,
                max_ns: 86_400_000_000_000,
            },
            default: ParamDefault::Duration(10_800_000_000_000),
            doc: "bus = \"sim\" only: time between defrosts (as `defrost_every` of sim.heatpump)",
        },
        ParamSpec {
            name: "inject",
            ty: ParamType::Choice(&["none", "bus", "open_rtd"]),
            default: ParamDefault::Text("none"),
            doc: "bus = \"sim\" only: fault during the injection window (SPI failure, open sensor)",
        },
        INJECT_EVERY,
        INJECT_FOR,
    ],
    state_schema: None,
    migrations: &[],
    build: Builder::Source(build),
};

/// A fault the simulated converter can be made to show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Every SPI transaction fails.
    Bus,
    /// The sensor or a lead is open.
    OpenRtd,
}

impl Fault {
    fn parse(name: &str) -> Option<Fault> {
        match name {
            "bus" => Some(Fault::Bus),
            "open_rtd" => Some(Fault::OpenRtd),
            _ => None,
        }
    }
}

/// How the converter is set up, from the parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Setup {
    sensor: Sensor,
    wires: Wires,
    filter: Filter,
}

impl Setup {
    fn of(ctx: &BuildContext<'_>) -> Result<Setup, BuildError> {
        let mut sensor = match text_param(ctx, "sensor")? {
            "pt1000" => Sensor::PT1000,
            _ => Sensor::PT100,
        };
        if let Some(r_ref) = ctx.params.float("r_ref") {
            if !(r_ref.is_finite() && f64::from(sensor.r0) < r_ref) {
                return Err(BuildError::new(format!(
                    "`{}`: r_ref {r_ref} ohm must be above the sensor's R0 of {} ohm",
                    ctx.id, sensor.r0
                ))
                .at("r_ref"));
            }
            sensor.r_ref = r_ref as f32;
        }
        let wires = match int_param(ctx, "wires")? {
            2 => Wires::Two,
            3 => Wires::Three,
            4 => Wires::Four,
            other => {
                return Err(BuildError::new(format!(
                    "`{}`: wires {other} is not 2, 3 or 4",
                    ctx.id
                )))
            }
        };
        let filter = match text_param(ctx, "filter")? {
            "60hz" => Filter::Hz60,
            _ => Filter::Hz50,
        };
        Ok(Setup {
            sensor,
            wires,
            filter,
        })
    }
}

/// What [`build`] checks before it opens a bus: the load-time check of the kind.
pub(crate) fn check(ctx: &BuildContext<'_>) -> Result<(), BuildError> {
    Setup::of(ctx)?;
    bus_and_injection(ctx, Wire::Spi, Fault::parse).map(drop)
}

fn build(ctx: &BuildContext<'_>) -> Result<Box<dyn Source>, BuildError> {
    let channels = outputs::<2>(ctx)?;
    let schedule = Schedule::of(ctx)?;
    let setup = Setup::of(ctx)?;
    let (bus, inject) = bus_and_injection(ctx, Wire::Spi, Fault::parse)?;
    match bus {
        Bus::Sim => {
            let sim = SimRtd::new(ctx, setup.sensor, inject)?;
            let driver = Max31865::new(sim.chip.clone(), setup.sensor, setup.wires, setup.filter);
            Ok(Box::new(Rtd::new(
                driver,
                setup,
                Some(sim),
                channels,
                schedule,
            )))
        }
        Bus::Spi(path) | Bus::I2c(path) => {
            let spi = open_spi(ctx.id, &path, SPI_HZ)?;
            let driver = Max31865::new(spi, setup.sensor, setup.wires, setup.filter);
            Ok(Box::new(Rtd::new(driver, setup, None, channels, schedule)))
        }
    }
}

/// The simulated converter and the model that sets its RTD.
#[derive(Debug)]
pub struct SimRtd {
    chip: SimMax31865,
    model: HeatPump,
    clock: SimClock,
    /// Index of the temperature in the model's readings.
    point: usize,
    r0: f64,
    inject: Injection<Fault>,
}

impl SimRtd {
    fn new(
        ctx: &BuildContext<'_>,
        sensor: Sensor,
        inject: Injection<Fault>,
    ) -> Result<SimRtd, BuildError> {
        let point = match text_param(ctx, "sim_point")? {
            "return" => 1,
            "outdoor" => 2,
            _ => 0,
        };
        let model = HeatPump {
            cycle_s: duration_param(ctx, "sim_cycle")?.max(1) as f64 / 1e9,
            defrost_every_s: duration_param(ctx, "sim_defrost_every")?.max(1) as f64 / 1e9,
        };
        Ok(SimRtd {
            chip: SimMax31865::new(f64::from(sensor.r0), f64::from(sensor.r_ref)),
            model,
            clock: SimClock::new(float_param(ctx, "speed")?),
            point,
            r0: f64::from(sensor.r0),
            inject,
        })
    }

    /// Sets the RTD to the model's temperature at `now`.
    fn feed(&self, now: EventTime) {
        let readings = self.model.read(self.clock.at(now));
        let celsius = readings.get(self.point).copied().unwrap_or(f64::NAN);
        self.chip.set_temperature(celsius, self.r0);
        let fault = self.inject.at(now);
        self.chip.set_open(fault == Some(Fault::OpenRtd));
        self.chip.set_bus_fault(fault == Some(Fault::Bus));
    }

    /// The simulated chip, to inspect or to inject faults by hand.
    pub fn chip(&self) -> &SimMax31865 {
        &self.chip
    }
}

/// A running `max31865` source.
#[derive(Debug)]
pub struct Rtd<SPI> {
    driver: Max31865<SPI>,
    r0: f64,
    sim: Option<SimRtd>,
    channels: [ChannelId; 2],
    schedule: Schedule,
    /// The configuration has been written since the last bus error.
    ready: bool,
    tally: Tally,
}

impl<SPI: SpiDevice> Rtd<SPI> {
    fn new(
        driver: Max31865<SPI>,
        setup: Setup,
        sim: Option<SimRtd>,
        channels: [ChannelId; 2],
        schedule: Schedule,
    ) -> Self {
        Rtd {
            driver,
            r0: f64::from(setup.sensor.r0),
            sim,
            channels,
            schedule,
            ready: false,
            tally: Tally::default(),
        }
    }
}

/// The flag of a driver error, and whether the bus failed.
fn flag<E>(e: max31865::Error<E>) -> (Quality, bool) {
    match e {
        max31865::Error::Bus(_) => (Quality::COMM_ERROR, true),
        max31865::Error::Fault(_) | max31865::Error::Timeout => (Quality::DEVICE_FAULT, false),
        max31865::Error::OutOfRange { .. } => (Quality::OUT_OF_RANGE, false),
    }
}

impl<SPI: SpiDevice + Send> Source for Rtd<SPI> {
    fn poll(&mut self, now: EventTime, out: &mut Vec<Record>) -> Option<EventTime> {
        if let Some(sim) = &self.sim {
            sim.feed(now);
        }
        let [temperature, resistance] = self.channels;
        self.tally.begin();
        let driver = &mut self.driver;
        if !self.ready {
            let started = self
                .tally
                .read(|| driver.start_continuous().map(|()| 0.0).map_err(flag));
            match started {
                Ok(_) => self.ready = true,
                Err(q) => {
                    push(out, now, temperature, Err(q));
                    push(out, now, resistance, Err(q));
                    return Some(self.schedule.next(now));
                }
            }
        }
        let ohms = self
            .tally
            .read(|| driver.resistance().map(f64::from).map_err(flag));
        match ohms {
            Ok(ohms) => {
                let r0 = self.r0;
                let celsius = self
                    .tally
                    .read(|| rtd::temperature(ohms, r0).ok_or((Quality::OUT_OF_RANGE, false)));
                push(out, now, temperature, celsius);
                push(out, now, resistance, Ok(ohms));
            }
            Err(q) => {
                push(out, now, temperature, Err(q));
                push(out, now, resistance, Err(q));
                if q == Quality::DEVICE_FAULT {
                    // The fault status latches: clear it so that the next
                    // conversion tells whether the fault is still there.
                    let _ = self
                        .tally
                        .read(|| driver.clear_faults().map(|()| 0.0).map_err(flag));
                }
            }
        }
        if self.tally.bus_down {
            self.ready = false;
        }
        Some(self.schedule.next(now))
    }

    fn errors(&self) -> u64 {
        self.tally.errors
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::devices::testing::{at, poll_values};
    use crate::io::testing::{source, text};
    use tandem_core::ParamValue;

    #[test]
    fn reads_the_supply_and_return_water_of_the_model() {
        // 03:20: the model's supply is 38.990487 C, return 33.990487 C.
        // PT100: R = 100 (1 + A t + B t^2) = 115.15086 ohm -> ADC
        // round(R / 430 x 32768) = 8775 -> 8775 x 430 / 32768 = 115.15045 ohm
        // -> 38.98944 C (within the 0.034 C step of the ADC).
        let (mut supply, table) = source("supply", &KIND, &[]).unwrap();
        let got = poll_values(supply.as_mut(), at(0, 3, 20));
        assert!((got[0].0 - 38.989_437).abs() < 1e-5, "{got:?}");
        assert!((got[1].0 - 115.150_452).abs() < 1e-5, "{got:?}");
        assert!(got.iter().all(|(_, q)| q.is_good()));
        // Return: R = 113.21778 ohm -> ADC 8628 -> 113.22144 ohm -> 33.99993 C.
        let (mut ret, _) = source("return", &KIND, &[("sim_point", text("return"))]).unwrap();
        let got = poll_values(ret.as_mut(), at(0, 3, 20));
        assert!((got[0].0 - 33.999_934).abs() < 1e-5, "{got:?}");
        assert!((got[1].0 - 113.221_436).abs() < 1e-5, "{got:?}");
        assert_eq!(supply.errors() + ret.errors(), 0);
        let mut out = Vec::new();
        supply.poll(at(0, 3, 20), &mut out);
        let names: Vec<&str> = out.iter().map(|r| table.name(r.channel)).collect();
        assert_eq!(names, ["supply", "supply.resistance"]);
    }

    #[test]
    fn a_pt1000_reads_the_same_within_its_resolution() {
        let (mut src, _) = source(
            "outdoor",
            &KIND,
            &[("sensor", text("pt1000")), ("sim_point", text("outdoor"))],
        )
        .unwrap();
        // 03:00 outdoors: -3 C exactly in the model; below 0 C the CVD
        // curve has its C term: R = 988.26989 ohm -> ADC 7531 at Rref 4300
        // -> 988.25989 ohm -> -3.00256 C.
        let got = poll_values(src.as_mut(), at(0, 3, 0));
        assert!((got[0].0 + 3.002_557).abs() < 1e-5, "{got:?}");
        assert!((got[1].0 - 988.259_888).abs() < 1e-5, "{got:?}");
    }

    fn injecting(fault: &str) -> Box<dyn Source> {
        source(
            "supply",
            &KIND,
            &[
                ("inject", text(fault)),
                ("inject_every", ParamValue::Duration(10_000_000_000)),
                ("inject_for", ParamValue::Duration(1_000_000_000)),
            ],
        )
        .unwrap()
        .0
    }

    #[test]
    fn an_open_rtd_is_a_device_fault_and_the_next_poll_recovers() {
        let mut src = injecting("open_rtd");
        let before = poll_values(src.as_mut(), at(0, 3, 20).add_nanos(-1_000_000_000));
        assert!(before.iter().all(|(_, q)| q.is_good()));
        let open = poll_values(src.as_mut(), at(0, 3, 20));
        assert!(open
            .iter()
            .all(|(v, q)| v.is_nan() && *q == Quality::DEVICE_FAULT));
        assert_eq!(src.errors(), 1);
        let after = poll_values(src.as_mut(), at(0, 3, 20).add_nanos(1_000_000_000));
        assert!((after[0].0 - 39.0).abs() < 0.05, "{after:?}");
        assert!(after.iter().all(|(_, q)| q.is_good()));
        assert_eq!(src.errors(), 1);
    }

    #[test]
    fn a_bus_error_is_a_comm_error_and_the_next_poll_recovers() {
        let mut src = injecting("bus");
        let bad = poll_values(src.as_mut(), at(0, 3, 20));
        assert!(bad
            .iter()
            .all(|(v, q)| v.is_nan() && *q == Quality::COMM_ERROR));
        assert_eq!(src.errors(), 1);
        let after = poll_values(src.as_mut(), at(0, 3, 20).add_nanos(1_000_000_000));
        assert!(after.iter().all(|(_, q)| q.is_good()));
        assert_eq!(src.errors(), 1);
    }

    #[test]
    fn a_shorted_sensor_is_out_of_range_but_its_resistance_is_kept() {
        let params = crate::io::testing::params(&KIND, &[]);
        let (table, outs) = crate::io::testing::outputs("t", &KIND, &params);
        let table = std::sync::Arc::new(table);
        let ctx = BuildContext {
            id: "t",
            params: &params,
            inputs: &[],
            outputs: &outs,
            channels: &table,
        };
        let setup = Setup::of(&ctx).unwrap();
        let chip = SimMax31865::new(100.0, 430.0);
        let driver = Max31865::new(chip.clone(), setup.sensor, setup.wires, setup.filter);
        let mut src = Rtd::new(
            driver,
            setup,
            None,
            [outs[0], outs[1]],
            Schedule::of(&ctx).unwrap(),
        );
        // 10 ohm is below -200 C on a PT100: ADC 762 -> 9.99939 ohm.
        chip.set_resistance(10.0);
        let got = poll_values(&mut src, at(0, 0, 0));
        assert!(got[0].0.is_nan());
        assert_eq!(got[0].1, Quality::OUT_OF_RANGE);
        assert!(
            (got[1].0 - 10.0).abs() < 0.01 && got[1].1.is_good(),
            "{got:?}"
        );
        assert_eq!(src.errors(), 1);
    }

    #[test]
    fn an_spi_chip_refuses_an_i2c_bus_and_a_small_reference() {
        let err = source("t", &KIND, &[("bus", text("i2c:/dev/i2c-1"))])
            .err()
            .unwrap();
        assert!(err
            .message
            .contains("is an I2C bus but this chip is on SPI"));
        let err = source("t", &KIND, &[("r_ref", ParamValue::Float(90.0))])
            .err()
            .unwrap();
        assert_eq!(
            err.message,
            "`t`: r_ref 90 ohm must be above the sensor's R0 of 100 ohm"
        );
    }

    #[test]
    #[cfg(feature = "linux")]
    fn a_missing_spi_device_is_named() {
        let err = source(
            "t",
            &KIND,
            &[("bus", text("spi:/dev/spidev-tandem-does-not-exist"))],
        )
        .err()
        .unwrap();
        assert!(
            err.message
                .starts_with("`t`: cannot open spi device `/dev/spidev-tandem-does-not-exist`"),
            "{}",
            err.message
        );
    }

    #[test]
    #[cfg(not(feature = "linux"))]
    fn a_real_spi_bus_needs_the_linux_feature() {
        let err = source("t", &KIND, &[("bus", text("spi:/dev/spidev0.0"))])
            .err()
            .unwrap();
        assert!(
            err.message.contains("no Linux bus support")
                && err.message.contains("`/dev/spidev0.0`"),
            "{}",
            err.message
        );
    }
}
