//! Background compressions: the tokio implementation of the application's
//! `CompressionScheduler`. Each user has at most one compression in flight in this process
//! (a second request while one runs is dropped — the running one folds everything anyway);
//! tasks are tracked so shutdown waits for them instead of cutting a compression in half.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use butler_application::{CompressMemoryUseCase, CompressOutcome, CompressionScheduler};
use butler_domain::UserId;
use tokio_util::task::TaskTracker;

/// Called with the result of every background compression (metrics hook).
pub type CompressionObserver =
    Arc<dyn Fn(&Result<CompressOutcome, butler_application::memory::CompressError>) + Send + Sync>;

/// Runs compressions on tracked tokio tasks.
pub struct BackgroundCompressor {
    use_case: CompressMemoryUseCase,
    tracker: TaskTracker,
    in_flight: Arc<Mutex<HashSet<UserId>>>,
    observer: Option<CompressionObserver>,
}

impl std::fmt::Debug for BackgroundCompressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackgroundCompressor")
            .field("tasks", &self.tracker.len())
            .finish_non_exhaustive()
    }
}

impl BackgroundCompressor {
    /// A compressor running `use_case`, reporting each result to `observer`.
    #[must_use]
    pub fn new(use_case: CompressMemoryUseCase, observer: Option<CompressionObserver>) -> Self {
        Self {
            use_case,
            tracker: TaskTracker::new(),
            in_flight: Arc::default(),
            observer,
        }
    }

    /// Waits for every compression in flight; new requests after this are still accepted
    /// until the process exits, so call it last.
    pub async fn drain(&self) {
        self.tracker.close();
        self.tracker.wait().await;
        self.tracker.reopen();
    }

    /// Compressions currently running.
    #[must_use]
    pub fn running(&self) -> usize {
        self.tracker.len()
    }
}

impl CompressionScheduler for BackgroundCompressor {
    fn schedule(&self, user_id: UserId) {
        {
            let mut in_flight = self
                .in_flight
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if !in_flight.insert(user_id) {
                return;
            }
        }
        let use_case = self.use_case.clone();
        let in_flight = self.in_flight.clone();
        let observer = self.observer.clone();
        self.tracker.spawn(async move {
            let result = use_case.execute(user_id).await;
            if let Err(error) = &result {
                tracing::warn!(user_id = %user_id, %error, "background compression failed; memory is unchanged");
            }
            if let Some(observer) = observer {
                observer(&result);
            }
            in_flight.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&user_id);
        });
    }
}
