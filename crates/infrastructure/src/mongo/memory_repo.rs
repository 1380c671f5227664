//! [`UserMemoryRepository`] on MongoDB: one document per event in `user_memory`.
//!
//! Cursor order `(created_at, event_id)` maps to a sort on both fields; "after a cursor" is
//! `created_at > t OR (created_at = t AND event_id > id)`, which MongoDB evaluates with the
//! `{user_id: 1, created_at: -1}` index. Binary UUIDs of equal length and subtype compare
//! byte-wise, the same order as [`uuid::Uuid`]. Appends are unordered `insertMany`s whose
//! duplicate-key errors (from the unique `event_id` index) mean "already stored".

use std::time::Duration;

use async_trait::async_trait;
use futures::TryStreamExt;
use mongodb::bson::{doc, Document};
use mongodb::{Collection, Database};

use butler_domain::ports::{MemoryStoreError, UserEventCount, UserMemoryRepository};
use butler_domain::{EventCursor, UserId, UserMemoryEvent};

use super::{
    bounded, date_bson, get_int, get_str, get_strings, get_time, get_uuid, is_duplicate_key,
    limit_i64, uuid_bson, Fault, MEMORY_COLLECTION,
};

/// Memory events in the `user_memory` collection.
#[derive(Debug, Clone)]
pub struct MongoMemoryRepository {
    collection: Collection<Document>,
    timeout: Duration,
}

fn to_port(operation: &'static str, fault: Fault) -> MemoryStoreError {
    match fault {
        Fault::Corrupt(detail) => MemoryStoreError::Corrupt { detail },
        Fault::Driver(detail) => {
            tracing::warn!(
                operation,
                collection = MEMORY_COLLECTION,
                %detail,
                "memory storage failed"
            );
            MemoryStoreError::Unavailable { operation, detail }
        }
    }
}

fn document(e: &UserMemoryEvent) -> Document {
    doc! {
        "event_id": uuid_bson(e.event_id),
        "user_id": e.user_id.get(),
        "role": e.role.code(),
        "content": e.content.as_str(),
        "source": e.source.code(),
        "created_at": date_bson(e.created_at),
        "tags": e.tags.clone(),
    }
}

fn decode(doc: &Document) -> Result<UserMemoryEvent, Fault> {
    let corrupt = |field: &str| Fault::Corrupt(format!("user_memory.{field} is not a known code"));
    Ok(UserMemoryEvent {
        event_id: get_uuid(doc, "event_id")?,
        user_id: UserId::new(get_int(doc, "user_id")?),
        role: get_str(doc, "role")?.parse().map_err(|_| corrupt("role"))?,
        content: get_str(doc, "content")?,
        source: get_str(doc, "source")?
            .parse()
            .map_err(|_| corrupt("source"))?,
        created_at: get_time(doc, "created_at")?,
        tags: get_strings(doc, "tags")?,
    })
}

/// Events of `user_id` strictly after `cursor`.
fn after(user_id: UserId, cursor: EventCursor) -> Document {
    let at = date_bson(cursor.created_at);
    doc! {
        "user_id": user_id.get(),
        "$or": [
            { "created_at": { "$gt": at.clone() } },
            { "created_at": at, "event_id": { "$gt": uuid_bson(cursor.event_id) } },
        ],
    }
}

/// Events of `user_id` at or before `cursor`.
fn up_to(user_id: UserId, cursor: EventCursor) -> Document {
    let at = date_bson(cursor.created_at);
    doc! {
        "user_id": user_id.get(),
        "$or": [
            { "created_at": { "$lt": at.clone() } },
            { "created_at": at, "event_id": { "$lte": uuid_bson(cursor.event_id) } },
        ],
    }
}

fn count_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

impl MongoMemoryRepository {
    pub(super) fn new(database: &Database, timeout: Duration) -> Self {
        Self {
            collection: database.collection(MEMORY_COLLECTION),
            timeout,
        }
    }

    async fn find(
        &self,
        filter: Document,
        sort: Document,
        limit: usize,
    ) -> Result<Vec<UserMemoryEvent>, Fault> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let docs: Vec<Document> = bounded(MEMORY_COLLECTION, self.timeout, async {
            self.collection
                .find(filter)
                .sort(sort)
                .limit(limit_i64(limit))
                .await?
                .try_collect()
                .await
        })
        .await?;
        docs.iter().map(decode).collect()
    }

    async fn delete(&self, filter: Document) -> Result<u64, Fault> {
        let result = bounded(
            MEMORY_COLLECTION,
            self.timeout,
            self.collection.delete_many(filter),
        )
        .await?;
        Ok(result.deleted_count)
    }
}

#[async_trait]
impl UserMemoryRepository for MongoMemoryRepository {
    async fn append(&self, events: &[UserMemoryEvent]) -> Result<(), MemoryStoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let docs: Vec<Document> = events.iter().map(document).collect();
        let insert = self.collection.insert_many(docs).ordered(false);
        match tokio::time::timeout(self.timeout, insert).await {
            Ok(Ok(_)) => Ok(()),
            // Every failure was "this event_id is already stored": the append is complete.
            Ok(Err(e)) if is_duplicate_key(&e) => Ok(()),
            Ok(Err(e)) => Err(to_port("append", Fault::from_driver(MEMORY_COLLECTION, &e))),
            Err(_) => Err(to_port(
                "append",
                Fault::timed_out(MEMORY_COLLECTION, self.timeout),
            )),
        }
    }

    async fn recent(
        &self,
        user_id: UserId,
        limit: usize,
        after_cursor: Option<EventCursor>,
    ) -> Result<Vec<UserMemoryEvent>, MemoryStoreError> {
        let filter = after_cursor.map_or_else(
            || doc! { "user_id": user_id.get() },
            |cursor| after(user_id, cursor),
        );
        let mut newest = self
            .find(filter, doc! { "created_at": -1, "event_id": -1 }, limit)
            .await
            .map_err(|f| to_port("recent", f))?;
        newest.reverse();
        Ok(newest)
    }

    async fn count(&self, user_id: UserId) -> Result<u64, MemoryStoreError> {
        bounded(
            MEMORY_COLLECTION,
            self.timeout,
            self.collection
                .count_documents(doc! { "user_id": user_id.get() }),
        )
        .await
        .map_err(|f| to_port("count", f))
    }

    async fn events_up_to(
        &self,
        user_id: UserId,
        cursor: EventCursor,
        limit: usize,
    ) -> Result<Vec<UserMemoryEvent>, MemoryStoreError> {
        self.find(
            up_to(user_id, cursor),
            doc! { "created_at": 1, "event_id": 1 },
            limit,
        )
        .await
        .map_err(|f| to_port("events_up_to", f))
    }

    async fn delete_up_to(
        &self,
        user_id: UserId,
        cursor: EventCursor,
    ) -> Result<u64, MemoryStoreError> {
        // One deleteMany whose filter only matches events at or before the cursor, so events
        // appended meanwhile (with newer cursors) can never match.
        self.delete(up_to(user_id, cursor))
            .await
            .map_err(|f| to_port("delete_up_to", f))
    }

    async fn delete_all(&self, user_id: UserId) -> Result<u64, MemoryStoreError> {
        self.delete(doc! { "user_id": user_id.get() })
            .await
            .map_err(|f| to_port("delete_all", f))
    }

    async fn users_over(
        &self,
        threshold: u64,
        limit: usize,
    ) -> Result<Vec<UserEventCount>, MemoryStoreError> {
        let op = |f| to_port("users_over", f);
        if limit == 0 {
            return Ok(Vec::new());
        }
        let threshold = i64::try_from(threshold).unwrap_or(i64::MAX);
        let pipeline = [
            doc! { "$group": { "_id": "$user_id", "events": { "$sum": 1 } } },
            doc! { "$match": { "events": { "$gt": threshold } } },
            doc! { "$sort": { "events": -1, "_id": 1 } },
            doc! { "$limit": limit_i64(limit) },
        ];
        let docs: Vec<Document> = bounded(MEMORY_COLLECTION, self.timeout, async {
            self.collection
                .aggregate(pipeline)
                .await?
                .try_collect()
                .await
        })
        .await
        .map_err(op)?;
        docs.iter()
            .map(|d| {
                Ok(UserEventCount {
                    user_id: UserId::new(get_int(d, "_id")?),
                    events: count_u64(get_int(d, "events")?),
                })
            })
            .collect::<Result<_, Fault>>()
            .map_err(op)
    }
}
