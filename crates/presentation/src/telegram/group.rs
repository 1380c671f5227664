//! The butler as a quiet member of a group: which conversation a group message belongs to,
//! whether it is addressed to the butler, and how a line is written into the group's memory.
//!
//! - **Its own memory.** A group (or one topic of a forum group) is a conversation of its own
//!   ([`UserId::group`]): its lines, summary and facts; a member's personal memory — their
//!   private chat with the butler — never enters a group's prompt, and nothing said in a group
//!   enters a member's private one.
//! - **Addressed, or not.** The butler reads every message Telegram delivers into the group's
//!   memory as context, and answers only a message addressed to it: an `@mention` of the bot,
//!   a reply to one of its messages, a command meant for it, or one of its names at the start
//!   («Альфред, …», `BUTLER_NAMES`). Anything else costs no model call.

use butler_domain::UserId;
use teloxide::types::{Me, Message, MessageEntityKind};

/// The conversation a message belongs to: its sender's private memory in a private chat, the
/// group's (or the forum topic's) otherwise.
pub(crate) fn conversation_of(message: &Message) -> Option<UserId> {
    if message.chat.is_private() {
        return message
            .from
            .as_ref()
            .and_then(|user| i64::try_from(user.id.0).ok())
            .map(UserId::new);
    }
    let topic = message
        .thread_id
        .filter(|_| message.is_topic_message)
        .map(|thread| thread.0 .0);
    Some(UserId::group(message.chat.id.0, topic))
}

/// Whether a group message with `text` (its text, caption or transcript) is addressed to the
/// butler `me`, who also answers to `names` at the start of a message.
pub(crate) fn addressed(message: &Message, text: &str, me: &Me, names: &[String]) -> bool {
    replies_to(message, me) || mentions(message, me) || starts_with_name(text, names)
}

/// A reply to one of the butler's own messages.
fn replies_to(message: &Message, me: &Me) -> bool {
    message
        .reply_to_message()
        .and_then(|original| original.from.as_ref())
        .is_some_and(|author| author.id == me.id)
}

/// An `@username` mention of the bot, a mention of it by name (a `text_mention`), or a command
/// addressed to it (`/start@username`).
fn mentions(message: &Message, me: &Me) -> bool {
    let username = me.username().to_lowercase();
    let entities = message
        .parse_entities()
        .or_else(|| message.parse_caption_entities())
        .unwrap_or_default();
    entities.iter().any(|entity| match entity.kind() {
        MessageEntityKind::Mention => {
            entity.text().trim_start_matches('@').to_lowercase() == username
        }
        MessageEntityKind::TextMention { user } => user.id == me.id,
        MessageEntityKind::BotCommand => entity
            .text()
            .split_once('@')
            .is_some_and(|(_, to)| to.to_lowercase() == username),
        _ => false,
    })
}

/// One of `names` as the first word, followed by a pause or the end («Альфред, …», "alfred:").
fn starts_with_name(text: &str, names: &[String]) -> bool {
    let text = text.trim_start();
    names.iter().any(|name| {
        let name = name.trim();
        if name.is_empty() {
            return false;
        }
        let mut chars = text.chars();
        let head: String = chars.by_ref().take(name.chars().count()).collect();
        if head.to_lowercase() != name.to_lowercase() {
            return false;
        }
        chars
            .next()
            .is_none_or(|next| !next.is_alphanumeric() && next != '-' && next != '_')
    })
}

/// How a member's line reads in the group's memory: their name, then what they said, so the
/// summary, the facts and later prompts know who said what.
pub(crate) fn line(message: &Message, text: &str) -> String {
    let name = message.from.as_ref().map_or_else(
        || "Кто-то".to_owned(),
        |user| {
            let full = user.full_name();
            let full = full.trim();
            if full.is_empty() {
                user.username.clone().unwrap_or_else(|| "Кто-то".to_owned())
            } else {
                full.to_owned()
            }
        },
    );
    format!("{name}: {}", text.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        vec!["Альфред".to_owned(), "Alfred".to_owned()]
    }

    #[test]
    fn a_name_counts_only_as_the_first_word() {
        for text in [
            "Альфред, который час?",
            "альфред: чай",
            "  Alfred — tea, please",
            "ALFRED",
            "Альфред!",
        ] {
            assert!(starts_with_name(text, &names()), "{text}");
        }
        for text in [
            "Альфредо пришёл",
            "А где Альфред?",
            "Alfreda, hi",
            "alfred_bot is here",
            "",
        ] {
            assert!(!starts_with_name(text, &names()), "{text}");
        }
        assert!(!starts_with_name("Альфред, привет", &[String::new()]));
    }
}
