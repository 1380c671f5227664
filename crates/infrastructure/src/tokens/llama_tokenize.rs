//! `LlamaTokenizeCounter`: exact counts from an LLM server's own tokenizer, over HTTP.
//!
//! llama.cpp's server answers `POST {root}/tokenize` with `{"content": text}` →
//! `{"tokens": [...]}`; so do servers that copy its API. Counting is infallible by contract,
//! so every failure falls back to an injected counter (the conservative estimator, in
//! production): a timeout, a 5xx or a malformed body falls back for that call only; a 404 means
//! the server has no such endpoint, so the adapter remembers it and stops asking.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use butler_domain::ports::TokenCounter;
use reqwest::StatusCode;
use serde::Deserialize;

/// Why the adapter could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TokenizeEndpointError {
    /// The configured base URL is not an `http(s)://` URL.
    #[error("TOKENIZER_URL must be an http:// or https:// URL of the LLM server, got `{0}`")]
    BadUrl(String),
    /// The HTTP client could not be initialised (TLS backend).
    #[error("cannot build the HTTP client for the tokenize endpoint: {0}")]
    Client(String),
}

#[derive(Debug, Deserialize)]
struct TokenizeResponse {
    /// Token ids, or `{id, piece}` objects when the server was asked for pieces: only the
    /// length matters.
    tokens: Vec<serde_json::Value>,
}

/// Why one remote count failed (logged, then the fallback answers).
#[derive(Debug)]
enum RemoteFailure {
    EndpointMissing,
    Other(String),
}

/// Counts with the LLM server's `POST /tokenize`, falling back to another counter.
pub struct LlamaTokenizeCounter {
    client: reqwest::Client,
    url: String,
    host: String,
    fallback: Arc<dyn TokenCounter>,
    endpoint_missing: AtomicBool,
}

impl std::fmt::Debug for LlamaTokenizeCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlamaTokenizeCounter")
            .field("url", &self.url)
            .field("fallback", &self.fallback.name())
            .field("endpoint_missing", &self.endpoint_missing)
            .finish_non_exhaustive()
    }
}

impl LlamaTokenizeCounter {
    /// A counter for the server at `base_url` (its root, e.g. `http://127.0.0.1:8080`; a
    /// trailing `/v1` of an OpenAI-style base URL is dropped, since llama.cpp serves
    /// `/tokenize` at the root). Each request gives up after `timeout`.
    ///
    /// # Errors
    /// When `base_url` is not http(s) or the HTTP client cannot be built.
    pub fn new(
        base_url: &str,
        timeout: Duration,
        fallback: Arc<dyn TokenCounter>,
    ) -> Result<Self, TokenizeEndpointError> {
        let trimmed = base_url.trim().trim_end_matches('/');
        let root = trimmed.strip_suffix("/v1").unwrap_or(trimmed);
        let host = root
            .strip_prefix("http://")
            .or_else(|| root.strip_prefix("https://"))
            .filter(|rest| !rest.is_empty())
            .ok_or_else(|| TokenizeEndpointError::BadUrl(base_url.to_owned()))?
            .split(['/', '@'])
            .next()
            .unwrap_or_default()
            .to_owned();
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|e| TokenizeEndpointError::Client(e.to_string()))?;
        Ok(Self {
            client,
            url: format!("{root}/tokenize"),
            host,
            fallback,
            endpoint_missing: AtomicBool::new(false),
        })
    }

    /// Whether the server answered 404 and the adapter has stopped asking it.
    #[must_use]
    pub fn endpoint_missing(&self) -> bool {
        self.endpoint_missing.load(Ordering::Relaxed)
    }

    async fn remote_count(&self, text: &str) -> Result<usize, RemoteFailure> {
        let body = serde_json::json!({ "content": text, "add_special": false });
        let response = self
            .client
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| RemoteFailure::Other(describe(e)))?;
        match response.status() {
            StatusCode::NOT_FOUND => return Err(RemoteFailure::EndpointMissing),
            status if !status.is_success() => {
                return Err(RemoteFailure::Other(format!("status {status}")));
            }
            _ => {}
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|e| RemoteFailure::Other(describe(e)))?;
        let parsed: TokenizeResponse = serde_json::from_slice(&bytes)
            .map_err(|e| RemoteFailure::Other(format!("malformed response: {e}")))?;
        Ok(parsed.tokens.len())
    }
}

/// A reqwest error without the URL's query or credentials: just what went wrong.
fn describe(error: reqwest::Error) -> String {
    if error.is_timeout() {
        "timed out".into()
    } else if error.is_connect() {
        "connection failed".into()
    } else {
        error.without_url().to_string()
    }
}

#[async_trait]
impl TokenCounter for LlamaTokenizeCounter {
    async fn count(&self, text: &str) -> usize {
        if self.endpoint_missing() {
            return self.fallback.count(text).await;
        }
        match self.remote_count(text).await {
            Ok(tokens) => tokens,
            Err(RemoteFailure::EndpointMissing) => {
                if !self.endpoint_missing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        host = %self.host,
                        fallback = self.fallback.name(),
                        "the LLM server has no /tokenize endpoint (404); using the fallback from now on"
                    );
                }
                self.fallback.count(text).await
            }
            Err(RemoteFailure::Other(reason)) => {
                tracing::warn!(
                    host = %self.host,
                    %reason,
                    fallback = self.fallback.name(),
                    "tokenize request failed; using the fallback for this count"
                );
                self.fallback.count(text).await
            }
        }
    }

    fn name(&self) -> &'static str {
        "llama-tokenize"
    }
}
