//! A real MQTT broker for tests: Debian's mosquitto on a free loopback
//! port with a generated config, and mosquitto_sub as the subscriber.
//!
//! Without mosquitto installed, [`Broker::start`] fails the test when the
//! environment variable `CI` is set, and otherwise prints
//! "skipped: apt-get install mosquitto" and returns `None`.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use serde_json::Value;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The longest wait for a broker or a subscriber to be ready.
const READY: Duration = Duration::from_secs(20);
/// Between two looks at what is awaited.
const POLL: Duration = Duration::from_millis(10);

/// True when the mosquitto binaries are installed (else skip or fail).
pub fn available(test: &str) -> bool {
    let found = ["mosquitto", "mosquitto_sub", "mosquitto_pub"]
        .iter()
        .all(|b| which(b).is_some());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test}: mosquitto is not installed, and CI is set: .ci/run installs it"
        );
        eprintln!("{test}: skipped: apt-get install mosquitto mosquitto-clients");
    }
    found
}

fn is_root() -> bool {
    // SAFETY: geteuid(2) has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn which(binary: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/bin".into()])
        .map(|d| d.join(binary))
        .find(|p| p.is_file())
}

pub use tandem::harness::wait_for;

/// A mosquitto process on 127.0.0.1, persistent (so a subscriber's
/// session and queued messages survive a stop and a start), killed on drop.
pub struct Broker {
    child: Option<Child>,
    pub port: u16,
    dir: PathBuf,
    /// Configuration of the listener beyond its port (TLS, passwords).
    listener: String,
    /// Arguments mosquitto_pub and mosquitto_sub need to get in.
    client_args: Vec<String>,
}

/// The user and password of [`Broker::start_secure`].
pub const USER: (&str, &str) = ("tandem", "s3cret pass");

impl Broker {
    /// Starts a broker keeping its files in `dir`, or `None` when the test
    /// is to be skipped (see [`available`]).
    pub fn start(test: &str, dir: &Path) -> Option<Broker> {
        if !available(test) {
            return None;
        }
        std::fs::create_dir_all(dir).unwrap();
        let port = {
            let probe = TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap().port()
        };
        let mut broker = Broker {
            child: None,
            port,
            dir: dir.to_owned(),
            listener: "allow_anonymous true\n".into(),
            client_args: Vec::new(),
        };
        broker.run();
        Some(broker)
    }

    /// Starts a broker that takes TLS only (its certificate, for
    /// 127.0.0.1, from a CA written to `DIR/ca.pem`) and only [`USER`].
    pub fn start_secure(test: &str, dir: &Path) -> Option<Broker> {
        if !available(test) {
            return None;
        }
        std::fs::create_dir_all(dir).unwrap();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        // Names of their own: a leaf named like its CA looks self-signed.
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "tandem test broker CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "127.0.0.1");
        let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        std::fs::write(dir.join("server.pem"), cert.pem()).unwrap();
        std::fs::write(dir.join("server.key"), key.serialize_pem()).unwrap();
        let passwords = dir.join("passwords");
        let made = Command::new(which("mosquitto_passwd").unwrap())
            .args(["-c", "-b"])
            .arg(&passwords)
            .args([USER.0, USER.1])
            .status()
            .unwrap();
        assert!(made.success(), "mosquitto_passwd");
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let ca_file = dir.join("ca.pem").display().to_string();
        let mut broker = Broker {
            child: None,
            port,
            dir: dir.to_owned(),
            listener: format!(
                "allow_anonymous false\npassword_file {}\ncafile {ca_file}\ncertfile {}\nkeyfile {}\n",
                passwords.display(),
                dir.join("server.pem").display(),
                dir.join("server.key").display()
            ),
            client_args: vec![
                "--cafile".into(),
                ca_file,
                "-u".into(),
                USER.0.into(),
                "-P".into(),
                USER.1.into(),
            ],
        };
        broker.run();
        Some(broker)
    }

    /// The CA file a client must trust ([`Broker::start_secure`]).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    fn run(&mut self) {
        let conf = self.dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {} 127.0.0.1\n{}user {}\npersistence true\npersistence_location {}/\nmax_queued_messages 0\nlog_dest file {}\n",
                self.port,
                self.listener,
                // Run as root, mosquitto would switch to its own user and
                // could not write its files here; as anyone else it stays.
                if is_root() { "root" } else { "mosquitto" },
                self.dir.display(),
                self.dir.join("mosquitto.log").display()
            ),
        )
        .unwrap();
        let binary = which("mosquitto").unwrap();
        self.child = Some(
            Command::new(binary)
                .arg("-c")
                .arg(&conf)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let port = self.port;
        wait_for(
            "mosquitto to listen",
            READY,
            || self.log(),
            || TcpStream::connect(("127.0.0.1", port)).ok(),
        );
    }

    /// The broker's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("mosquitto.log")).unwrap_or_default()
    }

    /// Stops the broker (SIGTERM: it saves its sessions) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) on the broker process this helper started.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            wait_for(
                "mosquitto to exit",
                READY,
                || self.log(),
                || child.try_wait().unwrap(),
            );
        }
    }

    /// Starts the broker again on the same port with the same files.
    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }

    /// Publishes one message with mosquitto_pub, QoS 1.
    pub fn publish(&self, topic: &str, payload: &str, retain: bool) {
        let mut cmd = Command::new(which("mosquitto_pub").unwrap());
        cmd.args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-q", "1"])
            .args(&self.client_args)
            .args(["-t", topic, "-m", payload]);
        if retain {
            cmd.arg("-r");
        }
        let status = cmd.status().unwrap();
        assert!(status.success(), "mosquitto_pub {topic}");
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One message as the subscriber printed it.
#[derive(Clone, Debug)]
pub struct Message {
    /// The retain flag as delivered (set for retained messages sent on subscribing).
    pub retained: bool,
    pub topic: String,
    pub payload: String,
}

impl Message {
    /// The payload as JSON, `Null` when it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.payload).unwrap_or(Value::Null)
    }
}

/// A mosquitto_sub process with a persistent session (clean session off,
/// QoS 1), writing every message to a file; killed on drop.
pub struct Subscriber {
    child: Child,
    out: PathBuf,
}

impl Subscriber {
    /// Subscribes to `topics` as client `id`; returns once the
    /// subscription is in place (a probe message came through).
    pub fn start(broker: &Broker, id: &str, topics: &[&str]) -> Subscriber {
        let out = broker.dir.join(format!("{id}.txt"));
        let probe = format!("probe/{id}");
        let mut cmd = Command::new(which("mosquitto_sub").unwrap());
        cmd.args(["-h", "127.0.0.1", "-p", &broker.port.to_string()])
            .args(&broker.client_args)
            .args(["-i", id, "-c", "-q", "1", "-F", "%r %t %p"])
            .args(["-t", &probe]);
        for t in topics {
            cmd.args(["-t", t]);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::from(std::fs::File::create(&out).unwrap()))
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let sub = Subscriber { child, out };
        let deadline = Instant::now() + READY;
        let mut next_probe = Instant::now();
        loop {
            if sub.raw().iter().any(|m| m.topic == probe) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "mosquitto_sub {id} never subscribed"
            );
            // A probe published before the subscription is lost: send
            // another now and then until one comes through.
            if Instant::now() >= next_probe {
                broker.publish(&probe, "probe", false);
                next_probe = Instant::now() + Duration::from_millis(200);
            }
            std::thread::sleep(POLL);
        }
        sub
    }

    /// Every message so far, in arrival order (probes left out).
    pub fn messages(&self) -> Vec<Message> {
        let mut all = self.raw();
        all.retain(|m| !m.topic.starts_with("probe/"));
        all
    }

    fn raw(&self) -> Vec<Message> {
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        // The last line may still be being written.
        let complete = text.rfind('\n').map_or("", |end| &text[..end]);
        complete
            .lines()
            .filter_map(|line| {
                let (retained, rest) = line.split_once(' ')?;
                let (topic, payload) = rest.split_once(' ').unwrap_or((rest, ""));
                Some(Message {
                    retained: retained == "1",
                    topic: topic.to_owned(),
                    payload: payload.to_owned(),
                })
            })
            .collect()
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
