//! `seer index`: add folders of photos and videos to the index, or bring it up to date; with
//! `--caption-model`, caption them too (see `seer_index::captions`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use seer_index::pathcodec::{display_path, display_text, to_path};
use seer_index::{CaptionOptions, Encoding, IndexError, IndexLock, IndexOptions, Progress, Store};

use crate::common::{index_dir, AnnArgs, IndexCreatedHere, RunArgs, DEFAULT_MODEL};
use crate::output::progress;

#[derive(clap::Args)]
pub struct Args {
    /// Folders (or files) to index; none re-indexes every folder indexed before.
    paths: Vec<PathBuf>,
    /// Index folder (default: $SEER_INDEX or ~/.local/share/seer/index).
    #[arg(long, env = "SEER_INDEX")]
    index: Option<PathBuf>,
    /// Model: a local folder, an alias (`seer models`) or a Hugging Face hub id;
    /// repeat it to index with several, one after the other (default: every
    /// model the index holds, or ViT-B-32 for a new index).
    #[arg(long, short, env = "SEER_MODEL")]
    model: Vec<String>,
    /// Also caption every indexed photo with this model (a BLIP captioning
    /// checkpoint, e.g. Salesforce/blip-image-captioning-base), so searches
    /// find photos by their captions' words; repeat for several. Default: the
    /// caption models the index holds when neither --model nor this is given,
    /// else none.
    #[arg(long, value_name = "MODEL")]
    caption_model: Vec<String>,
    #[command(flatten)]
    run: RunArgs,
    #[command(flatten)]
    ann: AnnArgs,
    /// Also walk hidden files and folders.
    #[arg(long)]
    hidden: bool,
    #[command(flatten)]
    video: VideoArgs,
    /// How vectors are stored: f16 (default), f32 or int8. Applies to the
    /// files this run embeds; vectors stored before keep their encoding.
    #[arg(long, value_parser = parse_encoding)]
    encoding: Option<Encoding>,
    /// Print a JSON summary.
    #[arg(long)]
    json: bool,
    /// When another run is updating the index, wait for it to finish instead
    /// of stopping with an error.
    #[arg(long)]
    wait: bool,
    /// Only rebuild every model's approximate-search graph from the stored
    /// vectors (nothing is walked or embedded). Indexing updates a graph by
    /// difference, so a graph built by an older seer keeps its links; this
    /// gives it the current construction. Every model's graph, whatever
    /// --model says (not a conflict: $SEER_MODEL, set for the other commands,
    /// would make it one).
    #[arg(long, conflicts_with_all = ["paths", "caption_model"])]
    rebuild_graph: bool,
    /// Only forget this indexed folder (repeatable): it leaves the index's
    /// folders, and its files leave the index with their vectors, frames and
    /// captions (the files on disk are not touched). Nothing is walked or
    /// embedded.
    #[arg(long, value_name = "FOLDER", conflicts_with_all = ["paths", "caption_model", "rebuild_graph"])]
    forget: Vec<PathBuf>,
}

/// How videos are sampled (they need ffmpeg; without it they wait for a
/// run that has it).
#[derive(clap::Args)]
pub struct VideoArgs {
    /// Leave videos out (and take those indexed before out of the index).
    #[arg(long)]
    no_videos: bool,
    /// Seconds between the frames sampled from a video; each frame is
    /// embedded like a photo, and a search finds a video by its best frame.
    /// The index remembers it for later runs; a new value samples the
    /// indexed videos again [default: 2, or the value given last]
    #[arg(long, value_name = "SECONDS", value_parser = parse_interval, conflicts_with = "no_videos", allow_negative_numbers = true)]
    frame_interval: Option<f64>,
    /// Most frames sampled from one video: a longer video is sampled more
    /// sparsely (its length / this). Remembered like --frame-interval
    /// [default: 1800, or the value given last]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1_000_000), conflicts_with = "no_videos")]
    max_frames: Option<u32>,
    /// The ffmpeg program to decode videos with (ffprobe must be beside it);
    /// default: ffmpeg on PATH.
    #[arg(long, value_name = "PATH", env = "SEER_FFMPEG")]
    ffmpeg: Option<PathBuf>,
}

pub(crate) fn parse_interval(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && (0.05..=86_400.0).contains(&v) => Ok(v),
        _ => Err(format!(
            "'{s}' is not a number of seconds from 0.05 to 86400"
        )),
    }
}

impl VideoArgs {
    /// The options for the indexer: None with --no-videos; without ffmpeg a
    /// warning (after the run), and videos are left for a later run. The
    /// sampling is the one given, else the one the index remembers.
    pub fn options(&self, store: &mut Store) -> anyhow::Result<Option<seer_index::VideoOptions>> {
        if self.no_videos {
            return Ok(None);
        }
        let ffmpeg = match seer_video::Ffmpeg::find(self.ffmpeg.as_deref()) {
            Ok(found) => Some(found),
            // One given by name must work: a typo is an error, not a skip.
            Err(e) if self.ffmpeg.is_some() => return Err(e.into()),
            Err(_) => None,
        };
        let (sampling, again) = seer_index::video::sampling_for_run(
            store,
            self.frame_interval,
            self.max_frames.map(|m| m as usize),
        )?;
        if again > 0 {
            diag!(
                "note: the frame sampling changed: {again} indexed video{} will be sampled again",
                if again == 1 { "" } else { "s" }
            );
        }
        Ok(Some(seer_index::VideoOptions { ffmpeg, sampling }))
    }
}

pub fn parse_encoding(s: &str) -> Result<Encoding, String> {
    Encoding::parse(s).ok_or_else(|| format!("unknown encoding '{s}' (f16, f32, int8)"))
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let created = IndexCreatedHere::note(&index_dir(&args.index));
    let result = update(args);
    if result.is_err() {
        created.remove_if_failed_empty();
    }
    result
}

/// `seer index`'s work (see [`run`]).
fn update(args: Args) -> anyhow::Result<ExitCode> {
    let dir = index_dir(&args.index);
    // A file given as a folder (a document, an archive) would be walked as a
    // root of nothing: 0 added, and no word why.
    for path in &args.paths {
        let media =
            seer_engine::embed::has_image_extension(path) || seer_video::has_video_extension(path);
        anyhow::ensure!(
            !path.is_file() || media,
            "{}: not a folder, an image or a video, so nothing to index there; give folders",
            display_path(path)
        );
    }
    if !args.forget.is_empty() {
        // An existing index only: forgetting must not create an empty one.
        Store::open_read_only(&dir)?;
        let mut store = Store::open(&dir)?;
        let lock = lock(&dir, args.wait)?;
        for folder in &args.forget {
            let forgotten =
                seer_index::forget_folder(&mut store, &lock, folder, args.ann.ann_threshold)?;
            match args.json {
                true => out!("{}", serde_json::to_string(&forgotten)?)?,
                false => out!(
                    "{}: forgot {}: {} file{} left the index (the files on disk are untouched)",
                    display_path(&dir),
                    forgotten.folder,
                    forgotten.files,
                    if forgotten.files == 1 { "" } else { "s" }
                )?,
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    if args.rebuild_graph {
        // An existing index only: rebuilding must not create an empty one.
        let store = Store::open_read_only(&dir)?;
        let lock = lock(&dir, args.wait)?;
        rebuild_graphs(&store, args.ann.ann_threshold, args.json)?;
        drop(lock);
        return Ok(ExitCode::SUCCESS);
    }
    let mut store = Store::open(&dir)?;
    // Before the model loads: a busy index is reported at once.
    let lock = lock(&dir, args.wait)?;
    let roots = if args.paths.is_empty() {
        let stored: Vec<PathBuf> = store.roots()?.iter().map(|r| to_path(r)).collect();
        anyhow::ensure!(
            !stored.is_empty(),
            "nothing to index: give folders, e.g. `seer index ~/Pictures`"
        );
        stored
    } else {
        args.paths.clone()
    };
    // Bringing an index up to date means for each model it holds: a re-run
    // without --model must not switch to the default model.
    let models: Vec<String> = match args.model.as_slice() {
        [_, ..] => args.model.clone(),
        [] => match store
            .models()?
            .into_iter()
            .map(|m| m.name)
            .collect::<Vec<_>>()
        {
            held if held.is_empty() => vec![DEFAULT_MODEL.to_string()],
            held => held,
        },
    };
    let mut videos = args.video.options(&mut store)?;
    if let Some(v) = videos.as_mut() {
        // --max-pixels guards video frames as it guards photos: a frame over
        // it fails its video by name before its buffer is allocated.
        v.sampling.limits.max_pixels = args
            .run
            .limits(seer_image::DecodeLimits::default())
            .max_pixels;
    }
    let mut failed = 0;
    for model in &models {
        // Indexing embeds images only: no tokenizer is needed (an open_clip
        // folder offline has none); searches load the text side later.
        let loaded = args.run.load_images(model)?;
        let options = IndexOptions {
            roots: roots.clone(),
            include_hidden: args.hidden,
            encoding: args.encoding.unwrap_or(Encoding::F16),
            embed: args.run.embed_options(true)?,
            ann_threshold: args.ann.ann_threshold,
            videos: videos.clone(),
        };
        let pb = progress(0, "indexing");
        let summary = seer_index::index_locked(
            &mut store,
            &lock,
            &loaded,
            &options,
            &mut |event| match event {
                Progress::Planned(n) => pb.set_length(n as u64),
                Progress::Embedded => {
                    pb.set_message("indexing");
                    pb.inc(1)
                }
                // A long video is one file: its frames show in the message.
                Progress::VideoFrames { done, total } => {
                    pb.set_message(format!("indexing (a video: {done}/{total} frames)"))
                }
            },
        )?;
        pb.finish_and_clear();
        report(&dir, &summary, args.json)?;
        failed += summary.failed;
        if let Some(encoding) = args.encoding {
            warn_other_encodings(&store, &loaded.id, encoding)?;
        }
    }
    // Captions: those asked for, or on a bare re-run every caption model the
    // index holds (photos added since get theirs).
    let captioners: Vec<String> = match (args.model.is_empty(), args.caption_model.is_empty()) {
        (true, true) => store.captioners()?.into_iter().map(|c| c.name).collect(),
        _ => args.caption_model.clone(),
    };
    for name in &captioners {
        let loaded = args.run.load(name)?;
        let options = CaptionOptions {
            roots: roots.clone(),
            batch_size: args.run.embed_options(true)?.batch_size,
            limits: args.run.limits(Default::default()),
            generate: Default::default(),
            ffmpeg: videos.as_ref().and_then(|v| v.ffmpeg.clone()),
        };
        let pb = progress(0, "captioning");
        let summary =
            seer_index::caption_locked(&mut store, &lock, &loaded, &options, &mut |event| {
                match event {
                    Progress::Planned(n) => pb.set_length(n as u64),
                    Progress::Embedded => pb.inc(1),
                    Progress::VideoFrames { .. } => {}
                }
            })?;
        pb.finish_and_clear();
        report_captions(&dir, &summary, args.json)?;
        failed += summary.failed;
    }
    drop(lock);
    // Like embed and classify: 1 when a file failed in this run. Files that
    // failed before and have not changed are not retried, so they do not count.
    Ok(if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// An asked-for `--encoding` changes nothing already stored: says so where
/// the model has vectors in another encoding (an unchanged file is not
/// embedded again, so a run over the same files re-encodes nothing).
fn warn_other_encodings(store: &Store, model: &str, encoding: Encoding) -> anyhow::Result<()> {
    let Ok(info) = store.choose_model(Some(model)) else {
        return Ok(());
    };
    let others = store.vectors_not_in(&info, encoding)?;
    if others > 0 {
        diag!(
            "warning: --encoding {} applies to the files this run embeds; {others} vector{} stored before keep{} their encoding (to change them all, index into a new index folder)",
            encoding.name(),
            if others == 1 { "" } else { "s" },
            if others == 1 { "s" } else { "" },
        );
    }
    Ok(())
}

/// The index's update lock; with `wait`, waits for another run holding it.
fn lock(dir: &std::path::Path, wait: bool) -> anyhow::Result<IndexLock> {
    Ok(match IndexLock::try_acquire(dir) {
        Err(IndexError::Busy { holder, .. }) if wait => {
            let who = holder.map_or_else(|| "another process".to_string(), |h| h.to_string());
            diag!(
                "waiting for {who} to finish updating the index at {}",
                dir.display()
            );
            IndexLock::acquire_waiting(dir)?
        }
        other => other?,
    })
}

/// `--rebuild-graph`: each model's graph built again, one line (or JSON
/// object) per model.
fn rebuild_graphs(store: &Store, threshold: usize, json: bool) -> anyhow::Result<()> {
    let models = store.models()?;
    anyhow::ensure!(!models.is_empty(), "the index holds no vectors yet");
    for model in &models {
        if !json && model.vectors >= threshold {
            diag!(
                "rebuilding the approximate-search graph of {} ({} vectors)...",
                display_text(&model.name),
                model.vectors
            );
        }
        let start = std::time::Instant::now();
        // The new graph replaces the old one only once complete: a failure
        // leaves the old one, and searches go on using it where it is current.
        let built = seer_index::ann::rebuild(store, model, threshold).with_context(|| {
            format!(
                "could not rebuild the approximate-search graph of {} (the previous graph is left as it was)",
                display_text(&model.name)
            )
        })?;
        let seconds = start.elapsed().as_secs_f64();
        if json {
            out!(
                "{}",
                serde_json::json!({
                    "model": model.name,
                    "vectors": model.vectors,
                    "graph": built.is_some(),
                    "seconds": seconds,
                })
            )?;
        } else if built.is_some() {
            out!(
                "{}: graph rebuilt over {} vectors in {seconds:.1}s",
                display_text(&model.name),
                model.vectors
            )?;
        } else {
            out!(
                "{}: {} vectors, below the approximate-search threshold ({threshold}): exact search, no graph",
                display_text(&model.name),
                model.vectors
            )?;
        }
    }
    Ok(())
}

/// The summary of one model's run: failures on stderr, then one line (or one
/// JSON object).
fn report(
    dir: &std::path::Path,
    summary: &seer_index::IndexSummary,
    json: bool,
) -> anyhow::Result<()> {
    if let Some(sync) = &summary.ann {
        tracing::info!(
            "approximate index: {} inserted, {} removed, {} vectors",
            sync.inserted,
            sync.removed,
            sync.total
        );
    }
    for (path, cause) in &summary.failures {
        let cause = crate::output::cause_without_path(path, cause);
        diag!("error: {path}: {cause}");
    }
    if summary.videos_without_ffmpeg > 0 {
        let n = summary.videos_without_ffmpeg;
        diag!(
            "warning: {n} video{} not indexed: ffmpeg was not found (install it, e.g. `apt install ffmpeg`, or give --ffmpeg PATH); the next `seer index` picks {} up",
            if n == 1 { "" } else { "s" },
            if n == 1 { "it" } else { "them" }
        );
    }
    if json {
        out!(
            "{}",
            without_paths_in_causes(serde_json::to_value(summary)?)
        )?;
    } else {
        out!(
            "{}: {} added{}, {} unchanged, {} moved, {} copies, {} touched, {} removed, {} failed ({} still failing) in {:.1}s",
            display_path(dir),
            summary.added,
            match summary.video_frames {
                0 => String::new(),
                n => format!(" ({n} video frames)"),
            },
            summary.skipped,
            summary.moved,
            summary.copied,
            summary.touched,
            summary.removed,
            summary.failed,
            summary.still_failing,
            summary.seconds
        )?;
    }
    Ok(())
}

/// A summary's `failures` (`[path, cause]` pairs) with the cause no longer
/// starting with the path again, as the stderr lines and `seer status` give it.
fn without_paths_in_causes(mut summary: serde_json::Value) -> serde_json::Value {
    if let Some(failures) = summary.get_mut("failures").and_then(|f| f.as_array_mut()) {
        for failure in failures {
            if let Some([serde_json::Value::String(path), serde_json::Value::String(cause)]) =
                failure.as_array_mut().map(|pair| pair.as_mut_slice())
            {
                *cause = crate::output::cause_without_path(path, cause).to_string();
            }
        }
    }
    summary
}

/// The summary of one caption model's run, as [`report`] prints an index run's.
fn report_captions(
    dir: &std::path::Path,
    summary: &seer_index::CaptionSummary,
    json: bool,
) -> anyhow::Result<()> {
    for (path, cause) in &summary.failures {
        let cause = crate::output::cause_without_path(path, cause);
        diag!("error: {path}: {cause}");
    }
    if summary.videos_without_ffmpeg > 0 {
        let n = summary.videos_without_ffmpeg;
        diag!(
            "warning: {n} video{} not captioned: ffmpeg was not found (install it, e.g. `apt install ffmpeg`, or give --ffmpeg PATH); the next `seer index` captions {}",
            if n == 1 { "" } else { "s" },
            if n == 1 { "it" } else { "them" }
        );
    }
    if json {
        out!(
            "{}",
            without_paths_in_causes(serde_json::to_value(summary)?)
        )?;
    } else {
        out!(
            "{}: captions by {}: {} captioned, {} reused, {} unchanged, {} failed in {:.1}s",
            display_path(dir),
            summary.caption_model,
            summary.captioned,
            summary.reused,
            summary.unchanged,
            summary.failed,
            summary.seconds
        )?;
    }
    Ok(())
}
