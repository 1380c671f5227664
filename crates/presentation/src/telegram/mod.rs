//! The Telegram front end: updates arrive by long polling or webhook, are stored in a durable
//! inbox before Telegram is told they arrived, and are answered from the inbox, one reply per
//! message through [`PersonalizedReplyUseCase`], plain-text replies split to Telegram's limit.
//!
//! The factory calls [`run_bot`] with [`BotSettings`], [`BotDeps`] and a cancellation token;
//! everything else here is private.
//!
//! Guarantees (tested end to end against the fake Bot API in `butler-testkit`, with real
//! processes killed mid-load):
//! - **nothing lost**: an update is acknowledged (the next `getUpdates` offset, or the
//!   webhook's `200`) only once it is in the inbox ([`receive`]); a crash leaves it pending,
//!   and it is answered after the restart, or by another replica once its lease expires;
//! - **per-user order**: a user's updates are answered one at a time, in order, across tasks
//!   and processes ([`workers`]), while other users are served in parallel — a slow model for
//!   one user never blocks another;
//! - **none answered twice**: redeliveries are dropped by `update_id`; an update claimed again
//!   after a crash finds its turn in memory and re-sends the stored reply without asking the
//!   model. The window left: an update claimed again after Telegram accepted its reply and
//!   before it was marked done — the process died or was stopped while the mark failed, or
//!   the database was unreachable for longer than the lease and another replica claimed it
//!   first ([`workers`]) — sends that reply again;
//! - **no resent replies**: see [`outbox`] — only sends that surely failed are retried;
//! - **the token never appears in logs or errors**: error texts pass through a redactor;
//! - **webhook requests are authenticated**: see [`webhook`];
//! - **a webhook replica starts without the Bot API**: it serves and stores at once, makes
//!   its start-up calls in the background with back-off, and answers once `getMe` succeeds
//!   (see [`connect`]);
//! - **strangers leave no trace**: the allow-list is applied as an update arrives, before the
//!   inbox, so nothing of a user off `ALLOWED_USER_IDS` is stored; in a private chat they are
//!   told once, in a group the butler stays silent (see [`gate`]).

mod config;
mod connect;
mod drafts;
mod edits;
mod gate;
mod group;
mod handler;
mod limits;
mod outbox;
mod polling;
mod receive;
mod recent;
mod redact;
mod reminders;
mod rich;
mod split;
mod stops;
mod texts;
pub mod webhook;
mod workers;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use butler_application::{ObserveMessageUseCase, PersonalizedReplyUseCase};
use butler_domain::ports::{SpeechToText, UpdateInbox, UserProfileRepository};
use secrecy::ExposeSecret as _;
use teloxide::prelude::*;
use teloxide::types::Me;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub use config::{
    Access, BotConfig, BotSettings, Delivery, GroupConfig, InboxConfig, WebhookConfig,
};
pub use drafts::DraftPacing;
pub use edits::GroupPacing;
pub use limits::Limits;
pub use reminders::{OfferDeps, ReminderDeps};
pub use split::{split_message, TELEGRAM_MESSAGE_LIMIT};

use connect::call_at_start;
use gate::Gate;
use handler::Handler;
use outbox::Outbox;
use receive::Receiver;
use redact::Redactor;
use webhook::WebhookServer;
use workers::Workers;

/// What the bot needs from the rest of the application.
#[derive(Clone)]
pub struct BotDeps {
    /// Answers messages.
    pub reply: Arc<PersonalizedReplyUseCase>,
    /// Keeps group lines nobody addressed to the butler, as the group's context.
    pub observe: Arc<ObserveMessageUseCase>,
    /// Transcribes voice notes; `None` = voice notes get a polite "please type" reply.
    pub stt: Option<Arc<dyn SpeechToText>>,
    /// Profiles, read for per-user exceptions to the limits.
    pub profiles: Arc<dyn UserProfileRepository>,
    /// Received updates until they are answered.
    pub inbox: Arc<dyn UpdateInbox>,
    /// Told about Telegram-side events worth counting; `None` = nobody listens.
    pub observer: Option<Arc<dyn TelegramObserver>>,
    /// Reminders (requests in private chats, `/reminders`, the scheduler); `None` = off.
    pub reminders: Option<ReminderDeps>,
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

    /// A message addressed to the butler in a group was answered.
    fn group_answered(&self) {}

    /// A group message nobody addressed to the butler was kept as the group's context.
    fn group_kept(&self) {}

    /// A person pressed a draft's stop button: `matched` when this process was writing that
    /// reply (and stopped it).
    fn stop_pressed(&self, _matched: bool) {}

    /// A rich message (Markdown) was rejected and went out as plain text.
    fn rich_fallback(&self) {}

    /// A start-up call (`getMe`, `setWebhook`) made in the background in webhook mode failed
    /// in a way that passes (unreachable, no answer, `429`, `5xx`); it is retried.
    fn setup_failed(&self, _method: &'static str) {}
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
    /// The webhook listener could not bind `TELEGRAM_WEBHOOK_LISTEN`.
    #[error("cannot listen for webhooks on {addr} (TELEGRAM_WEBHOOK_LISTEN): {detail}")]
    WebhookListen {
        /// The address.
        addr: String,
        /// What the OS said.
        detail: String,
    },
    /// A start-up call failed: in long polling any failure (Telegram unreachable too); in
    /// webhook mode only Telegram refusing the bot (a rejected token, a refused webhook URL).
    #[error("Telegram start-up call failed: {detail}")]
    Startup {
        /// What failed, without the token.
        detail: String,
    },
}

/// The update kinds asked of Telegram (polling and webhook alike): messages, the stop
/// button's presses, and presses of inline buttons (the `/reminders` cancel buttons).
pub(crate) const ALLOWED_UPDATES: &[&str] = &["message", stops::STOP_UPDATE, "callback_query"];

/// Slack between the long-poll timeout and the HTTP client's own deadline.
const POLL_SLACK: Duration = Duration::from_secs(10);

/// Runs the bot until `shutdown` is cancelled, then stops receiving, lets replies in flight
/// finish within the grace period (releasing the rest), and returns.
///
/// # Errors
/// When the settings are invalid, the webhook address cannot be bound, Telegram refuses the
/// bot (a rejected token, a refused webhook URL — in webhook mode found in the background,
/// after receiving started), or, in long polling, Telegram cannot be reached at start-up
/// ([`connect`]). Otherwise nothing stops the bot but `shutdown`: Telegram and inbox outages
/// are retried with backoff, model/STT/storage failures become polite replies.
pub async fn run_bot(
    settings: BotSettings,
    deps: BotDeps,
    shutdown: CancellationToken,
) -> Result<(), BotError> {
    let BotSettings {
        token,
        api_url,
        delivery,
        config,
    } = settings;
    let problems = config.problems();
    if !problems.is_empty() {
        return Err(BotError::InvalidSettings { problems });
    }
    let token = token.expose_secret();
    let redactor = Redactor::new(token);
    let client = teloxide::net::default_reqwest_settings()
        .timeout(config.request_timeout.max(config.poll_timeout + POLL_SLACK))
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

    match &config.access {
        Access::Everyone => tracing::warn!(
            "ALLOWED_USER_IDS=*: the bot answers anyone who finds it; rate limits and the daily quota still apply"
        ),
        Access::Only(ids) => tracing::info!(users = ids.len(), "answering the allowed users only"),
    }

    let wake = Arc::new(Notify::new());
    let inbox = Arc::clone(&deps.inbox);
    let gate = Gate::new(
        config.access.clone(),
        config.groups.clone(),
        bot.clone(),
        Outbox::new(
            bot.clone(),
            config.clone(),
            redactor.clone(),
            deps.observer.clone(),
        ),
    );
    // Who the bot is (for mentions in groups), known once `getMe` answered.
    let me_cell: Arc<OnceLock<Me>> = Arc::default();
    // Replies a person may stop from their draft: registered by the handler, stopped by the
    // receiver as the stop arrives.
    let stops = Arc::new(stops::Stops::default());
    let rich = Arc::new(rich::Rich::new(config.rich_messages, deps.observer.clone()));
    let receiver = Receiver::new(
        Arc::clone(&inbox),
        Arc::clone(&wake),
        gate,
        (Arc::clone(&stops), deps.observer.clone()),
    );
    // Receiving stops first at shutdown; answering winds down after it. `stop` is the whole
    // bot's: shutdown, or Telegram refusing the bot for good after a webhook start.
    let stop = shutdown.child_token();
    let stop_receiving = stop.child_token();
    // Cancelled once Telegram answered `getMe`: answering waits for it (see `connect`).
    let connected = CancellationToken::new();
    let (receiving, connecting) = match delivery {
        Delivery::Polling => {
            let me = tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                me = call_at_start(&config, &redactor, "getMe", bot.get_me().send()) => me?,
            };
            let identity = Arc::clone(&me_cell);
            call_at_start(
                &config,
                &redactor,
                "deleteWebhook",
                bot.delete_webhook().send(),
            )
            .await?;
            tracing::info!(bot = me.username(), "connected to Telegram; long polling");
            let _ = identity.set(me);
            connected.cancel();
            let polling = tokio::spawn(polling::poll(
                bot.clone(),
                receiver,
                config.poll_timeout,
                redactor.clone(),
                stop_receiving.clone(),
            ));
            (polling, None)
        }
        Delivery::Webhook(webhook) => {
            let server = WebhookServer::bind(&webhook, receiver).await.map_err(|e| {
                BotError::WebhookListen {
                    addr: webhook.listen.to_string(),
                    detail: e.to_string(),
                }
            })?;
            tracing::info!(
                listen = ?server.local_addr(),
                path = webhook.url.path(),
                "receiving updates by webhook"
            );
            let serving = tokio::spawn(server.serve(stop_receiving.clone()));
            let connecting = tokio::spawn(connect::webhook_in_background(
                bot.clone(),
                webhook,
                config.clone(),
                redactor.clone(),
                deps.observer.clone(),
                (Arc::clone(&me_cell), connected.clone()),
                stop_receiving.clone(),
            ));
            (serving, Some(connecting))
        }
    };
    let purging = tokio::spawn(purge(
        Arc::clone(&inbox),
        config.inbox.retention,
        config.inbox.purge_every,
        stop_receiving.clone(),
    ));

    let firing = deps.reminders.as_ref().map(|r| {
        let fire = Arc::new(butler_application::reminders::FireRemindersUseCase::new(
            Arc::clone(r.manage.store()),
            Arc::clone(&deps.profiles),
            Arc::new(reminders::TelegramChannel {
                bot: bot.clone(),
                timeout: config.request_timeout,
                redactor: redactor.clone(),
            }),
            r.fire,
            r.observer.clone(),
        ));
        let stop = stop.clone();
        let connected = connected.clone();
        let batch = r.fire.batch;
        tokio::spawn(async move {
            tokio::select! {
                () = connected.cancelled() => reminders::fire_loop(fire, batch, stop).await,
                () = stop.cancelled() => {}
            }
        })
    });
    let offering = deps
        .reminders
        .as_ref()
        .and_then(|r| r.offers.clone())
        .map(|offers| {
            let bot = bot.clone();
            let stop = stop.clone();
            let connected = connected.clone();
            let (timeout, redactor) = (config.request_timeout, redactor.clone());
            tokio::spawn(async move {
                tokio::select! {
                    () = connected.cancelled() => reminders::offer_loop(offers, bot, timeout, redactor, stop).await,
                    () = stop.cancelled() => {}
                }
            })
        });
    let workers = Workers {
        inbox,
        handler: Arc::new(Handler::new(
            deps,
            config.clone(),
            bot,
            redactor,
            handler::Shared {
                me: me_cell,
                stops,
                rich,
            },
        )),
        wake,
        config: config.inbox,
        grace: config.shutdown_grace,
        answered: std::sync::Mutex::default(),
    };
    let answering = {
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = connected.cancelled() => workers.run(stop).await,
                () = stop.cancelled() => {}
            }
        })
    };
    let refused = async move {
        match connecting {
            Some(task) => match task.await {
                Ok(Err(error)) => error,
                _ => std::future::pending().await,
            },
            None => std::future::pending().await,
        }
    };
    let outcome = tokio::select! {
        () = shutdown.cancelled() => Ok(()),
        error = refused => {
            tracing::error!(%error, "Telegram refused the bot; stopping");
            Err(error)
        }
    };
    tracing::info!("shutting down: no new updates taken");
    stop_receiving.cancel();
    let _ = receiving.await;
    purging.abort();
    stop.cancel();
    let _ = answering.await;
    if let Some(firing) = firing {
        let _ = firing.await;
    }
    if let Some(offering) = offering {
        let _ = offering.await;
    }
    tracing::info!("bot stopped");
    outcome
}

/// Removes answered updates older than `retention` from the inbox, at once and then every
/// `every` ([`InboxConfig::purge_every`], hourly).
async fn purge(
    inbox: Arc<dyn UpdateInbox>,
    retention: Duration,
    every: Duration,
    stop: CancellationToken,
) {
    let retention = time::Duration::try_from(retention).unwrap_or(time::Duration::days(2));
    loop {
        let before = time::OffsetDateTime::now_utc() - retention;
        match inbox.delete_done_before(before).await {
            Ok(0) => {}
            Ok(removed) => tracing::debug!(removed, "answered updates removed from the inbox"),
            Err(error) => tracing::warn!(%error, "inbox clean-up failed; retrying later"),
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_private_stranger_is_remembered_as_told_among_the_last_65536() {
        // docs/architecture.md states the number.
        assert_eq!(super::gate::REMEMBERED_REFUSALS, 65_536);
    }
}
