//! A video's sampled frames through an image tower: frames come from ffmpeg
//! (`seer_video`), go through the model's own preprocessing (so a frame's
//! vector is that of the frame as a photo), and are embedded in model
//! batches. `seer index` and `seer embed` both sample videos through this.

use std::fs::File;
use std::path::Path;

use seer_video::{Ffmpeg, Frame, Sampling, VideoError, VideoInfo};

use crate::error::EngineError;
use crate::tasks::{ImageEncoder, ImageFeatures};

/// Why embedding a video's frames stopped.
#[derive(Debug)]
pub enum FramesError<E> {
    /// ffmpeg could not give the frames (the message names the file).
    Video(VideoError),
    /// The model failed on a batch of them.
    Model(EngineError),
    /// The caller's `each` refused a batch.
    Sink(E),
}

/// [`embed_video_frames`] for the video at `path`, opened here once: the
/// probe and the frames are of the same file, whatever the path names
/// meanwhile (`seer embed` and Python's `Model.embed_video`; `seer index`
/// opens its files itself, within the indexed roots).
#[allow(clippy::too_many_arguments)]
pub fn embed_video_file<E>(
    encoder: &dyn ImageEncoder,
    ffmpeg: &Ffmpeg,
    path: &Path,
    sampling: &Sampling,
    batch_size: usize,
    features: ImageFeatures,
    normalize: bool,
    each: impl FnMut(Vec<(f64, Vec<f32>)>) -> Result<(), E>,
) -> Result<usize, FramesError<E>> {
    let file = seer_video::open_video(path).map_err(FramesError::Video)?;
    let info = ffmpeg.probe_file(path, &file).map_err(FramesError::Video)?;
    embed_video_frames(
        encoder, ffmpeg, path, &file, &info, sampling, batch_size, features, normalize, each,
    )
}

/// Embeds the frames `ffmpeg` samples from `file`, the open file of `path`
/// (as `info` and `sampling` say; see `Ffmpeg::frames_of_file`), for
/// `features`, in model batches of `batch_size`, and hands each batch's
/// (time, vector) pairs to `each` in time order. Returns how many frames
/// were embedded (at least one, or an error). Errors name `path`.
#[allow(clippy::too_many_arguments)]
pub fn embed_video_frames<E>(
    encoder: &dyn ImageEncoder,
    ffmpeg: &Ffmpeg,
    path: &Path,
    file: &File,
    info: &VideoInfo,
    sampling: &Sampling,
    batch_size: usize,
    features: ImageFeatures,
    normalize: bool,
    mut each: impl FnMut(Vec<(f64, Vec<f32>)>) -> Result<(), E>,
) -> Result<usize, FramesError<E>> {
    let batch_size = batch_size.max(1);
    let mut times: Vec<f64> = Vec::with_capacity(batch_size);
    let mut pixels: Vec<f32> = Vec::with_capacity(batch_size * encoder.pixels_len());
    let mut embedded = 0usize;
    let mut run_batch = |times: &mut Vec<f64>, pixels: &mut Vec<f32>| {
        if times.is_empty() {
            return Ok(());
        }
        let vectors = encoder
            .embed_pixels_as(std::mem::take(pixels), times.len(), features, normalize)
            .map_err(FramesError::Model)?;
        embedded += times.len();
        each(times.drain(..).zip(vectors).collect()).map_err(FramesError::Sink)
    };
    let mut stopped = None;
    let decoded = ffmpeg.frames_of_file(path, file, info, sampling, &mut |frame: Frame| {
        pixels.extend(encoder.preprocess(&frame.image));
        times.push(frame.time);
        if times.len() == batch_size {
            if let Err(e) = run_batch(&mut times, &mut pixels) {
                stopped = Some(e);
                return false;
            }
        }
        true
    });
    if let Some(e) = stopped {
        return Err(e);
    }
    decoded.map_err(FramesError::Video)?;
    run_batch(&mut times, &mut pixels)?;
    if embedded == 0 {
        return Err(FramesError::Video(VideoError::File {
            path: path.to_path_buf(),
            message: "ffmpeg decoded no frame of it".into(),
        }));
    }
    Ok(embedded)
}
