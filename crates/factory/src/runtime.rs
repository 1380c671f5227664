//! Process-level set-up shared by the binaries: logging, the metrics/health listener, and the
//! stop signals (the first SIGINT or SIGTERM stops gracefully, a second exits at once).

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

/// The exit status after a second stop signal: 128 + the signal's number, as a shell reports
/// a process killed by it — 130 for Ctrl-C (SIGINT), 143 for SIGTERM.
#[must_use]
pub const fn second_signal_exit_code(sigterm: bool) -> u8 {
    if sigterm {
        143
    } else {
        130
    }
}

/// The next SIGINT (Ctrl-C) or SIGTERM; `true` for SIGTERM.
#[cfg(unix)]
struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: Option<tokio::signal::unix::Signal>,
}

#[cfg(unix)]
impl Signals {
    fn new() -> std::io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        let interrupt = signal(SignalKind::interrupt())?;
        let terminate = match signal(SignalKind::terminate()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; Ctrl-C still works");
                None
            }
        };
        Ok(Self {
            interrupt,
            terminate,
        })
    }

    async fn next(&mut self) -> bool {
        let terminate = async {
            match &mut self.terminate {
                Some(term) => term.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = self.interrupt.recv() => false,
            _ = terminate => true,
        }
    }
}

#[cfg(not(unix))]
struct Signals;

#[cfg(not(unix))]
impl Signals {
    fn new() -> std::io::Result<Self> {
        Ok(Self)
    }

    async fn next(&mut self) -> bool {
        let _ = tokio::signal::ctrl_c().await;
        false
    }
}

/// A token cancelled on the first SIGINT (Ctrl-C) or SIGTERM: the process then stops
/// gracefully. A second one, while it does, ends the process at once with
/// [`second_signal_exit_code`] — an operator who asks twice does not want to wait; whatever was
/// in flight is left as a crash leaves it (updates stay in the inbox and are answered after
/// the restart; a compression cut in half changes nothing).
#[must_use]
pub fn shutdown_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let trigger = token.clone();
    tokio::spawn(async move {
        let mut signals = match Signals::new() {
            Ok(signals) => signals,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for stop signals; the process stops only when killed");
                return;
            }
        };
        let sigterm = signals.next().await;
        tracing::info!(
            signal = if sigterm { "SIGTERM" } else { "SIGINT" },
            "shutdown requested: finishing work in flight (send the signal again to exit at once)"
        );
        trigger.cancel();
        let sigterm = signals.next().await;
        let code = second_signal_exit_code(sigterm);
        tracing::warn!(
            signal = if sigterm { "SIGTERM" } else { "SIGINT" },
            code,
            "second stop signal: exiting at once; work in flight is left as a crash leaves it"
        );
        std::process::exit(i32::from(code));
    });
    token
}
