//! MAX17048 single-cell fuel gauge (I2C address 0x36, big-endian registers).

use embedded_hal::i2c::I2c;

/// Fixed I2C address of the MAX17048.
pub const ADDRESS: u8 = 0x36;

/// Register addresses.
pub mod register {
    pub const VCELL: u8 = 0x02;
    pub const SOC: u8 = 0x04;
    pub const MODE: u8 = 0x06;
    pub const VERSION: u8 = 0x08;
    pub const HIBRT: u8 = 0x0A;
    pub const CONFIG: u8 = 0x0C;
    pub const VALRT: u8 = 0x14;
    pub const CRATE: u8 = 0x16;
    pub const VRESET_ID: u8 = 0x18;
    pub const STATUS: u8 = 0x1A;
    pub const CMD: u8 = 0xFE;
}

/// STATUS register bits (in the 16-bit word; the status byte is the high one).
pub mod status {
    /// Reset indicator: the device powered up and needs configuring.
    pub const RI: u16 = 1 << 8;
    /// VCELL went above VALRT.MAX.
    pub const VH: u16 = 1 << 9;
    /// VCELL went below VALRT.MIN.
    pub const VL: u16 = 1 << 10;
    /// Voltage reset alert.
    pub const VR: u16 = 1 << 11;
    /// SOC low (below CONFIG.ATHD).
    pub const HD: u16 = 1 << 12;
    /// SOC changed by 1 %.
    pub const SC: u16 = 1 << 13;
    /// Enable voltage reset alert.
    pub const ENVR: u16 = 1 << 14;
    /// All alert bits (not ENVR).
    pub const ALERTS: u16 = RI | VH | VL | VR | HD | SC;
}

/// CONFIG register bits.
pub mod config {
    /// Alert flag: an alert is asserted; write 0 to clear.
    pub const ALRT: u16 = 1 << 5;
    /// Alert on every 1 % SOC change.
    pub const ALSC: u16 = 1 << 6;
    /// Sleep.
    pub const SLEEP: u16 = 1 << 7;
}

/// MODE value that restarts the fuel-gauge calculation.
pub const MODE_QUICK_START: u16 = 0x4000;
/// CMD value that resets the chip (the chip may not acknowledge it).
pub const CMD_POWER_ON_RESET: u16 = 0x5400;

/// Errors of the MAX17048 driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error<E> {
    /// The I2C bus failed.
    Bus(E),
}

/// STATUS word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status(pub u16);

impl Status {
    /// True when `bit` (one of [`status`]) is set.
    pub fn has(self, bit: u16) -> bool {
        self.0 & bit != 0
    }
    /// The alert bits that are set.
    pub fn alerts(self) -> u16 {
        self.0 & status::ALERTS
    }
}

/// A MAX17048 fuel gauge.
#[derive(Debug)]
pub struct Max17048<I2C> {
    i2c: I2C,
}

impl<I2C: I2c> Max17048<I2C> {
    /// A gauge on `i2c` at [`ADDRESS`].
    pub fn new(i2c: I2C) -> Self {
        Self { i2c }
    }

    /// Gives the bus back.
    pub fn destroy(self) -> I2C {
        self.i2c
    }

    /// Reads a register (big-endian).
    pub fn read_register(&mut self, reg: u8) -> Result<u16, Error<I2C::Error>> {
        let mut buf = [0u8; 2];
        self.i2c
            .write_read(ADDRESS, &[reg], &mut buf)
            .map_err(Error::Bus)?;
        Ok(u16::from_be_bytes(buf))
    }

    /// Writes a register (big-endian).
    pub fn write_register(&mut self, reg: u8, value: u16) -> Result<(), Error<I2C::Error>> {
        let [hi, lo] = value.to_be_bytes();
        self.i2c.write(ADDRESS, &[reg, hi, lo]).map_err(Error::Bus)
    }

    /// Cell voltage in microvolts (78.125 uV per LSB).
    pub fn cell_voltage_uv(&mut self) -> Result<u32, Error<I2C::Error>> {
        Ok(vcell_to_uv(self.read_register(register::VCELL)?))
    }

    /// State of charge in percent (1/256 % per LSB). May exceed 100 right
    /// after a quick start; not clamped.
    pub fn soc_percent(&mut self) -> Result<f32, Error<I2C::Error>> {
        Ok(soc_to_percent(self.read_register(register::SOC)?))
    }

    /// Charge (positive) or discharge rate in percent per hour
    /// (0.208 %/h per LSB, signed).
    pub fn charge_rate_percent_per_hour(&mut self) -> Result<f32, Error<I2C::Error>> {
        Ok(crate_to_percent_per_hour(
            self.read_register(register::CRATE)?,
        ))
    }

    /// Production version (VERSION register).
    pub fn version(&mut self) -> Result<u16, Error<I2C::Error>> {
        self.read_register(register::VERSION)
    }

    /// STATUS register.
    pub fn status(&mut self) -> Result<Status, Error<I2C::Error>> {
        self.read_register(register::STATUS).map(Status)
    }

    /// Clears the alert bits in `mask` (of [`status`]) and the CONFIG.ALRT
    /// flag, so that the ALRT pin is released.
    pub fn clear_alerts(&mut self, mask: u16) -> Result<(), Error<I2C::Error>> {
        let st = self.read_register(register::STATUS)?;
        self.write_register(register::STATUS, st & !(mask & status::ALERTS))?;
        let cfg = self.read_register(register::CONFIG)?;
        self.write_register(register::CONFIG, cfg & !config::ALRT)
    }

    /// Restarts fuel-gauge calculations (MODE.QuickStart).
    pub fn quick_start(&mut self) -> Result<(), Error<I2C::Error>> {
        self.write_register(register::MODE, MODE_QUICK_START)
    }
}

/// VCELL register to microvolts: `raw * 78.125` = `raw * 625 / 8`.
pub fn vcell_to_uv(raw: u16) -> u32 {
    u32::from(raw) * 625 / 8
}

/// SOC register to percent: `raw / 256`.
pub fn soc_to_percent(raw: u16) -> f32 {
    f32::from(raw) / 256.0
}

/// CRATE register to percent per hour: `raw as i16 * 0.208`.
pub fn crate_to_percent_per_hour(raw: u16) -> f32 {
    f32::from(raw as i16) * 0.208
}
