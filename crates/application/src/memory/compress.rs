//! `CompressMemoryUseCase`: folds a user's older events into the rolling summary.
//!
//! A run starts only when the user has more than `threshold` events. It then fixes its target
//! once: everything older than the newest `keep_last` events *at the start of the run*. Events
//! that arrive while it runs are not chased (that made one summariser call per message during a
//! burst, each re-summarising the summary); they wait for the next crossing of the threshold.
//! So a run costs one summariser call, plus one per `fold_max_events` / `fold_max_tokens` of
//! backlog beyond the first.
//!
//! **One at a time.** A run holds the conversation's compression lease
//! ([`LeaseScope::Compression`]) from start to end, in whatever process it runs (the bot's
//! inline compressions, `memory-worker`, replicas): a second run finds the lease held and
//! returns [`CompressOutcome::Busy`] without asking the model anything. The lease is renewed
//! before every step that takes time or writes; a run whose lease was taken over (a reset) or
//! expired stops before its next write. Replies never wait for it: they hold their own scope.
//!
//! Each pass: re-read the profile; delete events already covered by its watermark (recovery
//! from a crash between "summary saved" and "events deleted"); pick the oldest whole turns
//! before the run's boundary; summarise them together with the previous summary; save
//! summary + watermark with compare-and-set on the profile version; only then delete events at
//! or below the new watermark. The compare-and-set stays the last line of defence should two
//! runs overlap all the same (a lease expired under a stalled process): the loser backs off and
//! deletes no event.
//!
//! Invariants (tested against fakes here and against both real backends):
//! - no event is deleted unless a persisted summary covers it;
//! - the previous summary is input to the next one, so it is never lost;
//! - two compressions of one conversation never run at once; if they overlap anyway, they
//!   produce one summary and lose no event and no fact;
//! - events appended during a compression are newer than the watermark and survive.
//!
//! Facts ([`with_facts`](CompressMemoryUseCase::with_facts)): after summarising a batch, one
//! more model call extracts the lasting facts it states ([`super::facts`]), and they are saved
//! *before* the summary's compare-and-set, so no event is deleted before the facts it gave are
//! stored. An extraction that fails (the model errs, or answers with no usable JSON) never
//! blocks the summary: the failure is counted and that batch's facts are left to the summary,
//! which folds the same turns. A fact store that fails stops the pass before anything is
//! deleted, like a failing event store. If the compare-and-set is then lost, the pass keeps the
//! facts it saved as long as the turns they came from are still remembered (stored, or covered
//! by the summary that won): they are true, and deleting them could leave their key with no
//! current fact — the winner's fact of the same key was superseded by them. Only when the
//! turns are gone (a reset won) does the pass delete its facts, so no fact of forgotten events
//! survives.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::FutureExt as _;

use butler_domain::ports::{
    Clock, ConversationLeases, FactRepository, FactStoreError, Lease, LeaseError, LeaseScope,
    LlmClient, LlmError, LlmRequest, MemoryStoreError, ProfileStoreError, RequestOptions,
    TokenCounter, UserMemoryRepository, UserProfileRepository,
};
use butler_domain::{ChatMessage, EventCursor, Role, UserId, UserMemoryEvent, UserProfile};
use thiserror::Error;

use super::facts::{self, ExtractionFailure};
use crate::prompt::templates;
use crate::prompt::trim::trim_to_tokens;

/// Tunables of compression.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CompressConfig {
    /// Compress only users with more than this many events.
    pub threshold: u64,
    /// Events kept verbatim after compression.
    pub keep_last: usize,
    /// Longest summary, in tokens.
    pub summary_max_tokens: usize,
    /// Most tokens of conversation folded by one summariser call.
    pub fold_max_tokens: usize,
    /// Most events folded by one summariser call.
    pub fold_max_events: usize,
    /// Most summariser calls in one run (a 10k-event backlog takes several runs).
    pub max_passes: usize,
    /// Sampling options of the summariser.
    pub options: RequestOptions,
    /// How long the compression lease lasts between two renewals: longer than the slowest
    /// step (one model call, with its queue), so a live run never loses it.
    pub lease: time::Duration,
}

impl Default for CompressConfig {
    fn default() -> Self {
        Self {
            threshold: 50,
            keep_last: 20,
            summary_max_tokens: 300,
            fold_max_tokens: 2500,
            fold_max_events: 80,
            max_passes: 20,
            options: RequestOptions {
                temperature: 0.2,
                max_tokens: 450,
            },
            lease: time::Duration::minutes(10),
        }
    }
}

/// What a compression run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompressOutcome {
    /// The user has no more than `threshold` events (or nothing foldable).
    NothingToDo {
        /// Events stored for the user.
        events: u64,
    },
    /// Events were folded into the summary.
    Compressed {
        /// Events folded into the summary.
        folded: usize,
        /// Events deleted from storage (including leftovers of an interrupted run).
        deleted: u64,
        /// Summariser calls made.
        passes: usize,
        /// Facts stored by this run (extraction on).
        facts: usize,
        /// Events left in storage.
        remaining: u64,
    },
    /// Another writer changed the profile first, or took the compression lease over (a
    /// reset); this run backed off without deleting. `folded` counts what earlier passes of
    /// this run had already completed.
    BackedOff {
        /// Events folded by earlier passes of this run.
        folded: usize,
    },
    /// Another compression of the conversation is running (here or in another process); this
    /// one did nothing.
    Busy,
    /// The user was quiet and no compression was due: the facts of the events not yet folded
    /// were extracted ([`CompressMemoryUseCase::execute_when_quiet`]); nothing was deleted.
    Extracted {
        /// Facts stored.
        facts: usize,
        /// Events stored for the user (all still there).
        events: u64,
    },
}

impl CompressOutcome {
    /// A bounded label for metrics: `skipped` (a quiet-time extraction too: nothing was
    /// folded), `ok`, `conflict`, `busy`.
    #[must_use]
    pub const fn status(&self) -> &'static str {
        match self {
            Self::NothingToDo { .. } | Self::Extracted { .. } => "skipped",
            Self::Compressed { .. } => "ok",
            Self::BackedOff { .. } => "conflict",
            Self::Busy => "busy",
        }
    }
}

/// Why a compression failed. Whatever the failure, no unsummarised event was deleted.
#[derive(Debug, Error)]
pub enum CompressError {
    /// The profile store failed.
    #[error("compression: {0}")]
    Profile(#[from] ProfileStoreError),
    /// The memory store failed.
    #[error("compression: {0}")]
    Memory(#[from] MemoryStoreError),
    /// The summariser failed.
    #[error("compression: {0}")]
    Llm(#[from] LlmError),
    /// The fact store failed; nothing of the pass was deleted.
    #[error("compression: {0}")]
    Facts(#[from] FactStoreError),
    /// The compression lease could not be taken or renewed; nothing of the pass was deleted.
    #[error("compression: {0}")]
    Lease(#[from] LeaseError),
}

/// Told when a fact extraction fails (the metric lives behind it, in the factory).
pub type ExtractionFailureHook = Arc<dyn Fn(ExtractionFailure) + Send + Sync>;

/// Told the user whose new facts a run stored (reminders offered from memory look at them).
/// Must be cheap and never block.
pub type FactsStoredHook = Arc<dyn Fn(UserId) + Send + Sync>;

/// Folds older events into the profile's rolling summary.
#[derive(Clone)]
pub struct CompressMemoryUseCase {
    profiles: Arc<dyn UserProfileRepository>,
    memory: Arc<dyn UserMemoryRepository>,
    llm: Arc<dyn LlmClient>,
    counter: Arc<dyn TokenCounter>,
    clock: Arc<dyn Clock>,
    leases: Arc<dyn ConversationLeases>,
    config: CompressConfig,
    facts: Option<Arc<dyn FactRepository>>,
    on_extraction_failure: Option<ExtractionFailureHook>,
    on_facts_stored: Option<FactsStoredHook>,
}

impl std::fmt::Debug for CompressMemoryUseCase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompressMemoryUseCase")
            .field("config", &self.config)
            .field("facts", &self.facts.is_some())
            .finish_non_exhaustive()
    }
}

enum Pass {
    Done,
    Folded {
        folded: usize,
        deleted: u64,
        facts: usize,
    },
    Conflict,
    /// The lease was taken over or expired: someone else writes this conversation now.
    LeaseLost,
}

impl CompressMemoryUseCase {
    /// Wires the use case to its ports; `leases` are the conversation leases every writer of
    /// the same storage shares.
    #[must_use]
    pub fn new(
        profiles: Arc<dyn UserProfileRepository>,
        memory: Arc<dyn UserMemoryRepository>,
        llm: Arc<dyn LlmClient>,
        counter: Arc<dyn TokenCounter>,
        clock: Arc<dyn Clock>,
        leases: Arc<dyn ConversationLeases>,
        config: CompressConfig,
    ) -> Self {
        Self {
            profiles,
            memory,
            llm,
            counter,
            clock,
            leases,
            config,
            facts: None,
            on_extraction_failure: None,
            on_facts_stored: None,
        }
    }

    /// Also extracts facts from each folded batch into `facts` (builder style); without it, a
    /// compression keeps only the summary.
    #[must_use]
    pub fn with_facts(mut self, facts: Arc<dyn FactRepository>) -> Self {
        self.facts = Some(facts);
        self
    }

    /// Reports every failed extraction to `hook` (builder style).
    #[must_use]
    pub fn on_extraction_failure(mut self, hook: ExtractionFailureHook) -> Self {
        self.on_extraction_failure = Some(hook);
        self
    }

    /// Tells `hook` the user after every run that stored facts (builder style).
    #[must_use]
    pub fn on_facts_stored(mut self, hook: FactsStoredHook) -> Self {
        self.on_facts_stored = Some(hook);
        self
    }

    /// The configuration in force.
    #[must_use]
    pub fn config(&self) -> &CompressConfig {
        &self.config
    }

    /// Compresses the user's memory if they have more than `threshold` events, holding the
    /// conversation's compression lease meanwhile ([`CompressOutcome::Busy`] if another run
    /// holds it).
    ///
    /// # Errors
    /// A [`CompressError`] if storage, the leases or the summariser failed; memory stays
    /// consistent.
    pub async fn execute(&self, user_id: UserId) -> Result<CompressOutcome, CompressError> {
        self.execute_as(user_id, false).await
    }

    /// The user has been quiet: compresses as [`Self::execute`] when a compression is due;
    /// otherwise, with facts on, extracts the facts of the events not yet folded — none is
    /// deleted and the summary is untouched — so that an update told since the last
    /// compression is a current fact before the user asks about it, rather than only a turn
    /// that may scroll out of the prompt while the old fact is still current. Skipped when no
    /// event is newer than the newest current fact (nothing new was said since).
    ///
    /// # Errors
    /// As [`Self::execute`].
    pub async fn execute_when_quiet(
        &self,
        user_id: UserId,
    ) -> Result<CompressOutcome, CompressError> {
        self.execute_as(user_id, true).await
    }

    async fn execute_as(
        &self,
        user_id: UserId,
        quiet: bool,
    ) -> Result<CompressOutcome, CompressError> {
        let events = self.memory.count(user_id).await?;
        let extract_only =
            quiet && events <= self.config.threshold && events > 0 && self.facts.is_some();
        if events <= self.config.threshold && !extract_only {
            return Ok(CompressOutcome::NothingToDo { events });
        }
        let Some(lease) = self
            .leases
            .acquire(
                user_id.get(),
                LeaseScope::Compression,
                self.clock.now(),
                self.config.lease,
            )
            .await?
        else {
            tracing::info!(user_id = %user_id, "another compression of this conversation is running; skipped");
            return Ok(CompressOutcome::Busy);
        };
        let mut lease = lease;
        // A panic (a bug in an adapter) must not hold the conversation's compressions back
        // for a whole lease: the lease is released, then the panic goes on.
        let work = async {
            if extract_only {
                self.extract_unfolded(user_id, events, &mut lease).await
            } else {
                self.run(user_id, events, &mut lease).await
            }
        };
        let result = AssertUnwindSafe(work).catch_unwind().await;
        if let Err(error) = self.leases.release(&lease).await {
            // It expires on its own; the next run waits for that at most.
            tracing::warn!(user_id = %user_id, %error, "compression lease not released");
        }
        let result = match result {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        if let (Some(hook), Ok(outcome)) = (&self.on_facts_stored, &result) {
            if matches!(
                outcome,
                CompressOutcome::Compressed { facts: 1.., .. }
                    | CompressOutcome::Extracted { facts: 1.., .. }
            ) {
                hook(user_id);
            }
        }
        result
    }

    /// Extracts the facts of the events the summary does not cover yet, deleting nothing.
    async fn extract_unfolded(
        &self,
        user_id: UserId,
        events: u64,
        lease: &mut Lease,
    ) -> Result<CompressOutcome, CompressError> {
        let Some(store) = &self.facts else {
            return Ok(CompressOutcome::NothingToDo { events });
        };
        let profile = self.profiles.get_or_create(user_id).await?;
        let mut unfolded = self
            .memory
            .recent(
                user_id,
                self.config.fold_max_events,
                profile.summary_watermark,
            )
            .await?;
        let newest_fact = store
            .current(user_id, 1)
            .await
            .inspect_err(|_| self.report(ExtractionFailure::Storage))?
            .first()
            .map(|f| f.created_at);
        let said_since = unfolded
            .last()
            .is_some_and(|e| newest_fact.is_none_or(|at| e.created_at > at));
        if !said_since || !unfolded.iter().any(|e| e.role == Role::User) {
            return Ok(CompressOutcome::NothingToDo { events });
        }
        self.limit_to_token_budget(&mut unfolded).await;
        match self.extract_and_save(&profile, &unfolded, lease).await? {
            Some(saved) => Ok(CompressOutcome::Extracted {
                facts: saved.len(),
                events,
            }),
            None => Ok(CompressOutcome::BackedOff { folded: 0 }),
        }
    }

    async fn run(
        &self,
        user_id: UserId,
        events: u64,
        lease: &mut Lease,
    ) -> Result<CompressOutcome, CompressError> {
        let Some(boundary) = self.boundary(user_id).await? else {
            return Ok(CompressOutcome::NothingToDo { events });
        };
        let (mut folded, mut deleted, mut passes, mut facts) = (0, 0, 0, 0);
        while passes < self.config.max_passes {
            match self.pass(user_id, boundary, lease).await? {
                Pass::Done => break,
                Pass::Conflict => {
                    tracing::info!(user_id = %user_id, folded, "compression backed off: profile changed concurrently");
                    return Ok(CompressOutcome::BackedOff { folded });
                }
                Pass::LeaseLost => {
                    tracing::info!(user_id = %user_id, folded, "compression backed off: its lease was taken over or expired");
                    return Ok(CompressOutcome::BackedOff { folded });
                }
                Pass::Folded {
                    folded: f,
                    deleted: d,
                    facts: n,
                } => {
                    folded += f;
                    deleted += d;
                    facts += n;
                    passes += 1;
                }
            }
        }
        if passes == 0 {
            return Ok(CompressOutcome::NothingToDo { events });
        }
        let remaining = self.memory.count(user_id).await?;
        tracing::info!(user_id = %user_id, folded, deleted, passes, facts, remaining, "memory compressed");
        Ok(CompressOutcome::Compressed {
            folded,
            deleted,
            passes,
            facts,
            remaining,
        })
    }

    /// Renews the lease; `false` when it is no longer held (stop before writing anything).
    async fn keep(&self, lease: &mut Lease) -> Result<bool, CompressError> {
        match self
            .leases
            .renew(lease, self.clock.now(), self.config.lease)
            .await?
        {
            Some(renewed) => {
                *lease = renewed;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// The oldest of the newest `keep_last` events visible now: this run folds only what is
    /// older. `None` when no more than `keep_last` events are visible.
    async fn boundary(&self, user_id: UserId) -> Result<Option<EventCursor>, CompressError> {
        let profile = self.profiles.get_or_create(user_id).await?;
        let kept = self
            .memory
            .recent(user_id, self.config.keep_last, profile.summary_watermark)
            .await?;
        Ok(kept
            .first()
            .filter(|_| kept.len() >= self.config.keep_last)
            .map(UserMemoryEvent::cursor))
    }

    async fn pass(
        &self,
        user_id: UserId,
        boundary: EventCursor,
        lease: &mut Lease,
    ) -> Result<Pass, CompressError> {
        if !self.keep(lease).await? {
            return Ok(Pass::LeaseLost);
        }
        let profile = self.profiles.get_or_create(user_id).await?;
        let previous = profile.summary_watermark;
        let mut deleted = 0;
        if let Some(watermark) = previous {
            // Covered by the persisted summary: leftovers of a run interrupted before its delete.
            deleted += self.memory.delete_up_to(user_id, watermark).await?;
        }
        let candidates = self
            .memory
            .events_up_to(user_id, boundary, self.config.fold_max_events + 1)
            .await?;
        let mut to_fold: Vec<UserMemoryEvent> = candidates
            .into_iter()
            .filter(|e| e.cursor() < boundary && previous.is_none_or(|w| e.cursor() > w))
            .take(self.config.fold_max_events)
            .collect();
        self.limit_to_token_budget(&mut to_fold).await;
        // Whole turns only: never fold a question whose answer stays behind.
        while to_fold.last().is_some_and(|e| e.role == Role::User) {
            to_fold.pop();
        }
        let Some(last) = to_fold.last() else {
            return Ok(Pass::Done);
        };
        let watermark = last.cursor();

        let summary = self.summarise(&profile, &to_fold).await?;
        if !self.keep(lease).await? {
            return Ok(Pass::LeaseLost);
        }
        // Stored before the summary: no event is deleted before the facts it gave are saved.
        let Some(saved) = self.extract_and_save(&profile, &to_fold, lease).await? else {
            return Ok(Pass::LeaseLost);
        };
        // The extraction asked the model and may have written facts: the lease again before
        // the summary is written. A pass stopped here keeps its facts only while their turns
        // are remembered, as after a lost compare-and-set.
        if self.facts.is_some() && !self.keep(lease).await? {
            self.forget_if_forgotten(user_id, watermark, &saved).await;
            return Ok(Pass::LeaseLost);
        }
        let mut next = profile.clone();
        next.memory_summary = Some(summary);
        next.summary_watermark = Some(watermark);
        next.updated_at = butler_domain::timestamp::truncate_to_millis(self.clock.now());
        match self.profiles.save(&next).await {
            Ok(_) => {}
            Err(ProfileStoreError::VersionConflict { .. }) => {
                // A reset must not find facts of the events it forgot; any other winner leaves
                // the turns remembered, and their facts stay (see the module docs).
                self.forget_if_forgotten(user_id, watermark, &saved).await;
                return Ok(Pass::Conflict);
            }
            Err(e) => {
                self.forget_if_forgotten(user_id, watermark, &saved).await;
                return Err(e.into());
            }
        }
        deleted += self.memory.delete_up_to(user_id, watermark).await?;
        Ok(Pass::Folded {
            folded: to_fold.len(),
            deleted,
            facts: saved.len(),
        })
    }

    /// After a lost compare-and-set: deletes the facts the pass saved if the turns they came
    /// from (up to `watermark`) are no longer remembered — neither covered by the summary now
    /// stored nor still stored as events, which only a reset does. If that cannot be told
    /// (storage failing), the facts go: forgetting on request comes first. Best effort.
    async fn forget_if_forgotten(
        &self,
        user_id: UserId,
        watermark: EventCursor,
        saved: &[uuid::Uuid],
    ) {
        if saved.is_empty() {
            return;
        }
        let covered = match self.profiles.get(user_id).await {
            Ok(Some(profile)) => profile.summary_watermark.is_some_and(|w| w >= watermark),
            Ok(None) | Err(_) => false,
        };
        let stored = !covered
            && self
                .memory
                .events_up_to(user_id, watermark, 1)
                .await
                .is_ok_and(|events| !events.is_empty());
        if covered || stored {
            tracing::info!(user_id = %user_id, facts = saved.len(), "lost the compare-and-set; the turns are still remembered, so their facts stay");
            return;
        }
        self.forget(user_id, saved).await;
    }

    /// Deletes the facts a pass saved (best effort).
    async fn forget(&self, user_id: UserId, saved: &[uuid::Uuid]) {
        let Some(store) = &self.facts else {
            return;
        };
        for id in saved {
            if let Err(error) = store.delete(user_id, *id).await {
                tracing::warn!(user_id = %user_id, %error, "a fact of a lost compression pass was not deleted");
            }
        }
    }

    /// Extracts the batch's facts and stores them; returns the ids stored, or `None` when the
    /// lease was lost before saving. A failed or unusable extraction is reported and gives
    /// none; a failing store is an error.
    async fn extract_and_save(
        &self,
        profile: &UserProfile,
        events: &[UserMemoryEvent],
        lease: &mut Lease,
    ) -> Result<Option<Vec<uuid::Uuid>>, CompressError> {
        let Some(store) = &self.facts else {
            return Ok(Some(Vec::new()));
        };
        let user_id = profile.user_id;
        let known = store
            .current(user_id, facts::MAX_KNOWN_FACTS)
            .await
            .inspect_err(|_| self.report(ExtractionFailure::Storage))?;
        let conversation = self.conversation(events).await;
        let request = LlmRequest::new(
            vec![
                ChatMessage::system(templates::extractor_system(profile.language)),
                ChatMessage::user(facts::extractor_input(&known, &conversation)),
            ],
            self.config.options,
        )
        .background()
        .json(facts::EXTRACTOR_SCHEMA_NAME, facts::EXTRACTOR_SCHEMA);
        let output = match self.llm.complete(&request).await {
            Ok(reply) => reply.text,
            Err(error) => {
                tracing::warn!(user_id = %user_id, %error, "fact extraction failed; the summary keeps these turns");
                self.report(ExtractionFailure::Llm);
                return Ok(Some(Vec::new()));
            }
        };
        // A fact is as new as the newest turn it was read from, not the moment the model
        // read it: facts read again from turns already extracted while the user was quiet
        // ([`Self::execute_when_quiet`]) are then older than what a later turn changed, and
        // can never supersede it.
        let stamp = events.iter().map(|e| e.created_at).max().map_or_else(
            || self.clock.now(),
            |newest| newest + time::Duration::milliseconds(1),
        );
        let now = butler_domain::timestamp::truncate_to_millis(stamp);
        let parsed = match facts::parse_facts(&output, user_id, events, now) {
            Ok(parsed) => parsed,
            Err(failure) => {
                tracing::warn!(user_id = %user_id, chars = output.chars().count(), "fact extraction gave no usable JSON; the summary keeps these turns");
                self.report(failure);
                return Ok(Some(Vec::new()));
            }
        };
        if parsed.rejected > 0 {
            tracing::info!(user_id = %user_id, rejected = parsed.rejected, "fact extraction: unusable items skipped");
        }
        let new: Vec<_> = facts::last_word_per_key(parsed.facts)
            .into_iter()
            .filter(|f| !facts::repeats_known(f, &known))
            .map(|f| facts::inherit_cues(f, &known))
            .collect();
        if new.is_empty() {
            return Ok(Some(Vec::new()));
        }
        if !self.keep(lease).await? {
            return Ok(None);
        }
        store
            .save(&new)
            .await
            .inspect_err(|_| self.report(ExtractionFailure::Storage))?;
        Ok(Some(new.iter().map(|f| f.id).collect()))
    }

    fn report(&self, failure: ExtractionFailure) {
        if let Some(hook) = &self.on_extraction_failure {
            hook(failure);
        }
    }

    /// Keeps the oldest events whose entries in the summariser's input fit `fold_max_tokens`
    /// (at least one turn).
    async fn limit_to_token_budget(&self, events: &mut Vec<UserMemoryEvent>) {
        let mut used = 0;
        let mut keep = 0;
        for e in events.iter() {
            // The entry as sent, JSON framing and escapes included.
            let entry = templates::summariser_event(e.role == Role::Assistant, &e.content);
            let tokens = self.counter.count(&entry).await;
            if keep >= 2 && used + tokens > self.config.fold_max_tokens {
                break;
            }
            used += tokens;
            keep += 1;
        }
        events.truncate(keep);
    }

    /// The events as the summariser's and the extractor's JSON entries.
    async fn conversation(&self, events: &[UserMemoryEvent]) -> Vec<String> {
        // A single giant message must not overflow the model's window.
        let per_event = self.config.fold_max_tokens / 2;
        let mut conversation = Vec::with_capacity(events.len());
        for e in events {
            let content = trim_to_tokens(
                &*self.counter,
                e.content.trim(),
                per_event,
                templates::CUT_MARKER,
            )
            .await;
            // Who spoke is the event's role, serialised as data: text that looks like a
            // "Дворецкий:" line or a JSON entry stays inside the user's own entry.
            conversation.push(templates::summariser_event(
                e.role == Role::Assistant,
                &content,
            ));
        }
        conversation
    }

    async fn summarise(
        &self,
        profile: &UserProfile,
        events: &[UserMemoryEvent],
    ) -> Result<String, CompressError> {
        let language = profile.language;
        let conversation = self.conversation(events).await;
        let request = LlmRequest::new(
            vec![
                ChatMessage::system(templates::summariser_system(
                    language,
                    self.config.summary_max_tokens,
                )),
                ChatMessage::user(templates::summariser_input(
                    profile.memory_summary.as_deref(),
                    &conversation,
                )),
            ],
            self.config.options,
        )
        .background();
        let reply = self.llm.complete(&request).await?;
        let summary = trim_to_tokens(
            &*self.counter,
            reply.text.trim(),
            self.config.summary_max_tokens,
            "…",
        )
        .await;
        let max_chars = butler_domain::profile::MAX_SUMMARY_CHARS;
        Ok(if summary.chars().count() > max_chars {
            summary.chars().take(max_chars).collect()
        } else {
            summary
        })
    }
}
