//! Telling a reminder request from other messages, and reading the model's structured answer.
//!
//! A cheap keyword pre-filter ([`detect`]) runs on every private message; only a message that
//! asks to *set* a reminder costs a model call, constrained to [`REMINDER_SCHEMA`] (grammar
//! sampling in the embedded engine, `response_format` for servers). The answer is parsed
//! tolerantly ([`parse_extraction`]): servers may ignore the schema, and a small model may wrap
//! the JSON in prose. The model only transcribes "when, as the user said it"; the calendar
//! work is done by [`WhenSaid::resolve`](butler_domain::reminder::WhenSaid::resolve).

use butler_domain::ports::{LlmRequest, RequestOptions};
use butler_domain::reminder::{
    month_word, weekday_from_code, DaySaid, LocalTime, PartOfDay, TimeSaid, WhenSaid,
};
use butler_domain::ChatMessage;
use serde_json::Value;

/// What a message asks of the reminders, by keywords.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Intent {
    /// «Напомни …», "remind me …": set one (the model extracts what and when).
    Set,
    /// «Какие у меня напоминания?», "my reminders".
    List,
    /// «Отмени напоминание про маму»: the words that pick the reminder.
    Cancel(String),
    /// «Перенеси на час позже»: by how many minutes (negative: earlier), and the words that
    /// pick the reminder.
    Shift {
        /// Minutes to move by.
        minutes: i64,
        /// The rest of the message, to pick the reminder.
        about: String,
    },
}

/// The JSON Schema the model's answer must match. It keeps to what the embedded engine turns
/// into a grammar (`object`, `string`, `integer`, `enum` — no `"type"` lists), so a nullable
/// number is an `enum` of its range and `null`; an offset of 0 minutes and an empty date
/// stand for "not said". Servers get it as `response_format` unchanged.
pub const REMINDER_SCHEMA: &str = r#"{"type":"object","properties":{"task":{"type":"string"},"in_minutes":{"type":"integer"},"date":{"type":"string"},"in_days":{"enum":[null,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30]},"weekday":{"enum":[null,"monday","tuesday","wednesday","thursday","friday","saturday","sunday"]},"hour":{"enum":[null,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23]},"minute":{"enum":[null,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33,34,35,36,37,38,39,40,41,42,43,44,45,46,47,48,49,50,51,52,53,54,55,56,57,58,59]},"part_of_day":{"enum":[null,"morning","afternoon","evening","night"]}},"required":["task","in_minutes","date","in_days","weekday","hour","minute","part_of_day"]}"#;

/// The system instructions of the extraction call.
pub const EXTRACTION_INSTRUCTIONS: &str = "You turn a request for a reminder into JSON. \
Copy only what the user said; never compute dates. Fields: task — what to remind of, in the \
user's language, without the time words; in_minutes — for \"in N minutes/hours\" (hours × 60), \
otherwise 0; date — \"MM-DD\" or \"YYYY-MM-DD\" when a calendar date is said, otherwise \"\"; \
in_days — 0 today, 1 tomorrow, 2 the day after tomorrow; weekday — when a day of the week is \
said; hour and minute — a clock time as said (\"в 9\" → 9, \"в 7 вечера\" → 7 with \
part_of_day evening); part_of_day — morning (утром), afternoon (днём), evening (вечером), night \
(ночью). Other unsaid fields are null.";

/// The model call that transcribes `text`, a request to set a reminder made on the local
/// date `today`: greedy, constrained to [`REMINDER_SCHEMA`], with room for the whole object.
#[must_use]
pub fn extraction_request(today: &LocalTime, text: &str) -> LlmRequest {
    let prompt = format!(
        "Today is {:04}-{:02}-{:02}. Request: {text}",
        today.year, today.month, today.day
    );
    LlmRequest::new(
        vec![
            ChatMessage::system(EXTRACTION_INSTRUCTIONS),
            ChatMessage::user(prompt),
        ],
        RequestOptions {
            temperature: 0.0,
            max_tokens: 160,
        },
    )
    .json("reminder", REMINDER_SCHEMA)
}

/// Which reminder action a message asks for, if any (a cheap check on every message).
#[must_use]
pub fn detect(text: &str) -> Option<Intent> {
    let lower = text.to_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| lower.contains(w));
    let about_reminders = has(&["напоминан", "reminder"]);
    if about_reminders
        && has(&[
            "какие",
            "список",
            "покажи",
            "мои напоминания",
            "my reminders",
            "list",
            "what reminders",
            "show",
        ])
    {
        return Some(Intent::List);
    }
    if has(&["отмени", "удали", "cancel", "delete"]) && about_reminders {
        return Some(Intent::Cancel(lower));
    }
    if has(&["перенеси", "передвинь", "сдвинь", "move", "postpone"]) {
        if let Some(minutes) = shift_minutes(&lower) {
            return Some(Intent::Shift {
                minutes,
                about: lower,
            });
        }
    }
    // «Через 20 минут проверь духовку»: an order with an offset, no «напомни».
    let starts_with_offset = ["через ", "in "]
        .iter()
        .any(|p| lower.trim_start().starts_with(p))
        && has(&["минут", "час", "minute", "hour"]);
    // «Напомни, когда концерт?» asks the memory, not for a reminder: a request to set one
    // names a time and is not a question.
    let asks_to_remind = has(&["напомни", "remind me", "remind "]) && names_a_time(&lower);
    if (asks_to_remind || starts_with_offset) && !lower.trim_end().ends_with('?') {
        return Some(Intent::Set);
    }
    None
}

/// Whether `text` (in lower case) names a time: a digit or a time word.
fn names_a_time(lower: &str) -> bool {
    lower.chars().any(|c| c.is_ascii_digit())
        || TIME_WORDS.iter().any(|w| lower.contains(w))
        || lower
            .split(|c: char| !c.is_alphanumeric() && c != '.')
            // "may" alone is more often the verb ("remind me what I may need").
            .any(|word| word != "may" && month_word(word).is_some())
}

/// Most words an answer to «когда напомнить?» has («завтра в 9 утра», "at 7 pm on Friday"); a
/// longer message is a new topic.
const MAX_ANSWER_WORDS: usize = 8;

/// Whether `text` reads as the answer to the butler's question about a reminder's time: short,
/// naming a time, not a question («в 9», «вечера», «завтра в 10»).
#[must_use]
pub fn answers_when(text: &str) -> bool {
    let lower = text.to_lowercase();
    let words = lower.split_whitespace().count();
    (1..=MAX_ANSWER_WORDS).contains(&words)
        && names_a_time(&format!(" {lower} "))
        && !lower.trim_end().ends_with('?')
}

/// Words that name a time besides months ([`month_word`]); a «напомни» without one is left to
/// the chat (it asks the memory).
const TIME_WORDS: &[&str] = &[
    "сегодня",
    "завтра",
    "послезавтра",
    "через",
    "утром",
    "утра",
    "днём",
    "днем",
    "дня",
    "вечером",
    "вечера",
    "ночью",
    "ночи",
    "понедельник",
    "вторник",
    "сред",
    "четверг",
    "пятниц",
    "суббот",
    "воскресень",
    "минут",
    "час",
    "полчаса",
    "today",
    "tomorrow",
    "tonight",
    "morning",
    "afternoon",
    "evening",
    "night",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
    "minute",
    "hour",
    " in ",
    " at ",
    " on ",
];

/// «на час позже», «на 30 минут раньше», "by 2 hours later", "an hour earlier".
fn shift_minutes(lower: &str) -> Option<i64> {
    let sign = if ["позже", "later"].iter().any(|w| lower.contains(w)) {
        1
    } else if ["раньше", "earlier"].iter().any(|w| lower.contains(w)) {
        -1
    } else {
        return None;
    };
    let number: Option<i64> = lower
        .split(|c: char| !c.is_ascii_digit())
        .find(|s| !s.is_empty())
        .and_then(|s| s.parse().ok());
    let unit = if ["минут", "minute", "min"].iter().any(|w| lower.contains(w)) {
        1
    } else if ["час", "hour"].iter().any(|w| lower.contains(w)) {
        60
    } else if ["день", "дня", "дней", "day"]
        .iter()
        .any(|w| lower.contains(w))
    {
        24 * 60
    } else {
        return None;
    };
    let count = number.or_else(|| {
        [("полчаса", 30), ("half an hour", 30)]
            .iter()
            .find(|(w, _)| lower.contains(w))
            .map(|&(_, m)| m / unit)
    });
    Some(sign * count.unwrap_or(1).clamp(1, 100_000) * unit)
}

/// What the model made of a request to set a reminder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extraction {
    /// What to remind of.
    pub task: String,
    /// When, as the user said it.
    pub when: WhenSaid,
}

/// Reads the model's answer: the first JSON object in it, fields of the wrong type ignored.
/// `None` when there is no object or no task.
#[must_use]
pub fn parse_extraction(answer: &str) -> Option<Extraction> {
    let start = answer.find('{')?;
    let end = answer.rfind('}')?;
    let value: Value = serde_json::from_str(answer.get(start..=end)?).ok()?;
    let task = value.get("task")?.as_str()?.trim().to_owned();
    if task.is_empty() {
        return None;
    }
    let int = |key: &str| value.get(key).and_then(Value::as_i64);
    let small = |key: &str| int(key).and_then(|v| u8::try_from(v).ok());
    let text = |key: &str| value.get(key).and_then(Value::as_str).map(str::trim);
    // 0 minutes is the schema's "no offset said".
    let in_minutes = int("in_minutes")
        .and_then(|m| u32::try_from(m).ok())
        .filter(|&m| m > 0);
    let day = if let Some(date) = text("date").filter(|d| !d.is_empty()) {
        parse_date(date)
    } else if let Some(days) = small("in_days") {
        Some(DaySaid::InDays(days))
    } else {
        text("weekday")
            .and_then(weekday_from_code)
            .map(DaySaid::Weekday)
    };
    let time = TimeSaid {
        hour: small("hour"),
        minute: small("minute"),
        part: text("part_of_day").and_then(PartOfDay::from_code),
    };
    Some(Extraction {
        task,
        when: WhenSaid {
            in_minutes,
            day,
            time,
        },
    })
}

/// `MM-DD`, `YYYY-MM-DD` (a `--MM-DD` or a `DD.MM` a model may write too).
fn parse_date(date: &str) -> Option<DaySaid> {
    if let Some((d, m)) = date.split_once('.') {
        return Some(DaySaid::Date {
            year: None,
            month: m.trim().parse().ok()?,
            day: d.trim().parse().ok()?,
        });
    }
    let parts: Vec<&str> = date.trim_start_matches('-').split('-').collect();
    match parts.as_slice() {
        [m, d] => Some(DaySaid::Date {
            year: None,
            month: m.parse().ok()?,
            day: d.parse().ok()?,
        }),
        [y, m, d] => Some(DaySaid::Date {
            year: Some(y.parse().ok()?),
            month: m.parse().ok()?,
            day: d.parse().ok()?,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pre_filter_knows_each_kind_of_request_and_ignores_other_messages() {
        assert_eq!(
            detect("Напомни завтра в 9 позвонить маме"),
            Some(Intent::Set)
        );
        assert_eq!(
            detect("remind me in 20 minutes to check the oven"),
            Some(Intent::Set)
        );
        assert_eq!(detect("Какие у меня напоминания?"), Some(Intent::List));
        assert_eq!(detect("show my reminders"), Some(Intent::List));
        assert!(matches!(
            detect("Отмени напоминание про маму"),
            Some(Intent::Cancel(_))
        ));
        assert_eq!(
            detect("перенеси на час позже").map(|i| matches!(i, Intent::Shift { minutes: 60, .. })),
            Some(true)
        );
        assert!(matches!(
            detect("перенеси напоминание про духовку на 15 минут раньше"),
            Some(Intent::Shift { minutes: -15, .. })
        ));
        assert_eq!(detect("через 20 минут проверь духовку"), Some(Intent::Set));
        assert_eq!(
            detect("Напомни пятнадцатого декабря про концерт"),
            Some(Intent::Set),
            "a month in words names a time"
        );
        assert_eq!(
            detect("remind me about the concert on December the fifteenth"),
            Some(Intent::Set)
        );
        assert_eq!(
            detect("Напомни про смартфон, который я хотел"),
            None,
            "«смарт» is not «март»"
        );
        assert_eq!(
            detect("remind me what I may need for the trip"),
            None,
            "\"may\" the verb"
        );
        assert_eq!(detect("Как дела, Альфред?"), None);
        assert_eq!(detect("Что ты помнишь про маму?"), None);
        assert_eq!(
            detect("Напомни, когда концерт?"),
            None,
            "a question to the memory"
        );
        assert_eq!(
            detect("Альфред, напомни, что мы решили про торт"),
            None,
            "no time named"
        );
    }

    #[test]
    fn a_short_message_naming_a_time_answers_the_question_and_others_do_not() {
        for answer in ["в 9", "Вечера", "завтра в 10 утра", "at 7", "tomorrow"] {
            assert!(answers_when(answer), "{answer}");
        }
        for other in [
            "Как дела?",
            "спасибо",
            "в 9?",
            "",
            "а помнишь, как мы в 2019 году ездили с друзьями на море и потом ещё долго вспоминали",
        ] {
            assert!(!answers_when(other), "{other}");
        }
    }

    #[test]
    fn the_models_json_is_read_tolerantly() {
        let answer = r#"Sure! {"task":"позвонить маме","in_minutes":null,"date":null,"in_days":1,"weekday":null,"hour":9,"minute":null,"part_of_day":null} hope it helps"#;
        let e = parse_extraction(answer).expect("parsed");
        assert_eq!(e.task, "позвонить маме");
        assert_eq!(e.when.day, Some(DaySaid::InDays(1)));
        assert_eq!(e.when.time.hour, Some(9));
        let e = parse_extraction(
            r#"{"task":"концерт","date":"12-15","part_of_day":"morning","hour":"nine"}"#,
        )
        .expect("parsed");
        assert_eq!(
            e.when.day,
            Some(DaySaid::Date {
                year: None,
                month: 12,
                day: 15
            })
        );
        assert_eq!(
            e.when.time.hour, None,
            "a string where a number belongs is ignored"
        );
        assert_eq!(e.when.time.part, Some(PartOfDay::Morning));
        assert!(parse_extraction("no json here").is_none());
        assert!(parse_extraction(r#"{"task":"  "}"#).is_none());
        assert!(serde_json::from_str::<Value>(REMINDER_SCHEMA).is_ok());
    }
}
