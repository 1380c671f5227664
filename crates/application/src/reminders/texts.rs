//! What the butler says about reminders, in the user's language.

use butler_domain::profile::Language;
use butler_domain::reminder::AskBack;

/// The delivered reminder: a template in the butler's voice, with a short note when it comes
/// `late_minutes` late (after downtime).
#[must_use]
pub fn delivery_text(language: Language, text: &str, late_minutes: Option<i64>) -> String {
    match (language, late_minutes) {
        (Language::Ru, None) => format!("⏰ Позвольте напомнить, сэр: {text}"),
        (Language::Ru, Some(m)) => format!(
            "⏰ Позвольте напомнить, сэр: {text}\n(Простите за опоздание на {m} мин — я был недоступен.)"
        ),
        (Language::En, None) => format!("⏰ Allow me to remind you, sir: {text}"),
        (Language::En, Some(m)) => format!(
            "⏰ Allow me to remind you, sir: {text}\n(My apologies, this comes {m} min late — I was unavailable.)"
        ),
    }
}

pub(super) fn confirmed(language: Language, when: &str, text: &str) -> String {
    match language {
        Language::Ru => format!("Напомню {when}: {text}."),
        Language::En => format!("I shall remind you {when}: {text}."),
    }
}

pub(super) fn moved(language: Language, when: &str, text: &str) -> String {
    match language {
        Language::Ru => format!("Перенёс: напомню {when} — {text}."),
        Language::En => format!("Moved: I shall remind you {when} — {text}."),
    }
}

pub(super) fn cancelled(language: Language, text: &str) -> String {
    match language {
        Language::Ru => format!("Отменил напоминание: {text}."),
        Language::En => format!("Cancelled the reminder: {text}."),
    }
}

pub(super) fn ask_back(language: Language, why: AskBack) -> String {
    let ru = match why {
        AskBack::NoTime => "Когда напомнить, сэр? Например: «завтра в 9» или «через 20 минут».".to_owned(),
        AskBack::NoTimeOfDay => "В котором часу напомнить, сэр? Скажите, пожалуйста, ещё раз вместе со временем.".to_owned(),
        AskBack::AmbiguousHour { hour } => format!(
            "В {hour}:00 утра или в {}:00, сэр? Скажите, пожалуйста, ещё раз — например, «в {} вечера».",
            hour + 12,
            hour
        ),
        AskBack::Past => "Это время уже прошло, сэр. Когда напомнить?".to_owned(),
        AskBack::Invalid => "Не могу разобрать дату или время, сэр. Скажете иначе?".to_owned(),
        AskBack::Conflicting => "Не вполне понял, когда напомнить, сэр. Скажете ещё раз?".to_owned(),
        AskBack::TooFar => "Так далеко вперёд я не загадываю, сэр.".to_owned(),
    };
    let en = match why {
        AskBack::NoTime => {
            "When shall I remind you, sir? For example: \"tomorrow at 9\" or \"in 20 minutes\"."
                .to_owned()
        }
        AskBack::NoTimeOfDay => "At what time, sir? Please say it again with the time.".to_owned(),
        AskBack::AmbiguousHour { hour } => format!(
            "{hour}:00 in the morning or {}:00, sir? Please say it again — e.g. \"at {hour} pm\".",
            hour + 12
        ),
        AskBack::Past => "That time has already passed, sir. When shall I remind you?".to_owned(),
        AskBack::Invalid => {
            "I cannot make out that date or time, sir. Could you put it differently?".to_owned()
        }
        AskBack::Conflicting => {
            "I did not quite catch when, sir. Could you say it again?".to_owned()
        }
        AskBack::TooFar => "That is further ahead than I plan, sir.".to_owned(),
    };
    match language {
        Language::Ru => ru,
        Language::En => en,
    }
}

pub(super) fn not_understood(language: Language) -> &'static str {
    match language {
        Language::Ru => "Не понял, о чём напомнить, сэр. Скажете ещё раз — что и когда?",
        Language::En => "I did not catch what to remind you of, sir. What, and when?",
    }
}

pub(super) fn unavailable(language: Language) -> &'static str {
    match language {
        Language::Ru => "Простите, сэр, записная книжка сейчас недоступна. Попробуйте чуть позже.",
        Language::En => {
            "My apologies, sir, my notebook is unavailable just now. Please try again shortly."
        }
    }
}

pub(super) fn too_many(language: Language, max: u32) -> String {
    match language {
        Language::Ru => format!("У вас уже {max} напоминаний, сэр, — это предел. Отмените какое-нибудь (/reminders)."),
        Language::En => format!("You already have {max} reminders, sir — that is the limit. Cancel one first (/reminders)."),
    }
}

pub(super) fn too_far(language: Language, days: i64) -> String {
    match language {
        Language::Ru => {
            format!("Так далеко я не загадываю, сэр: не дальше чем на {days} дней вперёд.")
        }
        Language::En => format!("That is too far ahead, sir: at most {days} days."),
    }
}

pub(super) fn none_pending(language: Language) -> &'static str {
    match language {
        Language::Ru => "Напоминаний нет, сэр.",
        Language::En => "You have no reminders, sir.",
    }
}

pub(super) fn list_header(language: Language) -> &'static str {
    match language {
        Language::Ru => "Ваши напоминания:",
        Language::En => "Your reminders:",
    }
}

pub(super) fn which_one(language: Language) -> &'static str {
    match language {
        Language::Ru => {
            "Какое именно, сэр? Назовите его словами из текста или нажмите кнопку в /reminders."
        }
        Language::En => "Which one, sir? Name it by its words, or use the buttons in /reminders.",
    }
}

pub(super) fn no_match(language: Language) -> &'static str {
    match language {
        Language::Ru => "Не нашёл такого напоминания, сэр.",
        Language::En => "I found no such reminder, sir.",
    }
}

pub(super) fn being_delivered(language: Language) -> &'static str {
    match language {
        Language::Ru => "Это напоминание как раз отправляется, сэр.",
        Language::En => "That reminder is being delivered right now, sir.",
    }
}
