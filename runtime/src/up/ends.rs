//! The junction ends inside a topology: a [`Relay`] source fed from another
//! thread, a [`Forward`] sink that hands what it was given, with its
//! frontier, to a callback, and an [`Encode`] sink that encodes what it is
//! written straight into batch frames (the record path: each record's bytes
//! are written once, into the frame that leaves the process).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Waker;

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use tandem_core::wire::{BatchEncoder, BatchKind, EncodedBatch};
use tandem_core::{ChannelId, EventTime, Record, Seq, Sink, SinkError, Source};

/// One batch crossing a junction: records in sequence order and the frontier after them.
#[derive(Debug, Default)]
pub struct Batch {
    /// Nothing more will come at or below this.
    pub frontier: Seq,
    /// The records.
    pub records: Vec<Record>,
}

/// Emptied record buffers a relay hands back to its feed, at most.
const SPARE_BUFFERS: usize = 8;

/// The feeding end of a [`Relay`]: send batches, and the relay's ingress wakes.
#[derive(Clone, Debug)]
pub struct RelayFeed {
    tx: Sender<Batch>,
    waker: Arc<Mutex<Option<Waker>>>,
    /// Records sent and not yet taken by the relay.
    queued: Arc<AtomicUsize>,
    /// Buffers the relay is done with, to fill again.
    spare: Receiver<Vec<Record>>,
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

    /// Records queued and not yet taken by the relay.
    pub fn queued_records(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// An empty buffer to fill and send: one the relay is done with when
    /// there is one, so that steady state allocates none.
    pub fn spare(&self) -> Vec<Record> {
        self.spare.try_recv().unwrap_or_default()
    }

    /// A buffer the relay is done with, if there is one.
    pub fn take_spare(&self) -> Option<Vec<Record>> {
        self.spare.try_recv().ok()
    }

    /// Queues a batch (waiting for room in a bounded relay) and wakes the
    /// ingress. False once the topology is gone.
    pub fn send(&self, batch: Batch) -> bool {
        let n = batch.records.len();
        self.queued.fetch_add(n, Ordering::Relaxed);
        let sent = self.tx.send(batch).is_ok();
        if !sent {
            self.queued.fetch_sub(n, Ordering::Relaxed);
        }
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
    queued: Arc<AtomicUsize>,
    spare: Sender<Vec<Record>>,
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
    let queued = Arc::new(AtomicUsize::new(0));
    let (spare_tx, spare_rx) = crossbeam_channel::bounded(SPARE_BUFFERS);
    (
        RelayFeed {
            tx,
            waker: waker.clone(),
            queued: queued.clone(),
            spare: spare_rx,
        },
        Relay {
            rx,
            waker,
            frontier: Seq::ZERO,
            queued,
            spare: spare_tx,
        },
    )
}

/// Records a relay hands the topology per poll, at least one batch: what
/// waits beyond stays in the channel, so the topology's buffers stay the
/// size of a batch, not of the backlog.
const RELAY_POLL_RECORDS: usize = 4096;

impl Source for Relay {
    fn poll(&mut self, now: EventTime, out: &mut Vec<Record>) -> Option<EventTime> {
        loop {
            if out.len() >= RELAY_POLL_RECORDS {
                // More may wait: poll again at once.
                return Some(now);
            }
            match self.rx.try_recv() {
                Ok(mut batch) => {
                    self.queued
                        .fetch_sub(batch.records.len(), Ordering::Relaxed);
                    // The batch's own buffer becomes the output when it can
                    // (no copy), and the emptied one goes back to the feed.
                    if out.is_empty() {
                        std::mem::swap(out, &mut batch.records);
                    } else {
                        out.extend_from_slice(&batch.records);
                    }
                    batch.records.clear();
                    if batch.records.capacity() > 0 {
                        let _ = self.spare.try_send(batch.records);
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

/// What an [`Encode`] sink hands on.
#[derive(Debug)]
pub enum Encoded {
    /// A whole batch frame.
    Batch(EncodedBatch),
    /// The input ended (frontier END): nothing more comes.
    End,
}

/// A sink that encodes the records it is written straight into batch
/// frames of one kind ([`BatchEncoder`]: one copy, into blocks reused from
/// batch to batch) and hands each frame to `deliver` as soon as it is
/// closed: when full, and when the frontier moves.
pub struct Encode<F> {
    encoder: BatchEncoder,
    /// Channel ids rewritten on the way out (an upgrade's other graph):
    /// indexed by id, `None` drops the record.
    map: Option<Vec<Option<ChannelId>>>,
    scratch: Vec<Record>,
    deliver: F,
}

impl<F> std::fmt::Debug for Encode<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encode")
            .field("encoder", &self.encoder)
            .finish()
    }
}

impl<F: FnMut(Encoded) + Send> Encode<F> {
    /// Frames of `kind` of at most `max_records` records each.
    pub fn new(kind: BatchKind, max_records: usize, deliver: F) -> Encode<F> {
        Encode {
            encoder: BatchEncoder::new(kind, max_records),
            map: None,
            scratch: Vec::new(),
            deliver,
        }
    }

    /// Rewrites each record's channel through `map` before encoding it.
    #[must_use]
    pub fn with_channels(mut self, map: Option<Vec<Option<ChannelId>>>) -> Encode<F> {
        self.map = map;
        self
    }

    fn hand_on(&mut self) {
        while let Some(batch) = self.encoder.poll() {
            (self.deliver)(Encoded::Batch(batch));
        }
    }
}

impl<F: FnMut(Encoded) + Send> Sink for Encode<F> {
    fn write(&mut self, records: &[Record]) -> Result<(), SinkError> {
        match &self.map {
            None => self.encoder.push(records),
            Some(map) => {
                self.scratch.clear();
                self.scratch.extend(records.iter().filter_map(|r| {
                    let channel = map.get(r.channel.index()).copied().flatten()?;
                    Some(Record { channel, ..*r })
                }));
                self.encoder.push(&self.scratch);
            }
        }
        self.hand_on();
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }

    fn advance(&mut self, frontier: Seq) {
        if frontier == Seq::END {
            // What is open goes with the frontier it has; then the end.
            let open = self.encoder.frontier();
            self.encoder.finish(open);
            self.hand_on();
            (self.deliver)(Encoded::End);
            return;
        }
        self.encoder.finish(frontier);
        self.hand_on();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tandem_core::ha::ToInstance;

    fn rec(seq: u64) -> Record {
        Record::new(Seq(seq), EventTime(0), ChannelId(0), seq as f64)
    }

    #[test]
    fn the_encoding_sink_sends_whole_frames_and_the_end() {
        let got = Arc::new(Mutex::new(Vec::new()));
        let into = got.clone();
        let mut sink = Encode::new(BatchKind::Input, 2, move |e| into.lock().unwrap().push(e));
        sink.write(&[rec(1), rec(2), rec(3)]).unwrap();
        sink.advance(Seq(4));
        sink.advance(Seq::END);
        let got = std::mem::take(&mut *got.lock().unwrap());
        let mut frames = Vec::new();
        for e in got {
            match e {
                Encoded::Batch(b) => {
                    let mut buf = bytes::BytesMut::from(&b.bytes()[..]);
                    frames.push(
                        tandem_core::wire::decode::<ToInstance>(&mut buf)
                            .unwrap()
                            .unwrap(),
                    );
                }
                Encoded::End => frames.push(ToInstance::SetRole {
                    role: tandem_core::ha::Role::Starting,
                }),
            }
        }
        assert_eq!(
            frames,
            [
                ToInstance::Input {
                    frontier: Seq(2),
                    records: vec![rec(1), rec(2)]
                },
                ToInstance::Input {
                    frontier: Seq(4),
                    records: vec![rec(3)]
                },
                // The end, as a marker.
                ToInstance::SetRole {
                    role: tandem_core::ha::Role::Starting
                },
            ]
        );
    }

    #[test]
    fn a_relay_counts_the_records_waiting_and_hands_its_buffers_back() {
        let (feed, mut relay) = relay(None);
        let mut records = feed.spare();
        records.extend([rec(1), rec(2)]);
        feed.send(Batch {
            frontier: Seq(2),
            records,
        });
        assert_eq!(feed.queued_records(), 2);
        let mut out = Vec::with_capacity(16);
        relay.poll(EventTime(0), &mut out);
        assert_eq!(out, [rec(1), rec(2)]);
        assert_eq!(feed.queued_records(), 0);
        // The source's own buffer comes back to be filled next.
        assert!(feed.spare().capacity() >= 16);
    }
}
