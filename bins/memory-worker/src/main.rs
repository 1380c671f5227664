//! `memory-worker`: compresses the memory of users over the threshold, once (`--once`, for
//! cron or a systemd timer) or every `--interval` until SIGTERM.

use std::process::ExitCode;

use butler_factory::settings::Settings;
use butler_factory::{runtime, wiring};
use butler_presentation::worker::{run_worker, WorkerCli};
use clap::Parser;

fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("memory-worker: {message}");
    ExitCode::from(1)
}

#[tokio::main]
async fn main() -> ExitCode {
    let mut cli = WorkerCli::parse();
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    // By default as many compressions at once as the LLM client lets through (every server
    // of a pool); more would only queue on its limit.
    cli.parallelism
        .get_or_insert(settings.llm.total_concurrency());
    if let Err(e) = runtime::init_logging(&settings) {
        return fail(e);
    }
    // A dry run only lists candidates: it loads (or downloads) no model and calls no server.
    let app = if cli.dry_run {
        wiring::build_without_model(&settings).await
    } else {
        // It serves no replies, so its compressions may use every slot of the LLM limit.
        wiring::build_for(&settings, wiring::Workload::BackgroundOnly).await
    };
    let app = match app {
        Ok(app) => app,
        Err(e) => return fail(e),
    };
    let telemetry = if cli.interval.is_some() {
        match runtime::start_telemetry(&settings, &app.storage, None).await {
            Ok(t) => t,
            Err(e) => return fail(format!("METRICS_ADDR: {e}")),
        }
    } else {
        None
    };
    let stop = runtime::shutdown_signal();
    let observe = |report: &butler_application::memory::WorkerReport, query_failed: bool| {
        butler_factory::metrics::record_worker_run(report, query_failed);
    };
    let ok = run_worker(&app.worker, &cli, stop, &observe).await;
    if let Some(t) = telemetry {
        let _ = t.shutdown().await;
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
