//! What the controller checks of a bundle before it rolls it out: that it
//! is a well-formed bundle (its manifest names it), for the track it is
//! rolled out to, and, when the track has keys (`keys = "DIR"` in
//! `tracks.toml`), signed by one of them. Gateways check everything again
//! (and their own policy) before any instance is touched; this only stops
//! a rollout that every gateway would refuse.

use std::path::Path;

use crate::bundle::trust::{Track as TrustTrack, Trust};
use crate::bundle::verify::{self, Contents};

use super::plan::BundleRef;

/// The largest bundle the controller rolls out (the link's frame limit).
pub const MAX_BUNDLE_BYTES: u64 = (super::wire::MAX_FRAME - 4096) as u64;

/// Checks `bytes` for a rollout to `track`; what to call it.
pub fn check(bytes: &[u8], track: &str, keys: Option<&Path>) -> Result<BundleRef, String> {
    let mut cursor = std::io::Cursor::new(bytes);
    let opened = verify::open(&mut cursor, MAX_BUNDLE_BYTES).map_err(|e| e.to_string())?;
    let Contents::Bundle(manifest) = &opened.contents else {
        return Err("it is a revocation, not a bundle; a rollout carries a bundle".into());
    };
    if manifest.track.as_str() != track {
        return Err(format!(
            "{} {} is for track `{}`, not `{track}`; roll it out with --track {}",
            manifest.name.as_str(),
            manifest.version,
            manifest.track.as_str(),
            manifest.track.as_str()
        ));
    }
    if let Some(dir) = keys {
        let keys = crate::bundle::trust::load_keys(dir).map_err(|e| e.to_string())?;
        if keys.is_empty() {
            return Err(format!(
                "track `{track}`'s key directory {} holds no *.pub key",
                dir.display()
            ));
        }
        let mut trust = Trust::default();
        trust
            .tracks
            .insert(track.to_owned(), TrustTrack { threshold: 1, keys });
        opened
            .check_signatures(&trust)
            .map_err(|e| format!("not signed for track `{track}`: {e}"))?;
    }
    Ok(BundleRef {
        sha256: super::wire::sha256_hex(bytes),
        name: manifest.name.as_str().to_owned(),
        version: manifest.version.to_string(),
    })
}
