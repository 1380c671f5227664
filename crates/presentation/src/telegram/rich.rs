//! Formatting (Bot API 10.1): a reply that uses Markdown is sent as a *rich message*
//! (`sendRichMessage`, and `sendRichMessageDraft` for its drafts) with `InputRichMessage
//! {markdown}`, which Telegram renders itself — no MarkdownV2 escaping, so no "can't parse
//! entities" failures, and no asterisks shown to the person. A reply without Markdown goes out
//! as plain text, as before.
//!
//! Falling back, once: when Telegram rejects a rich message, that message is sent again as
//! plain text (nothing is lost, the person sees the asterisks). A server that does not have
//! the method at all (`404 Not Found: method not found`: an older or local Bot API server)
//! turns rich messages off for the process, with one log line. Each fallback is counted
//! ([`super::TelegramObserver::rich_fallback`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde::Serialize;
use teloxide::{ApiError, RequestError};

use super::redact::Redactor;
use super::TelegramObserver;

/// `InputRichMessage` with Markdown content.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct InputRichMessage {
    markdown: String,
}

impl InputRichMessage {
    pub(crate) fn markdown(text: &str) -> Self {
        Self {
            markdown: text.to_owned(),
        }
    }
}

/// Whether rich messages are sent, and what happens when one is rejected.
pub(crate) struct Rich {
    enabled: AtomicBool,
    observer: Option<Arc<dyn TelegramObserver>>,
}

impl std::fmt::Debug for Rich {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rich")
            .field("enabled", &self.enabled.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Rich {
    /// Rich messages on (`enabled`) or off.
    pub(crate) fn new(enabled: bool, observer: Option<Arc<dyn TelegramObserver>>) -> Self {
        Self {
            enabled: AtomicBool::new(enabled),
            observer,
        }
    }

    /// `text` as Markdown to send rich, when it uses Markdown and rich messages are on.
    pub(crate) fn markdown_of<'a>(&self, text: &'a str) -> Option<&'a str> {
        (self.enabled.load(Ordering::Relaxed) && uses_markdown(text)).then_some(text)
    }

    /// Telegram rejected `what` (a rich message or draft) with `error`: it goes out as plain
    /// text instead; a server without the method turns rich messages off for the process.
    pub(crate) fn rejected(&self, error: &RequestError, redactor: &Redactor, what: &str) {
        let method_missing = match error {
            RequestError::Api(ApiError::InvalidToken) => true,
            RequestError::Api(ApiError::Unknown(text)) => text
                .trim()
                .eq_ignore_ascii_case("Not Found: method not found"),
            _ => false,
        };
        if method_missing {
            if self.enabled.swap(false, Ordering::Relaxed) {
                tracing::warn!(
                    error = %redactor.clean(error),
                    "the Bot API server does not have rich messages; formatting is sent as plain text until restart"
                );
            }
        } else {
            tracing::info!(error = %redactor.clean(error), what, "a rich message was rejected; sending it as plain text");
        }
        if let Some(observer) = &self.observer {
            observer.rich_fallback();
        }
    }
}

/// Whether `text` uses Markdown a reader would otherwise see as symbols: emphasis (`**`,
/// `__`), code (`` ` ``), a heading (`#` first on a line), a list (`- `, `* `, `1. ` first on
/// a line) or a link (`](`).
pub(crate) fn uses_markdown(text: &str) -> bool {
    if text.contains("**") || text.contains("__") || text.contains('`') || text.contains("](") {
        return true;
    }
    text.lines().any(|line| {
        let line = line.trim_start();
        line.starts_with("# ")
            || line.starts_with("## ")
            || line.starts_with("### ")
            || line.starts_with("- ")
            || line.starts_with("* ")
            || line.split_once(". ").is_some_and(|(n, _)| {
                !n.is_empty() && n.len() <= 3 && n.bytes().all(|b| b.is_ascii_digit())
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_is_recognised_and_plain_prose_is_not() {
        for text in [
            "Это **важно**, сэр.",
            "Список:\n- чай\n- кофе",
            "Шаги:\n1. Заварить\n2. Подать",
            "## План",
            "Команда `ls`",
            "См. [сайт](https://example.org)",
        ] {
            assert!(uses_markdown(text), "{text}");
        }
        for text in [
            "Добрый вечер, сэр. Чай подан.",
            "В 2026 году. Затем — отдых.",
            "Цена 5 * 3 = 15",
            "",
        ] {
            assert!(!uses_markdown(text), "{text}");
        }
    }

    #[test]
    fn a_server_without_rich_messages_turns_them_off_and_other_rejections_do_not() {
        let rich = Rich::new(true, None);
        let redactor = Redactor::new("7000000001:AAFakeTokenForTests_abcdefghijklmnop");
        rich.rejected(
            &RequestError::Api(ApiError::Unknown("Bad Request: can't parse".into())),
            &redactor,
            "a rich message",
        );
        assert!(rich.markdown_of("**да**").is_some());
        rich.rejected(
            &RequestError::Api(ApiError::Unknown("Not Found: method not found".into())),
            &redactor,
            "a rich message",
        );
        assert!(rich.markdown_of("**да**").is_none());
    }
}
