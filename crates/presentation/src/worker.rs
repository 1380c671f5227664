//! The memory worker loop: `--once` for cron/systemd timers, `--interval` as a service,
//! `--dry-run` to list what would be compressed. A stop request (SIGTERM, Ctrl-C) starts no
//! further user: the compressions in flight finish, then the process exits.

use std::io::IsTerminal;
use std::time::Duration;

use butler_application::memory::{MemoryWorkerUseCase, UserResult, WorkerReport, WorkerRun};
use clap::Parser;
use tokio_util::sync::CancellationToken;

/// Arguments of `memory-worker`.
#[derive(Debug, Parser)]
#[command(
    name = "memory-worker",
    version,
    about = "Compress the memory of users over the threshold"
)]
pub struct WorkerCli {
    /// Configuration file (TOML; environment variables override it).
    #[arg(long, value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
    /// Run once and exit (non-zero if any user failed).
    #[arg(long, conflicts_with = "interval")]
    pub once: bool,
    /// Run every INTERVAL (e.g. 10m, 1h, 30s) until SIGTERM.
    #[arg(long, value_parser = parse_interval)]
    pub interval: Option<Duration>,
    /// Only list the users that would be compressed.
    #[arg(long)]
    pub dry_run: bool,
    /// At most this many users per run (the most events first).
    #[arg(long, default_value_t = 1000)]
    pub max_users: usize,
    /// Compressions at once [default: LLM_MAX_CONCURRENCY]. The LLM client's concurrency
    /// limit, shared by every compression of the process, applies whatever this is.
    #[arg(long, value_parser = parse_parallelism)]
    pub parallelism: Option<usize>,
}

fn parse_parallelism(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!(
            "invalid parallelism {text:?}: expected an integer ≥ 1"
        )),
    }
}

/// The longest `--interval`: a week.
const MAX_INTERVAL_SECS: u64 = 7 * 24 * 3600;

/// Parses `90s`, `10m`, `2h` or a plain number of seconds, up to a week.
///
/// # Errors
/// A message with the expected form.
pub fn parse_interval(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: u64 = number
        .parse()
        .map_err(|_| format!("invalid interval {text:?}: expected e.g. 30s, 10m or 1h"))?;
    let unit_secs: u64 = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => {
            return Err(format!(
                "invalid interval {text:?}: expected e.g. 30s, 10m or 1h"
            ))
        }
    };
    match n.checked_mul(unit_secs) {
        Some(0) => Err("interval must be at least 1s".to_owned()),
        Some(secs) if secs <= MAX_INTERVAL_SECS => Ok(Duration::from_secs(secs)),
        _ => Err(format!(
            "invalid interval {text:?}: at most 7 days (168h); for rarer runs use --once from cron"
        )),
    }
}

/// Called after every run (metrics hook): the report, and whether the candidate query failed.
pub type RunObserver<'a> = &'a (dyn Fn(&WorkerReport, bool) + Sync);

fn progress_line(r: &UserResult) -> String {
    match &r.outcome {
        None => format!(
            "would compress user {} ({} events)",
            r.user_id, r.events_before
        ),
        Some(Ok(o)) => format!(
            "user {}: {} ({} events before)",
            r.user_id,
            o.status(),
            r.events_before
        ),
        Some(Err(e)) => format!("user {}: failed: {e}", r.user_id),
    }
}

async fn run_once(
    worker: &MemoryWorkerUseCase,
    cli: &WorkerCli,
    stop: &CancellationToken,
    observe: RunObserver<'_>,
) -> bool {
    let run = WorkerRun {
        max_users: cli.max_users,
        dry_run: cli.dry_run,
        parallelism: cli.parallelism.unwrap_or(1),
    };
    let tty = std::io::stderr().is_terminal();
    let bar = if tty {
        let total = worker
            .candidates(cli.max_users)
            .await
            .map(|c| c.len())
            .unwrap_or(0);
        let bar = indicatif::ProgressBar::new(total as u64);
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} users {msg}")
        {
            bar.set_style(style);
        }
        Some(bar)
    } else {
        None
    };
    let started = std::time::Instant::now();
    let on_done = |r: &UserResult| {
        if let Some(bar) = &bar {
            bar.inc(1);
            bar.println(progress_line(r));
        } else if cli.dry_run {
            println!("{}", progress_line(r));
        } else {
            let status = match &r.outcome {
                None => "dry_run",
                Some(Ok(o)) => o.status(),
                Some(Err(_)) => "error",
            };
            tracing::info!(user_id = %r.user_id, events_before = r.events_before, status, result = %progress_line(r), "worker user done");
        }
    };
    match worker
        .execute_until(run, &on_done, &|| stop.is_cancelled())
        .await
    {
        Ok(report) => {
            if let Some(bar) = &bar {
                bar.finish_and_clear();
            }
            let failures = report.failures();
            tracing::info!(
                users = report.users.len(),
                failures,
                not_started = report.not_started,
                dry_run = cli.dry_run,
                elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                "worker run finished"
            );
            observe(&report, false);
            failures == 0
        }
        Err(error) => {
            tracing::error!(%error, "worker run failed: cannot list users over the threshold");
            observe(&WorkerReport::default(), true);
            false
        }
    }
}

/// Runs the worker as asked; returns whether the last run was fully successful.
pub async fn run_worker(
    worker: &MemoryWorkerUseCase,
    cli: &WorkerCli,
    stop: CancellationToken,
    observe: RunObserver<'_>,
) -> bool {
    let Some(interval) = cli.interval else {
        return run_once(worker, cli, &stop, observe).await;
    };
    loop {
        // A stop request during a run lets the compressions in flight finish and starts no
        // further user: every compression is CAS-protected, but finishing is cheaper than
        // repairing.
        let ok = run_once(worker, cli, &stop, observe).await;
        tokio::select! {
            () = stop.cancelled() => return ok,
            () = tokio::time::sleep(interval) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_accept_seconds_minutes_and_hours() {
        assert_eq!(parse_interval("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_interval("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_interval("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_interval("45"), Ok(Duration::from_secs(45)));
        assert!(parse_interval("0s").is_err());
        assert!(parse_interval("soon")
            .unwrap_err()
            .contains("expected e.g. 30s"));
        assert!(parse_interval("5d").is_err());
        assert_eq!(parse_interval("168h"), Ok(Duration::from_secs(604_800)));
        assert!(parse_interval("169h")
            .unwrap_err()
            .contains("at most 7 days"));
        // Multiplying these used to overflow (a panic in debug builds).
        assert!(parse_interval(&format!("{}h", u64::MAX / 60)).is_err());
        assert!(parse_interval(&format!("{}m", u64::MAX)).is_err());
        assert!(parse_interval(&"9".repeat(40)).is_err());
    }

    #[test]
    fn parallelism_defaults_to_the_llm_limit_and_rejects_zero() {
        let cli = WorkerCli::try_parse_from(["memory-worker", "--once"]).unwrap();
        assert_eq!(
            cli.parallelism, None,
            "the binary fills in LLM_MAX_CONCURRENCY"
        );
        let cli = WorkerCli::try_parse_from(["memory-worker", "--parallelism", "3"]).unwrap();
        assert_eq!(cli.parallelism, Some(3));
        let err = WorkerCli::try_parse_from(["memory-worker", "--parallelism", "0"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("expected an integer ≥ 1"), "{err}");
    }
}
