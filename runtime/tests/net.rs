//! QUIC links on loopback: mutual TLS from the site CA, messages both ways,
//! bad peers refused or dropped and counted, the agent keeps serving.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tandem::net::{
    CaError, Client, LinkError, NetStats, Server, SiteCa, SiteTrust, TransportOptions,
    CLOSE_BAD_FRAME,
};
use tandem_core::ha::{Color, Role, ToAgent, ToInstance};
use tandem_core::wire::{self, WireError};
use tandem_core::{ChannelId, EventTime, Record, Seq};
use tokio::sync::mpsc;

const LIMIT: Duration = Duration::from_secs(10);

fn local() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
}

async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, f)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {LIMIT:?}"))
}

fn state_dir(test: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("net-{test}"));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// An agent that answers every message on each link with [`answer`],
/// reporting how each link ended (or its handshake failed) on `ended`.
struct EchoAgent {
    server: Arc<Server>,
    addr: SocketAddr,
    ended: mpsc::UnboundedReceiver<Result<(), LinkError>>,
}

fn echo_agent(ca: &SiteCa) -> EchoAgent {
    let trust = ca.trust().unwrap();
    let id = ca.issue_identity("agent").unwrap();
    let server = Arc::new(Server::bind(local(), &id, &trust, TransportOptions::default()).unwrap());
    let addr = server.local_addr().unwrap();
    let (tx, ended) = mpsc::unbounded_channel();
    let s = server.clone();
    tokio::spawn(async move {
        while let Some(pending) = s.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let result = async {
                    let mut link = pending.establish().await?;
                    while let Some(msg) = link.reader.next().await? {
                        link.writer.send(&answer(msg)).await?;
                    }
                    link.writer.finish()?;
                    // Keep the connection until the peer has read everything.
                    let _ = link.connection.closed().await;
                    Ok(())
                }
                .await;
                let _ = tx.send(result);
            });
        }
    });
    EchoAgent {
        server,
        addr,
        ended,
    }
}

/// The echo agent's answer to `msg`: a message the other way that carries
/// the same fields, so every message of both directions crosses a link.
fn answer(msg: ToAgent) -> ToInstance {
    match msg {
        ToAgent::Hello { version, .. } => ToInstance::SetRole {
            role: if version % 2 == 0 {
                Role::Serving
            } else {
                Role::Shadow
            },
        },
        ToAgent::Output { frontier, records } => ToInstance::Input { frontier, records },
        ToAgent::SnapshotChunk {
            barrier,
            vertex,
            offset,
            total,
            bytes,
        } => ToInstance::SnapshotChunk {
            barrier,
            vertex,
            offset,
            total,
            bytes,
        },
        ToAgent::SnapshotEnd {
            barrier,
            vertices,
            state_hash,
        } => ToInstance::SnapshotEnd {
            barrier,
            vertices,
            state_hash,
        },
        ToAgent::Restored { barrier, .. } => ToInstance::SnapshotRequest { barrier },
        ToAgent::StateHash { barrier, hash } => ToInstance::Barrier {
            id: barrier,
            at: Seq(hash),
        },
        ToAgent::Heartbeat { sent_ns, seq, .. } => ToInstance::Heartbeat { sent_ns, seq },
    }
}

fn instance(ca: &SiteCa, name: &str) -> Client {
    let id = ca.issue_identity(name).unwrap();
    Client::new(
        local(),
        &id,
        &ca.trust().unwrap(),
        TransportOptions::default(),
    )
    .unwrap()
}

fn batch(n: u64) -> Vec<Record> {
    (1..=n)
        .map(|i| {
            Record::new(
                Seq(i),
                EventTime(i as i64 * 1000),
                ChannelId(i as u32 % 3),
                i as f64 / 4.0,
            )
        })
        .collect()
}

/// Sends `msg` on a fresh link from `client` and checks its answer comes back.
async fn echo_round_trip(client: &Client, addr: SocketAddr, msg: ToAgent) {
    let mut link = within("connect", client.connect(addr, "agent"))
        .await
        .unwrap();
    link.writer.send(&msg).await.unwrap();
    let back = within("echo", link.reader.next()).await.unwrap();
    assert_eq!(back, Some(answer(msg)));
}

#[tokio::test]
async fn site_instance_exchanges_every_message_both_ways() {
    let ca = SiteCa::generate().unwrap();
    let agent = echo_agent(&ca);
    let client = instance(&ca, "instance-blue");
    let mut link = within("connect", client.connect(agent.addr, "agent"))
        .await
        .unwrap();

    let sent = vec![
        ToAgent::Hello {
            color: Color::Blue,
            version: 1,
            pid: 42,
        },
        ToAgent::Output {
            frontier: Seq(100),
            records: batch(100),
        },
        ToAgent::SnapshotChunk {
            barrier: 1,
            vertex: 2,
            offset: 0,
            total: 5,
            bytes: Bytes::from_static(b"state"),
        },
        ToAgent::SnapshotEnd {
            barrier: 1,
            vertices: 1,
            state_hash: 9,
        },
        ToAgent::Restored {
            barrier: 1,
            state_hash: 9,
        },
        ToAgent::StateHash {
            barrier: 2,
            hash: 100,
        },
        ToAgent::Heartbeat {
            sent_ns: 7,
            seq: 1,
            processed: Seq(100),
        },
    ];
    for msg in &sent {
        link.writer.send(msg).await.unwrap();
    }
    // A batch straight from a slice.
    link.writer.send_batch(Seq(3), &batch(3)).await.unwrap();
    link.writer.finish().unwrap();

    let mut back = Vec::new();
    while let Some(msg) = within("read answers", link.reader.next()).await.unwrap() {
        back.push(msg);
    }
    let mut want: Vec<ToInstance> = sent.into_iter().map(answer).collect();
    want.push(ToInstance::Input {
        frontier: Seq(3),
        records: batch(3),
    });
    assert_eq!(back, want);
    assert_eq!(agent.server.stats().accepted(), 1);
    assert_eq!(agent.server.stats().bad_frames(), 0);
}

#[tokio::test]
async fn one_encoded_batch_goes_to_two_instances() {
    let ca = SiteCa::generate().unwrap();
    let agent = echo_agent(&ca);
    let blue = instance(&ca, "instance-blue");
    let green = instance(&ca, "instance-green");
    let mut a = within("connect", blue.connect(agent.addr, "agent"))
        .await
        .unwrap();
    let mut b = within("connect", green.connect(agent.addr, "agent"))
        .await
        .unwrap();
    let msg = ToAgent::Output {
        frontier: Seq(64),
        records: batch(64),
    };
    let bytes = wire::encode_to_bytes(&msg).unwrap();
    a.writer.send_bytes(bytes.clone()).await.unwrap();
    b.writer.send_bytes(bytes).await.unwrap();
    assert_eq!(
        within("echo a", a.reader.next()).await.unwrap(),
        Some(answer(msg.clone()))
    );
    assert_eq!(
        within("echo b", b.reader.next()).await.unwrap(),
        Some(answer(msg))
    );
}

/// The refused client's own view: connecting, or the first exchange, fails.
async fn assert_refused(client: &Client, addr: SocketAddr) {
    let outcome = within("refused client", async {
        let mut link = client.connect(addr, "agent").await?;
        link.writer
            .send(&ToAgent::Hello {
                color: Color::Green,
                version: 1,
                pid: 1,
            })
            .await?;
        link.reader.next().await
    })
    .await;
    assert!(outcome.is_err(), "a refused client got {outcome:?}");
}

async fn assert_agent_refused(agent: &mut EchoAgent) {
    let ended = within("agent sees the refusal", agent.ended.recv())
        .await
        .unwrap();
    assert!(matches!(ended, Err(LinkError::Handshake(_))), "{ended:?}");
    assert_eq!(agent.server.stats().refused(), 1);
    assert_eq!(agent.server.stats().accepted(), 0);
}

#[tokio::test]
async fn client_without_certificate_is_refused() {
    let ca = SiteCa::generate().unwrap();
    let mut agent = echo_agent(&ca);
    let anon =
        Client::anonymous(local(), &ca.trust().unwrap(), TransportOptions::default()).unwrap();
    assert_refused(&anon, agent.addr).await;
    assert_agent_refused(&mut agent).await;
    // The agent still serves a proper instance.
    echo_round_trip(
        &instance(&ca, "instance-blue"),
        agent.addr,
        ToAgent::Restored {
            barrier: 1,
            state_hash: 0,
        },
    )
    .await;
}

#[tokio::test]
async fn client_with_certificate_from_another_ca_is_refused() {
    let ca = SiteCa::generate().unwrap();
    let other = SiteCa::generate().unwrap();
    let mut agent = echo_agent(&ca);
    // Presents a cert from another site, and even trusts our CA.
    let stranger = Client::new(
        local(),
        &other.issue_identity("instance-blue").unwrap(),
        &ca.trust().unwrap(),
        TransportOptions::default(),
    )
    .unwrap();
    assert_refused(&stranger, agent.addr).await;
    assert_agent_refused(&mut agent).await;
    echo_round_trip(
        &instance(&ca, "instance-blue"),
        agent.addr,
        ToAgent::Restored {
            barrier: 1,
            state_hash: 0,
        },
    )
    .await;
}

#[tokio::test]
async fn instance_refuses_an_agent_from_another_ca() {
    let ca = SiteCa::generate().unwrap();
    let other = SiteCa::generate().unwrap();
    // An impostor agent with a cert from another site, trusting our instances.
    let server = Server::bind(
        local(),
        &other.issue_identity("agent").unwrap(),
        &ca.trust().unwrap(),
        TransportOptions::default(),
    )
    .unwrap();
    let addr = server.local_addr().unwrap();
    tokio::spawn(async move {
        while let Some(p) = server.accept().await {
            let _ = p.establish().await;
        }
    });
    let client = instance(&ca, "instance-blue");
    let err = within("connect", client.connect(addr, "agent"))
        .await
        .unwrap_err();
    assert!(matches!(err, LinkError::Handshake(_)), "{err:?}");
    assert_eq!(client.stats().refused(), 1);
}

/// Connects with a site certificate, sends `bytes` raw, and expects the
/// agent to drop the connection with the bad-frame code and count it.
async fn send_bad_bytes(
    ca: &SiteCa,
    agent: &mut EchoAgent,
    bytes: Bytes,
    finish: bool,
) -> LinkError {
    let client = instance(ca, "instance-blue");
    let mut link = within("connect", client.connect(agent.addr, "agent"))
        .await
        .unwrap();
    link.writer.send_bytes(bytes).await.unwrap();
    if finish {
        link.writer.finish().unwrap();
    }
    let closed = within("agent closes the link", link.connection.closed()).await;
    match closed {
        quinn::ConnectionError::ApplicationClosed(close) => {
            assert_eq!(close.error_code, quinn::VarInt::from_u32(CLOSE_BAD_FRAME));
        }
        other => panic!("expected a bad-frame close, got {other:?}"),
    }
    within("agent link ends", agent.ended.recv())
        .await
        .unwrap()
        .unwrap_err()
}

fn counts(stats: &NetStats) -> (u64, u64) {
    (stats.accepted(), stats.bad_frames())
}

#[tokio::test]
async fn bad_frames_close_their_connection_are_counted_and_the_agent_keeps_serving() {
    let ca = SiteCa::generate().unwrap();
    let mut agent = echo_agent(&ca);
    // A healthy instance connected before, during and after the bad ones.
    let good = instance(&ca, "instance-green");
    let mut healthy = within("connect", good.connect(agent.addr, "agent"))
        .await
        .unwrap();
    let hb = ToAgent::Heartbeat {
        sent_ns: 1,
        seq: 1,
        processed: Seq(0),
    };
    healthy.writer.send(&hb).await.unwrap();
    assert_eq!(
        within("echo", healthy.reader.next()).await.unwrap(),
        Some(answer(hb.clone()))
    );

    // Garbage: not our magic.
    let err = send_bad_bytes(
        &ca,
        &mut agent,
        Bytes::from_static(b"\x08\0\0\0GET / HTTP"),
        false,
    )
    .await;
    assert!(
        matches!(err, LinkError::BadFrame(WireError::BadMagic { .. })),
        "{err:?}"
    );
    assert_eq!(counts(agent.server.stats()), (2, 1));

    // Over the cap, refused from the length prefix alone.
    let err = send_bad_bytes(
        &ca,
        &mut agent,
        Bytes::from_static(&[0xff, 0xff, 0xff, 0x7f]),
        false,
    )
    .await;
    assert!(
        matches!(err, LinkError::BadFrame(WireError::TooLarge { .. })),
        "{err:?}"
    );
    assert_eq!(counts(agent.server.stats()), (3, 2));

    // A valid frame cut short, then the stream finished.
    let whole = wire::encode_to_bytes(&ToAgent::Output {
        frontier: Seq(4),
        records: batch(4),
    })
    .unwrap();
    let err = send_bad_bytes(&ca, &mut agent, whole.slice(..whole.len() - 5), true).await;
    assert!(matches!(err, LinkError::EndedMidFrame { .. }), "{err:?}");
    assert_eq!(counts(agent.server.stats()), (4, 3));

    // A record count that does not match the body.
    let mut lying = whole.to_vec();
    lying[16] = 9;
    let err = send_bad_bytes(&ca, &mut agent, Bytes::from(lying), false).await;
    assert!(
        matches!(
            err,
            LinkError::BadFrame(WireError::RecordCountMismatch { .. })
        ),
        "{err:?}"
    );
    assert_eq!(counts(agent.server.stats()), (5, 4));

    // A well-formed message going the wrong way: an input sent to the agent.
    let wrong_way = wire::encode_to_bytes(&ToInstance::Input {
        frontier: Seq(4),
        records: batch(4),
    })
    .unwrap();
    let err = send_bad_bytes(&ca, &mut agent, wrong_way, false).await;
    assert!(
        matches!(
            err,
            LinkError::BadFrame(WireError::WrongWay {
                frame_type: "input",
                to: "agent"
            })
        ),
        "{err:?}"
    );
    assert_eq!(counts(agent.server.stats()), (6, 5));

    // The healthy link never noticed; a new instance still gets served.
    healthy.writer.send(&hb).await.unwrap();
    assert_eq!(
        within("echo", healthy.reader.next()).await.unwrap(),
        Some(answer(hb))
    );
    echo_round_trip(
        &instance(&ca, "instance-blue"),
        agent.addr,
        ToAgent::Restored {
            barrier: 1,
            state_hash: 2,
        },
    )
    .await;
}

#[tokio::test]
async fn a_peer_speaking_wire_format_1_is_told_to_upgrade_together() {
    let ca = SiteCa::generate().unwrap();
    let mut agent = echo_agent(&ca);
    // A hello as version 1 wrote it.
    let old_hello = Bytes::from_static(&[
        0x0d, 0, 0, 0, b'T', b'D', 1, 0x01, 1, 7, 0, 0, 0, 0x34, 0x12, 0, 0,
    ]);
    let err = send_bad_bytes(&ca, &mut agent, old_hello, false).await;
    let LinkError::Version { found: 1, peer } = err else {
        panic!("expected a version refusal, got {err:?}");
    };
    assert_eq!(
        err.to_string(),
        format!(
            "wire format 1 from {peer}; this tandem speaks 2: \
             upgrade the agent and instances together"
        )
    );
    assert_eq!(counts(agent.server.stats()), (1, 1));
    echo_round_trip(
        &instance(&ca, "instance-blue"),
        agent.addr,
        ToAgent::StateHash {
            barrier: 1,
            hash: 2,
        },
    )
    .await;
}

#[tokio::test]
async fn udp_garbage_at_the_agent_port_does_not_stop_it() {
    let ca = SiteCa::generate().unwrap();
    let agent = echo_agent(&ca);
    let socket = UdpSocket::bind(local()).unwrap();
    let mut x: u32 = 0x1234_5678;
    for len in [0usize, 1, 7, 20, 1200, 1500, 65_000] {
        let datagram: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        socket.send_to(&datagram, agent.addr).unwrap();
    }
    // Something that looks like a QUIC long header with nonsense after it.
    let mut fake = vec![0xc0, 0, 0, 0, 1, 8];
    fake.extend([0xab; 1300]);
    socket.send_to(&fake, agent.addr).unwrap();
    echo_round_trip(
        &instance(&ca, "instance-blue"),
        agent.addr,
        ToAgent::StateHash {
            barrier: 3,
            hash: 4,
        },
    )
    .await;
    assert_eq!(agent.server.stats().bad_frames(), 0);
}

#[test]
fn site_ca_is_created_once_then_loaded() {
    let dir = state_dir("ca-persist");
    let ca = SiteCa::open_or_create(&dir).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join(SiteCa::KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let again = SiteCa::open_or_create(&dir).unwrap();
    assert_eq!(
        again.cert_pem(),
        ca.cert_pem(),
        "the same CA is loaded, not a new one"
    );
    // A leaf issued after the reload is trusted by the first CA's roots.
    let leaf = again.issue_identity("agent").unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let trust = SiteTrust::from_pem(ca.cert_pem()).unwrap();
        let server = Server::bind(local(), &leaf, &trust, TransportOptions::default()).unwrap();
        let addr = server.local_addr().unwrap();
        let accept = async {
            let mut link = server.accept().await.unwrap().establish().await.unwrap();
            link.reader.next().await.unwrap()
        };
        let connect = async {
            let client = instance(&ca, "instance-blue");
            let mut link = client.connect(addr, "agent").await.unwrap();
            link.writer
                .send(&ToAgent::Restored {
                    barrier: 9,
                    state_hash: 0,
                })
                .await
                .unwrap();
            link.writer.finish().unwrap();
            link
        };
        let (got, _link) =
            within("reloaded CA link", async { tokio::join!(accept, connect) }).await;
        assert_eq!(
            got,
            Some(ToAgent::Restored {
                barrier: 9,
                state_hash: 0
            })
        );
    });
}

#[test]
fn broken_ca_files_are_named_in_the_error() {
    let dir = state_dir("ca-broken");
    SiteCa::create(&dir).unwrap();
    let cert = dir.join(SiteCa::CERT_FILE);
    let key = dir.join(SiteCa::KEY_FILE);

    // Corrupt certificate.
    let good_cert = std::fs::read(&cert).unwrap();
    std::fs::write(&cert, b"-----BEGIN CERTIFICATE-----\nnot base64\n").unwrap();
    let err = SiteCa::open_or_create(&dir).unwrap_err();
    assert!(
        matches!(&err, CaError::Corrupt { path, .. } if *path == cert),
        "{err}"
    );
    assert!(err.to_string().contains(SiteCa::CERT_FILE), "{err}");
    std::fs::write(&cert, &good_cert).unwrap();

    // A key from another CA.
    let other = state_dir("ca-broken-other");
    SiteCa::create(&other).unwrap();
    let good_key = std::fs::read(&key).unwrap();
    std::fs::remove_file(&key).unwrap();
    std::fs::copy(other.join(SiteCa::KEY_FILE), &key).unwrap();
    let err = SiteCa::open_or_create(&dir).unwrap_err();
    assert!(matches!(err, CaError::KeyMismatch { .. }), "{err}");

    // A key others can read.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(&key, &good_key).unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = SiteCa::open_or_create(&dir).unwrap_err();
        assert!(
            matches!(err, CaError::KeyPermissions { mode: 0o644, .. }),
            "{err}"
        );
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    // A missing key next to an existing certificate: never silently replaced.
    std::fs::remove_file(&key).unwrap();
    let err = SiteCa::open_or_create(&dir).unwrap_err();
    assert!(
        matches!(&err, CaError::HalfPresent { missing, .. } if *missing == key),
        "{err}"
    );
    assert!(err.to_string().contains(SiteCa::KEY_FILE), "{err}");
    assert!(!key.exists());
}

#[test]
fn raw_quinn_baseline_runs() {
    let run = tandem::net::raw_quinn_records_per_sec(20, 256).unwrap();
    assert_eq!(run.records, 20 * 256);
}
