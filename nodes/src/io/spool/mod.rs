//! A durable spool for sinks that leave the gateway: records are written to
//! disk first, and a publisher sends them from there, moving a read cursor
//! as the far side acknowledges.
//!
//! - [`segment`]: the file format, an entry per record with its length and
//!   CRC-32, in segments named after their first index.
//! - [`cursor`]: the acknowledged position, replaced by write, fsync,
//!   rename; segments are removed only after it.
//! - [`writer`]: the appending end, on the sink's worker thread (no fsync,
//!   no waiting on the reader).
//! - [`reader`]: the sending end, on the publisher's thread: reads, fsyncs,
//!   stores the cursor, removes what was delivered.
//! - [`disk`]: the cursor's file operations behind a trait, for crash tests.
//!
//! Opening ([`open`]) repairs what a crash can leave: a newest segment cut
//! short is truncated to its last good entry (counted in
//! [`Counters::torn_bytes`]); a segment whose creation was cut short
//! (shorter than its header) is removed; a damaged segment (bad header,
//! or a bad entry followed by good ones) is renamed `*.seg.corrupt`,
//! counted in [`Counters::corrupt_segments`], and skipped, never retried;
//! a damaged cursor is renamed `cursor.corrupt` and delivery starts again
//! from the oldest segment (the far side drops what it already has by its
//! idempotency key). Nothing found on disk stops the spool from opening:
//! only an error of the file system itself (permissions, a full disk) does.
//!
//! The spool holds at most [`SpoolConfig::max_bytes`]. When an entry would
//! take it past that, [`Overflow::DropOldest`] gives up the oldest whole
//! segment not yet delivered (its entries never sent are counted in
//! [`Counters::dropped_oldest`]), and [`Overflow::DropNewest`] refuses the
//! entry (counted in [`Counters::dropped_newest`]).

pub mod cursor;
pub mod disk;
pub mod reader;
pub mod segment;
pub mod writer;

pub use reader::{Chunk, SpoolReader};
pub use segment::{Entry, SpoolIndex};
pub use writer::SpoolWriter;

use disk::{Disk, FsDisk};
use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use tandem_core::ChannelId;

/// What to give up when the spool is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overflow {
    /// The oldest undelivered segment: keep the newest data.
    DropOldest,
    /// The entry being appended: keep the oldest data.
    DropNewest,
}

impl Overflow {
    /// Names as written in graph files.
    pub const NAMES: &'static [&'static str] = &["drop_oldest", "drop_newest"];

    /// Parses a name of [`Overflow::NAMES`].
    pub fn parse(name: &str) -> Option<Overflow> {
        match name {
            "drop_oldest" => Some(Overflow::DropOldest),
            "drop_newest" => Some(Overflow::DropNewest),
            _ => None,
        }
    }
}

/// Sizes and policy of a spool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpoolConfig {
    /// Most bytes the spool's segments hold together.
    pub max_bytes: u64,
    /// A segment is ended once it holds this many bytes.
    pub segment_bytes: u64,
    /// What to give up at `max_bytes`.
    pub overflow: Overflow,
}

impl SpoolConfig {
    /// A spool of at most `max_bytes`, in segments of an eighth of that
    /// (between 64 KiB and 16 MiB), so that dropping the oldest segment
    /// gives up a small part of it.
    pub fn new(max_bytes: u64, overflow: Overflow) -> SpoolConfig {
        SpoolConfig {
            max_bytes,
            segment_bytes: (max_bytes / 8).clamp(64 * 1024, 16 * 1024 * 1024),
            overflow,
        }
    }
}

/// Counts kept by a spool and its publisher, readable from any thread.
#[derive(Debug, Default)]
pub struct Counters {
    /// Entries appended.
    pub appended: AtomicU64,
    /// Entries refused at the size cap ([`Overflow::DropNewest`]), or
    /// because a commit failed (a full disk) and 64 KiB were already
    /// waiting for the next one (see [`writer`]).
    pub dropped_newest: AtomicU64,
    /// Entries given up at the size cap before they were ever sent
    /// ([`Overflow::DropOldest`]).
    pub dropped_oldest: AtomicU64,
    /// Segments found damaged and set aside.
    pub corrupt_segments: AtomicU64,
    /// Entries skipped because their segment was damaged.
    pub lost_damaged: AtomicU64,
    /// Bytes cut from the end of a segment a crash left torn.
    pub torn_bytes: AtomicU64,
    /// Entries read again after they had been sent once: after a lost
    /// connection, or after a restart (as far as the stored cursor knows).
    pub resent: AtomicU64,
}

/// State shared by a spool's writer and reader.
#[derive(Debug, Default)]
pub struct Shared {
    /// Entries below this index are in files the reader can read.
    written: AtomicU64,
    /// The reader is to skip entries below this index (overflow).
    drop_below: AtomicU64,
    /// The reader removed every segment wholly below this index.
    removed_below: AtomicU64,
    /// First index of the segment the writer appends to.
    current: AtomicU64,
    /// The reader asks the writer to end its segment (it is damaged).
    rotate: AtomicBool,
    /// Entries below this index were delivered (the reader's cursor).
    acked: AtomicU64,
    /// Counts.
    pub counters: Counters,
}

impl Shared {
    /// Entries appended and neither delivered nor given up: what a
    /// reconnection has to send. Read from any thread.
    pub fn backlog(&self) -> u64 {
        let written = self.written.load(Ordering::Relaxed);
        let gone = self
            .acked
            .load(Ordering::Relaxed)
            .max(self.drop_below.load(Ordering::Relaxed));
        written.saturating_sub(gone)
    }
}

/// Why a spool could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct SpoolError {
    /// The file or directory at fault.
    pub path: String,
    /// What failed.
    #[source]
    pub source: io::Error,
}

fn at(path: &Path) -> impl Fn(io::Error) -> SpoolError + '_ {
    move |source| SpoolError {
        path: path.display().to_string(),
        source,
    }
}

/// An open spool: its two ends and what they share.
#[derive(Debug)]
pub struct Spool {
    /// The appending end.
    pub writer: SpoolWriter,
    /// The sending end.
    pub reader: SpoolReader,
    /// Counts and positions.
    pub shared: Arc<Shared>,
}

/// Opens (or creates) the spool in `dir` for records of `inputs` (channel
/// ids and names), repairing what a crash left (see the [module](self)).
pub fn open(
    dir: &Path,
    inputs: &[(ChannelId, String)],
    config: SpoolConfig,
) -> Result<Spool, SpoolError> {
    std::fs::create_dir_all(dir).map_err(at(dir))?;
    let mut disk = FsDisk;
    let shared = Arc::new(Shared::default());
    let _ = disk.remove(&dir.join(cursor::TMP_NAME));
    let stored = match cursor::load(&mut disk, dir).map_err(at(dir))? {
        Ok(c) => c,
        Err(why) => {
            let path = dir.join(cursor::FILE_NAME);
            tracing::info!(
                "spool {}: {} {why}; set aside as cursor.corrupt, delivery starts again from the oldest segment",
                dir.display(),
                path.display()
            );
            disk.rename(&path, &dir.join("cursor.corrupt"))
                .map_err(at(&path))?;
            None
        }
    };
    let mut firsts: Vec<SpoolIndex> = disk
        .list(dir)
        .map_err(at(dir))?
        .iter()
        .filter_map(|n| segment::parse_name(n))
        .collect();
    firsts.sort_unstable();

    // Sizes of the segments kept, and the index after the last entry.
    let mut existing: Vec<(SpoolIndex, u64)> = Vec::with_capacity(firsts.len());
    let mut next = stored.map_or(SpoolIndex(0), |c| c.sent.max(c.acked));
    for (i, &first) in firsts.iter().enumerate() {
        let path = dir.join(segment::file_name(first));
        let len = std::fs::metadata(&path).map_err(at(&path))?.len();
        let newest = i + 1 == firsts.len();
        if !newest {
            // Older segments are checked as they are read.
            existing.push((first, len));
            next = next.max(first);
            continue;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(at(&path))?;
        match segment::scan(&mut file, len) {
            Ok(scan) if scan.header.first == first => {
                if scan.torn > 0 {
                    file.set_len(scan.good_len).map_err(at(&path))?;
                    file.sync_all().map_err(at(&path))?;
                    shared
                        .counters
                        .torn_bytes
                        .fetch_add(scan.torn, std::sync::atomic::Ordering::Relaxed);
                }
                if scan.entries == 0 {
                    disk.remove(&path).map_err(at(&path))?;
                } else {
                    existing.push((first, scan.good_len));
                }
                next = next.max(first.plus(scan.entries));
            }
            Err(segment::ScanError::ShortHeader) => {
                disk.remove(&path).map_err(at(&path))?;
                next = next.max(first);
            }
            Ok(_) | Err(segment::ScanError::Corrupt(_)) => {
                // Set aside now; the indices it may have held are not reused.
                let aside = dir.join(format!("{}.corrupt", segment::file_name(first)));
                disk.rename(&path, &aside).map_err(at(&path))?;
                tracing::warn!(
                    "spool {}: segment {} is damaged; set aside as {}",
                    dir.display(),
                    path.display(),
                    aside.display()
                );
                shared
                    .counters
                    .corrupt_segments
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                next = next.max(first.plus(len / segment::ENTRY_LEN as u64 + 1));
            }
        }
    }
    let segments: Vec<SpoolIndex> = existing.iter().map(|&(f, _)| f).collect();
    let oldest = segments.first().copied().unwrap_or(next);
    let stored = match stored {
        // A cursor below the oldest segment: what it pointed at is gone.
        Some(c) => cursor::Cursor {
            acked: c.acked.clamp(oldest, next),
            sent: c.sent.clamp(oldest, next),
        },
        None => cursor::Cursor {
            acked: oldest,
            sent: oldest,
        },
    };
    shared
        .written
        .store(next.0, std::sync::atomic::Ordering::Relaxed);
    shared
        .removed_below
        .store(oldest.0, std::sync::atomic::Ordering::Relaxed);
    let (to_sync, from_writer) = crossbeam_channel::unbounded::<(SpoolIndex, File)>();
    let writer = SpoolWriter::start(
        dir,
        shared.clone(),
        config,
        next,
        &existing,
        inputs,
        to_sync,
    )
    .map_err(at(dir))?;
    let mut all = segments;
    all.push(next);
    let reader = SpoolReader::start(dir, shared.clone(), all, stored, from_writer);
    Ok(Spool {
        writer,
        reader,
        shared,
    })
}

#[cfg(test)]
mod tests;
