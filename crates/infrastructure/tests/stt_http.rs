//! The transcription adapter: a real transcription of generated OGG/Opus speech by a real
//! faster-whisper-server (Whisper tiny.en), the multipart protocol, the size limit checked
//! before upload, and a server that is down failing fast with a typed error.

use std::time::{Duration, Instant};

use butler_domain::ports::{AudioClip, SpeechToText, SttError};
use butler_infrastructure::stt::{OpenAiTranscriptionClient, RetryPolicy, SttHttpConfig};
use butler_testkit::llm_server::ScriptedLlm;
use butler_testkit::services::{voice_note, WhisperServer};
use secrecy::SecretString;

fn clip(bytes: Vec<u8>) -> AudioClip {
    AudioClip {
        bytes,
        mime_type: "audio/ogg".into(),
        file_name: "voice.ogg".into(),
        duration: None,
    }
}

fn client(base_url: &str, configure: impl FnOnce(&mut SttHttpConfig)) -> OpenAiTranscriptionClient {
    let mut config = SttHttpConfig::new(base_url, "whisper-1");
    configure(&mut config);
    OpenAiTranscriptionClient::new(config).expect("a valid configuration")
}

#[tokio::test]
async fn spoken_english_is_transcribed_by_a_real_whisper_server() {
    let audio = voice_note("fresh_milk")
        .unwrap_or_else(|e| panic!("{e}"))
        .bytes;
    let server = WhisperServer::shared()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let stt = client(&server.base_url(), |c| {
        c.language = Some("en".into());
        // Generous: the first call loads the model, and test machines are shared.
        c.request_timeout = Duration::from_secs(180);
    });

    let started = Instant::now();
    let transcript = stt.transcribe(&clip(audio.clone())).await.unwrap();
    let first = started.elapsed();
    let started = Instant::now();
    stt.transcribe(&clip(audio.clone())).await.unwrap();
    let second = started.elapsed();
    eprintln!(
        "transcribed {} bytes of OGG/Opus: first call (loads the model) {first:?}, second {second:?}: {:?}",
        audio.len(),
        transcript.text
    );

    let heard = transcript.text.to_lowercase();
    for word in ["remind", "milk", "bread", "tomorrow"] {
        assert!(heard.contains(word), "{word:?} not in {heard:?}");
    }
}

#[tokio::test]
async fn the_upload_is_multipart_with_file_model_language_and_json_format() {
    let server = ScriptedLlm::start().await; // records any request; answers 404 off its route
    let stt = client(&server.base_url(), |c| {
        c.language = Some("ru".into());
        c.api_key = Some(SecretString::from("stt-key"));
    });
    let err = stt
        .transcribe(&clip(b"OggS-fake-audio".to_vec()))
        .await
        .unwrap_err();
    assert!(
        matches!(err, SttError::Status { status: 404, .. }),
        "{err:?}"
    );

    let requests = server.requests();
    assert_eq!(requests.len(), 1, "a 404 is not retried");
    let sent = &requests[0];
    assert_eq!(sent.path, "/v1/audio/transcriptions");
    assert_eq!(sent.header("authorization"), Some("Bearer stt-key"));
    assert!(sent
        .header("content-type")
        .is_some_and(|t| t.starts_with("multipart/form-data; boundary=")));
    let body = String::from_utf8_lossy(&sent.raw_body);
    for expected in [
        "name=\"file\"; filename=\"voice.ogg\"\r\nContent-Type: audio/ogg\r\n\r\nOggS-fake-audio",
        "name=\"model\"\r\n\r\nwhisper-1\r\n",
        "name=\"language\"\r\n\r\nru\r\n",
        "name=\"response_format\"\r\n\r\njson\r\n",
    ] {
        assert!(body.contains(expected), "{expected:?} not in {body:?}");
    }
}

#[tokio::test]
async fn without_a_language_or_key_neither_is_sent() {
    let server = ScriptedLlm::start().await;
    let stt = client(&server.base_url(), |_| {});
    let _ = stt.transcribe(&clip(b"OggS".to_vec())).await;
    let sent = &server.requests()[0];
    assert_eq!(sent.header("authorization"), None);
    assert!(!String::from_utf8_lossy(&sent.raw_body).contains("name=\"language\""));
}

#[tokio::test]
async fn an_oversized_clip_is_refused_before_any_upload() {
    let server = ScriptedLlm::start().await;
    let stt = client(&server.base_url(), |c| c.max_upload_bytes = 1024);
    let err = stt.transcribe(&clip(vec![0; 1025])).await.unwrap_err();
    assert!(
        matches!(
            err,
            SttError::TooLarge {
                size: 1025,
                max: 1024
            }
        ),
        "{err:?}"
    );
    assert_eq!(server.request_count(), 0);
}

#[tokio::test]
async fn a_server_that_is_down_fails_quickly_with_a_typed_error() {
    let port = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap().port()
    };
    let stt = client(&format!("http://127.0.0.1:{port}/v1"), |c| {
        c.retry = RetryPolicy {
            max_retries: 2,
            backoff_base: Duration::from_millis(50),
            backoff_max: Duration::from_millis(200),
        };
    });
    let started = Instant::now();
    let err = stt.transcribe(&clip(b"OggS".to_vec())).await.unwrap_err();
    let elapsed = started.elapsed();
    eprintln!("STT server down, 2 retries: {elapsed:?}: {err}");
    assert!(matches!(err, SttError::Unavailable { .. }), "{err:?}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
}
