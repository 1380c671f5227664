//! `ResetPersonalizationUseCase`: the user's profile back to the default, every memory event
//! and every remembered fact deleted.
//!
//! Order matters: events are deleted first, then the profile is reset (which bumps its
//! version), then the facts. A compression racing the reset either loses its compare-and-set
//! (and deletes the facts it saved), or saved before the reset and is overwritten by it, its
//! facts deleted after — either way no summary or fact of forgotten events survives.

use std::sync::Arc;

use butler_domain::ports::{
    FactRepository, FactStoreError, MemoryStoreError, ProfileStoreError, UserMemoryRepository,
    UserProfileRepository,
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
    /// Remembered facts deleted.
    pub facts_deleted: u64,
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
    /// Deleting facts failed; events and profile were already reset.
    #[error("reset: {0}")]
    Facts(#[from] FactStoreError),
}

/// Forgets everything about a user.
#[derive(Clone)]
pub struct ResetPersonalizationUseCase {
    profiles: Arc<dyn UserProfileRepository>,
    memory: Arc<dyn UserMemoryRepository>,
    facts: Arc<dyn FactRepository>,
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
        facts: Arc<dyn FactRepository>,
    ) -> Self {
        Self {
            profiles,
            memory,
            facts,
        }
    }

    /// Resets the user.
    ///
    /// # Errors
    /// A [`ResetError`] naming the step that failed.
    pub async fn execute(&self, user_id: UserId) -> Result<ResetOutput, ResetError> {
        let events_deleted = self.memory.delete_all(user_id).await?;
        let profile = self.profiles.reset(user_id).await?;
        let facts_deleted = self.facts.delete_all(user_id).await?;
        tracing::info!(user_id = %user_id, events_deleted, facts_deleted, "personalisation reset");
        Ok(ResetOutput {
            profile,
            events_deleted,
            facts_deleted,
        })
    }
}
