//! Bot API objects as JSON, shaped exactly as Telegram sends them: teloxide parses responses
//! strictly, so every builder here produces an object its types accept (a unit test checks).

use serde_json::{json, Value};

use super::WebhookConfig;

/// The fake bot's own user id (the part of the token before the colon in real tokens).
pub const BOT_USER_ID: i64 = 7_000_000_001;

/// A unix timestamp for message dates: real time, so logs look plausible.
pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A human Telegram user.
pub(crate) fn user(user_id: i64) -> Value {
    json!({
        "id": user_id,
        "is_bot": false,
        "first_name": format!("User{user_id}"),
        "language_code": "ru",
    })
}

/// The bot itself as `getMe` returns it.
pub(crate) fn me() -> Value {
    json!({
        "id": BOT_USER_ID,
        "is_bot": true,
        "first_name": "Alfred",
        "username": BOT_USERNAME,
        "can_join_groups": true,
        "can_read_all_group_messages": false,
        "supports_inline_queries": false,
        "can_connect_to_business": false,
        "has_main_web_app": false,
    })
}

/// The bot as the sender of its own messages.
fn bot_user() -> Value {
    json!({
        "id": BOT_USER_ID,
        "is_bot": true,
        "first_name": "Alfred",
        "username": BOT_USERNAME,
    })
}

/// A chat: private when the chat id is the user's id (as in Telegram), a group otherwise.
pub(crate) fn chat(chat_id: i64, user_id: Option<i64>) -> Value {
    if chat_id < 0 || user_id.is_some_and(|u| u != chat_id) {
        json!({ "id": chat_id, "type": "group", "title": "Test group" })
    } else {
        json!({
            "id": chat_id,
            "type": "private",
            "first_name": format!("User{chat_id}"),
        })
    }
}

/// A message from a user; `content` holds the kind-specific fields (`text`, `voice`, ...).
pub(crate) fn incoming_message(
    message_id: i64,
    user_id: i64,
    chat_id: i64,
    content: Value,
) -> Value {
    let mut message = json!({
        "message_id": message_id,
        "from": user(user_id),
        "chat": chat(chat_id, Some(user_id)),
        "date": unix_now(),
    });
    merge(&mut message, content);
    message
}

/// A message the bot sent (the result of `sendMessage` / `editMessageText`).
pub(crate) fn outgoing_message(message_id: i64, chat_id: i64, text: &str) -> Value {
    json!({
        "message_id": message_id,
        "from": bot_user(),
        "chat": chat(chat_id, None),
        "date": unix_now(),
        "text": text,
    })
}

/// The bot's `@username`, as users mention it.
pub const BOT_USERNAME: &str = "alfred_butler_test_bot";

/// A message in a group (a supergroup; a forum when `group.topic` is set), optionally a reply
/// to one of the bot's messages.
pub(crate) fn group_message(
    message_id: i64,
    user_id: i64,
    chat_id: i64,
    content: Value,
    group: &super::GroupMessage,
) -> Value {
    let mut chat = json!({ "id": chat_id, "type": "supergroup", "title": "Test group" });
    let mut message = json!({
        "message_id": message_id,
        "from": user(user_id),
        "date": unix_now(),
    });
    if let Some(topic) = group.topic {
        chat["is_forum"] = json!(true);
        message["message_thread_id"] = json!(topic);
        message["is_topic_message"] = json!(true);
    }
    message["chat"] = chat.clone();
    if let Some(replied) = group.reply_to_bot {
        let mut original = json!({
            "message_id": replied,
            "from": bot_user(),
            "chat": chat,
            "date": unix_now(),
            "text": "…",
        });
        if let Some(topic) = group.topic {
            original["message_thread_id"] = json!(topic);
        }
        message["reply_to_message"] = original;
    }
    merge(&mut message, content);
    message
}

/// Adds a `mention` entity for every `@username` of the bot in `text` (offsets in UTF-16 units,
/// as Telegram counts).
pub(crate) fn add_mentions(content: &mut Value, text: &str) {
    let needle = format!("@{BOT_USERNAME}");
    let mut entities = content
        .get("entities")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for (at, _) in text.match_indices(&needle) {
        entities.push(json!({
            "type": "mention",
            "offset": text[..at].encode_utf16().count(),
            "length": needle.encode_utf16().count(),
        }));
    }
    if !entities.is_empty() {
        content["entities"] = Value::Array(entities);
    }
}

/// Text content, with a `bot_command` entity when the text starts with `/` (as Telegram adds).
pub(crate) fn text_content(text: &str) -> Value {
    let mut content = json!({ "text": text });
    if text.starts_with('/') {
        let command = text.split_whitespace().next().unwrap_or(text);
        let length = command.encode_utf16().count();
        content["entities"] = json!([{ "type": "bot_command", "offset": 0, "length": length }]);
    }
    content
}

/// Voice-note content.
pub(crate) fn voice_content(file_id: &str, duration_secs: u32, mime: &str, size: u64) -> Value {
    json!({
        "voice": {
            "file_id": file_id,
            "file_unique_id": format!("u{file_id}"),
            "duration": duration_secs,
            "mime_type": mime,
            "file_size": size,
        }
    })
}

/// Sticker content.
pub(crate) fn sticker_content(file_id: &str) -> Value {
    json!({
        "sticker": {
            "file_id": file_id,
            "file_unique_id": format!("u{file_id}"),
            "type": "regular",
            "width": 512,
            "height": 512,
            "is_animated": false,
            "is_video": false,
            "emoji": "🎩",
            "file_size": 1024,
        }
    })
}

/// Photo content (one size).
pub(crate) fn photo_content(file_id: &str) -> Value {
    json!({
        "photo": [{
            "file_id": file_id,
            "file_unique_id": format!("u{file_id}"),
            "width": 320,
            "height": 240,
            "file_size": 2048,
        }]
    })
}

/// Document content.
pub(crate) fn document_content(file_id: &str, file_name: &str) -> Value {
    json!({
        "document": {
            "file_id": file_id,
            "file_unique_id": format!("u{file_id}"),
            "file_name": file_name,
            "mime_type": "application/pdf",
            "file_size": 4096,
        }
    })
}

/// A `File` as `getFile` returns it.
pub(crate) fn file(file_id: &str, path: &str, size: u64) -> Value {
    json!({
        "file_id": file_id,
        "file_unique_id": format!("u{file_id}"),
        "file_size": size,
        "file_path": path,
    })
}

/// `getWebhookInfo`: an empty URL when no webhook is set (as Telegram answers), otherwise the
/// webhook's settings and the latest delivery error (unix time, message), if any.
pub(crate) fn webhook_info(
    webhook: Option<&WebhookConfig>,
    pending: usize,
    last_error: Option<&(i64, String)>,
) -> Value {
    let mut info = json!({
        "url": webhook.map_or("", |w| w.url.as_str()),
        "has_custom_certificate": false,
        "pending_update_count": pending,
    });
    if let Some(webhook) = webhook {
        info["ip_address"] = json!("127.0.0.1");
        info["max_connections"] = json!(webhook.max_connections);
        if !webhook.allowed_updates.is_empty() {
            info["allowed_updates"] = json!(webhook.allowed_updates);
        }
    }
    if let Some((date, message)) = last_error {
        info["last_error_date"] = json!(date);
        info["last_error_message"] = json!(message);
    }
    info
}

fn merge(target: &mut Value, extra: Value) {
    if let (Some(target), Value::Object(extra)) = (target.as_object_mut(), extra) {
        target.extend(extra);
    }
}
