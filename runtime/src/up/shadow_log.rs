//! The shadow log: a shadow instance's output records as JSON lines
//! tagged `"shadow": true`, for people to study a new version's output.

use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::Path;
use std::sync::Arc;

use serde::Serialize;
use tandem_core::ha::Color;
use tandem_core::{ChannelTable, Quality, Record};

/// One line of the shadow log.
#[derive(Serialize)]
struct Line<'a> {
    shadow: bool,
    color: &'a str,
    version: Option<&'a str>,
    seq: u64,
    time_ns: i64,
    channel: &'a str,
    /// `null` when not finite, as JSON has no NaN.
    value: f64,
    #[serde(serialize_with = "display")]
    quality: Quality,
}

/// `good`, `stale|estimated`: the quality as the rest of tandem writes it.
fn display<S: serde::Serializer>(quality: &Quality, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(quality)
}

/// Where shadow output goes, if anywhere.
pub(super) struct ShadowLog {
    out: Option<BufWriter<File>>,
    /// Written since the last flush.
    dirty: bool,
    channels: Arc<ChannelTable>,
}

impl ShadowLog {
    /// Appends to `path` (none: shadow output is not kept). A file that
    /// cannot be opened is a warning, and shadow output is not kept.
    pub(super) fn open(path: Option<&Path>, channels: Arc<ChannelTable>) -> ShadowLog {
        let out = path.and_then(|path| {
            let opened = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path);
            match opened {
                Ok(file) => Some(BufWriter::new(file)),
                Err(e) => {
                    tracing::warn!(
                        "{}: cannot open the shadow log: {e}; shadow output is not kept",
                        path.display()
                    );
                    None
                }
            }
        });
        ShadowLog {
            out,
            dirty: false,
            channels,
        }
    }

    /// Appends `color`'s output `records`, made by `version`: one line
    /// each, written straight into the buffer (no allocation per record).
    pub(super) fn append(&mut self, color: Color, version: Option<u32>, records: &[Record]) {
        let Some(out) = self.out.as_mut() else {
            return;
        };
        let version = version.map(|v| format!("{v:08x}"));
        for r in records {
            let line = Line {
                shadow: true,
                color: color.name(),
                version: version.as_deref(),
                seq: r.seq.0,
                time_ns: r.time.0,
                channel: self.channels.name(r.channel),
                value: r.value,
                quality: r.quality,
            };
            let written = serde_json::to_writer(&mut *out, &line)
                .map_err(std::io::Error::from)
                .and_then(|()| out.write_all(b"\n"));
            if written.is_err() {
                self.fail();
                return;
            }
        }
        self.dirty |= !records.is_empty();
    }

    /// Writes what is buffered, if anything is.
    pub(super) fn flush(&mut self) {
        if !std::mem::take(&mut self.dirty) {
            return;
        }
        if let Some(out) = self.out.as_mut() {
            if out.flush().is_err() {
                self.fail();
            }
        }
    }

    fn fail(&mut self) {
        tracing::warn!("cannot write the shadow log; shadow output is not kept");
        self.out = None;
        self.dirty = false;
    }
}
