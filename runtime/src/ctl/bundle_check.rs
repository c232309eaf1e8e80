//! What the controller checks of a bundle before it rolls it out: that it
//! is a well-formed bundle (its manifest names it), for the track it is
//! rolled out to, and, when the track has keys (`keys = "DIR"` in
//! `tracks.toml`), signed by one of them. Gateways check everything again
//! (and their own policy) before any instance is touched; this only stops
//! a rollout that every gateway would refuse.

use std::path::{Path, PathBuf};

use semver::Version;

use crate::bundle::trust::{Track as TrustTrack, Trust, TrustError};
use crate::bundle::verify::{self, Contents, Refusal};

use super::plan::BundleRef;

/// The largest bundle the controller rolls out (the link's frame limit).
pub const MAX_BUNDLE_BYTES: u64 = (super::wire::MAX_FRAME - 4096) as u64;

/// Why the controller does not roll a bundle out.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// It is not a well-formed bundle.
    #[error(transparent)]
    Malformed(Box<Refusal>),
    /// It is a revocation.
    #[error("it is a revocation, not a bundle; a rollout carries a bundle")]
    Revocation,
    /// Its manifest names another track.
    #[error(
        "{name} {version} is for track `{track}`, not `{rollout}`; roll it out with --track {track}"
    )]
    OtherTrack {
        /// The bundle.
        name: String,
        /// Its version.
        version: Version,
        /// The track its manifest names.
        track: String,
        /// The track of the rollout.
        rollout: String,
    },
    /// The track's keys cannot be read.
    #[error(transparent)]
    Keys(TrustError),
    /// The track's key directory holds no key.
    #[error("track `{track}`'s key directory {} holds no *.pub key", dir.display())]
    NoKeys {
        /// The track.
        track: String,
        /// Its `keys` directory.
        dir: PathBuf,
    },
    /// No key of the track signed it.
    #[error("not signed for track `{track}`: {refusal}")]
    Unsigned {
        /// The track.
        track: String,
        /// What the signature check says.
        refusal: Box<Refusal>,
    },
}

/// Checks `bytes` for a rollout to `track`; what to call it.
pub fn check(bytes: &[u8], track: &str, keys: Option<&Path>) -> Result<BundleRef, CheckError> {
    let mut cursor = std::io::Cursor::new(bytes);
    let opened = verify::open(&mut cursor, MAX_BUNDLE_BYTES)
        .map_err(|e| CheckError::Malformed(Box::new(e)))?;
    let Contents::Bundle(manifest) = &opened.contents else {
        return Err(CheckError::Revocation);
    };
    if manifest.track.as_str() != track {
        return Err(CheckError::OtherTrack {
            name: manifest.name.as_str().to_owned(),
            version: manifest.version.clone(),
            track: manifest.track.as_str().to_owned(),
            rollout: track.to_owned(),
        });
    }
    if let Some(dir) = keys {
        let keys = crate::bundle::trust::load_keys(dir).map_err(CheckError::Keys)?;
        if keys.is_empty() {
            return Err(CheckError::NoKeys {
                track: track.to_owned(),
                dir: dir.to_path_buf(),
            });
        }
        let mut trust = Trust::default();
        trust
            .tracks
            .insert(track.to_owned(), TrustTrack { threshold: 1, keys });
        opened
            .check_signatures(&trust)
            .map_err(|e| CheckError::Unsigned {
                track: track.to_owned(),
                refusal: Box::new(e),
            })?;
    }
    Ok(BundleRef {
        sha256: super::wire::sha256_hex(bytes),
        name: manifest.name.as_str().to_owned(),
        version: manifest.version.to_string(),
    })
}
