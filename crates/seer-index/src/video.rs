//! Indexing videos: each video is sampled (a frame every `interval` seconds,
//! by ffmpeg through `seer-video`), every frame is embedded like a photo, and
//! the video is committed as one file row (its vector the normalised mean of
//! its frames) with its frames' vectors and times (`store::frames`), in one
//! transaction per video: a crash loses at most the video in flight.
//!
//! A frame's vector is the vector of that frame saved as a lossless image and
//! embedded as a photo: frames go through the model's own preprocessing.

use std::fs::{File, Metadata};
use std::path::{Path, PathBuf};

use seer_engine::video::{embed_video_frames, FramesError};
use seer_engine::{ImageEncoder, ImageFeatures};
use seer_video::{Ffmpeg, Sampling, VideoError};

use crate::error::Result;
use crate::indexer::{without_name, IndexSummary, Progress};
use crate::pathcodec;
use crate::scan::{self, Walked};
use crate::store::{write, FileRecord, Store};
use crate::vector::Encoding;

/// How videos are indexed.
#[derive(Clone, Debug)]
pub struct VideoOptions {
    /// None when ffmpeg was not found: videos are then left for a later run
    /// (counted in [`IndexSummary::videos_without_ffmpeg`]), not recorded as
    /// failures, so installing ffmpeg is all it takes.
    pub ffmpeg: Option<Ffmpeg>,
    pub sampling: Sampling,
}

impl VideoOptions {
    /// ffmpeg from PATH when it is there, and the default sampling.
    pub fn ffmpeg_on_path() -> Self {
        Self {
            ffmpeg: Ffmpeg::find(None).ok(),
            sampling: Sampling::default(),
        }
    }
}

/// Where the index remembers the sampling its videos were indexed with.
const SAMPLING_KEY: &str = "video_sampling";

/// The sampling a run uses: the interval and frame cap it was given, else
/// those the index was last given, else the defaults. A run given other
/// values than the index's videos were sampled with takes those videos'
/// vectors out (one transaction, with the new values), so this run samples
/// them again; it returns how many. Runs that give nothing (a bare `seer
/// index`, the server's) keep what was given last.
pub fn sampling_for_run(
    store: &mut Store,
    interval: Option<f64>,
    max_frames: Option<usize>,
) -> Result<(Sampling, usize)> {
    let default = Sampling::default();
    let stored = store.meta(SAMPLING_KEY)?.and_then(|v| {
        let (i, m) = v.split_once(' ')?;
        Some((i.parse::<f64>().ok()?, m.parse::<usize>().ok()?))
    });
    let (was_interval, was_max) = stored.unwrap_or((default.interval, default.max_frames));
    let sampling = Sampling {
        interval: interval.unwrap_or(was_interval),
        max_frames: max_frames.unwrap_or(was_max),
        ..default
    };
    if (sampling.interval, sampling.max_frames) == (was_interval, was_max) {
        return Ok((sampling, 0));
    }
    let db_error = store.error_mapper();
    let tx = store.transaction()?;
    let result = (|| -> rusqlite::Result<usize> {
        let videos = write::forget_videos(&tx)?;
        tx.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
            [
                SAMPLING_KEY,
                &format!("{} {}", sampling.interval, sampling.max_frames),
            ],
        )?;
        write::bump_generation(&tx)?;
        Ok(videos)
    })();
    let videos = result.map_err(&db_error)?;
    tx.commit().map_err(&db_error)?;
    Ok((sampling, videos))
}

/// A video's frames, embedded, and what its file row records.
struct EmbeddedVideo {
    record: FileRecord,
    mean: Vec<f32>,
    frames: Vec<(f64, Vec<f32>)>,
}

/// Indexes `videos` (from the plan's files to embed), committing each.
#[allow(clippy::too_many_arguments)]
pub(crate) fn index_videos(
    store: &mut Store,
    encoder: &dyn ImageEncoder,
    model_id: i64,
    encoding: Encoding,
    options: &VideoOptions,
    batch_size: usize,
    normalize: bool,
    videos: &[Walked],
    roots: &[PathBuf],
    summary: &mut IndexSummary,
    on_progress: &mut dyn FnMut(Progress),
) -> Result<()> {
    let Some(ffmpeg) = &options.ffmpeg else {
        summary.videos_without_ffmpeg += videos.len();
        for _ in videos {
            on_progress(Progress::Embedded);
        }
        return Ok(());
    };
    for video in videos {
        let outcome = embed_video(
            ffmpeg,
            encoder,
            &options.sampling,
            batch_size,
            normalize,
            video,
            roots,
            &mut |done, total| on_progress(Progress::VideoFrames { done, total }),
        );
        on_progress(Progress::Embedded);
        let tx = store.transaction()?;
        let result = (|| -> rusqlite::Result<Option<String>> {
            let failure = match &outcome {
                Ok(done) => {
                    let id = write::upsert_file(&tx, &done.record)?;
                    write::put_embedding(&tx, id, model_id, encoding, &done.mean)?;
                    write::put_frames(&tx, id, model_id, encoding, &done.frames)?;
                    None
                }
                Err(Failure::Vanished) => {
                    if write::remove_path(&tx, &video.path)? {
                        summary.removed += 1;
                    }
                    None
                }
                Err(Failure::Cause(cause)) => {
                    write::record_failure(&tx, &video.path, video.size, video.mtime_ns, cause)?;
                    Some(cause.clone())
                }
            };
            write::bump_generation(&tx)?;
            Ok(failure)
        })();
        let failure = result
            .and_then(|f| tx.commit().map(|()| f))
            .map_err(|e| store.db(e))?;
        match (failure, &outcome) {
            (Some(cause), _) => {
                summary.failed += 1;
                summary
                    .failures
                    .push((pathcodec::display_stored(&video.path), cause));
            }
            (None, Ok(done)) => {
                summary.added += 1;
                summary.video_frames += done.frames.len();
            }
            (None, Err(_)) => {}
        }
    }
    Ok(())
}

enum Failure {
    /// Gone since the walk listed it.
    Vanished,
    /// Why it could not be indexed (without its name, which is stored beside it).
    Cause(String),
}

/// Embeds one video's frames; `on_frames(done, total)` after each model batch.
#[allow(clippy::too_many_arguments)]
fn embed_video(
    ffmpeg: &Ffmpeg,
    encoder: &dyn ImageEncoder,
    sampling: &Sampling,
    batch_size: usize,
    normalize: bool,
    file: &Walked,
    roots: &[PathBuf],
    on_frames: &mut dyn FnMut(usize, usize),
) -> std::result::Result<EmbeddedVideo, Failure> {
    let path = pathcodec::to_path(&file.path);
    // The walk checked this, but the path may have been replaced since. The
    // file is opened once: the hash, the probe and the frames are all of it,
    // whatever the path names meanwhile.
    let (opened, metadata) = open_within(&path, roots).map_err(|e| match e {
        Unopened::Gone => Failure::Vanished,
        Unopened::Cause(cause) => Failure::Cause(cause),
    })?;
    let mut hasher = blake3::Hasher::new();
    hasher
        .update_reader(&opened)
        .map_err(|e| Failure::Cause(format!("cannot read it: {e}")))?;
    let hash = *hasher.finalize().as_bytes();
    let cause = |e: VideoError| Failure::Cause(without_name(&e.to_string(), &path));
    let info = ffmpeg.probe_file(&path, &opened).map_err(cause)?;
    let total = sampling.frame_count(info.duration);

    let dim = encoder.embed_dim();
    let mut frames: Vec<(f64, Vec<f32>)> = Vec::new();
    let embedded = embed_video_frames(
        encoder,
        ffmpeg,
        &path,
        &opened,
        &info,
        sampling,
        batch_size,
        ImageFeatures::Embedding,
        normalize,
        |batch| {
            // A full batch: the video goes on (the last, partial one ends it).
            let full = batch.len() == batch_size.max(1);
            frames.extend(batch);
            if full {
                on_frames(frames.len(), total.max(frames.len()));
            }
            Ok::<(), std::convert::Infallible>(())
        },
    );
    match embedded {
        Ok(_) => {}
        Err(FramesError::Video(e)) => return Err(cause(e)),
        Err(FramesError::Model(e)) => {
            return Err(Failure::Cause(format!(
                "the model failed on its frames: {e}"
            )))
        }
        Err(FramesError::Sink(never)) => match never {},
    }
    let mut mean = vec![0f32; dim];
    for (_, v) in &frames {
        for (m, x) in mean.iter_mut().zip(v) {
            *m += x;
        }
    }
    let n = frames.len() as f32;
    mean.iter_mut().for_each(|m| *m /= n);
    if normalize {
        let norm = mean.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 0.0 {
            mean.iter_mut().for_each(|m| *m /= norm);
        }
    }
    Ok(EmbeddedVideo {
        record: FileRecord {
            path: file.path.clone(),
            size: metadata.len() as i64,
            mtime_ns: scan::mtime_ns(&metadata),
            hash: Some(hash),
            width: Some(info.width),
            height: Some(info.height),
            taken_at: info.taken_at.clone(),
        },
        mean,
        frames,
    })
}

/// Why [`open_within`] opened nothing.
#[derive(Debug)]
pub(crate) enum Unopened {
    /// Gone since it was listed (or indexed).
    Gone,
    /// Why not, without the file's name.
    Cause(String),
}

impl std::fmt::Display for Unopened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unopened::Gone => f.write_str(scan::GONE),
            Unopened::Cause(cause) => f.write_str(cause),
        }
    }
}

/// Opens the video at `path` for ffmpeg if what is opened is a regular file
/// within the canonical `roots`. The path is looked at first, so that a
/// symlink out of them (to a FIFO or device, say) is never opened; then the
/// opened file itself is located, so that a path swapped between that look
/// and the open is refused. ffmpeg is then given this file, not the path.
pub(crate) fn open_within(
    path: &Path,
    roots: &[PathBuf],
) -> std::result::Result<(File, Metadata), Unopened> {
    if let Some(cause) = scan::gone_or_outside(path, roots) {
        return Err(match cause == scan::GONE {
            true => Unopened::Gone,
            false => Unopened::Cause(cause.into()),
        });
    }
    // Opened without waiting (a path that became a FIFO).
    let (file, metadata) = scan::open_regular(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Unopened::Gone,
        _ => Unopened::Cause(e.to_string()),
    })?;
    let real = opened_path(&file, path)
        .map_err(|e| Unopened::Cause(format!("cannot tell where the opened file is: {e}")))?;
    if !roots.iter().any(|root| real.starts_with(root)) {
        return Err(Unopened::Cause(scan::OUTSIDE_ROOTS.into()));
    }
    Ok((file, metadata))
}

/// The real path of the opened `file`, asked of the kernel about the
/// descriptor.
#[cfg(target_os = "linux")]
fn opened_path(file: &File, _path: &Path) -> std::io::Result<PathBuf> {
    use std::os::fd::AsRawFd;
    std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))
}

/// Without a descriptor-to-path call: the path resolved again, required to
/// name the very file that was opened (same device and inode).
#[cfg(not(target_os = "linux"))]
fn opened_path(file: &File, path: &Path) -> std::io::Result<PathBuf> {
    let real = path.canonicalize()?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let (opened, named) = (file.metadata()?, std::fs::metadata(&real)?);
        if (opened.dev(), opened.ino()) != (named.dev(), named.ino()) {
            return Err(std::io::Error::other(
                "the file was replaced while it was opened",
            ));
        }
    }
    #[cfg(not(unix))]
    let _ = file;
    Ok(real)
}
