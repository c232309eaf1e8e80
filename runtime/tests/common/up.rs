//! The energy graph under `tandem up` (tandem::harness runs it): a
//! synthetic constant power, calibrated and integrated, with what reaches
//! the sink checked record by record.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

use tandem::harness::Agent as _;
use tandem::harness::{Launcher, Scratch};

/// The power the synthetic source reads, in W.
pub const POWER_W: f64 = 1000.0;

/// The test's directory and the sink's file, before the agent starts.
pub struct Files {
    pub dir: PathBuf,
    pub out: PathBuf,
}

/// `tandem up` on a graph in a directory of its own (removed when the test
/// passes); the agent is killed on drop.
pub struct Up {
    // Declared first: killed before the directory goes.
    agent: tandem::harness::Up,
    files: Files,
    scratch: Scratch,
    pub dir: PathBuf,
    pub out: PathBuf,
}

impl std::ops::Deref for Up {
    type Target = tandem::harness::Up;
    fn deref(&self) -> &tandem::harness::Up {
        &self.agent
    }
}

impl Up {
    /// Starts `tandem up` on the test graph with integrate `version` ("v1" or
    /// "v2") and the power scaled by `gain`.
    pub fn start(name: &str, version: &str, gain: f64) -> Up {
        Up::launch(name, |up| up.graph_text(version, gain))
    }

    /// Starts `tandem up` on the graph `text` makes (its sink writes [`Files::out`]).
    pub fn launch(name: &str, text: impl FnOnce(&Files) -> String) -> Up {
        Up::launch_with(name, text, |_| {})
    }

    /// [`Up::launch`], with `prepare` changing the agent's command first.
    pub fn launch_with(
        name: &str,
        text: impl FnOnce(&Files) -> String,
        prepare: impl FnOnce(&mut Command),
    ) -> Up {
        Up::launch_full(name, text, prepare, &[])
    }

    /// [`Up::launch_with`], with `args` after the test's own arguments to
    /// `tandem up` (such as `--metrics ADDR`).
    pub fn launch_full(
        name: &str,
        text: impl FnOnce(&Files) -> String,
        prepare: impl FnOnce(&mut Command),
        args: &[&str],
    ) -> Up {
        let scratch = Scratch::new(name);
        let files = Files {
            dir: scratch.0.clone(),
            out: scratch.join("out.csv"),
        };
        let graph = files.write("graph.toml", &text(&files));
        let agent = Launcher::new(env!("CARGO_BIN_EXE_tandem"), graph, scratch.state())
            .args(["--checkpoint-every", "200ms", "--shadow-log"])
            .arg(scratch.join("shadow.jsonl"))
            .args(args)
            .log_to(scratch.join("agent.log"))
            .spawn_with(prepare);
        Up {
            agent,
            dir: files.dir.clone(),
            out: files.out.clone(),
            files,
            scratch,
        }
    }

    /// The graph's text.
    pub fn graph_text(&self, version: &str, gain: f64) -> String {
        self.files.graph_text(version, gain)
    }

    /// Writes a graph file named `name`.toml.
    pub fn graph_file(&self, name: &str, version: &str, gain: f64) -> PathBuf {
        self.write(&format!("{name}.toml"), &self.graph_text(version, gain))
    }

    /// Writes a file in the test directory.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        self.files.write(name, text)
    }

    /// The shadow log's lines, as JSON.
    pub fn shadow_lines(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.join("shadow.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The agent's status, or `Null` while it does not answer.
    pub fn status(&self) -> Value {
        self.agent.status()
    }

    /// Polls the status until `done` holds; panics with the agent's log
    /// after the bound, or when the agent exited.
    pub fn wait_for(&self, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        self.agent.wait_for(what, done)
    }

    /// Waits until both instances are connected and serving.
    pub fn wait_both_serving(&self) -> Value {
        self.agent.wait_both_serving()
    }

    /// Waits for a barrier placed from now on at which both instances'
    /// state hashes are equal.
    pub fn wait_equal_hashes(&self) -> Value {
        self.agent.wait_equal_hashes()
    }

    /// Sends `signal` to `pid` (an instance, the agent, or a group).
    pub fn kill(&self, pid: i32, signal: i32) {
        tandem::harness::proc::signal(pid, signal);
    }

    /// Stops the agent with SIGINT, checks it exited 0, and returns the sink's file.
    pub fn stop_and_read(self) -> String {
        let Up { agent, out, .. } = self;
        let (status, log) = agent.interrupt();
        assert!(status.success(), "agent exit {status}\n{log}");
        std::fs::read_to_string(&out).unwrap()
    }

    /// Sends the agent SIGINT and waits for it to exit, whatever its code:
    /// its exit and log.
    pub fn interrupt(self) -> (std::process::ExitStatus, String) {
        self.agent.interrupt()
    }

    /// Stops the agent with SIGINT, checks it exited 0, and checks the
    /// sink's file: every origin sequence number once, in order, with no
    /// gap, and every energy value what the input says. Returns the record
    /// count.
    pub fn stop_and_check(self) -> usize {
        let Up { agent, out, .. } = self;
        let (status, log) = agent.interrupt();
        assert!(status.success(), "agent exit {status}\n{log}");
        check_energy(&out, &log)
    }
}

impl Files {
    /// The graph's text.
    pub fn graph_text(&self, version: &str, gain: f64) -> String {
        let version = version.trim_start_matches('v');
        format!(
            r#"[graph]
name = "up"

[sources.gen]
kind = "synthetic"
channels = ["power"]
rate = 400
shape = "constant"
amplitude = {POWER_W:?}

[vertices.calib]
kind = "scale"
inputs = ["gen.power"]
factor = {gain:?}

[vertices.energy]
kind = "integrate"
version = {version}
inputs = ["calib"]

[sinks.out]
kind = "file"
path = "{}"
format = "csv"
inputs = ["energy"]
"#,
            self.out.display()
        )
    }

    /// Writes a file in the test directory.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

/// Checks the CSV the sink wrote (`seq,time_ns,channel,value,quality`).
pub fn check_energy(path: &Path, log: &str) -> usize {
    let text = std::fs::read_to_string(path).unwrap();
    let mut last: Option<(u64, i64, f64)> = None;
    let mut count = 0;
    for line in text.lines().skip(1) {
        let fields: Vec<&str> = line.split(',').collect();
        assert_eq!(fields.len(), 5, "a torn line: {line}");
        let seq: u64 = fields[0].parse().unwrap();
        let time: i64 = fields[1].parse().unwrap();
        let value: f64 = fields[3].parse().unwrap();
        if let Some((prev_seq, prev_time, prev_value)) = last {
            assert_eq!(
                seq,
                prev_seq + 1,
                "after origin sequence {prev_seq} came {seq}: a record lost or repeated\n{log}"
            );
            let expected = prev_value + POWER_W * (time - prev_time) as f64 / 3.6e12;
            assert!(
                (value - expected).abs() <= 1e-9 * expected.abs().max(1.0),
                "energy at origin sequence {seq} is {value}, the input says {expected}\n{log}"
            );
        } else {
            assert_eq!(seq, 1, "the output starts at {seq}");
        }
        last = Some((seq, time, value));
        count += 1;
    }
    count
}
