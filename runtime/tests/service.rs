//! tandem run as a service: a terminal's Ctrl-C (SIGINT to the agent's
//! whole process group) and `systemctl stop` (SIGTERM) both drain and take
//! a last checkpoint; systemd's notify protocol (READY=1 once both
//! instances serve, WATCHDOG=1 from the agent's loop, STOPPING=1) spoken to
//! a socket the test binds; the control socket in a runtime directory; and
//! the .deb (`cargo deb`) unpacked into a directory, its files listed and
//! its unit checked by `systemd-analyze verify`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::up::Up;
use tandem::harness::status::instance_pids;
use tandem::up::dirs::StateDir;

/// The longest any one awaited event may take.
const LIMIT: Duration = Duration::from_secs(30);

/// Waits until `pid` (a child of this test, not yet waited for) has exited:
/// it is a zombie, or gone.
fn wait_exited(pid: i32, up: &Up) {
    tandem::harness::wait_for(
        "the agent to stop",
        LIMIT,
        || up.log(),
        || tandem::harness::proc::gone(pid).then_some(()),
    );
}

fn process_group(pid: i32) -> i32 {
    // SAFETY: getpgid only reads the process group of a pid.
    unsafe { libc::getpgid(pid) }
}

/// After a stop signal: the agent drained (no "without the last
/// checkpoint"), the newest checkpoint holds everything the sink got, and
/// then, through `stop_and_check`, it exited 0 and the sink has every
/// origin sequence number once, in order.
fn check_drained(up: Up) {
    let log = up.log();
    assert!(
        log.contains("stopping: draining in-flight records"),
        "no drain:\n{log}"
    );
    assert!(
        !log.contains("without the last checkpoint"),
        "the drain was cut short:\n{log}"
    );
    let (_, checkpoint) = StateDir::new(up.state())
        .newest_checkpoint("up")
        .unwrap_or_else(|| panic!("no checkpoint after the drain\n{log}"));
    let out = std::fs::read_to_string(&up.out).unwrap();
    let last: u64 = out
        .lines()
        .last()
        .and_then(|l| l.split(',').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("the sink got nothing\n{log}"));
    assert_eq!(
        checkpoint.seq.0, last,
        "the last checkpoint is not at the last record the sink got\n{log}"
    );
    // The agent is a zombie by now: the signal `stop_and_check` sends
    // changes nothing, and its exit status is read.
    let records = up.stop_and_check();
    assert!(records > 0);
}

#[test]
fn a_terminals_ctrl_c_reaches_the_agent_alone_and_it_drains() {
    let up = Up::launch_with(
        "svc-pgrp",
        |up| up.graph_text("v1", 1.0),
        // As a shell starts a foreground job: a process group of its own.
        |command| {
            command.process_group(0);
        },
    );
    let status = up.wait_both_serving();
    up.wait_equal_hashes();
    let agent = status["agent_pid"].as_i64().unwrap() as i32;
    assert_eq!(process_group(agent), agent);
    for pid in instance_pids(&status) {
        assert_ne!(
            process_group(pid),
            agent,
            "instance {pid} is in the agent's process group"
        );
    }
    // What a terminal does on Ctrl-C: SIGINT to the foreground group.
    up.kill(-agent, libc::SIGINT);
    wait_exited(agent, &up);
    check_drained(up);
}

#[test]
fn a_second_stop_signal_during_the_drain_kills_the_instances_and_exits_130() {
    let up = Up::start("svc-abandon", "v1", 1.0);
    let status = up.wait_both_serving();
    let instances = instance_pids(&status);
    assert_eq!(instances.len(), 2, "{status}");
    // Stopped instances cannot take the last checkpoint: the drain waits.
    for &pid in &instances {
        up.kill(pid, libc::SIGSTOP);
    }
    up.signal(libc::SIGINT);
    up.wait_log("the drain", |log| {
        log.contains("stopping: draining in-flight records")
    });
    let (exit, log) = up.interrupt();
    assert_eq!(exit.code(), Some(130), "{log}");
    assert!(
        log.contains("second stop signal: exiting without draining"),
        "{log}"
    );
    assert!(
        !log.contains("without the last checkpoint"),
        "the agent waited for the drain:\n{log}"
    );
    for pid in instances {
        tandem::harness::wait_for(
            "the instances to be killed",
            LIMIT,
            || format!("instance {pid} still runs"),
            || tandem::harness::proc::gone(pid).then_some(()),
        );
    }
}

/// Reads notify datagrams until `done` holds for what arrived; returns it.
fn notifications(
    socket: &UnixDatagram,
    up: &Up,
    what: &str,
    done: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    let mut seen = Vec::new();
    let deadline = Instant::now() + LIMIT;
    let mut buf = [0u8; 4096];
    while !done(&seen) {
        assert!(
            Instant::now() < deadline,
            "no {what} within {LIMIT:?}; got {seen:?}\n{}",
            up.log()
        );
        if let Ok(n) = socket.recv(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]);
            seen.extend(text.lines().map(str::to_owned));
        }
    }
    seen
}

#[test]
fn under_systemd_it_says_ready_feeds_the_watchdog_and_drains_on_sigterm() {
    let dir = std::env::temp_dir().join(format!("tandem-svc-notify-socket-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let up = Up::launch_with(
        "svc-notify",
        |up| up.graph_text("v1", 1.0),
        |command| {
            command
                .env("NOTIFY_SOCKET", &path)
                // Pings every 100 ms.
                .env("WATCHDOG_USEC", "200000")
                .env_remove("WATCHDOG_PID");
        },
    );
    let seen = notifications(&socket, &up, "READY=1", |s| {
        s.iter().any(|l| l == "READY=1")
    });
    // Ready means redundant: both instances serve when it is said.
    let status = up.status();
    assert!(
        status["instances"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["role"] == "serving"),
        "READY=1 before both instances served: {status}"
    );
    assert!(
        seen.iter().any(|l| l.starts_with("STATUS=")),
        "READY=1 without a STATUS=: {seen:?}"
    );
    // The instances speak for nothing: the variables are not theirs.
    for pid in instance_pids(&status) {
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
        let environ = String::from_utf8_lossy(&environ);
        for var in tandem::service::INHERITED {
            assert!(
                !environ.contains(&format!("{var}=")),
                "instance {pid} inherited {var}"
            );
        }
    }
    let pings = notifications(&socket, &up, "three WATCHDOG=1 after READY=1", |s| {
        s.iter().filter(|l| *l == "WATCHDOG=1").count() >= 3
    });
    assert!(pings.iter().all(|l| l != "READY=1"), "READY=1 said twice");

    let agent = status["agent_pid"].as_i64().unwrap() as i32;
    up.kill(agent, libc::SIGTERM);
    notifications(&socket, &up, "STOPPING=1", |s| {
        s.iter().any(|l| l == "STOPPING=1")
    });
    wait_exited(agent, &up);
    check_drained(up);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_control_socket_can_live_in_a_runtime_directory() {
    let up = Up::launch_with(
        "svc-runtime",
        |up| up.graph_text("v1", 1.0),
        |command| {
            // Set before `launch_with` adds --state-dir: the socket moves.
            let run = std::env::temp_dir().join(format!("tandem-svc-run-{}", std::process::id()));
            command.env("TANDEM_RUNTIME_DIR", run);
        },
    );
    let run = std::env::temp_dir().join(format!("tandem-svc-run-{}", std::process::id()));
    let socket = run.join("agent.sock");
    let deadline = Instant::now() + LIMIT;
    while !socket.exists() {
        assert!(Instant::now() < deadline, "no socket\n{}", up.log());
        std::thread::sleep(Duration::from_millis(10));
    }
    let mode = std::fs::metadata(&run).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "the runtime directory is {mode:o}");
    assert!(!up.state().join("agent.sock").exists());

    // `tandem status` finds it the same way: by the variable, or the flag.
    let by_env = Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args(["status", "--json"])
        .env("TANDEM_RUNTIME_DIR", &run)
        .output()
        .unwrap();
    assert!(
        by_env.status.success(),
        "{}",
        String::from_utf8_lossy(&by_env.stderr)
    );
    let by_flag = up.cli(&["status", "--runtime-dir", run.to_str().unwrap()]);
    assert!(by_flag.is_ok(), "{by_flag:?}");
    // The state directory alone names a socket that is not there, and the
    // message says what to give.
    let err = up.cli(&["status"]).unwrap_err();
    assert!(err.contains("--runtime-dir"), "{err}");
    up.stop_and_check();
    let _ = std::fs::remove_dir_all(&run);
}

#[test]
fn tandem_run_checkpoints_and_exits_0_on_sigterm() {
    use std::io::{BufRead as _, BufReader};
    let dir = std::env::temp_dir().join(format!("tandem-svc-run-term-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let graph = dir.join("meter.toml");
    std::fs::write(
        &graph,
        r#"[graph]
name = "meter"

[sources.gen]
kind = "synthetic"
channels = ["power"]
rate = 200
shape = "constant"
amplitude = 1000.0

[vertices.energy]
kind = "integrate"
inputs = ["gen.power"]

[sinks.out]
kind = "count"
inputs = ["energy"]
"#,
    )
    .unwrap();
    let state = dir.join("state");
    let mut child = Command::new(env!("CARGO_BIN_EXE_tandem"))
        .arg("run")
        .arg(&graph)
        .arg("--state-dir")
        .arg(&state)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("Ctrl-C stops") {
        line.clear();
        assert!(err.read_line(&mut line).unwrap() > 0, "the run ended early");
    }
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: kill(2) only sends a signal, to a process this test started.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut err, &mut rest).unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "exit {status}\n{rest}");
    assert!(rest.contains("stopping: draining"), "{rest}");
    let checkpoints = std::fs::read_dir(&state)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tdc"))
        .count();
    assert!(
        checkpoints > 0,
        "no checkpoint in {}\n{rest}",
        state.display()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_graph_can_come_from_the_environment() {
    let missing = std::env::temp_dir().join("tandem-svc-no-such-graph.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_tandem"))
        .arg("up")
        .env("TANDEM_GRAPH", &missing)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(missing.to_str().unwrap()), "{err}");
}

/// A tool the packaging test needs: present, or the test is skipped
/// (and fails under CI, where .ci/run installs it).
fn tool(program: &str, args: &[&str], install: &str) -> bool {
    let found = Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "`{program} {}` does not run under CI; {install}",
            args.join(" ")
        );
        println!("skipped: {install}");
    }
    found
}

fn run_ok(command: &mut Command) -> String {
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The .deb of the binary this test was built with (no second build: a
/// target directory of its own holds that binary where `cargo deb
/// --no-build` looks), unpacked as `dpkg -i` would lay it out.
#[test]
fn the_deb_installs_the_binary_the_unit_and_its_configuration() {
    if !tool("cargo", &["deb", "--version"], "cargo install cargo-deb") {
        return;
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let dir = std::env::temp_dir().join(format!("tandem-svc-deb-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let target = dir.join("target");
    std::fs::create_dir_all(target.join("release")).unwrap();
    std::fs::copy(
        env!("CARGO_BIN_EXE_tandem"),
        target.join("release").join("tandem"),
    )
    .unwrap();
    let out = dir.join("out");
    run_ok(
        Command::new("cargo")
            .args(["deb", "-p", "tandem", "--no-build", "--strip", "--fast"])
            .arg("--output")
            .arg(&out)
            .env("CARGO_TARGET_DIR", &target)
            .current_dir(workspace),
    );
    let deb: PathBuf = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .expect("cargo deb made no .deb");

    // The file list.
    let listing = run_ok(Command::new("dpkg-deb").arg("--contents").arg(&deb));
    let files: Vec<&str> = listing
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .collect();
    let unit_path = files
        .iter()
        .find(|f| f.ends_with("systemd/system/tandem.service"))
        .unwrap_or_else(|| panic!("no unit in {files:?}"))
        .trim_start_matches('.')
        .to_owned();
    for wanted in [
        "./usr/bin/tandem",
        "./etc/tandem/tandem.env",
        "./etc/tandem/graphs/home.toml",
        "./usr/share/doc/tandem/service.md",
    ] {
        assert!(files.contains(&wanted), "{wanted} not in {files:?}");
    }
    let root = dir.join("root");
    run_ok(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root));
    let control = dir.join("control");
    run_ok(Command::new("dpkg-deb").arg("-e").arg(&deb).arg(&control));

    // Configuration survives upgrades; the scripts make the user and groups.
    let conffiles = std::fs::read_to_string(control.join("conffiles")).unwrap();
    for conf in ["/etc/tandem/tandem.env", "/etc/tandem/graphs/home.toml"] {
        assert!(conffiles.lines().any(|l| l == conf), "{conf}: {conffiles}");
    }
    let postinst = std::fs::read_to_string(control.join("postinst")).unwrap();
    for needed in ["useradd --system", "groupadd --system", "i2c spi gpio"] {
        assert!(postinst.contains(needed), "postinst lacks {needed}");
    }
    assert!(!postinst.contains("#DEBHELPER#"), "postinst: {postinst}");
    for script in ["postinst", "postrm", "prerm"] {
        let path = control.join(script);
        if path.exists() {
            run_ok(Command::new("sh").arg("-n").arg(&path));
        }
    }

    // The packaged binary accepts the packaged graph, and the environment
    // file names it.
    let binary = root.join("usr/bin/tandem");
    let graph = root.join("etc/tandem/graphs/home.toml");
    run_ok(Command::new(&binary).arg("check").arg(&graph));
    let env = std::fs::read_to_string(root.join("etc/tandem/tandem.env")).unwrap();
    for line in [
        "TANDEM_GRAPH=/etc/tandem/graphs/home.toml",
        "TANDEM_STATE_DIR=/var/lib/tandem",
        "TANDEM_RUNTIME_DIR=/run/tandem",
    ] {
        assert!(env.lines().any(|l| l == line), "tandem.env lacks {line}");
    }

    // The unit as installed, checked by systemd with its paths pointing
    // into the unpacked tree (verify wants ExecStart= to exist).
    if !tool("systemd-analyze", &["--version"], "apt-get install systemd") {
        return;
    }
    let unit = std::fs::read_to_string(root.join(unit_path.trim_start_matches('/'))).unwrap();
    for needed in [
        "Type=notify",
        "WatchdogSec=",
        "KillMode=mixed",
        "Restart=on-failure",
        "ProtectSystem=strict",
        "User=tandem",
    ] {
        assert!(unit.contains(needed), "the unit lacks {needed}");
    }
    let rooted = |p: &str| format!("{}{p}", root.display());
    let local = unit
        .replace(
            "ExecStart=/usr/bin/tandem",
            &format!("ExecStart={}", rooted("/usr/bin/tandem")),
        )
        .replace(
            "EnvironmentFile=/etc/tandem/",
            &format!("EnvironmentFile={}", rooted("/etc/tandem/")),
        );
    let units = dir.join("units");
    std::fs::create_dir_all(&units).unwrap();
    let local_unit = units.join("tandem.service");
    std::fs::write(&local_unit, local).unwrap();
    let verify = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&local_unit)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&verify.stderr);
    // Only what concerns this unit: the host's own units may warn too.
    let ours: Vec<&str> = said.lines().filter(|l| l.contains("tandem")).collect();
    assert!(
        verify.status.success() && ours.is_empty(),
        "systemd-analyze verify: {said}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
