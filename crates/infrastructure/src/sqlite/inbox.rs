//! [`UpdateInbox`] on SQLite: one row per received update in `inbox_updates`; the reply
//! leases of conversations are rows of `conversation_leases` ([`super::leases`]), shared with
//! every other writer of a conversation's memory.
//!
//! A claim is one write of the writer thread (a savepoint of its group's `IMMEDIATE`
//! transaction) — find the oldest pending update whose conversation has no unexpired reply
//! lease (necessarily its conversation's oldest pending one), take the lease, count the
//! attempt — so claims of any number of tasks serialise on that thread and on the database's
//! write lock, and never hand out one conversation twice.
//!
//! One bot process claims from a file ([`SqliteStore::take_ownership`] refuses a second one).
//! A lease left in the file by a bot that crashed would hold its conversation until it
//! expires; taking ownership voids the previous owner's leases, so a crash is recovered
//! without waiting.
//!
//! [`SqliteStore::take_ownership`]: super::SqliteStore::take_ownership
//!
//! Retention: SQLite has no TTL; a job calls [`UpdateInbox::delete_done_before`].

use std::sync::Arc;

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};
use time::{Duration, OffsetDateTime};

use butler_domain::ports::{
    Claimed, ConversationLeases, InboxError, InboxUpdate, Lease, LeaseError, LeaseScope, Stored,
    UpdateInbox,
};

use super::leases::{self, SqliteLeases};
use super::{millis, time_from, Access, Fault, Pool};

const TABLE: &str = "inbox_updates";

/// The update inbox in the `inbox_updates` table, with its claims' leases among the
/// conversations' leases.
#[derive(Debug, Clone)]
pub struct SqliteInbox {
    pool: Arc<Pool>,
    leases: SqliteLeases,
}

impl SqliteInbox {
    pub(super) fn new(pool: Arc<Pool>) -> Self {
        Self {
            leases: SqliteLeases::new(Arc::clone(&pool)),
            pool,
        }
    }

    async fn run<T, F>(
        &self,
        operation: &'static str,
        access: Access,
        f: F,
    ) -> Result<T, InboxError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, Fault> + Send + 'static,
    {
        self.pool.run_for(TABLE, operation, access, f).await
    }
}

/// The claimable update with its attempts so far, if any: the oldest pending update of a
/// conversation without a reply lease — which is that conversation's oldest pending update, as
/// any older one would itself be pending on the same unleased conversation, and older.
fn next_claimable(conn: &Connection, now: i64) -> Result<Option<(InboxUpdate, i64)>, Fault> {
    let row = conn
        .prepare_cached(
            "SELECT u.update_id, u.key, u.payload, u.received_at, u.attempts \
             FROM inbox_updates u \
             WHERE u.done_at IS NULL \
               AND NOT EXISTS (SELECT 1 FROM conversation_leases l \
                               WHERE l.conversation = u.key AND l.scope = 'reply' \
                                 AND l.until > ?1) \
             ORDER BY u.update_id LIMIT 1",
        )?
        .query_row([now], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, i64>(4)?,
            ))
        })
        .optional()?;
    row.map(
        |(update_id, conversation, payload, received_at, attempts)| {
            Ok((
                InboxUpdate {
                    update_id,
                    conversation,
                    payload,
                    received_at: time_from("inbox_updates.received_at", received_at)?,
                },
                attempts,
            ))
        },
    )
    .transpose()
}

#[async_trait]
impl ConversationLeases for SqliteInbox {
    async fn acquire(
        &self,
        conversation: i64,
        scope: LeaseScope,
        now: OffsetDateTime,
        lease_for: Duration,
    ) -> Result<Option<Lease>, LeaseError> {
        self.leases
            .acquire(conversation, scope, now, lease_for)
            .await
    }

    async fn take_over(
        &self,
        conversation: i64,
        scope: LeaseScope,
        now: OffsetDateTime,
        lease_for: Duration,
    ) -> Result<Lease, LeaseError> {
        self.leases
            .take_over(conversation, scope, now, lease_for)
            .await
    }

    async fn renew(
        &self,
        lease: &Lease,
        now: OffsetDateTime,
        lease_for: Duration,
    ) -> Result<Option<Lease>, LeaseError> {
        self.leases.renew(lease, now, lease_for).await
    }

    async fn release(&self, lease: &Lease) -> Result<(), LeaseError> {
        self.leases.release(lease).await
    }
}

#[async_trait]
impl UpdateInbox for SqliteInbox {
    async fn store(&self, update: &InboxUpdate) -> Result<Stored, InboxError> {
        let update = update.clone();
        self.run("store", Access::Write, move |conn| {
            let inserted = conn
                .prepare_cached(
                    "INSERT INTO inbox_updates (update_id, key, payload, received_at) \
                     VALUES (?1, ?2, ?3, ?4) ON CONFLICT (update_id) DO NOTHING",
                )?
                .execute(params![
                    update.update_id,
                    update.conversation,
                    update.payload,
                    millis(update.received_at),
                ])?;
            Ok(if inserted == 1 {
                Stored::New
            } else {
                Stored::Duplicate
            })
        })
        .await
    }

    async fn claim(
        &self,
        now: OffsetDateTime,
        lease_for: Duration,
    ) -> Result<Option<Claimed>, InboxError> {
        let lease_for_claim = lease_for;
        let holder = self.pool.instance;
        self.run("claim", Access::Write, move |conn| {
            let tx = conn.savepoint()?;
            let Some((update, attempts)) = next_claimable(&tx, millis(now))? else {
                return Ok(None);
            };
            let attempts = u32::try_from(attempts.saturating_add(1))
                .map_err(|_| Fault::Corrupt("inbox_updates.attempts is out of range".into()))?;
            let lease = Lease::new(
                update.conversation,
                LeaseScope::Replies,
                now,
                lease_for_claim,
            );
            leases::put(&tx, &lease, holder)?;
            tx.prepare_cached("UPDATE inbox_updates SET attempts = ?1 WHERE update_id = ?2")?
                .execute(params![attempts, update.update_id])?;
            tx.commit()?;
            Ok(Some(Claimed {
                update,
                lease,
                attempts,
            }))
        })
        .await
    }

    async fn complete(
        &self,
        update_id: i64,
        lease: &Lease,
        now: OffsetDateTime,
    ) -> Result<(), InboxError> {
        let lease = *lease;
        let now = millis(now);
        self.run("complete", Access::Write, move |conn| {
            let tx = conn.savepoint()?;
            tx.prepare_cached(
                "UPDATE inbox_updates SET done_at = ?1, payload = '' \
                 WHERE update_id = ?2 AND done_at IS NULL",
            )?
            .execute(params![now, update_id])?;
            leases::release(&tx, &lease)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn backlog(&self) -> Result<u64, InboxError> {
        self.run("backlog", Access::Read, |conn| {
            let n: i64 = conn
                .prepare_cached("SELECT COUNT(*) FROM inbox_updates WHERE done_at IS NULL")?
                .query_row([], |r| r.get(0))?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
        .await
    }

    async fn delete_done_before(&self, before: OffsetDateTime) -> Result<u64, InboxError> {
        let before = millis(before);
        self.run("delete_done_before", Access::Write, move |conn| {
            let removed = conn
                .prepare_cached(
                    "DELETE FROM inbox_updates WHERE done_at IS NOT NULL AND done_at < ?1",
                )?
                .execute([before])?;
            Ok(u64::try_from(removed).unwrap_or(u64::MAX))
        })
        .await
    }
}
