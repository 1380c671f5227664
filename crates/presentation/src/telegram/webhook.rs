//! Webhook mode: Telegram POSTs each update to the bot's public URL; the bot stores it in the
//! inbox and only then answers `200`, so an update is never acknowledged before it is safe.
//!
//! Each request, in order:
//! - `X-Telegram-Bot-Api-Secret-Token` must equal the secret given to `setWebhook`, compared in
//!   constant time; otherwise `401` with an empty body, and nothing is read further;
//! - bodies over [`MAX_BODY_BYTES`] get `413`, a body that is not an update `400` (the process
//!   carries on; nothing is stored);
//! - updates the butler does not answer (edits, callbacks, …) and messages the allow-list
//!   keeps out ([`super::gate`]) get `200` and are dropped, nothing stored;
//! - a message is stored (a redelivered `update_id` is dropped) and gets `200`; if the inbox
//!   is down, `503`, and Telegram delivers it again later.
//!
//! On shutdown the listener stops accepting; requests already in progress finish.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use secrecy::{ExposeSecret as _, SecretString};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use teloxide::types::Update;
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

#[derive(Clone)]
struct Hook {
    /// SHA-256 of the secret: comparing digests keeps the comparison's time independent of
    /// both the contents and the length of what was sent.
    secret_digest: [u8; 32],
    receiver: Receiver,
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

async fn receive(State(hook): State<Arc<Hook>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let sent = headers
        .get(SECRET_HEADER)
        .map_or(&[][..], axum::http::HeaderValue::as_bytes);
    if !bool::from(digest(sent).ct_eq(&hook.secret_digest)) || sent.is_empty() {
        tracing::warn!("webhook request without the right secret refused");
        return StatusCode::UNAUTHORIZED;
    }
    let update: Update = match serde_json::from_slice(&body) {
        Ok(update) => update,
        Err(error) => {
            tracing::warn!(%error, bytes = body.len(), "webhook body is not an update; refused");
            return StatusCode::BAD_REQUEST;
        }
    };
    let Ok(payload) = String::from_utf8(body.to_vec()) else {
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
}

impl std::fmt::Debug for WebhookServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookServer")
            .field("addr", &self.listener.local_addr().ok())
            .finish_non_exhaustive()
    }
}

impl WebhookServer {
    /// Binds `listen` and routes POSTs to `path`.
    pub(crate) async fn bind(
        listen: SocketAddr,
        path: &str,
        secret: &SecretString,
        receiver: Receiver,
    ) -> std::io::Result<Self> {
        let hook = Arc::new(Hook {
            secret_digest: digest(secret.expose_secret().as_bytes()),
            receiver,
        });
        let path = if path.is_empty() { "/" } else { path };
        let router = Router::new()
            .route(path, post(receive))
            .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
            .with_state(hook);
        let listener = tokio::net::TcpListener::bind(listen).await?;
        Ok(Self { listener, router })
    }

    /// The address actually bound.
    pub(crate) fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves until `shutdown`, then lets requests in progress finish.
    pub(crate) async fn serve(self, shutdown: CancellationToken) {
        let served = axum::serve(self.listener, self.router)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(error) = served {
            tracing::error!(%error, "webhook listener failed");
        }
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
