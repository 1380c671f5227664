//! Background compressions: off the caller's path, one per user at a time, a request during a
//! run answered by one more run, a panicking run releasing its user, drained on shutdown.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use butler_application::{CompressConfig, CompressMemoryUseCase, CompressionScheduler};
use butler_domain::ports::{Clock, UserMemoryRepository, UserProfileRepository};
use butler_domain::{Source, UserId, UserMemoryEvent};
use butler_factory::BackgroundCompressor;
use butler_testkit::fakes::{
    CharCounter, FakeLlm, InMemoryMemory, InMemoryProfiles, LlmStep, ManualClock,
};

struct Setup {
    profiles: Arc<InMemoryProfiles>,
    memory: Arc<InMemoryMemory>,
    clock: Arc<ManualClock>,
    llm: Arc<FakeLlm>,
    observed: Arc<AtomicUsize>,
    compressor: BackgroundCompressor,
}

impl Setup {
    fn new() -> Self {
        let profiles = Arc::new(InMemoryProfiles::default());
        let memory = Arc::new(InMemoryMemory::default());
        let clock = Arc::new(ManualClock::default());
        let llm = Arc::new(FakeLlm::default());
        llm.set_default_reply("summary");
        let use_case = CompressMemoryUseCase::new(
            profiles.clone(),
            memory.clone(),
            llm.clone(),
            Arc::new(CharCounter),
            clock.clone(),
            Arc::new(butler_testkit::fakes::InMemoryInbox::default()),
            CompressConfig::default(),
        );
        let observed = Arc::new(AtomicUsize::new(0));
        let seen = observed.clone();
        let compressor = BackgroundCompressor::new(
            use_case,
            Some(Arc::new(move |r| {
                assert!(r.is_ok(), "{r:?}");
                seen.fetch_add(1, Ordering::SeqCst);
            })),
        );
        Self {
            profiles,
            memory,
            clock,
            llm,
            observed,
            compressor,
        }
    }

    async fn add_turns(&self, user: UserId, turns: usize) {
        let mut events = Vec::new();
        for i in 0..turns {
            events.push(UserMemoryEvent::user(
                user,
                format!("q{i}"),
                Source::Text,
                self.clock.now(),
            ));
            events.push(UserMemoryEvent::assistant(
                user,
                format!("a{i}"),
                Source::Text,
                self.clock.now(),
            ));
        }
        self.memory.append(&events).await.unwrap();
    }
}

#[tokio::test]
async fn a_user_is_compressed_once_at_a_time_and_drain_waits_for_it() {
    let s = Setup::new();
    let user = UserId::new(5);
    s.add_turns(user, 30).await;
    let gate = s.llm.gate();
    s.compressor.schedule(user);
    s.compressor.schedule(user); // while the first runs: one more run afterwards, not a second task
    assert_eq!(s.compressor.running(), 1);
    gate.add_permits(10);
    s.compressor.drain().await;
    assert_eq!(
        s.observed.load(Ordering::SeqCst),
        2,
        "the run and its re-check"
    );
    assert_eq!(
        s.llm.requests().len(),
        1,
        "the re-check found nothing to do"
    );
    assert_eq!(s.memory.count(user).await.unwrap(), 20);
    assert!(s.profiles.get(user).await.unwrap().unwrap().has_summary());
    assert_eq!(s.compressor.users_in_flight(), 0);
}

#[tokio::test]
async fn a_crossing_during_a_run_is_compressed_by_the_next_run() {
    let s = Setup::new();
    let user = UserId::new(6);
    s.add_turns(user, 30).await;
    let gate = s.llm.gate();
    s.compressor.schedule(user);
    // Wait (on the model's own record, not a timer) until the run has chosen what to fold.
    while s.llm.requests().is_empty() {
        tokio::task::yield_now().await;
    }
    // 40 more events arrive: after this run the user holds 60 again, over the threshold.
    s.add_turns(user, 20).await;
    s.compressor.schedule(user);
    gate.add_permits(10);
    s.compressor.drain().await;
    assert_eq!(s.llm.requests().len(), 2, "one call per crossing");
    assert_eq!(s.memory.count(user).await.unwrap(), 20);
    assert_eq!(s.compressor.users_in_flight(), 0);
}

#[tokio::test]
async fn a_panicking_compression_releases_its_user() {
    let s = Setup::new();
    let user = UserId::new(7);
    s.add_turns(user, 30).await;
    s.llm.push(LlmStep::Panic);
    s.compressor.schedule(user);
    s.compressor.drain().await;
    assert_eq!(
        s.compressor.users_in_flight(),
        0,
        "the panic released the user"
    );
    assert_eq!(s.memory.count(user).await.unwrap(), 60, "nothing deleted");
    s.compressor.schedule(user);
    s.compressor.drain().await;
    assert_eq!(s.observed.load(Ordering::SeqCst), 1, "the next request ran");
    assert_eq!(s.memory.count(user).await.unwrap(), 20);
}

/// 200 messages from one user, each answered in 10 ms, while every summariser call takes 30 ms: the
/// compressions keep up with one call per crossing of the threshold (plus one for a backlog
/// too large for one call), instead of one call per message that arrived during a run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_faster_than_the_summariser_costs_one_call_per_threshold_crossing() {
    use butler_application::prompt::PromptBudget;
    use butler_application::{PersonalizationService, PersonalizedReplyUseCase, ReplyConfig};

    let s = Setup::new();
    let user = UserId::new(8);
    for _ in 0..400 {
        s.llm.push(LlmStep::Delay(
            std::time::Duration::from_millis(30),
            "summary".to_owned(),
        ));
    }
    let compressor = Arc::new(s.compressor);
    let replies = Arc::new(FakeLlm::default());
    for _ in 0..200 {
        replies.push(LlmStep::Delay(
            std::time::Duration::from_millis(10),
            "Слушаюсь.".to_owned(),
        ));
    }
    let reply = PersonalizedReplyUseCase::new(
        s.profiles.clone(),
        s.memory.clone(),
        replies,
        s.clock.clone(),
        PersonalizationService::new(Arc::new(CharCounter), PromptBudget::default()).unwrap(),
        compressor.clone(),
        ReplyConfig::default(),
    );
    // Crossings as an instant compressor would see them: over 50 events, fold down to 20.
    let (mut crossings, mut held) = (0, 0);
    for i in 0..200 {
        let input = butler_application::ReplyInput {
            user_id: user,
            text: format!("сообщение {i}"),
            source: Source::Text,
            origin: None,
        };
        reply.execute(input).await;
        held += 2;
        if held > 50 {
            crossings += 1;
            held = 20;
        }
    }
    compressor.drain().await;
    let calls = s.llm.requests().len();
    eprintln!("200 messages: {crossings} crossings of the threshold, {calls} summariser calls");
    assert!(crossings >= 1);
    assert!(
        calls <= crossings + 1,
        "{calls} summariser calls for {crossings} crossings"
    );
    assert!(s.memory.count(user).await.unwrap() <= 50);
    assert_eq!(compressor.users_in_flight(), 0);
}

#[tokio::test]
async fn a_compression_asked_for_when_quiet_waits_until_the_user_stops_writing() {
    use std::time::{Duration, Instant};
    let s = Setup::new();
    let user = UserId::new(9);
    s.add_turns(user, 30).await;
    let idle = Duration::from_millis(1_000);
    let asked = Instant::now();
    s.compressor.schedule_when_idle(user, idle);
    assert_eq!(s.compressor.users_waiting_for_quiet(), 1);
    // The user writes again every 200 ms for 1.6 s: each message moves the moment later.
    let mut last = Instant::now();
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            s.observed.load(Ordering::SeqCst),
            0,
            "no compression while the user writes"
        );
        s.compressor.schedule_when_idle(user, idle);
        last = Instant::now();
    }
    assert_eq!(
        s.compressor.users_waiting_for_quiet(),
        1,
        "one timer per user"
    );
    // Quiet: it runs once, a quiet period after the last message.
    while s.observed.load(Ordering::SeqCst) == 0 {
        assert!(asked.elapsed() < Duration::from_secs(30), "never ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        last.elapsed() >= idle,
        "ran {:?} after the last message",
        last.elapsed()
    );
    s.compressor.drain().await;
    assert_eq!(s.observed.load(Ordering::SeqCst), 1);
    assert_eq!(s.compressor.users_waiting_for_quiet(), 0);
    assert_eq!(s.memory.count(user).await.unwrap(), 20);
}
