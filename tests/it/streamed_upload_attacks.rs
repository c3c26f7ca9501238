//! Attacks on uploads forwarded while they arrive (an upload to the object
//! storage with a `Content-Length`): request framing around a streamed
//! body, bodies shorter or longer than declared, `Expect: 100-continue`,
//! chunked uploads, and an upload URL used up by a concurrent upload while
//! another one streams. Each asserts what the upstream received.

use crate::harness::*;
use crate::object_storage::{
    create_configuration_version, issuing_scene_around, large_archive, upload_bytes,
    uploads_received, ISSUED,
};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A download URL: forwarded for whoever holds it, so a request behind an
/// upload has something to reach.
const DOWNLOAD: &str = "/_archivist/v1/object/ZG93bmxvYWQ";

fn upload_head(length: usize, extra: &str) -> String {
    format!(
        "PUT {ISSUED} HTTP/1.1\r\nHost: gateway.test\r\nContent-Type: application/octet-stream\r\n{extra}Content-Length: {length}\r\n\r\n"
    )
}

fn download_request(close: bool) -> String {
    let connection = if close { "Connection: close\r\n" } else { "" };
    format!("GET {DOWNLOAD} HTTP/1.1\r\nHost: gateway.test\r\n{connection}\r\n")
}

/// Reads what the gateway sends until it closes (within 10 s).
async fn read_all(client: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), client.read_to_end(&mut answer))
        .await
        .expect("the gateway closes the connection")
        .ok();
    String::from_utf8_lossy(&answer).into_owned()
}

fn statuses(answers: &str) -> Vec<&str> {
    answers
        .match_indices("HTTP/1.1 ")
        .map(|(at, _)| &answers[at + 9..at + 12])
        .collect()
}

/// A request written in the same write right behind a streamed upload's
/// body is the connection's next request: forwarded as itself, never as
/// bytes of the upload, and not lost.
#[tokio::test]
async fn a_request_pipelined_behind_a_streamed_upload_is_the_next_request() {
    let (scene, planners) = issuing_scene_around(World::new().await).await;
    let create = create_configuration_version(&scene, &planners).await;
    assert_eq!(create.status, 201, "{}", create.body);
    let archive = large_archive(200_000);

    let mut client = TcpStream::connect(scene.world.gateway.addr).await.unwrap();
    let mut wire = upload_head(archive.len(), "").into_bytes();
    wire.extend_from_slice(&archive);
    wire.extend_from_slice(download_request(true).as_bytes());
    client.write_all(&wire).await.unwrap();
    let answers = read_all(&mut client).await;
    assert_eq!(statuses(&answers), ["200", "200"], "{answers}");

    let received = scene.world.upstream.requests();
    let uploads: Vec<_> = received.iter().filter(|r| r.method == "PUT").collect();
    assert_eq!(uploads.len(), 1);
    assert!(uploads[0].body == archive, "the upload, byte for byte");
    let downloads: Vec<_> = received.iter().filter(|r| r.method == "GET").collect();
    assert_eq!(downloads.len(), 1, "{received:?}");
    assert_eq!(downloads[0].target, DOWNLOAD);
}

/// The same with the upload's body in several writes, its last piece and
/// the next request in one: the body ends at its declared length, wherever
/// the reads fall.
#[tokio::test]
async fn a_request_in_the_same_write_as_an_uploads_last_piece_is_the_next_request() {
    let (scene, planners) = issuing_scene_around(World::new().await).await;
    let create = create_configuration_version(&scene, &planners).await;
    assert_eq!(create.status, 201, "{}", create.body);
    let archive = large_archive(150_001);

    let mut client = TcpStream::connect(scene.world.gateway.addr).await.unwrap();
    client
        .write_all(upload_head(archive.len(), "").as_bytes())
        .await
        .unwrap();
    for piece in archive[..150_000].chunks(70_000) {
        client.write_all(piece).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut last = archive[150_000..].to_vec();
    last.extend_from_slice(download_request(false).as_bytes());
    last.extend_from_slice(download_request(true).as_bytes());
    client.write_all(&last).await.unwrap();
    let answers = read_all(&mut client).await;
    assert_eq!(statuses(&answers), ["200", "200", "200"], "{answers}");

    let uploads = uploads_received(&scene);
    assert_eq!(uploads.len(), 1);
    assert!(uploads[0].body == archive, "the upload, byte for byte");
    let downloads = scene
        .world
        .upstream
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.target == DOWNLOAD)
        .count();
    assert_eq!(downloads, 2);
}

/// Bytes beyond the declared length that are not a request are not part of
/// the upload: the upload goes upstream with exactly its declared bytes and
/// the rest is refused as a bad next request, never forwarded.
#[tokio::test]
async fn bytes_beyond_an_uploads_length_are_not_forwarded_inside_it() {
    let (scene, planners) = issuing_scene_around(World::new().await).await;
    let create = create_configuration_version(&scene, &planners).await;
    assert_eq!(create.status, 201, "{}", create.body);
    let archive = large_archive(100_000);

    let mut client = TcpStream::connect(scene.world.gateway.addr).await.unwrap();
    let mut wire = upload_head(archive.len(), "").into_bytes();
    wire.extend_from_slice(&archive);
    wire.extend_from_slice(b"SMUGGLED-BYTES-THAT-ARE-NO-REQUEST\r\n\r\n");
    client.write_all(&wire).await.unwrap();
    let answers = read_all(&mut client).await;
    assert_eq!(statuses(&answers), ["200", "400"], "{answers}");

    let uploads = uploads_received(&scene);
    assert_eq!(uploads.len(), 1);
    assert_eq!(uploads[0].header("content-length"), Some("100000"));
    assert!(uploads[0].body == archive, "exactly the declared bytes");
    assert_eq!(
        scene.world.upstream.count(),
        2,
        "the creation and the upload"
    );
}

/// curl and Go send `Expect: 100-continue` with a large PUT: the gateway
/// answers `100 Continue` once the head is judged, then the body streams.
#[tokio::test]
async fn an_upload_that_expects_100_continue_gets_it_then_streams() {
    let (scene, planners) = issuing_scene_around(World::new().await).await;
    let create = create_configuration_version(&scene, &planners).await;
    assert_eq!(create.status, 201, "{}", create.body);
    let archive = large_archive(100_000);

    let mut client = TcpStream::connect(scene.world.gateway.addr).await.unwrap();
    client
        .write_all(upload_head(archive.len(), "Expect: 100-continue\r\n").as_bytes())
        .await
        .unwrap();
    let mut interim = [0u8; 25];
    tokio::time::timeout(Duration::from_secs(5), client.read_exact(&mut interim))
        .await
        .expect("100 Continue comes before the body")
        .unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    client.write_all(&archive).await.unwrap();
    client
        .write_all(download_request(true).as_bytes())
        .await
        .unwrap();
    let answers = read_all(&mut client).await;
    assert_eq!(statuses(&answers), ["200", "200"], "{answers}");
    let uploads = uploads_received(&scene);
    assert_eq!(uploads.len(), 1);
    assert!(uploads[0].body == archive);
}

/// An upload whose URL was not issued through the gateway, with
/// `Expect: 100-continue`, gets its refusal and no `100 Continue`; its body
/// is never read and nothing reaches the upstream.
#[tokio::test]
async fn an_upload_without_a_grant_gets_no_100_continue_and_is_not_forwarded() {
    let (scene, _planners) = issuing_scene_around(World::new().await).await;
    let mut client = TcpStream::connect(scene.world.gateway.addr).await.unwrap();
    client
        .write_all(upload_head(100_000, "Expect: 100-continue\r\n").as_bytes())
        .await
        .unwrap();
    let answers = read_all(&mut client).await;
    assert!(answers.starts_with("HTTP/1.1 403"), "{answers}");
    assert!(!answers.contains("100 Continue"), "{answers}");
    assert!(uploads_received(&scene).is_empty());
}

/// A client that goes away half-way through an upload: the upstream never
/// gets a whole body, and the URL stays good for the whole archive.
#[tokio::test]
async fn an_upload_whose_client_goes_away_mid_body_is_never_taken_whole() {
    let (scene, planners) = issuing_scene_around(World::new().await).await;
    let create = create_configuration_version(&scene, &planners).await;
    assert_eq!(create.status, 201, "{}", create.body);
    let archive = large_archive(200_000);

    let mut client = TcpStream::connect(scene.world.gateway.addr).await.unwrap();
    client
        .write_all(upload_head(archive.len(), "").as_bytes())
        .await
        .unwrap();
    client.write_all(&archive[..120_000]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    client.shutdown().await.unwrap();
    let answer = read_all(&mut client).await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 4") || answer.starts_with("HTTP/1.1 5"),
        "{answer}"
    );
    drop(client);
    // The upstream side of the cut-short upload ends too.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        uploads_received(&scene).iter().all(|r| r.body != archive),
        "no whole upload reached the upstream"
    );
    let uploaded = upload_bytes(&scene, &archive).await;
    assert_eq!(uploaded.status, 200, "{}", uploaded.body);
    let whole = uploads_received(&scene)
        .iter()
        .filter(|r| r.body == archive)
        .count();
    assert_eq!(whole, 1);
}

/// A chunked upload is not streamed: it is read whole first, within
/// `limits.max_body_bytes`, and one over it never reaches the upstream.
#[tokio::test]
async fn a_chunked_upload_over_the_body_limit_is_refused_and_not_forwarded() {
    let world = World::with_config("limits: { max_body_bytes: 1024 }").await;
    let (scene, planners) = issuing_scene_around(world).await;
    let create = create_configuration_version(&scene, &planners).await;
    assert_eq!(create.status, 201, "{}", create.body);

    let mut client = TcpStream::connect(scene.world.gateway.addr).await.unwrap();
    let mut wire = format!(
        "PUT {ISSUED} HTTP/1.1\r\nHost: gateway.test\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    .into_bytes();
    for _ in 0..4 {
        wire.extend_from_slice(b"400\r\n");
        wire.extend_from_slice(&large_archive(1024));
        wire.extend_from_slice(b"\r\n");
    }
    wire.extend_from_slice(b"0\r\n\r\n");
    client.write_all(&wire).await.unwrap();
    let answer = read_all(&mut client).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(uploads_received(&scene).is_empty(), "never forwarded");
    // The URL stays good.
    let within = large_archive(1000);
    let uploaded = upload_bytes(&scene, &within).await;
    assert_eq!(uploaded.status, 200, "{}", uploaded.body);
}

/// An upload URL uploads once. Upload B starts streaming; while its body
/// arrives, upload A to the same URL completes and the upstream takes it
/// (2xx: the grant is used up). B's body then completes — it must not
/// reach the upstream whole, or the archive A put there is replaced, which
/// the grant exists to prevent (before uploads were streamed, B's grant was
/// checked again once its body had arrived, and B was refused).
#[tokio::test]
async fn an_upload_whose_grant_a_concurrent_upload_used_up_never_reaches_the_upstream_whole() {
    let (scene, planners) = issuing_scene_around(World::new().await).await;
    let create = create_configuration_version(&scene, &planners).await;
    assert_eq!(create.status, 201, "{}", create.body);
    let first = large_archive(50_000);
    let replacement: Vec<u8> = large_archive(100_000).iter().map(|b| b ^ 0x01).collect();

    let mut slow = TcpStream::connect(scene.world.gateway.addr).await.unwrap();
    slow.write_all(upload_head(replacement.len(), "Connection: close\r\n").as_bytes())
        .await
        .unwrap();
    slow.write_all(&replacement[..60_000]).await.unwrap();
    // B's head is judged and its body is on its way upstream.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let uploaded = upload_bytes(&scene, &first).await;
    assert_eq!(uploaded.status, 200, "{}", uploaded.body);

    slow.write_all(&replacement[60_000..]).await.unwrap();
    let answer = read_all(&mut slow).await;
    assert!(!answer.starts_with("HTTP/1.1 2"), "{answer}");

    let uploads = uploads_received(&scene);
    assert!(
        uploads.iter().any(|r| r.body == first),
        "the first upload was taken"
    );
    assert!(
        uploads.iter().all(|r| r.body != replacement),
        "an upload whose URL was used up reached the upstream whole: the archive was replaced"
    );
}

/// An upload sent with `Connection: close`: what follows its body is never
/// served (nor forwarded), and the upload itself is forwarded whole.
#[tokio::test]
async fn nothing_behind_an_upload_with_connection_close_is_served() {
    let (scene, planners) = issuing_scene_around(World::new().await).await;
    let create = create_configuration_version(&scene, &planners).await;
    assert_eq!(create.status, 201, "{}", create.body);
    let archive = large_archive(100_000);

    let mut client = TcpStream::connect(scene.world.gateway.addr).await.unwrap();
    let mut wire = upload_head(archive.len(), "Connection: close\r\n").into_bytes();
    wire.extend_from_slice(&archive);
    wire.extend_from_slice(download_request(true).as_bytes());
    client.write_all(&wire).await.unwrap();
    let answers = read_all(&mut client).await;
    assert_eq!(statuses(&answers), ["200"], "{answers}");
    let uploads = uploads_received(&scene);
    assert_eq!(uploads.len(), 1);
    assert!(uploads[0].body == archive);
    assert!(
        scene
            .world
            .upstream
            .requests()
            .iter()
            .all(|r| r.target != DOWNLOAD),
        "the request behind a closing upload was forwarded"
    );
}

/// An upload smuggled behind another one's body, to a URL the gateway did
/// not issue, is judged as a request of its own: 403, never forwarded;
/// the first upload is forwarded with exactly its own bytes.
#[tokio::test]
async fn an_upload_smuggled_behind_an_uploads_body_is_judged_on_its_own() {
    let (scene, planners) = issuing_scene_around(World::new().await).await;
    let create = create_configuration_version(&scene, &planners).await;
    assert_eq!(create.status, 201, "{}", create.body);
    let archive = large_archive(70_000);
    let smuggled_body = b"smuggled archive";

    let mut client = TcpStream::connect(scene.world.gateway.addr).await.unwrap();
    let mut wire = upload_head(archive.len(), "").into_bytes();
    wire.extend_from_slice(&archive);
    wire.extend_from_slice(
        format!(
            "PUT {DOWNLOAD} HTTP/1.1\r\nHost: gateway.test\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
            smuggled_body.len()
        )
        .as_bytes(),
    );
    wire.extend_from_slice(smuggled_body);
    client.write_all(&wire).await.unwrap();
    let answers = read_all(&mut client).await;
    assert_eq!(statuses(&answers), ["200", "403"], "{answers}");
    let uploads = uploads_received(&scene);
    assert_eq!(uploads.len(), 1, "{uploads:?}");
    assert_eq!(uploads[0].target, ISSUED);
    assert!(
        uploads[0].body == archive,
        "exactly the first upload's bytes"
    );
}
