//! Bridges application outcomes to the metric helpers of `butler_infrastructure::telemetry`,
//! so neither the use cases nor the front ends spell metric names or label values.

use butler_application::memory::{CompressError, WorkerReport};
use butler_application::CompressOutcome;
use butler_infrastructure::telemetry::metrics::{self, CompressionStatus};

/// The metric label of a compression result.
#[must_use]
pub fn compression_status(result: &Result<CompressOutcome, CompressError>) -> CompressionStatus {
    match result {
        Ok(CompressOutcome::Compressed { .. }) => CompressionStatus::Ok,
        Ok(CompressOutcome::BackedOff { .. }) => CompressionStatus::Conflict,
        // A quiet-time extraction folds nothing: no compression happened.
        Ok(CompressOutcome::NothingToDo { .. } | CompressOutcome::Extracted { .. }) => {
            CompressionStatus::Skipped
        }
        Ok(CompressOutcome::Busy) => CompressionStatus::Busy,
        Err(_) => CompressionStatus::Error,
    }
}

/// Records one compression (inline trigger or worker).
pub fn record_compression(result: &Result<CompressOutcome, CompressError>) {
    let status = compression_status(result);
    metrics::record_compression(status);
    if status == CompressionStatus::Ok {
        metrics::record_summary_saved();
    }
}

/// Records one worker run and the compressions in it.
pub fn record_worker_run(report: &WorkerReport, query_failed: bool) {
    for user in &report.users {
        if let Some(result) = &user.outcome {
            record_compression(result);
        }
    }
    metrics::record_worker_run(query_failed || report.failures() > 0);
}
