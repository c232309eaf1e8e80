//! `tandem ctl ...`: the controller's command line.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::up::ask::AskError;

use super::daemon::{self, Options};
use super::enrol::Enrolment;

/// The controller's directory when none is given.
pub const DEFAULT_DIR: &str = ".tandem-ctl";

/// `tandem ctl` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum CtlCommand {
    /// Run the controller: gateways' links (QUIC), rollouts, the web page.
    Serve {
        #[command(flatten)]
        dir: CtlDir,
        /// UDP address gateways dial.
        #[arg(long, default_value = "0.0.0.0:7141")]
        listen: SocketAddr,
        /// TCP address of the web page (no login: keep it on loopback).
        #[arg(long, default_value = "127.0.0.1:7142")]
        http: SocketAddr,
        /// The address enrolments give gateways (default: --listen as bound).
        #[arg(long)]
        advertise: Option<SocketAddr>,
    },
    /// Enrol a gateway: add it to the inventory and write its enrolment
    /// file (the controller's CA, a certificate and key for the gateway,
    /// the controller's address), to be carried to the gateway.
    Enrol {
        /// The gateway's name (lowercase letters, digits, `-`).
        gateway: String,
        /// Its hardware model.
        #[arg(long)]
        hardware: String,
        /// Its device models, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "")]
        devices: Vec<String>,
        /// Its release track.
        #[arg(long, default_value = "stable")]
        track: String,
        /// Where to write the enrolment (mode 0600; default GATEWAY.enrolment.json).
        #[arg(long)]
        out: Option<PathBuf>,
        /// The controller address to give it (default: the controller's).
        #[arg(long)]
        address: Option<SocketAddr>,
        #[command(flatten)]
        dir: CtlDir,
    },
    /// Roll BUNDLE out to a track, wave by wave.
    Rollout {
        /// The signed bundle file.
        bundle: PathBuf,
        /// The track (the bundle's manifest must name it).
        #[arg(long)]
        track: String,
        #[command(flatten)]
        dir: CtlDir,
    },
    /// The fleet and the rollouts.
    Status {
        #[command(flatten)]
        dir: CtlDir,
        /// One JSON object instead of a summary.
        #[arg(long)]
        json: bool,
    },
}

/// The controller's directory.
#[derive(Debug, clap::Args)]
pub struct CtlDir {
    /// The controller's directory: its CA, inventory and socket.
    #[arg(long = "dir", env = "TANDEM_CTL_DIR", default_value = DEFAULT_DIR)]
    pub path: PathBuf,
}

/// Runs a `tandem ctl` subcommand.
pub fn run(command: CtlCommand) -> ExitCode {
    match command {
        CtlCommand::Serve {
            dir,
            listen,
            http,
            advertise,
        } => match daemon::run(Options {
            dir: dir.path,
            listen,
            http,
            advertise,
        }) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("tandem ctl: {e}");
                ExitCode::from(2)
            }
        },
        CtlCommand::Enrol {
            gateway,
            hardware,
            devices,
            track,
            out,
            address,
            dir,
        } => {
            let line = format!(
                "enrol\t{gateway}\t{hardware}\t{}\t{track}\t{}",
                devices.join(","),
                address.map_or(String::new(), |a| a.to_string())
            );
            let text = match ask_saved(&dir.path, &line) {
                Ok(text) => text,
                Err(code) => return code,
            };
            let out = out.unwrap_or_else(|| PathBuf::from(format!("{gateway}.enrolment.json")));
            let saved = Enrolment::parse(&text).and_then(|e| e.save(&out).map(|()| e));
            match saved {
                Ok(e) => {
                    println!(
                        "enrolled {gateway} on track {track}: {} (mode 0600) dials {}; copy it to \
                         the gateway's config directory as enrolment.json, or give it to \
                         `tandem up --controller-enrolment`",
                        out.display(),
                        e.controller
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("tandem ctl: {e}");
                    ExitCode::from(1)
                }
            }
        }
        CtlCommand::Rollout { bundle, track, dir } => {
            let file = std::fs::canonicalize(&bundle).unwrap_or(bundle);
            match ask_saved(&dir.path, &format!("rollout\t{track}\t{}", file.display())) {
                Ok(text) => {
                    println!("{text}");
                    ExitCode::SUCCESS
                }
                Err(code) => code,
            }
        }
        CtlCommand::Status { dir, json } => {
            let text = match ask(&dir.path, "status") {
                Ok(text) => text,
                Err(code) => return code,
            };
            if json {
                println!("{text}");
            } else {
                print!("{}", summary(&text));
            }
            ExitCode::SUCCESS
        }
    }
}

/// Sends a request the controller answers once `fleet.json` holds what it
/// changed (an enrolment, a rollout); its answer, or the exit code.
fn ask_saved(dir: &Path, line: &str) -> Result<String, ExitCode> {
    let socket = daemon::socket(dir);
    said(
        dir,
        crate::up::ask::ask_within(&socket, line, daemon::SAVED_ANSWER_WAIT),
    )
}

/// Sends a request the controller answers at once (`status`).
fn ask(dir: &Path, line: &str) -> Result<String, ExitCode> {
    said(dir, crate::up::ask::ask(&daemon::socket(dir), line))
}

/// The controller's answer, or the exit code once what went wrong is said.
fn said(dir: &Path, answer: Result<String, AskError>) -> Result<String, ExitCode> {
    answer.map_err(|e| {
        match e {
            AskError::Unanswered { socket, source } => eprintln!(
                "tandem ctl: no controller answers on {} ({source}); start one with `tandem ctl \
                 serve --dir {}`",
                socket.display(),
                dir.display()
            ),
            AskError::Refused(_) | AskError::Silent { .. } | AskError::Unexpected(_) => {
                eprintln!("tandem ctl: {e}")
            }
        }
        ExitCode::from(1)
    })
}

/// `tandem ctl status` for people.
fn summary(json: &str) -> String {
    use std::fmt::Write as _;
    let v: serde_json::Value = serde_json::from_str(json).unwrap_or_default();
    let mut out = String::new();
    for g in v["gateways"].as_array().into_iter().flatten() {
        let version = match (&g["version"]["name"], &g["version"]["version"]) {
            (serde_json::Value::String(n), serde_json::Value::String(v)) => format!("{n} {v}"),
            _ => "-".into(),
        };
        let _ = writeln!(
            out,
            "{:<16} {:<8} {:<8} {:<24} {:<16} divergence {}",
            g["id"].as_str().unwrap_or("?"),
            g["track"].as_str().unwrap_or("?"),
            if g["online"] == true {
                "online"
            } else {
                "offline"
            },
            g["category"].as_str().unwrap_or("?"),
            version,
            g["divergence"]
        );
    }
    for r in v["rollouts"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "rollout {} {} {} to {}: {}{}",
            r["id"],
            r["bundle"]["name"].as_str().unwrap_or("?"),
            r["bundle"]["version"].as_str().unwrap_or("?"),
            r["track"].as_str().unwrap_or("?"),
            r["state"].as_str().unwrap_or("?"),
            r["reason"]
                .as_str()
                .map(|s| format!(": {s}"))
                .unwrap_or_default()
        );
        for w in r["waves"].as_array().into_iter().flatten() {
            let _ = writeln!(
                out,
                "  wave {}: {}/{} succeeded (needs {})",
                w["wave"], w["succeeded"], w["size"], w["needs"]
            );
        }
    }
    out
}
