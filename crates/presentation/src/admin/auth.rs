//! The admin key guard: `profile_admin` refuses to run unless the caller presents
//! `PROFILE_ADMIN_API_KEY` equal to the configured `BUTLER_ADMIN_KEY`. The comparison is
//! constant-time and neither key is ever printed.

use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

/// Why the caller is not allowed in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The operator has not configured an admin key.
    #[error(
        "BUTLER_ADMIN_KEY is not configured: profile_admin is disabled until an admin key is set"
    )]
    NotConfigured,
    /// The caller presented no key.
    #[error("PROFILE_ADMIN_API_KEY is not set: export the admin key to use profile_admin")]
    Missing,
    /// The presented key is wrong.
    #[error("PROFILE_ADMIN_API_KEY does not match the configured admin key")]
    Mismatch,
}

/// Checks the presented key against the configured one in constant time.
///
/// # Errors
/// An [`AuthError`] saying what is missing or wrong (never the keys themselves).
pub fn authorize(
    presented: Option<&SecretString>,
    configured: Option<&SecretString>,
) -> Result<(), AuthError> {
    let configured = configured.ok_or(AuthError::NotConfigured)?;
    let presented = presented.ok_or(AuthError::Missing)?;
    let equal: bool = presented
        .expose_secret()
        .as_bytes()
        .ct_eq(configured.expose_secret().as_bytes())
        .into();
    if equal {
        Ok(())
    } else {
        Err(AuthError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> SecretString {
        SecretString::from(v.to_owned())
    }

    #[test]
    fn only_the_configured_key_is_accepted() {
        let key = s("correct-horse-battery-staple");
        assert_eq!(authorize(Some(&key), Some(&key)), Ok(()));
        assert_eq!(
            authorize(Some(&s("wrong")), Some(&key)),
            Err(AuthError::Mismatch)
        );
        assert_eq!(authorize(None, Some(&key)), Err(AuthError::Missing));
        assert_eq!(authorize(Some(&key), None), Err(AuthError::NotConfigured));
    }

    #[test]
    fn errors_never_contain_the_keys() {
        let err = authorize(Some(&s("guess-123")), Some(&s("real-key-456")))
            .unwrap_err()
            .to_string();
        assert!(!err.contains("guess-123") && !err.contains("real-key-456"));
    }
}
