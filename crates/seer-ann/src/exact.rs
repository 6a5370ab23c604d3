//! Exact (brute-force) top-k by dot product.
//!
//! Ordering is total and deterministic: higher score first, ties broken by the
//! lower row index, and rows whose score is NaN are never returned. So the result
//! equals "sort all rows by (score desc, row asc), take k" regardless of threading.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use rayon::prelude::*;

use crate::simd;

/// Below this many matrix elements a single thread is faster than fanning out.
const PAR_MIN_ELEMENTS: usize = 1 << 18;
/// Rows per rayon task in the single-query scan.
const ROWS_PER_TASK: usize = 4096;
/// Rows per block in the batched scan: a block (256 x 512 f32 = 512 KiB) stays in L2
/// while every query is run over it.
const BATCH_BLOCK_ROWS: usize = 256;

#[derive(Clone, Copy, Debug)]
struct Hit {
    score: f32,
    row: usize,
}

// "Greater" means worse, so a max-heap keeps the worst of the kept hits on top.
impl Ord for Hit {
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .score
            .total_cmp(&self.score)
            .then(self.row.cmp(&other.row))
    }
}
impl PartialOrd for Hit {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl PartialEq for Hit {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Hit {}

/// Bounded collection of the k best hits.
#[derive(Clone, Debug)]
pub(crate) struct TopK {
    k: usize,
    heap: BinaryHeap<Hit>,
}

impl TopK {
    pub(crate) fn new(k: usize) -> Self {
        TopK {
            k,
            heap: BinaryHeap::with_capacity(k.min(1 << 16) + 1),
        }
    }

    #[inline]
    pub(crate) fn push(&mut self, row: usize, score: f32) {
        if self.k == 0 || score.is_nan() {
            return;
        }
        let hit = Hit { score, row };
        if self.heap.len() < self.k {
            self.heap.push(hit);
        } else if let Some(mut worst) = self.heap.peek_mut() {
            if hit < *worst {
                *worst = hit;
            }
        }
    }

    pub(crate) fn merge(mut self, other: TopK) -> TopK {
        for h in other.heap {
            self.push(h.row, h.score);
        }
        self
    }

    /// Best first.
    pub(crate) fn into_sorted(self) -> Vec<(usize, f32)> {
        self.heap
            .into_sorted_vec()
            .into_iter()
            .map(|h| (h.row, h.score))
            .collect()
    }
}

fn rows_of(vectors: &[f32], dim: usize, query: &[f32]) -> Option<usize> {
    if dim == 0 || query.len() != dim {
        if query.len() != dim {
            tracing::warn!(
                query_dim = query.len(),
                dim,
                "exact search: query dimension mismatch"
            );
        }
        return None;
    }
    debug_assert_eq!(
        vectors.len() % dim,
        0,
        "matrix length is not a multiple of dim"
    );
    Some(vectors.len() / dim)
}

/// Exact top-k by dot product over a row-major matrix (`n x dim`).
///
/// Returns `(row, score)` best first; ties go to the lower row. Returns an empty
/// vector when `k == 0`, the matrix is empty, or `query.len() != dim`. A trailing
/// partial row (if `vectors.len()` is not a multiple of `dim`) is ignored.
/// Runs in parallel over rows (rayon) when the matrix is large.
pub fn exact_top_k(vectors: &[f32], dim: usize, query: &[f32], k: usize) -> Vec<(usize, f32)> {
    exact_top_k_filtered(vectors, dim, query, k, |_| true)
}

/// Like [`exact_top_k`], skipping rows for which `keep(row)` is false
/// (path filters, tombstones). `keep` is called before the row is scored.
pub fn exact_top_k_filtered(
    vectors: &[f32],
    dim: usize,
    query: &[f32],
    k: usize,
    keep: impl Fn(usize) -> bool + Sync,
) -> Vec<(usize, f32)> {
    let Some(n) = rows_of(vectors, dim, query) else {
        return Vec::new();
    };
    if k == 0 || n == 0 {
        return Vec::new();
    }
    let scan = |lo: usize, hi: usize| {
        let mut top = TopK::new(k);
        for row in lo..hi {
            if keep(row) {
                top.push(
                    row,
                    simd::dot_f32(&vectors[row * dim..(row + 1) * dim], query),
                );
            }
        }
        top
    };
    let top = if n * dim < PAR_MIN_ELEMENTS {
        scan(0, n)
    } else {
        let tasks = n.div_ceil(ROWS_PER_TASK);
        (0..tasks)
            .into_par_iter()
            .map(|t| scan(t * ROWS_PER_TASK, ((t + 1) * ROWS_PER_TASK).min(n)))
            .reduce(|| TopK::new(k), TopK::merge)
    };
    top.into_sorted()
}

/// Exact top-k for many queries at once (`queries` is row-major, `m x dim`).
///
/// Much faster than calling [`exact_top_k`] per query for large batches: the matrix
/// is walked once in cache-sized blocks and each block is scored against every
/// query. Result `i` belongs to query `i`; same ordering rules as [`exact_top_k`].
pub fn exact_top_k_batch(
    vectors: &[f32],
    dim: usize,
    queries: &[f32],
    k: usize,
) -> Vec<Vec<(usize, f32)>> {
    if dim == 0 {
        return Vec::new();
    }
    let m = queries.len() / dim;
    let n = vectors.len() / dim;
    if k == 0 || n == 0 {
        return vec![Vec::new(); m];
    }
    let row = |r: usize| &vectors[r * dim..(r + 1) * dim];
    let blocks = n.div_ceil(BATCH_BLOCK_ROWS);
    let tops = (0..blocks)
        .into_par_iter()
        .fold(
            || vec![TopK::new(k); m],
            |mut tops, b| {
                let lo = b * BATCH_BLOCK_ROWS;
                let hi = (lo + BATCH_BLOCK_ROWS).min(n);
                for (qi, top) in tops.iter_mut().enumerate() {
                    let q = &queries[qi * dim..(qi + 1) * dim];
                    let mut r = lo;
                    while r + 4 <= hi {
                        let s = simd::dot4_f32(q, [row(r), row(r + 1), row(r + 2), row(r + 3)]);
                        for (j, s) in s.into_iter().enumerate() {
                            top.push(r + j, s);
                        }
                        r += 4;
                    }
                    while r < hi {
                        top.push(r, simd::dot_f32(q, row(r)));
                        r += 1;
                    }
                }
                tops
            },
        )
        .reduce(
            || vec![TopK::new(k); m],
            |a, b| a.into_iter().zip(b).map(|(x, y)| x.merge(y)).collect(),
        );
    tops.into_iter().map(TopK::into_sorted).collect()
}
