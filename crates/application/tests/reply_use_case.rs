//! The reply use case against in-memory fakes: success, model failure, storage failure,
//! stateless mode, and the compression trigger.

mod support;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use butler_application::prompt::templates::FALLBACK_REPLY;
use butler_application::{
    CompressMemoryUseCase, CompressionScheduler, ReplyConfig, ReplyInput, ReplyStatus,
};
use butler_domain::ports::{LlmError, UserMemoryRepository, UserProfileRepository};
use butler_domain::{ChatRole, Role, Source, UserId};
use butler_testkit::fakes::{FakeLlm, LlmStep};
use support::World;

const USER: UserId = UserId::new(7);

fn text(t: &str) -> ReplyInput {
    ReplyInput {
        user_id: USER,
        text: t.to_owned(),
        source: Source::Text,
        origin: None,
    }
}

#[tokio::test]
async fn a_reply_is_generated_in_persona_and_both_events_are_stored_in_order() {
    let w = World::default();
    w.llm.push_reply("Добрый вечер, сэр. Чай уже заварен.");
    let out = w
        .reply()
        .execute(ReplyInput {
            source: Source::Voice,
            ..text("Добрый вечер")
        })
        .await;

    assert_eq!(out.reply, "Добрый вечер, сэр. Чай уже заварен.");
    assert_eq!(out.status, ReplyStatus::Ok);
    assert!(out.used_persona);
    assert_eq!(out.persona, "Alfred-style дворецкий");
    assert_eq!(out.memory_events_used, 0);
    assert!(out.prompt_tokens > 0);

    let stored = w.memory.all(USER);
    assert_eq!(stored.len(), 2);
    assert_eq!(
        (stored[0].role, stored[0].content.as_str()),
        (Role::User, "Добрый вечер")
    );
    assert_eq!(
        (stored[1].role, stored[1].content.as_str()),
        (Role::Assistant, "Добрый вечер, сэр. Чай уже заварен.")
    );
    assert!(stored.iter().all(|e| e.source == Source::Voice));
    assert!(stored[0].cursor() < stored[1].cursor());
    assert!(
        w.profiles.get(USER).await.unwrap().is_some(),
        "profile created on first contact"
    );

    let request = &w.llm.requests()[0];
    assert_eq!(request.messages[0].role, ChatRole::System);
    assert!(request.messages[0].content.contains("Альфред"));
    assert_eq!(request.messages.last().unwrap().content, "Добрый вечер");
    assert_eq!(request.options.max_tokens, 512);
}

#[tokio::test]
async fn the_next_message_sees_the_previous_exchange_as_chat_turns() {
    let w = World::default();
    let reply = w.reply();
    w.llm.push_reply("Запомнил, сэр: вы Пётр.");
    reply.execute(text("Меня зовут Пётр")).await;
    w.llm.push_reply("Вы Пётр, сэр.");
    let out = reply.execute(text("Как меня зовут?")).await;
    assert_eq!(out.memory_events_used, 2);
    let messages = &w.llm.requests()[1].messages;
    let contents: Vec<&str> = messages
        .iter()
        .skip(1)
        .map(|m| m.content.as_str())
        .collect();
    assert_eq!(
        contents,
        [
            "Меня зовут Пётр",
            "Запомнил, сэр: вы Пётр.",
            "Как меня зовут?"
        ]
    );
}

#[tokio::test]
async fn a_failing_model_gives_the_fallback_reply_and_stores_nothing() {
    let w = World::default();
    w.llm.push(LlmStep::Fail(LlmError::Status {
        status: 500,
        body_excerpt: "boom".into(),
    }));
    let out = w.reply().execute(text("Алло?")).await;
    assert_eq!(out.reply, FALLBACK_REPLY);
    assert_eq!(out.status, ReplyStatus::LlmError);
    assert_eq!(out.status.code(), "error");
    assert!(
        w.memory.all(USER).is_empty(),
        "no half-conversation in memory"
    );
}

#[tokio::test]
async fn a_failing_memory_store_still_returns_the_reply_as_degraded() {
    let w = World::default();
    w.memory.fail_appends.store(true, Ordering::SeqCst);
    w.llm.push_reply("Разумеется, сэр.");
    let out = w.reply().execute(text("Подай плащ")).await;
    assert_eq!(out.reply, "Разумеется, сэр.");
    assert_eq!(out.status, ReplyStatus::Degraded);
    assert_eq!(out.status.code(), "degraded");
}

#[tokio::test]
async fn a_database_outage_still_gets_an_answer_with_the_default_persona() {
    let w = World::default();
    w.profiles.outage.set(true);
    w.memory.outage.set(true);
    let out = w.reply().execute(text("Есть кто?")).await;
    assert_eq!(out.reply, "Разумеется, сэр.");
    assert_eq!(out.status, ReplyStatus::Degraded);
    assert!(w.llm.requests()[0].messages[0].content.contains("Альфред"));
    w.memory.outage.set(false);
    assert!(w.memory.all(USER).is_empty());
}

#[tokio::test]
async fn stateless_mode_uses_no_persona_and_stores_nothing() {
    let w = World::default();
    let reply = w.reply_with(ReplyConfig {
        personalization_enabled: false,
        ..ReplyConfig::default()
    });
    w.llm.push_reply("4");
    let out = reply.execute(text("2+2?")).await;
    assert_eq!(out.reply, "4");
    assert!(!out.used_persona);
    assert!(!w.llm.requests()[0].messages[0].content.contains("Альфред"));
    assert!(w.memory.all(USER).is_empty());
    assert!(w.profiles.is_empty());
}

#[tokio::test]
async fn more_than_fifty_events_schedule_a_compression_and_fewer_do_not() {
    let w = World::default();
    w.seed_turns(USER, 0, 24).await; // 48 events
    let reply = w.reply();
    let out = reply.execute(text("ещё")).await; // 50: not more than 50
    assert!(!out.compression_scheduled);
    // (Over the 20 recent turns, a quiet-time run — fact extraction, no fold — was asked for.)
    assert_eq!(*w.scheduler.0.lock().unwrap(), vec![USER]);
    let out = reply.execute(text("и ещё")).await; // 52
    assert!(out.compression_scheduled);
    assert_eq!(*w.scheduler.0.lock().unwrap(), vec![USER, USER]);
}

/// Records how each compression was asked for: at once (`None`) or after a quiet period.
#[derive(Default)]
struct TimingScheduler(std::sync::Mutex<Vec<Option<std::time::Duration>>>);

impl CompressionScheduler for TimingScheduler {
    fn schedule(&self, _: UserId) {
        self.0.lock().unwrap().push(None);
    }

    fn schedule_when_idle(&self, _: UserId, idle: std::time::Duration) {
        self.0.lock().unwrap().push(Some(idle));
    }
}

#[tokio::test]
async fn a_due_compression_waits_for_a_quiet_moment_until_the_hard_limit() {
    let w = World::default();
    w.seed_turns(USER, 0, 24).await; // 48 events
    let scheduler = Arc::new(TimingScheduler::default());
    let config = ReplyConfig::default();
    assert_eq!(
        (config.compress_threshold, config.compress_hard_limit),
        (50, 70)
    );
    let reply = butler_application::PersonalizedReplyUseCase::new(
        w.profiles.clone(),
        w.memory.clone(),
        w.llm.clone(),
        w.clock.clone(),
        w.personalization(),
        scheduler.clone(),
        config,
    );
    assert!(!reply.execute(text("0")).await.compression_scheduled); // 50
                                                                    // Not due, but over the 20 events the prompt shows: a quiet-time run is asked for all the
                                                                    // same (it extracts facts without folding).
    assert_eq!(
        scheduler.0.lock().unwrap().drain(..).collect::<Vec<_>>(),
        [Some(config.compress_idle)]
    );
    for i in 1..=10 {
        // 52 … 70: over the threshold, within the hard limit: when the user is quiet.
        let out = reply.execute(text(&format!("{i}"))).await;
        assert!(out.compression_scheduled);
    }
    let out = reply.execute(text("11")).await; // 72: over the hard limit
    assert!(out.compression_scheduled);
    let asked = scheduler.0.lock().unwrap().clone();
    assert_eq!(asked.len(), 11);
    assert!(asked[..10].iter().all(|a| *a == Some(config.compress_idle)));
    assert_eq!(asked[10], None, "past the hard limit it runs at once");

    // A zero quiet period compresses as soon as the threshold is crossed.
    let w = World::default();
    w.seed_turns(USER, 0, 25).await;
    let scheduler = Arc::new(TimingScheduler::default());
    let reply = butler_application::PersonalizedReplyUseCase::new(
        w.profiles.clone(),
        w.memory.clone(),
        w.llm.clone(),
        w.clock.clone(),
        w.personalization(),
        scheduler.clone(),
        ReplyConfig {
            compress_idle: std::time::Duration::ZERO,
            ..ReplyConfig::default()
        },
    );
    assert!(reply.execute(text("x")).await.compression_scheduled);
    assert_eq!(*scheduler.0.lock().unwrap(), [None]);
}

/// Runs compressions on spawned tasks, like the factory's scheduler.
struct SpawningScheduler {
    compress: CompressMemoryUseCase,
    tasks: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl CompressionScheduler for SpawningScheduler {
    fn schedule(&self, user_id: UserId) {
        let compress = self.compress.clone();
        self.tasks.lock().unwrap().push(tokio::spawn(async move {
            compress.execute(user_id).await.unwrap();
        }));
    }
}

#[tokio::test]
async fn the_reply_never_waits_for_the_compression_it_triggers() {
    let w = World::default();
    w.seed_turns(USER, 0, 25).await; // 50 events
    let summariser = Arc::new(FakeLlm::default());
    summariser.set_default_reply("Пользователь задал 25 вопросов.");
    let gate = summariser.gate(); // compression blocks inside the model call
    let scheduler = Arc::new(SpawningScheduler {
        compress: w.compress_with(
            summariser.clone(),
            butler_application::CompressConfig::default(),
        ),
        tasks: Default::default(),
    });
    let reply = butler_application::PersonalizedReplyUseCase::new(
        w.profiles.clone(),
        w.memory.clone(),
        w.llm.clone(),
        w.clock.clone(),
        w.personalization(),
        scheduler.clone(),
        ReplyConfig::default(),
    );
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        reply.execute(text("ну?")),
    )
    .await
    .unwrap();
    assert!(out.compression_scheduled);
    assert_eq!(
        w.memory.count(USER).await.unwrap(),
        52,
        "compression has not finished yet"
    );

    gate.add_permits(1);
    let task = scheduler.tasks.lock().unwrap().pop().unwrap();
    task.await.unwrap();
    let profile = w.profiles.get(USER).await.unwrap().unwrap();
    assert_eq!(
        profile.memory_summary.as_deref(),
        Some("Пользователь задал 25 вопросов.")
    );
    assert_eq!(w.memory.count(USER).await.unwrap(), 20);
}

#[derive(Default)]
struct Seen(std::sync::Mutex<Vec<(String, ReplyStatus)>>);

impl butler_application::ReplyObserver for Seen {
    fn observe(
        &self,
        input: &ReplyInput,
        output: &butler_application::ReplyOutput,
        _: std::time::Duration,
    ) {
        self.0
            .lock()
            .unwrap()
            .push((input.text.clone(), output.status));
    }
}

#[tokio::test]
async fn every_reply_is_reported_to_the_observer_once_with_its_status() {
    let w = World::default();
    let seen = Arc::new(Seen::default());
    let reply = w.reply().with_observer(seen.clone());
    reply.execute(text("первое")).await;
    w.llm.push(LlmStep::Fail(LlmError::Timeout {
        after: std::time::Duration::from_secs(1),
    }));
    reply.execute(text("второе")).await;
    assert_eq!(
        *seen.0.lock().unwrap(),
        vec![
            ("первое".to_owned(), ReplyStatus::Ok),
            ("второе".to_owned(), ReplyStatus::LlmError)
        ]
    );
}

/// A clock stuck on one instant: a burst of messages within one millisecond.
struct StoppedClock;

impl butler_domain::ports::Clock for StoppedClock {
    fn now(&self) -> time::OffsetDateTime {
        time::macros::datetime!(2026-11-29 12:00:00 UTC)
    }
}

#[tokio::test]
async fn a_burst_within_one_millisecond_is_stored_in_conversation_order() {
    let w = World::default();
    let reply = butler_application::PersonalizedReplyUseCase::new(
        w.profiles.clone(),
        w.memory.clone(),
        w.llm.clone(),
        Arc::new(StoppedClock),
        w.personalization(),
        w.scheduler.clone(),
        ReplyConfig::default(),
    );
    for i in 0..30 {
        w.llm.push_reply(&format!("ответ {i}"));
        reply.execute(text(&format!("вопрос {i}"))).await;
    }
    let stored: Vec<String> = w.memory.all(USER).into_iter().map(|e| e.content).collect();
    let expected: Vec<String> = (0..30)
        .flat_map(|i| [format!("вопрос {i}"), format!("ответ {i}")])
        .collect();
    assert_eq!(stored, expected, "events sort in the order they happened");
}

#[tokio::test]
async fn a_redelivered_message_repeats_its_stored_reply_without_asking_or_storing_again() {
    let w = World::default();
    w.llm.push_reply("Зонт у двери, сэр.");
    w.llm.push_reply("Второй ответ, которого быть не должно.");
    let input = ReplyInput {
        origin: Some("telegram-update:42".to_owned()),
        ..text("Нужен ли зонт?")
    };
    let first = w.reply().execute(input.clone()).await;
    let again = w.reply().execute(input).await;

    assert_eq!(first.status, ReplyStatus::Ok);
    assert_eq!(again.status, ReplyStatus::Repeated);
    assert_eq!(again.reply, "Зонт у двери, сэр.");
    assert_eq!(w.llm.requests().len(), 1, "the model is asked once");
    let stored = w.memory.all(USER);
    assert_eq!(stored.len(), 2, "the turn is stored once");
    assert!(stored
        .iter()
        .all(|e| e.tags == ["telegram-update:42".to_owned()]));

    // Another origin is a new message, answered normally.
    let other = w
        .reply()
        .execute(ReplyInput {
            origin: Some("telegram-update:43".to_owned()),
            ..text("Нужен ли зонт?")
        })
        .await;
    assert_eq!(other.status, ReplyStatus::Ok);
    assert_eq!(w.memory.all(USER).len(), 4);
}

#[tokio::test]
async fn with_no_event_after_the_watermark_the_new_turn_is_stamped_after_the_watermark() {
    use butler_domain::ports::Clock as _;
    let w = World::default();
    // Everything up to the watermark was folded and deleted; the watermark is ahead of this
    // process's clock (another machine's clock, or one stepped back).
    let ahead =
        butler_domain::timestamp::truncate_to_millis(w.clock.now()) + time::Duration::seconds(10);
    let mut profile = w.profiles.get_or_create(USER).await.unwrap();
    profile.memory_summary = Some("Пётр любит чай.".to_owned());
    profile.summary_watermark = Some(butler_domain::EventCursor {
        created_at: ahead,
        event_id: uuid::Uuid::max(),
    });
    w.profiles.save(&profile).await.unwrap();
    w.llm.push_reply("Чай подан, сэр.");
    let out = w.reply().execute(text("Чаю, пожалуйста")).await;
    assert_eq!(out.status, ReplyStatus::Ok);

    let profile = w.profiles.get(USER).await.unwrap().unwrap();
    let visible = w
        .memory
        .recent(USER, 10, profile.summary_watermark)
        .await
        .unwrap();
    assert_eq!(
        visible.len(),
        2,
        "both new events sort after the watermark, so readers see them"
    );
    assert_eq!(
        visible[0].created_at,
        ahead + time::Duration::milliseconds(1)
    );
    assert_eq!(
        visible[1].created_at,
        ahead + time::Duration::milliseconds(2)
    );
}
