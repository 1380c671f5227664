//! Prompt assembly: `PersonalizationService::build` with a full memory (20 events and a
//! summary), and the whole pre-model step with 10,000 events stored — profile, recent events
//! and count read from storage, then the prompt built — exactly what the reply use case does
//! before it calls the model.

use std::sync::Arc;
use std::time::{Duration, Instant};

use butler_application::PersonalizationService;
use butler_domain::ports::{UserMemoryRepository, UserProfileRepository};
use butler_domain::{MemorySlice, PersonalizedPrompt, UserId, UserProfile};
use butler_factory::settings::Settings;
use butler_factory::wiring;

use crate::data;
use crate::stats::Durations;

/// The production prompt builder: default budget and token counter.
///
/// # Errors
/// If the default settings do not wire (they always should).
pub async fn production_service() -> anyhow::Result<PersonalizationService> {
    let settings = Settings::from_sources(None, |_| None)
        .map_err(|e| anyhow::anyhow!("default settings: {e}"))?;
    let counter = wiring::token_counter(&settings)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    PersonalizationService::new(counter, settings.budget).map_err(|e| anyhow::anyhow!("{e}"))
}

/// A user with a full memory: the profile with its summary and the 20 newest events.
#[must_use]
pub fn full_memory(user: UserId) -> (UserProfile, MemorySlice) {
    let profile = data::profile_with_summary(user);
    let slice = MemorySlice {
        events: data::history(user, 20),
        summary: profile.memory_summary.clone(),
        total_events: 20,
        ..MemorySlice::default()
    };
    (profile, slice)
}

/// The message being answered.
#[must_use]
pub fn new_message() -> String {
    data::user_text(7, 3)
}

/// What the reply use case does before the model: read profile, recent events and count,
/// then build the prompt.
///
/// # Panics
/// If storage fails (a benchmark cannot go on without it).
pub async fn read_and_build(
    service: &PersonalizationService,
    profiles: &Arc<dyn UserProfileRepository>,
    memory: &Arc<dyn UserMemoryRepository>,
    user: UserId,
    message: &str,
) -> PersonalizedPrompt {
    #[allow(clippy::expect_used)]
    let profile = profiles.get_or_create(user).await.expect("profile read");
    let (recent, count) = futures::join!(
        memory.recent(user, 20, profile.summary_watermark),
        memory.count(user)
    );
    #[allow(clippy::expect_used)]
    let slice = MemorySlice {
        events: recent.expect("recent events read"),
        summary: profile.memory_summary.clone(),
        total_events: count.expect("event count read"),
        ..MemorySlice::default()
    };
    service.build(&profile, &slice, message).await
}

/// Times `iterations` runs of `f` after `iterations / 10` warm-up runs.
pub async fn time_each<F, Fut>(iterations: usize, mut f: F) -> Durations
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = PersonalizedPrompt>,
{
    for _ in 0..iterations / 10 {
        std::hint::black_box(f().await);
    }
    let mut times: Vec<Duration> = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let started = Instant::now();
        std::hint::black_box(f().await);
        times.push(started.elapsed());
    }
    Durations::new(times)
}
