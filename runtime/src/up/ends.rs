//! The junction ends inside a topology: a [`Relay`] source fed from another
//! thread, and a [`Forward`] sink that hands what it was given, with its
//! frontier, to a callback.

use std::sync::{Arc, Mutex};
use std::task::Waker;

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use tandem_core::{EventTime, Record, Seq, Sink, SinkError, Source};

/// One batch crossing a junction: records in sequence order and the frontier after them.
#[derive(Debug, Default)]
pub struct Batch {
    /// Nothing more will come at or below this.
    pub frontier: Seq,
    /// The records.
    pub records: Vec<Record>,
}

/// The feeding end of a [`Relay`]: send batches, and the relay's ingress wakes.
#[derive(Clone, Debug)]
pub struct RelayFeed {
    tx: Sender<Batch>,
    waker: Arc<Mutex<Option<Waker>>>,
}

impl RelayFeed {
    /// Batches queued and not yet taken by the relay.
    pub fn len(&self) -> usize {
        self.tx.len()
    }

    /// True when no batch waits.
    pub fn is_empty(&self) -> bool {
        self.tx.is_empty()
    }

    /// Queues a batch (waiting for room in a bounded relay) and wakes the
    /// ingress. False once the topology is gone.
    pub fn send(&self, batch: Batch) -> bool {
        let sent = self.tx.send(batch).is_ok();
        self.wake();
        sent
    }

    fn wake(&self) {
        if let Some(waker) = self
            .waker
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            waker.wake_by_ref();
        }
    }
}

impl Drop for RelayFeed {
    /// The relay ends once every feed is gone; it must be polled to see that.
    /// The sender goes first: a relay woken while it still lived would find
    /// the channel empty, not disconnected, and sleep for an hour.
    fn drop(&mut self) {
        let (closed, _) = crossbeam_channel::bounded(0);
        drop(std::mem::replace(&mut self.tx, closed));
        self.wake();
    }
}

/// A source of records that already carry origin sequence numbers.
#[derive(Debug)]
pub struct Relay {
    rx: Receiver<Batch>,
    waker: Arc<Mutex<Option<Waker>>>,
    frontier: Seq,
}

/// An hour: a relay is polled when woken, not on a timer.
const IDLE_NS: i64 = 3_600_000_000_000;

/// A relay and the feed that fills it, holding at most `capacity` batches
/// (`None`: any number); a full relay makes [`RelayFeed::send`] wait.
/// Dropping every feed ends the relay.
pub fn relay(capacity: Option<usize>) -> (RelayFeed, Relay) {
    let (tx, rx) = match capacity {
        Some(n) => crossbeam_channel::bounded(n),
        None => crossbeam_channel::unbounded(),
    };
    let waker = Arc::new(Mutex::new(None));
    (
        RelayFeed {
            tx,
            waker: waker.clone(),
        },
        Relay {
            rx,
            waker,
            frontier: Seq::ZERO,
        },
    )
}

impl Source for Relay {
    fn poll(&mut self, now: EventTime, out: &mut Vec<Record>) -> Option<EventTime> {
        loop {
            match self.rx.try_recv() {
                Ok(mut batch) => {
                    // The batch's own buffer becomes the output when it can.
                    if out.is_empty() {
                        std::mem::swap(out, &mut batch.records);
                    } else {
                        out.extend_from_slice(&batch.records);
                    }
                    self.frontier = self.frontier.max(batch.frontier);
                }
                Err(TryRecvError::Empty) => return Some(now.add_nanos(IDLE_NS)),
                Err(TryRecvError::Disconnected) => return None,
            }
        }
    }

    fn relayed_frontier(&self) -> Option<Seq> {
        Some(self.frontier)
    }

    fn set_waker(&mut self, waker: Waker) {
        *self.waker.lock().unwrap_or_else(|e| e.into_inner()) = Some(waker);
    }
}

/// A sink that collects what it is written and, each time its input
/// frontier moves, hands the batch to `deliver`.
pub struct Forward<F> {
    pending: Vec<Record>,
    deliver: F,
}

impl<F> std::fmt::Debug for Forward<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forward")
            .field("pending", &self.pending.len())
            .finish()
    }
}

impl<F: FnMut(Seq, &mut Vec<Record>) + Send> Forward<F> {
    /// `deliver(frontier, records)` gets each batch; it may take the records
    /// (what it leaves is cleared).
    pub fn new(deliver: F) -> Forward<F> {
        Forward {
            pending: Vec::new(),
            deliver,
        }
    }
}

impl<F: FnMut(Seq, &mut Vec<Record>) + Send> Sink for Forward<F> {
    fn write(&mut self, records: &[Record]) -> Result<(), SinkError> {
        self.pending.extend_from_slice(records);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }

    fn advance(&mut self, frontier: Seq) {
        (self.deliver)(frontier, &mut self.pending);
        self.pending.clear();
    }
}
