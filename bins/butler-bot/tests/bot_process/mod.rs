//! The real `butler-bot` process for the process tests: started with an environment on the
//! test services, killed (SIGKILL, as an OOM kill or a power cut) or stopped (SIGTERM), its log
//! kept for the failure message. Shared by every test file that runs the binary; each uses a
//! part of it.

#![allow(dead_code, reason = "each test file uses a part of the shared set-up")]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use butler_testkit::llm_server::ScriptedLlm;
use butler_testkit::storage::TestStorage;
use butler_testkit::telegram::{FakeTelegram, DEFAULT_TOKEN};

/// How long a test waits for anything a process should do.
pub const WAIT: Duration = Duration::from_secs(60);

/// One `butler-bot run` process with its log.
pub struct BotProcess {
    /// The process.
    pub child: Child,
    log: PathBuf,
}

impl BotProcess {
    /// Starts `butler-bot run` with `env` only (plus `PATH`, `HOME`, `TMPDIR`), JSON logs at
    /// info into a temporary file named after `name`.
    pub fn spawn(name: &str, env: &[(String, String)]) -> Self {
        let log = std::env::temp_dir().join(format!(
            "butler-bot-{name}-{}-{}.log",
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

    /// What the process logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: no clean-up of any kind, as an OOM kill or a power cut.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM; the exit status once the process is gone (panics after `within`).
    pub async fn terminate(&mut self, within: Duration) -> std::process::ExitStatus {
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
        if std::thread::panicking() {
            // A failing test keeps the bot's log to read.
            eprintln!("the bot's log: {}", self.log.display());
        } else {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

/// The environment of a bot on the Bot API at `api_url` (the fake's token), `llm` and
/// `store`, open to everyone without limits, plus `extra` (later entries win).
pub fn bot_env(
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
    ];
    env.extend(store.env().into_iter().map(|(k, v)| (k.to_owned(), v)));
    env.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    env
}

/// Waits until the bot made `calls` `getUpdates` calls; panics with its log after [`WAIT`].
pub async fn wait_for_polling(telegram: &FakeTelegram, bot: &BotProcess, calls: usize) {
    if let Err(error) = telegram.wait_for_calls("getUpdates", calls, WAIT).await {
        panic!("the bot did not poll: {error}\n{}", bot.log_text());
    }
}

/// A free port of four digits: `config/systemd/butler-bot@.service` puts metrics on
/// `1<port>`, which must stay a valid port.
pub fn free_four_digit_port(seed: u16) -> u16 {
    (0..6000)
        .map(|i| 4000 + (seed.wrapping_mul(37).wrapping_add(i * 7)) % 6000)
        .find(|port| std::net::TcpListener::bind(("127.0.0.1", *port)).is_ok())
        .expect("a free four-digit port")
}

/// Two different free four-digit ports, for two replicas.
pub fn two_replica_ports() -> [u16; 2] {
    let seed = u16::try_from(std::process::id() % 6000).unwrap_or(0);
    let ports = [
        free_four_digit_port(seed),
        free_four_digit_port(seed.wrapping_add(3001)),
    ];
    assert_ne!(ports[0], ports[1]);
    ports
}

/// The `Environment=` lines of the replica unit, for instance `port`.
pub fn replica_unit_env(port: u16) -> Vec<(String, String)> {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../config/systemd/butler-bot@.service"
    ))
    .expect("read the replica unit");
    let env: Vec<(String, String)> = unit
        .lines()
        .filter_map(|line| line.strip_prefix("Environment="))
        .filter_map(|assignment| {
            let assignment = assignment.replace("%i", &port.to_string());
            let (name, value) = assignment.split_once('=')?;
            Some((name.to_owned(), value.to_owned()))
        })
        .collect();
    assert!(
        env.iter()
            .any(|(name, _)| name == "TELEGRAM_WEBHOOK_LISTEN"),
        "the unit sets the listen address: {env:?}"
    );
    env
}
