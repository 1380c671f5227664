//! [`ScriptedLlm`]: a real OpenAI-compatible chat server on 127.0.0.1 with scripted answers,
//! for adapter tests (retries, deadlines, concurrency, streaming) and the bot's end-to-end
//! tests. It speaks HTTP like vLLM or Ollama would, so the production client is exercised
//! unchanged: a request with `"stream": true` gets server-sent events, one word per event
//! (paced with [`Step::streamed_every`]), usage in the last chunk, then `data: [DONE]`.
//! `GET /v1/models` answers like a real server, for health probes (counted, not recorded), or
//! with a chosen error status ([`ScriptedLlm::set_models_status`]).
//! Dropping the server closes its open connections too, like a crashed process: requests in
//! flight fail and keep-alive connections do not outlive it.
//!
//! ```no_run
//! # async fn demo() {
//! use std::time::Duration;
//! use butler_testkit::llm_server::{ScriptedLlm, Step};
//!
//! let llm = ScriptedLlm::start().await;
//! llm.push(Step::rate_limited(1));
//! llm.push(Step::reply("Добрый вечер, сэр.").delayed(Duration::from_millis(50)));
//! // point the client at llm.base_url() …
//! assert_eq!(llm.requests().len(), 0);
//! # }
//! ```

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use butler_domain::ports::{LlmRequest, RequestOptions};
use butler_domain::{ChatMessage, ChatRole};
use serde_json::{json, Value};
use tokio::task::JoinHandle;

use crate::oracle::OracleLlm;

/// What the server does with one request: wait `delay`, then answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    delay: Duration,
    answer: Answer,
}

#[derive(Debug, Clone, PartialEq)]
enum Answer {
    Completion {
        content: Option<String>,
        usage: Option<(u32, u32)>,
        /// Pause before each streamed piece.
        every: Duration,
        /// Streamed pieces sent before the connection is cut (no finish, no `[DONE]`).
        cut_after: Option<usize>,
    },
    Raw {
        status: u16,
        content_type: &'static str,
        body: String,
        retry_after: Option<String>,
    },
}

impl Step {
    /// A successful completion whose text is `text`.
    #[must_use]
    pub fn reply(text: impl Into<String>) -> Self {
        Self::answer(Answer::Completion {
            content: Some(text.into()),
            usage: None,
            every: Duration::ZERO,
            cut_after: None,
        })
    }

    /// A well-formed completion with empty text (`""`), which clients must treat as an error.
    #[must_use]
    pub fn empty_content() -> Self {
        Self::answer(Answer::Completion {
            content: Some(String::new()),
            usage: None,
            every: Duration::ZERO,
            cut_after: None,
        })
    }

    /// A well-formed completion whose `content` is `null` (what tool-call answers look like).
    #[must_use]
    pub fn null_content() -> Self {
        Self::answer(Answer::Completion {
            content: None,
            usage: None,
            every: Duration::ZERO,
            cut_after: None,
        })
    }

    /// `status` with an OpenAI-style JSON error body carrying `message`.
    #[must_use]
    pub fn status(status: u16, message: &str) -> Self {
        let body = json!({"error": {"message": message, "type": "scripted_error"}}).to_string();
        Self::raw(status, "application/json", body)
    }

    /// `429 Too Many Requests` with `Retry-After: <seconds>`.
    #[must_use]
    pub fn rate_limited(retry_after_secs: u64) -> Self {
        Self::status(429, "rate limited").with_header_retry_after(retry_after_secs.to_string())
    }

    /// `500 Internal Server Error`.
    #[must_use]
    pub fn server_error() -> Self {
        Self::status(500, "scripted internal error")
    }

    /// `200 OK` whose body is not JSON at all.
    #[must_use]
    pub fn malformed() -> Self {
        Self::raw(200, "application/json", "{\"choices\": [".to_owned())
    }

    /// Any status, content type and body, verbatim.
    #[must_use]
    pub fn raw(status: u16, content_type: &'static str, body: impl Into<String>) -> Self {
        Self::answer(Answer::Raw {
            status,
            content_type,
            body: body.into(),
            retry_after: None,
        })
    }

    /// The same answer, sent after `delay`.
    #[must_use]
    pub const fn delayed(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Adds `usage` figures to a completion (ignored for other answers).
    #[must_use]
    pub fn with_usage(mut self, prompt_tokens: u32, completion_tokens: u32) -> Self {
        if let Answer::Completion { usage, .. } = &mut self.answer {
            *usage = Some((prompt_tokens, completion_tokens));
        }
        self
    }

    /// When streamed, waits `every` before each piece (a model generating at that pace).
    #[must_use]
    pub fn streamed_every(mut self, pause: Duration) -> Self {
        if let Answer::Completion { every, .. } = &mut self.answer {
            *every = pause;
        }
        self
    }

    /// When streamed, cuts the connection after `pieces` pieces: no finish, no `[DONE]`.
    #[must_use]
    pub fn cut_after(mut self, pieces: usize) -> Self {
        if let Answer::Completion { cut_after, .. } = &mut self.answer {
            *cut_after = Some(pieces);
        }
        self
    }

    /// Adds a `Retry-After` header with any value (seconds or an HTTP date) to a raw answer.
    #[must_use]
    pub fn with_header_retry_after(mut self, value: impl Into<String>) -> Self {
        if let Answer::Raw { retry_after, .. } = &mut self.answer {
            *retry_after = Some(value.into());
        }
        self
    }

    const fn answer(answer: Answer) -> Self {
        Self {
            delay: Duration::ZERO,
            answer,
        }
    }

    fn into_response(self, model: &str, id: usize) -> Response {
        match self.answer {
            Answer::Completion { content, usage, .. } => {
                let mut body = json!({
                    "id": format!("chatcmpl-scripted-{id}"),
                    "object": "chat.completion",
                    "created": 0,
                    "model": model,
                    "choices": [{
                        "index": 0,
                        "message": {"role": "assistant", "content": content},
                        "finish_reason": "stop"
                    }]
                });
                if let Some((prompt, completion)) = usage {
                    body["usage"] = json!({
                        "prompt_tokens": prompt,
                        "completion_tokens": completion,
                        "total_tokens": prompt + completion
                    });
                }
                (
                    [(header::CONTENT_TYPE, "application/json")],
                    body.to_string(),
                )
                    .into_response()
            }
            Answer::Raw {
                status,
                content_type,
                body,
                retry_after,
            } => {
                let status =
                    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                let mut response =
                    (status, [(header::CONTENT_TYPE, content_type)], body).into_response();
                if let Some(value) = retry_after.and_then(|v| HeaderValue::from_str(&v).ok()) {
                    response.headers_mut().insert(header::RETRY_AFTER, value);
                }
                response
            }
        }
    }
}

/// The pieces a streamed completion sends: words with their following whitespace.
fn pieces(text: &str) -> Vec<String> {
    text.split_inclusive(char::is_whitespace)
        .map(str::to_owned)
        .collect()
}

/// A completion as server-sent events, paced, possibly cut; `in_flight` lives as long as the
/// body does.
fn streamed(step: Step, model: &str, id: usize, in_flight: InFlightOwned) -> Response {
    let Answer::Completion {
        content,
        usage,
        every,
        cut_after,
    } = step.answer
    else {
        return step.into_response(model, id);
    };
    let chunk = |delta: Value, finish: Option<&str>| {
        json!({
            "id": format!("chatcmpl-scripted-{id}"),
            "object": "chat.completion.chunk",
            "created": 0,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]
        })
    };
    let mut events: Vec<(Duration, Result<String, ()>)> = vec![(
        Duration::ZERO,
        Ok(chunk(json!({"role": "assistant"}), None).to_string()),
    )];
    let pieces = content.as_deref().map(pieces).unwrap_or_default();
    for (index, piece) in pieces.into_iter().enumerate() {
        if cut_after == Some(index) {
            events.push((every, Err(())));
            break;
        }
        events.push((
            every,
            Ok(chunk(json!({"content": piece}), None).to_string()),
        ));
    }
    if cut_after.is_none_or(|c| c >= events.len()) {
        let mut last = chunk(json!({}), Some("stop"));
        if let Some((prompt, completion)) = usage {
            last["usage"] = json!({
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion
            });
        }
        events.push((Duration::ZERO, Ok(last.to_string())));
        events.push((Duration::ZERO, Ok("[DONE]".to_owned())));
    }
    // Events with no pause before them go out in one write with the event before them, as a
    // server that has several tokens ready at once sends them: a stream answered "at once"
    // then costs the benchmark one write, not one per word.
    let mut groups: Vec<(Duration, Result<String, ()>)> = Vec::new();
    for (pause, event) in events {
        match (groups.last_mut(), event) {
            (Some((_, Ok(body))), Ok(data)) if pause.is_zero() => {
                body.push_str(&format!("data: {data}\n\n"));
            }
            (_, Ok(data)) => groups.push((pause, Ok(format!("data: {data}\n\n")))),
            (_, Err(())) => groups.push((pause, Err(()))),
        }
    }
    let stream = futures::stream::unfold(
        (groups.into_iter(), in_flight),
        |(mut groups, in_flight)| async move {
            let (pause, group) = groups.next()?;
            // A zero pause must not wait for the timer's next tick (about a millisecond).
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
            let item = match group {
                Ok(body) => Ok(Bytes::from(body)),
                Err(()) => Err(std::io::Error::other("scripted cut")),
            };
            Some((item, (groups, in_flight)))
        },
    );
    (
        [(header::CONTENT_TYPE, "text/event-stream")],
        axum::body::Body::from_stream(stream),
    )
        .into_response()
}

/// One request as the server received it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// The request path, e.g. `/v1/chat/completions`.
    pub path: String,
    /// Headers, names lower-case, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The body parsed as JSON (`Value::Null` if it was not JSON).
    pub body: Value,
    /// The body as received (multipart uploads, malformed JSON).
    pub raw_body: Vec<u8>,
    /// When it arrived.
    pub received_at: Instant,
}

impl RecordedRequest {
    /// The first value of header `name` (case-insensitive).
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The `content` of the last message with role `user`, if any.
    #[must_use]
    pub fn last_user_message(&self) -> Option<&str> {
        self.body["messages"]
            .as_array()?
            .iter()
            .rev()
            .find(|m| m["role"] == "user")?["content"]
            .as_str()
    }
}

#[derive(Debug)]
struct Shared {
    script: Mutex<VecDeque<Step>>,
    routes: Mutex<Vec<(String, Step)>>,
    default: Mutex<Step>,
    requests: Mutex<Vec<RecordedRequest>>,
    /// `false` = requests are counted but not kept (long benchmark runs).
    recording: AtomicBool,
    /// Answer `"stream": true` with one JSON body, like a server that does not stream.
    ignore_stream: AtomicBool,
    served: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    /// `GET /v1/models` requests answered.
    model_lists: AtomicUsize,
    /// The status `GET /v1/models` answers with (`200` with the list, else an error body).
    models_status: AtomicU16,
    /// Answers what no route or queued step answers, instead of the default step.
    oracle: Mutex<Option<Arc<OracleLlm>>>,
    /// Answers what no route or queued step answers with `prefix` + the last user message,
    /// after `delay` (tests that match each reply to its message).
    echo: Mutex<Option<(String, Duration)>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A test that panicked while holding the lock must not hide the state from the next one.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Counts a request as in flight until its handler ends — including when the client gives
/// up and the handler future is dropped mid-delay.
struct InFlight<'a>(&'a Shared);

/// [`InFlight`] for a streamed body, which outlives the handler.
struct InFlightOwned(Arc<Shared>);

impl InFlightOwned {
    fn enter(shared: &Arc<Shared>) -> Self {
        let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        shared.max_in_flight.fetch_max(now, Ordering::SeqCst);
        Self(Arc::clone(shared))
    }
}

impl Drop for InFlightOwned {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl<'a> InFlight<'a> {
    fn enter(shared: &'a Shared) -> Self {
        let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        shared.max_in_flight.fetch_max(now, Ordering::SeqCst);
        Self(shared)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A scripted OpenAI-compatible chat server. Answers `POST /v1/chat/completions` with the
/// queued [`Step`]s in order, then with the default step (a fixed reply). Any other path is
/// recorded and answered `404`. Stops when dropped.
#[derive(Debug)]
pub struct ScriptedLlm {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

/// The default reply, when nothing is scripted.
pub const DEFAULT_REPLY: &str = "Certainly, sir.";

impl ScriptedLlm {
    /// Starts the server on 127.0.0.1 and a free port.
    ///
    /// # Panics
    /// If the loopback interface cannot be bound (no test could run then).
    pub async fn start() -> Self {
        Self::start_on_port(0).await
    }

    /// Starts the server on 127.0.0.1:`port` (0 = any free port) — for tests of a server that
    /// comes up late or comes back after an outage.
    ///
    /// # Panics
    /// If the port cannot be bound.
    pub async fn start_on_port(port: u16) -> Self {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind 127.0.0.1 for the scripted LLM");
        let addr = listener
            .local_addr()
            .expect("local address of a bound listener");
        let shared = Arc::new(Shared {
            script: Mutex::new(VecDeque::new()),
            routes: Mutex::new(Vec::new()),
            default: Mutex::new(Step::reply(DEFAULT_REPLY)),
            requests: Mutex::new(Vec::new()),
            recording: AtomicBool::new(true),
            ignore_stream: AtomicBool::new(false),
            served: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            model_lists: AtomicUsize::new(0),
            models_status: AtomicU16::new(200),
            oracle: Mutex::new(None),
            echo: Mutex::new(None),
        });
        let app = Router::new()
            .route("/v1/chat/completions", post(chat_completions))
            .route("/v1/models", get(models))
            .fallback(not_found)
            .with_state(Arc::clone(&shared));
        let server = tokio::spawn(serve(listener, app));
        Self {
            addr,
            shared,
            server,
        }
    }

    /// Answers every request no route or queued step answers with `prefix` followed by the
    /// request's last user message, after `delay`: each reply names the message it answers.
    pub fn echo(&self, prefix: &str, delay: Duration) {
        *lock(&self.shared.echo) = Some((prefix.to_owned(), delay));
    }

    /// Lets `oracle` answer every request no route or queued step answers (instead of the
    /// default step): a real `butler-bot` process then gets the oracle's extractions,
    /// summaries and answers over HTTP.
    pub fn answer_with_oracle(&self, oracle: OracleLlm) {
        *lock(&self.shared.oracle) = Some(Arc::new(oracle));
    }

    /// The API root to configure clients with: `http://127.0.0.1:<port>/v1`.
    #[must_use]
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// The address the server listens on.
    #[must_use]
    pub const fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Queues a completion with `text`.
    pub fn push_reply(&self, text: &str) {
        self.push(Step::reply(text));
    }

    /// Queues a step; steps are consumed in order, one per request.
    pub fn push(&self, step: Step) {
        lock(&self.shared.script).push_back(step);
    }

    /// Answers every request in which some message's content contains `needle` with `step`,
    /// ahead of the queue (which such requests leave untouched) — e.g. the summariser's
    /// requests, told apart by its instructions, while replies keep taking queued steps.
    pub fn route(&self, needle: impl Into<String>, step: Step) {
        lock(&self.shared.routes).push((needle.into(), step));
    }

    /// What to answer once the queue is empty.
    pub fn set_default(&self, step: Step) {
        *lock(&self.shared.default) = step;
    }

    /// Shorthand for `set_default(Step::reply(text))`.
    pub fn set_default_reply(&self, text: &str) {
        self.set_default(Step::reply(text));
    }

    /// `false` stops keeping requests ([`ScriptedLlm::requests`] stays as it is) while
    /// [`ScriptedLlm::served`] still counts them: a benchmark sending hundreds of thousands
    /// of prompts neither grows the server's memory nor pays for parsing them twice.
    pub fn set_recording(&self, on: bool) {
        self.shared.recording.store(on, Ordering::SeqCst);
    }

    /// Chat completions answered so far, recorded or not.
    #[must_use]
    pub fn served(&self) -> usize {
        self.shared.served.load(Ordering::SeqCst)
    }

    /// Answers streamed requests with one JSON body, like a server that ignores `stream`.
    pub fn ignore_stream(&self) {
        self.shared.ignore_stream.store(true, Ordering::SeqCst);
    }

    /// Every request received so far, in arrival order.
    #[must_use]
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.requests).clone()
    }

    /// How many requests arrived so far.
    #[must_use]
    pub fn request_count(&self) -> usize {
        lock(&self.shared.requests).len()
    }

    /// Requests being handled right now.
    #[must_use]
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::SeqCst)
    }

    /// The most requests ever handled at the same time.
    #[must_use]
    pub fn max_in_flight(&self) -> usize {
        self.shared.max_in_flight.load(Ordering::SeqCst)
    }

    /// `GET /v1/models` requests answered (health probes).
    #[must_use]
    pub fn model_lists(&self) -> usize {
        self.shared.model_lists.load(Ordering::SeqCst)
    }

    /// From now on `GET /v1/models` answers `status` (e.g. `404` like a wrong base path behind
    /// a proxy, `401` like a gateway that wants a key); `200` restores the model list.
    pub fn set_models_status(&self, status: u16) {
        self.shared.models_status.store(status, Ordering::SeqCst);
    }

    /// Waits until at least `count` requests arrived, polling every 5 ms.
    ///
    /// # Panics
    /// If they did not arrive within `timeout`.
    pub async fn wait_for_requests(&self, count: usize, timeout: Duration) {
        let start = Instant::now();
        while self.request_count() < count {
            assert!(
                start.elapsed() < timeout,
                "expected {count} requests within {timeout:?}, got {}",
                self.request_count()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// Accepts connections and serves each in a task of one set, so aborting this future (when
/// the server is dropped) closes every connection with it.
async fn serve(listener: tokio::net::TcpListener, app: Router) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let tcp = match listener.accept().await {
            Ok((tcp, _)) => tcp,
            Err(e) => {
                eprintln!("scripted LLM server: accept failed: {e}");
                continue;
            }
        };
        // Streamed answers are many small writes: without TCP_NODELAY, Nagle's algorithm and
        // the client's delayed ACK hold each one back for about 40 ms.
        let _ = tcp.set_nodelay(true);
        while connections.try_join_next().is_some() {}
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        connections.spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                .await;
        });
    }
}

async fn models(State(shared): State<Arc<Shared>>) -> Response {
    shared.model_lists.fetch_add(1, Ordering::SeqCst);
    let status = shared.models_status.load(Ordering::SeqCst);
    if status != 200 {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = json!({"error": {"message": "scripted models error", "type": "scripted_error"}});
        return (status, axum::Json(body)).into_response();
    }
    (
        [(header::CONTENT_TYPE, "application/json")],
        json!({"object": "list", "data": [{"id": "scripted", "object": "model"}]}).to_string(),
    )
        .into_response()
}

impl Drop for ScriptedLlm {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn record(shared: &Shared, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> usize {
    let mut requests = lock(&shared.requests);
    requests.push(RecordedRequest {
        path: uri.path().to_owned(),
        headers: headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: serde_json::from_slice(body).unwrap_or(Value::Null),
        raw_body: body.to_vec(),
        received_at: Instant::now(),
    });
    requests.len()
}

async fn chat_completions(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let _in_flight = InFlight::enter(&shared);
    let served = shared.served.fetch_add(1, Ordering::SeqCst) + 1;
    let id = if shared.recording.load(Ordering::SeqCst) {
        record(&shared, &uri, &headers, &body)
    } else {
        served
    };
    let parsed = serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null);
    let model = parsed["model"].as_str().unwrap_or_default().to_owned();
    let queued = routed(&shared, &parsed).or_else(|| lock(&shared.script).pop_front());
    let oracle = lock(&shared.oracle).clone();
    let echo = lock(&shared.echo).clone();
    let step = match (queued, oracle, echo) {
        (Some(step), _, _) => step,
        (None, Some(oracle), _) => Step::reply(oracle.answer(&chat_request(&parsed)).await),
        (None, None, Some((prefix, delay))) => {
            let last = chat_request(&parsed)
                .messages
                .iter()
                .rev()
                .find(|m| m.role == ChatRole::User)
                .map(|m| m.content.clone())
                .unwrap_or_default();
            Step::reply(format!("{prefix}{last}")).delayed(delay)
        }
        (None, None, None) => lock(&shared.default).clone(),
    };
    if !step.delay.is_zero() {
        tokio::time::sleep(step.delay).await;
    }
    let wants_stream = parsed["stream"].as_bool() == Some(true);
    if wants_stream && !shared.ignore_stream.load(Ordering::SeqCst) {
        return streamed(step, &model, id, InFlightOwned::enter(&shared));
    }
    step.into_response(&model, id)
}

/// The chat messages of an OpenAI request body, as the oracle reads them.
fn chat_request(body: &Value) -> LlmRequest {
    let messages = body["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| {
            let content = m["content"].as_str()?;
            Some(match m["role"].as_str()? {
                "system" => ChatMessage::system(content),
                "assistant" => ChatMessage::assistant(content),
                _ => ChatMessage::user(content),
            })
        })
        .collect();
    LlmRequest::new(messages, RequestOptions::default())
}

/// The step of the first route whose needle occurs in a message of `body`.
fn routed(shared: &Shared, body: &Value) -> Option<Step> {
    let contents: Vec<&str> = body["messages"]
        .as_array()?
        .iter()
        .filter_map(|m| m["content"].as_str())
        .collect();
    lock(&shared.routes)
        .iter()
        .find(|(needle, _)| contents.iter().any(|c| c.contains(needle.as_str())))
        .map(|(_, step)| step.clone())
}

async fn not_found(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    record(&shared, &uri, &headers, &body);
    (
        StatusCode::NOT_FOUND,
        format!("no route for {}", uri.path()),
    )
        .into_response()
}
