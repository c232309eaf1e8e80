//! The file operations by which the spool's reader moves its cursor and
//! removes what was delivered, behind a trait so that tests can fail them
//! one by one (`sim::FailAfter`) or look at what a crash would leave
//! (`sim::SimDisk`). Appending and reading entries use files directly.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

/// Steps of moving the cursor, each one that can fail.
pub trait Disk {
    /// Writes `bytes` as the whole new file `path` (created or truncated).
    fn write_file(&mut self, path: &Path, bytes: &[u8]) -> io::Result<()>;
    /// Makes the file's contents durable (fsync).
    fn sync_file(&mut self, path: &Path) -> io::Result<()>;
    /// Renames `from` to `to` atomically, replacing `to`.
    fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()>;
    /// Makes the directory's entries durable.
    fn sync_dir(&mut self, dir: &Path) -> io::Result<()>;
    /// Removes the file at `path`.
    fn remove(&mut self, path: &Path) -> io::Result<()>;
    /// The whole file, or `None` when there is none.
    fn read(&mut self, path: &Path) -> io::Result<Option<Vec<u8>>>;
    /// The names of the files in `dir`.
    fn list(&mut self, dir: &Path) -> io::Result<Vec<String>>;
}

/// [`Disk`] on the real file system.
#[derive(Clone, Copy, Debug, Default)]
pub struct FsDisk;

impl Disk for FsDisk {
    fn write_file(&mut self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        file.write_all(bytes)
    }

    fn sync_file(&mut self, path: &Path) -> io::Result<()> {
        OpenOptions::new().write(true).open(path)?.sync_all()
    }

    fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn sync_dir(&mut self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn remove(&mut self, path: &Path) -> io::Result<()> {
        match fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    fn read(&mut self, path: &Path) -> io::Result<Option<Vec<u8>>> {
        match fs::read(path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn list(&mut self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            if let Some(name) = entry.file_name().to_str() {
                names.push(name.to_owned());
            }
        }
        Ok(names)
    }
}

#[cfg(test)]
pub mod sim {
    //! A disk in memory that knows what is durable, and one that fails.

    use super::Disk;
    use std::collections::BTreeMap;
    use std::io;
    use std::path::{Path, PathBuf};

    #[derive(Clone, Debug, Default)]
    struct SimFile {
        data: Vec<u8>,
        synced: Vec<u8>,
    }

    /// Files in memory. Contents become durable with `sync_file`; names
    /// (creations, renames, removals) with `sync_dir`.
    #[derive(Clone, Debug, Default)]
    pub struct SimDisk {
        files: BTreeMap<u64, SimFile>,
        next: u64,
        names: BTreeMap<PathBuf, u64>,
        durable: BTreeMap<PathBuf, u64>,
    }

    impl SimDisk {
        /// Puts a durable file in place.
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

        /// Every disk a power cut now could leave: names as last synced or
        /// as they are, each file's unsynced bytes lost or kept.
        pub fn crash_images(&self) -> Vec<SimDisk> {
            let mut images = Vec::new();
            for names in [&self.durable, &self.names] {
                for keep_unsynced in [false, true] {
                    let files: BTreeMap<u64, SimFile> = self
                        .files
                        .iter()
                        .map(|(&id, f)| {
                            let data = if keep_unsynced {
                                f.data.clone()
                            } else {
                                f.synced.clone()
                            };
                            (
                                id,
                                SimFile {
                                    synced: data.clone(),
                                    data,
                                },
                            )
                        })
                        .collect();
                    images.push(SimDisk {
                        files,
                        next: self.next,
                        names: names.clone(),
                        durable: names.clone(),
                    });
                }
            }
            images
        }

        fn missing(path: &Path) -> io::Error {
            io::Error::new(io::ErrorKind::NotFound, format!("{}", path.display()))
        }
    }

    impl Disk for SimDisk {
        fn write_file(&mut self, path: &Path, bytes: &[u8]) -> io::Result<()> {
            let id = self.next;
            self.next += 1;
            self.files.insert(
                id,
                SimFile {
                    data: bytes.to_vec(),
                    synced: Vec::new(),
                },
            );
            self.names.insert(path.to_path_buf(), id);
            Ok(())
        }

        fn sync_file(&mut self, path: &Path) -> io::Result<()> {
            let id = *self.names.get(path).ok_or_else(|| Self::missing(path))?;
            if let Some(f) = self.files.get_mut(&id) {
                f.synced = f.data.clone();
            }
            Ok(())
        }

        fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()> {
            let id = self.names.remove(from).ok_or_else(|| Self::missing(from))?;
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

        fn remove(&mut self, path: &Path) -> io::Result<()> {
            self.names.remove(path);
            Ok(())
        }

        fn read(&mut self, path: &Path) -> io::Result<Option<Vec<u8>>> {
            Ok(self
                .names
                .get(path)
                .and_then(|id| self.files.get(id))
                .map(|f| f.data.clone()))
        }

        fn list(&mut self, dir: &Path) -> io::Result<Vec<String>> {
            Ok(self
                .names
                .keys()
                .filter(|p| p.parent() == Some(dir))
                .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
                .collect())
        }
    }

    /// A disk whose operations fail once `left` of them have run: the
    /// process "dies" at that point, and `disk` is what it left.
    #[derive(Debug)]
    pub struct FailAfter<D> {
        /// The disk underneath.
        pub disk: D,
        /// Operations that will still succeed.
        pub left: usize,
    }

    impl<D: Disk> FailAfter<D> {
        fn step(&mut self) -> io::Result<()> {
            if self.left == 0 {
                return Err(io::Error::other("injected failure"));
            }
            self.left -= 1;
            Ok(())
        }
    }

    impl<D: Disk> Disk for FailAfter<D> {
        fn write_file(&mut self, path: &Path, bytes: &[u8]) -> io::Result<()> {
            self.step()?;
            self.disk.write_file(path, bytes)
        }
        fn sync_file(&mut self, path: &Path) -> io::Result<()> {
            self.step()?;
            self.disk.sync_file(path)
        }
        fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()> {
            self.step()?;
            self.disk.rename(from, to)
        }
        fn sync_dir(&mut self, dir: &Path) -> io::Result<()> {
            self.step()?;
            self.disk.sync_dir(dir)
        }
        fn remove(&mut self, path: &Path) -> io::Result<()> {
            self.step()?;
            self.disk.remove(path)
        }
        fn read(&mut self, path: &Path) -> io::Result<Option<Vec<u8>>> {
            self.step()?;
            self.disk.read(path)
        }
        fn list(&mut self, dir: &Path) -> io::Result<Vec<String>> {
            self.step()?;
            self.disk.list(dir)
        }
    }
}
