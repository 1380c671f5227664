//! A small world of fakes wired into the use cases, shared by the application tests.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use butler_application::prompt::PromptBudget;
use butler_application::{
    CompressConfig, CompressMemoryUseCase, CompressionScheduler, PersonalizationService,
    PersonalizedReplyUseCase, ReplyConfig, ResetPersonalizationUseCase,
};
use butler_domain::ports::Clock;
use butler_domain::ports::{TokenCounter, UserMemoryRepository};
use butler_domain::{Source, UserId, UserMemoryEvent};
use butler_testkit::fakes::{
    CharCounter, FakeLlm, InMemoryFacts, InMemoryInbox, InMemoryMemory, InMemoryProfiles,
    ManualClock,
};

/// A budget sized for the one-token-per-character counter.
pub fn char_budget() -> PromptBudget {
    PromptBudget {
        total: 3000,
        persona: 600,
        summary: 300,
        memory: 1200,
        facts: 300,
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

pub struct World {
    pub profiles: Arc<InMemoryProfiles>,
    pub memory: Arc<InMemoryMemory>,
    pub facts: Arc<InMemoryFacts>,
    pub llm: Arc<FakeLlm>,
    pub clock: Arc<ManualClock>,
    pub counter: Arc<dyn TokenCounter>,
    pub scheduler: Arc<RecordingScheduler>,
    pub leases: Arc<InMemoryInbox>,
}

impl Default for World {
    fn default() -> Self {
        Self {
            profiles: Arc::default(),
            memory: Arc::default(),
            facts: Arc::default(),
            llm: Arc::default(),
            clock: Arc::default(),
            counter: Arc::new(CharCounter),
            scheduler: Arc::default(),
            leases: Arc::default(),
        }
    }
}

impl World {
    pub fn personalization(&self) -> PersonalizationService {
        PersonalizationService::new(self.counter.clone(), char_budget()).unwrap()
    }

    pub fn reply(&self) -> PersonalizedReplyUseCase {
        self.reply_with(ReplyConfig::default())
    }

    pub fn reply_with(&self, config: ReplyConfig) -> PersonalizedReplyUseCase {
        self.reply_within(config, char_budget())
    }

    /// The reply use case with `config`, building prompts within `budget`.
    pub fn reply_within(
        &self,
        config: ReplyConfig,
        budget: PromptBudget,
    ) -> PersonalizedReplyUseCase {
        PersonalizedReplyUseCase::new(
            self.profiles.clone(),
            self.memory.clone(),
            self.llm.clone(),
            self.clock.clone(),
            PersonalizationService::new(self.counter.clone(), budget).unwrap(),
            self.scheduler.clone(),
            config,
        )
    }

    pub fn compress(&self) -> CompressMemoryUseCase {
        self.compress_with(self.llm.clone(), CompressConfig::default())
    }

    pub fn compress_with(
        &self,
        llm: Arc<FakeLlm>,
        config: CompressConfig,
    ) -> CompressMemoryUseCase {
        CompressMemoryUseCase::new(
            self.profiles.clone(),
            self.memory.clone(),
            llm,
            self.counter.clone(),
            self.clock.clone(),
            self.leases.clone(),
            config,
        )
    }

    pub fn reset(&self) -> ResetPersonalizationUseCase {
        ResetPersonalizationUseCase::new(
            self.profiles.clone(),
            self.memory.clone(),
            self.facts.clone(),
            self.leases.clone(),
            self.clock.clone(),
        )
    }

    /// Stores `turns` question/answer pairs for the user, numbered from `from`.
    pub async fn seed_turns(
        &self,
        user: UserId,
        from: usize,
        turns: usize,
    ) -> Vec<UserMemoryEvent> {
        self.seed_exchanges(
            user,
            (from..from + turns).map(|i| (format!("вопрос {i}"), format!("ответ {i}"))),
        )
        .await
    }

    /// Stores each `(user's message, butler's answer)` for the user, in order.
    pub async fn seed_exchanges(
        &self,
        user: UserId,
        exchanges: impl IntoIterator<Item = (String, String)>,
    ) -> Vec<UserMemoryEvent> {
        let mut events = Vec::new();
        for (question, answer) in exchanges {
            // The clock ticks per reading: each event gets its own moment, in order.
            events.push(UserMemoryEvent::user(
                user,
                question,
                Source::Text,
                self.clock.now(),
            ));
            events.push(UserMemoryEvent::assistant(
                user,
                answer,
                Source::Text,
                self.clock.now(),
            ));
        }
        self.memory.append(&events).await.unwrap();
        events
    }
}
