//! Model downloads against a real local HTTP server (model hubs are out of reach in tests):
//! a whole download verified by SHA-256, a resumed one that asks only for the missing bytes,
//! a corrupt one that is deleted, and a clear message when there is no network.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use butler_infrastructure::llm::models::{sha256_of, DownloadError, ModelSpec, ModelStore};
use sha2::{Digest, Sha256};

/// Serves `body` at `/model.gguf`, honouring `Range: bytes=N-`, and records the Range headers.
struct FileServer {
    addr: SocketAddr,
    ranges: Arc<Mutex<Vec<Option<String>>>>,
}

#[derive(Clone)]
struct Served {
    body: Arc<Vec<u8>>,
    ranges: Arc<Mutex<Vec<Option<String>>>>,
}

async fn serve(State(served): State<Served>, headers: HeaderMap) -> Response {
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    served.ranges.lock().unwrap().push(range.clone());
    let total = served.body.len();
    let start = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse::<usize>().ok());
    match start {
        Some(start) if start < total => (
            StatusCode::PARTIAL_CONTENT,
            [(
                header::CONTENT_RANGE,
                format!("bytes {start}-{}/{total}", total - 1),
            )],
            served.body[start..].to_vec(),
        )
            .into_response(),
        _ => (StatusCode::OK, served.body.as_ref().clone()).into_response(),
    }
}

impl FileServer {
    async fn start(body: Vec<u8>) -> Self {
        let ranges = Arc::new(Mutex::new(Vec::new()));
        let app = Router::new()
            .route("/model.gguf", get(serve))
            .with_state(Served {
                body: Arc::new(body),
                ranges: Arc::clone(&ranges),
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { addr, ranges }
    }

    fn spec(&self, body: &[u8], sha256: Option<String>) -> ModelSpec {
        ModelSpec {
            name: "test-model".to_owned(),
            file_name: "test-model.gguf".to_owned(),
            url: format!("http://{}/model.gguf", self.addr),
            sha256: sha256.unwrap_or_else(|| hex_sha256(body)),
            size: body.len() as u64,
        }
    }

    fn ranges(&self) -> Vec<Option<String>> {
        self.ranges.lock().unwrap().clone()
    }
}

fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn fake_model(len: usize) -> Vec<u8> {
    let mut body = b"GGUF\x03\0\0\0".to_vec();
    body.extend((0..len).map(|i| u8::try_from(i % 251).unwrap()));
    body
}

#[tokio::test]
async fn a_download_lands_verified_in_the_models_directory_and_is_listed() {
    let body = fake_model(300_000);
    let server = FileServer::start(body.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let store = ModelStore::new(dir.path().join("models"));
    let spec = server.spec(&body, None);

    let path = store.pull(&spec).await.unwrap();
    assert_eq!(path, dir.path().join("models/test-model.gguf"));
    assert_eq!(std::fs::read(&path).unwrap(), body);
    assert_eq!(sha256_of(&path).await.unwrap(), spec.sha256);
    let listed = store.list().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].file_name, "test-model.gguf");
    assert_eq!(listed[0].size, body.len() as u64);
    assert!(!listed[0].partial);

    // A second pull finds the verified file and downloads nothing.
    store.pull(&spec).await.unwrap();
    assert_eq!(server.ranges().len(), 1);
}

#[tokio::test]
async fn an_interrupted_download_resumes_from_where_it_stopped() {
    let body = fake_model(500_000);
    let server = FileServer::start(body.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let store = ModelStore::new(dir.path());
    let spec = server.spec(&body, None);
    let have = 123_457;
    std::fs::write(dir.path().join("test-model.gguf.part"), &body[..have]).unwrap();
    assert!(store.list().unwrap()[0].partial, "listed as unfinished");

    let path = store.pull(&spec).await.unwrap();
    assert_eq!(server.ranges(), vec![Some(format!("bytes={have}-"))]);
    assert_eq!(std::fs::read(&path).unwrap(), body);
    assert!(!dir.path().join("test-model.gguf.part").exists());
}

#[tokio::test]
async fn a_download_with_the_wrong_checksum_is_deleted_and_reported() {
    let body = fake_model(10_000);
    let server = FileServer::start(body.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let store = ModelStore::new(dir.path());
    let spec = server.spec(&body, Some("0".repeat(64)));

    let err = store.pull(&spec).await.unwrap_err();
    assert!(matches!(err, DownloadError::Checksum { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("test-model.gguf"), "{text}");
    assert!(text.contains(&hex_sha256(&body)), "{text}");
    assert!(!dir.path().join("test-model.gguf").exists());
    assert!(!dir.path().join("test-model.gguf.part").exists());
}

#[tokio::test]
async fn without_network_the_error_says_where_to_put_the_file_by_hand() {
    // A port that was free a moment ago: nothing listens there.
    let port = butler_testkit::services::free_port();
    let dir = tempfile::tempdir().unwrap();
    let store = ModelStore::new(dir.path());
    let spec = ModelSpec {
        name: "offline".to_owned(),
        file_name: "offline.gguf".to_owned(),
        url: format!("http://127.0.0.1:{port}/offline.gguf"),
        sha256: "ab".repeat(32),
        size: 10,
    };
    let err = store.pull(&spec).await.unwrap_err();
    assert!(matches!(err, DownloadError::Network { .. }), "{err:?}");
    let text = err.to_string();
    for needle in [
        "offline.gguf",
        "LLM_GGUF_PATH",
        "LLM_BASE_URL",
        &"ab".repeat(32),
        &dir.path().display().to_string(),
    ] {
        assert!(text.contains(needle), "{needle:?} missing from: {text}");
    }
}
