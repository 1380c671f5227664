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

mod objects;
mod server;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::watch;

pub use objects::BOT_USER_ID;

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
    /// The text shown.
    pub text: String,
    /// When it arrived.
    pub at: Instant,
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
    webhook_url: String,
    /// Told about every delivered message (benchmarks follow replies without scanning `sent`).
    delivered: Option<tokio::sync::mpsc::UnboundedSender<Delivered>>,
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

/// The running fake server. Dropping it stops the server.
#[derive(Debug)]
pub struct FakeTelegram {
    state: Arc<State>,
    addr: SocketAddr,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeTelegram {
    fn drop(&mut self) {
        self.server.abort();
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
        let (version, _) = watch::channel(0);
        let state = Arc::new(State {
            token: token.to_owned(),
            inner: Mutex::new(Inner {
                next_update_id: 1,
                next_message_id: 1,
                drafts_supported: true,
                ..Inner::default()
            }),
            version,
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port for the fake Telegram server");
        let addr = listener
            .local_addr()
            .expect("local address of a bound socket");
        let app = server::router(state.clone());
        let server = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                tracing::warn!(%error, "fake Telegram server stopped");
            }
        });
        Self {
            state,
            addr,
            server,
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

    /// Updates not yet confirmed by an offset.
    #[must_use]
    pub fn unconfirmed_updates(&self) -> usize {
        self.state.lock().updates.len()
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

    /// Waits until the bot has confirmed every update queued so far (it polled past them).
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
