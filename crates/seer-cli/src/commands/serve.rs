//! `seer serve`: the HTTP API and web page over an index.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use seer_index::Store;
use seer_server::ServerConfig;

use crate::common::IndexArgs;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    target: IndexArgs,
    /// Address to listen on; anything but loopback needs --token.
    #[arg(long, default_value = "127.0.0.1:7860")]
    bind: SocketAddr,
    /// Require `Authorization: Bearer TOKEN` on the API (printable ASCII, not blank).
    #[arg(long, env = "SEER_TOKEN", value_parser = parse_token)]
    token: Option<String>,
    /// Largest model batch shared by concurrent requests (default: --batch-size).
    #[arg(long)]
    max_batch: Option<usize>,
    /// Milliseconds a request waits for others to share its batch.
    #[arg(long, default_value_t = 10)]
    max_wait_ms: u64,
    /// Items that may wait for the model before requests are answered 503.
    #[arg(long, default_value_t = 256)]
    queue: usize,
    /// Largest request body in bytes.
    #[arg(long, default_value_t = 32 * 1024 * 1024)]
    max_body: usize,
    /// Seconds before a request is answered 504.
    #[arg(long, default_value_t = 60)]
    timeout: u64,
    /// Seconds a client may take to send a request's headers; also how long an
    /// idle connection stays open.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    header_timeout: u64,
    /// Open connections at most; more wait to be accepted.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..))]
    max_connections: u64,
}

/// A token that could never match is refused before anything loads (the
/// server's own check says why).
fn parse_token(token: &str) -> Result<String, seer_server::TokenError> {
    seer_server::check_token(token).map(|()| token.to_string())
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let dir = args.target.dir();
    let model = match args.target.requested_model() {
        Some(m) => m,
        None => Store::open_read_only(&dir)?.choose_model(None)?.name,
    };
    let loaded = args.target.load_model(&model)?;
    #[allow(clippy::needless_update)]
    let config = ServerConfig {
        bind: args.bind,
        token: args.token.clone(),
        index_dir: dir,
        max_batch: args.max_batch.unwrap_or(args.target.run.batch_size),
        max_wait: Duration::from_millis(args.max_wait_ms),
        queue_capacity: args.queue,
        body_limit: args.max_body,
        request_timeout: Duration::from_secs(args.timeout),
        limits: args.target.run.limits(ServerConfig::default().limits),
        header_timeout: Duration::from_secs(args.header_timeout),
        max_connections: args.max_connections as usize,
        ann_threshold: args.target.ann.ann_threshold,
        ..Default::default()
    };
    let id = loaded.id.clone();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(seer_server::serve(loaded, config, |addr| {
            eprintln!("seer: serving {id} on http://{addr}")
        }))?;
    Ok(ExitCode::SUCCESS)
}
