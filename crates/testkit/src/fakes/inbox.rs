//! An in-memory update inbox and conversation leases: updates by id and leases by
//! conversation and scope under one lock, with the real backends' semantics (times in whole
//! milliseconds, a lease held while `until > now`), so tests of the update loop and of every
//! memory writer see what SQLite and MongoDB do.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use butler_domain::ports::{
    Claimed, ConversationLeases, InboxError, InboxUpdate, Lease, LeaseError, LeaseScope, Stored,
    UpdateInbox,
};
use butler_domain::timestamp::truncate_to_millis;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use super::Outage;

#[derive(Debug)]
struct Entry {
    update: InboxUpdate,
    done_at: Option<OffsetDateTime>,
    attempts: u32,
}

#[derive(Debug, Default)]
struct State {
    /// By update id, so iteration is oldest first.
    updates: BTreeMap<i64, Entry>,
    /// By conversation and scope: the token and expiry of the lease on it.
    leases: HashMap<(i64, LeaseScope), (Uuid, OffsetDateTime)>,
}

impl State {
    fn holds(&self, lease: &Lease) -> bool {
        self.leases
            .get(&(lease.conversation, lease.scope))
            .is_some_and(|(token, _)| *token == lease.token)
    }

    fn held(&self, conversation: i64, scope: LeaseScope, now: OffsetDateTime) -> bool {
        self.leases
            .get(&(conversation, scope))
            .is_some_and(|(_, until)| *until > now)
    }

    fn put(&mut self, lease: &Lease) {
        self.leases.insert(
            (lease.conversation, lease.scope),
            (lease.token, lease.until),
        );
    }

    fn release(&mut self, lease: &Lease) {
        if self.holds(lease) {
            self.leases.remove(&(lease.conversation, lease.scope));
        }
    }
}

/// Updates and leases in maps; also the conversation leases of tests without an inbox.
#[derive(Debug, Default)]
pub struct InMemoryInbox {
    state: Mutex<State>,
    /// While down, every operation fails with `Unavailable`.
    pub outage: Outage,
    /// This many of the next `complete` calls fail with `Unavailable` (a busy database, a
    /// MongoDB step-down).
    pub failing_completes: std::sync::atomic::AtomicUsize,
    /// How many `store` calls the outage refused so far: a test waits on it to know an update
    /// was offered while the inbox was down.
    pub refused_stores: std::sync::atomic::AtomicUsize,
    /// While set, `renew` fails with `Unavailable` and nothing else does: a holder cannot keep
    /// its lease, while claims (another replica's, say) still go through.
    pub failing_renewals: std::sync::atomic::AtomicBool,
}

impl InMemoryInbox {
    /// The ids of every update ever stored (answered or not, until purged), in order: what a
    /// test asserts on to prove something was, or was not, kept.
    #[must_use]
    pub fn stored_update_ids(&self) -> Vec<i64> {
        self.state
            .lock()
            .expect("inbox mutex")
            .updates
            .keys()
            .copied()
            .collect()
    }

    fn check(&self, operation: &'static str) -> Result<MutexGuard<'_, State>, InboxError> {
        if self.outage.is_down() {
            return Err(InboxError::Unavailable {
                operation,
                detail: "fake outage".to_owned(),
            });
        }
        Ok(self.state.lock().expect("inbox mutex"))
    }

    fn check_leases(&self, operation: &'static str) -> Result<MutexGuard<'_, State>, LeaseError> {
        if self.outage.is_down() {
            return Err(LeaseError::Unavailable {
                operation,
                detail: "fake outage".to_owned(),
            });
        }
        Ok(self.state.lock().expect("inbox mutex"))
    }

    /// How many times the update has been claimed so far (0 when never, or not stored).
    #[must_use]
    pub fn claims_of(&self, update_id: i64) -> u32 {
        self.state
            .lock()
            .expect("inbox mutex")
            .updates
            .get(&update_id)
            .map_or(0, |e| e.attempts)
    }

    /// Whether someone holds an unexpired lease on `(conversation, scope)` at `now`.
    #[must_use]
    pub fn is_held(&self, conversation: i64, scope: LeaseScope, now: OffsetDateTime) -> bool {
        self.state
            .lock()
            .expect("inbox mutex")
            .held(conversation, scope, truncate_to_millis(now))
    }
}

#[async_trait]
impl ConversationLeases for InMemoryInbox {
    async fn acquire(
        &self,
        conversation: i64,
        scope: LeaseScope,
        now: OffsetDateTime,
        lease_for: Duration,
    ) -> Result<Option<Lease>, LeaseError> {
        let mut state = self.check_leases("acquire")?;
        let now = truncate_to_millis(now);
        if state.held(conversation, scope, now) {
            return Ok(None);
        }
        let lease = Lease::new(conversation, scope, now, lease_for);
        state.put(&lease);
        Ok(Some(lease))
    }

    async fn take_over(
        &self,
        conversation: i64,
        scope: LeaseScope,
        now: OffsetDateTime,
        lease_for: Duration,
    ) -> Result<Lease, LeaseError> {
        let mut state = self.check_leases("take_over")?;
        let lease = Lease::new(conversation, scope, truncate_to_millis(now), lease_for);
        state.put(&lease);
        Ok(lease)
    }

    async fn renew(
        &self,
        lease: &Lease,
        now: OffsetDateTime,
        lease_for: Duration,
    ) -> Result<Option<Lease>, LeaseError> {
        if self
            .failing_renewals
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            return Err(LeaseError::Unavailable {
                operation: "renew",
                detail: "fake failure".to_owned(),
            });
        }
        let mut state = self.check_leases("renew")?;
        if !state.holds(lease) {
            return Ok(None);
        }
        let renewed = lease.renewed(now, lease_for);
        state.put(&renewed);
        Ok(Some(renewed))
    }

    async fn release(&self, lease: &Lease) -> Result<(), LeaseError> {
        self.check_leases("release")?.release(lease);
        Ok(())
    }
}

#[async_trait]
impl UpdateInbox for InMemoryInbox {
    async fn store(&self, update: &InboxUpdate) -> Result<Stored, InboxError> {
        let mut state = self.check("store").inspect_err(|_| {
            self.refused_stores
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        })?;
        if state.updates.contains_key(&update.update_id) {
            return Ok(Stored::Duplicate);
        }
        let update = InboxUpdate {
            received_at: truncate_to_millis(update.received_at),
            ..update.clone()
        };
        state.updates.insert(
            update.update_id,
            Entry {
                update,
                done_at: None,
                attempts: 0,
            },
        );
        Ok(Stored::New)
    }

    async fn claim(
        &self,
        now: OffsetDateTime,
        lease_for: Duration,
    ) -> Result<Option<Claimed>, InboxError> {
        let mut state = self.check("claim")?;
        let now = truncate_to_millis(now);
        // Oldest first: the first pending update of an unleased conversation is also that
        // conversation's oldest pending one.
        let found = state
            .updates
            .values()
            .find(|e| {
                e.done_at.is_none() && !state.held(e.update.conversation, LeaseScope::Replies, now)
            })
            .map(|e| e.update.update_id);
        let Some(update_id) = found else {
            return Ok(None);
        };
        let entry = state
            .updates
            .get_mut(&update_id)
            .expect("the update just found");
        entry.attempts += 1;
        let (update, attempts) = (entry.update.clone(), entry.attempts);
        let lease = Lease::new(update.conversation, LeaseScope::Replies, now, lease_for);
        state.put(&lease);
        Ok(Some(Claimed {
            update,
            lease,
            attempts,
        }))
    }

    async fn complete(
        &self,
        update_id: i64,
        lease: &Lease,
        now: OffsetDateTime,
    ) -> Result<(), InboxError> {
        let mut state = self.check("complete")?;
        if self
            .failing_completes
            .fetch_update(
                std::sync::atomic::Ordering::SeqCst,
                std::sync::atomic::Ordering::SeqCst,
                |n| n.checked_sub(1),
            )
            .is_ok()
        {
            return Err(InboxError::Unavailable {
                operation: "complete",
                detail: "fake failure".to_owned(),
            });
        }
        if let Some(entry) = state.updates.get_mut(&update_id) {
            if entry.done_at.is_none() {
                entry.done_at = Some(truncate_to_millis(now));
                entry.update.payload.clear();
            }
        }
        state.release(lease);
        Ok(())
    }

    async fn backlog(&self) -> Result<u64, InboxError> {
        let state = self.check("backlog")?;
        let pending = state
            .updates
            .values()
            .filter(|e| e.done_at.is_none())
            .count();
        Ok(u64::try_from(pending).unwrap_or(u64::MAX))
    }

    async fn delete_done_before(&self, before: OffsetDateTime) -> Result<u64, InboxError> {
        let mut state = self.check("delete_done_before")?;
        let before = truncate_to_millis(before);
        let count = state.updates.len();
        state
            .updates
            .retain(|_, e| e.done_at.is_none_or(|done| done >= before));
        Ok(u64::try_from(count - state.updates.len()).unwrap_or(u64::MAX))
    }
}
