//! The agent of `tandem up`: owns the sources, the junctions and the sinks,
//! and supervises a blue and a green instance process running the vertices.
//!
//! One hub task owns the [`Supervisor`](tandem_core::ha::Supervisor) (the pure state machine of
//! `tandem_core::ha`) and is the only place that changes it. Everything else
//! sends it events: sequenced ingress batches from the ingress topology's
//! junction sink, frames from each instance connection, control requests
//! from `tandem status`, and ticks. After each event the hub drains what the
//! supervisor wants sent (one encoded `Bytes` per input batch, cloned to
//! both instances), what it emits toward the sinks (into the egress
//! topology's relay), and its events (logs, and restarts of lost instances).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tandem_core::ha::UpstreamConfig;
use tandem_core::split::{FROM_INSTANCES, TO_INSTANCES};
use tandem_core::wire::BatchKind;
use tandem_core::{BuildError, Seq};
use tokio::sync::mpsc::unbounded_channel;

use super::control::{self, Envelope};
use super::dirs::{LockError, StateDir};
use super::ends::{relay, Encode, Encoded};
use super::hub::{Ended, Hub, Ingress, Inputs, Wiring};
use super::links::{accept, Conn, FrameBudget};
use super::toggles::Toggles as KeptToggles;
use crate::checkpoint::numbering::OpenError;
use crate::checkpoint::Reservation;
use crate::metrics::http::BindError;
use crate::net::{CaError, EndpointError, Server, TransportOptions};
use crate::topology::{Attached, RunError, RunOptions, StartError, Topology};
use crate::Clock;
use tandem_nodes::io::mqtt::MqttSink;
use tandem_nodes::io::toggles::{Switches, Toggles};

pub use super::graph::{AgentConfig, InstanceCommand};

// What bounds the agent's memory (docs/ha.md, "Memory"): each queue is
// bounded in bytes or records, never by load (the hub's own bounds are
// `hub::BACKLOG_BYTES` and `hub::EGRESS_RECORDS`).

/// Encoded input frames waiting for the hub at most (each at most
/// [`UpstreamConfig::max_batch`] records: 16 x 128 KiB = 2 MiB).
const INGRESS_BATCHES: usize = 16;
/// Link events waiting for the hub at most (a frame counts its bytes in
/// [`CONN_BYTES`] too).
const CONN_EVENTS: usize = 1024;
/// Bytes of decoded frames from both links waiting for the hub at most.
const CONN_BYTES: usize = 2 << 20;

/// How long an orderly end waits for each instance to exit on its own
/// once its link is closed, before it is killed. An instance writes its
/// last checkpoint before it exits, and on an SD card under load that
/// fsync can take seconds: killed sooner, it would leave an older
/// checkpoint as the newest on disk. With the drain's 10 s this stays
/// within the service's `TimeoutStopSec` (30 s).
const INSTANCE_EXIT: Duration = Duration::from_secs(15);

/// Exit code of a run that a second stop signal ended without draining
/// (128 + SIGINT, as the shell reports an interrupted command).
pub const INTERRUPTED_EXIT: u8 = 130;

/// Why the agent could not start, or did not end cleanly.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// Another agent holds the state directory.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// The site's certificate authority could not be read or made.
    #[error("site CA: {0}")]
    SiteCa(#[source] CaError),
    /// A certificate of the agent or an instance could not be issued or read.
    #[error("certificate for {name}: {source}")]
    Certificate {
        /// Whose: agent, blue or green.
        name: &'static str,
        /// Why.
        source: CaError,
    },
    /// The agent's own certificate or the site's trust could not be read
    /// (the message names the file).
    #[error(transparent)]
    Credentials(CaError),
    /// The numbering mark could not be read or reserved.
    #[error(transparent)]
    Numbering(#[from] OpenError),
    /// The network runtime could not start.
    #[error("cannot start the network runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// The QUIC endpoint for the instances could not be opened.
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    /// The endpoint's address could not be read.
    #[error("cannot read the agent's address: {0}")]
    Address(#[source] std::io::Error),
    /// A sink, source or toggle of the agent's own part could not be built
    /// (the message names the node and what is wrong).
    #[error(transparent)]
    Node(#[from] BuildError),
    /// The agent's ingress or egress could not start.
    #[error(transparent)]
    Start(#[from] StartError),
    /// `--metrics` cannot listen where it was asked (the message says where).
    #[error(transparent)]
    Metrics(#[from] BindError),
    /// A sink failed while the agent ran.
    #[error(transparent)]
    Egress(#[from] RunError),
    /// A second stop signal ended the run at once: nothing was drained or
    /// checkpointed, and the instances were killed (the hub said so in the
    /// log). `tandem up` exits [`INTERRUPTED_EXIT`] without another word.
    #[error("second stop signal: exited without draining")]
    Abandoned,
}

/// Runs the agent until Ctrl-C, `--for`, or the end of the input.
pub fn run(config: AgentConfig) -> Result<(), AgentError> {
    run_with_metrics(config, None)
}

/// [`run`], serving Prometheus text, `/livez` and `/readyz` at `metrics`
/// when given (`tandem up --metrics`; docs/metrics.md).
pub fn run_with_metrics(
    mut config: AgentConfig,
    metrics: Option<SocketAddr>,
) -> Result<(), AgentError> {
    let _lock = config.state.lock()?;
    let ca = config.state.site_ca().map_err(AgentError::SiteCa)?;
    for name in ["agent", "blue", "green"] {
        config
            .state
            .issue(&ca, name)
            .map_err(|source| AgentError::Certificate { name, source })?;
    }
    let resume = config.state.newest_checkpoint(&config.stamp.name);
    let checkpointed = match &resume {
        Some((path, checkpoint)) => {
            tracing::info!(
                "resuming from {} (origin sequence {})",
                path.display(),
                checkpoint.seq
            );
            checkpoint.seq
        }
        None => Seq::ZERO,
    };
    // Numbers the last run may have emitted past its checkpoint stay used.
    let numbering = Reservation::open(config.state.root(), checkpointed)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("tandem-agent")
        .enable_all()
        .build()
        .map_err(AgentError::Runtime)?;
    let egress = std::mem::take(&mut config.egress);
    let ended = runtime.block_on(serve(config, numbering, egress, metrics));
    if matches!(ended, Err(AgentError::Abandoned)) {
        // Out at once: blocking tasks still at work are not waited for.
        runtime.shutdown_background();
    }
    ended
}

async fn serve(
    config: AgentConfig,
    numbering: Reservation,
    mut attached: Attached,
    metrics: Option<SocketAddr>,
) -> Result<(), AgentError> {
    let after = numbering.after();
    let identity = config
        .state
        .identity("agent")
        .map_err(AgentError::Credentials)?;
    let trust = config.state.trust().map_err(AgentError::Credentials)?;
    let server = Server::bind(
        config.listen,
        &identity,
        &trust,
        TransportOptions::for_peer(config.listen),
    )?;
    let addr = server.local_addr().map_err(AgentError::Address)?;

    // Egress: merged output -> sinks.
    // Unbounded, so the hub never waits on it; the hub holds input back
    // while more than EGRESS_RECORDS wait for the sinks.
    let (to_sinks, from_hub) = relay(None);
    attached
        .sources
        .insert(FROM_INSTANCES.to_owned(), Box::new(from_hub));
    let board = crate::metrics::board();
    attach_uplinks(
        &config.split.egress,
        config.state.root(),
        &mut attached,
        &board,
    )?;
    let options = RunOptions {
        clock: Clock::Wall,
        span: None,
        hold_at_end: false,
        batch: config.batch,
    };
    let (egress, _) = Topology::start_with(&config.split.egress, options, None, attached)?;

    // Ingress: sources -> sequenced batches for the hub.
    // Bounded: when the hub stops taking batches (both instances behind),
    // the ingress worker waits here, and the sources are polled later.
    let (ingress_tx, ingress_rx) = tokio::sync::mpsc::channel::<Ingress>(INGRESS_BATCHES);
    // Each record is encoded here, once, into the `Input` frame that the
    // retention ring keeps and both links send.
    let max_batch = UpstreamConfig::default().max_batch;
    let sink = Encode::new(BatchKind::Input, max_batch, move |encoded| {
        let msg = match encoded {
            Encoded::Batch(batch) => Ingress::Batch(batch),
            Encoded::End => Ingress::Ended,
        };
        // A plain worker thread, outside the runtime: it may block. It fails
        // only once the hub is gone.
        let _ = ingress_tx.blocking_send(msg);
    });
    let mut attached = Attached::default();
    attached
        .sinks
        .insert(TO_INSTANCES.to_owned(), Box::new(sink));
    let toggles = attach_toggles(&config.split.ingress, &mut attached)?;
    // Before the first poll, so the kept positions are the first ones sent.
    let positions = toggle_positions(&config.state, &toggles);
    let options = RunOptions {
        clock: config.clock,
        span: config
            .run_for
            .filter(|_| matches!(config.clock, Clock::Virtual { .. })),
        hold_at_end: false,
        batch: config.batch,
    };
    let (ingress, _) = Topology::start_numbered(
        &config.split.ingress,
        options,
        None,
        attached,
        Some(numbering),
    )?;

    // Bounded: when the hub is behind, links stop being read, and the
    // instances' output waits in QUIC's flow control and then in them.
    let (conn_tx, conn_rx) = tokio::sync::mpsc::channel::<Conn>(CONN_EVENTS);
    let server = Arc::new(server);
    let stats = server.stats().clone();
    let origin = Instant::now();
    let budget = FrameBudget::new(CONN_BYTES);
    tokio::spawn(accept(server.clone(), conn_tx, budget, origin));

    let (request_tx, request_rx) = unbounded_channel::<Envelope>();
    if let Some(addr) = metrics {
        let listener = crate::metrics::http::bind(addr).await?;
        let bound = listener.local_addr().unwrap_or(addr);
        board.set_endpoint(bound);
        tracing::info!("metrics on http://{bound}/metrics (and /livez, /readyz)");
        let endpoint = crate::metrics::http::Endpoint {
            board: board.clone(),
            hub: request_tx.clone(),
        };
        tokio::spawn(crate::metrics::http::serve(listener, endpoint));
    }
    let state_root = config.state.root().to_path_buf();
    tokio::spawn(crate::metrics::collect::run(board.clone(), state_root));
    let socket = config.state.socket();
    let _ = std::fs::remove_file(&socket);
    // In a 0700 directory (the state directory, or the runtime directory
    // made here), so no one else can reach it before it is narrowed.
    let bound = crate::private::create_dir(config.state.socket_dir())
        .and_then(|()| tokio::net::UnixListener::bind(&socket))
        .and_then(|l| crate::private::restrict(&socket).map(|()| l));
    match bound {
        Ok(listener) => {
            tokio::spawn(control::serve(listener, request_tx));
        }
        Err(e) => tracing::warn!(
            "{}: cannot open the control socket ({e}); `tandem status` will not answer",
            socket.display()
        ),
    }

    let (stop_tx, stop_rx) = unbounded_channel::<()>();
    if let Err(e) = ctrlc::set_handler(move || {
        let _ = stop_tx.send(());
    }) {
        tracing::warn!("cannot install the handler of Ctrl-C and SIGTERM: {e}");
    }

    let wiring = Wiring {
        addr,
        after,
        net: stats,
        origin,
        board,
        toggles: KeptToggles::new(
            toggles.into_iter().map(|(id, sw, _)| (id, sw)).collect(),
            keep_toggles(config.state.clone(), positions),
        ),
    };
    let mut hub = Hub::new(&config, wiring);
    tracing::info!(
        "up `{}`: agent on {addr}, blue and green instances starting; Ctrl-C stops",
        config.stamp.name
    );
    hub.start();
    let inputs = Inputs {
        ingress: ingress_rx,
        conns: conn_rx,
        stop: stop_rx,
        requests: request_rx,
        ingress_topology: &ingress,
        to_sinks: &to_sinks,
    };
    if hub.run(inputs).await == Ended::Abandoned {
        // A second stop signal: the person wants out now.
        hub.kill_all();
        return Err(AgentError::Abandoned);
    }

    // Orderly end: instances are told by their link closing. The toggles'
    // last positions are on disk whatever the writer had yet to do.
    let kept = hub.toggle_positions();
    if let Err(e) = tokio::task::block_in_place(|| config.state.save_toggles(&kept)) {
        tracing::warn!(
            "cannot keep the toggles' positions in {}: {e}",
            config.state.toggles_file().display()
        );
    }
    hub.close_links();
    tokio::task::block_in_place(|| hub.reap(INSTANCE_EXIT));
    server.close();
    let _ = std::fs::remove_file(&socket);
    ingress.stop();
    drop(to_sinks);
    let _ = ingress.join();
    let report = egress.join()?;
    eprint!("{}", report.table());
    Ok(())
}

/// Starts the writer that keeps the toggles' positions in the state
/// directory: it saves the latest positions sent, off the hub's loop (each
/// save is a write, fsync and rename), and says so when it cannot.
fn keep_toggles(
    state: StateDir,
    positions: std::collections::BTreeMap<String, bool>,
) -> tokio::sync::watch::Sender<std::collections::BTreeMap<String, bool>> {
    let (tx, mut rx) = tokio::sync::watch::channel(positions);
    tokio::spawn(async move {
        while rx.changed().await.is_ok() {
            let latest = rx.borrow_and_update().clone();
            let state = state.clone();
            let saved = tokio::task::spawn_blocking(move || {
                state.save_toggles(&latest).map_err(|e| (state, e))
            })
            .await;
            if let Ok(Err((state, e))) = saved {
                tracing::warn!(
                    "cannot keep the toggles' positions in {} ({e}); a restart starts them as the graph says",
                    state.toggles_file().display()
                );
            }
        }
    });
    tx
}

/// Each toggle's position: as last switched with `tandem toggle` (kept in
/// the state directory), else as the graph's `on` list says. A kept
/// position that differs from the graph's is switched before the first
/// poll, so both instances start from it at the same record.
fn toggle_positions(
    state: &StateDir,
    toggles: &[(String, Switches, Vec<String>)],
) -> std::collections::BTreeMap<String, bool> {
    let mut kept = state.load_toggles();
    let mut positions = std::collections::BTreeMap::new();
    for (id, switches, on) in toggles {
        for name in switches.names() {
            let full = format!("{id}.{name}");
            let initially = on.iter().any(|o| o == name);
            let position = kept.remove(&full).unwrap_or(initially);
            if position != initially {
                switches.switch(name, position);
                tracing::info!(
                    "toggle {full} is {} as last switched",
                    if position { "on" } else { "off" }
                );
            }
            positions.insert(full, position);
        }
    }
    for gone in kept.keys() {
        tracing::warn!("toggle {gone} was switched before, but the graph has no such toggle now");
    }
    positions
}

/// Builds the graph's `mqtt` sinks with their spools in the state
/// directory (`DIR/spool/SINK_ID`, unless their `spool` names another), and
/// shows each spool's backlog in the status and metrics. Sinks the caller
/// attached already are left alone.
fn attach_uplinks(
    egress: &tandem_core::Plan,
    state: &std::path::Path,
    attached: &mut Attached,
    board: &crate::metrics::Board,
) -> Result<(), BuildError> {
    for node in egress.nodes.iter().filter(|n| n.kind.name == "mqtt") {
        if attached.sinks.contains_key(&node.id) {
            continue;
        }
        let ctx = tandem_core::BuildContext {
            id: &node.id,
            params: &node.params,
            inputs: &node.inputs,
            outputs: &node.outputs,
            channels: &egress.channels,
        };
        let sink = MqttSink::open_in(&ctx, state)?;
        let watch = sink.watch();
        board.watch_spool(&node.id, move || crate::metrics::Spool {
            bytes: watch.backlog_bytes(),
            oldest: watch.delivered_through().map(|t| {
                std::time::UNIX_EPOCH
                    + std::time::Duration::from_nanos(u64::try_from(t.0).unwrap_or(0))
            }),
        });
        attached.sinks.insert(node.id.clone(), Box::new(sink));
    }
    Ok(())
}

/// Builds the graph's `toggles` sources so that `tandem toggle` can switch
/// them, and attaches them to the ingress. Returns them by node id.
fn attach_toggles(
    ingress: &tandem_core::Plan,
    attached: &mut Attached,
) -> Result<Vec<(String, Switches, Vec<String>)>, BuildError> {
    let mut toggles = Vec::new();
    for node in ingress.nodes.iter().filter(|n| n.kind.name == "toggles") {
        let ctx = tandem_core::BuildContext {
            id: &node.id,
            params: &node.params,
            inputs: &node.inputs,
            outputs: &node.outputs,
            channels: &ingress.channels,
        };
        let (source, switches) = Toggles::switchable(&ctx)?;
        attached.sources.insert(node.id.clone(), Box::new(source));
        let on = node
            .params
            .names("on")
            .map(<[String]>::to_vec)
            .unwrap_or_default();
        toggles.push((node.id.clone(), switches, on));
    }
    Ok(toggles)
}
