//! `csv`: replays a recorded CSV file.
//!
//! The file is streamed through a buffer of fixed size ([`reader::BUFFER`],
//! 64 KiB), so a replay takes the same memory whatever the file's size. When
//! the graph is built the file is opened and its header and first row are
//! checked: a wrong path, header or `channels` list is a build error
//! `path:line: what is wrong, what is valid`. A later row that is not valid
//! (a malformed line, an unknown channel, a time that goes back, a last line
//! cut short) is logged as a warning the same way (the first ten), counted
//! as an error of the source, and skipped; the replay goes on. A file that
//! cannot be read any further ends the replay.
//!
//! Format: a header naming the columns, in any order: `time` (or `time_ns`),
//! `channel`, `value`, optionally `quality`, and an ignored `seq`, so files
//! written by the `file` sink in `csv` format replay as they are. Then one row
//! per record. Blank lines and lines starting with `#` are skipped. Fields are
//! not quoted (channel names never need it). Lines end in `\n` or `\r\n`.
//!
//! - `time`: integer nanoseconds since the epoch (`1767225600000000000`),
//!   seconds with a fraction of up to 9 digits (`1767225600.25`), or RFC 3339
//!   in UTC only: `2026-01-01T00:00:00Z`, `2026-01-01T00:00:00.250Z` (`T` may
//!   be `t` or a space, `Z` may be `z` or `+00:00`). Rows must not go back in time.
//! - `channel`: one of the `channels` parameter; the record goes out on `<id>.<channel>`.
//! - `value`: a number (`NaN`, `inf`, `-inf` accepted).
//! - `quality`: empty or `good`, else flag names joined by `|` as sinks write
//!   them (`out_of_range|stale`), optionally with a `0x..` part for unnamed bits.
//!
//! Timing: the first poll, at ingress time `t0`, emits the rows stamped like
//! the first row; a row stamped `t` is emitted at ingress time
//! `t0 + (t - first row's time)`. Records keep the file's event time. One
//! poll emits at most [`MAX_PER_POLL`] rows and asks to be polled again at
//! once if more are due.

pub mod reader;
mod scan;

use super::names_param;
use super::text_param;
use reader::{ReadError, RowReader};
use std::fs::File;
use tandem_core::{
    Arity, BuildContext, BuildError, Builder, EventTime, KindSpec, ParamDefault, ParamSpec,
    ParamType, Quality, Record, Source,
};

/// The `csv` kind.
pub static KIND: KindSpec = KindSpec {
    name: "csv",
    version: 1,
    doc: "replays a CSV file of time,channel,value[,quality] rows at their recorded pace",
    input_names: &[],
    arity: Arity::NONE,
    outputs: &[],
    outputs_from: Some("channels"),
    params: &[
        ParamSpec {
            name: "path",
            ty: ParamType::Text,
            default: ParamDefault::Required,
            doc: "the CSV file to replay",
        },
        ParamSpec {
            name: "channels",
            ty: ParamType::Names,
            default: ParamDefault::Required,
            doc: "channel names that may appear in the file; each becomes output `<id>.<name>`",
        },
    ],
    state_schema: None,
    migrations: &[],
    build: Builder::Source(build),
};

/// What valid times look like, for messages.
const TIME_FORMS: &str = "integer nanoseconds (1767225600000000000), seconds with a fraction (1767225600.25) or RFC 3339 in UTC (2026-01-01T00:00:00Z, 2026-01-01T00:00:00.250Z)";

/// Most rows one poll emits, so that a replay far behind its pace (a high
/// `--speed`) never gathers the file in memory.
pub const MAX_PER_POLL: usize = 4096;

/// Bad rows reported one by one on stderr; the rest are only counted.
const REPORTED_ERRORS: u64 = 10;

/// The load-time check of the kind: what needs only the parameters (the
/// file itself is opened when the graph runs).
pub(crate) fn check(ctx: &BuildContext<'_>) -> Result<(), BuildError> {
    if names_param(ctx, "channels")?.is_empty() {
        return Err(BuildError::new(format!(
            "`{}`: `channels` is empty; name the channels the file's `channel` column holds, such as [\"soc\", \"power\"]",
            ctx.id
        ))
        .at("channels"));
    }
    Ok(())
}

fn build(ctx: &BuildContext<'_>) -> Result<Box<dyn Source>, BuildError> {
    check(ctx)?;
    let path = text_param(ctx, "path")?;
    let names = names_param(ctx, "channels")?;
    if ctx.outputs.len() != names.len() {
        return Err(BuildError::new(format!(
            "`{}`: expected one output channel per entry of `channels` ({}), the plan gave {}",
            ctx.id,
            names.len(),
            ctx.outputs.len()
        )));
    }
    let unreadable =
        |e: std::io::Error| BuildError::new(format!("`{}`: cannot read `{path}`: {e}", ctx.id));
    let refused = |e: ReadError| match e {
        ReadError::Io { error, .. } => unreadable(error),
        row => BuildError::new(format!("{path}:{row}")),
    };
    let file = File::open(path).map_err(unreadable)?;
    let channels = names.iter().cloned().zip(ctx.outputs.iter().copied());
    let mut reader = RowReader::new(file, reader::BUFFER, channels).map_err(refused)?;
    let Some(first) = reader.next_row().map_err(refused)? else {
        return Err(BuildError::new(format!(
            "{path}:{}: no data rows after the header",
            reader.header_line()
        )));
    };
    Ok(Box::new(CsvReplay {
        id: ctx.id.to_owned(),
        path: path.to_owned(),
        reader,
        next: Some(first),
        first: first.time,
        start: None,
        errors: 0,
    }))
}

/// The replay, streaming rows from the file as they come due.
#[derive(Debug)]
pub struct CsvReplay {
    id: String,
    path: String,
    reader: RowReader<File>,
    /// The next row, read but not yet due; `None` at the end.
    next: Option<Record>,
    /// The first row's time.
    first: EventTime,
    start: Option<EventTime>,
    errors: u64,
}

impl CsvReplay {
    /// The row after `next`, reporting and skipping rows that are not valid.
    fn read_next(&mut self) -> Option<Record> {
        loop {
            match self.reader.next_row() {
                Ok(row) => return row,
                Err(e) => {
                    self.errors += 1;
                    let fatal = matches!(e, ReadError::Io { .. });
                    if self.errors <= REPORTED_ERRORS || fatal {
                        let then = if fatal {
                            "the replay ends here"
                        } else {
                            "the row is skipped"
                        };
                        tracing::warn!("source `{}`: {}:{e}; {then}", self.id, self.path);
                        if self.errors == REPORTED_ERRORS && !fatal {
                            tracing::warn!(
                                "source `{}`: further bad rows are counted, not shown",
                                self.id
                            );
                        }
                    }
                    if fatal {
                        return None;
                    }
                }
            }
        }
    }
}

impl Source for CsvReplay {
    fn poll(&mut self, now: EventTime, out: &mut Vec<Record>) -> Option<EventTime> {
        let start = *self.start.get_or_insert(now);
        for _ in 0..MAX_PER_POLL {
            let row = self.next?;
            let due = start.add_nanos(row.time.0.saturating_sub(self.first.0));
            if due > now {
                return Some(due);
            }
            out.push(row);
            self.next = self.read_next();
        }
        // More may be due: come back at once.
        self.next.map(|_| now)
    }

    fn errors(&self) -> u64 {
        self.errors
    }
}

/// Parses a time field to nanoseconds since the epoch.
pub fn parse_time(text: &str) -> Result<i64, String> {
    let bad = || format!("time `{text}` is not {TIME_FORMS}");
    let bytes = text.as_bytes();
    if bytes.get(4) == Some(&b'-') {
        return parse_rfc3339(bytes).ok_or_else(bad);
    }
    if let Some((secs, frac)) = text.split_once('.') {
        let negative = secs.starts_with('-');
        let digits = secs.strip_prefix('-').unwrap_or(secs);
        if digits.is_empty()
            || !digits.bytes().all(|b| b.is_ascii_digit())
            || frac.is_empty()
            || frac.len() > 9
        {
            return Err(bad());
        }
        let secs: i64 = digits.parse().map_err(|_| bad())?;
        let frac = fraction_ns(frac.as_bytes()).ok_or_else(bad)?;
        let ns = secs
            .checked_mul(1_000_000_000)
            .and_then(|s| s.checked_add(frac))
            .ok_or_else(bad)?;
        return Ok(if negative { -ns } else { ns });
    }
    if text.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
        return text.parse().map_err(|_| bad());
    }
    Err(bad())
}

/// Up to 9 fractional digits as nanoseconds (`"25"` -> 250_000_000).
fn fraction_ns(digits: &[u8]) -> Option<i64> {
    if digits.is_empty() || digits.len() > 9 {
        return None;
    }
    let mut ns: i64 = 0;
    for i in 0..9 {
        let d = match digits.get(i) {
            Some(b) if b.is_ascii_digit() => i64::from(b - b'0'),
            Some(_) => return None,
            None => 0,
        };
        ns = ns * 10 + d;
    }
    Some(ns)
}

fn number(bytes: &[u8], from: usize, to: usize) -> Option<i64> {
    let digits = bytes.get(from..to)?;
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        digits
            .iter()
            .fold(0i64, |n, b| n * 10 + i64::from(b - b'0')),
    )
}

/// `YYYY-MM-DDTHH:MM:SS[.fffffffff](Z|+00:00)` to nanoseconds since the epoch.
fn parse_rfc3339(b: &[u8]) -> Option<i64> {
    let sep = |i: usize, ok: &[u8]| b.get(i).is_some_and(|c| ok.contains(c));
    if !(sep(4, b"-") && sep(7, b"-") && sep(10, b"Tt ") && sep(13, b":") && sep(16, b":")) {
        return None;
    }
    let (year, month, day) = (number(b, 0, 4)?, number(b, 5, 7)?, number(b, 8, 10)?);
    let (hour, minute, second) = (number(b, 11, 13)?, number(b, 14, 16)?, number(b, 17, 19)?);
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if !(1..=month_days).contains(&day) || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let mut rest = b.get(19..)?;
    let mut frac = 0;
    if let Some(after_dot) = rest.strip_prefix(b".") {
        let len = after_dot.iter().take_while(|c| c.is_ascii_digit()).count();
        frac = fraction_ns(after_dot.get(..len)?)?;
        rest = after_dot.get(len..)?;
    }
    if !matches!(rest, b"Z" | b"z" | b"+00:00") {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second;
    secs.checked_mul(1_000_000_000)?.checked_add(frac)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses `good`, `out_of_range|stale`, `comm_error|0x100`, or nothing (good).
pub fn parse_quality(text: &str) -> Result<Quality, String> {
    if text.is_empty() || text == "good" {
        return Ok(Quality::GOOD);
    }
    let mut q = Quality::GOOD;
    for part in text.split('|') {
        if let Some((flag, _)) = Quality::NAMES.iter().find(|(_, n)| *n == part) {
            q |= *flag;
        } else if let Some(bits) = part
            .strip_prefix("0x")
            .and_then(|h| u32::from_str_radix(h, 16).ok())
        {
            q |= Quality(bits);
        } else {
            let names: Vec<&str> = Quality::NAMES.iter().map(|(_, n)| *n).collect();
            return Err(format!(
                "quality `{part}` is not good, {} or 0x<hex bits> (join flags with |)",
                names.join(", ")
            ));
        }
    }
    Ok(q)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::io::testing::{drive, names, source, temp_dir, text};

    fn replay(
        name: &str,
        content: &str,
    ) -> Result<(Box<dyn Source>, std::path::PathBuf), BuildError> {
        let dir = temp_dir(&format!("csv-{name}"));
        let path = dir.join("in.csv");
        std::fs::write(&path, content).unwrap();
        let (src, _) = source(
            "rec",
            &KIND,
            &[
                ("path", text(path.to_str().unwrap())),
                ("channels", names(&["soc", "power"])),
            ],
        )?;
        Ok((src, path))
    }

    fn error(name: &str, content: &str) -> String {
        let dir = temp_dir(&format!("csv-{name}"));
        let path = dir.join("in.csv");
        std::fs::write(&path, content).unwrap();
        let err = source(
            "rec",
            &KIND,
            &[
                ("path", text(path.to_str().unwrap())),
                ("channels", names(&["soc", "power"])),
            ],
        )
        .err()
        .unwrap();
        err.message
            .strip_prefix(&format!("{}:", path.display()))
            .unwrap()
            .to_owned()
    }

    #[test]
    fn times_parse_in_every_accepted_form() {
        const NY: i64 = 1_767_225_600_000_000_000;
        assert_eq!(parse_time("1767225600000000000"), Ok(NY));
        assert_eq!(parse_time("1767225600.25"), Ok(NY + 250_000_000));
        assert_eq!(parse_time("1767225600.000000001"), Ok(NY + 1));
        assert_eq!(parse_time("-1.5"), Ok(-1_500_000_000));
        assert_eq!(parse_time("2026-01-01T00:00:00Z"), Ok(NY));
        assert_eq!(parse_time("2026-01-01T00:00:00.250Z"), Ok(NY + 250_000_000));
        assert_eq!(
            parse_time("2026-01-01 00:00:00.25+00:00"),
            Ok(NY + 250_000_000)
        );
        assert_eq!(
            parse_time("2024-02-29T12:00:00z"),
            Ok(1_709_208_000_000_000_000)
        );
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Ok(0));
        for bad in [
            "2026-01-01T00:00:00+01:00",
            "2026-01-01T00:00:00",
            "2025-02-29T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-01-01T24:00:00Z",
            "2026-01-01T00:00:00.Z",
            "2026-01-01T00:00:00.1234567890Z",
            "1.7e9",
            "12.",
            "soon",
            "",
        ] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn replays_at_the_recorded_pace_with_file_times_and_qualities() {
        let content = "# recorded on the test bench\n\
            time,channel,value,quality\n\
            2026-01-01T00:00:00Z,soc,50.5,\n\
            2026-01-01T00:00:00Z,power,-1200,good\n\
            \n\
            2026-01-01T00:00:01.5Z,soc,50.25,stale|estimated\n\
            2026-01-01T00:00:03Z,power,NaN,comm_error\r\n";
        let (mut src, _) = replay("pace", content).unwrap();
        let mut out = Vec::new();
        let t0 = EventTime(1_000);
        assert_eq!(src.poll(t0, &mut out), Some(t0.add_nanos(1_500_000_000)));
        assert_eq!(out.len(), 2);
        let next = src.poll(t0.add_nanos(1_500_000_000), &mut out);
        assert_eq!(next, Some(t0.add_nanos(3_000_000_000)));
        assert_eq!(src.poll(t0.add_nanos(3_000_000_000), &mut out), None);
        let ny = 1_767_225_600_000_000_000;
        let summary: Vec<(i64, f64, Quality)> = out
            .iter()
            .map(|r| (r.time.0 - ny, r.value, r.quality))
            .collect();
        assert_eq!(summary[0], (0, 50.5, Quality::GOOD));
        assert_eq!(summary[1], (0, -1200.0, Quality::GOOD));
        assert_eq!(
            summary[2],
            (1_500_000_000, 50.25, Quality::STALE | Quality::ESTIMATED)
        );
        assert_eq!(
            (summary[3].0, summary[3].2),
            (3_000_000_000, Quality::COMM_ERROR)
        );
        assert!(summary[3].1.is_nan());
        assert_eq!(out[0].channel, out[2].channel);
        assert_ne!(out[0].channel, out[1].channel);
        assert!(out.iter().all(|r| r.seq == tandem_core::Seq::ZERO));
    }

    #[test]
    fn file_sink_csv_output_replays_as_is() {
        let content = "seq,time_ns,channel,value,quality\n\
            12,1767225600000000000,soc,55.25,good\n\
            13,1767225600250000000,soc,55.5,out_of_range\n";
        let (mut src, _) = replay("sink-format", content).unwrap();
        let out = drive(src.as_mut(), EventTime(0), EventTime(i64::MAX), 10);
        let values: Vec<f64> = out.iter().map(|r| r.value).collect();
        assert_eq!(values, [55.25, 55.5]);
        assert_eq!(out[1].time, EventTime(1_767_225_600_250_000_000));
    }

    #[test]
    fn errors_in_the_header_or_first_row_name_the_line_and_what_is_valid() {
        let h = "time,channel,value\n";
        assert_eq!(
            error(
                "channel",
                &format!("# recorded\n{h}2.0,battery,2\n1.0,soc,1\n")
            ),
            "3: channel `battery` is not in the `channels` parameter; valid: `power`, `soc`"
        );
        assert_eq!(
            error("fields", &format!("{h}1.0,soc\n")),
            "2: 2 fields, the header has 3; fields cannot be quoted or hold commas"
        );
        assert_eq!(
            error("value", &format!("{h}1.0,soc,lots\n")),
            "2: value `lots` is not a number"
        );
        assert_eq!(
            error("time", &format!("{h}yesterday,soc,1\n")),
            format!("2: time `yesterday` is not {TIME_FORMS}")
        );
        assert_eq!(
            error("quality", "time,channel,value,quality\n1.0,soc,1,bad\n"),
            "2: quality `bad` is not good, out_of_range, comm_error, device_fault, stale, uncertain, estimated or 0x<hex bits> (join flags with |)"
        );
        assert_eq!(
            error("header", "when,channel,value\n"),
            "1: unknown column `when` in the header; valid columns are time (or time_ns), channel, value, quality and seq (ignored)"
        );
        assert_eq!(
            error("no-value", "time,channel\n"),
            "1: the header has no `value` column; valid columns are time (or time_ns), channel, value, quality and seq (ignored)"
        );
        assert_eq!(error("empty-rows", h), "1: no data rows after the header");
        assert!(error("empty", "").starts_with("1: the file is empty"));
    }

    #[test]
    fn later_bad_rows_are_counted_and_skipped_and_the_replay_goes_on() {
        let content = "time,channel,value\n\
            1.0,soc,1\n\
            2.0,battery,2\n\
            0.5,soc,3\n\
            3.0,soc,4\n\
            4.0,soc";
        let (mut src, _) = replay("later", content).unwrap();
        let out = drive(src.as_mut(), EventTime(0), EventTime(i64::MAX), 10);
        let values: Vec<f64> = out.iter().map(|r| r.value).collect();
        assert_eq!(values, [1.0, 4.0]);
        assert_eq!(
            src.errors(),
            3,
            "unknown channel, time going back, torn last line"
        );
    }

    #[test]
    fn a_replay_far_behind_its_pace_emits_a_bounded_batch_per_poll() {
        let mut content = String::from("time,channel,value\n");
        for i in 0..(MAX_PER_POLL + 10) {
            content.push_str(&format!("{i},soc,{i}\n"));
        }
        let (mut src, _) = replay("behind", &content).unwrap();
        let mut out = Vec::new();
        let late = EventTime(i64::MAX / 2);
        assert_eq!(src.poll(EventTime(0), &mut out), Some(EventTime(1)));
        assert_eq!(out.len(), 1);
        assert_eq!(
            src.poll(late, &mut out),
            Some(late),
            "more are due: at once"
        );
        assert_eq!(out.len(), 1 + MAX_PER_POLL);
        assert_eq!(src.poll(late, &mut out), None);
        assert_eq!(out.len(), MAX_PER_POLL + 10);
        assert!(out.windows(2).all(|w| w[0].value + 1.0 == w[1].value));
    }

    #[test]
    fn a_missing_file_is_a_build_error() {
        let err = source(
            "rec",
            &KIND,
            &[
                ("path", text("/nonexistent/tandem/in.csv")),
                ("channels", names(&["soc"])),
            ],
        )
        .err()
        .unwrap();
        assert!(err
            .message
            .starts_with("`rec`: cannot read `/nonexistent/tandem/in.csv`: "));
    }

    #[test]
    fn quality_round_trips_through_its_display() {
        for q in [
            Quality::GOOD,
            Quality::UNCERTAIN,
            Quality::OUT_OF_RANGE | Quality::DEVICE_FAULT,
            Quality(1 << 20) | Quality::STALE,
        ] {
            assert_eq!(parse_quality(&q.to_string()), Ok(q));
        }
    }
}
