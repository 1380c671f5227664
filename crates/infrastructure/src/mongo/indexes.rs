//! Index creation for both collections, idempotent so it can run at every start-up and from a
//! `migrate` subcommand.
//!
//! `createIndexes` with an identical specification is a no-op on the server. The one index
//! whose options change with configuration — the TTL on `user_memory.created_at` — is compared
//! with what exists and dropped and rebuilt when the configured TTL differs (or dropped when
//! expiry is disabled), because MongoDB refuses to redefine an index's options in place.

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

/// Creates every index the adapters rely on; safe to run any number of times, concurrently.
///
/// - `user_profiles`: unique `{user_id: 1}` (`user_profiles_user_id`);
/// - `user_memory`: `{user_id: 1, created_at: -1}` (`user_memory_user_created`), unique
///   `{event_id: 1}` (`user_memory_event_id`, makes appends idempotent), and the TTL index
///   `{created_at: 1}` (`user_memory_ttl`) when `memory_ttl` is `Some`.
///
/// # Errors
/// [`IndexError`] naming the collection and index.
pub async fn ensure_indexes(
    database: &Database,
    memory_ttl: Option<Duration>,
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
    ensure_ttl(&memory, memory_ttl).await
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

async fn ensure_ttl(
    memory: &Collection<Document>,
    memory_ttl: Option<Duration>,
) -> Result<(), IndexError> {
    let failed = |e: &mongodb::error::Error| IndexError {
        collection: MEMORY_COLLECTION,
        index: MEMORY_TTL_INDEX,
        detail: describe(e),
    };
    let existing: Vec<IndexModel> = memory
        .list_indexes()
        .await
        .map_err(|e| failed(&e))?
        .try_collect()
        .await
        .map_err(|e| failed(&e))?;
    let current = existing
        .iter()
        .filter_map(|m| m.options.as_ref())
        .find(|o| o.name.as_deref() == Some(MEMORY_TTL_INDEX))
        .map(|o| o.expire_after);
    let wanted_secs = memory_ttl.map(|d| d.as_secs());
    match current {
        Some(expire) if expire.map(|d| d.as_secs()) == wanted_secs => return Ok(()),
        Some(_) => {
            memory
                .drop_index(MEMORY_TTL_INDEX)
                .await
                .map_err(|e| failed(&e))?;
        }
        None => {}
    }
    let Some(ttl) = memory_ttl else {
        return Ok(());
    };
    create(
        memory,
        MEMORY_COLLECTION,
        MEMORY_TTL_INDEX,
        doc! { "created_at": 1 },
        IndexOptions::builder().expire_after(ttl).build(),
    )
    .await
}
