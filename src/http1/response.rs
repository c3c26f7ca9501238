//! The response head and its framing: a status line of `HTTP/1.1`, the
//! headers as given (less the connection's own: `Connection`, `Keep-Alive`,
//! `Transfer-Encoding`), then the framing this server chooses:
//!
//! - no body for HEAD, 1xx, 204 and 304;
//! - a `Content-Length` the response carries (the upstream's): exactly that
//!   many bytes;
//! - a body of known size (a generated one): `Content-Length`;
//! - otherwise `Transfer-Encoding: chunked` to an HTTP/1.1 client, and the
//!   end of the connection to an HTTP/1.0 one.
//!
//! `Connection: close` whenever the server closes after the response.

use http::{header, HeaderMap, StatusCode, Version};
use http_body::SizeHint;
use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

/// How the response body is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyOut {
    /// No body is written (HEAD, 1xx, 204, 304).
    None,
    /// Exactly this many bytes.
    Length(u64),
    Chunked,
    /// Until the connection closes (HTTP/1.0, size unknown).
    UntilClose,
}

/// What the writer must know about the request being answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answering {
    pub head_request: bool,
    /// The request's version.
    pub version: Version,
    /// The server closes the connection after this response.
    pub close: bool,
}

/// The framing of a response, and whether a `Content-Length` must be added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub body: BodyOut,
    pub add_length: Option<u64>,
    /// The connection closes after this response.
    pub close: bool,
}

/// Chooses the framing (see the module docs).
pub fn plan(status: StatusCode, headers: &HeaderMap, hint: &SizeHint, to: Answering) -> Plan {
    let declared = declared_length(headers);
    let exact = hint.exact();
    let no_body_status = status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let (body, add_length) = if no_body_status {
        (BodyOut::None, None)
    } else if to.head_request {
        // The length the GET would have, when it is known.
        (BodyOut::None, declared.is_none().then_some(exact).flatten())
    } else if let Some(length) = declared {
        (BodyOut::Length(length), None)
    } else if let Some(length) = exact {
        (BodyOut::Length(length), Some(length))
    } else if to.version == Version::HTTP_11 {
        (BodyOut::Chunked, None)
    } else {
        (BodyOut::UntilClose, None)
    };
    Plan {
        body,
        add_length,
        close: to.close || body == BodyOut::UntilClose,
    }
}

/// The response's own `Content-Length`, when it is one number.
fn declared_length(headers: &HeaderMap) -> Option<u64> {
    let mut values = headers.get_all(header::CONTENT_LENGTH).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    let text = value.as_bytes().trim_ascii();
    if text.is_empty() || text.len() > 19 || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(text).ok()?.parse().ok()
}

/// Headers that describe the client connection: the server writes its own.
fn is_connection_header(name: &header::HeaderName) -> bool {
    name == header::CONNECTION || name == header::TRANSFER_ENCODING || name.as_str() == "keep-alive"
}

/// Appends the response head to `out`.
pub fn encode_head(
    out: &mut Vec<u8>,
    status: StatusCode,
    headers: &HeaderMap,
    plan: &Plan,
    to: Answering,
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    let no_length = status.is_informational() || status == StatusCode::NO_CONTENT;
    // A length that disagrees with what is written (several values, or not
    // a number) is not passed on; the body is framed by the plan.
    let keep_length = !no_length && plan_length_is_the_header(plan, headers);
    for (name, value) in headers {
        if is_connection_header(name) || (name == header::CONTENT_LENGTH && !keep_length) {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !headers.contains_key(header::DATE) {
        out.extend_from_slice(b"date: ");
        with_date(|date| out.extend_from_slice(date));
        out.extend_from_slice(b"\r\n");
    }
    if let Some(length) = plan.add_length {
        out.extend_from_slice(b"content-length: ");
        out.extend_from_slice(itoa::Buffer::new().format(length).as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if plan.body == BodyOut::Chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    if plan.close {
        out.extend_from_slice(b"connection: close\r\n");
    } else if to.version == Version::HTTP_10 {
        out.extend_from_slice(b"connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// True when the response's own `Content-Length` is kept: it is one valid
/// number (the plan framed the body by it, or it is a HEAD/304 answer).
fn plan_length_is_the_header(plan: &Plan, headers: &HeaderMap) -> bool {
    plan.add_length.is_none() && declared_length(headers).is_some()
}

/// The size line of a chunk of `len` bytes.
pub fn chunk_header(out: &mut Vec<u8>, len: usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 16];
    let mut at = digits.len();
    let mut n = len;
    loop {
        at -= 1;
        digits[at] = HEX[n & 0xf];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
    out.extend_from_slice(b"\r\n");
}

/// The end of a chunked body (no trailers).
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// The interim response to `Expect: 100-continue`.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

thread_local! {
    /// The `Date` value, formatted once per second per thread.
    static DATE: RefCell<(u64, Vec<u8>)> = const { RefCell::new((u64::MAX, Vec::new())) };
}

fn with_date(f: impl FnOnce(&[u8])) {
    let now = SystemTime::now();
    let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    DATE.with(|date| {
        let mut date = date.borrow_mut();
        if date.0 != second {
            *date = (second, httpdate::fmt_http_date(now).into_bytes());
        }
        f(&date.1);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn answering(head_request: bool, version: Version, close: bool) -> Answering {
        Answering {
            head_request,
            version,
            close,
        }
    }

    #[test]
    fn framing_is_chosen_by_status_method_length_and_version() {
        let with_length = {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("7"));
            headers
        };
        let none = HeaderMap::new();
        let known = SizeHint::with_exact(3);
        let unknown = SizeHint::new();
        let v11 = answering(false, Version::HTTP_11, false);
        let v10 = answering(false, Version::HTTP_10, false);
        let head = answering(true, Version::HTTP_11, false);
        let ok = StatusCode::OK;
        let cases: &[(StatusCode, &HeaderMap, &SizeHint, Answering, Plan)] = &[
            (
                ok,
                &with_length,
                &unknown,
                v11,
                plan_of(BodyOut::Length(7), None, false),
            ),
            (
                ok,
                &none,
                &known,
                v11,
                plan_of(BodyOut::Length(3), Some(3), false),
            ),
            (
                ok,
                &none,
                &unknown,
                v11,
                plan_of(BodyOut::Chunked, None, false),
            ),
            (
                ok,
                &none,
                &unknown,
                v10,
                plan_of(BodyOut::UntilClose, None, true),
            ),
            (
                ok,
                &none,
                &known,
                v10,
                plan_of(BodyOut::Length(3), Some(3), false),
            ),
            (
                ok,
                &with_length,
                &unknown,
                head,
                plan_of(BodyOut::None, None, false),
            ),
            (
                ok,
                &none,
                &known,
                head,
                plan_of(BodyOut::None, Some(3), false),
            ),
            (
                StatusCode::NO_CONTENT,
                &none,
                &known,
                v11,
                plan_of(BodyOut::None, None, false),
            ),
            (
                StatusCode::NOT_MODIFIED,
                &with_length,
                &unknown,
                v11,
                plan_of(BodyOut::None, None, false),
            ),
            (
                StatusCode::CONTINUE,
                &none,
                &unknown,
                v11,
                plan_of(BodyOut::None, None, false),
            ),
            (
                ok,
                &none,
                &known,
                answering(false, Version::HTTP_11, true),
                plan_of(BodyOut::Length(3), Some(3), true),
            ),
        ];
        for (status, headers, hint, to, expected) in cases {
            assert_eq!(
                plan(*status, headers, hint, *to),
                *expected,
                "{status} {headers:?} {to:?}"
            );
        }
    }

    fn plan_of(body: BodyOut, add_length: Option<u64>, close: bool) -> Plan {
        Plan {
            body,
            add_length,
            close,
        }
    }

    fn head_text(status: StatusCode, headers: &HeaderMap, hint: SizeHint, to: Answering) -> String {
        let plan = plan(status, headers, &hint, to);
        let mut out = Vec::new();
        encode_head(&mut out, status, headers, &plan, to);
        let text = String::from_utf8(out).unwrap();
        // The date changes; the rest must not.
        text.lines()
            .filter(|l| !l.starts_with("date: "))
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn heads_are_written_with_our_framing_and_connection_headers() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
        headers.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("gzip"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        let v11 = answering(false, Version::HTTP_11, false);
        assert_eq!(
            head_text(StatusCode::OK, &headers, SizeHint::with_exact(2), v11),
            "HTTP/1.1 200 OK\ncontent-type: application/json\ncontent-length: 2\n"
        );
        assert_eq!(
            head_text(StatusCode::OK, &headers, SizeHint::new(), v11),
            "HTTP/1.1 200 OK\ncontent-type: application/json\ntransfer-encoding: chunked\n"
        );
        assert_eq!(
            head_text(
                StatusCode::BAD_REQUEST,
                &HeaderMap::new(),
                SizeHint::with_exact(0),
                answering(false, Version::HTTP_11, true)
            ),
            "HTTP/1.1 400 Bad Request\ncontent-length: 0\nconnection: close\n"
        );
        assert_eq!(
            head_text(
                StatusCode::OK,
                &HeaderMap::new(),
                SizeHint::new(),
                answering(false, Version::HTTP_10, false)
            ),
            "HTTP/1.1 200 OK\nconnection: close\n"
        );
        assert_eq!(
            head_text(
                StatusCode::OK,
                &HeaderMap::new(),
                SizeHint::with_exact(1),
                answering(false, Version::HTTP_10, false)
            ),
            "HTTP/1.1 200 OK\ncontent-length: 1\nconnection: keep-alive\n"
        );
        let mut upstream = HeaderMap::new();
        upstream.insert(header::CONTENT_LENGTH, HeaderValue::from_static("12"));
        assert_eq!(
            head_text(
                StatusCode::OK,
                &upstream,
                SizeHint::new(),
                answering(true, Version::HTTP_11, false)
            ),
            "HTTP/1.1 200 OK\ncontent-length: 12\n",
            "HEAD keeps the upstream's length and sends no body"
        );
        assert_eq!(
            head_text(StatusCode::NO_CONTENT, &upstream, SizeHint::new(), v11),
            "HTTP/1.1 204 No Content\n",
            "204 has no length"
        );
        let mut date = HeaderMap::new();
        date.insert(
            header::DATE,
            HeaderValue::from_static("Tue, 01 Jan 2030 00:00:00 GMT"),
        );
        let mut out = Vec::new();
        let to = answering(false, Version::HTTP_11, false);
        encode_head(
            &mut out,
            StatusCode::OK,
            &date,
            &plan(StatusCode::OK, &date, &SizeHint::with_exact(0), to),
            to,
        );
        assert_eq!(String::from_utf8(out).unwrap().matches("date:").count(), 1);
    }

    #[test]
    fn chunk_sizes_are_lower_hex() {
        for (len, text) in [
            (1, "1\r\n"),
            (10, "a\r\n"),
            (255, "ff\r\n"),
            (4096, "1000\r\n"),
        ] {
            let mut out = Vec::new();
            chunk_header(&mut out, len);
            assert_eq!(out, text.as_bytes());
        }
    }
}
