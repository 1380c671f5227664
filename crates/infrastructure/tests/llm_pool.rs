//! The chat-completions client over several scripted OpenAI-compatible servers (a comma-separated
//! `base_url`): least-outstanding routing within each server's limit, failover when a server
//! fails or is killed mid-load, its return after the back-off and a probe that answers 2xx (and
//! only such a probe), "all down" failing as one server always did, and streams that fail over
//! only before their first delta.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use butler_domain::ports::{LlmClient, LlmError, LlmRequest, RequestOptions, StreamEvent};
use butler_domain::prompt::ChatMessage;
use butler_infrastructure::llm::{
    LlmConcurrency, LlmHttpConfig, OpenAiChatClient, RetryPolicy, ServerBackoff,
};
use butler_testkit::llm_server::{ScriptedLlm, Step, DEFAULT_REPLY};
use futures::StreamExt as _;

const MODEL: &str = "qwen2.5-7b-instruct";

/// A client of `servers`, at most `per_server` requests on each, a short back-off.
fn pool(servers: &[&ScriptedLlm], per_server: usize) -> Arc<OpenAiChatClient> {
    let urls: Vec<String> = servers.iter().map(|s| s.base_url()).collect();
    pool_of(&urls.join(","), per_server)
}

fn pool_of(base_url: &str, per_server: usize) -> Arc<OpenAiChatClient> {
    let servers = base_url.split(',').count();
    let mut config = LlmHttpConfig::new(base_url, MODEL);
    config.request_timeout = Duration::from_secs(10);
    config.retry = RetryPolicy {
        max_retries: 3,
        backoff_base: Duration::from_millis(50),
        backoff_max: Duration::from_millis(200),
    };
    config.concurrency = LlmConcurrency::new(NonZeroUsize::new(per_server * servers).unwrap());
    config.server_limit = NonZeroUsize::new(per_server);
    config.server_backoff = ServerBackoff {
        first: Duration::from_millis(200),
        max: Duration::from_millis(800),
    };
    Arc::new(OpenAiChatClient::new(config).expect("a valid configuration"))
}

fn request(text: &str) -> LlmRequest {
    LlmRequest::new(
        vec![
            ChatMessage::system("You are a butler."),
            ChatMessage::user(text),
        ],
        RequestOptions {
            temperature: 0.2,
            max_tokens: 32,
        },
    )
}

/// `count` completions at once; every result.
async fn concurrently(
    client: &Arc<OpenAiChatClient>,
    count: usize,
) -> Vec<Result<String, LlmError>> {
    let calls: Vec<_> = (0..count)
        .map(|i| {
            let client = Arc::clone(client);
            tokio::spawn(async move {
                client
                    .complete(&request(&format!("q{i}")))
                    .await
                    .map(|r| r.text)
            })
        })
        .collect();
    let mut results = Vec::new();
    for call in calls {
        results.push(call.await.expect("the call task"));
    }
    results
}

/// A port on 127.0.0.1 where nothing listens.
async fn closed_port() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_go_to_the_least_loaded_server_within_its_limit() {
    let (a, b) = (ScriptedLlm::start().await, ScriptedLlm::start().await);
    for server in [&a, &b] {
        server.set_default(Step::reply("ok").delayed(Duration::from_millis(150)));
    }
    let client = pool(&[&a, &b], 2);
    let started = Instant::now();
    let results = concurrently(&client, 8).await;
    let elapsed = started.elapsed();
    eprintln!(
        "8 requests of 150 ms, 2 servers × 2: {elapsed:?}; served {} + {}",
        a.served(),
        b.served()
    );
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!((a.served(), b.served()), (4, 4));
    assert_eq!((a.max_in_flight(), b.max_in_flight()), (2, 2));
    // Two rounds of four, not four rounds of two.
    assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
    assert!(elapsed < Duration::from_millis(600), "{elapsed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_mid_load_costs_no_reply_while_the_other_is_up() {
    let a = ScriptedLlm::start().await;
    let mut b = Some(ScriptedLlm::start().await);
    for server in [Some(&a), b.as_ref()].into_iter().flatten() {
        server.set_default(Step::reply("ok").delayed(Duration::from_millis(80)));
    }
    let client = pool(&[&a, b.as_ref().unwrap()], 4);
    let mut calls = Vec::new();
    let mut killed_in_flight = 0;
    for i in 0..60 {
        let client = Arc::clone(&client);
        calls.push(tokio::spawn(async move {
            client.complete(&request(&format!("q{i}"))).await
        }));
        tokio::time::sleep(Duration::from_millis(10)).await;
        if i == 20 {
            // Killed mid-load, with requests in flight on it and keep-alive connections open.
            let killed = b.take().unwrap();
            killed_in_flight = killed.in_flight();
            drop(killed);
        }
    }
    let mut failures = Vec::new();
    for call in calls {
        if let Err(e) = call.await.unwrap() {
            failures.push(e);
        }
    }
    eprintln!(
        "60 requests, server 1 killed after 20 with {killed_in_flight} in flight: \
         {} failed; server 0 served {}",
        failures.len(),
        a.served()
    );
    assert!(killed_in_flight > 0, "server 1 had work when it was killed");
    assert!(failures.is_empty(), "{failures:?}");
    assert!(a.served() >= 40, "server 0 took over: {}", a.served());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_comes_back_rejoins_after_its_back_off_and_a_probe() {
    let a = ScriptedLlm::start().await;
    let b = ScriptedLlm::start().await;
    let port = b.addr().port();
    let client = pool(&[&a, &b], 4);
    drop(b);
    // The first request finds server 1 dead (it is the least loaded after server 0 is busy)
    // and fails over; the rest go to server 0 while server 1 is out.
    a.set_default(Step::reply("ok").delayed(Duration::from_millis(50)));
    let results = concurrently(&client, 6).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(a.served(), 6);

    let b = ScriptedLlm::start_on_port(port).await;
    b.set_default(Step::reply("ok").delayed(Duration::from_millis(50)));
    // After the back-off (200 ms) the next request starts a probe; once it answers, server 1
    // takes requests again.
    tokio::time::sleep(Duration::from_millis(250)).await;
    let started = Instant::now();
    while b.served() == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "server 1 never rejoined (probes: {})",
            b.model_lists()
        );
        let results = concurrently(&client, 4).await;
        assert!(results.iter().all(Result::is_ok), "{results:?}");
    }
    eprintln!(
        "server 1 rejoined {:?} after its back-off; {} probe(s)",
        started.elapsed(),
        b.model_lists()
    );
    assert!(
        b.model_lists() >= 1,
        "it was probed before it took requests"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_2xx_answer_to_its_probe_brings_a_server_back_into_the_pool() {
    // 404: a wrong base path behind a proxy; 401: a gateway that wants a key. Neither server
    // can answer a completion, so neither may take requests again.
    for status in [404, 401] {
        let (a, b) = (ScriptedLlm::start().await, ScriptedLlm::start().await);
        b.set_default(Step::server_error());
        // `b` first: the first request goes to it, fails and moves to `a`.
        let client = pool(&[&b, &a], 2);
        client.complete(&request("hi")).await.unwrap();
        assert_eq!(
            b.request_count(),
            1,
            "the failing server failed once and is out"
        );

        b.set_models_status(status);
        b.set_default(Step::status(status, "not here"));
        let started = Instant::now();
        // Each probe that fails doubles the back-off (200 ms, 400 ms): two of them prove the
        // first one did not bring the server back.
        while b.model_lists() < 2 {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "the failing server was not probed twice (probes: {})",
                b.model_lists()
            );
            let results = concurrently(&client, 4).await;
            assert!(
                results.iter().all(Result::is_ok),
                "a server answering {status} to its probe took requests: {results:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            b.request_count(),
            1,
            "after probes answered {status}, the failing server got no completion"
        );
    }
}

#[tokio::test]
async fn when_every_server_is_down_the_call_fails_as_with_one_server() {
    let (p, q) = (closed_port().await, closed_port().await);
    let client = pool_of(
        &format!("http://127.0.0.1:{p}/v1,http://127.0.0.1:{q}/v1"),
        2,
    );
    let started = Instant::now();
    let err = client.complete(&request("hi")).await.unwrap_err();
    let elapsed = started.elapsed();
    eprintln!("both servers down: failed after {elapsed:?}: {err}");
    assert!(matches!(err, LlmError::Unavailable { .. }), "{err:?}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    // And again, now that both are out of the pool: still tried, still an error.
    let err = client.complete(&request("hi")).await.unwrap_err();
    assert!(matches!(err, LlmError::Unavailable { .. }), "{err:?}");
}

#[tokio::test]
async fn a_server_error_fails_over_to_the_other_server_at_once() {
    let (a, b) = (ScriptedLlm::start().await, ScriptedLlm::start().await);
    a.set_default(Step::server_error());
    let client = pool(&[&a, &b], 2);
    let reply = client.complete(&request("hi")).await.unwrap();
    assert_eq!(reply.text, DEFAULT_REPLY);
    assert_eq!((a.request_count(), b.request_count()), (1, 1));
    // Server 0 is out now: the next request goes straight to server 1.
    client.complete(&request("again")).await.unwrap();
    assert_eq!((a.request_count(), b.request_count()), (1, 2));
}

/// The deltas of a stream, and how it ended.
async fn drain(client: &OpenAiChatClient) -> (Vec<String>, Result<String, LlmError>) {
    let mut stream = match client.stream(&request("stream")).await {
        Ok(stream) => stream,
        Err(e) => return (Vec::new(), Err(e)),
    };
    let mut deltas = Vec::new();
    while let Some(event) = stream.next().await {
        match event {
            Ok(StreamEvent::Delta(text)) => deltas.push(text),
            Ok(StreamEvent::Done(reply)) => return (deltas, Ok(reply.text)),
            Err(e) => return (deltas, Err(e)),
        }
    }
    (
        deltas,
        Err(LlmError::Rejected {
            detail: "the stream ended without Done".to_owned(),
        }),
    )
}

#[tokio::test]
async fn a_stream_fails_over_before_its_first_delta_but_not_after() {
    let (a, b) = (ScriptedLlm::start().await, ScriptedLlm::start().await);
    a.push(Step::server_error());
    let client = pool(&[&a, &b], 2);
    let (deltas, done) = drain(&client).await;
    assert_eq!(done.unwrap(), DEFAULT_REPLY);
    assert_eq!(deltas.concat(), DEFAULT_REPLY);
    assert_eq!((a.request_count(), b.request_count()), (1, 1));

    // A stream cut after its first words is not retried anywhere: the user saw them.
    let (c, d) = (ScriptedLlm::start().await, ScriptedLlm::start().await);
    c.push(
        Step::reply("Very good, sir, at once.")
            .streamed_every(Duration::from_millis(20))
            .cut_after(2),
    );
    let client = pool(&[&c, &d], 2);
    let (deltas, done) = drain(&client).await;
    assert!(!deltas.is_empty());
    assert!(
        matches!(done, Err(LlmError::Unavailable { .. })),
        "{done:?}"
    );
    assert_eq!((c.request_count(), d.request_count()), (1, 0));
}

#[test]
fn one_bad_url_in_the_list_is_named_without_its_credentials() {
    let err = OpenAiChatClient::new(LlmHttpConfig::new(
        "http://127.0.0.1:8000/v1, localhost:8001",
        MODEL,
    ))
    .unwrap_err();
    assert!(err.to_string().contains("\"localhost:8001\""), "{err}");
    let err = OpenAiChatClient::new(LlmHttpConfig::new(
        "http://127.0.0.1:8000/v1,ftp://user:secret@host/v1",
        MODEL,
    ))
    .unwrap_err();
    assert!(!err.to_string().contains("secret"), "{err}");
    let err =
        OpenAiChatClient::new(LlmHttpConfig::new("http://127.0.0.1:8000/v1,,", MODEL)).unwrap_err();
    assert!(err.to_string().contains("empty"), "{err}");
}
