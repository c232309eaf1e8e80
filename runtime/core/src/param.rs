//! Declared parameters of a kind, and the validated values a node gets.

use std::collections::BTreeMap;

/// The type and valid range of one parameter.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ParamType {
    /// A float in `[min, max]` (integers in the file are accepted).
    Float {
        /// Smallest valid value.
        min: f64,
        /// Largest valid value.
        max: f64,
    },
    /// An integer in `[min, max]`.
    Int {
        /// Smallest valid value.
        min: i64,
        /// Largest valid value.
        max: i64,
    },
    /// `true` or `false`.
    Bool,
    /// A duration: a string such as `"500ms"`, `"5s"`, `"2m"`, `"1h"`, or a number of seconds.
    Duration {
        /// Shortest valid duration, nanoseconds.
        min_ns: i64,
        /// Longest valid duration, nanoseconds.
        max_ns: i64,
    },
    /// One of a fixed set of strings.
    Choice(&'static [&'static str]),
    /// Any string (paths, names).
    Text,
    /// A list of names, each a valid channel-name part (`[a-z0-9_]+`, dots allowed).
    Names,
}

impl ParamType {
    /// A float with no range limit beyond being finite.
    pub const ANY_FLOAT: ParamType = ParamType::Float {
        min: f64::MIN,
        max: f64::MAX,
    };

    /// What a valid value looks like, for error messages.
    pub fn expected(&self) -> String {
        match self {
            ParamType::Float { min, max } if *min == f64::MIN && *max == f64::MAX => {
                "a finite number".to_owned()
            }
            ParamType::Float { min, max } => format!("a number from {min} to {max}"),
            ParamType::Int { min, max } => format!("an integer from {min} to {max}"),
            ParamType::Bool => "true or false".to_owned(),
            ParamType::Duration { min_ns, max_ns } => format!(
                "a duration from {} to {} (such as \"500ms\", \"5s\", \"2m\", \"1h\")",
                format_duration(*min_ns),
                format_duration(*max_ns)
            ),
            ParamType::Choice(options) => {
                let quoted: Vec<String> = options.iter().map(|o| format!("\"{o}\"")).collect();
                format!("one of {}", quoted.join(", "))
            }
            ParamType::Text => "a string".to_owned(),
            ParamType::Names => "a list of names such as [\"power\", \"voltage\"]".to_owned(),
        }
    }
}

/// A parameter's default when the graph file does not set it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ParamDefault {
    /// The parameter must be set.
    Required,
    /// The parameter may be left out and has no value then.
    Optional,
    /// A float default.
    Float(f64),
    /// An integer default.
    Int(i64),
    /// A boolean default.
    Bool(bool),
    /// A duration default in nanoseconds.
    Duration(i64),
    /// A string default (also for choices).
    Text(&'static str),
    /// A list-of-names default.
    Names(&'static [&'static str]),
}

/// One declared parameter of a kind.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ParamSpec {
    /// Key in the graph file.
    pub name: &'static str,
    /// Type and range.
    pub ty: ParamType,
    /// Value when left out.
    pub default: ParamDefault,
    /// What it means, with its unit.
    pub doc: &'static str,
}

/// A validated parameter value.
#[derive(Clone, Debug, PartialEq)]
pub enum ParamValue {
    /// A float.
    Float(f64),
    /// An integer.
    Int(i64),
    /// A boolean.
    Bool(bool),
    /// A duration in nanoseconds.
    Duration(i64),
    /// A string or a choice.
    Text(String),
    /// A list of names.
    Names(Vec<String>),
}

impl ParamValue {
    /// The value of a default, if it has one.
    pub fn from_default(default: ParamDefault) -> Option<ParamValue> {
        match default {
            ParamDefault::Required | ParamDefault::Optional => None,
            ParamDefault::Float(v) => Some(ParamValue::Float(v)),
            ParamDefault::Int(v) => Some(ParamValue::Int(v)),
            ParamDefault::Bool(v) => Some(ParamValue::Bool(v)),
            ParamDefault::Duration(v) => Some(ParamValue::Duration(v)),
            ParamDefault::Text(v) => Some(ParamValue::Text(v.to_owned())),
            ParamDefault::Names(v) => Some(ParamValue::Names(
                v.iter().map(|n| (*n).to_owned()).collect(),
            )),
        }
    }
}

/// The validated parameters of one node: every declared parameter with a
/// value or default is present and within its range.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Params {
    values: BTreeMap<String, ParamValue>,
}

impl Params {
    /// No parameters.
    pub fn new() -> Params {
        Params::default()
    }

    /// Sets a value (validation has already checked it).
    pub fn insert(&mut self, name: &str, value: ParamValue) {
        self.values.insert(name.to_owned(), value);
    }

    /// The raw value, if set.
    pub fn get(&self, name: &str) -> Option<&ParamValue> {
        self.values.get(name)
    }

    /// A float parameter (an integer value is widened).
    pub fn float(&self, name: &str) -> Option<f64> {
        match self.values.get(name)? {
            ParamValue::Float(v) => Some(*v),
            ParamValue::Int(v) => Some(*v as f64),
            _ => None,
        }
    }

    /// An integer parameter.
    pub fn int(&self, name: &str) -> Option<i64> {
        match self.values.get(name)? {
            ParamValue::Int(v) => Some(*v),
            _ => None,
        }
    }

    /// A boolean parameter.
    pub fn bool(&self, name: &str) -> Option<bool> {
        match self.values.get(name)? {
            ParamValue::Bool(v) => Some(*v),
            _ => None,
        }
    }

    /// A duration parameter in nanoseconds.
    pub fn duration_ns(&self, name: &str) -> Option<i64> {
        match self.values.get(name)? {
            ParamValue::Duration(v) => Some(*v),
            _ => None,
        }
    }

    /// A string or choice parameter.
    pub fn text(&self, name: &str) -> Option<&str> {
        match self.values.get(name)? {
            ParamValue::Text(v) => Some(v),
            _ => None,
        }
    }

    /// A list-of-names parameter.
    pub fn names(&self, name: &str) -> Option<&[String]> {
        match self.values.get(name)? {
            ParamValue::Names(v) => Some(v),
            _ => None,
        }
    }

    /// All values by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &ParamValue)> {
        self.values.iter().map(|(k, v)| (k.as_str(), v))
    }
}

/// Parses `"250ms"`, `"5s"`, `"1.5m"`, `"2h"`, `"10us"`, `"100ns"` into nanoseconds.
pub fn parse_duration(text: &str) -> Option<i64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let scale = match unit.trim() {
        "ns" => 1.0,
        "us" | "µs" => 1e3,
        "ms" => 1e6,
        "s" | "" => 1e9,
        "m" | "min" => 60e9,
        "h" => 3600e9,
        _ => return None,
    };
    let ns = number * scale;
    (ns.is_finite() && ns >= 0.0 && ns <= i64::MAX as f64).then_some(ns as i64)
}

/// Formats nanoseconds in the largest whole unit (`"5s"`, `"250ms"`).
pub fn format_duration(ns: i64) -> String {
    const UNITS: [(i64, &str); 6] = [
        (3_600_000_000_000, "h"),
        (60_000_000_000, "m"),
        (1_000_000_000, "s"),
        (1_000_000, "ms"),
        (1_000, "us"),
        (1, "ns"),
    ];
    if ns == 0 {
        return "0s".to_owned();
    }
    for (scale, unit) in UNITS {
        if ns % scale == 0 {
            return format!("{}{unit}", ns / scale);
        }
    }
    format!("{ns}ns")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_in_every_unit() {
        assert_eq!(parse_duration("250ms"), Some(250_000_000));
        assert_eq!(parse_duration("5s"), Some(5_000_000_000));
        assert_eq!(parse_duration("1.5m"), Some(90_000_000_000));
        assert_eq!(parse_duration("2h"), Some(7_200_000_000_000));
        assert_eq!(parse_duration("10us"), Some(10_000));
        assert_eq!(parse_duration("3"), Some(3_000_000_000));
        assert_eq!(parse_duration("5 parsecs"), None);
        assert_eq!(parse_duration("-1s"), None);
        assert_eq!(parse_duration(""), None);
    }

    #[test]
    fn durations_format_in_the_largest_whole_unit() {
        assert_eq!(format_duration(90_000_000_000), "90s");
        assert_eq!(format_duration(120_000_000_000), "2m");
        assert_eq!(format_duration(1_500_000), "1500us");
    }

    #[test]
    fn expected_says_what_is_valid() {
        let t = ParamType::Choice(&["mean", "max"]);
        assert_eq!(t.expected(), "one of \"mean\", \"max\"");
        let f = ParamType::Float { min: 0.0, max: 1.0 };
        assert_eq!(f.expected(), "a number from 0 to 1");
    }
}
