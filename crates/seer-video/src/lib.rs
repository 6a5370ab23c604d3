//! Frames sampled from video files, decoded by an `ffmpeg` subprocess.
//!
//! ffmpeg is an optional *runtime* dependency: nothing here links to it, and
//! [`Ffmpeg::find`] says how to install it when it is missing.
//!
//! How a video becomes frames (see [`Ffmpeg::frames`]):
//! - One ffmpeg process decodes the file once. The `fps` filter picks the
//!   frames: with `round=up` and `start_time=0` its output frame k is the
//!   last input frame whose timestamp is <= tick k (it buffers one frame
//!   ahead to know). Its rate is 2/interval so that its odd ticks are the
//!   sample times (i + 0.5) * interval, and `select` keeps those; the fps
//!   rate is a rational in microseconds, so the tick arithmetic inside ffmpeg
//!   is exact integer rescaling, not floating point.
//! - Frames come out as PPM (`-f image2pipe -c:v ppm`, rgb24): each carries
//!   its size, so autorotated (upright) or size-changing streams need nothing
//!   extra, and the size is checked before the buffer is allocated.
//! - Timestamps are as a player shows them: ffmpeg subtracts the file's start
//!   time (no `-copyts`). Pixel aspect ratio is not corrected.
//!
//! Untrusted input: ffmpeg opens its input as a URL and follows playlists, so
//! only the `file` protocol is allowed, and demuxers are limited to ordinary
//! video containers ([`DEMUXERS`]): an HLS or concat playlist named `.mp4` is
//! refused before any of its entries is opened.
//!
//! ffmpeg reads the file seer opened, not its path: a caller that checked an
//! open file (inside the indexed folders, its hash) gives that file
//! ([`Ffmpeg::probe_file`], [`Ffmpeg::frames_of_file`],
//! [`Ffmpeg::frame_at_file`]), and the path-taking calls open the path once
//! per call. On Linux the child inherits the file as descriptor 3 and ffmpeg
//! is given `file:/dev/fd/3`, which opens that same file (not whatever the
//! path names by then) and, unlike `pipe:`, can seek (an MP4 with its index
//! at the end needs that). Elsewhere ffmpeg is given `file:` + the absolute
//! path, so a path swapped after the caller's check is read there.

mod ppm;
mod probe;
mod process;

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use seer_image::DecodedImage;

use crate::process::{Next, Running};

/// Extensions of the files the index treats as videos (lower case, no dot).
pub const VIDEO_EXTENSIONS: &[&str] = &[
    "mp4", "m4v", "mov", "mkv", "webm", "avi", "wmv", "mpg", "mpeg", "3gp", "mts", "m2ts", "ts",
    "ogv", "flv",
];

/// Whether `path` ends in one of [`VIDEO_EXTENSIONS`] (case-insensitive).
pub fn has_video_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| VIDEO_EXTENSIONS.iter().any(|v| v.eq_ignore_ascii_case(e)))
}

/// The demuxers ffmpeg may use (`-format_whitelist`): the containers of
/// [`VIDEO_EXTENSIONS`] and raw MPEG video elementary streams (`.mpg`/`.m4v`
/// are sometimes that). Never `hls`, `concat` or other playlist formats.
pub const DEMUXERS: &str = "mov,matroska,avi,mpeg,mpegts,mpegvideo,m4v,asf,flv,live_flv,ogg";

/// The ffmpeg and ffprobe programs to run.
#[derive(Clone, Debug)]
pub struct Ffmpeg {
    ffmpeg: PathBuf,
    ffprobe: PathBuf,
}

/// Container and first video stream facts.
#[derive(Clone, Debug, PartialEq)]
pub struct VideoInfo {
    /// Seconds: the container's duration, else the stream's. 0.0 when
    /// neither is known (e.g. a live-recorded WebM): [`Ffmpeg::frames`] then
    /// samples at the interval until the stream ends (at most `max_frames`).
    pub duration: f64,
    /// As displayed: rotation metadata of 90/270 swaps them.
    pub width: u32,
    pub height: u32,
    /// e.g. "h264".
    pub codec: String,
    /// creation_time tag as "YYYY-MM-DD HH:MM:SS" (UTC), when present.
    pub taken_at: Option<String>,
}

/// Which frames [`Ffmpeg::frames`] delivers.
#[derive(Clone, Debug)]
pub struct Sampling {
    /// Seconds between samples.
    pub interval: f64,
    /// Longer videos get interval = duration / max_frames.
    pub max_frames: usize,
    pub limits: FrameLimits,
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling {
            interval: 2.0,
            max_frames: 1800,
            limits: FrameLimits::default(),
        }
    }
}

impl Sampling {
    /// How many frames [`Ffmpeg::frames`] samples from a video of `duration`
    /// seconds (0: unknown, then at most `max_frames`): for progress reports;
    /// a stream that ends before its container does gives fewer.
    pub fn frame_count(&self, duration: f64) -> usize {
        plan(duration, self).1
    }
}

/// Resource limits on decoding.
#[derive(Clone, Copy, Debug)]
pub struct FrameLimits {
    /// Per frame; as seer-image's `DecodeLimits::max_pixels`.
    pub max_pixels: u64,
    /// ffmpeg is killed when it delivers nothing for this long.
    pub stall_seconds: u64,
}

impl Default for FrameLimits {
    fn default() -> Self {
        FrameLimits {
            max_pixels: 178_956_970,
            stall_seconds: 120,
        }
    }
}

/// A decoded frame and the time (seconds) it was sampled at.
pub struct Frame {
    pub time: f64,
    pub image: DecodedImage,
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frame")
            .field("time", &self.time)
            .field("width", &self.image.width())
            .field("height", &self.image.height())
            .finish()
    }
}

/// A flag by which another thread stops a decode: once set, the running
/// ffmpeg/ffprobe is killed within about 50 ms and the call returns
/// [`VideoError::Cancelled`]. Clones share the flag.
#[derive(Clone, Debug, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    pub fn new() -> Self {
        Cancel::default()
    }

    /// Sets the flag; it stays set.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// A guard that sets this flag when dropped: held by whoever waits for
    /// the result (e.g. a request's future), so that giving up on it stops
    /// the decode.
    pub fn on_drop(&self) -> CancelOnDrop {
        CancelOnDrop(self.clone())
    }
}

/// Sets its [`Cancel`] when dropped (see [`Cancel::on_drop`]).
#[derive(Debug)]
pub struct CancelOnDrop(Cancel);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// Everything that can go wrong; each names the file (or program) once.
#[derive(Debug, thiserror::Error)]
pub enum VideoError {
    /// ffmpeg or ffprobe is missing or does not run.
    #[error(
        "{}: {message}; decoding videos needs ffmpeg and ffprobe: install ffmpeg \
         (e.g. `apt install ffmpeg`, `brew install ffmpeg`) or give its path",
        program.display()
    )]
    NoFfmpeg { program: PathBuf, message: String },
    /// The file is not a video we can decode, or decoding failed.
    #[error("{}: {message}", path.display())]
    File { path: PathBuf, message: String },
    /// The file could not be read, or a program could not be started.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The caller's [`Cancel`] was set; ffmpeg was stopped.
    #[error("{}: decoding was cancelled", path.display())]
    Cancelled { path: PathBuf },
}

impl VideoError {
    fn file(path: &Path, message: impl Into<String>) -> Self {
        VideoError::File {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }
}

/// The sample times of a `duration`-second video: midpoints of the
/// intervals, (i + 0.5) * interval while < duration; the interval widened to
/// duration / max_frames for long videos and narrowed to the duration for
/// videos shorter than one interval (one frame at duration / 2). Returns the
/// interval used (microsecond-exact, as ffmpeg gets it) and the number of
/// samples (`max_frames` when the duration is unknown).
fn plan(duration: f64, sampling: &Sampling) -> (u64, usize) {
    let max_frames = sampling.max_frames.max(1);
    let mut interval = if sampling.interval.is_finite() && sampling.interval > 0.0 {
        sampling.interval
    } else {
        Sampling::default().interval
    };
    if duration > 0.0 {
        interval = interval.max(duration / max_frames as f64).min(duration);
    }
    // Microseconds, at least 2 so that fps = 2/interval stays a sane rational.
    let micros = ((interval * 1e6).round() as u64).max(2);
    if duration <= 0.0 {
        return (micros, max_frames);
    }
    let dur_us = duration * 1e6;
    let mut count = 0usize;
    while count < max_frames && (count as f64 + 0.5) * (micros as f64) < dur_us {
        count += 1;
    }
    (micros, count.max(1))
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// What the stdout reader thread hands over.
enum Out {
    Frame(u32, u32, Vec<u8>),
    TooLarge(u64, u64),
    Malformed(String),
}

impl Ffmpeg {
    /// `ffmpeg`/`ffprobe` found on PATH (or the given ffmpeg path; ffprobe
    /// beside it), checked to run (`-version`).
    pub fn find(ffmpeg: Option<&Path>) -> Result<Self, VideoError> {
        let exe = std::env::consts::EXE_SUFFIX;
        let (ffmpeg, ffprobe) = match ffmpeg {
            Some(p) => {
                let dir = p.parent().unwrap_or(Path::new(""));
                (p.to_path_buf(), dir.join(format!("ffprobe{exe}")))
            }
            None => (
                on_path(&format!("ffmpeg{exe}")).ok_or_else(|| VideoError::NoFfmpeg {
                    program: "ffmpeg".into(),
                    message: "not found on PATH".into(),
                })?,
                on_path(&format!("ffprobe{exe}")).ok_or_else(|| VideoError::NoFfmpeg {
                    program: "ffprobe".into(),
                    message: "not found on PATH".into(),
                })?,
            ),
        };
        for program in [&ffmpeg, &ffprobe] {
            check_runs(program)?;
        }
        tracing::debug!(ffmpeg = %ffmpeg.display(), ffprobe = %ffprobe.display(), "ffmpeg found");
        Ok(Ffmpeg { ffmpeg, ffprobe })
    }

    /// Container and first video stream facts (`path` opened once, see
    /// [`open_video`]).
    pub fn probe(&self, path: &Path) -> Result<VideoInfo, VideoError> {
        let file = open_video(path)?;
        self.probe_file(path, &file)
    }

    /// [`Ffmpeg::probe`] of the open `file` (of `path`, which errors name):
    /// ffprobe reads that file even if `path` now names another (Linux; see
    /// the crate's documentation).
    pub fn probe_file(&self, path: &Path, file: &File) -> Result<VideoInfo, VideoError> {
        let input = Input::new(path, file)?;
        Ok(self.probe_full(&input, &FrameLimits::default(), None)?.info)
    }

    fn probe_full(
        &self,
        input: &Input,
        limits: &FrameLimits,
        cancel: Option<&Cancel>,
    ) -> Result<probe::Probed, VideoError> {
        let path = input.path;
        let mut args = common_args(Program::Ffprobe);
        args.extend(
            [
                "-print_format",
                "json",
                "-show_format",
                "-show_streams",
                "-i",
            ]
            .map(OsString::from),
        );
        args.push(input.url.clone());
        let mut running = self.spawn(
            &self.ffprobe,
            &args,
            input,
            limits,
            cancel,
            |mut out, send| {
                // ffprobe's JSON for a file is small; the cap stops a runaway.
                let mut json = Vec::new();
                let _ = (&mut out).take(16 << 20).read_to_end(&mut json);
                send(json);
            },
        )?;
        let json = match running.next() {
            Next::Item(json) => json,
            Next::End => Vec::new(),
            Next::Stalled => return Err(stalled(input, limits, running.kill())),
            Next::Cancelled => return Err(cancelled(input, running)),
        };
        let (ok, stderr) = running.finish();
        if !ok && cancel.is_some_and(Cancel::is_cancelled) {
            return Err(VideoError::Cancelled {
                path: path.to_path_buf(),
            });
        }
        if !ok {
            return Err(unreadable(input, &stderr));
        }
        probe::parse(&json).map_err(|e| match e {
            probe::ProbeError::NoVideoStream => VideoError::file(path, "has no video stream"),
            probe::ProbeError::BadJson(e) => VideoError::file(
                path,
                format!("ffprobe's output is not the expected JSON: {e}"),
            ),
        })
    }

    /// Decodes `path` once and calls `each` with the sampled frames in time
    /// order; `each` returns false to stop early (the ffmpeg process is
    /// killed). Returns the number of frames delivered.
    pub fn frames(
        &self,
        path: &Path,
        info: &VideoInfo,
        sampling: &Sampling,
        each: &mut dyn FnMut(Frame) -> bool,
    ) -> Result<usize, VideoError> {
        let file = open_video(path)?;
        self.frames_of_file(path, &file, info, sampling, each)
    }

    /// [`Ffmpeg::frames`] of the open `file` (of `path`, which errors name):
    /// the frames are that file's even if `path` now names another (Linux;
    /// see the crate's documentation).
    pub fn frames_of_file(
        &self,
        path: &Path,
        file: &File,
        info: &VideoInfo,
        sampling: &Sampling,
        each: &mut dyn FnMut(Frame) -> bool,
    ) -> Result<usize, VideoError> {
        let input = Input::new(path, file)?;
        let (micros, count) = plan(info.duration, sampling);
        // fps = 2 / interval = 2_000_000 / micros, reduced.
        let g = gcd(2_000_000, micros);
        let filter = format!(
            "fps=fps={}/{}:start_time=0:round=up,select='eq(mod(n\\,2)\\,1)',format=rgb24",
            2_000_000 / g,
            micros / g
        );
        let mut delivered = 0usize;
        let mut on_frame = |w, h, data| {
            let time = (delivered as f64 + 0.5) * micros as f64 / 1e6;
            let image = DecodedImage::from_rgb8(w, h, data)
                .map_err(|e| VideoError::file(path, e.to_string()))?;
            delivered += 1;
            Ok(each(Frame { time, image }))
        };
        self.decode(
            &input,
            None,
            &filter,
            count,
            &sampling.limits,
            None,
            &mut on_frame,
        )?;
        if delivered == 0 {
            // No tick fell inside the video stream: its duration was unknown
            // and it is shorter than half an interval, or the container
            // outlasts it. A video still gets one frame: its first, at 0 s.
            let frame = self.frame_at_input(&input, 0.0, &sampling.limits, None)?;
            each(frame);
            return Ok(1);
        }
        Ok(delivered)
    }

    /// One frame at `seconds` (clamped into the video): the frame a player
    /// shows then, e.g. for a thumbnail of a search hit.
    pub fn frame_at(
        &self,
        path: &Path,
        seconds: f64,
        limits: &FrameLimits,
    ) -> Result<Frame, VideoError> {
        let file = open_video(path)?;
        self.frame_at_file(path, &file, seconds, limits)
    }

    /// [`Ffmpeg::frame_at`] of the open `file` (of `path`, which errors
    /// name): the frame is that file's even if `path` now names another
    /// (Linux; see the crate's documentation).
    pub fn frame_at_file(
        &self,
        path: &Path,
        file: &File,
        seconds: f64,
        limits: &FrameLimits,
    ) -> Result<Frame, VideoError> {
        self.frame_at_input(&Input::new(path, file)?, seconds, limits, None)
    }

    /// [`Ffmpeg::frame_at_file`] that gives up once `cancel` is set: ffmpeg
    /// is killed and the call returns [`VideoError::Cancelled`] (e.g. when
    /// the request that wanted the frame is gone). A separate function, not
    /// a field of the `Copy` [`FrameLimits`], so existing callers and their
    /// struct literals stay as they are.
    pub fn frame_at_file_cancellable(
        &self,
        path: &Path,
        file: &File,
        seconds: f64,
        limits: &FrameLimits,
        cancel: &Cancel,
    ) -> Result<Frame, VideoError> {
        self.frame_at_input(&Input::new(path, file)?, seconds, limits, Some(cancel))
    }

    fn frame_at_input(
        &self,
        input: &Input,
        seconds: f64,
        limits: &FrameLimits,
        cancel: Option<&Cancel>,
    ) -> Result<Frame, VideoError> {
        let path = input.path;
        let probed = self.probe_full(input, limits, cancel)?;
        let duration = probed.info.duration;
        let mut t = if seconds.is_finite() {
            seconds.max(0.0)
        } else {
            0.0
        };
        if duration > 0.0 {
            // At exactly the end no frame is shown any more: stay 1 ms inside.
            t = t.min((duration - 0.001).max(0.0));
        }
        // Seek to the keyframe before t without dropping the frames before t
        // (`-noaccurate_seek`); timestamps are then relative to t, and the fps
        // filter's tick 0 is the last frame at or before t.
        let filter = "fps=fps=1:start_time=0:round=up,format=rgb24";
        let mut got = None;
        let mut keep = |w, h, data| {
            got = Some((w, h, data));
            Ok(false)
        };
        self.decode(input, Some(t), filter, 1, limits, cancel, &mut keep)?;
        if got.is_none() && t > 0.0 {
            // The video stream ended before `t` (a container longer than its
            // video): its last frame is what a player keeps showing.
            let from = (t - 10.0).max(0.0);
            let filter = "format=rgb24";
            let mut last = |w, h, data| {
                got = Some((w, h, data));
                Ok(true)
            };
            self.decode(
                input,
                Some(from),
                filter,
                usize::MAX,
                limits,
                cancel,
                &mut last,
            )?;
        }
        let (w, h, data) =
            got.ok_or_else(|| VideoError::file(path, format!("ffmpeg gave no frame at {t:.3} s")))?;
        let image = DecodedImage::from_rgb8(w, h, data)
            .map_err(|e| VideoError::file(path, e.to_string()))?;
        Ok(Frame { time: t, image })
    }

    /// Runs ffmpeg on `input` with video filter `filter` and passes each PPM
    /// frame (at most `count`) to `each`, which returns false to stop.
    #[allow(clippy::too_many_arguments)]
    fn decode(
        &self,
        input: &Input,
        seek: Option<f64>,
        filter: &str,
        count: usize,
        limits: &FrameLimits,
        cancel: Option<&Cancel>,
        each: &mut dyn FnMut(u32, u32, Vec<u8>) -> Result<bool, VideoError>,
    ) -> Result<(), VideoError> {
        let path = input.path;
        let mut args = common_args(Program::Ffmpeg);
        if let Some(t) = seek {
            args.extend([
                "-noaccurate_seek".into(),
                "-ss".into(),
                format!("{t:.6}").into(),
            ]);
        }
        args.push("-i".into());
        args.push(input.url.clone());
        let mut tail: Vec<String> = vec![
            "-map".into(),
            // The first video stream that is not cover art (`V`, not `v`),
            // the one `probe` describes.
            "0:V:0".into(),
            "-an".into(),
            "-sn".into(),
            "-dn".into(),
            "-vf".into(),
            filter.into(),
            // Frames pass as the filter made them: no duplication or drops
            // by the muxer's frame-rate logic.
            "-fps_mode".into(),
            "passthrough".into(),
        ];
        if count < usize::MAX {
            tail.extend(["-frames:v".into(), count.to_string()]);
        }
        tail.extend(["-c:v", "ppm", "-f", "image2pipe", "pipe:1"].map(String::from));
        args.extend(tail.into_iter().map(OsString::from));
        tracing::debug!(path = %path.display(), ?args, "running ffmpeg");
        let max_pixels = limits.max_pixels;
        let mut running = self.spawn(
            &self.ffmpeg,
            &args,
            input,
            limits,
            cancel,
            move |mut out, send| loop {
                let item = match ppm::read_frame(&mut out, max_pixels) {
                    Ok(Some((w, h, data))) => Out::Frame(w, h, data),
                    Ok(None) => return,
                    Err(ppm::PpmError::TooLarge(w, h)) => Out::TooLarge(w, h),
                    Err(ppm::PpmError::Malformed(m)) => Out::Malformed(m),
                };
                let last = !matches!(item, Out::Frame(..));
                if !send(item) || last {
                    return;
                }
            },
        )?;
        let mut delivered = 0usize;
        loop {
            match running.next() {
                Next::Item(Out::Frame(w, h, data)) => {
                    delivered += 1;
                    // A panic in `each` unwinds through `running`'s Drop,
                    // which kills ffmpeg.
                    if !each(w, h, data)? || delivered >= count {
                        running.kill();
                        return Ok(());
                    }
                }
                Next::Item(Out::TooLarge(w, h)) => {
                    running.kill();
                    return Err(VideoError::file(
                        path,
                        format!(
                            "frame of {w}x{h} pixels is over the limit of {} pixels",
                            limits.max_pixels
                        ),
                    ));
                }
                Next::Item(Out::Malformed(m)) => {
                    let stderr = running.kill();
                    return Err(match stderr.last() {
                        Some(_) => unreadable(input, &stderr),
                        None => VideoError::file(path, format!("ffmpeg's output: {m}")),
                    });
                }
                Next::Stalled => return Err(stalled(input, limits, running.kill())),
                Next::Cancelled => return Err(cancelled(input, running)),
                Next::End => break,
            }
        }
        let (ok, stderr) = running.finish();
        if !ok && cancel.is_some_and(Cancel::is_cancelled) {
            return Err(VideoError::Cancelled {
                path: path.to_path_buf(),
            });
        }
        if ok {
            // ffmpeg exits 0 on a file cut short ("partial file"), having
            // delivered the frames before the cut: keep them, but say so.
            if let Some(last) = stderr.last() {
                tracing::warn!(path = %path.display(), message = %strip_input_name(last, &input.url), "ffmpeg reported errors while decoding");
            }
            return Ok(());
        }
        // Frames up to a cut (a truncated file) were delivered; ffmpeg
        // usually exits 0 then. A failure is only an error when it gave
        // nothing: a partly readable video still indexes what it has.
        if delivered > 0 {
            tracing::warn!(path = %path.display(), stderr = ?stderr.last(), "ffmpeg failed after {delivered} frames");
            return Ok(());
        }
        Err(unreadable(input, &stderr))
    }

    fn spawn<T: Send + 'static>(
        &self,
        program: &Path,
        args: &[OsString],
        input: &Input,
        limits: &FrameLimits,
        cancel: Option<&Cancel>,
        read: impl FnOnce(std::io::BufReader<std::process::ChildStdout>, &dyn Fn(T) -> bool)
            + Send
            + 'static,
    ) -> Result<Running<T>, VideoError> {
        if cancel.is_some_and(Cancel::is_cancelled) {
            // Not even started: nothing to kill.
            return Err(VideoError::Cancelled {
                path: input.path.to_path_buf(),
            });
        }
        let stall = Duration::from_secs(limits.stall_seconds.max(1));
        Running::spawn(program, args, input.inherit, stall, cancel.cloned(), read).map_err(|e| {
            match e.kind() {
                std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied => {
                    VideoError::NoFfmpeg {
                        program: program.to_path_buf(),
                        message: format!("cannot run it: {e}"),
                    }
                }
                _ => VideoError::Io {
                    path: program.to_path_buf(),
                    source: e,
                },
            }
        })
    }
}

/// Arguments every run starts with: quiet, no stdin, and the input limited
/// to local files in ordinary video containers.
/// (`-nostdin` is ffmpeg's alone: ffprobe never reads stdin.)
fn common_args(program: Program) -> Vec<OsString> {
    let mut args: Vec<OsString> = match program {
        Program::Ffmpeg => vec!["-nostdin".into()],
        Program::Ffprobe => Vec::new(),
    };
    args.extend(
        [
            "-hide_banner",
            "-loglevel",
            "error",
            "-protocol_whitelist",
            "file",
            "-format_whitelist",
            DEMUXERS,
        ]
        .map(OsString::from),
    );
    args
}

#[derive(Clone, Copy)]
enum Program {
    Ffmpeg,
    Ffprobe,
}

/// Opens `path` for the `*_file` calls: refuses a folder, FIFO, device or
/// empty file by its metadata before opening it (opening a FIFO would wait
/// for a writer), then checks what was opened again.
pub fn open_video(path: &Path) -> Result<File, VideoError> {
    let io = |source| VideoError::Io {
        path: path.to_path_buf(),
        source,
    };
    check_video_file(path, &std::fs::metadata(path).map_err(io)?)?;
    let file = File::open(path).map_err(io)?;
    check_video_file(path, &file.metadata().map_err(io)?)?;
    Ok(file)
}

/// A non-empty regular file: a FIFO or device would hang ffmpeg, and a
/// folder is not a video.
fn check_video_file(path: &Path, meta: &std::fs::Metadata) -> Result<(), VideoError> {
    if meta.is_dir() {
        return Err(VideoError::file(path, "is a folder, not a video"));
    }
    if !meta.is_file() {
        return Err(VideoError::file(path, "is not a regular file"));
    }
    if meta.len() == 0 {
        return Err(VideoError::file(path, "is empty (0 bytes)"));
    }
    Ok(())
}

/// What one call hands ffmpeg: the URL it opens, the file the child inherits
/// (Linux) and the path errors name.
struct Input<'a> {
    path: &'a Path,
    url: OsString,
    inherit: Option<&'a File>,
}

impl<'a> Input<'a> {
    /// Checks the open file itself (not the path) and, on Linux, names it by
    /// the descriptor the child gets.
    fn new(path: &'a Path, file: &'a File) -> Result<Self, VideoError> {
        let meta = file.metadata().map_err(|source| VideoError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        check_video_file(path, &meta)?;
        #[cfg(target_os = "linux")]
        {
            // Opening /dev/fd/N opens the inherited file's inode again (a new
            // offset, seekable), whatever its path names now.
            let url = format!("file:/dev/fd/{}", process::INPUT_FD);
            Ok(Input {
                path,
                url: url.into(),
                inherit: Some(file),
            })
        }
        #[cfg(not(target_os = "linux"))]
        Ok(Input {
            path,
            url: input_url(path)?,
            inherit: None,
        })
    }
}

/// `file:` + the absolute path (where no descriptor is passed on).
#[cfg(not(target_os = "linux"))]
fn input_url(path: &Path) -> Result<OsString, VideoError> {
    let abs = std::path::absolute(path).map_err(|source| VideoError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    // `file:` stops ffmpeg reading a name like `http:x.mp4` or `-i.mp4` as
    // anything but a path; the bytes are passed as they are (non-UTF-8 too).
    let mut url = OsString::from("file:");
    url.push(abs.as_os_str());
    Ok(url)
}

fn unreadable(input: &Input, stderr: &[String]) -> VideoError {
    let path = input.path;
    let last = stderr
        .last()
        .map(|l| strip_input_name(l, &input.url))
        .unwrap_or_else(|| "ffmpeg failed without a message".into());
    if stderr.iter().any(|l| l.contains("matches no streams")) {
        return VideoError::file(path, "has no video stream");
    }
    if stderr.iter().any(|l| l.contains("not on whitelist")) {
        return VideoError::file(
            path,
            format!("is not a video container seer opens (a playlist or other format): {last}"),
        );
    }
    VideoError::file(path, format!("not a video ffmpeg can read: {last}"))
}

/// ffmpeg starts many messages with the input URL (`file:/dev/fd/3: Invalid
/// data…`); the error names the file already.
fn strip_input_name(line: &str, url: &OsStr) -> String {
    let prefix = format!("{}: ", url.to_string_lossy());
    line.strip_prefix(&prefix).unwrap_or(line).to_string()
}

fn stalled(input: &Input, limits: &FrameLimits, stderr: Vec<String>) -> VideoError {
    let path = input.path;
    let mut message = format!(
        "ffmpeg stopped after {} s without a frame",
        limits.stall_seconds.max(1)
    );
    if let Some(last) = stderr.last() {
        message.push_str(&format!(
            " (last message: {})",
            strip_input_name(last, &input.url)
        ));
    }
    VideoError::file(path, message)
}

/// Kills the cancelled child (its Drop reaps it).
fn cancelled<T: Send + 'static>(input: &Input, running: Running<T>) -> VideoError {
    running.kill();
    VideoError::Cancelled {
        path: input.path.to_path_buf(),
    }
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Runs `program -version`, so that a broken install is reported up front.
fn check_runs(program: &Path) -> Result<(), VideoError> {
    let no = |message: String| VideoError::NoFfmpeg {
        program: program.to_path_buf(),
        message,
    };
    let out = std::process::Command::new(program)
        .arg("-version")
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| no(format!("cannot run it: {e}")))?;
    if !out.status.success() {
        return Err(no(format!("`-version` failed ({})", out.status)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(interval: f64, max_frames: usize) -> Sampling {
        Sampling {
            interval,
            max_frames,
            ..Sampling::default()
        }
    }

    #[test]
    fn plan_midpoints_widening_and_short_videos() {
        assert_eq!(plan(6.4, &s(1.0, 1800)), (1_000_000, 6));
        assert_eq!(plan(6.4, &s(0.5, 1800)), (500_000, 13));
        assert_eq!(plan(6.4, &s(2.0, 1800)), (2_000_000, 3));
        assert_eq!(s(2.0, 1800).frame_count(6.4), 3);
        // 3600 s at 2 s would be 1800; with max 100 the interval is 36 s.
        assert_eq!(plan(3600.0, &s(2.0, 100)), (36_000_000, 100));
        // Shorter than one interval: one frame at duration / 2.
        assert_eq!(plan(1.5, &s(2.0, 1800)), (1_500_000, 1));
        // Unknown duration: the interval until the end, at most max_frames.
        assert_eq!(plan(0.0, &s(2.0, 7)), (2_000_000, 7));
        // Nonsense settings fall back rather than loop or divide by zero.
        assert_eq!(plan(4.0, &s(f64::NAN, 0)), (4_000_000, 1));
        assert_eq!(plan(4.0, &s(-1.0, 1800)), (2_000_000, 2));
    }

    #[test]
    fn extensions() {
        assert!(has_video_extension(Path::new("/a/b.MP4")));
        assert!(has_video_extension(Path::new("x.m2ts")));
        assert!(!has_video_extension(Path::new("x.jpg")));
        assert!(!has_video_extension(Path::new("mp4")));
        assert_eq!(VIDEO_EXTENSIONS.len(), 15);
    }

    #[test]
    fn input_name_is_stripped_from_messages() {
        let url = OsStr::new("file:/a b/c: d.mp4");
        assert_eq!(
            strip_input_name(
                "file:/a b/c: d.mp4: Invalid data found when processing input",
                url
            ),
            "Invalid data found when processing input"
        );
        assert_eq!(
            strip_input_name("moov atom not found", url),
            "moov atom not found"
        );
    }
}
