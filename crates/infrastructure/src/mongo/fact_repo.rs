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
//! `current: true`, so the server itself refuses a second current fact. A document is in one
//! of four states:
//!
//! - *current*: `current: true`;
//! - *pending*: inserted, not settled yet (`current: false`, `superseded_by: null`);
//! - *handed over*: demoted for a pending fact that is not promoted yet (`current: false`,
//!   `superseded_by` = that fact, `handover: true`);
//! - *superseded*: `current: false`, `superseded_by` = the fact that replaced it.
//!
//! A save inserts the fact as pending and settles it: if the current fact is newer, the new
//! one is marked superseded by it; otherwise the current one is handed over (only if it is
//! still current), the new one promoted — which fails on the unique index if another save
//! promoted its fact in between, and then the loop compares again — and the handover flag
//! cleared. Every step is conditional, so racing saves end with the newest fact current and
//! each other one superseded by a newer one.
//!
//! **An interrupted save is invisible.** Readers never show a pending fact, and a handed-over
//! fact still *stands* for its key — is read as current, `superseded_by` empty — while its key
//! has no current fact and the fact it was handed to is still pending; of several such, the
//! newest stands. So a save that dies between any two steps reads as not done (the old fact
//! stands) or as done (the new one is current), never as a key with two current facts, none,
//! or a pending one. [`all`] applies the same rule. (Deleting the pending fact completes the
//! hand-over: deleting a fact never brings back the one it replaced.)
//!
//! **And repaired.** Every save first settles the pending facts of its users left by saves
//! that stopped (or are still running: settling is safe to repeat and to race) and clears the
//! handover flags whose successor is settled or gone. Retrying the interrupted save settles
//! its own fact the same way. (A save interrupted by a version without the handover flag reads
//! as a key without a current fact until that repair.)
//!
//! [`all`]: FactRepository::all

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use async_trait::async_trait;
use futures::TryStreamExt;
use mongodb::bson::{doc, Bson, Document};
use mongodb::{Collection, Database};
use time::OffsetDateTime;
use uuid::Uuid;

use butler_domain::fact::terms::{bm25, query_terms, TERMS_VERSION};
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
        // Superseded facts leave the search index (history keeps their text).
        "terms": if fact.is_current() { fact.search_terms() } else { Vec::new() },
        "terms_version": i64::from(TERMS_VERSION),
        "cues": fact.cues.clone(),
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
        // Facts saved before cues existed have none.
        cues: match doc.get("cues") {
            None => Vec::new(),
            Some(_) => get_strings(doc, "cues")?,
        },
    })
}

/// The fact `id` while it is pending: inserted, neither current nor superseded.
fn pending(id: Uuid) -> Document {
    doc! { "fact_id": uuid_bson(id), "current": false, "superseded_by": Bson::Null }
}

fn newest_first() -> Document {
    doc! { "created_at": -1, "fact_id": -1 }
}

/// Documents a reader may show as current: current ones, and handed-over ones (which stand
/// only while their successor is unsettled, see [`Standing`]).
fn current_or_handed_over(user_id: UserId) -> Document {
    doc! {
        "user_id": user_id.get(),
        "$or": [ { "current": true }, { "handover": true } ],
    }
}

/// Documents a save may have to repair: pending and handed-over ones.
fn unsettled(user_id: UserId) -> Document {
    doc! {
        "user_id": user_id.get(),
        "$or": [
            { "current": false, "superseded_by": Bson::Null },
            { "handover": true },
        ],
    }
}

/// What readers need of one document to tell whether it stands as the current fact of its key.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Standing {
    id: Uuid,
    key: String,
    created_at: OffsetDateTime,
    current: bool,
    /// The successor of a handed-over document.
    handed_to: Option<Uuid>,
}

impl Standing {
    fn of(doc: &Document) -> Result<Self, Fault> {
        let handover = matches!(doc.get("handover"), Some(Bson::Boolean(true)));
        let handed_to = match doc.get("superseded_by") {
            Some(Bson::Binary(_)) if handover => Some(get_uuid(doc, "superseded_by")?),
            _ => None,
        };
        Ok(Self {
            id: get_uuid(doc, "fact_id")?,
            key: get_str(doc, "key")?,
            created_at: get_time(doc, "created_at")?,
            current: matches!(doc.get("current"), Some(Bson::Boolean(true))),
            handed_to,
        })
    }
}

/// Whether a stored fact is pending: neither current nor superseded by a named fact.
fn is_pending(doc: &Document) -> bool {
    !matches!(doc.get("current"), Some(Bson::Boolean(true)))
        && !matches!(doc.get("superseded_by"), Some(Bson::Binary(_)))
}

/// Of `docs` (every current and handed-over document of some keys), the handed-over ones that
/// stand as their key's current fact: the newest one whose successor is among `pending`, in a
/// key without a current document.
fn standing_handovers(docs: &[Standing], pending: &HashSet<Uuid>) -> HashSet<Uuid> {
    let with_current: HashSet<&str> = docs
        .iter()
        .filter(|d| d.current)
        .map(|d| d.key.as_str())
        .collect();
    let mut newest: HashMap<&str, &Standing> = HashMap::new();
    for doc in docs {
        let Some(successor) = doc.handed_to else {
            continue;
        };
        if doc.current || with_current.contains(doc.key.as_str()) || !pending.contains(&successor) {
            continue;
        }
        let slot = newest.entry(doc.key.as_str()).or_insert(doc);
        if (doc.created_at, doc.id) > (slot.created_at, slot.id) {
            *slot = doc;
        }
    }
    newest.values().map(|d| d.id).collect()
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
        self.modify(filter, doc! { "$set": set }).await
    }

    /// `update_one` with any update document.
    async fn modify(&self, filter: Document, update: Document) -> Result<Update, Fault> {
        let call = self.collection.update_one(filter, update);
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
                Some(current) if current.id == fact.id => return self.release(fact).await,
                Some(current) if current.is_newer_than(fact) => {
                    let set = doc! { "superseded_by": uuid_bson(current.id), "terms": [] };
                    if let Update::Matched = self.update(pending(fact.id), set).await? {
                        saved.superseded += 1;
                    }
                    return self.release(fact).await;
                }
                Some(current) => {
                    // Handed over, not yet superseded: readers keep showing it until `fact` is
                    // promoted, so a save that stops here reads as not done.
                    let demote = doc! { "fact_id": uuid_bson(current.id), "current": true };
                    let set =
                        doc! { "current": false, "superseded_by": id.clone(), "handover": true };
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
                Update::Matched | Update::NoMatch => return self.release(fact).await,
                // Another fact of the key became current in between: compare with it.
                Update::Conflict => {}
            }
        }
        Err(Fault::Driver(format!(
            "mongodb {FACTS_COLLECTION}: the current fact of a key kept changing \
             ({SETTLE_ATTEMPTS} attempts); retry the save (retryable)"
        )))
    }

    /// Clears the handover flag of the facts handed to `fact`, now that it is settled (a
    /// flag left behind is harmless: a settled successor makes it stand for nothing).
    async fn release(&self, fact: &MemoryFact) -> Result<(), Fault> {
        bounded(
            FACTS_COLLECTION,
            self.timeout,
            self.collection.update_many(
                doc! {
                    "user_id": fact.user_id.get(),
                    "handover": true,
                    "superseded_by": uuid_bson(fact.id),
                },
                doc! { "$unset": { "handover": "" }, "$set": { "terms": [] } },
            ),
        )
        .await
        .map(|_| ())
    }

    /// Settles what saves of `user_id` that stopped part-way left behind (see the module docs):
    /// its pending facts, oldest first, then the handover flags that stand for nothing.
    async fn repair(&self, user_id: UserId, saved: &mut SavedFacts) -> Result<(), Fault> {
        let docs = self
            .find_documents(
                unsettled(user_id),
                doc! { "created_at": 1, "fact_id": 1 },
                None,
            )
            .await?;
        if docs.is_empty() {
            return Ok(());
        }
        for doc in docs.iter().filter(|d| is_pending(d)) {
            self.settle(&decode(doc)?, saved).await?;
        }
        // Settling released the facts handed to those; what remains names a fact settled or
        // deleted before (a save stopped before its release).
        let pending: HashSet<Uuid> = self
            .find_documents(unsettled(user_id), doc! { "fact_id": 1 }, None)
            .await?
            .iter()
            .filter(|d| is_pending(d))
            .map(|d| get_uuid(d, "fact_id"))
            .collect::<Result<_, _>>()?;
        let mut stale: Vec<Bson> = Vec::new();
        for doc in &docs {
            if let Some(successor) = Standing::of(doc)?.handed_to {
                if !pending.contains(&successor) {
                    stale.push(uuid_bson(successor));
                }
            }
        }
        if !stale.is_empty() {
            bounded(
                FACTS_COLLECTION,
                self.timeout,
                self.collection.update_many(
                    doc! {
                        "user_id": user_id.get(),
                        "handover": true,
                        "superseded_by": { "$in": stale },
                    },
                    doc! { "$unset": { "handover": "" } },
                ),
            )
            .await?;
        }
        Ok(())
    }

    /// The stored documents of `ids`, by id.
    async fn ids_of(&self, ids: &[Uuid]) -> Result<HashMap<Uuid, Document>, Fault> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let ids: Vec<Bson> = ids.iter().copied().map(uuid_bson).collect();
        let docs = self
            .find_documents(
                doc! { "fact_id": { "$in": ids } },
                doc! { "fact_id": 1 },
                None,
            )
            .await?;
        docs.into_iter()
            .map(|d| Ok((get_uuid(&d, "fact_id")?, d)))
            .collect()
    }

    /// Of `docs` (current and handed-over documents of `user_id`, in the reader's order), the
    /// facts that stand as current, with how many handed-over ones were left out.
    async fn standing(
        &self,
        user_id: UserId,
        docs: Vec<Document>,
    ) -> Result<(Vec<Document>, usize), Fault> {
        let handed: Vec<Standing> = docs
            .iter()
            .map(Standing::of)
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .filter(|d| d.handed_to.is_some())
            .collect();
        if handed.is_empty() {
            // The usual case: nothing is being handed over.
            return Ok((docs, 0));
        }
        // Every current and handed-over document of those keys, not only those of this page.
        let keys: Vec<&str> = handed.iter().map(|d| d.key.as_str()).collect();
        let mut filter = current_or_handed_over(user_id);
        filter.insert("key", doc! { "$in": keys });
        let related: Vec<Standing> = self
            .find_documents(filter, newest_first(), None)
            .await?
            .iter()
            .map(Standing::of)
            .collect::<Result<_, _>>()?;
        let successors: Vec<Uuid> = related.iter().filter_map(|d| d.handed_to).collect();
        let pending: HashSet<Uuid> = self
            .ids_of(&successors)
            .await?
            .into_iter()
            .filter(|(_, d)| is_pending(d))
            .map(|(id, _)| id)
            .collect();
        let stands = standing_handovers(&related, &pending);
        let before = docs.len();
        let kept: Vec<Document> = docs
            .into_iter()
            .filter(|d| {
                !matches!(d.get("handover"), Some(Bson::Boolean(true)))
                    || get_uuid(d, "fact_id").is_ok_and(|id| stands.contains(&id))
            })
            .collect();
        let dropped = before - kept.len();
        Ok((kept, dropped))
    }

    /// The user's facts that stand as current among those `extra` selects, in `sort` order, at
    /// most `limit`.
    async fn standing_facts(
        &self,
        user_id: UserId,
        extra: Document,
        limit: usize,
    ) -> Result<Vec<Document>, Fault> {
        let mut fetch = limit;
        loop {
            let mut filter = current_or_handed_over(user_id);
            filter.extend(extra.clone());
            let docs = self
                .find_documents(filter, newest_first(), Some(fetch))
                .await?;
            let complete = docs.len() < fetch;
            let (mut kept, dropped) = self.standing(user_id, docs).await?;
            if dropped == 0 || complete || kept.len() >= limit {
                kept.truncate(limit);
                return Ok(kept);
            }
            // Handed-over documents that do not stand took places: read further.
            fetch += dropped;
        }
    }
}

/// A document read as a current fact: a standing handed-over one has no successor yet.
fn decode_standing(doc: &Document) -> Result<MemoryFact, Fault> {
    let mut fact = decode(doc)?;
    if matches!(doc.get("handover"), Some(Bson::Boolean(true))) {
        fact.superseded_by = None;
    }
    Ok(fact)
}

#[async_trait]
impl FactRepository for MongoFactRepository {
    async fn save(&self, facts: &[MemoryFact]) -> Result<SavedFacts, FactStoreError> {
        for fact in facts {
            fact.validate()?;
        }
        let mut saved = SavedFacts::default();
        let mut users: Vec<UserId> = facts.iter().map(|f| f.user_id).collect();
        users.sort_unstable();
        users.dedup();
        for user_id in users {
            self.repair(user_id, &mut saved)
                .await
                .map_err(|f| to_port("save", f))?;
        }
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
        let op = |f| to_port("current", f);
        if limit == 0 {
            return Ok(Vec::new());
        }
        self.standing_facts(user_id, Document::new(), limit)
            .await
            .map_err(op)?
            .iter()
            .map(decode_standing)
            .collect::<Result<_, _>>()
            .map_err(op)
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
            .standing_facts(
                user_id,
                doc! { "terms": { "$in": terms.clone() } },
                MAX_SEARCH_CANDIDATES,
            )
            .await
            .map_err(op)?;
        // Counts a handed-over fact that no longer stands while its save finishes: the
        // ranking's document count is off by one for that moment, nothing more.
        let total = bounded(
            FACTS_COLLECTION,
            self.timeout,
            self.collection
                .count_documents(current_or_handed_over(user_id)),
        )
        .await
        .map_err(op)?;
        let candidates: Vec<(MemoryFact, Vec<String>)> = docs
            .iter()
            .map(|d| Ok((decode_standing(d)?, get_strings(d, "terms")?)))
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
        let op = |f| to_port("all", f);
        let docs = self
            .find_documents(
                doc! { "user_id": user_id.get() },
                doc! { "created_at": 1, "fact_id": 1 },
                None,
            )
            .await
            .map_err(op)?;
        // The readers' rule on the whole set: pending facts are not stored facts yet, and a
        // handed-over fact reads as current while it stands.
        let standings: Vec<Standing> = docs
            .iter()
            .map(Standing::of)
            .collect::<Result<_, _>>()
            .map_err(op)?;
        let pending: HashSet<Uuid> = docs
            .iter()
            .zip(&standings)
            .filter(|(d, _)| is_pending(d))
            .map(|(_, s)| s.id)
            .collect();
        let stands = standing_handovers(&standings, &pending);
        let mut facts = Vec::with_capacity(docs.len());
        for (doc, standing) in docs.iter().zip(&standings) {
            if pending.contains(&standing.id) {
                continue;
            }
            if stands.contains(&standing.id) {
                facts.push(decode_standing(doc).map_err(op)?);
            } else {
                facts.push(decode(doc).map_err(op)?);
            }
        }
        Ok(facts)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(key: &str, ms: i64, current: bool, handed_to: Option<Uuid>) -> Standing {
        Standing {
            id: Uuid::new_v4(),
            key: key.to_owned(),
            created_at: OffsetDateTime::UNIX_EPOCH + time::Duration::milliseconds(ms),
            current,
            handed_to,
        }
    }

    #[test]
    fn a_handed_over_fact_stands_only_while_its_successor_is_pending_and_nothing_is_current() {
        let successor = Uuid::new_v4();
        let handed = doc("dog", 0, false, Some(successor));
        let pending = HashSet::from([successor]);
        let docs = [handed.clone()];
        assert_eq!(
            standing_handovers(&docs, &pending),
            HashSet::from([handed.id])
        );
        // The successor was settled (or deleted): the hand-over happened.
        assert!(standing_handovers(&docs, &HashSet::new()).is_empty());
        // A current fact of the key wins.
        let docs = [handed, doc("dog", 5, true, None)];
        assert!(standing_handovers(&docs, &pending).is_empty());
    }

    #[test]
    fn of_several_handed_over_facts_of_a_key_only_the_newest_stands() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let older = doc("dog", 0, false, Some(a));
        let newer = doc("dog", 3, false, Some(b));
        let other_key = doc("cat", 1, false, Some(a));
        let docs = [older, newer.clone(), other_key.clone()];
        assert_eq!(
            standing_handovers(&docs, &HashSet::from([a, b])),
            HashSet::from([newer.id, other_key.id])
        );
    }
}
