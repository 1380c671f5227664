//! Memory compression: `CompressMemoryUseCase` on one user at a time (cost per user, split
//! into storage, model and the rest), and one `MemoryWorkerUseCase` run over many users — the
//! same wiring as `memory-worker`, with the scripted zero-latency model.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use butler_application::memory::worker::WorkerRun;
use butler_application::CompressOutcome;
use butler_domain::ports::LlmClient;
use butler_domain::UserId;
use butler_factory::wiring;
use futures::stream::{self, StreamExt as _, TryStreamExt as _};

use crate::backend::{open_timed, StoreEnv};
use crate::data;
use crate::e2e::{Fakes, Runtimes};
use crate::stats::Durations;
use crate::timing::{CallTimer, TimedLlm};

/// Events stored per user before compression (threshold 50, 20 kept: 40 folded in one pass).
pub const EVENTS_PER_USER: usize = 60;

/// What was measured.
#[derive(Debug, Clone)]
pub struct CompressResult {
    /// Wall time of one compression, per user.
    pub per_user: Durations,
    /// Mean storage time per compression.
    pub db_per_user: Duration,
    /// Mean model time per compression (HTTP round trip to the scripted server).
    pub llm_per_user: Duration,
    /// Users the worker compressed.
    pub worker_users: usize,
    /// Wall time of the worker run.
    pub worker_time: Duration,
}

/// Seeds `sample + worker_users` users with [`EVENTS_PER_USER`] events each, compresses
/// `sample` of them one by one, then runs the worker over the rest (parallelism 2, the
/// `memory-worker` default).
///
/// # Errors
/// If storage fails or a compression does not compress.
pub fn measure(
    rt: &Runtimes,
    store: &StoreEnv,
    sample: usize,
    worker_users: usize,
) -> anyhow::Result<CompressResult> {
    let fakes = rt.harness.block_on(Fakes::start());
    let settings = store.settings(&[("LLM_BASE_URL", fakes.llm.base_url())])?;
    let db = CallTimer::new();
    let llm_timer = CallTimer::new();
    rt.bot.block_on(async {
        let storage = open_timed(&settings, &db).await?;
        let llm = wiring::llm_client(&settings).map_err(|e| anyhow::anyhow!("{e}"))?;
        let llm: Arc<dyn LlmClient> = Arc::new(TimedLlm {
            inner: llm,
            timer: llm_timer.clone(),
        });
        let counter = wiring::token_counter(&settings)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let app = wiring::assemble(&settings, storage, llm, counter, None)
            .map_err(|e| anyhow::anyhow!("{e}"))?;

        let users: Vec<UserId> = (1..=i64::try_from(sample + worker_users).unwrap_or(0))
            .map(|u| UserId::new(20_000_000 + u))
            .collect();
        let (profiles, memory) = (app.storage.profiles.clone(), app.storage.memory.clone());
        stream::iter(users.clone())
            .map(|u| {
                let (profiles, memory) = (profiles.clone(), memory.clone());
                async move { data::seed_user(&profiles, &memory, u, EVENTS_PER_USER, false).await }
            })
            .buffer_unordered(16)
            .try_collect::<()>()
            .await
            .context("seeding users for compression")?;

        let mut times = Vec::with_capacity(sample);
        let (mut db_total, mut llm_total) = (Duration::ZERO, Duration::ZERO);
        for &user in &users[..sample] {
            db.reset();
            llm_timer.reset();
            let started = Instant::now();
            let outcome = app.compress.execute(user).await?;
            times.push(started.elapsed());
            anyhow::ensure!(
                matches!(outcome, CompressOutcome::Compressed { .. }),
                "user {user} was not compressed: {outcome:?}"
            );
            db_total += db.total().0;
            llm_total += llm_timer.total().0;
        }
        let n = u32::try_from(sample.max(1)).unwrap_or(u32::MAX);

        let started = Instant::now();
        let report = app
            .worker
            .execute(
                WorkerRun {
                    max_users: worker_users,
                    dry_run: false,
                    parallelism: 2,
                },
                &|_| {},
            )
            .await?;
        let worker_time = started.elapsed();
        let compressed = report
            .users
            .iter()
            .filter(|u| matches!(u.outcome, Some(Ok(CompressOutcome::Compressed { .. }))))
            .count();
        anyhow::ensure!(
            compressed == worker_users,
            "the worker compressed {compressed} of {worker_users} users ({} failed)",
            report.failures()
        );
        Ok(CompressResult {
            per_user: Durations::new(times),
            db_per_user: db_total / n,
            llm_per_user: llm_total / n,
            worker_users,
            worker_time,
        })
    })
}
