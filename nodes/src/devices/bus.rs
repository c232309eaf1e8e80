//! The `bus` parameter: a simulated chip, or a Linux I2C or SPI device.
//!
//! - `"sim"`: the firmware's simulated chip (always built).
//! - `"i2c:/dev/i2c-1"`: an I2C adapter, for I2C chips.
//! - `"spi:/dev/spidev0.0"`: an SPI device (bus and chip select), for SPI chips.
//!
//! Opening a Linux device needs the `linux` feature of tandem-nodes. Without
//! it the bus types below are uninhabited and opening one is a
//! [`BuildError`] that says how to get a build with it.

use tandem_core::{BuildContext, BuildError, ParamDefault, ParamSpec, ParamType};

/// The `bus` parameter every device source has.
pub const BUS: ParamSpec = ParamSpec {
    name: "bus",
    ty: ParamType::Text,
    default: ParamDefault::Text("sim"),
    doc: "\"sim\" (simulated chip fed by a physical model), \"i2c:/dev/i2c-N\" or \"spi:/dev/spidevB.C\" (needs the `linux` feature)",
};

/// Which bus a chip is on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Bus {
    /// The firmware's simulated chip.
    Sim,
    /// A Linux I2C adapter at this path.
    I2c(String),
    /// A Linux SPI device at this path.
    Spi(String),
}

/// What a chip talks over, to check the `bus` parameter against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wire {
    /// An I2C or SMBus chip.
    I2c,
    /// An SPI chip.
    Spi,
}

impl Bus {
    /// Parses the `bus` parameter of node `id` for a chip on `wire`.
    pub fn parse(id: &str, text: &str, wire: Wire) -> Result<Bus, BuildError> {
        let text = text.trim();
        let example = match wire {
            Wire::I2c => "\"sim\" or \"i2c:/dev/i2c-1\"",
            Wire::Spi => "\"sim\" or \"spi:/dev/spidev0.0\"",
        };
        let bus = if text == "sim" {
            Bus::Sim
        } else if let Some(path) = text.strip_prefix("i2c:") {
            Bus::I2c(path.to_owned())
        } else if let Some(path) = text.strip_prefix("spi:") {
            Bus::Spi(path.to_owned())
        } else {
            return Err(BuildError::new(format!(
                "`{id}`: bus \"{text}\" is not a bus: use {example}"
            )));
        };
        match (&bus, wire) {
            (Bus::I2c(path), _) | (Bus::Spi(path), _) if path.is_empty() => Err(BuildError::new(
                format!("`{id}`: bus \"{text}\" has no device path: use {example}"),
            )),
            (Bus::Spi(_), Wire::I2c) => Err(BuildError::new(format!(
                "`{id}`: bus \"{text}\" is an SPI device but this chip is on I2C: use {example}"
            ))),
            (Bus::I2c(_), Wire::Spi) => Err(BuildError::new(format!(
                "`{id}`: bus \"{text}\" is an I2C bus but this chip is on SPI: use {example}"
            ))),
            _ => Ok(bus),
        }
    }

    /// The `bus` parameter of a node, parsed.
    pub fn of(ctx: &BuildContext<'_>, wire: Wire) -> Result<Bus, BuildError> {
        Bus::parse(ctx.id, crate::io::text_param(ctx, "bus")?, wire).map_err(|e| e.at("bus"))
    }
}

#[cfg(feature = "linux")]
mod linux {
    use tandem_core::BuildError;
    use tandem_firmware::linux::{open_gpio_output, open_i2c, open_spi, SpiMode};

    /// A Linux GPIO output line.
    pub type GpioPin = tandem_firmware::linux::CdevPin;

    /// Requests a GPIO line as an output; the error names chip and line.
    pub fn gpio(id: &str, chip: &str, line: u32) -> Result<GpioPin, BuildError> {
        open_gpio_output(chip, line, "tandem").map_err(|e| BuildError::new(format!("`{id}`: {e}")))
    }

    /// A Linux I2C adapter.
    pub type I2cBus = tandem_firmware::linux::I2cdev;
    /// A Linux SPI device.
    pub type SpiBus = tandem_firmware::linux::SpidevDevice;

    /// Opens `/dev/i2c-N`; the error names the path and what to check.
    pub fn i2c(id: &str, path: &str) -> Result<I2cBus, BuildError> {
        open_i2c(path).map_err(|e| BuildError::new(format!("`{id}`: {e}")))
    }

    /// Opens `/dev/spidevB.C` at `hz`, SPI mode 1 (CPOL 0, CPHA 1).
    pub fn spi(id: &str, path: &str, hz: u32) -> Result<SpiBus, BuildError> {
        open_spi(path, hz, SpiMode::Mode1).map_err(|e| BuildError::new(format!("`{id}`: {e}")))
    }

    /// Waits on a real chip (the ADS1115 conversion time).
    #[derive(Debug, Clone, Copy, Default)]
    pub struct Sleep;

    impl embedded_hal::delay::DelayNs for Sleep {
        fn delay_ns(&mut self, ns: u32) {
            std::thread::sleep(std::time::Duration::from_nanos(u64::from(ns)));
        }
    }
}

#[cfg(not(feature = "linux"))]
mod linux {
    use core::convert::Infallible;
    use embedded_hal::{i2c, spi};
    use tandem_core::BuildError;

    /// No I2C bus: this build has no Linux bus support.
    #[derive(Debug)]
    pub enum I2cBus {}
    /// No SPI bus: this build has no Linux bus support.
    #[derive(Debug)]
    pub enum SpiBus {}
    /// No GPIO line: this build has no Linux bus support.
    #[derive(Debug)]
    pub enum GpioPin {}

    pub fn gpio(id: &str, chip: &str, line: u32) -> Result<GpioPin, BuildError> {
        Err(unsupported(id, "gpio line", &format!("{chip}:{line}")))
    }

    impl embedded_hal::digital::ErrorType for GpioPin {
        type Error = Infallible;
    }

    impl embedded_hal::digital::OutputPin for GpioPin {
        fn set_low(&mut self) -> Result<(), Infallible> {
            match *self {}
        }
        fn set_high(&mut self) -> Result<(), Infallible> {
            match *self {}
        }
    }

    fn unsupported(id: &str, what: &str, path: &str) -> BuildError {
        BuildError::new(format!(
            "`{id}`: this build has no Linux bus support, so it cannot open {what} `{path}`: \
             rebuild with the `linux` feature (`cargo build --release -p tandem --features \
             tandem-nodes/linux`, or `--features linux` in tandem-nodes) or use bus = \"sim\""
        ))
    }

    pub fn i2c(id: &str, path: &str) -> Result<I2cBus, BuildError> {
        Err(unsupported(id, "i2c bus", path))
    }

    pub fn spi(id: &str, path: &str, _hz: u32) -> Result<SpiBus, BuildError> {
        Err(unsupported(id, "spi device", path))
    }

    impl i2c::ErrorType for I2cBus {
        type Error = Infallible;
    }

    impl i2c::I2c for I2cBus {
        fn transaction(
            &mut self,
            _address: u8,
            _operations: &mut [i2c::Operation<'_>],
        ) -> Result<(), Infallible> {
            match *self {}
        }
    }

    impl spi::ErrorType for SpiBus {
        type Error = Infallible;
    }

    impl spi::SpiDevice for SpiBus {
        fn transaction(
            &mut self,
            _operations: &mut [spi::Operation<'_, u8>],
        ) -> Result<(), Infallible> {
            match *self {}
        }
    }

    /// Never used: there is no real chip to wait for.
    #[derive(Debug, Clone, Copy, Default)]
    pub struct Sleep;

    impl embedded_hal::delay::DelayNs for Sleep {
        fn delay_ns(&mut self, _ns: u32) {}
    }
}

pub use linux::{
    gpio as open_gpio, i2c as open_i2c, spi as open_spi, GpioPin, I2cBus, Sleep, SpiBus,
};

/// The simulated chips convert at once: nothing to wait for.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoDelay;

impl embedded_hal::delay::DelayNs for NoDelay {
    fn delay_ns(&mut self, _ns: u32) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bus_strings_parse_and_wrong_wires_are_refused() {
        assert_eq!(Bus::parse("b", "sim", Wire::I2c), Ok(Bus::Sim));
        assert_eq!(
            Bus::parse("b", "i2c:/dev/i2c-1", Wire::I2c),
            Ok(Bus::I2c("/dev/i2c-1".to_owned()))
        );
        assert_eq!(
            Bus::parse("t", "spi:/dev/spidev0.1", Wire::Spi),
            Ok(Bus::Spi("/dev/spidev0.1".to_owned()))
        );
        let wrong = Bus::parse("t", "i2c:/dev/i2c-1", Wire::Spi).err();
        assert!(wrong.is_some_and(|e| e.message.contains("is an I2C bus but this chip is on SPI")));
        let bad = Bus::parse("b", "usb", Wire::I2c).err();
        assert_eq!(
            bad.map(|e| e.message),
            Some("`b`: bus \"usb\" is not a bus: use \"sim\" or \"i2c:/dev/i2c-1\"".to_owned())
        );
        let empty = Bus::parse("b", "i2c:", Wire::I2c).err();
        assert!(empty.is_some_and(|e| e.message.contains("no device path")));
    }
}
