//! Batching a profile's points into few read requests, without allocating.

use super::{FunctionCode, Point};

/// Most registers one Read Holding/Input Registers request may ask for.
pub const MAX_REGISTERS_PER_READ: u16 = 125;

/// One Modbus read: `count` registers from `start` with `function`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadRequest {
    /// read function
    pub function: FunctionCode,
    /// first register address
    pub start: u16,
    /// number of registers (1..=125)
    pub count: u16,
}

impl ReadRequest {
    /// True when the request covers all of `point`'s registers.
    pub fn covers(&self, point: &Point) -> bool {
        let start = u32::from(self.start);
        let end = start + u32::from(self.count);
        let p = u32::from(point.address);
        point.function == self.function && p >= start && p + u32::from(point.words()) <= end
    }

    /// `point`'s registers out of this request's response `words`, or
    /// `None` when the request does not cover the point or the response is
    /// short.
    pub fn slice<'a>(&self, point: &Point, words: &'a [u16]) -> Option<&'a [u16]> {
        if !self.covers(point) {
            return None;
        }
        let from = usize::from(point.address.checked_sub(self.start)?);
        words.get(from..from + usize::from(point.words()))
    }
}

/// Groups `points` into read requests: points with the same function whose
/// registers are contiguous, or separated by at most `max_gap` unused
/// registers, share one request of at most [`MAX_REGISTERS_PER_READ`]
/// registers. Requests come out sorted by function, then address; every
/// readable point is covered by exactly the request it was merged into.
/// Points that run past register 0xFFFF cannot be read and are left out.
///
/// `max_gap = 0` only merges adjacent or overlapping points; a small gap
/// saves round trips on devices that answer reads of unmapped registers
/// (the Eastron meters do), a gap of 0 is safe for those that reject them.
///
/// The iterator does not allocate (it rescans the table for each point,
/// which is fine for tables of a few hundred points); collect it once when
/// the profile is loaded.
pub fn coalesce(points: &[Point], max_gap: u16) -> Coalesce<'_> {
    Coalesce {
        points,
        max_gap,
        last: None,
    }
}

/// Sort key of a point: function, start, end, then table index as a
/// tie-breaker so that equal spans are still consumed one by one.
type Key = (FunctionCode, u32, u32, usize);

/// Iterator returned by [`coalesce`].
#[derive(Debug, Clone)]
pub struct Coalesce<'a> {
    points: &'a [Point],
    max_gap: u16,
    last: Option<Key>,
}

impl Coalesce<'_> {
    /// The smallest readable point key after the last consumed one.
    fn peek(&self) -> Option<Key> {
        self.points
            .iter()
            .enumerate()
            .filter_map(|(i, p)| {
                let start = u32::from(p.address);
                let end = start + u32::from(p.words());
                (end <= 0x1_0000).then_some((p.function, start, end, i))
            })
            .filter(|k| self.last.is_none_or(|last| *k > last))
            .min()
    }
}

impl Iterator for Coalesce<'_> {
    type Item = ReadRequest;

    fn next(&mut self) -> Option<ReadRequest> {
        let first = self.peek()?;
        self.last = Some(first);
        let (function, start, mut end, _) = first;
        let max = u32::from(MAX_REGISTERS_PER_READ);
        while let Some(k @ (f, s, e, _)) = self.peek() {
            if f != function || s > end + u32::from(self.max_gap) || e.max(end) - start > max {
                break;
            }
            end = end.max(e);
            self.last = Some(k);
        }
        // start < 0x10000 and end - start <= 125 by construction
        Some(ReadRequest {
            function,
            start: start as u16,
            count: (end - start) as u16,
        })
    }
}
