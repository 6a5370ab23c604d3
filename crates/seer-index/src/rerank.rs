//! Reranking a search's best hits with an image–text matching head (BLIP's
//! ITM), which reads the query and the photo together.
//!
//! A cosine compares two summaries made apart, so "a horse riding an
//! astronaut" and "an astronaut riding a horse" score nearly the same; the
//! matching head attends from every word to the image and tells them apart,
//! at the cost of one model run per photo. So only the first `depth` hits of
//! the ranking are scored and put in order of their ITM probability; the hits
//! below keep their order. The depth does not depend on the page asked for,
//! so pages fit together (and a page below the depth needs no model run).

use std::path::PathBuf;

use seer_engine::{ImageTextMatcher, MatchScore};
use seer_image::{DecodeLimits, DecodedImage};
use seer_video::{Ffmpeg, FrameLimits};

use crate::error::{IndexError, Result};
use crate::hybrid::Found;
use crate::pathcodec;
use crate::store::Store;

/// Hits reranked when the caller does not say.
pub const DEFAULT_DEPTH: usize = 20;

/// The most hits one search may rerank (each costs a model run).
pub const MAX_DEPTH: usize = 100;

/// The new order of hits scored `scores` (best ITM probability first); hits
/// whose image could not be scored (None) follow the scored ones in their old
/// order. Equal probabilities keep their old order.
pub fn order(scores: &[Option<f32>]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| match (scores[a], scores[b]) {
        (Some(x), Some(y)) => y.total_cmp(&x),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    });
    idx
}

/// Puts `items` in the order [`order`] gives for `scores` (one per item).
pub fn apply<T>(items: Vec<T>, scores: &[Option<f32>]) -> Vec<T> {
    assert_eq!(items.len(), scores.len(), "one score per item");
    let mut slots: Vec<Option<T>> = items.into_iter().map(Some).collect();
    order(scores)
        .into_iter()
        .map(|i| slots[i].take().expect("a permutation"))
        .collect()
}

/// A search's results after [`rerank_found`]: each hit, and for the first
/// `depth` its matching score or why it has none (an unreadable photo, a video
/// without ffmpeg); `None` below the depth.
pub type Reranked = Vec<(Found, Option<std::result::Result<MatchScore, String>>)>;

/// `found` (best first) with its first `depth` hits in order of `matcher`'s
/// ITM probability for `text` (see the module's comment); a hit that could
/// not be scored follows the scored ones, and the hits below the depth keep
/// their order. Files are read only under `store`'s roots; videos' frames
/// through `ffmpeg`. A model error stops the reranking; a file's does not.
#[allow(clippy::too_many_arguments)]
pub fn rerank_found(
    store: &Store,
    matcher: &dyn ImageTextMatcher,
    text: &str,
    mut found: Vec<Found>,
    depth: usize,
    ffmpeg: Option<&Ffmpeg>,
    limits: &DecodeLimits,
    batch_size: usize,
) -> Result<Reranked> {
    let rest = found.split_off(depth.min(found.len()));
    let roots: Vec<PathBuf> = store
        .roots()?
        .iter()
        .filter_map(|r| pathcodec::to_path(r).canonicalize().ok())
        .collect();
    let hits: Vec<RerankHit> = found
        .iter()
        .map(|f| RerankHit {
            path: f.path.clone(),
            time: f.time,
        })
        .collect();
    let scores = score_hits(matcher, text, &hits, ffmpeg, &roots, limits, batch_size)?;
    let probabilities: Vec<Option<f32>> = scores
        .iter()
        .map(|s| s.as_ref().ok().map(|s| s.itm_probability))
        .collect();
    let scored: Vec<_> = found
        .into_iter()
        .zip(scores.into_iter().map(Some))
        .collect();
    let mut out = apply(scored, &probabilities);
    out.extend(rest.into_iter().map(|f| (f, None)));
    Ok(out)
}

/// Scores the indexed files at `paths` (stored form) against `text`, in model
/// batches of `batch_size`: each file is read only when it lies under `roots`
/// (canonical), and decoded within `limits`. A file that cannot be read or
/// decoded gets its error, never stops the others; a model error stops all.
/// Every path is read as a photo; [`score_hits`] reads videos' frames too.
pub fn score_files(
    matcher: &dyn ImageTextMatcher,
    text: &str,
    paths: &[String],
    roots: &[PathBuf],
    limits: &DecodeLimits,
    batch_size: usize,
) -> Result<Vec<std::result::Result<MatchScore, String>>> {
    let hits: Vec<RerankHit> = paths
        .iter()
        .map(|p| RerankHit {
            path: p.clone(),
            time: None,
        })
        .collect();
    score_hits(matcher, text, &hits, None, roots, limits, batch_size)
}

/// A hit to rerank: an indexed file (stored form) and, for a video, the time
/// (seconds) of the frame that matched, which is what the matching model reads.
#[derive(Clone, Debug, PartialEq)]
pub struct RerankHit {
    pub path: String,
    pub time: Option<f64>,
}

/// [`score_files`] for hits that may be videos: a hit with a time is read as
/// its video's frame at that time, decoded by `ffmpeg` within `limits`' pixel
/// limit; without ffmpeg (None) such a hit gets an error saying so. Photos are
/// read as [`score_files`] reads them.
pub fn score_hits(
    matcher: &dyn ImageTextMatcher,
    text: &str,
    hits: &[RerankHit],
    ffmpeg: Option<&Ffmpeg>,
    roots: &[PathBuf],
    limits: &DecodeLimits,
    batch_size: usize,
) -> Result<Vec<std::result::Result<MatchScore, String>>> {
    use rayon::prelude::*;
    let mut out = Vec::with_capacity(hits.len());
    for chunk in hits.chunks(batch_size.max(1)) {
        let prepared: Vec<std::result::Result<Vec<f32>, String>> = chunk
            .par_iter()
            .map(|hit| {
                let image = match hit.time {
                    None => crate::captions::decode_indexed(&hit.path, roots, limits)
                        .map_err(|e| e.to_string()),
                    Some(time) => frame_of(&hit.path, time, ffmpeg, roots, limits),
                };
                image.map(|image| matcher.preprocess(&image))
            })
            .collect();
        let ok = prepared.iter().filter(|p| p.is_ok()).count();
        let pixels: Vec<f32> = prepared.iter().flatten().flatten().copied().collect();
        let scores = match ok {
            0 => Vec::new(),
            n => matcher.match_texts(pixels, n, &vec![text.to_string(); n])?,
        };
        if scores.len() != ok {
            return Err(IndexError::Invalid(format!(
                "the matching model gave {} scores for {ok} images",
                scores.len()
            )));
        }
        let mut scores = scores.into_iter();
        for p in prepared {
            out.push(p.map(|_| scores.next().expect("one score per image")));
        }
    }
    Ok(out)
}

/// The frame at `time` of the indexed video at `stored`, read only when it
/// lies under `roots` (as photos are); the error names the file.
fn frame_of(
    stored: &str,
    time: f64,
    ffmpeg: Option<&Ffmpeg>,
    roots: &[PathBuf],
    limits: &DecodeLimits,
) -> std::result::Result<DecodedImage, String> {
    let shown = pathcodec::display_stored(stored);
    let Some(ffmpeg) = ffmpeg else {
        return Err(format!(
            "{shown}: is a video, and reading its frame needs ffmpeg, which was not found"
        ));
    };
    let path = pathcodec::to_path(stored);
    // Opened and checked once: ffmpeg reads this file, not the path again.
    let (file, _) =
        crate::video::open_within(&path, roots).map_err(|cause| format!("{shown}: {cause}"))?;
    let frame_limits = FrameLimits {
        max_pixels: limits.max_pixels,
        ..FrameLimits::default()
    };
    ffmpeg
        .frame_at_file(&path, &file, time, &frame_limits)
        .map(|frame| frame.image)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reranking_orders_by_probability_and_keeps_unscored_hits_behind() {
        let scores = [Some(0.2), None, Some(0.9), Some(0.2), None, Some(0.5)];
        assert_eq!(order(&scores), [2, 5, 0, 3, 1, 4]);
        assert_eq!(
            apply(vec!['a', 'b', 'c', 'd', 'e', 'f'], &scores),
            ['c', 'f', 'a', 'd', 'b', 'e']
        );
        assert!(order(&[]).is_empty());
    }

    /// Scores an image by how yellow it is (red and green high, blue low);
    /// preprocessing is the mean colour.
    struct YellowMatcher;

    impl seer_engine::PixelInput for YellowMatcher {
        fn preprocess(&self, image: &DecodedImage) -> Vec<f32> {
            let rgb = image.to_rgb();
            let n = (rgb.width() * rgb.height()).max(1) as f32;
            let mut sum = [0f32; 3];
            for p in rgb.pixels() {
                for (s, v) in sum.iter_mut().zip(p.0) {
                    *s += v as f32 / 255.0 / n;
                }
            }
            sum.to_vec()
        }
        fn pixels_len(&self) -> usize {
            3
        }
    }

    impl ImageTextMatcher for YellowMatcher {
        fn match_texts(
            &self,
            pixels: Vec<f32>,
            n: usize,
            _texts: &[String],
        ) -> seer_engine::Result<Vec<MatchScore>> {
            Ok(pixels[..n * 3]
                .chunks(3)
                .map(|c| MatchScore {
                    itm_probability: (c[0] + c[1] - c[2]) / 2.0,
                    similarity: 0.0,
                })
                .collect())
        }
    }

    #[test]
    fn a_video_hit_is_read_as_its_frame_at_the_hits_time() {
        let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/video");
        let root = fixtures.canonicalize().unwrap();
        let video = pathcodec::to_stored(&root.join("colors.mkv"));
        let ffmpeg = Ffmpeg::find(None)
            .unwrap_or_else(|e| panic!("these tests need ffmpeg: install ffmpeg ({e})"));
        // Second 0 is red, second 3 yellow, second 2 blue (fixtures/video/colors.json).
        let hits: Vec<RerankHit> = [0.5, 3.5, 2.5]
            .iter()
            .map(|&t| RerankHit {
                path: video.clone(),
                time: Some(t),
            })
            .collect();
        let roots = vec![root.clone()];
        let scores = score_hits(
            &YellowMatcher,
            "yellow",
            &hits,
            Some(&ffmpeg),
            &roots,
            &Default::default(),
            2,
        )
        .unwrap();
        let p: Vec<f32> = scores
            .iter()
            .map(|s| s.as_ref().unwrap().itm_probability)
            .collect();
        assert!((p[0] - 0.5).abs() < 0.02, "red: {p:?}");
        assert!((p[1] - 1.0).abs() < 0.02, "yellow: {p:?}");
        assert!((p[2] + 0.5).abs() < 0.02, "blue: {p:?}");

        // Without ffmpeg, or outside the roots: an error naming the video, not a failed search.
        let scores = score_hits(
            &YellowMatcher,
            "yellow",
            &hits[..1],
            None,
            &roots,
            &Default::default(),
            2,
        )
        .unwrap();
        let err = scores[0].as_ref().unwrap_err();
        assert!(
            err.contains("colors.mkv") && err.contains("ffmpeg"),
            "{err}"
        );
        // A folder of its own: the repository itself may be under the temporary folder.
        let other = tempfile::tempdir().unwrap();
        let elsewhere = vec![other.path().canonicalize().unwrap()];
        let scores = score_hits(
            &YellowMatcher,
            "yellow",
            &hits[..1],
            Some(&ffmpeg),
            &elsewhere,
            &Default::default(),
            2,
        )
        .unwrap();
        let err = scores[0].as_ref().unwrap_err();
        assert!(err.contains("outside the indexed folders"), "{err}");

        // A hit whose file is gone says so (it is not "outside the folders").
        let gone = [RerankHit {
            path: pathcodec::to_stored(&root.join("deleted.mkv")),
            time: Some(1.0),
        }];
        let scores = score_hits(
            &YellowMatcher,
            "yellow",
            &gone,
            Some(&ffmpeg),
            &roots,
            &Default::default(),
            2,
        )
        .unwrap();
        let err = scores[0].as_ref().unwrap_err();
        assert!(err.contains("deleted.mkv: no longer exists"), "{err}");
    }
}
