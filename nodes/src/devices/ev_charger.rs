//! `ev_charger`: an EV charger's IEC 61851 control pilot, read by an
//! ADS1115 ADC, and its charging current, read by an INA226 monitor, both on
//! one I2C bus, through the firmware drivers
//! [`tandem_firmware::ads1115::Ads1115`] and
//! [`tandem_firmware::ina226::Ina226`].
//!
//! Every `period` the source makes one single-shot conversion of the pilot
//! (input `pilot_channel` against ground), undoes the board's divider
//! (`V_pilot = (V_adc - divider_offset) / divider_ratio`) and classifies the
//! voltage with hysteresis ([`PilotClassifier`]): the state changes only when
//! the voltage leaves the current state's band by more than `hysteresis`.
//! It emits:
//!
//! | output | unit | value |
//! |---|---|---|
//! | `.pilot` | | 0 = A (no car), 1 = B (connected), 2 = C (charging), 3 = D (ventilation), 4 = E (error), 5 = F (EVSE unavailable), as `ev_session` reads it |
//! | `.pilot_volts` | V | the pilot voltage |
//! | `.current` | A | current per phase from the INA226 (shunt `shunt_ohms`) |
//! | `.power` | W | `phases x phase_volts x current`: the INA226 sees the current through a shunt or a current transformer's burden, not the mains voltage |
//!
//! The pilot is measured as a level: the board is expected to hold the
//! PWM's high level (a peak detector), as most EVSE boards do.
//!
//! | failure | flag |
//! |---|---|
//! | NACK or another bus error on one chip: that chip's records | `COMM_ERROR` |
//! | ADC conversion never finished | `DEVICE_FAULT` |
//! | pilot voltage beyond +-13.5 V (a broken divider, the ADC at full scale): `.pilot` and `.pilot_volts` | `OUT_OF_RANGE` |
//!
//! Each failure counts one error ([`Source::errors`]); a flagged record's
//! value is NaN and the pilot state keeps its last value; polling goes on.
//! The INA226 is calibrated on the first poll and again after a bus error
//! (a power cycle loses the calibration).
//!
//! With `bus = "sim"` both chips are the firmware's [`SimAds1115`] and
//! [`SimIna226`]; before every conversion the pilot voltage (the state's
//! nominal level through the divider) and the current are set from the
//! [`crate::io::sim_ev`] model (`sim.ev`) at the poll's ingress time.

use super::bus::{open_i2c, Bus, NoDelay, Sleep, Wire};
use super::common::{
    address, address_param, bus_and_injection, push, Injection, Schedule, Tally, INJECT_EVERY,
    INJECT_FOR,
};
use crate::io::sim::{Model, SimClock, PERIOD, SPEED};
use crate::io::sim_ev::Ev;
use crate::io::{float_param, int_param, outputs};
use embedded_hal::delay::DelayNs;
use embedded_hal::i2c::I2c;
use tandem_core::{
    Arity, BuildContext, BuildError, Builder, ChannelId, EventTime, KindSpec, OutputSpec,
    ParamDefault, ParamSpec, ParamType, Quality, Record, Source,
};
use tandem_firmware::ads1115::{self, Ads1115, DataRate, Gain, Mux};
use tandem_firmware::ina226::{self, Ina226};
use tandem_firmware::pilot::{PilotClassifier, PilotDivider, PilotState};
use tandem_firmware::sim::{SimAds1115, SimIna226};

/// The `ev_charger` kind.
pub static KIND: KindSpec = KindSpec {
    name: "ev_charger",
    version: 1,
    doc: "EV charger: IEC 61851 pilot state (ADS1115, with hysteresis), charging current and power (INA226) on I2C",
    input_names: &[],
    arity: Arity::NONE,
    outputs: &[
        OutputSpec::named("pilot", ""),
        OutputSpec::named("pilot_volts", "V"),
        OutputSpec::named("current", "A"),
        OutputSpec::named("power", "W"),
    ],
    outputs_from: None,
    params: &[
        PERIOD,
        super::bus::BUS,
        address("pilot_address", 0x48, "I2C address of the ADS1115 reading the pilot (0x48 to 0x4B)"),
        address("meter_address", 0x40, "I2C address of the INA226 measuring the current (0x40 to 0x4F)"),
        ParamSpec {
            name: "pilot_channel",
            ty: ParamType::Int { min: 0, max: 3 },
            default: ParamDefault::Int(0),
            doc: "ADS1115 input (AIN0 to AIN3, against ground) the pilot divider is on",
        },
        ParamSpec {
            name: "divider_ratio",
            ty: ParamType::Float {
                min: 0.001,
                max: 1.0,
            },
            default: ParamDefault::Float(10.0 / 110.0),
            doc: "ADC volts per pilot volt (100k/10k: 10/110)",
        },
        ParamSpec {
            name: "divider_offset",
            ty: ParamType::Float {
                min: -5.0,
                max: 5.0,
            },
            default: ParamDefault::Float(1.5),
            doc: "ADC volts with the pilot at 0 V",
        },
        ParamSpec {
            name: "hysteresis",
            ty: ParamType::Float { min: 0.0, max: 1.4 },
            default: ParamDefault::Float(0.5),
            doc: "pilot volts beyond a state's band before the state changes",
        },
        ParamSpec {
            name: "shunt_ohms",
            ty: ParamType::Float {
                min: 1e-4,
                max: 10.0,
            },
            default: ParamDefault::Float(0.002),
            doc: "INA226 shunt (or burden resistor per CT ampere), ohm",
        },
        ParamSpec {
            name: "current_lsb",
            ty: ParamType::Float {
                min: 1e-6,
                max: 1.0,
            },
            default: ParamDefault::Float(0.001),
            doc: "INA226 current step, A; readings saturate at 32767 steps",
        },
        ParamSpec {
            name: "phases",
            ty: ParamType::Int { min: 1, max: 3 },
            default: ParamDefault::Int(3),
            doc: "phases the car charges on",
        },
        ParamSpec {
            name: "phase_volts",
            ty: ParamType::Float {
                min: 100.0,
                max: 400.0,
            },
            default: ParamDefault::Float(230.0),
            doc: "nominal phase voltage, V, to compute the power",
        },
        SPEED,
        ParamSpec {
            name: "sim_current",
            ty: ParamType::Float {
                min: 6.0,
                max: 32.0,
            },
            default: ParamDefault::Float(16.0),
            doc: "bus = \"sim\" only: the simulated car's charging current per phase, A (as `current` of sim.ev)",
        },
        ParamSpec {
            name: "inject",
            ty: ParamType::Choice(&["none", "nack", "adc_busy"]),
            default: ParamDefault::Text("none"),
            doc: "bus = \"sim\" only: fault during the injection window (both chips NACK, or the ADC never finishes a conversion)",
        },
        INJECT_EVERY,
        INJECT_FOR,
    ],
    state_schema: None,
    migrations: &[],
    build: Builder::Source(build),
};

/// Pilot voltages beyond this are not a pilot, V.
const PILOT_LIMIT_V: f32 = 13.5;
/// Board supply on the INA226 bus input in the simulation, V (not used for power).
const SIM_BUS_V: f64 = 12.0;

/// A fault the simulated chips can be made to show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Neither chip acknowledges.
    Nack,
    /// The ADC never finishes a conversion.
    AdcBusy,
}

impl Fault {
    fn parse(name: &str) -> Option<Fault> {
        match name {
            "nack" => Some(Fault::Nack),
            "adc_busy" => Some(Fault::AdcBusy),
            _ => None,
        }
    }
}

/// Pilot state as the number `ev_session` reads.
pub fn state_number(state: PilotState) -> f64 {
    match state {
        PilotState::A => 0.0,
        PilotState::B => 1.0,
        PilotState::C => 2.0,
        PilotState::D => 3.0,
        PilotState::E => 4.0,
        PilotState::F => 5.0,
    }
}

/// The nominal pilot voltage of a state number, if it is one.
fn nominal_volts(number: f64) -> Option<f64> {
    PilotState::ALL
        .into_iter()
        .find(|s| state_number(*s) == number)
        .map(|s| f64::from(s.nominal_volts()))
}

/// Everything but the buses, from the parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Setup {
    pilot_address: u8,
    meter_address: u8,
    channel: usize,
    mux: Mux,
    gain: Gain,
    divider: PilotDivider,
    hysteresis: f32,
    shunt_ohms: f32,
    current_lsb: f32,
    watts_per_amp: f64,
}

impl Setup {
    fn of(ctx: &BuildContext<'_>) -> Result<Setup, BuildError> {
        let id = ctx.id;
        let channel = int_param(ctx, "pilot_channel")?;
        let (channel, mux) = match channel {
            0 => (0, Mux::Ain0),
            1 => (1, Mux::Ain1),
            2 => (2, Mux::Ain2),
            3 => (3, Mux::Ain3),
            other => {
                return Err(BuildError::new(format!(
                    "`{id}`: pilot_channel {other} is not an ADS1115 input (0 to 3)"
                )))
            }
        };
        let divider = PilotDivider {
            ratio: float_param(ctx, "divider_ratio")? as f32,
            offset_v: float_param(ctx, "divider_offset")? as f32,
        };
        // The smallest full scale that holds the pilot's whole swing.
        let swing = divider
            .adc_volts(PILOT_LIMIT_V)
            .abs()
            .max(divider.adc_volts(-PILOT_LIMIT_V).abs());
        let gain = [
            Gain::Fs0v256,
            Gain::Fs0v512,
            Gain::Fs1v024,
            Gain::Fs2v048,
            Gain::Fs4v096,
            Gain::Fs6v144,
        ]
        .into_iter()
        .find(|g| g.full_scale_volts() >= swing)
        .ok_or_else(|| {
            BuildError::new(format!(
                "`{id}`: with divider_ratio {} and divider_offset {} V the pilot reaches {swing:.2} V \
                 at the ADC, beyond the ADS1115's 6.144 V: lower the ratio or the offset",
                divider.ratio, divider.offset_v
            ))
            .at("divider_ratio")
        })?;
        let shunt_ohms = float_param(ctx, "shunt_ohms")? as f32;
        let current_lsb = float_param(ctx, "current_lsb")? as f32;
        if ina226::calibration_value(shunt_ohms, current_lsb).is_none() {
            return Err(BuildError::new(format!(
                "`{id}`: shunt_ohms {shunt_ohms} with current_lsb {current_lsb} A gives no valid \
                 INA226 calibration (0.00512 / (lsb x shunt) must be 1 to 32767): raise current_lsb"
            ))
            .at("current_lsb"));
        }
        Ok(Setup {
            pilot_address: address_param(ctx, "pilot_address")?,
            meter_address: address_param(ctx, "meter_address")?,
            channel,
            mux,
            gain,
            divider,
            hysteresis: float_param(ctx, "hysteresis")? as f32,
            shunt_ohms,
            current_lsb,
            watts_per_amp: int_param(ctx, "phases")? as f64 * float_param(ctx, "phase_volts")?,
        })
    }
}

/// What [`build`] checks before it opens a bus: the load-time check of the kind.
pub(crate) fn check(ctx: &BuildContext<'_>) -> Result<(), BuildError> {
    Setup::of(ctx)?;
    bus_and_injection(ctx, Wire::I2c, Fault::parse).map(drop)
}

fn build(ctx: &BuildContext<'_>) -> Result<Box<dyn Source>, BuildError> {
    let channels = outputs::<4>(ctx)?;
    let schedule = Schedule::of(ctx)?;
    let setup = Setup::of(ctx)?;
    let (bus, inject) = bus_and_injection(ctx, Wire::I2c, Fault::parse)?;
    match bus {
        Bus::Sim => {
            let sim = SimCharger::new(ctx, &setup, inject)?;
            let adc = Ads1115::new(sim.adc.clone(), setup.pilot_address);
            let meter = Ina226::new(sim.meter.clone(), setup.meter_address);
            Ok(Box::new(Charger::new(
                adc,
                meter,
                NoDelay,
                setup,
                Some(sim),
                channels,
                schedule,
            )))
        }
        Bus::I2c(path) | Bus::Spi(path) => {
            let adc = Ads1115::new(open_i2c(ctx.id, &path)?, setup.pilot_address);
            let meter = Ina226::new(open_i2c(ctx.id, &path)?, setup.meter_address);
            Ok(Box::new(Charger::new(
                adc, meter, Sleep, setup, None, channels, schedule,
            )))
        }
    }
}

/// The simulated chips and the model that sets them.
#[derive(Debug)]
pub struct SimCharger {
    adc: SimAds1115,
    meter: SimIna226,
    model: Ev,
    clock: SimClock,
    channel: usize,
    divider: PilotDivider,
    inject: Injection<Fault>,
}

impl SimCharger {
    fn new(
        ctx: &BuildContext<'_>,
        setup: &Setup,
        inject: Injection<Fault>,
    ) -> Result<SimCharger, BuildError> {
        let meter = SimIna226::new(setup.meter_address, f64::from(setup.shunt_ohms));
        meter.set_bus_volts(SIM_BUS_V);
        Ok(SimCharger {
            adc: SimAds1115::new(setup.pilot_address),
            meter,
            model: Ev {
                current: float_param(ctx, "sim_current")?,
            },
            clock: SimClock::new(float_param(ctx, "speed")?),
            channel: setup.channel,
            divider: setup.divider,
            inject,
        })
    }

    /// Sets the pilot and the current to the model's at `now`.
    fn feed(&self, now: EventTime) {
        let [pilot, amps, _watts] = self.model.read(self.clock.at(now));
        let volts = nominal_volts(pilot).unwrap_or(f64::NAN);
        self.adc.set_pilot_volts(self.channel, self.divider, volts);
        self.meter.set_current_a(amps);
        let fault = self.inject.at(now);
        let nack = fault == Some(Fault::Nack);
        self.adc.set_nack(nack);
        self.meter.set_nack(nack);
        self.adc.set_busy(fault == Some(Fault::AdcBusy));
    }

    /// The simulated ADC and current monitor, to inspect or to inject
    /// faults by hand.
    pub fn chips(&self) -> (&SimAds1115, &SimIna226) {
        (&self.adc, &self.meter)
    }
}

/// A running `ev_charger` source.
#[derive(Debug)]
pub struct Charger<A, M, D> {
    adc: Ads1115<A>,
    meter: Ina226<M>,
    delay: D,
    setup: Setup,
    classifier: PilotClassifier,
    sim: Option<SimCharger>,
    channels: [ChannelId; 4],
    schedule: Schedule,
    /// The INA226 has been calibrated since the last bus error.
    calibrated: bool,
    tally: Tally,
}

impl<A: I2c, M: I2c, D: DelayNs> Charger<A, M, D> {
    fn new(
        adc: Ads1115<A>,
        meter: Ina226<M>,
        delay: D,
        setup: Setup,
        sim: Option<SimCharger>,
        channels: [ChannelId; 4],
        schedule: Schedule,
    ) -> Self {
        Charger {
            adc,
            meter,
            delay,
            setup,
            classifier: PilotClassifier::new(setup.hysteresis),
            sim,
            channels,
            schedule,
            calibrated: false,
            tally: Tally::default(),
        }
    }

    fn read_pilot(&mut self, now: EventTime, out: &mut Vec<Record>) {
        let [pilot, pilot_volts, _, _] = self.channels;
        let Setup {
            mux, gain, divider, ..
        } = self.setup;
        let (adc, delay) = (&mut self.adc, &mut self.delay);
        let volts = self.tally.read(|| {
            let v = adc
                .read_volts(mux, gain, DataRate::Sps860, delay)
                .map_err(|e| match e {
                    ads1115::Error::Bus(_) => (Quality::COMM_ERROR, true),
                    ads1115::Error::Timeout => (Quality::DEVICE_FAULT, false),
                })?;
            divider
                .pilot_volts(v)
                .filter(|p| p.abs() <= PILOT_LIMIT_V)
                .map(f64::from)
                .ok_or((Quality::OUT_OF_RANGE, false))
        });
        let state = volts.and_then(|v| {
            self.classifier
                .update(v as f32)
                .map(state_number)
                .ok_or(Quality::OUT_OF_RANGE)
        });
        push(out, now, pilot, state);
        push(out, now, pilot_volts, volts);
    }

    fn read_meter(&mut self, now: EventTime, out: &mut Vec<Record>) {
        let [_, _, current, power] = self.channels;
        let meter = &mut self.meter;
        if !self.calibrated {
            let (shunt, lsb) = (self.setup.shunt_ohms, self.setup.current_lsb);
            match self
                .tally
                .read(|| meter.calibrate(shunt, lsb).map(f64::from).map_err(flag))
            {
                Ok(_) => self.calibrated = true,
                Err(q) => {
                    push(out, now, current, Err(q));
                    push(out, now, power, Err(q));
                    return;
                }
            }
        }
        let amps = self
            .tally
            .read(|| meter.current_a().map(f64::from).map_err(flag));
        push(out, now, current, amps);
        push(out, now, power, amps.map(|a| a * self.setup.watts_per_amp));
        if self.tally.bus_down {
            self.calibrated = false;
        }
    }
}

/// The flag of an INA226 error, and whether the bus failed.
fn flag<E>(e: ina226::Error<E>) -> (Quality, bool) {
    match e {
        ina226::Error::Bus(_) => (Quality::COMM_ERROR, true),
        ina226::Error::NotCalibrated | ina226::Error::InvalidCalibration { .. } => {
            (Quality::DEVICE_FAULT, false)
        }
    }
}

impl<A: I2c + Send, M: I2c + Send, D: DelayNs + Send> Source for Charger<A, M, D> {
    fn poll(&mut self, now: EventTime, out: &mut Vec<Record>) -> Option<EventTime> {
        if let Some(sim) = &self.sim {
            sim.feed(now);
        }
        // Two chips: a NACK from one does not keep the other from being read.
        self.tally.begin();
        self.read_pilot(now, out);
        self.tally.begin();
        self.read_meter(now, out);
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
    use crate::io::testing::{drive, source, text};
    use tandem_core::ParamValue;

    #[test]
    fn a_charging_car_reads_as_state_c_with_its_current_and_power() {
        let (mut src, table) = source("ev", &KIND, &[]).unwrap();
        // 18:30: charging at 16 A. Pilot 6 V -> 6 x 10/110 + 1.5 =
        // 2.045455 V at the ADC -> round(2.045455 / 4.096 x 32768) = 16364
        // -> 2.045500 V -> 6.00050 V on the pilot. INA226 at 2 mOhm, 1 mA:
        // CAL 2560, shunt 12800 x 2.5 uV, current 12800 x 2560 / 2048 =
        // 16000 mA; 3 x 230 V x 16 A = 11040 W.
        let got = poll_values(src.as_mut(), at(0, 18, 30));
        let g = Quality::GOOD;
        assert_eq!(got[0], (2.0, g));
        assert!((got[1].0 - 6.000_5).abs() < 1e-4, "{got:?}");
        assert_eq!(&got[2..], &[(16.0, g), (11_040.0, g)]);
        let mut out = Vec::new();
        src.poll(at(0, 18, 30), &mut out);
        let names: Vec<&str> = out.iter().map(|r| table.name(r.channel)).collect();
        assert_eq!(
            names,
            ["ev.pilot", "ev.pilot_volts", "ev.current", "ev.power"]
        );
        // 12:00 no car: 12 V, state A, no current.
        let (mut src, _) = source("ev", &KIND, &[]).unwrap();
        let got = poll_values(src.as_mut(), at(0, 12, 0));
        assert_eq!(got[0], (0.0, g));
        assert!((got[1].0 - 12.0).abs() < 1e-3, "{got:?}");
        assert_eq!(&got[2..], &[(0.0, g), (0.0, g)]);
        assert_eq!(src.errors(), 0);
    }

    #[test]
    fn a_compressed_day_shows_the_session_states_in_order() {
        let (mut src, table) = source(
            "ev",
            &KIND,
            &[
                ("speed", ParamValue::Float(8640.0)),
                ("period", ParamValue::Duration(10_000_000)),
            ],
        )
        .unwrap();
        let out = drive(
            src.as_mut(),
            EventTime(0),
            EventTime(10_000_000_000 - 1),
            2000,
        );
        let pilot = table.get("ev.pilot").unwrap();
        let mut states: Vec<f64> = out
            .iter()
            .filter(|r| r.channel == pilot)
            .map(|r| r.value)
            .collect();
        assert_eq!(states.len(), 1000);
        states.dedup();
        assert_eq!(states, [1.0, 0.0, 1.0, 2.0, 1.0]);
        assert_eq!(src.errors(), 0);
    }

    #[test]
    fn hysteresis_holds_the_state_near_a_band_edge() {
        let params = crate::io::testing::params(&KIND, &[]);
        let (table, outs) = crate::io::testing::outputs("ev", &KIND, &params);
        let table = std::sync::Arc::new(table);
        let ctx = BuildContext {
            id: "ev",
            params: &params,
            inputs: &[],
            outputs: &outs,
            channels: &table,
        };
        let setup = Setup::of(&ctx).unwrap();
        let adc = SimAds1115::new(0x48);
        let meter = SimIna226::new(0x40, 0.002);
        let mut src = Charger::new(
            Ads1115::new(adc.clone(), 0x48),
            Ina226::new(meter.clone(), 0x40),
            NoDelay,
            setup,
            None,
            [outs[0], outs[1], outs[2], outs[3]],
            Schedule::of(&ctx).unwrap(),
        );
        let mut state_at = |pilot_volts: f64| {
            adc.set_pilot_volts(0, setup.divider, pilot_volts);
            poll_values(&mut src, at(0, 0, 0))[0].0
        };
        // B is 7.5..10.5 V; with 0.5 V of hysteresis 7.2 V stays B, 6.9 V is C,
        // and back up 7.8 V stays C until 8.1 V.
        assert_eq!(state_at(9.0), 1.0);
        assert_eq!(state_at(7.2), 1.0);
        assert_eq!(state_at(6.9), 2.0);
        assert_eq!(state_at(7.8), 2.0);
        assert_eq!(state_at(8.1), 1.0);
        assert_eq!(state_at(0.0), 4.0);
        assert_eq!(state_at(-12.0), 5.0);
        // Beyond the pilot's range: flagged, and the state is kept.
        let got = {
            adc.set_input_volts(0, 4.0);
            poll_values(&mut src, at(0, 0, 0))
        };
        assert!(got[0].0.is_nan() && got[0].1 == Quality::OUT_OF_RANGE);
        assert!(got[1].0.is_nan() && got[1].1 == Quality::OUT_OF_RANGE);
        assert_eq!(src.errors(), 1);
    }

    fn injecting(fault: &str) -> Box<dyn Source> {
        source(
            "ev",
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
    fn a_nack_flags_every_record_counts_per_chip_and_the_next_poll_recovers() {
        let mut src = injecting("nack");
        let got = poll_values(src.as_mut(), at(0, 18, 30));
        assert!(got
            .iter()
            .all(|(v, q)| v.is_nan() && *q == Quality::COMM_ERROR));
        // One for the ADC, one for the INA226 calibration.
        assert_eq!(src.errors(), 2);
        let got = poll_values(src.as_mut(), at(0, 18, 30).add_nanos(1_000_000_000));
        let g = Quality::GOOD;
        assert_eq!(got[0], (2.0, g));
        assert_eq!(&got[2..], &[(16.0, g), (11_040.0, g)]);
        assert_eq!(src.errors(), 2);
    }

    #[test]
    fn a_busy_adc_is_a_device_fault_and_the_meter_still_reads() {
        let mut src = injecting("adc_busy");
        let got = poll_values(src.as_mut(), at(0, 18, 30));
        assert!(got[0].0.is_nan() && got[0].1 == Quality::DEVICE_FAULT);
        assert!(got[1].0.is_nan() && got[1].1 == Quality::DEVICE_FAULT);
        assert_eq!(got[2], (16.0, Quality::GOOD));
        assert_eq!(src.errors(), 1);
        let got = poll_values(src.as_mut(), at(0, 18, 30).add_nanos(1_000_000_000));
        assert_eq!(got[0], (2.0, Quality::GOOD));
    }

    #[test]
    fn impossible_boards_are_refused_when_built() {
        let err = source("ev", &KIND, &[("divider_offset", ParamValue::Float(5.0))])
            .err()
            .unwrap();
        assert!(
            err.message.contains("beyond the ADS1115's 6.144 V"),
            "{}",
            err.message
        );
        let err = source("ev", &KIND, &[("shunt_ohms", ParamValue::Float(0.0001))])
            .err()
            .unwrap();
        assert!(
            err.message.contains("no valid INA226 calibration"),
            "{}",
            err.message
        );
    }
}
