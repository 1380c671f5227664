//! The chat-completions adapter against the scripted OpenAI-compatible server: the wire
//! protocol, retries and their timings, the overall deadline, the shared FIFO concurrency
//! limit, invalid answers, and that the API key never leaks.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use butler_domain::ports::{LlmClient, LlmError, LlmRequest, RequestOptions};
use butler_domain::prompt::ChatMessage;
use butler_infrastructure::llm::{LlmConcurrency, LlmHttpConfig, OpenAiChatClient, RetryPolicy};
use butler_testkit::llm_server::{ScriptedLlm, Step};
use secrecy::SecretString;
use serde_json::json;

const MODEL: &str = "qwen2.5-7b-instruct";
const KEY: &str = "sk-test-6f1d2c9a-never-show-me";

fn config(base_url: &str) -> LlmHttpConfig {
    let mut config = LlmHttpConfig::new(base_url, MODEL);
    config.request_timeout = Duration::from_secs(10);
    config.retry = RetryPolicy {
        max_retries: 3,
        backoff_base: Duration::from_millis(100),
        backoff_max: Duration::from_millis(400),
    };
    config
}

fn client(config: LlmHttpConfig) -> OpenAiChatClient {
    OpenAiChatClient::new(config).expect("a valid configuration")
}

fn request(text: &str) -> LlmRequest {
    LlmRequest::new(
        vec![
            ChatMessage::system("You are a butler."),
            ChatMessage::user("Good evening"),
            ChatMessage::assistant("Good evening, sir."),
            ChatMessage::user(text),
        ],
        RequestOptions {
            temperature: 0.25,
            max_tokens: 64,
        },
    )
}

/// A port on 127.0.0.1 where nothing listens.
async fn closed_port() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

fn gaps(llm: &ScriptedLlm) -> Vec<Duration> {
    let requests = llm.requests();
    requests
        .windows(2)
        .map(|w| w[1].received_at - w[0].received_at)
        .collect()
}

#[tokio::test]
async fn the_request_carries_model_messages_temperature_and_max_tokens_and_no_key() {
    let llm = ScriptedLlm::start().await;
    llm.push_reply("Tea is served, sir.");
    let reply = client(config(&llm.base_url()))
        .complete(&request("Some tea, please"))
        .await
        .unwrap();
    assert_eq!(reply.text, "Tea is served, sir.");

    let requests = llm.requests();
    assert_eq!(requests.len(), 1);
    let sent = &requests[0];
    assert_eq!(sent.path, "/v1/chat/completions");
    assert_eq!(sent.header("content-type"), Some("application/json"));
    assert_eq!(sent.header("authorization"), None);
    assert_eq!(
        sent.body,
        json!({
            "model": MODEL,
            "messages": [
                {"role": "system", "content": "You are a butler."},
                {"role": "user", "content": "Good evening"},
                {"role": "assistant", "content": "Good evening, sir."},
                {"role": "user", "content": "Some tea, please"}
            ],
            "temperature": 0.25,
            "max_tokens": 64
        })
    );
}

#[tokio::test]
async fn a_configured_key_is_sent_as_a_bearer_token() {
    let llm = ScriptedLlm::start().await;
    let mut config = config(&format!("{}/", llm.base_url()));
    config.api_key = Some(SecretString::from(KEY));
    client(config).complete(&request("hi")).await.unwrap();
    assert_eq!(
        llm.requests()[0].header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
}

#[tokio::test]
async fn usage_figures_reported_by_the_server_are_returned() {
    let llm = ScriptedLlm::start().await;
    llm.push(Step::reply("  Indeed, sir.\n").with_usage(42, 3));
    let reply = client(config(&llm.base_url()))
        .complete(&request("hi"))
        .await
        .unwrap();
    assert_eq!(reply.text, "Indeed, sir.");
    assert_eq!(reply.prompt_tokens, Some(42));
    assert_eq!(reply.completion_tokens, Some(3));
}

#[tokio::test]
async fn a_rate_limited_request_waits_the_retry_after_seconds_then_succeeds() {
    let llm = ScriptedLlm::start().await;
    llm.push(Step::rate_limited(1));
    llm.push_reply("At last, sir.");
    let started = Instant::now();
    let reply = client(config(&llm.base_url()))
        .complete(&request("hi"))
        .await
        .unwrap();
    let elapsed = started.elapsed();
    assert_eq!(reply.text, "At last, sir.");
    let gap = gaps(&llm)[0];
    eprintln!("429 Retry-After: 1 -> retried after {gap:?}, total {elapsed:?}");
    assert!(gap >= Duration::from_secs(1), "{gap:?}");
    // Generous: only a wait far beyond Retry-After is a bug; the exact gap is printed above.
    assert!(gap < Duration::from_secs(5), "{gap:?}");
}

#[tokio::test]
async fn server_errors_are_retried_with_exponential_backoff() {
    let llm = ScriptedLlm::start().await;
    llm.push(Step::server_error());
    llm.push(Step::server_error());
    llm.push(Step::server_error());
    llm.push_reply("Recovered, sir.");
    let started = Instant::now();
    let reply = client(config(&llm.base_url()))
        .complete(&request("hi"))
        .await
        .unwrap();
    assert_eq!(reply.text, "Recovered, sir.");
    let gaps = gaps(&llm);
    eprintln!(
        "500, 500, 500, 200 with base 100 ms, cap 400 ms: gaps {gaps:?}, total {:?}",
        started.elapsed()
    );
    // Equal jitter: each pause is within [nominal/2, nominal] (+ scheduling slack).
    for (gap, nominal_ms) in gaps.iter().zip([100_u64, 200, 400]) {
        let nominal = Duration::from_millis(nominal_ms);
        assert!(*gap >= nominal / 2, "{gap:?} < half of {nominal:?}");
        assert!(*gap < nominal + Duration::from_millis(150), "{gap:?}");
    }
}

#[tokio::test]
async fn retries_stop_after_the_configured_count_with_the_last_status() {
    let llm = ScriptedLlm::start().await;
    llm.set_default(Step::status(503, "model is loading"));
    let mut config = config(&llm.base_url());
    config.retry.max_retries = 2;
    let err = client(config).complete(&request("hi")).await.unwrap_err();
    assert_eq!(llm.request_count(), 3);
    match err {
        LlmError::Status {
            status,
            body_excerpt,
        } => {
            assert_eq!(status, 503);
            assert!(body_excerpt.contains("model is loading"), "{body_excerpt}");
        }
        other => panic!("expected a status error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_bad_request_is_not_retried() {
    let llm = ScriptedLlm::start().await;
    llm.push(Step::status(400, "maximum context length exceeded"));
    let err = client(config(&llm.base_url()))
        .complete(&request("hi"))
        .await
        .unwrap_err();
    assert_eq!(llm.request_count(), 1);
    assert!(
        matches!(err, LlmError::Status { status: 400, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("maximum context length"), "{err}");
}

#[tokio::test]
async fn a_wrong_base_url_is_a_404_and_not_retried() {
    let llm = ScriptedLlm::start().await;
    let base = format!("http://{}", llm.addr()); // forgot the /v1
    let err = client(config(&base))
        .complete(&request("hi"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, LlmError::Status { status: 404, .. }),
        "{err:?}"
    );
    assert_eq!(llm.requests()[0].path, "/chat/completions");
    assert_eq!(llm.request_count(), 1);
}

#[tokio::test]
async fn an_unreachable_server_is_retried_then_reported_unavailable_quickly() {
    let port = closed_port().await;
    let mut config = config(&format!("http://127.0.0.1:{port}/v1"));
    config.retry = RetryPolicy {
        max_retries: 2,
        backoff_base: Duration::from_millis(50),
        backoff_max: Duration::from_millis(100),
    };
    let started = Instant::now();
    let err = client(config).complete(&request("hi")).await.unwrap_err();
    let elapsed = started.elapsed();
    eprintln!("connection refused, 2 retries (base 50 ms): failed after {elapsed:?}: {err}");
    let LlmError::Unavailable { detail } = &err else {
        panic!("expected unavailable, got {err:?}");
    };
    assert!(
        detail.contains(&format!("127.0.0.1:{port}/v1/chat/completions")),
        "{detail}"
    );
    // Two pauses of 25–50 ms and 50–100 ms: never a hang (bounds generous for a loaded
    // machine; the measured time is printed above).
    assert!(elapsed >= Duration::from_millis(75), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
}

#[tokio::test]
async fn a_server_that_comes_up_late_is_reached_by_retrying() {
    let port = closed_port().await;
    let mut config = config(&format!("http://127.0.0.1:{port}/v1"));
    config.retry = RetryPolicy {
        max_retries: 10,
        backoff_base: Duration::from_millis(50),
        backoff_max: Duration::from_millis(100),
    };
    let late = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(250)).await;
        ScriptedLlm::start_on_port(port).await
    });
    let started = Instant::now();
    let reply = client(config).complete(&request("hi")).await.unwrap();
    let elapsed = started.elapsed();
    let llm = late.await.unwrap();
    eprintln!("server up after 250 ms: answered after {elapsed:?}");
    assert_eq!(reply.text, butler_testkit::llm_server::DEFAULT_REPLY);
    assert_eq!(llm.request_count(), 1);
    assert!(elapsed >= Duration::from_millis(250), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
}

#[tokio::test]
async fn a_slow_server_is_cut_off_at_the_overall_deadline() {
    let llm = ScriptedLlm::start().await;
    llm.push(Step::reply("too late").delayed(Duration::from_secs(30)));
    let mut config = config(&llm.base_url());
    config.request_timeout = Duration::from_millis(300);
    let started = Instant::now();
    let err = client(config).complete(&request("hi")).await.unwrap_err();
    let elapsed = started.elapsed();
    eprintln!("server delayed 30 s, deadline 300 ms: timed out after {elapsed:?}");
    assert!(matches!(err, LlmError::Timeout { after } if after == Duration::from_millis(300)));
    assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
    // Far from the server's 30 s: the deadline cut it off (exact time printed above).
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
}

#[tokio::test]
async fn retries_never_run_past_the_overall_deadline() {
    let llm = ScriptedLlm::start().await;
    llm.set_default(Step::server_error().delayed(Duration::from_millis(30)));
    let mut config = config(&llm.base_url());
    config.request_timeout = Duration::from_millis(500);
    config.retry = RetryPolicy {
        max_retries: 1000,
        backoff_base: Duration::from_millis(100),
        backoff_max: Duration::from_millis(100),
    };
    let started = Instant::now();
    let err = client(config).complete(&request("hi")).await.unwrap_err();
    let elapsed = started.elapsed();
    eprintln!(
        "endless 500s, deadline 500 ms: gave up after {elapsed:?} and {} attempts: {err}",
        llm.request_count()
    );
    assert!(
        matches!(
            err,
            LlmError::Status { status: 500, .. } | LlmError::Timeout { .. }
        ),
        "{err:?}"
    );
    // 1000 retries of 100 ms would take 100 s: the deadline stopped them.
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
    assert!(llm.request_count() >= 3);
}

#[tokio::test]
async fn a_retry_after_beyond_the_deadline_fails_at_once_instead_of_sleeping() {
    let llm = ScriptedLlm::start().await;
    llm.push(Step::rate_limited(30));
    let mut config = config(&llm.base_url());
    config.request_timeout = Duration::from_secs(2);
    let started = Instant::now();
    let err = client(config).complete(&request("hi")).await.unwrap_err();
    assert!(
        matches!(err, LlmError::Status { status: 429, .. }),
        "{err:?}"
    );
    // Sleeping would take until the 2 s deadline.
    assert!(started.elapsed() < Duration::from_millis(1500));
    assert_eq!(llm.request_count(), 1);
}

#[tokio::test]
async fn malformed_empty_and_null_completions_are_errors_not_replies() {
    for step in [
        Step::malformed(),
        Step::empty_content(),
        Step::null_content(),
    ] {
        let llm = ScriptedLlm::start().await;
        llm.push(step.clone());
        let err = client(config(&llm.base_url()))
            .complete(&request("hi"))
            .await
            .unwrap_err();
        assert!(
            matches!(err, LlmError::InvalidResponse { .. }),
            "{step:?}: {err:?}"
        );
        assert_eq!(llm.request_count(), 1, "{step:?} must not be retried");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_more_than_the_limit_of_requests_are_in_flight() {
    let llm = ScriptedLlm::start().await;
    llm.set_default(Step::reply("ok").delayed(Duration::from_millis(150)));
    let mut config = config(&llm.base_url());
    config.concurrency = LlmConcurrency::new(NonZeroUsize::new(2).unwrap());
    let client = Arc::new(client(config));
    let started = Instant::now();
    let calls: Vec<_> = (0..6)
        .map(|i| {
            let client = Arc::clone(&client);
            tokio::spawn(async move { client.complete(&request(&format!("q{i}"))).await })
        })
        .collect();
    for call in calls {
        call.await.unwrap().unwrap();
    }
    let elapsed = started.elapsed();
    eprintln!("6 requests of 150 ms, limit 2: {elapsed:?}");
    assert_eq!(llm.max_in_flight(), 2);
    assert!(elapsed >= Duration::from_millis(450), "{elapsed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_sharing_a_limit_queue_behind_each_other() {
    let llm = ScriptedLlm::start().await;
    llm.set_default(Step::reply("ok").delayed(Duration::from_millis(100)));
    let shared = LlmConcurrency::new(NonZeroUsize::MIN);
    let make = || {
        let mut config = config(&llm.base_url());
        config.concurrency = shared.clone();
        Arc::new(client(config))
    };
    let (replies, compression) = (make(), make());
    let a = tokio::spawn(async move { replies.complete(&request("reply")).await });
    let b = tokio::spawn(async move { compression.complete(&request("summarise")).await });
    a.await.unwrap().unwrap();
    b.await.unwrap().unwrap();
    assert_eq!(llm.max_in_flight(), 1);
    assert_eq!(shared.available(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_requests_are_served_in_arrival_order() {
    let llm = ScriptedLlm::start().await;
    llm.set_default(Step::reply("ok").delayed(Duration::from_millis(40)));
    llm.push(Step::reply("first").delayed(Duration::from_millis(300)));
    let mut config = config(&llm.base_url());
    let concurrency = LlmConcurrency::new(NonZeroUsize::MIN);
    config.concurrency = concurrency.clone();
    let client = Arc::new(client(config));
    let mut calls = Vec::new();
    for i in 0..6 {
        let client = Arc::clone(&client);
        calls.push(tokio::spawn(async move {
            client.complete(&request(&format!("q{i}"))).await
        }));
        // Each caller has joined the queue (or reached the server) before the next arrives.
        while concurrency.waiting() + llm.request_count() < i + 1 {
            tokio::task::yield_now().await;
        }
    }
    for call in calls {
        call.await.unwrap().unwrap();
    }
    let order: Vec<String> = llm
        .requests()
        .iter()
        .map(|r| r.last_user_message().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(order, ["q0", "q1", "q2", "q3", "q4", "q5"]);
    assert_eq!(llm.max_in_flight(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_requests_yield_their_places_to_replies() {
    let llm = ScriptedLlm::start().await;
    llm.set_default(Step::reply("ok").delayed(Duration::from_millis(250)));
    let mut config = config(&llm.base_url());
    let concurrency = LlmConcurrency::new(NonZeroUsize::new(2).unwrap());
    config.concurrency = concurrency.clone();
    let client = Arc::new(client(config));
    // Three compressions' calls queue first.
    let mut background = Vec::new();
    for i in 0..3 {
        let client = Arc::clone(&client);
        background.push(tokio::spawn(async move {
            client
                .complete(&request(&format!("summarise {i}")).background())
                .await
        }));
    }
    while llm.request_count() + concurrency.waiting() < 3 {
        tokio::task::yield_now().await;
    }
    // Background work holds at most limit - 1 places: the second place stays free for a reply.
    assert_eq!(concurrency.background_limit(), 1);
    let asked = Instant::now();
    let reply = client.complete(&request("hello")).await.unwrap();
    let waited = asked.elapsed();
    for call in background {
        call.await.unwrap().unwrap();
    }
    let order: Vec<String> = llm
        .requests()
        .iter()
        .map(|r| r.last_user_message().unwrap_or_default().to_owned())
        .collect();
    eprintln!("reply after {waited:?}; order at the server: {order:?}");
    assert_eq!(reply.text, "ok");
    // The reply went second, before the queued background calls (whose order among
    // themselves is not promised: they are woken together and race for the place).
    assert_eq!(order.len(), 4, "{order:?}");
    assert_eq!(
        order[1], "hello",
        "the reply went before the queued background calls"
    );
    let mut background_order = [order[0].clone(), order[2].clone(), order[3].clone()];
    background_order.sort();
    assert_eq!(
        background_order,
        ["summarise 0", "summarise 1", "summarise 2"]
    );
    assert!(waited < Duration::from_millis(500), "{waited:?}");
    assert_eq!(llm.max_in_flight(), 2);
    assert_eq!(concurrency.available(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_waiting_for_a_place_goes_before_background_calls_queued_earlier() {
    let llm = ScriptedLlm::start().await;
    llm.set_default(Step::reply("ok").delayed(Duration::from_millis(100)));
    let mut config = config(&llm.base_url());
    let concurrency = LlmConcurrency::new(NonZeroUsize::MIN);
    config.concurrency = concurrency.clone();
    let client = Arc::new(client(config));
    // A reply holds the only place; two background calls, then a second reply, wait.
    let first = {
        let client = Arc::clone(&client);
        tokio::spawn(async move { client.complete(&request("reply 1")).await })
    };
    while llm.request_count() < 1 {
        tokio::task::yield_now().await;
    }
    let mut calls = Vec::new();
    for text in ["summarise", "extract"] {
        let client = Arc::clone(&client);
        calls.push(tokio::spawn(async move {
            client.complete(&request(text).background()).await
        }));
    }
    while concurrency.waiting() < 2 {
        tokio::task::yield_now().await;
    }
    let second = {
        let client = Arc::clone(&client);
        tokio::spawn(async move { client.complete(&request("reply 2")).await })
    };
    first.await.unwrap().unwrap();
    second.await.unwrap().unwrap();
    for call in calls {
        call.await.unwrap().unwrap();
    }
    let order: Vec<String> = llm
        .requests()
        .iter()
        .map(|r| r.last_user_message().unwrap_or_default().to_owned())
        .collect();
    // Both replies first; the background calls after them, in either order (they are woken
    // together and race for the place).
    assert_eq!(order[..2], ["reply 1", "reply 2"], "{order:?}");
    let mut background_order = order[2..].to_vec();
    background_order.sort();
    assert_eq!(background_order, ["extract", "summarise"]);
    assert_eq!(llm.max_in_flight(), 1);
}

#[tokio::test]
async fn the_key_never_appears_in_errors_or_debug_output() {
    let llm = ScriptedLlm::start().await;
    // A careless server that echoes the credentials it was given.
    llm.push(Step::status(401, &format!("invalid api key: Bearer {KEY}")));
    let mut config = config(&llm.base_url());
    config.api_key = Some(SecretString::from(KEY));
    assert!(!format!("{config:?}").contains(KEY));
    let client = client(config);
    assert!(!format!("{client:?}").contains(KEY));

    let err = client.complete(&request("hi")).await.unwrap_err();
    assert!(
        matches!(err, LlmError::Status { status: 401, .. }),
        "{err:?}"
    );
    let shown = format!("{err} / {err:?}");
    assert!(!shown.contains(KEY), "{shown}");
    assert!(shown.contains("Bearer ***"), "{shown}");

    let port = closed_port().await;
    let mut down = self::config(&format!("http://127.0.0.1:{port}/v1"));
    down.api_key = Some(SecretString::from(KEY));
    down.retry = RetryPolicy::never();
    let err = self::client(down)
        .complete(&request("hi"))
        .await
        .unwrap_err();
    assert!(!format!("{err} / {err:?}").contains(KEY));
}

#[test]
fn an_invalid_base_url_is_refused_at_construction() {
    let err = OpenAiChatClient::new(LlmHttpConfig::new("localhost:8000", MODEL)).unwrap_err();
    assert!(err.to_string().contains("localhost:8000"), "{err}");
}

/// Every event of a stream: the deltas, and the final reply or the error that ended it.
async fn drain(
    mut stream: butler_domain::ports::LlmStream,
) -> (
    Vec<String>,
    Result<butler_domain::ports::LlmReply, LlmError>,
) {
    use butler_domain::ports::StreamEvent;
    use futures::StreamExt as _;
    let mut deltas = Vec::new();
    while let Some(event) = stream.next().await {
        match event {
            Ok(StreamEvent::Delta(text)) => deltas.push(text),
            Ok(StreamEvent::Done(reply)) => return (deltas, Ok(reply)),
            Err(error) => return (deltas, Err(error)),
        }
    }
    (
        deltas,
        Err(LlmError::InvalidResponse {
            detail: "the stream ended without Done".into(),
        }),
    )
}

const STREAMED: &str = "Добрый вечер, сэр. Чай заварен, камин растоплен.";

#[tokio::test]
async fn a_streamed_reply_arrives_in_pieces_that_add_up_to_the_final_text() {
    let llm = ScriptedLlm::start().await;
    llm.push(
        Step::reply(format!("  {STREAMED}\n"))
            .streamed_every(Duration::from_millis(20))
            .with_usage(40, 9),
    );
    let started = Instant::now();
    let stream = client(config(&llm.base_url()))
        .stream(&request("Что нового?"))
        .await
        .unwrap();
    let (deltas, reply) = drain(stream).await;
    let reply = reply.unwrap();
    eprintln!("{} deltas in {:?}", deltas.len(), started.elapsed());
    assert!(deltas.len() > 3, "{deltas:?}");
    assert_eq!(deltas.concat(), reply.text);
    assert_eq!(reply.text, STREAMED, "no leading or trailing whitespace");
    assert_eq!(reply.prompt_tokens, Some(40));
    assert_eq!(reply.completion_tokens, Some(9));
    let body = &llm.requests()[0].body;
    assert_eq!(body["stream"], true);
    assert_eq!(body["stream_options"]["include_usage"], true);
}

#[tokio::test]
async fn a_stream_cut_midway_ends_with_an_error_after_the_text_so_far() {
    let llm = ScriptedLlm::start().await;
    llm.push(
        Step::reply(STREAMED)
            .streamed_every(Duration::from_millis(20))
            .cut_after(3),
    );
    let stream = client(config(&llm.base_url()))
        .stream(&request("Что нового?"))
        .await
        .unwrap();
    let (deltas, end) = drain(stream).await;
    assert!(!deltas.is_empty(), "the first pieces arrived");
    assert!(STREAMED.starts_with(&deltas.concat()));
    let err = end.unwrap_err();
    assert!(matches!(err, LlmError::Unavailable { .. }), "{err:?}");
    assert_eq!(
        llm.request_count(),
        1,
        "nothing is retried once text has arrived"
    );
}

/// A stopped reply (the stop button) drops its stream: the connection closes and the server's
/// generation ends at once, not when the reply would have been complete.
#[tokio::test]
async fn dropping_a_stream_ends_the_servers_generation_at_once() {
    use futures::StreamExt as _;
    let llm = ScriptedLlm::start().await;
    llm.push(Step::reply(STREAMED.repeat(20)).streamed_every(Duration::from_millis(50)));
    let mut stream = client(config(&llm.base_url()))
        .stream(&request("Что нового?"))
        .await
        .unwrap();
    assert!(stream.next().await.is_some(), "the first piece arrived");
    assert_eq!(llm.in_flight(), 1, "the server is generating");
    let dropped = Instant::now();
    drop(stream);
    while llm.in_flight() > 0 {
        assert!(
            dropped.elapsed() < Duration::from_secs(1),
            "the server still generates a second after the drop"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_first_byte_later_than_the_deadline_is_a_timeout() {
    let llm = ScriptedLlm::start().await;
    llm.push(Step::reply(STREAMED).delayed(Duration::from_secs(30)));
    let mut config = config(&llm.base_url());
    config.request_timeout = Duration::from_millis(300);
    let started = Instant::now();
    let err = client(config)
        .stream(&request("Что нового?"))
        .await
        .err()
        .expect("no stream");
    assert!(matches!(err, LlmError::Timeout { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn a_stream_slower_than_the_deadline_stops_at_it() {
    let llm = ScriptedLlm::start().await;
    llm.push(Step::reply(STREAMED).streamed_every(Duration::from_secs(1)));
    let mut config = config(&llm.base_url());
    config.request_timeout = Duration::from_millis(1500);
    let stream = client(config)
        .stream(&request("Что нового?"))
        .await
        .unwrap();
    let (deltas, end) = drain(stream).await;
    assert!(deltas.len() <= 2, "{deltas:?}");
    assert!(matches!(end, Err(LlmError::Timeout { .. })), "{end:?}");
}

#[tokio::test]
async fn a_server_that_ignores_stream_is_streamed_as_one_piece() {
    let llm = ScriptedLlm::start().await;
    llm.ignore_stream();
    llm.push_reply(STREAMED);
    let stream = client(config(&llm.base_url()))
        .stream(&request("Что нового?"))
        .await
        .unwrap();
    let (deltas, reply) = drain(stream).await;
    assert_eq!(deltas, [STREAMED]);
    assert_eq!(reply.unwrap().text, STREAMED);
}

#[tokio::test]
async fn a_stream_is_retried_before_its_first_piece_like_a_completion() {
    let llm = ScriptedLlm::start().await;
    llm.push(Step::server_error());
    llm.push(Step::reply(STREAMED).streamed_every(Duration::from_millis(5)));
    let stream = client(config(&llm.base_url()))
        .stream(&request("Что нового?"))
        .await
        .unwrap();
    let (_, reply) = drain(stream).await;
    assert_eq!(reply.unwrap().text, STREAMED);
    assert_eq!(llm.request_count(), 2);
}

const SCHEMA: &str = r#"{"type":"object","properties":{"facts":{"type":"array","items":{"type":"string"}}},"required":["facts"]}"#;

#[tokio::test]
async fn a_json_request_asks_the_server_for_its_schema_as_response_format() {
    let llm = ScriptedLlm::start().await;
    llm.push_reply(r#"{"facts":["Sister: Anna"]}"#);
    let reply = client(config(&llm.base_url()))
        .complete(&request("facts?").json("facts", SCHEMA))
        .await
        .unwrap();
    assert_eq!(reply.text, r#"{"facts":["Sister: Anna"]}"#);
    assert_eq!(
        llm.requests()[0].body["response_format"],
        json!({"type": "json_schema", "json_schema": {"name": "facts", "schema": serde_json::from_str::<serde_json::Value>(SCHEMA).unwrap()}})
    );
}

#[tokio::test]
async fn a_server_that_rejects_response_format_is_asked_again_without_it_and_remembered() {
    let llm = ScriptedLlm::start().await;
    llm.push(Step::status(400, "unknown parameter: response_format"));
    llm.push_reply("[\"Sister: Anna\"]");
    llm.push_reply("[]");
    llm.push_reply("Good evening, sir.");
    let client = client(config(&llm.base_url()));
    let json = request("facts?").json("facts", SCHEMA);
    assert_eq!(
        client.complete(&json).await.unwrap().text,
        "[\"Sister: Anna\"]"
    );
    assert_eq!(client.complete(&json).await.unwrap().text, "[]");
    client.complete(&request("hello")).await.unwrap();
    let sent: Vec<bool> = llm
        .requests()
        .iter()
        .map(|r| r.body.get("response_format").is_some())
        .collect();
    assert_eq!(
        sent,
        [true, false, false, false],
        "asked with it once, then never again; text requests never carry it"
    );
}

#[tokio::test]
async fn a_client_error_about_something_else_is_not_retried_without_the_format() {
    let llm = ScriptedLlm::start().await;
    llm.push(Step::status(400, "context length exceeded"));
    let result = client(config(&llm.base_url()))
        .complete(&request("facts?").json("facts", SCHEMA))
        .await;
    assert!(
        matches!(result, Err(LlmError::Status { status: 400, .. })),
        "{result:?}"
    );
    assert_eq!(llm.requests().len(), 1);
}
