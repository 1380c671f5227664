//! Live reply drafts in private chats: `sendMessageDraft` (Bot API 9.3; every bot may use it
//! since 9.5) shows the reply growing while the model writes it. teloxide 0.17 predates the
//! method, so it is sent here as a typed JSON payload through the bot's own client.
//!
//! A draft is an ephemeral preview: the reply always ends with a real `sendMessage` (which
//! also makes the draft disappear). Drafts are paced — at most one per `interval`, none
//! before there is a word to show, none when nothing changed — because a local model can
//! produce tokens faster than Telegram wants requests. Groups get no drafts (the method is for
//! private chats; see `docs/user_guide.md`).
//!
//! A Bot API server that does not know the method (older, or a local one) answers 400 or 404:
//! drafts are then turned off for the process, with one log line, and replies go on as before.
//! A draft that fails for any other reason is skipped; it never delays or prevents the reply.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use butler_application::ReplySink;
use serde::Serialize;
use teloxide::prelude::*;
use teloxide::requests::{JsonRequest, Payload};
use teloxide::types::True;
use teloxide::{ApiError, RequestError};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::redact::Redactor;
use super::TelegramObserver;

/// The most characters a draft may hold (Telegram's message limit).
const DRAFT_LIMIT: usize = 4096;

/// `sendMessageDraft`'s parameters.
#[derive(Debug, Clone, Serialize)]
struct SendMessageDraft {
    chat_id: i64,
    draft_id: i64,
    text: String,
}

impl Payload for SendMessageDraft {
    type Output = True;
    const NAME: &'static str = "sendMessageDraft";
}

/// How drafts are paced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DraftPacing {
    /// At most one draft per interval (Telegram asks for about one a second per chat; two a
    /// second still reads smoothly).
    pub interval: Duration,
    /// No draft before the reply has this many characters (a word worth showing).
    pub min_chars: usize,
    /// No draft this soon after the reply's first text: a reply that is complete by then is
    /// just sent, without a preview flashing before it (a fast model, or one that does not
    /// stream).
    pub first_after: Duration,
}

impl Default for DraftPacing {
    fn default() -> Self {
        Self {
            interval: Duration::from_millis(500),
            min_chars: 4,
            first_after: Duration::from_millis(150),
        }
    }
}

/// Sends drafts for every chat of the bot; shared by the dispatcher's workers.
pub(crate) struct Drafts {
    bot: Bot,
    enabled: AtomicBool,
    pacing: DraftPacing,
    request_timeout: Duration,
    redactor: Redactor,
    observer: Option<Arc<dyn TelegramObserver>>,
}

impl Drafts {
    pub(crate) fn new(
        bot: Bot,
        pacing: DraftPacing,
        request_timeout: Duration,
        redactor: Redactor,
        observer: Option<Arc<dyn TelegramObserver>>,
    ) -> Self {
        Self {
            bot,
            enabled: AtomicBool::new(!pacing.interval.is_zero()),
            pacing,
            request_timeout,
            redactor,
            observer,
        }
    }

    /// Whether drafts are on (not turned off, and the server has not rejected the method).
    pub(crate) fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// Starts drafting one reply in `chat` (a private chat); `decorate` turns the text so far
    /// into what the draft shows (e.g. the quote of a voice note first).
    pub(crate) fn start(
        self: &Arc<Self>,
        chat: ChatId,
        draft_id: i64,
        decorate: Box<dyn Fn(&str) -> String + Send + Sync>,
    ) -> DraftWriter {
        let (text, updates) = watch::channel(String::new());
        let stop = CancellationToken::new();
        let task =
            tokio::spawn(Arc::clone(self).pace(chat, draft_id, updates, stop.clone(), decorate));
        DraftWriter { text, stop, task }
    }

    async fn pace(
        self: Arc<Self>,
        chat: ChatId,
        draft_id: i64,
        mut updates: watch::Receiver<String>,
        stop: CancellationToken,
        decorate: Box<dyn Fn(&str) -> String + Send + Sync>,
    ) {
        let mut shown = String::new();
        // The first draft waits `first_after` from the first text; each next one `interval`
        // after the last.
        let mut next_draft: Option<Instant> = None;
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                changed = updates.changed() => if changed.is_err() { return },
            }
            let not_before =
                *next_draft.get_or_insert_with(|| Instant::now() + self.pacing.first_after);
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep_until(not_before) => {}
            }
            let text = updates.borrow_and_update().clone();
            if text.chars().count() < self.pacing.min_chars {
                continue;
            }
            let draft = tail(&decorate(&text), DRAFT_LIMIT);
            if draft == shown {
                continue;
            }
            // The reply's end never waits for a draft (teloxide pauses 10 s after a 5xx).
            let sent = tokio::select! {
                () = stop.cancelled() => return,
                sent = self.send(chat, draft_id, &draft) => sent,
            };
            if !sent {
                return;
            }
            shown = draft;
            next_draft = Some(Instant::now() + self.pacing.interval);
        }
    }

    /// Sends one draft; `false` when drafts are off (now or from before).
    async fn send(&self, chat: ChatId, draft_id: i64, text: &str) -> bool {
        if !self.enabled() {
            return false;
        }
        let request = JsonRequest::new(
            self.bot.clone(),
            SendMessageDraft {
                chat_id: chat.0,
                draft_id,
                text: text.to_owned(),
            },
        );
        match tokio::time::timeout(self.request_timeout, request.send()).await {
            Ok(Ok(_)) => {
                if let Some(observer) = &self.observer {
                    observer.draft_sent();
                }
                true
            }
            Ok(Err(RequestError::Api(error))) if not_supported(&error) => {
                if self.enabled.swap(false, Ordering::Relaxed) {
                    tracing::warn!(
                        error = %self.redactor.clean(&error),
                        "the Bot API server does not accept sendMessageDraft; live drafts are off until restart"
                    );
                }
                false
            }
            Ok(Err(error)) => {
                tracing::debug!(error = %self.redactor.clean(&error), "a draft was not shown");
                true
            }
            Err(_) => {
                tracing::debug!("a draft got no answer in time");
                true
            }
        }
    }
}

/// Whether an API error means the server does not have the method at all (an older or local
/// Bot API server), rather than a problem with this one draft.
fn not_supported(error: &ApiError) -> bool {
    // Known errors (chat not found, blocked by the user, …) are about one chat; an unknown
    // method comes back as a 404 "Not Found" or a 400 that names the method.
    let ApiError::Unknown(text) = error else {
        return false;
    };
    let text = text.to_ascii_lowercase();
    text.starts_with("not found") || text.contains("method")
}

/// The end of `text` that fits `limit` characters (a long reply shows its newest part).
fn tail(text: &str, limit: usize) -> String {
    let count = text.chars().count();
    if count <= limit {
        return text.to_owned();
    }
    let mut shown: String = "…".to_owned();
    shown.extend(text.chars().skip(count - limit + 1));
    shown
}

/// The text of one reply as it grows, read by its pacing task.
pub(crate) struct DraftWriter {
    text: watch::Sender<String>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl ReplySink for DraftWriter {
    fn delta(&self, text: &str) {
        self.text.send_modify(|all| all.push_str(text));
    }
}

impl DraftWriter {
    /// Stops drafting (before the real message is sent) and waits for a draft in flight.
    pub(crate) async fn finish(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_draft_shows_its_newest_part_within_the_limit() {
        assert_eq!(tail("short", 10), "short");
        let long = "я".repeat(5000);
        let shown = tail(&format!("{long}конец"), DRAFT_LIMIT);
        assert_eq!(shown.chars().count(), DRAFT_LIMIT);
        assert!(shown.starts_with('…') && shown.ends_with("конец"));
    }

    #[test]
    fn only_an_unknown_method_turns_drafts_off() {
        assert!(not_supported(&ApiError::Unknown(
            "Not Found: method not found".into()
        )));
        assert!(not_supported(&ApiError::Unknown("Not Found".into())));
        assert!(!not_supported(&ApiError::ChatNotFound));
        assert!(!not_supported(&ApiError::BotBlocked));
    }

    #[test]
    fn the_payload_is_the_bot_api_method() {
        assert_eq!(SendMessageDraft::NAME, "sendMessageDraft");
        let json = serde_json::to_value(SendMessageDraft {
            chat_id: 5,
            draft_id: 7,
            text: "Добрый".into(),
        })
        .unwrap();
        assert_eq!(
            json,
            serde_json::json!({"chat_id": 5, "draft_id": 7, "text": "Добрый"})
        );
    }
}
