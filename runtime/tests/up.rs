//! `tandem up` as a user runs it: a real agent process and its blue and green
//! instance processes, killed, stopped, fed bad peers and restarted, with the
//! merged output file checked record by record.
//!
//! Every wait is on an event (a status field, a file, a log line) with a
//! bound; the agent is killed when a test ends, however it ends.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use tandem::harness::proc::{gone, signal};
use tandem::harness::status::{last_barrier_id, serving_pids};
use tandem::harness::{Agent as _, Launcher, Scratch, Up};

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::Value;
use tandem::net::{Client, TransportOptions, CLOSE_BAD_FRAME};
use tandem::up::dirs::StateDir;
use tandem_core::ha::{Color, ToAgent};
use tandem_core::wire;

/// The longest any one awaited event may take.
const LIMIT: Duration = Duration::from_secs(20);

/// The `[ha]` table of tests that are not about liveness: a generous
/// heartbeat timeout, so that what they assert does not hang on how busy
/// two cores running debug builds are. The stopped-instance test keeps 100 ms.
const PATIENT: &str = r#"timeout = "1s""#;

/// This file's graph, in a test's directory.
trait Files {
    fn output(&self) -> PathBuf;
    fn graph(&self, ha: &str) -> PathBuf;
}

impl Files for Scratch {
    fn output(&self) -> PathBuf {
        self.0.join("out.csv")
    }

    /// A synthetic 1000 W at 2000 records/s into an energy integrator,
    /// written to `out.csv`; `ha` is the body of the `[ha]` table.
    fn graph(&self, ha: &str) -> PathBuf {
        let file = self.0.join("graph.toml");
        std::fs::write(
            &file,
            format!(
                r#"[graph]
name = "uptest"

[ha]
{ha}

[sources.gen]
kind = "synthetic"
channels = ["power"]
rate = 2000
shape = "constant"
amplitude = 1000.0

[vertices.energy]
kind = "integrate"
inputs = ["gen.power"]

[sinks.out]
kind = "file"
inputs = ["energy"]
path = "{}"
format = "csv"
"#,
                self.output().display()
            ),
        )
        .unwrap();
        file
    }
}

/// Waits up to [`LIMIT`] for `probe` to return something; panics naming
/// `what`, with `context()` (the agent's log), when it does not.
fn wait_for<T>(what: &str, context: impl Fn() -> String, probe: impl FnMut() -> Option<T>) -> T {
    tandem::harness::wait_for(what, LIMIT, context, probe)
}

/// `tandem up GRAPH --state-dir STATE EXTRA..`, its waits bounded by [`LIMIT`].
fn start(graph: &Path, state: &Path, extra: &[&str]) -> Up {
    Launcher::new(env!("CARGO_BIN_EXE_tandem"), graph, state)
        .args(extra)
        .bound(LIMIT)
        .spawn()
}

/// One line of the output file.
#[derive(Clone, Copy, Debug)]
struct Row {
    seq: u64,
    value: f64,
}

/// The complete lines of `bytes` (a last line without its newline is still
/// being written, or was cut short by a kill), header lines skipped.
fn rows(bytes: &[u8]) -> Vec<Row> {
    let text = String::from_utf8_lossy(bytes);
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    complete
        .lines()
        .filter(|line| !line.is_empty() && !line.starts_with("seq,"))
        .map(|line| {
            let fields: Vec<&str> = line.split(',').collect();
            assert_eq!(fields.len(), 5, "not a csv record: {line:?}");
            assert_eq!(fields[2], "energy", "{line:?}");
            Row {
                seq: fields[0].parse().unwrap(),
                value: fields[3].parse().unwrap(),
            }
        })
        .collect()
}

fn read_rows(path: &Path) -> Vec<Row> {
    rows(&std::fs::read(path).unwrap_or_default())
}

/// Every origin sequence number from the first to the last, each once, in order.
fn assert_each_seq_once_in_order(rows: &[Row], log: &str) {
    assert!(rows.len() > 1, "hardly any output:\n{log}");
    for pair in rows.windows(2) {
        let (a, b) = (pair[0].seq, pair[1].seq);
        assert!(
            b > a,
            "seq {b} after {a}: a duplicate or out of order\n{log}"
        );
        assert_eq!(b, a + 1, "seqs {}..{b} are missing\n{log}", a + 1);
    }
}

/// Checkpoint files of `color`, oldest first, with their sequence numbers.
fn checkpoints(state: &Path, color: Color) -> Vec<(u64, PathBuf)> {
    let dir = StateDir::new(state).checkpoints(color);
    let mut found: Vec<(u64, PathBuf)> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            let name = path.file_name()?.to_str()?;
            let seq = tandem::checkpoint::parse_file_name(name)?;
            Some((seq.0, path))
        })
        .collect();
    found.sort();
    found
}

/// The origin sequence number in the agent's "resuming from PATH (origin
/// sequence N)" line.
fn resumed_at(log: &str) -> Option<u64> {
    let line = log.lines().find(|l| l.contains("resuming from"))?;
    let tail = line.rsplit_once("origin sequence ")?.1;
    tail.trim_end_matches(')').parse().ok()
}

/// A small xorshift, seeded from the clock and printed, for kill points.
struct Dice(u64);

impl Dice {
    fn new() -> Dice {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
            | 1;
        eprintln!("kill points from seed {seed}");
        Dice(seed)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[test]
fn killing_serving_instances_loses_and_repeats_nothing() {
    let dir = Scratch::new("up-kills");
    let up = start(&dir.graph(PATIENT), &dir.state(), &[]);
    let mut dice = Dice::new();
    let mut killed = Vec::new();
    let mut seen: Vec<(i32, Instant)> = Vec::new();
    while killed.len() < 20 {
        let pids = up.serving_pids(&killed);
        for pid in pids {
            if !seen.iter().any(|&(p, _)| p == pid) {
                seen.push((pid, Instant::now()));
            }
        }
        let victim = pids[killed.len() % 2];
        let (_, since) = seen.iter().find(|&&(p, _)| p == victim).unwrap();
        // An instance that dies within a second of its start is restarted
        // after a growing delay, as in a crash loop: each victim has served
        // for over a second, then dies at a random point in the next 300 ms.
        let at = *since + Duration::from_millis(1000 + dice.below(300));
        std::thread::sleep(at.saturating_duration_since(Instant::now()));
        // SAFETY: kill(2) only sends a signal, to an instance of this test's agent.
        if unsafe { libc::kill(victim, libc::SIGKILL) } == 0 {
            killed.push(victim);
        }
    }
    // Back to two, then a barrier both instances reached after the last
    // kill: the restarted one's state is the survivor's.
    up.serving_pids(&killed);
    let before = up.wait_status("a status", |s| Some(last_barrier_id(s)));
    let barrier = up.wait_status("a barrier after the last kill", |s| {
        (last_barrier_id(s) > before).then(|| s["last_barrier"].clone())
    });
    assert_eq!(barrier["equal"], true, "{barrier}\n{}", up.log());
    let status = up.status();
    for i in status["instances"].as_array().unwrap() {
        assert!(i["restarts"].as_u64().unwrap() >= 10, "{status}");
    }

    let (exit, log) = up.interrupt();
    assert!(exit.success(), "{exit}\n{log}");
    let rows = read_rows(&dir.output());
    assert_eq!(rows[0].seq, 1, "{log}");
    assert_each_seq_once_in_order(&rows, &log);
    assert!(
        rows.last().unwrap().seq >= status["emitted"].as_u64().unwrap(),
        "the file ends before what the agent had emitted: {status}"
    );
}

#[test]
fn killing_both_instances_at_once_loses_and_repeats_nothing() {
    let dir = Scratch::new("up-both");
    let up = start(
        &dir.graph(PATIENT),
        &dir.state(),
        &["--checkpoint-every", "200ms"],
    );
    let mut dice = Dice::new();
    let mut killed = Vec::new();
    for _ in 0..5 {
        let pids = up.serving_pids(&killed);
        // Both restart from the newest checkpoint either wrote, which may
        // lie before or past what the agent has emitted.
        std::thread::sleep(Duration::from_millis(300 + dice.below(300)));
        for pid in pids {
            signal(pid, libc::SIGKILL);
            killed.push(pid);
        }
    }
    up.serving_pids(&killed);
    up.wait_emitting(2000);
    let (exit, log) = up.interrupt();
    assert!(exit.success(), "{exit}\n{log}");
    let rows = read_rows(&dir.output());
    assert_eq!(rows[0].seq, 1, "{log}");
    assert_each_seq_once_in_order(&rows, &log);
}

#[test]
fn an_instance_stopped_past_the_timeout_is_replaced_and_never_heard_from() {
    let dir = Scratch::new("up-sigstop");
    let up = start(&dir.graph(r#"timeout = "100ms""#), &dir.state(), &[]);
    let [stopped, _] = up.serving_pids(&[]);
    signal(stopped, libc::SIGSTOP);
    up.wait_status("blue restarted with a new pid", |s| {
        let [blue, _] = serving_pids(s)?;
        (blue != stopped).then_some(())
    });
    // Were it still there, it would resume and send what it held.
    if !gone(stopped) {
        signal(stopped, libc::SIGCONT);
    }
    assert!(gone(stopped), "the agent left the stopped blue running");
    up.wait_emitting(2000);

    let (exit, log) = up.interrupt();
    assert!(exit.success(), "{exit}\n{log}");
    assert!(log.contains("blue: lost (HeartbeatTimeout)"), "{log}");
    assert_each_seq_once_in_order(&read_rows(&dir.output()), &log);
}

/// A runtime for the test's own QUIC clients (they are made inside it).
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Connects to the agent at `addr` as `client` and says hello; the result
/// of waiting for an answer.
fn hello(
    runtime: &tokio::runtime::Runtime,
    client: &Client,
    addr: SocketAddr,
) -> Result<(), String> {
    runtime.block_on(async {
        let attempt = async {
            let mut link = client.connect(addr, "agent").await?;
            link.writer
                .send(&ToAgent::Hello {
                    color: Color::Green,
                    version: 1,
                    pid: 1,
                })
                .await?;
            link.reader.next().await?;
            Ok::<(), tandem::net::LinkError>(())
        };
        match tokio::time::timeout(LIMIT, attempt).await {
            Ok(result) => result.map_err(|e| e.to_string()),
            Err(_) => panic!("no answer within {LIMIT:?}"),
        }
    })
}

fn local() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
}

fn listen(status: &Value) -> SocketAddr {
    status["listen"].as_str().unwrap().parse().unwrap()
}

fn tandem_status(state: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tandem"))
        .arg("status")
        .arg("--state-dir")
        .arg(state)
        .arg("--json")
        .output()
        .unwrap()
}

#[test]
fn a_client_without_a_certificate_is_refused_and_the_agent_runs_on() {
    let dir = Scratch::new("up-anonymous");
    let mut up = start(&dir.graph(PATIENT), &dir.state(), &[]);
    up.serving_pids(&[]);
    let status = up.status();
    let refused = status["refused_connections"].as_u64().unwrap();

    let runtime = runtime();
    let _inside = runtime.enter();
    let trust = StateDir::new(dir.state()).trust().unwrap();
    let anonymous = Client::anonymous(local(), &trust, TransportOptions::default()).unwrap();
    let outcome = hello(&runtime, &anonymous, listen(&status));
    assert!(outcome.is_err(), "an anonymous client was answered");
    up.wait_status("the refusal counted", |s| {
        (s["refused_connections"].as_u64()? > refused).then_some(())
    });
    assert!(up.running(), "{}", up.log());
    up.wait_emitting(1000);

    // What a user sees from `tandem status`, while it runs and after.
    let shown = tandem_status(&dir.state());
    assert_eq!(shown.status.code(), Some(0));
    let shown: Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert!(shown["refused_connections"].as_u64().unwrap() > refused);
    // Both deliver the 2000 records/s of the source.
    for i in shown["instances"].as_array().unwrap() {
        assert!(i["records_per_sec"].as_f64().unwrap() > 0.0, "{shown}");
    }
    let (exit, log) = up.interrupt();
    assert!(exit.success(), "{exit}\n{log}");
    assert_eq!(tandem_status(&dir.state()).status.code(), Some(1));
}

/// Sends `bytes` raw on a fresh link and expects the agent to close it as
/// a bad frame.
fn send_bad_bytes(
    runtime: &tokio::runtime::Runtime,
    client: &Client,
    addr: SocketAddr,
    bytes: Bytes,
    finish: bool,
) {
    runtime.block_on(async {
        let mut link = client.connect(addr, "agent").await.unwrap();
        link.writer.send_bytes(bytes).await.unwrap();
        if finish {
            link.writer.finish().unwrap();
        }
        let closed = tokio::time::timeout(LIMIT, link.connection.closed())
            .await
            .expect("the agent kept a link that sent garbage");
        match closed {
            quinn::ConnectionError::ApplicationClosed(close) => {
                assert_eq!(close.error_code, quinn::VarInt::from_u32(CLOSE_BAD_FRAME));
            }
            other => panic!("expected a bad-frame close, got {other:?}"),
        }
    });
}

/// A client with a certificate from the site's CA, issued to `name`.
/// Call inside the runtime.
fn site_peer(dir: &Scratch, name: &str) -> Client {
    let state = StateDir::new(dir.state());
    let identity = state.site_ca().unwrap().issue_identity(name).unwrap();
    Client::new(
        local(),
        &identity,
        &state.trust().unwrap(),
        TransportOptions::default(),
    )
    .unwrap()
}

#[test]
fn bad_frames_from_a_site_peer_are_counted_and_output_flows_on() {
    let dir = Scratch::new("up-garbage");
    let mut up = start(&dir.graph(PATIENT), &dir.state(), &[]);
    up.serving_pids(&[]);
    let status = up.status();
    let addr = listen(&status);
    assert_eq!(status["bad_frames"], 0);

    let runtime = runtime();
    let _inside = runtime.enter();
    let peer = site_peer(&dir, "mallory");
    // Not our magic.
    send_bad_bytes(
        &runtime,
        &peer,
        addr,
        Bytes::from_static(b"\x08\0\0\0GET / HTTP"),
        false,
    );
    // A hello cut short, then the stream finished.
    let whole = wire::encode_to_bytes(&ToAgent::Hello {
        color: Color::Blue,
        version: 1,
        pid: 1,
    })
    .unwrap();
    send_bad_bytes(&runtime, &peer, addr, whole.slice(..whole.len() - 3), true);
    // A length far over the cap.
    send_bad_bytes(
        &runtime,
        &peer,
        addr,
        Bytes::from_static(&[0xff, 0xff, 0xff, 0x7f]),
        false,
    );

    // A hello in wire format 1, from an instance of an older release.
    send_bad_bytes(
        &runtime,
        &peer,
        addr,
        Bytes::from_static(&[
            0x0d, 0, 0, 0, b'T', b'D', 1, 0x01, 1, 7, 0, 0, 0, 1, 0, 0, 0,
        ]),
        false,
    );

    let counted = up.wait_status("four bad frames counted", |s| {
        let n = s["bad_frames"].as_u64()?;
        (n >= 4).then_some(n)
    });
    assert_eq!(counted, 4, "{}", up.log());
    wait_for(
        "the old wire format logged",
        || up.log(),
        || {
            up.log()
                .contains("this tandem speaks 2: upgrade the agent and instances together")
                .then_some(())
        },
    );
    assert!(up.running(), "{}", up.log());
    up.wait_emitting(1000);
    let (exit, log) = up.interrupt();
    assert!(exit.success(), "{exit}\n{log}");
    assert_each_seq_once_in_order(&read_rows(&dir.output()), &log);
}

#[test]
fn a_site_peer_claiming_an_instance_colour_is_closed_and_the_instance_untouched() {
    let dir = Scratch::new("up-impostor");
    let up = start(&dir.graph(PATIENT), &dir.state(), &[]);
    let pids = up.serving_pids(&[]);
    let status = up.status();
    let refused_before = status["refused_connections"].as_u64().unwrap();
    let runtime = runtime();
    let _inside = runtime.enter();
    // A certificate from the site CA, but issued to another name.
    let peer = site_peer(&dir, "mallory");
    let hello = wire::encode_to_bytes(&ToAgent::Hello {
        color: Color::Blue,
        version: 1,
        pid: u32::try_from(pids[0]).unwrap(),
    })
    .unwrap();
    send_bad_bytes(&runtime, &peer, listen(&status), hello, false);
    // The agent's stderr reaches the log through a reader thread.
    wait_for(
        "the impostor logged",
        || up.log(),
        || {
            up.log()
                .contains("claimed to be blue without blue's certificate")
                .then_some(())
        },
    );
    up.wait_emitting(1000);
    let after = up.status();
    // `tandem status` shows the attempt.
    assert_eq!(
        after["refused_connections"].as_u64(),
        Some(refused_before + 1),
        "{after}"
    );
    assert_eq!(serving_pids(&after), Some(pids), "{}", up.log());
    assert_eq!(after["instances"][0]["restarts"], 0);
    let (exit, log) = up.interrupt();
    assert!(exit.success(), "{exit}\n{log}");
    assert_each_seq_once_in_order(&read_rows(&dir.output()), &log);
}

/// Runs until each colour has written `count` checkpoints, then kills the
/// agent and waits for its instances to die with it. The output file's
/// length at that point.
fn run_then_kill(dir: &Scratch, graph: &Path, count: usize) -> usize {
    let up = start(graph, &dir.state(), &["--checkpoint-every", "200ms"]);
    let pids = up.serving_pids(&[]);
    wait_for(
        &format!("{count} checkpoints of each colour"),
        || up.log(),
        || {
            Color::BOTH
                .iter()
                .all(|&c| checkpoints(&dir.state(), c).len() >= count)
                .then_some(())
        },
    );
    up.kill();
    wait_for("the instances to die with the agent", String::new, || {
        pids.iter().all(|&p| gone(p)).then_some(())
    });
    std::fs::read(dir.output()).unwrap().len()
}

/// The rows written after `from` bytes, once there are some.
fn rows_after(up: &Up, output: &Path, from: usize) -> Vec<Row> {
    wait_for(
        "output after the restart",
        || up.log(),
        || {
            let bytes = std::fs::read(output).ok()?;
            let after = rows(bytes.get(from..)?);
            (!after.is_empty()).then_some(after)
        },
    )
}

#[test]
fn a_restarted_agent_resumes_from_the_newest_checkpoint() {
    let dir = Scratch::new("up-resume");
    let graph = dir.graph(PATIENT);
    let written = run_then_kill(&dir, &graph, 2);
    let newest = Color::BOTH
        .iter()
        .filter_map(|&c| checkpoints(&dir.state(), c).last().map(|(seq, _)| *seq))
        .max()
        .unwrap();
    let before = rows(&std::fs::read(dir.output()).unwrap()[..written]);

    let up = start(&graph, &dir.state(), &[]);
    let after = rows_after(&up, &dir.output(), written);
    let log = up.log();
    assert_eq!(resumed_at(&log), Some(newest), "{log}");
    // The integrator's total at the checkpoint, as the first run wrote it.
    let at = before
        .iter()
        .rev()
        .find(|r| r.seq <= newest)
        .expect("no output up to the checkpoint");
    assert!(at.value > 0.0, "{at:?}");
    // New input is numbered above anything the first run may have emitted.
    let emitted = before.iter().map(|r| r.seq).max().unwrap();
    assert!(
        after[0].seq > emitted,
        "{:?} reuses a number\n{log}",
        after[0]
    );
    assert!(
        after[0].value >= at.value,
        "the energy total restarted from {:?}, below {at:?} at the checkpoint",
        after[0]
    );
    let (exit, log) = up.interrupt();
    assert!(exit.success(), "{exit}\n{log}");
}

#[test]
fn a_corrupt_newest_checkpoint_is_refused_by_name_and_the_one_before_used() {
    let dir = Scratch::new("up-corrupt");
    let graph = dir.graph(PATIENT);
    let written = run_then_kill(&dir, &graph, 3);
    let mut corrupted = Vec::new();
    let mut expected = 0;
    for color in Color::BOTH {
        let found = checkpoints(&dir.state(), color);
        let (_, newest) = found.last().unwrap();
        let mut bytes = std::fs::read(newest).unwrap();
        let middle = bytes.len() / 2;
        for b in &mut bytes[middle..middle + 8] {
            *b ^= 0xa5;
        }
        std::fs::write(newest, bytes).unwrap();
        corrupted.push(newest.clone());
        expected = expected.max(found[found.len() - 2].0);
    }

    let up = start(&graph, &dir.state(), &[]);
    let after = rows_after(&up, &dir.output(), written);
    let log = up.log();
    for path in &corrupted {
        assert!(
            log.contains(&format!("checkpoint {} ", path.display())),
            "{} not named as refused:\n{log}",
            path.display()
        );
    }
    assert_eq!(resumed_at(&log), Some(expected), "{log}");
    let emitted = rows(&std::fs::read(dir.output()).unwrap()[..written])
        .iter()
        .map(|r| r.seq)
        .max()
        .unwrap();
    assert!(
        after[0].seq > emitted,
        "{:?} reuses a number\n{log}",
        after[0]
    );
    let (exit, log) = up.interrupt();
    assert!(exit.success(), "{exit}\n{log}");
}

#[test]
fn a_toggle_keeps_its_position_across_a_restart() {
    let dir = Scratch::new("up-toggle-restart");
    let graph = dir.0.join("toggled.toml");
    std::fs::write(
        &graph,
        format!(
            r#"[graph]
name = "toggled"

[ha]
{PATIENT}

[sources.gen]
kind = "synthetic"
channels = ["power"]
rate = 500
shape = "constant"
amplitude = 1000.0

[sources.features]
kind = "toggles"
names = ["double"]

[vertices.twice]
kind = "scale"
inputs = ["gen.power"]
factor = 2.0

[vertices.power]
kind = "select"
inputs = ["gen.power", "twice", "features.double"]

[sinks.out]
kind = "file"
inputs = ["power"]
path = "{}"
format = "csv"
"#,
            dir.output().display()
        ),
    )
    .unwrap();
    // (seq, value) of the complete lines from byte `from` on.
    let values = |from: usize| -> Vec<(u64, f64)> {
        let bytes = std::fs::read(dir.output()).unwrap_or_default();
        let text = String::from_utf8_lossy(bytes.get(from..).unwrap_or_default()).into_owned();
        let complete = text.rfind('\n').map_or("", |end| &text[..end]).to_owned();
        complete
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with("seq,"))
            .map(|l| {
                let f: Vec<&str> = l.split(',').collect();
                (f[0].parse().unwrap(), f[3].parse().unwrap())
            })
            .collect()
    };

    let up = start(&graph, &dir.state(), &[]);
    up.serving_pids(&[]);
    let switched = Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args(["toggle", "double", "on", "--state-dir"])
        .arg(dir.state())
        .output()
        .unwrap();
    assert!(switched.status.success(), "{switched:?}");
    wait_for(
        "doubled output",
        || up.log(),
        || values(0).iter().any(|&(_, v)| v == 2000.0).then_some(()),
    );
    let (exit, log) = up.interrupt();
    assert!(exit.success(), "{exit}\n{log}");
    let written = std::fs::read(dir.output()).unwrap().len();

    let up = start(&graph, &dir.state(), &[]);
    let status = up.wait_status("the toggle's position", |s| {
        s["toggles"]["features.double"].as_str().map(str::to_owned)
    });
    assert_eq!(status, "on", "{}", up.log());
    up.serving_pids(&[]);
    let after = wait_for(
        "output after the restart",
        || up.log(),
        || {
            let after = values(written);
            (after.len() > 100).then_some(after)
        },
    );
    assert!(
        after.iter().all(|&(_, v)| v == 2000.0),
        "the toggle went back to the graph's `on` list after the restart: {:?}",
        &after[..after.len().min(10)]
    );
    let (exit, log) = up.interrupt();
    assert!(exit.success(), "{exit}\n{log}");
}
