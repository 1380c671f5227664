//! Settings: layering, defaults, validation errors that name the variable, masked secrets.

use std::collections::HashMap;
use std::io::Write;

use butler_factory::settings::{LogFormat, StorageSettings, TokenizerSettings};
use butler_factory::Settings;

fn load(vars: &[(&str, &str)]) -> Result<Settings, butler_factory::SettingsError> {
    let env: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    Settings::from_sources(None, |name| env.get(name).cloned())
}

#[test]
fn with_no_configuration_the_butler_uses_embedded_sqlite_and_the_plan_defaults() {
    let s = load(&[]).unwrap();
    assert!(
        matches!(&s.storage, StorageSettings::Sqlite { path } if path.ends_with("data/butler.db"))
    );
    assert!(s.personalization_enabled);
    assert_eq!(s.budget.total, 2000);
    assert_eq!(s.budget.max_reply_tokens, 512);
    assert_eq!(s.memory.compress_threshold, 50);
    assert_eq!(s.memory.keep_last, 20);
    assert_eq!(s.tokenizer, TokenizerSettings::Estimator);
    assert_eq!(s.log_format, LogFormat::Pretty);
    assert!(s.telegram.allowed_user_ids.is_empty());
    assert!(s.llm.base_url.is_none());
}

#[test]
fn a_mongodb_uri_selects_mongodb_unless_sqlite_is_chosen_explicitly() {
    let s = load(&[
        ("MONGODB_URI", "mongodb://u:p@db:27017"),
        ("MONGODB_DB", "alfred"),
    ])
    .unwrap();
    assert!(
        matches!(&s.storage, StorageSettings::Mongo { database, ttl_days: Some(90), .. } if database == "alfred")
    );
    let s = load(&[("MONGODB_URI", "mongodb://db"), ("STORAGE", "sqlite")]).unwrap();
    assert!(matches!(s.storage, StorageSettings::Sqlite { .. }));
    let s = load(&[("MONGODB_URI", "mongodb://db"), ("MEMORY_TTL_DAYS", "0")]).unwrap();
    assert!(matches!(
        s.storage,
        StorageSettings::Mongo { ttl_days: None, .. }
    ));
}

#[test]
fn every_invalid_variable_is_reported_at_once_with_its_expected_form() {
    let err = load(&[
        ("LLM_MAX_CONCURRENCY", "zero"),
        ("PERSONALIZATION_ENABLED", "maybe"),
        ("ALLOWED_USER_IDS", "1,two,3"),
        ("LLM_BASE_URL", "localhost:8000"),
        ("METRICS_ADDR", "everywhere"),
        ("STORAGE", "postgres"),
    ])
    .unwrap_err();
    let text = err.to_string();
    for (name, expected) in [
        ("LLM_MAX_CONCURRENCY", "an integer ≥ 1"),
        ("PERSONALIZATION_ENABLED", "true or false"),
        ("ALLOWED_USER_IDS", "comma-separated integer user ids"),
        ("LLM_BASE_URL", "an http(s) URL"),
        ("METRICS_ADDR", "host:port"),
        ("STORAGE", "sqlite or mongodb"),
    ] {
        assert!(
            text.contains(&format!("{name}: expected {expected}")),
            "missing {name} in:\n{text}"
        );
    }
    assert_eq!(err.problems.len(), 6);
}

#[test]
fn a_prompt_budget_larger_than_the_window_fails_start_up() {
    let err = load(&[("PROMPT_TOTAL_TOKENS", "3800"), ("LLM_MAX_TOKENS", "512")]).unwrap_err();
    assert!(
        err.to_string().contains("exceeds the model window (4096)"),
        "{err}"
    );
}

#[test]
fn secrets_never_appear_in_errors_or_printed_configuration() {
    let err = load(&[
        ("MONGODB_URI", "postgres://admin:hunter2-secret@db"),
        ("BUTLER_ADMIN_KEY", "short-s3cret"),
    ])
    .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("MONGODB_URI: expected a mongodb://"),
        "{text}"
    );
    assert!(text.contains("BUTLER_ADMIN_KEY"), "{text}");
    assert!(
        !text.contains("hunter2") && !text.contains("s3cret"),
        "{text}"
    );

    let s = load(&[
        ("TELEGRAM_BOT_TOKEN", "123:bot-token-value"),
        ("LLM_API_KEY", "sk-api-key-value"),
        ("MONGODB_URI", "mongodb://u:mongo-password@db"),
        ("BUTLER_ADMIN_KEY", "an-admin-key-long-enough"),
    ])
    .unwrap();
    let printed = format!("{:?}\n{:?}", s, s.describe());
    for secret in [
        "bot-token-value",
        "sk-api-key-value",
        "mongo-password",
        "an-admin-key-long-enough",
    ] {
        assert!(!printed.contains(secret), "{secret} leaked");
    }
    assert!(s
        .describe()
        .contains(&("TELEGRAM_BOT_TOKEN", "***".to_owned())));
}

#[test]
fn environment_variables_override_the_toml_file() {
    let mut file = tempfile();
    writeln!(file.1, "llm_model = \"from-file\"\nllm_max_concurrency = 2\nallowed_user_ids = [1, 2]\npersonalization_enabled = false").unwrap();
    let env: HashMap<&str, &str> = [("LLM_MODEL", "from-env")].into();
    let s = Settings::from_sources(Some(&file.0), |n| env.get(n).map(|v| (*v).to_owned())).unwrap();
    assert_eq!(s.llm.model, "from-env");
    assert_eq!(s.llm.max_concurrency, 2);
    assert_eq!(s.telegram.allowed_user_ids, vec![1, 2]);
    assert!(!s.personalization_enabled);
}

#[test]
fn unknown_keys_and_broken_toml_are_reported() {
    let mut file = tempfile();
    writeln!(file.1, "llm_modle = \"typo\"").unwrap();
    let err = Settings::from_sources(Some(&file.0), |_| None).unwrap_err();
    assert!(
        err.to_string().contains("unknown key \"llm_modle\""),
        "{err}"
    );

    let mut file = tempfile();
    writeln!(file.1, "llm_model = ").unwrap();
    let err = Settings::from_sources(Some(&file.0), |_| None).unwrap_err();
    assert!(err.to_string().contains("is not valid TOML"), "{err}");

    let err = Settings::from_sources(
        Some(std::path::Path::new("/nonexistent/butler.toml")),
        |_| None,
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("cannot read /nonexistent/butler.toml"),
        "{err}"
    );
}

#[test]
fn the_example_configuration_is_valid_and_documents_every_variable() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/butler.example.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    for v in butler_factory::settings::VARIABLES {
        assert!(
            text.contains(&v.name.to_ascii_lowercase()),
            "{} is not documented in the example",
            v.name
        );
    }
    Settings::from_sources(Some(&path), |_| None).unwrap();
}

fn tempfile() -> (std::path::PathBuf, std::fs::File) {
    let path = std::env::temp_dir().join(format!("butler-settings-{}.toml", uuid_like()));
    let file = std::fs::File::create(&path).unwrap();
    (path, file)
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

#[test]
fn without_a_server_url_the_embedded_engine_is_chosen_with_one_request_at_a_time() {
    use butler_factory::settings::LlmBackend;
    let s = load(&[]).unwrap();
    assert_eq!(s.llm.backend, LlmBackend::Embedded);
    assert_eq!(s.llm.max_concurrency, 1);
    assert!(s.llm.gguf_path.is_none());
    assert!(s.llm.models_dir.ends_with("data/models"));

    let s = load(&[("LLM_BASE_URL", "http://127.0.0.1:11434/v1")]).unwrap();
    assert_eq!(s.llm.backend, LlmBackend::Http);
    assert_eq!(s.llm.max_concurrency, 4);

    let s = load(&[
        ("LLM_BASE_URL", "http://127.0.0.1:11434/v1"),
        ("LLM_BACKEND", "embedded"),
        ("LLM_GGUF_PATH", "/models/alfred.gguf"),
        ("LLM_MAX_CONCURRENCY", "2"),
    ])
    .unwrap();
    assert_eq!(s.llm.backend, LlmBackend::Embedded);
    assert_eq!(
        s.llm.gguf_path.as_deref(),
        Some(std::path::Path::new("/models/alfred.gguf"))
    );
    assert_eq!(s.llm.max_concurrency, 2);
    let described = s.describe();
    assert!(described.contains(&("LLM_BACKEND", "embedded".to_owned())));
    assert!(described.contains(&("LLM_GGUF_PATH", "/models/alfred.gguf".to_owned())));
}

#[test]
fn the_http_backend_needs_a_server_url_and_unknown_backends_are_named() {
    let err = load(&[("LLM_BACKEND", "http")]).unwrap_err();
    assert!(
        err.to_string()
            .contains("LLM_BASE_URL: required when LLM_BACKEND=http"),
        "{err}"
    );
    let err = load(&[("LLM_BACKEND", "gpu")]).unwrap_err();
    assert!(
        err.to_string()
            .contains("LLM_BACKEND: expected embedded or http"),
        "{err}"
    );
}
