//! `butler-bot`: runs the Telegram bot (default), the terminal chat, storage migrations, or
//! fetches/lists the embedded engine's models. This file parses arguments; the factory does
//! the rest (`butler_factory::bot` for the bot and the chat).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use butler_domain::UserId;
use butler_factory::settings::{example_toml, help_text, Settings};
use butler_factory::{bot, models, runtime, wiring};
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

fn main() -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return fail(format!("cannot start the async runtime: {e}")),
    };
    let code = runtime.block_on(run(Cli::parse()));
    // Work cut at the stop deadline (a compression inside a blocking call) must not hold the
    // exit: the runtime waits for it this long, not until it ends.
    runtime.shutdown_timeout(EXIT_WAIT);
    code
}

/// How long the exit waits for tasks still running after `main`'s work is done.
const EXIT_WAIT: Duration = Duration::from_millis(500);

async fn run(cli: Cli) -> ExitCode {
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    // The terminal chat shares the terminal with the logs: warnings only, unless RUST_LOG.
    let quiet = matches!(cli.command, Some(Command::Chat { .. }));
    if let Err(e) = runtime::init_logging_with(&settings, quiet) {
        return fail(e);
    }
    let done = match cli.command.unwrap_or(Command::Run) {
        Command::Run => bot::run(&settings).await,
        Command::Chat { user_id } => bot::chat(&settings, user_id).await,
        Command::Migrate => wiring::migrate(&settings)
            .await
            .map(|report| println!("{report}"))
            .map_err(|e| e.to_string()),
        Command::Config { example: true } => {
            print!("{}", example_toml());
            Ok(())
        }
        Command::Config { example: false } => {
            for (name, value) in settings.describe() {
                println!("{name}={value}");
            }
            Ok(())
        }
        Command::Models {
            action: ModelsCommand::Pull,
        } => models::pull(&settings)
            .await
            .map(|path| println!("{}", path.display()))
            .map_err(|e| e.to_string()),
        Command::Models {
            action: ModelsCommand::List,
        } => models::list(&settings)
            .map(|lines| println!("{}", lines.join("\n")))
            .map_err(|e| e.to_string()),
    };
    done.map_or_else(fail, |()| ExitCode::SUCCESS)
}
