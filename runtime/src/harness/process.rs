//! `tandem up` as a process of a given executable.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::agent::{Agent, Control};
use super::proc;
use super::scratch::wait_for;

/// The longest wait for anything the agent does, unless told.
const BOUND: Duration = Duration::from_secs(30);

/// How to start one `tandem up`: `PROGRAM up GRAPH --state-dir STATE ARGS..`.
/// Clone it to start the same agent again.
#[derive(Clone, Debug)]
pub struct Launcher {
    program: PathBuf,
    graph: PathBuf,
    state: PathBuf,
    args: Vec<OsString>,
    current_dir: Option<PathBuf>,
    log: Option<PathBuf>,
    bound: Duration,
}

impl Launcher {
    /// `program` is the `tandem` binary (`env!("CARGO_BIN_EXE_tandem")`) or
    /// an executable that serves the same roles ([`super::serve_roles`]).
    pub fn new(
        program: impl Into<PathBuf>,
        graph: impl Into<PathBuf>,
        state: impl Into<PathBuf>,
    ) -> Launcher {
        Launcher {
            program: program.into(),
            graph: graph.into(),
            state: state.into(),
            args: Vec::new(),
            current_dir: None,
            log: None,
            bound: BOUND,
        }
    }

    /// One more argument after the state directory.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Launcher {
        self.args.push(arg.into());
        self
    }

    /// More arguments after the state directory.
    pub fn args<A: Into<OsString>>(mut self, args: impl IntoIterator<Item = A>) -> Launcher {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Runs it in `dir` (relative paths are taken from there).
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Launcher {
        self.current_dir = Some(dir.into());
        self
    }

    /// Appends what the agent and its instances write to stderr to `file`
    /// too (it is always kept in memory: [`Up::log`]).
    pub fn log_to(mut self, file: impl Into<PathBuf>) -> Launcher {
        self.log = Some(file.into());
        self
    }

    /// The longest any one awaited event may take (default 30 s).
    pub fn bound(mut self, bound: Duration) -> Launcher {
        self.bound = bound;
        self
    }

    /// The command [`Launcher::spawn`] runs, stdin and stdout closed.
    pub fn command(&self) -> Command {
        let mut command = Command::new(&self.program);
        command
            .arg("up")
            .arg(&self.graph)
            .arg("--state-dir")
            .arg(&self.state)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        if let Some(dir) = &self.current_dir {
            command.current_dir(dir);
        }
        command
    }

    pub fn spawn(&self) -> Up {
        self.spawn_with(|_| {})
    }

    /// [`Launcher::spawn`], with `prepare` changing the command first (its
    /// environment, a `pre_exec`).
    pub fn spawn_with(&self, prepare: impl FnOnce(&mut Command)) -> Up {
        let mut command = self.command();
        prepare(&mut command);
        let mut child = command
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.program.display()));
        let state = match &self.current_dir {
            Some(dir) => dir.join(&self.state),
            None => self.state.clone(),
        };
        let file = self.log.as_ref().map(|path| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()))
        });
        // The instances inherit the agent's stderr: their lines land here too.
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().expect("stderr was piped");
        let into = log.clone();
        let reader = std::thread::spawn(move || collect(stderr, file, &into));
        let pid = i32::try_from(child.id()).expect("a pid fits an i32");
        Up {
            child,
            pid,
            control: Control::of(&state),
            program: self.program.clone(),
            state,
            log,
            reader: Some(reader),
            bound: self.bound,
        }
    }
}

/// Copies `stderr` line by line into `log` and `file` until every process
/// holding it has closed it.
fn collect(stderr: impl std::io::Read, mut file: Option<std::fs::File>, log: &Mutex<String>) {
    let mut lines = BufReader::new(stderr);
    let mut line = Vec::new();
    loop {
        line.clear();
        match lines.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if let Some(file) = &mut file {
            let _ = file.write_all(&line);
        }
        log.lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_str(&String::from_utf8_lossy(&line));
    }
}

/// A running `tandem up` process; killed on drop, however the test ends.
#[derive(Debug)]
pub struct Up {
    child: Child,
    pid: i32,
    control: Control,
    program: PathBuf,
    state: PathBuf,
    log: Arc<Mutex<String>>,
    reader: Option<JoinHandle<()>>,
    bound: Duration,
}

impl Agent for Up {
    fn control(&self) -> &Control {
        &self.control
    }

    fn context(&self) -> String {
        self.log()
    }

    fn ended(&self) -> Option<String> {
        // try_wait needs &mut; /proc says enough (a zombie has ended).
        proc::gone(self.pid).then(|| "exited".to_owned())
    }

    fn bound(&self) -> Duration {
        self.bound
    }
}

impl Up {
    /// The agent's process id.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Its state directory.
    pub fn state(&self) -> &Path {
        &self.state
    }

    /// What the agent and its instances wrote to stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Waits until the log satisfies `probe`; the log.
    pub fn wait_log(&self, what: &str, probe: impl Fn(&str) -> bool) -> String {
        wait_for(
            what,
            self.bound,
            || self.log(),
            || {
                let log = self.log();
                probe(&log).then_some(log)
            },
        )
    }

    /// True while the agent runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Runs `PROGRAM ARGS --state-dir STATE` (`tandem status`, `tandem
    /// upgrade`..): its stdout, or its stderr as the error.
    pub fn cli(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new(&self.program)
            .args(args)
            .arg("--state-dir")
            .arg(&self.state)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.program.display()));
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// [`Up::cli`], which must succeed.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        self.cli(args)
            .unwrap_or_else(|e| panic!("tandem {args:?} failed: {e}\nagent log:\n{}", self.log()))
    }

    /// Sends `signal` to the agent.
    pub fn signal(&self, signal: i32) {
        proc::signal(self.pid, signal);
    }

    /// Waits for the agent to exit, then for the last of its log (every
    /// instance has closed the agent's stderr by then).
    pub fn wait_exit(&mut self, why: &str) -> ExitStatus {
        let log = self.log.clone();
        let context = move || log.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let child = &mut self.child;
        let status = wait_for(
            &format!("the agent to exit after {why}"),
            self.bound,
            &context,
            || child.try_wait().ok().flatten(),
        );
        if let Some(reader) = self.reader.take() {
            wait_for("the agent's log to end", self.bound, &context, || {
                reader.is_finished().then_some(())
            });
        }
        status
    }

    /// Waits up to `within` for the agent to exit, without a panic when it
    /// does not (benches go on); its exit status.
    pub fn exited_within(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(super::POLL);
        }
    }

    /// Ctrl-C (SIGINT): the agent drains, checkpoints and exits. Its exit
    /// and log.
    pub fn interrupt(mut self) -> (ExitStatus, String) {
        self.signal(libc::SIGINT);
        let status = self.wait_exit("Ctrl-C");
        (status, self.log())
    }

    /// SIGTERM, as `systemctl stop` sends: the agent must drain and exit
    /// 0. Its log.
    pub fn stop(self) -> String {
        self.stop_with(libc::SIGTERM)
    }

    /// Stops the agent with `signal` (SIGINT, SIGTERM); it must exit 0. Its log.
    pub fn stop_with(mut self, signal: i32) -> String {
        self.signal(signal);
        let status = self.wait_exit(&format!("signal {signal}"));
        let log = self.log();
        assert!(status.success(), "agent exit {status}\n{log}");
        log
    }

    /// SIGKILL: the agent dies at once, and its instances with it (waited
    /// for). Its log.
    pub fn kill(mut self) -> String {
        self.signal(libc::SIGKILL);
        self.wait_exit("SIGKILL");
        self.log()
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Builds the release `tandem` of the workspace at `workspace` (`cargo build
/// --release -p tandem`) and returns its path, for a bench running from
/// `target/release/deps/`.
pub fn release_binary(workspace: &Path) -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--release", "-p", "tandem", "--quiet"])
        .current_dir(workspace)
        .status()
        .expect("run cargo build");
    assert!(status.success(), "cargo build --release -p tandem failed");
    let exe = std::env::current_exe().expect("bench executable path");
    let release = exe
        .parent()
        .and_then(Path::parent)
        .expect("bench executable in target/release/deps");
    let binary = release.join("tandem");
    assert!(binary.exists(), "no {}", binary.display());
    binary
}
