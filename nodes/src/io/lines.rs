//! One record per text line, as the `stdout` and `file` sinks write them.
//!
//! The formats are byte-for-byte deterministic: the same records give the same
//! bytes. Values are written in Rust's shortest round-trip form (`55.25`,
//! `1.0`, `1e-7`), so parsing a line gives back the exact `f64`.
//!
//! - `jsonl`: `{"seq":12,"time_ns":1767225600000000000,"channel":"battery.soc","value":55.25,"quality":"good"}`;
//!   non-finite values are `null`.
//! - `csv`: a header `seq,time_ns,channel,value,quality`, then
//!   `12,1767225600000000000,battery.soc,55.25,good`; non-finite values are
//!   `NaN`, `inf`, `-inf`; a channel name holding `,` `"` or a line break is quoted.
//!
//! Quality is written as [`Quality`]'s `Display`: `good`, or flag names joined
//! by `|` (`out_of_range|stale`).

use std::io::Write as _;
use tandem_core::{ChannelId, ChannelTable, Quality, Record};

/// Names as written in the `format` parameter.
pub const FORMATS: &[&str] = &["jsonl", "csv"];

/// The header line of the `csv` format.
pub const CSV_HEADER: &str = "seq,time_ns,channel,value,quality\n";

/// A line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineFormat {
    /// One JSON object per line.
    Jsonl,
    /// Comma-separated values with a header.
    Csv,
}

impl LineFormat {
    /// Parses a `format` parameter value.
    pub fn parse(name: &str) -> Option<LineFormat> {
        match name {
            "jsonl" => Some(LineFormat::Jsonl),
            "csv" => Some(LineFormat::Csv),
            _ => None,
        }
    }

    /// What starts every file of this format (empty for JSON lines).
    pub fn header(self) -> &'static [u8] {
        match self {
            LineFormat::Jsonl => b"",
            LineFormat::Csv => CSV_HEADER.as_bytes(),
        }
    }
}

/// Formats records as lines, channel names escaped once up front.
#[derive(Clone, Debug)]
pub struct LineFormatter {
    format: LineFormat,
    /// Escaped name of every channel, by id.
    names: Vec<Box<[u8]>>,
    /// Escaped `?`, for an id the table never gave out.
    unknown: Box<[u8]>,
}

impl LineFormatter {
    /// A formatter for the channels of `table`.
    pub fn new(format: LineFormat, table: &ChannelTable) -> LineFormatter {
        let escape = |name: &str| -> Box<[u8]> {
            let mut out = Vec::with_capacity(name.len() + 2);
            match format {
                LineFormat::Jsonl => json_string(name, &mut out),
                LineFormat::Csv => csv_field(name, &mut out),
            }
            out.into_boxed_slice()
        };
        let names = (0..table.len())
            .map(|i| escape(table.name(ChannelId(u32::try_from(i).unwrap_or(u32::MAX)))))
            .collect();
        LineFormatter {
            format,
            names,
            unknown: escape("?"),
        }
    }

    /// The format.
    pub fn format(&self) -> LineFormat {
        self.format
    }

    /// Appends `record` as one line, with its `\n`, to `buf`.
    pub fn line(&self, record: &Record, buf: &mut Vec<u8>) {
        let name = self
            .names
            .get(record.channel.index())
            .unwrap_or(&self.unknown);
        // Writing to a Vec cannot fail.
        match self.format {
            LineFormat::Jsonl => {
                let _ = write!(
                    buf,
                    "{{\"seq\":{},\"time_ns\":{},\"channel\":",
                    record.seq.0, record.time.0
                );
                buf.extend_from_slice(name);
                buf.extend_from_slice(b",\"value\":");
                if record.value.is_finite() {
                    let _ = write!(buf, "{:?}", record.value);
                } else {
                    buf.extend_from_slice(b"null");
                }
                buf.extend_from_slice(b",\"quality\":\"");
                quality(record.quality, buf);
                buf.extend_from_slice(b"\"}\n");
            }
            LineFormat::Csv => {
                let _ = write!(buf, "{},{},", record.seq.0, record.time.0);
                buf.extend_from_slice(name);
                let _ = write!(buf, ",{:?},", record.value);
                quality(record.quality, buf);
                buf.push(b'\n');
            }
        }
    }
}

fn quality(q: Quality, buf: &mut Vec<u8>) {
    if q.is_good() {
        buf.extend_from_slice(b"good");
    } else {
        // Flag names hold neither quotes nor commas.
        let _ = write!(buf, "{q}");
    }
}

/// `s` as a JSON string literal.
fn json_string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let mut utf8 = [0; 4];
                out.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
            }
        }
    }
    out.push(b'"');
}

/// `s` as a CSV field, quoted only when it must be.
fn csv_field(s: &str, out: &mut Vec<u8>) {
    if s.contains([',', '"', '\n', '\r']) {
        out.push(b'"');
        for b in s.bytes() {
            if b == b'"' {
                out.push(b'"');
            }
            out.push(b);
        }
        out.push(b'"');
    } else {
        out.extend_from_slice(s.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use tandem_core::{EventTime, Seq};

    fn table() -> ChannelTable {
        let mut t = ChannelTable::new();
        t.intern("battery.soc", "%");
        t.intern("odd \"name\",x", "");
        t
    }

    fn lines(format: LineFormat, records: &[Record]) -> String {
        let f = LineFormatter::new(format, &table());
        let mut buf = Vec::new();
        for r in records {
            f.line(r, &mut buf);
        }
        String::from_utf8(buf).unwrap()
    }

    const T: EventTime = EventTime(1_767_225_600_000_000_000);

    #[test]
    fn jsonl_lines_are_exact() {
        let records = [
            Record::new(Seq(12), T, ChannelId(0), 55.25),
            Record::new(Seq(13), T.add_nanos(250), ChannelId(0), 1.0)
                .flagged(Quality::OUT_OF_RANGE | Quality::STALE),
            Record::new(Seq(14), T, ChannelId(1), f64::NAN),
            Record::new(Seq(15), T, ChannelId(7), -1e-7),
        ];
        assert_eq!(
            lines(LineFormat::Jsonl, &records),
            concat!(
                "{\"seq\":12,\"time_ns\":1767225600000000000,\"channel\":\"battery.soc\",\"value\":55.25,\"quality\":\"good\"}\n",
                "{\"seq\":13,\"time_ns\":1767225600000000250,\"channel\":\"battery.soc\",\"value\":1.0,\"quality\":\"out_of_range|stale\"}\n",
                "{\"seq\":14,\"time_ns\":1767225600000000000,\"channel\":\"odd \\\"name\\\",x\",\"value\":null,\"quality\":\"good\"}\n",
                "{\"seq\":15,\"time_ns\":1767225600000000000,\"channel\":\"?\",\"value\":-1e-7,\"quality\":\"good\"}\n",
            )
        );
    }

    #[test]
    fn csv_lines_are_exact() {
        let records = [
            Record::new(Seq(12), T, ChannelId(0), 55.25),
            Record::new(Seq(13), T, ChannelId(1), f64::NEG_INFINITY).flagged(Quality::COMM_ERROR),
            Record::new(Seq(14), T, ChannelId(0), 0.1),
        ];
        assert_eq!(
            lines(LineFormat::Csv, &records),
            concat!(
                "12,1767225600000000000,battery.soc,55.25,good\n",
                "13,1767225600000000000,\"odd \"\"name\"\",x\",-inf,comm_error\n",
                "14,1767225600000000000,battery.soc,0.1,good\n",
            )
        );
        assert_eq!(LineFormat::Csv.header(), CSV_HEADER.as_bytes());
    }

    #[test]
    fn values_round_trip_through_text() {
        let f = LineFormatter::new(LineFormat::Csv, &table());
        for v in [0.1 + 0.2, 1e300, -0.0, 5e-324, 123_456_789.123_456_78] {
            let mut buf = Vec::new();
            f.line(&Record::new(Seq(1), T, ChannelId(0), v), &mut buf);
            let text = String::from_utf8(buf).unwrap();
            let field = text.trim_end().split(',').nth(3).unwrap();
            assert_eq!(
                field.parse::<f64>().unwrap().to_bits(),
                v.to_bits(),
                "{field}"
            );
        }
    }
}
