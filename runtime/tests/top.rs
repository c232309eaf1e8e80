//! `tandem top` in a real terminal: tmux runs it against a running
//! `tandem up`; the screen must show both instances serving, and `q` must
//! end it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::up::Up;

/// Longest wait for anything.
const BOUND: Duration = Duration::from_secs(30);

/// A tmux server of this test's own (its own socket), killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .env_remove("TMUX")
            .output()
            .unwrap()
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-t", "top"]).stdout).into_owned()
    }

    /// Waits until the screen satisfies `done`; panics with it after [`BOUND`].
    fn wait_screen(&self, what: &str, up: &Up, done: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + BOUND;
        loop {
            let screen = self.screen();
            if done(&screen) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no {what} within {BOUND:?}; the screen:\n{screen}\nagent log:\n{}",
                up.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

fn tmux_present() -> bool {
    Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn top_shows_both_instances_serving_and_quits_on_q() {
    if !tmux_present() {
        assert!(
            std::env::var_os("CI").is_none(),
            "tmux is needed for this test on CI: install the Debian package tmux"
        );
        eprintln!("skipped: tmux is not installed (Debian package tmux)");
        return;
    }
    let up = Up::start("top", "v1", 1.0);
    up.wait_both_serving();
    let tmux = Tmux {
        socket: format!("tandem-top-test-{}", std::process::id()),
    };
    // The pane stays after top ends, saying how it ended.
    let command = format!(
        "'{}' top --state-dir '{}'; echo \"top exited $?\"; read _",
        env!("CARGO_BIN_EXE_tandem"),
        up.state().display()
    );
    let started = tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "top",
        "-x",
        "140",
        "-y",
        "40",
        &command,
    ]);
    assert!(started.status.success(), "tmux: {started:?}");

    tmux.wait_screen("both instances serving on screen", &up, |screen| {
        let serving = |color: &str| {
            screen
                .lines()
                .any(|l| l.contains(&format!("│{color} ")) && l.contains("serving"))
        };
        serving("blue")
            && serving("green")
            && screen.contains("divergence 0")
            && screen.contains("upgrade: idle")
            && screen.contains("energy")
    });
    let sent = tmux.run(&["send-keys", "-t", "top", "q"]);
    assert!(sent.status.success());
    tmux.wait_screen("top to quit on q", &up, |screen| {
        screen.contains("top exited 0")
    });
    up.stop_and_check();
}
