//! [`Session`]: one llama.cpp context kept for the life of the engine, with a KV-cache
//! sequence ("slot") per recently active conversation, so a turn reads only what is new.
//!
//! A conversation's next prompt starts with the previous prompt and the reply the model
//! generated for it (the prompt layout keeps it that way). Each slot remembers the tokens its
//! KV cache holds; a request takes the slot whose tokens share the longest prefix with its
//! prompt — when that prefix covers at least half of what the slot holds, i.e. the request
//! continues that conversation — drops the rest of the slot and evaluates only the tokens
//! after the shared prefix. Otherwise it takes the least recently used slot. With no slots to
//! spare (`slots == 1` and `reuse == false`), every request starts from an empty cache.
//!
//! Each slot is its own KV stream of `window` cells (`kv_unified = false`): attention over a
//! slot's tokens never scans the other slots' cells. Memory is `slots × window` cells.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use butler_domain::ports::{LlmError, LlmRequest, OutputFormat};
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;

use super::engine::{backend, EmbeddedModel};

/// Tokens decoded per `llama_decode` call while reading the prompt. Also how often a long
/// prompt checks its deadline.
const PROMPT_CHUNK: usize = 256;

/// How the session is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionConfig {
    /// Cells per slot: the most prompt + reply tokens of one request.
    pub window: u32,
    /// Conversations whose KV state is kept between requests (at least 1).
    pub slots: u32,
    /// Whether a cached prefix is reused; `false` evaluates every prompt from scratch (for
    /// comparisons, and for models whose cache cannot be cut).
    pub reuse: bool,
    /// CPU threads for llama.cpp.
    pub threads: i32,
}

/// What one generation did, besides its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GenerationStats {
    /// Tokens of the prompt.
    pub prompt_tokens: usize,
    /// Prompt tokens found in the cache (not evaluated).
    pub reused_tokens: usize,
    /// Tokens generated (the end-of-generation token not counted).
    pub generated_tokens: usize,
    /// Time reading the part of the prompt that was not cached.
    pub prompt_time: Duration,
    /// Time generating.
    pub generation_time: Duration,
}

struct Slot {
    /// The tokens whose KV state the slot holds, positions `0..len`.
    tokens: Vec<LlamaToken>,
    last_used: u64,
}

/// The engine's context and its slots. Not `Send`: it lives on the engine's thread.
pub struct Session<'m> {
    model: &'m EmbeddedModel,
    ctx: LlamaContext<'m>,
    slots: Vec<Slot>,
    config: SessionConfig,
    uses: u64,
    batch: LlamaBatch<'m>,
}

impl<'m> Session<'m> {
    /// Creates the context: `slots × window` cells of KV cache.
    ///
    /// # Errors
    /// [`LlmError::Unavailable`] if llama.cpp cannot allocate it.
    pub fn new(model: &'m EmbeddedModel, config: SessionConfig) -> Result<Self, LlmError> {
        let slots = config.slots.max(1);
        let backend = backend().map_err(|e| LlmError::Unavailable {
            detail: e.to_string(),
        })?;
        let cells = config.window.saturating_mul(slots);
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(cells))
            .with_n_batch(PROMPT_CHUNK as u32)
            .with_n_seq_max(slots)
            .with_kv_unified(false)
            .with_n_threads(config.threads)
            .with_n_threads_batch(config.threads);
        let ctx = model
            .new_context_with(backend, params)
            .map_err(|e| LlmError::Unavailable {
                detail: format!(
                    "llama.cpp cannot create a context of {slots} × {} tokens: {e}",
                    config.window
                ),
            })?;
        Ok(Self {
            model,
            ctx,
            slots: (0..slots)
                .map(|_| Slot {
                    tokens: Vec::new(),
                    last_used: 0,
                })
                .collect(),
            config: SessionConfig { slots, ..config },
            uses: 0,
            batch: LlamaBatch::new(PROMPT_CHUNK, 1),
        })
    }

    /// Generates a reply, handing each generated token's bytes to `on_bytes` as it is
    /// decoded; `on_bytes` returns `false` to stop early (the receiver went away). Checks
    /// `deadline` and `cancelled` between decode steps.
    ///
    /// # Errors
    /// [`LlmError::Rejected`] before any inference when prompt + `max_tokens` exceeds the
    /// window; [`LlmError::Timeout`] past the deadline or when cancelled;
    /// [`LlmError::Unavailable`] if llama.cpp fails.
    pub fn generate(
        &mut self,
        request: &LlmRequest,
        deadline: Instant,
        cancelled: &AtomicBool,
        on_bytes: &mut dyn FnMut(&[u8]) -> bool,
    ) -> Result<GenerationStats, LlmError> {
        let started = Instant::now();
        let prompt = self.model.prompt_tokens(&request.messages)?.tokens;
        let max_tokens = request.options.max_tokens.max(1) as usize;
        let window = self.config.window as usize;
        let needed = prompt.len().saturating_add(max_tokens);
        if needed > window || prompt.is_empty() {
            return Err(LlmError::Rejected {
                detail: format!(
                    "the prompt is {} tokens and max_tokens is {max_tokens}: {needed} exceeds the \
                     model's context window of {window}",
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

        let (slot, reused) = self.choose_slot(&prompt);
        let seq = i32::try_from(slot).unwrap_or(0);
        self.uses += 1;
        self.slots[slot].last_used = self.uses;
        // Whatever happens next, the slot holds only the reused prefix until tokens are decoded.
        let reused = self.cut_slot(slot, reused);
        let result = self.run(
            slot, seq, &prompt, reused, max_tokens, request, &stop, on_bytes,
        );
        if result.is_err() {
            // A failed or abandoned request leaves the cache in an unknown state: forget it.
            self.cut_slot(slot, 0);
        }
        let (prompt_time, generated, generation_time) = result?;
        Ok(GenerationStats {
            prompt_tokens: prompt.len(),
            reused_tokens: reused,
            generated_tokens: generated,
            prompt_time,
            generation_time,
        })
    }

    /// The slot for `prompt` and how many of its leading tokens that slot already holds.
    fn choose_slot(&self, prompt: &[LlamaToken]) -> (usize, usize) {
        if !self.config.reuse {
            let lru = self.least_recently_used();
            return (lru, 0);
        }
        let common = |slot: &Slot| {
            slot.tokens
                .iter()
                .zip(prompt)
                .take_while(|(a, b)| a == b)
                .count()
        };
        // A continuation: the prompt shares at least half of what the slot holds.
        let continuation = self
            .slots
            .iter()
            .enumerate()
            .map(|(i, s)| (i, common(s), s.tokens.len()))
            .filter(|(_, shared, held)| *held > 0 && *shared * 2 >= *held)
            .max_by_key(|(_, shared, _)| *shared);
        if let Some((slot, shared, _)) = continuation {
            return (slot, shared);
        }
        let lru = self.least_recently_used();
        (lru, common(&self.slots[lru]))
    }

    fn least_recently_used(&self) -> usize {
        self.slots
            .iter()
            .enumerate()
            .min_by_key(|(_, s)| (!s.tokens.is_empty(), s.last_used))
            .map_or(0, |(i, _)| i)
    }

    /// Keeps the first `keep` tokens of the slot (dropping the rest from the KV cache);
    /// returns how many it really kept (0 if the cache cannot be cut, e.g. a recurrent model).
    fn cut_slot(&mut self, slot: usize, keep: usize) -> usize {
        let seq = i32::try_from(slot).unwrap_or(0);
        let held = self.slots[slot].tokens.len();
        if keep >= held {
            return held;
        }
        let from = u32::try_from(keep).unwrap_or(u32::MAX);
        let kept = match self.ctx.kv_cache_seq_rm(seq, Some(from), None) {
            Ok(()) => keep,
            Err(_) => {
                let _ = self.ctx.kv_cache_seq_rm(seq, None, None);
                0
            }
        };
        self.slots[slot].tokens.truncate(kept);
        kept
    }

    /// Reads the prompt after the reused prefix, then generates. Returns the prompt time, the
    /// tokens generated and the generation time.
    #[allow(clippy::too_many_arguments)]
    fn run(
        &mut self,
        slot: usize,
        seq: i32,
        prompt: &[LlamaToken],
        reused: usize,
        max_tokens: usize,
        request: &LlmRequest,
        stop: &dyn Fn(&str) -> Option<LlmError>,
        on_bytes: &mut dyn FnMut(&[u8]) -> bool,
    ) -> Result<(Duration, usize, Duration), LlmError> {
        let prompt_started = Instant::now();
        // The last prompt token is always evaluated: its logits choose the first reply token.
        let mut start = reused.min(prompt.len() - 1);
        if start < reused {
            self.cut_slot(slot, start);
        }
        while start < prompt.len() {
            if let Some(e) = stop("prompt") {
                return Err(e);
            }
            let end = (start + PROMPT_CHUNK).min(prompt.len());
            self.batch.clear();
            for (index, token) in prompt.iter().enumerate().take(end).skip(start) {
                self.batch
                    .add(*token, position(index)?, &[seq], index == prompt.len() - 1)
                    .map_err(engine_failure)?;
            }
            self.ctx.decode(&mut self.batch).map_err(engine_failure)?;
            self.slots[slot]
                .tokens
                .extend_from_slice(&prompt[start..end]);
            start = end;
        }
        let prompt_time = prompt_started.elapsed();

        let generation_started = Instant::now();
        let mut sampler = sampler(self.model, request);
        let vocab = self.model.vocab();
        let mut bytes = Vec::new();
        let mut generated = 0;
        let mut logits_at = self.batch.n_tokens() - 1;
        loop {
            let token = sampler.sample(&self.ctx, logits_at);
            if vocab.is_eog(token) {
                break;
            }
            bytes.clear();
            vocab.token_to_piece_into(token, &mut bytes, false, None);
            generated += 1;
            if !on_bytes(&bytes) || generated >= max_tokens {
                break;
            }
            if let Some(e) = stop("generation") {
                return Err(e);
            }
            let at = self.slots[slot].tokens.len();
            self.batch.clear();
            self.batch
                .add(token, position(at)?, &[seq], true)
                .map_err(engine_failure)?;
            self.ctx.decode(&mut self.batch).map_err(engine_failure)?;
            self.slots[slot].tokens.push(token);
            logits_at = 0;
        }
        Ok((prompt_time, generated, generation_started.elapsed()))
    }
}

/// The sampler of a request: llama.cpp's usual chain (top-k 40, top-p 0.95, min-p 0.05, then
/// temperature and a random draw), greedy at temperature 0. A repetition penalty over the last
/// [`PENALTY_LAST_N`] generated tokens keeps a small model from looping on one phrase (its
/// summaries otherwise degenerate); a request for JSON of a schema puts the schema's grammar
/// first, so every token is valid JSON of that schema (see `grammar.rs`). A schema without a
/// grammar is logged and sampled unconstrained: callers parse tolerantly anyway.
fn sampler(model: &EmbeddedModel, request: &LlmRequest) -> LlamaSampler {
    let mut chain = Vec::with_capacity(7);
    if let OutputFormat::Json { name, schema } = &request.format {
        match super::grammar::json_schema_to_gbnf(schema)
            .map_err(|e| e.to_string())
            .and_then(|gbnf| {
                LlamaSampler::grammar(model.llama(), &gbnf, "root").map_err(|e| e.to_string())
            }) {
            Ok(grammar) => chain.push(grammar),
            Err(error) => {
                tracing::warn!(schema = %name, %error, "no grammar for the schema; output unconstrained");
            }
        }
    }
    chain.push(LlamaSampler::penalties(
        model.llama().n_vocab(),
        PENALTY_LAST_N,
        PENALTY_REPEAT,
        0.0,
        0.0,
    ));
    let temperature = request.options.temperature;
    if temperature <= 0.0 {
        chain.push(LlamaSampler::greedy());
    } else {
        chain.extend([
            LlamaSampler::top_k(40),
            LlamaSampler::top_p(0.95, 1),
            LlamaSampler::min_p(0.05, 1),
            LlamaSampler::temp(temperature),
            LlamaSampler::dist(fastrand::u32(..)),
        ]);
    }
    LlamaSampler::chain_simple(chain)
}

/// Generated tokens the repetition penalty looks back over.
const PENALTY_LAST_N: i32 = 64;

/// The repetition penalty (1.0 = none): llama.cpp's customary mild value.
const PENALTY_REPEAT: f32 = 1.1;

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
