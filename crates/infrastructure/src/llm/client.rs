//! [`OpenAiChatClient`]: `LlmClient` over `POST {base}/chat/completions` on one server or a
//! pool of them, with the shared retry rules, one overall deadline per call and the shared
//! in-flight limit. A request for JSON of a schema is sent with `response_format`; a server
//! that rejects it (a 4xx naming it) is remembered and asked again, and from then on, without
//! it — the caller's tolerant parser copes with free-form JSON.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use butler_domain::ports::{LlmClient, LlmError, LlmReply, LlmRequest, LlmStream, StreamEvent};
use bytes::Bytes;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use reqwest::Response;
use tokio::time::{timeout_at, Instant};

use super::pool::{Lease, ServerPool};
use super::sse::sse_stream;
use super::wire::{parse_reply, rejects_response_format, ChatRequest};
use super::{LlmConcurrency, LlmHttpConfig};
use crate::http::{CallError, Endpoint, HttpCaller, HttpConfigError};

/// What calls are, in logs and errors.
const WHAT: &str = "chat completion";

/// Chat completions from an OpenAI-compatible server, or from the least loaded healthy one of
/// several (`base_url` lists them separated by commas).
#[derive(Debug, Clone)]
pub struct OpenAiChatClient {
    pool: ServerPool,
    model: String,
    request_timeout: Duration,
    concurrency: LlmConcurrency,
    /// Completion URLs of the servers that rejected `response_format`.
    without_format: Arc<Mutex<HashSet<String>>>,
}

impl OpenAiChatClient {
    /// Builds the client; no request is sent until the first completion.
    ///
    /// # Errors
    /// If a base URL is not an absolute `http(s)` URL (the error names that one), the list has
    /// an empty entry, or TLS cannot be initialised.
    pub fn new(config: LlmHttpConfig) -> Result<Self, HttpConfigError> {
        let mut servers = Vec::new();
        for base_url in config.base_url.split(',').map(str::trim) {
            if base_url.is_empty() {
                return Err(HttpConfigError::InvalidBaseUrl {
                    url: config.base_url.clone(),
                    reason: "an entry of the comma-separated list is empty".to_owned(),
                });
            }
            let endpoint = Endpoint::new(base_url, "chat/completions", config.api_key.clone())?;
            let models = Endpoint::new(base_url, "models", config.api_key.clone())?;
            let caller = HttpCaller::new(WHAT, endpoint, config.connect_timeout, config.retry)?;
            servers.push((caller, models));
        }
        let server_limit = config
            .server_limit
            .map_or(config.concurrency.limit(), std::num::NonZeroUsize::get);
        Ok(Self {
            pool: ServerPool::new(servers, server_limit, config.server_backoff),
            model: config.model,
            request_timeout: config.request_timeout,
            concurrency: config.concurrency,
            without_format: Arc::default(),
        })
    }

    /// The URL completions are posted to (the first server's, in a pool).
    #[must_use]
    pub fn url(&self) -> &str {
        self.pool.caller(0).endpoint().url().as_str()
    }

    /// How many servers completions are spread over.
    #[must_use]
    pub fn servers(&self) -> usize {
        self.pool.len()
    }
}

#[async_trait]
impl LlmClient for OpenAiChatClient {
    async fn complete(&self, request: &LlmRequest) -> Result<LlmReply, LlmError> {
        let started = Instant::now();
        let deadline = started + self.request_timeout;
        let bodies = Bodies::new(ChatRequest::new(&self.model, request))?;
        let permit = self
            .concurrency
            .slot_for(request.priority, deadline, self.request_timeout)
            .await?;
        let queued = started.elapsed();
        let result = match self.post(deadline, &bodies, false).await {
            Err(e) => Err(e),
            Ok((response, lease)) => match timeout_at(deadline, response.bytes()).await {
                Err(_) => Err(CallError::Timeout),
                Ok(Ok(body)) => Ok(body),
                Ok(Err(e)) => Err(CallError::Unavailable(
                    self.pool.caller(lease.index()).describe(&e),
                )),
            },
        };
        drop(permit);

        let reply = result
            .map_err(|e| self.map_error(e))
            .and_then(|body| parse_reply(&body));
        tracing::debug!(
            model = %self.model,
            queued_ms = queued.as_millis(),
            elapsed_ms = started.elapsed().as_millis(),
            ok = reply.is_ok(),
            "chat completion finished"
        );
        reply
    }

    /// `stream: true`: the reply arrives as server-sent events. Connection errors, `429` and
    /// `5xx` are retried before the first byte of the answer, as for [`Self::complete`]; once
    /// text has arrived nothing is retried (the user may already be reading it). A server that
    /// ignores `stream` and answers with one JSON body is streamed as one delta.
    async fn stream(&self, request: &LlmRequest) -> Result<LlmStream, LlmError> {
        let deadline = Instant::now() + self.request_timeout;
        let bodies = Bodies::new(ChatRequest::new(&self.model, request).streaming())?;
        let permit = self
            .concurrency
            .slot_for(request.priority, deadline, self.request_timeout)
            .await?;
        let (response, lease) = self
            .post(deadline, &bodies, true)
            .await
            .map_err(|e| self.map_error(e))?;
        let is_event_stream = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if is_event_stream {
            return Ok(sse_stream(
                response,
                deadline,
                self.request_timeout,
                Box::new((permit, lease)),
            ));
        }
        tracing::debug!(model = %self.model, "the server ignored stream: true; one delta");
        let whole = match timeout_at(deadline, response.bytes()).await {
            Err(_) => return Err(self.timeout()),
            Ok(Err(e)) => {
                return Err(LlmError::Unavailable {
                    detail: self.pool.caller(lease.index()).describe(&e),
                })
            }
            Ok(Ok(body)) => parse_reply(&body)?,
        };
        drop((permit, lease));
        Ok(Box::pin(futures::stream::iter([
            Ok(StreamEvent::Delta(whole.text.clone())),
            Ok(StreamEvent::Done(whole)),
        ])))
    }
}

/// A request's body as JSON, with `response_format` and without.
struct Bodies {
    with_format: Option<Bytes>,
    plain: Bytes,
}

impl Bodies {
    fn new(request: ChatRequest<'_>) -> Result<Self, LlmError> {
        let with_format = if request.has_response_format() {
            Some(encode(&request)?)
        } else {
            None
        };
        Ok(Self {
            with_format,
            plain: encode(&request.without_response_format())?,
        })
    }
}

/// The request body as JSON.
fn encode(request: &ChatRequest<'_>) -> Result<Bytes, LlmError> {
    serde_json::to_vec(request)
        .map(Bytes::from)
        .map_err(|e| LlmError::Rejected {
            detail: format!("cannot encode the request: {e}"),
        })
}

impl OpenAiChatClient {
    /// Sends `bodies` through the pool: with `response_format` to a server not known to reject
    /// it, else without. A server that rejects it is remembered, and the request sent again.
    async fn post(
        &self,
        deadline: Instant,
        bodies: &Bodies,
        event_stream: bool,
    ) -> Result<(Response, Lease), CallError> {
        let known = |url: &str| {
            self.without_format
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .contains(url)
        };
        loop {
            // The server of the last attempt, if that attempt carried `response_format`.
            let formatted_to: Mutex<Option<String>> = Mutex::new(None);
            let result = self
                .pool
                .send(WHAT, deadline, |client, endpoint| {
                    let url = endpoint.url().as_str();
                    let body = match &bodies.with_format {
                        Some(body) if !known(url) => {
                            *formatted_to.lock().unwrap_or_else(PoisonError::into_inner) =
                                Some(url.to_owned());
                            body
                        }
                        _ => {
                            *formatted_to.lock().unwrap_or_else(PoisonError::into_inner) = None;
                            &bodies.plain
                        }
                    };
                    let builder = endpoint
                        .post(client)
                        .header(CONTENT_TYPE, "application/json");
                    let builder = if event_stream {
                        builder.header(ACCEPT, "text/event-stream")
                    } else {
                        builder
                    };
                    builder.body(body.clone())
                })
                .await;
            let rejected = match &result {
                Err(CallError::Status {
                    status,
                    body_excerpt,
                }) if rejects_response_format(*status, body_excerpt) => formatted_to
                    .into_inner()
                    .unwrap_or_else(PoisonError::into_inner),
                _ => None,
            };
            let Some(url) = rejected else {
                return result;
            };
            tracing::info!(
                model = %self.model,
                "the LLM server rejects response_format; asking it without from now on"
            );
            self.without_format
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(url);
        }
    }

    fn timeout(&self) -> LlmError {
        LlmError::Timeout {
            after: self.request_timeout,
        }
    }

    fn map_error(&self, error: CallError) -> LlmError {
        match error {
            CallError::Timeout => self.timeout(),
            CallError::Unavailable(detail) => LlmError::Unavailable { detail },
            CallError::Status {
                status,
                body_excerpt,
            } => LlmError::Status {
                status,
                body_excerpt,
            },
        }
    }
}
