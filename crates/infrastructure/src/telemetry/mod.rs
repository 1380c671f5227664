//! Observability (DESIGN §8): Prometheus metrics with bounded labels, the `/metrics`,
//! `/healthz` and `/readyz` listener, and structured logging.
//!
//! Call sites record through the typed helpers in [`metrics`]; binaries call
//! [`logging::init`], [`exporter::install_recorder`] and [`exporter::TelemetryServer::start`].

pub mod exporter;
pub mod logging;
pub mod metrics;

pub use exporter::{
    build_recorder, install_recorder, ComponentStatus, Readiness, ReadinessProbe, TelemetryError,
    TelemetryServer,
};
pub use logging::{LogConfig, LogFormat, LoggingError};
pub use metrics::{CallOutcome, CompressionStatus, RequestStatus};
