//! The update inbox port: every update a messenger delivers is stored before it is
//! acknowledged, then claimed per conversation under that conversation's reply lease
//! ([`LeaseScope::Replies`]), answered, and marked done. It is what makes a crash lose nothing
//! and lets several bot processes share one bot.

use async_trait::async_trait;
use thiserror::Error;
use time::{Duration, OffsetDateTime};

#[cfg(doc)]
use super::conversation_leases::LeaseScope;
use super::conversation_leases::{ConversationLeases, Lease};

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
    /// The update's id as the messenger numbers it: unique, and increasing in the order
    /// updates are sent.
    pub update_id: i64,
    /// The conversation the update belongs to: its updates are answered one at a time, in
    /// order, under the conversation's reply lease.
    pub conversation: i64,
    /// The update as the messenger sent it (JSON), to be parsed again when it is answered.
    pub payload: String,
    /// When it was stored, in whole milliseconds.
    pub received_at: OffsetDateTime,
}

/// An update claimed for answering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    /// The update: the oldest pending one of its conversation.
    pub update: InboxUpdate,
    /// The reply lease on the update's conversation.
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
/// **Per-conversation order.** [`claim`] returns the oldest pending update (by `update_id`)
/// among conversations whose reply lease ([`LeaseScope::Replies`]) nobody holds unexpired, and
/// takes that lease. So at most one claimer answers a conversation at a time, always its oldest
/// pending update: a conversation's messages are answered one by one, in order, however many
/// claimers (tasks or processes) there are. Whoever else holds a conversation's reply lease —
/// a reset, the terminal chat — keeps its updates from being claimed meanwhile.
///
/// **Leases** are the [`ConversationLeases`] of the same storage: [`renew`] extends a claim's
/// lease while the answer takes long; an expired lease is void, the next [`claim`] may take
/// the conversation, and the update comes back with `attempts` one higher. [`complete`] marks
/// the update done and gives the lease back; [`release`] gives it back leaving the update
/// pending (graceful shutdown).
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
/// [`renew`]: ConversationLeases::renew
/// [`complete`]: UpdateInbox::complete
/// [`release`]: ConversationLeases::release
/// [`delete_done_before`]: UpdateInbox::delete_done_before
#[async_trait]
pub trait UpdateInbox: ConversationLeases {
    /// Stores `update` as pending unless an update with its id is already stored.
    async fn store(&self, update: &InboxUpdate) -> Result<Stored, InboxError>;

    /// Claims the oldest pending update among conversations without an unexpired reply
    /// lease, taking that lease until `now + lease_for`. `None` when there is nothing to claim.
    async fn claim(
        &self,
        now: OffsetDateTime,
        lease_for: Duration,
    ) -> Result<Option<Claimed>, InboxError>;

    /// Marks the update done at `now` (whoever holds its conversation now) and gives the
    /// lease back if `lease` still holds it. A done update keeps no payload: the message text
    /// is not kept once answered, only the id that recognises a redelivery. Idempotent:
    /// completing a done update again changes nothing, so a failed call can be retried.
    async fn complete(
        &self,
        update_id: i64,
        lease: &Lease,
        now: OffsetDateTime,
    ) -> Result<(), InboxError>;

    /// How many updates are pending (stored, not done).
    async fn backlog(&self) -> Result<u64, InboxError>;

    /// Removes the updates done before `before`; returns how many.
    async fn delete_done_before(&self, before: OffsetDateTime) -> Result<u64, InboxError>;
}

impl From<super::conversation_leases::LeaseError> for InboxError {
    fn from(error: super::conversation_leases::LeaseError) -> Self {
        use super::conversation_leases::LeaseError;
        match error {
            LeaseError::Unavailable { operation, detail } => {
                Self::Unavailable { operation, detail }
            }
            LeaseError::Corrupt { detail } => Self::Corrupt { detail },
        }
    }
}
