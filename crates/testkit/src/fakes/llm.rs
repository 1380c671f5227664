//! A scripted language model: replies, failures and pauses in a queue, every request recorded.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use butler_domain::ports::{LlmClient, LlmError, LlmReply, LlmRequest};
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

#[async_trait]
impl LlmClient for FakeLlm {
    async fn complete(&self, request: &LlmRequest) -> Result<LlmReply, LlmError> {
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
        match step {
            Some(LlmStep::Reply(text)) => Ok(LlmReply::text(text)),
            Some(LlmStep::Fail(error)) => Err(error),
            Some(LlmStep::Delay(delay, text)) => {
                tokio::time::sleep(delay).await;
                Ok(LlmReply::text(text))
            }
            Some(LlmStep::Panic) => panic!("scripted panic in the fake language model"),
            None => Ok(LlmReply::text(
                self.default_reply.lock().expect("llm mutex").clone(),
            )),
        }
    }
}
