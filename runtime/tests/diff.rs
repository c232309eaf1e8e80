//! `tandem diff` and upgrading a graph whose vertex state schema changed,
//! as a user runs them.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn tandem() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tandem"));
    cmd.current_dir(repo());
    cmd
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tandem-diff-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn home() -> String {
    std::fs::read_to_string(repo().join("graphs/home.toml")).unwrap()
}

/// `graphs/home.toml` edited by `edit`, written to a scratch file.
fn edited(dir: &Path, name: &str, edit: impl Fn(String) -> String) -> PathBuf {
    let original = home();
    let changed = edit(original.clone());
    assert_ne!(changed, original, "the edit of {name} changed nothing");
    let path = dir.join(name);
    std::fs::write(&path, changed).unwrap();
    path
}

fn diff(old: &Path, new: &Path, extra: &[&str]) -> Output {
    tandem()
        .arg("diff")
        .arg(old)
        .arg(new)
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn home_to_home_v2_is_safe_and_shows_the_migration() {
    let out = tandem()
        .args(["diff", "graphs/home.toml", "graphs/home-v2.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "~ battery_energy: integrate v1 -> v2, state schema 1006 -> 1016 (migration available)\n\
         ~ console: stdout v1, inputs +battery_energy.peak\n\
         safe: the state of every vertex carries over\n"
    );
}

#[test]
fn identical_graphs_are_no_change() {
    let out = tandem()
        .args(["diff", "graphs/home.toml", "graphs/home.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out.stdout), "no change\n");
}

#[test]
fn a_schema_change_without_a_migration_is_refused() {
    // Back from v2 to v1: version 1 cannot read schema 1016.
    let out = tandem()
        .args(["diff", "graphs/home-v2.toml", "graphs/home.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).starts_with(
        "~ battery_energy: integrate v2 -> v1, state schema 1016 -> 1006 (no migration: state lost)\n"
    ));
    assert_eq!(
        text(&out.stderr),
        "error: vertex `battery_energy`: integrate has no migration from state schema 1016 to \
         1006; its state would be lost (add a migration to the kind, or keep the old version)\n\
         tandem: upgrade refused: 1 change(s) would lose state\n"
    );
}

#[test]
fn a_changed_kind_on_the_same_id_is_refused_as_a_changed_key_type() {
    let dir = scratch("kind");
    let new = edited(&dir, "ewma.toml", |t| {
        t.replacen(
            "kind = \"integrate\"\nversion = 1\ninputs = [\"battery_power\"]\nper = \"h\"",
            "kind = \"ewma\"\ninputs = [\"battery_power\"]\nalpha = 0.5",
            1,
        )
    });
    let out = diff(&repo().join("graphs/home.toml"), &new, &["--allow-drop"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stdout),
        "~ battery_energy: integrate v1 -> ewma v1, alpha (unset) -> 0.5, max_gap \"1m\" -> \
         (unset), per \"h\" -> (unset), changed key type (state schema 1006 lost)\n"
    );
    assert_eq!(
        text(&out.stderr),
        "error: vertex `battery_energy` changes kind from integrate to ewma (changed key type): \
         its state (schema 1006) cannot be carried over; give the new vertex another id and \
         remove this one with --allow-drop\n\
         tandem: upgrade refused: 1 change(s) would lose state\n"
    );
}

#[test]
fn a_removed_stateful_vertex_is_refused_unless_dropping_is_allowed() {
    let dir = scratch("drop");
    let new = edited(&dir, "no-hot.toml", |t| {
        t.replacen(
            "[vertices.battery_hot]\nkind = \"threshold\"\ninputs = [\"battery.temperature\"]\n\
             direction = \"above\"\nraise = 40.0\nclear = 37.0\nhold = 3\n",
            "",
            1,
        )
        .replacen(" \"battery_hot\",", "", 1)
    });
    let old = repo().join("graphs/home.toml");
    let out = diff(&old, &new, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "- battery_hot: threshold v1, state schema 1002 dropped\n\
         ~ console: stdout v1, inputs -battery_hot\n"
    );
    assert_eq!(
        text(&out.stderr),
        "error: vertex `battery_hot` (threshold) is removed and its state (schema 1002) would be \
         dropped; pass --allow-drop to accept\n\
         tandem: upgrade refused: 1 change(s) would lose state\n"
    );
    let out = diff(&old, &new, &["--allow-drop"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).ends_with(
        "safe with --allow-drop: the state of every vertex carries over but battery_hot\n"
    ));
}

#[test]
fn added_vertices_and_changed_parameters_are_safe() {
    let dir = scratch("params");
    let new = edited(&dir, "params.toml", |t| {
        t.replacen("alpha = 0.3", "alpha = 0.25", 1).replacen(
            "# --- out",
            "[vertices.ev_energy]\nkind = \"integrate\"\ninputs = [\"ev.power\"]\n\n# --- out",
            1,
        )
    });
    let out = diff(&repo().join("graphs/home.toml"), &new, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "+ ev_energy: integrate v2, state schema 1016 (starts empty)\n\
         ~ ev_power_smooth: ewma v1, alpha 0.3 -> 0.25\n\
         safe: the state of every vertex carries over\n"
    );
}

#[test]
fn renaming_the_graph_is_refused_because_its_checkpoints_would_not_be_found() {
    let dir = scratch("rename");
    let new = edited(&dir, "renamed.toml", |t| {
        t.replacen("name = \"home\"", "name = \"house\"", 1)
    });
    let out = diff(&repo().join("graphs/home.toml"), &new, &["--allow-drop"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout), "");
    assert_eq!(
        text(&out.stderr),
        "error: the graph is renamed from `home` to `house`: checkpoints of `home` would not be \
         resumed; keep `name = \"home\"` under [graph]\n\
         tandem: upgrade refused: 1 change(s) would lose state\n"
    );
}

#[test]
fn unreadable_or_invalid_files_exit_2() {
    let dir = scratch("invalid");
    let out = tandem()
        .args(["diff", "graphs/home.toml", "graphs/no-such-graph.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).starts_with("graphs/no-such-graph.toml: error: cannot read"));
    let invalid = edited(&dir, "invalid.toml", |t| {
        t.replacen("kind = \"integrate\"", "kind = \"integrator\"", 1)
    });
    let out = diff(&repo().join("graphs/home.toml"), &invalid, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("invalid.toml:88:8: error: unknown vertex kind `integrator`"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(text(&out.stdout), "");
}

/// The `value` of each JSON line the stdout sink printed for `channel`,
/// with its `seq` and `quality`, as printed.
fn printed(stdout: &str, channel: &str) -> Vec<(u64, String, String)> {
    let field = |line: &str, name: &str| -> String {
        let start = line.find(&format!("\"{name}\":")).unwrap() + name.len() + 3;
        let rest = &line[start..];
        let end = rest.find([',', '}']).unwrap();
        rest[..end].trim_matches('"').to_owned()
    };
    stdout
        .lines()
        .filter(|l| l.contains(&format!("\"channel\":\"{channel}\",")))
        .map(|l| {
            (
                field(l, "seq").parse().unwrap(),
                field(l, "value"),
                field(l, "quality"),
            )
        })
        .collect()
}

/// Runs a graph on the virtual clock from `start` (seconds) for `span`,
/// keeping state in `state`.
fn run_graph(dir: &Path, graph: &str, state: &Path, start: i64, span: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tandem"))
        .current_dir(dir)
        .arg("run")
        .arg(repo().join(graph))
        .args(["--clock", "virtual", "--for", span, "--start"])
        .arg(start.to_string())
        .arg("--state-dir")
        .arg(state)
        .args(["--checkpoint-every", "10s"])
        .output()
        .unwrap()
}

#[test]
fn home_v2_resumes_the_battery_energy_total_of_home_through_the_migration() {
    let dir = scratch("resume");
    std::fs::create_dir_all(dir.join("target")).unwrap();
    let state = dir.join("state");
    std::fs::create_dir_all(&state).unwrap();
    let start = 1_767_225_600;
    let first = run_graph(&dir, "graphs/home.toml", &state, start, "2h");
    let log = text(&first.stderr);
    assert_eq!(first.status.code(), Some(0), "{log}");
    // Checkpoints are taken on wall-clock ticks during the run: at least one.
    let at: u64 = log
        .lines()
        .rev()
        .filter_map(|l| l.strip_prefix("tandem: checkpoint "))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .next()
        .unwrap_or_else(|| panic!("no checkpoint was taken:\n{log}"));
    let totals = printed(&text(&first.stdout), "battery_energy");
    let (_, total, _) = totals.iter().rev().find(|(seq, _, _)| *seq <= at).unwrap();
    assert_ne!(
        total, "0.0",
        "the battery moved no energy before the checkpoint"
    );

    // Three hours later (past the integrator's max_gap), on the new graph.
    let second = run_graph(&dir, "graphs/home-v2.toml", &state, start + 3 * 3600, "10s");
    let log = text(&second.stderr);
    assert_eq!(second.status.code(), Some(0), "{log}");
    assert!(
        log.contains(&format!("(origin sequence {at})\n")),
        "did not resume from the newest checkpoint at {at}:\n{log}"
    );
    assert!(
        log.contains("tandem: 11 vertices resumed from the checkpoint\n"),
        "{log}"
    );
    assert!(!log.contains("refused"), "{log}");
    let stdout = text(&second.stdout);
    let resumed = printed(&stdout, "battery_energy");
    // The first sample after the gap adds no area: the total is the one
    // checkpointed, carried through the 1006 -> 1016 migration bit for bit.
    assert_eq!(
        (&resumed[0].1, resumed[0].2.as_str()),
        (total, "uncertain"),
        "{resumed:?}"
    );
    assert!(!printed(&stdout, "battery_energy.peak").is_empty());
}
