//! [`UpdateInbox`] on MongoDB: one document per received update in `inbox_updates`
//! (`_id` = the update id, so a redelivery is a duplicate key), one per held key in
//! `inbox_leases` (`_id` = the key).
//!
//! Claims without transactions, safe for any number of claimers in any number of processes.
//! A claim lists the oldest pending update of each key nobody holds an unexpired lease on
//! (an aggregation, oldest first, at most [`MAX_CLAIM_CANDIDATES`] keys) and tries the keys in
//! that order. Taking a key's lease is one atomic single-document write: an update of the
//! lease document that matches only while it is expired, or, when there is none, an insert,
//! which the unique `_id` refuses if another claimer inserted first. Only then does the
//! claim read the key's oldest pending update (the candidate may have been completed
//! meanwhile; then the lease is given back and the next key is tried) and count the attempt.
//! Since no one reads a key's updates without holding its lease, a key is answered by one
//! claimer at a time, in update-id order.
//!
//! Completing marks the update done *before* giving the key back, so no claimer can take the
//! key and see the update still pending. Renew, complete and release match the lease by key
//! and token, so a claimer whose lease expired and was taken over cannot touch the new
//! holder's lease.
//!
//! Retention: done updates carry `done_at`; the TTL index on it removes them after
//! [`MongoOptions::inbox_retention`](super::MongoOptions::inbox_retention). Pending updates
//! have no `done_at` and never expire.

use std::time::Duration as StdDuration;

use async_trait::async_trait;
use futures::TryStreamExt;
use mongodb::bson::{doc, Bson, Document};
use mongodb::options::ReturnDocument;
use mongodb::{Collection, Database};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use butler_domain::ports::{Claimed, InboxError, InboxUpdate, Lease, Stored, UpdateInbox};

use super::{
    bounded, date_bson, get_int, get_str, get_time, is_duplicate_key, uuid_bson, Fault,
    INBOX_COLLECTION, INBOX_LEASES_COLLECTION,
};

/// Most keys one claim considers: the keys with the oldest pending updates, unleased when the
/// claim began. More claimable keys are reached once these are answered.
pub const MAX_CLAIM_CANDIDATES: usize = 256;

/// The update inbox in the `inbox_updates` and `inbox_leases` collections.
#[derive(Debug, Clone)]
pub struct MongoInbox {
    updates: Collection<Document>,
    leases: Collection<Document>,
    timeout: StdDuration,
}

fn to_port(operation: &'static str, fault: Fault) -> InboxError {
    match fault {
        Fault::Corrupt(detail) => InboxError::Corrupt { detail },
        Fault::Driver(detail) => {
            tracing::warn!(
                operation,
                collection = INBOX_COLLECTION,
                %detail,
                "inbox storage failed"
            );
            InboxError::Unavailable { operation, detail }
        }
    }
}

/// Pending updates: those without `done_at` (`null` matches a missing field too).
fn pending() -> Document {
    doc! { "done_at": Bson::Null }
}

/// The lease document of `lease`'s key, while `lease` holds it.
fn held_by(lease: &Lease) -> Document {
    doc! { "_id": lease.key, "token": uuid_bson(lease.token) }
}

fn decode(doc: &Document) -> Result<(InboxUpdate, u32), Fault> {
    let attempts = u32::try_from(get_int(doc, "attempts")?)
        .map_err(|_| Fault::Corrupt("inbox_updates.attempts is out of range".into()))?;
    Ok((
        InboxUpdate {
            update_id: get_int(doc, "_id")?,
            key: get_int(doc, "key")?,
            payload: get_str(doc, "payload")?,
            received_at: get_time(doc, "received_at")?,
        },
        attempts,
    ))
}

impl MongoInbox {
    pub(super) fn new(database: &Database, timeout: StdDuration) -> Self {
        Self {
            updates: database.collection(INBOX_COLLECTION),
            leases: database.collection(INBOX_LEASES_COLLECTION),
            timeout,
        }
    }

    /// The keys of unexpired leases at `now`.
    async fn held_keys(&self, now: OffsetDateTime) -> Result<Vec<Bson>, Fault> {
        let docs: Vec<Document> = bounded(INBOX_LEASES_COLLECTION, self.timeout, async {
            self.leases
                .find(doc! { "until": { "$gt": date_bson(now) } })
                .projection(doc! { "_id": 1 })
                .await?
                .try_collect()
                .await
        })
        .await?;
        docs.iter()
            .map(|d| get_int(d, "_id").map(Bson::Int64))
            .collect()
    }

    /// Keys with pending updates and no unexpired lease, oldest pending update first.
    async fn candidate_keys(&self, now: OffsetDateTime) -> Result<Vec<i64>, Fault> {
        let held = self.held_keys(now).await?;
        let mut filter = pending();
        filter.insert("key", doc! { "$nin": held });
        let pipeline = [
            doc! { "$match": filter },
            doc! { "$group": { "_id": "$key", "first": { "$min": "$_id" } } },
            doc! { "$sort": { "first": 1 } },
            doc! { "$limit": super::limit_i64(MAX_CLAIM_CANDIDATES) },
        ];
        let docs: Vec<Document> = bounded(INBOX_COLLECTION, self.timeout, async {
            self.updates.aggregate(pipeline).await?.try_collect().await
        })
        .await?;
        docs.iter().map(|d| get_int(d, "_id")).collect()
    }

    /// Takes `lease` if its key has no unexpired lease at `now` (see the module docs).
    async fn acquire(&self, lease: &Lease, now: OffsetDateTime) -> Result<bool, Fault> {
        let expired = doc! { "_id": lease.key, "until": { "$lte": date_bson(now) } };
        let set = doc! { "$set": {
            "token": uuid_bson(lease.token),
            "until": date_bson(lease.until),
        } };
        let taken_over = bounded(
            INBOX_LEASES_COLLECTION,
            self.timeout,
            self.leases.update_one(expired, set),
        )
        .await?;
        if taken_over.matched_count > 0 {
            return Ok(true);
        }
        let fresh = doc! {
            "_id": lease.key,
            "token": uuid_bson(lease.token),
            "until": date_bson(lease.until),
        };
        match tokio::time::timeout(self.timeout, self.leases.insert_one(fresh)).await {
            Ok(Ok(_)) => Ok(true),
            // Someone holds it, or took it a moment ago.
            Ok(Err(e)) if is_duplicate_key(&e) => Ok(false),
            Ok(Err(e)) => Err(Fault::from_driver(INBOX_LEASES_COLLECTION, &e)),
            Err(_) => Err(Fault::timed_out(INBOX_LEASES_COLLECTION, self.timeout)),
        }
    }

    /// Counts an attempt on the oldest pending update of `key`, whose lease the caller holds.
    async fn take_oldest(&self, key: i64) -> Result<Option<(InboxUpdate, u32)>, Fault> {
        let mut filter = pending();
        filter.insert("key", key);
        let found = bounded(
            INBOX_COLLECTION,
            self.timeout,
            self.updates
                .find_one_and_update(filter, doc! { "$inc": { "attempts": 1_i64 } })
                .sort(doc! { "_id": 1 })
                .return_document(ReturnDocument::After),
        )
        .await?;
        found.as_ref().map(decode).transpose()
    }

    async fn release_lease(&self, lease: &Lease) -> Result<(), Fault> {
        bounded(
            INBOX_LEASES_COLLECTION,
            self.timeout,
            self.leases.delete_one(held_by(lease)),
        )
        .await
        .map(|_| ())
    }

    async fn claim_once(
        &self,
        now: OffsetDateTime,
        lease_for: Duration,
    ) -> Result<Option<Claimed>, Fault> {
        let until = Lease::expiry(now, lease_for);
        for key in self.candidate_keys(now).await? {
            let lease = Lease {
                key,
                token: Uuid::new_v4(),
                until,
            };
            if !self.acquire(&lease, now).await? {
                continue;
            }
            let taken = match self.take_oldest(key).await {
                Ok(taken) => taken,
                Err(fault) => {
                    // Best effort: otherwise the key waits for the lease to expire.
                    let _ = self.release_lease(&lease).await;
                    return Err(fault);
                }
            };
            match taken {
                Some((update, attempts)) => {
                    return Ok(Some(Claimed {
                        update,
                        lease,
                        attempts,
                    }))
                }
                // Completed since the candidates were listed.
                None => self.release_lease(&lease).await?,
            }
        }
        Ok(None)
    }
}

#[async_trait]
impl UpdateInbox for MongoInbox {
    async fn store(&self, update: &InboxUpdate) -> Result<Stored, InboxError> {
        let document = doc! {
            "_id": update.update_id,
            "key": update.key,
            "payload": update.payload.as_str(),
            "received_at": date_bson(update.received_at),
            "attempts": 0_i64,
        };
        match tokio::time::timeout(self.timeout, self.updates.insert_one(document)).await {
            Ok(Ok(_)) => Ok(Stored::New),
            Ok(Err(e)) if is_duplicate_key(&e) => Ok(Stored::Duplicate),
            Ok(Err(e)) => Err(to_port("store", Fault::from_driver(INBOX_COLLECTION, &e))),
            Err(_) => Err(to_port(
                "store",
                Fault::timed_out(INBOX_COLLECTION, self.timeout),
            )),
        }
    }

    async fn claim(
        &self,
        now: OffsetDateTime,
        lease_for: Duration,
    ) -> Result<Option<Claimed>, InboxError> {
        self.claim_once(now, lease_for)
            .await
            .map_err(|f| to_port("claim", f))
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
        let result = bounded(
            INBOX_LEASES_COLLECTION,
            self.timeout,
            self.leases.update_one(
                held_by(lease),
                doc! { "$set": { "until": date_bson(renewed.until) } },
            ),
        )
        .await
        .map_err(|f| to_port("renew", f))?;
        Ok((result.matched_count > 0).then_some(renewed))
    }

    async fn complete(
        &self,
        update_id: i64,
        lease: &Lease,
        now: OffsetDateTime,
    ) -> Result<(), InboxError> {
        let op = |f| to_port("complete", f);
        let mut filter = pending();
        filter.insert("_id", update_id);
        bounded(
            INBOX_COLLECTION,
            self.timeout,
            self.updates
                // The message text is not kept once answered: the id alone deduplicates.
                .update_one(
                    filter,
                    doc! { "$set": { "done_at": date_bson(now), "payload": "" } },
                ),
        )
        .await
        .map_err(op)?;
        self.release_lease(lease).await.map_err(op)
    }

    async fn release(&self, lease: &Lease) -> Result<(), InboxError> {
        self.release_lease(lease)
            .await
            .map_err(|f| to_port("release", f))
    }

    async fn backlog(&self) -> Result<u64, InboxError> {
        bounded(
            INBOX_COLLECTION,
            self.timeout,
            self.updates.count_documents(pending()),
        )
        .await
        .map_err(|f| to_port("backlog", f))
    }

    async fn delete_done_before(&self, before: OffsetDateTime) -> Result<u64, InboxError> {
        bounded(
            INBOX_COLLECTION,
            self.timeout,
            self.updates
                .delete_many(doc! { "done_at": { "$lt": date_bson(before) } }),
        )
        .await
        .map(|r| r.deleted_count)
        .map_err(|f| to_port("delete_done_before", f))
    }
}
