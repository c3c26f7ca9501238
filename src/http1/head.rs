//! The request head: found in the read buffer by [`HeadScanner`] (which
//! checks every line ending and the size and line limits as bytes arrive,
//! without rescanning), then parsed by `httparse` and judged strictly by
//! [`parse`]: version, request target, `Host`, framing, `Connection`,
//! `Expect`.

use super::HttpError;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri, Version};

/// How the request body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    Empty,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

impl Framing {
    /// True when body bytes are expected.
    pub fn has_body(self) -> bool {
        match self {
            Framing::Empty | Framing::Length(0) => false,
            Framing::Length(_) | Framing::Chunked => true,
        }
    }
}

/// A parsed and judged request head.
#[derive(Debug)]
pub struct RequestHead {
    /// Method, target, version and headers; the header values share the
    /// bytes of the read buffer.
    pub request: Request<()>,
    pub framing: Framing,
    /// The client asked to keep the connection open (HTTP/1.1 unless
    /// `Connection: close`; HTTP/1.0 only with `Connection: keep-alive`).
    pub keep_alive: bool,
    /// `Expect: 100-continue` in an HTTP/1.1 request.
    pub expect_continue: bool,
}

/// Where a complete head lies in the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadBounds {
    /// First byte of the request line (empty lines before it are skipped).
    pub start: usize,
    /// One past the final CRLF.
    pub end: usize,
    /// Header field lines.
    pub header_lines: usize,
}

/// Finds the end of a head as bytes arrive, remembering how far it got.
/// Refuses a bare LF or bare CR, obs-fold, more than `max_header_count`
/// header lines, and a head that cannot end within `max_head_bytes`.
#[derive(Debug, Default)]
pub struct HeadScanner {
    pos: usize,
    line_start: usize,
    start: usize,
    request_line_seen: bool,
    header_lines: usize,
}

impl HeadScanner {
    /// Scans `buf` (the same buffer, grown, on every call) from where the
    /// last call stopped. `Ok(None)`: the head is not complete yet.
    pub fn scan(
        &mut self,
        buf: &[u8],
        max_head_bytes: usize,
        max_header_count: usize,
    ) -> Result<Option<HeadBounds>, HttpError> {
        while let Some(offset) = buf[self.pos..]
            .iter()
            .position(|&b| b == b'\r' || b == b'\n')
        {
            let at = self.pos + offset;
            if buf[at] == b'\n' {
                return Err(BARE_LF);
            }
            let Some(&next) = buf.get(at + 1) else {
                // A CR at the end: wait for the byte after it.
                self.pos = at;
                break;
            };
            if next != b'\n' {
                return Err(BARE_CR);
            }
            let line = &buf[self.line_start..at];
            let after = at + 2;
            if line.is_empty() {
                if self.request_line_seen {
                    if after > max_head_bytes {
                        return Err(HttpError::HeadTooLarge {
                            limit: max_head_bytes,
                        });
                    }
                    return Ok(Some(HeadBounds {
                        start: self.start,
                        end: after,
                        header_lines: self.header_lines,
                    }));
                }
                // An empty line before the request line is ignored (RFC 9112 §2.2).
                self.start = after;
            } else if !self.request_line_seen {
                self.request_line_seen = true;
            } else {
                if line[0] == b' ' || line[0] == b'\t' {
                    return Err(HttpError::bad(
                        "obs_fold",
                        "header lines must not be folded (obs-fold)",
                    ));
                }
                self.header_lines += 1;
                if self.header_lines > max_header_count {
                    return Err(HttpError::TooManyHeaders {
                        limit: max_header_count,
                    });
                }
            }
            self.line_start = after;
            self.pos = after;
            if after > max_head_bytes {
                return Err(HttpError::HeadTooLarge {
                    limit: max_head_bytes,
                });
            }
        }
        if self.pos < buf.len() && buf[self.pos] != b'\r' {
            self.pos = buf.len();
        }
        // The head ends at least one byte past what is here.
        if buf.len() >= max_head_bytes {
            return Err(HttpError::HeadTooLarge {
                limit: max_head_bytes,
            });
        }
        Ok(None)
    }
}

const BARE_LF: HttpError = HttpError::bad(
    "line_ending",
    "every line of the request head must end in CRLF (bare LF)",
);
const BARE_CR: HttpError = HttpError::bad(
    "line_ending",
    "every line of the request head must end in CRLF (bare CR)",
);

/// Header lines parsed into a stack array up to this many; more go to the heap.
const STACK_HEADERS: usize = 64;

/// Room left in a parsed request's header map for the headers the gateway
/// adds when it forwards the request (`Host`, three `X-Forwarded-…`, five
/// `X-Tokengate-…`: `upstream::headers`), so that adding them never grows
/// (rehashes and copies) the map.
const FORWARDING_HEADERS: usize = 9;

/// Parses and judges the head `head[bounds.start..bounds.end]`. `head` is
/// the frozen read buffer up to `bounds.end`; header values and the target
/// share its bytes.
pub fn parse(head: &Bytes, bounds: HeadBounds) -> Result<RequestHead, HttpError> {
    let bytes = &head[bounds.start..bounds.end];
    if bounds.header_lines <= STACK_HEADERS {
        let mut storage = [httparse::EMPTY_HEADER; STACK_HEADERS];
        parse_with(head, bytes, &mut storage[..bounds.header_lines])
    } else {
        let mut storage = vec![httparse::EMPTY_HEADER; bounds.header_lines];
        parse_with(head, bytes, &mut storage)
    }
}

fn parse_with<'b>(
    head: &Bytes,
    bytes: &'b [u8],
    storage: &mut [httparse::Header<'b>],
) -> Result<RequestHead, HttpError> {
    let mut parsed = httparse::Request::new(storage);
    match parsed.parse(bytes) {
        Ok(httparse::Status::Complete(len)) if len == bytes.len() => {}
        Ok(_) => return Err(MALFORMED),
        Err(httparse::Error::Version) => return Err(version_error(bytes)),
        Err(_) => return Err(MALFORMED),
    }
    let version = match parsed.version {
        Some(0) => Version::HTTP_10,
        Some(1) => Version::HTTP_11,
        _ => return Err(HttpError::VersionNotSupported),
    };
    let method =
        Method::from_bytes(parsed.method.unwrap_or_default().as_bytes()).map_err(|_| MALFORMED)?;
    let target = parsed.path.unwrap_or_default();
    if !target.starts_with('/') {
        return Err(HttpError::bad(
            "request_target",
            "the request target must be a path (origin-form), e.g. /api/v2/...",
        ));
    }
    let uri = Uri::from_maybe_shared(head.slice_ref(target.as_bytes()))
        .map_err(|_| HttpError::bad("request_target", "the request target is not a valid path"))?;

    let mut facts = HeaderFacts::default();
    let mut headers = HeaderMap::with_capacity(parsed.headers.len() + FORWARDING_HEADERS);
    for line in parsed.headers.iter() {
        facts.note(line.name.as_bytes(), line.value)?;
        let name = HeaderName::from_bytes(line.name.as_bytes()).map_err(|_| MALFORMED)?;
        let value =
            HeaderValue::from_maybe_shared(head.slice_ref(line.value)).map_err(|_| MALFORMED)?;
        headers.append(name, value);
    }
    let framing = facts.framing(version)?;
    let host_ok = match version {
        Version::HTTP_11 => facts.hosts == 1,
        _ => facts.hosts <= 1,
    };
    if !host_ok {
        return Err(HttpError::bad(
            "host",
            "an HTTP/1.1 request needs exactly one Host header",
        ));
    }
    if facts.unknown_expectation {
        return Err(HttpError::ExpectationFailed);
    }
    let keep_alive = match version {
        Version::HTTP_11 => !facts.close,
        _ => facts.keep_alive && !facts.close,
    };
    // HTTP/1.0 has no 100 Continue: the expectation is ignored (RFC 9110 §10.1.1).
    let expect_continue = facts.expect_continue && version == Version::HTTP_11;

    let mut request = Request::new(());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = version;
    *request.headers_mut() = headers;
    Ok(RequestHead {
        request,
        framing,
        keep_alive,
        expect_continue,
    })
}

const MALFORMED: HttpError = HttpError::bad("malformed_head", "the request head is malformed");

/// 505 for a request line of three parts whose version is a well-formed
/// `HTTP/x.y` other than 1.0 and 1.1; 400 otherwise.
fn version_error(head: &[u8]) -> HttpError {
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let parts: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
    match parts[..] {
        [method, target, [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]]
            if !method.is_empty()
                && !target.is_empty()
                && major.is_ascii_digit()
                && minor.is_ascii_digit()
                && !(*major == b'1' && (*minor == b'0' || *minor == b'1')) =>
        {
            HttpError::VersionNotSupported
        }
        _ => MALFORMED,
    }
}

/// What the headers say about framing and the connection.
#[derive(Default)]
struct HeaderFacts {
    content_length: Option<u64>,
    content_length_lines: usize,
    transfer_encoding_lines: usize,
    hosts: usize,
    close: bool,
    keep_alive: bool,
    expect_continue: bool,
    unknown_expectation: bool,
}

const FRAMING: &str = "framing";

impl HeaderFacts {
    fn note(&mut self, name: &[u8], value: &[u8]) -> Result<(), HttpError> {
        if name.eq_ignore_ascii_case(b"content-length") {
            self.content_length_lines += 1;
            if self.content_length_lines > 1 {
                return Err(HttpError::bad(
                    FRAMING,
                    "send at most one Content-Length header",
                ));
            }
            self.content_length = Some(parse_content_length(value)?);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            self.transfer_encoding_lines += 1;
            if self.transfer_encoding_lines > 1 {
                return Err(HttpError::bad(
                    FRAMING,
                    "send at most one Transfer-Encoding header",
                ));
            }
            if !value.trim_ascii().eq_ignore_ascii_case(b"chunked") {
                return Err(HttpError::bad(
                    FRAMING,
                    "the only transfer coding accepted is `Transfer-Encoding: chunked`",
                ));
            }
        } else if name.eq_ignore_ascii_case(b"host") {
            self.hosts += 1;
        } else if name.eq_ignore_ascii_case(b"connection") {
            for option in value.split(|&b| b == b',') {
                let option = option.trim_ascii();
                if option.eq_ignore_ascii_case(b"close") {
                    self.close = true;
                } else if option.eq_ignore_ascii_case(b"keep-alive") {
                    self.keep_alive = true;
                }
            }
        } else if name.eq_ignore_ascii_case(b"expect") {
            if value.trim_ascii().eq_ignore_ascii_case(b"100-continue") {
                self.expect_continue = true;
            } else {
                self.unknown_expectation = true;
            }
        }
        Ok(())
    }

    fn framing(&self, version: Version) -> Result<Framing, HttpError> {
        let chunked = self.transfer_encoding_lines > 0;
        if chunked && version != Version::HTTP_11 {
            return Err(HttpError::bad(
                FRAMING,
                "Transfer-Encoding is not allowed in an HTTP/1.0 request",
            ));
        }
        match (self.content_length, chunked) {
            (Some(_), true) => Err(HttpError::bad(
                FRAMING,
                "send Content-Length or Transfer-Encoding, not both",
            )),
            (Some(length), false) => Ok(Framing::Length(length)),
            (None, true) => Ok(Framing::Chunked),
            (None, false) => Ok(Framing::Empty),
        }
    }
}

/// 1 to 19 ASCII digits: no sign, no list, no spaces inside.
fn parse_content_length(value: &[u8]) -> Result<u64, HttpError> {
    let value = value.trim_ascii();
    if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
        return Err(HttpError::bad(
            FRAMING,
            "Content-Length must be one number of 1 to 19 digits",
        ));
    }
    Ok(value.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 8192;

    /// Scans and parses a whole head given at once.
    fn head(text: &[u8]) -> Result<RequestHead, HttpError> {
        head_with(text, MAX, 100)
    }

    fn head_with(text: &[u8], max: usize, count: usize) -> Result<RequestHead, HttpError> {
        let bounds = HeadScanner::default()
            .scan(text, max, count)?
            .expect("a complete head");
        parse(&Bytes::copy_from_slice(&text[..bounds.end]), bounds)
    }

    fn status(result: Result<RequestHead, HttpError>) -> u16 {
        match result {
            Ok(_) => 200,
            Err(err) => err.status().as_u16(),
        }
    }

    #[test]
    fn heads_in_and_outcomes_out() {
        let cases: &[(&[u8], u16)] = &[
            (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 200),
            (b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 200),
            (b"GET /a?b=c HTTP/1.0\r\n\r\n", 200),
            (b"GET / HTTP/1.1\nHost: a\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: a\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: a\r\n\n", 400),
            (b"GET / HTTP/1.1\rHost: a\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n c\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n\tc\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400),
            (b"GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n", 400),
            (b"CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n", 400),
            (b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", 400),
            (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
            (b"GET / HTTP/1.2\r\nHost: a\r\n\r\n", 505),
            (b"GET / HTTP/0.9\r\nHost: a\r\n\r\n", 505),
            (b"GET / HTTP/1\r\nHost: a\r\n\r\n", 400),
            (b"GET / HTTPS/1.1\r\nHost: a\r\n\r\n", 400),
            (b"GET /  HTTP/1.1\r\nHost: a\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: a\r\nX\x01: b\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: a\r\nX: b\x00c\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: a\r\nX: caf\xe9\r\n\r\n", 200),
            (b"G\xe9T / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
            (b"GET /\x01 HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        ];
        for (text, expected) in cases {
            assert_eq!(
                status(head(text)),
                *expected,
                "{}",
                String::from_utf8_lossy(text)
            );
        }
    }

    #[test]
    fn framing_in_and_outcome_out() {
        let ok = |framing: Framing| Ok::<Framing, u16>(framing);
        let cases: &[(&str, Result<Framing, u16>)] = &[
            ("", ok(Framing::Empty)),
            ("Content-Length: 5\r\n", ok(Framing::Length(5))),
            ("Content-Length: 0\r\n", ok(Framing::Length(0))),
            ("Content-Length:  007 \r\n", ok(Framing::Length(7))),
            (
                "Content-Length: 9999999999999999999\r\n",
                ok(Framing::Length(9_999_999_999_999_999_999)),
            ),
            ("Content-Length: 10000000000000000000\r\n", Err(400)),
            ("Content-Length: +5\r\n", Err(400)),
            ("Content-Length: -5\r\n", Err(400)),
            ("Content-Length: 1,1\r\n", Err(400)),
            ("Content-Length: 1 1\r\n", Err(400)),
            ("Content-Length: 0x5\r\n", Err(400)),
            ("Content-Length:\r\n", Err(400)),
            ("Content-Length: 5\r\nContent-Length: 5\r\n", Err(400)),
            ("Content-Length: 5\r\nContent-Length: 6\r\n", Err(400)),
            ("Transfer-Encoding: chunked\r\n", ok(Framing::Chunked)),
            ("Transfer-Encoding:  CHUNKED \r\n", ok(Framing::Chunked)),
            ("Transfer-Encoding: chunked, identity\r\n", Err(400)),
            ("Transfer-Encoding: identity, chunked\r\n", Err(400)),
            ("Transfer-Encoding: xchunked\r\n", Err(400)),
            (
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
                Err(400),
            ),
            ("Transfer-Encoding: gzip\r\n", Err(400)),
            (
                "Transfer-Encoding: chunked\r\nContent-Length: 4\r\n",
                Err(400),
            ),
            (
                "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n",
                Err(400),
            ),
            (
                "Expect: 100-continue\r\nContent-Length: 4\r\n",
                ok(Framing::Length(4)),
            ),
            ("Expect: 100-Continue\r\n", ok(Framing::Empty)),
            ("Expect: 100-continue, x\r\n", Err(417)),
            ("Expect: something\r\n", Err(417)),
        ];
        for (headers, expected) in cases {
            let text = format!("POST / HTTP/1.1\r\nHost: a\r\n{headers}\r\n");
            let got = head(text.as_bytes())
                .map(|h| h.framing)
                .map_err(|e| e.status().as_u16());
            assert_eq!(&got, expected, "{headers:?}");
        }
        let text = b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(status(head(text)), 400, "HTTP/1.0 with Transfer-Encoding");
    }

    #[test]
    fn connection_and_expect_facts() {
        let cases: &[(&str, bool, bool)] = &[
            ("GET / HTTP/1.1\r\nHost: a\r\n", true, false),
            (
                "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n",
                false,
                false,
            ),
            (
                "GET / HTTP/1.1\r\nHost: a\r\nConnection: x, Close\r\n",
                false,
                false,
            ),
            ("GET / HTTP/1.0\r\n", false, false),
            ("GET / HTTP/1.0\r\nConnection: keep-alive\r\n", true, false),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 1\r\n",
                true,
                true,
            ),
            (
                "POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n",
                false,
                false,
            ),
        ];
        for (text, keep_alive, expect) in cases {
            let parsed = head(format!("{text}\r\n").as_bytes()).unwrap();
            assert_eq!(parsed.keep_alive, *keep_alive, "{text:?}");
            assert_eq!(parsed.expect_continue, *expect, "{text:?}");
        }
    }

    #[test]
    fn the_head_size_limit_is_exact() {
        let exact = |size: usize| {
            let prefix = "GET / HTTP/1.1\r\nHost: a\r\nX: ";
            let pad = size - prefix.len() - 4;
            format!("{prefix}{}\r\n\r\n", "x".repeat(pad))
        };
        let text = exact(MAX);
        assert_eq!(text.len(), MAX);
        assert!(head(text.as_bytes()).is_ok());
        let text = exact(MAX + 1);
        assert_eq!(
            head_with(text.as_bytes(), MAX, 100).unwrap_err(),
            HttpError::HeadTooLarge { limit: MAX }
        );
        // Arriving byte by byte: refused as soon as it cannot fit.
        let mut scanner = HeadScanner::default();
        let mut outcome = Ok(None);
        for end in 1..=text.len() {
            outcome = scanner.scan(&text.as_bytes()[..end], MAX, 100);
            if outcome.is_err() {
                assert_eq!(end, MAX, "refused at the first byte past the limit");
                break;
            }
        }
        assert!(outcome.is_err());
        // Byte by byte, the exact size is accepted.
        let text = exact(MAX);
        let mut scanner = HeadScanner::default();
        for end in 1..text.len() {
            assert_eq!(scanner.scan(&text.as_bytes()[..end], MAX, 100), Ok(None));
        }
        assert!(matches!(
            scanner.scan(text.as_bytes(), MAX, 100),
            Ok(Some(HeadBounds { end, .. })) if end == MAX
        ));
    }

    #[test]
    fn the_header_count_limit() {
        let with = |count: usize| {
            let mut text = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
            for i in 1..count {
                text.push_str(&format!("X-{i}: v\r\n"));
            }
            text.push_str("\r\n");
            text
        };
        assert!(head_with(with(100).as_bytes(), 65536, 100).is_ok());
        assert_eq!(
            head_with(with(101).as_bytes(), 65536, 100).unwrap_err(),
            HttpError::TooManyHeaders { limit: 100 }
        );
        // Past the stack array.
        let parsed = head_with(with(300).as_bytes(), 65536, 300).unwrap();
        assert_eq!(parsed.request.headers().len(), 300);
    }

    #[test]
    fn pipelined_bytes_after_the_head_are_left_alone() {
        let text = b"GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n";
        let bounds = HeadScanner::default()
            .scan(text, MAX, 100)
            .unwrap()
            .unwrap();
        assert_eq!(&text[bounds.end..bounds.end + 6], b"GET /b");
    }

    #[test]
    fn values_share_the_buffer_and_are_trimmed() {
        let text = b"GET /p?q HTTP/1.1\r\nHost:  a \r\nX-Y:\tb c\t\r\n\r\n";
        let bytes = Bytes::copy_from_slice(text);
        let bounds = HeadScanner::default()
            .scan(&bytes, MAX, 100)
            .unwrap()
            .unwrap();
        let parsed = parse(&bytes, bounds).unwrap();
        let request = parsed.request;
        assert_eq!(request.uri().path(), "/p");
        assert_eq!(request.uri().query(), Some("q"));
        assert_eq!(request.headers()["host"], "a");
        assert_eq!(request.headers()["x-y"], "b c");
        assert_eq!(request.version(), Version::HTTP_11);
    }
}
