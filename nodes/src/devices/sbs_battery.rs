//! `sbs_battery`: a smart battery (SBS 1.1 over SMBus, with PEC) polled
//! through the firmware driver [`tandem_firmware::sbs::SmartBattery`].
//!
//! Every `period` the source reads Voltage, Current, RelativeStateOfCharge,
//! Temperature, RemainingCapacity, CycleCount and BatteryStatus and emits one
//! record for each. On its first poll, and again after a bus error (the pack
//! may have been reset), it reads SpecificationInfo (voltage and current
//! scales) and BatteryMode, and switches capacities to mAh if the pack
//! reports them in 10 mWh.
//!
//! What goes wrong becomes a flagged record with value NaN and one counted
//! error ([`Source::errors`]); polling goes on:
//!
//! | failure | flag |
//! |---|---|
//! | NACK or another bus error: this and the remaining quantities of the poll | `COMM_ERROR` |
//! | PEC mismatch (after the driver's one retry) | `COMM_ERROR` |
//! | state of charge over 100 % | `OUT_OF_RANGE` |
//! | SpecificationInfo with an undefined scale | `DEVICE_FAULT` |
//!
//! The `alarms` record carries the alarm bits of BatteryStatus as a number
//! (0x8000 over-charged, 0x4000 terminate charge, 0x1000 over-temperature,
//! 0x0800 terminate discharge, 0x0200 remaining capacity, 0x0100 remaining
//! time); when any is set it is flagged `DEVICE_FAULT` and counted.
//!
//! With `bus = "sim"` the pack is the firmware's
//! [`SimSmartBattery`]; before every read its registers are set from the
//! [`crate::io::sim_battery`] model (`sim.battery`) at the poll's ingress
//! time, so the driver decodes what the model says. The simulated pack
//! reports currents and capacities with the smallest IPScale that fits
//! `sim_capacity_ah` (10 mA steps at 100 Ah), 10 cycles, the DISCHARGING
//! status bit while discharging, and no alarms unless one is injected.

use super::bus::{open_i2c, Bus, Wire};
use super::common::{
    address, address_param, bus_and_injection, push, Injection, Schedule, Tally, INJECT_EVERY,
    INJECT_FOR,
};
use crate::io::sim::{Model, SimClock, PERIOD, SPEED};
use crate::io::sim_battery::Battery;
use crate::io::{float_param, outputs};
use embedded_hal::i2c::I2c;
use tandem_core::{
    Arity, BuildContext, BuildError, Builder, ChannelId, EventTime, KindSpec, OutputSpec,
    ParamDefault, ParamSpec, ParamType, Quality, Record, Source,
};
use tandem_firmware::sbs::{self, status, CapacityUnit, SmartBattery};
use tandem_firmware::sim::{PecFault, SimSmartBattery};

/// The `sbs_battery` kind.
pub static KIND: KindSpec = KindSpec {
    name: "sbs_battery",
    version: 1,
    doc: "smart battery (SBS 1.1 over SMBus with PEC): voltage, current, state of charge, temperature, capacity, cycles, alarm bits",
    input_names: &[],
    arity: Arity::NONE,
    outputs: &[
        OutputSpec::named("voltage", "V"),
        OutputSpec::named("current", "A"),
        OutputSpec::named("soc", "%"),
        OutputSpec::named("temperature", "C"),
        OutputSpec::named("remaining_capacity", "Ah"),
        OutputSpec::named("cycle_count", ""),
        OutputSpec::named("alarms", ""),
    ],
    outputs_from: None,
    params: &[
        PERIOD,
        super::bus::BUS,
        address("address", 0x0B, "SMBus address of the pack (SBS default 0x0B)"),
        SPEED,
        ParamSpec {
            name: "sim_capacity_ah",
            ty: ParamType::Float {
                min: 1.0,
                max: 10_000.0,
            },
            default: ParamDefault::Float(100.0),
            doc: "bus = \"sim\" only: capacity of the simulated pack, ampere-hours",
        },
        ParamSpec {
            name: "inject",
            ty: ParamType::Choice(&["none", "nack", "bad_pec", "alarm"]),
            default: ParamDefault::Text("none"),
            doc: "bus = \"sim\" only: fault of the simulated pack during the injection window (NACK, corrupted PEC, over-temperature alarm)",
        },
        INJECT_EVERY,
        INJECT_FOR,
    ],
    state_schema: None,
    migrations: &[],
    build: Builder::Source(build),
};

/// Output order.
const OUTPUTS: usize = 7;

/// A fault the simulated pack can be made to show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The pack does not acknowledge.
    Nack,
    /// Every read's PEC is corrupted (differently each time, like noise).
    BadPec,
    /// BatteryStatus has the over-temperature alarm set.
    Alarm,
}

impl Fault {
    fn parse(name: &str) -> Option<Fault> {
        match name {
            "nack" => Some(Fault::Nack),
            "bad_pec" => Some(Fault::BadPec),
            "alarm" => Some(Fault::Alarm),
            _ => None,
        }
    }
}

/// What [`build`] checks before it opens a bus: the load-time check of the kind.
pub(crate) fn check(ctx: &BuildContext<'_>) -> Result<(), BuildError> {
    address_param(ctx, "address")?;
    bus_and_injection(ctx, Wire::I2c, Fault::parse).map(drop)
}

fn build(ctx: &BuildContext<'_>) -> Result<Box<dyn Source>, BuildError> {
    let channels = outputs::<OUTPUTS>(ctx)?;
    let schedule = Schedule::of(ctx)?;
    let address = address_param(ctx, "address")?;
    let (bus, inject) = bus_and_injection(ctx, Wire::I2c, Fault::parse)?;
    match bus {
        Bus::Sim => {
            let sim = SimPack::new(ctx, address, inject)?;
            let battery = SmartBattery::with_address(sim.chip.clone(), address);
            Ok(Box::new(SbsBattery::new(
                battery,
                Some(sim),
                channels,
                schedule,
            )))
        }
        Bus::I2c(path) | Bus::Spi(path) => {
            let bus = open_i2c(ctx.id, &path)?;
            let battery = SmartBattery::with_address(bus, address);
            Ok(Box::new(SbsBattery::new(battery, None, channels, schedule)))
        }
    }
}

/// The simulated pack and the model that sets its registers.
#[derive(Debug)]
pub struct SimPack {
    chip: SimSmartBattery,
    model: Battery,
    clock: SimClock,
    /// 10^IPScale, as the pack reports it.
    ipscale: f64,
    inject: Injection<Fault>,
}

impl SimPack {
    fn new(
        ctx: &BuildContext<'_>,
        address: u8,
        inject: Injection<Fault>,
    ) -> Result<SimPack, BuildError> {
        let capacity_ah = float_param(ctx, "sim_capacity_ah")?;
        if !(capacity_ah.is_finite() && capacity_ah > 0.0) {
            return Err(BuildError::new(format!(
                "`{}`: sim_capacity_ah {capacity_ah} is not a positive number of ampere-hours",
                ctx.id
            )));
        }
        // The smallest IPScale at which the capacity fits a 16-bit word.
        let capacity_mah = capacity_ah * 1000.0;
        let exponent = (0u16..=3)
            .find(|e| capacity_mah / 10f64.powi(i32::from(*e)) <= f64::from(u16::MAX))
            .unwrap_or(3);
        let ipscale = 10f64.powi(i32::from(exponent));
        let chip = SimSmartBattery::new();
        chip.set_address(address);
        // SBS 1.1 with PEC, VScale 0, IPScale `exponent`.
        chip.set_word(sbs::register::SPECIFICATION_INFO, 0x0031 | exponent << 12);
        let full = word(capacity_mah / ipscale);
        chip.set_full_charge_capacity(full);
        chip.set_word(sbs::register::DESIGN_CAPACITY, full);
        Ok(SimPack {
            chip,
            model: Battery { capacity_ah },
            clock: SimClock::new(float_param(ctx, "speed")?),
            ipscale,
            inject,
        })
    }

    /// Sets the pack's registers to the model's state at `now`.
    fn feed(&self, now: EventTime) {
        let [volts, amps, soc, celsius] = self.model.read(self.clock.at(now));
        let chip = &self.chip;
        chip.set_voltage_mv(word(volts * 1000.0));
        chip.set_current_ma((amps * 1000.0 / self.ipscale).round() as i16);
        chip.set_relative_soc(word(soc));
        chip.set_temperature_celsius(celsius);
        chip.set_remaining_capacity(word(
            soc / 100.0 * self.model.capacity_ah * 1000.0 / self.ipscale,
        ));
        let fault = self.inject.at(now);
        let mut word_status = status::INITIALIZED;
        if amps < 0.0 {
            word_status |= status::DISCHARGING;
        }
        if fault == Some(Fault::Alarm) {
            word_status |= status::OVER_TEMP_ALARM;
        }
        chip.set_status(word_status);
        chip.set_nack(fault == Some(Fault::Nack));
        chip.set_pec_fault(match fault {
            Some(Fault::BadPec) => PecFault::Next(u32::MAX),
            _ => PecFault::None,
        });
    }

    /// The simulated chip, to inspect or to inject faults by hand.
    pub fn chip(&self) -> &SimSmartBattery {
        &self.chip
    }
}

/// Rounds to a register word (saturating; NaN is 0).
fn word(v: f64) -> u16 {
    v.round() as u16
}

/// A running `sbs_battery` source.
#[derive(Debug)]
pub struct SbsBattery<I2C> {
    battery: SmartBattery<I2C>,
    sim: Option<SimPack>,
    channels: [ChannelId; OUTPUTS],
    schedule: Schedule,
    /// Scales and capacity unit have been read since the last bus error.
    ready: bool,
    tally: Tally,
}

impl<I2C: I2c> SbsBattery<I2C> {
    fn new(
        battery: SmartBattery<I2C>,
        sim: Option<SimPack>,
        channels: [ChannelId; OUTPUTS],
        schedule: Schedule,
    ) -> Self {
        SbsBattery {
            battery,
            sim,
            channels,
            schedule,
            ready: false,
            tally: Tally::default(),
        }
    }

    /// Reads the scales and makes capacities come in mAh.
    fn init(&mut self) -> Result<(), sbs::Error<I2C::Error>> {
        self.battery.init()?;
        if self.battery.capacity_unit() != CapacityUnit::MilliAmpHours {
            self.battery
                .set_capacity_unit(CapacityUnit::MilliAmpHours)?;
        }
        Ok(())
    }

    fn read_all(&mut self, now: EventTime, out: &mut Vec<Record>) {
        let [voltage, current, soc, temperature, capacity, cycles, alarms] = self.channels;
        let b = &mut self.battery;
        let t = &mut self.tally;
        let v = t.read(|| b.voltage_mv().map(|mv| f64::from(mv) / 1e3).map_err(flag));
        push(out, now, voltage, v);
        let a = t.read(|| b.current_ma().map(|ma| f64::from(ma) / 1e3).map_err(flag));
        push(out, now, current, a);
        let s = t.read(|| b.relative_state_of_charge().map(f64::from).map_err(flag));
        push(out, now, soc, s);
        let c = t.read(|| {
            b.temperature_deci_kelvin()
                .map(|dk| f64::from(dk) / 10.0 - 273.15)
                .map_err(flag)
        });
        push(out, now, temperature, c);
        let r = t.read(|| match b.remaining_capacity() {
            Ok(cap) => cap
                .milliamp_hours()
                .map(|mah| f64::from(mah) / 1e3)
                .ok_or((Quality::DEVICE_FAULT, false)),
            Err(e) => Err(flag(e)),
        });
        push(out, now, capacity, r);
        let n = t.read(|| b.cycle_count().map(f64::from).map_err(flag));
        push(out, now, cycles, n);
        let bits = t.read(|| {
            b.battery_status()
                .map(|s| f64::from(s.alarms()))
                .map_err(flag)
        });
        match bits {
            Ok(bits) if bits != 0.0 => {
                t.count();
                out.push(
                    Record::new(tandem_core::Seq::ZERO, now, alarms, bits)
                        .flagged(Quality::DEVICE_FAULT),
                );
            }
            reading => push(out, now, alarms, reading),
        }
    }
}

/// The flag of a driver error, and whether the bus failed.
fn flag<E>(e: sbs::Error<E>) -> (Quality, bool) {
    match e {
        sbs::Error::Bus(_) => (Quality::COMM_ERROR, true),
        sbs::Error::Pec { .. } | sbs::Error::BlockLength { .. } => (Quality::COMM_ERROR, false),
        sbs::Error::OutOfRange { .. } => (Quality::OUT_OF_RANGE, false),
        sbs::Error::UnsupportedScale { .. } => (Quality::DEVICE_FAULT, false),
    }
}

impl<I2C: I2c + Send> Source for SbsBattery<I2C> {
    fn poll(&mut self, now: EventTime, out: &mut Vec<Record>) -> Option<EventTime> {
        if let Some(sim) = &self.sim {
            sim.feed(now);
        }
        self.tally.begin();
        if !self.ready {
            match self.init() {
                Ok(()) => self.ready = true,
                Err(e) => {
                    let (quality, _) = flag(e);
                    self.tally.count();
                    for channel in self.channels {
                        push(out, now, channel, Err(quality));
                    }
                    return Some(self.schedule.next(now));
                }
            }
        }
        self.read_all(now, out);
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
    use crate::io::testing::{source, text, NEW_YEAR_2026};
    use tandem_core::ParamValue;

    const NAN: f64 = f64::NAN;

    fn close(got: &[(f64, Quality)], want: &[(f64, Quality)]) {
        assert_eq!(got.len(), want.len(), "{got:?}");
        for (g, w) in got.iter().zip(want) {
            let same = (g.0.is_nan() && w.0.is_nan()) || (g.0 - w.0).abs() < 1e-9;
            assert!(same && g.1 == w.1, "{got:?} != {want:?}");
        }
    }

    #[test]
    fn the_driver_reads_what_the_model_says() {
        let (mut src, table) = source("battery", &KIND, &[]).unwrap();
        // 03:00: 3 h into -0.025 C from 27.5 %: 20 %, -2.5 A,
        // 48 + 0.05 * 20 - 0.025 V, 20.25 C (2934 dK); IPScale 1 at 100 Ah:
        // -250 x 10 mA, 2000 x 10 mAh.
        let got = poll_values(src.as_mut(), at(0, 3, 0));
        let g = Quality::GOOD;
        close(
            &got,
            &[
                (48.975, g),
                (-2.5, g),
                (20.0, g),
                (20.25, g),
                (20.0, g),
                (10.0, g),
                (0.0, g),
            ],
        );
        // 12:00: 1 h into +0.16 C from 10 %: 26 %, 16 A, 49.46 V.
        let got = poll_values(src.as_mut(), at(0, 12, 0));
        assert_eq!(&got[..3], &[(49.46, g), (16.0, g), (26.0, g)]);
        assert!((got[3].0 - 21.6).abs() <= 0.05 + 1e-9, "{got:?}");
        assert_eq!(got[4], (26.0, g));
        assert_eq!(src.errors(), 0);
        let mut out = Vec::new();
        src.poll(at(0, 12, 0), &mut out);
        let names: Vec<&str> = out.iter().map(|r| table.name(r.channel)).collect();
        assert_eq!(
            names,
            [
                "battery.voltage",
                "battery.current",
                "battery.soc",
                "battery.temperature",
                "battery.remaining_capacity",
                "battery.cycle_count",
                "battery.alarms"
            ]
        );
    }

    #[test]
    fn a_big_pack_reports_through_a_larger_current_scale() {
        let (mut src, _) = source(
            "battery",
            &KIND,
            &[("sim_capacity_ah", ParamValue::Float(2000.0))],
        )
        .unwrap();
        // 2000 Ah: 2e6 mAh needs IPScale 2 (100 mA steps). 13:00, 42 %, +320 A.
        let got = poll_values(src.as_mut(), at(0, 13, 0));
        assert_eq!(got[1], (320.0, Quality::GOOD));
        assert_eq!(got[2], (42.0, Quality::GOOD));
        assert_eq!(got[4], (840.0, Quality::GOOD));
    }

    fn injecting(fault: &str) -> Box<dyn Source> {
        source(
            "battery",
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

    /// 03:00:00 is in the injection window, 03:00:01 is not.
    fn in_window() -> EventTime {
        at(0, 3, 0)
    }

    #[test]
    fn a_nack_flags_every_quantity_counts_once_and_the_next_poll_recovers() {
        let mut src = injecting("nack");
        let c = Quality::COMM_ERROR;
        close(&poll_values(src.as_mut(), in_window()), &[(NAN, c); 7]);
        assert_eq!(src.errors(), 1);
        let got = poll_values(src.as_mut(), in_window().add_nanos(1_000_000_000));
        assert!(got.iter().all(|(_, q)| q.is_good()), "{got:?}");
        assert_eq!(got[0].0, 48.975);
        assert_eq!(src.errors(), 1);
    }

    #[test]
    fn a_nack_mid_run_also_recovers_after_re_reading_the_scales() {
        let mut src = injecting("nack");
        let good = poll_values(src.as_mut(), in_window().add_nanos(-1_000_000_000));
        assert!(good.iter().all(|(_, q)| q.is_good()));
        let bad = poll_values(src.as_mut(), in_window());
        assert!(bad
            .iter()
            .all(|(v, q)| v.is_nan() && *q == Quality::COMM_ERROR));
        let again = poll_values(src.as_mut(), in_window().add_nanos(1_000_000_000));
        assert_eq!(again[1], (-2.5, Quality::GOOD));
        assert_eq!(src.errors(), 1);
    }

    #[test]
    fn bad_pec_flags_each_quantity_and_the_next_poll_recovers() {
        let mut src = injecting("bad_pec");
        // The pack answers, so every read is tried: each fails its PEC
        // twice, one error each (the first poll's scale read fails first).
        let c = Quality::COMM_ERROR;
        close(&poll_values(src.as_mut(), in_window()), &[(NAN, c); 7]);
        assert_eq!(src.errors(), 1);
        let got = poll_values(src.as_mut(), in_window().add_nanos(1_000_000_000));
        assert!(got.iter().all(|(_, q)| q.is_good()), "{got:?}");
        let got = poll_values(src.as_mut(), in_window().add_nanos(10_000_000_000));
        close(&got, &[(NAN, c); 7]);
        assert_eq!(src.errors(), 8);
        let got = poll_values(src.as_mut(), in_window().add_nanos(11_000_000_000));
        assert!(got.iter().all(|(_, q)| q.is_good()), "{got:?}");
    }

    #[test]
    fn an_alarm_flags_the_alarm_record_only() {
        let mut src = injecting("alarm");
        let got = poll_values(src.as_mut(), in_window());
        assert!(got[..6].iter().all(|(_, q)| q.is_good()));
        assert_eq!(got[6], (4096.0, Quality::DEVICE_FAULT));
        assert_eq!(src.errors(), 1);
        let got = poll_values(src.as_mut(), in_window().add_nanos(1_000_000_000));
        assert_eq!(got[6], (0.0, Quality::GOOD));
        assert_eq!(src.errors(), 1);
    }

    #[test]
    fn a_state_of_charge_over_100_percent_is_out_of_range() {
        // Built by hand to reach the chip between feed and read.
        let params = crate::io::testing::params(&KIND, &[]);
        let (table, outs) = crate::io::testing::outputs("battery", &KIND, &params);
        let table = std::sync::Arc::new(table);
        let ctx = BuildContext {
            id: "battery",
            params: &params,
            inputs: &[],
            outputs: &outs,
            channels: &table,
        };
        let sim = SimPack::new(&ctx, 0x0B, Injection::of(&ctx, Fault::parse).unwrap()).unwrap();
        let chip = sim.chip().clone();
        let mut src = SbsBattery::new(
            SmartBattery::new(chip.clone()),
            None,
            outputs::<OUTPUTS>(&ctx).unwrap(),
            Schedule::of(&ctx).unwrap(),
        );
        sim.feed(NEW_YEAR_2026);
        chip.set_relative_soc(104);
        let got = poll_values(&mut src, NEW_YEAR_2026);
        assert_eq!(got[2].1, Quality::OUT_OF_RANGE);
        assert!(got[2].0.is_nan());
        assert!(got[3].1.is_good());
        assert_eq!(src.errors(), 1);
    }

    #[test]
    #[cfg(not(feature = "linux"))]
    fn a_real_bus_needs_the_linux_feature() {
        let err = source("battery", &KIND, &[("bus", text("i2c:/dev/i2c-1"))])
            .err()
            .unwrap();
        assert!(
            err.message.starts_with(
                "`battery`: this build has no Linux bus support, so it cannot open i2c bus `/dev/i2c-1`"
            ),
            "{}",
            err.message
        );
        assert!(err.message.contains("--features"), "{}", err.message);
    }

    #[test]
    #[cfg(feature = "linux")]
    fn a_missing_i2c_bus_is_named() {
        let err = source(
            "battery",
            &KIND,
            &[("bus", text("i2c:/dev/i2c-tandem-does-not-exist"))],
        )
        .err()
        .unwrap();
        assert!(
            err.message
                .starts_with("`battery`: cannot open i2c bus `/dev/i2c-tandem-does-not-exist`"),
            "{}",
            err.message
        );
    }

    #[test]
    fn faults_cannot_be_injected_into_a_real_pack() {
        let err = source(
            "battery",
            &KIND,
            &[("bus", text("i2c:/dev/i2c-1")), ("inject", text("nack"))],
        )
        .err()
        .unwrap();
        assert!(err.message.contains("only be injected"), "{}", err.message);
    }
}
