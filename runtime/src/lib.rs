//! tandem: the shell around the pure core.
