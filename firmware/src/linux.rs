//! Linux bus backends (feature `linux`): open `/dev/i2c-N`,
//! `/dev/spidevX.Y` and GPIO lines of `/dev/gpiochipN` as embedded-hal
//! buses and pins, with errors that name the path.

use std::fmt;
use std::format;
use std::string::{String, ToString};

use linux_embedded_hal::spidev::{SpiModeFlags, Spidev, SpidevOptions};
pub use linux_embedded_hal::{CdevPin, I2cdev, SpidevDevice};

/// Which kind of bus failed to open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BusKind {
    /// an I2C adapter (`/dev/i2c-N`)
    I2c,
    /// an SPI device (`/dev/spidevX.Y`)
    Spi,
    /// a GPIO line of a chip (`/dev/gpiochipN`)
    Gpio,
}

/// A bus device could not be opened or configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenError {
    /// the device path that failed
    pub path: String,
    /// I2C or SPI
    pub kind: BusKind,
    /// what the OS said
    pub reason: String,
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hint = match self.kind {
            BusKind::I2c => {
                "is the bus enabled and the i2c-dev module loaded (`modprobe i2c-dev`)?"
            }
            BusKind::Spi => {
                "is SPI enabled in the device tree and spidev bound to the chip select?"
            }
            BusKind::Gpio => {
                "does the chip exist (`gpiodetect`), and is the line free (`gpioinfo`)?"
            }
        };
        let kind = match self.kind {
            BusKind::I2c => "i2c bus",
            BusKind::Spi => "spi device",
            BusKind::Gpio => "gpio line of",
        };
        write!(
            f,
            "cannot open {kind} `{}`: {}; {hint}",
            self.path, self.reason
        )
    }
}

impl std::error::Error for OpenError {}

/// Requests line `line` of GPIO chip `chip` (e.g. `/dev/gpiochip0`) as an
/// output, driven low, for `consumer` (shown by `gpioinfo`).
pub fn open_gpio_output(chip: &str, line: u32, consumer: &str) -> Result<CdevPin, OpenError> {
    use linux_embedded_hal::gpio_cdev::{Chip, LineRequestFlags};
    let fail = |e: &dyn fmt::Display| OpenError {
        path: format!("{chip} line {line}"),
        kind: BusKind::Gpio,
        reason: e.to_string(),
    };
    let mut gpio = Chip::new(chip).map_err(|e| fail(&e))?;
    let handle = gpio
        .get_line(line)
        .and_then(|l| l.request(LineRequestFlags::OUTPUT, 0, consumer))
        .map_err(|e| fail(&e))?;
    CdevPin::new(handle).map_err(|e| fail(&e))
}

/// Opens an I2C adapter, e.g. `/dev/i2c-1`.
pub fn open_i2c(path: &str) -> Result<I2cdev, OpenError> {
    I2cdev::new(path).map_err(|e| OpenError {
        path: path.to_string(),
        kind: BusKind::I2c,
        reason: e.to_string(),
    })
}

/// SPI clock polarity and phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpiMode {
    /// CPOL 0, CPHA 0
    Mode0,
    /// CPOL 0, CPHA 1 (MAX31865)
    Mode1,
    /// CPOL 1, CPHA 0
    Mode2,
    /// CPOL 1, CPHA 1 (MAX31865)
    Mode3,
}

/// Opens and configures an SPI device, e.g. `/dev/spidev0.0`, 8-bit words.
/// The MAX31865 wants [`SpiMode::Mode1`] or [`SpiMode::Mode3`], up to 5 MHz.
pub fn open_spi(path: &str, max_speed_hz: u32, mode: SpiMode) -> Result<SpidevDevice, OpenError> {
    let err = |e: std::io::Error| OpenError {
        path: path.to_string(),
        kind: BusKind::Spi,
        reason: e.to_string(),
    };
    let mut spi = Spidev::open(path).map_err(err)?;
    let flags = match mode {
        SpiMode::Mode0 => SpiModeFlags::SPI_MODE_0,
        SpiMode::Mode1 => SpiModeFlags::SPI_MODE_1,
        SpiMode::Mode2 => SpiModeFlags::SPI_MODE_2,
        SpiMode::Mode3 => SpiModeFlags::SPI_MODE_3,
    };
    let options = SpidevOptions::new()
        .bits_per_word(8)
        .max_speed_hz(max_speed_hz)
        .mode(flags)
        .build();
    spi.configure(&options).map_err(err)?;
    Ok(SpidevDevice(spi))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_i2c_bus_names_the_path() {
        let e = open_i2c("/dev/i2c-does-not-exist").err();
        let msg = e.map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("`/dev/i2c-does-not-exist`"), "{msg}");
        assert!(msg.starts_with("cannot open i2c bus"), "{msg}");
    }

    #[test]
    fn missing_spi_device_names_the_path() {
        let e = open_spi("/dev/spidev-does-not-exist", 1_000_000, SpiMode::Mode1).err();
        let msg = e.map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("`/dev/spidev-does-not-exist`"), "{msg}");
        assert!(msg.starts_with("cannot open spi device"), "{msg}");
    }
}
