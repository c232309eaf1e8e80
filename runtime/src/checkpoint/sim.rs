//! Storage backends for tests: a disk in memory that can show what a crash
//! leaves behind, and a wrapper that fails every operation after the first N.

use super::storage::Storage;
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

/// One file's bytes: what reads see, and what has been fsynced.
#[derive(Clone, Debug, Default)]
struct SimFile {
    data: Vec<u8>,
    synced: Vec<u8>,
}

/// What happens to bytes written but not yet fsynced when the power goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Unsynced {
    /// They are lost: the file holds what was last fsynced.
    Lost,
    /// Half of them reached the disk: the file is cut short.
    HalfWritten,
    /// The file has its full length, but the unsynced part reads as zeros.
    ZeroedTail,
}

/// Damage done to a file on a [`SimDisk`], as a torn write or a bad sector would.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Damage {
    /// The file keeps only its first `n` bytes.
    Truncate(usize),
    /// Every byte from offset `n` on reads as zero.
    ZeroFrom(usize),
    /// Bit `n` (counting from the first byte's lowest bit) is flipped.
    FlipBit(usize),
}

/// A file system in memory that tracks what is durable, so a test can ask what
/// a crash at this moment would leave on disk ([`SimDisk::crash_images`]).
///
/// File contents become durable with `sync_file`; creations, renames and
/// removals become durable with `sync_dir` of their directory.
#[derive(Clone, Debug, Default)]
pub struct SimDisk {
    files: BTreeMap<u64, SimFile>,
    next: u64,
    /// Names as a reader sees them now.
    names: BTreeMap<PathBuf, u64>,
    /// Names as of the last `sync_dir` of their directory.
    durable: BTreeMap<PathBuf, u64>,
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{}: no such file", path.display()),
    )
}

impl SimDisk {
    /// An empty disk.
    pub fn new() -> SimDisk {
        SimDisk::default()
    }

    /// Every disk a crash right now could leave: directory entries as of
    /// their last sync or as they are now, crossed with each fate of the
    /// bytes written but not fsynced.
    pub fn crash_images(&self) -> Vec<SimDisk> {
        let mut images = Vec::new();
        for names in [&self.durable, &self.names] {
            for fate in [Unsynced::Lost, Unsynced::HalfWritten, Unsynced::ZeroedTail] {
                images.push(self.image(names, fate));
            }
        }
        images
    }

    fn image(&self, names: &BTreeMap<PathBuf, u64>, fate: Unsynced) -> SimDisk {
        let mut files = BTreeMap::new();
        for (&id, f) in &self.files {
            let synced = f.synced.len().min(f.data.len());
            let mut data = match fate {
                Unsynced::Lost => f.synced.clone(),
                Unsynced::HalfWritten => {
                    let keep = synced + (f.data.len() - synced) / 2;
                    f.data.get(..keep).unwrap_or_default().to_vec()
                }
                Unsynced::ZeroedTail => f.data.clone(),
            };
            if fate == Unsynced::ZeroedTail {
                if let Some(tail) = data.get_mut(synced..) {
                    tail.fill(0);
                }
            }
            files.insert(
                id,
                SimFile {
                    synced: data.clone(),
                    data,
                },
            );
        }
        let names: BTreeMap<PathBuf, u64> = names
            .iter()
            .filter(|(_, id)| files.contains_key(id))
            .map(|(p, &id)| (p.clone(), id))
            .collect();
        SimDisk {
            files,
            next: self.next,
            durable: names.clone(),
            names,
        }
    }

    /// Damages the file at `path` (both what reads see and what is durable).
    pub fn damage(&mut self, path: &Path, damage: Damage) -> io::Result<()> {
        let id = *self.names.get(path).ok_or_else(|| not_found(path))?;
        let file = self.files.get_mut(&id).ok_or_else(|| not_found(path))?;
        for bytes in [&mut file.data, &mut file.synced] {
            match damage {
                Damage::Truncate(n) => bytes.truncate(n),
                Damage::ZeroFrom(n) => {
                    if let Some(tail) = bytes.get_mut(n..) {
                        tail.fill(0);
                    }
                }
                Damage::FlipBit(bit) => {
                    if let Some(b) = bytes.get_mut(bit / 8) {
                        *b ^= 1 << (bit % 8);
                    }
                }
            }
        }
        Ok(())
    }

    /// Puts a file in place, durable, as if written long ago.
    pub fn put(&mut self, path: &Path, bytes: &[u8]) {
        let id = self.next;
        self.next += 1;
        self.files.insert(
            id,
            SimFile {
                data: bytes.to_vec(),
                synced: bytes.to_vec(),
            },
        );
        self.names.insert(path.to_path_buf(), id);
        self.durable.insert(path.to_path_buf(), id);
    }

    /// The names in `dir`, sorted.
    pub fn names_in(&self, dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = self
            .names
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
            .collect();
        names.sort();
        names
    }

    fn file_mut(&mut self, path: &Path) -> io::Result<&mut SimFile> {
        let id = *self.names.get(path).ok_or_else(|| not_found(path))?;
        self.files.get_mut(&id).ok_or_else(|| not_found(path))
    }
}

impl Storage for SimDisk {
    fn create(&mut self, path: &Path) -> io::Result<()> {
        let id = self.next;
        self.next += 1;
        self.files.insert(id, SimFile::default());
        self.names.insert(path.to_path_buf(), id);
        Ok(())
    }

    fn write(&mut self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        self.file_mut(path)?.data.extend_from_slice(bytes);
        Ok(())
    }

    fn sync_file(&mut self, path: &Path) -> io::Result<()> {
        let file = self.file_mut(path)?;
        file.synced = file.data.clone();
        Ok(())
    }

    fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()> {
        let id = self.names.remove(from).ok_or_else(|| not_found(from))?;
        self.names.insert(to.to_path_buf(), id);
        Ok(())
    }

    fn sync_dir(&mut self, dir: &Path) -> io::Result<()> {
        self.durable.retain(|p, _| p.parent() != Some(dir));
        for (p, &id) in &self.names {
            if p.parent() == Some(dir) {
                self.durable.insert(p.clone(), id);
            }
        }
        Ok(())
    }

    fn list(&mut self, dir: &Path) -> io::Result<Vec<String>> {
        Ok(self.names_in(dir))
    }

    fn read(&mut self, path: &Path) -> io::Result<Vec<u8>> {
        Ok(self.file_mut(path)?.data.clone())
    }

    fn remove(&mut self, path: &Path) -> io::Result<()> {
        self.names
            .remove(path)
            .map(drop)
            .ok_or_else(|| not_found(path))
    }
}

/// Wraps a [`Storage`] and fails every operation after the first `n`, as a
/// full disk or a yanked SD card would; the failed operation does nothing.
#[derive(Debug)]
pub struct FailAfter<S> {
    inner: S,
    remaining: usize,
    done: usize,
}

impl<S: Storage> FailAfter<S> {
    /// Lets `n` operations through, then fails all others.
    pub fn new(inner: S, n: usize) -> FailAfter<S> {
        FailAfter {
            inner,
            remaining: n,
            done: 0,
        }
    }

    /// Operations that went through.
    pub fn done(&self) -> usize {
        self.done
    }

    /// The wrapped storage, as the failures left it.
    pub fn into_inner(self) -> S {
        self.inner
    }

    fn step(&mut self) -> io::Result<&mut S> {
        if self.remaining == 0 {
            return Err(io::Error::other(format!(
                "injected failure after {} operations",
                self.done
            )));
        }
        self.remaining -= 1;
        self.done += 1;
        Ok(&mut self.inner)
    }
}

impl<S: Storage> Storage for FailAfter<S> {
    fn create(&mut self, path: &Path) -> io::Result<()> {
        self.step()?.create(path)
    }
    fn write(&mut self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        self.step()?.write(path, bytes)
    }
    fn sync_file(&mut self, path: &Path) -> io::Result<()> {
        self.step()?.sync_file(path)
    }
    fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()> {
        self.step()?.rename(from, to)
    }
    fn sync_dir(&mut self, dir: &Path) -> io::Result<()> {
        self.step()?.sync_dir(dir)
    }
    fn list(&mut self, dir: &Path) -> io::Result<Vec<String>> {
        self.step()?.list(dir)
    }
    fn read(&mut self, path: &Path) -> io::Result<Vec<u8>> {
        self.step()?.read(path)
    }
    fn remove(&mut self, path: &Path) -> io::Result<()> {
        self.step()?.remove(path)
    }
}
