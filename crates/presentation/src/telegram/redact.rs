//! Keeping the bot token out of logs and errors.
//!
//! Request URLs carry the token (`/bot<token>/sendMessage`), and HTTP client errors quote
//! their URL. teloxide already hides a token that *looks* like one; this is the belt to its
//! braces: every error text that leaves this module's callers passes through [`Redactor`],
//! which removes the token (and its secret half) wherever it appears.

use std::fmt::Display;

/// Replaces the bot token in texts.
#[derive(Clone)]
pub(crate) struct Redactor {
    token: String,
    secret: Option<String>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Redactor(***)")
    }
}

/// What stands in for the token.
const MASK: &str = "<token>";

impl Redactor {
    /// A redactor for `token`.
    pub(crate) fn new(token: &str) -> Self {
        let secret = token
            .split_once(':')
            .map(|(_, secret)| secret.to_owned())
            .filter(|s| s.len() >= 8);
        Self {
            token: token.to_owned(),
            secret,
        }
    }

    /// `value` as text with the token masked.
    pub(crate) fn clean(&self, value: impl Display) -> String {
        let mut text = value.to_string();
        if !self.token.is_empty() {
            text = text.replace(&self.token, MASK);
        }
        if let Some(secret) = &self.secret {
            text = text.replace(secret, MASK);
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_and_its_secret_half_never_survive_cleaning() {
        let redactor = Redactor::new("12345:ABCDEFGHIJKLMNOP");
        let cleaned = redactor.clean(
            "error sending request for url (http://x/bot12345:ABCDEFGHIJKLMNOP/getMe) ABCDEFGHIJKLMNOP",
        );
        assert!(!cleaned.contains("ABCDEFGHIJKLMNOP"), "{cleaned}");
        assert!(cleaned.contains("<token>"));
    }

    #[test]
    fn the_redactor_does_not_print_the_token_in_debug_output() {
        let redactor = Redactor::new("12345:ABCDEFGHIJKLMNOP");
        assert!(!format!("{redactor:?}").contains("ABCDEFGH"));
    }
}
