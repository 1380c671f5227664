//! `ResetPersonalizationUseCase`: the user's profile back to the default and every memory
//! event deleted.
//!
//! Order matters: events are deleted first, then the profile is reset (which bumps its
//! version). A compression racing the reset either loses its compare-and-set, or saved before
//! the reset and is overwritten by it — either way no summary of forgotten events survives.

use std::sync::Arc;

use butler_domain::ports::{
    MemoryStoreError, ProfileStoreError, UserMemoryRepository, UserProfileRepository,
};
use butler_domain::{UserId, UserProfile};
use thiserror::Error;

/// What a reset removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResetOutput {
    /// The profile as it is now.
    pub profile: UserProfile,
    /// Memory events deleted.
    pub events_deleted: u64,
}

/// Why a reset failed (it is safe to run again).
#[derive(Debug, Error)]
pub enum ResetError {
    /// Deleting events failed; the profile was not touched.
    #[error("reset: {0}")]
    Memory(#[from] MemoryStoreError),
    /// Resetting the profile failed; events were already deleted.
    #[error("reset: {0}")]
    Profile(#[from] ProfileStoreError),
}

/// Forgets everything about a user.
#[derive(Clone)]
pub struct ResetPersonalizationUseCase {
    profiles: Arc<dyn UserProfileRepository>,
    memory: Arc<dyn UserMemoryRepository>,
}

impl std::fmt::Debug for ResetPersonalizationUseCase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResetPersonalizationUseCase")
            .finish_non_exhaustive()
    }
}

impl ResetPersonalizationUseCase {
    /// Wires the use case to its ports.
    #[must_use]
    pub fn new(
        profiles: Arc<dyn UserProfileRepository>,
        memory: Arc<dyn UserMemoryRepository>,
    ) -> Self {
        Self { profiles, memory }
    }

    /// Resets the user.
    ///
    /// # Errors
    /// A [`ResetError`] naming the step that failed.
    pub async fn execute(&self, user_id: UserId) -> Result<ResetOutput, ResetError> {
        let events_deleted = self.memory.delete_all(user_id).await?;
        let profile = self.profiles.reset(user_id).await?;
        tracing::info!(user_id = %user_id, events_deleted, "personalisation reset");
        Ok(ResetOutput {
            profile,
            events_deleted,
        })
    }
}
