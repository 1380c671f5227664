//! A fake Telegram Bot API server for end-to-end tests of the bot: the real teloxide client
//! talks HTTP to it on 127.0.0.1 and a free port (`Bot::set_api_url`).
//!
//! It keeps Telegram's semantics where the bot depends on them:
//! - `getUpdates` long-polls: it answers at once with updates whose id ≥ `offset`, or waits up
//!   to `timeout` seconds for new ones; an `offset` confirms (forgets for good) every earlier
//!   update, so a restarted bot never sees an update its predecessor acknowledged;
//! - responses are valid Bot API objects (teloxide parses them strictly);
//! - failures are injected per method (`429` with `retry_after`, `5xx`, a broken response
//!   after the call took effect).
//!
//! Every call is recorded with its parsed parameters (JSON, form or multipart bodies alike).
//!
//! Updates reach the bot either way Telegram offers:
//! - by long polling (`getUpdates`), the default;
//! - by webhook, once the bot calls `setWebhook`: a background task POSTs each pending update
//!   (the JSON object `getUpdates` would have returned, with `X-Telegram-Bot-Api-Secret-Token`
//!   when a secret was set) with up to `max_connections` requests in flight, oldest first; an
//!   update is confirmed only by a 2xx answer, anything else (a refused connection, a 5xx, a
//!   timeout) is retried after a short delay. `getUpdates` then answers 409, as Telegram does.
//!   [`FakeTelegram::set_webhook_targets`] stands in for a load balancer: every attempt goes to
//!   the next target in turn, so several bot replicas can share one webhook.

mod objects;
mod server;

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::watch;

pub use objects::{BOT_USERNAME, BOT_USER_ID};

/// A token that looks like a real one (digits, colon, 35 URL-safe characters).
pub const DEFAULT_TOKEN: &str = "7000000001:AAFakeTokenForTests_abcdefghijklmnop";

/// One API call as the server saw it.
#[derive(Debug, Clone)]
pub struct ApiCall {
    /// Bot API method, e.g. `sendMessage`.
    pub method: String,
    /// Parameters, whatever the encoding (numbers stay numbers when they parse as JSON).
    pub params: Value,
    /// When it arrived.
    pub at: Instant,
    /// The failure injected into this call, if any.
    pub injected: Option<Failure>,
}

impl ApiCall {
    /// The `chat_id` parameter as a number.
    #[must_use]
    pub fn chat_id(&self) -> Option<i64> {
        as_i64(self.params.get("chat_id")?)
    }

    /// A string parameter.
    #[must_use]
    pub fn str_param(&self, name: &str) -> Option<&str> {
        self.params.get(name)?.as_str()
    }
}

/// A reply draft (`sendMessageDraft`) the server accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Draft {
    /// The private chat.
    pub chat_id: i64,
    /// The draft's id (the same id updates the same draft).
    pub draft_id: i64,
    /// The text shown (empty: Telegram's "Thinking…" placeholder).
    pub text: String,
    /// When it arrived.
    pub at: Instant,
    /// Whether it offered the stop button (`can_stop`).
    pub can_stop: bool,
    /// Whether it was a rich draft (`sendRichMessageDraft`; `text` is its Markdown).
    pub rich: bool,
}

/// A message the bot sent that the server accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentMessage {
    /// Its id.
    pub message_id: i64,
    /// Where it went.
    pub chat_id: i64,
    /// Its text.
    pub text: String,
    /// `parse_mode`, if the bot set one.
    pub parse_mode: Option<String>,
    /// Whether it was a rich message (`sendRichMessage`; `text` is its Markdown).
    pub rich: bool,
}

/// A message the bot sent, with the moment the server accepted it (see
/// [`FakeTelegram::subscribe_delivered`]).
#[derive(Debug, Clone)]
pub struct Delivered {
    /// Where it went.
    pub chat_id: i64,
    /// Its text.
    pub text: String,
    /// When the server accepted it.
    pub at: Instant,
}

/// A failure to inject into the next calls of a method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// `429 Too Many Requests` with `parameters.retry_after` (the call has no effect).
    RetryAfter(u32),
    /// An error status with Telegram's error JSON (the call has no effect).
    Status(u16),
    /// An error status with this `description` (the call has no effect): the answers a real
    /// Bot API server gives, e.g. `400 Bad Request: TEXTDRAFT_PEER_INVALID`.
    Api {
        /// The HTTP status and `error_code`.
        status: u16,
        /// Telegram's `description`.
        description: String,
    },
    /// The call takes effect (a message is delivered) but the response is cut off, so the
    /// client cannot know it succeeded — the case where retrying would duplicate a reply.
    BrokenResponse,
}

/// A voice note to inject.
#[derive(Debug, Clone)]
pub struct Voice {
    /// The audio served at the file's download URL.
    pub bytes: Vec<u8>,
    /// Duration the client reports, in seconds.
    pub duration_secs: u32,
    /// MIME type the client reports.
    pub mime_type: String,
    /// `file_size` the client reports; `None` = the real size.
    pub declared_size: Option<u64>,
}

impl Voice {
    /// An OGG/Opus voice note of `duration_secs` seconds.
    #[must_use]
    pub fn ogg(bytes: Vec<u8>, duration_secs: u32) -> Self {
        Self {
            bytes,
            duration_secs,
            mime_type: "audio/ogg".to_owned(),
            declared_size: None,
        }
    }
}

/// The webhook the bot registered with `setWebhook`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    /// Where updates go (unless [`FakeTelegram::set_webhook_targets`] routes them).
    pub url: String,
    /// Sent back as `X-Telegram-Bot-Api-Secret-Token` with every delivery, if set.
    pub secret_token: Option<String>,
    /// Update kinds the bot asked for; empty = every kind.
    pub allowed_updates: Vec<String>,
    /// Most deliveries in flight at once (1–100, 40 by default, as in Telegram).
    pub max_connections: usize,
}

/// What one webhook delivery attempt got back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// The target answered with this HTTP status (only 2xx confirms the update).
    Status(u16),
    /// No HTTP answer: the connection was refused or broke, or the request timed out.
    ConnectionError(String),
}

impl DeliveryOutcome {
    /// Whether the attempt confirmed the update (a 2xx answer).
    #[must_use]
    pub fn is_success(&self) -> bool {
        matches!(self, Self::Status(code) if (200..300).contains(code))
    }
}

/// One webhook delivery attempt (see [`FakeTelegram::webhook_deliveries`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookDelivery {
    /// The update POSTed.
    pub update_id: i64,
    /// The URL it was POSTed to.
    pub target: String,
    /// What came back.
    pub outcome: DeliveryOutcome,
    /// When the attempt finished.
    pub at: Instant,
}

/// How long the fake waits before retrying a failed webhook delivery (Telegram waits longer;
/// tests do not).
pub const DEFAULT_WEBHOOK_RETRY_DELAY: Duration = Duration::from_millis(100);
/// How long a webhook delivery may take before it counts as failed.
pub const DEFAULT_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(30);

/// Why waiting for calls or messages gave up.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct WaitError(pub String);

#[derive(Debug, Clone)]
struct StoredFile {
    path: String,
    bytes: Vec<u8>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Updates not yet confirmed by an `offset`, oldest first.
    updates: VecDeque<(i64, Value)>,
    next_update_id: i64,
    next_message_id: i64,
    next_file: u64,
    /// The highest offset a `getUpdates` confirmed.
    confirmed_offset: i64,
    calls: Vec<ApiCall>,
    sent: Vec<SentMessage>,
    drafts: Vec<Draft>,
    /// `false`: `sendMessageDraft` is unknown, as on servers older than Bot API 9.3.
    drafts_supported: bool,
    files: HashMap<String, StoredFile>,
    downloads: Vec<String>,
    failures: HashMap<String, VecDeque<Failure>>,
    /// Set by `setWebhook`, cleared by `deleteWebhook`: while set, updates are POSTed.
    webhook: Option<WebhookConfig>,
    /// Load-balancer stand-in: when non-empty, deliveries go round robin to these URLs.
    webhook_targets: Vec<String>,
    next_target: usize,
    /// Updates being POSTed right now.
    in_flight: HashSet<i64>,
    /// Updates whose last delivery failed, with the moment they may be retried.
    retry_at: HashMap<i64, tokio::time::Instant>,
    webhook_retry_delay: Duration,
    webhook_timeout: Duration,
    deliveries: Vec<WebhookDelivery>,
    /// Unix time and text of the latest failed delivery (`getWebhookInfo` reports them).
    last_webhook_error: Option<(i64, String)>,
    /// Told about every delivered message (benchmarks follow replies without scanning `sent`).
    delivered: Option<tokio::sync::mpsc::UnboundedSender<Delivered>>,
    /// Telegram's flood control for groups: at most this many messages and edits per window
    /// in one group chat; more get `429` with the seconds until the oldest leaves the window.
    group_flood: Option<(usize, Duration)>,
}

/// Shared state: the data behind a mutex (never held across an await) and a version counter
/// that waiters watch, so no change is missed between a check and a wait.
#[derive(Debug)]
pub(crate) struct State {
    token: String,
    inner: Mutex<Inner>,
    version: watch::Sender<u64>,
}

impl State {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panicking test thread must not wedge every later assertion.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn bump(&self) {
        self.version.send_modify(|v| *v += 1);
    }

    fn push_update(&self, build: impl FnOnce(&mut Inner, i64) -> Value) -> i64 {
        self.push_update_of_kind("message", build)
    }

    fn push_update_of_kind(&self, kind: &str, build: impl FnOnce(&mut Inner, i64) -> Value) -> i64 {
        let id = {
            let mut inner = self.lock();
            let id = inner.next_update_id;
            inner.next_update_id += 1;
            let message_id = inner.next_message_id;
            inner.next_message_id += 1;
            let message = build(&mut inner, message_id);
            inner
                .updates
                .push_back((id, serde_json::json!({ "update_id": id, kind: message })));
            id
        };
        self.bump();
        id
    }

    fn store_file(inner: &mut Inner, kind: &str, bytes: Vec<u8>) -> String {
        inner.next_file += 1;
        let file_id = format!("{kind}-file-{}", inner.next_file);
        let path = format!("{kind}/file_{}.oga", inner.next_file);
        inner
            .files
            .insert(file_id.clone(), StoredFile { path, bytes });
        file_id
    }
}

/// How a group message looks (see [`FakeTelegram::push_group_text`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct GroupMessage {
    /// In a forum group: the topic (message thread) it is posted in.
    pub topic: Option<i32>,
    /// A reply to the bot's message with this id.
    pub reply_to_bot: Option<i64>,
}

/// The running fake server. Dropping it stops the server.
#[derive(Debug)]
pub struct FakeTelegram {
    state: Arc<State>,
    addr: SocketAddr,
    server: tokio::task::JoinHandle<()>,
    /// POSTs updates while a webhook is set; aborting it aborts the requests in flight.
    delivery: tokio::task::JoinHandle<()>,
}

impl Drop for FakeTelegram {
    fn drop(&mut self) {
        self.server.abort();
        self.delivery.abort();
    }
}

impl FakeTelegram {
    /// Starts a server with [`DEFAULT_TOKEN`] on 127.0.0.1 and a free port.
    ///
    /// # Panics
    /// If no loopback port can be bound (the test cannot run at all then).
    pub async fn start() -> Self {
        Self::start_with_token(DEFAULT_TOKEN).await
    }

    /// Starts a server that accepts only `token`.
    ///
    /// # Panics
    /// If no loopback port can be bound.
    pub async fn start_with_token(token: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port for the fake Telegram server");
        Self::serve(token, listener)
    }

    /// Starts a server with [`DEFAULT_TOKEN`] on 127.0.0.1:`port` — a Bot API that was
    /// unreachable at that address until now. Retries the bind for a few seconds (a port just
    /// released may linger).
    ///
    /// # Panics
    /// If the port cannot be bound.
    pub async fn start_on_port(port: u16) -> Self {
        let mut attempts = 0;
        let listener = loop {
            match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
                Ok(listener) => break listener,
                Err(error) if attempts < 50 => {
                    attempts += 1;
                    tracing::debug!(%error, port, "fake Telegram port busy; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(error) => panic!("bind 127.0.0.1:{port} for the fake Telegram server: {error}"),
            }
        };
        Self::serve(DEFAULT_TOKEN, listener)
    }

    fn serve(token: &str, listener: tokio::net::TcpListener) -> Self {
        let (version, _) = watch::channel(0);
        let state = Arc::new(State {
            token: token.to_owned(),
            inner: Mutex::new(Inner {
                next_update_id: 1,
                next_message_id: 1,
                drafts_supported: true,
                webhook_retry_delay: DEFAULT_WEBHOOK_RETRY_DELAY,
                webhook_timeout: DEFAULT_WEBHOOK_TIMEOUT,
                ..Inner::default()
            }),
            version,
        });
        let addr = listener
            .local_addr()
            .expect("local address of a bound socket");
        let app = server::router(state.clone());
        let server = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                tracing::warn!(%error, "fake Telegram server stopped");
            }
        });
        // Loopback targets only: a proxy from the environment must not see test traffic.
        let client = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("an HTTP client for webhook deliveries");
        let delivery = tokio::spawn(server::deliver_webhooks(state.clone(), client));
        Self {
            state,
            addr,
            server,
            delivery,
        }
    }

    /// The base URL to give the bot (`Bot::set_api_url`), e.g. `http://127.0.0.1:4321/`.
    #[must_use]
    pub fn api_url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// The token the server accepts.
    #[must_use]
    pub fn token(&self) -> &str {
        &self.state.token
    }

    /// Queues a text message from `user_id` in `chat_id`; returns the update id.
    pub fn push_text(&self, user_id: i64, chat_id: i64, text: &str) -> i64 {
        self.state.push_update(|_, message_id| {
            objects::incoming_message(message_id, user_id, chat_id, objects::text_content(text))
        })
    }

    /// Queues a message in a group: `text` from `user_id` in group `chat_id`, shaped as
    /// `group` says (a forum topic, a reply to one of the bot's messages); an `@` mention of
    /// the bot in the text gets its `mention` entity, as Telegram adds it.
    pub fn push_group_text(
        &self,
        user_id: i64,
        chat_id: i64,
        text: &str,
        group: GroupMessage,
    ) -> i64 {
        self.state.push_update(|_, message_id| {
            let mut content = objects::text_content(text);
            objects::add_mentions(&mut content, text);
            objects::group_message(message_id, user_id, chat_id, content, &group)
        })
    }

    /// Queues a voice note from `user_id` in group `chat_id` (shaped as `group` says).
    pub fn push_group_voice(
        &self,
        user_id: i64,
        chat_id: i64,
        voice: Voice,
        group: GroupMessage,
    ) -> i64 {
        self.state.push_update(|inner, message_id| {
            let size = voice.declared_size.unwrap_or(voice.bytes.len() as u64);
            let file_id = State::store_file(inner, "voice", voice.bytes);
            let content =
                objects::voice_content(&file_id, voice.duration_secs, &voice.mime_type, size);
            objects::group_message(message_id, user_id, chat_id, content, &group)
        })
    }

    /// Queues the press of a draft's stop button in private chat `chat_id` (Bot API 10.3's
    /// `stopped_message_generation`); returns the update id.
    pub fn push_stop(&self, chat_id: i64, draft_id: i64) -> i64 {
        self.state
            .push_update_of_kind("stopped_message_generation", |_, _| {
                serde_json::json!({
                    "chat": objects::chat(chat_id, Some(chat_id)),
                    "draft_id": draft_id,
                })
            })
    }

    /// Turns on Telegram's flood control for groups: at most `limit` messages and edits
    /// within `window` per group chat, then `429` with `retry_after`.
    pub fn set_group_flood_limit(&self, limit: usize, window: Duration) {
        self.state.lock().group_flood = Some((limit, window));
    }

    /// Queues a voice note from `user_id` in their private chat; its audio is served by
    /// `getFile` + the file download URL.
    pub fn push_voice(&self, user_id: i64, voice: Voice) -> i64 {
        self.state.push_update(|inner, message_id| {
            let size = voice.declared_size.unwrap_or(voice.bytes.len() as u64);
            let file_id = State::store_file(inner, "voice", voice.bytes);
            let content =
                objects::voice_content(&file_id, voice.duration_secs, &voice.mime_type, size);
            objects::incoming_message(message_id, user_id, user_id, content)
        })
    }

    /// Queues a message from `user_id` in `chat_id` with any content fields (`text`,
    /// `caption`, `entities`, ...) — for messages the named helpers do not build.
    pub fn push_message(&self, user_id: i64, chat_id: i64, content: Value) -> i64 {
        self.state.push_update(|_, message_id| {
            objects::incoming_message(message_id, user_id, chat_id, content)
        })
    }

    /// Queues an update of any kind (`edited_message`, `channel_post`, a kind Telegram adds
    /// tomorrow, ...): `{"update_id": …, kind: body}`, where `body` gets a fresh message id.
    pub fn push_update_of_kind(&self, kind: &str, body: impl FnOnce(i64) -> Value) -> i64 {
        self.state
            .push_update_of_kind(kind, |_, message_id| body(message_id))
    }

    /// An incoming message object (for [`Self::push_update_of_kind`] bodies).
    #[must_use]
    pub fn message_object(message_id: i64, user_id: i64, chat_id: i64, content: Value) -> Value {
        objects::incoming_message(message_id, user_id, chat_id, content)
    }

    /// Queues a sticker from `user_id` in their private chat.
    pub fn push_sticker(&self, user_id: i64) -> i64 {
        self.state.push_update(|inner, message_id| {
            let file_id = State::store_file(inner, "sticker", vec![0; 16]);
            objects::incoming_message(
                message_id,
                user_id,
                user_id,
                objects::sticker_content(&file_id),
            )
        })
    }

    /// Queues a photo from `user_id` in their private chat.
    pub fn push_photo(&self, user_id: i64) -> i64 {
        self.state.push_update(|inner, message_id| {
            let file_id = State::store_file(inner, "photo", vec![0; 16]);
            objects::incoming_message(
                message_id,
                user_id,
                user_id,
                objects::photo_content(&file_id),
            )
        })
    }

    /// Queues a document from `user_id` in their private chat.
    pub fn push_document(&self, user_id: i64, file_name: &str) -> i64 {
        self.state.push_update(|inner, message_id| {
            let file_id = State::store_file(inner, "document", vec![0; 16]);
            let content = objects::document_content(&file_id, file_name);
            objects::incoming_message(message_id, user_id, user_id, content)
        })
    }

    /// Drafts shown in `chat_id`, in arrival order.
    #[must_use]
    pub fn drafts(&self, chat_id: i64) -> Vec<Draft> {
        self.state
            .lock()
            .drafts
            .iter()
            .filter(|d| d.chat_id == chat_id)
            .cloned()
            .collect()
    }

    /// From now on `sendMessageDraft` answers 404, as on a Bot API server older than 9.3.
    pub fn reject_drafts(&self) {
        self.state.lock().drafts_supported = false;
    }

    /// Every message delivered from now on is also sent to the returned channel, stamped
    /// with the moment the server accepted it — for load generators that follow thousands of
    /// replies. A later call replaces the earlier subscriber.
    pub fn subscribe_delivered(&self) -> tokio::sync::mpsc::UnboundedReceiver<Delivered> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        self.state.lock().delivered = Some(tx);
        rx
    }

    /// Makes the next `count` calls of `method` fail with `failure`.
    pub fn fail_next(&self, method: &str, count: usize, failure: Failure) {
        let mut inner = self.state.lock();
        let queue = inner.failures.entry(method.to_owned()).or_default();
        queue.extend(std::iter::repeat_n(failure, count));
    }

    /// Every call so far, in arrival order.
    #[must_use]
    pub fn calls(&self) -> Vec<ApiCall> {
        self.state.lock().calls.clone()
    }

    /// Calls of one method so far.
    #[must_use]
    pub fn calls_to(&self, method: &str) -> Vec<ApiCall> {
        self.state
            .lock()
            .calls
            .iter()
            .filter(|c| c.method == method)
            .cloned()
            .collect()
    }

    /// Messages delivered to `chat_id`, in order.
    #[must_use]
    pub fn sent_messages(&self, chat_id: i64) -> Vec<SentMessage> {
        self.state
            .lock()
            .sent
            .iter()
            .filter(|m| m.chat_id == chat_id)
            .cloned()
            .collect()
    }

    /// Every message delivered, in order.
    #[must_use]
    pub fn all_sent_messages(&self) -> Vec<SentMessage> {
        self.state.lock().sent.clone()
    }

    /// File paths downloaded so far.
    #[must_use]
    pub fn downloads(&self) -> Vec<String> {
        self.state.lock().downloads.clone()
    }

    /// Updates not yet confirmed (by a `getUpdates` offset or a 2xx webhook answer).
    #[must_use]
    pub fn unconfirmed_updates(&self) -> usize {
        self.state.lock().updates.len()
    }

    /// Updates not yet confirmed, by an offset or a 2xx webhook answer — the same count as
    /// [`Self::unconfirmed_updates`], named as `getWebhookInfo` names it.
    #[must_use]
    pub fn pending_updates(&self) -> usize {
        self.unconfirmed_updates()
    }

    /// The webhook the bot set, if any.
    #[must_use]
    pub fn webhook(&self) -> Option<WebhookConfig> {
        self.state.lock().webhook.clone()
    }

    /// Stands in for a load balancer in front of several bot replicas: while a webhook is
    /// set, each delivery attempt goes to the next of `targets` in turn (the URL the bot
    /// registered is then only recorded), and a failed attempt is retried at the next target
    /// in the rotation. An empty list routes to the registered URL again.
    pub fn set_webhook_targets(&self, targets: Vec<String>) {
        {
            let mut inner = self.state.lock();
            inner.webhook_targets = targets;
            inner.next_target = 0;
        }
        self.state.bump();
    }

    /// How long a failed webhook delivery waits before it is retried
    /// ([`DEFAULT_WEBHOOK_RETRY_DELAY`] unless set).
    pub fn set_webhook_retry_delay(&self, delay: Duration) {
        self.state.lock().webhook_retry_delay = delay;
        self.state.bump();
    }

    /// How long a webhook delivery may take before it counts as failed and is retried
    /// ([`DEFAULT_WEBHOOK_TIMEOUT`] unless set).
    pub fn set_webhook_timeout(&self, timeout: Duration) {
        self.state.lock().webhook_timeout = timeout;
    }

    /// Every webhook delivery attempt so far, in the order they finished.
    #[must_use]
    pub fn webhook_deliveries(&self) -> Vec<WebhookDelivery> {
        self.state.lock().deliveries.clone()
    }

    /// Waits until at least `n` webhook delivery attempts have finished; returns them all.
    ///
    /// # Errors
    /// When `timeout` passes first.
    pub async fn wait_for_deliveries(
        &self,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<WebhookDelivery>, WaitError> {
        self.wait_until(timeout, || {
            let deliveries = self.webhook_deliveries();
            (deliveries.len() >= n).then_some(deliveries)
        })
        .await
        .map_err(|()| {
            WaitError(format!(
                "expected {n} webhook deliveries within {timeout:?}, got {:?}",
                self.webhook_deliveries()
            ))
        })
    }

    /// The highest `offset` a `getUpdates` call confirmed (0 if none).
    #[must_use]
    pub fn confirmed_offset(&self) -> i64 {
        self.state.lock().confirmed_offset
    }

    /// Waits until `chat_id` has received at least `n` messages; returns them all.
    ///
    /// # Errors
    /// When `timeout` passes first; the error lists what did arrive.
    pub async fn wait_for_messages(
        &self,
        chat_id: i64,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<SentMessage>, WaitError> {
        self.wait_until(timeout, || {
            let sent = self.sent_messages(chat_id);
            (sent.len() >= n).then_some(sent)
        })
        .await
        .map_err(|()| {
            WaitError(format!(
                "chat {chat_id}: expected {n} messages within {timeout:?}, got {:?}",
                self.sent_messages(chat_id)
            ))
        })
    }

    /// Waits until at least `n` calls of `method` arrived; returns them.
    ///
    /// # Errors
    /// When `timeout` passes first.
    pub async fn wait_for_calls(
        &self,
        method: &str,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<ApiCall>, WaitError> {
        self.wait_until(timeout, || {
            let calls = self.calls_to(method);
            (calls.len() >= n).then_some(calls)
        })
        .await
        .map_err(|()| {
            WaitError(format!(
                "expected {n} `{method}` calls within {timeout:?}, got {}",
                self.calls_to(method).len()
            ))
        })
    }

    /// Waits until the bot has confirmed every update queued so far (it polled past them, or
    /// its webhook answered 2xx to each).
    ///
    /// # Errors
    /// When `timeout` passes first.
    pub async fn wait_until_all_confirmed(&self, timeout: Duration) -> Result<(), WaitError> {
        self.wait_until(timeout, || (self.unconfirmed_updates() == 0).then_some(()))
            .await
            .map_err(|()| {
                WaitError(format!(
                    "{} updates still unconfirmed after {timeout:?}",
                    self.unconfirmed_updates()
                ))
            })
    }

    async fn wait_until<T>(
        &self,
        timeout: Duration,
        mut check: impl FnMut() -> Option<T>,
    ) -> Result<T, ()> {
        let mut version = self.state.version.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            version.borrow_and_update();
            if let Some(found) = check() {
                return Ok(found);
            }
            if tokio::time::timeout_at(deadline, version.changed())
                .await
                .is_err()
            {
                return check().ok_or(());
            }
        }
    }
}

pub(crate) fn as_i64(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod webhook_tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::http::{HeaderMap, StatusCode};
    use serde_json::json;

    use super::*;

    const WAIT: Duration = Duration::from_secs(10);

    /// One request a [`Replica`] received.
    #[derive(Debug, Clone)]
    struct Hit {
        secret: Option<String>,
        content_type: Option<String>,
        body: Value,
    }

    #[derive(Default)]
    struct ReplicaState {
        hits: Mutex<Vec<Hit>>,
        /// Answer 500 to this many requests first.
        failures_left: AtomicUsize,
        /// How long each answer takes.
        delay: Mutex<Duration>,
        in_flight: AtomicUsize,
        max_in_flight: AtomicUsize,
    }

    /// A bot replica stand-in: a webhook endpoint on loopback that records what it gets.
    struct Replica {
        url: String,
        state: Arc<ReplicaState>,
        server: tokio::task::JoinHandle<()>,
    }

    impl Drop for Replica {
        fn drop(&mut self) {
            self.server.abort();
        }
    }

    async fn receive(
        axum::extract::State(state): axum::extract::State<Arc<ReplicaState>>,
        headers: HeaderMap,
        body: String,
    ) -> StatusCode {
        let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        state.max_in_flight.fetch_max(now, Ordering::SeqCst);
        let delay = *state.delay.lock().expect("delay lock");
        tokio::time::sleep(delay).await;
        state.in_flight.fetch_sub(1, Ordering::SeqCst);
        let failing = state
            .failures_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if failing {
            return StatusCode::INTERNAL_SERVER_ERROR;
        }
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        state.hits.lock().expect("hits lock").push(Hit {
            secret: header("x-telegram-bot-api-secret-token"),
            content_type: header("content-type"),
            body: serde_json::from_str(&body).expect("a webhook body is JSON"),
        });
        StatusCode::OK
    }

    impl Replica {
        async fn start() -> Self {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind a replica port");
            Self::serve(listener)
        }

        fn serve(listener: tokio::net::TcpListener) -> Self {
            let addr = listener.local_addr().expect("replica address");
            let state = Arc::new(ReplicaState::default());
            let app = axum::Router::new()
                .route("/hook", axum::routing::post(receive))
                .with_state(state.clone());
            let server = tokio::spawn(async move {
                axum::serve(listener, app).await.expect("replica serves");
            });
            Self {
                url: format!("http://{addr}/hook"),
                state,
                server,
            }
        }

        fn hits(&self) -> Vec<Hit> {
            self.state.hits.lock().expect("hits lock").clone()
        }

        fn update_ids(&self) -> Vec<i64> {
            self.hits()
                .iter()
                .filter_map(|h| h.body["update_id"].as_i64())
                .collect()
        }
    }

    /// A URL nothing listens on (connections are refused), and its address to serve it later.
    async fn dead_url() -> (String, SocketAddr) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a port to free");
        let addr = listener.local_addr().expect("address");
        drop(listener);
        (format!("http://{addr}/hook"), addr)
    }

    /// Calls the fake's Bot API with a JSON body, as a bot would.
    async fn call(fake: &FakeTelegram, method: &str, params: Value) -> (u16, Value) {
        let response = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client")
            .post(format!("{}bot{}/{method}", fake.api_url(), fake.token()))
            .header("content-type", "application/json")
            .body(params.to_string())
            .send()
            .await
            .expect("the fake answers");
        let status = response.status().as_u16();
        let body = response.bytes().await.expect("a whole answer");
        (
            status,
            serde_json::from_slice(&body).expect("a JSON answer"),
        )
    }

    async fn set_webhook(fake: &FakeTelegram, params: Value) {
        let (status, body) = call(fake, "setWebhook", params).await;
        assert_eq!((status, &body["result"]), (200, &json!(true)), "{body}");
    }

    #[tokio::test]
    async fn a_webhook_gets_each_update_as_get_updates_would_with_the_secret() {
        let fake = FakeTelegram::start().await;
        let replica = Replica::start().await;
        fake.push_text(1, 1, "hello");
        fake.push_text(2, -5, "/start now");
        let (_, polled) = call(&fake, "getUpdates", json!({})).await;

        set_webhook(
            &fake,
            json!({ "url": replica.url, "secret_token": "s3cret_-X" }),
        )
        .await;
        fake.wait_until_all_confirmed(WAIT)
            .await
            .expect("delivered");

        let hits = replica.hits();
        let mut bodies: Vec<Value> = hits.iter().map(|h| h.body.clone()).collect();
        bodies.sort_by_key(|b| b["update_id"].as_i64());
        assert_eq!(Value::Array(bodies), polled["result"]);
        for hit in &hits {
            assert_eq!(hit.secret.as_deref(), Some("s3cret_-X"));
            assert_eq!(hit.content_type.as_deref(), Some("application/json"));
        }
        assert!(fake
            .webhook_deliveries()
            .iter()
            .all(|d| d.outcome == DeliveryOutcome::Status(200) && d.target == replica.url));
        assert_eq!(fake.pending_updates(), 0);
        let (_, info) = call(&fake, "getWebhookInfo", json!({})).await;
        assert_eq!(info["result"]["url"], json!(replica.url));
        assert_eq!(info["result"]["pending_update_count"], json!(0));
        assert_eq!(info["result"]["max_connections"], json!(40));
    }

    #[tokio::test]
    async fn no_secret_header_without_a_secret_and_invalid_secrets_are_refused() {
        let fake = FakeTelegram::start().await;
        let replica = Replica::start().await;
        let (status, _) = call(
            &fake,
            "setWebhook",
            json!({ "url": replica.url, "secret_token": "no spaces" }),
        )
        .await;
        assert_eq!(status, 400);
        assert!(fake.webhook().is_none());

        set_webhook(&fake, json!({ "url": replica.url })).await;
        fake.push_text(1, 1, "hi");
        fake.wait_until_all_confirmed(WAIT)
            .await
            .expect("delivered");
        assert_eq!(replica.hits()[0].secret, None);
    }

    #[tokio::test]
    async fn an_update_answered_500_is_retried_until_a_2xx() {
        let fake = FakeTelegram::start().await;
        fake.set_webhook_retry_delay(Duration::from_millis(20));
        let replica = Replica::start().await;
        replica.state.failures_left.store(2, Ordering::SeqCst);
        set_webhook(&fake, json!({ "url": replica.url })).await;
        let id = fake.push_text(1, 1, "retry me");

        fake.wait_until_all_confirmed(WAIT)
            .await
            .expect("delivered");
        let outcomes: Vec<_> = fake
            .webhook_deliveries()
            .into_iter()
            .map(|d| (d.update_id, d.outcome))
            .collect();
        assert_eq!(
            outcomes,
            vec![
                (id, DeliveryOutcome::Status(500)),
                (id, DeliveryOutcome::Status(500)),
                (id, DeliveryOutcome::Status(200)),
            ]
        );
        assert_eq!(replica.update_ids(), vec![id]);
        let (_, info) = call(&fake, "getWebhookInfo", json!({})).await;
        assert_eq!(
            info["result"]["last_error_message"],
            json!("Wrong response from the webhook: 500 Internal Server Error")
        );
    }

    #[tokio::test]
    async fn a_refused_connection_is_retried_until_the_replica_is_up() {
        let fake = FakeTelegram::start().await;
        fake.set_webhook_retry_delay(Duration::from_millis(20));
        let (url, addr) = dead_url().await;
        set_webhook(&fake, json!({ "url": url })).await;
        let id = fake.push_text(1, 1, "are you there?");

        let failed = fake.wait_for_deliveries(2, WAIT).await.expect("attempts");
        assert!(failed
            .iter()
            .all(|d| matches!(d.outcome, DeliveryOutcome::ConnectionError(_))));
        assert_eq!(fake.pending_updates(), 1, "unconfirmed until a 2xx");

        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .expect("rebind the freed port");
        let replica = Replica::serve(listener);
        fake.wait_until_all_confirmed(WAIT)
            .await
            .expect("delivered");
        assert_eq!(replica.update_ids(), vec![id]);
    }

    #[tokio::test]
    async fn deliveries_go_round_robin_over_the_targets() {
        let fake = FakeTelegram::start().await;
        let (a, b) = (Replica::start().await, Replica::start().await);
        fake.set_webhook_targets(vec![a.url.clone(), b.url.clone()]);
        set_webhook(&fake, json!({ "url": "https://bot.example.com/telegram" })).await;
        for i in 0..6 {
            fake.push_text(1, 1, &format!("message {i}"));
        }

        fake.wait_until_all_confirmed(WAIT)
            .await
            .expect("delivered");
        assert_eq!((a.hits().len(), b.hits().len()), (3, 3));
        assert_eq!(
            fake.webhook().map(|w| w.url),
            Some("https://bot.example.com/telegram".to_owned())
        );
    }

    #[tokio::test]
    async fn with_one_target_dead_every_update_reaches_the_other() {
        let fake = FakeTelegram::start().await;
        fake.set_webhook_retry_delay(Duration::from_millis(20));
        let (dead, _) = dead_url().await;
        let live = Replica::start().await;
        fake.set_webhook_targets(vec![dead.clone(), live.url.clone()]);
        set_webhook(&fake, json!({ "url": "https://bot.example.com/telegram" })).await;
        let ids: Vec<i64> = (0..5)
            .map(|i| fake.push_text(1, 1, &i.to_string()))
            .collect();

        fake.wait_until_all_confirmed(WAIT)
            .await
            .expect("delivered");
        let mut delivered = live.update_ids();
        delivered.sort_unstable();
        assert_eq!(delivered, ids);
        let deliveries = fake.webhook_deliveries();
        assert!(deliveries
            .iter()
            .filter(|d| d.target == dead)
            .all(|d| matches!(d.outcome, DeliveryOutcome::ConnectionError(_))));
        assert!(deliveries.iter().any(|d| d.target == dead));
    }

    #[tokio::test]
    async fn at_most_max_connections_deliveries_are_in_flight() {
        let fake = FakeTelegram::start().await;
        let replica = Replica::start().await;
        *replica.state.delay.lock().expect("delay lock") = Duration::from_millis(50);
        set_webhook(&fake, json!({ "url": replica.url, "max_connections": 2 })).await;
        for i in 0..8 {
            fake.push_text(1, 1, &i.to_string());
        }

        fake.wait_until_all_confirmed(WAIT)
            .await
            .expect("delivered");
        assert_eq!(replica.hits().len(), 8);
        assert_eq!(replica.state.max_in_flight.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn only_allowed_update_kinds_are_delivered() {
        let fake = FakeTelegram::start().await;
        let replica = Replica::start().await;
        set_webhook(
            &fake,
            json!({ "url": replica.url, "allowed_updates": ["message"] }),
        )
        .await;
        fake.push_update_of_kind("edited_message", |id| {
            FakeTelegram::message_object(id, 1, 1, json!({ "text": "edited" }))
        });
        let id = fake.push_text(1, 1, "new");

        fake.wait_until_all_confirmed(WAIT)
            .await
            .expect("delivered");
        assert_eq!(replica.update_ids(), vec![id]);
        let (_, info) = call(&fake, "getWebhookInfo", json!({})).await;
        assert_eq!(info["result"]["allowed_updates"], json!(["message"]));
    }

    #[tokio::test]
    async fn get_updates_conflicts_while_a_webhook_is_set_and_delete_webhook_returns_to_polling() {
        let fake = FakeTelegram::start().await;
        let (dead, _) = dead_url().await;
        let id = fake.push_text(1, 1, "waiting");
        // A long poll already waiting gets the conflict as soon as the webhook is set.
        let waiting = async {
            call(
                &fake,
                "getUpdates",
                json!({ "offset": id + 1, "timeout": 5 }),
            )
            .await
        };
        let (waiting, ()) = tokio::join!(waiting, async {
            fake.wait_for_calls("getUpdates", 1, WAIT)
                .await
                .expect("a poll");
            set_webhook(&fake, json!({ "url": dead })).await;
        });
        let conflict = json!({ "ok": false, "error_code": 409, "description":
            "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first" });
        assert_eq!(waiting, (409, conflict.clone()));
        assert_eq!(
            fake.pending_updates(),
            0,
            "that poll's offset confirmed the update"
        );

        let id = fake.push_text(1, 1, "undeliverable");
        assert_eq!(call(&fake, "getUpdates", json!({})).await, (409, conflict));

        let (status, _) = call(&fake, "deleteWebhook", json!({})).await;
        assert_eq!(status, 200);
        assert!(fake.webhook().is_none());
        let (status, polled) = call(&fake, "getUpdates", json!({})).await;
        assert_eq!(status, 200);
        assert_eq!(polled["result"][0]["update_id"], json!(id));
        let (_, info) = call(&fake, "getWebhookInfo", json!({})).await;
        assert_eq!(info["result"]["url"], json!(""));
        assert_eq!(info["result"]["pending_update_count"], json!(1));
    }

    #[tokio::test]
    async fn delete_webhook_can_drop_pending_updates() {
        let fake = FakeTelegram::start().await;
        let (dead, _) = dead_url().await;
        set_webhook(&fake, json!({ "url": dead })).await;
        fake.push_text(1, 1, "lost");
        fake.push_text(1, 1, "lost too");
        assert_eq!(fake.pending_updates(), 2);

        let (status, _) = call(
            &fake,
            "deleteWebhook",
            json!({ "drop_pending_updates": true }),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(fake.pending_updates(), 0);
        let (_, polled) = call(&fake, "getUpdates", json!({})).await;
        assert_eq!(polled["result"], json!([]));
    }

    #[tokio::test]
    async fn replies_are_recorded_in_webhook_mode_too() {
        let fake = FakeTelegram::start().await;
        let replica = Replica::start().await;
        set_webhook(&fake, json!({ "url": replica.url })).await;
        fake.push_text(7, 7, "hi");
        fake.wait_until_all_confirmed(WAIT)
            .await
            .expect("delivered");
        let (status, _) = call(
            &fake,
            "sendMessage",
            json!({ "chat_id": 7, "text": "hello" }),
        )
        .await;
        assert_eq!(status, 200);
        let sent = fake.wait_for_messages(7, 1, WAIT).await.expect("a reply");
        assert_eq!(sent[0].text, "hello");
    }
}
