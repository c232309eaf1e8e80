//! Home-energy vertices: battery state of charge, heat-pump COP, EV charging
//! sessions. Pure and deterministic, like the operators; one file per kind.

use tandem_core::KindSpec;

pub mod cop;
pub mod ev_session;
pub mod soc;
mod support;
#[cfg(test)]
mod testkit;

/// The kinds this module provides.
pub static KINDS: &[&KindSpec] = &[&soc::KIND, &cop::KIND, &ev_session::KIND];

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_core::{ParamDefault, ParamType, ParamValue};

    #[test]
    fn every_kind_documents_its_params_and_defaults_fit_their_types() {
        for kind in KINDS {
            assert_eq!(kind.version, 1, "{}", kind.name);
            assert!(kind.state_schema.is_some(), "{} keeps state", kind.name);
            assert!(!kind.doc.is_empty());
            for p in kind.params {
                assert!(!p.doc.is_empty(), "{}.{} has no doc", kind.name, p.name);
                let fits = match (p.ty, ParamValue::from_default(p.default)) {
                    (_, None) => matches!(p.default, ParamDefault::Required),
                    (ParamType::Float { min, max }, Some(ParamValue::Float(v))) => {
                        (min..=max).contains(&v)
                    }
                    (ParamType::Int { min, max }, Some(ParamValue::Int(v))) => {
                        (min..=max).contains(&v)
                    }
                    (ParamType::Duration { min_ns, max_ns }, Some(ParamValue::Duration(v))) => {
                        (min_ns..=max_ns).contains(&v)
                    }
                    (ParamType::Choice(options), Some(ParamValue::Text(v))) => {
                        options.contains(&v.as_str())
                    }
                    _ => false,
                };
                assert!(
                    fits,
                    "{}.{} default does not fit its type",
                    kind.name, p.name
                );
            }
        }
    }

    #[test]
    fn schema_ids_are_distinct() {
        let mut ids: Vec<_> = KINDS.iter().filter_map(|k| k.state_schema).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), KINDS.len());
    }

    #[test]
    fn missing_required_params_are_build_errors_not_panics() {
        use super::testkit::Fixture;
        for kind in KINDS {
            let mut fx = Fixture::new(kind, &[]);
            for p in kind.params {
                if matches!(p.default, ParamDefault::Required) {
                    assert!(
                        fx.try_build().is_err(),
                        "{} built without {}",
                        kind.name,
                        p.name
                    );
                }
            }
            fx.params = tandem_core::Params::new();
            let err = fx.try_build().err();
            assert!(
                err.as_ref()
                    .is_some_and(|e| e.message.contains("parameter")),
                "{}: {err:?}",
                kind.name
            );
        }
    }
}

/// Any sequence of records, however odd (NaN, infinities, time running
/// backwards, every quality), neither panics a domain vertex nor makes its
/// output depend on batching or on a snapshot taken midway.
#[cfg(test)]
mod properties {
    #![allow(clippy::unwrap_used)]

    use super::testkit::{assert_bit_identical, run_whole, Fixture};
    use super::*;
    use proptest::prelude::*;
    use tandem_core::{EventTime, ParamValue, Quality, Record, Seq, Snapshot};

    fn fixture(kind: &'static KindSpec) -> Fixture {
        Fixture::new(
            kind,
            &[
                ("capacity_ah", ParamValue::Float(2.0)),
                ("initial_soc", ParamValue::Float(50.0)),
                ("cells", ParamValue::Int(1)),
                ("rest_time", ParamValue::Duration(5_000_000_000)),
                ("min_cycle", ParamValue::Duration(10_000_000_000)),
            ]
            .into_iter()
            .filter(|(n, _)| kind.params.iter().any(|p| p.name == *n))
            .collect::<Vec<_>>(),
        )
    }

    fn value() -> impl Strategy<Value = f64> {
        prop_oneof![
            4 => 0.0..6.0f64,
            2 => (0u8..6).prop_map(f64::from),
            1 => -5000.0..5000.0f64,
            1 => Just(f64::NAN),
            1 => Just(f64::INFINITY),
            1 => Just(1e300),
            1 => Just(-1.7e308),
            1 => Just(1.7e308),
        ]
    }

    /// (time step ms, input index, value, quality bits).
    fn rows() -> impl Strategy<Value = Vec<(i64, usize, f64, u32)>> {
        let step = prop_oneof![8 => 0i64..20_000, 1 => -5_000i64..0, 1 => 0i64..200_000];
        let quality = prop_oneof![6 => Just(0u32), 1 => 0u32..64];
        prop::collection::vec((step, 0usize..6, value(), quality), 0..80)
    }

    fn records(fx: &Fixture, rows: &[(i64, usize, f64, u32)]) -> Vec<Record> {
        let mut t = 1_700_000_000_000i64;
        rows.iter()
            .enumerate()
            .map(|(i, &(step, input, value, q))| {
                t += step;
                Record {
                    seq: Seq(i as u64 + 1),
                    time: EventTime::from_millis(t),
                    channel: fx.inputs[input % fx.inputs.len()],
                    quality: Quality(q),
                    value,
                }
            })
            .collect()
    }

    proptest! {
        #[test]
        fn any_input_is_split_and_snapshot_independent(
            rows in rows(),
            chunk in 1usize..7,
            cut in 0usize..80,
        ) {
            for kind in KINDS {
                let fx = fixture(kind);
                let input = records(&fx, &rows);
                let whole = run_whole(&fx, &input);
                let mut v = fx.build();
                let mut out = Vec::new();
                for c in input.chunks(chunk) {
                    v.process(c, &mut out);
                }
                assert_bit_identical(&whole, &out);

                let cut = cut.min(input.len());
                let mut first = fx.build();
                let mut out = Vec::new();
                first.process(&input[..cut], &mut out);
                let bytes = first.snapshot().unwrap().encode();
                let mut second = fx.build();
                second.restore(&Snapshot::decode(&bytes).unwrap()).unwrap();
                second.process(&input[cut..], &mut out);
                assert_bit_identical(&whole, &out);

                for r in &whole {
                    prop_assert!(fx.outputs.contains(&r.channel));
                    prop_assert!(
                        r.value.is_finite() || (kind.name == "cop" && r.channel == fx.outputs[0]),
                        "{} emitted {r:?}", kind.name
                    );
                    prop_assert!(input.iter().any(|i| i.seq == r.seq && i.time == r.time));
                }
            }
        }
    }
}
