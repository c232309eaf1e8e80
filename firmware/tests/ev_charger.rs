//! ADS1115, control-pilot classification and INA226 against byte-exact vectors.
#![allow(clippy::unwrap_used)]

use embedded_hal_mock::eh1::delay::NoopDelay;
use embedded_hal_mock::eh1::i2c::{Mock, Transaction};
use proptest::prelude::*;
use tandem_firmware::ads1115::{self, Ads1115, DataRate, Gain, Mux};
use tandem_firmware::ina226::{self, calibration_value, Ina226};
use tandem_firmware::pilot::{PilotClassifier, PilotDivider, PilotState};

const ADC: u8 = 0x48;
const INA: u8 = 0x40;

#[test]
fn ads1115_single_shot_ain0_4v096_128sps() {
    // OS | MUX=100 | PGA=001 | MODE | DR=100 | COMP_QUE=11 = 0xC383
    assert_eq!(
        ads1115::single_shot_config(Mux::Ain0, Gain::Fs4v096, DataRate::Sps128),
        0xC383
    );
    let mut i2c = Mock::new(&[
        Transaction::write(ADC, vec![0x01, 0xC3, 0x83]),
        Transaction::write_read(ADC, vec![0x01], vec![0x43, 0x83]), // busy
        Transaction::write_read(ADC, vec![0x01], vec![0xC3, 0x83]), // done
        Transaction::write_read(ADC, vec![0x00], vec![0x40, 0x00]),
    ]);
    let mut adc = Ads1115::new(i2c.clone(), ADC);
    let v = adc
        .read_volts(
            Mux::Ain0,
            Gain::Fs4v096,
            DataRate::Sps128,
            &mut NoopDelay::new(),
        )
        .unwrap();
    assert!((v - 2.048).abs() < 1e-6);
    adc.destroy();
    i2c.done();
}

#[test]
fn ads1115_negative_differential_and_timeout() {
    let mut exp = vec![Transaction::write(ADC, vec![0x01, 0x85, 0x83])];
    exp.push(Transaction::write_read(ADC, vec![0x01], vec![0x85, 0x83]));
    exp.push(Transaction::write_read(ADC, vec![0x00], vec![0xC0, 0x00]));
    exp.push(Transaction::write(ADC, vec![0x01, 0x85, 0x83]));
    for _ in 0..4 {
        exp.push(Transaction::write_read(ADC, vec![0x01], vec![0x05, 0x83]));
    }
    let mut i2c = Mock::new(&exp);
    let mut adc = Ads1115::new(i2c.clone(), ADC);
    let mut d = NoopDelay::new();
    let raw = adc
        .read_single(Mux::Ain0Ain1, Gain::Fs2v048, DataRate::Sps128, &mut d)
        .unwrap();
    assert_eq!(raw, -16384);
    assert_eq!(
        adc.read_single(Mux::Ain0Ain1, Gain::Fs2v048, DataRate::Sps128, &mut d),
        Err(ads1115::Error::Timeout)
    );
    i2c.done();
}

#[test]
fn ina226_calibration_vector() {
    assert_eq!(calibration_value(0.002, 0.001), Some(2560));
    assert_eq!(calibration_value(0.0, 0.001), None);
    assert_eq!(calibration_value(0.002, 1e-9), None);
}

#[test]
fn ina226_reads_current_power_bus() {
    let mut i2c = Mock::new(&[
        Transaction::write(INA, vec![0x05, 0x0A, 0x00]),
        Transaction::write_read(INA, vec![0x04], vec![0xF0, 0x60]), // -4000 -> -4 A
        Transaction::write_read(INA, vec![0x03], vec![0x03, 0xE8]), // 1000*25 mW = 25 W
        Transaction::write_read(INA, vec![0x02], vec![0x25, 0x80]), // 9600*1.25 mV = 12 V
        Transaction::write_read(INA, vec![0x01], vec![0xFF, 0xFE]), // -5 uV
    ]);
    let mut ina = Ina226::new(i2c.clone(), INA);
    assert_eq!(ina.calibrate(0.002, 0.001).unwrap(), 2560);
    assert!((ina.current_a().unwrap() + 4.0).abs() < 1e-5);
    assert!((ina.power_w().unwrap() - 25.0).abs() < 1e-4);
    assert!((ina.bus_voltage_v().unwrap() - 12.0).abs() < 1e-5);
    assert!((ina.shunt_voltage_v().unwrap() + 5e-6).abs() < 1e-9);
    i2c.done();
}

#[test]
fn ina226_uncalibrated_current_is_an_error() {
    let mut i2c = Mock::new(&[]);
    let mut ina = Ina226::new(i2c.clone(), INA);
    assert_eq!(ina.current_a(), Err(ina226::Error::NotCalibrated));
    i2c.done();
}

#[test]
fn pilot_hysteresis() {
    let mut c = PilotClassifier::new(0.5);
    assert_eq!(c.update(9.0), Some(PilotState::B));
    // just below the B/C boundary (7.5) but within the margin: stays B
    assert_eq!(c.update(7.2), Some(PilotState::B));
    // past the margin: C
    assert_eq!(c.update(6.9), Some(PilotState::C));
    // back up to 7.8: within C's margin, stays C
    assert_eq!(c.update(7.8), Some(PilotState::C));
    assert_eq!(c.update(8.1), Some(PilotState::B));
    assert_eq!(c.update(f32::NAN), Some(PilotState::B));
    assert_eq!(c.update(-11.8), Some(PilotState::F));
}

#[test]
fn pilot_divider_scaling() {
    let d = PilotDivider {
        ratio: 10.0 / 110.0,
        offset_v: 1.5,
    };
    let adc = d.adc_volts(12.0);
    assert!((adc - 2.590_909).abs() < 1e-5);
    assert!((d.pilot_volts(adc).unwrap() - 12.0).abs() < 1e-4);
    let broken = PilotDivider {
        ratio: 0.0,
        offset_v: 1.5,
    };
    assert_eq!(broken.pilot_volts(2.0), None);
}

proptest! {
    #[test]
    fn nominal_voltage_round_trips(i in 0usize..6) {
        let s = PilotState::ALL[i];
        prop_assert_eq!(PilotState::classify(s.nominal_volts()), Some(s));
    }

    #[test]
    fn noise_within_band_keeps_the_state(i in 0usize..6, noise in -0.9f32..0.9) {
        let s = PilotState::ALL[i];
        let mut c = PilotClassifier::new(0.5);
        prop_assert_eq!(c.update(s.nominal_volts()), Some(s));
        prop_assert_eq!(c.update(s.nominal_volts() + noise), Some(s));
    }

    #[test]
    fn divider_round_trips(v in -12.5f32..12.5) {
        let d = PilotDivider { ratio: 0.1, offset_v: 1.65 };
        prop_assert!((d.pilot_volts(d.adc_volts(v)).unwrap() - v).abs() < 1e-3);
    }

    #[test]
    fn classifier_never_panics(vs in proptest::collection::vec(any::<f32>(), 0..32)) {
        let mut c = PilotClassifier::new(0.5);
        for v in vs { let _ = c.update(v); }
    }
}
