//! A fleet under test: a real `tandem ctl serve` and real `tandem up`
//! gateways on loopback, each with its own state and config directory,
//! and bundles made with `tandem bundle`.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tandem::harness::{Agent as _, Launcher, Scratch, Up};

/// Longest wait for anything the fleet does.
pub const BOUND: Duration = Duration::from_secs(90);
const BIN: &str = env!("CARGO_BIN_EXE_tandem");

/// Runs `tandem ARGS`: its stdout, or its stderr as the error.
pub fn tandem(args: &[&str]) -> Result<String, String> {
    let out = Command::new(BIN).args(args).output().unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// A directory for one test (`tandem-fleet-NAME-PID`), removed when the test passes.
pub struct Root(pub PathBuf, Scratch);

impl Root {
    pub fn new(name: &str) -> Root {
        let scratch = Scratch::new(&format!("fleet-{name}"));
        Root(scratch.0.clone(), scratch)
    }
}

/// The graph every gateway runs: a constant power, calibrated and
/// integrated, to `out.csv` in the gateway's working directory. `gain`
/// changes the calibration (output diverges); `version` the integrator's.
pub fn graph(version: u32, gain: f64) -> String {
    format!(
        r#"[graph]
name = "fleet"

[ha]
supervise = "400ms"

[sources.gen]
kind = "synthetic"
channels = ["power"]
rate = 100
shape = "constant"
amplitude = 1000.0

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
path = "out.csv"
format = "csv"
inputs = ["energy"]
"#
    )
}

/// A signing key pair for track `track`.
pub struct Key {
    pub secret: PathBuf,
    pub public: PathBuf,
    pub track: String,
}

impl Key {
    pub fn new(root: &Path, track: &str) -> Key {
        let dir = root.join("keys");
        std::fs::create_dir_all(&dir).unwrap();
        tandem(&["bundle", "keygen", track, "--dir", dir.to_str().unwrap()]).unwrap();
        Key {
            secret: dir.join(format!("{track}.key")),
            public: dir.join(format!("{track}.pub")),
            track: track.to_owned(),
        }
    }

    /// A signed bundle of `graph_text`, named `fleet`.
    pub fn bundle(&self, root: &Path, version: &str, graph_text: &str) -> PathBuf {
        let dir = root.join("bundles");
        std::fs::create_dir_all(&dir).unwrap();
        let graph = dir.join(format!("graph-{version}.toml"));
        std::fs::write(&graph, graph_text).unwrap();
        let out = dir.join(format!("fleet-{version}.bundle"));
        tandem(&[
            "bundle",
            "build",
            "--graph",
            graph.to_str().unwrap(),
            "--name",
            "fleet",
            "--version",
            version,
            "--track",
            &self.track,
            "-o",
            out.to_str().unwrap(),
        ])
        .unwrap();
        tandem(&[
            "bundle",
            "sign",
            out.to_str().unwrap(),
            "--key",
            self.secret.to_str().unwrap(),
        ])
        .unwrap();
        out
    }
}

/// A running `tandem ctl serve`.
pub struct Controller {
    child: Child,
    pub dir: PathBuf,
    pub quic: String,
    pub http: String,
    log: PathBuf,
}

impl Controller {
    /// Starts a controller in `root/ctl` whose tracks are `tracks_toml`.
    pub fn start(root: &Path, tracks_toml: &str, listen: &str) -> Controller {
        let dir = root.join("ctl");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("tracks.toml"), tracks_toml).unwrap();
        let _ = std::fs::remove_file(dir.join("addresses.json"));
        let log = root.join("ctl.log");
        let child = Command::new(BIN)
            .args(["ctl", "serve", "--dir", dir.to_str().unwrap()])
            .args(["--listen", listen, "--http", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)
                    .unwrap(),
            ))
            .spawn()
            .unwrap();
        let mut ctl = Controller {
            child,
            dir,
            quic: String::new(),
            http: String::new(),
            log,
        };
        let addresses = ctl.wait_file("addresses.json");
        let v: Value = serde_json::from_str(&addresses).unwrap();
        ctl.quic = v["quic"].as_str().unwrap().to_owned();
        ctl.http = v["http"].as_str().unwrap().to_owned();
        ctl
    }

    fn wait_file(&mut self, name: &str) -> String {
        let deadline = Instant::now() + BOUND;
        loop {
            if let Ok(text) = std::fs::read_to_string(self.dir.join(name)) {
                if !text.is_empty() {
                    return text;
                }
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("the controller exited ({status})\n{}", self.log());
            }
            assert!(Instant::now() < deadline, "no {name}\n{}", self.log());
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs `tandem ctl ARGS --dir DIR`.
    pub fn ctl(&self, args: &[&str]) -> Result<String, String> {
        let mut all = vec!["ctl"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--dir", self.dir.to_str().unwrap()]);
        tandem(&all)
    }

    /// Enrols a gateway; its enrolment file.
    pub fn enrol(&self, id: &str, hardware: &str, devices: &str, track: &str) -> PathBuf {
        let out = self.dir.join(format!("{id}.enrolment.json"));
        self.ctl(&[
            "enrol",
            id,
            "--hardware",
            hardware,
            "--devices",
            devices,
            "--track",
            track,
            "--out",
            out.to_str().unwrap(),
        ])
        .unwrap_or_else(|e| panic!("enrol {id}: {e}\n{}", self.log()));
        out
    }

    /// The controller's snapshot (`tandem ctl status --json`).
    pub fn status(&self) -> Value {
        let socket = self.dir.join("ctl.sock");
        tandem::up::ask::ask(&socket, "status")
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or(Value::Null)
    }

    /// Polls the snapshot until `done` holds; panics with the logs after the bound.
    pub fn wait_for(
        &self,
        what: &str,
        gateways: &[&Gateway],
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + BOUND;
        loop {
            let v = self.status();
            if !v.is_null() && done(&v) {
                return v;
            }
            if Instant::now() > deadline {
                let logs: Vec<String> = gateways
                    .iter()
                    .map(|g| format!("--- {}\n{}", g.id, g.log()))
                    .collect();
                panic!(
                    "no {what} within {BOUND:?}; last status {v:#}\n--- controller\n{}\n{}",
                    self.log(),
                    logs.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops it with SIGINT and waits.
    pub fn stop(&mut self) {
        // SAFETY: kill(2) on the child this struct started.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let deadline = Instant::now() + BOUND;
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "the controller did not stop");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One gateway's snapshot entry.
pub fn gateway<'a>(snapshot: &'a Value, id: &str) -> &'a Value {
    snapshot["gateways"]
        .as_array()
        .and_then(|all| all.iter().find(|g| g["id"] == id))
        .unwrap_or(&Value::Null)
}

/// A rollout's target entry.
pub fn target<'a>(rollout: &'a Value, id: &str) -> &'a Value {
    rollout["waves"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|w| w["gateways"].as_array().into_iter().flatten())
        .find(|t| t["id"] == id)
        .unwrap_or(&Value::Null)
}

/// A gateway: `tandem up` in its own directory, enrolled with a controller.
pub struct Gateway {
    agent: Option<Up>,
    launcher: Launcher,
    pub id: String,
    pub dir: PathBuf,
}

impl Gateway {
    /// Sets up `root/ID` (config dir trusting `key`) and starts it.
    pub fn start(root: &Path, id: &str, enrolment: PathBuf, key: &Key) -> Gateway {
        let dir = root.join(id);
        let config = dir.join("config");
        let keys = config.join("keys").join(&key.track);
        std::fs::create_dir_all(&keys).unwrap();
        std::fs::copy(&key.public, keys.join("release.pub")).unwrap();
        std::fs::write(
            config.join("tracks.toml"),
            format!("[tracks.{}]\nthreshold = 1\n", key.track),
        )
        .unwrap();
        std::fs::write(dir.join("graph.toml"), graph(1, 1.0)).unwrap();
        let launcher = Launcher::new(BIN, "graph.toml", "state")
            .current_dir(&dir)
            .args(["--config-dir", "config", "--checkpoint-every", "300ms"])
            .arg("--controller-enrolment")
            .arg(enrolment)
            .log_to(dir.join("agent.log"))
            .bound(BOUND);
        Gateway {
            agent: Some(launcher.spawn()),
            launcher,
            id: id.to_owned(),
            dir,
        }
    }

    fn agent(&self) -> &Up {
        self.agent.as_ref().expect("the gateway runs")
    }

    /// Stops the agent where it is (SIGSTOP): nothing it runs moves on, and
    /// it tells the controller nothing, until it is killed.
    pub fn freeze(&self) {
        tandem::harness::proc::signal(self.agent().pid(), libc::SIGSTOP);
    }

    /// Kills the agent (SIGKILL: its instances die with it) and starts it again.
    pub fn restart(&mut self) {
        if let Some(agent) = self.agent.take() {
            agent.kill();
        }
        self.agent = Some(self.launcher.spawn());
    }

    /// What its agents (every start) and their instances logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("agent.log")).unwrap_or_default()
    }

    /// The agent's status, or `Null` while it does not answer.
    pub fn status(&self) -> Value {
        self.agent().status()
    }

    /// Polls the agent's status until `done` holds.
    pub fn wait_for(&self, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        self.agent().wait_for(&format!("{}: {what}", self.id), done)
    }

    /// `tandem install FILE` on this gateway (a USB stick).
    pub fn install(&self, bundle: &Path) -> Result<String, String> {
        tandem(&[
            "install",
            bundle.to_str().unwrap(),
            "--state-dir",
            self.dir.join("state").to_str().unwrap(),
        ])
    }
}
