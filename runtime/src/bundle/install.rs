//! The gateway side: a bundle from a USB stick (`tandem install FILE`) or
//! pushed by a controller goes through [`Gateway::prepare`], off the
//! agent's loop: every check of [`super::verify`], then the payloads are
//! unpacked into a private staging directory under `DIR/bundles/`. Nothing
//! else is touched; a refusal leaves nothing behind (an [`Unpacked`] that is
//! dropped without [`Unpacked::commit`] removes its staging directory).
//!
//! The agent's hub then takes it: [`Unpacked::commit`] renames the staging
//! directory to `DIR/bundles/NAME-VERSION/` and the live upgrade starts
//! with its graph (and binary). [`Installs`] follows it to its outcome,
//! appends each outcome to `DIR/bundles/history.jsonl`, and raises the
//! anti-rollback floor only when the upgrade committed.

use std::fs::File;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use semver::Version;
use serde_json::{json, Value};
use tandem_core::graph::Loaded;
use tandem_core::split::Split;

use super::archive::MAX_BUNDLE_BYTES;
use super::floor::{Floor, StateFileError};
use super::manifest::{Manifest, Payload};
use super::policy::{self, runtime_version};
use super::revocation::{self, Revocation};
use super::sign::KeyId;
use super::time::UnixTime;
use super::trust::{GatewayConfig, TrustError};
use super::verify::{self, Contents, Refusal, Verified};

/// Where a gateway keeps bundles, and where it reads whom it trusts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gateway {
    /// `DIR/bundles`.
    pub bundles_dir: PathBuf,
    /// The config directory (`/etc/tandem`).
    pub config_dir: PathBuf,
    /// Largest bundle file accepted.
    pub max_bytes: u64,
}

/// Why `tandem install` (or a push) did not install a file. Nothing was
/// changed in any case.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The file cannot be opened, or is not a regular file.
    #[error("{}: {reason}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The gateway's trust configuration cannot be read.
    #[error("{0}")]
    Config(#[from] TrustError),
    /// The gateway's floor or revocations cannot be read.
    #[error("{0}")]
    State(#[from] StateFileError),
    /// A check refused it.
    #[error("{} is refused: {refusal}", path.display())]
    Refused {
        /// The file.
        path: PathBuf,
        /// Why.
        refusal: Box<Refusal>,
    },
    /// Its graph does not load in this runtime, or uses a kind its
    /// manifest does not declare.
    #[error("{} is refused: its graph {reason}", path.display())]
    Graph {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Unpacking failed (a full disk, say).
    #[error("cannot unpack into {}: {source}", dir.display())]
    Unpack {
        /// Where.
        dir: PathBuf,
        /// Why.
        source: io::Error,
    },
}

impl InstallError {
    /// The bundle's name and version, when the refusal came after its
    /// manifest was read.
    fn refused_at(&self) -> Option<(String, Version)> {
        match self {
            InstallError::Refused { refusal, .. } => match refusal.as_ref() {
                Refusal::Policy(
                    policy::PolicyRefusal::NotNewer { name, version, .. }
                    | policy::PolicyRefusal::Revoked { name, version, .. },
                ) => Some((name.clone(), version.clone())),
                _ => None,
            },
            _ => None,
        }
    }
}

/// Why the hub does not start a bundle that passed its checks: what the
/// gateway holds changed since (see [`Installs::recheck`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Recheck {
    /// Its version is no longer above the anti-rollback floor, or was
    /// revoked ([`policy::check_floor`]).
    #[error(transparent)]
    Policy(policy::PolicyRefusal),
    /// Another bundle's live upgrade runs.
    #[error("bundle {name} {version} is being installed; wait for its outcome (`tandem status`)")]
    Busy {
        /// The bundle being installed.
        name: String,
        /// Its version.
        version: Version,
    },
}

/// Why a revocation was not recorded; nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum RevokeError {
    /// The revocations on disk cannot be read: writing the list over them
    /// would drop the ones it holds.
    #[error("cannot record the revocation: {0}")]
    Read(#[from] StateFileError),
    /// The revocations file could not be written.
    #[error("cannot record the revocation in {} ({source}); nothing changed", file.display())]
    Write {
        /// The revocations file.
        file: PathBuf,
        /// Why.
        source: io::Error,
    },
}

/// An accepted file, ready for the hub.
#[derive(Debug)]
pub enum Prepared {
    /// A bundle, unpacked into its staging directory.
    Bundle(Box<Unpacked>),
    /// A revocation, signed as its track requires.
    Revocation {
        /// What it revokes.
        revocation: Revocation,
        /// The trusted keys that signed it.
        signers: Vec<KeyId>,
    },
}

/// A verified bundle in its staging directory (removed on drop unless
/// committed).
#[derive(Debug)]
pub struct Unpacked {
    /// Its manifest.
    pub manifest: Manifest,
    /// The trusted keys that signed it.
    pub signers: Vec<KeyId>,
    /// Its graph, loaded from the staging directory.
    pub loaded: Loaded,
    /// It, cut for 1+1.
    pub split: Split,
    /// The file it came from.
    pub source: PathBuf,
    staging: PathBuf,
    dir: PathBuf,
    committed: bool,
}

impl Unpacked {
    /// Where it is unpacked once committed: `DIR/bundles/NAME-VERSION`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Its graph file, once committed.
    pub fn graph_file(&self) -> PathBuf {
        self.dir.join(self.manifest.graph.as_str())
    }

    /// Its runtime binary, once committed.
    pub fn binary(&self) -> Option<PathBuf> {
        self.manifest
            .binary
            .as_ref()
            .map(|b| self.dir.join(b.as_str()))
    }

    /// Moves the staging directory to [`Unpacked::dir`], replacing an
    /// earlier unpacking of the same version (one rolled back). The caller
    /// makes sure nothing runs from it.
    pub fn commit(&mut self) -> io::Result<()> {
        if self.dir.exists() {
            std::fs::remove_dir_all(&self.dir)?;
        }
        std::fs::rename(&self.staging, &self.dir)?;
        if let Some(parent) = self.dir.parent() {
            File::open(parent)?.sync_all()?;
        }
        self.committed = true;
        Ok(())
    }

    /// Removes what was unpacked, committed or not (an upgrade that could
    /// not start after all).
    pub fn discard(mut self) {
        let dir = if self.committed {
            self.dir.clone()
        } else {
            self.staging.clone()
        };
        let _ = std::fs::remove_dir_all(dir);
        self.committed = true;
    }
}

impl Drop for Unpacked {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.staging);
        }
    }
}

/// What a gateway has installed and revoked, as read from `DIR/bundles`.
#[derive(Clone, Debug, Default)]
pub struct GatewayState {
    /// The anti-rollback floor.
    pub floor: Floor,
    /// The recorded revocations.
    pub revoked: Vec<Revocation>,
}

impl Gateway {
    /// The gateway whose bundles live in `bundles_dir` and whose trust is in `config_dir`.
    pub fn new(bundles_dir: PathBuf, config_dir: PathBuf) -> Gateway {
        Gateway {
            bundles_dir,
            config_dir,
            max_bytes: MAX_BUNDLE_BYTES,
        }
    }

    /// `DIR/bundles/floor.json`.
    pub fn floor_file(&self) -> PathBuf {
        self.bundles_dir.join("floor.json")
    }

    /// `DIR/bundles/revoked.json`.
    pub fn revoked_file(&self) -> PathBuf {
        self.bundles_dir.join("revoked.json")
    }

    /// `DIR/bundles/history.jsonl`.
    pub fn history_file(&self) -> PathBuf {
        self.bundles_dir.join("history.jsonl")
    }

    /// The floor and revocations on disk.
    pub fn state(&self) -> Result<GatewayState, StateFileError> {
        Ok(GatewayState {
            floor: Floor::load(&self.floor_file())?,
            revoked: revocation::load(&self.revoked_file())?,
        })
    }

    /// Checks `file` as [`Gateway::prepare`] does, unpacking nothing
    /// (`tandem bundle verify`).
    pub fn check(&self, file: &Path, now: UnixTime) -> Result<Verified, InstallError> {
        self.run(file, now, &mut verify::discard)
    }

    fn run(
        &self,
        file: &Path,
        now: UnixTime,
        sink: &mut dyn FnMut(&Payload) -> io::Result<Box<dyn io::Write>>,
    ) -> Result<Verified, InstallError> {
        let config = GatewayConfig::load(&self.config_dir)?;
        let state = self.state()?;
        let mut opened = open_regular(file)?;
        let runtime = runtime_version();
        let registry = tandem_nodes::registry();
        let gateway = policy::Gateway {
            now,
            identity: &config.identity,
            floor: &state.floor,
            revoked: &state.revoked,
            runtime: &runtime,
            registry: &registry,
        };
        verify::verify(&mut opened, self.max_bytes, &config.trust, &gateway, sink).map_err(
            |refusal| InstallError::Refused {
                path: file.to_path_buf(),
                refusal: Box::new(refusal),
            },
        )
    }

    /// Every check, then the payloads unpacked into a staging directory
    /// (directories 0700, files 0600, the binary 0700); blocking. `now` is
    /// the time of the check (read once by the caller).
    pub fn prepare(&self, file: &Path, now: UnixTime) -> Result<Prepared, InstallError> {
        crate::private::create_dir(&self.bundles_dir).map_err(|source| InstallError::Unpack {
            dir: self.bundles_dir.clone(),
            source,
        })?;
        let staging = self.bundles_dir.join(format!(
            ".staging-{}-{}",
            std::process::id(),
            next_staging()
        ));
        let mut guard = StagingGuard(Some(staging.clone()));
        let mut binary_path = None;
        let verified = {
            let staging = staging.clone();
            let mut sink = |p: &Payload| -> io::Result<Box<dyn io::Write>> {
                let path = staging.join(p.path.as_str());
                if let Some(dir) = path.parent() {
                    crate::private::create_dir(dir)?;
                }
                let file = crate::private::file_options()
                    .write(true)
                    .create_new(true)
                    .open(&path)?;
                Ok(Box::new(SyncOnFlush(file)))
            };
            crate::private::create_dir(&staging).map_err(|source| InstallError::Unpack {
                dir: staging.clone(),
                source,
            })?;
            self.run(file, now, &mut sink)?
        };
        let manifest = match verified.contents {
            Contents::Revocation(revocation) => {
                return Ok(Prepared::Revocation {
                    revocation,
                    signers: verified.signers,
                })
            }
            Contents::Bundle(m) => *m,
        };
        if let Some(b) = &manifest.binary {
            let path = staging.join(b.as_str());
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700)).map_err(
                |source| InstallError::Unpack {
                    dir: staging.clone(),
                    source,
                },
            )?;
            binary_path = Some(path);
        }
        let graph = staging.join(manifest.graph.as_str());
        let graph_err = |reason: String| InstallError::Graph {
            path: file.to_path_buf(),
            reason,
        };
        let loaded = crate::graph_file::load_regular(&graph).map_err(|e| {
            graph_err(format!(
                "does not load in this runtime: {}",
                e.to_string()
                    .replace(&staging.display().to_string(), "bundle:")
            ))
        })?;
        if let Some(node) = loaded.plan.nodes.iter().find(|n| {
            n.kind.role() == tandem_core::Role::Vertex
                && !manifest
                    .kinds
                    .iter()
                    .any(|k| k.name == n.kind.name && k.version == n.kind.version)
        }) {
            return Err(graph_err(format!(
                "uses {} v{} (vertex `{}`), which its manifest does not declare",
                node.kind.name, node.kind.version, node.id
            )));
        }
        let split = tandem_core::split::split(&loaded.plan)
            .map_err(|e| graph_err(format!("cannot run as 1+1: {e}")))?;
        if let Some(binary) = &binary_path {
            crate::private::trusted_executable(binary)
                .map_err(|e| graph_err(format!("comes with a binary that cannot run: {e}")))?;
        }
        let dir = self
            .bundles_dir
            .join(format!("{}-{}", manifest.name, manifest.version));
        guard.0 = None;
        Ok(Prepared::Bundle(Box::new(Unpacked {
            manifest,
            signers: verified.signers,
            loaded,
            split,
            source: file.to_path_buf(),
            staging,
            dir,
            committed: false,
        })))
    }
}

/// Removes a staging directory unless disarmed.
struct StagingGuard(Option<PathBuf>);

impl Drop for StagingGuard {
    fn drop(&mut self) {
        if let Some(dir) = self.0.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A file that is synced when flushed: an unpacked payload is on disk
/// before the upgrade starts from it.
struct SyncOnFlush(File);

impl io::Write for SyncOnFlush {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.sync_all()
    }
}

/// Removes the staging directories of installs a crash or a power cut
/// interrupted (up to a bundle's unpacked size each). Only the agent, which
/// holds the state directory, stages; at its start none is its own.
fn remove_leftover_staging(bundles_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(bundles_dir) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        if entry.file_name().to_string_lossy().starts_with(".staging-") {
            match std::fs::remove_dir_all(entry.path()) {
                Ok(()) => tracing::info!(
                    "removed {}, left by an interrupted install",
                    entry.path().display()
                ),
                Err(e) => tracing::warn!("cannot remove {}: {e}", entry.path().display()),
            }
        }
    }
}

fn next_staging() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Opens `file` for reading if it is a regular file (a FIFO or device is
/// refused at once, without blocking on it).
fn open_regular(file: &Path) -> Result<File, InstallError> {
    let err = |reason: String| InstallError::Open {
        path: file.to_path_buf(),
        reason,
    };
    crate::private::open_regular(file)
        .map_err(|e| err(format!("cannot open it: {e}")))?
        .ok_or_else(|| {
            err(
                "it is not a regular file (a FIFO, device, socket or directory); name a bundle file"
                    .into(),
            )
        })
}

/// The outcome of one install, as `history.jsonl` and `tandem status` show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The upgrade committed; the floor was raised.
    Promoted,
    /// The upgrade rolled back (the reason says why); the floor stays.
    RolledBack(String),
    /// Refused before any instance was touched.
    Refused(String),
    /// A revocation was recorded.
    Revoked,
}

/// What the agent's hub keeps of bundles: the install running now, the
/// floor, the revocations, and the last outcome. The hub calls it; it does
/// the (small) file writes of outcomes.
#[derive(Debug)]
pub struct Installs {
    /// Where bundles go and whom the gateway trusts.
    pub gateway: Gateway,
    /// The bundle whose upgrade runs now.
    pub running: Option<Running>,
    floor: Floor,
    revoked: Vec<Revocation>,
    installed: Value,
    last: Value,
}

/// A bundle being installed by a live upgrade.
#[derive(Clone, Debug)]
pub struct Running {
    /// Its name.
    pub name: String,
    /// Its version.
    pub version: Version,
    /// Where it is unpacked.
    pub dir: PathBuf,
}

impl Installs {
    /// The state of `gateway`, as its files say (problems are logged: a
    /// damaged floor refuses every bundle when one is checked, and the
    /// floor and revocations are read again before either is written, so
    /// that a file repaired meanwhile is not overwritten by what was held).
    pub fn open(gateway: Gateway) -> Installs {
        remove_leftover_staging(&gateway.bundles_dir);
        let state = gateway.state().unwrap_or_else(|e| {
            tracing::warn!("{e}");
            GatewayState::default()
        });
        let (installed, last) = read_history(&gateway.history_file());
        Installs {
            gateway,
            running: None,
            floor: state.floor,
            revoked: state.revoked,
            installed,
            last,
        }
    }

    /// Why the hub should not start `m` now, if it should not: its version
    /// is no longer above the floor, or was revoked, since it was checked,
    /// or another install is under way.
    pub fn recheck(&self, m: &Manifest) -> Option<Recheck> {
        if let Err(refusal) = policy::check_floor(m, &self.floor, &self.revoked) {
            return Some(Recheck::Policy(refusal));
        }
        self.running.as_ref().map(|running| Recheck::Busy {
            name: running.name.clone(),
            version: running.version.clone(),
        })
    }

    /// Records a revocation (durably, before the answer).
    pub fn revoke(&mut self, revocation: Revocation) -> Result<String, RevokeError> {
        let what = format!("{} {}", revocation.name, revocation.version);
        let file = self.gateway.revoked_file();
        // What is on disk is what the new list extends, not what was read
        // at start: that may have failed, and the file been repaired since.
        let mut revoked = revocation::load(&file)?;
        if revoked.contains(&revocation) {
            self.revoked = revoked;
            return Ok(format!("{what} was revoked already"));
        }
        revoked.push(revocation);
        revocation::save(&file, &revoked).map_err(|source| RevokeError::Write { file, source })?;
        self.revoked = revoked;
        self.record(&what, Outcome::Revoked, "");
        let installed = self.floor.iter().any(|(n, v)| format!("{n} {v}") == what);
        Ok(if installed {
            format!("{what} is revoked; this gateway runs it: install a newer version")
        } else {
            format!("{what} is revoked: it will be refused from now on")
        })
    }

    /// The live upgrade of `running` started: it is the install under way.
    pub fn began(&mut self, running: Running) {
        self.running = Some(running);
    }

    /// The upgrade of the running bundle committed: raise the floor
    /// (durably) and record it.
    pub fn promoted(&mut self) -> Option<String> {
        let running = self.running.take()?;
        let what = format!("{} {}", running.name, running.version);
        // Raised from what is on disk (see `revoke`), never from a copy
        // that failed to load.
        let file = self.gateway.floor_file();
        let raised = Floor::load(&file)
            .map_err(|e| e.to_string())
            .map(|floor| floor.raised(&running.name, &running.version))
            .and_then(|floor| {
                floor
                    .save(&file)
                    .map(|()| floor)
                    .map_err(|e| format!("{}: {e}", file.display()))
            });
        let warning = match raised {
            Ok(floor) => {
                self.floor = floor;
                String::new()
            }
            Err(e) => format!("the anti-rollback floor could not be raised ({e})"),
        };
        self.installed = json!({"name": running.name, "version": running.version.to_string()});
        self.record(&what, Outcome::Promoted, &warning);
        Some(what)
    }

    /// The upgrade of the running bundle rolled back for `reason`.
    pub fn rolled_back(&mut self, reason: &str) {
        if let Some(running) = self.running.take() {
            let what = format!("{} {}", running.name, running.version);
            self.record(&what, Outcome::RolledBack(reason.to_owned()), "");
        }
    }

    /// A file was refused.
    pub fn refused(&mut self, what: &str, reason: &str) {
        self.record(what, Outcome::Refused(reason.to_owned()), "");
    }

    /// What a refusal of `error` names: the bundle, if known, else the file.
    pub fn what(file: &Path, error: &InstallError) -> String {
        error.refused_at().map_or_else(
            || file.display().to_string(),
            |(name, version)| format!("{name} {version}"),
        )
    }

    fn record(&mut self, what: &str, outcome: Outcome, warning: &str) {
        let (result, reason) = match &outcome {
            Outcome::Promoted => ("promoted", None),
            Outcome::RolledBack(r) => ("rolled back", Some(r.as_str())),
            Outcome::Refused(r) => ("refused", Some(r.as_str())),
            Outcome::Revoked => ("revoked", None),
        };
        let mut line = json!({
            "time": UnixTime::now().to_rfc3339(),
            "bundle": what,
            "result": result,
        });
        if let Some(reason) = reason {
            line["reason"] = json!(reason);
        }
        if !warning.is_empty() {
            line["warning"] = json!(warning);
        }
        if let Err(e) = append_line(&self.gateway.history_file(), &line) {
            tracing::warn!(
                "cannot record `{what}: {result}` in {}: {e}",
                self.gateway.history_file().display()
            );
        }
        self.last = line;
    }

    /// The `bundles` object of the status JSON.
    pub fn json(&self) -> Value {
        let floor: serde_json::Map<String, Value> = self
            .floor
            .iter()
            .map(|(n, v)| (n.to_owned(), json!(v.to_string())))
            .collect();
        json!({
            "installed": self.installed,
            "floor": floor,
            "installing": self.running.as_ref().map(|r| json!({
                "name": r.name,
                "version": r.version.to_string(),
                "dir": r.dir.display().to_string(),
            })),
            "revoked": self.revoked.iter().map(|r| format!("{} {}", r.name, r.version)).collect::<Vec<_>>(),
            "last": self.last,
        })
    }
}

/// Appends one JSON line and syncs it.
fn append_line(path: &Path, line: &Value) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        crate::private::create_dir(dir)?;
    }
    let mut file = crate::private::file_options()
        .create(true)
        .append(true)
        .open(path)?;
    file.write_all(format!("{line}\n").as_bytes())?;
    file.sync_data()
}

/// The last promoted bundle and the last outcome in `history.jsonl` (its
/// last 64 KiB), so that status survives an agent restart.
fn read_history(path: &Path) -> (Value, Value) {
    use std::io::{Read as _, Seek as _, SeekFrom};
    let mut text = String::new();
    if let Ok(mut file) = File::open(path) {
        let len = file.metadata().map_or(0, |m| m.len());
        let _ = file.seek(SeekFrom::Start(len.saturating_sub(64 << 10)));
        let mut bytes = Vec::new();
        let _ = file.read_to_end(&mut bytes);
        text = String::from_utf8_lossy(&bytes).into_owned();
    }
    let lines: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let installed = lines
        .iter()
        .rev()
        .find(|l| l["result"] == "promoted")
        .and_then(|l| l["bundle"].as_str())
        .and_then(|b| b.split_once(' '))
        .map_or(
            Value::Null,
            |(name, version)| json!({"name": name, "version": version}),
        );
    (installed, lines.last().cloned().unwrap_or(Value::Null))
}
