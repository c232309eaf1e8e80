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
//! - `deadband` and `stale` pass them through flagged `OUT_OF_RANGE`
//!   without making them the reference value;
//! - the accumulating operators (`threshold`, `window`, `ewma`, `rate`,
//!   `integrate`, `join`) skip them: no output for that record, state
//!   unchanged (`window` flags the window that skipped one `UNCERTAIN`).
//!
//! A result that is not finite (overflow, division by zero) is emitted
//! flagged `OUT_OF_RANGE`.

mod common;
#[cfg(test)]
mod properties;
#[cfg(test)]
mod testkit;

pub mod convert;
pub mod deadband;
pub mod ewma;
pub mod integrate;
pub mod integrate_v2;
pub mod join;
pub mod range_check;
pub mod rate;
pub mod scale;
pub mod select;
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
    &integrate_v2::INTEGRATE_V2,
    &join::JOIN,
    &range_check::RANGE_CHECK,
    &rate::RATE,
    &scale::SCALE,
    &select::SELECT,
    &stale::STALE,
    &threshold::THRESHOLD,
    &window::WINDOW,
];

#[cfg(test)]
mod tests {
    use super::KINDS;
    use tandem_core::{ParamDefault, ParamType, Role};

    #[test]
    fn kinds_are_versioned_vertices_with_documented_params() {
        for kind in KINDS {
            assert!(kind.version >= 1, "{}", kind.name);
            assert_eq!(kind.role(), Role::Vertex, "{}", kind.name);
            assert!(!kind.doc.is_empty(), "{}", kind.name);
            assert_eq!(kind.outputs[0].suffix, "", "{}", kind.name);
            for p in kind.params {
                assert!(!p.doc.is_empty(), "{}.{}", kind.name, p.name);
                if let (ParamType::Choice(options), ParamDefault::Text(d)) = (p.ty, p.default) {
                    assert!(options.contains(&d), "{}.{} default {d}", kind.name, p.name);
                }
            }
        }
    }

    #[test]
    fn names_and_state_schemas_are_unique() {
        let mut names: Vec<_> = KINDS.iter().map(|k| (k.name, k.version)).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), KINDS.len());
        let mut schemas: Vec<_> = KINDS.iter().filter_map(|k| k.state_schema).collect();
        let stateful = schemas.len();
        schemas.sort_unstable();
        schemas.dedup();
        assert_eq!(schemas.len(), stateful);
        assert_eq!(stateful, 10);
    }
}
