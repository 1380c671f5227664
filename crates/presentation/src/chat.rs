//! The terminal chat: talk to the butler without Telegram, through the same reply use case
//! and storage as the bot — so a newcomer can try it with nothing but a model.

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};

use butler_application::{PersonalizedReplyUseCase, ReplyInput, ReplyStatus};
use butler_domain::{Source, UserId};

/// The greeting printed when the chat starts.
pub const GREETING: &str = "Добрый вечер. Альфред к вашим услугам. (/exit — выйти)";

/// Reads lines from `input` and answers each as `user_id`, until end of input or `/exit`.
/// Returns how many messages were answered.
///
/// # Errors
/// Only I/O errors of the terminal itself.
pub async fn run_chat<R, W>(
    reply: &PersonalizedReplyUseCase,
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
    let mut lines = input.lines();
    let mut answered = 0;
    while let Some(line) = lines.next_line().await? {
        let text = line.trim();
        if matches!(text, "/exit" | "/quit") {
            break;
        }
        if !text.is_empty() {
            let out = reply
                .execute(ReplyInput {
                    user_id,
                    text: text.to_owned(),
                    source: Source::Text,
                })
                .await;
            tracing::info!(
                user_id = %user_id,
                status = out.status.code(),
                prompt_tokens = out.prompt_tokens,
                memory_events_used = out.memory_events_used,
                reply_len = out.reply.chars().count(),
                "chat reply"
            );
            output
                .write_all(format!("\nАльфред: {}\n", out.reply).as_bytes())
                .await?;
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
