//! The MQTT uplink: records through the `mqtt` sink (spool, publisher
//! thread, QoS 1) to a mosquitto on loopback, against a raw rumqttc
//! publish loop to the same broker in the same run; and the spool alone.
//!
//! `cargo bench --bench uplink -- --json` prints a table and, as its last
//! line, one JSON object:
//!
//! - `mqtt_records_per_sec`: records written to the sink (as a worker
//!   thread would, 1024 at a time) until the broker has acknowledged the
//!   last one, with `batch = 100` records per message;
//! - `mqtt_single_records_per_sec`: the same with one record per message;
//! - `spool_write_records_per_sec`, `spool_drain_records_per_sec`: the
//!   spool alone, appending (into the page cache) and reading back with
//!   acknowledgements and a final sync;
//! - `ratio_raw_rumqttc`: the batched figure over the raw loop's;
//! - `baselines.raw_rumqttc_records_per_sec`,
//!   `baselines.raw_rumqttc_single_records_per_sec`: one rumqttc client
//!   publishing ready-made payloads of the same size with QoS 1 and the
//!   same in-flight window, counting PUBACKs.
//!
//! The broker has no subscriber: the figures are what leaves the gateway,
//! not a consumer's rate. Without mosquitto installed the MQTT figures are
//! `null` and the spool figures are still measured.
//!
//! Environment: `TANDEM_UPLINK_RECORDS` (records per MQTT run, default
//! 2 000 000; a tenth of it with one record per message),
//! `TANDEM_UPLINK_SPOOL_RECORDS` (default 5 000 000).

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tandem_core::{
    BuildContext, ChannelId, ChannelTable, EventTime, ParamValue, Params, Record, Seq, Sink,
};
use tandem_nodes::io::mqtt::{self, MqttSink};
use tandem_nodes::io::spool::{self, Overflow, SpoolConfig};

/// Channels the records are spread over.
const CHANNELS: u32 = 4;
/// Records per `write`, as an executor batch.
const WRITE: usize = 1024;
/// Records per message in the batched runs.
const BATCH: usize = 100;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn scratch(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("tandem-bench-uplink-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch directory");
    dir
}

fn records(from: u64, n: usize) -> Vec<Record> {
    (0..n as u64)
        .map(|i| {
            let i = from + i;
            Record::new(
                Seq(i + 1),
                EventTime::from_secs(1_767_225_600).add_nanos(i as i64 * 1_000),
                ChannelId((i % u64::from(CHANNELS)) as u32),
                (i as f64) * 0.25,
            )
        })
        .collect()
}

fn table() -> Arc<ChannelTable> {
    let mut t = ChannelTable::new();
    for c in 0..CHANNELS {
        t.intern(&format!("meter.power_l{c}"), "W");
    }
    Arc::new(t)
}

/// A mosquitto on a free loopback port, killed on drop.
struct Broker {
    child: Child,
    port: u16,
}

impl Broker {
    fn start(dir: &Path) -> Option<Broker> {
        let port = TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!("listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\n"),
        )
        .ok()?;
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let broker = Broker { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Some(broker)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spool alone: appends `n` records, then reads them all back.
fn spool_rates(n: usize) -> (f64, f64) {
    let dir = scratch("spool");
    let inputs: Vec<(ChannelId, String)> = (0..CHANNELS)
        .map(|c| (ChannelId(c), format!("meter.power_l{c}")))
        .collect();
    let config = SpoolConfig::new(4 << 30, Overflow::DropNewest);
    let mut s = spool::open(&dir, &inputs, config).expect("spool");
    let batches: Vec<Vec<Record>> = (0..n.div_ceil(WRITE))
        .map(|b| records((b * WRITE) as u64, WRITE.min(n - b * WRITE)))
        .collect();
    let t = Instant::now();
    for batch in &batches {
        s.writer.append(batch).expect("append");
    }
    s.writer.commit().expect("commit");
    let write = n as f64 / t.elapsed().as_secs_f64();

    let t = Instant::now();
    let mut out = Vec::with_capacity(2048);
    let mut read = 0usize;
    loop {
        let chunk = s.reader.read(2048, &mut out).expect("read");
        if chunk.is_empty() {
            break;
        }
        read += out.len();
        std::hint::black_box(&out);
        s.reader.ack(chunk.end);
    }
    s.reader.sync().expect("sync");
    let drain = read as f64 / t.elapsed().as_secs_f64();
    assert_eq!(read, n, "the spool gave back {read} of {n}");
    drop(s);
    let _ = std::fs::remove_dir_all(&dir);
    (write, drain)
}

/// Records/s through the `mqtt` sink until the last PUBACK.
fn sink_rate(port: u16, n: usize, batch: usize) -> f64 {
    let dir = scratch(&format!("sink-{batch}"));
    let table = table();
    let inputs: Vec<ChannelId> = (0..CHANNELS).map(ChannelId).collect();
    let mut params = Params::new();
    for spec in mqtt::KIND.params {
        if let Some(v) = ParamValue::from_default(spec.default) {
            params.insert(spec.name, v);
        }
    }
    let text = |s: &str| ParamValue::Text(s.to_owned());
    params.insert("port", ParamValue::Int(i64::from(port)));
    params.insert("gateway", text("bench"));
    params.insert("batch", ParamValue::Int(batch as i64));
    params.insert("spool", text(&dir.display().to_string()));
    params.insert("spool_max_bytes", ParamValue::Int(4 << 30));
    params.insert("drain", ParamValue::Duration(0));
    let ctx = BuildContext {
        id: "up",
        params: &params,
        inputs: &inputs,
        outputs: &[],
        channels: &table,
    };
    let mut sink = MqttSink::open(&ctx).expect("mqtt sink");
    let connected = Instant::now() + Duration::from_secs(10);
    while !sink.counts().connected && Instant::now() < connected {
        std::thread::sleep(Duration::from_millis(1));
    }
    let batches: Vec<Vec<Record>> = (0..n.div_ceil(WRITE))
        .map(|b| records((b * WRITE) as u64, WRITE.min(n - b * WRITE)))
        .collect();
    let t = Instant::now();
    for (i, b) in batches.iter().enumerate() {
        sink.write(b).expect("write");
        if i % 16 == 15 {
            sink.flush().expect("flush");
        }
    }
    sink.flush().expect("flush");
    let written = t.elapsed();
    let deadline = Instant::now() + Duration::from_secs(120);
    while sink.counts().acked < n as u64 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_micros(200));
    }
    let elapsed = t.elapsed().as_secs_f64();
    let c = sink.counts();
    println!(
        "  sink, batch {batch:>3}: written in {:.2} s, acknowledged in {elapsed:.2} s, {} messages, {} re-sent",
        written.as_secs_f64(),
        c.messages,
        c.resent
    );
    drop(sink);
    let _ = std::fs::remove_dir_all(&dir);
    if c.acked < n as u64 {
        println!("  only {} of {n} acknowledged within 120 s", c.acked);
        return c.acked as f64 / elapsed;
    }
    n as f64 / elapsed
}

/// Records/s of a raw rumqttc loop publishing `n / batch` ready-made
/// payloads of `batch` records each, with QoS 1, until the last PUBACK.
fn raw_rate(port: u16, n: usize, batch: usize) -> f64 {
    use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};
    // A payload the size the sink sends for `batch` records.
    let entry = spool::Entry {
        seq: Seq(1_234_567),
        time: EventTime::from_secs(1_767_225_600),
        value: 1234.25,
        quality: tandem_core::Quality::GOOD,
        channel: 0,
        ordinal: 0,
    };
    let mut one = Vec::new();
    tandem_nodes::io::mqtt::payload::Encoder::new("bench").message(
        "meter.power_l0",
        &vec![&entry; batch],
        batch > 1,
        &mut one,
    );
    let messages = n / batch;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let mut options = MqttOptions::new(format!("raw-{batch}"), "127.0.0.1", port);
        options
            .set_inflight(mqtt::client::INFLIGHT)
            .set_max_packet_size(1 << 20, 16 << 20)
            .set_keep_alive(Duration::from_secs(30));
        let (client, mut eventloop) = AsyncClient::new(options, 4096);
        let payload = one.clone();
        let t = Instant::now();
        tokio::spawn(async move {
            for i in 0..messages {
                let topic = format!("tandem/bench/meter.power_l{}", i % CHANNELS as usize);
                if client
                    .publish(topic, QoS::AtLeastOnce, false, payload.clone())
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
        let mut acked = 0;
        while acked < messages {
            match eventloop.poll().await {
                Ok(Event::Incoming(Incoming::PubAck(_))) => acked += 1,
                Ok(_) => {}
                Err(e) => {
                    println!("  raw rumqttc: {e}");
                    break;
                }
            }
        }
        (acked * batch) as f64 / t.elapsed().as_secs_f64()
    })
}

fn num(v: Option<f64>, digits: usize) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v:.digits$}"),
        _ => "null".to_owned(),
    }
}

fn main() {
    let json = std::env::args().any(|a| a == "--json");
    let n: usize = env_or("TANDEM_UPLINK_RECORDS", 2_000_000);
    let spool_n: usize = env_or("TANDEM_UPLINK_SPOOL_RECORDS", 5_000_000);

    println!("MQTT uplink: the mqtt sink and a raw rumqttc loop to mosquitto on loopback, QoS 1");
    let (write, drain) = spool_rates(spool_n);
    println!(
        "spool, {} M records:      write {:>6.2} M records/s, drain {:>6.2} M records/s",
        spool_n as f64 / 1e6,
        write / 1e6,
        drain / 1e6
    );

    let dir = scratch("broker");
    let broker = Broker::start(&dir);
    let figures = broker.as_ref().map(|b| {
        let sink = sink_rate(b.port, n, BATCH);
        let raw = raw_rate(b.port, n, BATCH);
        let single_n = n / 10;
        let sink_single = sink_rate(b.port, single_n, 1);
        let raw_single = raw_rate(b.port, single_n, 1);
        (sink, raw, sink_single, raw_single)
    });
    match figures {
        Some((sink, raw, sink_single, raw_single)) => {
            println!(
                "to the broker, {BATCH} records/message: sink {:>6.3} M records/s, raw rumqttc {:>6.3} M records/s ({:.2})",
                sink / 1e6,
                raw / 1e6,
                sink / raw
            );
            println!(
                "to the broker, 1 record/message:    sink {:>6.3} M records/s, raw rumqttc {:>6.3} M records/s ({:.2})",
                sink_single / 1e6,
                raw_single / 1e6,
                sink_single / raw_single
            );
        }
        None => println!("mosquitto: not found or did not start (apt-get install mosquitto): MQTT figures skipped"),
    }
    drop(broker);
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "targets: >= 200 k records/s to the broker in batches; spool >= 1 M records/s written"
    );
    let f = figures;
    let line = format!(
        r#"{{"mqtt_records_per_sec": {}, "mqtt_single_records_per_sec": {}, "spool_write_records_per_sec": {}, "spool_drain_records_per_sec": {}, "ratio_raw_rumqttc": {}, "baselines": {{"raw_rumqttc_records_per_sec": {}, "raw_rumqttc_single_records_per_sec": {}}}}}"#,
        num(f.map(|f| f.0), 0),
        num(f.map(|f| f.2), 0),
        num(Some(write), 0),
        num(Some(drain), 0),
        num(f.map(|f| f.0 / f.1), 3),
        num(f.map(|f| f.1), 0),
        num(f.map(|f| f.3), 0),
    );
    if json {
        println!("{line}");
    } else {
        println!("(run with -- --json for one JSON line)\n{line}");
    }
}
