//! The terminal chat: talk to the butler without Telegram, through the same reply use case
//! and storage as the bot — so a newcomer can try it with nothing but a model. The reply is
//! printed as the model writes it.
//!
//! Each turn holds the conversation's reply lease, like a Telegram update being answered: a
//! `profile_admin reset` waits for the turn in flight, and the chat waits (saying so) while a
//! reset, or the bot answering the same user on the same storage, holds it.

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};

/// Longest line read, in bytes: the rest of a longer line is skipped (a pasted file must not
/// fill memory); what is kept is still cut to the stored-event limit by the domain.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

use std::time::Duration;

use butler_application::{PersonalizedReplyUseCase, ReplyInput, ReplySink, ReplyStatus};
use butler_domain::ports::{ConversationLeases, Lease, LeaseScope};
use butler_domain::{Source, UserId};

/// How long a turn's reply lease lasts between renewals.
const TURN_LEASE: Duration = Duration::from_secs(30);
/// Pause between two attempts to take a lease someone else holds.
const BUSY_PAUSE: Duration = Duration::from_millis(250);

/// The greeting printed when the chat starts.
pub const GREETING: &str = "Добрый вечер. Альфред к вашим услугам. (/exit — выйти)";

/// Reads lines from `input` and answers each as `user_id`, holding the conversation's reply
/// lease in `leases` for each turn, until end of input or `/exit`. Returns how many messages
/// were answered.
///
/// # Errors
/// Only I/O errors of the terminal itself.
pub async fn run_chat<R, W>(
    reply: &PersonalizedReplyUseCase,
    leases: &dyn ConversationLeases,
    user_id: UserId,
    input: R,
    output: &mut W,
) -> std::io::Result<usize>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    output
        .write_all(format!("{GREETING}\n> ").as_bytes())
        .await?;
    output.flush().await?;
    let mut input = input;
    let mut answered = 0;
    while let Some(line) = read_line(&mut input, MAX_LINE_BYTES).await? {
        let text = line.trim();
        if matches!(text, "/exit" | "/quit") {
            break;
        }
        if !text.is_empty() {
            output.write_all("\nАльфред: ".as_bytes()).await?;
            output.flush().await?;
            let input = ReplyInput {
                user_id,
                text: text.to_owned(),
                source: Source::Text,
                origin: None,
            };
            let lease = take_turn(leases, user_id, output).await?;
            let answer = stream_reply(reply, input, output);
            let (out, shown) = match lease {
                Some(lease) => {
                    let keep = crate::lease::keep(leases, lease, TURN_LEASE);
                    tokio::pin!(answer);
                    let result = tokio::select! {
                        result = &mut answer => result,
                        // Lost (storage down past its expiry): the turn still finishes.
                        () = keep => answer.await,
                    };
                    if let Err(error) = leases.release(&lease).await {
                        tracing::warn!(%error, "the turn's lease was not released; it expires on its own");
                    }
                    result?
                }
                None => answer.await?,
            };
            tracing::info!(
                user_id = %user_id,
                status = out.status.code(),
                prompt_tokens = out.prompt_tokens,
                memory_events_used = out.memory_events_used,
                reply_len = out.reply.chars().count(),
                "chat reply"
            );
            // The model failed after some text was shown: the fallback goes below it.
            let rest = match out.reply.strip_prefix(shown.as_str()) {
                Some(rest) => rest.to_owned(),
                None if shown.is_empty() => out.reply.clone(),
                None => format!("\n{}", out.reply),
            };
            output.write_all(format!("{rest}\n").as_bytes()).await?;
            if out.status == ReplyStatus::Degraded {
                output
                    .write_all(
                        "(память сейчас недоступна: этот обмен мог не сохраниться)\n".as_bytes(),
                    )
                    .await?;
            }
            answered += 1;
        }
        output.write_all(b"\n> ").await?;
        output.flush().await?;
    }
    output.write_all("\nДо встречи, сэр.\n".as_bytes()).await?;
    output.flush().await?;
    Ok(answered)
}

/// Takes the conversation's reply lease for one turn, waiting (and saying so once) while
/// someone else holds it. `None` when the leases cannot be reached: the turn goes ahead
/// unguarded rather than not at all.
async fn take_turn<W: AsyncWrite + Unpin>(
    leases: &dyn ConversationLeases,
    user_id: UserId,
    output: &mut W,
) -> std::io::Result<Option<Lease>> {
    let lease_for = time::Duration::try_from(TURN_LEASE).unwrap_or(time::Duration::seconds(30));
    let mut told = false;
    loop {
        let now = time::OffsetDateTime::now_utc();
        match leases
            .acquire(user_id.get(), LeaseScope::Replies, now, lease_for)
            .await
        {
            Ok(Some(lease)) => return Ok(Some(lease)),
            Ok(None) => {
                if !told {
                    output
                        .write_all("(минуточку: память сейчас занята…) ".as_bytes())
                        .await?;
                    output.flush().await?;
                    told = true;
                }
                tokio::time::sleep(BUSY_PAUSE).await;
            }
            Err(error) => {
                tracing::warn!(%error, "conversation leases unavailable; answering without one");
                return Ok(None);
            }
        }
    }
}

/// Sends each streamed piece of a reply to the printing loop.
struct ChannelSink(tokio::sync::mpsc::UnboundedSender<String>);

impl ReplySink for ChannelSink {
    fn delta(&self, text: &str) {
        let _ = self.0.send(text.to_owned());
    }
}

/// Runs the reply, printing its pieces as they arrive; returns the output and what was shown.
async fn stream_reply<W: AsyncWrite + Unpin>(
    reply: &PersonalizedReplyUseCase,
    input: ReplyInput,
    output: &mut W,
) -> std::io::Result<(butler_application::ReplyOutput, String)> {
    let (sender, mut pieces) = tokio::sync::mpsc::unbounded_channel();
    let sink = ChannelSink(sender);
    let answer = reply.execute_streaming(input, &sink);
    tokio::pin!(answer);
    let mut shown = String::new();
    let out = loop {
        tokio::select! {
            out = &mut answer => break out,
            Some(piece) = pieces.recv() => {
                output.write_all(piece.as_bytes()).await?;
                output.flush().await?;
                shown.push_str(&piece);
            }
        }
    };
    while let Ok(piece) = pieces.try_recv() {
        output.write_all(piece.as_bytes()).await?;
        shown.push_str(&piece);
    }
    output.flush().await?;
    Ok((out, shown))
}

/// Reads one line of at most `max` bytes (without the newline); the rest of a longer line is
/// read and dropped. Invalid UTF-8 is replaced, never an error. `None` at end of input.
async fn read_line<R: AsyncBufRead + Unpin>(
    input: &mut R,
    max: usize,
) -> std::io::Result<Option<String>> {
    let mut line = Vec::new();
    let mut seen_any = false;
    loop {
        let buffer = input.fill_buf().await?;
        if buffer.is_empty() {
            break;
        }
        seen_any = true;
        let (chunk, done) = match buffer.iter().position(|b| *b == b'\n') {
            Some(end) => (&buffer[..end], Some(end + 1)),
            None => (buffer, None),
        };
        let room = max.saturating_sub(line.len());
        line.extend_from_slice(&chunk[..chunk.len().min(room)]);
        let used = done.unwrap_or(buffer.len());
        input.consume(used);
        if done.is_some() {
            break;
        }
    }
    if !seen_any {
        return Ok(None);
    }
    Ok(Some(String::from_utf8_lossy(&line).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_are_bounded_and_invalid_utf8_is_replaced() {
        let mut long = vec![b'a'; 100_000];
        long.extend_from_slice(b"\nnext\n\xff\xfe\nlast");
        let mut input = tokio::io::BufReader::with_capacity(1024, &long[..]);
        let first = read_line(&mut input, 10).await.unwrap().unwrap();
        assert_eq!(first, "aaaaaaaaaa");
        assert_eq!(read_line(&mut input, 10).await.unwrap().unwrap(), "next");
        assert_eq!(
            read_line(&mut input, 10).await.unwrap().unwrap(),
            "\u{fffd}\u{fffd}"
        );
        assert_eq!(read_line(&mut input, 10).await.unwrap().unwrap(), "last");
        assert_eq!(read_line(&mut input, 10).await.unwrap(), None);
    }
}
