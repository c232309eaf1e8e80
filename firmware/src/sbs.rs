//! Smart Battery System 1.1 battery over SMBus (default address 0x0B).
//!
//! Words are little-endian (SMBus). Every read is a `write_read`: the command
//! byte, a repeated start, then the data and, when PEC is on, the PEC byte.
//!
//! # PEC and packs that get it wrong
//!
//! PEC is checked by default. Some packs advertise PEC but compute it wrongly
//! (or send a constant). The driver tells such a pack from a noisy line this
//! way: when a word read fails its PEC check, it is read once more.
//!
//! * The second read passes: it was noise; the value is returned and
//!   [`PecStats::recovered`] counts it.
//! * The second read fails too and is **byte-identical** to the first (same
//!   data, same wrong PEC, and not all `0xFF`, which is a floating bus): the
//!   pack is consistent, its PEC is not. After
//!   [`PEC_FALLBACK_AFTER`] such commands in a row the driver stops checking
//!   PEC ([`PecMode::FallenBack`], counted in [`PecStats::fallbacks`]) and
//!   returns the value. Before that it returns [`Error::Pec`].
//! * Otherwise it returns [`Error::Pec`].
//!
//! [`SmartBattery::set_pec`] turns checking back on (or off) by hand.

use embedded_hal::i2c::I2c;

use crate::smbus::{self, FrameError, MAX_BLOCK_LEN};

/// Default SMBus address of a smart battery.
pub const DEFAULT_ADDRESS: u8 = 0x0B;

/// Consecutive commands with an identical repeated bad PEC after which PEC
/// checking is switched off.
pub const PEC_FALLBACK_AFTER: u8 = 2;

/// SBS 1.1 command codes.
pub mod register {
    pub const MANUFACTURER_ACCESS: u8 = 0x00;
    pub const REMAINING_CAPACITY_ALARM: u8 = 0x01;
    pub const REMAINING_TIME_ALARM: u8 = 0x02;
    pub const BATTERY_MODE: u8 = 0x03;
    pub const AT_RATE: u8 = 0x04;
    pub const TEMPERATURE: u8 = 0x08;
    pub const VOLTAGE: u8 = 0x09;
    pub const CURRENT: u8 = 0x0A;
    pub const AVERAGE_CURRENT: u8 = 0x0B;
    pub const MAX_ERROR: u8 = 0x0C;
    pub const RELATIVE_STATE_OF_CHARGE: u8 = 0x0D;
    pub const ABSOLUTE_STATE_OF_CHARGE: u8 = 0x0E;
    pub const REMAINING_CAPACITY: u8 = 0x0F;
    pub const FULL_CHARGE_CAPACITY: u8 = 0x10;
    pub const RUN_TIME_TO_EMPTY: u8 = 0x11;
    pub const AVERAGE_TIME_TO_EMPTY: u8 = 0x12;
    pub const AVERAGE_TIME_TO_FULL: u8 = 0x13;
    pub const CHARGING_CURRENT: u8 = 0x14;
    pub const CHARGING_VOLTAGE: u8 = 0x15;
    pub const BATTERY_STATUS: u8 = 0x16;
    pub const CYCLE_COUNT: u8 = 0x17;
    pub const DESIGN_CAPACITY: u8 = 0x18;
    pub const DESIGN_VOLTAGE: u8 = 0x19;
    pub const SPECIFICATION_INFO: u8 = 0x1A;
    pub const MANUFACTURE_DATE: u8 = 0x1B;
    pub const SERIAL_NUMBER: u8 = 0x1C;
    pub const MANUFACTURER_NAME: u8 = 0x20;
    pub const DEVICE_NAME: u8 = 0x21;
    pub const DEVICE_CHEMISTRY: u8 = 0x22;
    pub const MANUFACTURER_DATA: u8 = 0x23;
}

/// BatteryMode (0x03) bits.
pub mod battery_mode {
    /// Capacities are reported in 10 mWh instead of mAh.
    pub const CAPACITY_MODE: u16 = 1 << 15;
    /// Charger broadcasts disabled.
    pub const CHARGER_MODE: u16 = 1 << 14;
    /// Alarm broadcasts disabled.
    pub const ALARM_MODE: u16 = 1 << 13;
    /// Internal charge controller enabled.
    pub const CHARGE_CONTROLLER_ENABLED: u16 = 1 << 8;
    /// Conditioning cycle requested.
    pub const CONDITION_FLAG: u16 = 1 << 7;
}

/// BatteryStatus (0x16) bits.
pub mod status {
    pub const OVER_CHARGED_ALARM: u16 = 0x8000;
    pub const TERMINATE_CHARGE_ALARM: u16 = 0x4000;
    pub const OVER_TEMP_ALARM: u16 = 0x1000;
    pub const TERMINATE_DISCHARGE_ALARM: u16 = 0x0800;
    pub const REMAINING_CAPACITY_ALARM: u16 = 0x0200;
    pub const REMAINING_TIME_ALARM: u16 = 0x0100;
    pub const INITIALIZED: u16 = 0x0080;
    pub const DISCHARGING: u16 = 0x0040;
    pub const FULLY_CHARGED: u16 = 0x0020;
    pub const FULLY_DISCHARGED: u16 = 0x0010;
    /// Mask of the error code in the low nibble.
    pub const ERROR_CODE_MASK: u16 = 0x000F;
    /// All alarm bits.
    pub const ALARMS: u16 = OVER_CHARGED_ALARM
        | TERMINATE_CHARGE_ALARM
        | OVER_TEMP_ALARM
        | TERMINATE_DISCHARGE_ALARM
        | REMAINING_CAPACITY_ALARM
        | REMAINING_TIME_ALARM;
}

/// Errors of the smart battery driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error<E> {
    /// The I2C bus failed (NACK, arbitration loss, ..).
    Bus(E),
    /// The PEC byte did not match, twice in a row, for `command`.
    Pec {
        /// command that was read
        command: u8,
        /// PEC computed over the frame
        expected: u8,
        /// PEC the pack sent
        received: u8,
    },
    /// A block read announced a length over 32 or past what was read.
    BlockLength {
        /// command that was read
        command: u8,
        /// length byte the pack sent
        length: u8,
    },
    /// The pack returned a value outside the range SBS 1.1 allows
    /// (for example a relative state of charge over 100 %).
    OutOfRange {
        /// command that was read
        command: u8,
        /// raw word
        value: u16,
    },
    /// SpecificationInfo gives a VScale or IPScale exponent over 3, which
    /// SBS 1.1 does not define; the scales in use are left unchanged.
    UnsupportedScale {
        /// raw SpecificationInfo word
        info: u16,
    },
}

/// Whether PEC is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PecMode {
    /// PEC is read and checked on every transfer.
    Checked,
    /// PEC was turned off by the caller.
    Off,
    /// PEC was turned off because the pack's PEC is consistently wrong.
    FallenBack,
}

/// PEC counters, for diagnostics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PecStats {
    /// Reads whose first PEC check failed.
    pub mismatches: u32,
    /// Reads whose retry passed the PEC check.
    pub recovered: u32,
    /// Times PEC checking was switched off by detection.
    pub fallbacks: u32,
}

/// Unit of capacities, from BatteryMode.CAPACITY_MODE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapacityUnit {
    /// milliampere-hours (CAPACITY_MODE clear)
    MilliAmpHours,
    /// tens of milliwatt-hours (CAPACITY_MODE set)
    TenMilliWattHours,
}

/// A capacity in the pack's current unit, already multiplied by IPScale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    /// value in `unit`
    pub value: u32,
    /// unit of `value`
    pub unit: CapacityUnit,
}

impl Capacity {
    /// The capacity in mAh, or `None` if the pack reports energy.
    pub fn milliamp_hours(self) -> Option<u32> {
        match self.unit {
            CapacityUnit::MilliAmpHours => Some(self.value),
            CapacityUnit::TenMilliWattHours => None,
        }
    }

    /// The capacity in mWh, or `None` if the pack reports charge.
    pub fn milliwatt_hours(self) -> Option<u64> {
        match self.unit {
            CapacityUnit::MilliAmpHours => None,
            CapacityUnit::TenMilliWattHours => Some(u64::from(self.value) * 10),
        }
    }
}

/// The error code in the low nibble of BatteryStatus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusError {
    Ok,
    Busy,
    ReservedCommand,
    UnsupportedCommand,
    AccessDenied,
    OverflowUnderflow,
    BadSize,
    UnknownError,
    /// Codes 8..=15 are not defined by SBS 1.1.
    Undefined(u8),
}

/// BatteryStatus word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatteryStatus(pub u16);

impl BatteryStatus {
    /// True when `bit` (one of [`status`]) is set.
    pub fn has(self, bit: u16) -> bool {
        self.0 & bit != 0
    }
    /// The alarm bits only.
    pub fn alarms(self) -> u16 {
        self.0 & status::ALARMS
    }
    /// The error code of the last command.
    pub fn error_code(self) -> StatusError {
        match (self.0 & status::ERROR_CODE_MASK) as u8 {
            0 => StatusError::Ok,
            1 => StatusError::Busy,
            2 => StatusError::ReservedCommand,
            3 => StatusError::UnsupportedCommand,
            4 => StatusError::AccessDenied,
            5 => StatusError::OverflowUnderflow,
            6 => StatusError::BadSize,
            7 => StatusError::UnknownError,
            other => StatusError::Undefined(other),
        }
    }
}

/// SpecificationInfo word, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpecificationInfo {
    /// bits 0..3
    pub revision: u8,
    /// bits 4..7: 1 = 1.0, 2 = 1.1, 3 = 1.1 with optional PEC
    pub version: u8,
    /// bits 8..11: voltages are multiplied by 10^vscale
    pub vscale: u8,
    /// bits 12..15: currents and capacities are multiplied by 10^ipscale
    pub ipscale: u8,
}

impl SpecificationInfo {
    /// Splits the raw word into its fields.
    pub fn from_word(word: u16) -> Self {
        Self {
            revision: (word & 0x0F) as u8,
            version: ((word >> 4) & 0x0F) as u8,
            vscale: ((word >> 8) & 0x0F) as u8,
            ipscale: ((word >> 12) & 0x0F) as u8,
        }
    }
}

const fn pow10(exp: u8) -> Option<u32> {
    match exp {
        0 => Some(1),
        1 => Some(10),
        2 => Some(100),
        3 => Some(1000),
        _ => None,
    }
}

/// A Smart Battery System 1.1 pack.
#[derive(Debug)]
pub struct SmartBattery<I2C> {
    i2c: I2C,
    address: u8,
    pec: PecMode,
    stats: PecStats,
    consistent_bad: u8,
    vscale: u32,
    ipscale: u32,
    capacity_unit: CapacityUnit,
}

impl<I2C: I2c> SmartBattery<I2C> {
    /// A pack at [`DEFAULT_ADDRESS`] with PEC checked, scales 1 and
    /// capacities in mAh until [`init`](Self::init) reads the pack's.
    pub fn new(i2c: I2C) -> Self {
        Self::with_address(i2c, DEFAULT_ADDRESS)
    }

    /// A pack at another 7-bit address.
    pub fn with_address(i2c: I2C, address: u8) -> Self {
        Self {
            i2c,
            address,
            pec: PecMode::Checked,
            stats: PecStats::default(),
            consistent_bad: 0,
            vscale: 1,
            ipscale: 1,
            capacity_unit: CapacityUnit::MilliAmpHours,
        }
    }

    /// Gives the bus back.
    pub fn destroy(self) -> I2C {
        self.i2c
    }

    /// Reads SpecificationInfo (scales) and BatteryMode (capacity unit).
    pub fn init(&mut self) -> Result<SpecificationInfo, Error<I2C::Error>> {
        let info = self.specification_info()?;
        self.battery_mode()?;
        Ok(info)
    }

    /// Current PEC mode.
    pub fn pec_mode(&self) -> PecMode {
        self.pec
    }

    /// Turns PEC checking on or off (resets the fallback detection).
    pub fn set_pec(&mut self, on: bool) {
        self.pec = if on { PecMode::Checked } else { PecMode::Off };
        self.consistent_bad = 0;
    }

    /// PEC counters.
    pub fn pec_stats(&self) -> PecStats {
        self.stats
    }

    /// Unit of capacities as last read from BatteryMode.
    pub fn capacity_unit(&self) -> CapacityUnit {
        self.capacity_unit
    }

    /// Reads SpecificationInfo and adopts its VScale and IPScale.
    pub fn specification_info(&mut self) -> Result<SpecificationInfo, Error<I2C::Error>> {
        let word = self.read_word(register::SPECIFICATION_INFO)?;
        let info = SpecificationInfo::from_word(word);
        match (pow10(info.vscale), pow10(info.ipscale)) {
            (Some(v), Some(ip)) => {
                self.vscale = v;
                self.ipscale = ip;
                Ok(info)
            }
            _ => Err(Error::UnsupportedScale { info: word }),
        }
    }

    /// Reads BatteryMode and adopts its capacity unit.
    pub fn battery_mode(&mut self) -> Result<u16, Error<I2C::Error>> {
        let mode = self.read_word(register::BATTERY_MODE)?;
        self.capacity_unit = if mode & battery_mode::CAPACITY_MODE != 0 {
            CapacityUnit::TenMilliWattHours
        } else {
            CapacityUnit::MilliAmpHours
        };
        Ok(mode)
    }

    /// Sets or clears BatteryMode.CAPACITY_MODE (read-modify-write).
    pub fn set_capacity_unit(&mut self, unit: CapacityUnit) -> Result<(), Error<I2C::Error>> {
        let mode = self.battery_mode()?;
        let mode = match unit {
            CapacityUnit::MilliAmpHours => mode & !battery_mode::CAPACITY_MODE,
            CapacityUnit::TenMilliWattHours => mode | battery_mode::CAPACITY_MODE,
        };
        self.write_word(register::BATTERY_MODE, mode)?;
        self.capacity_unit = unit;
        Ok(())
    }

    /// Temperature in 0.1 K, as the pack reports it.
    pub fn temperature_deci_kelvin(&mut self) -> Result<u16, Error<I2C::Error>> {
        self.read_word(register::TEMPERATURE)
    }

    /// Temperature in degrees Celsius.
    pub fn temperature_celsius(&mut self) -> Result<f32, Error<I2C::Error>> {
        Ok(f32::from(self.temperature_deci_kelvin()?) / 10.0 - 273.15)
    }

    /// Pack voltage in mV, multiplied by VScale.
    pub fn voltage_mv(&mut self) -> Result<u32, Error<I2C::Error>> {
        Ok(u32::from(self.read_word(register::VOLTAGE)?) * self.vscale)
    }

    /// Current in mA (positive charging), multiplied by IPScale.
    pub fn current_ma(&mut self) -> Result<i32, Error<I2C::Error>> {
        let raw = self.read_word(register::CURRENT)? as i16;
        Ok(i32::from(raw) * self.ipscale as i32)
    }

    /// One-minute rolling average current in mA, multiplied by IPScale.
    pub fn average_current_ma(&mut self) -> Result<i32, Error<I2C::Error>> {
        let raw = self.read_word(register::AVERAGE_CURRENT)? as i16;
        Ok(i32::from(raw) * self.ipscale as i32)
    }

    /// Relative state of charge in percent (0..=100).
    pub fn relative_state_of_charge(&mut self) -> Result<u8, Error<I2C::Error>> {
        let command = register::RELATIVE_STATE_OF_CHARGE;
        let value = self.read_word(command)?;
        u8::try_from(value)
            .ok()
            .filter(|p| *p <= 100)
            .ok_or(Error::OutOfRange { command, value })
    }

    /// Remaining capacity, in the unit of BatteryMode, times IPScale.
    pub fn remaining_capacity(&mut self) -> Result<Capacity, Error<I2C::Error>> {
        self.capacity(register::REMAINING_CAPACITY)
    }

    /// Full-charge capacity, in the unit of BatteryMode, times IPScale.
    pub fn full_charge_capacity(&mut self) -> Result<Capacity, Error<I2C::Error>> {
        self.capacity(register::FULL_CHARGE_CAPACITY)
    }

    /// Design capacity, in the unit of BatteryMode, times IPScale.
    pub fn design_capacity(&mut self) -> Result<Capacity, Error<I2C::Error>> {
        self.capacity(register::DESIGN_CAPACITY)
    }

    fn capacity(&mut self, command: u8) -> Result<Capacity, Error<I2C::Error>> {
        let raw = self.read_word(command)?;
        Ok(Capacity {
            value: u32::from(raw) * self.ipscale,
            unit: self.capacity_unit,
        })
    }

    /// Number of charge cycles.
    pub fn cycle_count(&mut self) -> Result<u16, Error<I2C::Error>> {
        self.read_word(register::CYCLE_COUNT)
    }

    /// BatteryStatus: alarm bits, state bits and the last error code.
    pub fn battery_status(&mut self) -> Result<BatteryStatus, Error<I2C::Error>> {
        self.read_word(register::BATTERY_STATUS).map(BatteryStatus)
    }

    /// Reads one word with PEC handling as described in the module docs.
    pub fn read_word(&mut self, command: u8) -> Result<u16, Error<I2C::Error>> {
        if self.pec != PecMode::Checked {
            let mut raw = [0u8; 2];
            self.i2c
                .write_read(self.address, &[command], &mut raw)
                .map_err(Error::Bus)?;
            return Ok(u16::from_le_bytes(raw));
        }
        let mut first = [0u8; 3];
        self.i2c
            .write_read(self.address, &[command], &mut first)
            .map_err(Error::Bus)?;
        match smbus::decode_word(self.address, command, &first, true) {
            Ok(word) => {
                self.consistent_bad = 0;
                return Ok(word);
            }
            Err(_) => self.stats.mismatches = self.stats.mismatches.saturating_add(1),
        }
        let mut second = [0u8; 3];
        self.i2c
            .write_read(self.address, &[command], &mut second)
            .map_err(Error::Bus)?;
        match smbus::decode_word(self.address, command, &second, true) {
            Ok(word) => {
                self.consistent_bad = 0;
                self.stats.recovered = self.stats.recovered.saturating_add(1);
                Ok(word)
            }
            Err(FrameError::Pec { expected, received }) => {
                let floating = first.iter().all(|b| *b == 0xFF);
                if first == second && !floating {
                    self.consistent_bad = self.consistent_bad.saturating_add(1);
                    if self.consistent_bad >= PEC_FALLBACK_AFTER {
                        self.pec = PecMode::FallenBack;
                        self.stats.fallbacks = self.stats.fallbacks.saturating_add(1);
                        self.consistent_bad = 0;
                        return Ok(u16::from_le_bytes([second[0], second[1]]));
                    }
                } else {
                    self.consistent_bad = 0;
                }
                Err(Error::Pec {
                    command,
                    expected,
                    received,
                })
            }
            Err(_) => Err(Error::BlockLength { command, length: 0 }),
        }
    }

    /// Writes one word (little-endian), with a PEC byte when PEC is checked.
    pub fn write_word(&mut self, command: u8, value: u16) -> Result<(), Error<I2C::Error>> {
        let [lo, hi] = value.to_le_bytes();
        if self.pec == PecMode::Checked {
            let pec = smbus::write_pec(self.address, command, &[lo, hi]);
            self.i2c.write(self.address, &[command, lo, hi, pec])
        } else {
            self.i2c.write(self.address, &[command, lo, hi])
        }
        .map_err(Error::Bus)
    }

    /// Reads an SMBus block (e.g. [`register::MANUFACTURER_NAME`]) into
    /// `out` and returns its length. A PEC mismatch is retried once.
    pub fn read_block(
        &mut self,
        command: u8,
        out: &mut [u8; MAX_BLOCK_LEN],
    ) -> Result<usize, Error<I2C::Error>> {
        let pec = self.pec == PecMode::Checked;
        let len = 1 + MAX_BLOCK_LEN + usize::from(pec);
        let mut raw = [0u8; 1 + MAX_BLOCK_LEN + 1];
        let mut last = Error::BlockLength { command, length: 0 };
        for _attempt in 0..2 {
            let buf = &mut raw[..len];
            self.i2c
                .write_read(self.address, &[command], buf)
                .map_err(Error::Bus)?;
            match smbus::decode_block(self.address, command, buf, pec) {
                Ok(data) => {
                    let n = data.len();
                    out[..n].copy_from_slice(data);
                    return Ok(n);
                }
                Err(FrameError::Pec { expected, received }) => {
                    self.stats.mismatches = self.stats.mismatches.saturating_add(1);
                    last = Error::Pec {
                        command,
                        expected,
                        received,
                    };
                }
                Err(FrameError::BlockLength(length)) => {
                    return Err(Error::BlockLength { command, length })
                }
                Err(FrameError::Short { .. }) => return Err(last),
            }
        }
        Err(last)
    }
}
