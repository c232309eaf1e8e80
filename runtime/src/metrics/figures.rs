//! Node figures as JSON: samples as an instance hands them to the agent,
//! and figures as the status shows them (`"nodes"`), for `tandem top` and
//! the metrics endpoint to read back.

use serde_json::{json, Value};
use tandem_core::ha::Color;
use tandem_core::Role;

use super::live::{LatencySample, NodeSample};
use super::window::Recent;

/// The version of the samples an instance hands the agent. An instance of
/// another release (an upgrade's `--binary`) may answer with another one:
/// the agent then shows no vertex figures for it rather than wrong ones.
pub const SAMPLES_FORMAT: u64 = 1;

/// Role names as the status shows them.
pub fn role_name(role: Role) -> &'static str {
    match role {
        Role::Source => "source",
        Role::Vertex => "vertex",
        Role::Sink => "sink",
    }
}

fn role_of(name: &str) -> Option<Role> {
    match name {
        "source" => Some(Role::Source),
        "vertex" => Some(Role::Vertex),
        "sink" => Some(Role::Sink),
        _ => None,
    }
}

/// `samples` as an instance hands them to the agent.
pub fn samples_json(samples: &[NodeSample]) -> String {
    let nodes: Vec<Value> = samples
        .iter()
        .map(|s| {
            json!({
                "id": s.id,
                "role": role_name(s.role),
                "in": s.records_in,
                "out": s.records_out,
                "errors": s.errors,
                "drops": s.drops,
                "high_water": s.high_water,
                "calls": s.latency.calls,
                "total_ns": s.latency.total_ns,
                "buckets": s.latency.buckets,
            })
        })
        .collect();
    json!({ "format": SAMPLES_FORMAT, "nodes": nodes }).to_string()
}

/// Reads what [`samples_json`] wrote; `None` for anything else.
pub fn parse_samples(text: &str) -> Option<Vec<NodeSample>> {
    let v: Value = serde_json::from_str(text).ok()?;
    if v["format"].as_u64() != Some(SAMPLES_FORMAT) {
        return None;
    }
    let count = |n: &Value, key: &str| n[key].as_u64();
    v["nodes"]
        .as_array()?
        .iter()
        .map(|n| {
            let buckets = n["buckets"]
                .as_array()?
                .iter()
                .map(|pair| {
                    let index = u16::try_from(pair.get(0)?.as_u64()?).ok()?;
                    Some((index, pair.get(1)?.as_u64()?))
                })
                .collect::<Option<Vec<_>>>()?;
            // From another process (perhaps another release): the buckets
            // must be ours, in order, or the answer is not used.
            let ordered = buckets.windows(2).all(|w| w[0].0 < w[1].0);
            let known = buckets
                .iter()
                .all(|&(i, _)| usize::from(i) < crate::metrics::live::BUCKETS);
            if !(ordered && known) {
                return None;
            }
            Some(NodeSample {
                id: n["id"].as_str()?.to_owned(),
                role: role_of(n["role"].as_str()?)?,
                records_in: count(n, "in")?,
                records_out: count(n, "out")?,
                errors: count(n, "errors")?,
                drops: count(n, "drops")?,
                high_water: count(n, "high_water")?,
                latency: LatencySample {
                    calls: count(n, "calls")?,
                    total_ns: count(n, "total_ns")?,
                    buckets,
                },
            })
        })
        .collect()
}

/// One node's figures as the status shows them: a source or sink of the
/// agent (no colour), or a vertex of one instance.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeFigures {
    /// The instance it runs in; `None` for the agent's sources and sinks.
    pub color: Option<Color>,
    /// The figures as sampled.
    pub sample: NodeSample,
    /// Rates and latency of the last few seconds.
    pub recent: Recent,
}

impl NodeFigures {
    /// As the status's `"nodes"` shows it.
    pub fn json(&self) -> Value {
        let s = &self.sample;
        let latency = self
            .recent
            .latency
            .map(|[p50, p99, p999]| json!({ "p50": p50, "p99": p99, "p999": p999 }));
        json!({
            "id": s.id,
            "role": role_name(s.role),
            "color": self.color.map(Color::name),
            "records_in": s.records_in,
            "records_out": s.records_out,
            "errors": s.errors,
            "drops": s.drops,
            "high_water": s.high_water,
            "in_per_sec": round(self.recent.in_per_sec),
            "out_per_sec": round(self.recent.out_per_sec),
            "calls": s.latency.calls,
            "busy_seconds": s.latency.total_ns as f64 / 1e9,
            "latency_seconds": latency,
        })
    }

    /// Reads what [`NodeFigures::json`] wrote (bucket counts are not shown).
    pub fn parse(v: &Value) -> Option<NodeFigures> {
        let count = |key: &str| v[key].as_u64();
        let color = match v["color"].as_str() {
            None => None,
            Some("blue") => Some(Color::Blue),
            Some("green") => Some(Color::Green),
            Some(_) => return None,
        };
        let l = &v["latency_seconds"];
        let latency = match (l["p50"].as_f64(), l["p99"].as_f64(), l["p999"].as_f64()) {
            (Some(a), Some(b), Some(c)) => Some([a, b, c]),
            _ => None,
        };
        Some(NodeFigures {
            color,
            sample: NodeSample {
                id: v["id"].as_str()?.to_owned(),
                role: role_of(v["role"].as_str()?)?,
                records_in: count("records_in")?,
                records_out: count("records_out")?,
                errors: count("errors")?,
                drops: count("drops")?,
                high_water: count("high_water")?,
                latency: LatencySample {
                    calls: count("calls")?,
                    total_ns: (v["busy_seconds"].as_f64()? * 1e9).round() as u64,
                    buckets: Vec::new(),
                },
            },
            recent: Recent {
                in_per_sec: v["in_per_sec"].as_f64()?,
                out_per_sec: v["out_per_sec"].as_f64()?,
                latency,
            },
        })
    }
}

fn round(rate: f64) -> f64 {
    (rate * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn sample() -> NodeSample {
        NodeSample {
            id: "soc".into(),
            role: Role::Vertex,
            records_in: 10,
            records_out: 9,
            errors: 0,
            drops: 1,
            high_water: 4,
            latency: LatencySample {
                calls: 3,
                total_ns: 3_000,
                buckets: vec![(70, 2), (71, 1)],
            },
        }
    }

    #[test]
    fn samples_read_back_as_written_and_another_format_is_refused() {
        let text = samples_json(&[sample()]);
        assert_eq!(parse_samples(&text), Some(vec![sample()]));
        let other = text.replace("\"format\":1", "\"format\":2");
        assert_eq!(parse_samples(&other), None);
        assert_eq!(parse_samples("not json"), None);
    }

    #[test]
    fn buckets_this_build_does_not_have_or_out_of_order_are_refused() {
        let text = samples_json(&[sample()]);
        assert!(text.contains("[70,2],[71,1]"), "{text}");
        let beyond = text.replace("[71,1]", "[600,1]");
        assert_eq!(parse_samples(&beyond), None);
        let backwards = text.replace("[70,2],[71,1]", "[71,1],[70,2]");
        assert_eq!(parse_samples(&backwards), None);
    }

    #[test]
    fn figures_read_back_as_the_status_shows_them() {
        let figures = NodeFigures {
            color: Some(Color::Green),
            sample: NodeSample {
                latency: LatencySample {
                    buckets: Vec::new(),
                    ..sample().latency
                },
                ..sample()
            },
            recent: Recent {
                in_per_sec: 12.5,
                out_per_sec: 3.0,
                latency: Some([1e-6, 2e-6, 3e-6]),
            },
        };
        assert_eq!(NodeFigures::parse(&figures.json()), Some(figures));
    }
}
