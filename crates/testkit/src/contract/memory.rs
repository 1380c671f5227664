//! Contract cases for `UserMemoryRepository`: append, ordering, watermarks, deletion, counts,
//! content fidelity and volume.

use std::collections::HashSet;

use butler_domain::ports::{ProfilePage, UserEventCount};
use butler_domain::{Source, UserId, UserMemoryEvent, UserProfile};
use futures::{stream, StreamExt, TryStreamExt};
use uuid::Uuid;

use super::{at, profiles::customised, Storage};

/// `n` alternating user/assistant events of `user`, one millisecond apart from `start_ms`.
pub(super) fn conversation(user: UserId, start_ms: i64, n: usize) -> Vec<UserMemoryEvent> {
    (0..n)
        .map(|i| {
            let when = at(start_ms + i64::try_from(i).unwrap_or(i64::MAX));
            if i % 2 == 0 {
                UserMemoryEvent::user(user, format!("вопрос {i}"), Source::Text, when)
            } else {
                UserMemoryEvent::assistant(user, format!("ответ {i}, сэр"), Source::Text, when)
            }
        })
        .collect()
}

fn sorted(mut events: Vec<UserMemoryEvent>) -> Vec<UserMemoryEvent> {
    events.sort_by_key(UserMemoryEvent::cursor);
    events
}

fn ids(events: &[UserMemoryEvent]) -> Vec<Uuid> {
    events.iter().map(|e| e.event_id).collect()
}

/// Events come back exactly as stored (ids, roles, sources, times, tags), oldest first.
pub async fn appended_events_read_back_oldest_first_with_every_field_intact(s: Storage) {
    let user = UserId::new(1);
    let events = vec![
        UserMemoryEvent::user(user, "третье", Source::Voice, at(30)).with_tag("voice"),
        UserMemoryEvent::user(user, "первое", Source::Text, at(10)),
        UserMemoryEvent::assistant(user, "второе", Source::Voice, at(20))
            .with_tag("a")
            .with_tag("бирка"),
    ];
    s.memory.append(&events).await.unwrap();
    let read = s.memory.recent(user, 100, None).await.unwrap();
    assert_eq!(read, sorted(events));
}

/// Re-appending (a retried append that may have half succeeded) never duplicates.
pub async fn appending_the_same_events_again_stores_each_once(s: Storage) {
    let user = UserId::new(2);
    let events = conversation(user, 0, 10);
    s.memory.append(&events[..6]).await.unwrap();
    s.memory.append(&events[..6]).await.unwrap();
    s.memory.append(&events).await.unwrap();
    s.memory.append(&events[3..]).await.unwrap();
    assert_eq!(s.memory.count(user).await.unwrap(), 10);
    assert_eq!(s.memory.recent(user, 100, None).await.unwrap(), events);
}

/// Degenerate inputs are harmless.
pub async fn appending_nothing_is_a_no_op_and_a_zero_limit_returns_nothing(s: Storage) {
    let user = UserId::new(3);
    s.memory.append(&[]).await.unwrap();
    assert_eq!(s.memory.count(user).await.unwrap(), 0);
    let events = conversation(user, 0, 3);
    s.memory.append(&events).await.unwrap();
    assert!(s.memory.recent(user, 0, None).await.unwrap().is_empty());
    assert!(s
        .memory
        .events_up_to(user, events[2].cursor(), 0)
        .await
        .unwrap()
        .is_empty());
    assert!(s.memory.users_over(0, 0).await.unwrap().is_empty());
    assert!(s
        .memory
        .recent(UserId::new(404), 10, None)
        .await
        .unwrap()
        .is_empty());
}

/// `recent(limit)` is the newest `limit` events, returned oldest first.
pub async fn recent_returns_the_newest_events_oldest_first(s: Storage) {
    let user = UserId::new(4);
    let events = conversation(user, 0, 30);
    // Appended out of order: storage order must not leak into results.
    let mut shuffled = events.clone();
    shuffled.reverse();
    shuffled.swap(3, 17);
    s.memory.append(&shuffled).await.unwrap();
    assert_eq!(s.memory.recent(user, 10, None).await.unwrap(), events[20..]);
    assert_eq!(s.memory.recent(user, 1, None).await.unwrap(), events[29..]);
    assert_eq!(s.memory.recent(user, 1_000, None).await.unwrap(), events);
}

/// With a watermark, only events strictly after it are returned.
pub async fn recent_returns_only_events_after_the_watermark(s: Storage) {
    let user = UserId::new(5);
    let events = conversation(user, 0, 30);
    s.memory.append(&events).await.unwrap();
    let watermark = events[19].cursor();
    assert_eq!(
        s.memory.recent(user, 100, Some(watermark)).await.unwrap(),
        events[20..]
    );
    assert_eq!(
        s.memory.recent(user, 5, Some(watermark)).await.unwrap(),
        events[25..]
    );
    assert!(s
        .memory
        .recent(user, 100, Some(events[29].cursor()))
        .await
        .unwrap()
        .is_empty());
}

/// Events stamped in the same millisecond are ordered by event id, in every method.
pub async fn events_in_one_millisecond_are_ordered_by_event_id(s: Storage) {
    let user = UserId::new(6);
    let mut events: Vec<UserMemoryEvent> = (0..12)
        .map(|i| UserMemoryEvent::user(user, format!("same ms {i}"), Source::Text, at(500)))
        .collect();
    // Ids that differ in the first and in the last byte, so any byte-order mistake shows.
    events[0].event_id = Uuid::from_u128(1);
    events[1].event_id = Uuid::from_u128(u128::MAX);
    events[2].event_id = Uuid::from_u128(1 << 120);
    events[3].event_id = Uuid::from_u128(0xff);
    events[4].event_id = Uuid::from_u128(0x80 << 120);
    s.memory.append(&events).await.unwrap();
    let ordered = sorted(events);
    assert_eq!(s.memory.recent(user, 100, None).await.unwrap(), ordered);
    assert_eq!(s.memory.recent(user, 4, None).await.unwrap(), ordered[8..]);
    let mid = ordered[5].cursor();
    assert_eq!(
        s.memory.recent(user, 100, Some(mid)).await.unwrap(),
        ordered[6..]
    );
    assert_eq!(
        s.memory.events_up_to(user, mid, 100).await.unwrap(),
        ordered[..=5]
    );
    assert_eq!(s.memory.delete_up_to(user, mid).await.unwrap(), 6);
    assert_eq!(
        s.memory.recent(user, 100, None).await.unwrap(),
        ordered[6..]
    );
}

/// Counts are per user.
pub async fn count_counts_only_the_users_own_events(s: Storage) {
    let (a, b) = (UserId::new(7), UserId::new(8));
    s.memory.append(&conversation(a, 0, 7)).await.unwrap();
    s.memory.append(&conversation(b, 0, 3)).await.unwrap();
    assert_eq!(s.memory.count(a).await.unwrap(), 7);
    assert_eq!(s.memory.count(b).await.unwrap(), 3);
    assert_eq!(s.memory.count(UserId::new(9)).await.unwrap(), 0);
}

/// `events_up_to` is the oldest events at or before the cursor (inclusive), oldest first.
pub async fn events_up_to_returns_the_oldest_events_at_or_before_the_cursor(s: Storage) {
    let user = UserId::new(10);
    let events = conversation(user, 0, 20);
    s.memory.append(&events).await.unwrap();
    s.memory
        .append(&conversation(UserId::new(11), 0, 20))
        .await
        .unwrap();
    let cursor = events[9].cursor();
    assert_eq!(
        s.memory.events_up_to(user, cursor, 100).await.unwrap(),
        events[..=9]
    );
    assert_eq!(
        s.memory.events_up_to(user, cursor, 4).await.unwrap(),
        events[..4]
    );
}

/// Deleting up to a watermark removes exactly the events at or before it, for that user.
pub async fn delete_up_to_removes_events_at_or_before_the_watermark_and_never_newer_ones(
    s: Storage,
) {
    let (user, other) = (UserId::new(12), UserId::new(13));
    let events = conversation(user, 0, 20);
    s.memory.append(&events).await.unwrap();
    s.memory.append(&conversation(other, 0, 5)).await.unwrap();
    let watermark = events[9].cursor();
    assert_eq!(s.memory.delete_up_to(user, watermark).await.unwrap(), 10);
    assert_eq!(
        s.memory.recent(user, 100, None).await.unwrap(),
        events[10..]
    );
    assert_eq!(s.memory.count(other).await.unwrap(), 5);
    assert_eq!(s.memory.delete_up_to(user, watermark).await.unwrap(), 0);
    assert_eq!(s.memory.count(user).await.unwrap(), 10);
}

/// `delete_all` empties one user's memory and nobody else's.
pub async fn delete_all_removes_every_event_of_one_user_only(s: Storage) {
    let (user, other) = (UserId::new(14), UserId::new(15));
    s.memory.append(&conversation(user, 0, 12)).await.unwrap();
    s.memory.append(&conversation(other, 0, 4)).await.unwrap();
    assert_eq!(s.memory.delete_all(user).await.unwrap(), 12);
    assert_eq!(s.memory.count(user).await.unwrap(), 0);
    assert_eq!(s.memory.count(other).await.unwrap(), 4);
    assert_eq!(s.memory.delete_all(user).await.unwrap(), 0);
    // A deleted user's events may be appended again (a reset followed by new chat).
    let again = conversation(user, 100, 2);
    s.memory.append(&again).await.unwrap();
    assert_eq!(s.memory.recent(user, 10, None).await.unwrap(), again);
}

/// The compression worker's query: users strictly over the threshold, busiest first, ties by
/// ascending user id, at most `limit`.
pub async fn users_over_lists_users_above_the_threshold_busiest_first(s: Storage) {
    for (user, n) in [(1, 5), (2, 7), (3, 5), (4, 2), (-1, 6)] {
        s.memory
            .append(&conversation(UserId::new(user), 0, n))
            .await
            .unwrap();
    }
    let count = |user: i64, events: u64| UserEventCount {
        user_id: UserId::new(user),
        events,
    };
    assert_eq!(
        s.memory.users_over(2, 10).await.unwrap(),
        vec![count(2, 7), count(-1, 6), count(1, 5), count(3, 5)]
    );
    assert_eq!(
        s.memory.users_over(5, 10).await.unwrap(),
        vec![count(2, 7), count(-1, 6)]
    );
    assert_eq!(
        s.memory.users_over(0, 2).await.unwrap(),
        vec![count(2, 7), count(-1, 6)]
    );
    assert!(s.memory.users_over(7, 10).await.unwrap().is_empty());
}

/// Whatever users write — Cyrillic, emoji sequences, scripts, quotes, SQL, kilobytes of
/// text — reads back byte for byte, with times to the millisecond.
pub async fn unicode_emoji_and_multi_kilobyte_content_round_trips_exactly(s: Storage) {
    let user = UserId::new(16);
    let contents = [
        "Добрый вечер, сэр! Чай подан ☕️🎩".to_owned(),
        "Семья: 👨‍👩‍👧‍👦, флаги: 🇷🇺🇬🇧, кожа: 👍🏽, ZWJ: 🏳️‍🌈".to_owned(),
        "مرحبا بالعالم — 你好，世界 — こんにちは — 🙂".to_owned(),
        "quotes ' \" ` \\ backslash; '); DROP TABLE user_memory; -- {\"$gt\": 1}".to_owned(),
        "tabs\tand\nnew\r\nlines\u{2028}and combining e\u{301} and \u{200b}zero width".to_owned(),
        "Ж".repeat(40_000),
        format!("{}🎻", "long line of English text. ".repeat(3_000)),
    ];
    let times = [at(0), at(1), at(-999), at(86_400_000 * 365 * 70), at(999)];
    let events: Vec<UserMemoryEvent> = contents
        .iter()
        .enumerate()
        .map(|(i, c)| {
            UserMemoryEvent::user(user, c.clone(), Source::Voice, times[i % times.len()])
                .with_tag("тег 🏷️")
        })
        .collect();
    s.memory.append(&events).await.unwrap();
    assert_eq!(
        s.memory.recent(user, 100, None).await.unwrap(),
        sorted(events)
    );

    let mut profile = customised(&UserProfile::default_at(user, at(123)));
    profile.persona = "Альфред 🎩 — «дворецкий» с \"кавычками\"".repeat(20);
    profile.memory_summary = Some("Сводка ✍️ ".repeat(800));
    profile.preferred_topics = vec!["🎻 музыка".to_owned(), "中文".to_owned()];
    let saved = s.profiles.save(&profile).await.unwrap();
    assert_eq!(s.profiles.get(user).await.unwrap(), Some(saved));
}

/// Ten thousand events of one user: stored, counted, paged and deleted in halves.
pub async fn ten_thousand_events_for_one_user_are_stored_counted_and_paged(s: Storage) {
    let user = UserId::new(17);
    let events = conversation(user, 0, 10_000);
    // In batches a slow server answers within the adapter's deadline (the MongoDB-wire test
    // server took over 15 s for 2,000 at once on a loaded 2-core machine).
    for batch in events.chunks(500) {
        s.memory.append(batch).await.unwrap();
    }
    assert_eq!(s.memory.count(user).await.unwrap(), 10_000);
    assert_eq!(
        s.memory.recent(user, 20, None).await.unwrap(),
        events[9_980..]
    );
    let half = events[4_999].cursor();
    let first_half = s.memory.events_up_to(user, half, 10_000).await.unwrap();
    assert_eq!(ids(&first_half), ids(&events[..5_000]));
    assert_eq!(s.memory.delete_up_to(user, half).await.unwrap(), 5_000);
    let rest = s.memory.recent(user, 10_000, None).await.unwrap();
    assert_eq!(ids(&rest), ids(&events[5_000..]));
}

/// A thousand users: each profile listed once in order, each user's events counted apart.
pub async fn a_thousand_users_are_created_listed_and_counted(s: Storage) {
    let users: Vec<UserId> = (0..1_000).map(|i| UserId::new(i * 7 - 3_000)).collect();
    stream::iter(users.clone())
        .map(|user| {
            let (profiles, memory) = (s.profiles.clone(), s.memory.clone());
            async move {
                profiles.get_or_create(user).await.unwrap();
                let n = if user.get() % 10 == 0 { 3 } else { 1 };
                memory.append(&conversation(user, 0, n)).await
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<()>>()
        .await
        .unwrap();

    let mut listed = Vec::new();
    let mut page = ProfilePage::first(97);
    loop {
        let batch = s.profiles.list(page).await.unwrap();
        let Some(last) = batch.last() else { break };
        page.after = Some(last.user_id);
        listed.extend(batch.into_iter().map(|p| p.user_id));
    }
    assert_eq!(listed, users);
    assert_eq!(listed.iter().collect::<HashSet<_>>().len(), 1_000);

    let busy = s.memory.users_over(1, 1_000).await.unwrap();
    let expected: Vec<UserEventCount> = users
        .iter()
        .filter(|u| u.get() % 10 == 0)
        .map(|&user_id| UserEventCount { user_id, events: 3 })
        .collect();
    assert_eq!(busy, expected);
}
