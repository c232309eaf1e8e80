//! What a gateway trusts, and who it is: read from its config directory
//! (`/etc/tandem`, `$TANDEM_CONFIG_DIR`, or `--config-dir`):
//!
//! ```text
//! CONFIG/tracks.toml          [tracks.stable] threshold = 2
//! CONFIG/keys/stable/*.pub    the keys trusted for track `stable`
//! CONFIG/gateway.toml         hardware = "gw-3"   site = "site-0042"   (optional)
//! ```
//!
//! [`Trust::check`] is the k-of-n rule, and pure.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::manifest::Name;
use super::sign::{KeyId, PublicKey, SignatureEntry, Statement};

/// The config directory when none is given.
pub const DEFAULT_CONFIG_DIR: &str = "/etc/tandem";
/// Largest config file read.
const MAX_CONFIG_BYTES: u64 = 64 << 10;

/// One release track: the keys trusted for it and how many must sign.
#[derive(Clone, Debug)]
pub struct Track {
    /// Signatures of distinct trusted keys required.
    pub threshold: usize,
    /// The trusted keys, distinct.
    pub keys: Vec<PublicKey>,
}

/// Every track a gateway follows.
#[derive(Clone, Debug, Default)]
pub struct Trust {
    /// By name.
    pub tracks: BTreeMap<String, Track>,
}

/// Who the gateway is, for a bundle's `compatible` lists.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    /// Its hardware id.
    pub hardware: Option<String>,
    /// Its site id.
    pub site: Option<String>,
}

/// A gateway's trust and identity, as its config directory says.
#[derive(Clone, Debug, Default)]
pub struct GatewayConfig {
    /// The tracks it follows.
    pub trust: Trust,
    /// Who it is.
    pub identity: Identity,
}

/// Why a config directory cannot be used (every bundle is refused then).
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// No `tracks.toml`.
    #[error("this gateway trusts no bundle keys: {} is missing; declare a track there (`[tracks.stable] threshold = 1`) and put its keys in {}/keys/stable/", path.display(), path.parent().map_or(String::new(), |p| p.display().to_string()))]
    NoTracks {
        /// The file.
        path: PathBuf,
    },
    /// A file that cannot be read.
    #[error("{}: cannot read: {source}", path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file that does not say what it should.
    #[error("{}: {reason}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A track that could never be satisfied.
    #[error("track `{track}` requires {threshold} signatures but {} holds {keys} distinct keys; add keys or lower its threshold (at least 1)", dir.display())]
    Threshold {
        /// The track.
        track: String,
        /// Its threshold.
        threshold: usize,
        /// Keys found.
        keys: usize,
        /// Where they were looked for.
        dir: PathBuf,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTracks {
    #[serde(default)]
    tracks: BTreeMap<String, RawTrack>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrack {
    threshold: usize,
}

fn read_small(path: &Path) -> Result<Option<String>, TrustError> {
    use std::io::Read as _;
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(TrustError::Unreadable {
                path: path.into(),
                source,
            })
        }
    };
    let mut text = String::new();
    file.take(MAX_CONFIG_BYTES)
        .read_to_string(&mut text)
        .map_err(|source| TrustError::Unreadable {
            path: path.into(),
            source,
        })?;
    Ok(Some(text))
}

impl GatewayConfig {
    /// Reads the config directory `dir`.
    pub fn load(dir: &Path) -> Result<GatewayConfig, TrustError> {
        let tracks_path = dir.join("tracks.toml");
        let text = read_small(&tracks_path)?.ok_or_else(|| TrustError::NoTracks {
            path: tracks_path.clone(),
        })?;
        let raw: RawTracks = toml::from_str(&text).map_err(|e| TrustError::Invalid {
            path: tracks_path.clone(),
            reason: e.message().trim_end().to_owned(),
        })?;
        let mut trust = Trust::default();
        for (name, track) in raw.tracks {
            if Name::parse(&name).is_none() {
                return Err(TrustError::Invalid {
                    path: tracks_path,
                    reason: format!("`{name}` is not a track name (a-z, 0-9, `.`, `_`, `-`)"),
                });
            }
            let keys_dir = dir.join("keys").join(&name);
            let keys = load_keys(&keys_dir)?;
            if track.threshold == 0 || track.threshold > keys.len() {
                return Err(TrustError::Threshold {
                    track: name,
                    threshold: track.threshold,
                    keys: keys.len(),
                    dir: keys_dir,
                });
            }
            trust.tracks.insert(
                name,
                Track {
                    threshold: track.threshold,
                    keys,
                },
            );
        }
        let identity_path = dir.join("gateway.toml");
        let identity = match read_small(&identity_path)? {
            Some(text) => toml::from_str(&text).map_err(|e| TrustError::Invalid {
                path: identity_path,
                reason: e.message().trim_end().to_owned(),
            })?,
            None => Identity::default(),
        };
        Ok(GatewayConfig { trust, identity })
    }
}

/// The distinct keys of `dir/*.pub` (none when it does not exist).
/// The public keys (`*.pub`, each read with a size cap) in `dir`, in name
/// order and each once; none when `dir` does not exist.
pub(crate) fn load_keys(dir: &Path) -> Result<Vec<PublicKey>, TrustError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(TrustError::Unreadable {
                path: dir.into(),
                source,
            })
        }
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "pub"))
        .collect();
    paths.sort();
    let mut keys: Vec<PublicKey> = Vec::new();
    for path in paths {
        let text = read_small(&path)?.unwrap_or_default();
        let key = PublicKey::parse(&text).map_err(|e| TrustError::Invalid {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    Ok(keys)
}

/// Why signatures do not make a statement trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureRefusal {
    /// The gateway follows no such track.
    #[error(
        "it is for track `{track}`, which this gateway does not follow (it follows: {followed})"
    )]
    UnknownTrack {
        /// The statement's track.
        track: String,
        /// The tracks the gateway follows, or `none`.
        followed: String,
    },
    /// No signature at all.
    #[error("it is unsigned; track `{track}` requires {threshold} signature(s) of distinct trusted keys (`tandem bundle sign`)")]
    Unsigned {
        /// The track.
        track: String,
        /// Its threshold.
        threshold: usize,
    },
    /// One key signed twice.
    #[error("key {key} signed it twice; each key counts once, and track `{track}` requires {threshold} distinct keys")]
    SameKeyTwice {
        /// The key.
        key: KeyId,
        /// The track.
        track: String,
        /// Its threshold.
        threshold: usize,
    },
    /// A trusted key's signature that does not verify: the bytes changed
    /// after signing, or the signature did.
    #[error(
        "the signature of key {key} does not verify: the bundle was changed after it was signed"
    )]
    BadSignature {
        /// The key.
        key: KeyId,
    },
    /// Signed only by keys the track does not trust.
    #[error("it is signed by key {keys}, which track `{track}` does not trust; it requires {threshold} signature(s) of its keys ({trusted})")]
    UnknownKey {
        /// The untrusted keys.
        keys: String,
        /// The track.
        track: String,
        /// Its threshold.
        threshold: usize,
        /// The keys it trusts.
        trusted: String,
    },
    /// Fewer trusted signatures than the threshold.
    #[error("track `{track}` requires {threshold} signatures of distinct trusted keys; it has {valid} ({signers}){untrusted}")]
    TooFew {
        /// The track.
        track: String,
        /// Its threshold.
        threshold: usize,
        /// Trusted keys that signed.
        valid: usize,
        /// Their ids.
        signers: String,
        /// `; key X is not trusted`, or nothing.
        untrusted: String,
    },
}

fn ids(keys: impl IntoIterator<Item = KeyId>) -> String {
    keys.into_iter()
        .map(|k| k.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

impl Trust {
    /// The trusted keys that signed `bytes` of `statement` for `track`, when
    /// at least the track's threshold of distinct trusted keys did and no
    /// signature of a trusted key fails.
    pub fn check(
        &self,
        track: &str,
        statement: Statement,
        bytes: &[u8],
        signatures: &[SignatureEntry],
    ) -> Result<Vec<KeyId>, SignatureRefusal> {
        let Some(trusted) = self.tracks.get(track) else {
            let followed: Vec<&str> = self.tracks.keys().map(String::as_str).collect();
            return Err(SignatureRefusal::UnknownTrack {
                track: track.to_owned(),
                followed: if followed.is_empty() {
                    "none".into()
                } else {
                    followed.join(", ")
                },
            });
        };
        let threshold = trusted.threshold;
        if signatures.is_empty() {
            return Err(SignatureRefusal::Unsigned {
                track: track.to_owned(),
                threshold,
            });
        }
        for (i, s) in signatures.iter().enumerate() {
            if signatures.iter().skip(i + 1).any(|t| t.key == s.key) {
                return Err(SignatureRefusal::SameKeyTwice {
                    key: s.key_id(),
                    track: track.to_owned(),
                    threshold,
                });
            }
        }
        let mut signers = Vec::new();
        let mut untrusted = Vec::new();
        for s in signatures {
            match trusted.keys.iter().find(|k| k.to_bytes() == s.key) {
                Some(key) if key.verifies(statement, bytes, &s.signature) => signers.push(key.id()),
                Some(key) => return Err(SignatureRefusal::BadSignature { key: key.id() }),
                None => untrusted.push(s.key_id()),
            }
        }
        if signers.len() >= threshold {
            return Ok(signers);
        }
        if signers.is_empty() {
            return Err(SignatureRefusal::UnknownKey {
                keys: ids(untrusted),
                track: track.to_owned(),
                threshold,
                trusted: ids(trusted.keys.iter().map(PublicKey::id)),
            });
        }
        Err(SignatureRefusal::TooFew {
            track: track.to_owned(),
            threshold,
            valid: signers.len(),
            signers: ids(signers),
            untrusted: if untrusted.is_empty() {
                String::new()
            } else {
                format!("; not trusted: {}", ids(untrusted))
            },
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::bundle::sign::SecretKey;

    fn trust(threshold: usize, keys: &[&SecretKey]) -> Trust {
        let mut trust = Trust::default();
        trust.tracks.insert(
            "stable".into(),
            Track {
                threshold,
                keys: keys.iter().map(|k| k.public()).collect(),
            },
        );
        trust
    }

    #[test]
    fn k_of_n_distinct_trusted_keys() {
        let (a, b, c, stranger) = (
            SecretKey::from_seed(&[1; 32]),
            SecretKey::from_seed(&[2; 32]),
            SecretKey::from_seed(&[3; 32]),
            SecretKey::from_seed(&[4; 32]),
        );
        let t = trust(2, &[&a, &b, &c]);
        let m = Statement::Manifest;
        let sig = |k: &SecretKey| k.sign(m, b"x");
        assert_eq!(
            t.check("stable", m, b"x", &[sig(&a), sig(&c)]).unwrap(),
            vec![a.public().id(), c.public().id()]
        );
        // An extra signature by a stranger does not hurt.
        assert!(t
            .check("stable", m, b"x", &[sig(&stranger), sig(&a), sig(&b)])
            .is_ok());
        let e = t.check("stable", m, b"x", &[]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("it is unsigned; track `stable` requires 2"),
            "{e}"
        );
        let e = t.check("stable", m, b"x", &[sig(&a)]).unwrap_err();
        assert!(
            e.to_string().starts_with(
                "track `stable` requires 2 signatures of distinct trusted keys; it has 1"
            ),
            "{e}"
        );
        let e = t.check("stable", m, b"x", &[sig(&a), sig(&a)]).unwrap_err();
        assert!(matches!(e, SignatureRefusal::SameKeyTwice { .. }), "{e}");
        assert!(e.to_string().contains("signed it twice"), "{e}");
        let e = t.check("stable", m, b"x", &[sig(&stranger)]).unwrap_err();
        assert!(
            e.to_string()
                .contains("which track `stable` does not trust"),
            "{e}"
        );
        let e = t.check("stable", m, b"y", &[sig(&a), sig(&b)]).unwrap_err();
        assert!(e.to_string().contains("does not verify"), "{e}");
        let e = t.check("beta", m, b"x", &[sig(&a), sig(&b)]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "it is for track `beta`, which this gateway does not follow (it follows: stable)"
        );
        // A signature on a revocation never counts for a manifest.
        let r = Statement::Revocation;
        let e = t
            .check("stable", m, b"x", &[a.sign(r, b"x"), b.sign(r, b"x")])
            .unwrap_err();
        assert!(matches!(e, SignatureRefusal::BadSignature { .. }), "{e}");
    }

    #[test]
    fn a_config_dir_says_tracks_keys_and_identity() {
        let dir = std::env::temp_dir().join(format!("tandem-trust-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("keys/stable")).unwrap();
        let e = GatewayConfig::load(&dir).unwrap_err();
        assert!(
            e.to_string().contains("this gateway trusts no bundle keys"),
            "{e}"
        );
        std::fs::write(dir.join("tracks.toml"), "[tracks.stable]\nthreshold = 2\n").unwrap();
        let a = SecretKey::from_seed(&[1; 32]);
        std::fs::write(dir.join("keys/stable/a.pub"), a.public().to_text("a")).unwrap();
        // The same key twice is one key.
        std::fs::write(dir.join("keys/stable/a2.pub"), a.public().to_text("again")).unwrap();
        let e = GatewayConfig::load(&dir).unwrap_err();
        assert!(e.to_string().contains("requires 2 signatures but"), "{e}");
        let b = SecretKey::from_seed(&[2; 32]);
        std::fs::write(dir.join("keys/stable/b.pub"), b.public().to_text("b")).unwrap();
        std::fs::write(
            dir.join("gateway.toml"),
            "hardware = \"gw-3\"\nsite = \"s1\"\n",
        )
        .unwrap();
        let config = GatewayConfig::load(&dir).unwrap();
        assert_eq!(config.trust.tracks["stable"].keys.len(), 2);
        assert_eq!(config.identity.hardware.as_deref(), Some("gw-3"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
