//! Sources that poll whole devices over Modbus TCP (and RTU, with the cargo
//! feature `rtu`), one kind per device profile of `tandem_firmware::modbus`.
//!
//! | kind | profile | outputs |
//! |---|---|---|
//! | `modbus.sdm630` | Eastron SDM630 three-phase meter | `voltage_l1..3` V, `current_l1..3` A, `power_l1..3` W, `power_factor_l1..3`, `power_total` W, `frequency` Hz, `import_energy`, `export_energy`, `total_energy` kWh |
//! | `modbus.sdm120` | Eastron SDM120 single-phase meter | `voltage` V, `current` A, `power` W, `apparent_power` VA, `reactive_power` var, `power_factor`, `frequency` Hz, `import_energy`, `export_energy`, `total_energy` kWh |
//! | `modbus.nibe` | NIBE S1155/S1255 heat pump | `outdoor_temperature`, `supply_temperature`, `return_temperature`, `hot_water_top_temperature` degC, `flow` l/min, `power` kW |
//! | `modbus.heidelberg` | Heidelberg Energy Control wallbox | `layout_version`, `charging_state`, `current_l1..3` A, `pcb_temperature` degC, `voltage_l1..3` V, `power` W, `energy_since_power_on`, `total_energy` kWh, `max_current` A |
//! | `modbus.deye_battery` | Deye SG04LP3 hybrid inverter battery | `temperature` degC, `voltage` V, `soc` %, `power` W, `current` A |
//!
//! Every kind takes the same parameters:
//!
//! | param | type | default | meaning |
//! |---|---|---|---|
//! | `transport` | `"tcp"` or `"rtu"` | `"tcp"` | Modbus TCP, or RTU on a serial port (feature `rtu`) |
//! | `address` | string | required | `host:port` for TCP (`"192.168.1.50:502"`), the serial device for RTU (`"/dev/ttyUSB0"`) |
//! | `baud` | 1200..=921600 | 9600 | RTU bit rate (8N1) |
//! | `unit` | 0..=255 | 1 | Modbus unit (slave) id |
//! | `period` | 10ms..=1h | 1s | time between scans |
//! | `timeout` | 10ms..=60s | 1s | longest wait for a connect or an answer |
//! | `points` | names | all | the points to read; the others' channels stay silent |
//! | `max_gap` | 0..=100 | 0 | unused registers one read may span to merge two |
//!
//! One kind per profile gives every output its unit when the graph is
//! checked, which a single `modbus` kind with a `profile` parameter could
//! not: a kind's outputs are static.
//!
//! A scan reads the selected points with as few requests as
//! [`tandem_firmware::modbus::coalesce`] makes of them. Every scan yields one
//! record per selected point, stamped with the ingress time it was taken
//! at. A point that could not be read is NaN and flagged: `COMM_ERROR` when
//! the device did not answer (timeout, refused or lost connection, garbled
//! frame), `DEVICE_FAULT` when it answered with a Modbus exception, a
//! response of the wrong length, or a float register holding NaN. Failed
//! connects and requests (timeouts, transport errors, exceptions, responses
//! of the wrong length or function) are counted in `Source::errors`; a NaN
//! register is not. Polling never stops. See [`poller`] for the I/O thread.
//!
//! With `transport = "rtu"` each source opens its serial port for itself, so
//! two sources cannot share one RS-485 line yet; put such devices behind a
//! Modbus TCP gateway and tell them apart by `unit`.

pub mod plan;
pub mod poller;
pub mod source;

#[cfg(test)]
mod tests;

use crate::io::{duration_param, int_param, text_param};
use plan::{PlanError, ScanPlan};
use poller::{Config, Transport};
use source::ModbusSource;
use std::time::Duration;
use tandem_core::vertex::Check;
use tandem_core::{
    Arity, BuildContext, BuildError, Builder, KindSpec, OutputSpec, ParamDefault, ParamSpec,
    ParamType, Source,
};
use tandem_firmware::modbus::profiles::{
    DEYE_SG04LP3_BATTERY, EASTRON_SDM120, EASTRON_SDM630, HEIDELBERG_ENERGY_CONTROL,
    NIBE_S1155_S1255,
};
use tandem_firmware::modbus::{Point, Profile};

/// The kinds this module provides.
pub static KINDS: &[&KindSpec] = &[
    &SDM630.kind,
    &SDM120.kind,
    &NIBE.kind,
    &HEIDELBERG.kind,
    &DEYE_BATTERY.kind,
];

/// The load-time checks of these kinds: everything a builder checks before
/// it starts its poller.
pub static CHECKS: &[(&KindSpec, Check)] = &[
    (&SDM630.kind, check_sdm630),
    (&SDM120.kind, check_sdm120),
    (&NIBE.kind, check_nibe),
    (&HEIDELBERG.kind, check_heidelberg),
    (&DEYE_BATTERY.kind, check_deye_battery),
];

/// A kind polling one profile.
#[derive(Debug)]
pub struct ProfileKind {
    /// The kind.
    pub kind: KindSpec,
    /// The profile it polls.
    pub profile: &'static Profile,
}

/// The outputs of a profile's points, in table order.
const fn outputs<const N: usize>(points: &[Point]) -> [OutputSpec; N] {
    let mut out = [OutputSpec::main(""); N];
    let mut i = 0;
    while i < N && i < points.len() {
        out[i] = OutputSpec::named(points[i].name, points[i].unit);
        i += 1;
    }
    out
}

macro_rules! profile_kind {
    ($(#[$doc:meta])* $kind:ident, $outputs:ident, $build:ident, $check:ident, $name:literal, $profile:expr, $what:literal) => {
        static $outputs: [OutputSpec; $profile.points.len()] = outputs($profile.points);

        fn $build(ctx: &BuildContext<'_>) -> Result<Box<dyn Source>, BuildError> {
            build(ctx, &$profile)
        }

        fn $check(ctx: &BuildContext<'_>) -> Result<(), BuildError> {
            config(ctx, &$profile).map(drop)
        }

        $(#[$doc])*
        pub static $kind: ProfileKind = ProfileKind {
            kind: KindSpec {
                name: $name,
                version: 1,
                doc: $what,
                input_names: &[],
                arity: Arity::NONE,
                outputs: &$outputs,
                outputs_from: None,
                params: PARAMS,
                state_schema: None,
                migrations: &[],
                build: Builder::Source($build),
            },
            profile: &$profile,
        };
    };
}

profile_kind!(
    /// `modbus.sdm630`: an Eastron SDM630 three-phase meter.
    SDM630, SDM630_OUTPUTS, build_sdm630, check_sdm630, "modbus.sdm630", EASTRON_SDM630,
    "Eastron SDM630 three-phase meter over Modbus: voltages, currents, powers, energies"
);
profile_kind!(
    /// `modbus.sdm120`: an Eastron SDM120 single-phase meter.
    SDM120, SDM120_OUTPUTS, build_sdm120, check_sdm120, "modbus.sdm120", EASTRON_SDM120,
    "Eastron SDM120 single-phase meter over Modbus: voltage, current, power, energies"
);
profile_kind!(
    /// `modbus.nibe`: a NIBE S1155/S1255 ground-source heat pump.
    NIBE, NIBE_OUTPUTS, build_nibe, check_nibe, "modbus.nibe", NIBE_S1155_S1255,
    "NIBE S1155/S1255 heat pump over Modbus: temperatures, flow, power"
);
profile_kind!(
    /// `modbus.heidelberg`: a Heidelberg (Amperfied) Energy Control wallbox.
    HEIDELBERG, HEIDELBERG_OUTPUTS, build_heidelberg, check_heidelberg, "modbus.heidelberg",
    HEIDELBERG_ENERGY_CONTROL,
    "Heidelberg Energy Control wallbox over Modbus: state, currents, voltages, power, energy"
);
profile_kind!(
    /// `modbus.deye_battery`: the battery of a Deye SG04LP3 hybrid inverter.
    DEYE_BATTERY, DEYE_BATTERY_OUTPUTS, build_deye_battery, check_deye_battery, "modbus.deye_battery",
    DEYE_SG04LP3_BATTERY,
    "Deye SG04LP3 inverter battery over Modbus: temperature, voltage, soc, power, current"
);

/// The parameters every Modbus kind takes.
pub const PARAMS: &[ParamSpec] = &[
    ParamSpec {
        name: "transport",
        ty: ParamType::Choice(&["tcp", "rtu"]),
        default: ParamDefault::Text("tcp"),
        doc: "Modbus TCP, or RTU on a serial port (needs tandem-nodes built with feature `rtu`)",
    },
    ParamSpec {
        name: "address",
        ty: ParamType::Text,
        default: ParamDefault::Required,
        doc: "`host:port` for TCP (\"192.168.1.50:502\"), the serial device for RTU (\"/dev/ttyUSB0\")",
    },
    ParamSpec {
        name: "baud",
        ty: ParamType::Int {
            min: 1200,
            max: 921_600,
        },
        default: ParamDefault::Int(9600),
        doc: "RTU bit rate, 8 data bits, no parity, 1 stop bit",
    },
    ParamSpec {
        name: "unit",
        ty: ParamType::Int { min: 0, max: 255 },
        default: ParamDefault::Int(1),
        doc: "Modbus unit (slave) id",
    },
    ParamSpec {
        name: "period",
        ty: ParamType::Duration {
            min_ns: 10_000_000,
            max_ns: 3_600_000_000_000,
        },
        default: ParamDefault::Duration(1_000_000_000),
        doc: "time between scans of the device",
    },
    ParamSpec {
        name: "timeout",
        ty: ParamType::Duration {
            min_ns: 10_000_000,
            max_ns: 60_000_000_000,
        },
        default: ParamDefault::Duration(1_000_000_000),
        doc: "longest wait for a connect or an answer; a late device is a comm error",
    },
    ParamSpec {
        name: "points",
        ty: ParamType::Names,
        default: ParamDefault::Optional,
        doc: "points to read (default all); the channels of the others stay silent",
    },
    ParamSpec {
        name: "max_gap",
        ty: ParamType::Int { min: 0, max: 100 },
        default: ParamDefault::Int(0),
        doc: "unused registers one read may span to merge two reads (for devices that answer them)",
    },
];

/// The poller's configuration and the channels of its points, from the
/// parameters: everything [`build`] checks before it starts the poller, and
/// so the load-time check of every profile's kind.
fn config(
    ctx: &BuildContext<'_>,
    profile: &'static Profile,
) -> Result<(Config, Vec<tandem_core::ChannelId>), BuildError> {
    let id = ctx.id;
    let selected = ctx.params.names("points");
    let max_gap = u16::try_from(int_param(ctx, "max_gap")?)
        .map_err(|_| BuildError::new(format!("`{id}`: `max_gap` must be from 0 to 100")))?;
    let plan = ScanPlan::new(profile, selected, max_gap).map_err(|e| {
        match e {
            PlanError::UnknownPoint(name) => BuildError::new(format!(
                "`{id}`: `{name}` is not a point of {}; points: {}",
                profile.name,
                point_names(profile)
            )),
            PlanError::NoPoints => BuildError::new(format!(
                "`{id}`: `points` is empty; leave it out to read all of: {}",
                point_names(profile)
            )),
            PlanError::Unreadable(name) => BuildError::new(format!(
                "`{id}`: point `{name}` of {} runs past register 65535",
                profile.name
            )),
        }
        .at("points")
    })?;
    let channels = plan
        .outputs()
        .iter()
        .map(|&i| ctx.outputs.get(i).copied())
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| {
            BuildError::new(format!(
                "`{id}`: expected {} output channels, the plan gave {}",
                profile.points.len(),
                ctx.outputs.len()
            ))
        })?;
    let address = text_param(ctx, "address")?.trim().to_owned();
    let transport = transport(ctx, address)?;
    let unit = u8::try_from(int_param(ctx, "unit")?)
        .map_err(|_| BuildError::new(format!("`{id}`: `unit` must be from 0 to 255")))?;
    let config = Config {
        transport,
        unit,
        period: nanos(duration_param(ctx, "period")?),
        timeout: nanos(duration_param(ctx, "timeout")?),
        plan,
    };
    Ok((config, channels))
}

fn build(ctx: &BuildContext<'_>, profile: &'static Profile) -> Result<Box<dyn Source>, BuildError> {
    let (config, channels) = config(ctx, profile)?;
    Ok(Box::new(ModbusSource::start(
        ctx.id.to_owned(),
        config,
        channels,
    )?))
}

fn transport(ctx: &BuildContext<'_>, address: String) -> Result<Transport, BuildError> {
    let id = ctx.id;
    match text_param(ctx, "transport")? {
        "tcp" => {
            let port = address
                .rsplit_once(':')
                .filter(|(host, _)| !host.is_empty())
                .and_then(|(_, port)| port.parse::<u16>().ok());
            match port {
                Some(_) => Ok(Transport::Tcp { address }),
                None => Err(BuildError::new(format!(
                    "`{id}`: address `{address}` is not `host:port`, such as \"192.168.1.50:502\""
                ))
                .at("address")),
            }
        }
        "rtu" => rtu(ctx, address),
        other => Err(BuildError::new(format!(
            "`{id}`: transport `{other}` is not \"tcp\" or \"rtu\""
        ))),
    }
}

#[cfg(feature = "rtu")]
fn rtu(ctx: &BuildContext<'_>, path: String) -> Result<Transport, BuildError> {
    let baud = u32::try_from(int_param(ctx, "baud")?)
        .map_err(|_| BuildError::new(format!("`{}`: `baud` must be positive", ctx.id)))?;
    if path.is_empty() {
        return Err(BuildError::new(format!(
            "`{}`: address is empty; give the serial device, such as \"/dev/ttyUSB0\"",
            ctx.id
        ))
        .at("address"));
    }
    Ok(Transport::Rtu { path, baud })
}

#[cfg(not(feature = "rtu"))]
fn rtu(ctx: &BuildContext<'_>, _path: String) -> Result<Transport, BuildError> {
    Err(BuildError::new(format!(
        "`{}`: this build has no Modbus RTU; rebuild with `--features tandem-nodes/rtu`, or use transport \"tcp\"",
        ctx.id
    ))
    .at("transport"))
}

fn nanos(ns: i64) -> Duration {
    Duration::from_nanos(u64::try_from(ns).unwrap_or(0))
}

fn point_names(profile: &Profile) -> String {
    profile
        .points
        .iter()
        .map(|p| p.name)
        .collect::<Vec<_>>()
        .join(", ")
}
