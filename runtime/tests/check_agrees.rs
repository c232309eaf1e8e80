//! `tandem check` and `tandem run` agree: what one refuses the other refuses,
//! with the same `FILE:LINE:COL: error:` message saying what would be
//! valid, and what `check` accepts can be built.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tandem_core::param::format_duration;
use tandem_core::{BuildContext, Builder, ParamDefault, ParamType, Role};

fn tandem() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tandem"))
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tandem-agree-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A synthetic source `s` with channels `a` and `b`, then `nodes`.
fn graph(nodes: &str) -> String {
    format!("[sources.s]\nkind = \"synthetic\"\nchannels = [\"a\", \"b\"]\n\n{nodes}")
}

/// Writes `text` to `dir/name.toml` and asserts that `tandem check` exits 1
/// with exactly the diagnostic `FILE:at: error: message`, and that `tandem
/// run` refuses the file with the same line before running anything.
fn refused(dir: &Path, name: &str, text: &str, at: &str, message: &str) {
    let file = dir.join(format!("{name}.toml"));
    std::fs::write(&file, text).unwrap();
    let expected = format!("{}:{at}: error: {message}", file.display());

    let check = tandem().arg("check").arg(&file).output().unwrap();
    assert_eq!(check.status.code(), Some(1), "{name}: {}", stderr(&check));
    let said = stderr(&check);
    assert_eq!(
        said.lines().collect::<Vec<_>>(),
        [expected.as_str()],
        "{name}"
    );

    let run = tandem()
        .arg("run")
        .arg(&file)
        .args(["--clock", "virtual", "--for", "1m"])
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(1), "{name}: {}", stderr(&run));
    let said = stderr(&run);
    assert!(
        said.lines().any(|l| l == expected),
        "{name}: run said\n{said}\nexpected\n{expected}"
    );
    assert!(!said.contains("running"), "{name}: run started\n{said}");
}

const SINK: &str = "[sinks.out]\nkind = \"count\"\ninputs = [\"v\"]\n";

#[test]
fn a_window_whose_slide_does_not_divide_its_size_is_refused_at_the_slide() {
    let dir = scratch("window");
    let text = graph(&format!(
        "[vertices.v]\nkind = \"window\"\ninputs = [\"s.a\"]\nmode = \"sliding\"\nsize = \"15m\"\nslide = \"7m\"\n\n{SINK}"
    ));
    refused(
        &dir,
        "slide",
        &text,
        "10:9",
        "vertex `v`: `slide` (7m) must divide `size` (15m) evenly, such as size \"15m\" with slide \"1m\"",
    );
    // Far too many panes: the message names a slide that would do.
    let text = graph(&format!(
        "[vertices.v]\nkind = \"window\"\ninputs = [\"s.a\"]\nmode = \"sliding\"\nsize = \"1h\"\nslide = \"1s\"\n\n{SINK}"
    ));
    refused(
        &dir,
        "panes",
        &text,
        "10:9",
        "vertex `v`: `size / slide` is 3600 panes, more than the 256 a window keeps; use a longer `slide` that divides `size`, such as \"15s\"",
    );
    // A sliding window with no slide at all: at the mode that asks for one.
    let text = graph(&format!(
        "[vertices.v]\nkind = \"window\"\ninputs = [\"s.a\"]\nmode = \"sliding\"\nsize = \"1h\"\n\n{SINK}"
    ));
    refused(
        &dir,
        "no_slide",
        &text,
        "8:8",
        "vertex `v`: a sliding window needs `slide`, the time between window ends (such as \"1m\")",
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_range_check_with_min_above_max_is_refused_at_min() {
    let dir = scratch("range");
    let text = graph(&format!(
        "[vertices.v]\nkind = \"range_check\"\ninputs = [\"s.a\"]\nmin = 10\nmax = 5\n\n{SINK}"
    ));
    refused(
        &dir,
        "range",
        &text,
        "8:7",
        "vertex `v`: `min` (10) is above `max` (5); swap them",
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_threshold_that_clears_beyond_its_raise_level_is_refused_at_clear() {
    let dir = scratch("threshold");
    let above = graph(&format!(
        "[vertices.v]\nkind = \"threshold\"\ninputs = [\"s.a\"]\nraise = 10\nclear = 20\n\n{SINK}"
    ));
    refused(
        &dir,
        "above",
        &above,
        "9:9",
        "vertex `v`: `clear` (20) must be at most `raise` (10) for an alarm above; lower `clear` or set `direction = \"below\"`",
    );
    let below = graph(&format!(
        "[vertices.v]\nkind = \"threshold\"\ninputs = [\"s.a\"]\ndirection = \"below\"\nraise = 10\nclear = 5\n\n{SINK}"
    ));
    refused(
        &dir,
        "below",
        &below,
        "10:9",
        "vertex `v`: `clear` (5) must be at least `raise` (10) for an alarm below; raise `clear` or set `direction = \"above\"`",
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn values_a_kind_refuses_only_when_built_are_refused_by_check() {
    let dir = scratch("huge");
    // Within the declared range of `alpha`, but an average that never moves.
    let text = graph(&format!(
        "[vertices.v]\nkind = \"ewma\"\ninputs = [\"s.a\"]\nalpha = 0\n\n{SINK}"
    ));
    refused(
        &dir,
        "alpha",
        &text,
        "8:9",
        "vertex `v`: `alpha = 0` would never move the average; use a value above 0 and at most 1",
    );
    // A rate whose polls would each hold two million records.
    let text = "[sources.s]\nkind = \"synthetic\"\nchannels = [\"a\", \"b\"]\nrate = 1e9\n\n[sinks.out]\nkind = \"count\"\ninputs = [\"s.*\"]\n";
    refused(
        &dir,
        "rate",
        text,
        "4:8",
        "`s`: 2 channels x batch 1000000 is 2000000 records per poll; at most 1048576: lower `batch` (or `rate`, which sets it when `batch` is 0)",
    );
    // A window longer than any a kind takes: refused by the declared range.
    let text = graph(&format!(
        "[vertices.v]\nkind = \"window\"\ninputs = [\"s.a\"]\nsize = \"100000h\"\n\n{SINK}"
    ));
    refused(
        &dir,
        "size",
        &text,
        "8:8",
        "parameter `size` of `window` must be a duration from 1ns to 8784h (such as \"500ms\", \"5s\", \"2m\", \"1h\"), got \"100000h\"",
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sources_and_sinks_are_checked_without_opening_anything() {
    let dir = scratch("edges");
    let count = |inputs: &str| format!("[sinks.out]\nkind = \"count\"\ninputs = [\"{inputs}\"]\n");
    let toggles = format!(
        "[sources.t]\nkind = \"toggles\"\nnames = [\"boost\"]\non = [\"bost\"]\n\n{}",
        count("t.*")
    );
    refused(
        &dir,
        "toggles",
        &toggles,
        "1:10",
        "`t`: `on` names `bost`, which is not in `names` (boost)",
    );
    let rtd = format!(
        "[sources.r]\nkind = \"max31865\"\nsensor = \"pt1000\"\nr_ref = 500\n\n{}",
        count("r.*")
    );
    refused(
        &dir,
        "rtd",
        &rtd,
        "4:9",
        "`r`: r_ref 500 ohm must be above the sensor's R0 of 1000 ohm",
    );
    // A fault injected into a real chip: refused before the bus is opened.
    let pack = format!(
        "[sources.b]\nkind = \"sbs_battery\"\nbus = \"i2c:/dev/i2c-1\"\ninject = \"nack\"\n\n{}",
        count("b.*")
    );
    refused(
        &dir,
        "inject",
        &pack,
        "4:10",
        "`b`: faults can only be injected into a simulated chip: set inject = \"none\" or bus = \"sim\"",
    );
    // An unknown point: refused before the poller connects.
    let meter = format!(
        "[sources.m]\nkind = \"modbus.sdm120\"\naddress = \"127.0.0.1:1\"\npoints = [\"voltage\", \"volts\"]\n\n{}",
        count("m.*")
    );
    refused(
        &dir,
        "points",
        &meter,
        "4:10",
        "`m`: `volts` is not a point of eastron-sdm120; points: voltage, current, power, apparent_power, reactive_power, power_factor, frequency, import_energy, export_energy, total_energy",
    );
    let contacts = graph(
        "[sinks.hp]\nkind = \"sg_ready\"\ninputs = [\"s.a\"]\npins = \"gpio:/dev/gpiochip0:17\"\n",
    );
    refused(
        &dir,
        "pins",
        &contacts,
        "8:8",
        "`hp`: pins \"gpio:/dev/gpiochip0:17\" are not contacts: use \"sim\" or \"gpio:/dev/gpiochip0:17,27\" (chip, then the lines of contact 1 and 2)",
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn every_error_of_a_file_is_reported_together() {
    let dir = scratch("together");
    let text = graph(
        "[vertices.v]\nkind = \"range_check\"\ninputs = [\"s.a\"]\nmin = 10\nmax = 5\n\n\
         [vertices.w]\nkind = \"threshold\"\ninputs = [\"s.b\"]\nraise = 1\nclear = 2\n\n\
         [vertices.x]\nkind = \"ewma\"\ninputs = [\"s.nope\"]\nalpha = 0.5\n\n\
         [sinks.out]\nkind = \"count\"\ninputs = [\"v\", \"w\", \"x\"]\n",
    );
    let file = dir.join("together.toml");
    std::fs::write(&file, text).unwrap();
    let check = tandem().arg("check").arg(&file).output().unwrap();
    assert_eq!(check.status.code(), Some(1));
    let said = stderr(&check);
    let at: Vec<&str> = said
        .lines()
        .map(|l| l.split(": error: ").next().unwrap_or(""))
        .map(|l| l.rsplit_once(".toml:").map_or("", |(_, at)| at))
        .collect();
    assert_eq!(at, ["8:7", "15:9", "19:11"], "{said}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Values to try for one parameter, as TOML: its bounds, points inside, and
/// each choice.
fn samples(name: &str, ty: ParamType) -> Vec<String> {
    match ty {
        ParamType::Float { min, max } => {
            let mut v = vec![min, max, min / 2.0 + max / 2.0, -1.0, 0.0, 1.0, 1e6];
            v.retain(|x| (min..=max).contains(x));
            v.iter().map(|x| format!("{x:?}")).collect()
        }
        ParamType::Int { min, max } => {
            let mut v = vec![min, max, min / 2 + max / 2, 0, 1, 2, 3];
            v.retain(|x| (min..=max).contains(x));
            v.iter().map(i64::to_string).collect()
        }
        ParamType::Bool => vec!["true".into(), "false".into()],
        ParamType::Duration { min_ns, max_ns } => {
            let mut v = vec![min_ns, max_ns, min_ns / 2 + max_ns / 2, 1_000_000_000, 7];
            v.retain(|x| (min_ns..=max_ns).contains(x));
            v.iter()
                .map(|ns| format!("\"{}\"", format_duration(*ns)))
                .collect()
        }
        ParamType::Choice(options) => options.iter().map(|o| format!("\"{o}\"")).collect(),
        // Devices on their simulated buses; any other text is a name or a key.
        ParamType::Text if name == "bus" || name == "pins" => vec!["\"sim\"".into()],
        ParamType::Text if name == "address" => vec!["\"127.0.0.1:502\"".into()],
        ParamType::Text => vec!["\"x\"".into()],
        ParamType::Names => vec!["[\"a\"]".into(), "[\"a\", \"b\"]".into()],
    }
}

/// Kinds whose builders open files or connect (the `mqtt` sink reads its
/// TLS files, makes its spool and dials its broker): their check is tried,
/// their build is not.
fn opens_something(kind: &str) -> bool {
    matches!(kind, "csv" | "file" | "mqtt") || kind.starts_with("modbus.")
}

#[test]
fn whatever_check_accepts_every_kind_builds() {
    let registry = tandem_nodes::registry();
    // A fixed-seed generator: the same parameter sets on every run.
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    };
    for kind in registry.kinds() {
        let (mut accepted, mut refused) = (0, 0);
        for _ in 0..200 {
            let mut params = String::new();
            for p in kind.params {
                let values = samples(p.name, p.ty);
                // Optional parameters (and those with defaults) are left out at times.
                let skip = p.default != ParamDefault::Required && next(3) == 0;
                if values.is_empty() || skip {
                    continue;
                }
                params.push_str(&format!("{} = {}\n", p.name, values[next(values.len())]));
            }
            let text = match kind.role() {
                Role::Source => format!(
                    "[sources.n]\nkind = \"{}\"\n{params}\n[sinks.out]\nkind = \"count\"\ninputs = [\"n.*\"]\n",
                    kind.name
                ),
                Role::Vertex => {
                    let reads = kind.arity.min.max(1);
                    let channels: Vec<String> = (0..reads).map(|i| format!("\"c{i}\"")).collect();
                    let inputs: Vec<String> = (0..reads).map(|i| format!("\"s.c{i}\"")).collect();
                    format!(
                        "[sources.s]\nkind = \"synthetic\"\nchannels = [{}]\n\n[vertices.n]\nkind = \"{}\"\nversion = {}\ninputs = [{}]\n{params}\n[sinks.out]\nkind = \"count\"\ninputs = [\"n.*\"]\n",
                        channels.join(", "),
                        kind.name,
                        kind.version,
                        inputs.join(", ")
                    )
                }
                Role::Sink => format!(
                    "[sources.s]\nkind = \"synthetic\"\n\n[sinks.n]\nkind = \"{}\"\ninputs = [\"s.value\"]\n{params}",
                    kind.name
                ),
            };
            let loaded = match tandem_core::graph::load("g.toml", text.as_bytes(), &registry) {
                Ok(loaded) => loaded,
                Err(_) => {
                    refused += 1;
                    continue;
                }
            };
            accepted += 1;
            if opens_something(kind.name) {
                continue;
            }
            let plan = loaded.plan;
            for node in plan.nodes.iter().filter(|n| n.id == "n") {
                let ctx = BuildContext {
                    id: &node.id,
                    params: &node.params,
                    inputs: &node.inputs,
                    outputs: &node.outputs,
                    channels: &plan.channels,
                };
                let built = match node.kind.build {
                    Builder::Source(build) => build(&ctx).map(drop),
                    Builder::Vertex(build) => build(&ctx).map(drop),
                    Builder::Sink(build) => build(&ctx).map(drop),
                };
                if let Err(e) = built {
                    panic!(
                        "`{}` v{}: check accepted a file that cannot be built: {e}\n{text}",
                        kind.name, kind.version
                    );
                }
            }
        }
        assert!(
            accepted > 0,
            "`{}` v{}: no sample was accepted ({refused} refused)",
            kind.name,
            kind.version
        );
    }
}

#[test]
fn a_csv_source_with_no_channels_is_refused_by_check_as_by_run() {
    let dir = scratch("csv-channels");
    let csv = dir.join("in.csv");
    std::fs::write(&csv, "time,channel,value\n").unwrap();
    let text = graph(&format!(
        "[sources.c]\nkind = \"csv\"\npath = \"{}\"\nchannels = []\n\n[sinks.out]\nkind = \"count\"\ninputs = [\"s.a\"]\n",
        csv.display()
    ));
    refused(
        &dir,
        "csv",
        &text,
        "8:12",
        "`c`: `channels` is empty; name the channels the file's `channel` column holds, such as [\"soc\", \"power\"]",
    );
}
