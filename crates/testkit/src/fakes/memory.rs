//! An in-memory event store ordered by event cursor, with switches for outages and for a crash
//! between "summary saved" and "events deleted".

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use async_trait::async_trait;
use butler_domain::ports::{MemoryStoreError, UserEventCount, UserMemoryRepository};
use butler_domain::{EventCursor, UserId, UserMemoryEvent};

use super::Outage;

#[derive(Debug, Default)]
struct State {
    by_user: BTreeMap<UserId, BTreeMap<EventCursor, UserMemoryEvent>>,
    ids: HashSet<uuid::Uuid>,
}

/// Events in ordered maps.
#[derive(Debug, Default)]
pub struct InMemoryMemory {
    state: Mutex<State>,
    /// While down, every operation fails with `Unavailable`.
    pub outage: Outage,
    /// While set, deletions fail (simulates a crash after the summary was saved).
    pub fail_deletes: AtomicBool,
    /// While set, appends fail (reads keep working).
    pub fail_appends: AtomicBool,
}

impl InMemoryMemory {
    fn check(&self, operation: &'static str) -> Result<(), MemoryStoreError> {
        if self.outage.is_down() {
            return Err(MemoryStoreError::Unavailable {
                operation,
                detail: "fake outage".to_owned(),
            });
        }
        Ok(())
    }

    fn fail(operation: &'static str) -> MemoryStoreError {
        MemoryStoreError::Unavailable {
            operation,
            detail: "injected failure".to_owned(),
        }
    }

    /// Every stored event of the user, oldest first (for assertions).
    #[must_use]
    pub fn all(&self, user_id: UserId) -> Vec<UserMemoryEvent> {
        let state = self.state.lock().expect("memory mutex");
        state
            .by_user
            .get(&user_id)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }
}

#[async_trait]
impl UserMemoryRepository for InMemoryMemory {
    async fn append(&self, events: &[UserMemoryEvent]) -> Result<(), MemoryStoreError> {
        self.check("append")?;
        if self.fail_appends.load(Ordering::SeqCst) {
            return Err(Self::fail("append"));
        }
        let mut state = self.state.lock().expect("memory mutex");
        for event in events {
            if state.ids.insert(event.event_id) {
                state
                    .by_user
                    .entry(event.user_id)
                    .or_default()
                    .insert(event.cursor(), event.clone());
            }
        }
        Ok(())
    }

    async fn recent(
        &self,
        user_id: UserId,
        limit: usize,
        after: Option<EventCursor>,
    ) -> Result<Vec<UserMemoryEvent>, MemoryStoreError> {
        self.check("recent")?;
        let state = self.state.lock().expect("memory mutex");
        let Some(events) = state.by_user.get(&user_id) else {
            return Ok(Vec::new());
        };
        let mut newest: Vec<UserMemoryEvent> = events
            .values()
            .rev()
            .take_while(|e| after.is_none_or(|a| e.cursor() > a))
            .take(limit)
            .cloned()
            .collect();
        newest.reverse();
        Ok(newest)
    }

    async fn count(&self, user_id: UserId) -> Result<u64, MemoryStoreError> {
        self.check("count")?;
        let state = self.state.lock().expect("memory mutex");
        Ok(state.by_user.get(&user_id).map_or(0, |m| m.len() as u64))
    }

    async fn events_up_to(
        &self,
        user_id: UserId,
        up_to: EventCursor,
        limit: usize,
    ) -> Result<Vec<UserMemoryEvent>, MemoryStoreError> {
        self.check("events_up_to")?;
        let state = self.state.lock().expect("memory mutex");
        let Some(events) = state.by_user.get(&user_id) else {
            return Ok(Vec::new());
        };
        Ok(events
            .range(..=up_to)
            .take(limit)
            .map(|(_, e)| e.clone())
            .collect())
    }

    async fn delete_up_to(
        &self,
        user_id: UserId,
        up_to: EventCursor,
    ) -> Result<u64, MemoryStoreError> {
        self.check("delete_up_to")?;
        if self.fail_deletes.load(Ordering::SeqCst) {
            return Err(Self::fail("delete_up_to"));
        }
        let mut state = self.state.lock().expect("memory mutex");
        let State { by_user, ids } = &mut *state;
        let Some(events) = by_user.get_mut(&user_id) else {
            return Ok(0);
        };
        let keep = events.split_off(&up_to);
        let mut removed = std::mem::replace(events, keep);
        // `split_off` keeps `up_to` itself on the right; it is "at or before", so remove it too.
        if let Some(e) = events.remove(&up_to) {
            removed.insert(up_to, e);
        }
        for e in removed.values() {
            ids.remove(&e.event_id);
        }
        Ok(removed.len() as u64)
    }

    async fn delete_all(&self, user_id: UserId) -> Result<u64, MemoryStoreError> {
        self.check("delete_all")?;
        if self.fail_deletes.load(Ordering::SeqCst) {
            return Err(Self::fail("delete_all"));
        }
        let mut state = self.state.lock().expect("memory mutex");
        let removed = state.by_user.remove(&user_id).unwrap_or_default();
        for e in removed.values() {
            state.ids.remove(&e.event_id);
        }
        Ok(removed.len() as u64)
    }

    async fn users_over(
        &self,
        threshold: u64,
        limit: usize,
    ) -> Result<Vec<UserEventCount>, MemoryStoreError> {
        self.check("users_over")?;
        let state = self.state.lock().expect("memory mutex");
        let mut users: Vec<UserEventCount> = state
            .by_user
            .iter()
            .map(|(user_id, m)| UserEventCount {
                user_id: *user_id,
                events: m.len() as u64,
            })
            .filter(|c| c.events > threshold)
            .collect();
        users.sort_by(|a, b| b.events.cmp(&a.events).then(a.user_id.cmp(&b.user_id)));
        users.truncate(limit);
        Ok(users)
    }
}
