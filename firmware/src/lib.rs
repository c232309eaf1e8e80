//! tandem-firmware: drivers for the sensors on tandem gateways.
//!
//! Every driver is generic over the embedded-hal 1.0 traits, owns its bus
//! (`new(bus, ..)`, `destroy(self) -> bus`) and returns `Error<E>` whose
//! `Bus(E)` variant carries the bus error. No value a device returns can make
//! a driver panic: out-of-range values become error variants.
//!
//! | module | chip or protocol |
//! |---|---|
//! | [`sbs`] | Smart Battery System 1.1 over SMBus, with PEC |
//! | [`max17048`] | MAX17048 single-cell fuel gauge |
//! | [`max31865`] + [`rtd`] | MAX31865 RTD-to-digital converter, Callendar-Van Dusen |
//! | [`ads1115`] + [`pilot`] | ADS1115 ADC reading the IEC 61851 control pilot |
//! | [`ina226`] | INA226 current and power monitor |
//! | [`sg_ready`] | SG-Ready heat-pump contacts |
//! | [`modbus`] | Modbus device profiles as data, decode, read coalescing |
//! | `sim` (feature `sim`) | simulated chips behind the same bus traits |
//! | `linux` (feature `linux`) | opening `/dev/i2c-N` and `/dev/spidevX.Y` |
#![no_std]

#[cfg(any(feature = "sim", feature = "linux"))]
extern crate std;

pub mod ads1115;
pub mod ina226;
#[cfg(feature = "linux")]
pub mod linux;
pub mod max17048;
pub mod max31865;
pub mod modbus;
pub mod pilot;
pub mod rtd;
pub mod sbs;
pub mod sg_ready;
#[cfg(feature = "sim")]
pub mod sim;
pub mod smbus;
