//! Fleet delivery: what a gateway spends on a bundle, and how long a
//! controller takes to roll one out.
//!
//! `cargo bench --bench fleet -- --json` prints the figures and, as its
//! last line, one JSON object:
//! - `verify_10mb_ms`: every check a gateway makes of a 10 MB bundle
//!   (structure, signature, each payload's hashes while decompressing it,
//!   policy), median of 5;
//! - `install_10mb_ms`: the same checks and the payloads unpacked into a
//!   private staging directory (what happens before the live upgrade);
//! - `baselines.sha256_10mb_ms`: plain SHA-256 of the same 10 MB, in this
//!   process; `baselines.ed25519_verify_us`: one ed25519 signature check;
//! - `rollout_20_ms`: a rollout to 20 simulated gateways on loopback, from
//!   the request to the last gateway's success: a real controller (in this
//!   process), 20 real fleet links over QUIC with mutual TLS, each in front
//!   of a simulated agent (a control socket that takes the install, shows a
//!   shadow comparison, then records "promoted"); 4 configuration
//!   categories, waves [25, 100].
// A bench whose setup fails has nothing to measure: it stops there.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tandem_workspace::median;

use serde_json::{json, Value};
use tandem::bundle::build::{build, sign_file, write_file, BuildSpec};
use tandem::bundle::manifest::Name;
use tandem::bundle::sign::{SecretKey, Statement};
use tandem::bundle::{Gateway, UnixTime};

const MB: usize = 1 << 20;
const GATEWAYS: usize = 20;

fn graph() -> &'static str {
    r#"[graph]
name = "fleet"

[sources.gen]
kind = "synthetic"
channels = ["power"]
rate = 100
shape = "constant"
amplitude = 1000.0

[vertices.energy]
kind = "integrate"
inputs = ["gen.power"]

[sinks.out]
kind = "count"
inputs = ["energy"]
"#
}

/// Bytes that do not compress: a 10 MB bundle is 10 MB on the wire.
fn noise(len: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A signed bundle of `graph()` and a 10 MB "binary"; its path.
fn make_bundle(dir: &Path, key: &SecretKey, version: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let graph_file = dir.join("graph.toml");
    std::fs::write(&graph_file, graph()).unwrap();
    let binary = dir.join("payload.bin");
    std::fs::write(&binary, noise(10 * MB)).unwrap();
    let spec = BuildSpec {
        name: Name::parse("fleet").unwrap(),
        version: version.parse().unwrap(),
        track: Name::parse("stable").unwrap(),
        expires: UnixTime::now().plus(86_400),
        hardware: vec!["*".into()],
        sites: vec!["*".into()],
        min_runtime: None,
        depends: Vec::new(),
        conflicts: Vec::new(),
        graph: graph_file,
        extra_graphs: Vec::new(),
        binary: Some(binary),
    };
    let (_, bytes) = build(&spec).unwrap();
    let out = dir.join(format!("fleet-{version}.bundle"));
    write_file(&out, &bytes).unwrap();
    sign_file(&out, key).unwrap();
    out
}

/// A gateway config directory trusting `key` for track `stable`.
fn config_dir(dir: &Path, key: &SecretKey) -> PathBuf {
    let config = dir.join("config");
    let keys = config.join("keys").join("stable");
    std::fs::create_dir_all(&keys).unwrap();
    std::fs::write(keys.join("bench.pub"), key.public().to_text("bench")).unwrap();
    std::fs::write(
        config.join("tracks.toml"),
        "[tracks.stable]\nthreshold = 1\n",
    )
    .unwrap();
    config
}

struct Gateway10 {
    verify_ms: f64,
    install_ms: f64,
    sha256_ms: f64,
    ed25519_us: f64,
    bundle_bytes: u64,
}

fn gateway_side(dir: &Path) -> Gateway10 {
    let key = SecretKey::from_seed(&[7; 32]);
    let bundle = make_bundle(dir, &key, "1.0.0");
    let config = config_dir(dir, &key);
    let gateway = Gateway::new(dir.join("bundles"), config);
    let bytes = std::fs::read(&bundle).unwrap();
    let (mut verify, mut install, mut sha, mut ed) = (vec![], vec![], vec![], vec![]);
    let signed = key.sign(Statement::Manifest, &bytes[..4096]);
    let public = key.public();
    for _ in 0..5 {
        let t = Instant::now();
        gateway.check(&bundle, UnixTime::now()).unwrap();
        verify.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        let prepared = gateway.prepare(&bundle, UnixTime::now()).unwrap();
        install.push(t.elapsed().as_secs_f64() * 1e3);
        drop(prepared);
        let t = Instant::now();
        std::hint::black_box(tandem::ctl::wire::sha256_hex(&bytes));
        sha.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        for _ in 0..100 {
            assert!(public.verifies(Statement::Manifest, &bytes[..4096], &signed.signature));
        }
        ed.push(t.elapsed().as_secs_f64() * 1e6 / 100.0);
    }
    Gateway10 {
        verify_ms: median(verify),
        install_ms: median(install),
        sha256_ms: median(sha),
        ed25519_us: median(ed),
        bundle_bytes: bytes.len() as u64,
    }
}

/// A simulated agent behind `socket`: it takes an install, shows a shadow
/// comparison for two status polls, then records "promoted".
fn fake_agent(socket: PathBuf, state: PathBuf) {
    let listener = UnixListener::bind(&socket).unwrap();
    std::thread::spawn(move || {
        let mut installing: Option<(String, String, u32)> = None;
        let mut installed = Value::Null;
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut line = String::new();
            if BufReader::new(&stream).read_line(&mut line).is_err() {
                continue;
            }
            let line = line.trim_end();
            let answer = if let Some(path) = line.strip_prefix("install\t") {
                let bytes = std::fs::read(path).unwrap_or_default();
                let mut cursor = std::io::Cursor::new(&bytes);
                match tandem::bundle::verify::open(&mut cursor, u64::MAX) {
                    Ok(opened) => {
                        if let tandem::bundle::Contents::Bundle(m) = opened.contents {
                            installing =
                                Some((m.name.as_str().to_owned(), m.version.to_string(), 0));
                        }
                        "ok: installing".to_owned()
                    }
                    Err(e) => format!("error: {e}"),
                }
            } else {
                let mut phase = "idle";
                if let Some((name, version, polls)) = installing.as_mut() {
                    *polls += 1;
                    phase = "shadow";
                    if *polls > 2 {
                        let what = format!("{name} {version}");
                        let bundles = state.join("bundles");
                        std::fs::create_dir_all(&bundles).unwrap();
                        let mut history = std::fs::OpenOptions::new()
                            .create(true)
                            .append(true)
                            .open(bundles.join("history.jsonl"))
                            .unwrap();
                        writeln!(history, "{}", json!({"bundle": what, "result": "promoted"}))
                            .unwrap();
                        installed = json!({"name": name, "version": version});
                        installing = None;
                        phase = "idle";
                    }
                }
                json!({
                    "graph": "fleet",
                    "instances": [{"color": "blue", "role": "serving", "connected": true,
                                   "version": "00000001"},
                                  {"color": "green", "role": "serving", "connected": true,
                                   "version": "00000001"}],
                    "divergence": 0,
                    "upgrade": {"phase": phase, "compared": 100, "mismatched": 0,
                                "noise_floor": 0.0, "max_mismatch": 0.0},
                    "bundles": {"installed": installed, "installing": installing.as_ref().map(
                        |(n, v, _)| json!({"name": n, "version": v}))},
                })
                .to_string()
            };
            let _ = stream.write_all(format!("{answer}\n").as_bytes());
        }
    });
}

fn ask(socket: &Path, line: &str) -> String {
    tandem::up::ask::ask(socket, line).unwrap_or_else(|e| panic!("{line}: {e}"))
}

fn rollout(dir: &Path) -> f64 {
    let key = SecretKey::from_seed(&[9; 32]);
    let bundle_dir = dir.join("bundle");
    std::fs::create_dir_all(&bundle_dir).unwrap();
    let bundle = make_bundle(&bundle_dir, &key, "2.0.0");
    let ctl_dir = dir.join("ctl");
    std::fs::create_dir_all(&ctl_dir).unwrap();
    std::fs::write(
        ctl_dir.join("tracks.toml"),
        "[tracks.stable]\nwaves = [25, 100]\n",
    )
    .unwrap();
    let options = tandem::ctl::daemon::Options {
        dir: ctl_dir.clone(),
        listen: "127.0.0.1:0".parse().unwrap(),
        http: "127.0.0.1:0".parse().unwrap(),
        advertise: None,
    };
    std::thread::spawn(move || tandem::ctl::daemon::run(options).unwrap());
    let socket = tandem::ctl::daemon::socket(&ctl_dir);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !tandem::ctl::daemon::addresses_file(&ctl_dir).exists() {
        assert!(Instant::now() < deadline, "the controller did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    for i in 0..GATEWAYS {
        let id = format!("gw-{i:02}");
        let gw = dir.join(&id);
        std::fs::create_dir_all(gw.join("state")).unwrap();
        let text = ask(
            &socket,
            &format!("enrol\t{id}\thw{}\tdev{}\tstable\t", i % 2, i % 4 / 2),
        );
        let enrolment = tandem::ctl::enrol::Enrolment::parse(&text).unwrap();
        let file = gw.join("enrolment.json");
        enrolment.save(&file).unwrap();
        let agent_socket = gw.join("agent.sock");
        fake_agent(agent_socket.clone(), gw.join("state"));
        tandem::up::fleet_link::FleetLink::new(&file, agent_socket, &gw.join("state"))
            .unwrap()
            .start()
            .unwrap();
    }
    let online = |v: &Value| {
        v["gateways"]
            .as_array()
            .is_some_and(|g| g.iter().filter(|g| g["online"] == true).count() == GATEWAYS)
    };
    loop {
        let v: Value = serde_json::from_str(&ask(&socket, "status")).unwrap();
        if online(&v) {
            break;
        }
        assert!(Instant::now() < deadline, "the gateways did not connect");
        std::thread::sleep(Duration::from_millis(10));
    }
    let started = Instant::now();
    ask(&socket, &format!("rollout\tstable\t{}", bundle.display()));
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let v: Value = serde_json::from_str(&ask(&socket, "status")).unwrap();
        let r = &v["rollouts"][0];
        if r["state"] == "complete" && r["counts"]["succeeded"] == GATEWAYS {
            return started.elapsed().as_secs_f64() * 1e3;
        }
        assert!(r["state"] != "halted", "{r:#}");
        assert!(
            Instant::now() < deadline,
            "the rollout did not complete: {r:#}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn main() {
    let json_out = std::env::args().any(|a| a == "--json");
    let dir = std::env::temp_dir().join(format!("tandem-bench-fleet-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let g = gateway_side(&dir.join("gateway"));
    println!(
        "10 MB bundle ({} bytes): verify {:.1} ms, verify and unpack {:.1} ms; \
         sha256 of 10 MB {:.1} ms, one ed25519 verify {:.1} µs",
        g.bundle_bytes, g.verify_ms, g.install_ms, g.sha256_ms, g.ed25519_us
    );
    let rollout_ms = rollout(&dir.join("rollout"));
    println!("rollout to {GATEWAYS} simulated gateways on loopback: {rollout_ms:.0} ms");
    let line = json!({
        "verify_10mb_ms": (g.verify_ms * 10.0).round() / 10.0,
        "install_10mb_ms": (g.install_ms * 10.0).round() / 10.0,
        "bundle_bytes": g.bundle_bytes,
        "rollout_20_ms": rollout_ms.round(),
        "baselines": {
            "sha256_10mb_ms": (g.sha256_ms * 10.0).round() / 10.0,
            "ed25519_verify_us": (g.ed25519_us * 10.0).round() / 10.0,
        },
    });
    if json_out {
        println!("{line}");
    } else {
        println!("(run with -- --json for one JSON line)\n{line}");
    }
    // The controller and the links run on threads of their own until the
    // end: only the gateway side's files (the large ones) are removed.
    let _ = std::fs::remove_dir_all(dir.join("gateway"));
    let _ = std::fs::remove_dir_all(dir.join("rollout").join("bundle"));
    std::process::exit(0);
}
