//! The fact store port: each user's long-term facts, with supersede by key and full-text
//! search.

use async_trait::async_trait;
use thiserror::Error;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::fact::{FactError, FactMatch, MemoryFact};
use crate::user::UserId;

/// Why a fact store operation failed.
#[derive(Debug, Error)]
pub enum FactStoreError {
    /// A fact to save is invalid; nothing of the batch was written. Not retryable.
    #[error("invalid fact: {0}")]
    Invalid(#[from] FactError),
    /// The database could not be reached or the operation failed in it. Retryable: every
    /// operation is idempotent, and retrying a save completes one that partly happened.
    #[error("fact storage unavailable during {operation}: {detail}")]
    Unavailable {
        /// What was being done (`save`, `search`, …).
        operation: &'static str,
        /// The driver's message, without fact texts or credentials.
        detail: String,
    },
    /// A stored fact could not be read back.
    #[error("stored fact is corrupt: {detail}")]
    Corrupt {
        /// What was wrong (field names, not contents).
        detail: String,
    },
}

impl FactStoreError {
    /// Whether trying the same operation again may succeed.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}

/// What a [`FactRepository::save`] changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SavedFacts {
    /// Facts stored that were not stored before.
    pub inserted: u64,
    /// Facts this save marked as superseded (stored ones a newer fact replaced, and new ones
    /// that arrived after a newer fact of their key).
    pub superseded: u64,
}

/// Stores each user's facts.
///
/// **Supersede by key.** Of the facts of one user and key, exactly one is *current*: the
/// newest by `(created_at, id)` ([`MemoryFact::is_newer_than`]), whatever order they were
/// saved in. The others are kept with `superseded_by` naming the fact that replaced them, so
/// history and exports keep them; only current facts are listed by [`current`] and found by
/// [`search`]. Two saves racing on one key leave exactly one current fact.
///
/// **Order.** [`current`] is newest first, [`all`] oldest first (both by `created_at`, then
/// id); [`search`] is best match first, ties newest first.
///
/// **Expiry.** Facts follow the events' retention: where events expire after a TTL
/// (`MEMORY_TTL_DAYS` on MongoDB), facts expire by the same rule, counted from their
/// `created_at`; [`delete_older_than`] is the same policy as a call, for backends or jobs
/// that apply retention themselves. An expired current fact is not replaced by the fact it
/// had superseded.
///
/// [`current`]: FactRepository::current
/// [`all`]: FactRepository::all
/// [`search`]: FactRepository::search
/// [`delete_older_than`]: FactRepository::delete_older_than
#[async_trait]
pub trait FactRepository: Send + Sync {
    /// Stores the facts, in order, each as one step of supersede by key: a new fact newer than
    /// the current fact of its key supersedes it (the old one gets `superseded_by = new.id`);
    /// a new fact older than the current one is stored already superseded by it. A fact saved
    /// with `superseded_by` set is history: it is stored as it is and supersedes nothing.
    ///
    /// Idempotent per fact id: a fact whose id is stored already is left as it is stored
    /// (even if the new copy differs), and retrying a save that failed part-way completes it.
    /// Every fact is validated first; one invalid fact fails the batch with
    /// [`FactStoreError::Invalid`] before anything is written.
    async fn save(&self, facts: &[MemoryFact]) -> Result<SavedFacts, FactStoreError>;

    /// The user's current facts, newest first, at most `limit`.
    async fn current(
        &self,
        user_id: UserId,
        limit: usize,
    ) -> Result<Vec<MemoryFact>, FactStoreError>;

    /// The user's current facts that share a search term with `query`
    /// ([`terms::query_terms`](crate::fact::terms::query_terms)), best match first (ties
    /// newest first), at most `limit`. Inflected forms match («Тверь» finds «живём в
    /// Твери»). A query with no terms (only question words) finds nothing. Superseded facts
    /// are never returned.
    async fn search(
        &self,
        user_id: UserId,
        query: &str,
        limit: usize,
    ) -> Result<Vec<FactMatch>, FactStoreError>;

    /// Every stored fact of the user, current and superseded, oldest first (for exports).
    async fn all(&self, user_id: UserId) -> Result<Vec<MemoryFact>, FactStoreError>;

    /// Deletes one fact of the user; `false` if the user has no fact with that id. Deleting a
    /// current fact leaves its key without a current fact: the fact it superseded stays
    /// superseded, because a forgotten statement must not bring back the one it replaced.
    async fn delete(&self, user_id: UserId, fact_id: Uuid) -> Result<bool, FactStoreError>;

    /// Deletes every fact of the user (reset); returns how many were deleted.
    async fn delete_all(&self, user_id: UserId) -> Result<u64, FactStoreError>;

    /// Deletes the facts of every user created strictly before `cutoff`, current or not;
    /// returns how many were deleted.
    async fn delete_older_than(&self, cutoff: OffsetDateTime) -> Result<u64, FactStoreError>;
}
