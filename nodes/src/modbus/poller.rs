//! The Modbus I/O thread of one source.
//!
//! Each source owns one thread running a tokio current-thread runtime. Every
//! `period` it runs one scan: the plan's reads in order, each under
//! `timeout`, on one connection that is opened when needed and dropped after
//! any timeout or transport error (a late answer must never be taken for the
//! answer to the next request). Failed connects back off exponentially. A
//! finished scan goes to the source through a bounded channel; when the
//! source has not taken the older scans, the oldest is dropped so that what
//! it takes is fresh. The thread ends when the source drops its end of the
//! stop channel.

use super::plan::{Outcome, Reading, ScanPlan};
use crossbeam_channel::{Receiver, Sender, TrySendError};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tandem_firmware::modbus::{FunctionCode, ReadRequest};
use tokio::time::{timeout, Instant, MissedTickBehavior};
use tokio_modbus::client::{Client, Context};
use tokio_modbus::{Request, Response, Slave};

/// First delay after a failed connect.
pub const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest delay between connect attempts.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// How to reach the device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transport {
    /// Modbus TCP to `host:port`.
    Tcp {
        /// `host:port`, resolved at each connect.
        address: String,
    },
    /// Modbus RTU on a serial port, 8 data bits, no parity, one stop bit.
    #[cfg(feature = "rtu")]
    Rtu {
        /// The serial device, such as `/dev/ttyUSB0`.
        path: String,
        /// Bits per second.
        baud: u32,
    },
}

impl Transport {
    async fn connect(&self, slave: Slave) -> io::Result<Context> {
        match self {
            Transport::Tcp { address } => {
                let stream = tokio::net::TcpStream::connect(address.as_str()).await?;
                stream.set_nodelay(true)?;
                Ok(tokio_modbus::client::tcp::attach_slave(stream, slave))
            }
            #[cfg(feature = "rtu")]
            Transport::Rtu { path, baud } => {
                use tokio_serial::SerialPortBuilderExt;
                let port = tokio_serial::new(path.as_str(), *baud)
                    .open_native_async()
                    .map_err(io::Error::from)?;
                Ok(tokio_modbus::client::rtu::attach_slave(port, slave))
            }
        }
    }
}

/// What the I/O thread needs to know.
#[derive(Debug)]
pub struct Config {
    /// How to reach the device.
    pub transport: Transport,
    /// Modbus unit (slave) id.
    pub unit: u8,
    /// Time between scans.
    pub period: Duration,
    /// Longest wait for a connect or an answer.
    pub timeout: Duration,
    /// What a scan reads.
    pub plan: ScanPlan,
}

/// The I/O thread's ends of the channels to its source.
#[derive(Debug)]
pub struct Ends {
    /// Finished scans, one reading per planned point.
    pub scans: Sender<Vec<Reading>>,
    /// The same channel's receiving end, to drop the oldest scan when full.
    pub oldest: Receiver<Vec<Reading>>,
    /// Buffers the source is done with, to reuse.
    pub spare: Receiver<Vec<Reading>>,
    /// Failed connects and requests, counted.
    pub errors: Arc<AtomicU64>,
}

/// Connect attempts spaced by a delay that doubles with each failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    failures: u32,
    next: Option<Instant>,
}

impl Backoff {
    /// No failure yet: connect at once.
    pub fn new() -> Backoff {
        Backoff {
            failures: 0,
            next: None,
        }
    }

    /// True when a connect may be tried at `now`.
    pub fn ready(&self, now: Instant) -> bool {
        self.next.is_none_or(|next| now >= next)
    }

    /// The delay after `failures` failures in a row.
    pub fn delay(failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(16);
        BACKOFF_MIN.saturating_mul(1 << doublings).min(BACKOFF_MAX)
    }

    /// A connect or request failed at `now`.
    pub fn failed(&mut self, now: Instant) {
        self.failures = self.failures.saturating_add(1);
        self.next = Some(now + Backoff::delay(self.failures));
    }

    /// The device answered.
    pub fn answered(&mut self) {
        *self = Backoff::new();
    }
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff::new()
    }
}

/// Runs scans every `config.period` until the future is dropped.
pub async fn run(config: Config, ends: Ends) {
    let mut ticks = tokio::time::interval(config.period);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut link: Option<Context> = None;
    let mut backoff = Backoff::new();
    let slave = Slave(config.unit);
    loop {
        ticks.tick().await;
        let mut readings = ends.spare.try_recv().unwrap_or_default();
        readings.clear();
        readings.resize(config.plan.len(), Reading::NOT_READ);
        for (index, request) in config.plan.requests().iter().enumerate() {
            if link.is_none() && backoff.ready(Instant::now()) {
                match timeout(config.timeout, config.transport.connect(slave)).await {
                    Ok(Ok(context)) => link = Some(context),
                    Ok(Err(_)) | Err(_) => {
                        ends.errors.fetch_add(1, Ordering::Relaxed);
                        backoff.failed(Instant::now());
                    }
                }
            }
            let Some(context) = link.as_mut() else {
                config.plan.fill(index, Outcome::Link, &mut readings);
                continue;
            };
            let answer = timeout(config.timeout, context.call(request_of(request))).await;
            let words = match answer {
                Ok(Ok(Ok(Response::ReadInputRegisters(words))))
                | Ok(Ok(Ok(Response::ReadHoldingRegisters(words)))) => Some(words),
                Ok(Ok(Ok(_))) | Ok(Ok(Err(_))) => None,
                Ok(Err(_)) | Err(_) => {
                    // Timeout, transport or framing error: reconnect.
                    ends.errors.fetch_add(1, Ordering::Relaxed);
                    backoff.failed(Instant::now());
                    link = None;
                    config.plan.fill(index, Outcome::Link, &mut readings);
                    continue;
                }
            };
            backoff.answered();
            let complete = match &words {
                Some(words) => config
                    .plan
                    .fill(index, Outcome::Registers(words), &mut readings),
                None => {
                    config.plan.fill(index, Outcome::Fault, &mut readings);
                    false
                }
            };
            if !complete {
                ends.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        if !deliver(&ends, readings) {
            return;
        }
    }
}

/// Hands a scan to the source, dropping the oldest one if it has not kept
/// up. False when the source is gone.
fn deliver(ends: &Ends, mut readings: Vec<Reading>) -> bool {
    loop {
        match ends.scans.try_send(readings) {
            Ok(()) => return true,
            Err(TrySendError::Disconnected(_)) => return false,
            Err(TrySendError::Full(back)) => {
                readings = back;
                let _ = ends.oldest.try_recv();
            }
        }
    }
}

fn request_of(read: &ReadRequest) -> Request<'static> {
    match read.function {
        FunctionCode::ReadHolding => Request::ReadHoldingRegisters(read.start, read.count),
        FunctionCode::ReadInput => Request::ReadInputRegisters(read.start, read.count),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_the_minimum_up_to_the_maximum() {
        let delays: Vec<u64> = (1..=12)
            .map(|n| Backoff::delay(n).as_millis() as u64)
            .collect();
        assert_eq!(
            delays,
            [100, 200, 400, 800, 1600, 3200, 6400, 12_800, 25_600, 30_000, 30_000, 30_000]
        );
        assert_eq!(Backoff::delay(u32::MAX), BACKOFF_MAX);
    }

    #[test]
    fn backoff_waits_after_a_failure_and_resets_on_an_answer() {
        let t0 = Instant::now();
        let mut b = Backoff::new();
        assert!(b.ready(t0));
        b.failed(t0);
        assert!(!b.ready(t0 + Duration::from_millis(99)));
        assert!(b.ready(t0 + Duration::from_millis(100)));
        b.failed(t0);
        assert!(!b.ready(t0 + Duration::from_millis(199)));
        b.answered();
        assert!(b.ready(t0));
    }
}
