//! Bounded, secret-free descriptions of HTTP bodies: enough to diagnose a failure in a log
//! line, never a whole HTML error page, never the API key even if a server echoes it, and
//! never the text of a successful answer (it may quote the user's conversation).

use secrecy::{ExposeSecret, SecretString};

/// Characters of an error body kept in an error message.
pub(crate) const EXCERPT_CHARS: usize = 200;

/// The first [`EXCERPT_CHARS`] characters of `body` (lossy UTF-8, whitespace collapsed), with
/// every occurrence of `secret` replaced by `***`. Cut on a character boundary, marked `…`.
pub(crate) fn body_excerpt(body: &[u8], secret: Option<&SecretString>) -> String {
    let mut text = String::from_utf8_lossy(body).into_owned();
    // Redact before cutting, so a key straddling the cut cannot leak its first half.
    if let Some(secret) = secret.map(ExposeSecret::expose_secret) {
        if !secret.is_empty() {
            text = text.replace(secret, "***");
        }
    }
    let collapsed = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match collapsed.char_indices().nth(EXCERPT_CHARS) {
        Some((cut, _)) => format!("{}…", &collapsed[..cut]),
        None => collapsed,
    }
}

/// Why a successful body could not be parsed as `what`, saying where parsing failed and not
/// what the body said.
pub(crate) fn malformed_body(what: &str, error: &serde_json::Error, body_len: usize) -> String {
    format!(
        "not a {what} ({:?} error at line {} column {}, {body_len} bytes)",
        error.classify(),
        error.line(),
        error.column()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_body_is_quoted_whole_with_whitespace_collapsed() {
        assert_eq!(
            body_excerpt(b"  {\"error\":\n  \"busy\"}  ", None),
            "{\"error\": \"busy\"}"
        );
    }

    #[test]
    fn a_long_cyrillic_body_is_cut_on_a_character_boundary() {
        let body = "ошибка ".repeat(100);
        let excerpt = body_excerpt(body.as_bytes(), None);
        assert_eq!(excerpt.chars().count(), EXCERPT_CHARS + 1);
        assert!(excerpt.ends_with('…'));
    }

    #[test]
    fn an_echoed_key_is_redacted() {
        let key = SecretString::from("sk-very-secret");
        let excerpt = body_excerpt(b"invalid key sk-very-secret given", Some(&key));
        assert_eq!(excerpt, "invalid key *** given");
    }

    #[test]
    fn invalid_utf8_does_not_fail() {
        assert_eq!(body_excerpt(&[0xff, b'o', b'k'], None), "\u{fffd}ok");
    }
}
