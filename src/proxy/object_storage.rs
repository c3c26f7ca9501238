//! The upstream's object storage under the gateway's host: Terraform
//! Enterprise's "archivist" (`/_archivist/v1/object/<signed key>`,
//! `upstream.object_storage`), where clients upload configuration archives
//! and state, and download logs, state and archives. Its URLs are signed
//! capabilities the upstream hands out in API answers; clients use them
//! without a token.
//!
//! - **Downloads** are judged by the policy like any other path (the default
//!   policy lets whoever holds the URL download, as the upstream does).
//! - **Uploads** (`PUT`) are forwarded only to an upload URL that the
//!   upstream issued in its answer to a creation the gateway allowed: a
//!   configuration version, a state version, a policy set, module or
//!   provider version ([`issues_uploads`]). The gateway reads those answers
//!   and keeps a *grant* — the SHA-256 of the URL's path, never the URL —
//!   in the store, on every replica, for `upload_grant_ttl`. An
//!   organization token may not create configuration or state versions, so
//!   it never holds an upload URL it could turn into a run; a URL seen
//!   anywhere else (a read, a log, another host) uploads nothing. A grant
//!   is used up by the upload the upstream takes (one upload per URL). The
//!   body of an upload is opaque bytes: it is forwarded as sent, never
//!   parsed.
//! - The signed key is a secret: logs and traces show the prefix only
//!   ([`crate::canonical::CanonicalPath::keep_secret_after`]).

use crate::body::{BoxError, RequestBody};
use crate::config::ObjectStorage;
use crate::context::RequestContext;
use crate::gateway::Gateway;
use crate::rejection::Rejection;
use crate::store::Timestamp;
use bytes::Bytes;
use http::{Method, StatusCode};
use http_body::{Frame, SizeHint};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Whether the request is an upload to the object storage.
pub fn is_upload(storage: &ObjectStorage, method: &Method, path: &str) -> bool {
    method == Method::PUT && storage.holds(path)
}

/// Keeps the signed key of an object storage path out of every log line
/// and span of the request (the path is forwarded unchanged).
pub fn hide_signed_key(storage: &ObjectStorage, ctx: &mut RequestContext) {
    let Some(path) = ctx.facts.path.as_mut() else {
        return;
    };
    if let Some(prefix) = storage.path_prefix.as_deref() {
        if storage.holds(path.as_str()) {
            path.keep_secret_after(prefix.len());
        }
    }
}

/// When the request is an upload, refuses it unless its URL was issued
/// through the gateway (403, never forwarded); a store failure is 503.
/// Called from the head, before a body is read ([`super::admit`]), and
/// again just before forwarding ([`super::Gateway::handle`]'s stages): an
/// upload URL uploads once, and a concurrent upload may have used it up
/// while this one's body was arriving. An upload forwarded while it
/// arrives is past both checks before its body comes: [`GrantCheckedBody`]
/// checks once more before its last byte.
pub async fn check_if_upload(
    gateway: &Gateway,
    method: &Method,
    path: &str,
) -> Result<(), Rejection> {
    if is_upload(&gateway.config.upstream.object_storage, method, path) {
        check_upload(gateway, path).await?;
    }
    Ok(())
}

/// Refuses an upload to a URL the upstream did not issue through the
/// gateway (403, never forwarded); a store failure is 503.
async fn check_upload(gateway: &Gateway, path: &str) -> Result<(), Rejection> {
    if gateway.store.upload_granted(&grant_key(path)).await? {
        return Ok(());
    }
    Err(Rejection::Denied {
        status: StatusCode::FORBIDDEN,
        detail: "this upload URL was not issued through the gateway: uploads go only to the \
                 upload URL of a configuration version, state version or other object \
                 created through it by a caller allowed to create it"
            .into(),
    })
}

/// Ends the grant of an upload the upstream took (a 2xx answer): an upload
/// URL uploads once, so an archive cannot be replaced between its plan and
/// its apply. A store failure is logged; the grant then lasts until it
/// expires.
pub async fn use_up_grant(gateway: &Gateway, path: &str) {
    if let Err(err) = gateway.store.end_upload_grant(&grant_key(path)).await {
        tracing::warn!(target: "tokengate::error", error = %err, "an upload's grant could not be ended; it lasts until it expires");
    }
}

/// The body of an upload forwarded while it arrives, with its last byte
/// held back until the URL's grant is checked again: the checks before
/// forwarding run before such a body arrives, and a concurrent upload to
/// the same URL may use the grant up while this one streams. When the grant
/// is gone (or the store cannot tell), the body ends with an error one byte
/// short of its declared length, so the upstream never takes it for a
/// whole upload and the archive the first upload put there stays.
pub struct GrantCheckedBody<B> {
    body: Pin<Box<B>>,
    left: u64,
    held: Option<Bytes>,
    check: Pin<Box<dyn Future<Output = bool> + Send>>,
}

impl<B: RequestBody> GrantCheckedBody<B> {
    /// `body`, of `length` bytes, uploading to `path`.
    pub fn new(gateway: &Gateway, path: &str, length: u64, body: B) -> Self {
        let store = gateway.store.clone();
        let key = grant_key(path);
        GrantCheckedBody {
            body: Box::pin(body),
            left: length,
            held: None,
            check: Box::pin(async move { matches!(store.upload_granted(&key).await, Ok(true)) }),
        }
    }
}

impl<B: RequestBody> http_body::Body for GrantCheckedBody<B> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if this.held.is_some() {
            return match this.check.as_mut().poll(cx) {
                Poll::Ready(true) => {
                    Poll::Ready(this.held.take().map(|last| Ok(Frame::data(last))))
                }
                Poll::Ready(false) => {
                    this.held = None;
                    Poll::Ready(Some(Err(
                        "the upload URL was used up while the upload arrived".into(),
                    )))
                }
                Poll::Pending => Poll::Pending,
            };
        }
        if this.left == 0 {
            return Poll::Ready(None);
        }
        let frame = match this.body.as_mut().poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => frame,
            Poll::Ready(Some(Err(err))) => return Poll::Ready(Some(Err(err.into()))),
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => return Poll::Pending,
        };
        let Ok(mut piece) = frame.into_data() else {
            // Trailers: an upload forwarded while it arrives has none.
            return Poll::Ready(Some(Err("an upload body has only data".into())));
        };
        let len = piece.len() as u64;
        if len < this.left {
            this.left -= len;
            return Poll::Ready(Some(Ok(Frame::data(piece))));
        }
        if len > this.left {
            return Poll::Ready(Some(Err("more request body bytes than declared".into())));
        }
        this.left = 0;
        this.held = Some(piece.split_off(piece.len() - 1));
        if piece.is_empty() {
            // Only the last byte came: wait for the check at once.
            return self.poll_frame(cx);
        }
        Poll::Ready(Some(Ok(Frame::data(piece))))
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0 && self.held.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        let held = self.held.as_ref().map_or(0, |held| held.len() as u64);
        SizeHint::with_exact(self.left + held)
    }
}

/// The grant of an upload URL's path: its SHA-256, lowercase hex.
fn grant_key(path: &str) -> String {
    format!("{:x}", Sha256::digest(path.as_bytes()))
}

/// Whether the answer to this request may carry upload URLs: a `POST`
/// under `/api/` creating a configuration version (a workspace's, or a
/// module test's), a state version, or a policy set, module or provider
/// version or platform.
pub fn issues_uploads(storage: &ObjectStorage, method: &Method, path: &str) -> bool {
    const CREATIONS: [&str; 4] = [
        "/configuration-versions",
        "/state-versions",
        "/versions",
        "/platforms",
    ];
    storage.path_prefix.is_some()
        && method == Method::POST
        && path.starts_with("/api/")
        && CREATIONS.iter().any(|end| path.ends_with(end))
}

/// The object storage paths of the upload URLs in a creation's answer:
/// the upload members ([`names_an_upload_url`]) of the primary document's
/// `attributes` and `links` (not of `included` documents, which a caller
/// may ask for about objects it did not create) that are URLs, absolute or
/// not, under the prefix.
fn upload_paths<'d>(storage: &ObjectStorage, doc: &'d Value) -> Vec<&'d str> {
    let Some(data) = doc.get("data") else {
        return Vec::new();
    };
    ["attributes", "links"]
        .iter()
        .filter_map(|member| Some((*member, data.get(member)?.as_object()?)))
        .flat_map(|(member, object)| {
            object
                .iter()
                .filter(move |(name, _)| names_an_upload_url(member, name))
        })
        .filter_map(|(_, value)| value.as_str())
        .filter_map(url_path)
        .filter(|path| {
            storage
                .path_prefix
                .as_deref()
                .is_some_and(|prefix| path.starts_with(prefix) && path.len() > prefix.len())
        })
        .collect()
}

/// Whether member `name` of a document's `attributes` or `links` is one
/// where TFE puts an upload URL: `upload-url` (configuration versions),
/// `hosted-state-upload-url` and `hosted-json-state-upload-url` (state
/// versions), `links.upload` (policy set and module versions) and
/// `links.*-upload` (provider versions' `shasums-upload`, platforms'
/// `provider-binary-upload`). Only these: another attribute may echo a
/// string the caller sent (a name, a file name), which must grant nothing.
fn names_an_upload_url(member: &str, name: &str) -> bool {
    match member {
        "attributes" => name == "upload-url" || name.ends_with("-upload-url"),
        _ => name == "upload" || name.ends_with("-upload"),
    }
}

/// The path of an absolute (`https://host/path`) or absolute-path URL,
/// without its query or fragment.
fn url_path(url: &str) -> Option<&str> {
    let rest = match url.split_once("://") {
        Some((scheme, rest))
            if scheme.eq_ignore_ascii_case("https") || scheme.eq_ignore_ascii_case("http") =>
        {
            &rest[rest.find('/')?..]
        }
        Some(_) => return None,
        None if url.starts_with('/') && !url.starts_with("//") => url,
        None => return None,
    };
    let end = rest.find(['?', '#']).unwrap_or(rest.len());
    Some(&rest[..end])
}

/// Keeps a grant for each upload URL in a creation's answer. A store
/// failure is logged (the client still gets its answer; its upload will be
/// refused and can be retried with a new object).
pub async fn learn_grants(gateway: &Gateway, doc: &Value) {
    let storage = &gateway.config.upstream.object_storage;
    let paths = upload_paths(storage, doc);
    if paths.is_empty() {
        return;
    }
    let expires_at = Timestamp::now().plus_millis(storage.upload_grant_ttl.as_millis() as u64);
    for path in paths {
        if let Err(err) = gateway
            .store
            .put_upload_grant(&grant_key(path), expires_at)
            .await
        {
            tracing::warn!(target: "tokengate::error", error = %err, "an upload URL the upstream issued could not be kept; uploading to it will be refused");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn storage() -> ObjectStorage {
        ObjectStorage::tfe_default()
    }

    #[test]
    fn upload_urls_are_found_in_the_primary_documents_upload_members_only() {
        let doc = json!({
            "data": {
                "id": "cv-1",
                "attributes": {
                    "upload-url": "https://tfe.example.com/_archivist/v1/object/dmF1bHQ6djE6YWJj",
                    "status": "pending",
                    "hosted-json-state-upload-url": "/_archivist/v1/object/json?sig=1#x",
                    "elsewhere-upload-url": "https://storage.example.com/bucket/object",
                    "filename": "https://tfe.example.com/_archivist/v1/object/ZWNob2Vk",
                    "bare-prefix-upload-url": "https://tfe.example.com/_archivist/",
                    "prefix-without-slash-upload-url": "https://tfe.example.com/_archivist",
                    "not-a-url-upload-url": "_archivist/v1/object/x",
                    "other-scheme-upload-url": "ftp://tfe.example.com/_archivist/v1/object/y"
                },
                "links": {
                    "upload": "https://tfe.example.com/_archivist/v1/object/bGlua3M",
                    "shasums-upload": "https://tfe.example.com/_archivist/v1/object/c2hh",
                    "self": "/_archivist/v1/object/c2VsZg"
                }
            },
            "included": [
                { "attributes": { "upload-url": "https://tfe.example.com/_archivist/v1/object/included" } }
            ]
        });
        let mut found = upload_paths(&storage(), &doc);
        found.sort_unstable();
        assert_eq!(
            found,
            [
                "/_archivist/v1/object/bGlua3M",
                "/_archivist/v1/object/c2hh",
                "/_archivist/v1/object/dmF1bHQ6djE6YWJj",
                "/_archivist/v1/object/json",
            ]
        );
        assert!(upload_paths(&storage(), &json!({"errors": []})).is_empty());
        assert!(upload_paths(&storage(), &json!({"data": [1, 2]})).is_empty());
    }

    #[test]
    fn only_creations_under_the_api_are_read_for_upload_urls() {
        let s = storage();
        for path in [
            "/api/v2/workspaces/ws-1/configuration-versions",
            "/api/v2/workspaces/ws-1/state-versions",
            "/api/v2/policy-sets/polset-1/versions",
            "/api/v2/organizations/acme/registry-providers/private/acme/aws/versions/1.0.0/platforms",
        ] {
            assert!(issues_uploads(&s, &Method::POST, path), "{path}");
            assert!(!issues_uploads(&s, &Method::GET, path), "{path}");
        }
        assert!(!issues_uploads(&s, &Method::POST, "/api/v2/runs"));
        assert!(!issues_uploads(
            &s,
            &Method::POST,
            "/other/configuration-versions"
        ));
        let off = ObjectStorage {
            path_prefix: None,
            ..storage()
        };
        assert!(!issues_uploads(
            &off,
            &Method::POST,
            "/api/v2/workspaces/ws-1/state-versions"
        ));
        assert!(!is_upload(&off, &Method::PUT, "/_archivist/v1/object/x"));
    }

    #[test]
    fn uploads_are_puts_under_the_prefix() {
        let s = storage();
        assert!(is_upload(&s, &Method::PUT, "/_archivist/v1/object/x"));
        assert!(!is_upload(&s, &Method::GET, "/_archivist/v1/object/x"));
        // The prefix itself is in the object storage too: a PUT there needs
        // a grant like any upload (and none is ever kept for it).
        assert!(is_upload(&s, &Method::PUT, "/_archivist/"));
        assert!(is_upload(&s, &Method::PUT, "/_archivist"));
        assert!(!is_upload(&s, &Method::PUT, "/_archivistx/v1"));
        // The policy's templates ignore ASCII case and read a Rails format
        // extension: so does the upload check.
        assert!(is_upload(&s, &Method::PUT, "/_ARCHIVIST/v1/object/x"));
        assert!(is_upload(&s, &Method::PUT, "/_Archivist"));
        assert!(is_upload(&s, &Method::PUT, "/_archivist.json"));
        assert!(!is_upload(&s, &Method::PUT, "/api/v2/_archivist/x"));
        assert_eq!(grant_key("/a").len(), 64);
        assert_ne!(grant_key("/a"), grant_key("/b"));
    }
}
