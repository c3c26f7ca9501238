//! The UI's stylesheet and script, embedded in the binary (nothing is read
//! from disk at run time) and served under `/_tokengate/ui/assets/`.

use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue};

use super::UiError;

const CSS: &str = include_str!("assets/app.css");
const JS: &str = include_str!("assets/app.js");

/// `GET /assets/{file}`.
pub async fn serve(Path(file): Path<String>) -> Result<Response, UiError> {
    let (body, kind) = match file.as_str() {
        "app.css" => (CSS, "text/css; charset=utf-8"),
        "app.js" => (JS, "text/javascript; charset=utf-8"),
        _ => return Err(UiError::NotFound),
    };
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    // Pages change with the binary; the browser asks again after an hour.
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    Ok(response)
}
