//! Making bundle files: `tandem bundle build`, `sign` and `revoke`.
//!
//! A build reads the graph (and the binary, and further graph files),
//! derives the vertex kinds the graphs use and the migrations those kinds
//! carry from this build's registry, stores each payload compressed with
//! zstd when that saves at least a tenth, and writes the archive unsigned.
//! Signing adds one signature to the second entry and copies the rest
//! byte for byte.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use semver::Version;
use sha2::{Digest as _, Sha256};
use tandem_core::Role;

use super::archive::{self, StatementKind, MAX_BUNDLE_BYTES};
use super::manifest::{
    Compatible, Compression, Constraint, KindDecl, Manifest, MigrationId, Name, Payload,
    PayloadPath,
};
use super::revocation::Revocation;
use super::sign::{self, SecretKey, Statement};
use super::time::UnixTime;
use super::verify::{self, Contents, Refusal};

/// zstd level for payloads.
const ZSTD_LEVEL: i32 = 9;

/// What `tandem bundle build` is asked to make.
#[derive(Clone, Debug)]
pub struct BuildSpec {
    /// The bundle's name.
    pub name: Name,
    /// Its version.
    pub version: Version,
    /// Its track.
    pub track: Name,
    /// When it expires.
    pub expires: UnixTime,
    /// Hardware ids it is for (`*` for any).
    pub hardware: Vec<String>,
    /// Site ids it is for (`*` for any).
    pub sites: Vec<String>,
    /// The oldest runtime it runs on.
    pub min_runtime: Option<Version>,
    /// Bundles it needs.
    pub depends: Vec<Constraint>,
    /// Bundles it cannot go with.
    pub conflicts: Vec<Constraint>,
    /// The graph the upgrade runs.
    pub graph: PathBuf,
    /// Further graph files it carries.
    pub extra_graphs: Vec<PathBuf>,
    /// A runtime binary the new instances run.
    pub binary: Option<PathBuf>,
}

/// Why a bundle cannot be built, signed or revoked.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A file that cannot be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A graph that does not load in this runtime.
    #[error("{0}")]
    Graph(String),
    /// A file name that is no payload path.
    #[error("{}: its name cannot be a payload path (a-z, A-Z, 0-9, `.`, `_`, `-`)", path.display())]
    Name {
        /// The file.
        path: PathBuf,
    },
    /// Two files of one name.
    #[error("two files would be `{0}` in the bundle; give them different names")]
    Duplicate(String),
    /// The file to sign is not a bundle or revocation.
    #[error("{}: {refusal}", path.display())]
    NotABundle {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        refusal: Box<Refusal>,
    },
    /// The result is larger than a gateway accepts.
    #[error("the bundle would be {0} bytes; a gateway accepts at most {MAX_BUNDLE_BYTES}")]
    TooLarge(u64),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> BuildError + '_ {
    move |source| BuildError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One payload, ready to store.
struct Stored {
    payload: Payload,
    bytes: Vec<u8>,
}

fn store(path: PayloadPath, raw: &[u8]) -> io::Result<Stored> {
    let sha256: [u8; 32] = Sha256::digest(raw).into();
    let size = raw.len() as u64;
    let packed = zstd::bulk::compress(raw, ZSTD_LEVEL)?;
    let (compression, bytes) = if packed.len() * 10 < raw.len() * 9 {
        (Compression::Zstd, packed)
    } else {
        (Compression::None, raw.to_vec())
    };
    let stored_sha256 = (compression == Compression::Zstd).then(|| Sha256::digest(&bytes).into());
    Ok(Stored {
        payload: Payload {
            path,
            sha256,
            size,
            compression,
            stored_size: bytes.len() as u64,
            stored_sha256,
        },
        bytes,
    })
}

fn payload_path(prefix: &str, file: &Path) -> Result<PayloadPath, BuildError> {
    file.file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| PayloadPath::parse(&format!("{prefix}/{n}")))
        .ok_or_else(|| BuildError::Name {
            path: file.to_path_buf(),
        })
}

/// Builds an unsigned bundle: its manifest and its archive's bytes.
pub fn build(spec: &BuildSpec) -> Result<(Manifest, Vec<u8>), BuildError> {
    let mut kinds: Vec<KindDecl> = Vec::new();
    let mut migrations: Vec<MigrationId> = Vec::new();
    let mut stored: Vec<Stored> = Vec::new();
    let graphs = std::iter::once(&spec.graph).chain(&spec.extra_graphs);
    for file in graphs {
        let loaded = crate::graph_file::load(file).map_err(|e| BuildError::Graph(e.to_string()))?;
        for node in &loaded.plan.nodes {
            if node.kind.role() != Role::Vertex {
                continue;
            }
            kinds.push(KindDecl {
                name: node.kind.name.to_owned(),
                version: node.kind.version,
                state_schema: node.kind.state_schema.map(|s| s.0),
            });
            for m in node.kind.migrations {
                migrations.push(MigrationId {
                    kind: node.kind.name.to_owned(),
                    from: m.from.0,
                    to: m.to.0,
                });
            }
        }
        let raw = std::fs::read(file).map_err(io_err(file))?;
        stored.push(store(payload_path("graph", file)?, &raw).map_err(io_err(file))?);
    }
    kinds.sort();
    kinds.dedup();
    migrations.sort();
    migrations.dedup();
    let mut binary = None;
    if let Some(file) = &spec.binary {
        let raw = std::fs::read(file).map_err(io_err(file))?;
        let path = payload_path("bin", file)?;
        binary = Some(path.clone());
        stored.push(store(path, &raw).map_err(io_err(file))?);
    }
    for (i, s) in stored.iter().enumerate() {
        if stored
            .iter()
            .skip(i + 1)
            .any(|t| t.payload.path == s.payload.path)
        {
            return Err(BuildError::Duplicate(s.payload.path.to_string()));
        }
    }
    let manifest = Manifest {
        name: spec.name.clone(),
        version: spec.version.clone(),
        track: spec.track.clone(),
        expires: spec.expires,
        compatible: Compatible {
            hardware: spec.hardware.clone(),
            sites: spec.sites.clone(),
        },
        min_runtime: spec.min_runtime.clone(),
        depends: spec.depends.clone(),
        conflicts: spec.conflicts.clone(),
        graph: payload_path("graph", &spec.graph)?,
        binary,
        kinds,
        migrations,
        payloads: stored.iter().map(|s| s.payload.clone()).collect(),
    };
    let statement = manifest.to_bytes();
    // What was written must read back as the same manifest.
    Manifest::parse(&statement).map_err(|e| BuildError::Graph(e.to_string()))?;
    let mut payloads = stored.iter().map(|s| {
        Ok::<_, io::Error>((
            s.payload.path.to_string(),
            s.payload.stored_size,
            Box::new(s.bytes.as_slice()) as Box<dyn Read>,
        ))
    });
    let bytes = archive::write(
        Vec::new(),
        StatementKind::Manifest,
        &statement,
        &sign::signatures_to_bytes(&[]),
        &mut payloads,
    )
    .map_err(io_err(&spec.graph))?;
    if bytes.len() as u64 > MAX_BUNDLE_BYTES {
        return Err(BuildError::TooLarge(bytes.len() as u64));
    }
    Ok((manifest, bytes))
}

/// A signed revocation file's bytes.
pub fn revocation(revocation: &Revocation, key: &SecretKey) -> io::Result<Vec<u8>> {
    let statement = revocation.to_bytes();
    let signature = key.sign(Statement::Revocation, &statement);
    archive::write(
        Vec::new(),
        StatementKind::Revocation,
        &statement,
        &sign::signatures_to_bytes(&[signature]),
        &mut std::iter::empty(),
    )
}

/// Adds `key`'s signature to the bundle or revocation `file` (replacing an
/// earlier signature of the same key), in place: written beside it, then
/// renamed over it. Returns what it holds and how many signatures it has now.
pub fn sign_file(file: &Path, key: &SecretKey) -> Result<(Contents, usize), BuildError> {
    let mut src = File::open(file).map_err(io_err(file))?;
    let opened =
        verify::open(&mut src, MAX_BUNDLE_BYTES).map_err(|refusal| BuildError::NotABundle {
            path: file.to_path_buf(),
            refusal: Box::new(refusal),
        })?;
    let statement = match opened.contents {
        Contents::Bundle(_) => Statement::Manifest,
        Contents::Revocation(_) => Statement::Revocation,
    };
    let signatures =
        sign::add_signature(&opened.signatures, key.sign(statement, &opened.statement));
    let temp = file.with_extension("signing");
    let out = File::create(&temp).map_err(io_err(&temp))?;
    let mut copy = File::open(file).map_err(io_err(file))?;
    let entries = opened.layout.entries.clone();
    let mut payloads = entries.iter().map(|e| {
        copy.seek(SeekFrom::Start(e.offset))?;
        let data = copy.try_clone()?.take(e.size);
        Ok((e.path.to_string(), e.size, Box::new(data) as Box<dyn Read>))
    });
    let written = archive::write(
        out,
        opened.layout.kind,
        &opened.statement,
        &sign::signatures_to_bytes(&signatures),
        &mut payloads,
    )
    .and_then(|f| f.sync_all());
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(BuildError::Io {
            path: temp,
            source: e,
        });
    }
    std::fs::rename(&temp, file).map_err(io_err(file))?;
    Ok((opened.contents, signatures.len()))
}

/// Writes `bytes` to `path` atomically and durably (see
/// [`crate::private::write_atomically`]): a crash leaves the old file or
/// the whole new one.
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<(), BuildError> {
    crate::private::write_atomically(path, bytes).map_err(io_err(path))
}
