//! What `butler-bot` runs, wired here so the binary only parses its arguments: the Telegram
//! bot ([`run`]: storage, telemetry, the signal, the bot, the stop), its settings
//! ([`bot_settings`]: every value from the settings table, nothing decided in the binary), and
//! the terminal chat ([`chat`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use butler_domain::UserId;
use butler_presentation::telegram::{
    run_bot, webhook, Access as BotAccess, BotConfig, BotDeps, BotSettings, Delivery, GroupConfig,
    InboxConfig, Limits, ReminderDeps, WebhookConfig,
};

use crate::settings::{Access, Settings};
use crate::{runtime, wiring};

/// The bot's settings from `settings`.
///
/// # Errors
/// A message naming the variable when `TELEGRAM_BOT_TOKEN` or `ALLOWED_USER_IDS` is not set.
pub fn bot_settings(settings: &Settings) -> Result<BotSettings, String> {
    let telegram = &settings.telegram;
    let Some(token) = telegram.token.clone() else {
        return Err("TELEGRAM_BOT_TOKEN is not set: get one from @BotFather, or try `butler-bot chat` in the terminal".to_owned());
    };
    let Some(access) = telegram.access.clone() else {
        return Err("ALLOWED_USER_IDS is not set: list the Telegram user ids the butler may answer (comma-separated, e.g. ALLOWED_USER_IDS=123456789), or set it to * to answer anyone who finds the bot".to_owned());
    };
    let config = BotConfig {
        access: match access {
            Access::Everyone => BotAccess::Everyone,
            Access::Only(ids) => BotAccess::Only(ids.into_iter().map(UserId::new).collect()),
        },
        groups: GroupConfig {
            allowed_chats: telegram.allowed_chats.clone(),
            names: telegram.names.clone(),
            ..GroupConfig::default()
        },
        limits: Limits {
            per_minute: telegram.limits.per_minute,
            burst: telegram.limits.burst,
            per_day: telegram.limits.per_day,
        },
        max_voice_duration: Duration::from_secs(u64::from(telegram.voice_max_seconds)),
        max_voice_bytes: telegram.voice_max_bytes as u64,
        inbox: InboxConfig {
            lease: telegram.inbox_lease,
            workers: telegram.workers,
            retention: telegram.inbox_retention,
            ..InboxConfig::default()
        },
        shutdown_grace: telegram.shutdown_grace,
        ..BotConfig::default()
    };
    let delivery = match &telegram.webhook {
        None => Delivery::Polling,
        Some(hook) => Delivery::Webhook(WebhookConfig {
            max_connections: hook.max_connections,
            ..WebhookConfig::new(
                hook.url.clone(),
                hook.listen,
                hook.secret
                    .clone()
                    .unwrap_or_else(|| webhook::derived_secret(&token)),
            )
        }),
    };
    let api_url =
        (telegram.api_url != "https://api.telegram.org").then(|| telegram.api_url.clone());
    Ok(BotSettings {
        token,
        api_url,
        delivery,
        config,
    })
}

/// Runs the bot until SIGTERM or Ctrl-C, then stops it as `docs/operations/deploy.md` says:
/// replies in flight and background compressions get `SHUTDOWN_GRACE_SECS` from the signal,
/// then whatever still runs is cut (a second signal cuts at once, see
/// [`runtime::shutdown_signal`]).
///
/// # Errors
/// A message for the operator: a missing setting, storage or model that cannot be opened,
/// `METRICS_ADDR` that cannot be bound, or the bot's own start-up error.
pub async fn run(settings: &Settings) -> Result<(), String> {
    let bot_settings = bot_settings(settings)?;
    let app = wiring::build(settings).await.map_err(|e| e.to_string())?;
    let inbox = app
        .storage
        .inbox_for_bot()
        .await
        .map_err(|e| e.to_string())?;
    let telemetry = runtime::start_telemetry(settings, &app.storage, Some(Arc::clone(&inbox)))
        .await
        .map_err(|e| format!("METRICS_ADDR: {e}"))?;
    let shutdown = runtime::shutdown_signal();
    let requested = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            shutdown.cancelled().await;
            Instant::now()
        })
    };
    let grace = settings.telegram.shutdown_grace;
    let deps = BotDeps {
        reply: Arc::clone(&app.reply),
        observe: Arc::clone(&app.observe),
        stt: app.stt.clone(),
        profiles: Arc::clone(&app.storage.profiles),
        inbox,
        observer: Some(Arc::new(crate::metered::TelegramMetrics)),
        reminders: settings.reminders.enabled.then(|| ReminderDeps {
            manage: Arc::clone(&app.reminders),
            fire: butler_application::reminders::FireConfig {
                late_after: time::Duration::try_from(settings.reminders.late_after)
                    .unwrap_or(time::Duration::minutes(5)),
                lease: time::Duration::try_from(settings.reminders.lease)
                    .unwrap_or(time::Duration::minutes(1)),
                ..butler_application::reminders::FireConfig::default()
            },
            observer: Some(Arc::new(crate::metered::ReminderMetrics)),
            zones: app.zones.clone(),
            offers: app.offers.clone(),
        }),
    };
    let result = run_bot(bot_settings, deps, shutdown.clone()).await;
    // Compressions share the replies' grace period, counted from the signal, so the whole
    // stop stays within SHUTDOWN_GRACE_SECS (plus a few seconds) and under the units'
    // TimeoutStopSec. After a start-up error, they get the grace period from now.
    let since = if shutdown.is_cancelled() {
        requested.await.unwrap_or_else(|_| Instant::now())
    } else {
        requested.abort();
        Instant::now()
    };
    let left = grace.saturating_sub(since.elapsed());
    let running = app.compressor.running();
    if !app.compressor.drain_within(left).await {
        tracing::warn!(
            running = app.compressor.running(),
            "stop deadline reached: compressions still running are cut; their memory stays as \
             it was and they run again after the restart"
        );
    } else if running > 0 {
        tracing::info!(running, "compressions in flight finished");
    }
    if let Some(telemetry) = telemetry {
        let _ = telemetry.shutdown().await;
    }
    result.map_err(|e| e.to_string())
}

/// The terminal chat (`butler-bot chat`): `user_id`'s memory, stdin and stdout.
///
/// # Errors
/// A message for the operator when the app cannot be built or the terminal fails.
pub async fn chat(settings: &Settings, user_id: UserId) -> Result<(), String> {
    let app = wiring::build(settings).await.map_err(|e| e.to_string())?;
    let stdin = tokio::io::BufReader::new(tokio::io::stdin());
    let mut stdout = tokio::io::stdout();
    let result = butler_presentation::chat::run_chat(
        &app.reply,
        app.storage.leases.as_ref(),
        user_id,
        stdin,
        &mut stdout,
    )
    .await;
    app.compressor.drain().await;
    result.map(|_| ()).map_err(|e| e.to_string())
}
