//! Properties every operator owes, over random input: output does not depend
//! on how input is cut into calls, and a snapshot taken anywhere and
//! restored into a fresh instance continues exactly.

#![allow(clippy::unwrap_used)]

use super::testkit::*;
use proptest::prelude::*;
use tandem_core::{ChannelId, KindSpec, ParamValue, Quality, Record, Seq, Snapshot};

/// A kind, a parameter set, and its input channels.
type Case = (
    &'static KindSpec,
    Vec<(&'static str, ParamValue)>,
    Vec<ChannelId>,
);

/// Each kind with a parameter set and its inputs.
fn cases() -> Vec<Case> {
    vec![
        (
            &super::scale::SCALE,
            vec![("factor", f(-1.5)), ("offset", f(2.0))],
            vec![IN],
        ),
        (
            &super::convert::CONVERT,
            vec![("conversion", t("F_to_C"))],
            vec![IN],
        ),
        (
            &super::range_check::RANGE_CHECK,
            vec![("min", f(-10.0)), ("max", f(10.0))],
            vec![IN],
        ),
        (
            &super::deadband::DEADBAND,
            vec![("band", f(2.0)), ("max_silence", ms(4_000))],
            vec![IN],
        ),
        (
            &super::threshold::THRESHOLD,
            vec![("raise", f(5.0)), ("clear", f(0.0)), ("hold", i(2))],
            vec![IN],
        ),
        (
            &super::window::WINDOW,
            vec![
                ("mode", t("sliding")),
                ("size", ms(6_000)),
                ("slide", ms(2_000)),
                ("agg", t("mean")),
            ],
            vec![IN],
        ),
        (
            &super::window::WINDOW,
            vec![("size", ms(3_000)), ("agg", t("max"))],
            vec![IN],
        ),
        (&super::ewma::EWMA, vec![("alpha", f(0.25))], vec![IN]),
        (&super::rate::RATE, vec![], vec![IN]),
        (
            &super::integrate::INTEGRATE,
            vec![("per", t("s")), ("max_gap", ms(2_500))],
            vec![IN],
        ),
        (
            &super::join::JOIN,
            vec![("op", t("mul")), ("tolerance", ms(1_000))],
            vec![IN, IN2],
        ),
        (
            &super::stale::STALE,
            vec![("timeout", ms(3_000)), ("pass_through", b(true))],
            vec![IN, IN2],
        ),
    ]
}

fn record() -> impl Strategy<Value = (u32, i64, f64, u32)> {
    let channel = prop_oneof![4 => Just(IN.0), 2 => Just(IN2.0), 1 => Just(OTHER.0)];
    let step = -1_000i64..4_000;
    let value = prop_oneof![
        8 => -20.0f64..20.0,
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
        1 => Just(0.0),
    ];
    let quality = prop_oneof![4 => Just(0u32), 1 => Just(Quality::ESTIMATED.0)];
    (channel, step, value, quality)
}

fn records(raw: &[(u32, i64, f64, u32)]) -> Vec<Record> {
    let mut time = 0i64;
    raw.iter()
        .enumerate()
        .map(|(n, (channel, step, value, quality))| {
            time += step * 1_000_000;
            let mut r = Record::new(
                Seq(n as u64 + 1),
                tandem_core::EventTime(time),
                ChannelId(*channel),
                *value,
            );
            r.quality = Quality(*quality);
            r
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn cutting_and_restoring_never_changes_output(
        raw in prop::collection::vec(record(), 0..60),
        cuts in prop::collection::vec(1usize..8, 1..20),
        snap_at in 0usize..60,
    ) {
        let input = records(&raw);
        for (kind, given, inputs) in cases() {
            let mut whole = try_build(kind, &given, &inputs).unwrap();
            let expected = run(whole.as_mut(), &input);

            let mut v = try_build(kind, &given, &inputs).unwrap();
            let mut out = Vec::new();
            let mut rest = &input[..];
            let mut k = 0;
            while !rest.is_empty() {
                let n = cuts[k % cuts.len()].min(rest.len());
                v.process(&rest[..n], &mut out);
                rest = &rest[n..];
                k += 1;
            }
            assert_bit_eq(&expected, &out, kind.name);

            if kind.state_schema.is_some() {
                let cut = snap_at.min(input.len());
                let mut first = try_build(kind, &given, &inputs).unwrap();
                let mut out = run(first.as_mut(), &input[..cut]);
                let bytes = first.snapshot().unwrap().encode();
                let mut second = try_build(kind, &given, &inputs).unwrap();
                second.restore(&Snapshot::decode(&bytes).unwrap()).unwrap();
                second.process(&input[cut..], &mut out);
                assert_bit_eq(&expected, &out, kind.name);
            }
        }
    }
}
