//! The chunked transfer coding of a request body (RFC 9112 §7.1), strictly:
//! chunk sizes of 1 to 16 hex digits, chunk extensions only of the RFC's
//! token / quoted-string syntax (and at most [`MAX_EXTENSION_BYTES`] of them
//! per body), CRLF only, and no trailer fields.

use super::HttpError;
use bytes::{Buf, BytesMut};

/// Chunk extensions are read and ignored; a body may carry this many bytes
/// of them in all.
pub const MAX_EXTENSION_BYTES: usize = 16 * 1024;

/// Decodes a chunked body as its bytes arrive, within a size limit.
#[derive(Debug)]
pub struct ChunkedDecoder {
    state: State,
    size: u64,
    digits: u8,
    /// Body bytes decoded so far.
    total: u64,
    limit: u64,
    extension_bytes: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Size,
    /// Whitespace after the size or an extension, before `;`.
    ExtBws,
    ExtNameStart,
    ExtName,
    ExtAfterName,
    ExtValueStart,
    ExtToken,
    ExtQuoted,
    ExtQuotedPair,
    ExtAfterQuoted,
    SizeLf,
    Data(u64),
    DataCr,
    DataLf,
    /// After the last chunk: only the final CRLF may follow.
    Trailer,
    TrailerLf,
    Done,
}

const CHUNKED: &str = "chunked_body";

fn bad(detail: &'static str) -> HttpError {
    HttpError::bad(CHUNKED, detail)
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_ws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn is_qdtext(b: u8) -> bool {
    matches!(b, b'\t' | b' ' | 0x21 | 0x23..=0x5b | 0x5d..=0x7e | 0x80..=0xff)
}

impl ChunkedDecoder {
    /// A decoder that refuses a body of more than `limit` bytes (413).
    pub fn new(limit: u64) -> Self {
        ChunkedDecoder {
            state: State::Size,
            size: 0,
            digits: 0,
            total: 0,
            limit,
            extension_bytes: 0,
        }
    }

    /// True once the last chunk and the final CRLF have been read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Consumes what it can of `input`, appending body bytes to `out`;
    /// stops at the end of the body (bytes after it stay in `input`).
    /// `Ok(true)` when the body is complete.
    pub fn decode(&mut self, input: &mut BytesMut, out: &mut BytesMut) -> Result<bool, HttpError> {
        let mut at = 0;
        let result = self.decode_from(input, &mut at, out);
        input.advance(at);
        result
    }

    fn decode_from(
        &mut self,
        input: &[u8],
        at: &mut usize,
        out: &mut BytesMut,
    ) -> Result<bool, HttpError> {
        while *at < input.len() {
            if let State::Data(remaining) = self.state {
                let take = remaining.min((input.len() - *at) as u64) as usize;
                out.extend_from_slice(&input[*at..*at + take]);
                *at += take;
                let remaining = remaining - take as u64;
                self.state = if remaining == 0 {
                    State::DataCr
                } else {
                    State::Data(remaining)
                };
                continue;
            }
            let b = input[*at];
            *at += 1;
            if matches!(
                self.state,
                State::ExtBws
                    | State::ExtNameStart
                    | State::ExtName
                    | State::ExtAfterName
                    | State::ExtValueStart
                    | State::ExtToken
                    | State::ExtQuoted
                    | State::ExtQuotedPair
                    | State::ExtAfterQuoted
            ) {
                self.extension_bytes += 1;
                if self.extension_bytes > MAX_EXTENSION_BYTES {
                    return Err(bad("the chunk extensions are too long"));
                }
            }
            self.state = match (self.state, b) {
                (State::Size, b) if b.is_ascii_hexdigit() => {
                    self.digits += 1;
                    if self.digits > 16 {
                        return Err(bad("a chunk size has more than 16 hex digits"));
                    }
                    let digit = (b as char).to_digit(16).unwrap_or_default();
                    self.size = (self.size << 4) | u64::from(digit);
                    State::Size
                }
                (State::Size, _) if self.digits == 0 => {
                    return Err(bad("a chunk size must be hex digits"));
                }
                (State::Size, b'\r') => State::SizeLf,
                (State::Size, b';') => State::ExtNameStart,
                (State::Size, b) if is_ws(b) => State::ExtBws,
                (State::Size, _) => return Err(bad("a chunk size must be hex digits")),
                (State::ExtBws, b) if is_ws(b) => State::ExtBws,
                (State::ExtBws, b';') => State::ExtNameStart,
                (State::ExtNameStart, b) if is_ws(b) => State::ExtNameStart,
                (State::ExtNameStart | State::ExtName, b) if is_tchar(b) => State::ExtName,
                (State::ExtName, b';') => State::ExtNameStart,
                (State::ExtName, b'=') => State::ExtValueStart,
                (State::ExtName | State::ExtToken | State::ExtAfterQuoted, b'\r') => State::SizeLf,
                (State::ExtName | State::ExtAfterName, b) if is_ws(b) => State::ExtAfterName,
                (State::ExtAfterName, b'=') => State::ExtValueStart,
                (State::ExtAfterName | State::ExtToken | State::ExtAfterQuoted, b';') => {
                    State::ExtNameStart
                }
                (State::ExtValueStart, b) if is_ws(b) => State::ExtValueStart,
                (State::ExtValueStart, b'"') => State::ExtQuoted,
                (State::ExtValueStart | State::ExtToken, b) if is_tchar(b) => State::ExtToken,
                (State::ExtToken | State::ExtAfterQuoted, b) if is_ws(b) => State::ExtBws,
                (State::ExtQuoted, b'"') => State::ExtAfterQuoted,
                (State::ExtQuoted, b'\\') => State::ExtQuotedPair,
                (State::ExtQuoted, b) if is_qdtext(b) => State::ExtQuoted,
                (State::ExtQuotedPair, b)
                    if b == b'\t' || (0x20..=0x7e).contains(&b) || b >= 0x80 =>
                {
                    State::ExtQuoted
                }
                (State::SizeLf, b'\n') => {
                    let size = std::mem::take(&mut self.size);
                    self.digits = 0;
                    if size == 0 {
                        State::Trailer
                    } else {
                        if size > self.limit - self.total {
                            return Err(HttpError::BodyTooLarge { limit: self.limit });
                        }
                        self.total += size;
                        State::Data(size)
                    }
                }
                (State::DataCr, b'\r') => State::DataLf,
                (State::DataLf, b'\n') => State::Size,
                (State::Trailer, b'\r') => State::TrailerLf,
                (State::Trailer, _) => {
                    return Err(bad("trailer fields are not accepted"));
                }
                (State::TrailerLf, b'\n') => {
                    self.state = State::Done;
                    return Ok(true);
                }
                (State::Done, _) => {
                    *at -= 1;
                    return Ok(true);
                }
                (State::DataCr | State::DataLf, _) => {
                    return Err(bad("a chunk must end in CRLF right after its data"));
                }
                (State::SizeLf | State::TrailerLf, _) => {
                    return Err(bad("every line of a chunked body must end in CRLF"));
                }
                _ => return Err(bad("a chunk extension is malformed")),
            };
        }
        Ok(self.state == State::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The body and what is left after it, or the status of the refusal
    /// (0: incomplete).
    type Outcome = Result<(Vec<u8>, Vec<u8>), u16>;

    /// Decodes `input` at once and one byte at a time; both must agree.
    fn decode(input: &[u8], limit: u64) -> Outcome {
        let whole = {
            let mut decoder = ChunkedDecoder::new(limit);
            let mut buf = BytesMut::from(input);
            let mut out = BytesMut::new();
            match decoder.decode(&mut buf, &mut out) {
                Ok(true) => Ok((out.to_vec(), buf.to_vec())),
                Ok(false) => Err(0),
                Err(err) => Err(err.status().as_u16()),
            }
        };
        let mut decoder = ChunkedDecoder::new(limit);
        let mut buf = BytesMut::new();
        let mut out = BytesMut::new();
        let mut by_byte = Err(0);
        for (i, &b) in input.iter().enumerate() {
            buf.extend_from_slice(&[b]);
            match decoder.decode(&mut buf, &mut out) {
                Ok(true) => {
                    buf.extend_from_slice(&input[i + 1..]);
                    by_byte = Ok((out.to_vec(), buf.to_vec()));
                    break;
                }
                Ok(false) => {}
                Err(err) => {
                    by_byte = Err(err.status().as_u16());
                    break;
                }
            }
        }
        assert_eq!(whole, by_byte, "{:?}", String::from_utf8_lossy(input));
        whole
    }

    #[test]
    fn chunked_bodies_in_and_outcomes_out() {
        let ok = |body: &str| -> Outcome { Ok((body.into(), Vec::new())) };
        let cases: &[(&str, Outcome)] = &[
            ("0\r\n\r\n", ok("")),
            ("5\r\nhello\r\n0\r\n\r\n", ok("hello")),
            ("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", ok("hello world")),
            ("A\r\n0123456789\r\n0\r\n\r\n", ok("0123456789")),
            ("a\r\n0123456789\r\n0\r\n\r\n", ok("0123456789")),
            ("0000000000000005\r\nhello\r\n0\r\n\r\n", ok("hello")),
            ("00000000000000005\r\nhello\r\n0\r\n\r\n", Err(400)),
            ("10000000000000000\r\n", Err(400)),
            ("5;a=b\r\nhello\r\n0\r\n\r\n", ok("hello")),
            ("5 ; a = b ; c\r\nhello\r\n0;x\r\n\r\n", ok("hello")),
            ("5;a=\"q \\\" ;\"\r\nhello\r\n0\r\n\r\n", ok("hello")),
            ("5;a=\"unterminated\r\nhello\r\n0\r\n\r\n", Err(400)),
            ("5;\r\nhello\r\n0\r\n\r\n", Err(400)),
            ("5;a=\r\nhello\r\n0\r\n\r\n", Err(400)),
            ("5;a b\r\nhello\r\n0\r\n\r\n", Err(400)),
            ("5;a=b c\r\nhello\r\n0\r\n\r\n", Err(400)),
            ("5;a\nhello\r\n0\r\n\r\n", Err(400)),
            ("5 \r\nhello\r\n0\r\n\r\n", Err(400)),
            (" 5\r\nhello\r\n0\r\n\r\n", Err(400)),
            ("zz\r\nhello\r\n0\r\n\r\n", Err(400)),
            ("\r\n", Err(400)),
            ("0x5\r\nhello\r\n0\r\n\r\n", Err(400)),
            ("+5\r\nhello\r\n0\r\n\r\n", Err(400)),
            ("5\nhello\r\n0\r\n\r\n", Err(400)),
            ("5\rhello\r\n0\r\n\r\n", Err(400)),
            ("5\r\nhello\n0\r\n\r\n", Err(400)),
            ("5\r\nhelloX\r\n0\r\n\r\n", Err(400)),
            ("5\r\nhello\r\n0\r\n\n", Err(400)),
            ("5\r\nhello\r\n0\n\r\n", Err(400)),
            ("5\r\nhello\r\n0\r\nX-Trailer: 1\r\n\r\n", Err(400)),
            ("5\r\nhello\r\n0\r\n", Err(0)),
            ("5\r\nhel", Err(0)),
            ("11\r\n0123456789abcdefg\r\n0\r\n\r\n", Err(413)),
            (
                "10\r\n0123456789abcdef\r\n0\r\n\r\n",
                ok("0123456789abcdef"),
            ),
            ("8\r\n01234567\r\n9\r\n012345678\r\n0\r\n\r\n", Err(413)),
            ("ffffffffffffffff\r\n", Err(413)),
        ];
        for (input, expected) in cases {
            assert_eq!(&decode(input.as_bytes(), 16), expected, "{input:?}");
        }
    }

    #[test]
    fn bytes_after_the_body_stay_in_the_buffer() {
        assert_eq!(
            decode(b"3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\n", 100),
            Ok((b"abc".to_vec(), b"GET / HTTP/1.1\r\n".to_vec()))
        );
    }

    #[test]
    fn extensions_are_bounded_per_body() {
        let mut input = Vec::new();
        for _ in 0..(MAX_EXTENSION_BYTES / 1000 + 1) {
            input.extend_from_slice(format!("1;x={}\r\na\r\n", "v".repeat(1000)).as_bytes());
        }
        input.extend_from_slice(b"0\r\n\r\n");
        assert_eq!(decode(&input, 1 << 20), Err(400));
    }
}
