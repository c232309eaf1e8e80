//! The [`Source`] face of a Modbus device: drains the scans its I/O thread
//! finished and stamps them with the ingress time.

use super::plan::Reading;
use super::poller::{self, Config, Ends};
use crossbeam_channel::{Receiver, Sender};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use tandem_core::{BuildError, ChannelId, EventTime, Record, Seq, Source};

/// Scans that may wait for the ingress before the oldest is dropped.
const QUEUED_SCANS: usize = 4;

/// Longest time between two polls, so that a finished scan waits at most
/// this long for the ingress (shorter when the period is shorter).
const MAX_POLL_INTERVAL_NS: i64 = 20_000_000;

/// A source polling one Modbus device from its own I/O thread.
///
/// `poll` never blocks: it takes the scans that are ready, one record per
/// planned point each, all stamped with the ingress time `now`. Dropping the
/// source stops and joins the thread (which only ever waits in the tokio
/// runtime, so this is prompt).
#[derive(Debug)]
pub struct ModbusSource {
    /// The output channel of each reading of a scan.
    channels: Vec<ChannelId>,
    scans: Receiver<Vec<Reading>>,
    spare: Sender<Vec<Reading>>,
    errors: Arc<AtomicU64>,
    poll_interval_ns: i64,
    /// Dropped to stop the thread.
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl ModbusSource {
    /// Starts the I/O thread `name`; reading `i` of a scan goes to `channels[i]`.
    pub fn start(
        name: String,
        config: Config,
        channels: Vec<ChannelId>,
    ) -> Result<ModbusSource, BuildError> {
        if channels.len() != config.plan.len() {
            return Err(BuildError::new(format!(
                "`{name}`: {} output channels for {} points",
                channels.len(),
                config.plan.len()
            )));
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(|e| BuildError::new(format!("`{name}`: cannot start tokio: {e}")))?;
        let (scans_tx, scans) = crossbeam_channel::bounded(QUEUED_SCANS);
        let (spare, spare_rx) = crossbeam_channel::bounded(QUEUED_SCANS);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let errors = Arc::new(AtomicU64::new(0));
        let ends = Ends {
            scans: scans_tx,
            oldest: scans.clone(),
            spare: spare_rx,
            errors: Arc::clone(&errors),
        };
        let period_ns = i64::try_from(config.period.as_nanos()).unwrap_or(i64::MAX);
        let thread = std::thread::Builder::new()
            .name(format!("modbus {name}"))
            .spawn(move || {
                runtime.block_on(async move {
                    let scanning = tokio::spawn(poller::run(config, ends));
                    // Err when the source dropped `stop`; Ok never happens.
                    let _ = stopped.await;
                    scanning.abort();
                });
                // A connect may be resolving a host name on a blocking
                // thread; do not wait for it.
                runtime.shutdown_background();
            })
            .map_err(|e| BuildError::new(format!("`{name}`: cannot start a thread: {e}")))?;
        Ok(ModbusSource {
            channels,
            scans,
            spare,
            errors,
            poll_interval_ns: period_ns.clamp(1, MAX_POLL_INTERVAL_NS),
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Source for ModbusSource {
    fn poll(&mut self, now: EventTime, out: &mut Vec<Record>) -> Option<EventTime> {
        while let Ok(scan) = self.scans.try_recv() {
            out.extend(
                scan.iter()
                    .zip(&self.channels)
                    .map(|(reading, &channel)| Record {
                        seq: Seq::ZERO,
                        time: now,
                        channel,
                        quality: reading.quality,
                        value: reading.value,
                    }),
            );
            let _ = self.spare.try_send(scan);
        }
        Some(now.add_nanos(self.poll_interval_ns))
    }

    fn errors(&self) -> u64 {
        // Relaxed: the count is a statistic; the scans it goes with were
        // handed over through the channel, which orders them.
        self.errors.load(Ordering::Relaxed)
    }
}

impl Drop for ModbusSource {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
