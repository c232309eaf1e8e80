//! `tandem run`: a graph in one process, optionally checkpointed.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use tandem::checkpoint::{Checkpoint, CheckpointStore, GraphStamp};
use tandem::{Clock, RunOptions, Topology};
use tandem_core::{EventTime, Layout};

use super::graph::load;
use super::{INTERRUPTED, INVALID, UNREADABLE};
use crate::ClockArg;

/// The options of `tandem run`, as given.
pub struct RunArgs {
    /// Stop after this long (of event time on the virtual clock).
    pub run_for: Option<Duration>,
    /// The clock asked for, if any.
    pub clock: Option<ClockArg>,
    /// Simulated time's speed (implies the virtual clock).
    pub speed: Option<f64>,
    /// Start of virtual time, seconds since the Unix epoch.
    pub start: i64,
    /// Most records a node takes from a ring in one pass.
    pub batch: u32,
    /// Where to keep vertex state, when anywhere.
    pub state_dir: Option<PathBuf>,
    /// How often to checkpoint there.
    pub checkpoint_every: Duration,
}

/// `tandem run FILE`.
pub fn command(file: &Path, layout: Option<Layout>, args: RunArgs) -> ExitCode {
    let clock = match (args.clock.unwrap_or(ClockArg::Wall), args.speed) {
        (ClockArg::Wall, None) => Clock::Wall,
        (_, speed) => Clock::Virtual {
            start: EventTime::from_secs(args.start),
            speed,
        },
    };
    let options = RunOptions {
        clock,
        // On the wall clock `run` enforces --for itself, so it can
        // checkpoint before the stream drains.
        span: args
            .run_for
            .filter(|_| matches!(clock, Clock::Virtual { .. })),
        // So that a run can checkpoint everything its input produced.
        hold_at_end: args.state_dir.is_some(),
        batch: args.batch as usize,
    };
    let durability = args.state_dir.map(|dir| Durability {
        dir,
        every: args.checkpoint_every,
    });
    run(file, layout, options, args.run_for, durability)
}

/// Where and how often `tandem run` checkpoints.
struct Durability {
    dir: PathBuf,
    every: Duration,
}

fn run(
    file: &Path,
    layout: Option<Layout>,
    options: RunOptions,
    run_for: Option<Duration>,
    durability: Option<Durability>,
) -> ExitCode {
    let loaded = match load(file, layout) {
        Ok(loaded) => loaded,
        Err(code) => return ExitCode::from(code),
    };
    let plan = &loaded.plan;
    let stamp = GraphStamp::of_plan(&loaded.name, plan);
    let mut store = match durability.as_ref().map(|d| CheckpointStore::open(&d.dir)) {
        None => None,
        Some(Ok(store)) => Some(store),
        Some(Err(e)) => {
            eprintln!("tandem: {e}");
            return ExitCode::from(UNREADABLE);
        }
    };
    // One run per state directory: a second would prune and clean up the
    // first one's checkpoints under its feet.
    let _lock = match durability
        .as_ref()
        .map(|d| tandem::up::dirs::StateDir::new(&d.dir).lock())
    {
        Some(Err(message)) => {
            eprintln!("tandem: {message}");
            return ExitCode::from(UNREADABLE);
        }
        Some(Ok(lock)) => Some(lock),
        None => None,
    };
    let resume = match store.as_mut().map(|s| s.load_latest()) {
        None => None,
        Some(Err(e)) => {
            eprintln!("tandem: {e}");
            return ExitCode::from(UNREADABLE);
        }
        Some(Ok(recovery)) => {
            for skipped in &recovery.skipped {
                eprintln!("tandem: {skipped}");
            }
            match recovery.latest {
                Some((path, checkpoint)) if checkpoint.graph.name == stamp.name => {
                    eprintln!(
                        "tandem: resuming from {} (origin sequence {})",
                        path.display(),
                        checkpoint.seq
                    );
                    if matches!(options.clock, Clock::Virtual { .. }) {
                        eprintln!(
                            "tandem: warning: virtual time starts again at --start; vertices whose \
                             state lies later wait until event time passes it: give a --start after \
                             the run that wrote this checkpoint"
                        );
                    }
                    Some(checkpoint)
                }
                Some((path, checkpoint)) => {
                    eprintln!(
                        "tandem: {}: error: holds checkpoints of graph `{}`, not `{}` (newest: {}); \
                         give each graph a --state-dir of its own",
                        durability.as_ref().map_or(String::new(), |d| d.dir.display().to_string()),
                        checkpoint.graph.name,
                        stamp.name,
                        path.display()
                    );
                    return ExitCode::from(UNREADABLE);
                }
                None => None,
            }
        }
    };
    let (interrupt_tx, interrupt) = crossbeam_channel::bounded::<()>(4);
    if let Err(e) = ctrlc::set_handler(move || {
        let _ = interrupt_tx.try_send(());
    }) {
        eprintln!("tandem: cannot install the handler of Ctrl-C and SIGTERM: {e}");
    }
    let started = std::time::Instant::now();
    let cpu_before = tandem::cpu::process_cpu_time();
    // Numbers the last run may have emitted past its checkpoint stay used.
    let checkpointed = resume.as_ref().map_or(tandem_core::Seq::ZERO, |c| c.seq);
    let numbering = match durability
        .as_ref()
        .map(|d| tandem::checkpoint::Reservation::open(&d.dir, checkpointed))
    {
        None => None,
        Some(Ok(numbering)) => Some(numbering),
        Some(Err(e)) => {
            eprintln!("tandem: {e}");
            return ExitCode::from(UNREADABLE);
        }
    };
    let started_topology = Topology::start_numbered(
        plan,
        options,
        resume.as_ref(),
        tandem::topology::Attached::default(),
        numbering,
    );
    let mut topology = match started_topology {
        Ok((t, restored)) => {
            if let Some(report) = restored {
                eprintln!("tandem: {report}");
            }
            t
        }
        Err(e) => {
            for line in e.to_string().lines() {
                eprintln!("{}: error: {line}", file.display());
            }
            return ExitCode::from(INVALID);
        }
    };
    eprintln!(
        "tandem: running `{}` on {} workers ({} rings); Ctrl-C stops",
        loaded.name,
        plan.workers.len(),
        plan.ring_count()
    );
    // On the wall clock --for is a deadline here; on the virtual clock the
    // ingress stops by itself after that much event time.
    let deadline = match (options.clock, run_for) {
        (Clock::Wall, Some(d)) => crossbeam_channel::after(d),
        _ => crossbeam_channel::never(),
    };
    let ticks = match &durability {
        Some(d) => crossbeam_channel::tick(d.every),
        None => crossbeam_channel::never(),
    };
    let finished = topology.finished().clone();
    let input_ended = topology.input_ended().clone();
    loop {
        crossbeam_channel::select! {
            recv(interrupt) -> _ => {
                eprintln!("tandem: stopping: draining in-flight records, flushing sinks");
                if let Some(store) = store.as_mut() {
                    checkpoint(&mut topology, store, &stamp);
                }
                topology.stop();
                break;
            }
            recv(deadline) -> _ => {
                if let Some(store) = store.as_mut() {
                    checkpoint(&mut topology, store, &stamp);
                }
                topology.stop();
                break;
            }
            recv(input_ended) -> _ => {
                if let Some(store) = store.as_mut() {
                    checkpoint(&mut topology, store, &stamp);
                }
                topology.stop();
                break;
            }
            recv(ticks) -> _ => {
                if let Some(store) = store.as_mut() {
                    checkpoint(&mut topology, store, &stamp);
                }
            }
            recv(finished) -> _ => break,
        }
    }
    crossbeam_channel::select! {
        recv(interrupt) -> _ => {
            eprintln!("tandem: second stop signal: exiting without draining");
            return ExitCode::from(INTERRUPTED);
        }
        recv(topology.finished()) -> _ => {}
    }
    match topology.join() {
        Ok(report) => {
            eprint!("{}", report.table());
            let wall = started.elapsed();
            if let (Some(before), Some(after)) = (cpu_before, tandem::cpu::process_cpu_time()) {
                let used = after.saturating_sub(before);
                eprintln!(
                    "cpu: {:.2}% of one core over {:.1} s ({} ms of CPU time)",
                    100.0 * used.as_secs_f64() / wall.as_secs_f64().max(1e-9),
                    wall.as_secs_f64(),
                    used.as_millis()
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tandem: {e}");
            ExitCode::from(3)
        }
    }
}

/// Snapshots every vertex at a barrier where the ingress is now and saves
/// the checkpoint. Failures are reported and the run goes on.
fn checkpoint(topology: &mut Topology, store: &mut CheckpointStore, stamp: &GraphStamp) {
    let placed = topology.place_barrier_now();
    match topology.barrier_snapshots(placed, Duration::from_secs(10)) {
        Ok(taken) => {
            let checkpoint = Checkpoint {
                graph: stamp.clone(),
                seq: taken.at,
                vertices: taken.vertices,
            };
            match store.save(&checkpoint) {
                Ok(path) => eprintln!(
                    "tandem: checkpoint {} at origin sequence {}",
                    path.display(),
                    checkpoint.seq
                ),
                Err(e) => eprintln!("tandem: checkpoint not saved: {e}"),
            }
        }
        Err(e) => eprintln!("tandem: checkpoint skipped: {e}"),
    }
}
