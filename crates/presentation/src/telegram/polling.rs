//! Long polling: `getUpdates` in a loop, each batch stored in the inbox before the next call
//! confirms it (Telegram forgets an update once a later call passes a higher `offset`).

use std::time::Duration;

use serde::Serialize;
use teloxide::payloads::GetUpdatesSetters as _;
use teloxide::prelude::*;
use teloxide::requests::{JsonRequest, Payload};
use teloxide::types::Update;
use tokio_util::sync::CancellationToken;

use super::receive::Receiver;
use super::redact::Redactor;

/// Pauses after failed `getUpdates` calls (Telegram down, network gone), growing to the last.
const POLL_BACKOFF: [Duration; 5] = [
    Duration::from_millis(200),
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(5),
    Duration::from_secs(10),
];

/// `getUpdates` answering the updates' JSON as sent: teloxide 0.17 reads an update kind newer
/// than it knows (the stop button's `stopped_message_generation`) as an empty error and loses
/// its content, so updates are read raw and parsed here.
#[derive(Debug, Clone, Serialize)]
struct GetUpdatesRaw {
    #[serde(skip_serializing_if = "Option::is_none")]
    offset: Option<i32>,
    timeout: u32,
    allowed_updates: &'static [&'static str],
}

impl Payload for GetUpdatesRaw {
    type Output = Vec<serde_json::Value>;
    const NAME: &'static str = "getUpdates";
}

/// Polls until `shutdown`. Every update of a batch is stored before the next `getUpdates`
/// confirms it; on shutdown, the stored ones are confirmed with a last short call, so the
/// next process does not receive them again (it would drop them as duplicates anyway).
pub(crate) async fn poll(
    bot: Bot,
    receiver: Receiver,
    timeout: Duration,
    redactor: Redactor,
    shutdown: CancellationToken,
) {
    let timeout_secs = u32::try_from(timeout.as_secs()).unwrap_or(u32::MAX);
    let mut offset: Option<i32> = None;
    let mut failures = 0usize;
    while !shutdown.is_cancelled() {
        let request = JsonRequest::new(
            bot.clone(),
            GetUpdatesRaw {
                offset,
                timeout: timeout_secs,
                allowed_updates: super::ALLOWED_UPDATES,
            },
        );
        let batch = tokio::select! {
            () = shutdown.cancelled() => break,
            batch = request.send() => batch,
        };
        let updates = match batch {
            Ok(updates) => {
                failures = 0;
                updates
            }
            Err(error) => {
                let pause = POLL_BACKOFF[failures.min(POLL_BACKOFF.len() - 1)];
                failures += 1;
                let error = redactor.clean(error);
                tracing::warn!(%error, retry_in_ms = pause.as_millis(), "getUpdates failed; polling will retry");
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(pause) => continue,
                }
            }
        };
        for raw in updates {
            let Some(id) = raw.get("update_id").and_then(serde_json::Value::as_i64) else {
                continue;
            };
            if !receiver.stop_pressed(&raw) {
                // From text, not from the value: teloxide reads update kinds as borrowed keys.
                let payload = raw.to_string();
                match serde_json::from_str::<Update>(&payload) {
                    Ok(update) => {
                        if let Some(entry) = receiver.admit(&update, payload) {
                            if !receiver.store_patiently(&entry, &shutdown).await {
                                // Not stored, so not confirmed: Telegram keeps it for the
                                // next process.
                                return;
                            }
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%error, update_id = id, "unreadable update skipped");
                    }
                }
            }
            offset = i32::try_from(id.saturating_add(1)).ok().or(offset);
        }
    }
    if let Some(offset) = offset {
        // Confirms the last batch without waiting for new updates.
        let confirm = bot.get_updates().offset(offset).timeout(0).limit(1).send();
        if let Err(error) = tokio::time::timeout(Duration::from_secs(5), confirm)
            .await
            .unwrap_or_else(|_| Ok(Vec::new()))
        {
            let error = redactor.clean(error);
            tracing::info!(%error, "last getUpdates confirmation failed; the next start drops the redeliveries");
        }
    }
}
