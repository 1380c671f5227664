//! Settings and wiring of adapters into use cases.
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]
