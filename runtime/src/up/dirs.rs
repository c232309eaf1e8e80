//! The state directory of `tandem up`:
//!
//! ```text
//! DIR/LOCK                     held by the agent while it runs
//! DIR/agent.sock               the agent's control socket (`tandem status`),
//!                              unless a runtime directory is given
//! DIR/ca/site-ca.pem, .key     the site CA, made on first start (key 0600)
//! DIR/certs/NAME.pem, .key     leaf certificates of the agent, blue and green (keys 0600)
//! DIR/checkpoints/blue/        checkpoints written by the blue instance
//! DIR/checkpoints/green/       ... and by the green one
//! DIR/toggles.json             each feature toggle's position, as last switched
//! DIR/bundles/NAME-VERSION/    an installed bundle, unpacked (docs/bundles.md)
//! DIR/bundles/floor.json       the anti-rollback floor of each bundle name
//! DIR/bundles/revoked.json     revoked bundle versions
//! DIR/bundles/history.jsonl    each install's outcome
//! ```
//!
//! Only the agent's user may enter it: directories are made 0700 and files
//! 0600 whatever the umask (see [`crate::private`]).
//!
//! Run as a service, the socket lives in a runtime directory of its own
//! (`/run/tandem`, `--runtime-dir` or `$TANDEM_RUNTIME_DIR`), which is made
//! 0700 the same way; see docs/service.md.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use tandem_core::ha::Color;

use crate::checkpoint::{Checkpoint, CheckpointStore};
use crate::net::{CaError, Identity, SiteCa, SiteTrust};

/// The state directory when none is given: in the working directory.
pub const DEFAULT_STATE_DIR: &str = ".tandem";
/// Where the packaged service keeps its control socket
/// (`RuntimeDirectory=tandem` in packaging/tandem.service).
pub const SERVICE_RUNTIME_DIR: &str = "/run/tandem";
/// The control socket's name in its directory.
const SOCKET: &str = "agent.sock";

/// Why the state directory's lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// The directory could not be made.
    #[error("{}: error: cannot create the state directory: {source}", dir.display())]
    Create {
        /// The state directory.
        dir: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// `DIR/LOCK` could not be opened.
    #[error("{}: error: cannot open the lock file: {source}", path.display())]
    Open {
        /// The lock file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Another agent or `tandem run` holds it.
    #[error(
        "{}: error: another tandem is running on this state directory; stop it or use another --state-dir",
        dir.display()
    )]
    Held {
        /// The state directory.
        dir: PathBuf,
    },
    /// Locking failed for another reason.
    #[error("{}: error: cannot lock: {source}", path.display())]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Paths inside one state directory.
#[derive(Clone, Debug)]
pub struct StateDir {
    root: PathBuf,
    /// Where the control socket lives, when not in `root`.
    runtime: Option<PathBuf>,
    /// The config directory (bundle trust), when not the default.
    config: Option<PathBuf>,
}

impl StateDir {
    /// The state directory at `root` (created on demand).
    pub fn new(root: impl Into<PathBuf>) -> StateDir {
        StateDir {
            root: root.into(),
            runtime: None,
            config: None,
        }
    }

    /// Puts the control socket in `dir` (created on demand, 0700) instead
    /// of the state directory; `None` leaves it there.
    pub fn with_runtime_dir(mut self, dir: Option<PathBuf>) -> StateDir {
        self.runtime = dir;
        self
    }

    /// Reads bundle trust from `dir` instead of the default config
    /// directory (`/etc/tandem`); `None` keeps the default.
    pub fn with_config_dir(mut self, dir: Option<PathBuf>) -> StateDir {
        self.config = dir;
        self
    }

    /// The config directory: the trusted keys and tracks for bundles, and
    /// the gateway's identity (docs/bundles.md).
    pub fn config_dir(&self) -> PathBuf {
        self.config
            .clone()
            .unwrap_or_else(|| PathBuf::from(crate::bundle::trust::DEFAULT_CONFIG_DIR))
    }

    /// Where installed bundles are unpacked, with the anti-rollback floor,
    /// the revocations and the history of outcomes.
    pub fn bundles_dir(&self) -> PathBuf {
        self.root.join("bundles")
    }

    /// The gateway side of bundles, for this directory.
    pub fn bundle_gateway(&self) -> crate::bundle::Gateway {
        crate::bundle::Gateway::new(self.bundles_dir(), self.config_dir())
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of the control socket.
    pub fn socket_dir(&self) -> &Path {
        self.runtime.as_deref().unwrap_or(&self.root)
    }

    /// The agent's control socket.
    pub fn socket(&self) -> PathBuf {
        self.socket_dir().join(SOCKET)
    }

    /// Where the site CA lives.
    pub fn ca_dir(&self) -> PathBuf {
        self.root.join("ca")
    }

    /// Where `color`'s instance writes its checkpoints.
    pub fn checkpoints(&self, color: Color) -> PathBuf {
        self.root.join("checkpoints").join(color.name())
    }

    fn cert(&self, name: &str) -> (PathBuf, PathBuf) {
        let dir = self.root.join("certs");
        (
            dir.join(format!("{name}.pem")),
            dir.join(format!("{name}.key")),
        )
    }

    /// Takes the directory's lock for as long as the returned file lives:
    /// one agent (or `tandem run`) per state directory.
    pub fn lock(&self) -> Result<File, LockError> {
        crate::private::create_dir(&self.root).map_err(|source| LockError::Create {
            dir: self.root.clone(),
            source,
        })?;
        let path = self.root.join("LOCK");
        let file = match crate::private::file_options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
        {
            Ok(file) => file,
            Err(source) => return Err(LockError::Open { path, source }),
        };
        match file.try_lock() {
            Ok(()) => Ok(file),
            Err(std::fs::TryLockError::WouldBlock) => Err(LockError::Held {
                dir: self.root.clone(),
            }),
            Err(std::fs::TryLockError::Error(source)) => Err(LockError::Lock { path, source }),
        }
    }

    /// The site CA, made on first start.
    pub fn site_ca(&self) -> Result<SiteCa, CaError> {
        let dir = self.ca_dir();
        crate::private::create_dir(&dir).map_err(|source| CaError::Io {
            action: "create",
            path: dir.clone(),
            source,
        })?;
        SiteCa::open_or_create(&dir)
    }

    /// Issues a fresh leaf certificate for `name` and writes it (key 0600),
    /// replacing the one before.
    pub fn issue(&self, ca: &SiteCa, name: &str) -> Result<(), CaError> {
        let (cert, key) = ca.issue_leaf(name)?;
        let (cert_path, key_path) = self.cert(name);
        if let Some(dir) = cert_path.parent() {
            crate::private::create_dir(dir).map_err(|source| CaError::Io {
                action: "create",
                path: dir.to_path_buf(),
                source,
            })?;
        }
        replace(&key_path, key.as_bytes())?;
        replace(&cert_path, cert.as_bytes())
    }

    /// The identity issued to `name`.
    pub fn identity(&self, name: &str) -> Result<Identity, CaError> {
        let (cert_path, key_path) = self.cert(name);
        Identity::from_pem(&read(&cert_path)?, &read(&key_path)?)
    }

    /// The site's trust root, to verify peers with.
    pub fn trust(&self) -> Result<SiteTrust, CaError> {
        SiteTrust::from_pem(&read(&self.ca_dir().join(SiteCa::CERT_FILE))?)
    }

    /// Where the position of each feature toggle is kept across restarts.
    pub fn toggles_file(&self) -> PathBuf {
        self.root.join("toggles.json")
    }

    /// Each toggle's position as last switched with `tandem toggle`
    /// (`SOURCE.NAME` to on), empty when none was; a damaged file is
    /// reported and read as empty (the graph's `on` lists hold).
    pub fn load_toggles(&self) -> BTreeMap<String, bool> {
        let path = self.toggles_file();
        let text = match std::fs::read(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return BTreeMap::new(),
            Err(e) => {
                tracing::warn!(
                    "{}: unreadable ({e}); the toggles start as the graph says",
                    path.display()
                );
                return BTreeMap::new();
            }
        };
        serde_json::from_slice(&text).unwrap_or_else(|e| {
            tracing::warn!(
                "{}: unreadable ({e}); the toggles start as the graph says",
                path.display()
            );
            BTreeMap::new()
        })
    }

    /// Keeps each toggle's position (written atomically and durably).
    pub fn save_toggles(&self, positions: &BTreeMap<String, bool>) -> std::io::Result<()> {
        let json = serde_json::to_vec(positions).map_err(std::io::Error::other)?;
        crate::private::write_atomically(&self.toggles_file(), &json)
    }

    /// The newest checkpoint of graph `name` either instance wrote, refusing
    /// damaged files with a message each (printed) and using the one before.
    pub fn newest_checkpoint(&self, name: &str) -> Option<(PathBuf, Checkpoint)> {
        let mut newest: Option<(PathBuf, Checkpoint)> = None;
        for color in Color::BOTH {
            let dir = self.checkpoints(color);
            if !dir.is_dir() {
                continue;
            }
            let mut store = match CheckpointStore::open(&dir) {
                Ok(store) => store,
                Err(e) => {
                    tracing::warn!("{e}");
                    continue;
                }
            };
            let recovery = match store.load_latest() {
                Ok(recovery) => recovery,
                Err(e) => {
                    tracing::warn!("{e}");
                    continue;
                }
            };
            for skipped in &recovery.skipped {
                tracing::warn!("{skipped}");
            }
            if let Some((path, checkpoint)) = recovery.latest {
                if checkpoint.graph.name != name {
                    tracing::warn!(
                        "{}: holds checkpoints of graph `{}`, not `{name}`; ignored",
                        path.display(),
                        checkpoint.graph.name
                    );
                    continue;
                }
                if newest.as_ref().is_none_or(|(_, n)| n.seq < checkpoint.seq) {
                    newest = Some((path, checkpoint));
                }
            }
        }
        newest
    }
}

/// The control socket a command such as `tandem status` asks: in the
/// runtime directory when one is given, else in the state directory when
/// one is given; with neither, `.tandem/agent.sock` when it `exists`, else
/// the packaged service's (`/run/tandem/agent.sock`) when that exists, else
/// `.tandem/agent.sock` (for the message that nothing answers there).
pub fn locate_socket(
    state_dir: Option<&Path>,
    runtime_dir: Option<&Path>,
    exists: impl Fn(&Path) -> bool,
) -> PathBuf {
    if let Some(dir) = runtime_dir.or(state_dir) {
        return dir.join(SOCKET);
    }
    let local = Path::new(DEFAULT_STATE_DIR).join(SOCKET);
    let service = Path::new(SERVICE_RUNTIME_DIR).join(SOCKET);
    if !exists(&local) && exists(&service) {
        service
    } else {
        local
    }
}

fn read(path: &Path) -> Result<String, CaError> {
    std::fs::read_to_string(path).map_err(|source| CaError::Io {
        action: "read",
        path: path.to_path_buf(),
        source,
    })
}

/// Writes `contents` over `path` atomically (see [`crate::private::write_atomically`]).
fn replace(path: &Path, contents: &[u8]) -> Result<(), CaError> {
    crate::private::write_atomically(path, contents).map_err(|source| CaError::Io {
        action: "write",
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_socket_is_in_the_runtime_directory_when_given() {
        let state = StateDir::new("/var/lib/tandem");
        assert_eq!(state.socket(), Path::new("/var/lib/tandem/agent.sock"));
        let state = state.with_runtime_dir(Some("/run/tandem".into()));
        assert_eq!(state.socket(), Path::new("/run/tandem/agent.sock"));
        assert_eq!(state.root(), Path::new("/var/lib/tandem"));
    }

    #[test]
    fn commands_find_the_socket_as_the_agent_placed_it() {
        let none = |_: &Path| false;
        let all = |_: &Path| true;
        let state = Some(Path::new("s"));
        let runtime = Some(Path::new("r"));
        assert_eq!(
            locate_socket(state, runtime, all),
            Path::new("r/agent.sock")
        );
        assert_eq!(locate_socket(state, None, all), Path::new("s/agent.sock"));
        assert_eq!(
            locate_socket(None, runtime, none),
            Path::new("r/agent.sock")
        );
        // Neither given: the working directory's agent, else the service's.
        let local = Path::new(".tandem/agent.sock");
        assert_eq!(locate_socket(None, None, all), local);
        assert_eq!(locate_socket(None, None, none), local);
        let only_service = |p: &Path| p.starts_with(SERVICE_RUNTIME_DIR);
        assert_eq!(
            locate_socket(None, None, only_service),
            Path::new("/run/tandem/agent.sock")
        );
    }
}
