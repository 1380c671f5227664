//! [`FactRepository`] on SQLite: one row per fact in `user_facts`, and the FTS5 table
//! `user_facts_fts` over each fact's search terms, kept in step by triggers.
//!
//! Search: the domain reduces facts (text, cues, key) and queries to lemmas
//! ([`butler_domain::fact::terms`]); the FTS5 `unicode61` tokenizer indexes the stored terms
//! and each query is an `OR` of its quoted terms, ranked by FTS5's `bm25()`. Only current facts
//! are in the index (the triggers drop a fact when it is superseded), so history never weighs
//! on the ranking. BM25's document frequencies are the index's, all users together; that only
//! weighs terms, while the `user_id` filter decides what is found. Facts whose terms were
//! computed by older rules are re-indexed when the database is opened
//! ([`reindex_fact_terms`]).
//!
//! Supersede by key runs inside one write of the writer thread (a savepoint of its group's
//! `IMMEDIATE` transaction), so it is atomic, and
//! the partial unique index on `(user_id, key) WHERE superseded_by IS NULL` makes a second
//! current fact impossible even for a writer that bypassed this code.
//!
//! Expiry: SQLite has no TTL, and events stored here do not expire either; facts follow the
//! events, and [`FactRepository::delete_older_than`] is there for a retention job to call.

use std::sync::Arc;

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};
use time::OffsetDateTime;
use uuid::Uuid;

use butler_domain::fact::terms::{query_terms, TERMS_VERSION};
use butler_domain::fact::FactKey;
use butler_domain::ports::{FactRepository, FactStoreError, SavedFacts};
use butler_domain::{FactMatch, MemoryFact, UserId};

use super::{
    from_json, millis, sql_limit, time_from, to_json, uuid_bytes, uuid_from, Access, Fault, Pool,
};

const TABLE: &str = "user_facts";

const COLUMNS: &str =
    "fact_id, user_id, key, kind, text, created_at, source_events, superseded_by, cues";

/// Facts in the `user_facts` table.
#[derive(Debug, Clone)]
pub struct SqliteFactRepository {
    pool: Arc<Pool>,
}

impl SqliteFactRepository {
    pub(super) fn new(pool: Arc<Pool>) -> Self {
        Self { pool }
    }

    async fn run<T, F>(
        &self,
        operation: &'static str,
        access: Access,
        f: F,
    ) -> Result<T, FactStoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, Fault> + Send + 'static,
    {
        self.pool.run_for(TABLE, operation, access, f).await
    }
}

/// A fact to insert, with what is derived from it computed before the blocking call.
struct NewRow {
    fact: MemoryFact,
    terms: String,
    sources: String,
    cues: String,
}

fn decode(row: &Row<'_>) -> Result<MemoryFact, Fault> {
    let corrupt = |what: &str| Fault::Corrupt(format!("user_facts.{what}"));
    let key: String = row.get("key")?;
    let kind: String = row.get("kind")?;
    let sources = from_json(
        "user_facts.source_events",
        &row.get::<_, String>("source_events")?,
    )?
    .iter()
    .map(|s| Uuid::parse_str(s).map_err(|_| corrupt("source_events holds a non-UUID")))
    .collect::<Result<_, _>>()?;
    let superseded_by = row
        .get::<_, Option<Vec<u8>>>("superseded_by")?
        .map(|b| uuid_from("user_facts.superseded_by", &b))
        .transpose()?;
    Ok(MemoryFact {
        id: uuid_from("user_facts.fact_id", &row.get::<_, Vec<u8>>("fact_id")?)?,
        user_id: UserId::new(row.get("user_id")?),
        key: FactKey::exact(&key).map_err(|_| corrupt("key is not a normalised key"))?,
        kind: kind
            .parse()
            .map_err(|_| corrupt("kind is not a known code"))?,
        text: row.get("text")?,
        created_at: time_from("user_facts.created_at", row.get("created_at")?)?,
        source_events: sources,
        superseded_by,
        cues: from_json("user_facts.cues", &row.get::<_, String>("cues")?)?,
    })
}

/// Runs a query whose first columns are [`COLUMNS`] and decodes each row with `extra`, which
/// reads any columns after them.
fn query_facts<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    extra: impl Fn(&Row<'_>, MemoryFact) -> Result<T, Fault>,
) -> Result<Vec<T>, Fault> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(params)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(extra(row, decode(row)?)?);
    }
    Ok(out)
}

fn plain(_: &Row<'_>, fact: MemoryFact) -> Result<MemoryFact, Fault> {
    Ok(fact)
}

/// An FTS5 query matching any of `terms`: each quoted, so that no term is read as syntax.
fn match_any(terms: &[String]) -> String {
    terms
        .iter()
        .map(|t| format!("\"{}\"", t.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(" OR ")
}

/// Recomputes the terms of facts saved under older term rules (the update trigger re-indexes
/// the current ones). Runs when the database is opened, after the migrations; a no-op once
/// every fact is at [`TERMS_VERSION`].
pub(super) fn reindex_fact_terms(conn: &mut Connection) -> Result<(), rusqlite::Error> {
    // Runs at opening, outside the writer thread: an IMMEDIATE transaction of its own, so it
    // waits for another process's write (busy_timeout) instead of failing the upgrade from
    // reading to writing at once.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let stale: Vec<(i64, Result<MemoryFact, Fault>)> = {
        let mut stmt = tx.prepare(&format!(
            "SELECT id, {COLUMNS} FROM user_facts WHERE terms_version < ?1"
        ))?;
        let mut rows = stmt.query([TERMS_VERSION])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push((row.get("id")?, decode(row)));
        }
        out
    };
    for (id, fact) in stale {
        // A row that no longer decodes keeps its terms; reading it reports the corruption.
        let Ok(fact) = fact else { continue };
        tx.prepare_cached("UPDATE user_facts SET terms = ?1, terms_version = ?2 WHERE id = ?3")?
            .execute(params![fact.search_terms().join(" "), TERMS_VERSION, id])?;
    }
    tx.commit()
}

/// Inserts one fact, superseding by key (see the port's contract); the caller holds the
/// write transaction.
fn insert(conn: &Connection, row: &NewRow, saved: &mut SavedFacts) -> Result<(), Fault> {
    let fact = &row.fact;
    let id = uuid_bytes(fact.id);
    let known = conn
        .prepare_cached("SELECT 1 FROM user_facts WHERE fact_id = ?1")?
        .exists([id])?;
    if known {
        return Ok(());
    }
    let mut superseded_by = fact.superseded_by;
    if superseded_by.is_none() {
        let current = conn
            .prepare_cached(
                "SELECT fact_id, created_at FROM user_facts \
                 WHERE user_id = ?1 AND key = ?2 AND superseded_by IS NULL",
            )?
            .query_row(params![fact.user_id.get(), fact.key.as_str()], |r| {
                Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, i64>(1)?))
            })
            .optional()?;
        if let Some((current_id, current_at)) = current {
            let current_id = uuid_from("user_facts.fact_id", &current_id)?;
            if (current_at, current_id) > (millis(fact.created_at), fact.id) {
                superseded_by = Some(current_id);
            } else {
                conn.prepare_cached("UPDATE user_facts SET superseded_by = ?1 WHERE fact_id = ?2")?
                    .execute([id, uuid_bytes(current_id)])?;
            }
            saved.superseded += 1;
        }
    }
    conn.prepare_cached(&format!(
        "INSERT INTO user_facts ({COLUMNS}, terms, terms_version) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
    ))?
    .execute(params![
        id,
        fact.user_id.get(),
        fact.key.as_str(),
        fact.kind.code(),
        fact.text,
        millis(fact.created_at),
        row.sources,
        superseded_by.map(uuid_bytes),
        row.cues,
        row.terms,
        TERMS_VERSION,
    ])?;
    saved.inserted += 1;
    Ok(())
}

#[async_trait]
impl FactRepository for SqliteFactRepository {
    async fn save(&self, facts: &[MemoryFact]) -> Result<SavedFacts, FactStoreError> {
        for fact in facts {
            fact.validate()?;
        }
        if facts.is_empty() {
            return Ok(SavedFacts::default());
        }
        let rows: Vec<NewRow> = facts
            .iter()
            .map(|fact| NewRow {
                fact: fact.clone(),
                terms: fact.search_terms().join(" "),
                cues: to_json(&fact.cues),
                sources: to_json(
                    &fact
                        .source_events
                        .iter()
                        .map(Uuid::to_string)
                        .collect::<Vec<_>>(),
                ),
            })
            .collect();
        self.run("save", Access::Write, move |conn| {
            let tx = conn.savepoint()?;
            let mut saved = SavedFacts::default();
            for row in &rows {
                insert(&tx, row, &mut saved)?;
            }
            tx.commit()?;
            Ok(saved)
        })
        .await
    }

    async fn current(
        &self,
        user_id: UserId,
        limit: usize,
    ) -> Result<Vec<MemoryFact>, FactStoreError> {
        self.run("current", Access::Read, move |conn| {
            query_facts(
                conn,
                &format!(
                    "SELECT {COLUMNS} FROM user_facts \
                     WHERE user_id = ?1 AND superseded_by IS NULL \
                     ORDER BY created_at DESC, fact_id DESC LIMIT ?2"
                ),
                params![user_id.get(), sql_limit(limit)],
                plain,
            )
        })
        .await
    }

    async fn search(
        &self,
        user_id: UserId,
        query: &str,
        limit: usize,
    ) -> Result<Vec<FactMatch>, FactStoreError> {
        let terms = query_terms(query);
        if terms.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let expression = match_any(&terms);
        self.run("search", Access::Read, move |conn| {
            // bm25() is negative, more negative is better: the score is its negation.
            query_facts(
                conn,
                "SELECT f.fact_id, f.user_id, f.key, f.kind, f.text, f.created_at, \
                        f.source_events, f.superseded_by, f.cues, \
                        -bm25(user_facts_fts) AS score \
                 FROM user_facts_fts JOIN user_facts AS f ON f.id = user_facts_fts.rowid \
                 WHERE user_facts_fts MATCH ?1 AND f.user_id = ?2 AND f.superseded_by IS NULL \
                 ORDER BY score DESC, f.created_at DESC, f.fact_id DESC LIMIT ?3",
                params![expression, user_id.get(), sql_limit(limit)],
                |row, fact| {
                    Ok(FactMatch {
                        fact,
                        score: row.get("score")?,
                    })
                },
            )
        })
        .await
    }

    async fn all(&self, user_id: UserId) -> Result<Vec<MemoryFact>, FactStoreError> {
        self.run("all", Access::Read, move |conn| {
            query_facts(
                conn,
                &format!(
                    "SELECT {COLUMNS} FROM user_facts WHERE user_id = ?1 \
                     ORDER BY created_at, fact_id"
                ),
                [user_id.get()],
                plain,
            )
        })
        .await
    }

    async fn delete(&self, user_id: UserId, fact_id: Uuid) -> Result<bool, FactStoreError> {
        self.run("delete", Access::Write, move |conn| {
            let n = conn
                .prepare_cached("DELETE FROM user_facts WHERE fact_id = ?1 AND user_id = ?2")?
                .execute(params![uuid_bytes(fact_id), user_id.get()])?;
            Ok(n > 0)
        })
        .await
    }

    async fn delete_all(&self, user_id: UserId) -> Result<u64, FactStoreError> {
        self.run("delete_all", Access::Write, move |conn| {
            let n = conn
                .prepare_cached("DELETE FROM user_facts WHERE user_id = ?1")?
                .execute([user_id.get()])?;
            Ok(n as u64)
        })
        .await
    }

    async fn delete_older_than(&self, cutoff: OffsetDateTime) -> Result<u64, FactStoreError> {
        self.run("delete_older_than", Access::Write, move |conn| {
            let n = conn
                .prepare_cached("DELETE FROM user_facts WHERE created_at < ?1")?
                .execute([millis(cutoff)])?;
            Ok(n as u64)
        })
        .await
    }
}
