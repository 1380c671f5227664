//! Token counting on the application side: the conservative default estimator.
//!
//! Exact counters (a Qwen vocabulary file, an LLM server's tokenize endpoint) are adapters in
//! `butler-infrastructure`; this module holds what works with no configuration at all.

mod estimator;

pub use estimator::ConservativeEstimator;
