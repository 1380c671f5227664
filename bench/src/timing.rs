//! Timing decorators: every repository call is timed and attributed to its user, so the time a
//! message spent waiting on the database can be told apart from the time spent in our code.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use butler_domain::ports::{
    Claimed, ConversationLeases, InboxError, InboxUpdate, Lease, LeaseError, LeaseScope, LlmClient,
    LlmError, LlmReply, LlmRequest, MemoryStoreError, ProfilePage, ProfileStoreError, Stored,
    UpdateInbox, UserEventCount, UserMemoryRepository, UserProfileRepository,
};
use butler_domain::{EventCursor, UserId, UserMemoryEvent, UserProfile};

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Call intervals by user (`None` = calls that name no user).
type Intervals = HashMap<Option<UserId>, Vec<(Instant, Instant)>>;

/// Collects the time spent in calls: per user as intervals (concurrent calls of one message —
/// `recent` and `count` run together — count once), and in total.
#[derive(Debug, Default)]
pub struct CallTimer {
    per_user: Mutex<Intervals>,
    total: Mutex<(Duration, u64)>,
}

impl CallTimer {
    /// A shared timer.
    #[must_use]
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// Awaits `call`, recording its time for `user`.
    async fn time<T>(&self, user: Option<UserId>, call: impl Future<Output = T>) -> T {
        let started = Instant::now();
        let result = call.await;
        self.record(user, started);
        result
    }

    fn record(&self, user: Option<UserId>, started: Instant) {
        let ended = Instant::now();
        lock(&self.per_user)
            .entry(user)
            .or_default()
            .push((started, ended));
        let mut total = lock(&self.total);
        total.0 += ended - started;
        total.1 += 1;
    }

    /// The wall time `user`'s calls took since the last `take` (overlaps counted once).
    pub fn take(&self, user: UserId) -> Duration {
        let intervals = lock(&self.per_user).remove(&Some(user)).unwrap_or_default();
        union_length(intervals)
    }

    /// Total time and number of calls since the last `reset` (overlaps counted each time).
    pub fn total(&self) -> (Duration, u64) {
        *lock(&self.total)
    }

    /// Forgets everything recorded.
    pub fn reset(&self) {
        lock(&self.per_user).clear();
        *lock(&self.total) = (Duration::ZERO, 0);
    }
}

fn union_length(mut intervals: Vec<(Instant, Instant)>) -> Duration {
    intervals.sort_unstable_by_key(|(start, _)| *start);
    let mut total = Duration::ZERO;
    let mut current: Option<(Instant, Instant)> = None;
    for (start, end) in intervals {
        current = match current {
            Some((s, e)) if start <= e => Some((s, e.max(end))),
            Some((s, e)) => {
                total += e - s;
                Some((start, end))
            }
            None => Some((start, end)),
        };
    }
    if let Some((s, e)) = current {
        total += e - s;
    }
    total
}

/// A profile repository whose calls are timed.
pub struct TimedProfiles {
    /// The real repository.
    pub inner: Arc<dyn UserProfileRepository>,
    /// Where the times go.
    pub timer: Arc<CallTimer>,
}

#[async_trait]
impl UserProfileRepository for TimedProfiles {
    async fn get(&self, user_id: UserId) -> Result<Option<UserProfile>, ProfileStoreError> {
        self.timer
            .time(Some(user_id), self.inner.get(user_id))
            .await
    }

    async fn get_or_create(&self, user_id: UserId) -> Result<UserProfile, ProfileStoreError> {
        self.timer
            .time(Some(user_id), self.inner.get_or_create(user_id))
            .await
    }

    async fn save(&self, profile: &UserProfile) -> Result<UserProfile, ProfileStoreError> {
        self.timer
            .time(Some(profile.user_id), self.inner.save(profile))
            .await
    }

    async fn reset(&self, user_id: UserId) -> Result<UserProfile, ProfileStoreError> {
        self.timer
            .time(Some(user_id), self.inner.reset(user_id))
            .await
    }

    async fn list(&self, page: ProfilePage) -> Result<Vec<UserProfile>, ProfileStoreError> {
        self.timer.time(None, self.inner.list(page)).await
    }
}

/// A memory repository whose calls are timed.
pub struct TimedMemory {
    /// The real repository.
    pub inner: Arc<dyn UserMemoryRepository>,
    /// Where the times go.
    pub timer: Arc<CallTimer>,
}

#[async_trait]
impl UserMemoryRepository for TimedMemory {
    async fn append(&self, events: &[UserMemoryEvent]) -> Result<(), MemoryStoreError> {
        self.timer
            .time(events.first().map(|e| e.user_id), self.inner.append(events))
            .await
    }

    async fn recent(
        &self,
        user_id: UserId,
        limit: usize,
        after: Option<EventCursor>,
    ) -> Result<Vec<UserMemoryEvent>, MemoryStoreError> {
        self.timer
            .time(Some(user_id), self.inner.recent(user_id, limit, after))
            .await
    }

    async fn count(&self, user_id: UserId) -> Result<u64, MemoryStoreError> {
        self.timer
            .time(Some(user_id), self.inner.count(user_id))
            .await
    }

    async fn events_up_to(
        &self,
        user_id: UserId,
        up_to: EventCursor,
        limit: usize,
    ) -> Result<Vec<UserMemoryEvent>, MemoryStoreError> {
        self.timer
            .time(
                Some(user_id),
                self.inner.events_up_to(user_id, up_to, limit),
            )
            .await
    }

    async fn delete_up_to(
        &self,
        user_id: UserId,
        up_to: EventCursor,
    ) -> Result<u64, MemoryStoreError> {
        self.timer
            .time(Some(user_id), self.inner.delete_up_to(user_id, up_to))
            .await
    }

    async fn delete_all(&self, user_id: UserId) -> Result<u64, MemoryStoreError> {
        self.timer
            .time(Some(user_id), self.inner.delete_all(user_id))
            .await
    }

    async fn users_over(
        &self,
        threshold: u64,
        limit: usize,
    ) -> Result<Vec<UserEventCount>, MemoryStoreError> {
        self.timer
            .time(None, self.inner.users_over(threshold, limit))
            .await
    }
}

/// An LLM client whose calls are timed (in total: requests carry no user).
pub struct TimedLlm {
    /// The real client.
    pub inner: Arc<dyn LlmClient>,
    /// Where the times go.
    pub timer: Arc<CallTimer>,
}

#[async_trait]
impl LlmClient for TimedLlm {
    async fn complete(&self, request: &LlmRequest) -> Result<LlmReply, LlmError> {
        self.timer.time(None, self.inner.complete(request)).await
    }
}

/// An update inbox whose calls are timed (attributed to the update's user where the call names
/// one), so the inbox's share of a message's cost shows on its own.
pub struct TimedInbox {
    /// The real inbox.
    pub inner: Arc<dyn UpdateInbox>,
    /// Where the times go.
    pub timer: Arc<CallTimer>,
}

#[async_trait]
impl ConversationLeases for TimedInbox {
    async fn acquire(
        &self,
        conversation: i64,
        scope: LeaseScope,
        now: time::OffsetDateTime,
        lease_for: time::Duration,
    ) -> Result<Option<Lease>, LeaseError> {
        let user = Some(UserId::new(conversation));
        self.timer
            .time(
                user,
                self.inner.acquire(conversation, scope, now, lease_for),
            )
            .await
    }

    async fn take_over(
        &self,
        conversation: i64,
        scope: LeaseScope,
        now: time::OffsetDateTime,
        lease_for: time::Duration,
    ) -> Result<Lease, LeaseError> {
        let user = Some(UserId::new(conversation));
        self.timer
            .time(
                user,
                self.inner.take_over(conversation, scope, now, lease_for),
            )
            .await
    }

    async fn renew(
        &self,
        lease: &Lease,
        now: time::OffsetDateTime,
        lease_for: time::Duration,
    ) -> Result<Option<Lease>, LeaseError> {
        let user = Some(UserId::new(lease.conversation));
        self.timer
            .time(user, self.inner.renew(lease, now, lease_for))
            .await
    }

    async fn release(&self, lease: &Lease) -> Result<(), LeaseError> {
        let user = Some(UserId::new(lease.conversation));
        self.timer.time(user, self.inner.release(lease)).await
    }
}

#[async_trait]
impl UpdateInbox for TimedInbox {
    async fn store(&self, update: &InboxUpdate) -> Result<Stored, InboxError> {
        let user = Some(UserId::new(update.conversation));
        self.timer.time(user, self.inner.store(update)).await
    }

    async fn claim(
        &self,
        now: time::OffsetDateTime,
        lease_for: time::Duration,
    ) -> Result<Option<Claimed>, InboxError> {
        self.timer
            .time(None, self.inner.claim(now, lease_for))
            .await
    }

    async fn complete(
        &self,
        update_id: i64,
        lease: &Lease,
        now: time::OffsetDateTime,
    ) -> Result<(), InboxError> {
        let user = Some(UserId::new(lease.conversation));
        self.timer
            .time(user, self.inner.complete(update_id, lease, now))
            .await
    }

    async fn backlog(&self) -> Result<u64, InboxError> {
        self.timer.time(None, self.inner.backlog()).await
    }

    async fn delete_done_before(&self, before: time::OffsetDateTime) -> Result<u64, InboxError> {
        self.timer
            .time(None, self.inner.delete_done_before(before))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlapping_calls_of_one_user_count_once() {
        let t = Instant::now();
        let ms = Duration::from_millis;
        let intervals = vec![
            (t + ms(10), t + ms(20)),
            (t, t + ms(5)),
            (t + ms(12), t + ms(25)),
            (t + ms(30), t + ms(31)),
        ];
        assert_eq!(union_length(intervals), ms(5 + 15 + 1));
        assert_eq!(union_length(Vec::new()), Duration::ZERO);
    }
}
