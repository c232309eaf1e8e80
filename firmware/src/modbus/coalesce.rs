//! Batching a profile's points into few read requests.

use alloc::vec::Vec;

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
        let from = usize::from(point.address - self.start);
        words.get(from..from + usize::from(point.words()))
    }
}

/// Groups `points` into read requests: points with the same function whose
/// registers are contiguous, or separated by at most `max_gap` unused
/// registers, share one request of at most [`MAX_REGISTERS_PER_READ`]
/// registers. Requests come out sorted by function, then address. Points
/// that run past register 0xFFFF cannot be read and are left out.
///
/// `max_gap = 0` only merges adjacent or overlapping points; a small gap
/// saves round trips on devices that answer reads of unmapped registers
/// (the Eastron meters do), a gap of 0 is safe for those that reject them.
pub fn coalesce(points: &[Point], max_gap: u16) -> Vec<ReadRequest> {
    let mut spans: Vec<(FunctionCode, u32, u32)> = points
        .iter()
        .map(|p| {
            let start = u32::from(p.address);
            (p.function, start, start + u32::from(p.words()))
        })
        .filter(|(_, _, end)| *end <= 0x1_0000)
        .collect();
    spans.sort_unstable_by_key(|(f, start, end)| (*f, *start, *end));

    let max = u32::from(MAX_REGISTERS_PER_READ);
    let mut out: Vec<ReadRequest> = Vec::new();
    let mut current: Option<(FunctionCode, u32, u32)> = None;
    for (f, start, end) in spans {
        current = match current {
            Some((cf, cs, ce))
                if cf == f && start <= ce + u32::from(max_gap) && end.max(ce) - cs <= max =>
            {
                Some((cf, cs, end.max(ce)))
            }
            Some(done) => {
                out.push(request(done));
                Some((f, start, end))
            }
            None => Some((f, start, end)),
        };
    }
    if let Some(done) = current {
        out.push(request(done));
    }
    out
}

fn request((function, start, end): (FunctionCode, u32, u32)) -> ReadRequest {
    // start < 0x10000 and end - start <= 125 by construction
    ReadRequest {
        function,
        start: start as u16,
        count: (end - start) as u16,
    }
}
