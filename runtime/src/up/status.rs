//! What `tandem status` shows (see [`super::control`] for how it is asked).

use serde_json::{json, Value};
use tandem_core::ha::{Color, Role};

/// One instance, as `tandem status` shows it.
#[derive(Clone, Debug)]
pub struct InstanceStatus {
    /// Which.
    pub color: Color,
    /// Serving, shadow, or starting (also while it is being restarted).
    pub role: Role,
    /// Connected and said hello.
    pub connected: bool,
    /// Its process id.
    pub pid: Option<u32>,
    /// The version it reported.
    pub version: Option<u32>,
    /// Input records it has yet to process, when connected.
    pub lag: Option<u64>,
    /// Output records per second it delivered lately.
    pub records_per_sec: f64,
    /// Times it was restarted.
    pub restarts: u64,
}

/// The agent's state, as `tandem status` shows it.
#[derive(Clone, Debug)]
pub struct Status {
    /// Graph name.
    pub graph: String,
    /// The agent's process id.
    pub agent_pid: u32,
    /// Where the agent listens for instances.
    pub listen: std::net::SocketAddr,
    /// Highest origin sequence number ingested.
    pub head: u64,
    /// Output records emitted toward the sinks.
    pub emitted: u64,
    /// Output pairs compared.
    pub compared: u64,
    /// Outputs that differed between the instances (or had no twin).
    pub divergence: u64,
    /// Blue, then green.
    pub instances: Vec<InstanceStatus>,
    /// The last barrier both instances reported: id, blue's hash, green's.
    pub last_barrier: Option<(u64, u64, u64)>,
    /// Frames refused as malformed.
    pub bad_frames: u64,
    /// Connections refused during the handshake.
    pub refused: u64,
    /// The running upgrade, or `{"phase": "idle"}` with the last outcome.
    pub upgrade: Value,
    /// Each feature toggle and whether it was last switched on.
    pub toggles: Vec<(String, bool)>,
    /// Bundles: installed, floor, installing, revoked, last outcome.
    pub bundles: Value,
    /// Node figures, spools, the metrics endpoint (`nodes`, `spools`,
    /// `metrics`, `build`; docs/metrics.md).
    pub observed: crate::metrics::Observed,
}

impl Status {
    /// The JSON object `tandem status --json` prints.
    pub fn json(&self) -> String {
        let instances: Vec<Value> = self
            .instances
            .iter()
            .map(|i| {
                json!({
                    "color": i.color.name(),
                    "role": i.role.name(),
                    "connected": i.connected,
                    "pid": i.pid,
                    "version": i.version.map(|v| format!("{v:08x}")),
                    "lag": i.lag,
                    "records_per_sec": (i.records_per_sec * 10.0).round() / 10.0,
                    "restarts": i.restarts,
                })
            })
            .collect();
        let barrier = self.last_barrier.map(|(id, blue, green)| {
            json!({
                "id": id,
                "blue": format!("{blue:016x}"),
                "green": format!("{green:016x}"),
                "equal": blue == green,
            })
        });
        let mut status = json!({
            "graph": self.graph,
            "agent_pid": self.agent_pid,
            "listen": self.listen.to_string(),
            "head": self.head,
            "emitted": self.emitted,
            "compared": self.compared,
            "divergence": self.divergence,
            "instances": instances,
            "last_barrier": barrier,
            "bad_frames": self.bad_frames,
            "refused_connections": self.refused,
            "upgrade": self.upgrade,
            "bundles": self.bundles,
            "toggles": self
                .toggles
                .iter()
                .map(|(name, on)| (name.clone(), Value::from(if *on { "on" } else { "off" })))
                .collect::<serde_json::Map<String, Value>>(),
        });
        if let Some(fields) = status.as_object_mut() {
            self.observed.extend(fields);
        }
        status.to_string()
    }

    /// One line for a terminal.
    pub fn line(&self) -> String {
        let parts: Vec<String> = self.instances.iter().map(instance_line).collect();
        let upgrade = match self.upgrade["phase"].as_str() {
            Some("idle") | None => String::new(),
            Some(phase) => format!(" | upgrade: {phase}"),
        };
        format!(
            "{} | {} | divergence {} | emitted {}{upgrade}",
            self.graph,
            parts.join(" | "),
            self.divergence,
            self.emitted
        )
    }
}

fn instance_line(i: &InstanceStatus) -> String {
    match i.lag {
        Some(lag) => format!(
            "{} {} lag {} {:.0} rec/s",
            i.color, i.role, lag, i.records_per_sec
        ),
        None => format!("{} starting", i.color),
    }
}

/// Why `tandem status` cannot show the agent's answer.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The answer is not the status JSON.
    #[error("unreadable status: {0}")]
    Unreadable(#[source] serde_json::Error),
}

/// Renders the JSON status as `tandem status` prints it for people. A
/// refusal is not its to show: [`super::ask::ask_status`] returns it as an
/// error, before there is any JSON to render.
pub fn render(json: &str) -> Result<String, RenderError> {
    let v: Value = serde_json::from_str(json).map_err(RenderError::Unreadable)?;
    let mut out = format!(
        "graph {}  agent pid {}  head {}  emitted {}  compared {}  divergence {}\n",
        v["graph"].as_str().unwrap_or("?"),
        v["agent_pid"],
        v["head"],
        v["emitted"],
        v["compared"],
        v["divergence"]
    );
    out.push_str("instance  role      pid      version   lag       rec/s     restarts\n");
    for i in v["instances"].as_array().into_iter().flatten() {
        let show = |key: &str| match &i[key] {
            Value::Null => "-".to_owned(),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        out.push_str(&format!(
            "{:<9} {:<9} {:<8} {:<9} {:<9} {:<9} {}\n",
            show("color"),
            show("role"),
            show("pid"),
            show("version"),
            show("lag"),
            show("records_per_sec"),
            show("restarts")
        ));
    }
    if let Some(b) = v["last_barrier"].as_object() {
        let equal = b.get("equal").and_then(Value::as_bool).unwrap_or(false);
        out.push_str(&format!(
            "last barrier {}: state hashes {}\n",
            b.get("id").map_or("?".into(), ToString::to_string),
            if equal { "equal" } else { "DIFFER" }
        ));
    }
    if let Some(toggles) = v["toggles"].as_object().filter(|t| !t.is_empty()) {
        let shown: Vec<String> = toggles
            .iter()
            .map(|(name, state)| format!("{name} {}", state.as_str().unwrap_or("?")))
            .collect();
        out.push_str(&format!("toggles: {}\n", shown.join(", ")));
    }
    let upgrade = &v["upgrade"];
    out.push_str(&format!(
        "upgrade: {}",
        upgrade["phase"].as_str().unwrap_or("?")
    ));
    if upgrade["phase"] != "idle" {
        out.push_str(&format!(
            " ({} -> {}, new version on {}): compared {}, mismatched {} (rate {}, noise floor {}, allowed {})",
            upgrade["from"], upgrade["to"], upgrade["new_color"], upgrade["compared"],
            upgrade["mismatched"], upgrade["mismatch_rate"], upgrade["noise_floor"],
            upgrade["max_mismatch"]
        ));
        for difference in upgrade["first_differences"]
            .as_array()
            .into_iter()
            .flatten()
        {
            out.push_str(&format!(
                "\n  differs: {}",
                difference.as_str().unwrap_or("?")
            ));
        }
    } else if let Some(last) = upgrade.get("last").filter(|l| !l.is_null()) {
        out.push_str(&format!("; last: {last}"));
    }
    out.push('\n');
    out.push_str(&bundles_line(&v["bundles"]));
    Ok(out)
}

/// The `bundles:` line of the rendered status (nothing before any install).
fn bundles_line(b: &Value) -> String {
    let show = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let installing = &b["installing"];
    let last = &b["last"];
    if b["installed"].is_null() && installing.is_null() && last.is_null() {
        return String::new();
    }
    let mut line = format!(
        "bundles: installed {}",
        match &b["installed"] {
            Value::Null => "none".to_owned(),
            i => format!("{} {}", show(&i["name"]), show(&i["version"])),
        }
    );
    if !installing.is_null() {
        line.push_str(&format!(
            "; installing {} {}",
            show(&installing["name"]),
            show(&installing["version"])
        ));
    }
    if !last.is_null() {
        line.push_str(&format!(
            "; last: {} {}",
            show(&last["bundle"]),
            show(&last["result"])
        ));
        if let Some(reason) = last["reason"].as_str() {
            line.push_str(&format!(" ({reason})"));
        }
    }
    line.push('\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_that_is_not_the_status_is_unreadable() {
        let said = render("{\"graph\":").err().map(|e| e.to_string());
        assert!(
            said.as_deref()
                .is_some_and(|s| s.starts_with("unreadable status: ")),
            "{said:?}"
        );
    }
}
