//! Adapters for the ports of `butler-domain`.
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod telemetry;
