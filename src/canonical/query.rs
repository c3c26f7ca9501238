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
//! upstream. The query is forwarded as it was sent.

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
        if let Some((_, value)) = pair.split_once('=') {
            decode(value)?;
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
