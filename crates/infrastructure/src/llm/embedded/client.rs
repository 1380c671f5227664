//! [`EmbeddedLlm`]: `LlmClient` over an [`EmbeddedModel`] in this process.
//!
//! One engine thread owns the llama.cpp context (a [`Session`] with its KV-cache slots) for the
//! life of the adapter, so a conversation's cached prefix survives between requests. Interactive
//! requests queue (FIFO) behind the shared [`LlmConcurrency`] limit, background ones
//! ([`Priority::Background`]) go straight to the engine's own queue; both travel to the engine
//! thread as jobs, where a scheduler runs up to one generation per KV slot at once: all running
//! replies are decoded together in one batch per step, and background work runs only in steps
//! where no reply is running — it yields after at most one token or one small prompt chunk and resumes
//! later on the slot it kept. The generated text comes back as stream events while it is
//! decoded. One deadline covers queueing, reading the prompt and generating; a request whose
//! caller gave up (the stream was dropped) stops before the next decode step and frees its slot.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use butler_domain::ports::{
    LlmClient, LlmError, LlmReply, LlmRequest, LlmStream, Priority, StreamEvent,
};
use futures::StreamExt as _;
use tokio::time::Instant;

use super::session::{
    Generation, GenerationStats, Progress, Session, SessionConfig, BACKGROUND_CHUNK, PROMPT_CHUNK,
};
use super::EmbeddedModel;
use crate::llm::deltas::DeltaAssembler;
use crate::llm::{LlmConcurrency, LlmSlot};

/// How the embedded engine serves requests.
#[derive(Debug, Clone)]
pub struct EmbeddedConfig {
    /// Tokens per request (prompt + reply), at most the model's trained window; each cache slot
    /// holds this many.
    pub context_tokens: u32,
    /// One deadline for the whole call: queueing for a slot, reading the prompt, generating.
    pub request_timeout: Duration,
    /// The in-flight limit on interactive requests. The engine runs at most one generation
    /// per cache slot at once (the others wait in its queue); background requests are not
    /// counted, so they never hold a place a reply needs.
    pub concurrency: LlmConcurrency,
    /// Conversations whose KV cache is kept between requests (`LLM_CACHE_SLOTS`); 0 keeps
    /// none: every prompt is read from scratch.
    pub cache_slots: u32,
    /// CPU threads llama.cpp uses (`LLM_THREADS`).
    pub threads: i32,
}

impl EmbeddedConfig {
    /// A 4096-token window (or the model's if smaller), a 60 s deadline, 4 cached
    /// conversations and 4 replies in flight, every core.
    #[must_use]
    pub fn for_model(model: &EmbeddedModel) -> Self {
        Self {
            context_tokens: model.context_window().min(4096),
            request_timeout: Duration::from_secs(60),
            concurrency: LlmConcurrency::new(
                std::num::NonZeroUsize::new(4).unwrap_or(std::num::NonZeroUsize::MIN),
            ),
            cache_slots: 4,
            threads: super::default_threads(),
        }
    }

    fn session(&self) -> SessionConfig {
        SessionConfig {
            window: self.context_tokens,
            slots: self.cache_slots.max(1),
            reuse: self.cache_slots > 0,
            threads: self.threads.max(1),
        }
    }
}

/// Background requests (summaries, extractions) the engine holds at once, waiting or in
/// progress, unless [`EmbeddedLlm::with_background_limit`] says otherwise. More are refused at
/// once with [`LlmError::Unavailable`]: the work they belong to loses nothing (a compression
/// that fails deletes nothing and runs again later), and the engine's queue cannot grow
/// without bound while replies keep it busy.
pub const BACKGROUND_LIMIT: usize = 16;

/// How many background requests the engine holds, against its limit.
#[derive(Debug)]
struct BackgroundLoad {
    limit: usize,
    held: AtomicUsize,
}

impl BackgroundLoad {
    fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            limit,
            held: AtomicUsize::new(0),
        })
    }

    /// A place for one more background request, or the refusal.
    fn take(self: &Arc<Self>) -> Result<BackgroundTicket, LlmError> {
        self.held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.limit).then_some(n + 1)
            })
            .map(|_| BackgroundTicket(Arc::clone(self)))
            .map_err(|held| LlmError::Unavailable {
                detail: format!(
                    "the embedded engine already holds {held} background requests (its limit); \
                     this one is refused, try again later"
                ),
            })
    }
}

/// A background request's place; given back when the engine is done with the request.
struct BackgroundTicket(Arc<BackgroundLoad>);

impl Drop for BackgroundTicket {
    fn drop(&mut self) {
        self.0.held.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A request on its way to the engine thread.
struct Job {
    request: LlmRequest,
    deadline: std::time::Instant,
    /// The whole call's timeout, for the error once `deadline` passed.
    timeout: Duration,
    cancelled: Arc<AtomicBool>,
    events: tokio::sync::mpsc::UnboundedSender<Result<StreamEvent, LlmError>>,
    /// An interactive request's place under the in-flight limit, released when the engine has
    /// really finished with it. Background requests take none: they wait in the engine's own
    /// queue behind every interactive one instead of holding a place a reply needs.
    permit: Option<LlmSlot>,
    /// A background request's place under [`BACKGROUND_LIMIT`].
    _background: Option<BackgroundTicket>,
}

impl Job {
    /// Why it must stop now, if it must: its caller left, or its deadline passed.
    fn stopped(&self, now: std::time::Instant) -> Option<LlmError> {
        if self.cancelled.load(Ordering::Relaxed) || now >= self.deadline {
            Some(LlmError::Timeout {
                after: self.timeout,
            })
        } else {
            None
        }
    }

    /// Sends the final event, after releasing the permit (or the background place): a caller
    /// that got its answer finds its place free.
    fn finish(self, event: Result<StreamEvent, LlmError>) {
        let Self {
            events,
            permit,
            _background: background,
            ..
        } = self;
        drop(permit);
        drop(background);
        let _ = events.send(event);
    }
}

/// Chat completions from a GGUF model loaded in this process.
#[derive(Clone)]
pub struct EmbeddedLlm {
    model: Arc<EmbeddedModel>,
    config: EmbeddedConfig,
    jobs: mpsc::Sender<Job>,
    background: Arc<BackgroundLoad>,
}

impl std::fmt::Debug for EmbeddedLlm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedLlm")
            .field("model", &self.model)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl EmbeddedLlm {
    /// An adapter over a loaded model, with its engine thread (the KV cache is allocated at
    /// the first request).
    ///
    /// # Errors
    /// [`LlmError::Rejected`] if `config.context_tokens` is zero or larger than the model's
    /// trained window; [`LlmError::Unavailable`] if the engine thread cannot start.
    pub fn new(model: Arc<EmbeddedModel>, config: EmbeddedConfig) -> Result<Self, LlmError> {
        if config.context_tokens == 0 || config.context_tokens > model.context_window() {
            return Err(LlmError::Rejected {
                detail: format!(
                    "a {}-token context does not fit the model {} (trained window {})",
                    config.context_tokens,
                    model.path().display(),
                    model.context_window()
                ),
            });
        }
        let (jobs, queue) = mpsc::channel::<Job>();
        let engine_model = Arc::clone(&model);
        let session = config.session();
        std::thread::Builder::new()
            .name("llm-engine".to_owned())
            .spawn(move || Scheduler::new(&engine_model, session).run(&queue))
            .map_err(|e| LlmError::Unavailable {
                detail: format!("cannot start the engine thread: {e}"),
            })?;
        Ok(Self {
            model,
            config,
            jobs,
            background: BackgroundLoad::new(BACKGROUND_LIMIT),
        })
    }

    /// The same engine holding at most `limit` background requests at once (default
    /// [`BACKGROUND_LIMIT`]); for clones made after this call.
    #[must_use]
    pub fn with_background_limit(mut self, limit: usize) -> Self {
        self.background = BackgroundLoad::new(limit);
        self
    }

    /// The loaded model.
    #[must_use]
    pub fn model(&self) -> &Arc<EmbeddedModel> {
        &self.model
    }
}

/// How long an idle engine waits for more requests after one arrives before its first step.
const GATHER: Duration = Duration::from_millis(2);

/// A job whose generation is in progress on a slot.
struct Running {
    job: Job,
    generation: Generation,
    text: DeltaAssembler,
}

/// The engine thread's loop: takes jobs, starts them on free slots (interactive ones first,
/// then background ones, each in arrival order), and advances them one decode at a time —
/// every running interactive generation together in one batch; background ones only in a step
/// where no interactive one is running, so a background generation yields after at most one
/// prompt chunk or one token when a reply arrives, keeping its slot until it resumes.
struct Scheduler<'m> {
    model: &'m EmbeddedModel,
    config: SessionConfig,
    session: Option<Session<'m>>,
    waiting: VecDeque<Job>,
    running: Vec<Running>,
}

impl<'m> Scheduler<'m> {
    const fn new(model: &'m EmbeddedModel, config: SessionConfig) -> Self {
        Self {
            model,
            config,
            session: None,
            waiting: VecDeque::new(),
            running: Vec::new(),
        }
    }

    /// Serves jobs until every adapter is dropped. The session (and its KV cache) is created
    /// at the first job; if it cannot be, every waiting job gets that error.
    fn run(mut self, queue: &mpsc::Receiver<Job>) {
        loop {
            if self.running.is_empty() && self.waiting.is_empty() {
                match queue.recv() {
                    Ok(job) => self.waiting.push_back(job),
                    Err(_) => return,
                }
                // Requests sent at the same moment arrive a few hundred microseconds apart:
                // gather them so their prompts are read in one batch, rather than the first
                // one's alone and the others' a whole step later.
                while let Ok(job) = queue.recv_timeout(GATHER) {
                    self.waiting.push_back(job);
                }
            }
            while let Ok(job) = queue.try_recv() {
                self.waiting.push_back(job);
            }
            self.drop_stopped();
            if !self.ensure_session() {
                continue;
            }
            if let Some(session) = self.session.as_mut() {
                Self::admit(session, &mut self.waiting, &mut self.running);
                Self::step(session, &mut self.running);
            }
        }
    }

    /// The session, created at the first job. If llama.cpp cannot create it, the first waiting
    /// job gets the error and the next one tries again.
    fn ensure_session(&mut self) -> bool {
        if self.session.is_none() && !self.waiting.is_empty() {
            match Session::new(self.model, self.config) {
                Ok(s) => self.session = Some(s),
                Err(e) => {
                    if let Some(job) = self.waiting.pop_front() {
                        job.finish(Err(e));
                    }
                    return false;
                }
            }
        }
        self.session.is_some()
    }

    /// Ends the jobs whose caller left or whose deadline passed, waiting or running.
    fn drop_stopped(&mut self) {
        let now = std::time::Instant::now();
        let mut index = 0;
        while index < self.waiting.len() {
            if let Some(e) = self.waiting[index].stopped(now) {
                if let Some(job) = self.waiting.remove(index) {
                    tracing::debug!("embedded request stopped before it started");
                    job.finish(Err(e));
                }
            } else {
                index += 1;
            }
        }
        let mut index = 0;
        while index < self.running.len() {
            if let Some(e) = self.running[index].job.stopped(now) {
                let Running {
                    job, generation, ..
                } = self.running.swap_remove(index);
                tracing::debug!("embedded generation stopped (caller left or deadline)");
                // Every decoded token is in the cache: the conversation may go on from there.
                if let Some(session) = self.session.as_mut() {
                    session.end(generation, true);
                }
                job.finish(Err(e));
            } else {
                index += 1;
            }
        }
    }

    /// Starts waiting jobs on free slots: interactive ones first, in arrival order. With more
    /// than one slot, background jobs leave the last free slot to replies (a running
    /// generation is paused, not evicted, so a reply needs a slot of its own). A reply that
    /// finds every slot taken while a background generation holds one takes that slot: the
    /// background generation is suspended (it keeps what it generated and resumes on a free
    /// slot later), so a reply never waits for housekeeping — with a single slot too.
    /// Suspended background generations resume before new background jobs start.
    fn admit(session: &mut Session<'m>, waiting: &mut VecDeque<Job>, running: &mut Vec<Running>) {
        let reply_waiting = waiting
            .iter()
            .any(|j| j.request.priority == Priority::Interactive);
        if reply_waiting && !session.has_free_slot() {
            if let Some(r) = running.iter_mut().find(|r| {
                r.job.request.priority == Priority::Background && !r.generation.is_suspended()
            }) {
                tracing::debug!("a background generation yields its slot to a reply");
                session.suspend(&mut r.generation);
            }
        }
        while session.has_free_slot() {
            let (free, all) = session.free_slots();
            if let Some(i) = waiting
                .iter()
                .position(|j| j.request.priority == Priority::Interactive)
            {
                if let Some(job) = waiting.remove(i) {
                    Self::begin(session, job, running);
                }
                continue;
            }
            if !(free > 1 || all == 1) {
                return;
            }
            if let Some(r) = running.iter_mut().find(|r| r.generation.is_suspended()) {
                if session.resume(&mut r.generation).is_err() {
                    return;
                }
                continue;
            }
            let Some(job) = waiting.pop_front() else {
                return;
            };
            Self::begin(session, job, running);
        }
    }

    fn begin(session: &mut Session<'m>, job: Job, running: &mut Vec<Running>) {
        match session.begin(&job.request) {
            Ok(generation) => running.push(Running {
                job,
                generation,
                text: DeltaAssembler::default(),
            }),
            Err(e) => job.finish(Err(e)),
        }
    }

    /// One decode over the runnable generations, then their text to their callers.
    fn step(session: &mut Session<'m>, running: &mut Vec<Running>) {
        let interactive = running
            .iter()
            .any(|r| r.job.request.priority == Priority::Interactive);
        let runnable = |r: &Running| {
            interactive == (r.job.request.priority == Priority::Interactive)
                && !r.generation.is_suspended()
        };
        let mut chosen: Vec<&mut Generation> = running
            .iter_mut()
            .filter(|r| runnable(r))
            .map(|r| &mut r.generation)
            .collect();
        if chosen.is_empty() {
            return;
        }
        // A background prompt is read in small chunks: a reply that arrives waits for one.
        let budget = if interactive {
            PROMPT_CHUNK
        } else {
            BACKGROUND_CHUNK
        };
        let outcome = session.step(&mut chosen, budget);
        drop(chosen);
        let progress = match outcome {
            Ok(progress) => progress,
            Err(e) => {
                let detail = e.to_string();
                for r in extract(running, runnable) {
                    session.end(r.generation, false);
                    r.job.finish(Err(LlmError::Unavailable {
                        detail: detail.clone(),
                    }));
                }
                return;
            }
        };
        let mut progress = progress.into_iter();
        let mut index = 0;
        while index < running.len() {
            if !runnable(&running[index]) {
                index += 1;
                continue;
            }
            let step = progress.next().unwrap_or(Progress::Reading);
            let r = &mut running[index];
            let (bytes, finished) = match step {
                Progress::Reading => (None, false),
                Progress::Token(bytes) => (Some(bytes), false),
                Progress::Finished(bytes) => (bytes, true),
            };
            if let Some(delta) = bytes.and_then(|b| r.text.push_bytes(&b)) {
                if r.job.events.send(Ok(StreamEvent::Delta(delta))).is_err() {
                    // The caller left: the next round ends it.
                    r.job.cancelled.store(true, Ordering::Relaxed);
                }
            }
            if finished {
                let Running {
                    job,
                    generation,
                    text,
                } = running.remove(index);
                let stats = generation.stats();
                session.end(generation, true);
                job.finish(done(text, stats));
            } else {
                index += 1;
            }
        }
    }
}

/// Removes and returns the running jobs `which` selects.
fn extract(running: &mut Vec<Running>, which: impl Fn(&Running) -> bool) -> Vec<Running> {
    let (out, keep): (Vec<_>, Vec<_>) = std::mem::take(running).into_iter().partition(which);
    *running = keep;
    out
}

/// The final event of a finished generation.
fn done(text: DeltaAssembler, stats: GenerationStats) -> Result<StreamEvent, LlmError> {
    let text = text.finish();
    tracing::debug!(
        prompt_tokens = stats.prompt_tokens,
        reused_tokens = stats.reused_tokens,
        shifted_tokens = stats.shifted_tokens,
        completion_tokens = stats.generated_tokens,
        prompt_ms = stats.prompt_time.as_millis(),
        generation_ms = stats.generation_time.as_millis(),
        shift_decode_ms = stats.shift_decode.map(|(t, _)| t.as_secs_f64() * 1e3),
        "embedded completion finished"
    );
    if text.is_empty() {
        return Err(LlmError::InvalidResponse {
            detail: format!(
                "the embedded model generated no text ({} tokens)",
                stats.generated_tokens
            ),
        });
    }
    Ok(StreamEvent::Done(LlmReply {
        text,
        prompt_tokens: u32::try_from(stats.prompt_tokens).ok(),
        completion_tokens: u32::try_from(stats.generated_tokens).ok(),
        cached_prompt_tokens: u32::try_from(stats.reused_tokens).ok(),
    }))
}

/// Tells the engine to stop when the caller drops the stream.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// The events of one job, as the port's stream.
struct JobStream {
    events: tokio::sync::mpsc::UnboundedReceiver<Result<StreamEvent, LlmError>>,
    ended: bool,
    _cancel: CancelOnDrop,
}

impl futures::Stream for JobStream {
    type Item = Result<StreamEvent, LlmError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.ended {
            return Poll::Ready(None);
        }
        match self.events.poll_recv(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(event)) => {
                self.ended = !matches!(event, Ok(StreamEvent::Delta(_)));
                Poll::Ready(Some(event))
            }
            // The engine dropped the job without an answer (its thread died).
            Poll::Ready(None) => {
                self.ended = true;
                Poll::Ready(Some(Err(LlmError::Unavailable {
                    detail: "the engine thread stopped without an answer".to_owned(),
                })))
            }
        }
    }
}

#[async_trait]
impl LlmClient for EmbeddedLlm {
    async fn complete(&self, request: &LlmRequest) -> Result<LlmReply, LlmError> {
        let mut stream = self.stream(request).await?;
        while let Some(event) = stream.next().await {
            if let StreamEvent::Done(reply) = event? {
                return Ok(reply);
            }
        }
        Err(LlmError::Unavailable {
            detail: "the engine ended the stream without an answer".to_owned(),
        })
    }

    async fn stream(&self, request: &LlmRequest) -> Result<LlmStream, LlmError> {
        let deadline = Instant::now() + self.config.request_timeout;
        let (permit, background) = match request.priority {
            Priority::Interactive => (
                Some(
                    self.config
                        .concurrency
                        .slot_by(deadline, self.config.request_timeout)
                        .await?,
                ),
                None,
            ),
            Priority::Background => (None, Some(self.background.take()?)),
        };
        let (events, receiver) = tokio::sync::mpsc::unbounded_channel();
        let cancelled = Arc::new(AtomicBool::new(false));
        self.jobs
            .send(Job {
                request: request.clone(),
                deadline: deadline.into_std(),
                timeout: self.config.request_timeout,
                cancelled: Arc::clone(&cancelled),
                events,
                permit,
                _background: background,
            })
            .map_err(|_| LlmError::Unavailable {
                detail: "the engine thread has stopped".to_owned(),
            })?;
        Ok(Box::pin(JobStream {
            events: receiver,
            ended: false,
            _cancel: CancelOnDrop(cancelled),
        }))
    }
}
