//! [`DeltaAssembler`]: turns what an engine generates — raw token bytes (llama.cpp) or text
//! fragments (SSE) — into the deltas of an [`LlmStream`](butler_domain::ports::LlmStream).
//!
//! The port's contract is that the deltas, concatenated, are exactly the final text, and that
//! the final text has no leading or trailing whitespace. So leading whitespace is dropped,
//! trailing whitespace is held back until something follows it, and bytes are only released
//! as whole UTF-8 characters (a Cyrillic letter is often split across two tokens).

/// Assembles deltas; [`DeltaAssembler::finish`] gives the final text.
#[derive(Debug, Default)]
pub(crate) struct DeltaAssembler {
    /// Everything emitted so far: the final text.
    emitted: String,
    /// Whitespace not emitted yet: it is only emitted if more text follows.
    held: String,
    /// The start of a UTF-8 character whose remaining bytes have not arrived.
    partial: Vec<u8>,
}

impl DeltaAssembler {
    /// Adds raw bytes; returns the delta they complete, if any. Invalid bytes become U+FFFD.
    pub(crate) fn push_bytes(&mut self, bytes: &[u8]) -> Option<String> {
        self.partial.extend_from_slice(bytes);
        let mut text = String::new();
        let mut rest: &[u8] = &self.partial;
        loop {
            match std::str::from_utf8(rest) {
                Ok(valid) => {
                    text.push_str(valid);
                    rest = &[];
                    break;
                }
                Err(e) => {
                    let (valid, after) = rest.split_at(e.valid_up_to());
                    // `valid_up_to` marks valid UTF-8 by definition.
                    text.push_str(std::str::from_utf8(valid).unwrap_or_default());
                    match e.error_len() {
                        Some(bad) => {
                            text.push(char::REPLACEMENT_CHARACTER);
                            rest = &after[bad..];
                        }
                        // An incomplete character at the end: wait for its other bytes.
                        None => {
                            rest = after;
                            break;
                        }
                    }
                }
            }
        }
        self.partial = rest.to_vec();
        self.push_text(&text)
    }

    /// Adds text; returns the delta it completes, if any.
    pub(crate) fn push_text(&mut self, text: &str) -> Option<String> {
        let mut pending = std::mem::take(&mut self.held);
        pending.push_str(text);
        let pending = if self.emitted.is_empty() {
            pending.trim_start()
        } else {
            pending.as_str()
        };
        let (out, trailing) = pending.split_at(pending.trim_end().len());
        self.held = trailing.to_owned();
        if out.is_empty() {
            return None;
        }
        self.emitted.push_str(out);
        Some(out.to_owned())
    }

    /// The text emitted so far.
    pub(crate) fn text(&self) -> &str {
        &self.emitted
    }

    /// The final text: every delta, concatenated (held whitespace and an incomplete last
    /// character are dropped).
    pub(crate) fn finish(self) -> String {
        self.emitted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_bytes(pieces: &[&[u8]]) -> (Vec<String>, String) {
        let mut assembler = DeltaAssembler::default();
        let deltas: Vec<String> = pieces
            .iter()
            .filter_map(|p| assembler.push_bytes(p))
            .collect();
        (deltas, assembler.finish())
    }

    #[test]
    fn cyrillic_split_across_tokens_is_released_whole_and_deltas_add_up_to_the_text() {
        let word = "Пётр".as_bytes();
        let (deltas, text) = run_bytes(&[&word[..1], &word[1..3], &word[3..]]);
        assert_eq!(text, "Пётр");
        assert_eq!(deltas.concat(), text);
        assert!(deltas.iter().all(|d| !d.is_empty()));
    }

    #[test]
    fn leading_and_trailing_whitespace_never_reach_the_text() {
        let mut a = DeltaAssembler::default();
        assert_eq!(a.push_text("  \n"), None);
        assert_eq!(a.push_text(" Добрый"), Some("Добрый".to_owned()));
        assert_eq!(a.push_text(" "), None, "held until something follows");
        assert_eq!(a.push_text("вечер"), Some(" вечер".to_owned()));
        assert_eq!(a.push_text(".\n\n"), Some(".".to_owned()));
        assert_eq!(a.text(), "Добрый вечер.");
        assert_eq!(a.finish(), "Добрый вечер.");
    }

    #[test]
    fn invalid_bytes_become_replacement_characters_and_a_cut_off_tail_is_dropped() {
        let (deltas, text) = run_bytes(&[b"ok \xff", "ё".as_bytes(), &"я".as_bytes()[..1]]);
        assert_eq!(text, "ok \u{fffd}ё");
        assert_eq!(deltas.concat(), text);
    }

    proptest::proptest! {
        #[test]
        fn any_split_of_any_text_concatenates_to_the_trimmed_text(
            text in "\\PC{0,40}|[ \\n]{0,3}[а-яё ]{0,30}[ \\n]{0,3}",
            cuts in proptest::collection::vec(0usize..200, 0..8),
        ) {
            let bytes = text.as_bytes();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(bytes.len())).collect();
            cuts.sort_unstable();
            let mut pieces = Vec::new();
            let mut start = 0;
            for cut in cuts {
                pieces.push(&bytes[start..cut]);
                start = cut;
            }
            pieces.push(&bytes[start..]);
            let (deltas, assembled) = run_bytes(&pieces);
            proptest::prop_assert_eq!(&deltas.concat(), &assembled);
            proptest::prop_assert_eq!(assembled.as_str(), text.trim());
        }
    }
}
