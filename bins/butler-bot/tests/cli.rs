//! The `butler-bot` binary end to end: the terminal chat against a scripted OpenAI-compatible
//! server and against the embedded engine with a real model (SmolLM2), both over the embedded
//! SQLite store; `models list`; configuration errors, and `--help`; and a fact recalled 150
//! messages and several compressions after it was told (the oracle model over HTTP).

use std::io::Write;
use std::process::{Command, Stdio};

use butler_domain::ports::UserMemoryRepository;
use butler_domain::UserId;
use butler_infrastructure::sqlite::{SqliteOptions, SqliteStore};
use butler_testkit::fakes::CharCounter;
use butler_testkit::llm_server::ScriptedLlm;
use butler_testkit::oracle::{Knowledge, OracleFact, OracleLlm};

/// The binary with none of the caller's settings: an operator's shell often exports
/// `LLM_BASE_URL`, `SQLITE_PATH` or `MONGODB_URI`, and the tests must not pick them up.
fn butler() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_butler-bot"));
    for v in butler_factory::settings::VARIABLES {
        cmd.env_remove(v.name);
    }
    cmd.env_remove("RUST_LOG");
    cmd
}

/// A database path in a fresh temporary directory, removed when the returned guard drops.
fn temp_db(name: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix(&format!("butler-bot-cli-{name}-"))
        .tempdir()
        .expect("a temporary directory");
    let db = dir.path().join("butler.db");
    (dir, db)
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
    let (_dir, db) = temp_db("memory");

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
        stderr
            .contains("LLM_MAX_CONCURRENCY: expected an integer number of requests from 1 to 1024"),
        "{stderr}"
    );
}

#[test]
fn a_missing_model_file_stops_the_chat_with_an_error_naming_it() {
    let (_dir, db) = temp_db("nomodel");
    let out = butler()
        .arg("chat")
        .env("SQLITE_PATH", db)
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
    let (_dir, db) = temp_db("embedded");
    let mut child = butler()
        .args(["chat", "--user-id", "78"])
        .env("LLM_GGUF_PATH", &gguf)
        .env("LLM_MAX_TOKENS", "40")
        .env("SQLITE_PATH", &db)
        // The chat logs warnings only unless asked: ask, to see which engine answered.
        .env("RUST_LOG", "info")
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
fn the_bot_without_an_allow_list_refuses_to_start_and_says_what_to_set() {
    let out = butler()
        .arg("run")
        .env("TELEGRAM_BOT_TOKEN", "123:token")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("ALLOWED_USER_IDS is not set"), "{stderr}");
    assert!(stderr.contains("* to answer anyone"), "{stderr}");
    assert!(!stderr.contains("123:token"));
}

/// Exit code 101 is a Rust panic: no value of any variable may cause one at start-up.
#[test]
fn extreme_values_of_every_variable_fail_start_up_naming_it_and_never_panic() {
    let values = [
        "0".to_owned(),
        "-1".to_owned(),
        u64::MAX.to_string(),
        "18446744073709551616".to_owned(),
        "not a number".to_owned(),
        "9".repeat(5_000),
    ];
    for v in butler_factory::settings::VARIABLES {
        for value in &values {
            let out = butler().arg("config").env(v.name, value).output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_ne!(
                out.status.code(),
                Some(101),
                "{} = {value:.20}: panicked\n{stderr}",
                v.name
            );
            if !out.status.success() {
                assert!(
                    stderr.contains(v.name),
                    "{} = {value:.20}: the error does not name it:\n{stderr}",
                    v.name
                );
            }
        }
    }
}

#[test]
fn the_example_configuration_printed_by_the_binary_is_the_committed_file() {
    let out = butler().args(["config", "--example"]).output().unwrap();
    assert!(out.status.success());
    let committed = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/butler.example.toml"),
    )
    .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), committed);
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

/// A long reply is printed as it is generated, in several pieces, and the conversation on
/// stdout holds no log line (logs go to stderr, warnings only in the chat).
#[tokio::test]
async fn the_terminal_chat_prints_a_long_reply_as_it_is_generated_without_log_lines() {
    use butler_testkit::llm_server::Step;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const STORY: &str = "Позвольте доложить, сэр: утром прибыла почта, днём звонила \
        ваша сестра Анна, к вечеру камин растоплен, а чай будет через пять минут.";
    let llm = ScriptedLlm::start().await;
    llm.push(Step::reply(STORY).streamed_every(std::time::Duration::from_millis(60)));
    let (_dir, db) = temp_db("streaming");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_butler-bot"))
        .args(["chat", "--user-id", "78"])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("LLM_BASE_URL", llm.base_url())
        .env("SQLITE_PATH", &db)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all("Что нового?\n".as_bytes()).await.unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut seen = String::new();
    let mut reads_during_reply = Vec::new();
    let started = std::time::Instant::now();
    while !seen.contains("пять минут.") {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "the reply never completed: {seen}"
        );
        let mut buffer = [0u8; 256];
        let n = stdout.read(&mut buffer).await.unwrap();
        assert!(n > 0, "stdout closed early: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buffer[..n]));
        if seen.contains("Альфред:") {
            reads_during_reply.push(std::time::Instant::now());
        }
    }
    stdin.write_all(b"/exit\n").await.unwrap();
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).await.unwrap();
    seen.push_str(&rest);
    assert!(child.wait().await.unwrap().success());

    assert!(seen.contains(&format!("Альфред: {STORY}")), "{seen}");
    let spread = reads_during_reply
        .last()
        .zip(reads_during_reply.first())
        .map(|(last, first)| last.duration_since(*first))
        .unwrap_or_default();
    assert!(
        reads_during_reply.len() >= 3 && spread >= std::time::Duration::from_millis(300),
        "the reply arrived in {} pieces over {spread:?}, not as it was generated",
        reads_during_reply.len()
    );
    for line in seen.lines() {
        assert!(
            !(line.contains(" INFO ") || line.contains(" WARN ") || line.contains("\"level\"")),
            "a log line on stdout: {line}"
        );
    }
    let _ = std::fs::remove_dir_all(db.parent().unwrap());
}

// Long-term memory through the real chat process: the oracle model answers over HTTP
// (extractions, summaries, replies), and facts told at the start of a 150-message
// conversation are still recalled after several compressions folded their messages away —
// one of them stored in the third person («Живёт в Перми», as the extractor writes facts) and
// asked for in the first («Где я живу?»), with no word of the question in the fact's text.

const FACT: &str = "Кстати, мой любимый напиток — морс.";
const QUESTION: &str = "Какой мой любимый напиток?";
const CITY_FACT: &str = "Запомните: я теперь живу в Перми.";
const CITY_TEXT: &str = "Живёт в Перми";
const CITY_QUESTION: &str = "Где я живу?";
const SMALL_TALK: [&str; 5] = [
    "Какое серое утро.",
    "Что посоветуете на тихий вечер?",
    "Устал от совещаний.",
    "Как думаете, будет дождь?",
    "Наконец-то разобрал письменный стол.",
];

fn oracle_server_knowledge() -> Knowledge {
    let mut knowledge = Knowledge::default();
    knowledge.statement(
        FACT,
        OracleFact {
            key: "favourite_drink".to_owned(),
            kind: "preference".to_owned(),
            text: "Любимый напиток: морс".to_owned(),
            value: "морс".to_owned(),
            cues: Vec::new(),
        },
    );
    // No cues: the question must meet the fact by lemma alone (живу / живёт → жить).
    knowledge.statement(
        CITY_FACT,
        OracleFact {
            key: "home_city".to_owned(),
            kind: "place".to_owned(),
            text: CITY_TEXT.to_owned(),
            value: "Пермь".to_owned(),
            cues: Vec::new(),
        },
    );
    knowledge.question(QUESTION, "favourite_drink");
    knowledge.question(CITY_QUESTION, "home_city");
    knowledge
}

#[tokio::test]
async fn the_chat_recalls_a_fact_told_150_messages_and_several_compressions_earlier() {
    let llm = ScriptedLlm::start().await;
    // Characters as tokens: never fewer than the bot's estimator counts, so the oracle's
    // summaries always fit the budget and the test does not depend on the summary's cut.
    llm.answer_with_oracle(OracleLlm::new(
        std::sync::Arc::new(oracle_server_knowledge()),
        std::sync::Arc::new(CharCounter),
    ));
    let mut input = format!("{FACT}\n{CITY_FACT}\n");
    for i in 0..150 {
        input.push_str(SMALL_TALK[i % SMALL_TALK.len()]);
        input.push('\n');
    }
    input.push_str(&format!("{QUESTION}\n{CITY_QUESTION}\n"));

    let (_dir, db) = temp_db("long-memory");
    let out = chat(&llm, &db, &input).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let last_input = |r: &butler_testkit::llm_server::RecordedRequest| {
        r.body["messages"]
            .as_array()
            .and_then(|m| m.last())
            .and_then(|m| m["content"].as_str())
            .unwrap_or_default()
            .to_owned()
    };
    let requests = llm.requests();
    let summaries = requests
        .iter()
        .filter(|r| last_input(r).starts_with("{\"previous_summary\""))
        .count();
    assert!(summaries >= 3, "{summaries} compressions");
    let prompt_for = |question: &str| {
        requests
            .iter()
            .rev()
            .find(|r| last_input(r).ends_with(question))
            .unwrap_or_else(|| panic!("{question:?} never reached the model"))
            .body["messages"]
            .to_string()
    };
    // The facts' own messages were folded away long ago: the prompts have them from memory
    // only.
    let prompt = prompt_for(QUESTION);
    assert!(
        !prompt.contains(FACT),
        "the statement is still a recent turn"
    );
    assert!(prompt.contains("Любимый напиток: морс"), "{prompt}");
    let prompt = prompt_for(CITY_QUESTION);
    assert!(
        !prompt.contains(CITY_FACT),
        "the statement is still a recent turn"
    );
    assert!(
        prompt.contains(CITY_TEXT),
        "the first-person question did not find the third-person fact:\n{prompt}"
    );
    assert!(
        stdout.contains("Насколько я помню, сэр: морс."),
        "no recall in:\n{stdout}"
    );
    assert!(
        stdout.contains("Насколько я помню, сэр: Пермь."),
        "no recall of the city in:\n{stdout}"
    );
}
