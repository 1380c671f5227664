//! [`ConversationLeases`] on SQLite: one row per held `(conversation, scope)` in
//! `conversation_leases`, shared with the update inbox (whose claims take the `reply` scope in
//! the same transaction that picks the update).
//!
//! Every row records the holder: the id of the [`SqliteStore`](super::SqliteStore) instance
//! that took it (one per process). The bot that owns the file ([`SqliteStore::take_ownership`])
//! voids at start-up only the leases of the owner before it — its crashed or stopped
//! predecessor — so the updates that run was answering are claimed again at once, while a
//! `memory-worker` or `profile_admin` working on the same file keeps its leases.
//!
//! [`SqliteStore::take_ownership`]: super::SqliteStore::take_ownership

use std::sync::Arc;

use async_trait::async_trait;
use rusqlite::{params, Connection};
use time::{Duration, OffsetDateTime};

use butler_domain::ports::{ConversationLeases, Lease, LeaseError, LeaseScope};

use super::{millis, uuid_bytes, Access, Fault, Pool};

const TABLE: &str = "conversation_leases";

/// Leases on conversations in the `conversation_leases` table.
#[derive(Debug, Clone)]
pub struct SqliteLeases {
    pool: Arc<Pool>,
}

impl SqliteLeases {
    pub(super) fn new(pool: Arc<Pool>) -> Self {
        Self { pool }
    }

    async fn run<T, F>(&self, operation: &'static str, f: F) -> Result<T, LeaseError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, Fault> + Send + 'static,
    {
        self.pool.run_for(TABLE, operation, Access::Write, f).await
    }
}

/// Writes `lease` as `holder`'s, replacing whatever row its conversation and scope had.
pub(super) fn put(conn: &Connection, lease: &Lease, holder: uuid::Uuid) -> Result<(), Fault> {
    conn.prepare_cached(
        "INSERT INTO conversation_leases (conversation, scope, token, until, holder) \
         VALUES (?1, ?2, ?3, ?4, ?5) \
         ON CONFLICT (conversation, scope) DO UPDATE SET \
           token = excluded.token, until = excluded.until, holder = excluded.holder",
    )?
    .execute(params![
        lease.conversation,
        lease.scope.code(),
        uuid_bytes(lease.token),
        millis(lease.until),
        uuid_bytes(holder),
    ])?;
    Ok(())
}

/// Gives the lease back if `lease` still holds it.
pub(super) fn release(conn: &Connection, lease: &Lease) -> Result<(), Fault> {
    conn.prepare_cached(
        "DELETE FROM conversation_leases WHERE conversation = ?1 AND scope = ?2 AND token = ?3",
    )?
    .execute(params![
        lease.conversation,
        lease.scope.code(),
        uuid_bytes(lease.token)
    ])?;
    Ok(())
}

/// Extends `lease` to `renewed.until` if it still holds; whether it did.
pub(super) fn renew(conn: &Connection, renewed: &Lease) -> Result<bool, Fault> {
    let changed = conn
        .prepare_cached(
            "UPDATE conversation_leases SET until = ?1 \
             WHERE conversation = ?2 AND scope = ?3 AND token = ?4",
        )?
        .execute(params![
            millis(renewed.until),
            renewed.conversation,
            renewed.scope.code(),
            uuid_bytes(renewed.token)
        ])?;
    Ok(changed == 1)
}

/// Deletes the leases `holder` took; returns how many.
pub(super) fn void_holder(conn: &Connection, holder: uuid::Uuid) -> rusqlite::Result<u64> {
    let removed = conn
        .prepare_cached("DELETE FROM conversation_leases WHERE holder = ?1")?
        .execute([uuid_bytes(holder)])?;
    Ok(u64::try_from(removed).unwrap_or(u64::MAX))
}

#[async_trait]
impl ConversationLeases for SqliteLeases {
    async fn acquire(
        &self,
        conversation: i64,
        scope: LeaseScope,
        now: OffsetDateTime,
        lease_for: Duration,
    ) -> Result<Option<Lease>, LeaseError> {
        let lease = Lease::new(conversation, scope, now, lease_for);
        let holder = self.pool.instance;
        let now = millis(now);
        self.run("acquire", move |conn| {
            // One statement: inserts, or takes over an expired row; a held row stays as it is.
            let changed = conn
                .prepare_cached(
                    "INSERT INTO conversation_leases (conversation, scope, token, until, holder) \
                     VALUES (?1, ?2, ?3, ?4, ?5) \
                     ON CONFLICT (conversation, scope) DO UPDATE SET \
                       token = excluded.token, until = excluded.until, holder = excluded.holder \
                     WHERE conversation_leases.until <= ?6",
                )?
                .execute(params![
                    lease.conversation,
                    lease.scope.code(),
                    uuid_bytes(lease.token),
                    millis(lease.until),
                    uuid_bytes(holder),
                    now,
                ])?;
            Ok((changed == 1).then_some(lease))
        })
        .await
    }

    async fn take_over(
        &self,
        conversation: i64,
        scope: LeaseScope,
        now: OffsetDateTime,
        lease_for: Duration,
    ) -> Result<Lease, LeaseError> {
        let lease = Lease::new(conversation, scope, now, lease_for);
        let holder = self.pool.instance;
        self.run("take_over", move |conn| {
            put(conn, &lease, holder)?;
            Ok(lease)
        })
        .await
    }

    async fn renew(
        &self,
        lease: &Lease,
        now: OffsetDateTime,
        lease_for: Duration,
    ) -> Result<Option<Lease>, LeaseError> {
        let renewed = lease.renewed(now, lease_for);
        self.run("renew", move |conn| {
            Ok(renew(conn, &renewed)?.then_some(renewed))
        })
        .await
    }

    async fn release(&self, lease: &Lease) -> Result<(), LeaseError> {
        let lease = *lease;
        self.run("release", move |conn| release(conn, &lease)).await
    }
}
