//! [`EmbeddedModel`]: one GGUF model loaded into this process with llama.cpp, and the blocking
//! generation loop over it. Everything here blocks; the async adapter
//! ([`EmbeddedLlm`](super::EmbeddedLlm)) runs it on tokio's blocking threads.
//!
//! llama.cpp's backend can be initialised once per process, so it lives in a `static`; models
//! share it. A context (the KV cache) is created per request and dropped afterwards: for the
//! small models this engine targets that costs milliseconds and keeps requests independent.

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use butler_domain::ports::{LlmError, LlmReply, LlmRequest};
use butler_domain::prompt::ChatMessage;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::{send_logs_to_tracing, ChatTemplateError, LogOptions};

use super::gguf::{check_gguf, ModelFileError};

/// Tokens decoded per `llama_decode` call while reading the prompt. Also how often a long
/// prompt checks its deadline.
const PROMPT_CHUNK: usize = 256;

/// The process-wide llama.cpp backend (`None` if something else initialised it first).
fn backend() -> Result<&'static LlamaBackend, ModelFileError> {
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
fn default_threads() -> i32 {
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
    threads: i32,
    load_time: Duration,
    /// llama.cpp may touch the model while creating a context; creations are serialised.
    context_creation: Mutex<()>,
}

impl std::fmt::Debug for EmbeddedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedModel")
            .field("path", &self.path)
            .field("n_ctx_train", &self.n_ctx_train)
            .field("threads", &self.threads)
            .finish_non_exhaustive()
    }
}

/// What one generation produced, with the figures the logs and benchmarks want.
#[derive(Debug, Clone)]
pub struct Generation {
    /// The reply (text and token usage).
    pub reply: LlmReply,
    /// Time spent reading the prompt.
    pub prompt_time: Duration,
    /// Time spent generating.
    pub generation_time: Duration,
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
            threads: default_threads(),
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

    /// Tokens in `text` by the model's own vocabulary: no BOS/EOS, and special-token spellings
    /// counted as plain text.
    #[must_use]
    pub fn count_tokens(&self, text: &str) -> usize {
        self.model
            .vocab()
            .tokenize(text.as_bytes(), false, false)
            .len()
    }

    /// The conversation rendered with the model's chat template, ending with the opening of the
    /// assistant's turn.
    ///
    /// # Errors
    /// [`LlmError::Rejected`] if llama.cpp cannot apply the template.
    pub fn render_prompt(&self, messages: &[ChatMessage]) -> Result<String, LlmError> {
        let chat = messages
            .iter()
            .map(|m| {
                // A NUL byte cannot cross into C; it carries no meaning in a chat message.
                let content = m.content.replace('\0', "");
                LlamaChatMessage::new(m.role.as_str().to_owned(), content)
            })
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

    /// Tokens of the rendered prompt, exactly as inference reads it.
    ///
    /// # Errors
    /// As [`Self::render_prompt`].
    pub fn prompt_tokens(&self, messages: &[ChatMessage]) -> Result<Vec<LlamaToken>, LlmError> {
        let prompt = self.render_prompt(messages)?;
        Ok(self.model.vocab().tokenize(prompt.as_bytes(), true, true))
    }

    /// Generates a reply with a context of `n_ctx` tokens. Blocking. Checks `deadline` and
    /// `cancelled` between decode steps, so an abandoned request stops within one step.
    ///
    /// # Errors
    /// [`LlmError::Rejected`] before any inference when prompt + `max_tokens` exceeds `n_ctx`;
    /// [`LlmError::Timeout`] past the deadline; [`LlmError::Unavailable`] if llama.cpp fails;
    /// [`LlmError::InvalidResponse`] if the model produced no text.
    pub fn generate(
        &self,
        request: &LlmRequest,
        n_ctx: u32,
        deadline: Instant,
        cancelled: &AtomicBool,
    ) -> Result<Generation, LlmError> {
        let started = Instant::now();
        let prompt = self.prompt_tokens(&request.messages)?;
        let max_tokens = request.options.max_tokens.max(1);
        let needed = prompt.len().saturating_add(max_tokens as usize);
        if needed > n_ctx as usize {
            return Err(LlmError::Rejected {
                detail: format!(
                    "the prompt is {} tokens and max_tokens is {max_tokens}: {needed} exceeds the \
                     model's context window of {n_ctx}",
                    prompt.len()
                ),
            });
        }
        let stop = |what: &str| -> Option<LlmError> {
            if cancelled.load(Ordering::Relaxed) || Instant::now() >= deadline {
                tracing::debug!(stage = what, "embedded generation stopped at its deadline");
                Some(LlmError::Timeout {
                    after: deadline.saturating_duration_since(started),
                })
            } else {
                None
            }
        };
        let mut ctx = self.new_context(n_ctx)?;
        let mut batch = LlamaBatch::new(PROMPT_CHUNK, 1);
        let last = prompt.len().saturating_sub(1);
        for (chunk_index, chunk) in prompt.chunks(PROMPT_CHUNK).enumerate() {
            if let Some(e) = stop("prompt") {
                return Err(e);
            }
            batch.clear();
            for (offset, token) in chunk.iter().enumerate() {
                let index = chunk_index * PROMPT_CHUNK + offset;
                batch
                    .add(*token, position(index)?, &[0], index == last)
                    .map_err(engine_failure)?;
            }
            ctx.decode(&mut batch).map_err(engine_failure)?;
        }
        let prompt_time = started.elapsed();

        let generation_started = Instant::now();
        let mut sampler = sampler(request.options.temperature);
        let vocab = self.model.vocab();
        let mut bytes = Vec::new();
        let mut generated: u32 = 0;
        let mut position_now = prompt.len();
        let mut logits_at = batch.n_tokens() - 1;
        loop {
            let token = sampler.sample(&ctx, logits_at);
            if vocab.is_eog(token) {
                break;
            }
            vocab.token_to_piece_into(token, &mut bytes, false, None);
            generated += 1;
            if generated >= max_tokens {
                break;
            }
            if let Some(e) = stop("generation") {
                return Err(e);
            }
            batch.clear();
            batch
                .add(token, position(position_now)?, &[0], true)
                .map_err(engine_failure)?;
            ctx.decode(&mut batch).map_err(engine_failure)?;
            position_now += 1;
            logits_at = 0;
        }
        let generation_time = generation_started.elapsed();
        let text = decode_utf8(bytes).trim().to_owned();
        if text.is_empty() {
            return Err(LlmError::InvalidResponse {
                detail: format!("the embedded model generated no text ({generated} tokens)"),
            });
        }
        Ok(Generation {
            reply: LlmReply {
                text,
                prompt_tokens: u32::try_from(prompt.len()).ok(),
                completion_tokens: Some(generated),
            },
            prompt_time,
            generation_time,
        })
    }

    fn new_context(&self, n_ctx: u32) -> Result<LlamaContext<'_>, LlmError> {
        let backend = backend().map_err(|e| LlmError::Unavailable {
            detail: e.to_string(),
        })?;
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(n_ctx))
            .with_n_batch(PROMPT_CHUNK as u32)
            .with_n_threads(self.threads)
            .with_n_threads_batch(self.threads);
        // A poisoned lock only means another creation panicked; the guard protects no data.
        let _guard = self
            .context_creation
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.model
            .new_context(backend, params)
            .map_err(|e| LlmError::Unavailable {
                detail: format!("llama.cpp cannot create a {n_ctx}-token context: {e}"),
            })
    }
}

/// The sampler for a temperature: greedy at 0, else llama.cpp's usual chain (top-k 40,
/// top-p 0.95, min-p 0.05) then temperature and a random draw.
fn sampler(temperature: f32) -> LlamaSampler {
    if temperature <= 0.0 {
        return LlamaSampler::greedy();
    }
    LlamaSampler::chain_simple([
        LlamaSampler::top_k(40),
        LlamaSampler::top_p(0.95, 1),
        LlamaSampler::min_p(0.05, 1),
        LlamaSampler::temp(temperature),
        LlamaSampler::dist(fastrand::u32(..)),
    ])
}

/// Generated bytes as text. Multi-byte characters are often split across tokens, so bytes are
/// collected and decoded once; an incomplete character cut off by `max_tokens` is dropped.
fn decode_utf8(bytes: Vec<u8>) -> String {
    match String::from_utf8(bytes) {
        Ok(text) => text,
        // Only an incomplete character at the very end: drop it.
        Err(e) if e.utf8_error().error_len().is_none() => {
            let valid = e.utf8_error().valid_up_to();
            String::from_utf8_lossy(&e.as_bytes()[..valid]).into_owned()
        }
        // Invalid bytes inside the text (a model emitting raw bytes): keep them visible.
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

fn position(index: usize) -> Result<i32, LlmError> {
    i32::try_from(index).map_err(|_| LlmError::Rejected {
        detail: format!("token position {index} is out of llama.cpp's range"),
    })
}

fn engine_failure(error: impl std::fmt::Display) -> LlmError {
    LlmError::Unavailable {
        detail: format!("llama.cpp failed: {error}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_split_across_tokens_is_joined_and_a_cut_off_tail_dropped() {
        let text = "Пётр".as_bytes().to_vec();
        assert_eq!(decode_utf8(text.clone()), "Пётр");
        let cut = text[..text.len() - 1].to_vec();
        assert_eq!(decode_utf8(cut), "Пёт");
    }
}
