//! JSON bodies as the upstream reads them.
//!
//! Parsing is strict: an object with the same key twice is an error, because
//! parsers disagree on which duplicate wins (first or last), so a body with
//! duplicates could be judged one way here and read another way upstream.
//!
//! Keys are then **normalized the way Rails reads them**: Terraform
//! Enterprise turns JSON:API attribute keys into Ruby names with
//! ActiveSupport's `underscore`, so `auto-apply`, `autoApply`, `AUTO-APPLY`,
//! `auto_APPLY` and `auto_apply` are one key upstream. Policy rules read the
//! normalized document ([`normalize_key`] is applied to their JSON pointers
//! too), and a body in which two keys of one object normalize to the same
//! key is refused: the upstream would read only one of them, and which one
//! is its business, not the gateway's. The body that is forwarded is the
//! bytes as sent; only the judging uses the normalized form.

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::fmt;

/// A JSON value with no duplicate object keys anywhere in it.
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(de::Error::custom(format!("duplicate key `{key}`")));
            }
            let Strict(value) = map.next_value()?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

/// Parses JSON, refusing duplicate object keys at any depth.
pub fn from_slice(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    serde_json::from_slice::<Strict>(bytes).map(|Strict(value)| value)
}

/// Why a body could not be judged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    #[error("the body is not valid JSON: {0}")]
    Syntax(String),
    #[error("the body has keys `{first}` and `{second}` at {at}, which the upstream reads as one key (`{normalized}`); send one of them")]
    SameKeyTwice {
        at: String,
        first: String,
        second: String,
        normalized: String,
    },
}

/// Parses a body to judge: empty (or only whitespace) is `None`; anything
/// else must be strict JSON, and is returned with every object key
/// normalized ([`normalize_key`]).
pub fn parse_normalized(bytes: &[u8]) -> Result<Option<Value>, JsonError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let value = from_slice(bytes).map_err(|e| JsonError::Syntax(e.to_string()))?;
    normalize(value, &mut String::new()).map(Some)
}

/// `value` with every object key normalized, at every depth; `at` is the
/// JSON pointer of `value` (for the error).
fn normalize(value: Value, at: &mut String) -> Result<Value, JsonError> {
    match value {
        Value::Object(map) => {
            let mut out = Map::new();
            let mut original: std::collections::HashMap<String, String> =
                std::collections::HashMap::new();
            for (key, child) in map {
                let normalized = normalize_key(&key);
                if let Some(first) = original.get(&normalized) {
                    return Err(JsonError::SameKeyTwice {
                        at: if at.is_empty() {
                            "/".into()
                        } else {
                            at.clone()
                        },
                        first: first.clone(),
                        second: key,
                        normalized,
                    });
                }
                let len = at.len();
                at.push('/');
                at.push_str(&key.replace('~', "~0").replace('/', "~1"));
                let child = normalize(child, at)?;
                at.truncate(len);
                original.insert(normalized.clone(), key);
                out.insert(normalized, child);
            }
            Ok(Value::Object(out))
        }
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (index, item) in items.into_iter().enumerate() {
                let len = at.len();
                at.push('/');
                at.push_str(&index.to_string());
                out.push(normalize(item, at)?);
                at.truncate(len);
            }
            Ok(Value::Array(out))
        }
        other => Ok(other),
    }
}

/// A key as Rails reads it: ActiveSupport's `String#underscore` (without
/// custom acronyms). A key without an ASCII capital, a `-` or `::` is kept
/// as it is; otherwise `::` becomes `/`, an `_` goes between a lower-case
/// letter or digit and a capital and between a capital and a capital
/// followed by a lower-case letter, `-` becomes `_`, and everything is
/// lower-cased (Unicode-aware, as Ruby's `downcase`).
pub fn normalize_key(key: &str) -> String {
    if !key.bytes().any(|b| b.is_ascii_uppercase() || b == b'-') && !key.contains("::") {
        return key.to_owned();
    }
    let word = key.replace("::", "/");
    let chars: Vec<char> = word.chars().collect();
    let mut out = String::with_capacity(word.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if i > 0 && c.is_ascii_uppercase() {
            let prev = chars[i - 1];
            let next_lower = chars.get(i + 1).is_some_and(char::is_ascii_lowercase);
            if prev.is_ascii_lowercase()
                || prev.is_ascii_digit()
                || (prev.is_ascii_uppercase() && next_lower)
            {
                out.push('_');
            }
        }
        out.push(if c == '-' { '_' } else { c });
    }
    out.to_lowercase()
}

/// A JSON pointer with each reference token normalized by [`normalize_key`]
/// (array indices stay as they are).
pub fn normalize_pointer(pointer: &str) -> String {
    if pointer.is_empty() {
        return String::new();
    }
    pointer
        .split('/')
        .skip(1)
        .map(|token| {
            let key = token.replace("~1", "/").replace("~0", "~");
            normalize_key(&key).replace('~', "~0").replace('/', "~1")
        })
        .fold(String::new(), |mut out, token| {
            out.push('/');
            out.push_str(&token);
            out
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_normalized_as_activesupport_underscore_does() {
        for (key, expected) in [
            ("auto-apply", "auto_apply"),
            ("auto_apply", "auto_apply"),
            ("autoApply", "auto_apply"),
            ("AutoApply", "auto_apply"),
            ("AUTO-APPLY", "auto_apply"),
            ("auto_APPLY", "auto_apply"),
            ("Auto-Apply", "auto_apply"),
            ("auto-apply-run-trigger", "auto_apply_run_trigger"),
            ("HTMLParser", "html_parser"),
            ("data", "data"),
            ("Data", "data"),
            ("ATTRIBUTES", "attributes"),
            ("a1B", "a1_b"),
            ("Admin::User", "admin/user"),
            ("ÄBC", "äbc"),
            ("Äbc", "Äbc"),
            ("camelCase2Go", "camel_case2_go"),
        ] {
            assert_eq!(normalize_key(key), expected, "{key}");
        }
    }

    #[test]
    fn bodies_are_judged_with_normalized_keys_and_one_spelling_per_key() {
        let value = parse_normalized(br#"{"Data":{"Attributes":{"autoApply":true}}}"#)
            .unwrap()
            .unwrap();
        assert_eq!(
            value.pointer("/data/attributes/auto_apply"),
            Some(&Value::Bool(true))
        );
        let err =
            parse_normalized(br#"{"data":{"attributes":{"auto-apply":false,"autoApply":true}}}"#)
                .unwrap_err();
        assert!(
            matches!(&err, JsonError::SameKeyTwice { at, normalized, .. }
                if at == "/data/attributes" && normalized == "auto_apply"),
            "{err}"
        );
        assert!(parse_normalized(br#"[{"a-b":1,"a_b":2}]"#).is_err());
        assert_eq!(parse_normalized(b"  ").unwrap(), None);
        assert!(matches!(parse_normalized(b"{"), Err(JsonError::Syntax(_))));
    }

    #[test]
    fn pointers_are_normalized_token_by_token() {
        assert_eq!(
            normalize_pointer("/data/attributes/auto-apply"),
            "/data/attributes/auto_apply"
        );
        assert_eq!(normalize_pointer("/a~1B/0/cD"), "/a~1b/0/c_d");
        assert_eq!(normalize_pointer(""), "");
    }

    #[test]
    fn duplicate_keys_are_refused_at_any_depth() {
        assert!(from_slice(br#"{"a":1,"a":2}"#).is_err());
        assert!(
            from_slice(br#"{"data":{"attributes":{"auto-apply":false,"auto-apply":true}}}"#)
                .is_err()
        );
        assert!(from_slice(br#"[{"x":1},{"x":1,"x":1}]"#).is_err());
    }

    #[test]
    fn ordinary_json_parses_as_serde_json_does() {
        let text = br#"{"a":[1,2.5,-3,"s",null,true,{"b":{}}],"c":"\u00e9"}"#;
        assert_eq!(
            from_slice(text).unwrap(),
            serde_json::from_slice::<serde_json::Value>(text).unwrap()
        );
        assert!(from_slice(b"{").is_err());
    }
}
