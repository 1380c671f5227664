//! Contract cases for `FactRepository`: round trips, supersede by key, idempotent saves,
//! search (Russian inflections included), deletion, reset, expiry, and racing saves of one key.

use std::collections::HashSet;

use butler_domain::ports::{FactStoreError, SavedFacts};
use butler_domain::{FactError, FactKind, MemoryFact, UserId};
use uuid::Uuid;

use super::{at, Storage};

/// Facts and a question about each that uses other inflected forms of the fact's words:
/// `(key, kind, fact, query)`. The search contract requires each query to find its fact first
/// among all sixteen; `sqlite_contract.rs` measures other search strategies on the same pairs.
pub const INFLECTION_PAIRS: &[(&str, FactKind, &str, &str)] = &[
    (
        "sister",
        FactKind::Person,
        "Сестру зовут Анна",
        "как зовут мою сестру?",
    ),
    (
        "concert_date",
        FactKind::Date,
        "Концерт в субботу в 19:00",
        "когда концерт?",
    ),
    ("home_city", FactKind::Place, "Мы живём в Твери", "Тверь"),
    ("hometown", FactKind::Place, "Вырос в Казани", "Казань"),
    (
        "daughter_allergy",
        FactKind::Other,
        "У дочери аллергия на арахис",
        "есть ли у кого-то аллергии?",
    ),
    (
        "promise_mother_birthday",
        FactKind::Promise,
        "Обещал напомнить про день рождения мамы",
        "что я обещал маме?",
    ),
    (
        "favourite_tea",
        FactKind::Preference,
        "Любимый чай — улун",
        "какой чай заварить?",
    ),
    (
        "brother",
        FactKind::Person,
        "Брат Олег работает врачом",
        "что подарить Олегу?",
    ),
    (
        "dog",
        FactKind::Other,
        "Собаку зовут Рекс",
        "как зовут собаку?",
    ),
    (
        "dentist_appointment",
        FactKind::Date,
        "Запись к стоматологу в понедельник",
        "когда к стоматологу?",
    ),
    (
        "vacation",
        FactKind::Date,
        "Отпуск в Сочи в августе",
        "что запланировано на август?",
    ),
    (
        "wife",
        FactKind::Person,
        "Жена Мария любит розы",
        "подарок для Марии",
    ),
    (
        "son_school",
        FactKind::Other,
        "Сын учится в третьем классе",
        "в каком классе сын?",
    ),
    (
        "grandfather",
        FactKind::Place,
        "Дедушка живёт в Новосибирске",
        "Новосибирск",
    ),
    (
        "yoga",
        FactKind::Date,
        "Ходит на йогу по вторникам",
        "когда йога?",
    ),
    (
        "car_repair",
        FactKind::Other,
        "Машина в ремонте до пятницы",
        "когда заберу машину из ремонта?",
    ),
];

/// Questions about none of the [`INFLECTION_PAIRS`] facts: a search must find nothing.
pub const DISTRACTOR_QUERIES: &[&str] = &[
    "как дела?",
    "какая погода завтра?",
    "расскажи анекдот",
    "сколько стоит билет?",
];

/// Facts worded as the extractor writes them (third person, present), with the cues it gives
/// them, and questions worded as people ask (first person, other tenses, diminutives,
/// paraphrases): `(key, fact, cues, question)`. Each question must find its fact first.
pub const ASKED_AS_PEOPLE_ASK: &[(&str, &str, &[&str], &str)] = &[
    (
        "home_city",
        "Живёт в Перми; раньше — в Казани",
        &[],
        "Где я живу?",
    ),
    ("drink", "Пьёт по утрам улун", &[], "Что я пью по утрам?"),
    (
        "commute",
        "Ездит на работу на велосипеде",
        &[],
        "На чём я езжу на работу?",
    ),
    (
        "pool",
        "Ходит в бассейн по средам",
        &[],
        "Когда я хожу в бассейн?",
    ),
    (
        "novel",
        "Пишет роман о мореплавателях",
        &[],
        "О чём я пишу?",
    ),
    (
        "birthday",
        "День рождения 12 марта",
        &["родился", "дата рождения"],
        "Когда я родился?",
    ),
    (
        "boss",
        "Начальник — Олег Петрович",
        &["руководитель", "работа"],
        "Кто мой руководитель?",
    ),
    (
        "vacation",
        "В отпуск едет в Сочи",
        &["отпуск", "поездка"],
        "Куда мы едем летом?",
    ),
    (
        "sister_city",
        "Sister lives in Leeds",
        &[],
        "Where does my sister live?",
    ),
    (
        "wife",
        "Wife's name is Harriet",
        &["married", "spouse"],
        "Who am I married to?",
    ),
    (
        "allergy",
        "Allergic to peanuts",
        &["allergy"],
        "What allergies do I have?",
    ),
];

/// Facts that share a stem but not a word with a question about something else, and the
/// question: `(fact, question)`. Stems matched these (едем → `ед`, the stem of «еда»).
pub const STEM_COLLISIONS: &[(&str, &str)] = &[
    ("Любимая еда — пельмени", "Куда мы едем в отпуск?"),
    ("Favourite food: ramen", "Where are we going?"),
];

/// Questions in the first person, other tenses and paraphrases find facts written in the third
/// person (by lemma, and by the cues chosen at extraction); a word that only shares a stem with
/// a fact does not find it.
pub async fn search_finds_facts_asked_as_people_ask_and_not_by_shared_stems(s: Storage) {
    let user = UserId::new(14);
    let facts: Vec<MemoryFact> = ASKED_AS_PEOPLE_ASK
        .iter()
        .zip(0..)
        .map(|((key, text, cues, _), ms)| fact(user, key, text, ms).with_cues(cues.iter()))
        .collect();
    s.facts.save(&facts).await.unwrap();
    for ((_, text, _, question), fact) in ASKED_AS_PEOPLE_ASK.iter().zip(&facts) {
        let found = s.facts.search(user, question, 5).await.unwrap();
        assert_eq!(
            found.first().map(|m| &m.fact.text),
            Some(&fact.text),
            "{question:?} should find {text:?} first: {found:?}"
        );
    }
    let other = UserId::new(15);
    for (i, (text, question)) in STEM_COLLISIONS.iter().enumerate() {
        let unrelated = fact(other, &format!("k{i}"), text, 100);
        s.facts
            .save(std::slice::from_ref(&unrelated))
            .await
            .unwrap();
        let found = s.facts.search(other, question, 5).await.unwrap();
        assert!(
            found.iter().all(|m| m.fact.id != unrelated.id),
            "{question:?} found {text:?}"
        );
    }
}

/// An update worded as the extractor is told to word it (the present state first, then the
/// old one) and one worded only as the change, each with the cues of the subject (the extractor
/// gives them, or the compression carries them over from the fact the update replaces).
pub const UPDATE_WORDINGS: [&str; 2] = [
    "Живёт в Перми; раньше — в Казани",
    "Переехал из Казани в Пермь",
];

/// Questions about the home city as people ask them; each must find the update of
/// [`UPDATE_WORDINGS`] first, whichever wording it has.
pub const HOME_QUESTIONS: [&str; 3] = [
    "Где я живу?",
    "В каком городе я живу?",
    "Какой у меня город?",
];

/// Retrieval does not depend on how an update was worded: for either wording, the questions
/// about the subject find the update first and never the fact it replaced.
pub async fn an_update_is_found_by_the_same_questions_whichever_way_it_is_worded(s: Storage) {
    let cues = ["жить", "город", "дом"];
    for (wording, user) in UPDATE_WORDINGS.iter().zip([31, 32]) {
        let user = UserId::new(user);
        let kazan = fact(user, "home_city", "Живёт в Казани", 100).with_cues(cues);
        let update = fact(user, "home_city", wording, 200).with_cues(cues);
        let unrelated = fact(user, "drink", "Любит морс", 150);
        s.facts.save(&[kazan.clone(), unrelated]).await.unwrap();
        s.facts.save(std::slice::from_ref(&update)).await.unwrap();
        for question in HOME_QUESTIONS {
            let found = s.facts.search(user, question, 5).await.unwrap();
            assert_eq!(
                found.first().map(|m| m.fact.id),
                Some(update.id),
                "{question:?} should find {wording:?} first: {found:?}"
            );
            assert!(
                found.iter().all(|m| m.fact.id != kazan.id),
                "{question:?} found the replaced fact"
            );
        }
    }
}

/// Superseded facts weigh nothing in the ranking: current facts score exactly the same
/// whether or not history facts sharing their words are stored, and a fact superseded by key
/// is not found.
pub async fn superseded_facts_do_not_change_the_ranking_of_current_ones(s: Storage) {
    let user = UserId::new(16);
    let tver = fact(user, "home_city", "Живёт в Твери", 100);
    let sister = fact(user, "sister", "Сестра Анна любит книги", 101);
    s.facts.save(&[tver.clone(), sister.clone()]).await.unwrap();
    let scores = |found: Vec<butler_domain::FactMatch>| -> Vec<(Uuid, f64)> {
        found.into_iter().map(|m| (m.fact.id, m.score)).collect()
    };
    let query = "где живёт сестра";
    let before = scores(s.facts.search(user, query, 5).await.unwrap());
    assert_eq!(before.len(), 2, "{before:?}");
    let history: Vec<MemoryFact> = ["Живёт в Казани", "Живёт в Самаре у сестры", "Живёт в Омске"]
        .iter()
        .zip(0..)
        .map(|(text, ms)| MemoryFact {
            superseded_by: Some(tver.id),
            ..fact(user, "home_city", text, ms)
        })
        .collect();
    s.facts.save(&history).await.unwrap();
    let after = scores(s.facts.search(user, query, 5).await.unwrap());
    assert_eq!(after.len(), before.len(), "{after:?}");
    for ((id_a, a), (id_b, b)) in before.iter().zip(&after) {
        assert_eq!(id_a, id_b);
        assert!((a - b).abs() < 1e-9, "{before:?} → {after:?}");
    }
    let newer = fact(user, "sister", "Сестру зовут Анна", 102);
    s.facts.save(std::slice::from_ref(&newer)).await.unwrap();
    let found = s.facts.search(user, query, 5).await.unwrap();
    assert!(
        found.iter().all(|m| m.fact.id != sister.id),
        "a superseded fact is never found: {found:?}"
    );
}

/// A current fact of `user` at `EPOCH + ms`.
fn fact(user: UserId, key: &str, text: &str, ms: i64) -> MemoryFact {
    MemoryFact::new(user, key, FactKind::Other, text, vec![], at(ms)).unwrap()
}

fn ids(facts: &[MemoryFact]) -> Vec<Uuid> {
    facts.iter().map(|f| f.id).collect()
}

/// `fact` as the store should hold it once `by` replaced it.
fn superseded(fact: &MemoryFact, by: &MemoryFact) -> MemoryFact {
    MemoryFact {
        superseded_by: Some(by.id),
        ..fact.clone()
    }
}

/// Facts come back exactly as saved: `current` newest first, `all` oldest first.
pub async fn saved_facts_read_back_with_every_field_intact(s: Storage) {
    let user = UserId::new(1);
    let sources: Vec<Uuid> = (0..16).map(|_| Uuid::new_v4()).collect();
    let long = format!("{} 🎻", "Ж".repeat(497));
    let facts = vec![
        MemoryFact::new(user, "cello", FactKind::Preference, &long, sources, at(20)).unwrap(),
        MemoryFact::new(
            user,
            "sister",
            FactKind::Person,
            "Сестру зовут Анна «Аня» 😀",
            vec![Uuid::new_v4()],
            at(10),
        )
        .unwrap(),
        MemoryFact::new(
            user,
            "concert_date",
            FactKind::Date,
            "Концерт 29 ноября",
            vec![],
            at(30),
        )
        .unwrap(),
    ];
    let saved = s.facts.save(&facts).await.unwrap();
    assert_eq!(
        saved,
        SavedFacts {
            inserted: 3,
            superseded: 0
        }
    );
    let newest_first = vec![facts[2].clone(), facts[0].clone(), facts[1].clone()];
    assert_eq!(s.facts.current(user, 10).await.unwrap(), newest_first);
    assert_eq!(s.facts.current(user, 2).await.unwrap(), newest_first[..2]);
    let mut oldest_first = newest_first;
    oldest_first.reverse();
    assert_eq!(s.facts.all(user).await.unwrap(), oldest_first);
}

/// Degenerate inputs are harmless.
pub async fn saving_nothing_and_zero_limits_return_nothing(s: Storage) {
    let user = UserId::new(2);
    assert_eq!(s.facts.save(&[]).await.unwrap(), SavedFacts::default());
    s.facts
        .save(&[fact(user, "sister", "Сестру зовут Анна", 0)])
        .await
        .unwrap();
    assert!(s.facts.current(user, 0).await.unwrap().is_empty());
    assert!(s.facts.search(user, "сестра", 0).await.unwrap().is_empty());
    assert!(s
        .facts
        .current(UserId::new(404), 10)
        .await
        .unwrap()
        .is_empty());
    assert!(s.facts.all(UserId::new(404)).await.unwrap().is_empty());
}

/// "We moved from Kazan to Tver": the new home city replaces the old one, which is kept as
/// history; other keys and other users' facts with the same key are untouched.
pub async fn a_newer_fact_supersedes_the_current_fact_of_its_key_and_the_old_one_is_kept(
    s: Storage,
) {
    let user = UserId::new(3);
    let other = UserId::new(4);
    let kazan = fact(user, "home_city", "Живём в Казани", 0);
    let sister = fact(user, "sister", "Сестру зовут Анна", 5);
    let neighbour = fact(other, "home_city", "Живёт в Казани", 7);
    s.facts
        .save(&[kazan.clone(), sister.clone(), neighbour.clone()])
        .await
        .unwrap();

    let tver = fact(user, "home_city", "Переехали в Тверь", 10);
    let saved = s.facts.save(std::slice::from_ref(&tver)).await.unwrap();
    assert_eq!(
        saved,
        SavedFacts {
            inserted: 1,
            superseded: 1
        }
    );
    assert_eq!(
        s.facts.current(user, 10).await.unwrap(),
        [tver.clone(), sister.clone()]
    );
    assert_eq!(
        s.facts.all(user).await.unwrap(),
        [superseded(&kazan, &tver), sister, tver]
    );
    assert_eq!(s.facts.all(other).await.unwrap(), [neighbour]);
}

/// A fact learnt earlier but saved later (a retried extraction) does not displace the newer
/// truth: it is stored already superseded by it. The same holds inside one batch.
pub async fn a_fact_older_than_the_current_one_is_stored_already_superseded(s: Storage) {
    let user = UserId::new(5);
    let tver = fact(user, "home_city", "Переехали в Тверь", 10);
    let kazan = fact(user, "home_city", "Живём в Казани", 0);
    s.facts.save(std::slice::from_ref(&tver)).await.unwrap();
    let saved = s.facts.save(std::slice::from_ref(&kazan)).await.unwrap();
    assert_eq!(
        saved,
        SavedFacts {
            inserted: 1,
            superseded: 1
        }
    );
    assert_eq!(
        s.facts.current(user, 10).await.unwrap(),
        std::slice::from_ref(&tver)
    );
    assert_eq!(
        s.facts.all(user).await.unwrap(),
        [superseded(&kazan, &tver), tver]
    );

    let other = UserId::new(6);
    let old = fact(other, "tea", "Любит зелёный чай", 0);
    let new = fact(other, "tea", "Любит улун", 1);
    s.facts.save(&[new.clone(), old.clone()]).await.unwrap();
    assert_eq!(
        s.facts.current(other, 10).await.unwrap(),
        std::slice::from_ref(&new)
    );
    assert_eq!(
        s.facts.all(other).await.unwrap(),
        [superseded(&old, &new), new]
    );
}

/// A fact saved with `superseded_by` set (an import of history) supersedes nothing.
pub async fn a_fact_saved_as_history_supersedes_nothing(s: Storage) {
    let user = UserId::new(7);
    let current = fact(user, "home_city", "Живём в Твери", 0);
    s.facts.save(std::slice::from_ref(&current)).await.unwrap();
    let history = MemoryFact {
        superseded_by: Some(Uuid::new_v4()),
        ..fact(user, "home_city", "Жили в Самаре", 10)
    };
    let saved = s.facts.save(std::slice::from_ref(&history)).await.unwrap();
    assert_eq!(
        saved,
        SavedFacts {
            inserted: 1,
            superseded: 0
        }
    );
    assert_eq!(
        s.facts.current(user, 10).await.unwrap(),
        std::slice::from_ref(&current)
    );
    assert_eq!(s.facts.all(user).await.unwrap(), [current, history]);
}

/// Saving facts that are stored already (a retry) changes nothing, even with other contents.
pub async fn saving_the_same_facts_again_changes_nothing(s: Storage) {
    let user = UserId::new(8);
    let kazan = fact(user, "home_city", "Живём в Казани", 0);
    let tver = fact(user, "home_city", "Переехали в Тверь", 10);
    let sister = fact(user, "sister", "Сестру зовут Анна", 5);
    s.facts
        .save(&[kazan.clone(), tver.clone(), sister.clone()])
        .await
        .unwrap();
    let expected = s.facts.all(user).await.unwrap();
    assert_eq!(expected.len(), 3);

    let altered = MemoryFact {
        text: "Сестру зовут Мария".into(),
        ..sister.clone()
    };
    for batch in [
        vec![kazan.clone(), tver.clone(), sister.clone()],
        vec![tver.clone()],
        vec![kazan.clone()],
        vec![altered],
    ] {
        assert_eq!(s.facts.save(&batch).await.unwrap(), SavedFacts::default());
        assert_eq!(s.facts.all(user).await.unwrap(), expected);
    }
    assert_eq!(
        ids(&s.facts.current(user, 10).await.unwrap()),
        [tver.id, sister.id]
    );
}

/// One invalid fact fails the whole batch, and nothing of it is written.
pub async fn an_invalid_fact_fails_the_batch_and_nothing_is_written(s: Storage) {
    let user = UserId::new(9);
    let good = fact(user, "sister", "Сестру зовут Анна", 0);
    let bad = MemoryFact {
        text: "   ".into(),
        ..fact(user, "brother", "Брата зовут Олег", 1)
    };
    let err = s.facts.save(&[good, bad]).await.unwrap_err();
    assert!(
        matches!(err, FactStoreError::Invalid(FactError::EmptyText)),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    assert!(s.facts.all(user).await.unwrap().is_empty());
}

/// Every question of [`INFLECTION_PAIRS`] finds its fact first among all sixteen, and the
/// distractor questions find nothing.
pub async fn search_finds_facts_by_inflected_russian_words(s: Storage) {
    let user = UserId::new(10);
    let facts: Vec<MemoryFact> = INFLECTION_PAIRS
        .iter()
        .zip(0..)
        .map(|((key, kind, text, _), ms)| {
            MemoryFact::new(user, key, *kind, text, vec![], at(ms)).unwrap()
        })
        .collect();
    s.facts.save(&facts).await.unwrap();
    for ((_, _, text, query), fact) in INFLECTION_PAIRS.iter().zip(&facts) {
        let found = s.facts.search(user, query, 5).await.unwrap();
        assert!(
            !found.is_empty(),
            "{query:?} found nothing, expected {text:?}"
        );
        assert_eq!(
            found[0].fact, *fact,
            "{query:?} found {:?} first",
            found[0].fact.text
        );
        assert!(
            found.windows(2).all(|w| w[0].score >= w[1].score),
            "{query:?}: not best first"
        );
        assert!(found.iter().all(|m| m.score > 0.0), "{query:?}");
    }
    for query in DISTRACTOR_QUERIES {
        let found = s.facts.search(user, query, 5).await.unwrap();
        assert!(found.is_empty(), "{query:?} found {found:?}");
    }
}

/// English facts match plural and verb forms too; a query of question words finds nothing.
pub async fn search_matches_english_inflections_and_ignores_question_words(s: Storage) {
    let user = UserId::new(11);
    let sister = fact(user, "sister", "My sister is called Anna", 0);
    let moved = fact(user, "home_city", "We moved to Tver in May", 1);
    s.facts
        .save(&[sister.clone(), moved.clone()])
        .await
        .unwrap();
    let first = |found: Vec<butler_domain::FactMatch>| found.first().map(|m| m.fact.id);
    assert_eq!(
        first(
            s.facts
                .search(user, "what is my sister's name?", 5)
                .await
                .unwrap()
        ),
        Some(sister.id)
    );
    assert_eq!(
        first(s.facts.search(user, "when did we move?", 5).await.unwrap()),
        Some(moved.id)
    );
    assert!(s
        .facts
        .search(user, "what? when? как? где?", 5)
        .await
        .unwrap()
        .is_empty());
}

/// The fact matching more of the query ranks first; superseded facts and other users' facts
/// are never found; the limit holds.
pub async fn search_ranks_the_best_match_first_and_never_returns_superseded_facts(s: Storage) {
    let user = UserId::new(12);
    let kazan = fact(user, "home_city", "Живём в Казани", 0);
    let tver = fact(user, "home_city", "Живём в Твери", 10);
    let sister = fact(
        user,
        "sister",
        "Сестра Анна живёт в Казани и любит Казань",
        20,
    );
    let dog = fact(user, "dog", "Собака Рекс любит сестру", 30);
    let elsewhere = fact(UserId::new(13), "home_city", "Живём в Казани", 40);
    s.facts
        .save(&[
            kazan.clone(),
            tver.clone(),
            sister.clone(),
            dog.clone(),
            elsewhere,
        ])
        .await
        .unwrap();

    let found = s.facts.search(user, "Казань", 10).await.unwrap();
    assert_eq!(
        ids(&found.iter().map(|m| m.fact.clone()).collect::<Vec<_>>()),
        [sister.id]
    );
    let found = s.facts.search(user, "сестра Анна", 10).await.unwrap();
    let order: Vec<Uuid> = found.iter().map(|m| m.fact.id).collect();
    assert_eq!(order, [sister.id, dog.id]);
    assert!(found[0].score > found[1].score, "{found:?}");
    let found = s.facts.search(user, "живём", 1).await.unwrap();
    assert_eq!(found.len(), 1);
    assert!(
        [tver.id, sister.id].contains(&found[0].fact.id),
        "{found:?}"
    );
}

/// `delete` removes one fact of its user; a deleted current fact brings nothing back.
pub async fn delete_removes_one_fact_of_its_user_and_brings_back_nothing(s: Storage) {
    let user = UserId::new(14);
    let kazan = fact(user, "home_city", "Живём в Казани", 0);
    let tver = fact(user, "home_city", "Живём в Твери", 10);
    let sister = fact(user, "sister", "Сестру зовут Анна", 5);
    s.facts
        .save(&[kazan.clone(), tver.clone(), sister.clone()])
        .await
        .unwrap();

    assert!(!s.facts.delete(UserId::new(15), sister.id).await.unwrap());
    assert!(!s.facts.delete(user, Uuid::new_v4()).await.unwrap());
    assert!(s.facts.delete(user, tver.id).await.unwrap());
    assert!(!s.facts.delete(user, tver.id).await.unwrap());
    assert_eq!(
        s.facts.current(user, 10).await.unwrap(),
        std::slice::from_ref(&sister)
    );
    assert_eq!(
        s.facts.all(user).await.unwrap(),
        [superseded(&kazan, &tver), sister]
    );
    assert!(s.facts.search(user, "Тверь", 10).await.unwrap().is_empty());
    assert!(s.facts.search(user, "Казань", 10).await.unwrap().is_empty());
}

/// Reset: every fact of the user goes, current and superseded; other users keep theirs.
pub async fn delete_all_removes_every_fact_of_one_user_only(s: Storage) {
    let user = UserId::new(16);
    let other = UserId::new(17);
    let theirs = fact(other, "sister", "Сестру зовут Анна", 0);
    s.facts
        .save(&[
            fact(user, "home_city", "Живём в Казани", 0),
            fact(user, "home_city", "Живём в Твери", 10),
            fact(user, "sister", "Сестру зовут Анна", 5),
            theirs.clone(),
        ])
        .await
        .unwrap();
    assert_eq!(s.facts.delete_all(user).await.unwrap(), 3);
    assert_eq!(s.facts.delete_all(user).await.unwrap(), 0);
    assert!(s.facts.all(user).await.unwrap().is_empty());
    assert!(s.facts.search(user, "сестра", 10).await.unwrap().is_empty());
    assert_eq!(
        s.facts.all(other).await.unwrap(),
        std::slice::from_ref(&theirs)
    );
    assert_eq!(
        s.facts.search(other, "сестра", 10).await.unwrap()[0].fact,
        theirs
    );
}

/// Expiry: facts of every user created before the cutoff go, current or superseded; the
/// cutoff itself and later stay, and an expired current fact brings nothing back.
pub async fn facts_older_than_the_cutoff_expire_for_every_user(s: Storage) {
    let user = UserId::new(18);
    let other = UserId::new(19);
    let kazan = fact(user, "home_city", "Живём в Казани", 0);
    let tver = fact(user, "home_city", "Живём в Твери", 10);
    let old_sister = fact(other, "sister", "Сестру зовут Анна", 5);
    let at_cutoff = fact(user, "sister", "Сестру зовут Анна", 20);
    let newer = fact(other, "dog", "Собаку зовут Рекс", 30);
    s.facts
        .save(&[kazan, tver, old_sister, at_cutoff.clone(), newer.clone()])
        .await
        .unwrap();
    assert_eq!(s.facts.delete_older_than(at(20)).await.unwrap(), 3);
    assert_eq!(s.facts.delete_older_than(at(20)).await.unwrap(), 0);
    assert_eq!(s.facts.all(user).await.unwrap(), [at_cutoff]);
    assert_eq!(s.facts.all(other).await.unwrap(), [newer]);
    assert!(s.facts.search(user, "Казань", 10).await.unwrap().is_empty());
}

/// Saves racing on one key (the worker and an inline compression extracting at once) leave
/// exactly one current fact, the newest, and every other one superseded by a newer fact.
pub async fn concurrent_saves_of_one_key_leave_exactly_one_current_fact(s: Storage) {
    for round in 0..15 {
        let user = UserId::new(100 + round);
        let first = fact(user, "home_city", "Живём в Казани", 0);
        s.facts.save(std::slice::from_ref(&first)).await.unwrap();
        // Saved in an order unrelated to their age.
        let racers: Vec<MemoryFact> = [3, 1, 5, 2, 6, 4]
            .into_iter()
            .map(|ms| fact(user, "home_city", &format!("Живём в городе номер {ms}"), ms))
            .collect();
        let tasks: Vec<_> = racers
            .iter()
            .map(|f| {
                let facts = s.facts.clone();
                let f = f.clone();
                tokio::spawn(async move { facts.save(&[f]).await })
            })
            .collect();
        let mut superseded_count = 0;
        for task in tasks {
            superseded_count += task.await.unwrap().unwrap().superseded;
        }
        assert_eq!(superseded_count, 6, "round {round}");

        let newest = racers.iter().max_by_key(|f| (f.created_at, f.id)).unwrap();
        let current = s.facts.current(user, 10).await.unwrap();
        assert_eq!(ids(&current), [newest.id], "round {round}");
        let all = s.facts.all(user).await.unwrap();
        assert_eq!(all.len(), 7, "round {round}");
        let known: HashSet<Uuid> = all.iter().map(|f| f.id).collect();
        for f in all.iter().filter(|f| f.id != newest.id) {
            let by = f.superseded_by.expect("all but the newest are superseded");
            assert!(known.contains(&by), "round {round}: dangling supersede");
            let replacement = all.iter().find(|g| g.id == by).unwrap();
            assert!(
                replacement.is_newer_than(f),
                "round {round}: replaced by an older fact"
            );
        }
        let found = s.facts.search(user, "город", 10).await.unwrap();
        assert_eq!(found.len(), 1, "round {round}");
        assert_eq!(found[0].fact.id, newest.id);
    }
}
