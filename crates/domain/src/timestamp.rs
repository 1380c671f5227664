//! Timestamps at the precision every storage backend keeps.
//!
//! BSON dates hold milliseconds, so every time the domain creates is truncated to whole
//! milliseconds: a value written to SQLite or MongoDB reads back equal, and ordering by time
//! is the same in memory and in storage.

use time::OffsetDateTime;

/// Truncates `at` to whole milliseconds, in UTC.
#[must_use]
pub fn truncate_to_millis(at: OffsetDateTime) -> OffsetDateTime {
    let at = at.to_offset(time::UtcOffset::UTC);
    let nanos = at.nanosecond();
    at.replace_nanosecond(nanos - nanos % 1_000_000)
        .unwrap_or(at)
}

/// Milliseconds since the Unix epoch, the representation adapters store.
#[must_use]
pub fn to_unix_millis(at: OffsetDateTime) -> i64 {
    // i128 → i64 cannot overflow for any date `time` can represent divided down to ms.
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// The inverse of [`to_unix_millis`]; `None` for values outside the representable range.
#[must_use]
pub fn from_unix_millis(millis: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn truncation_drops_sub_millisecond_digits_and_normalises_to_utc() {
        let at = datetime!(2026-01-02 03:04:05.123_456_789 +02:00);
        let t = truncate_to_millis(at);
        assert_eq!(t, datetime!(2026-01-02 01:04:05.123 UTC));
        assert_eq!(t.offset(), time::UtcOffset::UTC);
    }

    #[test]
    fn unix_millis_round_trip() {
        let at = datetime!(2026-11-25 18:00:00.250 UTC);
        let ms = to_unix_millis(at);
        assert_eq!(from_unix_millis(ms), Some(at));
    }
}
