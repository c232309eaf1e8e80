//! The drivers against the simulated chips (feature `sim`).
#![cfg(feature = "sim")]
#![allow(clippy::unwrap_used)]

use embedded_hal_mock::eh1::delay::NoopDelay;
use tandem_firmware::ads1115::{Ads1115, DataRate, Gain, Mux};
use tandem_firmware::ina226::Ina226;
use tandem_firmware::max31865::{self, Filter, Max31865, Sensor, Wires};
use tandem_firmware::pilot::{PilotClassifier, PilotDivider, PilotState};
use tandem_firmware::sbs::{self, PecMode, SmartBattery};
use tandem_firmware::sim::{PecFault, SimAds1115, SimIna226, SimMax31865, SimSmartBattery};

#[test]
fn battery_values_follow_the_sim() {
    let sim = SimSmartBattery::new();
    let mut bat = SmartBattery::new(sim.clone());
    bat.init().unwrap();
    assert_eq!(bat.voltage_mv().unwrap(), 12000);
    sim.set_voltage_mv(11800);
    sim.set_current_ma(-1500);
    sim.set_temperature_celsius(30.0);
    sim.set_relative_soc(64);
    assert_eq!(bat.voltage_mv().unwrap(), 11800);
    assert_eq!(bat.current_ma().unwrap(), -1500);
    assert!((bat.temperature_celsius().unwrap() - 30.0).abs() < 0.06);
    assert_eq!(bat.relative_state_of_charge().unwrap(), 64);
    assert_eq!(
        bat.remaining_capacity().unwrap().milliamp_hours(),
        Some(4000)
    );
    let mut name = [0u8; 32];
    let n = bat
        .read_block(sbs::register::MANUFACTURER_NAME, &mut name)
        .unwrap();
    assert_eq!(&name[..n], b"tandem");
    assert_eq!(bat.pec_stats().mismatches, 0);
}

#[test]
fn battery_faults() {
    let sim = SimSmartBattery::new();
    let mut bat = SmartBattery::new(sim.clone());

    sim.set_nack(true);
    assert!(matches!(bat.voltage_mv(), Err(sbs::Error::Bus(_))));
    sim.set_nack(false);

    sim.set_relative_soc(140);
    assert!(matches!(
        bat.relative_state_of_charge(),
        Err(sbs::Error::OutOfRange { .. })
    ));

    sim.set_pec_fault(PecFault::Next(1));
    assert_eq!(bat.voltage_mv().unwrap(), 12000);
    assert_eq!(bat.pec_stats().recovered, 1);

    // noise on both the read and its retry: an error, but no fallback
    sim.set_pec_fault(PecFault::Next(4));
    assert!(matches!(bat.voltage_mv(), Err(sbs::Error::Pec { .. })));
    assert!(matches!(bat.voltage_mv(), Err(sbs::Error::Pec { .. })));
    assert_eq!(bat.pec_mode(), PecMode::Checked);
    assert_eq!(bat.voltage_mv().unwrap(), 12000);

    sim.set_stuck(true);
    sim.set_voltage_mv(9000);
    assert_eq!(bat.voltage_mv().unwrap(), 12000);
    sim.set_stuck(false);
    assert_eq!(bat.voltage_mv().unwrap(), 9000);

    sim.set_pec_fault(PecFault::Wrong);
    assert!(matches!(bat.voltage_mv(), Err(sbs::Error::Pec { .. })));
    assert_eq!(bat.voltage_mv().unwrap(), 9000);
    assert_eq!(bat.pec_mode(), PecMode::FallenBack);
    assert_eq!(bat.voltage_mv().unwrap(), 9000);
}

#[test]
fn rtd_sim_temperature_and_open_fault() {
    let sim = SimMax31865::new(100.0, 430.0);
    let mut dev = Max31865::new(sim.clone(), Sensor::PT100, Wires::Three, Filter::Hz50);
    dev.start_continuous().unwrap();
    assert_eq!(sim.config(), 0xD1);
    for t in [-150.0, -20.0, 0.0, 21.5, 300.0] {
        sim.set_temperature(t, 100.0);
        let got = f64::from(dev.temperature().unwrap());
        // ADC quantisation: 430/32768 ohm ~ 0.034 C
        assert!((got - t).abs() < 0.05, "{t} -> {got}");
    }
    let t = dev.one_shot(&mut NoopDelay::new()).unwrap();
    assert!((f64::from(t) - 300.0).abs() < 0.05);

    sim.set_open(true);
    match dev.temperature() {
        Err(max31865::Error::Fault(st)) => assert!(st.is_open()),
        other => panic!("expected open fault, got {other:?}"),
    }
    sim.set_open(false);
    dev.clear_faults().unwrap();
    assert_eq!(sim.fault_status(), 0);
    let after = dev.temperature();
    assert!(after.is_ok(), "{after:?} {:#x}", sim.fault_status());

    sim.set_resistance(500.0); // past Rref: ADC saturates, out of CVD range
    assert!(matches!(
        dev.temperature(),
        Err(max31865::Error::OutOfRange { .. })
    ));
    sim.set_bus_fault(true);
    assert!(matches!(dev.temperature(), Err(max31865::Error::Bus(_))));
}

#[test]
fn rtd_sim_pt1000_and_fault_detection() {
    let sim = SimMax31865::new(1000.0, 4300.0);
    let mut dev = Max31865::new(sim.clone(), Sensor::PT1000, Wires::Two, Filter::Hz60);
    sim.set_temperature(55.0, 1000.0);
    assert!((dev.temperature().unwrap() - 55.0).abs() < 0.05);
    let mut d = NoopDelay::new();
    assert_eq!(dev.run_fault_detection(&mut d).unwrap().0, 0);
    sim.set_open(true);
    assert!(dev.run_fault_detection(&mut d).unwrap().is_open());
}

#[test]
fn pilot_through_sim_adc() {
    let divider = PilotDivider {
        ratio: 10.0 / 110.0,
        offset_v: 1.5,
    };
    let sim = SimAds1115::default();
    let mut adc = Ads1115::new(sim.clone(), 0x48);
    let mut d = NoopDelay::new();
    let mut cls = PilotClassifier::new(0.5);
    for state in PilotState::ALL {
        sim.set_pilot_volts(0, divider, f64::from(state.nominal_volts()));
        let v = adc
            .read_volts(Mux::Ain0, Gain::Fs4v096, DataRate::Sps860, &mut d)
            .unwrap();
        let pilot = divider.pilot_volts(v).unwrap();
        assert_eq!(cls.update(pilot), Some(state), "{pilot}");
    }
    // out of range: saturates at +full scale
    sim.set_input_volts(1, 9.0);
    let raw = adc
        .read_single(Mux::Ain1, Gain::Fs4v096, DataRate::Sps860, &mut d)
        .unwrap();
    assert_eq!(raw, i16::MAX);
    sim.set_busy(true);
    assert!(adc
        .read_single(Mux::Ain1, Gain::Fs4v096, DataRate::Sps860, &mut d)
        .is_err());
}

#[test]
fn ina226_sim_current_power_bus() {
    let sim = SimIna226::with_shunt(0.002);
    let mut ina = Ina226::new(sim.clone(), 0x40);
    assert_eq!(ina.manufacturer_id().unwrap(), 0x5449);
    ina.calibrate(0.002, 0.001).unwrap();
    assert_eq!(sim.calibration(), 2560);
    sim.set_current_a(16.0);
    sim.set_bus_volts(230.0 / 10.0); // 23 V on the measured bus
    assert!((ina.current_a().unwrap() - 16.0).abs() < 1e-3);
    assert!((ina.bus_voltage_v().unwrap() - 23.0).abs() < 1e-3);
    assert!((ina.power_w().unwrap() - 368.0).abs() < 0.05);
    sim.set_current_a(-2.5);
    assert!((ina.current_a().unwrap() + 2.5).abs() < 1e-3);
    // beyond the shunt range (81.92 mV): saturates
    sim.set_current_a(100.0);
    assert!(ina.shunt_voltage_v().unwrap() < 0.0820);
    sim.set_nack(true);
    assert!(ina.bus_voltage_v().is_err());
}

#[test]
fn sim_handles_are_send_and_sync() {
    fn check<T: Send + Sync + Clone>() {}
    check::<SimSmartBattery>();
    check::<SimMax31865>();
    check::<SimAds1115>();
    check::<SimIna226>();
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_pack_word_reads_back_or_errors(cmd in 0u8..0x20, value: u16, spec: u16) {
            let sim = SimSmartBattery::new();
            sim.set_word(sbs::register::SPECIFICATION_INFO, spec);
            sim.set_word(cmd, value);
            let mut bat = SmartBattery::new(sim.clone());
            // none of these may panic, whatever the pack holds
            let _ = bat.init();
            let _ = bat.temperature_celsius();
            let _ = bat.voltage_mv();
            let _ = bat.current_ma();
            let _ = bat.relative_state_of_charge();
            let _ = bat.remaining_capacity();
            let _ = bat.battery_status().map(|s| s.error_code());
            prop_assert_eq!(bat.read_word(cmd), Ok(sim.word(cmd)));
        }

        #[test]
        fn ina226_current_round_trips(amps in -32.7f64..32.7) {
            let sim = SimIna226::with_shunt(0.002);
            let mut ina = Ina226::new(sim.clone(), 0x40);
            ina.calibrate(0.002, 0.001).map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
            sim.set_current_a(amps);
            let got = f64::from(ina.current_a().map_err(|e| TestCaseError::fail(format!("{e:?}")))?);
            // shunt LSB 2.5 uV / 2 mOhm = 1.25 mA, current LSB 1 mA
            prop_assert!((got - amps).abs() < 0.003, "{} -> {}", amps, got);
        }

        #[test]
        fn rtd_sim_round_trips(t in -190.0f64..800.0) {
            let sim = SimMax31865::new(1000.0, 4300.0);
            let mut dev = Max31865::new(sim.clone(), Sensor::PT1000, Wires::Four, Filter::Hz50);
            sim.set_temperature(t, 1000.0);
            let got = f64::from(dev.temperature().map_err(|e| TestCaseError::fail(format!("{e:?}")))?);
            prop_assert!((got - t).abs() < 0.05, "{} -> {}", t, got);
        }
    }
}
