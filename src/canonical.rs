//! Stage 1 of a request: one canonical form of the request path.
//!
//! Policy is matched on this form and this form is what is forwarded, so the
//! upstream can never see a path that means something other than what was
//! judged. The rules:
//!
//! * percent-encoded unreserved characters (`A-Z a-z 0-9 - . _ ~`) are decoded;
//!   every other escape is kept, with upper-case hex;
//! * an encoded `/`, `\` or NUL, an encoded `%` that forms another escape
//!   (double encoding), a malformed escape, a raw `\`, `;` or any character
//!   outside RFC 3986 `pchar` is rejected;
//! * empty segments (`//`) and `.` segments are dropped, `..` removes the
//!   previous segment (above the root is rejected), a trailing `/` is dropped.

use std::fmt;

/// Longest path accepted, in bytes.
const MAX_PATH_LEN: usize = 8 * 1024;

/// Why a request target was refused (400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CanonicalError {
    #[error("the request path must start with `/`")]
    NotOriginForm,
    #[error("the request path is longer than {MAX_PATH_LEN} bytes")]
    TooLong,
    #[error("the request path contains an encoded `/`, `\\` or NUL")]
    EncodedSeparator,
    #[error("the request path contains a double-encoded `%`")]
    DoubleEncoded,
    #[error("the request path contains a malformed percent-escape")]
    BadEscape,
    #[error("the request path contains a character that is not allowed: {0:?}")]
    BadCharacter(char),
    #[error("the request path climbs above the root with `..`")]
    AboveRoot,
}

/// A request path in canonical form; always starts with `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalPath(String);

impl CanonicalPath {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The path's segments, without the leading empty one (`/` has none).
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0[1..].split('/').filter(|s| !s.is_empty())
    }
}

impl fmt::Display for CanonicalPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// RFC 3986 `pchar` minus `%` (handled separately) and `;` (path
/// parameters confuse some upstream frameworks, so they are refused).
fn is_allowed_raw(b: u8) -> bool {
    is_unreserved(b)
        || matches!(
            b,
            b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b'=' | b':' | b'@'
        )
}

fn hex_value(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Decodes one raw segment into its canonical spelling.
fn canonical_segment(raw: &[u8], out: &mut String) -> Result<(), CanonicalError> {
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if b == b'%' {
            let (Some(hi), Some(lo)) = (
                raw.get(i + 1).copied().and_then(hex_value),
                raw.get(i + 2).copied().and_then(hex_value),
            ) else {
                return Err(CanonicalError::BadEscape);
            };
            let decoded = hi << 4 | lo;
            match decoded {
                b'/' | b'\\' | 0 => return Err(CanonicalError::EncodedSeparator),
                b'%' => {
                    let next_two = raw.get(i + 3..i + 5);
                    if next_two.is_some_and(|t| t.iter().all(|&c| hex_value(c).is_some())) {
                        return Err(CanonicalError::DoubleEncoded);
                    }
                    out.push_str("%25");
                }
                b if is_unreserved(b) => out.push(b as char),
                b => {
                    out.push('%');
                    out.push(
                        char::from_digit(u32::from(b >> 4), 16)
                            .unwrap()
                            .to_ascii_uppercase(),
                    );
                    out.push(
                        char::from_digit(u32::from(b & 15), 16)
                            .unwrap()
                            .to_ascii_uppercase(),
                    );
                }
            }
            i += 3;
        } else if is_allowed_raw(b) {
            out.push(b as char);
            i += 1;
        } else {
            return Err(CanonicalError::BadCharacter(b as char));
        }
    }
    Ok(())
}

/// Computes the canonical form of a raw request path (without the query).
pub fn canonicalize(raw_path: &str) -> Result<CanonicalPath, CanonicalError> {
    if !raw_path.starts_with('/') {
        return Err(CanonicalError::NotOriginForm);
    }
    if raw_path.len() > MAX_PATH_LEN {
        return Err(CanonicalError::TooLong);
    }
    let mut segments: Vec<String> = Vec::new();
    for raw in raw_path.as_bytes()[1..].split(|&b| b == b'/') {
        let mut segment = String::with_capacity(raw.len());
        canonical_segment(raw, &mut segment)?;
        match segment.as_str() {
            "" | "." => {}
            ".." => {
                if segments.pop().is_none() {
                    return Err(CanonicalError::AboveRoot);
                }
            }
            _ => segments.push(segment),
        }
    }
    let mut path = String::with_capacity(raw_path.len());
    for segment in &segments {
        path.push('/');
        path.push_str(segment);
    }
    if path.is_empty() {
        path.push('/');
    }
    Ok(CanonicalPath(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(p: &str) -> Result<String, CanonicalError> {
        canonicalize(p).map(|c| c.0)
    }

    #[test]
    fn spellings_of_one_path_become_one_path() {
        let apply = "/api/v2/runs/run-1/actions/apply";
        for spelling in [
            "/api/v2/runs/run-1/actions/apply",
            "/api/v2/runs/run-1/actions/%61pply",
            "/api/v2/runs/run-1/actions/%61%70%70%6C%79",
            "//api/v2//runs/run-1/actions/apply",
            "/api/v2/./runs/run-1/actions/apply",
            "/api/v2/runs/run-1/actions/apply/",
            "/api/v2/runs/run-1/x/../actions/apply",
            "/api/v2/runs/run-1/x/%2e%2E/actions/apply",
            "/api/v2/runs/run%2D1/actions/./apply//",
        ] {
            assert_eq!(canon(spelling).unwrap(), apply, "{spelling}");
        }
    }

    #[test]
    fn escapes_that_are_not_unreserved_stay_encoded_in_upper_case() {
        assert_eq!(canon("/a%20b/c%3a").unwrap(), "/a%20b/c%3A");
        assert_eq!(canon("/a%25x").unwrap(), "/a%25x");
        assert_eq!(canon("/").unwrap(), "/");
        assert_eq!(canon("//").unwrap(), "/");
    }

    #[test]
    fn dangerous_spellings_are_rejected() {
        use CanonicalError::*;
        assert_eq!(canon("/a%2Fb"), Err(EncodedSeparator));
        assert_eq!(canon("/a%2fb"), Err(EncodedSeparator));
        assert_eq!(canon("/a%5Cb"), Err(EncodedSeparator));
        assert_eq!(canon("/a%00b"), Err(EncodedSeparator));
        assert_eq!(canon("/a%252e"), Err(DoubleEncoded));
        assert_eq!(canon("/a%2"), Err(BadEscape));
        assert_eq!(canon("/a%zz"), Err(BadEscape));
        assert_eq!(canon("/a\\b"), Err(BadCharacter('\\')));
        assert_eq!(canon("/apply;x=1"), Err(BadCharacter(';')));
        assert_eq!(canon("/../etc"), Err(AboveRoot));
        assert_eq!(canon("/a/%2e%2e/%2e%2e"), Err(AboveRoot));
        assert_eq!(canon("api"), Err(NotOriginForm));
        assert_eq!(
            canon(&format!("/{}", "a".repeat(MAX_PATH_LEN))),
            Err(TooLong)
        );
    }

    #[test]
    fn segments_skip_the_root() {
        let path = canonicalize("/api/v2/ping").unwrap();
        assert_eq!(path.segments().collect::<Vec<_>>(), ["api", "v2", "ping"]);
        assert_eq!(canonicalize("/").unwrap().segments().count(), 0);
    }
}
