//! A `tandem up` under test: a real agent process (and its two instances)
//! on a graph that integrates a constant power, with what reaches the sink
//! checked record by record.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The power the synthetic source reads, in W.
pub const POWER_W: f64 = 1000.0;
/// Longest wait for anything the agent does.
const BOUND: Duration = Duration::from_secs(30);

/// An agent process, killed on drop; its directory is removed.
pub struct Up {
    child: Child,
    pub dir: PathBuf,
    pub out: PathBuf,
    state: PathBuf,
}

impl Up {
    /// Starts `tandem up` on the test graph with integrate `version` ("v1" or
    /// "v2") and the power scaled by `gain`.
    pub fn start(name: &str, version: &str, gain: f64) -> Up {
        Up::launch(name, |up| up.graph_text(version, gain))
    }

    /// Starts `tandem up` on the graph `text` makes (its sink writes [`Up::out`]).
    pub fn launch(name: &str, text: impl FnOnce(&Up) -> String) -> Up {
        Up::launch_with(name, text, |_| {})
    }

    /// [`Up::launch`], with `prepare` changing the agent's command first.
    pub fn launch_with(
        name: &str,
        text: impl FnOnce(&Up) -> String,
        prepare: impl FnOnce(&mut Command),
    ) -> Up {
        Up::launch_full(name, text, prepare, &[])
    }

    /// [`Up::launch_with`], with `args` after the test's own arguments to
    /// `tandem up` (such as `--metrics ADDR`).
    pub fn launch_full(
        name: &str,
        text: impl FnOnce(&Up) -> String,
        prepare: impl FnOnce(&mut Command),
        args: &[&str],
    ) -> Up {
        let dir = std::env::temp_dir().join(format!("tandem-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut up = Up {
            child: Command::new("true").spawn().unwrap(),
            out: dir.join("out.csv"),
            state: dir.join("state"),
            dir,
        };
        let graph = up.write("graph.toml", &text(&up));
        let mut command = Command::new(env!("CARGO_BIN_EXE_tandem"));
        prepare(&mut command);
        up.child = command
            .arg("up")
            .arg(&graph)
            .arg("--state-dir")
            .arg(&up.state)
            .arg("--checkpoint-every")
            .arg("200ms")
            .arg("--shadow-log")
            .arg(dir_of(&up.out).join("shadow.jsonl"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(up.dir.join("agent.log")).unwrap(),
            ))
            .spawn()
            .unwrap();
        up
    }

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

    /// Writes a graph file named `name`.toml.
    pub fn graph_file(&self, name: &str, version: &str, gain: f64) -> PathBuf {
        self.write(&format!("{name}.toml"), &self.graph_text(version, gain))
    }

    /// The shadow log's lines, as JSON.
    pub fn shadow_lines(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.join("shadow.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Writes a file in the test directory.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// What the agent (and its instances) wrote to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("agent.log")).unwrap_or_default()
    }

    /// The agent's state directory.
    pub fn state(&self) -> &Path {
        &self.state
    }

    /// Runs `tandem ARGS --state-dir DIR`: its stdout, or its stderr as the error.
    pub fn cli(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new(env!("CARGO_BIN_EXE_tandem"))
            .args(args)
            .arg("--state-dir")
            .arg(&self.state)
            .output()
            .unwrap();
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// [`Up::cli`], which must succeed.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        self.cli(args)
            .unwrap_or_else(|e| panic!("tandem {args:?} failed: {e}\nagent log:\n{}", self.log()))
    }

    /// The agent's status, or `Null` while it does not answer yet.
    pub fn status(&self) -> Value {
        let socket = self.state.join("agent.sock");
        match tandem::up::control::request(&socket, "status") {
            Ok(text) => serde_json::from_str(&text).unwrap_or(Value::Null),
            Err(_) => Value::Null,
        }
    }

    /// Polls the status until `done` holds; panics with the agent's log after the bound.
    pub fn wait_for(&self, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + BOUND;
        loop {
            let v = self.status();
            if !v.is_null() && done(&v) {
                return v;
            }
            if let Ok(Some(status)) = self.child_exited() {
                panic!(
                    "the agent exited ({status}) waiting for {what}\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no {what} within {BOUND:?}; last status {v}\nagent log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn child_exited(&self) -> std::io::Result<Option<std::process::ExitStatus>> {
        // try_wait needs &mut; a status-only peek through /proc is enough here.
        let alive = Path::new(&format!("/proc/{}", self.child.id())).exists();
        Ok((!alive).then(std::process::ExitStatus::default))
    }

    /// Waits until both instances are connected and serving.
    pub fn wait_both_serving(&self) -> Value {
        self.wait_for("both instances serving", |v| {
            v["instances"].as_array().is_some_and(|all| {
                all.iter()
                    .all(|i| i["role"] == "serving" && i["connected"] == true)
            }) && v["upgrade"]["phase"] == "idle"
        })
    }

    /// Waits for a barrier placed from now on at which both instances'
    /// state hashes are equal.
    pub fn wait_equal_hashes(&self) -> Value {
        let after = self.status()["last_barrier"]["id"].as_u64().unwrap_or(0);
        self.wait_for("a barrier with equal state hashes", |v| {
            let b = &v["last_barrier"];
            b["id"].as_u64().is_some_and(|id| id > after) && b["equal"] == true
        })
    }

    /// Sends `signal` to `pid`.
    pub fn kill(&self, pid: i32, signal: i32) {
        // SAFETY: kill(2) with a pid this test read from the agent's status.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill({pid}, {signal})");
    }

    /// Stops the agent with SIGINT and returns the sink's file.
    pub fn stop_and_read(mut self) -> String {
        self.stop();
        std::fs::read_to_string(&self.out).unwrap()
    }

    fn stop(&mut self) {
        self.kill(self.child.id() as i32, libc::SIGINT);
        let deadline = Instant::now() + BOUND;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "agent exit {status}\n{}", self.log());
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the agent did not stop\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops the agent with SIGINT, waits for it, and checks the sink's
    /// file: every origin sequence number once, in order, with no gap, and
    /// every energy value what the input says. Returns the record count.
    pub fn stop_and_check(mut self) -> usize {
        self.stop();
        check_energy(&self.out, &self.log())
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn dir_of(path: &Path) -> PathBuf {
    path.parent().unwrap().to_path_buf()
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
