//! Bundles with real processes: `tandem bundle keygen|build|sign|verify|
//! inspect` through the CLI, and `tandem install` against a running
//! `tandem up`: a good bundle upgrades it live (promoted, recorded, the
//! floor raised and kept across an agent restart), a diverging one rolls
//! back with the floor left alone, and every refusal changes nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;
use tandem::harness::{Agent as _, Launcher, Scratch, Up};

/// Longest wait for anything the agent does.
const BOUND: Duration = Duration::from_secs(60);

fn tandem() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tandem"))
}

fn run(args: &[&str]) -> Output {
    tandem().args(args).output().unwrap()
}

fn ok(args: &[&str]) -> String {
    succeeded(args, run(args))
}

/// `ok`, run in `dir`.
fn ok_in(dir: &Path, args: &[&str]) -> String {
    succeeded(args, tandem().current_dir(dir).args(args).output().unwrap())
}

/// Its standard output, once `out` is known to say success.
fn succeeded(args: &[&str], out: Output) -> String {
    assert!(
        out.status.success(),
        "tandem {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn refused(args: &[&str]) -> String {
    let out = run(args);
    assert_eq!(
        out.status.code(),
        Some(1),
        "tandem {args:?} was not refused"
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A test directory: two signing keys, a gateway config that trusts both
/// (track `stable`, threshold 2), removed on drop.
struct Bench {
    dir: PathBuf,
    _scratch: Scratch,
}

impl Bench {
    fn new(name: &str) -> Bench {
        let scratch = Scratch::new(&format!("bundle-{name}"));
        std::fs::create_dir_all(scratch.join("config/keys/stable")).unwrap();
        let b = Bench {
            dir: scratch.0.clone(),
            _scratch: scratch,
        };
        for k in ["ops1", "ops2"] {
            ok(&["bundle", "keygen", k, "--dir", b.s(&b.dir)]);
            std::fs::copy(
                b.dir.join(format!("{k}.pub")),
                b.dir.join(format!("config/keys/stable/{k}.pub")),
            )
            .unwrap();
        }
        std::fs::write(
            b.dir.join("config/tracks.toml"),
            "[tracks.stable]\nthreshold = 2\n",
        )
        .unwrap();
        std::fs::write(
            b.dir.join("config/gateway.toml"),
            "hardware = \"gw-3\"\nsite = \"site-7\"\n",
        )
        .unwrap();
        b
    }

    fn s<'a>(&self, p: &'a Path) -> &'a str {
        p.to_str().unwrap()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn config(&self) -> String {
        self.path("config").display().to_string()
    }

    /// The graph `tandem up` runs: integrate `version`, the input scaled by `gain`.
    fn graph(&self, name: &str, version: u32, gain: f64) -> PathBuf {
        let text = format!(
            r#"[graph]
name = "up"

[sources.gen]
kind = "synthetic"
channels = ["power"]
rate = 400
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
kind = "count"
inputs = ["energy"]

[ha]
supervise = "700ms"
"#
        );
        let path = self.path(&format!("{name}.toml"));
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Builds (and signs with `keys`) bundle `up` `version` of `graph`.
    fn bundle(
        &self,
        file: &str,
        graph: &Path,
        version: &str,
        extra: &[&str],
        keys: &[&str],
    ) -> PathBuf {
        let out = self.path(file);
        let mut args = vec![
            "bundle",
            "build",
            "--graph",
            self.s(graph),
            "--name",
            "up",
            "--version",
            version,
            "-o",
            self.s(&out),
        ];
        args.extend_from_slice(extra);
        ok(&args);
        for k in keys {
            let key = self.path(&format!("{k}.key"));
            ok(&["bundle", "sign", self.s(&out), "--key", self.s(&key)]);
        }
        out
    }
}

#[test]
fn a_bundle_named_without_a_directory_is_written_where_the_command_runs() {
    let b = Bench::new("bare");
    let graph = b.graph("g", 2, 1.0);
    ok_in(
        &b.dir,
        &[
            "bundle",
            "build",
            "--graph",
            b.s(&graph),
            "--name",
            "up",
            "--version",
            "1.2.0",
            "-o",
            "up.bundle",
        ],
    );
    let shown = ok_in(
        &b.dir,
        &["bundle", "inspect", "up.bundle", "--config-dir", "config"],
    );
    assert!(shown.contains("bundle up 1.2.0"), "{shown}");
}

#[test]
fn bundles_are_built_signed_verified_and_inspected_through_the_cli() {
    let b = Bench::new("cli");
    let graph = b.graph("g", 2, 1.0);
    let file = b.bundle("up.bundle", &graph, "1.2.0", &["--hardware", "gw-3"], &[]);
    let config = b.config();
    let state = b.path("state").display().to_string();
    let verify = |f: &Path| -> Vec<String> {
        vec![
            "bundle".into(),
            "verify".into(),
            f.display().to_string(),
            "--config-dir".into(),
            config.clone(),
            "--state-dir".into(),
            state.clone(),
        ]
    };
    let args = verify(&file);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let e = refused(&args);
    assert!(
        e.contains("is refused: it is unsigned; track `stable` requires 2"),
        "{e}"
    );
    ok(&[
        "bundle",
        "sign",
        b.s(&file),
        "--key",
        b.s(&b.path("ops1.key")),
    ]);
    let e = refused(&args);
    assert!(
        e.contains("requires 2 signatures of distinct trusted keys; it has 1"),
        "{e}"
    );
    ok(&[
        "bundle",
        "sign",
        b.s(&file),
        "--key",
        b.s(&b.path("ops2.key")),
    ]);
    let out = ok(&args);
    assert!(out.contains("ok: bundle up 1.2.0 on track stable"), "{out}");
    let shown = ok(&[
        "bundle",
        "inspect",
        b.s(&file),
        "--config-dir",
        &config,
        "--state-dir",
        &state,
    ]);
    for line in [
        "bundle up 1.2.0",
        "compatible: hardware gw-3; sites *",
        "kind integrate v2 (state schema 1016)",
        "migration integrate:1006->1016",
        "payload graph/g.toml",
        "verdict: this gateway would accept it",
    ] {
        assert!(shown.contains(line), "no `{line}` in:\n{shown}");
    }
    // A flipped byte anywhere in the payload: refused, and inspect says why.
    let mut bytes = std::fs::read(&file).unwrap();
    let last_data = bytes.len() - 1024 - 600;
    bytes[last_data] ^= 1;
    let bad = b.path("bad.bundle");
    std::fs::write(&bad, &bytes).unwrap();
    let args = verify(&bad);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let e = refused(&args);
    assert!(e.contains("bad.bundle is refused"), "{e}");
    // A key file mixed up with its pair.
    let e = refused(&[
        "bundle",
        "sign",
        b.s(&file),
        "--key",
        b.s(&b.path("ops1.pub")),
    ]);
    assert!(e.contains("is not a tandem-ed25519-secret key file"), "{e}");
}

/// `tandem up` on the bench's state and config directories, its stderr in
/// the first free `agent-N.log`.
fn start(b: &Bench, graph: &Path) -> Up {
    let log = (1..)
        .map(|n| b.path(&format!("agent-{n}.log")))
        .find(|p| !p.exists())
        .unwrap();
    Launcher::new(env!("CARGO_BIN_EXE_tandem"), graph, b.path("state"))
        .arg("--config-dir")
        .arg(b.path("config"))
        .args(["--checkpoint-every", "200ms"])
        .log_to(log)
        .bound(BOUND)
        .spawn()
}

/// `tandem install FILE` against `agent`.
fn install(agent: &Up, file: &Path) -> Result<String, String> {
    agent.cli(&["install", file.to_str().unwrap()])
}

fn bundles_last(v: &Value) -> &str {
    v["bundles"]["last"]["result"].as_str().unwrap_or("")
}

#[test]
fn a_good_bundle_upgrades_live_and_its_floor_survives_a_restart() {
    let b = Bench::new("install");
    let old = b.graph("old", 1, 1.0);
    let new = b.graph("new", 2, 1.0);
    let file = b.bundle("up-1.2.0.bundle", &new, "1.2.0", &[], &["ops1", "ops2"]);
    let agent = start(&b, &old);
    agent.wait_both_serving();
    let answer = install(&agent, &file).unwrap_or_else(|e| panic!("{e}\n{}", agent.log()));
    assert!(
        answer.contains("up 1.2.0 accepted; upgrading to"),
        "{answer}"
    );
    let done = agent.wait_for("the bundle's upgrade to commit", |v| {
        v["upgrade"]["phase"] == "idle" && bundles_last(v) == "promoted"
    });
    assert_eq!(done["upgrade"]["last"]["result"], "promoted", "{done}");
    assert_eq!(done["bundles"]["installed"]["version"], "1.2.0", "{done}");
    assert_eq!(done["bundles"]["floor"]["up"], "1.2.0", "{done}");
    let unpacked = agent.state().join("bundles/up-1.2.0/graph/new.toml");
    assert!(unpacked.is_file());
    let history = std::fs::read_to_string(agent.state().join("bundles/history.jsonl")).unwrap();
    assert!(
        history.contains("\"bundle\":\"up 1.2.0\"") && history.contains("\"promoted\""),
        "{history}"
    );
    let _ = agent.interrupt();
    // The floor is on disk: a restarted agent refuses the same version.
    let agent = start(&b, &new);
    agent.wait_both_serving();
    let e = install(&agent, &file).unwrap_err();
    assert!(
        e.contains(
            "up 1.2.0 is not newer than 1.2.0, which this gateway installed (anti-rollback)"
        ),
        "{e}"
    );
    let v = agent.status();
    assert_eq!(v["upgrade"]["phase"], "idle");
    assert_eq!(v["bundles"]["installed"]["version"], "1.2.0", "{v}");
    assert_eq!(bundles_last(&v), "refused", "{v}");
}

#[test]
fn a_diverging_bundle_is_rolled_back_and_the_floor_stays() {
    let b = Bench::new("diverge");
    let old = b.graph("old", 1, 1.0);
    let wrong = b.graph("wrong", 2, 1.01);
    let file = b.bundle("up-1.3.0.bundle", &wrong, "1.3.0", &[], &["ops1", "ops2"]);
    let agent = start(&b, &old);
    agent.wait_both_serving();
    install(&agent, &file).unwrap_or_else(|e| panic!("{e}\n{}", agent.log()));
    let after = agent.wait_for("the rollback", |v| {
        v["upgrade"]["phase"] == "idle" && bundles_last(v) == "rolled back"
    });
    let reason = after["bundles"]["last"]["reason"].as_str().unwrap();
    assert!(reason.contains("differ"), "{reason}");
    assert!(
        after["bundles"]["floor"].as_object().unwrap().is_empty(),
        "{after}"
    );
    assert!(!agent.state().join("bundles/floor.json").exists());
    agent.wait_both_serving();
}

#[test]
fn refusals_through_the_cli_change_nothing() {
    let b = Bench::new("refusals");
    let old = b.graph("old", 1, 1.0);
    let new = b.graph("new", 2, 1.0);
    let agent = start(&b, &old);
    let pids = |v: &Value| -> Vec<Value> {
        v["instances"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["pid"].clone())
            .collect()
    };
    let before = pids(&agent.wait_both_serving());
    let unsigned = b.bundle("unsigned.bundle", &new, "1.2.0", &[], &[]);
    let one = b.bundle("one.bundle", &new, "1.2.0", &[], &["ops1"]);
    let expired = b.bundle(
        "expired.bundle",
        &new,
        "1.2.0",
        &["--expires", "2020-01-01T00:00:00Z"],
        &["ops1", "ops2"],
    );
    let other = b.bundle(
        "other.bundle",
        &new,
        "1.2.0",
        &["--hardware", "gw-9"],
        &["ops1", "ops2"],
    );
    let needs = b.bundle(
        "needs.bundle",
        &new,
        "1.2.0",
        &["--depends", "battery-graph >= 2.14"],
        &["ops1", "ops2"],
    );
    let good =
        std::fs::read(b.bundle("good.bundle", &new, "1.2.0", &[], &["ops1", "ops2"])).unwrap();
    let flipped = b.path("flipped.bundle");
    let mut bytes = good.clone();
    bytes[700] ^= 0x01;
    std::fs::write(&flipped, &bytes).unwrap();
    let cut = b.path("cut.bundle");
    std::fs::write(&cut, &good[..good.len() - 100]).unwrap();
    for (file, expected) in [
        (&unsigned, "it is unsigned"),
        (
            &one,
            "requires 2 signatures of distinct trusted keys; it has 1",
        ),
        (&expired, "it expired at 2020-01-01T00:00:00Z"),
        (
            &other,
            "it is for hardware gw-9; this gateway's hardware is gw-3",
        ),
        (
            &needs,
            "it depends on battery-graph >=2.14, but this gateway has no battery-graph",
        ),
        (&flipped, "is refused"),
        (&cut, "the file is truncated"),
    ] {
        let e = install(&agent, file).unwrap_err();
        assert!(e.contains(expected), "{}: {e}", file.display());
        let v = agent.status();
        assert_eq!(v["upgrade"]["phase"], "idle", "{v}");
        assert!(v["upgrade"]["last"].is_null(), "an upgrade ran: {v}");
        assert_eq!(bundles_last(&v), "refused", "{v}");
        let left: Vec<String> = std::fs::read_dir(agent.state().join("bundles"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left, vec!["history.jsonl"], "after {}", file.display());
    }
    assert_eq!(pids(&agent.status()), before, "an instance was restarted");
}
