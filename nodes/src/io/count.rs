//! `count`: counts records per channel and keeps the last origin sequence
//! number seen. For benches and tests: it writes nothing anywhere.
//!
//! The counters live in a [`Counts`] shared through an `Arc`. A sink built
//! from a graph registers its counters under its `key` parameter (default: the
//! sink's id), so code that only holds the running graph reads them with
//! [`counts`]:
//!
//! ```
//! # use tandem_nodes::io::count;
//! // after building a graph with `[sinks.tally] kind = "count"`:
//! if let Some(c) = count::counts("tally") {
//!     println!("{} records, last seq {}", c.total(), c.last_seq());
//! }
//! ```
//!
//! Building a sink with a key that is already registered replaces the entry
//! with fresh counters; [`forget`] removes it. Code that builds sinks itself
//! can use [`CountSink::new`] and [`CountSink::counts`] and skip the registry.
//!
//! Counters are written with `Relaxed` stores by the one thread that owns the
//! sink; read them after joining that thread (or accept a slightly stale view
//! while it runs). `write` neither allocates nor locks.

use super::text_param;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use tandem_core::{
    Arity, BuildContext, BuildError, Builder, ChannelId, KindSpec, ParamDefault, ParamSpec,
    ParamType, Record, Seq, Sink, SinkError,
};

/// The `count` kind.
pub static KIND: KindSpec = KindSpec {
    name: "count",
    version: 1,
    doc: "counts records per channel and keeps the last sequence number seen (for benches)",
    input_names: &["in"],
    arity: Arity::at_least(1),
    outputs: &[],
    outputs_from: None,
    params: &[ParamSpec {
        name: "key",
        ty: ParamType::Text,
        default: ParamDefault::Optional,
        doc: "name to read the counters by with `count::counts`; default: the sink's id",
    }],
    state_schema: None,
    migrations: &[],
    build: Builder::Sink(build),
};

/// Counters of one `count` sink.
#[derive(Debug)]
pub struct Counts {
    total: AtomicU64,
    last_seq: AtomicU64,
    per_channel: Box<[AtomicU64]>,
}

impl Counts {
    fn new(channels: usize) -> Counts {
        Counts {
            total: AtomicU64::new(0),
            last_seq: AtomicU64::new(0),
            per_channel: (0..channels).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Records written, all channels.
    pub fn total(&self) -> u64 {
        self.total.load(Relaxed)
    }

    /// Origin sequence number of the last record written ([`Seq::ZERO`] before any).
    pub fn last_seq(&self) -> Seq {
        Seq(self.last_seq.load(Relaxed))
    }

    /// Records written on `channel` (0 for a channel outside the graph's table).
    pub fn channel(&self, channel: ChannelId) -> u64 {
        self.per_channel
            .get(channel.index())
            .map_or(0, |c| c.load(Relaxed))
    }
}

static REGISTRY: Mutex<BTreeMap<String, Arc<Counts>>> = Mutex::new(BTreeMap::new());

/// The counters of the `count` sink registered under `key` (its id unless set).
pub fn counts(key: &str) -> Option<Arc<Counts>> {
    let registry = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    registry.get(key).cloned()
}

/// Removes the counters registered under `key`, returning them.
pub fn forget(key: &str) -> Option<Arc<Counts>> {
    let mut registry = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    registry.remove(key)
}

fn build(ctx: &BuildContext<'_>) -> Result<Box<dyn Sink>, BuildError> {
    let key = match ctx.params.get("key") {
        None => ctx.id,
        Some(_) => text_param(ctx, "key")?,
    };
    let sink = CountSink::new(ctx.channels.len());
    let mut registry = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    registry.insert(key.to_owned(), sink.counts());
    Ok(Box::new(sink))
}

/// The `count` sink.
#[derive(Debug)]
pub struct CountSink {
    counts: Arc<Counts>,
    total: u64,
}

impl CountSink {
    /// A sink counting records on channel ids below `channels` (others count in the total only).
    pub fn new(channels: usize) -> CountSink {
        CountSink {
            counts: Arc::new(Counts::new(channels)),
            total: 0,
        }
    }

    /// Its counters.
    pub fn counts(&self) -> Arc<Counts> {
        Arc::clone(&self.counts)
    }
}

impl Sink for CountSink {
    fn write(&mut self, records: &[Record]) -> Result<(), SinkError> {
        let Some(last) = records.last() else {
            return Ok(());
        };
        for record in records {
            if let Some(c) = self.counts.per_channel.get(record.channel.index()) {
                // This sink is the only writer: a load and a store, no locked add.
                c.store(c.load(Relaxed).wrapping_add(1), Relaxed);
            }
        }
        self.total = self.total.wrapping_add(records.len() as u64);
        self.counts.total.store(self.total, Relaxed);
        self.counts.last_seq.store(last.seq.0, Relaxed);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::io::testing::{sink, text};
    use tandem_core::{ChannelTable, EventTime};

    fn table() -> Arc<ChannelTable> {
        let mut t = ChannelTable::new();
        t.intern("a", "");
        t.intern("b", "");
        Arc::new(t)
    }

    fn rec(seq: u64, channel: u32) -> Record {
        Record::new(Seq(seq), EventTime(0), ChannelId(channel), 0.0)
    }

    #[test]
    fn counts_per_channel_and_keeps_the_last_seq_under_the_sink_id() {
        let t = table();
        let mut s = sink("count-test-id", &KIND, &[], &t, &[ChannelId(0)]).unwrap();
        let c = counts("count-test-id").unwrap();
        assert_eq!((c.total(), c.last_seq()), (0, Seq::ZERO));
        s.write(&[rec(1, 0), rec(2, 1), rec(3, 0)]).unwrap();
        s.write(&[]).unwrap();
        s.write(&[rec(4, 9)]).unwrap();
        assert_eq!(c.total(), 4);
        assert_eq!(c.last_seq(), Seq(4));
        assert_eq!(c.channel(ChannelId(0)), 2);
        assert_eq!(c.channel(ChannelId(1)), 1);
        assert_eq!(c.channel(ChannelId(9)), 0);
        assert!(forget("count-test-id").is_some());
        assert!(counts("count-test-id").is_none());
    }

    #[test]
    fn a_key_names_the_counters_and_a_rebuild_starts_from_zero() {
        let t = table();
        let params = [("key", text("count-test-key"))];
        let mut s = sink("other", &KIND, &params, &t, &[ChannelId(0)]).unwrap();
        s.write(&[rec(1, 0)]).unwrap();
        assert_eq!(counts("count-test-key").unwrap().total(), 1);
        let _s = sink("other", &KIND, &params, &t, &[ChannelId(0)]).unwrap();
        assert_eq!(counts("count-test-key").unwrap().total(), 0);
        assert!(counts("other").is_none());
    }
}
