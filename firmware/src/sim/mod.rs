//! Simulated chips (feature `sim`): the same bus traits as real hardware,
//! over a register file.
//!
//! Each simulated chip is a cheap `Clone` handle to shared state
//! (`Arc<Mutex<..>>`): give one clone to the driver as its bus, keep another
//! to set the physical values (voltage, resistance, ..) and inject faults.
//! Everything is deterministic: values are whatever the caller last set,
//! there is no clock and no randomness. Handles are `Send + Sync`, so a
//! simulated home device may set values from any thread as a function of
//! event time.
//!
//! ```
//! use tandem_firmware::sbs::SmartBattery;
//! use tandem_firmware::sim::{PecFault, SimSmartBattery};
//!
//! let pack = SimSmartBattery::new();
//! let mut battery = SmartBattery::new(pack.clone());
//! pack.set_voltage_mv(11_850);
//! pack.set_current_ma(-2_000);
//! assert_eq!(battery.voltage_mv(), Ok(11_850));
//! assert_eq!(battery.current_ma(), Ok(-2_000));
//!
//! pack.set_nack(true); // the pack stops answering
//! assert!(battery.voltage_mv().is_err());
//! pack.set_nack(false);
//! pack.set_pec_fault(PecFault::Next(1)); // one corrupted PEC, retried
//! assert_eq!(battery.voltage_mv(), Ok(11_850));
//! ```

use std::sync::{Mutex, MutexGuard, PoisonError};

mod ads1115;
mod ina226;
mod max31865;
mod sbs;

pub use ads1115::SimAds1115;
pub use ina226::SimIna226;
pub use max31865::SimMax31865;
pub use sbs::{PecFault, SimSmartBattery};

/// Error a simulated chip reports on its bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimError {
    /// The chip did not acknowledge (wrong address or injected NACK).
    Nack,
    /// Injected bus fault (SPI has no acknowledge).
    Bus,
}

impl core::fmt::Display for SimError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SimError::Nack => f.write_str("simulated chip did not acknowledge"),
            SimError::Bus => f.write_str("simulated bus fault"),
        }
    }
}

impl embedded_hal::i2c::Error for SimError {
    fn kind(&self) -> embedded_hal::i2c::ErrorKind {
        use embedded_hal::i2c::{ErrorKind, NoAcknowledgeSource};
        match self {
            SimError::Nack => ErrorKind::NoAcknowledge(NoAcknowledgeSource::Address),
            SimError::Bus => ErrorKind::Bus,
        }
    }
}

impl embedded_hal::spi::Error for SimError {
    fn kind(&self) -> embedded_hal::spi::ErrorKind {
        embedded_hal::spi::ErrorKind::Other
    }
}

/// Locks shared sim state; a panic in another holder does not make the
/// state unusable (it holds plain values).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Saturating f64 -> i16.
fn sat_i16(v: f64) -> i16 {
    if v.is_nan() {
        0
    } else {
        v.round().clamp(f64::from(i16::MIN), f64::from(i16::MAX)) as i16
    }
}

/// Saturating f64 -> u16.
fn sat_u16(v: f64) -> u16 {
    if v.is_nan() {
        0
    } else {
        v.round().clamp(0.0, f64::from(u16::MAX)) as u16
    }
}
