//! The OpenAI chat-completions wire format: what is sent and the part of the answer we read.
//! Kept apart from the client so domain types never carry serde attributes.

use butler_domain::ports::{LlmError, LlmReply, LlmRequest};
use serde::{Deserialize, Serialize};

use crate::http::malformed_body;

#[derive(Debug, Serialize)]
pub(super) struct ChatRequest<'a> {
    model: &'a str,
    messages: Vec<WireMessage<'a>>,
    temperature: f32,
    max_tokens: u32,
}

#[derive(Debug, Serialize)]
struct WireMessage<'a> {
    role: &'static str,
    content: &'a str,
}

impl<'a> ChatRequest<'a> {
    pub(super) fn new(model: &'a str, request: &'a LlmRequest) -> Self {
        Self {
            model,
            messages: request
                .messages
                .iter()
                .map(|m| WireMessage {
                    role: m.role.as_str(),
                    content: &m.content,
                })
                .collect(),
            temperature: request.options.temperature,
            max_tokens: request.options.max_tokens,
        }
    }
}

#[derive(Debug, Deserialize)]
struct ChatResponse {
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Debug, Deserialize)]
struct Choice {
    #[serde(default)]
    message: Option<Message>,
}

#[derive(Debug, Deserialize)]
struct Message {
    #[serde(default)]
    content: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Usage {
    #[serde(default)]
    prompt_tokens: Option<u32>,
    #[serde(default)]
    completion_tokens: Option<u32>,
}

/// The first choice's text, trimmed. Malformed JSON, no choices, and blank content are all
/// [`LlmError::InvalidResponse`]: an empty reply must never reach a user as if it were one.
pub(super) fn parse_reply(body: &[u8]) -> Result<LlmReply, LlmError> {
    let response: ChatResponse =
        serde_json::from_slice(body).map_err(|e| LlmError::InvalidResponse {
            detail: malformed_body("chat completion", &e, body.len()),
        })?;
    let text = response
        .choices
        .into_iter()
        .next()
        .ok_or_else(|| invalid("no choices in the completion"))?
        .message
        .and_then(|m| m.content)
        .map(|text| text.trim().to_owned())
        .unwrap_or_default();
    if text.is_empty() {
        return Err(invalid("the completion text is empty"));
    }
    let usage = response.usage;
    Ok(LlmReply {
        text,
        prompt_tokens: usage.as_ref().and_then(|u| u.prompt_tokens),
        completion_tokens: usage.as_ref().and_then(|u| u.completion_tokens),
    })
}

fn invalid(detail: &str) -> LlmError {
    LlmError::InvalidResponse {
        detail: detail.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_is_optional_and_read_when_present() {
        let reply = parse_reply(
            br#"{"choices":[{"message":{"role":"assistant","content":" Yes, sir. "}}],
                "usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15}}"#,
        )
        .unwrap();
        assert_eq!(reply.text, "Yes, sir.");
        assert_eq!(reply.prompt_tokens, Some(12));
        assert_eq!(reply.completion_tokens, Some(3));
        let bare = parse_reply(br#"{"choices":[{"message":{"content":"ok"}}]}"#).unwrap();
        assert_eq!(bare.prompt_tokens, None);
    }

    #[test]
    fn null_content_and_missing_choices_are_invalid() {
        for body in [
            r#"{"choices":[{"message":{"content":null}}]}"#,
            r#"{"choices":[]}"#,
            r#"{"choices":[{"message":{"content":"  \n "}}]}"#,
            r#"{"object":"error"}"#,
        ] {
            assert!(
                matches!(
                    parse_reply(body.as_bytes()),
                    Err(LlmError::InvalidResponse { .. })
                ),
                "{body}"
            );
        }
    }
}
