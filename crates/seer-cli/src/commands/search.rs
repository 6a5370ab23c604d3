//! `seer search`: find indexed photos by text, by example, or both.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use seer_index::pathcodec::{display_stored, path_from_display, to_stored};
use seer_index::{query_vector, Query, SearchOptions, Searcher, SearcherOptions, Store};

use crate::common::IndexArgs;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    target: IndexArgs,
    /// What to look for, in words.
    text: Option<String>,
    /// An example image (repeatable).
    #[arg(long)]
    image: Vec<PathBuf>,
    /// An indexed file: more like this (repeatable). Also accepts a path as
    /// seer prints it (`\xNN` for bytes that are not UTF-8).
    #[arg(long)]
    like: Vec<PathBuf>,
    /// Add this text to the query (repeatable).
    #[arg(long)]
    add: Vec<String>,
    /// Subtract this text from the query (repeatable).
    #[arg(long)]
    subtract: Vec<String>,
    /// Subtract this image from the query (repeatable).
    #[arg(long)]
    subtract_image: Vec<PathBuf>,
    /// How many results.
    #[arg(short, long, default_value_t = 20)]
    k: usize,
    /// Only results with at least this cosine similarity.
    #[arg(long)]
    min_score: Option<f32>,
    /// Only paths matching this glob (e.g. '*.png', '**/holiday/**').
    #[arg(long)]
    path: Option<String>,
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let store = Store::open_read_only(&args.target.dir())?;
    let model = store.choose_model(args.target.requested_model().as_deref())?;
    let query = Query {
        texts: args.text.iter().chain(&args.add).cloned().collect(),
        images: args.image.clone(),
        like: args.like.iter().map(|p| indexed_key(p)).collect(),
        subtract_texts: args.subtract.clone(),
        subtract_images: args.subtract_image.clone(),
    };
    anyhow::ensure!(
        !query.is_empty(),
        "nothing to search for: give a text, --image FILE or --like PATH"
    );
    let loaded = if query.needs_model() {
        Some(args.target.load_model(&model.name)?)
    } else {
        None
    };
    let embed = args.target.run.embed_options(true)?;
    let vector = query_vector(&store, &model, loaded.as_ref(), &query, &embed)?;
    let options = SearchOptions {
        k: args.k,
        min_score: args.min_score,
        path_glob: args.path.clone(),
    };
    // "More like this" photos are not results of their own query (copies of
    // them, being other files, still are).
    let searcher = Searcher::open(
        &store,
        model,
        SearcherOptions {
            ann_threshold: args.target.ann.ann_threshold,
            resident: false,
        },
    )?;
    let hits = searcher.rank_excluding(&store, &vector, &options, &query.like)?;
    if args.json {
        for hit in &hits {
            let hit = serde_json::json!({ "path": display_stored(&hit.path), "score": hit.score });
            println!("{hit}");
        }
    } else {
        for hit in &hits {
            println!("{:.4}  {}", hit.score, display_stored(&hit.path));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The stored form of an indexed file's path. Indexed paths are canonical, so
/// relative ones from the user are resolved; a path as seer prints it (escaped)
/// names the same file.
fn indexed_key(p: &Path) -> String {
    let unescaped = match p.exists() {
        true => None,
        false => p.to_str().and_then(path_from_display),
    };
    let p = unescaped.as_deref().unwrap_or(p);
    to_stored(&std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf()))
}
