//! Simulated ADS1115 ADC.

use std::sync::{Arc, Mutex};

use embedded_hal::i2c::{ErrorType, I2c, Operation};

use super::{lock, sat_i16, SimError};
use crate::ads1115::{config, register, DEFAULT_ADDRESS};
use crate::pilot::PilotDivider;

#[derive(Debug)]
struct State {
    address: u8,
    inputs: [f64; 4],
    config: u16,
    conversion: u16,
    lo_thresh: u16,
    hi_thresh: u16,
    pointer: u8,
    busy: bool,
    nack: bool,
}

impl State {
    fn convert(&mut self) {
        let mux = (self.config >> config::MUX_SHIFT) & 0b111;
        let [a0, a1, a2, a3] = self.inputs;
        let v = match mux {
            0 => a0 - a1,
            1 => a0 - a3,
            2 => a1 - a3,
            3 => a2 - a3,
            4 => a0,
            5 => a1,
            6 => a2,
            _ => a3,
        };
        let fs = match (self.config >> config::PGA_SHIFT) & 0b111 {
            0 => 6.144,
            1 => 4.096,
            2 => 2.048,
            3 => 1.024,
            4 => 0.512,
            _ => 0.256,
        };
        self.conversion = sat_i16(v / fs * 32768.0) as u16;
    }

    fn write(&mut self, bytes: &[u8]) {
        let Some((&ptr, data)) = bytes.split_first() else {
            return;
        };
        self.pointer = ptr & 0b11;
        if let [hi, lo, ..] = data {
            let v = u16::from_be_bytes([*hi, *lo]);
            match self.pointer {
                register::CONFIG => {
                    self.config = v & !config::OS;
                    if v & config::OS != 0 {
                        self.convert();
                    }
                }
                register::LO_THRESH => self.lo_thresh = v,
                register::HI_THRESH => self.hi_thresh = v,
                _ => {}
            }
        }
    }

    fn read(&self, buf: &mut [u8]) {
        let v = match self.pointer {
            register::CONVERSION => self.conversion,
            register::CONFIG if self.busy => self.config,
            register::CONFIG => self.config | config::OS,
            register::LO_THRESH => self.lo_thresh,
            _ => self.hi_thresh,
        };
        for (dst, src) in buf.iter_mut().zip(v.to_be_bytes().into_iter().cycle()) {
            *dst = src;
        }
    }
}

/// A simulated ADS1115: set the voltage on each input; a single-shot
/// conversion completes at once with the value for the selected mux and
/// gain, saturating at full scale like the chip.
#[derive(Debug, Clone)]
pub struct SimAds1115 {
    state: Arc<Mutex<State>>,
}

impl Default for SimAds1115 {
    fn default() -> Self {
        Self::new(DEFAULT_ADDRESS)
    }
}

impl SimAds1115 {
    /// An ADC answering at `address`, all inputs at 0 V.
    pub fn new(address: u8) -> Self {
        Self {
            state: Arc::new(Mutex::new(State {
                address,
                inputs: [0.0; 4],
                config: config::DEFAULT & !config::OS,
                conversion: 0,
                lo_thresh: 0x8000,
                hi_thresh: 0x7FFF,
                pointer: 0,
                busy: false,
                nack: false,
            })),
        }
    }

    /// Voltage on AIN`channel` (0..=3; others ignored).
    pub fn set_input_volts(&self, channel: usize, volts: f64) {
        if let Some(v) = lock(&self.state).inputs.get_mut(channel) {
            *v = volts;
        }
    }

    /// Puts the ADC-side voltage of a control pilot at `pilot_volts` on
    /// AIN`channel`, through `divider`.
    pub fn set_pilot_volts(&self, channel: usize, divider: PilotDivider, pilot_volts: f64) {
        let adc = f64::from(divider.ratio) * pilot_volts + f64::from(divider.offset_v);
        self.set_input_volts(channel, adc);
    }

    /// While `on`, conversions never finish (OS reads 0).
    pub fn set_busy(&self, on: bool) {
        lock(&self.state).busy = on;
    }

    /// Every transfer is not acknowledged while `on`.
    pub fn set_nack(&self, on: bool) {
        lock(&self.state).nack = on;
    }
}

impl ErrorType for SimAds1115 {
    type Error = SimError;
}

impl I2c for SimAds1115 {
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
                Operation::Read(buf) => st.read(buf),
            }
        }
        Ok(())
    }
}
