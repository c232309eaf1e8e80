//! The graph's feature toggles under `tandem up`: switched by `tandem
//! toggle` through their sources, their positions kept across restarts.

use std::collections::BTreeMap;

use tandem_nodes::io::toggles::Switches;
use tokio::sync::watch;

/// Why a toggle is not switched.
#[derive(Debug, thiserror::Error)]
pub enum ToggleError {
    /// The graph declares none.
    #[error(
        "the graph has no toggles; declare them with a source such as \
         [sources.features] kind = \"toggles\", names = [\"new_cop\"]"
    )]
    NoToggles,
    /// No toggle has that name.
    #[error("no toggle `{name}`; the graph's toggles are {listed}")]
    Unknown {
        /// The name asked for.
        name: String,
        /// Every toggle, `SOURCE.NAME`, comma-separated.
        listed: String,
    },
    /// Several sources have a toggle of that name.
    #[error("`{name}` names several toggles; give one of {listed}")]
    Ambiguous {
        /// The name asked for.
        name: String,
        /// Every toggle, `SOURCE.NAME`, comma-separated.
        listed: String,
    },
}

/// The `toggles` sources of the graph and each toggle's position.
pub(super) struct Toggles {
    /// The sources, by node id.
    sources: Vec<(String, Switches)>,
    /// Positions to keep on disk: a writer off the hub's loop saves the
    /// latest (an fsync on the loop would hold the records up).
    kept: watch::Sender<BTreeMap<String, bool>>,
}

impl Toggles {
    /// `sources`, at the positions `kept` holds (the graph's `on` list, or
    /// the kept positions, at start); each switch is sent to `kept`.
    pub(super) fn new(
        sources: Vec<(String, Switches)>,
        kept: watch::Sender<BTreeMap<String, bool>>,
    ) -> Toggles {
        Toggles { sources, kept }
    }

    /// Each toggle's position as last asked.
    pub(super) fn positions(&self) -> BTreeMap<String, bool> {
        self.kept.borrow().clone()
    }

    /// Switches toggle `name` (`NAME` or `SOURCE.NAME`) through its source;
    /// what was switched (`SOURCE.NAME on`).
    pub(super) fn switch(&mut self, name: &str, on: bool) -> Result<String, ToggleError> {
        let all: Vec<(String, &Switches, &str)> = self
            .sources
            .iter()
            .flat_map(|(id, sw)| sw.names().map(move |n| (format!("{id}.{n}"), sw, n)))
            .collect();
        if all.is_empty() {
            return Err(ToggleError::NoToggles);
        }
        let matching: Vec<&(String, &Switches, &str)> = all
            .iter()
            .filter(|(full, _, short)| full == name || *short == name)
            .collect();
        let listed = || {
            all.iter()
                .map(|(full, _, _)| full.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        match matching.as_slice() {
            [(full, switches, short)] => {
                switches.switch(short, on);
                let said = format!("toggle {full} {}", if on { "on" } else { "off" });
                self.kept.send_modify(|positions| {
                    positions.insert(full.clone(), on);
                });
                Ok(said)
            }
            [] => Err(ToggleError::Unknown {
                name: name.to_owned(),
                listed: listed(),
            }),
            _ => Err(ToggleError::Ambiguous {
                name: name.to_owned(),
                listed: listed(),
            }),
        }
    }
}
