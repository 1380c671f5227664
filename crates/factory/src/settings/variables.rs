//! Every setting, once: its environment variable, its form and range, the default and what it
//! does. Parsing (`Settings::load`), the validation errors, `butler-bot --help`,
//! `butler-bot config` and the example file `config/butler.example.toml` all come from this
//! table, and tests hold the docs to it, so none of them can drift apart.

use std::fmt::Write as _;

/// What values a variable takes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    /// Free-form text, described by the string (e.g. "a file path").
    Text(&'static str),
    /// A secret string: masked whenever printed, never echoed in errors.
    Secret(&'static str),
    /// A whole number of `unit` ("" for a plain count) from `min` to `max` inclusive.
    Int {
        /// What is counted ("seconds", "tokens", …; "" for none).
        unit: &'static str,
        /// Smallest accepted value.
        min: u64,
        /// Largest accepted value: large enough for any real use, small enough that nothing
        /// derived from it (deadlines, sums of budgets) can overflow.
        max: u64,
    },
    /// A decimal number from `min` to `max` inclusive.
    Number {
        /// Smallest accepted value.
        min: f64,
        /// Largest accepted value.
        max: f64,
    },
    /// `true` or `false` (also 1/0, yes/no, on/off).
    Bool,
    /// One of these words (case-insensitive).
    Choice(&'static [&'static str]),
}

/// One configurable variable.
#[derive(Debug, Clone, Copy)]
pub struct Variable {
    /// Environment variable name (the TOML key is the same name in lower case).
    pub name: &'static str,
    /// The values it takes.
    pub kind: Kind,
    /// The default as written in the environment, or "" for none (the help says what unset
    /// means).
    pub default: &'static str,
    /// What it does.
    pub help: &'static str,
}

impl Variable {
    /// Whether the value is a secret (masked whenever printed).
    #[must_use]
    pub const fn secret(&self) -> bool {
        matches!(self.kind, Kind::Secret(_))
    }

    /// The expected form, as shown in errors and the example file.
    #[must_use]
    pub fn expected(&self) -> String {
        match self.kind {
            Kind::Text(form) | Kind::Secret(form) => form.to_owned(),
            Kind::Int { unit, min, max } => {
                let what = if unit.is_empty() {
                    "an integer".to_owned()
                } else {
                    format!("an integer number of {unit}")
                };
                format!("{what} from {min} to {max}")
            }
            Kind::Number { min, max } => format!("a number from {min} to {max}"),
            Kind::Bool => "true or false".to_owned(),
            Kind::Choice(words) => match words {
                [] => String::new(),
                [one] => (*one).to_owned(),
                [init @ .., last] => format!("{} or {last}", init.join(", ")),
            },
        }
    }

    /// The TOML key: the name in lower case.
    #[must_use]
    pub fn key(&self) -> String {
        self.name.to_ascii_lowercase()
    }
}

const fn text(
    name: &'static str,
    form: &'static str,
    default: &'static str,
    help: &'static str,
) -> Variable {
    Variable {
        name,
        kind: Kind::Text(form),
        default,
        help,
    }
}

const fn secret(name: &'static str, form: &'static str, help: &'static str) -> Variable {
    Variable {
        name,
        kind: Kind::Secret(form),
        default: "",
        help,
    }
}

const fn int(
    name: &'static str,
    unit: &'static str,
    (min, max): (u64, u64),
    default: &'static str,
    help: &'static str,
) -> Variable {
    Variable {
        name,
        kind: Kind::Int { unit, min, max },
        default,
        help,
    }
}

const fn choice(
    name: &'static str,
    words: &'static [&'static str],
    default: &'static str,
    help: &'static str,
) -> Variable {
    Variable {
        name,
        kind: Kind::Choice(words),
        default,
        help,
    }
}

/// Token budgets and windows: up to a million tokens.
const TOKENS: (u64, u64) = (1, 1_048_576);
/// Deadlines: up to a day.
const DEADLINE: (u64, u64) = (1, 86_400);

/// All variables, grouped as in the example configuration.
pub const VARIABLES: &[Variable] = &[
    secret(
        "TELEGRAM_BOT_TOKEN",
        "a bot token from @BotFather",
        "Telegram bot token (needed to run the bot; not for `chat`).",
    ),
    text(
        "TELEGRAM_API_URL",
        "an http(s) URL",
        "https://api.telegram.org",
        "Bot API server (set for a local Bot API server).",
    ),
    text(
        "ALLOWED_USER_IDS",
        "comma-separated Telegram user ids, or * for everyone",
        "",
        "Who the bot answers in private chats. Required to run the bot: ids, or * to open it to anyone who finds it (logged as a warning). Not used by `chat`.",
    ),
    text(
        "ALLOWED_CHAT_IDS",
        "comma-separated Telegram group chat ids (negative, e.g. -1001234567890)",
        "",
        "Groups the butler works in: any member may address it there (@mention, a reply to it, or its name first), and it keeps the group's own memory, never a member's personal one. In any other group it says so once and leaves. Unset = no groups.",
    ),
    text(
        "BUTLER_NAMES",
        "comma-separated names",
        "Альфред,Alfred",
        "Names that address the butler in a group when a message starts with one («Альфред, …»), besides an @mention or a reply to its message.",
    ),
    int(
        "RATE_LIMIT_PER_MINUTE",
        "messages",
        (0, 10_000),
        "20",
        "Messages a user may send per minute on average (token bucket); 0 = no limit. Refused messages are not stored and cost no model call.",
    ),
    int(
        "RATE_LIMIT_BURST",
        "messages",
        (1, 10_000),
        "10",
        "Messages a user may send at once before the per-minute rate applies.",
    ),
    int(
        "DAILY_MESSAGE_QUOTA",
        "messages",
        (0, 1_000_000),
        "500",
        "Messages a user may send per UTC day; 0 = no quota. profile_admin limits sets per-user exceptions.",
    ),
    int(
        "VOICE_MAX_SECONDS",
        "seconds",
        (1, 86_400),
        "300",
        "Longest voice message transcribed.",
    ),
    int(
        "VOICE_MAX_BYTES",
        "bytes",
        (1, 20_000_000),
        "20000000",
        "Largest voice file downloaded (Bot API limit: 20 MB).",
    ),
    text(
        "TELEGRAM_WEBHOOK_URL",
        "an https URL Telegram can reach",
        "",
        "Webhook mode: Telegram posts updates to this public URL (behind a reverse proxy or load balancer; its path is the path served). Unset = long polling. Any number of processes on one MongoDB may serve one webhook.",
    ),
    text(
        "TELEGRAM_WEBHOOK_LISTEN",
        "a socket address, e.g. 0.0.0.0:8443",
        "127.0.0.1:8443",
        "Webhook mode: where the bot listens for the proxy's requests.",
    ),
    secret(
        "TELEGRAM_WEBHOOK_SECRET",
        "1-256 characters of A-Z a-z 0-9 _ -",
        "Webhook mode: the secret Telegram sends with every update (requests without it get 401). Unset = derived from the bot token, the same in every replica.",
    ),
    int(
        "TELEGRAM_WEBHOOK_MAX_CONNECTIONS",
        "connections",
        (1, 100),
        "40",
        "Webhook mode: at most this many update requests Telegram sends at once, to all replicas together (setWebhook's max_connections).",
    ),
    int(
        "TELEGRAM_WORKERS",
        "users",
        (1, 100_000),
        "256",
        "Users this process answers at once (each user's messages one at a time, in order).",
    ),
    int(
        "INBOX_LEASE_SECS",
        "seconds",
        (2, 3_600),
        "15",
        "How long a process's claim on a user's pending updates lasts unless renewed: after a crash, another replica (or the restarted process on MongoDB) takes them over within this time.",
    ),
    int(
        "INBOX_RETENTION_HOURS",
        "hours",
        (1, 8_760),
        "48",
        "How long answered updates are remembered, so Telegram's redeliveries are dropped.",
    ),
    int(
        "SHUTDOWN_GRACE_SECS",
        "seconds",
        (0, 3_600),
        "20",
        "On SIGTERM or Ctrl-C, how long replies and background compressions in flight may take to finish, counted from the signal; then replies still running are released for the next process and compressions cut (memory unchanged). Keep it at least 5 s below the supervisor's stop timeout.",
    ),
    choice(
        "STORAGE",
        &["sqlite", "mongodb"],
        "",
        "Storage backend; unset: mongodb when MONGODB_URI is set, else sqlite.",
    ),
    text(
        "SQLITE_PATH",
        "a file path",
        "./data/butler.db",
        "SQLite database file (directory created if missing).",
    ),
    choice(
        "SQLITE_SYNCHRONOUS",
        &["full", "normal"],
        "full",
        "SQLite durability: full = every commit reaches the disk (survives a power loss); normal = faster commits that survive a crash of the process, not a power loss (docs/storage.md).",
    ),
    secret(
        "MONGODB_URI",
        "a mongodb:// or mongodb+srv:// URI",
        "MongoDB connection string (may hold credentials).",
    ),
    text(
        "MONGODB_DB",
        "a database name",
        "butler",
        "MongoDB database name.",
    ),
    int(
        "MEMORY_TTL_DAYS",
        "days",
        (0, 36_500),
        "90",
        "MongoDB TTL on memory events and facts; 0 disables it.",
    ),
    choice(
        "LLM_BACKEND",
        &["embedded", "http"],
        "",
        "LLM engine; unset: http when LLM_BASE_URL is set, else embedded (in process).",
    ),
    text(
        "LLM_GGUF_PATH",
        "a path to a .gguf file",
        "",
        "GGUF chat model for the embedded engine; unset = Qwen2.5-1.5B-Instruct Q4_K_M in LLM_MODELS_DIR, downloaded on first use.",
    ),
    text(
        "LLM_MODELS_DIR",
        "a directory",
        "./data/models",
        "Where `butler-bot models pull` and the first start put downloaded models.",
    ),
    int(
        "LLM_THREADS",
        "threads",
        (1, 256),
        "",
        "CPU threads of the embedded engine; unset = every core.",
    ),
    int(
        "LLM_CACHE_SLOTS",
        "conversations",
        (0, 64),
        "4",
        "Conversations whose prompt cache (KV state) the embedded engine keeps between turns, so a turn reads only what is new; each holds PROMPT_TOTAL_TOKENS + LLM_MAX_TOKENS rounded up to 256, plus 512, tokens of cache (3072 by default), at most LLM_CONTEXT_WINDOW. 0 = read every prompt from scratch.",
    ),
    text(
        "LLM_BASE_URL",
        "an http(s) URL ending in /v1, or several separated by commas",
        "",
        "OpenAI-compatible server (vLLM, llama.cpp, Ollama /v1, LM Studio); several servers of the same model spread the load and stand in for each other (docs/llm.md, Several servers).",
    ),
    text(
        "LLM_MODEL",
        "a model name",
        "qwen2.5-7b-instruct",
        "Model requested from the server.",
    ),
    secret(
        "LLM_API_KEY",
        "any string",
        "Bearer key for the LLM server, if it needs one.",
    ),
    int(
        "LLM_MAX_CONCURRENCY",
        "requests",
        (1, 1_024),
        "",
        "In-flight LLM requests per server (replies and compression share it; the embedded engine counts replies only and serves background work after them); unset: 4 for http, LLM_CACHE_SLOTS (at least 1) for embedded.",
    ),
    int(
        "LLM_TIMEOUT_SECS",
        "seconds",
        DEADLINE,
        "60",
        "Deadline of one LLM call, retries included.",
    ),
    Variable {
        name: "LLM_TEMPERATURE",
        kind: Kind::Number { min: 0.0, max: 2.0 },
        default: "0.7",
        help: "Sampling temperature of replies.",
    },
    int(
        "LLM_MAX_TOKENS",
        "tokens",
        TOKENS,
        "512",
        "max_tokens of a reply.",
    ),
    int(
        "LLM_CONTEXT_WINDOW",
        "tokens",
        TOKENS,
        "4096",
        "The model's context window (prompt + reply must fit); the embedded engine caps it by the model's own and sizes each cache slot from the prompt budget within it (LLM_CACHE_SLOTS).",
    ),
    text(
        "STT_BASE_URL",
        "an http(s) URL ending in /v1",
        "",
        "OpenAI-compatible transcription server; unset = voice not supported.",
    ),
    text(
        "STT_MODEL",
        "a model name",
        "whisper-1",
        "Transcription model requested from the server.",
    ),
    text(
        "STT_LANGUAGE",
        "a language code such as ru or en",
        "",
        "Language hint for transcription; unset = auto-detect.",
    ),
    int(
        "STT_TIMEOUT_SECS",
        "seconds",
        DEADLINE,
        "60",
        "Deadline of one transcription, retries included.",
    ),
    Variable {
        name: "PERSONALIZATION_ENABLED",
        kind: Kind::Bool,
        default: "true",
        help: "false = stateless replies with no persona or memory.",
    },
    int(
        "MEMORY_RECENT_EVENTS",
        "events",
        (1, 1_000),
        "20",
        "Recent events loaded into a prompt.",
    ),
    int(
        "MEMORY_COMPRESS_THRESHOLD",
        "events",
        (1, 100_000),
        "50",
        "More events than this trigger compression (at least MEMORY_KEEP_LAST), run once the user has been quiet for MEMORY_COMPRESS_IDLE_SECS.",
    ),
    int(
        "MEMORY_COMPRESS_IDLE_SECS",
        "seconds",
        (0, 86_400),
        "20",
        "A due compression waits until the user has sent nothing for this long, so its model calls do not compete with the user's replies; 0 = at once. The same quiet moment extracts facts from turns not yet folded (with facts on, over MEMORY_RECENT_EVENTS events); 0 = no such extraction.",
    ),
    int(
        "MEMORY_COMPRESS_HARD_LIMIT",
        "events",
        (1, 100_000),
        "70",
        "More events than this compress at once, quiet or not (at least MEMORY_COMPRESS_THRESHOLD).",
    ),
    int(
        "MEMORY_KEEP_LAST",
        "events",
        (1, 10_000),
        "20",
        "Events kept verbatim after compression.",
    ),
    int(
        "MEMORY_SUMMARY_TOKENS",
        "tokens",
        TOKENS,
        "300",
        "Longest memory summary, in tokens.",
    ),
    Variable {
        name: "MEMORY_FACTS_ENABLED",
        kind: Kind::Bool,
        default: "true",
        help: "Extract facts during compression and put the relevant ones in prompts (docs/memory.md).",
    },
    int(
        "PROMPT_TOTAL_TOKENS",
        "tokens",
        TOKENS,
        "2000",
        "Whole prompt budget, template overhead included.",
    ),
    int(
        "PROMPT_PERSONA_TOKENS",
        "tokens",
        TOKENS,
        "200",
        "Persona section budget.",
    ),
    int(
        "PROMPT_SUMMARY_TOKENS",
        "tokens",
        TOKENS,
        "300",
        "Summary budget inside the prompt.",
    ),
    int(
        "PROMPT_MEMORY_TOKENS",
        "tokens",
        TOKENS,
        "800",
        "Memory budget: recent turns and remembered facts together.",
    ),
    int(
        "PROMPT_FACTS_TOKENS",
        "tokens",
        (0, 1_048_576),
        "200",
        "Of PROMPT_MEMORY_TOKENS, the most remembered facts may use; 0 leaves facts out of prompts.",
    ),
    int(
        "PROMPT_NEW_MESSAGE_TOKENS",
        "tokens",
        TOKENS,
        "200",
        "New-message budget (longer messages are cut with a marker).",
    ),
    choice(
        "TOKENIZER",
        &["estimator", "qwen-tiktoken", "llama-tokenize"],
        "estimator",
        "How prompt tokens are counted with LLM_BACKEND=http (the embedded engine always counts with its model's vocabulary).",
    ),
    text(
        "TOKENIZER_PATH",
        "a path to qwen.tiktoken",
        "",
        "Vocabulary file for TOKENIZER=qwen-tiktoken.",
    ),
    text(
        "TOKENIZER_URL",
        "an http(s) URL of a llama.cpp server",
        "",
        "Server whose /tokenize is used for TOKENIZER=llama-tokenize; unset = LLM_BASE_URL without /v1.",
    ),
    Variable {
        name: "REMINDERS_ENABLED",
        kind: Kind::Bool,
        default: "true",
        help: "Reminders asked for in private chats («напомни завтра в 9 …») and delivered by the bot; false = the butler does not take them and fires none.",
    },
    text(
        "DEFAULT_TIME_ZONE",
        "an IANA time zone, e.g. Europe/Moscow",
        "Europe/Moscow",
        "The time zone reminders are resolved in for users whose profile names none.",
    ),
    int(
        "REMINDERS_MAX_PER_USER",
        "",
        (1, 10_000),
        "50",
        "Most pending reminders one user may have.",
    ),
    int(
        "REMINDERS_HORIZON_DAYS",
        "days",
        (1, 3_660),
        "366",
        "How far ahead a reminder may be set.",
    ),
    int(
        "REMINDERS_LATE_AFTER_SECS",
        "seconds",
        (1, 86_400),
        "300",
        "A reminder delivered later than this after its time (after downtime) carries a short apology for being late.",
    ),
    int(
        "REMINDERS_LEASE_SECS",
        "seconds",
        (2, 3_600),
        "60",
        "How long a process's claim on a due reminder lasts: a reminder whose claimer crashed before sending it is sent by another replica (or the restarted process) after this time.",
    ),
    text(
        "METRICS_ADDR",
        "host:port, e.g. 127.0.0.1:9464",
        "",
        "Prometheus /metrics, /healthz, /readyz listener; unset = off.",
    ),
    choice(
        "LOG_FORMAT",
        &["pretty", "json"],
        "pretty",
        "Log output format (filter with RUST_LOG).",
    ),
];

/// Environment variables the programs read that are not settings of this table: the log
/// filter and the test harness's own. The docs test accepts these.
pub const OTHER_VARIABLES: &[&str] = &[
    "RUST_LOG",
    "BUTLER_TEST_MONGODB_URI",
    "BUTLER_TEST_SERVICES_DIR",
];

/// Looks a variable up by name.
#[must_use]
pub fn variable(name: &str) -> Option<&'static Variable> {
    VARIABLES.iter().find(|v| v.name == name)
}

/// The table as help text for `--help`.
#[must_use]
pub fn help_text() -> String {
    let mut out =
        String::from("Environment variables (or the same names in lower case in --config FILE):\n");
    for v in VARIABLES {
        let default = if v.default.is_empty() {
            String::new()
        } else {
            format!(" [default: {}]", v.default)
        };
        let _ = writeln!(out, "  {:<28} {}{default}", v.name, v.help);
    }
    out
}

/// The example configuration file (`config/butler.example.toml`, and `butler-bot config
/// --example`): every variable with its help and expected form; a real `key = default` line
/// where there is a default, a commented one where unset has a meaning of its own.
#[must_use]
pub fn example_toml() -> String {
    let mut out = String::from(
        "# Personalised Butler: example configuration, generated from the settings table by\n\
         # `butler-bot config --example` (a test fails when this file drifts from it).\n\
         # Pass it with `--config FILE`. Every key is the lower-case name of an environment\n\
         # variable; environment variables override the file. The values below are the\n\
         # defaults; commented keys are unset by default (the help says what that means).\n\
         # Secrets (tokens, keys, URIs with passwords) are better kept in the environment.\n",
    );
    for v in VARIABLES {
        out.push('\n');
        for line in wrap(&format!("{} Expected: {}.", v.help, v.expected()), 92) {
            let _ = writeln!(out, "# {line}");
        }
        if v.default.is_empty() {
            let _ = writeln!(out, "# {} = \"\"", v.key());
        } else {
            let _ = writeln!(out, "{} = {}", v.key(), toml_value(v));
        }
    }
    out
}

/// Words of `text` in lines of at most `width` characters (a longer word gets a line of its
/// own).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// The default as a TOML value of the variable's kind.
fn toml_value(v: &Variable) -> String {
    match v.kind {
        Kind::Int { .. } | Kind::Number { .. } | Kind::Bool => v.default.to_owned(),
        Kind::Text(_) | Kind::Secret(_) | Kind::Choice(_) => {
            toml::Value::String(v.default.to_owned()).to_string()
        }
    }
}
