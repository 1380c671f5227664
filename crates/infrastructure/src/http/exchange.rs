//! One HTTP call with retries inside an overall deadline. The adapters build the request and
//! parse a successful body; everything between — connect errors, status classification,
//! `Retry-After`, backoff, the deadline — happens here once.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::RETRY_AFTER;
use reqwest::{Client, RequestBuilder, Response, StatusCode, Url};
use secrecy::{ExposeSecret, SecretString};
use tokio::time::{sleep, timeout_at, Instant};

use super::excerpt::body_excerpt;
use super::retry::{parse_retry_after, RetryPolicy};

/// Error bodies are read up to this many bytes; an excerpt needs far less.
const ERROR_BODY_LIMIT: usize = 16 * 1024;

/// An adapter could not be built from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum HttpConfigError {
    /// The base URL is not an absolute `http(s)` URL.
    #[error("invalid base URL {url:?}: {reason}")]
    InvalidBaseUrl {
        /// The configured value.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The HTTP client could not be initialised (TLS setup).
    #[error("cannot initialise the HTTP client: {0}")]
    Client(String),
}

/// Where requests go and how they authenticate.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    url: Url,
    api_key: Option<SecretString>,
}

impl Endpoint {
    /// `{base_url}/{path}`, whether or not `base_url` ends with a slash.
    pub(crate) fn new(
        base_url: &str,
        path: &str,
        api_key: Option<SecretString>,
    ) -> Result<Self, HttpConfigError> {
        let invalid = |reason: &str| HttpConfigError::InvalidBaseUrl {
            url: without_credentials(base_url),
            reason: reason.to_owned(),
        };
        let joined = format!("{}/{path}", base_url.trim_end_matches('/'));
        let url = Url::parse(&joined).map_err(|e| invalid(&e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid("the scheme must be http or https"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid(
                "credentials do not belong in the URL; configure the API key instead",
            ));
        }
        Ok(Self { url, api_key })
    }

    /// The full URL requests are sent to.
    pub(crate) fn url(&self) -> &Url {
        &self.url
    }

    /// `GET` the endpoint, with the bearer key when one is configured.
    pub(crate) fn get(&self, client: &Client) -> RequestBuilder {
        self.authorised(client.get(self.url.clone()))
    }

    /// `POST` to the endpoint, with the bearer key when one is configured.
    pub(crate) fn post(&self, client: &Client) -> RequestBuilder {
        self.authorised(client.post(self.url.clone()))
    }

    fn authorised(&self, request: RequestBuilder) -> RequestBuilder {
        match &self.api_key {
            Some(key) => request.bearer_auth(key.expose_secret()),
            None => request,
        }
    }
}

/// `base_url` with any `user:password@` replaced by `***@`, so an error about a URL that
/// carries credentials does not repeat them.
fn without_credentials(base_url: &str) -> String {
    match (base_url.find("://"), base_url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}***@{}", &base_url[..scheme_end + 3], &base_url[at + 1..])
        }
        _ => base_url.to_owned(),
    }
}

/// Why a call failed, before the adapter maps it onto its port's error type.
#[derive(Debug)]
pub(crate) enum CallError {
    /// The overall deadline passed.
    Timeout,
    /// The server could not be reached (or the connection broke).
    Unavailable(String),
    /// The server answered with a non-success status.
    Status { status: u16, body_excerpt: String },
}

/// How one attempt ended, and what the retry loop does next.
pub(crate) enum Attempt<T> {
    /// Done: the loop returns it.
    Success(T),
    /// A transient failure: retried after `retry_after` (or the policy's backoff) while
    /// retries and the deadline allow.
    Retryable {
        error: CallError,
        retry_after: Option<Duration>,
    },
    /// The server failed and another one is ready: the next attempt goes there at once and
    /// does not count as a retry. Whoever returns this must take the failed server out of the
    /// choice, so failovers end when the servers do.
    Failover(CallError),
    /// A failure retrying cannot fix.
    Fatal(CallError),
}

/// Sends requests to one endpoint with the shared retry rules.
#[derive(Debug, Clone)]
pub(crate) struct HttpCaller {
    client: Client,
    endpoint: Endpoint,
    policy: RetryPolicy,
    /// What is being called, for logs and error messages (`chat completion`, `transcription`).
    what: &'static str,
}

impl HttpCaller {
    pub(crate) fn new(
        what: &'static str,
        endpoint: Endpoint,
        connect_timeout: Duration,
        policy: RetryPolicy,
    ) -> Result<Self, HttpConfigError> {
        let client = Client::builder()
            .use_rustls_tls()
            .connect_timeout(connect_timeout)
            .build()
            .map_err(|e| HttpConfigError::Client(e.without_url().to_string()))?;
        Ok(Self {
            client,
            endpoint,
            policy,
            what,
        })
    }

    pub(crate) fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Sends the request `build` makes (once per attempt) until it succeeds, fails for good,
    /// runs out of retries, or `deadline` passes. Returns the body of the successful response.
    pub(crate) async fn call<F>(&self, deadline: Instant, build: F) -> Result<Bytes, CallError>
    where
        F: Fn(&Client, &Endpoint) -> RequestBuilder,
    {
        let response = self.call_response(deadline, build).await?;
        match timeout_at(deadline, response.bytes()).await {
            Err(_) => Err(CallError::Timeout),
            Ok(Ok(body)) => Ok(body),
            Ok(Err(e)) => Err(CallError::Unavailable(self.describe(&e))),
        }
    }

    /// As [`Self::call`], but returns the successful response with its body unread (a stream
    /// the caller reads within the same deadline). Retries happen only before a success status.
    pub(crate) async fn call_response<F>(
        &self,
        deadline: Instant,
        build: F,
    ) -> Result<Response, CallError>
    where
        F: Fn(&Client, &Endpoint) -> RequestBuilder,
    {
        with_retries(self.what, self.policy, deadline, || {
            self.attempt(build(&self.client, &self.endpoint))
        })
        .await
    }

    /// The retry policy calls through this caller follow.
    pub(crate) const fn policy(&self) -> RetryPolicy {
        self.policy
    }

    /// The HTTP client (connection pool) of this caller, to build requests for
    /// [`Self::attempt`].
    pub(crate) const fn client(&self) -> &Client {
        &self.client
    }

    /// `GET` `endpoint` once, within `timeout`: the status the server answered with. For
    /// health probes: no retries, the body is not read.
    pub(crate) async fn status_of(
        &self,
        endpoint: &Endpoint,
        timeout: Duration,
    ) -> Result<StatusCode, CallError> {
        match tokio::time::timeout(timeout, endpoint.get(&self.client).send()).await {
            Err(_) => Err(CallError::Timeout),
            Ok(Err(e)) => Err(CallError::Unavailable(self.describe(&e))),
            Ok(Ok(response)) => Ok(response.status()),
        }
    }

    /// Sends `request` once and classifies the outcome: success, a failure worth retrying
    /// (connection errors, `429`, `5xx`), or a failure that is final.
    pub(crate) async fn attempt(&self, request: RequestBuilder) -> Attempt<Response> {
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) => {
                let error = CallError::Unavailable(self.describe(&e));
                // Without a client-wide timeout, `is_timeout` can only be the connect timeout.
                return if e.is_connect() || e.is_timeout() {
                    Attempt::Retryable {
                        error,
                        retry_after: None,
                    }
                } else {
                    Attempt::Fatal(error)
                };
            }
        };
        let status = response.status();
        if status.is_success() {
            return Attempt::Success(response);
        }
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let body = read_prefix(response, ERROR_BODY_LIMIT).await;
        let error = CallError::Status {
            status: status.as_u16(),
            body_excerpt: body_excerpt(&body, self.endpoint.api_key.as_ref()),
        };
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            Attempt::Retryable { error, retry_after }
        } else {
            Attempt::Fatal(error)
        }
    }

    /// `POST host:port/path: cause: cause…` — the URL holds no secrets (the key travels in a
    /// header and credentials in URLs are refused), the chain names the real cause.
    pub(crate) fn describe(&self, error: &reqwest::Error) -> String {
        let url = &self.endpoint.url;
        let mut text = format!(
            "{} POST {}:{}{}",
            self.what,
            url.host_str().unwrap_or("?"),
            url.port_or_known_default().unwrap_or(0),
            url.path()
        );
        let mut cause: Option<&dyn std::error::Error> = Some(error);
        while let Some(current) = cause {
            let mut message = current.to_string();
            // reqwest appends " for url (…)"; the prefix above already names the endpoint.
            if let Some(e_url) = current
                .downcast_ref::<reqwest::Error>()
                .and_then(reqwest::Error::url)
            {
                message = message.replace(&format!(" for url ({e_url})"), "");
            }
            if !text.ends_with(&message) {
                text.push_str(": ");
                text.push_str(&message);
            }
            cause = current.source();
        }
        text
    }
}

/// The retry loop every call runs: `attempt` (one per try, which may go to a different
/// server each time) until it succeeds, fails for good, runs out of retries, or `deadline`
/// passes. A pause that would end after the deadline is not taken; the last error is returned.
pub(crate) async fn with_retries<T, F, Fut>(
    what: &'static str,
    policy: RetryPolicy,
    deadline: Instant,
    mut attempt: F,
) -> Result<T, CallError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Attempt<T>>,
{
    let mut retry = 0;
    loop {
        let Ok(outcome) = timeout_at(deadline, attempt()).await else {
            return Err(CallError::Timeout);
        };
        let (error, retry_after) = match outcome {
            Attempt::Success(done) => return Ok(done),
            Attempt::Fatal(error) => return Err(error),
            Attempt::Failover(error) => {
                tracing::warn!(what, error = ?error, "trying another server after a failure");
                continue;
            }
            Attempt::Retryable { error, retry_after } => (error, retry_after),
        };
        if retry >= policy.max_retries {
            return Err(error);
        }
        let pause = retry_after.unwrap_or_else(|| policy.backoff(retry));
        if Instant::now() + pause >= deadline {
            tracing::warn!(
                what,
                pause_ms = pause.as_millis(),
                "giving up: the next retry would start after the deadline"
            );
            return Err(error);
        }
        retry += 1;
        tracing::warn!(
            what,
            retry,
            pause_ms = pause.as_millis(),
            error = ?error,
            "retrying after a transient failure"
        );
        sleep(pause).await;
    }
}

/// Up to `limit` bytes of the body; a broken body yields what arrived.
async fn read_prefix(mut response: Response, limit: usize) -> Vec<u8> {
    let mut body = Vec::new();
    while body.len() < limit {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    body.truncate(limit);
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_join_with_or_without_a_trailing_slash() {
        for base in ["http://127.0.0.1:8000/v1", "http://127.0.0.1:8000/v1/"] {
            let endpoint = Endpoint::new(base, "chat/completions", None).unwrap();
            assert_eq!(
                endpoint.url().as_str(),
                "http://127.0.0.1:8000/v1/chat/completions"
            );
        }
    }

    #[test]
    fn a_refused_base_url_with_credentials_is_quoted_without_them() {
        let err = Endpoint::new("http://user:hunter2@host/v1", "x", None).unwrap_err();
        let shown = err.to_string();
        assert!(
            !shown.contains("hunter2") && !shown.contains("user"),
            "{shown}"
        );
        assert!(shown.contains("http://***@host/v1"), "{shown}");
    }

    #[test]
    fn a_base_url_with_credentials_or_another_scheme_is_refused() {
        for base in ["ftp://host/v1", "http://user:pw@host/v1", "not a url"] {
            assert!(Endpoint::new(base, "x", None).is_err(), "{base}");
        }
    }
}
