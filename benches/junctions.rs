//! The per-record work of the junctions on the 1+1 path, on one thread:
//! - encoding records into batch frames, which every trip of a record
//!   starts with (the agent encodes each input batch once, each instance
//!   its output): `BatchEncoder` in frames of 4096 records, input frames
//!   (seqs checked to rise) and output frames;
//! - decoding frames back into records, as each link's reader does (an
//!   instance its input, the agent each instance's output): a stream of
//!   output frames handed to `StreamDecoder` in 64 KiB pieces, as QUIC
//!   delivers them, each batch's buffer handed back for the next;
//! - the downstream merge: both serving instances' identical output (two
//!   records per input, on two streams) handed to `Downstream` batch by
//!   batch, blue's copy emitted, green's compared with it;
//!
//! each against copying the same records into a reused buffer in the same
//! run (the same 32 bytes each moved, nothing else: the floor). Every
//! figure includes renumbering the batch, as a source would fill it.
//!
//! `cargo bench --bench junctions -- --json` prints ns per record (per
//! record copy, for the merge), each the median of `TANDEM_BENCH_ROUNDS`
//! rounds (default 7) of 20 M records, and, as its last line, one JSON
//! object.

use std::hint::black_box;
use std::time::Instant;
use tandem_workspace::{median, rounds};

use bytes::Bytes;
use tandem_core::ha::ToAgent;
use tandem_core::ha::{Color, Downstream, DownstreamConfig, Role, Tolerances};
use tandem_core::wire::{BatchEncoder, BatchKind, EncodedBatch, StreamDecoder, MAX_FRAME_LEN};
use tandem_core::{ChannelId, EventTime, Record, Seq};

/// Records per push and per frame, as the `ha` bench sends them.
const BATCH: usize = 4096;
/// Batches per round.
const BATCHES: u64 = 5000;
/// Bytes QUIC hands a link's reader at a time, about.
const PIECE: usize = 64 << 10;

/// A batch of records with distinct fields, renumbered for batch `b`.
fn renumber(records: &mut [Record], b: u64) {
    for (i, r) in records.iter_mut().enumerate() {
        let seq = b * BATCH as u64 + i as u64 + 1;
        r.seq = Seq(seq);
        r.time = EventTime(seq as i64 * 1000);
        r.value = seq as f64 * 0.5;
    }
}

/// A round of batches through a `kind` encoder, each frame handed to `each`
/// as it is made.
fn encode_round(kind: BatchKind, records: &mut [Record], mut each: impl FnMut(&EncodedBatch)) {
    let mut e = BatchEncoder::new(kind, BATCH);
    for b in 0..BATCHES {
        renumber(records, b);
        e.push(records);
        e.finish(records.last().map_or(Seq::ZERO, |r| r.seq));
        while let Some(frame) = e.poll() {
            each(&frame);
        }
    }
}

/// Nanoseconds per record through a `kind` encoder, frames taken as made.
fn encoder(kind: BatchKind, records: &mut [Record]) -> f64 {
    let mut bytes = 0usize;
    let start = Instant::now();
    encode_round(kind, records, |frame| bytes += frame.bytes().len());
    let ns = start.elapsed().as_nanos() as f64;
    black_box(bytes);
    ns / (BATCHES as f64 * BATCH as f64)
}

/// Nanoseconds per record decoding output frames that arrive in pieces.
fn decode(records: &mut [Record]) -> f64 {
    // One round's frames, encoded once before the clock starts.
    let mut stream = Vec::new();
    encode_round(BatchKind::Output, records, |frame| {
        stream.extend_from_slice(frame.bytes());
    });
    let stream = Bytes::from(stream);
    let mut d = StreamDecoder::<ToAgent>::new(MAX_FRAME_LEN);
    let mut decoded = 0usize;
    let start = Instant::now();
    for piece in (0..stream.len()).step_by(PIECE) {
        let mut piece = stream.slice(piece..(piece + PIECE).min(stream.len()));
        while let Some(msg) = d.decode(&mut piece).expect("frames the encoder made") {
            if let ToAgent::Output { records, .. } = msg {
                decoded += records.len();
                d.give(records);
            }
        }
    }
    let ns = start.elapsed().as_nanos() as f64;
    assert_eq!(decoded, BATCHES as usize * BATCH, "every record decoded");
    ns / (BATCHES as f64 * BATCH as f64)
}

/// Nanoseconds per record copy through the downstream merge: each batch is
/// the output of `BATCH / 2` inputs on two streams, delivered by blue and
/// then by green (each copy in a buffer of its own, as decoded from its
/// link, handed back for reuse as the hub does).
fn merge(records: &mut [Record]) -> f64 {
    let mut d = Downstream::new(DownstreamConfig::default(), Tolerances::exact());
    d.expect(Color::Blue, Seq::ZERO, Role::Serving);
    d.expect(Color::Green, Seq::ZERO, Role::Serving);
    let mut out = Vec::with_capacity(BATCH);
    let mut emitted = 0usize;
    let start = Instant::now();
    for b in 0..BATCHES {
        for (i, r) in records.iter_mut().enumerate() {
            let seq = b * (BATCH / 2) as u64 + (i / 2) as u64 + 1;
            *r = Record::new(
                Seq(seq),
                EventTime(seq as i64),
                ChannelId(i as u32 % 2),
                seq as f64,
            );
        }
        let frontier = records.last().map_or(Seq::ZERO, |r| r.seq);
        for color in Color::BOTH {
            let mut copy = d.take_spare().unwrap_or_default();
            copy.extend_from_slice(records);
            d.handle_output_owned(color, frontier, copy, frontier);
        }
        out.clear();
        d.poll_emitted(&mut out);
        emitted += out.len();
    }
    let ns = start.elapsed().as_nanos() as f64;
    assert_eq!(
        emitted,
        BATCHES as usize * BATCH,
        "every record emitted once"
    );
    assert_eq!(d.stats().diverged, 0, "identical copies agree");
    ns / (BATCHES as f64 * 2.0 * BATCH as f64)
}

/// Nanoseconds per record for copying the records into a reused buffer:
/// the same 32 bytes each moved, with no encoding and no frame (the floor).
fn copied(records: &mut [Record]) -> f64 {
    let mut out = records.to_vec();
    let start = Instant::now();
    for b in 0..BATCHES {
        renumber(records, b);
        out.copy_from_slice(records);
        black_box(&out);
    }
    let ns = start.elapsed().as_nanos() as f64;
    ns / (BATCHES as f64 * BATCH as f64)
}

fn main() {
    let json = std::env::args().any(|a| a == "--json");
    let mut records = vec![Record::new(Seq(0), EventTime(0), ChannelId(7), 0.0); BATCH];
    let (mut input, mut output, mut decoded, mut merged, mut base) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds(7).max(1) {
        input.push(encoder(BatchKind::Input, &mut records));
        output.push(encoder(BatchKind::Output, &mut records));
        decoded.push(decode(&mut records));
        merged.push(merge(&mut records));
        base.push(copied(&mut records));
    }
    let (input, output, decoded, merged, base) = (
        median(input),
        median(output),
        median(decoded),
        median(merged),
        median(base),
    );
    println!(
        "{} M records a round, {BATCH}-record frames, median of {} rounds",
        BATCHES * BATCH as u64 / 1_000_000,
        rounds(7).max(1)
    );
    println!(
        "input frames:   {input:6.2} ns/record ({:.2}x the copy)",
        input / base
    );
    println!(
        "output frames:  {output:6.2} ns/record ({:.2}x the copy)",
        output / base
    );
    println!(
        "decode:         {decoded:6.2} ns/record ({:.2}x the copy)",
        decoded / base
    );
    println!(
        "merge:          {merged:6.2} ns/record copy ({:.2}x the copy; each record comes twice)",
        merged / base
    );
    println!("copy:           {base:6.2} ns/record (the same bytes moved, nothing else)");
    if json {
        println!(
            r#"{{"input_ns_per_record": {input:.3}, "output_ns_per_record": {output:.3}, "decode_ns_per_record": {decoded:.3}, "merge_ns_per_record_copy": {merged:.3}, "baselines": {{"copy_ns_per_record": {base:.3}}}}}"#
        );
    } else {
        println!("(run with -- --json for one JSON line)");
    }
}
