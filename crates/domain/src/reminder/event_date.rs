//! The calendar date of an event a remembered fact states («Концерт 15 декабря», "Dentist on
//! 2026-12-15 at 10:30"), read by code — for reminders offered from memory.
//!
//! Only a calendar date is read: a day and a month in words (Russian or English), `15.12`,
//! `15.12.2026` or `2026-12-15`, with an optional clock time («в 19:30», "at 7:30") or part of
//! the day («вечером», "in the evening"). Relative days («завтра», «в пятницу») are not: a
//! fact keeps no trace of the day it was said on, so they are ambiguous by the time anyone
//! reads it. Two different dates in one fact are ambiguous too. The year, when not said, is
//! the first one in which the date is not before the day the fact was stored.

use jiff::civil::Date;

use super::when::{DaySaid, PartOfDay, TimeSaid, WhenSaid};

/// A date found in a fact's text, with the time of day it names (if any).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventDate {
    /// The calendar date (the year filled in from the day the fact was stored).
    pub date: Date,
    /// The time of day said with it; [`PartOfDay::Morning`] (09:00) when none was.
    pub time: TimeSaid,
}

impl EventDate {
    /// The moment to remind at, as a [`WhenSaid`] for [`WhenSaid::resolve`].
    #[must_use]
    pub fn when(&self) -> WhenSaid {
        WhenSaid {
            in_minutes: None,
            day: Some(DaySaid::Date {
                year: Some(self.date.year()),
                month: u8::try_from(self.date.month()).unwrap_or(1),
                day: u8::try_from(self.date.day()).unwrap_or(1),
            }),
            time: self.time,
        }
    }

    /// The date as `YYYY-MM-DD` (offers remember events by it).
    #[must_use]
    pub fn iso(&self) -> String {
        self.date.to_string()
    }
}

const RU_MONTHS: [&str; 12] = [
    "январ",
    "феврал",
    "март",
    "апрел",
    "ма",
    "июн",
    "июл",
    "август",
    "сентябр",
    "октябр",
    "ноябр",
    "декабр",
];
const EN_MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];

/// The month a word names (`декабря`, `мая`, `December`, `Dec`), 1–12; the word lower-case,
/// a trailing dot allowed (`dec.`).
#[must_use]
pub fn month_word(word: &str) -> Option<u8> {
    let word = word.trim_end_matches('.');
    // Russian: the stem and a case ending («декабря», «декабре»); «мая»/«май»/«мае» by hand.
    if matches!(word, "мая" | "май" | "мае") {
        return Some(5);
    }
    for (i, stem) in RU_MONTHS.iter().enumerate() {
        if i == 4 {
            continue;
        }
        if let Some(rest) = word.strip_prefix(stem) {
            if rest.chars().count() <= 2
                && (rest.is_empty() || rest.chars().all(|c| "яьеа".contains(c)))
            {
                return u8::try_from(i + 1).ok();
            }
        }
    }
    const EN_FULL: [&str; 12] = [
        "january",
        "february",
        "march",
        "april",
        "may",
        "june",
        "july",
        "august",
        "september",
        "october",
        "november",
        "december",
    ];
    for (i, (short, full)) in EN_MONTHS.iter().zip(EN_FULL).enumerate() {
        if word == *short || word == full || (word == "sept" && i == 8) {
            return u8::try_from(i + 1).ok();
        }
    }
    None
}

/// A day of the month as written: `15`, `15-го`, `15th`, `1st`.
fn day_number(word: &str) -> Option<u8> {
    let digits: String = word.chars().take_while(char::is_ascii_digit).collect();
    let rest = &word[digits.len()..];
    if digits.is_empty()
        || !matches!(
            rest,
            "" | "-го" | "го" | "-е" | "st" | "nd" | "rd" | "th" | "-ого"
        )
    {
        return None;
    }
    digits.parse().ok().filter(|d| (1..=31).contains(d))
}

/// A year as written: `2026`, `2026г`, `2026-го`.
fn year_number(word: &str) -> Option<i16> {
    let digits: String = word.chars().take_while(char::is_ascii_digit).collect();
    if digits.len() != 4 {
        return None;
    }
    digits.parse().ok().filter(|y| (1900..=9999).contains(y))
}

/// A date said with digits: `15.12`, `15.12.2026`, `2026-12-15`.
fn numeric_date(word: &str) -> Option<(Option<i16>, u8, u8)> {
    let parts: Vec<&str> = word.split(['.', '-', '/']).collect();
    let all_digits = parts
        .iter()
        .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
    if !all_digits {
        return None;
    }
    match parts.as_slice() {
        [y, m, d] if y.len() == 4 && word.contains('-') => {
            Some((y.parse().ok(), m.parse().ok()?, d.parse().ok()?))
        }
        [d, m] if word.contains('.') && d.len() <= 2 && m.len() == 2 => {
            Some((None, m.parse().ok()?, d.parse().ok()?))
        }
        [d, m, y] if word.contains('.') && d.len() <= 2 && m.len() == 2 && y.len() == 4 => {
            Some((y.parse().ok(), m.parse().ok()?, d.parse().ok()?))
        }
        _ => None,
    }
}

/// A clock time `19:30` / `7:05`: (hour, minute).
fn clock(word: &str) -> Option<(u8, u8)> {
    let (h, m) = word.split_once(':')?;
    let (h, m): (u8, u8) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60 && word.len() <= 5).then_some((h, m))
}

fn part_of_day(word: &str) -> Option<PartOfDay> {
    Some(match word {
        "утром" | "утра" | "morning" => PartOfDay::Morning,
        "днём" | "днем" | "дня" | "afternoon" => PartOfDay::Afternoon,
        "вечером" | "вечера" | "evening" | "tonight" => PartOfDay::Evening,
        "ночью" | "ночи" | "night" => PartOfDay::Night,
        _ => return None,
    })
}

/// The event date `text` states, if exactly one: the year, when not said, is the first in
/// which the date is not before `stored_on` (the day the fact was stored, on the user's clock).
/// `None` for no date, for several different ones, and for a date that does not exist.
#[must_use]
pub fn event_date(text: &str, stored_on: Date) -> Option<EventDate> {
    let lower = text.to_lowercase();
    let words: Vec<&str> = lower
        .split(|c: char| {
            c.is_whitespace() || matches!(c, ',' | ';' | '(' | ')' | '«' | '»' | '"' | '!' | '?')
        })
        .map(|w| w.trim_end_matches('.'))
        .filter(|w| !w.is_empty())
        .collect();
    let mut found: Option<(Option<i16>, u8, u8)> = None;
    let mut conflict = false;
    let mut note = |date: (Option<i16>, u8, u8)| match found {
        Some(seen)
            if (seen.1, seen.2) != (date.1, date.2)
                || (seen.0.is_some() && date.0.is_some() && seen.0 != date.0) =>
        {
            conflict = true;
        }
        Some(seen) if seen.0.is_none() => found = Some(date),
        Some(_) => {}
        None => found = Some(date),
    };
    let mut time = TimeSaid::default();
    for (i, word) in words.iter().enumerate() {
        let next = words.get(i + 1).copied();
        let after = words.get(i + 2).copied();
        if let Some(month) = month_word(word) {
            // «15 декабря [2026]» / "15 December"
            if let Some(day) = i.checked_sub(1).and_then(|p| day_number(words[p])) {
                note((next.and_then(year_number), month, day));
                continue;
            }
            // "December 15[, 2026]"
            if let Some(day) = next.and_then(day_number) {
                note((after.and_then(year_number), month, day));
            }
            continue;
        }
        if let Some(date) = numeric_date(word) {
            note(date);
            continue;
        }
        if let Some((hour, minute)) = clock(word) {
            time.hour = Some(hour);
            time.minute = Some(minute);
            continue;
        }
        if let Some(part) = part_of_day(word) {
            time.part = Some(part);
        }
    }
    if conflict {
        return None;
    }
    let (year, month, day) = found?;
    if time.hour.is_none() && time.part.is_none() {
        time.part = Some(PartOfDay::Morning);
    }
    let date = match year {
        Some(year) => Date::new(year, i8::try_from(month).ok()?, i8::try_from(day).ok()?).ok()?,
        None => {
            let this = stored_on.year();
            let on = |y: i16| Date::new(y, i8::try_from(month).ok()?, i8::try_from(day).ok()?).ok();
            match on(this) {
                Some(d) if d >= stored_on => d,
                _ => on(this.checked_add(1)?).or_else(|| on(this.checked_add(4)?))?,
            }
        }
    };
    Some(EventDate { date, time })
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    const STORED: Date = date(2026, 12, 7);

    fn found(text: &str) -> Option<(String, TimeSaid)> {
        event_date(text, STORED).map(|e| (e.iso(), e.time))
    }

    fn morning() -> TimeSaid {
        TimeSaid {
            part: Some(PartOfDay::Morning),
            ..TimeSaid::default()
        }
    }

    #[test]
    fn russian_and_english_dates_in_words_are_found_with_the_morning_by_default() {
        assert_eq!(
            found("Идёт на концерт 15 декабря"),
            Some(("2026-12-15".into(), morning()))
        );
        assert_eq!(
            found("Concert on December 15th"),
            Some(("2026-12-15".into(), morning()))
        );
        assert_eq!(
            found("Dentist on 3 Jan"),
            Some(("2027-01-03".into(), morning()))
        );
        assert_eq!(
            found("Обещал позвонить маме 1-го мая 2027 года"),
            Some(("2027-05-01".into(), morning()))
        );
    }

    #[test]
    fn digits_and_times_of_day_are_read() {
        let (iso, time) = found("Спектакль 20.12 в 19:30").unwrap();
        assert_eq!(iso, "2026-12-20");
        assert_eq!((time.hour, time.minute), (Some(19), Some(30)));
        let (iso, time) = found("Flight 2027-02-01 in the evening").unwrap();
        assert_eq!(iso, "2027-02-01");
        assert_eq!(time.part, Some(PartOfDay::Evening));
        assert_eq!(found("Экзамен 10.01.2027").unwrap().0, "2027-01-10");
    }

    #[test]
    fn a_date_before_the_day_stored_is_next_years_and_a_stated_past_year_stays_past() {
        assert_eq!(found("День рождения 5 декабря").unwrap().0, "2027-12-05");
        assert_eq!(
            found("Был на концерте 5 декабря 2025").unwrap().0,
            "2025-12-05"
        );
    }

    #[test]
    fn relative_days_several_dates_and_impossible_dates_give_nothing() {
        assert_eq!(found("Концерт завтра вечером"), None);
        assert_eq!(found("В пятницу едет в Казань"), None);
        assert_eq!(found("Отпуск с 10 января по 20 января"), None);
        assert_eq!(found("Свадьба 31 февраля"), None);
        assert_eq!(found("Любит кошек"), None);
        assert_eq!(found("Живёт в доме 15 на Мира"), None);
        assert_eq!(found("Версия 1.2 библиотеки"), None);
    }
}
