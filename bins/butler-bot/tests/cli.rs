//! The `butler-bot` binary end to end: the terminal chat against a scripted OpenAI-compatible
//! server and against the embedded engine with a real model (SmolLM2), both over the embedded
//! SQLite store; `models list`; configuration errors, and `--help`.

use std::io::Write;
use std::process::{Command, Stdio};

use butler_domain::ports::UserMemoryRepository;
use butler_domain::UserId;
use butler_infrastructure::sqlite::{SqliteOptions, SqliteStore};
use butler_testkit::llm_server::ScriptedLlm;

fn butler() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_butler-bot"));
    for var in [
        "MONGODB_URI",
        "STORAGE",
        "TELEGRAM_BOT_TOKEN",
        "LLM_BASE_URL",
        "LLM_BACKEND",
        "LLM_GGUF_PATH",
        "LLM_MODELS_DIR",
        "METRICS_ADDR",
        "RUST_LOG",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

fn temp_db(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("butler-bot-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir.join("butler.db")
}

async fn chat(llm: &ScriptedLlm, db: &std::path::Path, input: &str) -> std::process::Output {
    let mut child = butler()
        .args(["chat", "--user-id", "77"])
        .env("LLM_BASE_URL", llm.base_url())
        .env("SQLITE_PATH", db)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn the_terminal_chat_answers_and_remembers_across_runs_in_sqlite() {
    let llm = ScriptedLlm::start().await;
    llm.push_reply("Добрый вечер, сэр Пётр.");
    llm.push_reply("Вас зовут Пётр, сэр.");
    let db = temp_db("memory");

    let out = chat(&llm, &db, "Меня зовут Пётр\n").await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("Альфред: Добрый вечер, сэр Пётр."),
        "{stdout}"
    );
    assert!(
        db.exists(),
        "the embedded database was created at SQLITE_PATH"
    );

    // A second process sees the first conversation: memory survives a restart.
    let out = chat(&llm, &db, "Как меня зовут?\n/exit\n").await;
    assert!(String::from_utf8_lossy(&out.stdout).contains("Вас зовут Пётр, сэр."));
    let requests = llm.requests();
    assert_eq!(requests.len(), 2);
    let messages = requests[1].body["messages"].as_array().unwrap();
    let contents: Vec<&str> = messages
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert!(
        contents[0].contains("Альфред"),
        "persona in the system message"
    );
    assert_eq!(
        &contents[1..],
        [
            "Меня зовут Пётр",
            "Добрый вечер, сэр Пётр.",
            "Как меня зовут?"
        ]
    );
}

#[test]
fn invalid_configuration_exits_non_zero_naming_the_variable() {
    let out = butler()
        .arg("config")
        .env("LLM_MAX_CONCURRENCY", "lots")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("LLM_MAX_CONCURRENCY: expected an integer ≥ 1"),
        "{stderr}"
    );
}

#[test]
fn a_missing_model_file_stops_the_chat_with_an_error_naming_it() {
    let out = butler()
        .arg("chat")
        .env("SQLITE_PATH", temp_db("nomodel"))
        .env("LLM_GGUF_PATH", "/nonexistent/models/alfred.gguf")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no model file at /nonexistent/models/alfred.gguf"),
        "{stderr}"
    );
    assert!(stderr.contains("models pull"), "{stderr}");
}

#[test]
fn the_http_backend_without_a_server_url_says_what_to_set() {
    let out = butler()
        .arg("chat")
        .env("LLM_BACKEND", "http")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("LLM_BASE_URL: required when LLM_BACKEND=http"),
        "{stderr}"
    );
}

#[tokio::test]
async fn the_terminal_chat_answers_with_the_embedded_model_and_remembers_the_turn() {
    let gguf = tokio::task::spawn_blocking(butler_testkit::services::smollm2_gguf_path)
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}"));
    let db = temp_db("embedded");
    let mut child = butler()
        .args(["chat", "--user-id", "78"])
        .env("LLM_GGUF_PATH", &gguf)
        .env("LLM_MAX_TOKENS", "40")
        .env("SQLITE_PATH", &db)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all("Good evening! My name is Peter.\n/exit\n".as_bytes())
        .unwrap();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let answer = stdout
        .split_once("\nАльфред: ")
        .and_then(|(_, rest)| rest.split_once("\n\n> ").map(|(a, _)| a.trim().to_owned()))
        .unwrap_or_else(|| panic!("no answer in: {stdout}\n{stderr}"));
    assert!(!answer.is_empty(), "{stdout}");
    assert!(
        stderr.contains("llm=\"embedded\"") || stderr.contains("llm=embedded"),
        "{stderr}"
    );

    // A failing model sends the fallback and stores nothing: two stored events prove a real
    // answer, read back from the SQLite file the chat wrote.
    let store = SqliteStore::open(SqliteOptions::at(&db)).await.unwrap();
    let events = store
        .memory()
        .recent(UserId::new(78), 10, None)
        .await
        .unwrap();
    assert_eq!(
        events.len(),
        2,
        "the user message and the answer are stored"
    );
    assert_eq!(events[0].content, "Good evening! My name is Peter.");
    assert_eq!(events[1].content.trim(), answer);
}

#[test]
fn models_list_shows_the_directory_the_default_model_and_the_one_in_use() {
    let dir = std::env::temp_dir().join(format!("butler-bot-models-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("mine.gguf"), b"GGUF\x03\0\0\0").unwrap();
    std::fs::write(dir.join("qwen2.5-1.5b-instruct-q4_k_m.gguf.part"), b"GGUF").unwrap();
    let out = butler()
        .args(["models", "list"])
        .env("LLM_MODELS_DIR", &dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains(&format!("models in {}:", dir.display())),
        "{stdout}"
    );
    assert!(stdout.contains("mine.gguf"), "{stdout}");
    assert!(stdout.contains("unfinished download"), "{stdout}");
    assert!(
        stdout.contains("default model: qwen2.5-1.5b-instruct-q4_k_m"),
        "{stdout}"
    );
    assert!(stdout.contains("not downloaded"), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "in use (embedded): {}",
            dir.join("qwen2.5-1.5b-instruct-q4_k_m.gguf").display()
        )),
        "{stdout}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_bot_without_a_token_says_what_to_set() {
    let out = butler().arg("run").output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("TELEGRAM_BOT_TOKEN is not set"));
}

#[test]
fn help_lists_every_environment_variable_and_config_masks_secrets() {
    let out = butler().arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for v in butler_factory::settings::VARIABLES {
        assert!(help.contains(v.name), "{} missing from --help", v.name);
    }
    let out = butler()
        .arg("config")
        .env("TELEGRAM_BOT_TOKEN", "123:very-secret-token")
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains("TELEGRAM_BOT_TOKEN=***"), "{printed}");
    assert!(!printed.contains("very-secret-token"));
}
