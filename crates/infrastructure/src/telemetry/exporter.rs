//! The Prometheus recorder and the telemetry listener: `/metrics`, `/healthz` and `/readyz`
//! served from one address (`METRICS_ADDR`) by the bot and by the worker.
//!
//! The recorder can be built without installing it globally, so tests (many per process) each
//! scrape their own registry through [`metrics::with_local_recorder`].

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{
    BuildError, Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::metrics::{
    describe_all, register_all, FIRST_TOKEN_BUCKETS, LLM_DURATION_BUCKETS,
    LLM_REQUEST_DURATION_SECONDS, LLM_TIME_TO_FIRST_TOKEN_SECONDS, PERSONALIZED_PROMPT_FACTS,
    PERSONALIZED_PROMPT_TOKENS, PROMPT_FACTS_BUCKETS, PROMPT_TOKEN_BUCKETS, REMINDER_LAG_BUCKETS,
    REMINDER_LAG_SECONDS, STT_DURATION_BUCKETS, STT_REQUEST_DURATION_SECONDS,
};

/// How long `/readyz` waits for the probe before it reports the service not ready.
pub const READINESS_TIMEOUT: Duration = Duration::from_secs(5);

/// How often histogram samples are folded into their buckets when nobody scrapes, so memory
/// stays bounded between scrapes.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// The content type of the Prometheus text exposition format.
const EXPOSITION_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Why telemetry could not start or stop.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The recorder configuration was rejected (e.g. empty buckets).
    #[error("prometheus recorder: {0}")]
    Recorder(#[from] BuildError),
    /// A global recorder was already installed in this process.
    #[error("a global metrics recorder is already installed")]
    AlreadyInstalled,
    /// The listener could not bind.
    #[error("telemetry listener: cannot bind {addr}: {source}")]
    Bind {
        /// The address from `METRICS_ADDR`.
        addr: SocketAddr,
        /// The underlying error.
        source: io::Error,
    },
    /// The listener failed while serving.
    #[error("telemetry listener on {addr}: {source}")]
    Serve {
        /// The bound address.
        addr: SocketAddr,
        /// The underlying error.
        source: io::Error,
    },
    /// The listener task panicked or was cancelled.
    #[error("telemetry listener on {addr}: task ended abnormally")]
    Task {
        /// The bound address.
        addr: SocketAddr,
    },
}

/// The state of one dependency, as `/readyz` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ComponentStatus {
    /// Reachable.
    Up,
    /// Unreachable; `reason` names what failed (host, operation) — never a secret.
    Down {
        /// Why, for operators.
        reason: String,
    },
}

impl ComponentStatus {
    /// A `Down` status with the given reason.
    #[must_use]
    pub fn down(reason: impl Into<String>) -> Self {
        Self::Down {
            reason: reason.into(),
        }
    }

    /// Whether the dependency is reachable.
    #[must_use]
    pub const fn is_up(&self) -> bool {
        matches!(self, Self::Up)
    }

    fn to_json(&self) -> serde_json::Value {
        match self {
            Self::Up => serde_json::json!({ "status": "up" }),
            Self::Down { reason } => serde_json::json!({ "status": "down", "reason": reason }),
        }
    }
}

/// What a readiness check found. Storage decides readiness (the butler cannot remember
/// without it); the LLM is reported but does not fail the check, because replies degrade to
/// the fallback answer rather than stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    /// The profile and memory store.
    pub storage: ComponentStatus,
    /// The language model endpoint.
    pub llm: ComponentStatus,
    /// Telegram updates received and not yet answered (the bot's inbox), when this process
    /// has one and it could be counted: a backlog that keeps growing means the replicas do
    /// not keep up.
    pub inbox_backlog: Option<u64>,
}

impl Readiness {
    /// Ready when storage is reachable.
    #[must_use]
    pub const fn is_ready(&self) -> bool {
        self.storage.is_up()
    }
}

/// Checks the dependencies for `/readyz`. Implemented by the factory (which knows the
/// repositories and the LLM client); any `Fn() -> impl Future<Output = Readiness>` closure
/// implements it too. Implementations should be quick; `/readyz` gives up after
/// [`READINESS_TIMEOUT`].
#[async_trait]
pub trait ReadinessProbe: Send + Sync {
    /// Probe storage and the LLM.
    async fn check(&self) -> Readiness;
}

#[async_trait]
impl<F, Fut> ReadinessProbe for F
where
    F: Fn() -> Fut + Send + Sync,
    Fut: Future<Output = Readiness> + Send,
{
    async fn check(&self) -> Readiness {
        self().await
    }
}

/// The recorder configuration: explicit buckets per histogram, so every histogram is exported
/// as a Prometheus histogram (not a summary) and `histogram_quantile` works across instances.
///
/// # Errors
/// If a bucket list is empty (a programming error caught by the tests).
pub fn recorder_builder() -> Result<PrometheusBuilder, TelemetryError> {
    Ok(PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(PERSONALIZED_PROMPT_TOKENS.to_owned()),
            PROMPT_TOKEN_BUCKETS,
        )?
        .set_buckets_for_metric(
            Matcher::Full(LLM_REQUEST_DURATION_SECONDS.to_owned()),
            LLM_DURATION_BUCKETS,
        )?
        .set_buckets_for_metric(
            Matcher::Full(LLM_TIME_TO_FIRST_TOKEN_SECONDS.to_owned()),
            FIRST_TOKEN_BUCKETS,
        )?
        .set_buckets_for_metric(
            Matcher::Full(STT_REQUEST_DURATION_SECONDS.to_owned()),
            STT_DURATION_BUCKETS,
        )?
        .set_buckets_for_metric(
            Matcher::Full(PERSONALIZED_PROMPT_FACTS.to_owned()),
            PROMPT_FACTS_BUCKETS,
        )?
        .set_buckets_for_metric(
            Matcher::Full(REMINDER_LAG_SECONDS.to_owned()),
            REMINDER_LAG_BUCKETS,
        )?)
}

/// Builds a recorder with every metric described and registered, without installing it.
/// Use it with [`metrics::with_local_recorder`] in tests; [`install_recorder`] for services.
///
/// # Errors
/// See [`recorder_builder`].
pub fn build_recorder() -> Result<PrometheusRecorder, TelemetryError> {
    let recorder = recorder_builder()?.build_recorder();
    metrics::with_local_recorder(&recorder, || {
        describe_all();
        register_all();
    });
    Ok(recorder)
}

/// Builds the recorder, installs it as the process-wide recorder and returns the handle that
/// renders `/metrics`. Call once at start-up, before any metric is recorded.
///
/// # Errors
/// [`TelemetryError::AlreadyInstalled`] on a second call in one process.
pub fn install_recorder() -> Result<PrometheusHandle, TelemetryError> {
    let recorder = build_recorder()?;
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).map_err(|_| TelemetryError::AlreadyInstalled)?;
    Ok(handle)
}

#[derive(Clone)]
struct AppState {
    metrics: PrometheusHandle,
    probe: Arc<dyn ReadinessProbe>,
}

/// The running telemetry listener. Dropping it stops the listener; [`Self::shutdown`] also
/// waits for it.
#[derive(Debug)]
pub struct TelemetryServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<io::Result<()>>,
}

impl TelemetryServer {
    /// Binds `addr` (port 0 picks a free port) and serves `/metrics` from `metrics`,
    /// `/healthz`, and `/readyz` from `probe`.
    ///
    /// # Errors
    /// [`TelemetryError::Bind`] when the address is taken or invalid.
    pub async fn start(
        addr: SocketAddr,
        metrics: PrometheusHandle,
        probe: Arc<dyn ReadinessProbe>,
    ) -> Result<Self, TelemetryError> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| TelemetryError::Bind { addr, source })?;
        let bound = listener
            .local_addr()
            .map_err(|source| TelemetryError::Bind { addr, source })?;
        let upkeep_handle = metrics.clone();
        let app = router(AppState { metrics, probe });
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let upkeep = async move {
                let mut tick = tokio::time::interval(UPKEEP_INTERVAL);
                loop {
                    tick.tick().await;
                    upkeep_handle.run_upkeep();
                }
            };
            // A dropped sender also resolves `stopped`, so dropping the server stops it.
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = stopped.await;
            });
            tokio::select! {
                result = serve => result,
                () = upkeep => Ok(()),
            }
        });
        tracing::info!(addr = %bound, "telemetry listener started");
        Ok(Self {
            addr: bound,
            stop: Some(stop),
            task,
        })
    }

    /// The bound address (useful with port 0).
    #[must_use]
    pub const fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting connections, lets in-flight requests finish, and waits for the task.
    ///
    /// # Errors
    /// If the listener failed while serving or its task panicked.
    pub async fn shutdown(mut self) -> Result<(), TelemetryError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let addr = self.addr;
        match (&mut self.task).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(source)) => Err(TelemetryError::Serve { addr, source }),
            Err(_) => Err(TelemetryError::Task { addr }),
        }
    }
}

fn router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics_endpoint))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz_endpoint))
        .with_state(state)
}

async fn metrics_endpoint(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, EXPOSITION_CONTENT_TYPE)],
        state.metrics.render(),
    )
}

async fn readyz_endpoint(State(state): State<AppState>) -> impl IntoResponse {
    let readiness = tokio::time::timeout(READINESS_TIMEOUT, state.probe.check())
        .await
        .unwrap_or_else(|_| Readiness {
            storage: ComponentStatus::down("readiness probe timed out"),
            llm: ComponentStatus::down("readiness probe timed out"),
            inbox_backlog: None,
        });
    let ready = readiness.is_ready();
    let mut body = serde_json::json!({
        "status": if ready { "ready" } else { "not_ready" },
        "storage": readiness.storage.to_json(),
        "llm": readiness.llm.to_json(),
    });
    if let Some(backlog) = readiness.inbox_backlog {
        body["inbox"] = serde_json::json!({ "backlog": backlog });
    }
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    if !ready {
        tracing::warn!(storage = ?readiness.storage, llm = ?readiness.llm, "not ready");
    }
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
}
