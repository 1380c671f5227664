//! Support-staff operations behind `profile_admin`: list, show, update and export a user,
//! list or forget their remembered facts, and list or cancel their reminders.
//! Reset is [`ResetPersonalizationUseCase`](crate::reset::ResetPersonalizationUseCase).
//! Updates go through domain validation and the profile's compare-and-set, retried on a
//! concurrent change, so an admin edit never overwrites a summary a compression just wrote.

use std::sync::Arc;

use butler_domain::ports::{
    ChangeOutcome, Clock, FactRepository, FactStoreError, MemoryStoreError, ProfilePage,
    ProfileStoreError, ReminderRepository, ReminderStoreError, UserMemoryRepository,
    UserProfileRepository,
};
use butler_domain::reminder::{Reminder, ReminderStatus, UserTimeZone, FALLBACK_TIME_ZONE};
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
    /// The user has no reminder whose id is or starts with this.
    #[error("user {user_id} has no reminder {id}")]
    ReminderNotFound {
        /// Whose reminder.
        user_id: UserId,
        /// The id (or its beginning) asked for.
        id: String,
    },
    /// More than one of the user's reminders has an id starting with this.
    #[error("{id} starts the ids of several reminders: give more of it (or all)")]
    AmbiguousReminder {
        /// The beginning of an id asked for.
        id: String,
    },
    /// The reminder is no longer pending.
    #[error("reminder {id} was already {state}: nothing to cancel")]
    ReminderFinished {
        /// Its id.
        id: String,
        /// `delivered` or `cancelled`.
        state: &'static str,
    },
    /// A scheduler is delivering the reminder right now.
    #[error("reminder {id} is being delivered right now: nothing was cancelled")]
    ReminderDelivering {
        /// Its id.
        id: String,
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

impl From<ReminderStoreError> for AdminError {
    fn from(e: ReminderStoreError) -> Self {
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
    /// Every stored reminder (pending, delivered, cancelled), earliest due first.
    pub reminders: Vec<Reminder>,
    /// The zone the user's times are shown in: their profile's, or the operator's default.
    pub zone: UserTimeZone,
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
    reminders: Option<Arc<dyn ReminderRepository>>,
    default_zone: UserTimeZone,
}

/// The zone the app falls back to when it is told none.
fn fallback_zone() -> UserTimeZone {
    UserTimeZone::new(FALLBACK_TIME_ZONE).unwrap_or_else(|_| UserTimeZone::utc())
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
            reminders: None,
            default_zone: fallback_zone(),
        }
    }

    /// Includes the user's reminders, shown in their zone (`default_zone`: the operator's
    /// `DEFAULT_TIME_ZONE`, for users whose profile names none).
    #[must_use]
    pub fn with_reminders(
        mut self,
        reminders: Arc<dyn ReminderRepository>,
        default_zone: UserTimeZone,
    ) -> Self {
        self.reminders = Some(reminders);
        self.default_zone = default_zone;
        self
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
        let reminders = match &self.reminders {
            Some(store) => store.list_all(user_id).await?,
            None => Vec::new(),
        };
        let zone = profile.zone_or(&self.default_zone);
        Ok(UserRecord {
            overview: ProfileOverview {
                profile,
                event_count,
            },
            events,
            facts,
            reminders,
            zone,
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

/// A user's reminders for support staff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserReminders {
    /// The zone their times are shown in (the profile's, or the default).
    pub zone: UserTimeZone,
    /// Every stored reminder, earliest due first.
    pub reminders: Vec<Reminder>,
}

/// Lists and cancels a user's reminders (`profile_admin reminders`).
#[derive(Clone)]
pub struct RemindersAdminUseCase {
    profiles: Arc<dyn UserProfileRepository>,
    reminders: Arc<dyn ReminderRepository>,
    clock: Arc<dyn Clock>,
    default_zone: UserTimeZone,
}

impl std::fmt::Debug for RemindersAdminUseCase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemindersAdminUseCase")
            .field("default_zone", &self.default_zone)
            .finish_non_exhaustive()
    }
}

impl RemindersAdminUseCase {
    /// Wires the use case; `default_zone` is the operator's `DEFAULT_TIME_ZONE`.
    #[must_use]
    pub fn new(
        profiles: Arc<dyn UserProfileRepository>,
        reminders: Arc<dyn ReminderRepository>,
        clock: Arc<dyn Clock>,
        default_zone: UserTimeZone,
    ) -> Self {
        Self {
            profiles,
            reminders,
            clock,
            default_zone,
        }
    }

    /// Every stored reminder of the user, with the zone to show them in.
    ///
    /// # Errors
    /// [`AdminError::NotFound`] for an unknown user; [`AdminError::Storage`] on failure.
    pub async fn list(&self, user_id: UserId) -> Result<UserReminders, AdminError> {
        let profile = self
            .profiles
            .get(user_id)
            .await?
            .ok_or(AdminError::NotFound { user_id })?;
        Ok(UserReminders {
            zone: profile.zone_or(&self.default_zone),
            reminders: self.reminders.list_all(user_id).await?,
        })
    }

    /// Cancels the user's pending reminder whose id is `id` or starts with it (the short id
    /// the listing shows); returns it as it was.
    ///
    /// # Errors
    /// [`AdminError::NotFound`], [`AdminError::ReminderNotFound`],
    /// [`AdminError::AmbiguousReminder`], [`AdminError::ReminderFinished`],
    /// [`AdminError::ReminderDelivering`], or [`AdminError::Storage`].
    pub async fn cancel(&self, user_id: UserId, id: &str) -> Result<Reminder, AdminError> {
        let listed = self.list(user_id).await?;
        let wanted: String = id
            .trim()
            .chars()
            .filter(|c| *c != '-')
            .collect::<String>()
            .to_ascii_lowercase();
        let not_found = || AdminError::ReminderNotFound {
            user_id,
            id: id.trim().to_owned(),
        };
        if wanted.is_empty() {
            return Err(not_found());
        }
        let mut matching = listed
            .reminders
            .into_iter()
            .filter(|r| r.id.as_uuid().simple().to_string().starts_with(&wanted));
        let reminder = matching.next().ok_or_else(not_found)?;
        if matching.next().is_some() {
            return Err(AdminError::AmbiguousReminder {
                id: id.trim().to_owned(),
            });
        }
        let state = match reminder.status {
            ReminderStatus::Pending => None,
            ReminderStatus::Delivered(_) => Some("delivered"),
            ReminderStatus::Cancelled(_) => Some("cancelled"),
        };
        if let Some(state) = state {
            return Err(AdminError::ReminderFinished {
                id: reminder.id.to_string(),
                state,
            });
        }
        match self
            .reminders
            .cancel(user_id, reminder.id, self.clock.now())
            .await?
        {
            ChangeOutcome::Changed => {
                tracing::info!(user_id = %user_id, reminder_id = %reminder.id, "reminder cancelled by admin");
                Ok(reminder)
            }
            ChangeOutcome::NotFound => Err(AdminError::ReminderFinished {
                id: reminder.id.to_string(),
                state: "delivered or cancelled",
            }),
            ChangeOutcome::Delivering => Err(AdminError::ReminderDelivering {
                id: reminder.id.to_string(),
            }),
        }
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
