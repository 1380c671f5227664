//! The compression invariants (DESIGN §4), as backend-generic checks:
//! no event is removed unless a persisted summary covers it; the previous summary is never
//! lost; two compressions of one conversation never run at once, and if they overlap anyway
//! (a lost lease) they produce one summary and lose no event and no fact; events appended
//! during a compression survive; a crash between "summary saved" and "events deleted" leaves
//! memory consistent; a reset waits for the reply in flight, stops a compression in flight and
//! leaves no summary or fact behind.
#![allow(clippy::missing_panics_doc, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use butler_application::prompt::templates;
use butler_application::reset::ResetError;
use butler_application::{
    CompressConfig, CompressMemoryUseCase, CompressOutcome, ResetPersonalizationUseCase,
};
use butler_domain::ports::{
    Clock, ConversationLeases, FactRepository, LeaseScope, TokenCounter, UserMemoryRepository,
    UserProfileRepository,
};
use butler_domain::{EventCursor, Language, Role, Source, UserId, UserMemoryEvent};
use butler_testkit::fakes::{CharCounter, FakeLlm, FaultyMemory, InMemoryInbox, ManualClock};

/// The storage under test.
#[derive(Clone)]
pub struct Backend {
    /// Profile store.
    pub profiles: Arc<dyn UserProfileRepository>,
    /// Memory store.
    pub memory: Arc<dyn UserMemoryRepository>,
    /// Fact store.
    pub facts: Arc<dyn FactRepository>,
    /// Conversation leases of the same store.
    pub leases: Arc<dyn ConversationLeases>,
}

impl Backend {
    /// In-memory fakes.
    #[must_use]
    pub fn in_memory() -> Self {
        Self {
            profiles: Arc::new(butler_testkit::fakes::InMemoryProfiles::default()),
            memory: Arc::new(butler_testkit::fakes::InMemoryMemory::default()),
            facts: Arc::new(butler_testkit::fakes::InMemoryFacts::default()),
            leases: Arc::new(InMemoryInbox::default()),
        }
    }
}

/// Shared clock and counter for one check.
struct Ctx {
    backend: Backend,
    clock: Arc<ManualClock>,
    counter: Arc<dyn TokenCounter>,
}

impl Ctx {
    fn new(backend: Backend) -> Self {
        Self {
            backend,
            clock: Arc::new(ManualClock::default()),
            counter: Arc::new(CharCounter),
        }
    }

    fn compress(&self, llm: Arc<FakeLlm>) -> CompressMemoryUseCase {
        self.compress_on(self.backend.memory.clone(), llm, CompressConfig::default())
    }

    fn compress_on(
        &self,
        memory: Arc<dyn UserMemoryRepository>,
        llm: Arc<FakeLlm>,
        config: CompressConfig,
    ) -> CompressMemoryUseCase {
        self.compress_with(memory, llm, self.backend.leases.clone(), config)
    }

    /// A compression whose leases are `leases` (a separate store stands for a lease that
    /// expired under a stalled process: the compare-and-set is then the only guard), with
    /// facts on.
    fn compress_with(
        &self,
        memory: Arc<dyn UserMemoryRepository>,
        llm: Arc<FakeLlm>,
        leases: Arc<dyn ConversationLeases>,
        config: CompressConfig,
    ) -> CompressMemoryUseCase {
        // Facts on, as deployed: a summariser's reply given to the extractor is no usable JSON
        // ("malformed"), which never blocks the summary.
        CompressMemoryUseCase::new(
            self.backend.profiles.clone(),
            memory,
            llm,
            self.counter.clone(),
            self.clock.clone(),
            leases,
            config,
        )
        .with_facts(self.backend.facts.clone())
    }

    fn reset(&self) -> ResetPersonalizationUseCase {
        ResetPersonalizationUseCase::new(
            self.backend.profiles.clone(),
            self.backend.memory.clone(),
            self.backend.facts.clone(),
            self.backend.leases.clone(),
            self.clock.clone(),
        )
    }

    async fn seed(&self, user: UserId, from: usize, turns: usize) -> Vec<UserMemoryEvent> {
        let mut events = Vec::new();
        for i in from..from + turns {
            events.push(UserMemoryEvent::user(
                user,
                format!("вопрос {i}"),
                Source::Text,
                self.clock.now(),
            ));
            events.push(UserMemoryEvent::assistant(
                user,
                format!("ответ {i}"),
                Source::Text,
                self.clock.now(),
            ));
        }
        for chunk in events.chunks(500) {
            self.backend.memory.append(chunk).await.unwrap();
        }
        events
    }

    async fn stored(&self, user: UserId) -> Vec<UserMemoryEvent> {
        self.backend
            .memory
            .recent(user, 100_000, None)
            .await
            .unwrap()
    }

    /// Every seeded event newer than the profile's watermark is still stored, and nothing at
    /// or below it is — the core "no loss" invariant.
    async fn assert_consistent(&self, user: UserId, seeded: &[UserMemoryEvent]) {
        let profile = self
            .backend
            .profiles
            .get(user)
            .await
            .unwrap()
            .expect("profile exists");
        let watermark = profile.summary_watermark;
        let stored: BTreeSet<EventCursor> = self
            .stored(user)
            .await
            .iter()
            .map(UserMemoryEvent::cursor)
            .collect();
        for e in seeded {
            let covered = watermark.is_some_and(|w| e.cursor() <= w);
            if !covered {
                assert!(
                    stored.contains(&e.cursor()),
                    "event {:?} newer than the watermark was lost",
                    e.content
                );
            }
        }
        if watermark.is_some() {
            assert!(profile.has_summary(), "a watermark without a summary");
        }
    }
}

/// Whether `request` is a compression's fact extraction (not its summariser call).
fn is_extraction(request: &butler_domain::ports::LlmRequest) -> bool {
    [Language::Ru, Language::En]
        .into_iter()
        .any(|language| request.messages[0].content == templates::extractor_system(language))
}

/// The summariser calls `llm` received (every request but the fact extractions).
fn summariser_calls(llm: &FakeLlm) -> usize {
    llm.requests().iter().filter(|r| !is_extraction(r)).count()
}

fn summariser(reply: &str) -> Arc<FakeLlm> {
    let llm = Arc::new(FakeLlm::default());
    llm.set_default_reply(reply);
    llm
}

/// 60 events → summary saved, the newest 20 kept, starting with a whole turn.
pub async fn compression_keeps_the_newest_twenty_events_in_whole_turns(backend: Backend) {
    let ctx = Ctx::new(backend);
    let user = UserId::new(101);
    let seeded = ctx.seed(user, 0, 30).await;
    let outcome = ctx
        .compress(summariser("Сводка: 20 вопросов."))
        .execute(user)
        .await
        .unwrap();
    assert!(
        matches!(
            outcome,
            CompressOutcome::Compressed {
                folded: 40,
                deleted: 40,
                remaining: 20,
                ..
            }
        ),
        "{outcome:?}"
    );
    let stored = ctx.stored(user).await;
    assert_eq!(stored.len(), 20);
    assert_eq!(stored[0].role, Role::User);
    assert_eq!(stored[0].content, "вопрос 20");
    let profile = ctx.backend.profiles.get(user).await.unwrap().unwrap();
    assert_eq!(
        profile.memory_summary.as_deref(),
        Some("Сводка: 20 вопросов.")
    );
    assert_eq!(profile.summary_watermark, Some(seeded[39].cursor()));
    ctx.assert_consistent(user, &seeded).await;
}

/// Users at or under the threshold are left alone.
pub async fn compression_does_nothing_at_or_under_the_threshold(backend: Backend) {
    let ctx = Ctx::new(backend);
    let user = UserId::new(102);
    ctx.seed(user, 0, 25).await;
    let llm = summariser("x");
    let outcome = ctx.compress(llm.clone()).execute(user).await.unwrap();
    assert_eq!(outcome, CompressOutcome::NothingToDo { events: 50 });
    assert!(llm.requests().is_empty());
    assert_eq!(ctx.stored(user).await.len(), 50);
}

/// The previous summary is sent to the summariser together with the folded events.
pub async fn the_previous_summary_is_folded_into_the_next(backend: Backend) {
    let ctx = Ctx::new(backend);
    let user = UserId::new(103);
    ctx.seed(user, 0, 30).await;
    ctx.compress(summariser("Пётр играет на виолончели."))
        .execute(user)
        .await
        .unwrap();
    let seeded = ctx.seed(user, 30, 20).await;
    let llm = summariser("Пётр играет на виолончели; концерт 12 мая.");
    ctx.compress(llm.clone()).execute(user).await.unwrap();
    let input = &llm.requests()[0].messages[1].content;
    assert!(input.contains("Пётр играет на виолончели."), "{input}");
    assert!(
        input.contains("вопрос 20") && !input.contains("вопрос 19"),
        "only events after the watermark"
    );
    let profile = ctx.backend.profiles.get(user).await.unwrap().unwrap();
    assert_eq!(
        profile.memory_summary.as_deref(),
        Some("Пётр играет на виолончели; концерт 12 мая.")
    );
    ctx.assert_consistent(user, &seeded).await;
}

/// A failing summariser changes nothing.
pub async fn a_failing_summariser_deletes_nothing(backend: Backend) {
    let ctx = Ctx::new(backend);
    let user = UserId::new(104);
    ctx.seed(user, 0, 30).await;
    let llm = Arc::new(FakeLlm::default());
    llm.push(butler_testkit::fakes::LlmStep::Fail(
        butler_domain::ports::LlmError::Timeout {
            after: std::time::Duration::from_secs(1),
        },
    ));
    assert!(ctx.compress(llm).execute(user).await.is_err());
    assert_eq!(ctx.stored(user).await.len(), 60);
    let profile = ctx.backend.profiles.get_or_create(user).await.unwrap();
    assert!(!profile.has_summary());
}

/// A crash after the summary is saved but before events are deleted: the next run completes
/// the deletion, and nothing newer than the watermark is ever lost.
pub async fn a_crash_between_summary_and_delete_is_repaired_by_the_next_run(backend: Backend) {
    let ctx = Ctx::new(backend);
    let user = UserId::new(105);
    let faulty = Arc::new(FaultyMemory::new(ctx.backend.memory.clone()));
    let mut seeded = ctx.seed(user, 0, 30).await;
    faulty.fail_deletes.store(true, Ordering::SeqCst);
    let compress = ctx.compress_on(
        faulty.clone(),
        summariser("Сводка."),
        CompressConfig::default(),
    );
    assert!(
        compress.execute(user).await.is_err(),
        "the injected crash surfaces"
    );
    let profile = ctx.backend.profiles.get(user).await.unwrap().unwrap();
    assert!(
        profile.has_summary(),
        "summary was persisted before the crash"
    );
    assert_eq!(ctx.stored(user).await.len(), 60, "nothing deleted yet");
    // Readers already ignore the covered events.
    let visible = ctx
        .backend
        .memory
        .recent(user, 100, profile.summary_watermark)
        .await
        .unwrap();
    assert_eq!(visible.len(), 20);
    ctx.assert_consistent(user, &seeded).await;

    faulty.fail_deletes.store(false, Ordering::SeqCst);
    seeded.extend(ctx.seed(user, 30, 1).await);
    let outcome = compress.execute(user).await.unwrap();
    assert!(
        matches!(
            outcome,
            CompressOutcome::NothingToDo { .. } | CompressOutcome::Compressed { .. }
        ),
        "{outcome:?}"
    );
    let stored = ctx.stored(user).await;
    assert!(stored.len() <= 22, "leftovers deleted: {}", stored.len());
    ctx.assert_consistent(user, &seeded).await;
}

/// The fact each compression of the overlap test extracts: the same key, its own wording.
fn dog_fact(name: &str) -> String {
    format!(r#"[{{"key":"dog_name","kind":"other","text":"Собаку зовут {name}"}}]"#)
}

/// A second compression of a conversation while one runs — in this process or another, on
/// the same storage — does nothing and asks the model nothing; the first completes, facts and
/// all.
pub async fn two_compressions_of_one_conversation_never_run_at_once(
    backend: Backend,
    rounds: usize,
) {
    let ctx = Ctx::new(backend);
    for round in 0..rounds {
        let user = UserId::new(1_000 + i64::try_from(round).unwrap());
        let seeded = ctx.seed(user, 0, 30).await;
        let (a, b) = (summariser("A"), summariser("B"));
        a.push_reply("A");
        a.push_reply(&dog_fact("Бим"));
        let gate = a.gate();
        let ca = ctx
            .compress(a.clone())
            .with_facts(ctx.backend.facts.clone());
        let cb = ctx
            .compress(b.clone())
            .with_facts(ctx.backend.facts.clone());
        let running = tokio::spawn(async move { ca.execute(user).await });
        while a.requests().is_empty() {
            tokio::task::yield_now().await;
        }
        let second = cb.execute(user).await.unwrap();
        assert_eq!(second, CompressOutcome::Busy, "round {round}");
        assert!(b.requests().is_empty(), "the second run asked the model");
        gate.add_permits(2);
        let first = running.await.unwrap().unwrap();
        assert!(
            matches!(first, CompressOutcome::Compressed { facts: 1, .. }),
            "{first:?}"
        );
        let facts = ctx.backend.facts.current(user, 10).await.unwrap();
        assert_eq!(facts.len(), 1);
        assert_eq!(facts[0].text, "Собаку зовут Бим");
        ctx.assert_consistent(user, &seeded).await;
        // The lease is given back: the next run may start.
        ctx.seed(user, 30, 25).await;
        let next = ctx.compress(summariser("C")).execute(user).await.unwrap();
        assert_eq!(next.status(), "ok", "{next:?}");
    }
}

/// Two compressions that overlap all the same (each holds a lease the other never saw — as
/// when a lease expired under a stalled process), both extracting the same key: the first to
/// finish wins the compare-and-set, the other's fact arrives later and supersedes the
/// winner's, then it loses. One summary is written, no event is lost, and the key keeps a
/// current fact — whichever order they finish in.
pub async fn two_overlapping_compressions_write_one_summary_and_lose_no_event_or_fact(
    backend: Backend,
    rounds: usize,
) {
    let ctx = Ctx::new(backend);
    for round in 0..rounds {
        let user = UserId::new(3_000 + i64::try_from(round).unwrap());
        let seeded = ctx.seed(user, 0, 30).await;
        let created = ctx.backend.profiles.get_or_create(user).await.unwrap();
        let (a, b) = (summariser("A"), summariser("B"));
        a.push_reply("A");
        a.push_reply(&dog_fact("Бим"));
        b.push_reply("B");
        b.push_reply(&dog_fact("Рекс"));
        let (gate_a, gate_b) = (a.gate(), b.gate());
        let memory = ctx.backend.memory.clone();
        let ca = ctx
            .compress_with(
                memory.clone(),
                a.clone(),
                Arc::new(InMemoryInbox::default()),
                CompressConfig::default(),
            )
            .with_facts(ctx.backend.facts.clone());
        let cb = ctx
            .compress_with(
                memory,
                b.clone(),
                Arc::new(InMemoryInbox::default()),
                CompressConfig::default(),
            )
            .with_facts(ctx.backend.facts.clone());
        let ta = tokio::spawn(async move { ca.execute(user).await });
        let tb = tokio::spawn(async move { cb.execute(user).await });
        // Both have read the same profile version once each is waiting in its model.
        while a.requests().is_empty() || b.requests().is_empty() {
            tokio::task::yield_now().await;
        }
        let ((winner, winner_gate, winner_task), (loser, loser_gate, loser_task)) =
            if round % 2 == 0 {
                (("A", gate_a, ta), ("B", gate_b, tb))
            } else {
                (("B", gate_b, tb), ("A", gate_a, ta))
            };
        // The winner finishes first; the loser's fact is stamped later, so it supersedes the
        // winner's before the loser finds its compare-and-set lost.
        winner_gate.add_permits(2);
        let won = winner_task.await.unwrap().unwrap();
        assert_eq!(won.status(), "ok", "{winner}: {won:?}");
        ctx.clock.advance(time::Duration::seconds(1));
        loser_gate.add_permits(2);
        let lost = loser_task.await.unwrap().unwrap();
        assert_eq!(lost.status(), "conflict", "{loser}: {lost:?}");

        let profile = ctx.backend.profiles.get(user).await.unwrap().unwrap();
        assert_eq!(
            profile.version,
            created.version + 1,
            "exactly one summary written"
        );
        assert_eq!(profile.memory_summary.as_deref(), Some(winner));
        ctx.assert_consistent(user, &seeded).await;
        assert_eq!(ctx.stored(user).await.len(), 20);
        let current = ctx.backend.facts.current(user, 10).await.unwrap();
        assert_eq!(
            current.len(),
            1,
            "the key keeps exactly one current fact: {current:?}"
        );
        assert_eq!(current[0].key.as_str(), "dog_name");
    }
}

/// Events appended while a compression waits for the model are newer than its watermark and
/// survive it.
pub async fn events_appended_during_a_compression_survive_it(backend: Backend, rounds: usize) {
    let ctx = Ctx::new(backend);
    for round in 0..rounds {
        let user = UserId::new(2_000 + i64::try_from(round).unwrap());
        let mut seeded = ctx.seed(user, 0, 30).await;
        let llm = summariser("Сводка.");
        let gate = llm.gate();
        let compress = ctx.compress(llm.clone());
        let task = tokio::spawn(async move { compress.execute(user).await });
        // Wait until the compression has read its events and waits for the model.
        while llm.requests().is_empty() {
            tokio::task::yield_now().await;
        }
        seeded.extend(ctx.seed(user, 100, 5).await);
        gate.add_permits(10);
        task.await.unwrap().unwrap();
        let stored = ctx.stored(user).await;
        assert_eq!(
            stored.len(),
            30,
            "20 kept + 10 appended during compression (a run does not chase new events)"
        );
        assert_eq!(summariser_calls(&llm), 1, "one summariser call");
        assert!(stored.iter().any(|e| e.content == "ответ 104"));
        ctx.assert_consistent(user, &seeded).await;
    }
}

/// A reset while a reply is being written waits for it: `Busy`, nothing touched; once the
/// reply's lease is given back, the reset goes through.
pub async fn a_reset_waits_for_the_reply_in_flight(backend: Backend) {
    let ctx = Ctx::new(backend);
    let user = UserId::new(110);
    ctx.seed(user, 0, 3).await;
    let reply = ctx
        .backend
        .leases
        .acquire(
            user.get(),
            LeaseScope::Replies,
            ctx.clock.now(),
            time::Duration::seconds(30),
        )
        .await
        .unwrap()
        .expect("the reply's lease");
    let refused = ctx.reset().execute(user).await;
    assert!(matches!(refused, Err(ResetError::Busy)), "{refused:?}");
    assert_eq!(ctx.stored(user).await.len(), 6, "nothing touched");
    ctx.backend.leases.release(&reply).await.unwrap();
    let out = ctx.reset().execute(user).await.unwrap();
    assert_eq!(out.events_deleted, 6);
    // The reset gave both leases back.
    for scope in LeaseScope::ALL {
        assert!(ctx
            .backend
            .leases
            .acquire(
                user.get(),
                scope,
                ctx.clock.now(),
                time::Duration::seconds(30)
            )
            .await
            .unwrap()
            .is_some());
    }
}

/// A reset while a compression is in flight: the compression's summary never survives.
pub async fn a_reset_racing_a_compression_leaves_no_summary(backend: Backend) {
    let ctx = Ctx::new(backend);
    let user = UserId::new(106);
    ctx.seed(user, 0, 30).await;
    let llm = summariser("секреты прошлого");
    let gate = llm.gate();
    let compress = ctx.compress(llm.clone());
    let llm_seen = llm.clone();
    let task = tokio::spawn(async move { compress.execute(user).await });
    while llm_seen.requests().is_empty() {
        tokio::task::yield_now().await;
    }
    let out = ctx.reset().execute(user).await.unwrap();
    assert_eq!(out.events_deleted, 60);
    gate.add_permits(10);
    let outcome = task.await.unwrap().unwrap();
    assert_eq!(outcome.status(), "conflict");
    let profile = ctx.backend.profiles.get(user).await.unwrap().unwrap();
    assert!(!profile.has_summary());
    assert!(profile.summary_watermark.is_none());
    assert!(ctx.stored(user).await.is_empty());
}

/// With facts on: the facts of the folded turns are stored and current, and a reset that wins
/// against a compression in flight leaves neither a summary nor a fact of the forgotten turns.
pub async fn facts_are_stored_by_a_compression_and_a_racing_reset_leaves_none(backend: Backend) {
    let ctx = Ctx::new(backend);
    let extracted = r#"[{"key":"sister_name","kind":"person","text":"Сестру зовут Анна"},
        {"key":"home_city","kind":"place","text":"Живёт в Твери"}]"#;
    // A whole compression: summary, then the facts.
    let user = UserId::new(108);
    ctx.seed(user, 0, 30).await;
    let llm = Arc::new(FakeLlm::default());
    llm.push_reply("Сводка.");
    llm.push_reply(extracted);
    let outcome = ctx
        .compress(llm.clone())
        .with_facts(ctx.backend.facts.clone())
        .execute(user)
        .await
        .unwrap();
    assert!(
        matches!(outcome, CompressOutcome::Compressed { facts: 2, .. }),
        "{outcome:?}"
    );
    let found = ctx
        .backend
        .facts
        .search(user, "Как зовут мою сестру?", 5)
        .await
        .unwrap();
    assert_eq!(found[0].fact.text, "Сестру зовут Анна");
    assert_eq!(ctx.stored(user).await.len(), 20);

    // A reset while the extraction is in flight.
    let user = UserId::new(109);
    ctx.seed(user, 0, 30).await;
    let llm = Arc::new(FakeLlm::default());
    let gate = llm.gate();
    llm.push_reply("Сводка.");
    llm.push_reply(extracted);
    let compress = ctx
        .compress(llm.clone())
        .with_facts(ctx.backend.facts.clone());
    let task = tokio::spawn(async move { compress.execute(user).await });
    gate.add_permits(1);
    while llm.requests().len() < 2 {
        tokio::task::yield_now().await;
    }
    ctx.reset().execute(user).await.unwrap();
    gate.add_permits(1);
    let outcome = task.await.unwrap().unwrap();
    assert_eq!(outcome.status(), "conflict");
    assert!(ctx.backend.facts.all(user).await.unwrap().is_empty());
    assert!(ctx.stored(user).await.is_empty());
    // The first user's facts were not touched.
    assert_eq!(
        ctx.backend.facts.all(UserId::new(108)).await.unwrap().len(),
        2
    );
}

/// A large backlog is folded in bounded passes, oldest first, keeping the newest 20.
pub async fn a_large_backlog_is_folded_in_bounded_passes(backend: Backend, turns: usize) {
    let ctx = Ctx::new(backend);
    let user = UserId::new(107);
    let seeded = ctx.seed(user, 0, turns).await;
    let config = CompressConfig {
        max_passes: 1_000,
        ..CompressConfig::default()
    };
    let llm = summariser("Сводка.");
    let outcome = ctx
        .compress_on(ctx.backend.memory.clone(), llm.clone(), config)
        .execute(user)
        .await
        .unwrap();
    let CompressOutcome::Compressed {
        passes, remaining, ..
    } = outcome
    else {
        panic!("{outcome:?}")
    };
    assert_eq!(remaining, 20);
    assert!(
        passes >= (turns * 2 - 20) / config.fold_max_events,
        "passes {passes}"
    );
    assert_eq!(summariser_calls(&llm), passes);
    ctx.assert_consistent(user, &seeded).await;
}

/// A reset takes the compression's lease over: a compression waiting in its summariser when
/// the reset runs stops at its next step — it asks the model nothing more (no extraction) and
/// writes nothing, facts included.
pub async fn a_reset_stops_a_compression_in_flight_before_its_next_write(backend: Backend) {
    let ctx = Ctx::new(backend);
    let user = UserId::new(111);
    ctx.seed(user, 0, 30).await;
    let llm = Arc::new(FakeLlm::default());
    llm.push_reply("секреты прошлого");
    llm.push_reply(&dog_fact("Бим"));
    let gate = llm.gate();
    let compress = ctx.compress(llm.clone());
    let task = tokio::spawn(async move { compress.execute(user).await });
    while llm.requests().is_empty() {
        tokio::task::yield_now().await;
    }
    ctx.reset().execute(user).await.unwrap();
    gate.add_permits(10);
    let outcome = task.await.unwrap().unwrap();
    assert_eq!(outcome.status(), "conflict", "{outcome:?}");
    assert_eq!(
        llm.requests().len(),
        1,
        "the compression stopped after its summariser: no extraction call"
    );
    assert!(ctx.backend.facts.all(user).await.unwrap().is_empty());
    let profile = ctx.backend.profiles.get(user).await.unwrap().unwrap();
    assert!(!profile.has_summary());
}

/// A compression that lost to a reset without noticing (its lease lost to a stalled process:
/// the reset and it hold leases of separate stores) saves the facts it extracted, loses the
/// compare-and-set, finds their turns forgotten and takes them back: no fact of forgotten
/// events survives.
pub async fn a_compression_that_lost_to_a_reset_takes_its_facts_back(backend: Backend) {
    let ctx = Ctx::new(backend);
    let user = UserId::new(113);
    ctx.seed(user, 0, 30).await;
    let llm = Arc::new(FakeLlm::default());
    llm.push_reply("Сводка.");
    llm.push_reply(&dog_fact("Бим"));
    let gate = llm.gate();
    let compress = ctx.compress_with(
        ctx.backend.memory.clone(),
        llm.clone(),
        Arc::new(InMemoryInbox::default()),
        CompressConfig::default(),
    );
    let task = tokio::spawn(async move { compress.execute(user).await });
    // The summary is written; the run waits in its extraction when the reset runs.
    gate.add_permits(1);
    while llm.requests().len() < 2 {
        tokio::task::yield_now().await;
    }
    let out = ctx.reset().execute(user).await.unwrap();
    assert_eq!(out.facts_deleted, 0, "nothing saved yet");
    gate.add_permits(1);
    let outcome = task.await.unwrap().unwrap();
    assert_eq!(outcome.status(), "conflict", "{outcome:?}");
    assert!(
        ctx.backend.facts.all(user).await.unwrap().is_empty(),
        "the fact saved after the reset was taken back"
    );
    let profile = ctx.backend.profiles.get(user).await.unwrap().unwrap();
    assert!(!profile.has_summary());
    assert!(ctx.stored(user).await.is_empty());
}

/// A compression renews its lease before every step that writes: one that outlived its lease
/// while waiting in the model — and whose lease a second run took meanwhile — stops without
/// writing anything, and the second run's summary stands.
pub async fn a_compression_that_outlived_its_lease_stops_without_writing(backend: Backend) {
    let ctx = Ctx::new(backend);
    let user = UserId::new(112);
    let seeded = ctx.seed(user, 0, 30).await;
    let created = ctx.backend.profiles.get_or_create(user).await.unwrap();
    let config = CompressConfig {
        lease: time::Duration::seconds(30),
        ..CompressConfig::default()
    };
    let first = Arc::new(FakeLlm::default());
    first.push_reply("A");
    first.push_reply(&dog_fact("Бим"));
    let gate = first.gate();
    let stalled = ctx.compress_on(ctx.backend.memory.clone(), first.clone(), config);
    let task = tokio::spawn(async move { stalled.execute(user).await });
    while first.requests().is_empty() {
        tokio::task::yield_now().await;
    }
    // The model takes longer than the lease; a second run finds the lease expired and takes it.
    ctx.clock.advance(time::Duration::seconds(31));
    let second = ctx
        .compress_on(ctx.backend.memory.clone(), summariser("B"), config)
        .execute(user)
        .await
        .unwrap();
    assert_eq!(second.status(), "ok", "{second:?}");
    gate.add_permits(10);
    let outcome = task.await.unwrap().unwrap();
    assert_eq!(outcome.status(), "conflict", "{outcome:?}");
    assert_eq!(
        first.requests().len(),
        1,
        "no extraction after the lease was lost"
    );
    assert!(ctx.backend.facts.all(user).await.unwrap().is_empty());
    let profile = ctx.backend.profiles.get(user).await.unwrap().unwrap();
    assert_eq!(profile.memory_summary.as_deref(), Some("B"));
    assert_eq!(profile.version, created.version + 1);
    ctx.assert_consistent(user, &seeded).await;
}

/// A fact store that takes the compression's lease over (as a reset would) right after it
/// saved: the moment between a pass's fact save and its summary's.
struct TakenOverAfterSave {
    inner: Arc<dyn FactRepository>,
    leases: Arc<dyn ConversationLeases>,
    clock: Arc<ManualClock>,
}

#[async_trait::async_trait]
impl FactRepository for TakenOverAfterSave {
    async fn save(
        &self,
        facts: &[butler_domain::MemoryFact],
    ) -> Result<butler_domain::ports::SavedFacts, butler_domain::ports::FactStoreError> {
        let saved = self.inner.save(facts).await?;
        if let Some(fact) = facts.first() {
            self.leases
                .take_over(
                    fact.user_id.get(),
                    LeaseScope::Compression,
                    self.clock.now(),
                    time::Duration::seconds(60),
                )
                .await
                .unwrap();
        }
        Ok(saved)
    }

    async fn current(
        &self,
        user_id: UserId,
        limit: usize,
    ) -> Result<Vec<butler_domain::MemoryFact>, butler_domain::ports::FactStoreError> {
        self.inner.current(user_id, limit).await
    }

    async fn search(
        &self,
        user_id: UserId,
        query: &str,
        limit: usize,
    ) -> Result<Vec<butler_domain::FactMatch>, butler_domain::ports::FactStoreError> {
        self.inner.search(user_id, query, limit).await
    }

    async fn all(
        &self,
        user_id: UserId,
    ) -> Result<Vec<butler_domain::MemoryFact>, butler_domain::ports::FactStoreError> {
        self.inner.all(user_id).await
    }

    async fn delete(
        &self,
        user_id: UserId,
        fact_id: uuid::Uuid,
    ) -> Result<bool, butler_domain::ports::FactStoreError> {
        self.inner.delete(user_id, fact_id).await
    }

    async fn delete_all(
        &self,
        user_id: UserId,
    ) -> Result<u64, butler_domain::ports::FactStoreError> {
        self.inner.delete_all(user_id).await
    }

    async fn delete_older_than(
        &self,
        cutoff: time::OffsetDateTime,
    ) -> Result<u64, butler_domain::ports::FactStoreError> {
        self.inner.delete_older_than(cutoff).await
    }
}

/// The lease is renewed between a pass's fact save and its summary's: a compression whose
/// lease was taken over right after it saved its facts writes no summary and deletes no event
/// (its facts stay: their turns are still stored).
pub async fn a_compression_whose_lease_is_taken_after_its_fact_save_writes_no_summary(
    backend: Backend,
) {
    let ctx = Ctx::new(backend);
    let user = UserId::new(114);
    ctx.seed(user, 0, 30).await;
    let llm = Arc::new(FakeLlm::default());
    llm.push_reply("Сводка.");
    llm.push_reply(&dog_fact("Бим"));
    let facts = Arc::new(TakenOverAfterSave {
        inner: ctx.backend.facts.clone(),
        leases: ctx.backend.leases.clone(),
        clock: ctx.clock.clone(),
    });
    let outcome = ctx
        .compress(llm.clone())
        .with_facts(facts)
        .execute(user)
        .await
        .unwrap();
    assert_eq!(outcome.status(), "conflict", "{outcome:?}");
    let profile = ctx.backend.profiles.get(user).await.unwrap().unwrap();
    assert!(
        !profile.has_summary(),
        "no summary written after the lease was lost"
    );
    assert_eq!(ctx.stored(user).await.len(), 60, "no event deleted");
    assert_eq!(ctx.backend.facts.all(user).await.unwrap().len(), 1);
}
