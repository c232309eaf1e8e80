//! MAX17048 against byte-exact I2C vectors.
#![allow(clippy::unwrap_used)]

use embedded_hal_mock::eh1::i2c::{Mock, Transaction};
use tandem_firmware::max17048::{status, Max17048, ADDRESS};

#[test]
fn reads_voltage_soc_and_rate_big_endian() {
    let mut i2c = Mock::new(&[
        // 0xD000 = 53248 * 78.125 uV = 4.16 V
        Transaction::write_read(ADDRESS, vec![0x02], vec![0xD0, 0x00]),
        // 0x5780 = 87.5 %
        Transaction::write_read(ADDRESS, vec![0x04], vec![0x57, 0x80]),
        // 0xFFF6 = -10 * 0.208 = -2.08 %/h
        Transaction::write_read(ADDRESS, vec![0x16], vec![0xFF, 0xF6]),
    ]);
    let mut gauge = Max17048::new(i2c.clone());
    assert_eq!(gauge.cell_voltage_uv().unwrap(), 4_160_000);
    assert_eq!(gauge.soc_percent().unwrap(), 87.5);
    assert!((gauge.charge_rate_percent_per_hour().unwrap() + 2.08).abs() < 1e-5);
    gauge.destroy();
    i2c.done();
}

#[test]
fn status_alerts_and_clear() {
    let mut i2c = Mock::new(&[
        Transaction::write_read(ADDRESS, vec![0x1A], vec![0x14, 0x00]),
        Transaction::write_read(ADDRESS, vec![0x1A], vec![0x14, 0x00]),
        Transaction::write(ADDRESS, vec![0x1A, 0x04, 0x00]),
        Transaction::write_read(ADDRESS, vec![0x0C], vec![0x97, 0x3C]),
        Transaction::write(ADDRESS, vec![0x0C, 0x97, 0x1C]),
    ]);
    let mut gauge = Max17048::new(i2c.clone());
    let st = gauge.status().unwrap();
    assert!(st.has(status::HD));
    assert!(st.has(status::VL));
    assert_eq!(st.alerts(), status::HD | status::VL);
    gauge.clear_alerts(status::HD).unwrap();
    i2c.done();
}
