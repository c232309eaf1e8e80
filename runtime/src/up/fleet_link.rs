//! The agent's link to its fleet controller (`tandem up
//! --controller-enrolment FILE`, or `CONFIG/enrolment.json`).
//!
//! The agent dials the controller named in its enrolment and keeps one
//! QUIC connection (mutual TLS from the controller's CA), reconnecting with
//! a back-off of up to [`MAX_BACKOFF`]. Over it:
//!
//! - the agent says hello, then reports its status (`tandem status
//!   --json`) and its bundle history (`DIR/bundles/history.jsonl`, USB
//!   installs included) on connect and whenever they change;
//! - the controller sends bundles. Each is written to a 0600 file in
//!   `DIR/fleet/` and installed through the control socket exactly as
//!   `tandem install FILE` would (`install\tPATH`): the same checks, before
//!   any instance is touched. The answer goes back to the controller.
//!
//! The link talks to the agent only through its control socket, from a
//! thread of its own: it never holds up the records.
//!
//! The history says "promoted" or "rolled back"; the controller also wants
//! to know that the shadow comparison compared output within its policy.
//! The link watches each upgrade's figures in the status and adds them to
//! the history entry they belong to (`comparison`), keeping them in
//! `DIR/fleet/link.json` across restarts.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::ctl::enrol::Enrolment;
use crate::ctl::transport::{self, CONTROLLER_NAME};
use crate::ctl::wire::{self, Decoded, Report, ToController, ToGateway};

/// The longest wait between two attempts to reach the controller.
pub const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// How often the agent's status and history are read.
const POLL: Duration = Duration::from_millis(200);
/// The longest a change of counters alone waits to be reported: a change of
/// state (a role, a phase, a bundle, the history) goes at once.
const COUNTERS_EVERY: Duration = Duration::from_secs(2);
/// History entries reported, at most (the newest).
const HISTORY: usize = 50;
/// Comparisons kept in `link.json`, at most.
const KEPT: usize = 32;

/// What the link keeps across restarts (`DIR/fleet/link.json`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Memory {
    /// The comparison figures last seen for each bundle ("name version").
    comparisons: BTreeMap<String, Value>,
}

/// Why the link did not start; `tandem up` does not start without it.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The enrolment is unreadable, readable by others, or damaged (the
    /// reason names the file).
    #[error("{0}")]
    Enrolment(String),
    /// No thread for the link.
    #[error("cannot start the fleet link: {0}")]
    Thread(#[source] std::io::Error),
}

/// Why a connection to the controller ended. It is logged (once, while the
/// same) and the link dials again.
#[derive(Debug, thiserror::Error)]
enum LinkError {
    /// The controller's address or the link's TLS setup was refused.
    #[error("cannot dial the controller at {controller}: {source}")]
    Dial {
        controller: SocketAddr,
        source: quinn::ConnectError,
    },
    /// No connection came up (not listening, unreachable, TLS refused).
    #[error("cannot reach the controller at {controller}: {source}")]
    Unreachable {
        controller: SocketAddr,
        source: quinn::ConnectionError,
    },
    /// The connection closed before the link's stream opened.
    #[error("the controller's connection closed: {0}")]
    Closed(#[source] quinn::ConnectionError),
    /// A frame could not be sent.
    #[error("cannot write to the controller: {0}")]
    Write(#[source] quinn::WriteError),
    /// A frame could not be read, or was refused (the reason).
    #[error("the controller's link failed: {0}")]
    Read(String),
    /// The task reading frames ended.
    #[error("the controller's link failed: its reader stopped")]
    ReaderStopped,
    /// The controller finished its stream.
    #[error("the controller closed the link")]
    Ended,
    /// A message the controller should not send to a gateway.
    #[error("the controller sent a message out of place: {0:?}")]
    OutOfPlace(Box<ToGateway>),
}

/// The link, until the process ends.
#[derive(Debug)]
pub struct FleetLink {
    enrolment: Enrolment,
    socket: PathBuf,
    dir: PathBuf,
    history: PathBuf,
}

impl FleetLink {
    /// A link for the agent whose control socket is `socket` and state
    /// directory `state_dir`; the enrolment is read and checked now.
    pub fn new(
        enrolment: &Path,
        socket: PathBuf,
        state_dir: &Path,
    ) -> Result<FleetLink, StartError> {
        let enrolment = Enrolment::load(enrolment).map_err(StartError::Enrolment)?;
        Ok(FleetLink {
            enrolment,
            socket,
            dir: state_dir.join("fleet"),
            history: state_dir.join("bundles").join("history.jsonl"),
        })
    }

    /// Runs the link on a thread of its own, for as long as the process.
    pub fn start(self) -> Result<(), StartError> {
        std::thread::Builder::new()
            .name("tandem-fleet".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        tracing::warn!("fleet: cannot start the link's runtime: {e}");
                        return;
                    }
                };
                runtime.block_on(self.run());
            })
            .map(|_| ())
            .map_err(StartError::Thread)
    }

    async fn run(self) {
        let controller = self.enrolment.controller;
        let (identity, trust) = match (self.enrolment.identity(), self.enrolment.trust()) {
            (Ok(i), Ok(t)) => (i, t),
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!("fleet: {e}");
                return;
            }
        };
        let (endpoint, config) = match transport::client(controller, &identity, &trust) {
            Ok(pair) => pair,
            Err(e) => {
                tracing::warn!("fleet: {e}");
                return;
            }
        };
        if let Err(e) = crate::private::create_dir(&self.dir) {
            tracing::warn!("fleet: {}: {e}", self.dir.display());
        }
        remove_leftover_bundles(&self.dir);
        let mut memory = self.load_memory();
        // What the controller sent, kept across connections (not across
        // restarts, which cut the upgrade short).
        let mut pushed = Pushed::new();
        let mut backoff = Duration::from_millis(100);
        let mut last_error = String::new();
        loop {
            let connecting = endpoint.connect_with(config.clone(), controller, CONTROLLER_NAME);
            let result = match connecting {
                Ok(connecting) => match connecting.await {
                    Ok(connection) => {
                        tracing::info!(
                            "fleet: connected to the controller at {controller} as {}",
                            self.enrolment.gateway
                        );
                        last_error.clear();
                        backoff = Duration::from_millis(100);
                        self.serve(&connection, &mut memory, &mut pushed).await
                    }
                    Err(source) => Err(LinkError::Unreachable { controller, source }),
                },
                Err(source) => Err(LinkError::Dial { controller, source }),
            };
            if let Err(e) = result {
                let e = e.to_string();
                if e != last_error {
                    tracing::warn!("fleet: {e}; retrying");
                    last_error = e;
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// One connection, until it closes.
    async fn serve(
        &self,
        connection: &quinn::Connection,
        memory: &mut Memory,
        pushed: &mut Pushed,
    ) -> Result<(), LinkError> {
        let (mut send, recv) = connection.open_bi().await.map_err(LinkError::Closed)?;
        let hello = ToController::Hello {
            gateway: self.enrolment.gateway.to_string(),
            runtime: env!("CARGO_PKG_VERSION").to_owned(),
        };
        write(&mut send, &wire::encode_message(&hello)).await?;
        let (mut frames, _reader) = Reader::start(recv);
        let mut sent: Option<Sent> = None;
        let mut tick = tokio::time::interval(POLL);
        loop {
            tokio::select! {
                // `frames.recv()` is cancel-safe, where `wire::read` is not: a bundle
                // that takes longer than a tick to arrive is read whole.
                frame = frames.recv() => match frame.ok_or(LinkError::ReaderStopped)?.map_err(LinkError::Read) {
                    Ok(Some(Decoded::Bundle(ToGateway::Bundle { sha256, name, version, .. }, bytes))) => {
                        let actual = wire::sha256_hex(&bytes);
                        if actual != sha256 {
                            let text = format!("the bundle's bytes have SHA-256 {actual}, not {sha256}");
                            write(&mut send, &wire::encode_message(&ToController::Answer {
                                sha256, accepted: false, text,
                            })).await?;
                            continue;
                        }
                        // Sent again: the controller sends again what a dropped
                        // link left unanswered.
                        if let Some((_, accepted, text)) = pushed.last.as_ref().filter(|(s, ..)| *s == sha256) {
                            let (accepted, text) = (*accepted, text.clone());
                            write(&mut send, &wire::encode_message(&ToController::Answer {
                                sha256, accepted, text,
                            })).await?;
                            continue;
                        }
                        // One install at a time: the one under way answers for
                        // itself when it ends.
                        if let Some((current, what)) = &pushed.current {
                            if *current != sha256 {
                                let text = format!("{what} is being installed; send this bundle once it has ended");
                                write(&mut send, &wire::encode_message(&ToController::Answer {
                                    sha256, accepted: false, text,
                                })).await?;
                            }
                            continue;
                        }
                        pushed.current = Some((sha256.clone(), format!("{name} {version}")));
                        tracing::info!("fleet: the controller sent {name} {version}; installing it");
                        let path = self.dir.join(format!("{sha256}.bundle"));
                        let socket = self.socket.clone();
                        let done = pushed.done_tx.clone();
                        tokio::task::spawn_blocking(move || {
                            let text = install(&path, &bytes, &socket);
                            let _ = std::fs::remove_file(&path);
                            let _ = done.send((sha256, text));
                        });
                    }
                    Ok(Some(Decoded::Message(other))) => return Err(LinkError::OutOfPlace(Box::new(other))),
                    Ok(None) => return Err(LinkError::Ended),
                    Err(e) => return Err(e),
                },
                Some((sha256, text)) = pushed.done_rx.recv() => {
                    let accepted = text.starts_with("ok: ");
                    if !accepted && pushed.current.as_ref().is_some_and(|(s, _)| *s == sha256) {
                        pushed.current = None;
                    }
                    let text = text.strip_prefix("ok: ").or(text.strip_prefix("error: "))
                        .unwrap_or(&text).to_owned();
                    // Kept, to say again if the link drops before it is said.
                    pushed.last = Some((sha256.clone(), accepted, text.clone()));
                    write(&mut send, &wire::encode_message(&ToController::Answer {
                        sha256, accepted, text,
                    })).await?;
                }
                _ = tick.tick() => {
                    let report = self.report(memory, &mut pushed.current).await;
                    let now = tokio::time::Instant::now();
                    if let Some(next) = Sent::next(sent.as_ref(), report, now) {
                        write(&mut send, &wire::encode_message(&ToController::Report(next.report.clone()))).await?;
                        sent = Some(next);
                    }
                }
            }
        }
    }

    /// The agent's status and history now, with comparisons added.
    async fn report(
        &self,
        memory: &mut Memory,
        installing: &mut Option<(String, String)>,
    ) -> Report {
        let socket = self.socket.clone();
        let history_file = self.history.clone();
        let read = tokio::task::spawn_blocking(move || {
            let status = crate::up::ask::ask_status(&socket)
                .ok()
                .and_then(|text| serde_json::from_str::<Value>(&text).ok())
                .unwrap_or(Value::Null);
            (status, read_history(&history_file))
        })
        .await;
        let (status, mut history) = read.unwrap_or((Value::Null, Vec::new()));
        if self.observe(&status, memory) {
            self.save_memory(memory).await;
        }
        for entry in &mut history {
            let Some(what) = entry["bundle"].as_str().map(str::to_owned) else {
                continue;
            };
            if let Some((name, version)) = what.split_once(' ') {
                entry["name"] = json!(name);
                entry["version"] = json!(version);
            }
            if entry["result"] == "promoted" {
                if let Some(c) = memory.comparisons.get(&what) {
                    entry["comparison"] = c.clone();
                }
            }
            // The bundle the controller sent has an outcome: no longer installing.
            if installing.as_ref().is_some_and(|(_, w)| *w == what) && entry["result"] != "revoked"
            {
                *installing = None;
            }
        }
        Report {
            status,
            history,
            installing: installing.as_ref().map(|(sha, _)| sha.clone()),
        }
    }

    /// Keeps the figures of a running upgrade's comparison; true when they changed.
    fn observe(&self, status: &Value, memory: &mut Memory) -> bool {
        let upgrade = &status["upgrade"];
        let phase = upgrade["phase"].as_str().unwrap_or("idle");
        if !matches!(phase, "shadow" | "promoted") {
            return false;
        }
        let running = &status["bundles"]["installing"];
        let (Some(name), Some(version)) = (running["name"].as_str(), running["version"].as_str())
        else {
            return false;
        };
        let figures = json!({
            "compared": upgrade["compared"],
            "mismatched": upgrade["mismatched"],
            "noise_floor": upgrade["noise_floor"],
            "max_mismatch": upgrade["max_mismatch"],
            "phase": phase,
        });
        let key = format!("{name} {version}");
        let before = memory.comparisons.get(&key);
        // The figures of the first period (shadow) decide; those of the
        // second, with the roles swapped, add to them.
        let better = before.is_none_or(|b| {
            b["compared"].as_u64().unwrap_or(0) <= figures["compared"].as_u64().unwrap_or(0)
                || b["phase"] != figures["phase"]
        });
        if !better || before == Some(&figures) {
            return false;
        }
        memory.comparisons.insert(key, figures);
        while memory.comparisons.len() > KEPT {
            memory.comparisons.pop_first();
        }
        true
    }

    fn memory_file(&self) -> PathBuf {
        self.dir.join("link.json")
    }

    fn load_memory(&self) -> Memory {
        std::fs::read(self.memory_file())
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    /// Writes `link.json` on a blocking thread: during a shadow period its
    /// figures change at every report, and an fsync must not hold up the
    /// network threads.
    async fn save_memory(&self, memory: &Memory) {
        let bytes = serde_json::to_vec(memory).unwrap_or_default();
        let file = self.memory_file();
        let written = tokio::task::spawn_blocking(move || {
            crate::private::write_atomically(&file, &bytes).map_err(|e| (file, e))
        });
        if let Ok(Err((file, e))) = written.await {
            tracing::warn!("fleet: {}: {e}", file.display());
        }
    }
}

/// The last report sent on a connection.
struct Sent {
    report: Report,
    /// Its [`settled`] part.
    settled: Value,
    at: tokio::time::Instant,
}

impl Sent {
    /// What to send of `report` at `now`, after `last`: all of it when its
    /// state changed, or its counters changed [`COUNTERS_EVERY`] after the
    /// last; else nothing.
    fn next(last: Option<&Sent>, report: Report, now: tokio::time::Instant) -> Option<Sent> {
        let settled = settled(&report);
        let due = match last {
            None => true,
            Some(last) => {
                last.settled != settled
                    || (last.report != report && now >= last.at + COUNTERS_EVERY)
            }
        };
        due.then_some(Sent {
            report,
            settled,
            at: now,
        })
    }
}

/// The part of a report the controller acts on or shows as state: the
/// graph, the bundles, the upgrade's phase, each instance as the controller
/// shows it ([`wire::instances`]), the history and the bundle being
/// installed. Counters (records, comparisons) are the rest.
fn settled(report: &Report) -> Value {
    let status = &report.status;
    json!({
        "graph": status["graph"],
        "bundles": status["bundles"],
        "phase": status["upgrade"]["phase"],
        "instances": wire::instances(status),
        "history": report.history,
        "installing": report.installing,
    })
}

/// What the reader of a connection hands on: a frame, the end of the
/// stream (`Ok(None)`), or why it failed.
type Frame = Result<Option<Decoded<ToGateway>>, String>;

/// The task that reads a connection's frames, so that a frame cut by a
/// tick is never half-read. Dropping it stops the task.
struct Reader(tokio::task::JoinHandle<()>);

impl Reader {
    /// Reads `recv` until it ends or fails, one frame ahead of the link at
    /// most: a frame is read only when there is room to hand it on.
    fn start(mut recv: quinn::RecvStream) -> (tokio::sync::mpsc::Receiver<Frame>, Reader) {
        let (tx, rx) = tokio::sync::mpsc::channel::<Frame>(1);
        let task = tokio::spawn(async move {
            while let Ok(room) = tx.reserve().await {
                let frame = wire::read::<ToGateway>(&mut recv).await;
                let last = !matches!(frame, Ok(Some(_)));
                room.send(frame);
                if last {
                    return;
                }
            }
        });
        (rx, Reader(task))
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Writes `bytes` to `path` (0600) and asks the agent to install it, as
/// `tandem install` does. The agent's answer line.
fn install(path: &Path, bytes: &[u8], socket: &Path) -> String {
    use std::io::Write as _;
    let _ = std::fs::remove_file(path);
    let written = crate::private::file_options()
        .write(true)
        .create_new(true)
        .open(path)
        .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()));
    if let Err(e) = written {
        return format!("error: cannot write {}: {e}", path.display());
    }
    match crate::up::control::request(socket, &format!("install\t{}", path.display())) {
        Ok(answer) => answer,
        Err(e) => format!(
            "error: the agent did not answer on {}: {e}",
            socket.display()
        ),
    }
}

/// The newest entries of the history file (its last 64 KiB).
fn read_history(path: &Path) -> Vec<Value> {
    use std::io::{Read as _, Seek as _, SeekFrom};
    let Ok(mut file) = std::fs::File::open(path) else {
        return Vec::new();
    };
    let len = file.metadata().map_or(0, |m| m.len());
    let start = len.saturating_sub(64 << 10);
    let _ = file.seek(SeekFrom::Start(start));
    let mut bytes = Vec::new();
    let _ = file.take(64 << 10).read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes);
    let mut lines: Vec<Value> = text
        .lines()
        .skip(usize::from(start > 0))
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let excess = lines.len().saturating_sub(HISTORY);
    lines.drain(..excess);
    lines
}

async fn write(send: &mut quinn::SendStream, bytes: &[u8]) -> Result<(), LinkError> {
    send.write_all(bytes).await.map_err(LinkError::Write)
}

/// The bundles the controller sent, across connections.
struct Pushed {
    /// SHA-256 and "name version" of the bundle the agent took, until its
    /// outcome (or its refusal).
    current: Option<(String, String)>,
    /// Installs that ended, with the agent's answer line: a link that
    /// dropped meanwhile says it on the next.
    done_tx: tokio::sync::mpsc::UnboundedSender<(String, String)>,
    done_rx: tokio::sync::mpsc::UnboundedReceiver<(String, String)>,
    /// The last answer (SHA-256, accepted, text), said again when the same
    /// bundle comes again.
    last: Option<(String, bool, String)>,
}

impl Pushed {
    fn new() -> Pushed {
        let (done_tx, done_rx) = tokio::sync::mpsc::unbounded_channel();
        Pushed {
            current: None,
            done_tx,
            done_rx,
            last: None,
        }
    }
}

/// Removes the bundles a controller sent that an earlier run of this
/// agent did not get to install (it stopped, or the power went): each is
/// deleted once its install ends, so any here at start is left over.
fn remove_leftover_bundles(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "bundle") {
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::warn!("fleet: cannot remove {}: {e}", path.display());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::ctl::wire::tests::{block_on, link};

    /// A report with `records` as its counters and `role` as blue's role.
    fn report(records: u64, role: &str) -> Report {
        Report {
            status: json!({
                "emitted": records,
                "instances": [{"color": "blue", "role": role, "lag": records}],
                "upgrade": {"phase": "idle", "compared": records},
            }),
            ..Report::default()
        }
    }

    #[test]
    fn a_change_of_state_is_reported_at_once_and_counters_every_two_seconds() {
        let t0 = tokio::time::Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let first = Sent::next(None, report(1, "serving"), t0).expect("the first goes");
        assert!(Sent::next(Some(&first), report(1, "serving"), ms(5000)).is_none());
        // Counters alone wait.
        assert!(Sent::next(Some(&first), report(2, "serving"), ms(200)).is_none());
        assert!(Sent::next(Some(&first), report(2, "serving"), ms(1800)).is_none());
        let later = Sent::next(Some(&first), report(2, "serving"), ms(2000));
        assert_eq!(later.map(|s| s.report), Some(report(2, "serving")));
        // A role, a phase, a history entry: at once, with the counters.
        let shadow = Sent::next(Some(&first), report(2, "shadow"), ms(200));
        assert_eq!(shadow.map(|s| s.report), Some(report(2, "shadow")));
        let mut upgrading = report(1, "serving");
        upgrading.status["upgrade"]["phase"] = json!("shadow");
        assert!(Sent::next(Some(&first), upgrading, ms(200)).is_some());
        let mut promoted = report(1, "serving");
        promoted
            .history
            .push(json!({"bundle": "home 2.0.0", "result": "promoted"}));
        assert!(Sent::next(Some(&first), promoted, ms(200)).is_some());
    }

    #[test]
    fn a_bundle_slower_than_a_tick_is_read_whole() {
        block_on(async {
            let link = link("slow-bundle").await;
            let (mut to_controller, recv) = link.gateway.open_bi().await.unwrap();
            let hello = ToController::Hello {
                gateway: "gw-1".into(),
                runtime: "0.1.0".into(),
            };
            to_controller
                .write_all(&wire::encode_message(&hello))
                .await
                .unwrap();
            let (mut to_gateway, mut from_gateway) = link.controller.accept_bi().await.unwrap();
            wire::read::<ToController>(&mut from_gateway).await.unwrap();

            let bytes: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
            let header = ToGateway::Bundle {
                rollout: 1,
                sha256: wire::sha256_hex(&bytes),
                name: "home".into(),
                version: "1.2.0".into(),
            };
            let frame = wire::encode_bundle(&header, &bytes).unwrap();
            // The frame arrives in pieces, many ticks apart.
            let controller = tokio::spawn(async move {
                for piece in frame.chunks(frame.len() / 4 + 1) {
                    to_gateway.write_all(piece).await.unwrap();
                    tokio::time::sleep(Duration::from_millis(60)).await;
                }
                to_gateway.finish().unwrap();
                to_gateway
            });

            let (mut frames, _reader) = Reader::start(recv);
            let mut tick = tokio::time::interval(Duration::from_millis(5));
            let mut ticks = 0;
            let mut got = Vec::new();
            loop {
                tokio::select! {
                    frame = frames.recv() => match frame.unwrap() {
                        Ok(Some(frame)) => got.push(frame),
                        Ok(None) => break,
                        Err(e) => panic!("the link failed: {e}"),
                    },
                    _ = tick.tick() => ticks += 1,
                }
            }
            let _to_gateway = controller.await.unwrap();
            assert!(ticks > 20, "only {ticks} ticks while the bundle arrived");
            assert_eq!(got, vec![Decoded::Bundle(header, bytes)]);
        });
    }
}
