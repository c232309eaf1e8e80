//! The read cursor: how far the far side has acknowledged, kept in the file
//! `cursor` of the spool directory.
//!
//! It is replaced, never edited: written to `cursor.tmp`, fsynced, renamed
//! over `cursor`, and the directory fsynced ([`store`]). Only then are the
//! segments wholly below it removed ([`remove_delivered`]), so a crash at
//! any point leaves a cursor no further than what is still on disk: at
//! worst, records already acknowledged are sent again.
//!
//! File layout, little-endian, [`LEN`] bytes:
//!
//! | offset | bytes | field |
//! |---|---|---|
//! | 0 | 4 | magic `TDSC` |
//! | 4 | 2 | format version (1) |
//! | 6 | 2 | reserved, zero |
//! | 8 | 8 | acknowledged: every entry below this index was acknowledged |
//! | 16 | 8 | sent: entries below this index had been sent at least once |
//! | 24 | 4 | CRC-32 (IEEE) of the 24 bytes before it |

use super::disk::Disk;
use super::segment::{self, SpoolIndex};
use std::io;
use std::path::Path;

/// The cursor's file name.
pub const FILE_NAME: &str = "cursor";
/// Where a new cursor is written before it replaces the old one.
pub const TMP_NAME: &str = "cursor.tmp";
/// The first four bytes of a cursor file.
pub const MAGIC: [u8; 4] = *b"TDSC";
/// The format version this build writes and reads.
pub const FORMAT_VERSION: u16 = 1;
/// Bytes in a cursor file.
pub const LEN: usize = 28;

/// Where delivery stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cursor {
    /// Every entry below this was acknowledged by the far side.
    pub acked: SpoolIndex,
    /// Every entry below this was sent at least once (`>= acked`).
    pub sent: SpoolIndex,
}

impl Cursor {
    /// The file's bytes.
    pub fn encode(&self) -> [u8; LEN] {
        let mut out = [0u8; LEN];
        out[0..4].copy_from_slice(&MAGIC);
        out[4..6].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        out[8..16].copy_from_slice(&self.acked.0.to_le_bytes());
        out[16..24].copy_from_slice(&self.sent.0.to_le_bytes());
        let crc = crc32fast::hash(&out[..24]);
        out[24..28].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Reads a cursor file's bytes; the error says what is wrong with them.
    pub fn decode(bytes: &[u8]) -> Result<Cursor, String> {
        if bytes.len() != LEN {
            return Err(format!(
                "is {} bytes long, but a cursor has {LEN}",
                bytes.len()
            ));
        }
        if bytes[0..4] != MAGIC {
            return Err("is not a spool cursor (it does not start with `TDSC`)".into());
        }
        let version = u16::from_le_bytes([bytes[4], bytes[5]]);
        if version != FORMAT_VERSION {
            return Err(format!(
                "has cursor format {version}, but this tandem reads format {FORMAT_VERSION}"
            ));
        }
        let crc = u32::from_le_bytes([bytes[24], bytes[25], bytes[26], bytes[27]]);
        if crc32fast::hash(&bytes[..24]) != crc {
            return Err("does not match its checksum".into());
        }
        let u64_at = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[i..i + 8]);
            u64::from_le_bytes(b)
        };
        let acked = SpoolIndex(u64_at(8));
        let sent = SpoolIndex(u64_at(16)).max(acked);
        Ok(Cursor { acked, sent })
    }
}

/// Reads the cursor of the spool in `dir`: `Ok(None)` when there is none
/// yet, `Err(why)` when the file is there but is not a good cursor.
pub fn load(disk: &mut dyn Disk, dir: &Path) -> io::Result<Result<Option<Cursor>, String>> {
    Ok(match disk.read(&dir.join(FILE_NAME))? {
        None => Ok(None),
        Some(bytes) => Cursor::decode(&bytes).map(Some),
    })
}

/// Replaces the cursor durably: write, fsync, rename, fsync the directory.
pub fn store(disk: &mut dyn Disk, dir: &Path, cursor: Cursor) -> io::Result<()> {
    let tmp = dir.join(TMP_NAME);
    disk.write_file(&tmp, &cursor.encode())?;
    disk.sync_file(&tmp)?;
    disk.rename(&tmp, &dir.join(FILE_NAME))?;
    disk.sync_dir(dir)
}

/// Removes every segment wholly below `acked` (the one after it starts at
/// or below `acked`) from `segments`, a sorted list of first indices; the
/// last segment is never removed. Call only once a cursor at `acked` or
/// beyond is stored. Returns the first index of the oldest segment kept.
pub fn remove_delivered(
    disk: &mut dyn Disk,
    dir: &Path,
    segments: &mut Vec<SpoolIndex>,
    acked: SpoolIndex,
) -> io::Result<Option<SpoolIndex>> {
    let mut removable = 0;
    while removable + 1 < segments.len() && segments[removable + 1] <= acked {
        removable += 1;
    }
    if removable > 0 {
        for &first in &segments[..removable] {
            disk.remove(&dir.join(segment::file_name(first)))?;
        }
        segments.drain(..removable);
        disk.sync_dir(dir)?;
    }
    Ok(segments.first().copied())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::super::disk::sim::{FailAfter, SimDisk};
    use super::*;
    use std::path::PathBuf;

    fn dir() -> PathBuf {
        PathBuf::from("/spool/out")
    }

    #[test]
    fn a_cursor_round_trips_and_damage_is_named() {
        let c = Cursor {
            acked: SpoolIndex(41),
            sent: SpoolIndex(97),
        };
        let bytes = c.encode();
        assert_eq!(&bytes[0..4], b"TDSC");
        assert_eq!(&bytes[8..16], &41u64.to_le_bytes());
        assert_eq!(Cursor::decode(&bytes), Ok(c));
        assert!(Cursor::decode(&bytes[..20])
            .unwrap_err()
            .contains("20 bytes"));
        let mut flipped = bytes;
        flipped[9] ^= 1;
        assert!(Cursor::decode(&flipped).unwrap_err().contains("checksum"));
        let mut newer = bytes;
        newer[4] = 2;
        assert!(Cursor::decode(&newer).unwrap_err().contains("format 2"));
    }

    /// A crash at every step of moving the cursor from 10 to 35 over
    /// segments starting at 0, 10, 20, 30: whatever is left on disk, the
    /// cursor read back is 10 or 35, and every segment holding an entry at
    /// or above it is still there.
    #[test]
    fn a_crash_at_any_step_never_loses_an_unacknowledged_segment() {
        let d = dir();
        let mut base = SimDisk::default();
        for first in [0, 10, 20, 30] {
            base.put(&d.join(segment::file_name(SpoolIndex(first))), b"x");
        }
        let old = Cursor {
            acked: SpoolIndex(10),
            sent: SpoolIndex(12),
        };
        base.put(&d.join(FILE_NAME), &old.encode());
        let new = Cursor {
            acked: SpoolIndex(35),
            sent: SpoolIndex(40),
        };
        let mut crashed_before_the_end = 0;
        for budget in 0..20 {
            let mut disk = FailAfter {
                disk: base.clone(),
                left: budget,
            };
            let mut segments: Vec<SpoolIndex> = [0, 10, 20, 30].map(SpoolIndex).to_vec();
            let done = store(&mut disk, &d, new)
                .and_then(|()| remove_delivered(&mut disk, &d, &mut segments, new.acked));
            if done.is_err() {
                crashed_before_the_end += 1;
            }
            for mut image in disk.disk.crash_images() {
                let cursor = load(&mut image, &d).unwrap().unwrap().unwrap_or_default();
                assert!(
                    cursor == old || cursor == new,
                    "budget {budget}: {cursor:?}"
                );
                let names = image.list(&d).unwrap();
                let mut kept: Vec<u64> = names
                    .iter()
                    .filter_map(|n| segment::parse_name(n))
                    .map(|i| i.0)
                    .collect();
                kept.sort_unstable();
                // Every segment holding an entry at or above the cursor.
                let needed: Vec<u64> = [(0u64, 10u64), (10, 20), (20, 30), (30, u64::MAX)]
                    .into_iter()
                    .filter(|&(_, end)| end > cursor.acked.0)
                    .map(|(first, _)| first)
                    .collect();
                for f in needed {
                    assert!(
                        kept.contains(&f),
                        "budget {budget}: segment {f} lost under cursor {cursor:?}; kept {kept:?}"
                    );
                }
            }
            if done.is_ok() {
                assert_eq!(segments, [SpoolIndex(30)]);
                break;
            }
        }
        assert!(crashed_before_the_end >= 5);
    }

    #[test]
    fn the_last_segment_is_never_removed() {
        let d = dir();
        let mut disk = SimDisk::default();
        let mut segments = vec![SpoolIndex(0), SpoolIndex(10)];
        let oldest = remove_delivered(&mut disk, &d, &mut segments, SpoolIndex(1_000)).unwrap();
        assert_eq!(oldest, Some(SpoolIndex(10)));
        assert_eq!(segments, [SpoolIndex(10)]);
    }
}
