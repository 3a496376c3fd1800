//! The dashboard: static assets embedded in the binary (`include_str!`), including the
//! vendored uPlot chart library (MIT, `assets/uplot.LICENSE`, from the npm package
//! `uplot` 1.6.32), and its login session.
//!
//! Sign-in: `GET /dashboard` without a session shows a login form; it posts an admin or
//! read token to `POST /dashboard/login`, which answers with a session cookie
//! (`gr_session`, `HttpOnly; SameSite=Strict; Path=/`, plus `Secure` behind HTTPS as
//! told by `X-Forwarded-Proto: https`) and redirects to the dashboard. The token is
//! never stored by the browser (no `localStorage`, no `#token=` URL). The collector
//! keeps only SHA-256 digests: of the session id and of the token it was opened with,
//! so revoking the token ends its sessions at once. Sessions last
//! [`SESSION_TTL_MS`] (8 hours). `POST /dashboard/logout` ends one.
//!
//! The cookie is accepted only by the read side (`/v1/analytics/*` and
//! `/dashboard/session`); admin endpoints keep requiring a bearer token, so a session
//! opened with an admin token cannot change anything. Every dashboard response carries
//! `Content-Security-Policy` (self only, no inline script, no framing),
//! `X-Frame-Options: DENY`, `X-Content-Type-Options: nosniff` and
//! `Referrer-Policy: no-referrer`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::auth::{Principal, sha256_hex};
use crate::error::ApiError;
use crate::state::AppState;

/// (name, content type, body) of every asset.
pub const ASSETS: &[(&str, &str, &str)] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_str!("../../assets/index.html"),
    ),
    (
        "login.html",
        "text/html; charset=utf-8",
        include_str!("../../assets/login.html"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/app.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("../../assets/app.css"),
    ),
    (
        "uplot.min.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/uplot.min.js"),
    ),
    (
        "uplot.min.css",
        "text/css; charset=utf-8",
        include_str!("../../assets/uplot.min.css"),
    ),
    (
        "uplot.LICENSE",
        "text/plain; charset=utf-8",
        include_str!("../../assets/uplot.LICENSE"),
    ),
];

/// Name of the session cookie.
pub use crate::auth::SESSION_COOKIE as COOKIE;

/// How long a dashboard session lasts.
pub const SESSION_TTL_MS: u64 = 8 * 3600 * 1000;

/// The Content-Security-Policy of every dashboard response.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Add the dashboard's security headers to a response.
pub fn secure(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

fn serve(name: &str) -> Response {
    let r = match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, ct, body)) => {
            let mut r = (*body).into_response();
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            r
        }
        None => ApiError::not_found(format!("no dashboard asset `{name}`")).into_response(),
    };
    secure(r)
}

/// `GET /dashboard/{asset}`.
pub async fn asset(Path(name): Path<String>) -> Response {
    serve(&name)
}

/// `GET /dashboard`: the dashboard with a valid session, else the login page.
pub async fn page(State(st): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    match crate::auth::principal_of_session(&headers, st.bootstrap_sha256.as_deref(), &st.db).await
    {
        Ok(Some(_)) => serve("index.html"),
        _ => serve("login.html"),
    }
}

/// The form of `POST /dashboard/login` (`application/x-www-form-urlencoded`).
#[derive(Debug, PartialEq, Eq)]
pub struct LoginForm {
    /// An admin or read token.
    pub token: String,
}

impl LoginForm {
    /// Parse `token=...`; `None` when the field is missing, repeated, or others are sent.
    pub fn parse(body: &[u8]) -> Option<LoginForm> {
        let mut token = None;
        for (k, v) in url::form_urlencoded::parse(body) {
            if k != "token" || token.is_some() {
                return None;
            }
            token = Some(v.into_owned());
        }
        token.map(|token| LoginForm { token })
    }
}

fn redirect(to: &'static str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    r.headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static(to));
    r
}

fn cookie_attrs(headers: &HeaderMap) -> &'static str {
    let https = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"));
    if https {
        "; Path=/; HttpOnly; SameSite=Strict; Secure"
    } else {
        "; Path=/; HttpOnly; SameSite=Strict"
    }
}

/// `POST /dashboard/login` (form `token=...`): check the token, open a session, set the
/// cookie and redirect (303) to `/dashboard`. A missing, unknown or revoked token
/// answers 401 with the login page and the reason in `#login-error`.
pub async fn login(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let fail = |status: StatusCode, msg: &str| {
        let body = include_str!("../../assets/login.html").replace(
            "<p id=\"login-error\" role=\"alert\"></p>",
            &format!(
                "<p id=\"login-error\" role=\"alert\">{}</p>",
                html_escape(msg)
            ),
        );
        let mut r = (status, body).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        secure(r)
    };
    let Some(form) = LoginForm::parse(&body) else {
        return fail(
            StatusCode::BAD_REQUEST,
            "The form must carry exactly one field, `token`.",
        );
    };
    let token = form.token.trim();
    if token.is_empty() {
        return fail(StatusCode::UNAUTHORIZED, "Enter an admin or read token.");
    }
    let token_hash = sha256_hex(token);
    match crate::auth::principal_of_hash(&token_hash, st.bootstrap_sha256.as_deref(), &st.db).await
    {
        Ok(Some(_)) => {}
        Ok(None) => {
            return fail(
                StatusCode::UNAUTHORIZED,
                "This token is unknown or revoked. Ask your GateRouter admin for a read token.",
            );
        }
        Err(e) => return secure(e.into_response()),
    }
    let session = crate::auth::new_token();
    let now = st.db.clock().now_u64();
    let r = crate::store::sessions::open(
        &st.db,
        &sha256_hex(&session),
        &token_hash,
        now,
        now + SESSION_TTL_MS,
    )
    .await;
    if let Err(e) = r {
        return secure(ApiError::from(e).into_response());
    }
    // Old sessions are deleted here, so the table stays small without a sweeper.
    let _ = crate::store::sessions::expire(&st.db, now).await;
    let mut r = redirect("/dashboard");
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{COOKIE}={session}{}; Max-Age={}",
        cookie_attrs(&headers),
        SESSION_TTL_MS / 1000
    )) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    secure(r)
}

/// `POST /dashboard/logout`: end the session and clear the cookie.
pub async fn logout(State(st): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Some(id) = crate::auth::session_cookie(&headers) {
        let _ = crate::store::sessions::close(&st.db, &sha256_hex(&id)).await;
    }
    let mut r = redirect("/dashboard");
    if let Ok(v) = HeaderValue::from_str(&format!("{COOKIE}={}; Max-Age=0", cookie_attrs(&headers)))
    {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    secure(r)
}

/// `GET /dashboard/session`: who the session (or bearer token) is: role and scope.
pub async fn session(State(st): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let r = match crate::auth::authenticate_read(&headers, st.bootstrap_sha256.as_deref(), &st.db)
        .await
    {
        Ok(Principal::Admin { id }) => {
            axum::Json(json!({"role": "admin", "token_id": id, "org": null, "department": null}))
                .into_response()
        }
        Ok(Principal::Reader {
            id,
            org,
            department,
        }) => axum::Json(
            json!({"role": "read", "token_id": id, "org": org, "department": department}),
        )
        .into_response(),
        Err(e) => e.into_response(),
    };
    secure(r)
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_session_cookie() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; gr_session=abc ; b=2"),
        );
        assert_eq!(crate::auth::session_cookie(&h).as_deref(), Some("abc"));
        h.insert(header::COOKIE, HeaderValue::from_static("gr_session="));
        assert_eq!(crate::auth::session_cookie(&h), None);
        assert_eq!(
            LoginForm::parse(b"token=a%2Bb"),
            Some(LoginForm {
                token: "a+b".into()
            })
        );
        assert_eq!(LoginForm::parse(b"token=a&x=1"), None);
        assert_eq!(LoginForm::parse(b""), None);
        assert_eq!(
            html_escape("<a href=\"x\">&"),
            "&lt;a href=&quot;x&quot;&gt;&amp;"
        );
    }
}
