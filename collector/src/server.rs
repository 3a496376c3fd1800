//! The HTTP server: routes, building the shared state, start (`serve`, `spawn`) and
//! graceful shutdown (stop accepting, finish in-flight batches, close the pool).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use gaterouter::usage::BatchResponse;

use crate::config::{CollectorConfig, ConfigError};
use crate::conns::{ConnState, ConnTrack};
use crate::db::{Db, DbError};
use crate::error::ApiError;
use crate::ingest;
use crate::limits::{PricingSettings, RateLimiter};
use crate::metrics::METRICS;
pub use crate::state::AppState;

/// Errors starting the collector.
#[derive(Debug, thiserror::Error)]
pub enum CollectorError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Database unreachable or migrations failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// Cannot bind or serve.
    #[error("collector listen address {addr}: {source}. Fix: choose a free address with --listen")]
    Listen {
        /// Address.
        addr: SocketAddr,
        /// OS error.
        #[source]
        source: std::io::Error,
    },
}

/// Every route, as (method, path) — the OpenAPI test checks each is documented.
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
    ("post", "/v1/usage"),
    ("get", "/v1/admin/{kind}"),
    ("post", "/v1/admin/{kind}"),
    ("get", "/v1/admin/keys"),
    ("post", "/v1/admin/keys"),
    ("post", "/v1/admin/keys/{id}/rotate"),
    ("post", "/v1/admin/keys/{id}/revoke"),
    ("get", "/v1/admin/tokens"),
    ("post", "/v1/admin/tokens"),
    ("post", "/v1/admin/tokens/{id}/revoke"),
    ("get", "/v1/admin/audit"),
    ("get", "/v1/admin/org-tree"),
    ("put", "/v1/admin/org-tree"),
    ("get", "/v1/admin/policies/{level}"),
    ("put", "/v1/admin/policies/{level}"),
    ("delete", "/v1/admin/policies/{level}"),
    ("get", "/v1/admin/budgets"),
    ("post", "/v1/admin/budgets"),
    ("delete", "/v1/admin/budgets/{id}"),
    ("get", "/v1/admin/alerts"),
    ("get", "/v1/admin/bills"),
    ("get", "/v1/admin/groups/{id}/members"),
    ("post", "/v1/admin/groups/{id}/members"),
    ("delete", "/v1/admin/groups/{id}/members/{user}"),
    ("get", "/v1/admin/effective-policy"),
    ("get", "/v1/admin/orgs/{org}/routing"),
    ("put", "/v1/admin/orgs/{org}/routing"),
    ("post", "/v1/admin/orgs/{org}/routing/learn"),
    ("get", "/v1/policy"),
    ("post", "/v1/reservations"),
    ("post", "/v1/reservations/{id}/settle"),
    ("get", "/v1/analytics/{report}"),
    ("get", "/"),
    ("get", "/dashboard"),
    ("get", "/dashboard/{asset}"),
    ("post", "/dashboard/login"),
    ("post", "/dashboard/logout"),
    ("get", "/dashboard/session"),
];

/// The OpenAPI document served at `/openapi.json`.
pub const OPENAPI: &str = include_str!("../openapi.json");

/// Build the state (connects and migrates the database).
pub async fn build_state(cfg: CollectorConfig) -> Result<Arc<AppState>, CollectorError> {
    cfg.validate()?;
    let db = Db::connect(&cfg.db_url()?, cfg.db_max_connections).await?;
    let bootstrap_sha256 = cfg
        .admin_token_sha256
        .clone()
        .map(|s| s.to_ascii_lowercase())
        .or_else(|| cfg.admin_token.as_deref().map(crate::auth::sha256_hex));
    let pricing = PricingSettings {
        catalog: gaterouter::pricing::Catalog::builtin().clone(),
        strongest: cfg.strongest_model.clone(),
        tolerance_micros: cfg.cost_tolerance_micros,
        max_record_tokens: cfg.max_record_tokens,
        max_record_cost_micros: cfg.max_record_cost_micros,
        max_record_age_ms: cfg.max_record_age_days.saturating_mul(86_400_000),
        unknown_model: cfg.unknown_model,
        unknown_model_micros_per_mtok: cfg.unknown_model_micros_per_mtok,
    };
    let limiter = RateLimiter::new(cfg.rate_limit_records_per_sec, cfg.burst());
    Ok(Arc::new(AppState {
        db,
        cfg,
        bootstrap_sha256,
        pricing,
        limiter,
        conns: ConnTrack::default(),
    }))
}

/// The router over a state.
pub fn router(st: Arc<AppState>) -> Router {
    let limit = st.cfg.max_body_bytes;
    Router::new()
        .route(
            "/healthz",
            get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }),
        )
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route(
            "/openapi.json",
            get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI) }),
        )
        .route("/v1/usage", post(ingest_handler))
        .route(
            "/v1/admin/keys",
            get(crate::admin::list_keys).post(crate::admin::create_key),
        )
        .route("/v1/admin/keys/{id}/rotate", post(crate::admin::rotate_key))
        .route("/v1/admin/keys/{id}/revoke", post(crate::admin::revoke_key))
        .route(
            "/v1/admin/tokens",
            get(crate::admin::list_tokens).post(crate::admin::create_token),
        )
        .route(
            "/v1/admin/tokens/{id}/revoke",
            post(crate::admin::revoke_token),
        )
        .route("/v1/admin/audit", get(crate::admin::list_audit))
        .route(
            "/v1/admin/org-tree",
            get(crate::orgtree::get_org_tree).put(crate::orgtree::put_org_tree),
        )
        .route(
            "/v1/admin/policies/{level}",
            get(crate::orgtree::get_policy)
                .put(crate::orgtree::put_policy)
                .delete(crate::orgtree::delete_policy),
        )
        .route(
            "/v1/admin/budgets",
            get(crate::orgtree::list_budgets).post(crate::orgtree::create_budget),
        )
        .route(
            "/v1/admin/budgets/{id}",
            axum::routing::delete(crate::orgtree::delete_budget),
        )
        .route("/v1/admin/alerts", get(crate::orgtree::list_alerts))
        .route("/v1/admin/bills", get(crate::bills::get_bill))
        .route(
            "/v1/admin/groups/{id}/members",
            get(crate::orgtree::list_members).post(crate::orgtree::add_member),
        )
        .route(
            "/v1/admin/groups/{id}/members/{user}",
            axum::routing::delete(crate::orgtree::remove_member),
        )
        .route(
            "/v1/admin/effective-policy",
            get(crate::orgtree::effective_policy),
        )
        .route(
            "/v1/admin/orgs/{org}/routing",
            get(crate::learning::get_routing).put(crate::learning::put_routing),
        )
        .route(
            "/v1/admin/orgs/{org}/routing/learn",
            post(crate::learning::post_learn),
        )
        .route("/v1/policy", get(crate::accounts::get_policy))
        .route("/v1/reservations", post(crate::accounts::reserve))
        .route(
            "/v1/reservations/{id}/settle",
            post(crate::accounts::settle),
        )
        .route(
            "/v1/admin/{kind}",
            get(crate::admin::list_units).post(crate::admin::create_unit),
        )
        .route("/v1/analytics/{report}", get(crate::analytics::report))
        .route(
            "/",
            get(|| async { axum::response::Redirect::to("/dashboard") }),
        )
        .merge(crate::dashboard::routes())
        .fallback(|| async { ApiError::not_found("no such endpoint; see /openapi.json") })
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn_with_state(
            st.clone(),
            request_timeout,
        ))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(st)
}

/// Security headers on every response except the dashboard's (which sets its own):
/// nothing here is meant to be framed, sniffed or run scripts.
async fn security_headers(uri: axum::http::Uri, mut r: Response) -> Response {
    if uri.path() == "/dashboard" || uri.path().starts_with("/dashboard/") {
        return r;
    }
    let h = r.headers_mut();
    for (name, value) in [
        (
            "content-security-policy",
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
        ),
        ("x-frame-options", "DENY"),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
    ] {
        if !h.contains_key(name) {
            h.insert(name, HeaderValue::from_static(value));
        }
    }
    r
}

/// A request (body upload included) that takes longer than `request_timeout_secs` is
/// answered 408 and its connection closed: a slow body cannot hold a slot forever.
async fn request_timeout(
    State(st): State<Arc<AppState>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let t = Duration::from_secs(st.cfg.request_timeout_secs);
    match tokio::time::timeout(t, next.run(req)).await {
        Ok(r) => r,
        Err(_) => {
            METRICS
                .requests_timed_out
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mut r = ApiError::new(StatusCode::REQUEST_TIMEOUT, "request_timeout", format!("the request took longer than {} s (request_timeout_secs); send the body promptly", st.cfg.request_timeout_secs)).into_response();
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            r
        }
    }
}

async fn readyz(State(st): State<Arc<AppState>>) -> Response {
    if st.db.ping().await {
        axum::Json(serde_json::json!({"status": "ready"})).into_response()
    } else {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "the database does not answer",
        )
        .into_response()
    }
}

async fn metrics() -> Response {
    let mut r = METRICS.render().into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    r
}

/// `POST /v1/usage`.
async fn ingest_handler(
    State(st): State<Arc<AppState>>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<axum::Json<BatchResponse>, ApiError> {
    let bad = |e: ApiError| {
        METRICS.bad_request();
        e
    };
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            bad(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!(
                    "request body exceeds max_body_bytes ({} bytes): send smaller batches",
                    st.cfg.max_body_bytes
                ),
            ))
        } else {
            bad(ApiError::bad_request(format!(
                "cannot read the body: {}",
                e.body_text()
            )))
        }
    })?;
    let req: ingest::BatchRequest<'_> = serde_json::from_slice(&body).map_err(|e| {
        bad(ApiError::bad_request(format!(
            "body is not {{\"records\":[...]}}: {e}"
        )))
    })?;
    if req.records.len() > st.cfg.max_batch_records {
        return Err(bad(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "batch_too_large",
            format!(
                "batch has {} records, at most {} are accepted: send smaller batches",
                req.records.len(),
                st.cfg.max_batch_records
            ),
        )));
    }
    METRICS.batch();
    let tri = ingest::triage(&req.records);
    let now = gaterouter::usage::unix_ms_now() as i64;
    let t0 = std::time::Instant::now();
    let key_ids: HashSet<String> = tri
        .todo
        .iter()
        .chain(&tri.feedback)
        .map(|(_, _, k, _)| k.clone())
        .collect();
    let keys = crate::store::keys::load_keys(&st.db, &key_ids, now).await?;
    // Verification is CPU-bound: run it off the async workers.
    let owned = |v: &[(usize, String, String, &str)]| -> Vec<(usize, String, String, String)> {
        v.iter()
            .map(|(i, id, k, raw)| (*i, id.clone(), k.clone(), (*raw).to_owned()))
            .collect()
    };
    let (todo, fb_todo) = (owned(&tri.todo), owned(&tri.feedback));
    let st2 = st.clone();
    let results = tokio::task::spawn_blocking(move || {
        let b1: Vec<(usize, String, String, &str)> = todo
            .iter()
            .map(|(i, id, k, raw)| (*i, id.clone(), k.clone(), raw.as_str()))
            .collect();
        let b2: Vec<(usize, String, String, &str)> = fb_todo
            .iter()
            .map(|(i, id, k, raw)| (*i, id.clone(), k.clone(), raw.as_str()))
            .collect();
        let r = ingest::verify_all(&b1, &keys, &st2.pricing);
        let f = ingest::verify_feedback(&b2, &keys, &st2.pricing);
        (todo, r, fb_todo, f)
    })
    .await
    .map_err(|e| crate::error::internal(&format!("verification task failed: {e}")))?;
    let (todo, results, fb_todo, fb_results) = results;
    let t_verify = t0.elapsed();
    // The per-key rate limit is charged only after authentication (issue 18, item 2):
    // records of an unknown or revoked key, or whose signature does not verify, cost
    // the named key nothing, so a forger cannot exhaust an honest key's limit.
    let mut counts: HashMap<String, u64> = HashMap::new();
    let authenticated = |e: Option<&crate::verified::Refusal>| {
        e.is_none_or(|e| {
            !matches!(
                e.code,
                "unknown_key" | "revoked_key" | "bad_signature" | "malformed"
            )
        })
    };
    for ((_, _, k, _), r) in todo.iter().zip(&results) {
        if authenticated(r.as_ref().err()) {
            *counts.entry(k.clone()).or_default() += 1;
        }
    }
    for ((_, _, k, _), r) in fb_todo.iter().zip(&fb_results) {
        if authenticated(r.as_ref().err()) {
            *counts.entry(k.clone()).or_default() += 1;
        }
    }
    if let Err((key, wait)) = st.limiter.take(&counts) {
        METRICS.rate_limited();
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!(
                "api_key_id `{}` exceeds {} records/s; retry after {wait} s",
                crate::logsafe::escape(&key),
                st.cfg.rate_limit_records_per_sec
            ),
        );
        e.retry_after = Some(wait);
        return Err(e);
    }
    let mut verified = Vec::new();
    let mut refused = Vec::new();
    for ((_, id, _, _), r) in todo.into_iter().zip(results) {
        match r {
            Ok(v) => verified.push((id, v)),
            Err(e) => refused.push((id, e)),
        }
    }
    let (kept, off_tree) = crate::accounts::check_tree(&st.db, verified).await?;
    refused.extend(off_tree);
    let (ok_ids, ok): (Vec<String>, Vec<crate::verified::Verified>) = kept.into_iter().unzip();
    let mut stored = ingest::store(&st.db, &ok, now).await?;
    let mut ok_ids = ok_ids;
    let mut fb_ok = Vec::new();
    for ((_, id, _, _), r) in fb_todo.into_iter().zip(fb_results) {
        match r {
            Ok(v) => {
                ok_ids.push(id);
                fb_ok.push(v);
            }
            Err(e) => refused.push((id, e)),
        }
    }
    stored.extend(ingest::store_feedback(&st.db, &fb_ok, now).await?);
    let t_store = t0.elapsed() - t_verify;
    let resp = ingest::answer(tri.rejected, tri.duplicate, &ok_ids, &stored, refused);
    if !resp.rejected.is_empty() {
        tracing::warn!(rejected = resp.rejected.len(), first_reason = %crate::logsafe::escape(&resp.rejected[0].reason), "usage records rejected");
    }
    tracing::debug!(
        verify_ms = t_verify.as_millis() as u64,
        store_ms = t_store.as_millis() as u64,
        accepted = resp.accepted.len(),
        duplicate = resp.duplicate.len(),
        rejected = resp.rejected.len(),
        "ingested batch"
    );
    Ok(axum::Json(resp))
}

/// A collector running in this process.
#[derive(Debug)]
pub struct CollectorHandle {
    addr: SocketAddr,
    state: Arc<AppState>,
    stop: Option<tokio::sync::watch::Sender<bool>>,
    join: tokio::task::JoinHandle<Result<(), std::io::Error>>,
    /// The OpenTelemetry exporter task, when `otlp_endpoint` is set.
    exporter: Option<tokio::task::JoinHandle<()>>,
    /// The periodic routing learning task, when `learn_interval_secs` > 0.
    learner: Option<tokio::task::JoinHandle<()>>,
}

impl CollectorHandle {
    /// The bound address (useful with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    /// `http://addr`, the value for `reporting.collector_url`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
    /// The shared state (database handle, config).
    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }
    /// Open client connections right now.
    pub fn open_connections(&self) -> usize {
        self.state.conns.len()
    }
    /// Is the OpenTelemetry exporter running?
    pub fn exporting(&self) -> bool {
        self.exporter.as_ref().is_some_and(|j| !j.is_finished())
    }
    /// Stop accepting connections, let in-flight requests (and an export request in
    /// flight) finish (up to `shutdown_timeout_secs`), then close the database pool.
    pub async fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(true);
        }
        let t = Duration::from_secs(self.state.cfg.shutdown_timeout_secs);
        let exporter = async {
            if let Some(mut e) = self.exporter.take() {
                if tokio::time::timeout(t, &mut e).await.is_err() {
                    e.abort();
                }
            }
        };
        if let Some(l) = self.learner.take() {
            // A run in progress is cut short; the next start runs it again.
            l.abort();
        }
        let _ = tokio::join!(tokio::time::timeout(t, &mut self.join), exporter);
        self.state.db.close().await;
    }
}

/// The router as a hyper service that counts requests in progress on its connection.
#[derive(Clone)]
struct Tracked {
    app: Router,
    conn: Arc<ConnState>,
}

struct InFlight(Arc<ConnState>);
impl Drop for InFlight {
    fn drop(&mut self) {
        self.0
            .in_flight
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

impl hyper::service::Service<hyper::Request<hyper::body::Incoming>> for Tracked {
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Response, std::convert::Infallible>> + Send>,
    >;
    fn call(&self, req: hyper::Request<hyper::body::Incoming>) -> Self::Future {
        use tower::ServiceExt as _;
        self.conn
            .in_flight
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let guard = InFlight(self.conn.clone());
        let app = self.app.clone();
        Box::pin(async move {
            let r = app.oneshot(req.map(axum::body::Body::new)).await;
            drop(guard);
            r
        })
    }
}

/// Accept connections until `stop`, each served by hyper's HTTP/1 with a header read
/// timeout (which also closes idle keep-alive connections), under the connection cap.
async fn accept_loop(
    listener: tokio::net::TcpListener,
    st: Arc<AppState>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), std::io::Error> {
    let app = router(st.clone());
    let header_timeout = Duration::from_secs(st.cfg.header_read_timeout_secs);
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        while tasks.try_join_next().is_some() {}
        let Some((id, conn)) = st.conns.admit(st.cfg.max_connections) else {
            METRICS
                .connections_shed
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let svc = Tracked {
            app: app.clone(),
            conn: conn.clone(),
        };
        let st2 = st.clone();
        let mut stop2 = stop.clone();
        tasks.spawn(async move {
            let c = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(header_timeout)
                .keep_alive(true)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
            tokio::pin!(c);
            let stopping = tokio::select! {
                _ = c.as_mut() => false,
                _ = conn.kill.notified() => false,
                _ = stop2.changed() => true,
            };
            if stopping {
                c.as_mut().graceful_shutdown();
                let _ = c.as_mut().await;
            }
            st2.conns.remove(id);
        });
    }
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// Start a collector on the current tokio runtime and return at once (after binding and
/// migrating). Use `listen = 127.0.0.1:0` for a free port.
pub async fn spawn(cfg: CollectorConfig) -> Result<CollectorHandle, CollectorError> {
    let st = build_state(cfg).await?;
    let addr = st.cfg.listen;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| CollectorError::Listen { addr, source })?;
    let addr = listener
        .local_addr()
        .map_err(|source| CollectorError::Listen { addr, source })?;
    let (tx, rx) = tokio::sync::watch::channel(false);
    let exporter = crate::otlp_export::start(&st.db, &st.cfg, rx.clone()).await?;
    let learner = crate::learning::start(
        st.db.clone(),
        Duration::from_secs(st.cfg.learn_interval_secs),
        rx.clone(),
    );
    let join = tokio::spawn(accept_loop(listener, st.clone(), rx));
    tracing::info!(%addr, backend = ?st.db.backend(), "collector listening");
    Ok(CollectorHandle {
        addr,
        state: st,
        stop: Some(tx),
        join,
        exporter,
        learner,
    })
}

/// Run a collector until Ctrl-C or SIGTERM, then shut down gracefully.
pub async fn serve(cfg: CollectorConfig) -> Result<(), CollectorError> {
    let h = spawn(cfg).await?;
    shutdown_signal().await;
    tracing::info!("shutting down: finishing in-flight requests");
    h.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
