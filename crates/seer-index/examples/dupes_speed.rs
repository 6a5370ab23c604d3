//! How long duplicate grouping takes, exact against the HNSW graph, and what the
//! graph misses, on synthetic embeddings with planted near-copies.
//!
//! cargo run --release -p seer-index --example dupes_speed -- [N] [DIM] [--exact-too]
//!
//! N files (default 100000) of DIM (512) values: clustered unit vectors (a
//! centre per 50 files, cos ~0.6 to it, as CLIP embeddings cluster), 2% of them
//! followed by a near-copy (cos ~0.99). Groups at threshold 0.95 with 10
//! neighbours, as `seer dupes` runs by default. The graph is built first (the
//! index keeps one for models with at least 50,000 vectors, so `seer dupes`
//! does not pay for it); its build time is printed apart. The exact scan runs
//! only with `--exact-too` or N ≤ 50,000 (it grows with N²).

use std::collections::HashMap;
use std::time::Instant;

use seer_ann::{Hnsw, HnswParams};
use seer_index::dupes::{group_via, DupeGroup, Neighbours};
use seer_index::VectorSet;
use seer_util::Rng;

fn unit(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= n);
}

fn gauss(rng: &mut Rng, out: &mut [f32]) {
    out.iter_mut().for_each(|x| *x = rng.normal() as f32);
}

/// The files' vectors and the planted (original, copy) row pairs.
fn synthetic(n: usize, dim: usize) -> (VectorSet, Vec<(usize, usize)>) {
    let mut rng = Rng::from_state(7);
    let mut set = VectorSet {
        dim,
        ..Default::default()
    };
    let mut centre = vec![0.0f32; dim];
    let mut noise = vec![0.0f32; dim];
    let mut planted = Vec::new();
    while set.len() < n {
        if set.len().is_multiple_of(50) {
            gauss(&mut rng, &mut centre);
            unit(&mut centre);
        }
        gauss(&mut rng, &mut noise);
        unit(&mut noise);
        let mut v: Vec<f32> = centre
            .iter()
            .zip(&noise)
            .map(|(c, e)| 0.6 * c + 0.8 * e)
            .collect();
        unit(&mut v);
        let copy = set.len() + 1 < n && rng.uniform() < 0.02;
        let mut push = |v: &[f32]| {
            let row = set.len();
            set.ids.push(row as i64 + 1);
            set.paths.push(format!("/photos/{row}.jpg"));
            set.data.extend_from_slice(v);
            row
        };
        let original = push(&v);
        if copy {
            gauss(&mut rng, &mut noise);
            unit(&mut noise);
            let mut c: Vec<f32> = v.iter().zip(&noise).map(|(x, e)| x + 0.14 * e).collect();
            unit(&mut c);
            planted.push((original, push(&c)));
        }
    }
    (set, planted)
}

/// Each row's group (rows alone in none are absent).
fn group_of(groups: &[DupeGroup]) -> HashMap<i64, usize> {
    groups
        .iter()
        .enumerate()
        .flat_map(|(g, group)| group.ids.iter().map(move |&id| (id, g)))
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let numbers: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let n = numbers.first().copied().unwrap_or(100_000);
    let dim = numbers.get(1).copied().unwrap_or(512);
    let exact_too = args.iter().any(|a| a == "--exact-too") || n <= 50_000;
    let (threshold, neighbours) = (0.95, 10);
    let (set, planted) = synthetic(n, dim);
    println!(
        "{n} files of {dim} values, {} planted near-copies; threshold {threshold}, {neighbours} neighbours; {} threads",
        planted.len(),
        rayon::current_num_threads()
    );
    let found = |groups: &[DupeGroup]| {
        let of = group_of(groups);
        let row_id = |r: usize| set.ids[r];
        let caught = planted
            .iter()
            .filter(|&&(a, b)| {
                of.get(&row_id(a))
                    .is_some_and(|g| of.get(&row_id(b)) == Some(g))
            })
            .count();
        format!(
            "{} groups, {} files in them, {caught} of {} planted pairs grouped",
            groups.len(),
            of.len(),
            planted.len()
        )
    };

    let t = Instant::now();
    let mut graph = Hnsw::new(dim, HnswParams::default());
    let items: Vec<(u64, &[f32])> = (0..set.len())
        .map(|r| (set.ids[r] as u64, set.row(r)))
        .collect();
    graph
        .insert_batch(&items)
        .expect("the graph takes the vectors");
    println!(
        "graph built in {:.1} s (the index keeps it)",
        t.elapsed().as_secs_f64()
    );

    let t = Instant::now();
    let via_graph = group_via(&set, threshold, neighbours, Neighbours::Graph(&graph));
    let graph_secs = t.elapsed().as_secs_f64();
    println!("graph: {graph_secs:.2} s: {}", found(&via_graph));

    if exact_too {
        let t = Instant::now();
        let exact = group_via(&set, threshold, neighbours, Neighbours::Exact);
        let exact_secs = t.elapsed().as_secs_f64();
        println!("exact: {exact_secs:.2} s: {}", found(&exact));
        let same = group_of(&exact)
            .iter()
            .filter(|(id, _)| group_of(&via_graph).contains_key(id))
            .count();
        println!(
            "the graph took {:.2}x the exact scan's time; {same} of the exact groups' {} files are in the graph's groups",
            graph_secs / exact_secs,
            group_of(&exact).len()
        );
    }
}
