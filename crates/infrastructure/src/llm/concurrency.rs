//! The limit on in-flight LLM requests. One GPU (or, for the embedded engine, one CPU) serves
//! every caller, so replies and memory compression must queue behind the same limit: clone one
//! [`LlmConcurrency`] into every client configuration that talks to the same engine.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use butler_domain::ports::{LlmError, Priority};
use tokio::sync::{AcquireError, Notify, OwnedSemaphorePermit, Semaphore, TryAcquireError};

/// A shared, FIFO-fair cap on concurrent requests, with replies ahead of background work.
/// Clones share one limit.
///
/// Interactive waiters are served in arrival order (tokio's semaphore is fair). A background
/// request ([`Priority::Background`]: a compression's summary or extraction) takes a slot only
/// when no interactive request is waiting, and background requests hold at most
/// `limit - 1` slots (1 when the limit is 1) in a process that also serves replies, so a reply
/// that arrives finds a slot free or is next in line: with a limit above one it never waits behind background work. A request
/// already at a server cannot be interrupted, so with a limit of 1 a reply may still wait for
/// one running background request. A slot is held for the whole call, retries and the pauses
/// between them included: a server that answered `429` or `5xx` is not handed more work by
/// other callers while it recovers.
#[derive(Debug, Clone)]
pub struct LlmConcurrency {
    semaphore: Arc<Semaphore>,
    limit: usize,
    /// Slots background requests leave free for replies (0 in a process that serves none).
    reserve: usize,
    waiting: Arc<AtomicUsize>,
    shared: Arc<Shared>,
}

/// What background waiters watch.
#[derive(Debug, Default)]
struct Shared {
    interactive_waiting: AtomicUsize,
    background_running: AtomicUsize,
    /// Signalled whenever a slot is released or an interactive waiter leaves the queue.
    changed: Notify,
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

/// An interactive waiter: counted while it waits; background waiters are told when it leaves.
struct InteractiveWaiting<'a>(&'a Shared);

impl Drop for InteractiveWaiting<'_> {
    fn drop(&mut self) {
        self.0.interactive_waiting.fetch_sub(1, Ordering::SeqCst);
        self.0.changed.notify_waiters();
    }
}

/// One request's place under the limit, held until the work has really stopped (it can travel
/// with a stream, or with the embedded engine's job).
#[derive(Debug)]
pub struct LlmSlot {
    permit: Option<OwnedSemaphorePermit>,
    shared: Arc<Shared>,
    background: bool,
}

impl Drop for LlmSlot {
    fn drop(&mut self) {
        drop(self.permit.take());
        if self.background {
            self.shared
                .background_running
                .fetch_sub(1, Ordering::SeqCst);
        }
        self.shared.changed.notify_waiters();
    }
}

impl LlmConcurrency {
    /// At most `limit` requests in flight at once.
    #[must_use]
    pub fn new(limit: NonZeroUsize) -> Self {
        Self {
            semaphore: Arc::new(Semaphore::new(limit.get())),
            limit: limit.get(),
            reserve: 1,
            waiting: Arc::default(),
            shared: Arc::default(),
        }
    }

    /// The configured limit.
    #[must_use]
    pub const fn limit(&self) -> usize {
        self.limit
    }

    /// The same limit for a process that serves no replies (`memory-worker`): background
    /// requests may then hold every slot, as no reply will come to need one.
    #[must_use]
    pub const fn without_reply_reserve(mut self) -> Self {
        self.reserve = 0;
        self
    }

    /// The most slots background requests hold at once: `limit - 1` (at least 1) where replies
    /// are served, `limit` where none are.
    #[must_use]
    pub fn background_limit(&self) -> usize {
        self.limit.saturating_sub(self.reserve).max(1)
    }

    /// Slots free right now (for metrics and tests).
    #[must_use]
    pub fn available(&self) -> usize {
        self.semaphore.available_permits()
    }

    /// Requests waiting for a slot right now, interactive and background (for metrics, and for
    /// tests that must know a caller has joined the queue).
    #[must_use]
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }

    /// An interactive slot, waiting at most until `deadline` (queueing counts against a call's
    /// deadline: a user waits for the whole thing).
    ///
    /// # Errors
    /// [`LlmError::Timeout`] (reporting `timeout`) when the deadline passes first.
    pub(crate) async fn slot_by(
        &self,
        deadline: tokio::time::Instant,
        timeout: std::time::Duration,
    ) -> Result<LlmSlot, LlmError> {
        self.slot_for(Priority::Interactive, deadline, timeout)
            .await
    }

    /// A slot for a request of `priority`, waiting at most until `deadline`: interactive ones
    /// in arrival order, background ones when no interactive one waits and fewer than
    /// [`Self::background_limit`] background ones hold a slot.
    ///
    /// # Errors
    /// [`LlmError::Timeout`] (reporting `timeout`) when the deadline passes first.
    pub async fn slot_for(
        &self,
        priority: Priority,
        deadline: tokio::time::Instant,
        timeout: std::time::Duration,
    ) -> Result<LlmSlot, LlmError> {
        let acquired = match priority {
            Priority::Interactive => tokio::time::timeout_at(deadline, self.acquire_interactive())
                .await
                .map(|r| r.map_err(drop)),
            Priority::Background => tokio::time::timeout_at(deadline, self.acquire_background())
                .await
                .map(|r| r.map_err(drop)),
        };
        match acquired {
            Err(_) => Err(LlmError::Timeout { after: timeout }),
            Ok(Err(_closed)) => Err(LlmError::Unavailable {
                detail: "the concurrency limiter was closed".to_owned(),
            }),
            Ok(Ok(slot)) => Ok(slot),
        }
    }

    fn slot(&self, permit: OwnedSemaphorePermit, background: bool) -> LlmSlot {
        if background {
            self.shared
                .background_running
                .fetch_add(1, Ordering::SeqCst);
        }
        LlmSlot {
            permit: Some(permit),
            shared: Arc::clone(&self.shared),
            background,
        }
    }

    /// Waits for a slot, in FIFO order among interactive requests.
    async fn acquire_interactive(&self) -> Result<LlmSlot, AcquireError> {
        let _waiting = Waiting::new(&self.waiting);
        self.shared
            .interactive_waiting
            .fetch_add(1, Ordering::SeqCst);
        let _interactive = InteractiveWaiting(&self.shared);
        let permit = Arc::clone(&self.semaphore).acquire_owned().await?;
        Ok(self.slot(permit, false))
    }

    /// Waits until no interactive request waits and a background place is free, then takes a
    /// slot if one is free (never queueing ahead of a reply on the semaphore).
    async fn acquire_background(&self) -> Result<LlmSlot, TryAcquireError> {
        let _waiting = Waiting::new(&self.waiting);
        loop {
            let changed = self.shared.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.shared.interactive_waiting.load(Ordering::SeqCst) == 0
                && self.shared.background_running.load(Ordering::SeqCst) < self.background_limit()
            {
                match Arc::clone(&self.semaphore).try_acquire_owned() {
                    Ok(permit) => return Ok(self.slot(permit, true)),
                    Err(TryAcquireError::Closed) => return Err(TryAcquireError::Closed),
                    Err(TryAcquireError::NoPermits) => {}
                }
            }
            changed.await;
        }
    }
}

impl Default for LlmConcurrency {
    /// Four: enough for a batching server (vLLM) to stay busy, few enough that a single-slot
    /// server (Ollama's default) queues briefly rather than times out.
    fn default() -> Self {
        Self::new(NonZeroUsize::new(4).unwrap_or(NonZeroUsize::MIN))
    }
}
