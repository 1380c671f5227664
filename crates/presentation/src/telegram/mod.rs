//! The Telegram front end: long polling with teloxide, one reply per message through
//! [`PersonalizedReplyUseCase`], plain-text replies split to Telegram's limit.
//!
//! The factory calls [`run_bot`] with [`BotSettings`], [`BotDeps`] and a cancellation token;
//! everything else here is private.
//!
//! Guarantees (tested end to end against the fake Bot API in `butler-testkit`):
//! - **per-user order**: updates are distributed to workers by sender (falling back to the
//!   chat), so one user's messages are answered one at a time, in order, while other users are
//!   served in parallel — a slow model for one user never blocks another;
//! - **no duplicate answers after a restart**: polling acknowledges each batch with the next
//!   `getUpdates` offset as soon as it is received, and a graceful shutdown finishes every
//!   update already taken and sends a final `getUpdates` confirming them, so a restarted bot
//!   never sees them again. Within one process, re-delivered messages are dropped by
//!   `(chat, message id)`. The trade-off of acknowledging on receipt: a *crash* (not a
//!   shutdown) loses the few updates received but not yet answered, rather than answering
//!   some twice;
//! - **no resent replies**: see [`outbox`] — only sends that surely failed are retried;
//! - **the token never appears in logs or errors**: error texts pass through a redactor.

mod config;
mod drafts;
mod handler;
mod limits;
mod outbox;
mod recent;
mod redact;
mod split;
mod texts;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use butler_application::PersonalizedReplyUseCase;
use butler_domain::ports::{SpeechToText, UserProfileRepository};
use futures::future::BoxFuture;
use secrecy::ExposeSecret as _;
use teloxide::dispatching::Dispatcher;
use teloxide::error_handlers::ErrorHandler;
use teloxide::prelude::*;
use teloxide::update_listeners::Polling;
use teloxide::RequestError;
use tokio_util::sync::CancellationToken;

pub use config::{Access, BotConfig, BotSettings};
pub use drafts::DraftPacing;
pub use limits::Limits;
pub use split::{split_message, TELEGRAM_MESSAGE_LIMIT};

use handler::Handler;
use redact::Redactor;

/// What the bot needs from the rest of the application.
#[derive(Clone)]
pub struct BotDeps {
    /// Answers messages.
    pub reply: Arc<PersonalizedReplyUseCase>,
    /// Transcribes voice notes; `None` = voice notes get a polite "please type" reply.
    pub stt: Option<Arc<dyn SpeechToText>>,
    /// Profiles, read for per-user exceptions to the limits.
    pub profiles: Arc<dyn UserProfileRepository>,
    /// Told about Telegram-side events worth counting; `None` = nobody listens.
    pub observer: Option<Arc<dyn TelegramObserver>>,
}

/// Hooks for what happens on the Telegram side of the bot (the factory counts them in
/// metrics). Every method has an empty default; they must be cheap and never block.
pub trait TelegramObserver: Send + Sync {
    /// A `sendMessage` call failed: an API error, flood control (`429`), a network error or
    /// no answer in time — counted per call, whether or not the part is then sent again.
    fn send_failed(&self) {}

    /// A message was refused by a limit: `reason` is `rate` or `quota`.
    fn refused(&self, _reason: &'static str) {}

    /// A live draft of a reply was shown.
    fn draft_sent(&self) {}
}

impl std::fmt::Debug for BotDeps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BotDeps")
            .field("reply", &self.reply)
            .field("stt", &self.stt.is_some())
            .field("observer", &self.observer.is_some())
            .finish()
    }
}

/// Why the bot could not start. Messages never contain the token.
#[derive(Debug, thiserror::Error)]
pub enum BotError {
    /// The settings are inconsistent.
    #[error("invalid bot settings: {}", problems.join("; "))]
    InvalidSettings {
        /// Every problem found.
        problems: Vec<String>,
    },
    /// `TELEGRAM_API_URL` is not a URL.
    #[error(
        "TELEGRAM_API_URL is not a valid URL ({reason}): expected e.g. http://127.0.0.1:8081/"
    )]
    InvalidApiUrl {
        /// What the URL parser said.
        reason: String,
    },
    /// The HTTP client could not be built (TLS set-up).
    #[error("could not build the HTTP client for Telegram: {detail}")]
    HttpClient {
        /// What failed.
        detail: String,
    },
    /// Telegram rejected the token or could not be reached at start-up (`getMe`).
    #[error("Telegram getMe failed at start-up: {detail}")]
    Startup {
        /// What failed, without the token.
        detail: String,
    },
}

/// Updates queued per sender before the dispatcher waits (teloxide's default is 64). The
/// dispatcher blocks *everyone* while one sender's queue is full, so it is generous: a user
/// flooding a slow model must not stall the others.
const WORKER_QUEUE: usize = 1024;

/// Slack between the long-poll timeout and the HTTP client's own deadline.
const POLL_SLACK: Duration = Duration::from_secs(10);

/// Runs the bot until `shutdown` is cancelled, then lets in-flight replies finish and
/// confirms the updates already taken, and returns.
///
/// # Errors
/// When the settings are invalid or Telegram cannot be reached or rejects the token at
/// start-up. Once running, nothing stops the bot but `shutdown`: Telegram outages are
/// retried with backoff, model/STT/storage failures become polite replies.
pub async fn run_bot(
    settings: BotSettings,
    deps: BotDeps,
    shutdown: CancellationToken,
) -> Result<(), BotError> {
    let BotSettings {
        token,
        api_url,
        config,
    } = settings;
    let problems = config.problems();
    if !problems.is_empty() {
        return Err(BotError::InvalidSettings { problems });
    }
    let token = token.expose_secret();
    let redactor = Redactor::new(token);
    let client = teloxide::net::default_reqwest_settings()
        .timeout(config.poll_timeout + POLL_SLACK)
        .build()
        .map_err(|e| BotError::HttpClient {
            detail: redactor.clean(e),
        })?;
    let mut bot = Bot::with_client(token, client);
    if let Some(url) = api_url.as_deref().filter(|u| !u.trim().is_empty()) {
        let url = url::Url::parse(url.trim()).map_err(|e| BotError::InvalidApiUrl {
            reason: e.to_string(),
        })?;
        bot = bot.set_api_url(url);
    }

    let me = tokio::select! {
        () = shutdown.cancelled() => return Ok(()),
        me = tokio::time::timeout(config.request_timeout, bot.get_me().send()) => me,
    };
    let me = match me {
        Ok(Ok(me)) => me,
        Ok(Err(error)) => {
            return Err(BotError::Startup {
                detail: redactor.clean(error),
            })
        }
        Err(_) => {
            return Err(BotError::Startup {
                detail: format!("no answer within {:?}", config.request_timeout),
            })
        }
    };
    tracing::info!(bot = me.username(), "connected to Telegram; long polling");

    let poll_timeout = config.poll_timeout;
    match &config.access {
        Access::Everyone => tracing::warn!(
            "ALLOWED_USER_IDS=*: the bot answers anyone who finds it; rate limits and the daily quota still apply"
        ),
        Access::Only(ids) => tracing::info!(users = ids.len(), "answering the allowed users only"),
    }
    let handler = Arc::new(Handler::new(deps, config, bot.clone(), redactor.clone()));
    let tree = Update::filter_message().endpoint(move |update: Update, message: Message| {
        let handler = handler.clone();
        async move {
            handler.handle(update.id, message).await;
            Ok::<(), Infallible>(())
        }
    });
    let mut dispatcher = Dispatcher::builder(bot.clone(), tree)
        .distribution_function(sender_key)
        .worker_queue_size(WORKER_QUEUE)
        // Edited messages, callbacks, ... are not for the butler; never log their content.
        .default_handler(|_| async {})
        .build();
    let listener = Polling::builder(bot.clone())
        .timeout(poll_timeout)
        .delete_webhook()
        .await
        .build();

    let stop = dispatcher.shutdown_token();
    let bridge = tokio::spawn(async move {
        shutdown.cancelled().await;
        tracing::info!("shutting down: finishing replies in flight");
        // The dispatcher refuses to stop before it has started; try until it has.
        loop {
            match stop.shutdown() {
                Ok(done) => {
                    done.await;
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    });
    let result = dispatcher
        .try_dispatch_with_listener(
            listener,
            Arc::new(ListenerErrors {
                redactor: redactor.clone(),
            }),
        )
        .await;
    bridge.abort();
    result.map_err(|error| BotError::Startup {
        detail: redactor.clean(error),
    })?;
    tracing::info!("bot stopped");
    Ok(())
}

/// Distributes updates by sender, so one user's messages are handled in order (even across
/// chats — they share one memory) and different users in parallel.
fn sender_key(update: &Update) -> Option<i64> {
    update
        .from()
        .and_then(|user| i64::try_from(user.id.0).ok())
        .or_else(|| update.chat().map(|chat| chat.id.0))
}

/// Logs polling errors without the token; polling itself backs off and retries.
struct ListenerErrors {
    redactor: Redactor,
}

impl ErrorHandler<RequestError> for ListenerErrors {
    fn handle_error(self: Arc<Self>, error: RequestError) -> BoxFuture<'static, ()> {
        let error = self.redactor.clean(error);
        Box::pin(async move {
            tracing::warn!(%error, "getUpdates failed; polling will retry");
        })
    }
}
