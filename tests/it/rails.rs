//! What a Rails/Rack upstream (Terraform Enterprise is one) makes of a
//! request it received: the security tests judge what the recording upstream
//! saw through this reader, not by the gateway's status code.
//!
//! The model, deliberately on the generous side (anything it reads as an
//! apply, a real Rails app might):
//! * query parameters (Rack's nested `a[b][c]=v` syntax) are merged over the
//!   body's parameters, top-level key by key;
//! * a JSON content type (`application/json`, `application/vnd.api+json`,
//!   `+json`) is parsed as JSON (the last of duplicate keys wins, as in Ruby);
//!   a form content type, or a POST without one, is parsed as a form;
//! * `Rack::MethodOverride`: a POST whose form has `_method`, or that carries
//!   `X-HTTP-Method-Override`, runs as that method;
//! * keys are normalized with ActiveSupport's `underscore`, at every depth;
//! * `wrap_parameters`: an attribute may also come as a top-level key, or
//!   under a top-level `workspace`;
//! * `PUT` routes like `PATCH`; a `.format` suffix on the last path segment
//!   is dropped; path segments are percent-decoded and compared in any case.

use crate::harness::Recorded;
use serde_json::{Map, Value};

/// A request as the upstream's controllers see it.
#[derive(Debug, Clone)]
pub struct RailsRequest {
    /// The method routing uses (`PUT` already folded into `PATCH`).
    pub method: String,
    /// Decoded, lower-cased path segments without a format suffix.
    pub segments: Vec<String>,
    /// `params`, keys underscored.
    pub params: Value,
}

/// ActiveSupport's `underscore` (no custom acronyms), written here apart
/// from the gateway's own so that a test cannot share its mistake:
///
/// ```ruby
/// return word unless /[A-Z-]|::/.match?(word)
/// word = word.gsub("::", "/")
/// word.gsub!(/(?<=[A-Z])(?=[A-Z][a-z])|(?<=[a-z\d])(?=[A-Z])/, "_")
/// word.tr!("-", "_")
/// word.downcase!
/// ```
pub fn underscore(word: &str) -> String {
    let upper = |c: Option<&char>| c.is_some_and(|c| c.is_ascii_uppercase());
    let lower = |c: Option<&char>| c.is_some_and(|c| c.is_ascii_lowercase());
    let digit = |c: Option<&char>| c.is_some_and(|c| c.is_ascii_digit());
    if !word.chars().any(|c| c.is_ascii_uppercase() || c == '-') && !word.contains("::") {
        return word.to_owned();
    }
    let word: Vec<char> = word.replace("::", "/").chars().collect();
    let mut out = String::new();
    for i in 0..word.len() {
        let before = if i == 0 { None } else { word.get(i - 1) };
        let boundary = (upper(before) && upper(word.get(i)) && lower(word.get(i + 1)))
            || ((lower(before) || digit(before)) && upper(word.get(i)));
        if boundary {
            out.push('_');
        }
        out.push(word[i]);
    }
    out.replace('-', "_").to_lowercase()
}

fn percent_decode(text: &str, plus_is_space: bool) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = |b: u8| (b as char).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(hi), Some(lo)) => {
                        out.push((hi * 16 + lo) as u8);
                        i += 3;
                    }
                    _ => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Rack's `parse_nested_query`: `a[b][c]=1&a[d][]=2` → `{"a":{"b":{"c":"1"},"d":["2"]}}`.
/// Rack 2 also splits on `;`.
pub fn rack_parse(query: &str) -> Value {
    let mut root = Map::new();
    for pair in query.split(['&', ';']).filter(|p| !p.is_empty()) {
        let (raw_key, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = percent_decode(raw_key, true);
        let value = Value::String(percent_decode(raw_value, true));
        let (head, rest) = match key.find('[') {
            Some(at) => (&key[..at], &key[at..]),
            None => (key.as_str(), ""),
        };
        let mut names: Vec<String> = Vec::new();
        let mut rest = rest;
        while let Some(open) = rest.strip_prefix('[') {
            let Some(close) = open.find(']') else { break };
            names.push(open[..close].to_owned());
            rest = &open[close + 1..];
        }
        insert(&mut root, head, &names, value);
    }
    Value::Object(root)
}

fn insert(map: &mut Map<String, Value>, key: &str, names: &[String], value: Value) {
    match names.split_first() {
        None => {
            map.insert(key.to_owned(), value);
        }
        Some((first, rest)) if first.is_empty() => {
            let entry = map
                .entry(key.to_owned())
                .or_insert_with(|| Value::Array(Vec::new()));
            if !entry.is_array() {
                *entry = Value::Array(Vec::new());
            }
            if let Value::Array(items) = entry {
                if rest.is_empty() {
                    items.push(value);
                } else {
                    let mut child = Map::new();
                    insert(&mut child, &rest[0], &rest[1..], value);
                    items.push(Value::Object(child));
                }
            }
        }
        Some((first, rest)) => {
            let entry = map
                .entry(key.to_owned())
                .or_insert_with(|| Value::Object(Map::new()));
            if !entry.is_object() {
                *entry = Value::Object(Map::new());
            }
            if let Value::Object(child) = entry {
                insert(child, first, rest, value);
            }
        }
    }
}

/// Ruby's JSON: like serde_json, but the last of duplicate keys wins (which
/// serde_json's `Value` also does).
fn ruby_json(bytes: &[u8]) -> Option<Value> {
    serde_json::from_slice(bytes).ok()
}

fn deep_underscore(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (underscore(&k), deep_underscore(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(deep_underscore).collect()),
        other => other,
    }
}

/// How the upstream reads `seen`.
pub fn read(seen: &Recorded) -> RailsRequest {
    let (path, query) = match seen.target.split_once('?') {
        Some((path, query)) => (path, query),
        None => (seen.target.as_str(), ""),
    };
    // Rack servers file `Content_Type` and `Content-Type` under one
    // `CONTENT_TYPE` (which one wins depends on the server): a form in any
    // spelling makes it a form.
    let medias: Vec<String> = seen
        .headers
        .iter()
        .filter(|(n, _)| n.to_ascii_lowercase().replace('_', "-") == "content-type")
        .map(|(_, v)| {
            v.to_ascii_lowercase()
                .split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_owned()
        })
        .collect();
    let is_form = |media: &str| {
        media == "application/x-www-form-urlencoded" || media == "multipart/form-data"
    };
    let form = medias.iter().any(|m| is_form(m)) || (medias.is_empty() && seen.method == "POST");
    let media = medias.first().cloned().unwrap_or_default();
    let body_params = if form {
        rack_parse(&String::from_utf8_lossy(&seen.body))
    } else if media == "application/json"
        || media == "application/vnd.api+json"
        || media.ends_with("+json")
    {
        ruby_json(&seen.body).unwrap_or(Value::Object(Map::new()))
    } else {
        Value::Object(Map::new())
    };
    let mut params = match body_params {
        Value::Object(map) => map,
        other => {
            let mut map = Map::new();
            map.insert("_json".into(), other);
            map
        }
    };
    if let Value::Object(query_params) = rack_parse(query) {
        for (key, value) in query_params {
            params.insert(key, value);
        }
    }
    let mut method = seen.method.to_ascii_uppercase();
    if method == "POST" {
        let overridden = seen
            .headers
            .iter()
            .find(|(n, _)| {
                let n = n.to_ascii_lowercase().replace('_', "-");
                n == "x-http-method-override"
            })
            .map(|(_, v)| v.clone())
            .or_else(|| {
                form.then(|| {
                    params
                        .get("_method")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                })
                .flatten()
            });
        if let Some(overridden) = overridden {
            method = overridden.to_ascii_uppercase();
        }
    }
    if method == "PUT" {
        method = "PATCH".into();
    }
    let mut segments: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| percent_decode(s, false).to_ascii_lowercase())
        .collect();
    if let Some(last) = segments.last_mut() {
        if let Some((name, _format)) = last.rsplit_once('.') {
            if !name.is_empty() {
                *last = name.to_owned();
            }
        }
    }
    RailsRequest {
        method,
        segments,
        params: deep_underscore(Value::Object(params)),
    }
}

/// Rails's boolean cast: everything but these (and nil, "") is true.
pub fn truthy(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64() != Some(0.0),
        Some(Value::String(s)) => {
            !["", "0", "f", "F", "false", "FALSE", "off", "OFF"].contains(&s.as_str())
        }
        Some(_) => true,
    }
}

impl RailsRequest {
    fn is(&self, method: &str, pattern: &[&str]) -> bool {
        self.method == method
            && self.segments.len() == pattern.len()
            && self
                .segments
                .iter()
                .zip(pattern)
                .all(|(segment, want)| *want == "*" || segment == want)
    }

    /// An attribute where a controller may read it: the JSON:API
    /// attributes, or (Rails' `wrap_parameters`, on by default) a top-level
    /// key, which Rails also copies into `params[:workspace]`, and that
    /// wrapper sent as it is.
    fn attribute(&self, name: &str) -> Vec<&Value> {
        [
            format!("/data/attributes/{name}"),
            format!("/{name}"),
            format!("/workspace/{name}"),
        ]
        .iter()
        .filter_map(|pointer| self.params.pointer(pointer))
        .collect()
    }

    /// Why this request, if an organization token sent it, would be (or
    /// lead to) an apply upstream; `None` when it is harmless.
    pub fn apply_by_an_org_token(&self) -> Option<String> {
        const ACTIONS: [&str; 5] = [
            "apply",
            "force-execute",
            "discard",
            "cancel",
            "force-cancel",
        ];
        if self.is("POST", &["api", "v2", "runs"]) {
            return Some("creates a run".into());
        }
        for action in ACTIONS {
            if self.is("POST", &["api", "v2", "runs", "*", "actions", action]) {
                return Some(format!("runs the {action} action"));
            }
        }
        if self.is(
            "POST",
            &["api", "v2", "workspaces", "*", "configuration-versions"],
        ) {
            return Some("uploads a configuration".into());
        }
        if self.is("POST", &["api", "v2", "workspaces", "*", "state-versions"])
            || self.is("PATCH", &["api", "v2", "workspaces", "*", "state-versions"])
        {
            return Some("writes state".into());
        }
        let workspace_write = self.is("PATCH", &["api", "v2", "workspaces", "*"])
            || self.is("POST", &["api", "v2", "organizations", "*", "workspaces"])
            || self.is(
                "PATCH",
                &["api", "v2", "organizations", "*", "workspaces", "*"],
            );
        if workspace_write {
            for flag in ["auto_apply", "auto_apply_run_trigger"] {
                if self.attribute(flag).into_iter().any(|v| truthy(Some(v))) {
                    return Some(format!("turns on {flag}"));
                }
            }
            if self
                .attribute("auto_destroy_at")
                .into_iter()
                .any(|v| !v.is_null() && v != "")
            {
                return Some("schedules a destroy".into());
            }
        }
        None
    }
}

#[test]
fn the_reader_reads_as_rails_does() {
    let seen = |method: &str, target: &str, content_type: Option<&str>, body: &str| Recorded {
        method: method.into(),
        target: target.into(),
        headers: content_type
            .map(|t| vec![("content-type".to_owned(), t.to_owned())])
            .unwrap_or_default(),
        body: body.as_bytes().to_vec(),
    };
    let query = read(&seen(
        "PATCH",
        "/api/v2/workspaces/ws-1?data[attributes][auto-apply]=true",
        None,
        "",
    ));
    assert!(query.apply_by_an_org_token().is_some(), "{query:?}");
    let form = read(&seen(
        "POST",
        "/api/v2/workspaces/ws-1",
        Some("application/x-www-form-urlencoded"),
        "_method=patch&data%5Battributes%5D%5BautoApply%5D=1",
    ));
    assert_eq!(form.method, "PATCH");
    assert!(form.apply_by_an_org_token().is_some(), "{form:?}");
    let put = read(&seen(
        "PUT",
        "/api/v2/workspaces/ws-1.json",
        Some("application/vnd.api+json"),
        r#"{"Data":{"Attributes":{"AUTO-APPLY":"on"}}}"#,
    ));
    assert!(put.apply_by_an_org_token().is_some(), "{put:?}");
    let off = read(&seen(
        "PATCH",
        "/api/v2/workspaces/ws-1",
        Some("application/json"),
        r#"{"data":{"attributes":{"auto-apply":"false"}}}"#,
    ));
    assert_eq!(off.apply_by_an_org_token(), None);
    let apply = read(&seen(
        "POST",
        "/API/v2/runs/run-1/actions/%61pply.json",
        None,
        "",
    ));
    assert!(apply.apply_by_an_org_token().is_some());
}
