//! Generic operators: pure, deterministic vertices that run inside instances.
//!
//! Every operator with one input ignores records of other channels. Output
//! records keep the seq and event time of the input record that caused them
//! (windows are the exception for time: a window's output is stamped with the
//! window's end). Stateful operators keep their state in a plain rkyv struct
//! with a state schema id (see each kind's `state_schema`).
//!
//! Non-finite input values (NaN, ±inf) never enter state:
//! - stateless maps (`scale`, `convert`, `range_check`) pass them through
//!   flagged `OUT_OF_RANGE`;
//! - `deadband` and `stale` pass them through (flagged `OUT_OF_RANGE` for
//!   `deadband`) without making them the reference value;
//! - the accumulating operators (`threshold`, `window`, `ewma`, `rate`,
//!   `integrate`, `join`) skip them: no output for that record, state
//!   unchanged (`window` flags the window that skipped one `UNCERTAIN`).

mod common;
#[cfg(test)]
mod testkit;

pub mod convert;
pub mod deadband;
pub mod ewma;
pub mod integrate;
pub mod join;
pub mod range_check;
pub mod rate;
pub mod scale;
pub mod stale;
pub mod threshold;
pub mod window;

use tandem_core::KindSpec;

/// The kinds this module provides.
pub static KINDS: &[&KindSpec] = &[
    &convert::CONVERT,
    &deadband::DEADBAND,
    &ewma::EWMA,
    &integrate::INTEGRATE,
    &join::JOIN,
    &range_check::RANGE_CHECK,
    &rate::RATE,
    &scale::SCALE,
    &stale::STALE,
    &threshold::THRESHOLD,
    &window::WINDOW,
];
