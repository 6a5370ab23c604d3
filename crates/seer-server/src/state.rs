//! What every request can reach: the served models (each with its batcher and
//! search data), the index, the running index job and metrics.

use std::path::PathBuf;
use std::sync::Mutex;

use axum::http::{header, HeaderMap};
use seer_image::DecodeLimits;
use seer_index::{IndexSummary, Store};

use crate::error::{ApiError, ApiResult};
use crate::metrics::Metrics;
use crate::models::ServedModels;
use crate::tasks::Tasks;

/// Whether `given` is `secret`, in a time that tells neither how much of it
/// matched nor how long the secret is (returning at a length difference would
/// let a client find the length first). Both are hashed to fixed-length digests,
/// which `blake3::Hash` compares in constant time; equal digests mean equal
/// bytes, barring a BLAKE3 collision.
fn constant_time_eq(given: &[u8], secret: &[u8]) -> bool {
    blake3::hash(given) == blake3::hash(secret)
}

pub struct AppState {
    pub models: ServedModels,
    /// Captioning, question-answering and matching models, when served.
    pub tasks: Tasks,
    /// Segmentation and detection models, when served.
    pub vision: crate::vision::Vision,
    pub index_dir: PathBuf,
    pub token: Option<String>,
    pub limits: DecodeLimits,
    pub metrics: Metrics,
    pub job: Mutex<JobState>,
    pub ann_threshold: usize,
    /// ffmpeg for video thumbnails and index jobs; None when it was not
    /// found (videos stay searchable, their frames cannot be shown).
    pub ffmpeg: Option<seer_video::Ffmpeg>,
    /// Bounds the ffmpeg processes video thumbnails run at once.
    pub video_slots: crate::video::Slots,
    /// How long a request may take (--timeout); also how long a streamed
    /// video waits for its client to take the next chunk before ending it.
    pub request_timeout: std::time::Duration,
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct JobState {
    pub running: bool,
    pub planned: usize,
    pub done: usize,
    pub last: Option<IndexSummary>,
    /// The caption run of the last job, when the server has a caption model.
    pub captions: Option<seer_index::CaptionSummary>,
    pub error: Option<String>,
}

impl AppState {
    /// Whether a request may use the protected routes: no token is configured,
    /// or it carries `Authorization: Bearer TOKEN` (the scheme in any case).
    pub fn authorized(&self, headers: &HeaderMap) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, credentials)| credentials.trim());
        given.is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes()))
    }

    /// A read-only connection for this request (SQLite connections are not shared
    /// across threads; opening one costs well under a millisecond).
    pub fn store(&self) -> ApiResult<Store> {
        Store::open_read_only(&self.index_dir).map_err(ApiError::from)
    }
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn tokens_match_only_when_equal_whatever_their_lengths() {
        let secret = b"sixteen-chars-xy";
        assert!(constant_time_eq(secret, secret));
        assert!(constant_time_eq(b"", b""));
        for other in [
            &b"sixteen-chars-xz"[..],
            b"Sixteen-chars-xy",
            b"sixteen-chars-x",
            b"sixteen",
            b"",
            b"sixteen-chars-xyz",
            b"sixteen-chars-xy\0",
        ] {
            assert!(!constant_time_eq(other, secret), "{other:?}");
            assert!(!constant_time_eq(secret, other), "{other:?}");
        }
    }
}
