//! What the butler says on his own, without the language model: the greeting, refusals and
//! apologies. Russian, in Alfred's voice; plain text (never Markdown, so nothing to escape).

/// The `/start` greeting.
pub const GREETING: &str = "Добрый день. Меня зовут Альфред, к вашим услугам.\n\n\
Пишите мне или наговаривайте голосовые — я отвечу и запомню, что для вас важно, \
чтобы не переспрашивать. Никаких команд знать не нужно. Чем могу служить?";

/// Said once in a group that is not on `ALLOWED_CHAT_IDS`, before the butler leaves it.
pub const GROUP_NOT_ALLOWED: &str = "Благодарю за приглашение, но в этой группе я не служу: \
мой хозяин не внёс её в список. Позвольте откланяться.";

/// To a user who is not on the allow-list (sent once per user).
pub const NOT_ALLOWED: &str = "Прошу прощения, но я служу только своему хозяину: \
этот дворецкий частный. Всего доброго.";

/// To stickers, photos, documents and the like.
pub const UNSUPPORTED: &str = "Весьма признателен, однако я понимаю лишь текст и голосовые \
сообщения. Стикеры, фотографии и документы, увы, вне моей компетенции — не изволите ли \
написать словами?";

/// Voice arrived but no speech-to-text is configured.
pub const VOICE_DISABLED: &str = "Голосовые сообщения я, к сожалению, сейчас не слушаю — \
распознавание речи не настроено. Будьте добры, напишите текстом.";

/// Speech-to-text or the download failed; nothing was stored.
pub const VOICE_FAILED: &str = "Прошу прощения, не удалось разобрать голосовое сообщение. \
Не могли бы вы повторить или написать текстом?";

/// The reply took longer than the per-reply deadline.
pub const TOO_SLOW: &str = "Прошу прощения, ответ готовится непозволительно долго. \
Попробуйте, пожалуйста, ещё раз чуть позже.";

/// To a user over the message rate (once per streak); nothing was stored.
#[must_use]
pub fn too_fast(retry_after: std::time::Duration) -> String {
    let secs = retry_after.as_secs().max(1);
    format!(
        "Позвольте перевести дух: вы пишете быстрее, чем приличный дворецкий успевает \
отвечать. Последнее сообщение я, увы, пропустил — повторите его через {secs} с, и я весь внимание."
    )
}

/// To a user whose daily quota is used up (once per day); nothing was stored.
#[must_use]
pub fn quota_exhausted(quota: u32) -> String {
    format!(
        "Боюсь, на сегодня мы исчерпали отведённое мне время: {quota} сообщений в сутки. \
С радостью продолжу завтра (после полуночи по UTC)."
    )
}

/// A voice note longer than the limit (not downloaded).
#[must_use]
pub fn voice_too_long(max_secs: u64) -> String {
    format!(
        "Голосовое сообщение длиннее {max_secs} с — боюсь, столько я не выслушаю. \
Будьте добры, скажите покороче или напишите текстом."
    )
}

/// A voice note larger than the limit (not downloaded).
#[must_use]
pub fn voice_too_large(max_bytes: u64) -> String {
    let mb = max_bytes.div_ceil(1024 * 1024);
    format!(
        "Голосовое сообщение больше {mb} МБ — такой объём мне не по силам. \
Будьте добры, скажите покороче или напишите текстом."
    )
}

/// The reply to a voice note, opening with a short quote of what was heard.
#[must_use]
pub fn voice_reply(heard: &str, reply: &str, quote_chars: usize) -> String {
    let heard = heard.trim();
    let quote: String = if heard.chars().count() > quote_chars {
        let cut: String = heard.chars().take(quote_chars).collect();
        format!("{}…", cut.trim_end())
    } else {
        heard.to_owned()
    };
    format!("«{quote}»\n\n{reply}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_transcript_is_quoted_in_short() {
        let reply = voice_reply(&"слово ".repeat(50), "Ответ.", 20);
        let quote = reply.split("\n\n").next().unwrap();
        assert!(quote.chars().count() <= 20 + 3, "{quote}");
        assert!(quote.starts_with('«') && quote.ends_with("…»"));
        assert!(reply.ends_with("\n\nОтвет."));
    }

    #[test]
    fn limits_are_stated_in_plain_units() {
        assert!(voice_too_long(300).contains("300 с"));
        assert!(voice_too_large(20 * 1024 * 1024).contains("20 МБ"));
    }
}
