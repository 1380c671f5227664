//! # butler-factory
//!
//! Settings and wiring: reads the configuration once, chooses adapters (SQLite or MongoDB,
//! HTTP or embedded LLM, speech-to-text if configured, the token counter) and builds the use
//! cases from them. The only crate that knows every adapter.
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod bot;
pub mod compression_tasks;
pub mod metered;
pub mod metrics;
pub mod models;
pub mod runtime;
pub mod settings;
pub mod wiring;

pub use compression_tasks::BackgroundCompressor;
pub use settings::{Settings, SettingsError};
pub use wiring::{build, App, BuildError};
