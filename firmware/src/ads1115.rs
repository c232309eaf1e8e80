//! ADS1115 16-bit ADC (I2C, big-endian registers), used single-shot.
//!
//! A conversion is started by writing the config register with OS set; the
//! chip clears OS while converting and sets it again when the result is in
//! the conversion register (signed, big-endian).

use embedded_hal::delay::DelayNs;
use embedded_hal::i2c::I2c;

/// Address with ADDR tied to GND (0x49 VDD, 0x4A SDA, 0x4B SCL).
pub const DEFAULT_ADDRESS: u8 = 0x48;

/// Register pointers.
pub mod register {
    pub const CONVERSION: u8 = 0x00;
    pub const CONFIG: u8 = 0x01;
    pub const LO_THRESH: u8 = 0x02;
    pub const HI_THRESH: u8 = 0x03;
}

/// Config register fields.
pub mod config {
    /// Write: start a single conversion. Read: 1 = idle (result ready).
    pub const OS: u16 = 1 << 15;
    /// Shift of the MUX field (bits 14:12).
    pub const MUX_SHIFT: u16 = 12;
    /// Shift of the PGA field (bits 11:9).
    pub const PGA_SHIFT: u16 = 9;
    /// Single-shot / power-down mode.
    pub const MODE_SINGLE: u16 = 1 << 8;
    /// Shift of the data-rate field (bits 7:5).
    pub const DR_SHIFT: u16 = 5;
    /// Comparator disabled (COMP_QUE = 11).
    pub const COMP_DISABLE: u16 = 0b11;
    /// Power-on default.
    pub const DEFAULT: u16 = 0x8583;
}

/// Input multiplexer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mux {
    /// AIN0 - AIN1 (differential)
    Ain0Ain1 = 0,
    /// AIN0 - AIN3
    Ain0Ain3 = 1,
    /// AIN1 - AIN3
    Ain1Ain3 = 2,
    /// AIN2 - AIN3
    Ain2Ain3 = 3,
    /// AIN0 - GND
    Ain0 = 4,
    /// AIN1 - GND
    Ain1 = 5,
    /// AIN2 - GND
    Ain2 = 6,
    /// AIN3 - GND
    Ain3 = 7,
}

/// Programmable gain: full-scale range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gain {
    /// +-6.144 V
    Fs6v144 = 0,
    /// +-4.096 V
    Fs4v096 = 1,
    /// +-2.048 V (default)
    Fs2v048 = 2,
    /// +-1.024 V
    Fs1v024 = 3,
    /// +-0.512 V
    Fs0v512 = 4,
    /// +-0.256 V
    Fs0v256 = 5,
}

impl Gain {
    /// Full-scale voltage.
    pub fn full_scale_volts(self) -> f32 {
        match self {
            Gain::Fs6v144 => 6.144,
            Gain::Fs4v096 => 4.096,
            Gain::Fs2v048 => 2.048,
            Gain::Fs1v024 => 1.024,
            Gain::Fs0v512 => 0.512,
            Gain::Fs0v256 => 0.256,
        }
    }

    /// Converts a conversion-register value to volts.
    pub fn volts(self, raw: i16) -> f32 {
        f32::from(raw) * self.full_scale_volts() / 32768.0
    }
}

/// Samples per second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataRate {
    Sps8 = 0,
    Sps16 = 1,
    Sps32 = 2,
    Sps64 = 3,
    Sps128 = 4,
    Sps250 = 5,
    Sps475 = 6,
    Sps860 = 7,
}

impl DataRate {
    /// Conversion time in microseconds (1 / rate, rounded up, plus 10 %).
    pub fn conversion_us(self) -> u32 {
        let sps: u32 = match self {
            DataRate::Sps8 => 8,
            DataRate::Sps16 => 16,
            DataRate::Sps32 => 32,
            DataRate::Sps64 => 64,
            DataRate::Sps128 => 128,
            DataRate::Sps250 => 250,
            DataRate::Sps475 => 475,
            DataRate::Sps860 => 860,
        };
        1_100_000 / sps + 1
    }
}

/// The config word for a single-shot conversion, comparator off.
pub fn single_shot_config(mux: Mux, gain: Gain, rate: DataRate) -> u16 {
    config::OS
        | (mux as u16) << config::MUX_SHIFT
        | (gain as u16) << config::PGA_SHIFT
        | config::MODE_SINGLE
        | (rate as u16) << config::DR_SHIFT
        | config::COMP_DISABLE
}

/// Errors of the ADS1115 driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error<E> {
    /// The I2C bus failed.
    Bus(E),
    /// The conversion did not finish within 4 conversion times.
    Timeout,
}

/// An ADS1115.
#[derive(Debug)]
pub struct Ads1115<I2C> {
    i2c: I2C,
    address: u8,
}

impl<I2C: I2c> Ads1115<I2C> {
    /// An ADC at `address` (see [`DEFAULT_ADDRESS`]).
    pub fn new(i2c: I2C, address: u8) -> Self {
        Self { i2c, address }
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

    /// One single-shot conversion: start, wait one conversion time, then
    /// poll OS (up to 3 more conversion times) and read the result.
    pub fn read_single(
        &mut self,
        mux: Mux,
        gain: Gain,
        rate: DataRate,
        delay: &mut impl DelayNs,
    ) -> Result<i16, Error<I2C::Error>> {
        self.write_register(register::CONFIG, single_shot_config(mux, gain, rate))?;
        for _ in 0..4 {
            delay.delay_us(rate.conversion_us());
            if self.read_register(register::CONFIG)? & config::OS != 0 {
                return Ok(self.read_register(register::CONVERSION)? as i16);
            }
        }
        Err(Error::Timeout)
    }

    /// One single-shot conversion in volts.
    pub fn read_volts(
        &mut self,
        mux: Mux,
        gain: Gain,
        rate: DataRate,
        delay: &mut impl DelayNs,
    ) -> Result<f32, Error<I2C::Error>> {
        Ok(gain.volts(self.read_single(mux, gain, rate, delay)?))
    }
}
