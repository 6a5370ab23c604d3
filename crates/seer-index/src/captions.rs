//! Captioning an index's photos (`seer index --caption-model M`), as crash-safe
//! and incremental as embedding them.
//!
//! A run captions the indexed files under its folders that have no caption by
//! that model yet, committing after every model batch: a killed run (even with
//! SIGKILL) loses at most the batch in flight, and the next run captions only
//! what is left. Each caption is stored with the caption model's id, so one
//! index can hold captions of several models, and a changed file (a new row,
//! see `store.rs`) is captioned again. A copy of a captioned file reuses its
//! caption, and identical files in one run are captioned once.
//!
//! A file is read only when it lies under the index's folders and is read
//! whole once: its content hash must be the one indexed (a file changed since
//! it was embedded is captioned after the next index run, never with a caption
//! of other content).
//!
//! A video is captioned by one frame: the sampled frame nearest the video's
//! mean vector, the one most like the whole video (the middle of the video
//! where no frame is stored), decoded by ffmpeg from the opened file whose
//! hash was checked. Without ffmpeg videos wait for a run that has it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Instant;

use rayon::prelude::*;
use seer_engine::{EngineError, GenerateOptions, LoadedModel, PixelInput};
use seer_image::{DecodeLimits, DecodedImage};
use seer_video::{Ffmpeg, FrameLimits, VideoError};

use crate::error::{IndexError, Result};
use crate::indexer::{reachable_roots, without_name, Progress};
use crate::lock::IndexLock;
use crate::pathcodec;
use crate::scan;
use crate::store::{write, Store, Uncaptioned};
use crate::video::{open_within, Unopened};

#[derive(Clone, Debug)]
pub struct CaptionOptions {
    /// The index's folders to caption (files below them that are indexed).
    pub roots: Vec<PathBuf>,
    /// Images per model batch, and per commit.
    pub batch_size: usize,
    pub limits: DecodeLimits,
    /// Beam width and length; `None` keeps the checkpoint's defaults.
    pub generate: GenerateOptions,
    /// What decodes a video's frame; without it videos are left for later.
    pub ffmpeg: Option<Ffmpeg>,
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct CaptionSummary {
    /// The caption model, as the index records it.
    pub caption_model: String,
    /// Files captioned by the model in this run.
    pub captioned: usize,
    /// Files that took the caption of a file with the same content.
    pub reused: usize,
    /// Files that already had a caption by this model.
    pub unchanged: usize,
    /// Files that could not be captioned in this run (tried again next run).
    pub failed: usize,
    /// Videos left for a later run because ffmpeg was not found.
    pub videos_without_ffmpeg: usize,
    pub seconds: f64,
    /// (path as shown to people, cause) of each failure.
    pub failures: Vec<(String, String)>,
}

/// Files with the same content: the first is captioned, the rest take its caption.
struct Group {
    file: Uncaptioned,
    copies: Vec<i64>,
    /// Of a video, the time (seconds) of the frame to caption, where known.
    frame: Option<f64>,
}

/// Captions the indexed files under `options.roots` that have no caption by
/// `model` (its captioning head) yet. The caller holds the index's lock.
pub fn caption_locked(
    store: &mut Store,
    _lock: &IndexLock,
    model: &LoadedModel,
    options: &CaptionOptions,
    on_progress: &mut dyn FnMut(Progress),
) -> Result<CaptionSummary> {
    let start = Instant::now();
    let captioner = model.captioner()?;
    // A root gone since it was indexed is skipped (`index` reports it).
    let (roots, _gone) = reachable_roots(store, &options.roots)?;
    let root_strings: Vec<String> = roots.iter().map(|r| pathcodec::to_stored(r)).collect();
    let captioner_id = {
        let db_error = store.error_mapper();
        let tx = store.transaction()?;
        let id = write::captioner_id(&tx, &model.id).map_err(&db_error)?;
        tx.commit().map_err(&db_error)?;
        id
    };
    let (todo, unchanged) = store.caption_work_under(&root_strings, captioner_id)?;
    let mut summary = CaptionSummary {
        caption_model: model.id.clone(),
        unchanged,
        ..Default::default()
    };

    // Copies of captioned files take their caption at once; identical
    // uncaptioned files are grouped so the model sees one of them.
    let mut reused = Vec::new();
    let mut groups: Vec<Group> = Vec::new();
    let mut by_hash: HashMap<[u8; 32], usize> = HashMap::new();
    for file in todo {
        if let Some(hash) = file.hash {
            if let Some(text) = store.caption_by_hash(&hash, captioner_id)? {
                reused.push((file.id, text));
                continue;
            }
        }
        if file.video && options.ffmpeg.is_none() {
            summary.videos_without_ffmpeg += 1;
            continue;
        }
        if let Some(hash) = file.hash {
            if let Some(&g) = by_hash.get(&hash) {
                groups[g].copies.push(file.id);
                continue;
            }
            by_hash.insert(hash, groups.len());
        }
        let frame = match file.video {
            true => store.representative_frame(file.id)?,
            false => None,
        };
        groups.push(Group {
            file,
            copies: Vec::new(),
            frame,
        });
    }
    if !reused.is_empty() {
        let db_error = store.error_mapper();
        let tx = store.transaction()?;
        for (id, text) in &reused {
            write::put_caption(&tx, *id, captioner_id, text).map_err(&db_error)?;
        }
        tx.commit().map_err(&db_error)?;
        summary.reused = reused.len();
    }
    on_progress(Progress::Planned(groups.len()));

    let batch_size = options.batch_size.max(1);
    let pixels_len = captioner.pixels_len();
    let (tx, rx) = mpsc::sync_channel::<Vec<std::result::Result<Vec<f32>, String>>>(1);
    std::thread::scope(|scope| -> Result<()> {
        let (groups, roots, limits) = (&groups, &roots, &options.limits);
        // Decoding runs one batch ahead of the model, on all cores.
        scope.spawn(move || {
            for chunk in groups.chunks(batch_size) {
                let prepared = chunk
                    .par_iter()
                    .map(|g| {
                        let pixels = match (g.file.video, &options.ffmpeg) {
                            (true, Some(ffmpeg)) => {
                                prepare_video(captioner, &g.file, g.frame, ffmpeg, roots, limits)
                            }
                            _ => prepare(captioner, &g.file, roots, limits),
                        };
                        pixels.map_err(|e| e.to_string())
                    })
                    .collect();
                if tx.send(prepared).is_err() {
                    return; // the model failed: the run stops
                }
            }
        });
        for (chunk, prepared) in groups.chunks(batch_size).zip(rx) {
            let ok = prepared.iter().filter(|p| p.is_ok()).count();
            let mut pixels = Vec::with_capacity(ok * pixels_len);
            for p in prepared.iter().flatten() {
                pixels.extend_from_slice(p);
            }
            let captions = match ok {
                0 => Vec::new(),
                n => captioner.caption(pixels, n, None, &options.generate)?,
            };
            if captions.len() != ok {
                return Err(IndexError::Invalid(format!(
                    "the caption model gave {} captions for {ok} images",
                    captions.len()
                )));
            }
            let mut captions = captions.into_iter();
            let mut batch = Vec::with_capacity(chunk.len());
            for (group, p) in chunk.iter().zip(prepared) {
                batch.push((
                    group,
                    p.map(|_| {
                        captions
                            .next()
                            .map(|g| g.text.trim().to_string())
                            .unwrap_or_default()
                    }),
                ));
            }
            commit(store, captioner_id, &batch, &mut summary)?;
            for _ in 0..batch.len() {
                on_progress(Progress::Embedded);
            }
        }
        Ok(())
    })?;
    summary.seconds = start.elapsed().as_secs_f64();
    Ok(summary)
}

/// One batch's captions in one transaction.
fn commit(
    store: &mut Store,
    captioner_id: i64,
    batch: &[(&Group, std::result::Result<String, String>)],
    summary: &mut CaptionSummary,
) -> Result<()> {
    let db_error = store.error_mapper();
    let tx = store.transaction()?;
    for (group, outcome) in batch {
        if let Ok(text) = outcome {
            for id in std::iter::once(&group.file.id).chain(&group.copies) {
                write::put_caption(&tx, *id, captioner_id, text).map_err(&db_error)?;
            }
        }
    }
    tx.commit().map_err(&db_error)?;
    for (group, outcome) in batch {
        match outcome {
            Ok(_) => summary.captioned += 1 + group.copies.len(),
            Err(cause) => {
                let path = pathcodec::display_stored(&group.file.path);
                summary.failed += 1 + group.copies.len();
                summary.failures.push((path, cause.clone()));
            }
        }
    }
    Ok(())
}

/// An indexed file's pixels for `model`: read once, checked to be the content
/// the index holds, decoded within `limits`.
fn prepare(
    model: &dyn PixelInput,
    file: &Uncaptioned,
    roots: &[PathBuf],
    limits: &DecodeLimits,
) -> seer_engine::Result<Vec<f32>> {
    let (bytes, shown) = read_indexed(&file.path, roots, limits)?;
    if let Some(hash) = file.hash {
        if *blake3::hash(&bytes).as_bytes() != hash {
            return Err(EngineError::File {
                path: PathBuf::from(shown),
                message: "changed since it was indexed; run `seer index` again to caption it"
                    .into(),
            });
        }
    }
    let decoded = seer_image::decode_bytes_full(&bytes, &shown, limits)?;
    Ok(model.preprocess(&decoded))
}

/// An indexed video's pixels for `model`: its frame at `time` (else its
/// middle), decoded by `ffmpeg` from the file opened once under `roots` and
/// checked to be the content the index holds.
fn prepare_video(
    model: &dyn PixelInput,
    file: &Uncaptioned,
    time: Option<f64>,
    ffmpeg: &Ffmpeg,
    roots: &[PathBuf],
    limits: &DecodeLimits,
) -> seer_engine::Result<Vec<f32>> {
    let shown = pathcodec::display_stored(&file.path);
    let fail = |message: String| EngineError::File {
        path: PathBuf::from(&shown),
        message,
    };
    let path = pathcodec::to_path(&file.path);
    let (opened, _) = open_within(&path, roots).map_err(|e| match e {
        Unopened::Gone => fail(scan::GONE.into()),
        Unopened::Cause(cause) => fail(cause),
    })?;
    if let Some(hash) = file.hash {
        let mut hasher = blake3::Hasher::new();
        hasher
            .update_reader(&opened)
            .map_err(|source| EngineError::Io {
                path: PathBuf::from(&shown),
                source,
            })?;
        if *hasher.finalize().as_bytes() != hash {
            return Err(fail(
                "changed since it was indexed; run `seer index` again to caption it".into(),
            ));
        }
    }
    let video = |e: VideoError| fail(without_name(&e.to_string(), &path));
    let time = match time {
        Some(time) => time,
        None => {
            let duration = ffmpeg.probe_file(&path, &opened).map_err(video)?.duration;
            // An unknown length (0 or not a number): the first frame.
            match duration.is_finite() && duration > 0.0 {
                true => duration / 2.0,
                false => 0.0,
            }
        }
    };
    let frame_limits = FrameLimits {
        max_pixels: limits.max_pixels,
        ..FrameLimits::default()
    };
    let frame = ffmpeg
        .frame_at_file(&path, &opened, time, &frame_limits)
        .map_err(video)?;
    Ok(model.preprocess(&frame.image))
}

/// The bytes of the indexed file at `stored` (with its name as shown to
/// people), read only when its real path lies under `roots` (canonical) and it
/// is within the size limit.
pub(crate) fn read_indexed(
    stored: &str,
    roots: &[PathBuf],
    limits: &DecodeLimits,
) -> seer_engine::Result<(Vec<u8>, String)> {
    let shown = pathcodec::display_stored(stored);
    let fail = |message: String| EngineError::File {
        path: PathBuf::from(&shown),
        message,
    };
    let path = pathcodec::to_path(stored);
    if let Some(cause) = scan::gone_or_outside(&path, roots) {
        return Err(fail(cause.into()));
    }
    let io = |source| EngineError::Io {
        path: PathBuf::from(&shown),
        source,
    };
    let (mut file, metadata) = scan::open_regular(&path).map_err(io)?;
    if metadata.len() > limits.max_file_bytes {
        return Err(fail(format!(
            "file is larger than the {} byte limit",
            limits.max_file_bytes
        )));
    }
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut file, &mut bytes).map_err(io)?;
    Ok((bytes, shown))
}

/// An indexed file decoded (see [`read_indexed`]), for models that read
/// images another way than the embedding towers (reranking).
pub fn decode_indexed(
    stored: &str,
    roots: &[PathBuf],
    limits: &DecodeLimits,
) -> seer_engine::Result<DecodedImage> {
    let (bytes, shown) = read_indexed(stored, roots, limits)?;
    Ok(seer_image::decode_bytes_full(&bytes, &shown, limits)?)
}
