//! Checkpoints in a state directory: written whole or not at all, the last K
//! kept, the newest one that verifies found again after a crash.
//!
//! A checkpoint at sequence number 42 lives in `ckpt-00000000000000000042.tdc`
//! (20 digits, so names sort like numbers). It is written as
//! `ckpt-….tdc.tmp`, fsynced, renamed into place and the directory fsynced:
//! a crash at any point leaves either the previous checkpoints or the new one
//! as well, never a half-written file under a checkpoint name. Temp files a
//! crash leaves behind are removed by [`CheckpointStore::load_latest`].

use super::format::{self, FormatError};
use super::storage::{FsStorage, Storage};
use super::Checkpoint;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use tandem_core::Seq;
use thiserror::Error;

/// How many checkpoints a store keeps unless told otherwise.
pub const DEFAULT_KEEP: usize = 3;

const PREFIX: &str = "ckpt-";
const SUFFIX: &str = ".tdc";
const TEMP_SUFFIX: &str = ".tdc.tmp";

/// The file name of the checkpoint taken at `seq`.
pub fn file_name(seq: Seq) -> String {
    format!("{PREFIX}{:020}{SUFFIX}", seq.0)
}

/// The sequence number in a checkpoint file name, if it is one.
pub fn parse_file_name(name: &str) -> Option<Seq> {
    let digits = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().map(Seq)
}

/// Checkpoint files by sequence number, oldest first; temp files.
type Listing = (Vec<(Seq, PathBuf)>, Vec<PathBuf>);

fn is_temp(name: &str) -> bool {
    name.starts_with(PREFIX) && name.ends_with(TEMP_SUFFIX)
}

/// A checkpoint operation could not touch the state directory.
#[derive(Debug, Error)]
pub enum StoreError {
    /// A file operation failed.
    #[error(
        "cannot {op} {path}: {source}; check that the state directory exists, \
         is writable and has free space"
    )]
    Io {
        /// What was being done: "create", "write", "fsync", "rename", "list", ...
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
}

fn io_err<'p>(op: &'static str, path: &'p Path) -> impl FnOnce(io::Error) -> StoreError + 'p {
    move |source| StoreError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Why a checkpoint file was passed over.
#[derive(Debug, Error)]
pub enum Refusal {
    /// Its bytes do not verify.
    #[error("{0}")]
    Format(#[from] FormatError),
    /// It could not be read.
    #[error("cannot be read: {0}")]
    Unreadable(#[source] io::Error),
}

/// A checkpoint newer than the one used, refused, and why.
#[derive(Debug)]
pub struct Skipped {
    /// The refused file.
    pub path: PathBuf,
    /// Why it was refused.
    pub reason: Refusal,
    /// The file name of the checkpoint used instead, if any verified.
    pub used_instead: Option<String>,
}

impl fmt::Display for Skipped {
    /// "checkpoint /x/ckpt-….42.tdc is truncated: 812 bytes, the header says
    /// 4096; using the previous checkpoint ckpt-….41.tdc"
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "checkpoint {} {}; ", self.path.display(), self.reason)?;
        match &self.used_instead {
            Some(name) => write!(f, "using the previous checkpoint {name}"),
            None => f.write_str("no older checkpoint verifies, so vertex state starts empty"),
        }
    }
}

/// What [`CheckpointStore::load_latest`] found.
#[derive(Debug)]
pub struct Recovery {
    /// The newest checkpoint that verifies, and its file.
    pub latest: Option<(PathBuf, Checkpoint)>,
    /// Newer checkpoints that were refused, newest first.
    pub skipped: Vec<Skipped>,
    /// Temp files of interrupted saves that were removed.
    pub cleaned: Vec<PathBuf>,
}

impl Recovery {
    /// The checkpoint to resume from, if any.
    pub fn checkpoint(&self) -> Option<&Checkpoint> {
        self.latest.as_ref().map(|(_, c)| c)
    }
}

/// Checkpoints in one state directory.
#[derive(Debug)]
pub struct CheckpointStore<S = FsStorage> {
    dir: PathBuf,
    storage: S,
    keep: usize,
}

impl CheckpointStore<FsStorage> {
    /// A store over `dir` on the real file system, creating the directory if needed.
    pub fn open(dir: impl Into<PathBuf>) -> Result<CheckpointStore<FsStorage>, StoreError> {
        let dir = dir.into();
        crate::private::create_dir(&dir).map_err(io_err("create directory", &dir))?;
        Ok(CheckpointStore::with_storage(dir, FsStorage))
    }
}

impl<S: Storage> CheckpointStore<S> {
    /// A store over `dir` on `storage`, keeping [`DEFAULT_KEEP`] checkpoints.
    pub fn with_storage(dir: impl Into<PathBuf>, storage: S) -> CheckpointStore<S> {
        CheckpointStore {
            dir: dir.into(),
            storage,
            keep: DEFAULT_KEEP,
        }
    }

    /// Keeps the newest `keep` checkpoints (at least one) after each save.
    pub fn keep(mut self, keep: usize) -> CheckpointStore<S> {
        self.keep = keep.max(1);
        self
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The storage, for tests that damage or inspect it.
    pub fn storage_mut(&mut self) -> &mut S {
        &mut self.storage
    }

    /// The storage, giving up the store.
    pub fn into_storage(self) -> S {
        self.storage
    }

    /// Writes `checkpoint` durably and removes all but the newest K.
    ///
    /// When this returns `Ok`, the checkpoint survives a crash. When it
    /// returns an error, the checkpoints saved before are untouched. Failing
    /// to remove an old checkpoint is not an error: the next save retries.
    /// Sequence numbers are expected to grow from save to save; saving at a
    /// sequence number already present replaces that checkpoint.
    pub fn save(&mut self, checkpoint: &Checkpoint) -> Result<PathBuf, StoreError> {
        self.save_image(checkpoint.seq, &format::encode(checkpoint))
    }

    /// [`CheckpointStore::save`] of a checkpoint at `seq` already encoded
    /// ([`format::encode`]): for a caller that keeps the image anyway.
    pub fn save_image(&mut self, seq: Seq, image: &[u8]) -> Result<PathBuf, StoreError> {
        let name = file_name(seq);
        let path = self.dir.join(&name);
        let temp = self.dir.join(format!("{name}.tmp"));
        if let Err(e) = self.write_durably(&temp, &path, image) {
            // Best effort: a temp file left here is removed on the next load.
            let _ = self.storage.remove(&temp);
            return Err(e);
        }
        self.prune(seq);
        Ok(path)
    }

    fn write_durably(&mut self, temp: &Path, path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
        self.storage.create(temp).map_err(io_err("create", temp))?;
        self.storage
            .write(temp, bytes)
            .map_err(io_err("write", temp))?;
        self.storage
            .sync_file(temp)
            .map_err(io_err("fsync", temp))?;
        self.storage
            .rename(temp, path)
            .map_err(io_err("rename into place", path))?;
        self.storage
            .sync_dir(&self.dir)
            .map_err(io_err("fsync directory", &self.dir))
    }

    /// Removes checkpoints beyond the newest `keep`, never the one just saved.
    fn prune(&mut self, saved: Seq) {
        let Ok((all, _)) = self.scan() else {
            return;
        };
        for (seq, path) in all.into_iter().rev().skip(self.keep) {
            if seq != saved {
                let _ = self.storage.remove(&path);
            }
        }
    }

    /// Every checkpoint file in the directory, oldest first (not verified).
    pub fn list(&mut self) -> Result<Vec<(Seq, PathBuf)>, StoreError> {
        self.scan().map(|(all, _)| all)
    }

    /// Checkpoint files oldest first, and temp files.
    fn scan(&mut self) -> Result<Listing, StoreError> {
        let names = self
            .storage
            .list(&self.dir)
            .map_err(io_err("list", &self.dir))?;
        let mut all = Vec::new();
        let mut temps = Vec::new();
        for name in names {
            if let Some(seq) = parse_file_name(&name) {
                all.push((seq, self.dir.join(name)));
            } else if is_temp(&name) {
                temps.push(self.dir.join(name));
            }
        }
        all.sort();
        temps.sort();
        Ok((all, temps))
    }

    /// Finds the newest checkpoint that verifies, reporting the newer ones
    /// it refused, and removes temp files left by interrupted saves.
    ///
    /// Only listing the directory can fail; a file that cannot be read is
    /// refused like a damaged one.
    pub fn load_latest(&mut self) -> Result<Recovery, StoreError> {
        let (all, temps) = self.scan()?;
        let mut cleaned = Vec::new();
        for temp in temps {
            if self.storage.remove(&temp).is_ok() {
                cleaned.push(temp);
            }
        }
        let mut skipped = Vec::new();
        let mut latest = None;
        for (_, path) in all.into_iter().rev() {
            let reason = match self.storage.read(&path) {
                Ok(bytes) => match format::decode(&bytes) {
                    Ok(checkpoint) => {
                        latest = Some((path, checkpoint));
                        break;
                    }
                    Err(e) => Refusal::Format(e),
                },
                Err(e) => Refusal::Unreadable(e),
            };
            skipped.push(Skipped {
                path,
                reason,
                used_instead: None,
            });
        }
        let used = latest
            .as_ref()
            .and_then(|(p, _): &(PathBuf, Checkpoint)| p.file_name()?.to_str().map(str::to_owned));
        for s in &mut skipped {
            s.used_instead.clone_from(&used);
        }
        Ok(Recovery {
            latest,
            skipped,
            cleaned,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn file_names_sort_like_sequence_numbers() {
        assert_eq!(file_name(Seq(42)), "ckpt-00000000000000000042.tdc");
        assert_eq!(file_name(Seq(u64::MAX)), "ckpt-18446744073709551615.tdc");
        assert!(file_name(Seq(9)) < file_name(Seq(10)));
        assert_eq!(parse_file_name(&file_name(Seq(42))), Some(Seq(42)));
        assert_eq!(parse_file_name("ckpt-7.tdc"), Some(Seq(7)));
        for other in [
            "ckpt-.tdc",
            "ckpt-+7.tdc",
            "ckpt-00000000000000000042.tdc.tmp",
            "ckpt-99999999999999999999999.tdc",
            "notes.txt",
        ] {
            assert_eq!(parse_file_name(other), None, "{other}");
        }
        assert!(is_temp("ckpt-00000000000000000042.tdc.tmp"));
        assert!(!is_temp("ckpt-00000000000000000042.tdc"));
    }
}
