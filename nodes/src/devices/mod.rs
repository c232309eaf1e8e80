//! Sources that poll sensor chips through the firmware drivers.
//!
//! Each kind reads its chip every `period` and emits one record per
//! quantity. A failed read becomes a record with value NaN flagged
//! `COMM_ERROR` (bus error, NACK, bad PEC), `DEVICE_FAULT` (open RTD, alarm
//! bits, a conversion that never finishes) or `OUT_OF_RANGE` (a reading
//! beyond what the quantity can be), and one counted error
//! ([`tandem_core::Source::errors`]); polling goes on and the next poll
//! starts afresh.
//!
//! The `bus` parameter picks the hardware (see [`bus`]): `"sim"` (the
//! default) puts the real driver on the firmware's simulated chip, whose
//! registers are set before every read from the physical models of
//! [`crate::io`] (`sim.battery`, `sim.heatpump`, `sim.ev`) at the poll's
//! ingress time, so a simulated home runs the driver code a gateway runs.
//! `"i2c:/dev/i2c-1"` or `"spi:/dev/spidev0.0"` opens a Linux device (the
//! `linux` feature). Simulated chips take fault injection (`inject`,
//! `inject_every`, `inject_for`) for demos and tests.
//!
//! | kind | chip | file |
//! |---|---|---|
//! | `sbs_battery` | SBS 1.1 smart battery (SMBus) | [`sbs_battery`] |
//! | `max31865` | MAX31865 RTD converter (SPI) | [`max31865`] |
//! | `ev_charger` | ADS1115 pilot ADC + INA226 current monitor (I2C) | [`ev_charger`] |
//! | `sg_ready` (a sink) | SG-Ready contacts of a heat pump (GPIO) | [`sg_ready`] |

pub mod bus;
pub(crate) mod common;
pub mod ev_charger;
pub mod max31865;
pub mod sbs_battery;
pub mod sg_ready;

use tandem_core::vertex::Check;
use tandem_core::KindSpec;

/// The device sources.
pub static SOURCES: &[&KindSpec] = &[&sbs_battery::KIND, &max31865::KIND, &ev_charger::KIND];

/// The kinds this module provides: the sources, and the sink that drives
/// SG-Ready contacts.
pub static KINDS: &[&KindSpec] = &[
    &sbs_battery::KIND,
    &max31865::KIND,
    &ev_charger::KIND,
    &sg_ready::KIND,
];

/// The load-time checks of these kinds: what each builder checks before it
/// opens a bus or a GPIO line.
pub static CHECKS: &[(&KindSpec, Check)] = &[
    (&sbs_battery::KIND, sbs_battery::check),
    (&max31865::KIND, max31865::check),
    (&ev_charger::KIND, ev_charger::check),
    (&sg_ready::KIND, sg_ready::check),
];

#[cfg(test)]
pub(crate) mod testing {
    //! Polling device sources by hand in tests.

    use crate::io::testing::NEW_YEAR_2026;
    use tandem_core::{EventTime, Quality, Source};

    /// `day` days and `hh:mm` after 2026-01-01T00:00Z.
    pub fn at(day: i64, hh: i64, mm: i64) -> EventTime {
        NEW_YEAR_2026.add_nanos((day * 86_400 + hh * 3600 + mm * 60) * 1_000_000_000)
    }

    /// One poll's (value, quality) pairs, checking every record is stamped `now`.
    pub fn poll_values(source: &mut dyn Source, now: EventTime) -> Vec<(f64, Quality)> {
        let mut out = Vec::new();
        let next = source.poll(now, &mut out);
        assert!(
            next.is_some_and(|n| n > now),
            "next poll {next:?} after {now:?}"
        );
        assert!(out.iter().all(|r| r.time == now));
        out.iter().map(|r| (r.value, r.quality)).collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::SOURCES;
    use crate::io::testing::{drive, source, text, NEW_YEAR_2026};
    use tandem_core::{EventTime, ParamValue, Role};

    #[test]
    fn every_device_kind_is_a_registered_source() {
        let registry = crate::registry();
        let sources = registry.names(Role::Source);
        for kind in SOURCES {
            assert!(sources.contains(&kind.name), "{}", kind.name);
            assert!(kind.params.iter().any(|p| p.name == "bus"));
            assert!(kind.params.iter().any(|p| p.name == "period"));
        }
        assert_eq!(SOURCES.len(), 3);
    }

    #[test]
    fn the_same_polls_give_the_same_records_faults_included() {
        for kind in SOURCES {
            let inject = match kind.name {
                "sbs_battery" => "bad_pec",
                "max31865" => "open_rtd",
                _ => "nack",
            };
            let run = || {
                let (mut src, _) = source(
                    "n",
                    kind,
                    &[
                        ("speed", ParamValue::Float(8640.0)),
                        ("period", ParamValue::Duration(7_000_000)),
                        ("inject", text(inject)),
                        ("inject_every", ParamValue::Duration(500_000_000)),
                        ("inject_for", ParamValue::Duration(20_000_000)),
                    ],
                )
                .unwrap();
                let out = drive(
                    src.as_mut(),
                    NEW_YEAR_2026.add_nanos(777),
                    EventTime(i64::MAX),
                    1500,
                );
                (out, src.errors())
            };
            let (a, errors_a) = run();
            let (b, errors_b) = run();
            assert_eq!(a.len(), b.len(), "{}", kind.name);
            assert!(a.iter().zip(&b).all(|(x, y)| x.bit_eq(y)), "{}", kind.name);
            assert_eq!(errors_a, errors_b, "{}", kind.name);
            // The faults showed, and so did good readings after them.
            let flagged = a.iter().filter(|r| !r.quality.is_good()).count();
            assert!(flagged > 0 && errors_a > 0, "{}", kind.name);
            assert!(
                a.len() - flagged > 10 * flagged,
                "{}: {flagged} of {}",
                kind.name,
                a.len()
            );
        }
    }

    /// A device source as built from a graph file, by node id.
    type Built = (
        String,
        Result<Box<dyn tandem_core::Source>, tandem_core::BuildError>,
    );

    /// Loads `graphs/<name>` and builds its device sources as the runtime would.
    fn device_sources(name: &str) -> Vec<Built> {
        let path = format!("{}/../graphs/{name}", env!("CARGO_MANIFEST_DIR"));
        let bytes = std::fs::read(&path).unwrap();
        let loaded = tandem_core::graph::load(name, &bytes, &crate::registry())
            .unwrap_or_else(|d| panic!("{d}"));
        let plan = loaded.plan;
        plan.nodes
            .iter()
            .filter(|n| SOURCES.iter().any(|k| k.name == n.kind.name))
            .map(|n| {
                let ctx = tandem_core::BuildContext {
                    id: &n.id,
                    params: &n.params,
                    inputs: &n.inputs,
                    outputs: &n.outputs,
                    channels: &plan.channels,
                };
                let tandem_core::Builder::Source(build) = n.kind.build else {
                    panic!("{} is not a source", n.id);
                };
                (n.id.clone(), build(&ctx))
            })
            .collect()
    }

    #[test]
    fn the_home_graph_reads_its_devices_on_simulated_chips() {
        let sources = device_sources("home.toml");
        let ids: Vec<&str> = sources.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(
            ids,
            ["battery", "heatpump_supply", "heatpump_return", "ev"],
            "in file order"
        );
        for (id, built) in sources {
            let mut src = built.unwrap_or_else(|e| panic!("{id}: {e}"));
            let out = drive(
                src.as_mut(),
                NEW_YEAR_2026,
                NEW_YEAR_2026.add_nanos(240_000_000_000),
                1000,
            );
            // A whole simulated day at speed 360, every reading good.
            assert!(out.len() >= 2 * 240, "{id}: {} records", out.len());
            assert!(out.iter().all(|r| r.quality.is_good()), "{id}");
            assert_eq!(src.errors(), 0, "{id}");
        }
    }

    #[test]
    fn the_gateway_graph_checks_and_asks_for_its_buses() {
        for (id, built) in device_sources("gateway-i2c.toml") {
            if cfg!(feature = "linux") && built.is_ok() {
                continue; // run on a gateway that has the buses
            }
            let err = built.err().unwrap_or_else(|| panic!("{id} opened a bus"));
            let wanted = if cfg!(feature = "linux") {
                "cannot open"
            } else {
                "no Linux bus support"
            };
            assert!(err.message.contains(wanted), "{id}: {}", err.message);
            assert!(err.message.contains("/dev/"), "{id}: {}", err.message);
        }
    }
}
