//! Receiving updates: long polling against webhook mode through the whole reply path (both
//! store every update in the durable inbox first), the inbox's cost per message, and how long
//! users wait when one of two replicas is killed.

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::backend::StoreEnv;
use crate::e2e::{Fakes, InProcessBot, Load, LoadResult, Receiving, Runtimes};
use crate::rss::bot_command;

/// Runs `load` on a fresh store and bot receiving as `receiving`.
///
/// # Errors
/// If the bot does not start or a reply does not arrive.
pub fn measure_receiving(
    rt: &Runtimes,
    backend: crate::backend::Backend,
    receiving: Receiving,
    load: &Load,
) -> anyhow::Result<LoadResult> {
    let store = rt
        .bot
        .block_on(StoreEnv::fresh(backend, "bench_delivery"))?;
    let mut bot = InProcessBot::start_receiving(rt, &store, receiving)?;
    let result = bot.run(rt, load)?;
    bot.stop(rt)?;
    Ok(result)
}

/// What killing one of two replicas cost the users.
#[derive(Debug, Clone)]
pub struct Recovery {
    /// `INBOX_LEASE_SECS` of the replicas.
    pub lease: Duration,
    /// Users with a message unanswered at the kill.
    pub waiting: usize,
    /// Of those, the ones answered only after a second (their update was held by the dead
    /// replica: they waited for its lease to expire).
    pub held: usize,
    /// From SIGKILL to the first answer to a held user (zero when none was held).
    pub first_held_answer: Duration,
    /// From SIGKILL to every waiting user answered.
    pub all_answered: Duration,
}

struct Replica(Child);

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Two `butler-bot` processes in webhook mode on `store` (MongoDB) behind the fake Bot API's
/// round robin; `users` users in closed loops; replica 0 gets SIGKILL after `before_kill`.
///
/// # Errors
/// If a replica does not start or the users are not all answered within two minutes.
pub fn measure_recovery(
    rt: &Runtimes,
    bot_bin: &Path,
    store: &StoreEnv,
    users: usize,
    lease_secs: u64,
    before_kill: Duration,
) -> anyhow::Result<Recovery> {
    let fakes = rt.harness.block_on(Fakes::start());
    let logs = tempfile::tempdir().context("temporary directory for the replicas' logs")?;
    let ports = [free_port()?, free_port()?];
    let mut replicas = Vec::new();
    for (index, port) in ports.iter().enumerate() {
        let log = std::fs::File::create(logs.path().join(format!("replica{index}.log")))?;
        let mut command = bot_command(bot_bin, store, &fakes);
        command
            .env("ALLOWED_USER_IDS", "*")
            .env("RATE_LIMIT_PER_MINUTE", "0")
            .env("DAILY_MESSAGE_QUOTA", "0")
            .env(
                "TELEGRAM_WEBHOOK_URL",
                "https://bot.example.com/telegram/webhook",
            )
            .env("TELEGRAM_WEBHOOK_LISTEN", format!("127.0.0.1:{port}"))
            .env("INBOX_LEASE_SECS", lease_secs.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        replicas.push(Replica(
            command
                .spawn()
                .with_context(|| format!("starting {}", bot_bin.display()))?,
        ));
    }
    let telegram = fakes.telegram;
    rt.harness.block_on(async move {
        telegram
            .wait_for_calls("setWebhook", 2, Duration::from_secs(60))
            .await
            .context("the replicas did not set the webhook")?;
        telegram.set_webhook_targets(
            ports
                .iter()
                .map(|p| format!("http://127.0.0.1:{p}/telegram/webhook"))
                .collect(),
        );
        let ids: Vec<i64> = (1..=i64::try_from(users).unwrap_or(i64::MAX))
            .map(|u| 20_000_000 + u)
            .collect();
        // Closed loops: each user sends the next message once the previous one is answered.
        let stop = tokio_util::sync::CancellationToken::new();
        let mut loops = tokio::task::JoinSet::new();
        for &user in &ids {
            let telegram = telegram.clone();
            let stop = stop.clone();
            loops.spawn(async move {
                let mut sent = 0;
                while !stop.is_cancelled() {
                    telegram.push_text(user, user, &format!("сообщение {sent}"));
                    sent += 1;
                    while telegram.sent_messages(user).len() < sent && !stop.is_cancelled() {
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                }
            });
        }
        tokio::time::sleep(before_kill).await;
        // Unanswered right now: pushed count is one more than answered for a user mid-message.
        let answered_at_kill: Vec<usize> = ids
            .iter()
            .map(|&u| telegram.sent_messages(u).len())
            .collect();
        if let Some(replica) = replicas.first_mut() {
            let _ = replica.0.kill();
            let _ = replica.0.wait();
        }
        let killed = Instant::now();
        let mut answered_after: Vec<Option<Duration>> = vec![None; ids.len()];
        while answered_after.iter().any(Option::is_none) {
            anyhow::ensure!(
                killed.elapsed() < Duration::from_secs(120),
                "users of the killed replica were not answered within two minutes"
            );
            for (i, &user) in ids.iter().enumerate() {
                if answered_after[i].is_none()
                    && telegram.sent_messages(user).len() > answered_at_kill[i]
                {
                    answered_after[i] = Some(killed.elapsed());
                }
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        stop.cancel();
        while loops.join_next().await.is_some() {}
        let times: Vec<Duration> = answered_after.into_iter().flatten().collect();
        let held: Vec<Duration> = times
            .iter()
            .copied()
            .filter(|t| *t > Duration::from_secs(1))
            .collect();
        Ok(Recovery {
            lease: Duration::from_secs(lease_secs),
            waiting: times.len(),
            held: held.len(),
            first_held_answer: held.iter().min().copied().unwrap_or_default(),
            all_answered: times.iter().max().copied().unwrap_or_default(),
        })
    })
}
