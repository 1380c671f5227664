//! `MemoryWorkerUseCase`: one run of the background worker — find users over the threshold
//! and compress each with bounded parallelism. Safe beside running bots and other workers:
//! every compression holds the conversation's compression lease (a user another process is
//! compressing is `busy`, skipped), with the profile's compare-and-set as the last guard
//! ([`CompressMemoryUseCase`]). A stop request
//! ([`MemoryWorkerUseCase::execute_until`]) starts no further user and lets the compressions
//! in flight finish.

use std::sync::Arc;

use butler_domain::ports::{MemoryStoreError, UserEventCount, UserMemoryRepository};
use butler_domain::UserId;
use futures::future;
use futures::stream::{self, StreamExt};

use super::{CompressError, CompressMemoryUseCase, CompressOutcome};

/// Options of one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerRun {
    /// At most this many users per run (the most events first).
    pub max_users: usize,
    /// Only list the users that would be compressed.
    pub dry_run: bool,
    /// Compressions at once (the LLM client's own limit still applies).
    pub parallelism: usize,
}

/// The result for one user.
#[derive(Debug)]
pub struct UserResult {
    /// Who.
    pub user_id: UserId,
    /// Events before the run.
    pub events_before: u64,
    /// What happened (`None` in a dry run).
    pub outcome: Option<Result<CompressOutcome, CompressError>>,
}

/// What a run did.
#[derive(Debug, Default)]
pub struct WorkerReport {
    /// Per-user results, in completion order.
    pub users: Vec<UserResult>,
    /// Candidates not started because a stop was requested (they wait for the next run).
    pub not_started: usize,
}

impl WorkerReport {
    /// Users whose compression failed.
    #[must_use]
    pub fn failures(&self) -> usize {
        self.users
            .iter()
            .filter(|u| matches!(u.outcome, Some(Err(_))))
            .count()
    }
}

/// Runs the worker once.
#[derive(Clone)]
pub struct MemoryWorkerUseCase {
    memory: Arc<dyn UserMemoryRepository>,
    compress: CompressMemoryUseCase,
}

impl MemoryWorkerUseCase {
    /// Wires the use case.
    #[must_use]
    pub fn new(memory: Arc<dyn UserMemoryRepository>, compress: CompressMemoryUseCase) -> Self {
        Self { memory, compress }
    }

    /// Users the next run would compress.
    ///
    /// # Errors
    /// If the memory store fails.
    pub async fn candidates(
        &self,
        max_users: usize,
    ) -> Result<Vec<UserEventCount>, MemoryStoreError> {
        self.memory
            .users_over(self.compress.config().threshold, max_users)
            .await
    }

    /// One run; `on_done` is called after each user (progress reporting).
    ///
    /// # Errors
    /// Only if the candidate query fails; per-user failures are in the report.
    pub async fn execute(
        &self,
        run: WorkerRun,
        on_done: &(dyn Fn(&UserResult) + Sync),
    ) -> Result<WorkerReport, MemoryStoreError> {
        self.execute_until(run, on_done, &|| false).await
    }

    /// One run that starts no further user once `stop_requested` returns `true`; the
    /// compressions already started finish (each is a few LLM calls and one compare-and-set,
    /// cheaper to finish than to repair). Users not started are counted in
    /// [`WorkerReport::not_started`].
    ///
    /// # Errors
    /// Only if the candidate query fails; per-user failures are in the report.
    pub async fn execute_until(
        &self,
        run: WorkerRun,
        on_done: &(dyn Fn(&UserResult) + Sync),
        stop_requested: &(dyn Fn() -> bool + Sync),
    ) -> Result<WorkerReport, MemoryStoreError> {
        let candidates = self.candidates(run.max_users).await?;
        let total = candidates.len();
        let mut report = WorkerReport::default();
        if run.dry_run {
            for c in candidates {
                let result = UserResult {
                    user_id: c.user_id,
                    events_before: c.events,
                    outcome: None,
                };
                on_done(&result);
                report.users.push(result);
            }
            return Ok(report);
        }
        // `buffer_unordered` pulls the next candidate only when a slot frees up, so the stop
        // check runs just before each user would start.
        let mut results = stream::iter(candidates)
            .take_while(|_| future::ready(!stop_requested()))
            .map(|c| async move {
                let outcome = self.compress.execute(c.user_id).await;
                UserResult {
                    user_id: c.user_id,
                    events_before: c.events,
                    outcome: Some(outcome),
                }
            })
            .buffer_unordered(run.parallelism.max(1));
        while let Some(result) = results.next().await {
            on_done(&result);
            report.users.push(result);
        }
        report.not_started = total.saturating_sub(report.users.len());
        Ok(report)
    }
}
