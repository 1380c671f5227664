//! Contract cases for concurrency: compare-and-set races, deletes racing appends, and the
//! compression protocol (save summary + watermark with CAS, then delete up to the watermark)
//! racing itself and new messages. Each race runs many rounds.

use butler_domain::ports::ProfileStoreError;
use butler_domain::{EventCursor, UserId, UserMemoryEvent};

use super::memory::conversation;
use super::Storage;

/// Several writers holding the same version: exactly one save wins, the rest conflict.
pub async fn concurrent_saves_of_one_version_let_exactly_one_win(s: Storage) {
    for round in 0..20 {
        let user = UserId::new(round);
        let base = s.profiles.get_or_create(user).await.unwrap();
        let tasks: Vec<_> = (0..6)
            .map(|writer| {
                let profiles = s.profiles.clone();
                let mut mine = base.clone();
                mine.persona = format!("writer {writer}");
                tokio::spawn(async move { (mine.clone(), profiles.save(&mine).await) })
            })
            .collect();
        let mut winners = Vec::new();
        for task in tasks {
            match task.await.unwrap() {
                (mine, Ok(stored)) => {
                    assert_eq!(stored.persona, mine.persona);
                    winners.push(stored);
                }
                (_, Err(ProfileStoreError::VersionConflict { expected, .. })) => {
                    assert_eq!(expected, 1);
                }
                (_, Err(other)) => panic!("round {round}: unexpected {other:?}"),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: {winners:?}");
        let stored = s.profiles.get(user).await.unwrap().unwrap();
        assert_eq!(stored, winners[0]);
        assert_eq!(stored.version, 2);
    }
}

/// A delete up to a watermark never removes events appended after it, however they interleave.
pub async fn deletes_racing_appends_of_newer_events_never_lose_the_newer_events(s: Storage) {
    for round in 0..25 {
        let user = UserId::new(round);
        let old = conversation(user, 0, 20);
        s.memory.append(&old).await.unwrap();
        let watermark = old[19].cursor();
        let newer = conversation(user, 1_000, 40);

        let memory = s.memory.clone();
        let to_append = newer.clone();
        let appender = tokio::spawn(async move {
            for batch in to_append.chunks(4) {
                memory.append(batch).await.unwrap();
                tokio::task::yield_now().await;
            }
        });
        let memory = s.memory.clone();
        let deleter = tokio::spawn(async move {
            let mut deleted = 0;
            for _ in 0..6 {
                deleted += memory.delete_up_to(user, watermark).await.unwrap();
                tokio::task::yield_now().await;
            }
            deleted
        });
        appender.await.unwrap();
        let deleted = deleter.await.unwrap();
        assert_eq!(deleted, 20, "round {round}");
        assert_eq!(
            s.memory.recent(user, 1_000, None).await.unwrap(),
            newer,
            "round {round}"
        );
    }
}

/// What one compression did.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// Saved its summary and deleted the folded events.
    Won(EventCursor),
    /// Another writer saved first; it backed off without deleting anything.
    BackedOff,
    /// Too few events to fold.
    Nothing,
}

/// The compression protocol at the port level, as the application runs it: fold everything
/// but the last `keep` events into the summary, save summary + watermark with CAS, and only
/// then delete up to the watermark.
async fn compress(s: &Storage, user: UserId, keep: usize, name: &str) -> Outcome {
    let profile = s.profiles.get_or_create(user).await.unwrap();
    let events = s
        .memory
        .recent(user, 10_000, profile.summary_watermark)
        .await
        .unwrap();
    if events.len() <= keep {
        return Outcome::Nothing;
    }
    let folded = &events[..events.len() - keep];
    let watermark = folded[folded.len() - 1].cursor();
    let mut next = profile.clone();
    next.memory_summary = Some(format!(
        "{}[{name}:{}]",
        profile.memory_summary.unwrap_or_default(),
        folded.len()
    ));
    next.summary_watermark = Some(watermark);
    match s.profiles.save(&next).await {
        Ok(_) => {
            s.memory.delete_up_to(user, watermark).await.unwrap();
            Outcome::Won(watermark)
        }
        Err(ProfileStoreError::VersionConflict { .. }) => Outcome::BackedOff,
        Err(other) => panic!("compression save failed: {other:?}"),
    }
}

/// Two compressions of one user race each other and new messages: every event is either
/// still stored or covered by the stored watermark, no summary is lost, and nothing at or
/// before the final watermark is left behind.
pub async fn racing_compressions_of_one_user_keep_every_event_or_its_summary(s: Storage) {
    let storage = std::sync::Arc::new(s);
    for round in 0..15 {
        let user = UserId::new(round);
        let old = conversation(user, 0, 30);
        storage.memory.append(&old).await.unwrap();
        let newer = conversation(user, 10_000, 10);

        let racers: Vec<_> = ["a", "b"]
            .into_iter()
            .map(|name| {
                let storage = storage.clone();
                tokio::spawn(async move { compress(&storage, user, 10, name).await })
            })
            .collect();
        let memory = storage.memory.clone();
        let to_append = newer.clone();
        let appender = tokio::spawn(async move {
            for event in to_append {
                memory.append(std::slice::from_ref(&event)).await.unwrap();
            }
        });
        let mut outcomes = Vec::new();
        for racer in racers {
            outcomes.push(racer.await.unwrap());
        }
        appender.await.unwrap();

        let winners = outcomes
            .iter()
            .filter(|o| matches!(o, Outcome::Won(_)))
            .count();
        assert!(winners >= 1, "round {round}: {outcomes:?}");
        let profile = storage.profiles.get(user).await.unwrap().unwrap();
        let watermark = profile
            .summary_watermark
            .expect("a winner saved a watermark");
        let summary = profile.memory_summary.unwrap_or_default();
        assert_eq!(
            summary.matches('[').count(),
            winners,
            "round {round}: a summary was lost: {summary}"
        );
        assert_eq!(profile.version, 1 + winners as u64);

        let stored: Vec<UserMemoryEvent> = storage.memory.recent(user, 1_000, None).await.unwrap();
        for event in old.iter().chain(&newer) {
            let kept = stored.iter().any(|e| e.event_id == event.event_id);
            let covered = event.cursor() <= watermark;
            assert!(
                kept ^ covered,
                "round {round}: event {event:?} kept={kept} covered={covered}"
            );
        }
        assert!(newer.iter().all(|e| stored.contains(e)), "round {round}");
    }
}
