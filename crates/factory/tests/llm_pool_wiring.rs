//! Several LLM servers wired from the settings, as the bot and the memory worker build them:
//! `/readyz` stays up while one server accepts connections, and `/metrics` shows each server by
//! its index — outstanding requests, health, failures — never by its URL. (Its own test binary:
//! the metrics recorder is process-wide.)

use std::collections::HashMap;

use butler_domain::ports::{LlmRequest, RequestOptions};
use butler_domain::prompt::ChatMessage;
use butler_factory::{runtime, wiring, Settings};
use butler_testkit::http::get;
use butler_testkit::llm_server::ScriptedLlm;

fn line_of<'a>(metrics: &'a str, series: &str) -> &'a str {
    metrics
        .lines()
        .find(|l| l.starts_with(series))
        .unwrap_or_else(|| panic!("no {series} in:\n{metrics}"))
}

#[tokio::test]
async fn a_pool_with_one_server_down_is_ready_answers_and_reports_each_server_by_index() {
    let dir = tempfile::tempdir().unwrap();
    let up = ScriptedLlm::start().await;
    let down_port = butler_testkit::services::free_port();
    let metrics_port = butler_testkit::services::free_port();
    let env: HashMap<&str, String> = [
        (
            "SQLITE_PATH",
            dir.path().join("butler.db").display().to_string(),
        ),
        ("METRICS_ADDR", format!("127.0.0.1:{metrics_port}")),
        (
            "LLM_BASE_URL",
            format!("http://127.0.0.1:{down_port}/v1,{}", up.base_url()),
        ),
    ]
    .into();
    let settings = Settings::from_sources(None, |name| env.get(name).cloned()).unwrap();
    let storage = wiring::open_storage(&settings).await.unwrap();
    let llm = wiring::llm_client(&settings).unwrap();
    let server = runtime::start_telemetry(&settings, &storage, None)
        .await
        .unwrap()
        .expect("METRICS_ADDR is set");

    let response = get(server.local_addr(), "/readyz").await;
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
    let json: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(
        json["llm"]["status"], "up",
        "one of two servers is up: {body}"
    );

    // Server 0 refuses connections: the reply comes from server 1, and server 0 is out.
    let reply = llm
        .complete(&LlmRequest::new(
            vec![ChatMessage::user("Good evening")],
            RequestOptions {
                temperature: 0.2,
                max_tokens: 16,
            },
        ))
        .await
        .unwrap();
    assert_eq!(reply.text, butler_testkit::llm_server::DEFAULT_REPLY);
    assert_eq!(up.request_count(), 1);

    let metrics = get(server.local_addr(), "/metrics").await;
    assert!(line_of(&metrics, "llm_server_healthy{server=\"0\"}").ends_with(" 0"));
    assert!(line_of(&metrics, "llm_server_healthy{server=\"1\"}").ends_with(" 1"));
    assert!(line_of(&metrics, "llm_server_failures_total{server=\"0\"}").ends_with(" 1"));
    assert!(line_of(&metrics, "llm_server_failures_total{server=\"1\"}").ends_with(" 0"));
    assert!(line_of(&metrics, "llm_server_outstanding_requests{server=\"1\"}").ends_with(" 0"));
    assert!(
        !metrics.contains(&down_port.to_string()) && !metrics.contains(&up.addr().to_string()),
        "no URL in the metrics"
    );
    let _ = server.shutdown().await;
}
