//! Periodic checkpoints of vertex state in the state directory.
