//! The graph file as parsed: TOML tables read into a [`Spec`] whose every
//! piece keeps its place in the file. Only the shape is checked here; kinds,
//! parameters and inputs are checked by `validate`.

use super::diag::Report;
use super::params::{duration_ns, number};
use super::suggest::{did_you_mean, hint, list};
use crate::plan::{Layout, Overflow};
use crate::vertex::Role;
use std::ops::Range;
use std::time::Duration;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// Byte offsets into the file.
pub(crate) type Span = Range<usize>;

/// A value and where it is.
#[derive(Clone, Debug)]
pub(crate) struct Sp<T> {
    pub value: T,
    pub span: Span,
}

/// Smallest ring capacity, in records.
pub(crate) const MIN_CAPACITY: i64 = 2;
/// Largest ring capacity, in records.
pub(crate) const MAX_CAPACITY: i64 = 1 << 24;

/// Smallest `[ha] retention`, in input records' worth (each frame also
/// counts a few for itself: `ha::upstream`).
const MIN_RETENTION: i64 = 1 << 10;
/// Largest `[ha] retention`, in input records' worth.
const MAX_RETENTION: i64 = 1 << 24;

/// A duration key of `[ha]`: its valid range and, for messages, an example.
struct DurationKey {
    name: &'static str,
    min: Duration,
    max: Duration,
    example: &'static str,
    /// What else bounds it, for the message.
    also: &'static str,
}

const HEARTBEAT: DurationKey = DurationKey {
    name: "heartbeat",
    min: Duration::from_millis(1),
    max: Duration::from_secs(1),
    example: "5ms",
    also: "",
};
/// The shortest timeout is 3 of the shortest heartbeats; `validate` checks
/// that it is 3 of the file's heartbeats.
const TIMEOUT: DurationKey = DurationKey {
    name: "timeout",
    min: Duration::from_millis(3),
    max: Duration::from_secs(60),
    example: "100ms",
    also: " and at least 3 heartbeats",
};
const SUPERVISE: DurationKey = DurationKey {
    name: "supervise",
    min: Duration::ZERO,
    max: Duration::from_secs(24 * 3600),
    example: "10s",
    also: "",
};

const TABLES: [&str; 6] = [
    "[graph]",
    "[ha]",
    "[sources]",
    "[vertices]",
    "[sinks]",
    "[[edges]]",
];
const GRAPH_KEYS: [&str; 4] = ["name", "layout", "capacity", "overflow"];
const HA_KEYS: [&str; 6] = [
    "retention",
    "heartbeat",
    "timeout",
    "supervise",
    "max_mismatch",
    "tolerance",
];
const EDGE_KEYS: [&str; 4] = ["from", "to", "capacity", "overflow"];

/// A whole graph file.
#[derive(Debug, Default)]
pub(crate) struct Spec<'a, 'i> {
    pub name: Option<String>,
    pub layout: Option<Layout>,
    pub capacity: Option<usize>,
    pub overflow: Option<Overflow>,
    /// The `[ha]` table.
    pub ha: HaSpec,
    /// Nodes in file order.
    pub nodes: Vec<NodeSpec<'a, 'i>>,
    /// `[[edges]]` in file order.
    pub edges: Vec<EdgeSpec>,
    /// Ids of would-be nodes already reported (in an unknown table, or not
    /// a table): inputs naming them are not reported again.
    pub stray_ids: std::collections::BTreeSet<String>,
}

/// The `[ha]` table: each value present and in its own range, or absent.
/// What depends on the rest of the file (timeout against heartbeat, channel
/// names) is checked by `validate`.
#[derive(Debug, Default)]
pub(crate) struct HaSpec {
    pub retention: Option<usize>,
    pub heartbeat: Option<Sp<Duration>>,
    /// True when a `heartbeat` key is present (even with a bad value).
    pub has_heartbeat: bool,
    pub timeout: Option<Sp<Duration>>,
    pub supervise: Option<Duration>,
    pub max_mismatch: Option<f64>,
    /// `[ha.tolerance]` in file order: channel name (at its key) and tolerance.
    pub tolerances: Vec<(Sp<String>, f64)>,
}

/// One `[sources.x]`, `[vertices.x]` or `[sinks.x]`.
#[derive(Debug)]
pub(crate) struct NodeSpec<'a, 'i> {
    pub id: Sp<String>,
    pub role: Role,
    pub kind: Option<Sp<String>>,
    /// True when a `kind` key is present (even with a bad value).
    pub has_kind: bool,
    pub version: Option<Sp<u32>>,
    pub inputs: Option<Inputs>,
    pub worker: Option<Sp<String>>,
    /// Every other key: parameters of the kind, checked by `validate`.
    pub params: Vec<(Sp<String>, &'a Spanned<DeValue<'i>>)>,
}

/// An `inputs = [..]` list.
#[derive(Debug)]
pub(crate) struct Inputs {
    /// The `inputs` key.
    pub key: Span,
    /// The whole list.
    pub value: Span,
    pub items: Vec<Sp<String>>,
    /// False when some entry was not a string (and was reported).
    pub complete: bool,
}

/// One `[[edges]]` entry.
#[derive(Debug)]
pub(crate) struct EdgeSpec {
    pub header: Span,
    pub from: Option<Sp<String>>,
    pub to: Option<Sp<String>>,
    pub capacity: Option<usize>,
    pub overflow: Option<Overflow>,
}

/// The role's noun in messages.
pub(crate) fn noun(role: Role) -> &'static str {
    match role {
        Role::Source => "source",
        Role::Vertex => "vertex",
        Role::Sink => "sink",
    }
}

/// The source text of a value, shortened, for "got ..." in messages.
pub(crate) fn got(text: &str, span: &Span) -> String {
    let raw = text.get(span.clone()).unwrap_or("?");
    let words: Vec<&str> = raw.split_whitespace().collect();
    let flat = words.join(" ");
    let mut shown: String = flat.chars().take(40).collect();
    if shown.len() < flat.len() {
        shown.push_str("...");
    }
    shown
}

/// File entries of a table, in file order.
pub(crate) fn entries<'a, 'i>(
    table: &'a DeTable<'i>,
) -> Vec<(
    &'a Spanned<std::borrow::Cow<'i, str>>,
    &'a Spanned<DeValue<'i>>,
)> {
    let mut all: Vec<_> = table.iter().collect();
    all.sort_by_key(|(k, _)| k.span().start);
    all
}

/// Reads the document into a spec, reporting what has the wrong shape.
pub(crate) fn read<'a, 'i>(
    text: &str,
    doc: &'a Spanned<DeTable<'i>>,
    report: &mut Report,
) -> Spec<'a, 'i> {
    let mut spec = Spec::default();
    for (key, value) in entries(doc.get_ref()) {
        match key.get_ref().as_ref() {
            "graph" => read_graph(text, value, report, &mut spec),
            "ha" => read_ha(text, value, report, &mut spec.ha),
            "sources" => read_nodes(text, Role::Source, key, value, report, &mut spec),
            "vertices" => read_nodes(text, Role::Vertex, key, value, report, &mut spec),
            "sinks" => read_nodes(text, Role::Sink, key, value, report, &mut spec),
            "edges" => read_edges(text, value, report, &mut spec),
            other => {
                if let DeValue::Table(t) = value.get_ref() {
                    spec.stray_ids
                        .extend(t.iter().map(|(k, _)| k.get_ref().to_string()));
                }
                report.at(
                    &key.span(),
                    format!(
                        "unknown table `[{other}]`{}",
                        hint(
                            &format!("[{other}]"),
                            TABLES,
                            &format!("valid tables: {}", list(TABLES))
                        )
                    ),
                )
            }
        }
    }
    spec.nodes.sort_by_key(|n| n.id.span.start);
    spec
}

fn read_graph(
    text: &str,
    value: &Spanned<DeValue<'_>>,
    report: &mut Report,
    spec: &mut Spec<'_, '_>,
) {
    let DeValue::Table(table) = value.get_ref() else {
        report.at(
            &value.span(),
            "`graph` must be a table: write [graph] and its keys below it",
        );
        return;
    };
    for (key, value) in entries(table) {
        match key.get_ref().as_ref() {
            "name" => match value.get_ref() {
                DeValue::String(s) if !s.trim().is_empty() => spec.name = Some(s.to_string()),
                _ => report.at(
                    &value.span(),
                    format!(
                        "`name` must be a non-empty string such as \"home\", got {}",
                        got(text, &value.span())
                    ),
                ),
            },
            "layout" => spec.layout = read_layout(text, value, report),
            "capacity" => spec.capacity = read_capacity(text, value, report),
            "overflow" => spec.overflow = read_overflow(text, value, report),
            other => report.at(
                &key.span(),
                format!(
                    "unknown key `{other}` in [graph]{}",
                    hint(
                        other,
                        GRAPH_KEYS,
                        &format!("valid keys: {}", list(GRAPH_KEYS))
                    )
                ),
            ),
        }
    }
}

fn read_ha(text: &str, value: &Spanned<DeValue<'_>>, report: &mut Report, ha: &mut HaSpec) {
    let DeValue::Table(table) = value.get_ref() else {
        report.at(
            &value.span(),
            "`ha` must be a table: write [ha] and its keys below it",
        );
        return;
    };
    for (key, value) in entries(table) {
        let span = value.span();
        match key.get_ref().as_ref() {
            "retention" => {
                ha.retention = match value.get_ref() {
                    DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix())
                        .ok()
                        .filter(|n| (MIN_RETENTION..=MAX_RETENTION).contains(n))
                        .and_then(|n| usize::try_from(n).ok()),
                    _ => None,
                };
                if ha.retention.is_none() {
                    report.at(
                        &span,
                        format!(
                            "`retention` must be an integer from {MIN_RETENTION} to {MAX_RETENTION} (input records' worth, {} bytes each), got {}",
                            crate::wire::RECORD_BYTES,
                            got(text, &span)
                        ),
                    );
                }
            }
            "heartbeat" => {
                ha.has_heartbeat = true;
                ha.heartbeat =
                    read_duration(text, &HEARTBEAT, value, report).map(|d| Sp { value: d, span });
            }
            "timeout" => {
                ha.timeout =
                    read_duration(text, &TIMEOUT, value, report).map(|d| Sp { value: d, span });
            }
            "supervise" => {
                ha.supervise = read_duration(text, &SUPERVISE, value, report);
            }
            "max_mismatch" => {
                ha.max_mismatch = number(value.get_ref()).filter(|x| (0.0..=1.0).contains(x));
                if ha.max_mismatch.is_none() {
                    report.at(
                        &span,
                        format!(
                            "`max_mismatch` must be a number from 0 to 1 (a fraction of compared records) such as 0.01, got {}",
                            got(text, &span)
                        ),
                    );
                }
            }
            "tolerance" => match value.get_ref() {
                DeValue::Table(t) => read_tolerances(text, None, t, report, &mut ha.tolerances),
                _ => report.at(
                    &span,
                    "`tolerance` must be a table of channels and their tolerances: write [ha.tolerance] and below it lines such as \"cop\" = 1e-9",
                ),
            },
            other => report.at(
                &key.span(),
                format!(
                    "unknown key `{other}` in [ha]{}",
                    hint(other, HA_KEYS, &format!("valid keys: {}", list(HA_KEYS)))
                ),
            ),
        }
    }
}

/// A duration in the key's range.
fn read_duration(
    text: &str,
    key: &DurationKey,
    value: &Spanned<DeValue<'_>>,
    report: &mut Report,
) -> Option<Duration> {
    let parsed = duration_ns(value.get_ref())
        .and_then(|ns| u64::try_from(ns).ok())
        .map(Duration::from_nanos)
        .filter(|d| (key.min..=key.max).contains(d));
    if parsed.is_none() {
        report.at(
            &value.span(),
            format!(
                "`{}` must be a duration from {} to {}{}, such as \"{}\", got {}",
                key.name,
                show_duration(key.min),
                show_duration(key.max),
                key.also,
                key.example,
                got(text, &value.span())
            ),
        );
    }
    parsed
}

/// A duration as a graph file writes it (`"100ms"`, `"24h"`).
pub(crate) fn show_duration(d: Duration) -> String {
    crate::param::format_duration(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// `[ha.tolerance]` entries. A dotted key (`battery.soc = 0.1`, which TOML
/// reads as a table `battery`) names the channel `battery.soc`, as the
/// quoted key `"battery.soc"` does; `outer` is the span of its first part.
fn read_tolerances(
    text: &str,
    outer: Option<(&str, &Span)>,
    table: &DeTable<'_>,
    report: &mut Report,
    out: &mut Vec<(Sp<String>, f64)>,
) {
    for (key, value) in entries(table) {
        let (name, span) = match outer {
            Some((prefix, span)) => (format!("{prefix}.{}", key.get_ref()), span.clone()),
            None => (key.get_ref().to_string(), key.span()),
        };
        match value.get_ref() {
            DeValue::Table(inner) => {
                read_tolerances(text, Some((&name, &span)), inner, report, out)
            }
            v => match number(v).filter(|x| *x >= 0.0) {
                Some(tolerance) => out.push((Sp { value: name, span }, tolerance)),
                None => report.at(
                    &value.span(),
                    format!(
                        "the tolerance of `{name}` must be a number of at least 0 (the largest absolute difference), such as 0.001, got {}",
                        got(text, &value.span())
                    ),
                ),
            },
        }
    }
}

fn read_layout(text: &str, value: &Spanned<DeValue<'_>>, report: &mut Report) -> Option<Layout> {
    let parsed = match value.get_ref() {
        DeValue::String(s) => Layout::parse(s),
        _ => None,
    };
    if parsed.is_none() {
        let word = as_str(value).unwrap_or("");
        report.at(
            &value.span(),
            format!(
                "`layout` must be one of \"single\", \"chains\", \"spread\", got {}{}",
                got(text, &value.span()),
                did_you_mean(word, Layout::NAMES)
            ),
        );
    }
    parsed
}

/// Reads a ring overflow policy.
pub(crate) fn read_overflow(
    text: &str,
    value: &Spanned<DeValue<'_>>,
    report: &mut Report,
) -> Option<Overflow> {
    let parsed = match value.get_ref() {
        DeValue::String(s) => Overflow::parse(s),
        _ => None,
    };
    if parsed.is_none() {
        let word = as_str(value).unwrap_or("");
        report.at(
            &value.span(),
            format!(
                "`overflow` must be one of \"block\", \"drop_oldest\", \"drop_newest\", got {}{}",
                got(text, &value.span()),
                did_you_mean(word, Overflow::NAMES)
            ),
        );
    }
    parsed
}

/// Reads a ring capacity.
pub(crate) fn read_capacity(
    text: &str,
    value: &Spanned<DeValue<'_>>,
    report: &mut Report,
) -> Option<usize> {
    let parsed = match value.get_ref() {
        DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix())
            .ok()
            .filter(|n| (MIN_CAPACITY..=MAX_CAPACITY).contains(n))
            .and_then(|n| usize::try_from(n).ok()),
        _ => None,
    };
    if parsed.is_none() {
        report.at(
            &value.span(),
            format!(
                "`capacity` must be an integer from {MIN_CAPACITY} to {MAX_CAPACITY} (records), got {}",
                got(text, &value.span())
            ),
        );
    }
    parsed
}

fn as_str<'v>(value: &'v Spanned<DeValue<'_>>) -> Option<&'v str> {
    match value.get_ref() {
        DeValue::String(s) => Some(s.as_ref()),
        _ => None,
    }
}

/// A string value, or an error saying what `what` should be.
fn string(
    text: &str,
    value: &Spanned<DeValue<'_>>,
    report: &mut Report,
    what: &str,
) -> Option<Sp<String>> {
    match as_str(value) {
        Some(s) => Some(Sp {
            value: s.to_owned(),
            span: value.span(),
        }),
        None => {
            report.at(
                &value.span(),
                format!("{what}, got {}", got(text, &value.span())),
            );
            None
        }
    }
}

/// True for `[a-z][a-z0-9_]*`.
pub(crate) fn valid_id(id: &str) -> bool {
    let mut chars = id.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn read_nodes<'a, 'i>(
    text: &str,
    role: Role,
    table_key: &Spanned<std::borrow::Cow<'i, str>>,
    value: &'a Spanned<DeValue<'i>>,
    report: &mut Report,
    spec: &mut Spec<'a, 'i>,
) {
    let table_name = role.table();
    let DeValue::Table(table) = value.get_ref() else {
        report.at(
            &table_key.span(),
            format!(
                "`{table_name}` must be a table of {table_name}, one per node, such as [{table_name}.name]"
            ),
        );
        return;
    };
    for (key, value) in entries(table) {
        let id = key.get_ref().to_string();
        if !valid_id(&id) {
            report.at(
                &key.span(),
                format!(
                    "`{id}` is not a valid node id: use lowercase letters, digits and `_`, starting with a letter"
                ),
            );
        }
        let DeValue::Table(body) = value.get_ref() else {
            spec.stray_ids.insert(id.clone());
            report.at(
                &key.span(),
                format!(
                    "{} `{id}` must be a table such as [{table_name}.{id}] with `kind = ...` below it",
                    noun(role)
                ),
            );
            continue;
        };
        spec.nodes
            .push(read_node(text, role, id, key.span(), body, report));
    }
}

fn read_node<'a, 'i>(
    text: &str,
    role: Role,
    id: String,
    id_span: Span,
    body: &'a DeTable<'i>,
    report: &mut Report,
) -> NodeSpec<'a, 'i> {
    let mut node = NodeSpec {
        id: Sp {
            value: id,
            span: id_span,
        },
        role,
        kind: None,
        has_kind: false,
        version: None,
        inputs: None,
        worker: None,
        params: Vec::new(),
    };
    for (key, value) in entries(body) {
        match key.get_ref().as_ref() {
            "kind" => {
                node.has_kind = true;
                node.kind = string(
                    text,
                    value,
                    report,
                    &format!("`kind` must be a string naming a {} kind", noun(role)),
                );
            }
            "version" => node.version = read_version(text, value, report),
            "inputs" => node.inputs = read_inputs(text, key.span(), value, report),
            "worker" => node.worker = read_worker(text, value, report),
            name => node.params.push((
                Sp {
                    value: name.to_owned(),
                    span: key.span(),
                },
                value,
            )),
        }
    }
    node
}

fn read_version(text: &str, value: &Spanned<DeValue<'_>>, report: &mut Report) -> Option<Sp<u32>> {
    let version = match value.get_ref() {
        DeValue::Integer(i) => u32::from_str_radix(i.as_str(), i.radix())
            .ok()
            .filter(|v| *v > 0),
        _ => None,
    };
    if version.is_none() {
        report.at(
            &value.span(),
            format!(
                "`version` must be a positive integer such as 1, got {}",
                got(text, &value.span())
            ),
        );
    }
    version.map(|v| Sp {
        value: v,
        span: value.span(),
    })
}

fn read_worker(
    text: &str,
    value: &Spanned<DeValue<'_>>,
    report: &mut Report,
) -> Option<Sp<String>> {
    let worker = string(
        text,
        value,
        report,
        "`worker` must be a string naming a worker such as \"w1\"",
    )?;
    if worker.value.is_empty() || worker.value == "ingress" {
        report.at(
            &worker.span,
            format!(
                "`worker` must be a non-empty name other than \"ingress\" (the sources' worker), got {}",
                got(text, &worker.span)
            ),
        );
        return None;
    }
    Some(worker)
}

fn read_inputs(
    text: &str,
    key: Span,
    value: &Spanned<DeValue<'_>>,
    report: &mut Report,
) -> Option<Inputs> {
    let DeValue::Array(array) = value.get_ref() else {
        let hint = match as_str(value) {
            Some(s) => format!(" such as [\"{s}\"]"),
            None => " such as [\"battery.soc\"]".to_owned(),
        };
        report.at(
            &value.span(),
            format!(
                "`inputs` must be a list of channel names{hint}, got {}",
                got(text, &value.span())
            ),
        );
        return None;
    };
    let mut items = Vec::new();
    let mut complete = true;
    for item in array.iter() {
        if let Some(s) = string(
            text,
            item,
            report,
            "each input must be a channel name such as \"battery.soc\"",
        ) {
            items.push(s);
        } else {
            complete = false;
        }
    }
    Some(Inputs {
        key,
        value: value.span(),
        items,
        complete,
    })
}

fn read_edges(
    text: &str,
    value: &Spanned<DeValue<'_>>,
    report: &mut Report,
    spec: &mut Spec<'_, '_>,
) {
    let DeValue::Array(array) = value.get_ref() else {
        report.at(
            &value.span(),
            "`edges` must be an array of tables: write each as [[edges]] with `from` and `to`",
        );
        return;
    };
    for item in array.iter() {
        let DeValue::Table(table) = item.get_ref() else {
            report.at(
                &item.span(),
                "each edge must be a table with `from` and `to`, written as [[edges]]",
            );
            continue;
        };
        let mut edge = EdgeSpec {
            header: item.span(),
            from: None,
            to: None,
            capacity: None,
            overflow: None,
        };
        for (key, value) in entries(table) {
            match key.get_ref().as_ref() {
                "from" => {
                    edge.from = string(
                        text,
                        value,
                        report,
                        "`from` must be a node id such as \"battery\"",
                    )
                }
                "to" => {
                    edge.to = string(
                        text,
                        value,
                        report,
                        "`to` must be a node id such as \"soc\"",
                    )
                }
                "capacity" => edge.capacity = read_capacity(text, value, report),
                "overflow" => edge.overflow = read_overflow(text, value, report),
                other => report.at(
                    &key.span(),
                    format!(
                        "unknown key `{other}` in [[edges]]{}",
                        hint(
                            other,
                            EDGE_KEYS,
                            &format!("valid keys: {}", list(EDGE_KEYS))
                        )
                    ),
                ),
            }
        }
        let missing: Vec<&str> = [("from", edge.from.is_none()), ("to", edge.to.is_none())]
            .into_iter()
            .filter(|(_, m)| *m)
            .map(|(k, _)| k)
            .collect();
        let reported_bad = table.get("from").is_some() && edge.from.is_none()
            || table.get("to").is_some() && edge.to.is_none();
        if !missing.is_empty() && !reported_bad {
            report.at(
                &edge.header,
                format!(
                    "edge needs `from` and `to` (node ids); missing: {}",
                    missing.join(", ")
                ),
            );
        }
        spec.edges.push(edge);
    }
}
