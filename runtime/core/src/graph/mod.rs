//! Graph files: TOML parsed into a GraphSpec, validated into a [`crate::Plan`].
