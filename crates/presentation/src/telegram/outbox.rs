//! Sending to Telegram: replies split to fit, sent in order, retried only when Telegram surely
//! did not deliver them; and the "typing…" indicator.
//!
//! Retry policy (duplicates are worse than a rare lost reply, because a user re-asks a lost
//! one but cannot un-read a double):
//! - `429 Too Many Requests`: Telegram rejected the call, nothing was delivered — wait
//!   `retry_after` (up to [`BotConfig::max_retry_after`]) and send again;
//! - a connection that could not be established: the request never left — back off and retry;
//! - anything else (timeouts, connections dropped mid-response, unreadable answers, 5xx,
//!   other API errors): the message may have been delivered, so it is *not* sent again; the
//!   failure is logged (token-free) and the remaining parts of that reply are dropped.
//!
//! teloxide itself waits 10 s before reporting a 5xx, so a flaky Telegram slows a reply but
//! never duplicates it.

use std::sync::Arc;
use std::time::Duration;

use teloxide::payloads::SendMessageSetters as _;
use teloxide::prelude::*;
use teloxide::types::{ChatAction, MessageId, ReplyParameters, ThreadId};
use teloxide::RequestError;
use tokio_util::sync::CancellationToken;

use super::config::BotConfig;
use super::redact::Redactor;
use super::rich::{InputRichMessage, Rich};
use super::split::{split_message, TELEGRAM_MESSAGE_LIMIT};
use super::TelegramObserver;

/// Why a reply could not be sent in full. Token-free.
#[derive(Debug, thiserror::Error)]
#[error("sending part {part} of {parts} failed: {reason}")]
pub(crate) struct SendError {
    /// 1-based index of the part that failed.
    pub part: usize,
    /// How many parts the reply had.
    pub parts: usize,
    /// What went wrong, without the token.
    pub reason: String,
}

/// What to do after a failed send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// Telegram asked to wait this long; nothing was delivered.
    After(Duration),
    /// The request never reached Telegram.
    Backoff,
    /// It may have been delivered: do not send again.
    No,
}

fn classify(error: &RequestError) -> Retry {
    match error {
        RequestError::RetryAfter(seconds) => Retry::After(seconds.duration()),
        RequestError::Network(error) if error.is_connect() => Retry::Backoff,
        _ => Retry::No,
    }
}

/// Sends texts to chats.
#[derive(Clone)]
pub(crate) struct Outbox {
    bot: Bot,
    config: BotConfig,
    redactor: Redactor,
    observer: Option<Arc<dyn TelegramObserver>>,
    /// Replies with Markdown go out as rich messages ([`super::rich`]); `None`: plain only.
    rich: Option<Arc<Rich>>,
}

/// `sendRichMessage`'s parameters (Bot API 10.1).
#[derive(Debug, Clone, serde::Serialize)]
struct SendRichMessage {
    chat_id: i64,
    rich_message: InputRichMessage,
    #[serde(skip_serializing_if = "Option::is_none")]
    message_thread_id: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reply_parameters: Option<ReplyParameters>,
}

impl teloxide::requests::Payload for SendRichMessage {
    type Output = teloxide::types::Message;
    const NAME: &'static str = "sendRichMessage";
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("config", &self.config)
            .field("observer", &self.observer.is_some())
            .finish_non_exhaustive()
    }
}

impl Outbox {
    pub(crate) fn new(
        bot: Bot,
        config: BotConfig,
        redactor: Redactor,
        observer: Option<Arc<dyn TelegramObserver>>,
    ) -> Self {
        Self {
            bot,
            config,
            redactor,
            observer,
            rich: None,
        }
    }

    /// The same outbox, sending replies that use Markdown as rich messages (builder style).
    #[must_use]
    pub(crate) fn with_rich(mut self, rich: Arc<Rich>) -> Self {
        self.rich = Some(rich);
        self
    }

    fn send_failed(&self) {
        if let Some(observer) = &self.observer {
            observer.send_failed();
        }
    }

    /// Sends `text` (split into Telegram-sized parts, in order) as plain text — no parse mode,
    /// so a reply can never fail on Markdown. The first part replies to `reply_to` in groups.
    /// Returns the number of parts sent.
    pub(crate) async fn send(
        &self,
        chat: ChatId,
        reply_to: Option<MessageId>,
        text: &str,
    ) -> Result<usize, SendError> {
        self.send_in(chat, reply_to, None, text).await
    }

    /// [`Outbox::send`] into a forum topic (`thread`), when there is one.
    pub(crate) async fn send_in(
        &self,
        chat: ChatId,
        reply_to: Option<MessageId>,
        thread: Option<ThreadId>,
        text: &str,
    ) -> Result<usize, SendError> {
        let parts = split_message(text, TELEGRAM_MESSAGE_LIMIT);
        let rich = self
            .rich
            .as_ref()
            .is_some_and(|rich| rich.markdown_of(text).is_some());
        for (index, part) in parts.iter().enumerate() {
            let quote = if index == 0 { reply_to } else { None };
            if rich && self.send_rich_part(chat, quote, thread, part).await {
                continue;
            }
            self.send_part(chat, quote, thread, part)
                .await
                .map_err(|reason| SendError {
                    part: index + 1,
                    parts: parts.len(),
                    reason,
                })?;
        }
        Ok(parts.len())
    }

    /// Sends one part as a rich message; `false` when Telegram rejected it (then it goes as
    /// plain text) — never after it may have been delivered.
    async fn send_rich_part(
        &self,
        chat: ChatId,
        reply_to: Option<MessageId>,
        thread: Option<ThreadId>,
        text: &str,
    ) -> bool {
        let Some(rich) = &self.rich else {
            return false;
        };
        let payload = SendRichMessage {
            chat_id: chat.0,
            rich_message: InputRichMessage::markdown(text),
            message_thread_id: thread.map(|t| t.0 .0),
            reply_parameters: reply_to
                .map(|id| ReplyParameters::new(id).allow_sending_without_reply()),
        };
        let request = teloxide::requests::JsonRequest::new(self.bot.clone(), payload);
        let mut attempt = 1;
        loop {
            match tokio::time::timeout(self.config.request_timeout, request.send_ref()).await {
                Ok(Ok(_)) => return true,
                Ok(Err(error)) => match classify(&error) {
                    Retry::After(wait)
                        if attempt < self.config.max_send_attempts
                            && wait <= self.config.max_retry_after =>
                    {
                        tokio::time::sleep(wait).await;
                        attempt += 1;
                    }
                    // An API answer: not delivered, so the plain text may follow.
                    _ if matches!(error, RequestError::Api(_)) => {
                        rich.rejected(&error, &self.redactor, "a rich message");
                        return false;
                    }
                    _ => {
                        // It may have been delivered: not sent again in any form.
                        self.send_failed();
                        tracing::warn!(error = %self.redactor.clean(&error), "rich message not confirmed; not resent");
                        return true;
                    }
                },
                Err(_) => {
                    self.send_failed();
                    tracing::warn!("rich message got no answer in time; not resent");
                    return true;
                }
            }
        }
    }

    async fn send_part(
        &self,
        chat: ChatId,
        reply_to: Option<MessageId>,
        thread: Option<ThreadId>,
        text: &str,
    ) -> Result<(), String> {
        let mut attempt = 1;
        loop {
            let mut request = self.bot.send_message(chat, text);
            if let Some(id) = reply_to {
                request = request
                    .reply_parameters(ReplyParameters::new(id).allow_sending_without_reply());
            }
            if let Some(thread) = thread {
                request = request.message_thread_id(thread);
            }
            let error =
                match tokio::time::timeout(self.config.request_timeout, request.send()).await {
                    Ok(Ok(_)) => return Ok(()),
                    Ok(Err(error)) => {
                        self.send_failed();
                        error
                    }
                    Err(_) => {
                        self.send_failed();
                        return Err(format!(
                            "no answer within {:?}; not resent (it may have been delivered)",
                            self.config.request_timeout
                        ));
                    }
                };
            let last = attempt >= self.config.max_send_attempts;
            match classify(&error) {
                Retry::After(wait) if !last && wait <= self.config.max_retry_after => {
                    tracing::warn!(
                        retry_after_secs = wait.as_secs(),
                        attempt,
                        "Telegram flood control: waiting before sending again"
                    );
                    tokio::time::sleep(wait).await;
                }
                Retry::Backoff if !last => {
                    let wait = backoff(attempt);
                    tracing::warn!(
                        error = %self.redactor.clean(&error),
                        attempt,
                        wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                        "Telegram unreachable: retrying the send"
                    );
                    tokio::time::sleep(wait).await;
                }
                _ => return Err(self.redactor.clean(&error)),
            }
            attempt += 1;
        }
    }

    /// Shows "typing…" in `chat` after [`BotConfig::typing_delay`] and then every
    /// [`BotConfig::typing_interval`] until the returned guard is stopped; a guard stopped
    /// before the delay sends nothing. Failures are logged at debug and never reach the reply.
    pub(crate) fn typing(&self, chat: ChatId) -> TypingGuard {
        let bot = self.bot.clone();
        let delay = self.config.typing_delay;
        let interval = self.config.typing_interval;
        let timeout = self
            .config
            .request_timeout
            .min(interval.max(Duration::from_secs(1)));
        let redactor = self.redactor.clone();
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            if !delay.is_zero() {
                tokio::select! {
                    () = stopped.cancelled() => return,
                    () = tokio::time::sleep(delay) => {}
                }
            }
            loop {
                let action = bot.send_chat_action(chat, ChatAction::Typing).send();
                match tokio::time::timeout(timeout, action).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(error)) => {
                        tracing::debug!(error = %redactor.clean(&error), "typing indicator failed");
                    }
                    Err(_) => tracing::debug!("typing indicator timed out"),
                }
                tokio::select! {
                    () = stopped.cancelled() => break,
                    () = tokio::time::sleep(interval) => {}
                }
            }
        });
        TypingGuard {
            stop,
            task: Some(task),
        }
    }
}

/// Exponential backoff for unreachable Telegram: 0.5 s, 1 s, 2 s, ... capped at 8 s.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(500) * 2u32.pow(attempt.saturating_sub(1).min(4))
}

/// The running typing indicator. [`TypingGuard::stop`] ends it after the request in flight
/// (so "typing…" never arrives after the reply and clears it); dropping it aborts at once.
#[derive(Debug)]
pub(crate) struct TypingGuard {
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// The longest a reply waits for a typing request in flight before sending anyway.
const TYPING_DRAIN: Duration = Duration::from_secs(2);

impl TypingGuard {
    /// Stops the indicator, waiting (briefly) for a request in flight to finish.
    pub(crate) async fn stop(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let abort = task.abort_handle();
            if tokio::time::timeout(TYPING_DRAIN, task).await.is_err() {
                abort.abort();
            }
        }
    }
}

impl Drop for TypingGuard {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use teloxide::types::Seconds;

    use super::*;

    #[test]
    fn flood_control_is_retried_after_the_time_telegram_asks_for() {
        let error = RequestError::RetryAfter(Seconds::from_seconds(3));
        assert_eq!(classify(&error), Retry::After(Duration::from_secs(3)));
    }

    #[test]
    fn api_errors_and_unreadable_answers_are_never_resent() {
        let error = RequestError::Api(teloxide::ApiError::BotBlocked);
        assert_eq!(classify(&error), Retry::No);
        let io = io_error();
        assert_eq!(classify(&io), Retry::No);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff(1), Duration::from_millis(500));
        assert_eq!(backoff(2), Duration::from_secs(1));
        assert_eq!(backoff(10), Duration::from_secs(8));
    }

    #[tokio::test]
    async fn a_connection_that_could_not_be_established_is_retried_with_back_off() {
        // A loopback port nobody listens on: the request never left.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let client = teloxide::net::default_reqwest_settings()
            .no_proxy()
            .build()
            .expect("a client");
        let bot = Bot::with_client("1:test", client)
            .set_api_url(url::Url::parse(&format!("http://127.0.0.1:{port}/")).expect("a URL"));
        let error = bot.get_me().send().await.expect_err("nothing listens");
        assert_eq!(classify(&error), Retry::Backoff, "{error:?}");
    }

    fn io_error() -> RequestError {
        RequestError::Io(std::sync::Arc::new(std::io::Error::other("broken")))
    }
}
