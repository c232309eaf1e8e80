//! The agent's instance links: accepting them, the hello, and moving frames
//! between each link and the hub.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tandem_core::ha::{Color, Nanos, ToAgent};
use tandem_core::wire::Message as _;
use tandem_core::Record;
use tokio::sync::mpsc::{unbounded_channel, Sender, UnboundedSender};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::net::{AgentLink, Link, LinkError, NetStats, Server};

pub(super) enum Conn {
    Hello {
        conn: u64,
        color: Color,
        version: u32,
        pid: u32,
        tx: UnboundedSender<Bytes>,
        /// Bytes queued to `tx` and not yet written.
        queued: Arc<AtomicUsize>,
    },
    Frame {
        conn: u64,
        msg: ToAgent,
        /// When it arrived (nanoseconds since the agent started): liveness
        /// is judged by arrival, however long the hub took to get to it.
        at: Nanos,
        /// Its bytes in the [`FrameBudget`], given back when the hub is done with it.
        _held: Option<OwnedSemaphorePermit>,
        /// Where the hub gives back emptied batch buffers, for the link's
        /// decoder to fill again (no allocation per batch).
        spares: crossbeam_channel::Sender<Vec<Record>>,
    },
    Closed {
        conn: u64,
        /// Why; `None`: the instance closed its link itself.
        error: Option<LinkError>,
    },
}

/// Bytes of frames read from the links and not yet handled by the hub, at
/// most: a link's reader waits for room before it hands the hub a frame, so
/// a hub behind its links holds at most this much of their output (the
/// rest waits in QUIC's flow control, then in the instances).
#[derive(Clone, Debug)]
pub(super) struct FrameBudget {
    permits: Arc<Semaphore>,
    total: usize,
}

impl FrameBudget {
    /// A budget of `total` bytes (at least 1).
    pub(super) fn new(total: usize) -> FrameBudget {
        let total = total.clamp(1, u32::MAX as usize);
        FrameBudget {
            permits: Arc::new(Semaphore::new(total)),
            total,
        }
    }

    /// Waits until `bytes` (at most the whole budget) are free and holds them.
    async fn take(&self, bytes: usize) -> Option<OwnedSemaphorePermit> {
        // Clamped to the budget, which fits a u32.
        let n = bytes.clamp(1, self.total) as u32;
        self.permits.clone().acquire_many_owned(n).await.ok()
    }
}

/// Accepts instance connections; each runs in its own task.
pub(super) async fn accept(
    server: Arc<Server>,
    events: Sender<Conn>,
    budget: FrameBudget,
    origin: Instant,
) {
    let mut next = 0u64;
    while let Some(pending) = server.accept().await {
        next += 1;
        let conn = next;
        let events = events.clone();
        let stats = server.stats().clone();
        let budget = budget.clone();
        tokio::spawn(async move {
            match pending.establish().await {
                Ok(link) => connection(conn, link, events, &budget, origin, &stats).await,
                Err(e) => tracing::warn!("refused a connection: {e}"),
            }
        });
    }
}

/// One instance link: the first frame must be `Hello`; then frames go to
/// the hub, and what the hub queues goes out.
async fn connection(
    conn: u64,
    link: AgentLink,
    events: Sender<Conn>,
    budget: &FrameBudget,
    origin: Instant,
    stats: &NetStats,
) {
    let Link {
        connection,
        mut reader,
        mut writer,
    } = link;
    let closed = |error: Option<LinkError>| Conn::Closed { conn, error };
    let first = tokio::time::timeout(Duration::from_secs(5), reader.next()).await;
    let (color, version, pid) = match first {
        Ok(Ok(Some(ToAgent::Hello {
            color,
            version,
            pid,
        }))) if crate::net::peer_is(&connection, color.name()) => (color, version, pid),
        Ok(Ok(Some(ToAgent::Hello { color, .. }))) => {
            stats.refuse();
            tracing::warn!(
                "refused a connection from {}: it claimed to be {color} without {color}'s \
                 certificate (counted in refused_connections)",
                connection.remote_address()
            );
            connection.close(
                quinn::VarInt::from_u32(crate::net::CLOSE_BAD_FRAME),
                b"certificate is not for that colour",
            );
            return;
        }
        Ok(Ok(Some(other))) => {
            stats.bad_frame();
            connection.close(
                quinn::VarInt::from_u32(crate::net::CLOSE_BAD_FRAME),
                b"hello expected",
            );
            tracing::warn!(
                "a peer sent a {} frame before its hello; closed",
                other.name()
            );
            return;
        }
        Ok(Ok(None)) | Err(_) => return,
        Ok(Err(e)) => {
            tracing::warn!("{e}");
            return;
        }
    };
    let (tx, mut rx) = unbounded_channel::<Bytes>();
    let queued = Arc::new(AtomicUsize::new(0));
    if events
        .send(Conn::Hello {
            conn,
            color,
            version,
            pid,
            tx,
            queued: queued.clone(),
        })
        .await
        .is_err()
    {
        return;
    }
    tokio::spawn(async move {
        while let Some(bytes) = rx.recv().await {
            let len = bytes.len();
            if writer.send_bytes(bytes).await.is_err() {
                return;
            }
            queued.fetch_sub(len, Ordering::Relaxed);
        }
        let _ = writer.finish();
    });
    // A few emptied batch buffers on their way back from the hub.
    let (spares, spare) = crossbeam_channel::bounded::<Vec<Record>>(4);
    loop {
        if reader.wants_spare() {
            if let Ok(buffer) = spare.try_recv() {
                reader.give(buffer);
            }
        }
        match reader.next().await {
            Ok(Some(msg)) => {
                let at = Nanos::from_duration(origin.elapsed());
                let held = budget.take(msg.encoded_len()).await;
                let frame = Conn::Frame {
                    conn,
                    msg,
                    at,
                    _held: held,
                    spares: spares.clone(),
                };
                if events.send(frame).await.is_err() {
                    return;
                }
            }
            Ok(None) => {
                let _ = events.send(closed(None)).await;
                return;
            }
            Err(e) => {
                let _ = events.send(closed(Some(e))).await;
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn frames_waiting_for_the_hub_hold_at_most_the_budget() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            let budget = FrameBudget::new(1000);
            let first = budget.take(600).await.unwrap();
            // A second frame of 600 bytes waits until the first is handled.
            let waiting = {
                let budget = budget.clone();
                tokio::spawn(async move { budget.take(600).await.map(|p| p.num_permits()) })
            };
            for _ in 0..10 {
                tokio::task::yield_now().await;
            }
            assert!(!waiting.is_finished());
            // (Fair: the waiting frame already holds what is free.)
            assert_eq!(budget.permits.available_permits(), 0);
            drop(first);
            assert_eq!(waiting.await.unwrap(), Some(600));
            // A frame larger than the whole budget takes all of it, and passes.
            let big = budget.take(5000).await.unwrap();
            assert_eq!(big.num_permits(), 1000);
        });
    }
}
