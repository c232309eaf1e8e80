//! `convert`: fixed unit conversions chosen by name, one output per input.
//!
//! Stateless. Conversions to a larger unit divide (so 1500 W is exactly
//! 1.5 kW), to a smaller unit multiply; temperature conversions are affine.
//! A non-finite result passes through flagged `OUT_OF_RANGE`.

use super::common::{self, map_values};
use tandem_core::{
    Arity, BuildContext, BuildError, Builder, ChannelId, KindSpec, OutputSpec, ParamDefault,
    ParamSpec, ParamType, Record, Vertex,
};

/// The conversion names `convert` accepts, in the order of `conversion`.
pub const CONVERSIONS: &[&str] = &[
    "W_to_kW",
    "kW_to_W",
    "Wh_to_kWh",
    "kWh_to_Wh",
    "J_to_Wh",
    "Wh_to_J",
    "J_to_kWh",
    "mA_to_A",
    "A_to_mA",
    "mV_to_V",
    "V_to_mV",
    "K_to_C",
    "C_to_K",
    "F_to_C",
    "C_to_F",
    "percent_to_fraction",
    "fraction_to_percent",
];

/// The `convert` kind, version 1.
pub static CONVERT: KindSpec = KindSpec {
    name: "convert",
    version: 1,
    doc: "unit conversion chosen by name (W_to_kW, K_to_C, ...)",
    input_names: &["in"],
    arity: Arity::exactly(1),
    outputs: &[OutputSpec::main("")],
    outputs_from: None,
    params: &[ParamSpec {
        name: "conversion",
        ty: ParamType::Choice(CONVERSIONS),
        default: ParamDefault::Required,
        doc:
            "`<from>_to_<to>`: W/kW, Wh/kWh, J/Wh, J_to_kWh, mA/A, mV/V, K/C, F/C, percent/fraction",
    }],
    state_schema: None,
    migrations: &[],
    build: Builder::Vertex(build),
};

/// How a conversion computes.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Conversion {
    /// `value * k`.
    Mul(f64),
    /// `value / k`.
    Div(f64),
    /// `value + k`.
    Add(f64),
    /// `(value - 32) / 1.8`.
    FahrenheitToCelsius,
    /// `value * 1.8 + 32`.
    CelsiusToFahrenheit,
}

/// The conversion called `name`.
fn conversion(name: &str) -> Option<Conversion> {
    use Conversion::*;
    Some(match name {
        "W_to_kW" | "Wh_to_kWh" | "mA_to_A" | "mV_to_V" => Div(1000.0),
        "kW_to_W" | "kWh_to_Wh" | "A_to_mA" | "V_to_mV" => Mul(1000.0),
        "J_to_Wh" => Div(3600.0),
        "Wh_to_J" => Mul(3600.0),
        "J_to_kWh" => Div(3.6e6),
        "K_to_C" => Add(-273.15),
        "C_to_K" => Add(273.15),
        "F_to_C" => FahrenheitToCelsius,
        "C_to_F" => CelsiusToFahrenheit,
        "percent_to_fraction" => Div(100.0),
        "fraction_to_percent" => Mul(100.0),
        _ => return None,
    })
}

fn build(ctx: &BuildContext<'_>) -> Result<Box<dyn Vertex>, BuildError> {
    let name = common::text(ctx, "conversion")?;
    let conversion =
        conversion(name).ok_or_else(|| common::bad_choice(ctx, "conversion", name, CONVERSIONS))?;
    Ok(Box::new(Convert {
        input: common::input(ctx, 0)?,
        output: common::output(ctx)?,
        conversion,
    }))
}

/// A running `convert` vertex.
#[derive(Debug)]
pub struct Convert {
    input: ChannelId,
    output: ChannelId,
    conversion: Conversion,
}

impl Vertex for Convert {
    fn process(&mut self, input: &[Record], out: &mut Vec<Record>) {
        let (from, to) = (self.input, self.output);
        // One match per call; each arm is its own monomorphised loop.
        match self.conversion {
            Conversion::Mul(k) => map_values(input, out, from, to, |v| v * k),
            Conversion::Div(k) => map_values(input, out, from, to, |v| v / k),
            Conversion::Add(k) => map_values(input, out, from, to, |v| v + k),
            Conversion::FahrenheitToCelsius => {
                map_values(input, out, from, to, |v| (v - 32.0) / 1.8)
            }
            Conversion::CelsiusToFahrenheit => map_values(input, out, from, to, |v| v * 1.8 + 32.0),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::ops::testkit::*;
    use tandem_core::Quality;

    fn convert(name: &str, input: &[f64]) -> Vec<f64> {
        let mut v = vertex(&CONVERT, &[("conversion", t(name))]);
        values(&run(v.as_mut(), &series(input)))
    }

    #[test]
    fn hand_computed_conversions() {
        assert_eq!(convert("W_to_kW", &[1500.0, -250.0]), [1.5, -0.25]);
        assert_eq!(convert("kWh_to_Wh", &[2.5]), [2500.0]);
        assert_eq!(convert("J_to_Wh", &[7200.0]), [2.0]);
        assert_eq!(convert("J_to_kWh", &[3.6e6]), [1.0]);
        assert_eq!(convert("mA_to_A", &[20.0]), [0.02]);
        assert_eq!(convert("mV_to_V", &[3300.0]), [3.3]);
        assert_eq!(convert("K_to_C", &[273.15]), [0.0]);
        assert_eq!(convert("C_to_K", &[0.0]), [273.15]);
        assert_eq!(
            convert("F_to_C", &[212.0, 32.0, -40.0]),
            [100.0, 0.0, -40.0]
        );
        assert_eq!(convert("C_to_F", &[100.0, -40.0]), [212.0, -40.0]);
        assert_eq!(convert("percent_to_fraction", &[50.0]), [0.5]);
    }

    #[test]
    fn every_listed_conversion_builds() {
        for name in CONVERSIONS {
            assert!(conversion(name).is_some(), "{name}");
        }
    }

    #[test]
    fn unknown_conversion_says_what_is_valid() {
        let err = build_err(&CONVERT, &[("conversion", t("W_to_hp"))]);
        assert!(err.starts_with("vertex `v`: `conversion = \"W_to_hp\"` is not known"));
        assert!(err.contains("\"K_to_C\""));
    }

    #[test]
    fn keeps_seq_time_quality_and_flags_non_finite() {
        let mut v = vertex(&CONVERT, &[("conversion", t("W_to_kW"))]);
        let input = [
            rec(7, 1234, 2000.0).flagged(Quality::ESTIMATED),
            rec_on(OTHER, 8, 1234, 1.0),
            rec(9, 2000, f64::INFINITY),
        ];
        let out = run(v.as_mut(), &input);
        assert_eq!(out.len(), 2);
        assert_eq!(
            (out[0].seq, out[0].time, out[0].value),
            (input[0].seq, input[0].time, 2.0)
        );
        assert_eq!(qualities(&out), [Quality::ESTIMATED, Quality::OUT_OF_RANGE]);
    }

    #[test]
    fn output_does_not_depend_on_batching() {
        let input = series(&[1.0, 2.0, f64::NAN, 451.0]);
        for name in ["F_to_C", "W_to_kW", "K_to_C"] {
            check_split_invariant(&CONVERT, &[("conversion", t(name))], &[IN], &input);
        }
    }
}
