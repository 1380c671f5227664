//! Splitting long replies into Telegram-sized messages.
//!
//! Telegram limits a message to 4096 characters *as UTF-16 code units* (an emoji outside the
//! Basic Multilingual Plane counts twice). A reply is cut on the last paragraph break that fits,
//! else the last line break, else the last sentence end, else the last space — and only as a
//! last resort inside a word, always between whole `char`s so a surrogate pair is never torn.
//! Whitespace at the cut is dropped (Telegram would trim it anyway); nothing else is lost.

/// Telegram's limit on the text of one message, in UTF-16 code units.
pub const TELEGRAM_MESSAGE_LIMIT: usize = 4096;

/// Splits `text` into non-empty parts of at most `limit` UTF-16 code units each, preferring
/// paragraph, then line, then sentence, then word boundaries. The parts, in order, are the
/// text with the whitespace at each cut (and at both ends) removed. A blank text gives no
/// parts. `limit` is at least 2 (so any `char` fits).
#[must_use]
pub fn split_message(text: &str, limit: usize) -> Vec<String> {
    let limit = limit.max(2);
    let mut parts = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let fits = prefix_fitting(rest, limit);
        if fits == rest.len() {
            parts.push(rest.to_owned());
            break;
        }
        let cut = best_cut(&rest[..fits]).unwrap_or(fits);
        let part = rest[..cut].trim_end();
        if !part.is_empty() {
            parts.push(part.to_owned());
        }
        rest = rest[cut..].trim_start();
    }
    parts
}

/// The byte length of the longest prefix of `text` within `limit` UTF-16 units (on a `char`
/// boundary; at least one `char` when `limit` ≥ 2).
fn prefix_fitting(text: &str, limit: usize) -> usize {
    let mut units = 0;
    for (index, c) in text.char_indices() {
        units += c.len_utf16();
        if units > limit {
            return index;
        }
    }
    text.len()
}

/// The length of `text` as Telegram counts it: UTF-16 code units.
pub(crate) fn utf16_units(text: &str) -> usize {
    text.chars().map(char::len_utf16).sum()
}

/// The byte index where the longest suffix of `text` within `limit` UTF-16 units starts (on a
/// `char` boundary; `text.len()` when not even the last `char` fits).
pub(crate) fn suffix_fitting(text: &str, limit: usize) -> usize {
    let mut units = 0;
    let mut start = text.len();
    for (index, c) in text.char_indices().rev() {
        units += c.len_utf16();
        if units > limit {
            break;
        }
        start = index;
    }
    start
}

/// The best place to cut `window` (a prefix that fits), as a byte index, or `None` for a hard
/// cut at its end. Paragraph and sentence breaks count only in the second half of the window,
/// so a stray early break does not produce a tiny message.
fn best_cut(window: &str) -> Option<usize> {
    let half = window.len() / 2;
    let late = |index: &usize| *index >= half && *index > 0;
    window
        .rfind("\n\n")
        .filter(late)
        .or_else(|| window.rfind('\n').filter(late))
        .or_else(|| last_sentence_end(window).filter(late))
        .or_else(|| {
            window
                .char_indices()
                .rev()
                .find(|(_, c)| c.is_whitespace())
                .map(|(i, _)| i)
                .filter(|i| *i > 0)
        })
}

/// The byte index just after the last sentence-ending punctuation followed by whitespace.
fn last_sentence_end(window: &str) -> Option<usize> {
    let mut chars = window.char_indices().peekable();
    let mut found = None;
    while let Some((_, c)) = chars.next() {
        if matches!(c, '.' | '!' | '?' | '…') {
            if let Some((next, after)) = chars.peek() {
                if after.is_whitespace() {
                    found = Some(*next);
                }
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn utf16_len(s: &str) -> usize {
        s.encode_utf16().count()
    }

    #[test]
    fn emoji_count_as_two_units_and_a_suffix_never_tears_one() {
        assert_eq!(utf16_units("ab😀я"), 5);
        let text = "a😀😀";
        assert_eq!(&text[suffix_fitting(text, 3)..], "😀");
        assert_eq!(&text[suffix_fitting(text, 4)..], "😀😀");
        assert_eq!(&text[suffix_fitting(text, 9)..], text);
        assert_eq!(suffix_fitting(text, 1), text.len());
    }

    /// Each part appears in `text`, in order, separated only by whitespace.
    fn is_text_modulo_cut_whitespace(text: &str, parts: &[String]) -> bool {
        let mut rest = text;
        for part in parts {
            rest = rest.trim_start();
            match rest.strip_prefix(part.as_str()) {
                Some(after) => rest = after,
                None => return false,
            }
        }
        rest.trim().is_empty()
    }

    #[test]
    fn a_short_reply_is_sent_as_one_message() {
        assert_eq!(
            split_message("Добрый вечер, сэр.", 4096),
            vec!["Добрый вечер, сэр."]
        );
    }

    #[test]
    fn a_blank_reply_gives_no_messages() {
        assert!(split_message(" \n\t ", 4096).is_empty());
    }

    #[test]
    fn long_replies_are_cut_at_the_last_paragraph_break_that_fits() {
        let first = "а".repeat(60);
        let second = "б".repeat(30);
        let text = format!("{first}\n\n{second}");
        assert_eq!(split_message(&text, 80), vec![first, second]);
    }

    #[test]
    fn without_paragraphs_the_cut_falls_after_a_sentence() {
        let text = "Первое предложение довольно длинное. Второе тоже не короткое! Третье?";
        let parts = split_message(text, 50);
        assert_eq!(parts[0], "Первое предложение довольно длинное.");
        assert!(is_text_modulo_cut_whitespace(text, &parts));
    }

    #[test]
    fn without_sentences_the_cut_falls_between_words() {
        let text = "слово ".repeat(30);
        let parts = split_message(&text, 40);
        assert!(parts
            .iter()
            .all(|p| !p.starts_with(' ') && !p.ends_with(' ')));
        assert!(parts.iter().all(|p| p.split(' ').all(|w| w == "слово")));
    }

    #[test]
    fn a_word_longer_than_the_limit_is_cut_hard() {
        let parts = split_message(&"x".repeat(10), 4);
        assert_eq!(parts, vec!["xxxx", "xxxx", "xx"]);
    }

    #[test]
    fn emoji_surrogate_pairs_are_never_torn_and_count_twice() {
        let text = "😀".repeat(5); // 10 UTF-16 units
        let parts = split_message(&text, 3);
        assert!(parts.iter().all(|p| utf16_len(p) <= 3));
        assert_eq!(parts.concat(), text);
    }

    #[test]
    fn a_5000_character_reply_becomes_two_telegram_messages() {
        let text = format!("{}\n\n{}", "а".repeat(2500), "б".repeat(2499));
        let parts = split_message(&text, TELEGRAM_MESSAGE_LIMIT);
        assert_eq!(parts.len(), 2);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn splitting_preserves_the_text_and_respects_the_limit(
            text in "(\\PC{0,40}[ \n.!?😀ё]{0,3}){0,40}",
            limit in 2usize..120,
        ) {
            let parts = split_message(&text, limit);
            for part in &parts {
                prop_assert!(utf16_len(part) <= limit, "part {part:?} over {limit}");
                prop_assert!(!part.trim().is_empty());
            }
            prop_assert!(is_text_modulo_cut_whitespace(&text, &parts), "{text:?} -> {parts:?}");
        }

        #[test]
        fn text_within_the_limit_is_never_split(text in "\\PC{1,200}") {
            let parts = split_message(&text, 4096);
            prop_assert!(parts.len() <= 1);
        }
    }
}
