//! The anti-rollback floor: for each bundle name, the version last
//! committed on this gateway. A bundle must be newer than its name's floor.
//!
//! Kept in `DIR/bundles/floor.json` (`{"format": 1, "floor": {"home":
//! "1.2.0"}}`), replaced by write, fsync, rename, fsync of the directory,
//! so a crash leaves the old floor or the new one. It is raised only after
//! an upgrade committed (promoted, and the old version replaced). A floor
//! file that cannot be read refuses every bundle: treating it as empty
//! would let an older version back in.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use semver::Version;
use serde::{Deserialize, Serialize};

/// The floor file's format.
const FORMAT: u32 = 1;
/// Largest state file read.
const MAX_STATE_BYTES: u64 = 1 << 20;

/// The lowest version each bundle name may no longer be installed at.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Floor {
    versions: BTreeMap<String, Version>,
}

/// Why a gateway state file (the floor, the revocations) cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StateFileError {
    /// It exists and cannot be read.
    #[error("{}: cannot read: {source}; no bundle is installed until it can be", path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// It does not say what it should.
    #[error("{}: damaged ({reason}); no bundle is installed until it is repaired (it holds the anti-rollback floor and the revocations)", path.display())]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// Reads a small JSON state file; `None` when it does not exist.
pub(super) fn read_state<T: for<'de> Deserialize<'de>>(
    path: &Path,
) -> Result<Option<T>, StateFileError> {
    use std::io::Read as _;
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(StateFileError::Unreadable {
                path: path.into(),
                source,
            })
        }
    };
    let mut bytes = Vec::new();
    file.take(MAX_STATE_BYTES)
        .read_to_end(&mut bytes)
        .map_err(|source| StateFileError::Unreadable {
            path: path.into(),
            source,
        })?;
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| StateFileError::Damaged {
            path: path.into(),
            reason: e.to_string(),
        })
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    format: u32,
    floor: BTreeMap<String, String>,
}

impl Floor {
    /// Reads the floor at `path` (empty when there is no file).
    pub fn load(path: &Path) -> Result<Floor, StateFileError> {
        let Some(raw) = read_state::<Raw>(path)? else {
            return Ok(Floor::default());
        };
        let damaged = |reason: String| StateFileError::Damaged {
            path: path.into(),
            reason,
        };
        if raw.format != FORMAT {
            return Err(damaged(format!("format {} is not {FORMAT}", raw.format)));
        }
        let mut versions = BTreeMap::new();
        for (name, version) in raw.floor {
            let v = Version::parse(&version)
                .map_err(|_| damaged(format!("`{version}` of `{name}` is not a version")))?;
            versions.insert(name, v);
        }
        Ok(Floor { versions })
    }

    /// Writes it to `path` durably (write, fsync, rename, fsync).
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let raw = Raw {
            format: FORMAT,
            floor: self
                .versions
                .iter()
                .map(|(n, v)| (n.clone(), v.to_string()))
                .collect(),
        };
        let json = serde_json::to_vec(&raw).map_err(std::io::Error::other)?;
        if let Some(dir) = path.parent() {
            crate::private::create_dir(dir)?;
        }
        crate::private::write_atomically(path, &json)
    }

    /// The floor of bundle `name`: the version committed last.
    pub fn get(&self, name: &str) -> Option<&Version> {
        self.versions.get(name)
    }

    /// Every bundle name and its floor: what this gateway has installed.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Version)> {
        self.versions.iter().map(|(n, v)| (n.as_str(), v))
    }

    /// This floor with `name` raised to `version` (never lowered).
    pub fn raised(&self, name: &str, version: &Version) -> Floor {
        let mut versions = self.versions.clone();
        let entry = versions
            .entry(name.to_owned())
            .or_insert_with(|| version.clone());
        if *entry < *version {
            *entry = version.clone();
        }
        Floor { versions }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_floor_survives_a_reload_and_never_drops() {
        let dir = std::env::temp_dir().join(format!("tandem-floor-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("bundles/floor.json");
        assert_eq!(Floor::load(&path).unwrap(), Floor::default());
        let floor = Floor::default().raised("home", &Version::new(1, 2, 0));
        floor.save(&path).unwrap();
        let back = Floor::load(&path).unwrap();
        assert_eq!(back.get("home"), Some(&Version::new(1, 2, 0)));
        let lower = back.raised("home", &Version::new(1, 1, 0));
        assert_eq!(lower.get("home"), Some(&Version::new(1, 2, 0)));
        std::fs::write(&path, b"{\"format\": 1, \"floor\": {\"home\": \"x\"}}").unwrap();
        let e = Floor::load(&path).unwrap_err();
        assert!(e.to_string().contains("damaged"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
