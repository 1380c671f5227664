//! Structured logging with `tracing`: JSON for machines or a human-readable format, chosen by
//! `LOG_FORMAT`, filtered by a `RUST_LOG`-style directive (default `info`, llama.cpp `warn`).
//!
//! Policy (DESIGN §8): message text only at `debug`/`trace`, secrets never — they live in
//! `secrecy` types whose `Debug` is redacted.

use std::fmt;
use std::io::IsTerminal;
use std::str::FromStr;

use tracing::Subscriber;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// The environment variable choosing the format.
pub const LOG_FORMAT_VAR: &str = "LOG_FORMAT";
/// The environment variable holding the filter directive.
pub const LOG_FILTER_VAR: &str = "RUST_LOG";
/// The filter when `RUST_LOG` is unset. llama.cpp (the embedded engine, target `llama-cpp-2`)
/// reports every tensor and metadata key at `info` while loading a model: warnings only.
pub const DEFAULT_FILTER: &str = "info,llama-cpp-2=warn";
/// The filter of interactive commands (the terminal chat) when `RUST_LOG` is unset: only
/// warnings, so log lines do not interleave with the conversation on the terminal.
pub const QUIET_FILTER: &str = "warn";

/// Why logging could not be set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoggingError {
    /// `LOG_FORMAT` is neither `json` nor `pretty`.
    #[error("{LOG_FORMAT_VAR}: expected `json` or `pretty`, got {value:?}")]
    Format {
        /// What was given.
        value: String,
    },
    /// `RUST_LOG` does not parse as a filter directive.
    #[error("{LOG_FILTER_VAR}: invalid filter {filter:?} (expected e.g. `info` or `info,butler=debug`): {reason}")]
    Filter {
        /// What was given.
        filter: String,
        /// The parser's complaint.
        reason: String,
    },
    /// A global subscriber was already set in this process.
    #[error("a global tracing subscriber is already set")]
    AlreadyInitialised,
}

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// One JSON object per line, for log shippers.
    Json,
    /// Human-readable lines for a terminal.
    #[default]
    Pretty,
}

impl FromStr for LogFormat {
    type Err = LoggingError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value.trim().to_ascii_lowercase().as_str() {
            "json" => Ok(Self::Json),
            "pretty" => Ok(Self::Pretty),
            _ => Err(LoggingError::Format {
                value: value.to_owned(),
            }),
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Json => "json",
            Self::Pretty => "pretty",
        })
    }
}

/// The logging configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// Line format.
    pub format: LogFormat,
    /// A `RUST_LOG`-style directive, e.g. `info,butler_infrastructure=debug`.
    pub filter: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::default(),
            filter: DEFAULT_FILTER.to_owned(),
        }
    }
}

impl LogConfig {
    /// Reads `LOG_FORMAT` and `RUST_LOG` from the process environment.
    ///
    /// # Errors
    /// Every problem at once is not needed here: the first bad variable is named.
    pub fn from_env() -> Result<Self, LoggingError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup` (the environment, or a map in tests). Unset or
    /// empty variables take their defaults; both values are validated.
    ///
    /// # Errors
    /// [`LoggingError::Format`] or [`LoggingError::Filter`] naming the variable.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, LoggingError> {
        let non_empty = |name: &str| lookup(name).filter(|value| !value.trim().is_empty());
        let format =
            non_empty(LOG_FORMAT_VAR).map_or(Ok(LogFormat::default()), |value| value.parse())?;
        let filter = non_empty(LOG_FILTER_VAR).unwrap_or_else(|| DEFAULT_FILTER.to_owned());
        parse_filter(&filter)?;
        Ok(Self { format, filter })
    }
}

fn parse_filter(filter: &str) -> Result<EnvFilter, LoggingError> {
    EnvFilter::builder()
        .parse(filter)
        .map_err(|error| LoggingError::Filter {
            filter: filter.to_owned(),
            reason: error.to_string(),
        })
}

/// Builds a subscriber writing to `writer` without installing it — for tests (with
/// [`tracing::subscriber::with_default`]) and for callers that compose their own.
///
/// # Errors
/// [`LoggingError::Filter`] when the filter does not parse.
pub fn subscriber<W>(
    config: &LogConfig,
    writer: W,
) -> Result<Box<dyn Subscriber + Send + Sync>, LoggingError>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    build(config, writer, false)
}

/// Installs the process-wide subscriber, writing to stderr (stdout belongs to the terminal
/// chat).
///
/// # Errors
/// [`LoggingError::Filter`] on a bad filter, [`LoggingError::AlreadyInitialised`] on a
/// second call.
pub fn init(config: &LogConfig) -> Result<(), LoggingError> {
    let subscriber = build(config, std::io::stderr, std::io::stderr().is_terminal())?;
    tracing::subscriber::set_global_default(subscriber)
        .map_err(|_| LoggingError::AlreadyInitialised)
}

fn build<W>(
    config: &LogConfig,
    writer: W,
    ansi: bool,
) -> Result<Box<dyn Subscriber + Send + Sync>, LoggingError>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = parse_filter(&config.filter)?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    Ok(match config.format {
        LogFormat::Json => Box::new(
            builder
                .json()
                .with_current_span(true)
                .with_span_list(false)
                .finish(),
        ),
        LogFormat::Pretty => Box::new(builder.with_ansi(ansi).with_target(true).finish()),
    })
}
