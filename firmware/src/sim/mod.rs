//! Simulated chips.
