//! Webhook mode end to end: the bot's real listener on a loopback port, the fake Bot API
//! delivering updates to it as Telegram does (a POST per update, retried until `2xx`), and raw
//! TCP clients where a test needs to control exactly what is sent and when.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use butler_presentation::telegram::{
    run_bot, Access, BotConfig, BotDeps, BotError, BotSettings, Delivery, WebhookConfig,
};
use butler_testkit::telegram::{Failure, FakeTelegram};
use secrecy::SecretString;
use support::{test_config, FakeWorld, WAIT};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_util::sync::CancellationToken;

const ALICE: i64 = 1001;
const BOB: i64 = 2002;
const SECRET: &str = "webhook-secret_for-the-tests";
const PATH: &str = "/telegram/hook";
/// The header and body read limits of the bots under test: short, so a test that waits them
/// out stays quick; far below [`WAIT`], so "held until the test gave up" cannot pass.
const READ_LIMIT: Duration = Duration::from_millis(300);

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
}

/// The webhook settings for a bot listening on `listen`.
fn webhook(listen: SocketAddr) -> WebhookConfig {
    WebhookConfig {
        max_connections: 10,
        header_read_timeout: READ_LIMIT,
        body_read_timeout: READ_LIMIT,
        ..WebhookConfig::new(
            url::Url::parse(&format!("http://{listen}{PATH}")).expect("a valid URL"),
            listen,
            SecretString::from(SECRET),
        )
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
    // A group not allowed is told once, and left.
    telegram.wait_for_messages(-100_900, 1, WAIT).await.unwrap();
    telegram.wait_for_calls("leaveChat", 1, WAIT).await.unwrap();
    assert_eq!(telegram.sent_messages(-100_900).len(), 1);
    assert!(world.events(BOB).is_empty());
    bot.stop().await.unwrap();
}

/// Opens a connection to `addr`, sends `bytes` and keeps the connection open; returns what the
/// server sent by the time it closed the connection. Panics if it is still open after [`WAIT`]:
/// the server was holding it.
async fn send_and_read_until_closed(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut tcp = tokio::net::TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connect to the webhook at {addr}: {e}"));
    tcp.write_all(bytes).await.expect("send the request");
    let mut received = Vec::new();
    match tokio::time::timeout(WAIT, tcp.read_to_end(&mut received)).await {
        Ok(Ok(_)) => {}
        // Closed with unread data on either side: closed all the same.
        Ok(Err(error)) if error.kind() == std::io::ErrorKind::ConnectionReset => {}
        Ok(Err(error)) => panic!("reading the answer: {error}"),
        Err(_) => panic!(
            "the webhook held the connection for {WAIT:?}; received so far: {:?}",
            String::from_utf8_lossy(&received)
        ),
    }
    String::from_utf8_lossy(&received).into_owned()
}

/// The head of a POST to the webhook declaring `length` bytes of body, with `secret` if any.
fn post_head(secret: Option<&str>, length: usize) -> String {
    let secret = secret.map_or_else(String::new, |s| {
        format!("X-Telegram-Bot-Api-Secret-Token: {s}\r\n")
    });
    format!(
        "POST {PATH} HTTP/1.1\r\nHost: bot.example.com\r\nContent-Type: application/json\r\n\
         {secret}Content-Length: {length}\r\n\r\n"
    )
}

fn status(response: &str) -> &str {
    response.lines().next().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_request_without_the_secret_is_refused_before_its_body_is_read() {
    let world = FakeWorld::default();
    let telegram = FakeTelegram::start().await;
    let bot = WebhookBot::start_on(&telegram, world.deps(), test_config()).await;

    // 1.2 MB announced — over the body limit — and not one byte of it sent: only a server
    // that answers from the headers alone can reply at all, and it must say 401, not 413.
    for secret in [None, Some("wrong"), Some(&SECRET[..10])] {
        let response =
            send_and_read_until_closed(bot.listen, post_head(secret, 1_200_000).as_bytes()).await;
        assert!(
            status(&response).starts_with("HTTP/1.1 401"),
            "secret {secret:?}: {response}"
        );
    }
    assert!(world.inbox.stored_update_ids().is_empty());
    bot.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_body_declared_over_the_limit_is_refused_unread() {
    let world = FakeWorld::default();
    let telegram = FakeTelegram::start().await;
    let bot = WebhookBot::start_on(&telegram, world.deps(), test_config()).await;

    let response =
        send_and_read_until_closed(bot.listen, post_head(Some(SECRET), 1_200_000).as_bytes()).await;
    assert!(status(&response).starts_with("HTTP/1.1 413"), "{response}");
    bot.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_body_that_stops_arriving_gets_408_and_its_connection_is_closed() {
    let world = FakeWorld::default();
    let telegram = Arc::new(FakeTelegram::start().await);
    let bot = WebhookBot::start_on(&telegram, world.deps(), test_config()).await;

    // The right secret, 500 kB announced, 15 bytes sent, then nothing.
    let mut request = post_head(Some(SECRET), 500_000).into_bytes();
    request.extend_from_slice(br#"{"update_id": 1"#);
    let response = send_and_read_until_closed(bot.listen, &request).await;
    assert!(status(&response).starts_with("HTTP/1.1 408"), "{response}");
    assert!(world.inbox.stored_update_ids().is_empty());

    // The listener carries on: a real update is still received and answered.
    telegram.push_text(ALICE, ALICE, "Вы здесь?");
    telegram.wait_for_messages(ALICE, 1, WAIT).await.unwrap();
    bot.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_client_that_never_finishes_its_headers_is_disconnected() {
    let world = FakeWorld::default();
    let telegram = FakeTelegram::start().await;
    let bot = WebhookBot::start_on(&telegram, world.deps(), test_config()).await;

    let partial = format!("POST {PATH} HTTP/1.1\r\nHost: bot.example.com\r\n");
    let response = send_and_read_until_closed(bot.listen, partial.as_bytes()).await;
    assert!(
        !response.contains("200"),
        "nothing was accepted: {response}"
    );
    // A connection that sends nothing at all is closed too.
    send_and_read_until_closed(bot.listen, b"").await;
    // And so is a kept-alive one, once its request is answered and nothing more comes.
    let unknown = r#"{"update_id": 901, "brand_new_kind": {"x": 1}}"#;
    let request = format!("{}{unknown}", post_head(Some(SECRET), unknown.len()));
    let response = send_and_read_until_closed(bot.listen, request.as_bytes()).await;
    assert!(status(&response).starts_with("HTTP/1.1 200"), "{response}");
    bot.stop().await.unwrap();
}

/// A message update as Telegram would POST it.
fn update_body(update_id: i64, user: i64, text: &str) -> String {
    serde_json::json!({
        "update_id": update_id,
        "message": FakeTelegram::message_object(
            update_id,
            user,
            user,
            serde_json::json!({ "text": text }),
        ),
    })
    .to_string()
}

/// POSTs `body` with the secret once the listener accepts connections; the status line.
async fn post_when_listening(addr: SocketAddr, body: &str) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut tcp = loop {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(tcp) => break tcp,
            Err(error) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the webhook never listened on {addr}: {error}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    let request = format!(
        "{}{body}",
        post_head(Some(SECRET), body.len())
            .replace("HTTP/1.1\r\n", "HTTP/1.1\r\nConnection: close\r\n")
    );
    tcp.write_all(request.as_bytes()).await.expect("send");
    let mut response = Vec::new();
    tokio::time::timeout(WAIT, tcp.read_to_end(&mut response))
        .await
        .expect("an answer in time")
        .expect("read the answer");
    status(&String::from_utf8_lossy(&response)).to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_bot_stores_updates_while_the_bot_api_is_unreachable_and_answers_once_it_is_back()
{
    let world = FakeWorld::default();
    // Nothing listens there yet.
    let api = free_addr();
    let bot = WebhookBot::start(
        format!("http://{api}/"),
        butler_testkit::telegram::DEFAULT_TOKEN,
        world.deps(),
        test_config(),
    );

    let status = post_when_listening(bot.listen, &update_body(700, ALICE, "Вы здесь?")).await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert_eq!(world.inbox.stored_update_ids(), vec![700], "stored at once");
    assert!(!bot.task.is_finished(), "the bot is still up");
    assert!(world.llm.requests().is_empty(), "nothing answered yet");

    let telegram = FakeTelegram::start_on_port(api.port()).await;
    let sent = telegram.wait_for_messages(ALICE, 1, WAIT).await.unwrap();
    assert_eq!(world.llm.requests().len(), 1, "{sent:?}");
    telegram
        .wait_for_calls("setWebhook", 1, WAIT)
        .await
        .unwrap();
    assert!(
        world.observer.setup_failures() >= 1,
        "the failed start-up calls were reported"
    );
    bot.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_telegram_rejects_stops_a_webhook_bot_without_the_token_in_the_error() {
    let telegram = FakeTelegram::start().await;
    let wrong = "7000000001:AAWrongTokenWrongTokenWrongTokenWrong";
    let bot = WebhookBot::start(
        telegram.api_url(),
        wrong,
        FakeWorld::default().deps(),
        test_config(),
    );
    let error = tokio::time::timeout(WAIT, bot.task)
        .await
        .expect("the bot stops on its own")
        .expect("no panic")
        .expect_err("the fake refuses other tokens");
    let text = error.to_string();
    assert!(text.contains("getMe"), "{text}");
    assert!(!text.contains("AAWrongToken"), "{text}");
    assert!(telegram.calls_to("setWebhook").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_url_telegram_refuses_stops_the_bot_instead_of_being_retried_forever() {
    let world = FakeWorld::default();
    let telegram = FakeTelegram::start().await;
    // Telegram's answer to an http:// URL today; teloxide has no name for this wording.
    telegram.fail_next(
        "setWebhook",
        1,
        Failure::Api {
            status: 400,
            description: "Bad Request: bad webhook: An HTTPS URL must be provided for webhook"
                .to_owned(),
        },
    );
    let bot = WebhookBot::start(
        telegram.api_url(),
        telegram.token(),
        world.deps(),
        test_config(),
    );
    let error = tokio::time::timeout(WAIT, bot.task)
        .await
        .expect("the bot stops on its own")
        .expect("no panic")
        .expect_err("a refused webhook URL is final");
    let text = error.to_string();
    assert!(
        text.contains("setWebhook") && text.contains("HTTPS URL"),
        "{text}"
    );
    assert_eq!(telegram.calls_to("setWebhook").len(), 1, "not retried");
    assert_eq!(world.observer.setup_failures(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_update_gets_503_while_the_inbox_is_down_and_is_stored_when_sent_again() {
    let world = FakeWorld::default();
    let telegram = FakeTelegram::start().await;
    let bot = WebhookBot::start_on(&telegram, world.deps(), test_config()).await;
    let body = update_body(800, ALICE, "Есть кто-нибудь?");

    world.inbox.outage.set(true);
    let status = post_when_listening(bot.listen, &body).await;
    assert!(status.starts_with("HTTP/1.1 503"), "{status}");
    world.inbox.outage.set(false);
    assert!(world.inbox.stored_update_ids().is_empty());

    // Telegram delivers it again; now it is stored and answered.
    let status = post_when_listening(bot.listen, &body).await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert_eq!(world.inbox.stored_update_ids(), vec![800]);
    telegram.wait_for_messages(ALICE, 1, WAIT).await.unwrap();
    bot.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_webhook_body_growing_past_the_limit_gets_413_and_its_connection_is_closed() {
    let world = FakeWorld::default();
    let telegram = FakeTelegram::start().await;
    let bot = WebhookBot::start_on(&telegram, world.deps(), test_config()).await;

    // No length declared: the limit can only be found while reading. 1 MiB in 64 KiB chunks,
    // then one byte more — and never the closing chunk, so a server still reading would wait
    // (and answer 408), not 413.
    let mut request = format!(
        "POST {PATH} HTTP/1.1\r\nHost: bot.example.com\r\nContent-Type: application/json\r\n\
         X-Telegram-Bot-Api-Secret-Token: {SECRET}\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    .into_bytes();
    let chunk = vec![b' '; 64 * 1024];
    for _ in 0..(butler_presentation::telegram::webhook::MAX_BODY_BYTES / chunk.len()) {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(&chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"1\r\n \r\n");
    let response = send_and_read_until_closed(bot.listen, &request).await;
    assert!(status(&response).starts_with("HTTP/1.1 413"), "{response}");
    assert!(world.inbox.stored_update_ids().is_empty());
    bot.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_shutdown_idle_connections_are_closed_and_a_request_in_progress_finishes() {
    let world = FakeWorld::default();
    let telegram = FakeTelegram::start().await;
    // Long read limits: only the shutdown can end these connections in time.
    let listen = free_addr();
    let settings = BotSettings {
        token: telegram.token().to_owned().into(),
        api_url: Some(telegram.api_url()),
        delivery: Delivery::Webhook(WebhookConfig {
            header_read_timeout: Duration::from_secs(60),
            body_read_timeout: Duration::from_secs(60),
            ..webhook(listen)
        }),
        config: test_config(),
    };
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(run_bot(settings, world.deps(), shutdown.clone()));
    telegram
        .wait_for_calls("setWebhook", 1, WAIT)
        .await
        .unwrap();

    // An idle kept-alive connection: one request answered, then nothing.
    let unknown = r#"{"update_id": 901, "brand_new_kind": {"x": 1}}"#;
    let mut idle = tokio::net::TcpStream::connect(listen).await.unwrap();
    idle.write_all(format!("{}{unknown}", post_head(Some(SECRET), unknown.len())).as_bytes())
        .await
        .unwrap();
    let mut answer = [0_u8; 12];
    idle.read_exact(&mut answer).await.unwrap();
    assert_eq!(&answer, b"HTTP/1.1 200");

    // A request in progress: the handler is reading its body (hyper sends `100 Continue` when
    // it first asks for it), of which half has arrived.
    let body = update_body(902, ALICE, "Успею?");
    let (first, rest) = body.as_bytes().split_at(body.len() / 2);
    let mut busy = tokio::net::TcpStream::connect(listen).await.unwrap();
    let head = post_head(Some(SECRET), body.len())
        .replace("HTTP/1.1\r\n", "HTTP/1.1\r\nExpect: 100-continue\r\n");
    busy.write_all(head.as_bytes()).await.unwrap();
    let mut continue_line = [0_u8; 12];
    busy.read_exact(&mut continue_line).await.unwrap();
    assert_eq!(&continue_line, b"HTTP/1.1 100");
    busy.write_all(first).await.unwrap();

    shutdown.cancel();
    // The idle connection is closed.
    let mut rest_of_idle = Vec::new();
    tokio::time::timeout(WAIT, idle.read_to_end(&mut rest_of_idle))
        .await
        .expect("the idle connection is closed at shutdown")
        .ok();
    // The request in progress completes: stored, then 200.
    busy.write_all(rest).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(WAIT, busy.read_to_end(&mut response))
        .await
        .expect("the request in progress is answered")
        .ok();
    let response = String::from_utf8_lossy(&response);
    assert!(response.contains("HTTP/1.1 200"), "{response}");
    assert_eq!(world.inbox.stored_update_ids(), vec![902]);

    tokio::time::timeout(WAIT, task)
        .await
        .expect("the bot stops")
        .unwrap()
        .unwrap();
    assert!(
        tokio::net::TcpStream::connect(listen).await.is_err(),
        "the listener no longer accepts"
    );
}
