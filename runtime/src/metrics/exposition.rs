//! The agent's status (the JSON `tandem status --json` prints) as
//! Prometheus text, through prometheus-client. Every figure is read from
//! the status, so the endpoint, `tandem status` and `tandem top` never
//! disagree. docs/metrics.md lists each metric.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use serde_json::Value;

use super::figures::NodeFigures;
use super::window::QUANTILES;

/// The `Content-Type` of what [`render`] returns.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

type Labels = Vec<(&'static str, String)>;

#[derive(Clone, Copy, Debug)]
enum Number {
    Count(u64),
    Real(f64),
}

/// One metric and its series.
#[derive(Debug)]
struct Family {
    name: &'static str,
    help: &'static str,
    counter: bool,
    series: Vec<(Labels, Number)>,
}

#[derive(Debug, Default)]
struct Families(Vec<Family>);

impl Families {
    fn add(&mut self, name: &'static str, help: &'static str, counter: bool) -> &mut Family {
        if let Some(i) = self.0.iter().position(|f| f.name == name) {
            return &mut self.0[i];
        }
        self.0.push(Family {
            name,
            help,
            counter,
            series: Vec::new(),
        });
        let last = self.0.len() - 1;
        &mut self.0[last]
    }

    /// A counter; its name gets `_total` when encoded.
    fn counter(&mut self, name: &'static str, help: &'static str, labels: Labels, v: u64) {
        self.add(name, help, true)
            .series
            .push((labels, Number::Count(v)));
    }

    fn gauge(&mut self, name: &'static str, help: &'static str, labels: Labels, v: Number) {
        self.add(name, help, false).series.push((labels, v));
    }
}

impl Collector for Families {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for family in &self.0 {
            let kind = if family.counter {
                MetricType::Counter
            } else {
                MetricType::Gauge
            };
            let mut metric = encoder.encode_descriptor(family.name, family.help, None, kind)?;
            for (labels, value) in &family.series {
                let series = metric.encode_family(labels)?;
                match (family.counter, *value) {
                    (true, Number::Count(v)) => ConstCounter::new(v).encode(series)?,
                    (true, Number::Real(v)) => ConstCounter::new(v).encode(series)?,
                    (false, Number::Count(v)) => ConstGauge::new(v).encode(series)?,
                    (false, Number::Real(v)) => ConstGauge::new(v).encode(series)?,
                }
            }
        }
        Ok(())
    }
}

/// The status `status` (JSON) as Prometheus text.
pub fn render(status: &Value) -> String {
    let mut f = Families::default();
    let count = |v: &Value| v.as_u64().unwrap_or(0);
    let build = &status["build"];
    f.gauge(
        "tandem_build_info",
        "The running tandem: version and git commit (1).",
        vec![
            (
                "version",
                build["version"].as_str().unwrap_or("").to_owned(),
            ),
            (
                "commit",
                build["commit"].as_str().unwrap_or("unknown").to_owned(),
            ),
        ],
        Number::Count(1),
    );
    let graph = || vec![("graph", status["graph"].as_str().unwrap_or("").to_owned())];
    f.counter(
        "tandem_ingested_records",
        "Records the agent's sources produced and numbered (the highest origin sequence number).",
        graph(),
        count(&status["head"]),
    );
    f.counter(
        "tandem_emitted_records",
        "Output records emitted toward the sinks, once each.",
        graph(),
        count(&status["emitted"]),
    );
    f.counter(
        "tandem_compared_records",
        "Output records compared between the two instances.",
        graph(),
        count(&status["compared"]),
    );
    f.counter(
        "tandem_divergent_records",
        "Output records that differed between the instances (or had no twin).",
        graph(),
        count(&status["divergence"]),
    );
    f.counter(
        "tandem_bad_frames",
        "Frames from instances refused as malformed.",
        vec![],
        count(&status["bad_frames"]),
    );
    f.counter(
        "tandem_refused_connections",
        "Connections refused during the handshake.",
        vec![],
        count(&status["refused_connections"]),
    );
    for i in status["instances"].as_array().into_iter().flatten() {
        let color = i["color"].as_str().unwrap_or("").to_owned();
        let role = i["role"].as_str().unwrap_or("");
        for name in ["serving", "shadow", "starting"] {
            f.gauge(
                "tandem_instance_role",
                "1 for the role each instance has now (serving, shadow, starting), else 0.",
                vec![("color", color.clone()), ("role", name.to_owned())],
                Number::Count(u64::from(role == name)),
            );
        }
        f.gauge(
            "tandem_instance_connected",
            "1 while the instance is connected and has said hello.",
            vec![("color", color.clone())],
            Number::Count(u64::from(i["connected"] == true)),
        );
        if let Some(lag) = i["lag"].as_u64() {
            f.gauge(
                "tandem_instance_lag_records",
                "Input records the instance has yet to process (while connected).",
                vec![("color", color.clone())],
                Number::Count(lag),
            );
        }
        f.gauge(
            "tandem_instance_output_records_per_second",
            "Output records per second the instance delivered lately.",
            vec![("color", color.clone())],
            Number::Real(i["records_per_sec"].as_f64().unwrap_or(0.0)),
        );
        f.counter(
            "tandem_instance_restarts",
            "Times the agent restarted the instance.",
            vec![("color", color)],
            count(&i["restarts"]),
        );
    }
    let phase = status["upgrade"]["phase"].as_str().unwrap_or("unknown");
    f.gauge(
        "tandem_upgrade_phase",
        "1, labelled with the live upgrade's phase (idle outside an upgrade).",
        vec![("phase", phase.to_owned())],
        Number::Count(1),
    );
    for node in status["nodes"].as_array().into_iter().flatten() {
        if let Some(node) = NodeFigures::parse(node) {
            add_node(&mut f, &node);
        }
    }
    for spool in status["spools"].as_array().into_iter().flatten() {
        let sink = || vec![("sink", spool["sink"].as_str().unwrap_or("").to_owned())];
        f.gauge(
            "tandem_spool_bytes",
            "Bytes a sink holds on disk while its far side is unreachable.",
            sink(),
            Number::Count(count(&spool["bytes"])),
        );
        f.gauge(
            "tandem_spool_age_seconds",
            "Age of the oldest record a sink holds in its spool (0 when empty).",
            sink(),
            Number::Real(spool["age_seconds"].as_f64().unwrap_or(0.0)),
        );
    }
    let mut registry = Registry::default();
    registry.register_collector(Box::new(f));
    let mut text = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &registry);
    text
}

/// The figures of one source, vertex or sink.
fn add_node(f: &mut Families, node: &NodeFigures) {
    use tandem_core::Role;
    let s = &node.sample;
    let labels = |key: &'static str| {
        let mut l = vec![(key, s.id.clone())];
        if let Some(color) = node.color {
            l.push(("color", color.name().to_owned()));
        }
        l
    };
    let quantiles = |l: Labels| {
        QUANTILES
            .iter()
            .zip(node.recent.latency.unwrap_or([f64::NAN; 3]))
            .map(move |(q, v)| {
                let mut l = l.clone();
                l.push(("quantile", q.to_string()));
                (l, v)
            })
    };
    match s.role {
        Role::Vertex => {
            let l = labels("vertex");
            f.counter(
                "tandem_vertex_records_in",
                "Records a vertex consumed.",
                l.clone(),
                s.records_in,
            );
            f.counter(
                "tandem_vertex_records_out",
                "Records a vertex produced.",
                l.clone(),
                s.records_out,
            );
            f.counter(
                "tandem_vertex_dropped_records",
                "Records the overflow policies of the rings into a vertex dropped.",
                l.clone(),
                s.drops,
            );
            f.gauge(
                "tandem_vertex_ring_high_water_records",
                "Highest occupancy of a ring into a vertex, in records.",
                l.clone(),
                Number::Count(s.high_water),
            );
            for (l, v) in quantiles(l.clone()) {
                f.gauge(
                    "tandem_vertex_latency_seconds",
                    "Seconds per call of a vertex over the last 5 s, at quantiles (NaN with no call).",
                    l,
                    Number::Real(v),
                );
            }
            f.counter(
                "tandem_vertex_calls",
                "Calls of a vertex that had input.",
                l.clone(),
                s.latency.calls,
            );
            f.add(
                "tandem_vertex_busy_seconds",
                "Seconds a vertex spent processing.",
                true,
            )
            .series
            .push((l, Number::Real(s.latency.total_ns as f64 / 1e9)));
        }
        Role::Sink => {
            let l = labels("sink");
            f.counter(
                "tandem_sink_records_in",
                "Records a sink received.",
                l.clone(),
                s.records_in,
            );
            f.counter(
                "tandem_sink_dropped_records",
                "Records the overflow policies of the rings into a sink dropped.",
                l.clone(),
                s.drops,
            );
            f.counter(
                "tandem_sink_errors",
                "Writes a sink failed.",
                l.clone(),
                s.errors,
            );
            f.gauge(
                "tandem_sink_ring_high_water_records",
                "Highest occupancy of a ring into a sink, in records.",
                l.clone(),
                Number::Count(s.high_water),
            );
            for (l, v) in quantiles(l.clone()) {
                f.gauge(
                    "tandem_sink_latency_seconds",
                    "Seconds per write of a sink over the last 5 s, at quantiles (NaN with no write).",
                    l,
                    Number::Real(v),
                );
            }
            f.counter(
                "tandem_sink_calls",
                "Writes of a sink that had input.",
                l,
                s.latency.calls,
            );
        }
        Role::Source => {
            let l = labels("source");
            f.counter(
                "tandem_source_records_out",
                "Records a source produced.",
                l.clone(),
                s.records_out,
            );
            f.counter(
                "tandem_source_errors",
                "Bus errors a source met.",
                l,
                s.errors,
            );
        }
    }
}
