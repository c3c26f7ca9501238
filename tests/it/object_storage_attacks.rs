//! Red-team attacks on the object storage (`/_archivist/…`, see
//! `tests/it/object_storage.rs` for the intended behaviour): each test
//! asserts what the upstream received, or what reached the log. A test
//! marked `#[ignore = "finding: …"]` fails on the code it was written
//! against: it is the reproduction of a finding (the two findings below
//! were ignored like that in the commit that found them, and fixed in the
//! next one).

use crate::access::Scene;
use crate::harness::*;
use crate::object_storage::{
    create_configuration_version, created_with, scene_issuing_upload_urls, ISSUED,
};
use serde_json::json;

/// The PUTs the upstream received, as (target, body).
fn puts(world: &World) -> Vec<(String, Vec<u8>)> {
    world
        .upstream
        .requests()
        .into_iter()
        .filter(|r| r.method == "PUT")
        .map(|r| (r.target, r.body))
        .collect()
}

/// The policy matches `/_archivist/**` without regard to ASCII case (and
/// with a Rails format suffix), but the upload check
/// (`ObjectStorage::holds`) compares the prefix byte for byte: a `PUT` to
/// `/_ARCHIVIST/…` is allowed by `object-storage-uploads` for anyone,
/// is no upload to the gateway, and is forwarded without a grant.
#[tokio::test]
async fn an_upload_spelled_in_another_case_needs_a_grant_too() {
    let world = World::new().await;
    let body = br#"{"data":{"attributes":{"x":1}}}"#;
    let mut answered = Vec::new();
    for path in [
        "/_ARCHIVIST/v1/object/Zm9yZ2Vk",
        "/_Archivist/v1/object/Zm9yZ2Vk",
        "/_archivist.json",
    ] {
        let response = world.send(RawRequest::new("PUT", path).body(body)).await;
        answered.push((path, response.status));
    }
    assert_eq!(
        puts(&world),
        Vec::<(String, Vec<u8>)>::new(),
        "no grant was ever issued, yet the upstream received uploads (answers: {answered:?})"
    );
}

/// The server's own refusals after a request's head (a malformed chunked
/// body, a body over the limit or too slow) log the request's path: they
/// canonicalize it again without hiding the signed key.
#[tokio::test]
async fn the_signed_key_is_not_logged_when_the_body_is_refused() {
    let served = PolicyProcess::start(DEFAULT_POLICY, true).await;
    let key = "c2lnbmVkLWtleS1pbi1hLWJyb2tlbi1ib2R5";
    let raw = format!(
        "GET /_archivist/v1/object/{key} HTTP/1.1\r\nHost: gateway.test\r\nConnection: close\r\n\
         Transfer-Encoding: chunked\r\n\r\nzz\r\nnot a chunk\r\n0\r\n\r\n"
    );
    let response = send_bytes(served.process.addr, raw.as_bytes()).await;
    assert_eq!(response.status, 400, "{}", response.body);
    let lines = served
        .log_where(|v| v["target"] == "tokengate::access")
        .await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    let all = served.process.log_lines().join("\n");
    assert!(!all.contains(key), "the signed key was logged:\n{all}");
    assert_eq!(served.upstream.count(), 0);
}

/// A `plan` team's configuration version on ws-1, created through the
/// gateway: the upstream issued [`ISSUED`].
async fn scene_with_issued_url() -> (Scene, String) {
    let (scene, planners) = scene_issuing_upload_urls().await;
    let create = create_configuration_version(&scene, &planners).await;
    assert_eq!(create.status, 201, "{}", create.body);
    (scene, planners)
}

const ARCHIVE: &[u8] = b"\x1f\x8b\x08\x00{\"data\":{\"attributes\":{\"auto-apply\":true}}}\x00";

/// Spellings of the issued URL, and paths that climb out of the prefix
/// from it: what is forwarded is the issued path itself, byte for byte,
/// or nothing; no archive reaches an API path.
#[tokio::test]
async fn spellings_of_an_issued_url_upload_only_to_it() {
    let (scene, _) = scene_with_issued_url().await;
    let octets = [("content-type", "application/octet-stream")];
    let mut answers = Vec::new();
    for path in [
        "//_archivist/v1/object/dmF1bHQ6djE6aXNzdWVk",
        "/_archivist/v1/object/dmF1bHQ6djE6aXNzdWVk/",
        "/_archivist/v1/x/../object/dmF1bHQ6djE6aXNzdWVk",
        "/_archivist/v1/object/%64mF1bHQ6djE6aXNzdWVk",
        "/_archivist/v1/object/dmF1bHQ6djE6aXNzdWVk;a=1",
        "/_archivist/v1/object/dmF1bHQ6djE6aXNzdWVk%2F",
        "/_archivist/v1/object/dmF1bHQ6djE6aXNzdWVk%3B",
        "/_archivist/v1/object/dmF1bHQ6djE6aXNzdWVk?_method=POST",
        "/_archivist/v1/object/dmF1bHQ6djE6aXNzdWVk?data[attributes][auto-apply]=true",
        "/_archivist/v1/object/dmF1bHQ6djE6aXNzdWVk#frag",
        "/_archivist/../api/v2/workspaces/ws-1",
        "/_archivist/%2e%2e/api/v2/workspaces/ws-1",
        "/_archivist/v1/object/../../../api/v2/workspaces/ws-1/configuration-versions",
        "/_archivist\\..\\api/v2/workspaces/ws-1",
    ] {
        let response = scene
            .world
            .send(RawRequest::new("PUT", path).headers(&octets).body(ARCHIVE))
            .await;
        answers.push((path, response.status));
    }
    for (target, body) in puts(&scene.world) {
        assert_eq!(target, ISSUED, "{answers:?}");
        assert_eq!(body, ARCHIVE);
    }
    assert!(
        scene
            .world
            .upstream
            .requests()
            .iter()
            .all(|r| r.target.starts_with("/_archivist/") || r.method == "POST"),
        "{:?}",
        scene.forwarded()
    );
}

/// Method tricks on an issued URL: nothing but the `PUT` writes.
#[tokio::test]
async fn other_methods_on_an_issued_url_do_not_write() {
    let (scene, planners) = scene_with_issued_url().await;
    let org = scene.org_token().await;
    let octets = [("content-type", "application/octet-stream")];
    let overrides = [
        ("content-type", "application/octet-stream"),
        ("x-http-method-override", "PUT"),
    ];
    for (method, headers, token) in [
        ("POST", &octets[..], None),
        ("PATCH", &octets[..], Some(planners.as_str())),
        ("POST", &overrides[..], Some(org.as_str())),
        ("DELETE", &octets[..], Some(org.as_str())),
    ] {
        let mut request = RawRequest::new(method, ISSUED)
            .headers(headers)
            .body(ARCHIVE);
        if let Some(token) = token {
            request = request.token(token);
        }
        let response = scene.world.send(request).await;
        assert!(response.status >= 400, "{method}: {}", response.status);
    }
    let writes: Vec<_> = scene
        .world
        .upstream
        .requests()
        .into_iter()
        .filter(|r| r.target.starts_with("/_archivist"))
        .collect();
    assert!(writes.is_empty(), "{writes:?}");
}

/// An organization token's allowed creations and reads whose answers
/// name another object's upload URL (in `included`, `relationships`, a
/// non-creation) grant nothing.
#[tokio::test]
async fn answers_an_organization_token_can_get_grant_nothing_it_could_queue_a_run_with() {
    let scene = Scene::new().await;
    let org = scene.org_token().await;
    let victim = "/_archivist/v1/object/dmljdGltLWN2";
    let url = format!("https://tfe.example.com{victim}");
    let upstream = &scene.world.upstream;
    upstream.directory().answer_forwarded(
        "POST",
        "/api/v2/policy-sets/polset-1/versions",
        201,
        json!({"data": {"id": "polsetver-1", "type": "policy-set-versions",
            "attributes": {"status": "pending"},
            "relationships": {"cv": {"links": {"upload": url}}}},
            "included": [{"id": "cv-1", "type": "configuration-versions",
                "attributes": {"upload-url": url}}]}),
    );
    upstream
        .directory()
        .answer_forwarded("POST", "/api/v2/runs", 201, created_with(victim));
    for (path, body) in [
        ("/api/v2/policy-sets/polset-1/versions", "{}".to_owned()),
        (
            "/api/v2/runs",
            r#"{"data":{"relationships":{"workspace":{"data":{"id":"ws-1"}}}}}"#.to_owned(),
        ),
        (
            "/api/v2/workspaces/ws-1/configuration-versions.json",
            "{}".to_owned(),
        ),
        ("/api/v2/workspaces/ws-1/State-Versions", "{}".to_owned()),
    ] {
        let _ = scene.call("POST", path, &org, &body).await;
    }
    let octets = [("content-type", "application/octet-stream")];
    let refused = scene
        .world
        .send(
            RawRequest::new("PUT", victim)
                .headers(&octets)
                .body(ARCHIVE),
        )
        .await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(puts(&scene.world).is_empty());
}

/// With the store down, an upload to an issued URL is 503 and nothing is
/// forwarded.
#[tokio::test]
async fn with_the_store_down_an_upload_is_refused_and_not_forwarded() {
    let (mut scene, _) = scene_with_issued_url().await;
    scene.world.redis.kill();
    let octets = [("content-type", "application/octet-stream")];
    let response = scene
        .world
        .send(
            RawRequest::new("PUT", ISSUED)
                .headers(&octets)
                .body(ARCHIVE),
        )
        .await;
    assert_eq!(response.status, 503, "{}", response.body);
    assert!(puts(&scene.world).is_empty());
}
