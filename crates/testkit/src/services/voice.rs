//! Spoken test audio: real speech (espeak-ng) encoded as OGG/Opus the way Telegram voice notes
//! are, committed under `tests/fixtures/voice/` with the sentence each one says. Committed
//! rather than synthesised at test time, so the suite needs neither espeak-ng nor ffmpeg;
//! `tests/fixtures/voice/make.sh` regenerates them.

use std::path::PathBuf;

use super::ServiceError;

/// A committed voice note and the sentence it says.
#[derive(Debug, Clone)]
pub struct VoiceFixture {
    /// OGG/Opus bytes, 48 kHz mono.
    pub bytes: Vec<u8>,
    /// What is said.
    pub text: String,
}

fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/voice")
}

/// The voice note `name` (`fresh_milk`: a reminder request; `bought_milk`: plain chat).
///
/// # Errors
/// When the fixture is missing (a partial checkout); the message names the file.
pub fn voice_note(name: &str) -> Result<VoiceFixture, ServiceError> {
    let dir = fixtures_dir();
    let read = |file: PathBuf| {
        std::fs::read(&file).map_err(|e| {
            ServiceError::new(format!(
                "cannot read the voice fixture {}: {e} (regenerate with tests/fixtures/voice/make.sh)",
                file.display()
            ))
        })
    };
    let bytes = read(dir.join(format!("{name}.ogg")))?;
    let text = String::from_utf8_lossy(&read(dir.join(format!("{name}.txt")))?)
        .trim()
        .to_owned();
    Ok(VoiceFixture { bytes, text })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_fixtures_are_ogg_files_with_their_sentences() {
        for name in ["fresh_milk", "bought_milk"] {
            let clip = voice_note(name).unwrap();
            assert!(clip.bytes.starts_with(b"OggS"), "{name} is not OGG");
            assert!(clip.text.contains("milk"), "{name}: {}", clip.text);
        }
        assert!(voice_note("missing")
            .unwrap_err()
            .to_string()
            .contains("make.sh"));
    }
}
