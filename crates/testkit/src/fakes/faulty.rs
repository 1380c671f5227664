//! A decorator that makes any memory store fail deletions on demand — to simulate a crash
//! between "summary saved" and "events deleted" on a real backend.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use butler_domain::ports::{MemoryStoreError, UserEventCount, UserMemoryRepository};
use butler_domain::{EventCursor, UserId, UserMemoryEvent};

/// Wraps a memory store; while `fail_deletes` is set, deletions fail without touching it.
pub struct FaultyMemory {
    inner: Arc<dyn UserMemoryRepository>,
    /// While set, `delete_up_to` and `delete_all` fail.
    pub fail_deletes: AtomicBool,
}

impl FaultyMemory {
    /// Wraps `inner`.
    #[must_use]
    pub fn new(inner: Arc<dyn UserMemoryRepository>) -> Self {
        Self {
            inner,
            fail_deletes: AtomicBool::new(false),
        }
    }

    fn check(&self, operation: &'static str) -> Result<(), MemoryStoreError> {
        if self.fail_deletes.load(Ordering::SeqCst) {
            return Err(MemoryStoreError::Unavailable {
                operation,
                detail: "injected crash".to_owned(),
            });
        }
        Ok(())
    }
}

#[async_trait]
impl UserMemoryRepository for FaultyMemory {
    async fn append(&self, events: &[UserMemoryEvent]) -> Result<(), MemoryStoreError> {
        self.inner.append(events).await
    }

    async fn recent(
        &self,
        user_id: UserId,
        limit: usize,
        after: Option<EventCursor>,
    ) -> Result<Vec<UserMemoryEvent>, MemoryStoreError> {
        self.inner.recent(user_id, limit, after).await
    }

    async fn count(&self, user_id: UserId) -> Result<u64, MemoryStoreError> {
        self.inner.count(user_id).await
    }

    async fn events_up_to(
        &self,
        user_id: UserId,
        up_to: EventCursor,
        limit: usize,
    ) -> Result<Vec<UserMemoryEvent>, MemoryStoreError> {
        self.inner.events_up_to(user_id, up_to, limit).await
    }

    async fn delete_up_to(
        &self,
        user_id: UserId,
        up_to: EventCursor,
    ) -> Result<u64, MemoryStoreError> {
        self.check("delete_up_to")?;
        self.inner.delete_up_to(user_id, up_to).await
    }

    async fn delete_all(&self, user_id: UserId) -> Result<u64, MemoryStoreError> {
        self.check("delete_all")?;
        self.inner.delete_all(user_id).await
    }

    async fn users_over(
        &self,
        threshold: u64,
        limit: usize,
    ) -> Result<Vec<UserEventCount>, MemoryStoreError> {
        self.inner.users_over(threshold, limit).await
    }
}
