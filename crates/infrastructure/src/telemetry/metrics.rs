//! Every metric the butler exports, in one place: names as constants with their HELP text,
//! start-up registration of every bounded label combination (so each series reads 0 before
//! the first event), and typed recording helpers so call sites never spell a metric name.

use std::time::Duration;

use butler_domain::{Role, Source};
use metrics::{
    counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Unit,
};

/// Profile reads from storage (every backend, every caller).
pub const USER_PROFILE_READS_TOTAL: &str = "user_profile_reads_total";
/// Profile writes to storage: creations, updates, summary saves, resets.
pub const USER_PROFILE_WRITES_TOTAL: &str = "user_profile_writes_total";
/// Memory events appended to storage, by `role`.
pub const USER_MEMORY_EVENTS_TOTAL: &str = "user_memory_events_total";
/// Compressed summaries persisted (summary + watermark saved with compare-and-set).
pub const USER_MEMORY_COMPRESSIONS_TOTAL: &str = "user_memory_compressions_total";
/// Replies handled, by `source` and `status`.
pub const PERSONALIZED_REQUESTS_TOTAL: &str = "personalized_requests_total";
/// Tokens in each assembled prompt (histogram).
pub const PERSONALIZED_PROMPT_TOKENS: &str = "personalized_prompt_tokens";
/// Compression passes, by `status`.
pub const PERSONALIZED_MEMORY_COMPRESSIONS_TOTAL: &str = "personalized_memory_compressions_total";
/// Memory-worker runs (one run visits every user over the threshold).
pub const PERSONALIZED_MEMORY_WORKER_RUNS_TOTAL: &str = "personalized_memory_worker_runs_total";
/// Memory-worker runs that ended with at least one error.
pub const PERSONALIZED_MEMORY_WORKER_ERRORS_TOTAL: &str = "personalized_memory_worker_errors_total";
/// Latency of chat-completion calls, by `outcome` (histogram, seconds).
pub const LLM_REQUEST_DURATION_SECONDS: &str = "llm_request_duration_seconds";
/// Time from asking the model to its first piece of streamed text (histogram, seconds).
pub const LLM_TIME_TO_FIRST_TOKEN_SECONDS: &str = "llm_time_to_first_token_seconds";
/// Prompt tokens of completed LLM calls, by `kind`: `evaluated` (read by the engine) or
/// `reused` (found in its cache from an earlier request).
pub const LLM_PROMPT_TOKENS_TOTAL: &str = "llm_prompt_tokens_total";
/// The kinds of [`LLM_PROMPT_TOKENS_TOTAL`].
pub const PROMPT_TOKEN_KINDS: &[&str] = &["evaluated", "reused"];
/// Requests an LLM server is working on right now, by `server` (its index in `LLM_BASE_URL`).
pub const LLM_SERVER_OUTSTANDING_REQUESTS: &str = "llm_server_outstanding_requests";
/// 1 while an LLM server takes requests, 0 while it is out of the pool, by `server`.
pub const LLM_SERVER_HEALTHY: &str = "llm_server_healthy";
/// Failed attempts on an LLM server (connection errors, `5xx`), by `server`.
pub const LLM_SERVER_FAILURES_TOTAL: &str = "llm_server_failures_total";
/// Latency of speech-to-text calls, by `outcome` (histogram, seconds).
pub const STT_REQUEST_DURATION_SECONDS: &str = "stt_request_duration_seconds";
/// Failed `sendMessage` calls to the Telegram Bot API, each attempt counted (retried or not).
pub const TELEGRAM_SEND_ERRORS_TOTAL: &str = "telegram_send_errors_total";
/// Telegram messages refused by a per-user limit, by reason (`rate`, `quota`).
pub const TELEGRAM_MESSAGES_REFUSED_TOTAL: &str = "telegram_messages_refused_total";
/// The reasons of [`TELEGRAM_MESSAGES_REFUSED_TOTAL`].
pub const REFUSAL_REASONS: &[&str] = &["rate", "quota"];
/// Failed start-up calls a webhook-mode bot retries in the background, by `method`.
pub const TELEGRAM_SETUP_FAILURES_TOTAL: &str = "telegram_setup_failures_total";
/// The methods of [`TELEGRAM_SETUP_FAILURES_TOTAL`].
pub const SETUP_METHODS: &[&str] = &["getMe", "setWebhook"];
/// Live drafts of replies shown in Telegram private chats (`sendMessageDraft` calls accepted).
pub const TELEGRAM_DRAFTS_SENT_TOTAL: &str = "telegram_drafts_sent_total";
/// Messages in group chats, by what the butler did with them.
pub const TELEGRAM_GROUP_MESSAGES_TOTAL: &str = "telegram_group_messages_total";
/// The `handling` values of [`TELEGRAM_GROUP_MESSAGES_TOTAL`].
pub const GROUP_HANDLINGS: &[&str] = &["answered", "kept"];
/// Presses of a draft's stop button, by whether this process was writing that reply.
pub const TELEGRAM_STOPS_TOTAL: &str = "telegram_stops_total";
/// The `matched` values of [`TELEGRAM_STOPS_TOTAL`].
pub const STOP_MATCHES: &[&str] = &["yes", "no"];
/// Reminders, by what happened to them.
pub const REMINDERS_TOTAL: &str = "reminders_total";
/// The `event` values of [`REMINDERS_TOTAL`].
pub const REMINDER_EVENTS: &[&str] = &["scheduled", "fired", "late", "cancelled", "failed"];
/// How long after its due time each reminder was delivered (the scheduler's lag).
pub const REMINDER_LAG_SECONDS: &str = "reminder_lag_seconds";
/// Buckets of [`REMINDER_LAG_SECONDS`]: from well under a second to an hour of downtime.
pub const REMINDER_LAG_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 15.0, 60.0, 300.0, 3600.0,
];
/// Rich messages (Markdown) Telegram rejected, sent again as plain text.
pub const TELEGRAM_RICH_FALLBACKS_TOTAL: &str = "telegram_rich_fallbacks_total";
/// Facts stored by compressions' extraction (new facts, updates included).
pub const MEMORY_FACTS_EXTRACTED_TOTAL: &str = "memory_facts_extracted_total";
/// Stored facts replaced by a newer fact of the same key.
pub const MEMORY_FACTS_SUPERSEDED_TOTAL: &str = "memory_facts_superseded_total";
/// Fact extractions that gave no facts, by `reason` (`llm`, `malformed`, `storage`).
pub const MEMORY_FACT_EXTRACTION_FAILURES_TOTAL: &str = "memory_fact_extraction_failures_total";
/// The reasons of [`MEMORY_FACT_EXTRACTION_FAILURES_TOTAL`].
pub const EXTRACTION_FAILURE_REASONS: &[&str] = &["llm", "malformed", "storage"];
/// Remembered facts put into each reply's prompt (histogram).
pub const PERSONALIZED_PROMPT_FACTS: &str = "personalized_prompt_facts";
/// Always 1; the `version` label carries the running build.
pub const BUTLER_BUILD_INFO: &str = "butler_build_info";

/// The version reported by [`BUTLER_BUILD_INFO`] (the workspace version).
pub const BUILD_VERSION: &str = env!("CARGO_PKG_VERSION");

/// What kind of series a metric is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Monotonic counter.
    Counter,
    /// Distribution with explicit buckets.
    Histogram,
    /// Value that goes up and down.
    Gauge,
}

/// A metric's name, kind and HELP text — the catalogue `describe_all` registers and the docs,
/// alerts and dashboard are checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricSpec {
    /// Exported name.
    pub name: &'static str,
    /// Counter, histogram or gauge.
    pub kind: MetricKind,
    /// HELP text.
    pub help: &'static str,
    /// Label names (values are bounded enums below).
    pub labels: &'static [&'static str],
}

/// Every metric the butler exports.
pub const ALL_METRICS: &[MetricSpec] = &[
    MetricSpec {
        name: MEMORY_FACTS_EXTRACTED_TOTAL,
        kind: MetricKind::Counter,
        help: "Facts stored by compression's fact extraction.",
        labels: &[],
    },
    MetricSpec {
        name: MEMORY_FACTS_SUPERSEDED_TOTAL,
        kind: MetricKind::Counter,
        help: "Stored facts replaced by a newer fact of the same key.",
        labels: &[],
    },
    MetricSpec {
        name: MEMORY_FACT_EXTRACTION_FAILURES_TOTAL,
        kind: MetricKind::Counter,
        help: "Fact extractions that gave no facts, by reason (llm|malformed|storage).",
        labels: &["reason"],
    },
    MetricSpec {
        name: PERSONALIZED_PROMPT_FACTS,
        kind: MetricKind::Histogram,
        help: "Remembered facts put into each reply's prompt.",
        labels: &[],
    },
    MetricSpec {
        name: USER_PROFILE_READS_TOTAL,
        kind: MetricKind::Counter,
        help: "User profile reads from storage.",
        labels: &[],
    },
    MetricSpec {
        name: USER_PROFILE_WRITES_TOTAL,
        kind: MetricKind::Counter,
        help: "User profile writes to storage (create, update, summary save, reset).",
        labels: &[],
    },
    MetricSpec {
        name: USER_MEMORY_EVENTS_TOTAL,
        kind: MetricKind::Counter,
        help: "Memory events appended to storage, by role (user|assistant).",
        labels: &["role"],
    },
    MetricSpec {
        name: USER_MEMORY_COMPRESSIONS_TOTAL,
        kind: MetricKind::Counter,
        help: "Compressed memory summaries persisted (summary and watermark saved).",
        labels: &[],
    },
    MetricSpec {
        name: PERSONALIZED_REQUESTS_TOTAL,
        kind: MetricKind::Counter,
        help:
            "Personalised replies handled, by source (text|voice) and status (ok|degraded|error|repeated|stopped).",
        labels: &["source", "status"],
    },
    MetricSpec {
        name: PERSONALIZED_PROMPT_TOKENS,
        kind: MetricKind::Histogram,
        help: "Tokens in each assembled prompt (budget 2000).",
        labels: &[],
    },
    MetricSpec {
        name: PERSONALIZED_MEMORY_COMPRESSIONS_TOTAL,
        kind: MetricKind::Counter,
        help: "Memory compression passes, by status (ok|conflict|error|skipped).",
        labels: &["status"],
    },
    MetricSpec {
        name: PERSONALIZED_MEMORY_WORKER_RUNS_TOTAL,
        kind: MetricKind::Counter,
        help: "Memory worker runs.",
        labels: &[],
    },
    MetricSpec {
        name: PERSONALIZED_MEMORY_WORKER_ERRORS_TOTAL,
        kind: MetricKind::Counter,
        help: "Memory worker runs that ended with at least one error.",
        labels: &[],
    },
    MetricSpec {
        name: LLM_REQUEST_DURATION_SECONDS,
        kind: MetricKind::Histogram,
        help: "Latency of language-model chat completions in seconds, by outcome (ok|error).",
        labels: &["outcome"],
    },
    MetricSpec {
        name: LLM_TIME_TO_FIRST_TOKEN_SECONDS,
        kind: MetricKind::Histogram,
        help: "Time from asking the language model to its first piece of streamed text, in seconds.",
        labels: &[],
    },
    MetricSpec {
        name: LLM_PROMPT_TOKENS_TOTAL,
        kind: MetricKind::Counter,
        help: "Prompt tokens of completed LLM calls, by kind (evaluated|reused from the engine's cache).",
        labels: &["kind"],
    },
    MetricSpec {
        name: LLM_SERVER_OUTSTANDING_REQUESTS,
        kind: MetricKind::Gauge,
        help: "Requests an LLM server is working on, by server (its index in LLM_BASE_URL).",
        labels: &["server"],
    },
    MetricSpec {
        name: LLM_SERVER_HEALTHY,
        kind: MetricKind::Gauge,
        help: "1 while an LLM server takes requests, 0 while it is out of the pool after a failure, by server.",
        labels: &["server"],
    },
    MetricSpec {
        name: LLM_SERVER_FAILURES_TOTAL,
        kind: MetricKind::Counter,
        help: "Failed attempts and probes on an LLM server (connection errors, 5xx), by server.",
        labels: &["server"],
    },
    MetricSpec {
        name: STT_REQUEST_DURATION_SECONDS,
        kind: MetricKind::Histogram,
        help: "Latency of speech-to-text transcriptions in seconds, by outcome (ok|error).",
        labels: &["outcome"],
    },
    MetricSpec {
        name: TELEGRAM_SEND_ERRORS_TOTAL,
        kind: MetricKind::Counter,
        help: "Failed sendMessage calls to the Telegram Bot API (flood control, network, API errors, timeouts), each attempt counted.",
        labels: &[],
    },
    MetricSpec {
        name: TELEGRAM_SETUP_FAILURES_TOTAL,
        kind: MetricKind::Counter,
        help: "Failed start-up calls (getMe|setWebhook) of a webhook-mode bot, retried in the background while updates are received and stored.",
        labels: &["method"],
    },
    MetricSpec {
        name: TELEGRAM_DRAFTS_SENT_TOTAL,
        kind: MetricKind::Counter,
        help: "Live reply drafts shown in Telegram private chats (sendMessageDraft accepted).",
        labels: &[],
    },
    MetricSpec {
        name: TELEGRAM_GROUP_MESSAGES_TOTAL,
        kind: MetricKind::Counter,
        help: "Messages in group chats (answered: addressed to the butler and answered; kept: read as the group's context, no model call).",
        labels: &["handling"],
    },
    MetricSpec {
        name: TELEGRAM_STOPS_TOTAL,
        kind: MetricKind::Counter,
        help: "Presses of a reply draft's stop button (matched=yes: this process was writing that reply and stopped its generation).",
        labels: &["matched"],
    },
    MetricSpec {
        name: REMINDERS_TOTAL,
        kind: MetricKind::Counter,
        help: "Reminders by event: scheduled (set by a user), fired (delivered), late (delivered past REMINDERS_LATE_AFTER_SECS, also counted as fired), cancelled (by their user), failed (a send that failed; retried when it surely did not arrive).",
        labels: &["event"],
    },
    MetricSpec {
        name: REMINDER_LAG_SECONDS,
        kind: MetricKind::Histogram,
        help: "How long after its due time each reminder was delivered (the scheduler's firing lag).",
        labels: &[],
    },
    MetricSpec {
        name: TELEGRAM_RICH_FALLBACKS_TOTAL,
        kind: MetricKind::Counter,
        help: "Rich messages and drafts (Markdown) Telegram rejected; sent again as plain text.",
        labels: &[],
    },
    MetricSpec {
        name: TELEGRAM_MESSAGES_REFUSED_TOTAL,
        kind: MetricKind::Counter,
        help: "Telegram messages refused by a per-user limit (rate|quota); not stored, no model call.",
        labels: &["reason"],
    },
    MetricSpec {
        name: BUTLER_BUILD_INFO,
        kind: MetricKind::Gauge,
        help: "Build information; always 1, the version label carries the build.",
        labels: &["version"],
    },
];

/// Buckets of [`PERSONALIZED_PROMPT_TOKENS`]: fine-grained up to the 2000-token prompt budget,
/// with one bucket above it so an over-budget prompt is visible rather than lost in `+Inf`.
/// Buckets of [`PERSONALIZED_PROMPT_FACTS`]: a handful of core facts plus up to 8 found.
pub const PROMPT_FACTS_BUCKETS: &[f64] = &[0.0, 1.0, 2.0, 4.0, 6.0, 8.0, 12.0, 16.0, 24.0];

/// Buckets of [`PERSONALIZED_PROMPT_TOKENS`].
pub const PROMPT_TOKEN_BUCKETS: &[f64] = &[
    50.0, 100.0, 200.0, 400.0, 600.0, 800.0, 1000.0, 1200.0, 1400.0, 1600.0, 1800.0, 2000.0, 2500.0,
];

/// Buckets of [`LLM_REQUEST_DURATION_SECONDS`]: a local model answers in seconds to a minute;
/// 20 s is a boundary because the `LlmLatencyHigh` alert fires on a p95 above it.
pub const LLM_DURATION_BUCKETS: &[f64] = &[
    0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0,
];

/// Buckets of [`LLM_TIME_TO_FIRST_TOKEN_SECONDS`]: a streamed reply should start within a
/// second; a long prompt on a small CPU takes several.
pub const FIRST_TOKEN_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0,
];

/// Buckets of [`STT_REQUEST_DURATION_SECONDS`]: voice notes are short, transcription is quicker.
pub const STT_DURATION_BUCKETS: &[f64] =
    &[0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0];

/// How a personalised reply went (`status` label of [`PERSONALIZED_REQUESTS_TOTAL`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestStatus {
    /// Model answered, memory stored.
    Ok,
    /// Model answered, storage failed somewhere; the reply was still sent.
    Degraded,
    /// Model failed; the fallback reply was sent.
    Error,
    /// A redelivered update whose turn the memory already held: the stored reply was sent
    /// again, without asking the model.
    Repeated,
    /// The person pressed stop: the generation was cancelled and what was written so far sent
    /// and stored.
    Stopped,
}

impl RequestStatus {
    /// Every value, for registration at start-up.
    pub const ALL: [Self; 5] = [
        Self::Ok,
        Self::Degraded,
        Self::Error,
        Self::Repeated,
        Self::Stopped,
    ];

    /// The label value.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Degraded => "degraded",
            Self::Error => "error",
            Self::Repeated => "repeated",
            Self::Stopped => "stopped",
        }
    }
}

/// What a compression pass did (`status` label of [`PERSONALIZED_MEMORY_COMPRESSIONS_TOTAL`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompressionStatus {
    /// Events folded into the summary.
    Ok,
    /// Another writer won the compare-and-set; this pass backed off.
    Conflict,
    /// Storage or the summariser failed.
    Error,
    /// Nothing to fold.
    Skipped,
    /// Another compression of the conversation was running (its lease was held).
    Busy,
}

impl CompressionStatus {
    /// Every value, for registration at start-up.
    pub const ALL: [Self; 5] = [
        Self::Ok,
        Self::Conflict,
        Self::Error,
        Self::Skipped,
        Self::Busy,
    ];

    /// The label value.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Conflict => "conflict",
            Self::Error => "error",
            Self::Skipped => "skipped",
            Self::Busy => "busy",
        }
    }
}

/// Whether an outbound call succeeded (`outcome` label of the latency histograms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    /// The call returned a usable answer.
    Ok,
    /// Timeout, transport error or error status.
    Error,
}

impl CallOutcome {
    /// Every value, for registration at start-up.
    pub const ALL: [Self; 2] = [Self::Ok, Self::Error];

    /// The label value.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Error => "error",
        }
    }

    /// `Ok` for `Ok(_)`, `Error` for `Err(_)`.
    #[must_use]
    pub const fn of<T, E>(result: &Result<T, E>) -> Self {
        match result {
            Ok(_) => Self::Ok,
            Err(_) => Self::Error,
        }
    }
}

const ROLES: [Role; 2] = [Role::User, Role::Assistant];
const SOURCES: [Source; 2] = [Source::Text, Source::Voice];

/// Registers the HELP text (and unit) of every metric with the current recorder.
pub fn describe_all() {
    for spec in ALL_METRICS {
        let unit = if spec.name.ends_with("_seconds") {
            Some(Unit::Seconds)
        } else {
            None
        };
        match (spec.kind, unit) {
            (MetricKind::Counter, _) => describe_counter!(spec.name, spec.help),
            (MetricKind::Histogram, Some(unit)) => describe_histogram!(spec.name, unit, spec.help),
            (MetricKind::Histogram, None) => describe_histogram!(spec.name, spec.help),
            (MetricKind::Gauge, _) => describe_gauge!(spec.name, spec.help),
        }
    }
}

/// Touches every series with every bounded label combination, so all of them read 0 before
/// the first event, and sets the build-info gauge. Call once at start-up, after
/// [`describe_all`].
pub fn register_all() {
    counter!(USER_PROFILE_READS_TOTAL).increment(0);
    counter!(USER_PROFILE_WRITES_TOTAL).increment(0);
    for role in ROLES {
        counter!(USER_MEMORY_EVENTS_TOTAL, "role" => role.code()).increment(0);
    }
    counter!(USER_MEMORY_COMPRESSIONS_TOTAL).increment(0);
    for source in SOURCES {
        for status in RequestStatus::ALL {
            counter!(PERSONALIZED_REQUESTS_TOTAL, "source" => source.code(), "status" => status.as_str())
                .increment(0);
        }
    }
    let _ = histogram!(PERSONALIZED_PROMPT_TOKENS);
    for status in CompressionStatus::ALL {
        counter!(PERSONALIZED_MEMORY_COMPRESSIONS_TOTAL, "status" => status.as_str()).increment(0);
    }
    counter!(PERSONALIZED_MEMORY_WORKER_RUNS_TOTAL).increment(0);
    counter!(PERSONALIZED_MEMORY_WORKER_ERRORS_TOTAL).increment(0);
    for outcome in CallOutcome::ALL {
        let _ = histogram!(LLM_REQUEST_DURATION_SECONDS, "outcome" => outcome.as_str());
        let _ = histogram!(STT_REQUEST_DURATION_SECONDS, "outcome" => outcome.as_str());
    }
    counter!(TELEGRAM_SEND_ERRORS_TOTAL).increment(0);
    counter!(TELEGRAM_DRAFTS_SENT_TOTAL).increment(0);
    let _ = histogram!(LLM_TIME_TO_FIRST_TOKEN_SECONDS);
    for kind in PROMPT_TOKEN_KINDS {
        counter!(LLM_PROMPT_TOKENS_TOTAL, "kind" => *kind).increment(0);
    }
    for reason in REFUSAL_REASONS {
        counter!(TELEGRAM_MESSAGES_REFUSED_TOTAL, "reason" => *reason).increment(0);
    }
    for method in SETUP_METHODS {
        counter!(TELEGRAM_SETUP_FAILURES_TOTAL, "method" => *method).increment(0);
    }
    for handling in GROUP_HANDLINGS {
        counter!(TELEGRAM_GROUP_MESSAGES_TOTAL, "handling" => *handling).increment(0);
    }
    for matched in STOP_MATCHES {
        counter!(TELEGRAM_STOPS_TOTAL, "matched" => *matched).increment(0);
    }
    counter!(TELEGRAM_RICH_FALLBACKS_TOTAL).increment(0);
    for event in REMINDER_EVENTS {
        counter!(REMINDERS_TOTAL, "event" => *event).increment(0);
    }
    let _ = histogram!(REMINDER_LAG_SECONDS);
    counter!(MEMORY_FACTS_EXTRACTED_TOTAL).increment(0);
    counter!(MEMORY_FACTS_SUPERSEDED_TOTAL).increment(0);
    for reason in EXTRACTION_FAILURE_REASONS {
        counter!(MEMORY_FACT_EXTRACTION_FAILURES_TOTAL, "reason" => *reason).increment(0);
    }
    let _ = histogram!(PERSONALIZED_PROMPT_FACTS);
    register_llm_servers(1);
    gauge!(BUTLER_BUILD_INFO, "version" => BUILD_VERSION).set(1.0);
}

/// Touches the per-server LLM series of servers `0..count` (idle, healthy, no failures). The
/// server count is known only from the settings, so [`register_all`] registers server 0 (there
/// is always one; with the embedded engine its series stay at these values) and the factory
/// calls this for the rest.
pub fn register_llm_servers(count: usize) {
    for index in 0..count {
        let server = index.to_string();
        gauge!(LLM_SERVER_OUTSTANDING_REQUESTS, "server" => server.clone()).set(0.0);
        gauge!(LLM_SERVER_HEALTHY, "server" => server.clone()).set(1.0);
        counter!(LLM_SERVER_FAILURES_TOTAL, "server" => server).increment(0);
    }
}

/// Server `server` (its index) is working on `outstanding` requests.
#[allow(clippy::cast_precision_loss)] // a request count is far below 2^52
pub fn set_llm_server_outstanding(server: &str, outstanding: usize) {
    gauge!(LLM_SERVER_OUTSTANDING_REQUESTS, "server" => server.to_owned()).set(outstanding as f64);
}

/// Server `server` came back (`true`) or was taken out of the pool (`false`).
pub fn set_llm_server_healthy(server: &str, healthy: bool) {
    gauge!(LLM_SERVER_HEALTHY, "server" => server.to_owned()).set(if healthy { 1.0 } else { 0.0 });
}

/// An attempt or a probe on server `server` failed.
pub fn record_llm_server_failure(server: &str) {
    counter!(LLM_SERVER_FAILURES_TOTAL, "server" => server.to_owned()).increment(1);
}

/// Facts were saved: `inserted` new ones, `superseded` old ones replaced.
pub fn record_facts_saved(inserted: u64, superseded: u64) {
    counter!(MEMORY_FACTS_EXTRACTED_TOTAL).increment(inserted);
    counter!(MEMORY_FACTS_SUPERSEDED_TOTAL).increment(superseded);
}

/// A fact extraction gave no facts (`llm`, `malformed` or `storage`).
pub fn record_fact_extraction_failure(reason: &'static str) {
    let reason = bounded(EXTRACTION_FAILURE_REASONS, reason, "malformed");
    counter!(MEMORY_FACT_EXTRACTION_FAILURES_TOTAL, "reason" => reason).increment(1);
}

/// A reply's prompt held `facts` remembered facts.
pub fn record_prompt_facts(facts: usize) {
    histogram!(PERSONALIZED_PROMPT_FACTS).record(facts as f64);
}

/// `value` if it is one of the `known` label values, else `fallback`: a label never takes a
/// value outside its registered set.
fn bounded(known: &[&'static str], value: &str, fallback: &'static str) -> &'static str {
    known
        .iter()
        .find(|k| **k == value)
        .copied()
        .unwrap_or(fallback)
}

/// A profile was read from storage.
pub fn record_profile_read() {
    counter!(USER_PROFILE_READS_TOTAL).increment(1);
}

/// A profile was written to storage.
pub fn record_profile_write() {
    counter!(USER_PROFILE_WRITES_TOTAL).increment(1);
}

/// A memory event was appended to storage.
pub fn record_memory_event(role: Role) {
    counter!(USER_MEMORY_EVENTS_TOTAL, "role" => role.code()).increment(1);
}

/// A compressed summary (with its watermark) was persisted.
pub fn record_summary_saved() {
    counter!(USER_MEMORY_COMPRESSIONS_TOTAL).increment(1);
}

/// A personalised reply was handled. `prompt_tokens` is `None` when no prompt was assembled.
pub fn record_reply(source: Source, status: RequestStatus, prompt_tokens: Option<usize>) {
    counter!(PERSONALIZED_REQUESTS_TOTAL, "source" => source.code(), "status" => status.as_str())
        .increment(1);
    if let Some(tokens) = prompt_tokens {
        histogram!(PERSONALIZED_PROMPT_TOKENS).record(tokens as f64);
    }
}

/// A chat-completion call finished after `elapsed`.
pub fn record_llm_request(outcome: CallOutcome, elapsed: Duration) {
    histogram!(LLM_REQUEST_DURATION_SECONDS, "outcome" => outcome.as_str())
        .record(elapsed.as_secs_f64());
}

/// A streamed LLM call produced its first text after `elapsed`.
pub fn record_llm_first_token(elapsed: Duration) {
    histogram!(LLM_TIME_TO_FIRST_TOKEN_SECONDS).record(elapsed.as_secs_f64());
}

/// A completed LLM call read `evaluated` prompt tokens and found `reused` in its cache.
pub fn record_llm_prompt_tokens(evaluated: u64, reused: u64) {
    counter!(LLM_PROMPT_TOKENS_TOTAL, "kind" => "evaluated").increment(evaluated);
    counter!(LLM_PROMPT_TOKENS_TOTAL, "kind" => "reused").increment(reused);
}

/// A reply draft was shown in Telegram.
pub fn record_telegram_draft() {
    counter!(TELEGRAM_DRAFTS_SENT_TOTAL).increment(1);
}

/// A draft's stop button was pressed; `matched` when this process stopped that reply.
pub fn record_stop(matched: bool) {
    counter!(TELEGRAM_STOPS_TOTAL, "matched" => if matched { "yes" } else { "no" }).increment(1);
}

/// A reminder event (one of [`REMINDER_EVENTS`]).
pub fn record_reminder(event: &'static str) {
    counter!(REMINDERS_TOTAL, "event" => event).increment(1);
}

/// A reminder was delivered `lag_seconds` after its due time.
pub fn record_reminder_lag(lag_seconds: f64) {
    histogram!(REMINDER_LAG_SECONDS).record(lag_seconds);
}

/// A rich message was rejected and sent as plain text.
pub fn record_rich_fallback() {
    counter!(TELEGRAM_RICH_FALLBACKS_TOTAL).increment(1);
}

/// A group message was answered (`answered`) or kept as context (`kept`).
pub fn record_group_message(handling: &str) {
    let handling = bounded(GROUP_HANDLINGS, handling, "kept");
    counter!(TELEGRAM_GROUP_MESSAGES_TOTAL, "handling" => handling).increment(1);
}

/// A speech-to-text call finished after `elapsed`.
pub fn record_stt_request(outcome: CallOutcome, elapsed: Duration) {
    histogram!(STT_REQUEST_DURATION_SECONDS, "outcome" => outcome.as_str())
        .record(elapsed.as_secs_f64());
}

/// A compression pass ended with `status`.
pub fn record_compression(status: CompressionStatus) {
    counter!(PERSONALIZED_MEMORY_COMPRESSIONS_TOTAL, "status" => status.as_str()).increment(1);
}

/// A memory-worker run finished; `failed` when any user's compression in it failed.
pub fn record_worker_run(failed: bool) {
    counter!(PERSONALIZED_MEMORY_WORKER_RUNS_TOTAL).increment(1);
    if failed {
        counter!(PERSONALIZED_MEMORY_WORKER_ERRORS_TOTAL).increment(1);
    }
}

/// A Telegram send failed.
pub fn record_telegram_send_error() {
    counter!(TELEGRAM_SEND_ERRORS_TOTAL).increment(1);
}

/// A start-up call to Telegram (`getMe`, `setWebhook`) failed and will be retried.
pub fn record_telegram_setup_failure(method: &'static str) {
    let method = bounded(SETUP_METHODS, method, "getMe");
    counter!(TELEGRAM_SETUP_FAILURES_TOTAL, "method" => method).increment(1);
}

/// A Telegram message was refused by a per-user limit (`rate` or `quota`).
pub fn record_telegram_refusal(reason: &'static str) {
    let reason = bounded(REFUSAL_REASONS, reason, "rate");
    counter!(TELEGRAM_MESSAGES_REFUSED_TOTAL, "reason" => reason).increment(1);
}
