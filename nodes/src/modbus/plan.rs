//! What one scan of a device reads, and how responses become readings.
//!
//! Pure: no sockets, no clock. The poller asks [`ScanPlan::requests`] in turn
//! and hands each [`Outcome`] to [`ScanPlan::fill`].

use tandem_core::Quality;
use tandem_firmware::modbus::{coalesce, decode, Point, Profile, ReadRequest};

/// One point's value in one scan.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Reading {
    /// The decoded value, NaN when the quality is not good.
    pub value: f64,
    /// Why the value is not a measurement, if it is not.
    pub quality: Quality,
}

impl Reading {
    /// A point that was not read: the link is down.
    pub const NOT_READ: Reading = Reading {
        value: f64::NAN,
        quality: Quality::COMM_ERROR,
    };

    const fn faulted() -> Reading {
        Reading {
            value: f64::NAN,
            quality: Quality::DEVICE_FAULT,
        }
    }
}

/// How one read request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome<'a> {
    /// The device answered with these registers (maybe not as many as asked).
    Registers(&'a [u16]),
    /// The device answered with a Modbus exception, or with something that
    /// is not a register read response.
    Fault,
    /// No answer: timeout, refused or dropped connection, garbled frame.
    Link,
}

/// The selected points of a profile and the coalesced reads that cover them.
#[derive(Clone, Debug, PartialEq)]
pub struct ScanPlan {
    /// Selected points, in profile order.
    points: Vec<Point>,
    /// Index of each selected point in the profile (and in the kind's outputs).
    outputs: Vec<usize>,
    /// The reads of one scan, in the order they are sent.
    requests: Vec<ReadRequest>,
    /// For each selected point, the request that covers it.
    request_of: Vec<usize>,
}

/// A scan plan could not be made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlanError {
    /// A name in `points` is not a point of the profile.
    UnknownPoint(String),
    /// `points` was given but empty.
    NoPoints,
    /// A point runs past register 0xFFFF (a broken profile table).
    Unreadable(&'static str),
}

impl ScanPlan {
    /// Plans reads of `selected` points of `profile` (all of them for `None`),
    /// merging reads across gaps of at most `max_gap` unused registers.
    pub fn new(
        profile: &Profile,
        selected: Option<&[String]>,
        max_gap: u16,
    ) -> Result<ScanPlan, PlanError> {
        let mut outputs = Vec::new();
        match selected {
            None => outputs.extend(0..profile.points.len()),
            Some([]) => return Err(PlanError::NoPoints),
            Some(names) => {
                for name in names {
                    let index = profile
                        .points
                        .iter()
                        .position(|p| p.name == name)
                        .ok_or_else(|| PlanError::UnknownPoint(name.clone()))?;
                    outputs.push(index);
                }
                outputs.sort_unstable();
                outputs.dedup();
            }
        }
        let points: Vec<Point> = outputs
            .iter()
            .filter_map(|&i| profile.points.get(i).copied())
            .collect();
        let requests: Vec<ReadRequest> = coalesce(&points, max_gap).collect();
        let request_of = points
            .iter()
            .map(|p| {
                requests
                    .iter()
                    .position(|r| r.covers(p))
                    .ok_or(PlanError::Unreadable(p.name))
            })
            .collect::<Result<Vec<usize>, PlanError>>()?;
        Ok(ScanPlan {
            points,
            outputs,
            requests,
            request_of,
        })
    }

    /// The reads of one scan, in order.
    pub fn requests(&self) -> &[ReadRequest] {
        &self.requests
    }

    /// Number of readings a scan gives (one per selected point).
    pub fn len(&self) -> usize {
        self.points.len()
    }

    /// True when no point is selected (never, for a plan that was built).
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// For each reading, the index of its point in the profile.
    pub fn outputs(&self) -> &[usize] {
        &self.outputs
    }

    /// Writes the readings of the points request `request` covers, from how
    /// it ended. A response with another number of registers than asked
    /// faults every point of the request; a float register holding NaN
    /// ("no value") faults its point. Returns false when the outcome is a
    /// malformed response.
    pub fn fill(&self, request: usize, outcome: Outcome<'_>, readings: &mut [Reading]) -> bool {
        let Some(req) = self.requests.get(request) else {
            return true;
        };
        let complete = match outcome {
            Outcome::Registers(words) => words.len() == usize::from(req.count),
            Outcome::Fault | Outcome::Link => true,
        };
        let points = self.points.iter().zip(&self.request_of);
        for ((point, _), reading) in points
            .zip(readings.iter_mut())
            .filter(|((_, r), _)| **r == request)
        {
            *reading = match outcome {
                Outcome::Link => Reading::NOT_READ,
                Outcome::Fault => Reading::faulted(),
                Outcome::Registers(_) if !complete => Reading::faulted(),
                Outcome::Registers(words) => req
                    .slice(point, words)
                    .and_then(|w| decode(point, w).ok())
                    .map_or(Reading::faulted(), |value| Reading {
                        value,
                        quality: Quality::GOOD,
                    }),
            };
        }
        complete
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tandem_firmware::modbus::profiles::{EASTRON_SDM630, HEIDELBERG_ENERGY_CONTROL};
    use tandem_firmware::modbus::FunctionCode::{ReadHolding, ReadInput};

    fn req(function: tandem_firmware::modbus::FunctionCode, start: u16, count: u16) -> ReadRequest {
        ReadRequest {
            function,
            start,
            count,
        }
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn all_sdm630_points_take_five_reads_without_gaps() {
        let plan = ScanPlan::new(&EASTRON_SDM630, None, 0).unwrap();
        assert_eq!(
            plan.requests(),
            [
                req(ReadInput, 0x0000, 18),
                req(ReadInput, 0x001E, 6),
                req(ReadInput, 0x0034, 2),
                req(ReadInput, 0x0046, 6),
                req(ReadInput, 0x0156, 2),
            ]
        );
        assert_eq!(plan.len(), 17);
    }

    #[test]
    fn a_gap_merges_reads_and_a_subset_reads_only_what_it_needs() {
        // The widest gap is 16 registers (0x24..0x34 and 0x36..0x46).
        let plan = ScanPlan::new(&EASTRON_SDM630, None, 16).unwrap();
        assert_eq!(
            plan.requests(),
            [req(ReadInput, 0x0000, 0x4C), req(ReadInput, 0x0156, 2)]
        );
        let plan = ScanPlan::new(&EASTRON_SDM630, None, 15).unwrap();
        assert_eq!(plan.requests().len(), 4);
        let subset = names(&["import_energy", "voltage_l1", "voltage_l1"]);
        let plan = ScanPlan::new(&EASTRON_SDM630, Some(&subset), 0).unwrap();
        assert_eq!(
            plan.requests(),
            [req(ReadInput, 0x0000, 2), req(ReadInput, 0x0048, 2)]
        );
        // Profile order, duplicates once: voltage_l1 is output 0, import_energy 14.
        assert_eq!(plan.outputs(), [0, 14]);
    }

    #[test]
    fn unknown_or_empty_selections_are_refused() {
        let bad = names(&["voltage_l1", "voltage_l4"]);
        assert_eq!(
            ScanPlan::new(&EASTRON_SDM630, Some(&bad), 0),
            Err(PlanError::UnknownPoint("voltage_l4".to_owned()))
        );
        assert_eq!(
            ScanPlan::new(&EASTRON_SDM630, Some(&[]), 0),
            Err(PlanError::NoPoints)
        );
    }

    #[test]
    fn responses_fill_the_points_of_their_request() {
        let plan = ScanPlan::new(&HEIDELBERG_ENERGY_CONTROL, None, 0).unwrap();
        assert_eq!(
            plan.requests(),
            [
                req(ReadHolding, 261, 1),
                req(ReadInput, 4, 9),
                req(ReadInput, 14, 5)
            ]
        );
        let mut readings = vec![Reading::NOT_READ; plan.len()];
        // max_current 16.0 A
        assert!(plan.fill(0, Outcome::Registers(&[160]), &mut readings));
        // power 11000 W, energy since power on 0x0001_0000 Wh, total 2 Wh
        assert!(plan.fill(
            2,
            Outcome::Registers(&[11_000, 0x0001, 0x0000, 0, 2]),
            &mut readings
        ));
        let values: Vec<(f64, Quality)> = readings.iter().map(|r| (r.value, r.quality)).collect();
        assert_eq!(values[12], (160.0 * 0.1, Quality::GOOD)); // max_current
        assert_eq!(values[9], (11_000.0, Quality::GOOD)); // power
        assert_eq!(values[10], (65_536.0 * 0.001, Quality::GOOD)); // Wh in kWh
        assert_eq!(values[11], (2.0 * 0.001, Quality::GOOD));
        assert!(readings[..9]
            .iter()
            .all(|r| r.quality == Quality::COMM_ERROR && r.value.is_nan()));
    }

    #[test]
    fn short_odd_and_failed_responses_flag_never_panic() {
        let plan = ScanPlan::new(&EASTRON_SDM630, None, 0).unwrap();
        let mut readings = vec![Reading::NOT_READ; plan.len()];
        // 18 registers asked, 3 given: every point of the request is faulted.
        assert!(!plan.fill(0, Outcome::Registers(&[0x4366, 0, 0]), &mut readings));
        assert!(readings[..9]
            .iter()
            .all(|r| r.quality == Quality::DEVICE_FAULT && r.value.is_nan()));
        assert!(!plan.fill(1, Outcome::Registers(&[]), &mut readings));
        // A NaN float register is a fault of that point only.
        let mut words = [0u16; 6];
        words[0] = 0x7FC0; // NaN
        words[2] = 0x3F80; // 1.0
        assert!(plan.fill(1, Outcome::Registers(&words), &mut readings));
        assert_eq!(readings[9].quality, Quality::DEVICE_FAULT);
        assert_eq!(
            (readings[10].value, readings[10].quality),
            (1.0, Quality::GOOD)
        );
        assert!(plan.fill(3, Outcome::Fault, &mut readings));
        assert!(plan.fill(4, Outcome::Link, &mut readings));
        assert_eq!(readings[13].quality, Quality::DEVICE_FAULT);
        assert_eq!(readings[16].quality, Quality::COMM_ERROR);
        // A request index past the plan and a short readings slice are ignored.
        assert!(plan.fill(99, Outcome::Fault, &mut readings));
        plan.fill(4, Outcome::Fault, &mut readings[..2]);
    }
}
