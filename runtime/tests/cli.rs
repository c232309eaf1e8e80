//! The `tandem` command as a user runs it.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

fn tandem() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tandem"));
    cmd.current_dir(repo());
    cmd
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tandem-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A graph replaying tests/data/home-replay.csv into an energy integrator
/// and a sink of kind `sink`, written to `dir/replay.toml`.
fn replay_graph(dir: &Path, sink: &str) -> PathBuf {
    let file = dir.join("replay.toml");
    std::fs::write(
        &file,
        format!(
            r#"[graph]
name = "replay"

[sources.home]
kind = "csv"
path = "{}"
channels = ["power", "voltage", "current", "temperature"]

[vertices.energy]
kind = "integrate"
inputs = ["home.power"]
per = "h"

[sinks.out]
kind = "{sink}"
inputs = ["energy"]
"#,
            repo().join("tests/data/home-replay.csv").display()
        ),
    )
    .unwrap();
    file
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn check_prints_the_plan_of_a_valid_graph() {
    let out = run(tandem().args(["check", "graphs/home.toml"]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("graphs/home.toml: ok"), "{stdout}");
    assert!(stdout.contains("worker 0 (ingress):"), "{stdout}");
    assert!(stdout.contains("rings:"), "{stdout}");
}

#[test]
fn check_reports_every_error_with_its_position_and_exits_1() {
    let dir = scratch("invalid");
    let file = dir.join("bad.toml");
    std::fs::write(
        &file,
        r#"[sources.meter]
kind = "synthetic"
channels = ["power"]

[vertices.smooth]
kind = "ewm"
inputs = ["meter.power"]

[vertices.scaled]
kind = "scale"
inputs = ["meter.powr"]
factor = "two"
"#,
    )
    .unwrap();
    let out = run(tandem().arg("check").arg(&file));
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    let shown = file.display().to_string();
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(lines.len() >= 3, "expected three errors:\n{stderr}");
    for line in &lines {
        assert!(line.starts_with(&format!("{shown}:")), "{line}");
        assert!(line.contains(": error: "), "{line}");
    }
    assert!(stderr.contains(&format!("{shown}:6:8: error:")), "{stderr}");
    assert!(
        stderr.contains("`ewma`"),
        "nearest kind not named:\n{stderr}"
    );
    assert!(
        stderr.contains("meter.power"),
        "existing output not named:\n{stderr}"
    );
    assert!(
        stderr.contains("factor"),
        "bad parameter not named:\n{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn check_exits_2_on_an_unreadable_file_and_1_on_binary_garbage() {
    let out = run(tandem().args(["check", "graphs/no-such-graph.toml"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("no-such-graph.toml"));

    let dir = scratch("binary");
    let file = dir.join("garbage.toml");
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&file, garbage).unwrap();
    let out = run(tandem().arg("check").arg(&file));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("error:"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn run_replays_on_the_virtual_clock_and_prints_stats() {
    let dir = scratch("replay");
    let file = replay_graph(&dir, "stdout");
    let out = run(tandem().arg("run").arg(&file).args(["--clock", "virtual"]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert_eq!(
        stdout.lines().count(),
        3600,
        "one energy total per power sample"
    );
    let last = stdout.lines().last().unwrap();
    assert!(last.contains("\"channel\":\"energy\""), "{last}");
    let stderr = text(&out.stderr);
    for column in ["node", "in", "out", "drops", "hwm", "p50", "p99", "p999"] {
        assert!(stderr.contains(column), "stats lack `{column}`:\n{stderr}");
    }
    assert!(stderr.contains("energy"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Waits for `child` to exit, at most `bound`.
fn wait_exit(mut child: Child, bound: Duration) -> (Option<i32>, String) {
    let mut stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut err = String::new();
        let _ = stderr.read_to_string(&mut err);
        let status = child.wait().unwrap();
        let _ = tx.send((status.code(), err));
    });
    rx.recv_timeout(bound).expect("tandem did not exit in time")
}

#[test]
fn ctrl_c_drains_flushes_and_exits_0() {
    let mut child = tandem()
        .args(["run", "graphs/home.toml"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until records flow: the first output line, with a bound.
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let first = lines.next().and_then(Result::ok);
        let _ = tx.send(first);
        let rest: Vec<String> = lines.map_while(Result::ok).collect();
        rest.len()
    });
    let first = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("no output within 30 s");
    assert!(first.unwrap_or_default().starts_with("{\"seq\":"));
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let (code, stderr) = wait_exit(child, Duration::from_secs(30));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("stopping"), "{stderr}");
    assert!(stderr.contains("battery_soc"), "no stats table:\n{stderr}");
}

#[test]
fn run_reports_every_node_that_cannot_be_built() {
    let dir = scratch("unbuildable");
    let file = dir.join("missing.toml");
    std::fs::write(
        &file,
        r#"[sources.first]
kind = "csv"
path = "/nonexistent/first.csv"
channels = ["power"]

[sources.second]
kind = "csv"
path = "/nonexistent/second.csv"
channels = ["power"]

[sinks.out]
kind = "stdout"
inputs = ["first.power", "second.power"]
"#,
    )
    .unwrap();
    let out = run(tandem().arg("run").arg(&file));
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("/nonexistent/first.csv"), "{stderr}");
    assert!(stderr.contains("/nonexistent/second.csv"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

const METER: &str = r#"[graph]
name = "meter"

[sources.meter]
kind = "synthetic"
channels = ["power"]
rate = 100
shape = "constant"
amplitude = 1000

[vertices.energy]
kind = "integrate"
inputs = ["meter.power"]
per = "s"

[sinks.out]
kind = "stdout"
inputs = ["energy"]
"#;

/// Origin sequence numbers of the checkpoints a run reports on stderr.
fn checkpoint_seqs(stderr: &str) -> Vec<u64> {
    stderr
        .lines()
        .filter_map(|l| l.strip_prefix("tandem: checkpoint "))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect()
}

#[test]
fn after_sigkill_state_resumes_from_the_last_good_checkpoint() {
    let dir = scratch("sigkill");
    let graph = dir.join("meter.toml");
    std::fs::write(&graph, METER).unwrap();
    let state = dir.join("state");
    let mut child = tandem()
        .arg("run")
        .arg(&graph)
        .arg("--state-dir")
        .arg(&state)
        .args(["--checkpoint-every", "100ms"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for three checkpoints, then kill without warning.
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.starts_with("tandem: checkpoint ") && tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    while seen.len() < 3 {
        seen.push(
            rx.recv_timeout(Duration::from_secs(30))
                .expect("no checkpoint within 30 s"),
        );
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let seqs = checkpoint_seqs(&seen.join("\n"));
    assert_eq!(seqs.len(), 3, "{seen:?}");

    // Tear the newest checkpoint, as a power cut mid-write could.
    let mut files: Vec<PathBuf> = std::fs::read_dir(&state)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "tdc"))
        .collect();
    files.sort();
    let newest = files.last().unwrap().clone();
    let bytes = std::fs::read(&newest).unwrap();
    std::fs::write(&newest, &bytes[..bytes.len() / 2]).unwrap();
    let previous = files[files.len() - 2].clone();
    let previous_seq: u64 = previous
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .trim_start_matches("ckpt-")
        .parse()
        .unwrap();

    // Numbers up to the mark may have reached the sinks before the kill.
    let mark = tandem::checkpoint::numbering::decode(
        &std::fs::read(state.join(tandem::checkpoint::numbering::FILE_NAME)).unwrap(),
    )
    .unwrap();

    let out = run(tandem()
        .arg("run")
        .arg(&graph)
        .arg("--state-dir")
        .arg(&state)
        .args(["--for", "300ms"]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("is truncated"),
        "the torn checkpoint was not refused:\n{stderr}"
    );
    assert!(
        stderr.contains(&format!("resuming from {}", previous.display())),
        "did not fall back to the previous checkpoint:\n{stderr}"
    );
    let first = text(&out.stdout).lines().next().unwrap().to_owned();
    let record: serde_json::Value = serde_json::from_str(&first).unwrap();
    assert!(
        record["seq"].as_u64().is_some_and(|seq| seq > mark.0),
        "numbering goes on above the mark {}, never reusing a number: {first}",
        mark.0
    );
    // 100 samples a second of 1000 W: by the checkpoint the total was about
    // 10 J per sample; a fresh integrator would start at 0.
    let energy = record["value"].as_f64().unwrap();
    assert!(
        energy >= 10.0 * (previous_seq - 1) as f64 * 0.9,
        "energy restarted instead of resuming: {first}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_reader_that_stops_early_ends_the_command_quietly() {
    for args in [&["kinds"][..], &["check", "graphs/home.toml"][..]] {
        let mut child = tandem()
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Read one line, then hang up, as `| head -1` does.
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        assert!(!first.is_empty());
        let (code, stderr) = wait_exit(child, Duration::from_secs(30));
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(
            matches!(code, Some(0) | Some(141)),
            "{args:?}: exit {code:?}"
        );
    }
}

#[test]
fn a_state_directory_belongs_to_one_graph_and_one_run() {
    let dir = scratch("statedir");
    let meter = dir.join("meter.toml");
    std::fs::write(&meter, METER).unwrap();
    let other = dir.join("other.toml");
    std::fs::write(
        &other,
        METER.replace("name = \"meter\"", "name = \"other\""),
    )
    .unwrap();
    let state = dir.join("state");
    let first = run(tandem()
        .arg("run")
        .arg(&meter)
        .arg("--state-dir")
        .arg(&state)
        .args(["--for", "300ms"]));
    assert_eq!(first.status.code(), Some(0), "{}", text(&first.stderr));

    // Another graph is refused before it can prune the first one's checkpoints.
    let foreign = run(tandem()
        .arg("run")
        .arg(&other)
        .arg("--state-dir")
        .arg(&state)
        .args(["--for", "300ms"]));
    assert_eq!(foreign.status.code(), Some(2));
    assert!(text(&foreign.stderr).contains("holds checkpoints of graph `meter`, not `other`"));

    // A second run on a directory in use is refused while the first holds it.
    let mut holder = tandem()
        .arg("run")
        .arg(&meter)
        .arg("--state-dir")
        .arg(&state)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut started = String::new();
    let mut err = BufReader::new(holder.stderr.take().unwrap());
    while !started.contains("Ctrl-C stops") {
        started.clear();
        assert!(
            err.read_line(&mut started).unwrap() > 0,
            "the first run ended early"
        );
    }
    let second = run(tandem()
        .arg("run")
        .arg(&meter)
        .arg("--state-dir")
        .arg(&state)
        .args(["--for", "300ms"]));
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert_eq!(second.status.code(), Some(2));
    assert!(text(&second.stderr).contains("another tandem is running on this state directory"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_replay_that_ends_on_its_own_checkpoints_everything_it_read() {
    let dir = scratch("replay-state");
    let graph = replay_graph(&dir, "count");
    let child = tandem()
        .arg("run")
        .arg(&graph)
        .args(["--clock", "virtual", "--state-dir"])
        .arg(dir.join("state"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (code, stderr) = wait_exit(child, Duration::from_secs(60));
    assert_eq!(code, Some(0), "{stderr}");
    // The file holds 14300 rows: the last checkpoint covers every one.
    assert_eq!(checkpoint_seqs(&stderr).last(), Some(&14_300), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_instance_whose_agent_is_already_gone_exits_and_says_so() {
    // The agent gives its pid; a parent that is not that agent means the
    // agent ended before the instance could arrange to die with it.
    let dir = scratch("orphan");
    let not_the_parent = std::process::id().wrapping_add(1).to_string();
    let out = run(tandem()
        .args(["instance", "--color", "blue", "--agent", "127.0.0.1:9"])
        .arg("--state-dir")
        .arg(&dir)
        .arg("graphs/home.toml")
        .env("TANDEM_AGENT_PID", &not_the_parent));
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "exited {}: {stderr}", out.status);
    assert!(
        stderr.contains(&format!(
            "the agent that started this instance (pid {not_the_parent}) is gone"
        )),
        "{stderr}"
    );
}
