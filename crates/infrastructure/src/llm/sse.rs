//! Server-sent events of a streamed chat completion (`stream: true`): [`SseBuffer`] splits the
//! body into `data:` payloads however the network cut it, and [`sse_stream`] turns a response
//! into the port's [`LlmStream`] — deltas, then `Done` with the usage — inside the call's
//! deadline, holding the concurrency slots until the stream ends or is dropped.

use std::collections::VecDeque;
use std::time::Duration;

use butler_domain::ports::{LlmError, LlmReply, LlmStream, StreamEvent};
use reqwest::Response;
use tokio::time::{timeout_at, Instant};

use super::deltas::DeltaAssembler;
use super::wire::parse_chunk;

/// Splits an event stream into the payloads of its `data:` lines, one per event.
#[derive(Debug, Default)]
pub(super) struct SseBuffer {
    bytes: Vec<u8>,
}

impl SseBuffer {
    /// Adds received bytes; returns the payloads of the events they complete.
    pub(super) fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        self.bytes.extend_from_slice(bytes);
        let mut payloads = Vec::new();
        // Events are read where they lie and the buffer is cut once: a chunk of many events
        // (a server that writes a whole reply at once) is then read in one pass, not one copy
        // and one search of the rest per event.
        let mut start = 0;
        while let Some((end, separator)) = event_end(&self.bytes[start..]) {
            let text = String::from_utf8_lossy(&self.bytes[start..start + end]);
            let data: Vec<&str> = text
                .lines()
                .filter_map(|line| line.strip_prefix("data:"))
                .map(|d| d.strip_prefix(' ').unwrap_or(d))
                .collect();
            if !data.is_empty() {
                payloads.push(data.join("\n"));
            }
            start += end + separator;
        }
        self.bytes.drain(..start);
        payloads
    }
}

/// Where the first event ends and how long its blank-line separator is: the first `\n\n` or
/// `\r\n\r\n`, whichever comes first.
fn event_end(bytes: &[u8]) -> Option<(usize, usize)> {
    let mut from = 0;
    while let Some(found) = bytes[from..].iter().position(|&b| b == b'\n') {
        let lf = from + found;
        match bytes.get(lf + 1) {
            Some(b'\n') => return Some((lf, 2)),
            Some(b'\r')
                if lf >= 1 && bytes[lf - 1] == b'\r' && bytes.get(lf + 2) == Some(&b'\n') =>
            {
                return Some((lf - 1, 4));
            }
            _ => from = lf + 1,
        }
    }
    None
}

struct State {
    response: Response,
    buffer: SseBuffer,
    text: DeltaAssembler,
    usage: (Option<u32>, Option<u32>, Option<u32>),
    finished_choice: bool,
    pending: VecDeque<Result<StreamEvent, LlmError>>,
    ended: bool,
    deadline: Instant,
    timeout: Duration,
    _slots: Box<dyn Send + Sync>,
}

impl State {
    fn fail(&mut self, error: LlmError) {
        self.pending.push_back(Err(error));
        self.ended = true;
    }

    fn finish(&mut self) {
        let text = std::mem::take(&mut self.text).finish();
        if text.is_empty() {
            return self.fail(LlmError::InvalidResponse {
                detail: "the streamed completion text is empty".to_owned(),
            });
        }
        let (prompt_tokens, completion_tokens, cached_prompt_tokens) = self.usage;
        self.pending.push_back(Ok(StreamEvent::Done(LlmReply {
            text,
            prompt_tokens,
            completion_tokens,
            cached_prompt_tokens,
        })));
        self.ended = true;
    }

    fn payload(&mut self, data: &str) {
        if data.trim() == "[DONE]" {
            return self.finish();
        }
        match parse_chunk(data) {
            Err(e) => self.fail(e),
            Ok(chunk) => {
                if let Some(usage) = chunk.usage {
                    self.usage = usage;
                }
                self.finished_choice |= chunk.finished;
                if let Some(delta) = self.text.push_text(&chunk.text) {
                    self.pending.push_back(Ok(StreamEvent::Delta(delta)));
                }
            }
        }
    }

    /// Reads until there is something to yield.
    async fn advance(&mut self) {
        while self.pending.is_empty() && !self.ended {
            match timeout_at(self.deadline, self.response.chunk()).await {
                Err(_) => self.fail(LlmError::Timeout {
                    after: self.timeout,
                }),
                Ok(Err(e)) => self.fail(LlmError::Unavailable {
                    detail: format!(
                        "the completion stream broke after {} characters: {}",
                        self.text.text().chars().count(),
                        e.without_url()
                    ),
                }),
                // A server that ends without `[DONE]` but after a finished choice is done;
                // one that just stops mid-reply is not.
                Ok(Ok(None)) if self.finished_choice => self.finish(),
                Ok(Ok(None)) => self.fail(LlmError::Unavailable {
                    detail: format!(
                        "the completion stream was cut after {} characters",
                        self.text.text().chars().count()
                    ),
                }),
                Ok(Ok(Some(bytes))) => {
                    for data in self.buffer.push(&bytes) {
                        if !self.ended {
                            self.payload(&data);
                        }
                    }
                }
            }
        }
    }
}

/// The events of a `text/event-stream` response, read within `deadline`; `slots` (the
/// concurrency permit and the server's lease) are held until the stream ends or is dropped.
pub(super) fn sse_stream(
    response: Response,
    deadline: Instant,
    timeout: Duration,
    slots: Box<dyn Send + Sync>,
) -> LlmStream {
    let state = State {
        response,
        buffer: SseBuffer::default(),
        text: DeltaAssembler::default(),
        usage: (None, None, None),
        finished_choice: false,
        pending: VecDeque::new(),
        ended: false,
        deadline,
        timeout,
        _slots: slots,
    };
    Box::pin(futures::stream::unfold(state, |mut state| async move {
        state.advance().await;
        state.pending.pop_front().map(|event| (event, state))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_split_however_the_bytes_arrive() {
        let body = "data: {\"a\":1}\n\ndata: [DONE]\r\n\r\n: comment\n\n";
        for cut in 0..body.len() {
            let mut buffer = SseBuffer::default();
            let mut payloads = buffer.push(&body.as_bytes()[..cut]);
            payloads.extend(buffer.push(&body.as_bytes()[cut..]));
            assert_eq!(payloads, ["{\"a\":1}", "[DONE]"], "cut at {cut}");
        }
    }

    #[test]
    fn many_events_in_one_chunk_with_mixed_line_ends_and_multi_line_data() {
        let mut body = String::new();
        let mut expected = Vec::new();
        for i in 0..50 {
            match i % 3 {
                0 => body.push_str(&format!("data: {i}\n\n")),
                1 => body.push_str(&format!("data: {i}\r\n\r\n")),
                _ => body.push_str(&format!("event: x\r\ndata: {i}\ndata:more\r\n\r\n")),
            }
            expected.push(if i % 3 == 2 {
                format!("{i}\nmore")
            } else {
                i.to_string()
            });
        }
        let mut buffer = SseBuffer::default();
        assert_eq!(buffer.push(body.as_bytes()), expected);
        assert!(buffer.bytes.is_empty(), "nothing left over");
        // A separator cut in two halves completes with the next chunk.
        assert!(buffer.push(b"data: tail\r\n\r").is_empty());
        assert_eq!(buffer.push(b"\n"), ["tail"]);
    }
}
