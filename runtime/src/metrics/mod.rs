//! What a running `tandem up` measures, and where it shows it: the status
//! (`tandem status --json`, `tandem top`) and, when enabled with
//! `tandem up --metrics ADDR`, an HTTP endpoint serving Prometheus text,
//! `/livez` and `/readyz` (docs/metrics.md).
//!
//! - [`live`]: every node's figures, readable while the workers run.
//! - [`window`]: rates and latency quantiles over the last seconds.
//! - [`feed`]: how an instance's vertex figures reach the agent.
//! - [`collect`]: the agent's task that gathers them once a second.
//! - [`figures`]: node figures as JSON.
//! - [`exposition`]: the status as Prometheus text.
//! - [`http`]: the endpoint.
//!
//! [`Board`] is where the agent's hub, the collector and the endpoint meet.

pub mod collect;
pub mod exposition;
pub mod feed;
pub mod figures;
pub mod http;
pub mod live;
pub mod window;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Value};

use figures::NodeFigures;

/// This build's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The commit it was built from, when it was built in a git work tree.
pub const COMMIT: Option<&str> = option_env!("TANDEM_GIT_COMMIT");

/// A sink's spool (an MQTT sink holding records while its broker is
/// unreachable), as the sink reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Spool {
    /// Bytes held on disk.
    pub bytes: u64,
    /// When the oldest record held was spooled; `None` when empty.
    pub oldest: Option<SystemTime>,
}

type ReadSpool = Box<dyn Fn() -> Spool + Send + Sync>;

/// Shared by the agent's hub, the collector and the metrics endpoint.
pub struct Board {
    origin: Instant,
    /// Milliseconds from `origin` to the hub loop's last turn.
    heartbeat: AtomicU64,
    figures: Mutex<Vec<NodeFigures>>,
    /// Records the egress relay handed its sinks, and since when that
    /// count has not moved.
    relayed: Mutex<(u64, Instant)>,
    spools: Mutex<Vec<(String, ReadSpool)>>,
    endpoint: Mutex<Option<SocketAddr>>,
}

impl std::fmt::Debug for Board {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Board")
            .field("since_beat", &self.since_beat())
            .finish_non_exhaustive()
    }
}

impl Default for Board {
    fn default() -> Self {
        let now = Instant::now();
        Board {
            origin: now,
            heartbeat: AtomicU64::new(0),
            figures: Mutex::new(Vec::new()),
            relayed: Mutex::new((0, now)),
            spools: Mutex::new(Vec::new()),
            endpoint: Mutex::new(None),
        }
    }
}

/// What the board adds to the status: node figures, spools, the endpoint.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    /// Sources and sinks of the agent, then each instance's vertices.
    pub nodes: Vec<NodeFigures>,
    /// Each spooling sink: its id, bytes held, and the oldest record's age.
    pub spools: Vec<(String, u64, Option<Duration>)>,
    /// Where the metrics endpoint listens, when enabled.
    pub endpoint: Option<SocketAddr>,
}

impl Observed {
    /// The status fields this adds: `nodes`, `spools`, `metrics`, `build`.
    pub fn extend(&self, status: &mut serde_json::Map<String, Value>) {
        status.insert(
            "nodes".into(),
            self.nodes.iter().map(NodeFigures::json).collect(),
        );
        status.insert(
            "spools".into(),
            self.spools
                .iter()
                .map(|(sink, bytes, age)| {
                    json!({
                        "sink": sink,
                        "bytes": bytes,
                        "age_seconds": age.map(|a| a.as_secs_f64()),
                    })
                })
                .collect(),
        );
        status.insert(
            "metrics".into(),
            json!(self.endpoint.map(|a| a.to_string())),
        );
        status.insert(
            "build".into(),
            json!({ "version": VERSION, "commit": COMMIT }),
        );
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Board {
    /// The hub's loop turned.
    pub fn beat(&self) {
        let ms = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.heartbeat.store(ms, Ordering::Relaxed);
    }

    /// Time since the hub's loop last turned (since the board was made,
    /// before its first turn).
    pub fn since_beat(&self) -> Duration {
        let beat = Duration::from_millis(self.heartbeat.load(Ordering::Relaxed));
        self.origin.elapsed().saturating_sub(beat)
    }

    /// Publishes a sink's spool: `read` is called whenever the status is
    /// asked for (so at most a few times a second), off the records' path.
    /// It must not block.
    pub fn watch_spool(&self, sink: &str, read: impl Fn() -> Spool + Send + Sync + 'static) {
        lock(&self.spools).push((sink.to_owned(), Box::new(read)));
    }

    /// Says where the metrics endpoint listens.
    pub fn set_endpoint(&self, addr: SocketAddr) {
        *lock(&self.endpoint) = Some(addr);
    }

    pub(crate) fn set_figures(&self, nodes: Vec<NodeFigures>, relayed: Option<u64>) {
        *lock(&self.figures) = nodes;
        if let Some(count) = relayed {
            let mut last = lock(&self.relayed);
            if count != last.0 {
                *last = (count, Instant::now());
            }
        }
    }

    /// Records handed to the sinks so far, and how long that has not moved.
    pub fn relayed(&self) -> (u64, Duration) {
        let (count, since) = *lock(&self.relayed);
        (count, since.elapsed())
    }

    /// What the status shows beside the hub's own state.
    pub fn observed(&self) -> Observed {
        let now = SystemTime::now();
        Observed {
            nodes: lock(&self.figures).clone(),
            spools: lock(&self.spools)
                .iter()
                .map(|(sink, read)| {
                    let spool = read();
                    let age = spool
                        .oldest
                        .map(|t| now.duration_since(t).unwrap_or(Duration::ZERO));
                    (sink.clone(), spool.bytes, age)
                })
                .collect(),
            endpoint: *lock(&self.endpoint),
        }
    }
}

/// A board for the agent's hub, with its heartbeat started.
pub fn board() -> Arc<Board> {
    let board = Arc::new(Board::default());
    board.beat();
    board
}
