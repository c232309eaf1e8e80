//! A fleet as an operator runs it: one `tandem ctl serve` and five
//! gateways (`tandem up`, each with its own state and config directory) on
//! loopback, in two configuration categories, rolling bundles out by
//! wave; and the controller's web page in headless Chromium.
//!
//! Every wait is on an event (the controller's or an agent's status) with
//! a bound; every process is killed when a test ends, however it ends.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::fleet::{gateway, graph, target, Controller, Gateway, Key, Root};
use serde_json::Value;

/// Waves [50, 100] after the canaries; every gateway of a wave must
/// succeed; the first failure halts.
const TRACKS: &str =
    "[tracks.stable]\nwaves = [50, 100]\nsuccess_percent = 100\nhalt_after_failures = 1\n";

/// Category A (pi4, inverter): a1, a2, a3. Category B (cm4, battery): b1, b2.
/// Wave 0: a1 and b1; wave 1: a2 (50% of 5, rounded up, is 3); wave 2: a3, b2.
const FLEET: [(&str, &str, &str); 5] = [
    ("gw-a1", "pi4", "inverter-x"),
    ("gw-a2", "pi4", "inverter-x"),
    ("gw-a3", "pi4", "inverter-x"),
    ("gw-b1", "cm4", "battery-y,meter-z"),
    ("gw-b2", "cm4", "meter-z,battery-y"),
];

fn start_fleet(root: &Root, key: &Key) -> (Controller, Vec<Gateway>) {
    let ctl = Controller::start(&root.0, TRACKS, "127.0.0.1:0");
    let gateways: Vec<Gateway> = FLEET
        .iter()
        .map(|(id, hw, devices)| {
            let enrolment = ctl.enrol(id, hw, devices, "stable");
            Gateway::start(&root.0, id, enrolment, key)
        })
        .collect();
    let all: Vec<&Gateway> = gateways.iter().collect();
    ctl.wait_for("five gateways online and serving", &all, |v| {
        FLEET.iter().all(|(id, _, _)| {
            let g = gateway(v, id);
            g["online"] == true
                && g["instances"]
                    .as_array()
                    .is_some_and(|i| i.len() == 2 && i.iter().all(|i| i["role"] == "serving"))
        })
    });
    (ctl, gateways)
}

/// Online, with both instances serving.
fn serving(g: &Value) -> bool {
    g["online"] == true
        && g["instances"]
            .as_array()
            .is_some_and(|i| i.len() == 2 && i.iter().all(|i| i["role"] == "serving"))
}

fn rollout(v: &Value, id: u64) -> &Value {
    v["rollouts"]
        .as_array()
        .and_then(|all| all.iter().find(|r| r["id"] == id))
        .unwrap_or(&Value::Null)
}

/// The position of the first log line containing `text` (the snapshot's
/// log is newest first: a larger position is earlier).
fn logged_at(v: &Value, text: &str) -> Option<usize> {
    v["log"]
        .as_array()?
        .iter()
        .position(|l| l["line"].as_str().is_some_and(|l| l.contains(text)))
}

#[test]
fn a_good_bundle_rolls_out_wave_by_wave_and_a_restarted_gateway_finishes_it() {
    let root = Root::new("good");
    let key = Key::new(&root.0, "stable");
    let (ctl, mut gateways) = start_fleet(&root, &key);
    let bundle = key.bundle(&root.0, "2.0.0", &graph(2, 1.0));
    let said = ctl
        .ctl(&["rollout", bundle.to_str().unwrap(), "--track", "stable"])
        .unwrap_or_else(|e| panic!("{e}\n{}", ctl.log()));
    assert!(said.contains("rollout 1: fleet 2.0.0"), "{said}");

    // Wave 0 is one gateway of each category, and only they get it first.
    let all: Vec<&Gateway> = gateways.iter().collect();
    let v = ctl.wait_for("wave 0 sent", &all, |v| {
        let r = rollout(v, 1);
        ["gw-a1", "gw-b1"]
            .iter()
            .all(|id| target(r, id)["sends"].as_u64() >= Some(1))
    });
    let r = rollout(&v, 1);
    assert_eq!(r["waves"].as_array().unwrap().len(), 3, "{r:#}");
    for id in ["gw-a2", "gw-a3", "gw-b2"] {
        assert_eq!(target(r, id)["sends"], 0, "{id} before the canaries: {r:#}");
    }

    // gw-a2 (wave 1) is killed while it installs, and started again: the
    // controller sends the bundle again and it finishes.
    ctl.wait_for("gw-a2 sent the bundle", &all, |v| {
        target(rollout(v, 1), "gw-a2")["sends"].as_u64() >= Some(1)
    });
    gateways[1].wait_for("gw-a2's upgrade under way", |s| {
        matches!(s["upgrade"]["phase"].as_str(), Some("transfer" | "shadow"))
    });
    // Held there: on a loaded machine the whole upgrade may otherwise end
    // before the kill, and there would be nothing left to send again.
    gateways[1].freeze();
    let v = ctl.status();
    assert_eq!(target(rollout(&v, 1), "gw-a1")["state"], "succeeded");
    drop(all);
    gateways[1].restart();
    let all: Vec<&Gateway> = gateways.iter().collect();
    let v = ctl.wait_for("the rollout complete", &all, |v| {
        rollout(v, 1)["state"] == "complete"
            && FLEET
                .iter()
                .all(|(id, _, _)| target(rollout(v, 1), id)["state"] == "succeeded")
    });
    let r = rollout(&v, 1);
    assert!(
        target(r, "gw-a2")["sends"].as_u64() >= Some(2),
        "gw-a2 was sent it again after its restart: {r:#}"
    );
    // Each wave started after the one before it had all succeeded.
    let wave1 = logged_at(&v, "wave 1 started").unwrap();
    let wave2 = logged_at(&v, "wave 2 started").unwrap();
    for canary in ["gw-a1: succeeded", "gw-b1: succeeded"] {
        assert!(logged_at(&v, canary).unwrap() > wave1, "{canary}: {v:#}");
    }
    assert!(logged_at(&v, "gw-a2: succeeded").unwrap() > wave2);
    // Every gateway runs the new version, and says so.
    for g in &gateways {
        let status = g.wait_for("the bundle installed", |s| {
            s["bundles"]["installed"]["version"] == "2.0.0" && s["upgrade"]["phase"] == "idle"
        });
        assert_eq!(status["upgrade"]["last"]["result"], "promoted", "{}", g.id);
    }
    let v = ctl.wait_for("versions reported", &all, |v| {
        FLEET
            .iter()
            .all(|(id, _, _)| gateway(v, id)["version"]["version"] == "2.0.0")
    });
    assert_eq!(gateway(&v, "gw-b2")["category"], "cm4 [battery-y, meter-z]");
}

#[test]
fn a_diverging_bundle_is_rolled_back_on_the_canaries_and_halts_the_rollout() {
    let root = Root::new("diverging");
    let key = Key::new(&root.0, "stable");
    let (ctl, gateways) = start_fleet(&root, &key);
    // The calibration changes: the new version's output differs on live data.
    let bundle = key.bundle(&root.0, "2.0.0", &graph(1, 1.5));
    ctl.ctl(&["rollout", bundle.to_str().unwrap(), "--track", "stable"])
        .unwrap_or_else(|e| panic!("{e}\n{}", ctl.log()));
    let all: Vec<&Gateway> = gateways.iter().collect();
    let v = ctl.wait_for("the rollout halted, the canaries settled", &all, |v| {
        let r = rollout(v, 1);
        r["state"] == "halted"
            && ["gw-a1", "gw-b1"]
                .iter()
                .all(|id| target(r, id)["state"] == "failed")
    });
    let r = rollout(&v, 1);
    let reason = r["reason"].as_str().unwrap();
    assert!(reason.contains("rolled back"), "{reason}");
    for id in ["gw-a1", "gw-b1"] {
        let why = target(r, id)["reason"].as_str().unwrap();
        assert!(why.contains("rolled back"), "{id}: {why}");
    }
    // Nobody else was touched: never sent, listed as skipped with the reason.
    for id in ["gw-a2", "gw-a3", "gw-b2"] {
        let t = target(r, id);
        assert_eq!(t["sends"], 0, "{id}: {t}");
        assert_eq!(t["state"], "skipped", "{id}: {t}");
        assert!(t["reason"].as_str().unwrap().contains("halted"));
    }
    for g in &gateways {
        let status = g.status();
        assert_eq!(status["upgrade"]["phase"], "idle", "{}", g.id);
        assert!(
            status["bundles"]["installed"].is_null(),
            "{}: {status}",
            g.id
        );
        let touched = g.id == "gw-a1" || g.id == "gw-b1";
        assert_eq!(
            status["bundles"]["last"]["result"] == "rolled back",
            touched,
            "{}: {status}",
            g.id
        );
    }
    // Both instances of every gateway serve the old version again.
    for g in &gateways {
        g.wait_for("both serving again", |s| {
            s["instances"]
                .as_array()
                .is_some_and(|i| i.iter().all(|i| i["role"] == "serving"))
        });
    }
}

#[test]
fn a_usb_install_on_an_unreachable_gateway_is_reported_on_reconnection() {
    let root = Root::new("usb");
    let key = Key::new(&root.0, "stable");
    let mut ctl = Controller::start(&root.0, TRACKS, "127.0.0.1:0");
    let enrolment = ctl.enrol("gw-usb", "pi4", "inverter-x", "stable");
    let g = Gateway::start(&root.0, "gw-usb", enrolment, &key);
    ctl.wait_for("the gateway online", &[&g], |v| {
        gateway(v, "gw-usb")["online"] == true
    });
    let port = ctl.quic.clone();
    ctl.stop();
    g.wait_for("both serving", |s| {
        s["instances"]
            .as_array()
            .is_some_and(|i| i.iter().all(|i| i["role"] == "serving"))
    });

    // Someone walks up with a USB stick while the controller is away.
    let bundle = key.bundle(&root.0, "2.0.0", &graph(2, 1.0));
    let said = g
        .install(&bundle)
        .unwrap_or_else(|e| panic!("{e}\n{}", g.log()));
    assert!(!said.is_empty());
    g.wait_for("the USB install promoted", |s| {
        s["bundles"]["installed"]["version"] == "2.0.0" && s["upgrade"]["phase"] == "idle"
    });

    // The controller comes back on the same address: the gateway reconnects
    // and reports what happened, as a local install.
    let ctl = Controller::start(&root.0, TRACKS, &port);
    let v = ctl.wait_for("the USB install reported", &[&g], |v| {
        let gw = gateway(v, "gw-usb");
        gw["online"] == true
            && gw["version"]["version"] == "2.0.0"
            && gw["history"]
                .as_array()
                .is_some_and(|h| h.iter().any(|e| e["result"] == "promoted"))
    });
    let entry = &gateway(&v, "gw-usb")["history"][0];
    assert_eq!(entry["via"], "local", "{entry}");
    assert_eq!(entry["bundle"], "fleet 2.0.0");
    assert!(
        logged_at(&v, "installed locally").is_some(),
        "the log says so: {v:#}"
    );
}

/// The fleet's page in headless Chromium: a screenshot of the size asked
/// that is not blank, and a DOM that names the gateways, their versions
/// and the rollout's waves.
#[test]
fn the_web_page_shows_the_fleet_and_the_rollout_in_a_browser() {
    let chromium = std::path::Path::new("/usr/bin/chromium");
    if !chromium.exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "chromium is missing in CI: apt-get install chromium"
        );
        println!("skipped: apt-get install chromium");
        return;
    }
    let root = Root::new("web");
    let key = Key::new(&root.0, "stable");
    let ctl = Controller::start(&root.0, TRACKS, "127.0.0.1:0");
    let mut gateways = Vec::new();
    for (id, hw, devices) in [FLEET[0], FLEET[3]] {
        let enrolment = ctl.enrol(id, hw, devices, "stable");
        gateways.push(Gateway::start(&root.0, id, enrolment, &key));
    }
    let all: Vec<&Gateway> = gateways.iter().collect();
    ctl.wait_for("both online and serving", &all, |v| {
        ["gw-a1", "gw-b1"].iter().all(|id| serving(gateway(v, id)))
    });
    let bundle = key.bundle(&root.0, "2.0.0", &graph(2, 1.0));
    ctl.ctl(&["rollout", bundle.to_str().unwrap(), "--track", "stable"])
        .unwrap();
    ctl.wait_for("the rollout complete", &all, |v| {
        rollout(v, 1)["state"] == "complete"
            && ["gw-a1", "gw-b1"]
                .iter()
                .all(|id| gateway(v, id)["version"]["version"] == "2.0.0")
    });
    let url = format!("http://{}/", ctl.http);
    let browse = |extra: &[&str], profile: &str| {
        let profile = root.0.join(profile);
        std::fs::create_dir_all(&profile).unwrap();
        std::process::Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(extra)
            .arg(&url)
            .output()
            .unwrap()
    };
    let dom = browse(&["--dump-dom"], "profile-dom");
    let dom = String::from_utf8_lossy(&dom.stdout);
    for expected in [
        "gw-a1",
        "gw-b1",
        "fleet 2.0.0",
        "rollout 1",
        "complete",
        "wave 0",
        "2/2 succeeded",
        "serving",
    ] {
        assert!(
            dom.contains(expected),
            "the page lacks `{expected}`:\n{dom}"
        );
    }
    let shot = root.0.join("fleet.png");
    let out = browse(
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1280,900",
        ],
        "profile-shot",
    );
    let png = std::fs::read(&shot).unwrap_or_else(|e| {
        panic!(
            "no screenshot ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let decoder = png::Decoder::new(std::io::Cursor::new(&png));
    let mut reader = decoder.read_info().unwrap();
    let (width, height) = (reader.info().width, reader.info().height);
    assert_eq!((width, height), (1280, 900), "the size asked");
    let mut pixels = vec![0; reader.output_buffer_size()];
    let frame = reader.next_frame(&mut pixels).unwrap();
    let pixels = &pixels[..frame.buffer_size()];
    let step = frame.color_type.samples();
    let first = &pixels[..step];
    let distinct = pixels
        .chunks(step)
        .filter(|p| *p != first)
        .take(1000)
        .count();
    assert!(distinct >= 1000, "the screenshot is (nearly) one colour");
    if let Ok(keep) = std::env::var("TANDEM_KEEP_SCREENSHOT") {
        std::fs::copy(&shot, keep).unwrap();
    }
}
