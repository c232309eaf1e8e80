//! The `modbus.sdm630` source against a real peer: pymodbus's Modbus TCP
//! server (tests/support/sdm630_server.py) serving an SDM630 register map.
//!
//! Needs python3. It uses the pinned pymodbus when python3 already has it
//! (`.ci/run` installs it); otherwise it installs that version once into a
//! virtual environment under `target/`, so `cargo test --workspace` works on
//! a fresh machine. When that fails too, the test fails and says why, unless
//! `TANDEM_SKIP_PYMODBUS=1` is set (CI never sets it).
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tandem_core::{
    BuildContext, Builder, ChannelId, ChannelTable, EventTime, ParamValue, Params, Quality, Record,
    Source,
};

/// How long the server may take to start, and the source to read it.
const LIMIT: Duration = Duration::from_secs(30);

/// The server process; killed when dropped, so a failing test leaves none behind.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The pymodbus version the test runs against (also pinned in `.ci/run`).
const PYMODBUS: &str = "3.16.1";

/// True when `python` imports the pinned pymodbus.
fn has_pymodbus(python: &Path) -> bool {
    Command::new(python)
        .args([
            "-c",
            &format!("import pymodbus, sys; sys.exit(pymodbus.__version__ != '{PYMODBUS}')"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A python with the pinned pymodbus: python3 itself, or a virtual
/// environment under `target/` made for this test.
fn python() -> Result<PathBuf, String> {
    let system = PathBuf::from("python3");
    if has_pymodbus(&system) {
        return Ok(system);
    }
    let venv =
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("target/test-pymodbus-{PYMODBUS}"));
    let python = venv.join("bin/python");
    if has_pymodbus(&python) {
        return Ok(python);
    }
    let run = |cmd: &mut Command| -> Result<(), String> {
        let out = cmd
            .output()
            .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{cmd:?} failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    };
    run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    run(Command::new(&python).args([
        "-m",
        "pip",
        "install",
        "--quiet",
        &format!("pymodbus=={PYMODBUS}"),
    ]))?;
    if has_pymodbus(&python) {
        Ok(python)
    } else {
        Err(format!(
            "{} still lacks pymodbus {PYMODBUS}",
            python.display()
        ))
    }
}

/// Starts the pymodbus server and returns it with the port it listens on,
/// or why it could not be started.
fn start_server() -> Result<(Server, u16), String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/sdm630_server.py");
    let child = Command::new(python()?)
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run python3: {e}"))?;
    let mut server = Server(child);
    let stdout = server.0.stdout.take().unwrap();
    let stderr = server.0.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let line = BufReader::new(stdout).lines().next();
        let _ = tx.send(line);
    });
    let line = match rx.recv_timeout(LIMIT) {
        Ok(Some(Ok(line))) => line,
        Ok(_) | Err(_) => {
            let _ = server.0.kill();
            let mut err = String::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                err.push_str(&line);
                err.push('\n');
            }
            return Err(format!(
                "{} did not print its port; its stderr:\n{err}",
                script.display()
            ));
        }
    };
    // Keep draining stderr (pymodbus logs deprecation warnings there).
    std::thread::spawn(move || BufReader::new(stderr).lines().map_while(Result::ok).count());
    let port = line
        .strip_prefix("port ")
        .and_then(|p| p.trim().parse().ok())
        .ok_or_else(|| format!("unexpected first line from the server: {line:?}"))?;
    Ok((server, port))
}

/// Builds a `modbus.sdm630` source the way the plan would.
fn sdm630_source(port: u16) -> (Box<dyn Source>, Arc<ChannelTable>) {
    let registry = tandem_nodes::registry();
    let kind = registry.get("modbus.sdm630", None).unwrap();
    let mut params = Params::new();
    for spec in kind.params {
        if let Some(v) = ParamValue::from_default(spec.default) {
            params.insert(spec.name, v);
        }
    }
    params.insert("address", ParamValue::Text(format!("127.0.0.1:{port}")));
    params.insert("period", ParamValue::Duration(50_000_000));
    params.insert("timeout", ParamValue::Duration(2_000_000_000));
    let mut table = ChannelTable::new();
    let outputs: Vec<ChannelId> = kind
        .outputs
        .iter()
        .map(|o| table.intern(&format!("meter.{}", o.suffix), o.unit))
        .collect();
    let table = Arc::new(table);
    let ctx = BuildContext {
        id: "meter",
        params: &params,
        inputs: &[],
        outputs: &outputs,
        channels: &table,
    };
    let Builder::Source(build) = kind.build else {
        panic!("modbus.sdm630 is not a source");
    };
    (build(&ctx).unwrap(), table)
}

#[test]
fn the_sdm630_source_reads_a_pymodbus_server() {
    let (_server, port) = match start_server() {
        Ok(started) => started,
        Err(why) if std::env::var("TANDEM_SKIP_PYMODBUS").as_deref() == Ok("1") => {
            eprintln!("SKIPPED modbus_pymodbus (TANDEM_SKIP_PYMODBUS=1): {why}");
            return;
        }
        Err(why) => panic!(
            "\n\n*** the pymodbus server could not be started: {why}\n\
             *** install it with `python3 -m pip install 'pymodbus=={PYMODBUS}'` \
             (as .ci/run does), or set TANDEM_SKIP_PYMODBUS=1 to skip this test\n"
        ),
    };
    let (mut source, table) = sdm630_source(port);
    let start = Instant::now();
    let mut now = EventTime::from_secs(1_767_225_600);
    let mut out: Vec<Record> = Vec::new();
    loop {
        out.clear();
        now = source.poll(now, &mut out).unwrap();
        if !out.is_empty() && out.iter().all(|r| r.quality == Quality::GOOD) {
            break;
        }
        assert!(
            start.elapsed() < LIMIT,
            "no good scan from the pymodbus server; last: {out:?}, errors {}",
            source.errors()
        );
        std::thread::yield_now();
    }
    let value = |name: &str| {
        let id = table.get(&format!("meter.{name}")).unwrap();
        out.iter().find(|r| r.channel == id).unwrap().value
    };
    assert_eq!(out.len(), 17);
    assert_eq!(value("voltage_l1"), 230.5);
    assert_eq!(value("voltage_l2"), 231.0);
    assert_eq!(value("voltage_l3"), 229.0);
    assert_eq!(value("power_l1"), 400.5);
    assert_eq!(value("power_total"), 1234.5);
    assert_eq!(value("frequency"), 50.0);
    assert_eq!(value("import_energy"), 5678.25);
    assert_eq!(value("export_energy"), 12.75);
    assert_eq!(value("total_energy"), 0.0);
    assert_eq!(source.errors(), 0);
}
