//! Memory maintenance: the compression use case (shared by the inline trigger and the worker)
//! and the scheduling port through which replies ask for compression without waiting for it.

pub mod compress;
pub mod facts;
pub mod schedule;
pub mod worker;

pub use compress::{
    CompressConfig, CompressError, CompressMemoryUseCase, CompressOutcome, ExtractionFailureHook,
    FactsStoredHook,
};
pub use facts::ExtractionFailure;
pub use schedule::CompressionScheduler;
pub use worker::{MemoryWorkerUseCase, UserResult, WorkerReport, WorkerRun};
