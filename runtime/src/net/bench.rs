//! `baselines.raw_quinn`: how many records per second one quinn stream
//! carries with our frames, with nothing of ours around it but the codec.
//! The instance sends `Output` batches, the agent decodes them.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use tandem_core::ha::ToAgent;
use tandem_core::{ChannelId, EventTime, Record, Seq};
use thiserror::Error;

use super::{CaError, Client, EndpointError, LinkError, Server, SiteCa, TransportOptions};

/// Result of one [`raw_quinn_records_per_sec`] run.
#[derive(Clone, Copy, Debug)]
pub struct RawQuinnRun {
    /// Records received and decoded.
    pub records: u64,
    /// From the first frame sent to the last frame decoded.
    pub elapsed: Duration,
}

impl RawQuinnRun {
    /// Records per second.
    pub fn records_per_sec(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Why the baseline run failed.
#[derive(Debug, Error)]
pub enum BenchError {
    /// See [`CaError`].
    #[error(transparent)]
    Ca(#[from] CaError),
    /// See [`EndpointError`].
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    /// See [`LinkError`].
    #[error(transparent)]
    Link(#[from] LinkError),
    /// The runtime could not start.
    #[error("cannot start a tokio runtime: {0}")]
    Runtime(std::io::Error),
    /// The receiver stopped early.
    #[error("receiver got {got} records of {want}")]
    Short {
        /// Records received.
        got: u64,
        /// Records sent.
        want: u64,
    },
}

/// Sends `batches` `Output` frames of `batch` records over one loopback quinn
/// stream (mutual TLS, in-memory CA) and decodes them on the other side.
/// Blocking: runs its own current-thread tokio runtime.
pub fn raw_quinn_records_per_sec(batches: usize, batch: usize) -> Result<RawQuinnRun, BenchError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(BenchError::Runtime)?;
    rt.block_on(run(batches, batch))
}

async fn run(batches: usize, batch: usize) -> Result<RawQuinnRun, BenchError> {
    let ca = SiteCa::generate()?;
    let trust = ca.trust()?;
    let local = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let server = Server::bind(
        local,
        &ca.issue_identity("agent")?,
        &trust,
        TransportOptions::for_peer(local),
    )?;
    let addr = server.local_addr().map_err(|source| EndpointError::Bind {
        addr: local,
        source,
    })?;
    let client = Client::new(
        local,
        &ca.issue_identity("instance")?,
        &trust,
        TransportOptions::for_peer(local),
    )?;
    let want = (batches * batch) as u64;

    let receiver = async {
        let Some(pending) = server.accept().await else {
            return Ok::<u64, LinkError>(0);
        };
        let mut link = pending.establish().await?;
        let mut got = 0u64;
        while let Some(frame) = link.reader.next().await? {
            if let ToAgent::Output { records, .. } = frame {
                got += records.len() as u64;
            }
        }
        Ok(got)
    };
    let sender = async {
        let mut link = client.connect(addr, "agent").await?;
        let mut records = vec![Record::new(Seq(0), EventTime(0), ChannelId(0), 0.0); batch];
        let start = Instant::now();
        let mut seq = 0u64;
        for _ in 0..batches {
            for r in &mut records {
                seq += 1;
                r.seq = Seq(seq);
                r.value = seq as f64;
            }
            link.writer.send_batch(Seq(seq), &records).await?;
        }
        link.writer.finish()?;
        Ok::<(Instant, quinn::Connection), LinkError>((start, link.connection))
    };
    let (got, sent) = tokio::join!(receiver, sender);
    let (start, _connection) = sent?;
    let got = got?;
    let elapsed = start.elapsed();
    if got != want {
        return Err(BenchError::Short { got, want });
    }
    Ok(RawQuinnRun {
        records: got,
        elapsed,
    })
}
