//! The metrics endpoint of `tandem up --metrics ADDR`: a minimal HTTP/1.1
//! server on the agent's runtime (one request per connection, then close).
//!
//! - `GET /metrics`: Prometheus text of the status ([`super::exposition`]).
//! - `GET /livez`: 200 while the hub's loop turns (its heartbeat is under
//!   [`LIVE_WITHIN`] old), else 503.
//! - `GET /readyz`: 200 while at least one instance serves and the sinks
//!   receive what is emitted, else 503; the body says why.
//!
//! The status is asked of the hub like `tandem status` asks it, through
//! its request channel, so a scrape never holds the hub; a hub that does
//! not answer within [`HUB_TIMEOUT`] gets a 503.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::{oneshot, Semaphore};

use super::Board;
use crate::up::control::{Envelope, Request};

/// The hub loop turns at least every 20 ms; silence this long means it is stuck.
pub const LIVE_WITHIN: Duration = Duration::from_secs(2);
/// How long a scrape waits for the hub's status.
pub const HUB_TIMEOUT: Duration = Duration::from_secs(2);
/// Records waiting for the sinks for this long without one reaching them
/// means the sinks are not receiving.
pub const STALLED: Duration = Duration::from_secs(5);
/// Connections served at once, at most; others wait to be accepted.
const CONNECTIONS: usize = 16;
/// The longest request head read.
const MAX_HEAD: usize = 8192;
/// How long a client has to send its request and take the answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

/// What the endpoint needs of the agent.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// Heartbeat, figures.
    pub board: Arc<Board>,
    /// The hub's request channel (as the control socket uses it).
    pub hub: UnboundedSender<Envelope>,
}

/// `--metrics` cannot listen where it was asked.
#[derive(Debug, thiserror::Error)]
#[error(
    "--metrics {addr}: cannot listen there ({source}); give a free address such as 127.0.0.1:9464"
)]
pub struct BindError {
    /// The address asked for.
    pub addr: SocketAddr,
    /// Why it cannot be bound.
    pub source: std::io::Error,
}

/// Binds `addr`; the caller spawns [`serve`] with the listener.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, BindError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| BindError { addr, source })
}

/// Answers on `listener` until the runtime ends.
pub async fn serve(listener: TcpListener, endpoint: Endpoint) {
    let slots = Arc::new(Semaphore::new(CONNECTIONS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let endpoint = endpoint.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(CLIENT_TIMEOUT, answer(stream, &endpoint)).await;
            drop(permit);
        });
    }
}

async fn answer(mut stream: TcpStream, endpoint: &Endpoint) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 || head.len() + n > MAX_HEAD {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    let mut words = line.split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (code, kind, body) = if method != "GET" && method != "HEAD" {
        (405, TEXT, "only GET is served\n".to_owned())
    } else {
        route(path, endpoint).await
    };
    let reason = match code {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Service Unavailable",
    };
    let mut reply = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if method != "HEAD" {
        reply.push_str(&body);
    }
    stream.write_all(reply.as_bytes()).await?;
    stream.shutdown().await
}

const TEXT: &str = "text/plain; charset=utf-8";

async fn route(path: &str, endpoint: &Endpoint) -> (u16, &'static str, String) {
    match path {
        "/metrics" => match status(endpoint).await {
            Ok(v) => (
                200,
                super::exposition::CONTENT_TYPE,
                super::exposition::render(&v),
            ),
            Err(why) => (503, TEXT, format!("{why}\n")),
        },
        "/livez" => {
            let since = endpoint.board.since_beat();
            if since < LIVE_WITHIN {
                (200, TEXT, "live: the agent's loop is turning\n".into())
            } else {
                (
                    503,
                    TEXT,
                    format!("not live: the agent's loop last turned {since:.1?} ago\n"),
                )
            }
        }
        "/readyz" => {
            let verdict = match status(endpoint).await {
                Ok(v) => readiness(&v, endpoint.board.relayed()),
                Err(why) => Err(why),
            };
            match verdict {
                Ok(why) => (200, TEXT, format!("ready: {why}\n")),
                Err(why) => (503, TEXT, format!("not ready: {why}\n")),
            }
        }
        _ => (
            404,
            TEXT,
            "not found; try /metrics, /livez or /readyz\n".into(),
        ),
    }
}

/// The hub's status, as `tandem status --json` prints it.
async fn status(endpoint: &Endpoint) -> Result<Value, String> {
    let (tx, rx) = oneshot::channel();
    endpoint
        .hub
        .send((Request::Status, tx))
        .map_err(|_| "the agent is stopping".to_owned())?;
    match tokio::time::timeout(HUB_TIMEOUT, rx).await {
        Ok(Ok(Ok(json))) => {
            serde_json::from_str(&json).map_err(|e| format!("unreadable status: {e}"))
        }
        Ok(Ok(Err(e))) => Err(e.to_string()),
        Ok(Err(_)) => Err("the agent is stopping".into()),
        Err(_) => Err(format!(
            "the agent's loop did not answer within {HUB_TIMEOUT:?}"
        )),
    }
}

/// Ready when at least one instance serves and the sinks receive what is
/// emitted: `relayed` is how many records the egress handed its sinks and
/// for how long that count has not moved. `Ok` says why it is ready,
/// `Err` why not.
pub fn readiness(status: &Value, relayed: (u64, Duration)) -> Result<String, String> {
    let serving: Vec<&str> = status["instances"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| i["role"] == "serving")
        .filter_map(|i| i["color"].as_str())
        .collect();
    if serving.is_empty() {
        return Err("no instance is serving".into());
    }
    let emitted = status["emitted"].as_u64().unwrap_or(0);
    let (count, still) = relayed;
    let waiting = emitted.saturating_sub(count);
    if waiting > 0 && still >= STALLED {
        return Err(format!(
            "{waiting} emitted records have waited {still:.0?} for the sinks, which took none"
        ));
    }
    Ok(format!("{} serving", serving.join(" and ")))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn status(roles: [&str; 2], emitted: u64) -> Value {
        json!({
            "emitted": emitted,
            "instances": [
                {"color": "blue", "role": roles[0]},
                {"color": "green", "role": roles[1]},
            ],
        })
    }

    #[test]
    fn ready_needs_a_serving_instance() {
        let moving = (10, Duration::ZERO);
        assert_eq!(
            readiness(&status(["serving", "starting"], 10), moving),
            Ok("blue serving".into())
        );
        assert_eq!(
            readiness(&status(["starting", "starting"], 10), moving),
            Err("no instance is serving".into())
        );
        assert!(readiness(&status(["shadow", "serving"], 10), moving).is_ok());
    }

    #[test]
    fn ready_needs_the_sinks_to_take_what_is_emitted() {
        let serving = status(["serving", "serving"], 500);
        // Everything emitted reached the sinks, long ago: an idle graph.
        assert!(readiness(&serving, (500, Duration::from_secs(60))).is_ok());
        // Some waits, but the sinks took records moments ago.
        assert!(readiness(&serving, (400, Duration::from_secs(1))).is_ok());
        let stuck = readiness(&serving, (400, STALLED)).unwrap_err();
        assert!(
            stuck.starts_with("100 emitted records have waited"),
            "{stuck}"
        );
    }
}
