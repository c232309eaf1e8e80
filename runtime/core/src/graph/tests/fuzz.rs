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
}
