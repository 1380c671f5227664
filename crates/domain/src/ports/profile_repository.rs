//! The profile store port.

use async_trait::async_trait;
use thiserror::Error;

use crate::profile::{ProfileValidationError, UserProfile};
use crate::user::UserId;

/// One page of a profile listing: profiles with `user_id > after`, ascending, at most `limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProfilePage {
    /// Start after this user id (exclusive); `None` starts at the lowest id.
    pub after: Option<UserId>,
    /// Maximum number of profiles returned.
    pub limit: usize,
}

impl ProfilePage {
    /// The first page of `limit` profiles.
    #[must_use]
    pub const fn first(limit: usize) -> Self {
        Self { after: None, limit }
    }
}

/// Why a profile operation failed.
#[derive(Debug, Error)]
pub enum ProfileStoreError {
    /// The stored version differs from the one the caller read: someone else saved first.
    /// Not retryable as is: re-read, re-apply, or back off.
    #[error("profile of user {user_id} changed concurrently (expected version {expected})")]
    VersionConflict {
        /// Whose profile.
        user_id: UserId,
        /// The version the caller expected to replace.
        expected: u64,
    },
    /// No profile is stored for this user (only from operations that do not create one).
    #[error("no profile stored for user {user_id}")]
    NotFound {
        /// Whose profile.
        user_id: UserId,
    },
    /// The profile to save is invalid; nothing was written.
    #[error("invalid profile: {0}")]
    Invalid(#[from] ProfileValidationError),
    /// The database could not be reached or the operation failed in it. Retryable.
    #[error("profile storage unavailable during {operation}: {detail}")]
    Unavailable {
        /// What was being done (`get`, `save`, `list`, …).
        operation: &'static str,
        /// The driver's message, without document contents or credentials.
        detail: String,
    },
    /// A stored document could not be read back as a profile.
    #[error("stored profile is corrupt: {detail}")]
    Corrupt {
        /// What was wrong (field names, not contents).
        detail: String,
    },
}

impl ProfileStoreError {
    /// Whether trying the same operation again may succeed.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}

/// Stores one profile per user.
///
/// Versions: a profile that was never stored has version 0; every successful write stores
/// version + 1 and returns the stored copy. Writes are compare-and-set on `version`, which is
/// what makes concurrent compressions, resets and admin updates safe.
#[async_trait]
pub trait UserProfileRepository: Send + Sync {
    /// The stored profile, or `None` if the user has none. Never creates one.
    async fn get(&self, user_id: UserId) -> Result<Option<UserProfile>, ProfileStoreError>;

    /// The stored profile, creating [`UserProfile::default_for`] first if there is none.
    /// Two concurrent calls for a new user create exactly one profile and both return it.
    async fn get_or_create(&self, user_id: UserId) -> Result<UserProfile, ProfileStoreError>;

    /// Saves `profile` if the stored version equals `profile.version` (version 0 means "only if
    /// none is stored"); returns the stored copy with the version incremented.
    ///
    /// # Errors
    /// [`ProfileStoreError::VersionConflict`] if another write came first;
    /// [`ProfileStoreError::Invalid`] if the profile fails validation.
    async fn save(&self, profile: &UserProfile) -> Result<UserProfile, ProfileStoreError>;

    /// Replaces the user's profile with the default (summary and watermark cleared), creating it
    /// if missing; only the per-user limits support staff set are kept. The version still increases, so a compression that read the old profile
    /// cannot write its summary afterwards.
    async fn reset(&self, user_id: UserId) -> Result<UserProfile, ProfileStoreError>;

    /// A page of profiles ordered by ascending user id.
    async fn list(&self, page: ProfilePage) -> Result<Vec<UserProfile>, ProfileStoreError>;
}
