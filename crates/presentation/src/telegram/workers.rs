//! Answering what the inbox holds: one loop claims updates (the oldest pending one among
//! conversations nobody is answering, under that conversation's reply lease), and each claim
//! is answered in a task of its own, at most [`InboxConfig::workers`] at once. While the answer
//! is written the lease is renewed; when it is sent the update is marked done and the lease
//! given back.
//!
//! - **Per-conversation order**: a conversation's next update is claimable only once the
//!   previous one is done, in this process or any other on the same inbox.
//! - **Marked done once sent**: marking an update done is retried (it is idempotent, and needs
//!   no lease) with back-off until it succeeds or shutdown stops the task, the lease renewed
//!   meanwhile — a busy database or a MongoDB step-down does not make the reply go out twice.
//!   Should the lease lapse all the same (the database unreachable for longer than the lease),
//!   the mark is still retried, and a claim of the update by this process meanwhile only marks
//!   it done (the process remembers the updates it answered).
//! - **Crashes**: a claim dies with its process; its lease expires and the update is claimed
//!   again (by a replica at once, by the restarted process otherwise), `attempts` one higher.
//!   The reply path is idempotent per update (the memory tags each turn with its update), so a
//!   turn already stored is re-sent, not re-generated.
//! - **When a user sees a reply twice**: only when Telegram accepted the reply and the update
//!   was not marked done before another claim took it: the process died (a crash, a kill, a
//!   second signal), or was stopped at shutdown while the mark still failed, or the database
//!   stayed unreachable for longer than the lease and another replica claimed the update
//!   before this one's mark got through.
//! - **Shutdown**: no new claims; answers in progress get [`BotConfig::shutdown_grace`] to
//!   finish; those still running are stopped and their users released at once, so the next
//!   process (or another replica) answers them without waiting for a lease to expire.
//!
//! [`BotConfig::shutdown_grace`]: super::BotConfig::shutdown_grace

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use butler_domain::ports::{Claimed, InboxError, Lease, UpdateInbox};
use teloxide::types::{Update, UpdateKind};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::config::InboxConfig;
use super::handler::Handler;

/// Pause after the inbox failed to answer a claim.
const CLAIM_BACKOFF: Duration = Duration::from_secs(1);
/// First pause before marking an update done again; doubles up to [`COMPLETE_BACKOFF_MAX`].
const COMPLETE_BACKOFF: Duration = Duration::from_millis(50);
/// Longest pause between two attempts to mark an update done.
const COMPLETE_BACKOFF_MAX: Duration = Duration::from_secs(2);

/// How many of the latest answered update ids a process remembers: far more than can be in
/// flight at once ([`InboxConfig::workers`]).
const ANSWERED_REMEMBERED: usize = 4096;

/// Claims and answers updates.
pub(crate) struct Workers {
    pub(crate) inbox: Arc<dyn UpdateInbox>,
    pub(crate) handler: Arc<Handler>,
    pub(crate) wake: Arc<Notify>,
    pub(crate) config: InboxConfig,
    pub(crate) grace: Duration,
    /// The latest updates this process answered (at most [`ANSWERED_REMEMBERED`]): a claim of
    /// one of them can only mean its lease lapsed while its done mark failed, and it is then
    /// marked done instead of its reply being sent again.
    pub(crate) answered: Mutex<VecDeque<i64>>,
}

fn now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

fn lease_for(config: &InboxConfig) -> time::Duration {
    time::Duration::try_from(config.lease).unwrap_or(time::Duration::seconds(30))
}

/// How one claim ended.
enum Outcome {
    /// Answered (or given up on): mark done.
    Done,
    /// The lease was lost (renewal failed for longer than the lease): someone else may be
    /// answering it now; leave it alone.
    Lost,
    /// Stopped at shutdown: release the user.
    Stopped,
}

impl Workers {
    /// Runs until `shutdown`, then winds down as the module docs say.
    pub(crate) async fn run(self, shutdown: CancellationToken) {
        let slots = Arc::new(Semaphore::new(self.config.workers));
        let stop_answers = CancellationToken::new();
        let mut tasks = JoinSet::new();
        let this = Arc::new(self);
        loop {
            // Reap finished tasks so the set does not grow.
            while tasks.try_join_next().is_some() {}
            let permit = tokio::select! {
                () = shutdown.cancelled() => break,
                permit = Arc::clone(&slots).acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break,
                },
            };
            match this.inbox.claim(now(), lease_for(&this.config)).await {
                Ok(Some(claimed)) => {
                    let this = Arc::clone(&this);
                    let stop = stop_answers.clone();
                    tasks.spawn(async move {
                        this.answer(claimed, stop).await;
                        drop(permit);
                    });
                }
                Ok(None) => {
                    drop(permit);
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = this.wake.notified() => {}
                        () = tokio::time::sleep(this.config.poll_interval) => {}
                    }
                }
                Err(error) => {
                    drop(permit);
                    tracing::warn!(%error, "inbox claim failed; retrying");
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(CLAIM_BACKOFF) => {}
                    }
                }
            }
        }
        let running = tasks.len();
        if running > 0 {
            tracing::info!(
                running,
                grace_ms = this.grace.as_millis(),
                "shutting down: finishing replies in flight"
            );
        }
        let finished = tokio::time::timeout(this.grace, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if finished.is_err() {
            tracing::warn!(
                running = tasks.len(),
                "grace period over: stopping replies in flight and releasing their updates"
            );
            stop_answers.cancel();
            while tasks.join_next().await.is_some() {}
        }
    }

    /// Answers one claimed update, renewing its lease meanwhile, then settles it.
    async fn answer(&self, claimed: Claimed, stop: CancellationToken) {
        let Claimed {
            update,
            lease,
            attempts,
        } = claimed;
        let update_id = update.update_id;
        let outcome = if self.answered_here(update_id) {
            tracing::info!(
                update_id,
                "claimed again while its done mark was failing; already answered here, only marking it done"
            );
            Outcome::Done
        } else if attempts > self.config.max_attempts {
            tracing::error!(
                update_id,
                attempts,
                "update interrupted too many times; given up"
            );
            Outcome::Done
        } else {
            if attempts > 1 {
                tracing::info!(
                    update_id,
                    attempts,
                    "answering an update an earlier claim did not finish"
                );
            }
            match serde_json::from_str::<Update>(&update.payload) {
                Ok(Update {
                    id,
                    kind: UpdateKind::Message(message),
                }) => {
                    let work = self.handler.handle(id, message, update.received_at);
                    tokio::select! {
                        () = work => Outcome::Done,
                        () = self.keep(lease) => Outcome::Lost,
                        () = stop.cancelled() => Outcome::Stopped,
                    }
                }
                Ok(Update {
                    kind: UpdateKind::CallbackQuery(query),
                    ..
                }) => {
                    tokio::select! {
                        () = self.handler.handle_button(query) => Outcome::Done,
                        () = stop.cancelled() => Outcome::Stopped,
                    }
                }
                Ok(_) => Outcome::Done,
                Err(error) => {
                    tracing::error!(%error, update_id, "stored update unreadable; dropped");
                    Outcome::Done
                }
            }
        };
        let settled: Result<(), InboxError> = match outcome {
            Outcome::Done => {
                self.remember_answered(update_id);
                self.complete(update_id, lease, &stop).await
            }
            Outcome::Stopped => self.inbox.release(&lease).await.map_err(Into::into),
            Outcome::Lost => {
                tracing::warn!(
                    update_id,
                    "lease lost while answering; leaving the update to its new holder"
                );
                Ok(())
            }
        };
        if let Err(error) = settled {
            // The lease then expires and the update is claimed again; the memory's tag keeps
            // the model from being asked twice.
            tracing::warn!(%error, update_id, "could not settle the update in the inbox");
        }
        // The conversation is free: its next update, if any, can be claimed now.
        self.wake.notify_one();
    }

    /// Marks the update done, retrying with back-off until it succeeds, the error cannot pass
    /// by retrying, or shutdown stops the task. The lease is renewed meanwhile, so the update is
    /// not handed out again; if it is lost all the same (renewal failed until it expired), the
    /// mark is still retried — it needs no lease.
    async fn complete(
        &self,
        update_id: i64,
        lease: Lease,
        stop: &CancellationToken,
    ) -> Result<(), InboxError> {
        let attempts = async {
            let mut backoff = COMPLETE_BACKOFF;
            loop {
                match self.inbox.complete(update_id, &lease, now()).await {
                    Ok(()) => return Ok(()),
                    Err(error) if error.is_retryable() => {
                        tracing::warn!(%error, update_id, retry_ms = backoff.as_millis(), "could not mark the update done; retrying");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(COMPLETE_BACKOFF_MAX);
                    }
                    Err(error) => return Err(error),
                }
            }
        };
        let mut attempts = std::pin::pin!(attempts);
        tokio::select! {
            done = attempts.as_mut() => return done,
            () = self.keep(lease) => {
                tracing::warn!(update_id, "lease lost before the update was marked done; still marking it (another replica claiming it meanwhile would re-send the stored reply)");
            }
            () = stop.cancelled() => {
                tracing::warn!(update_id, "stopped before the update was marked done; it will be claimed again and re-sent from memory");
                return Ok(());
            }
        }
        tokio::select! {
            done = attempts => done,
            () = stop.cancelled() => {
                tracing::warn!(update_id, "stopped before the update was marked done; it will be claimed again and re-sent from memory");
                Ok(())
            }
        }
    }

    fn answered(&self) -> std::sync::MutexGuard<'_, VecDeque<i64>> {
        // A list of ids stays consistent whatever a panicking holder did.
        self.answered.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn remember_answered(&self, update_id: i64) {
        let mut answered = self.answered();
        if !answered.contains(&update_id) {
            if answered.len() >= ANSWERED_REMEMBERED {
                answered.pop_front();
            }
            answered.push_back(update_id);
        }
    }

    fn answered_here(&self, update_id: i64) -> bool {
        self.answered().contains(&update_id)
    }

    /// Renews `lease` every third of its length; returns only when it is lost.
    async fn keep(&self, lease: Lease) {
        crate::lease::keep(self.inbox.as_ref(), lease, self.config.lease).await;
    }
}
