//! Simulated MAX31865 RTD converter.

use std::sync::{Arc, Mutex};

use embedded_hal::spi::{ErrorType, Operation, SpiDevice};

use super::{lock, SimError};
use crate::max31865::{config, fault, register, resistance_to_adc};
use crate::rtd;

#[derive(Debug)]
struct State {
    regs: [u8; 8],
    resistance: f64,
    r_ref: f64,
    open: bool,
    bus_fault: bool,
}

impl State {
    /// Refreshes the RTD and fault registers from the physical values, as a
    /// finished conversion would.
    fn convert(&mut self) {
        let (adc, faults) = if self.open {
            (0x7FFF, fault::RTD_HIGH | fault::REFIN_LOW_FORCE_OPEN)
        } else {
            let adc = resistance_to_adc(self.resistance as f32, self.r_ref as f32);
            let high = u16::from_be_bytes([self.regs[3], self.regs[4]]) >> 1;
            let low = u16::from_be_bytes([self.regs[5], self.regs[6]]) >> 1;
            let mut f = 0;
            if adc > high {
                f |= fault::RTD_HIGH;
            }
            if adc < low {
                f |= fault::RTD_LOW;
            }
            (adc, f)
        };
        // The fault status latches until cleared.
        self.regs[7] |= faults;
        let reg = (adc << 1) | u16::from(faults != 0);
        let [msb, lsb] = reg.to_be_bytes();
        self.regs[1] = msb;
        self.regs[2] = lsb;
    }

    fn write_reg(&mut self, index: usize, value: u8) {
        match index {
            0 => {
                let mut v = value;
                if v & config::FAULT_CLEAR != 0 {
                    self.regs[7] = 0;
                }
                // self-clearing bits; fault detection finishes at once
                v &= !(config::FAULT_CLEAR | config::ONE_SHOT | config::FAULT_CYCLE_MASK);
                if value & config::FAULT_CYCLE_MASK != 0 && self.open {
                    self.regs[7] |= fault::REFIN_LOW_FORCE_OPEN | fault::RTDIN_LOW_FORCE_OPEN;
                }
                self.regs[0] = v;
            }
            1 | 2 | 7 => {} // read-only
            i => {
                if let Some(r) = self.regs.get_mut(i) {
                    *r = value;
                }
            }
        }
    }
}

/// A simulated MAX31865 on an SPI device: set the RTD resistance (or a
/// temperature) and open-sensor faults; the registers follow.
///
/// Conversions are instantaneous: every transaction sees the value last set.
/// Thresholds default to 0x0000 (low) and 0xFFFF (high), as on power-up.
#[derive(Debug, Clone)]
pub struct SimMax31865 {
    state: Arc<Mutex<State>>,
}

impl SimMax31865 {
    /// A converter with reference resistor `r_ref` ohms, reading `r0` (0 C).
    pub fn new(r0: f64, r_ref: f64) -> Self {
        let mut regs = [0u8; 8];
        regs[3] = 0xFF;
        regs[4] = 0xFF;
        Self {
            state: Arc::new(Mutex::new(State {
                regs,
                resistance: r0,
                r_ref,
                open: false,
                bus_fault: false,
            })),
        }
    }

    /// RTD resistance in ohms (values beyond Rref saturate the ADC).
    pub fn set_resistance(&self, ohms: f64) {
        lock(&self.state).resistance = ohms;
    }

    /// RTD temperature in C for a sensor with nominal `r0` (CVD).
    pub fn set_temperature(&self, celsius: f64, r0: f64) {
        self.set_resistance(rtd::resistance(celsius, r0));
    }

    /// Open sensor or lead: ADC at full scale, fault bit and fault status set.
    pub fn set_open(&self, open: bool) {
        lock(&self.state).open = open;
    }

    /// Every transaction fails while `on`.
    pub fn set_bus_fault(&self, on: bool) {
        lock(&self.state).bus_fault = on;
    }

    /// The configuration register as last written.
    pub fn config(&self) -> u8 {
        lock(&self.state).regs[0]
    }

    /// The fault status register.
    pub fn fault_status(&self) -> u8 {
        lock(&self.state).regs[7]
    }
}

impl ErrorType for SimMax31865 {
    type Error = SimError;
}

impl SpiDevice for SimMax31865 {
    fn transaction(&mut self, operations: &mut [Operation<'_, u8>]) -> Result<(), Self::Error> {
        let mut st = lock(&self.state);
        if st.bus_fault {
            return Err(SimError::Bus);
        }
        st.convert();
        // Byte stream: the first byte is the address, then data bytes to or
        // from consecutive registers.
        let mut addr: Option<u8> = None;
        let mut k = 0usize;
        let mut step = |st: &mut State, mosi: Option<u8>| -> u8 {
            match addr {
                None => {
                    addr = mosi;
                    0xFF
                }
                Some(a) => {
                    let index = (usize::from(a & !register::WRITE) + k) % 8;
                    k += 1;
                    if a & register::WRITE != 0 {
                        if let Some(v) = mosi {
                            st.write_reg(index, v);
                        }
                        0xFF
                    } else {
                        st.regs[index]
                    }
                }
            }
        };
        for op in operations {
            match op {
                Operation::Write(bytes) => {
                    for b in bytes.iter() {
                        step(&mut st, Some(*b));
                    }
                }
                Operation::Read(buf) => {
                    for b in buf.iter_mut() {
                        *b = step(&mut st, None);
                    }
                }
                Operation::Transfer(read, write) => {
                    for i in 0..read.len().max(write.len()) {
                        let miso = step(&mut st, write.get(i).copied().or(Some(0)));
                        if let Some(r) = read.get_mut(i) {
                            *r = miso;
                        }
                    }
                }
                Operation::TransferInPlace(buf) => {
                    for b in buf.iter_mut() {
                        *b = step(&mut st, Some(*b));
                    }
                }
                Operation::DelayNs(_) => {}
            }
        }
        Ok(())
    }
}
