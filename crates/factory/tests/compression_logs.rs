//! How a background compression that did not end is logged: a run cut at the process's exit
//! as cut (info), a panicking run as a panic (error). Its own test binary: a log subscriber is
//! set per thread, and another test of the same binary reaching the same log line first, on a
//! thread without one, can leave that line disabled for the whole process.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use butler_application::{CompressConfig, CompressMemoryUseCase, CompressionScheduler};
use butler_domain::ports::{Clock, UserMemoryRepository};
use butler_domain::{Source, UserId, UserMemoryEvent};
use butler_factory::BackgroundCompressor;
use butler_testkit::fakes::{
    CharCounter, FakeLlm, InMemoryMemory, InMemoryProfiles, LlmStep, ManualClock,
};

/// Log lines, collected in memory.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for Logs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Self;

    fn make_writer(&'a self) -> Self {
        self.clone()
    }
}

/// A compressor whose summariser answers `step` first, with `user` over the threshold.
async fn started(user: UserId, step: LlmStep) -> (BackgroundCompressor, Arc<FakeLlm>) {
    let memory = Arc::new(InMemoryMemory::default());
    let clock = Arc::new(ManualClock::default());
    let llm = Arc::new(FakeLlm::default());
    llm.set_default_reply("summary");
    llm.push(step);
    let events: Vec<UserMemoryEvent> = (0..30)
        .flat_map(|i| {
            [
                UserMemoryEvent::user(user, format!("q{i}"), Source::Text, clock.now()),
                UserMemoryEvent::assistant(user, format!("a{i}"), Source::Text, clock.now()),
            ]
        })
        .collect();
    memory.append(&events).await.unwrap();
    let use_case = CompressMemoryUseCase::new(
        Arc::new(InMemoryProfiles::default()),
        memory,
        llm.clone(),
        Arc::new(CharCounter),
        clock,
        Arc::new(butler_testkit::fakes::InMemoryInbox::default()),
        CompressConfig::default(),
    );
    (BackgroundCompressor::new(use_case, None), llm)
}

/// A run still going when its runtime ends (the bot's exit after the grace period) is logged
/// as cut, at info; only a run that panicked is logged as a panic, at error. Every stop with a
/// compression in flight used to log a false panic.
#[test]
fn a_run_cut_at_exit_is_logged_as_cut_and_only_a_panicking_run_as_a_panic() {
    let logs = Logs::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_ansi(false)
        .finish();
    let _logging = tracing::subscriber::set_default(subscriber);
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    };
    let user = UserId::new(7);

    let rt = runtime();
    let compressor = rt.block_on(async {
        let (compressor, llm) = started(
            user,
            LlmStep::Delay(Duration::from_secs(3600), "late".into()),
        )
        .await;
        compressor.schedule(user);
        // The run is waiting for the summariser.
        while llm.requests().is_empty() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        compressor
    });
    drop(rt);
    let cut = logs.text();
    assert!(cut.contains("INFO"), "{cut}");
    assert!(cut.contains("cut before it ended"), "{cut}");
    assert!(!cut.contains("panicked"), "{cut}");
    assert_eq!(compressor.users_in_flight(), 0, "the cut released the user");

    let rt = runtime();
    rt.block_on(async {
        let (compressor, _) = started(user, LlmStep::Panic).await;
        compressor.schedule(user);
        compressor.drain().await;
    });
    let after = logs.text();
    let panic = &after[cut.len()..];
    assert!(panic.contains("ERROR"), "{panic}");
    assert!(panic.contains("background compression panicked"), "{panic}");
}
