//! Byte-level scanning of replay rows: newlines and commas found eight bytes
//! at a time, integer nanoseconds and plain decimals parsed in one pass.
//! Anything these fast paths do not recognise is left to the general
//! parsers, which give the same result or the error message.

/// 0x01 in every byte.
const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
/// 0x7f in every byte.
const LOWS: u64 = u64::from_ne_bytes([0x7f; 8]);
/// 0x80 in every byte.
const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);

fn word(bytes: &[u8]) -> u64 {
    let mut eight = [0u8; 8];
    eight.copy_from_slice(bytes);
    u64::from_le_bytes(eight)
}

/// Where the first `\n` in `bytes` is.
pub fn find_newline(bytes: &[u8]) -> Option<usize> {
    const NEWLINES: u64 = u64::from_ne_bytes([b'\n'; 8]);
    let mut words = bytes.chunks_exact(8);
    let mut at = 0;
    for eight in &mut words {
        let x = word(eight) ^ NEWLINES;
        // Nonzero exactly when some byte of `x` is zero (a newline); which
        // one is left to the byte search below.
        if x.wrapping_sub(ONES) & !x & HIGHS != 0 {
            break;
        }
        at += 8;
    }
    bytes
        .get(at..)?
        .iter()
        .position(|&b| b == b'\n')
        .map(|n| at + n)
}

/// Splits `line` at its commas into `fields` (as many as fit, each trimmed
/// of ASCII whitespace) and returns the number of fields it has.
pub fn split_fields<'a, const N: usize>(line: &'a [u8], fields: &mut [&'a [u8]; N]) -> usize {
    const COMMAS: u64 = u64::from_ne_bytes([b','; 8]);
    let mut count = 0;
    let mut from = 0;
    let mut field_to = |to: usize, count: &mut usize, from: &mut usize| {
        if let Some(slot) = fields.get_mut(*count) {
            *slot = line.get(*from..to).unwrap_or(&[]).trim_ascii();
        }
        *count += 1;
        *from = to + 1;
    };
    let mut words = line.chunks_exact(8);
    let mut base = 0;
    for eight in &mut words {
        let x = word(eight) ^ COMMAS;
        // The high bit of each byte of `x` that is zero (a comma), exactly:
        // no carry crosses bytes.
        let mut commas = !(((x & LOWS) + LOWS) | x) & HIGHS;
        while commas != 0 {
            let at = base + (commas.trailing_zeros() / 8) as usize;
            field_to(at, &mut count, &mut from);
            commas &= commas - 1;
        }
        base += 8;
    }
    for (i, &b) in words.remainder().iter().enumerate() {
        if b == b',' {
            field_to(base + i, &mut count, &mut from);
        }
    }
    field_to(line.len(), &mut count, &mut from);
    count
}

/// Integer nanoseconds, `[0-9]{1,19}` within an `i64`; `None` for any other form.
pub fn integer(text: &[u8]) -> Option<i64> {
    if !(1..=19).contains(&text.len()) {
        return None;
    }
    // Nineteen digits always fit in a u64; one pass, no check per digit.
    let mut n = 0u64;
    let mut digits = true;
    for &b in text {
        let d = b.wrapping_sub(b'0');
        digits &= d <= 9;
        n = n.wrapping_mul(10).wrapping_add(u64::from(d));
    }
    digits.then(|| i64::try_from(n).ok()).flatten()
}

/// Powers of ten that an f64 holds exactly.
const POWERS: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// A plain decimal, `[+-]?digits[.digits]` whose digits make an integer
/// below 2^53 with at most 22 of them after the point, to the same f64 as
/// `str::parse` gives: both the integer and the power of ten are exact, so
/// the one division rounds correctly (Clinger's fast path). `None` for any
/// other form.
pub fn decimal(text: &[u8]) -> Option<f64> {
    let (negative, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, text),
    };
    // Seventeen bytes hold at most 17 digits: no overflow below.
    if digits.is_empty() || digits.len() > 17 {
        return None;
    }
    let mut mantissa = 0u64;
    let mut seen = 0;
    let mut point = None;
    for (i, &b) in digits.iter().enumerate() {
        let d = b.wrapping_sub(b'0');
        if d <= 9 {
            mantissa = mantissa * 10 + u64::from(d);
            seen += 1;
        } else if b == b'.' && point.is_none() {
            point = Some(i);
        } else {
            return None;
        }
    }
    if seen == 0 || mantissa >= 1 << 53 {
        return None;
    }
    let after = point.map_or(0, |p| digits.len() - p - 1);
    let value = mantissa as f64 / POWERS.get(after).copied()?;
    Some(if negative { -value } else { value })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn newlines_are_found_at_every_position() {
        for len in 0..40 {
            for at in 0..=len {
                let mut bytes = vec![b'x'; len];
                if at < len {
                    bytes[at] = b'\n';
                    if at + 3 < len {
                        bytes[at + 3] = b'\n';
                    }
                }
                let expected = (at < len).then_some(at);
                assert_eq!(find_newline(&bytes), expected, "len {len} at {at}");
            }
        }
        // Bytes next to a newline's value are not newlines.
        assert_eq!(
            find_newline(&[0x8a, 0x0b, 0xff, 0x09, 0, 1, 2, 3, b'\n']),
            Some(8)
        );
    }

    #[test]
    fn fields_split_at_every_comma_and_only_there() {
        let mut fields = [&b""[..]; 5];
        for line in [
            "",
            ",",
            "1767225600000000000,power,-300.0,good",
            "12, 1767225600.25 ,soc,-1,-2,+3",
            "a,-,.,/,+,,,,,,,,,,,x",
            "1,-300,-2e-5,,-",
        ] {
            let bytes = line.as_bytes();
            let count = split_fields(bytes, &mut fields);
            let expected: Vec<&str> = line.split(',').map(str::trim).collect();
            assert_eq!(count, expected.len(), "{line:?}");
            for (got, want) in fields.iter().zip(&expected) {
                assert_eq!(*got, want.as_bytes(), "{line:?}");
            }
        }
    }

    #[test]
    fn integer_times_parse_up_to_the_limit_of_an_i64() {
        assert_eq!(integer(b"0"), Some(0));
        assert_eq!(
            integer(b"1767225600000000000"),
            Some(1_767_225_600_000_000_000)
        );
        assert_eq!(integer(b"9223372036854775807"), Some(i64::MAX));
        for other in [
            &b"9223372036854775808"[..],
            b"99999999999999999999",
            b"17672256x0",
            b"1.5",
            b"-1",
            b"",
        ] {
            assert_eq!(integer(other), None, "{:?}", String::from_utf8_lossy(other));
        }
    }

    #[test]
    fn decimals_parse_to_the_same_bits_as_str_parse() {
        // A deterministic spread of decimals: signs, points, lengths.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut fast = 0;
        for _ in 0..200_000 {
            let r = next();
            let digits = (r % 20 + 1) as usize;
            let mut text = String::new();
            match r >> 60 {
                0..=5 => text.push('-'),
                6 => text.push('+'),
                _ => {}
            }
            let mut d = next();
            for _ in 0..digits {
                text.push(char::from(b'0' + (d % 10) as u8));
                d /= 10;
                if d == 0 {
                    d = next();
                }
            }
            if r & 1 == 0 {
                let at = ((r >> 8) as usize) % (digits + 1);
                text.insert(text.len() - digits + at, '.');
            }
            let want: Result<f64, _> = text.parse();
            match decimal(text.as_bytes()) {
                Some(got) => {
                    fast += 1;
                    assert_eq!(got.to_bits(), want.unwrap().to_bits(), "{text}");
                }
                None => assert!(digits > 15 || want.is_err(), "{text} fell back"),
            }
        }
        assert!(fast > 100_000, "the fast path took only {fast}");
        for other in ["", "-", ".", "1e5", "NaN", "inf", "1.2.3", "--1", "0x10"] {
            assert_eq!(decimal(other.as_bytes()), None, "{other}");
        }
        assert_eq!(decimal(b"-0.0").unwrap().to_bits(), (-0.0f64).to_bits());
        assert_eq!(decimal(b"5."), Some(5.0));
        assert_eq!(decimal(b".5"), Some(0.5));
    }
}
