//! An organization token trying to get an apply through, the ways an
//! attacker would, against the real binary. Every request that reached the
//! recording upstream is read the way a Rails/Rack upstream reads it
//! ([`crate::rails`]), and none of them may amount to an apply; the benign
//! spellings real clients send keep working, byte for byte.

use crate::harness::{send_bytes, PolicyProcess, DEFAULT_POLICY};
use crate::rails;

/// A raw HTTP/1.1 request with the organization token, `Host` and
/// `Connection: close`, and the given extra header lines and body.
fn raw(method: &str, target: &str, token: &str, headers: &[&str], body: &str) -> Vec<u8> {
    let mut text = format!(
        "{method} {target} HTTP/1.1\r\nHost: gateway.test\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n"
    );
    for header in headers {
        text.push_str(header);
        text.push_str("\r\n");
    }
    if !body.is_empty() || method != "GET" {
        text.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    text.push_str("\r\n");
    text.push_str(body);
    text.into_bytes()
}

const JSON: &str = "Content-Type: application/vnd.api+json";
const FORM: &str = "Content-Type: application/x-www-form-urlencoded";

/// (what the attack is, method, target, extra headers, body)
type Attack = (
    &'static str,
    &'static str,
    &'static str,
    &'static [&'static str],
    &'static str,
);

const ATTACKS: &[Attack] = &[
    // 1. Body keys: case, camelCase, envelope variants, two spellings.
    (
        "camelCase key",
        "PATCH",
        "/api/v2/workspaces/ws-1",
        &[JSON],
        r#"{"data":{"attributes":{"autoApply":true}}}"#,
    ),
    (
        "capitalized envelope",
        "PATCH",
        "/api/v2/workspaces/ws-1",
        &[JSON],
        r#"{"Data":{"Attributes":{"auto-apply":true}}}"#,
    ),
    (
        "upper case key",
        "PATCH",
        "/api/v2/workspaces/ws-1",
        &[JSON],
        r#"{"data":{"attributes":{"AUTO-APPLY":true}}}"#,
    ),
    (
        "mixed case key",
        "PATCH",
        "/api/v2/workspaces/ws-1",
        &[JSON],
        r#"{"data":{"attributes":{"auto_APPLY":"on"}}}"#,
    ),
    (
        "escaped key",
        "PATCH",
        "/api/v2/workspaces/ws-1",
        &[JSON],
        r#"{"data":{"attributes":{"auto\u002dapply":true}}}"#,
    ),
    (
        "two spellings",
        "PATCH",
        "/api/v2/workspaces/ws-1",
        &[JSON],
        r#"{"data":{"attributes":{"auto-apply":false,"autoApply":true}}}"#,
    ),
    (
        "same key twice",
        "PATCH",
        "/api/v2/workspaces/ws-1",
        &[JSON],
        r#"{"data":{"attributes":{"auto-apply":false,"auto-apply":true}}}"#,
    ),
    (
        "run-trigger auto-apply in camelCase",
        "POST",
        "/api/v2/organizations/acme/workspaces",
        &[JSON],
        r#"{"data":{"attributes":{"name":"n","autoApplyRunTrigger":1}}}"#,
    ),
    (
        "auto-destroy",
        "PATCH",
        "/api/v2/workspaces/ws-1",
        &[JSON],
        r#"{"data":{"attributes":{"autoDestroyAt":"2030-01-01T00:00:00Z"}}}"#,
    ),
    // 1b. A second spelling of a judged header: Rack files `Content_Type`
    // under `CONTENT_TYPE` too, and reads the JSON body as a form.
    (
        "underscore header: a form content type beside the judged JSON",
        "PATCH",
        "/api/v2/workspaces/ws-1",
        &[JSON, "Content_Type: application/x-www-form-urlencoded"],
        r#"{"data":{"attributes":{"name":"x&data[attributes][auto-apply]=true&y"}}}"#,
    ),
    (
        "underscore header: the form content type first",
        "PATCH",
        "/api/v2/workspaces/ws-1",
        &["Content_Type: application/x-www-form-urlencoded", JSON],
        r#"{"data":{"attributes":{"name":"x&data[attributes][auto-apply]=true&y"}}}"#,
    ),
    // 1c. Rails' wrap_parameters: top-level keys are attributes too.
    (
        "wrapped: a top-level attribute",
        "PATCH",
        "/api/v2/workspaces/ws-1",
        &["Content-Type: application/json"],
        r#"{"auto_apply":true}"#,
    ),
    (
        "wrapped: beside a harmless document",
        "PATCH",
        "/api/v2/workspaces/ws-1",
        &["Content-Type: application/json"],
        r#"{"data":{"attributes":{"auto-apply":false}},"autoApply":"1"}"#,
    ),
    (
        "wrapped: under the resource's name",
        "POST",
        "/api/v2/organizations/acme/workspaces",
        &[JSON],
        r#"{"data":{"attributes":{"name":"n"}},"workspace":{"auto_destroy_at":"2030-01-01T00:00:00Z"}}"#,
    ),
    // 2. Query parameters on writes.
    (
        "query on an empty PATCH",
        "PATCH",
        "/api/v2/workspaces/ws-1?data[attributes][auto-apply]=true",
        &[],
        "",
    ),
    (
        "query over a JSON body",
        "PATCH",
        "/api/v2/workspaces/ws-1?data[attributes][auto-apply]=true",
        &[JSON],
        r#"{"data":{"attributes":{"auto-apply":false}}}"#,
    ),
    (
        "escaped query brackets",
        "PATCH",
        "/api/v2/workspaces/ws-1?data%5Battributes%5D%5BautoApply%5D=1",
        &[],
        "",
    ),
    (
        "query with semicolons",
        "PATCH",
        "/api/v2/workspaces/ws-1?token=x;data[attributes][auto-apply]=true",
        &[],
        "",
    ),
    (
        "query allowed name, nested",
        "PATCH",
        "/api/v2/workspaces/ws-1?include[x]=1&data[attributes][auto-apply]=true",
        &[],
        "",
    ),
    // 3. Content types.
    (
        "form PATCH",
        "PATCH",
        "/api/v2/workspaces/ws-1",
        &[FORM],
        "data[attributes][auto-apply]=true",
    ),
    (
        "form POST with _method",
        "POST",
        "/api/v2/workspaces/ws-1",
        &[FORM],
        "_method=patch&data[attributes][auto-apply]=true",
    ),
    (
        "untyped POST with _method",
        "POST",
        "/api/v2/workspaces/ws-1",
        &[],
        "_method=patch&data[attributes][auto-apply]=true",
    ),
    (
        "JSON that is also a form",
        "PATCH",
        "/api/v2/workspaces/ws-1",
        &[FORM],
        r#"{"data":{"attributes":{"name":"x"}}}&data[attributes][auto-apply]=true"#,
    ),
    (
        "multipart",
        "POST",
        "/api/v2/workspaces/ws-1",
        &["Content-Type: multipart/form-data; boundary=b"],
        "--b\r\nContent-Disposition: form-data; name=\"_method\"\r\n\r\npatch\r\n--b--\r\n",
    ),
    (
        "two content types",
        "PATCH",
        "/api/v2/workspaces/ws-1",
        &[JSON, FORM],
        "data[attributes][auto-apply]=true",
    ),
    (
        "content type list",
        "PATCH",
        "/api/v2/workspaces/ws-1",
        &["Content-Type: application/x-www-form-urlencoded, application/json"],
        "data[attributes][auto-apply]=true",
    ),
    (
        "gzip body",
        "PATCH",
        "/api/v2/workspaces/ws-1",
        &[JSON, "Content-Encoding: gzip"],
        "x",
    ),
    // 4. Connection removing the judged content type.
    (
        "Connection: Content-Type",
        "PATCH",
        "/api/v2/workspaces/ws-1",
        &[JSON, "Connection: Content-Type"],
        r#"{"data":{"attributes":{"name":"x"}},"_method":"patch"}"#,
    ),
    // 5. PUT.
    (
        "PUT",
        "PUT",
        "/api/v2/workspaces/ws-1",
        &[JSON],
        r#"{"data":{"attributes":{"auto-apply":true}}}"#,
    ),
    (
        "PUT apply",
        "PUT",
        "/api/v2/runs/run-1/actions/apply",
        &[],
        "",
    ),
    // 6. Calls closed to organization tokens.
    (
        "state rollback",
        "PATCH",
        "/api/v2/workspaces/ws-1/state-versions",
        &[JSON],
        r#"{"data":{"relationships":{"rollback-state-version":{"data":{"id":"sv-1"}}}}}"#,
    ),
    (
        "run create",
        "POST",
        "/api/v2/runs",
        &[JSON],
        r#"{"data":{"attributes":{"auto-apply":true}}}"#,
    ),
    (
        "apply with a format",
        "POST",
        "/api/v2/runs/run-1/actions/apply.json",
        &[],
        "",
    ),
    (
        "apply with another format",
        "POST",
        "/api/v2/runs/run-1/actions/apply.xml",
        &[],
        "",
    ),
    (
        "method override header",
        "POST",
        "/api/v2/workspaces/ws-1",
        &[JSON, "X-HTTP-Method-Override: PATCH"],
        r#"{"data":{"attributes":{"auto-apply":true}}}"#,
    ),
    (
        "method override header, underscores",
        "POST",
        "/api/v2/workspaces/ws-1",
        &[JSON, "X_HTTP_METHOD_OVERRIDE: PATCH"],
        r#"{"data":{"attributes":{"auto-apply":true}}}"#,
    ),
    // 9. Paths.
    (
        "encoded #",
        "POST",
        "/api/v2/runs/run-1/actions/apply%23x",
        &[],
        "",
    ),
    (
        "encoded ?",
        "POST",
        "/api/v2/runs/run-1/actions/apply%3Fx",
        &[],
        "",
    ),
    (
        "encoded ;",
        "POST",
        "/api/v2/runs/run-1/actions/apply%3Bx",
        &[],
        "",
    ),
    (
        "encoded space",
        "POST",
        "/api/v2/runs/run-1%20/actions/apply",
        &[],
        "",
    ),
    (
        "encoded tab",
        "POST",
        "/api/v2/runs/run-1/actions/apply%09",
        &[],
        "",
    ),
    (
        "overlong slash",
        "POST",
        "/api/v2/runs/run-1/actions%C0%AFapply",
        &[],
        "",
    ),
    (
        "double-encoded",
        "POST",
        "/api/v2/runs/run-1/actions/%2561pply",
        &[],
        "",
    ),
    // 11. Host.
    (
        "two Hosts",
        "POST",
        "/api/v2/runs/run-1/actions/apply",
        &["Host: other.test"],
        "",
    ),
];

#[tokio::test]
async fn no_organization_token_attack_reaches_the_upstream_as_an_apply() {
    let served = PolicyProcess::start(DEFAULT_POLICY, false).await;
    let addr = served.process.addr;
    let mut forwarded = Vec::new();
    for (name, method, target, headers, body) in ATTACKS {
        let before = served.upstream.count();
        let response = send_bytes(addr, &raw(method, target, &served.org, headers, body)).await;
        let after = served.upstream.count();
        if after > before {
            forwarded.push(*name);
        }
        assert!(
            response.status >= 400 || after > before,
            "{name}: {} without reaching the upstream",
            response.status
        );
    }
    let mut applies = Vec::new();
    for seen in served.upstream.requests() {
        let view = rails::read(&seen);
        if let Some(why) = view.apply_by_an_org_token() {
            applies.push(format!("{} {}: {why}", seen.method, seen.target));
        }
    }
    assert_eq!(applies, Vec::<String>::new(), "forwarded: {forwarded:?}");
    // Only the neutralized ones got through (the method override header is
    // stripped, so the upstream sees a POST to a workspace: nothing).
    // The underscore spellings are dropped, so the upstream reads JSON.
    assert!(
        forwarded.iter().all(|name| {
            name.starts_with("method override header") || name.starts_with("underscore header")
        }),
        "{forwarded:?}"
    );
}

#[tokio::test]
async fn requests_without_a_valid_single_host_are_refused() {
    let served = PolicyProcess::start(DEFAULT_POLICY, false).await;
    let addr = served.process.addr;
    let team = &served.team;
    for head in [
        format!("GET /api/v2/workspaces HTTP/1.1\r\nAuthorization: Bearer {team}\r\nConnection: close\r\n\r\n"),
        format!("GET /api/v2/workspaces HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\nAuthorization: Bearer {team}\r\nConnection: close\r\n\r\n"),
        format!("GET /api/v2/workspaces HTTP/1.1\r\nHost: a.test/evil\r\nAuthorization: Bearer {team}\r\nConnection: close\r\n\r\n"),
        format!("GET /api/v2/workspaces HTTP/1.1\r\nHost: a.test:99999\r\nAuthorization: Bearer {team}\r\nConnection: close\r\n\r\n"),
        format!("GET /api/v2/workspaces HTTP/1.1\r\nHost: user@a.test\r\nAuthorization: Bearer {team}\r\nConnection: close\r\n\r\n"),
    ] {
        let response = send_bytes(addr, head.as_bytes()).await;
        assert_eq!(response.status, 400, "{head:?}: {}", response.body);
    }
    assert_eq!(served.upstream.count(), 0);
}

#[tokio::test]
async fn client_address_and_rerouting_headers_never_reach_the_upstream() {
    let served = PolicyProcess::start(DEFAULT_POLICY, false).await;
    let spoofed = [
        "Client-IP: 10.0.0.1",
        "True-Client-IP: 10.0.0.1",
        "CF-Connecting-IP: 10.0.0.1",
        "X-Client-IP: 10.0.0.1",
        "X-Cluster-Client-IP: 10.0.0.1",
        "Fastly-Client-IP: 10.0.0.1",
        "X-Original-Forwarded-For: 10.0.0.1",
        "X-Originating-IP: 10.0.0.1",
        "X-Remote-IP: 10.0.0.1",
        "X-Remote-Addr: 10.0.0.1",
        "Forwarded-For: 10.0.0.1",
        "Client_IP: 10.0.0.1",
        "X-Real-IP: 10.0.0.1",
        "X-Forwarded-For: 10.0.0.1",
        "Forwarded: for=10.0.0.1",
    ];
    let response = send_bytes(
        served.process.addr,
        &raw("GET", "/api/v2/workspaces", &served.team, &spoofed, ""),
    )
    .await;
    assert_eq!(response.status, 200, "{}", response.body);
    let seen = served.upstream.last();
    for (name, value) in &seen.headers {
        assert!(
            !value.contains("10.0.0.1"),
            "{name}: {value} reached the upstream"
        );
    }
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
    // Nor do headers that would route the request to another path, or
    // make a server send a file, behind the gateway's back.
    let rerouting = [
        "X-Original-URL: /api/v2/runs/run-1/actions/apply",
        "X-Rewrite-URL: /api/v2/runs/run-1/actions/apply",
        "X-Script-Name: /api/v2/runs/run-1/actions",
        "X-Sendfile-Type: X-Accel-Redirect",
        "X-Accel-Mapping: /var/app/=/internal/",
    ];
    let response = send_bytes(
        served.process.addr,
        &raw("GET", "/api/v2/workspaces", &served.team, &rerouting, ""),
    )
    .await;
    assert_eq!(response.status, 200, "{}", response.body);
    let seen = served.upstream.last();
    for header in rerouting {
        let name = header.split(':').next().unwrap();
        assert_eq!(seen.header(name), None, "{name} reached the upstream");
    }
}

#[tokio::test]
async fn benign_requests_real_clients_send_are_forwarded_byte_for_byte() {
    let served = PolicyProcess::start(DEFAULT_POLICY, false).await;
    let addr = served.process.addr;
    let benign: &[(&str, &str, &[&str], &str)] = &[
        ("PATCH", "/api/v2/workspaces/ws-1", &[JSON], r#"{"data":{"type":"workspaces","attributes":{"name":"prod","auto-apply":false,"description":"caf\u00e9"}}}"#),
        ("PATCH", "/api/v2/workspaces/ws-1", &["Content-Type: application/json; charset=utf-8"], "{\"data\":{\"attributes\":{\"auto-apply\":\"false\"}}}\n"),
        ("POST", "/api/v2/organizations/acme/workspaces?include=organization", &[JSON], r#"{"data":{"type":"workspaces","attributes":{"name":"new"}}}"#),
        ("GET", "/api/v2/organizations/acme/workspaces?page%5Bnumber%5D=2&page[size]=20&search[name]=a+b", &[], ""),
        ("DELETE", "/api/v2/workspaces/ws-1", &[], ""),
        ("POST", "/api/v2/workspaces/ws-1/actions/lock", &[JSON], r#"{"reason":"maintenance"}"#),
    ];
    for (method, target, headers, body) in benign {
        let response = send_bytes(addr, &raw(method, target, &served.org, headers, body)).await;
        assert_eq!(response.status, 200, "{method} {target}: {}", response.body);
        let seen = served.upstream.last();
        assert_eq!(seen.method, *method);
        assert_eq!(seen.target, *target);
        assert_eq!(seen.body, body.as_bytes(), "{method} {target}");
        assert_eq!(rails::read(&seen).apply_by_an_org_token(), None);
    }
}
