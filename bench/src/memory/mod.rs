//! Long-term memory (`butler-bench --memory`): does the butler still know, after 150 messages
//! and several compressions, what a user told it at the start?
//!
//! Each synthetic user ([`data`]) talks to the real reply use case on a fresh SQLite store,
//! with the real compression triggered inline after replies (default threshold 50, keep 20),
//! once with the summary alone and once with the summary plus the fact store. Then:
//!
//! - **retention**: for every planted fact, is its current value still somewhere in the user's
//!   memory (summary, remaining events, current facts)? And in the fact store: does a current
//!   fact carry the new value, and does one still carry an outdated value?
//! - **retrieval**: every question is asked through the reply use case; the prompt it builds
//!   is captured, and the question counts if the expected value is in it. The model's answer
//!   is taken too, and the use case is then told the model failed, so the question and its
//!   answer are not stored and the memory under test stays as the conversation left it;
//! - **answer accuracy**: the expected value in the answer (meaningful with a real model; the
//!   oracle answers from what its prompt shows, so its accuracy follows retrieval);
//! - **compressions**: summariser and extractor calls per user.
//!
//! The model is the testkit's [`OracleLlm`] (a perfect extractor, a bounded summariser) or a
//! real one (the embedded engine or an OpenAI-compatible server, configured like the bot).
//! `BUTLER_BENCH_DEBUG=1` prints the prompt of every question whose prompt missed its value.

pub mod data;
pub mod heldout;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_trait::async_trait;
use butler_application::ReplyInput;
use butler_domain::ports::{LlmClient, LlmError, LlmReply, LlmRequest, TokenCounter};
use butler_domain::{Source, UserId};
use butler_factory::settings::Settings;
use butler_factory::wiring;
use butler_testkit::oracle::OracleLlm;

use crate::e2e::Runtimes;
use data::{contains_value, Dataset};

/// Which model plays the butler.
#[derive(Debug, Clone)]
pub enum Model {
    /// The testkit's oracle.
    Oracle,
    /// A real model configured by these settings (`LLM_*` variables, as for the bot).
    Real(HashMap<String, String>),
}

/// A share of cases.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Share {
    /// Cases that hold.
    pub hits: usize,
    /// All cases.
    pub total: usize,
}

impl Share {
    fn count(&mut self, hit: bool) {
        self.total += 1;
        self.hits += usize::from(hit);
    }

    /// The share in percent (0 when there are no cases).
    #[must_use]
    pub fn percent(self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            100.0 * self.hits as f64 / self.total as f64
        }
    }
}

impl std::fmt::Display for Share {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.1}% ({}/{})", self.percent(), self.hits, self.total)
    }
}

/// What one configuration gave over the data set.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    /// Current values still somewhere in memory (summary, events, current facts).
    pub retained: Share,
    /// Current values carried by a current fact of the fact store.
    pub in_fact_store: Share,
    /// Updated facts whose outdated value is still carried by a current fact.
    pub stale_current: Share,
    /// Questions whose prompt held the expected value.
    pub retrieved: Share,
    /// Questions whose prompt held an outdated value of the fact.
    pub outdated_in_prompt: Share,
    /// Questions whose prompt held a distractor's value.
    pub distractor_in_prompt: Share,
    /// Answers that gave the expected value.
    pub answered: Share,
    /// Answers that gave an outdated or a distractor's value and not the expected one.
    pub misled: Share,
    /// Held-out questions ([`heldout`]) whose prompt held the expected value.
    pub held_out_retrieved: Share,
    /// Held-out questions whose prompt held an outdated value of the fact.
    pub held_out_outdated: Share,
    /// Held-out answers that gave the expected value.
    pub held_out_answered: Share,
    /// Held-out questions needing several facts, or about an update worded as the change,
    /// whose prompt held every expected value.
    pub harder_retrieved: Share,
    /// … those about an update whose prompt also held the outdated value.
    pub harder_outdated: Share,
    /// Prompts of either question set over `PROMPT_TOTAL_TOKENS` by the run's token counter.
    pub over_budget: Share,
    /// Valid extraction calls: the extractor's own parser
    /// ([`butler_application::memory::facts::parse_facts`]) read facts from the answer without
    /// error — at least one fact, or an explicit empty list ("nothing new", which counts as
    /// valid). An answer cut off by `max_tokens` counts when the facts it completed before the
    /// cut are usable; a call that failed, or whose answer gave no fact and no empty list, does not.
    pub valid_extractions: Share,
    /// Stricter: extractor answers that are, as a whole, JSON of the extractor's schema
    /// (an object with a `facts` array, nothing cut off).
    pub whole_json_extractions: Share,
    /// Summaries that degenerate into a repeated phrase (see [`degenerate`]).
    pub degenerate_summaries: Share,
    /// Summariser calls per user.
    pub summaries_per_user: Vec<usize>,
    /// Extractor calls per user.
    pub extractions_per_user: Vec<usize>,
    /// Replies whose status was not `ok` during the conversations.
    pub failed_replies: usize,
    /// Wall time of the configuration.
    pub elapsed: Duration,
}

/// Which question set a question belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Set {
    /// Built from the planted wording.
    Planted,
    /// Held out: asked as people ask.
    HeldOut,
    /// Held out: several facts at once, or an update asked about as the change.
    Harder,
}

/// The question's captured prompt and the model's answer to it.
type Captured = (LlmRequest, Result<String, String>);

/// Counts summariser and extractor calls and, while a question is asked, captures the prompt
/// and the answer, then reports a failure so the reply use case stores nothing.
struct Probe {
    inner: Arc<dyn LlmClient>,
    asking: AtomicBool,
    captured: Mutex<Option<Captured>>,
    summaries: AtomicUsize,
    extractions: AtomicUsize,
    /// Extractor calls whose answer the extractor's parser read facts from (see
    /// [`Figures::valid_extractions`]).
    valid_extractions: AtomicUsize,
    /// Extractor answers that are a JSON object with a `facts` array (the schema's form).
    whole_json_extractions: AtomicUsize,
    /// Summaries written, and those with a repeated phrase.
    summaries_written: AtomicUsize,
    degenerate_summaries: AtomicUsize,
    /// The model's tokenizer, for the log of answers.
    counter: Arc<dyn TokenCounter>,
    /// Where every extractor answer that is not whole JSON is written (with its length in
    /// tokens and why it failed), and every degenerate summary.
    log: Option<Mutex<std::fs::File>>,
}

impl Probe {
    fn write_log(&self, entry: &str) {
        if let Some(Ok(mut file)) = self.log.as_ref().map(Mutex::lock) {
            use std::io::Write as _;
            let _ = writeln!(file, "{entry}\n-----");
        }
    }

    /// Judges one extractor answer (see [`Figures::valid_extractions`]) and logs what failed.
    async fn judge_extraction(&self, reply: &Result<LlmReply, LlmError>) {
        let text = match reply {
            Ok(r) => r.text.as_str(),
            Err(e) => {
                self.write_log(&format!("EXTRACTION CALL FAILED: {e}"));
                return;
            }
        };
        let whole = serde_json::from_str::<serde_json::Value>(text)
            .map_err(|e| e.to_string())
            .and_then(|v| {
                if v["facts"].is_array() {
                    Ok(())
                } else {
                    Err("JSON, but no `facts` array".to_owned())
                }
            });
        let parsed = butler_application::memory::facts::parse_facts(
            text,
            UserId::new(0),
            &[],
            time::OffsetDateTime::UNIX_EPOCH,
        );
        let valid = parsed.is_ok();
        self.valid_extractions
            .fetch_add(usize::from(valid), Ordering::Relaxed);
        self.whole_json_extractions
            .fetch_add(usize::from(whole.is_ok()), Ordering::Relaxed);
        if let Err(why) = whole {
            let tokens = self.counter.count(text).await;
            let verdict = match &parsed {
                Ok(p) => format!(
                    "valid by the parser: {} facts, {} items rejected",
                    p.facts.len(),
                    p.rejected
                ),
                Err(_) => "INVALID: no complete fact and no empty list".to_owned(),
            };
            self.write_log(&format!(
                "EXTRACTION not whole JSON ({why}); {tokens} tokens, {} chars; {verdict}\n{text}",
                text.chars().count()
            ));
        }
    }

    async fn judge_summary(&self, reply: &Result<LlmReply, LlmError>) {
        let Ok(reply) = reply else { return };
        self.summaries_written.fetch_add(1, Ordering::Relaxed);
        if let Some(phrase) = degenerate(&reply.text) {
            self.degenerate_summaries.fetch_add(1, Ordering::Relaxed);
            let tokens = self.counter.count(&reply.text).await;
            self.write_log(&format!(
                "DEGENERATE SUMMARY ({phrase:?} repeated); {tokens} tokens\n{}",
                reply.text
            ));
        }
    }
}

/// Longest phrase, in words, that [`degenerate`] looks for.
const PHRASE_WORDS: usize = 8;

/// How many times in a row a phrase must occur for [`degenerate`].
const PHRASE_REPEATS: usize = 3;

/// A summary "degenerates" when a phrase of 1 to [`PHRASE_WORDS`] words (lower-cased,
/// punctuation ignored) occurs [`PHRASE_REPEATS`] times in a row: the loop of a small model
/// («любит кофе, любит кофе, любит кофе»). A list of facts that share words ("Lives in …",
/// "Works in …") does not count: only back-to-back repeats do. Returns the phrase.
#[must_use]
pub fn degenerate(text: &str) -> Option<String> {
    let words: Vec<String> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    for n in 1..=PHRASE_WORDS {
        for start in 0..words.len().saturating_sub(n * PHRASE_REPEATS - 1) {
            let phrase = &words[start..start + n];
            if (1..PHRASE_REPEATS).all(|k| &words[start + k * n..start + (k + 1) * n] == phrase) {
                return Some(phrase.join(" "));
            }
        }
    }
    None
}

#[async_trait]
impl LlmClient for Probe {
    async fn complete(&self, request: &LlmRequest) -> Result<LlmReply, LlmError> {
        let last = request.messages.last().map_or("", |m| m.content.as_str());
        if last.starts_with("{\"previous_summary\"") {
            self.summaries.fetch_add(1, Ordering::Relaxed);
        } else if last.starts_with("{\"known_facts\"") {
            self.extractions.fetch_add(1, Ordering::Relaxed);
        }
        if !self.asking.load(Ordering::Relaxed) {
            let reply = self.inner.complete(request).await;
            if last.starts_with("{\"known_facts\"") {
                self.judge_extraction(&reply).await;
            } else if last.starts_with("{\"previous_summary\"") {
                self.judge_summary(&reply).await;
            }
            return reply;
        }
        let answer = self
            .inner
            .complete(request)
            .await
            .map(|r| r.text)
            .map_err(|e| e.to_string());
        if let Ok(mut slot) = self.captured.lock() {
            *slot = Some((request.clone(), answer));
        }
        Err(LlmError::Rejected {
            detail: "benchmark question: answered, not stored".to_owned(),
        })
    }
}

/// Runs the whole data set through one configuration (`facts` on or off) with `model`;
/// `quiet_pause`: the user pauses before the questions, as users do between talking and
/// asking, and the bot's quiet-time extraction runs (see
/// [`butler_application::CompressMemoryUseCase::execute_when_quiet`]); `log`: a file that gets
/// every extractor answer that is not whole JSON and every degenerate summary (appended).
///
/// # Errors
/// If the store or the model cannot be opened, or a question's prompt was not captured.
#[allow(clippy::too_many_lines)]
pub fn run(
    rt: &Runtimes,
    data: &Dataset,
    model: &Model,
    facts: bool,
    quiet_pause: bool,
    log: Option<&std::path::Path>,
) -> anyhow::Result<Figures> {
    let started = Instant::now();
    let dir = tempfile::tempdir().context("a directory for the SQLite store")?;
    let mut overrides: HashMap<String, String> = match model {
        Model::Oracle => HashMap::new(),
        Model::Real(settings) => settings.clone(),
    };
    overrides.insert(
        "SQLITE_PATH".to_owned(),
        dir.path().join("butler.db").display().to_string(),
    );
    overrides.insert("MEMORY_FACTS_ENABLED".to_owned(), facts.to_string());
    // The conversation stands for weeks of talk, with quiet moments between its sessions: each
    // compression runs when due, as it would in one of them, not at the hard limit.
    overrides.insert("MEMORY_COMPRESS_IDLE_SECS".to_owned(), "0".to_owned());
    let settings = Settings::from_sources(None, |name| overrides.get(name).cloned())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    rt.bot.block_on(async {
        let (llm, counter): (Arc<dyn LlmClient>, Arc<dyn TokenCounter>) = match model {
            Model::Oracle => {
                let counter = wiring::token_counter(&settings)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                let oracle = OracleLlm::new(Arc::new(data.knowledge()), Arc::clone(&counter));
                (Arc::new(oracle), counter)
            }
            Model::Real(_) => {
                let engine = wiring::engine(&settings)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                (engine.llm, engine.counter)
            }
        };
        let log = match log {
            Some(path) => Some(Mutex::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .with_context(|| format!("opening {}", path.display()))?,
            )),
            None => None,
        };
        let probe = Arc::new(Probe {
            inner: llm,
            asking: AtomicBool::new(false),
            captured: Mutex::new(None),
            summaries: AtomicUsize::new(0),
            extractions: AtomicUsize::new(0),
            valid_extractions: AtomicUsize::new(0),
            whole_json_extractions: AtomicUsize::new(0),
            summaries_written: AtomicUsize::new(0),
            degenerate_summaries: AtomicUsize::new(0),
            counter: Arc::clone(&counter),
            log,
        });
        let storage = wiring::open_storage(&settings)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let app = wiring::assemble(
            &settings,
            storage.clone(),
            probe.clone(),
            Arc::clone(&counter),
            None,
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut figures = Figures::default();
        for user in &data.users {
            let user_id = UserId::new(user.id);
            let (summaries, extractions) = (
                probe.summaries.load(Ordering::Relaxed),
                probe.extractions.load(Ordering::Relaxed),
            );
            set_language(&app, user_id, user.language).await?;
            for message in &user.messages {
                let out = app
                    .reply
                    .execute(ReplyInput {
                        user_id,
                        text: message.text.clone(),
                        source: Source::Text,
                        origin: None,
                    })
                    .await;
                if out.status != butler_application::ReplyStatus::Ok {
                    figures.failed_replies += 1;
                }
                // Inline compression, finished before the next message: a deterministic run.
                app.compressor.drain().await;
            }
            // The questions come later, after a pause: the quiet moment the bot waits for
            // (`MEMORY_COMPRESS_IDLE_SECS`) extracts the facts of the turns not folded yet, as
            // its idle timer would (the run sets no timer: it asks at once, deterministically).
            if quiet_pause {
                app.compress
                    .execute_when_quiet(user_id)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
            }
            figures
                .summaries_per_user
                .push(probe.summaries.load(Ordering::Relaxed) - summaries);
            figures
                .extractions_per_user
                .push(probe.extractions.load(Ordering::Relaxed) - extractions);

            // Retention: what the memory holds now.
            let profile = storage
                .profiles
                .get_or_create(user_id)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let events = storage
                .memory
                .recent(user_id, 10_000, profile.summary_watermark)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let current = storage
                .facts
                .current(user_id, 10_000)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let mut memory = profile.memory_summary.clone().unwrap_or_default();
            for text in events
                .iter()
                .map(|e| &e.content)
                .chain(current.iter().map(|f| &f.text))
            {
                memory.push('\n');
                memory.push_str(text);
            }
            for fact in &user.facts {
                figures.retained.count(contains_value(&memory, &fact.value));
                if facts {
                    let carried =
                        |value: &str| current.iter().any(|f| contains_value(&f.text, value));
                    figures.in_fact_store.count(carried(&fact.value));
                    if let Some(previous) = &fact.previous {
                        figures.stale_current.count(carried(previous));
                    }
                }
            }

            // Retrieval and answers.
            probe.asking.store(true, Ordering::Relaxed);
            let sets = [
                (Set::Planted, &user.questions),
                (Set::HeldOut, &user.held_out),
                (Set::Harder, &user.harder),
            ];
            for (set, question) in sets
                .into_iter()
                .flat_map(|(h, qs)| qs.iter().map(move |q| (h, q)))
            {
                app.reply
                    .execute(ReplyInput {
                        user_id,
                        text: question.text.clone(),
                        source: Source::Text,
                        origin: None,
                    })
                    .await;
                let (request, answer) = probe
                    .captured
                    .lock()
                    .ok()
                    .and_then(|mut c| c.take())
                    .with_context(|| format!("no prompt captured for {:?}", question.text))?;
                let prompt: String = request
                    .messages
                    .iter()
                    .map(|m| m.content.as_str())
                    .collect::<Vec<_>>()
                    .join("\n");
                let mut tokens = 0;
                for m in &request.messages {
                    tokens +=
                        counter.count(&m.content).await + settings.budget.per_message_overhead;
                }
                figures.over_budget.count(tokens > settings.budget.total);
                let retrieved = contains_value(&prompt, &question.expected)
                    && question.also.iter().all(|v| contains_value(&prompt, v));
                if !retrieved && std::env::var_os("BUTLER_BENCH_DEBUG").is_some() {
                    eprintln!(
                        "MISS facts={facts} set={set:?} {:?} expected {:?} {:?}\n{prompt}\n-----",
                        question.text, question.expected, question.also
                    );
                }
                let answer = answer.unwrap_or_default();
                let right = contains_value(&answer, &question.expected);
                let outdated = question
                    .outdated
                    .as_ref()
                    .map(|o| contains_value(&prompt, o));
                if set == Set::Harder {
                    figures.harder_retrieved.count(retrieved);
                    if let Some(outdated) = outdated {
                        figures.harder_outdated.count(outdated);
                    }
                    continue;
                }
                if set == Set::HeldOut {
                    figures.held_out_retrieved.count(retrieved);
                    if let Some(outdated) = outdated {
                        figures.held_out_outdated.count(outdated);
                    }
                    figures.held_out_answered.count(right);
                    continue;
                }
                figures.retrieved.count(retrieved);
                if let Some(outdated) = outdated {
                    figures.outdated_in_prompt.count(outdated);
                }
                if let Some(distractor) = &question.distractor {
                    figures
                        .distractor_in_prompt
                        .count(contains_value(&prompt, distractor));
                }
                figures.answered.count(right);
                let wrong = [&question.outdated, &question.distractor]
                    .into_iter()
                    .flatten()
                    .any(|v| contains_value(&answer, v));
                figures.misled.count(wrong && !right);
            }
            probe.asking.store(false, Ordering::Relaxed);
        }
        app.compressor.drain().await;
        figures.valid_extractions = Share {
            hits: probe.valid_extractions.load(Ordering::Relaxed),
            total: probe.extractions.load(Ordering::Relaxed),
        };
        figures.whole_json_extractions = Share {
            hits: probe.whole_json_extractions.load(Ordering::Relaxed),
            total: probe.extractions.load(Ordering::Relaxed),
        };
        figures.degenerate_summaries = Share {
            hits: probe.degenerate_summaries.load(Ordering::Relaxed),
            total: probe.summaries_written.load(Ordering::Relaxed),
        };
        figures.elapsed = started.elapsed();
        Ok(figures)
    })
}

/// Gives the user's profile their language (the summariser writes in it).
async fn set_language(
    app: &wiring::App,
    user_id: UserId,
    language: butler_domain::Language,
) -> anyhow::Result<()> {
    let profiles = &app.storage.profiles;
    let mut profile = profiles
        .get_or_create(user_id)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if profile.language != language {
        profile.language = language;
        profiles
            .save(&profile)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    Ok(())
}

/// `min–max (mean)` of per-user counts.
#[must_use]
pub fn spread(counts: &[usize]) -> String {
    let min = counts.iter().min().copied().unwrap_or(0);
    let max = counts.iter().max().copied().unwrap_or(0);
    let mean = counts.iter().sum::<usize>() as f64 / counts.len().max(1) as f64;
    format!("{min}–{max} (mean {mean:.1})")
}

/// The markdown table of summary-only against summary + facts.
#[must_use]
pub fn table(summary_only: &Figures, with_facts: &Figures) -> String {
    use std::fmt::Write as _;
    let mut out = String::from("| Figure | summary only | summary + facts |\n|---|---|---|\n");
    let mut row = |name: &str, f: &dyn Fn(&Figures) -> String| {
        let _ = writeln!(out, "| {name} | {} | {} |", f(summary_only), f(with_facts));
    };
    row(
        "Retention: current values still in memory (summary, events, facts)",
        &|f| f.retained.to_string(),
    );
    row("… carried by a current fact of the fact store", &|f| {
        if f.in_fact_store.total == 0 {
            "—".into()
        } else {
            f.in_fact_store.to_string()
        }
    });
    row(
        "… updated facts whose outdated value is still a current fact",
        &|f| {
            if f.in_fact_store.total == 0 {
                "—".into()
            } else {
                f.stale_current.to_string()
            }
        },
    );
    row(
        "Retrieval: questions whose prompt holds the expected value",
        &|f| f.retrieved.to_string(),
    );
    row(
        "… prompts that also hold an outdated value (updated facts)",
        &|f| f.outdated_in_prompt.to_string(),
    );
    row("… prompts that also hold a distractor's value", &|f| {
        f.distractor_in_prompt.to_string()
    });
    row("Answers with the expected value", &|f| {
        f.answered.to_string()
    });
    row(
        "Held-out questions (asked as people ask): prompt holds the expected value",
        &|f| f.held_out_retrieved.to_string(),
    );
    row(
        "… held-out prompts that also hold an outdated value",
        &|f| f.held_out_outdated.to_string(),
    );
    row("… held-out answers with the expected value", &|f| {
        f.held_out_answered.to_string()
    });
    row(
        "Held-out, several facts at once or an update asked as the change: prompt holds every expected value",
        &|f| f.harder_retrieved.to_string(),
    );
    row(
        "… of those about an update, prompts that also hold the outdated value",
        &|f| f.harder_outdated.to_string(),
    );
    row(
        "Prompts over PROMPT_TOTAL_TOKENS (by the run's tokenizer)",
        &|f| f.over_budget.to_string(),
    );
    row(
        "Answers with an outdated or distractor's value instead",
        &|f| f.misled.to_string(),
    );
    row("Summariser calls (compressions) per user", &|f| {
        spread(&f.summaries_per_user)
    });
    row("Extractor calls per user", &|f| {
        spread(&f.extractions_per_user)
    });
    row(
        "… valid extraction calls: the extractor's parser read facts (≥ 1, or an explicit empty list) from the answer, complete items of a cut-off answer included",
        &|f| {
            if f.valid_extractions.total == 0 {
                "—".into()
            } else {
                f.valid_extractions.to_string()
            }
        },
    );
    row(
        "… extractor answers that are whole JSON of its schema (nothing cut off)",
        &|f| {
            if f.whole_json_extractions.total == 0 {
                "—".into()
            } else {
                f.whole_json_extractions.to_string()
            }
        },
    );
    row(
        "Summaries that loop: a phrase of 1–8 words 3 times in a row",
        &|f| f.degenerate_summaries.to_string(),
    );
    row("Replies that failed during the conversations", &|f| {
        f.failed_replies.to_string()
    });
    row("Wall time", &|f| {
        format!("{:.1} s", f.elapsed.as_secs_f64())
    });
    out
}

#[cfg(test)]
mod tests {
    use super::degenerate;

    #[test]
    fn a_phrase_three_times_in_a_row_is_degenerate_and_a_list_of_alike_facts_is_not() {
        assert_eq!(
            degenerate("Пётр любит кофе, любит кофе. Любит кофе!").as_deref(),
            Some("любит кофе")
        );
        assert_eq!(degenerate("the the the end").as_deref(), Some("the"));
        assert_eq!(
            degenerate("Lives in Perm. Works in Perm. Lives in Perm since May. Works in a bank."),
            None
        );
        assert_eq!(
            degenerate("Сестру зовут Анна, брата зовут Олег, сына зовут Миша."),
            None
        );
        assert_eq!(degenerate(""), None);
    }
}
