//! Smart battery driver against byte-exact SMBus vectors.
#![allow(clippy::unwrap_used)]

use embedded_hal::i2c::ErrorKind;
use embedded_hal_mock::eh1::i2c::{Mock, Transaction};
use proptest::prelude::*;
use tandem_firmware::sbs::{
    status, CapacityUnit, Error, PecMode, SmartBattery, StatusError, PEC_FALLBACK_AFTER,
};
use tandem_firmware::smbus::{self, read_pec};

const A: u8 = 0x0B;

/// A word response with a correct PEC.
fn word(cmd: u8, value: u16) -> Transaction {
    let [lo, hi] = value.to_le_bytes();
    Transaction::write_read(A, vec![cmd], vec![lo, hi, read_pec(A, cmd, &[lo, hi])])
}

#[test]
fn voltage_12000_mv_with_pec_e2() {
    let mut i2c = Mock::new(&[Transaction::write_read(
        A,
        vec![0x09],
        vec![0xE0, 0x2E, 0xE2],
    )]);
    let mut bat = SmartBattery::new(&mut i2c);
    assert_eq!(bat.voltage_mv().unwrap(), 12000);
    assert_eq!(bat.pec_stats().mismatches, 0);
    i2c.done();
}

#[test]
fn init_adopts_scales_and_capacity_mode() {
    // SpecificationInfo 0x1231: IPScale 1 (x10), VScale 2 (x100), version 3, rev 1
    let mut i2c = Mock::new(&[
        word(0x1A, 0x1231),
        word(0x03, 0x8000),
        word(0x09, 120),
        word(0x0A, (-250i16) as u16),
        word(0x0F, 1500),
        word(0x10, 1800),
    ]);
    let mut bat = SmartBattery::new(i2c.clone());
    let info = bat.init().unwrap();
    assert_eq!((info.version, info.vscale, info.ipscale), (3, 2, 1));
    assert_eq!(bat.voltage_mv().unwrap(), 12000);
    assert_eq!(bat.current_ma().unwrap(), -2500);
    let rem = bat.remaining_capacity().unwrap();
    assert_eq!(rem.unit, CapacityUnit::TenMilliWattHours);
    assert_eq!(rem.value, 15000);
    assert_eq!(rem.milliwatt_hours(), Some(150_000));
    assert_eq!(rem.milliamp_hours(), None);
    assert_eq!(bat.full_charge_capacity().unwrap().value, 18000);
    bat.destroy();
    i2c.done();
}

#[test]
fn temperature_soc_cycles_and_status() {
    let mut i2c = Mock::new(&[
        word(0x08, 2982), // 298.2 K = 25.05 C
        word(0x0D, 87),
        word(0x0D, 101),
        word(0x17, 312),
        word(0x16, status::OVER_TEMP_ALARM | status::DISCHARGING | 0x0003),
    ]);
    let mut bat = SmartBattery::new(i2c.clone());
    assert!((bat.temperature_celsius().unwrap() - 25.05).abs() < 1e-3);
    assert_eq!(bat.relative_state_of_charge().unwrap(), 87);
    assert_eq!(
        bat.relative_state_of_charge(),
        Err(Error::OutOfRange {
            command: 0x0D,
            value: 101
        })
    );
    assert_eq!(bat.cycle_count().unwrap(), 312);
    let st = bat.battery_status().unwrap();
    assert_eq!(st.alarms(), status::OVER_TEMP_ALARM);
    assert!(st.has(status::DISCHARGING));
    assert_eq!(st.error_code(), StatusError::UnsupportedCommand);
    i2c.done();
}

#[test]
fn unsupported_scale_is_an_error_and_keeps_old_scale() {
    let mut i2c = Mock::new(&[word(0x1A, 0x0431), word(0x09, 7)]);
    let mut bat = SmartBattery::new(i2c.clone());
    assert_eq!(
        bat.specification_info(),
        Err(Error::UnsupportedScale { info: 0x0431 })
    );
    assert_eq!(bat.voltage_mv().unwrap(), 7);
    i2c.done();
}

#[test]
fn noisy_pec_is_retried_and_recovered() {
    let mut i2c = Mock::new(&[
        Transaction::write_read(A, vec![0x09], vec![0xE0, 0x2F, 0xE2]),
        Transaction::write_read(A, vec![0x09], vec![0xE0, 0x2E, 0xE2]),
    ]);
    let mut bat = SmartBattery::new(i2c.clone());
    assert_eq!(bat.voltage_mv().unwrap(), 12000);
    let stats = bat.pec_stats();
    assert_eq!(
        (stats.mismatches, stats.recovered, stats.fallbacks),
        (1, 1, 0)
    );
    assert_eq!(bat.pec_mode(), PecMode::Checked);
    i2c.done();
}

#[test]
fn consistently_wrong_pec_falls_back_to_no_pec() {
    assert_eq!(PEC_FALLBACK_AFTER, 2);
    let bad = vec![0xE0, 0x2E, 0x00];
    let mut i2c = Mock::new(&[
        // first command: bad twice, identical -> error, suspicion 1
        Transaction::write_read(A, vec![0x09], bad.clone()),
        Transaction::write_read(A, vec![0x09], bad.clone()),
        // second command: same again -> fallback, value returned
        Transaction::write_read(A, vec![0x09], bad.clone()),
        Transaction::write_read(A, vec![0x09], bad),
        // from now on two-byte reads
        Transaction::write_read(A, vec![0x0D], vec![50, 0]),
    ]);
    let mut bat = SmartBattery::new(i2c.clone());
    assert_eq!(
        bat.voltage_mv(),
        Err(Error::Pec {
            command: 0x09,
            expected: 0xE2,
            received: 0x00
        })
    );
    assert_eq!(bat.voltage_mv().unwrap(), 12000);
    assert_eq!(bat.pec_mode(), PecMode::FallenBack);
    assert_eq!(bat.pec_stats().fallbacks, 1);
    assert_eq!(bat.relative_state_of_charge().unwrap(), 50);
    i2c.done();
}

#[test]
fn differing_bad_reads_never_fall_back() {
    let mut exp = Vec::new();
    for i in 0..3u8 {
        exp.push(Transaction::write_read(A, vec![0x09], vec![0xE0, i, 0x00]));
        exp.push(Transaction::write_read(A, vec![0x09], vec![0xE1, i, 0x00]));
    }
    let mut i2c = Mock::new(&exp);
    let mut bat = SmartBattery::new(i2c.clone());
    for _ in 0..3 {
        assert!(matches!(bat.voltage_mv(), Err(Error::Pec { .. })));
    }
    assert_eq!(bat.pec_mode(), PecMode::Checked);
    i2c.done();
}

#[test]
fn floating_bus_never_falls_back() {
    let ff = vec![0xFF, 0xFF, 0xFF];
    let exp: Vec<_> = (0..4)
        .map(|_| Transaction::write_read(A, vec![0x09], ff.clone()))
        .collect();
    let mut i2c = Mock::new(&exp);
    let mut bat = SmartBattery::new(i2c.clone());
    assert!(bat.voltage_mv().is_err());
    assert!(bat.voltage_mv().is_err());
    assert_eq!(bat.pec_mode(), PecMode::Checked);
    i2c.done();
}

#[test]
fn nack_is_a_bus_error() {
    let mut i2c = Mock::new(&[
        Transaction::write_read(A, vec![0x09], vec![0, 0, 0]).with_error(ErrorKind::NoAcknowledge(
            embedded_hal::i2c::NoAcknowledgeSource::Address,
        )),
    ]);
    let mut bat = SmartBattery::new(i2c.clone());
    assert!(matches!(bat.voltage_mv(), Err(Error::Bus(_))));
    i2c.done();
}

#[test]
fn manufacturer_name_block_with_pec() {
    let mut raw = vec![5u8];
    raw.extend_from_slice(b"ACME1");
    let pec = read_pec(A, 0x20, &raw);
    raw.push(pec);
    raw.resize(34, 0xFF);
    let mut i2c = Mock::new(&[Transaction::write_read(A, vec![0x20], raw)]);
    let mut bat = SmartBattery::new(i2c.clone());
    let mut out = [0u8; 32];
    let n = bat.read_block(0x20, &mut out).unwrap();
    assert_eq!(&out[..n], b"ACME1");
    i2c.done();
}

#[test]
fn set_capacity_unit_writes_with_pec() {
    let pec = smbus::write_pec(A, 0x03, &[0x01, 0x80]);
    let mut i2c = Mock::new(&[
        word(0x03, 0x0001),
        Transaction::write(A, vec![0x03, 0x01, 0x80, pec]),
    ]);
    let mut bat = SmartBattery::new(i2c.clone());
    bat.set_capacity_unit(CapacityUnit::TenMilliWattHours)
        .unwrap();
    assert_eq!(bat.capacity_unit(), CapacityUnit::TenMilliWattHours);
    i2c.done();
}

proptest! {
    #[test]
    fn word_decode_never_panics(raw in proptest::collection::vec(any::<u8>(), 0..8), cmd: u8, pec: bool) {
        let _ = smbus::decode_word(A, cmd, &raw, pec);
    }

    #[test]
    fn block_decode_never_panics(raw in proptest::collection::vec(any::<u8>(), 0..40), cmd: u8, pec: bool) {
        if let Ok(data) = smbus::decode_block(A, cmd, &raw, pec) {
            prop_assert!(data.len() <= 32);
        }
    }

    #[test]
    fn word_with_correct_pec_round_trips(cmd: u8, value: u16) {
        let [lo, hi] = value.to_le_bytes();
        let raw = [lo, hi, read_pec(A, cmd, &[lo, hi])];
        prop_assert_eq!(smbus::decode_word(A, cmd, &raw, true), Ok(value));
    }
}
