//! `seer embed`: images, videos' sampled frames and texts to vectors, as JSON
//! lines, an .npy file, or a short human-readable listing.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use seer_engine::video::{embed_video_file, FramesError};
use seer_engine::{collect_image_paths, ImageFeatures};
use seer_index::pathcodec::display_path;
use seer_util::fs::{AtomicFile, Durability};
use seer_video::{Ffmpeg, Sampling};

use crate::common::ModelArgs;
use crate::output::{escape_line, inputs_path, progress, write_npy, Failures, Lines, NpyStream};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Image files or folders (walked recursively, for images only). A video
    /// named here gives a vector per sampled frame (with its time), after
    /// the images; a video inside a folder is not embedded.
    #[arg(long, num_args = 1.., value_name = "PATH")]
    image: Vec<PathBuf>,
    /// Texts to embed.
    #[arg(long, num_args = 1.., value_name = "TEXT")]
    text: Vec<String>,
    /// A file with one text per line.
    #[arg(long, value_name = "FILE")]
    text_file: Option<PathBuf>,
    /// Print one JSON object per line: {"input": ..., "embedding": [...]}; a
    /// video's frame adds "time", in seconds (with `--features patch`:
    /// {"input", "row", "grid": [h, w], "dim"} beside --out).
    #[arg(long)]
    json: bool,
    /// Write an f32 [N, D] array here (`--features patch`: [N, h, w, D]), and
    /// the inputs in order to X.inputs.txt (a video's frame as PATH#t=3.000).
    /// With --shards, the output folder.
    #[arg(long, value_name = "FILE.npy")]
    out: Option<PathBuf>,
    /// Projected features as the reference's get_*_features, not L2-normalised
    /// (DINOv2: pooler_output; with `--features mean`, the plain mean).
    #[arg(long)]
    raw: bool,
    /// Which image features: `cls` the model's embedding (DINOv2: the CLS
    /// token); `mean` the mean of the patch tokens; `patch` every patch token,
    /// as an [N, h, w, D] array in --out, never normalised. `mean` and `patch`
    /// need a model with patch tokens (DINOv2) and take no texts.
    #[arg(long, value_enum, default_value_t = Features::Cls)]
    features: Features,
    /// Seconds between the frames sampled from a video given to --image (as
    /// `seer index`).
    #[arg(long, value_name = "SECONDS", value_parser = crate::commands::index::parse_interval, allow_negative_numbers = true, default_value_t = Sampling::default().interval)]
    frame_interval: f64,
    /// Most frames sampled from one video: a longer video is sampled more
    /// sparsely (its length / this).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1_000_000), default_value_t = Sampling::default().max_frames as u32)]
    max_frames: u32,
    /// The ffmpeg program to decode videos with (ffprobe must be beside it);
    /// default: ffmpeg on PATH.
    #[arg(long, value_name = "PATH", env = "SEER_FFMPEG")]
    ffmpeg: Option<PathBuf>,
    #[command(flatten)]
    shards: crate::commands::shards::ShardArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Features {
    Cls,
    Mean,
    Patch,
}

impl From<Features> for ImageFeatures {
    fn from(f: Features) -> Self {
        match f {
            Features::Cls => ImageFeatures::Embedding,
            Features::Mean => ImageFeatures::PatchMean,
            Features::Patch => ImageFeatures::PatchGrid,
        }
    }
}

enum Sink {
    Json,
    /// Rows with their inputs already escaped to one line.
    Npy(PathBuf, Vec<(String, Vec<f32>)>),
    Human,
    /// Patch grids, written to the file as they come (they are large); the
    /// inputs escaped to one line; metadata lines on stdout with `--json`
    /// (`None` without), which a reader that leaves early does not stop.
    Grids {
        npy: NpyStream,
        inputs: Vec<String>,
        json: Option<Lines>,
        grid: (usize, usize),
        dim: usize,
    },
}

/// What was embedded, named the way each output needs it.
enum Input<'a> {
    Image(&'a Path),
    /// A video's frame at this many seconds.
    Frame(&'a Path, f64),
    Text(&'a str),
}

impl Input<'_> {
    /// For JSON, which carries any text: a text as given, a path in its
    /// escaped form (a path may not be UTF-8).
    fn json(&self) -> String {
        match self {
            Input::Image(p) | Input::Frame(p, _) => display_path(p),
            Input::Text(t) => t.to_string(),
        }
    }

    /// For line-oriented output: newlines and other control characters escaped.
    fn line(&self) -> String {
        match self {
            Input::Image(p) => display_path(p),
            Input::Frame(p, t) => format!("{}#t={t:.3}", display_path(p)),
            Input::Text(t) => escape_line(t),
        }
    }

    /// The frame's time, which JSON carries beside the input.
    fn time(&self) -> Option<f64> {
        match self {
            Input::Frame(_, t) => Some(*t),
            _ => None,
        }
    }

    /// `value` with the frame's time added (as "time"), for a frame.
    fn with_time(&self, mut value: serde_json::Value) -> serde_json::Value {
        if let (Some(t), Some(object)) = (self.time(), value.as_object_mut()) {
            object.insert("time".into(), t.into());
        }
        value
    }
}

impl Sink {
    fn emit(&mut self, input: Input, embedding: Vec<f32>) -> anyhow::Result<()> {
        let mut stdout = std::io::stdout().lock();
        match self {
            Sink::Json => {
                let mut line = input.with_time(serde_json::json!({ "input": input.json() }));
                line["embedding"] = embedding.into();
                writeln!(stdout, "{line}")?;
            }
            Sink::Npy(_, rows) => rows.push((input.line(), embedding)),
            Sink::Grids {
                npy,
                inputs,
                json,
                grid,
                dim,
            } => {
                npy.push(&embedding)?;
                if let Some(lines) = json {
                    let mut line = input.with_time(serde_json::json!({ "input": input.json() }));
                    line["row"] = inputs.len().into();
                    line["grid"] = serde_json::json!([grid.0, grid.1]);
                    line["dim"] = (*dim).into();
                    lines.print(line)?;
                }
                inputs.push(input.line());
            }
            Sink::Human => {
                let head: Vec<String> = embedding
                    .iter()
                    .take(4)
                    .map(|v| format!("{v:+.4}"))
                    .collect();
                writeln!(
                    stdout,
                    "{}\t[{}, ...] ({} dims)",
                    input.line(),
                    head.join(", "),
                    embedding.len()
                )?;
            }
        }
        Ok(())
    }

    fn finish(self, dim: usize) -> anyhow::Result<()> {
        // The array and its row listing are a pair: the listing is written
        // (and synced) to a temporary before the array is put in place, and
        // put in place right after it, so a full disk fails with the earlier
        // pair whole, never with a new array beside the old listing (or none).
        let (path, inputs, listed) = match self {
            Sink::Npy(path, rows) => {
                let vectors: Vec<Vec<f32>> = rows.iter().map(|(_, v)| v.clone()).collect();
                let inputs: Vec<String> = rows.into_iter().map(|(input, _)| input).collect();
                let listed = inputs_path(&path);
                let staged_listing = staged_listing(listed.as_deref(), &inputs)?;
                write_npy(&path, &vectors, dim)?;
                staged_listing.map(commit).transpose()?;
                crate::output::written(&path);
                (path, inputs, listed)
            }
            Sink::Grids { npy, inputs, .. } => {
                let path = npy.path().to_path_buf();
                let listed = inputs_path(&path);
                let staged_listing = staged_listing(listed.as_deref(), &inputs)?;
                npy.commit()?;
                staged_listing.map(commit).transpose()?;
                (path, inputs, listed)
            }
            Sink::Json | Sink::Human => return Ok(()),
        };
        match listed {
            Some(listing) => diag!(
                "wrote {} rows to {} and {}",
                inputs.len(),
                path.display(),
                listing.display()
            ),
            // A device or pipe: no file of row names beside it.
            None => diag!("wrote {} rows to {}", inputs.len(), path.display()),
        }
        Ok(())
    }
}

/// The `.inputs.txt` of `inputs` staged at `path`, where there is one.
fn staged_listing(path: Option<&Path>, inputs: &[String]) -> anyhow::Result<Option<AtomicFile>> {
    path.map(|path| staged(path, &listing(inputs))).transpose()
}

/// The `.inputs.txt` of `inputs`: one line each.
fn listing(inputs: &[String]) -> Vec<u8> {
    inputs
        .iter()
        .flat_map(|input| [input.as_bytes(), b"\n"])
        .flatten()
        .copied()
        .collect()
}

/// `bytes` written and synced to a temporary beside `path` (or written to a
/// device or pipe in place), to be put in place by [`commit`] (dropped, it is
/// removed): synced before the other file of the pair is in place.
fn staged(path: &Path, bytes: &[u8]) -> anyhow::Result<AtomicFile> {
    AtomicFile::create(path, Durability::Fsync)
        .and_then(|mut f| {
            f.write_all(bytes)?;
            f.sync()?;
            Ok(f)
        })
        .with_context(|| format!("{}: cannot write", path.display()))
}

fn commit(file: AtomicFile) -> anyhow::Result<()> {
    let path = file.dest().to_path_buf();
    file.commit()
        .with_context(|| format!("{}: cannot write", path.display()))
}

/// Why a video given to `seer embed` is not embedded when ffmpeg is missing.
const NO_FFMPEG: &str = "is a video, and reading its frames needs ffmpeg, which was not found (install ffmpeg, e.g. apt install ffmpeg, or give --ffmpeg PATH)";

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if let Some(spec) = &args.shards.shards {
        return crate::commands::shards::run(
            &args.shards,
            spec,
            &args.model,
            args.out.as_deref(),
            !args.raw,
            args.json,
        );
    }
    let mut texts = args.text.clone();
    if let Some(file) = &args.text_file {
        let content = std::fs::read_to_string(file)
            .with_context(|| format!("{}: cannot read", file.display()))?;
        texts.extend(
            content
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(str::to_string),
        );
    }
    anyhow::ensure!(
        !args.image.is_empty() || !texts.is_empty(),
        "nothing to embed: give --image PATH..., --text TEXT... or --text-file FILE"
    );
    let features = ImageFeatures::from(args.features);
    match args.features {
        Features::Cls | Features::Mean => anyhow::ensure!(
            !(args.json && args.out.is_some()),
            "--json and --out: give one (both only with --features patch, where --json prints what each row of --out holds)"
        ),
        Features::Patch => anyhow::ensure!(
            args.out.is_some(),
            "--features patch writes an [N, h, w, D] array: give --out FILE.npy"
        ),
    }
    anyhow::ensure!(
        args.features == Features::Cls || texts.is_empty(),
        "--features {} is a feature of images: embed texts with --features cls",
        if args.features == Features::Mean {
            "mean"
        } else {
            "patch"
        }
    );
    // Images alone need no tokenizer: a model folder without one loads
    // offline.
    let model = match texts.is_empty() {
        true => args.model.load_images()?,
        false => args.model.load()?,
    };
    // An image-only model is refused before any image is embedded, and so is a
    // model without the features asked for.
    let text_encoder = match texts.is_empty() {
        true => None,
        false => Some(model.text()?),
    };
    let image_encoder = match args.image.is_empty() {
        true => None,
        false => Some(model.image_for(features)?),
    };
    let options = args.model.embed_options(!args.raw)?;
    let mut sink = match (&args.out, args.json) {
        (Some(p), json) if features == ImageFeatures::PatchGrid => {
            let image = image_encoder.context("--features patch needs --image")?;
            let (h, w) = image
                .patch_grid()
                .context("this model gives no patch grid")?;
            let dim = image.embed_dim();
            Sink::Grids {
                npy: NpyStream::create(p, &[h, w, dim])?,
                inputs: Vec::new(),
                json: json.then(|| Lines::new(true)),
                grid: (h, w),
                dim,
            }
        }
        (Some(p), _) => {
            crate::output::will_write(p);
            Sink::Npy(p.clone(), Vec::new())
        }
        (None, true) => Sink::Json,
        (None, false) => Sink::Human,
    };
    let mut failures = Failures::default();

    let (mut paths, walk_failures) = collect_image_paths(&args.image);
    // A folder's walk takes images only, but a video named on its own would
    // reach the image decoder, whose message would not say what to do.
    let (videos, images): (Vec<PathBuf>, Vec<PathBuf>) = paths
        .into_iter()
        .partition(|p| seer_video::has_video_extension(p));
    paths = images;
    // ffmpeg is looked for only when a video was named; one given by name
    // must work (a typo is an error, not a skip).
    let ffmpeg = match videos.is_empty() {
        true => None,
        false => match Ffmpeg::find(args.ffmpeg.as_deref()) {
            Ok(found) => Some(found),
            Err(e) if args.ffmpeg.is_some() => return Err(e.into()),
            Err(_) => None,
        },
    };
    let mut sampling = Sampling {
        interval: args.frame_interval,
        max_frames: args.max_frames as usize,
        ..Sampling::default()
    };
    // --max-pixels guards frames as it guards photos (as in `seer index`).
    sampling.limits.max_pixels = options.limits.max_pixels;
    let pb = progress(paths.len() + videos.len() + texts.len(), "embedding");
    for (path, cause) in walk_failures {
        failures.report_path(&pb, &path, &cause);
    }
    let mut sink_error = None;
    // Counted as written: walk failures are not among `paths`, so subtracting
    // failures from `paths.len()` would undercount.
    let mut done = 0;
    model
        .image_for(features)?
        .image_file_features(&paths, &options, features, |outcome| {
            pb.inc(1);
            match outcome.result {
                Ok(e) => match sink.emit(Input::Image(&outcome.path), e) {
                    Ok(()) => done += 1,
                    Err(err) => {
                        sink_error.get_or_insert(err);
                    }
                },
                Err(e) => failures.report_path(&pb, &outcome.path, &e.to_string()),
            }
        })?;
    if let Some(e) = sink_error {
        return Err(e);
    }
    // Videos after the images: each frame a row, in time order.
    for path in &videos {
        let Some(ffmpeg) = &ffmpeg else {
            pb.inc(1);
            failures.report_path(&pb, path, NO_FFMPEG);
            continue;
        };
        let encoder = model.image_for(features)?;
        let outcome = embed_video_file(
            encoder,
            ffmpeg,
            path,
            &sampling,
            options.batch_size,
            features,
            options.normalize,
            |frames| {
                for (time, embedding) in frames {
                    sink.emit(Input::Frame(path, time), embedding)?;
                    done += 1;
                }
                anyhow::Ok(())
            },
        );
        pb.inc(1);
        match outcome {
            Ok(_) => {}
            Err(FramesError::Sink(e)) => return Err(e),
            Err(FramesError::Video(e)) => failures.report_path(&pb, path, &e.to_string()),
            Err(FramesError::Model(e)) => {
                failures.report_path(&pb, path, &format!("the model failed on its frames: {e}"))
            }
        }
    }
    if let Some(encoder) = text_encoder {
        for chunk in texts.chunks(options.batch_size) {
            for (text, embedding) in chunk.iter().zip(encoder.embed_texts(chunk, &options)?) {
                sink.emit(Input::Text(text), embedding)?;
                done += 1;
            }
            pb.inc(chunk.len() as u64);
        }
    }
    pb.finish_and_clear();
    sink.finish(model.embed_dim())?;
    failures.summary(done, "inputs");
    Ok(failures.exit_code())
}
