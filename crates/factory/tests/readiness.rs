//! `/readyz` with the embedded engine (the default): the model is loaded before the listener
//! starts, so the LLM is reported up — it used to say "LLM_BASE_URL not set" and down.

use std::collections::HashMap;

use butler_factory::{runtime, wiring, Settings};
use butler_testkit::http::get;

#[tokio::test]
async fn readiness_reports_the_embedded_engine_as_up() {
    let dir = std::env::temp_dir().join(format!("butler-readiness-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let port = butler_testkit::services::free_port();
    let env: HashMap<&str, String> = [
        ("SQLITE_PATH", dir.join("butler.db").display().to_string()),
        ("METRICS_ADDR", format!("127.0.0.1:{port}")),
    ]
    .into();
    let settings = Settings::from_sources(None, |name| env.get(name).cloned()).unwrap();
    let storage = wiring::open_storage(&settings).await.unwrap();
    let server = runtime::start_telemetry(&settings, &storage, None)
        .await
        .unwrap()
        .expect("METRICS_ADDR is set");
    let response = get(server.local_addr(), "/readyz").await;
    assert!(
        response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200"),
        "{response}"
    );
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
    let json: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(json["llm"]["status"], "up", "{body}");
    assert_eq!(json["storage"]["status"], "up", "{body}");
    let _ = server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
