//! Origin sequence numbers that stay unique across crashes.
//!
//! A checkpoint says where vertex state stands, but not how far numbering
//! went after it: a run that crashed may have emitted records numbered past
//! its newest checkpoint. A consumer that drops duplicates by (channel, seq)
//! would drop new data if the next run numbered from the checkpoint again.
//! So the state directory keeps a **high-water mark**, the file `numbering`:
//! "origin sequence numbers up to N may have been used".
//!
//! The ingress reserves numbers ahead in blocks ([`BLOCK`]): before it stamps
//! any number above the mark, it writes a mark a block further on (temp
//! file, fsync, rename, fsync of the directory) and waits for it. That is
//! one durable write per half block of input, never one per batch. On start,
//! numbering resumes above the larger of the newest checkpoint and the mark
//! ([`Reservation::open`]), so after a crash numbers jump by up to a block
//! and are never used twice.
//!
//! A mark that does not verify (cut short, damaged, or written by a newer
//! tandem) is **refused**: the run does not start, and the message names the
//! file. There is no safe number to fall back on (the checkpoint is what
//! reused numbers before), and a mark is replaced by rename, so a crash
//! leaves the old mark or the new one, never a torn one: damage means the
//! disk lost data, and a person should decide. Deleting the file starts the
//! run anyway, numbering after the newest checkpoint as tandem did before.
//! A missing mark (a new state directory, or one an older tandem wrote) is
//! not an error.
//!
//! File layout, little-endian, [`LEN`] bytes:
//!
//! | offset | bytes | field |
//! |---|---|---|
//! | 0 | 4 | magic `TDSQ` |
//! | 4 | 2 | format version (1) |
//! | 6 | 2 | reserved, zero |
//! | 8 | 8 | the mark: numbers up to it may have been used ([`Seq`]) |
//! | 16 | 4 | CRC-32 (IEEE) of the 16 bytes before it |

use super::storage::{FsStorage, Storage};
use super::StoreError;
use std::io;
use std::path::{Path, PathBuf};
use tandem_core::Seq;
use thiserror::Error;

/// The mark's file name in the state directory.
pub const FILE_NAME: &str = "numbering";
/// The first four bytes of a mark file.
pub const MAGIC: [u8; 4] = *b"TDSQ";
/// The format version this build writes and reads.
pub const FORMAT_VERSION: u16 = 1;
/// Bytes in a mark file.
pub const LEN: usize = 20;
/// Numbers reserved by one write: at a million records a second, a write
/// every eight seconds or so; a restart after a crash skips fewer than this.
pub const BLOCK: u64 = 1 << 24;

/// The highest mark ever written: [`Seq::END`] is not a number.
const MAX_MARK: Seq = Seq(u64::MAX - 1);

/// Why bytes are not a mark this build can use. Messages follow the file's
/// name: "/var/lib/tandem/numbering is truncated: 7 bytes, a mark has 20".
#[derive(Debug, Error, PartialEq, Eq)]
pub enum MarkError {
    /// Not [`LEN`] bytes long.
    #[error(
        "is {got} bytes long, but a numbering mark has {LEN}: it was cut short or overwritten"
    )]
    Length {
        /// Bytes present.
        got: usize,
    },
    /// Does not start with [`MAGIC`].
    #[error("is not a tandem numbering mark (it does not start with `TDSQ`)")]
    BadMagic,
    /// Written in a format this build does not read.
    #[error("has numbering format {found}, but this tandem reads format {FORMAT_VERSION}: a newer tandem wrote it")]
    UnsupportedFormat {
        /// The version in the file.
        found: u16,
    },
    /// The CRC does not match: some bytes were damaged.
    #[error("fails its checksum (stored {stored:#010x}, computed {computed:#010x}): the file is corrupt")]
    Checksum {
        /// CRC in the file.
        stored: u32,
        /// CRC of the bytes read.
        computed: u32,
    },
    /// The mark leaves no number to stamp: nothing tandem wrote says that.
    #[error("says numbers up to {mark} were used, which leaves none to stamp: it was not written by tandem")]
    Exhausted {
        /// The mark in the file.
        mark: u64,
    },
}

/// The bytes of a mark file saying numbers up to `mark` may have been used.
pub fn encode(mark: Seq) -> [u8; LEN] {
    let mut out = [0u8; LEN];
    out[..4].copy_from_slice(&MAGIC);
    out[4..6].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    out[8..16].copy_from_slice(&mark.0.to_le_bytes());
    let crc = crc32fast::hash(&out[..16]);
    out[16..].copy_from_slice(&crc.to_le_bytes());
    out
}

/// The mark in the bytes of a mark file.
pub fn decode(bytes: &[u8]) -> Result<Seq, MarkError> {
    let bytes: &[u8; LEN] = bytes
        .try_into()
        .map_err(|_| MarkError::Length { got: bytes.len() })?;
    let [m0, m1, m2, m3, v0, v1, _, _, s0, s1, s2, s3, s4, s5, s6, s7, c0, c1, c2, c3] = *bytes;
    if [m0, m1, m2, m3] != MAGIC {
        return Err(MarkError::BadMagic);
    }
    let found = u16::from_le_bytes([v0, v1]);
    if found != FORMAT_VERSION {
        return Err(MarkError::UnsupportedFormat { found });
    }
    let stored = u32::from_le_bytes([c0, c1, c2, c3]);
    let computed = crc32fast::hash(&bytes[..16]);
    if stored != computed {
        return Err(MarkError::Checksum { stored, computed });
    }
    let mark = u64::from_le_bytes([s0, s1, s2, s3, s4, s5, s6, s7]);
    if mark >= MAX_MARK.0 {
        return Err(MarkError::Exhausted { mark });
    }
    Ok(Seq(mark))
}

/// Which numbers may be stamped without writing a new mark first. Pure:
/// it says what to write; [`Reservation`] writes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ahead {
    reserved: Seq,
    block: u64,
}

impl Ahead {
    /// Numbers up to `reserved` are durably reserved; each new mark reaches
    /// `block` (at least 2) past the number about to be stamped.
    pub fn new(reserved: Seq, block: u64) -> Ahead {
        Ahead {
            reserved,
            block: block.max(2),
        }
    }

    /// Every number at or below this may be stamped.
    pub fn reserved(&self) -> Seq {
        self.reserved
    }

    /// True when numbers up to `last` may be stamped.
    pub fn covers(&self, last: Seq) -> bool {
        last <= self.reserved
    }

    /// The mark to write before stamping numbers up to `last`, once fewer
    /// than half a block lie ahead of it; `None` while more do.
    pub fn wanted(&self, last: Seq) -> Option<Seq> {
        let ahead = self.reserved.0.saturating_sub(last.0);
        (ahead < self.block / 2 && self.reserved < MAX_MARK)
            .then(|| Seq(last.0.saturating_add(self.block)).min(MAX_MARK))
    }

    /// `mark` is durable.
    pub fn saved(&mut self, mark: Seq) {
        self.reserved = self.reserved.max(mark);
    }
}

/// The mark could not be read, or refuses to be used.
#[derive(Debug, Error)]
pub enum OpenError {
    /// The file is there but does not verify.
    #[error(
        "{path} {reason}; tandem cannot tell which origin sequence numbers the last run used, \
         so it does not start. Delete the file to start anyway: numbers after the newest \
         checkpoint may then be used again for other records"
    )]
    Damaged {
        /// The mark file.
        path: PathBuf,
        /// What is wrong with it.
        reason: MarkError,
    },
    /// A file operation failed (reading the mark, or writing the first reservation).
    #[error(transparent)]
    Io(#[from] StoreError),
}

fn io_err<'p>(op: &'static str, path: &'p Path) -> impl FnOnce(io::Error) -> StoreError + 'p {
    move |source| StoreError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// The mark file in one directory.
#[derive(Debug)]
pub struct MarkFile<S = FsStorage> {
    dir: PathBuf,
    storage: S,
}

impl<S: Storage> MarkFile<S> {
    /// The mark file in `dir` on `storage`.
    pub fn with_storage(dir: impl Into<PathBuf>, storage: S) -> MarkFile<S> {
        MarkFile {
            dir: dir.into(),
            storage,
        }
    }

    /// The file's path.
    pub fn path(&self) -> PathBuf {
        self.dir.join(FILE_NAME)
    }

    /// The storage, for tests that damage or inspect it.
    pub fn storage_mut(&mut self) -> &mut S {
        &mut self.storage
    }

    /// The storage, giving up the file.
    pub fn into_storage(self) -> S {
        self.storage
    }

    /// The mark, or `None` when there is no file.
    pub fn load(&mut self) -> Result<Option<Seq>, OpenError> {
        let path = self.path();
        match self.storage.read(&path) {
            Ok(bytes) => decode(&bytes)
                .map(Some)
                .map_err(|reason| OpenError::Damaged { path, reason }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("read", &path)(e).into()),
        }
    }

    /// Writes `mark` durably: when this returns `Ok`, a crash leaves it (or a
    /// later one); when it fails, the mark before is untouched.
    pub fn save(&mut self, mark: Seq) -> Result<(), StoreError> {
        let path = self.path();
        let temp = self.dir.join(format!("{FILE_NAME}.tmp"));
        let result = self.write_durably(&temp, &path, &encode(mark));
        if result.is_err() {
            // Best effort: the next save replaces it anyway.
            let _ = self.storage.remove(&temp);
        }
        result
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
}

/// Any storage, boxed, so that the ingress holds one type whatever the test.
pub type AnyStorage = Box<dyn Storage + Send>;

impl Storage for AnyStorage {
    fn create(&mut self, path: &Path) -> io::Result<()> {
        (**self).create(path)
    }
    fn write(&mut self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        (**self).write(path, bytes)
    }
    fn sync_file(&mut self, path: &Path) -> io::Result<()> {
        (**self).sync_file(path)
    }
    fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()> {
        (**self).rename(from, to)
    }
    fn sync_dir(&mut self, dir: &Path) -> io::Result<()> {
        (**self).sync_dir(dir)
    }
    fn list(&mut self, dir: &Path) -> io::Result<Vec<String>> {
        (**self).list(dir)
    }
    fn read(&mut self, path: &Path) -> io::Result<Vec<u8>> {
        (**self).read(path)
    }
    fn remove(&mut self, path: &Path) -> io::Result<()> {
        (**self).remove(path)
    }
}

/// Origin sequence numbers reserved durably ahead of the ingress that
/// stamps them. Blocking: it writes on the thread that asks.
pub struct Reservation {
    ahead: Ahead,
    file: MarkFile<AnyStorage>,
    previous: Option<Seq>,
    after: Seq,
    /// The last write failed (and was reported).
    failing: bool,
    /// After a failed write, while numbers remain, the next try waits until
    /// then: a failing disk is not written again on every ingress step.
    retry_at: Option<std::time::Instant>,
}

/// How long a failed mark write waits before the next try, while numbers
/// remain reserved.
const RETRY_AHEAD: std::time::Duration = std::time::Duration::from_secs(1);

impl std::fmt::Debug for Reservation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reservation")
            .field("ahead", &self.ahead)
            .field("path", &self.file.path())
            .field("previous", &self.previous)
            .field("after", &self.after)
            .finish()
    }
}

impl Reservation {
    /// Reads the mark in `dir` (created, mode 0700, if missing), resumes
    /// numbering after the larger of it and `checkpoint` (the newest
    /// checkpoint's sequence number), and reserves the first block; says so
    /// when numbering jumps past the checkpoint. The file is mode 0600, as
    /// everything in the state directory.
    pub fn open(dir: &Path, checkpoint: Seq) -> Result<Reservation, OpenError> {
        crate::private::create_dir(dir).map_err(io_err("create directory", dir))?;
        Reservation::with_storage(dir, Box::new(FsStorage), checkpoint, BLOCK)
    }

    /// [`Reservation::open`] on `storage`, reserving `block` numbers at a time.
    pub fn with_storage(
        dir: &Path,
        storage: AnyStorage,
        checkpoint: Seq,
        block: u64,
    ) -> Result<Reservation, OpenError> {
        let mut file = MarkFile::with_storage(dir, storage);
        let previous = file.load()?;
        let after = previous.map_or(checkpoint, |mark| mark.max(checkpoint));
        let mut ahead = Ahead::new(after, block);
        // Reserve now, so that a state directory that cannot be written
        // stops the start, not the input later.
        let first = Seq(after.0.saturating_add(ahead.block)).min(MAX_MARK);
        file.save(first)?;
        ahead.saved(first);
        if after > checkpoint {
            tracing::info!(
                "new input is numbered after origin sequence {after}, above every number the \
                 last run may have used"
            );
        }
        Ok(Reservation {
            ahead,
            file,
            previous,
            after,
            failing: false,
            retry_at: None,
        })
    }

    /// The mark the last run left, if there was one.
    pub fn previous(&self) -> Option<Seq> {
        self.previous
    }

    /// New input is numbered after this: above the newest checkpoint and
    /// every number the last run may have used.
    pub fn after(&self) -> Seq {
        self.after
    }

    /// Every number at or below this may be stamped.
    pub fn reserved(&self) -> Seq {
        self.ahead.reserved()
    }

    /// Makes sure numbers up to `last` may be stamped, writing a new mark
    /// (and waiting for it) once fewer than half a block lie ahead; after a
    /// failed write, while `last` is still covered, it tries again only
    /// after `RETRY_AHEAD`. Fails
    /// only when `last` is not covered; a failure and the recovery after it
    /// are reported once each on stderr.
    pub fn cover(&mut self, last: Seq) -> Result<(), StoreError> {
        let Some(mark) = self.ahead.wanted(last) else {
            return Ok(());
        };
        let waiting = self
            .retry_at
            .is_some_and(|at| std::time::Instant::now() < at);
        if waiting && self.ahead.covers(last) {
            return Ok(());
        }
        match self.file.save(mark) {
            Ok(()) => {
                self.ahead.saved(mark);
                self.retry_at = None;
                if std::mem::take(&mut self.failing) {
                    tracing::info!("origin sequence numbers are reserved again; input goes on");
                }
                Ok(())
            }
            Err(e) if self.ahead.covers(last) => {
                self.retry_at = Some(std::time::Instant::now() + RETRY_AHEAD);
                if !std::mem::replace(&mut self.failing, true) {
                    tracing::warn!("cannot reserve origin sequence numbers ahead: {e}");
                }
                Ok(())
            }
            Err(e) => {
                if !std::mem::replace(&mut self.failing, true) {
                    tracing::warn!(
                        "cannot reserve origin sequence numbers: {e}; input waits until \
                         the state directory can be written"
                    );
                }
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::checkpoint::sim::{Damage, FailAfter, SimDisk};
    use std::sync::{Arc, Mutex};

    /// A [`SimDisk`] the test keeps a handle on while a reservation owns it.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<SimDisk>>);

    impl Shared {
        fn disk(&self) -> SimDisk {
            self.0.lock().unwrap().clone()
        }
        fn mark(&self) -> Option<Seq> {
            MarkFile::with_storage("state", self.disk()).load().unwrap()
        }
    }

    impl Storage for Shared {
        fn create(&mut self, path: &Path) -> io::Result<()> {
            self.0.lock().unwrap().create(path)
        }
        fn write(&mut self, path: &Path, bytes: &[u8]) -> io::Result<()> {
            self.0.lock().unwrap().write(path, bytes)
        }
        fn sync_file(&mut self, path: &Path) -> io::Result<()> {
            self.0.lock().unwrap().sync_file(path)
        }
        fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()> {
            self.0.lock().unwrap().rename(from, to)
        }
        fn sync_dir(&mut self, dir: &Path) -> io::Result<()> {
            self.0.lock().unwrap().sync_dir(dir)
        }
        fn list(&mut self, dir: &Path) -> io::Result<Vec<String>> {
            self.0.lock().unwrap().list(dir)
        }
        fn read(&mut self, path: &Path) -> io::Result<Vec<u8>> {
            self.0.lock().unwrap().read(path)
        }
        fn remove(&mut self, path: &Path) -> io::Result<()> {
            self.0.lock().unwrap().remove(path)
        }
    }

    fn open(disk: &Shared, checkpoint: u64, block: u64) -> Result<Reservation, OpenError> {
        Reservation::with_storage(
            Path::new("state"),
            Box::new(disk.clone()),
            Seq(checkpoint),
            block,
        )
    }

    #[test]
    fn format_1_is_byte_exact() {
        // Format 1 as this build writes it; a later build must still read it.
        let bytes = [
            b'T', b'D', b'S', b'Q', 1, 0, 0, 0, // magic, version, reserved
            0x2a, 0x01, 0, 0, 0, 0, 0, 0, // mark 298
            0x5f, 0xe8, 0x46, 0x6a, // CRC-32 (IEEE) of the above
        ];
        assert_eq!(
            crc32fast::hash(&bytes[..16]).to_le_bytes(),
            bytes[16..],
            "the vector's own checksum"
        );
        assert_eq!(encode(Seq(298)), bytes);
        assert_eq!(decode(&bytes), Ok(Seq(298)));
    }

    #[test]
    fn a_torn_or_damaged_mark_never_reads_as_another_number() {
        let good = encode(Seq(1 << 40));
        for len in 0..LEN {
            assert_eq!(decode(&good[..len]), Err(MarkError::Length { got: len }));
        }
        let mut longer = good.to_vec();
        longer.push(0);
        assert_eq!(decode(&longer), Err(MarkError::Length { got: LEN + 1 }));
        for bit in 0..LEN * 8 {
            let mut bad = good;
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(decode(&bad).is_err(), "bit {bit} flipped went unnoticed");
        }
        let mut newer = good;
        newer[4] = 2;
        assert_eq!(
            decode(&newer),
            Err(MarkError::UnsupportedFormat { found: 2 })
        );
        assert_eq!(decode(&[0u8; LEN]), Err(MarkError::BadMagic));
        // Well-formed, but past any number tandem stamps: refused, not used.
        assert_eq!(
            decode(&encode(Seq(u64::MAX))),
            Err(MarkError::Exhausted { mark: u64::MAX })
        );
    }

    #[test]
    fn a_new_mark_is_wanted_once_less_than_half_a_block_is_left() {
        let mut ahead = Ahead::new(Seq(100), 100);
        assert_eq!(ahead.wanted(Seq(50)), None);
        assert_eq!(ahead.wanted(Seq(51)), Some(Seq(151)));
        assert!(ahead.covers(Seq(100)) && !ahead.covers(Seq(101)));
        // A pass larger than what is left: the mark reaches past it.
        assert_eq!(ahead.wanted(Seq(130)), Some(Seq(230)));
        ahead.saved(Seq(230));
        assert_eq!(ahead.reserved(), Seq(230));
        ahead.saved(Seq(200));
        assert_eq!(ahead.reserved(), Seq(230), "a mark never goes back");
        // Near the end of the number space the mark stops below END.
        let top = Ahead::new(Seq(u64::MAX - 10), 100);
        assert_eq!(top.wanted(Seq(u64::MAX - 20)), Some(MAX_MARK));
        assert_eq!(Ahead::new(MAX_MARK, 100).wanted(MAX_MARK), None);
    }

    #[test]
    fn numbering_resumes_above_both_the_checkpoint_and_the_mark() {
        let disk = Shared::default();
        // A new directory: after the checkpoint, and the first block reserved.
        let first = open(&disk, 0, 1000).unwrap();
        assert_eq!((first.previous(), first.after()), (None, Seq(0)));
        assert_eq!(disk.mark(), Some(Seq(1000)));
        drop(first);
        // A crash: the mark is past the newest checkpoint.
        let second = open(&disk, 700, 1000).unwrap();
        assert_eq!(second.previous(), Some(Seq(1000)));
        assert_eq!(second.after(), Seq(1000));
        assert_eq!(disk.mark(), Some(Seq(2000)));
        drop(second);
        // A checkpoint past the mark (a mark from an older state directory).
        let third = open(&disk, 5000, 1000).unwrap();
        assert_eq!(third.after(), Seq(5000));
        assert_eq!(disk.mark(), Some(Seq(6000)));
    }

    #[test]
    fn covering_writes_once_per_half_block_and_never_stamps_past_the_disk() {
        let disk = Shared::default();
        let mut r = open(&disk, 0, 1000).unwrap();
        let mut writes = 0;
        let mut last_mark = disk.mark();
        for last in 1..=10_000u64 {
            r.cover(Seq(last)).unwrap();
            // What a crash now leaves covers every number stamped so far.
            for image in disk.disk().crash_images() {
                let on_disk = MarkFile::with_storage("state", image).load().unwrap();
                assert!(
                    on_disk.is_some_and(|m| m >= Seq(last)),
                    "{last}: {on_disk:?}"
                );
            }
            if disk.mark() != last_mark {
                writes += 1;
                last_mark = disk.mark();
            }
        }
        assert_eq!(
            writes, 19,
            "one write per 500 numbers after the first block"
        );
    }

    #[test]
    fn a_crash_in_the_middle_of_a_save_leaves_the_old_mark_or_the_new_one() {
        for n in 0..6 {
            let mut before = MarkFile::with_storage("state", SimDisk::new());
            before.save(Seq(10)).unwrap();
            let mut file =
                MarkFile::with_storage("state", FailAfter::new(before.into_storage(), n));
            let saved = file.save(Seq(20)).is_ok();
            let disk = file.into_storage().into_inner();
            for image in disk.crash_images() {
                let mark = MarkFile::with_storage("state", image).load().unwrap();
                assert!(
                    mark == Some(Seq(10)) && !saved || mark == Some(Seq(20)),
                    "after {n} operations: {mark:?}"
                );
            }
        }
    }

    #[test]
    fn a_damaged_mark_is_refused_by_name_and_deleting_it_starts_after_the_checkpoint() {
        for damage in [
            Damage::Truncate(7),
            Damage::FlipBit(70),
            Damage::ZeroFrom(0),
        ] {
            let disk = Shared::default();
            drop(open(&disk, 0, 1000).unwrap());
            disk.0
                .lock()
                .unwrap()
                .damage(Path::new("state/numbering"), damage)
                .unwrap();
            let e = open(&disk, 300, 1000).unwrap_err().to_string();
            assert!(e.starts_with("state/numbering "), "{damage:?}: {e}");
            assert!(e.contains("Delete the file to start anyway"), "{e}");
            assert_eq!(disk.disk().names_in(Path::new("state")), ["numbering"]);
            disk.0
                .lock()
                .unwrap()
                .remove(Path::new("state/numbering"))
                .unwrap();
            assert_eq!(open(&disk, 300, 1000).unwrap().after(), Seq(300));
        }
    }

    #[test]
    fn a_failing_disk_stops_stamping_at_the_reservation_and_recovers() {
        let disk = Shared::default();
        let mut r = open(&disk, 0, 100).unwrap();
        assert_eq!(r.reserved(), Seq(100));
        // The disk fails from now on: what is reserved may still be stamped.
        r.file = MarkFile::with_storage("state", Box::new(FailAfter::new(disk.clone(), 0)));
        assert!(r.cover(Seq(60)).is_ok());
        assert!(r.cover(Seq(100)).is_ok());
        assert!(r.cover(Seq(101)).is_err());
        assert_eq!(disk.mark(), Some(Seq(100)));
        // It works again.
        r.file = MarkFile::with_storage("state", Box::new(disk.clone()));
        r.cover(Seq(101)).unwrap();
        assert_eq!(disk.mark(), Some(Seq(201)));
    }

    #[test]
    fn the_file_is_private() {
        let dir = std::env::temp_dir().join(format!("tandem-numbering-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let state = dir.join("state");
        let r = Reservation::open(&state, Seq(5)).unwrap();
        assert_eq!(r.after(), Seq(5));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&state), 0o700);
            assert_eq!(mode(&state.join(FILE_NAME)), 0o600);
        }
        drop(r);
        assert_eq!(
            Reservation::open(&state, Seq(5)).unwrap().after(),
            Seq(5 + BLOCK)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
