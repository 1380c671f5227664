//! The `butler-bot` binary end to end: the terminal chat against a scripted OpenAI-compatible
//! server and the embedded SQLite store, configuration errors, and `--help`.

use std::io::Write;
use std::process::{Command, Stdio};

use butler_testkit::llm_server::ScriptedLlm;

fn butler() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_butler-bot"));
    for var in [
        "MONGODB_URI",
        "STORAGE",
        "TELEGRAM_BOT_TOKEN",
        "LLM_BASE_URL",
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
fn without_an_llm_server_the_chat_says_how_to_configure_one() {
    let out = butler()
        .arg("chat")
        .env("SQLITE_PATH", temp_db("nollm"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("LLM_BASE_URL is not set"));
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
