//! Results leaving the gateway over MQTT, against a real broker (Debian's
//! mosquitto) and real `tandem up` processes: a broker outage under load,
//! an agent killed while it spools, and Home Assistant discovery with the
//! last will. What the subscriber receives is checked record by record
//! against a `file` sink fed the same channels in the same graph.
//!
//! Every wait is on an event (the sink's status file, a subscriber's
//! messages, a process gone) with a bound; the one deliberate wait is the
//! 30 s broker outage the first test asks for.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::mqtt::{wait_for, Broker, Message, Subscriber};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tandem::harness::{Agent as _, Launcher, Scratch, Up};

/// The longest any awaited event may take.
const LIMIT: Duration = Duration::from_secs(60);
/// The gateway id of every test graph.
const GATEWAY: &str = "gw";

/// The test graph: a synthetic source of two channels at `rate` records/s
/// each, one of them through a vertex, to an `mqtt` sink and a `file` sink
/// (the truth) reading the same channels.
fn graph(dir: &Path, port: u16, rate: u32, mqtt_extra: &str) -> PathBuf {
    let path = dir.join("graph.toml");
    std::fs::write(
        &path,
        format!(
            r#"[graph]
name = "uplink"

[sources.gen]
kind = "synthetic"
channels = ["power", "temp"]
rate = {rate}
shape = "counter"

[vertices.power_kw]
kind = "scale"
inputs = ["gen.power"]
factor = 0.001

[sinks.up]
kind = "mqtt"
inputs = ["power_kw", "gen.temp"]
port = {port}
gateway = "{GATEWAY}"
spool = "{spool}"
drain = "20s"
{mqtt_extra}

[sinks.truth]
kind = "file"
inputs = ["power_kw", "gen.temp"]
path = "{truth}"
format = "csv"
"#,
            spool = dir.join("spool").display(),
            truth = dir.join("truth.csv").display(),
        ),
    )
    .unwrap();
    path
}

/// `tandem up` on `dir`'s graph and state, its stderr in `agent-RUN.log`.
fn start(dir: &Path, run: usize) -> Up {
    Launcher::new(
        env!("CARGO_BIN_EXE_tandem"),
        dir.join("graph.toml"),
        dir.join("state"),
    )
    .log_to(dir.join(format!("agent-{run}.log")))
    .bound(LIMIT)
    .spawn()
}

/// The sink's status file (`Null` before it is first written).
fn status(dir: &Path) -> Value {
    std::fs::read_to_string(dir.join("spool/up/status.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null)
}

fn number(v: &Value, field: &str) -> u64 {
    v[field].as_u64().unwrap_or(0)
}

/// One record, as the truth file or a message carries it.
#[derive(Clone, Debug)]
struct Rec {
    channel: String,
    seq: u64,
    time_ns: i64,
    value: Option<f64>,
}

impl PartialEq for Rec {
    /// Values within an ulp or so: serde_json's float parsing is not
    /// round-trip exact, though what the sink writes is.
    fn eq(&self, other: &Rec) -> bool {
        let close = match (self.value, other.value) {
            (Some(a), Some(b)) => (a - b).abs() <= 4.0 * f64::EPSILON * a.abs().max(b.abs()),
            (a, b) => a.is_none() && b.is_none(),
        };
        close
            && self.channel == other.channel
            && self.seq == other.seq
            && self.time_ns == other.time_ns
    }
}

/// The idempotency key of the `ordinal`-th record of (channel, seq).
fn key(channel: &str, seq: u64, ordinal: u64) -> String {
    if ordinal == 0 {
        format!("{GATEWAY}/{channel}/{seq}")
    } else {
        format!("{GATEWAY}/{channel}/{seq}/{ordinal}")
    }
}

/// The truth file's complete, well-formed lines, keyed, in file order.
fn truth(dir: &Path, from_byte: usize) -> Vec<(String, Rec)> {
    let text = std::fs::read_to_string(dir.join("truth.csv")).unwrap_or_default();
    let text = text.get(from_byte..).unwrap_or("");
    let mut ordinals: HashMap<(String, u64), u64> = HashMap::new();
    let mut out = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split(',').collect();
        let (Some(seq), Some(time_ns), Some(value)) = (
            f.first().and_then(|s| s.parse::<u64>().ok()),
            f.get(1).and_then(|s| s.parse::<i64>().ok()),
            f.get(3).and_then(|s| s.parse::<f64>().ok()),
        ) else {
            continue; // the header, or a line a kill cut short
        };
        if f.len() != 5 {
            continue;
        }
        let channel = f[2].to_owned();
        let n = ordinals.entry((channel.clone(), seq)).or_insert(0);
        out.push((
            key(&channel, seq, *n),
            Rec {
                channel,
                seq,
                time_ns,
                value: Some(value),
            },
        ));
        *n += 1;
    }
    out
}

/// The records in the subscriber's data messages, keyed, in arrival order
/// (duplicates kept), and the number of messages.
fn received(messages: &[Message]) -> (Vec<(String, Rec)>, usize) {
    let mut out = Vec::new();
    let mut count = 0;
    for m in messages {
        if !m.topic.starts_with(&format!("tandem/{GATEWAY}/")) || m.topic.ends_with("/availability")
        {
            continue;
        }
        count += 1;
        let json = m.json();
        let channel = json["channel"].as_str().unwrap_or("?").to_owned();
        assert_eq!(m.topic, format!("tandem/{GATEWAY}/{channel}"));
        assert_eq!(json["gateway"], GATEWAY);
        let records: Vec<&Value> = match json["records"].as_array() {
            Some(batch) => batch.iter().collect(),
            None => vec![&json],
        };
        for r in records {
            let rec = Rec {
                channel: channel.clone(),
                seq: r["seq"].as_u64().unwrap(),
                time_ns: r["time_ns"].as_i64().unwrap(),
                value: r["value"].as_f64(),
            };
            let k = r["key"].as_str().unwrap().to_owned();
            assert_eq!(
                k,
                key(&channel, rec.seq, r["ordinal"].as_u64().unwrap_or(0))
            );
            out.push((k, rec));
        }
    }
    (out, count)
}

/// Drops duplicates by key, checking that every copy of a key carries
/// the same record. Returns the first copies in arrival order and the
/// number of duplicates.
fn dedup(all: &[(String, Rec)]) -> (Vec<(String, Rec)>, usize) {
    let mut seen: HashMap<&str, &Rec> = HashMap::new();
    let mut first = Vec::new();
    let mut duplicates = 0;
    for (k, r) in all {
        match seen.get(k.as_str()) {
            Some(earlier) => {
                assert_eq!(*earlier, r, "key {k} arrived with two different records");
                duplicates += 1;
            }
            None => {
                seen.insert(k, r);
                first.push((k.clone(), r.clone()));
            }
        }
    }
    (first, duplicates)
}

/// Per channel, sequence numbers strictly rising.
fn assert_in_order(records: &[(String, Rec)]) {
    let mut last: BTreeMap<&str, u64> = BTreeMap::new();
    for (k, r) in records {
        if let Some(prev) = last.insert(&r.channel, r.seq) {
            assert!(prev < r.seq, "{k} came after seq {prev} of its channel");
        }
    }
}

/// Waits until the subscriber holds every key of `expected`; returns its
/// records, duplicates kept.
fn wait_delivered(
    sub: &Subscriber,
    expected: &[(String, Rec)],
    context: impl Fn() -> String,
) -> Vec<(String, Rec)> {
    wait_for("every record at the subscriber", LIMIT, &context, || {
        let (all, _) = received(&sub.messages());
        let have: HashMap<&str, ()> = all.iter().map(|(k, _)| (k.as_str(), ())).collect();
        expected
            .iter()
            .all(|(k, _)| have.contains_key(k.as_str()))
            .then_some(all)
    })
}

#[test]
fn a_broker_outage_under_load_loses_nothing_and_repeats_nothing_once_duplicates_are_dropped() {
    let dir = Scratch::new("uplink-outage");
    let Some(mut broker) = Broker::start("outage", &dir.0.join("broker")) else {
        return;
    };
    let sub = Subscriber::start(&broker, "sub-outage", &["tandem/#"]);
    graph(&dir.0, broker.port, 1000, "batch = 20");
    let agent = start(&dir.0, 1);
    let context = || format!("agent:\n{}\nstatus: {}", agent.log(), status(&dir.0));
    wait_for("records at the subscriber", LIMIT, context, || {
        (received(&sub.messages()).0.len() >= 2000).then_some(())
    });

    broker.stop();
    let outage = Instant::now();
    wait_for("the sink to spool", LIMIT, context, || {
        let s = status(&dir.0);
        (s["connected"] == false && number(&s, "backlog") >= 2000).then_some(())
    });
    // The outage the test asks for: the clock is the point here.
    std::thread::sleep(Duration::from_secs(30).saturating_sub(outage.elapsed()));
    let spooled = number(&status(&dir.0), "backlog");
    broker.restart();
    wait_for("the spool to drain", LIMIT, context, || {
        let s = status(&dir.0);
        (s["connected"] == true && number(&s, "backlog") < 500).then_some(())
    });
    agent.stop_with(libc::SIGINT);

    let expected = truth(&dir.0, 0);
    let all = wait_delivered(&sub, &expected, || broker.log());
    let (first, duplicates) = dedup(&all);
    assert_in_order(&first);
    let got: Vec<&String> = first.iter().map(|(k, _)| k).collect();
    let want: Vec<&String> = expected.iter().map(|(k, _)| k).collect();
    let mut sorted_got = got.clone();
    let mut sorted_want = want.clone();
    sorted_got.sort();
    sorted_want.sort();
    assert_eq!(
        sorted_got.len(),
        sorted_want.len(),
        "records received once vs written"
    );
    assert!(
        sorted_got == sorted_want,
        "the subscriber's records differ from the truth file"
    );
    let truth_by_key: HashMap<&str, &Rec> = expected.iter().map(|(k, r)| (k.as_str(), r)).collect();
    for (k, r) in &first {
        assert_eq!(truth_by_key.get(k.as_str()), Some(&r), "{k}");
    }
    let s = status(&dir.0);
    println!(
        "outage: {} records, {spooled} spooled during 30 s; raw duplicates at the subscriber {duplicates}; the sink re-sent {}",
        expected.len(),
        number(&s, "resent")
    );
}

#[test]
fn an_agent_killed_while_spooling_delivers_everything_once_by_key_after_restart() {
    let dir = Scratch::new("uplink-killed");
    let Some(mut broker) = Broker::start("killed", &dir.0.join("broker")) else {
        return;
    };
    let sub = Subscriber::start(&broker, "sub-killed", &["tandem/#"]);
    graph(&dir.0, broker.port, 500, "");
    let agent = start(&dir.0, 1);
    {
        let context = || format!("agent:\n{}\nstatus: {}", agent.log(), status(&dir.0));
        wait_for("records at the subscriber", LIMIT, context, || {
            (received(&sub.messages()).0.len() >= 500).then_some(())
        });
        broker.stop();
        wait_for("the spool to fill", LIMIT, context, || {
            let s = status(&dir.0);
            (s["connected"] == false && number(&s, "backlog") >= 1500).then_some(())
        });
    }
    agent.kill();
    let run1_bytes = std::fs::read(dir.0.join("truth.csv")).unwrap().len();
    let run1 = truth(&dir.0, 0);

    let agent = start(&dir.0, 2);
    let context = || format!("agent:\n{}\nstatus: {}", agent.log(), status(&dir.0));
    wait_for("the restarted agent to spool", LIMIT, context, || {
        let s = status(&dir.0);
        (s["connected"] == false && number(&s, "backlog") >= 3000).then_some(())
    });
    broker.restart();
    wait_for("the spool to drain", LIMIT, context, || {
        let s = status(&dir.0);
        (s["connected"] == true && number(&s, "backlog") < 500).then_some(())
    });
    agent.stop_with(libc::SIGINT);
    let run2 = truth(&dir.0, run1_bytes);

    let all = wait_delivered(&sub, &run2, || broker.log());
    let (first, duplicates) = dedup(&all);
    assert_in_order(&first);
    let got: HashMap<&str, &Rec> = first.iter().map(|(k, r)| (k.as_str(), r)).collect();
    // Run 1: what the spool held when the agent was killed is delivered;
    // its last few records may not have reached the spool (nor the file)
    // when SIGKILL came. Run 2 numbers above everything run 1 used.
    let run2_min = run2.iter().map(|(_, r)| r.seq).min().unwrap();
    assert!(run1.iter().all(|(_, r)| r.seq < run2_min));
    let reached = first
        .iter()
        .map(|(_, r)| r.seq)
        .filter(|&seq| seq < run2_min)
        .max()
        .unwrap();
    let mut missing_tail = 0;
    for (k, r) in &run1 {
        match got.get(k.as_str()) {
            Some(g) => assert_eq!(*g, r, "{k}"),
            None => {
                assert!(r.seq > reached, "{k} lost: the spool had records after it");
                missing_tail += 1;
            }
        }
    }
    assert!(
        missing_tail <= 2048,
        "{missing_tail} records of run 1 never reached the spool"
    );
    // Run 2 (stopped cleanly): everything, exactly.
    for (k, r) in &run2 {
        assert_eq!(got.get(k.as_str()), Some(&r), "{k}");
    }
    let truth_keys: HashMap<&str, ()> = run1
        .iter()
        .chain(&run2)
        .map(|(k, _)| (k.as_str(), ()))
        .collect();
    let extra = first
        .iter()
        .filter(|(k, _)| !truth_keys.contains_key(k.as_str()))
        .count();
    assert!(
        extra <= 2048,
        "{extra} records at the subscriber that the file sink never wrote"
    );
    println!(
        "killed: run 1 {} records ({missing_tail} never spooled, {extra} spooled but not in the file), run 2 {}; raw duplicates {duplicates}; re-sent {}",
        run1.len(),
        run2.len(),
        number(&status(&dir.0), "resent")
    );
}

#[test]
fn home_assistant_gets_retained_configs_availability_the_will_and_a_republish() {
    let dir = Scratch::new("uplink-discovery");
    let Some(broker) = Broker::start("discovery", &dir.0.join("broker")) else {
        return;
    };
    graph(&dir.0, broker.port, 50, "discovery = true");
    let agent = start(&dir.0, 1);
    let context = || format!("agent:\n{}\nstatus: {}", agent.log(), status(&dir.0));
    wait_for("the sink to announce itself", LIMIT, context, || {
        let s = status(&dir.0);
        (s["connected"] == true && number(&s, "discovery_published") >= 1).then_some(())
    });

    // A newcomer gets the configs and availability as retained messages.
    let ha = Subscriber::start(
        &broker,
        "ha",
        &["homeassistant/#", "tandem/gw/availability"],
    );
    let configs = |m: &[Message], retained: bool| -> BTreeMap<String, Value> {
        m.iter()
            .filter(|m| m.topic.starts_with("homeassistant/sensor/") && m.retained == retained)
            .map(|m| (m.topic.clone(), m.json()))
            .collect()
    };
    let retained = wait_for("two retained configs", LIMIT, context, || {
        let c = configs(&ha.messages(), true);
        (c.len() == 2).then_some(c)
    });
    let power = &retained["homeassistant/sensor/tandem_gw/power_kw/config"];
    assert_eq!(power["state_topic"], "tandem/gw/power_kw");
    assert_eq!(power["value_template"], "{{ value_json.value }}");
    assert_eq!(power["availability_topic"], "tandem/gw/availability");
    assert_eq!(power["unique_id"], "tandem_gw_up_power_kw");
    assert_eq!(power["device"]["identifiers"][0], "tandem_gw");
    assert!(retained.contains_key("homeassistant/sensor/tandem_gw/gen_temp/config"));
    let availability = |m: &[Message]| -> Vec<(bool, String)> {
        m.iter()
            .filter(|m| m.topic == "tandem/gw/availability")
            .map(|m| (m.retained, m.payload.clone()))
            .collect()
    };
    wait_for("availability online, retained", LIMIT, context, || {
        availability(&ha.messages())
            .contains(&(true, "online".to_owned()))
            .then_some(())
    });

    // Home Assistant restarts and says so: the configs come again.
    broker.publish("homeassistant/status", "online", false);
    wait_for("the configs republished", LIMIT, context, || {
        (configs(&ha.messages(), false).len() == 2).then_some(())
    });
    wait_for("the sink to count the republish", LIMIT, context, || {
        (number(&status(&dir.0), "discovery_published") >= 2).then_some(())
    });

    // The agent dies: the broker publishes the will.
    agent.kill();
    wait_for(
        "availability offline by the will",
        LIMIT,
        || broker.log(),
        || {
            availability(&ha.messages())
                .last()
                .is_some_and(|(_, p)| p == "offline")
                .then_some(())
        },
    );
    let late = Subscriber::start(&broker, "late", &["tandem/gw/availability"]);
    wait_for(
        "offline retained for newcomers",
        LIMIT,
        || broker.log(),
        || {
            availability(&late.messages())
                .contains(&(true, "offline".to_owned()))
                .then_some(())
        },
    );
}

/// The bytes `tandem status` says sink `up` holds in its spool.
fn spool_bytes(status: &Value) -> Option<u64> {
    status["spools"]
        .as_array()?
        .iter()
        .find(|s| s["sink"] == "up")?["bytes"]
        .as_u64()
}

#[test]
fn the_spool_lives_in_the_state_directory_and_its_backlog_is_shown() {
    let dir = Scratch::new("uplink-state-spool");
    let Some(mut broker) = Broker::start("state-spool", &dir.0.join("broker")) else {
        return;
    };
    broker.stop();
    // No `spool` parameter: the spool goes to the state directory.
    let file = graph(&dir.0, broker.port, 500, "");
    let text = std::fs::read_to_string(&file).unwrap();
    let text: String = text
        .lines()
        .filter(|l| !l.starts_with("spool = "))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&file, text).unwrap();
    let agent = start(&dir.0, 1);
    let context = || format!("agent:\n{}\nstatus: {}", agent.log(), agent.status());
    let held = wait_for("a backlog while the broker is down", LIMIT, context, || {
        spool_bytes(&agent.status()).filter(|&b| b >= 44 * 200)
    });
    assert_eq!(held % 44, 0, "44 bytes a record: {held}");
    assert!(
        dir.0.join("state/spool/up").is_dir(),
        "the spool is not in the state directory"
    );
    assert!(
        !dir.0.join("spool").exists(),
        "a spool outside the state directory"
    );

    broker.restart();
    // Delivered: fewer than 100 records wait (input goes on meanwhile).
    wait_for("the backlog delivered", LIMIT, context, || {
        spool_bytes(&agent.status()).filter(|&b| b < 44 * 100)
    });
    agent.stop_with(libc::SIGINT);
}

#[test]
fn a_broker_asking_for_tls_and_a_password_gets_them_and_a_wrong_password_is_spooled() {
    use common::mqtt::USER;
    let dir = Scratch::new("uplink-tls");
    let Some(broker) = Broker::start_secure("tls", &dir.0.join("broker")) else {
        return;
    };
    let sub = Subscriber::start(&broker, "sub-tls", &["tandem/#"]);
    let secure = |password: &str| {
        format!(
            "tls = true\nca_file = \"{}\"\nusername = \"{}\"\npassword = \"{password}\"",
            broker.ca_file().display(),
            USER.0
        )
    };
    graph(&dir.0, broker.port, 200, &secure(USER.1));
    let agent = start(&dir.0, 1);
    let context = || format!("agent:\n{}\nstatus: {}", agent.log(), status(&dir.0));
    let (got, _) = wait_for("records over TLS", LIMIT, context, || {
        let got = received(&sub.messages());
        (got.0.len() >= 200).then_some(got)
    });
    let truth: HashMap<String, Rec> = truth(&dir.0, 0).into_iter().collect();
    for (k, rec) in &got {
        if let Some(want) = truth.get(k) {
            assert_eq!(rec, want, "{k}");
        }
    }
    agent.stop_with(libc::SIGINT);

    // The same broker, a wrong password: refused, logged, and nothing lost.
    std::fs::remove_dir_all(dir.0.join("state")).unwrap();
    std::fs::remove_dir_all(dir.0.join("spool")).unwrap();
    graph(&dir.0, broker.port, 200, &secure("wrong"));
    let agent = start(&dir.0, 2);
    let context = || format!("agent:\n{}\nstatus: {}", agent.log(), status(&dir.0));
    wait_for(
        "the refusal logged, records spooled",
        LIMIT,
        context,
        || {
            let s = status(&dir.0);
            (agent
                .log()
                .contains("tandem: warning: sink `up`: cannot reach")
                && s["connected"] == false
                && number(&s, "backlog") >= 100)
                .then_some(())
        },
    );
}
