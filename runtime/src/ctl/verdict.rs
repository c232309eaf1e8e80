//! What counts as success for a rollout: the gateway's upgrade was
//! promoted *and* its in-box shadow comparison compared output and stayed
//! within the policy; "installed" is not enough. Pure.

use serde_json::Value;

use super::plan::BundleRef;

/// A gateway's outcome for one bundle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Promoted after a clean comparison.
    Success,
    /// Refused, rolled back, or promoted without a clean comparison.
    Failure(String),
}

/// Whether history `entry` is about `bundle`: the same SHA-256, or, when
/// the entry has none, the same name and version.
pub fn is_about(entry: &Value, bundle: &BundleRef) -> bool {
    match entry["sha256"].as_str() {
        Some(sha) => sha.eq_ignore_ascii_case(&bundle.sha256),
        None => {
            entry["name"].as_str() == Some(bundle.name.as_str())
                && entry["version"].as_str() == Some(bundle.version.as_str())
        }
    }
}

/// The verdict of history `entry` on `bundle`, or `None` when the entry is
/// about another bundle or is no outcome (yet).
pub fn judge(entry: &Value, bundle: &BundleRef) -> Option<Verdict> {
    if !is_about(entry, bundle) {
        return None;
    }
    let outcome = entry["outcome"].as_str().or(entry["result"].as_str())?;
    let reason = entry["reason"].as_str().map(str::to_owned);
    match outcome {
        "promoted" => Some(check_comparison(entry)),
        "installing" | "started" | "verified" | "accepted" => None,
        other => Some(Verdict::Failure(match reason {
            Some(reason) => format!("{other}: {reason}"),
            None => other.to_owned(),
        })),
    }
}

/// A promoted upgrade counts only with a comparison that ran and stayed
/// within its policy, and a second copy serving.
fn check_comparison(entry: &Value) -> Verdict {
    if let Some(warning) = entry["warning"].as_str() {
        return Verdict::Failure(format!("promoted, but {warning}"));
    }
    let comparison = if entry["comparison"].is_object() {
        &entry["comparison"]
    } else {
        entry
    };
    let Some(compared) = comparison["compared"].as_u64() else {
        return Verdict::Failure(
            "promoted, but the gateway reported no shadow comparison".to_owned(),
        );
    };
    if compared == 0 {
        return Verdict::Failure(
            "promoted without comparing any output in shadow (the old instance was lost?)"
                .to_owned(),
        );
    }
    let mismatched = comparison["mismatched"].as_u64().unwrap_or(0);
    let rate = mismatched as f64 / compared as f64;
    let floor = comparison["noise_floor"].as_f64().unwrap_or(0.0);
    let allowed = comparison["max_mismatch"].as_f64().unwrap_or(0.0);
    if rate > floor + allowed + 1e-12 {
        return Verdict::Failure(format!(
            "promoted, but {mismatched} of {compared} compared records diverged, past the \
             policy's {:.4} over a noise floor of {:.4}",
            allowed, floor
        ));
    }
    Verdict::Success
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn bundle() -> BundleRef {
        BundleRef {
            sha256: "aa".repeat(32),
            name: "home".into(),
            version: "2.0.0".into(),
        }
    }

    #[test]
    fn only_a_clean_promotion_succeeds() {
        let b = bundle();
        let ok = json!({"sha256": b.sha256, "outcome": "promoted",
                        "comparison": {"compared": 500, "mismatched": 0}});
        assert_eq!(judge(&ok, &b), Some(Verdict::Success));
        let other = json!({"sha256": "bb".repeat(32), "outcome": "promoted"});
        assert_eq!(judge(&other, &b), None);
        let by_name = json!({"name": "home", "version": "2.0.0", "outcome": "rolled back",
                             "reason": "divergence past policy"});
        assert_eq!(
            judge(&by_name, &b),
            Some(Verdict::Failure(
                "rolled back: divergence past policy".into()
            ))
        );
        let blind = json!({"sha256": b.sha256, "outcome": "promoted",
                           "comparison": {"compared": 0, "mismatched": 0}});
        assert!(matches!(judge(&blind, &b), Some(Verdict::Failure(_))));
        let noisy = json!({"sha256": b.sha256, "outcome": "promoted",
                           "comparison": {"compared": 100, "mismatched": 5, "max_mismatch": 0.01}});
        assert!(matches!(judge(&noisy, &b), Some(Verdict::Failure(r)) if r.contains("5 of 100")));
        let warned = json!({"sha256": b.sha256, "outcome": "promoted", "compared": 10,
                            "warning": "the second copy is not serving yet"});
        assert!(matches!(judge(&warned, &b), Some(Verdict::Failure(_))));
        let pending = json!({"sha256": b.sha256, "outcome": "installing"});
        assert_eq!(judge(&pending, &b), None);
    }
}
