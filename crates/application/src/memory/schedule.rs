//! How a reply asks for compression off its own path.

use std::time::Duration;

use butler_domain::UserId;

/// Runs compressions in the background. The reply use case calls [`schedule`] and returns at
/// once; the implementation (a tokio task tracker in `butler-factory`) runs
/// [`CompressMemoryUseCase`](super::CompressMemoryUseCase), de-duplicates per user, and makes
/// shutdown wait for compressions in flight.
///
/// [`schedule`]: CompressionScheduler::schedule
pub trait CompressionScheduler: Send + Sync {
    /// Requests a compression of the user's memory. Must not block.
    fn schedule(&self, user_id: UserId);

    /// Requests a compression once the user has been quiet for `idle`: each further call for
    /// the user before then moves that moment later. Must not block. The default runs it at
    /// once (implementations without timers).
    fn schedule_when_idle(&self, user_id: UserId, idle: Duration) {
        let _ = idle;
        self.schedule(user_id);
    }
}
