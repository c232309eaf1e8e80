//! No input makes `load` panic.

use super::*;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = load("g.toml", &bytes, &registry());
    }

    #[test]
    fn mutated_graph_files_never_panic(
        cut in 0usize..HOME.len(),
        flips in proptest::collection::vec((0usize..HOME.len(), any::<u8>()), 0..6),
        insert in proptest::collection::vec((0usize..HOME.len(), "[\\[\\]\"=.,*a-z0-9 \n]{0,12}"), 0..3),
    ) {
        let mut bytes = HOME.as_bytes().to_vec();
        for (at, text) in insert.iter().rev() {
            let at = (*at).min(bytes.len());
            bytes.splice(at..at, text.bytes());
        }
        for (at, xor) in flips {
            if let Some(b) = bytes.get_mut(at) {
                *b ^= xor;
            }
        }
        let _ = load("g.toml", &bytes, &registry());
        let _ = load("g.toml", &bytes[..cut.min(bytes.len())], &registry());
    }

    #[test]
    fn mutated_ha_tables_never_panic(
        flips in proptest::collection::vec((0usize..HA.len(), any::<u8>()), 0..4),
        insert in proptest::collection::vec((0usize..HA.len(), "[\\[\\]\".=,a-z0-9 \n-]{0,12}"), 0..3),
    ) {
        let mut bytes = HA.as_bytes().to_vec();
        for (at, text) in insert.iter().rev() {
            let at = (*at).min(bytes.len());
            bytes.splice(at..at, text.bytes());
        }
        for (at, xor) in flips {
            if let Some(b) = bytes.get_mut(at) {
                *b ^= xor;
            }
        }
        let mut file = HOME.as_bytes().to_vec();
        file.extend_from_slice(&bytes);
        let _ = load("g.toml", &file, &registry());
    }
}

const HA: &str = "[ha]\nretention = 4096\nheartbeat = \"2ms\"\ntimeout = 0.1\nsupervise = \"1m\"\nmax_mismatch = 0.5\n[ha.tolerance]\n\"soc\" = 1e-9\nbattery.current = 1\n";
