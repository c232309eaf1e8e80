//! The reading end of a spool: it runs on the publisher's thread, reads
//! entries in order from the acknowledged cursor on, moves the cursor as
//! the far side acknowledges, and removes what was delivered.
//!
//! Entries are read in chunks that never cross a segment, so a chunk's
//! channel numbers refer to one header ([`SpoolReader::channels`]). A chunk
//! may also stand for entries that will never be sent (given up to the
//! overflow policy, or lost in a damaged segment): it has no entries, and
//! acknowledging it moves the cursor past them.

use super::cursor::{self, Cursor};
use super::disk::{Disk, FsDisk};
use super::segment::{self, decode_entry, Entry, Header, SpoolIndex, ENTRY_LEN};
use super::Shared;
use crossbeam_channel::Receiver;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// A run of spool indices handed out by [`SpoolReader::read`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chunk {
    /// The first index.
    pub start: SpoolIndex,
    /// One past the last index.
    pub end: SpoolIndex,
}

impl Chunk {
    /// Nothing was handed out.
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }
}

/// The segment being read.
#[derive(Debug)]
struct Open {
    first: SpoolIndex,
    file: File,
    header_len: u64,
    channels: Vec<String>,
}

/// Reads a spool. See the [module](self).
#[derive(Debug)]
pub struct SpoolReader {
    dir: PathBuf,
    shared: Arc<Shared>,
    disk: FsDisk,
    /// First indices of the segments known to exist, sorted.
    segments: Vec<SpoolIndex>,
    /// The next index to read.
    pos: SpoolIndex,
    /// Everything below was acknowledged.
    acked: SpoolIndex,
    /// Everything below was handed out at least once (in this run or, as
    /// far as the stored cursor knows, before).
    sent: SpoolIndex,
    /// The cursor as last stored.
    stored: Cursor,
    open: Option<Open>,
    /// A segment found damaged, waiting to be set aside.
    damaged: Option<SpoolIndex>,
    buf: Vec<u8>,
    from_writer: Receiver<(SpoolIndex, File)>,
    /// The newest segment, fsynced at every sync, and older ones that still
    /// need their last fsync.
    current: Option<File>,
    ended: Vec<File>,
    dir_dirty: bool,
}

impl SpoolReader {
    pub(super) fn start(
        dir: &Path,
        shared: Arc<Shared>,
        segments: Vec<SpoolIndex>,
        stored: Cursor,
        from_writer: Receiver<(SpoolIndex, File)>,
    ) -> SpoolReader {
        shared.acked.store(stored.acked.0, Ordering::Relaxed);
        SpoolReader {
            dir: dir.to_owned(),
            shared,
            disk: FsDisk,
            segments,
            pos: stored.acked,
            acked: stored.acked,
            sent: stored.sent,
            stored,
            open: None,
            damaged: None,
            buf: Vec::new(),
            from_writer,
            current: None,
            ended: Vec::new(),
            dir_dirty: true,
        }
    }

    /// Channel names of the chunk [`SpoolReader::read`] returned last.
    pub fn channels(&self) -> &[String] {
        self.open.as_ref().map_or(&[], |o| &o.channels)
    }

    /// Everything below this was acknowledged.
    pub fn acked(&self) -> SpoolIndex {
        self.acked
    }

    /// Entries appended and not yet acknowledged.
    pub fn backlog(&self) -> u64 {
        let written = self.shared.written.load(Ordering::Acquire);
        written.saturating_sub(self.acked.0)
    }

    /// Reads up to `max` entries into `out` (cleared first). Returns the
    /// indices they stand for: empty when there is nothing to read now.
    pub fn read(&mut self, max: usize, out: &mut Vec<Entry>) -> io::Result<Chunk> {
        out.clear();
        let start = self.pos;
        // Acquire: pairs with the writer's Release store of `drop_below`.
        let drop_below = SpoolIndex(self.shared.drop_below.load(Ordering::Acquire));
        if drop_below > self.pos {
            let never_sent = drop_below.0.saturating_sub(self.pos.max(self.sent).0);
            self.shared
                .counters
                .dropped_oldest
                .fetch_add(never_sent, Ordering::Relaxed);
            return Ok(self.skip_to(drop_below));
        }
        if let Some(first) = self.damaged {
            return self.set_aside(first);
        }
        // Acquire: pairs with the writer's Release store; entries below are in files.
        let written = SpoolIndex(self.shared.written.load(Ordering::Acquire));
        if self.pos >= written || max == 0 {
            return Ok(Chunk { start, end: start });
        }
        let open = match self.open.take() {
            Some(open) => open,
            None => match self.open_at(self.pos)? {
                Ok(open) => open,
                Err(chunk) => return Ok(chunk),
            },
        };
        let want = (written.0 - self.pos.0).min(max as u64) as usize;
        self.buf.resize(want * ENTRY_LEN, 0);
        let offset = open.header_len + (self.pos.0 - open.first.0) * ENTRY_LEN as u64;
        let got = read_at_most(&open.file, &mut self.buf, offset)?;
        let whole = got / ENTRY_LEN;
        if whole == 0 {
            // This segment ends here; the entry at `pos` starts the next one.
            let pos = self.pos;
            drop(open);
            return match self.open_at(pos)? {
                Ok(next) => {
                    self.open = Some(next);
                    self.read(max, out)
                }
                Err(chunk) => Ok(chunk),
            };
        }
        let first = open.first;
        self.open = Some(open);
        for bytes in self.buf[..whole * ENTRY_LEN].chunks_exact(ENTRY_LEN) {
            let Ok(bytes) = <&[u8; ENTRY_LEN]>::try_from(bytes) else {
                break;
            };
            match decode_entry(bytes) {
                Ok(entry) => out.push(entry),
                Err(_) => {
                    self.damaged = Some(first);
                    break;
                }
            }
        }
        if out.is_empty() {
            return self.read(max, out);
        }
        let end = self.pos.plus(out.len() as u64);
        self.handed_out(start, end);
        Ok(Chunk { start, end })
    }

    /// Counts entries handed out again, and moves the read position.
    fn handed_out(&mut self, start: SpoolIndex, end: SpoolIndex) {
        if start < self.sent {
            let again = end.min(self.sent).0 - start.0;
            self.shared
                .counters
                .resent
                .fetch_add(again, Ordering::Relaxed);
        }
        self.pos = end;
        self.sent = self.sent.max(end);
    }

    /// A chunk standing for the entries from the read position to `to`,
    /// which will not be sent.
    fn skip_to(&mut self, to: SpoolIndex) -> Chunk {
        let start = self.pos;
        if self.open.as_ref().is_some_and(|o| o.first < to) {
            self.open = None;
        }
        self.pos = to;
        self.sent = self.sent.max(to);
        Chunk { start, end: to }
    }

    /// Opens the segment holding `index`: the one named after it, or the
    /// newest one starting below it. `Err(chunk)` when the entries from
    /// `index` on are missing (a skip chunk) or there is nothing to open.
    fn open_at(&mut self, index: SpoolIndex) -> io::Result<Result<Open, Chunk>> {
        let exact = self.dir.join(segment::file_name(index));
        let first = if exact.exists() {
            index
        } else {
            self.refresh()?;
            let below = self.segments.iter().rev().find(|&&f| f <= index).copied();
            let holds = match below {
                Some(f) => self.open_holds(f, index)?,
                None => false,
            };
            match below {
                // A segment starting below `index` holds it unless `index`
                // is past its end, which means a gap.
                Some(f) if holds => f,
                _ => {
                    return Ok(Err(
                        match self.segments.iter().find(|&&f| f > index).copied() {
                            Some(next) => {
                                self.count_lost(index, next);
                                self.skip_to(next)
                            }
                            None => Chunk {
                                start: index,
                                end: index,
                            },
                        },
                    ));
                }
            }
        };
        if !self.segments.contains(&first) {
            let at = self.segments.partition_point(|&f| f < first);
            self.segments.insert(at, first);
        }
        let path = self.dir.join(segment::file_name(first));
        let mut file = File::open(&path)?;
        match Header::read(&mut file) {
            Ok((header, header_len)) if header.first == first => Ok(Ok(Open {
                first,
                file,
                header_len,
                channels: header.channels,
            })),
            _ => {
                self.damaged = Some(first);
                self.set_aside(first).map(Err)
            }
        }
    }

    /// True when the segment at `first` reaches as far as `index`.
    fn open_holds(&mut self, first: SpoolIndex, index: SpoolIndex) -> io::Result<bool> {
        let path = self.dir.join(segment::file_name(first));
        let Ok(mut file) = File::open(&path) else {
            return Ok(false);
        };
        let Ok((_, header_len)) = Header::read(&mut file) else {
            return Ok(true); // Damaged: opening it sets it aside.
        };
        let len = file.metadata()?.len();
        let entries = len.saturating_sub(header_len) / ENTRY_LEN as u64;
        Ok(first.0.saturating_add(entries) > index.0)
    }

    /// Sets a damaged segment aside (renamed `*.seg.corrupt`) once the
    /// writer no longer appends to it, and skips to the next one.
    fn set_aside(&mut self, first: SpoolIndex) -> io::Result<Chunk> {
        let start = self.pos;
        // Acquire: pairs with the writer's Release store of `current`.
        if self.shared.current.load(Ordering::Acquire) == first.0 {
            self.shared.rotate.store(true, Ordering::Release);
            return Ok(Chunk { start, end: start });
        }
        self.damaged = None;
        self.open = None;
        let name = segment::file_name(first);
        let mut aside = self.dir.join(format!("{name}.corrupt"));
        let mut n = 1;
        while aside.exists() {
            aside = self.dir.join(format!("{name}.corrupt.{n}"));
            n += 1;
        }
        self.disk.rename(&self.dir.join(&name), &aside)?;
        self.dir_dirty = true;
        self.segments.retain(|&f| f != first);
        self.shared
            .counters
            .corrupt_segments
            .fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            "spool {}: segment {name} is damaged; set aside as {} and skipped",
            self.dir.display(),
            aside.display()
        );
        self.refresh()?;
        match self.segments.iter().find(|&&f| f > first) {
            Some(&next) => {
                self.count_lost(self.pos, next);
                Ok(self.skip_to(next))
            }
            None => Ok(Chunk { start, end: start }),
        }
    }

    fn count_lost(&self, from: SpoolIndex, to: SpoolIndex) {
        self.shared
            .counters
            .lost_damaged
            .fetch_add(to.0.saturating_sub(from.0), Ordering::Relaxed);
    }

    /// Lists the segments in the directory.
    fn refresh(&mut self) -> io::Result<()> {
        let mut found: Vec<SpoolIndex> = self
            .disk
            .list(&self.dir)?
            .iter()
            .filter_map(|n| segment::parse_name(n))
            .collect();
        found.sort_unstable();
        self.segments = found;
        Ok(())
    }

    /// Everything below `upto` was acknowledged.
    pub fn ack(&mut self, upto: SpoolIndex) {
        self.acked = self.acked.max(upto);
        self.shared.acked.store(self.acked.0, Ordering::Relaxed);
        self.pos = self.pos.max(self.acked);
    }

    /// Reads again from the acknowledged cursor on: what was handed out
    /// after it and not acknowledged is read (and counted) again.
    pub fn rewind(&mut self) {
        if self.pos != self.acked {
            self.pos = self.acked;
            self.open = None;
        }
    }

    /// Fsyncs what the writer committed, stores the cursor if it moved,
    /// and removes the segments wholly acknowledged.
    pub fn sync(&mut self) -> io::Result<()> {
        while let Ok((_, file)) = self.from_writer.try_recv() {
            if let Some(previous) = self.current.replace(file) {
                self.ended.push(previous);
            }
            self.dir_dirty = true;
        }
        for file in self.ended.drain(..) {
            file.sync_data()?;
        }
        if let Some(file) = &self.current {
            file.sync_data()?;
        }
        if std::mem::take(&mut self.dir_dirty) {
            self.disk.sync_dir(&self.dir)?;
        }
        let now = Cursor {
            acked: self.acked,
            sent: self.sent,
        };
        if now != self.stored {
            cursor::store(&mut self.disk, &self.dir, now)?;
            self.stored = now;
            if self.segments.last().is_none_or(|&f| f <= now.acked) {
                // Skipped over segments it never opened: learn of them.
                self.refresh()?;
            }
            let oldest =
                cursor::remove_delivered(&mut self.disk, &self.dir, &mut self.segments, now.acked)?;
            if let Some(oldest) = oldest {
                // Release: pairs with the writer's Acquire load.
                self.shared
                    .removed_below
                    .fetch_max(oldest.0, Ordering::Release);
            }
        }
        Ok(())
    }
}

/// Reads from `offset` until `buf` is full or the file ends; returns the bytes read.
fn read_at_most(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match file.read_at(&mut buf[got..], offset + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}
