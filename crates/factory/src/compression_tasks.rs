//! Background compressions: the tokio implementation of the application's
//! `CompressionScheduler`. Each user has at most one compression in flight in this process. A
//! request that arrives while one runs is not dropped: it marks the user for one more run as
//! soon as the current one ends (which starts only if the user is over the threshold again),
//! so no crossing of the threshold goes unanswered however the timing falls. A run that panics
//! releases its user (a drop guard), so that user is compressed again next time. Tasks are
//! tracked so shutdown can wait for them: the bot gives them what is left of its grace period
//! ([`BackgroundCompressor::drain_within`]) and then exits, cutting those still running — safe,
//! since a compression deletes events only after saving the summary that covers them. The
//! terminal chat waits for them to end ([`BackgroundCompressor::drain`]). A compression asked
//! for "when the user is quiet" starts once no further request for that user came for the
//! given time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use butler_application::{CompressMemoryUseCase, CompressOutcome, CompressionScheduler};
use butler_domain::UserId;
use tokio_util::task::TaskTracker;

/// Called with the result of every background compression (metrics hook).
pub type CompressionObserver =
    Arc<dyn Fn(&Result<CompressOutcome, butler_application::memory::CompressError>) + Send + Sync>;

/// Users with a run in flight, each with "run again afterwards" when asked during the run.
type InFlight = Arc<Mutex<HashMap<UserId, bool>>>;

fn lock<T>(map: &Mutex<T>) -> MutexGuard<'_, T> {
    // The map stays consistent even if a holder panicked: every update is one operation.
    map.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Users waiting for a quiet moment, each with the moment its compression may start.
type Quiet = Arc<Mutex<HashMap<UserId, tokio::time::Instant>>>;

/// Runs compressions on tracked tokio tasks. Clones share everything.
#[derive(Clone)]
pub struct BackgroundCompressor {
    use_case: CompressMemoryUseCase,
    tracker: TaskTracker,
    in_flight: InFlight,
    quiet: Quiet,
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
            quiet: Arc::default(),
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

    /// As [`Self::drain`], but waits at most `deadline`: `true` when every compression
    /// finished, `false` when some were still running. Those are not stopped here; they end
    /// with the process, which is safe — a compression deletes events only after the summary
    /// that covers them is saved, so one cut anywhere leaves the memory as it was or as a
    /// finished pass leaves it (docs/architecture.md, "The compression invariants").
    pub async fn drain_within(&self, deadline: std::time::Duration) -> bool {
        self.tracker.close();
        let finished = tokio::time::timeout(deadline, self.tracker.wait())
            .await
            .is_ok();
        self.tracker.reopen();
        finished
    }

    /// Compressions currently running.
    #[must_use]
    pub fn running(&self) -> usize {
        self.tracker.len()
    }

    /// Users with a compression in flight.
    #[must_use]
    pub fn users_in_flight(&self) -> usize {
        lock(&self.in_flight).len()
    }

    /// Users whose compression waits for them to be quiet.
    #[must_use]
    pub fn users_waiting_for_quiet(&self) -> usize {
        lock(&self.quiet).len()
    }
}

/// Releases the user if the run ends without doing so itself: a panic in the use case, or the
/// task cut unfinished (at shutdown).
struct Release {
    in_flight: InFlight,
    user_id: UserId,
    armed: bool,
}

impl Drop for Release {
    fn drop(&mut self) {
        if self.armed {
            lock(&self.in_flight).remove(&self.user_id);
            if std::thread::panicking() {
                tracing::error!(user_id = %self.user_id, "background compression panicked; the user is released and will be compressed next time");
            } else {
                // Dropped unfinished: cut at shutdown, or its runtime went away.
                tracing::info!(user_id = %self.user_id, "background compression cut before it ended; nothing it had not saved is lost, the user is compressed next time");
            }
        }
    }
}

impl CompressionScheduler for BackgroundCompressor {
    fn schedule(&self, user_id: UserId) {
        self.start(user_id);
    }

    /// One timer per user (an untracked task: shutdown does not wait for a quiet period, and a
    /// compression it never started is asked for again by the user's next message): each call
    /// moves the user's moment to `idle` from now; when it passes undisturbed the compression
    /// starts as [`Self::schedule`] starts it, as a quiet-time run
    /// ([`CompressMemoryUseCase::execute_when_quiet`]).
    fn schedule_when_idle(&self, user_id: UserId, idle: std::time::Duration) {
        let due = tokio::time::Instant::now() + idle;
        {
            let mut quiet = lock(&self.quiet);
            if let Some(at) = quiet.get_mut(&user_id) {
                *at = due;
                return;
            }
            quiet.insert(user_id, due);
        }
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                let due = {
                    let mut quiet = lock(&this.quiet);
                    match quiet.get(&user_id).copied() {
                        Some(due) if due > tokio::time::Instant::now() => due,
                        _ => {
                            quiet.remove(&user_id);
                            break;
                        }
                    }
                };
                tokio::time::sleep_until(due).await;
            }
            this.start_as(user_id, true);
        });
    }
}

impl BackgroundCompressor {
    /// Starts a compression of the user now, or marks one more run after the one in flight.
    fn start(&self, user_id: UserId) {
        self.start_as(user_id, false);
    }

    /// As [`Self::start`]; `quiet`: the user has been quiet, so the run is
    /// [`CompressMemoryUseCase::execute_when_quiet`] (facts of the unfolded turns are
    /// extracted even when no compression is due). A run asked for again meanwhile is a plain
    /// one.
    fn start_as(&self, user_id: UserId, quiet: bool) {
        {
            let mut in_flight = lock(&self.in_flight);
            if let Some(again) = in_flight.get_mut(&user_id) {
                *again = true;
                return;
            }
            in_flight.insert(user_id, false);
        }
        let use_case = self.use_case.clone();
        let in_flight = self.in_flight.clone();
        let observer = self.observer.clone();
        self.tracker.spawn(async move {
            let mut release = Release {
                in_flight: in_flight.clone(),
                user_id,
                armed: true,
            };
            let mut quiet = quiet;
            loop {
                let result = if std::mem::take(&mut quiet) {
                    use_case.execute_when_quiet(user_id).await
                } else {
                    use_case.execute(user_id).await
                };
                if let Err(error) = &result {
                    tracing::warn!(user_id = %user_id, %error, "background compression failed; memory is unchanged");
                }
                if let Some(observer) = &observer {
                    observer(&result);
                }
                // Decide and release under one lock, so a request cannot slip in between.
                let mut map = lock(&in_flight);
                match map.get_mut(&user_id) {
                    Some(again) if *again => *again = false,
                    _ => {
                        map.remove(&user_id);
                        release.armed = false;
                        break;
                    }
                }
            }
        });
    }
}
