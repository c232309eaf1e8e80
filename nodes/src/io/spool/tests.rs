//! The spool on a real directory: order, restarts, torn tails, damage and
//! the overflow policies, each checked entry by entry.
#![allow(clippy::unwrap_used)]

use super::segment::{self, ENTRY_LEN};
use super::*;
use crate::io::testing::temp_dir;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use tandem_core::{EventTime, Record, Seq};

fn inputs() -> Vec<(ChannelId, String)> {
    vec![
        (ChannelId(3), "battery.soc".into()),
        (ChannelId(5), "pv.power".into()),
    ]
}

/// Record `i`: seq i+1, alternating between the two channels.
fn record(i: u64) -> Record {
    Record::new(
        Seq(i + 1),
        EventTime::from_secs(1_767_225_600).add_nanos(i as i64),
        ChannelId(if i.is_multiple_of(2) { 3 } else { 5 }),
        i as f64,
    )
}

fn records(from: u64, to: u64) -> Vec<Record> {
    (from..to).map(record).collect()
}

fn big() -> SpoolConfig {
    SpoolConfig::new(64 << 20, Overflow::DropOldest)
}

/// Reads everything readable now, acknowledging as it goes; the values read.
fn drain(reader: &mut SpoolReader) -> Vec<u64> {
    let mut out = Vec::new();
    let mut got = Vec::new();
    loop {
        let chunk = reader.read(500, &mut out).unwrap();
        if chunk.is_empty() {
            return got;
        }
        assert!(chunk.end.0 - chunk.start.0 >= out.len() as u64);
        for e in &out {
            let name = &reader.channels()[e.channel as usize];
            let i = e.value as u64;
            assert_eq!(e.seq, Seq(i + 1));
            assert_eq!(
                name,
                if i.is_multiple_of(2) {
                    "battery.soc"
                } else {
                    "pv.power"
                }
            );
            got.push(i);
        }
        reader.ack(chunk.end);
    }
}

fn segments(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains(".seg"))
        .collect();
    names.sort();
    names
}

#[test]
fn entries_come_back_in_order_across_segments_and_delivered_ones_are_removed() {
    let dir = temp_dir("spool-order");
    let mut spool = open(
        &dir,
        &inputs(),
        SpoolConfig::new(1 << 20, Overflow::DropNewest),
    )
    .unwrap();
    let all = records(0, 10_000);
    for chunk in all.chunks(333) {
        spool.writer.append(chunk).unwrap();
    }
    spool.writer.commit().unwrap();
    assert!(segments(&dir).len() > 3, "{:?}", segments(&dir));
    let got = drain(&mut spool.reader);
    assert_eq!(got, (0..10_000).collect::<Vec<_>>());
    spool.reader.sync().unwrap();
    // Only the newest segment is left.
    assert_eq!(segments(&dir).len(), 1);
    assert_eq!(spool.reader.backlog(), 0);
    drop(spool);

    // Nothing is read twice after a restart.
    let mut spool = open(&dir, &inputs(), big()).unwrap();
    assert_eq!(drain(&mut spool.reader), Vec::<u64>::new());
    spool.writer.append(&records(10_000, 10_010)).unwrap();
    spool.writer.commit().unwrap();
    assert_eq!(
        drain(&mut spool.reader),
        (10_000..10_010).collect::<Vec<_>>()
    );
    assert_eq!(spool.shared.counters.resent.load(Ordering::Relaxed), 0);
}

#[test]
fn what_was_not_acknowledged_is_read_again_and_counted_after_a_rewind_or_restart() {
    let dir = temp_dir("spool-resend");
    let mut spool = open(&dir, &inputs(), big()).unwrap();
    spool.writer.append(&records(0, 100)).unwrap();
    spool.writer.commit().unwrap();
    let mut out = Vec::new();
    let first = spool.reader.read(30, &mut out).unwrap();
    spool.reader.ack(first.end);
    let second = spool.reader.read(30, &mut out).unwrap();
    assert_eq!((second.start.0, second.end.0), (30, 60));
    // The link drops before 30..60 is acknowledged.
    spool.reader.rewind();
    let again = spool.reader.read(50, &mut out).unwrap();
    assert_eq!((again.start.0, again.end.0), (30, 80));
    assert_eq!(spool.shared.counters.resent.load(Ordering::Relaxed), 30);
    spool.reader.ack(SpoolIndex(50));
    spool.reader.sync().unwrap();
    // A crash now: the restart reads from 50; 50..80 had been sent.
    drop(spool);
    let mut spool = open(&dir, &inputs(), big()).unwrap();
    assert_eq!(drain(&mut spool.reader), (50..100).collect::<Vec<_>>());
    assert_eq!(spool.shared.counters.resent.load(Ordering::Relaxed), 30);
}

#[test]
fn a_torn_tail_is_cut_back_to_the_last_good_entry_on_open() {
    let dir = temp_dir("spool-torn");
    let mut spool = open(&dir, &inputs(), big()).unwrap();
    spool.writer.append(&records(0, 50)).unwrap();
    spool.writer.commit().unwrap();
    drop(spool);
    let newest = dir.join(segments(&dir).last().unwrap());
    let mut bytes = std::fs::read(&newest).unwrap();
    // A crash in the middle of an append: half an entry, then nothing.
    let mut half = Vec::new();
    segment::encode_entry(
        &Entry {
            seq: Seq(51),
            time: EventTime(0),
            value: 50.0,
            quality: tandem_core::Quality::GOOD,
            channel: 0,
            ordinal: 0,
        },
        &mut half,
    );
    bytes.extend_from_slice(&half[..ENTRY_LEN / 2]);
    std::fs::write(&newest, &bytes).unwrap();

    let mut spool = open(&dir, &inputs(), big()).unwrap();
    assert_eq!(
        spool.shared.counters.torn_bytes.load(Ordering::Relaxed),
        (ENTRY_LEN / 2) as u64
    );
    assert_eq!(spool.writer.next_index(), SpoolIndex(50));
    spool.writer.append(&records(50, 60)).unwrap();
    spool.writer.commit().unwrap();
    assert_eq!(drain(&mut spool.reader), (0..60).collect::<Vec<_>>());
}

#[test]
fn a_segment_cut_inside_its_header_is_removed_and_holds_nothing() {
    let dir = temp_dir("spool-short-header");
    let mut spool = open(&dir, &inputs(), big()).unwrap();
    spool.writer.append(&records(0, 5)).unwrap();
    spool.writer.commit().unwrap();
    drop(spool);
    std::fs::write(dir.join(segment::file_name(SpoolIndex(5))), b"TDSG\x01").unwrap();
    let mut spool = open(&dir, &inputs(), big()).unwrap();
    assert_eq!(drain(&mut spool.reader), (0..5).collect::<Vec<_>>());
    assert_eq!(
        spool
            .shared
            .counters
            .corrupt_segments
            .load(Ordering::Relaxed),
        0
    );
}

/// Damage in an older segment: its good entries before the damage are
/// delivered, the rest of it is counted lost, the file is set aside, and
/// delivery goes on with the next segment. Opening again does not trip on it.
#[test]
fn a_damaged_segment_is_set_aside_counted_and_skipped() {
    let dir = temp_dir("spool-damage");
    let config = SpoolConfig::new(1 << 20, Overflow::DropNewest);
    let mut spool = open(&dir, &inputs(), config).unwrap();
    spool.writer.append(&records(0, 10_000)).unwrap();
    spool.writer.commit().unwrap();
    drop(spool);
    let names = segments(&dir);
    assert!(names.len() >= 3, "{names:?}");
    let victim = PathBuf::from(&dir).join(&names[1]);
    let first = segment::parse_name(&names[1]).unwrap().0;
    let next = segment::parse_name(&names[2]).unwrap().0;
    let mut bytes = std::fs::read(&victim).unwrap();
    let header_len = bytes.len() - (next - first) as usize * ENTRY_LEN;
    // Entry 10 of the segment: a flipped bit in its value.
    bytes[header_len + 10 * ENTRY_LEN + 20] ^= 0x10;
    std::fs::write(&victim, &bytes).unwrap();

    for round in 0..2 {
        let mut spool = open(&dir, &inputs(), config).unwrap();
        let got = drain(&mut spool.reader);
        let counters = &spool.shared.counters;
        if round == 0 {
            let expect: Vec<u64> = (0..first + 10).chain(next..10_000).collect();
            assert_eq!(got, expect);
            assert_eq!(counters.corrupt_segments.load(Ordering::Relaxed), 1);
            assert_eq!(
                counters.lost_damaged.load(Ordering::Relaxed),
                next - first - 10
            );
            assert!(dir.join(format!("{}.corrupt", names[1])).exists());
        } else {
            assert_eq!(got, Vec::<u64>::new());
            assert_eq!(counters.corrupt_segments.load(Ordering::Relaxed), 0);
        }
        spool.reader.sync().unwrap();
    }
}

#[test]
fn a_damaged_cursor_is_set_aside_and_delivery_starts_from_the_oldest_segment() {
    let dir = temp_dir("spool-bad-cursor");
    let mut spool = open(&dir, &inputs(), big()).unwrap();
    spool.writer.append(&records(0, 20)).unwrap();
    spool.writer.commit().unwrap();
    let mut out = Vec::new();
    let chunk = spool.reader.read(10, &mut out).unwrap();
    spool.reader.ack(chunk.end);
    spool.reader.sync().unwrap();
    drop(spool);
    std::fs::write(dir.join("cursor"), b"garbage").unwrap();
    let mut spool = open(&dir, &inputs(), big()).unwrap();
    assert!(dir.join("cursor.corrupt").exists());
    assert_eq!(drain(&mut spool.reader), (0..20).collect::<Vec<_>>());
}

#[test]
fn drop_newest_refuses_and_counts_what_does_not_fit() {
    let dir = temp_dir("spool-drop-newest");
    let config = SpoolConfig::new(256 * 1024, Overflow::DropNewest);
    let mut spool = open(&dir, &inputs(), config).unwrap();
    let n = 20_000u64;
    for chunk in records(0, n).chunks(1000) {
        spool.writer.append(chunk).unwrap();
    }
    spool.writer.commit().unwrap();
    let c = &spool.shared.counters;
    let kept = c.appended.load(Ordering::Relaxed);
    let dropped = c.dropped_newest.load(Ordering::Relaxed);
    assert_eq!(kept + dropped, n);
    assert!(kept * ENTRY_LEN as u64 <= 256 * 1024, "{kept}");
    assert!(kept > 5_000, "{kept}");
    let disk: u64 = segments(&dir)
        .iter()
        .map(|s| std::fs::metadata(dir.join(s)).unwrap().len())
        .sum();
    assert!(disk <= 256 * 1024, "{disk} bytes on disk");
    // The oldest are kept.
    assert_eq!(drain(&mut spool.reader), (0..kept).collect::<Vec<_>>());
}

#[test]
fn drop_oldest_gives_up_whole_segments_and_counts_every_entry_never_sent() {
    let dir = temp_dir("spool-drop-oldest");
    let config = SpoolConfig::new(256 * 1024, Overflow::DropOldest);
    let mut spool = open(&dir, &inputs(), config).unwrap();
    let n = 20_000u64;
    // The reader has sent the first 100 (not acknowledged) when the link drops.
    spool.writer.append(&records(0, 100)).unwrap();
    spool.writer.commit().unwrap();
    let mut out = Vec::new();
    spool.reader.read(100, &mut out).unwrap();
    for chunk in records(100, n).chunks(1000) {
        spool.writer.append(chunk).unwrap();
        spool.writer.commit().unwrap();
        // The reader keeps the disk in step between appends.
        spool.reader.rewind();
        let mut skipped = Vec::new();
        let c = spool.reader.read(0, &mut skipped).unwrap();
        if !c.is_empty() {
            spool.reader.ack(c.end);
        }
        spool.reader.sync().unwrap();
    }
    let c = &spool.shared.counters;
    assert_eq!(c.appended.load(Ordering::Relaxed), n);
    assert_eq!(c.dropped_newest.load(Ordering::Relaxed), 0);
    let got = drain(&mut spool.reader);
    let dropped = c.dropped_oldest.load(Ordering::Relaxed);
    // The newest are kept, as one run up to the end.
    assert_eq!(*got.last().unwrap(), n - 1);
    assert!(got.windows(2).all(|w| w[1] == w[0] + 1));
    // Every entry was either delivered, given up unsent, or sent once before it was given up.
    let sent_before = got[0].min(100);
    assert_eq!(
        got.len() as u64 + dropped + sent_before,
        n,
        "got {} dropped {dropped}",
        got.len()
    );
    let disk: u64 = segments(&dir)
        .iter()
        .map(|s| std::fs::metadata(dir.join(s)).unwrap().len())
        .sum();
    assert!(disk <= 256 * 1024 + 64 * 1024, "{disk} bytes on disk");
}

#[test]
fn records_sharing_a_channel_and_sequence_number_get_ordinals() {
    let dir = temp_dir("spool-ordinal");
    let mut spool = open(&dir, &inputs(), big()).unwrap();
    let r = |seq: u64, ch: u32| Record::new(Seq(seq), EventTime(0), ChannelId(ch), 0.0);
    spool
        .writer
        .append(&[r(7, 3), r(7, 3), r(7, 5), r(7, 3), r(8, 3)])
        .unwrap();
    spool.writer.commit().unwrap();
    let mut out = Vec::new();
    spool.reader.read(10, &mut out).unwrap();
    let ordinals: Vec<(u32, u32)> = out.iter().map(|e| (e.channel, e.ordinal)).collect();
    assert_eq!(ordinals, [(0, 0), (0, 1), (1, 0), (0, 2), (0, 0)]);
}

/// A full disk takes part of a commit: the next commit writes the whole
/// batch again where the good entries end, so every entry stays aligned,
/// the reader gets all of them in order, and the segment is not set aside
/// when the spool opens again.
#[test]
fn a_commit_cut_short_by_a_full_disk_is_written_again_in_place() {
    let dir = temp_dir("spool-full-disk");
    let mut spool = open(&dir, &inputs(), big()).unwrap();
    spool.writer.append(&records(0, 10)).unwrap();
    spool.writer.commit().unwrap();
    // Room for two entries and a half of the next ten.
    spool.writer.set_room(Some(2 * ENTRY_LEN as u64 + 20));
    spool.writer.append(&records(10, 20)).unwrap();
    assert!(spool.writer.commit().is_err());
    assert!(spool.writer.commit().is_err());
    spool.writer.set_room(None);
    spool.writer.append(&records(20, 30)).unwrap();
    spool.writer.commit().unwrap();
    assert_eq!(drain(&mut spool.reader), (0..30).collect::<Vec<_>>());
    drop(spool);

    let mut spool = open(&dir, &inputs(), big()).unwrap();
    let c = &spool.shared.counters;
    assert_eq!(c.corrupt_segments.load(Ordering::Relaxed), 0);
    assert_eq!(c.torn_bytes.load(Ordering::Relaxed), 0);
    assert_eq!(spool.writer.next_index(), SpoolIndex(30));
    spool.writer.append(&records(30, 40)).unwrap();
    spool.writer.commit().unwrap();
    assert_eq!(drain(&mut spool.reader), (0..40).collect::<Vec<_>>());
    assert_eq!(c.lost_damaged.load(Ordering::Relaxed), 0);
}

/// While the disk stays full, the writer stages no more than its usual
/// 64 KiB and counts the rest as dropped; once there is room again what it
/// staged and what comes after are delivered in order.
#[test]
fn a_full_disk_bounds_what_is_staged_and_counts_the_rest_dropped() {
    let dir = temp_dir("spool-full-disk-bound");
    let mut spool = open(&dir, &inputs(), big()).unwrap();
    spool.writer.set_room(Some(0));
    let n = 5_000u64;
    let mut errors = 0;
    for chunk in records(0, n).chunks(100) {
        errors += usize::from(spool.writer.append(chunk).is_err());
    }
    assert!(spool.writer.commit().is_err());
    assert!(errors > 0);
    let c = &spool.shared.counters;
    let kept = c.appended.load(Ordering::Relaxed);
    let dropped = c.dropped_newest.load(Ordering::Relaxed);
    assert_eq!(kept + dropped, n);
    assert!(kept as usize * ENTRY_LEN <= 64 * 1024 + ENTRY_LEN, "{kept}");
    assert!(kept > 1_000, "{kept}");
    assert_eq!(spool.reader.backlog(), 0);

    spool.writer.set_room(None);
    spool.writer.append(&records(n, n + 10)).unwrap();
    spool.writer.commit().unwrap();
    let expect: Vec<u64> = (0..kept).chain(n..n + 10).collect();
    assert_eq!(drain(&mut spool.reader), expect);
}
