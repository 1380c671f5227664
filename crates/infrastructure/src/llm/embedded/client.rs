//! [`EmbeddedLlm`]: `LlmClient` over an [`EmbeddedModel`] in this process.
//!
//! One engine thread owns the llama.cpp context (a [`Session`] with its KV-cache slots) for the
//! life of the adapter, so a conversation's cached prefix survives between requests. Requests
//! queue (FIFO) behind the shared [`LlmConcurrency`] limit, then travel to the engine thread
//! as jobs; the generated text comes back as stream events while it is decoded. One deadline
//! covers queueing, reading the prompt and generating; a request whose caller gave up (the
//! stream was dropped) stops at its next decode step and frees the engine.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use butler_domain::ports::{LlmClient, LlmError, LlmReply, LlmRequest, LlmStream, StreamEvent};
use futures::StreamExt as _;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

use super::session::{Session, SessionConfig};
use super::EmbeddedModel;
use crate::llm::deltas::DeltaAssembler;
use crate::llm::LlmConcurrency;

/// How the embedded engine serves requests.
#[derive(Debug, Clone)]
pub struct EmbeddedConfig {
    /// Tokens per request (prompt + reply), at most the model's trained window; each cache slot
    /// holds this many.
    pub context_tokens: u32,
    /// One deadline for the whole call: queueing for a slot, reading the prompt, generating.
    pub request_timeout: Duration,
    /// The in-flight limit (1 by default: one request already uses every core). Requests run
    /// one at a time on the engine thread whatever the limit; it bounds the queue.
    pub concurrency: LlmConcurrency,
    /// Conversations whose KV cache is kept between requests (`LLM_CACHE_SLOTS`); 0 keeps
    /// none: every prompt is read from scratch.
    pub cache_slots: u32,
    /// CPU threads llama.cpp uses (`LLM_THREADS`).
    pub threads: i32,
}

impl EmbeddedConfig {
    /// A 4096-token window (or the model's if smaller), a 60 s deadline, one request at a
    /// time, 4 cached conversations, every core.
    #[must_use]
    pub fn for_model(model: &EmbeddedModel) -> Self {
        Self {
            context_tokens: model.context_window().min(4096),
            request_timeout: Duration::from_secs(60),
            concurrency: LlmConcurrency::new(std::num::NonZeroUsize::MIN),
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

/// A request on its way to the engine thread.
struct Job {
    request: LlmRequest,
    deadline: std::time::Instant,
    cancelled: Arc<AtomicBool>,
    events: tokio::sync::mpsc::UnboundedSender<Result<StreamEvent, LlmError>>,
    /// Released when the engine has really finished with the request, so a timed-out request
    /// never overlaps the next one on the CPU.
    _permit: OwnedSemaphorePermit,
}

/// Chat completions from a GGUF model loaded in this process.
#[derive(Clone)]
pub struct EmbeddedLlm {
    model: Arc<EmbeddedModel>,
    config: EmbeddedConfig,
    jobs: mpsc::Sender<Job>,
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
            .spawn(move || engine_thread(&engine_model, session, &queue))
            .map_err(|e| LlmError::Unavailable {
                detail: format!("cannot start the engine thread: {e}"),
            })?;
        Ok(Self {
            model,
            config,
            jobs,
        })
    }

    /// The loaded model.
    #[must_use]
    pub fn model(&self) -> &Arc<EmbeddedModel> {
        &self.model
    }
}

/// Serves jobs until every adapter is dropped. The session (and its KV cache) is created at
/// the first job; if it cannot be, every job gets that error.
fn engine_thread(model: &EmbeddedModel, config: SessionConfig, queue: &mpsc::Receiver<Job>) {
    let mut session: Option<Session<'_>> = None;
    while let Ok(job) = queue.recv() {
        if job.cancelled.load(Ordering::Relaxed) {
            continue;
        }
        if session.is_none() {
            match Session::new(model, config) {
                Ok(s) => session = Some(s),
                Err(e) => {
                    let _ = job.events.send(Err(e));
                    continue;
                }
            }
        }
        if let Some(session) = session.as_mut() {
            serve(session, job);
        }
    }
}

fn serve(session: &mut Session<'_>, job: Job) {
    let mut text = DeltaAssembler::default();
    let result = session.generate(
        &job.request,
        job.deadline,
        &job.cancelled,
        &mut |bytes: &[u8]| match text.push_bytes(bytes) {
            Some(delta) => job.events.send(Ok(StreamEvent::Delta(delta))).is_ok(),
            None => !job.cancelled.load(Ordering::Relaxed),
        },
    );
    let event = result.and_then(|stats| {
        let text = std::mem::take(&mut text).finish();
        tracing::debug!(
            prompt_tokens = stats.prompt_tokens,
            reused_tokens = stats.reused_tokens,
            completion_tokens = stats.generated_tokens,
            prompt_ms = stats.prompt_time.as_millis(),
            generation_ms = stats.generation_time.as_millis(),
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
    });
    // Inference has stopped: the slot is free before the caller hears the end, so a caller
    // that got its answer finds the slot released.
    let Job {
        events, _permit, ..
    } = job;
    drop(_permit);
    let _ = events.send(event);
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
        let permit = self
            .config
            .concurrency
            .slot_by(deadline, self.config.request_timeout)
            .await?;
        let (events, receiver) = tokio::sync::mpsc::unbounded_channel();
        let cancelled = Arc::new(AtomicBool::new(false));
        self.jobs
            .send(Job {
                request: request.clone(),
                deadline: deadline.into_std(),
                cancelled: Arc::clone(&cancelled),
                events,
                _permit: permit,
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
