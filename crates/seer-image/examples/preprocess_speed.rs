//! Decode and preprocessing speed over image files, split into the decode and
//! the resize/crop/normalise stages; with THREADS > 1 every thread processes
//! all the files and the aggregate rate is reported (how decoding scales):
//! `cargo run --release -p seer-image --example preprocess_speed [DIR] [N] [THREADS]`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(
        args.next()
            .unwrap_or_else(|| "../shared/data/imagenet-samples/images".into()),
    );
    let n: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(200);
    let threads: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(1);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();
    files.truncate(n);
    let start = Instant::now();
    let stages: Vec<(Duration, Duration, u64)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads.max(1))
            .map(|_| s.spawn(|| run(&files)))
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("worker"))
            .collect()
    });
    let wall = start.elapsed().as_secs_f64();
    let (decode, prep, pixels) = stages[0];
    let per = |d: Duration| d.as_secs_f64() * 1e3 / files.len() as f64;
    println!(
        "{} files, {:.2} Mpixel mean; per thread: decode {:.2} ms/image, resize+crop+normalise {:.2} ms/image; {} threads: {:.0} images/s",
        files.len(),
        pixels as f64 / files.len() as f64 / 1e6,
        per(decode),
        per(prep),
        stages.len(),
        (stages.len() * files.len()) as f64 / wall
    );
}

/// (decode time, preprocessing time, pixels decoded) over `files`.
fn run(files: &[PathBuf]) -> (Duration, Duration, u64) {
    let cfg = seer_image::PreprocessConfig::open_clip(224, None).expect("config");
    let limits = seer_image::DecodeLimits::default();
    let (mut decode, mut prep, mut pixels) = (Duration::ZERO, Duration::ZERO, 0u64);
    for f in files {
        let t = Instant::now();
        let Ok(img) = seer_image::decode_file_full(f, &limits) else {
            continue;
        };
        decode += t.elapsed();
        pixels += img.width() as u64 * img.height() as u64;
        let t = Instant::now();
        std::hint::black_box(seer_image::preprocess_decoded(&img, &cfg));
        prep += t.elapsed();
    }
    (decode, prep, pixels)
}
