//! The controller's web page: the fleet (each gateway's version, its
//! instances' roles, divergence) and the rollouts (waves and progress).
//! Plain server-rendered HTML; a few lines of script fetch `/fragment`
//! every second and swap it in. `/api/fleet` is the same as JSON.
//!
//! A minimal HTTP/1.1 server: GET only, one request per connection, a
//! bounded request head read within a deadline. Keep it on loopback (or
//! behind a reverse proxy that authenticates): it has no login.

use std::fmt::Write as _;
use std::future::Future;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// The longest request head read.
const MAX_HEAD: usize = 8 << 10;

/// Serves the page until the runtime stops; `snapshot` gives the fleet's JSON.
pub async fn serve<F, Fut>(listener: TcpListener, snapshot: F)
where
    F: Fn() -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Value> + Send,
{
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let snapshot = snapshot.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(5), answer(stream, snapshot)).await;
        });
    }
}

async fn answer<F, Fut>(mut stream: TcpStream, snapshot: F) -> std::io::Result<()>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Value>,
{
    let mut head = Vec::new();
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).await?;
        if n == 0 || head.len() > MAX_HEAD {
            return Ok(());
        }
        head.extend_from_slice(chunk.get(..n).unwrap_or_default());
    }
    let text = String::from_utf8_lossy(&head);
    let mut first = text.lines().next().unwrap_or("").split(' ');
    let (method, target) = (first.next().unwrap_or(""), first.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (status, kind, body) = match (method, path) {
        ("GET", "/") => (
            "200 OK",
            "text/html; charset=utf-8",
            page(&snapshot().await),
        ),
        ("GET", "/fragment") => (
            "200 OK",
            "text/html; charset=utf-8",
            fragment(&snapshot().await),
        ),
        ("GET", "/api/fleet") => ("200 OK", "application/json", snapshot().await.to_string()),
        ("GET", _) => ("404 Not Found", "text/plain", "not found\n".to_owned()),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "only GET\n".to_owned(),
        ),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// Escapes text for HTML.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "–".to_owned(),
        Value::String(s) => escape(s),
        other => escape(&other.to_string()),
    }
}

const STYLE: &str = "body{font-family:sans-serif;margin:1.5em;color:#1b2430;background:#f7f9fb}\
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.4em}\
table{border-collapse:collapse;background:#fff;margin:.4em 0}\
td,th{border:1px solid #cdd5df;padding:.25em .6em;text-align:left;font-size:.9em}\
th{background:#e6ecf2}.online{color:#17803d}.offline{color:#a33}\
.succeeded{background:#d8f3dc}.failed{background:#f8d7da}.skipped{background:#eee;color:#777}\
.installing,.sent{background:#fff3cd}.halted{color:#a33;font-weight:bold}\
.complete{color:#17803d;font-weight:bold}.running{color:#b58105;font-weight:bold}\
.bar{display:inline-block;width:120px;height:10px;background:#e6ecf2;vertical-align:middle}\
.bar i{display:block;height:10px;background:#2f9e44}pre{white-space:pre-wrap}";

/// The whole page.
pub fn page(snapshot: &Value) -> String {
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>tandem fleet</title>\
         <style>{STYLE}</style></head><body><h1>tandem fleet</h1><div id=\"fleet\">{}</div>\
         <script>setInterval(function(){{fetch('/fragment').then(function(r){{return r.text()}})\
         .then(function(t){{document.getElementById('fleet').innerHTML=t}}).catch(function(){{}})}},1000)\
         </script></body></html>",
        fragment(snapshot)
    )
}

/// What the page shows, without its frame.
pub fn fragment(snapshot: &Value) -> String {
    let mut out = String::new();
    let gateways = snapshot["gateways"].as_array().cloned().unwrap_or_default();
    let online = gateways.iter().filter(|g| g["online"] == true).count();
    let _ = write!(
        out,
        "<h2>Gateways</h2><p>{} enrolled, {online} online</p><table><tr><th>gateway</th>\
         <th>track</th><th>category</th><th>link</th><th>bundle</th><th>runtime</th>\
         <th>graph</th><th>instances</th><th>divergence</th><th>upgrade</th>\
         <th>last outcome</th></tr>",
        gateways.len()
    );
    for g in &gateways {
        let link = if g["online"] == true {
            "<span class=\"online\">online</span>"
        } else {
            "<span class=\"offline\">offline</span>"
        };
        let version = match (&g["version"]["name"], &g["version"]["version"]) {
            (Value::String(n), Value::String(v)) => escape(&format!("{n} {v}")),
            _ => "–".to_owned(),
        };
        let instances: Vec<String> = g["instances"]
            .as_array()
            .map(|all| {
                all.iter()
                    .map(|i| {
                        format!(
                            "{} {} {}",
                            text(&i["color"]),
                            text(&i["role"]),
                            text(&i["version"])
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let last = g["history"]
            .as_array()
            .and_then(|h| h.first())
            .map(|e| {
                let via = if e["via"] == "local" {
                    " (local install)"
                } else {
                    ""
                };
                format!(
                    "{}: {}{}{}",
                    text(&e["bundle"]),
                    text(&e["result"]),
                    e["reason"]
                        .as_str()
                        .map(|r| format!(": {}", escape(r)))
                        .unwrap_or_default(),
                    via
                )
            })
            .unwrap_or_else(|| "–".to_owned());
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{link}</td><td>{version}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{last}</td></tr>",
            text(&g["id"]),
            text(&g["track"]),
            text(&g["category"]),
            text(&g["runtime"]),
            text(&g["graph"]),
            instances.join("<br>"),
            text(&g["divergence"]),
            text(&g["upgrade"]),
        );
    }
    out.push_str("</table>");
    let rollouts = snapshot["rollouts"].as_array().cloned().unwrap_or_default();
    out.push_str("<h2>Rollouts</h2>");
    if rollouts.is_empty() {
        out.push_str("<p>none yet: <code>tandem ctl rollout BUNDLE --track T</code></p>");
    }
    for r in &rollouts {
        let state = r["state"].as_str().unwrap_or("?");
        let _ = write!(
            out,
            "<h3>rollout {}: {} {} to track {}: <span class=\"{}\">{}</span></h3>",
            text(&r["id"]),
            text(&r["bundle"]["name"]),
            text(&r["bundle"]["version"]),
            text(&r["track"]),
            escape(state),
            escape(state)
        );
        if let Some(reason) = r["reason"].as_str() {
            let _ = write!(out, "<p class=\"halted\">{}</p>", escape(reason));
        }
        out.push_str("<table><tr><th>wave</th><th>progress</th><th>gateways</th></tr>");
        for w in r["waves"].as_array().cloned().unwrap_or_default() {
            let done = w["succeeded"].as_u64().unwrap_or(0);
            let size = w["size"].as_u64().unwrap_or(0).max(1);
            let width = 100 * done / size;
            let cells: Vec<String> = w["gateways"]
                .as_array()
                .map(|all| {
                    all.iter()
                        .map(|t| {
                            let state = t["state"].as_str().unwrap_or("");
                            let reason = t["reason"]
                                .as_str()
                                .map(|r| format!(": {}", escape(r)))
                                .unwrap_or_default();
                            format!(
                                "<span class=\"{}\">{} {}{reason}</span>",
                                escape(state),
                                text(&t["id"]),
                                escape(state)
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            let started = if w["started"] == true {
                ""
            } else {
                " (not started)"
            };
            let _ = write!(
                out,
                "<tr><td>wave {}{started}</td><td><span class=\"bar\"><i style=\"width:{width}%\"></i>\
                 </span> {done}/{} succeeded (needs {})</td><td>{}</td></tr>",
                text(&w["wave"]),
                text(&w["size"]),
                text(&w["needs"]),
                cells.join("<br>")
            );
        }
        out.push_str("</table>");
    }
    out.push_str("<h2>Log</h2><pre>");
    for line in snapshot["log"].as_array().cloned().unwrap_or_default() {
        let _ = writeln!(out, "{}", text(&line["line"]));
    }
    out.push_str("</pre>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_page_shows_gateways_and_waves_escaped() {
        let snapshot = json!({
            "gateways": [{"id": "gw-01", "track": "stable", "category": "pi4 [inv]",
                          "online": true, "version": {"name": "home", "version": "2.0.0"},
                          "instances": [{"color": "blue", "role": "serving", "version": "abcd1234"}],
                          "divergence": 0, "upgrade": "idle",
                          "history": [{"bundle": "home 2.0.0", "result": "promoted", "via": "local"}]}],
            "rollouts": [{"id": 1, "track": "stable", "state": "halted",
                          "reason": "1 gateway(s) failed: <script>",
                          "bundle": {"name": "home", "version": "2.0.0"},
                          "waves": [{"wave": 0, "succeeded": 1, "size": 2, "needs": 2,
                                     "started": true,
                                     "gateways": [{"id": "gw-01", "state": "succeeded"}]}]}],
            "log": [{"line": "a & b"}],
        });
        let html = page(&snapshot);
        assert!(html.contains("gw-01") && html.contains("home 2.0.0"));
        assert!(html.contains("1/2 succeeded"));
        assert!(html.contains("(local install)"));
        assert!(html.contains("&lt;script&gt;") && !html.contains("failed: <script>"));
        assert!(html.contains("a &amp; b"));
    }
}
