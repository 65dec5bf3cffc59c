//! The stylesheet, script and icon, compiled into the binary (`include_bytes!`) and served
//! under `/assets/<version>/<name>`, where the version is a hash of their contents: a page
//! always asks for the assets it was rendered with, so they can be cached for good.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

/// Name, content type, bytes.
const ASSETS: [(&str, &str, &[u8]); 3] = [
    (
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("../../assets/app.css"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/app.js"),
    ),
    (
        "icon.svg",
        "image/svg+xml",
        include_bytes!("../../assets/icon.svg"),
    ),
];

static VERSION: LazyLock<String> = LazyLock::new(|| {
    let mut h = Sha256::new();
    for (name, _, body) in ASSETS {
        h.update(name.as_bytes());
        h.update(body);
    }
    hex::encode(h.finalize())[..12].to_owned()
});

/// The current asset version (part of every asset URL).
pub fn version() -> &'static str {
    &VERSION
}

/// `GET /assets/{version}/{name}` (no login needed: nothing here is private).
pub async fn serve(Path((v, name)): Path<(String, String)>) -> Response {
    let Some((_, ctype, body)) = ASSETS.iter().find(|(n, _, _)| *n == name) else {
        return (StatusCode::NOT_FOUND, "no such asset").into_response();
    };
    let cache = if v == version() {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(ctype)),
            (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
        ],
        *body,
    )
        .into_response()
}
