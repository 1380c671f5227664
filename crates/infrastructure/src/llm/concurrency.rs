//! The limit on in-flight LLM requests. One GPU (or, for the embedded engine, one CPU) serves
//! every caller, so replies and memory compression must queue behind the same limit: clone one
//! [`LlmConcurrency`] into every client configuration that talks to the same engine.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use butler_domain::ports::LlmError;
use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore};

/// A shared, FIFO-fair cap on concurrent requests. Clones share one limit.
///
/// Waiters are served in arrival order (tokio's semaphore is fair), so a burst of compression
/// work cannot starve a user's reply that arrived before it. A slot is held for the whole
/// call, retries and the pauses between them included: a server that answered `429` or `5xx`
/// is not handed more work by other callers while it recovers.
#[derive(Debug, Clone)]
pub struct LlmConcurrency {
    semaphore: Arc<Semaphore>,
    limit: usize,
    waiting: Arc<AtomicUsize>,
}

/// Counts one waiter while it lives (a waiter that gives up is uncounted too).
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Self(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl LlmConcurrency {
    /// At most `limit` requests in flight at once.
    #[must_use]
    pub fn new(limit: NonZeroUsize) -> Self {
        Self {
            semaphore: Arc::new(Semaphore::new(limit.get())),
            limit: limit.get(),
            waiting: Arc::default(),
        }
    }

    /// The configured limit.
    #[must_use]
    pub const fn limit(&self) -> usize {
        self.limit
    }

    /// Slots free right now (for metrics and tests).
    #[must_use]
    pub fn available(&self) -> usize {
        self.semaphore.available_permits()
    }

    /// Requests waiting for a slot right now (for metrics, and for tests that must know a
    /// caller has joined the queue).
    #[must_use]
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }

    /// A slot, waiting at most until `deadline` (queueing counts against a call's deadline: a
    /// user waits for the whole thing). The slot is owned, so it can travel with the work (a
    /// stream, or the embedded engine's job) until that has really stopped.
    ///
    /// # Errors
    /// [`LlmError::Timeout`] (reporting `timeout`) when the deadline passes first.
    pub(crate) async fn slot_by(
        &self,
        deadline: tokio::time::Instant,
        timeout: std::time::Duration,
    ) -> Result<OwnedSemaphorePermit, LlmError> {
        match tokio::time::timeout_at(deadline, self.acquire_owned()).await {
            Err(_) => Err(LlmError::Timeout { after: timeout }),
            Ok(Err(_closed)) => Err(LlmError::Unavailable {
                detail: "the concurrency limiter was closed".to_owned(),
            }),
            Ok(Ok(permit)) => Ok(permit),
        }
    }

    /// Waits for a slot, in FIFO order, for work that may move onto another thread (the
    /// embedded engine holds it until inference has really stopped, not just until the caller
    /// gave up).
    pub(crate) async fn acquire_owned(&self) -> Result<OwnedSemaphorePermit, AcquireError> {
        let _waiting = Waiting::new(&self.waiting);
        Arc::clone(&self.semaphore).acquire_owned().await
    }
}

impl Default for LlmConcurrency {
    /// Four: enough for a batching server (vLLM) to stay busy, few enough that a single-slot
    /// server (Ollama's default) queues briefly rather than times out.
    fn default() -> Self {
        Self::new(NonZeroUsize::new(4).unwrap_or(NonZeroUsize::MIN))
    }
}
