mod common;

use common::*;
use seer_ann::{exact_top_k, exact_top_k_batch, exact_top_k_filtered};

/// Reference: score every row, sort by (score desc, row asc), take k.
fn naive(
    vectors: &[f32],
    dim: usize,
    q: &[f32],
    k: usize,
    keep: impl Fn(usize) -> bool,
) -> Vec<(usize, f32)> {
    let mut all: Vec<(usize, f32)> = vectors
        .chunks_exact(dim)
        .enumerate()
        .filter(|(i, _)| keep(*i))
        .map(|(i, r)| (i, r.iter().zip(q).map(|(a, b)| a * b).sum::<f32>()))
        .filter(|(_, s)| !s.is_nan())
        .collect();
    all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    all.truncate(k);
    all
}

fn same(got: &[(usize, f32)], want: &[(usize, f32)]) {
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert!((g.1 - w.1).abs() < 1e-4, "score {g:?} vs {w:?}");
    }
    // Rows must match except where scores are equal within rounding.
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        if g.0 != w.0 {
            assert!(
                (g.1 - w.1).abs() < 1e-5,
                "row mismatch at {i}: {g:?} vs {w:?}"
            );
        }
    }
}

#[test]
fn matches_naive_small_and_large() {
    for &(n, dim) in &[(1, 3), (7, 5), (100, 17), (1000, 64), (20_000, 32)] {
        let v = uniform_sphere(n, dim, n as u64);
        let q = uniform_sphere(3, dim, 99);
        for qi in q.chunks(dim) {
            for k in [1, 5, 10, n, n + 5] {
                same(
                    &exact_top_k(&v, dim, qi, k),
                    &naive(&v, dim, qi, k, |_| true),
                );
            }
        }
    }
}

#[test]
fn edge_cases() {
    let v = uniform_sphere(10, 4, 1);
    let q = &v[..4];
    assert!(exact_top_k(&v, 4, q, 0).is_empty());
    assert!(exact_top_k(&[], 4, q, 5).is_empty());
    assert_eq!(exact_top_k(&v, 4, q, 100).len(), 10);
    assert_eq!(exact_top_k(&v, 4, q, 1)[0].0, 0);
    // Wrong query dimension or dim 0: empty, no panic.
    assert!(exact_top_k(&v, 4, &[1.0, 0.0], 3).is_empty());
    assert!(exact_top_k(&v, 0, &[], 3).is_empty());
    // Rows scoring NaN are never returned.
    let mut w = v.clone();
    w[4] = f32::NAN;
    let r = exact_top_k(&w, 4, q, 100);
    assert_eq!(r.len(), 9);
    assert!(r.iter().all(|&(i, _)| i != 1));
}

#[test]
fn ties_go_to_lower_row_in_every_thread_layout() {
    // 300k identical rows: every score ties, parallel path is taken.
    let dim = 4;
    let n = 300_000;
    let v: Vec<f32> = std::iter::repeat_n([0.5f32, 0.5, 0.5, 0.5], n)
        .flatten()
        .collect();
    let q = [0.5f32, 0.5, 0.5, 0.5];
    let r = exact_top_k(&v, dim, &q, 10);
    assert_eq!(
        r.iter().map(|x| x.0).collect::<Vec<_>>(),
        (0..10).collect::<Vec<_>>()
    );
    let r = exact_top_k_filtered(&v, dim, &q, 3, |i| i % 7 == 3);
    assert_eq!(r.iter().map(|x| x.0).collect::<Vec<_>>(), vec![3, 10, 17]);
    // Mixed ties: two score levels.
    let mut v2 = vec![0f32; 20 * 2];
    for i in 0..20 {
        v2[i * 2] = if i % 3 == 0 { 1.0 } else { 0.5 };
    }
    let r = exact_top_k(&v2, 2, &[1.0, 0.0], 9);
    assert_eq!(
        r.iter().map(|x| x.0).collect::<Vec<_>>(),
        vec![0, 3, 6, 9, 12, 15, 18, 1, 2]
    );
}

#[test]
fn filtered_matches_naive() {
    let dim = 48;
    let v = clustered(50_000, dim, 50, 0.5, 3);
    let q = clustered(5, dim, 50, 0.5, 4);
    for qi in q.chunks(dim) {
        let keep = |i: usize| !i.is_multiple_of(3);
        same(
            &exact_top_k_filtered(&v, dim, qi, 10, keep),
            &naive(&v, dim, qi, 10, keep),
        );
        assert!(exact_top_k_filtered(&v, dim, qi, 10, |_| false).is_empty());
    }
}

#[test]
fn batch_matches_single() {
    let dim = 37; // not a multiple of the SIMD width
    let v = uniform_sphere(5003, dim, 5);
    let q = uniform_sphere(13, dim, 6);
    let b = exact_top_k_batch(&v, dim, &q, 7);
    assert_eq!(b.len(), 13);
    for (qi, got) in q.chunks(dim).zip(&b) {
        same(got, &naive(&v, dim, qi, 7, |_| true));
    }
    assert!(exact_top_k_batch(&v, dim, &q, 0)
        .iter()
        .all(|r| r.is_empty()));
    assert!(exact_top_k_batch(&[], dim, &q, 3)
        .iter()
        .all(|r| r.is_empty()));
}
