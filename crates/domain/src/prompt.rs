//! Chat messages and the personalised prompt sent to the language model.

use std::fmt;

/// The role of one chat message, as OpenAI-compatible APIs and chat templates name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChatRole {
    /// Instructions: persona and memory summary.
    System,
    /// The user's turn.
    User,
    /// The butler's turn.
    Assistant,
}

impl ChatRole {
    /// `system`, `user` or `assistant`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::System => "system",
            Self::User => "user",
            Self::Assistant => "assistant",
        }
    }
}

impl fmt::Display for ChatRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One message of a chat conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    /// Who speaks.
    pub role: ChatRole,
    /// What is said.
    pub content: String,
}

impl ChatMessage {
    /// A system message.
    #[must_use]
    pub fn system(content: impl Into<String>) -> Self {
        Self {
            role: ChatRole::System,
            content: content.into(),
        }
    }

    /// A user message.
    #[must_use]
    pub fn user(content: impl Into<String>) -> Self {
        Self {
            role: ChatRole::User,
            content: content.into(),
        }
    }

    /// An assistant message.
    #[must_use]
    pub fn assistant(content: impl Into<String>) -> Self {
        Self {
            role: ChatRole::Assistant,
            content: content.into(),
        }
    }
}

/// A prompt assembled for one reply, within the token budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonalizedPrompt {
    /// The system message: persona section and memory summary.
    pub system: String,
    /// Recent conversation as alternating user/assistant turns, oldest first.
    pub turns: Vec<ChatMessage>,
    /// The user's new message (possibly cut to its budget, with a marker), after a fenced
    /// note of the remembered facts that bear on it when there are any.
    pub new_message: String,
    /// Remembered facts in the prompt (core and relevant).
    pub facts_used: usize,
    /// The whole prompt rendered as text, for logs at debug level and for inspection.
    pub full_prompt: String,
    /// Tokens the prompt uses, including per-message template overhead, as counted by the
    /// configured [`TokenCounter`](crate::ports::TokenCounter).
    pub token_count: usize,
}

impl PersonalizedPrompt {
    /// The chat messages to send: system, then the turns, then the new message.
    #[must_use]
    pub fn to_messages(&self) -> Vec<ChatMessage> {
        let mut messages = Vec::with_capacity(self.turns.len() + 2);
        messages.push(ChatMessage::system(self.system.clone()));
        messages.extend(self.turns.iter().cloned());
        messages.push(ChatMessage::user(self.new_message.clone()));
        messages
    }

    /// Renders messages as `role: content` blocks — the form of [`PersonalizedPrompt::full_prompt`].
    #[must_use]
    pub fn render(messages: &[ChatMessage]) -> String {
        let mut out = String::new();
        for (i, m) in messages.iter().enumerate() {
            if i > 0 {
                out.push_str("\n\n");
            }
            out.push_str(m.role.as_str());
            out.push_str(": ");
            out.push_str(&m.content);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_system_then_turns_then_the_new_message() {
        let prompt = PersonalizedPrompt {
            facts_used: 0,
            system: "Ты — дворецкий.".into(),
            turns: vec![
                ChatMessage::user("Привет"),
                ChatMessage::assistant("Добрый вечер, сэр."),
            ],
            new_message: "Который час?".into(),
            full_prompt: String::new(),
            token_count: 0,
        };
        let messages = prompt.to_messages();
        let roles: Vec<_> = messages.iter().map(|m| m.role).collect();
        assert_eq!(
            roles,
            [
                ChatRole::System,
                ChatRole::User,
                ChatRole::Assistant,
                ChatRole::User
            ]
        );
        assert_eq!(messages[3].content, "Который час?");
        assert_eq!(
            PersonalizedPrompt::render(&messages[..2]),
            "system: Ты — дворецкий.\n\nuser: Привет"
        );
        assert_eq!(ChatRole::Assistant.to_string(), "assistant");
    }
}
