//! `seer serve`: the HTTP API and web page.
//!
//! Safe by default: binds to loopback, refuses any other address without a bearer
//! token, limits request bodies, times requests out, decodes with pixel limits,
//! addresses files by index id only, and never fetches URLs.

mod batcher;
mod error;
mod metrics;
pub mod openapi;
mod routes;
mod state;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use seer_engine::Clip;
use seer_image::DecodeLimits;

use crate::batcher::Batcher;
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub bind: SocketAddr,
    pub token: Option<String>,
    pub index_dir: PathBuf,
    /// Largest model batch.
    pub max_batch: usize,
    /// How long the first item of a batch waits for company.
    pub max_wait: Duration,
    /// Items that may wait for the model before requests get 503.
    pub queue_capacity: usize,
    pub body_limit: usize,
    pub request_timeout: Duration,
    pub limits: DecodeLimits,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 7860)),
            token: None,
            index_dir: PathBuf::from("."),
            max_batch: 32,
            max_wait: Duration::from_millis(10),
            queue_capacity: 256,
            body_limit: 32 * 1024 * 1024,
            request_timeout: Duration::from_secs(60),
            limits: DecodeLimits {
                max_pixels: 50_000_000,
                ..DecodeLimits::default()
            },
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("refusing to listen on {0} without --token: only loopback addresses may be served without authentication")]
    TokenRequired(SocketAddr),
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    #[error("server error: {0}")]
    Io(#[from] std::io::Error),
}

/// The application: routes, state and middleware (also used by the tests).
pub fn app(clip: Arc<Clip>, config: &ServerConfig) -> Router {
    let batcher = Batcher::start(
        clip.clone(),
        config.max_batch,
        config.max_wait,
        config.queue_capacity,
    );
    let state = Arc::new(AppState {
        clip,
        batcher,
        index_dir: config.index_dir.clone(),
        token: config.token.clone(),
        limits: config.limits,
        metrics: Default::default(),
        job: Mutex::new(Default::default()),
        cache: Mutex::new(None),
    });
    let timeout = config.request_timeout;
    Router::new()
        .route("/", get(routes::page))
        .route("/assets/app.js", get(routes::script))
        .route("/assets/style.css", get(routes::style))
        .route("/healthz", get(routes::healthz))
        .route("/metrics", get(routes::metrics))
        .route("/openapi.json", get(routes::openapi))
        .route("/v1/embed", post(routes::embed))
        .route("/v1/classify", post(routes::classify))
        .route(
            "/v1/search",
            get(routes::search_get).post(routes::search_post),
        )
        .route("/v1/images/{id}", get(routes::image))
        .route("/v1/images/{id}/thumbnail", get(routes::thumbnail))
        .route("/v1/index", post(routes::start_index))
        .route("/v1/index/status", get(routes::index_status))
        .layer(middleware::from_fn_with_state(state.clone(), authorize))
        .layer(middleware::from_fn(move |req, next| {
            with_timeout(timeout, req, next)
        }))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            record_metrics,
        ))
        .layer(DefaultBodyLimit::max(config.body_limit))
        .with_state(state)
}

/// Serves until Ctrl-C. `on_listening` gets the bound address (the real port
/// when `config.bind` asks for port 0).
pub async fn serve(
    clip: Arc<Clip>,
    config: ServerConfig,
    on_listening: impl FnOnce(std::net::SocketAddr),
) -> Result<(), ServeError> {
    if !config.bind.ip().is_loopback() && config.token.is_none() {
        return Err(ServeError::TokenRequired(config.bind));
    }
    let listener = tokio::net::TcpListener::bind(config.bind)
        .await
        .map_err(|e| ServeError::Bind(config.bind, e))?;
    let bound = listener
        .local_addr()
        .map_err(|e| ServeError::Bind(config.bind, e))?;
    tracing::info!("listening on http://{bound}");
    on_listening(bound);
    axum::serve(listener, app(clip, &config))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

/// Bearer token on the API and metrics; the page, its assets and /healthz stay open
/// (the page asks for the token when the API answers 401).
async fn authorize(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let protected = path.starts_with("/v1/") || path == "/metrics" || path == "/openapi.json";
    if let (true, Some(token)) = (protected, &state.token) {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !given.is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes())) {
            return ApiError::new(StatusCode::UNAUTHORIZED, "missing or wrong bearer token")
                .into_response();
        }
    }
    next.run(req).await
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn with_timeout(timeout: Duration, req: Request, next: Next) -> Response {
    match tokio::time::timeout(timeout, next.run(req)).await {
        Ok(response) => response,
        Err(_) => {
            ApiError::new(StatusCode::GATEWAY_TIMEOUT, "the request took too long").into_response()
        }
    }
}

async fn record_metrics(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let start = Instant::now();
    let response = next.run(req).await;
    state.metrics.record(
        &route,
        response.status().as_u16(),
        start.elapsed().as_secs_f64(),
    );
    response
}
