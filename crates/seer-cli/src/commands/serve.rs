//! `seer serve`: the HTTP API and web page over an index, and with BLIP
//! checkpoints captions, answers and image-text matching (`--caption-model`,
//! `--vqa-model`, `--match-model`); with SAM and OWL checkpoints segmentation
//! and detection (`--segment-model`, `--detect-model`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use seer_engine::LoadedModel;
use seer_index::Store;
use seer_server::{ServerConfig, TaskModels};

use crate::common::{index_dir, AnnArgs, RunArgs};

#[derive(clap::Args)]
pub struct Args {
    /// Index folder (default: $SEER_INDEX or ~/.local/share/seer/index).
    #[arg(long, env = "SEER_INDEX")]
    index: Option<PathBuf>,
    /// A model whose vectors to search; repeat to serve several, the first
    /// being the default (the web page then shows a model picker). Default:
    /// every model the index holds, the first with a text tower as default.
    #[arg(long, short, env = "SEER_MODEL")]
    model: Vec<String>,
    /// A captioning model (BLIP, e.g. Salesforce/blip-image-captioning-base)
    /// for /v1/caption; the re-index button then captions new photos too.
    #[arg(long, value_name = "MODEL")]
    caption_model: Option<String>,
    /// A question-answering model (BLIP VQA, e.g. Salesforce/blip-vqa-base)
    /// for /v1/ask and the page's questions about a photo.
    #[arg(long, value_name = "MODEL")]
    vqa_model: Option<String>,
    /// An image-text matching model (BLIP retrieval, e.g.
    /// Salesforce/blip-itm-base-coco) for /v1/match and reranked searches.
    #[arg(long, value_name = "MODEL")]
    match_model: Option<String>,
    /// A segmentation model (SAM, e.g. facebook/sam-vit-base) for
    /// /v1/segment and the page's click-to-segment.
    #[arg(long, value_name = "MODEL")]
    segment_model: Option<String>,
    /// An open-vocabulary detection model (OWL-ViT or OWLv2, e.g.
    /// google/owlv2-base-patch16-ensemble) for /v1/detect and the page's
    /// "show where".
    #[arg(long, value_name = "MODEL")]
    detect_model: Option<String>,
    #[command(flatten)]
    run: RunArgs,
    #[command(flatten)]
    ann: AnnArgs,
    /// Address to listen on, HOST:PORT (an IP address or a host name such as
    /// localhost); anything but loopback needs --token.
    #[arg(long, default_value = "127.0.0.1:7860")]
    bind: seer_server::BindAddr,
    /// Require `Authorization: Bearer TOKEN` on the API (printable ASCII, not blank).
    #[arg(long, env = "SEER_TOKEN", hide_env_values = true, value_parser = parse_token)]
    token: Option<String>,
    /// Largest model batch shared by concurrent requests (default: --batch-size).
    #[arg(long)]
    max_batch: Option<usize>,
    /// Milliseconds a request waits for others to share its batch.
    #[arg(long, default_value_t = 10)]
    max_wait_ms: u64,
    /// Items (images, texts, classification prompts) that may wait for the
    /// model: a request whose items do not fit now is answered 503, one with
    /// more items than this at all 400; a classification with more prompts
    /// than this is let in part by part (half the queue at a time).
    #[arg(long, default_value_t = 256, value_parser = crate::common::at_least_one)]
    queue: usize,
    /// Largest request body in bytes.
    #[arg(long, default_value_t = 32 * 1024 * 1024)]
    max_body: usize,
    /// Seconds before a request is answered 504; also how long a streamed
    /// video waits for its client to take the next chunk before ending the
    /// stream (a paused player asks again with a Range request), and how long
    /// a client may stop reading any answer before its connection is closed.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    timeout: u64,
    /// Seconds a client may take to send a request's headers; also how long an
    /// idle connection stays open.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    header_timeout: u64,
    /// Open connections at most; more wait to be accepted.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..))]
    max_connections: u64,
    /// The ffmpeg program that shows video frames and indexes videos in index
    /// jobs (ffprobe must be beside it); default: ffmpeg on PATH. Without one,
    /// indexed videos stay searchable but their frames cannot be shown.
    #[arg(long, value_name = "PATH", env = "SEER_FFMPEG")]
    ffmpeg: Option<PathBuf>,
}

/// The ffmpeg given (which must work: a typo is an error, not a silent skip),
/// else the one on PATH, else none with one warning.
fn find_ffmpeg(given: Option<&std::path::Path>) -> anyhow::Result<Option<seer_video::Ffmpeg>> {
    match seer_video::Ffmpeg::find(given) {
        Ok(found) => Ok(Some(found)),
        Err(e) if given.is_some() => Err(anyhow::anyhow!("--ffmpeg: {e}")),
        Err(e) => {
            diag!(
                "seer: warning: {e}; until then videos stay searchable, but their frames \
                 cannot be shown and index jobs leave new videos for later"
            );
            Ok(None)
        }
    }
}

/// A token that could never match is refused before anything loads (the
/// server's own check says why).
fn parse_token(token: &str) -> Result<String, seer_server::TokenError> {
    seer_server::check_token(token).map(|()| token.to_string())
}

/// The models to serve, loaded, the default first: those named with --model
/// in their order, else every model the index holds vectors of, in the order
/// the index got them, with the first that has a text tower moved to the front
/// (search as you type needs one; DINOv2 has none).
fn load_models(args: &Args, dir: &std::path::Path) -> anyhow::Result<Vec<LoadedModel>> {
    let mut names: Vec<String> = Vec::new();
    for key in args.model.iter().map(|m| seer_hub::model_key(m)) {
        if !names.contains(&key) {
            names.push(key);
        }
    }
    let named = !names.is_empty();
    if !named {
        let store = Store::open_read_only(dir)?;
        names = store
            .models()?
            .into_iter()
            .filter(|m| m.vectors > 0)
            .map(|m| m.name)
            .collect();
        if names.is_empty() {
            // The index's own words: it holds no vectors yet.
            store.choose_model(None)?;
        }
    }
    let mut loaded = names
        .iter()
        .map(|name| args.run.load(name))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if !named {
        let default = loaded.iter().position(|m| m.text.is_some()).unwrap_or(0);
        loaded[..=default].rotate_right(1);
    }
    Ok(loaded)
}

/// The language models asked for, loaded, each checked to have the head its
/// option is for (a captioning checkpoint for --caption-model, ...).
fn load_tasks(args: &Args) -> anyhow::Result<TaskModels> {
    let load = |spec: &Option<String>| spec.as_deref().map(|s| args.run.load(s)).transpose();
    let tasks = TaskModels {
        caption: load(&args.caption_model)?,
        vqa: load(&args.vqa_model)?,
        matcher: load(&args.match_model)?,
        segment: load(&args.segment_model)?,
        detect: load(&args.detect_model)?,
    };
    tasks.check()?;
    Ok(tasks)
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let dir = index_dir(&args.index);
    let tasks = load_tasks(&args)?;
    let models = load_models(&args, &dir)?;
    let ffmpeg = find_ffmpeg(args.ffmpeg.as_deref())?;
    #[allow(clippy::needless_update)]
    let config = ServerConfig {
        bind: args.bind.clone(),
        token: args.token.clone(),
        index_dir: dir,
        max_batch: args.max_batch.unwrap_or(args.run.batch_size),
        max_wait: Duration::from_millis(args.max_wait_ms),
        queue_capacity: args.queue,
        body_limit: args.max_body,
        request_timeout: Duration::from_secs(args.timeout),
        limits: args.run.limits(ServerConfig::default().limits),
        header_timeout: Duration::from_secs(args.header_timeout),
        max_connections: args.max_connections as usize,
        ann_threshold: args.ann.ann_threshold,
        ffmpeg,
        ..Default::default()
    };
    let ids = models
        .iter()
        .chain(&tasks.caption)
        .chain(&tasks.vqa)
        .chain(&tasks.matcher)
        .chain(&tasks.segment)
        .chain(&tasks.detect)
        .map(|m| m.id.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(seer_server::serve(models, tasks, config, |addr| {
            diag!("seer: serving {ids} on http://{addr}")
        }))?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::find_ffmpeg;

    #[test]
    fn an_ffmpeg_given_by_name_must_work() {
        let missing = std::path::Path::new("/nonexistent/seer-test/ffmpeg");
        let e = find_ffmpeg(Some(missing)).unwrap_err().to_string();
        assert!(e.starts_with("--ffmpeg: "), "{e}");
        assert!(e.contains("/nonexistent/seer-test/ffmpeg"), "{e}");
        assert!(e.contains("install ffmpeg"), "{e}");
    }
}
