//! The headers of a forwarded request and of the response that comes back.
//!
//! Request headers: hop-by-hop headers (RFC 9110 §7.6.1, and every header
//! named in `Connection`) are removed; so is every header whose name holds
//! an underscore, as nginx drops them by default: Rack servers (Unicorn,
//! Thin, Puma before 6.4.3) file `Content_Type` and `Content-Type` under the
//! same `CONTENT_TYPE`, so a `Content_Type` beside the judged
//! `Content-Type` would make the upstream read a JSON body as a form. Also
//! removed: every client-supplied header
//! whose name starts with `X-Tokengate-` in any spelling (`_` for `-`), the
//! client's `Authorization` (unless configured), client-supplied
//! forwarding headers, and method-override headers (`X-HTTP-Method-Override`
//! and kin, in any spelling), which frameworks such as Rails honour and
//! which would make the upstream run a method the policy never judged, and
//! path and file overrides (`X-Original-URL`, `X-Sendfile-Type`, …).
//! Then `Host`, `X-Forwarded-*` and the identity headers are set by the
//! gateway; the values that stay the same from one request of a client
//! connection to the next are built once per connection
//! ([`ConnectionHeaderValues`]).
//!
//! W3C Trace Context (`traceparent`, `tracestate`): [`propagate_trace_context`]
//! sends the gateway's own forward span as the parent when spans are on; when
//! they are off, a client's well-formed `traceparent` passes unchanged. A
//! malformed one is never forwarded (nor the `tracestate` that goes with it).

use crate::auth::Principal;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use std::net::{IpAddr, SocketAddr};

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

/// Headers that tell a framework or a server behind it which path a
/// request really is for, or which file to send: `Rack::Sendfile` (before
/// CVE-2025-61780's fix) takes `X-Sendfile-Type` and `X-Accel-Mapping` from
/// the client, and IIS, Symfony and prefix middlewares route by the others.
/// The gateway judged the request's own path; none of them is forwarded.
const ROUTING_OVERRIDE: [&str; 6] = [
    "x-sendfile-type",
    "x-accel-mapping",
    "x-original-url",
    "x-rewrite-url",
    "x-script-name",
    "x-original-uri",
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

/// True for every spelling of a method-override header name, and of the
/// path and file overrides ([`ROUTING_OVERRIDE`]).
pub fn is_method_override_header(name: &str) -> bool {
    METHOD_OVERRIDE
        .iter()
        .chain(&ROUTING_OVERRIDE)
        .any(|known| same_header(name, known))
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
    // The names to remove, in the map's order; the first few on the stack
    // (a request usually has one or two: no allocation).
    let mut few: [Option<HeaderName>; 8] = Default::default();
    let mut more: Vec<HeaderName> = Vec::new();
    for (i, name) in headers.keys().filter(|name| strip(name)).enumerate() {
        match few.get_mut(i) {
            Some(slot) => *slot = Some(name.clone()),
            None => more.push(name.clone()),
        }
    }
    for name in few.iter().flatten().chain(&more) {
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
#[derive(Debug)]
pub struct ForwardContext<'a> {
    pub principal: Option<&'a Principal>,
    pub client_addr: SocketAddr,
    pub forward_authorization: bool,
    /// The host the client asked for (checked), sent as `X-Forwarded-Host`.
    pub client_host: Option<&'a str>,
    /// The client connection's scheme, sent as `X-Forwarded-Proto`.
    pub client_proto: ClientProto,
}

/// The most headers [`rewrite_request_headers`] adds: `Host`, three
/// `X-Forwarded-…` and five `X-Tokengate-…`.
const ADDED_HEADERS: usize = 9;

/// The header values one client connection sends with every request it
/// forwards: its address (`X-Forwarded-For`), the host it asks for, and its
/// principal's identity. A keep-alive connection sends the same ones again
/// and again, so each is built once (`HeaderValue::from_str`: a check and a
/// copy) and cloned after (a reference count), for as long as the text it
/// was built from stays the same; a different text builds it anew. Kept by
/// the client connection's [`UpstreamLease`](super::UpstreamLease).
#[derive(Debug, Default)]
pub struct ConnectionHeaderValues {
    client_ip: Option<(IpAddr, HeaderValue)>,
    client_host: ValueSlot,
    org: ValueSlot,
    team: ValueSlot,
    user: ValueSlot,
    token_id: ValueSlot,
}

impl ConnectionHeaderValues {
    /// `X-Forwarded-For`: the client's address, formatted once.
    fn client_ip(&mut self, ip: IpAddr) -> Option<HeaderValue> {
        match &self.client_ip {
            Some((cached, value)) if *cached == ip => Some(value.clone()),
            _ => {
                let value = HeaderValue::from_str(&ip.to_string()).ok()?;
                self.client_ip = Some((ip, value.clone()));
                Some(value)
            }
        }
    }
}

/// One header value and, through its bytes, the text it was built from.
#[derive(Debug, Default)]
struct ValueSlot(Option<HeaderValue>);

impl ValueSlot {
    /// `HeaderValue::from_str(text).ok()`, built again only when `text`
    /// differs from the last valid one. A text that is not a valid header
    /// value gives `None` (and its header is not sent), every time: it is
    /// never kept, and its check allocates nothing.
    fn value(&mut self, text: &str) -> Option<HeaderValue> {
        match &self.0 {
            Some(value) if value.as_bytes() == text.as_bytes() => Some(value.clone()),
            _ => {
                let value = HeaderValue::from_str(text).ok()?;
                self.0 = Some(value.clone());
                Some(value)
            }
        }
    }
}

/// Rewrites the request headers for the upstream (see the module docs).
/// `values` are the client connection's (see [`ConnectionHeaderValues`]);
/// what is sent does not depend on what they held before.
pub fn rewrite_request_headers(
    headers: &mut HeaderMap,
    ctx: &ForwardContext<'_>,
    upstream_host: &HeaderValue,
    values: &mut ConnectionHeaderValues,
) {
    // One growth of the map at most (a parsed request's map is sized for
    // its own headers). Past the map's limit the inserts below fail as
    // they always did.
    let _ = headers.try_reserve(ADDED_HEADERS);
    headers.remove(header::HOST);
    remove_where(headers, |name| {
        let name = name.as_str();
        name.contains('_')
            || is_hop_by_hop_header(name)
            || is_client_forwarding_header(name)
            || is_tokengate_header(name)
            || is_method_override_header(name)
            || (!ctx.forward_authorization && name == "authorization")
    });
    // Every name inserted below was removed above (or never there), so
    // each `insert` adds one entry at the end of the map, in this order.
    if let Some(host) = ctx.client_host.and_then(|h| values.client_host.value(h)) {
        headers.insert(X_FORWARDED_HOST, host);
    }
    headers.insert(header::HOST, upstream_host.clone());
    if let Some(ip) = values.client_ip(ctx.client_addr.ip()) {
        headers.insert(X_FORWARDED_FOR, ip);
    }
    headers.insert(
        X_FORWARDED_PROTO,
        HeaderValue::from_static(ctx.client_proto.as_str()),
    );
    if let Some(principal) = ctx.principal {
        headers.insert(
            X_TOKENGATE_KIND,
            HeaderValue::from_static(principal.kind.as_str()),
        );
        if let Some(org) = values.org.value(&principal.org) {
            headers.insert(X_TOKENGATE_ORG, org);
        }
        if let Some(team) = principal
            .team_id
            .as_deref()
            .and_then(|t| values.team.value(t))
        {
            headers.insert(X_TOKENGATE_TEAM, team);
        }
        if let Some(user) = principal
            .user_id
            .as_deref()
            .and_then(|u| values.user.value(u))
        {
            headers.insert(X_TOKENGATE_USER, user);
        }
        if let Some(token_id) = values.token_id.value(&principal.token_id) {
            headers.insert(X_TOKENGATE_TOKEN_ID, token_id);
        }
    }
}

const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// The longest combined `tracestate` forwarded (W3C: at least 512 characters
/// must be propagated; longer ones may be cut, here they are dropped whole).
const MAX_TRACESTATE: usize = 512;

/// A W3C `traceparent` (Trace Context): which trace a request belongs to and
/// which span sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceParent {
    pub trace_id: [u8; 16],
    /// The sender's span id (`parent-id`).
    pub parent_id: [u8; 8],
    /// `trace-flags`; bit 0 is *sampled*.
    pub flags: u8,
}

impl TraceParent {
    /// The *sampled* bit of `trace-flags`.
    pub const SAMPLED: u8 = 0x01;

    /// Parses a `traceparent` value strictly (lowercase hex, no all-zero
    /// ids, version `ff` refused; a later version may append `-…` fields,
    /// which are ignored). `None` when it is malformed.
    pub fn parse(value: &[u8]) -> Option<TraceParent> {
        let value = value.trim_ascii();
        if value.len() < 55 {
            return None;
        }
        let version = hex_byte(&value[0..2])?;
        if version == 0xff
            || (version == 0 && value.len() != 55)
            || (value.len() > 55 && value[55] != b'-')
            || value[2] != b'-'
            || value[35] != b'-'
            || value[52] != b'-'
        {
            return None;
        }
        let mut trace_id = [0u8; 16];
        for (i, byte) in trace_id.iter_mut().enumerate() {
            *byte = hex_byte(&value[3 + 2 * i..5 + 2 * i])?;
        }
        let mut parent_id = [0u8; 8];
        for (i, byte) in parent_id.iter_mut().enumerate() {
            *byte = hex_byte(&value[36 + 2 * i..38 + 2 * i])?;
        }
        let flags = hex_byte(&value[53..55])?;
        if trace_id == [0; 16] || parent_id == [0; 8] {
            return None;
        }
        Some(TraceParent {
            trace_id,
            parent_id,
            flags,
        })
    }

    /// The request's `traceparent`: exactly one header, well-formed.
    pub fn from_headers(headers: &HeaderMap) -> Option<TraceParent> {
        let mut values = headers.get_all(TRACEPARENT).iter();
        let value = values.next()?;
        if values.next().is_some() {
            return None;
        }
        TraceParent::parse(value.as_bytes())
    }

    pub fn sampled(&self) -> bool {
        self.flags & Self::SAMPLED != 0
    }

    /// `00-<trace-id>-<parent-id>-<flags>`, lowercase hex.
    pub fn to_header_value(&self) -> HeaderValue {
        let mut text = [0u8; 55];
        let mut at = 0;
        let mut put = |bytes: &[u8], dash: bool| {
            for byte in bytes {
                text[at] = HEX[usize::from(byte >> 4)];
                text[at + 1] = HEX[usize::from(byte & 0x0f)];
                at += 2;
            }
            if dash {
                text[at] = b'-';
                at += 1;
            }
        };
        put(&[0], true);
        put(&self.trace_id, true);
        put(&self.parent_id, true);
        put(&[self.flags], false);
        HeaderValue::from_bytes(&text).expect("hex digits and dashes are a valid header value")
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Two lowercase hex digits.
fn hex_byte(pair: &[u8]) -> Option<u8> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    Some(digit(pair[0])? << 4 | digit(pair[1])?)
}

/// True when the request's `tracestate` (all its lines together) is a
/// well-formed W3C list of at most 32 members with distinct keys, no longer
/// than [`MAX_TRACESTATE`] bytes.
pub fn tracestate_is_valid(headers: &HeaderMap) -> bool {
    let mut total = 0;
    let mut keys: Vec<&[u8]> = Vec::new();
    for value in headers.get_all(TRACESTATE) {
        total += value.len() + 1;
        if total > MAX_TRACESTATE + 1 {
            return false;
        }
        for member in value.as_bytes().split(|&b| b == b',') {
            let member = member.trim_ascii();
            if member.is_empty() {
                continue;
            }
            let Some(eq) = member.iter().position(|&b| b == b'=') else {
                return false;
            };
            let (key, value) = (&member[..eq], &member[eq + 1..]);
            if !tracestate_key(key) || !tracestate_value(value) || keys.contains(&key) {
                return false;
            }
            keys.push(key);
            if keys.len() > 32 {
                return false;
            }
        }
    }
    true
}

/// `simple-key` or `tenant-id@system-id` (W3C Trace Context §3.3.1.3.1).
fn tracestate_key(key: &[u8]) -> bool {
    let rest = |c: &u8| matches!(c, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'*' | b'/');
    match key.iter().position(|&b| b == b'@') {
        None => {
            (1..=256).contains(&key.len())
                && key[0].is_ascii_lowercase()
                && key[1..].iter().all(rest)
        }
        Some(at) => {
            let (tenant, system) = (&key[..at], &key[at + 1..]);
            (1..=241).contains(&tenant.len())
                && (tenant[0].is_ascii_lowercase() || tenant[0].is_ascii_digit())
                && tenant[1..].iter().all(rest)
                && (1..=14).contains(&system.len())
                && system[0].is_ascii_lowercase()
                && system[1..].iter().all(rest)
        }
    }
}

/// Up to 256 printable ASCII characters except `,` and `=` (the member is
/// trimmed, so it does not end in a space).
fn tracestate_value(value: &[u8]) -> bool {
    (1..=256).contains(&value.len())
        && value
            .iter()
            .all(|&c| matches!(c, 0x20..=0x2b | 0x2d..=0x3c | 0x3e..=0x7e))
}

/// Sets the W3C trace context of a forwarded request. `child` is the
/// gateway's own forward span, when spans are recorded: it becomes the
/// `traceparent`, and the client's `tracestate` goes with it only when the
/// client's `traceparent` was well-formed and of the same trace. Without a
/// `child` the gateway is not part of the trace: a well-formed client
/// `traceparent` passes unchanged. A malformed or repeated `traceparent` is
/// never forwarded, nor a malformed `tracestate`.
pub fn propagate_trace_context(headers: &mut HeaderMap, child: Option<TraceParent>) {
    let received = TraceParent::from_headers(headers);
    let keep_tracestate = match (received, child) {
        (Some(received), Some(child)) => received.trace_id == child.trace_id,
        (Some(_), None) => true,
        (None, _) => false,
    } && tracestate_is_valid(headers);
    if !keep_tracestate {
        headers.remove(TRACESTATE);
    }
    match child {
        Some(child) => {
            headers.insert(TRACEPARENT, child.to_header_value());
        }
        None if received.is_none() => {
            headers.remove(TRACEPARENT);
        }
        None => {}
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
        for name in [
            "X-Sendfile-Type",
            "x-accel-mapping",
            "X-Original-URL",
            "x-rewrite-url",
            "X-Script-Name",
        ] {
            assert!(is_method_override_header(name), "{name}");
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

    /// Rack files `Content_Type` under the judged `Content-Type`'s
    /// `CONTENT_TYPE`: no name with an underscore is forwarded.
    #[test]
    fn headers_with_an_underscore_in_their_name_are_never_forwarded() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("content-type", "application/vnd.api+json"),
            ("content_type", "application/x-www-form-urlencoded"),
            ("Content_Length", "0"),
            ("x_custom", "1"),
            ("x-custom", "2"),
        ] {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_static(value),
            );
        }
        let ctx = ForwardContext {
            principal: None,
            client_addr: "127.0.0.1:1".parse().unwrap(),
            forward_authorization: false,
            client_host: None,
            client_proto: ClientProto::Http,
        };
        rewrite_request_headers(
            &mut headers,
            &ctx,
            &HeaderValue::from_static("upstream.test"),
            &mut ConnectionHeaderValues::default(),
        );
        let names: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        assert!(names.iter().all(|n| !n.contains('_')), "{names:?}");
        assert_eq!(headers[header::CONTENT_TYPE], "application/vnd.api+json");
        assert_eq!(headers["x-custom"], "2");
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

#[cfg(test)]
mod trace_context_tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn with(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        headers
    }

    fn all<'a>(headers: &'a HeaderMap, name: &str) -> Vec<&'a str> {
        headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect()
    }

    #[test]
    fn a_well_formed_traceparent_parses_and_prints_back() {
        let parsed = TraceParent::parse(VALID.as_bytes()).unwrap();
        assert_eq!(parsed.trace_id[0], 0x4b);
        assert_eq!(parsed.parent_id[7], 0xb7);
        assert!(parsed.sampled());
        assert_eq!(parsed.to_header_value(), VALID);
        let unsampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        assert!(!TraceParent::parse(unsampled.as_bytes()).unwrap().sampled());
        // A later version may carry more fields after a dash; they are ignored.
        let future = format!("cc{}-extra", &VALID[2..]);
        assert_eq!(
            TraceParent::parse(future.as_bytes())
                .unwrap()
                .to_header_value(),
            VALID
        );
    }

    #[test]
    fn malformed_traceparents_are_refused() {
        let cases = [
            "",
            &VALID[..54],
            &format!("{VALID}-"),  // version 00 is exactly 55
            &VALID.to_uppercase(), // hex must be lowercase
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", // version ff
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01", // zero trace id
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", // zero parent id
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7_01", // separator
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01", // not hex
            "0x-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", // version not hex
            &format!("cc{}x", &VALID[2..]), // later version, no dash
            "00-4bf92f3577b34da6a3ce929d0e0e4736--0f067aa0ba902b7-01",
        ];
        for case in cases {
            assert_eq!(TraceParent::parse(case.as_bytes()), None, "{case:?}");
        }
        assert!(TraceParent::parse(format!("  {VALID} ").as_bytes()).is_some());
        let twice = with(&[("traceparent", VALID), ("traceparent", VALID)]);
        assert_eq!(TraceParent::from_headers(&twice), None, "repeated");
    }

    #[test]
    fn tracestate_lists_are_checked() {
        for good in [
            "congo=t61rcWkgMzE",
            "rojo=00f067aa0ba902b7, congo=t61rcWkgMzE",
            "a@b=1,,c/d*_-=x y",
            "t0@s=1",
        ] {
            assert!(
                tracestate_is_valid(&with(&[("tracestate", good)])),
                "{good}"
            );
        }
        let many: Vec<String> = (0..33).map(|i| format!("k{i}=v")).collect();
        let long = format!("k={}", "v".repeat(257));
        let too_long: Vec<String> = (0..20)
            .map(|i| format!("key{i}={}", "v".repeat(30)))
            .collect();
        for bad in [
            "congo",
            "Congo=1",
            "1a=1",
            "a=1,a=2",
            "a=b=c",
            "a=",
            "@s=1",
            "t@S=1",
            "t@systemidtoolong=1",
            &many.join(","),
            &long,
            &too_long.join(","),
        ] {
            assert!(!tracestate_is_valid(&with(&[("tracestate", bad)])), "{bad}");
        }
        assert!(!tracestate_is_valid(&with(&[
            ("tracestate", "a=1"),
            ("tracestate", "a=2")
        ])));
    }

    #[test]
    fn without_a_span_a_valid_context_passes_and_a_malformed_one_is_removed() {
        let mut valid = with(&[("traceparent", VALID), ("tracestate", "rojo=1")]);
        propagate_trace_context(&mut valid, None);
        assert_eq!(all(&valid, "traceparent"), [VALID]);
        assert_eq!(all(&valid, "tracestate"), ["rojo=1"]);

        let mut bad_state = with(&[("traceparent", VALID), ("tracestate", "Rojo=1")]);
        propagate_trace_context(&mut bad_state, None);
        assert_eq!(all(&bad_state, "traceparent"), [VALID]);
        assert!(all(&bad_state, "tracestate").is_empty());

        for malformed in [
            with(&[
                ("traceparent", &VALID.to_uppercase()),
                ("tracestate", "rojo=1"),
            ]),
            with(&[("traceparent", VALID), ("traceparent", VALID)]),
            with(&[("tracestate", "rojo=1")]),
        ] {
            let mut headers = malformed;
            propagate_trace_context(&mut headers, None);
            assert!(all(&headers, "traceparent").is_empty(), "{headers:?}");
            assert!(all(&headers, "tracestate").is_empty(), "{headers:?}");
        }
    }

    #[test]
    fn a_gateway_span_becomes_the_parent_and_replaces_any_client_value() {
        let client = TraceParent::parse(VALID.as_bytes()).unwrap();
        let child = TraceParent {
            parent_id: [7; 8],
            ..client
        };
        let mut same_trace = with(&[("traceparent", VALID), ("tracestate", "rojo=1")]);
        propagate_trace_context(&mut same_trace, Some(child));
        assert_eq!(
            all(&same_trace, "traceparent"),
            ["00-4bf92f3577b34da6a3ce929d0e0e4736-0707070707070707-01"]
        );
        assert_eq!(all(&same_trace, "tracestate"), ["rojo=1"]);

        let new_trace = TraceParent {
            trace_id: [9; 16],
            parent_id: [7; 8],
            flags: 0,
        };
        for client_headers in [
            with(&[("traceparent", "garbage"), ("tracestate", "rojo=1")]),
            with(&[("traceparent", VALID), ("tracestate", "rojo=1")]),
            HeaderMap::new(),
        ] {
            let mut headers = client_headers;
            propagate_trace_context(&mut headers, Some(new_trace));
            assert_eq!(
                all(&headers, "traceparent"),
                [new_trace.to_header_value().to_str().unwrap()]
            );
            assert!(all(&headers, "tracestate").is_empty(), "{headers:?}");
        }
    }
}

#[cfg(test)]
mod rewrite_tests {
    use super::*;
    use crate::store::PrincipalKind;

    /// The rewrite as it was before a connection kept its header values
    /// (issue 15): every value built on every request.
    fn reference(headers: &mut HeaderMap, ctx: &ForwardContext<'_>, upstream_host: &HeaderValue) {
        headers.remove(header::HOST);
        reference_remove_where(headers, |name| {
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

    /// `remove_where` as it was: the names to remove collected in a `Vec`.
    fn reference_remove_where(headers: &mut HeaderMap, strip: impl Fn(&HeaderName) -> bool) {
        let connection: Vec<HeaderValue> = headers
            .get_all(header::CONNECTION)
            .iter()
            .cloned()
            .collect();
        for value in &connection {
            for item in value.as_bytes().split(|&b| b == b',') {
                if let Ok(name) = std::str::from_utf8(item.trim_ascii()) {
                    headers.remove(name);
                }
            }
        }
        let doomed: Vec<HeaderName> = headers.keys().filter(|name| strip(name)).cloned().collect();
        for name in &doomed {
            headers.remove(name);
        }
    }

    /// What the upstream is sent, in the order it is sent.
    fn sent(headers: &HeaderMap) -> Vec<(String, Vec<u8>)> {
        headers
            .iter()
            .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
            .collect()
    }

    fn request(pairs: &[(&str, &str)]) -> HeaderMap {
        // Sized like a parsed request's map: the rewrite has to grow it.
        let mut headers = HeaderMap::with_capacity(pairs.len());
        for (name, value) in pairs {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        headers
    }

    fn principal(
        kind: PrincipalKind,
        org: &str,
        team: Option<&str>,
        user: Option<&str>,
        token: &str,
    ) -> Principal {
        Principal {
            kind,
            org: org.into(),
            team_id: team.map(Into::into),
            user_id: user.map(Into::into),
            token_id: token.into(),
        }
    }

    /// One connection's values serve requests whose principal, address
    /// and host change, come back, and are sometimes not valid header
    /// values: every request is sent exactly what the per-request rewrite
    /// sent, same names, values and order.
    #[test]
    fn the_upstream_is_sent_what_it_was_sent_when_every_value_was_built_per_request() {
        let requests = [
            request(&[
                ("host", "gateway.test"),
                ("authorization", "Bearer x"),
                ("accept", "application/vnd.api+json"),
                ("user-agent", "go-tfe"),
            ]),
            request(&[
                ("host", "gateway.test"),
                ("connection", "keep-alive, x-secret"),
                ("x-secret", "1"),
                ("keep-alive", "timeout=5"),
                ("x-forwarded-for", "6.6.6.6"),
                ("X_Real_IP", "6.6.6.6"),
                ("x-tokengate-org", "evil"),
                ("X_TOKENGATE_TEAM", "evil"),
                ("x-http-method-override", "DELETE"),
                ("authorization", "Bearer x"),
                ("forwarded", "for=6.6.6.6"),
                ("te", "trailers"),
                ("x-kept", "1"),
                ("x-kept", "2"),
                ("accept", "*/*"),
            ]),
            request(&[]),
        ];
        let principals = [
            None,
            Some(principal(
                PrincipalKind::Team,
                "acme",
                Some("team-1"),
                None,
                "at-aaaaaaaaaaaaaa",
            )),
            Some(principal(
                PrincipalKind::Team,
                "acme",
                Some("team-2"),
                None,
                "at-bbbbbbbbbbbbbb",
            )),
            Some(principal(
                PrincipalKind::User,
                "acme",
                None,
                Some("user-1"),
                "at-cccccccccccccc",
            )),
            Some(principal(
                PrincipalKind::Org,
                "ac\nme",
                None,
                None,
                "at-dddddddddddddd",
            )),
            Some(principal(
                PrincipalKind::User,
                "other",
                None,
                Some("us\u{7f}er"),
                "at-cccccccccccccc",
            )),
            Some(principal(
                PrincipalKind::Org,
                "acme",
                None,
                None,
                "at-dddddddddddddd",
            )),
        ];
        let addresses: [SocketAddr; 3] = [
            "127.0.0.1:50000".parse().unwrap(),
            "[2001:db8::7]:443".parse().unwrap(),
            "10.0.0.7:1".parse().unwrap(),
        ];
        let hosts = [
            Some("gateway.test"),
            None,
            Some("bad\rhost"),
            Some("other.test:8443"),
        ];
        let upstream_host = HeaderValue::from_static("127.0.0.1:9000");
        let mut values = ConnectionHeaderValues::default();
        let mut compared = 0;
        // The same connection's values throughout; each loop order makes
        // a value change, repeat and come back.
        for round in 0..2 {
            for principal in &principals {
                for address in addresses {
                    for host in hosts {
                        for (i, original) in requests.iter().enumerate() {
                            let ctx = ForwardContext {
                                principal: principal.as_ref(),
                                client_addr: address,
                                forward_authorization: (i + round) % 2 == 0,
                                client_host: host,
                                client_proto: if round == 0 {
                                    ClientProto::Http
                                } else {
                                    ClientProto::Https
                                },
                            };
                            let mut expected = original.clone();
                            reference(&mut expected, &ctx, &upstream_host);
                            let mut headers = original.clone();
                            rewrite_request_headers(
                                &mut headers,
                                &ctx,
                                &upstream_host,
                                &mut values,
                            );
                            assert_eq!(sent(&headers), sent(&expected), "{ctx:?}");
                            compared += 1;
                        }
                    }
                }
            }
        }
        assert_eq!(compared, 2 * 7 * 3 * 4 * 3);
    }

    /// A principal whose text is not a valid header value: that header is
    /// left out (as `HeaderValue::from_str` failing always did), the
    /// others are sent, and a valid value after it is sent again.
    #[test]
    fn a_value_that_is_not_a_header_value_is_left_out_every_time() {
        let upstream_host = HeaderValue::from_static("upstream");
        let mut values = ConnectionHeaderValues::default();
        let good = principal(
            PrincipalKind::Team,
            "acme",
            Some("team-1"),
            None,
            "at-aaaaaaaaaaaaaa",
        );
        let bad = principal(
            PrincipalKind::Team,
            "ac\nme",
            Some("team-1"),
            None,
            "at-aaaaaaaaaaaaaa",
        );
        for (principal, org) in [
            (&good, Some("acme")),
            (&bad, None),
            (&bad, None),
            (&good, Some("acme")),
        ] {
            let mut headers = HeaderMap::new();
            let ctx = ForwardContext {
                principal: Some(principal),
                client_addr: "[::1]:1".parse().unwrap(),
                forward_authorization: false,
                client_host: Some("gateway.test"),
                client_proto: ClientProto::Http,
            };
            rewrite_request_headers(&mut headers, &ctx, &upstream_host, &mut values);
            assert_eq!(
                headers.get("x-tokengate-org").map(|v| v.to_str().unwrap()),
                org
            );
            assert_eq!(headers["x-tokengate-team"], "team-1");
            assert_eq!(headers["x-tokengate-token-id"], "at-aaaaaaaaaaaaaa");
            assert_eq!(headers["x-forwarded-for"], "::1");
            assert_eq!(headers["x-forwarded-host"], "gateway.test");
        }
    }
}
