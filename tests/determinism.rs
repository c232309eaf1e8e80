//! A replayed input through the same graph on different worker layouts gives
//! byte-identical sink output.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;
use tandem::{Clock, RunOptions, Topology};
use tandem_core::{graph, EventTime, Layout};

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tandem-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn graph_text(replay: &Path, out: &Path) -> String {
    format!(
        r#"
[graph]
name = "replay"

[sources.home]
kind = "csv"
path = "{replay}"
channels = ["power", "voltage", "current", "temperature"]

[vertices.power_kw]
kind = "scale"
inputs = ["home.power"]
factor = 0.001

[vertices.voltage_ok]
kind = "range_check"
inputs = ["home.voltage"]
min = 40.0
max = 60.0

[vertices.power_changes]
kind = "deadband"
inputs = ["power_kw"]
band = 0.05

[vertices.smooth]
kind = "ewma"
inputs = ["power_changes"]
alpha = 0.2

[vertices.energy]
kind = "integrate"
inputs = ["home.power"]
per = "h"

[vertices.minute_mean]
kind = "window"
inputs = ["home.power"]
mode = "tumbling"
size = "1m"
agg = "mean"

[vertices.computed_power]
kind = "join"
inputs = ["voltage_ok", "home.current"]
tolerance = "1s"
op = "mul"

[vertices.temp_stale]
kind = "stale"
inputs = ["home.temperature", "home.power"]
timeout = "30s"

[sinks.out]
kind = "file"
inputs = ["smooth", "energy", "minute_mean", "computed_power", "temp_stale", "home.voltage"]
path = "{out}"
format = "jsonl"
"#,
        replay = replay.display(),
        out = out.display()
    )
}

fn run(layout: Layout, batch: usize, dir: &Path) -> Vec<u8> {
    let replay = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/home-replay.csv");
    let out = dir.join(format!("{}-{batch}.jsonl", layout.name()));
    let text = graph_text(&replay, &out);
    let registry = tandem_nodes::registry();
    let loaded = match graph::load("replay.toml", text.as_bytes(), &registry) {
        Ok(l) => l,
        Err(d) => panic!("invalid graph:\n{d}"),
    };
    let plan = loaded.plan.relayout(layout).unwrap();
    let options = RunOptions {
        clock: Clock::Virtual {
            start: EventTime::from_secs(1_767_225_600),
            speed: None,
        },
        span: None,
        hold_at_end: false,
        batch,
    };
    let topology = Topology::start(&plan, options).unwrap();
    assert!(
        topology.wait_timeout(Duration::from_secs(120)),
        "replay did not finish"
    );
    topology.join().unwrap();
    std::fs::read(&out).unwrap()
}

#[test]
fn replay_is_byte_identical_on_every_layout() {
    let dir = scratch_dir("determinism");
    let reference = run(Layout::Single, 1024, &dir);
    let lines = reference
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .count();
    assert!(lines > 10_000, "the replay produced only {lines} lines");
    let text = String::from_utf8(reference.clone()).unwrap();
    assert!(
        text.contains("out_of_range"),
        "the voltage glitch was not flagged"
    );
    assert!(
        text.contains("stale"),
        "the temperature gap was not detected"
    );
    for (layout, batch) in [
        (Layout::Chains, 1024),
        (Layout::Spread, 1024),
        (Layout::Spread, 7),
        (Layout::Chains, 1),
    ] {
        let got = run(layout, batch, &dir);
        assert!(
            got == reference,
            "layout {} with batch {batch} wrote different bytes than layout single",
            layout.name()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
