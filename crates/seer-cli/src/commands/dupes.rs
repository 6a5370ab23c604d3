//! `seer dupes`: groups of near-duplicate images in the index.

use std::process::ExitCode;

use anyhow::Context;

use seer_index::dupes::{
    group_watched, measure_and_remember, stored_calibration, Neighbours, Watch,
};
use seer_index::pathcodec::display_stored;
use seer_index::{Searcher, SearcherOptions, Store};

use crate::common::IndexArgs;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    target: IndexArgs,
    /// Cosine similarity at or above which two images are duplicates (default: measured
    /// for the index's model on its own photos, then remembered; see --calibrate).
    #[arg(long, allow_negative_numbers = true)]
    threshold: Option<f32>,
    /// Measure the threshold again (alters a sample of indexed photos and embeds the copies).
    #[arg(long)]
    calibrate: bool,
    /// Photos the measurement uses.
    #[arg(long, default_value_t = 100, value_parser = crate::common::at_least_one)]
    sample: usize,
    /// Neighbours examined per photo.
    #[arg(long, default_value_t = 10, value_parser = crate::common::at_least_one)]
    neighbours: usize,
    /// Compare every photo with every other, even where the index has its
    /// approximate (HNSW) graph (at 50,000 vectors and more), which finds the
    /// neighbours far faster and, rarely, misses one.
    #[arg(long)]
    exact: bool,
    /// One JSON object per group: {"paths": [...], "scores": [...]}.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    // Read-only, so a mistyped --index is an error rather than a new, empty
    // index, and an index on a full (or read-only) disk still gives its groups.
    let store = Store::open_read_only(&args.target.dir())?;
    let model = store.choose_model(args.target.requested_model().as_deref())?;
    // As search opens it: with the graph where the model has one, whose
    // neighbour search replaces a scan of every pair.
    let searcher = Searcher::open(
        &store,
        model.clone(),
        SearcherOptions {
            ann_threshold: args.target.ann.ann_threshold,
            resident: true,
        },
    )?;
    let vectors = searcher
        .vectors()
        .context("internal error: the searcher holds no vectors")?;
    let threshold = match (
        args.threshold,
        args.calibrate,
        stored_calibration(&store, &model)?,
    ) {
        (Some(t), _, _) => {
            anyhow::ensure!(
                (-1.0..=1.0).contains(&t),
                "--threshold is a cosine similarity between -1 and 1"
            );
            t
        }
        (None, false, Some(c)) => c.threshold,
        (None, _, _) => {
            let loaded = args.target.load_model(&model.name)?;
            let options = args.target.run.embed_options(true)?;
            let bar = crate::output::progress(args.sample, "measuring the threshold");
            let (c, not_remembered) = measure_and_remember(
                &args.target.dir(),
                &model,
                loaded.image()?,
                vectors,
                args.sample,
                &options,
                Watch {
                    progress: Some(&|done, of| {
                        bar.set_length(of as u64);
                        bar.set_position(done as u64);
                    }),
                    stop: None,
                },
            )?;
            bar.finish_and_clear();
            if let Some(e) = not_remembered {
                diag!(
                    "warning: {e}; the threshold was not remembered and is measured again next time"
                );
            }
            let distinct = match c.distinct_pairs {
                0 => "no pairs of different photos to compare (sample more than one)".to_string(),
                n => format!(
                    "{} of {n} pairs of different photos score above it (highest {:.4})",
                    c.distinct_above, c.distinct_max
                ),
            };
            let photos = if c.images == 1 { "photo" } else { "photos" };
            diag!(
                "threshold {:.4}: catches 99% of {} altered copies of {} {photos} (median similarity {:.4}); {distinct}",
                c.threshold, c.duplicate_pairs, c.images, c.duplicate_median
            );
            c.threshold
        }
    };
    let via = Neighbours::as_searched(&searcher, args.exact);
    let bar = crate::output::progress(vectors.len(), "comparing");
    let watch = Watch {
        progress: Some(&|done, _| bar.set_position(done as u64)),
        stop: None,
    };
    let groups = group_watched(vectors, threshold, args.neighbours, via, watch)?;
    bar.finish_and_clear();
    for g in &groups {
        if args.json {
            let paths: Vec<String> = g.paths.iter().map(|p| display_stored(p)).collect();
            let g = serde_json::json!({ "paths": paths, "scores": g.scores });
            out!("{g}")?;
        } else {
            out!("{} files:", g.paths.len())?;
            for (p, s) in g.paths.iter().zip(&g.scores) {
                out!("  {s:.4}  {}", display_stored(p))?;
            }
        }
    }
    let noun = if groups.len() == 1 { "group" } else { "groups" };
    let how = match via {
        Neighbours::Graph(_) => {
            "; neighbours found through the index's approximate (HNSW) graph (--exact compares every pair)"
        }
        Neighbours::Exact => "",
    };
    diag!("{} {noun} at threshold {threshold:.4}{how}", groups.len());
    Ok(ExitCode::SUCCESS)
}
