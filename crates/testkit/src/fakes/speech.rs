//! A scripted speech-to-text fake.

use std::collections::VecDeque;
use std::sync::Mutex;

use async_trait::async_trait;
use butler_domain::ports::{AudioClip, SpeechToText, SttError, Transcript};

/// Returns scripted transcripts (or errors) in order, then a default transcript.
#[derive(Debug, Default)]
pub struct FakeStt {
    script: Mutex<VecDeque<Result<String, SttError>>>,
    clips: Mutex<Vec<AudioClip>>,
}

impl FakeStt {
    /// Queues a transcript.
    pub fn push_text(&self, text: &str) {
        self.script
            .lock()
            .expect("stt mutex")
            .push_back(Ok(text.to_owned()));
    }

    /// Queues a failure.
    pub fn push_error(&self, error: SttError) {
        self.script.lock().expect("stt mutex").push_back(Err(error));
    }

    /// Clips received so far.
    #[must_use]
    pub fn clips(&self) -> Vec<AudioClip> {
        self.clips.lock().expect("stt mutex").clone()
    }
}

#[async_trait]
impl SpeechToText for FakeStt {
    async fn transcribe(&self, clip: &AudioClip) -> Result<Transcript, SttError> {
        self.clips.lock().expect("stt mutex").push(clip.clone());
        let next = self.script.lock().expect("stt mutex").pop_front();
        match next {
            Some(Ok(text)) => Ok(Transcript { text }),
            Some(Err(e)) => Err(e),
            None => Ok(Transcript {
                text: "hello butler".to_owned(),
            }),
        }
    }
}
