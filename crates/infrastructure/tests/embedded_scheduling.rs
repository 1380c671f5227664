//! The embedded engine's scheduler and KV shift, with the real test model (SmolLM2-135M):
//! a reply that arrives during a long background generation starts within a step and the
//! background generation completes afterwards with the text it would have had alone; four
//! simultaneous replies all show text before any of them ends, each with its own text; a
//! conversation whose window moves reads only its new tokens; with a single slot a reply takes
//! it from a background generation, which resumes afterwards; background requests past the
//! engine's limit are refused at once; the decode that applies a KV shift is reported.

use std::num::NonZeroUsize;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use butler_domain::ports::{
    LlmClient, LlmError, LlmReply, LlmRequest, RequestOptions, StreamEvent,
};
use butler_domain::prompt::ChatMessage;
use butler_infrastructure::llm::embedded::{
    default_threads, EmbeddedConfig, EmbeddedLlm, EmbeddedModel, GenerationStats, Session,
    SessionConfig,
};
use butler_infrastructure::llm::LlmConcurrency;
use butler_testkit::services::smollm2_gguf_path;
use futures::StreamExt as _;

fn model() -> Arc<EmbeddedModel> {
    static MODEL: OnceLock<Arc<EmbeddedModel>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let path = smollm2_gguf_path().unwrap_or_else(|e| panic!("{e}"));
            Arc::new(EmbeddedModel::load(&path).unwrap_or_else(|e| panic!("{e}")))
        })
        .clone()
}

async fn engine(slots: u32, in_flight: usize) -> EmbeddedLlm {
    let model = tokio::task::spawn_blocking(model).await.unwrap();
    EmbeddedLlm::new(
        model,
        EmbeddedConfig {
            context_tokens: 2048,
            request_timeout: Duration::from_secs(300),
            concurrency: LlmConcurrency::new(NonZeroUsize::new(in_flight).unwrap()),
            cache_slots: slots,
            threads: default_threads(),
        },
    )
    .unwrap()
}

fn request(messages: Vec<ChatMessage>, max_tokens: u32) -> LlmRequest {
    LlmRequest::new(
        messages,
        RequestOptions {
            temperature: 0.0,
            max_tokens,
        },
    )
}

/// A streamed request's text, reply, and when its first text and its end came.
#[derive(Debug)]
struct Timed {
    asked: Instant,
    reply: LlmReply,
    deltas: Vec<Instant>,
    done: Instant,
}

async fn timed(llm: EmbeddedLlm, request: LlmRequest) -> Timed {
    timed_telling(llm, request, None).await
}

/// Starts `request` and returns once its first text came (its prompt read, text flowing),
/// whatever the machine's load; the task goes on to the end.
async fn running(llm: &EmbeddedLlm, request: LlmRequest) -> tokio::task::JoinHandle<Timed> {
    let (first, flowing) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(timed_telling(llm.clone(), request, Some(first)));
    flowing.await.expect("the request showed text");
    task
}

async fn timed_telling(
    llm: EmbeddedLlm,
    request: LlmRequest,
    mut first: Option<tokio::sync::oneshot::Sender<()>>,
) -> Timed {
    let asked = Instant::now();
    let mut stream = llm.stream(&request).await.unwrap();
    let mut deltas = Vec::new();
    let mut text = String::new();
    while let Some(event) = stream.next().await {
        match event.unwrap() {
            StreamEvent::Delta(piece) => {
                deltas.push(Instant::now());
                text.push_str(&piece);
                if let Some(first) = first.take() {
                    let _ = first.send(());
                }
            }
            StreamEvent::Done(reply) => {
                assert_eq!(text, reply.text, "deltas add up to the reply");
                return Timed {
                    asked,
                    reply,
                    deltas,
                    done: Instant::now(),
                };
            }
        }
    }
    panic!("the stream ended without Done");
}

fn story() -> LlmRequest {
    request(
        vec![
            ChatMessage::system("You are a storyteller."),
            ChatMessage::user("Tell a very long story about a butler and his master."),
        ],
        300,
    )
    .background()
}

fn greeting(name: &str) -> LlmRequest {
    request(
        vec![
            ChatMessage::system(format!(
                "You are the butler of {name}. Address {name} politely and answer in one sentence."
            )),
            ChatMessage::user(format!(
                "Hello, I am {name}. What should I wear to the opera tonight?"
            )),
        ],
        24,
    )
}

/// The first `n` tokens of two texts agree (llama.cpp's arithmetic depends on how tokens were
/// batched, and a 135M model has near-ties that such rounding flips: see
/// `embedded_streaming.rs`), or the texts are equal.
fn agree(a: &str, b: &str, n: usize, what: &str) {
    if a == b {
        return;
    }
    let tokens = |t: &str| model().vocab().tokenize(t.as_bytes(), false, false);
    let (ta, tb) = (tokens(a), tokens(b));
    let n = n.min(ta.len()).min(tb.len());
    assert_eq!(ta[..n], tb[..n], "{what}: {a:?} vs {b:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reply_during_a_long_background_generation_starts_at_once_and_both_complete() {
    let llm = engine(4, 4).await;
    // Alone, for reference.
    let alone = timed(llm.clone(), story()).await;
    let reply_alone = timed(llm.clone(), greeting("Margaret")).await;

    // The background generation gets going (its prompt read, text flowing).
    let background = running(&llm, story()).await;
    // A reply that its user abandons after its first text: nothing else is lost.
    let mut abandoned = llm.stream(&greeting("Bartholomew")).await.unwrap();
    assert!(matches!(
        abandoned.next().await,
        Some(Ok(StreamEvent::Delta(_)))
    ));
    drop(abandoned);
    let reply = timed(llm.clone(), greeting("Margaret")).await;
    let asked = reply.asked;
    let background = background.await.unwrap();

    let first_text = reply.deltas[0];
    let background_meanwhile = background
        .deltas
        .iter()
        .filter(|t| **t > asked && **t < first_text)
        .count();
    eprintln!(
        "reply: first text after {:?} (alone {:?}), background tokens meanwhile: {background_meanwhile}; \
         background ended {:?} after the reply",
        first_text - asked,
        reply_alone.deltas[0] - reply_alone.asked,
        background.done.saturating_duration_since(reply.done)
    );
    assert!(
        background.deltas.iter().any(|t| *t < asked),
        "the background generation was running when the reply came"
    );
    // The running background step finishes (one token), then only the reply runs.
    assert!(
        background_meanwhile <= 2,
        "{background_meanwhile} background tokens before the reply's first text"
    );
    assert!(
        background
            .deltas
            .iter()
            .filter(|t| **t > first_text && **t < reply.done)
            .count()
            == 0,
        "the background generation waited while the reply ran"
    );
    assert!(background.done > reply.done, "the reply ended first");
    // Paused and resumed on its slot, the background generation has the text it had alone
    // (its steps decode only its own token, as alone).
    assert_eq!(background.reply.text, alone.reply.text);
    assert_eq!(
        background.reply.completion_tokens,
        alone.reply.completion_tokens
    );
    agree(&reply.reply.text, &reply_alone.reply.text, 16, "the reply");
}

#[tokio::test(flavor = "multi_thread")]
async fn with_a_single_slot_a_reply_takes_the_slot_of_a_background_generation_which_resumes_after()
{
    let llm = engine(1, 1).await;
    let alone = timed(llm.clone(), story()).await;

    let background = running(&llm, story()).await;
    let reply = timed(llm.clone(), greeting("Margaret")).await;
    let background = background.await.unwrap();

    let (asked, first_text) = (reply.asked, reply.deltas[0]);
    let before: Vec<&Instant> = background.deltas.iter().filter(|t| **t < asked).collect();
    let meanwhile = background
        .deltas
        .iter()
        .filter(|t| **t > asked && **t < reply.done)
        .count();
    eprintln!(
        "single slot: reply's first text after {:?}; background: {} tokens before, {meanwhile} \
         while the reply ran, ended {:?} after it",
        first_text - asked,
        before.len(),
        background.done.saturating_duration_since(reply.done)
    );
    assert!(!before.is_empty(), "the background generation was running");
    // The only slot went to the reply within a step, not after the background generation.
    assert!(
        meanwhile <= 1,
        "{meanwhile} background tokens while the reply ran"
    );
    assert!(background.done > reply.done, "the reply ended first");
    // Suspended and resumed (its context read again), the background generation went on where
    // it stopped: its streamed pieces add up to its reply (checked in `timed`), nothing was
    // repeated, and it agrees with its text alone past the point where it stopped (a wrong
    // position or a lost token would derail it there).
    let stopped_at = before.len();
    let generated = background.reply.completion_tokens.unwrap() as usize;
    assert!(generated > stopped_at + 4, "{generated} tokens in all");
    agree(
        &background.reply.text,
        &alone.reply.text,
        stopped_at + 4,
        "the resumed background text",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn background_requests_past_the_limit_are_refused_at_once_and_replies_are_not() {
    let llm = engine(2, 2).await.with_background_limit(2);
    let held = [
        llm.stream(&story()).await.unwrap(),
        llm.stream(&story()).await.unwrap(),
    ];
    let refused = llm
        .stream(&story())
        .await
        .err()
        .expect("the third is refused");
    assert!(
        matches!(&refused, LlmError::Unavailable { detail } if detail.contains("background requests (its limit)")),
        "{refused:?}"
    );
    // Replies are not background work: served while the queue is full.
    let reply = timed(llm.clone(), greeting("Margaret")).await;
    assert!(!reply.reply.text.is_empty());
    // A place comes back when the engine is done with a request (here: its caller left).
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match llm.stream(&story()).await {
            Ok(_) => break,
            Err(e) if Instant::now() > deadline => panic!("still refused: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn four_simultaneous_replies_all_show_text_before_any_ends_each_with_its_own_text() {
    let llm = engine(4, 4).await;
    let names = ["Xavier", "Yolanda", "Zachary", "Wilhelmina"];
    let mut alone = Vec::new();
    for name in names {
        alone.push(timed(llm.clone(), greeting(name)).await);
    }
    let started = Instant::now();
    let together: Vec<Timed> = futures::future::join_all(
        names
            .iter()
            .map(|name| tokio::spawn(timed(llm.clone(), greeting(name)))),
    )
    .await
    .into_iter()
    .map(Result::unwrap)
    .collect();
    let last_first_text = together.iter().map(|t| t.deltas[0]).max().unwrap();
    let first_done = together.iter().map(|t| t.done).min().unwrap();
    for (name, t) in names.iter().zip(&together) {
        eprintln!(
            "{name}: first text {:?}, done {:?}: {:?}",
            t.deltas[0] - started,
            t.done - started,
            t.reply.text
        );
    }
    assert!(
        last_first_text < first_done,
        "every reply showed text before the first one ended"
    );
    for ((name, t), a) in names.iter().zip(&together).zip(&alone) {
        agree(&t.reply.text, &a.reply.text, 16, name);
    }
}

/// A conversation whose prompt keeps the system message and the last `keep` exchanges, as a
/// moving window does: every turn past the window drops the oldest exchange.
fn windowed(system: &ChatMessage, history: &[ChatMessage], keep: usize) -> Vec<ChatMessage> {
    let from = history.len().saturating_sub(keep * 2 + 1);
    std::iter::once(system.clone())
        .chain(history[from..].iter().cloned())
        .collect()
}

async fn moving_window(llm: &EmbeddedLlm) -> Vec<LlmReply> {
    let system = ChatMessage::system(
        "You are Alfred, a polite and ironic butler. Answer briefly, in one sentence.",
    );
    let questions = [
        "Good evening. My name is Peter and I play the cello.",
        "What is the capital of France?",
        "How many days are there in a week?",
        "What colour is the sky on a clear day?",
        "Name a famous composer, please.",
        "What do bees make?",
        "Which planet is known as the red planet?",
        "What is frozen water called?",
    ];
    let mut history = Vec::new();
    let mut replies = Vec::new();
    for q in questions {
        history.push(ChatMessage::user(q));
        let messages = windowed(&system, &history, 2);
        let reply = timed(llm.clone(), request(messages, 24)).await.reply;
        history.push(ChatMessage::assistant(reply.text.clone()));
        replies.push(reply);
    }
    replies
}

#[tokio::test(flavor = "multi_thread")]
async fn a_moving_window_reads_only_the_new_tokens_each_turn() {
    let shifted = moving_window(&engine(2, 1).await).await;
    let fresh = moving_window(&engine(0, 1).await).await;
    let mut equal = 0;
    let mut diverged = false;
    for (turn, (a, b)) in shifted.iter().zip(&fresh).enumerate() {
        let prompt = a.prompt_tokens.unwrap();
        let reused = a.cached_prompt_tokens.unwrap();
        eprintln!(
            "turn {turn}: prompt {prompt}, reused {reused}, evaluated {}\n  shifted: {:?}\n  fresh:   {:?}",
            prompt - reused,
            a.text,
            b.text
        );
        // From turn 3 on the window moves every turn: the oldest exchange (≈ 40 tokens) drops.
        // Without the shift a turn would read everything after the system message again.
        if turn > 0 {
            assert!(
                prompt - reused <= 40,
                "turn {turn}: {} of {prompt} tokens evaluated",
                prompt - reused
            );
        }
        // While both conversations are the same (no reply differed yet), the shifted cache
        // answers like a fresh read at least in its first tokens. Not exactly: shifted cells were
        // computed next to the turns that dropped out (as with llama-server's --cache-reuse), so
        // a near-tie can flip later in a reply — measured here, 5 of 8 replies equal, the first
        // difference at turn 5 after 5 equal tokens. Wrong positions or a wrong sequence would
        // derail a reply from its first token.
        if !diverged {
            agree(&a.text, &b.text, 4, &format!("turn {turn}"));
        }
        diverged |= a.text != b.text;
        equal += usize::from(a.text == b.text);
    }
    eprintln!("{equal} of {} replies equal to a fresh read", shifted.len());
    assert!(equal >= shifted.len() / 2, "{equal} equal replies");
}

/// A session of two 1024-cell slots that reuses prefixes and shifts moved windows.
fn two_shifting_slots(model: &EmbeddedModel) -> Session<'_> {
    Session::new(
        model,
        SessionConfig {
            window: 1024,
            slots: 2,
            reuse: true,
            threads: default_threads(),
        },
    )
    .unwrap()
}

/// One greedy token for `system` followed by `history`.
fn one_token(
    session: &mut Session<'_>,
    system: &ChatMessage,
    history: &[ChatMessage],
) -> GenerationStats {
    let messages = std::iter::once(system.clone())
        .chain(history.iter().cloned())
        .collect();
    session
        .generate(
            &request(messages, 1),
            Instant::now() + Duration::from_secs(300),
            &AtomicBool::new(false),
            &mut |_| true,
        )
        .unwrap()
}

/// The session reports the decode that applied a KV shift (llama.cpp applies a pending shift at
/// the next decode): a turn after a window move has it, with the tokens that decode read; a plain
/// continuation has none. This is what tells a shift's cost from the turn's own reading.
#[test]
fn the_decode_that_applies_a_kv_shift_is_reported_and_a_continuation_has_none() {
    let model = model();
    let mut session = two_shifting_slots(&model);
    let system = ChatMessage::system("You are Alfred, a polite butler. Answer briefly.");
    let history: Vec<ChatMessage> = (0..12)
        .map(|i| {
            if i % 2 == 0 {
                ChatMessage::user(format!(
                    "Message {i}: please tell me about the weather in town number {i} today."
                ))
            } else {
                ChatMessage::assistant(format!(
                    "Reply {i}: in town number {i} it is sunny with a light breeze and no rain."
                ))
            }
        })
        .collect();
    let mut run = |from: usize, to: usize| one_token(&mut session, &system, &history[from..to]);
    run(0, 10);
    let continuation = run(0, 11);
    assert!(continuation.reused_tokens > 0 && continuation.shifted_tokens == 0);
    assert_eq!(continuation.shift_decode, None, "{continuation:?}");
    // The window drops the first two exchanges: what follows them moves, nothing is read again.
    let moved = run(4, 12);
    assert!(moved.shifted_tokens > 100, "{moved:?}");
    let (took, tokens) = moved.shift_decode.expect("the shift's decode is reported");
    assert_eq!(
        tokens,
        moved.prompt_tokens - moved.reused_tokens,
        "{moved:?}"
    );
    assert!(
        took > Duration::ZERO && took <= moved.prompt_time,
        "{moved:?}"
    );
}

/// A window move that drops more than half of what a slot holds (a long prompt shrinking to its
/// recent turns, as the first move of a conversation does) still continues that slot: the kept
/// turns are shifted, not read again in an empty slot. Before, the slot counted as a
/// continuation only when the prompt kept half of what it held, and such a turn read its whole
/// prompt again (566 of 567 tokens in `just bench-streaming`).
#[test]
fn a_window_move_that_drops_most_of_the_slot_still_shifts_what_it_keeps() {
    let model = model();
    let mut session = two_shifting_slots(&model);
    let system = ChatMessage::system("You are Alfred, a polite butler. Answer briefly.");
    let topics = [
        "the weather in Paris",
        "my cello lessons",
        "a recipe for borscht",
        "the train to Kazan",
        "birthday gifts for my sister",
        "the garden and its roses",
        "a book about whales",
        "the football match on Sunday",
        "my grandmother's old piano",
        "the price of apples at the market",
        "a walk along the river",
        "the new neighbour's dog",
    ];
    let history: Vec<ChatMessage> = topics
        .iter()
        .enumerate()
        .map(|(i, topic)| {
            if i % 2 == 0 {
                ChatMessage::user(format!(
                    "Let us talk about {topic}, if you would be so kind."
                ))
            } else {
                ChatMessage::assistant(format!(
                    "Certainly, sir: {topic} is a fine subject for a quiet evening."
                ))
            }
        })
        .collect();
    let mut run = |from: usize, to: usize| one_token(&mut session, &system, &history[from..to]);
    run(0, 9);
    let before = run(0, 11);
    assert!(
        before.reused_tokens > 0 && before.shifted_tokens == 0,
        "{before:?}"
    );
    // The window keeps the last three messages and the new one: well under half of the slot.
    let moved = run(8, 12);
    eprintln!("before: {before:?}\nmoved: {moved:?}");
    assert!(
        moved.reused_tokens * 2 < before.prompt_tokens,
        "the move must keep less than half of the slot for this test: {moved:?}"
    );
    assert!(moved.shifted_tokens > 0, "nothing was shifted: {moved:?}");
    let evaluated = moved.prompt_tokens - moved.reused_tokens;
    assert!(
        evaluated <= 30,
        "{evaluated} of {} tokens evaluated: {moved:?}",
        moved.prompt_tokens
    );
}
