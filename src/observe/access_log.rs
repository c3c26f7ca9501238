//! The one log line per request (target `tokengate::access`), the shadow
//! rule lines, and the internal cause of a failure, built from the request's
//! [`RequestContext`]. Never a token: only its public id, and any token
//! pasted into a path is redacted.

use super::log_writer;
use crate::config::LogFormat;
use crate::context::{RequestContext, ShadowOutcome};
use http::StatusCode;

/// Replaces the secret of anything shaped like a token (`….atlasv1.<secret>`)
/// so that a token pasted into a URL never reaches a log line.
pub fn redact_tokens(text: &str) -> std::borrow::Cow<'_, str> {
    const MARKER: &str = ".atlasv1.";
    // Most paths have no dot at all: one byte search instead of a substring
    // search (whose set-up costs more than the search on a short path).
    if !text.as_bytes().contains(&b'.') || !text.contains(MARKER) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(MARKER) {
        out.push_str(&rest[..at + MARKER.len()]);
        rest = &rest[at + MARKER.len()..];
        let secret_len = rest.bytes().take_while(u8::is_ascii_alphanumeric).count();
        if secret_len > 0 {
            out.push_str("[redacted]");
        }
        rest = &rest[secret_len..];
    }
    out.push_str(rest);
    std::borrow::Cow::Owned(out)
}

/// The path as every log line and span shows it: `-` when there is none,
/// an object storage URL's signed key left out, token secrets redacted.
pub fn loggable_path(path: Option<&crate::canonical::CanonicalPath>) -> std::borrow::Cow<'_, str> {
    match path.map(|path| path.public_part()) {
        None => std::borrow::Cow::Borrowed("-"),
        Some((text, false)) => redact_tokens(text),
        Some((public, true)) => {
            std::borrow::Cow::Owned(format!("{}[redacted]", redact_tokens(public)))
        }
    }
}

/// The log lines of a finished request. Never contains a token: only its
/// public id.
///
/// The access line is formatted by hand straight into the worker's log
/// batch when the gateway's own subscriber is installed
/// ([`log_writer::direct_format`]), byte for byte what that subscriber
/// would write (tests compare the two), without `tracing`'s per-event
/// machinery; otherwise (tests, benches with their own subscriber) it goes
/// through `tracing`. Shadow and failure lines always go through `tracing`.
pub fn log_request(ctx: &RequestContext, status: StatusCode) {
    let latency_us = ctx.facts.started.elapsed().as_micros() as u64;
    match log_writer::direct_format() {
        Some(format) if tracing::enabled!(target: "tokengate::access", tracing::Level::INFO) => {
            log_writer::write_line_with(|out| {
                format_access_line(ctx, status, latency_us, format, out);
            });
        }
        Some(_) => {}
        None => access_line_via_tracing(ctx, status, latency_us),
    }
    log_other_lines(ctx, status);
}

/// The access line through `tracing` (the reference for
/// [`format_access_line`]).
fn access_line_via_tracing(ctx: &RequestContext, status: StatusCode, latency_us: u64) {
    let (facts, record) = (&ctx.facts, &ctx.record);
    let path = loggable_path(facts.path.as_ref());
    let path = path.as_ref();
    let method = &facts.method;
    let principal = facts.principal.as_ref();
    tracing::info!(
        target: "tokengate::access",
        method = %method,
        path,
        status = status.as_u16(),
        kind = caller_kind(ctx),
        org = principal.map(|p| p.org.as_str()),
        token_id = principal.map(|p| p.token_id.as_str()),
        rule = record.rule.as_deref(),
        mode = record.rule_mode.map(|m| m.as_str()),
        decision = record.decision.map(|d| d.as_str()),
        reason = record
            .denial
            .as_deref()
            .or(record.auth_failure.map(|f| f.as_str())),
        shadow = ?ShadowList(&record.shadow),
        access = record.access.as_ref().map(tracing::field::display),
        latency_us,
        "request"
    );
}

/// The shadow rule lines and the failure line of a request, if any.
fn log_other_lines(ctx: &RequestContext, status: StatusCode) {
    let (facts, record) = (&ctx.facts, &ctx.record);
    if record.shadow.is_empty() && record.cause.is_none() {
        return;
    }
    let path = loggable_path(facts.path.as_ref());
    let path = path.as_ref();
    let method = &facts.method;
    for (rule, outcome) in &record.shadow {
        tracing::info!(target: "tokengate::shadow", rule = &**rule, outcome = outcome.as_str(), method = %method, path, "shadow rule matched");
    }
    if let Some(cause) = &record.cause {
        tracing::warn!(target: "tokengate::error", method = %method, path, status = status.as_u16(), cause = %cause, "request failed");
    }
}

/// Appends the access line of a finished request to `out`, with its
/// newline, exactly as the gateway's subscriber ([`log_writer::subscriber`])
/// formats the `tracing` event of [`access_line_via_tracing`]: the same
/// timestamp clock and format, level, target, fields in the same order
/// (absent ones left out), values quoted and escaped the same way.
pub fn format_access_line(
    ctx: &RequestContext,
    status: StatusCode,
    latency_us: u64,
    format: LogFormat,
    out: &mut Vec<u8>,
) {
    let (facts, record) = (&ctx.facts, &ctx.record);
    let path = loggable_path(facts.path.as_ref());
    let principal = facts.principal.as_ref();
    let reason = record
        .denial
        .as_deref()
        .or(record.auth_failure.map(|f| f.as_str()));
    let optional: [(&str, Option<&str>); 6] = [
        ("org", principal.map(|p| p.org.as_str())),
        ("token_id", principal.map(|p| p.token_id.as_str())),
        ("rule", record.rule.as_deref()),
        ("mode", record.rule_mode.map(|m| m.as_str())),
        ("decision", record.decision.map(|d| d.as_str())),
        ("reason", reason),
    ];
    let mut status_digits = itoa_buf();
    let status_text = write_u64(&mut status_digits, u64::from(status.as_u16()));
    let mut latency_digits = itoa_buf();
    let latency_text = write_u64(&mut latency_digits, latency_us);
    let mut out = ByteWriter(out);
    match format {
        LogFormat::Text => {
            push_timestamp(&mut out);
            out.push(b"  INFO tokengate::access: request method=");
            // `%method`: Display, unquoted.
            out.push(facts.method.as_str().as_bytes());
            out.push(b" path=");
            push_debug_str(&mut out, &path);
            out.push(b" status=");
            out.push(status_text);
            out.push(b" kind=");
            push_debug_str(&mut out, caller_kind(ctx));
            for (name, value) in optional {
                if let Some(value) = value {
                    out.push(b" ");
                    out.push(name.as_bytes());
                    out.push(b"=");
                    push_debug_str(&mut out, value);
                }
            }
            out.push(b" shadow=");
            push_shadow(&mut out, &record.shadow);
            if let Some(access) = &record.access {
                // `%access`: Display, unquoted.
                let _ = std::fmt::Write::write_fmt(&mut out, format_args!(" access={access}"));
            }
            out.push(b" latency_us=");
            out.push(latency_text);
            out.push(b"\n");
        }
        LogFormat::Json => {
            out.push(b"{\"timestamp\":\"");
            push_timestamp(&mut out);
            out.push(b"\",\"level\":\"INFO\",\"message\":\"request\",\"method\":");
            push_json_str(&mut out, facts.method.as_str());
            out.push(b",\"path\":");
            push_json_str(&mut out, &path);
            out.push(b",\"status\":");
            out.push(status_text);
            out.push(b",\"kind\":");
            push_json_str(&mut out, caller_kind(ctx));
            for (name, value) in optional {
                if let Some(value) = value {
                    out.push(b",\"");
                    out.push(name.as_bytes());
                    out.push(b"\":");
                    push_json_str(&mut out, value);
                }
            }
            out.push(b",\"shadow\":");
            if record.shadow.is_empty() {
                out.push(b"\"[]\"");
            } else {
                let mut shadow = Vec::new();
                push_shadow(&mut ByteWriter(&mut shadow), &record.shadow);
                push_json_str(&mut out, &String::from_utf8_lossy(&shadow));
            }
            if let Some(access) = &record.access {
                out.push(b",\"access\":");
                push_json_str(&mut out, &access.to_string());
            }
            out.push(b",\"latency_us\":");
            out.push(latency_text);
            out.push(b",\"target\":\"tokengate::access\"}\n");
        }
    }
}

/// A `Vec<u8>` that `write!` can format into.
struct ByteWriter<'a>(&'a mut Vec<u8>);

impl ByteWriter<'_> {
    fn push(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }
}

impl std::fmt::Write for ByteWriter<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// The subscriber's clock and format (`tracing_subscriber`'s `SystemTime`:
/// `2026-12-01T18:17:58.123456Z`, UTC, microseconds). The date and time
/// to the second are formatted once per second per thread and copied; the
/// microseconds are written by hand.
fn push_timestamp(out: &mut ByteWriter<'_>) {
    let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    let Ok(since_epoch) = since_epoch else {
        return push_timestamp_via_subscriber(out);
    };
    let secs = since_epoch.as_secs();
    let pushed = SECOND_PREFIX.with(|cell| {
        let (cached_secs, mut prefix) = cell.get();
        if cached_secs != secs {
            let Some(fresh) = second_prefix(secs) else {
                return false;
            };
            prefix = fresh;
            cell.set((secs, prefix));
        }
        out.push(&prefix);
        true
    });
    if !pushed {
        return push_timestamp_via_subscriber(out);
    }
    let mut micros = since_epoch.subsec_micros();
    let mut digits = [0u8; 7];
    for digit in digits[..6].iter_mut().rev() {
        *digit = b'0' + (micros % 10) as u8;
        micros /= 10;
    }
    digits[6] = b'Z';
    out.push(&digits);
}

thread_local! {
    /// The last second formatted on this thread and its
    /// `YYYY-MM-DDTHH:MM:SS.` (`u64::MAX`: none yet).
    static SECOND_PREFIX: std::cell::Cell<(u64, [u8; 20])> =
        const { std::cell::Cell::new((u64::MAX, [0; 20])) };
}

/// `YYYY-MM-DDTHH:MM:SS.` of a second since the epoch (UTC), for years
/// 0 to 9999 (the subscriber's format is other outside them).
fn second_prefix(secs: u64) -> Option<[u8; 20]> {
    let at = time::OffsetDateTime::from_unix_timestamp(i64::try_from(secs).ok()?).ok()?;
    let year = u32::try_from(at.year()).ok().filter(|y| *y <= 9999)?;
    let mut prefix = *b"0000-00-00T00:00:00.";
    let mut put = |at: usize, width: usize, mut value: u32| {
        for digit in prefix[at..at + width].iter_mut().rev() {
            *digit = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    put(0, 4, year);
    put(5, 2, u32::from(u8::from(at.month())));
    put(8, 2, u32::from(at.day()));
    put(11, 2, u32::from(at.hour()));
    put(14, 2, u32::from(at.minute()));
    put(17, 2, u32::from(at.second()));
    Some(prefix)
}

/// The subscriber's own timestamp formatting (clocks before 1970 or past
/// the year 9999).
fn push_timestamp_via_subscriber(out: &mut ByteWriter<'_>) {
    use tracing_subscriber::fmt::time::FormatTime;
    let mut writer = tracing_subscriber::fmt::format::Writer::new(out);
    if tracing_subscriber::fmt::time::SystemTime
        .format_time(&mut writer)
        .is_err()
    {
        let _ = std::fmt::Write::write_str(&mut writer, "<unknown time>");
    }
}

/// `value` as `{:?}` writes a string (quoted, escaped); printable ASCII
/// without a quote or backslash is copied as it is, which is what `{:?}`
/// would write.
fn push_debug_str(out: &mut ByteWriter<'_>, value: &str) {
    if value
        .bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
    {
        out.push(b"\"");
        out.push(value.as_bytes());
        out.push(b"\"");
    } else {
        let _ = std::fmt::Write::write_fmt(out, format_args!("{value:?}"));
    }
}

/// `value` as a JSON string, escaped by `serde_json` as the JSON
/// subscriber does.
fn push_json_str(out: &mut ByteWriter<'_>, value: &str) {
    let _ = serde_json::to_writer(&mut *out.0, value);
}

/// The shadow list as `{:?}` of [`ShadowList`] writes it.
fn push_shadow(out: &mut ByteWriter<'_>, shadow: &[(std::sync::Arc<str>, ShadowOutcome)]) {
    if shadow.is_empty() {
        out.push(b"[]");
    } else {
        let _ = std::fmt::Write::write_fmt(out, format_args!("{:?}", ShadowList(shadow)));
    }
}

fn itoa_buf() -> [u8; 20] {
    [0; 20]
}

/// `n` in decimal, in the end of `buf`.
fn write_u64(buf: &mut [u8; 20], mut n: u64) -> &[u8] {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[at..]
}

/// The caller's kind for the log: the principal's, `invalid` when a token
/// was presented and failed (the token format does not say which kind it
/// claimed), `anonymous` only when no credential was sent.
fn caller_kind(ctx: &RequestContext) -> &'static str {
    match (&ctx.facts.principal, ctx.record.auth_failure) {
        (Some(principal), _) => principal.kind.as_str(),
        (None, Some(_)) => "invalid",
        (None, None) => "anonymous",
    }
}

/// Shadow matches as the access line shows them: `[("rule", "would_deny")]`.
struct ShadowList<'a>(&'a [(std::sync::Arc<str>, ShadowOutcome)]);

impl std::fmt::Debug for ShadowList<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(
                self.0
                    .iter()
                    .map(|(rule, outcome)| (rule, outcome.as_str())),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::{caller_kind, redact_tokens};
    use crate::auth::{AuthFailure, Principal};
    use crate::context::RequestContext;
    use crate::store::PrincipalKind;

    #[test]
    fn a_failed_token_is_logged_as_invalid_never_anonymous() {
        let ctx = || {
            RequestContext::new(
                http::Method::GET,
                ([127, 0, 0, 1], 1).into(),
                std::sync::Arc::new(crate::policy::Policy::from_yaml("default: deny").unwrap()),
            )
        };
        assert_eq!(caller_kind(&ctx()), "anonymous");
        for failure in [
            AuthFailure::UnknownToken,
            AuthFailure::BadSecret,
            AuthFailure::ExpiredToken,
            AuthFailure::MalformedToken,
            AuthFailure::StoreError,
        ] {
            let mut failed = ctx();
            failed.record.auth_failure = Some(failure);
            assert_eq!(caller_kind(&failed), "invalid", "{failure:?}");
        }
        let mut known = ctx();
        known.facts.principal = Some(Principal {
            kind: PrincipalKind::Team,
            org: "acme".into(),
            team_id: Some("team-x".into()),
            user_id: None,
            token_id: "at-x".into(),
        });
        assert_eq!(caller_kind(&known), "team");
    }

    #[test]
    fn token_secrets_in_paths_are_redacted() {
        assert_eq!(redact_tokens("/api/v2/ws"), "/api/v2/ws");
        assert_eq!(
            redact_tokens("/x/abcdefghijklmn.atlasv1.SECRET123/y.atlasv1."),
            "/x/abcdefghijklmn.atlasv1.[redacted]/y.atlasv1."
        );
    }

    /// Everything the subscriber under test writes.
    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'w> tracing_subscriber::fmt::MakeWriter<'w> for Captured {
        type Writer = Captured;
        fn make_writer(&'w self) -> Captured {
            self.clone()
        }
    }

    /// The line with its timestamp replaced by `<ts>`; the timestamp's
    /// shape (digits and separators) is kept apart to compare.
    fn split_timestamp(line: &str, format: crate::config::LogFormat) -> (String, String) {
        let (start, end) = match format {
            crate::config::LogFormat::Text => (0, line.find(' ').expect("a space after the time")),
            crate::config::LogFormat::Json => {
                let start = line.find("\"timestamp\":\"").expect("a timestamp") + 13;
                (start, start + line[start..].find('"').expect("its end"))
            }
        };
        let shape = line[start..end]
            .chars()
            .map(|c| if c.is_ascii_digit() { '9' } else { c })
            .collect();
        (format!("{}<ts>{}", &line[..start], &line[end..]), shape)
    }

    fn contexts() -> Vec<(RequestContext, http::StatusCode)> {
        use crate::context::{Decision, RuleMode, ShadowOutcome};
        let policy =
            std::sync::Arc::new(crate::policy::Policy::from_yaml("default: deny").unwrap());
        let new = || {
            RequestContext::new(
                http::Method::GET,
                ([127, 0, 0, 1], 1).into(),
                policy.clone(),
            )
        };
        let mut out = Vec::new();
        // Anonymous, nothing recorded, no path.
        out.push((new(), http::StatusCode::BAD_REQUEST));
        // A team GET, allowed.
        let mut team = new();
        team.facts.path = Some(crate::canonical::canonicalize("/api/v2/workspaces/ws-1").unwrap());
        team.facts.principal = Some(Principal {
            kind: PrincipalKind::Team,
            org: "acme".into(),
            team_id: Some("team-x".into()),
            user_id: None,
            token_id: "at-abcdefghijklmnop".into(),
        });
        team.record.decision = Some(Decision::Allow);
        team.record.rule = Some("api-for-authenticated".into());
        team.record.rule_mode = Some(RuleMode::Enforce);
        out.push((team, http::StatusCode::OK));
        // A failed token, a denial with quotes, backslashes, a newline and
        // non-ASCII text, a token pasted in the path, shadow matches.
        let mut odd = RequestContext::new(
            http::Method::from_bytes(b"PATCH").unwrap(),
            ([10, 0, 0, 1], 2).into(),
            policy.clone(),
        );
        odd.facts.path =
            Some(crate::canonical::canonicalize("/x/abcdefghijklmn.atlasv1.SECRET123/y").unwrap());
        odd.record.auth_failure = Some(AuthFailure::BadSecret);
        odd.record.denial = Some("say \"no\"\\ now\n\ttab \u{e9}\u{200b}\u{7f}".into());
        odd.record.rule = Some("rule \"quoted\"".into());
        odd.record.rule_mode = Some(RuleMode::Shadow);
        odd.record.decision = Some(Decision::Deny);
        odd.record.shadow = vec![
            ("s-1".into(), ShadowOutcome::WouldDeny),
            ("s \"2\"".into(), ShadowOutcome::WouldAllow),
        ];
        out.push((odd, http::StatusCode::UNAUTHORIZED));
        // An organization token, no rule, a reason from the auth failure.
        let mut org = new();
        org.facts.path = Some(crate::canonical::canonicalize("/").unwrap());
        org.facts.principal = Some(Principal {
            kind: PrincipalKind::Org,
            org: "o".into(),
            team_id: None,
            user_id: None,
            token_id: "at-o".into(),
        });
        org.record.auth_failure = Some(AuthFailure::StoreError);
        out.push((org, http::StatusCode::SERVICE_UNAVAILABLE));
        out
    }

    /// The hand-formatted access line is byte for byte the line the
    /// gateway's subscriber writes for the `tracing` event, in both formats,
    /// timestamps aside (same shape, taken at different instants).
    #[test]
    fn the_hand_formatted_access_line_is_the_subscribers_line() {
        use crate::config::{LogConfig, LogFormat};
        for format in [LogFormat::Text, LogFormat::Json] {
            let config = LogConfig {
                level: "info".into(),
                format,
            };
            for (ctx, status) in contexts() {
                let captured = Captured::default();
                let dispatch =
                    super::log_writer::subscriber_writing_to(&config, None, captured.clone());
                tracing::dispatcher::with_default(&dispatch, || {
                    super::access_line_via_tracing(&ctx, status, 4321);
                });
                let expected = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
                let mut hand = Vec::new();
                super::format_access_line(&ctx, status, 4321, format, &mut hand);
                let hand = String::from_utf8(hand).unwrap();
                assert!(
                    expected.ends_with('\n') && expected.matches('\n').count() == 1,
                    "{expected}"
                );
                let (expected_rest, expected_shape) = split_timestamp(&expected, format);
                let (hand_rest, hand_shape) = split_timestamp(&hand, format);
                assert_eq!(hand_rest, expected_rest, "{format:?}");
                assert_eq!(
                    hand_shape, expected_shape,
                    "{format:?}: {hand} vs {expected}"
                );
                assert!(!hand.contains("SECRET123"), "{hand}");
            }
        }
    }

    #[test]
    fn the_timestamp_is_the_subscribers_to_the_second() {
        assert_eq!(&super::second_prefix(0).unwrap(), b"1970-01-01T00:00:00.");
        assert_eq!(
            &super::second_prefix(951_782_400).unwrap(),
            b"2000-02-29T00:00:00."
        );
        assert_eq!(
            &super::second_prefix(1_764_612_345).unwrap(),
            b"2025-12-01T18:05:45."
        );
        assert_eq!(
            &super::second_prefix(4_102_444_799).unwrap(),
            b"2099-12-31T23:59:59."
        );
        assert_eq!(super::second_prefix(253_402_300_800), None, "year 10000");
        // Against the subscriber's clock and format, now (retried when a
        // second boundary falls between the two readings).
        use tracing_subscriber::fmt::time::FormatTime;
        let mut matched = false;
        for _ in 0..5 {
            let mut ours = Vec::new();
            super::push_timestamp(&mut super::ByteWriter(&mut ours));
            let mut theirs = String::new();
            tracing_subscriber::fmt::time::SystemTime
                .format_time(&mut tracing_subscriber::fmt::format::Writer::new(
                    &mut theirs,
                ))
                .unwrap();
            let ours = String::from_utf8(ours).unwrap();
            assert_eq!(ours.len(), theirs.len(), "{ours} vs {theirs}");
            assert!(ours.ends_with('Z') && ours.as_bytes()[19] == b'.', "{ours}");
            if ours[..20] == theirs[..20] {
                matched = true;
                break;
            }
        }
        assert!(
            matched,
            "the date and time to the second differ from the subscriber's"
        );
    }
}
