//! The upstream's answer as bytes: its head, parsed by `httparse` straight
//! out of the connection's read buffer ([`parse_head`]); how its body is
//! delimited (RFC 9112 §6.3, [`BodyFraming`]); whether the connection may
//! carry another request after it; and the chunked transfer coding of a
//! body ([`ChunkedDecoder`]). Pure: no I/O, no connection.
//!
//! The upstream is trusted less than a library would trust a server: an
//! answer whose length is ambiguous (two different `Content-Length`s, one
//! that is not a number), a head that is too large or malformed, a bad
//! chunk, all fail the request (502) instead of being guessed at; and a
//! connection whose framing was not plain (`Transfer-Encoding` beside
//! `Content-Length`, a body that ends with the connection, bytes past the
//! end of an answer) is never used again.

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{StatusCode, Version};

/// The most header lines an answer may have (hyper's limit too).
pub const MAX_HEADERS: usize = 100;

/// The largest answer head, status line to the empty line.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// The longest chunk-size line (size, extensions, CRLF).
const MAX_CHUNK_LINE: usize = 4096;

/// The most trailer bytes a chunked body may end with (they are dropped).
const MAX_TRAILER_BYTES: usize = 16 * 1024;

/// Why an answer cannot be read. Shown in the log, never to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    #[error("the answer's head is malformed: {0}")]
    MalformedHead(String),
    #[error("the answer's head is larger than {MAX_HEAD_BYTES} bytes")]
    HeadTooLarge,
    #[error("the answer's Content-Length is not one number: {0:?}")]
    BadLength(String),
    #[error("the upstream switched protocols, which was never asked for")]
    SwitchedProtocols,
    #[error("a chunk of the answer's body is malformed: {0}")]
    BadChunk(&'static str),
}

/// How the body of an answer is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body: the answer to a HEAD, 1xx, 204 and 304.
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// The chunked transfer coding.
    Chunked,
    /// Until the upstream closes the connection.
    UntilClose,
}

/// A parsed answer head.
#[derive(Debug)]
pub struct AnswerHead {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    pub framing: BodyFraming,
    /// The connection may carry another request once this answer's body
    /// has been read to its end.
    pub keep_alive: bool,
}

impl AnswerHead {
    /// An interim answer (1xx other than 101): another head follows.
    pub fn is_interim(&self) -> bool {
        self.status.is_informational()
    }
}

/// Header lines parsed with storage on the stack; an answer with more is
/// parsed again with room for [`MAX_HEADERS`].
const STACK_HEADERS: usize = 24;

/// Parses the answer head at the start of `buf`. `Ok(None)`: incomplete,
/// read more. When complete, the head's bytes are split off `buf` (the
/// header values share them, nothing is copied) and what follows, the
/// start of the body, stays in `buf`.
pub fn parse_head(
    buf: &mut BytesMut,
    head_request: bool,
) -> Result<Option<AnswerHead>, AnswerError> {
    match parse_with::<STACK_HEADERS>(buf, head_request) {
        Err(Overflow::Lines) => match parse_with::<MAX_HEADERS>(buf, head_request) {
            Err(Overflow::Lines) => Err(AnswerError::MalformedHead(format!(
                "more than {MAX_HEADERS} header lines"
            ))),
            Err(Overflow::Answer(err)) => Err(err),
            Ok(head) => Ok(head),
        },
        Err(Overflow::Answer(err)) => Err(err),
        Ok(head) => Ok(head),
    }
}

/// Why [`parse_with`] stopped: more header lines than it had room for, or
/// an answer that cannot be read.
enum Overflow {
    Lines,
    Answer(AnswerError),
}

impl From<AnswerError> for Overflow {
    fn from(err: AnswerError) -> Self {
        Overflow::Answer(err)
    }
}

/// [`parse_head`] with room for `LINES` header lines.
fn parse_with<const LINES: usize>(
    buf: &mut BytesMut,
    head_request: bool,
) -> Result<Option<AnswerHead>, Overflow> {
    let mut lines = [httparse::EMPTY_HEADER; LINES];
    let mut spans = [[0u32; 4]; LINES];
    let mut parsed = httparse::Response::new(&mut lines);
    let head_length = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD_BYTES => {
            return Err(AnswerError::HeadTooLarge.into())
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(Overflow::Lines),
        Err(err) => return Err(AnswerError::MalformedHead(err.to_string()).into()),
    };
    if head_length > MAX_HEAD_BYTES {
        return Err(AnswerError::HeadTooLarge.into());
    }
    let code = parsed.code.unwrap_or_default();
    let status = StatusCode::from_u16(code)
        .map_err(|_| AnswerError::MalformedHead(format!("status {code}")))?;
    if status == StatusCode::SWITCHING_PROTOCOLS {
        return Err(AnswerError::SwitchedProtocols.into());
    }
    let version = match parsed.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    // One pass over the lines: where each name and value lies in `buf`
    // (within the head, so under MAX_HEAD_BYTES), so that the values can
    // share the head's bytes once it is split off; and what the framing
    // headers say, so that no header is looked up in the map afterwards.
    let base = buf.as_ptr() as usize;
    let offset = |part: &[u8]| (part.as_ptr() as usize - base) as u32;
    let count = parsed.headers.len();
    let mut framing_headers = FramingHeaders::default();
    for (span, line) in spans.iter_mut().zip(parsed.headers.iter()) {
        let name = line.name.as_bytes();
        framing_headers.note(name, line.value);
        *span = [
            offset(name),
            name.len() as u32,
            offset(line.value),
            line.value.len() as u32,
        ];
    }
    let FramingHeaders {
        length,
        length_lines,
        length_as_written,
        transfer_encoding,
        last_coding_chunked,
        connection_close,
        connection_keep_alive,
    } = framing_headers;
    let mut keep_alive = match version {
        Version::HTTP_10 => connection_keep_alive,
        _ => !connection_close,
    };
    let no_body = head_request
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    // RFC 9112 §6.3. `kept_length`: the one `Content-Length` the answer
    // carries on, where its first line was (`None`: none at all).
    let (framing, kept_length) = if no_body {
        // A length here only describes the body a GET would have had: kept
        // as one value when it is one number, dropped when it is not.
        (BodyFraming::Empty, length.as_ref().ok().copied().flatten())
    } else if transfer_encoding {
        // The transfer coding wins over a length (RFC 9112 §6.3 item 3);
        // the length goes, and so does the connection after this answer.
        if length_lines > 0 {
            keep_alive = false;
        }
        if last_coding_chunked {
            (BodyFraming::Chunked, None)
        } else {
            keep_alive = false;
            (BodyFraming::UntilClose, None)
        }
    } else if length_lines > 0 {
        match length {
            Ok(Some(length)) => (BodyFraming::Length(length), Some(length)),
            // Reported once the head's names and values are checked, as
            // before this pass existed.
            Ok(None) | Err(_) => (BodyFraming::UntilClose, None),
        }
    } else {
        keep_alive = false;
        (BodyFraming::UntilClose, None)
    };
    let head = buf.split_to(head_length).freeze();
    let mut headers = HeaderMap::with_capacity(count);
    let mut length_placed = false;
    for &[name_at, name_len, value_at, value_len] in &spans[..count] {
        let range = |at: u32, len: u32| at as usize..(at + len) as usize;
        let name = HeaderName::from_bytes(&head[range(name_at, name_len)])
            .map_err(|_| AnswerError::MalformedHead("a header name".into()))?;
        if name == header::CONTENT_LENGTH {
            // One header with one value from here on, where the first was.
            match kept_length {
                Some(_) if length_placed => continue,
                Some(_) if length_as_written => {}
                Some(length) => {
                    headers.append(name, HeaderValue::from(length));
                    length_placed = true;
                    continue;
                }
                None => continue,
            }
            length_placed = true;
        }
        let value = HeaderValue::from_maybe_shared(head.slice(range(value_at, value_len)))
            .map_err(|_| AnswerError::MalformedHead(format!("the value of {name}")))?;
        headers.append(name, value);
    }
    if !no_body && !transfer_encoding && length_lines > 0 {
        // A body framed by a length that is not one number fails the answer.
        length?;
    }
    Ok(Some(AnswerHead {
        status,
        version,
        headers,
        framing,
        keep_alive,
    }))
}

/// What an answer's framing headers say, noted line by line as the head is
/// parsed.
#[derive(Debug)]
struct FramingHeaders {
    /// The answer's length: every `Content-Length` value (repeated headers,
    /// comma-separated lists) must be the same number. `Ok(None)`: no
    /// `Content-Length` line.
    length: Result<Option<u64>, AnswerError>,
    /// How many `Content-Length` lines there are.
    length_lines: usize,
    /// The one `Content-Length` line is that number as it would be written
    /// (so it is passed on as it came, without formatting it again).
    length_as_written: bool,
    /// A `Transfer-Encoding` line is present.
    transfer_encoding: bool,
    /// The last transfer coding (of the last `Transfer-Encoding` line) is
    /// `chunked`.
    last_coding_chunked: bool,
    /// `Connection` lists `close` / `keep-alive` (in any case).
    connection_close: bool,
    connection_keep_alive: bool,
}

impl Default for FramingHeaders {
    fn default() -> Self {
        FramingHeaders {
            length: Ok(None),
            length_lines: 0,
            length_as_written: false,
            transfer_encoding: false,
            last_coding_chunked: false,
            connection_close: false,
            connection_keep_alive: false,
        }
    }
}

impl FramingHeaders {
    /// Notes one header line.
    fn note(&mut self, name: &[u8], value: &[u8]) {
        if name.eq_ignore_ascii_case(b"content-length") {
            self.length_lines += 1;
            self.note_length(value);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            self.transfer_encoding = true;
            self.last_coding_chunked = value
                .rsplit(|&b| b == b',')
                .next()
                .is_some_and(|coding| coding.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if name.eq_ignore_ascii_case(b"connection") {
            for item in value.split(|&b| b == b',') {
                let item = item.trim_ascii();
                self.connection_close |= item.eq_ignore_ascii_case(b"close");
                self.connection_keep_alive |= item.eq_ignore_ascii_case(b"keep-alive");
            }
        }
    }

    /// Folds one `Content-Length` value into [`FramingHeaders::length`];
    /// the first bad value decides the error.
    fn note_length(&mut self, value: &[u8]) {
        let Ok(mut length) = self.length.clone() else {
            return;
        };
        let bad = || AnswerError::BadLength(String::from_utf8_lossy(value).into());
        let mut items = 0;
        for item in value.split(|&b| b == b',') {
            items += 1;
            let item = item.trim_ascii();
            if item.is_empty() || item.len() > 19 || !item.iter().all(u8::is_ascii_digit) {
                self.length = Err(bad());
                return;
            }
            let Some(number) = std::str::from_utf8(item)
                .ok()
                .and_then(|text| text.parse::<u64>().ok())
            else {
                self.length = Err(bad());
                return;
            };
            if length.is_some_and(|seen| seen != number) {
                self.length = Err(bad());
                return;
            }
            length = Some(number);
        }
        self.length = Ok(length);
        self.length_as_written = self.length_lines == 1
            && items == 1
            && length.is_some_and(|n| itoa::Buffer::new().format(n).as_bytes() == value);
    }
}

/// What [`ChunkedDecoder::decode`] found in the buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// Body bytes.
    Data(Bytes),
    /// The body is not complete in the buffer: read more.
    NeedMore,
    /// The last chunk and the trailers were read: the body is over.
    End,
}

/// Where the decoder is in a chunked body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Expecting a chunk-size line.
    Size,
    /// In a chunk's data, this many bytes left.
    Data(u64),
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: trailer lines until an empty one; the bytes
    /// of trailer lines read so far.
    Trailers(usize),
    Done,
}

/// Decodes a chunked body (RFC 9112 §7.1) as its bytes arrive: sizes of 1
/// to 16 hex digits, extensions skipped, CRLF line endings, trailers read
/// and dropped.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: ChunkState,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        ChunkedDecoder {
            state: ChunkState::Size,
        }
    }
}

impl ChunkedDecoder {
    /// Takes what it can from the front of `buf`: the next piece of body
    /// data, or the end, or `NeedMore` when `buf` holds no complete step.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, AnswerError> {
        loop {
            match self.state {
                ChunkState::Size => {
                    let Some(line) =
                        take_line(buf, MAX_CHUNK_LINE, "a chunk-size line is too long")?
                    else {
                        return Ok(Decoded::NeedMore);
                    };
                    let size = chunk_size(&line)?;
                    self.state = if size == 0 {
                        ChunkState::Trailers(0)
                    } else {
                        ChunkState::Data(size)
                    };
                }
                ChunkState::Data(left) => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    let take = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        ChunkState::DataEnd
                    } else {
                        ChunkState::Data(left)
                    };
                    return Ok(Decoded::Data(buf.split_to(take).freeze()));
                }
                ChunkState::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(Decoded::NeedMore);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(AnswerError::BadChunk("chunk data is not followed by CRLF"));
                    }
                    let _ = buf.split_to(2);
                    self.state = ChunkState::Size;
                }
                ChunkState::Trailers(seen) => {
                    let limit = MAX_TRAILER_BYTES.saturating_sub(seen).max(2);
                    let Some(line) = take_line(buf, limit, "the trailers are too large")? else {
                        return Ok(Decoded::NeedMore);
                    };
                    self.state = if line.is_empty() {
                        ChunkState::Done
                    } else {
                        ChunkState::Trailers(seen + line.len() + 2)
                    };
                }
                ChunkState::Done => return Ok(Decoded::End),
            }
        }
    }
}

/// The next CRLF-terminated line of `buf`, without its CRLF; `None` when
/// `buf` holds no whole line yet. A bare LF, or a line longer than `limit`,
/// is an error.
fn take_line(
    buf: &mut BytesMut,
    limit: usize,
    too_long: &'static str,
) -> Result<Option<BytesMut>, AnswerError> {
    let Some(lf) = buf.iter().take(limit).position(|&b| b == b'\n') else {
        return if buf.len() >= limit {
            Err(AnswerError::BadChunk(too_long))
        } else {
            Ok(None)
        };
    };
    if lf == 0 || buf[lf - 1] != b'\r' {
        return Err(AnswerError::BadChunk("a line ends in a bare LF"));
    }
    let mut line = buf.split_to(lf + 1);
    line.truncate(lf - 1);
    Ok(Some(line))
}

/// The size in a chunk-size line: 1 to 16 hex digits, then nothing, or
/// whitespace and `;` extensions (skipped).
fn chunk_size(line: &[u8]) -> Result<u64, AnswerError> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 16 {
        return Err(AnswerError::BadChunk(
            "the chunk size is not 1 to 16 hex digits",
        ));
    }
    let rest = line[digits..].trim_ascii_start();
    if !rest.is_empty() && rest[0] != b';' {
        return Err(AnswerError::BadChunk(
            "the chunk size is followed by something other than an extension",
        ));
    }
    if rest.iter().any(|&b| b < 0x20 && b != b'\t' || b == 0x7f) {
        return Err(AnswerError::BadChunk(
            "a chunk extension holds a control character",
        ));
    }
    let text = std::str::from_utf8(&line[..digits]).unwrap_or("");
    u64::from_str_radix(text, 16).map_err(|_| AnswerError::BadChunk("the chunk size"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(
        text: &str,
        head_request: bool,
    ) -> (Result<Option<AnswerHead>, AnswerError>, BytesMut) {
        let mut buf = BytesMut::from(text.as_bytes());
        let parsed = parse_head(&mut buf, head_request);
        (parsed, buf)
    }

    fn head(text: &str) -> AnswerHead {
        parse(text, false).0.unwrap().unwrap()
    }

    #[test]
    fn a_complete_head_is_split_off_and_the_body_stays() {
        let (parsed, rest) = parse(
            "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nX-A: 1\r\nX-A: 2\r\nContent-Length: 2\r\n\r\n{}",
            false,
        );
        let head = parsed.unwrap().unwrap();
        assert_eq!(head.status, StatusCode::CREATED);
        assert_eq!(head.version, Version::HTTP_11);
        assert_eq!(head.headers["content-type"], "application/json");
        let a: Vec<_> = head.headers.get_all("x-a").iter().collect();
        assert_eq!(a, ["1", "2"]);
        assert_eq!(head.framing, BodyFraming::Length(2));
        assert!(head.keep_alive);
        assert_eq!(&rest[..], b"{}");
    }

    #[test]
    fn an_incomplete_head_asks_for_more_and_keeps_the_buffer() {
        let (parsed, rest) = parse("HTTP/1.1 200 OK\r\nContent-Len", false);
        assert!(parsed.unwrap().is_none());
        assert_eq!(&rest[..], b"HTTP/1.1 200 OK\r\nContent-Len");
    }

    #[test]
    fn framing_follows_rfc_9112_section_6_3() {
        let cases = [
            (
                "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
                BodyFraming::Empty,
                true,
            ),
            (
                "HTTP/1.1 304 Not Modified\r\n\r\n",
                BodyFraming::Empty,
                true,
            ),
            ("HTTP/1.1 100 Continue\r\n\r\n", BodyFraming::Empty, true),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                BodyFraming::Chunked,
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n",
                BodyFraming::Chunked,
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
                BodyFraming::UntilClose,
                false,
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
                BodyFraming::Chunked,
                false,
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n",
                BodyFraming::Length(3),
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\n\r\n",
                BodyFraming::Length(3),
                true,
            ),
            ("HTTP/1.1 200 OK\r\n\r\n", BodyFraming::UntilClose, false),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: Close\r\n\r\n",
                BodyFraming::Length(0),
                false,
            ),
            (
                "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n",
                BodyFraming::Length(0),
                false,
            ),
            (
                "HTTP/1.0 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n",
                BodyFraming::Length(0),
                true,
            ),
        ];
        for (text, framing, keep_alive) in cases {
            let head = head(text);
            assert_eq!(head.framing, framing, "{text:?}");
            assert_eq!(head.keep_alive, keep_alive, "{text:?}");
        }
        let head =
            head("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n");
        assert!(
            !head.headers.contains_key("content-length"),
            "the length is dropped"
        );
        let answer_to_head = parse("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", true).0;
        let answer_to_head = answer_to_head.unwrap().unwrap();
        assert_eq!(answer_to_head.framing, BodyFraming::Empty);
        assert_eq!(answer_to_head.headers["content-length"], "9");
    }

    #[test]
    fn the_length_is_passed_on_as_one_plain_number_where_it_first_was() {
        let cases = [
            (
                "Content-Length: 2\r\nX-A: 1\r\n",
                vec!["content-length", "x-a"],
            ),
            (
                "X-A: 1\r\nContent-Length: 002\r\n",
                vec!["x-a", "content-length"],
            ),
            (
                "Content-Length: 2\r\nX-A: 1\r\nContent-Length: 2, 2\r\n",
                vec!["content-length", "x-a"],
            ),
            (
                "Content-Length:  2 \r\nX-A: 1\r\n",
                vec!["content-length", "x-a"],
            ),
        ];
        for (lines, names) in cases {
            let text = format!("HTTP/1.1 200 OK\r\n{lines}\r\n{{}}");
            let head = head(&text);
            assert_eq!(head.framing, BodyFraming::Length(2), "{text:?}");
            let values: Vec<_> = head.headers.get_all("content-length").iter().collect();
            assert_eq!(values, ["2"], "{text:?}");
            let order: Vec<_> = head.headers.keys().map(|n| n.as_str()).collect();
            assert_eq!(order, names, "{text:?}");
        }
        // An answer without a body keeps a length that is one number, and
        // drops one that is not.
        let head_answer = |lines: &str| {
            let text = format!("HTTP/1.1 304 Not Modified\r\n{lines}\r\n");
            parse(&text, false).0.unwrap().unwrap().headers
        };
        assert_eq!(
            head_answer("Content-Length: 09, 9\r\n")["content-length"],
            "9"
        );
        assert!(!head_answer("Content-Length: 9, 8\r\n").contains_key("content-length"));
    }

    #[test]
    fn ambiguous_or_malformed_heads_are_errors() {
        for text in [
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 3, 4\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: -3\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 0x3\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n",
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n",
            "HTTP/1.1 2000 OK\r\n\r\n",
            "HTTP/2 200 OK\r\n\r\n",
            "HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
            "garbage\r\n\r\n",
        ] {
            assert!(parse(text, false).0.is_err(), "{text:?}");
        }
        let many = format!(
            "HTTP/1.1 200 OK\r\n{}\r\n",
            "X: 1\r\n".repeat(MAX_HEADERS + 1)
        );
        assert!(parse(&many, false).0.is_err());
        let huge = format!("HTTP/1.1 200 OK\r\nX: {}", "a".repeat(MAX_HEAD_BYTES));
        assert_eq!(
            parse(&huge, false).0.unwrap_err(),
            AnswerError::HeadTooLarge
        );
    }

    /// Decodes `wire` fed `step` bytes at a time.
    fn decode_in_steps(wire: &[u8], step: usize) -> Result<(Vec<u8>, BytesMut), AnswerError> {
        let mut decoder = ChunkedDecoder::default();
        let mut buf = BytesMut::new();
        let mut body = Vec::new();
        let mut fed = 0;
        loop {
            match decoder.decode(&mut buf)? {
                Decoded::Data(data) => body.extend_from_slice(&data),
                Decoded::End => return Ok((body, buf)),
                Decoded::NeedMore => {
                    if fed == wire.len() {
                        return Err(AnswerError::BadChunk("ended early"));
                    }
                    let next = (fed + step).min(wire.len());
                    buf.extend_from_slice(&wire[fed..next]);
                    fed = next;
                }
            }
        }
    }

    #[test]
    fn a_chunked_body_decodes_the_same_however_it_arrives() {
        let wire = b"5\r\nhello\r\n1;name=\"v\"\r\n \r\nA  ; x\r\n0123456789\r\n0\r\nX-Trailer: 1\r\n\r\nNEXT";
        for step in [1, 2, 3, 7, wire.len()] {
            let (body, rest) = decode_in_steps(wire, step).unwrap();
            assert_eq!(body, b"hello 0123456789", "step {step}");
            // What follows the body is left for whoever reads next.
            assert!(b"NEXT".starts_with(&rest), "step {step}");
        }
    }

    #[test]
    fn malformed_chunks_are_errors() {
        for wire in [
            &b"5\r\nhelloXX0\r\n\r\n"[..],
            b"5\nhello\r\n0\r\n\r\n",
            b"g\r\n",
            b"\r\n",
            b"11111111111111111\r\n",
            b"5 x\r\nhello\r\n0\r\n\r\n",
            b"0\r\nX: 1\n\r\n",
        ] {
            assert!(decode_in_steps(wire, 1).is_err(), "{wire:?}");
        }
        let long_line = format!("1;{}\r\n", "a".repeat(MAX_CHUNK_LINE));
        assert!(decode_in_steps(long_line.as_bytes(), 4096).is_err());
        let long_trailers = format!("0\r\n{}", "X: 1\r\n".repeat(MAX_TRAILER_BYTES / 6 + 2));
        assert!(decode_in_steps(long_trailers.as_bytes(), 1000).is_err());
    }
}
