//! The writing end of a spool: it runs on the sink's worker thread, appends
//! entries to the newest segment and makes them visible to the reader.
//!
//! Appending touches only memory until 64 KiB are staged or the sink is
//! flushed ([`SpoolWriter::commit`]): then one `write` hands them to the
//! kernel and the reader may read them. The writer never fsyncs and never
//! waits for the reader: the reader's thread fsyncs segments
//! ([`super::reader::SpoolReader::sync`]), so a process crash loses
//! nothing committed, and a power cut at most what was committed since the
//! reader's last sync.
//!
//! A write that fails (a full disk) may have written part of the staged
//! bytes: the writer remembers where the segment's committed bytes end,
//! cuts the file back there and writes the whole staging buffer at that
//! offset again on the next commit, so entries stay aligned. Until a
//! commit succeeds, entries are staged only up to the usual 64 KiB; the
//! rest are refused and counted in
//! [`super::Counters::dropped_newest`]. Each [`SpoolWriter::append`] and
//! [`SpoolWriter::commit`] tries the disk again.

use super::segment::{self, encode_entry, Entry, Header, SpoolIndex, ENTRY_LEN};
use super::{Overflow, Shared, SpoolConfig};
use crossbeam_channel::Sender;
use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tandem_core::{ChannelId, Record, Seq};

/// Bytes staged before they are handed to the kernel.
const STAGE_BYTES: usize = 64 * 1024;

/// A segment the writer created that the reader has not removed yet.
#[derive(Clone, Copy, Debug)]
struct Live {
    first: SpoolIndex,
    bytes: u64,
}

/// Appends records to a spool. See the [module](self).
#[derive(Debug)]
pub struct SpoolWriter {
    dir: PathBuf,
    shared: Arc<Shared>,
    config: SpoolConfig,
    /// The newest segment, open for appending.
    file: File,
    /// Index of the next entry appended.
    next: SpoolIndex,
    staging: Vec<u8>,
    /// Bytes of `file` that hold its header and committed entries: where
    /// the next commit writes.
    committed: u64,
    /// The last commit, or segment creation, failed: see the [module](self).
    failing: bool,
    /// Segments not yet removed, oldest first; the last is `file`.
    live: VecDeque<Live>,
    /// Bytes of the live segments not yet given up to overflow.
    live_bytes: u64,
    /// Front segments of `live` already given up to overflow.
    given_up: usize,
    /// The segment index of each channel by id; `u32::MAX` for channels
    /// the sink does not read.
    local: Vec<u32>,
    /// The names in segment headers, by segment index.
    channels: Vec<String>,
    /// Per segment index: the last sequence number and its ordinal.
    last: Vec<(Seq, u32)>,
    /// Newly created segment files, for the reader to fsync.
    to_sync: Sender<(SpoolIndex, File)>,
    /// Entries were committed since [`SpoolWriter::take_wake`] last said so.
    wake: bool,
    /// A simulated full disk: how many more entry bytes it takes.
    #[cfg(test)]
    room: Option<u64>,
}

impl SpoolWriter {
    /// A writer that starts a new segment at `next`, after the segments in
    /// `existing` (first index and size each, oldest first). `inputs` are
    /// the channels it will be given, named by `names`.
    pub(super) fn start(
        dir: &Path,
        shared: Arc<Shared>,
        config: SpoolConfig,
        next: SpoolIndex,
        existing: &[(SpoolIndex, u64)],
        inputs: &[(ChannelId, String)],
        to_sync: Sender<(SpoolIndex, File)>,
    ) -> io::Result<SpoolWriter> {
        let size = inputs.iter().map(|(c, _)| c.index() + 1).max().unwrap_or(0);
        let mut local = vec![u32::MAX; size];
        let mut channels = Vec::with_capacity(inputs.len());
        for (c, name) in inputs {
            if let Some(slot) = local.get_mut(c.index()) {
                *slot = u32::try_from(channels.len()).unwrap_or(u32::MAX);
            }
            channels.push(name.clone());
        }
        let live: VecDeque<Live> = existing
            .iter()
            .map(|&(first, bytes)| Live { first, bytes })
            .collect();
        let live_bytes = live.iter().map(|l| l.bytes).sum();
        let (file, header_len) = create_segment(dir, next, &channels)?;
        let _ = to_sync.send((next, file.try_clone()?));
        shared.current.store(next.0, Ordering::Release);
        let mut writer = SpoolWriter {
            dir: dir.to_owned(),
            shared,
            config,
            file,
            next,
            staging: Vec::with_capacity(STAGE_BYTES + ENTRY_LEN),
            committed: header_len,
            failing: false,
            live,
            live_bytes,
            given_up: 0,
            last: vec![(Seq::ZERO, 0); channels.len()],
            local,
            channels,
            to_sync,
            wake: false,
            #[cfg(test)]
            room: None,
        };
        writer.live.push_back(Live {
            first: next,
            bytes: header_len,
        });
        writer.live_bytes += header_len;
        Ok(writer)
    }

    /// The index the next appended entry gets.
    pub fn next_index(&self) -> SpoolIndex {
        self.next
    }

    /// True once after entries were handed to the kernel: the reader
    /// should be woken.
    pub fn take_wake(&mut self) -> bool {
        std::mem::take(&mut self.wake)
    }

    /// Appends `records`, dropping what the overflow policy says, and what
    /// does not fit while the disk is full (see the [module](self)).
    /// Returns the first error met; the records after it are still
    /// appended or counted as dropped.
    pub fn append(&mut self, records: &[Record]) -> io::Result<()> {
        if self.shared.rotate.swap(false, Ordering::AcqRel) {
            self.rotate()?;
        }
        let mut result = Ok(());
        if self.stalled() {
            // The disk may have room again.
            result = self.commit().and_then(|()| {
                if self.segment_full() {
                    self.rotate()
                } else {
                    Ok(())
                }
            });
        }
        let (mut appended, mut refused) = (0u64, 0u64);
        for record in records {
            let Some(&channel) = self.local.get(record.channel.index()) else {
                continue;
            };
            if channel as usize >= self.last.len() {
                continue;
            }
            if self.stalled() {
                refused += 1;
                continue;
            }
            match self.room_for_one() {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    refused += 1;
                    result = result.and(Err(e));
                    continue;
                }
            }
            let Some(last) = self.last.get_mut(channel as usize) else {
                continue;
            };
            let ordinal = if last.0 == record.seq && last.0 != Seq::ZERO {
                last.1.saturating_add(1)
            } else {
                0
            };
            *last = (record.seq, ordinal);
            let entry = Entry {
                seq: record.seq,
                time: record.time,
                value: record.value,
                quality: record.quality,
                channel,
                ordinal,
            };
            encode_entry(&entry, &mut self.staging);
            self.next = self.next.plus(1);
            self.live_bytes += ENTRY_LEN as u64;
            if let Some(current) = self.live.back_mut() {
                current.bytes += ENTRY_LEN as u64;
            }
            appended += 1;
            if self.staging.len() >= STAGE_BYTES {
                if let Err(e) = self.commit() {
                    result = result.and(Err(e));
                }
            }
        }
        let counters = &self.shared.counters;
        counters.appended.fetch_add(appended, Ordering::Relaxed);
        if refused > 0 {
            counters
                .dropped_newest
                .fetch_add(refused, Ordering::Relaxed);
        }
        result
    }

    /// Hands staged entries to the kernel and makes them visible to the
    /// reader. On an error nothing is visible and nothing is lost: the
    /// entries stay staged and the next commit writes them again.
    pub fn commit(&mut self) -> io::Result<()> {
        if self.staging.is_empty() {
            self.failing = false;
            return Ok(());
        }
        if let Err(e) = self.write_staged() {
            self.failing = true;
            // Best effort: give back what a partial write took. The next
            // commit writes at `committed` whether or not this succeeds.
            let _ = self.file.set_len(self.committed);
            return Err(e);
        }
        self.failing = false;
        self.committed += self.staging.len() as u64;
        self.staging.clear();
        // Release: pairs with the reader's Acquire load; the bytes written
        // above are in the file before it reads up to this index.
        self.shared.written.store(self.next.0, Ordering::Release);
        self.wake = true;
        Ok(())
    }

    /// Writes the whole staging buffer at `committed`.
    fn write_staged(&mut self) -> io::Result<()> {
        let mut done = 0;
        while done < self.staging.len() {
            let at = self.committed + done as u64;
            match self.write_at(done, at) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Writes staged bytes from `from` on at file offset `at`.
    #[cfg(not(test))]
    fn write_at(&mut self, from: usize, at: u64) -> io::Result<usize> {
        self.file.write_at(&self.staging[from..], at)
    }

    /// Writes staged bytes from `from` on at file offset `at`, as far as
    /// the simulated disk has room.
    #[cfg(test)]
    fn write_at(&mut self, from: usize, at: u64) -> io::Result<usize> {
        let bytes = &self.staging[from..];
        let Some(room) = self.room else {
            return self.file.write_at(bytes, at);
        };
        if room == 0 {
            return Err(io::ErrorKind::StorageFull.into());
        }
        let n = self
            .file
            .write_at(&bytes[..bytes.len().min(room as usize)], at)?;
        self.room = Some(room - n as u64);
        Ok(n)
    }

    /// Simulates a disk that takes `room` more entry bytes (`None`: no limit).
    #[cfg(test)]
    pub(super) fn set_room(&mut self, room: Option<u64>) {
        self.room = room;
    }

    /// A commit failed and an entry has nowhere to go until one succeeds:
    /// staging holds its usual size, or the segment is full and cannot be
    /// ended.
    fn stalled(&self) -> bool {
        self.failing && (self.staging.len() >= STAGE_BYTES || self.segment_full())
    }

    /// The newest segment has no room for another entry.
    fn segment_full(&self) -> bool {
        let current = self.live.back().map_or(0, |l| l.bytes);
        current + ENTRY_LEN as u64 > self.config.segment_bytes
    }

    /// Makes room for one entry: rotates a full segment, and applies the
    /// overflow policy at the size cap. False when the entry is dropped.
    fn room_for_one(&mut self) -> io::Result<bool> {
        if self.segment_full() {
            self.rotate()?;
        }
        // Segments the reader removed since.
        let removed_below = SpoolIndex(self.shared.removed_below.load(Ordering::Acquire));
        while self.live.len() > 1 && self.live.get(1).is_some_and(|l| l.first <= removed_below) {
            if let Some(gone) = self.live.pop_front() {
                if self.given_up > 0 {
                    self.given_up -= 1;
                } else {
                    self.live_bytes = self.live_bytes.saturating_sub(gone.bytes);
                }
            }
        }
        if self.live_bytes + ENTRY_LEN as u64 <= self.config.max_bytes {
            return Ok(true);
        }
        if self.config.overflow == Overflow::DropOldest {
            // Give up whole segments, oldest first, never the newest.
            while self.live_bytes + ENTRY_LEN as u64 > self.config.max_bytes
                && self.given_up + 1 < self.live.len()
            {
                let (Some(oldest), Some(after)) = (
                    self.live.get(self.given_up),
                    self.live.get(self.given_up + 1),
                ) else {
                    break;
                };
                self.live_bytes = self.live_bytes.saturating_sub(oldest.bytes);
                // Release: pairs with the reader's Acquire load.
                self.shared
                    .drop_below
                    .fetch_max(after.first.0, Ordering::Release);
                self.given_up += 1;
            }
            if self.live_bytes + ENTRY_LEN as u64 <= self.config.max_bytes {
                return Ok(true);
            }
        }
        self.shared
            .counters
            .dropped_newest
            .fetch_add(1, Ordering::Relaxed);
        Ok(false)
    }

    /// Ends the newest segment and starts another at the next index.
    fn rotate(&mut self) -> io::Result<()> {
        self.commit()?;
        if self.live.back().is_some_and(|l| l.first == self.next) {
            return Ok(()); // Still empty: nothing to end.
        }
        let (file, header_len) =
            create_segment(&self.dir, self.next, &self.channels).inspect_err(|_| {
                self.failing = true;
            })?;
        let _ = self.to_sync.send((self.next, file.try_clone()?));
        self.file = file;
        self.committed = header_len;
        // Release: pairs with the reader's Acquire load; the segment exists.
        self.shared.current.store(self.next.0, Ordering::Release);
        self.live.push_back(Live {
            first: self.next,
            bytes: header_len,
        });
        self.live_bytes += header_len;
        Ok(())
    }
}

/// Creates the segment starting at `first` and writes its header.
fn create_segment(dir: &Path, first: SpoolIndex, channels: &[String]) -> io::Result<(File, u64)> {
    let path = dir.join(segment::file_name(first));
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    let header = Header {
        first,
        channels: channels.to_vec(),
    }
    .encode();
    file.write_all(&header)?;
    Ok((file, header.len() as u64))
}
