//! The Modbus sources against an in-process tokio-modbus TCP server on
//! loopback. Every wait is bounded and ends as soon as what it waits for
//! has happened; nothing sleeps to synchronise.
#![allow(clippy::unwrap_used)]

use super::{DEYE_BATTERY, SDM630};
use crate::io::testing::{names, source, text};
use std::collections::BTreeSet;
use std::future::{ready, Ready};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tandem_core::{ChannelTable, EventTime, ParamValue, Quality, Record, Source};
use tokio_modbus::server::tcp::{accept_tcp_connection, Server};
use tokio_modbus::server::Service;
use tokio_modbus::{ExceptionCode, Request, Response};

/// How the simulated device answers.
const ANSWER: u8 = 0;
const EXCEPTION: u8 = 1;
const SILENT: u8 = 2;
const SHORT: u8 = 3;

/// A device's registers and behaviour, shared with its server.
#[derive(Debug, Default)]
struct Device {
    input: Mutex<Vec<u16>>,
    holding: Mutex<Vec<u16>>,
    mode: AtomicU8,
    connections: AtomicU64,
    /// Connections being served now.
    open: AtomicU64,
    /// (function, start, count) of every read seen.
    reads: Mutex<BTreeSet<(u8, u16, u16)>>,
}

impl Device {
    fn new() -> Arc<Device> {
        let device = Device::default();
        *device.input.lock().unwrap() = vec![0; 0x200];
        *device.holding.lock().unwrap() = vec![0; 0x300];
        Arc::new(device)
    }

    fn set_f32(&self, address: u16, value: f32) {
        let bits = value.to_bits();
        let mut regs = self.input.lock().unwrap();
        regs[usize::from(address)] = (bits >> 16) as u16;
        regs[usize::from(address) + 1] = bits as u16;
    }

    fn set_mode(&self, mode: u8) {
        self.mode.store(mode, Ordering::SeqCst);
    }

    fn read(
        &self,
        function: u8,
        start: u16,
        count: u16,
    ) -> Result<Option<Response>, ExceptionCode> {
        self.reads.lock().unwrap().insert((function, start, count));
        let regs = if function == 4 {
            &self.input
        } else {
            &self.holding
        };
        let regs = regs.lock().unwrap();
        let from = usize::from(start);
        let mut words = regs
            .get(from..from + usize::from(count))
            .ok_or(ExceptionCode::IllegalDataAddress)?
            .to_vec();
        match self.mode.load(Ordering::SeqCst) {
            EXCEPTION => Err(ExceptionCode::IllegalDataAddress),
            SILENT => Ok(None),
            SHORT => {
                words.truncate(1);
                Ok(Some(response(function, words)))
            }
            _ => Ok(Some(response(function, words))),
        }
    }
}

fn response(function: u8, words: Vec<u16>) -> Response {
    if function == 4 {
        Response::ReadInputRegisters(words)
    } else {
        Response::ReadHoldingRegisters(words)
    }
}

struct Handler(Arc<Device>);

impl Handler {
    fn new(device: &Arc<Device>) -> Handler {
        device.open.fetch_add(1, Ordering::SeqCst);
        Handler(Arc::clone(device))
    }
}

impl Drop for Handler {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Service for Handler {
    type Request = Request<'static>;
    type Response = Option<Response>;
    type Exception = ExceptionCode;
    type Future = Ready<Result<Option<Response>, ExceptionCode>>;

    fn call(&self, req: Request<'static>) -> Self::Future {
        ready(match req {
            Request::ReadInputRegisters(start, count) => self.0.read(4, start, count),
            Request::ReadHoldingRegisters(start, count) => self.0.read(3, start, count),
            _ => Err(ExceptionCode::IllegalFunction),
        })
    }
}

/// A Modbus TCP server for `device` on its own thread; stops when dropped.
struct TestServer {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestServer {
    /// Serves on `addr` (port 0 for a free one); returns the bound address.
    fn start(device: &Arc<Device>, addr: SocketAddr) -> (TestServer, SocketAddr) {
        let listener = std::net::TcpListener::bind(addr).unwrap();
        listener.set_nonblocking(true).unwrap();
        let bound = listener.local_addr().unwrap();
        let device = Arc::clone(device);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let server = Server::new(listener);
                let serving = async move {
                    let on_connected = move |stream, socket_addr| {
                        let device = Arc::clone(&device);
                        device.connections.fetch_add(1, Ordering::SeqCst);
                        async move {
                            accept_tcp_connection(stream, socket_addr, |_| {
                                Ok(Some(Handler::new(&device)))
                            })
                        }
                    };
                    let _ = server.serve(&on_connected, |_err| {}).await;
                };
                let task = tokio::spawn(serving);
                let _ = stopped.await;
                task.abort();
            });
            // Dropping the runtime drops every connection task.
            drop(runtime);
        });
        (
            TestServer {
                stop: Some(stop),
                thread: Some(thread),
            },
            bound,
        )
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }
}

/// An SDM630 reading 230.5 V on L1, 1234.5 W in total and 5678.25 kWh imported.
fn sdm630() -> Arc<Device> {
    let device = Device::new();
    device.set_f32(0x0000, 230.5);
    device.set_f32(0x0002, 231.0);
    device.set_f32(0x0004, 229.0);
    device.set_f32(0x000C, 400.5);
    device.set_f32(0x0034, 1234.5);
    device.set_f32(0x0046, 50.0);
    device.set_f32(0x0048, 5678.25);
    device
}

fn sdm630_source(
    addr: SocketAddr,
    extra: &[(&str, ParamValue)],
) -> (Box<dyn Source>, Arc<ChannelTable>) {
    let mut params = vec![
        ("address", text(&addr.to_string())),
        ("period", ParamValue::Duration(20_000_000)),
        ("timeout", ParamValue::Duration(2_000_000_000)),
    ];
    // Later entries win: `extra` may shorten the timeout.
    params.extend(extra.iter().cloned());
    source("meter", &SDM630.kind, &params).unwrap()
}

/// Polls `src` until `done` holds for the records of one poll, or fails
/// after `limit`. Returns the records of that poll.
fn poll_until(
    src: &mut dyn Source,
    limit: Duration,
    what: &str,
    mut done: impl FnMut(&[Record], u64) -> bool,
) -> Vec<Record> {
    let start = Instant::now();
    let mut out = Vec::new();
    let mut now = EventTime::from_secs(1_767_225_600);
    loop {
        out.clear();
        let next = src.poll(now, &mut out).unwrap();
        assert!(next > now);
        if !out.is_empty() && done(&out, src.errors()) {
            return out;
        }
        assert!(start.elapsed() < limit, "gave up waiting for {what}");
        now = next;
        std::thread::yield_now();
    }
}

fn value(table: &ChannelTable, records: &[Record], name: &str) -> (f64, Quality) {
    let id = table.get(name).unwrap();
    let r = records.iter().rev().find(|r| r.channel == id).unwrap();
    (r.value, r.quality)
}

const LIMIT: Duration = Duration::from_secs(20);

#[test]
fn an_sdm630_is_read_with_coalesced_requests() {
    let device = sdm630();
    let (_server, addr) = TestServer::start(&device, "127.0.0.1:0".parse().unwrap());
    let (mut src, table) = sdm630_source(addr, &[]);
    let out = poll_until(src.as_mut(), LIMIT, "a good scan", |out, _| {
        out.iter().all(|r| r.quality.is_good())
    });
    assert_eq!(out.len(), 17);
    assert_eq!(
        value(&table, &out, "meter.voltage_l1"),
        (230.5, Quality::GOOD)
    );
    assert_eq!(
        value(&table, &out, "meter.voltage_l3"),
        (229.0, Quality::GOOD)
    );
    assert_eq!(
        value(&table, &out, "meter.power_l1"),
        (400.5, Quality::GOOD)
    );
    assert_eq!(
        value(&table, &out, "meter.power_total"),
        (1234.5, Quality::GOOD)
    );
    assert_eq!(
        value(&table, &out, "meter.frequency"),
        (50.0, Quality::GOOD)
    );
    assert_eq!(
        value(&table, &out, "meter.import_energy"),
        (5678.25, Quality::GOOD)
    );
    assert_eq!(
        value(&table, &out, "meter.export_energy"),
        (0.0, Quality::GOOD)
    );
    assert_eq!(table.unit(table.get("meter.import_energy").unwrap()), "kWh");
    assert_eq!(src.errors(), 0);
    // Five reads cover the 17 points; every record of a poll has its time.
    let reads: Vec<_> = device.reads.lock().unwrap().iter().copied().collect();
    assert_eq!(
        reads,
        [
            (4, 0x00, 18),
            (4, 0x1E, 6),
            (4, 0x34, 2),
            (4, 0x46, 6),
            (4, 0x156, 2)
        ]
    );
    assert!(out.iter().all(|r| r.time == out[0].time));
    // Dropping the source stops its thread, which closes the connection.
    drop(src);
    let start = Instant::now();
    while device.open.load(Ordering::SeqCst) > 0 {
        assert!(start.elapsed() < LIMIT, "the connection stayed open");
        std::thread::yield_now();
    }
}

#[test]
fn a_subset_of_points_reads_and_emits_only_those() {
    let device = sdm630();
    let (_server, addr) = TestServer::start(&device, "127.0.0.1:0".parse().unwrap());
    let subset = names(&["import_energy", "voltage_l1"]);
    let (mut src, table) = sdm630_source(addr, &[("points", subset)]);
    let out = poll_until(src.as_mut(), LIMIT, "a scan", |_, _| true);
    assert_eq!(out.len(), 2);
    assert_eq!(
        value(&table, &out, "meter.voltage_l1"),
        (230.5, Quality::GOOD)
    );
    assert_eq!(
        value(&table, &out, "meter.import_energy"),
        (5678.25, Quality::GOOD)
    );
    let reads: Vec<_> = device.reads.lock().unwrap().iter().copied().collect();
    assert_eq!(reads, [(4, 0x00, 2), (4, 0x48, 2)]);
}

#[test]
fn exceptions_are_device_faults_counted_and_polling_goes_on() {
    let device = sdm630();
    device.set_mode(EXCEPTION);
    let (_server, addr) = TestServer::start(&device, "127.0.0.1:0".parse().unwrap());
    let (mut src, table) = sdm630_source(addr, &[]);
    let out = poll_until(src.as_mut(), LIMIT, "a faulted scan", |_, _| true);
    assert_eq!(out.len(), 17);
    assert!(out
        .iter()
        .all(|r| r.quality == Quality::DEVICE_FAULT && r.value.is_nan()));
    // One error per failed request, five requests per scan.
    assert!(src.errors() >= 5);
    // An exception is an answer: the connection stays up.
    let connections = device.connections.load(Ordering::SeqCst);
    assert_eq!(connections, 1);
    device.set_mode(ANSWER);
    let out = poll_until(src.as_mut(), LIMIT, "a good scan", |out, _| {
        out.iter().all(|r| r.quality.is_good())
    });
    assert_eq!(
        value(&table, &out, "meter.voltage_l1"),
        (230.5, Quality::GOOD)
    );
    assert_eq!(device.connections.load(Ordering::SeqCst), 1);
}

#[test]
fn short_responses_are_device_faults_not_panics() {
    let device = Device::new();
    {
        let mut holding = device.holding.lock().unwrap();
        holding[587] = 5210; // 52.10 V
        holding[588] = 87; // 87 %
    }
    device.set_mode(SHORT);
    let (_server, addr) = TestServer::start(&device, "127.0.0.1:0".parse().unwrap());
    let params = [
        ("address", text(&addr.to_string())),
        ("period", ParamValue::Duration(20_000_000)),
    ];
    let (mut src, table) = source("battery", &DEYE_BATTERY.kind, &params).unwrap();
    let out = poll_until(src.as_mut(), LIMIT, "a faulted scan", |_, _| true);
    // Reads 586..589 (3 registers) and 590..592 (2) each get 1 register.
    assert_eq!(out.len(), 5);
    assert!(out.iter().all(|r| r.quality == Quality::DEVICE_FAULT));
    assert!(src.errors() >= 2);
    device.set_mode(ANSWER);
    let out = poll_until(src.as_mut(), LIMIT, "a good scan", |out, _| {
        out.iter().all(|r| r.quality.is_good())
    });
    assert_eq!(
        value(&table, &out, "battery.voltage"),
        (5210.0 * 0.01, Quality::GOOD)
    );
    assert_eq!(value(&table, &out, "battery.soc"), (87.0, Quality::GOOD));
    assert_eq!(
        value(&table, &out, "battery.temperature"),
        (-100.0, Quality::GOOD)
    );
}

#[test]
fn a_silent_device_is_a_comm_error_after_the_timeout_then_recovers() {
    let device = sdm630();
    let (_server, addr) = TestServer::start(&device, "127.0.0.1:0".parse().unwrap());
    let timeout = ("timeout", ParamValue::Duration(200_000_000));
    let (mut src, table) = sdm630_source(addr, &[timeout]);
    poll_until(src.as_mut(), LIMIT, "a good scan", |out, _| {
        out.iter().all(|r| r.quality.is_good())
    });
    device.set_mode(SILENT);
    let asked = Instant::now();
    let out = poll_until(src.as_mut(), LIMIT, "a comm error", |out, _| {
        out.iter().all(|r| r.quality == Quality::COMM_ERROR)
    });
    // Not before the 200 ms timeout (less a request sent just before the
    // device fell silent).
    assert!(asked.elapsed() >= Duration::from_millis(150));
    assert!(out.iter().all(|r| r.value.is_nan()));
    assert!(src.errors() >= 1);
    let errors = src.errors();
    device.set_mode(ANSWER);
    let out = poll_until(src.as_mut(), LIMIT, "recovery", |out, _| {
        out.iter().all(|r| r.quality.is_good())
    });
    assert_eq!(
        value(&table, &out, "meter.power_total"),
        (1234.5, Quality::GOOD)
    );
    assert!(src.errors() >= errors);
    // The link was dropped after the timeout and opened again.
    assert!(device.connections.load(Ordering::SeqCst) >= 2);
}

#[test]
fn a_server_that_goes_away_is_reconnected_when_it_comes_back() {
    let device = sdm630();
    let (server, addr) = TestServer::start(&device, "127.0.0.1:0".parse().unwrap());
    let (mut src, table) = sdm630_source(addr, &[]);
    poll_until(src.as_mut(), LIMIT, "a good scan", |out, _| {
        out.iter().all(|r| r.quality.is_good())
    });
    drop(server);
    let out = poll_until(src.as_mut(), LIMIT, "comm errors", |out, errors| {
        errors >= 2 && out.iter().all(|r| r.quality == Quality::COMM_ERROR)
    });
    assert_eq!(out.len(), 17);
    let (_server, again) = TestServer::start(&device, addr);
    assert_eq!(again, addr);
    let out = poll_until(src.as_mut(), LIMIT, "recovery", |out, _| {
        out.iter().all(|r| r.quality.is_good())
    });
    assert_eq!(
        value(&table, &out, "meter.voltage_l2"),
        (231.0, Quality::GOOD)
    );
    assert!(device.connections.load(Ordering::SeqCst) >= 2);
}

#[test]
fn a_refused_connection_is_counted_and_dropping_the_source_stops_it() {
    // Bind and release a port so that nothing listens on it.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (mut src, _) = sdm630_source(addr, &[]);
    let out = poll_until(src.as_mut(), LIMIT, "a comm error", |_, errors| errors >= 1);
    assert!(out.iter().all(|r| r.quality == Quality::COMM_ERROR));
    let started = Instant::now();
    drop(src);
    assert!(started.elapsed() < LIMIT);
}

#[test]
fn bad_parameters_are_refused_with_what_would_be_valid() {
    let build = |set: &[(&str, ParamValue)]| source("meter", &SDM630.kind, set).map(|_| ());
    let err = build(&[("address", text("localhost"))]).unwrap_err();
    assert!(err.message.contains("is not `host:port`"), "{err}");
    let err = build(&[
        ("address", text("127.0.0.1:502")),
        ("points", names(&["voltage_l9"])),
    ])
    .unwrap_err();
    assert!(
        err.message.contains(
            "`voltage_l9` is not a point of eastron-sdm630; points: voltage_l1, voltage_l2"
        ),
        "{err}"
    );
    let err = build(&[("address", text("127.0.0.1:502")), ("points", names(&[]))]).unwrap_err();
    assert!(err.message.contains("`points` is empty"), "{err}");
    #[cfg(not(feature = "rtu"))]
    {
        let err = build(&[
            ("address", text("/dev/ttyUSB0")),
            ("transport", text("rtu")),
        ])
        .unwrap_err();
        assert!(err.message.contains("feature"), "{err}");
    }
}

#[test]
fn every_profile_kind_has_its_points_as_outputs_with_units() {
    let registry = crate::registry();
    for pk in [
        &SDM630,
        &super::SDM120,
        &super::NIBE,
        &super::HEIDELBERG,
        &DEYE_BATTERY,
    ] {
        assert_eq!(
            registry.get(pk.kind.name, None).map(|k| k.name),
            Some(pk.kind.name)
        );
        let outputs: Vec<(&str, &str)> =
            pk.kind.outputs.iter().map(|o| (o.suffix, o.unit)).collect();
        let points: Vec<(&str, &str)> =
            pk.profile.points.iter().map(|p| (p.name, p.unit)).collect();
        assert_eq!(outputs, points, "{}", pk.kind.name);
    }
    assert_eq!(super::KINDS.len(), 5);
}
