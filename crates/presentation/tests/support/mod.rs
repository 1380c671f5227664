//! The bot under test: the real teloxide client, polling the fake Bot API over HTTP, wired to
//! the real `PersonalizedReplyUseCase`.
//!
//! [`FakeWorld`] builds the use case from in-memory fakes; [`BotHarness::start`] takes any
//! [`BotDeps`], so a test that wants real storage, a scripted LLM server or a real STT server
//! builds its deps from those adapters and starts the same harness.
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use butler_application::prompt::PromptBudget;
use butler_application::{
    CompressionScheduler, ObserveMessageUseCase, PersonalizationService, PersonalizedReplyUseCase,
    ReplyConfig,
};
use butler_domain::ports::SpeechToText;
use butler_domain::{UserId, UserMemoryEvent};
use butler_presentation::telegram::{
    run_bot, Access, BotConfig, BotDeps, BotError, BotSettings, Delivery, Limits, TelegramObserver,
};
use butler_testkit::fakes::{
    CharCounter, FakeLlm, FakeStt, InMemoryInbox, InMemoryMemory, InMemoryProfiles, ManualClock,
};
use butler_testkit::telegram::FakeTelegram;
use tokio_util::sync::CancellationToken;

/// How long a test waits for something the bot should do promptly.
pub const WAIT: Duration = Duration::from_secs(10);

/// A budget sized for the one-token-per-character counter.
pub fn char_budget() -> PromptBudget {
    PromptBudget {
        total: 3000,
        persona: 600,
        summary: 300,
        memory: 1200,
        facts: 0,
        new_message: 300,
        min_recent_events: 5,
        per_message_overhead: 4,
        model_window: 4096,
        max_reply_tokens: 512,
    }
}

/// Remembers which users a reply asked to compress.
#[derive(Default)]
pub struct RecordingScheduler(pub Mutex<Vec<UserId>>);

impl CompressionScheduler for RecordingScheduler {
    fn schedule(&self, user_id: UserId) {
        self.0.lock().unwrap().push(user_id);
    }
}

/// Counts what the bot reports about Telegram.
#[derive(Debug, Default)]
pub struct CountingObserver {
    send_failures: AtomicUsize,
    setup_failures: AtomicUsize,
    refusals: Mutex<Vec<&'static str>>,
    stops: Mutex<Vec<bool>>,
    rich_fallbacks: AtomicUsize,
}

impl CountingObserver {
    /// `sendMessage` calls that failed so far.
    pub fn send_failures(&self) -> usize {
        self.send_failures.load(Ordering::SeqCst)
    }

    /// Failed start-up calls retried in the background so far.
    pub fn setup_failures(&self) -> usize {
        self.setup_failures.load(Ordering::SeqCst)
    }

    /// Reasons of the messages refused by a limit so far.
    pub fn refusals(&self) -> Vec<&'static str> {
        self.refusals.lock().unwrap().clone()
    }

    /// Stop presses so far: whether each stopped a reply of this process.
    pub fn stops(&self) -> Vec<bool> {
        self.stops.lock().unwrap().clone()
    }

    /// Rich messages sent again as plain text so far.
    pub fn rich_fallbacks(&self) -> usize {
        self.rich_fallbacks.load(Ordering::SeqCst)
    }
}

impl TelegramObserver for CountingObserver {
    fn send_failed(&self) {
        self.send_failures.fetch_add(1, Ordering::SeqCst);
    }

    fn refused(&self, reason: &'static str) {
        self.refusals.lock().unwrap().push(reason);
    }

    fn stop_pressed(&self, matched: bool) {
        self.stops.lock().unwrap().push(matched);
    }

    fn rich_fallback(&self) {
        self.rich_fallbacks.fetch_add(1, Ordering::SeqCst);
    }

    fn setup_failed(&self, _method: &'static str) {
        self.setup_failures.fetch_add(1, Ordering::SeqCst);
    }
}

/// The use case over in-memory fakes, with handles for assertions.
#[derive(Clone, Default)]
pub struct FakeWorld {
    pub profiles: Arc<InMemoryProfiles>,
    pub memory: Arc<InMemoryMemory>,
    pub llm: Arc<FakeLlm>,
    pub stt: Arc<FakeStt>,
    pub clock: Arc<ManualClock>,
    pub scheduler: Arc<RecordingScheduler>,
    pub observer: Arc<CountingObserver>,
    pub inbox: Arc<InMemoryInbox>,
}

impl FakeWorld {
    /// The bot's dependencies, speech-to-text included.
    pub fn deps(&self) -> BotDeps {
        self.deps_with_llm(self.llm.clone())
    }

    /// As [`Self::deps`], with `llm` answering instead of the fake (a wrapper around it, say).
    pub fn deps_with_llm(&self, llm: Arc<dyn butler_domain::ports::LlmClient>) -> BotDeps {
        let personalization =
            PersonalizationService::new(Arc::new(CharCounter), char_budget()).unwrap();
        let reply = PersonalizedReplyUseCase::new(
            self.profiles.clone(),
            self.memory.clone(),
            llm,
            self.clock.clone(),
            personalization,
            self.scheduler.clone(),
            ReplyConfig::default(),
        );
        let observe = ObserveMessageUseCase::new(
            self.profiles.clone(),
            self.memory.clone(),
            self.clock.clone(),
            self.scheduler.clone(),
            ReplyConfig::default().compress_threshold,
        );
        BotDeps {
            reply: Arc::new(reply),
            observe: Arc::new(observe),
            stt: Some(self.stt.clone() as Arc<dyn SpeechToText>),
            profiles: self.profiles.clone(),
            inbox: self.inbox.clone(),
            observer: Some(self.observer.clone() as Arc<dyn TelegramObserver>),
            reminders: None,
        }
    }

    /// Stored events of a user, oldest first.
    pub fn events(&self, user: i64) -> Vec<UserMemoryEvent> {
        self.memory.all(UserId::new(user))
    }
}

/// Fast timings, open to every test user, no rate limits; everything else as in production.
pub fn test_config() -> BotConfig {
    BotConfig {
        access: Access::Everyone,
        limits: Limits::none(),
        // "typing…" at once, so tests see it however fast the fake model answers.
        typing_delay: Duration::ZERO,
        poll_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(5),
        ..BotConfig::default()
    }
}

/// A running bot polling a fake Telegram.
pub struct BotHarness {
    pub telegram: Arc<FakeTelegram>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), BotError>>,
}

impl BotHarness {
    /// A fresh fake Telegram and a bot on the fake world with the test config.
    pub async fn start(world: &FakeWorld) -> Self {
        Self::start_with(world.deps(), test_config()).await
    }

    /// A fresh fake Telegram and a bot with these deps and config.
    pub async fn start_with(deps: BotDeps, config: BotConfig) -> Self {
        let telegram = Arc::new(FakeTelegram::start().await);
        Self::start_on(telegram, deps, config).await
    }

    /// A bot on an existing fake Telegram (a restart).
    pub async fn start_on(telegram: Arc<FakeTelegram>, deps: BotDeps, config: BotConfig) -> Self {
        let settings = BotSettings {
            token: telegram.token().to_owned().into(),
            api_url: Some(telegram.api_url()),
            delivery: Delivery::Polling,
            config,
        };
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run_bot(settings, deps, shutdown.clone()));
        // Ready once it polls.
        if let Err(error) = telegram.wait_for_calls("getUpdates", 1, WAIT).await {
            let calls: Vec<_> = telegram.calls().iter().map(|c| c.method.clone()).collect();
            let outcome = if task.is_finished() {
                format!("{:?}", task.await)
            } else {
                "still running".to_owned()
            };
            panic!("the bot did not start polling: {error}; calls {calls:?}; bot {outcome}");
        }
        Self {
            telegram,
            shutdown,
            task,
        }
    }

    /// Graceful shutdown: in-flight replies finish, taken updates are confirmed.
    pub async fn stop(self) -> Result<(), BotError> {
        self.shutdown.cancel();
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("the bot stops within the wait")
            .expect("the bot task does not panic")
    }

    /// A crash: the bot task is dropped mid-flight, nothing is flushed.
    pub async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// Polls `done` until it holds, or panics naming `what` after [`WAIT`].
pub async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
