//! Support operations and the worker run, against the in-memory fakes.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};

use butler_application::admin::{
    AdminError, ListProfilesUseCase, ShowUserUseCase, UpdateProfileUseCase,
};
use butler_application::memory::{MemoryWorkerUseCase, WorkerRun};
use butler_application::{CompressConfig, ReplyInput};
use butler_domain::ports::{ProfilePage, UserProfileRepository};
use butler_domain::{ProfileUpdate, Source, Tone, UserId};
use support::World;

#[tokio::test]
async fn profiles_are_listed_in_pages_with_event_counts() {
    let w = World::default();
    for id in [3, 1, 2] {
        w.profiles.get_or_create(UserId::new(id)).await.unwrap();
    }
    w.seed_turns(UserId::new(2), 0, 3).await;
    let list = ListProfilesUseCase::new(w.profiles.clone(), w.memory.clone());
    let first = list.execute(ProfilePage::first(2)).await.unwrap();
    let ids: Vec<i64> = first.iter().map(|o| o.profile.user_id.get()).collect();
    assert_eq!(ids, [1, 2]);
    assert_eq!(first[1].event_count, 6);
    let next = list
        .execute(ProfilePage {
            after: Some(UserId::new(2)),
            limit: 2,
        })
        .await
        .unwrap();
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].profile.user_id, UserId::new(3));
}

#[tokio::test]
async fn show_returns_recent_events_and_unknown_users_are_not_found() {
    let w = World::default();
    let user = UserId::new(9);
    w.profiles.get_or_create(user).await.unwrap();
    w.seed_turns(user, 0, 5).await;
    let show = ShowUserUseCase::new(w.profiles.clone(), w.memory.clone(), w.facts.clone());
    let record = show.execute(user, 4).await.unwrap();
    assert_eq!(record.overview.event_count, 10);
    assert_eq!(record.events.len(), 4);
    assert_eq!(record.events.last().unwrap().content, "ответ 4");
    assert_eq!(
        show.execute(user, usize::MAX).await.unwrap().events.len(),
        10
    );
    assert!(matches!(
        show.execute(UserId::new(404), 5).await,
        Err(AdminError::NotFound { .. })
    ));
}

#[tokio::test]
async fn an_admin_update_is_validated_and_shows_in_the_next_reply() {
    let w = World::default();
    let user = UserId::new(11);
    w.profiles.get_or_create(user).await.unwrap();
    let update = UpdateProfileUseCase::new(w.profiles.clone(), w.clock.clone());
    let bad = ProfileUpdate {
        persona: Some("   ".into()),
        ..ProfileUpdate::default()
    };
    assert!(matches!(
        update.execute(user, &bad).await,
        Err(AdminError::Invalid(_))
    ));
    let good = ProfileUpdate {
        persona: Some("Jeeves".into()),
        tone: Some(Tone::Formal),
        ..ProfileUpdate::default()
    };
    let saved = update.execute(user, &good).await.unwrap();
    assert_eq!(saved.persona, "Jeeves");
    assert!(matches!(
        update.execute(UserId::new(12), &good).await,
        Err(AdminError::NotFound { .. })
    ));

    let out = w
        .reply()
        .execute(ReplyInput {
            user_id: user,
            text: "Добрый день".into(),
            source: Source::Text,
            origin: None,
        })
        .await;
    assert_eq!(out.persona, "Jeeves");
    let system = &w.llm.requests()[0].messages[0].content;
    assert!(
        system.starts_with("Ты — Jeeves. Тон: безупречно официальный."),
        "{system}"
    );
}

#[tokio::test]
async fn the_worker_compresses_users_over_the_threshold_and_a_dry_run_changes_nothing() {
    let w = World::default();
    for id in 1..=5 {
        w.seed_turns(UserId::new(id), 0, if id % 2 == 0 { 30 } else { 10 })
            .await;
    }
    let worker = MemoryWorkerUseCase::new(
        w.memory.clone(),
        w.compress_with(w.llm.clone(), CompressConfig::default()),
    );
    let seen = AtomicUsize::new(0);
    let dry = worker
        .execute(
            WorkerRun {
                max_users: 100,
                dry_run: true,
                parallelism: 2,
            },
            &|_| {
                seen.fetch_add(1, Ordering::SeqCst);
            },
        )
        .await
        .unwrap();
    assert_eq!(dry.users.len(), 2, "users 2 and 4 have 60 events");
    assert_eq!(seen.load(Ordering::SeqCst), 2);
    assert!(w.llm.requests().is_empty());

    let report = worker
        .execute(
            WorkerRun {
                max_users: 100,
                dry_run: false,
                parallelism: 2,
            },
            &|_| {},
        )
        .await
        .unwrap();
    assert_eq!(report.users.len(), 2);
    assert_eq!(report.failures(), 0);
    assert_eq!(w.memory.all(UserId::new(2)).len(), 20);
    assert_eq!(
        w.memory.all(UserId::new(1)).len(),
        20,
        "under the threshold: untouched"
    );
    assert!(worker.candidates(100).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_stop_request_lets_the_current_user_finish_and_starts_no_other() {
    let w = World::default();
    for id in 1..=4 {
        w.seed_turns(UserId::new(id), 0, 30).await;
    }
    let worker = MemoryWorkerUseCase::new(
        w.memory.clone(),
        w.compress_with(w.llm.clone(), CompressConfig::default()),
    );
    let stop = std::sync::atomic::AtomicBool::new(false);
    let report = worker
        .execute_until(
            WorkerRun {
                max_users: 100,
                dry_run: false,
                parallelism: 1,
            },
            // The stop arrives as the first user finishes, before a second one starts.
            &|_| stop.store(true, Ordering::SeqCst),
            &|| stop.load(Ordering::SeqCst),
        )
        .await
        .unwrap();
    assert_eq!(report.users.len(), 1, "only the user in flight ran");
    assert_eq!(report.not_started, 3);
    assert_eq!(report.failures(), 0);
    let done = report.users[0].user_id;
    assert_eq!(
        w.memory.all(done).len(),
        20,
        "the started user was finished"
    );
    let untouched = (1..=4)
        .map(UserId::new)
        .filter(|u| w.memory.all(*u).len() == 60)
        .count();
    assert_eq!(untouched, 3, "the others wait for the next run");
}
