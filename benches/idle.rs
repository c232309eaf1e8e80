//! What an idle gateway costs: `tandem up graphs/home.toml` (the agent and
//! its blue and green instances, release build) on its simulated devices,
//! against `tandem run graphs/home.toml` (the same graph in one process, no
//! 1+1) measured in the same run, over the same window.
//!
//! `cargo bench --bench idle -- --json` prints the CPU of each process as a
//! percentage of one core, the total against the 2% target, and, as its last
//! line, one JSON object. `IDLE_SECONDS` sets the window (default 20).

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tandem::harness::proc::cpu_by_thread;
use tandem::harness::{Agent as _, Launcher, Scratch};

/// The target: the whole of `tandem up` on the home graph, in % of one core.
const TARGET_PERCENT: f64 = 2.0;
/// Longest wait for both instances to serve.
const START_BOUND: Duration = Duration::from_secs(60);
/// Time given to start-up work (certificates, first checkpoint) before the window.
const WARM: Duration = Duration::from_secs(3);

fn window() -> Duration {
    let seconds = std::env::var("IDLE_SECONDS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(20);
    Duration::from_secs(seconds.max(1))
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

/// CPU time a process has used so far, all its threads together
/// (`tandem::harness::proc::cpu_by_thread`: nanoseconds on a CPU).
fn cpu_of(pid: u32) -> Duration {
    let threads = cpu_by_thread(pid);
    assert!(
        !threads.is_empty(),
        "cannot read the CPU time of process {pid}"
    );
    threads.values().sum()
}

/// CPU of each `(name, pid)` over `window`, in % of one core.
fn measure(pids: &[(String, u32)], window: Duration) -> Vec<(String, f64)> {
    let before: Vec<Duration> = pids.iter().map(|(_, pid)| cpu_of(*pid)).collect();
    let start = Instant::now();
    std::thread::sleep(window);
    let wall = start.elapsed().as_secs_f64();
    pids.iter()
        .zip(before)
        .map(|((name, pid), before)| {
            let used = cpu_of(*pid).saturating_sub(before).as_secs_f64();
            (name.clone(), 100.0 * used / wall)
        })
        .collect()
}

/// A child process killed on drop.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() {
    let json = std::env::args().any(|a| a == "--json");
    let binary = tandem::harness::release_binary(Path::new(env!("CARGO_MANIFEST_DIR")));
    let graph = root().join("graphs/home.toml");
    let window = window();
    let scratch = Scratch::new("idle-bench");

    // Baseline: the same graph in one process.
    let run = Running(
        Command::new(&binary)
            .arg("run")
            .arg(&graph)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .current_dir(scratch.path())
            .spawn()
            .expect("tandem run"),
    );
    std::thread::sleep(WARM);
    let baseline = measure(&[("tandem run".to_owned(), run.0.id())], window);
    drop(run);

    let up = Launcher::new(&binary, &graph, scratch.state())
        .current_dir(scratch.path())
        .bound(START_BOUND)
        .spawn();
    let [blue, green] = up.serving_pids(&[]);
    std::thread::sleep(WARM);
    let pid = |p: i32| u32::try_from(p).expect("a pid");
    let pids = vec![
        ("agent".to_owned(), pid(up.pid())),
        ("blue".to_owned(), pid(blue)),
        ("green".to_owned(), pid(green)),
    ];
    let figures = measure(&pids, window);
    drop(up);
    let total: f64 = figures.iter().map(|(_, p)| p).sum();
    let base = baseline[0].1;
    println!(
        "tandem up graphs/home.toml, idle on simulated devices, over {:.0} s (% of one core):",
        window.as_secs_f64()
    );
    for (name, percent) in &figures {
        println!("  {name:<6} {percent:6.3}%");
    }
    println!(
        "  total  {total:6.3}%  (target at most {TARGET_PERCENT}%: {})",
        if total <= TARGET_PERCENT {
            "met"
        } else {
            "not met"
        }
    );
    println!(
        "baseline, tandem run graphs/home.toml: {base:.3}%  (tandem up / tandem run: {:.1}x)",
        total / base.max(0.001)
    );
    let line = serde_json::json!({
        "window_s": window.as_secs_f64(),
        "up_percent_of_core": (total * 1000.0).round() / 1000.0,
        "agent_percent": (figures[0].1 * 1000.0).round() / 1000.0,
        "blue_percent": (figures[1].1 * 1000.0).round() / 1000.0,
        "green_percent": (figures[2].1 * 1000.0).round() / 1000.0,
        "target_percent": TARGET_PERCENT,
        "baselines": { "run_percent_of_core": (base * 1000.0).round() / 1000.0 },
    });
    if json {
        println!("{line}");
    } else {
        println!("(run with -- --json for one JSON line)\n{line}");
    }
}
