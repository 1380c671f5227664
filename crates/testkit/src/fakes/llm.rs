//! A scripted language model: replies, failures and pauses in a queue, every request recorded.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use butler_domain::ports::{LlmClient, LlmError, LlmReply, LlmRequest, LlmStream, StreamEvent};
use futures::StreamExt as _;
use tokio::sync::Semaphore;

/// One scripted answer.
#[derive(Debug)]
pub enum LlmStep {
    /// Reply with this text.
    Reply(String),
    /// Fail with this error.
    Fail(LlmError),
    /// Wait this long, then reply with the text.
    Delay(Duration, String),
    /// Panic (a bug in an adapter): for tests of what survives one.
    Panic,
    /// Streamed: each piece after `every`, then the reply (their concatenation). Called
    /// without streaming, answers the whole text after all the pauses.
    Streamed {
        /// The pieces, in order.
        pieces: Vec<String>,
        /// Pause before each piece.
        every: Duration,
    },
    /// Streamed, then fails: the pieces, then `error` instead of the end.
    StreamFails {
        /// The pieces sent before the failure.
        pieces: Vec<String>,
        /// Pause before each piece.
        every: Duration,
        /// What ends the stream.
        error: LlmError,
    },
}

impl LlmStep {
    /// A streamed reply of `text`, one word (with its following space) every `every`.
    #[must_use]
    pub fn streamed(text: &str, every: Duration) -> Self {
        Self::Streamed {
            pieces: text.split_inclusive(' ').map(str::to_owned).collect(),
            every,
        }
    }
}

/// Answers from a script; when the script is empty, echoes a fixed reply.
#[derive(Debug)]
pub struct FakeLlm {
    script: Mutex<VecDeque<LlmStep>>,
    requests: Mutex<Vec<LlmRequest>>,
    default_reply: Mutex<String>,
    /// When set, each request waits for a permit — tests release them to interleave work.
    gate: Mutex<Option<std::sync::Arc<Semaphore>>>,
}

impl Default for FakeLlm {
    fn default() -> Self {
        Self {
            script: Mutex::new(VecDeque::new()),
            requests: Mutex::new(Vec::new()),
            default_reply: Mutex::new("Разумеется, сэр.".to_owned()),
            gate: Mutex::new(None),
        }
    }
}

impl FakeLlm {
    /// Queues a reply.
    pub fn push_reply(&self, text: &str) {
        self.push(LlmStep::Reply(text.to_owned()));
    }

    /// Queues a step.
    pub fn push(&self, step: LlmStep) {
        self.script.lock().expect("llm mutex").push_back(step);
    }

    /// Sets the reply used when the script is empty.
    pub fn set_default_reply(&self, text: &str) {
        text.clone_into(&mut self.default_reply.lock().expect("llm mutex"));
    }

    /// Makes every request wait for a permit of the returned semaphore (starting with none).
    #[must_use]
    pub fn gate(&self) -> std::sync::Arc<Semaphore> {
        let gate = std::sync::Arc::new(Semaphore::new(0));
        *self.gate.lock().expect("llm mutex") = Some(gate.clone());
        gate
    }

    /// Requests received so far, in order.
    #[must_use]
    pub fn requests(&self) -> Vec<LlmRequest> {
        self.requests.lock().expect("llm mutex").clone()
    }
}

impl FakeLlm {
    /// Records the request, waits at the gate, and takes the next step.
    async fn next_step(&self, request: &LlmRequest) -> Result<LlmStep, LlmError> {
        self.requests
            .lock()
            .expect("llm mutex")
            .push(request.clone());
        let gate = self.gate.lock().expect("llm mutex").clone();
        if let Some(gate) = gate {
            let permit = gate.acquire().await.map_err(|_| LlmError::Unavailable {
                detail: "gate closed".to_owned(),
            })?;
            permit.forget();
        }
        let step = self.script.lock().expect("llm mutex").pop_front();
        Ok(step.unwrap_or_else(|| {
            LlmStep::Reply(self.default_reply.lock().expect("llm mutex").clone())
        }))
    }
}

#[async_trait]
impl LlmClient for FakeLlm {
    async fn complete(&self, request: &LlmRequest) -> Result<LlmReply, LlmError> {
        match self.next_step(request).await? {
            LlmStep::Reply(text) => Ok(LlmReply::text(text)),
            LlmStep::Fail(error) => Err(error),
            LlmStep::Delay(delay, text) => {
                tokio::time::sleep(delay).await;
                Ok(LlmReply::text(text))
            }
            LlmStep::Panic => panic!("scripted panic in the fake language model"),
            LlmStep::Streamed { pieces, every } => {
                tokio::time::sleep(every * u32::try_from(pieces.len()).unwrap_or(u32::MAX)).await;
                Ok(LlmReply::text(pieces.concat().trim()))
            }
            LlmStep::StreamFails { error, .. } => Err(error),
        }
    }

    async fn stream(&self, request: &LlmRequest) -> Result<LlmStream, LlmError> {
        let (pieces, every, end) = match self.next_step(request).await? {
            LlmStep::Streamed { pieces, every } => {
                let text = pieces.concat().trim().to_owned();
                (pieces, every, Ok(StreamEvent::Done(LlmReply::text(text))))
            }
            LlmStep::StreamFails {
                pieces,
                every,
                error,
            } => (pieces, every, Err(error)),
            LlmStep::Fail(error) => return Err(error),
            LlmStep::Panic => panic!("scripted panic in the fake language model"),
            LlmStep::Reply(text) => (
                vec![text.clone()],
                Duration::ZERO,
                Ok(StreamEvent::Done(LlmReply::text(text))),
            ),
            LlmStep::Delay(delay, text) => (
                vec![text.clone()],
                delay,
                Ok(StreamEvent::Done(LlmReply::text(text))),
            ),
        };
        // Pieces as the port promises them: no leading or trailing whitespace overall.
        let mut deltas = Vec::new();
        let mut emitted = String::new();
        let mut held = String::new();
        for piece in pieces {
            let mut text = std::mem::take(&mut held) + &piece;
            if emitted.is_empty() {
                text = text.trim_start().to_owned();
            }
            let body = text.trim_end().len();
            held = text[body..].to_owned();
            text.truncate(body);
            emitted.push_str(&text);
            deltas.push(text);
        }
        let events = deltas.into_iter().map(|d| (every, d)).collect::<Vec<_>>();
        let stream = futures::stream::unfold(
            (events.into_iter(), Some(end)),
            |(mut events, end)| async move {
                if let Some((pause, delta)) = events.next() {
                    if !pause.is_zero() {
                        tokio::time::sleep(pause).await;
                    }
                    if delta.is_empty() {
                        return Some((None, (events, end)));
                    }
                    return Some((Some(Ok(StreamEvent::Delta(delta))), (events, end)));
                }
                end.map(|e| (Some(e), (events, None)))
            },
        )
        .filter_map(|item| async move { item });
        Ok(Box::pin(stream))
    }
}
