//! The dashboard: static assets embedded in the binary (`include_str!`), including the
//! vendored uPlot chart library (MIT, `assets/uplot.LICENSE`, from the npm package
//! `uplot` 1.6.32). The page reads the analytics API with a token the user enters
//! (or passes as `#token=...`), so it needs no server-side session.

use axum::extract::Path;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// (name, content type, body) of every asset.
pub const ASSETS: &[(&str, &str, &str)] = &[
    ("index.html", "text/html; charset=utf-8", include_str!("../assets/index.html")),
    ("app.js", "text/javascript; charset=utf-8", include_str!("../assets/app.js")),
    ("app.css", "text/css; charset=utf-8", include_str!("../assets/app.css")),
    ("uplot.min.js", "text/javascript; charset=utf-8", include_str!("../assets/uplot.min.js")),
    ("uplot.min.css", "text/css; charset=utf-8", include_str!("../assets/uplot.min.css")),
    ("uplot.LICENSE", "text/plain; charset=utf-8", include_str!("../assets/uplot.LICENSE")),
];

/// `GET /dashboard/{asset}`.
pub async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, ct, body)) => {
            let mut r = (*body).into_response();
            r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
            r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            r
        }
        None => ApiError::not_found(format!("no dashboard asset `{name}`")).into_response(),
    }
}
