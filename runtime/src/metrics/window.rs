//! Rates and latency quantiles over the last few seconds of one node's
//! samples. Pure: the time of each sample is given.

use std::collections::VecDeque;
use std::time::Duration;

use super::live::{bucket_floor, LatencySample, NodeSample};

/// How far back rates and quantiles look.
pub const SPAN: Duration = Duration::from_secs(5);

/// Quantiles reported, as a Prometheus summary would.
pub const QUANTILES: [f64; 3] = [0.5, 0.99, 0.999];

#[derive(Clone, Debug)]
struct Point {
    at: Duration,
    records_in: u64,
    records_out: u64,
    latency: LatencySample,
}

/// One node's recent samples.
#[derive(Clone, Debug, Default)]
pub struct Window {
    points: VecDeque<Point>,
}

/// What a window says about its node.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Recent {
    /// Records consumed per second.
    pub in_per_sec: f64,
    /// Records produced per second.
    pub out_per_sec: f64,
    /// Seconds per call at each of [`QUANTILES`]; `None` with no call in the window.
    pub latency: Option<[f64; 3]>,
}

impl Window {
    /// Adds a sample taken at `at` (any monotonic origin). Counters that went
    /// back mean the node was started again (an instance restarted): the
    /// window starts over.
    pub fn push(&mut self, at: Duration, sample: &NodeSample) {
        let restarted = self.points.back().is_some_and(|p| {
            sample.records_in < p.records_in
                || sample.records_out < p.records_out
                || sample.latency.calls < p.latency.calls
        });
        if restarted {
            self.points.clear();
        }
        self.points.push_back(Point {
            at,
            records_in: sample.records_in,
            records_out: sample.records_out,
            latency: sample.latency.clone(),
        });
        // Keep one point at or before the span's start, as the baseline.
        while self.points.len() > 2 && self.points[1].at + SPAN <= at {
            self.points.pop_front();
        }
    }

    /// Rates and quantiles between the oldest kept sample and the newest.
    /// With one sample, rates are 0 and quantiles cover the node's life.
    pub fn recent(&self) -> Recent {
        let (Some(first), Some(last)) = (self.points.front(), self.points.back()) else {
            return Recent::default();
        };
        let secs = last.at.saturating_sub(first.at).as_secs_f64();
        let per_sec = |a: u64, b: u64| {
            if secs > 0.0 {
                b.saturating_sub(a) as f64 / secs
            } else {
                0.0
            }
        };
        let baseline = if self.points.len() > 1 {
            &first.latency
        } else {
            &LatencySample::default()
        };
        Recent {
            in_per_sec: per_sec(first.records_in, last.records_in),
            out_per_sec: per_sec(first.records_out, last.records_out),
            latency: quantiles(baseline, &last.latency),
        }
    }
}

/// Quantiles of the calls in `to` and not in `from`, in seconds: each is
/// the middle of the bucket it falls in.
pub fn quantiles(from: &LatencySample, to: &LatencySample) -> Option<[f64; 3]> {
    let mut before = from.buckets.iter().peekable();
    let counts: Vec<(u16, u64)> = to
        .buckets
        .iter()
        .map(|&(index, n)| {
            while before.peek().is_some_and(|(i, _)| *i < index) {
                before.next();
            }
            let old = match before.peek() {
                Some(&&(i, old)) if i == index => old,
                _ => 0,
            };
            (index, n.saturating_sub(old))
        })
        .filter(|&(_, n)| n > 0)
        .collect();
    let total = counts
        .iter()
        .fold(0u64, |sum, &(_, n)| sum.saturating_add(n));
    if total == 0 {
        return None;
    }
    let mut out = [0.0; 3];
    for (slot, q) in out.iter_mut().zip(QUANTILES) {
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for &(index, n) in &counts {
            seen = n.saturating_add(seen);
            if seen >= rank {
                let lo = bucket_floor(usize::from(index));
                let hi = bucket_floor(usize::from(index) + 1).max(lo + 1);
                *slot = (lo + (hi - lo - 1) / 2) as f64 / 1e9;
                break;
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::metrics::live::bucket_of;
    use tandem_core::Role;

    fn sample(records: u64, latencies: &[(u64, u64)]) -> NodeSample {
        let mut buckets: Vec<(u16, u64)> = latencies
            .iter()
            .map(|&(ns, n)| (bucket_of(ns) as u16, n))
            .collect();
        buckets.sort_unstable();
        NodeSample {
            id: "v".into(),
            role: Role::Vertex,
            records_in: records,
            records_out: records * 2,
            errors: 0,
            drops: 0,
            high_water: 0,
            latency: LatencySample {
                calls: latencies.iter().map(|&(_, n)| n).sum(),
                total_ns: latencies.iter().map(|&(ns, n)| ns * n).sum(),
                buckets,
            },
        }
    }

    #[test]
    fn rates_cover_the_last_span_only() {
        let mut w = Window::default();
        for s in 0..=20u64 {
            // 100 records a second for 10 s, then 1000 a second.
            let records = if s <= 10 {
                s * 100
            } else {
                1000 + (s - 10) * 1000
            };
            w.push(Duration::from_secs(s), &sample(records, &[]));
        }
        let recent = w.recent();
        assert_eq!(recent.in_per_sec, 1000.0);
        assert_eq!(recent.out_per_sec, 2000.0);
        assert_eq!(recent.latency, None);
    }

    #[test]
    fn quantiles_are_of_the_calls_in_the_window_within_an_eighth() {
        let mut w = Window::default();
        // A slow start (1 ms per call) that falls out of the window.
        w.push(Duration::ZERO, &sample(10, &[(1_000_000, 100)]));
        w.push(Duration::from_secs(6), &sample(20, &[(1_000_000, 100)]));
        w.push(
            Duration::from_secs(7),
            &sample(30, &[(1_000, 990), (1_000_000, 100), (50_000, 10)]),
        );
        let [p50, p99, p999] = w.recent().latency.unwrap();
        let near = |x: f64, want: f64| (x - want).abs() <= want / 8.0;
        assert!(near(p50, 1e-6), "p50 {p50}");
        assert!(near(p99, 1e-6), "p99 {p99}");
        assert!(near(p999, 50e-6), "p999 {p999}");
    }

    #[test]
    fn a_restarted_node_starts_a_new_window() {
        let mut w = Window::default();
        w.push(Duration::ZERO, &sample(1000, &[]));
        w.push(Duration::from_secs(1), &sample(2000, &[]));
        w.push(Duration::from_secs(2), &sample(10, &[(2_000, 5)]));
        let recent = w.recent();
        assert_eq!(recent.in_per_sec, 0.0);
        let [p50, ..] = recent.latency.unwrap();
        assert!((p50 - 2e-6).abs() < 2e-6 / 8.0);
    }
}
