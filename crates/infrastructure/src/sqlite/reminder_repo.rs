//! [`ReminderRepository`] on SQLite: one row per reminder in `reminders`, with its claim's
//! lease (token, until) on the row itself.
//!
//! A claim is one `IMMEDIATE` transaction — select the earliest due pending rows without an
//! unexpired lease, stamp a fresh token on each — so claims of any number of tasks serialise on
//! the write lock and never hand out a reminder twice while its lease holds. Cancel, reschedule
//! and mark-delivered are single guarded `UPDATE`s.
//!
//! Retention: SQLite has no TTL; the scheduler calls
//! [`ReminderRepository::delete_finished_before`].

use std::sync::Arc;

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, Row};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use butler_domain::ports::{
    ChangeOutcome, ClaimedReminder, ReminderRepository, ReminderStoreError,
};
use butler_domain::reminder::{Reminder, ReminderId, ReminderStatus};
use butler_domain::UserId;

use super::{millis, time_from, uuid_bytes, uuid_from, Access, Fault, Pool};

const TABLE: &str = "reminders";

/// Marks a claimed reminder delivered, if the token (`?2`) still holds it (`?1`), at `?3`.
const MARK_DELIVERED: &str = "UPDATE reminders SET status = 'delivered', finished_at = ?3, \
       lease_token = NULL, lease_until = NULL \
     WHERE reminder_id = ?1 AND lease_token = ?2 AND status = 'pending'";
const COLUMNS: &str = "reminder_id, user_id, chat_id, text, due_at, time_zone, created_at, \
                       status, finished_at, attempts";

/// Reminders in the `reminders` table.
#[derive(Debug, Clone)]
pub struct SqliteReminderRepository {
    pool: Arc<Pool>,
}

impl SqliteReminderRepository {
    pub(super) fn new(pool: Arc<Pool>) -> Self {
        Self { pool }
    }

    async fn run<T, F>(
        &self,
        operation: &'static str,
        access: Access,
        f: F,
    ) -> Result<T, ReminderStoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, Fault> + Send + 'static,
    {
        self.pool.run_for(TABLE, operation, access, f).await
    }
}

fn reminder_from(row: &Row<'_>) -> Result<Reminder, Fault> {
    let id: Vec<u8> = row.get(0)?;
    let status: String = row.get(7)?;
    let finished_at: Option<i64> = row.get(8)?;
    let finished = |column| {
        finished_at
            .ok_or_else(|| Fault::Corrupt(format!("reminders.finished_at missing for {column}")))
            .and_then(|ms| time_from("reminders.finished_at", ms))
    };
    let status = match status.as_str() {
        "pending" => ReminderStatus::Pending,
        "delivered" => ReminderStatus::Delivered(finished("delivered")?),
        "cancelled" => ReminderStatus::Cancelled(finished("cancelled")?),
        _ => return Err(Fault::Corrupt("reminders.status is unknown".into())),
    };
    let attempts: i64 = row.get(9)?;
    Ok(Reminder {
        id: ReminderId::from_uuid(uuid_from("reminders.reminder_id", &id)?),
        user_id: UserId::new(row.get(1)?),
        chat_id: row.get(2)?,
        text: row.get(3)?,
        due_at: time_from("reminders.due_at", row.get(4)?)?,
        time_zone: row.get(5)?,
        created_at: time_from("reminders.created_at", row.get(6)?)?,
        status,
        attempts: u32::try_from(attempts)
            .map_err(|_| Fault::Corrupt("reminders.attempts is out of range".into()))?,
    })
}

/// Whether the user's reminder `id` is pending, and if so whether a lease holds it at `now`.
fn change_state(
    conn: &Connection,
    user: i64,
    id: [u8; 16],
    now: i64,
) -> Result<Option<bool>, Fault> {
    Ok(conn
        .prepare_cached(
            "SELECT COALESCE(lease_until > ?3, 0) FROM reminders \
             WHERE reminder_id = ?1 AND user_id = ?2 AND status = 'pending'",
        )?
        .query_row(params![id, user, now], |r| r.get::<_, bool>(0))
        .optional()?)
}

fn guarded_change(
    conn: &mut Connection,
    user: i64,
    id: [u8; 16],
    now: i64,
    sql: &str,
    value: i64,
) -> Result<ChangeOutcome, Fault> {
    let tx = conn.savepoint()?;
    let outcome = match change_state(&tx, user, id, now)? {
        None => ChangeOutcome::NotFound,
        Some(true) => ChangeOutcome::Delivering,
        Some(false) => {
            tx.prepare_cached(sql)?.execute(params![id, value])?;
            ChangeOutcome::Changed
        }
    };
    tx.commit()?;
    Ok(outcome)
}

/// The user's reminders that also match `and` (an SQL condition, or nothing), earliest due
/// first.
fn users(conn: &Connection, user: UserId, and: &str) -> Result<Vec<Reminder>, Fault> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM reminders WHERE user_id = ?1 {and} ORDER BY due_at, reminder_id"
    ))?;
    let rows = stmt.query_map([user.get()], |r| Ok(reminder_from(r)))?;
    let mut out = Vec::new();
    for row in rows {
        out.push(row??);
    }
    Ok(out)
}

#[async_trait]
impl ReminderRepository for SqliteReminderRepository {
    async fn add(&self, reminder: &Reminder) -> Result<(), ReminderStoreError> {
        let r = reminder.clone();
        self.run("add", Access::Write, move |conn| {
            let (status, finished_at) = match r.status {
                ReminderStatus::Pending => ("pending", None),
                ReminderStatus::Delivered(at) => ("delivered", Some(millis(at))),
                ReminderStatus::Cancelled(at) => ("cancelled", Some(millis(at))),
            };
            conn.prepare_cached(
                "INSERT INTO reminders (reminder_id, user_id, chat_id, text, due_at, time_zone, \
                   created_at, status, finished_at, attempts) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) \
                 ON CONFLICT (reminder_id) DO NOTHING",
            )?
            .execute(params![
                uuid_bytes(r.id.as_uuid()),
                r.user_id.get(),
                r.chat_id,
                r.text,
                millis(r.due_at),
                r.time_zone,
                millis(r.created_at),
                status,
                finished_at,
                r.attempts,
            ])?;
            Ok(())
        })
        .await
    }

    async fn get(&self, id: ReminderId) -> Result<Option<Reminder>, ReminderStoreError> {
        self.run("get", Access::Read, move |conn| {
            conn.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM reminders WHERE reminder_id = ?1"
            ))?
            .query_row([uuid_bytes(id.as_uuid())], |r| Ok(reminder_from(r)))
            .optional()?
            .transpose()
        })
        .await
    }

    async fn list_pending(&self, user: UserId) -> Result<Vec<Reminder>, ReminderStoreError> {
        self.run("list_pending", Access::Read, move |conn| {
            users(conn, user, "AND status = 'pending'")
        })
        .await
    }

    async fn list_all(&self, user: UserId) -> Result<Vec<Reminder>, ReminderStoreError> {
        self.run("list_all", Access::Read, move |conn| users(conn, user, ""))
            .await
    }

    async fn count_pending(&self, user: UserId) -> Result<u64, ReminderStoreError> {
        self.run("count_pending", Access::Read, move |conn| {
            let n: i64 = conn
                .prepare_cached(
                    "SELECT COUNT(*) FROM reminders WHERE user_id = ?1 AND status = 'pending'",
                )?
                .query_row([user.get()], |r| r.get(0))?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
        .await
    }

    async fn cancel(
        &self,
        user: UserId,
        id: ReminderId,
        now: OffsetDateTime,
    ) -> Result<ChangeOutcome, ReminderStoreError> {
        let now = millis(now);
        self.run("cancel", Access::Write, move |conn| {
            guarded_change(
                conn,
                user.get(),
                uuid_bytes(id.as_uuid()),
                now,
                "UPDATE reminders SET status = 'cancelled', finished_at = ?2, \
                   lease_token = NULL, lease_until = NULL WHERE reminder_id = ?1",
                now,
            )
        })
        .await
    }

    async fn reschedule(
        &self,
        user: UserId,
        id: ReminderId,
        due_at: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<ChangeOutcome, ReminderStoreError> {
        let (due_at, now) = (millis(due_at), millis(now));
        self.run("reschedule", Access::Write, move |conn| {
            guarded_change(
                conn,
                user.get(),
                uuid_bytes(id.as_uuid()),
                now,
                "UPDATE reminders SET due_at = ?2, lease_token = NULL, lease_until = NULL \
                 WHERE reminder_id = ?1",
                due_at,
            )
        })
        .await
    }

    async fn claim_due(
        &self,
        now: OffsetDateTime,
        lease_for: Duration,
        limit: u32,
    ) -> Result<Vec<ClaimedReminder>, ReminderStoreError> {
        let until = now + lease_for;
        let (now_ms, until_ms) = (millis(now), millis(until));
        self.run("claim_due", Access::Write, move |conn| {
            let tx = conn.savepoint()?;
            let due = {
                let mut stmt = tx.prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM reminders \
                     WHERE status = 'pending' AND due_at <= ?1 \
                       AND (lease_until IS NULL OR lease_until <= ?1) \
                     ORDER BY due_at, reminder_id LIMIT ?2"
                ))?;
                let rows = stmt.query_map(params![now_ms, limit], |r| Ok(reminder_from(r)))?;
                let mut due = Vec::new();
                for row in rows {
                    due.push(row??);
                }
                due
            };
            let mut claimed = Vec::with_capacity(due.len());
            {
                let mut stamp = tx.prepare_cached(
                    "UPDATE reminders SET lease_token = ?2, lease_until = ?3, \
                       attempts = attempts + 1 WHERE reminder_id = ?1",
                )?;
                for mut reminder in due {
                    let token = Uuid::new_v4();
                    stamp.execute(params![
                        uuid_bytes(reminder.id.as_uuid()),
                        uuid_bytes(token),
                        until_ms
                    ])?;
                    reminder.attempts = reminder.attempts.saturating_add(1);
                    claimed.push(ClaimedReminder {
                        reminder,
                        token,
                        until,
                    });
                }
            }
            tx.commit()?;
            Ok(claimed)
        })
        .await
    }

    async fn mark_delivered(
        &self,
        id: ReminderId,
        token: Uuid,
        now: OffsetDateTime,
    ) -> Result<bool, ReminderStoreError> {
        let now = millis(now);
        self.run("mark_delivered", Access::Write, move |conn| {
            let changed = conn.prepare_cached(MARK_DELIVERED)?.execute(params![
                uuid_bytes(id.as_uuid()),
                uuid_bytes(token),
                now
            ])?;
            Ok(changed == 1)
        })
        .await
    }

    async fn mark_delivered_many(
        &self,
        claims: &[(ReminderId, Uuid)],
        now: OffsetDateTime,
    ) -> Result<usize, ReminderStoreError> {
        if claims.is_empty() {
            return Ok(0);
        }
        let claims: Vec<([u8; 16], [u8; 16])> = claims
            .iter()
            .map(|(id, token)| (uuid_bytes(id.as_uuid()), uuid_bytes(*token)))
            .collect();
        let now = millis(now);
        // One transaction: one commit (and one fsync with SQLITE_SYNCHRONOUS=full) for all.
        self.run("mark_delivered", Access::Write, move |conn| {
            let tx = conn.savepoint()?;
            let mut marked = 0;
            {
                let mut mark = tx.prepare_cached(MARK_DELIVERED)?;
                for (id, token) in &claims {
                    marked += mark.execute(params![id, token, now])?;
                }
            }
            tx.commit()?;
            Ok(marked)
        })
        .await
    }

    async fn release(&self, id: ReminderId, token: Uuid) -> Result<bool, ReminderStoreError> {
        self.run("release", Access::Write, move |conn| {
            let changed = conn
                .prepare_cached(
                    "UPDATE reminders SET lease_token = NULL, lease_until = NULL \
                     WHERE reminder_id = ?1 AND lease_token = ?2 AND status = 'pending'",
                )?
                .execute(params![uuid_bytes(id.as_uuid()), uuid_bytes(token)])?;
            Ok(changed == 1)
        })
        .await
    }

    async fn next_due(&self) -> Result<Option<OffsetDateTime>, ReminderStoreError> {
        self.run("next_due", Access::Read, |conn| {
            let ms: Option<i64> = conn
                .prepare_cached("SELECT MIN(due_at) FROM reminders WHERE status = 'pending'")?
                .query_row([], |r| r.get(0))?;
            ms.map(|ms| time_from("reminders.due_at", ms)).transpose()
        })
        .await
    }

    async fn delete_user(&self, user: UserId) -> Result<u64, ReminderStoreError> {
        self.run("delete_user", Access::Write, move |conn| {
            let removed = conn
                .prepare_cached("DELETE FROM reminders WHERE user_id = ?1")?
                .execute([user.get()])?;
            Ok(u64::try_from(removed).unwrap_or(u64::MAX))
        })
        .await
    }

    async fn delete_finished_before(
        &self,
        before: OffsetDateTime,
    ) -> Result<u64, ReminderStoreError> {
        let before = millis(before);
        self.run("delete_finished_before", Access::Write, move |conn| {
            let removed = conn
                .prepare_cached(
                    "DELETE FROM reminders WHERE finished_at IS NOT NULL AND finished_at < ?1",
                )?
                .execute([before])?;
            Ok(u64::try_from(removed).unwrap_or(u64::MAX))
        })
        .await
    }
}
