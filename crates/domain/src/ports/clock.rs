//! The clock port: where "now" comes from, so tests can fix or advance time.

use time::OffsetDateTime;

/// A source of the current time.
///
/// Contract: successive calls never go backwards (adapters over the system clock may clamp),
/// because memory events are ordered by the time they were stamped.
pub trait Clock: Send + Sync {
    /// The current time, UTC.
    fn now(&self) -> OffsetDateTime;
}
