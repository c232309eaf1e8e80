//! The controller's directory, its tracks and its fleet inventory.
//!
//! ```text
//! CTL/LOCK                    held by the running controller
//! CTL/ca/site-ca.pem, .key    the controller's CA: gateways' certificates chain to it
//! CTL/certs/controller.*      the controller's own certificate (name `controller`)
//! CTL/tracks.toml             the tracks and their thresholds (optional)
//! CTL/fleet.json              the inventory and the rollouts (write, fsync, rename)
//! CTL/ctl.sock                the socket `tandem ctl` commands talk to (0600)
//! CTL/addresses.json          where the running controller listens
//! ```
//!
//! `tracks.toml`:
//!
//! ```toml
//! [tracks.canary]
//! waves = [50, 100]          # cumulative percentages after wave 0
//! success_percent = 100      # of a wave, before the next starts
//! halt_after_failures = 1    # failures that halt the rollout fleet-wide
//! keys = "keys/canary"       # optional: *.pub bundles must be signed by
//! ```
//!
//! A track not in the file uses the defaults (waves [25, 100], 100 %, 1).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::plan::{Category, GatewayId, Millis, Policy, Rollout};

/// The largest `tracks.toml` read.
const MAX_TRACKS_BYTES: u64 = 64 << 10;
/// The format of `fleet.json`.
pub const FLEET_FORMAT: u32 = 1;

/// One track's settings.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
struct TrackFile {
    #[serde(default)]
    waves: Option<Vec<u8>>,
    #[serde(default)]
    success_percent: Option<u8>,
    #[serde(default)]
    halt_after_failures: Option<u32>,
    #[serde(default)]
    keys: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TracksFile {
    #[serde(default)]
    tracks: BTreeMap<String, TrackFile>,
}

/// A track as the controller runs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Track {
    /// Waves and thresholds.
    pub policy: Policy,
    /// A directory of public keys bundles for this track must be signed
    /// by, checked before a rollout starts (gateways check again).
    pub keys: Option<PathBuf>,
}

/// Every configured track, by name.
#[derive(Clone, Debug, Default)]
pub struct Tracks(pub BTreeMap<String, Track>);

impl Tracks {
    /// Reads `CTL/tracks.toml`; no file is no configured track.
    pub fn load(dir: &Path) -> Result<Tracks, String> {
        use std::io::Read as _;
        let path = dir.join("tracks.toml");
        let mut text = String::new();
        match std::fs::File::open(&path) {
            Ok(f) => f
                .take(MAX_TRACKS_BYTES)
                .read_to_string(&mut text)
                .map_err(|e| format!("{}: cannot read: {e}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Tracks::default()),
            Err(e) => return Err(format!("{}: cannot read: {e}", path.display())),
        };
        Tracks::parse(&text, dir).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Parses the text of `tracks.toml`; key directories are relative to `dir`.
    pub fn parse(text: &str, dir: &Path) -> Result<Tracks, String> {
        let file: TracksFile = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut tracks = BTreeMap::new();
        let mut errors = Vec::new();
        for (name, t) in file.tracks {
            let defaults = Policy::default();
            let policy = Policy {
                waves: t.waves.unwrap_or(defaults.waves),
                success_percent: t.success_percent.unwrap_or(defaults.success_percent),
                halt_after_failures: t
                    .halt_after_failures
                    .unwrap_or(defaults.halt_after_failures),
            };
            match policy.validate() {
                Ok(policy) => {
                    tracks.insert(
                        name,
                        Track {
                            policy,
                            keys: t.keys.map(|k| dir.join(k)),
                        },
                    );
                }
                Err(e) => errors.push(format!("track `{name}`: {e}")),
            }
        }
        if errors.is_empty() {
            Ok(Tracks(tracks))
        } else {
            Err(errors.join("; "))
        }
    }

    /// The settings of `name`: as configured, or the defaults.
    pub fn get(&self, name: &str) -> Track {
        self.0.get(name).cloned().unwrap_or(Track {
            policy: Policy::default(),
            keys: None,
        })
    }
}

/// One gateway of the fleet.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Gateway {
    /// Its name.
    pub id: GatewayId,
    /// Its hardware model.
    pub hardware: String,
    /// Its device models.
    pub devices: Vec<String>,
    /// Its release track.
    pub track: String,
    /// When it was enrolled.
    pub enrolled: Millis,
    /// The runtime version it said hello with.
    #[serde(default)]
    pub runtime: Option<String>,
    /// When it was last connected.
    #[serde(default)]
    pub last_seen: Option<Millis>,
    /// Its agent's last status (`tandem status --json`).
    #[serde(default)]
    pub status: Value,
    /// Its bundle history as last reported, oldest first.
    #[serde(default)]
    pub history: Vec<Value>,
}

impl Gateway {
    /// A gateway enrolled at `enrolled`, not yet heard from.
    pub fn new(
        id: GatewayId,
        hardware: String,
        devices: Vec<String>,
        track: String,
        enrolled: Millis,
    ) -> Gateway {
        Gateway {
            id,
            hardware,
            devices,
            track,
            enrolled,
            runtime: None,
            last_seen: None,
            status: Value::Null,
            history: Vec::new(),
        }
    }

    /// Its configuration category.
    pub fn category(&self) -> Category {
        Category::new(&self.hardware, &self.devices)
    }
}

/// What `fleet.json` holds.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Saved {
    /// [`FLEET_FORMAT`].
    pub format: u32,
    /// Every enrolled gateway.
    pub gateways: BTreeMap<GatewayId, Gateway>,
    /// Every rollout, oldest first.
    pub rollouts: Vec<Rollout>,
}

impl Saved {
    /// The id of the newest rollout (0: none yet); the next is one more.
    pub fn newest_rollout(&self) -> u64 {
        self.rollouts.iter().map(|r| r.id).max().unwrap_or(0)
    }

    /// Reads `CTL/fleet.json`; none is an empty fleet.
    pub fn load(dir: &Path) -> Result<Saved, String> {
        let path = dir.join("fleet.json");
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Saved {
                    format: FLEET_FORMAT,
                    ..Saved::default()
                })
            }
            Err(e) => return Err(format!("{}: cannot read: {e}", path.display())),
        };
        let saved: Saved = serde_json::from_str(&text).map_err(|e| {
            format!(
                "{}: error: does not decode ({e}); restore it from a backup, or move it away \
                 to start with an empty inventory",
                path.display()
            )
        })?;
        if saved.format != FLEET_FORMAT {
            return Err(format!(
                "{}: error: fleet format {}, this tandem reads format {FLEET_FORMAT}: run the \
                 tandem release that wrote it",
                path.display(),
                saved.format
            ));
        }
        Ok(saved)
    }

    /// The text of `fleet.json`.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    /// Writes `text` (of [`Saved::encode`]) as `CTL/fleet.json` (write,
    /// fsync, rename, fsync of the directory).
    pub fn write(dir: &Path, text: &[u8]) -> Result<(), String> {
        let path = dir.join("fleet.json");
        crate::private::write_atomically(&path, text)
            .map_err(|e| format!("{}: cannot write: {e}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn tracks_parse_with_defaults_and_name_bad_ones() {
        let text = r#"
[tracks.canary]
waves = [50]
keys = "keys/canary"

[tracks.stable]
success_percent = 80
halt_after_failures = 2
"#;
        let tracks = Tracks::parse(text, Path::new("/ctl")).unwrap();
        let canary = tracks.get("canary");
        assert_eq!(canary.policy.waves, vec![50, 100]);
        assert_eq!(canary.keys, Some(PathBuf::from("/ctl/keys/canary")));
        assert_eq!(tracks.get("stable").policy.halt_after_failures, 2);
        assert_eq!(tracks.get("other").policy, Policy::default());
        let bad = "[tracks.x]\nwaves = [60, 20]\n[tracks.y]\nsuccess_percent = 0\n";
        let e = Tracks::parse(bad, Path::new("/")).unwrap_err();
        assert!(e.contains("track `x`") && e.contains("track `y`"), "{e}");
    }

    #[test]
    fn the_inventory_survives_a_save_and_refuses_other_formats() {
        let dir = std::env::temp_dir().join(format!("tandem-inventory-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut saved = Saved::load(&dir).unwrap();
        let id = GatewayId::parse("gw-1").unwrap();
        let gateway = Gateway::new(
            id.clone(),
            "pi4".into(),
            vec!["inv".into()],
            "stable".into(),
            Millis(1),
        );
        saved.gateways.insert(id.clone(), gateway);
        Saved::write(&dir, &saved.encode()).unwrap();
        let back = Saved::load(&dir).unwrap();
        assert_eq!(back.gateways[&id].hardware, "pi4");
        let text = std::fs::read_to_string(dir.join("fleet.json"))
            .unwrap()
            .replace("\"format\": 1", "\"format\": 9");
        std::fs::write(dir.join("fleet.json"), text).unwrap();
        let e = Saved::load(&dir).unwrap_err();
        assert!(e.contains("fleet format 9"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
