//! The metrics endpoint of `tandem up --metrics ADDR`, with real processes:
//! scraped over a plain TCP socket as Prometheus would, with `/livez` and
//! `/readyz` through an instance start, a loss of both instances, and their
//! return; and nothing listening when it is not asked for.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::time::{Duration, Instant};

use common::up::Up;
use serde_json::Value;
use tandem::harness::status::instance_pids;
use tandem::harness::Scratch;

/// Longest wait for anything.
const BOUND: Duration = Duration::from_secs(30);

/// One HTTP/1.1 GET: the status code and the body.
fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(BOUND)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    let (head, body) = reply.split_once("\r\n\r\n").expect("a header and a body");
    let code = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .expect("a Content-Length")
        .parse()
        .unwrap();
    assert_eq!(body.len(), length, "the body is as long as announced");
    (code, body.to_owned())
}

/// Prometheus text as `name{labels}` -> value (comments skipped).
fn parse(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap();
            (series.to_owned(), value.parse().unwrap())
        })
        .collect()
}

/// Retries `probe` until it returns something, for at most [`BOUND`].
fn wait<T>(what: &str, up: &Up, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + BOUND;
    loop {
        if let Some(found) = probe() {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "no {what} within {BOUND:?}\nagent log:\n{}",
            up.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The endpoint's address, once the agent says where it listens.
fn endpoint(up: &Up) -> SocketAddr {
    let status = up.wait_for("the metrics endpoint", |v| v["metrics"].is_string());
    status["metrics"].as_str().unwrap().parse().unwrap()
}

/// An executable in `dir` that waits for a line on the FIFO `dir/gate`
/// before it becomes `tandem`: instances started through it wait for the
/// test. Returns it and the FIFO.
fn gated_tandem(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let gate = dir.join("gate");
    let fifo = std::ffi::CString::new(gate.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: mkfifo with a NUL-terminated path in the test's own directory.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    let script = dir.join("gated-tandem");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n# Opened read-write: it never blocks on open, only on read.\n\
             read _ <> '{}'\nexec '{}' \"$@\"\n",
            gate.display(),
            env!("CARGO_BIN_EXE_tandem")
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    (script, gate)
}

#[test]
fn a_scrape_shows_both_instances_serving_and_ready_follows_them() {
    let scratch = Scratch::new("metrics-gate");
    let (binary, gate) = gated_tandem(&scratch.0);
    let up = Up::launch_full(
        "metrics",
        |up| up.graph_text("v1", 1.0),
        |_| {},
        &[
            "--metrics",
            "127.0.0.1:0",
            "--binary",
            binary.to_str().unwrap(),
        ],
    );
    let addr = endpoint(&up);

    // The instances wait at the gate: live, not ready.
    assert_eq!(get(addr, "/livez").0, 200);
    let (code, body) = get(addr, "/readyz");
    assert_eq!(
        (code, body.as_str()),
        (503, "not ready: no instance is serving\n")
    );
    let before = parse(&get(addr, "/metrics").1);
    assert_eq!(
        before[r#"tandem_instance_role{color="blue",role="starting"}"#],
        1.0
    );

    // Open the gate for these two instances only: replacements wait at it
    // until the test lets them through.
    let mut gate = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&gate)
        .unwrap();
    gate.write_all(b"\n\n").unwrap();
    up.wait_both_serving();
    wait("ready", &up, || {
        (get(addr, "/readyz").0 == 200).then_some(())
    });

    let energy_in = |m: &BTreeMap<String, f64>, color: &str| {
        m.get(&format!(
            r#"tandem_vertex_records_in_total{{vertex="energy",color="{color}"}}"#
        ))
        .copied()
    };
    // Vertex figures come from the instances, gathered once a second.
    let first = wait("vertex figures of both instances", &up, || {
        let m = parse(&get(addr, "/metrics").1);
        (energy_in(&m, "blue").is_some() && energy_in(&m, "green").is_some()).then_some(m)
    });
    let sink_in = r#"tandem_sink_records_in_total{sink="out"}"#;
    let second = wait("counters moving between scrapes", &up, || {
        let first_blue = energy_in(&first, "blue")?;
        let now = parse(&get(addr, "/metrics").1);
        // An instance lost to a loaded machine comes back: wait for both.
        let serving = ["blue", "green"].iter().all(|color| {
            now.get(&format!(
                r#"tandem_instance_role{{color="{color}",role="serving"}}"#
            )) == Some(&1.0)
        });
        let moved = serving
            && energy_in(&now, "blue")? > first_blue
            && energy_in(&now, "green")? > energy_in(&first, "green")?
            && now.get(sink_in)? > first.get(sink_in)?
            && now[r#"tandem_ingested_records_total{graph="up"}"#]
                > first[r#"tandem_ingested_records_total{graph="up"}"#];
        moved.then_some(now)
    });
    for color in ["blue", "green"] {
        assert_eq!(
            second[&format!(r#"tandem_instance_role{{color="{color}",role="serving"}}"#)],
            1.0
        );
        let restarts = format!(r#"tandem_instance_restarts_total{{color="{color}"}}"#);
        assert!(second.contains_key(&restarts), "no {restarts}");
        let p99 = format!(
            r#"tandem_vertex_latency_seconds{{vertex="energy",color="{color}",quantile="0.99"}}"#
        );
        assert!(second.contains_key(&p99), "no {p99}");
    }
    assert_eq!(second[r#"tandem_divergent_records_total{graph="up"}"#], 0.0);
    assert_eq!(second[r#"tandem_upgrade_phase{phase="idle"}"#], 1.0);
    let build = second
        .iter()
        .find(|(k, _)| k.starts_with("tandem_build_info{"))
        .expect("build info");
    assert!(
        build
            .0
            .contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION"))),
        "{build:?}"
    );

    // Both instances stopped: once the agent declares them lost, not ready
    // (their replacements wait at the gate, so this holds until the test
    // opens it); once they are through, ready again.
    let pids = instance_pids(&up.status());
    assert_eq!(pids.len(), 2);
    for &pid in &pids {
        up.kill(pid, libc::SIGSTOP);
    }
    let (_, body) = wait("not ready with both instances stopped", &up, || {
        let (code, body) = get(addr, "/readyz");
        (code == 503).then_some((code, body))
    });
    assert_eq!(body, "not ready: no instance is serving\n");
    assert_eq!(get(addr, "/livez").0, 200, "the agent itself is live");
    for &pid in &pids {
        // SAFETY: kill(2) on pids this test stopped; they may be gone by now.
        unsafe { libc::kill(pid, libc::SIGCONT) };
    }
    gate.write_all(b"\n\n").unwrap();
    wait("ready again", &up, || {
        (get(addr, "/readyz").0 == 200).then_some(())
    });
    let after = parse(&get(addr, "/metrics").1);
    let restarts: f64 = ["blue", "green"]
        .iter()
        .map(|c| after[&format!(r#"tandem_instance_restarts_total{{color="{c}"}}"#)])
        .sum();
    assert!(restarts >= 1.0, "the lost instances were restarted");
    assert_eq!(get(addr, "/nowhere").0, 404);
    drop(gate);
    up.stop_and_check();
}

#[test]
fn the_endpoint_is_off_unless_asked_for_and_the_environment_asks() {
    let up = Up::launch_with(
        "metrics-off",
        |up| up.graph_text("v1", 1.0),
        |command| {
            command.env_remove("TANDEM_METRICS");
        },
    );
    let status = up.wait_both_serving();
    assert_eq!(status["metrics"], Value::Null);
    let agent = status["agent_pid"].as_u64().unwrap();
    assert_eq!(tcp_listeners(agent), 0, "the agent listens on no TCP port");
    drop(up);

    let up = Up::launch_with(
        "metrics-env",
        |up| up.graph_text("v1", 1.0),
        |command| {
            command.env("TANDEM_METRICS", "127.0.0.1:0");
        },
    );
    let addr = endpoint(&up);
    assert_eq!(
        get(addr, "/livez"),
        (200, "live: the agent's loop is turning\n".into())
    );
    let agent = up.status()["agent_pid"].as_u64().unwrap();
    assert_eq!(tcp_listeners(agent), 1);
}

/// TCP sockets process `pid` listens on: its socket inodes found among
/// the LISTEN entries (state 0A) of /proc/net/tcp and tcp6.
fn tcp_listeners(pid: u64) -> usize {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter_map(|target| {
            let target = target.to_str()?.to_owned();
            Some(
                target
                    .strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .to_owned(),
            )
        })
        .collect();
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|table| std::fs::read_to_string(table).ok())
        .flat_map(|text| {
            text.lines()
                .skip(1)
                .map(|l| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
                .collect::<Vec<_>>()
        })
        .filter(|fields| fields.get(3).map(String::as_str) == Some("0A"))
        .filter(|fields| fields.get(9).is_some_and(|inode| inodes.contains(inode)))
        .count()
}
