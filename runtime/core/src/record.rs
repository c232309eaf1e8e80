//! Records, the values that flow through a graph, and the newtypes they carry.

use core::fmt;

/// Origin sequence number, assigned once at ingress. Total order of the input.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(transparent)]
pub struct Seq(pub u64);

impl Seq {
    /// Before the first record: nothing has been sent yet.
    pub const ZERO: Seq = Seq(0);
    /// The end of the stream: the sender will never send again.
    pub const END: Seq = Seq(u64::MAX);

    /// The next sequence number.
    #[must_use]
    pub fn next(self) -> Seq {
        Seq(self.0.saturating_add(1))
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Event time in nanoseconds since the Unix epoch, stamped once at ingress.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(transparent)]
pub struct EventTime(pub i64);

impl EventTime {
    /// Nanoseconds in one second.
    pub const NANOS_PER_SEC: i64 = 1_000_000_000;

    /// Event time from whole seconds.
    pub const fn from_secs(secs: i64) -> EventTime {
        EventTime(secs.saturating_mul(Self::NANOS_PER_SEC))
    }

    /// Event time from milliseconds.
    pub const fn from_millis(ms: i64) -> EventTime {
        EventTime(ms.saturating_mul(1_000_000))
    }

    /// Seconds as a float, for arithmetic in operators.
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / Self::NANOS_PER_SEC as f64
    }

    /// `self - earlier` in seconds.
    pub fn secs_since(self, earlier: EventTime) -> f64 {
        self.0.saturating_sub(earlier.0) as f64 / Self::NANOS_PER_SEC as f64
    }

    /// This time moved by `nanos`.
    #[must_use]
    pub const fn add_nanos(self, nanos: i64) -> EventTime {
        EventTime(self.0.saturating_add(nanos))
    }
}

/// Dense id of an interned channel name ("battery.soc"). Assigned when a graph is loaded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(transparent)]
pub struct ChannelId(pub u32);

impl ChannelId {
    /// The id as an index into per-channel tables.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// Quality flags of a record. Zero means good.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct Quality(pub u32);

impl Quality {
    /// A good measurement.
    pub const GOOD: Quality = Quality(0);
    /// The value lies outside the configured or physical range.
    pub const OUT_OF_RANGE: Quality = Quality(1 << 0);
    /// The bus or the link to the device failed; the value is not a measurement.
    pub const COMM_ERROR: Quality = Quality(1 << 1);
    /// The device reported a fault (open RTD, alarm bit, exception response).
    pub const DEVICE_FAULT: Quality = Quality(1 << 2);
    /// No fresh reading arrived within the expected event-time interval.
    pub const STALE: Quality = Quality(1 << 3);
    /// Derived from inputs of which at least one was not good.
    pub const UNCERTAIN: Quality = Quality(1 << 4);
    /// The value was substituted or estimated, not measured.
    pub const ESTIMATED: Quality = Quality(1 << 5);

    /// Names of the flags, in bit order, as written by sinks.
    pub const NAMES: [(Quality, &'static str); 6] = [
        (Quality::OUT_OF_RANGE, "out_of_range"),
        (Quality::COMM_ERROR, "comm_error"),
        (Quality::DEVICE_FAULT, "device_fault"),
        (Quality::STALE, "stale"),
        (Quality::UNCERTAIN, "uncertain"),
        (Quality::ESTIMATED, "estimated"),
    ];

    /// True when no flag is set.
    pub const fn is_good(self) -> bool {
        self.0 == 0
    }

    /// True when every flag of `other` is set in `self`.
    pub const fn contains(self, other: Quality) -> bool {
        self.0 & other.0 == other.0
    }

    /// Both sets of flags.
    #[must_use]
    pub const fn with(self, other: Quality) -> Quality {
        Quality(self.0 | other.0)
    }
}

impl core::ops::BitOr for Quality {
    type Output = Quality;
    fn bitor(self, rhs: Quality) -> Quality {
        self.with(rhs)
    }
}

impl core::ops::BitOrAssign for Quality {
    fn bitor_assign(&mut self, rhs: Quality) {
        self.0 |= rhs.0;
    }
}

impl fmt::Display for Quality {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_good() {
            return f.write_str("good");
        }
        let mut first = true;
        for (flag, name) in Quality::NAMES {
            if self.contains(flag) {
                if !first {
                    f.write_str("|")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        let known = Quality::NAMES.iter().fold(0, |acc, (q, _)| acc | q.0);
        if self.0 & !known != 0 {
            if !first {
                f.write_str("|")?;
            }
            write!(f, "0x{:x}", self.0 & !known)?;
        }
        Ok(())
    }
}

/// One measured or derived quantity at one instant. 32 bytes, `Copy`, no heap.
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C)]
pub struct Record {
    /// Origin sequence number of the ingress record this one descends from.
    pub seq: Seq,
    /// Event time, stamped at ingress.
    pub time: EventTime,
    /// Which quantity this is.
    pub channel: ChannelId,
    /// Quality flags.
    pub quality: Quality,
    /// The value, in the channel's unit.
    pub value: f64,
}

impl Record {
    /// A good record.
    pub const fn new(seq: Seq, time: EventTime, channel: ChannelId, value: f64) -> Record {
        Record {
            seq,
            time,
            channel,
            quality: Quality::GOOD,
            value,
        }
    }

    /// A record derived from `self`: same origin and time, another channel and value.
    #[must_use]
    pub const fn derive(&self, channel: ChannelId, value: f64) -> Record {
        Record {
            seq: self.seq,
            time: self.time,
            channel,
            quality: self.quality,
            value,
        }
    }

    /// The same record with more quality flags set.
    #[must_use]
    pub const fn flagged(mut self, quality: Quality) -> Record {
        self.quality = self.quality.with(quality);
        self
    }

    /// Bitwise identity, the equality determinism is checked with (NaN equals NaN).
    pub fn bit_eq(&self, other: &Record) -> bool {
        self.seq == other.seq
            && self.time == other.time
            && self.channel == other.channel
            && self.quality == other.quality
            && self.value.to_bits() == other.value.to_bits()
    }
}

/// A run of records plus the sender's frontier.
///
/// The frontier is the highest origin sequence number up to which the sender
/// has nothing more to send: every record with `seq <= frontier` has been
/// sent in this batch or an earlier one. [`Seq::END`] closes the stream.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Batch {
    /// The records, in non-decreasing `seq` order.
    pub records: Vec<Record>,
    /// Nothing more will come at or below this sequence number.
    pub frontier: Seq,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_is_32_bytes_and_copy() {
        assert_eq!(core::mem::size_of::<Record>(), 32);
        let a = Record::new(Seq(1), EventTime(2), ChannelId(3), 4.0);
        let b = a;
        assert!(a.bit_eq(&b));
    }

    #[test]
    fn quality_displays_flag_names() {
        assert_eq!(Quality::GOOD.to_string(), "good");
        let q = Quality::OUT_OF_RANGE | Quality::STALE;
        assert_eq!(q.to_string(), "out_of_range|stale");
        assert_eq!(Quality(1 << 20).to_string(), "0x100000");
    }

    #[test]
    fn bit_eq_distinguishes_what_partial_eq_cannot() {
        let a = Record::new(Seq(1), EventTime(0), ChannelId(0), f64::NAN);
        assert!(a.bit_eq(&a));
        let z = Record::new(Seq(1), EventTime(0), ChannelId(0), 0.0);
        let nz = Record::new(Seq(1), EventTime(0), ChannelId(0), -0.0);
        assert_eq!(z, nz);
        assert!(!z.bit_eq(&nz));
    }
}
