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
//! A draft is cut to Telegram's limit as Telegram counts it — UTF-16 code units, the counting
//! of [`super::split`] — so an emoji-heavy reply keeps its preview growing past 2048 emoji.
//!
//! Errors are told apart by what they say about the method, the chat or the one draft:
//! - *The server has no such method* (an older or local Bot API server): the Bot API server
//!   answers `404 Not Found: method not found` for a method it does not route (and turns every
//!   other 404 into a 400), and the HTTP front of `api.telegram.org` answers a bare `404 Not
//!   Found` for a path it does not serve (teloxide reads that as an invalid token; the bot is
//!   already talking to the server with it, so here it means the path). Drafts are then off for
//!   the process, with one log line.
//! - *This chat takes no drafts* (`TEXTDRAFT_PEER_INVALID`, a blocked bot, a deactivated user,
//!   an unknown chat): drafts are off for that chat only (the most recent chats are
//!   remembered, so the memory stays bounded).
//! - *Anything else* (a 400 about the text, a 5xx, a time-out): that draft is skipped and the
//!   next one is tried.
//!
//! Either way a draft never delays or prevents the reply.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
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

use super::recent::RecentKeys;
use super::redact::Redactor;
use super::split::{suffix_fitting, utf16_units, TELEGRAM_MESSAGE_LIMIT};
use super::stops::{Stoppable, Stops};
use super::TelegramObserver;

/// The most a draft may hold: Telegram's message limit, in UTF-16 code units.
const DRAFT_LIMIT: usize = TELEGRAM_MESSAGE_LIMIT;

/// How many chats that refused drafts are remembered (beyond that the oldest is tried again).
const REMEMBERED_REFUSING_CHATS: usize = 4096;

/// `sendMessageDraft`'s parameters. An empty `text` shows Telegram's "Thinking…" placeholder
/// (Bot API 10.0); `can_stop` shows the stop button (10.3, see [`super::stops`]).
#[derive(Debug, Clone, Serialize)]
struct SendMessageDraft {
    chat_id: i64,
    draft_id: i64,
    text: String,
    can_stop: bool,
}

impl Payload for SendMessageDraft {
    type Output = True;
    const NAME: &'static str = "sendMessageDraft";
}

/// `sendRichMessageDraft`'s parameters (Bot API 10.1): a draft formatted from Markdown.
#[derive(Debug, Clone, Serialize)]
struct SendRichMessageDraft {
    chat_id: i64,
    draft_id: i64,
    rich_message: super::rich::InputRichMessage,
    can_stop: bool,
}

impl Payload for SendRichMessageDraft {
    type Output = True;
    const NAME: &'static str = "sendRichMessageDraft";
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
    /// An empty draft ("Thinking…") as soon as the message is taken up, so the person sees
    /// the butler at work while the model reads the prompt.
    pub thinking: bool,
}

impl Default for DraftPacing {
    fn default() -> Self {
        Self {
            interval: Duration::from_millis(500),
            min_chars: 4,
            first_after: Duration::from_millis(150),
            thinking: true,
        }
    }
}

/// Sends drafts for every chat of the bot; shared by every answering task.
pub(crate) struct Drafts {
    bot: Bot,
    enabled: AtomicBool,
    /// Chats whose drafts were refused for the chat itself (not the server, not the text).
    refusing_chats: Mutex<RecentKeys<i64>>,
    pacing: DraftPacing,
    request_timeout: Duration,
    redactor: Redactor,
    observer: Option<Arc<dyn TelegramObserver>>,
    /// Replies a person may stop (the drafts' stop button).
    stops: Arc<Stops>,
    /// Formatting: Markdown replies are drafted as rich drafts while the server takes them.
    rich: Arc<super::rich::Rich>,
}

impl Drafts {
    pub(crate) fn new(
        bot: Bot,
        pacing: DraftPacing,
        request_timeout: Duration,
        redactor: Redactor,
        observer: Option<Arc<dyn TelegramObserver>>,
        (stops, rich): (Arc<Stops>, Arc<super::rich::Rich>),
    ) -> Self {
        Self {
            bot,
            enabled: AtomicBool::new(!pacing.interval.is_zero()),
            refusing_chats: Mutex::new(RecentKeys::new(REMEMBERED_REFUSING_CHATS)),
            pacing,
            request_timeout,
            redactor,
            observer,
            stops,
            rich,
        }
    }

    /// Whether drafts are on (not turned off, and the server has not rejected the method).
    pub(crate) fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// Starts drafting one reply in `chat` (a private chat); `decorate` turns the text so far
    /// into what the draft shows (e.g. the quote of a voice note first). The reply can be
    /// stopped by the person from the draft's stop button ([`ReplySink::stopped`]).
    pub(crate) fn start(
        self: &Arc<Self>,
        chat: ChatId,
        draft_id: i64,
        decorate: Box<dyn Fn(&str) -> String + Send + Sync>,
    ) -> DraftWriter {
        let (text, updates) = watch::channel(String::new());
        let stop = CancellationToken::new();
        let stoppable = self.stops.register(chat.0, draft_id);
        let task =
            tokio::spawn(Arc::clone(self).pace(chat, draft_id, updates, stop.clone(), decorate));
        DraftWriter {
            text,
            stop,
            task,
            stoppable,
        }
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
        if self.pacing.thinking {
            // "Thinking…" at once, while the model reads the prompt.
            tokio::select! {
                () = stop.cancelled() => return,
                sent = self.send(chat, draft_id, "") => if !sent { return },
            }
        }
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

    /// Sends one draft; `false` when drafts are off for this chat (now or from before).
    async fn send(&self, chat: ChatId, draft_id: i64, text: &str) -> bool {
        if !self.enabled() || self.refusing_chats().contains(&chat.0) {
            return false;
        }
        if let Some(markdown) = self.rich.markdown_of(text) {
            let request = JsonRequest::new(
                self.bot.clone(),
                SendRichMessageDraft {
                    chat_id: chat.0,
                    draft_id,
                    rich_message: super::rich::InputRichMessage::markdown(markdown),
                    can_stop: true,
                },
            );
            match tokio::time::timeout(self.request_timeout, request.send()).await {
                Ok(Ok(_)) => {
                    if let Some(observer) = &self.observer {
                        observer.draft_sent();
                    }
                    return true;
                }
                Ok(Err(error)) => self.rich.rejected(&error, &self.redactor, "a rich draft"),
                Err(_) => {}
            }
            // Then as plain text.
        }
        let request = JsonRequest::new(
            self.bot.clone(),
            SendMessageDraft {
                chat_id: chat.0,
                draft_id,
                text: text.to_owned(),
                can_stop: true,
            },
        );
        match tokio::time::timeout(self.request_timeout, request.send()).await {
            Ok(Ok(_)) => {
                if let Some(observer) = &self.observer {
                    observer.draft_sent();
                }
                true
            }
            Ok(Err(RequestError::Api(error))) => match refusal(&error) {
                Refusal::Server => {
                    if self.enabled.swap(false, Ordering::Relaxed) {
                        tracing::warn!(
                            error = %self.redactor.clean(&error),
                            "the Bot API server does not have sendMessageDraft; live drafts are off until restart"
                        );
                    }
                    false
                }
                Refusal::Chat => {
                    tracing::info!(
                        error = %self.redactor.clean(&error),
                        "this chat takes no drafts; its replies come without a live preview"
                    );
                    self.refusing_chats().insert(chat.0);
                    false
                }
                Refusal::ThisDraft => {
                    tracing::debug!(error = %self.redactor.clean(&error), "a draft was not shown");
                    true
                }
            },
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

    fn refusing_chats(&self) -> std::sync::MutexGuard<'_, RecentKeys<i64>> {
        // The set stays consistent whatever panicked while holding it.
        self.refusing_chats
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// What an error answer to a draft refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// The server has no `sendMessageDraft` (an older or local Bot API server).
    Server,
    /// This chat takes no drafts.
    Chat,
    /// Only this draft (its text, a passing failure): the next one may go through.
    ThisDraft,
}

/// Reads an API error of `sendMessageDraft` (see the module documentation for the sources).
fn refusal(error: &ApiError) -> Refusal {
    match error {
        // teloxide's reading of a bare "Not Found" (and of "Unauthorized": a token revoked
        // while running, when nothing else works either).
        ApiError::InvalidToken => Refusal::Server,
        ApiError::BotBlocked | ApiError::ChatNotFound | ApiError::UserDeactivated => Refusal::Chat,
        ApiError::Unknown(text) => {
            let text = text.trim();
            if text.eq_ignore_ascii_case("Not Found: method not found") {
                Refusal::Server
            } else if text.contains("TEXTDRAFT_PEER_INVALID") {
                Refusal::Chat
            } else {
                Refusal::ThisDraft
            }
        }
        _ => Refusal::ThisDraft,
    }
}

/// The end of `text` that fits `limit` UTF-16 units (a long reply shows its newest part,
/// after an ellipsis).
fn tail(text: &str, limit: usize) -> String {
    if utf16_units(text) <= limit {
        return text.to_owned();
    }
    let ellipsis = "…";
    let start = suffix_fitting(text, limit.saturating_sub(utf16_units(ellipsis)));
    format!("{ellipsis}{}", &text[start..])
}

/// The text of one reply as it grows, read by its pacing task.
pub(crate) struct DraftWriter {
    text: watch::Sender<String>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    /// Cancelled when the person presses the draft's stop button.
    stoppable: Stoppable,
}

impl ReplySink for DraftWriter {
    fn delta(&self, text: &str) {
        self.text.send_modify(|all| all.push_str(text));
    }

    fn stopped(&self) -> futures::future::BoxFuture<'static, ()> {
        Box::pin(self.stoppable.token().cancelled_owned())
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
        assert_eq!(shown.encode_utf16().count(), DRAFT_LIMIT);
        assert!(shown.starts_with('…') && shown.ends_with("конец"));
    }

    #[test]
    fn an_emoji_draft_fits_the_limit_in_utf16_units_without_tearing_a_pair() {
        let long = "😀".repeat(3000);
        let shown = tail(&format!("{long}!"), DRAFT_LIMIT);
        assert!(shown.encode_utf16().count() <= DRAFT_LIMIT);
        assert!(shown.encode_utf16().count() >= DRAFT_LIMIT - 1);
        assert!(shown.starts_with("…😀") && shown.ends_with("😀!"));
    }

    #[test]
    fn only_a_missing_method_turns_drafts_off_for_the_server() {
        let unknown = |text: &str| refusal(&ApiError::Unknown(text.to_owned()));
        assert_eq!(unknown("Not Found: method not found"), Refusal::Server);
        assert_eq!(refusal(&ApiError::InvalidToken), Refusal::Server);
        assert_eq!(
            unknown("Bad Request: TEXTDRAFT_PEER_INVALID"),
            Refusal::Chat
        );
        assert_eq!(refusal(&ApiError::ChatNotFound), Refusal::Chat);
        assert_eq!(refusal(&ApiError::BotBlocked), Refusal::Chat);
        assert_eq!(
            unknown("Bad Request: text must be non-empty for this method"),
            Refusal::ThisDraft
        );
        assert_eq!(unknown("Bad Request: text is too long"), Refusal::ThisDraft);
        assert_eq!(unknown("Internal Server Error"), Refusal::ThisDraft);
    }

    #[test]
    fn the_payload_is_the_bot_api_method() {
        assert_eq!(SendMessageDraft::NAME, "sendMessageDraft");
        let json = serde_json::to_value(SendMessageDraft {
            chat_id: 5,
            draft_id: 7,
            text: "Добрый".into(),
            can_stop: true,
        })
        .unwrap();
        assert_eq!(
            json,
            serde_json::json!({"chat_id": 5, "draft_id": 7, "text": "Добрый", "can_stop": true})
        );
        assert_eq!(SendRichMessageDraft::NAME, "sendRichMessageDraft");
        let json = serde_json::to_value(SendRichMessageDraft {
            chat_id: 5,
            draft_id: 7,
            rich_message: crate::telegram::rich::InputRichMessage::markdown("**Добрый**"),
            can_stop: true,
        })
        .unwrap();
        assert_eq!(
            json["rich_message"],
            serde_json::json!({"markdown": "**Добрый**"})
        );
    }
}
