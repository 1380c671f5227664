//! The user identifier: a Telegram user id (or any stable numeric id from another front end).

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

/// Identifies one user of the butler. Telegram user ids are 64-bit signed integers; the
/// terminal chat uses the same type so memories are interchangeable between front ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UserId(i64);

impl UserId {
    /// Wraps a raw numeric id.
    #[must_use]
    pub const fn new(raw: i64) -> Self {
        Self(raw)
    }

    /// The raw numeric id, as stored by adapters.
    #[must_use]
    pub const fn get(self) -> i64 {
        self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl From<i64> for UserId {
    fn from(raw: i64) -> Self {
        Self(raw)
    }
}

/// A string that is not a valid [`UserId`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid user id {input:?}: expected an integer such as 123456789")]
pub struct ParseUserIdError {
    /// The rejected input (user ids are not secret).
    pub input: String,
}

impl FromStr for UserId {
    type Err = ParseUserIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.trim()
            .parse::<i64>()
            .map(Self)
            .map_err(|_| ParseUserIdError {
                input: s.to_owned(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_parse_from_decimal_text_and_reject_anything_else() {
        assert_eq!("42".parse::<UserId>(), Ok(UserId::new(42)));
        assert_eq!(" -7 ".parse::<UserId>(), Ok(UserId::new(-7)));
        let err = "alice".parse::<UserId>().unwrap_err();
        assert!(err.to_string().contains("expected an integer"));
    }

    #[test]
    fn user_ids_display_as_their_number() {
        assert_eq!(UserId::new(123).to_string(), "123");
        assert_eq!(UserId::from(5).get(), 5);
    }
}
