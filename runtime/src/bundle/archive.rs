//! The container: a ustar archive exactly as `tandem bundle` writes it.
//!
//! ```text
//! MANIFEST.toml | REVOCATION.toml   the statement the signatures cover (first)
//! SIGNATURES.toml                   the signatures (second)
//! <payload path>...                 the payloads, as the manifest lists them
//! two zero blocks, then the end of the file
//! ```
//!
//! Every header is the canonical one for its name and size (mode 0644,
//! owner 0, time 0, a regular file), padding is zeros, and nothing follows
//! the end. So every byte of a bundle is either checked against a fixed
//! form or covered by a hash the signed manifest holds: any flipped,
//! added or cut byte is refused.
//!
//! Reading is two passes over a `Read + Seek`: [`read_layout`] walks the
//! headers (refusing links, devices, `..`, absolute paths, duplicates,
//! tar extensions, a wrong first entry, a cut or padded end) and keeps the
//! statement and signatures; [`read_payload`] then streams one payload
//! through its hashes, bounded (a zstd bomb is cut off at the size the
//! manifest declares), into a writer.

use std::io::{self, Read, Seek, SeekFrom, Write};

use sha2::{Digest as _, Sha256};

use super::manifest::{Compression, Payload, PayloadPath, MANIFEST_ENTRY, MAX_PAYLOADS};
use super::revocation::REVOCATION_ENTRY;
use super::sign::{MAX_SIGNATURES_BYTES, SIGNATURES_ENTRY};

/// Largest bundle file by default (checked before anything is read).
pub const MAX_BUNDLE_BYTES: u64 = 256 << 20;
/// Largest statement entry (a manifest or a revocation).
pub const MAX_STATEMENT_BYTES: u64 = 64 << 10;
/// Largest zstd window a payload may need (16 MiB): the memory a hostile
/// frame can make the decoder take.
const ZSTD_WINDOW_LOG_MAX: u32 = 24;
const BLOCK: u64 = 512;

/// What the first entry holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatementKind {
    /// `MANIFEST.toml`: a bundle.
    Manifest,
    /// `REVOCATION.toml`: a revocation.
    Revocation,
}

/// One payload entry: where its data lies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryAt {
    /// Its name.
    pub path: PayloadPath,
    /// Offset of its data in the file.
    pub offset: u64,
    /// Its size in the archive.
    pub size: u64,
}

/// What [`read_layout`] found.
#[derive(Clone, Debug)]
pub struct Layout {
    /// Bundle or revocation.
    pub kind: StatementKind,
    /// The first entry's bytes.
    pub statement: Vec<u8>,
    /// The second entry's bytes.
    pub signatures: Vec<u8>,
    /// The payload entries, in archive order.
    pub entries: Vec<EntryAt>,
    /// The file's length.
    pub len: u64,
}

/// Why a file is not a well-formed bundle archive.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// Larger than the cap, found before reading it.
    #[error("it is {len} bytes; a bundle may be at most {max} bytes")]
    TooLarge {
        /// Its length.
        len: u64,
        /// The cap.
        max: u64,
    },
    /// Reading failed.
    #[error("cannot read it: {0}")]
    Io(#[from] io::Error),
    /// The file ends inside an entry or before the end marker.
    #[error("it ends early ({what}): the file is truncated")]
    Truncated {
        /// Where it ended.
        what: String,
    },
    /// Bytes after the end marker.
    #[error("{extra} bytes follow the end of the archive; a bundle ends with its end marker")]
    TrailingData {
        /// How many.
        extra: u64,
    },
    /// A link entry.
    #[error("entry `{path}` is a link; a bundle holds regular files only")]
    Link {
        /// Its name.
        path: String,
    },
    /// A device, FIFO or directory entry.
    #[error("entry `{path}` is a {what}; a bundle holds regular files only")]
    NotAFile {
        /// Its name.
        path: String,
        /// What it is.
        what: &'static str,
    },
    /// A PAX or GNU extension header.
    #[error("entry `{path}` is a tar extension header (PAX or GNU); a bundle uses plain ustar entries only")]
    Extension {
        /// Its name.
        path: String,
    },
    /// A path outside the unpacked directory.
    #[error("entry `{path}` {why}; payload paths are relative and stay inside the bundle")]
    Escapes {
        /// Its name.
        path: String,
        /// `is absolute` or `contains ..`.
        why: &'static str,
    },
    /// A name that is no valid payload path.
    #[error("entry `{path}` has a name no payload may have (a-z, A-Z, 0-9, `.`, `_`, `-`, `/`; at most 100 bytes)")]
    BadName {
        /// Its name, lossily decoded.
        path: String,
    },
    /// The first entry is not the statement.
    #[error("the first entry is `{found}`; a bundle starts with {MANIFEST_ENTRY} (or a revocation with {REVOCATION_ENTRY})")]
    StatementNotFirst {
        /// What came first.
        found: String,
    },
    /// The second entry is not the signatures.
    #[error("the second entry is `{found}`; {SIGNATURES_ENTRY} must follow the manifest")]
    SignaturesNotSecond {
        /// What came second.
        found: String,
    },
    /// A name twice.
    #[error("entry `{path}` appears twice")]
    Duplicate {
        /// Its name.
        path: String,
    },
    /// A header or padding not as `tandem bundle` writes it (a changed byte).
    #[error("the header or padding of entry `{path}` is not as `tandem bundle` writes it: the file was changed")]
    NotCanonical {
        /// Its name.
        path: String,
    },
    /// A statement or signatures entry over its cap.
    #[error("entry `{path}` is {size} bytes; at most {max} are read")]
    EntryTooLarge {
        /// Its name.
        path: String,
        /// Its size.
        size: u64,
        /// The cap.
        max: u64,
    },
    /// Too many entries.
    #[error("it has more than {} entries", MAX_PAYLOADS + 2)]
    TooManyEntries,
    /// Not a ustar archive at all.
    #[error("it is not a bundle (not a ustar archive: {0})")]
    NotAnArchive(String),
}

/// Why a payload's bytes are not the ones the manifest lists.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    /// Reading failed.
    #[error("payload `{path}`: cannot read it: {source}")]
    Io {
        /// The payload.
        path: PayloadPath,
        /// Why.
        source: io::Error,
    },
    /// Writing it out failed.
    #[error("payload `{path}`: cannot write it: {source}")]
    Write {
        /// The payload.
        path: PayloadPath,
        /// Why.
        source: io::Error,
    },
    /// Its stored bytes differ from the signed hash.
    #[error("payload `{path}` does not match its sha256 in the manifest: the bundle was changed after it was signed")]
    Hash {
        /// The payload.
        path: PayloadPath,
    },
    /// It unpacks to another size.
    #[error("payload `{path}` unpacks to {found} bytes; the manifest says {expected}")]
    Size {
        /// The payload.
        path: PayloadPath,
        /// Bytes it gave (at most one more than expected: reading stops there).
        found: u64,
        /// Bytes the manifest lists.
        expected: u64,
    },
    /// The zstd stream is damaged.
    #[error("payload `{path}` is not a valid zstd stream ({reason}): the bundle was changed after it was signed")]
    Zstd {
        /// The payload.
        path: PayloadPath,
        /// The decoder's words.
        reason: String,
    },
}

/// The header `tandem bundle` writes for an entry `path` of `size` bytes.
pub fn canonical_header(path: &str, size: u64) -> io::Result<tar::Header> {
    let mut h = tar::Header::new_ustar();
    h.set_path(path)?;
    h.set_size(size);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    Ok(h)
}

/// Writes an archive: the statement, the signatures, then each payload's
/// stored bytes, then the end marker.
pub fn write<W: Write>(
    out: W,
    kind: StatementKind,
    statement: &[u8],
    signatures: &[u8],
    payloads: &mut dyn Iterator<Item = io::Result<(String, u64, Box<dyn Read + '_>)>>,
) -> io::Result<W> {
    let mut builder = tar::Builder::new(out);
    let first = match kind {
        StatementKind::Manifest => MANIFEST_ENTRY,
        StatementKind::Revocation => REVOCATION_ENTRY,
    };
    builder.append(&canonical_header(first, len64(statement))?, statement)?;
    builder.append(
        &canonical_header(SIGNATURES_ENTRY, len64(signatures))?,
        signatures,
    )?;
    for payload in payloads {
        let (path, size, data) = payload?;
        builder.append(&canonical_header(&path, size)?, data.take(size))?;
    }
    builder.into_inner()
}

fn len64(bytes: &[u8]) -> u64 {
    u64::try_from(bytes.len()).unwrap_or(u64::MAX)
}

/// Fills `buf` from `r`; `false` when the file ended first.
fn fill<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<bool> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(buf.get_mut(filled..).unwrap_or_default()) {
            Ok(0) => return Ok(false),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

fn padding(size: u64) -> u64 {
    (BLOCK - size % BLOCK) % BLOCK
}

/// Walks the archive's headers (pass 1). The size cap comes first, from
/// the file's length, before anything is read.
pub fn read_layout<R: Read + Seek>(r: &mut R, max_bytes: u64) -> Result<Layout, ArchiveError> {
    let len = r.seek(SeekFrom::End(0))?;
    if len > max_bytes {
        return Err(ArchiveError::TooLarge {
            len,
            max: max_bytes,
        });
    }
    r.seek(SeekFrom::Start(0))?;
    let mut pos = 0u64;
    let mut kind = None;
    let mut statement = Vec::new();
    let mut signatures = None;
    let mut entries: Vec<EntryAt> = Vec::new();
    let mut names: Vec<String> = Vec::new();
    let mut block = [0u8; BLOCK as usize];
    loop {
        let index = names.len();
        if !fill(r, &mut block)? {
            return Err(ArchiveError::Truncated {
                what: if index == 0 {
                    "no first entry".into()
                } else {
                    format!("after entry `{}`", names.last().map_or("", String::as_str))
                },
            });
        }
        pos += BLOCK;
        if block.iter().all(|&b| b == 0) {
            if index < 2 {
                return Err(ArchiveError::Truncated {
                    what: "an end marker before the signatures".into(),
                });
            }
            if !fill(r, &mut block)? {
                return Err(ArchiveError::Truncated {
                    what: "inside the end marker".into(),
                });
            }
            if block.iter().any(|&b| b != 0) {
                return Err(ArchiveError::NotCanonical {
                    path: "(end marker)".into(),
                });
            }
            pos += BLOCK;
            if pos != len {
                return Err(ArchiveError::TrailingData {
                    extra: len.saturating_sub(pos),
                });
            }
            break;
        }
        if index >= MAX_PAYLOADS + 2 {
            return Err(ArchiveError::TooManyEntries);
        }
        let header = tar::Header::from_byte_slice(&block);
        if index == 0 && header.as_ustar().is_none() && header.as_gnu().is_none() {
            return Err(ArchiveError::NotAnArchive(
                "no ustar magic in the first header".into(),
            ));
        }
        let raw_path = header.path_bytes();
        let path = String::from_utf8_lossy(&raw_path).into_owned();
        check_type(header, &path)?;
        if path.starts_with('/') {
            return Err(ArchiveError::Escapes {
                path,
                why: "is absolute",
            });
        }
        if path.split('/').any(|c| c == "..") {
            return Err(ArchiveError::Escapes {
                path,
                why: "contains `..`",
            });
        }
        if names.contains(&path) {
            return Err(ArchiveError::Duplicate { path });
        }
        let size = header
            .entry_size()
            .map_err(|_| ArchiveError::NotCanonical { path: path.clone() })?;
        match index {
            0 => {
                kind = Some(match path.as_str() {
                    MANIFEST_ENTRY => StatementKind::Manifest,
                    REVOCATION_ENTRY => StatementKind::Revocation,
                    _ => return Err(ArchiveError::StatementNotFirst { found: path }),
                });
            }
            1 if path != SIGNATURES_ENTRY => {
                return Err(ArchiveError::SignaturesNotSecond { found: path })
            }
            1 => {}
            _ => {
                if PayloadPath::parse(&path).is_none() {
                    return Err(ArchiveError::BadName { path });
                }
            }
        }
        let canonical = canonical_header(&path, size)
            .map_err(|_| ArchiveError::BadName { path: path.clone() })?;
        if canonical.as_bytes() != header.as_bytes() {
            return Err(ArchiveError::NotCanonical { path });
        }
        let max = match index {
            0 => MAX_STATEMENT_BYTES,
            1 => MAX_SIGNATURES_BYTES,
            _ => len,
        };
        if size > max {
            return Err(ArchiveError::EntryTooLarge { path, size, max });
        }
        let end = pos.saturating_add(size).saturating_add(padding(size));
        if end > len {
            return Err(ArchiveError::Truncated {
                what: format!("inside entry `{path}`"),
            });
        }
        if index < 2 {
            // At most 64 KiB, and the file holds that much: see above.
            let mut data = vec![0u8; usize::try_from(size).unwrap_or(0)];
            if !fill(r, &mut data)? {
                return Err(ArchiveError::Truncated {
                    what: format!("inside entry `{path}`"),
                });
            }
            if index == 0 {
                statement = data;
            } else {
                signatures = Some(data);
            }
        } else {
            entries.push(EntryAt {
                path: PayloadPath::parse(&path)
                    .ok_or(ArchiveError::BadName { path: path.clone() })?,
                offset: pos,
                size,
            });
            r.seek(SeekFrom::Start(pos + size))?;
        }
        let mut pad = [0u8; BLOCK as usize];
        let pad = pad
            .get_mut(..usize::try_from(padding(size)).unwrap_or(0))
            .unwrap_or_default();
        if !fill(r, pad)? {
            return Err(ArchiveError::Truncated {
                what: format!("inside entry `{path}`"),
            });
        }
        if pad.iter().any(|&b| b != 0) {
            return Err(ArchiveError::NotCanonical { path });
        }
        pos = end;
        names.push(path);
    }
    Ok(Layout {
        kind: kind.unwrap_or(StatementKind::Manifest),
        statement,
        signatures: signatures.unwrap_or_default(),
        entries,
        len,
    })
}

fn check_type(header: &tar::Header, path: &str) -> Result<(), ArchiveError> {
    let ty = header.entry_type();
    let path = path.to_owned();
    if ty.is_file() {
        return Ok(());
    }
    if ty.is_symlink() || ty.is_hard_link() {
        return Err(ArchiveError::Link { path });
    }
    if ty.is_pax_global_extensions()
        || ty.is_pax_local_extensions()
        || ty.is_gnu_longname()
        || ty.is_gnu_longlink()
        || ty.is_gnu_sparse()
    {
        return Err(ArchiveError::Extension { path });
    }
    let what = if ty.is_character_special() || ty.is_block_special() {
        "device"
    } else if ty.is_fifo() {
        "FIFO"
    } else if ty.is_dir() {
        "directory"
    } else {
        "entry of another type"
    };
    Err(ArchiveError::NotAFile { path, what })
}

/// A reader that hashes and counts what passes through it.
struct Tee<R> {
    inner: R,
    hash: Sha256,
    count: u64,
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let read = buf.get(..n).unwrap_or_default();
        self.hash.update(read);
        self.count += len64(read);
        Ok(n)
    }
}

/// Streams payload `expected` from `entry` into `out` (pass 2): its stored
/// bytes through their hash, unpacked bytes through theirs, reading at
/// most one byte more than the manifest's size.
pub fn read_payload<R: Read + Seek>(
    r: &mut R,
    entry: &EntryAt,
    expected: &Payload,
    out: &mut dyn Write,
) -> Result<(), PayloadError> {
    let path = || expected.path.clone();
    let io_err = |source| PayloadError::Io {
        path: path(),
        source,
    };
    r.seek(SeekFrom::Start(entry.offset)).map_err(io_err)?;
    let mut stored = Tee {
        inner: (&mut *r).take(entry.size),
        hash: Sha256::new(),
        count: 0,
    };
    let mut unpacked_hash = Sha256::new();
    let mut unpacked = 0u64;
    let mut buf = vec![0u8; 64 << 10];
    let limit = expected.size.saturating_add(1);
    {
        let mut source: Box<dyn Read + '_> = match expected.compression {
            Compression::None => Box::new(&mut stored),
            Compression::Zstd => {
                let mut decoder = zstd::stream::read::Decoder::new(&mut stored).map_err(io_err)?;
                decoder
                    .window_log_max(ZSTD_WINDOW_LOG_MAX)
                    .map_err(io_err)?;
                Box::new(decoder)
            }
        };
        let mut bounded = (&mut source).take(limit);
        loop {
            let n = match bounded.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if expected.compression == Compression::Zstd => {
                    return Err(PayloadError::Zstd {
                        path: path(),
                        reason: e.to_string(),
                    })
                }
                Err(e) => return Err(io_err(e)),
            };
            let chunk = buf.get(..n).unwrap_or_default();
            unpacked += len64(chunk);
            if unpacked > expected.size {
                break;
            }
            unpacked_hash.update(chunk);
            out.write_all(chunk).map_err(|source| PayloadError::Write {
                path: path(),
                source,
            })?;
        }
    }
    if unpacked != expected.size {
        return Err(PayloadError::Size {
            path: path(),
            found: unpacked,
            expected: expected.size,
        });
    }
    // Whatever the decoder left unread still counts for the stored hash.
    io::copy(&mut stored, &mut io::sink()).map_err(io_err)?;
    let stored_ok = match expected.compression {
        Compression::None => true,
        Compression::Zstd => {
            stored.count == expected.stored_size
                && Some(<[u8; 32]>::from(stored.hash.finalize())) == expected.stored_sha256
        }
    };
    if !stored_ok || <[u8; 32]>::from(unpacked_hash.finalize()) != expected.sha256 {
        return Err(PayloadError::Hash { path: path() });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::io::Cursor;

    fn archive(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        {
            let mut b = tar::Builder::new(&mut out);
            for (path, data) in entries {
                b.append(&canonical_header(path, data.len() as u64).unwrap(), *data)
                    .unwrap();
            }
            b.finish().unwrap();
        }
        out
    }

    fn layout(bytes: &[u8]) -> Result<Layout, ArchiveError> {
        read_layout(&mut Cursor::new(bytes), MAX_BUNDLE_BYTES)
    }

    #[test]
    fn a_well_formed_archive_is_laid_out() {
        let bytes = archive(&[
            (MANIFEST_ENTRY, b"m"),
            (SIGNATURES_ENTRY, b""),
            ("graph/a.toml", b"hello"),
        ]);
        let l = layout(&bytes).unwrap();
        assert_eq!(l.kind, StatementKind::Manifest);
        assert_eq!(l.statement, b"m");
        assert_eq!(l.entries.len(), 1);
        assert_eq!(l.entries[0].size, 5);
        assert_eq!(&bytes[l.entries[0].offset as usize..][..5], b"hello");
    }

    #[test]
    fn the_order_of_entries_is_fixed() {
        let e = layout(&archive(&[(SIGNATURES_ENTRY, b""), (MANIFEST_ENTRY, b"m")])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the first entry is `SIGNATURES.toml`; a bundle starts with MANIFEST.toml (or a revocation with REVOCATION.toml)"
        );
        let e = layout(&archive(&[(MANIFEST_ENTRY, b"m"), ("x", b"")])).unwrap_err();
        assert!(matches!(e, ArchiveError::SignaturesNotSecond { .. }), "{e}");
        let e = layout(&archive(&[
            (MANIFEST_ENTRY, b"m"),
            (SIGNATURES_ENTRY, b""),
            ("a", b"1"),
            ("a", b"2"),
        ]))
        .unwrap_err();
        assert_eq!(e.to_string(), "entry `a` appears twice");
    }

    #[test]
    fn the_size_cap_comes_before_reading() {
        struct Huge;
        impl Read for Huge {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                panic!("read before the size was checked")
            }
        }
        impl Seek for Huge {
            fn seek(&mut self, _: SeekFrom) -> io::Result<u64> {
                Ok(1 << 40)
            }
        }
        let e = read_layout(&mut Huge, MAX_BUNDLE_BYTES).unwrap_err();
        assert_eq!(
            e.to_string(),
            "it is 1099511627776 bytes; a bundle may be at most 268435456 bytes"
        );
    }

    #[test]
    fn trailing_and_missing_ends_are_refused() {
        let mut bytes = archive(&[(MANIFEST_ENTRY, b"m"), (SIGNATURES_ENTRY, b"")]);
        bytes.extend_from_slice(&[0; 512]);
        assert!(matches!(
            layout(&bytes),
            Err(ArchiveError::TrailingData { extra: 512 })
        ));
        bytes.truncate(bytes.len() - 1024);
        let e = layout(&bytes).unwrap_err();
        assert_eq!(
            e.to_string(),
            "it ends early (inside the end marker): the file is truncated"
        );
    }
}
