//! [`FactRepository`] on MongoDB: one document per fact in `user_facts`.
//!
//! Search: MongoDB's text index would stem Russian itself, but the test server (SecantusDB)
//! has no text index, and a deployment should not match differently from its tests. So each
//! document stores its search terms, computed by the domain ([`butler_domain::fact::terms`]),
//! in a `terms` array under a multikey index: a search fetches the user's current facts
//! sharing a term with the query (`terms: {$in: …}`, at most [`MAX_SEARCH_CANDIDATES`],
//! newest first) and ranks them with the domain's BM25. The same stems as SQLite's, so both
//! backends find the same facts.
//!
//! Supersede by key without transactions (a standalone server has none): a document's
//! `current` flag is covered by a partial unique index on `{user_id, key}` where
//! `current: true`, so the server itself refuses a second current fact. A save inserts the
//! fact as *pending* (`current: false`, `superseded_by: null`) and then settles it: if the
//! current fact is newer, the new one is marked superseded by it; otherwise the current one is
//! demoted (`current: false`, `superseded_by` = the new id, only if it is still current) and
//! the new one promoted, which fails on the unique index if another save promoted its fact in
//! between, and then the loop compares again. Every step is conditional, so racing saves end
//! with the newest fact current and each other one superseded by a newer one. A save that
//! dies between demote and promote leaves its key without a current fact and its fact
//! pending until the save is retried (it reported an error, so the caller retries); a pending
//! fact is listed by `all` as if current.

use std::time::Duration;

use async_trait::async_trait;
use futures::TryStreamExt;
use mongodb::bson::{doc, Bson, Document};
use mongodb::{Collection, Database};
use time::OffsetDateTime;
use uuid::Uuid;

use butler_domain::fact::terms::{bm25, query_terms};
use butler_domain::fact::FactKey;
use butler_domain::ports::{FactRepository, FactStoreError, SavedFacts};
use butler_domain::{FactMatch, MemoryFact, UserId};

use super::{
    bounded, date_bson, get_int, get_str, get_strings, get_time, get_uuid, is_duplicate_key,
    limit_i64, uuid_bson, Fault, FACTS_COLLECTION,
};

/// Most facts one search ranks: the newest current facts sharing a term with the query.
pub const MAX_SEARCH_CANDIDATES: usize = 1_000;

/// How often one save re-reads the current fact after losing a race before it gives up as
/// unavailable; each lost round means another save of the key completed a step.
const SETTLE_ATTEMPTS: usize = 32;

/// Facts in the `user_facts` collection.
#[derive(Debug, Clone)]
pub struct MongoFactRepository {
    collection: Collection<Document>,
    timeout: Duration,
}

fn to_port(operation: &'static str, fault: Fault) -> FactStoreError {
    match fault {
        Fault::Corrupt(detail) => FactStoreError::Corrupt { detail },
        Fault::Driver(detail) => {
            tracing::warn!(
                operation,
                collection = FACTS_COLLECTION,
                %detail,
                "fact storage failed"
            );
            FactStoreError::Unavailable { operation, detail }
        }
    }
}

/// The document of `fact`; `current` is false until the save settles it.
fn document(fact: &MemoryFact) -> Document {
    doc! {
        "fact_id": uuid_bson(fact.id),
        "user_id": fact.user_id.get(),
        "key": fact.key.as_str(),
        "kind": fact.kind.code(),
        "text": fact.text.as_str(),
        "terms": fact.search_terms(),
        "created_at": date_bson(fact.created_at),
        "source_events": fact.source_events.iter().copied().map(uuid_bson).collect::<Vec<_>>(),
        "superseded_by": fact.superseded_by.map_or(Bson::Null, uuid_bson),
        "current": false,
    }
}

fn decode(doc: &Document) -> Result<MemoryFact, Fault> {
    let corrupt = |what: &str| Fault::Corrupt(format!("user_facts.{what}"));
    let sources =
        doc.get_array("source_events")
            .map_err(|_| corrupt("source_events is missing or not an array"))?
            .iter()
            .map(|b| match b {
                Bson::Binary(b) => Uuid::from_slice(&b.bytes)
                    .map_err(|_| corrupt("source_events holds a non-UUID")),
                _ => Err(corrupt("source_events holds a non-binary")),
            })
            .collect::<Result<_, _>>()?;
    let superseded_by = match doc.get("superseded_by") {
        None | Some(Bson::Null) => None,
        Some(_) => Some(get_uuid(doc, "superseded_by")?),
    };
    Ok(MemoryFact {
        id: get_uuid(doc, "fact_id")?,
        user_id: UserId::new(get_int(doc, "user_id")?),
        key: FactKey::exact(&get_str(doc, "key")?)
            .map_err(|_| corrupt("key is not a normalised key"))?,
        kind: get_str(doc, "kind")?
            .parse()
            .map_err(|_| corrupt("kind is not a known code"))?,
        text: get_str(doc, "text")?,
        created_at: get_time(doc, "created_at")?,
        source_events: sources,
        superseded_by,
    })
}

/// The fact `id` while it is pending: inserted, neither current nor superseded.
fn pending(id: Uuid) -> Document {
    doc! { "fact_id": uuid_bson(id), "current": false, "superseded_by": Bson::Null }
}

fn newest_first() -> Document {
    doc! { "created_at": -1, "fact_id": -1 }
}

/// What one conditional update did.
enum Update {
    Matched,
    NoMatch,
    /// The partial unique index refused a second current fact of the key.
    Conflict,
}

impl MongoFactRepository {
    pub(super) fn new(database: &Database, timeout: Duration) -> Self {
        Self {
            collection: database.collection(FACTS_COLLECTION),
            timeout,
        }
    }

    async fn find(
        &self,
        filter: Document,
        sort: Document,
        limit: Option<usize>,
    ) -> Result<Vec<MemoryFact>, Fault> {
        self.find_documents(filter, sort, limit)
            .await?
            .iter()
            .map(decode)
            .collect()
    }

    async fn find_documents(
        &self,
        filter: Document,
        sort: Document,
        limit: Option<usize>,
    ) -> Result<Vec<Document>, Fault> {
        if limit == Some(0) {
            return Ok(Vec::new());
        }
        bounded(FACTS_COLLECTION, self.timeout, async {
            let mut find = self.collection.find(filter).sort(sort);
            if let Some(limit) = limit {
                find = find.limit(limit_i64(limit));
            }
            find.await?.try_collect().await
        })
        .await
    }

    async fn update(&self, filter: Document, set: Document) -> Result<Update, Fault> {
        let call = self.collection.update_one(filter, doc! { "$set": set });
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(r)) if r.matched_count > 0 => Ok(Update::Matched),
            Ok(Ok(_)) => Ok(Update::NoMatch),
            Ok(Err(e)) if is_duplicate_key(&e) => Ok(Update::Conflict),
            Ok(Err(e)) => Err(Fault::from_driver(FACTS_COLLECTION, &e)),
            Err(_) => Err(Fault::timed_out(FACTS_COLLECTION, self.timeout)),
        }
    }

    async fn delete_where(&self, filter: Document) -> Result<u64, Fault> {
        let result = bounded(
            FACTS_COLLECTION,
            self.timeout,
            self.collection.delete_many(filter),
        )
        .await?;
        Ok(result.deleted_count)
    }

    /// Inserts `fact` (pending, or as history) and settles it; a fact stored before is left
    /// alone unless a save of it stopped while it was pending.
    async fn save_one(&self, fact: &MemoryFact, saved: &mut SavedFacts) -> Result<(), Fault> {
        let insert = self.collection.insert_one(document(fact));
        match tokio::time::timeout(self.timeout, insert).await {
            Ok(Ok(_)) => saved.inserted += 1,
            Ok(Err(e)) if is_duplicate_key(&e) => {
                let still_pending = bounded(
                    FACTS_COLLECTION,
                    self.timeout,
                    self.collection.find_one(pending(fact.id)),
                )
                .await?
                .is_some();
                if !still_pending {
                    return Ok(());
                }
            }
            Ok(Err(e)) => return Err(Fault::from_driver(FACTS_COLLECTION, &e)),
            Err(_) => return Err(Fault::timed_out(FACTS_COLLECTION, self.timeout)),
        }
        if fact.superseded_by.is_some() {
            return Ok(());
        }
        self.settle(fact, saved).await
    }

    /// Makes the pending `fact` current or superseded (see the module docs).
    async fn settle(&self, fact: &MemoryFact, saved: &mut SavedFacts) -> Result<(), Fault> {
        let id = uuid_bson(fact.id);
        for _ in 0..SETTLE_ATTEMPTS {
            let current = bounded(
                FACTS_COLLECTION,
                self.timeout,
                self.collection.find_one(doc! {
                    "user_id": fact.user_id.get(),
                    "key": fact.key.as_str(),
                    "current": true,
                }),
            )
            .await?
            .map(|doc| decode(&doc))
            .transpose()?;
            match current {
                Some(current) if current.id == fact.id => return Ok(()),
                Some(current) if current.is_newer_than(fact) => {
                    let set = doc! { "superseded_by": uuid_bson(current.id) };
                    if let Update::Matched = self.update(pending(fact.id), set).await? {
                        saved.superseded += 1;
                    }
                    return Ok(());
                }
                Some(current) => {
                    let demote = doc! { "fact_id": uuid_bson(current.id), "current": true };
                    let set = doc! { "current": false, "superseded_by": id.clone() };
                    match self.update(demote, set).await? {
                        Update::Matched => saved.superseded += 1,
                        // It stopped being current meanwhile: look again.
                        Update::NoMatch | Update::Conflict => continue,
                    }
                }
                None => {}
            }
            match self
                .update(pending(fact.id), doc! { "current": true })
                .await?
            {
                // NoMatch: a racing save of this very fact settled it.
                Update::Matched | Update::NoMatch => return Ok(()),
                // Another fact of the key became current in between: compare with it.
                Update::Conflict => {}
            }
        }
        Err(Fault::Driver(format!(
            "mongodb {FACTS_COLLECTION}: the current fact of a key kept changing \
             ({SETTLE_ATTEMPTS} attempts); retry the save (retryable)"
        )))
    }
}

#[async_trait]
impl FactRepository for MongoFactRepository {
    async fn save(&self, facts: &[MemoryFact]) -> Result<SavedFacts, FactStoreError> {
        for fact in facts {
            fact.validate()?;
        }
        let mut saved = SavedFacts::default();
        for fact in facts {
            self.save_one(fact, &mut saved)
                .await
                .map_err(|f| to_port("save", f))?;
        }
        Ok(saved)
    }

    async fn current(
        &self,
        user_id: UserId,
        limit: usize,
    ) -> Result<Vec<MemoryFact>, FactStoreError> {
        self.find(
            doc! { "user_id": user_id.get(), "current": true },
            newest_first(),
            Some(limit),
        )
        .await
        .map_err(|f| to_port("current", f))
    }

    async fn search(
        &self,
        user_id: UserId,
        query: &str,
        limit: usize,
    ) -> Result<Vec<FactMatch>, FactStoreError> {
        let op = |f| to_port("search", f);
        let terms = query_terms(query);
        if terms.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let docs = self
            .find_documents(
                doc! { "user_id": user_id.get(), "current": true, "terms": { "$in": terms.clone() } },
                newest_first(),
                Some(MAX_SEARCH_CANDIDATES),
            )
            .await
            .map_err(op)?;
        let total = bounded(
            FACTS_COLLECTION,
            self.timeout,
            self.collection
                .count_documents(doc! { "user_id": user_id.get(), "current": true }),
        )
        .await
        .map_err(op)?;
        let candidates: Vec<(MemoryFact, Vec<String>)> = docs
            .iter()
            .map(|d| Ok((decode(d)?, get_strings(d, "terms")?)))
            .collect::<Result<_, Fault>>()
            .map_err(op)?;
        let refs: Vec<&[String]> = candidates.iter().map(|(_, t)| t.as_slice()).collect();
        let scores = bm25(&terms, &refs, total);
        // Candidates come newest first and the sort is stable: ties stay newest first.
        let mut found: Vec<FactMatch> = candidates
            .into_iter()
            .zip(scores)
            .map(|((fact, _), score)| FactMatch { fact, score })
            .filter(|m| m.score > 0.0)
            .collect();
        found.sort_by(|a, b| b.score.total_cmp(&a.score));
        found.truncate(limit);
        Ok(found)
    }

    async fn all(&self, user_id: UserId) -> Result<Vec<MemoryFact>, FactStoreError> {
        self.find(
            doc! { "user_id": user_id.get() },
            doc! { "created_at": 1, "fact_id": 1 },
            None,
        )
        .await
        .map_err(|f| to_port("all", f))
    }

    async fn delete(&self, user_id: UserId, fact_id: Uuid) -> Result<bool, FactStoreError> {
        self.delete_where(doc! { "user_id": user_id.get(), "fact_id": uuid_bson(fact_id) })
            .await
            .map(|n| n > 0)
            .map_err(|f| to_port("delete", f))
    }

    async fn delete_all(&self, user_id: UserId) -> Result<u64, FactStoreError> {
        self.delete_where(doc! { "user_id": user_id.get() })
            .await
            .map_err(|f| to_port("delete_all", f))
    }

    async fn delete_older_than(&self, cutoff: OffsetDateTime) -> Result<u64, FactStoreError> {
        self.delete_where(doc! { "created_at": { "$lt": date_bson(cutoff) } })
            .await
            .map_err(|f| to_port("delete_older_than", f))
    }
}
