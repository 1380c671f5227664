//! `butler-bot run` as a separate process, end to end with real components only: the real
//! teloxide client polling the fake Telegram Bot API over HTTP, the scripted OpenAI-compatible
//! LLM server, a real Whisper speech-to-text server, and real storage — an SQLite file, or the
//! MongoDB-wire test server. The test reads what was stored through the production adapters,
//! scrapes `/metrics`, `/healthz` and `/readyz` over HTTP, checks the exposition with
//! `promtool`, and shuts the bot down with SIGTERM.
//!
//! One conversation per backend walks through everything a user can do: a text message, a
//! voice note, a model outage, a second user interleaved, a user off the allow-list, a reply
//! longer than Telegram's limit, and enough messages to trigger memory compression.

mod bot_process;

use std::collections::BTreeMap;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use butler_application::prompt::templates::FALLBACK_REPLY;
use butler_domain::ports::{UserMemoryRepository, UserProfileRepository};
use butler_domain::{Role, Source, UserId, UserMemoryEvent, UserProfile};
use butler_factory::settings::Settings;
use butler_factory::wiring;
use butler_testkit::llm_server::{ScriptedLlm, Step};
use butler_testkit::services::free_port;
use butler_testkit::services::voice_note;
use butler_testkit::services::WhisperServer;
use butler_testkit::storage::TestStorage;
use butler_testkit::telegram::{Failure, FakeTelegram, SentMessage, Voice};

use bot_process::BotProcess;

const ALICE: i64 = 1001;
const BOB: i64 = 1002;
const CAROL: i64 = 1003;

/// Generous: the first transcription loads the Whisper model on a shared 2-core machine.
const WAIT: Duration = Duration::from_secs(120);

/// The summariser's instructions (Russian profile) — how its requests are told apart.
const SUMMARISER_NEEDLE: &str = "Сожми разговор в сводку";
const SUMMARY: &str = "Алиса: просила напомнить купить молоко и хлеб; любит краткость.";
const ORDINARY_REPLY: &str = "Слушаюсь, сэр.";

/// Storage as the bot sees it (environment) and as the test reads it (adapters).
struct Backend {
    name: &'static str,
    env: Vec<(&'static str, String)>,
    profiles: Arc<dyn UserProfileRepository>,
    memory: Arc<dyn UserMemoryRepository>,
    /// Kept alive: it owns the database (a temporary SQLite file or a MongoDB database).
    _store: TestStorage,
}

async fn opened(store: TestStorage) -> Backend {
    let settings = Settings::from_sources(None, |name| store.var(name))
        .unwrap_or_else(|e| panic!("storage settings: {e}"));
    let storage = wiring::open_storage(&settings)
        .await
        .unwrap_or_else(|e| panic!("open the store the bot will use: {e}"));
    Backend {
        name: store.backend().name(),
        env: store.env(),
        profiles: storage.profiles,
        memory: storage.memory,
        _store: store,
    }
}

async fn sqlite() -> Backend {
    opened(TestStorage::sqlite().unwrap_or_else(|e| panic!("{e}"))).await
}

async fn mongo() -> Backend {
    opened(
        TestStorage::mongo("bot_e2e")
            .await
            .unwrap_or_else(|e| panic!("{e}")),
    )
    .await
}

impl Backend {
    async fn events(&self, user: i64) -> Vec<UserMemoryEvent> {
        self.memory
            .recent(UserId::new(user), 10_000, None)
            .await
            .expect("read stored events")
    }

    async fn profile(&self, user: i64) -> Option<UserProfile> {
        self.profiles
            .get(UserId::new(user))
            .await
            .expect("read the profile")
    }
}

/// The bot process and the fakes it talks to.
struct RunningBot {
    process: BotProcess,
    telegram: FakeTelegram,
    metrics: String,
}

impl RunningBot {
    async fn start(backend: &Backend, llm: &ScriptedLlm, whisper: &WhisperServer) -> Self {
        let telegram = FakeTelegram::start().await;
        let metrics = format!("127.0.0.1:{}", free_port());
        let mut env: Vec<(String, String)> = [
            ("TELEGRAM_BOT_TOKEN", telegram.token().to_owned()),
            ("TELEGRAM_API_URL", telegram.api_url()),
            ("ALLOWED_USER_IDS", format!("{ALICE},{BOB}")),
            // Step 6 sends a burst of 22 messages at once: room for it, a real bucket still.
            ("RATE_LIMIT_BURST", "100".to_owned()),
            ("LLM_BASE_URL", llm.base_url()),
            ("STT_BASE_URL", whisper.base_url()),
            ("STT_LANGUAGE", "en".to_owned()),
            ("STT_TIMEOUT_SECS", "180".to_owned()),
            ("METRICS_ADDR", metrics.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        env.extend(
            backend
                .env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone())),
        );
        let process = BotProcess::spawn(backend.name, &env);
        if let Err(error) = telegram.wait_for_calls("getUpdates", 1, WAIT).await {
            panic!(
                "the bot did not start polling: {error}\n{}",
                process.log_text()
            );
        }
        Self {
            process,
            telegram,
            metrics,
        }
    }

    async fn wait_for(&self, chat: i64, n: usize) -> Vec<SentMessage> {
        match self.telegram.wait_for_messages(chat, n, WAIT).await {
            Ok(sent) => sent,
            Err(error) => panic!("{error}\nbot log:\n{}", self.log_text()),
        }
    }

    fn log_text(&self) -> String {
        self.process.log_text()
    }

    async fn get(&self, path: &str) -> (u16, String) {
        let response = reqwest::get(format!("http://{}{path}", self.metrics))
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let status = response.status().as_u16();
        (status, response.text().await.expect("a readable body"))
    }

    /// SIGTERM, then the exit status and everything the bot logged.
    async fn stop(mut self) -> (ExitStatus, String) {
        let status = self.process.terminate(Duration::from_secs(30)).await;
        (status, self.log_text())
    }
}

/// `name{labels} value` lines of a Prometheus exposition.
fn samples(exposition: &str) -> BTreeMap<String, f64> {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            let (series, value) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("unparsable sample line {line:?}"));
            let value: f64 = value
                .parse()
                .unwrap_or_else(|e| panic!("bad value in {line:?}: {e}"));
            (series.to_owned(), value)
        })
        .collect()
}

fn sample(samples: &BTreeMap<String, f64>, series: &str) -> f64 {
    *samples
        .get(series)
        .unwrap_or_else(|| panic!("{series} missing from /metrics: {samples:#?}"))
}

/// `promtool check metrics` reads an exposition on stdin and rejects malformed ones.
fn promtool_accepts(exposition: &str) {
    use std::io::Write as _;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("promtool not found ({e}): install it with `apt-get install prometheus`")
        });
    child
        .stdin
        .take()
        .expect("promtool's stdin")
        .write_all(exposition.as_bytes())
        .expect("feed promtool");
    let out = child.wait_with_output().expect("promtool runs");
    assert!(
        out.status.success(),
        "promtool rejected the exposition: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Polls until `check` gives a value, or panics after `WAIT`.
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(started.elapsed() < WAIT, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn system_message(request: &serde_json::Value) -> String {
    request["messages"][0]["content"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// The whole conversation against one backend.
#[allow(clippy::too_many_lines)]
async fn conversation(backend: Backend) {
    let audio = voice_note("bought_milk")
        .unwrap_or_else(|e| panic!("{e}"))
        .bytes;
    let whisper = WhisperServer::shared()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let llm = ScriptedLlm::start().await;
    llm.set_default_reply(ORDINARY_REPLY);
    llm.route(SUMMARISER_NEEDLE, Step::reply(SUMMARY));
    let bot = RunningBot::start(&backend, &llm, whisper).await;
    let tg = &bot.telegram;
    let mut text_ok = 0.0;

    // 1. A text message: Alfred answers in the same chat, once, although Telegram's flood
    //    control rejects the first send; two events are stored.
    llm.push_reply("Добрый вечер, мисс Алиса. Чем могу служить?");
    tg.fail_next("sendMessage", 1, Failure::RetryAfter(1));
    tg.push_text(ALICE, ALICE, "Добрый вечер, Альфред. Меня зовут Алиса.");
    let sent = bot.wait_for(ALICE, 1).await;
    assert_eq!(sent[0].text, "Добрый вечер, мисс Алиса. Чем могу служить?");
    text_ok += 1.0;
    let events = backend.events(ALICE).await;
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0].role, Role::User);
    assert_eq!(
        events[0].content,
        "Добрый вечер, Альфред. Меня зовут Алиса."
    );
    assert_eq!(events[1].role, Role::Assistant);
    assert!(events.iter().all(|e| e.source == Source::Text));

    // 2. A voice note (real OGG/Opus speech, chat rather than a reminder request): downloaded,
    //    transcribed by Whisper, answered, stored with source=voice.
    llm.push_reply("Свежий хлеб и молоко — превосходный выбор, мисс.");
    tg.push_voice(ALICE, Voice::ogg(audio, 4));
    let sent = bot.wait_for(ALICE, 2).await;
    assert!(
        sent[1]
            .text
            .contains("Свежий хлеб и молоко — превосходный выбор, мисс."),
        "{sent:?}"
    );
    let events = backend.events(ALICE).await;
    assert_eq!(events.len(), 4);
    let heard = events[2].content.to_lowercase();
    assert!(
        heard.contains("milk") && heard.contains("bread"),
        "transcript {heard:?}"
    );
    assert!(events[2..].iter().all(|e| e.source == Source::Voice));
    assert!(llm
        .requests()
        .last()
        .and_then(|r| r.last_user_message().map(str::to_lowercase))
        .is_some_and(|m| m.contains("milk")));

    // 3. The model fails: the fallback reply, nothing stored, and the bot answers the next one.
    llm.push(Step::status(400, "the model is unwell"));
    tg.push_text(ALICE, ALICE, "Вы здесь?");
    let sent = bot.wait_for(ALICE, 3).await;
    assert_eq!(sent[2].text, FALLBACK_REPLY);
    assert_eq!(backend.events(ALICE).await.len(), 4, "nothing stored");

    // 4. Two users interleaved keep separate memories; Carol is not on the allow-list.
    llm.push_reply("Рад знакомству, мистер Боб.");
    llm.push_reply("Вас зовут Алиса, мисс.");
    tg.push_text(BOB, BOB, "Я Боб.");
    tg.push_text(ALICE, ALICE, "Как меня зовут?");
    tg.push_text(CAROL, CAROL, "Впустите меня!");
    bot.wait_for(BOB, 1).await;
    bot.wait_for(ALICE, 4).await;
    let refusal = bot.wait_for(CAROL, 1).await;
    text_ok += 2.0;
    let bob = backend.events(BOB).await;
    assert_eq!(bob.len(), 2);
    assert_eq!(bob[0].content, "Я Боб.");
    assert!(backend.events(CAROL).await.is_empty(), "{refusal:?}");
    assert!(backend.profile(CAROL).await.is_none());
    for request in llm.requests() {
        let body = request.body.to_string();
        assert!(
            !body.contains("Впустите меня"),
            "Carol never reached the model"
        );
        if body.contains("Я Боб.") {
            assert!(
                !body.contains("Алиса"),
                "Bob's prompt holds nothing of Alice's"
            );
        }
    }

    // 5. A 5000-character reply arrives as two messages, in order.
    let long: String = "Позвольте доложить обстоятельно. ".repeat(160);
    assert!(long.chars().count() > 5000);
    llm.push_reply(&long);
    tg.push_text(ALICE, ALICE, "Расскажите всё.");
    let sent = bot.wait_for(ALICE, 6).await;
    text_ok += 1.0;
    assert!(sent[4].text.chars().count() <= 4096 && sent[5].text.chars().count() <= 4096);
    assert_eq!(
        format!("{}{}", sent[4].text, sent[5].text).replace(char::is_whitespace, ""),
        long.replace(char::is_whitespace, "")
    );

    // 6. Enough messages to pass the threshold (more than 50 events): compression folds the
    //    older ones into a summary on the profile and keeps the newest 20.
    let stored = backend.events(ALICE).await.len();
    let needed = (51 - stored).div_ceil(2);
    let answered = tg.sent_messages(ALICE).len();
    for i in 0..needed {
        tg.push_text(ALICE, ALICE, &format!("Сообщение номер {i}"));
    }
    bot.wait_for(ALICE, answered + needed).await;
    text_ok += needed as f64;
    // The summary is saved first, then the folded events are deleted: wait for both.
    let (profile, left) = eventually("the summary on the profile and old events gone", || async {
        let profile = backend.profile(ALICE).await?;
        profile.memory_summary.as_ref()?;
        let left = backend.events(ALICE).await;
        (left.len() <= 20).then_some((profile, left))
    })
    .await;
    assert_eq!(profile.memory_summary.as_deref(), Some(SUMMARY));
    assert!(
        (18..=20).contains(&left.len()),
        "the newest 20 events (whole turns) are kept, got {}",
        left.len()
    );
    assert_eq!(
        left.last().map(|e| e.content.as_str()),
        Some(ORDINARY_REPLY),
        "the newest events survive"
    );

    // 7. The next prompt carries the summary.
    tg.push_text(ALICE, ALICE, "Что вы обо мне помните?");
    bot.wait_for(ALICE, answered + needed + 1).await;
    text_ok += 1.0;
    let last = llm
        .requests()
        .last()
        .map(|r| r.body.clone())
        .expect("a request");
    assert!(
        system_message(&last).contains(SUMMARY),
        "summary in the system message: {}",
        system_message(&last)
    );
    assert!(backend.events(ALICE).await.len() <= 22);

    // 8. Metrics, health and readiness over HTTP.
    let (status, _) = bot.get("/healthz").await;
    assert_eq!(status, 200);
    let (status, ready) = bot.get("/readyz").await;
    assert_eq!(status, 200, "{ready}");
    let (status, exposition) = bot.get("/metrics").await;
    assert_eq!(status, 200);
    promtool_accepts(&exposition);
    let m = samples(&exposition);
    let text_ok_seen = sample(
        &m,
        r#"personalized_requests_total{source="text",status="ok"}"#,
    );
    assert_eq!(text_ok_seen, text_ok);
    assert_eq!(
        sample(
            &m,
            r#"personalized_requests_total{source="voice",status="ok"}"#
        ),
        1.0
    );
    assert_eq!(
        sample(
            &m,
            r#"personalized_requests_total{source="text",status="error"}"#
        ),
        1.0
    );
    assert_eq!(
        sample(&m, r#"user_memory_events_total{role="user"}"#),
        text_ok + 1.0
    );
    assert_eq!(
        sample(&m, r#"user_memory_events_total{role="assistant"}"#),
        text_ok + 1.0
    );
    assert!(sample(&m, r#"personalized_memory_compressions_total{status="ok"}"#) >= 1.0);
    assert!(sample(&m, "user_memory_compressions_total") >= 1.0);
    assert_eq!(
        sample(&m, r#"stt_request_duration_seconds_count{outcome="ok"}"#),
        1.0
    );
    assert!(sample(&m, r#"llm_request_duration_seconds_count{outcome="error"}"#) >= 1.0);
    assert!(
        sample(&m, r#"llm_request_duration_seconds_count{outcome="ok"}"#) >= text_ok + 2.0,
        "replies and the summariser"
    );
    assert_eq!(sample(&m, "telegram_send_errors_total"), 1.0);
    assert_eq!(
        sample(&m, "personalized_prompt_tokens_count"),
        text_ok + 2.0
    );
    assert!(sample(&m, "user_profile_reads_total") >= text_ok);
    assert!(sample(&m, "user_profile_writes_total") >= 1.0);
    assert!(m.keys().any(|k| k.starts_with("butler_build_info{")));
    // Labels only: a sample's value (a latency sum, say) may contain the digits of an id.
    let labels: Vec<&str> = exposition
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| Some(&l[l.find('{')?..=l.rfind('}')?]))
        .collect();
    assert!(
        !labels.iter().any(|l| l.contains(&ALICE.to_string())),
        "no user ids in labels: {labels:?}"
    );
    eprintln!(
        "[{}] /metrics after the conversation:\n{}",
        backend.name,
        exposition
            .lines()
            .filter(|l| !l.starts_with('#') && !l.contains("_bucket{"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    // 9. SIGTERM: a clean exit; the log holds no secret and no message text.
    let token = tg.token().to_owned();
    let (status, log) = bot.stop().await;
    assert!(status.success(), "exit {status:?}\n{log}");
    assert!(!log.contains(&token), "the bot token leaked into the log");
    assert!(
        !log.contains("Меня зовут Алиса"),
        "message text at info level"
    );
    let mut overhead: Vec<u64> = log
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|v| v["fields"]["message"] == "reply")
        .filter(|v| v["fields"]["source"] == "text")
        .filter_map(|v| {
            let total = v["fields"]["latency_ms"].as_u64()?;
            let llm = v["fields"]["llm_ms"].as_u64()?;
            Some(total.saturating_sub(llm))
        })
        .collect();
    assert!(
        overhead.len() as f64 >= text_ok,
        "one info line per reply:\n{log}"
    );
    overhead.sort_unstable();
    eprintln!(
        "[{}] per-message time in the use case excluding the model, over {} text replies: \
         p50 {} ms, p99 {} ms, max {} ms",
        backend.name,
        overhead.len(),
        percentile(&overhead, 0.5),
        percentile(&overhead, 0.99),
        overhead.last().copied().unwrap_or_default()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bot_process_serves_a_whole_conversation_on_sqlite() {
    conversation(sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bot_process_serves_a_whole_conversation_on_mongodb() {
    conversation(mongo().await).await;
}
