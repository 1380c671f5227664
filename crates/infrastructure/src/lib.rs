//! # butler-infrastructure
//!
//! Adapters for the ports of `butler-domain`: storage (SQLite, MongoDB), the OpenAI-compatible
//! LLM and speech-to-text clients, exact token counters, telemetry. Driver and HTTP types never
//! leave this crate; errors carry context, never secrets or message text.
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]
pub mod clock;
mod http;
pub mod llm;
pub mod mongo;
pub mod sqlite;
pub mod stt;
pub mod telemetry;
pub mod tokens;
