//! The agent's control socket (`DIR/agent.sock`): `tandem status`,
//! `upgrade`, `rollback` and `toggle` talk to the agent through it.
//!
//! A client sends one request line and reads one answer line. What an
//! operator can rely on:
//!
//! - Only the agent's own user and root are answered: the socket is mode
//!   0600 in a 0700 directory, and each peer's uid is checked again
//!   (`SO_PEERCRED`); others are refused and logged.
//! - At most [`MAX_CONNECTIONS`] connections are served at once. One that
//!   has not sent its request within [`REQUEST_TIMEOUT`] (or not read its
//!   answer within as long) is closed, and when
//!   all are taken, the oldest one still silent makes room for a new one,
//!   so idle connections cannot starve `tandem status`.
//! - Files named in a request (an upgrade's graph, its executable) are read
//!   here, off the agent's loop, bounded in size and time, and refused unless
//!   they are regular files: a FIFO or a slow disk never stalls the records.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tandem_core::graph::Loaded;
use tandem_core::ha::upgrade::{RollbackError, StartError};
use tandem_core::split::Split;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;

use super::graph::{Opening, SplitGraphError};
use super::toggles::ToggleError;
use crate::bundle::install::{Recheck, RevokeError};

/// Control connections served at once, at most.
pub const MAX_CONNECTIONS: usize = 32;
/// How long a client has to send its request line.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// How long reading the files an upgrade names may take.
pub const FILE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long checking and unpacking a bundle may take.
pub const INSTALL_TIMEOUT: Duration = Duration::from_secs(120);
/// The longest request line.
const MAX_REQUEST_BYTES: u64 = 4096;

/// A request for the agent's hub.
#[derive(Debug)]
pub enum Request {
    /// The status, as JSON.
    Status,
    /// Start a live upgrade.
    Upgrade(Box<UpgradeRequest>),
    /// Abandon the running upgrade.
    Rollback,
    /// Switch a feature toggle.
    Toggle {
        /// `NAME` or `SOURCE.NAME`.
        name: String,
        /// On or off.
        on: bool,
    },
    /// Where bundles go and whom they must be signed by: asked before a
    /// bundle is checked off the hub's loop (the answer goes to the sender).
    Gateway(oneshot::Sender<crate::bundle::Gateway>),
    /// Install a bundle or record a revocation, checked (and a bundle
    /// unpacked) off the hub's loop; or the refusal, to record.
    Install(Box<InstallRequest>),
}

/// A bundle or revocation that `tandem install` (or a controller's push)
/// named, after its checks.
#[derive(Debug)]
pub struct InstallRequest {
    /// The file, as named.
    pub file: PathBuf,
    /// Accepted and unpacked, or why not.
    pub prepared: Result<crate::bundle::Prepared, PrepareError>,
    /// The bundle's `NAME VERSION` when known, else the file (for the history).
    pub what: String,
}

/// An upgrade whose files were read and checked before it reached the hub.
#[derive(Debug)]
pub struct UpgradeRequest {
    /// The new graph file, as the client named it (absolute).
    pub file: PathBuf,
    /// It, loaded.
    pub loaded: Loaded,
    /// It, cut for 1+1.
    pub split: Split,
    /// The executable to run it with (checked), or the running one.
    pub program: Option<PathBuf>,
    /// Length of each supervision period, if not the graph's.
    pub supervise: Option<Duration>,
    /// Or: output records compared per period.
    pub records: Option<u64>,
    /// Longest time a phase may take before the upgrade rolls back.
    pub phase_timeout: Option<Duration>,
}

/// A request and where its answer goes: the status JSON, or a line for
/// people (`Err` is shown as an error).
pub type Envelope = (Request, oneshot::Sender<Result<String, Refused>>);

/// Why a request of the control socket is not done; the client is answered
/// `error: ` and this.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// The request line is refused, or the agent is stopping.
    #[error(transparent)]
    Request(#[from] RequestError),
    /// The upgrade does not start.
    #[error(transparent)]
    Upgrade(#[from] UpgradeError),
    /// No upgrade runs to roll back.
    #[error(transparent)]
    Rollback(#[from] RollbackError),
    /// No such toggle.
    #[error(transparent)]
    Toggle(#[from] ToggleError),
    /// The bundle or revocation is not installed (the refusal is in the
    /// bundle history).
    #[error(transparent)]
    Install(#[from] InstallRefusal),
}

/// Why a peer of the control socket is not answered (it is logged; the
/// peer is told only that it was refused).
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// The kernel did not say who connected.
    #[error("cannot tell who connected ({0})")]
    Unknown(#[source] std::io::Error),
    /// Neither root nor the agent's user.
    #[error(
        "a request from uid {uid} (pid {}): only root and the agent's user (uid {agent}) may control it",
        pid.map_or_else(|| "?".to_owned(), |p| p.to_string())
    )]
    Foreign {
        /// The peer's user.
        uid: u32,
        /// Its process, when the kernel says.
        pid: Option<i32>,
        /// The agent's (effective) user.
        agent: u32,
    },
}

/// Why a request line is refused before it reaches the hub; the client is
/// answered `error: ` and this.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// `install` named no file.
    #[error("install needs a bundle or revocation file")]
    NoBundle,
    /// `upgrade` named no graph.
    #[error("upgrade needs a graph file")]
    NoGraph,
    /// A toggle's position other than `on` or `off`.
    #[error("a toggle is switched `on` or `off`, not `{0}`")]
    TogglePosition(String),
    /// A field that must be a whole number.
    #[error("`{text}` is not a number of {unit}")]
    NotANumber {
        /// The field, as sent.
        text: String,
        /// What it counts (`milliseconds`, `records`).
        unit: &'static str,
    },
    /// A request the agent does not take.
    #[error(
        "unknown request `{0}`; the agent takes `status`, `upgrade`, `rollback`, `toggle` and `install`"
    )]
    Unknown(String),
    /// The upgrade's graph or executable was refused.
    #[error(transparent)]
    UpgradeFile(#[from] UpgradeFileError),
    /// The task reading the upgrade's files ended without an answer.
    #[error("reading the upgrade's files failed")]
    UpgradeReadFailed,
    /// Reading the upgrade's files took longer than [`FILE_TIMEOUT`].
    #[error(
        "reading the upgrade's files took more than {} s; copy them to a local disk",
        FILE_TIMEOUT.as_secs()
    )]
    UpgradeReadSlow,
    /// The hub no longer takes requests.
    #[error("the agent is stopping")]
    Stopping,
}

/// Why an upgrade's graph or executable is refused.
#[derive(Debug, thiserror::Error)]
pub enum UpgradeFileError {
    /// The executable is missing, not one, or others may write it.
    #[error(transparent)]
    Executable(#[from] crate::private::ExecutableError),
    /// The graph file is unreadable or invalid.
    #[error(transparent)]
    Graph(#[from] crate::graph_file::GraphFileError),
    /// The graph cannot run as 1+1.
    #[error("{}: {source}", file.display())]
    Split {
        /// The graph file.
        file: PathBuf,
        /// Why.
        source: tandem_core::split::SplitError,
    },
}

/// Why a bundle or revocation that `install` named was not accepted before
/// it reached the hub (the hub records the refusal and answers with it).
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// The checks refused it (the reason names the file or the bundle).
    #[error(transparent)]
    Refused(#[from] crate::bundle::InstallError),
    /// The task checking it ended without an answer.
    #[error("checking the bundle failed")]
    CheckFailed,
    /// Checking and unpacking it took longer than [`INSTALL_TIMEOUT`].
    #[error(
        "checking the bundle took more than {} s; copy it to a local disk",
        INSTALL_TIMEOUT.as_secs()
    )]
    CheckSlow,
}

/// Why a new graph cannot replace the running one by a live upgrade: it
/// must change vertices only, keep every channel, and lose no state.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// It reads other source channels.
    #[error(
        "the new graph reads other source channels than the running one; an upgrade \
         changes vertices only"
    )]
    OtherInputs,
    /// It no longer produces channels the sinks read.
    #[error(
        "the new graph no longer produces {} for the sinks; an upgrade keeps every channel the sinks read",
        .0.join(", ")
    )]
    MissingOutputs(Vec<String>),
    /// Its sources or sinks differ.
    #[error(
        "the new graph changes sources or sinks; an upgrade changes vertices only \
         (restart `tandem up` to change devices or outputs)"
    )]
    OtherEnds,
    /// `tandem diff` finds changes that drop state.
    #[error("the upgrade would lose state: {}", .0.join("; "))]
    LosesState(Vec<String>),
}

/// Why an upgrade does not start.
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    /// One runs already, or both instances are not serving.
    #[error(transparent)]
    Start(#[from] StartError),
    /// The file is another graph.
    #[error(
        "{} is graph `{found}`, not `{running}`; keep `name = \"{running}\"` under [graph]",
        file.display()
    )]
    OtherGraph {
        /// The file.
        file: PathBuf,
        /// Its graph's name.
        found: String,
        /// The running graph's name.
        running: String,
    },
    /// The file is the graph that runs.
    #[error("{} is the graph running now", file.display())]
    SameVersion {
        /// The file.
        file: PathBuf,
    },
    /// The new graph changes more than vertices.
    #[error("{}: {refusal}", file.display())]
    Refused {
        /// The file.
        file: PathBuf,
        /// What it changes.
        refusal: Refusal,
    },
}

/// Why a bundle (or revocation) is not installed; kept in the bundle history.
#[derive(Debug, thiserror::Error)]
pub enum InstallRefusal {
    /// Its checks before the hub refused it.
    #[error(transparent)]
    Prepare(#[from] PrepareError),
    /// The revocation was not recorded.
    #[error(transparent)]
    Revocation(#[from] RevokeError),
    /// The anti-rollback floor or a revocation, checked again, or another
    /// install under way.
    #[error("{} is refused: {reason}", file.display())]
    Policy {
        /// The bundle file.
        file: PathBuf,
        /// Why.
        reason: Box<Recheck>,
    },
    /// An upgrade runs, or both instances are not serving.
    #[error("{} is refused: {error}", file.display())]
    Start {
        /// The bundle file.
        file: PathBuf,
        /// Why.
        error: StartError,
    },
    /// The bundle is the one that runs.
    #[error("{} is refused: {id} runs now", file.display())]
    InUse {
        /// The bundle file.
        file: PathBuf,
        /// `NAME VERSION`.
        id: String,
    },
    /// Its unpacked files could not be put in place.
    #[error("cannot unpack into {} ({error}); nothing changed", dir.display())]
    Unpack {
        /// Where they go.
        dir: PathBuf,
        /// What went wrong.
        error: std::io::Error,
    },
    /// Its graph cannot replace the running one.
    #[error("{} is refused: {error}", file.display())]
    Upgrade {
        /// The bundle file.
        file: PathBuf,
        /// Why.
        error: UpgradeError,
    },
}

/// One served connection: whether its request arrived, and how to drop it.
struct Served {
    asked: Arc<AtomicBool>,
    handle: AbortHandle,
}

/// Answers the control socket until the runtime stops; the hub answers
/// each request through `requests`.
pub async fn serve(listener: UnixListener, requests: mpsc::UnboundedSender<Envelope>) {
    let mut served: VecDeque<Served> = VecDeque::new();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors, say: the bound below keeps ours few,
                // so wait for others to free theirs and go on.
                tracing::warn!("control socket: cannot accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if let Err(reason) = check_peer(&stream) {
            tracing::warn!("control socket: {reason}; refused");
            let _ = stream.try_write(
                b"error: only root and the agent's user may control this agent; refused\n",
            );
            continue;
        }
        served.retain(|s| !s.handle.is_finished());
        if served.len() >= MAX_CONNECTIONS {
            match served.iter().position(|s| !s.asked.load(Ordering::Relaxed)) {
                Some(oldest) => {
                    if let Some(idle) = served.remove(oldest) {
                        idle.handle.abort();
                    }
                }
                None => {
                    let _ = stream.try_write(
                        b"error: the agent is busy answering other requests; try again\n",
                    );
                    continue;
                }
            }
        }
        let asked = Arc::new(AtomicBool::new(false));
        let handle = tokio::spawn(connection(stream, requests.clone(), asked.clone()));
        served.push_back(Served {
            asked,
            handle: handle.abort_handle(),
        });
    }
}

/// Refuses peers other than the agent's user and root.
fn check_peer(stream: &UnixStream) -> Result<(), PeerError> {
    let cred = stream.peer_cred().map_err(PeerError::Unknown)?;
    if crate::private::may_control(cred.uid()) {
        return Ok(());
    }
    Err(PeerError::Foreign {
        uid: cred.uid(),
        pid: cred.pid(),
        agent: crate::private::effective_uid(),
    })
}

async fn connection(
    stream: UnixStream,
    requests: mpsc::UnboundedSender<Envelope>,
    asked: Arc<AtomicBool>,
) {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(read.take(MAX_REQUEST_BYTES));
    match tokio::time::timeout(REQUEST_TIMEOUT, reader.read_line(&mut line)).await {
        Ok(Ok(n)) if n > 0 => {}
        _ => return,
    }
    asked.store(true, Ordering::Relaxed);
    let (json, answer) = match parse(line.trim(), &requests).await {
        Ok(request) => {
            // The status is JSON, answered as it is; the rest are lines for people.
            let json = matches!(request, Request::Status);
            let (tx, rx) = oneshot::channel();
            if requests.send((request, tx)).is_err() {
                return;
            }
            let answer = rx
                .await
                .unwrap_or_else(|_| Err(RequestError::Stopping.into()));
            (json, answer)
        }
        Err(refused) => (false, Err(refused.into())),
    };
    let answer = match answer {
        Ok(text) if json => text,
        Ok(text) => format!("ok: {text}"),
        Err(refused) => format!("error: {refused}"),
    };
    // A client that asked and never reads keeps no slot for ever.
    let answered = async {
        write.write_all(answer.as_bytes()).await?;
        write.write_all(b"\n").await
    };
    let _ = tokio::time::timeout(REQUEST_TIMEOUT, answered).await;
}

/// Parses a request line: `status`; `rollback`; `toggle NAME on|off`;
/// `upgrade FILE [PROGRAM [SUPERVISE_MS [RECORDS [PHASE_TIMEOUT_MS]]]]`;
/// `install FILE`; tab-separated, empty fields for defaults.
async fn parse(
    line: &str,
    requests: &mpsc::UnboundedSender<Envelope>,
) -> Result<Request, RequestError> {
    let mut words = line.split('\t');
    match words.next() {
        Some("install") => {
            let file = words
                .next()
                .filter(|f| !f.is_empty())
                .map(PathBuf::from)
                .ok_or(RequestError::NoBundle)?;
            prepare_install(requests, file).await
        }
        Some("status") => Ok(Request::Status),
        Some("rollback") => Ok(Request::Rollback),
        Some("toggle") => {
            let name = words.next().unwrap_or("").to_owned();
            let on = match words.next() {
                Some("on") => true,
                Some("off") => false,
                other => return Err(RequestError::TogglePosition(other.unwrap_or("").to_owned())),
            };
            Ok(Request::Toggle { name, on })
        }
        Some("upgrade") => {
            let file = words
                .next()
                .filter(|f| !f.is_empty())
                .map(PathBuf::from)
                .ok_or(RequestError::NoGraph)?;
            let program = words.next().filter(|p| !p.is_empty()).map(PathBuf::from);
            let supervise = optional(words.next(), "milliseconds")?.map(Duration::from_millis);
            let records = optional(words.next(), "records")?;
            let phase_timeout = optional(words.next(), "milliseconds")?.map(Duration::from_millis);
            let read = tokio::task::spawn_blocking(move || read_upgrade(file, program));
            let (file, loaded, split, program) =
                match tokio::time::timeout(FILE_TIMEOUT, read).await {
                    Ok(Ok(read)) => read?,
                    Ok(Err(_)) => return Err(RequestError::UpgradeReadFailed),
                    Err(_) => return Err(RequestError::UpgradeReadSlow),
                };
            Ok(Request::Upgrade(Box::new(UpgradeRequest {
                file,
                loaded,
                split,
                program,
                supervise,
                records,
                phase_timeout,
            })))
        }
        _ => Err(RequestError::Unknown(line.to_owned())),
    }
}

/// An optional whole number of `unit`: an empty or missing field is `None`.
fn optional(word: Option<&str>, unit: &'static str) -> Result<Option<u64>, RequestError> {
    match word.filter(|w| !w.is_empty()) {
        Some(n) => n.parse().map(Some).map_err(|_| RequestError::NotANumber {
            text: n.to_owned(),
            unit,
        }),
        None => Ok(None),
    }
}

/// Checks a bundle or revocation off the hub's loop (the gateway's paths
/// asked from the hub, the file verified and unpacked by a blocking task)
/// and makes the request that hands it, or its refusal, to the hub.
async fn prepare_install(
    requests: &mpsc::UnboundedSender<Envelope>,
    file: PathBuf,
) -> Result<Request, RequestError> {
    let (tx, rx) = oneshot::channel();
    let (ignored, _) = oneshot::channel();
    requests
        .send((Request::Gateway(tx), ignored))
        .map_err(|_| RequestError::Stopping)?;
    let gateway = rx.await.map_err(|_| RequestError::Stopping)?;
    // The wall clock, read once for this install's expiry check.
    let now = crate::bundle::UnixTime::now();
    let shown = file.clone();
    let check = tokio::task::spawn_blocking(move || {
        let result = gateway.prepare(&file, now);
        let what = match &result {
            Ok(crate::bundle::Prepared::Bundle(b)) => b.manifest.id(),
            Ok(crate::bundle::Prepared::Revocation { revocation, .. }) => {
                format!("revocation of {} {}", revocation.name, revocation.version)
            }
            Err(e) => crate::bundle::install::Installs::what(&file, e),
        };
        (result.map_err(PrepareError::Refused), what)
    });
    let (prepared, what) = match tokio::time::timeout(INSTALL_TIMEOUT, check).await {
        Ok(Ok(done)) => done,
        Ok(Err(_)) => (Err(PrepareError::CheckFailed), shown.display().to_string()),
        Err(_) => (Err(PrepareError::CheckSlow), shown.display().to_string()),
    };
    Ok(Request::Install(Box::new(InstallRequest {
        file: shown,
        prepared,
        what,
    })))
}

/// Installs the bundle (or records the revocation) `file` on the agent
/// whose hub takes `requests`, exactly as `tandem install FILE` does: the
/// same checks, off the hub's loop, before any instance is touched; then
/// the live upgrade. The answer is the line `tandem install` prints (`Err`:
/// refused, with the reason; the refusal is recorded in the history). For
/// a controller's push: write the bundle to a regular file first.
pub async fn install(
    requests: &mpsc::UnboundedSender<Envelope>,
    file: PathBuf,
) -> Result<String, Refused> {
    let request = prepare_install(requests, file).await?;
    let (tx, rx) = oneshot::channel();
    requests
        .send((request, tx))
        .map_err(|_| RequestError::Stopping)?;
    rx.await
        .unwrap_or_else(|_| Err(RequestError::Stopping.into()))
}

type ReadUpgrade = (PathBuf, Loaded, Split, Option<PathBuf>);

/// Reads and checks an upgrade's graph and executable (blocking).
fn read_upgrade(file: PathBuf, program: Option<PathBuf>) -> Result<ReadUpgrade, UpgradeFileError> {
    let program = program
        .map(|p| crate::private::trusted_executable(&p))
        .transpose()?;
    let graph = super::graph::load(&file, Opening::RegularFile);
    let file = std::fs::canonicalize(&file).unwrap_or(file);
    match graph {
        Ok(graph) => Ok((file, graph.loaded, graph.split, program)),
        Err(SplitGraphError::Graph(e)) => Err(e.into()),
        // Named by the path the instances will load it by.
        Err(SplitGraphError::Split { source, .. }) => Err(UpgradeFileError::Split { file, source }),
    }
}

/// Sends one request to the agent of `socket` and returns its answer.
pub fn request(socket: &Path, line: &str) -> std::io::Result<String> {
    // An install may take the agent INSTALL_TIMEOUT to check and unpack;
    // anything else is answered at once or after FILE_TIMEOUT at most.
    let wait = if line.starts_with("install\t") {
        INSTALL_TIMEOUT + Duration::from_secs(10)
    } else {
        Duration::from_secs(10)
    };
    request_within(socket, line, wait)
}

/// [`request`], waiting up to `wait` for the answer.
pub fn request_within(socket: &Path, line: &str, wait: Duration) -> std::io::Result<String> {
    use std::io::{Read as _, Write as _};
    let mut stream = std::os::unix::net::UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(wait))?;
    // A refusal may come before the request is read; it is still the answer.
    let _ = stream
        .write_all(line.as_bytes())
        .and_then(|()| stream.write_all(b"\n"));
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    while answer.len() < 1 << 20 {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(chunk.get(..n).unwrap_or_default()),
            // The agent closed with our request unread: it refused it, and
            // what it said before is the answer.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset && !answer.is_empty() => {
                break
            }
            Err(e) => return Err(e),
        }
    }
    Ok(String::from_utf8_lossy(&answer).trim_end().to_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// What a client is told for `line`, when the agent refuses it.
    fn refusal(line: &str) -> String {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (requests, _hub) = mpsc::unbounded_channel();
        match runtime.block_on(parse(line, &requests)) {
            Ok(request) => panic!("`{line}` was taken: {request:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_bad_request_is_refused_saying_what_is_valid() {
        assert_eq!(
            refusal("toggle\tfeatures.double\tmaybe"),
            "a toggle is switched `on` or `off`, not `maybe`"
        );
        assert_eq!(
            refusal("upgrade\t/g.toml\t\t1.5s"),
            "`1.5s` is not a number of milliseconds"
        );
        assert_eq!(
            refusal("upgrade\t/g.toml\t\t\tmany"),
            "`many` is not a number of records"
        );
        assert_eq!(refusal("upgrade"), "upgrade needs a graph file");
        assert_eq!(
            refusal("install\t"),
            "install needs a bundle or revocation file"
        );
        assert!(refusal("reboot").starts_with("unknown request `reboot`; the agent takes"));
    }

    #[test]
    fn an_upgrade_to_a_missing_graph_names_the_file() {
        let said = refusal("upgrade\t/nonexistent/tandem-new.toml");
        assert!(said.contains("/nonexistent/tandem-new.toml"), "{said}");
    }

    #[test]
    fn a_foreign_peer_is_named_in_the_log() {
        let refused = PeerError::Foreign {
            uid: 65534,
            pid: None,
            agent: 1000,
        }
        .to_string();
        assert_eq!(
            refused,
            "a request from uid 65534 (pid ?): only root and the agent's user (uid 1000) may control it"
        );
    }
}
