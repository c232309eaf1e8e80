//! Logs of `tandem up` through tracing: levels a person can filter, QUIC's
//! own events on request, and a bad filter said plainly.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::up::Up;

fn launch(name: &str, filter: Option<&'static str>) -> Up {
    Up::launch_with(
        name,
        |up| up.graph_text("v1", 1.0),
        |command| {
            command.env_remove("TANDEM_LOG");
            if let Some(filter) = filter {
                command.env("TANDEM_LOG", filter);
            }
        },
    )
}

#[test]
fn quic_events_are_logged_when_asked_for_and_quiet_by_default() {
    let up = launch("logs-quic", Some("info,quinn=trace,quinn_proto=trace"));
    up.wait_both_serving();
    let log = up.wait_log("QUIC events", |log| {
        log.lines().any(|l| l.starts_with("tandem: trace: quinn"))
    });
    // Instances name their colour.
    assert!(log.contains("tandem blue: "), "{log}");
    assert!(up.stop_and_check() > 0);

    let up = launch("logs-quiet", None);
    up.wait_both_serving();
    up.wait_equal_hashes();
    let log = up.log();
    assert!(
        !log.lines()
            .any(|l| l.contains(": trace: ") || l.contains(": debug: ")),
        "{log}"
    );
    assert!(log.contains("tandem: up `up`: agent on"), "{log}");
    assert!(up.stop_and_check() > 0);
}

#[test]
fn losses_are_warnings_a_filter_can_keep() {
    let up = launch("logs-warn", Some("warn"));
    let serving = up.wait_both_serving();
    let blue = serving["instances"][0]["pid"].as_u64().unwrap();
    up.kill(i32::try_from(blue).unwrap(), libc::SIGKILL);
    let log = up.wait_log("the loss as a warning", |log| {
        log.lines()
            .any(|l| l.starts_with("tandem: warning: blue: ") && l.contains("exited"))
    });
    assert!(
        !log.lines().any(|l| l.contains("agent on")),
        "info lines pass a `warn` filter:\n{log}"
    );
    up.wait_both_serving();
    assert!(up.stop_and_check() > 0);
}

#[test]
fn a_bad_filter_is_reported_and_the_default_used() {
    let up = launch("logs-bad", Some("loud=very"));
    up.wait_both_serving();
    let log = up.wait_log("the refusal", |log| {
        log.contains("TANDEM_LOG: `loud=very` is not a filter")
    });
    assert!(log.contains("LEVEL[,TARGET=LEVEL...]"), "{log}");
    assert!(
        log.contains("agent on"),
        "the default filter shows info:\n{log}"
    );
    assert!(up.stop_and_check() > 0);
}
