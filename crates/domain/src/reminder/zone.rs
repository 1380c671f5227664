//! A user's time zone: a validated IANA name and its rules (daylight saving included), from
//! the tz database bundled with `jiff` — no file system access, the same answers everywhere.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

/// The zone used when neither the profile nor the operator names one.
pub const FALLBACK_TIME_ZONE: &str = "Europe/Moscow";

/// A name that is not an IANA time zone.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("unknown time zone {name:?}: expected an IANA name such as Europe/Moscow or UTC")]
pub struct UnknownTimeZone {
    /// The name given (at most 64 characters of it).
    pub name: String,
}

/// A user's time zone, by IANA name (`Europe/Moscow`, `America/New_York`, `UTC`).
#[derive(Clone)]
pub struct UserTimeZone {
    name: String,
    zone: jiff::tz::TimeZone,
}

impl UserTimeZone {
    /// The zone named `name`.
    ///
    /// # Errors
    /// [`UnknownTimeZone`] if the bundled tz database does not know it.
    pub fn new(name: &str) -> Result<Self, UnknownTimeZone> {
        let trimmed = name.trim();
        let unknown = || UnknownTimeZone {
            name: trimmed.chars().take(64).collect(),
        };
        if trimmed.is_empty() || trimmed.len() > 64 {
            return Err(unknown());
        }
        let zone = jiff::tz::TimeZone::get(trimmed).map_err(|_| unknown())?;
        let name = zone.iana_name().unwrap_or(trimmed).to_owned();
        Ok(Self { name, zone })
    }

    /// Coordinated Universal Time.
    #[must_use]
    pub fn utc() -> Self {
        Self {
            name: "UTC".to_owned(),
            zone: jiff::tz::TimeZone::UTC,
        }
    }

    /// The IANA name, as stored.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The zone's offset from UTC at `at`, as people write it: `UTC+5`, `UTC+5:30`, `UTC-4`,
    /// `UTC` (daylight saving included).
    #[must_use]
    pub fn offset_text(&self, at: time::OffsetDateTime) -> String {
        let seconds = jiff::Timestamp::from_second(at.unix_timestamp())
            .map_or(0, |t| self.zone.to_offset(t).seconds());
        if seconds == 0 {
            return "UTC".to_owned();
        }
        let sign = if seconds < 0 { '-' } else { '+' };
        let minutes = seconds.unsigned_abs() / 60;
        match minutes % 60 {
            0 => format!("UTC{sign}{}", minutes / 60),
            m => format!("UTC{sign}{}:{m:02}", minutes / 60),
        }
    }

    /// `at` on this zone's wall clock: `2026-12-08 09:00` (to the minute).
    #[must_use]
    pub fn wall_clock(&self, at: time::OffsetDateTime) -> String {
        self.format(at, "%Y-%m-%d %H:%M")
    }

    /// `at` in RFC 3339 with this zone's offset: `2026-12-08T09:00:00+05:00`.
    #[must_use]
    pub fn rfc3339(&self, at: time::OffsetDateTime) -> String {
        self.format(at, "%Y-%m-%dT%H:%M:%S%:z")
    }

    fn format(&self, at: time::OffsetDateTime, pattern: &str) -> String {
        let millis = crate::timestamp::to_unix_millis(at);
        jiff::Timestamp::from_millisecond(millis)
            .map(|t| {
                t.to_zoned_datetime(self.zone.clone())
                    .strftime(pattern)
                    .to_string()
            })
            .unwrap_or_else(|_| at.to_string())
    }

    pub(crate) fn zone(&self) -> &jiff::tz::TimeZone {
        &self.zone
    }
}

impl PartialEq for UserTimeZone {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for UserTimeZone {}

impl fmt::Debug for UserTimeZone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("UserTimeZone").field(&self.name).finish()
    }
}

impl fmt::Display for UserTimeZone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl FromStr for UserTimeZone {
    type Err = UnknownTimeZone;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iana_names_are_accepted_and_others_rejected() {
        assert_eq!(
            UserTimeZone::new("Europe/Moscow").map(|z| z.name().to_owned()),
            Ok("Europe/Moscow".to_owned())
        );
        assert!(UserTimeZone::new("UTC").is_ok());
        assert!(UserTimeZone::new(FALLBACK_TIME_ZONE).is_ok());
        assert!(UserTimeZone::new("Mars/Olympus").is_err());
        assert!(UserTimeZone::new("").is_err());
    }

    #[test]
    fn offsets_are_written_as_people_write_them_daylight_saving_included() {
        use time::macros::datetime;
        let winter = datetime!(2027-01-15 12:00 UTC);
        let summer = datetime!(2027-07-15 12:00 UTC);
        let zone = |name| UserTimeZone::new(name).unwrap();
        assert_eq!(zone("Asia/Yekaterinburg").offset_text(winter), "UTC+5");
        assert_eq!(zone("Asia/Kolkata").offset_text(winter), "UTC+5:30");
        assert_eq!(zone("America/New_York").offset_text(winter), "UTC-5");
        assert_eq!(zone("America/New_York").offset_text(summer), "UTC-4");
        assert_eq!(zone("Europe/London").offset_text(winter), "UTC");
        assert_eq!(zone("Europe/London").offset_text(summer), "UTC+1");
        assert_eq!(
            zone("Asia/Yekaterinburg").wall_clock(winter),
            "2027-01-15 17:00"
        );
        assert_eq!(
            zone("America/New_York").rfc3339(summer),
            "2027-07-15T08:00:00-04:00"
        );
    }
}
