//! [`ReminderRepository`] on MongoDB: one document per reminder in `reminders` (`_id` = the
//! reminder's UUID), its claim's lease (`lease_token`, `lease_until`) on the document itself.
//!
//! Claims without transactions, safe for any number of claimers in any number of processes:
//! a claim lists the earliest due, unleased pending reminders, then takes each with one
//! atomic `findOneAndUpdate` whose filter repeats "pending, due, unleased" — of racing
//! claimers exactly one matches. Cancel and reschedule are the same kind of guarded single
//! write, so they never change a reminder a scheduler is delivering.
//!
//! Retention: delivered and cancelled reminders carry `finished_at`; the TTL index on it
//! removes them after [`REMINDER_RETENTION`]. Pending ones have no `finished_at`.

use std::time::Duration as StdDuration;

use async_trait::async_trait;
use futures::TryStreamExt;
use mongodb::bson::{doc, Bson, Document};
use mongodb::options::ReturnDocument;
use mongodb::{Collection, Database};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use butler_domain::ports::{
    ChangeOutcome, ClaimedReminder, ReminderRepository, ReminderStoreError,
};
use butler_domain::reminder::{Reminder, ReminderId, ReminderStatus};
use butler_domain::UserId;

use super::{bounded, date_bson, get_int, get_str, get_time, get_uuid, uuid_bson, Fault};

/// Reminders, one document per reminder.
pub const REMINDERS_COLLECTION: &str = "reminders";
/// Name of the TTL index on `reminders.finished_at`.
pub const REMINDERS_TTL_INDEX: &str = "reminders_ttl";
/// How long delivered and cancelled reminders are kept (both backends).
pub const REMINDER_RETENTION: StdDuration = StdDuration::from_secs(30 * 24 * 60 * 60);

/// Reminders in the `reminders` collection.
#[derive(Debug, Clone)]
pub struct MongoReminderRepository {
    reminders: Collection<Document>,
    timeout: StdDuration,
}

fn to_port(operation: &'static str, fault: Fault) -> ReminderStoreError {
    match fault {
        Fault::Corrupt(detail) => ReminderStoreError::Corrupt { detail },
        Fault::Driver(detail) => {
            tracing::warn!(operation, collection = REMINDERS_COLLECTION, %detail, "reminder storage failed");
            ReminderStoreError::Unavailable { operation, detail }
        }
    }
}

fn encode(r: &Reminder) -> Document {
    let mut d = doc! {
        "_id": uuid_bson(r.id.as_uuid()),
        "user_id": r.user_id.get(),
        "chat_id": r.chat_id,
        "text": &r.text,
        "due_at": date_bson(r.due_at),
        "time_zone": &r.time_zone,
        "created_at": date_bson(r.created_at),
        "attempts": i64::from(r.attempts),
        "lease_token": Bson::Null,
        "lease_until": Bson::Null,
    };
    let (status, finished) = match r.status {
        ReminderStatus::Pending => ("pending", None),
        ReminderStatus::Delivered(at) => ("delivered", Some(at)),
        ReminderStatus::Cancelled(at) => ("cancelled", Some(at)),
    };
    d.insert("status", status);
    if let Some(at) = finished {
        d.insert("finished_at", date_bson(at));
    }
    d
}

fn decode(d: &Document) -> Result<Reminder, Fault> {
    let status = match get_str(d, "status")?.as_str() {
        "pending" => ReminderStatus::Pending,
        "delivered" => ReminderStatus::Delivered(get_time(d, "finished_at")?),
        "cancelled" => ReminderStatus::Cancelled(get_time(d, "finished_at")?),
        _ => return Err(Fault::Corrupt("status is unknown".into())),
    };
    Ok(Reminder {
        id: ReminderId::from_uuid(get_uuid(d, "_id")?),
        user_id: UserId::new(get_int(d, "user_id")?),
        chat_id: get_int(d, "chat_id")?,
        text: get_str(d, "text")?,
        due_at: get_time(d, "due_at")?,
        time_zone: get_str(d, "time_zone")?,
        created_at: get_time(d, "created_at")?,
        status,
        attempts: u32::try_from(get_int(d, "attempts")?)
            .map_err(|_| Fault::Corrupt("attempts is out of range".into()))?,
    })
}

/// Pending and not leased at `now` (`null` matches a missing field too).
fn unleased(now: OffsetDateTime) -> Document {
    doc! {
        "status": "pending",
        "$or": [ { "lease_until": Bson::Null }, { "lease_until": { "$lte": date_bson(now) } } ],
    }
}

impl MongoReminderRepository {
    pub(super) fn new(database: &Database, timeout: StdDuration) -> Self {
        Self {
            reminders: database.collection(REMINDERS_COLLECTION),
            timeout,
        }
    }

    async fn find(&self, filter: Document, limit: Option<i64>) -> Result<Vec<Reminder>, Fault> {
        let mut find = self
            .reminders
            .find(filter)
            .sort(doc! { "due_at": 1, "_id": 1 });
        if let Some(limit) = limit {
            find = find.limit(limit);
        }
        let cursor = bounded(REMINDERS_COLLECTION, self.timeout, find).await?;
        let docs: Vec<Document> =
            bounded(REMINDERS_COLLECTION, self.timeout, cursor.try_collect()).await?;
        docs.iter().map(decode).collect()
    }

    /// A guarded change of the user's pending, unleased reminder `id`.
    async fn change(
        &self,
        user: UserId,
        id: ReminderId,
        now: OffsetDateTime,
        update: Document,
    ) -> Result<ChangeOutcome, Fault> {
        let mut filter = unleased(now);
        filter.insert("_id", uuid_bson(id.as_uuid()));
        filter.insert("user_id", user.get());
        let changed = bounded(
            REMINDERS_COLLECTION,
            self.timeout,
            self.reminders.update_one(filter, update),
        )
        .await?;
        if changed.matched_count == 1 {
            return Ok(ChangeOutcome::Changed);
        }
        let still_pending = bounded(
            REMINDERS_COLLECTION,
            self.timeout,
            self.reminders.count_documents(
                doc! { "_id": uuid_bson(id.as_uuid()), "user_id": user.get(), "status": "pending" },
            ),
        )
        .await?;
        Ok(if still_pending == 1 {
            ChangeOutcome::Delivering
        } else {
            ChangeOutcome::NotFound
        })
    }
}

#[async_trait]
impl ReminderRepository for MongoReminderRepository {
    async fn add(&self, reminder: &Reminder) -> Result<(), ReminderStoreError> {
        let d = encode(reminder);
        bounded(
            REMINDERS_COLLECTION,
            self.timeout,
            self.reminders
                .update_one(
                    doc! { "_id": uuid_bson(reminder.id.as_uuid()) },
                    doc! { "$setOnInsert": d },
                )
                .upsert(true),
        )
        .await
        .map(|_| ())
        .map_err(|f| to_port("add", f))
    }

    async fn get(&self, id: ReminderId) -> Result<Option<Reminder>, ReminderStoreError> {
        let op = |f| to_port("get", f);
        let found = bounded(
            REMINDERS_COLLECTION,
            self.timeout,
            self.reminders
                .find_one(doc! { "_id": uuid_bson(id.as_uuid()) }),
        )
        .await
        .map_err(op)?;
        found.as_ref().map(decode).transpose().map_err(op)
    }

    async fn list_pending(&self, user: UserId) -> Result<Vec<Reminder>, ReminderStoreError> {
        self.find(doc! { "user_id": user.get(), "status": "pending" }, None)
            .await
            .map_err(|f| to_port("list_pending", f))
    }

    async fn list_all(&self, user: UserId) -> Result<Vec<Reminder>, ReminderStoreError> {
        self.find(doc! { "user_id": user.get() }, None)
            .await
            .map_err(|f| to_port("list_all", f))
    }

    async fn count_pending(&self, user: UserId) -> Result<u64, ReminderStoreError> {
        bounded(
            REMINDERS_COLLECTION,
            self.timeout,
            self.reminders
                .count_documents(doc! { "user_id": user.get(), "status": "pending" }),
        )
        .await
        .map_err(|f| to_port("count_pending", f))
    }

    async fn cancel(
        &self,
        user: UserId,
        id: ReminderId,
        now: OffsetDateTime,
    ) -> Result<ChangeOutcome, ReminderStoreError> {
        let update = doc! { "$set": {
            "status": "cancelled", "finished_at": date_bson(now),
            "lease_token": Bson::Null, "lease_until": Bson::Null,
        } };
        self.change(user, id, now, update)
            .await
            .map_err(|f| to_port("cancel", f))
    }

    async fn reschedule(
        &self,
        user: UserId,
        id: ReminderId,
        due_at: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<ChangeOutcome, ReminderStoreError> {
        let update = doc! { "$set": {
            "due_at": date_bson(due_at), "lease_token": Bson::Null, "lease_until": Bson::Null,
        } };
        self.change(user, id, now, update)
            .await
            .map_err(|f| to_port("reschedule", f))
    }

    async fn claim_due(
        &self,
        now: OffsetDateTime,
        lease_for: Duration,
        limit: u32,
    ) -> Result<Vec<ClaimedReminder>, ReminderStoreError> {
        let op = |f| to_port("claim_due", f);
        let due = |mut filter: Document| {
            filter.insert("due_at", doc! { "$lte": date_bson(now) });
            filter
        };
        let until = now + lease_for;
        // Racing claimers see the same candidates; listing a few more than the limit lets a
        // claim still fill its batch when others took the first ones.
        let candidates = self
            .find(due(unleased(now)), Some(i64::from(limit) * 2))
            .await
            .map_err(op)?;
        let mut claimed = Vec::new();
        for candidate in candidates {
            if claimed.len() >= limit as usize {
                break;
            }
            let token = Uuid::new_v4();
            let mut filter = due(unleased(now));
            filter.insert("_id", uuid_bson(candidate.id.as_uuid()));
            let taken = bounded(
                REMINDERS_COLLECTION,
                self.timeout,
                self.reminders
                    .find_one_and_update(
                        filter,
                        doc! {
                            "$set": { "lease_token": uuid_bson(token), "lease_until": date_bson(until) },
                            "$inc": { "attempts": 1_i64 },
                        },
                    )
                    .return_document(ReturnDocument::After),
            )
            .await
            .map_err(op)?;
            if let Some(d) = taken {
                claimed.push(ClaimedReminder {
                    reminder: decode(&d).map_err(op)?,
                    token,
                    until,
                });
            }
        }
        Ok(claimed)
    }

    async fn mark_delivered(
        &self,
        id: ReminderId,
        token: Uuid,
        now: OffsetDateTime,
    ) -> Result<bool, ReminderStoreError> {
        bounded(
            REMINDERS_COLLECTION,
            self.timeout,
            self.reminders.update_one(
                doc! { "_id": uuid_bson(id.as_uuid()), "lease_token": uuid_bson(token), "status": "pending" },
                doc! { "$set": {
                    "status": "delivered", "finished_at": date_bson(now),
                    "lease_token": Bson::Null, "lease_until": Bson::Null,
                } },
            ),
        )
        .await
        .map(|r| r.matched_count == 1)
        .map_err(|f| to_port("mark_delivered", f))
    }

    async fn mark_delivered_many(
        &self,
        claims: &[(ReminderId, Uuid)],
        now: OffsetDateTime,
    ) -> Result<usize, ReminderStoreError> {
        if claims.is_empty() {
            return Ok(0);
        }
        // One update for all: each reminder only with its own claim's token.
        let held: Vec<Document> = claims
            .iter()
            .map(|(id, token)| doc! { "_id": uuid_bson(id.as_uuid()), "lease_token": uuid_bson(*token) })
            .collect();
        bounded(
            REMINDERS_COLLECTION,
            self.timeout,
            self.reminders.update_many(
                doc! { "$or": held, "status": "pending" },
                doc! { "$set": {
                    "status": "delivered", "finished_at": date_bson(now),
                    "lease_token": Bson::Null, "lease_until": Bson::Null,
                } },
            ),
        )
        .await
        .map(|r| usize::try_from(r.matched_count).unwrap_or(usize::MAX))
        .map_err(|f| to_port("mark_delivered", f))
    }

    async fn release(&self, id: ReminderId, token: Uuid) -> Result<bool, ReminderStoreError> {
        bounded(
            REMINDERS_COLLECTION,
            self.timeout,
            self.reminders.update_one(
                doc! { "_id": uuid_bson(id.as_uuid()), "lease_token": uuid_bson(token), "status": "pending" },
                doc! { "$set": { "lease_token": Bson::Null, "lease_until": Bson::Null } },
            ),
        )
        .await
        .map(|r| r.matched_count == 1)
        .map_err(|f| to_port("release", f))
    }

    async fn next_due(&self) -> Result<Option<OffsetDateTime>, ReminderStoreError> {
        let op = |f| to_port("next_due", f);
        Ok(self
            .find(doc! { "status": "pending" }, Some(1))
            .await
            .map_err(op)?
            .first()
            .map(|r| r.due_at))
    }

    async fn delete_user(&self, user: UserId) -> Result<u64, ReminderStoreError> {
        bounded(
            REMINDERS_COLLECTION,
            self.timeout,
            self.reminders.delete_many(doc! { "user_id": user.get() }),
        )
        .await
        .map(|r| r.deleted_count)
        .map_err(|f| to_port("delete_user", f))
    }

    async fn delete_finished_before(
        &self,
        before: OffsetDateTime,
    ) -> Result<u64, ReminderStoreError> {
        bounded(
            REMINDERS_COLLECTION,
            self.timeout,
            self.reminders
                .delete_many(doc! { "finished_at": { "$lt": date_bson(before) } }),
        )
        .await
        .map(|r| r.deleted_count)
        .map_err(|f| to_port("delete_finished_before", f))
    }
}
