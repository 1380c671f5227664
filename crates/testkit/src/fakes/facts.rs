//! An in-memory fact store: supersede by key under one lock, search by the domain's terms and
//! BM25, so application tests see the same matches as the real backends.

use std::sync::Mutex;

use async_trait::async_trait;
use butler_domain::fact::terms::{bm25, query_terms};
use butler_domain::ports::{FactRepository, FactStoreError, SavedFacts};
use butler_domain::{FactMatch, MemoryFact, UserId};
use time::OffsetDateTime;
use uuid::Uuid;

use super::Outage;

/// Facts in a list, in save order.
#[derive(Debug, Default)]
pub struct InMemoryFacts {
    facts: Mutex<Vec<MemoryFact>>,
    /// While down, every operation fails with `Unavailable`.
    pub outage: Outage,
}

impl InMemoryFacts {
    fn check(&self, operation: &'static str) -> Result<(), FactStoreError> {
        if self.outage.is_down() {
            return Err(FactStoreError::Unavailable {
                operation,
                detail: "fake outage".to_owned(),
            });
        }
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<MemoryFact>> {
        self.facts.lock().expect("facts mutex")
    }
}

/// Newest first by `(created_at, id)`.
fn newest_first(a: &MemoryFact, b: &MemoryFact) -> std::cmp::Ordering {
    (b.created_at, b.id).cmp(&(a.created_at, a.id))
}

#[async_trait]
impl FactRepository for InMemoryFacts {
    async fn save(&self, facts: &[MemoryFact]) -> Result<SavedFacts, FactStoreError> {
        self.check("save")?;
        for fact in facts {
            fact.validate()?;
        }
        let mut stored = self.lock();
        let mut saved = SavedFacts::default();
        for fact in facts {
            if stored.iter().any(|f| f.id == fact.id) {
                continue;
            }
            let mut new = fact.clone();
            saved.inserted += 1;
            if new.is_current() {
                let current = stored
                    .iter_mut()
                    .find(|f| f.user_id == new.user_id && f.key == new.key && f.is_current());
                if let Some(current) = current {
                    if new.is_newer_than(current) {
                        current.superseded_by = Some(new.id);
                    } else {
                        new.superseded_by = Some(current.id);
                    }
                    saved.superseded += 1;
                }
            }
            stored.push(new);
        }
        Ok(saved)
    }

    async fn current(
        &self,
        user_id: UserId,
        limit: usize,
    ) -> Result<Vec<MemoryFact>, FactStoreError> {
        self.check("current")?;
        let mut current: Vec<MemoryFact> = self
            .lock()
            .iter()
            .filter(|f| f.user_id == user_id && f.is_current())
            .cloned()
            .collect();
        current.sort_by(newest_first);
        current.truncate(limit);
        Ok(current)
    }

    async fn search(
        &self,
        user_id: UserId,
        query: &str,
        limit: usize,
    ) -> Result<Vec<FactMatch>, FactStoreError> {
        self.check("search")?;
        let query = query_terms(query);
        if query.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let current: Vec<MemoryFact> = self
            .lock()
            .iter()
            .filter(|f| f.user_id == user_id && f.is_current())
            .cloned()
            .collect();
        let terms: Vec<Vec<String>> = current.iter().map(MemoryFact::search_terms).collect();
        let refs: Vec<&[String]> = terms.iter().map(Vec::as_slice).collect();
        let scores = bm25(&query, &refs, current.len() as u64);
        let mut found: Vec<FactMatch> = current
            .into_iter()
            .zip(scores)
            .filter(|(_, score)| *score > 0.0)
            .map(|(fact, score)| FactMatch { fact, score })
            .collect();
        found.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then_with(|| newest_first(&a.fact, &b.fact))
        });
        found.truncate(limit);
        Ok(found)
    }

    async fn all(&self, user_id: UserId) -> Result<Vec<MemoryFact>, FactStoreError> {
        self.check("all")?;
        let mut all: Vec<MemoryFact> = self
            .lock()
            .iter()
            .filter(|f| f.user_id == user_id)
            .cloned()
            .collect();
        all.sort_by(|a, b| newest_first(b, a));
        Ok(all)
    }

    async fn delete(&self, user_id: UserId, fact_id: Uuid) -> Result<bool, FactStoreError> {
        self.check("delete")?;
        let mut stored = self.lock();
        let before = stored.len();
        stored.retain(|f| !(f.user_id == user_id && f.id == fact_id));
        Ok(stored.len() < before)
    }

    async fn delete_all(&self, user_id: UserId) -> Result<u64, FactStoreError> {
        self.check("delete_all")?;
        let mut stored = self.lock();
        let before = stored.len();
        stored.retain(|f| f.user_id != user_id);
        Ok((before - stored.len()) as u64)
    }

    async fn delete_older_than(&self, cutoff: OffsetDateTime) -> Result<u64, FactStoreError> {
        self.check("delete_older_than")?;
        let mut stored = self.lock();
        let before = stored.len();
        stored.retain(|f| f.created_at >= cutoff);
        Ok((before - stored.len()) as u64)
    }
}
