//! `tandem ctl serve`: the controller daemon, a thin driver around
//! [`Fleet`]. One task owns the fleet; everything else sends it inputs:
//! gateways' links (QUIC), `tandem ctl` requests (the socket `CTL/ctl.sock`)
//! and the web page's snapshots (HTTP). It sends bundles as the planner
//! asks and saves `fleet.json` after changes (`Saver`): off the fleet
//! task, one write at a time, so that a slow disk delays the file and never
//! the fleet.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::sync::{mpsc, oneshot};

use super::bundle_check::CheckError;
use super::enrol::{Enrolment, FORMAT};
use super::fleet::{short, Fleet};
use super::inventory::{Gateway, Saved, Tracks};
use super::plan::{BundleRef, GatewayId, Millis};
use super::transport;
use super::wire::{self, Decoded, ToController, ToGateway};
use crate::net::{CaError, SiteCa};

/// How `tandem ctl serve` was started.
#[derive(Clone, Debug)]
pub struct Options {
    /// The controller's directory.
    pub dir: PathBuf,
    /// UDP address for gateways' links.
    pub listen: SocketAddr,
    /// TCP address of the web page (keep it on loopback).
    pub http: SocketAddr,
    /// The address enrolments tell gateways to dial (default: the bound one).
    pub advertise: Option<SocketAddr>,
}

/// The socket `tandem ctl` commands talk to.
pub fn socket(dir: &Path) -> PathBuf {
    dir.join("ctl.sock")
}

/// Where the running controller listens (`CTL/addresses.json`).
pub fn addresses_file(dir: &Path) -> PathBuf {
    dir.join("addresses.json")
}

/// A request of `tandem ctl`, read and checked by the socket's task.
#[derive(Debug)]
enum Request {
    Status,
    Enrol {
        gateway: Gateway,
        address: Option<SocketAddr>,
    },
    /// A bundle checked for the track and kept in `CTL/bundles/`.
    Rollout {
        track: String,
        bundle: BundleRef,
        bytes: Arc<Vec<u8>>,
    },
}

/// What the socket's tasks need to check a request before the fleet task
/// takes it; the disk work of a rollout (reading, checking and keeping its
/// bundle) is done there, off the fleet task.
struct Intake {
    tracks: Tracks,
    /// `CTL/bundles/`.
    bundles: PathBuf,
}

/// Why a request of `tandem ctl` is not done; the client is answered
/// `error: ` and this.
#[derive(Debug, thiserror::Error)]
pub enum CtlRefusal {
    /// A request the controller does not take.
    #[error("unknown request `{0}`; the controller takes `status`, `enrol` and `rollout`")]
    Unknown(String),
    /// `enrol` named no usable gateway (the message says what is).
    #[error("{0}")]
    GatewayName(String),
    /// `enrol`'s address is not one.
    #[error("`{0}` is not an address such as 192.0.2.10:7141")]
    Address(String),
    /// `enrol` without a hardware model or a track.
    #[error("enrol needs a hardware model and a track")]
    EnrolFields,
    /// The enrolment would tell the gateway to dial an address it cannot.
    #[error(
        "the controller listens on {0}, which a gateway cannot dial; \
         give `tandem ctl serve --advertise HOST:PORT` or `tandem ctl enrol \
         --address HOST:PORT`"
    )]
    Undialable(SocketAddr),
    /// The gateway's certificate could not be issued.
    #[error("cannot issue {gateway}'s certificate: {source}")]
    Certificate {
        /// The gateway.
        gateway: GatewayId,
        /// Why.
        source: CaError,
    },
    /// The rollout's bundle file cannot be read.
    #[error("{}: cannot read: {source}", file.display())]
    Unreadable {
        /// The file, as named.
        file: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The rollout's bundle file is not a regular file.
    #[error("{}: not a regular file", file.display())]
    NotAFile {
        /// The file, as named.
        file: PathBuf,
    },
    /// The rollout's bundle is larger than a rollout carries.
    #[error(
        "{}: {bytes} bytes, more than the {} a rollout carries",
        file.display(),
        super::bundle_check::MAX_BUNDLE_BYTES
    )]
    TooLarge {
        /// The file, as named.
        file: PathBuf,
        /// Its size.
        bytes: u64,
    },
    /// The task reading the bundle ended without an answer.
    #[error("reading the bundle failed")]
    ReadFailed,
    /// The bundle is not one to roll out to the track.
    #[error("{}: {error}", file.display())]
    Bundle {
        /// The file, as named.
        file: PathBuf,
        /// Why.
        error: Box<CheckError>,
    },
    /// The bundle could not be kept in `CTL/bundles/` to be sent.
    #[error("cannot keep the bundle in {}: {source}", path.display())]
    Keep {
        /// Where it goes.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The fleet does not start the rollout (one runs on the track, or it
    /// has no gateways).
    #[error("{0}")]
    Rollout(String),
    /// The controller is stopping.
    #[error("the controller is stopping")]
    Stopping,
}

/// What the fleet task is told.
enum Input {
    Connected {
        id: GatewayId,
        conn: u64,
        runtime: String,
        tx: mpsc::UnboundedSender<Vec<u8>>,
        reply: oneshot::Sender<Result<(), String>>,
    },
    Message {
        id: GatewayId,
        conn: u64,
        message: ToController,
    },
    Closed {
        id: GatewayId,
        conn: u64,
        reason: String,
    },
    Request(Request, oneshot::Sender<Result<String, CtlRefusal>>),
    Snapshot(oneshot::Sender<Value>),
}

fn now() -> Millis {
    Millis(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
    )
}

/// Runs the controller until it is stopped (SIGINT, SIGTERM).
pub fn run(options: Options) -> Result<(), String> {
    crate::private::create_dir(&options.dir)
        .map_err(|e| format!("{}: cannot create: {e}", options.dir.display()))?;
    let _lock = lock(&options.dir)?;
    let ca = SiteCa::open_or_create(&options.dir.join("ca"))
        .map_err(|e| format!("the controller's CA: {e}"))?;
    let identity = ca
        .issue_identity(transport::CONTROLLER_NAME)
        .map_err(|e| format!("the controller's certificate: {e}"))?;
    let trust = ca.trust().map_err(|e| e.to_string())?;
    let tracks = Tracks::load(&options.dir)?;
    let saved = Saved::load(&options.dir)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("tandem-ctl")
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the network runtime: {e}"))?;
    runtime.block_on(async move {
        let endpoint = transport::server(options.listen, &identity, &trust)?;
        let quic = endpoint.local_addr().map_err(|e| e.to_string())?;
        let http = tokio::net::TcpListener::bind(options.http)
            .await
            .map_err(|e| format!("cannot listen on TCP {}: {e}", options.http))?;
        let http_addr = http.local_addr().map_err(|e| e.to_string())?;
        let sock = socket(&options.dir);
        let _ = std::fs::remove_file(&sock);
        let unix = tokio::net::UnixListener::bind(&sock)
            .and_then(|l| crate::private::restrict(&sock).map(|()| l))
            .map_err(|e| format!("{}: cannot open the control socket: {e}", sock.display()))?;
        let advertise = options.advertise.unwrap_or(quic);
        let (tx, rx) = mpsc::unbounded_channel::<Input>();
        tokio::spawn(accept_gateways(endpoint.clone(), tx.clone()));
        let intake = Arc::new(Intake {
            tracks: tracks.clone(),
            bundles: options.dir.join("bundles"),
        });
        tokio::spawn(serve_requests(unix, intake.clone(), tx.clone()));
        tokio::spawn(super::web::serve(http, {
            let tx = tx.clone();
            move || {
                let tx = tx.clone();
                async move {
                    let (reply, answer) = oneshot::channel();
                    let _ = tx.send(Input::Snapshot(reply));
                    answer.await.unwrap_or(Value::Null)
                }
            }
        }));
        let addresses = json!({
            "quic": quic.to_string(), "http": http_addr.to_string(),
            "advertise": advertise.to_string(), "pid": std::process::id(),
        });
        crate::private::write_atomically(
            &addresses_file(&options.dir),
            addresses.to_string().as_bytes(),
        )
        .map_err(|e| format!("cannot write {}: {e}", addresses_file(&options.dir).display()))?;
        eprintln!(
            "tandem ctl: gateways dial {advertise} (UDP, QUIC); the fleet's page is http://{http_addr}/; \
             Ctrl-C stops"
        );
        let (stop_tx, stop_rx) = mpsc::unbounded_channel::<()>();
        if let Err(e) = ctrlc::set_handler(move || {
            let _ = stop_tx.send(());
        }) {
            eprintln!("tandem ctl: cannot install the handler of Ctrl-C and SIGTERM: {e}");
        }
        let dir = options.dir.clone();
        let driver = Driver {
            saver: Saver::new(Arc::new(move |text: &[u8]| Saved::write(&dir, text)), &saved),
            fleet: Fleet::new(saved, tracks),
            bundle_dir: intake.bundles.clone(),
            ca,
            advertise,
            links: BTreeMap::new(),
            bundles: HashMap::new(),
            printed: 0,
        };
        driver.run(rx, stop_rx).await;
        endpoint.close(quinn::VarInt::from_u32(0), b"controller stopping");
        let _ = std::fs::remove_file(&sock);
        let _ = std::fs::remove_file(addresses_file(&options.dir));
        Ok(())
    })
}

fn lock(dir: &Path) -> Result<std::fs::File, String> {
    let path = dir.join("LOCK");
    let file = crate::private::file_options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| format!("{}: cannot open the lock file: {e}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(format!(
            "{}: another controller runs on this directory; stop it or use another --dir",
            dir.display()
        )),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(format!("{}: cannot lock: {e}", path.display()))
        }
    }
}

/// Writes the text of `fleet.json` (a blocking call).
type Write = Arc<dyn Fn(&[u8]) -> Result<(), String> + Send + Sync>;

/// The most inputs handled in a row before the bookkeeping (bundles to
/// send, log lines, saving) is done.
const BATCH: usize = 256;

/// The shortest time from the start of one write of `fleet.json` to the
/// next, unless a `tandem ctl` answer waits for it. Every gateway's report
/// changes the file, and a fleet sends many a second; what a crash loses of
/// the last moments its gateways report again when they reconnect.
const SAVE_GAP: Duration = Duration::from_millis(500);

/// How long `tandem ctl` waits for an answer given once `fleet.json` holds
/// it (an enrolment, a rollout): the write under way and the next one, on
/// a slow disk.
pub const SAVED_ANSWER_WAIT: Duration = Duration::from_secs(60);

/// A `tandem ctl` answer, and where it goes.
type Answer = (
    oneshot::Sender<Result<String, CtlRefusal>>,
    Result<String, CtlRefusal>,
);

/// A write of `fleet.json` under way.
struct Running {
    /// The write, on a blocking thread.
    write: tokio::task::JoinHandle<Result<(), String>>,
    /// The answers it holds.
    answers: Vec<Answer>,
    /// The newest rollout in it.
    rollout: u64,
}

/// The writes of `fleet.json`: one at a time, on a blocking thread, each of
/// the newest state, at most every [`SAVE_GAP`]; the answers that are
/// given only once what they say is on disk (an enrolment, a rollout); and
/// the newest rollout on disk, whose bundles may go out.
struct Saver {
    write: Write,
    running: Option<Running>,
    /// Answers whose changes go in the next write.
    waiting: Vec<Answer>,
    /// When the next write may start.
    next: tokio::time::Instant,
    /// The newest rollout a write that ended well holds.
    on_disk: u64,
}

impl Saver {
    /// `saved` as read from disk.
    fn new(write: Write, saved: &Saved) -> Saver {
        Saver {
            write,
            running: None,
            waiting: Vec::new(),
            next: tokio::time::Instant::now(),
            on_disk: saved.newest_rollout(),
        }
    }

    /// Gives `answer` once a write that holds what it says has ended.
    fn answer_when_written(&mut self, answer: Answer) {
        self.waiting.push(answer);
    }

    /// Starts writing `saved` if no write runs and one is due; whether it did.
    fn start(&mut self, saved: &Saved) -> bool {
        let now = tokio::time::Instant::now();
        if self.running.is_some() || (now < self.next && self.waiting.is_empty()) {
            return false;
        }
        self.next = now + SAVE_GAP;
        let (write, text) = (self.write.clone(), saved.encode());
        self.running = Some(Running {
            write: tokio::task::spawn_blocking(move || write(&text)),
            answers: std::mem::take(&mut self.waiting),
            rollout: saved.newest_rollout(),
        });
        true
    }

    /// Waits for the write under way (if one is) and gives the answers it
    /// held. False when it failed: the controller says why, and the state
    /// is to be written again (what was answered is in effect all the same).
    async fn finished(&mut self) -> bool {
        let Some(running) = self.running.as_mut() else {
            return true;
        };
        let written = (&mut running.write).await;
        let Some(Running {
            answers, rollout, ..
        }) = self.running.take()
        else {
            return true;
        };
        let ok = match written {
            Ok(Ok(())) => {
                self.on_disk = self.on_disk.max(rollout);
                true
            }
            Ok(Err(e)) => {
                eprintln!("tandem ctl: {e}; trying again");
                false
            }
            Err(e) => {
                eprintln!("tandem ctl: writing fleet.json failed: {e}; trying again");
                false
            }
        };
        for (reply, answer) in answers {
            let _ = reply.send(answer);
        }
        ok
    }

    /// Stopping: ends the write under way, then writes `saved` if it
    /// `changed` since or that write failed.
    async fn flush(&mut self, saved: &Saved, changed: bool) {
        let written = self.finished().await;
        if changed || !written {
            self.next = tokio::time::Instant::now();
            let _ = self.start(saved);
            let _ = self.finished().await;
        }
        for (reply, answer) in self.waiting.drain(..) {
            let _ = reply.send(answer);
        }
    }
}

struct Driver {
    fleet: Fleet,
    /// Writes `fleet.json`.
    saver: Saver,
    /// `CTL/bundles/`, where rollouts' bundles are kept.
    bundle_dir: PathBuf,
    ca: SiteCa,
    advertise: SocketAddr,
    /// Each connected gateway's link: its connection number and frame queue.
    links: BTreeMap<GatewayId, (u64, mpsc::UnboundedSender<Vec<u8>>)>,
    /// Bundle files by SHA-256, read from `CTL/bundles/` when first sent.
    bundles: HashMap<String, Arc<Vec<u8>>>,
    /// Log lines printed so far (of [`Fleet::noted`]).
    printed: u64,
}

impl Driver {
    async fn run(
        mut self,
        mut inputs: mpsc::UnboundedReceiver<Input>,
        mut stop: mpsc::UnboundedReceiver<()>,
    ) {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                Some(()) = stop.recv() => break,
                Some(input) = inputs.recv() => {
                    self.input(input);
                    for _ in 1..BATCH {
                        match inputs.try_recv() {
                            Ok(input) => self.input(input),
                            Err(_) => break,
                        }
                    }
                }
                written = self.saver.finished(), if self.saver.running.is_some() => {
                    self.fleet.dirty |= !written;
                }
                _ = tick.tick() => {}
            }
            self.send_bundles();
            self.print_log();
            if self.fleet.dirty && self.saver.start(&self.fleet.saved) {
                self.fleet.dirty = false;
            }
        }
        let changed = std::mem::take(&mut self.fleet.dirty);
        self.saver.flush(&self.fleet.saved, changed).await;
    }

    /// Prints the fleet's log lines not printed yet.
    fn print_log(&mut self) {
        let new = (self.fleet.noted - self.printed).min(self.fleet.log.len() as u64) as usize;
        for (at, line) in self.fleet.log.iter().skip(self.fleet.log.len() - new) {
            eprintln!("tandem ctl: [{}] {line}", at.0);
        }
        self.printed = self.fleet.noted;
    }

    fn input(&mut self, input: Input) {
        self.print_log();
        let now = now();
        match input {
            Input::Connected {
                id,
                conn,
                runtime,
                tx,
                reply,
            } => {
                let result = self.fleet.connected(now, &id, &runtime);
                if result.is_ok() {
                    self.links.insert(id, (conn, tx));
                }
                let _ = reply.send(result);
            }
            Input::Message { id, conn, message } => {
                if self.links.get(&id).is_none_or(|(c, _)| *c != conn) {
                    return;
                }
                match message {
                    ToController::Report(report) => self.fleet.report(now, &id, report),
                    ToController::Answer {
                        sha256,
                        accepted,
                        text,
                    } => self.fleet.answer(now, &id, &sha256, accepted, &text),
                    ToController::Hello { .. } => {}
                }
            }
            Input::Closed { id, conn, reason } => {
                if self.links.get(&id).is_some_and(|(c, _)| *c == conn) {
                    self.links.remove(&id);
                    self.fleet.disconnected(now, &id);
                    eprintln!("tandem ctl: {id}: link closed: {reason}");
                }
            }
            Input::Request(request, reply) => {
                // An enrolment or a rollout is answered once it is on disk.
                let lasting = matches!(request, Request::Enrol { .. } | Request::Rollout { .. });
                let answer = self.request(now, request);
                if lasting && answer.is_ok() {
                    self.saver.answer_when_written((reply, answer));
                } else {
                    let _ = reply.send(answer);
                }
            }
            Input::Snapshot(reply) => {
                let _ = reply.send(self.fleet.snapshot(now));
            }
        }
    }

    fn request(&mut self, now: Millis, request: Request) -> Result<String, CtlRefusal> {
        match request {
            Request::Status => Ok(self.fleet.snapshot(now).to_string()),
            Request::Enrol { gateway, address } => {
                let controller = address.unwrap_or(self.advertise);
                if controller.ip().is_unspecified() {
                    return Err(CtlRefusal::Undialable(controller));
                }
                let (cert_pem, key_pem) =
                    self.ca.issue_leaf(gateway.id.as_str()).map_err(|source| {
                        CtlRefusal::Certificate {
                            gateway: gateway.id.clone(),
                            source,
                        }
                    })?;
                let enrolment = Enrolment {
                    format: FORMAT,
                    gateway: gateway.id.clone(),
                    track: gateway.track.clone(),
                    controller,
                    ca_pem: self.ca.cert_pem().to_owned(),
                    cert_pem,
                    key_pem,
                };
                self.fleet.enrol(now, gateway);
                Ok(serde_json::to_string(&enrolment).unwrap_or_default())
            }
            Request::Rollout {
                track,
                bundle,
                bytes,
            } => {
                let (name, version) = (bundle.name.clone(), bundle.version.clone());
                let sha256 = bundle.sha256.clone();
                let id = self
                    .fleet
                    .start_rollout(now, &track, bundle)
                    .map_err(CtlRefusal::Rollout)?;
                self.bundles.insert(sha256, bytes);
                Ok(format!(
                    "rollout {id}: {name} {version} to track `{track}` started"
                ))
            }
        }
    }

    /// Sends every bundle the planner wants sent now, of rollouts on disk:
    /// a restarted controller knows of every bundle it sent.
    fn send_bundles(&mut self) {
        let now = now();
        while let Some((id, rollout)) = self.fleet.poll_send(now, self.saver.on_disk) {
            let Some(r) = self.fleet.saved.rollouts.iter().find(|r| r.id == rollout) else {
                continue;
            };
            let bundle = r.bundle.clone();
            let bytes = match self.bundle_bytes(&bundle.sha256) {
                Ok(bytes) => bytes,
                Err(e) => {
                    eprintln!("tandem ctl: {e}");
                    self.fleet.unsent(now, &id);
                    continue;
                }
            };
            let header = ToGateway::Bundle {
                rollout,
                sha256: bundle.sha256.clone(),
                name: bundle.name.clone(),
                version: bundle.version.clone(),
            };
            let frame = match wire::encode_bundle(&header, &bytes) {
                Ok(frame) => frame,
                Err(e) => {
                    eprintln!("tandem ctl: {e}");
                    continue;
                }
            };
            match self.links.get(&id) {
                Some((_, tx)) if tx.send(frame).is_ok() => eprintln!(
                    "tandem ctl: {id}: sent {} {} ({})",
                    bundle.name,
                    bundle.version,
                    short(&bundle.sha256)
                ),
                _ => {
                    self.links.remove(&id);
                    self.fleet.unsent(now, &id);
                }
            }
        }
    }

    fn bundle_bytes(&mut self, sha256: &str) -> Result<Arc<Vec<u8>>, String> {
        if let Some(bytes) = self.bundles.get(sha256) {
            return Ok(bytes.clone());
        }
        let path = self.bundle_dir.join(format!("{sha256}.bundle"));
        let bytes = std::fs::read(&path)
            .map_err(|e| format!("{}: cannot read the rollout's bundle: {e}", path.display()))?;
        let bytes = Arc::new(bytes);
        self.bundles.insert(sha256.to_owned(), bytes.clone());
        Ok(bytes)
    }
}

/// Accepts gateways' connections until the endpoint closes.
async fn accept_gateways(endpoint: quinn::Endpoint, fleet: mpsc::UnboundedSender<Input>) {
    let mut next = 0u64;
    while let Some(incoming) = endpoint.accept().await {
        next += 1;
        tokio::spawn(gateway_link(incoming, next, fleet.clone()));
    }
}

async fn gateway_link(incoming: quinn::Incoming, conn: u64, fleet: mpsc::UnboundedSender<Input>) {
    let connection = match incoming.await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tandem ctl: a connection was refused during the handshake: {e}");
            return;
        }
    };
    let peer = connection.remote_address();
    let (mut send, mut recv) = match connection.accept_bi().await {
        Ok(pair) => pair,
        Err(_) => return,
    };
    let hello = tokio::time::timeout(
        Duration::from_secs(5),
        wire::read::<ToController>(&mut recv),
    );
    let (id, runtime) = match hello.await {
        Ok(Ok(Some(Decoded::Message(ToController::Hello { gateway, runtime })))) => {
            match GatewayId::parse(&gateway) {
                Ok(id) if crate::net::peer_is(&connection, id.as_str()) => (id, runtime),
                _ => {
                    eprintln!(
                        "tandem ctl: {peer} said hello as `{gateway}`, which its certificate is \
                         not for; refused"
                    );
                    connection.close(quinn::VarInt::from_u32(2), b"certificate mismatch");
                    return;
                }
            }
        }
        _ => {
            connection.close(quinn::VarInt::from_u32(1), b"hello expected");
            return;
        }
    };
    let (tx, mut frames) = mpsc::unbounded_channel::<Vec<u8>>();
    let (reply, accepted) = oneshot::channel();
    let _ = fleet.send(Input::Connected {
        id: id.clone(),
        conn,
        runtime,
        tx,
        reply,
    });
    if let Ok(Err(reason)) | Err(reason) = accepted.await.map_err(|e| e.to_string()) {
        eprintln!("tandem ctl: {peer}: {reason}; refused");
        connection.close(quinn::VarInt::from_u32(3), b"not enrolled");
        return;
    }
    let writer = tokio::spawn(async move {
        while let Some(frame) = frames.recv().await {
            if send.write_all(&frame).await.is_err() {
                break;
            }
        }
    });
    let reason = loop {
        match wire::read::<ToController>(&mut recv).await {
            Ok(Some(Decoded::Message(message))) => {
                let _ = fleet.send(Input::Message {
                    id: id.clone(),
                    conn,
                    message,
                });
            }
            Ok(Some(Decoded::Bundle(..))) => break "the gateway sent a bundle frame".to_owned(),
            Ok(None) => break "the gateway finished its stream".to_owned(),
            Err(e) => break e,
        }
    };
    writer.abort();
    connection.close(quinn::VarInt::from_u32(0), b"closed");
    let _ = fleet.send(Input::Closed { id, conn, reason });
}

/// Answers `tandem ctl` on the control socket: one request line, one answer line.
async fn serve_requests(
    listener: tokio::net::UnixListener,
    intake: Arc<Intake>,
    fleet: mpsc::UnboundedSender<Input>,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let allowed = stream
            .peer_cred()
            .is_ok_and(|c| crate::private::may_control(c.uid()));
        if !allowed {
            let _ = stream.try_write(
                b"error: only root and the controller's user may control this controller\n",
            );
            continue;
        }
        let (fleet, intake) = (fleet.clone(), intake.clone());
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut line = String::new();
            let mut reader = BufReader::new(read.take(4096));
            let read = tokio::time::timeout(Duration::from_secs(2), reader.read_line(&mut line));
            if !matches!(read.await, Ok(Ok(n)) if n > 0) {
                return;
            }
            let answer = match ask(line.trim_end_matches('\n'), &intake, &fleet).await {
                Ok(text) => format!("ok: {text}"),
                Err(refused) => format!("error: {refused}"),
            };
            let _ = write.write_all(answer.as_bytes()).await;
            let _ = write.write_all(b"\n").await;
        });
    }
}

/// The fleet task's answer to the request `line`.
async fn ask(
    line: &str,
    intake: &Arc<Intake>,
    fleet: &mpsc::UnboundedSender<Input>,
) -> Result<String, CtlRefusal> {
    let request = parse(line, intake).await?;
    let (reply, answer) = oneshot::channel();
    let _ = fleet.send(Input::Request(request, reply));
    answer.await.unwrap_or(Err(CtlRefusal::Stopping))
}

/// Parses a request line: `status`; `enrol ID HARDWARE DEVICES TRACK [ADDRESS]`;
/// `rollout TRACK FILE`, tab-separated.
async fn parse(line: &str, intake: &Arc<Intake>) -> Result<Request, CtlRefusal> {
    let words: Vec<&str> = line.split('\t').collect();
    match words.as_slice() {
        ["status"] => Ok(Request::Status),
        ["enrol", id, hardware, devices, track, rest @ ..] => {
            let id = GatewayId::parse(id).map_err(CtlRefusal::GatewayName)?;
            let address = match rest.first().filter(|a| !a.is_empty()) {
                Some(a) => Some(
                    a.parse::<SocketAddr>()
                        .map_err(|_| CtlRefusal::Address((*a).to_owned()))?,
                ),
                None => None,
            };
            let devices: Vec<String> = devices
                .split(',')
                .map(str::trim)
                .filter(|d| !d.is_empty())
                .map(str::to_owned)
                .collect();
            if hardware.is_empty() || track.is_empty() {
                return Err(CtlRefusal::EnrolFields);
            }
            let gateway = Gateway::new(
                id,
                (*hardware).to_owned(),
                devices,
                (*track).to_owned(),
                now(),
            );
            Ok(Request::Enrol { gateway, address })
        }
        ["rollout", track, file] => {
            let (track, file) = ((*track).to_owned(), PathBuf::from(file));
            let intake = intake.clone();
            tokio::task::spawn_blocking(move || intake.rollout(track, &file))
                .await
                .map_err(|_| CtlRefusal::ReadFailed)?
        }
        _ => Err(CtlRefusal::Unknown(line.to_owned())),
    }
}

impl Intake {
    /// Reads the bundle `file`, checks it for `track` and keeps it in
    /// `CTL/bundles/` (a blocking call).
    fn rollout(&self, track: String, file: &Path) -> Result<Request, CtlRefusal> {
        let bytes = read_bundle(file)?;
        let keys = self.tracks.get(&track).keys;
        let bundle =
            super::bundle_check::check(&bytes, &track, keys.as_deref()).map_err(|error| {
                CtlRefusal::Bundle {
                    file: file.to_path_buf(),
                    error: Box::new(error),
                }
            })?;
        let path = self.bundles.join(format!("{}.bundle", bundle.sha256));
        crate::private::create_dir(&self.bundles)
            .and_then(|()| crate::private::write_atomically(&path, &bytes))
            .map_err(|source| CtlRefusal::Keep { path, source })?;
        Ok(Request::Rollout {
            track,
            bundle,
            bytes: Arc::new(bytes),
        })
    }
}

fn read_bundle(file: &Path) -> Result<Vec<u8>, CtlRefusal> {
    let unreadable = |source| CtlRefusal::Unreadable {
        file: file.to_path_buf(),
        source,
    };
    let opened = crate::private::open_regular(file)
        .map_err(unreadable)?
        .ok_or_else(|| CtlRefusal::NotAFile {
            file: file.to_path_buf(),
        })?;
    let len = opened.metadata().map_err(unreadable)?.len();
    let max = super::bundle_check::MAX_BUNDLE_BYTES;
    let too_large = |bytes| CtlRefusal::TooLarge {
        file: file.to_path_buf(),
        bytes,
    };
    if len > max {
        return Err(too_large(len));
    }
    // Bounded: the file may have grown since.
    use std::io::Read as _;
    let mut bytes = Vec::new();
    opened
        .take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    if bytes.len() as u64 > max {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Where the refusals' intake would keep bundles: never made.
    fn refusals_dir() -> PathBuf {
        std::env::temp_dir().join(format!("tandem-ctl-refusals-{}", std::process::id()))
    }

    /// What `tandem ctl` is told for `line`, when the controller refuses it.
    fn refusal(line: &str) -> String {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let intake = Arc::new(Intake {
            tracks: Tracks::default(),
            bundles: refusals_dir(),
        });
        match runtime.block_on(parse(line, &intake)) {
            Ok(request) => panic!("`{line}` was taken: {request:?}"),
            Err(e) => e.to_string(),
        }
    }

    /// Long enough for anything here on a loaded machine.
    const BOUND: Duration = Duration::from_secs(30);

    /// A simulated disk for `fleet.json`: each write says what it writes,
    /// and whether another write was under way then, and waits for the
    /// test to end it, well or with an error.
    struct Disk {
        /// What each write writes, and whether it overlapped another.
        texts: std::sync::mpsc::Receiver<(Vec<u8>, bool)>,
        /// Ends the oldest write waiting: `Ok` or the error it fails with.
        end: std::sync::mpsc::Sender<Result<(), String>>,
    }

    impl Disk {
        /// The next write's text, once it has started.
        fn started(&self) -> Vec<u8> {
            let (text, overlapped) = self.texts.recv_timeout(BOUND).unwrap();
            assert!(!overlapped, "a write started while another ran");
            text
        }
    }

    /// A controller's fleet task with one enrolled gateway, `gw-1`, whose
    /// writes of `fleet.json` go to a [`Disk`].
    fn on_a_simulated_disk(dir: &Path) -> (Driver, Disk) {
        let (started, texts) = std::sync::mpsc::channel();
        let (end, ends) = std::sync::mpsc::channel::<Result<(), String>>();
        let ends = std::sync::Mutex::new(ends);
        let running = std::sync::atomic::AtomicUsize::new(0);
        let write: Write = Arc::new(move |text: &[u8]| {
            use std::sync::atomic::Ordering::SeqCst;
            let overlapped = running.fetch_add(1, SeqCst) > 0;
            let _ = started.send((text.to_vec(), overlapped));
            // Bounded, so that a failing test ends.
            let result = ends.lock().unwrap().recv_timeout(BOUND).unwrap_or(Ok(()));
            running.fetch_sub(1, SeqCst);
            result
        });
        let id = GatewayId::parse("gw-1").unwrap();
        let mut saved = Saved {
            format: super::super::inventory::FLEET_FORMAT,
            ..Saved::default()
        };
        let gateway = Gateway::new(
            id.clone(),
            "pi4".into(),
            vec!["meter".into()],
            "stable".into(),
            Millis(1),
        );
        saved.gateways.insert(id, gateway);
        let driver = Driver {
            saver: Saver::new(write, &saved),
            fleet: Fleet::new(saved, Tracks::default()),
            bundle_dir: dir.join("bundles"),
            ca: SiteCa::open_or_create(&dir.join("ca")).unwrap(),
            advertise: "127.0.0.1:7141".parse().unwrap(),
            links: BTreeMap::new(),
            bundles: HashMap::new(),
            printed: 0,
        };
        (driver, Disk { texts, end })
    }

    /// The gateway's `compared` in a `fleet.json` text or a status answer.
    fn compared(text: &[u8]) -> Value {
        let v: Value = serde_json::from_slice(text).unwrap();
        match v["gateways"].as_array() {
            Some(all) => all[0]["compared"].clone(),
            None => v["gateways"]["gw-1"]["status"]["compared"].clone(),
        }
    }

    /// Whether a `fleet.json` text holds gateway `id`.
    fn holds(text: &[u8], id: &str) -> bool {
        let saved: Saved = serde_json::from_slice(text).unwrap();
        saved.gateways.keys().any(|g| g.as_str() == id)
    }

    #[test]
    fn a_slow_disk_delays_fleet_json_and_never_the_answers() {
        // Made first, so dropped last: the disk's writes end before it.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let dir = std::env::temp_dir().join(format!("tandem-ctl-disk-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (driver, disk) = on_a_simulated_disk(&dir);
        let (inputs, rx) = mpsc::unbounded_channel();
        let (stop, stop_rx) = mpsc::unbounded_channel();
        let task = runtime.spawn(driver.run(rx, stop_rx));
        let ask = |request: Request| {
            let (reply, answer) = oneshot::channel();
            inputs.send(Input::Request(request, reply)).unwrap();
            runtime
                .block_on(async { tokio::time::timeout(BOUND, answer).await })
                .expect("the fleet task answers while fleet.json is being written")
                .unwrap()
                .unwrap()
        };
        let id = GatewayId::parse("gw-1").unwrap();
        let report = |n: u64| Input::Message {
            id: id.clone(),
            conn: 1,
            message: ToController::Report(super::super::wire::Report {
                status: json!({ "compared": n }),
                ..Default::default()
            }),
        };

        let (link, _frames) = mpsc::unbounded_channel();
        let (reply, connected) = oneshot::channel();
        inputs
            .send(Input::Connected {
                id: id.clone(),
                conn: 1,
                runtime: "0.1.0".into(),
                tx: link,
                reply,
            })
            .unwrap();
        runtime.block_on(connected).unwrap().unwrap();
        // The connection is saved, and that write sticks.
        assert_eq!(compared(&disk.started()), Value::Null);
        // Many reports meanwhile: each is taken, and the status says the
        // newest at once.
        for n in 1..=500 {
            inputs.send(report(n)).unwrap();
        }
        // An enrolment is answered once fleet.json holds it, not before.
        let gateway = Gateway::new(
            GatewayId::parse("gw-2").unwrap(),
            "cm4".into(),
            vec!["battery".into()],
            "stable".into(),
            Millis(2),
        );
        let (reply, mut enrolled) = oneshot::channel();
        let enrol = Request::Enrol {
            gateway,
            address: None,
        };
        inputs.send(Input::Request(enrol, reply)).unwrap();
        assert_eq!(compared(ask(Request::Status).as_bytes()), 500);
        assert!(enrolled.try_recv().is_err(), "answered before it was saved");
        // When the stuck write ends, the next writes the newest state; the
        // states between were never written.
        disk.end.send(Ok(())).unwrap();
        let second = disk.started();
        assert_eq!(compared(&second), 500);
        assert!(holds(&second, "gw-2"));
        assert!(enrolled.try_recv().is_err(), "answered while being saved");
        // That write fails: the enrolment is in effect and answered, and the
        // same state is written again, with nothing else changed.
        disk.end.send(Err("disk full".into())).unwrap();
        let answer = runtime
            .block_on(async { tokio::time::timeout(BOUND, enrolled).await })
            .expect("the enrolment is answered once its write has ended")
            .unwrap();
        assert!(answer.unwrap().contains("gw-2"));
        let again = disk.started();
        assert!(holds(&again, "gw-2"));
        assert_eq!(compared(&again), 500);

        // Stopping while that write sticks: it ends, then what changed
        // since is written.
        inputs.send(report(501)).unwrap();
        assert_eq!(compared(ask(Request::Status).as_bytes()), 501);
        stop.send(()).unwrap();
        disk.end.send(Ok(())).unwrap();
        assert_eq!(compared(&disk.started()), 501);
        disk.end.send(Ok(())).unwrap();
        runtime
            .block_on(async { tokio::time::timeout(BOUND, task).await })
            .expect("the fleet task stops")
            .unwrap();
        assert!(disk.texts.try_recv().is_err(), "a write after the last");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_bad_request_is_refused_saying_what_is_valid() {
        assert_eq!(
            refusal("reboot"),
            "unknown request `reboot`; the controller takes `status`, `enrol` and `rollout`"
        );
        assert_eq!(
            refusal("enrol\tgw-1\t\tmeter\tstable"),
            "enrol needs a hardware model and a track"
        );
        assert_eq!(
            refusal("enrol\tgw-1\tpi4\tmeter\tstable\there"),
            "`here` is not an address such as 192.0.2.10:7141"
        );
        assert!(refusal("enrol\tGW\tpi4\tmeter\tstable").contains("is not a gateway name"));
        assert!(refusal("enrol\tcontroller\tpi4\tmeter\tstable")
            .contains("is the controller's own name"));
        assert_eq!(
            refusal("rollout\tstable\t/nonexistent/tandem.bundle")
                .split_once(": cannot read: ")
                .map(|(file, _)| file.to_owned()),
            Some("/nonexistent/tandem.bundle".to_owned())
        );
        // A file that is no bundle is refused naming it, and not kept.
        let junk = std::env::temp_dir().join(format!("tandem-ctl-junk-{}", std::process::id()));
        std::fs::write(&junk, b"not a bundle").unwrap();
        let said = refusal(&format!("rollout\tstable\t{}", junk.display()));
        let _ = std::fs::remove_file(&junk);
        assert!(said.starts_with(&format!("{}: ", junk.display())), "{said}");
        assert!(!refusals_dir().exists(), "a refused bundle was kept");
        // A FIFO is refused as it is, never waited on for a writer.
        let fifo = std::env::temp_dir().join(format!("tandem-ctl-fifo-{}", std::process::id()));
        let _ = std::fs::remove_file(&fifo);
        let path = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path, for the length of the call.
        assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
        let said = refusal(&format!("rollout\tstable\t{}", fifo.display()));
        let _ = std::fs::remove_file(&fifo);
        assert_eq!(said, format!("{}: not a regular file", fifo.display()));
        let undialable = CtlRefusal::Undialable("0.0.0.0:7141".parse().unwrap());
        assert_eq!(
            undialable.to_string(),
            "the controller listens on 0.0.0.0:7141, which a gateway cannot dial; give \
             `tandem ctl serve --advertise HOST:PORT` or `tandem ctl enrol --address HOST:PORT`"
        );
    }
}
