//! Resident memory of the real `butler-bot` binary: started as production starts it (settings
//! from the environment) against the fake Bot API and the scripted LLM, measured idle and
//! after `users` distinct users sent one message each.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use butler_factory::settings::VARIABLES;

use crate::backend::StoreEnv;
use crate::cpu::{process_cpu, rss};
use crate::data;
use crate::e2e::{Fakes, Runtimes};

/// Users sent at once; the next wave starts when every reply of this one arrived.
const WAVE: usize = 500;

/// What the run measured.
#[derive(Debug, Clone, Copy)]
pub struct RssResult {
    /// `VmRSS` after start-up, before any message (bytes).
    pub idle: u64,
    /// `VmRSS` after every user was answered (bytes).
    pub after: u64,
    /// `VmHWM`: the peak (bytes).
    pub peak: u64,
    /// Users answered.
    pub users: usize,
    /// CPU time of the bot process per message (10 ms resolution, so meaningful for thousands).
    pub cpu_per_message: Duration,
    /// Messages per second over the whole run (waves of [`WAVE`] users).
    pub throughput: f64,
}

/// The `butler-bot` binary: `explicit`, else next to this executable.
///
/// # Errors
/// If it is not there, with the command that builds it.
pub fn find_bot_binary(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    let path = match explicit {
        Some(p) => p.to_path_buf(),
        None => std::env::current_exe()
            .context("path of this executable")?
            .with_file_name("butler-bot"),
    };
    anyhow::ensure!(
        path.is_file(),
        "the butler-bot binary is not at {}: build it with the same profile first \
         (`cargo build --release -p butler-bot`; `just bench` does) or pass --bot-bin PATH",
        path.display()
    );
    Ok(path)
}

/// `butler-bot run` as production starts it — settings from the environment only, none
/// inherited from the caller's — on `store`, the fake Bot API and the scripted LLM (SQLite
/// commits as [`crate::backend::SQLITE_SYNCHRONOUS`]).
pub fn bot_command(bot_bin: &Path, store: &StoreEnv, fakes: &Fakes) -> Command {
    let mut command = Command::new(bot_bin);
    for v in VARIABLES {
        command.env_remove(v.name);
    }
    command
        .env_remove("RUST_LOG")
        .envs(store.storage.env())
        .env("SQLITE_SYNCHRONOUS", crate::backend::SQLITE_SYNCHRONOUS)
        .env("TELEGRAM_BOT_TOKEN", fakes.telegram.token())
        .env("TELEGRAM_API_URL", fakes.telegram.api_url())
        .env("LLM_BASE_URL", fakes.llm.base_url());
    command
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        // Only the child this run started.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `butler-bot` on `store` and measures it: resident memory once it polls and has been
/// left alone for `settle`, then after one message from each of `users` users (and half of
/// `settle` more).
///
/// # Errors
/// If the binary does not start, polls nothing, or a reply does not arrive.
pub fn measure(
    rt: &Runtimes,
    bot_bin: &Path,
    store: &StoreEnv,
    users: usize,
    settle: Duration,
) -> anyhow::Result<RssResult> {
    let fakes = rt.harness.block_on(Fakes::start());
    let logs = tempfile::tempdir().context("temporary directory for the bot's log")?;
    let log_path = logs.path().join("butler-bot.log");
    let log = std::fs::File::create(&log_path).context("the bot's log file")?;
    let mut command = bot_command(bot_bin, store, &fakes);
    command
        // Open to the benchmark's users; one message each, so the limits never bite.
        .env("ALLOWED_USER_IDS", "*")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    let child = Killed(
        command
            .spawn()
            .with_context(|| format!("starting {}", bot_bin.display()))?,
    );
    let pid = child.0.id();
    let log_tail = || {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    };
    rt.harness
        .block_on(
            fakes
                .telegram
                .wait_for_calls("getUpdates", 1, Duration::from_secs(60)),
        )
        .with_context(|| format!("butler-bot did not start polling; its log:\n{}", log_tail()))?;
    std::thread::sleep(settle);
    let (idle, _) = rss(pid).context("reading the bot's /proc status")?;

    let ids: Vec<i64> = (1..=i64::try_from(users).unwrap_or(i64::MAX))
        .map(|u| 10_000_000 + u)
        .collect();
    let mut replies = fakes.route_many(&ids);
    let cpu_before = process_cpu(pid);
    let started = Instant::now();
    rt.harness.block_on(async {
        for wave in ids.chunks(WAVE) {
            for &user in wave {
                fakes
                    .telegram
                    .push_text(user, user, &data::user_text(user, 0));
            }
            for _ in wave {
                tokio::time::timeout(Duration::from_secs(120), replies.recv())
                    .await
                    .ok()
                    .flatten()
                    .with_context(|| {
                        format!("butler-bot stopped answering; its log:\n{}", log_tail())
                    })?;
            }
        }
        anyhow::Ok(())
    })?;
    let elapsed = started.elapsed();
    let cpu = process_cpu(pid).saturating_sub(cpu_before);
    std::thread::sleep(settle / 2);
    let (after, peak) = rss(pid).context("reading the bot's /proc status")?;
    drop(child);
    Ok(RssResult {
        idle,
        after,
        peak,
        users,
        cpu_per_message: cpu / u32::try_from(users.max(1)).unwrap_or(u32::MAX),
        throughput: users as f64 / elapsed.as_secs_f64().max(1e-9),
    })
}
