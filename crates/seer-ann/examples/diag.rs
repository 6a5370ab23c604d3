#[path = "../tests/common/mod.rs"]
mod common;
use common::*;
use seer_ann::*;
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let kind = &args[1];
    let n: usize = args[2].parse().unwrap();
    let dim: usize = args[3].parse().unwrap();
    let m: usize = args[4].parse().unwrap();
    let efc: usize = args[5].parse().unwrap();
    let (data, queries) = if kind == "u" {
        (uniform_sphere(n, dim, 2), uniform_sphere(200, dim, 3))
    } else {
        (
            clustered(n, dim, n / 100, 0.8, 1),
            clustered(200, dim, n / 100, 0.8, 1001),
        )
    };
    let t = std::time::Instant::now();
    let mut h = Hnsw::new(
        dim,
        HnswParams {
            m,
            ef_construction: efc,
            ..Default::default()
        },
    );
    let items: Vec<(u64, &[f32])> = data
        .chunks(dim)
        .enumerate()
        .map(|(i, v)| (i as u64, v))
        .collect();
    h.insert_batch(&items).unwrap();
    println!("build {:?}", t.elapsed());
    let truth: Vec<Vec<u64>> = queries
        .chunks(dim)
        .map(|q| {
            exact_top_k(&data, dim, q, 10)
                .into_iter()
                .map(|x| x.0 as u64)
                .collect()
        })
        .collect();
    let d16: Vec<f32> = data.iter().map(|&x| half_round(x)).collect();
    let truth16: Vec<Vec<u64>> = queries
        .chunks(dim)
        .map(|q| {
            exact_top_k(&d16, dim, q, 10)
                .into_iter()
                .map(|x| x.0 as u64)
                .collect()
        })
        .collect();
    println!("truth f32 vs f16 recall {:.4}", recall(&truth16, &truth));
    for ef in [10, 20, 50, 100, 200, 400, 1000] {
        let got: Vec<Vec<u64>> = queries
            .chunks(dim)
            .map(|q| h.search(q, 10, Some(ef)).into_iter().map(|x| x.0).collect())
            .collect();
        println!("ef {ef} recall {:.4}", recall(&got, &truth));
    }
}

fn half_round(x: f32) -> f32 {
    let mut h = Hnsw::new(1, Default::default());
    h.insert(0, &[x]).unwrap();
    h.get(0).unwrap()[0]
}
