//! The OpenAI chat-completions wire format: what is sent and the part of the answer we read.
//! Kept apart from the client so domain types never carry serde attributes.

use butler_domain::ports::{LlmError, LlmReply, LlmRequest, OutputFormat};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::http::malformed_body;

#[derive(Debug, Serialize)]
pub(super) struct ChatRequest<'a> {
    model: &'a str,
    messages: Vec<WireMessage<'a>>,
    temperature: f32,
    max_tokens: u32,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<StreamOptions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_format: Option<ResponseFormat<'a>>,
}

/// `response_format: {"type": "json_schema", "json_schema": {"name", "schema"}}` — the form
/// OpenAI, llama.cpp's server, vLLM and Ollama's OpenAI endpoint accept.
#[derive(Debug, Serialize)]
struct ResponseFormat<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    json_schema: JsonSchema<'a>,
}

#[derive(Debug, Serialize)]
struct JsonSchema<'a> {
    name: &'a str,
    schema: Value,
}

#[derive(Debug, Serialize)]
struct StreamOptions {
    include_usage: bool,
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
            stream: false,
            stream_options: None,
            response_format: response_format(&request.format),
        }
    }

    /// Whether the request asks the server for a JSON schema.
    pub(super) const fn has_response_format(&self) -> bool {
        self.response_format.is_some()
    }

    /// The same request without `response_format`, for a server that rejects it.
    pub(super) fn without_response_format(mut self) -> Self {
        self.response_format = None;
        self
    }

    /// The same request, asking for server-sent events with usage in the last chunk.
    pub(super) fn streaming(mut self) -> Self {
        self.stream = true;
        self.stream_options = Some(StreamOptions {
            include_usage: true,
        });
        self
    }
}

/// The `response_format` of a request for JSON; `None` for text, or for a schema that is not
/// JSON (the tolerant parser copes with whatever comes back).
fn response_format(format: &OutputFormat) -> Option<ResponseFormat<'_>> {
    match format {
        OutputFormat::Text => None,
        OutputFormat::Json { name, schema } => Some(ResponseFormat {
            kind: "json_schema",
            json_schema: JsonSchema {
                name,
                schema: serde_json::from_str(schema).ok()?,
            },
        }),
    }
}

/// Whether an error status says the server does not take `response_format` (a 4xx whose body
/// names it), as opposed to a request it rejects for another reason.
pub(super) fn rejects_response_format(status: u16, body_excerpt: &str) -> bool {
    let body = body_excerpt.to_ascii_lowercase();
    (400..500).contains(&status)
        && status != 408
        && status != 429
        && ["response_format", "json_schema", "response format"]
            .iter()
            .any(|needle| body.contains(needle))
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
    #[serde(default)]
    prompt_tokens_details: Option<PromptTokensDetails>,
}

#[derive(Debug, Deserialize)]
struct PromptTokensDetails {
    #[serde(default)]
    cached_tokens: Option<u32>,
}

impl Usage {
    fn cached(&self) -> Option<u32> {
        self.prompt_tokens_details
            .as_ref()
            .and_then(|d| d.cached_tokens)
    }
}

/// One `data:` chunk of a streamed completion.
#[derive(Debug, Deserialize)]
struct ChatChunk {
    #[serde(default)]
    choices: Vec<ChunkChoice>,
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Debug, Deserialize)]
struct ChunkChoice {
    #[serde(default)]
    delta: Option<Message>,
    #[serde(default)]
    finish_reason: Option<String>,
}

/// What one streamed chunk carries.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Chunk {
    /// Text of the first choice's delta (may be empty).
    pub(super) text: String,
    /// Whether the first choice says it is finished.
    pub(super) finished: bool,
    /// `(prompt, completion, cached prompt)` tokens, when the chunk reports usage.
    pub(super) usage: Option<(Option<u32>, Option<u32>, Option<u32>)>,
}

/// Parses one `data:` payload of a streamed completion.
pub(super) fn parse_chunk(data: &str) -> Result<Chunk, LlmError> {
    let chunk: ChatChunk = serde_json::from_str(data).map_err(|e| LlmError::InvalidResponse {
        detail: malformed_body("streamed chat completion", &e, data.len()),
    })?;
    let first = chunk.choices.into_iter().next();
    Ok(Chunk {
        finished: first.as_ref().is_some_and(|c| c.finish_reason.is_some()),
        text: first
            .and_then(|c| c.delta)
            .and_then(|d| d.content)
            .unwrap_or_default(),
        usage: chunk
            .usage
            .map(|u| (u.prompt_tokens, u.completion_tokens, u.cached())),
    })
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
        cached_prompt_tokens: usage.as_ref().and_then(Usage::cached),
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
    fn a_json_request_carries_its_schema_as_response_format_and_text_does_not() {
        use butler_domain::ports::RequestOptions;
        let text = LlmRequest::new(vec![], RequestOptions::default());
        let json = text.clone().json("facts", r#"{"type":"object"}"#);
        let body = serde_json::to_value(ChatRequest::new("m", &json)).unwrap();
        assert_eq!(
            body["response_format"],
            serde_json::json!({"type":"json_schema","json_schema":{"name":"facts","schema":{"type":"object"}}})
        );
        let plain =
            serde_json::to_value(ChatRequest::new("m", &json).without_response_format()).unwrap();
        assert!(plain.get("response_format").is_none());
        let text = serde_json::to_value(ChatRequest::new("m", &text)).unwrap();
        assert!(text.get("response_format").is_none());
    }

    #[test]
    fn only_a_client_error_naming_response_format_counts_as_rejecting_it() {
        assert!(rejects_response_format(
            400,
            "Unknown field: response_format"
        ));
        assert!(rejects_response_format(422, "json_schema not supported"));
        assert!(!rejects_response_format(400, "context length exceeded"));
        assert!(!rejects_response_format(500, "response_format crashed us"));
        assert!(!rejects_response_format(429, "response_format rate"));
    }

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
    fn streamed_chunks_give_their_text_finish_and_usage() {
        let chunk =
            parse_chunk(r#"{"choices":[{"index":0,"delta":{"content":"Добрый"}}]}"#).unwrap();
        assert_eq!(chunk.text, "Добрый");
        assert!(!chunk.finished);
        let last = parse_chunk(
            r#"{"choices":[{"delta":{},"finish_reason":"stop"}],
                "usage":{"prompt_tokens":10,"completion_tokens":2,"prompt_tokens_details":{"cached_tokens":8}}}"#,
        )
        .unwrap();
        assert!(last.finished);
        assert_eq!(last.usage, Some((Some(10), Some(2), Some(8))));
        let usage_only = parse_chunk(r#"{"choices":[],"usage":{"prompt_tokens":1}}"#).unwrap();
        assert_eq!(usage_only.text, "");
        assert!(parse_chunk("{not json").is_err());
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
