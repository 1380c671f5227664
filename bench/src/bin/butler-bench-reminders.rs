//! `butler-bench-reminders`: the scheduler's firing lag on SQLite — 10,000 reminders due within
//! the same minute, fired by the real claim/deliver use case through a channel that only
//! records when each one was sent. Prints p50/p99/max lag and the delivery rate.
//!
//! `--quick`: 1,000 reminders (checks that it runs, not how fast). `--count N` for any size.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use butler_application::reminders::{FireConfig, FireRemindersUseCase, ReminderChannel, SendError};
use butler_domain::ports::ReminderRepository;
use butler_domain::reminder::{Reminder, UserTimeZone};
use butler_domain::UserId;
use butler_infrastructure::sqlite::{SqliteOptions, SqliteStore};
use clap::Parser;
use time::OffsetDateTime;

#[derive(Debug, Parser)]
#[command(
    name = "butler-bench-reminders",
    about = "Reminder firing lag on SQLite."
)]
struct Cli {
    /// 1,000 reminders instead of 10,000.
    #[arg(long)]
    quick: bool,
    /// How many reminders fall due within the minute.
    #[arg(long)]
    count: Option<usize>,
}

/// Records the lag of every delivery (the chat id is the reminder's index).
struct Recorder {
    due: Vec<OffsetDateTime>,
    lags: Mutex<Vec<f64>>,
}

#[async_trait]
impl ReminderChannel for Recorder {
    async fn send(&self, chat_id: i64, _text: &str) -> Result<(), SendError> {
        let now = OffsetDateTime::now_utc();
        let due = usize::try_from(chat_id)
            .ok()
            .and_then(|i| self.due.get(i))
            .copied()
            .unwrap_or(now);
        self.lags
            .lock()
            .map_err(|_| SendError::NotSent("poisoned".into()))?
            .push((now - due).as_seconds_f64());
        Ok(())
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let count = cli.count.unwrap_or(if cli.quick { 1_000 } else { 10_000 });
    let dir = tempfile::tempdir().context("temporary directory")?;
    let store = SqliteStore::open(SqliteOptions::at(dir.path().join("reminders.db")))
        .await
        .context("open SQLite")?;
    let reminders = Arc::new(store.reminders());
    let zone = UserTimeZone::new("Europe/Moscow").context("zone")?;
    // Stored first (a transaction each, as users set them), then moved so that they fall due
    // evenly over one minute that starts once all are in place.
    let mut due_offsets = Vec::with_capacity(count);
    for i in 0..count {
        #[allow(clippy::cast_possible_wrap, clippy::cast_possible_truncation)]
        due_offsets.push(time::Duration::milliseconds(
            (i as i64 * 60_000) / count.max(1) as i64,
        ));
    }
    let far = OffsetDateTime::now_utc() + time::Duration::days(1);
    let storing = std::time::Instant::now();
    let mut ids = Vec::with_capacity(count);
    for i in 0..count {
        #[allow(clippy::cast_possible_wrap)]
        let reminder = Reminder::new(
            UserId::new(1 + (i % 500) as i64),
            i as i64,
            "позвонить маме",
            far,
            &zone,
            OffsetDateTime::now_utc(),
        )
        .context("reminder")?;
        reminders.add(&reminder).await.context("add")?;
        ids.push(reminder.id);
    }
    let now = OffsetDateTime::now_utc();
    // Moving them takes about as long as storing them did: the minute starts after that.
    let start = now
        + time::Duration::try_from(storing.elapsed().mul_f64(1.5)).unwrap_or_default()
        + time::Duration::seconds(5);
    let mut due = Vec::with_capacity(count);
    for (i, id) in ids.iter().enumerate() {
        let at = butler_domain::timestamp::truncate_to_millis(start + due_offsets[i]);
        #[allow(clippy::cast_possible_wrap)]
        let user = UserId::new(1 + (i % 500) as i64);
        reminders
            .reschedule(user, *id, at, now)
            .await
            .context("reschedule")?;
        due.push(at);
    }
    eprintln!("stored {count} reminders; firing from {start}");
    let channel = Arc::new(Recorder {
        due,
        lags: Mutex::new(Vec::with_capacity(count)),
    });
    let config = FireConfig::default();
    let fire = FireRemindersUseCase::new(
        reminders.clone(),
        Arc::new(store.profiles()),
        channel.clone(),
        config,
        None,
    );
    // The bot's loop (crates/presentation/src/telegram/reminders.rs): a round, then sleep
    // until the next due reminder, at most 0.5 s.
    let mut fired = 0;
    let begun = std::time::Instant::now();
    while fired < count {
        let now = OffsetDateTime::now_utc();
        let outcome = fire.execute(now).await.context("fire")?;
        fired += outcome.fired;
        if outcome.claimed >= config.batch as usize {
            continue;
        }
        let wait = match reminders.next_due().await.context("next_due")? {
            Some(at) if at > now => Duration::try_from(at - OffsetDateTime::now_utc())
                .unwrap_or_default()
                .min(Duration::from_millis(500)),
            _ => Duration::from_millis(500),
        };
        tokio::time::sleep(wait).await;
    }
    let elapsed = begun.elapsed();
    let mut lags = channel
        .lags
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .clone();
    lags.sort_by(f64::total_cmp);
    println!(
        "| reminders due within one minute (SQLite) | {count} | lag p50 {:.1} ms | p99 {:.1} ms | max {:.1} ms | {} fired in {:.1} s |",
        percentile(&lags, 0.5) * 1000.0,
        percentile(&lags, 0.99) * 1000.0,
        lags.last().copied().unwrap_or_default() * 1000.0,
        lags.len(),
        elapsed.as_secs_f64(),
    );
    Ok(())
}
