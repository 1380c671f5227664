//! `butler-bot`: runs the Telegram bot (default), the terminal chat, storage migrations, or
//! fetches/lists the embedded engine's models.
//! Everything testable lives in the crates; this file parses arguments and wires.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use butler_domain::UserId;
use butler_factory::settings::{example_toml, help_text, Access, Settings};
use butler_factory::{models, runtime, wiring};
use butler_presentation::telegram::{
    run_bot, webhook, Access as BotAccess, BotConfig, BotDeps, BotSettings, Delivery, InboxConfig,
    Limits, WebhookConfig,
};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "butler-bot", version, about = "Personalised Butler: an Alfred-style Telegram assistant", after_help = help_text())]
struct Cli {
    /// Configuration file (TOML; environment variables override it).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the Telegram bot (the default).
    Run,
    /// Talk to the butler in this terminal (no Telegram token needed).
    Chat {
        /// Whose memory to use.
        #[arg(long, default_value_t = UserId::new(1))]
        user_id: UserId,
    },
    /// Apply storage migrations / create indexes, then exit.
    Migrate,
    /// Print the effective configuration (secrets masked), then exit.
    Config {
        /// Print the example configuration file instead (every variable, its form and its
        /// default): `butler-bot config --example > butler.toml`.
        #[arg(long)]
        example: bool,
    },
    /// Manage the embedded engine's GGUF models (in LLM_MODELS_DIR).
    Models {
        #[command(subcommand)]
        action: ModelsCommand,
    },
}

#[derive(Debug, Subcommand)]
enum ModelsCommand {
    /// Download the default model (resumable, SHA-256 verified), then exit.
    Pull,
    /// List downloaded models and the one in use.
    List,
}

fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("butler-bot: {message}");
    ExitCode::from(1)
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    // The terminal chat shares the terminal with the logs: warnings only, unless RUST_LOG.
    let quiet = matches!(cli.command, Some(Command::Chat { .. }));
    if let Err(e) = runtime::init_logging_with(&settings, quiet) {
        return fail(e);
    }
    match cli.command.unwrap_or(Command::Run) {
        Command::Config { example: true } => {
            print!("{}", example_toml());
            ExitCode::SUCCESS
        }
        Command::Config { example: false } => {
            for (name, value) in settings.describe() {
                println!("{name}={value}");
            }
            ExitCode::SUCCESS
        }
        Command::Migrate => match wiring::migrate(&settings).await {
            Ok(report) => {
                println!("{report}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        },
        Command::Chat { user_id } => {
            let app = match wiring::build(&settings).await {
                Ok(app) => app,
                Err(e) => return fail(e),
            };
            let stdin = tokio::io::BufReader::new(tokio::io::stdin());
            let mut stdout = tokio::io::stdout();
            let result =
                butler_presentation::chat::run_chat(&app.reply, user_id, stdin, &mut stdout).await;
            app.compressor.drain().await;
            result.map_or_else(fail, |_| ExitCode::SUCCESS)
        }
        Command::Models {
            action: ModelsCommand::Pull,
        } => match models::pull(&settings).await {
            Ok(path) => {
                println!("{}", path.display());
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        },
        Command::Models {
            action: ModelsCommand::List,
        } => match models::list(&settings) {
            Ok(lines) => {
                println!("{}", lines.join("\n"));
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        },
        Command::Run => run(&settings).await,
    }
}

async fn run(settings: &Settings) -> ExitCode {
    let Some(token) = settings.telegram.token.clone() else {
        return fail("TELEGRAM_BOT_TOKEN is not set: get one from @BotFather, or try `butler-bot chat` in the terminal");
    };
    let Some(access) = settings.telegram.access.clone() else {
        return fail("ALLOWED_USER_IDS is not set: list the Telegram user ids the butler may answer (comma-separated, e.g. ALLOWED_USER_IDS=123456789), or set it to * to answer anyone who finds the bot");
    };
    let app = match wiring::build(settings).await {
        Ok(app) => app,
        Err(e) => return fail(e),
    };
    let inbox = match app.storage.inbox_for_bot().await {
        Ok(inbox) => inbox,
        Err(e) => return fail(e),
    };
    let telemetry =
        match runtime::start_telemetry(settings, &app.storage, Some(Arc::clone(&inbox))).await {
            Ok(t) => t,
            Err(e) => return fail(format!("METRICS_ADDR: {e}")),
        };
    let shutdown = runtime::shutdown_signal();
    let limits = settings.telegram.limits;
    let config = BotConfig {
        access: match access {
            Access::Everyone => BotAccess::Everyone,
            Access::Only(ids) => BotAccess::Only(ids.into_iter().map(UserId::new).collect()),
        },
        limits: Limits {
            per_minute: limits.per_minute,
            burst: limits.burst,
            per_day: limits.per_day,
        },
        max_voice_duration: std::time::Duration::from_secs(u64::from(
            settings.telegram.voice_max_seconds,
        )),
        max_voice_bytes: settings.telegram.voice_max_bytes as u64,
        inbox: InboxConfig {
            lease: settings.telegram.inbox_lease,
            workers: settings.telegram.workers,
            retention: settings.telegram.inbox_retention,
            ..InboxConfig::default()
        },
        shutdown_grace: settings.telegram.shutdown_grace,
        ..BotConfig::default()
    };
    let delivery = match &settings.telegram.webhook {
        None => Delivery::Polling,
        Some(hook) => Delivery::Webhook(WebhookConfig {
            url: hook.url.clone(),
            listen: hook.listen,
            secret: hook
                .secret
                .clone()
                .unwrap_or_else(|| webhook::derived_secret(&token)),
            max_connections: 40,
            header_read_timeout: webhook::HEADER_READ_TIMEOUT,
            body_read_timeout: webhook::BODY_READ_TIMEOUT,
        }),
    };
    let api_url = (settings.telegram.api_url != "https://api.telegram.org")
        .then(|| settings.telegram.api_url.clone());
    let deps = BotDeps {
        reply: Arc::clone(&app.reply),
        stt: app.stt.clone(),
        profiles: Arc::clone(&app.storage.profiles),
        inbox,
        observer: Some(Arc::new(butler_factory::metered::TelegramMetrics)),
    };
    let result = run_bot(
        BotSettings {
            token,
            api_url,
            delivery,
            config,
        },
        deps,
        shutdown,
    )
    .await;
    app.compressor.drain().await;
    if let Some(t) = telemetry {
        let _ = t.shutdown().await;
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}
