//! Frames exchanged between the agent and instances: length-prefixed,
//! versioned, size-capped, validated before use.
