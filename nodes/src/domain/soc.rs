//! `soc`: battery state of charge by coulomb counting, pulled toward the
//! open-circuit-voltage estimate after the pack has rested.
//!
//! Coulomb counting integrates the current by the trapezoid rule between
//! consecutive good current samples. Where the current changes sign inside
//! an interval the line is split at its zero crossing, so that the charge
//! efficiency applies to exactly the charging part. A bad current sample is
//! bridged (the next good one integrates from the last good one, output
//! `UNCERTAIN`); an interval longer than `max_gap`, or event time running
//! backwards, is not integrated at all, and every output is `UNCERTAIN` from
//! then until the next voltage correction re-anchors the count.
//!
//! Rest: from the first good current sample with |I| < `rest_current`, until
//! one at or above it (or a bad sample, or a gap). Once per rest, on the first
//! current sample at least `rest_time` into it, if the latest voltage sample is
//! good, was taken at least `rest_time` into the rest and is plausible for the
//! chemistry (within 0.2 V per cell of the OCV table), the SoC moves by
//! `correction_gain` of the way to the OCV-derived SoC.
//!
//! The count is clamped to 0..100 %; an output whose count had to be clamped
//! is flagged `OUT_OF_RANGE` (capacity or initial SoC is likely wrong).

use super::support::{self, Sample};
use tandem_core::{
    freeze, thaw, Arity, BuildContext, BuildError, Builder, ChannelId, KindSpec, OutputSpec,
    ParamDefault, ParamSpec, ParamType, Quality, Record, SchemaId, Snapshot, SnapshotError, Vertex,
};

/// State schema of `soc` version 1.
pub const SCHEMA: SchemaId = SchemaId(31_001);

const NS_PER_MIN: i64 = 60_000_000_000;

/// The `soc` kind.
pub static KIND: KindSpec = KindSpec {
    name: "soc",
    version: 1,
    doc: "battery state of charge (%) by coulomb counting with OCV correction at rest",
    input_names: &["current", "voltage"],
    arity: Arity::exactly(2),
    outputs: &[OutputSpec::main("%")],
    outputs_from: None,
    params: &[
        ParamSpec {
            name: "capacity_ah",
            ty: ParamType::Float {
                min: 0.001,
                max: 1.0e6,
            },
            default: ParamDefault::Required,
            doc: "usable capacity of the pack, Ah",
        },
        ParamSpec {
            name: "initial_soc",
            ty: ParamType::Float {
                min: 0.0,
                max: 100.0,
            },
            default: ParamDefault::Required,
            doc: "state of charge the count starts from when no snapshot is restored, %",
        },
        ParamSpec {
            name: "efficiency",
            ty: ParamType::Float { min: 0.5, max: 1.0 },
            default: ParamDefault::Float(1.0),
            doc: "charge (coulombic) efficiency applied to charging current only, 0.5..1 (1 = lossless)",
        },
        ParamSpec {
            name: "cells",
            ty: ParamType::Int { min: 1, max: 1000 },
            default: ParamDefault::Required,
            doc: "cells in series; the pack voltage divided by this is looked up in the OCV table",
        },
        ParamSpec {
            name: "chemistry",
            ty: ParamType::Choice(&["lfp", "nmc"]),
            default: ParamDefault::Text("lfp"),
            doc: "built-in 25 °C OCV curve, per cell: \"lfp\" (2.50 V = 0 % .. 3.40 V = 100 %, flat 3.22..3.33 V) or \"nmc\" (3.00 V = 0 % .. 4.20 V = 100 %)",
        },
        ParamSpec {
            name: "rest_current",
            ty: ParamType::Float {
                min: 0.0,
                max: 1.0e5,
            },
            default: ParamDefault::Float(1.0),
            doc: "the pack rests while |current| is below this, A",
        },
        ParamSpec {
            name: "rest_time",
            ty: ParamType::Duration {
                min_ns: 0,
                max_ns: 24 * 60 * NS_PER_MIN,
            },
            default: ParamDefault::Duration(30 * NS_PER_MIN),
            doc: "event time the pack must rest before its voltage is taken as OCV (LFP relaxes slowly: 30 min or more)",
        },
        ParamSpec {
            name: "correction_gain",
            ty: ParamType::Float { min: 0.0, max: 1.0 },
            default: ParamDefault::Float(0.5),
            doc: "share of the gap to the OCV-derived SoC closed once per rest, 0..1 (0 = never correct, 1 = jump to OCV)",
        },
        ParamSpec {
            name: "max_gap",
            ty: ParamType::Duration {
                min_ns: 1_000_000,
                max_ns: 24 * 60 * NS_PER_MIN,
            },
            default: ParamDefault::Duration(NS_PER_MIN),
            doc: "longest event time between good current samples that is integrated; longer gaps are skipped and make the SoC uncertain until the next correction",
        },
    ],
    state_schema: Some(SCHEMA),
    migrations: &[],
    build: Builder::Vertex(build),
};

/// Per-cell open-circuit voltage (V) -> SoC (%), LFP at 25 °C, strictly increasing.
const LFP_OCV: &[(f64, f64)] = &[
    (2.50, 0.0),
    (3.00, 5.0),
    (3.20, 10.0),
    (3.22, 20.0),
    (3.25, 30.0),
    (3.26, 40.0),
    (3.27, 50.0),
    (3.28, 60.0),
    (3.30, 70.0),
    (3.32, 80.0),
    (3.33, 90.0),
    (3.35, 95.0),
    (3.40, 100.0),
];

/// Per-cell open-circuit voltage (V) -> SoC (%), NMC at 25 °C, strictly increasing.
const NMC_OCV: &[(f64, f64)] = &[
    (3.00, 0.0),
    (3.30, 5.0),
    (3.45, 10.0),
    (3.55, 20.0),
    (3.62, 30.0),
    (3.67, 40.0),
    (3.72, 50.0),
    (3.79, 60.0),
    (3.87, 70.0),
    (3.95, 80.0),
    (4.05, 90.0),
    (4.12, 95.0),
    (4.20, 100.0),
];

/// How far outside its OCV table a rested cell voltage is still believed, V.
const PLAUSIBLE_MARGIN_V: f64 = 0.2;

/// The SoC (%) of a per-cell OCV, linear between table points, clamped at the ends.
fn ocv_soc(curve: &[(f64, f64)], volts: f64) -> f64 {
    let (Some(&(v_lo, s_lo)), Some(&(v_hi, s_hi))) = (curve.first(), curve.last()) else {
        return 0.0;
    };
    if volts <= v_lo {
        return s_lo;
    }
    if volts >= v_hi {
        return s_hi;
    }
    for pair in curve.windows(2) {
        if let [(v0, s0), (v1, s1)] = *pair {
            if volts <= v1 {
                return s0 + (s1 - s0) * (volts - v0) / (v1 - v0);
            }
        }
    }
    s_hi
}

/// Charge (A·s) of a current changing linearly from `a` to `b` over `dt` seconds,
/// its charging (positive) part weighted by `efficiency`.
fn charge_as(a: f64, b: f64, dt: f64, efficiency: f64) -> f64 {
    let (charging, discharging) = if (a >= 0.0) == (b >= 0.0) {
        let area = (a + b) / 2.0 * dt;
        if a >= 0.0 {
            (area, 0.0)
        } else {
            (0.0, area)
        }
    } else {
        // Signs differ, so a != b: split at the zero crossing.
        let crossing = a / (a - b);
        let first = a * crossing * dt / 2.0;
        let second = b * (1.0 - crossing) * dt / 2.0;
        // `a` is the side at or above zero (as the test above puts it): from
        // rest (0 A) into a discharge, all of it is discharge.
        if a >= 0.0 {
            (first, second)
        } else {
            (second, first)
        }
    };
    charging * efficiency + discharging
}

#[derive(Debug)]
struct Config {
    current: ChannelId,
    voltage: ChannelId,
    out: ChannelId,
    capacity_as: f64,
    efficiency: f64,
    cells: f64,
    curve: &'static [(f64, f64)],
    rest_current: f64,
    rest_ns: i64,
    gain: f64,
    max_gap_ns: i64,
}

/// Everything `soc` remembers between records.
#[derive(Clone, Debug, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct SocState {
    /// The count, % (always within 0..100).
    soc: f64,
    /// The last good current sample, A.
    last_current: Option<Sample>,
    /// The latest voltage sample if it was good, V (pack).
    voltage: Option<Sample>,
    /// Event time the current rest began, ns.
    rest_start: Option<i64>,
    /// The current rest has already corrected the count.
    rest_corrected: bool,
    /// A bad current sample came since the last good one.
    bridging: bool,
    /// Charge was lost (gap, time backwards) since the count was last anchored.
    lost: bool,
}

#[derive(Debug)]
struct Soc {
    cfg: Config,
    state: SocState,
}

fn build(ctx: &BuildContext<'_>) -> Result<Box<dyn Vertex>, BuildError> {
    let [current, voltage] = support::inputs(ctx, &["current", "voltage"])?;
    let curve = match support::text(ctx, "chemistry")? {
        "lfp" => LFP_OCV,
        "nmc" => NMC_OCV,
        other => {
            return Err(BuildError::new(format!(
                "vertex `{}`: chemistry \"{other}\" has no OCV table; expected \"lfp\" or \"nmc\"",
                ctx.id
            )))
        }
    };
    let capacity_ah = support::float(ctx, "capacity_ah")?;
    if capacity_ah <= 0.0 {
        return Err(BuildError::new(format!(
            "vertex `{}`: capacity_ah must be above 0 Ah, got {capacity_ah}",
            ctx.id
        )));
    }
    let cells = support::int(ctx, "cells")?;
    if cells < 1 {
        return Err(BuildError::new(format!(
            "vertex `{}`: cells must be 1 or more, got {cells}",
            ctx.id
        )));
    }
    let cfg = Config {
        current,
        voltage,
        out: support::output(ctx, 0)?,
        capacity_as: capacity_ah * 3600.0,
        efficiency: support::float(ctx, "efficiency")?,
        cells: cells as f64,
        curve,
        rest_current: support::float(ctx, "rest_current")?,
        rest_ns: support::duration_ns(ctx, "rest_time")?,
        gain: support::float(ctx, "correction_gain")?.clamp(0.0, 1.0),
        max_gap_ns: support::duration_ns(ctx, "max_gap")?,
    };
    let soc = support::float(ctx, "initial_soc")?.clamp(0.0, 100.0);
    Ok(Box::new(Soc {
        cfg,
        state: SocState {
            soc,
            last_current: None,
            voltage: None,
            rest_start: None,
            rest_corrected: false,
            bridging: false,
            lost: false,
        },
    }))
}

impl Soc {
    /// Takes one current sample; returns the quality of the SoC output it causes.
    fn on_current(&mut self, record: &Record) -> Quality {
        let cfg = &self.cfg;
        let st = &mut self.state;
        if !support::usable(record) {
            // Unknown current: nothing to integrate yet, and no rest can be claimed.
            st.bridging = true;
            st.rest_start = None;
            st.rest_corrected = false;
            return Quality::UNCERTAIN;
        }
        let bridged = core::mem::take(&mut st.bridging);
        let now = record.time.0;
        let amps = record.value;
        if let Some(prev) = st.last_current {
            let dt_ns = now.saturating_sub(prev.time);
            let charge = (0..=cfg.max_gap_ns)
                .contains(&dt_ns)
                .then(|| charge_as(prev.value, amps, dt_ns as f64 / 1e9, cfg.efficiency))
                .filter(|c| c.is_finite());
            match charge {
                Some(charge) => st.soc += 100.0 * charge / cfg.capacity_as,
                None => {
                    // A gap, time running backwards, or a current beyond f64.
                    st.lost = true;
                    st.rest_start = None;
                    st.rest_corrected = false;
                }
            }
        }
        st.last_current = Some(Sample::of(record));

        if amps.abs() < cfg.rest_current {
            if st.rest_start.is_none() {
                st.rest_start = Some(now);
                st.rest_corrected = false;
            }
        } else {
            st.rest_start = None;
            st.rest_corrected = false;
        }
        if let (Some(start), false) = (st.rest_start, st.rest_corrected) {
            let rested_from = start.saturating_add(cfg.rest_ns);
            if now >= rested_from {
                if let Some(v) = st.voltage.filter(|v| v.time >= rested_from) {
                    let cell = v.value / cfg.cells;
                    let plausible = cfg.curve.first().zip(cfg.curve.last()).is_some_and(
                        |(&(lo, _), &(hi, _))| {
                            cell >= lo - PLAUSIBLE_MARGIN_V && cell <= hi + PLAUSIBLE_MARGIN_V
                        },
                    );
                    if plausible {
                        let target = ocv_soc(cfg.curve, cell);
                        st.soc += cfg.gain * (target - st.soc);
                        st.rest_corrected = true;
                        st.lost = false;
                    }
                }
            }
        }

        let mut quality = support::uncertain_if(bridged || st.lost);
        if !(0.0..=100.0).contains(&st.soc) {
            st.soc = st.soc.clamp(0.0, 100.0);
            quality |= Quality::OUT_OF_RANGE;
        }
        quality
    }
}

impl Vertex for Soc {
    fn process(&mut self, input: &[Record], out: &mut Vec<Record>) {
        for record in input {
            if record.channel == self.cfg.current {
                let quality = self.on_current(record);
                out.push(Record {
                    seq: record.seq,
                    time: record.time,
                    channel: self.cfg.out,
                    quality,
                    value: self.state.soc,
                });
            } else if record.channel == self.cfg.voltage {
                self.state.voltage = support::usable(record).then(|| Sample::of(record));
            }
        }
    }

    fn snapshot(&self) -> Option<Snapshot> {
        Some(freeze(SCHEMA, &self.state))
    }

    fn restore(&mut self, snapshot: &Snapshot) -> Result<(), SnapshotError> {
        let state: SocState = thaw(SCHEMA, snapshot)?;
        if !(0.0..=100.0).contains(&state.soc) {
            return Err(SnapshotError::Invalid(format!(
                "soc state holds {} %, outside 0..100",
                state.soc
            )));
        }
        self.state = state;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::domain::testkit::*;
    use tandem_core::{ParamValue, Seq};

    const G: Quality = Quality::GOOD;
    const CUR: usize = 0;
    const VOLT: usize = 1;

    /// 1 Ah pack (1 A for 36 s = 1 %), starting at 50 %.
    fn fixture(extra: &[(&str, ParamValue)]) -> Fixture {
        let mut set = vec![
            ("capacity_ah", ParamValue::Float(1.0)),
            ("initial_soc", ParamValue::Float(50.0)),
            ("cells", ParamValue::Int(4)),
            ("chemistry", ParamValue::Text("nmc".into())),
            ("rest_current", ParamValue::Float(0.5)),
            ("rest_time", ParamValue::Duration(60_000_000_000)),
        ];
        set.extend(extra.iter().cloned());
        Fixture::new(&KIND, &set)
    }

    fn values(fx: &Fixture, out: &[Record]) -> Vec<(f64, f64, Quality)> {
        on(out, fx.output(0))
    }

    #[track_caller]
    fn expect(got: &[(f64, f64, Quality)], want: &[(f64, f64, Quality)]) {
        assert_eq!(got.len(), want.len(), "{got:?}");
        for (g, w) in got.iter().zip(want) {
            close(g.0, w.0, 1e-9);
            close(g.1, w.1, 1e-9);
            assert_eq!(g.2, w.2, "quality at t={}: {got:?}", g.0);
        }
    }

    /// A scenario touching every branch: charge, sign change, rest with correction,
    /// bad samples, a gap, clamping.
    fn scenario(fx: &Fixture) -> Vec<Record> {
        feed(
            fx,
            &[
                (0.0, CUR, 1.0, G),
                (36.0, CUR, 1.0, G),
                (36.0, VOLT, 15.0, G),
                (72.0, CUR, -2.0, G),
                (100.0, CUR, 0.0, Quality::COMM_ERROR),
                (108.0, CUR, 0.2, G),
                (150.0, VOLT, 14.88, G),
                (170.0, VOLT, 14.88, G),
                (170.0, CUR, 0.1, G),
                (400.0, CUR, 3.0, G),
                (436.0, CUR, 3.0, G),
                (437.0, VOLT, f64::NAN, G),
            ],
        )
    }

    #[test]
    fn from_rest_into_a_discharge_is_all_discharge_whatever_the_efficiency() {
        // 0 A to -2 A over 36 s: -36 As, none of it charging.
        assert_eq!(charge_as(0.0, -2.0, 36.0, 0.5), -36.0);
        assert_eq!(charge_as(-2.0, 0.0, 36.0, 0.5), -36.0);
        // From rest into a charge: all of it charging, weighted.
        assert_eq!(charge_as(0.0, 2.0, 36.0, 0.5), 18.0);
    }

    #[test]
    fn constant_current_counts_one_percent_per_36_coulomb_seconds() {
        let fx = fixture(&[]);
        let out = run_whole(
            &fx,
            &feed(
                &fx,
                &[
                    (0.0, CUR, 1.0, G),
                    (36.0, CUR, 1.0, G),
                    (72.0, CUR, -1.0, G),
                ],
            ),
        );
        // 0..36 s at 1 A: +36 As = +1 %; 36..72 s from 1 A to -1 A: net 0.
        expect(
            &values(&fx, &out),
            &[(0.0, 50.0, G), (36.0, 51.0, G), (72.0, 51.0, G)],
        );
        assert_eq!(out[1].seq, Seq(2));
    }

    #[test]
    fn trapezoid_and_efficiency_split_at_the_zero_crossing() {
        let fx = fixture(&[("efficiency", ParamValue::Float(0.9))]);
        let out = run_whole(
            &fx,
            &feed(
                &fx,
                &[
                    (0.0, CUR, 0.0, G),
                    (36.0, CUR, 2.0, G),
                    (72.0, CUR, -2.0, G),
                ],
            ),
        );
        // 0..36 s: 0 -> 2 A is 36 As charged, x0.9 = 32.4 As = 0.9 %.
        // 36..72 s: 2 -> -2 A crosses zero at 54 s: +18 As x0.9 = 16.2, -18 As: -1.8 As = -0.05 %.
        expect(
            &values(&fx, &out),
            &[(0.0, 50.0, G), (36.0, 50.9, G), (72.0, 50.85, G)],
        );
    }

    #[test]
    fn bad_current_is_bridged_and_flagged() {
        let fx = fixture(&[]);
        let out = run_whole(
            &fx,
            &feed(
                &fx,
                &[
                    (0.0, CUR, 1.0, G),
                    (18.0, CUR, 500.0, Quality::OUT_OF_RANGE),
                    (36.0, CUR, 1.0, G),
                    (72.0, CUR, 1.0, G),
                ],
            ),
        );
        // The 500 A reading is not integrated; 0..36 s bridges at 1 A.
        let u = Quality::UNCERTAIN;
        expect(
            &values(&fx, &out),
            &[
                (0.0, 50.0, G),
                (18.0, 50.0, u),
                (36.0, 51.0, u),
                (72.0, 52.0, G),
            ],
        );
    }

    #[test]
    fn a_gap_is_not_integrated_and_stays_uncertain_until_corrected() {
        let fx = fixture(&[("max_gap", ParamValue::Duration(60_000_000_000))]);
        let u = Quality::UNCERTAIN;
        let out = run_whole(
            &fx,
            &feed(
                &fx,
                &[
                    (0.0, CUR, 1.0, G),
                    (120.0, CUR, 0.0, G), // 120 s gap > 60 s: skipped
                    (150.0, CUR, 0.0, G),
                    (180.0, VOLT, 14.88, G), // 3.72 V/cell = 50 %
                    (180.0, CUR, 0.0, G),    // rested 60 s: corrected, anchored
                    (216.0, CUR, 0.0, G),
                ],
            ),
        );
        expect(
            &values(&fx, &out),
            &[
                (0.0, 50.0, G),
                (120.0, 50.0, u),
                (150.0, 50.0, u),
                (180.0, 50.0, G),
                (216.0, 50.0, G),
            ],
        );
    }

    #[test]
    fn rest_corrects_once_toward_ocv_with_the_gain() {
        let fx = fixture(&[("initial_soc", ParamValue::Float(80.0))]);
        let out = run_whole(
            &fx,
            &feed(
                &fx,
                &[
                    (0.0, CUR, 0.0, G),
                    (30.0, VOLT, 14.88, G),
                    (30.0, CUR, 0.0, G), // rested 30 s < 60 s
                    (60.0, CUR, 0.0, G), // rested 60 s, but voltage is from 30 s
                    (61.0, VOLT, 14.88, G),
                    (90.0, CUR, 0.0, G), // 80 + 0.5 x (50 - 80) = 65
                    (120.0, VOLT, 15.0, G),
                    (120.0, CUR, 0.0, G), // once per rest
                    (156.0, CUR, 2.0, G), // 0 -> 2 A over 36 s = +1 %, rest ends
                ],
            ),
        );
        expect(
            &values(&fx, &out),
            &[
                (0.0, 80.0, G),
                (30.0, 80.0, G),
                (60.0, 80.0, G),
                (90.0, 65.0, G),
                (120.0, 65.0, G),
                (156.0, 66.0, G),
            ],
        );
    }

    #[test]
    fn implausible_or_bad_voltage_does_not_correct() {
        let fx = fixture(&[("initial_soc", ParamValue::Float(80.0))]);
        let out = run_whole(
            &fx,
            &feed(
                &fx,
                &[
                    (0.0, CUR, 0.0, G),
                    (60.0, VOLT, 0.0, G), // 0 V per cell: a wiring fault, not an OCV
                    (60.0, CUR, 0.0, G),
                    (70.0, VOLT, 14.88, Quality::STALE),
                    (70.0, CUR, 0.0, G),
                    (80.0, VOLT, 14.88, G),
                    (80.0, CUR, 0.0, G), // now it may
                ],
            ),
        );
        expect(
            &values(&fx, &out),
            &[
                (0.0, 80.0, G),
                (60.0, 80.0, G),
                (70.0, 80.0, G),
                (80.0, 65.0, G),
            ],
        );
    }

    #[test]
    fn ocv_tables_interpolate_and_are_increasing() {
        for curve in [LFP_OCV, NMC_OCV] {
            assert!(curve.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1));
        }
        close(ocv_soc(NMC_OCV, 3.75), 50.0 + 10.0 * 0.03 / 0.07, 1e-9);
        close(ocv_soc(LFP_OCV, 3.265), 45.0, 1e-9);
        assert_eq!(ocv_soc(LFP_OCV, 2.0), 0.0);
        assert_eq!(ocv_soc(NMC_OCV, 4.3), 100.0);
    }

    #[test]
    fn count_is_clamped_and_flagged() {
        let fx = fixture(&[("initial_soc", ParamValue::Float(99.5))]);
        let out = run_whole(
            &fx,
            &feed(
                &fx,
                &[
                    (0.0, CUR, 1.0, G),
                    (36.0, CUR, 1.0, G),
                    (72.0, CUR, -1.0, G),
                ],
            ),
        );
        expect(
            &values(&fx, &out),
            &[
                (0.0, 99.5, G),
                (36.0, 100.0, Quality::OUT_OF_RANGE),
                (72.0, 100.0, G),
            ],
        );
    }

    #[test]
    fn same_channel_twice_is_refused() {
        let mut fx = fixture(&[]);
        fx.inputs[1] = fx.inputs[0];
        let err = fx.try_build().err().unwrap();
        assert_eq!(
            err.message,
            "vertex `node` has channel `in.current` as inputs `current` and `voltage`; each input must be its own channel"
        );
    }

    #[test]
    fn output_does_not_depend_on_batching() {
        let fx = fixture(&[]);
        check_split_independence(&fx, &scenario(&fx));
    }

    #[test]
    fn snapshot_resumes_where_it_left_off() {
        let fx = fixture(&[]);
        check_snapshot_resume(&fx, &scenario(&fx));
    }

    #[test]
    fn damaged_snapshot_is_refused() {
        let fx = fixture(&[]);
        check_damaged_snapshot_refused(&fx, &scenario(&fx));
    }

    #[test]
    fn restored_state_out_of_range_is_refused() {
        let fx = fixture(&[]);
        let mut v = fx.build();
        let mut state = SocState {
            soc: 50.0,
            last_current: None,
            voltage: None,
            rest_start: None,
            rest_corrected: false,
            bridging: false,
            lost: false,
        };
        assert!(v.restore(&freeze(SCHEMA, &state)).is_ok());
        state.soc = f64::NAN;
        assert!(v.restore(&freeze(SCHEMA, &state)).is_err());
    }
}
