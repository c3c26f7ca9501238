//! Object storage (Terraform Enterprise's archivist, `/_archivist/…`):
//! signed download URLs are forwarded for whoever holds them; an upload is
//! forwarded only to an upload URL the upstream issued in its answer to a
//! creation the gateway allowed — on every replica, once — with its body as
//! sent; an organization token, which may not create configuration
//! versions, gets none; and the signed key never reaches a log line.

use crate::access::Scene;
use crate::harness::*;
use serde_json::json;
use tokengate::access::model::{AccessLevel, Permissions};

pub const CREATE_CV: &str = "/api/v2/workspaces/ws-1/configuration-versions";
pub const ISSUED: &str = "/_archivist/v1/object/dmF1bHQ6djE6aXNzdWVk";

/// A configuration version's creation answer naming `upload_path` on the
/// upstream's own host.
pub fn created_with(upload_path: &str) -> serde_json::Value {
    json!({"data": {"id": "cv-new", "type": "configuration-versions",
        "attributes": {"status": "pending", "auto-queue-runs": true,
            "upload-url": format!("https://tfe.example.com{upload_path}")}}})
}

/// A tar.gz-like body: binary, not UTF-8, not JSON.
const ARCHIVE: &[u8] = b"\x1f\x8b\x08\x00\xff\xfe{\"data\":1}\x00\x01";

/// A scene whose upstream answers a configuration version's creation on
/// ws-1 with [`ISSUED`] as its upload URL, and a `plan` team's token there.
pub async fn scene_issuing_upload_urls() -> (Scene, String) {
    issuing_scene_around(World::new().await).await
}

/// [`scene_issuing_upload_urls`] around `world`.
pub async fn issuing_scene_around(world: World) -> (Scene, String) {
    let scene = Scene::around(world).await;
    let planners = scene
        .team_with("planners", AccessLevel::Plan, Permissions::CUSTOM_DEFAULT)
        .await;
    scene
        .world
        .upstream
        .directory()
        .answer_forwarded("POST", CREATE_CV, 201, created_with(ISSUED));
    (scene, planners)
}

/// Creates a configuration version on ws-1 with `token`; the answer.
pub async fn create_configuration_version(scene: &Scene, token: &str) -> RawResponse {
    scene
        .call(
            "POST",
            CREATE_CV,
            token,
            r#"{"data":{"type":"configuration-versions"}}"#,
        )
        .await
}

async fn upload(scene: &Scene, path: &str, token: Option<&str>, content_type: &str) -> RawResponse {
    let headers = [("content-type", content_type)];
    let mut request = RawRequest::new("PUT", path).headers(&headers).body(ARCHIVE);
    if let Some(token) = token {
        request = request.token(token);
    }
    scene.world.send(request).await
}

#[tokio::test]
async fn an_upload_goes_only_to_an_upload_url_issued_through_the_gateway() {
    let (scene, planners) = scene_issuing_upload_urls().await;
    // A read that shows an upload URL (a pending configuration version of
    // someone else's) grants nothing.
    scene.world.upstream.directory().answer_forwarded(
        "GET",
        "/api/v2/workspaces/ws-1/configuration-versions",
        200,
        created_with("/_archivist/v1/object/c2VlbkluQVJlYWQ"),
    );
    // Before the creation, the URL the upstream will issue uploads nothing.
    let early = upload(&scene, ISSUED, None, "application/octet-stream").await;
    assert_eq!(early.status, 403, "{}", early.body);
    assert!(
        early.body.contains("not issued through the gateway"),
        "{}",
        early.body
    );

    let create = create_configuration_version(&scene, &planners).await;
    assert_eq!(create.status, 201, "{}", create.body);
    let read = scene
        .call(
            "GET",
            "/api/v2/workspaces/ws-1/configuration-versions",
            &planners,
            "",
        )
        .await;
    assert_eq!(read.status, 200, "{}", read.body);

    // go-tfe and pytfe: no token, application/octet-stream.
    let anonymous = upload(&scene, ISSUED, None, "application/octet-stream").await;
    assert_eq!(anonymous.status, 200, "{}", anonymous.body);
    // An upload URL uploads once: a second archive is refused.
    let again = upload(&scene, ISSUED, None, "application/octet-stream").await;
    assert_eq!(again.status, 403, "{}", again.body);
    // terrasnek, on a new configuration version (its creation issues the
    // URL again here): the team token and a JSON:API content type on the
    // archive.
    let create = create_configuration_version(&scene, &planners).await;
    assert_eq!(create.status, 201, "{}", create.body);
    let with_token = upload(&scene, ISSUED, Some(&planners), "application/vnd.api+json").await;
    assert_eq!(with_token.status, 200, "{}", with_token.body);
    // Any other key of the object storage: refused, never forwarded.
    for path in [
        "/_archivist/",
        "/_archivist",
        "/_archivist/v1/object/Zm9yZ2Vk",
        "/_archivist/v1/object/c2VlbkluQVJlYWQ",
        "/_archivist/v1/object/dmF1bHQ6djE6aXNzdWVkx",
    ] {
        let refused = upload(&scene, path, Some(&planners), "application/octet-stream").await;
        assert_eq!(refused.status, 403, "{path}: {}", refused.body);
    }

    let uploads: Vec<_> = scene
        .world
        .upstream
        .requests()
        .into_iter()
        .filter(|r| r.method == "PUT")
        .collect();
    assert_eq!(
        uploads.len(),
        2,
        "only the two uploads to the issued URL were forwarded"
    );
    for (sent, content_type) in uploads
        .iter()
        .zip(["application/octet-stream", "application/vnd.api+json"])
    {
        assert_eq!(sent.target, ISSUED);
        assert_eq!(sent.body, ARCHIVE, "the archive is forwarded byte for byte");
        assert_eq!(sent.header("content-type"), Some(content_type));
        assert_eq!(
            sent.header("content-length"),
            Some(ARCHIVE.len().to_string().as_str())
        );
        assert_eq!(sent.header("authorization"), None);
    }
}

#[tokio::test]
async fn an_organization_token_gets_no_upload_url_to_queue_a_run_with() {
    let (scene, _) = scene_issuing_upload_urls().await;
    let org = scene.org_token().await;
    let create = create_configuration_version(&scene, &org).await;
    assert_eq!(create.status, 403, "{}", create.body);
    for token in [None, Some(org.as_str())] {
        let refused = upload(&scene, ISSUED, token, "application/octet-stream").await;
        assert_eq!(refused.status, 403, "{}", refused.body);
    }
    assert_eq!(
        scene.forwarded(),
        Vec::<String>::new(),
        "nothing reached the upstream"
    );
}

#[tokio::test]
async fn a_grant_is_kept_in_the_store_for_every_replica() {
    let (scene, planners) = scene_issuing_upload_urls().await;
    let create = create_configuration_version(&scene, &planners).await;
    assert_eq!(create.status, 201, "{}", create.body);
    // A second gateway on the same store (another replica behind the load
    // balancer) takes the upload.
    let replica = TestGateway::start(&scene.world.dir.path().join("tokengate.yaml")).await;
    let headers = [("content-type", "application/octet-stream")];
    let uploaded = send_raw(
        replica.addr,
        RawRequest::new("PUT", ISSUED)
            .headers(&headers)
            .body(ARCHIVE),
    )
    .await;
    assert_eq!(uploaded.status, 200, "{}", uploaded.body);
    let last = scene.world.upstream.requests().pop().unwrap();
    assert_eq!(
        (last.method.as_str(), last.target.as_str()),
        ("PUT", ISSUED)
    );
    assert_eq!(last.body, ARCHIVE);
}

#[tokio::test]
async fn downloads_are_forwarded_for_whoever_holds_the_url_and_nothing_else_is() {
    let scene = Scene::new().await;
    let org = scene.org_token().await;
    let team = scene
        .team_with("readers", AccessLevel::Read, Permissions::CUSTOM_DEFAULT)
        .await;
    let log = "/_archivist/v1/object/bG9nLXJlYWQ";
    for token in [None, Some(team.as_str()), Some(org.as_str())] {
        let mut request = RawRequest::new("GET", log);
        if let Some(token) = token {
            request = request.token(token);
        }
        let response = scene.world.send(request).await;
        assert_eq!(response.status, 200, "{token:?}: {}", response.body);
    }
    // Writes other than an upload, and paths beside the prefix: refused.
    for (method, path) in [
        ("POST", log),
        ("DELETE", log),
        ("PATCH", log),
        ("GET", "/_archivistx/v1/object/x"),
    ] {
        let response = scene
            .world
            .send(RawRequest::new(method, path).token(&team))
            .await;
        assert_eq!(response.status, 403, "{method} {path}: {}", response.body);
    }
    let forwarded = scene.world.upstream.requests();
    assert_eq!(forwarded.len(), 3, "{:?}", scene.forwarded());
    for sent in forwarded {
        assert_eq!((sent.method.as_str(), sent.target.as_str()), ("GET", log));
        assert_eq!(
            sent.header("authorization"),
            None,
            "the client's token stays here"
        );
    }
}

#[tokio::test]
async fn with_the_object_storage_turned_off_an_archive_is_not_forwarded() {
    let world = World::with_config_file(|dir, upstream, redis| {
        let path = write_config(dir, upstream, redis, "");
        let text = std::fs::read_to_string(&path).unwrap();
        let text = text.replacen(
            &format!("  url: {upstream}\n"),
            &format!("  url: {upstream}\n  object_storage: {{ path_prefix: \"\" }}\n"),
            1,
        );
        std::fs::write(&path, text).unwrap();
        path
    })
    .await;
    let headers = [("content-type", "application/octet-stream")];
    let refused = world
        .send(
            RawRequest::new("PUT", ISSUED)
                .headers(&headers)
                .body(ARCHIVE),
        )
        .await;
    assert_eq!(refused.status, 415, "{}", refused.body);
    assert_eq!(world.upstream.count(), 0);
}

/// The signed key of an object storage URL is a capability: it never
/// reaches a log line, whether the request was forwarded or refused.
#[tokio::test]
async fn the_signed_key_is_never_logged() {
    let served = PolicyProcess::start(DEFAULT_POLICY, true).await;
    let key = "c2lnbmVkLWtleS10aGF0LW11c3Qtbm90LWJlLWxvZ2dlZA";
    let download = format!("/_archivist/v1/object/{key}");
    let response = send_raw(served.process.addr, RawRequest::new("GET", &download)).await;
    assert_eq!(response.status, 200, "{}", response.body);
    let headers = [("content-type", "application/octet-stream")];
    let response = send_raw(
        served.process.addr,
        RawRequest::new("PUT", &download)
            .headers(&headers)
            .body(ARCHIVE),
    )
    .await;
    assert_eq!(response.status, 403, "{}", response.body);
    let lines = served
        .log_where(|v| v["target"] == "tokengate::access")
        .await;
    let paths: Vec<_> = lines.iter().map(|line| line["path"].clone()).collect();
    assert_eq!(
        paths,
        [
            json!("/_archivist/[redacted]"),
            json!("/_archivist/[redacted]")
        ],
        "{lines:?}"
    );
    let all = served.process.log_lines().join("\n");
    assert!(!all.contains(key), "the signed key was logged:\n{all}");
    assert_eq!(
        served.upstream.count(),
        1,
        "only the download was forwarded"
    );
}

/// Go's HTTP client (go-tfe, Terraform's CLI) asks for gzip: a creation
/// whose answer the gateway reads for its upload URLs is asked for
/// uncompressed, or no grant could be learnt; other requests keep the
/// client's `Accept-Encoding`.
#[tokio::test]
async fn a_creation_whose_answer_is_read_is_asked_for_uncompressed() {
    let (scene, planners) = scene_issuing_upload_urls().await;
    let headers = [
        ("accept-encoding", "gzip"),
        ("content-type", "application/vnd.api+json"),
    ];
    let create = scene
        .world
        .send(
            RawRequest::new("POST", CREATE_CV)
                .token(&planners)
                .headers(&headers)
                .body(br#"{"data":{"type":"configuration-versions"}}"#),
        )
        .await;
    assert_eq!(create.status, 201, "{}", create.body);
    let read = scene
        .world
        .send(
            RawRequest::new("GET", "/api/v2/workspaces/ws-1")
                .token(&planners)
                .headers(&headers[..1]),
        )
        .await;
    assert_eq!(read.status, 200, "{}", read.body);
    let sent = scene.world.upstream.requests();
    assert_eq!(sent.len(), 2, "{:?}", scene.forwarded());
    assert_eq!(sent[0].header("accept-encoding"), None, "the creation");
    assert_eq!(sent[1].header("accept-encoding"), Some("gzip"), "the read");
    let uploaded = upload(&scene, ISSUED, None, "application/octet-stream").await;
    assert_eq!(uploaded.status, 200, "{}", uploaded.body);
}

// ---------------------------------------------------------------------------
// Uploads forwarded while they arrive
// ---------------------------------------------------------------------------

/// Binary bytes, not UTF-8, not JSON: `len` of them.
pub fn large_archive(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8 | 0x80).collect()
}

/// An anonymous upload of `body` to [`ISSUED`], as go-tfe sends one.
pub async fn upload_bytes(scene: &Scene, body: &[u8]) -> RawResponse {
    let headers = [("content-type", "application/octet-stream")];
    let request = RawRequest::new("PUT", ISSUED).headers(&headers).body(body);
    scene.world.send(request).await
}

pub fn uploads_received(scene: &Scene) -> Vec<Recorded> {
    scene
        .world
        .upstream
        .requests()
        .into_iter()
        .filter(|r| r.method == "PUT")
        .collect()
}

/// An upload is opaque bytes no rule reads: it goes upstream while it
/// arrives, so an archive larger than `limits.max_body_bytes` (which still
/// bounds every body the gateway reads) reaches the upstream whole, byte
/// for byte, with its length.
#[tokio::test]
async fn an_upload_larger_than_the_body_limit_is_streamed_to_the_upstream_byte_for_byte() {
    let world = World::with_config("limits: { max_body_bytes: 1024 }").await;
    let (scene, planners) = issuing_scene_around(world).await;
    let too_large_to_judge = format!(
        r#"{{"data":{{"type":"vars","attributes":{{"key":"k","value":"{}"}}}}}}"#,
        "v".repeat(2048)
    );
    let judged = scene
        .call(
            "POST",
            "/api/v2/workspaces/ws-1/vars",
            &planners,
            &too_large_to_judge,
        )
        .await;
    assert_eq!(
        judged.status, 413,
        "the body limit still holds: {}",
        judged.body
    );

    let create = create_configuration_version(&scene, &planners).await;
    assert_eq!(create.status, 201, "{}", create.body);
    let archive = large_archive(300_000);
    let uploaded = upload_bytes(&scene, &archive).await;
    assert_eq!(uploaded.status, 200, "{}", uploaded.body);
    let uploads = uploads_received(&scene);
    assert_eq!(uploads.len(), 1);
    assert_eq!(uploads[0].target, ISSUED);
    assert_eq!(uploads[0].header("content-length"), Some("300000"));
    assert!(uploads[0].body == archive, "forwarded byte for byte");
    // It was the upload the URL allows: the URL is used up.
    let again = upload_bytes(&scene, &archive).await;
    assert_eq!(again.status, 403, "{}", again.body);
}

/// `upstream.object_storage.max_upload_bytes` bounds an upload's declared
/// size: a larger one is 413 before its body is read and never forwarded,
/// and its URL stays good for an upload within the bound.
#[tokio::test]
async fn an_upload_over_max_upload_bytes_is_refused_before_its_body() {
    let world = World::with_config_file(|dir, upstream, redis| {
        let upstream = format!("{upstream}\n  object_storage: {{ max_upload_bytes: 4096 }}");
        write_config(dir, &upstream, redis, "")
    })
    .await;
    let (scene, planners) = issuing_scene_around(world).await;
    let create = create_configuration_version(&scene, &planners).await;
    assert_eq!(create.status, 201, "{}", create.body);
    let over = upload_bytes(&scene, &large_archive(4097)).await;
    assert_eq!(over.status, 413, "{}", over.body);
    assert!(over.body.contains("4096"), "{}", over.body);
    assert!(uploads_received(&scene).is_empty(), "never forwarded");
    let within = large_archive(4096);
    let uploaded = upload_bytes(&scene, &within).await;
    assert_eq!(uploaded.status, 200, "{}", uploaded.body);
    assert!(uploads_received(&scene)[0].body == within);
}

/// A client that stops sending half-way through an upload is cut off by
/// the body's between-bytes timeout. What went upstream is never taken for
/// a whole upload: no complete body arrives there, the URL is not used up,
/// and the whole archive can be uploaded again.
#[tokio::test]
async fn a_stalled_upload_is_cut_off_and_never_taken_for_a_whole_one() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let world = World::with_config("limits: { body_idle_timeout_ms: 300 }").await;
    let (scene, planners) = issuing_scene_around(world).await;
    let create = create_configuration_version(&scene, &planners).await;
    assert_eq!(create.status, 201, "{}", create.body);
    let archive = large_archive(100_000);

    let mut client = tokio::net::TcpStream::connect(scene.world.gateway.addr)
        .await
        .unwrap();
    let head = format!(
        "PUT {ISSUED} HTTP/1.1\r\nHost: gateway.test\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        archive.len()
    );
    client.write_all(head.as_bytes()).await.unwrap();
    client.write_all(&archive[..10_000]).await.unwrap();
    // ... and nothing more: the gateway answers and closes.
    let mut answer = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        client.read_to_end(&mut answer),
    )
    .await
    .expect("the stalled upload is cut off")
    .ok();
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 5") || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
    assert!(
        uploads_received(&scene)
            .iter()
            .all(|r| r.body.len() < archive.len()),
        "no whole upload reached the upstream"
    );

    let uploaded = upload_bytes(&scene, &archive).await;
    assert_eq!(
        uploaded.status, 200,
        "the URL was not used up: {}",
        uploaded.body
    );
    assert!(uploads_received(&scene).iter().any(|r| r.body == archive));
}
