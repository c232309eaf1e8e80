//! Simulated Smart Battery System 1.1 pack.

use std::sync::{Arc, Mutex};
use std::vec::Vec;

use embedded_hal::i2c::{ErrorType, I2c, Operation};

use super::{lock, sat_u16, SimError};
use crate::sbs::{register, status, DEFAULT_ADDRESS};
use crate::smbus::{self, MAX_BLOCK_LEN};

/// How the simulated pack gets its PEC wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PecFault {
    /// Correct PEC on every read.
    None,
    /// A consistently wrong PEC (correct PEC xor 0xFF), like a pack with a
    /// broken PEC implementation.
    Wrong,
    /// A corrupted PEC on the next `n` reads only, like line noise (each
    /// corrupted read differs from the one before, so the driver retries
    /// rather than falling back).
    Next(u32),
}

#[derive(Debug)]
struct State {
    address: u8,
    words: [u16; 0x20],
    stuck: Option<[u16; 0x20]>,
    blocks: [Vec<u8>; 4],
    nack: bool,
    pec: PecFault,
    command: u8,
    reads: u64,
}

/// A simulated SBS 1.1 battery on an I2C bus, with correct SMBus PEC and
/// fault injection (NACK, bad PEC, stuck values).
///
/// Defaults: 25 C, 12000 mV, 0 mA, 80 %, 4000 of 5000 mAh, 10 cycles,
/// status INITIALIZED, SpecificationInfo 0x0031 (1.1 with PEC, scales 1),
/// manufacturer "tandem", device "sim-sbs", chemistry "LION".
#[derive(Debug, Clone)]
pub struct SimSmartBattery {
    state: Arc<Mutex<State>>,
}

impl Default for SimSmartBattery {
    fn default() -> Self {
        Self::new()
    }
}

impl SimSmartBattery {
    /// A pack at 0x0B with the defaults above.
    pub fn new() -> Self {
        let mut words = [0u16; 0x20];
        let mut set = |cmd: u8, v: u16| {
            if let Some(w) = words.get_mut(usize::from(cmd)) {
                *w = v;
            }
        };
        set(register::TEMPERATURE, 2982);
        set(register::VOLTAGE, 12000);
        set(register::RELATIVE_STATE_OF_CHARGE, 80);
        set(register::ABSOLUTE_STATE_OF_CHARGE, 80);
        set(register::REMAINING_CAPACITY, 4000);
        set(register::FULL_CHARGE_CAPACITY, 5000);
        set(register::DESIGN_CAPACITY, 5000);
        set(register::DESIGN_VOLTAGE, 11100);
        set(register::CYCLE_COUNT, 10);
        set(register::BATTERY_STATUS, status::INITIALIZED);
        set(register::SPECIFICATION_INFO, 0x0031);
        set(register::RUN_TIME_TO_EMPTY, 0xFFFF);
        set(register::AVERAGE_TIME_TO_EMPTY, 0xFFFF);
        set(register::AVERAGE_TIME_TO_FULL, 0xFFFF);
        Self {
            state: Arc::new(Mutex::new(State {
                address: DEFAULT_ADDRESS,
                words,
                stuck: None,
                blocks: [
                    b"tandem".to_vec(),
                    b"sim-sbs".to_vec(),
                    b"LION".to_vec(),
                    Vec::new(),
                ],
                nack: false,
                pec: PecFault::None,
                command: 0,
                reads: 0,
            })),
        }
    }

    /// Answers at another 7-bit address.
    pub fn set_address(&self, address: u8) {
        lock(&self.state).address = address;
    }

    /// Sets the word a command returns (commands 0x00..=0x1F).
    pub fn set_word(&self, command: u8, value: u16) {
        if let Some(w) = lock(&self.state).words.get_mut(usize::from(command)) {
            *w = value;
        }
    }

    /// The word a command currently returns (ignoring a stuck snapshot).
    pub fn word(&self, command: u8) -> u16 {
        lock(&self.state)
            .words
            .get(usize::from(command))
            .copied()
            .unwrap_or(0)
    }

    /// Sets a block (0x20 name, 0x21 device, 0x22 chemistry, 0x23 data);
    /// longer than 32 bytes is cut.
    pub fn set_block(&self, command: u8, data: &[u8]) {
        let mut st = lock(&self.state);
        if let Some(b) = command
            .checked_sub(register::MANUFACTURER_NAME)
            .and_then(|i| st.blocks.get_mut(usize::from(i)))
        {
            b.clear();
            b.extend_from_slice(data.get(..MAX_BLOCK_LEN).unwrap_or(data));
        }
    }

    /// Pack voltage in mV (before VScale).
    pub fn set_voltage_mv(&self, mv: u16) {
        self.set_word(register::VOLTAGE, mv);
    }

    /// Current in mA, positive charging (before IPScale).
    pub fn set_current_ma(&self, ma: i16) {
        self.set_word(register::CURRENT, ma as u16);
        self.set_word(register::AVERAGE_CURRENT, ma as u16);
    }

    /// Temperature in C, stored in 0.1 K (saturating).
    pub fn set_temperature_celsius(&self, celsius: f64) {
        self.set_word(register::TEMPERATURE, sat_u16((celsius + 273.15) * 10.0));
    }

    /// Relative state of charge in %. Values over 100 are allowed, to test
    /// out-of-range handling.
    pub fn set_relative_soc(&self, percent: u16) {
        self.set_word(register::RELATIVE_STATE_OF_CHARGE, percent);
    }

    /// Remaining capacity (mAh or 10 mWh, before IPScale).
    pub fn set_remaining_capacity(&self, value: u16) {
        self.set_word(register::REMAINING_CAPACITY, value);
    }

    /// Full-charge capacity (mAh or 10 mWh, before IPScale).
    pub fn set_full_charge_capacity(&self, value: u16) {
        self.set_word(register::FULL_CHARGE_CAPACITY, value);
    }

    /// Cycle count.
    pub fn set_cycle_count(&self, cycles: u16) {
        self.set_word(register::CYCLE_COUNT, cycles);
    }

    /// BatteryStatus word (alarm bits, state bits, error code).
    pub fn set_status(&self, status: u16) {
        self.set_word(register::BATTERY_STATUS, status);
    }

    /// Every transfer is not acknowledged while `on`.
    pub fn set_nack(&self, on: bool) {
        lock(&self.state).nack = on;
    }

    /// PEC fault injection.
    pub fn set_pec_fault(&self, fault: PecFault) {
        lock(&self.state).pec = fault;
    }

    /// While `on`, word reads return the values as they were when it was
    /// turned on, whatever is set meanwhile (a hung gauge).
    pub fn set_stuck(&self, on: bool) {
        let mut st = lock(&self.state);
        st.stuck = if on { Some(st.words) } else { None };
    }

    /// Number of read operations served.
    pub fn reads(&self) -> u64 {
        lock(&self.state).reads
    }
}

impl State {
    fn write(&mut self, bytes: &[u8]) {
        let Some((&cmd, data)) = bytes.split_first() else {
            return;
        };
        self.command = cmd;
        // A write word sets the register; writable ones only.
        if let [lo, hi, ..] = data {
            let writable = matches!(
                cmd,
                register::MANUFACTURER_ACCESS
                    | register::REMAINING_CAPACITY_ALARM
                    | register::REMAINING_TIME_ALARM
                    | register::BATTERY_MODE
                    | register::AT_RATE
            );
            if writable {
                if let Some(w) = self.words.get_mut(usize::from(cmd)) {
                    *w = u16::from_le_bytes([*lo, *hi]);
                }
            }
        }
    }

    fn read(&mut self, buf: &mut [u8]) {
        self.reads = self.reads.saturating_add(1);
        buf.fill(0xFF);
        let cmd = self.command;
        let mut frame: Vec<u8> = Vec::with_capacity(MAX_BLOCK_LEN + 1);
        if let Some(block) = cmd
            .checked_sub(register::MANUFACTURER_NAME)
            .and_then(|i| self.blocks.get(usize::from(i)))
        {
            frame.push(block.len() as u8);
            frame.extend_from_slice(block);
        } else {
            let words = self.stuck.as_ref().unwrap_or(&self.words);
            let w = words.get(usize::from(cmd)).copied().unwrap_or(0xFFFF);
            frame.extend_from_slice(&w.to_le_bytes());
        }
        let mut pec = smbus::read_pec(self.address, cmd, &frame);
        match self.pec {
            PecFault::None => {}
            PecFault::Wrong => pec ^= 0xFF,
            PecFault::Next(n) => {
                // a different wrong PEC each time, as noise would give
                pec = pec.wrapping_add(1 + (n % 255) as u8);
                self.pec = if n > 1 {
                    PecFault::Next(n - 1)
                } else {
                    PecFault::None
                };
            }
        }
        frame.push(pec);
        for (dst, src) in buf.iter_mut().zip(frame) {
            *dst = src;
        }
    }
}

impl ErrorType for SimSmartBattery {
    type Error = SimError;
}

impl I2c for SimSmartBattery {
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
