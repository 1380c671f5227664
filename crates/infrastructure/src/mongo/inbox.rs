//! [`UpdateInbox`] on MongoDB: one document per received update in `inbox_updates`
//! (`_id` = the update id, so a redelivery is a duplicate key); the reply leases of
//! conversations are documents of `conversation_leases` ([`super::leases`]), shared with every
//! other writer of a conversation's memory.
//!
//! Claims without transactions, safe for any number of claimers in any number of processes.
//! A claim lists the oldest pending update of each conversation nobody holds an unexpired
//! reply lease on (an aggregation, oldest first, at most [`MAX_CLAIM_CANDIDATES`]
//! conversations) and tries them in that order. Taking a conversation's lease is one atomic
//! single-document write ([`MongoLeases`]). Only then does the claim read the conversation's
//! oldest pending update (the candidate may have been completed meanwhile; then the lease is
//! given back and the next one is tried) and count the attempt. Since no one reads a
//! conversation's updates without holding its reply lease, a conversation is answered by one
//! claimer at a time, in update-id order. (The field is still called `key` in the stored
//! documents.)
//!
//! Completing marks the update done *before* giving the lease back, so no claimer can take
//! the conversation and see the update still pending. Renew, complete and release match the
//! lease by its token, so a claimer whose lease expired and was taken over cannot touch the
//! new holder's lease.
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

use butler_domain::ports::{
    Claimed, ConversationLeases, InboxError, InboxUpdate, Lease, LeaseError, LeaseScope, Stored,
    UpdateInbox,
};

use super::leases::MongoLeases;
use super::{
    bounded, date_bson, get_int, get_str, get_time, is_duplicate_key, Fault, INBOX_COLLECTION,
};

/// Most conversations one claim considers: those with the oldest pending updates, unleased
/// when the claim began. More claimable ones are reached once these are answered.
pub const MAX_CLAIM_CANDIDATES: usize = 256;

/// The update inbox in the `inbox_updates` collection, with its claims' leases among the
/// conversations' leases.
#[derive(Debug, Clone)]
pub struct MongoInbox {
    updates: Collection<Document>,
    leases: MongoLeases,
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

fn decode(doc: &Document) -> Result<(InboxUpdate, u32), Fault> {
    let attempts = u32::try_from(get_int(doc, "attempts")?)
        .map_err(|_| Fault::Corrupt("inbox_updates.attempts is out of range".into()))?;
    Ok((
        InboxUpdate {
            update_id: get_int(doc, "_id")?,
            conversation: get_int(doc, "key")?,
            payload: get_str(doc, "payload")?,
            received_at: get_time(doc, "received_at")?,
        },
        attempts,
    ))
}

impl MongoInbox {
    pub(super) fn new(database: &Database, holder: Uuid, timeout: StdDuration) -> Self {
        Self {
            updates: database.collection(INBOX_COLLECTION),
            leases: MongoLeases::new(database, holder, timeout),
            timeout,
        }
    }

    /// Conversations with pending updates and no unexpired reply lease, oldest pending update
    /// first.
    async fn candidates(&self, now: OffsetDateTime) -> Result<Vec<i64>, Fault> {
        let held = self.leases.held(LeaseScope::Replies, now).await?;
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

    async fn claim_once(
        &self,
        now: OffsetDateTime,
        lease_for: Duration,
    ) -> Result<Option<Claimed>, Fault> {
        for conversation in self.candidates(now).await? {
            let lease = Lease::new(conversation, LeaseScope::Replies, now, lease_for);
            if !self.leases.try_take(&lease, now).await? {
                continue;
            }
            let taken = match self.take_oldest(conversation).await {
                Ok(taken) => taken,
                Err(fault) => {
                    // Best effort: otherwise the conversation waits for the lease to expire.
                    let _ = self.leases.give_back(&lease).await;
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
                None => self.leases.give_back(&lease).await?,
            }
        }
        Ok(None)
    }
}

#[async_trait]
impl ConversationLeases for MongoInbox {
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
impl UpdateInbox for MongoInbox {
    async fn store(&self, update: &InboxUpdate) -> Result<Stored, InboxError> {
        let document = doc! {
            "_id": update.update_id,
            "key": update.conversation,
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
        self.leases.give_back(lease).await.map_err(op)
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
