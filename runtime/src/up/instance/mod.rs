//! An instance process: the vertices of a graph between a relay (input from
//! the agent) and a forwarding sink (output to the agent), over one QUIC link.
//!
//! Four threads share the work:
//! - the network (a current-thread tokio runtime): reads frames, answers
//!   heartbeats at once, and writes whatever the others queue;
//! - control (`control.rs`): owns the topology; feeds input, takes barrier
//!   snapshots, streams and restores snapshots, in frame order;
//! - the checkpoint writer (`saver.rs`): writes the newest barrier snapshot
//!   to disk, so that no fsync holds the input;
//! - the topology's workers, whose output sink encodes `Output` frames and
//!   queues them through the outbox (`outbox.rs`), which holds output back
//!   while too many bytes wait for the link.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tandem_core::ha::{Color, ToAgent, ToInstance};
use tandem_core::{ChannelId, ChannelTable, Plan, Record, Seq};
use thiserror::Error;

mod control;
mod outbox;
mod saver;

use control::Control;
use outbox::{send, Budget, Outbox};

use super::dirs::StateDir;
use crate::checkpoint::GraphStamp;
use crate::net::{CaError, Client, EndpointError, LinkError, TransportOptions};
use crate::topology::{BarrierError, StartError};

/// The agent pings an instance at least every third of this (its
/// keepalive), and sends input and pings far more often while it runs:
/// silence this long means it is gone, and the instance exits.
pub(in crate::up) const AGENT_SILENCE: Duration = Duration::from_secs(3);
/// Bytes of snapshot per frame.
const CHUNK: usize = 1 << 20;
/// Largest snapshot accepted from the agent.
const MAX_SNAPSHOT: u64 = 1 << 30;
// What bounds an instance's memory (docs/ha.md, "Memory"): input waits in
// QUIC's flow control, then in CONTROL_FRAMES and RELAY_BATCHES frames of at
// most the agent's batch (4096 records, 128 KiB); output in OUTPUT_BYTES.

/// Records per `Output` frame at most (128 KiB).
const OUTPUT_RECORDS: usize = 4096;
/// Output bytes waiting for the link beyond which the topology waits.
const OUTPUT_BYTES: usize = 8 << 20;
/// Frames read from the link and not yet handled, at most.
const CONTROL_FRAMES: usize = 16;
/// Input batches handed to the topology and not yet taken, at most.
const RELAY_BATCHES: usize = 16;
/// Snapshots kept for a `SnapshotRequest` that arrives after its barrier.
const KEPT: usize = 2;

/// Why the agent's command line for an instance is not one.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum LaunchError {
    /// The arguments do not start with `instance`.
    #[error("expected `instance ...`")]
    NotInstance,
    /// A flag came last, without its value.
    #[error("`{0}` needs a value")]
    NoValue(String),
    /// `--color` names no colour.
    #[error("no colour `{0}`; blue or green")]
    Color(String),
    /// `--agent` is not an address.
    #[error("--agent: {0}")]
    Agent(std::net::AddrParseError),
    /// `--batch` is not a count.
    #[error("--batch: {0}")]
    Batch(std::num::ParseIntError),
    /// A required argument is missing (`--color`, `--agent`, `--state-dir`, the graph file).
    #[error("no {0}")]
    Missing(&'static str),
}

/// Why an instance stopped other than by the agent closing its link.
#[derive(Debug, Error)]
pub enum InstanceError {
    /// The command line is not the agent's (see [`Launch::parse`]).
    #[error(transparent)]
    Launch(#[from] LaunchError),
    /// The graph file could not be loaded.
    #[error(transparent)]
    Graph(#[from] crate::graph_file::GraphFileError),
    /// The graph file could not be loaded, or cannot be cut for 1+1.
    #[error(transparent)]
    Split(#[from] super::graph::SplitGraphError),
    /// The network runtime or the control thread could not start.
    #[error("cannot start the {what}: {source}")]
    Start {
        /// "network runtime" or "control thread".
        what: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// The instance's certificate or the site's trust could not be read.
    #[error("no certificate for {name}: {source}")]
    Certificate {
        /// Whose.
        name: &'static str,
        /// Why.
        source: CaError,
    },
    /// The QUIC endpoint could not be set up.
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    /// The agent could not be reached.
    #[error("cannot reach the agent at {agent}: {source}")]
    Connect {
        /// Its address.
        agent: SocketAddr,
        /// Why.
        source: LinkError,
    },
    /// The link to the agent failed.
    #[error(transparent)]
    Link(#[from] LinkError),
    /// Nothing came from the agent for this long: it is gone.
    #[error("the agent has been silent for {0:?}")]
    AgentSilent(Duration),
    /// The control thread stopped on an error.
    #[error(transparent)]
    Control(#[from] ControlError),
    /// The control thread ended without saying why (it panicked).
    #[error("the control thread stopped")]
    ControlStopped,
    /// The agent that started this instance ended before it could start.
    #[error("the agent that started this instance (pid {0}) is gone")]
    AgentGone(u32),
}

/// The variable through which the agent gives an instance its pid.
pub const AGENT_PID: &str = "TANDEM_AGENT_PID";

/// The instance dies with the agent that started it, however the agent
/// ends (`PR_SET_PDEATHSIG`). This is set here, not between fork and exec
/// in the agent: that would make the agent fork, and a fork marks every
/// page of the agent copy-on-write, so its threads stalled on page faults
/// for milliseconds, right when an instance had died and the other one
/// had to carry the output alone. Without a hook the agent starts
/// instances with posix_spawn, which copies nothing.
///
/// An agent gone before this runs is seen by comparing the parent with
/// the pid the agent gave ([`AGENT_PID`]); an instance started by hand,
/// without it, only dies with its parent.
fn die_with_agent() -> Result<(), InstanceError> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: prctl with PR_SET_PDEATHSIG takes a signal number and
        // touches only this process's own flag.
        unsafe {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        }
        let agent = std::env::var(AGENT_PID)
            .ok()
            .and_then(|pid| pid.parse::<u32>().ok());
        if let Some(agent) = agent {
            if std::os::unix::process::parent_id() != agent {
                return Err(InstanceError::AgentGone(agent));
            }
        }
    }
    Ok(())
}

/// Why the control thread stopped the instance.
#[derive(Debug, Error)]
pub enum ControlError {
    /// The graph's topology could not be started.
    #[error("cannot start the graph: {0}")]
    Start(#[from] StartError),
    /// Snapshots at a barrier could not be taken.
    #[error("barrier {id}: {source}")]
    Barrier {
        /// The barrier.
        id: u64,
        /// Why.
        source: BarrierError,
    },
    /// The topology is not running after it was started.
    #[error("the topology did not start")]
    NotStarted,
    /// The topology ended while input still came (a vertex panicked: its
    /// worker's log says which).
    #[error("the topology ended while input still came (see the log for why)")]
    TopologyEnded,
    /// A snapshot chunk from the agent does not continue what came before.
    #[error(
        "snapshot chunk at {offset} of {total} bytes does not follow the {received} bytes received"
    )]
    Chunk {
        /// Its offset.
        offset: u64,
        /// The whole snapshot's length.
        total: u64,
        /// Bytes received so far.
        received: usize,
    },
}

/// What an instance needs to run.
#[derive(Debug)]
pub struct InstanceConfig {
    /// Which instance.
    pub color: Color,
    /// Where the agent listens.
    pub agent: SocketAddr,
    /// The state directory (certificates, checkpoints).
    pub state: StateDir,
    /// The instance part of the graph.
    pub plan: Plan,
    /// The graph's stamp (name and hash).
    pub stamp: GraphStamp,
    /// Most records a node takes from a ring in one pass.
    pub batch: usize,
    /// When this instance runs another graph than the agent (during an
    /// upgrade), how channel ids translate between the two.
    pub channels: Option<ChannelMap>,
}

/// Channel ids of the agent's graph and of this instance's graph, matched
/// by name. The new version of an upgrade may add channels; those the agent
/// does not know are not sent to it (its sinks never read them).
#[derive(Clone, Debug)]
pub struct ChannelMap {
    to_local: Vec<Option<ChannelId>>,
    to_agent: Vec<Option<ChannelId>>,
}

impl ChannelMap {
    /// The map between the agent's channels and this instance's; `None`
    /// when they are the same table.
    pub fn between(agent: &ChannelTable, local: &ChannelTable) -> Option<ChannelMap> {
        if agent == local {
            return None;
        }
        // Indexed by id in `from`: the id of the same name in `to`.
        let map = |from: &ChannelTable, to: &ChannelTable| {
            (0..from.len())
                .map(|i| {
                    let id = ChannelId(u32::try_from(i).unwrap_or(u32::MAX));
                    to.get(from.name(id))
                })
                .collect()
        };
        Some(ChannelMap {
            to_local: map(agent, local),
            to_agent: map(local, agent),
        })
    }

    /// Rewrites channel ids through `map`, dropping records of channels it lacks.
    fn translate(map: &[Option<ChannelId>], records: &mut Vec<Record>) {
        records.retain_mut(|r| match map.get(r.channel.index()).copied().flatten() {
            Some(c) => {
                r.channel = c;
                true
            }
            None => false,
        });
    }
}

/// What the agent puts on an instance's command line:
/// `instance --color C --agent ADDR --state-dir DIR --batch N [--channels-of F] FILE`.
#[derive(Clone, Debug)]
pub struct Launch {
    /// The graph file.
    pub file: std::path::PathBuf,
    /// Which instance.
    pub color: Color,
    /// The agent's address.
    pub agent: SocketAddr,
    /// The agent's state directory.
    pub state_dir: std::path::PathBuf,
    /// Records per node pass.
    pub batch: usize,
    /// The agent's graph, when this instance runs another one (an upgrade).
    pub channels_of: Option<std::path::PathBuf>,
}

impl Launch {
    /// Parses the arguments after the program name (`instance ...`): for a
    /// bench or test executable that is its own instance. The `tandem`
    /// command parses the same arguments with its own parser.
    pub fn parse(args: &[String]) -> Result<Launch, InstanceError> {
        Launch::parse_words(args).map_err(InstanceError::Launch)
    }

    fn parse_words(args: &[String]) -> Result<Launch, LaunchError> {
        let mut words = args.iter().map(String::as_str);
        if words.next() != Some("instance") {
            return Err(LaunchError::NotInstance);
        }
        let (mut color, mut agent, mut state_dir, mut batch) = (None, None, None, 1024);
        let (mut channels_of, mut file) = (None, None);
        while let Some(word) = words.next() {
            let mut value = || {
                words
                    .next()
                    .ok_or_else(|| LaunchError::NoValue(word.to_owned()))
            };
            match word {
                "--color" => {
                    let name = value()?;
                    color = Some(
                        Color::from_name(name)
                            .ok_or_else(|| LaunchError::Color(name.to_owned()))?,
                    )
                }
                "--agent" => agent = Some(value()?.parse().map_err(LaunchError::Agent)?),
                "--state-dir" => state_dir = Some(value()?.into()),
                "--batch" => batch = value()?.parse().map_err(LaunchError::Batch)?,
                "--channels-of" => channels_of = Some(value()?.into()),
                path => file = Some(path.into()),
            }
        }
        Ok(Launch {
            file: file.ok_or(LaunchError::Missing("graph file"))?,
            color: color.ok_or(LaunchError::Missing("--color"))?,
            agent: agent.ok_or(LaunchError::Missing("--agent"))?,
            state_dir: state_dir.ok_or(LaunchError::Missing("--state-dir"))?,
            batch,
            channels_of,
        })
    }

    /// Loads the graph (and the agent's, for channel ids) and runs the
    /// instance until the agent closes its link.
    pub fn run(self) -> Result<(), InstanceError> {
        die_with_agent()?;
        let super::graph::SplitGraph { loaded, split, .. } =
            super::graph::load(&self.file, super::graph::Opening::Any)?;
        let channels = match &self.channels_of {
            None => None,
            Some(file) => {
                let agent = crate::graph_file::load(file)?;
                ChannelMap::between(&agent.plan.channels, &split.instance.channels)
            }
        };
        run(InstanceConfig {
            color: self.color,
            agent: self.agent,
            state: StateDir::new(self.state_dir),
            stamp: GraphStamp::of_plan(&loaded.name, &loaded.plan),
            plan: split.instance,
            batch: self.batch,
            channels,
        })
    }
}

/// The version an instance reports: the low bits of its graph hash, so two
/// instances of the same graph agree and an upgraded graph differs.
pub fn version_of(stamp: &GraphStamp) -> u32 {
    (stamp.hash ^ (stamp.hash >> 32)) as u32
}

/// Runs until the agent closes the link (`Ok`) or the link fails (`Err`,
/// with the reason).
pub fn run(config: InstanceConfig) -> Result<(), InstanceError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| InstanceError::Start {
            what: "network runtime",
            source,
        })?;
    runtime.block_on(serve(config))
}

async fn serve(config: InstanceConfig) -> Result<(), InstanceError> {
    let name = config.color.name();
    let certificate = |source| InstanceError::Certificate { name, source };
    let identity = config.state.identity(name).map_err(certificate)?;
    let trust = config.state.trust().map_err(certificate)?;
    let bind: SocketAddr = if config.agent.is_ipv6() {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    };
    let client = Client::new(
        bind,
        &identity,
        &trust,
        TransportOptions::for_peer(config.agent),
    )?;
    let link = client
        .connect(config.agent, "agent")
        .await
        .map_err(|source| InstanceError::Connect {
            agent: config.agent,
            source,
        })?;
    let (mut reader, mut writer) = (link.reader, link.writer);
    let (tx, mut queued) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
    let out = Outbox {
        tx,
        budget: Arc::new(Budget::default()),
    };
    let hello = ToAgent::Hello {
        color: config.color,
        version: version_of(&config.stamp),
        pid: std::process::id(),
    };
    send(&out, hello);
    let budget = out.budget.clone();
    let writing = tokio::spawn(async move {
        while let Some(bytes) = queued.recv().await {
            let len = bytes.len();
            if writer.send_bytes(bytes).await.is_err() {
                break;
            }
            budget.release(len);
        }
        budget.close();
    });
    // Vertex figures, for the agent's collector (see `crate::metrics::feed`).
    let figures = crate::metrics::feed::socket_path(config.state.root(), config.color);
    if let Err(e) = crate::metrics::feed::serve_vertices(figures.clone()) {
        tracing::warn!(
            "{}: cannot answer for vertex figures ({e}); the agent shows none",
            figures.display()
        );
    }
    let processed = Arc::new(AtomicU64::new(0));
    // Bounded, and so is the relay after it: an instance behind stops
    // reading its link, QUIC's flow control holds the agent's writer, and
    // the agent holds its input back.
    let (to_control, mut control_rx) = tokio::sync::mpsc::channel::<ToInstance>(CONTROL_FRAMES);
    // Input batch buffers the topology is done with come back to the reader.
    let (spares, spare) = crossbeam_channel::bounded::<Vec<Record>>(4);
    let control = Control::new(config, out.clone(), processed.clone(), spares);
    // The control thread says when it stops, and why: the link is then
    // given up, and the error returned (no exit from inside a loop).
    let (stopped_tx, mut stopped) = tokio::sync::oneshot::channel::<Result<(), ControlError>>();
    let controlling = std::thread::Builder::new()
        .name("tandem-control".into())
        .spawn(move || {
            let _ = stopped_tx.send(control.run(&mut control_rx));
        })
        .map_err(|source| InstanceError::Start {
            what: "control thread",
            source,
        })?;
    let result = loop {
        if reader.wants_spare() {
            if let Ok(buffer) = spare.try_recv() {
                reader.give(buffer);
            }
        }
        let next = tokio::select! {
            next = tokio::time::timeout(AGENT_SILENCE, reader.next()) => next,
            ended = &mut stopped => break match ended {
                Ok(Err(e)) => Err(InstanceError::Control(e)),
                _ => Err(InstanceError::ControlStopped),
            },
        };
        let msg = match next {
            Err(_) => break Err(InstanceError::AgentSilent(AGENT_SILENCE)),
            Ok(Err(e)) => break Err(InstanceError::Link(e)),
            Ok(Ok(None)) => break Ok(()),
            Ok(Ok(Some(msg))) => msg,
        };
        match msg {
            ToInstance::Heartbeat { sent_ns, seq } => {
                let processed = Seq(processed.load(Ordering::Relaxed));
                send(
                    &out,
                    ToAgent::Heartbeat {
                        sent_ns,
                        seq,
                        processed,
                    },
                );
            }
            msg => {
                if to_control.send(msg).await.is_err() {
                    // It stopped: say why, if it did.
                    break match stopped.try_recv() {
                        Ok(Err(e)) => Err(InstanceError::Control(e)),
                        _ => Err(InstanceError::ControlStopped),
                    };
                }
            }
        }
    };
    drop(to_control);
    let _ = tokio::task::spawn_blocking(move || controlling.join()).await;
    // The topology's output sink may still hold a sender: do not wait for it.
    writing.abort();
    out.budget.close();
    client.close();
    result
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::up::ends::{Encode, Encoded};
    use tandem_core::wire::{self, BatchKind};
    use tandem_core::EventTime;

    #[test]
    fn a_long_output_is_split_into_frames_that_never_promise_too_much() {
        use tandem_core::Sink as _;
        let records: Vec<Record> = (0..OUTPUT_RECORDS as u64 * 2 + 10)
            .map(|i| Record::new(Seq(100 + i / 2), EventTime(0), ChannelId(0), 0.0))
            .collect();
        let frames = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let into = frames.clone();
        let mut sink = Encode::new(BatchKind::Output, OUTPUT_RECORDS, move |e| {
            if let Encoded::Batch(b) = e {
                let mut buf = bytes::BytesMut::from(&b.bytes()[..]);
                into.lock()
                    .unwrap()
                    .push(wire::decode::<ToAgent>(&mut buf).unwrap().unwrap());
            }
        });
        let end = Seq(1_000_000);
        // Written in pieces, as a topology does.
        for piece in records.chunks(1000) {
            sink.write(piece).unwrap();
        }
        sink.advance(end);
        let frames = std::mem::take(&mut *frames.lock().unwrap());
        assert_eq!(frames.len(), 3);
        let mut sent = 0;
        for (i, frame) in frames.iter().enumerate() {
            let ToAgent::Output {
                frontier,
                records: part,
            } = frame
            else {
                panic!("not an output frame");
            };
            sent += part.len();
            // Nothing in a later frame is at or below this frame's frontier.
            if let Some(next) = records.get(sent) {
                assert!(*frontier < next.seq, "frame {i} promised {frontier}");
            } else {
                assert_eq!(*frontier, end);
            }
        }
        assert_eq!(sent, records.len());
    }

    #[test]
    fn the_agents_command_line_parses_and_a_bad_one_says_what_is_missing() {
        let args: Vec<String> = "instance --color green --agent 127.0.0.1:4000 --state-dir /s \
                                 --batch 64 --channels-of /old.toml /new.toml"
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        let launch = Launch::parse(&args).unwrap();
        assert_eq!(launch.color, Color::Green);
        assert_eq!(launch.batch, 64);
        assert_eq!(launch.file, std::path::PathBuf::from("/new.toml"));
        assert_eq!(launch.channels_of, Some("/old.toml".into()));
        let err = Launch::parse(&args[..4]).unwrap_err();
        assert_eq!(err.to_string(), "`--agent` needs a value");
        let err = Launch::parse(&["instance".to_owned(), "/g.toml".to_owned()]).unwrap_err();
        assert_eq!(err.to_string(), "no --color");
        assert!(matches!(
            err,
            InstanceError::Launch(LaunchError::Missing("--color"))
        ));
    }

    #[test]
    fn channels_are_matched_by_name_and_unknown_ones_are_not_sent() {
        let mut agent = ChannelTable::new();
        let (a, b) = (agent.intern("a", ""), agent.intern("b", ""));
        let mut local = ChannelTable::new();
        let (la, new, lb) = (
            local.intern("a", ""),
            local.intern("a.peak", ""),
            local.intern("b", ""),
        );
        let map = ChannelMap::between(&agent, &local).expect("tables differ");
        let record = |c| Record::new(Seq(1), EventTime(0), c, 1.0);
        let mut input = vec![record(a), record(b)];
        ChannelMap::translate(&map.to_local, &mut input);
        assert_eq!(
            input.iter().map(|r| r.channel).collect::<Vec<_>>(),
            [la, lb]
        );
        let mut output = vec![record(la), record(new), record(lb)];
        ChannelMap::translate(&map.to_agent, &mut output);
        assert_eq!(output.iter().map(|r| r.channel).collect::<Vec<_>>(), [a, b]);
        assert!(ChannelMap::between(&agent, &agent).is_none());
    }
}
