//! Readings of the agent's status answer (what `tandem status --json`
//! prints; runtime/src/up/status.rs).

use serde_json::Value;

/// Blue's and green's pids when both are connected and serving.
pub fn serving_pids(status: &Value) -> Option<[i32; 2]> {
    let mut pids = [0; 2];
    for (slot, color) in pids.iter_mut().zip(["blue", "green"]) {
        let i = status["instances"]
            .as_array()?
            .iter()
            .find(|i| i["color"] == color)?;
        if i["connected"] != true || i["role"] != "serving" {
            return None;
        }
        *slot = i32::try_from(i["pid"].as_u64()?).ok()?;
    }
    Some(pids)
}

/// Every instance connected and serving, and no upgrade under way.
pub fn both_serving(status: &Value) -> bool {
    status["instances"].as_array().is_some_and(|all| {
        !all.is_empty()
            && all
                .iter()
                .all(|i| i["role"] == "serving" && i["connected"] == true)
    }) && status["upgrade"]["phase"] == "idle"
}

/// The instances' pids, blue first, of those that have one.
pub fn instance_pids(status: &Value) -> Vec<i32> {
    status["instances"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i32::try_from(i["pid"].as_u64()?).ok())
        .collect()
}

/// Restarts of both instances so far.
pub fn restarts(status: &Value) -> u64 {
    status["instances"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["restarts"].as_u64())
        .sum()
}

/// The id of the last barrier both instances reported, 0 before any.
pub fn last_barrier_id(status: &Value) -> u64 {
    status["last_barrier"]["id"].as_u64().unwrap_or(0)
}
