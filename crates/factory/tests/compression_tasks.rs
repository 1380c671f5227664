//! Background compressions: off the caller's path, one per user at a time, drained on shutdown.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use butler_application::{CompressConfig, CompressMemoryUseCase, CompressionScheduler};
use butler_domain::ports::{Clock, UserMemoryRepository, UserProfileRepository};
use butler_domain::{Source, UserId, UserMemoryEvent};
use butler_factory::BackgroundCompressor;
use butler_testkit::fakes::{CharCounter, FakeLlm, InMemoryMemory, InMemoryProfiles, ManualClock};

#[tokio::test]
async fn a_user_is_compressed_once_at_a_time_and_drain_waits_for_it() {
    let profiles = Arc::new(InMemoryProfiles::default());
    let memory = Arc::new(InMemoryMemory::default());
    let clock = Arc::new(ManualClock::default());
    let user = UserId::new(5);
    let events: Vec<UserMemoryEvent> = (0..60)
        .map(|i| {
            if i % 2 == 0 {
                UserMemoryEvent::user(user, format!("q{i}"), Source::Text, clock.now())
            } else {
                UserMemoryEvent::assistant(user, format!("a{i}"), Source::Text, clock.now())
            }
        })
        .collect();
    memory.append(&events).await.unwrap();
    let llm = Arc::new(FakeLlm::default());
    llm.set_default_reply("summary");
    let gate = llm.gate();
    let use_case = CompressMemoryUseCase::new(
        profiles.clone(),
        memory.clone(),
        llm.clone(),
        Arc::new(CharCounter),
        clock,
        CompressConfig::default(),
    );
    let observed = Arc::new(AtomicUsize::new(0));
    let seen = observed.clone();
    let compressor = BackgroundCompressor::new(
        use_case,
        Some(Arc::new(move |r| {
            assert!(r.is_ok());
            seen.fetch_add(1, Ordering::SeqCst);
        })),
    );
    compressor.schedule(user);
    compressor.schedule(user); // dropped: one is already running for this user
    assert_eq!(compressor.running(), 1);
    gate.add_permits(10);
    compressor.drain().await;
    assert_eq!(observed.load(Ordering::SeqCst), 1);
    assert_eq!(llm.requests().len(), 1);
    assert_eq!(memory.count(user).await.unwrap(), 20);
    assert!(profiles.get(user).await.unwrap().unwrap().has_summary());
}
