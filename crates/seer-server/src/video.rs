//! Videos in the server: a frame as the thumbnail (decoded by ffmpeg), the
//! sampled frame times for the detail view, and the original streamed in byte
//! ranges so that a `<video>` element can seek.
//!
//! ffmpeg reads the open file that [`crate::files::open_indexed`] checked
//! (inside a root, a regular file, unchanged since indexing), passed on as a
//! descriptor (`seer_video::Ffmpeg::frame_at_file`; by its real path where the
//! platform cannot), and only ever with ordinary video demuxers (see
//! `seer_video`). A streamed original ends when its client takes nothing for
//! the request timeout, so a stalled player holds no reader.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use seer_index::pathcodec::display_stored;
use seer_index::Store;
use seer_video::{Cancel, FrameLimits, VideoError};

use crate::error::{ApiError, ApiResult};
use crate::files::IndexedFile;
use crate::state::AppState;
use crate::thumbnails;

/// Whether the index treats `path` as a video (as `seer index` does: by name).
pub fn is_video(path: &Path) -> bool {
    seer_video::has_video_extension(path)
}

/// The `t` of a thumbnail request: seconds into the video, a finite number of
/// at least 0 (past the end is the last frame).
pub fn parse_time(raw: Option<&str>) -> ApiResult<Option<f64>> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    match raw.trim().parse::<f64>() {
        Ok(t) if t.is_finite() && t >= 0.0 => Ok(Some(t)),
        _ => {
            // A very long value is cut: the answer need not echo all of it.
            let shown: String = raw.chars().take(40).collect();
            let more = if shown.len() < raw.len() { "..." } else { "" };
            Err(ApiError::bad_request(format!(
                "t must be a time in seconds, a finite number of at least 0, not '{shown}{more}'"
            )))
        }
    }
}

/// A time as the index stores frame times: whole milliseconds.
fn time_ms(seconds: f64) -> i64 {
    (seconds * 1000.0).round() as i64
}

/// The times (seconds) of the frames the index sampled from file `id`, under
/// the first served model that has them; empty when it is not a video.
pub fn frame_times(state: &AppState, store: &Store, id: i64) -> ApiResult<Vec<f64>> {
    let held = store.models()?;
    for served in state.models.all() {
        if let Some(info) = held.iter().find(|m| m.name == served.model.id) {
            let times = store.frame_times(id, info)?;
            if !times.is_empty() {
                return Ok(times);
            }
        }
    }
    Ok(Vec::new())
}

/// The answer when this server has no ffmpeg: not retryable (no 503, which
/// clients retry), and it says what to do.
fn no_ffmpeg() -> ApiError {
    ApiError::new(
        StatusCode::NOT_IMPLEMENTED,
        "showing a video's frames needs ffmpeg, which this server did not find: install \
         ffmpeg (e.g. `apt install ffmpeg`) and restart `seer serve`, or give it with --ffmpeg PATH",
    )
}

/// The thumbnail PNG of the video `file` at `t` seconds (default: its first
/// sampled frame, else 0). Frames at the sampled times (those search hits and
/// the detail view ask for) are cached by content and time; other times are
/// made each time, so that no client can fill the cache with arbitrary times.
/// Once `cancel` is set (the request is gone) it stops waiting for a slot and
/// ffmpeg is killed: nobody would read the answer.
pub fn thumbnail(
    state: &AppState,
    file: &IndexedFile,
    t: Option<f64>,
    cancel: &Cancel,
) -> ApiResult<Vec<u8>> {
    let ffmpeg = state.ffmpeg.as_ref().ok_or_else(no_ffmpeg)?;
    let id = file.record.id;
    let times = frame_times(state, &state.store()?, id)?;
    let ms = time_ms(t.or(times.first().copied()).unwrap_or(0.0));
    let sampled = times.iter().any(|&x| time_ms(x) == ms);
    let key = file
        .record
        .hash
        .as_ref()
        .filter(|_| sampled)
        .map(|h| thumbnails::frame_key(h, ms));
    let cache = thumbnails::Cache::new(&state.index_dir);
    if let Some(png) = key.as_ref().and_then(|k| cache.get(k)) {
        return Ok(png);
    }
    // Held while ffmpeg runs: thumbnails at distinct times are never cached,
    // so without a bound every request would start its own ffmpeg.
    let _slot = state.video_slots.acquire_unless(cancel)?;
    // ffmpeg reads the checked open file; the real path is what errors name
    // (and what it opens where no descriptor can be passed on).
    let path = file.real_path()?;
    let limits = FrameLimits {
        max_pixels: state.limits.max_pixels,
        ..FrameLimits::default()
    };
    let frame = ffmpeg
        .frame_at_file_cancellable(&path, file.file(), ms as f64 / 1000.0, &limits, cancel)
        .map_err(|e| video_error(e, &file.record.path))?;
    let png = thumbnails::png_of(&frame.image.to_rgb()).map_err(ApiError::internal)?;
    if let Some(k) = &key {
        cache.put(k, &png);
    }
    Ok(png)
}

/// A bound on the ffmpeg processes thumbnail requests run at once: at most
/// `max` decode (one per core, at most 8), `queue` more
/// wait for a slot, and the rest are refused at once with 503 and
/// Retry-After, as a full model queue is.
pub struct Slots {
    max: usize,
    queue: usize,
    /// (running, waiting)
    state: std::sync::Mutex<(usize, usize)>,
    freed: std::sync::Condvar,
}

/// A running decode's slot, given back when dropped (a panic included).
pub(crate) struct Slot<'a>(&'a Slots);

impl Slots {
    pub(crate) const fn new(max: usize, queue: usize) -> Self {
        Slots {
            max,
            queue,
            state: std::sync::Mutex::new((0, 0)),
            freed: std::sync::Condvar::new(),
        }
    }

    /// Slots for this machine's cores.
    pub(crate) fn for_cores() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let max = cores.clamp(1, 8);
        // Room for a results page of video hits whose thumbnails are not
        // cached yet: an <img> that gets a 503 is not retried.
        Slots::new(max, 32 * max)
    }

    pub(crate) fn max(&self) -> usize {
        self.max.max(1)
    }

    /// [`Slots::acquire_unless`] never cancelled.
    #[cfg(test)]
    pub(crate) fn acquire(&self) -> ApiResult<Slot<'_>> {
        self.acquire_unless(&Cancel::new())
    }

    /// A slot, waiting (on this blocking thread) while the queue has room;
    /// 503 when it has none. A waiter leaves the queue once `cancel` is set
    /// (its request is gone), answering 504.
    pub(crate) fn acquire_unless(&self, cancel: &Cancel) -> ApiResult<Slot<'_>> {
        // The flag is set from async code that knows nothing of the slots, so
        // a waiter looks at it this often rather than being woken for it.
        const POLL: Duration = Duration::from_millis(50);
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if state.0 >= self.max() {
            if state.1 >= self.queue {
                return Err(ApiError::busy());
            }
            state.1 += 1;
            while state.0 >= self.max() {
                if cancel.is_cancelled() {
                    state.1 -= 1;
                    return Err(Self::cancelled());
                }
                state = self
                    .freed
                    .wait_timeout(state, POLL)
                    .unwrap_or_else(|poison| poison.into_inner())
                    .0;
            }
            state.1 -= 1;
            if cancel.is_cancelled() {
                // The wakeup this took was for a live waiter: pass it on.
                self.freed.notify_one();
                return Err(Self::cancelled());
            }
        }
        state.0 += 1;
        Ok(Slot(self))
    }

    /// The answer of a thumbnail whose request ended first (a timeout or a
    /// gone client): nobody reads it.
    fn cancelled() -> ApiError {
        ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "the request ended before its thumbnail was made",
        )
    }

    /// Requests waiting for a slot now.
    #[cfg(test)]
    pub(crate) fn waiting(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .1
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut state = self
            .0
            .state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        state.0 -= 1;
        self.0.freed.notify_one();
    }
}

/// A damaged video is a 422 naming the file as the index does, like a photo
/// that does not decode.
fn video_error(e: VideoError, stored_path: &str) -> ApiError {
    match e {
        VideoError::NoFfmpeg { .. } => {
            tracing::warn!("{e}");
            no_ffmpeg()
        }
        VideoError::File { message, .. } => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("{}: {message}", display_stored(stored_path)),
        ),
        VideoError::Cancelled { .. } => Slots::cancelled(),
        VideoError::Io { .. } => {
            tracing::warn!("{e}");
            ApiError::internal(format!(
                "{}: the video could not be read (see the server's log)",
                display_stored(stored_path)
            ))
        }
    }
}

// ------------------------------------------------------------------ ranges

/// What a `Range` header asks of a file of `size` bytes.
#[derive(Debug, PartialEq)]
pub enum Wanted {
    /// No range (or one in another unit, or several ranges: the whole file
    /// is a valid answer to those).
    Whole,
    /// Bytes `start..=end`.
    Part(u64, u64),
    /// A range that is malformed or lies outside the file.
    Unsatisfiable,
}

/// Reads one `bytes=` range (`a-b`, `a-`, `-n`) of RFC 9110.
pub fn wanted(range: Option<&str>, size: u64) -> Wanted {
    let Some(range) = range.map(str::trim) else {
        return Wanted::Whole;
    };
    let Some((unit, spec)) = range.split_once('=') else {
        return Wanted::Unsatisfiable;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") || spec.contains(',') {
        return Wanted::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Wanted::Unsatisfiable;
    };
    // Digits only; more than u64 holds is past the end of any file (RFC 9110
    // clamps a last position or suffix beyond the end to the end).
    let number = |s: &str| {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u64>().unwrap_or(u64::MAX))
    };
    let (first, last) = (first.trim(), last.trim());
    match (first.is_empty(), number(first), number(last)) {
        // The last n bytes.
        (true, _, Some(n)) if n > 0 && size > 0 => Wanted::Part(size.saturating_sub(n), size - 1),
        (false, Some(a), None) if last.is_empty() && a < size => Wanted::Part(a, size - 1),
        (false, Some(a), Some(b)) if a <= b && a < size => Wanted::Part(a, b.min(size - 1)),
        _ => Wanted::Unsatisfiable,
    }
}

/// The chunks the reader task sends, as a body stream. A stream that stops
/// before the bytes it promised (Content-Length) yields an error rather than
/// ending quietly, so that hyper closes the connection instead of leaving the
/// client waiting for the rest.
struct Chunks {
    rx: tokio::sync::mpsc::Receiver<io::Result<Bytes>>,
    /// Bytes promised and not yielded yet.
    left: u64,
    id: i64,
    idle: Duration,
}

impl futures_core::Stream for Chunks {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let item = match self.rx.poll_recv(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(item) => item,
        };
        Poll::Ready(match item {
            Some(Ok(chunk)) => {
                self.left = self.left.saturating_sub(chunk.len() as u64);
                Some(Ok(chunk))
            }
            Some(Err(e)) => {
                self.left = 0;
                Some(Err(e))
            }
            // The reader sends every error it meets, so it only stops short
            // without one when the client took nothing for `idle`.
            None if self.left > 0 => {
                let left = std::mem::take(&mut self.left);
                Some(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "video {}: the client took no data for {:?} (the request timeout), \
                         so the stream was ended {left} bytes short",
                        self.id, self.idle
                    ),
                )))
            }
            None => None,
        })
    }
}

const CHUNK: u64 = 256 << 10;

/// `len` bytes of `file` from `start`, read a chunk at a time as the client
/// takes them (a video is never held in memory whole). A client that takes no
/// chunk for `idle` is given up on: the body ends with an error, and nothing
/// (no thread, no task, not the file) is left waiting for it.
fn stream(file: File, start: u64, len: u64, id: i64, idle: Duration) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    tokio::spawn(send_chunks(file, start, len, id, idle, tx));
    Body::from_stream(Chunks {
        rx,
        left: len,
        id,
        idle,
    })
}

/// The original of the video `file`, whole (200) or the range asked for (206,
/// 416 when it is not in the file), always saying that ranges are accepted.
/// `idle` (the request timeout) is how long the stream waits for the client
/// to take its next chunk before it is ended.
pub fn original(
    file: IndexedFile,
    range: Option<&str>,
    content_type: &'static str,
    idle: Duration,
) -> Response {
    let (file, record) = file.into_file();
    let (id, size) = (record.id, record.size.max(0) as u64);
    let ranges = (header::ACCEPT_RANGES, "bytes".to_string());
    let kind = (header::CONTENT_TYPE, content_type.to_string());
    match wanted(range, size) {
        Wanted::Whole => (
            StatusCode::OK,
            [ranges, kind, (header::CONTENT_LENGTH, size.to_string())],
            stream(file, 0, size, id, idle),
        )
            .into_response(),
        Wanted::Part(start, end) => (
            StatusCode::PARTIAL_CONTENT,
            [
                ranges,
                kind,
                (header::CONTENT_RANGE, format!("bytes {start}-{end}/{size}")),
                (header::CONTENT_LENGTH, (end - start + 1).to_string()),
            ],
            stream(file, start, end - start + 1, id, idle),
        )
            .into_response(),
        Wanted::Unsatisfiable => {
            let error = ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                format!(
                    "the range '{}' is not one range of bytes inside this file of {size} bytes \
                     (e.g. bytes=0-1023, bytes=1024- or bytes=-1024)",
                    range.unwrap_or_default()
                ),
            );
            let mut response = error.into_response();
            let headers = response.headers_mut();
            headers.insert(header::ACCEPT_RANGES, "bytes".parse().expect("ascii"));
            if let Ok(v) = format!("bytes */{size}").parse() {
                headers.insert(header::CONTENT_RANGE, v);
            }
            response
        }
    }
}

/// The reader of [`stream`]. Each chunk is read on the blocking pool and its
/// send is awaited here with `idle` as deadline: a client that stops reading
/// then holds no thread while it waits, and is dropped after `idle` (a
/// `blocking_send` would hold a blocking-pool thread until the client reads
/// again, maybe never). Only waiting on the client counts, not the reads.
async fn send_chunks(
    mut file: File,
    start: u64,
    len: u64,
    id: i64,
    idle: Duration,
    tx: tokio::sync::mpsc::Sender<io::Result<Bytes>>,
) {
    let mut left = len;
    let mut seek = Some(start);
    while left > 0 {
        let want = left.min(CHUNK) as usize;
        let at = seek.take();
        let read = tokio::task::spawn_blocking(move || {
            let chunk = read_chunk(&mut file, at, want, id);
            (file, chunk)
        })
        .await;
        let (back, chunk) = match read {
            Ok(read) => read,
            // The read panicked: the file is gone with it.
            Err(e) => {
                let e = io::Error::other(format!("video {id} could not be read: {e}"));
                let _ = tokio::time::timeout(idle, tx.send(Err(e))).await;
                return;
            }
        };
        file = back;
        let failed = chunk.is_err();
        if let Ok(bytes) = &chunk {
            left -= bytes.len() as u64;
        }
        match tokio::time::timeout(idle, tx.send(chunk)).await {
            Ok(Ok(())) if !failed => {}
            // An error was sent, or the client went away.
            Ok(_) => return,
            Err(_) => {
                tracing::debug!(
                    "video {id}: the client took no data for {idle:?}; its stream is ended"
                );
                return;
            }
        }
    }
}

/// At most `want` (> 0) bytes of `file`, first moved to `seek` when given.
fn read_chunk(file: &mut File, seek: Option<u64>, want: usize, id: i64) -> io::Result<Bytes> {
    if let Some(at) = seek {
        file.seek(SeekFrom::Start(at))?;
    }
    let mut buf = vec![0u8; want];
    loop {
        match file.read(&mut buf) {
            // The file shrank since it was checked: end the response short
            // (an error), never pad it.
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("video {id} shrank while it was sent"),
                ))
            }
            Ok(n) => {
                buf.truncate(n);
                return Ok(Bytes::from(buf));
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_read_as_rfc_9110_says() {
        use Wanted::*;
        let cases = [
            (None, Whole),
            (Some("bytes=0-9"), Part(0, 9)),
            (Some("bytes=10-"), Part(10, 99)),
            (Some("bytes=-10"), Part(90, 99)),
            (Some("bytes=-1000"), Part(0, 99)),
            (Some("bytes=90-1000"), Part(90, 99)),
            (Some("BYTES=1-1"), Part(1, 1)),
            (Some("bytes=100-"), Unsatisfiable),
            (Some("bytes=100-200"), Unsatisfiable),
            (Some("bytes=5-2"), Unsatisfiable),
            (Some("bytes=-0"), Unsatisfiable),
            (Some("bytes=x-y"), Unsatisfiable),
            (Some("bytes=+1-2"), Unsatisfiable),
            (Some("bytes=-"), Unsatisfiable),
            (Some("bytes"), Unsatisfiable),
            (Some("bytes=0-1,5-6"), Whole),
            (Some("items=0-1"), Whole),
        ];
        for (header, expected) in cases {
            assert_eq!(wanted(header, 100), expected, "{header:?}");
        }
        assert_eq!(wanted(Some("bytes=-5"), 0), Unsatisfiable);
        assert_eq!(wanted(Some("bytes=0-"), 0), Unsatisfiable);
    }

    #[test]
    fn times_must_be_finite_and_not_negative() {
        assert_eq!(parse_time(None).unwrap(), None);
        assert_eq!(parse_time(Some("3")).unwrap(), Some(3.0));
        assert_eq!(parse_time(Some("0.25")).unwrap(), Some(0.25));
        for bad in ["-1", "NaN", "inf", "", "3s", "1e999"] {
            let e = parse_time(Some(bad)).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{bad}");
            assert!(e.message.starts_with("t must be"), "{}", e.message);
        }
    }
}
