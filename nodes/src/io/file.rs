//! `file`: writes records to a file, one line each, with size-based rotation.
//!
//! With `rotate_bytes = N > 0`, a line that would take the file past N bytes
//! first rotates it: `path.{keep-1}` becomes `path.{keep}` (the oldest,
//! `path.{keep}`, is deleted), ..., `path` becomes `path.1`, and a new `path`
//! is started. Every file is at most N bytes unless a single line (plus the
//! CSV header) is longer. Oldest to newest: `path.{keep}` .. `path.1`, `path`.
//! With `keep = 0` the old lines are dropped on rotation. Each CSV file starts
//! with its own header, so every file can be read alone.

use super::lines::{LineFormat, LineFormatter, FORMATS};
use super::{bool_param, int_param, text_param};
use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, ErrorKind, Write};
use std::path::{Path, PathBuf};
use tandem_core::{
    Arity, BuildContext, BuildError, Builder, KindSpec, ParamDefault, ParamSpec, ParamType, Record,
    Sink, SinkError,
};

/// The `file` kind.
pub static KIND: KindSpec = KindSpec {
    name: "file",
    version: 1,
    doc: "writes records to a file as JSON lines or CSV, rotating by size",
    input_names: &["in"],
    arity: Arity::at_least(1),
    outputs: &[],
    outputs_from: None,
    params: &[
        ParamSpec {
            name: "path",
            ty: ParamType::Text,
            default: ParamDefault::Required,
            doc: "file to write; its directory must exist",
        },
        ParamSpec {
            name: "format",
            ty: ParamType::Choice(FORMATS),
            default: ParamDefault::Text("jsonl"),
            doc: "jsonl: one JSON object per line; csv: a header, then seq,time_ns,channel,value,quality",
        },
        ParamSpec {
            name: "rotate_bytes",
            ty: ParamType::Int {
                min: 0,
                max: i64::MAX,
            },
            default: ParamDefault::Int(0),
            doc: "rotate before the file would grow past this many bytes; 0 = never",
        },
        ParamSpec {
            name: "keep",
            ty: ParamType::Int { min: 0, max: 1000 },
            default: ParamDefault::Int(5),
            doc: "rotated files kept, path.1 (newest) .. path.N (oldest)",
        },
        ParamSpec {
            name: "append",
            ty: ParamType::Bool,
            default: ParamDefault::Bool(true),
            doc: "true: continue an existing file; false: start it empty",
        },
    ],
    state_schema: None,
    migrations: &[],
    build: Builder::Sink(build),
};

fn build(ctx: &BuildContext<'_>) -> Result<Box<dyn Sink>, BuildError> {
    let format = text_param(ctx, "format")?;
    let format = LineFormat::parse(format).ok_or_else(|| {
        BuildError::new(format!(
            "`{}`: format `{format}` is not one of jsonl, csv",
            ctx.id
        ))
    })?;
    let path = PathBuf::from(text_param(ctx, "path")?);
    let rotate_bytes = u64::try_from(int_param(ctx, "rotate_bytes")?).unwrap_or(0);
    let keep = u32::try_from(int_param(ctx, "keep")?).unwrap_or(0);
    let append = bool_param(ctx, "append")?;
    let sink = FileSink::open(
        ctx.id,
        &path,
        LineFormatter::new(format, ctx.channels),
        Rotation { rotate_bytes, keep },
        append,
    )
    .map_err(|e| {
        BuildError::new(format!(
            "`{}`: cannot open `{}` for writing: {e}",
            ctx.id,
            path.display()
        ))
    })?;
    Ok(Box::new(sink))
}

/// When and how far to rotate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rotation {
    /// Rotate before a file would pass this many bytes; 0 = never.
    pub rotate_bytes: u64,
    /// Rotated files kept.
    pub keep: u32,
}

/// The `file` sink.
#[derive(Debug)]
pub struct FileSink {
    id: String,
    path: PathBuf,
    formatter: LineFormatter,
    rotation: Rotation,
    out: BufWriter<File>,
    /// Bytes in the current file, buffered ones included.
    size: u64,
    line: Vec<u8>,
}

impl FileSink {
    /// Opens `path` (appending or truncating) and writes the header if it is empty.
    pub fn open(
        id: &str,
        path: &Path,
        formatter: LineFormatter,
        rotation: Rotation,
        append: bool,
    ) -> std::io::Result<FileSink> {
        let mut options = OpenOptions::new();
        options.create(true).read(true);
        if append {
            options.append(true);
        } else {
            options.write(true).truncate(true);
        }
        let mut file = options.open(path)?;
        let size = file.metadata()?.len();
        let torn = size > 0 && !ends_with_newline(&mut file, size)?;
        let mut sink = FileSink {
            id: id.to_owned(),
            path: path.to_owned(),
            formatter,
            rotation,
            out: BufWriter::with_capacity(64 * 1024, file),
            size,
            line: Vec::with_capacity(256),
        };
        if size == 0 {
            sink.write_header()?;
        } else if torn {
            // A crash cut the last line short: end it so the next line starts clean.
            sink.out.write_all(b"\n")?;
            sink.size = sink.size.saturating_add(1);
        }
        Ok(sink)
    }

    fn write_header(&mut self) -> std::io::Result<()> {
        let header = self.formatter.format().header();
        self.out.write_all(header)?;
        self.size = header.len() as u64;
        Ok(())
    }

    /// `path.i`.
    fn rotated(&self, i: u32) -> PathBuf {
        let mut name = OsString::from(self.path.as_os_str());
        name.push(format!(".{i}"));
        PathBuf::from(name)
    }

    /// Shifts `path.i` to `path.{i+1}`, `path` to `path.1`, and starts a new `path`.
    fn rotate(&mut self) -> std::io::Result<()> {
        self.out.flush()?;
        let keep = self.rotation.keep;
        // A file removed from under the sink (logrotate, an operator), or a
        // new one that could not be created last time, leaves nothing to
        // shift: start afresh and leave the history as it is.
        if self.path.exists() {
            if keep == 0 {
                remove_if_present(&self.path)?;
            } else {
                remove_if_present(&self.rotated(keep))?;
                for i in (1..keep).rev() {
                    rename_if_present(&self.rotated(i), &self.rotated(i + 1))?;
                }
                std::fs::rename(&self.path, self.rotated(1))?;
            }
        }
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&self.path)?;
        // The old writer is empty after the flush above: dropping it writes nothing.
        self.out = BufWriter::with_capacity(64 * 1024, file);
        self.write_header()
    }

    fn error(&self, e: std::io::Error) -> SinkError {
        SinkError {
            sink: self.id.clone(),
            source: std::io::Error::new(e.kind(), format!("{}: {e}", self.path.display())),
        }
    }

    fn write_records(&mut self, records: &[Record]) -> std::io::Result<()> {
        let header = self.formatter.format().header().len() as u64;
        for record in records {
            self.line.clear();
            self.formatter.line(record, &mut self.line);
            let len = self.line.len() as u64;
            if self.rotation.rotate_bytes > 0
                && self.size > header
                && self.size.saturating_add(len) > self.rotation.rotate_bytes
            {
                self.rotate()?;
            }
            self.out.write_all(&self.line)?;
            self.size = self.size.saturating_add(len);
        }
        Ok(())
    }
}

/// True when the last byte of `file` (`size` bytes long) is a newline.
fn ends_with_newline(file: &mut File, size: u64) -> std::io::Result<bool> {
    use std::io::{Read, Seek, SeekFrom};
    let mut last = [0u8; 1];
    file.seek(SeekFrom::Start(size - 1))?;
    file.read_exact(&mut last)?;
    Ok(last == *b"\n")
}

fn remove_if_present(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn rename_if_present(from: &Path, to: &Path) -> std::io::Result<()> {
    match std::fs::rename(from, to) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

impl Sink for FileSink {
    fn write(&mut self, records: &[Record]) -> Result<(), SinkError> {
        self.write_records(records).map_err(|e| self.error(e))
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.out.flush().map_err(|e| self.error(e))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::io::testing::{sink, temp_dir, text};
    use std::sync::Arc;
    use tandem_core::{ChannelId, ChannelTable, EventTime, ParamValue, Seq};

    fn table() -> Arc<ChannelTable> {
        let mut t = ChannelTable::new();
        t.intern("battery.soc", "%");
        t.intern("battery.voltage", "V");
        Arc::new(t)
    }

    fn records(n: u64) -> Vec<Record> {
        (0..n)
            .map(|i| {
                Record::new(
                    Seq(i + 1),
                    EventTime::from_secs(1_767_225_600).add_nanos(i as i64 * 1_000_000_000),
                    ChannelId((i % 2) as u32),
                    i as f64 * 0.5,
                )
            })
            .collect()
    }

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap()
    }

    #[test]
    fn writes_exact_jsonl_lines_only_visible_after_flush() {
        let dir = temp_dir("file-jsonl");
        let path = dir.join("out.jsonl");
        let t = table();
        let mut s = sink(
            "log",
            &KIND,
            &[("path", text(path.to_str().unwrap()))],
            &t,
            &[ChannelId(0)],
        )
        .unwrap();
        s.write(&records(2)).unwrap();
        assert_eq!(read(&path), "");
        s.flush().unwrap();
        assert_eq!(
            read(&path),
            concat!(
                "{\"seq\":1,\"time_ns\":1767225600000000000,\"channel\":\"battery.soc\",\"value\":0.0,\"quality\":\"good\"}\n",
                "{\"seq\":2,\"time_ns\":1767225601000000000,\"channel\":\"battery.voltage\",\"value\":0.5,\"quality\":\"good\"}\n",
            )
        );
    }

    #[test]
    fn csv_has_a_header_and_append_continues_without_a_second_one() {
        let dir = temp_dir("file-csv");
        let path = dir.join("out.csv");
        let t = table();
        let params = [
            ("path", text(path.to_str().unwrap())),
            ("format", text("csv")),
        ];
        for batch in [&records(1)[..], &records(2)[1..]] {
            let mut s = sink("log", &KIND, &params, &t, &[ChannelId(0)]).unwrap();
            s.write(batch).unwrap();
            s.flush().unwrap();
        }
        assert_eq!(
            read(&path),
            "seq,time_ns,channel,value,quality\n\
             1,1767225600000000000,battery.soc,0.0,good\n\
             2,1767225601000000000,battery.voltage,0.5,good\n"
        );
        let mut s = sink(
            "log",
            &KIND,
            &[
                ("path", text(path.to_str().unwrap())),
                ("format", text("csv")),
                ("append", ParamValue::Bool(false)),
            ],
            &t,
            &[ChannelId(0)],
        )
        .unwrap();
        s.flush().unwrap();
        assert_eq!(read(&path), "seq,time_ns,channel,value,quality\n");
    }

    #[test]
    fn appending_after_a_torn_line_starts_a_new_line() {
        let dir = temp_dir("file-torn");
        let path = dir.join("out.jsonl");
        std::fs::write(&path, "{\"seq\":1,\"ti").unwrap();
        let t = table();
        let mut s = sink(
            "log",
            &KIND,
            &[("path", text(path.to_str().unwrap()))],
            &t,
            &[ChannelId(0)],
        )
        .unwrap();
        s.write(&records(1)).unwrap();
        s.flush().unwrap();
        assert_eq!(
            read(&path),
            "{\"seq\":1,\"ti\n{\"seq\":1,\"time_ns\":1767225600000000000,\"channel\":\"battery.soc\",\"value\":0.0,\"quality\":\"good\"}\n"
        );
    }

    #[test]
    fn rotation_bounds_file_size_and_loses_nothing() {
        for format in ["jsonl", "csv"] {
            let dir = temp_dir(&format!("file-rotate-{format}"));
            let path = dir.join("out");
            let t = table();
            let mut s = sink(
                "log",
                &KIND,
                &[
                    ("path", text(path.to_str().unwrap())),
                    ("format", text(format)),
                    ("rotate_bytes", ParamValue::Int(300)),
                    ("keep", ParamValue::Int(1000)),
                ],
                &t,
                &[ChannelId(0)],
            )
            .unwrap();
            let all = records(100);
            for chunk in all.chunks(7) {
                s.write(chunk).unwrap();
            }
            s.flush().unwrap();

            let mut rotated = Vec::new();
            let mut i = 1;
            while dir.join(format!("out.{i}")).exists() {
                rotated.push(dir.join(format!("out.{i}")));
                i += 1;
            }
            assert!(
                rotated.len() > 10,
                "{format}: {} rotated files",
                rotated.len()
            );
            let mut concatenated = String::new();
            for p in rotated.iter().rev().chain([&path]) {
                let text = read(p);
                assert!(text.len() <= 300, "{}: {} bytes", p.display(), text.len());
                let header = LineFormat::parse(format).unwrap().header();
                let body = text.strip_prefix(std::str::from_utf8(header).unwrap());
                concatenated.push_str(body.unwrap());
            }
            let f = LineFormatter::new(LineFormat::parse(format).unwrap(), &t);
            let mut expect = Vec::new();
            for r in &all {
                f.line(r, &mut expect);
            }
            assert_eq!(concatenated, String::from_utf8(expect).unwrap(), "{format}");
        }
    }

    #[test]
    fn a_file_removed_from_under_the_sink_keeps_the_rotated_history() {
        let dir = temp_dir("file-removed");
        let path = dir.join("out");
        let t = table();
        let mut s = sink(
            "log",
            &KIND,
            &[
                ("path", text(path.to_str().unwrap())),
                ("rotate_bytes", ParamValue::Int(200)),
                ("keep", ParamValue::Int(3)),
            ],
            &t,
            &[ChannelId(0)],
        )
        .unwrap();
        let all = records(60);
        for chunk in all[..30].chunks(3) {
            s.write(chunk).unwrap();
        }
        s.flush().unwrap();
        for i in 1..=3 {
            assert!(dir.join(format!("out.{i}")).exists());
        }
        std::fs::remove_file(&path).unwrap();
        // Every write after the removal succeeds: rotations go on.
        for chunk in all[30..].chunks(3) {
            s.write(chunk).unwrap();
        }
        s.flush().unwrap();
        // The first rotation after the removal starts a fresh file and shifts
        // nothing; later ones shift as usual, keeping `keep` files.
        let on_disk: Vec<Vec<u8>> = (1..=3)
            .filter_map(|i| std::fs::read(dir.join(format!("out.{i}"))).ok())
            .collect();
        assert_eq!(on_disk.len(), 3, "rotated files were deleted");
        assert!(std::fs::read(&path).unwrap().ends_with(b"\n"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn rotation_keeps_only_the_newest_files() {
        let dir = temp_dir("file-keep");
        let path = dir.join("out");
        let t = table();
        let mut s = sink(
            "log",
            &KIND,
            &[
                ("path", text(path.to_str().unwrap())),
                ("rotate_bytes", ParamValue::Int(1)),
                ("keep", ParamValue::Int(2)),
            ],
            &t,
            &[ChannelId(0)],
        )
        .unwrap();
        // One line per file: out.2 holds seq 3, out.1 seq 4, out seq 5.
        s.write(&records(5)).unwrap();
        s.flush().unwrap();
        let seq = |p: &Path| read(p)[7..9].to_owned();
        assert_eq!(seq(&dir.join("out.2")), "3,");
        assert_eq!(seq(&dir.join("out.1")), "4,");
        assert_eq!(seq(&path), "5,");
        assert!(!dir.join("out.3").exists());
    }

    #[test]
    fn a_missing_directory_is_a_build_error_naming_the_path() {
        let dir = temp_dir("file-missing");
        let path = dir.join("no/such/dir/out.jsonl");
        let err = sink(
            "log",
            &KIND,
            &[("path", text(path.to_str().unwrap()))],
            &table(),
            &[ChannelId(0)],
        )
        .err()
        .unwrap();
        assert!(
            err.message.starts_with(&format!(
                "`log`: cannot open `{}` for writing: ",
                path.display()
            )),
            "{}",
            err.message
        );
    }
}
