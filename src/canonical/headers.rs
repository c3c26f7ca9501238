//! The request headers the gateway judges, in one unambiguous form:
//!
//! * `Host`: exactly one on HTTP/1.1 (at most one on HTTP/1.0), a valid
//!   `host[:port]`; on HTTP/2 the `:authority`, which a `Host` header must
//!   then repeat. The upstream builds URLs from it (it is forwarded as
//!   `X-Forwarded-Host`), so a malformed or doubled one is refused.
//! * `Connection` may not name an end-to-end header the gateway judges or
//!   sets (`Content-Type`, `Content-Length`, `Content-Encoding`, `Host`,
//!   `Authorization`, …): a proxy removes what `Connection` names, and
//!   `Connection: Content-Type` would make the upstream read the judged JSON
//!   body as a form.
//! * A body is judged as JSON, so it must say so: `Content-Type` exactly once,
//!   `application/json` or `application/vnd.api+json` (parameter `charset`
//!   only, `utf-8`), and no `Content-Encoding`. Rack reads a body without a
//!   content type, or with a form type, as a form — where `_method` changes
//!   the method the upstream runs — so such bodies are refused (415).

use crate::config::AllowedHosts;
use http::header::{self, HeaderMap};
use http::{uri::Authority, Version};

/// Why the headers were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("the request has no Host header; HTTP/1.1 requires one")]
    MissingHost,
    #[error("the request has more than one Host header")]
    DuplicateHost,
    #[error("the Host header `{0}` is not a valid host[:port]")]
    BadHost(String),
    #[error("the Host header does not match the request's authority")]
    HostMismatch,
    #[error("`{0}` is not a host this gateway serves (allowed_hosts)")]
    HostNotAllowed(String),
    #[error("the Connection header names `{0}`, an end-to-end header the gateway judges; remove it from Connection")]
    ConnectionNamesEndToEnd(String),
    #[error("the request has more than one {0} header")]
    Duplicate(&'static str),
    /// 415.
    #[error("a request body must be JSON: send `Content-Type: application/vnd.api+json` (or application/json){0}")]
    NotJson(String),
    /// 415.
    #[error("the request body is encoded (`Content-Encoding: {0}`); send it unencoded")]
    Encoded(String),
}

impl HeaderError {
    /// True for the refusals that are about the body's media type (415).
    pub fn is_media_type(&self) -> bool {
        matches!(self, HeaderError::NotJson(_) | HeaderError::Encoded(_))
    }
}

/// End-to-end headers that `Connection` may not remove.
const PROTECTED: [&str; 10] = [
    "content-type",
    "content-length",
    "content-encoding",
    "content-range",
    "host",
    "authorization",
    "cookie",
    "accept",
    "date",
    "expect",
];

/// The request's host (`host[:port]`), checked; `None` for an HTTP/1.0
/// request without one.
pub fn check_host(
    headers: &HeaderMap,
    uri_authority: Option<&Authority>,
    version: Version,
) -> Result<Option<String>, HeaderError> {
    let mut values = headers.get_all(header::HOST).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(HeaderError::DuplicateHost);
    }
    let from_header = first
        .map(|value| {
            let text = value.to_str().map_err(|_| {
                HeaderError::BadHost(String::from_utf8_lossy(value.as_bytes()).into())
            })?;
            if is_valid_host(text) {
                Ok(text.to_owned())
            } else {
                Err(HeaderError::BadHost(text.to_owned()))
            }
        })
        .transpose()?;
    match (uri_authority, from_header) {
        (Some(authority), header) => {
            let authority = authority.as_str();
            if !is_valid_host(authority) {
                return Err(HeaderError::BadHost(authority.to_owned()));
            }
            if header.is_some_and(|h| !h.eq_ignore_ascii_case(authority)) {
                return Err(HeaderError::HostMismatch);
            }
            Ok(Some(authority.to_owned()))
        }
        (None, Some(host)) => Ok(Some(host)),
        (None, None) if version == Version::HTTP_10 || version == Version::HTTP_09 => Ok(None),
        (None, None) => Err(HeaderError::MissingHost),
    }
}

/// Refuses a checked `host` that `allowed` (`allowed_hosts`) does not
/// allow, so that no other name reaches the upstream as `X-Forwarded-Host`.
pub fn check_allowed_host(allowed: &AllowedHosts, host: Option<&str>) -> Result<(), HeaderError> {
    match host {
        Some(host) if !allowed.allows(host) => Err(HeaderError::HostNotAllowed(host.to_owned())),
        _ => Ok(()),
    }
}

/// `host[:port]` where host is a DNS name, an IPv4 address or a bracketed
/// IPv6 address and port is 1..=65535.
pub fn is_valid_host(text: &str) -> bool {
    if text.is_empty() || text.len() > 261 {
        return false;
    }
    let (host_ok, port) = if let Some(rest) = text.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return false;
        };
        let port = match after {
            "" => None,
            _ => match after.strip_prefix(':') {
                Some(port) => Some(port),
                None => return false,
            },
        };
        (v6.parse::<std::net::Ipv6Addr>().is_ok(), port)
    } else {
        let (host, port) = match text.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        };
        (is_dns_name(host), port)
    };
    host_ok && port.is_none_or(is_valid_port)
}

/// Dot-separated labels of letters, digits, `-` and `_` (an IPv4 address is one).
fn is_dns_name(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.as_bytes().split(|&b| b == b'.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .iter()
                    .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

fn is_valid_port(port: &str) -> bool {
    !port.is_empty()
        && port.len() <= 5
        && port.bytes().all(|b| b.is_ascii_digit())
        && port.parse::<u32>().is_ok_and(|n| (1..=65535).contains(&n))
}

/// Refuses a `Connection` header that names a protected end-to-end header.
pub fn check_connection(headers: &HeaderMap) -> Result<(), HeaderError> {
    for value in headers.get_all(header::CONNECTION) {
        for item in value.as_bytes().split(|&b| b == b',') {
            let name = String::from_utf8_lossy(item.trim_ascii()).to_ascii_lowercase();
            let name = name.replace('_', "-");
            if PROTECTED.contains(&name.as_str()) {
                return Err(HeaderError::ConnectionNamesEndToEnd(name));
            }
        }
    }
    Ok(())
}

/// Checks the content headers of a request that has a body: one JSON
/// content type, no content coding.
pub fn check_body_headers(headers: &HeaderMap) -> Result<(), HeaderError> {
    for (name, label) in [
        (header::CONTENT_TYPE, "Content-Type"),
        (header::CONTENT_ENCODING, "Content-Encoding"),
    ] {
        if headers.get_all(&name).iter().count() > 1 {
            return Err(HeaderError::Duplicate(label));
        }
    }
    if let Some(coding) = headers.get(header::CONTENT_ENCODING) {
        let coding = String::from_utf8_lossy(coding.as_bytes()).trim().to_owned();
        if !coding.eq_ignore_ascii_case("identity") {
            return Err(HeaderError::Encoded(coding));
        }
    }
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Err(HeaderError::NotJson(
            ", and this one has no content type".into(),
        ));
    };
    let text = String::from_utf8_lossy(value.as_bytes()).to_ascii_lowercase();
    let mut parts = text.split(';');
    let essence = parts.next().unwrap_or_default().trim();
    if essence != "application/json" && essence != "application/vnd.api+json" {
        return Err(HeaderError::NotJson(format!(", not `{essence}`")));
    }
    for parameter in parts {
        let parameter: String = parameter.chars().filter(|c| !c.is_whitespace()).collect();
        if parameter != "charset=utf-8" && parameter != "charset=\"utf-8\"" {
            return Err(HeaderError::NotJson(format!(
                " with no parameter but charset=utf-8, not `{parameter}`"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use http::HeaderValue;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    #[test]
    fn hosts_are_checked() {
        for good in [
            "example.com",
            "api.example.com:8443",
            "127.0.0.1",
            "127.0.0.1:8080",
            "[::1]",
            "[::1]:8080",
            "localhost",
            "tfe_internal",
        ] {
            assert!(is_valid_host(good), "{good}");
        }
        for bad in [
            "",
            "a b",
            "example.com:",
            "example.com:0",
            "example.com:65536",
            "example.com:80:80",
            "ex..ample",
            "[::1",
            "[nope]",
            "user@host",
            "host/path",
            "host%20",
            ".",
        ] {
            assert!(!is_valid_host(bad), "{bad}");
        }
        let one = headers(&[("host", "a.example")]);
        assert_eq!(
            check_host(&one, None, Version::HTTP_11),
            Ok(Some("a.example".into()))
        );
        let two = headers(&[("host", "a.example"), ("host", "b.example")]);
        assert_eq!(
            check_host(&two, None, Version::HTTP_11),
            Err(HeaderError::DuplicateHost)
        );
        assert_eq!(
            check_host(&HeaderMap::new(), None, Version::HTTP_11),
            Err(HeaderError::MissingHost)
        );
        assert_eq!(
            check_host(&HeaderMap::new(), None, Version::HTTP_10),
            Ok(None)
        );
        let authority: Authority = "a.example".parse().unwrap();
        assert_eq!(
            check_host(
                &headers(&[("host", "b.example")]),
                Some(&authority),
                Version::HTTP_2
            ),
            Err(HeaderError::HostMismatch)
        );
    }

    #[test]
    fn connection_cannot_remove_judged_headers() {
        for name in [
            "Content-Type",
            "content-length",
            "Host",
            "authorization",
            "Content_Type",
        ] {
            let map = headers(&[("connection", &format!("keep-alive, {name}"))]);
            assert!(check_connection(&map).is_err(), "{name}");
        }
        let map = headers(&[("connection", "close, x-custom, upgrade, te")]);
        assert_eq!(check_connection(&map), Ok(()));
    }

    #[test]
    fn bodies_must_be_json_and_unencoded() {
        for good in [
            "application/vnd.api+json",
            "application/json",
            "Application/JSON; charset=UTF-8",
            "application/json;charset=\"utf-8\"",
        ] {
            assert_eq!(
                check_body_headers(&headers(&[("content-type", good)])),
                Ok(()),
                "{good}"
            );
        }
        for bad in [
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "text/plain",
            "application/json; charset=latin1",
            "application/json-patch+json",
        ] {
            let err = check_body_headers(&headers(&[("content-type", bad)])).unwrap_err();
            assert!(err.is_media_type(), "{bad}: {err}");
        }
        assert!(check_body_headers(&HeaderMap::new())
            .unwrap_err()
            .is_media_type());
        let gzip = headers(&[
            ("content-type", "application/json"),
            ("content-encoding", "gzip"),
        ]);
        assert_eq!(
            check_body_headers(&gzip),
            Err(HeaderError::Encoded("gzip".into()))
        );
        let two = headers(&[
            ("content-type", "application/json"),
            ("content-type", "application/x-www-form-urlencoded"),
        ]);
        assert_eq!(
            check_body_headers(&two),
            Err(HeaderError::Duplicate("Content-Type"))
        );
    }
}
