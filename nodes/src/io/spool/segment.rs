//! The segment file format: a header naming the segment's first index and
//! its channels, then one entry per record, each with its length and
//! checksum.
//!
//! A segment is named after the spool index of its first entry,
//! `{first:020}.seg`, so the files sort in spool order and the reader finds
//! the next segment from the index it has reached. All integers are
//! little-endian.
//!
//! Header ([`Header::encode`]):
//!
//! | bytes | field |
//! |---|---|
//! | 4 | magic `TDSG` |
//! | 2 | format version ([`FORMAT_VERSION`]) |
//! | 2 | reserved, zero |
//! | 8 | spool index of the first entry |
//! | 4 | number of channel names, at most [`MAX_CHANNELS`] |
//! | per name: 2 + n | length, then the name's UTF-8 bytes (at most [`MAX_NAME`]) |
//! | 4 | CRC-32 (IEEE) of every header byte before it |
//!
//! Entry ([`encode_entry`]):
//!
//! | bytes | field |
//! |---|---|
//! | 4 | payload length ([`PAYLOAD_LEN`]) |
//! | 4 | CRC-32 (IEEE) of the payload |
//! | 8 | origin sequence number |
//! | 8 | event time, ns since the Unix epoch |
//! | 8 | value, IEEE 754 bits |
//! | 4 | quality flags |
//! | 4 | channel: an index into the header's names |
//! | 4 | ordinal: how many records of this channel and sequence number came before it |
//!
//! A crash can only cut the newest segment short (entries are appended), so
//! a segment that ends in a partial or bad entry is cut back to its last
//! good entry when the spool opens ([`scan`] reports it as
//! [`Scan::torn`]); a bad entry with good data after it is damage, and the
//! segment is set aside.

use std::io::{self, Read};
use tandem_core::{EventTime, Quality, Seq};

/// The first four bytes of a segment.
pub const MAGIC: [u8; 4] = *b"TDSG";
/// The segment format this build writes and reads.
pub const FORMAT_VERSION: u16 = 1;
/// Bytes of an entry's payload.
pub const PAYLOAD_LEN: usize = 36;
/// Bytes of an entry: length, checksum, payload.
pub const ENTRY_LEN: usize = 8 + PAYLOAD_LEN;
/// Most channel names a header holds.
pub const MAX_CHANNELS: usize = 65_536;
/// Longest channel name a header holds, in bytes.
pub const MAX_NAME: usize = 1024;
/// The suffix of a segment's file name.
pub const SUFFIX: &str = ".seg";

/// Position of an entry in the spool: every entry ever appended has its own,
/// in append order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SpoolIndex(pub u64);

impl SpoolIndex {
    /// `n` entries later.
    #[must_use]
    pub fn plus(self, n: u64) -> SpoolIndex {
        SpoolIndex(self.0.saturating_add(n))
    }
}

/// The file name of the segment whose first entry is `first`.
pub fn file_name(first: SpoolIndex) -> String {
    format!("{:020}{SUFFIX}", first.0)
}

/// The first index named by a segment's file name, or `None` for any other name.
pub fn parse_name(name: &str) -> Option<SpoolIndex> {
    let digits = name.strip_suffix(SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().map(SpoolIndex)
}

/// A record as a segment holds it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Entry {
    /// Origin sequence number.
    pub seq: Seq,
    /// Event time.
    pub time: EventTime,
    /// The value.
    pub value: f64,
    /// Quality flags.
    pub quality: Quality,
    /// Index into the segment's channel names.
    pub channel: u32,
    /// Records of the same channel and sequence number before this one.
    pub ordinal: u32,
}

/// Appends `entry`, framed, to `out`.
pub fn encode_entry(entry: &Entry, out: &mut Vec<u8>) {
    let mut payload = [0u8; PAYLOAD_LEN];
    payload[0..8].copy_from_slice(&entry.seq.0.to_le_bytes());
    payload[8..16].copy_from_slice(&entry.time.0.to_le_bytes());
    payload[16..24].copy_from_slice(&entry.value.to_bits().to_le_bytes());
    payload[24..28].copy_from_slice(&entry.quality.0.to_le_bytes());
    payload[28..32].copy_from_slice(&entry.channel.to_le_bytes());
    payload[32..36].copy_from_slice(&entry.ordinal.to_le_bytes());
    out.extend_from_slice(&(PAYLOAD_LEN as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
}

/// Why bytes are not a good entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryError {
    /// The length field is not [`PAYLOAD_LEN`].
    Length(u32),
    /// The checksum does not match the payload.
    Checksum,
}

/// Decodes one framed entry of [`ENTRY_LEN`] bytes.
pub fn decode_entry(bytes: &[u8; ENTRY_LEN]) -> Result<Entry, EntryError> {
    let u32_at =
        |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
    let u64_at = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&bytes[i..i + 8]);
        u64::from_le_bytes(b)
    };
    let len = u32_at(0);
    if len as usize != PAYLOAD_LEN {
        return Err(EntryError::Length(len));
    }
    if crc32fast::hash(&bytes[8..]) != u32_at(4) {
        return Err(EntryError::Checksum);
    }
    Ok(Entry {
        seq: Seq(u64_at(8)),
        time: EventTime(u64_at(16) as i64),
        value: f64::from_bits(u64_at(24)),
        quality: Quality(u32_at(32)),
        channel: u32_at(36),
        ordinal: u32_at(40),
    })
}

/// A segment's header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// Spool index of the first entry.
    pub first: SpoolIndex,
    /// Channel names; entries refer to them by position.
    pub channels: Vec<String>,
}

/// Why a header cannot be read.
#[derive(Debug, PartialEq, Eq)]
pub enum HeaderError {
    /// The file ends inside the header: a segment whose creation was cut short.
    Short,
    /// Not a segment, a newer format, or damaged.
    Bad(String),
}

impl Header {
    /// The header's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(24 + self.channels.iter().map(|c| c.len() + 2).sum::<usize>());
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&self.first.0.to_le_bytes());
        let count = self.channels.len().min(MAX_CHANNELS);
        out.extend_from_slice(&(count as u32).to_le_bytes());
        for name in self.channels.iter().take(count) {
            // Names longer than a header holds are cut at a character boundary.
            let mut end = name.len().min(MAX_NAME);
            while !name.is_char_boundary(end) {
                end -= 1;
            }
            out.extend_from_slice(&(end as u16).to_le_bytes());
            out.extend_from_slice(&name.as_bytes()[..end]);
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Reads a header from the start of `input`. Returns it and its length in bytes.
    pub fn read(input: &mut impl Read) -> Result<(Header, u64), HeaderError> {
        let mut bytes = Vec::with_capacity(64);
        let mut fixed = [0u8; 20];
        read_full(input, &mut fixed)?;
        bytes.extend_from_slice(&fixed);
        if fixed[0..4] != MAGIC {
            return Err(HeaderError::Bad("it does not start with `TDSG`".into()));
        }
        let version = u16::from_le_bytes([fixed[4], fixed[5]]);
        if version != FORMAT_VERSION {
            return Err(HeaderError::Bad(format!(
                "it has segment format {version}, but this tandem reads format {FORMAT_VERSION}: a newer tandem wrote it"
            )));
        }
        let mut first = [0u8; 8];
        first.copy_from_slice(&fixed[8..16]);
        let first = SpoolIndex(u64::from_le_bytes(first));
        let count = u32::from_le_bytes([fixed[16], fixed[17], fixed[18], fixed[19]]) as usize;
        if count > MAX_CHANNELS {
            return Err(HeaderError::Bad(format!(
                "its header lists {count} channels, more than {MAX_CHANNELS}"
            )));
        }
        let mut channels = Vec::with_capacity(count.min(1024));
        for _ in 0..count {
            let mut len = [0u8; 2];
            read_full(input, &mut len)?;
            bytes.extend_from_slice(&len);
            let len = u16::from_le_bytes(len) as usize;
            if len > MAX_NAME {
                return Err(HeaderError::Bad(format!(
                    "its header has a channel name of {len} bytes, more than {MAX_NAME}"
                )));
            }
            let mut name = vec![0u8; len];
            read_full(input, &mut name)?;
            bytes.extend_from_slice(&name);
            channels.push(name);
        }
        let mut crc = [0u8; 4];
        read_full(input, &mut crc)?;
        if crc32fast::hash(&bytes) != u32::from_le_bytes(crc) {
            return Err(HeaderError::Bad(
                "its header's checksum does not match".into(),
            ));
        }
        let channels = channels
            .into_iter()
            .map(|n| {
                String::from_utf8(n)
                    .map_err(|_| HeaderError::Bad("a channel name is not UTF-8".into()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok((Header { first, channels }, bytes.len() as u64 + 4))
    }
}

fn read_full(input: &mut impl Read, buf: &mut [u8]) -> Result<(), HeaderError> {
    input.read_exact(buf).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => HeaderError::Short,
        _ => HeaderError::Bad(format!("it cannot be read: {e}")),
    })
}

/// What a full read of a segment found.
#[derive(Debug, PartialEq, Eq)]
pub struct Scan {
    /// The header, when it could be read.
    pub header: Header,
    /// Good entries from the start.
    pub entries: u64,
    /// Bytes of the header and the good entries: where a cut would go.
    pub good_len: u64,
    /// Bytes after the good entries that a crash left: a partial entry, or
    /// a bad one with nothing good after it.
    pub torn: u64,
}

/// Why a segment cannot be used.
#[derive(Debug, PartialEq, Eq)]
pub enum ScanError {
    /// The file ends inside its header: its creation was cut short, it holds nothing.
    ShortHeader,
    /// Damage: the header is bad, or a bad entry has good ones after it.
    Corrupt(String),
}

/// Reads a whole segment of `len` bytes, checking every entry.
pub fn scan(input: &mut impl Read, len: u64) -> Result<Scan, ScanError> {
    let (header, header_len) = Header::read(input).map_err(|e| match e {
        HeaderError::Short => ScanError::ShortHeader,
        HeaderError::Bad(why) => ScanError::Corrupt(why),
    })?;
    let mut entries = 0u64;
    let mut pos = header_len;
    let mut buf = [0u8; ENTRY_LEN];
    let mut input = io::BufReader::with_capacity(64 * 1024, input);
    while pos + ENTRY_LEN as u64 <= len {
        input
            .read_exact(&mut buf)
            .map_err(|e| ScanError::Corrupt(format!("it cannot be read: {e}")))?;
        match decode_entry(&buf) {
            Ok(_) => {
                entries += 1;
                pos += ENTRY_LEN as u64;
            }
            Err(e) => {
                // A torn append leaves garbage only at the end: if any whole
                // good entry follows, this is damage, not a crash.
                let mut rest = pos + ENTRY_LEN as u64;
                while rest + ENTRY_LEN as u64 <= len {
                    if input.read_exact(&mut buf).is_err() {
                        break;
                    }
                    if decode_entry(&buf).is_ok() {
                        return Err(ScanError::Corrupt(format!(
                            "entry {} (byte {pos}) is bad ({e:?}) and good entries follow it",
                            header.first.0.saturating_add(entries)
                        )));
                    }
                    rest += ENTRY_LEN as u64;
                }
                break;
            }
        }
    }
    Ok(Scan {
        header,
        entries,
        good_len: pos,
        torn: len.saturating_sub(pos),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn entry(i: u64) -> Entry {
        Entry {
            seq: Seq(100 + i),
            time: EventTime(1_767_225_600_000_000_000 + i as i64),
            value: i as f64 * 0.25,
            quality: Quality(i as u32 % 3),
            channel: (i % 2) as u32,
            ordinal: 0,
        }
    }

    fn segment(n: u64) -> Vec<u8> {
        let mut bytes = Header {
            first: SpoolIndex(7),
            channels: vec!["battery.soc".into(), "pv.power".into()],
        }
        .encode();
        for i in 0..n {
            encode_entry(&entry(i), &mut bytes);
        }
        bytes
    }

    #[test]
    fn an_entry_is_44_bytes_little_endian_and_round_trips() {
        let mut out = Vec::new();
        encode_entry(&entry(3), &mut out);
        assert_eq!(out.len(), ENTRY_LEN);
        assert_eq!(&out[0..4], &[36, 0, 0, 0]);
        assert_eq!(&out[8..16], &103u64.to_le_bytes());
        let bytes: [u8; ENTRY_LEN] = out.try_into().unwrap();
        assert_eq!(decode_entry(&bytes), Ok(entry(3)));
    }

    #[test]
    fn a_header_round_trips_and_names_the_first_index() {
        let bytes = segment(0);
        let (header, len) = Header::read(&mut &bytes[..]).unwrap();
        assert_eq!(len, bytes.len() as u64);
        assert_eq!(header.first, SpoolIndex(7));
        assert_eq!(header.channels, ["battery.soc", "pv.power"]);
        assert_eq!(file_name(SpoolIndex(7)), "00000000000000000007.seg");
        assert_eq!(parse_name("00000000000000000007.seg"), Some(SpoolIndex(7)));
        assert_eq!(parse_name("7.seg"), None);
        assert_eq!(parse_name("00000000000000000007.seg.corrupt"), None);
    }

    #[test]
    fn every_cut_of_the_tail_is_torn_never_corrupt() {
        let whole = segment(5);
        let header_len = segment(0).len();
        for cut in 0..=whole.len() {
            let bytes = &whole[..cut];
            match scan(&mut &bytes[..], cut as u64) {
                Ok(s) => {
                    let entries = (cut - header_len) / ENTRY_LEN;
                    assert_eq!(s.entries, entries as u64, "cut {cut}");
                    assert_eq!(s.good_len as usize, header_len + entries * ENTRY_LEN);
                    assert_eq!(s.torn as usize, cut - s.good_len as usize);
                }
                Err(e) => {
                    assert!(cut < header_len, "cut {cut}: {e:?}");
                    assert_eq!(e, ScanError::ShortHeader);
                }
            }
        }
    }

    #[test]
    fn a_zeroed_tail_is_torn_and_a_flipped_bit_before_good_entries_is_corrupt() {
        let mut zeroed = segment(5);
        let n = zeroed.len();
        zeroed[n - 2 * ENTRY_LEN..].fill(0);
        let s = scan(&mut &zeroed[..], n as u64).unwrap();
        assert_eq!((s.entries, s.torn), (3, 2 * ENTRY_LEN as u64));

        let mut flipped = segment(5);
        let header_len = segment(0).len();
        flipped[header_len + ENTRY_LEN + 20] ^= 4;
        let e = scan(&mut &flipped[..], n as u64).unwrap_err();
        assert!(
            matches!(e, ScanError::Corrupt(ref why) if why.contains("entry 8")),
            "{e:?}"
        );

        let mut header = segment(1);
        header[10] ^= 1;
        assert!(matches!(
            scan(&mut &header[..], header.len() as u64),
            Err(ScanError::Corrupt(_))
        ));
    }
}
