//! `Settings`: one typed configuration, layered defaults → optional TOML file → environment,
//! validated at start-up with every problem reported at once, each naming the variable and
//! the expected form. Secrets are `SecretString`s and print as `***`.

mod variables;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use butler_application::prompt::PromptBudget;
use secrecy::{ExposeSecret, SecretString};

pub use variables::{
    example_toml, help_text, variable, Kind, Variable, OTHER_VARIABLES, VARIABLES,
};

/// Where the conversation memory lives.
#[derive(Debug, Clone)]
pub enum StorageSettings {
    /// Embedded SQLite file (the default).
    Sqlite {
        /// Database file.
        path: PathBuf,
        /// What an acknowledged commit survives.
        synchronous: SqliteSynchronous,
    },
    /// A MongoDB server or replica set.
    Mongo {
        /// Connection string (may hold credentials).
        uri: SecretString,
        /// Database name.
        database: String,
        /// TTL of memory events in days; `None` disables the TTL index.
        ttl_days: Option<u32>,
    },
}

/// `SQLITE_SYNCHRONOUS`: SQLite's `PRAGMA synchronous` (in WAL mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqliteSynchronous {
    /// Every commit is on the disk before it returns: survives a power loss.
    Full,
    /// A commit reaches the operating system only: survives a crash of the process, while a
    /// power loss may drop the last commits.
    Normal,
}

impl SqliteSynchronous {
    /// The setting's value.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Normal => "normal",
        }
    }
}

/// How prompt tokens are counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenizerSettings {
    /// The conservative estimator.
    Estimator,
    /// Exact Qwen counts from a `qwen.tiktoken` vocabulary.
    QwenTiktoken {
        /// Vocabulary file.
        path: PathBuf,
    },
    /// A llama.cpp server's `/tokenize` endpoint (estimator as fallback).
    LlamaTokenize {
        /// Server base URL.
        url: String,
    },
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// Telegram front end.
#[derive(Debug, Clone)]
pub struct TelegramSettings {
    /// Bot token; required to run the bot.
    pub token: Option<SecretString>,
    /// Bot API server.
    pub api_url: String,
    /// Who the bot answers; `None` = not configured (the bot refuses to start).
    pub access: Option<Access>,
    /// Groups the butler works in (`ALLOWED_CHAT_IDS`).
    pub allowed_chats: Vec<i64>,
    /// Names that address the butler in groups (`BUTLER_NAMES`).
    pub names: Vec<String>,
    /// Per-user abuse limits.
    pub limits: LimitSettings,
    /// Longest voice message transcribed.
    pub voice_max_seconds: u32,
    /// Largest voice file downloaded.
    pub voice_max_bytes: usize,
    /// Webhook mode, when `TELEGRAM_WEBHOOK_URL` is set; long polling otherwise.
    pub webhook: Option<WebhookSettings>,
    /// Users answered at once.
    pub workers: usize,
    /// Lease on a user's pending updates.
    pub inbox_lease: Duration,
    /// How long answered updates are remembered.
    pub inbox_retention: Duration,
    /// Time given to replies in flight at shutdown.
    pub shutdown_grace: Duration,
}

/// Webhook mode (`TELEGRAM_WEBHOOK_*`).
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// The public URL Telegram posts to.
    pub url: url::Url,
    /// Where the bot listens.
    pub listen: SocketAddr,
    /// The configured secret; `None` = derived from the bot token.
    pub secret: Option<SecretString>,
    /// Update requests Telegram sends at once (`setWebhook`'s `max_connections`).
    pub max_connections: u8,
}

/// Who the Telegram bot answers (`ALLOWED_USER_IDS`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Anyone who finds the bot (`*`).
    Everyone,
    /// Only these Telegram user ids.
    Only(Vec<i64>),
}

/// Per-user limits of the Telegram bot (defaults; `profile_admin limits` sets exceptions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitSettings {
    /// Average messages per minute (token bucket refill); 0 = no limit.
    pub per_minute: u32,
    /// Messages at once before the rate applies (bucket size).
    pub burst: u32,
    /// Messages per UTC day; 0 = no quota.
    pub per_day: u32,
}

/// Which engine answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LlmBackend {
    /// A GGUF model run in this process (llama.cpp); the default without `LLM_BASE_URL`.
    Embedded,
    /// An OpenAI-compatible server at `LLM_BASE_URL`.
    Http,
}

impl LlmBackend {
    /// `embedded` or `http`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Embedded => "embedded",
            Self::Http => "http",
        }
    }
}

/// The language model.
#[derive(Debug, Clone)]
pub struct LlmSettings {
    /// Which engine answers.
    pub backend: LlmBackend,
    /// The GGUF file of the embedded engine; `None` = the default model in `models_dir`.
    pub gguf_path: Option<PathBuf>,
    /// Where downloaded models live.
    pub models_dir: PathBuf,
    /// OpenAI-compatible base URLs (`…/v1`), in the order given; empty = none. Several form
    /// a pool (least outstanding requests, failover).
    pub base_urls: Vec<String>,
    /// Model name.
    pub model: String,
    /// Bearer key.
    pub api_key: Option<SecretString>,
    /// In-flight requests per server.
    pub max_concurrency: usize,
    /// Deadline of one call.
    pub timeout: Duration,
    /// Reply temperature.
    pub temperature: f32,
    /// CPU threads of the embedded engine; `None` = every core.
    pub threads: Option<u32>,
    /// Conversations the embedded engine keeps cached (0 = no prompt reuse).
    pub cache_slots: u32,
}

impl LlmSettings {
    /// Requests the engine takes at once: `max_concurrency` per server of an http pool, or
    /// `max_concurrency` for the embedded engine.
    #[must_use]
    pub fn total_concurrency(&self) -> usize {
        match self.backend {
            LlmBackend::Embedded => self.max_concurrency,
            LlmBackend::Http => self
                .max_concurrency
                .saturating_mul(self.base_urls.len().max(1)),
        }
    }
}

/// Speech-to-text.
#[derive(Debug, Clone)]
pub struct SttSettings {
    /// OpenAI-compatible base URL (`…/v1`); `None` = voice not supported.
    pub base_url: Option<String>,
    /// Model name.
    pub model: String,
    /// Language hint.
    pub language: Option<String>,
    /// Deadline of one call.
    pub timeout: Duration,
}

/// Memory thresholds.
#[derive(Debug, Clone, Copy)]
pub struct MemorySettings {
    /// Recent events per prompt.
    pub recent_events: usize,
    /// Compression trigger.
    pub compress_threshold: u64,
    /// Quiet time a due compression waits for.
    pub compress_idle: Duration,
    /// Events beyond which compression runs at once.
    pub compress_hard_limit: u64,
    /// Events kept after compression.
    pub keep_last: usize,
    /// Summary length in tokens.
    pub summary_tokens: usize,
    /// Extract facts during compression and retrieve them into prompts.
    pub facts_enabled: bool,
}

/// Reminders: on/off, the default time zone and the per-user limits.
#[derive(Debug, Clone)]
pub struct ReminderSettings {
    /// `REMINDERS_ENABLED`.
    pub enabled: bool,
    /// `DEFAULT_TIME_ZONE` (validated: an IANA name).
    pub default_zone: butler_domain::reminder::UserTimeZone,
    /// `REMINDERS_MAX_PER_USER`.
    pub max_per_user: u32,
    /// `REMINDERS_HORIZON_DAYS`.
    pub horizon_days: u32,
    /// `REMINDERS_LATE_AFTER_SECS`.
    pub late_after: Duration,
    /// `REMINDERS_LEASE_SECS`.
    pub lease: Duration,
}

/// Everything the binaries are configured with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Telegram.
    pub telegram: TelegramSettings,
    /// Storage.
    pub storage: StorageSettings,
    /// Language model.
    pub llm: LlmSettings,
    /// Speech-to-text.
    pub stt: SttSettings,
    /// `false` = stateless replies.
    pub personalization_enabled: bool,
    /// Memory thresholds.
    pub memory: MemorySettings,
    /// Prompt budget (validated against the window).
    pub budget: PromptBudget,
    /// Token counting.
    pub tokenizer: TokenizerSettings,
    /// Metrics listener.
    pub metrics_addr: Option<SocketAddr>,
    /// Log format.
    pub log_format: LogFormat,
    /// Reminders.
    pub reminders: ReminderSettings,
    /// The value each variable took effect with, as parsed (secrets masked).
    in_effect: BTreeMap<&'static str, String>,
}

/// One invalid setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingProblem {
    /// The variable.
    pub variable: String,
    /// What was wrong and the expected form (never the value of a secret).
    pub message: String,
}

/// Every problem found while loading settings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct SettingsError {
    /// The problems, in table order.
    pub problems: Vec<SettingProblem>,
}

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "invalid configuration ({} problem(s)):",
            self.problems.len()
        )?;
        for p in &self.problems {
            writeln!(f, "  {}: {}", p.variable, p.message)?;
        }
        Ok(())
    }
}

/// Raw values by variable name, after layering; and, as parsing goes, the value each variable
/// takes effect with — what `butler-bot config` prints ([`Settings::describe`]), so the list is
/// the parser's own record, never a second hand-written copy of the table.
struct Raw {
    values: BTreeMap<String, String>,
    problems: Vec<SettingProblem>,
    in_effect: BTreeMap<&'static str, String>,
}

impl Raw {
    fn get(&self, name: &str) -> Option<&str> {
        self.values
            .get(name)
            .map(String::as_str)
            .map(str::trim)
            .filter(|v| !v.is_empty())
    }

    fn problem(&mut self, name: &str, message: String) {
        self.problems.push(SettingProblem {
            variable: name.to_owned(),
            message,
        });
    }

    fn expected(&mut self, name: &str) {
        let expected =
            variable(name).map_or_else(|| "a valid value".to_owned(), Variable::expected);
        let shown = if variable(name).is_some_and(Variable::secret) {
            String::new()
        } else {
            format!(" (got {:?})", excerpt(self.get(name).unwrap_or_default()))
        };
        self.problem(name, format!("expected {expected}{shown}"));
    }

    /// Records the value `name` takes effect with (a secret's is masked by the caller).
    fn note(&mut self, name: &str, value: impl Into<String>) {
        if let Some(v) = variable(name) {
            self.in_effect.insert(v.name, value.into());
        }
    }

    /// A free-text variable: the value, or `None` when unset.
    fn text(&mut self, name: &str) -> Option<String> {
        let value = self.get(name).map(str::to_owned);
        self.note(name, value.clone().unwrap_or_default());
        value
    }

    /// A free-text variable with a default in the table.
    fn text_or_default(&mut self, name: &str) -> String {
        let value = self
            .get(name)
            .unwrap_or_else(|| variable(name).map_or("", |v| v.default))
            .to_owned();
        self.note(name, value.clone());
        value
    }

    /// An integer variable: the value, or the table's default when unset; `None` only when
    /// unset with no default. Out of the table's range → a problem, and the default.
    fn int<T: TryFrom<u64>>(&mut self, name: &str) -> Option<T> {
        let Some(Variable {
            kind: Kind::Int { min, max, .. },
            default,
            ..
        }) = variable(name)
        else {
            self.problem(name, "not an integer setting (a bug)".to_owned());
            return None;
        };
        let fallback = default.parse::<u64>().ok();
        let value = match self.get(name).map(str::parse::<u64>) {
            None => fallback,
            Some(Ok(v)) if (*min..=*max).contains(&v) && T::try_from(v).is_ok() => Some(v),
            Some(_) => {
                self.expected(name);
                fallback
            }
        };
        self.note(name, value.map(|v| v.to_string()).unwrap_or_default());
        value.and_then(|v| T::try_from(v).ok())
    }

    /// An integer variable that has a default in the table.
    fn int_or<T: TryFrom<u64>>(&mut self, name: &str, last_resort: T) -> T {
        self.int(name).unwrap_or(last_resort)
    }

    fn number(&mut self, name: &str) -> f64 {
        let Some(Variable {
            kind: Kind::Number { min, max },
            default,
            ..
        }) = variable(name)
        else {
            self.problem(name, "not a number setting (a bug)".to_owned());
            return 0.0;
        };
        let fallback = default.parse::<f64>().unwrap_or(*min);
        let value = match self.get(name).map(str::parse::<f64>) {
            None => fallback,
            Some(Ok(v)) if v.is_finite() && (*min..=*max).contains(&v) => v,
            Some(_) => {
                self.expected(name);
                fallback
            }
        };
        self.note(name, value.to_string());
        value
    }

    /// A choice variable, lower-cased: the value, the default, or `None` when unset with no
    /// default. An unknown word → a problem, and the default.
    fn choice(&mut self, name: &str) -> Option<&'static str> {
        let Some(Variable {
            kind: Kind::Choice(words),
            default,
            ..
        }) = variable(name)
        else {
            self.problem(name, "not a choice setting (a bug)".to_owned());
            return None;
        };
        let fallback = (!default.is_empty()).then_some(*default);
        let value = match self.get(name).map(str::to_ascii_lowercase) {
            None => fallback,
            Some(text) => match words.iter().find(|w| **w == text) {
                Some(word) => Some(*word),
                None => {
                    self.expected(name);
                    fallback
                }
            },
        };
        self.note(name, value.unwrap_or_default());
        value
    }

    /// `true` or `false` (also 1/0, yes/no, on/off); the table's default when unset.
    fn bool(&mut self, name: &str) -> Option<bool> {
        let text = self
            .get(name)
            .unwrap_or_else(|| variable(name).map_or("", |v| v.default))
            .to_ascii_lowercase();
        let value = match text.as_str() {
            "true" | "1" | "yes" | "on" => Some(true),
            "false" | "0" | "no" | "off" => Some(false),
            _ => {
                self.expected(name);
                None
            }
        };
        self.note(name, value.map(|b| b.to_string()).unwrap_or_default());
        value
    }

    fn url(&mut self, name: &str) -> Option<String> {
        let value = self.get(name).map(str::to_owned);
        let url = value.and_then(|value| match url::Url::parse(&value) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
                Some(value.trim_end_matches('/').to_owned())
            }
            _ => {
                self.expected(name);
                None
            }
        });
        self.note(name, url.clone().unwrap_or_default());
        url
    }

    /// A comma-separated list of http(s) URLs, each without its trailing slash; unset = empty.
    /// A list with one bad entry is a problem naming that entry (never credentials).
    fn url_list(&mut self, name: &str) -> Vec<String> {
        let Some(value) = self.get(name).map(str::to_owned) else {
            self.note(name, "");
            return Vec::new();
        };
        if !value.contains(',') {
            return self.url(name).into_iter().collect();
        }
        let mut urls = Vec::new();
        for (index, entry) in value.split(',').map(str::trim).enumerate() {
            match url::Url::parse(entry) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
                    urls.push(entry.trim_end_matches('/').to_owned());
                }
                _ => {
                    let expected = variable(name).map_or_else(String::new, Variable::expected);
                    let shown = match entry.rfind('@') {
                        Some(at) => format!("***@{}", &entry[at + 1..]),
                        None => entry.to_owned(),
                    };
                    self.problem(
                        name,
                        format!(
                            "expected {expected} (entry {} of the list is {:?})",
                            index + 1,
                            excerpt(&shown)
                        ),
                    );
                    self.note(name, "");
                    return Vec::new();
                }
            }
        }
        self.note(name, urls.join(","));
        urls
    }

    /// A secret: in effect as `***` when set.
    fn secret(&mut self, name: &str) -> Option<SecretString> {
        let value = self.get(name).map(|v| SecretString::from(v.to_owned()));
        self.note(name, if value.is_some() { "***" } else { "" });
        value
    }
}

impl Settings {
    /// Loads settings from the process environment and, if given, a TOML file.
    ///
    /// # Errors
    /// A [`SettingsError`] listing every invalid variable.
    pub fn load(config_file: Option<&Path>) -> Result<Self, SettingsError> {
        Self::from_sources(config_file, |name| std::env::var(name).ok())
    }

    /// Loads settings from a TOML file (optional) and an environment lookup (for tests).
    ///
    /// # Errors
    /// A [`SettingsError`] listing every invalid variable.
    pub fn from_sources(
        config_file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, SettingsError> {
        let mut raw = Raw {
            values: BTreeMap::new(),
            problems: Vec::new(),
            in_effect: BTreeMap::new(),
        };
        if let Some(path) = config_file {
            read_toml(path, &mut raw);
        }
        for v in VARIABLES {
            if let Some(value) = env(v.name) {
                raw.values.insert(v.name.to_owned(), value);
            }
        }
        let settings = Self::parse(&mut raw);
        if raw.problems.is_empty() {
            settings.ok_or_else(|| SettingsError {
                problems: Vec::new(),
            })
        } else {
            Err(SettingsError {
                problems: raw.problems,
            })
        }
    }

    #[allow(clippy::too_many_lines)]
    fn parse(raw: &mut Raw) -> Option<Self> {
        let telegram = TelegramSettings {
            token: raw.secret("TELEGRAM_BOT_TOKEN"),
            api_url: match raw.url("TELEGRAM_API_URL") {
                Some(url) => url,
                None => raw.text_or_default("TELEGRAM_API_URL"),
            },
            access: parse_access(raw),
            allowed_chats: parse_chats(raw),
            names: raw
                .text_or_default("BUTLER_NAMES")
                .split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(str::to_owned)
                .collect(),
            limits: LimitSettings {
                per_minute: raw.int_or("RATE_LIMIT_PER_MINUTE", 0),
                burst: raw.int_or("RATE_LIMIT_BURST", 1),
                per_day: raw.int_or("DAILY_MESSAGE_QUOTA", 0),
            },
            voice_max_seconds: raw.int_or("VOICE_MAX_SECONDS", 1),
            voice_max_bytes: raw.int_or("VOICE_MAX_BYTES", 1),
            webhook: parse_webhook(raw),
            workers: raw.int_or("TELEGRAM_WORKERS", 1),
            inbox_lease: Duration::from_secs(raw.int_or("INBOX_LEASE_SECS", 15)),
            inbox_retention: Duration::from_secs(
                raw.int_or::<u64>("INBOX_RETENTION_HOURS", 48) * 3600,
            ),
            shutdown_grace: Duration::from_secs(raw.int_or("SHUTDOWN_GRACE_SECS", 20)),
        };
        let storage = parse_storage(raw);
        let base_urls = raw.url_list("LLM_BASE_URL");
        let backend = parse_backend(raw, !base_urls.is_empty());
        // The embedded engine decodes one reply per cache slot at once (in one batch); a server
        // batches.
        let cache_slots: u32 = raw.int_or("LLM_CACHE_SLOTS", 0);
        let max_concurrency = raw.int("LLM_MAX_CONCURRENCY").unwrap_or(match backend {
            LlmBackend::Embedded => usize::try_from(cache_slots.max(1)).unwrap_or(1),
            LlmBackend::Http => 4,
        });
        raw.note("LLM_MAX_CONCURRENCY", max_concurrency.to_string());
        let llm = LlmSettings {
            backend,
            gguf_path: raw.text("LLM_GGUF_PATH").map(PathBuf::from),
            models_dir: PathBuf::from(raw.text_or_default("LLM_MODELS_DIR")),
            base_urls,
            model: raw.text_or_default("LLM_MODEL"),
            api_key: raw.secret("LLM_API_KEY"),
            max_concurrency,
            timeout: Duration::from_secs(raw.int_or("LLM_TIMEOUT_SECS", 1)),
            #[allow(clippy::cast_possible_truncation)] // within 0..=2 by the table
            temperature: raw.number("LLM_TEMPERATURE") as f32,
            threads: raw.int("LLM_THREADS"),
            cache_slots,
        };
        let stt = SttSettings {
            base_url: raw.url("STT_BASE_URL"),
            model: raw.text_or_default("STT_MODEL"),
            language: raw.text("STT_LANGUAGE"),
            timeout: Duration::from_secs(raw.int_or("STT_TIMEOUT_SECS", 1)),
        };
        let personalization_enabled = raw.bool("PERSONALIZATION_ENABLED").unwrap_or(true);
        let memory = MemorySettings {
            recent_events: raw.int_or("MEMORY_RECENT_EVENTS", 1),
            compress_threshold: raw.int_or("MEMORY_COMPRESS_THRESHOLD", 1),
            compress_idle: Duration::from_secs(raw.int_or("MEMORY_COMPRESS_IDLE_SECS", 0)),
            compress_hard_limit: raw.int_or("MEMORY_COMPRESS_HARD_LIMIT", 1),
            keep_last: raw.int_or("MEMORY_KEEP_LAST", 1),
            summary_tokens: raw.int_or("MEMORY_SUMMARY_TOKENS", 1),
            facts_enabled: raw.bool("MEMORY_FACTS_ENABLED").unwrap_or(true),
        };
        if usize::try_from(memory.compress_threshold).is_ok_and(|t| t < memory.keep_last) {
            raw.problem(
                "MEMORY_COMPRESS_THRESHOLD",
                format!("must be at least MEMORY_KEEP_LAST ({})", memory.keep_last),
            );
        }
        if memory.compress_hard_limit < memory.compress_threshold {
            raw.problem(
                "MEMORY_COMPRESS_HARD_LIMIT",
                format!(
                    "must be at least MEMORY_COMPRESS_THRESHOLD ({})",
                    memory.compress_threshold
                ),
            );
        }
        let defaults = PromptBudget::default();
        let budget = PromptBudget {
            total: raw.int_or("PROMPT_TOTAL_TOKENS", 1),
            persona: raw.int_or("PROMPT_PERSONA_TOKENS", 1),
            summary: raw.int_or("PROMPT_SUMMARY_TOKENS", 1),
            memory: raw.int_or("PROMPT_MEMORY_TOKENS", 1),
            facts: raw.int_or("PROMPT_FACTS_TOKENS", 0),
            new_message: raw.int_or("PROMPT_NEW_MESSAGE_TOKENS", 1),
            model_window: raw.int_or("LLM_CONTEXT_WINDOW", 1),
            max_reply_tokens: raw.int_or("LLM_MAX_TOKENS", 1),
            ..defaults
        };
        if let Err(e) = budget.validate() {
            for p in e.problems {
                raw.problem("PROMPT_TOTAL_TOKENS", p.to_string());
            }
        }
        let tokenizer = parse_tokenizer(raw);
        let metrics_addr = raw.text("METRICS_ADDR").and_then(|a| {
            a.parse::<SocketAddr>()
                .map_err(|_| raw.expected("METRICS_ADDR"))
                .ok()
        });
        let log_format = match raw.choice("LOG_FORMAT") {
            Some("json") => LogFormat::Json,
            _ => LogFormat::Pretty,
        };
        raw.note(
            "LOG_FORMAT",
            if log_format == LogFormat::Json {
                "json"
            } else {
                "pretty"
            },
        );
        let reminders = parse_reminders(raw);
        Some(Self {
            telegram,
            storage,
            llm,
            stt,
            personalization_enabled,
            memory,
            budget,
            tokenizer,
            metrics_addr,
            log_format,
            reminders,
            in_effect: std::mem::take(&mut raw.in_effect),
        })
    }

    /// Every setting of the table, in its order, with the value it took effect with (`""`
    /// when unset, or not in effect — MongoDB's settings on SQLite, say), secrets as `***`.
    /// The values are the parser's own record ([`Raw`]), not a second list.
    #[must_use]
    pub fn describe(&self) -> Vec<(&'static str, String)> {
        VARIABLES
            .iter()
            .map(|v| {
                (
                    v.name,
                    self.in_effect.get(v.name).cloned().unwrap_or_default(),
                )
            })
            .collect()
    }
}

/// A value as echoed in an error: at most 60 characters, so a megabyte of junk stays readable.
fn excerpt(value: &str) -> String {
    const SHOWN: usize = 60;
    if value.chars().count() <= SHOWN {
        value.to_owned()
    } else {
        let head: String = value.chars().take(SHOWN).collect();
        format!("{head}…")
    }
}

/// Settings that existed once, with why they went: a configuration file that still sets one
/// gets that reason rather than "unknown key".
const RETIRED: &[(&str, &str)] = &[(
    "BUTLER_ADMIN_KEY",
    "profile_admin has no key of its own, because whoever can read the configuration and the \
     database needs none (docs/operations/admin.md says how to restrict it)",
)];

fn read_toml(path: &Path, raw: &mut Raw) {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => return raw.problem("--config", format!("cannot read {}: {e}", path.display())),
    };
    let table: toml::Table = match text.parse() {
        Ok(t) => t,
        Err(e) => {
            return raw.problem(
                "--config",
                format!("{} is not valid TOML: {}", path.display(), e.message()),
            )
        }
    };
    for (key, value) in table {
        let name = key.to_ascii_uppercase();
        if let Some((_, why)) = RETIRED.iter().find(|(retired, _)| *retired == name) {
            raw.problem(
                "--config",
                format!(
                    "{key:?} in {} is no longer a setting: {why}; remove it",
                    path.display()
                ),
            );
            continue;
        }
        if variable(&name).is_none() {
            raw.problem(
                "--config",
                format!("unknown key {key:?} in {}", path.display()),
            );
            continue;
        }
        let text = match value {
            toml::Value::String(s) => s,
            toml::Value::Array(items) => items
                .iter()
                .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_owned))
                .collect::<Vec<_>>()
                .join(","),
            other => other.to_string(),
        };
        raw.values.insert(name, text);
    }
}

/// Webhook mode when `TELEGRAM_WEBHOOK_URL` is set: an https URL (http only for a loopback
/// host, as tests and local proxies use), a listen address, and a secret Telegram accepts.
fn parse_webhook(raw: &mut Raw) -> Option<WebhookSettings> {
    let listen = raw
        .text_or_default("TELEGRAM_WEBHOOK_LISTEN")
        .parse::<SocketAddr>()
        .map_err(|_| raw.expected("TELEGRAM_WEBHOOK_LISTEN"))
        .ok();
    let secret = raw.secret("TELEGRAM_WEBHOOK_SECRET");
    let max_connections = raw.int_or("TELEGRAM_WEBHOOK_MAX_CONNECTIONS", 40);
    if secret.as_ref().is_some_and(|s| {
        let s = s.expose_secret();
        s.len() > 256
            || !s
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    }) {
        raw.expected("TELEGRAM_WEBHOOK_SECRET");
    }
    let text = raw.text("TELEGRAM_WEBHOOK_URL")?;
    let url = match url::Url::parse(&text) {
        Ok(u)
            if u.scheme() == "https"
                || (u.scheme() == "http"
                    && u.host_str().is_some_and(|h| {
                        h == "localhost" || h.starts_with("127.") || h == "[::1]"
                    })) =>
        {
            u
        }
        _ => {
            raw.expected("TELEGRAM_WEBHOOK_URL");
            return None;
        }
    };
    Some(WebhookSettings {
        url,
        listen: listen?,
        secret,
        max_connections,
    })
}

/// `ALLOWED_CHAT_IDS`: group chat ids, which Telegram makes negative (a positive id is a
/// user's, so a list that holds one was meant for `ALLOWED_USER_IDS`).
fn parse_chats(raw: &mut Raw) -> Vec<i64> {
    let Some(text) = raw.text("ALLOWED_CHAT_IDS") else {
        return Vec::new();
    };
    let parsed: Result<Vec<i64>, _> = text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::parse::<i64>)
        .collect();
    match parsed {
        Ok(ids) if !ids.is_empty() && ids.iter().all(|id| *id < 0) => {
            let listed = ids.iter().map(ToString::to_string).collect::<Vec<_>>();
            raw.note("ALLOWED_CHAT_IDS", listed.join(","));
            ids
        }
        _ => {
            raw.expected("ALLOWED_CHAT_IDS");
            Vec::new()
        }
    }
}

fn parse_access(raw: &mut Raw) -> Option<Access> {
    let text = raw.text("ALLOWED_USER_IDS")?;
    if text == "*" {
        return Some(Access::Everyone);
    }
    let parsed: Result<Vec<i64>, _> = text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::parse)
        .collect();
    match parsed {
        Ok(ids) if !ids.is_empty() => {
            let listed = ids.iter().map(ToString::to_string).collect::<Vec<_>>();
            raw.note("ALLOWED_USER_IDS", listed.join(","));
            Some(Access::Only(ids))
        }
        _ => {
            raw.expected("ALLOWED_USER_IDS");
            raw.note("ALLOWED_USER_IDS", "");
            None
        }
    }
}

fn parse_storage(raw: &mut Raw) -> StorageSettings {
    let uri = raw.secret("MONGODB_URI");
    let mongo = match raw.choice("STORAGE") {
        None => uri.is_some(),
        Some(choice) => choice == "mongodb",
    };
    let synchronous = match raw.choice("SQLITE_SYNCHRONOUS") {
        Some("normal") => SqliteSynchronous::Normal,
        _ => SqliteSynchronous::Full,
    };
    let Some(uri) = uri.filter(|_| mongo) else {
        if mongo {
            raw.problem(
                "MONGODB_URI",
                "required when STORAGE=mongodb: expected a mongodb:// or mongodb+srv:// URI"
                    .to_owned(),
            );
        }
        // MongoDB's settings are not in effect.
        raw.note("STORAGE", "sqlite");
        raw.note("MONGODB_URI", "");
        return StorageSettings::Sqlite {
            path: PathBuf::from(raw.text_or_default("SQLITE_PATH")),
            synchronous,
        };
    };
    raw.note("STORAGE", "mongodb");
    raw.note("SQLITE_SYNCHRONOUS", "");
    if !(uri.expose_secret().starts_with("mongodb://")
        || uri.expose_secret().starts_with("mongodb+srv://"))
    {
        raw.expected("MONGODB_URI");
    }
    let ttl: u32 = raw.int_or("MEMORY_TTL_DAYS", 0);
    StorageSettings::Mongo {
        uri,
        database: raw.text_or_default("MONGODB_DB"),
        ttl_days: (ttl > 0).then_some(ttl),
    }
}

fn parse_backend(raw: &mut Raw, has_base_url: bool) -> LlmBackend {
    let backend = match raw.choice("LLM_BACKEND") {
        None if has_base_url => LlmBackend::Http,
        None | Some("embedded") => LlmBackend::Embedded,
        Some(_) => {
            if !has_base_url && raw.get("LLM_BASE_URL").is_none() {
                raw.problem(
                    "LLM_BASE_URL",
                    "required when LLM_BACKEND=http: expected an http(s) URL ending in /v1"
                        .to_owned(),
                );
            }
            LlmBackend::Http
        }
    };
    raw.note("LLM_BACKEND", backend.as_str());
    backend
}

fn parse_tokenizer(raw: &mut Raw) -> TokenizerSettings {
    let chosen = raw.choice("TOKENIZER").unwrap_or("estimator");
    raw.note("TOKENIZER", chosen);
    match chosen {
        "qwen-tiktoken" => match raw.text("TOKENIZER_PATH") {
            Some(p) => TokenizerSettings::QwenTiktoken {
                path: PathBuf::from(p),
            },
            None => {
                raw.problem(
                    "TOKENIZER_PATH",
                    "required when TOKENIZER=qwen-tiktoken: expected a path to qwen.tiktoken"
                        .to_owned(),
                );
                TokenizerSettings::Estimator
            }
        },
        "llama-tokenize" => match raw.url("TOKENIZER_URL").or_else(|| {
            raw.get("LLM_BASE_URL")
                .and_then(|list| list.split(',').next())
                .map(|u| {
                    u.trim()
                        .trim_end_matches('/')
                        .trim_end_matches("/v1")
                        .to_owned()
                })
        }) {
            Some(url) => {
                raw.note("TOKENIZER_URL", url.clone());
                TokenizerSettings::LlamaTokenize { url }
            }
            None => {
                raw.problem(
                    "TOKENIZER_URL",
                    "required when TOKENIZER=llama-tokenize: expected an http(s) URL".to_owned(),
                );
                TokenizerSettings::Estimator
            }
        },
        _ => TokenizerSettings::Estimator,
    }
}

fn parse_reminders(raw: &mut Raw) -> ReminderSettings {
    let zone_name = raw.text_or_default("DEFAULT_TIME_ZONE");
    let default_zone = match butler_domain::reminder::UserTimeZone::new(&zone_name) {
        Ok(zone) => zone,
        Err(error) => {
            raw.problem("DEFAULT_TIME_ZONE", error.to_string());
            butler_domain::reminder::UserTimeZone::utc()
        }
    };
    ReminderSettings {
        enabled: raw.bool("REMINDERS_ENABLED").unwrap_or(true),
        default_zone,
        max_per_user: raw.int_or("REMINDERS_MAX_PER_USER", 50),
        horizon_days: raw.int_or("REMINDERS_HORIZON_DAYS", 366),
        late_after: Duration::from_secs(raw.int_or("REMINDERS_LATE_AFTER_SECS", 300)),
        lease: Duration::from_secs(raw.int_or("REMINDERS_LEASE_SECS", 60)),
    }
}
