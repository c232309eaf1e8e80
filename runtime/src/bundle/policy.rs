//! Whether a gateway takes a bundle whose signatures and payloads are good:
//! expiry, compatibility, constraints, kinds and migrations, the
//! anti-rollback floor and revocations, in that order. Pure: the time, the
//! gateway's identity and what it has installed are parameters.

use semver::Version;
use tandem_core::Registry;

use super::floor::Floor;
use super::manifest::Manifest;
use super::revocation::Revocation;
use super::time::UnixTime;
use super::trust::Identity;

/// What a gateway is and has, as the policy sees it.
#[derive(Clone, Copy, Debug)]
pub struct Gateway<'a> {
    /// The time of the check (the caller reads the clock once).
    pub now: UnixTime,
    /// Its hardware and site ids.
    pub identity: &'a Identity,
    /// What it has installed: each bundle's committed version, which is
    /// also its anti-rollback floor.
    pub floor: &'a Floor,
    /// The revocations it recorded.
    pub revoked: &'a [Revocation],
    /// The version of the tandem runtime that checks (this build's).
    pub runtime: &'a Version,
    /// The vertex kinds of this build.
    pub registry: &'a Registry,
}

/// The version of this build of the runtime, for `min_runtime`.
pub fn runtime_version() -> Version {
    Version::parse(env!("CARGO_PKG_VERSION")).unwrap_or_else(|_| Version::new(0, 0, 0))
}

/// Why a gateway does not take a bundle.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyRefusal {
    /// Past its expiry.
    #[error(
        "it expired at {expires} (it is {now} now); ask for a bundle signed with a later expiry"
    )]
    Expired {
        /// Its expiry.
        expires: UnixTime,
        /// The time of the check.
        now: UnixTime,
    },
    /// Not for this gateway's hardware or site.
    #[error("it is for {what} {listed}; this gateway's {what} is {ours}")]
    Incompatible {
        /// `hardware` or `site`.
        what: &'static str,
        /// The ids it lists.
        listed: String,
        /// This gateway's id, or `not set (CONFIG/gateway.toml)`.
        ours: String,
    },
    /// A `depends` constraint does not hold.
    #[error("it depends on {constraint}, but this gateway has {found}")]
    Depends {
        /// The constraint.
        constraint: String,
        /// What the gateway has of it.
        found: String,
    },
    /// A `conflicts` constraint holds.
    #[error("it conflicts with {constraint}, and this gateway has {name} {version} installed")]
    Conflicts {
        /// The constraint.
        constraint: String,
        /// The bundle.
        name: String,
        /// Its installed version.
        version: Version,
    },
    /// The runtime is too old.
    #[error("it needs tandem runtime {needed} or newer; this gateway runs {runtime}: install a runtime bundle first")]
    MinRuntime {
        /// `min_runtime`.
        needed: Version,
        /// This build's version.
        runtime: Version,
    },
    /// A vertex kind this runtime does not have, or has with another state schema.
    #[error("it uses vertex kind {kind}, which this runtime ({runtime}) does not have{has}")]
    UnknownKind {
        /// The kind as declared.
        kind: String,
        /// This build's version.
        runtime: Version,
        /// `; it has ...`, or nothing.
        has: String,
    },
    /// A migration this runtime cannot run.
    #[error("it needs migration {migration}, which this runtime ({runtime}) does not have{has}")]
    UnknownMigration {
        /// The migration's id.
        migration: String,
        /// This build's version.
        runtime: Version,
        /// `; it has ...`, or nothing.
        has: String,
    },
    /// Not newer than the floor.
    #[error("{name} {version} is not newer than {floor}, which this gateway installed (anti-rollback); only a version above {floor} is accepted")]
    NotNewer {
        /// The bundle.
        name: String,
        /// Its version.
        version: Version,
        /// The floor.
        floor: Version,
    },
    /// Revoked.
    #[error("{name} {version} was revoked{reason}; install another version")]
    Revoked {
        /// The bundle.
        name: String,
        /// Its version.
        version: Version,
        /// `: REASON`, or nothing.
        reason: String,
    },
}

fn id_matches(listed: &[String], ours: Option<&str>) -> bool {
    listed
        .iter()
        .any(|id| id == "*" || Some(id.as_str()) == ours)
}

/// Checks `m` against gateway `g`: the first refusal, or `Ok`.
pub fn check(m: &Manifest, g: &Gateway<'_>) -> Result<(), PolicyRefusal> {
    if g.now >= m.expires {
        return Err(PolicyRefusal::Expired {
            expires: m.expires,
            now: g.now,
        });
    }
    for (what, listed, ours) in [
        (
            "hardware",
            &m.compatible.hardware,
            g.identity.hardware.as_deref(),
        ),
        ("site", &m.compatible.sites, g.identity.site.as_deref()),
    ] {
        if !id_matches(listed, ours) {
            return Err(PolicyRefusal::Incompatible {
                what,
                listed: listed.join(", "),
                ours: ours.map_or_else(
                    || "not set (give it in the config directory's gateway.toml)".into(),
                    str::to_owned,
                ),
            });
        }
    }
    for c in &m.depends {
        match g.floor.get(c.name.as_str()) {
            Some(v) if c.matches(v) => {}
            found => {
                return Err(PolicyRefusal::Depends {
                    constraint: c.to_string(),
                    found: found
                        .map_or_else(|| format!("no {}", c.name), |v| format!("{} {v}", c.name)),
                })
            }
        }
    }
    for c in &m.conflicts {
        if let Some(v) = g.floor.get(c.name.as_str()).filter(|v| c.matches(v)) {
            return Err(PolicyRefusal::Conflicts {
                constraint: c.to_string(),
                name: c.name.to_string(),
                version: v.clone(),
            });
        }
    }
    if let Some(needed) = m.min_runtime.as_ref().filter(|n| *n > g.runtime) {
        return Err(PolicyRefusal::MinRuntime {
            needed: needed.clone(),
            runtime: g.runtime.clone(),
        });
    }
    for k in &m.kinds {
        let found = g.registry.get(&k.name, Some(k.version));
        let same = found.is_some_and(|f| f.state_schema.map(|s| s.0) == k.state_schema);
        if !same {
            let has: Vec<String> = g
                .registry
                .kinds()
                .filter(|f| f.name == k.name)
                .map(|f| match f.state_schema {
                    Some(s) => format!("{} v{} (state schema {s})", f.name, f.version),
                    None => format!("{} v{}", f.name, f.version),
                })
                .collect();
            return Err(PolicyRefusal::UnknownKind {
                kind: k.to_string(),
                runtime: g.runtime.clone(),
                has: if has.is_empty() {
                    String::new()
                } else {
                    format!("; it has {}", has.join(", "))
                },
            });
        }
    }
    for id in &m.migrations {
        let kinds: Vec<_> = g.registry.kinds().filter(|k| k.name == id.kind).collect();
        let known = kinds.iter().any(|k| {
            k.migrations
                .iter()
                .any(|s| s.from.0 == id.from && s.to.0 == id.to)
        });
        if !known {
            let mut has: Vec<String> = kinds
                .iter()
                .flat_map(|k| k.migrations.iter())
                .map(|s| format!("{}:{}->{}", id.kind, s.from, s.to))
                .collect();
            has.sort();
            has.dedup();
            return Err(PolicyRefusal::UnknownMigration {
                migration: id.to_string(),
                runtime: g.runtime.clone(),
                has: if has.is_empty() {
                    String::new()
                } else {
                    format!("; it has {}", has.join(", "))
                },
            });
        }
    }
    check_floor(m, g.floor, g.revoked)
}

/// The checks of [`check`] that what the gateway holds can change after
/// them: `m` above the anti-rollback `floor` of its name, and not revoked.
pub fn check_floor(
    m: &Manifest,
    floor: &Floor,
    revoked: &[Revocation],
) -> Result<(), PolicyRefusal> {
    if let Some(floor) = floor.get(m.name.as_str()).filter(|f| m.version <= **f) {
        return Err(PolicyRefusal::NotNewer {
            name: m.name.to_string(),
            version: m.version.clone(),
            floor: floor.clone(),
        });
    }
    if let Some(r) = revoked
        .iter()
        .find(|r| r.revokes(m.name.as_str(), &m.version, m.track.as_str()))
    {
        return Err(PolicyRefusal::Revoked {
            name: m.name.to_string(),
            version: m.version.clone(),
            reason: if r.reason.is_empty() {
                String::new()
            } else {
                format!(": {}", r.reason)
            },
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::super::manifest::{Constraint, KindDecl, MigrationId, Name};
    use super::*;

    fn manifest() -> Manifest {
        let mut m = crate::bundle::manifest::tests_support::sample();
        m.depends.clear();
        m.conflicts.clear();
        m
    }

    struct World {
        identity: Identity,
        floor: Floor,
        revoked: Vec<Revocation>,
        runtime: Version,
        registry: Registry,
    }

    impl World {
        fn new() -> World {
            World {
                identity: Identity {
                    hardware: Some("gw-3".into()),
                    site: Some("site-7".into()),
                },
                floor: Floor::default(),
                revoked: Vec::new(),
                runtime: Version::new(0, 1, 0),
                registry: tandem_nodes::registry(),
            }
        }

        fn check(&self, m: &Manifest, now: i64) -> Result<(), String> {
            check(
                m,
                &Gateway {
                    now: UnixTime(now),
                    identity: &self.identity,
                    floor: &self.floor,
                    revoked: &self.revoked,
                    runtime: &self.runtime,
                    registry: &self.registry,
                },
            )
            .map_err(|e| e.to_string())
        }
    }

    const NOW: i64 = 1_767_225_600;

    #[test]
    fn a_good_bundle_passes() {
        World::new().check(&manifest(), NOW).unwrap();
    }

    #[test]
    fn an_expired_bundle_is_refused() {
        let e = World::new().check(&manifest(), 1_800_000_000).unwrap_err();
        assert_eq!(
            e,
            "it expired at 2027-01-15T08:00:00Z (it is 2027-01-15T08:00:00Z now); ask for a bundle signed with a later expiry"
        );
    }

    #[test]
    fn a_bundle_for_other_hardware_or_sites_is_refused() {
        let mut m = manifest();
        m.compatible.hardware = vec!["gw-4".into(), "gw-5".into()];
        let e = World::new().check(&m, NOW).unwrap_err();
        assert_eq!(
            e,
            "it is for hardware gw-4, gw-5; this gateway's hardware is gw-3"
        );
        let mut m = manifest();
        m.compatible.sites = vec!["site-8".into()];
        let mut w = World::new();
        w.identity.site = None;
        let e = w.check(&m, NOW).unwrap_err();
        assert!(
            e.starts_with("it is for site site-8; this gateway's site is not set"),
            "{e}"
        );
    }

    #[test]
    fn constraints_must_hold() {
        let mut w = World::new();
        let mut m = manifest();
        m.depends = vec![Constraint::parse("battery-graph >= 2.14").unwrap()];
        assert_eq!(
            w.check(&m, NOW).unwrap_err(),
            "it depends on battery-graph >=2.14, but this gateway has no battery-graph"
        );
        w.floor = w.floor.raised("battery-graph", &Version::new(2, 13, 0));
        assert_eq!(
            w.check(&m, NOW).unwrap_err(),
            "it depends on battery-graph >=2.14, but this gateway has battery-graph 2.13.0"
        );
        w.floor = w.floor.raised("battery-graph", &Version::new(2, 14, 1));
        w.check(&m, NOW).unwrap();
        m.conflicts = vec![Constraint::parse("battery-graph < 3").unwrap()];
        assert_eq!(
            w.check(&m, NOW).unwrap_err(),
            "it conflicts with battery-graph <3, and this gateway has battery-graph 2.14.1 installed"
        );
        let mut m = manifest();
        m.min_runtime = Some(Version::new(9, 0, 0));
        assert!(w
            .check(&m, NOW)
            .unwrap_err()
            .starts_with("it needs tandem runtime 9.0.0 or newer; this gateway runs 0.1.0"));
    }

    #[test]
    fn kinds_and_migrations_must_be_this_runtimes() {
        let w = World::new();
        let mut m = manifest();
        m.migrations = vec![MigrationId::parse("integrate:999->1016").unwrap()];
        assert_eq!(
            w.check(&m, NOW).unwrap_err(),
            "it needs migration integrate:999->1016, which this runtime (0.1.0) does not have; it has integrate:1006->1016"
        );
        let mut m = manifest();
        m.kinds = vec![KindDecl {
            name: "integrate".into(),
            version: 2,
            state_schema: Some(1006),
        }];
        let e = w.check(&m, NOW).unwrap_err();
        assert!(
            e.starts_with("it uses vertex kind integrate v2 (state schema 1006), which this runtime (0.1.0) does not have; it has integrate v1 (state schema 1006), integrate v2 (state schema 1016)"),
            "{e}"
        );
    }

    #[test]
    fn older_equal_and_revoked_versions_are_refused() {
        let mut w = World::new();
        let m = manifest();
        w.floor = w.floor.raised("home", &Version::new(1, 2, 0));
        assert_eq!(
            w.check(&m, NOW).unwrap_err(),
            "home 1.2.0 is not newer than 1.2.0, which this gateway installed (anti-rollback); only a version above 1.2.0 is accepted"
        );
        w.floor = Floor::default().raised("home", &Version::new(1, 3, 0));
        assert!(w
            .check(&m, NOW)
            .unwrap_err()
            .contains("not newer than 1.3.0"));
        w.floor = Floor::default();
        w.revoked.push(Revocation {
            name: Name::parse("home").unwrap(),
            version: Version::new(1, 2, 0),
            track: Name::parse("stable").unwrap(),
            reason: "bad calibration".into(),
        });
        assert_eq!(
            w.check(&m, NOW).unwrap_err(),
            "home 1.2.0 was revoked: bad calibration; install another version"
        );
    }
}
