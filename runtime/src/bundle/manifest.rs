//! The manifest of a bundle: what it is, where it may go, what it needs and
//! what it carries. Parsed from its TOML bytes (the bytes the signatures
//! cover) into a [`Manifest`] that cannot hold an invalid value. Pure: no
//! file, no clock.

use std::collections::BTreeSet;
use std::fmt;

use semver::{Version, VersionReq};
use serde::{Deserialize, Serialize};

use super::time::UnixTime;

/// The manifest format this build reads and writes.
pub const FORMAT: u32 = 1;
/// The archive entry that holds the manifest (always the first).
pub const MANIFEST_ENTRY: &str = "MANIFEST.toml";
/// Most payloads one bundle carries.
pub const MAX_PAYLOADS: usize = 64;
/// Longest payload path, in bytes (a ustar name field, no prefix).
pub const MAX_PATH_BYTES: usize = 100;
/// Largest payload, unpacked.
pub const MAX_PAYLOAD_BYTES: u64 = 256 << 20;
/// Largest sum of payloads, unpacked.
pub const MAX_UNPACKED_BYTES: u64 = 512 << 20;

/// A validated manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// The bundle's name, such as `home-graph`: versions of one name replace
    /// each other, and the anti-rollback floor is kept per name.
    pub name: Name,
    /// Its version.
    pub version: Version,
    /// The release track whose keys must sign it (`stable`).
    pub track: Name,
    /// After this it is refused.
    pub expires: UnixTime,
    /// The gateways it may be installed on.
    pub compatible: Compatible,
    /// The oldest tandem runtime it runs on.
    pub min_runtime: Option<Version>,
    /// Bundles that must be installed, at versions that match.
    pub depends: Vec<Constraint>,
    /// Bundles that must not be installed at versions that match.
    pub conflicts: Vec<Constraint>,
    /// The payload holding the graph the live upgrade runs.
    pub graph: PayloadPath,
    /// The payload holding the runtime binary the new instances run, if any.
    pub binary: Option<PayloadPath>,
    /// The vertex kinds its graphs use.
    pub kinds: Vec<KindDecl>,
    /// The state migrations its upgrade may run.
    pub migrations: Vec<MigrationId>,
    /// Every file it carries besides the manifest and the signatures.
    pub payloads: Vec<Payload>,
}

/// A bundle, track or key name: `[a-z0-9][a-z0-9._-]*`, at most 64 bytes.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Name(String);

impl Name {
    /// Checks `text`.
    pub fn parse(text: &str) -> Option<Name> {
        let mut bytes = text.bytes();
        let first_ok = bytes
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        let rest_ok = bytes.all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        });
        (first_ok && rest_ok && text.len() <= 64).then(|| Name(text.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The path of a payload inside the bundle and inside its unpacked
/// directory: relative, components of `[A-Za-z0-9._-]`, none `.` or `..`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PayloadPath(String);

impl PayloadPath {
    /// Checks `text`.
    pub fn parse(text: &str) -> Option<PayloadPath> {
        let component_ok = |c: &str| {
            !c.is_empty()
                && c != "."
                && c != ".."
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        };
        let reserved = [
            MANIFEST_ENTRY,
            super::revocation::REVOCATION_ENTRY,
            super::sign::SIGNATURES_ENTRY,
        ];
        (text.len() <= MAX_PATH_BYTES
            && text.split('/').all(component_ok)
            && !reserved.contains(&text))
        .then(|| PayloadPath(text.to_owned()))
    }

    /// The path.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PayloadPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a bundle may be installed: a gateway matches when its hardware id
/// is listed (or the list is `["*"]`) and so is its site id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Compatible {
    /// Hardware ids, or `*`.
    pub hardware: Vec<String>,
    /// Site ids, or `*`.
    pub sites: Vec<String>,
}

/// `NAME` or `NAME REQ` (`battery-graph >= 2.14`): a bundle and the
/// versions of it that match (any, without a requirement).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Constraint {
    /// The bundle it is about.
    pub name: Name,
    /// The versions that match.
    pub req: VersionReq,
}

impl Constraint {
    /// Parses `NAME [REQ]`.
    pub fn parse(text: &str) -> Option<Constraint> {
        let text = text.trim();
        let end = text
            .find(|c: char| c.is_whitespace() || "<>=^~*".contains(c))
            .unwrap_or(text.len());
        let (name, req) = text.split_at(end);
        let name = Name::parse(name)?;
        let req = match req.trim() {
            "" => VersionReq::STAR,
            req => VersionReq::parse(req).ok()?,
        };
        Some(Constraint { name, req })
    }

    /// True when version `v` of this bundle matches.
    pub fn matches(&self, v: &Version) -> bool {
        self.req.matches(v)
    }
}

impl fmt::Display for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.req == VersionReq::STAR {
            write!(f, "{}", self.name)
        } else {
            write!(f, "{} {}", self.name, self.req)
        }
    }
}

/// A vertex kind a bundle's graph uses.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KindDecl {
    /// `integrate`.
    pub name: String,
    /// Its version.
    pub version: u32,
    /// Its state schema id, for a stateful kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_schema: Option<u32>,
}

impl fmt::Display for KindDecl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} v{}", self.name, self.version)?;
        if let Some(schema) = self.state_schema {
            write!(f, " (state schema {schema})")?;
        }
        Ok(())
    }
}

/// A state migration, by id: `KIND:FROM->TO` (`integrate:1006->1016`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct MigrationId {
    /// The kind.
    pub kind: String,
    /// The schema it reads.
    pub from: u32,
    /// The schema it writes.
    pub to: u32,
}

impl MigrationId {
    /// Parses `KIND:FROM->TO`.
    pub fn parse(text: &str) -> Option<MigrationId> {
        let (kind, schemas) = text.split_once(':')?;
        let (from, to) = schemas.split_once("->")?;
        (!kind.is_empty()).then_some(())?;
        Some(MigrationId {
            kind: kind.to_owned(),
            from: from.parse().ok()?,
            to: to.parse().ok()?,
        })
    }
}

impl fmt::Display for MigrationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}->{}", self.kind, self.from, self.to)
    }
}

/// How a payload is stored in the archive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// As it is.
    None,
    /// One zstd stream; unpacked, it is `size` bytes.
    Zstd,
}

impl Compression {
    /// The name in the manifest.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Zstd => "zstd",
        }
    }
}

/// One file a bundle carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payload {
    /// Its path (also its archive entry's name).
    pub path: PayloadPath,
    /// SHA-256 of its unpacked bytes.
    pub sha256: [u8; 32],
    /// Its unpacked size.
    pub size: u64,
    /// How it is stored.
    pub compression: Compression,
    /// Its size in the archive (the entry's size).
    pub stored_size: u64,
    /// SHA-256 of its bytes in the archive, when compressed (so that every
    /// stored byte is covered, not only what it unpacks to).
    pub stored_sha256: Option<[u8; 32]>,
}

/// Why manifest bytes are not a valid manifest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// Not TOML, or not the manifest's fields.
    #[error("the manifest is not valid: {0}")]
    Syntax(String),
    /// Written by a newer `tandem bundle`.
    #[error("the manifest has format {found}; this tandem reads format {FORMAT}: upgrade the runtime first")]
    Format {
        /// The format it says.
        found: u32,
    },
    /// A field with a value it cannot have.
    #[error("manifest field `{field}` is `{value}`; expected {expected}")]
    Field {
        /// The field.
        field: &'static str,
        /// Its value.
        value: String,
        /// What would be valid.
        expected: &'static str,
    },
    /// Two payloads with one path.
    #[error("the manifest lists payload `{0}` twice")]
    DuplicatePayload(String),
    /// `graph` or `binary` names no payload.
    #[error("manifest field `{field}` names `{path}`, which is not among its payloads")]
    NotAPayload {
        /// `graph` or `binary`.
        field: &'static str,
        /// The path it names.
        path: String,
    },
    /// Too much.
    #[error("the manifest lists {payloads} payloads of {bytes} bytes unpacked; a bundle holds at most {MAX_PAYLOADS} payloads of {MAX_UNPACKED_BYTES} bytes")]
    TooLarge {
        /// Payloads listed.
        payloads: usize,
        /// Their unpacked sizes, added.
        bytes: u64,
    },
}

/// The manifest as written, field by field (see docs/bundles.md).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    format: u32,
    name: String,
    version: String,
    track: String,
    expires: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    min_runtime: Option<String>,
    #[serde(default)]
    depends: Vec<String>,
    #[serde(default)]
    conflicts: Vec<String>,
    graph: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    binary: Option<String>,
    #[serde(default)]
    migrations: Vec<String>,
    compatible: RawCompatible,
    #[serde(default)]
    kinds: Vec<KindDecl>,
    #[serde(default)]
    payloads: Vec<RawPayload>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCompatible {
    hardware: Vec<String>,
    sites: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPayload {
    path: String,
    sha256: String,
    size: u64,
    compression: String,
    stored_size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    stored_sha256: Option<String>,
}

fn field(field: &'static str, value: &str, expected: &'static str) -> ManifestError {
    ManifestError::Field {
        field,
        value: value.to_owned(),
        expected,
    }
}

/// `Some(T)` or the error naming the field.
fn need<T>(
    parsed: Option<T>,
    name: &'static str,
    value: &str,
    expected: &'static str,
) -> Result<T, ManifestError> {
    parsed.ok_or_else(|| field(name, value, expected))
}

const NAME_RULE: &str = "a name of a-z, 0-9, `.`, `_` and `-`, starting with a letter or digit";
const ID_RULE: &str = "a list of ids (or [\"*\"] for any)";

impl Manifest {
    /// Parses and validates manifest bytes.
    pub fn parse(bytes: &[u8]) -> Result<Manifest, ManifestError> {
        let text = std::str::from_utf8(bytes)
            .map_err(|_| ManifestError::Syntax("it is not UTF-8 text".into()))?;
        let raw: Raw = toml::from_str(text)
            .map_err(|e| ManifestError::Syntax(e.message().trim_end().to_owned()))?;
        if raw.format != FORMAT {
            return Err(ManifestError::Format { found: raw.format });
        }
        let name = need(Name::parse(&raw.name), "name", &raw.name, NAME_RULE)?;
        let version = need(
            Version::parse(&raw.version).ok(),
            "version",
            &raw.version,
            "a semantic version such as 2.14.0",
        )?;
        let track = need(Name::parse(&raw.track), "track", &raw.track, NAME_RULE)?;
        let expires = need(
            UnixTime::parse_rfc3339(&raw.expires),
            "expires",
            &raw.expires,
            "a UTC time such as 2027-01-31T00:00:00Z",
        )?;
        let min_runtime = match &raw.min_runtime {
            Some(v) => Some(need(
                Version::parse(v).ok(),
                "min_runtime",
                v,
                "a semantic version such as 0.1.0",
            )?),
            None => None,
        };
        let constraints = |list: &[String], name: &'static str| {
            list.iter()
                .map(|c| {
                    need(
                        Constraint::parse(c),
                        name,
                        c,
                        "a bundle name and an optional version requirement, such as `battery-graph >= 2.14`",
                    )
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let depends = constraints(&raw.depends, "depends")?;
        let conflicts = constraints(&raw.conflicts, "conflicts")?;
        let ids_ok = |ids: &[String]| {
            !ids.is_empty() && ids.iter().all(|id| id == "*" || Name::parse(id).is_some())
        };
        if !ids_ok(&raw.compatible.hardware) {
            return Err(field(
                "compatible.hardware",
                &raw.compatible.hardware.join(", "),
                ID_RULE,
            ));
        }
        if !ids_ok(&raw.compatible.sites) {
            return Err(field(
                "compatible.sites",
                &raw.compatible.sites.join(", "),
                ID_RULE,
            ));
        }
        let migrations = raw
            .migrations
            .iter()
            .map(|m| {
                need(
                    MigrationId::parse(m),
                    "migrations",
                    m,
                    "ids such as `integrate:1006->1016`",
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut payloads = Vec::with_capacity(raw.payloads.len());
        let mut seen = BTreeSet::new();
        let mut total = 0u64;
        for p in &raw.payloads {
            let path = need(
                PayloadPath::parse(&p.path),
                "payloads.path",
                &p.path,
                "a relative path of a-z, A-Z, 0-9, `.`, `_`, `-` and `/`, at most 100 bytes, with no `.` or `..` part",
            )?;
            if !seen.insert(path.clone()) {
                return Err(ManifestError::DuplicatePayload(p.path.clone()));
            }
            let sha256 = need(
                super::hex::decode_array(&p.sha256),
                "payloads.sha256",
                &p.sha256,
                "64 lowercase hex digits",
            )?;
            let compression = match p.compression.as_str() {
                "none" => Compression::None,
                "zstd" => Compression::Zstd,
                other => return Err(field("payloads.compression", other, "`none` or `zstd`")),
            };
            if p.size > MAX_PAYLOAD_BYTES {
                return Err(field(
                    "payloads.size",
                    &p.size.to_string(),
                    "at most 268435456 (256 MiB)",
                ));
            }
            if compression == Compression::None && p.stored_size != p.size {
                return Err(field(
                    "payloads.stored_size",
                    &p.stored_size.to_string(),
                    "the size, for a payload stored as it is",
                ));
            }
            let stored_sha256 = match (compression, &p.stored_sha256) {
                (Compression::None, None) => None,
                (Compression::Zstd, Some(h)) => Some(need(
                    super::hex::decode_array(h),
                    "payloads.stored_sha256",
                    h,
                    "64 lowercase hex digits",
                )?),
                (Compression::None, Some(h)) => {
                    return Err(field(
                        "payloads.stored_sha256",
                        h,
                        "nothing, for a payload stored as it is",
                    ))
                }
                (Compression::Zstd, None) => {
                    return Err(field(
                        "payloads.stored_sha256",
                        "",
                        "the sha256 of the compressed bytes",
                    ))
                }
            };
            total = total.saturating_add(p.size);
            payloads.push(Payload {
                path,
                sha256,
                size: p.size,
                compression,
                stored_size: p.stored_size,
                stored_sha256,
            });
        }
        if payloads.len() > MAX_PAYLOADS || total > MAX_UNPACKED_BYTES {
            return Err(ManifestError::TooLarge {
                payloads: payloads.len(),
                bytes: total,
            });
        }
        let listed = |field: &'static str, path: &str| {
            PayloadPath::parse(path)
                .filter(|p| seen.contains(p))
                .ok_or_else(|| ManifestError::NotAPayload {
                    field,
                    path: path.to_owned(),
                })
        };
        let graph = listed("graph", &raw.graph)?;
        let binary = raw
            .binary
            .as_deref()
            .map(|b| listed("binary", b))
            .transpose()?;
        Ok(Manifest {
            name,
            version,
            track,
            expires,
            compatible: Compatible {
                hardware: raw.compatible.hardware,
                sites: raw.compatible.sites,
            },
            min_runtime,
            depends,
            conflicts,
            graph,
            binary,
            kinds: raw.kinds,
            migrations,
            payloads,
        })
    }

    /// The manifest's TOML bytes (what `tandem bundle build` writes, and
    /// what signatures cover).
    pub fn to_bytes(&self) -> Vec<u8> {
        let raw = Raw {
            format: FORMAT,
            name: self.name.to_string(),
            version: self.version.to_string(),
            track: self.track.to_string(),
            expires: self.expires.to_rfc3339(),
            min_runtime: self.min_runtime.as_ref().map(ToString::to_string),
            depends: self.depends.iter().map(ToString::to_string).collect(),
            conflicts: self.conflicts.iter().map(ToString::to_string).collect(),
            graph: self.graph.to_string(),
            binary: self.binary.as_ref().map(ToString::to_string),
            migrations: self.migrations.iter().map(ToString::to_string).collect(),
            compatible: RawCompatible {
                hardware: self.compatible.hardware.clone(),
                sites: self.compatible.sites.clone(),
            },
            kinds: self.kinds.clone(),
            payloads: self
                .payloads
                .iter()
                .map(|p| RawPayload {
                    path: p.path.to_string(),
                    sha256: super::hex::encode(&p.sha256),
                    size: p.size,
                    compression: p.compression.name().to_owned(),
                    stored_size: p.stored_size,
                    stored_sha256: p.stored_sha256.map(|h| super::hex::encode(&h)),
                })
                .collect(),
        };
        // Serializing plain strings, numbers and lists cannot fail.
        toml::to_string(&raw).unwrap_or_default().into_bytes()
    }

    /// The payload at `path`.
    pub fn payload(&self, path: &PayloadPath) -> Option<&Payload> {
        self.payloads.iter().find(|p| &p.path == path)
    }

    /// `NAME VERSION`, for messages.
    pub fn id(&self) -> String {
        format!("{} {}", self.name, self.version)
    }
}

#[cfg(test)]
pub(crate) mod tests_support {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A valid manifest for tests.
    pub(crate) fn sample() -> Manifest {
        let graph = PayloadPath::parse("graph/home.toml").unwrap();
        Manifest {
            name: Name::parse("home").unwrap(),
            version: Version::new(1, 2, 0),
            track: Name::parse("stable").unwrap(),
            expires: UnixTime(1_800_000_000),
            compatible: Compatible {
                hardware: vec!["*".into()],
                sites: vec!["site-7".into()],
            },
            min_runtime: Some(Version::new(0, 1, 0)),
            depends: vec![Constraint::parse("battery-graph >= 2.14").unwrap()],
            conflicts: vec![Constraint::parse("legacy").unwrap()],
            graph: graph.clone(),
            binary: None,
            kinds: vec![KindDecl {
                name: "integrate".into(),
                version: 2,
                state_schema: Some(1016),
            }],
            migrations: vec![MigrationId::parse("integrate:1006->1016").unwrap()],
            payloads: vec![Payload {
                path: graph,
                sha256: [7; 32],
                size: 10,
                compression: Compression::None,
                stored_size: 10,
                stored_sha256: None,
            }],
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tests_support::sample;

    #[test]
    fn a_manifest_reads_back_as_written() {
        let m = sample();
        let bytes = m.to_bytes();
        assert_eq!(Manifest::parse(&bytes).unwrap(), m);
        let text = String::from_utf8(bytes).unwrap();
        assert!(
            text.contains("depends = [\"battery-graph >=2.14\"]"),
            "{text}"
        );
    }

    #[test]
    fn constraints_name_a_bundle_and_versions() {
        let c = Constraint::parse("battery-graph >= 2.14").unwrap();
        assert_eq!(c.name.as_str(), "battery-graph");
        assert!(c.matches(&Version::new(2, 14, 0)));
        assert!(!c.matches(&Version::new(2, 13, 9)));
        let any = Constraint::parse("legacy").unwrap();
        assert!(any.matches(&Version::new(0, 0, 1)));
        assert_eq!(any.to_string(), "legacy");
        assert!(Constraint::parse("Bad Name").is_none());
        assert!(Constraint::parse("x >= banana").is_none());
    }

    #[test]
    fn payload_paths_stay_inside() {
        for bad in [
            "../x",
            "/etc/passwd",
            "a/../b",
            "a//b",
            "./a",
            "",
            "MANIFEST.toml",
            "a b",
        ] {
            assert!(PayloadPath::parse(bad).is_none(), "{bad}");
        }
        assert!(PayloadPath::parse("bin/tandem").is_some());
        assert!(PayloadPath::parse(&"a".repeat(101)).is_none());
    }

    #[test]
    fn invalid_fields_are_named_with_what_would_be_valid() {
        let text = String::from_utf8(sample().to_bytes()).unwrap();
        let bad = text.replace("version = \"1.2.0\"", "version = \"1.2\"");
        let e = Manifest::parse(bad.as_bytes()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "manifest field `version` is `1.2`; expected a semantic version such as 2.14.0"
        );
        let bad = text.replace("format = 1", "format = 2");
        assert!(Manifest::parse(bad.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("upgrade the runtime first"));
        let bad = text.replace(
            "graph = \"graph/home.toml\"",
            "graph = \"graph/other.toml\"",
        );
        assert_eq!(
            Manifest::parse(bad.as_bytes()).unwrap_err().to_string(),
            "manifest field `graph` names `graph/other.toml`, which is not among its payloads"
        );
        let bad = format!("{text}\nsurprise = 1\n");
        assert!(matches!(
            Manifest::parse(bad.as_bytes()),
            Err(ManifestError::Syntax(_))
        ));
    }
}
