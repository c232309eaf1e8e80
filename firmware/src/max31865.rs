//! MAX31865 RTD-to-digital converter over SPI (mode 1 or 3).
//!
//! A register is read by sending its address with bit 7 clear and clocking
//! out its bytes, and written by sending the address with bit 7 set, then the
//! value, all inside one chip-select transaction. The RTD register is 15 bits
//! of ADC value, left-aligned, with the fault flag in bit 0:
//! `R = adc * Rref / 32768`.

use embedded_hal::delay::DelayNs;
use embedded_hal::spi::{Operation, SpiDevice};

use crate::rtd;

/// Register addresses (read; OR with [`register::WRITE`] to write).
pub mod register {
    pub const CONFIG: u8 = 0x00;
    pub const RTD_MSB: u8 = 0x01;
    pub const RTD_LSB: u8 = 0x02;
    pub const HIGH_FAULT_MSB: u8 = 0x03;
    pub const HIGH_FAULT_LSB: u8 = 0x04;
    pub const LOW_FAULT_MSB: u8 = 0x05;
    pub const LOW_FAULT_LSB: u8 = 0x06;
    pub const FAULT_STATUS: u8 = 0x07;
    /// Bit 7 of the address byte selects a write.
    pub const WRITE: u8 = 0x80;
}

/// Configuration register bits.
pub mod config {
    /// V_BIAS on.
    pub const VBIAS: u8 = 1 << 7;
    /// Automatic (continuous) conversion.
    pub const AUTO: u8 = 1 << 6;
    /// Start a single conversion (self-clearing).
    pub const ONE_SHOT: u8 = 1 << 5;
    /// 3-wire RTD (clear for 2- or 4-wire).
    pub const THREE_WIRE: u8 = 1 << 4;
    /// Fault-detection cycle control, bits 3:2.
    pub const FAULT_CYCLE_MASK: u8 = 0b1100;
    /// Automatic fault detection with delay.
    pub const FAULT_CYCLE_AUTO: u8 = 0b0100;
    /// Manual fault detection, first step.
    pub const FAULT_CYCLE_MANUAL_1: u8 = 0b1000;
    /// Manual fault detection, second step.
    pub const FAULT_CYCLE_MANUAL_2: u8 = 0b1100;
    /// Clear the fault status (self-clearing).
    pub const FAULT_CLEAR: u8 = 1 << 1;
    /// 50 Hz mains filter (clear for 60 Hz).
    pub const FILTER_50HZ: u8 = 1 << 0;
}

/// Fault status register bits.
pub mod fault {
    /// RTD above the high threshold.
    pub const RTD_HIGH: u8 = 1 << 7;
    /// RTD below the low threshold.
    pub const RTD_LOW: u8 = 1 << 6;
    /// REFIN- > 0.85 x V_BIAS.
    pub const REFIN_HIGH: u8 = 1 << 5;
    /// REFIN- < 0.85 x V_BIAS, FORCE- open.
    pub const REFIN_LOW_FORCE_OPEN: u8 = 1 << 4;
    /// RTDIN- < 0.85 x V_BIAS, FORCE- open.
    pub const RTDIN_LOW_FORCE_OPEN: u8 = 1 << 3;
    /// Over- or under-voltage on an input.
    pub const OVER_UNDER_VOLTAGE: u8 = 1 << 2;
}

/// Fault-detection cycle control (config bits 3:2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultCycle {
    /// 00: no action (reads back 00 when a cycle has finished)
    Idle,
    /// 01: automatic fault detection with delay
    Automatic,
    /// 10: manual cycle, step 1
    ManualStart,
    /// 11: manual cycle, step 2
    ManualFinish,
}

/// The configuration register as fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// V_BIAS on
    pub vbias: bool,
    /// automatic (continuous) conversion; off = normally off / one-shot
    pub auto_convert: bool,
    /// start a single conversion (self-clearing)
    pub one_shot: bool,
    /// 3-wire RTD (off for 2- or 4-wire)
    pub three_wire: bool,
    /// fault-detection cycle control
    pub fault_cycle: FaultCycle,
    /// clear the fault status (self-clearing)
    pub fault_clear: bool,
    /// 50 Hz filter (off = 60 Hz)
    pub filter_50hz: bool,
}

impl Config {
    /// The register byte.
    pub fn bits(self) -> u8 {
        let flag = |on: bool, bit: u8| if on { bit } else { 0 };
        flag(self.vbias, config::VBIAS)
            | flag(self.auto_convert, config::AUTO)
            | flag(self.one_shot, config::ONE_SHOT)
            | flag(self.three_wire, config::THREE_WIRE)
            | match self.fault_cycle {
                FaultCycle::Idle => 0,
                FaultCycle::Automatic => config::FAULT_CYCLE_AUTO,
                FaultCycle::ManualStart => config::FAULT_CYCLE_MANUAL_1,
                FaultCycle::ManualFinish => config::FAULT_CYCLE_MANUAL_2,
            }
            | flag(self.fault_clear, config::FAULT_CLEAR)
            | flag(self.filter_50hz, config::FILTER_50HZ)
    }

    /// Fields of a register byte (every byte is valid).
    pub fn from_bits(bits: u8) -> Self {
        Self {
            vbias: bits & config::VBIAS != 0,
            auto_convert: bits & config::AUTO != 0,
            one_shot: bits & config::ONE_SHOT != 0,
            three_wire: bits & config::THREE_WIRE != 0,
            fault_cycle: match bits & config::FAULT_CYCLE_MASK {
                config::FAULT_CYCLE_AUTO => FaultCycle::Automatic,
                config::FAULT_CYCLE_MANUAL_1 => FaultCycle::ManualStart,
                config::FAULT_CYCLE_MANUAL_2 => FaultCycle::ManualFinish,
                _ => FaultCycle::Idle,
            },
            fault_clear: bits & config::FAULT_CLEAR != 0,
            filter_50hz: bits & config::FILTER_50HZ != 0,
        }
    }
}

/// Errors of the MAX31865 driver.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Error<E> {
    /// The SPI bus failed.
    Bus(E),
    /// The RTD register's fault bit was set; the fault status register says
    /// why (bits of [`fault`]). Clear it with [`Max31865::clear_faults`].
    Fault(FaultStatus),
    /// The resistance gives a temperature outside -200..=850 C (open or
    /// shorted sensor, or the wrong sensor or reference resistor).
    OutOfRange {
        /// measured resistance in ohms
        resistance: f32,
    },
    /// A fault-detection cycle did not finish in time.
    Timeout,
}

/// Fault status register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultStatus(pub u8);

impl FaultStatus {
    /// True when `bit` (one of [`fault`]) is set.
    pub fn has(self, bit: u8) -> bool {
        self.0 & bit != 0
    }
    /// True for the faults an open sensor or lead raises.
    pub fn is_open(self) -> bool {
        self.0 & (fault::RTD_HIGH | fault::REFIN_LOW_FORCE_OPEN | fault::RTDIN_LOW_FORCE_OPEN) != 0
    }
}

/// Nominal resistance and the board's reference resistor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sensor {
    /// R0: resistance at 0 C in ohms
    pub r0: f32,
    /// Rref: reference resistor in ohms
    pub r_ref: f32,
}

impl Sensor {
    /// PT100 with the usual 430 ohm reference.
    pub const PT100: Sensor = Sensor {
        r0: 100.0,
        r_ref: 430.0,
    };
    /// PT1000 with the usual 4300 ohm reference.
    pub const PT1000: Sensor = Sensor {
        r0: 1000.0,
        r_ref: 4300.0,
    };
}

/// How the RTD is wired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wires {
    /// 2-wire
    Two,
    /// 3-wire
    Three,
    /// 4-wire
    Four,
}

/// Mains-rejection filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    /// 50 Hz (conversion ~62.5 ms)
    Hz50,
    /// 60 Hz (conversion ~52 ms)
    Hz60,
}

/// The RTD register split into ADC value and fault flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtdReading {
    /// 15-bit ADC value
    pub adc: u16,
    /// fault flag (bit 0)
    pub fault: bool,
}

impl RtdReading {
    /// Splits the 16-bit RTD register.
    pub fn from_register(reg: u16) -> Self {
        Self {
            adc: reg >> 1,
            fault: reg & 1 != 0,
        }
    }
}

/// ADC value to ohms: `adc * r_ref / 32768`.
pub fn adc_to_resistance(adc: u16, r_ref: f32) -> f32 {
    f32::from(adc) * r_ref / 32768.0
}

/// Ohms to the ADC value the chip would report (saturating at 0x7FFF).
pub fn resistance_to_adc(r: f32, r_ref: f32) -> u16 {
    let v = r / r_ref * 32768.0 + 0.5;
    if v.is_nan() || v <= 0.0 {
        0
    } else if v >= 32767.0 {
        0x7FFF
    } else {
        v as u16
    }
}

/// A MAX31865.
#[derive(Debug)]
pub struct Max31865<SPI> {
    spi: SPI,
    sensor: Sensor,
    wires: Wires,
    filter: Filter,
}

impl<SPI: SpiDevice> Max31865<SPI> {
    /// A converter for `sensor`, wired as `wires`, filtering `filter`.
    /// Nothing is written until [`start_continuous`](Self::start_continuous)
    /// or [`one_shot`](Self::one_shot).
    pub fn new(spi: SPI, sensor: Sensor, wires: Wires, filter: Filter) -> Self {
        Self {
            spi,
            sensor,
            wires,
            filter,
        }
    }

    /// Gives the bus back.
    pub fn destroy(self) -> SPI {
        self.spi
    }

    /// The configuration bits for the wiring and filter, without V_BIAS,
    /// conversion or fault-cycle bits.
    pub fn base_config(&self) -> u8 {
        let mut bits = 0;
        if self.wires == Wires::Three {
            bits |= config::THREE_WIRE;
        }
        if self.filter == Filter::Hz50 {
            bits |= config::FILTER_50HZ;
        }
        bits
    }

    /// Reads `buf.len()` bytes starting at `reg`.
    pub fn read_registers(&mut self, reg: u8, buf: &mut [u8]) -> Result<(), Error<SPI::Error>> {
        self.spi
            .transaction(&mut [
                Operation::Write(&[reg & !register::WRITE]),
                Operation::Read(buf),
            ])
            .map_err(Error::Bus)
    }

    /// Writes one register.
    pub fn write_register(&mut self, reg: u8, value: u8) -> Result<(), Error<SPI::Error>> {
        self.spi
            .write(&[reg | register::WRITE, value])
            .map_err(Error::Bus)
    }

    /// Writes the configuration register.
    pub fn set_config(&mut self, bits: u8) -> Result<(), Error<SPI::Error>> {
        self.write_register(register::CONFIG, bits)
    }

    /// Writes the configuration register from fields.
    pub fn write_config(&mut self, cfg: Config) -> Result<(), Error<SPI::Error>> {
        self.set_config(cfg.bits())
    }

    /// Reads the configuration register as fields.
    pub fn read_config(&mut self) -> Result<Config, Error<SPI::Error>> {
        self.config().map(Config::from_bits)
    }

    /// Reads the configuration register.
    pub fn config(&mut self) -> Result<u8, Error<SPI::Error>> {
        let mut b = [0u8];
        self.read_registers(register::CONFIG, &mut b)?;
        Ok(b[0])
    }

    /// V_BIAS on and automatic conversion (a new value every ~20 ms).
    pub fn start_continuous(&mut self) -> Result<(), Error<SPI::Error>> {
        let bits = self.base_config() | config::VBIAS | config::AUTO;
        self.set_config(bits)
    }

    /// Reads the RTD register.
    pub fn read_rtd(&mut self) -> Result<RtdReading, Error<SPI::Error>> {
        let mut b = [0u8; 2];
        self.read_registers(register::RTD_MSB, &mut b)?;
        Ok(RtdReading::from_register(u16::from_be_bytes(b)))
    }

    /// Reads the fault status register.
    pub fn fault_status(&mut self) -> Result<FaultStatus, Error<SPI::Error>> {
        let mut b = [0u8];
        self.read_registers(register::FAULT_STATUS, &mut b)?;
        Ok(FaultStatus(b[0]))
    }

    /// Clears the fault status, keeping V_BIAS and conversion mode.
    pub fn clear_faults(&mut self) -> Result<(), Error<SPI::Error>> {
        let keep = self.config()? & !(config::ONE_SHOT | config::FAULT_CYCLE_MASK);
        self.set_config(keep | config::FAULT_CLEAR)
    }

    /// Sets the low and high fault thresholds as ADC values (15 bits).
    pub fn set_thresholds(&mut self, low: u16, high: u16) -> Result<(), Error<SPI::Error>> {
        let [hh, hl] = (high << 1).to_be_bytes();
        let [lh, ll] = (low << 1).to_be_bytes();
        self.spi
            .write(&[register::HIGH_FAULT_MSB | register::WRITE, hh, hl, lh, ll])
            .map_err(Error::Bus)
    }

    /// Resistance in ohms from the last conversion; a set fault bit gives
    /// [`Error::Fault`] with the fault status register.
    pub fn resistance(&mut self) -> Result<f32, Error<SPI::Error>> {
        let reading = self.read_rtd()?;
        if reading.fault {
            return Err(Error::Fault(self.fault_status()?));
        }
        Ok(adc_to_resistance(reading.adc, self.sensor.r_ref))
    }

    /// Temperature in C from the last conversion.
    pub fn temperature(&mut self) -> Result<f32, Error<SPI::Error>> {
        let r = self.resistance()?;
        rtd::temperature(f64::from(r), f64::from(self.sensor.r0))
            .map(|t| t as f32)
            .ok_or(Error::OutOfRange { resistance: r })
    }

    /// One conversion with the bias switched on for it only: bias on, wait
    /// 10 ms for the input filter to settle, start, wait for the conversion
    /// (65 ms at 50 Hz, 55 ms at 60 Hz), read, bias off.
    pub fn one_shot(&mut self, delay: &mut impl DelayNs) -> Result<f32, Error<SPI::Error>> {
        let base = self.base_config();
        self.set_config(base | config::VBIAS)?;
        delay.delay_ms(10);
        self.set_config(base | config::VBIAS | config::ONE_SHOT)?;
        delay.delay_ms(match self.filter {
            Filter::Hz50 => 65,
            Filter::Hz60 => 55,
        });
        let t = self.temperature();
        self.set_config(base)?;
        t
    }

    /// Runs the automatic fault-detection cycle and returns the fault status.
    pub fn run_fault_detection(
        &mut self,
        delay: &mut impl DelayNs,
    ) -> Result<FaultStatus, Error<SPI::Error>> {
        let base = self.base_config() | config::VBIAS;
        self.set_config(base | config::FAULT_CYCLE_AUTO)?;
        for _ in 0..10 {
            delay.delay_us(100);
            if self.config()? & config::FAULT_CYCLE_MASK == 0 {
                return self.fault_status();
            }
        }
        Err(Error::Timeout)
    }
}
