//! Index creation for every collection, idempotent so it can run at every start-up and from a
//! `migrate` subcommand.
//!
//! `createIndexes` with an identical specification is a no-op on the server. The indexes whose
//! options change with configuration — the TTLs on `user_memory.created_at` and
//! `user_facts.created_at`, both set by the memory TTL, and on `inbox_updates.done_at`, set by
//! the inbox retention — are compared with what exists and dropped and rebuilt when the
//! configured TTL differs (or dropped when expiry is disabled), because MongoDB refuses to
//! redefine an index's options in place.

use std::time::Duration;

use futures::TryStreamExt;
use mongodb::bson::{doc, Document};
use mongodb::options::IndexOptions;
use mongodb::{Collection, Database, IndexModel};
use thiserror::Error;

use super::describe;

/// Profiles, one document per user.
pub const PROFILES_COLLECTION: &str = "user_profiles";
/// Memory events, one document per event.
pub const MEMORY_COLLECTION: &str = "user_memory";
/// Name of the TTL index on `user_memory.created_at`.
pub const MEMORY_TTL_INDEX: &str = "user_memory_ttl";
/// Long-term facts, one document per fact.
pub const FACTS_COLLECTION: &str = "user_facts";
/// Name of the TTL index on `user_facts.created_at`: facts expire like events.
pub const FACTS_TTL_INDEX: &str = "user_facts_ttl";
/// The update inbox, one document per received update (`_id` = the update id).
pub const INBOX_COLLECTION: &str = "inbox_updates";
/// Name of the TTL index on `inbox_updates.done_at`: done updates expire after the retention;
/// pending ones have no `done_at` and never expire.
pub const INBOX_TTL_INDEX: &str = "inbox_updates_ttl";
/// Leases on conversations, one document per held conversation and scope (`_id` =
/// `"<scope>:<conversation>"`), shared by the inbox's claims, compressions and resets.
pub const LEASES_COLLECTION: &str = "conversation_leases";

/// An index could not be listed, created or dropped.
#[derive(Debug, Error)]
#[error("ensuring index {index} on {collection} failed: {detail}")]
pub struct IndexError {
    /// The collection.
    pub collection: &'static str,
    /// The index name.
    pub index: &'static str,
    /// The driver's reason (codes, no contents).
    pub detail: String,
}

/// Creates every index the adapters rely on; safe to run any number of times, concurrently
/// with the same settings (a TTL index another run dropped first is not an error).
///
/// - `user_profiles`: unique `{user_id: 1}` (`user_profiles_user_id`);
/// - `user_memory`: `{user_id: 1, created_at: -1}` (`user_memory_user_created`), unique
///   `{event_id: 1}` (`user_memory_event_id`, makes appends idempotent), and the TTL index
///   `{created_at: 1}` (`user_memory_ttl`) when `memory_ttl` is `Some`;
/// - `user_facts`: unique `{fact_id: 1}` (`user_facts_fact_id`, idempotent saves), unique
///   `{user_id: 1, key: 1}` over current facts only (`user_facts_user_key`, partial on
///   `current: true`: one current fact per key), `{user_id: 1, created_at: -1}`
///   (`user_facts_user_created`), multikey `{user_id: 1, terms: 1}` (`user_facts_user_terms`,
///   search), and the TTL index `{created_at: 1}` (`user_facts_ttl`) with the same
///   `memory_ttl`;
/// - `inbox_updates`: `{done_at: 1, key: 1, _id: 1}` (`inbox_updates_pending`: pending
///   updates by key, oldest first), and the TTL index `{done_at: 1}` (`inbox_updates_ttl`)
///   expiring done updates after `inbox_retention`;
/// - `conversation_leases`: `{scope: 1, until: 1}` (`conversation_leases_scope_until`: the
///   conversations a claim must skip).
///
/// # Errors
/// [`IndexError`] naming the collection and index.
pub async fn ensure_indexes(
    database: &Database,
    memory_ttl: Option<Duration>,
    inbox_retention: Duration,
) -> Result<(), IndexError> {
    let profiles = database.collection::<Document>(PROFILES_COLLECTION);
    let memory = database.collection::<Document>(MEMORY_COLLECTION);
    create(
        &profiles,
        PROFILES_COLLECTION,
        "user_profiles_user_id",
        doc! { "user_id": 1 },
        IndexOptions::builder().unique(true).build(),
    )
    .await?;
    create(
        &memory,
        MEMORY_COLLECTION,
        "user_memory_user_created",
        doc! { "user_id": 1, "created_at": -1 },
        IndexOptions::default(),
    )
    .await?;
    create(
        &memory,
        MEMORY_COLLECTION,
        "user_memory_event_id",
        doc! { "event_id": 1 },
        IndexOptions::builder().unique(true).build(),
    )
    .await?;
    ensure_ttl(
        &memory,
        MEMORY_COLLECTION,
        MEMORY_TTL_INDEX,
        "created_at",
        memory_ttl,
    )
    .await?;
    ensure_fact_indexes(database, memory_ttl).await?;
    ensure_inbox_indexes(database, inbox_retention).await?;
    ensure_reminder_indexes(database).await
}

/// `reminders`: `{status: 1, due_at: 1, _id: 1}` (`reminders_due`: due pending reminders in
/// order), `{user_id: 1, status: 1, due_at: 1}` (`reminders_user_due`: a user's listing), and
/// the TTL index `{finished_at: 1}` expiring delivered and cancelled ones.
async fn ensure_reminder_indexes(database: &Database) -> Result<(), IndexError> {
    use super::reminder_repo::{REMINDERS_COLLECTION, REMINDERS_TTL_INDEX, REMINDER_RETENTION};
    let reminders = database.collection::<Document>(REMINDERS_COLLECTION);
    create(
        &reminders,
        REMINDERS_COLLECTION,
        "reminders_due",
        doc! { "status": 1, "due_at": 1, "_id": 1 },
        IndexOptions::default(),
    )
    .await?;
    create(
        &reminders,
        REMINDERS_COLLECTION,
        "reminders_user_due",
        doc! { "user_id": 1, "status": 1, "due_at": 1 },
        IndexOptions::default(),
    )
    .await?;
    ensure_ttl(
        &reminders,
        REMINDERS_COLLECTION,
        REMINDERS_TTL_INDEX,
        "finished_at",
        Some(REMINDER_RETENTION),
    )
    .await
}

async fn ensure_inbox_indexes(database: &Database, retention: Duration) -> Result<(), IndexError> {
    let updates = database.collection::<Document>(INBOX_COLLECTION);
    create(
        &updates,
        INBOX_COLLECTION,
        "inbox_updates_pending",
        doc! { "done_at": 1, "key": 1, "_id": 1 },
        IndexOptions::default(),
    )
    .await?;
    ensure_ttl(
        &updates,
        INBOX_COLLECTION,
        INBOX_TTL_INDEX,
        "done_at",
        Some(retention),
    )
    .await?;
    create(
        &database.collection::<Document>(LEASES_COLLECTION),
        LEASES_COLLECTION,
        "conversation_leases_scope_until",
        doc! { "scope": 1, "until": 1 },
        IndexOptions::default(),
    )
    .await
}

async fn ensure_fact_indexes(
    database: &Database,
    memory_ttl: Option<Duration>,
) -> Result<(), IndexError> {
    let facts = database.collection::<Document>(FACTS_COLLECTION);
    create(
        &facts,
        FACTS_COLLECTION,
        "user_facts_fact_id",
        doc! { "fact_id": 1 },
        IndexOptions::builder().unique(true).build(),
    )
    .await?;
    create(
        &facts,
        FACTS_COLLECTION,
        "user_facts_user_key",
        doc! { "user_id": 1, "key": 1 },
        IndexOptions::builder()
            .unique(true)
            .partial_filter_expression(doc! { "current": true })
            .build(),
    )
    .await?;
    create(
        &facts,
        FACTS_COLLECTION,
        "user_facts_user_created",
        doc! { "user_id": 1, "created_at": -1 },
        IndexOptions::default(),
    )
    .await?;
    create(
        &facts,
        FACTS_COLLECTION,
        "user_facts_user_terms",
        doc! { "user_id": 1, "terms": 1 },
        IndexOptions::default(),
    )
    .await?;
    ensure_ttl(
        &facts,
        FACTS_COLLECTION,
        FACTS_TTL_INDEX,
        "created_at",
        memory_ttl,
    )
    .await
}

async fn create(
    collection: &Collection<Document>,
    collection_name: &'static str,
    name: &'static str,
    keys: Document,
    mut options: IndexOptions,
) -> Result<(), IndexError> {
    options.name = Some(name.to_owned());
    let model = IndexModel::builder().keys(keys).options(options).build();
    collection
        .create_index(model)
        .await
        .map(|_| ())
        .map_err(|e| IndexError {
            collection: collection_name,
            index: name,
            detail: describe(&e),
        })
}

/// The server's code for dropping an index that does not exist.
const INDEX_NOT_FOUND: i32 = 27;

/// The server's error code of a failed command, if it is one.
fn command_code(e: &mongodb::error::Error) -> Option<i32> {
    match &*e.kind {
        mongodb::error::ErrorKind::Command(c) => Some(c.code),
        _ => None,
    }
}

/// Makes the TTL index `index` on `field` of `collection` expire after `ttl`, or removes it
/// for `None`.
async fn ensure_ttl(
    collection: &Collection<Document>,
    collection_name: &'static str,
    index: &'static str,
    field: &str,
    ttl: Option<Duration>,
) -> Result<(), IndexError> {
    let failed = |e: &mongodb::error::Error| IndexError {
        collection: collection_name,
        index,
        detail: describe(e),
    };
    let existing: Vec<IndexModel> = collection
        .list_indexes()
        .await
        .map_err(|e| failed(&e))?
        .try_collect()
        .await
        .map_err(|e| failed(&e))?;
    let current = existing
        .iter()
        .filter_map(|m| m.options.as_ref())
        .find(|o| o.name.as_deref() == Some(index))
        .map(|o| o.expire_after);
    let wanted_secs = ttl.map(|d| d.as_secs());
    match current {
        Some(expire) if expire.map(|d| d.as_secs()) == wanted_secs => return Ok(()),
        Some(_) => match collection.drop_index(index).await {
            Ok(()) => {}
            // Another process running this at the same moment dropped it first.
            Err(e) if command_code(&e) == Some(INDEX_NOT_FOUND) => {}
            Err(e) => return Err(failed(&e)),
        },
        None => {}
    }
    let Some(ttl) = ttl else {
        return Ok(());
    };
    create(
        collection,
        collection_name,
        index,
        doc! { field: 1 },
        IndexOptions::builder().expire_after(ttl).build(),
    )
    .await
}
