//! Topics and payloads: what a consumer of the `mqtt` sink sees.
//!
//! A record's **idempotency key** is `GATEWAY/CHANNEL/SEQ`, with `/ORDINAL`
//! appended for the second and later records of one channel that share a
//! sequence number (a window closing several panes at one input record).
//! Origin sequence numbers are never reused by a gateway, across restarts
//! too, so a consumer that keeps the keys it has seen drops every
//! duplicate and nothing else.
//!
//! One record per message (`batch = 1`), on the channel's topic:
//!
//! ```json
//! {"key":"gw1/battery.soc/12","gateway":"gw1","channel":"battery.soc","seq":12,"time_ns":1767225600000000000,"value":55.25,"quality":"good"}
//! ```
//!
//! Several records of one channel per message (`batch > 1`), in order:
//!
//! ```json
//! {"gateway":"gw1","channel":"battery.soc","records":[{"key":"gw1/battery.soc/12","seq":12,"time_ns":1767225600000000000,"value":55.25,"quality":"good"},{"key":"gw1/battery.soc/13",...}]}
//! ```
//!
//! A record with an ordinal carries `"ordinal":N` after `seq`. A value that
//! is not finite is `null`. Values are written in Rust's shortest round-trip
//! form, so parsing gives back the exact `f64`.

use crate::io::spool::Entry;
use std::io::Write as _;
use tandem_core::Quality;

/// A topic template: text with `{gateway}`, `{channel}` and `{sink}` in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template(String);

impl Template {
    /// Checks a template: non-empty, no MQTT wildcards (`+`, `#`), no empty
    /// level, and only the known placeholders. The error says what is wrong.
    pub fn parse(text: &str) -> Result<Template, String> {
        if text.is_empty() {
            return Err("is empty; write a topic such as \"tandem/{gateway}/{channel}\"".into());
        }
        if text.contains(['+', '#', '\0']) {
            return Err(format!(
                "`{text}` holds `+`, `#` or NUL, which a topic to publish to may not"
            ));
        }
        if text.starts_with('/') || text.ends_with('/') || text.contains("//") {
            return Err(format!("`{text}` has an empty topic level"));
        }
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            let Some(close) = rest[open..].find('}') else {
                return Err(format!("`{text}` has a `{{` with no `}}`"));
            };
            let name = &rest[open + 1..open + close];
            if !matches!(name, "gateway" | "channel" | "sink") {
                return Err(format!(
                    "`{text}` uses `{{{name}}}`; the placeholders are {{gateway}}, {{channel}} and {{sink}}"
                ));
            }
            rest = &rest[open + close + 1..];
        }
        if rest.contains('}') {
            return Err(format!("`{text}` has a `}}` with no `{{`"));
        }
        Ok(Template(text.to_owned()))
    }

    /// The topic for one channel.
    pub fn render(&self, gateway: &str, sink: &str, channel: &str) -> String {
        self.0
            .replace("{gateway}", gateway)
            .replace("{sink}", sink)
            .replace("{channel}", channel)
    }
}

/// Checks an explicit gateway id: it appears in topics, keys and Home
/// Assistant ids, so it is letters, digits, `-` and `_`.
pub fn check_gateway(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > 64 {
        return Err(format!(
            "`{id}` must be 1 to 64 characters: letters, digits, `-` and `_`"
        ));
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        return Err(format!(
            "`{id}` holds `{c}`; a gateway id is letters, digits, `-` and `_`"
        ));
    }
    Ok(())
}

/// A host name made fit to be a gateway id: other characters become `_`.
pub fn gateway_from_host(host: &str) -> String {
    let id: String = host
        .trim()
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if id.is_empty() {
        "gateway".into()
    } else {
        id
    }
}

/// Writes the JSON of messages into a reused buffer.
#[derive(Debug)]
pub struct Encoder {
    gateway: String,
}

impl Encoder {
    /// An encoder for records of `gateway`.
    pub fn new(gateway: &str) -> Encoder {
        Encoder {
            gateway: gateway.to_owned(),
        }
    }

    /// `out` becomes the message for `entries` of `channel`: one record
    /// alone when `batch` is false, else a batch.
    pub fn message(&self, channel: &str, entries: &[&Entry], batch: bool, out: &mut Vec<u8>) {
        out.clear();
        // `"GATEWAY/CHANNEL/` escaped once; each key ends it with its numbers.
        let mut prefix = Vec::with_capacity(self.gateway.len() + channel.len() + 4);
        json_string(&format!("{}/{channel}/", self.gateway), &mut prefix);
        prefix.pop();
        if !batch {
            if let Some(entry) = entries.first() {
                out.push(b'{');
                key(&prefix, entry, out);
                out.extend_from_slice(b",\"gateway\":");
                json_string(&self.gateway, out);
                out.extend_from_slice(b",\"channel\":");
                json_string(channel, out);
                out.push(b',');
                fields(entry, out);
                out.push(b'}');
            }
            return;
        }
        out.extend_from_slice(b"{\"gateway\":");
        json_string(&self.gateway, out);
        out.extend_from_slice(b",\"channel\":");
        json_string(channel, out);
        out.extend_from_slice(b",\"records\":[");
        for (i, entry) in entries.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.push(b'{');
            key(&prefix, entry, out);
            out.push(b',');
            fields(entry, out);
            out.push(b'}');
        }
        out.extend_from_slice(b"]}");
    }
}

/// `"key":"GATEWAY/CHANNEL/SEQ[/ORDINAL]"`, `prefix` being the escaped
/// `"GATEWAY/CHANNEL/`.
fn key(prefix: &[u8], entry: &Entry, out: &mut Vec<u8>) {
    out.extend_from_slice(b"\"key\":");
    out.extend_from_slice(prefix);
    let _ = write!(out, "{}", entry.seq.0);
    if entry.ordinal > 0 {
        let _ = write!(out, "/{}", entry.ordinal);
    }
    out.push(b'"');
}

/// The idempotency key of `entry` of `channel` from `gateway`.
pub fn key_of(gateway: &str, channel: &str, entry: &Entry) -> String {
    if entry.ordinal > 0 {
        format!("{gateway}/{channel}/{}/{}", entry.seq.0, entry.ordinal)
    } else {
        format!("{gateway}/{channel}/{}", entry.seq.0)
    }
}

/// `"seq":..,["ordinal":..,]"time_ns":..,"value":..,"quality":".."`.
fn fields(entry: &Entry, out: &mut Vec<u8>) {
    let _ = write!(out, "\"seq\":{}", entry.seq.0);
    if entry.ordinal > 0 {
        let _ = write!(out, ",\"ordinal\":{}", entry.ordinal);
    }
    let _ = write!(out, ",\"time_ns\":{},\"value\":", entry.time.0);
    if entry.value.is_finite() {
        let _ = write!(out, "{:?}", entry.value);
    } else {
        out.extend_from_slice(b"null");
    }
    out.extend_from_slice(b",\"quality\":\"");
    quality(entry.quality, out);
    out.extend_from_slice(b"\"");
}

fn quality(q: Quality, out: &mut Vec<u8>) {
    if q.is_good() {
        out.extend_from_slice(b"good");
    } else {
        let _ = write!(out, "{q}");
    }
}

/// `s` as a JSON string literal.
pub fn json_string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tandem_core::{EventTime, Seq};

    fn entry(seq: u64, ordinal: u32, value: f64) -> Entry {
        Entry {
            seq: Seq(seq),
            time: EventTime(1_767_225_600_000_000_000),
            value,
            quality: Quality::GOOD,
            channel: 0,
            ordinal,
        }
    }

    #[test]
    fn one_record_per_message_is_an_exact_json_object() {
        let mut out = Vec::new();
        Encoder::new("gw1").message("battery.soc", &[&entry(12, 0, 55.25)], false, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap_or_default(),
            r#"{"key":"gw1/battery.soc/12","gateway":"gw1","channel":"battery.soc","seq":12,"time_ns":1767225600000000000,"value":55.25,"quality":"good"}"#
        );
    }

    #[test]
    fn a_batch_keys_every_record_and_ordinals_and_non_finite_values_show() {
        let mut out = Vec::new();
        let mut flagged = entry(13, 1, f64::NAN);
        flagged.quality = Quality::STALE | Quality::OUT_OF_RANGE;
        Encoder::new("gw1").message("soc", &[&entry(12, 0, 1.0), &flagged], true, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap_or_default(),
            concat!(
                r#"{"gateway":"gw1","channel":"soc","records":["#,
                r#"{"key":"gw1/soc/12","seq":12,"time_ns":1767225600000000000,"value":1.0,"quality":"good"},"#,
                r#"{"key":"gw1/soc/13/1","seq":13,"ordinal":1,"time_ns":1767225600000000000,"value":null,"quality":"out_of_range|stale"}]}"#
            )
        );
        assert_eq!(key_of("gw1", "soc", &flagged), "gw1/soc/13/1");
    }

    #[test]
    fn templates_refuse_wildcards_unknown_placeholders_and_empty_levels() {
        let t = Template::parse("tandem/{gateway}/{channel}").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.render("gw", "up", "battery.soc"), "tandem/gw/battery.soc");
        assert!(Template::parse("a/+/b").unwrap_err().contains("`+`"));
        assert!(Template::parse("a/{chanel}")
            .unwrap_err()
            .contains("{chanel}"));
        assert!(Template::parse("a//b")
            .unwrap_err()
            .contains("empty topic level"));
        assert!(Template::parse("a/{gateway")
            .unwrap_err()
            .contains("no `}`"));
        assert!(Template::parse("").is_err());
    }

    #[test]
    fn gateway_ids_are_checked_and_host_names_made_fit() {
        assert!(check_gateway("garage-1_b").is_ok());
        assert!(check_gateway("a.b").unwrap_err().contains("`.`"));
        assert!(check_gateway("").is_err());
        assert_eq!(gateway_from_host("pi.local\n"), "pi_local");
        assert_eq!(gateway_from_host(""), "gateway");
    }
}
