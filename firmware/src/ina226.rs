//! INA226 current, bus-voltage and power monitor (I2C, big-endian).
//!
//! Calibration: `CAL = 0.00512 / (current_lsb * r_shunt)`; then
//! current = CURRENT * current_lsb, power = POWER * 25 * current_lsb,
//! bus voltage = BUS * 1.25 mV, shunt voltage = SHUNT * 2.5 uV.

use embedded_hal::i2c::I2c;

/// Address with A0 and A1 tied to GND.
pub const DEFAULT_ADDRESS: u8 = 0x40;

/// Register pointers.
pub mod register {
    pub const CONFIG: u8 = 0x00;
    pub const SHUNT_VOLTAGE: u8 = 0x01;
    pub const BUS_VOLTAGE: u8 = 0x02;
    pub const POWER: u8 = 0x03;
    pub const CURRENT: u8 = 0x04;
    pub const CALIBRATION: u8 = 0x05;
    pub const MASK_ENABLE: u8 = 0x06;
    pub const ALERT_LIMIT: u8 = 0x07;
    pub const MANUFACTURER_ID: u8 = 0xFE;
    pub const DIE_ID: u8 = 0xFF;
}

/// Config register values.
pub mod config {
    /// Software reset.
    pub const RESET: u16 = 1 << 15;
    /// Power-on default: 1 average, 1.1 ms conversions, shunt+bus continuous.
    pub const DEFAULT: u16 = 0x4127;
}

/// MANUFACTURER_ID value ("TI").
pub const MANUFACTURER_TI: u16 = 0x5449;
/// Bus voltage LSB in volts.
pub const BUS_LSB_V: f32 = 1.25e-3;
/// Shunt voltage LSB in volts.
pub const SHUNT_LSB_V: f32 = 2.5e-6;

/// Errors of the INA226 driver.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Error<E> {
    /// The I2C bus failed.
    Bus(E),
    /// Current or power was read before [`Ina226::calibrate`].
    NotCalibrated,
    /// The shunt and LSB give a calibration outside 1..=0x7FFF; pick a
    /// larger current LSB (or a larger shunt).
    InvalidCalibration {
        /// shunt in ohms
        shunt_ohms: f32,
        /// current LSB in amperes
        current_lsb_a: f32,
    },
}

/// `CAL = 0.00512 / (current_lsb * r_shunt)`, rounded to nearest, or `None`
/// outside the 15-bit register range.
pub fn calibration_value(shunt_ohms: f32, current_lsb_a: f32) -> Option<u16> {
    let cal = 0.00512 / (current_lsb_a * shunt_ohms);
    (cal.is_finite() && (0.5..32767.5).contains(&cal)).then_some((cal + 0.5) as u16)
}

/// An INA226.
#[derive(Debug)]
pub struct Ina226<I2C> {
    i2c: I2C,
    address: u8,
    current_lsb_a: Option<f32>,
}

impl<I2C: I2c> Ina226<I2C> {
    /// A monitor at `address` (see [`DEFAULT_ADDRESS`]), not yet calibrated.
    pub fn new(i2c: I2C, address: u8) -> Self {
        Self {
            i2c,
            address,
            current_lsb_a: None,
        }
    }

    /// Gives the bus back.
    pub fn destroy(self) -> I2C {
        self.i2c
    }

    /// Reads a register (big-endian).
    pub fn read_register(&mut self, reg: u8) -> Result<u16, Error<I2C::Error>> {
        let mut buf = [0u8; 2];
        self.i2c
            .write_read(self.address, &[reg], &mut buf)
            .map_err(Error::Bus)?;
        Ok(u16::from_be_bytes(buf))
    }

    /// Writes a register (big-endian).
    pub fn write_register(&mut self, reg: u8, value: u16) -> Result<(), Error<I2C::Error>> {
        let [hi, lo] = value.to_be_bytes();
        self.i2c
            .write(self.address, &[reg, hi, lo])
            .map_err(Error::Bus)
    }

    /// Writes the calibration register and remembers the current LSB.
    /// Returns the value written.
    ///
    /// The current register is 16-bit signed, so readings saturate at
    /// +-32767 x `current_lsb_a` (32.767 A with a 1 mA LSB): pick
    /// `current_lsb_a >= max_expected_current / 32767`.
    pub fn calibrate(
        &mut self,
        shunt_ohms: f32,
        current_lsb_a: f32,
    ) -> Result<u16, Error<I2C::Error>> {
        let cal =
            calibration_value(shunt_ohms, current_lsb_a).ok_or(Error::InvalidCalibration {
                shunt_ohms,
                current_lsb_a,
            })?;
        self.write_register(register::CALIBRATION, cal)?;
        self.current_lsb_a = Some(current_lsb_a);
        Ok(cal)
    }

    /// Writes the config register (averaging, conversion times, mode).
    pub fn set_config(&mut self, value: u16) -> Result<(), Error<I2C::Error>> {
        self.write_register(register::CONFIG, value)
    }

    /// Bus voltage in volts.
    pub fn bus_voltage_v(&mut self) -> Result<f32, Error<I2C::Error>> {
        Ok(f32::from(self.read_register(register::BUS_VOLTAGE)?) * BUS_LSB_V)
    }

    /// Shunt voltage in volts (signed).
    pub fn shunt_voltage_v(&mut self) -> Result<f32, Error<I2C::Error>> {
        Ok(f32::from(self.read_register(register::SHUNT_VOLTAGE)? as i16) * SHUNT_LSB_V)
    }

    /// Current in amperes (signed).
    pub fn current_a(&mut self) -> Result<f32, Error<I2C::Error>> {
        let lsb = self.current_lsb_a.ok_or(Error::NotCalibrated)?;
        Ok(f32::from(self.read_register(register::CURRENT)? as i16) * lsb)
    }

    /// Power in watts.
    pub fn power_w(&mut self) -> Result<f32, Error<I2C::Error>> {
        let lsb = self.current_lsb_a.ok_or(Error::NotCalibrated)?;
        Ok(f32::from(self.read_register(register::POWER)?) * 25.0 * lsb)
    }

    /// MANUFACTURER_ID register ([`MANUFACTURER_TI`] on a genuine part).
    pub fn manufacturer_id(&mut self) -> Result<u16, Error<I2C::Error>> {
        self.read_register(register::MANUFACTURER_ID)
    }
}
