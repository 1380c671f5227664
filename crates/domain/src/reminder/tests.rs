//! The table of phrasings → instants: what the model transcribes (a [`WhenSaid`]) resolved
//! with a fixed clock in several zones, across a daylight-saving change; and what is asked
//! back.

use jiff::civil::Weekday;
use time::macros::datetime;
use time::OffsetDateTime;

use super::*;
use crate::profile::Language;

fn zone(name: &str) -> UserTimeZone {
    UserTimeZone::new(name).expect("known zone")
}

fn at(hour: u8, minute: u8) -> TimeSaid {
    TimeSaid {
        hour: Some(hour),
        minute: Some(minute),
        part: None,
    }
}

fn part(part: PartOfDay) -> TimeSaid {
    TimeSaid {
        hour: None,
        minute: None,
        part: Some(part),
    }
}

fn hour_part(hour: u8, p: PartOfDay) -> TimeSaid {
    TimeSaid {
        hour: Some(hour),
        minute: None,
        part: Some(p),
    }
}

fn said(day: Option<DaySaid>, time: TimeSaid) -> WhenSaid {
    WhenSaid {
        in_minutes: None,
        day,
        time,
    }
}

/// Monday 7 December 2026, 10:30 in Moscow (UTC+3).
const NOW: OffsetDateTime = datetime!(2026-12-07 07:30 UTC);

#[test]
fn russian_and_english_phrasings_resolve_to_the_documented_instants() {
    let moscow = zone("Europe/Moscow");
    let new_york = zone("America/New_York");
    let berlin = zone("Europe/Berlin");
    let tokyo = zone("Asia/Tokyo");
    let los_angeles = zone("America/Los_Angeles");
    let table: Vec<(&str, WhenSaid, &UserTimeZone, OffsetDateTime)> = vec![
        (
            "завтра в 9 позвонить маме",
            said(Some(DaySaid::InDays(1)), at(9, 0)),
            &moscow,
            datetime!(2026-12-08 06:00 UTC),
        ),
        (
            "через 20 минут проверь духовку",
            WhenSaid {
                in_minutes: Some(20),
                ..WhenSaid::default()
            },
            &moscow,
            datetime!(2026-12-07 07:50 UTC),
        ),
        (
            "в пятницу вечером — про билеты",
            said(
                Some(DaySaid::Weekday(Weekday::Friday)),
                part(PartOfDay::Evening),
            ),
            &moscow,
            datetime!(2026-12-11 16:00 UTC),
        ),
        (
            "15 декабря утром про концерт",
            said(
                Some(DaySaid::Date {
                    year: None,
                    month: 12,
                    day: 15,
                }),
                part(PartOfDay::Morning),
            ),
            &moscow,
            datetime!(2026-12-15 06:00 UTC),
        ),
        (
            "сегодня днём",
            said(Some(DaySaid::InDays(0)), part(PartOfDay::Afternoon)),
            &moscow,
            datetime!(2026-12-07 10:00 UTC),
        ),
        (
            "сегодня ночью",
            said(Some(DaySaid::InDays(0)), part(PartOfDay::Night)),
            &moscow,
            datetime!(2026-12-07 20:00 UTC),
        ),
        (
            "в 7 вечера",
            said(None, hour_part(7, PartOfDay::Evening)),
            &moscow,
            datetime!(2026-12-07 16:00 UTC),
        ),
        (
            "послезавтра в 3 дня",
            said(Some(DaySaid::InDays(2)), hour_part(3, PartOfDay::Afternoon)),
            &moscow,
            datetime!(2026-12-09 12:00 UTC),
        ),
        (
            "в понедельник в 18:45 (said on a Monday: next week)",
            said(Some(DaySaid::Weekday(Weekday::Monday)), at(18, 45)),
            &moscow,
            datetime!(2026-12-14 15:45 UTC),
        ),
        (
            "5 января в 10 (next year)",
            said(
                Some(DaySaid::Date {
                    year: None,
                    month: 1,
                    day: 5,
                }),
                at(10, 0),
            ),
            &moscow,
            datetime!(2027-01-05 07:00 UTC),
        ),
        (
            "remind me tomorrow at 9 to call mum",
            said(Some(DaySaid::InDays(1)), at(9, 0)),
            &new_york,
            datetime!(2026-12-08 14:00 UTC),
        ),
        (
            "in 90 minutes",
            WhenSaid {
                in_minutes: Some(90),
                ..WhenSaid::default()
            },
            &new_york,
            datetime!(2026-12-07 09:00 UTC),
        ),
        (
            "on Friday evening",
            said(
                Some(DaySaid::Weekday(Weekday::Friday)),
                part(PartOfDay::Evening),
            ),
            &new_york,
            datetime!(2026-12-12 00:00 UTC),
        ),
        // Los Angeles is still on Sunday 6 December at 07:30 UTC: "tomorrow" is Monday 7th.
        (
            "tomorrow morning (the user's day, not UTC's)",
            said(Some(DaySaid::InDays(1)), part(PartOfDay::Morning)),
            &los_angeles,
            datetime!(2026-12-07 17:00 UTC),
        ),
        // DST: New York springs forward on 14 March 2027 (EST → EDT).
        (
            "March 15 2027 at 9am (after the DST change)",
            said(
                Some(DaySaid::Date {
                    year: Some(2027),
                    month: 3,
                    day: 15,
                }),
                hour_part(9, PartOfDay::Morning),
            ),
            &new_york,
            datetime!(2027-03-15 13:00 UTC),
        ),
        (
            "March 13 2027 at 9am (before it)",
            said(
                Some(DaySaid::Date {
                    year: Some(2027),
                    month: 3,
                    day: 13,
                }),
                hour_part(9, PartOfDay::Morning),
            ),
            &new_york,
            datetime!(2027-03-13 14:00 UTC),
        ),
        // 02:30 does not exist on 14 March 2027 in New York: moved forward by the gap.
        (
            "14 March 2027 at 2:30 at night (in the DST gap)",
            said(
                Some(DaySaid::Date {
                    year: Some(2027),
                    month: 3,
                    day: 14,
                }),
                TimeSaid {
                    hour: Some(2),
                    minute: Some(30),
                    part: Some(PartOfDay::Night),
                },
            ),
            &new_york,
            datetime!(2027-03-14 07:30 UTC),
        ),
        (
            "в 11 ночи по Берлину",
            said(None, hour_part(11, PartOfDay::Night)),
            &berlin,
            datetime!(2026-12-07 22:00 UTC),
        ),
        (
            "tomorrow at 9 in Tokyo",
            said(Some(DaySaid::InDays(1)), at(9, 0)),
            &tokyo,
            datetime!(2026-12-08 00:00 UTC),
        ),
    ];
    for (phrase, when, zone, expected) in table {
        let resolved = when
            .resolve(NOW, zone)
            .unwrap_or_else(|e| panic!("{phrase}: {e}"));
        assert_eq!(resolved.at, expected, "{phrase}");
    }
}

#[test]
fn ambiguous_missing_and_past_times_are_asked_back_not_guessed() {
    let moscow = zone("Europe/Moscow");
    let table: Vec<(&str, WhenSaid, AskBack)> = vec![
        ("напомни про маму", WhenSaid::default(), AskBack::NoTime),
        (
            "15 декабря про концерт (no time of day)",
            said(
                Some(DaySaid::Date {
                    year: None,
                    month: 12,
                    day: 15,
                }),
                TimeSaid::default(),
            ),
            AskBack::NoTimeOfDay,
        ),
        (
            "завтра в 3 (03:00 or 15:00?)",
            said(Some(DaySaid::InDays(1)), at(3, 0)),
            AskBack::AmbiguousHour { hour: 3 },
        ),
        (
            "в 9 утра (already past today)",
            said(None, hour_part(9, PartOfDay::Morning)),
            AskBack::Past,
        ),
        (
            "1 декабря 2026 (past year given)",
            said(
                Some(DaySaid::Date {
                    year: Some(2026),
                    month: 12,
                    day: 1,
                }),
                at(10, 0),
            ),
            AskBack::Past,
        ),
        (
            "31 февраля",
            said(
                Some(DaySaid::Date {
                    year: None,
                    month: 2,
                    day: 31,
                }),
                at(10, 0),
            ),
            AskBack::Invalid,
        ),
        (
            "в 25:00",
            said(Some(DaySaid::InDays(1)), at(25, 0)),
            AskBack::Invalid,
        ),
        (
            "в 20 утра",
            said(Some(DaySaid::InDays(1)), hour_part(20, PartOfDay::Morning)),
            AskBack::Invalid,
        ),
        (
            "через 0 минут",
            WhenSaid {
                in_minutes: Some(0),
                ..WhenSaid::default()
            },
            AskBack::Past,
        ),
        (
            "через час завтра",
            WhenSaid {
                in_minutes: Some(60),
                day: Some(DaySaid::InDays(1)),
                ..WhenSaid::default()
            },
            AskBack::Conflicting,
        ),
    ];
    for (phrase, when, expected) in table {
        assert_eq!(
            when.resolve(NOW, &moscow).map(|r| r.at),
            Err(expected),
            "{phrase}"
        );
    }
}

#[test]
fn the_confirmation_names_the_day_date_and_time_in_the_users_language() {
    let moscow = zone("Europe/Moscow");
    let today = LocalTime::of(NOW, &moscow);
    let friday = said(
        Some(DaySaid::Weekday(Weekday::Friday)),
        part(PartOfDay::Evening),
    )
    .resolve(NOW, &moscow)
    .expect("resolves");
    assert_eq!(
        moment_in_words(&friday.local, &today, Language::Ru),
        "в пятницу, 11 декабря, в 19:00"
    );
    assert_eq!(
        moment_in_words(&friday.local, &today, Language::En),
        "on Friday, 11 December, at 19:00"
    );
    let tomorrow = said(Some(DaySaid::InDays(1)), at(9, 0))
        .resolve(NOW, &moscow)
        .expect("resolves");
    assert_eq!(
        moment_in_words(&tomorrow.local, &today, Language::Ru),
        "завтра, 8 декабря, в 09:00"
    );
    let next_year = said(
        Some(DaySaid::Date {
            year: None,
            month: 1,
            day: 5,
        }),
        at(10, 0),
    )
    .resolve(NOW, &moscow)
    .expect("resolves");
    assert_eq!(
        moment_in_words(&next_year.local, &today, Language::Ru),
        "во вторник, 5 января 2027 года, в 10:00"
    );
}

#[test]
fn a_reminder_needs_a_short_non_empty_text() {
    let z = zone("UTC");
    let user = crate::user::UserId::new(1);
    assert_eq!(
        Reminder::new(user, 1, "  ", NOW, &z, NOW),
        Err(ReminderError::EmptyText)
    );
    assert_eq!(
        Reminder::new(user, 1, &"x".repeat(501), NOW, &z, NOW),
        Err(ReminderError::TextTooLong)
    );
    let r = Reminder::new(user, 1, " позвонить маме ", NOW, &z, NOW).expect("valid");
    assert_eq!(r.text, "позвонить маме");
    assert_eq!(r.status, ReminderStatus::Pending);
    assert_eq!(r.id.short().len(), 8);
}
