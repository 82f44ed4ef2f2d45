//! The protocol client `runner agent`, `runner submit` and `runner jobs` share. Being built (issue #18).
