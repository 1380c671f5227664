//! [`EmbeddedModel`]: one GGUF model loaded into this process with llama.cpp — its vocabulary,
//! its chat template and the tokenisation of prompts. Generation happens in a
//! [`Session`](super::Session) that keeps KV caches between requests, on the engine's thread.
//!
//! llama.cpp's backend can be initialised once per process, so it lives in a `static`; models
//! share it.
//!
//! Prompts are tokenised so that a message can never smuggle in a control token: the chat
//! template is rendered with a placeholder per message, the template's own text is tokenised
//! with special tokens parsed (that is where `<|im_start|>` legitimately comes from) and each
//! message's content as plain text. A user who types `<|im_end|><|im_start|>system` gets those
//! characters, not the role tokens (see [`EmbeddedModel::prompt_tokens`]).

use std::borrow::Cow;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use butler_domain::ports::LlmError;
use butler_domain::prompt::ChatMessage;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::vocab::LlamaVocab;
use llama_cpp_2::{send_logs_to_tracing, ChatTemplateError, LogOptions};

use super::gguf::{check_gguf, ModelFileError};

/// Written on both sides of each placeholder: if the rendered template still has it, the
/// template inserts contents verbatim; if it is gone, the template trims that side (Llama 3,
/// Gemma) and the content is trimmed the same way. A vertical tab, which no chat template
/// writes next to a message.
const PAD: char = '\u{b}';

/// How many random placeholders are tried before giving up on a conversation that happens to
/// contain each of them (one draw practically always succeeds: the nonce is 64 random bits).
const PLACEHOLDER_DRAWS: usize = 8;

/// The process-wide llama.cpp backend (`None` if something else initialised it first).
pub(crate) fn backend() -> Result<&'static LlamaBackend, ModelFileError> {
    static BACKEND: OnceLock<Option<LlamaBackend>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            // llama.cpp prints to stderr by default; route it through `tracing` instead
            // (target `llama-cpp-2`), where the log filter decides.
            send_logs_to_tracing(LogOptions::default());
            LlamaBackend::init().ok()
        })
        .as_ref()
        .ok_or_else(|| {
            ModelFileError::Backend(
                "the llama.cpp backend was already initialised elsewhere in this process"
                    .to_owned(),
            )
        })
}

/// The threads llama.cpp uses per request: every core. Its own default (4) oversubscribes a
/// 2-core machine and runs three times slower there.
#[must_use]
pub fn default_threads() -> i32 {
    std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .try_into()
        .unwrap_or(1)
}

/// A GGUF model in memory, ready to tokenise and generate. Shared (`Arc`) by the LLM adapter
/// and the token counter.
pub struct EmbeddedModel {
    model: LlamaModel,
    template: LlamaChatTemplate,
    path: PathBuf,
    n_ctx_train: u32,
    load_time: Duration,
    /// llama.cpp may touch the model while creating a context; creations are serialised.
    context_creation: Mutex<()>,
}

impl std::fmt::Debug for EmbeddedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedModel")
            .field("path", &self.path)
            .field("n_ctx_train", &self.n_ctx_train)
            .finish_non_exhaustive()
    }
}

/// A prompt as inference reads it: the tokens, and where each message's content lies among
/// them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptTokens {
    /// Every token of the prompt: BOS first when the model wants one, then the template's
    /// tokens and the contents' tokens in order, ending with the opening of the assistant's turn.
    pub tokens: Vec<LlamaToken>,
    /// Per message, in order, the range of `tokens` holding its content. Everything outside these
    /// ranges came from the chat template; nothing inside them is a control token.
    pub contents: Vec<Range<usize>>,
}

impl EmbeddedModel {
    /// Loads the GGUF at `path`. Blocking (≈ 0.1 s for a 100 MB model from the page cache,
    /// seconds for a cold 1 GB one).
    ///
    /// # Errors
    /// [`ModelFileError`] naming `path` when the file is missing, is not GGUF, or llama.cpp
    /// cannot load it.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ModelFileError> {
        let path = path.as_ref().to_path_buf();
        check_gguf(&path)?;
        let backend = backend()?;
        let started = Instant::now();
        let model = LlamaModel::load_from_file(backend, &path, &LlamaModelParams::default())
            .map_err(|e| ModelFileError::Load {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        let template = match model.chat_template(None) {
            Ok(t) => t,
            Err(ChatTemplateError::MissingTemplate) => {
                tracing::warn!(path = %path.display(), "the model has no chat template; using ChatML");
                LlamaChatTemplate::new("chatml").map_err(|e| ModelFileError::Load {
                    path: path.clone(),
                    reason: e.to_string(),
                })?
            }
            Err(e) => {
                return Err(ModelFileError::Load {
                    path,
                    reason: format!("unreadable chat template: {e}"),
                })
            }
        };
        let n_ctx_train = model.n_ctx_train();
        let load_time = started.elapsed();
        tracing::info!(
            path = %path.display(),
            n_ctx_train,
            vocabulary = model.n_vocab(),
            load_ms = load_time.as_millis(),
            "embedded model loaded"
        );
        Ok(Self {
            model,
            template,
            path,
            n_ctx_train,
            load_time,
            context_creation: Mutex::new(()),
        })
    }

    /// The file it was loaded from.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The context window the model was trained with (`n_ctx_train` from the GGUF).
    #[must_use]
    pub const fn context_window(&self) -> u32 {
        self.n_ctx_train
    }

    /// How long loading took.
    #[must_use]
    pub const fn load_time(&self) -> Duration {
        self.load_time
    }

    /// The llama.cpp model, for samplers that read its vocabulary (grammars).
    pub(super) const fn llama(&self) -> &LlamaModel {
        &self.model
    }

    /// The model's vocabulary, for callers that inspect tokens (tests, diagnostics).
    #[must_use]
    pub fn vocab(&self) -> LlamaVocab<'_> {
        self.model.vocab()
    }

    /// Tokens in `text` by the model's own vocabulary: no BOS/EOS, and special-token spellings
    /// counted as plain text — exactly how [`Self::prompt_tokens`] tokenises a message's content.
    #[must_use]
    pub fn count_tokens(&self, text: &str) -> usize {
        self.model
            .vocab()
            .tokenize(plain_text(text).as_bytes(), false, false)
            .len()
    }

    /// The conversation rendered with the model's chat template, ending with the opening of the
    /// assistant's turn. For reading only: tokenising this string with special tokens parsed
    /// would turn a special-token spelling inside a message into the real token, which is what
    /// [`Self::prompt_tokens`] avoids.
    ///
    /// # Errors
    /// [`LlmError::Rejected`] if llama.cpp cannot apply the template.
    pub fn render_prompt(&self, messages: &[ChatMessage]) -> Result<String, LlmError> {
        self.apply_template(
            messages
                .iter()
                .map(|m| (m.role.as_str(), plain_text(&m.content))),
        )
    }

    fn apply_template<'a, C: Into<String>>(
        &self,
        messages: impl Iterator<Item = (&'a str, C)>,
    ) -> Result<String, LlmError> {
        let chat = messages
            .map(|(role, content)| LlamaChatMessage::new(role.to_owned(), content.into()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| LlmError::Rejected {
                detail: format!("cannot pass a message to llama.cpp: {e}"),
            })?;
        self.model
            .apply_chat_template(&self.template, &chat, true)
            .map_err(|e| LlmError::Rejected {
                detail: format!("cannot apply the model's chat template: {e}"),
            })
    }

    /// The prompt's tokens, exactly as inference reads them, with special tokens only where the
    /// chat template put them.
    ///
    /// The template is rendered with a random placeholder in place of each message's content;
    /// the rendering is split at the placeholders; the template's pieces are tokenised with
    /// special tokens parsed and the contents as plain text (`parse_special = false`, as
    /// [`Self::count_tokens`] counts). So `contents[i].len()` is exactly the count of message
    /// `i`'s content (fewer if the template trims surrounding whitespace), and no content token
    /// is ever merged with a template token at a seam. BOS is added when the model asks for it;
    /// never EOS.
    ///
    /// # Errors
    /// [`LlmError::Rejected`] if llama.cpp cannot apply the template, or the template does not
    /// place each message's content exactly once and in order (it drops or repeats a message),
    /// which this tokenisation cannot follow.
    pub fn prompt_tokens(&self, messages: &[ChatMessage]) -> Result<PromptTokens, LlmError> {
        let contents: Vec<Cow<'_, str>> = messages.iter().map(|m| plain_text(&m.content)).collect();
        let placeholders = placeholders(&contents)?;
        let rendered = self.apply_template(
            messages
                .iter()
                .zip(&placeholders)
                .map(|(m, p)| (m.role.as_str(), format!("{PAD}{p}{PAD}"))),
        )?;
        let (pieces, trims) = split_rendered(&rendered, &placeholders)?;

        let vocab = self.model.vocab();
        let mut tokens = Vec::with_capacity(rendered.len() / 3);
        if vocab.should_add_bos() {
            tokens.push(vocab.bos());
        }
        let mut ranges = Vec::with_capacity(contents.len());
        for ((piece, content), trim) in pieces.iter().zip(&contents).zip(&trims) {
            tokenize_into(&vocab, piece, &mut tokens, true);
            let start = tokens.len();
            tokenize_into(&vocab, trim.apply(content), &mut tokens, false);
            ranges.push(start..tokens.len());
        }
        if let Some(last) = pieces.last() {
            tokenize_into(&vocab, last, &mut tokens, true);
        }
        Ok(PromptTokens {
            tokens,
            contents: ranges,
        })
    }

    /// A llama.cpp context over this model. Creations are serialised: llama.cpp may touch the
    /// model while creating one.
    pub(crate) fn new_context_with(
        &self,
        backend: &LlamaBackend,
        params: LlamaContextParams,
    ) -> Result<LlamaContext<'_>, String> {
        // A poisoned lock only means another creation panicked; the guard protects no data.
        let _guard = self
            .context_creation
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.model
            .new_context(backend, params)
            .map_err(|e| e.to_string())
    }
}

/// A message's content as it may cross into C: a NUL byte cannot, and carries no meaning in a
/// chat message.
fn plain_text(content: &str) -> Cow<'_, str> {
    if content.contains('\0') {
        Cow::Owned(content.replace('\0', ""))
    } else {
        Cow::Borrowed(content)
    }
}

/// One placeholder per message: private-use characters around a random nonce and the message's
/// index, so a user can neither predict nor type it. The nonce is re-drawn if any content
/// contains it.
///
/// # Errors
/// [`LlmError::Rejected`] if every draw occurs in the contents (practically impossible).
fn placeholders(contents: &[Cow<'_, str>]) -> Result<Vec<String>, LlmError> {
    (0..PLACEHOLDER_DRAWS)
        .map(|_| format!("\u{f8f0}{:016x}:", fastrand::u64(..)))
        .find(|nonce| contents.iter().all(|c| !c.contains(nonce.as_str())))
        .map(|nonce| {
            (0..contents.len())
                .map(|index| format!("{nonce}{index}\u{f8f1}"))
                .collect()
        })
        .ok_or_else(|| LlmError::Rejected {
            detail: "no message placeholder absent from the conversation was found".to_owned(),
        })
}

/// Which sides of a content the chat template trimmed of whitespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Trim {
    start: bool,
    end: bool,
}

impl Trim {
    /// The content as the template would have written it.
    fn apply(self, content: &str) -> &str {
        // llama.cpp's templates trim with C's `isspace`, which is narrower than Unicode's.
        let space = |c: char| matches!(c, ' ' | '\t' | '\n' | '\r' | '\u{b}' | '\u{c}');
        let content = if self.start {
            content.trim_start_matches(space)
        } else {
            content
        };
        if self.end {
            content.trim_end_matches(space)
        } else {
            content
        }
    }
}

/// Splits a template rendered with padded placeholders into its `n + 1` pieces of template
/// text (around `n` contents), without the pads, and says per content which sides the
/// template trimmed.
///
/// # Errors
/// [`LlmError::Rejected`] if a placeholder is missing, repeated or out of order.
fn split_rendered<'r>(
    rendered: &'r str,
    placeholders: &[String],
) -> Result<(Vec<&'r str>, Vec<Trim>), LlmError> {
    let mut pieces = Vec::with_capacity(placeholders.len() + 1);
    let mut rest = rendered;
    for (index, placeholder) in placeholders.iter().enumerate() {
        let times = rendered.matches(placeholder.as_str()).count();
        let split = rest.split_once(placeholder.as_str());
        let (Some((before, after)), 1) = (split, times) else {
            let how = if times == 1 {
                "out of order".to_owned()
            } else {
                format!("{times} times")
            };
            return Err(LlmError::Rejected {
                detail: format!(
                    "the model's chat template renders message {index} of {} {how}; the prompt \
                     cannot be tokenised safely",
                    placeholders.len()
                ),
            });
        };
        pieces.push(before);
        rest = after;
    }
    pieces.push(rest);

    let mut trims = vec![Trim::default(); placeholders.len()];
    for (index, trim) in trims.iter_mut().enumerate() {
        match pieces[index].strip_suffix(PAD) {
            Some(kept) => pieces[index] = kept,
            None => trim.start = true,
        }
        match pieces[index + 1].strip_prefix(PAD) {
            Some(kept) => pieces[index + 1] = kept,
            None => trim.end = true,
        }
    }
    Ok((pieces, trims))
}

/// Appends `text`'s tokens: the template's text with special tokens parsed, a content without.
fn tokenize_into(vocab: &LlamaVocab<'_>, text: &str, tokens: &mut Vec<LlamaToken>, special: bool) {
    // An empty piece could still become a space with tokenizers that prefix one.
    if !text.is_empty() {
        vocab.tokenize_into(text.as_bytes(), tokens, false, special);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn padded(template: &str, placeholders: &[String]) -> String {
        let mut rendered = template.to_owned();
        for (i, p) in placeholders.iter().enumerate() {
            rendered = rendered.replace(&format!("{{{i}}}"), &format!("{PAD}{p}{PAD}"));
        }
        rendered
    }

    fn two_placeholders() -> Vec<String> {
        let contents = [Cow::Borrowed("hello"), Cow::Borrowed("world")];
        placeholders(&contents).unwrap()
    }

    #[test]
    fn a_rendering_splits_into_template_pieces_around_each_content() {
        let p = two_placeholders();
        let rendered = padded("<s>sys\n{0}</s>\n<s>user\n{1}</s>\n<s>assistant\n", &p);
        let (pieces, trims) = split_rendered(&rendered, &p).unwrap();
        assert_eq!(
            pieces,
            ["<s>sys\n", "</s>\n<s>user\n", "</s>\n<s>assistant\n"]
        );
        assert_eq!(trims, [Trim::default(); 2]);
    }

    #[test]
    fn a_template_that_trims_contents_gets_trimmed_contents() {
        let p = two_placeholders();
        // What a trimming template (Llama 3, Gemma) makes of the padded placeholders.
        let rendered = format!("<h>system</h>\n\n{}<e>{PAD}{}<e>", p[0], p[1]);
        let (pieces, trims) = split_rendered(&rendered, &p).unwrap();
        assert_eq!(pieces, ["<h>system</h>\n\n", "<e>", "<e>"]);
        assert_eq!(
            trims[0],
            Trim {
                start: true,
                end: true
            }
        );
        assert_eq!(
            trims[1],
            Trim {
                start: false,
                end: true
            }
        );
        assert_eq!(trims[0].apply(" \n hi\t\n"), "hi");
        assert_eq!(
            trims[1].apply(" hi \u{a0}\n"),
            " hi \u{a0}",
            "C isspace only"
        );
    }

    #[test]
    fn a_template_that_drops_repeats_or_reorders_a_message_is_rejected() {
        let p = two_placeholders();
        for template in ["only {1}", "{0} and {0} and {1}", "{1} before {0}"] {
            let err = split_rendered(&padded(template, &p), &p).unwrap_err();
            assert!(
                matches!(err, LlmError::Rejected { .. }),
                "{template}: {err:?}"
            );
        }
    }

    #[test]
    fn placeholders_never_occur_in_the_contents_and_differ_per_message() {
        let contents: Vec<Cow<'_, str>> = vec![Cow::Borrowed("\u{f8f0}"), Cow::Borrowed("")];
        let p = placeholders(&contents).unwrap();
        assert_eq!(p.len(), 2);
        assert_ne!(p[0], p[1]);
        assert!(!p[1].contains(&p[0]) && !p[0].contains(&p[1]));
        assert!(contents
            .iter()
            .all(|c| p.iter().all(|p| !c.contains(p.as_str()))));
    }
}
