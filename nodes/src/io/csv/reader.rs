//! Reading a replay file row by row through a buffer of fixed size, so that
//! memory does not depend on the size of the file.
//!
//! The buffer holds the unread part of the file: whole lines are parsed in
//! place, and the one line a read cut in two is moved to the front before the
//! next read. A line longer than the buffer is refused by number and skipped;
//! the buffer never grows.

use super::scan;
use super::{parse_quality, parse_time};
use std::io::{ErrorKind, Read};
use tandem_core::{ChannelId, EventTime, Quality, Record, Seq};

/// Bytes the reader of a replay holds: the longest line a replay file may have.
pub const BUFFER: usize = 64 * 1024;

/// Most columns a header may name (time, channel, value, quality, seq).
const MAX_COLUMNS: usize = 5;

/// Valid column names, for messages.
const VALID_COLUMNS: &str =
    "valid columns are time (or time_ns), channel, value, quality and seq (ignored)";

/// A row could not be read.
#[derive(Debug)]
pub enum ReadError {
    /// Line `line` is not a valid row (or header): `what` says what is wrong
    /// and what would be valid. The reader has moved past it; the next call
    /// reads the line after.
    Row {
        /// 1-based line number in the file.
        line: usize,
        /// What is wrong, and what is valid.
        what: String,
    },
    /// The file could not be read after line `line`. Nothing more is read.
    Io {
        /// The last line read whole.
        line: usize,
        /// What the operating system said.
        error: std::io::Error,
    },
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Row { line, what } => write!(f, "{line}: {what}"),
            ReadError::Io { line, error } => write!(f, "{line}: cannot read further: {error}"),
        }
    }
}

/// Column positions from the header.
#[derive(Debug)]
struct Columns {
    count: usize,
    time: usize,
    channel: usize,
    value: usize,
    quality: Option<usize>,
}

/// Where one line lies in the buffer.
#[derive(Clone, Copy, Debug)]
struct Line {
    from: usize,
    to: usize,
    /// False for a last line with no newline after it.
    terminated: bool,
}

/// Rows of a replay file, read through a buffer of fixed size.
#[derive(Debug)]
pub struct RowReader<R> {
    input: R,
    /// Never resized: the reader's memory is this, whatever the file's size.
    buf: Box<[u8]>,
    /// The unread bytes are `buf[start..end]`.
    start: usize,
    end: usize,
    /// The input has nothing more (or failed).
    eof: bool,
    /// Number of the last line taken from the buffer.
    line: usize,
    /// Discarding the rest of a line longer than the buffer.
    skipping: bool,
    header_line: usize,
    columns: Columns,
    /// Channel names and ids, sorted by name.
    channels: Vec<(Box<[u8]>, ChannelId)>,
    last_time: Option<i64>,
}

impl<R: Read> RowReader<R> {
    /// Reads the header of `input` through a buffer of `capacity` bytes.
    /// `channels` maps the names the `channel` column may hold to ids.
    pub fn new(
        input: R,
        capacity: usize,
        channels: impl IntoIterator<Item = (String, ChannelId)>,
    ) -> Result<RowReader<R>, ReadError> {
        let mut channels: Vec<(Box<[u8]>, ChannelId)> = channels
            .into_iter()
            .map(|(name, id)| (name.into_bytes().into_boxed_slice(), id))
            .collect();
        channels.sort();
        let mut reader = RowReader {
            input,
            buf: vec![0; capacity.max(1)].into_boxed_slice(),
            start: 0,
            end: 0,
            eof: false,
            line: 0,
            skipping: false,
            header_line: 0,
            columns: Columns {
                count: 0,
                time: 0,
                channel: 0,
                value: 0,
                quality: None,
            },
            channels,
            last_time: None,
        };
        let header = loop {
            match reader.next_line()? {
                None => return Err(ReadError::Row {
                    line: 1,
                    what:
                        "the file is empty; expected a header such as `time,channel,value,quality`"
                            .to_owned(),
                }),
                Some(line) if !is_blank(reader.text(line)) => break line,
                Some(_) => {}
            }
        };
        reader.header_line = reader.line;
        reader.columns = parse_header(reader.text(header)).map_err(|what| ReadError::Row {
            line: reader.header_line,
            what,
        })?;
        Ok(reader)
    }

    /// The line the header is on.
    pub fn header_line(&self) -> usize {
        self.header_line
    }

    /// The number of the last line read.
    pub fn line(&self) -> usize {
        self.line
    }

    /// Bytes of buffer this reader holds; fixed when it is made.
    pub fn buffer_len(&self) -> usize {
        self.buf.len()
    }

    /// The next row, `None` at the end of the file. Blank lines and lines
    /// starting with `#` are skipped. After a [`ReadError::Row`] the next
    /// call goes on with the following line; after [`ReadError::Io`] there
    /// is nothing more.
    pub fn next_row(&mut self) -> Result<Option<Record>, ReadError> {
        loop {
            let Some(line) = self.next_line()? else {
                return Ok(None);
            };
            let text = self.text(line);
            if is_blank(text) {
                continue;
            }
            let parsed = parse_row(text, &self.columns, &self.channels).and_then(|row| match self
                .last_time
                .filter(|t| row.time.0 < *t)
            {
                Some(last) => Err(format!(
                    "time {} ns is before the previous row's {last} ns; rows must be in \
                         non-decreasing time order",
                    row.time.0
                )),
                None => Ok(row),
            });
            return match parsed {
                Ok(row) => {
                    self.last_time = Some(row.time.0);
                    Ok(Some(row))
                }
                Err(what) if line.terminated => Err(ReadError::Row {
                    line: self.line,
                    what,
                }),
                Err(what) => Err(ReadError::Row {
                    line: self.line,
                    what: format!(
                        "the last line is cut short (no newline at the end of the file): {what}"
                    ),
                }),
            };
        }
    }

    /// The bytes of `line`, without a trailing `\r`.
    fn text(&self, line: Line) -> &[u8] {
        let text = self.buf.get(line.from..line.to).unwrap_or(&[]);
        text.strip_suffix(b"\r").unwrap_or(text)
    }

    /// Takes the next line from the buffer, reading more of the input when
    /// the buffer holds no whole line.
    fn next_line(&mut self) -> Result<Option<Line>, ReadError> {
        loop {
            let unread = self.buf.get(self.start..self.end).unwrap_or(&[]);
            if let Some(n) = scan::find_newline(unread) {
                let from = self.start;
                self.start += n + 1;
                if std::mem::take(&mut self.skipping) {
                    // The end of a line refused as too long.
                    continue;
                }
                self.line += 1;
                return Ok(Some(Line {
                    from,
                    to: from + n,
                    terminated: true,
                }));
            }
            if self.eof {
                let from = std::mem::replace(&mut self.start, self.end);
                if from == self.end || std::mem::take(&mut self.skipping) {
                    return Ok(None);
                }
                self.line += 1;
                return Ok(Some(Line {
                    from,
                    to: self.end,
                    terminated: false,
                }));
            }
            if self.start == 0 && self.end == self.buf.len() {
                // No newline in a full buffer: refuse the line, skip to its end.
                self.end = 0;
                if !self.skipping {
                    self.skipping = true;
                    self.line += 1;
                    return Err(ReadError::Row {
                        line: self.line,
                        what: format!(
                            "the line is longer than {} bytes; rows of a replay file are short \
                             `time,channel,value[,quality]` lines",
                            self.buf.len()
                        ),
                    });
                }
            }
            self.fill()?;
        }
    }

    /// Moves the unread bytes to the front and reads more after them.
    fn fill(&mut self) -> Result<(), ReadError> {
        self.buf.copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
        loop {
            let room = self.buf.get_mut(self.end..).unwrap_or(&mut []);
            match self.input.read(room) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(());
                }
                Ok(n) => {
                    self.end += n;
                    return Ok(());
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(error) => {
                    self.eof = true;
                    self.start = self.end;
                    return Err(ReadError::Io {
                        line: self.line,
                        error,
                    });
                }
            }
        }
    }
}

/// A line with nothing on it, or a comment.
fn is_blank(text: &[u8]) -> bool {
    matches!(text.trim_ascii_start().first(), None | Some(b'#'))
}

fn parse_header(line: &[u8]) -> Result<Columns, String> {
    let (mut time, mut channel, mut value, mut quality, mut seq) = (None, None, None, None, None);
    let mut count = 0;
    for (i, name) in line
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .enumerate()
    {
        count += 1;
        let name = String::from_utf8_lossy(name);
        let slot = match &*name {
            "time" | "time_ns" => &mut time,
            "channel" => &mut channel,
            "value" => &mut value,
            "quality" => &mut quality,
            "seq" => &mut seq,
            other => {
                return Err(format!(
                    "unknown column `{other}` in the header; {VALID_COLUMNS}"
                ))
            }
        };
        if slot.replace(i).is_some() {
            return Err(format!("column `{name}` appears twice in the header"));
        }
    }
    let missing = |what: &str| format!("the header has no `{what}` column; {VALID_COLUMNS}");
    Ok(Columns {
        count,
        time: time.ok_or_else(|| missing("time"))?,
        channel: channel.ok_or_else(|| missing("channel"))?,
        value: value.ok_or_else(|| missing("value"))?,
        quality,
    })
}

fn parse_row(
    line: &[u8],
    columns: &Columns,
    channels: &[(Box<[u8]>, ChannelId)],
) -> Result<Record, String> {
    let mut fields: [&[u8]; MAX_COLUMNS] = [&[]; MAX_COLUMNS];
    let count = scan::split_fields(line, &mut fields);
    if count != columns.count {
        return Err(format!(
            "{count} fields, the header has {}; fields cannot be quoted or hold commas",
            columns.count
        ));
    }
    let field = |i: usize| fields.get(i).copied().unwrap_or(&[]);

    let text = field(columns.time);
    let time = match scan::integer(text) {
        Some(ns) => ns,
        None => parse_time(&String::from_utf8_lossy(text))?,
    };
    let name = field(columns.channel);
    let channel = match channels.binary_search_by(|(n, _)| (**n).cmp(name)) {
        Ok(i) => channels[i].1,
        Err(_) => {
            let valid: Vec<String> = channels
                .iter()
                .map(|(n, _)| format!("`{}`", String::from_utf8_lossy(n)))
                .collect();
            return Err(format!(
                "channel `{}` is not in the `channels` parameter; valid: {}",
                String::from_utf8_lossy(name),
                valid.join(", ")
            ));
        }
    };
    let text = field(columns.value);
    let value: f64 = match scan::decimal(text) {
        Some(value) => value,
        None => std::str::from_utf8(text)
            .ok()
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| format!("value `{}` is not a number", String::from_utf8_lossy(text)))?,
    };
    let quality = match columns.quality.map(field) {
        None | Some(b"" | b"good") => Quality::GOOD,
        Some(text) => parse_quality(&String::from_utf8_lossy(text))?,
    };
    Ok(Record {
        seq: Seq::ZERO,
        time: EventTime(time),
        channel,
        quality,
        value,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use std::io::Cursor;

    fn channels() -> Vec<(String, ChannelId)> {
        vec![
            ("soc".to_owned(), ChannelId(0)),
            ("power".to_owned(), ChannelId(1)),
        ]
    }

    /// Hands out at most `step` bytes per read, cycling 1..=step, so that
    /// lines split across reads at every position.
    struct Trickle {
        data: Vec<u8>,
        at: usize,
        step: usize,
        next: usize,
    }

    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.next = self.next % self.step + 1;
            let n = self.next.min(buf.len()).min(self.data.len() - self.at);
            buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }

    fn read_all<R: Read>(reader: &mut RowReader<R>) -> (Vec<(i64, f64)>, Vec<String>) {
        let (mut rows, mut errors) = (Vec::new(), Vec::new());
        loop {
            match reader.next_row() {
                Ok(Some(r)) => rows.push((r.time.0, r.value)),
                Ok(None) => return (rows, errors),
                Err(e) => errors.push(e.to_string()),
            }
        }
    }

    fn rows_of(text: &str, capacity: usize, step: usize) -> (Vec<(i64, f64)>, Vec<String>) {
        let input = Trickle {
            data: text.as_bytes().to_vec(),
            at: 0,
            step,
            next: 0,
        };
        let mut reader = RowReader::new(input, capacity, channels()).unwrap();
        read_all(&mut reader)
    }

    #[test]
    fn lines_split_across_reads_and_buffer_refills_read_the_same() {
        let mut text = String::from("# comment\ntime,channel,value\n");
        let mut expected = Vec::new();
        for i in 0..200i64 {
            let value = i as f64 * 0.5 - 7.0;
            text.push_str(&format!("{},soc,{value}\n", 1000 + i));
            expected.push((1000 + i, value));
            if i % 17 == 0 {
                text.push_str("\n  \n# a note\n");
            }
        }
        for (capacity, step) in [(BUFFER, 1 << 20), (64, 7), (32, 3), (25, 1), (40, 13)] {
            let (rows, errors) = rows_of(&text, capacity, step);
            assert_eq!(
                errors,
                Vec::<String>::new(),
                "capacity {capacity} step {step}"
            );
            assert_eq!(rows, expected, "capacity {capacity} step {step}");
        }
    }

    #[test]
    fn crlf_line_ends_read_like_lf() {
        let text = "time,channel,value,quality\r\n1,soc,2.5,good\r\n\r\n2,power,-3,stale\r\n";
        for (capacity, step) in [(BUFFER, 1 << 20), (32, 5)] {
            let (rows, errors) = rows_of(text, capacity, step);
            assert!(errors.is_empty(), "{errors:?}");
            assert_eq!(rows, [(1, 2.5), (2, -3.0)]);
        }
    }

    #[test]
    fn a_torn_last_line_is_refused_by_number_and_a_whole_one_kept() {
        let torn = "time,channel,value,quality\n1,soc,2.5,good\n2,power,-3";
        let (rows, errors) = rows_of(torn, 32, 3);
        assert_eq!(rows, [(1, 2.5)]);
        assert_eq!(
            errors,
            ["3: the last line is cut short (no newline at the end of the file): 3 fields, the header has 4; fields cannot be quoted or hold commas"]
        );
        // A last line without a newline that is a whole row is a row.
        let (rows, errors) = rows_of("time,channel,value\n1,soc,2.5\n2,power,-3", 20, 3);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(rows, [(1, 2.5), (2, -3.0)]);
    }

    #[test]
    fn a_malformed_line_is_located_by_number_and_reading_goes_on() {
        let text = "# recorded\n\ntime,channel,value\n1,soc,1\n2,soc,lots\n\n3,battery,3\n0,soc,4\n5,soc\n6,soc,6\n";
        let (rows, errors) = rows_of(text, 24, 5);
        assert_eq!(rows, [(1, 1.0), (6, 6.0)]);
        assert_eq!(
            errors,
            [
                "5: value `lots` is not a number",
                "7: channel `battery` is not in the `channels` parameter; valid: `power`, `soc`",
                "8: time 0 ns is before the previous row's 1 ns; rows must be in non-decreasing time order",
                "9: 2 fields, the header has 3; fields cannot be quoted or hold commas",
            ]
        );
    }

    #[test]
    fn a_line_longer_than_the_buffer_is_refused_and_skipped() {
        let long = "x".repeat(100);
        let text = format!("time,channel,value\n1,soc,1\n{long},soc,2\n3,soc,3\n");
        let (rows, errors) = rows_of(&text, 32, 9);
        assert_eq!(rows, [(1, 1.0), (3, 3.0)]);
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].starts_with("3: the line is longer than 32 bytes;"),
            "{errors:?}"
        );
    }

    #[test]
    fn header_errors_name_their_line() {
        let err = |text: &str| {
            RowReader::new(Cursor::new(text.as_bytes().to_vec()), 64, channels())
                .err()
                .unwrap()
                .to_string()
        };
        assert!(err("").starts_with("1: the file is empty"));
        assert!(err("# only a comment\n").starts_with("1: the file is empty"));
        assert_eq!(
            err("\n# c\ntime,channel,value,seq,seq\n"),
            "3: column `seq` appears twice in the header"
        );
        assert_eq!(
            err("time,channel,value,when\n"),
            format!("1: unknown column `when` in the header; {VALID_COLUMNS}")
        );
    }

    /// Writes `rows` rows of a replay file on the fly, never holding it.
    struct Generated {
        rows: u64,
        next: u64,
        line: Vec<u8>,
        at: usize,
    }

    impl Read for Generated {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let mut n = 0;
            while n < buf.len() {
                if self.at == self.line.len() {
                    if self.next > self.rows {
                        break;
                    }
                    self.line.clear();
                    if self.next == 0 {
                        self.line
                            .extend_from_slice(b"seq,time_ns,channel,value,quality\n");
                    } else {
                        let i = self.next;
                        let text = format!("{i},{},power,{}.25,good\n", 1_767_225_600 + i, i % 977);
                        self.line.extend_from_slice(text.as_bytes());
                    }
                    self.next += 1;
                    self.at = 0;
                }
                let take = (self.line.len() - self.at).min(buf.len() - n);
                buf[n..n + take].copy_from_slice(&self.line[self.at..self.at + take]);
                self.at += take;
                n += take;
            }
            Ok(n)
        }
    }

    #[test]
    fn a_huge_file_is_read_in_bounded_memory() {
        // About 20 MB of rows, never in memory at once.
        let rows = 500_000;
        let input = Generated {
            rows,
            next: 0,
            line: Vec::new(),
            at: 0,
        };
        let mut reader = RowReader::new(input, 4096, channels()).unwrap();
        let mut count = 0u64;
        let mut last = 0;
        while let Some(row) = reader.next_row().unwrap() {
            count += 1;
            last = row.time.0;
            assert_eq!(reader.buffer_len(), 4096, "the buffer never grows");
        }
        assert_eq!(count, rows);
        assert_eq!(last, 1_767_225_600 + rows as i64);
        assert_eq!(reader.line(), rows as usize + 1);
    }
}
