//! The bot's settings are built in the factory from the settings table: every value the bot
//! runs with comes from a variable or the table's default, none from the binary.

use std::collections::HashMap;
use std::time::Duration;

use butler_domain::UserId;
use butler_factory::bot::bot_settings;
use butler_factory::Settings;
use butler_presentation::telegram::{webhook, Access, BotSettings, Delivery};
use secrecy::{ExposeSecret as _, SecretString};

const TOKEN: &str = "7000000001:AAFakeTokenForTests_abcdefghijklmnop";

fn settings(vars: &[(&str, &str)]) -> Settings {
    let env: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    Settings::from_sources(None, |name| env.get(name).cloned()).expect("valid settings")
}

fn bot(vars: &[(&str, &str)]) -> BotSettings {
    let mut all = vec![("TELEGRAM_BOT_TOKEN", TOKEN), ("ALLOWED_USER_IDS", "11,12")];
    all.extend_from_slice(vars);
    bot_settings(&settings(&all)).expect("bot settings")
}

#[test]
fn the_bots_settings_come_from_the_settings_table() {
    let bot = bot(&[
        ("RATE_LIMIT_PER_MINUTE", "5"),
        ("RATE_LIMIT_BURST", "2"),
        ("DAILY_MESSAGE_QUOTA", "90"),
        ("VOICE_MAX_SECONDS", "30"),
        ("TELEGRAM_WORKERS", "8"),
        ("INBOX_LEASE_SECS", "9"),
        ("SHUTDOWN_GRACE_SECS", "3"),
        ("TELEGRAM_API_URL", "http://127.0.0.1:8081/"),
    ]);
    let config = &bot.config;
    assert_eq!(
        config.access,
        Access::Only(vec![UserId::new(11), UserId::new(12)])
    );
    assert_eq!(
        (
            config.limits.per_minute,
            config.limits.burst,
            config.limits.per_day
        ),
        (5, 2, 90)
    );
    assert_eq!(config.max_voice_duration, Duration::from_secs(30));
    assert_eq!(config.inbox.workers, 8);
    assert_eq!(config.inbox.lease, Duration::from_secs(9));
    assert_eq!(config.shutdown_grace, Duration::from_secs(3));
    assert_eq!(bot.api_url.as_deref(), Some("http://127.0.0.1:8081"));
    assert!(matches!(bot.delivery, Delivery::Polling));
}

#[test]
fn webhook_max_connections_is_a_setting_and_the_secret_defaults_to_the_derived_one() {
    let url = (
        "TELEGRAM_WEBHOOK_URL",
        "https://bot.example.com/telegram/hook",
    );
    let Delivery::Webhook(hook) = bot(&[url]).delivery else {
        panic!("webhook mode when TELEGRAM_WEBHOOK_URL is set");
    };
    assert_eq!(hook.max_connections, 40, "the table's default");
    assert_eq!(
        hook.secret.expose_secret(),
        webhook::derived_secret(&SecretString::from(TOKEN)).expose_secret()
    );
    assert_eq!(hook.header_read_timeout, webhook::HEADER_READ_TIMEOUT);
    assert_eq!(hook.body_read_timeout, webhook::BODY_READ_TIMEOUT);

    let Delivery::Webhook(hook) = bot(&[url, ("TELEGRAM_WEBHOOK_MAX_CONNECTIONS", "7")]).delivery
    else {
        panic!("webhook mode");
    };
    assert_eq!(hook.max_connections, 7);
    let error = Settings::from_sources(None, |name| {
        (name == "TELEGRAM_WEBHOOK_MAX_CONNECTIONS").then(|| "101".to_owned())
    })
    .expect_err("Telegram allows 1-100");
    assert!(
        error
            .to_string()
            .contains("TELEGRAM_WEBHOOK_MAX_CONNECTIONS"),
        "{error}"
    );
}

#[test]
fn the_bot_names_a_missing_token_or_allow_list() {
    let error = bot_settings(&settings(&[("ALLOWED_USER_IDS", "*")])).expect_err("no token");
    assert!(error.contains("TELEGRAM_BOT_TOKEN"), "{error}");
    let error = bot_settings(&settings(&[("TELEGRAM_BOT_TOKEN", TOKEN)])).expect_err("no list");
    assert!(error.contains("ALLOWED_USER_IDS"), "{error}");
    assert!(!error.contains("AAFake"), "{error}");
}
