//! Simulated INA226 current and power monitor.

use std::sync::{Arc, Mutex};

use embedded_hal::i2c::{ErrorType, I2c, Operation};

use super::{lock, sat_i16, sat_u16, SimError};
use crate::ina226::{config, register, DEFAULT_ADDRESS, MANUFACTURER_TI};

#[derive(Debug)]
struct State {
    address: u8,
    shunt_ohms: f64,
    current_a: f64,
    bus_volts: f64,
    config: u16,
    calibration: u16,
    mask_enable: u16,
    alert_limit: u16,
    pointer: u8,
    nack: bool,
}

impl State {
    fn shunt_reg(&self) -> i16 {
        sat_i16(self.current_a * self.shunt_ohms / 2.5e-6)
    }

    fn bus_reg(&self) -> u16 {
        sat_u16(self.bus_volts / 1.25e-3).min(0x7FFF)
    }

    /// CURRENT = SHUNT * CAL / 2048 (datasheet equation 3).
    fn current_reg(&self) -> i16 {
        sat_i16(f64::from(self.shunt_reg()) * f64::from(self.calibration) / 2048.0)
    }

    /// POWER = CURRENT * BUS / 20000 (datasheet equation 4).
    fn power_reg(&self) -> u16 {
        sat_u16((f64::from(self.current_reg()) * f64::from(self.bus_reg()) / 20000.0).abs())
    }

    fn register(&self, reg: u8) -> u16 {
        match reg {
            register::CONFIG => self.config,
            register::SHUNT_VOLTAGE => self.shunt_reg() as u16,
            register::BUS_VOLTAGE => self.bus_reg(),
            register::POWER => self.power_reg(),
            register::CURRENT => self.current_reg() as u16,
            register::CALIBRATION => self.calibration,
            register::MASK_ENABLE => self.mask_enable,
            register::ALERT_LIMIT => self.alert_limit,
            register::MANUFACTURER_ID => MANUFACTURER_TI,
            register::DIE_ID => 0x2260,
            _ => 0xFFFF,
        }
    }

    fn write(&mut self, bytes: &[u8]) {
        let Some((&ptr, data)) = bytes.split_first() else {
            return;
        };
        self.pointer = ptr;
        if let [hi, lo, ..] = data {
            let v = u16::from_be_bytes([*hi, *lo]);
            match ptr {
                register::CONFIG if v & config::RESET != 0 => {
                    self.config = config::DEFAULT;
                    self.calibration = 0;
                }
                register::CONFIG => self.config = v,
                register::CALIBRATION => self.calibration = v & 0x7FFF,
                register::MASK_ENABLE => self.mask_enable = v,
                register::ALERT_LIMIT => self.alert_limit = v,
                _ => {}
            }
        }
    }
}

/// A simulated INA226 with a given shunt: set the current through it and
/// the bus voltage; the shunt, current and power registers follow the
/// datasheet equations (saturating like the chip).
#[derive(Debug, Clone)]
pub struct SimIna226 {
    state: Arc<Mutex<State>>,
}

impl SimIna226 {
    /// A monitor at `address` with a `shunt_ohms` shunt, 0 A, 0 V,
    /// uncalibrated.
    pub fn new(address: u8, shunt_ohms: f64) -> Self {
        Self {
            state: Arc::new(Mutex::new(State {
                address,
                shunt_ohms,
                current_a: 0.0,
                bus_volts: 0.0,
                config: config::DEFAULT,
                calibration: 0,
                mask_enable: 0,
                alert_limit: 0,
                pointer: 0,
                nack: false,
            })),
        }
    }

    /// A monitor at the default address 0x40.
    pub fn with_shunt(shunt_ohms: f64) -> Self {
        Self::new(DEFAULT_ADDRESS, shunt_ohms)
    }

    /// Current through the shunt in amperes (signed).
    pub fn set_current_a(&self, amps: f64) {
        lock(&self.state).current_a = amps;
    }

    /// Bus voltage in volts (saturates at 40.96 V).
    pub fn set_bus_volts(&self, volts: f64) {
        lock(&self.state).bus_volts = volts;
    }

    /// Every transfer is not acknowledged while `on`.
    pub fn set_nack(&self, on: bool) {
        lock(&self.state).nack = on;
    }

    /// The calibration register as last written.
    pub fn calibration(&self) -> u16 {
        lock(&self.state).calibration
    }
}

impl ErrorType for SimIna226 {
    type Error = SimError;
}

impl I2c for SimIna226 {
    fn transaction(
        &mut self,
        address: u8,
        operations: &mut [Operation<'_>],
    ) -> Result<(), Self::Error> {
        let mut st = lock(&self.state);
        if st.nack || address != st.address {
            return Err(SimError::Nack);
        }
        for op in operations {
            match op {
                Operation::Write(bytes) => st.write(bytes),
                Operation::Read(buf) => {
                    let v = st.register(st.pointer);
                    for (dst, src) in buf.iter_mut().zip(v.to_be_bytes().into_iter().cycle()) {
                        *dst = src;
                    }
                }
            }
        }
        Ok(())
    }
}
