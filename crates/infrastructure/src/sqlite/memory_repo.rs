//! [`UserMemoryRepository`] on SQLite: one row per event in `user_memory`, ordered by the
//! `(user_id, created_at, event_id)` index; `event_id` is unique, which makes appends
//! idempotent (`ON CONFLICT DO NOTHING`).

use std::sync::Arc;

use async_trait::async_trait;
use rusqlite::{params, Connection, Row};

use butler_domain::ports::{MemoryStoreError, UserEventCount, UserMemoryRepository};
use butler_domain::{EventCursor, UserId, UserMemoryEvent};

use super::{
    from_json, millis, sql_limit, time_from, to_json, uuid_bytes, uuid_from, Access, Fault, Pool,
};

const TABLE: &str = "user_memory";

const COLUMNS: &str = "event_id, user_id, role, content, source, created_at, tags";

/// Memory events in the `user_memory` table.
#[derive(Debug, Clone)]
pub struct SqliteMemoryRepository {
    pool: Arc<Pool>,
}

impl SqliteMemoryRepository {
    pub(super) fn new(pool: Arc<Pool>) -> Self {
        Self { pool }
    }

    async fn run<T, F>(
        &self,
        operation: &'static str,
        access: Access,
        f: F,
    ) -> Result<T, MemoryStoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, Fault> + Send + 'static,
    {
        self.pool.run_for(TABLE, operation, access, f).await
    }
}

fn decode(row: &Row<'_>) -> Result<UserMemoryEvent, Fault> {
    let role: String = row.get("role")?;
    let source: String = row.get("source")?;
    Ok(UserMemoryEvent {
        event_id: uuid_from("user_memory.event_id", &row.get::<_, Vec<u8>>("event_id")?)?,
        user_id: UserId::new(row.get("user_id")?),
        role: role
            .parse()
            .map_err(|_| Fault::Corrupt("user_memory.role is not a known code".into()))?,
        content: row.get("content")?,
        source: source
            .parse()
            .map_err(|_| Fault::Corrupt("user_memory.source is not a known code".into()))?,
        created_at: time_from("user_memory.created_at", row.get("created_at")?)?,
        tags: from_json("user_memory.tags", &row.get::<_, String>("tags")?)?,
    })
}

/// Runs a `SELECT {COLUMNS}` query and decodes every row.
fn query_events(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<UserMemoryEvent>, Fault> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(params)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(decode(row)?);
    }
    Ok(out)
}

fn count_to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

#[async_trait]
impl UserMemoryRepository for SqliteMemoryRepository {
    async fn append(&self, events: &[UserMemoryEvent]) -> Result<(), MemoryStoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let rows: Vec<_> = events
            .iter()
            .map(|e| {
                (
                    uuid_bytes(e.event_id),
                    e.user_id.get(),
                    e.role.code(),
                    e.content.clone(),
                    e.source.code(),
                    millis(e.created_at),
                    to_json(&e.tags),
                )
            })
            .collect();
        self.run("append", Access::Write, move |conn| {
            let tx = conn.savepoint()?;
            {
                let mut insert = tx.prepare_cached(&format!(
                    "INSERT INTO user_memory ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
                     ON CONFLICT (event_id) DO NOTHING"
                ))?;
                for (id, user, role, content, source, at, tags) in &rows {
                    insert.execute(params![id, user, role, content, source, at, tags])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn recent(
        &self,
        user_id: UserId,
        limit: usize,
        after: Option<EventCursor>,
    ) -> Result<Vec<UserMemoryEvent>, MemoryStoreError> {
        self.run("recent", Access::Read, move |conn| {
            // Two statements rather than `?2 IS NULL OR …`, so the planner turns the cursor
            // into a range on the (user_id, created_at, event_id) index.
            let mut newest = match after {
                None => query_events(
                    conn,
                    &format!(
                        "SELECT {COLUMNS} FROM user_memory WHERE user_id = ?1 \
                         ORDER BY created_at DESC, event_id DESC LIMIT ?2"
                    ),
                    params![user_id.get(), sql_limit(limit)],
                )?,
                Some(cursor) => query_events(
                    conn,
                    &format!(
                        "SELECT {COLUMNS} FROM user_memory WHERE user_id = ?1 \
                         AND (created_at, event_id) > (?2, ?3) \
                         ORDER BY created_at DESC, event_id DESC LIMIT ?4"
                    ),
                    params![
                        user_id.get(),
                        millis(cursor.created_at),
                        uuid_bytes(cursor.event_id),
                        sql_limit(limit)
                    ],
                )?,
            };
            newest.reverse();
            Ok(newest)
        })
        .await
    }

    async fn count(&self, user_id: UserId) -> Result<u64, MemoryStoreError> {
        self.run("count", Access::Read, move |conn| {
            let n: i64 = conn
                .prepare_cached("SELECT COUNT(*) FROM user_memory WHERE user_id = ?1")?
                .query_row([user_id.get()], |row| row.get(0))?;
            Ok(count_to_u64(n))
        })
        .await
    }

    async fn events_up_to(
        &self,
        user_id: UserId,
        up_to: EventCursor,
        limit: usize,
    ) -> Result<Vec<UserMemoryEvent>, MemoryStoreError> {
        self.run("events_up_to", Access::Read, move |conn| {
            query_events(
                conn,
                &format!(
                    "SELECT {COLUMNS} FROM user_memory WHERE user_id = ?1 \
                     AND (created_at, event_id) <= (?2, ?3) \
                     ORDER BY created_at, event_id LIMIT ?4"
                ),
                params![
                    user_id.get(),
                    millis(up_to.created_at),
                    uuid_bytes(up_to.event_id),
                    sql_limit(limit)
                ],
            )
        })
        .await
    }

    async fn delete_up_to(
        &self,
        user_id: UserId,
        up_to: EventCursor,
    ) -> Result<u64, MemoryStoreError> {
        self.run("delete_up_to", Access::Write, move |conn| {
            // One statement: rows appended concurrently with a newer cursor never match.
            let n = conn
                .prepare_cached(
                    "DELETE FROM user_memory WHERE user_id = ?1 \
                     AND (created_at, event_id) <= (?2, ?3)",
                )?
                .execute(params![
                    user_id.get(),
                    millis(up_to.created_at),
                    uuid_bytes(up_to.event_id)
                ])?;
            Ok(n as u64)
        })
        .await
    }

    async fn delete_all(&self, user_id: UserId) -> Result<u64, MemoryStoreError> {
        self.run("delete_all", Access::Write, move |conn| {
            let n = conn
                .prepare_cached("DELETE FROM user_memory WHERE user_id = ?1")?
                .execute([user_id.get()])?;
            Ok(n as u64)
        })
        .await
    }

    async fn users_over(
        &self,
        threshold: u64,
        limit: usize,
    ) -> Result<Vec<UserEventCount>, MemoryStoreError> {
        let threshold = i64::try_from(threshold).unwrap_or(i64::MAX);
        self.run("users_over", Access::Read, move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT user_id, COUNT(*) AS events FROM user_memory GROUP BY user_id \
                 HAVING COUNT(*) > ?1 ORDER BY events DESC, user_id ASC LIMIT ?2",
            )?;
            let mut rows = stmt.query(params![threshold, sql_limit(limit)])?;
            let mut out = Vec::new();
            while let Some(row) = rows.next()? {
                out.push(UserEventCount {
                    user_id: UserId::new(row.get(0)?),
                    events: count_to_u64(row.get(1)?),
                });
            }
            Ok(out)
        })
        .await
    }
}
