//! Configuration of the transcription adapter. Built by the factory from settings
//! (`STT_BASE_URL`, `STT_MODEL`, `STT_LANGUAGE`, `STT_API_KEY`).

use std::time::Duration;

use secrecy::SecretString;

use crate::http::RetryPolicy;

/// The Bot API lets bots download files of at most 20 MB; a bigger voice note never arrives.
pub const DEFAULT_MAX_UPLOAD_BYTES: usize = 20_000_000;

/// How to reach an OpenAI-compatible transcription server. `Debug` never shows the key.
#[derive(Debug, Clone)]
pub struct SttHttpConfig {
    /// The API root, including `/v1`: `http://127.0.0.1:8000/v1`.
    pub base_url: String,
    /// Sent as the `model` form field (`whisper-1`, `Systran/faster-whisper-small`); servers
    /// that host one model ignore it.
    pub model: String,
    /// ISO-639-1 hint (`ru`, `en`); `None` lets the server detect the language.
    pub language: Option<String>,
    /// Sent as `Authorization: Bearer …` when set.
    pub api_key: Option<SecretString>,
    /// Longest wait to establish a TCP/TLS connection, per attempt.
    pub connect_timeout: Duration,
    /// One deadline for the whole call, retries included.
    pub request_timeout: Duration,
    /// Which failures are retried and how long to pause between attempts.
    pub retry: RetryPolicy,
    /// Clips larger than this are refused before any upload.
    pub max_upload_bytes: usize,
}

impl SttHttpConfig {
    /// A configuration with the defaults: no key, no language hint, 5 s connect timeout, 60 s
    /// deadline, the default retry policy, uploads up to 20 MB.
    #[must_use]
    pub fn new(base_url: impl Into<String>, model: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            model: model.into(),
            language: None,
            api_key: None,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(60),
            retry: RetryPolicy::default(),
            max_upload_bytes: DEFAULT_MAX_UPLOAD_BYTES,
        }
    }
}
