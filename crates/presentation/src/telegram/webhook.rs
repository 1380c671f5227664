//! Webhook mode: Telegram POSTs each update to the bot's public URL; the bot stores it in the
//! inbox and only then answers `200`, so an update is never acknowledged before it is safe.
//!
//! Each connection, then each request on it, in order:
//! - the request line and headers must arrive within [`WebhookConfig::header_read_timeout`]
//!   (10 s by default), or the connection is closed without an answer — this also ends a
//!   kept-alive connection that sends nothing;
//! - `X-Telegram-Bot-Api-Secret-Token` must equal the secret given to `setWebhook`, compared in
//!   constant time; otherwise `401` with an empty body, **before any of the body is read**, and
//!   the connection is closed (whatever the body's declared length);
//! - a declared `Content-Length` over [`MAX_BODY_BYTES`] gets `413`, also unread; a body that
//!   grows past it while being read gets `413` there;
//! - the whole body must arrive within [`WebhookConfig::body_read_timeout`] (10 s by default),
//!   or the request gets `408` and the connection is closed: a client that announces 500 kB and
//!   sends 15 bytes holds nothing for longer;
//! - a body that is not an update gets `400` (the process carries on; nothing is stored);
//! - updates the butler does not answer (edits, callbacks, …) and messages the allow-list
//!   keeps out ([`super::gate`]) get `200` and are dropped, nothing stored;
//! - a message is stored (a redelivered `update_id` is dropped) and gets `200`; if the inbox
//!   is down, `503`, and Telegram delivers it again later.
//!
//! Whenever a request is answered before its body was read to the end, the connection is
//! closed after the answer (HTTP/1.1 cannot be reused mid-body).
//!
//! On shutdown the listener stops accepting, idle connections are closed, and requests already
//! in progress finish (each bounded by the limits above and the inbox's own timeouts).
//!
//! [`WebhookConfig::header_read_timeout`]: super::WebhookConfig::header_read_timeout
//! [`WebhookConfig::body_read_timeout`]: super::WebhookConfig::body_read_timeout

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use futures::StreamExt as _;
use secrecy::{ExposeSecret as _, SecretString};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use teloxide::types::Update;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::receive::Receiver;

/// The largest update body accepted. Telegram's updates are a few KB (a 4,096-character
/// message with entities and a quoted reply stays far below this).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The header Telegram sends the secret in.
pub const SECRET_HEADER: &str = "x-telegram-bot-api-secret-token";

/// The secret for `setWebhook` when none is configured: derived from the bot token, so every
/// replica of one bot computes the same one, and the token cannot be recovered from it.
/// Telegram allows 1–256 characters of `A-Z a-z 0-9 _ -`: this is 64 hex digits.
#[must_use]
pub fn derived_secret(token: &SecretString) -> SecretString {
    let digest = Sha256::new()
        .chain_update(b"personalised-butler webhook secret\0")
        .chain_update(token.expose_secret().as_bytes())
        .finalize();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    SecretString::from(hex)
}

/// How long the request line and headers may take to arrive (the default).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a whole update body may take to arrive once the headers are in (the default).
/// Telegram sends a few KB at once; only a stalled or hostile client comes near it.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);

struct Hook {
    /// SHA-256 of the secret: comparing digests keeps the comparison's time independent of
    /// both the contents and the length of what was sent.
    secret_digest: [u8; 32],
    body_read_timeout: Duration,
    receiver: Receiver,
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

impl Hook {
    fn authorised(&self, headers: &HeaderMap) -> bool {
        let sent = headers
            .get(SECRET_HEADER)
            .map_or(&[][..], axum::http::HeaderValue::as_bytes);
        bool::from(digest(sent).ct_eq(&self.secret_digest)) && !sent.is_empty()
    }
}

/// Why a body was not read in full.
enum BodyError {
    TooLarge,
    Broken(axum::Error),
}

/// Reads `body` up to `limit` bytes; stops as soon as it grows past.
async fn read_body(body: Body, limit: usize) -> Result<Vec<u8>, BodyError> {
    let mut stream = body.into_data_stream();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(BodyError::Broken)?;
        if bytes.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge);
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

async fn receive(State(hook): State<Arc<Hook>>, request: Request) -> StatusCode {
    let (parts, body) = request.into_parts();
    // The body is not touched until the sender is known: a stranger's request ends here,
    // whatever it declares or sends.
    if !hook.authorised(&parts.headers) {
        tracing::warn!("webhook request without the right secret refused");
        return StatusCode::UNAUTHORIZED;
    }
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > MAX_BODY_BYTES as u64) {
        tracing::warn!(declared, "webhook body declared too large; refused unread");
        return StatusCode::PAYLOAD_TOO_LARGE;
    }
    let body =
        match tokio::time::timeout(hook.body_read_timeout, read_body(body, MAX_BODY_BYTES)).await {
            Ok(Ok(body)) => body,
            Ok(Err(BodyError::TooLarge)) => {
                tracing::warn!("webhook body too large; refused");
                return StatusCode::PAYLOAD_TOO_LARGE;
            }
            Ok(Err(BodyError::Broken(error))) => {
                tracing::warn!(%error, "webhook body could not be read; refused");
                return StatusCode::BAD_REQUEST;
            }
            Err(_) => {
                tracing::warn!(
                    after_ms = hook.body_read_timeout.as_millis(),
                    "webhook body did not arrive in time; connection closed"
                );
                return StatusCode::REQUEST_TIMEOUT;
            }
        };
    let raw: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(raw) => raw,
        Err(error) => {
            tracing::warn!(%error, bytes = body.len(), "webhook body is not an update; refused");
            return StatusCode::BAD_REQUEST;
        }
    };
    if hook.receiver.stop_pressed(&raw) {
        return StatusCode::OK;
    }
    // From the bytes, not from the value: teloxide reads update kinds as borrowed keys.
    let update: Update = match serde_json::from_slice(&body) {
        Ok(update) => update,
        Err(error) => {
            tracing::warn!(%error, bytes = body.len(), "webhook body is not an update; refused");
            return StatusCode::BAD_REQUEST;
        }
    };
    let Ok(payload) = String::from_utf8(body) else {
        return StatusCode::BAD_REQUEST;
    };
    let Some(entry) = hook.receiver.admit(&update, payload) else {
        tracing::debug!(update_id = update.id.0, "update not stored; acknowledged");
        return StatusCode::OK;
    };
    match hook.receiver.store(&entry).await {
        Ok(_) => StatusCode::OK,
        Err(error) => {
            tracing::warn!(%error, update_id = entry.update_id, "update not stored; Telegram will deliver it again");
            StatusCode::SERVICE_UNAVAILABLE
        }
    }
}

/// A bound webhook listener, not yet serving.
pub(crate) struct WebhookServer {
    listener: tokio::net::TcpListener,
    router: Router,
    header_read_timeout: Duration,
}

impl std::fmt::Debug for WebhookServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookServer")
            .field("addr", &self.listener.local_addr().ok())
            .finish_non_exhaustive()
    }
}

impl WebhookServer {
    /// Binds `config.listen` and routes POSTs to the path of `config.url`.
    pub(crate) async fn bind(
        config: &super::WebhookConfig,
        receiver: Receiver,
    ) -> std::io::Result<Self> {
        let hook = Arc::new(Hook {
            secret_digest: digest(config.secret.expose_secret().as_bytes()),
            body_read_timeout: config.body_read_timeout,
            receiver,
        });
        let path = config.url.path();
        let path = if path.is_empty() { "/" } else { path };
        let router = Router::new().route(path, post(receive)).with_state(hook);
        let listener = tokio::net::TcpListener::bind(config.listen).await?;
        Ok(Self {
            listener,
            router,
            header_read_timeout: config.header_read_timeout,
        })
    }

    /// The address actually bound.
    pub(crate) fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves until `shutdown`, then closes idle connections and lets requests in progress
    /// finish. hyper's own HTTP/1 server, not `axum::serve`, because only it can bound the
    /// time a client takes to send its headers.
    pub(crate) async fn serve(self, shutdown: CancellationToken) {
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(self.header_read_timeout);
        let mut connections = JoinSet::new();
        loop {
            let tcp = tokio::select! {
                () = shutdown.cancelled() => break,
                accepted = self.listener.accept() => match accepted {
                    Ok((tcp, _)) => tcp,
                    Err(error) => {
                        // Out of file descriptors, say: pause rather than spin.
                        tracing::warn!(%error, "webhook listener could not accept; retrying");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            while connections.try_join_next().is_some() {}
            let service = hyper_util::service::TowerToHyperService::new(self.router.clone());
            let connection = http.serve_connection(hyper_util::rt::TokioIo::new(tcp), service);
            let shutdown = shutdown.clone();
            connections.spawn(async move {
                let mut connection = std::pin::pin!(connection);
                let served = tokio::select! {
                    served = connection.as_mut() => served,
                    () = shutdown.cancelled() => {
                        connection.as_mut().graceful_shutdown();
                        connection.await
                    }
                };
                if let Err(error) = served {
                    // Timeouts and clients that hang up: routine on a public port.
                    tracing::debug!(%error, "webhook connection ended with an error");
                }
            });
        }
        while connections.join_next().await.is_some() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_derived_secret_is_stable_valid_for_telegram_and_hides_the_token() {
        let token = SecretString::from("7000000001:AAFakeTokenForTests_abcdefghijklmnop");
        let secret = derived_secret(&token);
        let text = secret.expose_secret();
        assert_eq!(text, derived_secret(&token).expose_secret());
        let other = SecretString::from("7000000001:other");
        assert_ne!(text, derived_secret(&other).expose_secret());
        assert_eq!(text.len(), 64);
        assert!(text.bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(!text.contains("AAFake"));
    }
}
