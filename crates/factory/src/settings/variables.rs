//! Every setting, once: its environment variable, the expected form, the default and what it
//! does. `butler-bot --help`, the example TOML and the validation errors are all generated
//! from this table, so they cannot drift apart.

/// One configurable variable.
#[derive(Debug, Clone, Copy)]
pub struct Variable {
    /// Environment variable name (the TOML key is the same name in lower case).
    pub name: &'static str,
    /// The expected form, as shown in errors.
    pub expected: &'static str,
    /// The default, or "" for none.
    pub default: &'static str,
    /// What it does.
    pub help: &'static str,
    /// Whether the value is a secret (masked whenever printed).
    pub secret: bool,
}

const fn var(
    name: &'static str,
    expected: &'static str,
    default: &'static str,
    help: &'static str,
) -> Variable {
    Variable {
        name,
        expected,
        default,
        help,
        secret: false,
    }
}

const fn secret(name: &'static str, expected: &'static str, help: &'static str) -> Variable {
    Variable {
        name,
        expected,
        default: "",
        help,
        secret: true,
    }
}

/// All variables, grouped as in the example configuration.
pub const VARIABLES: &[Variable] = &[
    secret(
        "TELEGRAM_BOT_TOKEN",
        "a bot token from @BotFather",
        "Telegram bot token (needed to run the bot; not for `chat`).",
    ),
    var(
        "TELEGRAM_API_URL",
        "an http(s) URL",
        "https://api.telegram.org",
        "Bot API server (set for a local Bot API server).",
    ),
    var(
        "ALLOWED_USER_IDS",
        "comma-separated integer user ids",
        "",
        "Only these users are answered; empty = everyone.",
    ),
    var(
        "VOICE_MAX_SECONDS",
        "an integer number of seconds",
        "300",
        "Longest voice message transcribed.",
    ),
    var(
        "VOICE_MAX_BYTES",
        "an integer number of bytes (≤ 20000000)",
        "20000000",
        "Largest voice file downloaded (Bot API limit: 20 MB).",
    ),
    var(
        "STORAGE",
        "sqlite or mongodb",
        "",
        "Storage backend; default: mongodb when MONGODB_URI is set, else sqlite.",
    ),
    var(
        "SQLITE_PATH",
        "a file path",
        "./data/butler.db",
        "SQLite database file (directory created if missing).",
    ),
    secret(
        "MONGODB_URI",
        "a mongodb:// or mongodb+srv:// URI",
        "MongoDB connection string (may hold credentials).",
    ),
    var(
        "MONGODB_DB",
        "a database name",
        "butler",
        "MongoDB database name.",
    ),
    var(
        "MEMORY_TTL_DAYS",
        "an integer number of days; 0 disables",
        "90",
        "MongoDB TTL on memory events.",
    ),
    var(
        "LLM_BACKEND",
        "embedded or http",
        "",
        "LLM engine; default: http when LLM_BASE_URL is set, else embedded (in process).",
    ),
    var(
        "LLM_GGUF_PATH",
        "a path to a .gguf file",
        "",
        "GGUF chat model for the embedded engine; unset = Qwen2.5-1.5B-Instruct Q4_K_M in LLM_MODELS_DIR, downloaded on first use.",
    ),
    var(
        "LLM_MODELS_DIR",
        "a directory",
        "./data/models",
        "Where `butler-bot models pull` and the first start put downloaded models.",
    ),
    var(
        "LLM_BASE_URL",
        "an http(s) URL ending in /v1",
        "",
        "OpenAI-compatible server (vLLM, llama.cpp, Ollama /v1, LM Studio).",
    ),
    var(
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
    var(
        "LLM_MAX_CONCURRENCY",
        "an integer ≥ 1",
        "",
        "In-flight LLM requests (replies and compression share it); default 4 for http, 1 for embedded.",
    ),
    var(
        "LLM_TIMEOUT_SECS",
        "an integer number of seconds ≥ 1",
        "60",
        "Deadline of one LLM call, retries included.",
    ),
    var(
        "LLM_TEMPERATURE",
        "a number from 0 to 2",
        "0.7",
        "Sampling temperature of replies.",
    ),
    var(
        "LLM_MAX_TOKENS",
        "an integer ≥ 1",
        "512",
        "max_tokens of a reply.",
    ),
    var(
        "LLM_CONTEXT_WINDOW",
        "an integer ≥ 1",
        "4096",
        "The model's context window (prompt + reply must fit); the embedded engine uses the smaller of this and the model's own.",
    ),
    var(
        "STT_BASE_URL",
        "an http(s) URL ending in /v1",
        "",
        "OpenAI-compatible transcription server; unset = voice not supported.",
    ),
    var(
        "STT_MODEL",
        "a model name",
        "whisper-1",
        "Transcription model requested from the server.",
    ),
    var(
        "STT_LANGUAGE",
        "a language code such as ru or en",
        "",
        "Language hint for transcription; empty = auto-detect.",
    ),
    var(
        "STT_TIMEOUT_SECS",
        "an integer number of seconds ≥ 1",
        "60",
        "Deadline of one transcription, retries included.",
    ),
    var(
        "PERSONALIZATION_ENABLED",
        "true or false",
        "true",
        "false = stateless replies with no persona or memory.",
    ),
    var(
        "MEMORY_RECENT_EVENTS",
        "an integer ≥ 1",
        "20",
        "Recent events loaded into a prompt.",
    ),
    var(
        "MEMORY_COMPRESS_THRESHOLD",
        "an integer ≥ 1",
        "50",
        "More events than this trigger compression.",
    ),
    var(
        "MEMORY_KEEP_LAST",
        "an integer ≥ 1",
        "20",
        "Events kept verbatim after compression.",
    ),
    var(
        "MEMORY_SUMMARY_TOKENS",
        "an integer ≥ 1",
        "300",
        "Longest memory summary, in tokens.",
    ),
    var(
        "PROMPT_TOTAL_TOKENS",
        "an integer ≥ 1",
        "2000",
        "Whole prompt budget, template overhead included.",
    ),
    var(
        "PROMPT_PERSONA_TOKENS",
        "an integer ≥ 1",
        "200",
        "Persona section budget.",
    ),
    var(
        "PROMPT_SUMMARY_TOKENS",
        "an integer ≥ 1",
        "300",
        "Summary budget inside the prompt.",
    ),
    var(
        "PROMPT_MEMORY_TOKENS",
        "an integer ≥ 1",
        "800",
        "Recent-turns budget.",
    ),
    var(
        "PROMPT_NEW_MESSAGE_TOKENS",
        "an integer ≥ 1",
        "200",
        "New-message budget (longer messages are cut with a marker).",
    ),
    var(
        "TOKENIZER",
        "estimator, qwen-tiktoken or llama-tokenize",
        "estimator",
        "How prompt tokens are counted with LLM_BACKEND=http (the embedded engine always counts with its model's vocabulary).",
    ),
    var(
        "TOKENIZER_PATH",
        "a path to qwen.tiktoken",
        "",
        "Vocabulary file for TOKENIZER=qwen-tiktoken.",
    ),
    var(
        "TOKENIZER_URL",
        "an http(s) URL of a llama.cpp server",
        "",
        "Server whose /tokenize is used for TOKENIZER=llama-tokenize.",
    ),
    var(
        "METRICS_ADDR",
        "host:port, e.g. 127.0.0.1:9464",
        "",
        "Prometheus /metrics, /healthz, /readyz listener; empty = off.",
    ),
    secret(
        "BUTLER_ADMIN_KEY",
        "any string of ≥ 16 characters",
        "Key profile_admin callers must present in PROFILE_ADMIN_API_KEY.",
    ),
    var(
        "LOG_FORMAT",
        "pretty or json",
        "pretty",
        "Log output format (filter with RUST_LOG).",
    ),
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
        out.push_str(&format!("  {:<28} {}{default}\n", v.name, v.help));
    }
    out
}
