//! tandem-nodes: the processing vocabulary.
