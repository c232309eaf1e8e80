//! See the crate docs.

use tandem_core::KindSpec;

/// The kinds this module provides.
pub static KINDS: &[&KindSpec] = &[];
