//! Live upgrades with real processes: `tandem up`, then `tandem upgrade` and
//! `tandem rollback` against it, checking what reaches the sink.
//!
//! The graph integrates a constant power read by a synthetic source at
//! scheduled event times, so the energy after every record is known from the
//! input alone: each output must equal the one before plus power x the time
//! since the sample before. That is the reference run, record by record; a
//! state reset, a record counted twice or one lost breaks it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::up::Up;
use serde_json::Value;

/// The running graph: integrate v1.
const OLD: &str = "v1";
/// integrate v2 (state schema 1016, migrated from 1006).
const NEW: &str = "v2";

fn phase(v: &Value) -> &str {
    v["upgrade"]["phase"].as_str().unwrap_or("")
}

fn last_result(v: &Value) -> &str {
    v["upgrade"]["last"]["result"].as_str().unwrap_or("")
}

#[test]
fn an_upgrade_with_a_migration_takes_over_with_the_state_and_loses_nothing() {
    let up = Up::start("upgrade-migrates", OLD, 1.0);
    up.wait_both_serving();
    let new = up.graph_file("new", NEW, 1.0);
    // Each supervision period ends after 300 compared records.
    let answer = up.cli_ok(&[
        "upgrade",
        new.to_str().unwrap(),
        "--supervise-records",
        "300",
    ]);
    assert!(answer.contains("upgrading to"), "{answer}");
    let seen = up.wait_for("the shadow phase", |v| phase(v) == "shadow");
    assert_eq!(seen["upgrade"]["new_color"], "green");
    assert_eq!(seen["upgrade"]["supervise_records"], 300);
    let promoted = up.wait_for("the promotion", |v| phase(v) != "shadow");
    assert!(
        ["promoted", "replacing", "idle"].contains(&phase(&promoted)),
        "{promoted}"
    );
    let done = up.wait_for("the upgrade to finish", |v| phase(v) == "idle");
    assert_eq!(last_result(&done), "promoted", "{done}");
    let versions: Vec<&Value> = done["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| &i["version"])
        .collect();
    assert_eq!(versions[0], versions[1], "both run the new version: {done}");
    up.wait_equal_hashes();
    // The shadow's output was kept aside, tagged, from each side in turn:
    // the new version's while it was compared, the old one's after promotion.
    let shadow = up.shadow_lines();
    assert!(shadow
        .iter()
        .all(|l| l["shadow"] == true && l["channel"] == "energy"));
    for color in ["green", "blue"] {
        assert!(
            shadow.iter().any(|l| l["color"] == color),
            "no shadow output from {color} in {} lines",
            shadow.len()
        );
    }
    let records = up.stop_and_check();
    assert!(records > 500, "only {records} records reached the sink");
}

#[test]
fn a_new_version_off_by_one_percent_is_rolled_back_and_the_old_state_goes_on() {
    let up = Up::start("upgrade-wrong", OLD, 1.0);
    up.wait_both_serving();
    let wrong = up.graph_file("wrong", NEW, 1.01);
    up.cli_ok(&["upgrade", wrong.to_str().unwrap(), "--supervise", "5s"]);
    let after = up.wait_for("the automatic rollback", |v| {
        phase(v) == "idle" && last_result(v) == "rolled back"
    });
    let reason = after["upgrade"]["last"]["reason"].as_str().unwrap();
    assert!(reason.contains("differ"), "{reason}");
    // The first differing pair, as each version made it: 1% apart.
    assert!(reason.contains("the first: stream"), "{reason}");
    up.wait_both_serving();
    up.wait_equal_hashes();
    // The old version never stopped: its energy total runs on unbroken.
    up.stop_and_check();
}

#[test]
fn killing_the_new_instance_in_any_phase_loses_nothing() {
    let up = Up::start("upgrade-kills", OLD, 1.0);
    let new = up.graph_file("new", NEW, 1.0);
    // During the transfer (or, if it was quicker than a poll, early in the
    // shadow period), during the shadow period, and just after promotion.
    for targets in [&["transfer", "shadow"][..], &["shadow"], &["promoted"]] {
        up.wait_both_serving();
        up.cli_ok(&["upgrade", new.to_str().unwrap(), "--supervise", "1500ms"]);
        let v = up.wait_for(targets[0], |v| {
            targets.contains(&phase(v)) && v["instances"][1]["pid"].is_u64()
        });
        let green = v["instances"][1]["pid"].as_u64().unwrap();
        up.kill(green as i32, libc::SIGKILL);
        let v = up.wait_for("the rollback", |v| phase(v) == "idle");
        assert_eq!(
            last_result(&v),
            "rolled back",
            "killed in {}: {v}",
            phase(&v)
        );
    }
    up.wait_both_serving();
    up.wait_equal_hashes();
    up.stop_and_check();
}

#[test]
fn fifty_upgrades_and_rollbacks_end_with_both_instances_equal() {
    let up = Up::start("upgrade-cycles", OLD, 1.0);
    let new = up.graph_file("new", NEW, 1.0);
    for cycle in 0..50 {
        up.wait_both_serving();
        up.cli_ok(&["upgrade", new.to_str().unwrap(), "--supervise", "1h"]);
        let answer = up.cli_ok(&["rollback"]);
        assert!(answer.contains("rolled back"), "cycle {cycle}: {answer}");
    }
    up.wait_both_serving();
    let v = up.status();
    assert_eq!(phase(&v), "idle");
    assert_eq!(v["instances"][0]["version"], v["instances"][1]["version"]);
    up.wait_equal_hashes();
    let err = up.cli(&["rollback"]).unwrap_err();
    assert!(err.contains("no upgrade is running"), "{err}");
    up.stop_and_check();
}

#[test]
fn upgrades_that_would_lose_state_or_change_devices_are_refused_before_anything_runs() {
    let up = Up::start("upgrade-refused", OLD, 1.0);
    up.wait_both_serving();
    let before = up.status();
    let renamed = up.write(
        "renamed.toml",
        &up.graph_text(NEW, 1.0)
            .replace("name = \"up\"", "name = \"other\""),
    );
    let err = up.cli(&["upgrade", renamed.to_str().unwrap()]).unwrap_err();
    assert!(err.contains("is graph `other`, not `up`"), "{err}");
    let same = up.graph_file("same", OLD, 1.0);
    let err = up.cli(&["upgrade", same.to_str().unwrap()]).unwrap_err();
    assert!(err.contains("the graph running now"), "{err}");
    let faster = up.write(
        "faster.toml",
        &up.graph_text(NEW, 1.0).replace("rate = 400", "rate = 800"),
    );
    let err = up.cli(&["upgrade", faster.to_str().unwrap()]).unwrap_err();
    assert!(err.contains("sources or sinks"), "{err}");
    let err = up.cli(&["rollback"]).unwrap_err();
    assert!(err.contains("no upgrade is running"), "{err}");
    // Nobody was restarted.
    let after = up.status();
    for i in 0..2 {
        assert_eq!(before["instances"][i]["pid"], after["instances"][i]["pid"]);
    }
    up.stop_and_check();
}

#[test]
fn a_toggle_switches_both_instances_at_the_same_record() {
    let up = Up::launch("toggle", |up| {
        format!(
            r#"[graph]
name = "toggled"

[sources.gen]
kind = "synthetic"
channels = ["power"]
rate = 400
shape = "constant"
amplitude = 1000.0

[sources.features]
kind = "toggles"
names = ["double"]

[vertices.once]
kind = "scale"
inputs = ["gen.power"]

[vertices.twice]
kind = "scale"
inputs = ["gen.power"]
factor = 2.0

[vertices.power]
kind = "select"
inputs = ["once", "twice", "features.double"]

[sinks.out]
kind = "file"
path = "{}"
format = "csv"
inputs = ["power"]
"#,
            up.out.display()
        )
    });
    up.wait_both_serving();
    let err = up.cli(&["toggle", "triple", "on"]).unwrap_err();
    assert!(
        err.contains("no toggle `triple`; the graph's toggles are features.double"),
        "{err}"
    );
    assert_eq!(up.status()["toggles"]["features.double"], "off");
    let answer = up.cli_ok(&["toggle", "double", "on"]);
    assert!(answer.contains("features.double on"), "{answer}");
    assert_eq!(up.status()["toggles"]["features.double"], "on");
    let switched = up.wait_equal_hashes();
    assert_eq!(
        switched["divergence"], 0,
        "the instances switched at different records"
    );
    // Kill one: the survivor's state (the toggle's position) goes to the new one.
    let blue = switched["instances"][0]["pid"].as_u64().unwrap();
    up.kill(blue as i32, libc::SIGKILL);
    up.wait_for("blue replaced", |v| {
        v["instances"][0]["pid"].as_u64().is_some_and(|p| p != blue)
            && v["instances"][0]["role"] == "serving"
    });
    let after = up.wait_equal_hashes();
    assert_eq!(after["divergence"], 0, "{after}");
    let text = up.stop_and_read();
    let values: Vec<(u64, f64)> = text
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0].parse().unwrap(), f[3].parse().unwrap())
        })
        .collect();
    let switch = values
        .iter()
        .position(|&(_, v)| v == 2000.0)
        .expect("never doubled");
    assert!(switch > 0, "doubled from the start");
    assert!(values[..switch].iter().all(|&(_, v)| v == 1000.0));
    assert!(
        values[switch..].iter().all(|&(_, v)| v == 2000.0),
        "switched back"
    );
    assert!(
        values.windows(2).all(|w| w[0].0 < w[1].0),
        "out of order or repeated"
    );
}
