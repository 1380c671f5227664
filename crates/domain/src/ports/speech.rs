//! The speech-to-text port: audio bytes in, transcript out.

use std::time::Duration;

use async_trait::async_trait;
use thiserror::Error;

/// An audio recording to transcribe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioClip {
    /// Encoded audio (Telegram voice notes are OGG/Opus).
    pub bytes: Vec<u8>,
    /// MIME type, e.g. `audio/ogg`.
    pub mime_type: String,
    /// File name sent with the upload, e.g. `voice.ogg` (servers pick decoders by extension).
    pub file_name: String,
    /// Duration if the sender reported it.
    pub duration: Option<Duration>,
}

/// What was heard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transcript {
    /// The recognised text, trimmed, never empty.
    pub text: String,
}

/// Why a transcription failed. Messages never contain API keys or audio.
#[derive(Debug, Error)]
pub enum SttError {
    /// The clip is larger than the configured limit; nothing was uploaded.
    #[error("audio is {size} bytes: at most {max} are accepted")]
    TooLarge {
        /// Its size in bytes.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// No answer within the deadline (including retries).
    #[error("speech-to-text did not answer within {after:?}")]
    Timeout {
        /// The deadline that passed.
        after: Duration,
    },
    /// The server could not be reached.
    #[error("speech-to-text unreachable: {detail}")]
    Unavailable {
        /// Connection error, without credentials.
        detail: String,
    },
    /// The server answered with an error status.
    #[error("speech-to-text answered HTTP {status}: {body_excerpt}")]
    Status {
        /// HTTP status code.
        status: u16,
        /// The first few hundred characters of the body.
        body_excerpt: String,
    },
    /// The answer was malformed, or no speech was recognised.
    #[error("speech-to-text returned an invalid response: {detail}")]
    InvalidResponse {
        /// What was wrong.
        detail: String,
    },
}

impl SttError {
    /// A short, bounded label for metrics.
    #[must_use]
    pub const fn kind(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "too_large",
            Self::Timeout { .. } => "timeout",
            Self::Unavailable { .. } => "unavailable",
            Self::Status { .. } => "status",
            Self::InvalidResponse { .. } => "invalid",
        }
    }
}

/// Transcribes speech.
#[async_trait]
pub trait SpeechToText: Send + Sync {
    /// Transcribes the clip. Implementations check size limits before uploading and bound the
    /// call by a deadline.
    async fn transcribe(&self, clip: &AudioClip) -> Result<Transcript, SttError>;
}
