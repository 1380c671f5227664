//! Webhook mode end to end: the bot's real listener on a loopback port, the fake Bot API
//! delivering updates to it as Telegram does (a POST per update, retried until `2xx`), and raw
//! TCP clients where a test needs to control exactly what is sent and when.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;

use butler_presentation::telegram::{
    run_bot, Access, BotConfig, BotDeps, BotError, BotSettings, Delivery, WebhookConfig,
};
use butler_testkit::telegram::FakeTelegram;
use secrecy::SecretString;
use support::{test_config, FakeWorld, WAIT};
use tokio_util::sync::CancellationToken;

const ALICE: i64 = 1001;
const BOB: i64 = 2002;
const SECRET: &str = "webhook-secret_for-the-tests";
const PATH: &str = "/telegram/hook";

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
}

/// The webhook settings for a bot listening on `listen`.
fn webhook(listen: SocketAddr) -> WebhookConfig {
    WebhookConfig {
        url: url::Url::parse(&format!("http://{listen}{PATH}")).expect("a valid URL"),
        listen,
        secret: SecretString::from(SECRET),
        max_connections: 10,
    }
}

/// A bot in webhook mode on the fake Bot API at `api_url`.
struct WebhookBot {
    listen: SocketAddr,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), BotError>>,
}

impl WebhookBot {
    fn start(api_url: String, token: &str, deps: BotDeps, config: BotConfig) -> Self {
        let listen = free_addr();
        let settings = BotSettings {
            token: token.to_owned().into(),
            api_url: Some(api_url),
            delivery: Delivery::Webhook(webhook(listen)),
            config,
        };
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run_bot(settings, deps, shutdown.clone()));
        Self {
            listen,
            shutdown,
            task,
        }
    }

    /// Starts on `telegram` and waits until the webhook is set there.
    async fn start_on(telegram: &FakeTelegram, deps: BotDeps, config: BotConfig) -> Self {
        let bot = Self::start(telegram.api_url(), telegram.token(), deps, config);
        if let Err(error) = telegram.wait_for_calls("setWebhook", 1, WAIT).await {
            let outcome = if bot.task.is_finished() {
                format!("{:?}", bot.task.await)
            } else {
                "still running".to_owned()
            };
            panic!("the bot did not set its webhook: {error}; bot {outcome}");
        }
        bot
    }

    async fn stop(self) -> Result<(), BotError> {
        self.shutdown.cancel();
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("the bot stops within the wait")
            .expect("the bot task does not panic")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_webhook_too_nothing_of_a_user_off_the_allow_list_is_stored() {
    let world = FakeWorld::default();
    let telegram = Arc::new(FakeTelegram::start().await);
    let config = BotConfig {
        access: Access::Only(vec![ALICE.into()]),
        ..test_config()
    };
    let bot = WebhookBot::start_on(&telegram, world.deps(), config).await;

    telegram.push_text(BOB, BOB, "Привет");
    telegram.push_text(BOB, -100_900, "Всем привет");
    let alices = telegram.push_text(ALICE, ALICE, "Добрый день");
    telegram.wait_for_messages(ALICE, 1, WAIT).await.unwrap();
    telegram.wait_for_messages(BOB, 1, WAIT).await.unwrap();
    telegram.wait_until_all_confirmed(WAIT).await.unwrap();

    assert_eq!(
        world.inbox.stored_update_ids(),
        vec![alices],
        "every update was delivered and acknowledged, only the allowed one stored"
    );
    assert!(
        telegram.sent_messages(-100_900).is_empty(),
        "silent in groups"
    );
    assert!(world.events(BOB).is_empty());
    bot.stop().await.unwrap();
}
