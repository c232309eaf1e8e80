#![allow(clippy::unwrap_used)]

use super::*;
use crate::ha::{Color, Role};
use crate::record::{ChannelId, EventTime, Quality};
use core::fmt::Debug;
use proptest::prelude::*;

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn enc<M: Message>(msg: &M) -> Vec<u8> {
    let mut buf = BytesMut::new();
    encode(msg, &mut buf).unwrap();
    buf.to_vec()
}

fn dec<M: Message>(bytes: &[u8]) -> Result<Option<M>, WireError> {
    decode(&mut BytesMut::from(bytes))
}

fn record() -> Record {
    Record {
        seq: Seq(5),
        time: EventTime(1_000_000_000),
        channel: ChannelId(3),
        quality: Quality::COMM_ERROR,
        value: 1.5,
    }
}

/// One message of each agent -> instance type and its bytes, written out
/// by hand from the layout in `messages.rs`. If this test fails the wire
/// format changed: bump `VERSION`.
fn golden_to_instance() -> Vec<(ToInstance, &'static str)> {
    vec![
        (
            ToInstance::Input {
                frontier: Seq(5),
                records: vec![record()],
            },
            "30000000 54440201 0500000000000000 01000000
             0500000000000000 00ca9a3b00000000 03000000 02000000 000000000000f83f",
        ),
        (
            ToInstance::Barrier {
                id: 2,
                at: Seq(100),
            },
            "14000000 54440202 0200000000000000 6400000000000000",
        ),
        (
            ToInstance::SnapshotRequest { barrier: 2 },
            "0c000000 54440203 0200000000000000",
        ),
        (
            ToInstance::SnapshotChunk {
                barrier: 2,
                vertex: 1,
                offset: 4,
                total: 8,
                bytes: Bytes::from_static(&[0xaa, 0xbb, 0xcc]),
            },
            "27000000 54440204 0200000000000000 01000000 0400000000000000 0800000000000000
             03000000 aabbcc",
        ),
        (
            ToInstance::SnapshotEnd {
                barrier: 2,
                vertices: 3,
                state_hash: 0x0102_0304_0506_0708,
            },
            "18000000 54440205 0200000000000000 03000000 0807060504030201",
        ),
        (
            ToInstance::SetRole { role: Role::Shadow },
            "05000000 54440206 01",
        ),
        (
            ToInstance::Heartbeat {
                sent_ns: -1,
                seq: 3,
            },
            "14000000 54440207 ffffffffffffffff 0300000000000000",
        ),
    ]
}

/// The same for instance -> agent.
fn golden_to_agent() -> Vec<(ToAgent, &'static str)> {
    vec![
        (
            ToAgent::Hello {
                color: Color::Green,
                version: 7,
                pid: 0x1234,
            },
            "0d000000 54440281 01 07000000 34120000",
        ),
        (
            ToAgent::Output {
                frontier: Seq(9),
                records: vec![],
            },
            "10000000 54440282 0900000000000000 00000000",
        ),
        (
            ToAgent::SnapshotChunk {
                barrier: 2,
                vertex: 1,
                offset: 4,
                total: 8,
                bytes: Bytes::from_static(&[0xaa, 0xbb, 0xcc]),
            },
            "27000000 54440283 0200000000000000 01000000 0400000000000000 0800000000000000
             03000000 aabbcc",
        ),
        (
            ToAgent::SnapshotEnd {
                barrier: 2,
                vertices: 3,
                state_hash: 0x0102_0304_0506_0708,
            },
            "18000000 54440284 0200000000000000 03000000 0807060504030201",
        ),
        (
            ToAgent::Restored {
                barrier: 2,
                state_hash: 0xdead_beef,
            },
            "14000000 54440285 0200000000000000 efbeadde00000000",
        ),
        (
            ToAgent::StateHash {
                barrier: 2,
                hash: 1,
            },
            "14000000 54440286 0200000000000000 0100000000000000",
        ),
        (
            ToAgent::Heartbeat {
                sent_ns: -1,
                seq: 3,
                processed: Seq(100),
            },
            "1c000000 54440287 ffffffffffffffff 0300000000000000 6400000000000000",
        ),
    ]
}

fn check_golden<M: Message + PartialEq + Debug>(cases: Vec<(M, &'static str)>) {
    assert_eq!(cases.len(), 7, "one case per message");
    for (msg, text) in cases {
        let bytes = hex(text);
        assert_eq!(enc(&msg), bytes, "encoding of {}", msg.name());
        assert_eq!(bytes.len(), LEN_BYTES + msg.encoded_len());
        assert_eq!(dec::<M>(&bytes).unwrap(), Some(msg));
    }
}

#[test]
fn golden_bytes_of_every_message() {
    check_golden(golden_to_instance());
    check_golden(golden_to_agent());
}

#[test]
fn every_message_going_the_wrong_way_is_refused() {
    for (msg, text) in golden_to_agent() {
        assert_eq!(
            dec::<ToInstance>(&hex(text)),
            Err(WireError::WrongWay {
                frame_type: msg.name(),
                to: "instance"
            })
        );
    }
    for (msg, text) in golden_to_instance() {
        assert_eq!(
            dec::<ToAgent>(&hex(text)),
            Err(WireError::WrongWay {
                frame_type: msg.name(),
                to: "agent"
            })
        );
    }
    // From the header alone, before the body.
    let err = dec::<ToAgent>(&hex("14000000 54440202")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "a barrier frame is never sent to the agent"
    );
}

/// Frames as version 1 wrote them (its golden bytes): a hello and an input.
const VERSION_1_HELLO: &str = "0d000000 54440101 01 07000000 34120000";
const VERSION_1_INPUT: &str = "30000000 54440102 0500000000000000 01000000
     0500000000000000 00ca9a3b00000000 03000000 02000000 000000000000f83f";

#[test]
fn a_version_1_peer_is_refused_with_what_to_do() {
    assert_eq!(
        dec::<ToAgent>(&hex(VERSION_1_HELLO)),
        Err(WireError::Version { found: 1 })
    );
    assert_eq!(
        dec::<ToInstance>(&hex(VERSION_1_INPUT)),
        Err(WireError::Version { found: 1 })
    );
    // Refused from the header, before the body has arrived.
    assert_eq!(
        dec::<ToAgent>(&hex(VERSION_1_HELLO)[..8]),
        Err(WireError::Version { found: 1 })
    );
    assert_eq!(
        WireError::Version { found: 1 }.to_string(),
        "wire format 1 from the peer; this tandem speaks 2: \
         upgrade the agent and instances together"
    );
}

#[test]
fn batch_encodes_straight_from_a_slice() {
    let records = [Record::new(Seq(1), EventTime(2), ChannelId(3), 4.0); 3];
    let mut a = BytesMut::new();
    encode_batch(BatchKind::Output, Seq(1), &records, &mut a).unwrap();
    let b = enc(&ToAgent::Output {
        frontier: Seq(1),
        records: records.to_vec(),
    });
    assert_eq!(a.to_vec(), b);
    assert_eq!(a.len(), LEN_BYTES + HEADER_BYTES + 12 + 3 * RECORD_BYTES);
    let mut a = BytesMut::new();
    encode_batch(ToInstance::BATCH, Seq(1), &records, &mut a).unwrap();
    let b = enc(&ToInstance::Input {
        frontier: Seq(1),
        records: records.to_vec(),
    });
    assert_eq!(a.to_vec(), b);
}

#[test]
fn over_cap_is_refused_from_the_prefix_alone() {
    // Only the length prefix has arrived: 16 MiB + 1.
    let mut buf = BytesMut::from(&((MAX_FRAME_LEN as u32) + 1).to_le_bytes()[..]);
    assert_eq!(
        decode::<ToAgent>(&mut buf),
        Err(WireError::TooLarge {
            len: MAX_FRAME_LEN + 1,
            max: MAX_FRAME_LEN
        })
    );
    // And nothing was reserved for it.
    assert!(buf.capacity() < 1024);
    let mut buf = BytesMut::from(&hex("ffffffff")[..]);
    assert!(matches!(
        decode::<ToInstance>(&mut buf),
        Err(WireError::TooLarge { .. })
    ));
}

#[test]
fn encode_refuses_messages_over_the_cap() {
    let records = vec![Record::new(Seq(1), EventTime(0), ChannelId(0), 0.0); 10];
    let mut buf = BytesMut::new();
    let err = encode_with_limit(
        &ToInstance::Input {
            frontier: Seq(1),
            records,
        },
        &mut buf,
        64,
    );
    assert_eq!(
        err,
        Err(EncodeError::TooLarge {
            frame_type: "input",
            len: 4 + 12 + 320,
            max: 64
        })
    );
    assert!(buf.is_empty(), "nothing written on error");
}

#[test]
fn header_errors_name_what_is_wrong() {
    assert_eq!(
        dec::<ToAgent>(&hex("02000000 5444")),
        Err(WireError::TooShort { len: 2 })
    );
    assert_eq!(
        dec::<ToAgent>(&hex("05000000 47455481 01")),
        Err(WireError::BadMagic { found: *b"GE" })
    );
    assert_eq!(
        dec::<ToAgent>(&hex("05000000 544403 81 01")),
        Err(WireError::Version { found: 3 })
    );
    assert_eq!(
        dec::<ToAgent>(&hex("05000000 544402ff 01")),
        Err(WireError::UnknownType(0xff))
    );
    assert_eq!(
        dec::<ToInstance>(&hex("05000000 54440200 01")),
        Err(WireError::UnknownType(0))
    );
    // A bad header is refused before the body has arrived.
    assert_eq!(
        dec::<ToInstance>(&hex("00100000 544402ff")),
        Err(WireError::UnknownType(0xff))
    );
}

#[test]
fn body_errors_name_what_is_wrong() {
    // Input claiming 2 records but carrying one.
    let mut bytes = hex(golden_to_instance()[0].1);
    bytes[16] = 2;
    assert_eq!(
        dec::<ToInstance>(&bytes),
        Err(WireError::RecordCountMismatch {
            frame_type: "input",
            declared: 2,
            bytes: 32
        })
    );
    // Count u32::MAX: the multiplication must not overflow or allocate.
    bytes[16..20].copy_from_slice(&[0xff; 4]);
    assert!(matches!(
        dec::<ToInstance>(&bytes),
        Err(WireError::RecordCountMismatch { .. })
    ));
    assert_eq!(
        dec::<ToAgent>(&hex("05000000 54440281 02")),
        Err(WireError::InvalidEnum {
            field: "hello color",
            value: 2,
            expected: "0 (blue) or 1 (green)"
        })
    );
    assert!(matches!(
        dec::<ToInstance>(&hex("05000000 54440206 07")),
        Err(WireError::InvalidEnum {
            field: "set role role",
            value: 7,
            ..
        })
    ));
    assert_eq!(
        dec::<ToInstance>(&hex("08000000 54440203 01020304")),
        Err(WireError::Truncated {
            frame_type: "snapshot request",
            needed: 8,
            available: 4
        })
    );
    assert_eq!(
        dec::<ToInstance>(&hex("06000000 54440206 0000")),
        Err(WireError::TrailingBytes {
            frame_type: "set role",
            extra: 1
        })
    );
    // A heartbeat to the agent without its `processed`: the agent's
    // 16-byte heartbeat sent the wrong way round is not one.
    assert_eq!(
        dec::<ToAgent>(&hex("14000000 54440287 ffffffffffffffff 0300000000000000")),
        Err(WireError::Truncated {
            frame_type: "heartbeat",
            needed: 8,
            available: 0
        })
    );
    // Chunk of 3 bytes at offset 6 of a total of 8.
    let mut bytes = hex(golden_to_agent()[2].1);
    bytes[20] = 6;
    assert_eq!(
        dec::<ToAgent>(&bytes),
        Err(WireError::ChunkOutOfRange {
            offset: 6,
            len: 3,
            total: 8
        })
    );
    // Chunk length 4 with 3 bytes after it.
    let mut bytes = hex(golden_to_instance()[3].1);
    bytes[36] = 4;
    assert_eq!(
        dec::<ToInstance>(&bytes),
        Err(WireError::ChunkLengthMismatch {
            declared: 4,
            bytes: 3
        })
    );
}

fn check_stream<M: Message + PartialEq + Debug>(cases: Vec<(M, &'static str)>) {
    let mut all = Vec::new();
    for (_, text) in &cases {
        all.extend(hex(text));
    }
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for byte in all {
        buf.extend_from_slice(&[byte]);
        while let Some(msg) = decode::<M>(&mut buf).unwrap() {
            out.push(msg);
        }
    }
    assert!(buf.is_empty());
    let want: Vec<M> = cases.into_iter().map(|(m, _)| m).collect();
    assert_eq!(out, want);
}

#[test]
fn need_more_consumes_nothing_then_messages_come_out_in_order() {
    check_stream(golden_to_instance());
    check_stream(golden_to_agent());
}

fn arb_record() -> impl Strategy<Value = Record> + Clone {
    (
        any::<u64>(),
        any::<i64>(),
        any::<u32>(),
        any::<u32>(),
        any::<u64>(),
    )
        .prop_map(|(s, t, c, q, v)| Record {
            seq: Seq(s),
            time: EventTime(t),
            channel: ChannelId(c),
            quality: Quality(q),
            value: f64::from_bits(v),
        })
}

/// `(barrier, vertex, offset, total, bytes)` of a valid chunk.
fn arb_chunk() -> impl Strategy<Value = (u64, u32, u64, u64, Bytes)> {
    (
        any::<u64>(),
        any::<u32>(),
        any::<u64>(),
        any::<u64>(),
        prop::collection::vec(any::<u8>(), 0..200),
    )
        .prop_map(|(barrier, vertex, offset, extra, bytes)| {
            let offset = offset / 2;
            let total = offset + bytes.len() as u64 + extra / 2;
            (barrier, vertex, offset, total, Bytes::from(bytes))
        })
}

fn arb_to_instance() -> impl Strategy<Value = ToInstance> {
    let role = prop_oneof![
        Just(Role::Serving),
        Just(Role::Shadow),
        Just(Role::Starting)
    ];
    prop_oneof![
        (any::<u64>(), prop::collection::vec(arb_record(), 0..40)).prop_map(|(f, records)| {
            ToInstance::Input {
                frontier: Seq(f),
                records,
            }
        }),
        (any::<u64>(), any::<u64>()).prop_map(|(id, at)| ToInstance::Barrier { id, at: Seq(at) }),
        any::<u64>().prop_map(|barrier| ToInstance::SnapshotRequest { barrier }),
        arb_chunk().prop_map(
            |(barrier, vertex, offset, total, bytes)| ToInstance::SnapshotChunk {
                barrier,
                vertex,
                offset,
                total,
                bytes,
            }
        ),
        (any::<u64>(), any::<u32>(), any::<u64>()).prop_map(|(barrier, vertices, state_hash)| {
            ToInstance::SnapshotEnd {
                barrier,
                vertices,
                state_hash,
            }
        }),
        role.prop_map(|role| ToInstance::SetRole { role }),
        (any::<i64>(), any::<u64>())
            .prop_map(|(sent_ns, seq)| ToInstance::Heartbeat { sent_ns, seq }),
    ]
}

fn arb_to_agent() -> impl Strategy<Value = ToAgent> {
    let color = prop_oneof![Just(Color::Blue), Just(Color::Green)];
    prop_oneof![
        (color, any::<u32>(), any::<u32>()).prop_map(|(color, version, pid)| ToAgent::Hello {
            color,
            version,
            pid
        }),
        (any::<u64>(), prop::collection::vec(arb_record(), 0..40)).prop_map(|(f, records)| {
            ToAgent::Output {
                frontier: Seq(f),
                records,
            }
        }),
        arb_chunk().prop_map(
            |(barrier, vertex, offset, total, bytes)| ToAgent::SnapshotChunk {
                barrier,
                vertex,
                offset,
                total,
                bytes,
            }
        ),
        (any::<u64>(), any::<u32>(), any::<u64>()).prop_map(|(barrier, vertices, state_hash)| {
            ToAgent::SnapshotEnd {
                barrier,
                vertices,
                state_hash,
            }
        }),
        (any::<u64>(), any::<u64>()).prop_map(|(barrier, state_hash)| ToAgent::Restored {
            barrier,
            state_hash
        }),
        (any::<u64>(), any::<u64>())
            .prop_map(|(barrier, hash)| ToAgent::StateHash { barrier, hash }),
        (any::<i64>(), any::<u64>(), any::<u64>()).prop_map(|(sent_ns, seq, p)| {
            ToAgent::Heartbeat {
                sent_ns,
                seq,
                processed: Seq(p),
            }
        }),
    ]
}

/// Decodes everything in `bytes` as `M` with cap `max` until an error or
/// lack of bytes; every message that comes out must be within the cap. The
/// stream decoder, fed the bytes in pieces, agrees.
fn decode_all<M: Message + Debug>(bytes: &[u8], max: usize) {
    let mut buf = BytesMut::from(bytes);
    let mut whole = Vec::new();
    let end = loop {
        match decode_with_limit::<M>(&mut buf, max) {
            Ok(Some(msg)) => {
                assert!(msg.encoded_len() <= max, "{msg:?} over cap {max}");
                whole.push(enc(&msg));
            }
            Ok(None) => break Ok(buf.len()),
            Err(e) => break Err(e),
        }
    };
    for piece in [1, 7, 33, 4096] {
        let (pieces, stream_end) = decode_in_pieces::<M>(bytes, max, piece);
        // What comes out is what the whole-buffer decoder gives, in order.
        assert!(pieces.len() <= whole.len());
        assert_eq!(pieces[..], whole[..pieces.len()], "pieces of {piece}");
        // A stream that decodes to its end, or fails, does the same in pieces.
        match &end {
            Ok(0) => assert_eq!(stream_end, Ok(true), "pieces of {piece}"),
            Err(e) if pieces.len() == whole.len() => {
                // The stream decoder may see a bad count before the frame is whole.
                assert!(stream_end.is_err(), "pieces of {piece}: {e}");
            }
            _ => {}
        }
    }
}

/// The messages a [`StreamDecoder`] takes from `bytes` cut in pieces, and
/// whether it ended idle (or its error).
fn decode_in_pieces<M: Message + Debug>(
    bytes: &[u8],
    max: usize,
    piece: usize,
) -> (Vec<Vec<u8>>, Result<bool, WireError>) {
    let mut decoder = StreamDecoder::<M>::new(max);
    let mut out = Vec::new();
    for chunk in bytes.chunks(piece) {
        let mut src = Bytes::copy_from_slice(chunk);
        loop {
            match decoder.decode(&mut src) {
                Ok(Some(msg)) => out.push(enc(&msg)),
                Ok(None) => break,
                Err(e) => return (out, Err(e)),
            }
        }
        assert!(src.is_empty());
    }
    (out, Ok(decoder.is_idle()))
}

/// Decodes `bytes` both ways.
fn decode_both(bytes: &[u8], max: usize) {
    decode_all::<ToInstance>(bytes, max);
    decode_all::<ToAgent>(bytes, max);
}

fn round_trip<M: Message + Debug>(msg: &M) -> Result<(), TestCaseError> {
    let bytes = enc(msg);
    prop_assert_eq!(bytes.len(), LEN_BYTES + msg.encoded_len());
    let mut buf = BytesMut::from(&bytes[..]);
    let back = decode::<M>(&mut buf).unwrap().unwrap();
    prop_assert!(buf.is_empty());
    // Bytes, not PartialEq: NaN values must come back bit for bit.
    prop_assert_eq!(enc(&back), bytes);
    prop_assert_eq!(back.name(), msg.name());
    Ok(())
}

fn prefixes_need_more<M: Message + Debug>(bytes: &[u8]) -> Result<(), TestCaseError> {
    for cut in 0..bytes.len() {
        prop_assert!(
            matches!(dec::<M>(&bytes[..cut]), Ok(None)),
            "cut at {}",
            cut
        );
    }
    Ok(())
}

/// `whole` with one bit flipped, cut short, and cut short before another frame.
fn abuse(whole: &[u8], flip: &prop::sample::Index, bit: u8, cut: &prop::sample::Index) {
    let mut bytes = whole.to_vec();
    bytes[flip.index(whole.len())] ^= 1 << bit;
    let cut = cut.index(whole.len());
    decode_both(&bytes, 2048);
    decode_both(&bytes[..cut], 2048);
    // A truncated frame followed by another frame.
    let mut spliced = bytes[..cut].to_vec();
    spliced.extend_from_slice(whole);
    decode_both(&spliced, 2048);
}

proptest! {
    #[test]
    fn round_trip_to_instance(msg in arb_to_instance()) {
        round_trip(&msg)?;
    }

    #[test]
    fn round_trip_to_agent(msg in arb_to_agent()) {
        round_trip(&msg)?;
    }

    #[test]
    fn every_strict_prefix_needs_more(a in arb_to_agent(), i in arb_to_instance()) {
        prefixes_need_more::<ToAgent>(&enc(&a))?;
        prefixes_need_more::<ToInstance>(&enc(&i))?;
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        decode_both(&bytes, 256);
        decode_both(&bytes, MAX_FRAME_LEN);
    }

    #[test]
    fn arbitrary_bodies_behind_a_valid_header_never_panic(
        ty in any::<u8>(),
        body in prop::collection::vec(any::<u8>(), 0..200),
    ) {
        let mut bytes = ((HEADER_BYTES + body.len()) as u32).to_le_bytes().to_vec();
        bytes.extend_from_slice(&[MAGIC[0], MAGIC[1], VERSION, ty]);
        bytes.extend_from_slice(&body);
        decode_both(&bytes, 256);
    }

    #[test]
    fn bit_flips_and_truncations_never_panic(
        a in arb_to_agent(),
        i in arb_to_instance(),
        flip in any::<prop::sample::Index>(),
        bit in 0u8..8,
        cut in any::<prop::sample::Index>(),
    ) {
        abuse(&enc(&a), &flip, bit, &cut);
        abuse(&enc(&i), &flip, bit, &cut);
    }
}

fn seq_records(seqs: &[u64]) -> Vec<Record> {
    seqs.iter()
        .map(|&s| Record::new(Seq(s), EventTime(s as i64), ChannelId(1), s as f64))
        .collect()
}

fn drain_encoder(e: &mut BatchEncoder) -> Vec<EncodedBatch> {
    core::iter::from_fn(|| e.poll()).collect()
}

#[test]
fn the_batch_encoder_writes_the_same_bytes_as_the_codec() {
    let records = seq_records(&[3, 4, 9]);
    for kind in [BatchKind::Input, BatchKind::Output] {
        let mut e = BatchEncoder::new(kind, 16);
        e.push(&records[..1]);
        e.push(&records[1..]);
        e.finish(Seq(12));
        let frames = drain_encoder(&mut e);
        assert_eq!(frames.len(), 1);
        let mut want = BytesMut::new();
        encode_batch(kind, Seq(12), &records, &mut want).unwrap();
        assert_eq!(frames[0].bytes()[..], want[..]);
        assert_eq!(frames[0].records().collect::<Vec<_>>(), records);
        assert_eq!(
            (frames[0].first(), frames[0].last(), frames[0].len()),
            (Some(Seq(3)), Some(Seq(9)), 3)
        );
    }
    // The golden input frame, through the encoder.
    let (msg, text) = &golden_to_instance()[0];
    let ToInstance::Input { frontier, records } = msg else {
        panic!("the first golden frame is an input");
    };
    let mut e = BatchEncoder::new(BatchKind::Input, 16);
    e.push(records);
    e.finish(*frontier);
    assert_eq!(e.poll().unwrap().bytes()[..], hex(text)[..]);
}

#[test]
fn the_batch_encoder_cuts_full_frames_below_the_next_record() {
    let mut e = BatchEncoder::new(BatchKind::Output, 2);
    // Output may repeat a seq: the cut promises only what the next frame allows.
    e.push(&seq_records(&[1, 2, 2, 5, 6]));
    e.finish(Seq(8));
    let frames = drain_encoder(&mut e);
    let got: Vec<(Seq, usize)> = frames.iter().map(|f| (f.frontier(), f.len())).collect();
    assert_eq!(got, [(Seq(1), 2), (Seq(5), 2), (Seq(8), 1)]);
    for f in &frames {
        let decoded = decode::<ToAgent>(&mut BytesMut::from(&f.bytes()[..])).unwrap();
        assert!(
            matches!(decoded, Some(ToAgent::Output { frontier, .. }) if frontier == f.frontier())
        );
    }
    let mut e = BatchEncoder::new(BatchKind::Input, 2);
    e.push(&seq_records(&[1, 2, 3]));
    e.finish(Seq(3));
    let got: Vec<Seq> = drain_encoder(&mut e).iter().map(|f| f.frontier()).collect();
    assert_eq!(got, [Seq(2), Seq(3)]);
}

/// One piece of input: so many records pushed, then a `finish` this far
/// above the highest seq pushed so far.
type Piece = (usize, u64);

/// The frames of `kind` (at most `max` records each) that `seqs` make,
/// pushed piece by piece (one record at a time when `one_by_one`); and how
/// many records were rejected.
fn encoded(
    kind: BatchKind,
    max: usize,
    seqs: &[u64],
    pieces: &[Piece],
    one_by_one: bool,
) -> (Vec<(Seq, Vec<Record>)>, u64) {
    let records = seq_records(seqs);
    let mut e = BatchEncoder::new(kind, max);
    let mut rest = &records[..];
    let mut highest = 0;
    for &(len, above) in pieces {
        let (taken, after) = rest.split_at(len.min(rest.len()));
        if one_by_one {
            taken.iter().for_each(|r| e.push(core::slice::from_ref(r)));
        } else {
            e.push(taken);
        }
        highest = taken.iter().map(|r| r.seq.0).fold(highest, u64::max);
        e.finish(Seq(highest + above));
        rest = after;
    }
    e.finish(Seq(u64::MAX));
    let frames = drain_encoder(&mut e)
        .iter()
        .map(|f| (f.frontier(), f.records().collect()))
        .collect();
    (frames, e.rejected())
}

/// The seqs an input encoder keeps: each above every seq before it and
/// every frontier given before it.
fn kept_as_input(seqs: &[u64], pieces: &[Piece]) -> Vec<u64> {
    let (mut above, mut highest, mut kept) = (0, 0, Vec::new());
    let mut rest = seqs;
    for &(len, jump) in pieces {
        let (taken, after) = rest.split_at(len.min(rest.len()));
        for &s in taken {
            if s > above {
                kept.push(s);
                above = s;
            }
            highest = highest.max(s);
        }
        above = above.max(highest + jump);
        rest = after;
    }
    kept
}

proptest! {
    #[test]
    fn the_batch_encoder_makes_the_same_frames_however_its_input_is_cut(
        output in any::<bool>(),
        max in 1usize..6,
        seqs in prop::collection::vec(1u64..40, 0..40),
        pieces in prop::collection::vec((0usize..12, 0u64..4), 0..8),
    ) {
        let kind = if output { BatchKind::Output } else { BatchKind::Input };
        let whole = encoded(kind, max, &seqs, &pieces, false);
        let fine = encoded(kind, max, &seqs, &pieces, true);
        prop_assert_eq!(&whole, &fine);
        prop_assert!(whole.0.iter().all(|(_, r)| r.len() <= max));
        let pushed = &seqs[..seqs.len().min(pieces.iter().map(|p| p.0).sum())];
        let kept = if output { pushed.to_vec() } else { kept_as_input(pushed, &pieces) };
        let got: Vec<u64> = whole.0.iter().flat_map(|(_, r)| r.iter().map(|r| r.seq.0)).collect();
        prop_assert_eq!(got, kept.clone());
        prop_assert_eq!(whole.1 as usize, pushed.len() - kept.len());
    }
}

#[test]
fn input_out_of_order_is_dropped_and_counted_and_frontiers_alone_are_sent() {
    let mut e = BatchEncoder::new(BatchKind::Input, 16);
    e.push(&seq_records(&[5, 4, 5, 6]));
    e.finish(Seq(6));
    assert_eq!(e.rejected(), 2);
    e.push(&seq_records(&[6]));
    e.finish(Seq(6));
    assert_eq!(e.rejected(), 3);
    e.finish(Seq(10));
    let frames = drain_encoder(&mut e);
    let got: Vec<(Seq, usize)> = frames.iter().map(|f| (f.frontier(), f.len())).collect();
    assert_eq!(got, [(Seq(6), 2), (Seq(10), 0)]);
}

#[test]
fn the_batch_encoder_takes_a_block_per_many_batches_and_takes_it_back_when_free() {
    // Blocks of 64 KiB, frames of at most 16 records (532 bytes).
    let mut e = BatchEncoder::with_block(BatchKind::Input, 16, 64 << 10);
    let mut seq = 0;
    for _ in 0..100 {
        let batch: Vec<u64> = (seq + 1..=seq + 16).collect();
        seq += 16;
        e.push(&seq_records(&batch));
        e.finish(Seq(seq));
        drop(drain_encoder(&mut e));
    }
    // 100 frames of 532 bytes in 64 KiB blocks, each taken back once its
    // frames are gone: no allocation per batch.
    assert!(e.blocks() <= 2, "{} blocks for 100 batches", e.blocks());
    let mut kept = Vec::new();
    for _ in 0..300 {
        let batch: Vec<u64> = (seq + 1..=seq + 16).collect();
        seq += 16;
        e.push(&seq_records(&batch));
        e.finish(Seq(seq));
        kept.extend(drain_encoder(&mut e));
    }
    // Frames kept alive (a retention ring) hold their blocks: new ones are taken.
    assert!(e.blocks() >= 3);
    assert!(
        e.blocks() <= 6,
        "{} blocks for 300 frames of 532 bytes",
        e.blocks()
    );
}

#[test]
fn the_stream_decoder_reads_batches_from_pieces_and_says_what_is_wrong() {
    let records = seq_records(&(1..=100).collect::<Vec<_>>());
    let mut bytes = BytesMut::new();
    encode_batch(BatchKind::Output, Seq(100), &records, &mut bytes).unwrap();
    encode(
        &ToAgent::StateHash {
            barrier: 1,
            hash: 2,
        },
        &mut bytes,
    )
    .unwrap();
    let (got, end) = decode_in_pieces::<ToAgent>(&bytes, MAX_FRAME_LEN, 5);
    assert_eq!(end, Ok(true));
    assert_eq!(got.len(), 2);
    assert_eq!(got[0][..], bytes[..BATCH_PREFIX + 100 * RECORD_BYTES]);
    // A count that does not match the length is refused as soon as it is read.
    let mut bad = bytes[..BATCH_PREFIX].to_vec();
    bad[16] = 99;
    let (_, end) = decode_in_pieces::<ToAgent>(&bad, MAX_FRAME_LEN, 3);
    assert!(matches!(
        end,
        Err(WireError::RecordCountMismatch { declared: 99, .. })
    ));
    // Mid-frame, it is not idle and says how much it holds.
    let mut decoder = StreamDecoder::<ToAgent>::new(MAX_FRAME_LEN);
    let mut part = Bytes::copy_from_slice(&bytes[..BATCH_PREFIX + 40]);
    assert_eq!(decoder.decode(&mut part), Ok(None));
    assert!(!decoder.is_idle());
    assert_eq!(decoder.buffered(), BATCH_PREFIX + 40);
    // The wrong way is refused from the header.
    let (_, end) = decode_in_pieces::<ToInstance>(&bytes, MAX_FRAME_LEN, 3);
    assert!(matches!(end, Err(WireError::WrongWay { .. })));
}

#[test]
fn the_stream_decoder_fills_a_buffer_given_back() {
    let records = seq_records(&(1..=10).collect::<Vec<_>>());
    let mut bytes = BytesMut::new();
    encode_batch(BatchKind::Input, Seq(10), &records, &mut bytes).unwrap();
    let mut decoder = StreamDecoder::<ToInstance>::new(MAX_FRAME_LEN);
    let mut spare = Vec::with_capacity(64);
    spare.push(records[0]);
    let pointer = spare.as_ptr();
    decoder.give(spare);
    assert!(decoder.has_spare());
    let mut src = bytes.freeze();
    let Some(ToInstance::Input { records: got, .. }) = decoder.decode(&mut src).unwrap() else {
        panic!("an input");
    };
    assert_eq!(got, records, "what the spare held is gone");
    assert_eq!(got.as_ptr(), pointer, "decoded into the buffer given");
    assert!(!decoder.has_spare());
}
