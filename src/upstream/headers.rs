//! The headers of a forwarded request and of the response that comes back.
//!
//! Request headers: hop-by-hop headers (RFC 9110 §7.6.1, and every header
//! named in `Connection`) are removed; so is every client-supplied header
//! whose name starts with `X-Tokengate-` in any spelling (`_` for `-`), the
//! client's `Authorization` (unless configured), client-supplied
//! forwarding headers, and method-override headers (`X-HTTP-Method-Override`
//! and kin, in any spelling), which frameworks such as Rails honour and
//! which would make the upstream run a method the policy never judged.
//! Then `Host`, `X-Forwarded-*` and the identity headers are set by the
//! gateway.

use crate::auth::Principal;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use std::net::SocketAddr;

/// Headers that describe one connection, never the message (RFC 9110 §7.6.1),
/// plus `expect`, which the gateway has already answered.
const HOP_BY_HOP: [&str; 10] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "expect",
];

/// Forwarding and client-address headers a client must not be able to set
/// for us, besides every `X-Forwarded-…` header (see
/// [`is_client_forwarding_header`]): Rails's `remote_ip` reads `Client-IP`,
/// and CDNs and frameworks read the others.
const CLIENT_FORWARDING: [&str; 14] = [
    "forwarded",
    "x-real-ip",
    "client-ip",
    "true-client-ip",
    "cf-connecting-ip",
    "x-client-ip",
    "x-cluster-client-ip",
    "fastly-client-ip",
    "x-original-forwarded-for",
    "x-originating-ip",
    "x-remote-ip",
    "x-remote-addr",
    "forwarded-for",
    "x-original-host",
];

/// Headers that ask a framework to treat the request as another method.
const METHOD_OVERRIDE: [&str; 3] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// True when `name` starts with `prefix` in some spelling: any case, and
/// `_` for `-`. Rack, WSGI and PHP read `X_Real_IP` as `X-Real-IP` (both
/// become `HTTP_X_REAL_IP`), so every spelling must be treated alike.
fn starts_like(name: &str, prefix: &str) -> bool {
    name.len() >= prefix.len()
        && name
            .bytes()
            .zip(prefix.bytes())
            .all(|(a, b)| a.to_ascii_lowercase() == b || (b == b'-' && a == b'_'))
}

/// True when `name` is `known` in some spelling (see [`starts_like`]).
fn same_header(name: &str, known: &str) -> bool {
    name.len() == known.len() && starts_like(name, known)
}

/// True for every spelling of a method-override header name.
pub fn is_method_override_header(name: &str) -> bool {
    METHOD_OVERRIDE.iter().any(|known| same_header(name, known))
}

/// True for every spelling of an `X-Tokengate-…` header name.
pub fn is_tokengate_header(name: &str) -> bool {
    starts_like(name, "x-tokengate-")
}

/// True for every spelling of `Forwarded`, `X-Real-IP`, `Client-IP` and the
/// other client-address headers, and any `X-Forwarded-…` header (`-For`,
/// `-Host`, `-Proto`, `-Port`, `-Prefix`, `-Ssl`, …: frameworks use them to
/// decide the scheme, build URLs and tell the client's address).
pub fn is_client_forwarding_header(name: &str) -> bool {
    starts_like(name, "x-forwarded-") || CLIENT_FORWARDING.iter().any(|k| same_header(name, k))
}

/// True for every spelling of a hop-by-hop header name.
fn is_hop_by_hop_header(name: &str) -> bool {
    HOP_BY_HOP.iter().any(|known| same_header(name, known))
}

/// Removes hop-by-hop headers, including those the `Connection` header names.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    remove_where(headers, |name| is_hop_by_hop_header(name.as_str()));
}

/// Removes every header the `Connection` header names, then every header
/// that `strip` selects. The names listed in `Connection` cost one lookup
/// each (a hostile list can be long); `strip` is asked once per name present
/// (a request has a handful), not once per name that might be there.
fn remove_where(headers: &mut HeaderMap, strip: impl Fn(&HeaderName) -> bool) {
    let connection: Vec<HeaderValue> = headers
        .get_all(header::CONNECTION)
        .iter()
        .cloned()
        .collect();
    for value in &connection {
        // Split the bytes: one odd byte elsewhere in the value must not
        // keep the names around it.
        for item in value.as_bytes().split(|&b| b == b',') {
            if let Ok(name) = std::str::from_utf8(item.trim_ascii()) {
                // An invalid name matches nothing.
                headers.remove(name);
            }
        }
    }
    let doomed: Vec<HeaderName> = headers.keys().filter(|name| strip(name)).cloned().collect();
    for name in &doomed {
        headers.remove(name);
    }
}

/// Header names set on every forwarded request (parsed once, at compile time).
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_TOKENGATE_KIND: HeaderName = HeaderName::from_static("x-tokengate-kind");
const X_TOKENGATE_ORG: HeaderName = HeaderName::from_static("x-tokengate-org");
const X_TOKENGATE_TEAM: HeaderName = HeaderName::from_static("x-tokengate-team");
const X_TOKENGATE_USER: HeaderName = HeaderName::from_static("x-tokengate-user");
const X_TOKENGATE_TOKEN_ID: HeaderName = HeaderName::from_static("x-tokengate-token-id");

/// The scheme of the client's connection to the gateway, sent upstream as
/// `X-Forwarded-Proto`. The listener marks each request it reads with it (a
/// request extension: `request.extensions_mut().insert(ClientProto::Https)`
/// on a TLS connection); a request without the mark came over plain HTTP.
/// A client's own `X-Forwarded-Proto` header is never believed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ClientProto {
    #[default]
    Http,
    Https,
}

impl ClientProto {
    /// The scheme of `request`, as the listener marked it.
    pub fn of(extensions: &http::Extensions) -> ClientProto {
        extensions.get::<ClientProto>().copied().unwrap_or_default()
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ClientProto::Http => "http",
            ClientProto::Https => "https",
        }
    }
}

/// Everything the request headers need to be rewritten.
pub struct ForwardContext<'a> {
    pub principal: Option<&'a Principal>,
    pub client_addr: SocketAddr,
    pub forward_authorization: bool,
    /// The host the client asked for (checked), sent as `X-Forwarded-Host`.
    pub client_host: Option<&'a str>,
    /// The client connection's scheme, sent as `X-Forwarded-Proto`.
    pub client_proto: ClientProto,
}

/// Rewrites the request headers for the upstream (see the module docs).
pub fn rewrite_request_headers(
    headers: &mut HeaderMap,
    ctx: &ForwardContext<'_>,
    upstream_host: &HeaderValue,
) {
    headers.remove(header::HOST);
    remove_where(headers, |name| {
        let name = name.as_str();
        is_hop_by_hop_header(name)
            || is_client_forwarding_header(name)
            || is_tokengate_header(name)
            || is_method_override_header(name)
            || (!ctx.forward_authorization && name == "authorization")
    });
    if let Some(host) = ctx.client_host.and_then(|h| HeaderValue::from_str(h).ok()) {
        headers.insert(X_FORWARDED_HOST, host);
    }
    headers.insert(header::HOST, upstream_host.clone());
    if let Ok(ip) = HeaderValue::from_str(&ctx.client_addr.ip().to_string()) {
        headers.insert(X_FORWARDED_FOR, ip);
    }
    headers.insert(
        X_FORWARDED_PROTO,
        HeaderValue::from_static(ctx.client_proto.as_str()),
    );
    if let Some(principal) = ctx.principal {
        let mut set = |name: HeaderName, value: &str| {
            if let Ok(value) = HeaderValue::from_str(value) {
                headers.insert(name, value);
            }
        };
        set(X_TOKENGATE_KIND, principal.kind.as_str());
        set(X_TOKENGATE_ORG, &principal.org);
        if let Some(team) = &principal.team_id {
            set(X_TOKENGATE_TEAM, team);
        }
        if let Some(user) = &principal.user_id {
            set(X_TOKENGATE_USER, user);
        }
        set(X_TOKENGATE_TOKEN_ID, &principal.token_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_of_the_identity_prefix_is_recognised() {
        for name in [
            "x-tokengate-kind",
            "X-TOKENGATE-ORG",
            "x_tokengate_team",
            "X-Tokengate_user",
            "x-tokengate-",
        ] {
            assert!(is_tokengate_header(name), "{name}");
        }
        for name in [
            "x-tokengatekind",
            "x-token-gate-kind",
            "tokengate-kind",
            "x-tokengat",
        ] {
            assert!(!is_tokengate_header(name), "{name}");
        }
    }

    #[test]
    fn every_spelling_of_a_method_override_is_recognised() {
        for name in [
            "x-http-method-override",
            "X_HTTP_METHOD_OVERRIDE",
            "x-http-method",
            "x-method-override",
        ] {
            assert!(is_method_override_header(name), "{name}");
        }
        for name in ["x-http-methods", "x-method", "method"] {
            assert!(!is_method_override_header(name), "{name}");
        }
    }

    #[test]
    fn headers_named_in_connection_are_removed() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        headers.insert("x-secret", HeaderValue::from_static("1"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert("x-kept", HeaderValue::from_static("1"));
        remove_hop_by_hop(&mut headers);
        assert!(headers.get("x-secret").is_none());
        assert!(headers.get("keep-alive").is_none());
        assert!(headers.get(header::CONNECTION).is_none());
        assert_eq!(headers["x-kept"], "1");
    }
}

#[cfg(test)]
mod hostile_header_tests {
    use super::*;

    /// A hostile request: ~98 headers and a 62 KiB `Connection` list.
    fn worst_case() -> HeaderMap {
        let mut headers = HeaderMap::new();
        for i in 0..98 {
            headers.insert(
                HeaderName::from_bytes(format!("x-h{i:02}").as_bytes()).unwrap(),
                HeaderValue::from_static("1"),
            );
        }
        headers.insert("a", HeaderValue::from_static("1"));
        let mut connection = String::new();
        while connection.len() < 62 * 1024 {
            connection.push_str("a,");
        }
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_str(&connection).unwrap(),
        );
        headers
    }

    /// A one-pass version that compared every header present with every
    /// name listed in `Connection` made ~3 million comparisons for this
    /// request. Each listed name is one lookup; the cost is measured in
    /// `benches/hot_path.rs` (`strip_headers_hostile_connection`), not here.
    #[test]
    fn a_long_connection_list_removes_what_it_names_and_keeps_the_rest() {
        let mut headers = worst_case();
        remove_hop_by_hop(&mut headers);
        assert!(headers.get("a").is_none());
        assert!(headers.get(header::CONNECTION).is_none());
        assert_eq!(headers.len(), 98);
    }
}
