//! `mqtt`: publishes records to an MQTT broker with QoS 1, through a
//! durable spool, with Home Assistant discovery. See `docs/uplink.md`.
//!
//! - [`payload`]: topics, JSON payloads and idempotency keys.
//! - [`discovery`]: Home Assistant discovery configs and availability.
//! - [`client`]: the publisher thread (network I/O, PUBACKs, the cursor).
//! - [`tls`]: the rustls configuration (ring provider).
//!
//! The worker thread only appends to the spool ([`crate::io::spool`]); the
//! publisher thread sends from it. The spool lives in `SPOOL/SINK_ID`,
//! `SPOOL` being the `spool` parameter, by default the state directory's
//! `spool/` (`tandem up --state-dir`; `.tandem/spool` under `tandem run`).

pub mod client;
pub mod discovery;
pub mod payload;
pub mod tls;

use super::{bool_param, duration_param, int_param, text_param};
use crate::io::spool::{self, Overflow, SpoolConfig, SpoolWriter};
use client::{Control, Link, Stats};
use discovery::{Discovery, Sensor};
use payload::Template;
use rumqttc::{LastWill, MqttOptions, QoS, TlsConfiguration, Transport};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use tandem_core::{
    Arity, BuildContext, BuildError, Builder, KindSpec, ParamDefault, ParamSpec, ParamType, Record,
    Sink, SinkError,
};
use tls::TlsFiles;

const MIB: i64 = 1024 * 1024;
const MS: i64 = 1_000_000;
const SEC: i64 = 1_000 * MS;

/// The `mqtt` kind.
pub static KIND: KindSpec = KindSpec {
    name: "mqtt",
    version: 1,
    doc: "publishes records to an MQTT broker (QoS 1) through a durable spool; Home Assistant discovery",
    input_names: &["in"],
    arity: Arity::at_least(1),
    outputs: &[],
    outputs_from: None,
    params: &[
        ParamSpec {
            name: "host",
            ty: ParamType::Text,
            default: ParamDefault::Text("127.0.0.1"),
            doc: "the broker's host name or address",
        },
        ParamSpec {
            name: "port",
            ty: ParamType::Int { min: 1, max: 65535 },
            default: ParamDefault::Int(1883),
            doc: "the broker's port (8883 is usual with tls)",
        },
        ParamSpec {
            name: "gateway",
            ty: ParamType::Text,
            default: ParamDefault::Text(""),
            doc: "this gateway's id in topics and idempotency keys: letters, digits, - and _; empty = the host name",
        },
        ParamSpec {
            name: "topic",
            ty: ParamType::Text,
            default: ParamDefault::Text("tandem/{gateway}/{channel}"),
            doc: "topic per channel; {gateway}, {channel} and {sink} are replaced",
        },
        ParamSpec {
            name: "batch",
            ty: ParamType::Int { min: 1, max: 10_000 },
            default: ParamDefault::Int(1),
            doc: "records of one channel per message at most: 1 = one record per message, more = a `records` array",
        },
        ParamSpec {
            name: "client_id",
            ty: ParamType::Text,
            default: ParamDefault::Text(""),
            doc: "MQTT client id; empty = tandem-GATEWAY-SINK",
        },
        ParamSpec {
            name: "username",
            ty: ParamType::Text,
            default: ParamDefault::Text(""),
            doc: "user name for the broker; empty = none",
        },
        ParamSpec {
            name: "password",
            ty: ParamType::Text,
            default: ParamDefault::Text(""),
            doc: "password for the broker (needs username)",
        },
        ParamSpec {
            name: "tls",
            ty: ParamType::Bool,
            default: ParamDefault::Bool(false),
            doc: "connect with TLS; needs ca_file",
        },
        ParamSpec {
            name: "ca_file",
            ty: ParamType::Text,
            default: ParamDefault::Text(""),
            doc: "PEM file of the CA certificates the broker's certificate must chain to",
        },
        ParamSpec {
            name: "client_cert",
            ty: ParamType::Text,
            default: ParamDefault::Text(""),
            doc: "PEM client certificate chain, for brokers that ask for one (needs client_key)",
        },
        ParamSpec {
            name: "client_key",
            ty: ParamType::Text,
            default: ParamDefault::Text(""),
            doc: "PEM private key of client_cert",
        },
        ParamSpec {
            name: "availability_topic",
            ty: ParamType::Text,
            default: ParamDefault::Text("tandem/{gateway}/availability"),
            doc: "retained `online` while connected, `offline` when stopped or lost (last will)",
        },
        ParamSpec {
            name: "discovery",
            ty: ParamType::Bool,
            default: ParamDefault::Bool(false),
            doc: "publish Home Assistant discovery configs, one sensor per channel",
        },
        ParamSpec {
            name: "discovery_prefix",
            ty: ParamType::Text,
            default: ParamDefault::Text("homeassistant"),
            doc: "Home Assistant's discovery prefix",
        },
        ParamSpec {
            name: "spool",
            ty: ParamType::Text,
            default: ParamDefault::Optional,
            doc: "directory of spools; this sink's is SPOOL/SINK_ID (default: the state directory's spool/)",
        },
        ParamSpec {
            name: "spool_max_bytes",
            ty: ParamType::Int {
                min: MIB,
                max: 1024 * 1024 * MIB,
            },
            default: ParamDefault::Int(256 * MIB),
            doc: "most bytes the spool holds (44 per record)",
        },
        ParamSpec {
            name: "spool_overflow",
            ty: ParamType::Choice(Overflow::NAMES),
            default: ParamDefault::Text("drop_oldest"),
            doc: "at spool_max_bytes: drop_oldest gives up the oldest undelivered records, drop_newest refuses new ones; both counted",
        },
        ParamSpec {
            name: "sync",
            ty: ParamType::Duration {
                min_ns: 10 * MS,
                max_ns: 60 * SEC,
            },
            default: ParamDefault::Duration(100 * MS),
            doc: "how often the spool is fsynced and the delivered cursor stored",
        },
        ParamSpec {
            name: "keep_alive",
            ty: ParamType::Duration {
                min_ns: 5 * SEC,
                max_ns: 3600 * SEC,
            },
            default: ParamDefault::Duration(30 * SEC),
            doc: "MQTT keep-alive; the broker publishes the last will after 1.5 times this of silence",
        },
        ParamSpec {
            name: "drain",
            ty: ParamType::Duration {
                min_ns: 0,
                max_ns: 60 * SEC,
            },
            default: ParamDefault::Duration(2 * SEC),
            doc: "on stop, how long to go on sending what is spooled before saying offline",
        },
    ],
    state_schema: None,
    migrations: &[],
    build: Builder::Sink(build),
};

/// The parameters of one `mqtt` sink, checked together. Building it touches nothing.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Broker host.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// The gateway id, `None` for the host name.
    pub gateway: Option<String>,
    /// Topic per channel.
    pub topic: Template,
    /// Records per message at most.
    pub batch: usize,
    /// Client id, `None` for the default.
    pub client_id: Option<String>,
    /// User name and password.
    pub credentials: Option<(String, String)>,
    /// TLS files, when TLS is on.
    pub tls: Option<TlsFiles>,
    /// Availability topic.
    pub availability: Template,
    /// The discovery prefix, when discovery is on.
    pub discovery: Option<String>,
    /// The spool's directory (this sink's own) when the `spool` parameter
    /// names one; else it is `STATE_DIR/spool/SINK_ID` ([`MqttSink::open_in`]).
    pub spool_dir: Option<PathBuf>,
    /// The spool's size and policy.
    pub spool: SpoolConfig,
    /// Fsync and cursor interval.
    pub sync: Duration,
    /// MQTT keep-alive.
    pub keep_alive: Duration,
    /// Time to drain on stop.
    pub drain: Duration,
}

/// The load-time check: every parameter taken together, touching nothing.
pub fn check(ctx: &BuildContext<'_>) -> Result<(), BuildError> {
    Settings::from_ctx(ctx).map(drop)
}

impl Settings {
    /// Reads and checks the parameters.
    pub fn from_ctx(ctx: &BuildContext<'_>) -> Result<Settings, BuildError> {
        let id = ctx.id;
        let refuse = |param: &'static str, why: String| {
            BuildError::new(format!("sink `{id}`: `{param}` {why}")).at(param)
        };
        let host = text_param(ctx, "host")?.trim().to_owned();
        if host.is_empty() {
            return Err(refuse(
                "host",
                "is empty; name the broker, such as \"192.168.1.10\"".into(),
            ));
        }
        let port = u16::try_from(int_param(ctx, "port")?).unwrap_or(1883);
        let gateway = match text_param(ctx, "gateway")? {
            "" => None,
            g => {
                payload::check_gateway(g).map_err(|why| refuse("gateway", why))?;
                Some(g.to_owned())
            }
        };
        let topic =
            Template::parse(text_param(ctx, "topic")?).map_err(|why| refuse("topic", why))?;
        let availability_text = text_param(ctx, "availability_topic")?;
        let availability =
            Template::parse(availability_text).map_err(|why| refuse("availability_topic", why))?;
        if availability_text.contains("{channel}") {
            return Err(refuse(
                "availability_topic",
                format!(
                    "`{availability_text}` uses {{channel}}, but one topic serves every channel"
                ),
            ));
        }
        let batch = usize::try_from(int_param(ctx, "batch")?)
            .unwrap_or(1)
            .max(1);
        let client_id = match text_param(ctx, "client_id")? {
            "" => None,
            c => Some(c.to_owned()),
        };
        let credentials = match (text_param(ctx, "username")?, text_param(ctx, "password")?) {
            ("", "") => None,
            ("", _) => {
                return Err(refuse(
                    "password",
                    "is set without a `username`; set both or neither".into(),
                ))
            }
            (u, p) => Some((u.to_owned(), p.to_owned())),
        };
        let tls_on = bool_param(ctx, "tls")?;
        let path = |name: &'static str| -> Result<Option<PathBuf>, BuildError> {
            Ok(match text_param(ctx, name)? {
                "" => None,
                p => Some(PathBuf::from(p)),
            })
        };
        let (ca, cert, key) = (path("ca_file")?, path("client_cert")?, path("client_key")?);
        let tls = if tls_on {
            let Some(ca) = ca else {
                return Err(refuse(
                    "tls",
                    "is true but `ca_file` is not set; name the PEM file of the broker's CA".into(),
                ));
            };
            let client = match (cert, key) {
                (None, None) => None,
                (Some(c), Some(k)) => Some((c, k)),
                (Some(_), None) => {
                    return Err(refuse("client_cert", "is set without `client_key`".into()))
                }
                (None, Some(_)) => {
                    return Err(refuse("client_key", "is set without `client_cert`".into()))
                }
            };
            Some(TlsFiles { ca, client })
        } else {
            for (name, set) in [
                ("ca_file", &ca),
                ("client_cert", &cert),
                ("client_key", &key),
            ] {
                if set.is_some() {
                    return Err(refuse(
                        name,
                        "is set but `tls` is false; set tls = true".into(),
                    ));
                }
            }
            None
        };
        let discovery = if bool_param(ctx, "discovery")? {
            let prefix = text_param(ctx, "discovery_prefix")?;
            Template::parse(prefix).map_err(|why| refuse("discovery_prefix", why))?;
            if prefix.contains('{') {
                return Err(refuse(
                    "discovery_prefix",
                    format!("`{prefix}` may hold no placeholder"),
                ));
            }
            Some(prefix.to_owned())
        } else {
            None
        };
        let spool = ctx.params.text("spool");
        if spool.is_some_and(str::is_empty) {
            return Err(refuse(
                "spool",
                "is empty; name a directory, such as \"/var/lib/tandem/spool\", or leave it out \
                 for the state directory's spool/"
                    .into(),
            ));
        }
        let overflow_name = text_param(ctx, "spool_overflow")?;
        let overflow = Overflow::parse(overflow_name).ok_or_else(|| {
            refuse(
                "spool_overflow",
                format!("`{overflow_name}` is not drop_oldest or drop_newest"),
            )
        })?;
        let max_bytes = u64::try_from(int_param(ctx, "spool_max_bytes")?).unwrap_or(u64::MAX);
        let ns = |name: &str| -> Result<Duration, BuildError> {
            Ok(Duration::from_nanos(
                u64::try_from(duration_param(ctx, name)?).unwrap_or(0),
            ))
        };
        Ok(Settings {
            host,
            port,
            gateway,
            topic,
            batch,
            client_id,
            credentials,
            tls,
            availability,
            discovery,
            spool_dir: spool.map(|dir| PathBuf::from(dir).join(id)),
            spool: SpoolConfig::new(max_bytes, overflow),
            sync: ns("sync")?,
            keep_alive: ns("keep_alive")?,
            drain: ns("drain")?,
        })
    }
}

fn build(ctx: &BuildContext<'_>) -> Result<Box<dyn Sink>, BuildError> {
    MqttSink::open(ctx).map(|s| Box::new(s) as Box<dyn Sink>)
}

/// This machine's host name, for the default gateway id.
fn host_name() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .unwrap_or_default();
    payload::gateway_from_host(&name)
}

/// What an `mqtt` sink holds and delivered, read from any thread (the
/// agent's status and metrics).
#[derive(Clone, Debug)]
pub struct Watch {
    shared: Arc<spool::Shared>,
    stats: Arc<Stats>,
}

impl Watch {
    /// The counts so far (of this process).
    pub fn counts(&self) -> Counts {
        let c = &self.shared.counters;
        Counts {
            appended: c.appended.load(Ordering::Relaxed),
            acked: self.stats.acked_records.load(Ordering::Relaxed),
            resent: c.resent.load(Ordering::Relaxed),
            dropped: c.dropped_newest.load(Ordering::Relaxed)
                + c.dropped_oldest.load(Ordering::Relaxed),
            messages: self.stats.sent_messages.load(Ordering::Relaxed),
            connected: self.stats.connected.load(Ordering::Relaxed),
        }
    }

    /// Records spooled and not yet delivered (also from before a restart).
    pub fn backlog(&self) -> u64 {
        self.shared.backlog()
    }

    /// Bytes those records take in the spool.
    pub fn backlog_bytes(&self) -> u64 {
        self.backlog()
            .saturating_mul(spool::segment::ENTRY_LEN as u64)
    }

    /// While records wait: the event time delivery has reached (that of
    /// the newest record the broker acknowledged), so the oldest waiting
    /// record is about that old; `None` when nothing waits or nothing was
    /// delivered yet in this process.
    pub fn delivered_through(&self) -> Option<tandem_core::EventTime> {
        let ns = self.stats.delivered_through_ns.load(Ordering::Relaxed);
        (self.backlog() > 0 && ns != 0).then_some(tandem_core::EventTime(ns))
    }
}

/// The `mqtt` sink. See the [module](self).
#[derive(Debug)]
pub struct MqttSink {
    id: String,
    writer: SpoolWriter,
    shared: Arc<spool::Shared>,
    stats: Arc<Stats>,
    control: Arc<Control>,
    thread: Option<JoinHandle<()>>,
}

/// A snapshot of an `mqtt` sink's counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Records appended to the spool.
    pub appended: u64,
    /// Records the broker acknowledged.
    pub acked: u64,
    /// Records published more than once.
    pub resent: u64,
    /// Records given up or refused at the spool's cap.
    pub dropped: u64,
    /// Messages published.
    pub messages: u64,
    /// True while connected.
    pub connected: bool,
}

impl MqttSink {
    /// Opens the spool (under `.tandem/`, `tandem run`'s default state
    /// directory, unless the `spool` parameter names one) and starts the
    /// publisher thread.
    pub fn open(ctx: &BuildContext<'_>) -> Result<MqttSink, BuildError> {
        MqttSink::open_in(ctx, Path::new(".tandem"))
    }

    /// Opens the spool in `STATE_DIR/spool/SINK_ID` (unless the `spool`
    /// parameter names a directory) and starts the publisher thread.
    pub fn open_in(ctx: &BuildContext<'_>, state_dir: &Path) -> Result<MqttSink, BuildError> {
        let mut s = Settings::from_ctx(ctx)?;
        let id = ctx.id;
        let spool_dir = s
            .spool_dir
            .take()
            .unwrap_or_else(|| state_dir.join("spool").join(id));
        let gateway = s.gateway.clone().unwrap_or_else(host_name);
        let inputs: Vec<(tandem_core::ChannelId, String)> = ctx
            .inputs
            .iter()
            .map(|&c| (c, ctx.channels.name(c).to_owned()))
            .collect();
        let opened = spool::open(&spool_dir, &inputs, s.spool).map_err(|e| {
            BuildError::new(format!("sink `{id}`: cannot open its spool: {e}")).at("spool")
        })?;
        let availability = s.availability.render(&gateway, id, "");
        let client_id = s
            .client_id
            .clone()
            .unwrap_or_else(|| format!("tandem-{gateway}-{id}"));
        let mut options = MqttOptions::new(client_id, s.host.clone(), s.port);
        options
            .set_clean_session(true)
            .set_keep_alive(s.keep_alive)
            .set_inflight(client::INFLIGHT)
            .set_max_packet_size(1 << 20, 16 << 20)
            .set_last_will(LastWill::new(
                availability.clone(),
                "offline",
                QoS::AtLeastOnce,
                true,
            ));
        if let Some((user, password)) = &s.credentials {
            options.set_credentials(user.clone(), password.clone());
        }
        if let Some(files) = &s.tls {
            let config = tls::client_config(files)
                .map_err(|why| BuildError::new(format!("sink `{id}`: {why}")).at("ca_file"))?;
            options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(config)));
        }
        let discovery = s.discovery.as_ref().map(|prefix| {
            let d = Discovery {
                prefix: prefix.clone(),
                gateway: gateway.clone(),
                sink: id.to_owned(),
                availability: availability.clone(),
                batch: s.batch > 1,
            };
            let sensors = ctx
                .inputs
                .iter()
                .map(|&c| Sensor {
                    channel: ctx.channels.name(c).to_owned(),
                    unit: ctx.channels.unit(c).to_owned(),
                    state_topic: s.topic.render(&gateway, id, ctx.channels.name(c)),
                })
                .collect();
            (d, sensors)
        });
        let link = Link {
            options,
            broker: format!("{}:{}", s.host, s.port),
            sink: id.to_owned(),
            gateway,
            template: s.topic.clone(),
            batch: s.batch,
            availability,
            discovery,
            sync_every: s.sync,
            drain: s.drain,
            status_path: spool_dir.join("status.json"),
        };
        let stats = Arc::new(Stats::default());
        let control = Arc::new(Control::default());
        let reader = opened.reader;
        let shared = opened.shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("mqtt-{id}"))
            .spawn({
                let (stats, control) = (stats.clone(), control.clone());
                move || client::run(link, reader, shared, stats, control)
            })
            .map_err(|e| BuildError::new(format!("sink `{id}`: cannot start its thread: {e}")))?;
        Ok(MqttSink {
            id: id.to_owned(),
            writer: opened.writer,
            shared: opened.shared,
            stats,
            control,
            thread: Some(thread),
        })
    }

    /// The counts so far.
    pub fn counts(&self) -> Counts {
        self.watch().counts()
    }

    /// A handle on what this sink holds and delivered, for status and
    /// metrics; cheap to read from any thread.
    pub fn watch(&self) -> Watch {
        Watch {
            shared: self.shared.clone(),
            stats: self.stats.clone(),
        }
    }

    fn error(&self, e: std::io::Error) -> SinkError {
        SinkError {
            sink: self.id.clone(),
            source: e,
        }
    }

    fn wake(&mut self) {
        if self.writer.take_wake() {
            self.control.wake.notify_one();
        }
    }
}

impl Sink for MqttSink {
    fn write(&mut self, records: &[Record]) -> Result<(), SinkError> {
        let r = self.writer.append(records).map_err(|e| self.error(e));
        self.wake();
        r
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        let r = self.writer.commit().map_err(|e| self.error(e));
        self.wake();
        r
    }
}

impl Drop for MqttSink {
    fn drop(&mut self) {
        if let Err(e) = self.writer.commit() {
            tracing::warn!("sink `{}`: {e}", self.id);
        }
        // Release: pairs with the publisher's Acquire load.
        self.control.stop.store(true, Ordering::Release);
        self.control.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests;
