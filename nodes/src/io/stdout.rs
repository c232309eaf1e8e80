//! `stdout`: writes records to standard output, one line each.
//!
//! A closed pipe (`tandem run g.toml | head`) is a [`SinkError`] with kind
//! `BrokenPipe`, never a panic: the sink writes through `std::io::Write`, not
//! `print!`, and Rust ignores `SIGPIPE` by default.

use super::lines::{LineFormat, LineFormatter, FORMATS};
use super::text_param;
use std::io::{BufWriter, Write};
use tandem_core::{
    Arity, BuildContext, BuildError, Builder, KindSpec, ParamDefault, ParamSpec, ParamType, Record,
    Sink, SinkError,
};

/// The `stdout` kind.
pub static KIND: KindSpec = KindSpec {
    name: "stdout",
    version: 1,
    doc: "writes records to standard output as JSON lines (or CSV)",
    input_names: &["in"],
    arity: Arity::at_least(1),
    outputs: &[],
    outputs_from: None,
    params: &[ParamSpec {
        name: "format",
        ty: ParamType::Choice(FORMATS),
        default: ParamDefault::Text("jsonl"),
        doc:
            "jsonl: one JSON object per line; csv: a header, then seq,time_ns,channel,value,quality",
    }],
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
    Ok(Box::new(LineSink::new(
        ctx.id,
        LineFormatter::new(format, ctx.channels),
        std::io::stdout(),
    )))
}

/// Writes lines to any writer, buffered; the `stdout` sink is one over [`std::io::Stdout`].
#[derive(Debug)]
pub struct LineSink<W: Write> {
    id: String,
    formatter: LineFormatter,
    out: BufWriter<W>,
    line: Vec<u8>,
    header_written: bool,
}

impl<W: Write> LineSink<W> {
    /// A sink named `id` writing to `out`.
    pub fn new(id: &str, formatter: LineFormatter, out: W) -> LineSink<W> {
        LineSink {
            id: id.to_owned(),
            formatter,
            out: BufWriter::with_capacity(64 * 1024, out),
            line: Vec::with_capacity(256),
            header_written: false,
        }
    }

    fn error(&self, source: std::io::Error) -> SinkError {
        SinkError {
            sink: self.id.clone(),
            source,
        }
    }
}

impl<W: Write + Send> Sink for LineSink<W> {
    fn write(&mut self, records: &[Record]) -> Result<(), SinkError> {
        if !self.header_written {
            let header = self.formatter.format().header();
            self.out.write_all(header).map_err(|e| self.error(e))?;
            self.header_written = true;
        }
        for record in records {
            self.line.clear();
            self.formatter.line(record, &mut self.line);
            if let Err(e) = self.out.write_all(&self.line) {
                return Err(self.error(e));
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.out.flush().map_err(|e| self.error(e))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::io::testing::{sink, text};
    use std::io::ErrorKind;
    use std::sync::{Arc, Mutex};
    use tandem_core::{ChannelId, ChannelTable, EventTime, Seq};

    /// A pipe whose reader has gone away.
    struct ClosedPipe;

    impl Write for ClosedPipe {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn table() -> ChannelTable {
        let mut t = ChannelTable::new();
        t.intern("battery.soc", "%");
        t
    }

    #[test]
    fn a_closed_pipe_is_an_error_naming_the_sink() {
        let mut s = LineSink::new(
            "out",
            LineFormatter::new(LineFormat::Jsonl, &table()),
            ClosedPipe,
        );
        let r = Record::new(Seq(1), EventTime(0), ChannelId(0), 1.0);
        s.write(&[r]).unwrap(); // buffered
        let err = s.flush().unwrap_err();
        assert_eq!(err.sink, "out");
        assert_eq!(err.source.kind(), ErrorKind::BrokenPipe);
    }

    #[test]
    fn csv_gets_one_header_and_nothing_shows_before_flush() {
        let shared = Shared::default();
        let mut s = LineSink::new(
            "out",
            LineFormatter::new(LineFormat::Csv, &table()),
            shared.clone(),
        );
        let r = Record::new(Seq(3), EventTime(5), ChannelId(0), 2.5);
        s.write(&[r]).unwrap();
        s.write(&[r]).unwrap();
        assert!(shared.0.lock().unwrap().is_empty());
        s.flush().unwrap();
        assert_eq!(
            String::from_utf8(shared.0.lock().unwrap().clone()).unwrap(),
            "seq,time_ns,channel,value,quality\n3,5,battery.soc,2.5,good\n3,5,battery.soc,2.5,good\n"
        );
    }

    #[test]
    fn builds_from_params_and_rejects_unknown_formats() {
        let t = Arc::new(table());
        assert!(sink("out", &KIND, &[], &t, &[ChannelId(0)]).is_ok());
        let err = sink(
            "out",
            &KIND,
            &[("format", text("xml"))],
            &t,
            &[ChannelId(0)],
        )
        .err()
        .unwrap();
        assert_eq!(err.message, "`out`: format `xml` is not one of jsonl, csv");
    }
}
