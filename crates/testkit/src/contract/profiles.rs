//! Contract cases for `UserProfileRepository`: creation, compare-and-set saves, reset, listing.

use butler_domain::ports::{ProfilePage, ProfileStoreError};
use butler_domain::profile::DEFAULT_PERSONA;
use butler_domain::reminder::UserTimeZone;
use butler_domain::{EventCursor, Language, Tone, UserId, UserLimits, UserProfile};
use uuid::Uuid;

use super::{at, Storage};

/// A profile with every optional field filled, as a compression and an admin would leave it.
pub(super) fn customised(base: &UserProfile) -> UserProfile {
    let mut p = base.clone();
    p.persona = "Jeeves, камердинер".to_owned();
    p.tone = Tone::Formal;
    p.language = Language::En;
    p.preferred_topics = vec!["виолончель".to_owned(), "chess ♟".to_owned()];
    p.memory_summary = Some("Пётр играет на виолончели; обещал позвонить 3 декабря.".to_owned());
    p.summary_watermark = Some(EventCursor {
        created_at: at(1_234),
        event_id: Uuid::from_u128(0xfeed_beef_0000_0000_0000_0000_0000_0001),
    });
    p.limits = UserLimits {
        per_minute: Some(0),
        burst: Some(3),
        per_day: Some(1_000_000),
    };
    p.time_zone = Some(UserTimeZone::new("Asia/Yekaterinburg").unwrap());
    p.time_zone_offered = Some(UserTimeZone::new("America/New_York").unwrap());
    p.reminder_offers = true;
    p.reminder_offers_made = vec!["concert@2026-12-15".into(), "поездка@2027-01-03".into()];
    p.updated_at = at(9_999);
    p
}

/// `get` of an unknown user is `None` and does not create a profile.
pub async fn get_returns_nothing_for_an_unknown_user_and_creates_nothing(s: Storage) {
    assert!(s.profiles.get(UserId::new(1)).await.unwrap().is_none());
    assert!(s.profiles.get(UserId::new(1)).await.unwrap().is_none());
    let all = s.profiles.list(ProfilePage::first(10)).await.unwrap();
    assert!(all.is_empty(), "get created {all:?}");
}

/// The first `get_or_create` stores the default profile at version 1; later calls return it.
pub async fn get_or_create_stores_the_default_profile_once(s: Storage) {
    let user = UserId::new(7);
    let created = s.profiles.get_or_create(user).await.unwrap();
    assert_eq!(created.user_id, user);
    assert_eq!(created.version, 1);
    assert_eq!(created.persona, DEFAULT_PERSONA);
    assert_eq!(created.language, Language::Ru);
    assert_eq!(created.tone, Tone::Witty);
    assert!(created.memory_summary.is_none() && created.summary_watermark.is_none());
    assert!(
        created.time_zone.is_none(),
        "a new user has the operator's default zone"
    );
    assert!(
        !created.reminder_offers && created.reminder_offers_made.is_empty(),
        "reminder offers are off until the user turns them on"
    );
    assert_eq!(s.profiles.get(user).await.unwrap(), Some(created.clone()));
    assert_eq!(s.profiles.get_or_create(user).await.unwrap(), created);
}

/// Many tasks meeting a new user at once create one profile and all see it.
pub async fn concurrent_get_or_create_of_a_new_user_creates_exactly_one_profile(s: Storage) {
    for round in 0..20 {
        let user = UserId::new(1_000 + round);
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let profiles = s.profiles.clone();
                tokio::spawn(async move { profiles.get_or_create(user).await })
            })
            .collect();
        let mut seen = Vec::new();
        for task in tasks {
            seen.push(task.await.unwrap().unwrap());
        }
        assert!(
            seen.iter().all(|p| *p == seen[0]),
            "round {round}: {seen:?}"
        );
        assert_eq!(seen[0].version, 1);
    }
    let all = s.profiles.list(ProfilePage::first(100)).await.unwrap();
    assert_eq!(all.len(), 20);
}

/// A save of the stored version stores exactly that profile with version + 1; saving the old
/// copy again is a conflict and changes nothing.
pub async fn save_with_the_stored_version_bumps_it_and_a_stale_save_conflicts(s: Storage) {
    let user = UserId::new(42);
    let original = s.profiles.get_or_create(user).await.unwrap();
    let changed = customised(&original);
    let saved = s.profiles.save(&changed).await.unwrap();
    let mut expected = changed.clone();
    expected.version = 2;
    assert_eq!(saved, expected);
    assert_eq!(s.profiles.get(user).await.unwrap(), Some(expected.clone()));

    let err = s.profiles.save(&changed).await.unwrap_err();
    assert!(
        matches!(err, ProfileStoreError::VersionConflict { user_id, expected: 1 } if user_id == user),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    assert_eq!(s.profiles.get(user).await.unwrap(), Some(expected));
}

/// Version 0 means "only if none is stored".
pub async fn saving_version_zero_inserts_only_when_no_profile_exists(s: Storage) {
    let user = UserId::new(5);
    let fresh = customised(&UserProfile::default_at(user, at(0)));
    assert_eq!(fresh.version, 0);
    let stored = s.profiles.save(&fresh).await.unwrap();
    assert_eq!(stored.version, 1);
    assert_eq!(s.profiles.get(user).await.unwrap(), Some(stored.clone()));
    let err = s.profiles.save(&fresh).await.unwrap_err();
    assert!(
        matches!(err, ProfileStoreError::VersionConflict { expected: 0, .. }),
        "{err:?}"
    );
    assert_eq!(s.profiles.get(user).await.unwrap(), Some(stored));
}

/// A non-zero version for a user with no profile matches nothing.
pub async fn saving_a_version_that_was_never_stored_conflicts(s: Storage) {
    let user = UserId::new(6);
    let mut ghost = UserProfile::default_at(user, at(0));
    ghost.version = 3;
    let err = s.profiles.save(&ghost).await.unwrap_err();
    assert!(
        matches!(err, ProfileStoreError::VersionConflict { expected: 3, .. }),
        "{err:?}"
    );
    assert!(s.profiles.get(user).await.unwrap().is_none());
}

/// Validation happens before any write.
pub async fn an_invalid_profile_is_rejected_and_nothing_is_written(s: Storage) {
    let user = UserId::new(8);
    let mut bad = UserProfile::default_at(user, at(0));
    bad.persona = "   ".to_owned();
    let err = s.profiles.save(&bad).await.unwrap_err();
    assert!(matches!(err, ProfileStoreError::Invalid(_)), "{err:?}");
    assert!(s.profiles.get(user).await.unwrap().is_none());

    let stored = s.profiles.get_or_create(user).await.unwrap();
    let mut too_many = stored.clone();
    too_many.preferred_topics = (0..11).map(|i| format!("topic {i}")).collect();
    assert!(matches!(
        s.profiles.save(&too_many).await,
        Err(ProfileStoreError::Invalid(_))
    ));
    assert_eq!(s.profiles.get(user).await.unwrap(), Some(stored));
}

/// Reset brings back the default persona, drops summary, watermark and time zone, keeps
/// per-user limits, and bumps the version so a compression holding the old copy cannot write afterwards.
pub async fn reset_restores_the_default_clears_the_summary_and_bumps_the_version(s: Storage) {
    let user = UserId::new(9);
    let created = s.profiles.get_or_create(user).await.unwrap();
    let customised = s.profiles.save(&customised(&created)).await.unwrap();
    assert_eq!(customised.version, 2);

    let reset = s.profiles.reset(user).await.unwrap();
    assert_eq!(reset.version, 3);
    assert_eq!(reset.persona, DEFAULT_PERSONA);
    assert_eq!(reset.language, Language::Ru);
    assert_eq!(reset.tone, Tone::Witty);
    assert!(reset.preferred_topics.is_empty());
    assert!(reset.memory_summary.is_none());
    assert!(reset.summary_watermark.is_none());
    assert!(
        reset.time_zone.is_none() && reset.time_zone_offered.is_none(),
        "the time zone is personal: a reset forgets it"
    );
    assert!(
        !reset.reminder_offers && reset.reminder_offers_made.is_empty(),
        "a reset withdraws the consent to reminder offers and forgets what was offered"
    );
    assert_eq!(
        reset.limits, customised.limits,
        "limits set by support survive a reset"
    );
    assert_eq!(s.profiles.get(user).await.unwrap(), Some(reset.clone()));

    let mut late_compression = customised;
    late_compression.memory_summary = Some("stale summary".to_owned());
    assert!(matches!(
        s.profiles.save(&late_compression).await,
        Err(ProfileStoreError::VersionConflict { expected: 2, .. })
    ));
    assert_eq!(s.profiles.get(user).await.unwrap(), Some(reset));
}

/// Resetting a user who has no profile creates the default one.
pub async fn reset_creates_a_missing_profile_at_version_one(s: Storage) {
    let user = UserId::new(10);
    let reset = s.profiles.reset(user).await.unwrap();
    assert_eq!(reset.version, 1);
    assert_eq!(reset.persona, DEFAULT_PERSONA);
    assert_eq!(s.profiles.get(user).await.unwrap(), Some(reset));
}

/// `list` pages through profiles by ascending user id, negative ids included.
pub async fn profiles_are_listed_in_ascending_user_id_page_by_page(s: Storage) {
    let ids = [42_i64, -5, 3, 100, 1, i64::MAX, 0, 7, i64::MIN];
    for id in ids {
        s.profiles.get_or_create(UserId::new(id)).await.unwrap();
    }
    let mut sorted = ids.to_vec();
    sorted.sort_unstable();

    let mut listed = Vec::new();
    let mut page = ProfilePage::first(4);
    loop {
        let batch = s.profiles.list(page).await.unwrap();
        assert!(batch.len() <= 4);
        let Some(last) = batch.last() else { break };
        page.after = Some(last.user_id);
        listed.extend(batch.iter().map(|p| p.user_id.get()));
    }
    assert_eq!(listed, sorted);
    assert!(s
        .profiles
        .list(ProfilePage::first(0))
        .await
        .unwrap()
        .is_empty());
    let after_seven = s
        .profiles
        .list(ProfilePage {
            after: Some(UserId::new(7)),
            limit: 2,
        })
        .await
        .unwrap();
    let after_seven: Vec<i64> = after_seven.iter().map(|p| p.user_id.get()).collect();
    assert_eq!(after_seven, vec![42, 100]);
}
