//! Starting and stopping the real `butler-bot` process at the edges: a webhook replica that
//! starts while the Bot API is unreachable, and a stop that must not wait for ever.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use butler_testkit::llm_server::ScriptedLlm;
use butler_testkit::storage::TestStorage;
use butler_testkit::telegram::{FakeTelegram, DEFAULT_TOKEN};

const REPLY_PREFIX: &str = "Ответ: ";
const WAIT: Duration = Duration::from_secs(60);
const SECRET: &str = "lifecycle-webhook-secret";
const ALICE: i64 = 4101;

/// One `butler-bot run` process with its log.
struct BotProcess {
    child: Child,
    log: PathBuf,
}

impl BotProcess {
    fn spawn(name: &str, env: &[(String, String)]) -> Self {
        let log = std::env::temp_dir().join(format!(
            "lifecycle-{name}-{}-{}.log",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        let log_file = std::fs::File::create(&log).expect("create the bot's log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_butler-bot"));
        command.env_clear();
        for var in ["PATH", "HOME", "TMPDIR"] {
            if let Some(value) = std::env::var_os(var) {
                command.env(var, value);
            }
        }
        let child = command
            .arg("run")
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("start butler-bot");
        Self { child, log }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM; the exit status once the process is gone (panics after `within`).
    async fn terminate(&mut self, within: Duration) -> std::process::ExitStatus {
        match butler_testkit::services::sigterm(&mut self.child, within).await {
            Some(status) => status,
            None => panic!(
                "the bot did not stop within {within:?} of SIGTERM\n{}",
                self.log_text()
            ),
        }
    }
}

impl Drop for BotProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The environment of a bot on the Bot API at `api_url`, `llm` and `store`, plus `extra`.
fn bot_env(
    api_url: &str,
    llm: &ScriptedLlm,
    store: &TestStorage,
    extra: &[(&str, &str)],
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = vec![
        ("TELEGRAM_BOT_TOKEN".into(), DEFAULT_TOKEN.into()),
        ("TELEGRAM_API_URL".into(), api_url.into()),
        ("ALLOWED_USER_IDS".into(), "*".into()),
        ("RATE_LIMIT_PER_MINUTE".into(), "0".into()),
        ("DAILY_MESSAGE_QUOTA".into(), "0".into()),
        ("LLM_BASE_URL".into(), llm.base_url()),
        ("MEMORY_FACTS_ENABLED".into(), "false".into()),
    ];
    env.extend(store.env().into_iter().map(|(k, v)| (k.to_owned(), v)));
    env.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    env
}

/// A message update as Telegram would POST it.
fn update_json(update_id: i64, user: i64, text: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "update_id": update_id,
        "message": FakeTelegram::message_object(
            update_id,
            user,
            user,
            serde_json::json!({ "text": text }),
        ),
    }))
    .expect("JSON")
}

/// POSTs `body` to the webhook at `url` with the secret, retrying while nothing listens yet
/// (the process is starting); the status, or a panic with the log after [`WAIT`].
async fn post_when_listening(url: &str, body: Vec<u8>, bot: &mut BotProcess) -> u16 {
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("an HTTP client");
    let started = Instant::now();
    loop {
        let sent = client
            .post(url)
            .header("content-type", "application/json")
            .header("X-Telegram-Bot-Api-Secret-Token", SECRET)
            .body(body.clone())
            .send()
            .await;
        match sent {
            Ok(response) => return response.status().as_u16(),
            Err(error) => {
                if let Ok(Some(status)) = bot.child.try_wait() {
                    panic!(
                        "the bot exited ({status}) instead of serving the webhook\n{}",
                        bot.log_text()
                    );
                }
                assert!(
                    started.elapsed() < WAIT,
                    "the webhook never answered: {error}\n{}",
                    bot.log_text()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// The inbox backlog `/readyz` reports.
async fn backlog(metrics: &str) -> serde_json::Value {
    let readyz = reqwest::get(format!("http://{metrics}/readyz"))
        .await
        .expect("GET /readyz")
        .text()
        .await
        .expect("the /readyz body");
    let readyz: serde_json::Value = serde_json::from_str(&readyz).expect("/readyz is JSON");
    readyz["inbox"]["backlog"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_replica_starts_and_stores_updates_while_the_bot_api_is_unreachable() {
    let llm = ScriptedLlm::start().await;
    llm.echo(REPLY_PREFIX, Duration::ZERO);
    let store = TestStorage::sqlite().unwrap_or_else(|e| panic!("{e}"));
    // The Bot API's address, with nothing listening on it yet.
    let api_port = butler_testkit::services::free_port();
    let port = butler_testkit::services::free_port();
    let metrics = format!("127.0.0.1:{}", butler_testkit::services::free_port());
    let url = format!("http://127.0.0.1:{port}/telegram/hook");
    let listen = format!("127.0.0.1:{port}");
    let env = bot_env(
        &format!("http://127.0.0.1:{api_port}/"),
        &llm,
        &store,
        &[
            ("TELEGRAM_WEBHOOK_URL", &url),
            ("TELEGRAM_WEBHOOK_LISTEN", &listen),
            ("TELEGRAM_WEBHOOK_SECRET", SECRET),
            ("METRICS_ADDR", &metrics),
            ("TELEGRAM_WEBHOOK_MAX_CONNECTIONS", "7"),
        ],
    );
    let mut bot = BotProcess::spawn("webhook-without-api", &env);

    let status = post_when_listening(&url, update_json(500, ALICE, "Вы здесь?"), &mut bot).await;
    assert_eq!(status, 200, "{}", bot.log_text());
    assert_eq!(
        backlog(&metrics).await,
        1,
        "stored and waiting: {}",
        bot.log_text()
    );
    assert_eq!(
        llm.served(),
        0,
        "nothing is answered while Telegram is away"
    );

    // The Bot API comes back: the webhook is set and the stored update answered.
    let telegram = FakeTelegram::start_on_port(api_port).await;
    if let Err(error) = telegram.wait_for_messages(ALICE, 1, WAIT).await {
        panic!("{error}\n{}", bot.log_text());
    }
    assert_eq!(
        telegram.sent_messages(ALICE)[0].text,
        format!("{REPLY_PREFIX}Вы здесь?")
    );
    if let Err(error) = telegram.wait_for_calls("setWebhook", 1, WAIT).await {
        panic!("{error}\n{}", bot.log_text());
    }
    let set = &telegram.calls_to("setWebhook")[0];
    assert_eq!(set.str_param("url"), Some(url.as_str()));
    assert_eq!(
        set.params["max_connections"],
        serde_json::json!(7),
        "TELEGRAM_WEBHOOK_MAX_CONNECTIONS reaches Telegram"
    );
    let scrape = reqwest::get(format!("http://{metrics}/metrics"))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("the scrape");
    assert!(
        scrape.lines().any(
            |l| l.starts_with("telegram_setup_failures_total{method=\"getMe\"}")
                && !l.ends_with(" 0")
        ),
        "the failed getMe calls were counted:\n{scrape}"
    );
    let status = bot.terminate(Duration::from_secs(30)).await;
    assert!(status.success(), "{status}\n{}", bot.log_text());
}
