//! Spoken test audio made at test time: `espeak-ng` speaks a sentence, `ffmpeg` encodes it as
//! OGG/Opus the way Telegram voice notes are. Clips are cached under the services directory,
//! keyed by their text, so each sentence is synthesised once per machine.

use std::collections::hash_map::DefaultHasher;
use std::fs;
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::process::{Command, Stdio};

use super::{services_dir, ServiceError};

const INSTALL_HINT: &str = "install the audio tools: `apt-get install espeak-ng ffmpeg` \
     (ffmpeg must be built with libopus)";

/// Bump when the synthesis recipe changes, so stale cached clips are not reused.
const RECIPE: &str = "espeak-ng en-us 150wpm; ffmpeg libopus 48k mono 32k voip";

/// OGG/Opus audio of an English voice saying `text`.
///
/// # Errors
/// When `espeak-ng` or `ffmpeg` is missing or fails; the message says what to install.
pub fn voice_note(text: &str) -> Result<Vec<u8>, ServiceError> {
    let dir = services_dir().join("voice");
    fs::create_dir_all(&dir)
        .map_err(|e| ServiceError::new(format!("cannot create {}: {e}", dir.display())))?;
    let mut hasher = DefaultHasher::new();
    (RECIPE, text).hash(&mut hasher);
    let key = format!("{:016x}", hasher.finish());
    let clip = dir.join(format!("{key}.ogg"));
    if let Ok(bytes) = fs::read(&clip) {
        return Ok(bytes);
    }
    // Unique scratch names: parallel tests may synthesise the same sentence at once; the
    // final rename is atomic, so readers never see half a file.
    let scratch = format!(
        "{key}-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    )
    .replace(['(', ')'], "");
    let wav = dir.join(format!("{scratch}.wav"));
    let ogg = dir.join(format!("{scratch}.ogg"));
    let wav_arg = wav.to_string_lossy().into_owned();
    let ogg_arg = ogg.to_string_lossy().into_owned();
    run(
        "espeak-ng",
        &["-v", "en-us", "-s", "150", "-w", &wav_arg, text],
    )?;
    run(
        "ffmpeg",
        &[
            "-y",
            "-loglevel",
            "error",
            "-i",
            &wav_arg,
            "-ac",
            "1",
            "-ar",
            "48000",
            "-c:a",
            "libopus",
            "-b:a",
            "32k",
            "-application",
            "voip",
            &ogg_arg,
        ],
    )?;
    let _ = fs::remove_file(&wav);
    rename(&ogg, &clip)?;
    fs::read(&clip).map_err(|e| ServiceError::new(format!("cannot read {}: {e}", clip.display())))
}

fn rename(from: &Path, to: &Path) -> Result<(), ServiceError> {
    fs::rename(from, to).map_err(|e| {
        ServiceError::new(format!(
            "cannot move {} to {}: {e}",
            from.display(),
            to.display()
        ))
    })
}

fn run(program: &str, args: &[&str]) -> Result<(), ServiceError> {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| ServiceError::new(format!("cannot run {program}: {e}; {INSTALL_HINT}")))?;
    if output.status.success() {
        return Ok(());
    }
    Err(ServiceError::new(format!(
        "{program} failed ({}): {}; {INSTALL_HINT}",
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    )))
}
