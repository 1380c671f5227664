//! [`ConversationLeases`] on MongoDB: one document per held `(conversation, scope)` in
//! `conversation_leases`, `_id` = `"<scope>:<conversation>"`, shared with the update inbox
//! (whose claims take the `reply` scope).
//!
//! Safe for any number of holders in any number of processes, without transactions: taking a
//! lease is one atomic single-document write — an update that matches only while the lease has
//! expired, or, when there is no document, an insert that the unique `_id` refuses if another
//! holder inserted first. Renew and release match the token, so a holder whose lease was taken
//! cannot touch the new holder's. Each document records its `holder` (the id of the process's
//! store, for operators reading `conversation_leases`).

use std::time::Duration as StdDuration;

use async_trait::async_trait;
use mongodb::bson::{doc, Bson, Document};
use mongodb::{Collection, Database};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use butler_domain::ports::{ConversationLeases, Lease, LeaseError, LeaseScope};

use super::{bounded, date_bson, get_int, is_duplicate_key, uuid_bson, Fault, LEASES_COLLECTION};

/// The leases in the `conversation_leases` collection.
#[derive(Debug, Clone)]
pub struct MongoLeases {
    leases: Collection<Document>,
    holder: Uuid,
    timeout: StdDuration,
}

fn to_port(operation: &'static str, fault: Fault) -> LeaseError {
    match fault {
        Fault::Corrupt(detail) => LeaseError::Corrupt { detail },
        Fault::Driver(detail) => {
            tracing::warn!(
                operation,
                collection = LEASES_COLLECTION,
                %detail,
                "lease storage failed"
            );
            LeaseError::Unavailable { operation, detail }
        }
    }
}

/// The `_id` of the lease document of `(conversation, scope)`.
fn lease_id(conversation: i64, scope: LeaseScope) -> String {
    format!("{}:{conversation}", scope.code())
}

/// The lease document of `lease`, while `lease` holds it.
fn held_by(lease: &Lease) -> Document {
    doc! {
        "_id": lease_id(lease.conversation, lease.scope),
        "token": uuid_bson(lease.token),
    }
}

impl MongoLeases {
    pub(super) fn new(database: &Database, holder: Uuid, timeout: StdDuration) -> Self {
        Self {
            leases: database.collection(LEASES_COLLECTION),
            holder,
            timeout,
        }
    }

    /// The fields of `lease` as stored.
    fn fields(&self, lease: &Lease) -> Document {
        doc! {
            "conversation": lease.conversation,
            "scope": lease.scope.code(),
            "token": uuid_bson(lease.token),
            "until": date_bson(lease.until),
            "holder": uuid_bson(self.holder),
        }
    }

    /// The conversations with an unexpired lease of `scope` at `now`.
    pub(super) async fn held(
        &self,
        scope: LeaseScope,
        now: OffsetDateTime,
    ) -> Result<Vec<Bson>, Fault> {
        let docs: Vec<Document> = bounded(LEASES_COLLECTION, self.timeout, async {
            use futures::TryStreamExt as _;
            self.leases
                .find(doc! { "scope": scope.code(), "until": { "$gt": date_bson(now) } })
                .projection(doc! { "conversation": 1 })
                .await?
                .try_collect()
                .await
        })
        .await?;
        docs.iter()
            .map(|d| get_int(d, "conversation").map(Bson::Int64))
            .collect()
    }

    /// Takes `lease` if its conversation and scope have no unexpired lease at `now`.
    pub(super) async fn try_take(&self, lease: &Lease, now: OffsetDateTime) -> Result<bool, Fault> {
        let id = lease_id(lease.conversation, lease.scope);
        let expired = doc! { "_id": &id, "until": { "$lte": date_bson(now) } };
        let taken_over = bounded(
            LEASES_COLLECTION,
            self.timeout,
            self.leases
                .update_one(expired, doc! { "$set": self.fields(lease) }),
        )
        .await?;
        if taken_over.matched_count > 0 {
            return Ok(true);
        }
        let mut fresh = self.fields(lease);
        fresh.insert("_id", id);
        match tokio::time::timeout(self.timeout, self.leases.insert_one(fresh)).await {
            Ok(Ok(_)) => Ok(true),
            // Someone holds it, or took it a moment ago.
            Ok(Err(e)) if is_duplicate_key(&e) => Ok(false),
            Ok(Err(e)) => Err(Fault::from_driver(LEASES_COLLECTION, &e)),
            Err(_) => Err(Fault::timed_out(LEASES_COLLECTION, self.timeout)),
        }
    }

    /// Gives `lease` back if it still holds.
    pub(super) async fn give_back(&self, lease: &Lease) -> Result<(), Fault> {
        bounded(
            LEASES_COLLECTION,
            self.timeout,
            self.leases.delete_one(held_by(lease)),
        )
        .await
        .map(|_| ())
    }
}

#[async_trait]
impl ConversationLeases for MongoLeases {
    async fn acquire(
        &self,
        conversation: i64,
        scope: LeaseScope,
        now: OffsetDateTime,
        lease_for: Duration,
    ) -> Result<Option<Lease>, LeaseError> {
        let lease = Lease::new(conversation, scope, now, lease_for);
        let taken = self
            .try_take(&lease, now)
            .await
            .map_err(|f| to_port("acquire", f))?;
        Ok(taken.then_some(lease))
    }

    async fn take_over(
        &self,
        conversation: i64,
        scope: LeaseScope,
        now: OffsetDateTime,
        lease_for: Duration,
    ) -> Result<Lease, LeaseError> {
        let lease = Lease::new(conversation, scope, now, lease_for);
        bounded(
            LEASES_COLLECTION,
            self.timeout,
            self.leases
                .update_one(
                    doc! { "_id": lease_id(conversation, scope) },
                    doc! { "$set": self.fields(&lease) },
                )
                .upsert(true),
        )
        .await
        .map_err(|f| to_port("take_over", f))?;
        Ok(lease)
    }

    async fn renew(
        &self,
        lease: &Lease,
        now: OffsetDateTime,
        lease_for: Duration,
    ) -> Result<Option<Lease>, LeaseError> {
        let renewed = lease.renewed(now, lease_for);
        let result = bounded(
            LEASES_COLLECTION,
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

    async fn release(&self, lease: &Lease) -> Result<(), LeaseError> {
        self.give_back(lease)
            .await
            .map_err(|f| to_port("release", f))
    }
}
