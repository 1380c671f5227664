//! A resolved moment in words, the way the butler confirms it: «в пятницу, 12 декабря, в
//! 19:00», «завтра, 8 декабря, в 09:00», "on Friday, 12 December, at 19:00".

use crate::profile::Language;
use crate::reminder::when::LocalTime;

const RU_MONTHS: [&str; 12] = [
    "января",
    "февраля",
    "марта",
    "апреля",
    "мая",
    "июня",
    "июля",
    "августа",
    "сентября",
    "октября",
    "ноября",
    "декабря",
];
const RU_WEEKDAYS: [&str; 7] = [
    "в понедельник",
    "во вторник",
    "в среду",
    "в четверг",
    "в пятницу",
    "в субботу",
    "в воскресенье",
];
const EN_MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const EN_WEEKDAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// `at` in words relative to `today` (both on the user's wall clock): today and tomorrow by
/// name, other days by weekday; always the date and the time; the year only when it is not
/// `today`'s.
#[must_use]
pub fn moment_in_words(at: &LocalTime, today: &LocalTime, language: Language) -> String {
    let month = usize::from(at.month.clamp(1, 12) - 1);
    let weekday = usize::from(at.weekday.clamp(1, 7) - 1);
    let days = today.days_until(at);
    let year = if at.year == today.year {
        String::new()
    } else {
        format!(" {}", at.year)
    };
    let clock = format!("{:02}:{:02}", at.hour, at.minute);
    match language {
        Language::Ru => {
            let day = match days {
                0 => "сегодня".to_owned(),
                1 => "завтра".to_owned(),
                2 => "послезавтра".to_owned(),
                _ => RU_WEEKDAYS[weekday].to_owned(),
            };
            let year = if year.is_empty() {
                year
            } else {
                format!("{year} года")
            };
            format!("{day}, {} {}{year}, в {clock}", at.day, RU_MONTHS[month])
        }
        Language::En => {
            let day = match days {
                0 => "today".to_owned(),
                1 => "tomorrow".to_owned(),
                _ => format!("on {}", EN_WEEKDAYS[weekday]),
            };
            format!("{day}, {} {}{year}, at {clock}", at.day, EN_MONTHS[month])
        }
    }
}
