//! How an instance's vertex figures reach the agent: each instance answers
//! on a Unix socket of its own, `DIR/metrics/<colour>.sock`, with one JSON
//! object of samples ([`super::figures::samples_json`]) per connection, and
//! the agent's collector asks both once a second, off the agent's loop.
//!
//! Why a socket rather than a file each instance rewrites (write, rename):
//! - nothing is written to disk while the graph runs. Gateways keep their
//!   state directory on flash; a file replaced every second, twice, is
//!   172,800 writes a day (each a rename and a journal commit) for figures
//!   no one may be looking at. Here an answer is only computed when asked.
//! - an instance that stops answering (stopped, hung, gone) shows as such:
//!   the connection is refused or times out, where a file would go on
//!   showing its last figures until someone compared its time stamp.
//! - the QUIC link between agent and instance is left as it is: its
//!   protocol is about to be reworked, and figures have no place in the
//!   records' flow control.
//!
//! The socket is mode 0600 in a 0700 directory of the state directory, like
//! the control socket; it only ever says what it was asked.

use std::io::Write as _;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tandem_core::ha::Color;
use tokio::io::AsyncReadExt as _;

use super::figures::{parse_samples, samples_json};
use super::live::{self, NodeSample};

/// The largest answer the agent reads.
const MAX_ANSWER: u64 = 4 << 20;
/// How long an instance may take to answer before the agent gives up on it.
pub const ANSWER_TIMEOUT: Duration = Duration::from_millis(500);

/// Where `color`'s instance answers, in the state directory `root`.
pub fn socket_path(root: &Path, color: Color) -> PathBuf {
    root.join("metrics").join(format!("{}.sock", color.name()))
}

/// Starts answering at `path` with the samples of this process's vertices,
/// on a thread of its own. An instance that cannot does without: the agent
/// then shows no vertex figures for it.
pub fn serve_vertices(path: PathBuf) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        crate::private::create_dir(dir)?;
    }
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
    crate::private::restrict(&path)?;
    std::thread::Builder::new()
        .name("tandem-metrics".into())
        .spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let samples: Vec<NodeSample> = live::nodes()
                    .iter()
                    .filter(|n| n.role == tandem_core::Role::Vertex)
                    .map(|n| n.sample())
                    .collect();
                // A reader that does not read is left behind after a second.
                let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
                let _ = stream.write_all(samples_json(&samples).as_bytes());
            }
        })?;
    Ok(())
}

/// Asks the instance answering at `path` for its samples; `None` when it
/// does not answer within [`ANSWER_TIMEOUT`] or answers something else.
pub async fn ask(path: &Path) -> Option<Vec<NodeSample>> {
    let asking = async {
        let stream = tokio::net::UnixStream::connect(path).await.ok()?;
        let mut text = String::new();
        stream
            .take(MAX_ANSWER)
            .read_to_string(&mut text)
            .await
            .ok()?;
        parse_samples(&text)
    };
    tokio::time::timeout(ANSWER_TIMEOUT, asking).await.ok()?
}
