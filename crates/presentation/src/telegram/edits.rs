//! Streaming a reply in a group: drafts are for private chats only, so a group sees one
//! message that grows by edits (`editMessageText`) while the model writes, then holds the
//! whole reply.
//!
//! Telegram lets a bot post about 20 messages and edits a minute in one group and answers more
//! with `429 Too Many Requests` (teloxide's throttling does not pace edits). So edits are
//! paced: at most one per [`GroupPacing::interval`], and only while the group's budget of
//! [`GroupPacing::per_minute`] calls in the last minute — counted for every reply of this
//! process in that group — keeps one call spare for the final text. A `429` pauses the edits
//! for its `retry_after`. The final text is always delivered: the last edit waits for its
//! turn (and for `retry_after`, up to [`BotConfig::max_retry_after`]), and a reply longer
//! than one message continues in new messages.
//!
//! [`BotConfig::max_retry_after`]: super::BotConfig::max_retry_after

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use butler_application::ReplySink;
use teloxide::payloads::SendMessageSetters as _;
use teloxide::prelude::*;
use teloxide::types::{MessageId, ReplyParameters, ThreadId};
use teloxide::RequestError;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::outbox::Outbox;
use super::redact::Redactor;
use super::split::{split_message, TELEGRAM_MESSAGE_LIMIT};

/// How replies stream in groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupPacing {
    /// At most one edit per interval; zero turns streaming off (the reply is sent when done).
    pub interval: Duration,
    /// Messages and edits per group within `window` (Telegram allows about 20 a minute).
    pub per_minute: usize,
    /// No message before the reply has this many characters.
    pub min_chars: usize,
    /// The window `per_minute` counts in (a minute; shorter in tests).
    pub window: Duration,
}

impl Default for GroupPacing {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(3),
            per_minute: 20,
            min_chars: 40,
            window: Duration::from_secs(60),
        }
    }
}

/// Streams replies in groups; shared by every answering task, so a group's budget is one.
pub(crate) struct Edits {
    bot: Bot,
    outbox: Outbox,
    pacing: GroupPacing,
    request_timeout: Duration,
    max_retry_after: Duration,
    redactor: Redactor,
    /// Per group chat: when its recent messages and edits were sent, and when `429` said the
    /// next may go.
    groups: Mutex<HashMap<i64, Budget>>,
}

#[derive(Debug, Default)]
struct Budget {
    sent: VecDeque<Instant>,
    not_before: Option<Instant>,
}

impl Budget {
    /// Calls left in the window at `now`.
    fn left(&mut self, now: Instant, pacing: &GroupPacing) -> usize {
        while self
            .sent
            .front()
            .is_some_and(|at| now.duration_since(*at) >= pacing.window)
        {
            self.sent.pop_front();
        }
        pacing.per_minute.saturating_sub(self.sent.len())
    }

    /// When the next call may go: after a `429`'s wait, and with a call left in the window.
    fn next_slot(&mut self, now: Instant, pacing: &GroupPacing) -> Instant {
        let mut at = self.not_before.filter(|t| *t > now).unwrap_or(now);
        if self.left(now, pacing) == 0 {
            if let Some(oldest) = self.sent.front() {
                at = at.max(*oldest + pacing.window);
            }
        }
        at
    }
}

/// Where a streamed reply goes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Target {
    pub(crate) chat: ChatId,
    /// The message answered (the reply quotes it).
    pub(crate) reply_to: MessageId,
    /// The forum topic, if any.
    pub(crate) thread: Option<ThreadId>,
}

impl Edits {
    pub(crate) fn new(
        bot: Bot,
        outbox: Outbox,
        pacing: GroupPacing,
        request_timeout: Duration,
        max_retry_after: Duration,
        redactor: Redactor,
    ) -> Self {
        Self {
            bot,
            outbox,
            pacing,
            request_timeout,
            max_retry_after,
            redactor,
            groups: Mutex::new(HashMap::new()),
        }
    }

    fn groups(&self) -> MutexGuard<'_, HashMap<i64, Budget>> {
        // Each change is one operation: consistent whatever panicked while holding it.
        self.groups.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts streaming one reply to `target`.
    pub(crate) fn start(self: &Arc<Self>, target: Target) -> EditWriter {
        let (text, updates) = watch::channel(String::new());
        let stop = CancellationToken::new();
        let (shown_tx, shown) = watch::channel(None);
        let task = tokio::spawn(Arc::clone(self).pace(target, updates, stop.clone(), shown_tx));
        EditWriter {
            edits: Arc::clone(self),
            target,
            text,
            stop,
            task,
            shown,
        }
    }

    /// Whether a call to `chat` may go now, keeping `spare` calls for later; counts it if so.
    fn take_turn(&self, chat: ChatId, spare: usize) -> bool {
        let now = Instant::now();
        let mut groups = self.groups();
        let budget = groups.entry(chat.0).or_default();
        if budget.not_before.is_some_and(|t| t > now) || budget.left(now, &self.pacing) <= spare {
            return false;
        }
        budget.sent.push_back(now);
        true
    }

    /// Waits for the group's next slot (at most `max_retry_after`), then counts the call.
    async fn wait_turn(&self, chat: ChatId) -> bool {
        let deadline = Instant::now() + self.max_retry_after;
        loop {
            let slot = self
                .groups()
                .entry(chat.0)
                .or_default()
                .next_slot(Instant::now(), &self.pacing);
            if slot > deadline {
                return false;
            }
            tokio::time::sleep_until(slot).await;
            if self.take_turn(chat, 0) {
                return true;
            }
        }
    }

    /// Remembers a `429`: no call to `chat` before `retry_after` from now.
    fn flood(&self, chat: ChatId, retry_after: Duration) {
        let at = Instant::now() + retry_after;
        let mut groups = self.groups();
        let budget = groups.entry(chat.0).or_default();
        budget.not_before = Some(budget.not_before.map_or(at, |t| t.max(at)));
    }

    async fn pace(
        self: Arc<Self>,
        target: Target,
        mut updates: watch::Receiver<String>,
        stop: CancellationToken,
        shown_tx: watch::Sender<Option<(MessageId, String)>>,
    ) {
        if self.pacing.interval.is_zero() {
            return;
        }
        let mut next: Option<Instant> = None;
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                changed = updates.changed() => if changed.is_err() { return },
            }
            if let Some(at) = next {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep_until(at) => {}
                }
            }
            let text = updates.borrow_and_update().clone();
            if text.chars().count() < self.pacing.min_chars {
                continue;
            }
            let text = first_part(&text);
            let current = shown_tx.borrow().clone();
            if current.as_ref().is_some_and(|(_, shown)| *shown == text) {
                continue;
            }
            // One call is kept for the final text.
            if !self.take_turn(target.chat, 1) {
                next = Some(Instant::now() + self.pacing.interval);
                continue;
            }
            let sent = tokio::select! {
                () = stop.cancelled() => return,
                sent = self.show(target, current.as_ref().map(|(id, _)| *id), &text) => sent,
            };
            if let Some(id) = sent {
                shown_tx.send_replace(Some((id, text)));
            }
            next = Some(Instant::now() + self.pacing.interval);
        }
    }

    /// Posts `text` as the reply's message, or edits the message `id` to it; the message's id
    /// when Telegram took it.
    async fn show(&self, target: Target, id: Option<MessageId>, text: &str) -> Option<MessageId> {
        let result = match id {
            None => {
                let mut request = self.bot.send_message(target.chat, text).reply_parameters(
                    ReplyParameters::new(target.reply_to).allow_sending_without_reply(),
                );
                if let Some(thread) = target.thread {
                    request = request.message_thread_id(thread);
                }
                tokio::time::timeout(self.request_timeout, request.send())
                    .await
                    .map(|r| r.map(|m| m.id))
            }
            Some(id) => tokio::time::timeout(
                self.request_timeout,
                self.bot.edit_message_text(target.chat, id, text).send(),
            )
            .await
            .map(|r| r.map(|_| id)),
        };
        match result {
            Ok(Ok(id)) => Some(id),
            Ok(Err(RequestError::RetryAfter(seconds))) => {
                tracing::info!(
                    retry_after_s = seconds.seconds(),
                    "group flood control; edits paused"
                );
                self.flood(target.chat, seconds.duration());
                id
            }
            Ok(Err(error)) => {
                tracing::debug!(error = %self.redactor.clean(&error), "a streamed edit was not shown");
                id
            }
            Err(_) => {
                tracing::debug!("a streamed edit got no answer in time");
                id
            }
        }
    }
}

/// The first message's worth of `text` (the rest goes in further messages at the end).
fn first_part(text: &str) -> String {
    split_message(text, TELEGRAM_MESSAGE_LIMIT)
        .into_iter()
        .next()
        .unwrap_or_default()
}

/// One streamed group reply.
pub(crate) struct EditWriter {
    edits: Arc<Edits>,
    target: Target,
    text: watch::Sender<String>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    shown: watch::Receiver<Option<(MessageId, String)>>,
}

impl ReplySink for EditWriter {
    fn delta(&self, text: &str) {
        self.text.send_modify(|all| all.push_str(text));
    }
}

impl EditWriter {
    /// Ends the stream with `text`, the whole reply: the streamed message is edited to its
    /// first part (waiting for the group's turn) and any further parts follow as messages; with
    /// nothing streamed yet, it is sent as a normal reply. Returns how many messages hold it.
    ///
    /// # Errors
    /// The failure, without the token, when the final text could not be delivered.
    pub(crate) async fn finish(self, text: &str) -> Result<usize, String> {
        self.stop.cancel();
        let _ = self.task.await;
        let edits = &self.edits;
        let target = self.target;
        let Some((id, shown)) = self.shown.borrow().clone() else {
            // Nothing streamed: one normal reply (paced like any other call to the group).
            edits.wait_turn(target.chat).await;
            return edits
                .outbox
                .send_in(target.chat, Some(target.reply_to), target.thread, text)
                .await
                .map_err(|e| e.to_string());
        };
        let parts = split_message(text, TELEGRAM_MESSAGE_LIMIT);
        let first = parts.first().cloned().unwrap_or_default();
        if first != shown {
            let mut delivered = false;
            for _ in 0..4 {
                if !edits.wait_turn(target.chat).await {
                    break;
                }
                match tokio::time::timeout(
                    edits.request_timeout,
                    edits.bot.edit_message_text(target.chat, id, &first).send(),
                )
                .await
                {
                    Ok(Ok(_)) => {
                        delivered = true;
                        break;
                    }
                    Ok(Err(RequestError::RetryAfter(seconds))) => {
                        edits.flood(target.chat, seconds.duration());
                    }
                    Ok(Err(error)) => return Err(edits.redactor.clean(&error)),
                    Err(_) => return Err("the final edit got no answer in time".to_owned()),
                }
            }
            if !delivered {
                return Err("the group's flood control held the final text too long".to_owned());
            }
        }
        for part in parts.iter().skip(1) {
            edits.wait_turn(target.chat).await;
            edits
                .outbox
                .send_in(target.chat, None, target.thread, part)
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(parts.len())
    }
}
