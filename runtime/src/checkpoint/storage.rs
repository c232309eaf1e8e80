//! The file operations a checkpoint store needs, behind a trait so that tests
//! can fail them one by one ([`super::sim::FailAfter`]) or replay what a crash
//! leaves on disk ([`super::sim::SimDisk`]).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

/// The file operations of a [`super::CheckpointStore`], each one step that can fail.
pub trait Storage {
    /// Creates an empty file at `path`, replacing any file there.
    fn create(&mut self, path: &Path) -> io::Result<()>;
    /// Appends `bytes` to the file at `path`.
    fn write(&mut self, path: &Path, bytes: &[u8]) -> io::Result<()>;
    /// Makes the file's contents durable (fsync).
    fn sync_file(&mut self, path: &Path) -> io::Result<()>;
    /// Renames `from` to `to` atomically, replacing `to` if it exists.
    fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()>;
    /// Makes the directory's entries (creations, renames, removals) durable.
    fn sync_dir(&mut self, dir: &Path) -> io::Result<()>;
    /// The names of the files in `dir`, in no particular order.
    fn list(&mut self, dir: &Path) -> io::Result<Vec<String>>;
    /// The whole contents of the file at `path`.
    fn read(&mut self, path: &Path) -> io::Result<Vec<u8>>;
    /// Removes the file at `path`.
    fn remove(&mut self, path: &Path) -> io::Result<()>;
}

/// [`Storage`] on the real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct FsStorage;

impl Storage for FsStorage {
    fn create(&mut self, path: &Path) -> io::Result<()> {
        crate::private::file_options()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map(drop)
    }

    fn write(&mut self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        OpenOptions::new().append(true).open(path)?.write_all(bytes)
    }

    fn sync_file(&mut self, path: &Path) -> io::Result<()> {
        OpenOptions::new().write(true).open(path)?.sync_all()
    }

    fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn sync_dir(&mut self, dir: &Path) -> io::Result<()> {
        sync_dir(dir)
    }

    fn list(&mut self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                if let Some(name) = entry.file_name().to_str() {
                    names.push(name.to_owned());
                }
            }
        }
        Ok(names)
    }

    fn read(&mut self, path: &Path) -> io::Result<Vec<u8>> {
        fs::read(path)
    }

    fn remove(&mut self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Directories cannot be opened for fsync on this platform; renames there are
/// made durable by the file system itself or not at all.
#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}
