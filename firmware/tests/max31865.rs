//! MAX31865 against byte-exact SPI vectors, and CVD round trips.
#![allow(clippy::unwrap_used)]

use embedded_hal_mock::eh1::delay::NoopDelay;
use embedded_hal_mock::eh1::spi::{Mock, Transaction};
use proptest::prelude::*;
use tandem_firmware::max31865::{
    fault, Config, Error, FaultCycle, Filter, Max31865, Sensor, Wires,
};
use tandem_firmware::rtd;

fn read(reg: u8, resp: Vec<u8>) -> Vec<Transaction<u8>> {
    vec![
        Transaction::transaction_start(),
        Transaction::write_vec(vec![reg]),
        Transaction::read_vec(resp),
        Transaction::transaction_end(),
    ]
}

fn write(bytes: Vec<u8>) -> Vec<Transaction<u8>> {
    vec![
        Transaction::transaction_start(),
        Transaction::write_vec(bytes),
        Transaction::transaction_end(),
    ]
}

#[test]
fn rtd_0x3b88_pt100_is_zero_celsius() {
    let mut spi = Mock::new(&read(0x01, vec![0x3B, 0x88]));
    let mut dev = Max31865::new(spi.clone(), Sensor::PT100, Wires::Four, Filter::Hz50);
    let t = dev.temperature().unwrap();
    assert!(t.abs() < 0.1, "{t}");
    dev.destroy();
    spi.done();
}

#[test]
fn continuous_three_wire_50hz_config_byte() {
    // VBIAS | AUTO | 3-wire | 50 Hz = 0xD1, written to 0x80
    let mut spi = Mock::new(&write(vec![0x80, 0xD1]));
    let mut dev = Max31865::new(spi.clone(), Sensor::PT1000, Wires::Three, Filter::Hz50);
    dev.start_continuous().unwrap();
    spi.done();
}

#[test]
fn fault_bit_reports_fault_status() {
    let mut exp = read(0x01, vec![0xFF, 0xFF]);
    exp.extend(read(0x07, vec![0x84]));
    let mut spi = Mock::new(&exp);
    let mut dev = Max31865::new(spi.clone(), Sensor::PT100, Wires::Two, Filter::Hz60);
    match dev.temperature() {
        Err(Error::Fault(st)) => {
            assert!(st.has(fault::RTD_HIGH));
            assert!(st.has(fault::OVER_UNDER_VOLTAGE));
            assert!(st.is_open());
        }
        other => panic!("expected a fault, got {other:?}"),
    }
    spi.done();
}

#[test]
fn clear_faults_keeps_bias_and_mode() {
    let mut exp = read(0x00, vec![0xE1]); // bias, auto, one-shot pending, 50 Hz
    exp.extend(write(vec![0x80, 0xC3]));
    let mut spi = Mock::new(&exp);
    let mut dev = Max31865::new(spi.clone(), Sensor::PT100, Wires::Two, Filter::Hz50);
    dev.clear_faults().unwrap();
    spi.done();
}

#[test]
fn one_shot_sequence() {
    // 60 Hz, 2-wire: base 0x00; bias 0x80; bias+1shot 0xA0; RTD; bias off
    let mut exp = write(vec![0x80, 0x80]);
    exp.extend(write(vec![0x80, 0xA0]));
    exp.extend(read(0x01, vec![0x3B, 0x88]));
    exp.extend(write(vec![0x80, 0x00]));
    let mut spi = Mock::new(&exp);
    let mut dev = Max31865::new(spi.clone(), Sensor::PT100, Wires::Two, Filter::Hz60);
    let t = dev.one_shot(&mut NoopDelay::new()).unwrap();
    assert!(t.abs() < 0.1);
    spi.done();
}

#[test]
fn fault_thresholds_are_shifted_and_big_endian() {
    let mut spi = Mock::new(&write(vec![0x83, 0xFF, 0xFE, 0x00, 0x00]));
    let mut dev = Max31865::new(spi.clone(), Sensor::PT100, Wires::Two, Filter::Hz60);
    dev.set_thresholds(0, 0x7FFF).unwrap();
    spi.done();
}

#[test]
fn shorted_sensor_is_out_of_range() {
    let mut spi = Mock::new(&read(0x01, vec![0x00, 0x10]));
    let mut dev = Max31865::new(spi.clone(), Sensor::PT100, Wires::Two, Filter::Hz60);
    assert!(matches!(dev.temperature(), Err(Error::OutOfRange { .. })));
    spi.done();
}

#[test]
fn typed_config_matches_register_byte() {
    let cfg = Config {
        vbias: true,
        auto_convert: true,
        one_shot: false,
        three_wire: true,
        fault_cycle: FaultCycle::Idle,
        fault_clear: false,
        filter_50hz: true,
    };
    assert_eq!(cfg.bits(), 0xD1);
    let mut exp = write(vec![0x80, 0xD1]);
    exp.extend(read(0x00, vec![0x85]));
    let mut spi = Mock::new(&exp);
    let mut dev = Max31865::new(spi.clone(), Sensor::PT100, Wires::Three, Filter::Hz50);
    dev.write_config(cfg).unwrap();
    let back = dev.read_config().unwrap();
    assert!(back.vbias && back.filter_50hz && !back.auto_convert);
    assert_eq!(back.fault_cycle, FaultCycle::Automatic);
    spi.done();
}

proptest! {
    #[test]
    fn config_bits_round_trip(bits: u8) {
        prop_assert_eq!(Config::from_bits(bits).bits(), bits);
    }

    #[test]
    fn cvd_round_trips(t in -200.0f64..850.0, pt1000: bool) {
        let r0 = if pt1000 { 1000.0 } else { 100.0 };
        let r = rtd::resistance(t, r0);
        let back = rtd::temperature(r, r0).unwrap();
        prop_assert!((back - t).abs() < 1e-6, "{} -> {} -> {}", t, r, back);
    }

    #[test]
    fn cvd_never_panics(r: f64, r0: f64) {
        let _ = rtd::temperature(r, r0);
    }

    #[test]
    fn any_rtd_register_never_panics(reg: u16) {
        let reading = tandem_firmware::max31865::RtdReading::from_register(reg);
        let r = tandem_firmware::max31865::adc_to_resistance(reading.adc, 430.0);
        let _ = rtd::temperature(f64::from(r), 100.0);
    }
}
