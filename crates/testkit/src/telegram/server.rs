//! The HTTP side of the fake Bot API: routes, body parsing (JSON, form, multipart, query),
//! the long poll, injected failures, and webhook delivery.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{FromRequest, Multipart, Path, Request, State as AxumState};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Form, Router};
use serde_json::{json, Map, Value};

use super::{
    as_i64, objects, ApiCall, Delivered, DeliveryOutcome, Draft, Failure, Inner, SentMessage,
    State, WebhookConfig, WebhookDelivery,
};

/// The longest long poll the server holds open, whatever the client asks.
const MAX_POLL: Duration = Duration::from_secs(50);
/// Bodies larger than this are refused (the bot sends only small requests).
const MAX_BODY: usize = 1 << 20;
/// Telegram's default for `setWebhook`'s `max_connections`.
const DEFAULT_MAX_CONNECTIONS: usize = 40;
/// The header Telegram sends the webhook's `secret_token` in.
pub(crate) const SECRET_HEADER: &str = "X-Telegram-Bot-Api-Secret-Token";
/// Telegram's answer to `getUpdates` while a webhook is set.
pub(crate) const WEBHOOK_CONFLICT: &str = "Conflict: can't use getUpdates method while webhook \
                                           is active; use deleteWebhook to delete the webhook first";

type Shared = Arc<State>;

pub(crate) fn router(state: Shared) -> Router {
    Router::new()
        .route("/file/{bot}/{*path}", get(download))
        .route("/{bot}/{method}", any(method))
        .with_state(state)
}

fn telegram_ok(result: Value) -> Response {
    let mut body = Map::new();
    body.insert("ok".to_owned(), Value::Bool(true));
    body.insert("result".to_owned(), result);
    (StatusCode::OK, axum::Json(Value::Object(body))).into_response()
}

fn telegram_error(code: u16, description: &str, parameters: Option<Value>) -> Response {
    let mut body = json!({ "ok": false, "error_code": code, "description": description });
    if let Some(parameters) = parameters {
        body["parameters"] = parameters;
    }
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, axum::Json(body)).into_response()
}

fn unauthorized() -> Response {
    telegram_error(401, "Unauthorized", None)
}

/// A response that promises more bytes than it sends: the client sees a broken connection
/// after the call already took effect.
fn broken_response() -> Response {
    let body = r#"{"ok":true,"res"#;
    let mut response = Response::new(Body::from(body));
    response.headers_mut().insert(
        header::CONTENT_LENGTH,
        HeaderValue::from(body.len() as u64 + 200),
    );
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// `SendMessage` → `sendMessage`, as the Bot API documents method names.
fn canonical_method(raw: &str) -> String {
    let mut chars = raw.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_lowercase().chain(chars).collect()
    })
}

fn token_matches(state: &State, segment: &str) -> bool {
    segment.strip_prefix("bot") == Some(state.token.as_str())
}

async fn download(
    AxumState(state): AxumState<Shared>,
    Path((bot, path)): Path<(String, String)>,
) -> Response {
    if !token_matches(&state, &bot) {
        return (StatusCode::UNAUTHORIZED, "Unauthorized").into_response();
    }
    let bytes = {
        let mut inner = state.lock();
        let found = inner
            .files
            .values()
            .find(|f| f.path == path)
            .map(|f| f.bytes.clone());
        if found.is_some() {
            inner.downloads.push(path);
        }
        found
    };
    state.bump();
    match bytes {
        Some(bytes) => {
            ([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response()
        }
        None => (StatusCode::NOT_FOUND, "Not Found").into_response(),
    }
}

async fn method(
    AxumState(state): AxumState<Shared>,
    Path((bot, method)): Path<(String, String)>,
    request: Request,
) -> Response {
    if !token_matches(&state, &bot) {
        return unauthorized();
    }
    // Telegram matches method names case-insensitively; teloxide sends `GetMe`, `SendMessage`.
    let method = canonical_method(&method);
    let params = match parse_params(request).await {
        Ok(params) => params,
        Err(description) => return telegram_error(400, &description, None),
    };
    let injected = {
        let mut inner = state.lock();
        let injected = inner
            .failures
            .get_mut(&method)
            .and_then(std::collections::VecDeque::pop_front);
        inner.calls.push(ApiCall {
            method: method.clone(),
            params: params.clone(),
            at: Instant::now(),
            injected: injected.clone(),
        });
        injected
    };
    state.bump();
    match injected {
        Some(Failure::RetryAfter(seconds)) => {
            return telegram_error(
                429,
                &format!("Too Many Requests: retry after {seconds}"),
                Some(json!({ "retry_after": seconds })),
            )
        }
        Some(Failure::Status(code)) => return telegram_error(code, "Internal Server Error", None),
        Some(Failure::Api {
            status,
            ref description,
        }) => return telegram_error(status, description, None),
        Some(Failure::BrokenResponse) | None => {}
    }
    let response = execute(&state, &method, &params).await;
    state.bump();
    if injected == Some(Failure::BrokenResponse) {
        return broken_response();
    }
    response
}

async fn execute(state: &State, method: &str, params: &Value) -> Response {
    match method {
        "getMe" => telegram_ok(objects::me()),
        "getUpdates" => get_updates(state, params).await,
        "getWebhookInfo" => {
            let inner = state.lock();
            telegram_ok(objects::webhook_info(
                inner.webhook.as_ref(),
                inner.updates.len(),
                inner.last_webhook_error.as_ref(),
            ))
        }
        "setWebhook" => set_webhook(state, params),
        "deleteWebhook" => {
            delete_webhook(&mut state.lock(), params);
            telegram_ok(json!(true))
        }
        "sendChatAction"
        | "setMyCommands"
        | "deleteMyCommands"
        | "close"
        | "logOut"
        | "setMessageReaction"
        | "leaveChat"
        | "answerCallbackQuery" => telegram_ok(json!(true)),
        "getMyCommands" => telegram_ok(json!([])),
        "sendMessage" => send_message(state, params),
        "sendRichMessage" => send_rich_message(state, params),
        "sendMessageDraft" => send_message_draft(state, params, false),
        "sendRichMessageDraft" => send_message_draft(state, params, true),
        "editMessageText" => edit_message_text(state, params),
        "getFile" => get_file(state, params),
        _ => telegram_error(404, "Not Found: method not found", None),
    }
}

/// Telegram's flood control in groups: `Some(429 response)` when `chat_id` is a group that has
/// had its fill of messages and edits within the window; otherwise counts this one.
fn group_flood(state: &State, chat_id: i64) -> Option<Response> {
    if chat_id >= 0 {
        return None;
    }
    let mut inner = state.lock();
    let (limit, window) = inner.group_flood?;
    let now = Instant::now();
    let recent: Vec<Instant> = inner
        .calls
        .iter()
        .filter(|c| {
            matches!(c.method.as_str(), "sendMessage" | "editMessageText")
                && c.chat_id() == Some(chat_id)
                && c.injected.is_none()
                && now.duration_since(c.at) < window
        })
        .map(|c| c.at)
        .collect();
    // The call being answered is already recorded: it is the last one counted.
    if recent.len() <= limit {
        return None;
    }
    let oldest = recent[recent.len() - 1 - limit];
    let wait = window.saturating_sub(now.duration_since(oldest));
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    // Refused: it does not count towards the window.
    if let Some(call) = inner.calls.last_mut() {
        call.injected = Some(Failure::RetryAfter(
            u32::try_from(seconds).unwrap_or(u32::MAX),
        ));
    }
    drop(inner);
    Some(telegram_error(
        429,
        &format!("Too Many Requests: retry after {seconds}"),
        Some(json!({ "retry_after": seconds })),
    ))
}

fn send_message(state: &State, params: &Value) -> Response {
    let Some(chat_id) = params.get("chat_id").and_then(as_i64) else {
        return telegram_error(400, "Bad Request: chat_id is empty", None);
    };
    if let Some(refused) = group_flood(state, chat_id) {
        return refused;
    }
    let text = params
        .get("text")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if text.trim().is_empty() {
        return telegram_error(400, "Bad Request: message text is empty", None);
    }
    if text.encode_utf16().count() > 4096 {
        return telegram_error(400, "Bad Request: message is too long", None);
    }
    let parse_mode = params
        .get("parse_mode")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let mut inner = state.lock();
    let message_id = inner.next_message_id;
    inner.next_message_id += 1;
    inner.sent.push(SentMessage {
        message_id,
        chat_id,
        text: text.to_owned(),
        parse_mode,
        rich: false,
    });
    if let Some(delivered) = &inner.delivered {
        // A subscriber that went away just stops listening.
        let _ = delivered.send(Delivered {
            chat_id,
            text: text.to_owned(),
            at: Instant::now(),
        });
    }
    telegram_ok(objects::outgoing_message(message_id, chat_id, text))
}

/// The Markdown of a rich message's `rich_message` (`InputRichMessage`): exactly one of
/// `markdown`, `html` or `blocks`; only `markdown` is taken here.
fn rich_markdown(params: &Value) -> Result<String, &'static str> {
    let rich = params
        .get("rich_message")
        .ok_or("Bad Request: rich_message is empty")?;
    match rich.get("markdown").and_then(Value::as_str) {
        Some(markdown) => Ok(markdown.to_owned()),
        None => Err("Bad Request: exactly one of markdown, html or blocks must be used"),
    }
}

/// `sendRichMessage` (Bot API 10.1): a message formatted from Markdown by Telegram.
fn send_rich_message(state: &State, params: &Value) -> Response {
    if !state.lock().drafts_supported {
        return telegram_error(404, "Not Found: method not found", None);
    }
    let Some(chat_id) = params.get("chat_id").and_then(as_i64) else {
        return telegram_error(400, "Bad Request: chat_id is empty", None);
    };
    let markdown = match rich_markdown(params) {
        Ok(markdown) => markdown,
        Err(description) => return telegram_error(400, description, None),
    };
    if markdown.trim().is_empty() {
        return telegram_error(400, "Bad Request: message text is empty", None);
    }
    if let Some(refused) = group_flood(state, chat_id) {
        return refused;
    }
    let mut inner = state.lock();
    let message_id = inner.next_message_id;
    inner.next_message_id += 1;
    inner.sent.push(SentMessage {
        message_id,
        chat_id,
        text: markdown.clone(),
        parse_mode: None,
        rich: true,
    });
    if let Some(delivered) = &inner.delivered {
        let _ = delivered.send(Delivered {
            chat_id,
            text: markdown.clone(),
            at: Instant::now(),
        });
    }
    telegram_ok(objects::outgoing_message(message_id, chat_id, &markdown))
}

/// `sendMessageDraft` (Bot API 9.3+) or, `rich`, `sendRichMessageDraft` (10.1): a live preview
/// in a private chat, recorded with the moment it arrived. A server set up as an older one
/// answers 404 like for any unknown method.
fn send_message_draft(state: &State, params: &Value, rich: bool) -> Response {
    if !state.lock().drafts_supported {
        return telegram_error(404, "Not Found: method not found", None);
    }
    let Some(chat_id) = params.get("chat_id").and_then(as_i64) else {
        return telegram_error(400, "Bad Request: chat_id is empty", None);
    };
    if chat_id <= 0 {
        return telegram_error(
            400,
            "Bad Request: drafts can be sent only to private chats",
            None,
        );
    }
    let draft_id = params.get("draft_id").and_then(as_i64).unwrap_or(0);
    if draft_id == 0 {
        return telegram_error(400, "Bad Request: draft_id must be non-zero", None);
    }
    let text = if rich {
        match rich_markdown(params) {
            Ok(markdown) => markdown,
            Err(description) => return telegram_error(400, description, None),
        }
    } else {
        params
            .get("text")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    if text.encode_utf16().count() > 4096 {
        return telegram_error(400, "Bad Request: text is too long", None);
    }
    let can_stop = match params.get("can_stop") {
        Some(Value::Bool(flag)) => *flag,
        Some(Value::String(flag)) => flag == "true",
        _ => false,
    };
    state.lock().drafts.push(Draft {
        chat_id,
        draft_id,
        text,
        at: Instant::now(),
        can_stop,
        rich,
    });
    telegram_ok(json!(true))
}

fn edit_message_text(state: &State, params: &Value) -> Response {
    let chat_id = params.get("chat_id").and_then(as_i64);
    let message_id = params.get("message_id").and_then(as_i64);
    let text = params
        .get("text")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let (Some(chat_id), Some(message_id)) = (chat_id, message_id) else {
        return telegram_error(400, "Bad Request: message to edit not found", None);
    };
    if let Some(refused) = group_flood(state, chat_id) {
        return refused;
    }
    let mut inner = state.lock();
    match inner
        .sent
        .iter_mut()
        .find(|m| m.chat_id == chat_id && m.message_id == message_id)
    {
        Some(message) => {
            text.clone_into(&mut message.text);
            telegram_ok(objects::outgoing_message(message_id, chat_id, text))
        }
        None => telegram_error(400, "Bad Request: message to edit not found", None),
    }
}

fn get_file(state: &State, params: &Value) -> Response {
    let file_id = params
        .get("file_id")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let inner = state.lock();
    match inner.files.get(file_id) {
        Some(file) => telegram_ok(objects::file(file_id, &file.path, file.bytes.len() as u64)),
        None => telegram_error(400, "Bad Request: invalid file_id", None),
    }
}

/// `drop_pending_updates` as a flag, whatever the encoding.
fn drop_pending(params: &Value) -> bool {
    match params.get("drop_pending_updates") {
        Some(Value::Bool(flag)) => *flag,
        Some(Value::String(flag)) => flag == "true",
        _ => false,
    }
}

/// Forgets every pending update (`drop_pending_updates`); deliveries in flight finish but
/// confirm nothing.
fn drop_pending_updates(inner: &mut Inner) {
    inner.updates.clear();
    inner.retry_at.clear();
}

/// `deleteWebhook` (or `setWebhook` with an empty URL): back to `getUpdates`.
fn delete_webhook(inner: &mut Inner, params: &Value) {
    inner.webhook = None;
    inner.last_webhook_error = None;
    if drop_pending(params) {
        drop_pending_updates(inner);
    }
}

/// A secret Telegram accepts: 1–256 characters out of `A-Z`, `a-z`, `0-9`, `_` and `-`.
fn valid_secret(secret: &str) -> bool {
    (1..=256).contains(&secret.len())
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// `setWebhook`: from now on updates are POSTed to `url` (plain `http` is accepted, unlike
/// Telegram, since test replicas listen on loopback). `allowed_updates` left out keeps the
/// previous list, as in Telegram.
fn set_webhook(state: &State, params: &Value) -> Response {
    let url = params
        .get("url")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if url.is_empty() {
        delete_webhook(&mut state.lock(), params);
        return telegram_ok(json!(true));
    }
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return telegram_error(400, "Bad Request: bad webhook: invalid URL", None);
    }
    let secret_token = match params.get("secret_token").and_then(Value::as_str) {
        None | Some("") => None,
        Some(secret) if valid_secret(secret) => Some(secret.to_owned()),
        Some(_) => {
            return telegram_error(
                400,
                "Bad Request: bad webhook: secret token contains unallowed characters",
                None,
            )
        }
    };
    let max_connections = params
        .get("max_connections")
        .and_then(as_i64)
        .map_or(DEFAULT_MAX_CONNECTIONS, |n| {
            usize::try_from(n.clamp(1, 100)).unwrap_or(DEFAULT_MAX_CONNECTIONS)
        });
    let allowed_updates = params
        .get("allowed_updates")
        .and_then(Value::as_array)
        .map(|kinds| {
            kinds
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect::<Vec<_>>()
        });
    let mut inner = state.lock();
    let allowed_updates = allowed_updates
        .or_else(|| inner.webhook.as_ref().map(|w| w.allowed_updates.clone()))
        .unwrap_or_default();
    inner.webhook = Some(WebhookConfig {
        url: url.to_owned(),
        secret_token,
        allowed_updates,
        max_connections,
    });
    inner.last_webhook_error = None;
    if drop_pending(params) {
        drop_pending_updates(&mut inner);
    }
    telegram_ok(json!(true))
}

/// One delivery attempt to make: an update and where it goes.
struct Post {
    update_id: i64,
    target: String,
    body: String,
    secret_token: Option<String>,
    timeout: Duration,
}

/// The kind of an update: its one field besides `update_id`.
fn update_kind(update: &Value) -> Option<&str> {
    update
        .as_object()?
        .keys()
        .find(|key| *key != "update_id")
        .map(String::as_str)
}

/// The deliveries to start now, oldest update first, while fewer than `max_connections` are
/// in flight; and when the earliest update waiting out a retry delay becomes due.
fn due_posts(
    inner: &mut Inner,
    now: tokio::time::Instant,
) -> (Vec<Post>, Option<tokio::time::Instant>) {
    let Some(hook) = inner.webhook.clone() else {
        return (Vec::new(), None);
    };
    if !hook.allowed_updates.is_empty() {
        // Telegram never sends kinds the bot did not ask for.
        inner.updates.retain(|(_, update)| {
            update_kind(update).is_none_or(|kind| hook.allowed_updates.iter().any(|a| a == kind))
        });
    }
    if !inner.retry_at.is_empty() {
        // Forget retry times of updates confirmed or dropped since.
        let pending: HashSet<i64> = inner.updates.iter().map(|(id, _)| *id).collect();
        inner.retry_at.retain(|id, _| pending.contains(id));
    }
    let Inner {
        updates,
        in_flight,
        retry_at,
        webhook_targets,
        next_target,
        webhook_timeout,
        ..
    } = inner;
    let mut due = Vec::new();
    let mut wake: Option<tokio::time::Instant> = None;
    for (update_id, update) in updates.iter() {
        if in_flight.len() >= hook.max_connections {
            break;
        }
        if in_flight.contains(update_id) {
            continue;
        }
        if let Some(&at) = retry_at.get(update_id) {
            if at > now {
                wake = Some(wake.map_or(at, |w| w.min(at)));
                continue;
            }
        }
        let target = if webhook_targets.is_empty() {
            hook.url.clone()
        } else {
            let target = webhook_targets[*next_target % webhook_targets.len()].clone();
            *next_target = next_target.wrapping_add(1);
            target
        };
        in_flight.insert(*update_id);
        due.push(Post {
            update_id: *update_id,
            target,
            body: update.to_string(),
            secret_token: hook.secret_token.clone(),
            timeout: *webhook_timeout,
        });
    }
    (due, wake)
}

/// The background task behind webhook mode: starts due deliveries whenever the state changes
/// (an update is pushed, a webhook set, a delivery finished) or a retry delay runs out. It
/// runs as long as the server; aborting it aborts the requests in flight with it.
pub(crate) async fn deliver_webhooks(state: Shared, client: reqwest::Client) {
    let mut version = state.version.subscribe();
    let mut posts = tokio::task::JoinSet::new();
    loop {
        version.borrow_and_update();
        let (due, wake) = due_posts(&mut state.lock(), tokio::time::Instant::now());
        for post in due {
            posts.spawn(post_update(state.clone(), client.clone(), post));
        }
        let retry = async {
            match wake {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            changed = version.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            () = retry => {}
            Some(_) = posts.join_next(), if !posts.is_empty() => {}
        }
    }
}

/// POSTs one update and records the outcome: a 2xx confirms it, anything else schedules a
/// retry.
async fn post_update(state: Shared, client: reqwest::Client, post: Post) {
    let mut request = client
        .post(&post.target)
        .header(header::CONTENT_TYPE, "application/json")
        .timeout(post.timeout)
        .body(post.body);
    if let Some(secret) = &post.secret_token {
        request = request.header(SECRET_HEADER, secret);
    }
    let outcome = match request.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            // Read the answer to its end so the connection can be reused; its content and
            // whether it arrives whole do not matter once the status is known.
            let _ = response.bytes().await;
            DeliveryOutcome::Status(status)
        }
        Err(error) => DeliveryOutcome::ConnectionError(error_chain(&error)),
    };
    {
        let mut inner = state.lock();
        inner.in_flight.remove(&post.update_id);
        if outcome.is_success() {
            inner.updates.retain(|(id, _)| *id != post.update_id);
            inner.retry_at.remove(&post.update_id);
        } else {
            let retry_at = tokio::time::Instant::now() + inner.webhook_retry_delay;
            inner.retry_at.insert(post.update_id, retry_at);
            inner.last_webhook_error = Some((objects::unix_now(), describe_failure(&outcome)));
        }
        inner.deliveries.push(WebhookDelivery {
            update_id: post.update_id,
            target: post.target,
            outcome,
            at: Instant::now(),
        });
    }
    state.bump();
}

/// `last_error_message` as Telegram words it.
fn describe_failure(outcome: &DeliveryOutcome) -> String {
    match outcome {
        DeliveryOutcome::Status(code) => {
            let reason = StatusCode::from_u16(*code)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or_default();
            format!("Wrong response from the webhook: {code} {reason}")
        }
        DeliveryOutcome::ConnectionError(error) => error.clone(),
    }
}

/// An error with its causes (`reqwest` hides "Connection refused" in its source chain).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// `getUpdates`: confirm everything below `offset`, then answer with what is pending or wait
/// up to `timeout` seconds for something to arrive. While a webhook is set it answers 409, as
/// Telegram does (a long poll already waiting gets the 409 when the webhook is set).
async fn get_updates(state: &State, params: &Value) -> Response {
    let offset = params.get("offset").and_then(as_i64).unwrap_or(0);
    let limit = params
        .get("limit")
        .and_then(as_i64)
        .map_or(100, |l| l.clamp(1, 100));
    let timeout = params
        .get("timeout")
        .and_then(as_i64)
        .map_or(Duration::ZERO, |t| {
            Duration::from_secs(u64::try_from(t).unwrap_or(0)).min(MAX_POLL)
        });
    let mut version = state.version.subscribe();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        version.borrow_and_update();
        let Some(batch) = poll(state, offset, limit) else {
            return telegram_error(409, WEBHOOK_CONFLICT, None);
        };
        if !batch.is_empty() {
            return telegram_ok(Value::Array(batch));
        }
        if tokio::time::timeout_at(deadline, version.changed())
            .await
            .is_err()
        {
            return match poll(state, offset, limit) {
                Some(batch) => telegram_ok(Value::Array(batch)),
                None => telegram_error(409, WEBHOOK_CONFLICT, None),
            };
        }
    }
}

/// One look at the queue for `getUpdates`; `None` while a webhook is set.
fn poll(state: &State, offset: i64, limit: i64) -> Option<Vec<Value>> {
    let mut inner = state.lock();
    if inner.webhook.is_some() {
        return None;
    }
    Some(take_batch(&mut inner, offset, limit))
}

fn take_batch(inner: &mut Inner, offset: i64, limit: i64) -> Vec<Value> {
    let limit = usize::try_from(limit).unwrap_or(100);
    if offset > 0 {
        // Telegram forgets every update below a positive offset, for good.
        inner.updates.retain(|(id, _)| *id >= offset);
        inner.confirmed_offset = inner.confirmed_offset.max(offset);
        return inner
            .updates
            .iter()
            .take(limit)
            .map(|(_, u)| u.clone())
            .collect();
    }
    if offset < 0 {
        // A negative offset counts from the end of the queue (and confirms what is before it).
        let keep = usize::try_from(offset.unsigned_abs()).unwrap_or(usize::MAX);
        let len = inner.updates.len();
        inner.updates.drain(..len.saturating_sub(keep));
        return inner
            .updates
            .iter()
            .take(limit)
            .map(|(_, u)| u.clone())
            .collect();
    }
    inner
        .updates
        .iter()
        .take(limit)
        .map(|(_, u)| u.clone())
        .collect()
}

/// Parameters from the query string and the body, whatever its encoding.
async fn parse_params(request: Request) -> Result<Value, String> {
    let mut params = Map::new();
    if let Some(query) = request.uri().query() {
        for (key, value) in query.split('&').filter_map(|kv| kv.split_once('=')) {
            params.insert(key.to_owned(), typed(key, &percent_decode(value)));
        }
    }
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    if content_type.starts_with("application/json") {
        let bytes = axum::body::to_bytes(request.into_body(), MAX_BODY)
            .await
            .map_err(|e| format!("Bad Request: unreadable body: {e}"))?;
        if !bytes.is_empty() {
            let body: Value = serde_json::from_slice(&bytes)
                .map_err(|e| format!("Bad Request: invalid JSON: {e}"))?;
            if let Value::Object(body) = body {
                params.extend(body);
            }
        }
    } else if content_type.starts_with("application/x-www-form-urlencoded") {
        let Form(form) = Form::<HashMap<String, String>>::from_request(request, &())
            .await
            .map_err(|e| format!("Bad Request: invalid form: {e}"))?;
        for (key, value) in form {
            let value = typed(&key, &value);
            params.insert(key, value);
        }
    } else if content_type.starts_with("multipart/form-data") {
        let mut multipart = Multipart::from_request(request, &())
            .await
            .map_err(|e| format!("Bad Request: invalid multipart: {e}"))?;
        while let Some(field) = multipart
            .next_field()
            .await
            .map_err(|e| format!("Bad Request: invalid multipart field: {e}"))?
        {
            let Some(name) = field.name().map(str::to_owned) else {
                continue;
            };
            let is_file = field.file_name().is_some();
            let bytes = field
                .bytes()
                .await
                .map_err(|e| format!("Bad Request: unreadable multipart field: {e}"))?;
            let value = if is_file {
                json!({ "file_bytes": bytes.len() })
            } else {
                typed(&name, &String::from_utf8_lossy(&bytes))
            };
            params.insert(name, value);
        }
    }
    Ok(Value::Object(params))
}

/// Form and multipart values arrive as strings; numbers, booleans and JSON objects are
/// decoded as Telegram does, but texts stay texts.
fn typed(key: &str, raw: &str) -> Value {
    if matches!(key, "text" | "caption" | "url" | "file_id") {
        return Value::String(raw.to_owned());
    }
    serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_owned()))
}

fn percent_decode(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state_with_updates(n: i64) -> State {
        let (version, _) = tokio::sync::watch::channel(0);
        let state = State {
            token: "t".to_owned(),
            inner: std::sync::Mutex::new(super::super::Inner::default()),
            version,
        };
        for id in 1..=n {
            state
                .lock()
                .updates
                .push_back((id, json!({ "update_id": id })));
        }
        state
    }

    #[test]
    fn a_positive_offset_confirms_every_earlier_update_for_good() {
        let state = state_with_updates(5);
        assert_eq!(
            take_batch(&mut state.lock(), 0, 100).len(),
            5,
            "offset 0 confirms nothing"
        );
        assert_eq!(take_batch(&mut state.lock(), 4, 100).len(), 2);
        assert_eq!(
            take_batch(&mut state.lock(), 0, 100).len(),
            2,
            "updates 1-3 are gone"
        );
        assert_eq!(state.lock().confirmed_offset, 4);
    }

    #[test]
    fn limit_caps_the_batch_and_a_negative_offset_keeps_the_newest() {
        let state = state_with_updates(5);
        assert_eq!(take_batch(&mut state.lock(), 0, 2).len(), 2);
        let newest = take_batch(&mut state.lock(), -1, 100);
        assert_eq!(newest, vec![json!({ "update_id": 5 })]);
    }

    #[test]
    fn method_names_and_form_values_are_read_as_telegram_reads_them() {
        assert_eq!(canonical_method("SendMessage"), "sendMessage");
        assert_eq!(canonical_method("getMe"), "getMe");
        assert_eq!(percent_decode("a%20b+c%2Fd%"), "a b c/d%");
        assert_eq!(typed("chat_id", "42"), json!(42));
        assert_eq!(typed("text", "42"), json!("42"));
    }
}
