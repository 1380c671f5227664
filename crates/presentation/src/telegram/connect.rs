//! The calls to Telegram a start needs: `getMe` (the token works), then `deleteWebhook` for long
//! polling or `setWebhook` for webhook mode.
//!
//! - **Long polling** makes them first and fails the start when one fails: nothing can be
//!   received without Telegram, and a wrong token or `TELEGRAM_API_URL` shows at once (the
//!   supervisor restarts the process).
//! - **Webhook mode** needs no outbound call to receive, so a replica starts while the Bot API
//!   is unreachable: the listener serves and stores updates at once, and these calls run in
//!   the background, each retried after [`RETRY_BACKOFF`] pauses (1, 2, 5, 10, then every
//!   30 s) while Telegram cannot be reached, does not answer in time, or answers `429`/`5xx`
//!   (or with an error it does not name) — every failure logged and reported to the observer.
//!   Answering starts once `getMe` succeeded: until then updates wait in the inbox, so none is
//!   answered into an outage and lost. A `4xx` other than `429` is Telegram's verdict on the
//!   bot itself — a rejected token (`401 Unauthorized`), a webhook URL it refuses (`400 Bad
//!   Request: bad webhook: An HTTPS URL must be provided for webhook`), a wrong
//!   `TELEGRAM_API_URL` path (`404 Not Found`) — which waiting cannot change: it stops the bot.

use std::sync::Arc;
use std::time::Duration;

use secrecy::ExposeSecret as _;
use teloxide::prelude::*;
use teloxide::requests::{JsonRequest, Payload};
use teloxide::types::Me;
use teloxide::{ApiError, RequestError};
use tokio_util::sync::CancellationToken;

use super::config::{BotConfig, WebhookConfig};
use super::redact::Redactor;
use super::{BotError, TelegramObserver};

/// Pauses between attempts of a background start-up call, growing to the last.
pub(crate) const RETRY_BACKOFF: [Duration; 5] = [
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(5),
    Duration::from_secs(10),
    Duration::from_secs(30),
];

/// The pause after the `failures`-th failed attempt (1-based) of a background start-up call.
fn retry_pause(failures: usize) -> Duration {
    RETRY_BACKOFF[failures.saturating_sub(1).min(RETRY_BACKOFF.len() - 1)]
}

/// How Telegram's error descriptions start for the `4xx` statuses that are its verdict on the
/// bot (the reason phrase; `429 Too Many Requests` is not one of them).
const VERDICTS: [&str; 5] = [
    "Bad Request",
    "Unauthorized",
    "Forbidden",
    "Not Found",
    "Conflict",
];

/// Whether an error Telegram answered is final for a start-up call. teloxide keeps only the
/// description, not the status: the errors it knows by name are all `4xx` verdicts, and an
/// unknown one is a verdict when its description starts with a `4xx` reason phrase (as
/// Telegram's do: "Bad Request: bad webhook: …") — otherwise (`5xx`, a gateway's words) it may
/// pass.
fn is_verdict(error: &ApiError) -> bool {
    match error {
        ApiError::Unknown(description) => VERDICTS
            .iter()
            .any(|phrase| description.trim_start().starts_with(phrase)),
        _ => true,
    }
}

/// Why a start-up call failed.
enum Failure {
    /// Telegram could not be reached, did not answer in time, or had a passing trouble.
    Passing(String),
    /// Telegram answered with an error about the bot itself: waiting will not help.
    Final(String),
}

/// One start-up call, bounded by the request deadline.
async fn call<T>(
    config: &BotConfig,
    redactor: &Redactor,
    method: &str,
    call: impl std::future::Future<Output = Result<T, RequestError>>,
) -> Result<T, Failure> {
    match tokio::time::timeout(config.request_timeout, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(RequestError::Api(error))) if is_verdict(&error) => Err(Failure::Final(format!(
            "{method}: {}",
            redactor.clean(error)
        ))),
        Ok(Err(error)) => Err(Failure::Passing(format!(
            "{method}: {}",
            redactor.clean(error)
        ))),
        Err(_) => Err(Failure::Passing(format!(
            "{method}: no answer within {:?}",
            config.request_timeout
        ))),
    }
}

/// A start-up call whose failure, of any kind, stops the start (long polling).
pub(crate) async fn call_at_start<T>(
    config: &BotConfig,
    redactor: &Redactor,
    method: &str,
    request: impl std::future::Future<Output = Result<T, RequestError>>,
) -> Result<T, BotError> {
    call(config, redactor, method, request)
        .await
        .map_err(|failure| match failure {
            Failure::Passing(detail) | Failure::Final(detail) => BotError::Startup { detail },
        })
}

/// Retries `attempt` until it succeeds (`Some`), fails for good (`Err`), or `stop` (`None`).
async fn patiently<T, F, Fut>(
    method: &'static str,
    observer: Option<&Arc<dyn TelegramObserver>>,
    stop: &CancellationToken,
    mut attempt: F,
) -> Result<Option<T>, BotError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Failure>>,
{
    let mut failures = 0;
    loop {
        let outcome = tokio::select! {
            () = stop.cancelled() => return Ok(None),
            outcome = attempt() => outcome,
        };
        match outcome {
            Ok(value) => return Ok(Some(value)),
            Err(Failure::Final(detail)) => return Err(BotError::Startup { detail }),
            Err(Failure::Passing(detail)) => {
                if let Some(observer) = observer {
                    observer.setup_failed(method);
                }
                failures += 1;
                let pause = retry_pause(failures);
                tracing::warn!(
                    error = %detail,
                    failures,
                    retry_in_ms = pause.as_millis(),
                    "Telegram not reachable yet; webhook updates are received and stored, \
                     answers wait"
                );
                tokio::select! {
                    () = stop.cancelled() => return Ok(None),
                    () = tokio::time::sleep(pause) => {}
                }
            }
        }
    }
}

/// `setWebhook` with the update kinds as Telegram names them: teloxide 0.17's list has no
/// `stopped_message_generation`.
#[derive(Clone, serde::Serialize)]
struct SetWebhookRaw {
    url: String,
    secret_token: String,
    allowed_updates: &'static [&'static str],
    max_connections: u8,
}

impl std::fmt::Debug for SetWebhookRaw {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret never reaches a log.
        f.debug_struct("SetWebhookRaw")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Payload for SetWebhookRaw {
    type Output = teloxide::types::True;
    const NAME: &'static str = "setWebhook";
}

/// Webhook mode's start-up calls, in the background: `getMe` (then `connected` is cancelled,
/// and answering starts), then `setWebhook`. Returns `Ok` once both succeeded or at `stop`;
/// `Err` when Telegram refuses the bot for good.
pub(crate) async fn webhook_in_background(
    bot: Bot,
    webhook: WebhookConfig,
    config: BotConfig,
    redactor: Redactor,
    observer: Option<Arc<dyn TelegramObserver>>,
    (identity, connected): (Arc<std::sync::OnceLock<Me>>, CancellationToken),
    stop: CancellationToken,
) -> Result<(), BotError> {
    let me: Option<Me> = patiently("getMe", observer.as_ref(), &stop, || {
        call(&config, &redactor, "getMe", bot.get_me().send())
    })
    .await?;
    let Some(me) = me else { return Ok(()) };
    tracing::info!(
        bot = me.username(),
        "connected to Telegram; answering stored updates"
    );
    let _ = identity.set(me);
    connected.cancel();
    let set = patiently("setWebhook", observer.as_ref(), &stop, || {
        let request = JsonRequest::new(
            bot.clone(),
            SetWebhookRaw {
                url: webhook.url.to_string(),
                secret_token: webhook.secret.expose_secret().to_owned(),
                allowed_updates: super::ALLOWED_UPDATES,
                max_connections: webhook.max_connections,
            },
        )
        .send();
        call(&config, &redactor, "setWebhook", request)
    })
    .await?;
    if set.is_some() {
        tracing::info!(
            url_path = webhook.url.path(),
            "webhook set; Telegram delivers updates here"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn verdict(error: RequestError) -> &'static str {
        let config = BotConfig::default();
        let redactor = Redactor::new("7000000001:AAFakeTokenForTests_abcdefghijklmnop");
        match call::<()>(&config, &redactor, "setWebhook", async { Err(error) }).await {
            Ok(()) => "ok",
            Err(Failure::Passing(_)) => "retried",
            Err(Failure::Final(_)) => "final",
        }
    }

    #[tokio::test]
    async fn telegrams_verdicts_on_the_bot_are_final_and_passing_troubles_are_retried() {
        for refusal in [ApiError::InvalidToken, ApiError::WebhookRequireHttps] {
            assert_eq!(verdict(RequestError::Api(refusal)).await, "final");
        }
        // What Telegram answers today for refused webhook URLs and a wrong API path: unknown to
        // teloxide, final all the same.
        for description in [
            "Bad Request: bad webhook: An HTTPS URL must be provided for webhook",
            "Bad Request: bad webhook: IP address 10.0.0.1 is reserved",
            "Bad Request: bad webhook: Failed to resolve host: Name or service not known",
            "Not Found",
            "Unauthorized",
        ] {
            let error = RequestError::Api(ApiError::Unknown(description.to_owned()));
            assert_eq!(verdict(error).await, "final", "{description}");
        }
        // Telegram's 5xx answers ("Bad Gateway") parse as unknown API errors.
        let passing = [
            RequestError::Api(ApiError::Unknown("Bad Gateway".to_owned())),
            RequestError::Api(ApiError::Unknown("Internal Server Error".to_owned())),
            RequestError::Api(ApiError::Unknown(
                "Too Many Requests: retry later".to_owned(),
            )),
            RequestError::RetryAfter(teloxide::types::Seconds::from_seconds(3)),
            RequestError::Io(Arc::new(std::io::Error::from(
                std::io::ErrorKind::ConnectionRefused,
            ))),
        ];
        for error in passing {
            assert_eq!(verdict(error).await, "retried");
        }
    }

    #[test]
    fn background_start_up_calls_are_retried_after_1_2_5_10_then_every_30_seconds() {
        let pauses: Vec<u64> = (1..=7).map(|n| retry_pause(n).as_secs()).collect();
        assert_eq!(pauses, [1, 2, 5, 10, 30, 30, 30]);
    }
}
