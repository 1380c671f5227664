//! Cutting text to a token limit: the longest prefix that, with a marker appended, fits.
//! Counting is delegated to the configured [`TokenCounter`], so the limit holds for the model.

use butler_domain::ports::TokenCounter;

/// Returns `text` if it fits in `max_tokens`; otherwise the longest prefix (cut at a word
/// boundary when one is near) followed by `marker`, whose count is at most `max_tokens`.
/// If not even the marker fits, returns the longest prefix of the marker that does.
pub async fn trim_to_tokens(
    counter: &dyn TokenCounter,
    text: &str,
    max_tokens: usize,
    marker: &str,
) -> String {
    if counter.count(text).await <= max_tokens {
        return text.to_owned();
    }
    if counter.count(marker).await > max_tokens {
        return longest_fitting_prefix(counter, marker.trim_start(), max_tokens, "").await;
    }
    longest_fitting_prefix(counter, text, max_tokens, marker).await
}

/// Binary search over char boundaries for the longest `prefix + marker` within `max_tokens`.
async fn longest_fitting_prefix(
    counter: &dyn TokenCounter,
    text: &str,
    max_tokens: usize,
    marker: &str,
) -> String {
    let boundaries: Vec<usize> = text
        .char_indices()
        .map(|(i, _)| i)
        .chain([text.len()])
        .collect();
    // Invariant: boundaries[lo] fits (the empty prefix fits because the marker does).
    let (mut lo, mut hi) = (0usize, boundaries.len() - 1);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        let candidate = format!("{}{marker}", &text[..boundaries[mid]]);
        if counter.count(&candidate).await <= max_tokens {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    let prefix = &text[..boundaries[lo]];
    // Prefer ending on a word boundary if that loses little; a shorter prefix still fits.
    let prefix = match prefix.rfind(char::is_whitespace) {
        Some(ws) if prefix.len() - ws <= 24 && ws > 0 => &prefix[..ws],
        _ => prefix,
    };
    format!("{}{marker}", prefix.trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;
    use butler_testkit::fakes::CharCounter;

    #[tokio::test]
    async fn text_that_fits_is_returned_unchanged() {
        assert_eq!(
            trim_to_tokens(&CharCounter, "короткий", 100, "…").await,
            "короткий"
        );
    }

    #[tokio::test]
    async fn long_text_is_cut_at_a_word_boundary_with_the_marker_and_fits() {
        let text = "один два три четыре пять шесть семь восемь девять десять";
        let cut = trim_to_tokens(&CharCounter, text, 30, " …").await;
        assert!(cut.ends_with(" …"), "{cut}");
        assert!(cut.chars().count() <= 30, "{cut}");
        assert!(text.starts_with(cut.trim_end_matches(" …")));
        assert!(!cut.trim_end_matches(" …").ends_with(' '));
        assert_eq!(cut, "один два три четыре пять …");
    }

    #[tokio::test]
    async fn a_limit_smaller_than_the_marker_returns_a_prefix_of_the_marker() {
        let cut = trim_to_tokens(&CharCounter, "abcdefgh", 2, " [cut]").await;
        assert_eq!(cut, "[c");
    }

    #[tokio::test]
    async fn a_zero_limit_returns_nothing() {
        assert_eq!(trim_to_tokens(&CharCounter, "abc", 0, "…").await, "");
    }
}
