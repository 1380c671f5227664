//! Support-staff operations behind `profile_admin`: list, show, update and export a user, and
//! list or forget their remembered facts.
//! Reset is [`ResetPersonalizationUseCase`](crate::reset::ResetPersonalizationUseCase).
//! Updates go through domain validation and the profile's compare-and-set, retried on a
//! concurrent change, so an admin edit never overwrites a summary a compression just wrote.

use std::sync::Arc;

use butler_domain::ports::{
    Clock, FactRepository, FactStoreError, MemoryStoreError, ProfilePage, ProfileStoreError,
    UserMemoryRepository, UserProfileRepository,
};
use butler_domain::{
    MemoryFact, ProfileUpdate, ProfileValidationError, UserId, UserMemoryEvent, UserProfile,
};
use thiserror::Error;

/// Why an admin operation failed; each variant maps to one exit code of `profile_admin`.
#[derive(Debug, Error)]
pub enum AdminError {
    /// The user has no profile.
    #[error("no profile stored for user {user_id}")]
    NotFound {
        /// Who was asked for.
        user_id: UserId,
    },
    /// The user has no fact with this id.
    #[error("user {user_id} has no fact {fact_id}")]
    FactNotFound {
        /// Whose fact.
        user_id: UserId,
        /// The id asked for.
        fact_id: uuid::Uuid,
    },
    /// The requested change is invalid.
    #[error("{0}")]
    Invalid(#[from] ProfileValidationError),
    /// The database failed.
    #[error("storage unavailable: {0}")]
    Storage(String),
}

impl From<ProfileStoreError> for AdminError {
    fn from(e: ProfileStoreError) -> Self {
        match e {
            ProfileStoreError::NotFound { user_id } => Self::NotFound { user_id },
            ProfileStoreError::Invalid(v) => Self::Invalid(v),
            other => Self::Storage(other.to_string()),
        }
    }
}

impl From<MemoryStoreError> for AdminError {
    fn from(e: MemoryStoreError) -> Self {
        Self::Storage(e.to_string())
    }
}

impl From<FactStoreError> for AdminError {
    fn from(e: FactStoreError) -> Self {
        Self::Storage(e.to_string())
    }
}

/// A profile with its memory statistics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileOverview {
    /// The profile.
    pub profile: UserProfile,
    /// Events stored.
    pub event_count: u64,
}

/// Everything stored about one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// Profile and counts.
    pub overview: ProfileOverview,
    /// Events, oldest first (all of them for export, the most recent for show).
    pub events: Vec<UserMemoryEvent>,
    /// Every remembered fact, current and superseded, oldest first.
    pub facts: Vec<MemoryFact>,
}

/// Lists profiles page by page.
#[derive(Clone)]
pub struct ListProfilesUseCase {
    profiles: Arc<dyn UserProfileRepository>,
    memory: Arc<dyn UserMemoryRepository>,
}

impl ListProfilesUseCase {
    /// Wires the use case.
    #[must_use]
    pub fn new(
        profiles: Arc<dyn UserProfileRepository>,
        memory: Arc<dyn UserMemoryRepository>,
    ) -> Self {
        Self { profiles, memory }
    }

    /// Profiles with `user_id > after`, ascending, at most `limit`, with event counts.
    ///
    /// # Errors
    /// [`AdminError::Storage`] if the database fails.
    pub async fn execute(&self, page: ProfilePage) -> Result<Vec<ProfileOverview>, AdminError> {
        let profiles = self.profiles.list(page).await?;
        let mut out = Vec::with_capacity(profiles.len());
        for profile in profiles {
            let event_count = self.memory.count(profile.user_id).await?;
            out.push(ProfileOverview {
                profile,
                event_count,
            });
        }
        Ok(out)
    }
}

/// Shows or exports one user.
#[derive(Clone)]
pub struct ShowUserUseCase {
    profiles: Arc<dyn UserProfileRepository>,
    memory: Arc<dyn UserMemoryRepository>,
    facts: Arc<dyn FactRepository>,
}

impl ShowUserUseCase {
    /// Wires the use case.
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

    /// The user's profile, event count and their newest `events` events (`usize::MAX` = all,
    /// as for an export).
    ///
    /// # Errors
    /// [`AdminError::NotFound`] for an unknown user; [`AdminError::Storage`] on failure.
    pub async fn execute(&self, user_id: UserId, events: usize) -> Result<UserRecord, AdminError> {
        let profile = self
            .profiles
            .get(user_id)
            .await?
            .ok_or(AdminError::NotFound { user_id })?;
        let event_count = self.memory.count(user_id).await?;
        let events = self.memory.recent(user_id, events, None).await?;
        let facts = self.facts.all(user_id).await?;
        Ok(UserRecord {
            overview: ProfileOverview {
                profile,
                event_count,
            },
            events,
            facts,
        })
    }
}

/// Lists and forgets a user's remembered facts.
#[derive(Clone)]
pub struct FactsUseCase {
    profiles: Arc<dyn UserProfileRepository>,
    facts: Arc<dyn FactRepository>,
}

impl FactsUseCase {
    /// Wires the use case.
    #[must_use]
    pub fn new(profiles: Arc<dyn UserProfileRepository>, facts: Arc<dyn FactRepository>) -> Self {
        Self { profiles, facts }
    }

    /// The user's facts, oldest first: only the current ones, or with `history` the superseded
    /// ones too.
    ///
    /// # Errors
    /// [`AdminError::NotFound`] for an unknown user; [`AdminError::Storage`] on failure.
    pub async fn list(
        &self,
        user_id: UserId,
        history: bool,
    ) -> Result<Vec<MemoryFact>, AdminError> {
        self.known(user_id).await?;
        let mut facts = self.facts.all(user_id).await?;
        if !history {
            facts.retain(MemoryFact::is_current);
        }
        Ok(facts)
    }

    /// Deletes one fact of the user.
    ///
    /// # Errors
    /// [`AdminError::NotFound`] for an unknown user, [`AdminError::FactNotFound`] when the user
    /// has no such fact; [`AdminError::Storage`] on failure.
    pub async fn forget(&self, user_id: UserId, fact_id: uuid::Uuid) -> Result<(), AdminError> {
        self.known(user_id).await?;
        if self.facts.delete(user_id, fact_id).await? {
            tracing::info!(user_id = %user_id, %fact_id, "fact forgotten");
            Ok(())
        } else {
            Err(AdminError::FactNotFound { user_id, fact_id })
        }
    }

    async fn known(&self, user_id: UserId) -> Result<(), AdminError> {
        self.profiles
            .get(user_id)
            .await?
            .map(|_| ())
            .ok_or(AdminError::NotFound { user_id })
    }
}

/// Applies a validated change to a profile.
#[derive(Clone)]
pub struct UpdateProfileUseCase {
    profiles: Arc<dyn UserProfileRepository>,
    clock: Arc<dyn Clock>,
}

impl UpdateProfileUseCase {
    /// Wires the use case.
    #[must_use]
    pub fn new(profiles: Arc<dyn UserProfileRepository>, clock: Arc<dyn Clock>) -> Self {
        Self { profiles, clock }
    }

    /// Applies `update` to the user's profile; a concurrent change is re-read and re-applied
    /// (up to 5 times).
    ///
    /// # Errors
    /// [`AdminError::NotFound`], [`AdminError::Invalid`] (nothing written), or storage errors.
    pub async fn execute(
        &self,
        user_id: UserId,
        update: &ProfileUpdate,
    ) -> Result<UserProfile, AdminError> {
        let mut attempts = 0;
        loop {
            let current = self
                .profiles
                .get(user_id)
                .await?
                .ok_or(AdminError::NotFound { user_id })?;
            let next = current.apply(update, self.clock.now())?;
            match self.profiles.save(&next).await {
                Ok(saved) => {
                    tracing::info!(user_id = %user_id, version = saved.version, "profile updated by admin");
                    return Ok(saved);
                }
                Err(ProfileStoreError::VersionConflict { .. }) if attempts < 5 => attempts += 1,
                Err(e) => return Err(e.into()),
            }
        }
    }
}
