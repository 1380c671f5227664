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

/// A profile's stored zone name, read by both storage adapters. A name the bundled tz database
/// no longer knows reads as none (the operator's `DEFAULT_TIME_ZONE` applies) rather than
/// making the whole profile unreadable.
fn stored_zone(name: Option<String>) -> Option<butler_domain::reminder::UserTimeZone> {
    let name = name?;
    butler_domain::reminder::UserTimeZone::new(&name)
        .map_err(|error| tracing::warn!(%error, "stored time zone unknown; using the default"))
        .ok()
}
