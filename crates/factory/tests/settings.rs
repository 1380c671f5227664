//! Settings: layering, defaults, validation errors that name the variable, masked secrets.

use std::collections::HashMap;
use std::io::Write;

use butler_factory::settings::{
    example_toml, variable, Access, Kind, LogFormat, StorageSettings, TokenizerSettings,
    OTHER_VARIABLES, VARIABLES,
};
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
        matches!(&s.storage, StorageSettings::Sqlite { path, .. } if path.ends_with("data/butler.db"))
    );
    assert!(s.personalization_enabled);
    assert_eq!(s.budget.total, 2000);
    assert_eq!(s.budget.max_reply_tokens, 512);
    assert_eq!(s.memory.compress_threshold, 50);
    assert_eq!(s.memory.keep_last, 20);
    assert_eq!(s.tokenizer, TokenizerSettings::Estimator);
    assert_eq!(s.log_format, LogFormat::Pretty);
    assert!(
        s.telegram.access.is_none(),
        "nobody is allowed until the operator says so"
    );
    assert_eq!(s.telegram.limits.per_minute, 20);
    assert!(s.llm.base_urls.is_empty());
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
        (
            "LLM_MAX_CONCURRENCY",
            "an integer number of requests from 1 to 1024",
        ),
        ("PERSONALIZATION_ENABLED", "true or false"),
        (
            "ALLOWED_USER_IDS",
            "comma-separated Telegram user ids, or * for everyone",
        ),
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
        ("TELEGRAM_WEBHOOK_URL", "https://bot.example.org/hook"),
        ("TELEGRAM_WEBHOOK_SECRET", "not a valid s3cret!"),
    ])
    .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("MONGODB_URI: expected a mongodb://"),
        "{text}"
    );
    assert!(text.contains("TELEGRAM_WEBHOOK_SECRET"), "{text}");
    assert!(
        !text.contains("hunter2") && !text.contains("s3cret"),
        "{text}"
    );

    let s = load(&[
        ("TELEGRAM_BOT_TOKEN", "123:bot-token-value"),
        ("LLM_API_KEY", "sk-api-key-value"),
        ("MONGODB_URI", "mongodb://u:mongo-password@db"),
        ("TELEGRAM_WEBHOOK_URL", "https://bot.example.org/hook"),
        ("TELEGRAM_WEBHOOK_SECRET", "a-webhook-secret-value"),
    ])
    .unwrap();
    let printed = format!("{:?}\n{:?}", s, s.describe());
    for secret in [
        "bot-token-value",
        "sk-api-key-value",
        "mongo-password",
        "a-webhook-secret-value",
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
    assert_eq!(s.telegram.access, Some(Access::Only(vec![1, 2])));
    assert!(!s.personalization_enabled);
}

#[test]
fn a_configuration_file_that_still_sets_the_admin_key_is_told_it_protects_nothing() {
    // profile_admin has no key: it opens the database with this very configuration, so a key
    // kept in it would only be compared with itself.
    let mut file = tempfile();
    writeln!(file.1, "butler_admin_key = \"old-admin-key-0123456789\"").unwrap();
    let err = Settings::from_sources(Some(&file.0), |_| None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("\"butler_admin_key\"")
            && err.contains("no longer a setting")
            && err.contains("docs/operations/admin.md"),
        "{err}"
    );
    assert!(!err.contains("old-admin-key"), "{err}");
    assert!(variable("BUTLER_ADMIN_KEY").is_none());
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
fn the_example_configuration_is_generated_from_the_table_and_loads_as_the_defaults() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/butler.example.toml");
    let committed = std::fs::read_to_string(&path).unwrap();
    assert!(
        committed == example_toml(),
        "config/butler.example.toml drifted from the settings table: regenerate it with \
         `cargo run --bin butler-bot -- config --example > config/butler.example.toml`"
    );
    for v in VARIABLES {
        assert!(
            committed.contains(&v.key()),
            "{} is not documented in the example",
            v.name
        );
    }
    let from_file = Settings::from_sources(Some(&path), |_| None).unwrap();
    let defaults = load(&[]).unwrap();
    assert_eq!(from_file.describe(), defaults.describe());
}

#[test]
fn every_default_in_the_table_is_the_value_the_code_uses() {
    let described = load(&[]).unwrap().describe();
    // Used only with MongoDB: checked with a MongoDB URI below.
    let mongo_only = ["MONGODB_DB", "MEMORY_TTL_DAYS"];
    let on_mongo = load(&[("MONGODB_URI", "mongodb://db")]).unwrap().describe();
    for v in VARIABLES.iter().filter(|v| !v.default.is_empty()) {
        let described = if mongo_only.contains(&v.name) {
            &on_mongo
        } else {
            &described
        };
        let (_, value) = described
            .iter()
            .find(|(name, _)| *name == v.name)
            .unwrap_or_else(|| panic!("{} is missing from `butler-bot config`", v.name));
        assert_eq!(value, v.default, "{}: table and code disagree", v.name);
        // The default written out explicitly is accepted too.
        load(&[(v.name, v.default)]).unwrap_or_else(|e| panic!("{}: {e}", v.name));
    }
    let names: Vec<&str> = described.iter().map(|(n, _)| *n).collect();
    let table: Vec<&str> = VARIABLES.iter().map(|v| v.name).collect();
    assert_eq!(
        names, table,
        "`butler-bot config` lists the table, in order"
    );
}

#[test]
fn numeric_settings_accept_their_range_and_reject_the_values_just_outside() {
    for v in VARIABLES {
        let Kind::Int { min, max, .. } = v.kind else {
            continue;
        };
        for ok in [min, max] {
            // A bound can still break a cross-check (budget vs window): it must then be that
            // check that complains, never the range.
            if let Err(e) = load(&[(v.name, &ok.to_string())]) {
                assert!(
                    !e.to_string().contains(&format!("{}: expected", v.name)),
                    "{} rejected its own bound {ok}: {e}",
                    v.name
                );
            }
        }
        let mut outside = vec![max.saturating_add(1).to_string()];
        if min > 0 {
            outside.push((min - 1).to_string());
        }
        for bad in outside {
            let env = [(v.name, bad.as_str()), ("MONGODB_URI", "mongodb://db")];
            let err = load(&env)
                .err()
                .unwrap_or_else(|| panic!("{} = {bad} was accepted", v.name));
            assert!(
                err.to_string()
                    .contains(&format!("{}: expected {}", v.name, v.expected())),
                "{} = {bad}: {err}",
                v.name
            );
        }
    }
}

/// Values an operator's typo, a template gone wrong or a fuzzer could put in a variable.
fn extreme_values() -> Vec<String> {
    vec![
        String::new(),
        " ".to_owned(),
        "0".to_owned(),
        "-1".to_owned(),
        "1".to_owned(),
        u32::MAX.to_string(),
        u64::MAX.to_string(),
        "18446744073709551616".to_owned(),
        "1e400".to_owned(),
        "NaN".to_owned(),
        "inf".to_owned(),
        "-0.0".to_owned(),
        "abc".to_owned(),
        "*".to_owned(),
        ",,,".to_owned(),
        "http://".to_owned(),
        "mongodb://".to_owned(),
        "\u{0}".to_owned(),
        "ы".repeat(100_000),
        "9".repeat(10_000),
    ]
}

/// Loads with one variable set; returns the problems that do not name it (as their variable
/// or in their message), or panics if loading panicked.
fn problems_not_naming(name: &str, value: &str) -> Vec<String> {
    let result = std::panic::catch_unwind(|| load(&[(name, value)]));
    match result {
        Ok(Ok(_)) => Vec::new(),
        Ok(Err(e)) => e
            .problems
            .iter()
            .filter(|p| p.variable != name && !p.message.contains(name))
            .map(|p| format!("{}: {}", p.variable, p.message))
            .collect(),
        Err(_) => panic!(
            "{name} = {:?} panicked",
            value.chars().take(40).collect::<String>()
        ),
    }
}

#[test]
fn extreme_values_of_every_variable_give_an_error_naming_it_or_are_accepted_never_a_panic() {
    for v in VARIABLES {
        for value in extreme_values() {
            let problems = problems_not_naming(v.name, &value);
            assert!(
                problems.is_empty(),
                "{} = {:?}: problems not naming it: {problems:?}",
                v.name,
                value.chars().take(40).collect::<String>()
            );
        }
    }
}

#[test]
fn an_error_never_echoes_more_than_a_short_excerpt_of_the_value() {
    let err = load(&[("LLM_TIMEOUT_SECS", &"9".repeat(10_000))]).unwrap_err();
    assert!(err.to_string().len() < 400, "{err}");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]
    #[test]
    fn arbitrary_text_in_any_variable_is_accepted_or_named_never_a_panic(
        index in 0..VARIABLES.len(),
        value in "\\PC{0,40}|[0-9]{0,30}|-?[0-9]{1,25}(\\.[0-9]{0,5})?",
    ) {
        let v = &VARIABLES[index];
        let problems = problems_not_naming(v.name, &value);
        proptest::prop_assert!(
            problems.is_empty(),
            "{} = {:?}: problems not naming it: {:?}", v.name, value, problems
        );
    }
}

/// Every `UPPER_CASE_NAME` in the docs, config files and README that looks like an
/// environment variable of ours.
#[test]
fn every_environment_variable_named_in_the_docs_exists_in_the_settings_table() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files = vec![root.join("README.md")];
    for dir in ["docs", "config"] {
        collect_files(&root.join(dir), &mut files);
    }
    let known =
        |name: &str| VARIABLES.iter().any(|v| v.name == name) || OTHER_VARIABLES.contains(&name);
    // Prefixes of our variables; other upper-case words (SQL, HTTP verbs, metric units) are
    // not settings.
    let ours = [
        "TELEGRAM_",
        "ALLOWED_",
        "RATE_",
        "DAILY_",
        "VOICE_",
        "STORAGE",
        "SQLITE_",
        "MONGODB_",
        "MEMORY_",
        "LLM_",
        "STT_",
        "PERSONALIZATION_",
        "PROMPT_",
        "TOKENIZER",
        "METRICS_",
        "BUTLER_",
        "PROFILE_ADMIN_",
        "LOG_",
        "RUST_LOG",
    ];
    let mut unknown = Vec::new();
    for file in files {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        for word in
            text.split(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
        {
            let word = word.trim_matches('_');
            if word.len() < 4 || !word.contains('_') && !["STORAGE", "TOKENIZER"].contains(&word) {
                continue;
            }
            if ours.iter().any(|p| word.starts_with(p)) && !known(word) {
                unknown.push(format!("{}: {word}", file.display()));
            }
        }
    }
    unknown.sort();
    unknown.dedup();
    assert!(
        unknown.is_empty(),
        "variables named in the docs but not in the settings table:\n{}",
        unknown.join("\n")
    );
}

fn collect_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_files(&path, out);
        } else {
            out.push(path);
        }
    }
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
fn without_a_server_url_the_embedded_engine_is_chosen_with_one_reply_per_cache_slot() {
    use butler_factory::settings::LlmBackend;
    let s = load(&[]).unwrap();
    assert_eq!(s.llm.backend, LlmBackend::Embedded);
    // Replies in flight follow LLM_CACHE_SLOTS (default 4): the engine decodes them together.
    assert_eq!(s.llm.max_concurrency, 4);
    assert_eq!(s.llm.cache_slots, 4);
    let one = load(&[("LLM_CACHE_SLOTS", "0")]).unwrap();
    assert_eq!(
        one.llm.max_concurrency, 1,
        "no slots to spare: one at a time"
    );
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

#[test]
fn several_llm_servers_are_read_from_a_comma_separated_base_url() {
    use butler_factory::settings::LlmBackend;
    let s = load(&[
        (
            "LLM_BASE_URL",
            "http://gpu-a:8000/v1, http://gpu-b:8000/v1/ ,https://gpu-c/v1",
        ),
        ("LLM_MAX_CONCURRENCY", "3"),
    ])
    .unwrap();
    assert_eq!(s.llm.backend, LlmBackend::Http);
    assert_eq!(
        s.llm.base_urls,
        [
            "http://gpu-a:8000/v1",
            "http://gpu-b:8000/v1",
            "https://gpu-c/v1"
        ]
    );
    assert_eq!(s.llm.max_concurrency, 3, "per server");
    assert!(s.describe().contains(&(
        "LLM_BASE_URL",
        "http://gpu-a:8000/v1,http://gpu-b:8000/v1,https://gpu-c/v1".to_owned()
    )));
}

#[test]
fn one_bad_url_in_the_llm_server_list_is_named_with_the_expected_form() {
    for (value, shown) in [
        (
            "http://gpu-a:8000/v1,gpu-b:8000",
            "entry 2 of the list is \"gpu-b:8000\"",
        ),
        (
            "http://gpu-a:8000/v1,,http://gpu-c/v1",
            "entry 2 of the list is \"\"",
        ),
        (
            "ftp://user:hunter2@gpu-a/v1,http://gpu-b/v1",
            "entry 1 of the list is \"***@gpu-a/v1\"",
        ),
    ] {
        let err = load(&[("LLM_BASE_URL", value)]).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(
                "LLM_BASE_URL: expected an http(s) URL ending in /v1, or several separated by commas"
            ),
            "{text}"
        );
        assert!(text.contains(shown), "{value}: {text}");
        assert!(!text.contains("hunter2"), "{text}");
        assert_eq!(err.problems.len(), 1, "{text}");
    }
}

#[tokio::test]
async fn sqlite_synchronous_reaches_the_connections_and_defaults_to_full() {
    let dir = ::tempfile::tempdir().unwrap();
    for (value, expected) in [
        (None, "full"),
        (Some("normal"), "normal"),
        (Some("FULL"), "full"),
    ] {
        let path = dir
            .path()
            .join(format!("{expected}-{}.db", value.is_some()));
        let mut vars = vec![("SQLITE_PATH", path.display().to_string())];
        if let Some(value) = value {
            vars.push(("SQLITE_SYNCHRONOUS", value.to_owned()));
        }
        let settings = Settings::from_sources(None, |name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.clone())
        })
        .unwrap();
        assert!(settings
            .describe()
            .contains(&("SQLITE_SYNCHRONOUS", expected.to_owned())));
        // What the storage reports is read back from SQLite's own `PRAGMA synchronous`.
        let storage = butler_factory::wiring::open_storage(&settings)
            .await
            .unwrap();
        assert!(
            storage
                .location
                .ends_with(&format!("(synchronous={expected})")),
            "{value:?}: {}",
            storage.location
        );
    }
    let err = load(&[("SQLITE_SYNCHRONOUS", "off")])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("SQLITE_SYNCHRONOUS") && err.contains("full") && err.contains("normal"),
        "{err}"
    );
}
