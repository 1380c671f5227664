//! Firing due reminders: claim a batch under a lease, send each in the user's language, mark
//! it delivered. Run in a loop by the front end (the application has no timer of its own).
//!
//! Delivery guarantee: a reminder is marked delivered only after the channel accepted it, or
//! when the send may have reached the user (a time-out after sending): duplicates are worse
//! than a rare loss there, as with replies. A send that surely failed gives the claim back, so
//! the next round (or another process) tries again. Sent reminders are marked together, in
//! one write per [`FireConfig::mark_within`] (or per round, if that ends first): with many due
//! at once a commit per reminder was what held delivery back. A process that crashes between
//! sending and marking leaves the lease to expire: the reminders it sent in those last
//! moments are sent again — the only duplicates.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use butler_domain::ports::{ClaimedReminder, ReminderRepository, UserProfileRepository};
use butler_domain::profile::Language;
use butler_domain::reminder::ReminderId;
use time::{Duration, OffsetDateTime};

use super::texts::delivery_text;
use super::ReminderObserver;

/// Why a send failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// It surely did not reach the user (refused before delivery, connection never made):
    /// try again later.
    #[error("not sent: {0}")]
    NotSent(String),
    /// It may have reached the user: do not send again.
    #[error("maybe sent: {0}")]
    MaybeSent(String),
}

/// Where reminders are delivered (the Telegram front end implements it).
#[async_trait]
pub trait ReminderChannel: Send + Sync {
    /// Sends `text` to the private chat `chat_id`.
    async fn send(&self, chat_id: i64, text: &str) -> Result<(), SendError>;
}

/// How firing behaves.
#[derive(Debug, Clone, Copy)]
pub struct FireConfig {
    /// How long a claim holds a reminder before another process may take it over.
    pub lease: Duration,
    /// Most reminders claimed per round.
    pub batch: u32,
    /// A reminder delivered later than this after its time carries a "late" note.
    pub late_after: Duration,
    /// Sent reminders are marked delivered together, at the latest this long after the first
    /// of them was sent (and at the end of each round): the most a crash can make be sent
    /// again.
    pub mark_within: Duration,
}

impl Default for FireConfig {
    fn default() -> Self {
        Self {
            lease: Duration::seconds(60),
            batch: 100,
            late_after: Duration::minutes(5),
            mark_within: Duration::milliseconds(100),
        }
    }
}

/// What one round did.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FireOutcome {
    /// Reminders claimed.
    pub claimed: usize,
    /// Delivered and marked.
    pub fired: usize,
    /// Of those, delivered with a late note.
    pub late: usize,
    /// Sends that failed.
    pub failed: usize,
}

/// Claims and delivers due reminders.
pub struct FireRemindersUseCase {
    store: Arc<dyn ReminderRepository>,
    profiles: Arc<dyn UserProfileRepository>,
    channel: Arc<dyn ReminderChannel>,
    config: FireConfig,
    observer: Option<Arc<dyn ReminderObserver>>,
}

impl std::fmt::Debug for FireRemindersUseCase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FireRemindersUseCase")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl FireRemindersUseCase {
    /// A use case over its ports.
    #[must_use]
    pub fn new(
        store: Arc<dyn ReminderRepository>,
        profiles: Arc<dyn UserProfileRepository>,
        channel: Arc<dyn ReminderChannel>,
        config: FireConfig,
        observer: Option<Arc<dyn ReminderObserver>>,
    ) -> Self {
        Self {
            store,
            profiles,
            channel,
            config,
            observer,
        }
    }

    /// The store (the loop asks it when the next reminder is due).
    #[must_use]
    pub fn store(&self) -> &Arc<dyn ReminderRepository> {
        &self.store
    }

    /// One round at `now`: claims up to a batch of due reminders and delivers them, in due
    /// order.
    ///
    /// # Errors
    /// The store's error when claiming fails (the loop retries later); failures of single
    /// deliveries are counted, not returned.
    pub async fn execute(
        &self,
        now: OffsetDateTime,
    ) -> Result<FireOutcome, butler_domain::ports::ReminderStoreError> {
        let claimed = self
            .store
            .claim_due(now, self.config.lease, self.config.batch)
            .await?;
        let mut outcome = FireOutcome {
            claimed: claimed.len(),
            ..FireOutcome::default()
        };
        let mark_within =
            std::time::Duration::try_from(self.config.mark_within).unwrap_or_default();
        let mut unmarked: Vec<(ReminderId, uuid::Uuid)> = Vec::new();
        let mut first_unmarked: Option<Instant> = None;
        for claim in claimed {
            if let Some(sent) = self.deliver(claim, now, &mut outcome).await {
                unmarked.push(sent);
                first_unmarked.get_or_insert_with(Instant::now);
            }
            if first_unmarked.is_some_and(|first| first.elapsed() >= mark_within) {
                self.mark(&mut unmarked, now).await;
                first_unmarked = None;
            }
        }
        self.mark(&mut unmarked, now).await;
        Ok(outcome)
    }

    /// Marks the sent reminders in `unmarked` delivered, in one write, and empties it.
    async fn mark(&self, unmarked: &mut Vec<(ReminderId, uuid::Uuid)>, now: OffsetDateTime) {
        if unmarked.is_empty() {
            return;
        }
        match self.store.mark_delivered_many(unmarked, now).await {
            Ok(marked) if marked == unmarked.len() => {}
            Ok(marked) => {
                tracing::warn!(
                    lost = unmarked.len() - marked,
                    "reminder leases lost before they were marked delivered"
                );
            }
            Err(error) => {
                tracing::warn!(%error, count = unmarked.len(), "marking reminders delivered failed");
            }
        }
        unmarked.clear();
    }

    /// Sends one claimed reminder; the claim to mark delivered when it was sent (or may have
    /// been), `None` when it was given back.
    async fn deliver(
        &self,
        claim: ClaimedReminder,
        now: OffsetDateTime,
        outcome: &mut FireOutcome,
    ) -> Option<(ReminderId, uuid::Uuid)> {
        let reminder = &claim.reminder;
        let language = match self.profiles.get(reminder.user_id).await {
            Ok(Some(profile)) => profile.language,
            _ => Language::default(),
        };
        let lag = (now - reminder.due_at).max(Duration::ZERO);
        let late = lag > self.config.late_after;
        let text = delivery_text(
            language,
            &reminder.text,
            late.then(|| lag.whole_minutes().max(1)),
        );
        let sent = self.channel.send(reminder.chat_id, &text).await;
        let mark = match &sent {
            Ok(()) => true,
            Err(SendError::MaybeSent(detail)) => {
                tracing::warn!(reminder = %reminder.id, %detail, "reminder send may have failed; not sending again");
                true
            }
            Err(SendError::NotSent(detail)) => {
                tracing::warn!(reminder = %reminder.id, %detail, "reminder not sent; will retry");
                false
            }
        };
        if sent.is_err() {
            outcome.failed += 1;
            if let Some(observer) = &self.observer {
                observer.failed();
            }
        }
        if !mark {
            if let Err(error) = self.store.release(reminder.id, claim.token).await {
                tracing::warn!(%error, "giving a reminder claim back failed; it waits for its lease");
            }
            return None;
        }
        if sent.is_ok() {
            outcome.fired += 1;
            if late {
                outcome.late += 1;
            }
            if let Some(observer) = &self.observer {
                #[allow(clippy::cast_precision_loss)]
                observer.fired(lag.whole_milliseconds() as f64 / 1000.0, late);
            }
        }
        Some((reminder.id, claim.token))
    }
}
