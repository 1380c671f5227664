//! Long-term memory through the real `butler-bot chat` process: the oracle model answers over
//! HTTP (extractions, summaries, replies), and a fact told at the start of a 150-message
//! conversation is still recalled after several compressions folded its message away.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;

use butler_testkit::fakes::CharCounter;
use butler_testkit::llm_server::ScriptedLlm;
use butler_testkit::oracle::{Knowledge, OracleFact, OracleLlm};

const FACT: &str = "Кстати, мой любимый напиток — морс.";
const QUESTION: &str = "Какой мой любимый напиток?";
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
        },
    );
    knowledge.question(QUESTION, "favourite_drink");
    knowledge
}

#[tokio::test]
async fn the_chat_recalls_a_fact_told_150_messages_and_several_compressions_earlier() {
    let llm = ScriptedLlm::start().await;
    // Characters as tokens: never fewer than the bot's estimator counts, so the oracle's
    // summaries always fit the budget and the test does not depend on the summary's cut.
    llm.answer_with_oracle(OracleLlm::new(
        Arc::new(oracle_server_knowledge()),
        Arc::new(CharCounter),
    ));
    let dir = tempfile::tempdir().unwrap();
    let mut input = format!("{FACT}\n");
    for i in 0..150 {
        input.push_str(SMALL_TALK[i % SMALL_TALK.len()]);
        input.push('\n');
    }
    input.push_str(QUESTION);
    input.push('\n');

    let mut command = Command::new(env!("CARGO_BIN_EXE_butler-bot"));
    for v in butler_factory::settings::VARIABLES {
        command.env_remove(v.name);
    }
    let mut child = command
        .env_remove("RUST_LOG")
        .args(["chat", "--user-id", "77"])
        .env("LLM_BASE_URL", llm.base_url())
        .env("SQLITE_PATH", dir.path().join("butler.db"))
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
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
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
    let question = requests
        .iter()
        .rev()
        .find(|r| last_input(r).ends_with(QUESTION))
        .expect("the question reached the model");
    // The fact's own message was folded away long ago: the prompt has it from memory only.
    let prompt = question.body["messages"].to_string();
    assert!(
        !prompt.contains(FACT),
        "the statement is still a recent turn"
    );
    assert!(prompt.contains("Любимый напиток: морс"), "{prompt}");
    assert!(
        stdout.contains("Насколько я помню, сэр: морс."),
        "no recall in:\n{stdout}"
    );
}
