//! [`EmbeddedLlm`]: `LlmClient` over an [`EmbeddedModel`] in this process. Requests queue
//! (FIFO) behind the shared [`LlmConcurrency`] limit, run on tokio's blocking threads, and are
//! bound by one deadline; a request whose caller gave up stops at its next decode step.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use butler_domain::ports::{LlmClient, LlmError, LlmReply, LlmRequest};
use tokio::time::{timeout_at, Instant};

use super::EmbeddedModel;
use crate::llm::LlmConcurrency;

/// How the embedded engine serves requests.
#[derive(Debug, Clone)]
pub struct EmbeddedConfig {
    /// Context size per request (prompt + reply), at most the model's trained window.
    pub context_tokens: u32,
    /// One deadline for the whole call: queueing for a slot, reading the prompt, generating.
    pub request_timeout: Duration,
    /// The in-flight limit (1 by default: one request already uses every core).
    pub concurrency: LlmConcurrency,
}

impl EmbeddedConfig {
    /// A 4096-token context (or the model's window if smaller), a 60 s deadline and one
    /// request at a time.
    #[must_use]
    pub fn for_model(model: &EmbeddedModel) -> Self {
        Self {
            context_tokens: model.context_window().min(4096),
            request_timeout: Duration::from_secs(60),
            concurrency: LlmConcurrency::new(std::num::NonZeroUsize::MIN),
        }
    }
}

/// Chat completions from a GGUF model loaded in this process.
#[derive(Debug, Clone)]
pub struct EmbeddedLlm {
    model: Arc<EmbeddedModel>,
    config: EmbeddedConfig,
}

impl EmbeddedLlm {
    /// An adapter over a loaded model.
    ///
    /// # Errors
    /// [`LlmError::Rejected`] if `config.context_tokens` is zero or larger than the model's
    /// trained window.
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
        Ok(Self { model, config })
    }

    /// The loaded model.
    #[must_use]
    pub fn model(&self) -> &Arc<EmbeddedModel> {
        &self.model
    }
}

/// Tells the blocking generation to stop when the caller's future is dropped or times out.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

#[async_trait]
impl LlmClient for EmbeddedLlm {
    async fn complete(&self, request: &LlmRequest) -> Result<LlmReply, LlmError> {
        let started = Instant::now();
        let deadline = started + self.config.request_timeout;
        let timeout = || LlmError::Timeout {
            after: self.config.request_timeout,
        };
        // Queueing counts against the deadline: a user waits for the whole thing.
        let permit = match timeout_at(deadline, self.config.concurrency.acquire_owned()).await {
            Err(_) => return Err(timeout()),
            Ok(Err(_closed)) => {
                return Err(LlmError::Unavailable {
                    detail: "the concurrency limiter was closed".to_owned(),
                })
            }
            Ok(Ok(permit)) => permit,
        };
        let queued = started.elapsed();
        let cancelled = Arc::new(AtomicBool::new(false));
        let _cancel_on_drop = CancelOnDrop(Arc::clone(&cancelled));
        let model = Arc::clone(&self.model);
        let request = request.clone();
        let n_ctx = self.config.context_tokens;
        let std_deadline = deadline.into_std();
        // The slot moves with the work: it is released when inference has really stopped,
        // so a timed-out request never overlaps the next one on the CPU.
        let work = tokio::task::spawn_blocking(move || {
            let result = model.generate(&request, n_ctx, std_deadline, &cancelled);
            drop(permit);
            result
        });
        let generation = match timeout_at(deadline, work).await {
            Err(_) => return Err(timeout()),
            Ok(Err(join)) => {
                return Err(LlmError::Unavailable {
                    detail: format!("the inference thread failed: {join}"),
                })
            }
            Ok(Ok(result)) => result?,
        };
        let generated = generation.reply.completion_tokens.unwrap_or(0);
        tracing::debug!(
            queued_ms = queued.as_millis(),
            prompt_tokens = generation.reply.prompt_tokens,
            completion_tokens = generated,
            prompt_ms = generation.prompt_time.as_millis(),
            generation_ms = generation.generation_time.as_millis(),
            "embedded completion finished"
        );
        Ok(generation.reply)
    }
}
