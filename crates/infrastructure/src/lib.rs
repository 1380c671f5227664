//! Adapters for the ports of `butler-domain`.

mod http;
pub mod llm;
pub mod stt;
