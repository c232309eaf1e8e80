//! The instance's control thread: owns the topology; feeds it input, takes
//! barrier snapshots and checkpoints, streams and restores snapshots, in
//! the order their frames came.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tandem_core::ha::{Role, ToAgent, ToInstance};
use tandem_core::split::{FROM_AGENT, TO_AGENT};
use tandem_core::wire::BatchKind;
use tandem_core::{Record, Seq};

use super::outbox::{send, Outbox};
use super::saver::Saver;
use super::{
    ChannelMap, ControlError, InstanceConfig, CHUNK, KEPT, MAX_SNAPSHOT, OUTPUT_RECORDS,
    RELAY_BATCHES,
};
use crate::checkpoint::{self, format, Checkpoint, CheckpointStore};
use crate::topology::{Attached, RunOptions, Topology};
use crate::up::ends::{relay, Batch, Encode, Encoded, RelayFeed};
use crate::Clock;

/// A snapshot taken at a barrier, encoded as a checkpoint image.
struct Kept {
    barrier: u64,
    image: Bytes,
    vertices: u32,
    hash: u64,
}

enum Phase {
    /// Not started: a snapshot may be on its way (rejoin), or the first
    /// input starts it from the local checkpoint (cold start).
    Waiting {
        barrier: Option<u64>,
        image: Vec<u8>,
    },
    Running {
        topology: Topology,
        feed: RelayFeed,
        /// State restored at this sequence number: input at or below it is
        /// already in the state.
        start: Seq,
    },
}

pub(super) struct Control {
    config: InstanceConfig,
    out: Outbox,
    processed: Arc<AtomicU64>,
    phase: Phase,
    role: Role,
    /// Writes checkpoints on a thread of its own (none: the state
    /// directory could not be opened).
    saver: Option<Saver>,
    kept: VecDeque<Kept>,
    requested: Option<u64>,
    /// Emptied input buffers, back to the link's reader.
    spares: crossbeam_channel::Sender<Vec<Record>>,
}

impl Control {
    pub(super) fn new(
        config: InstanceConfig,
        out: Outbox,
        processed: Arc<AtomicU64>,
        spares: crossbeam_channel::Sender<Vec<Record>>,
    ) -> Self {
        let saver = match CheckpointStore::open(config.state.checkpoints(config.color)) {
            Ok(store) => match Saver::start(store) {
                Ok(saver) => Some(saver),
                Err(e) => {
                    tracing::warn!(
                        "cannot start the checkpoint writer: {e}; running without checkpoints"
                    );
                    None
                }
            },
            Err(e) => {
                tracing::warn!("{e}; running without checkpoints");
                None
            }
        };
        Control {
            config,
            out,
            processed,
            phase: Phase::Waiting {
                barrier: None,
                image: Vec::new(),
            },
            role: Role::Starting,
            saver,
            kept: VecDeque::new(),
            requested: None,
            spares,
        }
    }

    /// Handles frames until the link ends (`Ok`) or one cannot be (`Err`);
    /// either way the topology is stopped.
    pub(super) fn run(
        mut self,
        rx: &mut tokio::sync::mpsc::Receiver<ToInstance>,
    ) -> Result<(), ControlError> {
        let mut result = Ok(());
        while let Some(msg) = rx.blocking_recv() {
            if let Err(e) = self.handle(msg) {
                result = Err(e);
                break;
            }
        }
        if let Phase::Running { topology, feed, .. } = self.phase {
            drop(feed);
            topology.stop();
            topology.wait_timeout(Duration::from_secs(2));
        }
        // The last checkpoint (a drained stop's) is written before the exit.
        drop(self.saver);
        result
    }

    fn handle(&mut self, msg: ToInstance) -> Result<(), ControlError> {
        match msg {
            ToInstance::Input { frontier, records } => {
                self.ensure_running()?;
                // Fields borrowed apart: nothing is cloned per batch.
                let Phase::Running { feed, start, .. } = &self.phase else {
                    return Err(ControlError::NotStarted);
                };
                let (start, map, spares) = (*start, &self.config.channels, &self.spares);
                let mut records = if records.first().is_some_and(|r| r.seq <= start) {
                    records.into_iter().filter(|r| r.seq > start).collect()
                } else {
                    records
                };
                if let Some(map) = map {
                    ChannelMap::translate(&map.to_local, &mut records);
                }
                // A topology that has ended (a vertex panicked) takes no
                // more input: the instance stops, and the agent restarts it,
                // rather than answer pings while it drops what it is sent.
                if !feed.send(Batch { frontier, records }) {
                    return Err(ControlError::TopologyEnded);
                }
                while let Some(buffer) = feed.take_spare() {
                    if spares.try_send(buffer).is_err() {
                        break;
                    }
                }
            }
            ToInstance::Barrier { id, at } => self.barrier(id, at)?,
            ToInstance::SnapshotRequest { barrier } => {
                if self.kept.iter().any(|k| k.barrier == barrier) {
                    self.stream(barrier);
                } else {
                    self.requested = Some(barrier);
                }
            }
            ToInstance::SnapshotChunk {
                barrier,
                offset,
                total,
                bytes,
                ..
            } => {
                let Phase::Waiting {
                    barrier: current,
                    image,
                } = &mut self.phase
                else {
                    return Ok(());
                };
                if *current != Some(barrier) {
                    *current = Some(barrier);
                    image.clear();
                }
                let fits = offset == image.len() as u64
                    && total <= MAX_SNAPSHOT
                    && offset + bytes.len() as u64 <= total;
                if !fits {
                    return Err(ControlError::Chunk {
                        offset,
                        total,
                        received: image.len(),
                    });
                }
                image.extend_from_slice(&bytes);
            }
            ToInstance::SnapshotEnd {
                barrier,
                state_hash,
                ..
            } => self.restore(barrier, state_hash)?,
            ToInstance::SetRole { role } => {
                if role != self.role {
                    tracing::info!("{role}");
                }
                self.role = role;
            }
            ToInstance::Heartbeat { .. } => {}
        }
        Ok(())
    }

    /// Starts the topology (from the newest local checkpoint, if any)
    /// unless it runs already.
    fn ensure_running(&mut self) -> Result<(), ControlError> {
        if matches!(self.phase, Phase::Waiting { .. }) {
            let local = self.config.state.newest_checkpoint(&self.config.stamp.name);
            if let Some((path, checkpoint)) = &local {
                tracing::info!(
                    "starting from {} (origin sequence {})",
                    path.display(),
                    checkpoint.seq
                );
            }
            self.start(local.map(|(_, c)| c))?;
        }
        Ok(())
    }

    fn start(&mut self, checkpoint: Option<Checkpoint>) -> Result<(), ControlError> {
        let (feed, source) = relay(Some(RELAY_BATCHES));
        let out = self.out.clone();
        let processed = self.processed.clone();
        let map = self.config.channels.as_ref().map(|m| m.to_agent.clone());
        #[cfg(feature = "harness")]
        let withhold = crate::harness::withholds_output(self.config.color);
        #[cfg(not(feature = "harness"))]
        let withhold = false;
        // Each output record is encoded once, into the frame sent to the
        // agent; frames of at most OUTPUT_RECORDS, cut where the frontier
        // allows (the next frame may start with the same seq).
        let sink = Encode::new(BatchKind::Output, OUTPUT_RECORDS, move |encoded| {
            // At the end of the stream the instance is stopping; the agent
            // learns nothing from that.
            let Encoded::Batch(batch) = encoded else {
                return;
            };
            let frontier = batch.frontier();
            if !withhold {
                out.push_output(batch.bytes().clone());
            }
            processed.fetch_max(frontier.0, Ordering::Relaxed);
        })
        .with_channels(map);
        let mut attached = Attached::default();
        attached
            .sources
            .insert(FROM_AGENT.to_owned(), Box::new(source));
        attached.sinks.insert(TO_AGENT.to_owned(), Box::new(sink));
        let options = RunOptions {
            clock: Clock::Wall,
            span: None,
            hold_at_end: false,
            batch: self.config.batch,
        };
        let (topology, report) =
            Topology::start_with(&self.config.plan, options, checkpoint.as_ref(), attached)?;
        if let Some(report) = report {
            if !report.is_complete() {
                tracing::info!("{report}");
            }
        }
        let start = checkpoint.map_or(Seq::ZERO, |c| c.seq);
        self.processed.store(start.0, Ordering::Relaxed);
        self.phase = Phase::Running {
            topology,
            feed,
            start,
        };
        Ok(())
    }

    fn barrier(&mut self, id: u64, at: Seq) -> Result<(), ControlError> {
        self.ensure_running()?;
        let Phase::Running {
            topology, start, ..
        } = &mut self.phase
        else {
            return Ok(());
        };
        if at < *start {
            // Placed before this instance's restore point (a cold start from
            // a newer checkpoint): it has no state there to report.
            return Ok(());
        }
        let placed = topology.place_barrier(at);
        let taken = topology
            .barrier_snapshots(placed, Duration::from_secs(30))
            .map_err(|source| ControlError::Barrier { id, source })?;
        let checkpoint = Checkpoint {
            graph: self.config.stamp.clone(),
            seq: taken.at,
            vertices: taken.vertices,
        };
        let hash = checkpoint::state_hash(&checkpoint.vertices);
        send(&self.out, ToAgent::StateHash { barrier: id, hash });
        // One image: kept for a rejoin, and written by the saver's thread.
        let image = Bytes::from(format::encode(&checkpoint));
        if self.role == Role::Serving {
            if let Some(saver) = &self.saver {
                saver.save(checkpoint.seq, image.clone());
            }
        }
        if self.kept.len() == KEPT {
            self.kept.pop_front();
        }
        self.kept.push_back(Kept {
            barrier: id,
            image,
            vertices: u32::try_from(checkpoint.vertices.len()).unwrap_or(u32::MAX),
            hash,
        });
        if self.requested == Some(id) {
            self.requested = None;
            self.stream(id);
        }
        Ok(())
    }

    /// Sends the snapshot kept for `barrier` to the agent, to relay.
    fn stream(&self, barrier: u64) {
        let Some(kept) = self.kept.iter().find(|k| k.barrier == barrier) else {
            return;
        };
        let total = kept.image.len() as u64;
        let mut offset = 0;
        while offset < kept.image.len() {
            let end = (offset + CHUNK).min(kept.image.len());
            send(
                &self.out,
                ToAgent::SnapshotChunk {
                    barrier,
                    vertex: 0,
                    offset: offset as u64,
                    total,
                    bytes: kept.image.slice(offset..end),
                },
            );
            offset = end;
        }
        send(
            &self.out,
            ToAgent::SnapshotEnd {
                barrier,
                vertices: kept.vertices,
                state_hash: kept.hash,
            },
        );
    }

    /// The donor's snapshot is complete: check it, start from it, and say so.
    fn restore(&mut self, barrier: u64, donor_hash: u64) -> Result<(), ControlError> {
        let Phase::Waiting {
            barrier: current,
            image,
        } = &mut self.phase
        else {
            return Ok(());
        };
        if *current != Some(barrier) {
            return Ok(());
        }
        let image = std::mem::take(image);
        *current = None;
        let checkpoint = match format::decode(&image) {
            Ok(checkpoint) => checkpoint,
            Err(e) => {
                tracing::warn!("the snapshot of barrier {barrier} was refused: {e}");
                send(
                    &self.out,
                    ToAgent::Restored {
                        barrier,
                        state_hash: !donor_hash,
                    },
                );
                return Ok(());
            }
        };
        let hash = checkpoint::state_hash(&checkpoint.vertices);
        if hash != donor_hash {
            send(
                &self.out,
                ToAgent::Restored {
                    barrier,
                    state_hash: hash,
                },
            );
            return Ok(());
        }
        self.start(Some(checkpoint))?;
        send(
            &self.out,
            ToAgent::Restored {
                barrier,
                state_hash: hash,
            },
        );
        Ok(())
    }
}
