//! The memory store port.

use async_trait::async_trait;
use thiserror::Error;

use crate::memory::{EventCursor, UserMemoryEvent};
use crate::user::UserId;

/// Why a memory operation failed.
#[derive(Debug, Error)]
pub enum MemoryStoreError {
    /// The database could not be reached or the operation failed in it. Retryable.
    #[error("memory storage unavailable during {operation}: {detail}")]
    Unavailable {
        /// What was being done (`append`, `recent`, …).
        operation: &'static str,
        /// The driver's message, without event contents or credentials.
        detail: String,
    },
    /// A stored event could not be read back.
    #[error("stored memory event is corrupt: {detail}")]
    Corrupt {
        /// What was wrong (field names, not contents).
        detail: String,
    },
}

impl MemoryStoreError {
    /// Whether trying the same operation again may succeed.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}

/// A user and how many events they have stored (for the compression worker).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserEventCount {
    /// The user.
    pub user_id: UserId,
    /// Events stored for them.
    pub events: u64,
}

/// Stores each user's memory events.
///
/// Order: within a user, events are ordered by [`EventCursor`] (`created_at`, then
/// `event_id`). Every method that returns events returns them oldest first.
#[async_trait]
pub trait UserMemoryRepository: Send + Sync {
    /// Stores the events. Appending is idempotent per `event_id`: retrying an append that may
    /// have partly succeeded never duplicates an event.
    async fn append(&self, events: &[UserMemoryEvent]) -> Result<(), MemoryStoreError>;

    /// The newest `limit` events of the user strictly after `after` (all events if `None`),
    /// returned oldest first.
    async fn recent(
        &self,
        user_id: UserId,
        limit: usize,
        after: Option<EventCursor>,
    ) -> Result<Vec<UserMemoryEvent>, MemoryStoreError>;

    /// How many events are stored for the user.
    async fn count(&self, user_id: UserId) -> Result<u64, MemoryStoreError>;

    /// The oldest `limit` events of the user at or before `up_to`, oldest first.
    async fn events_up_to(
        &self,
        user_id: UserId,
        up_to: EventCursor,
        limit: usize,
    ) -> Result<Vec<UserMemoryEvent>, MemoryStoreError>;

    /// Deletes the user's events at or before `up_to`; returns how many were deleted.
    /// Events after `up_to` — including any appended while this runs — are never touched.
    async fn delete_up_to(
        &self,
        user_id: UserId,
        up_to: EventCursor,
    ) -> Result<u64, MemoryStoreError>;

    /// Deletes every event of the user; returns how many were deleted.
    async fn delete_all(&self, user_id: UserId) -> Result<u64, MemoryStoreError>;

    /// Users with more than `threshold` events, most events first (ties by ascending user id),
    /// at most `limit` of them.
    async fn users_over(
        &self,
        threshold: u64,
        limit: usize,
    ) -> Result<Vec<UserEventCount>, MemoryStoreError>;
}
