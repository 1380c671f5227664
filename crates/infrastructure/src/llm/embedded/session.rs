//! [`Session`]: one llama.cpp context kept for the life of the engine, with a KV-cache
//! sequence ("slot") per recently active conversation, so a turn reads only what is new, and
//! several generations in progress at once, decoded together.
//!
//! A conversation's next prompt starts with the previous prompt and the reply the model
//! generated for it (the prompt layout keeps it that way). Each slot remembers the tokens its
//! KV cache holds. A request takes the free slot from which it can reuse the most — when that
//! covers at least half of what the slot holds, or after a window move at least half of the
//! prompt, i.e. the request continues that conversation — and evaluates only the tokens it
//! could not reuse. Otherwise it takes the least recently used
//! free slot. With no slots to spare (`slots == 1` and `reuse == false`), every request starts
//! from an empty cache.
//!
//! Reuse is the shared prefix plus, when the conversation's window moved (old turns dropped
//! out of the prompt), every later run of at least [`SHIFT_MIN_RUN`] cached tokens that the
//! prompt still has in the same order: the dropped cells are removed and the kept ones shifted
//! to their new positions (llama.cpp's sequence remove + position add, as `llama-server
//! --cache-reuse` does) instead of being read again. Shifted cells were computed next to the
//! turns that dropped out, so a reply after a shift may differ slightly from one over a prompt
//! read from scratch (see `docs/llm.md`).
//!
//! Generation is stepwise: [`Session::begin`] makes a [`Generation`] (its slot reserved),
//! [`Session::step`] advances any set of generations by one `llama_decode` — a chunk of each
//! one's prompt, or its next token — in one batch across their slots, and [`Session::end`]
//! frees the slot. The engine thread decides which generations run in each step.
//!
//! Each slot is its own KV stream of `window` cells (`kv_unified = false`): attention over a
//! slot's tokens never scans the other slots' cells. Memory is `slots × window` cells.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use butler_domain::ports::{LlmError, LlmRequest, OutputFormat, Priority};
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;

use super::engine::{backend, EmbeddedModel};

/// Tokens decoded per `llama_decode` call, over every generation in the step. Also how long a
/// generation that is asked to yield may hold the engine: one chunk of its prompt.
pub const PROMPT_CHUNK: usize = 256;

/// Tokens of a background generation's prompt read per step: how long a reply that arrives
/// may wait for the step in progress. Small, since nobody waits for background work: 32 tokens
/// are ≈ 0.1 s on the 135M test model on 2 cores (≈ 1 s for a 1.5B model), where a whole
/// [`PROMPT_CHUNK`] measured 4.6 s to first text under load.
pub const BACKGROUND_CHUNK: usize = 32;

/// The shortest run of cached tokens moved to a new position when a conversation's window
/// moves; shorter runs are read again (a shift is not free, and a short run may match by chance).
pub const SHIFT_MIN_RUN: usize = 16;

/// How the session is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionConfig {
    /// Cells per slot: the most prompt + reply tokens of one request.
    pub window: u32,
    /// Conversations whose KV state is kept between requests (at least 1); also the most
    /// generations in progress at once.
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
    /// Prompt tokens found in the cache (not evaluated), shifted ones included.
    pub reused_tokens: usize,
    /// Of those, tokens kept by shifting them to a new position.
    pub shifted_tokens: usize,
    /// Tokens generated (the end-of-generation token not counted).
    pub generated_tokens: usize,
    /// Time from [`Session::begin`] until the prompt was read (steps spent on other
    /// generations included).
    pub prompt_time: Duration,
    /// Time from then until the last token.
    pub generation_time: Duration,
    /// How long the decode took that first applied this generation's KV shift (llama.cpp applies
    /// a pending position shift at the next decode, over every cell of every slot), with the
    /// tokens that decode evaluated besides; `None` without a shift.
    pub shift_decode: Option<(Duration, usize)>,
}

/// What a step did for one generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// Part of its prompt was read; no text yet.
    Reading,
    /// A token was generated: its bytes (possibly part of a UTF-8 character).
    Token(Vec<u8>),
    /// It ended: the end-of-generation token, or `max_tokens` with this last token's bytes.
    Finished(Option<Vec<u8>>),
}

/// One request in progress on a slot. Made by [`Session::begin`], advanced by
/// [`Session::step`], ended by [`Session::end`].
pub struct Generation {
    slot: usize,
    seq: i32,
    /// What its slot must hold before the next token: the prompt, or after a
    /// [`Session::suspend`] the prompt, the tokens generated so far and the one not yet decoded.
    prompt: Vec<LlamaToken>,
    /// Tokens of the request's own prompt (what the stats report).
    prompt_len: usize,
    /// Suspended: it holds no slot until [`Session::resume`].
    suspended: bool,
    /// Prompt tokens in the slot's KV cache so far.
    read: usize,
    reused: usize,
    shifted: usize,
    /// See [`GenerationStats::shift_decode`].
    shift_decode: Option<(Duration, usize)>,
    max_tokens: usize,
    sampler: LlamaSampler,
    generated: usize,
    /// The last generated token, not yet decoded.
    next: Option<LlamaToken>,
    finished: bool,
    began: Instant,
    prompt_read: Option<Instant>,
    last_token: Option<Instant>,
}

impl std::fmt::Debug for Generation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generation")
            .field("slot", &self.slot)
            .field("prompt", &self.prompt.len())
            .field("read", &self.read)
            .field("generated", &self.generated)
            .finish_non_exhaustive()
    }
}

impl Generation {
    /// Whether it has generated its last token.
    #[must_use]
    pub const fn is_finished(&self) -> bool {
        self.finished
    }

    /// Whether its prompt is still being read (no token generated yet), or after a resume
    /// the tokens it had.
    #[must_use]
    pub fn is_reading(&self) -> bool {
        self.read < self.prompt.len()
    }

    /// Whether it was suspended and holds no slot (see [`Session::suspend`]).
    #[must_use]
    pub const fn is_suspended(&self) -> bool {
        self.suspended
    }

    /// What it did so far.
    #[must_use]
    pub fn stats(&self) -> GenerationStats {
        let prompt_read = self.prompt_read.unwrap_or_else(Instant::now);
        GenerationStats {
            prompt_tokens: self.prompt_len,
            reused_tokens: self.reused,
            shifted_tokens: self.shifted,
            shift_decode: self.shift_decode,
            generated_tokens: self.generated,
            prompt_time: prompt_read.saturating_duration_since(self.began),
            generation_time: self
                .last_token
                .unwrap_or(prompt_read)
                .saturating_duration_since(prompt_read),
        }
    }
}

struct Slot {
    /// The tokens whose KV state the slot holds, positions `0..len`.
    tokens: Vec<LlamaToken>,
    last_used: u64,
    /// A generation is in progress on it.
    busy: bool,
}

/// How a slot's cache serves a prompt: the shared prefix, then runs moved to new positions.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReusePlan {
    /// Leading tokens shared as they are.
    pub prefix: usize,
    /// Runs of cached tokens kept at a new position, in order.
    pub moves: Vec<Move>,
}

/// A run of `len` cached tokens at positions `from..from + len` that the prompt has at
/// `to..to + len` (`to < from`: cells before it were dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Move {
    /// Where the run is in the cache.
    pub from: usize,
    /// Where the prompt has it.
    pub to: usize,
    /// Its length.
    pub len: usize,
}

impl ReusePlan {
    /// Prompt tokens the plan keeps: `prompt[..kept()]` needs no evaluation.
    #[must_use]
    pub fn kept(&self) -> usize {
        self.moves.last().map_or(self.prefix, |m| m.to + m.len)
    }

    /// Tokens kept by shifting.
    #[must_use]
    pub fn shifted(&self) -> usize {
        self.moves.iter().map(|m| m.len).sum()
    }

    /// The reuse of `cached` for `prompt`: the common prefix and, if `shift`, every later run
    /// of at least `min_run` cached tokens that continues the prompt (the cached tokens in
    /// between are dropped; tokens the prompt adds in the middle end the reuse). The same
    /// greedy walk as `llama-server --cache-reuse`.
    #[must_use]
    pub fn new<T: PartialEq>(cached: &[T], prompt: &[T], shift: bool, min_run: usize) -> Self {
        let prefix = cached
            .iter()
            .zip(prompt)
            .take_while(|(a, b)| a == b)
            .count();
        let mut plan = Self {
            prefix,
            moves: Vec::new(),
        };
        if !shift || min_run == 0 {
            return plan;
        }
        let (mut c, mut p) = (prefix, prefix);
        while c < cached.len() && p < prompt.len() {
            let run = cached[c..]
                .iter()
                .zip(&prompt[p..])
                .take_while(|(a, b)| a == b)
                .count();
            if run >= min_run {
                plan.moves.push(Move {
                    from: c,
                    to: p,
                    len: run,
                });
                c += run;
                p += run;
            } else {
                c += 1;
            }
        }
        plan
    }
}

/// The engine's context and its slots. Not `Send`: it lives on the engine's thread.
pub struct Session<'m> {
    model: &'m EmbeddedModel,
    ctx: LlamaContext<'m>,
    slots: Vec<Slot>,
    config: SessionConfig,
    can_shift: bool,
    uses: u64,
    batch: LlamaBatch<'m>,
    /// Positions were shifted since the last decode: the next decode applies the shift first.
    shift_pending: bool,
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
        let can_shift = ctx.kv_cache_can_shift();
        Ok(Self {
            model,
            ctx,
            slots: (0..slots)
                .map(|_| Slot {
                    tokens: Vec::new(),
                    last_used: 0,
                    busy: false,
                })
                .collect(),
            config: SessionConfig { slots, ..config },
            can_shift,
            uses: 0,
            batch: LlamaBatch::new(PROMPT_CHUNK, 1),
            shift_pending: false,
        })
    }

    /// Whether a slot is free for [`Self::begin`].
    #[must_use]
    pub fn has_free_slot(&self) -> bool {
        self.slots.iter().any(|s| !s.busy)
    }

    /// Slots free for [`Self::begin`], and slots in all.
    #[must_use]
    pub fn free_slots(&self) -> (usize, usize) {
        (
            self.slots.iter().filter(|s| !s.busy).count(),
            self.slots.len(),
        )
    }

    /// Starts a generation on a free slot, reusing what that slot's cache holds of the prompt.
    /// Nothing is decoded yet.
    ///
    /// # Errors
    /// [`LlmError::Rejected`] when prompt + `max_tokens` exceeds the window;
    /// [`LlmError::Unavailable`] when every slot is busy.
    pub fn begin(&mut self, request: &LlmRequest) -> Result<Generation, LlmError> {
        let began = Instant::now();
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
        // Background work never shifts a cache: llama.cpp applies a shift to every cell of every
        // slot at the next decode, whoever's it is (≈ as long as reading a few hundred tokens on
        // 2 cores), and a reply that arrives would wait for that step. What a background prompt
        // could keep by moving is a coincidence of shared text anyway.
        let shift = request.priority == Priority::Interactive;
        let Some((slot, plan)) = self.choose_slot(&prompt, shift) else {
            return Err(LlmError::Unavailable {
                detail: "every KV slot of the embedded engine is busy".to_owned(),
            });
        };
        self.uses += 1;
        self.slots[slot].last_used = self.uses;
        self.slots[slot].busy = true;
        let (reused, shifted) = self.apply(slot, &prompt, &plan);
        // The last prompt token is always evaluated: its logits choose the first reply token.
        let reused = if reused >= prompt.len() {
            self.cut_slot(slot, prompt.len() - 1)
        } else {
            reused
        };
        Ok(Generation {
            slot,
            seq: i32::try_from(slot).unwrap_or(0),
            read: reused,
            reused,
            shifted: shifted.min(reused),
            shift_decode: None,
            max_tokens,
            sampler: sampler(self.model, request),
            generated: 0,
            next: None,
            finished: false,
            began,
            prompt_read: None,
            last_token: None,
            prompt_len: prompt.len(),
            suspended: false,
            prompt,
        })
    }

    /// Takes a generation off its slot so another request can have the slot: it keeps its
    /// sampler and everything it generated, and the slot keeps its KV cache until someone else
    /// needs it. [`Self::resume`] puts it back on a slot, reading again whatever the cache no
    /// longer holds; it then continues exactly where it stopped (the token sampled last is
    /// decoded as the last token of what it reads). For a generation that holds a slot only a
    /// reply needs: with a single slot, a paused background generation would otherwise keep
    /// every reply waiting until it ends.
    pub fn suspend(&mut self, generation: &mut Generation) {
        if generation.suspended {
            return;
        }
        let slot = generation.slot;
        if let Some(next) = generation.next.take() {
            // Generating: the context is what the slot holds, plus the token sampled last.
            let mut context = self.slots[slot].tokens.clone();
            context.push(next);
            generation.prompt = context;
        }
        // Still reading its prompt: the prompt is the context; the slot holds part of it.
        generation.read = 0;
        generation.suspended = true;
        self.slots[slot].busy = false;
    }

    /// Puts a suspended generation back on a free slot, reusing what that slot's cache holds of
    /// its context.
    ///
    /// # Errors
    /// [`LlmError::Unavailable`] when every slot is busy (it stays suspended).
    pub fn resume(&mut self, generation: &mut Generation) -> Result<(), LlmError> {
        if !generation.suspended {
            return Ok(());
        }
        let Some((slot, plan)) = self.choose_slot(&generation.prompt, false) else {
            return Err(LlmError::Unavailable {
                detail: "every KV slot of the embedded engine is busy".to_owned(),
            });
        };
        self.uses += 1;
        self.slots[slot].last_used = self.uses;
        self.slots[slot].busy = true;
        let (kept, _) = self.apply(slot, &generation.prompt, &plan);
        let len = generation.prompt.len();
        generation.read = if kept >= len {
            self.cut_slot(slot, len - 1)
        } else {
            kept
        };
        generation.slot = slot;
        generation.seq = i32::try_from(slot).unwrap_or(0);
        generation.suspended = false;
        Ok(())
    }

    /// Advances each of `generations` (not finished or suspended ones) by one decode, all in one batch: the
    /// next chunk of a prompt being read (chunks share `budget` tokens, at most
    /// [`PROMPT_CHUNK`], first come first served), or the token generated last. Returns each
    /// one's progress, in order.
    ///
    /// # Errors
    /// [`LlmError::Unavailable`] if llama.cpp fails; every generation of the batch is then in
    /// an unknown state and must be ended with `keep_cache == false`.
    pub fn step(
        &mut self,
        generations: &mut [&mut Generation],
        budget: usize,
    ) -> Result<Vec<Progress>, LlmError> {
        self.batch.clear();
        // Per generation: tokens added this step, and the batch index of its logits.
        let mut added = vec![(0_usize, None::<i32>); generations.len()];
        let mut budget = budget.clamp(1, PROMPT_CHUNK);
        // Generating ones first: one token each, so a long prompt never delays their next token.
        for (g, entry) in generations.iter().zip(added.iter_mut()) {
            if g.next.is_some() && !g.finished && budget > 0 {
                entry.0 = 1;
                budget -= 1;
            }
        }
        for (g, entry) in generations.iter().zip(added.iter_mut()) {
            if g.finished || g.suspended || g.next.is_some() || budget == 0 {
                continue;
            }
            let count = budget.min(g.prompt.len() - g.read);
            entry.0 = count;
            budget -= count;
        }
        // Into the batch in ascending sequence order. With a KV stream per slot llama.cpp splits
        // a batch into micro-batches (`split_equal`, sequential) that each take sequences only
        // in consecutive ascending order, in the batch's order: four tokens of slots 2, 3, 0, 1
        // were two passes over the weights, of 1, 0, 3, 2 three — each nearly the price of a
        // whole step, so batching gained almost nothing. Slot order makes every run of
        // consecutive slots one micro-batch.
        let mut order: Vec<usize> = (0..generations.len()).collect();
        order.sort_by_key(|&i| generations[i].seq);
        for i in order {
            let (count, _) = added[i];
            if count == 0 {
                continue;
            }
            let g = &generations[i];
            if let Some(token) = g.next {
                let at = self.slots[g.slot].tokens.len();
                self.batch
                    .add(token, position(at)?, &[g.seq], true)
                    .map_err(engine_failure)?;
                added[i].1 = Some(self.batch.n_tokens() - 1);
                continue;
            }
            let end = g.read + count;
            for index in g.read..end {
                self.batch
                    .add(
                        g.prompt[index],
                        position(index)?,
                        &[g.seq],
                        index == g.prompt.len() - 1,
                    )
                    .map_err(engine_failure)?;
            }
            added[i].1 = (end == g.prompt.len()).then(|| self.batch.n_tokens() - 1);
        }
        if self.batch.n_tokens() == 0 {
            return Ok(generations
                .iter()
                .map(|g| {
                    if g.finished {
                        Progress::Finished(None)
                    } else {
                        Progress::Reading
                    }
                })
                .collect());
        }
        let decode_started = Instant::now();
        self.ctx.decode(&mut self.batch).map_err(engine_failure)?;
        if std::mem::take(&mut self.shift_pending) {
            let took = decode_started.elapsed();
            let tokens = usize::try_from(self.batch.n_tokens()).unwrap_or(0);
            tracing::debug!(
                decode_ms = took.as_secs_f64() * 1e3,
                tokens,
                cells = self.config.window as usize * self.slots.len(),
                "decode that applied a KV shift"
            );
            for g in generations.iter_mut() {
                if g.shifted > 0 && g.shift_decode.is_none() {
                    g.shift_decode = Some((took, tokens));
                }
            }
        }

        let vocab = self.model.vocab();
        let now = Instant::now();
        let mut progress = Vec::with_capacity(generations.len());
        for (g, (count, logits)) in generations.iter_mut().zip(added) {
            if count == 0 {
                progress.push(if g.finished {
                    Progress::Finished(None)
                } else {
                    Progress::Reading
                });
                continue;
            }
            let tokens = &mut self.slots[g.slot].tokens;
            if let Some(token) = g.next.take() {
                tokens.push(token);
            } else {
                tokens.extend_from_slice(&g.prompt[g.read..g.read + count]);
                g.read += count;
            }
            let Some(logits) = logits else {
                progress.push(Progress::Reading);
                continue;
            };
            if g.prompt_read.is_none() {
                g.prompt_read = Some(now);
            }
            let token = g.sampler.sample(&self.ctx, logits);
            g.last_token = Some(Instant::now());
            if vocab.is_eog(token) {
                g.finished = true;
                progress.push(Progress::Finished(None));
                continue;
            }
            let mut bytes = Vec::new();
            vocab.token_to_piece_into(token, &mut bytes, false, None);
            g.generated += 1;
            if g.generated >= g.max_tokens {
                g.finished = true;
                progress.push(Progress::Finished(Some(bytes)));
            } else {
                g.next = Some(token);
                progress.push(Progress::Token(bytes));
            }
        }
        Ok(progress)
    }

    /// Ends a generation and frees its slot. With `keep_cache` the slot keeps what it holds
    /// (every token decoded so far: a later turn of the conversation reuses it, even after a
    /// stop); without, it is emptied (after a llama.cpp failure its state is unknown).
    #[allow(clippy::needless_pass_by_value)] // consumed: an ended generation cannot step again
    pub fn end(&mut self, generation: Generation, keep_cache: bool) {
        if generation.suspended {
            // Its slot was freed when it was suspended; the cache there is someone else's now.
            return;
        }
        let slot = generation.slot;
        if !keep_cache {
            self.cut_slot(slot, 0);
        }
        self.slots[slot].busy = false;
    }

    /// Runs one generation alone to its end, handing each token's bytes to `on_bytes` (which
    /// returns `false` to stop early); checks `deadline` and `cancelled` between decodes. For
    /// callers without a scheduler (measurements, tests).
    ///
    /// # Errors
    /// As [`Self::begin`] and [`Self::step`]; [`LlmError::Timeout`] past the deadline or when
    /// cancelled.
    pub fn generate(
        &mut self,
        request: &LlmRequest,
        deadline: Instant,
        cancelled: &AtomicBool,
        on_bytes: &mut dyn FnMut(&[u8]) -> bool,
    ) -> Result<GenerationStats, LlmError> {
        let started = Instant::now();
        let mut generation = self.begin(request)?;
        loop {
            if cancelled.load(Ordering::Relaxed) || Instant::now() >= deadline {
                self.end(generation, true);
                return Err(LlmError::Timeout {
                    after: deadline.saturating_duration_since(started),
                });
            }
            let progress = match self.step(&mut [&mut generation], PROMPT_CHUNK) {
                Ok(mut p) => p.pop().unwrap_or(Progress::Reading),
                Err(e) => {
                    self.end(generation, false);
                    return Err(e);
                }
            };
            let (bytes, finished) = match progress {
                Progress::Reading => (None, false),
                Progress::Token(b) => (Some(b), false),
                Progress::Finished(b) => (b, true),
            };
            let go_on = bytes.is_none_or(|b| on_bytes(&b));
            if finished || !go_on {
                let stats = generation.stats();
                self.end(generation, true);
                return Ok(stats);
            }
        }
    }

    /// The free slot for `prompt` and how its cache serves it, or `None` when every slot is busy.
    /// Without `shift` only a shared prefix is reused.
    fn choose_slot(&self, prompt: &[LlamaToken], shift: bool) -> Option<(usize, ReusePlan)> {
        let free = || self.slots.iter().enumerate().filter(|(_, s)| !s.busy);
        let lru = free()
            .min_by_key(|(_, s)| (!s.tokens.is_empty(), s.last_used))
            .map(|(i, _)| i)?;
        if !self.config.reuse {
            return Some((lru, ReusePlan::default()));
        }
        let shift = shift && self.can_shift;
        let plan = |slot: &Slot| ReusePlan::new(&slot.tokens, prompt, shift, SHIFT_MIN_RUN);
        // A continuation: the prompt reuses at least half of what the slot holds — or, when
        // its window moved, at least half of the prompt itself. A window that drops a block of
        // old turns can drop more than half of what the slot holds (a long prompt shrinking to
        // its recent turns); judged by the slot alone, that turn took an empty slot and read
        // its whole prompt again (the first window move of `just bench-streaming`, 566 of 567
        // tokens). A move needs a run of [`SHIFT_MIN_RUN`] tokens after the shared prefix,
        // which another conversation's cache rarely has, so this seldom takes a foreign slot.
        let continuation = free()
            .map(|(i, s)| (i, plan(s), s.tokens.len()))
            .filter(|(_, plan, held)| {
                *held > 0
                    && (plan.kept() * 2 >= *held
                        || (!plan.moves.is_empty() && plan.kept() * 2 >= prompt.len()))
            })
            .max_by_key(|(_, plan, _)| plan.kept());
        if let Some((slot, plan, _)) = continuation {
            return Some((slot, plan));
        }
        Some((lru, plan(&self.slots[lru])))
    }

    /// Makes the slot's cache hold `prompt[..plan.kept()]`: cuts what the plan drops, shifts what
    /// it moves. Returns the tokens kept and, of those, shifted (fewer if llama.cpp refuses a
    /// cut, e.g. a recurrent model: then nothing is kept).
    fn apply(&mut self, slot: usize, prompt: &[LlamaToken], plan: &ReusePlan) -> (usize, usize) {
        if plan.moves.is_empty() {
            return (self.cut_slot(slot, plan.prefix), 0);
        }
        let seq = i32::try_from(slot).unwrap_or(0);
        let pos = |n: usize| u32::try_from(n).ok();
        let mut ok = true;
        for m in &plan.moves {
            let delta = i32::try_from(m.from - m.to).unwrap_or(i32::MAX);
            ok = ok
                && self
                    .ctx
                    .kv_cache_seq_rm(seq, pos(m.to), pos(m.from))
                    .is_ok()
                && self
                    .ctx
                    .kv_cache_seq_add(seq, pos(m.from), pos(m.from + m.len), -delta)
                    .is_ok();
        }
        self.shift_pending = true;
        let kept = plan.kept();
        ok = ok && self.ctx.kv_cache_seq_rm(seq, pos(kept), None).is_ok();
        if !ok {
            let _ = self.ctx.kv_cache_seq_rm(seq, None, None);
            self.slots[slot].tokens.clear();
            return (0, 0);
        }
        self.slots[slot].tokens = prompt[..kept].to_vec();
        (kept, plan.shifted())
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
}

/// The sampler of a request: llama.cpp's usual chain (top-k 40, top-p 0.95, min-p 0.05, then
/// temperature and a random draw), greedy at temperature 0. For background work (summaries,
/// extraction) a repetition penalty over the last [`PENALTY_LAST_N`] generated tokens keeps a
/// small model from looping on one phrase (its summaries otherwise degenerate) — for JSON, DRY
/// with JSON's punctuation as breakers instead, which does not punish the structure; replies go
/// without it, so a reply's greedy text does not depend on it; a request for JSON of a schema puts the schema's grammar
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
    if request.priority == Priority::Background {
        if matches!(request.format, OutputFormat::Json { .. }) {
            // JSON repeats its punctuation in every item (`"`, `",`, `:`, `]`): a flat penalty
            // on every recent token leans against closing a string or a list, so a small model
            // runs on inside a string until `max_tokens` cuts the answer. DRY penalises only a
            // repeated run of tokens, and never across these breakers.
            chain.push(LlamaSampler::dry(
                model.llama(),
                DRY_MULTIPLIER,
                DRY_BASE,
                DRY_ALLOWED_LENGTH,
                DRY_LAST_N,
                JSON_BREAKERS,
            ));
        } else {
            chain.push(LlamaSampler::penalties(
                model.llama().n_vocab(),
                PENALTY_LAST_N,
                PENALTY_REPEAT,
                0.0,
                0.0,
            ));
        }
    }
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

/// DRY ("don't repeat yourself") for background JSON: llama.cpp's suggested values (a run
/// longer than 2 tokens that repeats an earlier one costs `0.8 · 1.75^(extra length)`).
const DRY_MULTIPLIER: f32 = 0.8;
const DRY_BASE: f32 = 1.75;
const DRY_ALLOWED_LENGTH: i32 = 2;
/// Generated tokens DRY looks back over.
const DRY_LAST_N: i32 = 256;
/// Where a repeated run stops counting for DRY: JSON's structure, repeated by design.
const JSON_BREAKERS: [&str; 8] = ["\"", ":", ",", "{", "}", "[", "]", "\n"];

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
    use super::{Move, ReusePlan};

    fn plan(cached: &str, prompt: &str, min_run: usize) -> ReusePlan {
        let c: Vec<char> = cached.chars().collect();
        let p: Vec<char> = prompt.chars().collect();
        ReusePlan::new(&c, &p, true, min_run)
    }

    #[test]
    fn a_continued_conversation_reuses_its_prefix_without_moves() {
        let p = plan("SYSab", "SYSabcd", 2);
        assert_eq!(p.prefix, 5);
        assert!(p.moves.is_empty());
        assert_eq!(p.kept(), 5);
    }

    #[test]
    fn dropped_turns_are_cut_and_the_rest_moved_to_their_new_positions() {
        // System "SY", turns "aa" "bbbb" "cccc"; the window drops "aa", a new turn "dd" comes.
        let p = plan("SYaabbbbcccc", "SYbbbbccccdd", 3);
        assert_eq!(p.prefix, 2);
        assert_eq!(
            p.moves,
            [Move {
                from: 4,
                to: 2,
                len: 8
            }]
        );
        assert_eq!(p.kept(), 10);
        assert_eq!(p.shifted(), 8);
    }

    #[test]
    fn several_dropped_blocks_make_several_moves_and_short_runs_are_read_again() {
        let p = plan("SYxxAAAAyyBBBBzz", "SYAAAABBBBnew", 4);
        assert_eq!(
            p.moves,
            [
                Move {
                    from: 4,
                    to: 2,
                    len: 4
                },
                Move {
                    from: 10,
                    to: 6,
                    len: 4
                }
            ]
        );
        assert_eq!(p.kept(), 10);
        // A run shorter than the minimum is not moved: the prompt is read from there.
        let p = plan("SYxxAAAAyyBBBBzz", "SYAAAABBBBnew", 5);
        assert!(p.moves.is_empty());
        assert_eq!(p.kept(), 2);
    }

    #[test]
    fn text_inserted_in_the_middle_ends_the_reuse_there() {
        // A changed summary: the prompt has tokens the cache never held before the turns.
        let p = plan("SYsumAAAABBBB", "SYsum2AAAABBBB", 4);
        assert_eq!(p.prefix, 5);
        assert!(p.moves.is_empty(), "{p:?}");
        assert_eq!(p.kept(), 5);
    }

    #[test]
    fn without_shift_only_the_prefix_counts() {
        let c: Vec<char> = "SYaabbbbcccc".chars().collect();
        let p: Vec<char> = "SYbbbbccccdd".chars().collect();
        let plan = ReusePlan::new(&c, &p, false, 3);
        assert_eq!((plan.prefix, plan.kept()), (2, 2));
    }
}
