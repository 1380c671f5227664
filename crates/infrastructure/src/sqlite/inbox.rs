//! [`UpdateInbox`] on SQLite: one row per received update in `inbox_updates`; the reply
//! leases of conversations are rows of `conversation_leases` ([`super::leases`]), shared with
//! every other writer of a conversation's memory.
//!
//! A claim is one `IMMEDIATE` transaction — find the oldest pending updates whose
//! conversations have no unexpired reply lease (each necessarily its conversation's oldest
//! pending one), take the leases, count the attempts — so claims of any number of tasks
//! serialise on the write lock and never hand out one conversation twice. Batches are one
//! transaction each too: a polled batch of updates stored ([`UpdateInbox::store_all`]), as
//! many claims as the bot has free workers ([`UpdateInbox::claim_many`]), the replies that
//! finished together marked done ([`UpdateInbox::complete_all`]); one update alone is a batch
//! of one.
//!
//! One bot process claims from a file ([`SqliteStore::take_ownership`] refuses a second one).
//! A lease left in the file by a bot that crashed would hold its conversation until it
//! expires; taking ownership voids the previous owner's leases, so a crash is recovered
//! without waiting.
//!
//! [`SqliteStore::take_ownership`]: super::SqliteStore::take_ownership
//!
//! Retention: SQLite has no TTL; a job calls [`UpdateInbox::delete_done_before`].

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use rusqlite::{params, Connection, TransactionBehavior};
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

/// Up to `max` claimable updates with their attempts so far, oldest first, each of a different
/// conversation: the oldest pending update of each conversation without a reply lease — which
/// is that conversation's oldest pending update, as any older one would itself be pending on
/// the same unleased conversation, and older. Later pending updates of a conversation already
/// picked are skipped.
fn claimable(conn: &Connection, now: i64, max: usize) -> Result<Vec<(InboxUpdate, i64)>, Fault> {
    let mut found: Vec<(InboxUpdate, i64)> = Vec::new();
    if max == 0 {
        return Ok(found);
    }
    let mut statement = conn.prepare_cached(
        "SELECT u.update_id, u.key, u.payload, u.received_at, u.attempts \
         FROM inbox_updates u \
         WHERE u.done_at IS NULL \
           AND NOT EXISTS (SELECT 1 FROM conversation_leases l \
                           WHERE l.conversation = u.key AND l.scope = 'reply' \
                             AND l.until > ?1) \
         ORDER BY u.update_id",
    )?;
    let mut rows = statement.query([now])?;
    let mut picked = HashSet::new();
    while let Some(row) = rows.next()? {
        let conversation: i64 = row.get(1)?;
        if !picked.insert(conversation) {
            continue;
        }
        found.push((
            InboxUpdate {
                update_id: row.get(0)?,
                conversation,
                payload: row.get(2)?,
                received_at: time_from("inbox_updates.received_at", row.get(3)?)?,
            },
            row.get(4)?,
        ));
        if found.len() == max {
            break;
        }
    }
    Ok(found)
}

/// Takes the reply lease of each of `found` and counts the claim's attempt, in the caller's
/// transaction.
fn take(
    conn: &Connection,
    found: Vec<(InboxUpdate, i64)>,
    now: OffsetDateTime,
    lease_for: Duration,
    holder: uuid::Uuid,
) -> Result<Vec<Claimed>, Fault> {
    let mut count =
        conn.prepare_cached("UPDATE inbox_updates SET attempts = ?1 WHERE update_id = ?2")?;
    found
        .into_iter()
        .map(|(update, attempts)| {
            let attempts = u32::try_from(attempts.saturating_add(1))
                .map_err(|_| Fault::Corrupt("inbox_updates.attempts is out of range".into()))?;
            let lease = Lease::new(update.conversation, LeaseScope::Replies, now, lease_for);
            leases::put(conn, &lease, holder)?;
            count.execute(params![attempts, update.update_id])?;
            Ok(Claimed {
                update,
                lease,
                attempts,
            })
        })
        .collect()
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
        let mut stored = self.store_all(std::slice::from_ref(update)).await?;
        stored.pop().ok_or_else(|| InboxError::Corrupt {
            detail: "storing one update gave no outcome".to_owned(),
        })
    }

    async fn store_all(&self, updates: &[InboxUpdate]) -> Result<Vec<Stored>, InboxError> {
        if updates.is_empty() {
            return Ok(Vec::new());
        }
        let updates = updates.to_vec();
        self.run("store", Access::Write, move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let stored = {
                let mut insert = tx.prepare_cached(
                    "INSERT INTO inbox_updates (update_id, key, payload, received_at) \
                     VALUES (?1, ?2, ?3, ?4) ON CONFLICT (update_id) DO NOTHING",
                )?;
                updates
                    .iter()
                    .map(|update| {
                        let inserted = insert.execute(params![
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
                    .collect::<Result<Vec<_>, Fault>>()?
            };
            tx.commit()?;
            Ok(stored)
        })
        .await
    }

    async fn claim(
        &self,
        now: OffsetDateTime,
        lease_for: Duration,
    ) -> Result<Option<Claimed>, InboxError> {
        Ok(self.claim_many(now, lease_for, 1).await?.pop())
    }

    async fn claim_many(
        &self,
        now: OffsetDateTime,
        lease_for: Duration,
        max: usize,
    ) -> Result<Vec<Claimed>, InboxError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let holder = self.pool.instance;
        self.run("claim", Access::Write, move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let found = claimable(&tx, millis(now), max)?;
            if found.is_empty() {
                return Ok(Vec::new());
            }
            let claimed = take(&tx, found, now, lease_for, holder)?;
            tx.commit()?;
            Ok(claimed)
        })
        .await
    }

    async fn complete(
        &self,
        update_id: i64,
        lease: &Lease,
        now: OffsetDateTime,
    ) -> Result<(), InboxError> {
        self.complete_all(&[(update_id, *lease)], now).await
    }

    async fn complete_all(
        &self,
        done: &[(i64, Lease)],
        now: OffsetDateTime,
    ) -> Result<(), InboxError> {
        if done.is_empty() {
            return Ok(());
        }
        let done = done.to_vec();
        let now = millis(now);
        self.run("complete", Access::Write, move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            {
                let mut mark = tx.prepare_cached(
                    "UPDATE inbox_updates SET done_at = ?1, payload = '' \
                     WHERE update_id = ?2 AND done_at IS NULL",
                )?;
                for (update_id, lease) in &done {
                    mark.execute(params![now, update_id])?;
                    leases::release(&tx, lease)?;
                }
            }
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
