//! The conversation lease port: one expiring lease per conversation and scope, held by
//! whoever is writing that conversation's memory, in any process on the same storage.
//!
//! A conversation's memory has several writers: the reply to each message (appends events),
//! its compression (folds events into the summary, saves facts, deletes what it folded) — run
//! inline by the bot or by `memory-worker` — and a reset (forgets everything). The profile's
//! compare-and-set keeps the summary consistent whatever the interleaving, but two writers of
//! the same *kind* at once waste work and, with facts, lose them. So each kind of writer takes
//! the lease of its [`LeaseScope`] first:
//!
//! - [`LeaseScope::Replies`]: the update inbox takes it when it claims a conversation's
//!   oldest pending update, so a conversation's messages are answered one at a time, in order,
//!   across tasks and processes; the terminal chat takes it around each turn.
//! - [`LeaseScope::Compression`]: at most one compression of a conversation runs anywhere.
//!   A reply never waits for it: they touch different events.
//! - A reset takes both: it waits for the reply in flight and takes the compression's lease
//!   over ([`ConversationLeases::take_over`]), so the running compression stops at its next
//!   step.
//!
//! The inbox's claims and these leases are one mechanism: the same stored leases, the same
//! [`Lease`] values, renewed and released by the same calls.

use std::fmt;
use std::str::FromStr;

use async_trait::async_trait;
use thiserror::Error;
use time::{Duration, OffsetDateTime, PrimitiveDateTime};
use uuid::Uuid;

use crate::code::UnknownCode;
use crate::timestamp::truncate_to_millis;

/// What a lease on a conversation guards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LeaseScope {
    /// Answering the conversation's messages (appending its events).
    Replies,
    /// Compressing its memory (summary, facts, deleting folded events).
    Compression,
}

impl LeaseScope {
    /// Every scope, for registering metric labels and storage checks.
    pub const ALL: [Self; 2] = [Self::Replies, Self::Compression];

    /// The stored form: `reply` or `compress`.
    #[must_use]
    pub const fn code(self) -> &'static str {
        match self {
            Self::Replies => "reply",
            Self::Compression => "compress",
        }
    }
}

impl fmt::Display for LeaseScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl FromStr for LeaseScope {
    type Err = UnknownCode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|scope| scope.code() == s)
            .ok_or_else(|| UnknownCode {
                kind: "lease scope",
                value: s.to_owned(),
            })
    }
}

/// The right to write one conversation's memory in one scope until `until`; proven by
/// `token` (unique per acquisition).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// The conversation: a private chat's user id (the owner of its memory).
    pub conversation: i64,
    /// What the lease guards.
    pub scope: LeaseScope,
    /// Unique per acquisition: only the holder of the token can renew or release.
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

    /// A fresh lease (new token) on `conversation` in `scope`, taken at `now` for `lease_for`.
    #[must_use]
    pub fn new(
        conversation: i64,
        scope: LeaseScope,
        now: OffsetDateTime,
        lease_for: Duration,
    ) -> Self {
        Self {
            conversation,
            scope,
            token: Uuid::new_v4(),
            until: Self::expiry(now, lease_for),
        }
    }

    /// This lease extended to `now + lease_for` (same token).
    #[must_use]
    pub fn renewed(&self, now: OffsetDateTime, lease_for: Duration) -> Self {
        Self {
            until: Self::expiry(now, lease_for),
            ..*self
        }
    }
}

/// Why a lease operation failed.
#[derive(Debug, Error)]
pub enum LeaseError {
    /// The database could not be reached or the operation failed in it. Retryable.
    #[error("conversation leases unavailable during {operation}: {detail}")]
    Unavailable {
        /// What was being done (`acquire`, `renew`, …).
        operation: &'static str,
        /// The driver's message, without credentials.
        detail: String,
    },
    /// A stored lease could not be read back.
    #[error("stored lease is corrupt: {detail}")]
    Corrupt {
        /// What was wrong (field names, not contents).
        detail: String,
    },
}

impl LeaseError {
    /// Whether trying the same operation again may succeed.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}

/// Stores the leases on conversations.
///
/// **Exclusion.** For each `(conversation, scope)` at most one unexpired lease exists: an
/// [`acquire`] while another holder's lease is unexpired returns `None`, however many callers
/// race in however many processes. Leases of different scopes or conversations never exclude
/// each other.
///
/// **Holding.** A lease is held while `until > now`. [`renew`] extends it and [`release`]
/// gives it back, both only with the holder's token: a holder whose lease expired and was
/// taken by someone else can touch neither (renew returns `None`). An expired lease is void:
/// the next [`acquire`] takes it.
///
/// **Time.** Callers pass the current time, so tests control expiry. Processes sharing
/// storage must have clocks in step (NTP); skew well under a second does not matter.
///
/// [`acquire`]: ConversationLeases::acquire
/// [`renew`]: ConversationLeases::renew
/// [`release`]: ConversationLeases::release
#[async_trait]
pub trait ConversationLeases: Send + Sync {
    /// Takes the lease on `(conversation, scope)` until `now + lease_for` if nobody holds an
    /// unexpired one at `now`; `None` when someone does.
    async fn acquire(
        &self,
        conversation: i64,
        scope: LeaseScope,
        now: OffsetDateTime,
        lease_for: Duration,
    ) -> Result<Option<Lease>, LeaseError>;

    /// Takes the lease on `(conversation, scope)` until `now + lease_for` whoever holds it:
    /// the previous holder's next [`renew`](ConversationLeases::renew) returns `None`, which
    /// tells it to stop. A reset uses it to stop a compression in flight.
    async fn take_over(
        &self,
        conversation: i64,
        scope: LeaseScope,
        now: OffsetDateTime,
        lease_for: Duration,
    ) -> Result<Lease, LeaseError>;

    /// Extends `lease` to `now + lease_for`. `None` when the lease is no longer held (it
    /// expired and someone else took it, or it was taken over or released): stop writing.
    async fn renew(
        &self,
        lease: &Lease,
        now: OffsetDateTime,
        lease_for: Duration,
    ) -> Result<Option<Lease>, LeaseError>;

    /// Gives the lease back if `lease` still holds it (otherwise does nothing).
    async fn release(&self, lease: &Lease) -> Result<(), LeaseError>;
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

    #[test]
    fn scopes_round_trip_through_their_stored_codes() {
        for scope in LeaseScope::ALL {
            assert_eq!(scope.code().parse::<LeaseScope>().unwrap(), scope);
        }
        assert!("replies".parse::<LeaseScope>().is_err());
    }

    #[test]
    fn a_renewed_lease_keeps_its_token_and_moves_its_end() {
        let now = datetime!(2026-12-07 10:00 UTC);
        let lease = Lease::new(7, LeaseScope::Compression, now, Duration::seconds(10));
        let later = lease.renewed(now + Duration::seconds(5), Duration::seconds(10));
        assert_eq!(later.token, lease.token);
        assert_eq!(later.until, now + Duration::seconds(15));
    }
}
