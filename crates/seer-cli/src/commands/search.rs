//! `seer search`: find indexed photos and videos (a video by its best frame,
//! shown with that frame's time) by text, by example, or both; by their
//! vectors, their captions' words, or both fused (see `seer_index::hybrid`);
//! optionally reranked by an image-text matching model (`--rerank`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use seer_index::find::Plan;
use seer_index::pathcodec::{display_stored, display_text, indexed_key};
use seer_index::{Found, Query, SearchMode, SearchOptions, Store};
use serde_json::{json, Value};

use crate::common::IndexArgs;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    target: IndexArgs,
    /// What to look for, in words.
    #[arg(value_parser = crate::common::words)]
    text: Option<String>,
    /// An example image (repeatable).
    #[arg(long)]
    image: Vec<PathBuf>,
    /// An indexed file: more like this (repeatable). Also accepts a path as
    /// seer prints it (`\xNN` for bytes that are not UTF-8).
    #[arg(long)]
    like: Vec<PathBuf>,
    /// Add this text to the query (repeatable).
    #[arg(long, value_parser = crate::common::words)]
    add: Vec<String>,
    /// Subtract this text from the query (repeatable).
    #[arg(long, value_parser = crate::common::words)]
    subtract: Vec<String>,
    /// Subtract this image from the query (repeatable).
    #[arg(long)]
    subtract_image: Vec<PathBuf>,
    /// How many results.
    #[arg(short, long, default_value_t = 20, value_parser = crate::common::at_least_one)]
    k: usize,
    /// Only results with at least this cosine similarity.
    #[arg(long, allow_negative_numbers = true)]
    min_score: Option<f32>,
    /// Only paths matching this glob (e.g. '*.png', '**/holiday/**').
    #[arg(long)]
    path: Option<String>,
    /// How to rank: auto (hybrid when the index has captions and the query has
    /// words, else vector), vector (cosine similarity only), hybrid
    /// (reciprocal rank fusion of the vectors' and the captions' rankings) or
    /// words (captions only, BM25; loads no model).
    #[arg(long, default_value = "auto", value_parser = parse_mode)]
    mode: SearchMode,
    /// Rerank the best hits with this image-text matching model (a BLIP
    /// retrieval checkpoint, e.g. Salesforce/blip-itm-base-coco), which reads
    /// the query's words together with each photo.
    #[arg(long, value_name = "MODEL")]
    rerank: Option<String>,
    /// How many of the best hits --rerank reorders (1 to 100); the rest keep
    /// their order.
    #[arg(long, default_value_t = seer_index::rerank::DEFAULT_DEPTH as u64,
          value_parser = clap::value_parser!(u64).range(1..=seer_index::rerank::MAX_DEPTH as u64))]
    rerank_depth: u64,
    /// The ffmpeg program that reads video hits' frames for --rerank
    /// (ffprobe must be beside it); default: ffmpeg on PATH.
    #[arg(long, env = "SEER_FFMPEG", value_name = "PATH")]
    ffmpeg: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

fn parse_mode(s: &str) -> Result<SearchMode, String> {
    SearchMode::parse(s).ok_or_else(|| format!("unknown mode '{s}' ({})", SearchMode::NAMES))
}

/// A result as printed: the ranking's hit, its caption, and its reranking.
struct Row {
    found: Found,
    caption: Option<String>,
    itm: Option<seer_engine::MatchScore>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let store = Store::open_read_only(&args.target.dir())?;
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
    let words_text = query.texts.join(" ");
    let plan = Plan::new(
        &store,
        &query,
        args.mode,
        args.target.requested_model().as_deref(),
    )?;
    let mode = plan.mode;
    anyhow::ensure!(
        args.rerank.is_none() || !query.texts.is_empty(),
        "--rerank needs a text query: the matching model reads its words with each photo"
    );
    anyhow::ensure!(
        args.min_score.is_none_or(|m| (-1.0..=1.0).contains(&m)),
        "--min-score must be a cosine similarity, from -1 to 1, not {}",
        args.min_score.unwrap_or_default()
    );
    anyhow::ensure!(
        !(mode == SearchMode::Words && args.min_score.is_some()),
        "--min-score is a cosine similarity, which a words search has none of; use --mode hybrid"
    );
    let depth = match args.rerank {
        Some(_) => args.k.max(args.rerank_depth as usize),
        None => args.k,
    };
    let options = SearchOptions {
        k: depth,
        min_score: args.min_score,
        path_glob: args.path.clone(),
    };
    let loaded = match plan.model_to_load(&query) {
        Some(name) => Some(args.target.load_model(name)?),
        None => None,
    };
    let embed = args.target.run.embed_options(true)?;
    let found = plan.run(
        &store,
        &query,
        loaded.as_ref(),
        &embed,
        &options,
        args.target.ann.ann_threshold,
    )?;
    let ranked = match &args.rerank {
        Some(matcher) => rerank(&args, &store, matcher, &words_text, found)?,
        None => found.into_iter().map(|f| (f, None)).collect(),
    };
    let mut rows = Vec::with_capacity(ranked.len());
    for (found, itm) in ranked {
        let caption = store.caption_of(found.id)?.map(|c| c.text);
        rows.push(Row {
            found,
            caption,
            itm,
        });
    }
    rows.truncate(args.k);
    for row in &rows {
        if args.json {
            out!("{}", json_line(row, mode))?;
        } else {
            out!("{}", text_line(row, mode))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The first `--rerank-depth` hits in order of the matching model's ITM
/// probability for `text` (`seer_index::rerank::rerank_found`), each with its
/// score; a photo that cannot be read is warned about and put after the
/// reranked ones. A video is read as its frame at the hit's time; without
/// ffmpeg, videos are not reranked (one warning) and follow the reranked hits
/// in their order.
fn rerank(
    args: &Args,
    store: &Store,
    matcher: &str,
    text: &str,
    found: Vec<Found>,
) -> anyhow::Result<Vec<(Found, Option<seer_engine::MatchScore>)>> {
    let loaded = args.target.run.load(matcher)?;
    let head = loaded.matcher()?;
    let depth = args.rerank_depth as usize;
    let videos = found
        .iter()
        .take(depth)
        .filter(|f| f.time.is_some())
        .count();
    let ffmpeg = match videos {
        0 => None,
        _ => match seer_video::Ffmpeg::find(args.ffmpeg.as_deref()) {
            Ok(found) => Some(found),
            // One that was asked for by name must be there.
            Err(e) if args.ffmpeg.is_some() => return Err(e.into()),
            Err(_) => {
                diag!(
                    "warning: {videos} video hit{} not reranked: ffmpeg was not found (install it, e.g. `apt install ffmpeg`, or give --ffmpeg PATH)",
                    if videos == 1 { "" } else { "s" }
                );
                None
            }
        },
    };
    let embed = args.target.run.embed_options(true)?;
    let reranked = seer_index::rerank::rerank_found(
        store,
        head,
        text,
        found,
        depth,
        ffmpeg.as_ref(),
        &embed.limits,
        embed.batch_size,
    )
    .with_context(|| format!("reranking with '{matcher}'"))?;
    Ok(reranked
        .into_iter()
        .map(|(found, score)| match score {
            Some(Ok(s)) => (found, Some(s)),
            // Warned about once above.
            Some(Err(_)) if found.time.is_some() && ffmpeg.is_none() => (found, None),
            Some(Err(cause)) => {
                let shown = display_stored(&found.path);
                let cause = crate::output::cause_without_path(&shown, &cause);
                diag!("warning: {shown}: {cause} (not reranked)");
                (found, None)
            }
            None => (found, None),
        })
        .collect())
}

/// One result as JSON. A vector search on an index without captions prints
/// `path` and `score` only, as before captions existed.
fn json_line(row: &Row, mode: SearchMode) -> Value {
    let f = &row.found;
    let mut v = json!({ "path": display_stored(&f.path) });
    match mode {
        SearchMode::Words => {
            v["score"] = json!(f.bm25);
            v["bm25"] = json!(f.bm25);
        }
        _ => v["score"] = json!(f.similarity),
    }
    if mode == SearchMode::Hybrid {
        v["fused"] = json!(f.fused);
        if let Some(bm25) = f.bm25 {
            v["bm25"] = json!(bm25);
        }
    }
    if matches!(mode, SearchMode::Hybrid | SearchMode::Words) {
        v["matched"] = json!(f.matched());
    }
    if let Some(time) = f.time {
        v["time"] = json!(time);
    }
    if let Some(caption) = &row.caption {
        v["caption"] = json!(caption);
    }
    if let Some(itm) = &row.itm {
        v["itm_probability"] = json!(itm.itm_probability);
        v["itc_similarity"] = json!(itm.similarity);
    }
    v
}

/// One result as a line: the score (the ITM probability when reranked), the
/// path, in hybrid and words searches which signals matched, and the caption.
fn text_line(row: &Row, mode: SearchMode) -> String {
    let f = &row.found;
    let score = match (&row.itm, mode) {
        (Some(itm), _) => itm.itm_probability,
        (None, SearchMode::Words) => f.bm25.unwrap_or(0.0),
        (None, _) => f.similarity.unwrap_or(0.0),
    };
    // BM25 scores of a small collection can be millionths: four decimals
    // would print them all as 0.0000.
    let score = if score != 0.0 && score.abs() < 1e-3 {
        format!("{score:.3e}")
    } else {
        format!("{score:.4}")
    };
    let mut line = format!("{score}  {}", display_stored(&f.path));
    if let Some(time) = f.time {
        line.push_str(&format!("  @ {}", clock(time)));
    }
    if matches!(mode, SearchMode::Hybrid | SearchMode::Words) {
        line.push_str(&format!("  [{}]", f.matched().join("+")));
    }
    if let Some(caption) = &row.caption {
        line.push_str(&format!("  \u{2014} {}", display_text(caption)));
    }
    line
}

/// A time in a video as a player shows it, to a tenth of a second: m:ss.s,
/// or h:mm:ss.s from an hour on.
fn clock(seconds: f64) -> String {
    // Rounded once, in tenths, so 59.96 s shows as 1:00.0, not 0:60.0.
    let tenths = (seconds.max(0.0) * 10.0).round() as u64;
    let (h, m, s) = (tenths / 36_000, tenths / 600 % 60, tenths % 600);
    let s = format!("{:02}.{}", s / 10, s % 10);
    match h {
        0 => format!("{m}:{s}"),
        _ => format!("{h}:{m:02}:{s}"),
    }
}

#[cfg(test)]
mod tests {
    use super::clock;

    #[test]
    fn video_times_show_as_a_player_shows_them() {
        assert_eq!(clock(0.0), "0:00.0");
        assert_eq!(clock(3.0), "0:03.0");
        assert_eq!(clock(59.96), "1:00.0");
        assert_eq!(clock(61.25), "1:01.3");
        assert_eq!(clock(3599.94), "59:59.9");
        assert_eq!(clock(3600.0), "1:00:00.0");
        assert_eq!(clock(36_000.0 + 62.5), "10:01:02.5");
        assert_eq!(clock(-1.0), "0:00.0");
        assert_eq!(clock(f64::NAN), "0:00.0");
    }
}
