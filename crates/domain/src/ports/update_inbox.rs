//! The update inbox port: every update from Telegram is stored before it is acknowledged, then
//! claimed per sender under an expiring lease, answered, and marked done. It is what makes a
//! crash lose nothing and lets several bot processes share one bot.

use async_trait::async_trait;
use thiserror::Error;
use time::{Duration, OffsetDateTime, PrimitiveDateTime};
use uuid::Uuid;

use crate::timestamp::truncate_to_millis;

/// Why an inbox operation failed.
#[derive(Debug, Error)]
pub enum InboxError {
    /// The database could not be reached or the operation failed in it. Retryable: every
    /// operation is idempotent.
    #[error("update inbox unavailable during {operation}: {detail}")]
    Unavailable {
        /// What was being done (`store`, `claim`, …).
        operation: &'static str,
        /// The driver's message, without payloads or credentials.
        detail: String,
    },
    /// A stored entry could not be read back.
    #[error("stored inbox entry is corrupt: {detail}")]
    Corrupt {
        /// What was wrong (field names, not contents).
        detail: String,
    },
}

impl InboxError {
    /// Whether trying the same operation again may succeed.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}

/// One update as received, waiting to be answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxUpdate {
    /// Telegram's `update_id`: unique, and increasing in the order Telegram sends updates.
    pub update_id: i64,
    /// Whose updates must be answered one at a time, in order: the sender's user id (or the
    /// chat id when an update has no sender).
    pub key: i64,
    /// The update as Telegram sent it (JSON), to be parsed again when it is answered.
    pub payload: String,
    /// When it was stored, in whole milliseconds.
    pub received_at: OffsetDateTime,
}

/// The right to answer one key's updates until `until`; proven by `token` (unique per claim).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// The key (sender) the lease is on.
    pub key: i64,
    /// Unique per claim: only the holder of the token can renew, complete or release.
    pub token: Uuid,
    /// When the lease expires unless renewed.
    pub until: OffsetDateTime,
}

impl Lease {
    /// When a lease taken or renewed at `now` for `lease_for` expires, in whole milliseconds
    /// (as every backend stores it), saturating at the ends of the representable range. A
    /// lease is held while `until > now`: at `until` it has expired.
    #[must_use]
    pub fn expiry(now: OffsetDateTime, lease_for: Duration) -> OffsetDateTime {
        let until = now.checked_add(lease_for).unwrap_or_else(|| {
            if lease_for.is_negative() {
                PrimitiveDateTime::MIN.assume_utc()
            } else {
                PrimitiveDateTime::MAX.assume_utc()
            }
        });
        truncate_to_millis(until)
    }
}

/// An update claimed for answering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    /// The update: the oldest pending one of its key.
    pub update: InboxUpdate,
    /// The lease on the update's key.
    pub lease: Lease,
    /// How many times this update has been claimed, this claim included (1 = first time; more
    /// means an earlier claimer crashed, or released it at shutdown).
    pub attempts: u32,
}

/// Whether [`UpdateInbox::store`] stored the update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// Stored now: it will be answered.
    New,
    /// An update with this id is already there (pending or done): a redelivery, dropped.
    Duplicate,
}

/// Stores received updates until they are answered.
///
/// **Per-key order.** [`claim`] returns the oldest pending update (by `update_id`) among keys
/// that nobody holds an unexpired lease on, and takes a lease on its key. So at most one
/// claimer answers a key at a time, always that key's oldest pending update: a user's messages
/// are answered one by one, in order, however many claimers (tasks or processes) there are.
///
/// **Leases.** A lease lasts until its `until`; [`renew`] extends it while the answer takes
/// long. An expired lease is void: the next [`claim`] may take the key, and the update comes
/// back with `attempts` one higher. [`complete`] marks the update done and gives the key back;
/// [`release`] gives the key back leaving the update pending (graceful shutdown).
///
/// **Deduplication.** The update id is unique: storing an id already stored, pending or done,
/// changes nothing. Done updates are kept for the retention period (so late redeliveries are
/// still recognised), then removed ([`delete_done_before`], or a TTL index).
///
/// **Time.** Callers pass the current time, so tests control expiry. Processes sharing one
/// inbox must have clocks in step (NTP); leases are tens of seconds long, so skew well under a
/// second does not matter.
///
/// [`claim`]: UpdateInbox::claim
/// [`renew`]: UpdateInbox::renew
/// [`complete`]: UpdateInbox::complete
/// [`release`]: UpdateInbox::release
/// [`delete_done_before`]: UpdateInbox::delete_done_before
#[async_trait]
pub trait UpdateInbox: Send + Sync {
    /// Stores `update` as pending unless an update with its id is already stored.
    async fn store(&self, update: &InboxUpdate) -> Result<Stored, InboxError>;

    /// Claims the oldest pending update among keys without an unexpired lease, taking a lease
    /// on its key until `now + lease_for`. `None` when there is nothing to claim.
    async fn claim(
        &self,
        now: OffsetDateTime,
        lease_for: Duration,
    ) -> Result<Option<Claimed>, InboxError>;

    /// Extends `lease` to `now + lease_for`. `None` when the lease is no longer held (it
    /// expired and another claimer took the key, or it was released): stop answering.
    async fn renew(
        &self,
        lease: &Lease,
        now: OffsetDateTime,
        lease_for: Duration,
    ) -> Result<Option<Lease>, InboxError>;

    /// Marks the update done at `now` (whoever holds its key now) and gives the key back if
    /// `lease` still holds it. A done update keeps no payload: the message text is not kept
    /// once answered, only the id that recognises a redelivery.
    async fn complete(
        &self,
        update_id: i64,
        lease: &Lease,
        now: OffsetDateTime,
    ) -> Result<(), InboxError>;

    /// Gives the key back without completing anything (its updates stay pending) if `lease`
    /// still holds it.
    async fn release(&self, lease: &Lease) -> Result<(), InboxError>;

    /// How many updates are pending (stored, not done).
    async fn backlog(&self) -> Result<u64, InboxError>;

    /// Removes the updates done before `before`; returns how many.
    async fn delete_done_before(&self, before: OffsetDateTime) -> Result<u64, InboxError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn a_lease_expires_in_whole_milliseconds_and_never_overflows() {
        let now = datetime!(2026-11-25 12:00:00.517_999 UTC);
        assert_eq!(
            Lease::expiry(now, Duration::seconds(30)),
            datetime!(2026-11-25 12:00:30.517 UTC)
        );
        assert_eq!(
            Lease::expiry(now, Duration::MAX),
            PrimitiveDateTime::MAX
                .assume_utc()
                .replace_nanosecond(999_000_000)
                .unwrap()
        );
        assert_eq!(
            Lease::expiry(now, Duration::MIN),
            PrimitiveDateTime::MIN.assume_utc()
        );
    }
}
