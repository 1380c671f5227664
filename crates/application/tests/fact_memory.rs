//! Long-term facts end to end over the fakes: a compression extracts them from the turns it
//! folds and stores them before deleting anything; updates supersede by key; a failed
//! extraction never blocks the summary; replies carry the core facts in the system message and
//! the relevant ones beside the new message, within the budget.

mod support;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use butler_application::memory::ExtractionFailure;
use butler_application::prompt::templates;
use butler_application::{CompressConfig, CompressOutcome, PromptBudget, ReplyInput, ReplyStatus};
use butler_domain::ports::{
    FactRepository, FactStoreError, LlmError, SavedFacts, UserMemoryRepository,
    UserProfileRepository,
};
use butler_domain::{
    ChatRole, FactKind, FactMatch, MemoryFact, MemorySlice, Source, UserId, UserProfile,
};
use butler_testkit::fakes::{FakeLlm, InMemoryFacts, InMemoryMemory, LlmStep};
use time::OffsetDateTime;
use uuid::Uuid;

use support::World;

const USER: UserId = UserId::new(7);

/// What the oracle extractor answers for the folded turns.
const EXTRACTED: &str = r#"Here you are:
```json
[{"key": "sister_name", "kind": "person", "text": "Сестру зовут Анна"},
 {"key": "concert_date", "kind": "date", "text": "Концерт в субботу в 19:00"},
 {"key": "home city", "kind": "place", "text": "Живёт в Твери"}]
```"#;

fn fact(key: &str, kind: FactKind, text: &str, at: OffsetDateTime) -> MemoryFact {
    MemoryFact::new(USER, key, kind, text, vec![], at).unwrap()
}

/// A world with 30 turns (60 events) for [`USER`], over the default threshold of 50.
async fn world_over_threshold() -> World {
    let w = World::default();
    w.seed_turns(USER, 0, 30).await;
    w
}

fn failures() -> (
    Arc<Mutex<Vec<ExtractionFailure>>>,
    butler_application::memory::ExtractionFailureHook,
) {
    let seen: Arc<Mutex<Vec<ExtractionFailure>>> = Arc::default();
    let hook_seen = seen.clone();
    (seen, Arc::new(move |f| hook_seen.lock().unwrap().push(f)))
}

/// A fact store that records, at each save, how many events the user still had.
struct Watching {
    inner: InMemoryFacts,
    memory: Arc<InMemoryMemory>,
    events_at_save: Mutex<Vec<u64>>,
}

#[async_trait]
impl FactRepository for Watching {
    async fn save(&self, facts: &[MemoryFact]) -> Result<SavedFacts, FactStoreError> {
        let events = self.memory.count(USER).await.unwrap();
        self.events_at_save.lock().unwrap().push(events);
        self.inner.save(facts).await
    }
    async fn current(&self, u: UserId, l: usize) -> Result<Vec<MemoryFact>, FactStoreError> {
        self.inner.current(u, l).await
    }
    async fn search(&self, u: UserId, q: &str, l: usize) -> Result<Vec<FactMatch>, FactStoreError> {
        self.inner.search(u, q, l).await
    }
    async fn all(&self, u: UserId) -> Result<Vec<MemoryFact>, FactStoreError> {
        self.inner.all(u).await
    }
    async fn delete(&self, u: UserId, id: Uuid) -> Result<bool, FactStoreError> {
        self.inner.delete(u, id).await
    }
    async fn delete_all(&self, u: UserId) -> Result<u64, FactStoreError> {
        self.inner.delete_all(u).await
    }
    async fn delete_older_than(&self, c: OffsetDateTime) -> Result<u64, FactStoreError> {
        self.inner.delete_older_than(c).await
    }
}

#[tokio::test]
async fn a_compression_stores_the_facts_of_the_folded_turns_before_deleting_them() {
    let w = world_over_threshold().await;
    let facts = Arc::new(Watching {
        inner: InMemoryFacts::default(),
        memory: w.memory.clone(),
        events_at_save: Mutex::default(),
    });
    w.llm.push_reply("Сводка: сестра Анна, концерт в субботу.");
    w.llm.push_reply(EXTRACTED);
    let outcome = w
        .compress()
        .with_facts(facts.clone())
        .execute(USER)
        .await
        .unwrap();
    let CompressOutcome::Compressed {
        folded,
        facts: stored,
        ..
    } = outcome
    else {
        panic!("{outcome:?}")
    };
    assert_eq!((folded, stored), (40, 3));
    assert_eq!(
        *facts.events_at_save.lock().unwrap(),
        [60],
        "saved before any delete"
    );
    assert_eq!(w.memory.count(USER).await.unwrap(), 20);

    let requests = w.llm.requests();
    assert_eq!(requests.len(), 2, "one summary, one extraction");
    let extraction = &requests[1];
    assert_eq!(
        extraction.messages[0].content,
        templates::extractor_system(butler_domain::Language::Ru)
    );
    let input: serde_json::Value = serde_json::from_str(&extraction.messages[1].content).unwrap();
    assert_eq!(input["conversation"].as_array().unwrap().len(), 40);
    assert_eq!(input["known_facts"], serde_json::json!([]));

    let current = facts.current(USER, 10).await.unwrap();
    let mut keys: Vec<&str> = current.iter().map(|f| f.key.as_str()).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["concert_date", "home_city", "sister_name"]);
    let folded_user_events: Vec<Uuid> = {
        let all = w.memory.all(USER);
        all.iter().map(|e| e.event_id).collect()
    };
    for f in &current {
        assert!(!f.source_events.is_empty() && f.source_events.len() <= 16);
        assert!(
            f.source_events
                .iter()
                .all(|id| !folded_user_events.contains(id)),
            "sources are the folded (now deleted) events"
        );
    }
}

#[tokio::test]
async fn an_update_supersedes_the_known_fact_of_its_key_and_a_repeat_is_not_stored_again() {
    let w = world_over_threshold().await;
    let facts = Arc::new(InMemoryFacts::default());
    let at = OffsetDateTime::now_utc() - time::Duration::days(30);
    let kazan = fact("home_city", FactKind::Place, "Живёт в Казани", at);
    let sister = fact("sister_name", FactKind::Person, "Сестру зовут Анна", at);
    facts.save(&[kazan.clone(), sister.clone()]).await.unwrap();
    w.llm.push_reply("Сводка.");
    w.llm.push_reply(
        r#"[{"key":"home_city","kind":"place","text":"Переехал из Казани в Тверь"},
            {"key":"sister_name","kind":"person","text":"Сестру зовут Анна"}]"#,
    );
    let outcome = w
        .compress()
        .with_facts(facts.clone())
        .execute(USER)
        .await
        .unwrap();
    assert!(
        matches!(outcome, CompressOutcome::Compressed { facts: 1, .. }),
        "{outcome:?}"
    );
    let input: serde_json::Value =
        serde_json::from_str(&w.llm.requests()[1].messages[1].content).unwrap();
    let known: Vec<&str> = input["known_facts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        known.len(),
        2,
        "the extractor sees the keys it may update: {known:?}"
    );

    let all = facts.all(USER).await.unwrap();
    assert_eq!(
        all.len(),
        3,
        "the repeat of the sister was not stored: {all:?}"
    );
    let current = facts.current(USER, 10).await.unwrap();
    let city = current
        .iter()
        .find(|f| f.key.as_str() == "home_city")
        .unwrap();
    assert_eq!(city.text, "Переехал из Казани в Тверь");
    let old = all.iter().find(|f| f.id == kazan.id).unwrap();
    assert_eq!(old.superseded_by, Some(city.id), "one truth per key");
    let found = facts
        .search(USER, "В каком городе я живу?", 5)
        .await
        .unwrap();
    assert!(
        found.iter().all(|m| m.fact.id != kazan.id),
        "superseded facts are never found"
    );
}

#[tokio::test]
async fn an_update_is_found_by_the_same_question_whether_worded_as_the_change_or_the_present() {
    // The extractor is told to state the present; a model that words the update as the change
    // anyway, without search terms, still gets the subject's cues of the fact it replaces.
    for wording in [
        r#"{"facts":[{"key":"home_city","kind":"place","text":"Переехал из Казани в Пермь","terms":[]}]}"#,
        r#"{"facts":[{"key":"home_city","kind":"place","text":"Живёт в Перми; раньше — в Казани","terms":["жить","город"]}]}"#,
    ] {
        let w = world_over_threshold().await;
        let facts = Arc::new(InMemoryFacts::default());
        let at = OffsetDateTime::now_utc() - time::Duration::days(30);
        let kazan = fact("home_city", FactKind::Place, "Живёт в Казани", at).with_cues([
            "жить",
            "город",
            "дом",
        ]);
        facts.save(std::slice::from_ref(&kazan)).await.unwrap();
        w.llm.push_reply("Сводка.");
        w.llm.push_reply(wording);
        w.compress()
            .with_facts(facts.clone())
            .execute(USER)
            .await
            .unwrap();
        for question in ["Где я живу?", "Какой у меня город?"] {
            let found = facts.search(USER, question, 5).await.unwrap();
            assert!(
                found
                    .first()
                    .is_some_and(|m| m.fact.key.as_str() == "home_city"
                        && m.fact.id != kazan.id
                        && m.fact.text.contains("Перм")),
                "{question:?} after {wording}: {found:?}"
            );
        }
    }
}

#[tokio::test]
async fn a_quiet_moment_makes_an_update_a_current_fact_and_a_later_fold_never_brings_the_old_one_back(
) {
    let w = World::default();
    let facts = Arc::new(InMemoryFacts::default());
    let said = |text: &str| (text.to_owned(), "Запомню, сэр.".to_owned());
    w.seed_exchanges(USER, [said("Я живу в Казани.")]).await;
    w.seed_turns(USER, 0, 15).await;
    w.seed_exchanges(USER, [said("Мы переехали в Пермь.")])
        .await; // 34 events
    let compress = w.compress().with_facts(facts.clone());
    let city = |f: &MemoryFact| f.key.as_str() == "home_city";

    // Quiet, no compression due (34 ≤ 50): the facts are extracted, nothing is deleted.
    w.llm.push_reply(
        r#"{"facts":[{"key":"home_city","kind":"place","text":"Живёт в Казани","terms":[]},
            {"key":"home_city","kind":"place","text":"Живёт в Перми; раньше — в Казани","terms":[]}]}"#,
    );
    let outcome = compress.execute_when_quiet(USER).await.unwrap();
    assert_eq!(
        outcome,
        CompressOutcome::Extracted {
            facts: 1,
            events: 34
        },
        "the batch's last word on a key is stored"
    );
    assert_eq!(w.memory.count(USER).await.unwrap(), 34, "nothing deleted");
    let current = facts.current(USER, 10).await.unwrap();
    assert!(
        current.iter().any(|f| city(f) && f.text.contains("Перми")),
        "{current:?}"
    );
    // Quiet again, nothing said since: no model call.
    let calls = w.llm.requests().len();
    assert!(matches!(
        compress.execute_when_quiet(USER).await.unwrap(),
        CompressOutcome::NothingToDo { .. }
    ));
    assert_eq!(w.llm.requests().len(), calls);

    // Later a compression folds the Kazan turn (the move stays among the kept turns) and the
    // extractor reads it again: as old as its turns, that fact cannot supersede the move.
    w.seed_turns(USER, 15, 9).await; // 52 events
    w.llm.push_reply("Сводка.");
    w.llm.push_reply(
        r#"{"facts":[{"key":"home_city","kind":"place","text":"Живёт в Казани","terms":[]}]}"#,
    );
    let outcome = compress.execute(USER).await.unwrap();
    assert!(
        matches!(outcome, CompressOutcome::Compressed { .. }),
        "{outcome:?}"
    );
    let current = facts.current(USER, 10).await.unwrap();
    let home: Vec<&MemoryFact> = current.iter().filter(|f| city(f)).collect();
    assert_eq!(home.len(), 1, "{current:?}");
    assert!(
        home[0].text.contains("Перми"),
        "the old value came back: {home:?}"
    );
}

#[tokio::test]
async fn a_failed_or_malformed_extraction_is_counted_and_never_blocks_the_summary() {
    for (step, expected) in [
        (
            LlmStep::Fail(LlmError::Timeout {
                after: std::time::Duration::from_secs(1),
            }),
            ExtractionFailure::Llm,
        ),
        (
            LlmStep::Reply("Конечно! Сестру зовут Анна, а концерт в субботу.".into()),
            ExtractionFailure::Malformed,
        ),
    ] {
        let w = world_over_threshold().await;
        let facts = Arc::new(InMemoryFacts::default());
        let (seen, hook) = failures();
        w.llm.push_reply("Сводка: сестра Анна.");
        w.llm.push(step);
        let outcome = w
            .compress()
            .with_facts(facts.clone())
            .on_extraction_failure(hook)
            .execute(USER)
            .await
            .unwrap();
        assert!(
            matches!(
                outcome,
                CompressOutcome::Compressed {
                    facts: 0,
                    folded: 40,
                    ..
                }
            ),
            "{outcome:?}"
        );
        let profile = w.profiles.get(USER).await.unwrap().unwrap();
        assert_eq!(
            profile.memory_summary.as_deref(),
            Some("Сводка: сестра Анна.")
        );
        assert_eq!(w.memory.count(USER).await.unwrap(), 20);
        assert!(facts.all(USER).await.unwrap().is_empty());
        assert_eq!(*seen.lock().unwrap(), [expected]);
    }
}

#[tokio::test]
async fn an_empty_list_is_nothing_new_not_a_failure() {
    let w = world_over_threshold().await;
    let facts = Arc::new(InMemoryFacts::default());
    let (seen, hook) = failures();
    w.llm.push_reply("Сводка.");
    w.llm.push_reply("[]");
    let outcome = w
        .compress()
        .with_facts(facts.clone())
        .on_extraction_failure(hook)
        .execute(USER)
        .await
        .unwrap();
    assert!(matches!(
        outcome,
        CompressOutcome::Compressed { facts: 0, .. }
    ));
    assert!(seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_failing_fact_store_stops_the_pass_before_anything_is_deleted() {
    let w = world_over_threshold().await;
    let facts = Arc::new(InMemoryFacts::default());
    facts.outage.set(true);
    let (seen, hook) = failures();
    w.llm.push_reply("Сводка.");
    let result = w
        .compress()
        .with_facts(facts.clone())
        .on_extraction_failure(hook)
        .execute(USER)
        .await;
    assert!(result.is_err(), "{result:?}");
    assert_eq!(w.memory.count(USER).await.unwrap(), 60, "nothing deleted");
    let profile = w.profiles.get(USER).await.unwrap().unwrap();
    assert_eq!(profile.memory_summary, None, "no summary without its facts");
    assert_eq!(*seen.lock().unwrap(), [ExtractionFailure::Storage]);
    assert_eq!(
        w.llm.requests().len(),
        1,
        "the store failed before the extraction call"
    );
    // Retried once the store is back: nothing was lost.
    facts.outage.set(false);
    w.llm.push_reply("Сводка.");
    w.llm.push_reply(EXTRACTED);
    w.compress()
        .with_facts(facts.clone())
        .execute(USER)
        .await
        .unwrap();
    assert_eq!(facts.current(USER, 10).await.unwrap().len(), 3);
}

#[tokio::test]
async fn a_pass_that_loses_its_compare_and_set_takes_its_facts_back() {
    let w = world_over_threshold().await;
    let facts = Arc::new(InMemoryFacts::default());
    let llm = Arc::new(FakeLlm::default());
    let gate = llm.gate();
    llm.push_reply("Сводка.");
    llm.push_reply(EXTRACTED);
    let compress = w
        .compress_with(llm.clone(), CompressConfig::default())
        .with_facts(facts.clone());
    let task = tokio::spawn(async move { compress.execute(USER).await });
    gate.add_permits(1);
    while llm.requests().len() < 2 {
        tokio::task::yield_now().await;
    }
    // While the extraction runs, a reset wins the profile.
    w.reset().execute(USER).await.unwrap();
    gate.add_permits(1);
    let outcome = task.await.unwrap().unwrap();
    assert_eq!(outcome.status(), "conflict");
    assert!(
        facts.all(USER).await.unwrap().is_empty(),
        "no fact of forgotten events"
    );
}

/// Facts of [`USER`]: two core ones (a person, a name) and three others.
async fn seed_reply_facts(facts: &InMemoryFacts) {
    let at = OffsetDateTime::now_utc();
    let ms = |n| at + time::Duration::milliseconds(n);
    facts
        .save(&[
            fact("sister_name", FactKind::Person, "Сестру зовут Анна", ms(0)),
            fact("dog_name", FactKind::Other, "Собаку зовут Бим", ms(1)),
            fact(
                "concert_date",
                FactKind::Date,
                "Концерт в субботу в 19:00",
                ms(2),
            ),
            fact("tea", FactKind::Preference, "Любит улун без сахара", ms(3)),
            fact(
                "promise_call",
                FactKind::Promise,
                "Обещал позвонить маме в воскресенье",
                ms(4),
            ),
        ])
        .await
        .unwrap();
}

#[tokio::test]
async fn a_reply_carries_core_facts_in_the_system_message_and_relevant_ones_beside_the_message() {
    let w = World::default();
    let facts = Arc::new(InMemoryFacts::default());
    seed_reply_facts(&facts).await;
    let reply = w.reply().with_facts(facts.clone());
    let out = reply
        .execute(ReplyInput {
            user_id: USER,
            text: "Напомни, когда концерт?".into(),
            source: Source::Text,
            origin: None,
        })
        .await;
    assert_eq!(out.status, ReplyStatus::Ok);
    assert_eq!(out.facts_used, 3, "two core facts and the concert");
    let request = &w.llm.requests()[0];
    let system = &request.messages[0].content;
    assert!(
        system.contains("Сестру зовут Анна") && system.contains("Собаку зовут Бим"),
        "{system}"
    );
    assert!(
        !system.contains("Концерт"),
        "relevant facts stay out of the system message"
    );
    let last = request.messages.last().unwrap();
    assert_eq!(last.role, ChatRole::User);
    assert!(
        last.content.contains("Концерт в субботу в 19:00"),
        "{}",
        last.content
    );
    assert!(
        last.content.ends_with("Напомни, когда концерт?"),
        "{}",
        last.content
    );
    assert!(!last.content.contains("улун") && !last.content.contains("маме"));

    // A message no fact bears on gets no note: the prompt stays a pure append.
    let out = reply
        .execute(ReplyInput {
            user_id: USER,
            text: "Добрый вечер!".into(),
            source: Source::Text,
            origin: None,
        })
        .await;
    assert_eq!(out.facts_used, 2);
    let second = &w.llm.requests()[1];
    assert_eq!(second.messages.last().unwrap().content, "Добрый вечер!");
    assert_eq!(
        second.messages[0].content, *system,
        "the system message did not change"
    );
    // Memory stores what the user wrote, not the note.
    let stored = w.memory.all(USER);
    assert_eq!(stored[0].content, "Напомни, когда концерт?");
}

#[tokio::test]
async fn a_failing_fact_store_degrades_the_reply_but_the_user_is_answered() {
    let w = World::default();
    let facts = Arc::new(InMemoryFacts::default());
    seed_reply_facts(&facts).await;
    facts.outage.set(true);
    w.llm.push_reply("Разумеется, сэр.");
    let out = w
        .reply()
        .with_facts(facts.clone())
        .execute(ReplyInput {
            user_id: USER,
            text: "Когда концерт?".into(),
            source: Source::Text,
            origin: None,
        })
        .await;
    assert_eq!(
        (out.reply.as_str(), out.status),
        ("Разумеется, сэр.", ReplyStatus::Degraded)
    );
    assert_eq!(out.facts_used, 0);
    assert_eq!(w.memory.count(USER).await.unwrap(), 2, "the turn is stored");
}

#[tokio::test]
async fn facts_share_the_memory_budget_and_never_push_the_prompt_over_it() {
    let w = World::default();
    let budget = PromptBudget {
        facts: 240,
        ..support::char_budget()
    };
    let service =
        butler_application::PersonalizationService::new(w.counter.clone(), budget).unwrap();
    let at = OffsetDateTime::now_utc();
    let many = |prefix: &str, kind| -> Vec<MemoryFact> {
        (0..40)
            .map(|i| {
                fact(
                    &format!("{prefix}_{i}"),
                    kind,
                    format!("{prefix} {i}: довольно длинный факт о жизни собеседника").as_str(),
                    at,
                )
            })
            .collect()
    };
    let events = w.seed_turns(USER, 0, 200).await;
    let message = "Когда концерт?";
    for (core, relevant) in [(40, 40), (0, 40), (40, 0), (1, 1)] {
        let slice = MemorySlice {
            events: events.clone(),
            summary: Some("Сводка ".repeat(60)),
            total_events: 400,
            core_facts: many("person", FactKind::Person)[..core].to_vec(),
            relevant_facts: many("other", FactKind::Other)[..relevant].to_vec(),
        };
        let profile = UserProfile::default_at(USER, at);
        let prompt = service.build(&profile, &slice, message).await;
        // The counter counts characters, so lengths are token counts here.
        let chars = |s: &str| s.chars().count();
        assert!(
            prompt.token_count <= budget.total,
            "{} > {}",
            prompt.token_count,
            budget.total
        );
        let intro = templates::core_facts_section(profile.language, &[]);
        let intro = intro.lines().next().unwrap();
        let core_tokens = prompt
            .system
            .find(intro)
            .map_or(0, |at| chars(&prompt.system[at..]));
        let note_tokens = chars(&prompt.new_message) - chars(message);
        assert!(core_tokens <= budget.facts / 2, "core facts {core_tokens}");
        assert!(
            core_tokens + note_tokens <= budget.facts,
            "facts {core_tokens} + {note_tokens}"
        );
        let turns: usize = prompt
            .turns
            .iter()
            .map(|t| chars(&t.content) + budget.per_message_overhead)
            .sum();
        assert!(
            turns + core_tokens + note_tokens <= budget.memory,
            "turns {turns} and facts share the memory section ({})",
            budget.memory
        );
        assert_eq!(prompt.facts_used > 0, core + relevant > 0);
        assert!(prompt.new_message.ends_with(message));
    }
}

#[tokio::test]
async fn a_core_fact_the_system_message_has_no_room_for_is_shown_when_asked_about() {
    let w = World::default();
    let at = OffsetDateTime::now_utc();
    let ms = |n| at + time::Duration::milliseconds(n);
    let facts = Arc::new(InMemoryFacts::default());
    facts
        .save(&[
            fact(
                "a_brother_name",
                FactKind::Person,
                "Брата зовут Олег, он живёт в Казани и чинит часы",
                ms(0),
            ),
            fact(
                "b_sister_name",
                FactKind::Person,
                "Сестру зовут Анна, она учит детей играть на скрипке",
                ms(1),
            ),
            fact(
                "c_nephew_name",
                FactKind::Person,
                "Племянника зовут Миша, ему семь лет, любит динозавров",
                ms(2),
            ),
        ])
        .await
        .unwrap();
    // Room for one core fact in the system message (characters are tokens here), and for one
    // fact in the note.
    let budget = PromptBudget {
        facts: 300,
        ..support::char_budget()
    };
    let reply = w
        .reply_within(butler_application::ReplyConfig::default(), budget)
        .with_facts(facts);
    let out = reply
        .execute(ReplyInput {
            user_id: USER,
            text: "Как зовут племянника?".into(),
            source: Source::Text,
            origin: None,
        })
        .await;
    assert_eq!(out.facts_used, 2, "{out:?}");
    let request = &w.llm.requests()[0];
    let system = &request.messages[0].content;
    assert!(system.contains("Брата зовут Олег"), "{system}");
    assert!(!system.contains("Анна"), "{system}");
    assert!(
        !system.contains("Миша"),
        "no room for the third in the system message"
    );
    let last = &request.messages.last().unwrap().content;
    assert!(last.contains("Племянника зовут Миша"), "{last}");
    assert!(
        !last.contains("Олег"),
        "a fact already shown is not repeated: {last}"
    );
}

#[tokio::test]
async fn with_no_room_for_facts_a_reply_does_not_read_the_fact_store() {
    let w = World::default();
    let facts = Arc::new(InMemoryFacts::default());
    seed_reply_facts(&facts).await;
    // A store that would fail: a read would degrade the reply.
    facts.outage.set(true);
    let budget = PromptBudget {
        facts: 0,
        ..support::char_budget()
    };
    let reply = w
        .reply_within(butler_application::ReplyConfig::default(), budget)
        .with_facts(facts);
    let out = reply
        .execute(ReplyInput {
            user_id: USER,
            text: "Когда концерт?".into(),
            source: Source::Text,
            origin: None,
        })
        .await;
    assert_eq!((out.status, out.facts_used), (ReplyStatus::Ok, 0));
}

#[tokio::test]
async fn the_users_own_name_learnt_first_is_a_core_fact_with_sixty_newer_facts_stored() {
    let w = World::default();
    let facts = Arc::new(InMemoryFacts::default());
    let at = OffsetDateTime::now_utc();
    let ms = |n| at + time::Duration::milliseconds(n);
    let mut batch = vec![fact("name", FactKind::Person, "Зовут Пётр", ms(0))];
    // Sixty newer facts, people among them whose keys sort before `name`.
    for i in 0..60 {
        batch.push(fact(
            &format!("acquaintance_{i:02}_name"),
            FactKind::Person,
            &format!("Знакомого номер {i} зовут Иван"),
            ms(1 + i),
        ));
    }
    batch.push(fact(
        "wife_name",
        FactKind::Person,
        "Жену зовут Ольга",
        ms(100),
    ));
    facts.save(&batch).await.unwrap();
    let out = w
        .reply()
        .with_facts(facts.clone())
        .execute(ReplyInput {
            user_id: USER,
            text: "Добрый вечер!".into(),
            source: Source::Text,
            origin: None,
        })
        .await;
    assert_eq!(out.status, ReplyStatus::Ok);
    let system = &w.llm.requests()[0].messages[0].content;
    let name = system.find("Зовут Пётр").expect("the user's name is shown");
    let wife = system
        .find("Жену зовут Ольга")
        .expect("the partner is shown");
    assert!(name < wife, "own name first, then the partner:\n{system}");
    if let Some(other) = system.find("Знакомого номер") {
        assert!(wife < other, "other people after the closest:\n{system}");
    }
}

#[tokio::test]
async fn a_reset_deletes_the_users_reminders_and_no_one_elses() {
    use butler_domain::ports::{Clock, ReminderRepository};
    use butler_domain::reminder::{Reminder, UserTimeZone};
    use butler_testkit::fakes::InMemoryReminders;

    let other = UserId::new(8);
    let w = World::default();
    w.seed_turns(USER, 0, 2).await;
    let reminders = Arc::new(InMemoryReminders::default());
    let zone = UserTimeZone::new("Europe/Moscow").unwrap();
    let now = w.clock.now();
    for (user, text) in [
        (USER, "позвонить маме"),
        (USER, "про концерт"),
        (other, "хлеб"),
    ] {
        let reminder = Reminder::new(
            user,
            user.get(),
            text,
            now + time::Duration::hours(1),
            &zone,
            now,
        )
        .unwrap();
        reminders.add(&reminder).await.unwrap();
    }
    let out = w
        .reset()
        .with_reminders(reminders.clone())
        .execute(USER)
        .await
        .unwrap();
    assert_eq!(out.reminders_deleted, 2);
    assert!(reminders.list_pending(USER).await.unwrap().is_empty());
    assert_eq!(reminders.list_pending(other).await.unwrap().len(), 1);
}
