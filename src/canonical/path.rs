//! One canonical form of the request path.
//!
//! Policy is matched on this form and this form is what is forwarded, so the
//! upstream can never see a path that means something other than what was
//! judged. The rules:
//!
//! * percent-encoded unreserved characters (`A-Z a-z 0-9 - . _ ~`) are decoded;
//! * escapes of non-ASCII bytes are kept (upper-case hex) when, decoded, the
//!   segment is valid UTF-8 (so overlong forms such as `%C0%AF` are refused);
//! * every other escape is refused: an encoded delimiter (`/ ? # [ ] @ ! $ &
//!   ' ( ) * + , ; = :`), `%`, `\`, a space, a control character or any other
//!   ASCII character a router could read differently from what was judged;
//! * a malformed escape, a raw `\`, `;` or any character outside RFC 3986
//!   `pchar` is refused;
//! * empty segments (`//`) and `.` segments are dropped, `..` removes the
//!   previous segment (above the root is refused), a trailing `/` is dropped.

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
    #[error("the request path contains an escape of a delimiter, space or control character ({0}); send the character itself or leave it out")]
    EncodedDelimiter(String),
    #[error("the request path contains escapes that are not valid UTF-8")]
    InvalidUtf8,
    #[error("the request path contains a malformed percent-escape")]
    BadEscape,
    #[error("the request path contains a character that is not allowed: {0:?}")]
    BadCharacter(char),
    #[error("the request path climbs above the root with `..`")]
    AboveRoot,
}

/// How many segments a [`CanonicalPath`] notes the bounds of; a longer
/// path's segments are found by a scan.
const NOTED_SEGMENTS: usize = 8;

/// A request path in canonical form; always starts with `/`.
#[derive(Clone, PartialEq, Eq)]
pub struct CanonicalPath {
    text: String,
    /// How many segments it has (counted once: policy matching compares it
    /// with every path template's before looking at a segment).
    segment_count: usize,
    /// Where its first segments start and end in `text` (found once:
    /// policy matching reads them for every path template it tries).
    bounds: [(u32, u32); NOTED_SEGMENTS],
    /// Where a secret tail starts (an object storage URL's signed key,
    /// which logs never show); 0 when there is none.
    secret_from: u32,
}

impl CanonicalPath {
    fn new(text: String) -> CanonicalPath {
        let mut bounds = [(0, 0); NOTED_SEGMENTS];
        let mut segment_count = 0;
        let base = text.as_ptr() as usize;
        for segment in (Segments {
            rest: text.get(1..).unwrap_or_default(),
        }) {
            if let Some(noted) = bounds.get_mut(segment_count) {
                let start = (segment.as_ptr() as usize - base) as u32;
                *noted = (start, start + segment.len() as u32);
            }
            segment_count += 1;
        }
        CanonicalPath {
            text,
            segment_count,
            bounds,
            secret_from: 0,
        }
    }

    /// Marks what follows the first `at` bytes as secret: [`Self::public_part`]
    /// stops there (the path itself is unchanged).
    pub fn keep_secret_after(&mut self, at: usize) {
        if at > 0 && at < self.text.len() && self.text.is_char_boundary(at) {
            self.secret_from = at as u32;
        }
    }

    /// The part of the path logs may show, and whether a secret tail was
    /// left out.
    pub fn public_part(&self) -> (&str, bool) {
        match self.secret_from {
            0 => (&self.text, false),
            at => (&self.text[..at as usize], true),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// How many segments [`Self::segments`] yields.
    pub fn segment_count(&self) -> usize {
        self.segment_count
    }

    /// The path's segments, without the leading empty one (`/` has none).
    pub fn segments(&self) -> Segments<'_> {
        Segments {
            rest: self.text.get(1..).unwrap_or_default(),
        }
    }

    /// The segments as a slice-like view: segment `i` without a scan when
    /// the path has at most a few segments.
    pub fn noted_segments(&self) -> Option<impl ExactSizeIterator<Item = &str> + Clone> {
        (self.segment_count <= NOTED_SEGMENTS).then(|| {
            self.bounds[..self.segment_count]
                .iter()
                .map(|&(start, end)| &self.text[start as usize..end as usize])
        })
    }
}

impl fmt::Debug for CanonicalPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.public_part() {
            (text, false) => f.debug_tuple("CanonicalPath").field(&text).finish(),
            (public, true) => f
                .debug_tuple("CanonicalPath")
                .field(&format_args!("{public:?}[redacted]"))
                .finish(),
        }
    }
}

/// The segments of a [`CanonicalPath`], split on `/` (empty ones skipped).
/// Policy matching walks them once per path template of every rule it
/// tries: a byte scan costs a few instructions per byte, where
/// `str::split` sets up a substring search for every segment.
#[derive(Debug, Clone)]
pub struct Segments<'p> {
    rest: &'p str,
}

impl<'p> Iterator for Segments<'p> {
    type Item = &'p str;

    fn next(&mut self) -> Option<&'p str> {
        loop {
            if self.rest.is_empty() {
                return None;
            }
            let end = self
                .rest
                .bytes()
                .position(|b| b == b'/')
                .unwrap_or(self.rest.len());
            let (segment, rest) = self.rest.split_at(end);
            self.rest = rest.get(1..).unwrap_or_default();
            if !segment.is_empty() {
                return Some(segment);
            }
        }
    }
}

impl fmt::Display for CanonicalPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
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

/// An upper-case hex digit.
fn hex_digit(value: u8) -> char {
    char::from(b"0123456789ABCDEF"[usize::from(value & 15)])
}

/// Decodes one raw segment into its canonical spelling.
fn canonical_segment(raw: &[u8], out: &mut String) -> Result<(), CanonicalError> {
    // The current run of escaped non-ASCII bytes: each run, ended by any
    // ASCII character or the end of the segment, must be valid UTF-8.
    let mut non_ascii: Vec<u8> = Vec::new();
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
                b'%' => return Err(CanonicalError::DoubleEncoded),
                b if is_unreserved(b) => {
                    check_utf8_run(&mut non_ascii)?;
                    out.push(b as char);
                }
                b if b >= 0x80 => {
                    out.push('%');
                    out.push(hex_digit(b >> 4));
                    out.push(hex_digit(b & 15));
                    non_ascii.push(b);
                }
                _ => {
                    return Err(CanonicalError::EncodedDelimiter(
                        String::from_utf8_lossy(&raw[i..i + 3]).into_owned(),
                    ))
                }
            }
            i += 3;
        } else if is_allowed_raw(b) {
            check_utf8_run(&mut non_ascii)?;
            out.push(b as char);
            i += 1;
        } else {
            return Err(CanonicalError::BadCharacter(b as char));
        }
    }
    check_utf8_run(&mut non_ascii)
}

/// Checks that a run of escaped non-ASCII bytes is valid UTF-8, and empties it.
fn check_utf8_run(run: &mut Vec<u8>) -> Result<(), CanonicalError> {
    if !run.is_empty() {
        std::str::from_utf8(run).map_err(|_| CanonicalError::InvalidUtf8)?;
        run.clear();
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
    if is_canonical(raw_path) {
        return Ok(CanonicalPath::new(raw_path.to_owned()));
    }
    rewrite(raw_path)
}

/// Whether a path (starting with `/`) is already in canonical form, as
/// nearly every request's is: no escapes, only allowed characters, no
/// empty, `.` or `..` segment (so no `//` and no trailing `/`). Then the
/// canonical form is the path itself, found with one scan and no
/// per-segment copies.
fn is_canonical(raw_path: &str) -> bool {
    raw_path == "/"
        || raw_path.as_bytes()[1..]
            .split(|&b| b == b'/')
            .all(|segment| {
                !segment.is_empty()
                    && segment != b"."
                    && segment != b".."
                    && segment.iter().all(|&b| is_allowed_raw(b))
            })
}

/// The canonical form of a path that is not canonical yet: each segment
/// decoded to its canonical spelling, then `.`, `..` and empty segments
/// resolved.
fn rewrite(raw_path: &str) -> Result<CanonicalPath, CanonicalError> {
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
    Ok(CanonicalPath::new(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(p: &str) -> Result<String, CanonicalError> {
        canonicalize(p).map(|c| c.text)
    }

    #[test]
    fn a_path_taken_as_it_is_is_what_the_rewrite_would_make_of_it() {
        for path in [
            "/",
            "/api",
            "/api/v2/workspaces/ws-1",
            "/api/v2/runs/run-1/actions/apply.json",
            "/a/b!$&'()*+,=:@~_-.c",
            "/a/.b/..c/...",
            "/a//b",
            "/a/b/",
            "/a/./b",
            "/a/../b",
            "/a/.",
            "/a/..",
            "/a/%61",
            "/a/b%2Fc",
            "/a/é",
            "/a/b;c",
            "/a/b c",
            "//",
        ] {
            let rewritten = rewrite(path).map(|c| c.text);
            if is_canonical(path) {
                assert_eq!(rewritten.as_deref(), Ok(path), "{path}");
            }
            assert_eq!(canon(path), rewritten, "{path}");
        }
        assert!(is_canonical("/api/v2/workspaces/ws-1"));
        assert!(!is_canonical("/api/v2/workspaces/ws-1/"));
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
    fn non_ascii_escapes_stay_encoded_in_upper_case() {
        assert_eq!(canon("/caf%c3%a9/x").unwrap(), "/caf%C3%A9/x");
        assert_eq!(canon("/%E2%9C%93").unwrap(), "/%E2%9C%93");
        assert_eq!(canon("/").unwrap(), "/");
        assert_eq!(canon("//").unwrap(), "/");
    }

    #[test]
    fn escaped_delimiters_spaces_controls_and_bad_utf8_are_refused() {
        use CanonicalError::*;
        for escaped in [
            "%23", "%3F", "%3f", "%3B", "%20", "%09", "%0A", "%0D", "%7F", "%3A", "%40", "%2B",
            "%2C", "%3D", "%26", "%24", "%21", "%27", "%28", "%29", "%2A", "%5B", "%5D", "%22",
            "%3C", "%3E", "%60", "%7B", "%7C", "%7D", "%5E",
        ] {
            let path = format!("/api/v2/runs/run-1{escaped}x/actions/apply");
            assert!(
                matches!(canon(&path), Err(EncodedDelimiter(_))),
                "{path}: {:?}",
                canon(&path)
            );
        }
        for bad in [
            "/a%C0%AF",
            "/a%E0%80%AF",
            "/a%FF",
            "/a%C3",
            "/a%C3x%A9",
            "/a%C3%41%A9",
            "/%ED%A0%80",
        ] {
            assert_eq!(canon(bad), Err(InvalidUtf8), "{bad}");
        }
        assert_eq!(canon("/a%25x"), Err(DoubleEncoded));
    }

    #[test]
    fn dangerous_spellings_are_rejected() {
        use CanonicalError::*;
        assert_eq!(canon("/a%2Fb"), Err(EncodedSeparator));
        assert_eq!(canon("/a%2fb"), Err(EncodedSeparator));
        assert_eq!(canon("/a%5Cb"), Err(EncodedSeparator));
        assert_eq!(canon("/a%00b"), Err(EncodedSeparator));
        assert_eq!(canon("/a%252e"), Err(DoubleEncoded));
        assert_eq!(canon("/a%25"), Err(DoubleEncoded));
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
        let path = canonicalize("/api//v2/runs/run-1/./actions/apply.json/").unwrap();
        assert_eq!(
            path.segments().collect::<Vec<_>>(),
            ["api", "v2", "runs", "run-1", "actions", "apply.json"]
        );
        // Whatever the string, the segments are its `/`-separated non-empty parts.
        assert_eq!(path.segment_count(), 6);
        let odd = CanonicalPath::new("/a//b/".into());
        assert_eq!(odd.segments().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(odd.segment_count(), 2);
    }

    #[test]
    fn noted_segments_are_the_segments_up_to_the_noted_count() {
        for text in [
            "/",
            "/a",
            "//a//b/",
            "/api/v2/workspaces/ws-1",
            "/1/2/3/4/5/6/7/8",
            "/1/2/3/4/5/6/7/8/9",
            "/a/%C3%A9/b.json/",
        ] {
            let path = CanonicalPath::new(text.into());
            let scanned: Vec<&str> = path.segments().collect();
            let noted: Option<Vec<&str>> = path.noted_segments().map(Iterator::collect);
            match noted {
                Some(noted) => assert_eq!(noted, scanned, "{text}"),
                None => assert!(scanned.len() > NOTED_SEGMENTS, "{text}"),
            }
        }
    }
}
