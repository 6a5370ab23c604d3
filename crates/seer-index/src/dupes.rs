//! Near-duplicate groups, and the measurement that chooses their threshold.
//!
//! What counts as "the same picture" depends on the model: cosine similarities
//! of CLIP variants live on different scales. So the default threshold is
//! measured, per model, on the user's own photos: a sample of indexed images is
//! altered the way duplicates arise (downscaled, cropped, brightened), the
//! altered copies are embedded, and the threshold is set to catch 99% of those
//! pairs. The result is stored in the index, so later runs reuse it.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use rayon::prelude::*;

use seer_engine::{EmbedOptions, ImageEncoder};
use seer_image::image::{imageops, RgbImage};

use crate::error::{IndexError, Result};
use crate::search::clamp_cosine;
use crate::searcher::Searcher;
use crate::store::{ModelInfo, Store, VectorSet};
use seer_engine::zeroshot::dot;

#[derive(Clone, Debug, serde::Serialize)]
pub struct DupeGroup {
    /// The group's files (as stored) and their ids; similarities are to the
    /// first one.
    pub paths: Vec<String>,
    pub ids: Vec<i64>,
    pub scores: Vec<f32>,
}

/// How a caller follows a grouping or a measurement, which can take minutes on
/// a large index or with a large model, and stops it. The default does
/// neither.
#[derive(Clone, Copy, Default)]
pub struct Watch<'a> {
    /// Told `(done, of)` now and then: files compared with the others, or
    /// photos measured.
    pub progress: Option<&'a (dyn Fn(usize, usize) + Sync)>,
    /// Looked at between blocks and batches: once it is set, the work ends
    /// with [`IndexError::Interrupted`] (Python's Ctrl-C sets it).
    pub stop: Option<&'a AtomicBool>,
}

impl Watch<'_> {
    fn report(&self, done: usize, of: usize) {
        if let Some(progress) = self.progress {
            progress(done, of);
        }
    }

    fn stopped(&self) -> bool {
        self.stop.is_some_and(|stop| stop.load(Ordering::Relaxed))
    }

    /// `Err(Interrupted)` once [`Self::stop`] is set.
    fn go_on(&self) -> Result<()> {
        if self.stopped() {
            Err(IndexError::Interrupted)
        } else {
            Ok(())
        }
    }
}

/// Where each file's nearest neighbours are looked for.
#[derive(Clone, Copy)]
pub enum Neighbours<'a> {
    /// Among every vector: all pairs scored (as matrix products), so no pair
    /// is missed, at a cost that grows with the square of the files.
    Exact,
    /// In the index's HNSW graph, as searches at and above the ANN threshold
    /// look: a query per file, so the cost grows with the files only; a pair
    /// the graph does not find (rare; see `seer_ann`'s recall) is not grouped.
    Graph(&'a seer_ann::Hnsw),
}

impl<'a> Neighbours<'a> {
    /// As `searcher` searches: through its graph when it has one (an index of
    /// at least the ANN threshold's vectors), unless `exact` is asked for.
    pub fn as_searched(searcher: &'a Searcher, exact: bool) -> Self {
        match searcher.graph() {
            Some(graph) if !exact => Neighbours::Graph(graph),
            _ => Neighbours::Exact,
        }
    }
}

/// The graph's candidate list for a file's neighbours: below search's 96,
/// since a near-copy is among a file's very nearest, which a short list
/// finds. 64 is where recall@10 reaches its ceiling on 1M clustered CLIP-like
/// vectors (`seer_ann`'s measurement); on `examples/dupes_speed` (50,000
/// vectors, Zen 4) it took 6.0 s against 10.4 s at 96, the same groups
/// (at 100,000: 13.6–14.9 s, the exact scan 34 s).
const GRAPH_EF: usize = 64;

/// Groups vectors whose cosine similarity to a neighbour is at least `threshold`
/// (transitively). `neighbours` bounds the candidates examined per vector.
pub fn group(vectors: &VectorSet, threshold: f32, neighbours: usize) -> Vec<DupeGroup> {
    group_via(vectors, threshold, neighbours, Neighbours::Exact)
}

/// [`group`] with each file's `neighbours` nearest found `via` the exact scan
/// or the index's graph (whose ids are `vectors`' file ids).
pub fn group_via(
    vectors: &VectorSet,
    threshold: f32,
    neighbours: usize,
    via: Neighbours<'_>,
) -> Vec<DupeGroup> {
    // Only a `stop` ends it early, and the default watch has none.
    group_watched(vectors, threshold, neighbours, via, Watch::default()).unwrap_or_default()
}

/// [`group_via`] telling `watch` how many files it has compared with the
/// others so far (for a progress bar), and ending early when `watch` says
/// stop.
pub fn group_watched(
    vectors: &VectorSet,
    threshold: f32,
    neighbours: usize,
    via: Neighbours<'_>,
    watch: Watch<'_>,
) -> Result<Vec<DupeGroup>> {
    let n = vectors.len();
    let mut parent: Vec<usize> = (0..n).collect();
    fn find(parent: &mut [usize], mut x: usize) -> usize {
        while parent[x] != x {
            parent[x] = parent[parent[x]];
            x = parent[x];
        }
        x
    }
    // Each file's nearest include itself; more than every file is every file.
    let nearest = neighbours.saturating_add(1).min(n);
    // Only pairs at or above the threshold join groups, so only they are
    // kept: each file's best `nearest` among them are its best `nearest`
    // overall that reach the threshold.
    let done = AtomicUsize::new(0);
    let lists: Vec<Vec<(usize, f32)>> = match via {
        Neighbours::Exact => exact_neighbours(vectors, threshold, nearest, watch)?,
        Neighbours::Graph(graph) => (0..n)
            .into_par_iter()
            .map(|i| {
                let so_far = done.fetch_add(1, Ordering::Relaxed) + 1;
                if so_far.is_multiple_of(1024) || so_far == n {
                    watch.report(so_far, n);
                    watch.go_on()?;
                }
                Ok(graph
                    .search(vectors.row(i), nearest, Some(GRAPH_EF.max(nearest)))
                    .into_iter()
                    .filter(|&(_, score)| score >= threshold)
                    .filter_map(|(id, score)| {
                        let row = vectors.ids.binary_search(&(id as i64)).ok()?;
                        Some((row, score))
                    })
                    .collect())
            })
            .collect::<Result<_>>()?,
    };
    for (i, hits) in lists.into_iter().enumerate() {
        for (j, _) in hits {
            if j != i {
                let (a, b) = (find(&mut parent, i), find(&mut parent, j));
                if a != b {
                    parent[a.max(b)] = a.min(b);
                }
            }
        }
    }
    let mut members: HashMap<usize, Vec<usize>> = HashMap::new();
    for i in 0..n {
        let root = find(&mut parent, i);
        members.entry(root).or_default().push(i);
    }
    let mut groups: Vec<DupeGroup> = members
        .into_values()
        .filter(|m| m.len() > 1)
        .map(|m| DupeGroup {
            scores: m
                .iter()
                .map(|&j| clamp_cosine(dot(vectors.row(m[0]), vectors.row(j))))
                .collect(),
            paths: m.iter().map(|&j| vectors.paths[j].clone()).collect(),
            ids: m.iter().map(|&j| vectors.ids[j]).collect(),
        })
        .collect();
    groups.sort_by(|a, b| {
        b.paths
            .len()
            .cmp(&a.paths.len())
            .then_with(|| a.paths[0].cmp(&b.paths[0]))
    });
    Ok(groups)
}

/// Each row's best `nearest` rows (itself included) among those whose cosine
/// with it is at least `threshold`, best first (ties: the lower row first).
///
/// Every pair is scored once, as products of blocks of queries with blocks of
/// rows (seer's f32 GEMM): a block of rows against the queries from its own
/// first on, each score kept for both of its files, so the products cover half
/// the square (and its diagonal blocks). Only the scores reaching the
/// threshold are kept: at a duplicates threshold, a handful a row.
fn exact_neighbours(
    vectors: &VectorSet,
    threshold: f32,
    nearest: usize,
    watch: Watch<'_>,
) -> Result<Vec<Vec<(usize, f32)>>> {
    use seer_kernels::{gemm, Init, PackedWeights, Precision};
    /// Rows packed as the product's weights at a time, and queries a product
    /// (a divisor of `ROWS`, so a block of queries lies inside a block of
    /// rows or wholly after it).
    const ROWS: usize = 2048;
    const QUERIES: usize = 256;
    let (n, dim) = (vectors.len(), vectors.dim);
    let mut lists: Vec<Vec<(usize, f32)>> = vec![Vec::new(); n];
    if dim == 0 || nearest == 0 {
        return Ok(lists);
    }
    let keep = |list: &mut Vec<(usize, f32)>, found: (usize, f32)| {
        if found.1 >= threshold {
            list.push(found);
            // Bounded as it fills (a low threshold keeps every score).
            if list.len() > 2 * nearest {
                list.select_nth_unstable_by(nearest - 1, better);
                list.truncate(nearest);
            }
        }
    };
    let mut scores = vec![0.0f32; QUERIES * ROWS];
    for first_row in (0..n).step_by(ROWS) {
        let rows = ROWS.min(n - first_row);
        let block = &vectors.data[first_row * dim..(first_row + rows) * dim];
        let packed = PackedWeights::from_rows(block, rows, dim, None, Precision::F32);
        // The files before the block were scored with it when their own
        // block was.
        let (_, from_block) = lists.split_at_mut(first_row);
        let (block_lists, after) = from_block.split_at_mut(rows);
        for first_query in (first_row..n).step_by(QUERIES) {
            watch.go_on()?;
            let queries = QUERIES.min(n - first_query);
            let q = &vectors.data[first_query * dim..(first_query + queries) * dim];
            let scores = &mut scores[..queries * rows];
            gemm(q, queries, &packed, scores, Init::Bias, None);
            if first_query < first_row + rows {
                // Inside the block: every pair of it is scored from both
                // sides, so each query keeps its own row of scores only.
                let offset = first_query - first_row;
                scores
                    .par_chunks(rows)
                    .zip(block_lists[offset..offset + queries].par_iter_mut())
                    .for_each(|(row_scores, list)| {
                        for (r, &score) in row_scores.iter().enumerate() {
                            keep(list, (first_row + r, score));
                        }
                    });
            } else {
                // After the block: each score is both files' (the query's
                // row, and the block row's column).
                let offset = first_query - first_row - rows;
                let scores = &*scores;
                rayon::join(
                    || {
                        scores
                            .par_chunks(rows)
                            .zip(after[offset..offset + queries].par_iter_mut())
                            .for_each(|(row_scores, list)| {
                                for (r, &score) in row_scores.iter().enumerate() {
                                    keep(list, (first_row + r, score));
                                }
                            })
                    },
                    || {
                        block_lists
                            .par_iter_mut()
                            .enumerate()
                            .for_each(|(r, list)| {
                                for qi in 0..queries {
                                    keep(list, (first_query + qi, scores[qi * rows + r]));
                                }
                            })
                    },
                );
            }
        }
        // Every file is now scored against the rows up to the block's end.
        watch.report(first_row + rows, n);
    }
    lists
        .par_iter_mut()
        .for_each(|list| best_first(list, nearest));
    Ok(lists)
}

/// `list` sorted best first, cut to `keep`.
fn best_first(list: &mut Vec<(usize, f32)>, keep: usize) {
    list.sort_by(better);
    list.truncate(keep);
}

/// The higher score first; of equal ones, the lower row.
fn better(a: &(usize, f32), b: &(usize, f32)) -> std::cmp::Ordering {
    b.1.total_cmp(&a.1).then(a.0.cmp(&b.0))
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Calibration {
    pub threshold: f32,
    /// Indexed images the measurement used.
    pub images: usize,
    /// (original, altered copy) similarities measured.
    pub duplicate_pairs: usize,
    pub duplicate_median: f32,
    pub duplicate_p1: f32,
    /// Pairs of different sampled images, and how many score above the threshold
    /// (false matches, unless the collection really holds duplicates).
    pub distinct_pairs: usize,
    pub distinct_above: usize,
    /// The highest of those similarities; -1 (the lowest a cosine can be)
    /// where there are no pairs (one photo sampled).
    pub distinct_max: f32,
}

fn meta_key(model: &ModelInfo) -> String {
    format!("dupes_calibration:{}", model.id)
}

pub fn stored_calibration(store: &Store, model: &ModelInfo) -> Result<Option<Calibration>> {
    Ok(store
        .meta(&meta_key(model))?
        .and_then(|v| serde_json::from_str(&v).ok()))
}

/// Measures the threshold on up to `sample` of `vectors`' images (see
/// [`measure`]) and remembers it in the index folder `dir`, opened for writing
/// for that alone. The threshold comes back even where it could not be
/// remembered (an index on a full or read-only disk still gets its groups),
/// with why it was not: the next run then measures again. `watch` is told how
/// many photos are measured so far.
pub fn measure_and_remember(
    dir: &Path,
    model: &ModelInfo,
    encoder: &dyn ImageEncoder,
    vectors: &VectorSet,
    sample: usize,
    options: &EmbedOptions,
    watch: Watch<'_>,
) -> Result<(Calibration, Option<IndexError>)> {
    let calibration = measure(encoder, vectors, sample, options, watch)?;
    let not_remembered = Store::open(dir)
        .and_then(|mut store| store_calibration(&mut store, model, &calibration))
        .err();
    Ok((calibration, not_remembered))
}

/// Remembers `calibration` as the model's threshold (what
/// [`stored_calibration`] reads back).
pub fn store_calibration(
    store: &mut Store,
    model: &ModelInfo,
    calibration: &Calibration,
) -> Result<()> {
    store.set_meta(
        &meta_key(model),
        &serde_json::to_string(calibration).unwrap_or_default(),
    )
}

/// Measures the threshold on up to `sample` of `vectors`' images (see
/// [`measure_and_remember`]) without storing it.
pub fn measure(
    encoder: &dyn ImageEncoder,
    vectors: &VectorSet,
    sample: usize,
    options: &EmbedOptions,
    watch: Watch<'_>,
) -> Result<Calibration> {
    // Photos only: the altered copies are made of decoded images, and a
    // video's vector (its frames' mean) is not what a photo's copy resembles.
    let photos: Vec<usize> = (0..vectors.len())
        .filter(|&r| {
            !seer_video::has_video_extension(&crate::pathcodec::to_path(&vectors.paths[r]))
        })
        .collect();
    if photos.is_empty() {
        return Err(IndexError::Invalid(
            "cannot measure the duplicate threshold: the index holds no photos to alter \
             (only videos); give a threshold"
                .into(),
        ));
    }
    let step = (photos.len() / sample.max(1)).max(1);
    let rows: Vec<usize> = photos.iter().copied().step_by(step).take(sample).collect();
    type Variant = fn(&RgbImage) -> RgbImage;
    let variants: [Variant; 3] = [
        |img| {
            imageops::resize(
                img,
                (img.width() / 2).max(1),
                (img.height() / 2).max(1),
                imageops::FilterType::Triangle,
            )
        },
        |img| {
            let (w, h) = (img.width() * 9 / 10, img.height() * 9 / 10);
            imageops::crop_imm(
                img,
                (img.width() - w) / 2,
                (img.height() - h) / 2,
                w.max(1),
                h.max(1),
            )
            .to_image()
        },
        |img| imageops::brighten(img, 20),
    ];
    // Batch by batch: each photo decoded once and its copies made on the
    // caller's rayon pool, then the model. Not the engine's decode-ahead
    // pipeline, whose thread of its own would use rayon's global pool, which
    // the Python package never starts (see seer-py's crate docs).
    let photos_per_batch = (options.batch_size / variants.len()).max(1);
    let mut duplicates = Vec::new();
    for (batch, chunk) in rows.chunks(photos_per_batch).enumerate() {
        watch.go_on()?;
        watch.report(batch * photos_per_batch, rows.len());
        // A photo that cannot be read any more is left out of the measurement.
        let copies: Vec<(usize, Vec<Vec<f32>>)> = chunk
            .par_iter()
            .filter_map(|&row| {
                let path = crate::pathcodec::to_path(&vectors.paths[row]);
                let original = seer_image::decode_file(&path, &options.limits).ok()?;
                let pixels = variants
                    .iter()
                    .map(|variant| encoder.preprocess_rgb(&variant(&original)))
                    .collect();
                Some((row, pixels))
            })
            .collect();
        let of_row: Vec<usize> = copies
            .iter()
            .flat_map(|(row, pixels)| std::iter::repeat_n(*row, pixels.len()))
            .collect();
        if of_row.is_empty() {
            continue;
        }
        let pixels: Vec<f32> = copies.into_iter().flat_map(|(_, p)| p).flatten().collect();
        let embeddings = encoder.embed_pixels(pixels, of_row.len(), true)?;
        for (embedding, row) in embeddings.iter().zip(of_row) {
            duplicates.push(clamp_cosine(dot(embedding, vectors.row(row))));
        }
    }
    watch.report(rows.len(), rows.len());
    let mut distinct = Vec::new();
    for (a, &i) in rows.iter().enumerate() {
        for &j in &rows[a + 1..] {
            distinct.push(clamp_cosine(dot(vectors.row(i), vectors.row(j))));
        }
    }
    // With no altered copy embedded there is nothing to measure: a threshold
    // of 1.0 "catching 99% of 0 copies" would group exact copies only.
    if duplicates.is_empty() {
        return Err(IndexError::Invalid(format!(
            "cannot measure the duplicate threshold: none of the {} sampled photos could be read \
             (moved or deleted since they were indexed?); re-index, or give a threshold",
            rows.len()
        )));
    }
    duplicates.sort_by(f32::total_cmp);
    let percentile = |v: &[f32], p: f64| {
        v.get(((v.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or(1.0)
    };
    // Catch 99% of the measured duplicates.
    let threshold = percentile(&duplicates, 0.01);
    let calibration = Calibration {
        threshold,
        images: rows.len(),
        duplicate_pairs: duplicates.len(),
        duplicate_median: percentile(&duplicates, 0.5),
        duplicate_p1: threshold,
        distinct_pairs: distinct.len(),
        distinct_above: distinct.iter().filter(|&&s| s >= threshold).count(),
        // -1 where there is no pair: -inf would be stored as JSON's null,
        // which would not read back.
        distinct_max: distinct.iter().copied().fold(-1.0, f32::max),
    };
    Ok(calibration)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_index::encoder_model;

    /// The threshold is measured on photos: a video among the vectors is
    /// neither altered (it cannot be decoded as an image) nor paired.
    #[test]
    fn the_threshold_is_measured_on_photos_only() {
        let dir = tempfile::tempdir().unwrap();
        let mut vectors = VectorSet {
            dim: 3,
            ..Default::default()
        };
        for (i, (name, rgb)) in [
            ("a.png", [200u8, 30, 30]),
            ("b.mp4", [30, 200, 30]),
            ("c.png", [30, 30, 200]),
        ]
        .iter()
        .enumerate()
        {
            let path = dir.path().join(name);
            seer_image::image::RgbImage::from_pixel(8, 8, seer_image::image::Rgb(*rgb))
                .save_with_format(&path, seer_image::image::ImageFormat::Png)
                .unwrap();
            vectors.ids.push(i as i64 + 1);
            vectors.paths.push(crate::pathcodec::to_stored(&path));
            let v: Vec<f32> = rgb.iter().map(|&c| c as f32).collect();
            vectors.data.extend(crate::test_index::unit(&v));
        }
        let model = encoder_model();
        let c = measure(
            model.image().unwrap(),
            &vectors,
            10,
            &EmbedOptions::default(),
            Watch::default(),
        )
        .unwrap();
        assert_eq!(
            (c.images, c.duplicate_pairs, c.distinct_pairs),
            (2, 6, 1),
            "{c:?}"
        );

        let only_video = VectorSet {
            dim: 3,
            ids: vec![2],
            paths: vec![vectors.paths[1].clone()],
            data: vectors.row(1).to_vec(),
        };
        let err = measure(
            model.image().unwrap(),
            &only_video,
            10,
            &EmbedOptions::default(),
            Watch::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("no photos"), "{err}");
    }

    /// Through the graph the groups are those of the exact scan (a small set,
    /// which the graph searches without a miss), ids not in file order
    /// included; at a threshold no pair reaches, none.
    #[test]
    fn groups_through_the_graph_are_the_exact_scan_s() {
        let mut rng = seer_util::Rng::from_state(3);
        let dim = 16;
        let mut vectors = VectorSet {
            dim,
            ..Default::default()
        };
        for row in 0..60 {
            let mut v: Vec<f32> = (0..dim).map(|_| rng.normal() as f32).collect();
            if row % 10 == 9 {
                // A near-copy of the row before it.
                let before = vectors.row(row - 1).to_vec();
                v = before.iter().zip(&v).map(|(b, e)| b + 0.02 * e).collect();
            }
            vectors.ids.push(1000 - 7 * row as i64);
            vectors.paths.push(format!("/photos/{row}.jpg"));
            vectors.data.extend(crate::test_index::unit(&v));
        }
        // The store keeps ids in order.
        let mut order: Vec<usize> = (0..60).collect();
        order.sort_by_key(|&r| vectors.ids[r]);
        let sorted = VectorSet {
            dim,
            ids: order.iter().map(|&r| vectors.ids[r]).collect(),
            paths: order.iter().map(|&r| vectors.paths[r].clone()).collect(),
            data: order
                .iter()
                .flat_map(|&r| vectors.row(r).to_vec())
                .collect(),
        };
        let mut graph = seer_ann::Hnsw::new(dim, Default::default());
        let items: Vec<(u64, &[f32])> = (0..60)
            .map(|r| (sorted.ids[r] as u64, sorted.row(r)))
            .collect();
        graph.insert_batch(&items).unwrap();
        let exact = group_via(&sorted, 0.99, 5, Neighbours::Exact);
        let through_graph = group_via(&sorted, 0.99, 5, Neighbours::Graph(&graph));
        assert_eq!(exact.len(), 6, "{exact:?}");
        let pairs = |groups: &[DupeGroup]| -> Vec<(Vec<i64>, Vec<f32>)> {
            groups
                .iter()
                .map(|g| (g.ids.clone(), g.scores.clone()))
                .collect()
        };
        assert_eq!(pairs(&through_graph), pairs(&exact));
        assert!(group_via(&sorted, 1.0, 5, Neighbours::Graph(&graph)).is_empty());
    }

    /// `n` random unit vectors of `dim` values (ids 1 to `n`, in file order).
    fn random_unit_vectors(n: usize, dim: usize, seed: u64) -> VectorSet {
        let mut rng = seer_util::Rng::from_state(seed);
        let mut vectors = VectorSet {
            dim,
            ..Default::default()
        };
        for row in 0..n {
            let v: Vec<f32> = (0..dim).map(|_| rng.normal() as f32).collect();
            vectors.ids.push(row as i64 + 1);
            vectors.paths.push(format!("/photos/{row}.jpg"));
            vectors.data.extend(crate::test_index::unit(&v));
        }
        vectors
    }

    /// The exact scan by products finds what one dot product at a time finds:
    /// each row's best among those reaching the threshold, best first, over
    /// several blocks of rows and of queries; at -1 every row's best overall.
    #[test]
    fn the_exact_scan_by_products_is_the_dot_product_scan() {
        let (n, dim) = (2600, 8);
        let vectors = random_unit_vectors(n, dim, 11);
        // Progress: a report after each block of rows, the last at every file.
        let reports = std::sync::Mutex::new(Vec::new());
        let record = |done: usize, of: usize| reports.lock().unwrap().push((done, of));
        let watch = Watch {
            progress: Some(&record),
            stop: None,
        };
        group_watched(&vectors, 0.9, 5, Neighbours::Exact, watch).unwrap();
        assert_eq!(reports.into_inner().unwrap(), vec![(2048, n), (n, n)]);
        for (threshold, nearest) in [(-1.0, 6), (0.8, 6), (0.95, 1), (1.5, 3)] {
            let lists = exact_neighbours(&vectors, threshold, nearest, Watch::default()).unwrap();
            assert_eq!(lists.len(), n);
            for (row, list) in lists.iter().enumerate() {
                let expected: Vec<(usize, f32)> =
                    seer_ann::exact_top_k(&vectors.data, dim, vectors.row(row), nearest)
                        .into_iter()
                        .filter(|&(_, score)| score >= threshold)
                        .collect();
                let rows = |l: &[(usize, f32)]| l.iter().map(|&(r, _)| r).collect::<Vec<_>>();
                assert_eq!(rows(list), rows(&expected), "row {row} at {threshold}");
                for (&(_, got), &(_, want)) in list.iter().zip(&expected) {
                    assert!((got - want).abs() < 1e-5, "row {row}: {got} vs {want}");
                }
            }
        }
    }

    /// A stop asked for during the work ends it with `Interrupted` at the
    /// next block or batch: the exact scan after its first block of rows, the
    /// graph after its first 1,024 files, the measurement after its first
    /// batch of photos (whose progress reports show where each stopped).
    #[test]
    fn a_stop_ends_grouping_and_measuring_early() {
        let (n, dim) = (3000, 8);
        let vectors = random_unit_vectors(n, dim, 5);
        let mut graph = seer_ann::Hnsw::new(dim, Default::default());
        let items: Vec<(u64, &[f32])> = (0..n)
            .map(|r| (vectors.ids[r] as u64, vectors.row(r)))
            .collect();
        graph.insert_batch(&items).unwrap();
        for via in [Neighbours::Exact, Neighbours::Graph(&graph)] {
            let stop = AtomicBool::new(false);
            let reports = std::sync::Mutex::new(Vec::new());
            let record = |done: usize, _: usize| {
                reports.lock().unwrap().push(done);
                stop.store(true, Ordering::Relaxed);
            };
            let watch = Watch {
                progress: Some(&record),
                stop: Some(&stop),
            };
            let err = group_watched(&vectors, 0.9, 5, via, watch).unwrap_err();
            assert!(matches!(err, IndexError::Interrupted), "{err}");
            let reports = reports.into_inner().unwrap();
            assert!(reports.iter().all(|&done| done < n), "{reports:?}");
        }

        let dir = tempfile::tempdir().unwrap();
        let mut photos = VectorSet {
            dim: 3,
            ..Default::default()
        };
        for i in 0..12u8 {
            let path = dir.path().join(format!("{i}.png"));
            let rgb = [20 * i, 255 - 20 * i, 100];
            seer_image::image::RgbImage::from_pixel(8, 8, seer_image::image::Rgb(rgb))
                .save_with_format(&path, seer_image::image::ImageFormat::Png)
                .unwrap();
            photos.ids.push(i as i64 + 1);
            photos.paths.push(crate::pathcodec::to_stored(&path));
            let v: Vec<f32> = rgb.iter().map(|&c| c as f32 + 1.0).collect();
            photos.data.extend(crate::test_index::unit(&v));
        }
        let model = encoder_model();
        let options = EmbedOptions {
            batch_size: 3,
            ..EmbedOptions::default()
        };
        let stop = AtomicBool::new(false);
        let reports = std::sync::Mutex::new(Vec::new());
        let record = |done: usize, of: usize| {
            reports.lock().unwrap().push((done, of));
            // Asked during the first batch: seen before the second.
            stop.store(true, Ordering::Relaxed);
        };
        let watch = Watch {
            progress: Some(&record),
            stop: Some(&stop),
        };
        let err = measure(model.image().unwrap(), &photos, 12, &options, watch).unwrap_err();
        assert!(matches!(err, IndexError::Interrupted), "{err}");
        assert_eq!(reports.into_inner().unwrap(), vec![(0, 12)]);
        // Unwatched, the same measurement runs to its end.
        let whole = Watch {
            progress: Some(&|done: usize, of: usize| assert!(done <= of)),
            stop: None,
        };
        let c = measure(model.image().unwrap(), &photos, 12, &options, whole).unwrap();
        assert_eq!(c.images, 12);

        // One photo: no pair of different photos, and a threshold that is
        // remembered and read back (an infinite highest score was not).
        let one = measure(
            model.image().unwrap(),
            &photos,
            1,
            &options,
            Watch::default(),
        )
        .unwrap();
        assert_eq!(
            (one.images, one.distinct_pairs, one.distinct_max),
            (1, 0, -1.0)
        );
        let index = tempfile::tempdir().unwrap();
        let mut store = Store::open(index.path()).unwrap();
        let info = ModelInfo {
            id: 1,
            name: "m".into(),
            dim: 3,
            vectors: 0,
        };
        store_calibration(&mut store, &info, &one).unwrap();
        let read = stored_calibration(&store, &info)
            .unwrap()
            .expect("read back");
        assert_eq!(read.threshold, one.threshold);
    }
}
