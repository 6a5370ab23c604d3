//! How much storing vectors as f16 or int8 changes search results, against f32:
//! recall@10 of the top-10 and the largest score change, on synthetic clustered
//! 512-d unit vectors (embeddings cluster by content; uniform random vectors would
//! make every neighbour a near-tie and exaggerate the effect).
//!
//!     cargo run --release -p seer-index --example encoding_recall -- [N] [QUERIES]

use seer_index::Encoding;

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let queries: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(500);
    let dim = 512;
    let mut rng = seer_util::Rng::from_state(0x2545F4914F6CDD1D);
    let centres: Vec<Vec<f32>> = (0..n / 50)
        .map(|_| unit((0..dim).map(|_| rng.normal() as f32).collect()))
        .collect();
    let sample = |rng: &mut seer_util::Rng| {
        let c = &centres[rng.below(centres.len())];
        unit(
            c.iter()
                .map(|x| x + 0.6 * rng.normal() as f32 / (dim as f32).sqrt())
                .collect(),
        )
    };
    let data: Vec<f32> = (0..n).flat_map(|_| sample(&mut rng)).collect();
    let qs: Vec<Vec<f32>> = (0..queries).map(|_| sample(&mut rng)).collect();
    println!("{n} clustered {dim}-d unit vectors, {queries} queries, recall@10 against f32");
    println!(
        "{:<6} {:>10} {:>12} {:>16}",
        "enc", "recall@10", "bytes/vec", "max |score diff|"
    );
    for enc in [Encoding::F32, Encoding::F16, Encoding::Int8] {
        let mut decoded = Vec::with_capacity(data.len());
        let mut bytes = 0;
        for row in data.chunks(dim) {
            let blob = enc.encode(row);
            bytes = blob.len();
            enc.decode_into(&blob, dim, &mut decoded)
                .expect("round trip");
        }
        let (mut hits, mut max_diff) = (0usize, 0f32);
        for q in &qs {
            let exact = seer_ann::exact_top_k(&data, dim, q, 10);
            let approx = seer_ann::exact_top_k(&decoded, dim, q, 10);
            hits += approx
                .iter()
                .filter(|(r, _)| exact.iter().any(|(e, _)| e == r))
                .count();
            for ((_, a), (_, b)) in exact.iter().zip(&approx) {
                max_diff = max_diff.max((a - b).abs());
            }
        }
        println!(
            "{:<6} {:>10.4} {:>12} {:>16.2e}",
            format!("{enc:?}"),
            hits as f64 / (10 * queries) as f64,
            bytes,
            max_diff
        );
    }
}

fn unit(v: Vec<f32>) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.into_iter().map(|x| x / n).collect()
}
