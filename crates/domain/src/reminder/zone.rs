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
}
