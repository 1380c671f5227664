//! Metering decorators: wrap the ports so every profile read/write, stored memory event, LLM
//! and STT call is counted, and report every reply (metrics + the one structured log line per
//! reply). Use cases and front ends stay free of metric names.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use butler_application::{ReplyInput, ReplyObserver, ReplyOutput, ReplyStatus};
use butler_domain::ports::{
    AudioClip, FactRepository, FactStoreError, LlmClient, LlmError, LlmReply, LlmRequest,
    LlmStream, ProfilePage, ProfileStoreError, SavedFacts, SpeechToText, StreamEvent, SttError,
    Transcript, UserProfileRepository,
};
use butler_domain::{FactMatch, MemoryFact, UserId, UserProfile};
use butler_infrastructure::telemetry::metrics::{self, CallOutcome, RequestStatus};

/// Counts LLM calls, their latency, the time to the first streamed text, and the prompt
/// tokens the engine evaluated or reused.
pub struct MeteredLlm(pub Arc<dyn LlmClient>);

fn record_usage(reply: &LlmReply) {
    if let Some(prompt) = reply.prompt_tokens {
        let reused = reply.cached_prompt_tokens.unwrap_or(0).min(prompt);
        metrics::record_llm_prompt_tokens(u64::from(prompt - reused), u64::from(reused));
    }
}

#[async_trait]
impl LlmClient for MeteredLlm {
    async fn complete(&self, request: &LlmRequest) -> Result<LlmReply, LlmError> {
        let started = Instant::now();
        let result = self.0.complete(request).await;
        metrics::record_llm_request(CallOutcome::of(&result), started.elapsed());
        if let Ok(reply) = &result {
            record_usage(reply);
        }
        result
    }

    async fn stream(&self, request: &LlmRequest) -> Result<LlmStream, LlmError> {
        let started = Instant::now();
        match self.0.stream(request).await {
            Err(error) => {
                metrics::record_llm_request(CallOutcome::Error, started.elapsed());
                Err(error)
            }
            Ok(inner) => Ok(Box::pin(MeteredStream {
                inner,
                started,
                first_seen: false,
                ended: false,
            })),
        }
    }
}

/// Records a stream's first text, its end and its usage as they pass.
struct MeteredStream {
    inner: LlmStream,
    started: Instant,
    first_seen: bool,
    ended: bool,
}

impl futures::Stream for MeteredStream {
    type Item = Result<StreamEvent, LlmError>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        let polled = self.inner.as_mut().poll_next(cx);
        if let std::task::Poll::Ready(item) = &polled {
            match item {
                Some(Ok(StreamEvent::Delta(_))) if !self.first_seen => {
                    self.first_seen = true;
                    metrics::record_llm_first_token(self.started.elapsed());
                }
                Some(Ok(StreamEvent::Done(reply))) => {
                    self.ended = true;
                    metrics::record_llm_request(CallOutcome::Ok, self.started.elapsed());
                    record_usage(reply);
                }
                Some(Err(_)) | None if !self.ended => {
                    self.ended = true;
                    metrics::record_llm_request(CallOutcome::Error, self.started.elapsed());
                }
                _ => {}
            }
        }
        polled
    }
}

impl Drop for MeteredStream {
    /// A stream dropped before its end was abandoned (deadline, user gone): an error.
    fn drop(&mut self) {
        if !self.ended {
            metrics::record_llm_request(CallOutcome::Error, self.started.elapsed());
        }
    }
}

/// Counts transcriptions and their latency.
pub struct MeteredStt(pub Arc<dyn SpeechToText>);

#[async_trait]
impl SpeechToText for MeteredStt {
    async fn transcribe(&self, clip: &AudioClip) -> Result<Transcript, SttError> {
        let started = Instant::now();
        let result = self.0.transcribe(clip).await;
        metrics::record_stt_request(CallOutcome::of(&result), started.elapsed());
        result
    }
}

/// Counts profile reads and writes.
pub struct MeteredProfiles(pub Arc<dyn UserProfileRepository>);

#[async_trait]
impl UserProfileRepository for MeteredProfiles {
    async fn get(&self, user_id: UserId) -> Result<Option<UserProfile>, ProfileStoreError> {
        metrics::record_profile_read();
        self.0.get(user_id).await
    }

    async fn get_or_create(&self, user_id: UserId) -> Result<UserProfile, ProfileStoreError> {
        metrics::record_profile_read();
        self.0.get_or_create(user_id).await
    }

    async fn save(&self, profile: &UserProfile) -> Result<UserProfile, ProfileStoreError> {
        let result = self.0.save(profile).await;
        if result.is_ok() {
            metrics::record_profile_write();
        }
        result
    }

    async fn reset(&self, user_id: UserId) -> Result<UserProfile, ProfileStoreError> {
        let result = self.0.reset(user_id).await;
        if result.is_ok() {
            metrics::record_profile_write();
        }
        result
    }

    async fn list(&self, page: ProfilePage) -> Result<Vec<UserProfile>, ProfileStoreError> {
        metrics::record_profile_read();
        self.0.list(page).await
    }
}

/// Counts the facts compressions store and the old facts they supersede.
#[derive(Clone)]
pub struct MeteredFacts(pub Arc<dyn FactRepository>);

#[async_trait]
impl FactRepository for MeteredFacts {
    async fn save(&self, facts: &[MemoryFact]) -> Result<SavedFacts, FactStoreError> {
        let saved = self.0.save(facts).await?;
        metrics::record_facts_saved(saved.inserted, saved.superseded);
        Ok(saved)
    }

    async fn current(
        &self,
        user_id: UserId,
        limit: usize,
    ) -> Result<Vec<MemoryFact>, FactStoreError> {
        self.0.current(user_id, limit).await
    }

    async fn search(
        &self,
        user_id: UserId,
        query: &str,
        limit: usize,
    ) -> Result<Vec<FactMatch>, FactStoreError> {
        self.0.search(user_id, query, limit).await
    }

    async fn all(&self, user_id: UserId) -> Result<Vec<MemoryFact>, FactStoreError> {
        self.0.all(user_id).await
    }

    async fn delete(&self, user_id: UserId, fact_id: uuid::Uuid) -> Result<bool, FactStoreError> {
        self.0.delete(user_id, fact_id).await
    }

    async fn delete_all(&self, user_id: UserId) -> Result<u64, FactStoreError> {
        self.0.delete_all(user_id).await
    }

    async fn delete_older_than(&self, cutoff: time::OffsetDateTime) -> Result<u64, FactStoreError> {
        self.0.delete_older_than(cutoff).await
    }
}

/// Records every reply: the request counter, the prompt-token histogram, stored memory
/// events, and one info line per reply (no message text, no secrets).
#[derive(Debug, Default)]
pub struct ReplyMetrics;

impl ReplyObserver for ReplyMetrics {
    fn observe(&self, input: &ReplyInput, output: &ReplyOutput, elapsed: Duration) {
        let status = match output.status {
            ReplyStatus::Ok => RequestStatus::Ok,
            ReplyStatus::Degraded => RequestStatus::Degraded,
            ReplyStatus::LlmError => RequestStatus::Error,
            ReplyStatus::Repeated => RequestStatus::Repeated,
            ReplyStatus::Stopped => RequestStatus::Stopped,
        };
        metrics::record_reply(input.source, status, Some(output.prompt_tokens));
        if output.used_persona {
            metrics::record_prompt_facts(output.facts_used);
        }
        if output.status == ReplyStatus::Ok && output.used_persona {
            metrics::record_memory_event(butler_domain::Role::User);
            metrics::record_memory_event(butler_domain::Role::Assistant);
        }
        tracing::info!(
            user_id = %input.user_id,
            source = input.source.code(),
            persona = %output.persona,
            memory_events_used = output.memory_events_used,
            facts_used = output.facts_used,
            prompt_tokens = output.prompt_tokens,
            reply_len = output.reply.chars().count(),
            latency_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
            llm_ms = u64::try_from(output.llm_time.as_millis()).unwrap_or(u64::MAX),
            status = output.status.code(),
            "reply"
        );
    }
}

/// Counts failed `sendMessage` calls in `telegram_send_errors_total`.
#[derive(Debug, Default)]
pub struct TelegramMetrics;

impl butler_presentation::telegram::TelegramObserver for TelegramMetrics {
    fn send_failed(&self) {
        metrics::record_telegram_send_error();
    }

    fn refused(&self, reason: &'static str) {
        metrics::record_telegram_refusal(reason);
    }

    fn draft_sent(&self) {
        metrics::record_telegram_draft();
    }

    fn group_answered(&self) {
        metrics::record_group_message("answered");
    }

    fn group_kept(&self) {
        metrics::record_group_message("kept");
    }

    fn stop_pressed(&self, matched: bool) {
        metrics::record_stop(matched);
    }

    fn rich_fallback(&self) {
        metrics::record_rich_fallback();
    }

    fn setup_failed(&self, method: &'static str) {
        metrics::record_telegram_setup_failure(method);
    }
}

/// Counts reminder events and the firing lag.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReminderMetrics;

impl butler_application::reminders::ReminderObserver for ReminderMetrics {
    fn scheduled(&self) {
        metrics::record_reminder("scheduled");
    }

    fn cancelled(&self) {
        metrics::record_reminder("cancelled");
    }

    fn fired(&self, lag_seconds: f64, late: bool) {
        metrics::record_reminder("fired");
        if late {
            metrics::record_reminder("late");
        }
        metrics::record_reminder_lag(lag_seconds);
    }

    fn failed(&self) {
        metrics::record_reminder("failed");
    }

    fn offered(&self) {
        metrics::record_reminder("offered");
    }

    fn offer_answered(&self, accepted: bool) {
        metrics::record_reminder(if accepted {
            "offer_accepted"
        } else {
            "offer_declined"
        });
    }
}
