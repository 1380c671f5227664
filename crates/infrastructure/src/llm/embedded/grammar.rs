//! JSON Schema → GBNF: the grammar that makes the embedded engine's output valid JSON of a
//! request's schema by construction (llama.cpp grammar sampling masks every token that would
//! leave the grammar).
//!
//! llama.cpp's own converter lives in its `common` library, which this build leaves out (see
//! `vendor/README.md`), so the subset the butler's schemas use is converted here: `object`
//! (every property, in the order of `required` and then the rest, no others), `array` (`items`,
//! `minItems`, `maxItems`), `string` (with a `pattern` of one character class, `^[a-z0-9_]+$`),
//! `enum` and `const` of strings, `integer`, `number`,
//! `boolean`, `null`. Anything else is an error, so a schema the engine cannot enforce is
//! noticed rather than silently unconstrained.
//!
//! Whitespace between tokens is at most one space or newline (a small model can otherwise
//! spend its whole budget on newlines). `maxItems` is enforced (a bounded repetition of the
//! item, so a list ends once full); `maxLength` is not: llama.cpp expands a bounded
//! repetition into nested rules, one per character here, and checking those against the whole
//! vocabulary at every token took minutes per answer with a 135M model; the caller's parser
//! applies its own limits, and `max_tokens` bounds the output.

use std::fmt::Write as _;

use serde_json::Value;

/// Why a schema has no grammar.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("JSON schema not supported by the grammar converter: {0}")]
pub struct SchemaError(String);

/// The GBNF grammar (root rule `root`) of the JSON documents valid against `schema` (JSON text).
///
/// # Errors
/// [`SchemaError`] when `schema` is not JSON or uses a construct outside the supported subset.
pub fn json_schema_to_gbnf(schema: &str) -> Result<String, SchemaError> {
    let schema: Value = serde_json::from_str(schema)
        .map_err(|e| SchemaError(format!("the schema is not JSON: {e}")))?;
    let mut rules = Rules::default();
    let root = rules.value(&schema, "root")?;
    let mut out = format!("root ::= {root}\n");
    for (name, body) in &rules.defined {
        let _ = writeln!(out, "{name} ::= {body}");
    }
    let _ = writeln!(
        out,
        "ws ::= (\" \" | \"\\n\")?\n\
         char ::= [^\"\\\\\\x7F\\x00-\\x1F] | \"\\\\\" ([\"\\\\/bfnrt] | \"u\" [0-9a-fA-F]{{4}})"
    );
    Ok(out)
}

#[derive(Default)]
struct Rules {
    defined: Vec<(String, String)>,
}

impl Rules {
    /// The expression for a value of `schema`; nested parts get their own rules named after
    /// `path`.
    fn value(&mut self, schema: &Value, path: &str) -> Result<String, SchemaError> {
        if let Some(options) = schema.get("enum") {
            let options = options
                .as_array()
                .filter(|o| !o.is_empty())
                .ok_or_else(|| SchemaError(format!("{path}: enum is not a non-empty array")))?;
            let literals: Result<Vec<String>, SchemaError> =
                options.iter().map(|o| literal(o, path)).collect();
            return Ok(format!("({})", literals?.join(" | ")));
        }
        if let Some(constant) = schema.get("const") {
            return literal(constant, path);
        }
        let kind = schema
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| SchemaError(format!("{path}: no \"type\"")))?;
        match kind {
            "object" => self.object(schema, path),
            "array" => self.array(schema, path),
            "string" => {
                // `maxLength` is left to the caller's checks: llama.cpp expands `x{0,n}` into n
                // nested rules, and matching them against the whole vocabulary at every token
                // made a 135M model take minutes per answer.
                match schema.get("pattern") {
                    None => Ok("\"\\\"\" char* \"\\\"\"".to_owned()),
                    Some(pattern) => char_class_pattern(pattern, path),
                }
            }
            "integer" => Ok("(\"-\"? ([0-9] | [1-9] [0-9]{1,15}))".to_owned()),
            "number" => Ok(
                "(\"-\"? ([0-9] | [1-9] [0-9]{1,15}) (\".\" [0-9]{1,16})? ([eE] [-+]? [0-9]{1,3})?)"
                    .to_owned(),
            ),
            "boolean" => Ok("(\"true\" | \"false\")".to_owned()),
            "null" => Ok("\"null\"".to_owned()),
            other => Err(SchemaError(format!("{path}: type {other:?}"))),
        }
    }

    fn object(&mut self, schema: &Value, path: &str) -> Result<String, SchemaError> {
        let empty = serde_json::Map::new();
        let properties = schema
            .get("properties")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        // The order of `required` (a JSON array keeps its order; an object's keys may not).
        let mut names: Vec<&str> = schema
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        for name in properties.keys() {
            if !names.contains(&name.as_str()) {
                names.push(name);
            }
        }
        let mut parts = Vec::with_capacity(names.len());
        for name in names {
            let property = properties
                .get(name)
                .ok_or_else(|| SchemaError(format!("{path}: required {name:?} has no schema")))?;
            let value = self.value(property, &format!("{path}-{}", rule_name(name)))?;
            parts.push(format!(
                "{} ws \":\" ws {value}",
                literal(&Value::from(name), path)?
            ));
        }
        let body = if parts.is_empty() {
            "\"{\" ws \"}\"".to_owned()
        } else {
            format!("\"{{\" ws {} ws \"}}\"", parts.join(" ws \",\" ws "))
        };
        Ok(self.define(path, body))
    }

    fn array(&mut self, schema: &Value, path: &str) -> Result<String, SchemaError> {
        let items = schema
            .get("items")
            .ok_or_else(|| SchemaError(format!("{path}: array without \"items\"")))?;
        let item = self.value(items, &format!("{path}-item"))?;
        // `maxItems` is a bounded repetition: once the list is full the only way on is `]`,
        // so a small model that keeps listing closes its JSON instead of running into
        // `max_tokens` mid-item. (Unlike `maxLength`, the bound is per item, not per
        // character: a handful of nested rules, not hundreds.)
        let min = schema.get("minItems").and_then(Value::as_u64).unwrap_or(0);
        let max = schema.get("maxItems").and_then(Value::as_u64);
        let more = format!("(ws \",\" ws {item})");
        let body = match (min, max) {
            (_, Some(0)) => "\"[\" ws \"]\"".to_owned(),
            (0, None) => format!("\"[\" ws ({item} {more}*)? ws \"]\""),
            (0, Some(1)) => format!("\"[\" ws {item}? ws \"]\""),
            (0, Some(max)) => format!("\"[\" ws ({item} {more}{{0,{}}})? ws \"]\"", max - 1),
            (min, None) => format!("\"[\" ws {item} {more}{{{},}} ws \"]\"", min - 1),
            (min, Some(max)) => format!(
                "\"[\" ws {item} {more}{{{},{}}} ws \"]\"",
                min - 1,
                max.max(min) - 1
            ),
        };
        Ok(self.define(path, body))
    }

    fn define(&mut self, path: &str, body: String) -> String {
        let name = rule_name(path);
        self.defined.push((name.clone(), body));
        name
    }
}

/// A string of one character class, the only `pattern` supported: `^[…]+$` (such as a
/// snake_case key, `^[a-z0-9_]+$`), so a model cannot write prose where an identifier goes.
fn char_class_pattern(pattern: &Value, path: &str) -> Result<String, SchemaError> {
    let class = pattern
        .as_str()
        .and_then(|p| p.strip_prefix("^["))
        .and_then(|p| p.strip_suffix("]+$"))
        .filter(|c| {
            !c.is_empty()
                && c.chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-')
        })
        .ok_or_else(|| {
            SchemaError(format!(
                "{path}: pattern {pattern} (only ^[…]+$ of letters, digits, _ and -)"
            ))
        })?;
    Ok(format!("\"\\\"\" [{class}]+ \"\\\"\""))
}

/// A GBNF literal matching exactly the JSON text of `value`.
fn literal(value: &Value, path: &str) -> Result<String, SchemaError> {
    match value {
        Value::String(_) | Value::Number(_) | Value::Bool(_) | Value::Null => {
            let json = value.to_string();
            let mut out = String::with_capacity(json.len() + 2);
            out.push('"');
            for c in json.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    c => out.push(c),
                }
            }
            out.push('"');
            Ok(out)
        }
        _ => Err(SchemaError(format!("{path}: enum/const of a non-scalar"))),
    }
}

/// A rule name from a path: letters, digits and dashes only.
fn rule_name(path: &str) -> String {
    path.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_object_lists_its_properties_in_order() {
        let grammar = json_schema_to_gbnf(
            r#"{"type":"object","properties":{"name":{"type":"string","maxLength":10},
                "kind":{"enum":["a","b"]},"n":{"type":"integer"}},"required":["name","kind"]}"#,
        )
        .unwrap();
        assert!(grammar.starts_with("root ::= root\n"), "{grammar}");
        assert!(
            grammar.contains(
                "root ::= \"{\" ws \"\\\"name\\\"\" ws \":\" ws \"\\\"\" char* \"\\\"\" ws \",\" ws \
                 \"\\\"kind\\\"\" ws \":\" ws (\"\\\"a\\\"\" | \"\\\"b\\\"\")"
            ),
            "{grammar}"
        );
    }

    #[test]
    fn arrays_may_be_empty_unless_min_items_says_otherwise_and_end_at_max_items() {
        let grammar =
            json_schema_to_gbnf(r#"{"type":"array","items":{"type":"boolean"}}"#).unwrap();
        assert!(
            grammar.contains("(ws \",\" ws (\"true\" | \"false\"))*)? ws \"]\""),
            "{grammar}"
        );
        let grammar =
            json_schema_to_gbnf(r#"{"type":"array","items":{"type":"boolean"},"maxItems":3}"#)
                .unwrap();
        assert!(
            grammar.contains("(ws \",\" ws (\"true\" | \"false\")){0,2})? ws \"]\""),
            "{grammar}"
        );
        let grammar =
            json_schema_to_gbnf(r#"{"type":"array","items":{"type":"null"},"minItems":2}"#)
                .unwrap();
        assert!(
            grammar.contains("\"[\" ws \"null\" (ws \",\" ws \"null\"){1,} ws"),
            "{grammar}"
        );
        let grammar = json_schema_to_gbnf(
            r#"{"type":"array","items":{"type":"null"},"minItems":2,"maxItems":4}"#,
        )
        .unwrap();
        assert!(grammar.contains("\"null\"){1,3} ws \"]\""), "{grammar}");
        assert!(
            json_schema_to_gbnf(r#"{"type":"array","items":{"type":"null"},"maxItems":1}"#)
                .unwrap()
                .contains("root ::= \"[\" ws \"null\"? ws \"]\"")
        );
        assert!(
            json_schema_to_gbnf(r#"{"type":"array","items":{"type":"null"},"maxItems":0}"#)
                .unwrap()
                .contains("root ::= \"[\" ws \"]\"")
        );
    }

    #[test]
    fn a_character_class_pattern_bounds_the_characters_of_a_string() {
        let gbnf = json_schema_to_gbnf(r#"{"type":"string","pattern":"^[a-z0-9_]+$"}"#).unwrap();
        assert!(
            gbnf.starts_with("root ::= \"\\\"\" [a-z0-9_]+ \"\\\"\"\n"),
            "{gbnf}"
        );
        for unsupported in [r#""^a.*$""#, r#""[a-z]+""#, r#""^[^a]+$""#, "3"] {
            let schema = format!(r#"{{"type":"string","pattern":{unsupported}}}"#);
            assert!(json_schema_to_gbnf(&schema).is_err(), "{schema}");
        }
    }

    #[test]
    fn unsupported_schemas_are_errors_not_silently_unconstrained() {
        for schema in [
            "not json",
            r#"{"type":"object","properties":{"a":{"anyOf":[]}}}"#,
            r#"{"type":"array"}"#,
            r#"{"enum":[]}"#,
            r#"{"enum":[{"a":1}]}"#,
        ] {
            assert!(json_schema_to_gbnf(schema).is_err(), "{schema}");
        }
    }
}
