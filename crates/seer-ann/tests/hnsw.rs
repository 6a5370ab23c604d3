mod common;

use common::*;
use seer_ann::{exact_top_k, exact_top_k_filtered, AnnError, Hnsw, HnswParams};

const K: usize = 10;

fn build(data: &[f32], dim: usize, params: HnswParams) -> Hnsw {
    let items: Vec<(u64, &[f32])> = data
        .chunks(dim)
        .enumerate()
        .map(|(i, v)| (i as u64, v))
        .collect();
    let mut h = Hnsw::new(dim, params);
    h.insert_batch(&items).unwrap();
    h
}

fn truth(
    data: &[f32],
    dim: usize,
    queries: &[f32],
    keep: impl Fn(usize) -> bool + Sync + Copy,
) -> Vec<Vec<u64>> {
    queries
        .chunks(dim)
        .map(|q| {
            exact_top_k_filtered(data, dim, q, K, keep)
                .into_iter()
                .map(|(i, _)| i as u64)
                .collect()
        })
        .collect()
}

fn approx(h: &Hnsw, queries: &[f32], dim: usize) -> Vec<Vec<u64>> {
    queries
        .chunks(dim)
        .map(|q| h.search(q, K, None).into_iter().map(|(i, _)| i).collect())
        .collect()
}

#[test]
fn recall_clustered_20k_128d() {
    let dim = 128;
    let data = clustered(20_000, dim, 200, 0.8, 1);
    let queries = clustered(200, dim, 200, 0.8, 1001); // same centres, fresh points
    let h = build(&data, dim, HnswParams::default());
    assert_eq!(h.len(), 20_000);
    let r = recall(
        &approx(&h, &queries, dim),
        &truth(&data, dim, &queries, |_| true),
    );
    assert!(r >= 0.95, "recall@10 = {r}");
    // Scores are dot products, best first.
    let q = &queries[..dim];
    let res = h.search(q, K, None);
    let ex = exact_top_k(&data, dim, q, 1);
    assert!((res[0].1 - ex[0].1).abs() < 2e-3);
    assert!(res.windows(2).all(|w| w[0].1 >= w[1].1));
}

#[test]
fn recall_uniform_20k_64d() {
    let dim = 64;
    let data = uniform_sphere(20_000, dim, 2);
    let queries = uniform_sphere(200, dim, 3);
    let h = build(&data, dim, HnswParams::default());
    let got: Vec<Vec<u64>> = queries
        .chunks(dim)
        .map(|q| {
            h.search(q, K, Some(400))
                .into_iter()
                .map(|(i, _)| i)
                .collect()
        })
        .collect();
    let r = recall(&got, &truth(&data, dim, &queries, |_| true));
    assert!(r >= 0.95, "recall@10 = {r}");
}

#[test]
fn remove_never_returns_deleted_and_recall_holds() {
    let dim = 64;
    let n = 10_000;
    let data = clustered(n, dim, 100, 0.8, 4);
    let queries = clustered(200, dim, 100, 0.8, 5);
    let mut h = build(&data, dim, HnswParams::default());
    // 10%: below the auto-consolidation threshold, so these stay tombstones.
    let gone = |i: usize| i % 10 == 3;
    for i in (0..n).filter(|&i| gone(i)) {
        assert!(h.remove(i as u64));
    }
    assert!(!h.remove(3), "second remove of the same id");
    assert_eq!(h.len(), n - n / 10);
    assert_eq!(h.deleted_count(), n / 10);
    assert!(!h.contains(3) && h.contains(4));
    let want = truth(&data, dim, &queries, |i| !gone(i));
    let check = |h: &Hnsw, label: &str| {
        let got = approx(h, &queries, dim);
        assert!(
            got.iter().flatten().all(|&id| !gone(id as usize)),
            "{label}: deleted id returned"
        );
        assert!(got.iter().all(|g| g.len() == K));
        let r = recall(&got, &want);
        assert!(r >= 0.95, "{label}: recall@10 = {r}");
    };
    check(&h, "tombstones");
    h.consolidate();
    assert_eq!(h.deleted_count(), 0);
    check(&h, "consolidated");
    // Freed slots are reused by new inserts; searching a deleted vector's exact
    // position finds the new one.
    let extra = clustered(500, dim, 100, 0.8, 6);
    for (j, v) in extra.chunks(dim).enumerate() {
        h.insert(1_000_000 + j as u64, v).unwrap();
    }
    assert_eq!(h.len(), n - n / 10 + 500);
    let r = h.search(&extra[..dim], 1, None);
    assert_eq!(r[0].0, 1_000_000);
}

#[test]
fn heavy_deletion_auto_consolidates() {
    let dim = 32;
    let n = 5000;
    let data = clustered(n, dim, 50, 0.8, 7);
    let queries = clustered(100, dim, 50, 0.8, 8);
    let mut h = build(&data, dim, HnswParams::default());
    for i in (0..n).filter(|i| i % 2 == 0) {
        h.remove(i as u64);
    }
    assert!(h.deleted_count() < n / 4, "consolidation should have run");
    let got = approx(&h, &queries, dim);
    assert!(got.iter().flatten().all(|id| id % 2 == 1));
    let r = recall(&got, &truth(&data, dim, &queries, |i| i % 2 == 1));
    assert!(r >= 0.95, "recall@10 = {r}");
    // Remove everything, then the index works again from empty.
    for i in 0..n as u64 {
        h.remove(i);
    }
    h.consolidate();
    assert!(h.is_empty());
    assert!(h.search(&queries[..dim], 5, None).is_empty());
    h.insert(42, &data[..dim]).unwrap();
    assert_eq!(h.search(&data[..dim], 5, None)[0].0, 42);
}

#[test]
fn insert_replaces_existing_id() {
    let dim = 32;
    let data = clustered(2000, dim, 20, 0.8, 9);
    let mut h = build(&data, dim, HnswParams::default());
    let newv = uniform_sphere(1, dim, 77);
    h.insert(5, &newv).unwrap();
    assert_eq!(h.len(), 2000);
    let r = h.search(&newv, 1, None);
    assert_eq!(r[0].0, 5);
    assert!((r[0].1 - 1.0).abs() < 2e-3);
    // The old vector no longer maps to id 5.
    let old = &data[5 * dim..6 * dim];
    let r = h.search(old, 3, None);
    assert!(r.iter().all(|&(id, s)| id != 5 || s < 0.9));
    // Duplicates within one batch: the last one wins.
    let a = uniform_sphere(2, dim, 78);
    h.insert_batch(&[(9, &a[..dim]), (9, &a[dim..])]).unwrap();
    assert_eq!(h.len(), 2000);
    assert!((h.search(&a[dim..], 1, None)[0].1 - 1.0).abs() < 2e-3);
    assert_eq!(h.search(&a[dim..], 1, None)[0].0, 9);
}

#[test]
fn filtered_search() {
    let dim = 64;
    let data = clustered(10_000, dim, 100, 0.8, 10);
    let queries = clustered(100, dim, 100, 0.8, 11);
    let h = build(&data, dim, HnswParams::default());
    let keep = |id: u64| id.is_multiple_of(5);
    let got: Vec<Vec<u64>> = queries
        .chunks(dim)
        .map(|q| {
            h.search_filtered(q, K, None, &keep)
                .into_iter()
                .map(|(i, _)| i)
                .collect()
        })
        .collect();
    assert!(got.iter().flatten().all(|&id| keep(id)));
    let r = recall(&got, &truth(&data, dim, &queries, |i| i % 5 == 0));
    assert!(r >= 0.95, "recall@10 = {r}");
    // A filter nothing passes: empty, and it terminates.
    assert!(h
        .search_filtered(&queries[..dim], K, None, &|_| false)
        .is_empty());
    // A filter only one item passes: found by the exhaustive walk.
    let one = h.search_filtered(&queries[..dim], K, None, &|id| id == 1234);
    assert_eq!(one.iter().map(|x| x.0).collect::<Vec<_>>(), vec![1234]);
}

#[test]
fn bad_input_is_rejected_without_changes() {
    let mut h = Hnsw::new(4, HnswParams::default());
    h.insert(1, &[1.0, 0.0, 0.0, 0.0]).unwrap();
    assert!(matches!(
        h.insert(2, &[1.0, 0.0]),
        Err(AnnError::DimMismatch {
            expected: 4,
            got: 2
        })
    ));
    assert!(matches!(
        h.insert(2, &[f32::NAN, 0.0, 0.0, 0.0]),
        Err(AnnError::NonFinite { id: 2 })
    ));
    assert!(matches!(
        h.insert(2, &[1e6, 0.0, 0.0, 0.0]),
        Err(AnnError::NonFinite { .. })
    ));
    let batch: Vec<(u64, &[f32])> = vec![(3, &[0.0, 1.0, 0.0, 0.0]), (4, &[0.0, 1.0])];
    assert!(h.insert_batch(&batch).is_err());
    assert_eq!(h.len(), 1);
    assert!(!h.contains(3));
    // Bad queries: empty results (or an error from try_search), never a panic.
    assert!(h.search(&[1.0, 0.0], 5, None).is_empty());
    assert!(h.search(&[f32::NAN, 0.0, 0.0, 0.0], 5, None).is_empty());
    assert!(h.try_search(&[1.0], 5, None).is_err());
    assert!(h.search(&[1.0, 0.0, 0.0, 0.0], 0, None).is_empty());
    assert!(Hnsw::try_new(0, HnswParams::default()).is_err());
    assert!(Hnsw::try_new(
        4,
        HnswParams {
            m: 1,
            ..HnswParams::default()
        }
    )
    .is_err());
}

#[test]
fn small_and_empty_indexes() {
    let mut h = Hnsw::new(8, HnswParams::default());
    assert!(h.is_empty());
    assert!(h.search(&[0.0; 8], 3, None).is_empty());
    let data = uniform_sphere(5, 8, 12);
    for (i, v) in data.chunks(8).enumerate() {
        h.insert(i as u64 * 10, v).unwrap();
    }
    let r = h.search(&data[16..24], 100, None);
    assert_eq!(r.len(), 5);
    assert_eq!(r[0].0, 20);
    // Absurd k / ef are bounded by the index size, not allocated.
    assert_eq!(
        h.search(&data[16..24], usize::MAX, Some(usize::MAX)).len(),
        5
    );
    let mut ids: Vec<u64> = h.ids().collect();
    ids.sort();
    assert_eq!(ids, vec![0, 10, 20, 30, 40]);
    let v = h.get(30).unwrap();
    assert!(v
        .iter()
        .zip(&data[24..32])
        .all(|(a, b)| (a - b).abs() < 1e-3));
}

#[test]
fn deterministic_given_seed() {
    let dim = 32;
    let data = clustered(3000, dim, 30, 0.8, 13);
    let queries = clustered(50, dim, 30, 0.8, 14);
    let seq = |seed: u64| {
        let mut h = Hnsw::new(
            dim,
            HnswParams {
                seed,
                ..HnswParams::default()
            },
        );
        for (i, v) in data.chunks(dim).enumerate() {
            h.insert(i as u64, v).unwrap();
        }
        h
    };
    let a = seq(1);
    let b = seq(1);
    let one_thread = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let c = one_thread.install(|| {
        build(
            &data,
            dim,
            HnswParams {
                seed: 1,
                ..HnswParams::default()
            },
        )
    });
    for q in queries.chunks(dim) {
        let ra = a.search(q, K, Some(20));
        assert_eq!(ra, b.search(q, K, Some(20)));
        assert_eq!(ra, c.search(q, K, Some(20)));
    }
}

#[test]
fn concurrent_searches() {
    let dim = 32;
    let data = clustered(5000, dim, 50, 0.8, 15);
    let h = build(&data, dim, HnswParams::default());
    let queries = clustered(64, dim, 50, 0.8, 16);
    let serial: Vec<_> = queries.chunks(dim).map(|q| h.search(q, K, None)).collect();
    let par: Vec<_> = std::thread::scope(|s| {
        let hs: Vec<_> = queries
            .chunks(dim)
            .map(|q| s.spawn(|| h.search(q, K, None)))
            .collect();
        hs.into_iter().map(|j| j.join().unwrap()).collect()
    });
    assert_eq!(serial, par);
}
