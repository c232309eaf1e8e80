//! Channel names interned to dense ids when a graph is loaded.

use crate::record::ChannelId;
use std::collections::BTreeMap;

/// The channels of one graph: names and units, indexed by [`ChannelId`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChannelTable {
    names: Vec<String>,
    units: Vec<String>,
    by_name: BTreeMap<String, ChannelId>,
}

impl ChannelTable {
    /// An empty table.
    pub fn new() -> ChannelTable {
        ChannelTable::default()
    }

    /// The id of `name`, adding it with `unit` if it is new.
    pub fn intern(&mut self, name: &str, unit: &str) -> ChannelId {
        if let Some(id) = self.by_name.get(name) {
            return *id;
        }
        let id = ChannelId(u32::try_from(self.names.len()).unwrap_or(u32::MAX));
        self.names.push(name.to_owned());
        self.units.push(unit.to_owned());
        self.by_name.insert(name.to_owned(), id);
        id
    }

    /// The id of an existing channel.
    pub fn get(&self, name: &str) -> Option<ChannelId> {
        self.by_name.get(name).copied()
    }

    /// The name of `id`, or `"?"` for an id this table never gave out.
    pub fn name(&self, id: ChannelId) -> &str {
        self.names.get(id.index()).map_or("?", String::as_str)
    }

    /// The unit of `id` ("" when unitless or unknown).
    pub fn unit(&self, id: ChannelId) -> &str {
        self.units.get(id.index()).map_or("", String::as_str)
    }

    /// Number of channels.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// True when no channel is interned.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// All names, sorted, for "did you mean" messages.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interning_is_idempotent_and_dense() {
        let mut t = ChannelTable::new();
        let a = t.intern("battery.soc", "%");
        let b = t.intern("battery.voltage", "V");
        assert_eq!(t.intern("battery.soc", "%"), a);
        assert_eq!((a, b), (ChannelId(0), ChannelId(1)));
        assert_eq!(t.name(b), "battery.voltage");
        assert_eq!(t.unit(b), "V");
        assert_eq!(t.name(ChannelId(9)), "?");
    }
}
