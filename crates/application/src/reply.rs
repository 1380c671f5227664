//! `PersonalizedReplyUseCase`: one user message in, one butler reply out.
//!
//! Load the profile (created on first contact) and the recent events newer than the summary
//! watermark, build the prompt within the budget, ask the model, store the user and assistant
//! events, and — if the user now has more than the threshold — ask the scheduler for a
//! compression the reply does not wait for: once the user has been quiet for a while, or at
//! once past the hard limit.
//!
//! Failure policy: the user always gets an answer. A failing model gives the fallback reply
//! and nothing is stored (memory never holds a question without its answer). A failing store
//! gives a degraded reply: the answer is still returned, the failure is reported in the status.

use std::sync::Arc;
use std::time::Instant;

use butler_domain::ports::{
    Clock, FactRepository, LlmClient, LlmError, LlmReply, LlmRequest, RequestOptions, StreamEvent,
    UserMemoryRepository, UserProfileRepository,
};
use butler_domain::{
    MemoryFact, MemorySlice, PersonalizedPrompt, Role, Source, UserId, UserMemoryEvent, UserProfile,
};
use futures::StreamExt as _;

use crate::memory::CompressionScheduler;
use crate::prompt::templates::FALLBACK_REPLY;
use crate::prompt::PersonalizationService;

/// Most current facts read per reply to pick the core ones from: all of them in practice (an
/// early-learnt name must not drop out because newer facts exist).
const MAX_FACTS_LOADED: usize = 1_000;

/// Most facts a search for the message returns.
const MAX_RELEVANT_FACTS: usize = 8;

/// A found fact joins the note beside the message when its score is at least this share of
/// the best one's: several facts when several bear on the message, not the long tail that
/// shares one common word with it.
const RELEVANCE_SHARE: f64 = 0.3;

/// Tunables of the reply path.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReplyConfig {
    /// Recent events loaded into the prompt.
    pub recent_limit: usize,
    /// More stored events than this schedule a compression, run once the user has been quiet
    /// for [`Self::compress_idle`]. Over [`Self::recent_limit`] (but not this), the quiet
    /// moment extracts facts without folding (see
    /// [`crate::CompressMemoryUseCase::execute_when_quiet`]).
    pub compress_threshold: u64,
    /// How long the user must be quiet before a due compression runs (its summary and fact
    /// extraction compete with the user's next replies for the model); zero = at once.
    pub compress_idle: std::time::Duration,
    /// More stored events than this compress at once, quiet or not, so memory never grows
    /// without bound while a user keeps talking.
    pub compress_hard_limit: u64,
    /// Sampling options of replies.
    pub options: RequestOptions,
    /// `false` = stateless replies: no persona, no memory read or written.
    pub personalization_enabled: bool,
}

impl Default for ReplyConfig {
    fn default() -> Self {
        Self {
            recent_limit: 20,
            compress_threshold: 50,
            compress_idle: std::time::Duration::from_secs(20),
            compress_hard_limit: 70,
            options: RequestOptions::default(),
            personalization_enabled: true,
        }
    }
}

/// A message to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyInput {
    /// Who wrote it.
    pub user_id: UserId,
    /// What they wrote (or what speech-to-text heard).
    pub text: String,
    /// How it arrived.
    pub source: Source,
    /// Where the message came from, unique per message (e.g. `telegram-update:42`), when it
    /// may be delivered more than once: stored as a tag on both events of the turn, and a
    /// message whose origin the memory already holds is not answered again — its stored
    /// reply is returned ([`ReplyStatus::Repeated`]), with no model call and nothing stored.
    pub origin: Option<String>,
}

/// How the reply went, for metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyStatus {
    /// Model answered, memory stored.
    Ok,
    /// Model answered, but storage failed somewhere (reply still sent).
    Degraded,
    /// Model failed: the fallback reply was returned and nothing stored.
    LlmError,
    /// The memory already held this message's turn (same [`ReplyInput::origin`]): its stored
    /// reply was returned, nothing asked and nothing stored.
    Repeated,
    /// The person stopped the reply while it was written ([`ReplySink::stopped`]): the
    /// generation was cancelled, and what had been written so far is the reply, stored as the
    /// butler's turn.
    Stopped,
}

impl ReplyStatus {
    /// A bounded label for metrics: `ok`, `degraded`, `error`, `repeated`, `stopped`.
    #[must_use]
    pub const fn code(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Degraded => "degraded",
            Self::LlmError => "error",
            Self::Repeated => "repeated",
            Self::Stopped => "stopped",
        }
    }
}

/// The reply and what went into it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyOutput {
    /// Text to send to the user.
    pub reply: String,
    /// Outcome for metrics.
    pub status: ReplyStatus,
    /// Whether the persona (and memory) were used.
    pub used_persona: bool,
    /// The persona the reply was written in (for logs).
    pub persona: String,
    /// Recent events that made it into the prompt.
    pub memory_events_used: usize,
    /// Remembered facts that made it into the prompt.
    pub facts_used: usize,
    /// Tokens of the prompt.
    pub prompt_tokens: usize,
    /// Whether a compression was scheduled.
    pub compression_scheduled: bool,
    /// Time spent waiting for the model.
    pub llm_time: std::time::Duration,
    /// Time from asking the model to its first piece of text, when the reply was streamed.
    pub first_token_time: Option<std::time::Duration>,
}

/// Receives a reply's text while the model generates it (a Telegram draft, the terminal).
/// Called with each new piece, in order; the pieces add up to the final reply unless the model
/// fails midway, in which case the output's reply is the fallback sentence instead.
pub trait ReplySink: Send + Sync {
    /// The next piece of the reply. Must be cheap and never block.
    fn delta(&self, text: &str);

    /// Resolves when the person asks to stop the reply (a stop button): the generation is then
    /// cancelled at once, and the reply is what was written so far ([`ReplyStatus::Stopped`]).
    /// Never, by default.
    fn stopped(&self) -> futures::future::BoxFuture<'static, ()> {
        Box::pin(futures::future::pending())
    }
}

/// Told about every reply (metrics and the per-reply log line live behind it, in the factory).
pub trait ReplyObserver: Send + Sync {
    /// Called once per answered message, after memory was stored (or failed to be).
    fn observe(&self, input: &ReplyInput, output: &ReplyOutput, elapsed: std::time::Duration);
}

/// Answers one message in the butler's persona.
#[derive(Clone)]
pub struct PersonalizedReplyUseCase {
    profiles: Arc<dyn UserProfileRepository>,
    memory: Arc<dyn UserMemoryRepository>,
    llm: Arc<dyn LlmClient>,
    clock: Arc<dyn Clock>,
    personalization: PersonalizationService,
    scheduler: Arc<dyn CompressionScheduler>,
    config: ReplyConfig,
    observer: Option<Arc<dyn ReplyObserver>>,
    facts: Option<Arc<dyn FactRepository>>,
}

impl std::fmt::Debug for PersonalizedReplyUseCase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PersonalizedReplyUseCase")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl PersonalizedReplyUseCase {
    /// Wires the use case to its ports.
    #[must_use]
    pub fn new(
        profiles: Arc<dyn UserProfileRepository>,
        memory: Arc<dyn UserMemoryRepository>,
        llm: Arc<dyn LlmClient>,
        clock: Arc<dyn Clock>,
        personalization: PersonalizationService,
        scheduler: Arc<dyn CompressionScheduler>,
        config: ReplyConfig,
    ) -> Self {
        Self {
            profiles,
            memory,
            llm,
            clock,
            personalization,
            scheduler,
            config,
            observer: None,
            facts: None,
        }
    }

    /// Puts the user's remembered facts into prompts (builder style): the core ones always,
    /// and those that [`FactRepository::search`] finds for the message.
    #[must_use]
    pub fn with_facts(mut self, facts: Arc<dyn FactRepository>) -> Self {
        self.facts = Some(facts);
        self
    }

    /// Reports every reply to `observer` (builder style).
    #[must_use]
    pub fn with_observer(mut self, observer: Arc<dyn ReplyObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// The configuration in force.
    #[must_use]
    pub fn config(&self) -> &ReplyConfig {
        &self.config
    }

    /// Answers `input`. Never fails: failures become the fallback reply or a degraded status.
    pub async fn execute(&self, input: ReplyInput) -> ReplyOutput {
        self.run(input, None).await
    }

    /// Answers `input`, handing the reply to `sink` piece by piece while it is generated.
    /// Otherwise exactly [`Self::execute`]: the same memory rules (a model that fails after
    /// some text was streamed gives the fallback reply, and nothing is stored).
    pub async fn execute_streaming(&self, input: ReplyInput, sink: &dyn ReplySink) -> ReplyOutput {
        self.run(input, Some(sink)).await
    }

    async fn run(&self, input: ReplyInput, sink: Option<&dyn ReplySink>) -> ReplyOutput {
        let started = Instant::now();
        let output = self.answer(&input, sink).await;
        if let Some(observer) = &self.observer {
            observer.observe(&input, &output, started.elapsed());
        }
        output
    }

    async fn answer(&self, input: &ReplyInput, sink: Option<&dyn ReplySink>) -> ReplyOutput {
        if !self.config.personalization_enabled {
            return self.stateless(input, sink).await;
        }
        let mut degraded = false;
        let profile = match self.profiles.get_or_create(input.user_id).await {
            Ok(p) => Some(p),
            Err(error) => {
                tracing::warn!(user_id = %input.user_id, %error, "profile unavailable; replying with the default persona");
                degraded = true;
                None
            }
        };
        let memory = match &profile {
            Some(p) => {
                let (mut memory, facts) =
                    futures::join!(self.load_memory(p, &mut degraded), self.load_facts(input));
                match facts {
                    Ok((core, relevant)) => {
                        memory.core_facts = core;
                        memory.relevant_facts = relevant;
                    }
                    Err(()) => degraded = true,
                }
                memory
            }
            None => MemorySlice::default(),
        };
        let profile =
            profile.unwrap_or_else(|| UserProfile::default_at(input.user_id, self.clock.now()));
        if let Some(output) = Self::repeated(input, &profile, &memory) {
            return output;
        }
        let prompt = self
            .personalization
            .build(&profile, &memory, &input.text)
            .await;

        let asked = self.ask(&prompt, sink).await;
        let (llm_time, first_token_time, stopped) =
            (asked.elapsed, asked.first_token, asked.stopped);
        let Ok(reply) = asked.reply else {
            return Self::fallback(&profile, &prompt, llm_time, first_token_time);
        };

        let mut compression_scheduled = false;
        let (user_at, assistant_at) = self.stamps(&profile, &memory);
        let mut events = [
            UserMemoryEvent::user(input.user_id, input.text.clone(), input.source, user_at),
            UserMemoryEvent::assistant(input.user_id, reply.clone(), input.source, assistant_at),
        ];
        if let Some(origin) = &input.origin {
            for event in &mut events {
                event.tags.push(origin.clone());
            }
        }
        match self.memory.append(&events).await {
            Ok(()) => {
                let stored = memory.total_events + 2;
                if stored > self.config.compress_hard_limit || self.config.compress_idle.is_zero() {
                    if stored > self.config.compress_threshold {
                        self.scheduler.schedule(input.user_id);
                        compression_scheduled = true;
                    }
                } else if stored > self.config.compress_threshold {
                    self.scheduler
                        .schedule_when_idle(input.user_id, self.config.compress_idle);
                    compression_scheduled = true;
                } else if stored > self.config.recent_limit as u64 {
                    // Not due, but turns are about to leave the prompt's window: once the user
                    // is quiet, the facts they told are extracted (no fold), so an update is a
                    // current fact before an old one can mislead.
                    self.scheduler
                        .schedule_when_idle(input.user_id, self.config.compress_idle);
                }
            }
            Err(error) => {
                tracing::warn!(user_id = %input.user_id, %error, "memory not stored; reply sent anyway");
                degraded = true;
            }
        }
        ReplyOutput {
            reply,
            status: if stopped {
                ReplyStatus::Stopped
            } else if degraded {
                ReplyStatus::Degraded
            } else {
                ReplyStatus::Ok
            },
            used_persona: true,
            persona: profile.persona.clone(),
            memory_events_used: prompt.turns.len(),
            facts_used: prompt.facts_used,
            prompt_tokens: prompt.token_count,
            compression_scheduled,
            llm_time,
            first_token_time,
        }
    }

    /// The stored answer when the memory already holds the turn of `input`'s origin: a
    /// redelivered message (a crash between storing the turn and marking the update done).
    /// The turn is the newest of the user's memory, as nothing of theirs is answered after it
    /// before it is done, so the loaded window holds it.
    fn repeated(
        input: &ReplyInput,
        profile: &UserProfile,
        memory: &MemorySlice,
    ) -> Option<ReplyOutput> {
        let origin = input.origin.as_deref()?;
        let answer = memory
            .events
            .iter()
            .rev()
            .find(|e| e.role == Role::Assistant && e.tags.iter().any(|t| t == origin))?;
        tracing::info!(user_id = %input.user_id, origin, "turn already in memory; repeating its reply");
        Some(ReplyOutput {
            reply: answer.content.clone(),
            status: ReplyStatus::Repeated,
            used_persona: true,
            persona: profile.persona.clone(),
            memory_events_used: 0,
            facts_used: 0,
            prompt_tokens: 0,
            compression_scheduled: false,
            llm_time: std::time::Duration::ZERO,
            first_token_time: None,
        })
    }

    /// Times for the new user and assistant events: now, but strictly after everything the
    /// user already has (events are ordered by time, then by id). Without the floor, a burst
    /// of messages stamped within one millisecond interleaved their turns at random: a user
    /// event could sort before the previous answer, which broke whole-turn folding.
    fn stamps(
        &self,
        profile: &UserProfile,
        memory: &MemorySlice,
    ) -> (time::OffsetDateTime, time::OffsetDateTime) {
        let tick = time::Duration::milliseconds(1);
        let newest = memory
            .events
            .last()
            .map(|e| e.created_at)
            .or(profile.summary_watermark.map(|w| w.created_at));
        let now = butler_domain::timestamp::truncate_to_millis(self.clock.now());
        let user_at = newest.map_or(now, |newest| now.max(newest + tick));
        let assistant_at =
            butler_domain::timestamp::truncate_to_millis(self.clock.now()).max(user_at + tick);
        (user_at, assistant_at)
    }

    async fn load_memory(&self, profile: &UserProfile, degraded: &mut bool) -> MemorySlice {
        let user_id = profile.user_id;
        // A block more than the window: the window's start then moves in blocks (prompt caches).
        let (recent, count) = futures::join!(
            self.memory.recent(
                user_id,
                self.config.recent_limit + crate::prompt::WINDOW_BLOCK - 1,
                profile.summary_watermark
            ),
            self.memory.count(user_id)
        );
        let mut events = recent.unwrap_or_else(|error| {
            tracing::warn!(user_id = %user_id, %error, "recent memory unavailable; replying without it");
            *degraded = true;
            Vec::new()
        });
        let total_events = count.unwrap_or_else(|error| {
            tracing::warn!(user_id = %user_id, %error, "event count unavailable");
            *degraded = true;
            events.len() as u64
        });
        let start =
            crate::prompt::window_start(events.len(), total_events, self.config.recent_limit);
        events.drain(..start);
        MemorySlice {
            events,
            summary: profile.memory_summary.clone(),
            total_events,
            ..MemorySlice::default()
        }
    }

    /// The user's core facts (by key) and the facts found for the message (best first);
    /// `Err` (already logged) when the fact store failed: the reply goes on without facts.
    async fn load_facts(
        &self,
        input: &ReplyInput,
    ) -> Result<(Vec<MemoryFact>, Vec<MemoryFact>), ()> {
        // No store, or no room for facts in the prompt: nothing to read.
        let Some(store) = self
            .facts
            .as_ref()
            .filter(|_| self.personalization.budget().facts > 0)
        else {
            return Ok((Vec::new(), Vec::new()));
        };
        let user_id = input.user_id;
        let (current, found) = futures::join!(
            store.current(user_id, MAX_FACTS_LOADED),
            store.search(user_id, &input.text, MAX_RELEVANT_FACTS)
        );
        let (current, found) = match (current, found) {
            (Ok(current), Ok(found)) => (current, found),
            (Err(error), _) | (_, Err(error)) => {
                tracing::warn!(user_id = %user_id, %error, "facts unavailable; replying without them");
                return Err(());
            }
        };
        let mut core: Vec<(u8, MemoryFact)> = current
            .into_iter()
            .filter_map(|f| Some((f.core_rank()?, f)))
            .collect();
        // Most important first (the user's name, partner, children, parents, other people),
        // then by key: a stable order, so the system message stays the same from turn to turn.
        core.sort_by(|(ra, a), (rb, b)| (ra, &a.key).cmp(&(rb, &b.key)));
        let core = core.into_iter().map(|(_, f)| f).collect();
        // Core facts stay among the found ones: those the system message has no room for are
        // shown beside the message when it asks about them (the builder drops the shown ones).
        let best = found.first().map_or(0.0, |m| m.score);
        let relevant = found
            .into_iter()
            .filter(|m| m.score >= best * RELEVANCE_SHARE)
            .map(|m| m.fact)
            .collect();
        Ok((core, relevant))
    }

    async fn ask(&self, prompt: &PersonalizedPrompt, sink: Option<&dyn ReplySink>) -> Asked {
        let request = LlmRequest::new(prompt.to_messages(), self.config.options);
        let started = Instant::now();
        let mut first_token = None;
        let mut stopped = false;
        let result = match sink {
            None => self.llm.complete(&request).await,
            Some(sink) => {
                let mut on_delta = |text: &str| {
                    first_token.get_or_insert_with(|| started.elapsed());
                    sink.delta(text);
                };
                match self.stream(&request, &mut on_delta, sink.stopped()).await {
                    Ok(Streamed::Done(reply)) => Ok(reply),
                    Ok(Streamed::Stopped(partial)) => {
                        stopped = true;
                        tracing::info!(
                            chars = partial.chars().count(),
                            "reply stopped by the person; keeping what was written"
                        );
                        // Nothing written yet still makes a turn: the butler was cut short.
                        Ok(LlmReply::text(if partial.trim().is_empty() {
                            "…".to_owned()
                        } else {
                            format!("{}…", partial.trim_end())
                        }))
                    }
                    Err(error) => Err(error),
                }
            }
        };
        let elapsed = started.elapsed();
        let reply = match result {
            Ok(reply) if !reply.text.trim().is_empty() => Ok(reply.text.trim().to_owned()),
            Ok(_) => {
                tracing::warn!("language model returned an empty reply");
                Err(())
            }
            Err(error) => {
                tracing::warn!(%error, kind = error.kind(), "language model failed; sending the fallback reply");
                Err(())
            }
        };
        Asked {
            reply,
            elapsed,
            first_token,
            stopped,
        }
    }

    /// Streams a completion, handing each delta to `on_delta`, until it ends or `stop`
    /// resolves (the stream is then dropped, which stops the generation): the final reply, the
    /// text written before the stop, or the error that ended the stream.
    async fn stream(
        &self,
        request: &LlmRequest,
        on_delta: &mut (dyn FnMut(&str) + Send),
        stop: futures::future::BoxFuture<'static, ()>,
    ) -> Result<Streamed, LlmError> {
        let mut stop = stop;
        let mut written = String::new();
        let opened = {
            let open = self.llm.stream(request);
            futures::pin_mut!(open);
            match futures::future::select(open, &mut stop).await {
                futures::future::Either::Left((opened, _)) => opened?,
                futures::future::Either::Right(((), _)) => return Ok(Streamed::Stopped(written)),
            }
        };
        let mut stream = opened;
        loop {
            let next = stream.next();
            match futures::future::select(next, &mut stop).await {
                futures::future::Either::Right(((), _)) => return Ok(Streamed::Stopped(written)),
                futures::future::Either::Left((None, _)) => break,
                futures::future::Either::Left((Some(event), _)) => match event? {
                    StreamEvent::Delta(text) => {
                        written.push_str(&text);
                        on_delta(&text);
                    }
                    StreamEvent::Done(reply) => return Ok(Streamed::Done(reply)),
                },
            }
        }
        Err(LlmError::InvalidResponse {
            detail: "the stream ended without a final reply".to_owned(),
        })
    }

    fn fallback(
        profile: &UserProfile,
        prompt: &PersonalizedPrompt,
        llm_time: std::time::Duration,
        first_token_time: Option<std::time::Duration>,
    ) -> ReplyOutput {
        ReplyOutput {
            reply: FALLBACK_REPLY.to_owned(),
            status: ReplyStatus::LlmError,
            used_persona: true,
            persona: profile.persona.clone(),
            memory_events_used: prompt.turns.len(),
            facts_used: prompt.facts_used,
            prompt_tokens: prompt.token_count,
            compression_scheduled: false,
            llm_time,
            first_token_time,
        }
    }

    async fn stateless(&self, input: &ReplyInput, sink: Option<&dyn ReplySink>) -> ReplyOutput {
        let prompt = self.personalization.build_stateless(&input.text).await;
        let asked = self.ask(&prompt, sink).await;
        let (reply, status) = match asked.reply {
            Ok(text) => (text, ReplyStatus::Ok),
            Err(()) => (FALLBACK_REPLY.to_owned(), ReplyStatus::LlmError),
        };
        ReplyOutput {
            reply,
            status,
            used_persona: false,
            persona: String::new(),
            memory_events_used: 0,
            facts_used: 0,
            prompt_tokens: prompt.token_count,
            compression_scheduled: false,
            llm_time: asked.elapsed,
            first_token_time: asked.first_token,
        }
    }
}

/// How a streamed completion ended.
enum Streamed {
    /// The model finished.
    Done(LlmReply),
    /// The person stopped it; the text written until then.
    Stopped(String),
}

/// What asking the model gave.
struct Asked {
    /// The trimmed reply, or `Err` when the model failed (already logged).
    reply: Result<String, ()>,
    /// Time spent on the model.
    elapsed: std::time::Duration,
    /// Time to the first streamed piece, when streamed.
    first_token: Option<std::time::Duration>,
    /// Whether the person stopped the reply (`reply` is then what was written before).
    stopped: bool,
}
