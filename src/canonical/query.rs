//! The query string, as a Rails/Rack upstream reads it.
//!
//! Rails merges query parameters over body parameters: on a write,
//! `PATCH /api/v2/workspaces/ws-1?data[attributes][auto-apply]=true` is an
//! update of `auto-apply`, whatever the JSON body says. So on every method
//! but `GET`, `HEAD` and `OPTIONS`, a query may carry only the parameters the
//! policy allows on writes (`write_query_parameters`, by default `token` and
//! `include`), each at most once. On every method, `_method` (a method
//! override) is refused, the query must be well-formed (valid escapes, no
//! raw characters outside RFC 3986's `query`), and `;` is refused: Rack 2
//! splits parameters on it, so `a=1;data[…]=…` would be two parameters
//! upstream. Every parameter name must be in Rack's one canonical bracket
//! form, `name`, `name[key]…` or `name[]`: Rack also reads
//! `filter[workspace]name`, `filter[workspace][name]]` and
//! `[filter][workspace][name]` as `filter[workspace][name]` (the last one
//! given wins), so a lookup of the canonical name here could find one value
//! and the upstream use another. And no value may be a tokengate token: a
//! URL is written to the access log of every proxy and server it passes,
//! so a secret there leaks (tokens go in `Authorization`). The query is
//! forwarded as it was sent.
//!
//! [`param`] reads one parameter of a checked query as Rack does, for the
//! policy's `query` conditions.

use http::Method;

/// Why a query was refused (400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("the query string contains a character that is not allowed: {0:?}")]
    BadCharacter(char),
    #[error("the query string contains a malformed percent-escape")]
    BadEscape,
    #[error("the query string contains `;`, which Rack reads as a parameter separator; use `&`")]
    Semicolon,
    #[error("the query parameter `{0}` is not valid UTF-8 once decoded")]
    NotUtf8(String),
    #[error("the query parameter `_method` would change the method the upstream runs; send the real method")]
    MethodOverride,
    #[error("the query parameter `{key}` is not accepted on {method}: the upstream merges query parameters into the request's attributes; send them in the JSON body (query parameters allowed on writes: {allowed})")]
    NotOnWrites {
        key: String,
        method: Method,
        allowed: String,
    },
    #[error("the query parameter `{0}` is given more than once")]
    Repeated(String),
    #[error("the query parameter name `{0}` is not in the form `name`, `name[key]` or `name[]` (Rack reads other spellings as one of those); send it in that form")]
    NotCanonicalName(String),
    #[error("the query parameter `{0}` holds a tokengate token; send tokens only in the `Authorization: Bearer` header (a URL ends up in logs)")]
    TokenInQuery(String),
}

/// True for the methods whose query Rails may merge into what they change.
pub fn is_write(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// RFC 3986 `query` characters other than `%`, minus `;` (checked apart).
fn is_allowed_raw(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b'='
                | b':'
                | b'@'
                | b'/'
                | b'?'
                | b'['
                | b']'
        )
}

fn hex_value(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Decodes a query component as Rack does: `+` is a space, `%XX` a byte.
fn decode(raw: &str) -> Result<String, QueryError> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let (Some(hi), Some(lo)) = (
                    bytes.get(i + 1).copied().and_then(hex_value),
                    bytes.get(i + 2).copied().and_then(hex_value),
                ) else {
                    return Err(QueryError::BadEscape);
                };
                out.push(hi << 4 | lo);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| QueryError::NotUtf8(raw.to_owned()))
}

/// True for a parameter name in Rack's canonical bracket form: a name
/// without brackets, then any number of `[key]` (or `[]`) groups and
/// nothing else.
pub fn is_canonical_name(key: &str) -> bool {
    let (name, mut rest) = match key.find('[') {
        Some(i) => key.split_at(i),
        None => (key, ""),
    };
    if name.is_empty() || name.contains(']') {
        return false;
    }
    while !rest.is_empty() {
        let Some(group) = rest.strip_prefix('[') else {
            return false;
        };
        let Some(end) = group.find(']') else {
            return false;
        };
        if group[..end].contains('[') {
            return false;
        }
        rest = &group[end + 1..];
    }
    true
}

/// One query parameter as Rack reads it ([`param`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Param {
    /// The parameter is given, in any form.
    pub present: bool,
    /// Its value when Rack reads a string: the last `name=value` (Rack's
    /// last one wins). `None` when it is absent or also given in a bracket
    /// form (`name[]=…`, `name[key]=…`), which Rack reads as an array or a
    /// hash (or refuses, mixed with `name=`).
    pub string: Option<String>,
    /// The values the application may read: the last `name=` value, or,
    /// when a bracket form is given, every value of every form (how an
    /// application reads an array or hash where it expects a string is its
    /// own business, so every value counts).
    pub values: Vec<String>,
}

/// Reads the parameter `name` (decoded, in canonical bracket form) from a
/// query that [`check`] accepted. A pair that does not decode is skipped
/// (a checked query has none).
pub fn param(query: &str, name: &str) -> Param {
    let mut found = Param::default();
    let mut last_plain: Option<String> = None;
    let mut bracketed: Vec<String> = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (raw_key, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        // Cheap pre-filter: a key that cannot decode to `name…` is skipped
        // without decoding (an escaped key is decoded and compared).
        if !raw_key.contains('%') && !raw_key.contains('+') && !raw_key.starts_with(name) {
            continue;
        }
        let Ok(key) = decode(raw_key) else { continue };
        let plain = key == name;
        let nested = !plain
            && key
                .strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('['));
        if !(plain || nested) {
            continue;
        }
        let Ok(value) = decode(raw_value) else {
            continue;
        };
        found.present = true;
        if plain {
            last_plain = Some(value);
        } else {
            bracketed.push(value);
        }
    }
    if bracketed.is_empty() {
        found.string = last_plain.clone();
        found.values = last_plain.into_iter().collect();
    } else {
        found.values = last_plain.into_iter().chain(bracketed).collect();
    }
    found
}

/// Checks a request's query (`None` when it has none) for `method`;
/// `allowed_on_writes` are the parameter names a write may carry.
pub fn check(
    query: Option<&str>,
    method: &Method,
    allowed_on_writes: &[String],
) -> Result<(), QueryError> {
    let Some(query) = query else {
        return Ok(());
    };
    for &b in query.as_bytes() {
        if b == b';' {
            return Err(QueryError::Semicolon);
        }
        if b != b'%' && !is_allowed_raw(b) {
            return Err(QueryError::BadCharacter(b as char));
        }
    }
    let write = is_write(method);
    let mut seen: Vec<String> = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let raw_key = pair.split_once('=').map_or(pair, |(key, _)| key);
        let key = decode(raw_key)?;
        if !is_canonical_name(&key) {
            return Err(QueryError::NotCanonicalName(key));
        }
        if let Some((_, value)) = pair.split_once('=') {
            let value = decode(value)?;
            if crate::token_format::PresentedToken::parse(&value).is_ok() {
                return Err(QueryError::TokenInQuery(key));
            }
        }
        // `a[b][c]` is the parameter `a` to Rack.
        let name = key.split('[').next().unwrap_or_default().to_owned();
        if name == "_method" {
            return Err(QueryError::MethodOverride);
        }
        if !write {
            continue;
        }
        if !allowed_on_writes.contains(&name) || name != key {
            return Err(QueryError::NotOnWrites {
                key,
                method: method.clone(),
                allowed: if allowed_on_writes.is_empty() {
                    "none".into()
                } else {
                    allowed_on_writes.join(", ")
                },
            });
        }
        if seen.contains(&name) {
            return Err(QueryError::Repeated(name));
        }
        seen.push(name);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed() -> Vec<String> {
        vec!["token".into(), "include".into()]
    }

    fn check_on(method: Method, query: &str) -> Result<(), QueryError> {
        check(Some(query), &method, &allowed())
    }

    #[test]
    fn reads_may_carry_any_well_formed_query() {
        for query in [
            "page[number]=2&page[size]=20",
            "filter[workspace][id]=ws-1",
            "q=a+b&sort=-created-at",
            "search%5Bname%5D=x",
            "",
        ] {
            assert_eq!(check_on(Method::GET, query), Ok(()), "{query}");
        }
    }

    #[test]
    fn writes_carry_only_allowed_parameters_once() {
        assert_eq!(check_on(Method::POST, "token=audit-trails"), Ok(()));
        assert_eq!(check_on(Method::PATCH, "include=organization"), Ok(()));
        for query in [
            "data[attributes][auto-apply]=true",
            "data%5Battributes%5D%5Bauto-apply%5D=true",
            "auto-apply=true",
            "token[x]=1",
            "Token=audit-trails",
            "%74oken=1&data=x",
        ] {
            for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
                assert!(
                    matches!(
                        check_on(method.clone(), query),
                        Err(QueryError::NotOnWrites { .. })
                    ),
                    "{method} {query}"
                );
            }
        }
        assert_eq!(
            check_on(Method::POST, "token=a&token=b"),
            Err(QueryError::Repeated("token".into()))
        );
        // An escaped name is the same name to Rack.
        assert_eq!(check_on(Method::POST, "%74oken=audit-trails"), Ok(()));
    }

    #[test]
    fn parameter_names_must_be_in_the_one_bracket_form_rack_reads() {
        for query in [
            "filter[workspace][name]=a",
            "page[size]=1",
            "ids[]=1&ids[]=2",
            "a[][b]=1",
            "filter%5Bworkspace%5D%5Bname%5D=a",
            "plain=1",
        ] {
            assert_eq!(check_on(Method::GET, query), Ok(()), "{query}");
        }
        for (query, name) in [
            ("filter[workspace]name=wsa2", "filter[workspace]name"),
            ("filter[workspace][name]]=wsa2", "filter[workspace][name]]"),
            (
                "[filter][workspace][name]=wsa2",
                "[filter][workspace][name]",
            ),
            ("filter%5Bworkspace%5Dname=wsa2", "filter[workspace]name"),
            ("filter[[workspace]]=1", "filter[[workspace]]"),
            ("filter[workspace=1", "filter[workspace"),
            ("filter]x=1", "filter]x"),
            ("=1", ""),
        ] {
            for method in [Method::GET, Method::POST] {
                assert_eq!(
                    check_on(method.clone(), query),
                    Err(QueryError::NotCanonicalName(name.into())),
                    "{method} {query}"
                );
            }
        }
    }

    #[test]
    fn a_token_in_the_query_is_refused_before_it_reaches_any_log() {
        let token = crate::token_format::generate("slot0001").secret_token;
        for method in [Method::GET, Method::POST] {
            assert_eq!(
                check_on(method.clone(), &format!("token={token}")),
                Err(QueryError::TokenInQuery("token".into())),
                "{method}"
            );
        }
        assert_eq!(
            check_on(Method::GET, &format!("q={}", token.replace('.', "%2E"))),
            Err(QueryError::TokenInQuery("q".into()))
        );
        // Not a token: a wrong checksum, or the word TFE uses.
        let mut forged = token.clone();
        let last = forged.pop().unwrap();
        forged.push(if last == 'a' { 'b' } else { 'a' });
        assert_eq!(check_on(Method::GET, &format!("token={forged}")), Ok(()));
        assert_eq!(check_on(Method::POST, "token=audit-trails"), Ok(()));
    }

    #[test]
    fn a_parameter_is_read_as_rack_reads_it() {
        let p = param("include=outputs", "include");
        assert!(p.present);
        assert_eq!(p.string.as_deref(), Some("outputs"));
        assert_eq!(p.values, vec!["outputs".to_owned()]);
        // The last one wins; escapes and `+` are decoded, names too.
        let p = param(
            "include=outputs&page[size]=1&include=organization",
            "include",
        );
        assert_eq!(p.string.as_deref(), Some("organization"));
        assert_eq!(p.values, vec!["organization".to_owned()]);
        let p = param("%69nclude=current-state-version%2Coutputs+", "include");
        assert_eq!(p.string.as_deref(), Some("current-state-version,outputs "));
        // Bracket forms are an array or a hash to Rack: no string, and
        // every value counts.
        let p = param("include=a&include[]=b&include[x]=c", "include");
        assert!(p.present);
        assert_eq!(p.string, None);
        assert_eq!(p.values, vec!["a".to_owned(), "b".into(), "c".into()]);
        let p = param("include%5B%5D=outputs", "include");
        assert_eq!((p.present, p.values.len()), (true, 1));
        // Other names, and names that only start alike, are not it.
        for query in ["includes=outputs", "page[include]=x", "", "x=include"] {
            assert_eq!(param(query, "include"), Param::default(), "{query}");
        }
        // An empty value and a bare name are given, and empty.
        assert_eq!(param("include=", "include").string.as_deref(), Some(""));
        assert_eq!(param("include", "include").string.as_deref(), Some(""));
        // A bracketed name is read as its canonical form.
        let p = param(
            "filter%5Bworkspace%5D%5Bname%5D=a",
            "filter[workspace][name]",
        );
        assert_eq!(p.string.as_deref(), Some("a"));
    }

    #[test]
    fn malformed_queries_and_method_overrides_are_refused_on_every_method() {
        for method in [Method::GET, Method::POST] {
            assert_eq!(
                check_on(method.clone(), "a=1;b=2"),
                Err(QueryError::Semicolon)
            );
            assert_eq!(
                check_on(method.clone(), "a=%zz"),
                Err(QueryError::BadEscape)
            );
            assert_eq!(check_on(method.clone(), "a=%"), Err(QueryError::BadEscape));
            assert_eq!(
                check_on(method.clone(), "a=\"x\""),
                Err(QueryError::BadCharacter('"'))
            );
            assert_eq!(
                check_on(method.clone(), "_method=patch"),
                Err(QueryError::MethodOverride)
            );
            assert_eq!(
                check_on(method.clone(), "%5Fmethod=patch"),
                Err(QueryError::MethodOverride)
            );
            assert!(matches!(
                check_on(method, "a=%C0%AF"),
                Err(QueryError::NotUtf8(_))
            ));
        }
    }
}
