//! Modbus profiles: decode vectors, coalescing, and no panics on any input.
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use tandem_firmware::modbus::profiles::{self, heidelberg_pilot_state, EASTRON_SDM630};
use tandem_firmware::modbus::{
    coalesce, decode, DecodeError, FunctionCode, Point, ReadRequest, ValueType,
};
use tandem_firmware::pilot::PilotState;

#[test]
fn sdm630_voltage_230() {
    let p = EASTRON_SDM630.point("voltage_l1").unwrap();
    assert_eq!(p.address, 0x0000);
    assert_eq!(decode(p, &[0x4366, 0x0000]), Ok(230.0));
    assert_eq!(EASTRON_SDM630.point("power_l1").unwrap().address, 0x000C);
    let e = EASTRON_SDM630.point("import_energy").unwrap();
    assert_eq!((e.address, e.unit), (0x0048, "kWh"));
}

#[test]
fn word_orders_and_types() {
    let p = Point::new("x", FunctionCode::ReadHolding, 0, ValueType::I32, "");
    assert_eq!(decode(&p, &[0xFFFF, 0xFFFE]), Ok(-2.0));
    assert_eq!(decode(&p.low_word_first(), &[0xFFFE, 0xFFFF]), Ok(-2.0));
    let u = Point::new("u", FunctionCode::ReadHolding, 0, ValueType::U32, "");
    assert_eq!(decode(&u, &[0x0001, 0x0000]), Ok(65536.0));
    let t = Point::new("t", FunctionCode::ReadInput, 1, ValueType::I16, "degC").scaled(0.1);
    assert!((decode(&t, &[0xFF9C]).unwrap() + 10.0).abs() < 1e-9);
}

#[test]
fn deye_temperature_offset() {
    let p = profiles::DEYE_SG04LP3_BATTERY.point("temperature").unwrap();
    assert!((decode(p, &[1250]).unwrap() - 25.0).abs() < 1e-9);
}

#[test]
fn wrong_lengths_and_nan_are_errors() {
    let p = EASTRON_SDM630.point("voltage_l1").unwrap();
    assert_eq!(
        decode(p, &[0x4366]),
        Err(DecodeError::Length {
            expected: 2,
            got: 1
        })
    );
    assert_eq!(
        decode(p, &[1, 2, 3]),
        Err(DecodeError::Length {
            expected: 2,
            got: 3
        })
    );
    assert_eq!(decode(p, &[0x7FC0, 0x0000]), Err(DecodeError::NotFinite));
}

#[test]
fn heidelberg_states() {
    assert_eq!(heidelberg_pilot_state(2), Some(PilotState::A));
    assert_eq!(heidelberg_pilot_state(5), Some(PilotState::B));
    assert_eq!(heidelberg_pilot_state(7), Some(PilotState::C));
    assert_eq!(heidelberg_pilot_state(10), Some(PilotState::F));
    assert_eq!(heidelberg_pilot_state(11), Some(PilotState::E));
    assert_eq!(heidelberg_pilot_state(0), None);
    let e = profiles::HEIDELBERG_ENERGY_CONTROL
        .point("total_energy")
        .unwrap();
    assert_eq!(decode(e, &[0x0001, 0x86A0]), Ok(100.0));
}

#[test]
fn sdm630_coalesces_into_few_requests() {
    let reqs = coalesce(EASTRON_SDM630.points, 0).collect::<Vec<_>>();
    assert_eq!(
        reqs,
        vec![
            ReadRequest {
                function: FunctionCode::ReadInput,
                start: 0x0000,
                count: 0x12
            },
            ReadRequest {
                function: FunctionCode::ReadInput,
                start: 0x001E,
                count: 6
            },
            ReadRequest {
                function: FunctionCode::ReadInput,
                start: 0x0034,
                count: 2
            },
            ReadRequest {
                function: FunctionCode::ReadInput,
                start: 0x0046,
                count: 6
            },
            ReadRequest {
                function: FunctionCode::ReadInput,
                start: 0x0156,
                count: 2
            },
        ]
    );
    // with a gap of 40 registers the first four merge
    let reqs = coalesce(EASTRON_SDM630.points, 40).collect::<Vec<_>>();
    assert_eq!(reqs.len(), 2);
    assert_eq!((reqs[0].start, reqs[0].count), (0, 0x4C));
}

#[test]
fn functions_are_never_mixed_and_limit_holds() {
    let reqs = coalesce(profiles::HEIDELBERG_ENERGY_CONTROL.points, 1000).collect::<Vec<_>>();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].function, FunctionCode::ReadHolding);
    assert_eq!(
        reqs[1],
        ReadRequest {
            function: FunctionCode::ReadInput,
            start: 4,
            count: 15
        }
    );
}

#[test]
fn slice_finds_a_points_words() {
    let reqs = coalesce(EASTRON_SDM630.points, 0).collect::<Vec<_>>();
    let words: Vec<u16> = (0..0x12).collect();
    let p = EASTRON_SDM630.point("power_l1").unwrap();
    assert_eq!(reqs[0].slice(p, &words), Some(&[12u16, 13][..]));
    assert_eq!(reqs[0].slice(p, &words[..5]), None);
    assert_eq!(reqs[1].slice(p, &words), None);
}

#[test]
fn every_profile_point_is_covered_once() {
    for profile in profiles::ALL {
        let reqs = coalesce(profile.points, 0).collect::<Vec<_>>();
        for p in profile.points {
            assert_eq!(reqs.iter().filter(|r| r.covers(p)).count(), 1, "{}", p.name);
        }
        assert!(profiles::by_name(profile.name).is_some());
    }
}

fn arb_point() -> impl Strategy<Value = Point> {
    (
        any::<u16>(),
        prop_oneof![
            Just(ValueType::U16),
            Just(ValueType::I16),
            Just(ValueType::U32),
            Just(ValueType::I32),
            Just(ValueType::F32)
        ],
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(address, ty, holding, low_first)| {
            let f = if holding {
                FunctionCode::ReadHolding
            } else {
                FunctionCode::ReadInput
            };
            let p = Point::new("p", f, address, ty, "");
            if low_first {
                p.low_word_first()
            } else {
                p
            }
        })
}

proptest! {
    #[test]
    fn decode_never_panics(p in arb_point(), words in proptest::collection::vec(any::<u16>(), 0..5)) {
        let _ = decode(&p, &words);
    }

    #[test]
    fn coalesce_covers_every_point_within_limits(
        points in proptest::collection::vec(arb_point(), 0..60),
        gap in 0u16..200,
    ) {
        let reqs = coalesce(&points, gap).collect::<Vec<_>>();
        for r in &reqs {
            prop_assert!(r.count >= 1 && r.count <= 125);
        }
        for p in &points {
            if u32::from(p.address) + u32::from(p.words()) <= 0x1_0000 {
                prop_assert!(reqs.iter().any(|r| r.covers(p)));
            }
        }
    }

    #[test]
    fn f32_round_trips(v in -1e30f32..1e30) {
        let p = EASTRON_SDM630.point("voltage_l1").unwrap();
        let bits = v.to_bits();
        prop_assert_eq!(decode(p, &[(bits >> 16) as u16, bits as u16]), Ok(f64::from(v)));
    }
}
