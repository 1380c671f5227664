//! Process-level set-up shared by the binaries: logging, the metrics/health listener, and the
//! shutdown signal (SIGINT or SIGTERM).

use std::sync::Arc;
use std::time::Duration;

use butler_domain::ports::{ProfilePage, UpdateInbox};
use butler_infrastructure::telemetry::exporter::{
    install_recorder, ComponentStatus, Readiness, ReadinessProbe, TelemetryServer,
};
use butler_infrastructure::telemetry::logging::{self, LogConfig, LogFormat};
use tokio_util::sync::CancellationToken;

use crate::settings::{self, LlmBackend, Settings};
use crate::wiring::Storage;

/// Installs the tracing subscriber (`LOG_FORMAT`, `RUST_LOG`; logs go to stderr).
///
/// # Errors
/// A message naming the bad variable.
pub fn init_logging(settings: &Settings) -> Result<(), String> {
    init_logging_with(settings, false)
}

/// As [`init_logging`]; with `quiet`, warnings only unless `RUST_LOG` says otherwise (the
/// terminal chat shares the terminal with its logs).
///
/// # Errors
/// A message naming the bad variable.
pub fn init_logging_with(settings: &Settings, quiet: bool) -> Result<(), String> {
    let mut config = LogConfig::from_env().map_err(|e| e.to_string())?;
    if quiet && std::env::var_os(logging::LOG_FILTER_VAR).is_none_or(|v| v.is_empty()) {
        logging::QUIET_FILTER.clone_into(&mut config.filter);
    }
    config.format = match settings.log_format {
        settings::LogFormat::Json => LogFormat::Json,
        settings::LogFormat::Pretty => LogFormat::Pretty,
    };
    logging::init(&config).map_err(|e| e.to_string())
}

/// How readiness checks the language model.
enum LlmProbe {
    /// The embedded engine: the model is loaded before the listener starts, so it is ready.
    Embedded,
    /// The LLM servers: a TCP connect to each; ready while one of them accepts.
    Servers(Vec<(String, u16)>),
    /// A server URL that names no host and port (cannot happen after validation).
    Unknown,
}

/// Whether `host:port` accepts a TCP connection within two seconds; why not if it does not.
async fn connect(host: &str, port: u16) -> ComponentStatus {
    let connect = tokio::net::TcpStream::connect((host, port));
    match tokio::time::timeout(Duration::from_secs(2), connect).await {
        Ok(Ok(_)) => ComponentStatus::Up,
        Ok(Err(e)) => ComponentStatus::down(format!("cannot connect to {host}:{port}: {e}")),
        Err(_) => ComponentStatus::down(format!("no answer from {host}:{port} within 2s")),
    }
}

struct Probe {
    storage: Storage,
    llm: LlmProbe,
    inbox: Option<Arc<dyn UpdateInbox>>,
}

#[async_trait::async_trait]
impl ReadinessProbe for Probe {
    async fn check(&self) -> Readiness {
        let storage = match self.storage.profiles.list(ProfilePage::first(1)).await {
            Ok(_) => ComponentStatus::Up,
            Err(e) => ComponentStatus::down(e.to_string()),
        };
        let llm = match &self.llm {
            LlmProbe::Embedded => ComponentStatus::Up,
            LlmProbe::Unknown => ComponentStatus::down("LLM_BASE_URL names no host and port"),
            LlmProbe::Servers(servers) => {
                let checks = servers.iter().map(|(host, port)| connect(host, *port));
                let statuses = futures::future::join_all(checks).await;
                let up = statuses.iter().any(|s| matches!(s, ComponentStatus::Up));
                match statuses.into_iter().next() {
                    // One server: its own status, as it always was.
                    Some(only) if servers.len() == 1 => only,
                    _ if up => ComponentStatus::Up,
                    Some(ComponentStatus::Down { reason }) => ComponentStatus::down(format!(
                        "none of the {} LLM servers accepts connections; server 0: {reason}",
                        servers.len()
                    )),
                    _ => ComponentStatus::down("no LLM server is configured"),
                }
            }
        };
        let inbox_backlog = match &self.inbox {
            Some(inbox) => inbox.backlog().await.ok(),
            None => None,
        };
        Readiness {
            storage,
            llm,
            inbox_backlog,
        }
    }
}

/// Starts `/metrics`, `/healthz` and `/readyz` on `METRICS_ADDR`, if set. Call it after the
/// engine is built: with the embedded engine the model is then loaded, and `/readyz` reports
/// the LLM as up. With the bot's `inbox`, `/readyz` reports its backlog too.
///
/// # Errors
/// If the recorder is already installed or the address cannot be bound.
pub async fn start_telemetry(
    settings: &Settings,
    storage: &Storage,
    inbox: Option<Arc<dyn UpdateInbox>>,
) -> Result<Option<TelemetryServer>, String> {
    let Some(addr) = settings.metrics_addr else {
        return Ok(None);
    };
    let handle = install_recorder().map_err(|e| e.to_string())?;
    if settings.llm.backend == LlmBackend::Http {
        butler_infrastructure::telemetry::metrics::register_llm_servers(
            settings.llm.base_urls.len(),
        );
    }
    let llm = match settings.llm.backend {
        LlmBackend::Embedded => LlmProbe::Embedded,
        LlmBackend::Http => settings
            .llm
            .base_urls
            .iter()
            .map(|u| {
                let u = url::Url::parse(u).ok()?;
                Some((u.host_str()?.to_owned(), u.port_or_known_default()?))
            })
            .collect::<Option<Vec<_>>>()
            .filter(|servers| !servers.is_empty())
            .map_or(LlmProbe::Unknown, LlmProbe::Servers),
    };
    let probe = Arc::new(Probe {
        storage: storage.clone(),
        llm,
        inbox,
    });
    let server = TelemetryServer::start(addr, handle, probe)
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!(addr = %server.local_addr(), "metrics listening on /metrics, /healthz, /readyz");
    Ok(Some(server))
}

/// A token cancelled on SIGINT (Ctrl-C) or SIGTERM.
#[must_use]
pub fn shutdown_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let trigger = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot listen for SIGTERM; Ctrl-C still works");
                        let _ = ctrl_c.await;
                        trigger.cancel();
                        return;
                    }
                };
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = ctrl_c.await;
        }
        tracing::info!("shutdown requested: finishing replies in flight");
        trigger.cancel();
    });
    token
}
