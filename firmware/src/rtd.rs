//! Platinum RTD resistance <-> temperature, Callendar-Van Dusen (IEC 60751).
//!
//! R(T) = R0 (1 + A T + B T^2)                    for T >= 0 C
//! R(T) = R0 (1 + A T + B T^2 + C (T - 100) T^3)  for T <  0 C
//!
//! Above 0 C the inverse is the closed-form root of the quadratic. Below 0 C
//! the quartic has no convenient closed form, so the inverse runs Newton's
//! method on the full equation (with C), started from the quadratic root; it
//! converges to 1e-9 C in a handful of steps over -200..0 C.
//!
//! No `std`: the square root is computed here (Newton on f64), since `core`
//! has none.

/// IEC 60751 coefficient A.
pub const A: f64 = 3.9083e-3;
/// IEC 60751 coefficient B.
pub const B: f64 = -5.775e-7;
/// IEC 60751 coefficient C (below 0 C only).
pub const C: f64 = -4.183e-12;

/// Lowest temperature the standard defines the curve for, in C.
pub const T_MIN: f64 = -200.0;
/// Highest temperature the standard defines the curve for, in C.
pub const T_MAX: f64 = 850.0;

/// Resistance in ohms of an RTD with nominal `r0` at `t` C.
pub fn resistance(t: f64, r0: f64) -> f64 {
    let quad = 1.0 + A * t + B * t * t;
    if t >= 0.0 {
        r0 * quad
    } else {
        r0 * (quad + C * (t - 100.0) * t * t * t)
    }
}

/// Temperature in C of an RTD with nominal `r0` reading `r` ohms, or `None`
/// when the result lies outside [`T_MIN`]..=[`T_MAX`] (open or shorted
/// sensor, wrong reference resistor) or the inputs are not finite.
pub fn temperature(r: f64, r0: f64) -> Option<f64> {
    if !(r.is_finite() && r0.is_finite() && r0 > 0.0) {
        return None;
    }
    let ratio = r / r0;
    let disc = A * A - 4.0 * B * (1.0 - ratio);
    if disc < 0.0 {
        return None;
    }
    let quad = (-A + sqrt(disc)) / (2.0 * B);
    let t = if ratio >= 1.0 {
        quad
    } else {
        newton_below_zero(ratio, quad)
    };
    (t.is_finite() && (T_MIN - 1e-6..=T_MAX + 1e-6).contains(&t)).then_some(t)
}

fn newton_below_zero(ratio: f64, start: f64) -> f64 {
    let mut t = start;
    for _ in 0..20 {
        let f = 1.0 + A * t + B * t * t + C * (t - 100.0) * t * t * t - ratio;
        let df = A + 2.0 * B * t + C * (4.0 * t * t * t - 300.0 * t * t);
        if df == 0.0 || !df.is_finite() {
            break;
        }
        let step = f / df;
        t -= step;
        if step.abs() < 1e-9 {
            break;
        }
    }
    t
}

/// Square root for `x >= 0` (NaN for negative input), no `std` needed.
pub fn sqrt(x: f64) -> f64 {
    if x.is_nan() || x < 0.0 {
        return f64::NAN;
    }
    if x == 0.0 || x.is_infinite() {
        return x;
    }
    // Halving the exponent gives a guess within ~6 %; each Newton step
    // squares the relative error.
    let mut y = f64::from_bits((x.to_bits() >> 1) + 0x1FF8_0000_0000_0000);
    for _ in 0..6 {
        y = 0.5 * (y + x / y);
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pt100_table_points() {
        // IEC 60751 table values
        assert!((resistance(0.0, 100.0) - 100.0).abs() < 1e-9);
        assert!((resistance(100.0, 100.0) - 138.5055).abs() < 1e-3);
        assert!((resistance(-100.0, 100.0) - 60.2558).abs() < 1e-3);
        assert!((resistance(-200.0, 100.0) - 18.5201).abs() < 1e-3);
        assert!((temperature(138.5055, 100.0).unwrap_or(f64::NAN) - 100.0).abs() < 1e-3);
        assert!((temperature(60.2558, 100.0).unwrap_or(f64::NAN) + 100.0).abs() < 1e-3);
    }

    #[test]
    fn out_of_range_is_none() {
        assert_eq!(temperature(0.0, 100.0), None);
        assert_eq!(temperature(1000.0, 100.0), None);
        assert_eq!(temperature(f64::NAN, 100.0), None);
        assert_eq!(temperature(100.0, 0.0), None);
    }

    #[test]
    fn sqrt_is_exact_enough() {
        for x in [1e-12, 0.25, 2.0, 1.5275e-5, 1e6, 1e300] {
            let s = sqrt(x);
            assert!(((s * s - x) / x).abs() < 1e-14, "{x}");
        }
    }
}
