//! `seer status`: what the index holds and what could not be indexed.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use seer_index::ann::GraphState;
use seer_index::pathcodec::{display_path, display_stored, display_text, failure_cause};
use seer_index::Store;

use crate::common::index_dir;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, env = "SEER_INDEX")]
    index: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let dir = index_dir(&args.index);
    let store = Store::open_read_only(&dir)?;
    let models = store.models()?;
    let graphs = models
        .iter()
        .map(|m| seer_index::ann::graph_state(&store, m))
        .collect::<Result<Vec<_>, _>>()?;
    // (videos, frames) of each model.
    let videos = models
        .iter()
        .map(|m| store.video_counts(m))
        .collect::<Result<Vec<_>, _>>()?;
    let captioners = store.captioners()?;
    // Files that could not be embedded, and what the walks could not read or follow.
    let mut failures: Vec<(String, String)> = store
        .failures()?
        .into_iter()
        .chain(store.walk_errors()?)
        .map(|(path, error)| {
            let reason = failure_cause(&path, &error);
            (display_stored(&path), reason)
        })
        .collect();
    failures.sort();
    // Group failures by their cause, for counts.
    let mut by_reason: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, reason) in &failures {
        *by_reason.entry(reason).or_default() += 1;
    }
    let roots: Vec<String> = store.roots()?.iter().map(|r| display_stored(r)).collect();
    if args.json {
        let value = serde_json::json!({
            "index": display_path(&dir),
            "files": store.file_count()?,
            "roots": roots,
            "models": models.iter().zip(&graphs).zip(&videos).map(|((m, g), (videos, frames))| {
                let mut v = serde_json::json!(m);
                v["graph"] = serde_json::json!(g);
                v["videos"] = serde_json::json!(videos);
                v["frames"] = serde_json::json!(frames);
                v
            }).collect::<Vec<_>>(),
            "captions": captioners,
            "failures": failures.iter().map(|(p, e)| serde_json::json!({"path": p, "error": e})).collect::<Vec<_>>(),
            "failure_counts": by_reason,
        });
        out!("{value}")?;
        return Ok(ExitCode::SUCCESS);
    }
    out!("index: {}", display_path(&dir))?;
    out!("files: {}", store.file_count()?)?;
    for root in &roots {
        out!("root:  {root}")?;
    }
    for ((m, g), &(videos, frames)) in models.iter().zip(&graphs).zip(&videos) {
        let graph = match g {
            GraphState::None => "no approximate-search graph (exact search)",
            GraphState::Current => "approximate-search graph current",
            GraphState::OutOfDate => "approximate-search graph out of date (exact search until `seer index` or `seer import`)",
        };
        // A photo-only index's line stays as it was.
        let video = match videos {
            0 => String::new(),
            _ => format!(
                " ({videos} video{}, {frames} frame{})",
                if videos == 1 { "" } else { "s" },
                if frames == 1 { "" } else { "s" }
            ),
        };
        out!(
            "model: {} ({}-d): {} vectors{video}, {graph}",
            display_text(&m.name),
            m.dim,
            m.vectors
        )?;
    }
    for c in &captioners {
        out!(
            "captions: {}: {} captions",
            display_text(&c.name),
            c.captions
        )?;
    }
    out!("failures: {}", failures.len())?;
    for (reason, count) in &by_reason {
        out!("  {count:>6}  {reason}")?;
    }
    for (path, reason) in &failures {
        out!("  {path}: {reason}")?;
    }
    Ok(ExitCode::SUCCESS)
}
