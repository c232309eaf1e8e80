//! Checking a bundle (or a revocation) in the order that refuses cheaply
//! first and touches nothing:
//!
//! 1. the size cap, from the file's length, before reading it;
//! 2. the archive's structure (pass 1, [`super::archive::read_layout`]),
//!    the statement parsed, and the entries matched against the manifest;
//! 3. the signatures: the k-of-n rule of the statement's track ([`Trust::check`]);
//! 4. the policy ([`super::policy::check`]): expiry, compatibility,
//!    constraints, kinds and migrations, the floor, revocations; it needs
//!    only the signed manifest, so an expired or older bundle is refused
//!    before any payload is read;
//! 5. each payload's hashes and sizes while streaming it (pass 2).
//!
//! [`Opened`] is what steps 1 and 2 give, for `tandem bundle inspect`,
//! which shows a bundle whatever its signatures say.

use std::io::{self, Read, Seek, Write};

use super::archive::{self, ArchiveError, EntryAt, Layout, PayloadError, StatementKind};
use super::manifest::{Manifest, ManifestError, Payload};
use super::policy::{self, Gateway, PolicyRefusal};
use super::revocation::{Revocation, RevocationError};
use super::sign::{self, KeyId, SignatureEntry, SignaturesError, Statement};
use super::trust::{SignatureRefusal, Trust};

/// What a file states.
#[derive(Clone, Debug)]
pub enum Contents {
    /// A bundle.
    Bundle(Box<Manifest>),
    /// A revocation.
    Revocation(Revocation),
}

impl Contents {
    /// The track whose keys must sign it.
    pub fn track(&self) -> &str {
        match self {
            Contents::Bundle(m) => m.track.as_str(),
            Contents::Revocation(r) => r.track.as_str(),
        }
    }

    fn statement(&self) -> Statement {
        match self {
            Contents::Bundle(_) => Statement::Manifest,
            Contents::Revocation(_) => Statement::Revocation,
        }
    }
}

/// Why a gateway refuses a bundle or a revocation. Each message completes
/// "FILE is refused: ...".
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// Not a well-formed archive (size, structure, a changed or cut byte).
    #[error("{0}")]
    Archive(#[from] ArchiveError),
    /// The manifest is not valid.
    #[error("{0}")]
    Manifest(#[from] ManifestError),
    /// The revocation is not valid.
    #[error("{0}")]
    Revocation(#[from] RevocationError),
    /// The signatures entry is not valid.
    #[error("{0}")]
    Signatures(#[from] SignaturesError),
    /// An entry the manifest does not list.
    #[error("entry `{path}` is not listed in the manifest; a bundle carries exactly its manifest's payloads")]
    NotInManifest {
        /// The entry.
        path: String,
    },
    /// A payload the manifest lists but the archive lacks.
    #[error("payload `{path}` is listed in the manifest but missing from the archive")]
    Missing {
        /// The payload.
        path: String,
    },
    /// An entry whose stored size is not the manifest's.
    #[error("entry `{path}` is {found} bytes; the manifest says {expected}")]
    StoredSize {
        /// The entry.
        path: String,
        /// Its size.
        found: u64,
        /// The manifest's.
        expected: u64,
    },
    /// A revocation with payloads.
    #[error("a revocation carries no payloads, and this one carries `{path}`")]
    RevocationPayload {
        /// The first payload.
        path: String,
    },
    /// The signatures do not satisfy the track.
    #[error("{0}")]
    Signature(#[from] SignatureRefusal),
    /// A payload differs from what was signed.
    #[error("{0}")]
    Payload(#[from] PayloadError),
    /// The gateway's policy refuses it.
    #[error("{0}")]
    Policy(#[from] PolicyRefusal),
}

/// A file whose structure was checked (steps 1 and 2), not yet its signatures.
#[derive(Clone, Debug)]
pub struct Opened {
    /// What it states.
    pub contents: Contents,
    /// The statement's bytes, which signatures cover.
    pub statement: Vec<u8>,
    /// Its signatures, as given.
    pub signatures: Vec<SignatureEntry>,
    /// Where its payloads lie, in manifest order.
    pub entries: Vec<EntryAt>,
    /// The archive's layout.
    pub layout: Layout,
}

/// Steps 1 and 2: the size cap, the structure, the statement, and the
/// entries against the manifest.
pub fn open<R: Read + Seek>(r: &mut R, max_bytes: u64) -> Result<Opened, Refusal> {
    let layout = archive::read_layout(r, max_bytes)?;
    let contents = match layout.kind {
        StatementKind::Manifest => Contents::Bundle(Box::new(Manifest::parse(&layout.statement)?)),
        StatementKind::Revocation => Contents::Revocation(Revocation::parse(&layout.statement)?),
    };
    let entries = match &contents {
        Contents::Revocation(_) => {
            if let Some(e) = layout.entries.first() {
                return Err(Refusal::RevocationPayload {
                    path: e.path.to_string(),
                });
            }
            Vec::new()
        }
        Contents::Bundle(m) => {
            if let Some(extra) = layout.entries.iter().find(|e| m.payload(&e.path).is_none()) {
                return Err(Refusal::NotInManifest {
                    path: extra.path.to_string(),
                });
            }
            let mut entries = Vec::with_capacity(m.payloads.len());
            for p in &m.payloads {
                let Some(e) = layout.entries.iter().find(|e| e.path == p.path) else {
                    return Err(Refusal::Missing {
                        path: p.path.to_string(),
                    });
                };
                if e.size != p.stored_size {
                    return Err(Refusal::StoredSize {
                        path: p.path.to_string(),
                        found: e.size,
                        expected: p.stored_size,
                    });
                }
                entries.push(e.clone());
            }
            entries
        }
    };
    let signatures = sign::parse_signatures(&layout.signatures)?;
    Ok(Opened {
        contents,
        statement: layout.statement.clone(),
        signatures,
        entries,
        layout,
    })
}

impl Opened {
    /// Step 3: the trusted keys that signed it, k of n.
    pub fn check_signatures(&self, trust: &Trust) -> Result<Vec<KeyId>, Refusal> {
        Ok(trust.check(
            self.contents.track(),
            self.contents.statement(),
            &self.statement,
            &self.signatures,
        )?)
    }

    /// Step 4: streams every payload through its hashes into the writer
    /// `sink` gives for it.
    pub fn check_payloads<R: Read + Seek>(
        &self,
        r: &mut R,
        sink: &mut dyn FnMut(&Payload) -> io::Result<Box<dyn Write>>,
    ) -> Result<(), Refusal> {
        let Contents::Bundle(m) = &self.contents else {
            return Ok(());
        };
        for (p, e) in m.payloads.iter().zip(&self.entries) {
            let mut out = sink(p).map_err(|source| PayloadError::Write {
                path: p.path.clone(),
                source,
            })?;
            archive::read_payload(r, e, p, &mut out)?;
            out.flush().map_err(|source| PayloadError::Write {
                path: p.path.clone(),
                source,
            })?;
        }
        Ok(())
    }
}

/// A bundle or revocation that passed every check.
#[derive(Clone, Debug)]
pub struct Verified {
    /// What it states.
    pub contents: Contents,
    /// The trusted keys that signed it.
    pub signers: Vec<KeyId>,
}

/// Steps 1 to 5, in order, writing each payload to what `sink` gives (a
/// sink of `io::sink()` only checks). A revocation has no step 4 or 5.
pub fn verify<R: Read + Seek>(
    r: &mut R,
    max_bytes: u64,
    trust: &Trust,
    gateway: &Gateway<'_>,
    sink: &mut dyn FnMut(&Payload) -> io::Result<Box<dyn Write>>,
) -> Result<Verified, Refusal> {
    let opened = open(r, max_bytes)?;
    let signers = opened.check_signatures(trust)?;
    if let Contents::Bundle(m) = &opened.contents {
        policy::check(m, gateway)?;
    }
    opened.check_payloads(r, sink)?;
    Ok(Verified {
        contents: opened.contents,
        signers,
    })
}

/// A sink that keeps nothing.
pub fn discard(_: &Payload) -> io::Result<Box<dyn Write>> {
    Ok(Box::new(io::sink()))
}
