//! The reply path end to end, in one process: the fake Telegram Bot API and the scripted LLM
//! run on a one-thread "harness" runtime; the bot — wired by the factory exactly as
//! `butler-bot` wires it, with the real teloxide client, `PersonalizedReplyUseCase`, the
//! OpenAI-compatible LLM client and the chosen store — runs on its own two-thread "bot"
//! runtime (what `#[tokio::main]` gives `butler-bot` on 2 cores). Thread names let the bot's
//! CPU time be told apart from the fakes'.
//!
//! Each simulated user sends a message, waits for the reply (`sendMessage` at the fake
//! server), and sends the next one — so each user's messages are in order — either at once
//! (throughput) or on a fixed pace (latency under a realistic load).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use butler_application::{ReplyInput, ReplyObserver, ReplyOutput};
use butler_domain::UserId;
use butler_factory::metered::ReplyMetrics;
use butler_factory::wiring::{self, App};
use butler_presentation::telegram::{
    run_bot, Access, BotConfig, BotDeps, BotError, BotSettings, Delivery, GroupConfig, Limits,
    WebhookConfig,
};
use butler_testkit::llm_server::ScriptedLlm;
use butler_testkit::telegram::FakeTelegram;
use futures::stream::{self, StreamExt as _, TryStreamExt as _};
use secrecy::SecretString;
use tokio::runtime::Runtime;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::backend::{open_timed, StoreEnv};
use crate::cpu::threads_cpu;
use crate::data;
use crate::stats::Durations;
use crate::timing::{CallTimer, TimedInbox};

/// Thread-name prefix of the bot's runtime.
pub const BOT_THREADS: &str = "bot";

/// CPU time of the bot so far: its runtime's threads and the SQLite store's writer thread (only
/// the bot opens a store in this process).
fn bot_cpu() -> Duration {
    threads_cpu(BOT_THREADS) + threads_cpu(butler_infrastructure::sqlite::WRITER_THREAD)
}

/// The group chat the benchmarked bot works in (`ALLOWED_CHAT_IDS`).
pub const BENCH_GROUP: i64 = -100_777;

/// How long one reply may take before the run is declared broken.
const REPLY_DEADLINE: Duration = Duration::from_secs(60);

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The two runtimes.
pub struct Runtimes {
    /// Fake servers and simulated users.
    pub harness: Runtime,
    /// The bot under test.
    pub bot: Runtime,
}

impl Runtimes {
    /// A one-thread harness runtime and a two-thread bot runtime.
    ///
    /// # Errors
    /// If the threads cannot be started.
    pub fn new() -> std::io::Result<Self> {
        Ok(Self {
            harness: tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("harness")
                .enable_all()
                .build()?,
            bot: tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name(BOT_THREADS)
                // Blocking threads (SQLite) live on, so their CPU time is still counted.
                .thread_keep_alive(Duration::from_secs(3600))
                .enable_all()
                .build()?,
        })
    }
}

/// The fake Bot API and LLM servers, and the routing of delivered replies to the users
/// waiting for them.
pub struct Fakes {
    /// The fake Bot API server.
    pub telegram: Arc<FakeTelegram>,
    /// The scripted LLM server (answers at once with [`data::REPLY`]).
    pub llm: Arc<ScriptedLlm>,
    routes: Arc<Mutex<HashMap<i64, mpsc::UnboundedSender<Instant>>>>,
}

impl Fakes {
    /// Starts both servers on the current (harness) runtime.
    pub async fn start() -> Self {
        let telegram = Arc::new(FakeTelegram::start().await);
        let llm = Arc::new(ScriptedLlm::start().await);
        llm.set_recording(false);
        llm.set_default_reply(data::REPLY);
        let routes: Arc<Mutex<HashMap<i64, mpsc::UnboundedSender<Instant>>>> = Arc::default();
        let mut delivered = telegram.subscribe_delivered();
        let table = routes.clone();
        tokio::spawn(async move {
            while let Some(message) = delivered.recv().await {
                if let Some(user) = lock(&table).get(&message.chat_id) {
                    let _ = user.send(message.at);
                }
            }
        });
        Self {
            telegram,
            llm,
            routes,
        }
    }

    /// Replies to `chat_id` from now on arrive on the returned channel.
    pub fn route(&self, chat_id: i64) -> mpsc::UnboundedReceiver<Instant> {
        self.route_many(&[chat_id])
    }

    /// Replies to any of `chat_ids` from now on arrive on the returned channel.
    pub fn route_many(&self, chat_ids: &[i64]) -> mpsc::UnboundedReceiver<Instant> {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut routes = lock(&self.routes);
        for chat_id in chat_ids {
            routes.insert(*chat_id, tx.clone());
        }
        rx
    }
}

/// What the reply use case reported for each user's latest message.
#[derive(Default)]
pub struct ReplyLog(Mutex<HashMap<UserId, (Duration, Duration)>>);

impl ReplyLog {
    /// `(llm_time, use-case time)` of the user's latest reply.
    pub fn take(&self, user: UserId) -> Option<(Duration, Duration)> {
        lock(&self.0).remove(&user)
    }
}

impl ReplyObserver for ReplyLog {
    fn observe(&self, input: &ReplyInput, output: &ReplyOutput, elapsed: Duration) {
        lock(&self.0).insert(input.user_id, (output.llm_time, elapsed));
        // What production records for every reply (metrics and the log line).
        ReplyMetrics.observe(input, output, elapsed);
    }
}

/// One load: `users` users, each in a closed loop (next message after the reply), optionally
/// paced to one message per `pace`.
#[derive(Debug, Clone)]
pub struct Load {
    /// Simulated users.
    pub users: usize,
    /// How long messages are sent.
    pub duration: Duration,
    /// Replies in the first `warmup` are not counted.
    pub warmup: Duration,
    /// `None` = the next message right after the reply; `Some(p)` = one message per `p`.
    pub pace: Option<Duration>,
}

/// One answered message.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Message injected → reply accepted by the fake Bot API.
    pub e2e: Duration,
    /// Waiting for the model, as the reply use case measured it (HTTP round trip included).
    pub llm: Duration,
    /// Time in storage calls for this message (overlaps once).
    pub db: Duration,
}

/// What a load measured within its window.
#[derive(Debug, Clone)]
pub struct LoadResult {
    /// Messages answered within the window.
    pub samples: Vec<Sample>,
    /// The window's length.
    pub window: Duration,
    /// CPU time of the bot's threads within the window.
    pub bot_cpu: Duration,
    /// CPU time of the whole benchmark process within the window.
    pub process_cpu: Duration,
    /// Time in inbox calls and their number, over the whole run (warm-up included).
    pub inbox: (Duration, u64),
    /// Messages answered over the whole run (warm-up included): what `inbox` divides by.
    pub answered: u64,
}

impl LoadResult {
    /// Messages answered per second.
    #[must_use]
    pub fn throughput(&self) -> f64 {
        self.samples.len() as f64 / self.window.as_secs_f64().max(1e-9)
    }

    /// End-to-end latency.
    #[must_use]
    pub fn latency(&self) -> Durations {
        Durations::new(self.samples.iter().map(|s| s.e2e).collect())
    }

    /// Everything but the model: end to end minus LLM time.
    #[must_use]
    pub fn overhead(&self) -> Durations {
        Durations::new(
            self.samples
                .iter()
                .map(|s| s.e2e.saturating_sub(s.llm))
                .collect(),
        )
    }

    /// Time in storage calls.
    #[must_use]
    pub fn db(&self) -> Durations {
        Durations::new(self.samples.iter().map(|s| s.db).collect())
    }

    /// Overhead minus storage: our code, the HTTP stacks and scheduling.
    #[must_use]
    pub fn ours(&self) -> Durations {
        Durations::new(
            self.samples
                .iter()
                .map(|s| s.e2e.saturating_sub(s.llm).saturating_sub(s.db))
                .collect(),
        )
    }

    /// Bot CPU time per answered message.
    #[must_use]
    pub fn bot_cpu_per_message(&self) -> Duration {
        self.bot_cpu / u32::try_from(self.samples.len().max(1)).unwrap_or(u32::MAX)
    }

    /// Inbox calls per answered message, and the storage time they took per message.
    #[must_use]
    pub fn inbox_per_message(&self) -> (f64, Duration) {
        let answered = self.answered.max(1);
        (
            self.inbox.1 as f64 / answered as f64,
            self.inbox.0 / u32::try_from(answered).unwrap_or(u32::MAX),
        )
    }

    /// Whole-process CPU time (bot + fakes + users) per answered message.
    #[must_use]
    pub fn process_cpu_per_message(&self) -> Duration {
        self.process_cpu / u32::try_from(self.samples.len().max(1)).unwrap_or(u32::MAX)
    }
}

/// How the benchmarked bot receives updates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Receiving {
    /// `getUpdates` long polling (the default).
    Polling,
    /// The fake Bot API POSTs each update to the bot's webhook listener.
    Webhook,
}

/// The bot, running in this process against the fakes.
pub struct InProcessBot {
    /// The fake servers.
    pub fakes: Fakes,
    /// The wired application (its storage is timed).
    pub app: App,
    /// Storage call times (profiles and memory).
    pub db: Arc<CallTimer>,
    /// Inbox call times (store, claim, renew, complete).
    pub inbox: Arc<CallTimer>,
    replies: Arc<ReplyLog>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), BotError>>,
    next_user: i64,
}

impl InProcessBot {
    /// Starts the fakes and the bot on `store`, with production settings otherwise.
    ///
    /// # Errors
    /// If wiring fails or the bot does not start polling.
    pub fn start(rt: &Runtimes, store: &StoreEnv) -> anyhow::Result<Self> {
        Self::start_receiving(rt, store, Receiving::Polling)
    }

    /// As [`Self::start`], receiving updates as `receiving` says.
    ///
    /// # Errors
    /// If wiring fails or the bot does not start receiving.
    pub fn start_receiving(
        rt: &Runtimes,
        store: &StoreEnv,
        receiving: Receiving,
    ) -> anyhow::Result<Self> {
        Self::start_with(rt, store, receiving, &[])
    }

    /// As [`Self::start_receiving`], with `extra` settings; with `LLM_GGUF_PATH` among them
    /// the bot answers with the embedded engine instead of the scripted LLM server.
    ///
    /// # Errors
    /// If wiring fails or the bot does not start receiving.
    pub fn start_with(
        rt: &Runtimes,
        store: &StoreEnv,
        receiving: Receiving,
        extra: &[(&str, String)],
    ) -> anyhow::Result<Self> {
        let fakes = rt.harness.block_on(Fakes::start());
        let mut extra = extra.to_vec();
        if !extra.iter().any(|(name, _)| *name == "LLM_GGUF_PATH") {
            extra.push(("LLM_BASE_URL", fakes.llm.base_url()));
        }
        let settings = store.settings(&extra)?;
        let db = CallTimer::new();
        let inbox_timer = CallTimer::new();
        let delivery = match receiving {
            Receiving::Polling => Delivery::Polling,
            Receiving::Webhook => {
                let listen = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
                Delivery::Webhook(WebhookConfig {
                    max_connections: 100,
                    ..WebhookConfig::new(
                        url::Url::parse(&format!("http://{listen}/telegram/webhook"))?,
                        listen,
                        SecretString::from("bench-webhook-secret"),
                    )
                })
            }
        };
        let replies = Arc::new(ReplyLog::default());
        let shutdown = CancellationToken::new();
        let (app, task) = rt.bot.block_on(async {
            let storage = open_timed(&settings, &db).await?;
            let engine = wiring::engine(&settings)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let mut app = wiring::assemble(&settings, storage, engine.llm, engine.counter, None)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            app.reply = Arc::new((*app.reply).clone().with_observer(replies.clone()));
            let inbox = app
                .storage
                .inbox_for_bot()
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let inbox = Arc::new(TimedInbox {
                inner: inbox,
                timer: inbox_timer.clone(),
            });
            let deps = BotDeps {
                reply: app.reply.clone(),
                observe: app.observe.clone(),
                stt: None,
                profiles: app.storage.profiles.clone(),
                inbox,
                observer: Some(Arc::new(butler_factory::metered::TelegramMetrics)),
                reminders: None,
            };
            let bot_settings = BotSettings {
                token: fakes.telegram.token().to_owned().into(),
                api_url: Some(fakes.telegram.api_url()),
                delivery,
                // Open to the benchmark's users, with no limits: the load is the point.
                config: BotConfig {
                    access: Access::Everyone,
                    limits: Limits::none(),
                    groups: GroupConfig {
                        allowed_chats: vec![BENCH_GROUP],
                        ..GroupConfig::default()
                    },
                    ..BotConfig::default()
                },
            };
            let task = tokio::spawn(run_bot(bot_settings, deps, shutdown.clone()));
            anyhow::Ok((app, task))
        })?;
        let ready_call = match receiving {
            Receiving::Polling => "getUpdates",
            Receiving::Webhook => "setWebhook",
        };
        rt.harness
            .block_on(
                fakes
                    .telegram
                    .wait_for_calls(ready_call, 1, Duration::from_secs(30)),
            )
            .context("the bot did not start receiving from the fake Bot API")?;
        Ok(Self {
            fakes,
            app,
            db,
            inbox: inbox_timer,
            replies,
            shutdown,
            task,
            next_user: 1_000,
        })
    }

    /// `n` new user ids, each with a full memory stored: 20 events and a summary.
    ///
    /// # Errors
    /// If storage fails.
    pub fn seeded_users(&mut self, rt: &Runtimes, n: usize) -> anyhow::Result<Vec<i64>> {
        let first = self.next_user;
        self.next_user += i64::try_from(n).unwrap_or(i64::MAX);
        let users: Vec<i64> = (first..first + i64::try_from(n).unwrap_or(0)).collect();
        let profiles = self.app.storage.profiles.clone();
        let memory = self.app.storage.memory.clone();
        rt.bot.block_on(
            stream::iter(users.clone())
                .map(|u| {
                    let (profiles, memory) = (profiles.clone(), memory.clone());
                    async move { data::seed_user(&profiles, &memory, UserId::new(u), 20, true).await }
                })
                .buffer_unordered(16)
                .try_collect::<()>(),
        )?;
        self.db.reset();
        self.inbox.reset();
        Ok(users)
    }

    /// Runs `load` with freshly seeded users.
    ///
    /// # Errors
    /// If a reply does not arrive within a minute.
    pub fn run(&mut self, rt: &Runtimes, load: &Load) -> anyhow::Result<LoadResult> {
        let users = self.seeded_users(rt, load.users)?;
        let result = rt.harness.block_on(self.drive(&users, load));
        // Compressions the replies started finish before the next load.
        rt.bot.block_on(self.app.compressor.drain());
        result
    }

    async fn drive(&self, users: &[i64], load: &Load) -> anyhow::Result<LoadResult> {
        let start = Instant::now() + Duration::from_millis(20);
        let measure_from = start + load.warmup;
        let stop_at = measure_from + load.duration;
        let cpu = tokio::spawn(async move {
            tokio::time::sleep_until(measure_from.into()).await;
            let before = (bot_cpu(), threads_cpu(""));
            tokio::time::sleep_until(stop_at.into()).await;
            let after = (bot_cpu(), threads_cpu(""));
            (
                after.0.saturating_sub(before.0),
                after.1.saturating_sub(before.1),
            )
        });
        let n = u32::try_from(users.len().max(1)).unwrap_or(u32::MAX);
        let mut tasks = tokio::task::JoinSet::new();
        for (i, &user) in users.iter().enumerate() {
            let replies = self.fakes.route(user);
            let telegram = self.fakes.telegram.clone();
            let log = self.replies.clone();
            let db = self.db.clone();
            let pace = load.pace;
            let offset = pace.map_or(Duration::ZERO, |p| p * u32::try_from(i).unwrap_or(0) / n);
            tasks.spawn(user_loop(
                UserLoop {
                    user,
                    start: start + offset,
                    stop_at,
                    pace,
                },
                replies,
                telegram,
                log,
                db,
            ));
        }
        let mut samples = Vec::new();
        while let Some(done) = tasks.join_next().await {
            let user_samples = done.context("a simulated user panicked")??;
            samples.extend(
                user_samples
                    .into_iter()
                    .filter(|(at, _)| *at >= measure_from && *at <= stop_at)
                    .map(|(_, s)| s),
            );
        }
        let (bot_cpu, process_cpu) = cpu.await.context("CPU sampler")?;
        let answered = u64::try_from(self.replies_sent()).unwrap_or(u64::MAX);
        Ok(LoadResult {
            samples,
            window: load.duration,
            bot_cpu,
            process_cpu,
            inbox: self.inbox.total(),
            answered,
        })
    }

    /// Replies the fake Bot API accepted so far.
    fn replies_sent(&self) -> usize {
        self.fakes.telegram.all_sent_messages().len()
    }

    /// Graceful shutdown.
    ///
    /// # Errors
    /// If the bot reported an error or did not stop within 30 s.
    pub fn stop(self, rt: &Runtimes) -> anyhow::Result<()> {
        self.shutdown.cancel();
        rt.bot.block_on(async {
            tokio::time::timeout(Duration::from_secs(30), self.task)
                .await
                .context("the bot did not stop within 30 s")?
                .context("the bot task panicked")?
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            self.app.compressor.drain().await;
            anyhow::Ok(())
        })
    }
}

struct UserLoop {
    user: i64,
    start: Instant,
    stop_at: Instant,
    pace: Option<Duration>,
}

async fn user_loop(
    plan: UserLoop,
    mut replies: mpsc::UnboundedReceiver<Instant>,
    telegram: Arc<FakeTelegram>,
    log: Arc<ReplyLog>,
    db: Arc<CallTimer>,
) -> anyhow::Result<Vec<(Instant, Sample)>> {
    let user_id = UserId::new(plan.user);
    let mut samples = Vec::new();
    tokio::time::sleep_until(plan.start.into()).await;
    let mut k = 0_u32;
    while Instant::now() < plan.stop_at {
        let text = data::user_text(plan.user, k as usize);
        let sent = Instant::now();
        telegram.push_text(plan.user, plan.user, &text);
        let arrived = tokio::time::timeout(REPLY_DEADLINE, replies.recv())
            .await
            .ok()
            .flatten()
            .with_context(|| {
                format!(
                    "user {}: no reply to message {k} within {REPLY_DEADLINE:?}",
                    plan.user
                )
            })?;
        let (llm, _) = log.take(user_id).unwrap_or_default();
        samples.push((
            arrived,
            Sample {
                e2e: arrived.saturating_duration_since(sent),
                llm,
                db: db.take(user_id),
            },
        ));
        k += 1;
        if let Some(pace) = plan.pace {
            tokio::time::sleep_until((plan.start + pace * k).into()).await;
        }
    }
    Ok(samples)
}
