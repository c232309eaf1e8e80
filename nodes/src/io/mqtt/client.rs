//! The publisher: a thread of its own, running a small single-threaded tokio
//! runtime, that sends the spool to the broker with QoS 1 and moves the
//! spool's cursor as PUBACKs come back. The sink's worker thread never
//! waits for it.
//!
//! - rumqttc's event loop runs in a task of its own and is never cancelled
//!   (cancelling it mid-write could lose a packet it already counted as in
//!   flight); its events reach the publisher over a channel.
//! - Messages in flight are a FIFO; a PUBACK marks its message, and the
//!   acknowledged prefix of the FIFO moves the cursor. A chunk of the spool
//!   is acknowledged once all of its messages are.
//! - The session is clean: on a lost connection the publisher forgets what
//!   was in flight, the event loop drops what it still held, and after
//!   reconnecting the publisher sends again from the acknowledged cursor,
//!   in order. What was in flight when the link broke may reach the broker
//!   twice; it is counted in [`crate::io::spool::Counters::resent`].
//! - Every `sync` interval (and at once when the connection is lost) the
//!   spool is fsynced and the cursor stored.

use super::discovery::{Discovery, Sensor};
use super::payload::{Encoder, Template};
use crate::io::spool::{Entry, Shared, SpoolIndex, SpoolReader};
use rumqttc::{AsyncClient, Event, EventLoop, Incoming, MqttOptions, Outgoing, QoS};
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};
use tokio::sync::Notify;
use tokio::time::Instant;

/// Messages in flight at most (rumqttc's `inflight`).
pub const INFLIGHT: u16 = 100;
/// Most spool entries read into one chunk. With batches, a chunk is read
/// whole whenever a message may be sent, so that each channel's share of it
/// fills whole messages (64 of `batch`, at most this).
const CHUNK: usize = 16_384;
/// First and longest wait between connection attempts.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(2));

/// Counts kept by the publisher.
#[derive(Debug, Default)]
pub struct Stats {
    /// True while connected to the broker.
    pub connected: AtomicBool,
    /// Messages of records published (first sends and re-sends).
    pub sent_messages: AtomicU64,
    /// Records published (first sends and re-sends).
    pub sent_records: AtomicU64,
    /// Records whose message the broker acknowledged.
    pub acked_records: AtomicU64,
    /// Event time (ns) of the newest record the broker acknowledged; 0
    /// before the first. Delivery is that far behind while records wait.
    pub delivered_through_ns: AtomicI64,
    /// Connections lost.
    pub disconnects: AtomicU64,
    /// Times Home Assistant's discovery configs were published.
    pub discovery_published: AtomicU64,
}

/// How the sink talks to its publisher.
#[derive(Debug, Default)]
pub struct Control {
    /// Set when the sink is dropped: drain, say `offline`, disconnect.
    pub stop: AtomicBool,
    /// Woken when entries were committed to the spool, and on stop.
    pub wake: Notify,
}

/// Everything the publisher needs besides the spool.
#[derive(Debug)]
pub struct Link {
    /// Client options, the last will included.
    pub options: MqttOptions,
    /// `host:port`, for messages.
    pub broker: String,
    /// The sink's id, for messages.
    pub sink: String,
    /// The gateway id.
    pub gateway: String,
    /// Topic per channel.
    pub template: Template,
    /// Records of one channel per message at most; 1 for single records.
    pub batch: usize,
    /// Availability topic.
    pub availability: String,
    /// Home Assistant discovery, with the sensors it announces.
    pub discovery: Option<(Discovery, Vec<Sensor>)>,
    /// How often the spool is fsynced and the cursor stored.
    pub sync_every: Duration,
    /// How long a stopping sink may go on sending what is spooled.
    pub drain: Duration,
    /// Where counters are written for operators and tests.
    pub status_path: PathBuf,
}

/// One message in flight, or a chunk of the spool with nothing to send.
#[derive(Debug)]
struct InFlight {
    /// False for skipped entries (nothing was published).
    message: bool,
    pkid: Option<u16>,
    acked: bool,
    records: u64,
    /// Event time (ns) of its last record.
    last_time_ns: i64,
    /// Set on the last message of a chunk: the cursor may move here.
    end: Option<SpoolIndex>,
}

/// Runs the publisher on the current thread until it is told to stop.
pub fn run(
    link: Link,
    reader: SpoolReader,
    shared: Arc<Shared>,
    stats: Arc<Stats>,
    control: Arc<Control>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::warn!(
                "sink `{}`: cannot start its MQTT thread ({e}); records stay in the spool",
                link.sink
            );
            return;
        }
    };
    runtime.block_on(async move {
        let cap = usize::from(INFLIGHT) + CHUNK + 64;
        let (client, eventloop) = AsyncClient::new(link.options.clone(), cap);
        let mut publisher = Publisher {
            client,
            reader,
            shared,
            stats,
            fifo: VecDeque::with_capacity(usize::from(INFLIGHT) + CHUNK),
            messages: 0,
            connected: false,
            backoff: BACKOFF.0,
            failing_since: None,
            entries: Vec::with_capacity(CHUNK),
            topics: HashMap::new(),
            encoder: Encoder::new(&link.gateway),
            status: String::new(),
            link,
        };
        publisher.drive(eventloop, &control).await;
    });
}

struct Publisher {
    client: AsyncClient,
    reader: SpoolReader,
    shared: Arc<Shared>,
    stats: Arc<Stats>,
    link: Link,
    fifo: VecDeque<InFlight>,
    /// Entries of `fifo` that are messages not yet acknowledged.
    messages: usize,
    connected: bool,
    backoff: Duration,
    /// Connection attempts failing since, and how many.
    failing_since: Option<(Instant, u64)>,
    entries: Vec<Entry>,
    /// Topic by channel name.
    topics: HashMap<String, String>,
    encoder: Encoder,
    /// The status file's last contents.
    status: String,
}

impl Publisher {
    async fn drive(&mut self, mut eventloop: EventLoop, control: &Control) {
        let (events_tx, mut events) = unbounded_channel();
        let (go_tx, mut go) = unbounded_channel::<Duration>();
        tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(event) => {
                        if events_tx.send(Ok(event)).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        if events_tx.send(Err(e.to_string())).is_err() {
                            return;
                        }
                        // The publisher has forgotten what was in flight and
                        // sends nothing until the next ConnAck: drop what the
                        // loop still holds, so the new session starts clean.
                        let Some(delay) = go.recv().await else { return };
                        tokio::time::sleep(delay).await;
                        eventloop.clean();
                        eventloop.pending.clear();
                    }
                }
            }
        });
        let mut tick = tokio::time::interval(self.link.sync_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut deadline: Option<Instant> = None;
        loop {
            // Acquire: pairs with the sink's Release store when it is dropped.
            if deadline.is_none() && control.stop.load(Ordering::Acquire) {
                deadline = Some(Instant::now() + self.link.drain);
            }
            if let Some(d) = deadline {
                let drained = self.fifo.is_empty() && self.reader.backlog() == 0;
                if !self.connected || drained || Instant::now() >= d {
                    break;
                }
            }
            let until = deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                event = events.recv() => match event {
                    Some(Ok(event)) => self.on_event(event),
                    Some(Err(e)) => self.on_error(&e, &go_tx),
                    None => break,
                },
                () = control.wake.notified() => {}
                _ = tick.tick() => self.sync(),
                () = tokio::time::sleep_until(until) => {}
            }
            if self.connected {
                self.fill();
            }
        }
        self.finish(&mut events).await;
    }

    /// Says `offline`, disconnects cleanly (so the broker does not publish
    /// the will), and stores the cursor.
    async fn finish(
        &mut self,
        events: &mut tokio::sync::mpsc::UnboundedReceiver<Result<Event, String>>,
    ) {
        if self.connected {
            self.control(&self.link.availability.clone(), b"offline".to_vec(), true);
            let until = Instant::now() + Duration::from_secs(1);
            while !self.fifo.is_empty() {
                match tokio::time::timeout_at(until, events.recv()).await {
                    Ok(Some(Ok(event))) => self.on_event(event),
                    _ => break,
                }
            }
            let _ = self.client.try_disconnect();
            let until = Instant::now() + Duration::from_millis(500);
            while let Ok(Some(Ok(event))) = tokio::time::timeout_at(until, events.recv()).await {
                if event == Event::Outgoing(Outgoing::Disconnect) {
                    break;
                }
            }
        }
        self.stats.connected.store(false, Ordering::Relaxed);
        self.sync();
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Incoming(Incoming::ConnAck(_)) => self.on_connected(),
            Event::Outgoing(Outgoing::Publish(pkid)) => {
                if let Some(m) = self.fifo.iter_mut().find(|m| m.message && m.pkid.is_none()) {
                    m.pkid = Some(pkid);
                }
            }
            Event::Incoming(Incoming::PubAck(ack)) => {
                if let Some(m) = self
                    .fifo
                    .iter_mut()
                    .find(|m| m.message && !m.acked && m.pkid == Some(ack.pkid))
                {
                    m.acked = true;
                    self.messages = self.messages.saturating_sub(1);
                }
                self.pop_acked();
            }
            Event::Incoming(Incoming::Publish(p)) => {
                if let Some((d, _)) = &self.link.discovery {
                    if p.topic == d.status_topic() && p.payload.as_ref() == b"online" {
                        self.announce();
                    }
                }
            }
            _ => {}
        }
    }

    fn on_connected(&mut self) {
        self.connected = true;
        self.backoff = BACKOFF.0;
        self.stats.connected.store(true, Ordering::Relaxed);
        match self.failing_since.take() {
            Some((since, attempts)) => tracing::info!(
                "sink `{}`: connected to {} after {:.1} s and {attempts} attempts; {} records spooled",
                self.link.sink,
                self.link.broker,
                since.elapsed().as_secs_f64(),
                self.reader.backlog()
            ),
            None => tracing::info!(
                "sink `{}`: connected to {}",
                self.link.sink, self.link.broker
            ),
        }
        if let Some((d, _)) = &self.link.discovery {
            let _ = self
                .client
                .try_subscribe(d.status_topic(), QoS::AtLeastOnce);
        }
        self.announce();
    }

    /// Publishes `online` and, with discovery, every sensor's config.
    fn announce(&mut self) {
        self.control(&self.link.availability.clone(), b"online".to_vec(), true);
        let configs: Vec<(String, Vec<u8>)> = match &self.link.discovery {
            Some((d, sensors)) => sensors.iter().map(|s| d.config(s)).collect(),
            None => return,
        };
        for (topic, payload) in configs {
            self.control(&topic, payload, true);
        }
        self.stats
            .discovery_published
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Publishes a message that is not records (availability, discovery).
    fn control(&mut self, topic: &str, payload: Vec<u8>, retain: bool) {
        if self
            .client
            .try_publish(topic, QoS::AtLeastOnce, retain, payload)
            .is_ok()
        {
            self.fifo.push_back(InFlight {
                message: true,
                pkid: None,
                acked: false,
                records: 0,
                last_time_ns: 0,
                end: None,
            });
            self.messages += 1;
        }
    }

    fn on_error(&mut self, error: &str, go: &UnboundedSender<Duration>) {
        if self.connected {
            self.stats.disconnects.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                "sink `{}`: lost {} ({error}); spooling, {} records waiting",
                self.link.sink,
                self.link.broker,
                self.reader.backlog()
            );
            self.failing_since = Some((Instant::now(), 0));
        }
        match &mut self.failing_since {
            Some((_, attempts)) => *attempts += 1,
            None => {
                tracing::warn!(
                    "sink `{}`: cannot reach {} ({error}); spooling and retrying",
                    self.link.sink,
                    self.link.broker
                );
                self.failing_since = Some((Instant::now(), 1));
            }
        }
        self.connected = false;
        self.stats.connected.store(false, Ordering::Relaxed);
        self.fifo.clear();
        self.messages = 0;
        self.reader.rewind();
        self.sync();
        let _ = go.send(self.backoff);
        self.backoff = (self.backoff * 2).min(BACKOFF.1);
    }

    /// Pops the acknowledged front of the FIFO, moving the cursor.
    fn pop_acked(&mut self) {
        while self.fifo.front().is_some_and(|m| m.acked) {
            if let Some(m) = self.fifo.pop_front() {
                if let Some(end) = m.end {
                    self.reader.ack(end);
                }
                self.stats
                    .acked_records
                    .fetch_add(m.records, Ordering::Relaxed);
                if m.records > 0 {
                    self.stats
                        .delivered_through_ns
                        .store(m.last_time_ns, Ordering::Relaxed);
                }
            }
        }
    }

    /// Sends from the spool until [`INFLIGHT`] messages are in flight.
    fn fill(&mut self) {
        while self.messages < usize::from(INFLIGHT) {
            let room = usize::from(INFLIGHT) - self.messages;
            let max = if self.link.batch <= 1 {
                room
            } else {
                self.link.batch.saturating_mul(64).min(CHUNK)
            };
            let mut entries = std::mem::take(&mut self.entries);
            let chunk = match self.reader.read(max, &mut entries) {
                Ok(chunk) => chunk,
                Err(e) => {
                    tracing::warn!("sink `{}`: cannot read its spool: {e}", self.link.sink);
                    self.entries = entries;
                    return;
                }
            };
            if chunk.is_empty() {
                self.entries = entries;
                return;
            }
            if entries.is_empty() {
                self.fifo.push_back(InFlight {
                    message: false,
                    pkid: None,
                    acked: true,
                    records: 0,
                    last_time_ns: 0,
                    end: Some(chunk.end),
                });
                self.pop_acked();
                self.entries = entries;
            } else {
                let published = self.publish_chunk(&entries, chunk.end);
                self.entries = entries;
                if !published {
                    // The event loop is gone; reading the chunk again now
                    // would fail the same way, forever. Wait for it.
                    return;
                }
            }
        }
    }

    /// Publishes one chunk: a message per record, or per run of up to
    /// `batch` records of one channel (channels in order of first
    /// appearance, records in spool order). False when a message could not
    /// be handed to the client: the reader was rewound, and nothing more
    /// should be read until the connection is back.
    fn publish_chunk(&mut self, entries: &[Entry], end: SpoolIndex) -> bool {
        let names: Vec<String> = self.reader.channels().to_vec();
        let batch = self.link.batch;
        let mut groups: Vec<(u32, Vec<&Entry>)> = Vec::new();
        if batch <= 1 {
            groups.extend(entries.iter().map(|e| (e.channel, vec![e])));
        } else {
            let mut slot: HashMap<u32, usize> = HashMap::new();
            for e in entries {
                let i = *slot.entry(e.channel).or_insert_with(|| {
                    groups.push((e.channel, Vec::new()));
                    groups.len() - 1
                });
                groups[i].1.push(e);
            }
        }
        let mut sent = 0u64;
        let mut messages = 0u64;
        let mut payload = Vec::with_capacity(256);
        for (channel, records) in &groups {
            let name = names.get(*channel as usize).map_or("?", String::as_str);
            if !self.topics.contains_key(name) {
                let topic = self
                    .link
                    .template
                    .render(&self.link.gateway, &self.link.sink, name);
                self.topics.insert(name.to_owned(), topic);
            }
            let topic = self.topics.get(name).cloned().unwrap_or_default();
            for part in records.chunks(batch.max(1)) {
                self.encoder.message(name, part, batch > 1, &mut payload);
                if self
                    .client
                    .try_publish(topic.as_str(), QoS::AtLeastOnce, false, payload.clone())
                    .is_err()
                {
                    // The request channel has room for every chunk; this is
                    // only the event loop gone. Send again after reconnecting.
                    self.reader.rewind();
                    return false;
                }
                self.fifo.push_back(InFlight {
                    message: true,
                    pkid: None,
                    acked: false,
                    records: part.len() as u64,
                    last_time_ns: part.last().map_or(0, |e| e.time.0),
                    end: None,
                });
                self.messages += 1;
                messages += 1;
                sent += part.len() as u64;
            }
        }
        if let Some(last) = self.fifo.back_mut() {
            last.end = Some(end);
        }
        self.stats
            .sent_messages
            .fetch_add(messages, Ordering::Relaxed);
        self.stats.sent_records.fetch_add(sent, Ordering::Relaxed);
        true
    }

    /// Fsyncs the spool, stores the cursor, writes the status file.
    fn sync(&mut self) {
        if let Err(e) = self.reader.sync() {
            tracing::warn!("sink `{}`: cannot sync its spool: {e}", self.link.sink);
        }
        let status = status_json(&self.stats, &self.shared, self.reader.backlog());
        if status != self.status {
            let tmp = self.link.status_path.with_extension("json.tmp");
            if std::fs::write(&tmp, &status).is_ok() {
                let _ = std::fs::rename(&tmp, &self.link.status_path);
            }
            self.status = status;
        }
    }
}

/// The counters as one JSON object.
pub fn status_json(stats: &Stats, shared: &Shared, backlog: u64) -> String {
    let c = &shared.counters;
    let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
    format!(
        concat!(
            "{{\"connected\":{},\"backlog\":{},\"appended\":{},\"sent_messages\":{},",
            "\"sent_records\":{},\"acked_records\":{},\"resent\":{},\"disconnects\":{},",
            "\"dropped_oldest\":{},\"dropped_newest\":{},\"corrupt_segments\":{},",
            "\"lost_damaged\":{},\"torn_bytes\":{},\"discovery_published\":{}}}\n"
        ),
        stats.connected.load(Ordering::Relaxed),
        backlog,
        n(&c.appended),
        n(&stats.sent_messages),
        n(&stats.sent_records),
        n(&stats.acked_records),
        n(&c.resent),
        n(&stats.disconnects),
        n(&c.dropped_oldest),
        n(&c.dropped_newest),
        n(&c.corrupt_segments),
        n(&c.lost_damaged),
        n(&c.torn_bytes),
        n(&stats.discovery_published),
    )
}
