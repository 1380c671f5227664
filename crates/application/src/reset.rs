//! `ResetPersonalizationUseCase`: the user's profile back to the default, every memory event,
//! every remembered fact and every reminder deleted.
//!
//! **Alone.** A reset holds both of the conversation's leases while it forgets: the reply
//! lease (so no reply is written meanwhile, and the inbox claims none of the conversation's
//! messages; if a reply is being written, the reset is [`ResetError::Busy`] and the caller
//! tries again a moment later) and the compression lease, which it takes over — a
//! compression in flight stops at its next step.
//!
//! Order matters even so (leases expire, processes stall): events are deleted first, then the
//! profile is reset (which bumps its version), then the facts, then the reminders. A compression racing the reset
//! either loses its compare-and-set (and, its turns being forgotten, deletes the facts it
//! saved), or saved before the reset and is overwritten by it, its facts deleted after —
//! either way no summary or fact of forgotten events survives.

use std::sync::Arc;

use butler_domain::ports::{
    Clock, ConversationLeases, FactRepository, FactStoreError, LeaseError, LeaseScope,
    MemoryStoreError, ProfileStoreError, ReminderRepository, ReminderStoreError,
    UserMemoryRepository, UserProfileRepository,
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
    /// Reminders deleted, pending or finished (0 where reminders are not wired).
    pub reminders_deleted: u64,
}

/// How long a reset's leases last: far longer than forgetting takes, short enough that a
/// reset whose process died does not hold the conversation up for long.
pub const RESET_LEASE: time::Duration = time::Duration::seconds(60);

/// Why a reset failed (it is safe to run again).
#[derive(Debug, Error)]
pub enum ResetError {
    /// A reply to the user is being written; nothing was touched. Try again in a moment.
    #[error("reset: a reply to this user is being written; try again in a moment")]
    Busy,
    /// The conversation's leases could not be taken; nothing was touched.
    #[error("reset: {0}")]
    Lease(#[from] LeaseError),
    /// Deleting events failed; the profile was not touched.
    #[error("reset: {0}")]
    Memory(#[from] MemoryStoreError),
    /// Resetting the profile failed; events were already deleted.
    #[error("reset: {0}")]
    Profile(#[from] ProfileStoreError),
    /// Deleting facts failed; events and profile were already reset.
    #[error("reset: {0}")]
    Facts(#[from] FactStoreError),
    /// Deleting reminders failed; events, profile and facts were already reset.
    #[error("reset: {0}")]
    Reminders(#[from] ReminderStoreError),
}

/// Forgets everything about a user.
#[derive(Clone)]
pub struct ResetPersonalizationUseCase {
    profiles: Arc<dyn UserProfileRepository>,
    memory: Arc<dyn UserMemoryRepository>,
    facts: Arc<dyn FactRepository>,
    leases: Arc<dyn ConversationLeases>,
    clock: Arc<dyn Clock>,
    reminders: Option<Arc<dyn ReminderRepository>>,
}

impl std::fmt::Debug for ResetPersonalizationUseCase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResetPersonalizationUseCase")
            .finish_non_exhaustive()
    }
}

impl ResetPersonalizationUseCase {
    /// Wires the use case to its ports; `leases` are the conversation leases every writer of
    /// the same storage shares.
    #[must_use]
    pub fn new(
        profiles: Arc<dyn UserProfileRepository>,
        memory: Arc<dyn UserMemoryRepository>,
        facts: Arc<dyn FactRepository>,
        leases: Arc<dyn ConversationLeases>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            profiles,
            memory,
            facts,
            leases,
            clock,
            reminders: None,
        }
    }

    /// Also deletes the user's reminders: a user who asks to be forgotten is not reminded of
    /// anything afterwards.
    #[must_use]
    pub fn with_reminders(mut self, reminders: Arc<dyn ReminderRepository>) -> Self {
        self.reminders = Some(reminders);
        self
    }

    /// Resets the user, alone (see the module docs).
    ///
    /// # Errors
    /// [`ResetError::Busy`] while a reply is being written (nothing touched; try again), or a
    /// [`ResetError`] naming the step that failed.
    pub async fn execute(&self, user_id: UserId) -> Result<ResetOutput, ResetError> {
        let conversation = user_id.get();
        let now = self.clock.now();
        let Some(replies) = self
            .leases
            .acquire(conversation, LeaseScope::Replies, now, RESET_LEASE)
            .await?
        else {
            return Err(ResetError::Busy);
        };
        let result = match self
            .leases
            .take_over(conversation, LeaseScope::Compression, now, RESET_LEASE)
            .await
        {
            Ok(compression) => {
                let result = self.forget(user_id).await;
                self.give_back(user_id, &compression).await;
                result
            }
            Err(error) => Err(error.into()),
        };
        self.give_back(user_id, &replies).await;
        result
    }

    async fn give_back(&self, user_id: UserId, lease: &butler_domain::ports::Lease) {
        if let Err(error) = self.leases.release(lease).await {
            // It expires on its own within RESET_LEASE.
            tracing::warn!(user_id = %user_id, scope = %lease.scope, %error, "reset lease not released");
        }
    }

    async fn forget(&self, user_id: UserId) -> Result<ResetOutput, ResetError> {
        let events_deleted = self.memory.delete_all(user_id).await?;
        let profile = self.profiles.reset(user_id).await?;
        let facts_deleted = self.facts.delete_all(user_id).await?;
        let reminders_deleted = match &self.reminders {
            Some(reminders) => reminders.delete_user(user_id).await?,
            None => 0,
        };
        tracing::info!(
            user_id = %user_id,
            events_deleted,
            facts_deleted,
            reminders_deleted,
            "personalisation reset"
        );
        Ok(ResetOutput {
            profile,
            events_deleted,
            facts_deleted,
            reminders_deleted,
        })
    }
}
