//! [`OpenAiTranscriptionClient`]: `SpeechToText` over multipart
//! `POST {base}/audio/transcriptions` with `response_format=json`, the shared retry rules and
//! one overall deadline per call.

use std::time::Duration;

use async_trait::async_trait;
use butler_domain::ports::{AudioClip, SpeechToText, SttError, Transcript};
use bytes::Bytes;
use reqwest::multipart::{Form, Part};
use reqwest::Body;
use serde::Deserialize;
use tokio::time::Instant;

use super::SttHttpConfig;
use crate::http::{malformed_body, CallError, Endpoint, HttpCaller, HttpConfigError};

/// Transcriptions from an OpenAI-compatible server.
#[derive(Debug, Clone)]
pub struct OpenAiTranscriptionClient {
    caller: HttpCaller,
    model: String,
    language: Option<String>,
    request_timeout: Duration,
    max_upload_bytes: usize,
}

#[derive(Debug, Deserialize)]
struct TranscriptionResponse {
    text: String,
}

impl OpenAiTranscriptionClient {
    /// Builds the client; nothing is sent until the first transcription.
    ///
    /// # Errors
    /// If the base URL is not an absolute `http(s)` URL, or TLS cannot be initialised.
    pub fn new(config: SttHttpConfig) -> Result<Self, HttpConfigError> {
        let endpoint = Endpoint::new(&config.base_url, "audio/transcriptions", config.api_key)?;
        let caller = HttpCaller::new(
            "transcription",
            endpoint,
            config.connect_timeout,
            config.retry,
        )?;
        Ok(Self {
            caller,
            model: config.model,
            language: config.language,
            request_timeout: config.request_timeout,
            max_upload_bytes: config.max_upload_bytes,
        })
    }

    /// The URL clips are posted to.
    #[must_use]
    pub fn url(&self) -> &str {
        self.caller.endpoint().url().as_str()
    }

    /// A fresh form per attempt (multipart bodies are consumed by sending); the audio itself
    /// is shared, not copied.
    fn form(&self, audio: &Bytes, clip: &AudioClip) -> Form {
        let part = || {
            Part::stream_with_length(Body::from(audio.clone()), audio.len() as u64)
                .file_name(clip.file_name.clone())
        };
        // A MIME type that does not parse is left out: servers pick decoders by extension.
        let file = part().mime_str(&clip.mime_type).unwrap_or_else(|_| part());
        let form = Form::new()
            .part("file", file)
            .text("model", self.model.clone())
            .text("response_format", "json");
        match &self.language {
            Some(language) => form.text("language", language.clone()),
            None => form,
        }
    }
}

#[async_trait]
impl SpeechToText for OpenAiTranscriptionClient {
    async fn transcribe(&self, clip: &AudioClip) -> Result<Transcript, SttError> {
        let size = clip.bytes.len();
        if size > self.max_upload_bytes {
            return Err(SttError::TooLarge {
                size,
                max: self.max_upload_bytes,
            });
        }
        let started = Instant::now();
        let deadline = started + self.request_timeout;
        let audio = Bytes::from(clip.bytes.clone());
        let body = self
            .caller
            .call(deadline, |client, endpoint| {
                endpoint.post(client).multipart(self.form(&audio, clip))
            })
            .await
            .map_err(|e| self.map_error(e))?;
        let transcript = parse_transcript(&body);
        tracing::debug!(
            audio_bytes = size,
            elapsed_ms = started.elapsed().as_millis(),
            ok = transcript.is_ok(),
            "transcription finished"
        );
        transcript
    }
}

impl OpenAiTranscriptionClient {
    fn map_error(&self, error: CallError) -> SttError {
        match error {
            CallError::Timeout => SttError::Timeout {
                after: self.request_timeout,
            },
            CallError::Unavailable(detail) => SttError::Unavailable { detail },
            CallError::Status {
                status,
                body_excerpt,
            } => SttError::Status {
                status,
                body_excerpt,
            },
        }
    }
}

/// `{"text": "…"}`, trimmed; blank text means no speech was recognised, which is an error.
fn parse_transcript(body: &[u8]) -> Result<Transcript, SttError> {
    let response: TranscriptionResponse =
        serde_json::from_slice(body).map_err(|e| SttError::InvalidResponse {
            detail: malformed_body("transcription", &e, body.len()),
        })?;
    let text = response.text.trim();
    if text.is_empty() {
        return Err(SttError::InvalidResponse {
            detail: "no speech was recognised".to_owned(),
        });
    }
    Ok(Transcript {
        text: text.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transcript_is_trimmed_and_blank_text_is_an_error() {
        assert_eq!(
            parse_transcript(br#"{"text":" Hello there. "}"#)
                .unwrap()
                .text,
            "Hello there."
        );
        assert!(matches!(
            parse_transcript(br#"{"text":"  "}"#),
            Err(SttError::InvalidResponse { .. })
        ));
        assert!(matches!(
            parse_transcript(b"<html>"),
            Err(SttError::InvalidResponse { .. })
        ));
    }
}
