//! Search terms: the words of a fact or a query reduced to their dictionary form, so that a
//! fact stored in one form is found by a question in another. Russian inflects heavily, and
//! people ask in the first person about facts written in the third: «Живёт в Перми» / «Где я
//! живу?», «Сестру зовут Анна» / «как зовут мою сестру?».
//!
//! Why lemmas. Every backend indexes the terms this module computes, and every query is reduced
//! the same way, so SQLite (FTS5, `unicode61` tokenizer over the terms), MongoDB (a multikey
//! index on a `terms` array; the test server has no text index) and the in-memory fake match
//! exactly the same facts. Snowball stems (the first version) cut endings by rule, which fails
//! both ways in Russian verbs: «живу» → `жив` but «живёт» → `живет` (no match), and «едем» →
//! `ед`, the stem of «еда» (a false match). A morphological dictionary knows the word:
//! «живу», «живёт», «жил» → `жить`; «едем» → `ехать`; «еда» → `еда`.
//!
//! The dictionary is OpenCorpora's, as packaged by the `rumorph` crate (bundled, about 20 MB
//! in the binary; loading ≈ 3 ms, ≈ 1 µs a word): chosen over `rsmorphy` (a pymorphy2 port
//! unmaintained since 2019) because it is maintained, fast and self-contained. Measured on the
//! contract suite's Russian pairs (`fts5_search_strategies_on_russian_inflections` in
//! `sqlite_contract.rs`) and on `butler-bench memory` (see `docs/memory.md`).
//!
//! How: lower case, `ё` as `е`; words are runs of letters and digits; common function words
//! (pronouns, prepositions, question words: [`is_stop_word`]) are dropped. A Cyrillic word the
//! dictionary knows becomes its lemmas (the likeliest, and a second one when the word is
//! ambiguous enough: «стали» → `стать`, `сталь`). A Cyrillic word it does not know (a rare
//! name, a typo) falls back to its Snowball stem — only when the stem keeps at least
//! [`MIN_FALLBACK_STEM`] letters, else the whole word, so a short stem cannot collide with
//! an unrelated word. Latin words go through Snowball English (Porter2), whose endings are
//! regular enough. Other words stay as they are. Single letters are dropped. Each text's terms
//! are distinct, in order of first appearance.
//!
//! Stored facts keep the terms computed when they were saved: a change here changes what old
//! facts match until they are re-indexed ([`TERMS_VERSION`]).

use std::collections::HashMap;
use std::sync::LazyLock;

use rust_stemmers::{Algorithm, Stemmer};

/// The version of the term rules; stores re-index facts saved under an older one.
pub const TERMS_VERSION: u32 = 2;

/// Shortest Snowball stem used for a Cyrillic word the dictionary does not know; a shorter
/// one keeps the whole word instead.
pub const MIN_FALLBACK_STEM: usize = 4;

/// A second lemma is a term too when its analysis is at least this likely.
const SECOND_LEMMA_PROBABILITY: f64 = 0.2;

/// Longest term kept, in characters; a longer "word" (a URL, a hash) is cut to this.
pub const MAX_TERM_CHARS: usize = 40;

/// Most distinct terms of a query that a search uses; the rest of a long message is ignored,
/// which bounds every backend's query.
pub const MAX_QUERY_TERMS: usize = 32;

/// The distinct search terms of `text` (see the module docs).
///
/// ```
/// use butler_domain::fact::terms::terms;
///
/// assert_eq!(terms("Сестру зовут Анна"), ["сестра", "звать", "анна"]);
/// assert_eq!(terms("как зовут мою сестру?"), ["звать", "сестра"]);
/// assert_eq!(terms("Мы живём в Твери"), ["жить", "тверь"]);
/// assert_eq!(terms("Где я живу?"), ["жить"]);
/// ```
#[must_use]
pub fn terms(text: &str) -> Vec<String> {
    distinct_terms(text, usize::MAX)
}

/// The terms a search for `query` uses: [`terms`], at most [`MAX_QUERY_TERMS`] of them.
#[must_use]
pub fn query_terms(query: &str) -> Vec<String> {
    distinct_terms(query, MAX_QUERY_TERMS)
}

fn distinct_terms(text: &str, limit: usize) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for word in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        if out.len() >= limit {
            break;
        }
        let word: String = word
            .chars()
            .flat_map(char::to_lowercase)
            .map(|c| if c == 'ё' { 'е' } else { c })
            .collect();
        if is_stop_word(&word) {
            continue;
        }
        for term in word_terms(&word) {
            if out.len() >= limit {
                break;
            }
            let mut chars = term.chars();
            let single_letter =
                matches!((chars.next(), chars.next()), (Some(c), None) if !c.is_numeric());
            if term.is_empty() || single_letter || is_stop_word(&term) || out.contains(&term) {
                continue;
            }
            out.push(term);
        }
    }
    out
}

/// The terms of one lower-case word: its lemmas when the dictionary knows it, else its stem
/// (see the module docs).
fn word_terms(word: &str) -> Vec<String> {
    if word.chars().any(is_cyrillic) {
        if let Some(lemmas) = lemmas(word) {
            return lemmas;
        }
        let stemmed = stem(word);
        return vec![if stemmed.chars().count() >= MIN_FALLBACK_STEM {
            stemmed
        } else {
            cut(word.to_owned())
        }];
    }
    vec![stem(word)]
}

/// The lemmas of a Cyrillic word the dictionary knows (lower case, `ё` as `е`): the likeliest,
/// and a second if likely enough. `None` for a word it does not know.
#[must_use]
pub fn lemmas(word: &str) -> Option<Vec<String>> {
    static DICTIONARY: LazyLock<Option<rumorph::Dictionary>> =
        LazyLock::new(|| rumorph::Dictionary::bundled().ok());
    let dictionary = DICTIONARY.as_ref()?;
    let analyses = dictionary.analyze(word);
    let mut out: Vec<String> = Vec::with_capacity(2);
    for (i, analysis) in analyses
        .iter()
        .filter(|a| a.source == rumorph::Source::Dictionary)
        .enumerate()
    {
        if i > 0 && analysis.prob < SECOND_LEMMA_PROBABILITY {
            break;
        }
        let lemma = cut(analysis
            .lemma
            .chars()
            .flat_map(char::to_lowercase)
            .map(|c| if c == 'ё' { 'е' } else { c })
            .collect());
        if !out.contains(&lemma) {
            out.push(lemma);
        }
        if out.len() == 2 {
            break;
        }
    }
    (!out.is_empty()).then_some(out)
}

fn cut(term: String) -> String {
    if term.chars().count() > MAX_TERM_CHARS {
        term.chars().take(MAX_TERM_CHARS).collect()
    } else {
        term
    }
}

/// The stem of one lower-case word: Snowball Russian for Cyrillic words, Snowball English
/// (Porter2) for Latin ones, the word itself otherwise; cut to [`MAX_TERM_CHARS`].
#[must_use]
pub fn stem(word: &str) -> String {
    static RUSSIAN: LazyLock<Stemmer> = LazyLock::new(|| Stemmer::create(Algorithm::Russian));
    static ENGLISH: LazyLock<Stemmer> = LazyLock::new(|| Stemmer::create(Algorithm::English));
    let stemmed = if word.chars().any(is_cyrillic) {
        RUSSIAN.stem(word).into_owned()
    } else if word.chars().all(|c| c.is_ascii_lowercase()) {
        ENGLISH.stem(word).into_owned()
    } else {
        word.to_owned()
    };
    if stemmed.chars().count() > MAX_TERM_CHARS {
        stemmed.chars().take(MAX_TERM_CHARS).collect()
    } else {
        stemmed
    }
}

/// Words too common to tell facts apart (lower case, `ё` as `е`): they would make every fact
/// match every question.
#[must_use]
pub fn is_stop_word(word: &str) -> bool {
    STOP_WORDS.contains(&word)
}

const STOP_WORDS: &[&str] = &[
    // Russian: pronouns, prepositions, particles, question words, forms of "to be".
    "а",
    "без",
    "бы",
    "был",
    "была",
    "были",
    "было",
    "быть",
    "в",
    "вам",
    "вас",
    "вот",
    "во",
    "все",
    "вы",
    "где",
    "да",
    "для",
    "до",
    "его",
    "ее",
    "ей",
    "ему",
    "если",
    "есть",
    "еще",
    "же",
    "за",
    "зачем",
    "и",
    "из",
    "или",
    "им",
    "их",
    "к",
    "как",
    "какая",
    "какие",
    "каким",
    "какой",
    "какую",
    "когда",
    "ко",
    "кого",
    "кому",
    "кто",
    "ли",
    "мне",
    "меня",
    "мной",
    "мое",
    "моего",
    "моей",
    "моему",
    "мои",
    "мой",
    "моих",
    "мою",
    "моя",
    "мы",
    "на",
    "нам",
    "нас",
    "не",
    "нет",
    "но",
    "ну",
    "о",
    "об",
    "он",
    "она",
    "они",
    "оно",
    "от",
    "по",
    "почему",
    "про",
    "с",
    "со",
    "сколько",
    "так",
    "там",
    "тебе",
    "тебя",
    "то",
    "ты",
    "у",
    "уже",
    "чем",
    "что",
    "чтобы",
    "это",
    "эта",
    "этот",
    "я",
    // English.
    "a",
    "about",
    "am",
    "an",
    "and",
    "are",
    "at",
    "be",
    "by",
    "did",
    "do",
    "does",
    "for",
    "from",
    "had",
    "has",
    "have",
    "how",
    "i",
    "in",
    "is",
    "it",
    "its",
    "me",
    "my",
    "of",
    "on",
    "or",
    "our",
    "that",
    "the",
    "this",
    "to",
    "was",
    "we",
    "were",
    "what",
    "when",
    "where",
    "which",
    "who",
    "why",
    "with",
    "you",
    "your",
];

fn is_cyrillic(c: char) -> bool {
    matches!(c, '\u{0400}'..='\u{04FF}')
}

/// Okapi BM25 (k1 = 1.2, b = 0.75) of each candidate document for the query terms, for
/// backends without a full-text engine (MongoDB without a text index, the in-memory fake).
///
/// `candidates` must include every document that contains any query term (documents with
/// none score 0 and may be left out); `total_documents` is how many documents the search
/// covers in all (at least `candidates.len()`). Document frequencies come from the
/// candidates, which is exact under that condition; the average document length is the
/// candidates', an approximation that only shifts the length normalisation.
#[must_use]
pub fn bm25(query: &[String], candidates: &[&[String]], total_documents: u64) -> Vec<f64> {
    const K1: f64 = 1.2;
    const B: f64 = 0.75;
    if candidates.is_empty() {
        return Vec::new();
    }
    let mut df: HashMap<&str, usize> = HashMap::new();
    for doc in candidates {
        for term in query {
            if doc.contains(term) {
                *df.entry(term.as_str()).or_default() += 1;
            }
        }
    }
    let n = count_f64(candidates.len()).max(u64_f64(total_documents));
    let average = (candidates.iter().map(|d| count_f64(d.len())).sum::<f64>()
        / count_f64(candidates.len()))
    .max(1.0);
    candidates
        .iter()
        .map(|doc| {
            let length = count_f64(doc.len());
            query
                .iter()
                .filter_map(|term| {
                    let tf = count_f64(doc.iter().filter(|t| *t == term).count());
                    let df = count_f64(*df.get(term.as_str())?);
                    let idf = (1.0 + (n - df + 0.5) / (df + 0.5)).ln();
                    Some(idf * tf * (K1 + 1.0) / (tf + K1 * (1.0 - B + B * length / average)))
                })
                .sum()
        })
        .collect()
}

/// A count as a float; exact below 2^53, far beyond any number of facts or terms.
fn count_f64(n: usize) -> f64 {
    u64_f64(u64::try_from(n).unwrap_or(u64::MAX))
}

#[allow(clippy::cast_precision_loss)] // see count_f64
fn u64_f64(n: u64) -> f64 {
    n as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stems(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| stem(w)).collect()
    }

    #[test]
    fn inflected_russian_nouns_share_a_stem() {
        for forms in [
            &["сестра", "сестру", "сестрой", "сестре", "сестры"][..],
            &["тверь", "твери", "тверью"],
            &["концерт", "концерта", "концерте", "концертом", "концертов"],
            &["суббота", "субботу", "субботой"],
            &["казань", "казани"],
            &["собака", "собаку", "собаке"],
            &["аллергия", "аллергии", "аллергию"],
        ] {
            let all = stems(forms);
            assert!(all.iter().all(|s| *s == all[0]), "{forms:?} → {all:?}");
        }
    }

    #[test]
    fn verbs_and_adjectives_lose_their_endings_but_short_roots_stay() {
        assert_eq!(stem("живем"), "жив");
        assert_eq!(stem("переехали"), stem("переехать"));
        assert_eq!(stem("работает"), stem("работать"));
        assert_eq!(stem("любимый"), "любим");
        assert_eq!(stem("дом"), "дом");
        assert_eq!(stem("дома"), "дом");
        assert_eq!(stem("билет"), stem("билета"), "-ет only counts after а/я");
    }

    #[test]
    fn english_plurals_and_verb_forms_share_a_stem() {
        assert_eq!(stems(&["move", "moved", "moving", "moves"]), ["move"; 4]);
        assert_eq!(stems(&["city", "cities"]), ["citi"; 2]);
        assert_eq!(stems(&["concert", "concerts"]), ["concert"; 2]);
        assert_eq!(stem("address"), "address");
        assert_eq!(stem("cat"), "cat");
    }

    #[test]
    fn terms_drop_stop_words_single_letters_and_repeats_and_keep_numbers() {
        assert_eq!(
            terms("Когда концерт? Концерт в 19:00!"),
            ["концерт", "19", "00"]
        );
        assert_eq!(terms("Ёлка у мамы"), ["елка", "мама"]);
        assert_eq!(terms("what is my sister's name"), ["sister", "name"]);
        assert!(terms("как? что? где?").is_empty());
        assert_eq!(terms("7 x"), ["7"]);
    }

    #[test]
    fn person_tense_and_case_meet_in_the_lemma_where_stems_did_not() {
        for (fact, question) in [
            ("Живёт в Перми", "Где я живу?"),
            ("Пьёт по утрам улун", "Что я пью по утрам?"),
            ("Ездит на работу на велосипеде", "На чём я езжу на работу?"),
            ("Ходит в бассейн по средам", "Когда я хожу в бассейн?"),
            ("Любит шахматы", "Что я люблю?"),
            ("Пишет роман", "Что я пишу?"),
            ("Едет в отпуск в Сочи", "Куда мы едем в отпуск?"),
        ] {
            let (f, q) = (terms(fact), terms(question));
            assert!(
                q.iter().any(|t| f.contains(t)),
                "{fact:?} {f:?} / {question:?} {q:?}"
            );
        }
        assert_ne!(
            stem("живу"),
            stem("живет"),
            "Snowball alone misses this pair"
        );
    }

    #[test]
    fn a_word_is_not_matched_by_an_unrelated_one_with_the_same_stem() {
        let food = terms("Любимая еда — пельмени");
        let trip = terms("Куда мы едем?");
        assert!(
            !trip.iter().any(|t| food.contains(t)),
            "{trip:?} / {food:?}"
        );
        assert_eq!(stem("едем"), stem("еда"), "the collision stems had");
    }

    #[test]
    fn unknown_words_fall_back_to_long_stems_or_stay_whole() {
        assert_eq!(lemmas("зюзюкать"), None);
        assert_eq!(
            terms("Бимка"),
            terms("Бимку"),
            "an unknown name's forms meet"
        );
        assert_eq!(word_terms("ыы"), ["ыы"], "no stem shorter than the minimum");
    }

    #[test]
    fn query_terms_are_bounded_and_long_words_are_cut() {
        let long_query: String = (0..100).map(|i| format!("слово{i} ")).collect();
        assert_eq!(query_terms(&long_query).len(), MAX_QUERY_TERMS);
        let term = &terms(&"z".repeat(1_000))[0];
        assert_eq!(term.chars().count(), MAX_TERM_CHARS);
    }

    #[test]
    fn bm25_ranks_documents_with_more_and_rarer_query_terms_higher() {
        let t = |s: &str| terms(s);
        let docs = [
            t("Сестру зовут Анна"),
            t("Брата зовут Олег"),
            t("Сестра живёт в Твери"),
        ];
        let refs: Vec<&[String]> = docs.iter().map(Vec::as_slice).collect();
        let scores = bm25(&t("как зовут сестру"), &refs, 10);
        assert!(scores[0] > scores[1] && scores[0] > scores[2], "{scores:?}");
        assert!(scores.iter().all(|s| *s > 0.0));
        assert!(bm25(&t("сестра"), &[], 10).is_empty());
        let none = bm25(&t("кофе"), &refs, 3);
        assert!(none.iter().all(|s| *s == 0.0));
    }
}
