//! Register maps of common home-energy devices.
//!
//! Each table cites the public register map it was taken from. Only points
//! whose address, type and scale that source states are listed.

use super::FunctionCode::{ReadHolding as H, ReadInput as I};
use super::ValueType::{F32, I16, U16, U32};
use super::{Point, Profile};
use crate::pilot::PilotState;

/// All profiles, for lookup by name.
pub const ALL: &[&Profile] = &[
    &EASTRON_SDM630,
    &EASTRON_SDM120,
    &NIBE_S1155_S1255,
    &HEIDELBERG_ENERGY_CONTROL,
    &DEYE_SG04LP3_BATTERY,
];

/// The profile called `name`.
pub fn by_name(name: &str) -> Option<&'static Profile> {
    ALL.iter().copied().find(|p| p.name == name)
}

const fn f32_in(name: &'static str, address: u16, unit: &'static str) -> Point {
    Point::new(name, I, address, F32, unit)
}

// Source: Eastron "SDM630 Modbus Protocol" (SDM630-Modbus V2, Modbus
// protocol implementation), input registers 3xxxx, IEEE 754 float32,
// high word first. 30001 = address 0x0000.
const SDM630_POINTS: &[Point] = &[
    f32_in("voltage_l1", 0x0000, "V"),
    f32_in("voltage_l2", 0x0002, "V"),
    f32_in("voltage_l3", 0x0004, "V"),
    f32_in("current_l1", 0x0006, "A"),
    f32_in("current_l2", 0x0008, "A"),
    f32_in("current_l3", 0x000A, "A"),
    f32_in("power_l1", 0x000C, "W"),
    f32_in("power_l2", 0x000E, "W"),
    f32_in("power_l3", 0x0010, "W"),
    f32_in("power_factor_l1", 0x001E, ""),
    f32_in("power_factor_l2", 0x0020, ""),
    f32_in("power_factor_l3", 0x0022, ""),
    f32_in("power_total", 0x0034, "W"),
    f32_in("frequency", 0x0046, "Hz"),
    f32_in("import_energy", 0x0048, "kWh"),
    f32_in("export_energy", 0x004A, "kWh"),
    f32_in("total_energy", 0x0156, "kWh"),
];

/// Eastron SDM630 three-phase meter.
pub const EASTRON_SDM630: Profile = Profile {
    name: "eastron-sdm630",
    source: "Eastron SDM630 Modbus protocol, input registers 30001.. (float32, high word first)",
    points: SDM630_POINTS,
};

// Source: Eastron "SDM120 Modbus Protocol" (SDM120-Modbus), input
// registers 3xxxx, IEEE 754 float32, high word first.
const SDM120_POINTS: &[Point] = &[
    f32_in("voltage", 0x0000, "V"),
    f32_in("current", 0x0006, "A"),
    f32_in("power", 0x000C, "W"),
    f32_in("apparent_power", 0x0012, "VA"),
    f32_in("reactive_power", 0x0018, "var"),
    f32_in("power_factor", 0x001E, ""),
    f32_in("frequency", 0x0046, "Hz"),
    f32_in("import_energy", 0x0048, "kWh"),
    f32_in("export_energy", 0x004A, "kWh"),
    f32_in("total_energy", 0x0156, "kWh"),
];

/// Eastron SDM120 single-phase meter.
pub const EASTRON_SDM120: Profile = Profile {
    name: "eastron-sdm120",
    source: "Eastron SDM120 Modbus protocol, input registers 30001.. (float32, high word first)",
    points: SDM120_POINTS,
};

// Source: NIBE S1155/S1255 Modbus register export as published in the
// open-source `nibe` library (github.com/yozik04/nibe,
// nibe/data/s1155_s1255.csv): input registers, s16 with division factor 10
// for temperatures and flow; "Power (EB101)" u16 / 10 kW.
const NIBE_S_POINTS: &[Point] = &[
    Point::new("outdoor_temperature", I, 1, I16, "degC").scaled(0.1), // BT1
    Point::new("supply_temperature", I, 5, I16, "degC").scaled(0.1),  // BT2
    Point::new("return_temperature", I, 7, I16, "degC").scaled(0.1),  // BT3
    Point::new("hot_water_top_temperature", I, 8, I16, "degC").scaled(0.1), // BT7
    Point::new("flow", I, 40, I16, "l/min").scaled(0.1),              // BF1
    Point::new("power", I, 406, U16, "kW").scaled(0.1),               // EB101
];

/// NIBE S-series ground-source heat pump (S1155 / S1255).
///
/// The SG-Ready state is not in this table: NIBE exposes SG Ready through
/// its two AUX inputs (drive them with [`crate::sg_ready`]) and the
/// register export cited does not give a read-back register we could
/// verify.
pub const NIBE_S1155_S1255: Profile = Profile {
    name: "nibe-s1155-s1255",
    source: "NIBE S1155/S1255 Modbus register list (yozik04/nibe s1155_s1255.csv)",
    points: NIBE_S_POINTS,
};

// Source: Amperfied/Heidelberg "EC_ModBus_register_table_20210222_LW"
// (Heidelberg Energy Control Modbus RTU register table), as decoded by
// github.com/Schrolli91/heidelberg_energy_control (core/capabilities/core.py):
// input registers 4 layout version, 5 charging state, 6..8 phase currents
// in 0.1 A RMS, 9 PCB temperature in 0.1 degC, 10..12 phase voltages in V,
// 14 power in W, 15..16 energy since power-on and 17..18 total energy in Wh
// (u32, high word first); holding register 261 maximal current command in
// 0.1 A.
const HEIDELBERG_POINTS: &[Point] = &[
    Point::new("layout_version", I, 4, U16, ""),
    Point::new("charging_state", I, 5, U16, ""),
    Point::new("current_l1", I, 6, U16, "A").scaled(0.1),
    Point::new("current_l2", I, 7, U16, "A").scaled(0.1),
    Point::new("current_l3", I, 8, U16, "A").scaled(0.1),
    Point::new("pcb_temperature", I, 9, I16, "degC").scaled(0.1),
    Point::new("voltage_l1", I, 10, U16, "V"),
    Point::new("voltage_l2", I, 11, U16, "V"),
    Point::new("voltage_l3", I, 12, U16, "V"),
    Point::new("power", I, 14, U16, "W"),
    Point::new("energy_since_power_on", I, 15, U32, "kWh").scaled(0.001),
    Point::new("total_energy", I, 17, U32, "kWh").scaled(0.001),
    Point::new("max_current", H, 261, U16, "A").scaled(0.1),
];

/// Heidelberg (Amperfied) Energy Control wallbox.
pub const HEIDELBERG_ENERGY_CONTROL: Profile = Profile {
    name: "heidelberg-energy-control",
    source: "Amperfied EC_ModBus_register_table_20210222_LW; Schrolli91/heidelberg_energy_control",
    points: HEIDELBERG_POINTS,
};

/// Maps the Heidelberg `charging_state` register to the IEC 61851 state:
/// 2/3 = A1/A2, 4/5 = B1/B2, 6/7 = C1/C2, 9 = E, 10 = F, 11 (error) = E.
/// 8 is "derating": the box lowers its current while the vehicle keeps
/// charging, so the pilot is in C (the Home Assistant integration cited
/// above shows it as D). Undefined values give `None`.
pub fn heidelberg_pilot_state(raw: u16) -> Option<PilotState> {
    match raw {
        2 | 3 => Some(PilotState::A),
        4 | 5 => Some(PilotState::B),
        6..=8 => Some(PilotState::C),
        9 | 11 => Some(PilotState::E),
        10 => Some(PilotState::F),
        _ => None,
    }
}

// Source: Deye SG04LP3 (three-phase low-voltage hybrid) battery registers
// as documented by kbialek/deye-inverter-mqtt
// (docs/metric_group_deye_sg04lp3_battery.md): holding registers 586
// temperature (0.1 degC with a 1000 offset, i.e. raw/10 - 100), 587
// voltage 0.01 V, 588 SoC %, 590 power W (signed, positive =
// discharging), 591 current 0.01 A (signed).
const DEYE_BATTERY_POINTS: &[Point] = &[
    Point::new("temperature", H, 586, U16, "degC")
        .scaled(0.1)
        .offset(-100.0),
    Point::new("voltage", H, 587, U16, "V").scaled(0.01),
    Point::new("soc", H, 588, U16, "%"),
    Point::new("power", H, 590, I16, "W"),
    Point::new("current", H, 591, I16, "A").scaled(0.01),
];

/// Battery of a Deye SG04LP3 hybrid inverter (also sold as Sunsynk).
pub const DEYE_SG04LP3_BATTERY: Profile = Profile {
    name: "deye-sg04lp3-battery",
    source: "kbialek/deye-inverter-mqtt metric_group_deye_sg04lp3_battery",
    points: DEYE_BATTERY_POINTS,
};
