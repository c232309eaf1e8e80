//! Home-energy vertices: battery state of charge, heat-pump COP, EV charging
//! sessions. Pure and deterministic, like the operators; one file per kind.

use tandem_core::KindSpec;

pub mod cop;
pub mod ev_session;
pub mod soc;
mod support;
#[cfg(test)]
mod testkit;

/// The kinds this module provides.
pub static KINDS: &[&KindSpec] = &[&soc::KIND, &cop::KIND, &ev_session::KIND];

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_core::{ParamDefault, ParamType, ParamValue};

    #[test]
    fn every_kind_documents_its_params_and_defaults_fit_their_types() {
        for kind in KINDS {
            assert_eq!(kind.version, 1, "{}", kind.name);
            assert!(kind.state_schema.is_some(), "{} keeps state", kind.name);
            assert!(!kind.doc.is_empty());
            for p in kind.params {
                assert!(!p.doc.is_empty(), "{}.{} has no doc", kind.name, p.name);
                let fits = match (p.ty, ParamValue::from_default(p.default)) {
                    (_, None) => matches!(p.default, ParamDefault::Required),
                    (ParamType::Float { min, max }, Some(ParamValue::Float(v))) => {
                        (min..=max).contains(&v)
                    }
                    (ParamType::Int { min, max }, Some(ParamValue::Int(v))) => {
                        (min..=max).contains(&v)
                    }
                    (ParamType::Duration { min_ns, max_ns }, Some(ParamValue::Duration(v))) => {
                        (min_ns..=max_ns).contains(&v)
                    }
                    (ParamType::Choice(options), Some(ParamValue::Text(v))) => {
                        options.contains(&v.as_str())
                    }
                    _ => false,
                };
                assert!(
                    fits,
                    "{}.{} default does not fit its type",
                    kind.name, p.name
                );
            }
        }
    }

    #[test]
    fn schema_ids_are_distinct() {
        let mut ids: Vec<_> = KINDS.iter().filter_map(|k| k.state_schema).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), KINDS.len());
    }
}
