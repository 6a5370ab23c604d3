//! Segmentation (SAM, `seer serve --segment-model`) and open-vocabulary
//! detection (OWL-ViT / OWLv2, `--detect-model`) as the server runs them.
//!
//! Each model runs one request at a time on the blocking pool behind a
//! [`Gate`]; at most `--queue` requests wait for it, more are refused at once
//! (503) rather than held without bound.
//!
//! SAM embeds an image once (the heavy image encoder) and answers every prompt
//! with only the prompt encoder and mask decoder, so the server keeps:
//! - the last [`EMBEDDING_CACHE`] image embeddings, keyed by the BLAKE3 hash
//!   of the image file's bytes (what the index records for indexed photos, so
//!   an upload of an indexed photo hits too). A SAM ViT embedding is
//!   256 × 64 × 64 f32 = 4 MiB, so the cache holds at most 32 MiB;
//! - the low-resolution logits (256 × 256 f32 = 256 KiB) of the last
//!   [`MASK_CACHE`] masks it answered, by `mask_id`, so a client refines a
//!   mask by sending its id back (at most 64 × 256 KiB = 16 MiB).
//!
//! Both are least-recently-used: a hit moves an entry to the back, the front
//! goes when the cache is full.

use std::collections::hash_map::RandomState;
use std::collections::VecDeque;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use seer_engine::detect::{Detector, PreparedQueries};
use seer_engine::segment::{SegmentImage, Segmenter};
use seer_engine::{EngineError, LoadedModel};
use tokio::sync::Semaphore;

use crate::error::{ApiError, ApiResult};

/// Image embeddings kept (4 MiB each for SAM ViT: 32 MiB in all).
pub const EMBEDDING_CACHE: usize = 8;
/// Masks whose low-resolution logits are kept for refinement (256 KiB each).
pub const MASK_CACHE: usize = 64;
/// Prepared text queries kept (a few KiB each).
pub const QUERY_CACHE: usize = 32;

/// A small least-recently-used map (linear search: it holds a few dozen).
pub struct Lru<K, V> {
    capacity: usize,
    items: VecDeque<(K, V)>,
}

impl<K: PartialEq, V: Clone> Lru<K, V> {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            items: VecDeque::new(),
        }
    }

    pub fn get(&mut self, key: &K) -> Option<V> {
        let i = self.items.iter().position(|(k, _)| k == key)?;
        let item = self.items.remove(i)?;
        let value = item.1.clone();
        self.items.push_back(item);
        Some(value)
    }

    pub fn put(&mut self, key: K, value: V) {
        if let Some(i) = self.items.iter().position(|(k, _)| *k == key) {
            self.items.remove(i);
        }
        self.items.push_back((key, value));
        while self.items.len() > self.capacity {
            self.items.pop_front();
        }
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }
}

/// One model run at a time; at most `capacity` requests wait for it.
pub struct Gate {
    permits: Arc<Semaphore>,
    waiting: AtomicUsize,
    capacity: usize,
    pub rejected: AtomicUsize,
}

struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Gate {
    pub fn new(capacity: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(1)),
            waiting: AtomicUsize::new(0),
            capacity: capacity.max(1),
            rejected: AtomicUsize::new(0),
        }
    }

    pub fn depth(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Runs `f` on the blocking pool when the model is free (503 when too
    /// many wait). The permit goes with `f`: a request that times out does
    /// not let another run beside the one still computing.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> ApiResult<T> {
        if self.waiting.fetch_add(1, Ordering::Relaxed) >= self.capacity {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            self.rejected.fetch_add(1, Ordering::Relaxed);
            return Err(ApiError::busy());
        }
        let permit = {
            let _waiting = Waiting(&self.waiting);
            self.permits
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| ApiError::internal("the model gate closed"))?
        };
        tokio::task::spawn_blocking(move || {
            let out = f();
            drop(permit);
            out
        })
        .await
        .map_err(ApiError::internal)
    }
}

/// A model's error as the client gets it: what the request got wrong is 400,
/// the rest 500.
pub fn engine_error(e: EngineError) -> ApiError {
    match e {
        EngineError::Invalid(m) => ApiError::bad_request(m),
        other => ApiError::internal(other),
    }
}

/// Counters for /metrics.
#[derive(Default)]
pub struct VisionStats {
    pub embeddings: AtomicU64,
    pub embedding_hits: AtomicU64,
    pub decoder_runs: AtomicU64,
    pub decoder_micros: AtomicU64,
    pub detections: AtomicU64,
    pub detect_micros: AtomicU64,
    pub query_hits: AtomicU64,
}

/// The low-resolution logits of an answered mask, and which image they are of.
pub struct StoredMask {
    pub image: [u8; 32],
    pub logits: Vec<f32>,
}

/// The segmentation model and its caches.
pub struct Segmentation {
    pub model: LoadedModel,
    pub segmenter: Arc<dyn Segmenter>,
    pub gate: Gate,
    embeddings: Mutex<Lru<[u8; 32], Arc<SegmentImage>>>,
    masks: Mutex<Lru<String, Arc<StoredMask>>>,
    ids: RandomState,
    next_id: AtomicU64,
}

impl Segmentation {
    pub fn new(model: LoadedModel, queue: usize) -> Option<Self> {
        let segmenter = model.segmenter.clone()?;
        Some(Self {
            model,
            segmenter,
            gate: Gate::new(queue),
            embeddings: Mutex::new(Lru::new(EMBEDDING_CACHE)),
            masks: Mutex::new(Lru::new(MASK_CACHE)),
            ids: RandomState::new(),
            next_id: AtomicU64::new(0),
        })
    }

    pub fn cached(&self, key: &[u8; 32]) -> Option<Arc<SegmentImage>> {
        lock(&self.embeddings).get(key)
    }

    pub fn keep(&self, key: [u8; 32], image: Arc<SegmentImage>) {
        lock(&self.embeddings).put(key, image);
    }

    /// Keeps a mask's logits; its id (unguessable: keyed by a per-process
    /// random state) lets a client refine it.
    pub fn keep_mask(&self, mask: StoredMask) -> String {
        let mut h = self.ids.build_hasher();
        h.write_u64(self.next_id.fetch_add(1, Ordering::Relaxed));
        let mut h2 = self.ids.build_hasher();
        h2.write_u64(h.finish());
        let id = format!("{:016x}{:016x}", h.finish(), h2.finish());
        lock(&self.masks).put(id.clone(), Arc::new(mask));
        id
    }

    pub fn mask(&self, id: &str) -> Option<Arc<StoredMask>> {
        lock(&self.masks).get(&id.to_string())
    }
}

/// The detection model and its prepared text queries.
pub struct Detection {
    pub model: LoadedModel,
    pub detector: Arc<dyn Detector>,
    pub gate: Gate,
    queries: Mutex<Lru<Vec<String>, Arc<PreparedQueries>>>,
}

impl Detection {
    pub fn new(model: LoadedModel, queue: usize) -> Option<Self> {
        let detector = model.detector.clone()?;
        Some(Self {
            model,
            detector,
            gate: Gate::new(queue),
            queries: Mutex::new(Lru::new(QUERY_CACHE)),
        })
    }

    pub fn cached(&self, labels: &Vec<String>) -> Option<Arc<PreparedQueries>> {
        lock(&self.queries).get(labels)
    }

    pub fn keep(&self, labels: Vec<String>, prepared: Arc<PreparedQueries>) {
        lock(&self.queries).put(labels, prepared);
    }
}

/// The vision models a server holds, each optional, and their counters.
#[derive(Default)]
pub struct Vision {
    pub segment: Option<Segmentation>,
    pub detect: Option<Detection>,
    pub stats: VisionStats,
}

impl Vision {
    pub fn segmentation(&self) -> ApiResult<&Segmentation> {
        self.segment.as_ref().ok_or_else(|| {
            ApiError::bad_request(
                "this server has no segmentation model; start it with `seer serve --segment-model MODEL` (a SAM checkpoint, e.g. facebook/sam-vit-base)",
            )
        })
    }

    pub fn detection(&self) -> ApiResult<&Detection> {
        self.detect.as_ref().ok_or_else(|| {
            ApiError::bad_request(
                "this server has no detection model; start it with `seer serve --detect-model MODEL` (an OWL-ViT or OWLv2 checkpoint, e.g. google/owlv2-base-patch16-ensemble)",
            )
        })
    }
}

impl Vision {
    /// The segmentation and detection counters, in Prometheus' text format.
    pub fn render_metrics(&self) -> String {
        let s = &self.stats;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let seconds = |a: &AtomicU64| get(a) as f64 / 1e6;
        let counters = [
            (
                "seer_segment_embeddings_total",
                "Images run through the segmentation image encoder.",
                get(&s.embeddings) as f64,
            ),
            (
                "seer_segment_embedding_cache_hits_total",
                "Segment requests answered from a cached image embedding.",
                get(&s.embedding_hits) as f64,
            ),
            (
                "seer_segment_decoder_runs_total",
                "Prompts run through the prompt encoder and mask decoder.",
                get(&s.decoder_runs) as f64,
            ),
            (
                "seer_segment_decoder_seconds_total",
                "Time in the prompt encoder and mask decoder.",
                seconds(&s.decoder_micros),
            ),
            (
                "seer_detect_runs_total",
                "Images run through the detection model.",
                get(&s.detections) as f64,
            ),
            (
                "seer_detect_seconds_total",
                "Time in the detection model (queries prepared beforehand).",
                seconds(&s.detect_micros),
            ),
            (
                "seer_detect_query_cache_hits_total",
                "Detect requests whose text queries were already embedded.",
                get(&s.query_hits) as f64,
            ),
        ];
        let mut out = String::new();
        for (name, help, value) in counters {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}\n"
            ));
        }
        if let Some(seg) = &self.segment {
            let n = lock(&seg.embeddings).len();
            out.push_str(&format!(
                "# HELP seer_segment_cached_embeddings Image embeddings in the cache (at most {EMBEDDING_CACHE}).\n# TYPE seer_segment_cached_embeddings gauge\nseer_segment_cached_embeddings {n}\n"
            ));
        }
        out
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Whether `model` segments: the error `seer serve` refuses it with otherwise.
pub fn check_segmenter(model: &LoadedModel) -> seer_engine::Result<()> {
    model.segmenter().map(|_| ())
}

/// A mask as the page draws it: a PNG at most `max_side` on its longest side
/// (nearest neighbour), the mask's pixels a translucent colour, the rest
/// transparent. Returns the PNG and its size.
pub fn mask_png(
    mask: &[bool],
    width: u32,
    height: u32,
    max_side: u32,
) -> Result<(Vec<u8>, u32, u32), String> {
    if mask.len() != width as usize * height as usize || width == 0 || height == 0 {
        return Err(format!(
            "a {width}×{height} mask holds {} values",
            mask.len()
        ));
    }
    let scale = (max_side as f64 / width.max(height) as f64).min(1.0);
    let w = ((width as f64 * scale).round() as u32).max(1);
    let h = ((height as f64 * scale).round() as u32).max(1);
    let mut rgba = Vec::with_capacity(w as usize * h as usize * 4);
    for y in 0..h {
        let sy = ((y as u64 * height as u64) / h as u64) as usize;
        for x in 0..w {
            let sx = ((x as u64 * width as u64) / w as u64) as usize;
            match mask[sy * width as usize + sx] {
                true => rgba.extend_from_slice(&[30, 144, 255, 150]),
                false => rgba.extend_from_slice(&[0, 0, 0, 0]),
            }
        }
    }
    let img = seer_image::image::RgbaImage::from_raw(w, h, rgba)
        .ok_or("the mask image has the wrong size")?;
    let mut png = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut png),
        seer_image::image::ImageFormat::Png,
    )
    .map_err(|e| format!("cannot encode the mask: {e}"))?;
    Ok((png, w, h))
}

/// Area (pixels set) and bounding box `[x0, y0, x1, y1]` (exclusive right and
/// bottom edges, in pixels; `None` for an empty mask).
pub fn area_and_box(mask: &[bool], width: u32) -> (u64, Option<[u32; 4]>) {
    let w = width.max(1) as usize;
    let mut area = 0u64;
    let (mut x0, mut y0, mut x1, mut y1) = (usize::MAX, usize::MAX, 0, 0);
    for (i, _) in mask.iter().enumerate().filter(|(_, &m)| m) {
        area += 1;
        let (x, y) = (i % w, i / w);
        x0 = x0.min(x);
        y0 = y0.min(y);
        x1 = x1.max(x + 1);
        y1 = y1.max(y + 1);
    }
    let bbox = (area > 0).then_some([x0 as u32, y0 as u32, x1 as u32, y1 as u32]);
    (area, bbox)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lru_keeps_the_most_recently_used() {
        let mut lru = Lru::new(2);
        lru.put(1, "a");
        lru.put(2, "b");
        assert_eq!(lru.get(&1), Some("a"));
        lru.put(3, "c"); // 2 was least recently used
        assert_eq!(lru.get(&2), None);
        assert_eq!(
            (lru.get(&1), lru.get(&3), lru.len()),
            (Some("a"), Some("c"), 2)
        );
    }

    #[test]
    fn masks_measure_and_draw() {
        let (w, h) = (4, 3);
        let mut m = vec![false; 12];
        m[5] = true; // (1, 1)
        m[6] = true; // (2, 1)
        assert_eq!(area_and_box(&m, w), (2, Some([1, 1, 3, 2])));
        assert_eq!(area_and_box(&[false; 12], w), (0, None));
        let (png, pw, ph) = mask_png(&m, w, h, 2).unwrap();
        assert_eq!((pw, ph), (2, 2));
        let img = seer_image::image::load_from_memory(&png)
            .unwrap()
            .to_rgba8();
        assert_eq!(img.dimensions(), (2, 2));
        assert!(mask_png(&m, 5, 3, 8).is_err());
    }
}
