//! `integrate` version 2: the running integral of version 1, plus the peak
//! magnitude of the integrated input on `<id>.peak`.
//!
//! The total (`<id>`) is computed exactly as version 1 computes it, bit for
//! bit, from the same state; see [`super::integrate`] for the rules (gaps,
//! skipped samples, compensation). Each sample that version 1 would emit a
//! total for also emits the largest `|value|` taken so far (W for a power
//! input), stamped and flagged like the input sample.
//!
//! State schema 1016 ([`IntegrateStateV2`]) is version 1's state (1006) plus
//! the peak. [`MIGRATE_FROM_V1`] carries a version 1 snapshot over: the total
//! and held sample are kept as they are, and the peak starts at the held
//! sample's magnitude (version 1 did not track it, so the peak of an upgraded
//! vertex counts from the last sample before the upgrade on).

use super::common;
use super::integrate::{self, IntegrateState, Rule};
use rkyv::{Archive, Deserialize, Serialize};
use tandem_core::{
    freeze, thaw, Arity, BuildContext, BuildError, Builder, ChannelId, KindSpec, Migration,
    OutputSpec, Record, SchemaId, Snapshot, SnapshotError, Vertex,
};

/// State schema of `integrate` v2: [`IntegrateStateV2`].
pub const SCHEMA: SchemaId = SchemaId(1016);

/// Version 1 state (schema 1006) as version 2 state (schema 1016).
pub const MIGRATE_FROM_V1: Migration = Migration {
    from: integrate::SCHEMA,
    to: SCHEMA,
    migrate: migrate_from_v1,
};

/// The `integrate` kind, version 2.
pub static INTEGRATE_V2: KindSpec = KindSpec {
    name: "integrate",
    version: 2,
    doc: "running trapezoid integral over event time (W to Wh or J) and the peak |input|, emitted at each sample",
    input_names: &["in"],
    arity: Arity::exactly(1),
    outputs: &[OutputSpec::main(""), OutputSpec::named("peak", "")],
    outputs_from: None,
    params: integrate::PARAMS,
    state_schema: Some(SCHEMA),
    migrations: &[MIGRATE_FROM_V1],
    build: Builder::Vertex(build),
};

fn build(ctx: &BuildContext<'_>) -> Result<Box<dyn Vertex>, BuildError> {
    let peak = ctx.outputs.get(1).copied().ok_or_else(|| {
        BuildError::new(format!(
            "vertex `{}` was built without its `peak` output channel",
            ctx.id
        ))
    })?;
    Ok(Box::new(IntegrateV2 {
        input: common::input(ctx, 0)?,
        output: common::output(ctx)?,
        peak,
        rule: Rule::from_params(ctx)?,
        state: IntegrateStateV2::default(),
    }))
}

/// Version 1's state and the peak magnitude of the input.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq)]
pub struct IntegrateStateV2 {
    /// The running total and the held sample, as in version 1.
    pub integral: IntegrateState,
    /// The largest `|value|` of a sample taken so far (0 before any).
    pub peak: f64,
}

fn migrate_from_v1(snapshot: &Snapshot) -> Result<Snapshot, SnapshotError> {
    let v1: IntegrateState = thaw(integrate::SCHEMA, snapshot)?;
    v1.check()?;
    let v2 = IntegrateStateV2 {
        integral: v1,
        peak: if v1.has_previous { v1.value.abs() } else { 0.0 },
    };
    Ok(freeze(SCHEMA, &v2))
}

/// A running `integrate` v2 vertex.
#[derive(Debug)]
pub struct IntegrateV2 {
    input: ChannelId,
    output: ChannelId,
    peak: ChannelId,
    rule: Rule,
    state: IntegrateStateV2,
}

impl Vertex for IntegrateV2 {
    fn process(&mut self, input: &[Record], out: &mut Vec<Record>) {
        let mut s = self.state;
        for r in input {
            if r.channel != self.input {
                continue;
            }
            let Some(quality) = s.integral.accept(r, self.rule) else {
                continue;
            };
            s.peak = s.peak.max(r.value.abs());
            let mut total = r.derive(self.output, s.integral.value());
            total.quality = quality;
            out.push(total);
            out.push(r.derive(self.peak, s.peak));
        }
        self.state = s;
    }

    fn snapshot(&self) -> Option<Snapshot> {
        Some(freeze(SCHEMA, &self.state))
    }

    fn restore(&mut self, snapshot: &Snapshot) -> Result<(), SnapshotError> {
        let state: IntegrateStateV2 = thaw(SCHEMA, snapshot)?;
        state.integral.check()?;
        if !(state.peak.is_finite() && state.peak >= 0.0) {
            return Err(SnapshotError::Invalid(
                "integrate peak is negative or not finite".to_owned(),
            ));
        }
        self.state = state;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::ops::integrate::INTEGRATE;
    use crate::ops::testkit::*;
    use crate::testkit;
    use std::sync::Arc;
    use tandem_core::{ChannelTable, ParamValue, Quality};

    const PEAK: ChannelId = ChannelId(101);

    fn given() -> Vec<(&'static str, ParamValue)> {
        vec![("per", t("s")), ("max_gap", ms(5000))]
    }

    fn v2() -> Box<dyn Vertex> {
        let params = params(&INTEGRATE_V2, &given());
        let channels = Arc::new(ChannelTable::new());
        let ctx = BuildContext {
            id: "v",
            params: &params,
            inputs: &[IN],
            outputs: &[OUT, PEAK],
            channels: &channels,
        };
        match INTEGRATE_V2.build {
            Builder::Vertex(build) => build(&ctx).unwrap(),
            _ => unreachable!(),
        }
    }

    fn v1() -> Box<dyn Vertex> {
        vertex(&INTEGRATE, &given())
    }

    fn mixed() -> Vec<Record> {
        vec![
            rec(1, 0, 100.0),
            rec(2, 1000, -200.0),
            rec(3, 1000, 7.0),
            rec(4, 1500, f64::NAN),
            rec_on(OTHER, 5, 1600, 2.0),
            rec(6, 2500, 50.0).flagged(Quality::ESTIMATED),
            rec(7, 9000, 60.0),
            rec(8, 9500, 10.0),
            rec(9, 10_500, -30.0),
        ]
    }

    fn on(channel: ChannelId, out: &[Record]) -> Vec<Record> {
        out.iter()
            .filter(|r| r.channel == channel)
            .copied()
            .collect()
    }

    #[test]
    fn totals_are_version_1_totals_and_peak_is_the_largest_magnitude() {
        let out = run(v2().as_mut(), &mixed());
        let expected = run(v1().as_mut(), &mixed());
        assert_bit_eq(&on(OUT, &out), &expected, "totals");
        // Samples taken: 100, -200, 50, 60, 10, -30.
        assert_eq!(
            values(&on(PEAK, &out)),
            [100.0, 200.0, 200.0, 200.0, 200.0, 200.0]
        );
        assert_eq!(on(PEAK, &out)[2].quality, Quality::ESTIMATED);
    }

    #[test]
    fn output_does_not_depend_on_batching() {
        testkit::check_split_invariant(&v2, &mixed());
    }

    #[test]
    fn continues_after_restore_and_refuses_damage() {
        testkit::check_snapshot_resume(&v2, &mixed());
        testkit::check_damaged_snapshot_refused(&v2, &mixed());
    }

    /// Version 1 runs to every cut, its snapshot is upgraded and restored
    /// into version 2, which continues: the totals are those of a version 1
    /// run that never stopped, bit for bit.
    #[test]
    fn version_1_state_upgrades_and_continues_the_total_bit_identically() {
        let input = mixed();
        let uninterrupted = run(v1().as_mut(), &input);
        for cut in 0..=input.len() {
            let mut old = v1();
            let mut totals = run(old.as_mut(), &input[..cut]);
            let bytes = old.snapshot().unwrap().encode();
            let upgraded = INTEGRATE_V2
                .upgrade(&Snapshot::decode(&bytes).unwrap())
                .unwrap();
            assert_eq!(upgraded.schema, SCHEMA);
            let mut new = v2();
            new.restore(&upgraded).unwrap();
            totals.extend(on(OUT, &run(new.as_mut(), &input[cut..])));
            assert_bit_eq(&uninterrupted, &totals, &format!("upgraded at cut {cut}"));
        }
    }

    #[test]
    fn the_peak_of_an_upgraded_vertex_starts_at_the_held_sample() {
        let mut old = v1();
        let _ = run(old.as_mut(), &[rec(1, 0, 900.0), rec(2, 1000, -40.0)]);
        let upgraded = INTEGRATE_V2.upgrade(&old.snapshot().unwrap()).unwrap();
        let mut new = v2();
        new.restore(&upgraded).unwrap();
        let out = run(new.as_mut(), &[rec(3, 2000, 20.0)]);
        // 900 W was before the upgrade: v1 did not keep it.
        assert_eq!(values(&on(PEAK, &out)), [40.0]);
        // (900 - 40) / 2 + (-40 + 20) / 2 J.
        assert_eq!(values(&on(OUT, &out)), [420.0]);
    }

    #[test]
    fn an_unknown_older_schema_is_refused_with_the_schema_named() {
        let unknown = Snapshot {
            schema: SchemaId(999),
            payload: v1().snapshot().unwrap().payload,
        };
        let err = INTEGRATE_V2.upgrade(&unknown).unwrap_err();
        assert_eq!(
            err.to_string(),
            "state schema 999 cannot be restored into schema 1016; a migration from 999 is required"
        );
        assert!(v2().restore(&unknown).is_err());
    }

    #[test]
    fn a_damaged_version_1_snapshot_is_refused_by_the_migration() {
        let mut payload = v1().snapshot().unwrap().payload;
        payload.truncate(payload.len() / 2);
        let damaged = Snapshot {
            schema: integrate::SCHEMA,
            payload,
        };
        assert!(matches!(
            INTEGRATE_V2.upgrade(&damaged),
            Err(SnapshotError::Invalid(_))
        ));
    }

    #[test]
    fn the_registry_holds_both_versions_and_defaults_to_the_latest() {
        let registry = crate::registry();
        assert_eq!(registry.versions("integrate"), [1, 2]);
        assert_eq!(registry.get("integrate", None).unwrap().version, 2);
        assert_eq!(
            registry.get("integrate", Some(1)).unwrap().state_schema,
            Some(integrate::SCHEMA)
        );
    }
}
