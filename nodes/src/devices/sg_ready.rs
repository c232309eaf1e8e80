//! `sg_ready`: a sink that drives a heat pump's SG-Ready contacts through
//! the firmware driver, from a channel of mode numbers.
//!
//! Mode numbers are the SG-Ready label's operating states: 1 lock, 2 normal,
//! 3 recommend (switch on), 4 force on. A record that is not good, or whose value is not one
//! of those, leaves the contacts as they are and is reported as an error:
//! a sink that acts on a device acts only on values it can trust.
//!
//! `pins = "sim"` (the default) drives two simulated contacts, readable with
//! [`sim_mode`]; `pins = "gpio:/dev/gpiochip0:17,27"` requests two lines of
//! a Linux GPIO chip (the `linux` feature), contact 1 first.

use crate::devices::bus::{open_gpio, GpioPin};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tandem_core::{
    Arity, BuildContext, BuildError, Builder, KindSpec, ParamDefault, ParamSpec, ParamType, Record,
    Sink, SinkError,
};
use tandem_firmware::sg_ready::{SgMode, SgReady};

/// The kind.
pub static KIND: KindSpec = KindSpec {
    name: "sg_ready",
    version: 1,
    doc: "drives a heat pump's SG-Ready contacts from the label's state numbers (1 lock, 2 normal, 3 recommend, 4 force on)",
    input_names: &["mode"],
    arity: Arity::exactly(1),
    outputs: &[],
    outputs_from: None,
    params: &[ParamSpec {
        name: "pins",
        ty: ParamType::Text,
        default: ParamDefault::Text("sim"),
        doc: "\"sim\" (simulated contacts), or \"gpio:/dev/gpiochipN:L1,L2\" (contact 1 and 2 lines; needs the `linux` feature)",
    }],
    state_schema: None,
    migrations: &[],
    build: Builder::Sink(build),
};

/// A simulated contact: an output pin over a flag.
#[derive(Clone, Debug, Default)]
pub struct SimContact(Arc<AtomicBool>);

impl embedded_hal::digital::ErrorType for SimContact {
    type Error = Infallible;
}

impl embedded_hal::digital::OutputPin for SimContact {
    fn set_low(&mut self) -> Result<(), Infallible> {
        self.0.store(false, Ordering::Relaxed);
        Ok(())
    }
    fn set_high(&mut self) -> Result<(), Infallible> {
        self.0.store(true, Ordering::Relaxed);
        Ok(())
    }
}

type SimPair = (SimContact, SimContact);

fn sim_contacts() -> &'static Mutex<BTreeMap<String, SimPair>> {
    static CONTACTS: Mutex<BTreeMap<String, SimPair>> = Mutex::new(BTreeMap::new());
    &CONTACTS
}

/// The mode the simulated contacts of sink `id` show now, if it has any.
pub fn sim_mode(id: &str) -> Option<SgMode> {
    let contacts = sim_contacts().lock().unwrap_or_else(|e| e.into_inner());
    let (c1, c2) = contacts.get(id)?;
    Some(SgMode::from_contacts(
        c1.0.load(Ordering::Relaxed),
        c2.0.load(Ordering::Relaxed),
    ))
}

/// Where the contacts are.
#[derive(Debug, PartialEq, Eq)]
enum Pins {
    Sim,
    Gpio { chip: String, lines: (u32, u32) },
}

fn parse_pins(id: &str, text: &str) -> Result<Pins, BuildError> {
    let bad = || {
        BuildError::new(format!(
            "`{id}`: pins \"{text}\" are not contacts: use \"sim\" or \"gpio:/dev/gpiochip0:17,27\" (chip, then the lines of contact 1 and 2)"
        ))
    };
    if text.trim() == "sim" {
        return Ok(Pins::Sim);
    }
    let rest = text.trim().strip_prefix("gpio:").ok_or_else(bad)?;
    let (chip, lines) = rest.rsplit_once(':').ok_or_else(bad)?;
    let (l1, l2) = lines.split_once(',').ok_or_else(bad)?;
    let l1: u32 = l1.trim().parse().map_err(|_| bad())?;
    let l2: u32 = l2.trim().parse().map_err(|_| bad())?;
    if chip.is_empty() || l1 == l2 {
        return Err(bad());
    }
    Ok(Pins::Gpio {
        chip: chip.to_owned(),
        lines: (l1, l2),
    })
}

/// What [`build`] checks before it requests GPIO lines: the load-time check of the kind.
pub(crate) fn check(ctx: &BuildContext<'_>) -> Result<(), BuildError> {
    pins(ctx).map(drop)
}

fn pins(ctx: &BuildContext<'_>) -> Result<Pins, BuildError> {
    let text = ctx.params.text("pins").unwrap_or("sim");
    parse_pins(ctx.id, text).map_err(|e| e.at("pins"))
}

fn build(ctx: &BuildContext<'_>) -> Result<Box<dyn Sink>, BuildError> {
    match pins(ctx)? {
        Pins::Sim => {
            let pair: SimPair = Default::default();
            sim_contacts()
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(ctx.id.to_owned(), pair.clone());
            Ok(Box::new(SgReadySink::new(ctx.id, pair.0, pair.1)))
        }
        Pins::Gpio { chip, lines } => {
            let p1: GpioPin = open_gpio(ctx.id, &chip, lines.0)?;
            let p2: GpioPin = open_gpio(ctx.id, &chip, lines.1)?;
            Ok(Box::new(SgReadySink::new(ctx.id, p1, p2)))
        }
    }
}

/// The SG-Ready mode a number stands for.
fn mode_of(value: f64) -> Option<SgMode> {
    [
        SgMode::Lock,
        SgMode::Normal,
        SgMode::Recommend,
        SgMode::ForceOn,
    ]
    .into_iter()
    .find(|m| f64::from(m.number()) == value)
}

/// The sink: the driver and the id for messages.
struct SgReadySink<P1, P2> {
    id: String,
    driver: SgReady<P1, P2>,
}

impl<P1: embedded_hal::digital::OutputPin, P2: embedded_hal::digital::OutputPin>
    SgReadySink<P1, P2>
{
    fn new(id: &str, p1: P1, p2: P2) -> Self {
        SgReadySink {
            id: id.to_owned(),
            driver: SgReady::new(p1, p2),
        }
    }

    fn error(&self, what: String) -> SinkError {
        SinkError {
            sink: self.id.clone(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, what),
        }
    }
}

impl<P1, P2> Sink for SgReadySink<P1, P2>
where
    P1: embedded_hal::digital::OutputPin + Send,
    P2: embedded_hal::digital::OutputPin + Send,
{
    fn write(&mut self, records: &[Record]) -> Result<(), SinkError> {
        let mut refused = None;
        for r in records {
            let mode = if !r.quality.is_good() {
                Err(format!(
                    "mode {} at seq {} is {}, not good",
                    r.value, r.seq, r.quality
                ))
            } else {
                mode_of(r.value).ok_or_else(|| {
                    format!(
                        "mode {} at seq {} is not 1 (lock), 2 (normal), 3 (recommend) or 4 (force on)",
                        r.value, r.seq
                    )
                })
            };
            match mode {
                Ok(mode) => {
                    if self.driver.mode() != Some(mode) && self.driver.set(mode).is_err() {
                        refused = Some(format!("cannot set the contacts to {mode:?}"));
                    }
                }
                Err(why) => refused = Some(format!("{why}; contacts left as they were")),
            }
        }
        match refused {
            None => Ok(()),
            Some(why) => Err(self.error(why)),
        }
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::Arc as StdArc;
    use tandem_core::{ChannelId, ChannelTable, EventTime, ParamValue, Params, Quality, Seq};

    fn sink(id: &str, pins: &str) -> Result<Box<dyn Sink>, BuildError> {
        let mut params = Params::new();
        params.insert("pins", ParamValue::Text(pins.into()));
        let channels = StdArc::new(ChannelTable::new());
        let ctx = BuildContext {
            id,
            params: &params,
            inputs: &[ChannelId(0)],
            outputs: &[],
            channels: &channels,
        };
        build(&ctx)
    }

    fn mode(seq: u64, value: f64) -> Record {
        Record::new(Seq(seq), EventTime(0), ChannelId(0), value)
    }

    #[test]
    fn mode_numbers_set_the_contacts_of_the_sg_ready_label() {
        let mut s = sink("sg_modes", "sim").unwrap();
        for (value, expected) in [
            (1.0, SgMode::Lock),
            (4.0, SgMode::ForceOn),
            (2.0, SgMode::Normal),
            (3.0, SgMode::Recommend),
        ] {
            s.write(&[mode(1, value)]).unwrap();
            assert_eq!(sim_mode("sg_modes"), Some(expected));
        }
        assert_eq!(
            SgMode::Recommend.contacts(),
            (false, true),
            "the label's recommend"
        );
    }

    #[test]
    fn doubtful_or_unknown_modes_leave_the_contacts_and_are_reported() {
        let mut s = sink("sg_bad", "sim").unwrap();
        s.write(&[mode(1, 3.0)]).unwrap();
        let err = s.write(&[mode(2, 7.0)]).unwrap_err().to_string();
        assert!(err.contains("mode 7 at seq 2 is not 1 (lock)"), "{err}");
        let err = s
            .write(&[mode(3, 4.0).flagged(Quality::STALE)])
            .unwrap_err()
            .to_string();
        assert!(err.contains("stale, not good"), "{err}");
        assert!(s.write(&[mode(4, f64::NAN)]).is_err());
        assert_eq!(sim_mode("sg_bad"), Some(SgMode::Recommend));
        // The last good record in a batch wins.
        s.write(&[mode(5, 1.0), mode(6, 2.0)]).unwrap();
        assert_eq!(sim_mode("sg_bad"), Some(SgMode::Normal));
    }

    #[test]
    fn pins_are_parsed_or_refused_with_what_is_valid() {
        assert_eq!(parse_pins("x", "sim"), Ok(Pins::Sim));
        assert_eq!(
            parse_pins("x", "gpio:/dev/gpiochip0:17,27"),
            Ok(Pins::Gpio {
                chip: "/dev/gpiochip0".into(),
                lines: (17, 27)
            })
        );
        for bad in [
            "gpio:/dev/gpiochip0:17",
            "gpio::17,27",
            "gpio:/dev/gpiochip0:17,17",
            "i2c:/dev/i2c-1",
        ] {
            let err = parse_pins("x", bad).unwrap_err().message;
            assert!(err.contains("gpio:/dev/gpiochip0:17,27"), "{bad}: {err}");
        }
    }

    #[test]
    fn a_gpio_chip_that_cannot_be_opened_is_an_error_naming_it() {
        let err = match sink("sg_gpio", "gpio:/dev/gpiochip-missing:17,27") {
            Err(e) => e.message,
            Ok(_) => panic!("opened a missing chip"),
        };
        assert!(err.contains("/dev/gpiochip-missing"), "{err}");
    }
}
