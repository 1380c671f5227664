//! An in-memory reminder store with the real backends' semantics (whole milliseconds, a lease
//! held while `until > now`, earliest due first), so scheduler and handler tests see what
//! SQLite and MongoDB do; the reminder contract suite runs against it too.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use butler_domain::ports::{
    ChangeOutcome, ClaimedReminder, ReminderRepository, ReminderStoreError,
};
use butler_domain::reminder::{Reminder, ReminderId, ReminderStatus};
use butler_domain::timestamp::truncate_to_millis;
use butler_domain::UserId;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use super::Outage;

#[derive(Debug, Clone)]
struct Entry {
    reminder: Reminder,
    lease: Option<(Uuid, OffsetDateTime)>,
}

/// Reminders in memory. Turn [`InMemoryReminders::outage`] on to make every call fail as
/// unavailable.
#[derive(Debug, Default)]
pub struct InMemoryReminders {
    entries: Mutex<HashMap<ReminderId, Entry>>,
    /// When on, every operation fails as unavailable.
    pub outage: Outage,
}

impl InMemoryReminders {
    fn lock(
        &self,
        operation: &'static str,
    ) -> Result<MutexGuard<'_, HashMap<ReminderId, Entry>>, ReminderStoreError> {
        if self.outage.is_down() {
            return Err(ReminderStoreError::Unavailable {
                operation,
                detail: "fake outage".into(),
            });
        }
        Ok(self.entries.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Every stored reminder, any state, earliest due first (for assertions).
    #[must_use]
    pub fn all(&self) -> Vec<Reminder> {
        let mut all: Vec<Reminder> = self
            .entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .map(|e| e.reminder.clone())
            .collect();
        all.sort_by_key(|r| (r.due_at, r.id));
        all
    }
}

fn pending_sorted<'a>(entries: impl Iterator<Item = &'a Entry>) -> Vec<&'a Entry> {
    let mut list: Vec<&Entry> = entries
        .filter(|e| e.reminder.status == ReminderStatus::Pending)
        .collect();
    list.sort_by_key(|e| (e.reminder.due_at, e.reminder.id));
    list
}

fn change(
    entries: &mut HashMap<ReminderId, Entry>,
    user: UserId,
    id: ReminderId,
    now: OffsetDateTime,
    apply: impl FnOnce(&mut Entry),
) -> ChangeOutcome {
    let Some(entry) = entries
        .get_mut(&id)
        .filter(|e| e.reminder.user_id == user && e.reminder.status == ReminderStatus::Pending)
    else {
        return ChangeOutcome::NotFound;
    };
    if entry.lease.is_some_and(|(_, until)| until > now) {
        return ChangeOutcome::Delivering;
    }
    apply(entry);
    entry.lease = None;
    ChangeOutcome::Changed
}

#[async_trait]
impl ReminderRepository for InMemoryReminders {
    async fn add(&self, reminder: &Reminder) -> Result<(), ReminderStoreError> {
        let mut entries = self.lock("add")?;
        entries.entry(reminder.id).or_insert_with(|| Entry {
            reminder: reminder.clone(),
            lease: None,
        });
        Ok(())
    }

    async fn get(&self, id: ReminderId) -> Result<Option<Reminder>, ReminderStoreError> {
        Ok(self.lock("get")?.get(&id).map(|e| e.reminder.clone()))
    }

    async fn list_pending(&self, user: UserId) -> Result<Vec<Reminder>, ReminderStoreError> {
        let entries = self.lock("list_pending")?;
        Ok(
            pending_sorted(entries.values().filter(|e| e.reminder.user_id == user))
                .into_iter()
                .map(|e| e.reminder.clone())
                .collect(),
        )
    }

    async fn list_all(&self, user: UserId) -> Result<Vec<Reminder>, ReminderStoreError> {
        let entries = self.lock("list_all")?;
        let mut all: Vec<Reminder> = entries
            .values()
            .filter(|e| e.reminder.user_id == user)
            .map(|e| e.reminder.clone())
            .collect();
        all.sort_by_key(|r| (r.due_at, r.id));
        Ok(all)
    }

    async fn count_pending(&self, user: UserId) -> Result<u64, ReminderStoreError> {
        let entries = self.lock("count_pending")?;
        Ok(pending_sorted(entries.values().filter(|e| e.reminder.user_id == user)).len() as u64)
    }

    async fn cancel(
        &self,
        user: UserId,
        id: ReminderId,
        now: OffsetDateTime,
    ) -> Result<ChangeOutcome, ReminderStoreError> {
        let now = truncate_to_millis(now);
        let mut entries = self.lock("cancel")?;
        Ok(change(&mut entries, user, id, now, |e| {
            e.reminder.status = ReminderStatus::Cancelled(now);
        }))
    }

    async fn reschedule(
        &self,
        user: UserId,
        id: ReminderId,
        due_at: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<ChangeOutcome, ReminderStoreError> {
        let now = truncate_to_millis(now);
        let mut entries = self.lock("reschedule")?;
        Ok(change(&mut entries, user, id, now, |e| {
            e.reminder.due_at = truncate_to_millis(due_at);
        }))
    }

    async fn claim_due(
        &self,
        now: OffsetDateTime,
        lease_for: Duration,
        limit: u32,
    ) -> Result<Vec<ClaimedReminder>, ReminderStoreError> {
        let now = truncate_to_millis(now);
        let until = truncate_to_millis(now + lease_for);
        let mut entries = self.lock("claim_due")?;
        let ids: Vec<ReminderId> = pending_sorted(entries.values())
            .into_iter()
            .filter(|e| e.reminder.due_at <= now && e.lease.is_none_or(|(_, u)| u <= now))
            .take(limit as usize)
            .map(|e| e.reminder.id)
            .collect();
        let mut claimed = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(entry) = entries.get_mut(&id) {
                let token = Uuid::new_v4();
                entry.lease = Some((token, until));
                entry.reminder.attempts = entry.reminder.attempts.saturating_add(1);
                claimed.push(ClaimedReminder {
                    reminder: entry.reminder.clone(),
                    token,
                    until,
                });
            }
        }
        Ok(claimed)
    }

    async fn mark_delivered(
        &self,
        id: ReminderId,
        token: Uuid,
        now: OffsetDateTime,
    ) -> Result<bool, ReminderStoreError> {
        let mut entries = self.lock("mark_delivered")?;
        let Some(entry) = entries.get_mut(&id) else {
            return Ok(false);
        };
        if entry.reminder.status != ReminderStatus::Pending
            || entry.lease.is_none_or(|(t, _)| t != token)
        {
            return Ok(false);
        }
        entry.reminder.status = ReminderStatus::Delivered(truncate_to_millis(now));
        entry.lease = None;
        Ok(true)
    }

    async fn release(&self, id: ReminderId, token: Uuid) -> Result<bool, ReminderStoreError> {
        let mut entries = self.lock("release")?;
        let Some(entry) = entries.get_mut(&id) else {
            return Ok(false);
        };
        if entry.reminder.status != ReminderStatus::Pending
            || entry.lease.is_none_or(|(t, _)| t != token)
        {
            return Ok(false);
        }
        entry.lease = None;
        Ok(true)
    }

    async fn next_due(&self) -> Result<Option<OffsetDateTime>, ReminderStoreError> {
        let entries = self.lock("next_due")?;
        Ok(pending_sorted(entries.values())
            .first()
            .map(|e| e.reminder.due_at))
    }

    async fn delete_user(&self, user: UserId) -> Result<u64, ReminderStoreError> {
        let mut entries = self.lock("delete_user")?;
        let before = entries.len();
        entries.retain(|_, e| e.reminder.user_id != user);
        Ok((before - entries.len()) as u64)
    }

    async fn delete_finished_before(
        &self,
        before: OffsetDateTime,
    ) -> Result<u64, ReminderStoreError> {
        let mut entries = self.lock("delete_finished_before")?;
        let count = entries.len();
        entries.retain(|_, e| {
            e.reminder
                .status
                .finished_at()
                .is_none_or(|at| at >= before)
        });
        Ok((count - entries.len()) as u64)
    }
}
