//! [`UpdateInbox`] on SQLite: one row per received update in `inbox_updates`, one row per
//! held key in `inbox_leases`.
//!
//! A claim is one `IMMEDIATE` transaction — find the oldest pending update whose key has no
//! unexpired lease (necessarily its key's oldest pending one), take the lease, count the
//! attempt — so claims of any number of tasks serialise on the write lock and never hand out
//! one key twice.
//!
//! SQLite serves one process: the bot. A lease left in the file by a process that crashed
//! would hold its key until it expires; [`SqliteInbox::void_leases`], called once when the
//! bot starts, gives every key back at once, so a crash is recovered without waiting.
//!
//! Retention: SQLite has no TTL; a job calls [`UpdateInbox::delete_done_before`].

use std::sync::Arc;

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use butler_domain::ports::{Claimed, InboxError, InboxUpdate, Lease, Stored, UpdateInbox};

use super::{millis, time_from, uuid_bytes, Access, Fault, Pool};

const TABLE: &str = "inbox_updates";

/// The update inbox in the `inbox_updates` and `inbox_leases` tables.
#[derive(Debug, Clone)]
pub struct SqliteInbox {
    pool: Arc<Pool>,
}

impl SqliteInbox {
    pub(super) fn new(pool: Arc<Pool>) -> Self {
        Self { pool }
    }

    /// Gives back every key, whoever held it; returns how many leases there were.
    ///
    /// SQLite serves one process, so when the bot starts, any lease in the file belongs to a
    /// run before it that ended (cleanly or in a crash). Call this once at start-up, before
    /// the first claim: the updates that run was answering are claimed again at once (with
    /// `attempts` one higher) instead of after their leases expire. Never call it while
    /// another process claims from the same file.
    ///
    /// # Errors
    /// [`InboxError::Unavailable`] if the database cannot be written.
    pub async fn void_leases(&self) -> Result<u64, InboxError> {
        self.run("void_leases", Access::Write, |conn| {
            let removed = conn.execute("DELETE FROM inbox_leases", [])?;
            Ok(u64::try_from(removed).unwrap_or(u64::MAX))
        })
        .await
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

/// Gives the key back if `lease` still holds it.
fn release_lease(conn: &Connection, lease: &Lease) -> Result<(), Fault> {
    conn.prepare_cached("DELETE FROM inbox_leases WHERE key = ?1 AND token = ?2")?
        .execute(params![lease.key, uuid_bytes(lease.token)])?;
    Ok(())
}

/// The claimable update with its attempts so far, if any: the oldest pending update of an
/// unleased key — which is that key's oldest pending update, as any older one of the key would
/// itself be pending on an unleased key, and older.
fn next_claimable(conn: &Connection, now: i64) -> Result<Option<(InboxUpdate, i64)>, Fault> {
    let row = conn
        .prepare_cached(
            "SELECT u.update_id, u.key, u.payload, u.received_at, u.attempts \
             FROM inbox_updates u \
             WHERE u.done_at IS NULL \
               AND NOT EXISTS (SELECT 1 FROM inbox_leases l \
                               WHERE l.key = u.key AND l.until > ?1) \
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
    row.map(|(update_id, key, payload, received_at, attempts)| {
        Ok((
            InboxUpdate {
                update_id,
                key,
                payload,
                received_at: time_from("inbox_updates.received_at", received_at)?,
            },
            attempts,
        ))
    })
    .transpose()
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
                    update.key,
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
        let until = Lease::expiry(now, lease_for);
        let now = millis(now);
        self.run("claim", Access::Write, move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let Some((update, attempts)) = next_claimable(&tx, now)? else {
                return Ok(None);
            };
            let attempts = u32::try_from(attempts.saturating_add(1))
                .map_err(|_| Fault::Corrupt("inbox_updates.attempts is out of range".into()))?;
            let lease = Lease {
                key: update.key,
                token: Uuid::new_v4(),
                until,
            };
            tx.prepare_cached(
                "INSERT INTO inbox_leases (key, token, until) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (key) DO UPDATE SET token = excluded.token, until = excluded.until",
            )?
            .execute(params![lease.key, uuid_bytes(lease.token), millis(until)])?;
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

    async fn renew(
        &self,
        lease: &Lease,
        now: OffsetDateTime,
        lease_for: Duration,
    ) -> Result<Option<Lease>, InboxError> {
        let renewed = Lease {
            until: Lease::expiry(now, lease_for),
            ..*lease
        };
        self.run("renew", Access::Write, move |conn| {
            let changed = conn
                .prepare_cached("UPDATE inbox_leases SET until = ?1 WHERE key = ?2 AND token = ?3")?
                .execute(params![
                    millis(renewed.until),
                    renewed.key,
                    uuid_bytes(renewed.token)
                ])?;
            Ok((changed == 1).then_some(renewed))
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
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.prepare_cached(
                "UPDATE inbox_updates SET done_at = ?1, payload = '' \
                 WHERE update_id = ?2 AND done_at IS NULL",
            )?
            .execute(params![now, update_id])?;
            release_lease(&tx, &lease)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn release(&self, lease: &Lease) -> Result<(), InboxError> {
        let lease = *lease;
        self.run("release", Access::Write, move |conn| {
            release_lease(conn, &lease)
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
