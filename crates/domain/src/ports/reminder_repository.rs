//! The reminder store port: reminders kept durably, listed per user, and claimed when due
//! under an expiring lease, so that with any number of schedulers (tasks or processes on one
//! database) each reminder is delivered once — and again only if its claimer crashed before
//! marking it delivered.

use async_trait::async_trait;
use thiserror::Error;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::reminder::{Reminder, ReminderId};
use crate::user::UserId;

/// Why a reminder store operation failed.
#[derive(Debug, Error)]
pub enum ReminderStoreError {
    /// The database could not be reached or the operation failed in it. Retryable: every
    /// operation is idempotent or guarded by a lease token.
    #[error("reminder store unavailable during {operation}: {detail}")]
    Unavailable {
        /// What was being done (`add`, `claim`, …).
        operation: &'static str,
        /// The driver's message, without payloads or credentials.
        detail: String,
    },
    /// A stored reminder could not be read back.
    #[error("stored reminder is corrupt: {detail}")]
    Corrupt {
        /// What was wrong (field names, not contents).
        detail: String,
    },
}

/// A reminder claimed for delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedReminder {
    /// The reminder, `attempts` counting this claim.
    pub reminder: Reminder,
    /// Proves the claim to [`ReminderRepository::mark_delivered`].
    pub token: Uuid,
    /// The lease's end: after it, another scheduler may claim the reminder again.
    pub until: OffsetDateTime,
}

/// The outcome of a change a user asked for (cancel, reschedule).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeOutcome {
    /// Done.
    Changed,
    /// No pending reminder of that user with that id (never was, delivered or cancelled).
    NotFound,
    /// A scheduler holds it under an unexpired lease: it is being delivered right now.
    Delivering,
}

/// Stores reminders and hands due ones to schedulers.
///
/// **Claims.** [`claim_due`] takes up to `limit` pending reminders due at or before `now` that
/// no unexpired lease holds, earliest due first, and leases each until `now + lease_for` with a
/// fresh token, counting the attempt. Two claimers never get the same reminder while a lease
/// holds, however they race. [`mark_delivered`] with the claim's token marks it delivered;
/// with a stale token (the lease expired and another claimer took it over, or it was
/// cancelled) it changes nothing and says so. A claimer that crashes leaves the lease to
/// expire; the reminder is then claimed again.
///
/// **Changes.** [`cancel`] and [`reschedule`] act only on the user's own pending reminders,
/// and not while a scheduler holds an unexpired lease on one ([`ChangeOutcome::Delivering`]):
/// a reminder is either delivered or changed, never both.
///
/// **Order and time.** Listings are by due time, then id. Times are UTC whole milliseconds;
/// callers pass "now" so tests control expiry.
///
/// **Retention.** Delivered and cancelled reminders are kept until
/// [`delete_finished_before`] (or a TTL index) removes them.
///
/// [`claim_due`]: ReminderRepository::claim_due
/// [`mark_delivered`]: ReminderRepository::mark_delivered
/// [`cancel`]: ReminderRepository::cancel
/// [`reschedule`]: ReminderRepository::reschedule
/// [`delete_finished_before`]: ReminderRepository::delete_finished_before
#[async_trait]
pub trait ReminderRepository: Send + Sync {
    /// Stores a new pending reminder (an id already stored is left as it is).
    async fn add(&self, reminder: &Reminder) -> Result<(), ReminderStoreError>;

    /// The reminder with this id, in any state; `None` if there is none.
    async fn get(&self, id: ReminderId) -> Result<Option<Reminder>, ReminderStoreError>;

    /// The user's pending reminders, earliest due first.
    async fn list_pending(&self, user: UserId) -> Result<Vec<Reminder>, ReminderStoreError>;

    /// Every reminder of the user in any state (pending, delivered, cancelled — until
    /// retention removes them), earliest due first: for support staff and exports.
    async fn list_all(&self, user: UserId) -> Result<Vec<Reminder>, ReminderStoreError>;

    /// How many pending reminders the user has.
    async fn count_pending(&self, user: UserId) -> Result<u64, ReminderStoreError>;

    /// Cancels the user's pending reminder `id` at `now`.
    async fn cancel(
        &self,
        user: UserId,
        id: ReminderId,
        now: OffsetDateTime,
    ) -> Result<ChangeOutcome, ReminderStoreError>;

    /// Moves the user's pending reminder `id` to `due_at`.
    async fn reschedule(
        &self,
        user: UserId,
        id: ReminderId,
        due_at: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<ChangeOutcome, ReminderStoreError>;

    /// Claims up to `limit` due reminders (see the trait documentation).
    async fn claim_due(
        &self,
        now: OffsetDateTime,
        lease_for: Duration,
        limit: u32,
    ) -> Result<Vec<ClaimedReminder>, ReminderStoreError>;

    /// Marks a claimed reminder delivered at `now`; `false` (and nothing changed) when `token`
    /// no longer holds it.
    async fn mark_delivered(
        &self,
        id: ReminderId,
        token: Uuid,
        now: OffsetDateTime,
    ) -> Result<bool, ReminderStoreError>;

    /// Marks several claimed reminders delivered at `now`, each as [`mark_delivered`] would,
    /// in one write where the backend allows (one transaction, one update) — a scheduler
    /// that sends many in a row then pays one commit for them. Returns how many were still
    /// held by their tokens and are now delivered (the others are left as they are). On an
    /// error some may have been marked.
    ///
    /// [`mark_delivered`]: ReminderRepository::mark_delivered
    async fn mark_delivered_many(
        &self,
        claims: &[(ReminderId, Uuid)],
        now: OffsetDateTime,
    ) -> Result<usize, ReminderStoreError> {
        let mut marked = 0;
        for &(id, token) in claims {
            if self.mark_delivered(id, token, now).await? {
                marked += 1;
            }
        }
        Ok(marked)
    }

    /// Gives a claim back without delivering (graceful shutdown, a failed send): the reminder
    /// is claimable again at once. `false` when `token` no longer holds it.
    async fn release(&self, id: ReminderId, token: Uuid) -> Result<bool, ReminderStoreError>;

    /// The earliest due time among pending reminders, leased or not (the scheduler sleeps
    /// until then, or its poll interval, whichever is sooner).
    async fn next_due(&self) -> Result<Option<OffsetDateTime>, ReminderStoreError>;

    /// Deletes all the user's reminders, in any state (a profile reset); returns how many.
    async fn delete_user(&self, user: UserId) -> Result<u64, ReminderStoreError>;

    /// Deletes reminders delivered or cancelled before `before`; returns how many.
    async fn delete_finished_before(
        &self,
        before: OffsetDateTime,
    ) -> Result<u64, ReminderStoreError>;
}
