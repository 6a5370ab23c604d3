//! `seer serve`: the HTTP API and web page.
//!
//! Safe by default: binds to loopback, refuses any other address without a bearer
//! token, limits request bodies, headers' arrival time, connections and request
//! time, decodes with pixel limits, addresses files by index id only (and reads
//! only indexed files really inside the index's roots), answers every error as
//! JSON, and never fetches URLs.

mod batcher;
mod classifiers;
mod error;
mod files;
mod listen;
mod loopback;
mod metrics;
mod models;
pub mod openapi;
#[cfg(test)]
mod request_tests;
mod routes;
mod state;
#[cfg(test)]
mod task_tests;
mod tasks;
mod thumbnails;
mod video;
#[cfg(test)]
mod video_tests;
mod vision;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use seer_engine::LoadedModel;
use seer_image::DecodeLimits;

use crate::error::ApiError;
use crate::models::{BatchSettings, ServedModels};
use crate::state::AppState;
use crate::tasks::{Head, TaskServer, Tasks};

/// The language models a server may hold besides its embedding models, each
/// for its routes: captions (`/v1/caption`, and the index job captions new
/// photos), answers (`/v1/ask`) and image-text matching (`/v1/match`,
/// `rerank` in `/v1/search`).
#[derive(Clone, Default)]
pub struct TaskModels {
    pub caption: Option<LoadedModel>,
    pub vqa: Option<LoadedModel>,
    pub matcher: Option<LoadedModel>,
    /// A SAM checkpoint for `/v1/segment` (`--segment-model`).
    pub segment: Option<LoadedModel>,
    /// An OWL-ViT or OWLv2 checkpoint for `/v1/detect` and the page's "show
    /// where" (`--detect-model`).
    pub detect: Option<LoadedModel>,
}

impl TaskModels {
    fn heads(&self) -> [(Head, Option<&LoadedModel>); 3] {
        [
            (Head::Caption, self.caption.as_ref()),
            (Head::Answer, self.vqa.as_ref()),
            (Head::Match, self.matcher.as_ref()),
        ]
    }

    /// Each model has the head it is given for (a captioning checkpoint for
    /// captions, ...): the model's own error naming what it lacks otherwise.
    pub fn check(&self) -> Result<(), ServeError> {
        for (head, model) in self.heads() {
            if let Some(m) = model {
                head.check(m)
                    .map_err(|e| ServeError::Head(head.option(), e))?;
            }
        }
        if let Some(m) = &self.segment {
            vision::check_segmenter(m).map_err(|e| ServeError::Head("--segment-model", e))?;
        }
        if let Some(m) = &self.detect {
            seer_engine::detect::detector_of(m)
                .map_err(|e| ServeError::Head("--detect-model", e))?;
        }
        Ok(())
    }
}

/// Where to listen: an IP address or a host name, and a port. A name is
/// resolved when the server starts, and served on the first of its addresses
/// that can be bound (as `TcpListener::bind` does with a name).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindAddr {
    /// An IP address (an IPv6 one without its brackets) or a host name.
    host: String,
    port: u16,
}

impl From<SocketAddr> for BindAddr {
    fn from(addr: SocketAddr) -> Self {
        BindAddr {
            host: addr.ip().to_string(),
            port: addr.port(),
        }
    }
}

impl std::fmt::Display for BindAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.host.contains(':') {
            true => write!(f, "[{}]:{}", self.host, self.port),
            false => write!(f, "{}:{}", self.host, self.port),
        }
    }
}

/// Why a `--bind` value is not an address to listen on.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BindAddrError {
    #[error("expected HOST:PORT (e.g. 127.0.0.1:7860, localhost:7860 or [::1]:7860)")]
    NotHostPort,
    #[error("the port must be a number from 0 to 65535")]
    BadPort,
    #[error("an IPv6 address goes in brackets, e.g. [::1]:7860")]
    UnbracketedIpv6,
}

impl std::str::FromStr for BindAddr {
    type Err = BindAddrError;

    fn from_str(given: &str) -> Result<Self, BindAddrError> {
        if let Ok(addr) = given.parse::<SocketAddr>() {
            return Ok(addr.into());
        }
        let (host, port) = given
            .rsplit_once(':')
            .filter(|(host, _)| !host.is_empty())
            .ok_or(BindAddrError::NotHostPort)?;
        if host.contains(':') || host.starts_with('[') {
            return Err(BindAddrError::UnbracketedIpv6);
        }
        if host.contains(|c: char| c.is_whitespace() || c.is_control() || c == '/') {
            return Err(BindAddrError::NotHostPort);
        }
        let port = port.parse().map_err(|_| BindAddrError::BadPort)?;
        Ok(BindAddr {
            host: host.to_string(),
            port,
        })
    }
}

impl BindAddr {
    /// The addresses to try, in order: the IP address given, or those the
    /// host name resolves to.
    async fn resolve(&self) -> Result<Vec<SocketAddr>, ServeError> {
        if let Ok(ip) = self.host.parse::<std::net::IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, self.port)]);
        }
        let failed = |e| ServeError::Resolve(self.to_string(), e);
        let found: Vec<SocketAddr> = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .map_err(failed)?
            .collect();
        if found.is_empty() {
            return Err(failed(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "the name has no address",
            )));
        }
        Ok(found)
    }
}

/// The first of `addrs` that is not loopback: serving it without a token
/// would open the index to whoever can reach it. A name counts as loopback
/// only when every address it resolves to is (`localhost` is).
fn first_not_loopback(addrs: &[SocketAddr]) -> Option<SocketAddr> {
    addrs.iter().copied().find(|a| !a.ip().is_loopback())
}

#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Where to listen (default 127.0.0.1:7860).
    pub bind: BindAddr,
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
    /// How long a client may take to send a request's headers (and how long an
    /// idle keep-alive connection stays open).
    pub header_timeout: Duration,
    /// Open connections at most; more wait to be accepted.
    pub max_connections: usize,
    pub limits: DecodeLimits,
    /// Search a model with at least this many vectors with its approximate index.
    pub ann_threshold: usize,
    /// The ffmpeg that shows video frames and indexes new videos; None (the
    /// default: `seer serve` looks for it) leaves videos searchable, their
    /// thumbnails answer 503 and index jobs leave new videos for later.
    pub ffmpeg: Option<seer_video::Ffmpeg>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 7860)).into(),
            token: None,
            index_dir: PathBuf::from("."),
            max_batch: 32,
            max_wait: Duration::from_millis(10),
            queue_capacity: 256,
            body_limit: 32 * 1024 * 1024,
            request_timeout: Duration::from_secs(60),
            header_timeout: Duration::from_secs(10),
            max_connections: 1024,
            limits: DecodeLimits {
                max_pixels: 50_000_000,
                ..DecodeLimits::default()
            },
            ann_threshold: seer_index::ann::ANN_THRESHOLD,
            ffmpeg: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("refusing to listen on {0} without --token: only loopback addresses may be served without authentication")]
    TokenRequired(String),
    #[error(transparent)]
    BadToken(#[from] TokenError),
    #[error("cannot find the address of {0}: {1}")]
    Resolve(String, std::io::Error),
    #[error("cannot listen on {0}: {1}")]
    Bind(String, std::io::Error),
    #[error("server error: {0}")]
    Io(#[from] std::io::Error),
    #[error("no model to serve")]
    NoModel,
    #[error("{0}: {1}")]
    Head(&'static str, seer_engine::EngineError),
}

/// Why a bearer token cannot work: with it every API call would be answered 401.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("the token is empty or only whitespace: give a secret (e.g. `openssl rand -hex 16`), or none at all (loopback only)")]
    Empty,
    #[error("the token starts or ends with whitespace, which HTTP clients strip from the header, so no request could match it")]
    SurroundingWhitespace,
    #[error("the token has characters other than printable ASCII, which an Authorization header cannot carry as given")]
    NotPrintableAscii,
    #[error("the token has {0} characters: it needs at least {MIN_TOKEN_LEN}, or anyone who can reach the server could find it by trying (`openssl rand -hex 16` gives 32)")]
    TooShort(usize),
}

/// The shortest token accepted. Failed attempts are answered 401 as fast as
/// any request, without a limit: only the token's length stands between a
/// client that may reach the port and the index.
pub const MIN_TOKEN_LEN: usize = 16;

/// Checks that a token can be sent as `Authorization: Bearer TOKEN` and match.
pub fn check_token(token: &str) -> Result<(), TokenError> {
    if token.trim().is_empty() {
        return Err(TokenError::Empty);
    }
    if token.trim() != token {
        return Err(TokenError::SurroundingWhitespace);
    }
    if !token.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(TokenError::NotPrintableAscii);
    }
    if token.len() < MIN_TOKEN_LEN {
        return Err(TokenError::TooShort(token.len()));
    }
    Ok(())
}

/// The application: routes, state and middleware (also used by the tests).
/// It serves `models` (at least one), each loaded once with its own batcher;
/// the first is the default, used by requests that name none.
pub fn app(models: Vec<LoadedModel>, config: &ServerConfig) -> Router {
    app_with(models, TaskModels::default(), config)
}

/// [`app`] with language models for captions, answers and matching. Check
/// them with [`TaskModels::check`] first ([`serve`] does): a model without its
/// head answers every request for it with an error.
pub fn app_with(models: Vec<LoadedModel>, tasks: TaskModels, config: &ServerConfig) -> Router {
    let batching = BatchSettings {
        max_batch: config.max_batch,
        max_wait: config.max_wait,
        queue_capacity: config.queue_capacity,
    };
    let start = |head: Head, model: Option<LoadedModel>| {
        model.map(|m| TaskServer::start(head, m, batching))
    };
    let state = Arc::new(AppState {
        tasks: Tasks {
            caption: start(Head::Caption, tasks.caption),
            answer: start(Head::Answer, tasks.vqa),
            matcher: start(Head::Match, tasks.matcher),
        },
        vision: vision::Vision {
            segment: tasks
                .segment
                .and_then(|m| vision::Segmentation::new(m, config.queue_capacity)),
            detect: tasks
                .detect
                .and_then(|m| vision::Detection::new(m, config.queue_capacity)),
            stats: Default::default(),
        },
        models: ServedModels::start(models, batching),
        index_dir: config.index_dir.clone(),
        token: config.token.clone(),
        limits: config.limits,
        metrics: Default::default(),
        job: Mutex::new(Default::default()),
        video_slots: video::Slots::for_cores(),
        ann_threshold: config.ann_threshold,
        ffmpeg: config.ffmpeg.clone(),
        request_timeout: config.request_timeout,
    });
    let timeout = config.request_timeout;
    let body_limit = config.body_limit;
    let routes = Router::new()
        .route("/", get(routes::page))
        .route("/assets/app.js", get(routes::script))
        .route("/assets/style.css", get(routes::style))
        .route("/healthz", get(routes::healthz))
        .route("/metrics", get(routes::metrics))
        .route("/openapi.json", get(routes::openapi))
        .route("/v1/models", get(routes::models))
        .route("/v1/embed", post(routes::embed))
        .route("/v1/classify", post(routes::classify))
        .route("/v1/caption", post(routes::caption))
        .route("/v1/ask", post(routes::ask))
        .route("/v1/match", post(routes::match_texts))
        .route("/v1/segment", post(routes::segment))
        .route("/v1/detect", post(routes::detect))
        .route(
            "/v1/search",
            get(routes::search_get).post(routes::search_post),
        )
        .route("/v1/duplicates", get(routes::duplicates))
        .route("/v1/images/{id}", get(routes::image))
        .route("/v1/images/{id}/thumbnail", get(routes::thumbnail))
        .route("/v1/images/{id}/info", get(routes::image_info))
        .route("/v1/index", post(routes::start_index))
        .route("/v1/index/status", get(routes::index_status))
        .fallback(routes::no_route)
        .layer(middleware::from_fn(move |req, next| {
            refuse_large_bodies(body_limit, req, next)
        }))
        .layer(middleware::from_fn_with_state(state.clone(), authorize))
        .layer(middleware::from_fn(move |req, next| {
            with_timeout(timeout, req, next)
        }))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            record_metrics,
        ))
        .layer(DefaultBodyLimit::max(config.body_limit))
        .with_state(state);
    // Around the whole router, not each route (as `Router::layer` puts them):
    // a route's 405 gets its `Allow` header only on its way out of the route,
    // and the JSON error says which methods the route allows.
    Router::new()
        .fallback_service(routes)
        .layer(middleware::from_fn(error::json_errors))
        .layer(middleware::from_fn(no_sniff))
}

/// Serves `models` (the first is the default; see [`app`]) and `tasks` until
/// SIGINT (Ctrl-C) or SIGTERM, then lets requests in flight finish. `on_listening` gets the bound address (the real port when
/// `config.bind` asks for port 0).
pub async fn serve(
    models: Vec<LoadedModel>,
    tasks: TaskModels,
    config: ServerConfig,
    on_listening: impl FnOnce(std::net::SocketAddr),
) -> Result<(), ServeError> {
    if models.is_empty() {
        return Err(ServeError::NoModel);
    }
    tasks.check()?;
    if let Some(token) = &config.token {
        check_token(token)?;
    }
    let addrs = config.bind.resolve().await?;
    if let Some(open) = first_not_loopback(&addrs).filter(|_| config.token.is_none()) {
        let named = match open.to_string() == config.bind.to_string() {
            true => open.to_string(),
            false => format!("{} ({open})", config.bind),
        };
        return Err(ServeError::TokenRequired(named));
    }
    // Watched from before the address is announced: a stop sent as soon as
    // the server says it listens is never taken the default way (killed).
    let stop = shutdown_signals()?;
    let bind_error = |e| ServeError::Bind(config.bind.to_string(), e);
    let listener = tokio::net::TcpListener::bind(addrs.as_slice())
        .await
        .map_err(bind_error)?;
    let bound = listener.local_addr().map_err(bind_error)?;
    tracing::info!("listening on http://{bound}");
    on_listening(bound);
    let limits = listen::ConnectionLimits {
        header_timeout: config.header_timeout,
        max_connections: config.max_connections,
        // A response the client stops reading gets as long as a request.
        write_timeout: config.request_timeout,
    };
    listen::serve(listener, app_with(models, tasks, &config), limits, stop).await;
    Ok(())
}

/// Completes at the first SIGINT (Ctrl-C) or SIGTERM: both stop the server
/// gracefully, since service managers (systemd, docker, Kubernetes) stop
/// services with SIGTERM. A signal the process was started ignoring (a
/// script's background job) stays ignored, as in every other command.
#[cfg(unix)]
fn shutdown_signals() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let watch = |kind: SignalKind| -> std::io::Result<Option<tokio::signal::unix::Signal>> {
        match seer_util::signals::ignored_at_start(kind.as_raw_value()) {
            true => Ok(None),
            false => signal(kind).map(Some),
        }
    };
    let mut interrupt = watch(SignalKind::interrupt())?;
    let mut terminate = watch(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = received(interrupt.as_mut()) => {}
            _ = received(terminate.as_mut()) => {}
        }
    })
}

/// The next `signal`; never for one not watched.
#[cfg(unix)]
async fn received(signal: Option<&mut tokio::signal::unix::Signal>) {
    match signal {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}

#[cfg(not(unix))]
fn shutdown_signals() -> std::io::Result<impl std::future::Future<Output = ()>> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}

/// Bearer token on the API and metrics; the page, its assets and /healthz stay open
/// (the page asks for the token when the API answers 401; /healthz then tells
/// only liveness). Without a token, only loopback names and pages (see `loopback`).
async fn authorize(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    if state.token.is_none() {
        if let Err(refused) = loopback::check(req.method(), req.uri(), req.headers()) {
            return refused.into_response();
        }
    }
    let path = req.uri().path();
    let protected = path.starts_with("/v1/") || path == "/metrics" || path == "/openapi.json";
    if protected && !state.authorized(req.headers()) {
        return ApiError::new(StatusCode::UNAUTHORIZED, "missing or wrong bearer token")
            .into_response();
    }
    next.run(req).await
}

/// 413 from the declared `Content-Length`, before a byte of the body is read
/// (bodies without a length are cut off at the same limit as they stream in).
async fn refuse_large_bodies(limit: usize, req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if let Some(length) = declared.filter(|&n| n > limit as u64) {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is {length} bytes; this server accepts at most {limit} (--max-body)"),
        )
        .into_response();
    }
    next.run(req).await
}

/// Browsers must take image bytes for what the content type says, never sniff
/// an indexed "photo" into HTML.
async fn no_sniff(req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    response.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_that_could_never_match_are_refused() {
        assert_eq!(check_token(""), Err(TokenError::Empty));
        assert_eq!(check_token(" \t "), Err(TokenError::Empty));
        assert_eq!(
            check_token(" s3cret"),
            Err(TokenError::SurroundingWhitespace)
        );
        assert_eq!(
            check_token("s3cret\n"),
            Err(TokenError::SurroundingWhitespace)
        );
        assert_eq!(check_token("pässwort"), Err(TokenError::NotPrintableAscii));
        assert_eq!(check_token("a\u{7}b"), Err(TokenError::NotPrintableAscii));
        assert_eq!(check_token("s3cret"), Err(TokenError::TooShort(6)));
        assert_eq!(
            check_token("fifteen-chars-x"),
            Err(TokenError::TooShort(15))
        );
        assert_eq!(check_token("sixteen-chars-xy"), Ok(()));
        assert_eq!(check_token("two words and then some"), Ok(()));
    }

    #[test]
    fn bind_addresses_are_ip_addresses_or_host_names_with_a_port() {
        let parsed = |s: &str| s.parse::<BindAddr>();
        for (given, shown) in [
            ("127.0.0.1:7860", "127.0.0.1:7860"),
            ("[::1]:0", "[::1]:0"),
            ("localhost:7863", "localhost:7863"),
            ("my-host.example:80", "my-host.example:80"),
        ] {
            assert_eq!(parsed(given).map(|b| b.to_string()), Ok(shown.into()));
        }
        assert_eq!(ServerConfig::default().bind.to_string(), "127.0.0.1:7860");
        for (given, why) in [
            ("localhost", BindAddrError::NotHostPort),
            (":7860", BindAddrError::NotHostPort),
            ("local host:1", BindAddrError::NotHostPort),
            ("localhost:x", BindAddrError::BadPort),
            ("localhost:65536", BindAddrError::BadPort),
            ("localhost:", BindAddrError::BadPort),
            ("::1:7860", BindAddrError::UnbracketedIpv6),
            ("[::1:7860", BindAddrError::UnbracketedIpv6),
        ] {
            assert_eq!(parsed(given), Err(why), "{given}");
        }
    }

    #[tokio::test]
    async fn a_name_needs_the_token_unless_all_its_addresses_are_loopback() {
        let addrs = |list: &[&str]| -> Vec<SocketAddr> {
            list.iter().map(|a| a.parse().unwrap()).collect()
        };
        assert_eq!(
            first_not_loopback(&addrs(&["127.0.0.1:1", "[::1]:1"])),
            None
        );
        let mixed = addrs(&["127.0.0.1:1", "10.0.0.5:1"]);
        assert_eq!(first_not_loopback(&mixed), Some(mixed[1]));
        assert!(first_not_loopback(&addrs(&["0.0.0.0:1"])).is_some());
        // localhost is loopback, by name as by address.
        let local = "localhost:7860".parse::<BindAddr>().unwrap();
        let resolved = local.resolve().await.unwrap();
        assert!(!resolved.is_empty());
        assert_eq!(first_not_loopback(&resolved), None, "{resolved:?}");
        assert!(resolved.iter().all(|a| a.port() == 7860), "{resolved:?}");
    }
}
