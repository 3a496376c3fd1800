//! The HTTP server: routes, building the shared state, start (`serve`, `spawn`) and
//! graceful shutdown (stop accepting, finish in-flight batches, close the pool).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::config::CollectorConfig;
use crate::conns::{ConnState, ConnTrack};
use crate::db::Db;
use crate::error::ApiError;
pub use crate::error::CollectorError;
use crate::limits::{PricingSettings, RateLimiter};
pub use crate::state::AppState;

/// The OpenAPI document served at `/openapi.json`.
pub use crate::api::ops::OPENAPI;

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
        cfg,
        bootstrap_sha256,
        pricing,
        limiter,
        conns: ConnTrack::default(),
        metrics: db.metrics().clone(),
        db,
    }))
}

/// The router over a state.
pub fn router(st: Arc<AppState>) -> Router {
    let limit = st.cfg.max_body_bytes;
    let mut app = Router::new();
    for r in crate::api::routes() {
        // Two methods of one path merge into one method router.
        app = app.route(r.path, r.handler);
    }
    app.fallback(|| async { ApiError::not_found("no such endpoint; see /openapi.json") })
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
            st.metrics.requests_timed_out.inc();
            let mut r = ApiError::new(StatusCode::REQUEST_TIMEOUT, "request_timeout", format!("the request took longer than {} s (request_timeout_secs); send the body promptly", st.cfg.request_timeout_secs)).into_response();
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            r
        }
    }
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
        let Some((id, conn)) = st.conns.admit(st.cfg.max_connections, &st.metrics) else {
            st.metrics.connections_shed.inc();
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
