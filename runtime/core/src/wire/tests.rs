#![allow(clippy::unwrap_used)]

use super::*;
use proptest::prelude::*;

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn enc(frame: &Frame) -> Vec<u8> {
    let mut buf = BytesMut::new();
    encode(frame, &mut buf).unwrap();
    buf.to_vec()
}

fn dec_one(bytes: &[u8]) -> Result<Option<Frame>, FrameError> {
    decode(&mut BytesMut::from(bytes))
}

/// One frame of each type and its bytes, written out by hand from the layout
/// in the module docs. If this test fails the wire format changed: bump
/// `VERSION` and keep a decoder for the old one.
fn golden() -> Vec<(Frame, &'static str)> {
    vec![
        (
            Frame::Hello {
                color: Color::Green,
                version: 7,
                pid: 0x1234,
            },
            "0d000000 54440101 01 07000000 34120000",
        ),
        (
            Frame::Input {
                frontier: Seq(5),
                records: vec![Record {
                    seq: Seq(5),
                    time: EventTime(1_000_000_000),
                    channel: ChannelId(3),
                    quality: Quality::COMM_ERROR,
                    value: 1.5,
                }],
            },
            "30000000 54440102 0500000000000000 01000000
             0500000000000000 00ca9a3b00000000 03000000 02000000 000000000000f83f",
        ),
        (
            Frame::Output {
                frontier: Seq(9),
                records: vec![],
            },
            "10000000 54440103 0900000000000000 00000000",
        ),
        (
            Frame::Barrier {
                id: 2,
                at: Seq(100),
            },
            "14000000 54440104 0200000000000000 6400000000000000",
        ),
        (
            Frame::SnapshotRequest { barrier: 2 },
            "0c000000 54440105 0200000000000000",
        ),
        (
            Frame::SnapshotChunk {
                barrier: 2,
                vertex: 1,
                offset: 4,
                total: 8,
                bytes: Bytes::from_static(&[0xaa, 0xbb, 0xcc]),
            },
            "27000000 54440106 0200000000000000 01000000 0400000000000000 0800000000000000
             03000000 aabbcc",
        ),
        (
            Frame::SnapshotEnd {
                barrier: 2,
                vertices: 3,
                state_hash: 0x0102_0304_0506_0708,
            },
            "18000000 54440107 0200000000000000 03000000 0807060504030201",
        ),
        (
            Frame::Restored {
                barrier: 2,
                state_hash: 0xdead_beef,
            },
            "14000000 54440108 0200000000000000 efbeadde00000000",
        ),
        (
            Frame::StateHash {
                barrier: 2,
                hash: 1,
            },
            "14000000 54440109 0200000000000000 0100000000000000",
        ),
        (
            Frame::SetRole {
                role: WireRole::Shadow,
            },
            "05000000 5444010a 01",
        ),
        (
            Frame::Heartbeat {
                sent_ns: -1,
                seq: 3,
                processed: Seq(100),
            },
            "1c000000 5444010b ffffffffffffffff 0300000000000000 6400000000000000",
        ),
    ]
}

#[test]
fn golden_bytes_of_every_frame_type() {
    let cases = golden();
    assert_eq!(cases.len(), 11, "one case per frame type");
    for (frame, text) in cases {
        let bytes = hex(text);
        assert_eq!(enc(&frame), bytes, "encoding of {:?}", frame.frame_type());
        assert_eq!(dec_one(&bytes).unwrap(), Some(frame));
    }
}

#[test]
fn batch_encodes_straight_from_a_slice() {
    let records = [Record::new(Seq(1), EventTime(2), ChannelId(3), 4.0); 3];
    let mut a = BytesMut::new();
    encode_batch(BatchKind::Output, Seq(1), &records, &mut a).unwrap();
    let b = enc(&Frame::Output {
        frontier: Seq(1),
        records: records.to_vec(),
    });
    assert_eq!(a.to_vec(), b);
    assert_eq!(a.len(), LEN_BYTES + HEADER_BYTES + 12 + 3 * RECORD_BYTES);
}

#[test]
fn over_cap_is_refused_from_the_prefix_alone() {
    // Only the length prefix has arrived: 16 MiB + 1.
    let mut buf = BytesMut::from(&((MAX_FRAME_LEN as u32) + 1).to_le_bytes()[..]);
    assert_eq!(
        decode(&mut buf),
        Err(FrameError::TooLarge {
            len: MAX_FRAME_LEN + 1,
            max: MAX_FRAME_LEN
        })
    );
    // And nothing was reserved for it.
    assert!(buf.capacity() < 1024);
    let mut buf = BytesMut::from(&hex("ffffffff")[..]);
    assert!(matches!(decode(&mut buf), Err(FrameError::TooLarge { .. })));
}

#[test]
fn encode_refuses_frames_over_the_cap() {
    let records = vec![Record::new(Seq(1), EventTime(0), ChannelId(0), 0.0); 10];
    let mut buf = BytesMut::new();
    let err = encode_with_limit(
        &Frame::Input {
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
        dec_one(&hex("02000000 5444")),
        Err(FrameError::TooShort { len: 2 })
    );
    assert_eq!(
        dec_one(&hex("05000000 47455401 01")),
        Err(FrameError::BadMagic { found: *b"GE" })
    );
    assert_eq!(
        dec_one(&hex("05000000 54440201 01")),
        Err(FrameError::UnsupportedVersion { found: 2 })
    );
    assert_eq!(
        dec_one(&hex("05000000 544401ff 01")),
        Err(FrameError::UnknownType(0xff))
    );
    // A bad header is refused before the body has arrived.
    assert_eq!(
        dec_one(&hex("00100000 544401ff")),
        Err(FrameError::UnknownType(0xff))
    );
    let msg = FrameError::UnsupportedVersion { found: 2 }.to_string();
    assert!(
        msg.contains("version 2") && msg.contains("version 1"),
        "{msg}"
    );
}

#[test]
fn body_errors_name_what_is_wrong() {
    // Input claiming 2 records but carrying one.
    let mut bytes = hex(golden()[1].1);
    bytes[16] = 2;
    assert_eq!(
        dec_one(&bytes),
        Err(FrameError::RecordCountMismatch {
            frame_type: "input",
            declared: 2,
            bytes: 32
        })
    );
    // Count u32::MAX: the multiplication must not overflow or allocate.
    let mut bytes = hex(golden()[1].1);
    bytes[16..20].copy_from_slice(&[0xff; 4]);
    assert!(matches!(
        dec_one(&bytes),
        Err(FrameError::RecordCountMismatch { .. })
    ));
    assert_eq!(
        dec_one(&hex("05000000 54440101 02")),
        Err(FrameError::InvalidEnum {
            field: "hello color",
            value: 2,
            expected: "0 (blue) or 1 (green)"
        })
    );
    assert!(matches!(
        dec_one(&hex("05000000 5444010a 07")),
        Err(FrameError::InvalidEnum {
            field: "set role role",
            value: 7,
            ..
        })
    ));
    assert_eq!(
        dec_one(&hex("08000000 54440105 01020304")),
        Err(FrameError::Truncated {
            frame_type: "snapshot request",
            needed: 8,
            available: 4
        })
    );
    assert_eq!(
        dec_one(&hex("06000000 5444010a 0000")),
        Err(FrameError::TrailingBytes {
            frame_type: "set role",
            extra: 1
        })
    );
    // Chunk of 3 bytes at offset 6 of a total of 8.
    let mut bytes = hex(golden()[5].1);
    bytes[20] = 6;
    assert_eq!(
        dec_one(&bytes),
        Err(FrameError::ChunkOutOfRange {
            offset: 6,
            len: 3,
            total: 8
        })
    );
    // Chunk length 4 with 3 bytes after it.
    let mut bytes = hex(golden()[5].1);
    bytes[36] = 4;
    assert_eq!(
        dec_one(&bytes),
        Err(FrameError::ChunkLengthMismatch {
            declared: 4,
            bytes: 3
        })
    );
}

#[test]
fn need_more_consumes_nothing_then_frames_come_out_in_order() {
    let mut all = Vec::new();
    for (_, text) in golden() {
        all.extend(hex(text));
    }
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for byte in all {
        buf.extend_from_slice(&[byte]);
        while let Some(frame) = decode(&mut buf).unwrap() {
            out.push(frame);
        }
    }
    assert!(buf.is_empty());
    let want: Vec<Frame> = golden().into_iter().map(|(f, _)| f).collect();
    assert_eq!(out, want);
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

fn arb_frame() -> impl Strategy<Value = Frame> {
    let color = prop_oneof![Just(Color::Blue), Just(Color::Green)];
    let role = prop_oneof![Just(WireRole::Serving), Just(WireRole::Shadow)];
    let records = prop::collection::vec(arb_record(), 0..40);
    prop_oneof![
        (color, any::<u32>(), any::<u32>()).prop_map(|(color, version, pid)| Frame::Hello {
            color,
            version,
            pid
        }),
        (any::<u64>(), records.clone()).prop_map(|(f, records)| Frame::Input {
            frontier: Seq(f),
            records
        }),
        (any::<u64>(), records).prop_map(|(f, records)| Frame::Output {
            frontier: Seq(f),
            records
        }),
        (any::<u64>(), any::<u64>()).prop_map(|(id, at)| Frame::Barrier { id, at: Seq(at) }),
        any::<u64>().prop_map(|barrier| Frame::SnapshotRequest { barrier }),
        (
            any::<u64>(),
            any::<u32>(),
            any::<u64>(),
            any::<u64>(),
            prop::collection::vec(any::<u8>(), 0..200)
        )
            .prop_map(|(barrier, vertex, offset, extra, bytes)| {
                let offset = offset / 2;
                let total = offset + bytes.len() as u64 + extra / 2;
                Frame::SnapshotChunk {
                    barrier,
                    vertex,
                    offset,
                    total,
                    bytes: Bytes::from(bytes),
                }
            }),
        (any::<u64>(), any::<u32>(), any::<u64>()).prop_map(|(barrier, vertices, state_hash)| {
            Frame::SnapshotEnd {
                barrier,
                vertices,
                state_hash,
            }
        }),
        (any::<u64>(), any::<u64>()).prop_map(|(barrier, state_hash)| Frame::Restored {
            barrier,
            state_hash
        }),
        (any::<u64>(), any::<u64>()).prop_map(|(barrier, hash)| Frame::StateHash { barrier, hash }),
        role.prop_map(|role| Frame::SetRole { role }),
        (any::<i64>(), any::<u64>(), any::<u64>()).prop_map(|(sent_ns, seq, p)| {
            Frame::Heartbeat {
                sent_ns,
                seq,
                processed: Seq(p),
            }
        }),
    ]
}

/// Decodes everything in `bytes` with cap `max` until an error or lack of bytes;
/// every frame that comes out must be within the cap.
fn decode_all(bytes: &[u8], max: usize) {
    let mut buf = BytesMut::from(bytes);
    while let Ok(Some(frame)) = decode_with_limit(&mut buf, max) {
        assert!(frame.encoded_len() <= max, "{frame:?} over cap {max}");
    }
}

proptest! {
    #[test]
    fn round_trip(frame in arb_frame()) {
        let bytes = enc(&frame);
        prop_assert_eq!(bytes.len(), LEN_BYTES + frame.encoded_len());
        let mut buf = BytesMut::from(&bytes[..]);
        let back = decode(&mut buf).unwrap().unwrap();
        prop_assert!(buf.is_empty());
        // Bytes, not PartialEq: NaN values must come back bit for bit.
        prop_assert_eq!(enc(&back), bytes);
        prop_assert_eq!(back.frame_type(), frame.frame_type());
    }

    #[test]
    fn every_strict_prefix_needs_more(frame in arb_frame()) {
        let bytes = enc(&frame);
        for cut in 0..bytes.len() {
            prop_assert_eq!(dec_one(&bytes[..cut]), Ok(None), "cut at {}", cut);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        decode_all(&bytes, 256);
        decode_all(&bytes, MAX_FRAME_LEN);
    }

    #[test]
    fn arbitrary_bodies_behind_a_valid_header_never_panic(
        ty in 0u8..13,
        body in prop::collection::vec(any::<u8>(), 0..200),
    ) {
        let mut bytes = ((HEADER_BYTES + body.len()) as u32).to_le_bytes().to_vec();
        bytes.extend_from_slice(&[MAGIC[0], MAGIC[1], VERSION, ty]);
        bytes.extend_from_slice(&body);
        decode_all(&bytes, 256);
    }

    #[test]
    fn bit_flips_and_truncations_never_panic(
        frame in arb_frame(),
        flip in any::<prop::sample::Index>(),
        bit in 0u8..8,
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = enc(&frame);
        let i = flip.index(bytes.len());
        bytes[i] ^= 1 << bit;
        decode_all(&bytes, 2048);
        let c = cut.index(bytes.len());
        decode_all(&bytes[..c], 2048);
        // A truncated frame followed by another frame.
        let mut spliced = bytes[..c].to_vec();
        spliced.extend(enc(&frame));
        decode_all(&spliced, 2048);
    }
}
