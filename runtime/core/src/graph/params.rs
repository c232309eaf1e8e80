//! Parameter values from the file checked against a kind's [`ParamSpec`]s.

use super::diag::Report;
use super::spec::{got, noun, NodeSpec, Span};
use super::suggest::{did_you_mean, hint, list};
use crate::param::{parse_duration, ParamSpec, ParamType, ParamValue, Params};
use crate::vertex::{KindSpec, Role};
use toml::de::DeValue;
use toml::Spanned;

/// Keys every node may have besides parameters, by role.
fn reserved(role: Role) -> &'static [&'static str] {
    match role {
        Role::Source => &["kind", "version"],
        Role::Vertex | Role::Sink => &["kind", "version", "inputs", "worker"],
    }
}

/// The node's parameters, every declared one with its value or default.
/// Returns the params and the span of the `outputs_from` list, if set in the file.
pub(crate) fn check(
    text: &str,
    node: &NodeSpec<'_, '_>,
    kind: &'static KindSpec,
    report: &mut Report,
) -> (Params, Option<Span>) {
    let mut params = Params::new();
    let mut names_span = None;
    for (key, value) in &node.params {
        let Some(spec) = kind.params.iter().find(|p| p.name == key.value) else {
            let candidates = kind
                .params
                .iter()
                .map(|p| p.name)
                .chain(reserved(node.role).iter().copied());
            report.at(
                &key.span,
                format!(
                    "unknown parameter `{}` of `{}`{}",
                    key.value,
                    kind.name,
                    hint(
                        &key.value,
                        candidates,
                        &format!(
                            "parameters of `{}`: {}",
                            kind.name,
                            list(kind.params.iter().map(|p| p.name))
                        )
                    )
                ),
            );
            continue;
        };
        if let Some(v) = check_value(text, kind, spec, value, report) {
            if kind.outputs_from == Some(spec.name) {
                names_span = Some(value.span());
            }
            params.insert(spec.name, v);
        }
    }
    for spec in kind.params {
        if node.params.iter().any(|(k, _)| k.value == spec.name) {
            continue;
        }
        match ParamValue::from_default(spec.default) {
            Some(v) => params.insert(spec.name, v),
            None if spec.default == crate::param::ParamDefault::Required => report.at(
                &node.id.span,
                format!(
                    "{} `{}` needs parameter `{}` of `{}`: {}",
                    noun(node.role),
                    node.id.value,
                    spec.name,
                    kind.name,
                    spec.ty.expected()
                ),
            ),
            None => {}
        }
    }
    (params, names_span)
}

/// True for names such as `power` or `l1.power`: `[a-z0-9_]+`, dot-separated.
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.split('.').all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        })
}

fn integer(value: &DeValue<'_>) -> Option<Result<i64, ()>> {
    match value {
        DeValue::Integer(i) => Some(i64::from_str_radix(i.as_str(), i.radix()).map_err(|_| ())),
        _ => None,
    }
}

/// A finite number: a float, or an integer read as one.
pub(crate) fn number(value: &DeValue<'_>) -> Option<f64> {
    match value {
        DeValue::Integer(_) => integer(value)?.ok().map(|v| v as f64),
        DeValue::Float(f) => f.as_str().parse::<f64>().ok().filter(|v| v.is_finite()),
        _ => None,
    }
}

/// A duration in nanoseconds: a string with a unit (`"500ms"`, see
/// [`parse_duration`]) or a number of seconds.
pub(crate) fn duration_ns(value: &DeValue<'_>) -> Option<i64> {
    match value {
        DeValue::String(s) => parse_duration(s),
        _ => number(value)
            .map(|secs| secs * 1e9)
            .filter(|ns| *ns >= 0.0 && *ns <= i64::MAX as f64)
            .map(|ns| ns as i64),
    }
}

fn check_value(
    text: &str,
    kind: &KindSpec,
    spec: &ParamSpec,
    value: &Spanned<DeValue<'_>>,
    report: &mut Report,
) -> Option<ParamValue> {
    let v = value.get_ref();
    let parsed = match spec.ty {
        ParamType::Float { min, max } => number(v)
            .filter(|x| *x >= min && *x <= max)
            .map(ParamValue::Float),
        ParamType::Int { min, max } => match integer(v) {
            Some(Ok(x)) if x >= min && x <= max => Some(ParamValue::Int(x)),
            _ => None,
        },
        ParamType::Bool => match v {
            DeValue::Boolean(b) => Some(ParamValue::Bool(*b)),
            _ => None,
        },
        ParamType::Duration { min_ns, max_ns } => duration_ns(v)
            .filter(|ns| *ns >= min_ns && *ns <= max_ns)
            .map(ParamValue::Duration),
        ParamType::Choice(options) => match v {
            DeValue::String(s) if options.contains(&s.as_ref()) => {
                Some(ParamValue::Text(s.to_string()))
            }
            _ => None,
        },
        ParamType::Text => match v {
            DeValue::String(s) => Some(ParamValue::Text(s.to_string())),
            _ => None,
        },
        ParamType::Names => return check_names(text, kind, spec, value, report),
    };
    if parsed.is_none() {
        let hint = match (spec.ty, v) {
            (ParamType::Choice(options), DeValue::String(s)) => {
                did_you_mean(s, options.iter().copied())
            }
            _ => String::new(),
        };
        report.at(
            &value.span(),
            format!(
                "parameter `{}` of `{}` must be {}, got {}{hint}",
                spec.name,
                kind.name,
                spec.ty.expected(),
                got(text, &value.span())
            ),
        );
    }
    parsed
}

fn check_names(
    text: &str,
    kind: &KindSpec,
    spec: &ParamSpec,
    value: &Spanned<DeValue<'_>>,
    report: &mut Report,
) -> Option<ParamValue> {
    let DeValue::Array(items) = value.get_ref() else {
        report.at(
            &value.span(),
            format!(
                "parameter `{}` of `{}` must be {}, got {}",
                spec.name,
                kind.name,
                spec.ty.expected(),
                got(text, &value.span())
            ),
        );
        return None;
    };
    let before = report.len();
    let mut names: Vec<String> = Vec::new();
    // A set beside the list: a file may list tens of thousands of names.
    let mut seen: std::collections::BTreeSet<&str> = std::collections::BTreeSet::new();
    for item in items.iter() {
        match item.get_ref() {
            DeValue::String(s) if valid_name(s) => {
                if !seen.insert(s.as_ref()) {
                    report.at(
                        &item.span(),
                        format!(
                            "parameter `{}` of `{}` lists `{s}` twice",
                            spec.name, kind.name
                        ),
                    );
                } else {
                    names.push(s.to_string());
                }
            }
            _ => report.at(
                &item.span(),
                format!(
                    "parameter `{}` of `{}`: {} is not a valid name; names are lowercase letters, digits and `_` (dots may separate parts)",
                    spec.name,
                    kind.name,
                    got(text, &item.span())
                ),
            ),
        }
    }
    (report.len() == before).then_some(ParamValue::Names(names))
}
