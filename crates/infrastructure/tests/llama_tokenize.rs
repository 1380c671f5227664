//! The `/tokenize` adapter against a tiny llama.cpp-style server started in the test.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use butler_domain::ports::TokenCounter;
use butler_infrastructure::tokens::{LlamaTokenizeCounter, TokenizeEndpointError};

/// The fallback's answer: unmistakably not what any server below returns.
const FALLBACK_COUNT: usize = 777;

struct FixedFallback;

#[async_trait]
impl TokenCounter for FixedFallback {
    async fn count(&self, _text: &str) -> usize {
        FALLBACK_COUNT
    }

    fn name(&self) -> &'static str {
        "fixed-fallback"
    }
}

/// How the fake server answers `POST /tokenize`.
#[derive(Clone, Copy)]
enum Behaviour {
    /// One token id per whitespace-separated word, llama.cpp's shape.
    WordsAsTokens,
    /// `{"tokens": [{"id": 1, "piece": "…"}, …]}`, as with `with_pieces: true`.
    TokensWithPieces,
    Status(StatusCode),
    Malformed,
    Slow(Duration),
}

#[derive(Clone)]
struct Server {
    behaviour: Behaviour,
    hits: Arc<AtomicUsize>,
    bodies: Arc<Mutex<Vec<serde_json::Value>>>,
}

async fn tokenize(State(server): State<Server>, body: String) -> Response {
    server.hits.fetch_add(1, Ordering::SeqCst);
    let body: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    let words = body["content"]
        .as_str()
        .unwrap_or_default()
        .split_whitespace()
        .count();
    server.bodies.lock().unwrap().push(body);
    let json = |value: serde_json::Value| {
        ([("content-type", "application/json")], value.to_string()).into_response()
    };
    match server.behaviour {
        Behaviour::WordsAsTokens => json(serde_json::json!({ "tokens": vec![42; words] })),
        Behaviour::TokensWithPieces => json(serde_json::json!({
            "tokens": vec![serde_json::json!({"id": 42, "piece": "x"}); words]
        })),
        Behaviour::Status(status) => (status, "nope").into_response(),
        Behaviour::Malformed => json(serde_json::json!({ "token_count": words })),
        Behaviour::Slow(delay) => {
            tokio::time::sleep(delay).await;
            json(serde_json::json!({ "tokens": vec![42; words] }))
        }
    }
}

/// Starts the fake server on a free loopback port; it lives as long as the test's runtime.
async fn spawn_server(behaviour: Behaviour) -> (String, Server) {
    let server = Server {
        behaviour,
        hits: Arc::default(),
        bodies: Arc::default(),
    };
    let app = Router::new()
        .route("/tokenize", post(tokenize))
        .with_state(server.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, server)
}

fn counter(base: &str, timeout: Duration) -> LlamaTokenizeCounter {
    LlamaTokenizeCounter::new(base, timeout, Arc::new(FixedFallback)).unwrap()
}

#[tokio::test]
async fn counts_come_from_the_servers_tokenize_endpoint() {
    let (base, server) = spawn_server(Behaviour::WordsAsTokens).await;
    let counter = counter(&base, Duration::from_secs(2));
    assert_eq!(counter.count("добрый вечер, сэр").await, 3);
    assert_eq!(counter.name(), "llama-tokenize");
    let bodies = server.bodies.lock().unwrap();
    assert_eq!(bodies[0]["content"], "добрый вечер, сэр");
    assert_eq!(
        bodies[0]["add_special"], false,
        "the text alone, without BOS"
    );
}

#[tokio::test]
async fn token_objects_with_pieces_are_counted_too() {
    let (base, _server) = spawn_server(Behaviour::TokensWithPieces).await;
    assert_eq!(
        counter(&base, Duration::from_secs(2))
            .count("one two")
            .await,
        2
    );
}

#[tokio::test]
async fn an_openai_style_base_url_ending_in_v1_reaches_the_root_tokenize_endpoint() {
    let (base, server) = spawn_server(Behaviour::WordsAsTokens).await;
    let counter = counter(&format!("{base}/v1/"), Duration::from_secs(2));
    assert_eq!(counter.count("a b c d").await, 4);
    assert_eq!(server.hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_missing_endpoint_is_remembered_and_never_asked_again() {
    let (base, server) = spawn_server(Behaviour::Status(StatusCode::NOT_FOUND)).await;
    let counter = counter(&base, Duration::from_secs(2));
    for _ in 0..3 {
        assert_eq!(counter.count("hello there").await, FALLBACK_COUNT);
    }
    assert!(counter.endpoint_missing());
    assert_eq!(server.hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_server_error_falls_back_for_that_count_but_the_endpoint_is_asked_again() {
    let (base, server) = spawn_server(Behaviour::Status(StatusCode::INTERNAL_SERVER_ERROR)).await;
    let counter = counter(&base, Duration::from_secs(2));
    assert_eq!(counter.count("hello").await, FALLBACK_COUNT);
    assert_eq!(counter.count("hello").await, FALLBACK_COUNT);
    assert!(!counter.endpoint_missing());
    assert_eq!(server.hits.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_malformed_response_falls_back_to_the_estimate() {
    let (base, _server) = spawn_server(Behaviour::Malformed).await;
    assert_eq!(
        counter(&base, Duration::from_secs(2)).count("hello").await,
        FALLBACK_COUNT
    );
}

#[tokio::test]
async fn a_slow_server_falls_back_within_the_timeout() {
    let (base, _server) = spawn_server(Behaviour::Slow(Duration::from_secs(10))).await;
    let counter = counter(&base, Duration::from_millis(300));
    let started = Instant::now();
    assert_eq!(counter.count("hello").await, FALLBACK_COUNT);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_server_that_is_not_running_falls_back_quickly() {
    // Bind then drop: a loopback port with nobody listening.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let counter = counter(&format!("http://127.0.0.1:{port}"), Duration::from_secs(1));
    let started = Instant::now();
    assert_eq!(counter.count("hello").await, FALLBACK_COUNT);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_base_url_that_is_not_http_is_rejected_naming_the_setting() {
    let error = LlamaTokenizeCounter::new(
        "localhost:8080",
        Duration::from_secs(1),
        Arc::new(FixedFallback),
    )
    .unwrap_err();
    assert!(
        matches!(error, TokenizeEndpointError::BadUrl(_)),
        "{error:?}"
    );
    assert!(error.to_string().contains("TOKENIZER_URL"), "{error}");
}
