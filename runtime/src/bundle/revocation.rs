//! Revocations: a signed statement that one version of a bundle must not be
//! installed any more, without a new version to replace it.
//!
//! A revocation file is an archive like a bundle's (see [`super::archive`]):
//! `REVOCATION.toml` first, then `SIGNATURES.toml`, and no payload. It
//! needs the same k-of-n signatures of its track as a bundle does
//! (`tandem bundle revoke` makes it with one; `tandem bundle sign` adds
//! more). `tandem install` of a revocation keeps it in
//! `DIR/bundles/revoked.json` (write, fsync, rename); revoked versions are
//! refused from then on.

use std::path::Path;

use semver::Version;
use serde::{Deserialize, Serialize};

use super::floor::{read_state, StateFileError};
use super::manifest::Name;

/// The archive entry that holds a revocation (always the first).
pub const REVOCATION_ENTRY: &str = "REVOCATION.toml";
const FORMAT: u32 = 1;

/// One revoked version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revocation {
    /// The bundle.
    pub name: Name,
    /// The version no longer installed.
    pub version: Version,
    /// The track whose keys signed it.
    pub track: Name,
    /// Why, for people.
    pub reason: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    format: u32,
    name: String,
    version: String,
    track: String,
    #[serde(default)]
    reason: String,
}

/// Why revocation bytes are not a revocation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RevocationError {
    /// Not its TOML.
    #[error("the revocation is not valid: {0}")]
    Syntax(String),
    /// A field with a value it cannot have.
    #[error("revocation field `{field}` is `{value}`; expected {expected}")]
    Field {
        /// The field.
        field: &'static str,
        /// Its value.
        value: String,
        /// What would be valid.
        expected: &'static str,
    },
}

impl Revocation {
    /// Parses revocation bytes.
    pub fn parse(bytes: &[u8]) -> Result<Revocation, RevocationError> {
        let text = std::str::from_utf8(bytes)
            .map_err(|_| RevocationError::Syntax("it is not UTF-8 text".into()))?;
        let raw: Raw = toml::from_str(text)
            .map_err(|e| RevocationError::Syntax(e.message().trim_end().into()))?;
        let field = |field, value: &str, expected| RevocationError::Field {
            field,
            value: value.to_owned(),
            expected,
        };
        if raw.format != FORMAT {
            return Err(field("format", &raw.format.to_string(), "1"));
        }
        Ok(Revocation {
            name: Name::parse(&raw.name)
                .ok_or_else(|| field("name", &raw.name, "a bundle name"))?,
            version: Version::parse(&raw.version)
                .map_err(|_| field("version", &raw.version, "a semantic version"))?,
            track: Name::parse(&raw.track)
                .ok_or_else(|| field("track", &raw.track, "a track name"))?,
            reason: raw.reason,
        })
    }

    /// Its bytes (what the signatures cover).
    pub fn to_bytes(&self) -> Vec<u8> {
        let raw = Raw {
            format: FORMAT,
            name: self.name.to_string(),
            version: self.version.to_string(),
            track: self.track.to_string(),
            reason: self.reason.clone(),
        };
        toml::to_string(&raw).unwrap_or_default().into_bytes()
    }

    /// True when it revokes `version` of bundle `name` released on
    /// `track`. A revocation speaks only for its own track: the keys of one
    /// track (a canary's, with a lower threshold) cannot revoke another's
    /// bundles.
    pub fn revokes(&self, name: &str, version: &Version, track: &str) -> bool {
        self.name.as_str() == name && self.version == *version && self.track.as_str() == track
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawList {
    format: u32,
    revoked: Vec<Raw>,
}

/// The revocations a gateway recorded, from `path` (none without a file).
pub fn load(path: &Path) -> Result<Vec<Revocation>, StateFileError> {
    let Some(list) = read_state::<RawList>(path)? else {
        return Ok(Vec::new());
    };
    list.revoked
        .into_iter()
        .map(|raw| {
            let bytes = toml::to_string(&raw).unwrap_or_default();
            Revocation::parse(bytes.as_bytes()).map_err(|e| StateFileError::Damaged {
                path: path.into(),
                reason: e.to_string(),
            })
        })
        .collect()
}

/// Writes `revoked` to `path` durably (write, fsync, rename, fsync).
pub fn save(path: &Path, revoked: &[Revocation]) -> std::io::Result<()> {
    let list = RawList {
        format: FORMAT,
        revoked: revoked
            .iter()
            .map(|r| Raw {
                format: FORMAT,
                name: r.name.to_string(),
                version: r.version.to_string(),
                track: r.track.to_string(),
                reason: r.reason.clone(),
            })
            .collect(),
    };
    let json = serde_json::to_vec(&list).map_err(std::io::Error::other)?;
    if let Some(dir) = path.parent() {
        crate::private::create_dir(dir)?;
    }
    crate::private::write_atomically(path, &json)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn revocations_read_back_and_are_kept() {
        let r = Revocation {
            name: Name::parse("home").unwrap(),
            version: Version::new(1, 2, 0),
            track: Name::parse("stable").unwrap(),
            reason: "bad calibration".into(),
        };
        assert_eq!(Revocation::parse(&r.to_bytes()).unwrap(), r);
        assert!(r.revokes("home", &Version::new(1, 2, 0), "stable"));
        assert!(!r.revokes("home", &Version::new(1, 2, 1), "stable"));
        assert!(
            !r.revokes("home", &Version::new(1, 2, 0), "canary"),
            "a stable revocation revoked a canary bundle"
        );
        let dir = std::env::temp_dir().join(format!("tandem-revoked-{}", std::process::id()));
        let path = dir.join("revoked.json");
        assert!(load(&path).unwrap().is_empty());
        save(&path, std::slice::from_ref(&r)).unwrap();
        assert_eq!(load(&path).unwrap(), vec![r]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
