//! `seer serve`: the HTTP API and web page over an index.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use seer_engine::{Clip, LoadOptions};
use seer_index::Store;
use seer_server::ServerConfig;

use crate::commands::index::index_dir;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, env = "SEER_INDEX")]
    index: Option<PathBuf>,
    /// The model to embed with (default: the index's only model).
    #[arg(long, short)]
    model: Option<String>,
    #[arg(long, env = "SEER_TOKENIZER")]
    tokenizer: Option<PathBuf>,
    /// Address to listen on; anything but loopback needs --token.
    #[arg(long, default_value = "127.0.0.1:7860")]
    bind: SocketAddr,
    /// Require `Authorization: Bearer TOKEN` on the API.
    #[arg(long, env = "SEER_TOKEN")]
    token: Option<String>,
    /// Largest model batch shared by concurrent requests.
    #[arg(long, default_value_t = 32)]
    max_batch: usize,
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
    #[arg(long)]
    threads: Option<usize>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    crate::common::configure_threads(args.threads)?;
    let dir = index_dir(&args.index);
    let model = match &args.model {
        Some(m) => seer_hub::model_key(m),
        None => Store::open(&dir)?.choose_model(None)?.name,
    };
    let options = LoadOptions {
        tokenizer: args.tokenizer.clone(),
        progress: crate::output::stderr_is_terminal(),
        ..Default::default()
    };
    let clip = Arc::new(Clip::load(&model, &options)?);
    let config = ServerConfig {
        bind: args.bind,
        token: args.token.clone(),
        index_dir: dir,
        max_batch: args.max_batch,
        max_wait: Duration::from_millis(args.max_wait_ms),
        queue_capacity: args.queue,
        body_limit: args.max_body,
        request_timeout: Duration::from_secs(args.timeout),
        ..Default::default()
    };
    eprintln!("seer: serving {} on http://{}", clip.id, args.bind);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(seer_server::serve(clip, config))?;
    Ok(ExitCode::SUCCESS)
}
