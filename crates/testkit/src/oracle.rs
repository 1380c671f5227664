//! The oracle: a scripted language model that plays every part of the butler's memory
//! perfectly, so a memory benchmark measures what the *pipeline* keeps and retrieves, not how
//! well some model extracts or summarises.
//!
//! It is given the [`Knowledge`] of a synthetic data set — which user sentences state which
//! facts, the canonical text of each fact, and which question asks for which key — and tells
//! its three kinds of request apart by their shape:
//!
//! - **the extractor** (a user message with `"known_facts"`): answers with exactly the facts the
//!   conversation's user entries state, as the JSON object the extractor is asked for, under the
//!   planted key (so an update supersedes the old fact), leaving out known facts that did not
//!   change;
//! - **the summariser** (a user message with `"previous_summary"`): keeps one line per fact —
//!   the facts of the previous summary, then those stated in the new turns, a later statement
//!   of a key replacing the earlier one — and drops the *oldest* lines until the summary fits
//!   the token budget named in its instructions. That bounded summary is what makes a
//!   summary-only memory forget;
//! - **a reply**: if the last line of the last message is a known question, it answers with
//!   the value of that key it can *see* in the prompt (the last one, reading top to bottom),
//!   else says it does not recall; any other message gets a short fixed acknowledgement.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use butler_domain::ports::{LlmClient, LlmError, LlmReply, LlmRequest, TokenCounter};
use butler_domain::ChatRole;
use serde_json::Value;

/// One planted fact as the oracle knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OracleFact {
    /// The fact's key (snake_case), shared by every value the fact ever had.
    pub key: String,
    /// `person`, `date`, `place`, `preference`, `promise` or `other`.
    pub kind: String,
    /// The canonical one-line text the oracle writes for it (extractor and summary).
    pub text: String,
    /// The value the text carries (what a question about the key expects).
    pub value: String,
    /// The words a user would ask about it with, as the extractor's `"terms"`.
    pub cues: Vec<String>,
}

/// What the oracle knows about a data set.
#[derive(Debug, Clone, Default)]
pub struct Knowledge {
    /// User message text → the facts it states (empty or absent: small talk, a distractor).
    statements: HashMap<String, Vec<OracleFact>>,
    /// Canonical fact text → the fact (to read summaries and fact notes back).
    texts: HashMap<String, OracleFact>,
    /// Question text → the key it asks about.
    questions: HashMap<String, String>,
}

impl Knowledge {
    /// Teaches the oracle that the user sentence `message` states `fact`.
    pub fn statement(&mut self, message: impl Into<String>, fact: OracleFact) {
        self.texts.insert(fact.text.clone(), fact.clone());
        let facts = self.statements.entry(message.into()).or_default();
        if !facts.contains(&fact) {
            facts.push(fact);
        }
    }

    /// Teaches the oracle that `question` asks for the value of `key`.
    pub fn question(&mut self, question: impl Into<String>, key: impl Into<String>) {
        self.questions.insert(question.into(), key.into());
    }

    /// The facts `message` states (none for small talk and distractors).
    #[must_use]
    pub fn facts_stated_by(&self, message: &str) -> &[OracleFact] {
        self.statements
            .get(message.trim())
            .map_or(&[], Vec::as_slice)
    }

    /// Every planted fact visible in `text`, in order of appearance: whole known statements,
    /// and lines that are canonical fact texts (summary lines, fact notes).
    fn facts_in<'a>(&'a self, text: &str, out: &mut Vec<&'a OracleFact>) {
        if let Some(facts) = self.statements.get(text.trim()) {
            out.extend(facts);
            return;
        }
        for line in text.lines() {
            let line = line.trim();
            if let Some(fact) = self.texts.get(line) {
                out.push(fact);
            } else if let Some(facts) = self.statements.get(line) {
                out.extend(facts);
            }
        }
    }
}

/// The oracle model. Token counts of its summaries come from `counter`: give it the counter
/// the compression uses, so the summary it writes is never cut by the use case.
#[derive(Clone)]
pub struct OracleLlm {
    knowledge: Arc<Knowledge>,
    counter: Arc<dyn TokenCounter>,
}

impl std::fmt::Debug for OracleLlm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OracleLlm")
            .field("statements", &self.knowledge.statements.len())
            .field("questions", &self.knowledge.questions.len())
            .finish_non_exhaustive()
    }
}

/// The summary budget when the summariser's instructions name none.
const DEFAULT_SUMMARY_TOKENS: usize = 300;

impl OracleLlm {
    /// An oracle that knows `knowledge` and counts summary tokens with `counter`.
    #[must_use]
    pub fn new(knowledge: Arc<Knowledge>, counter: Arc<dyn TokenCounter>) -> Self {
        Self { knowledge, counter }
    }

    /// The oracle's answer to `request` (also what the HTTP form of the oracle serves).
    pub async fn answer(&self, request: &LlmRequest) -> String {
        let system = request
            .messages
            .iter()
            .find(|m| m.role == ChatRole::System)
            .map_or("", |m| m.content.as_str());
        let last = request.messages.last().map_or("", |m| m.content.as_str());
        match serde_json::from_str::<Value>(last) {
            Ok(input) if input.get("known_facts").is_some() => self.extract(&input),
            Ok(input) if input.get("previous_summary").is_some() => {
                let budget = first_number(system).unwrap_or(DEFAULT_SUMMARY_TOKENS);
                self.summarise(&input, budget).await
            }
            _ => self.reply(request, last),
        }
    }

    /// The facts the conversation's user entries state, minus known facts that did not change.
    fn extract(&self, input: &Value) -> String {
        let known: Vec<(&str, &str)> = input["known_facts"]
            .as_array()
            .map(|facts| {
                facts
                    .iter()
                    .filter_map(|f| Some((f["key"].as_str()?, f["text"].as_str()?)))
                    .collect()
            })
            .unwrap_or_default();
        let facts: Vec<Value> = self
            .user_entries(input)
            .flat_map(|text| self.knowledge.facts_stated_by(text))
            .filter(|f| !known.contains(&(f.key.as_str(), f.text.as_str())))
            .map(|f| serde_json::json!({"key": f.key, "kind": f.kind, "text": f.text, "terms": f.cues}))
            .collect();
        serde_json::json!({ "facts": facts }).to_string()
    }

    /// One line per fact, newest statement of a key last, oldest lines dropped to fit `budget`.
    async fn summarise(&self, input: &Value, budget: usize) -> String {
        let mut lines: Vec<&OracleFact> = Vec::new();
        let previous = input["previous_summary"].as_str().unwrap_or("");
        for line in previous.lines() {
            if let Some(fact) = self.knowledge.texts.get(line.trim()) {
                push_newest(&mut lines, fact);
            }
        }
        for text in self.user_entries(input) {
            for fact in self.knowledge.facts_stated_by(text) {
                push_newest(&mut lines, fact);
            }
        }
        // The newest lines that fit, in their order.
        let mut kept = 0;
        for n in 1..=lines.len() {
            let candidate = join_texts(&lines[lines.len() - n..]);
            if self.counter.count(&candidate).await > budget {
                break;
            }
            kept = n;
        }
        let summary = join_texts(&lines[lines.len() - kept..]);
        if summary.is_empty() {
            // Never an empty reply (the contract); a summary with no fact in it.
            "—".to_owned()
        } else {
            summary
        }
    }

    fn user_entries<'a>(&self, input: &'a Value) -> impl Iterator<Item = &'a str> {
        input["conversation"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["from"] == "user")
            .filter_map(|e| e["text"].as_str())
    }

    fn reply(&self, request: &LlmRequest, last: &str) -> String {
        let russian = last
            .chars()
            .any(|c| matches!(c, 'а'..='я' | 'А'..='Я' | 'ё'));
        let question = last.lines().last().unwrap_or("").trim();
        let Some(key) = self.knowledge.questions.get(question) else {
            return if russian {
                "Хорошо, сэр."
            } else {
                "Very good, sir."
            }
            .to_owned();
        };
        let mut seen = Vec::new();
        for message in &request.messages {
            self.knowledge.facts_in(&message.content, &mut seen);
        }
        match seen.iter().rev().find(|f| &f.key == key) {
            Some(fact) if russian => format!("Насколько я помню, сэр: {}.", fact.value),
            Some(fact) => format!("As far as I recall, sir: {}.", fact.value),
            None if russian => "Боюсь, не припомню, сэр.".to_owned(),
            None => "I'm afraid I don't recall, sir.".to_owned(),
        }
    }
}

/// Appends `fact`, replacing an earlier line of its key (a later statement wins).
fn push_newest<'a>(lines: &mut Vec<&'a OracleFact>, fact: &'a OracleFact) {
    lines.retain(|l| l.key != fact.key);
    lines.push(fact);
}

fn join_texts(facts: &[&OracleFact]) -> String {
    facts
        .iter()
        .map(|f| f.text.as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The first decimal number in `text` (the summariser's instructions name its token budget).
fn first_number(text: &str) -> Option<usize> {
    let start = text.find(|c: char| c.is_ascii_digit())?;
    let digits: String = text[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

#[async_trait]
impl LlmClient for OracleLlm {
    async fn complete(&self, request: &LlmRequest) -> Result<LlmReply, LlmError> {
        Ok(LlmReply::text(self.answer(request).await))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fakes::CharCounter;
    use butler_domain::ports::RequestOptions;
    use butler_domain::ChatMessage;

    fn fact(key: &str, text: &str, value: &str) -> OracleFact {
        OracleFact {
            key: key.to_owned(),
            kind: "place".to_owned(),
            text: text.to_owned(),
            value: value.to_owned(),
            cues: Vec::new(),
        }
    }

    fn oracle() -> OracleLlm {
        let mut k = Knowledge::default();
        k.statement(
            "Кстати, мой город — Казань.",
            fact("home_city", "Город: Казань", "Казань"),
        );
        k.statement(
            "Поправка: мой город теперь — Тверь.",
            fact("home_city", "Город: Тверь", "Тверь"),
        );
        k.statement(
            "My sister is Anna.",
            OracleFact {
                kind: "person".to_owned(),
                ..fact("sister_name", "Sister: Anna", "Anna")
            },
        );
        k.question("В каком я городе?", "home_city");
        OracleLlm::new(Arc::new(k), Arc::new(CharCounter))
    }

    fn request(system: &str, user: &str) -> LlmRequest {
        LlmRequest::new(
            vec![ChatMessage::system(system), ChatMessage::user(user)],
            RequestOptions::default(),
        )
    }

    fn conversation(texts: &[&str]) -> String {
        let entries: Vec<String> = texts
            .iter()
            .map(|t| serde_json::json!({"from": "user", "text": t}).to_string())
            .collect();
        entries.join(",")
    }

    #[tokio::test]
    async fn the_extractor_returns_exactly_the_planted_facts_under_their_keys() {
        let input = format!(
            r#"{{"known_facts":[{{"key":"sister_name","text":"Sister: Anna"}}],"conversation":[{},{{"from":"butler","text":"My sister is Anna."}}]}}"#,
            conversation(&[
                "Как погода?",
                "Кстати, мой город — Казань.",
                "My sister is Anna.",
                "Поправка: мой город теперь — Тверь.",
            ])
        );
        let out = oracle().answer(&request("extract", &input)).await;
        let out: Value = serde_json::from_str(&out).unwrap();
        let facts = out["facts"].as_array().unwrap();
        let got: Vec<(&str, &str)> = facts
            .iter()
            .map(|f| (f["key"].as_str().unwrap(), f["text"].as_str().unwrap()))
            .collect();
        // The known sister fact is not repeated; the update comes after the old value.
        assert_eq!(
            got,
            [
                ("home_city", "Город: Казань"),
                ("home_city", "Город: Тверь")
            ]
        );
        assert_eq!(facts[0]["kind"], "place");
    }

    #[tokio::test]
    async fn the_summariser_replaces_updated_keys_and_drops_the_oldest_lines_to_fit() {
        let input = format!(
            r#"{{"previous_summary":"Sister: Anna\nГород: Казань\nне факт","conversation":[{}]}}"#,
            conversation(&["Поправка: мой город теперь — Тверь."])
        );
        let roomy = oracle()
            .answer(&request("at most 300 tokens", &input))
            .await;
        assert_eq!(roomy, "Sister: Anna\nГород: Тверь");
        // CharCounter counts characters: 12 fit "Город: Тверь" only.
        let tight = oracle().answer(&request("at most 12 tokens", &input)).await;
        assert_eq!(tight, "Город: Тверь");
    }

    #[tokio::test]
    async fn a_question_is_answered_with_the_last_value_visible_in_the_prompt() {
        let o = oracle();
        let prompt = LlmRequest::new(
            vec![
                ChatMessage::system("Persona\n```\nГород: Казань\n```"),
                ChatMessage::user("Поправка: мой город теперь — Тверь."),
                ChatMessage::assistant("Хорошо, сэр."),
                ChatMessage::user("В каком я городе?"),
            ],
            RequestOptions::default(),
        );
        assert_eq!(o.answer(&prompt).await, "Насколько я помню, сэр: Тверь.");
        let blind = request("Persona", "В каком я городе?");
        assert_eq!(o.answer(&blind).await, "Боюсь, не припомню, сэр.");
        assert_eq!(
            o.answer(&request("Persona", "Hello")).await,
            "Very good, sir."
        );
    }
}
