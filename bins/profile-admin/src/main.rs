//! `profile_admin`: support tool for profiles and memory. Builds the storage through the
//! factory and runs the command (see `butler_presentation::admin`, which says why there is
//! no admin key).

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;

use butler_factory::settings::Settings;
use butler_factory::wiring;
use butler_presentation::admin::{self, AdminCli, AdminDeps};
use clap::Parser;

fn code(c: admin::ExitCode) -> ExitCode {
    ExitCode::from(c as u8)
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = AdminCli::parse();
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("profile_admin: {e}");
            return code(admin::ExitCode::Usage);
        }
    };
    let storage = match wiring::open_storage(&settings).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("profile_admin: {e}");
            return code(admin::ExitCode::Storage);
        }
    };
    let admin = wiring::admin_use_cases(&settings, &storage);
    let migrate_settings = settings.clone();
    let deps = AdminDeps {
        list: admin.list,
        show: admin.show,
        update: admin.update,
        reset: admin.reset,
        facts: admin.facts,
        reminders: admin.reminders,
        migrate: Arc::new(move || {
            let settings = migrate_settings.clone();
            Box::pin(async move { wiring::migrate(&settings).await.map_err(|e| e.to_string()) })
        }),
        reset_wait: admin::RESET_WAIT,
    };
    let mut confirm = |question: &str| {
        if !std::io::stdin().is_terminal() {
            return None;
        }
        eprint!("{question}");
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer).ok()?;
        Some(matches!(
            answer.trim().to_ascii_lowercase().as_str(),
            "y" | "yes"
        ))
    };
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    code(admin::run(cli, &deps, &mut out, &mut err, &mut confirm).await)
}
