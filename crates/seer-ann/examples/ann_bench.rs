//! Benchmark of the seer-ann HNSW index against exact search on synthetic embeddings.
#![recursion_limit = "256"]
//!
//! cargo run --release -p seer-ann --example ann_bench -- --n 1000000 --dim 512 --queries 1000 [--json]
//!
//! Options: --datasets clustered,uniform  --m 16  --ef-construction 100  --ef-search 96
//!          --ef-sweep 32,64,96,128,256  --clusters 4096  --chunk 100000  --churn 10000
//!          --out DIR (index files; default $TMPDIR/seer-ann-bench)  --seed 1  --json
//!          --dump DIR  --dump-only  --sweep-only  --index-file PATH
//!
//! `--dump DIR` writes, per data set, `DIR/<name>/`: `base.npy` (n x dim f32, row i
//! has id i), `queries.npy` (queries x dim f32), `gt_ids.npy` (queries x k int64) and
//! `gt_scores.npy` (queries x k f32, exact f32 top-k by dot product, score desc then
//! id asc) and `meta.json`, so another library (`scripts/bench_ann_reference.py`) can
//! be measured on exactly these vectors. The base is written chunk by chunk (`--chunk`
//! rows at a time). `--dump-only` stops after the dump (no index is built).
//! `--sweep-only` stops after the ef sweep (no persistence / churn steps).
//! `--index-file PATH` loads the index from PATH if it holds n x dim items (no build
//! time then), else builds it and saves it there: for search-only comparisons.
//!
//! Data sets (vectors are generated deterministically per row, so they never all
//! have to be in memory at once; RSS is the index's, not the data set's):
//! - clustered ("CLIP-like"): a shared direction + 64 topics + `--clusters` centres
//!   (cos ~0.2 between random centres, ~0.5 within a topic), cluster sizes skewed,
//!   each point = centre + noise whose variance decays over dimensions
//!   (eigenvalues ~ 1/i, ~30 effective dimensions, as real embeddings have a low
//!   intrinsic dimension), cos(point, centre) ~ 0.7..0.9, L2-normalised.
//! - uniform: uniform on the unit sphere: the worst case for any ANN index, every
//!   point is almost equally far from every other.
//!
//! Queries are fresh draws from the same distribution (not from the indexed set).

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rayon::prelude::*;
use seer_ann::{exact_top_k, exact_top_k_batch, Hnsw, HnswParams};

/// The shared splitmix64 stream with the bench's own uniform (never 0).
struct Rng(seer_util::Rng);
impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seer_util::Rng::from_state(splitmix(seed)))
    }
    fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }
    fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    /// Two standard normals (Box-Muller).
    fn gauss2(&mut self) -> (f32, f32) {
        let (u, v) = (self.uniform(), self.uniform());
        let r = (-2.0 * u.ln()).sqrt();
        let (s, c) = (std::f64::consts::TAU * v).sin_cos();
        ((r * c) as f32, (r * s) as f32)
    }
    fn fill_gauss(&mut self, out: &mut [f32]) {
        for pair in out.chunks_mut(2) {
            let (a, b) = self.gauss2();
            pair[0] = a;
            if pair.len() > 1 {
                pair[1] = b;
            }
        }
    }
}

use seer_util::rng::splitmix64 as splitmix;

fn normalize(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= n);
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Clustered,
    Uniform,
}

struct Dataset {
    kind: Kind,
    dim: usize,
    seed: u64,
    centres: Vec<f32>,
    sigma: Vec<f32>,
    spectrum: Vec<f32>,
}

const QUERY_STREAM: u64 = 1 << 62;

impl Dataset {
    fn new(kind: Kind, dim: usize, clusters: usize, seed: u64) -> Self {
        let mut rng = Rng::new(seed ^ 0xC1u64);
        let unit = |rng: &mut Rng| {
            let mut v = vec![0f32; dim];
            rng.fill_gauss(&mut v);
            normalize(&mut v);
            v
        };
        let shared = unit(&mut rng);
        let topics: Vec<Vec<f32>> = (0..64).map(|_| unit(&mut rng)).collect();
        let mut centres = Vec::with_capacity(clusters * dim);
        let mut sigma = Vec::with_capacity(clusters);
        for k in 0..clusters {
            let u = unit(&mut rng);
            let t = &topics[k % topics.len()];
            let mut c: Vec<f32> = (0..dim)
                .map(|i| 0.6 * shared[i] + 0.8 * t[i] + u[i])
                .collect();
            normalize(&mut c);
            centres.extend_from_slice(&c);
            sigma.push(0.5 + 0.5 * rng.uniform() as f32);
        }
        // Noise variance ~ 1/(i+1), scaled so the noise vector has unit expected norm.
        let h: f32 = (0..dim).map(|i| 1.0 / (i as f32 + 1.0)).sum();
        let spectrum = (0..dim)
            .map(|i| (1.0 / ((i as f32 + 1.0) * h)).sqrt())
            .collect();
        Dataset {
            kind,
            dim,
            seed,
            centres,
            sigma,
            spectrum,
        }
    }

    fn row(&self, index: u64, out: &mut [f32]) {
        let mut rng = Rng::new(self.seed ^ splitmix(index));
        rng.fill_gauss(out);
        if self.kind == Kind::Clustered {
            let k = self.sigma.len();
            // Skewed cluster sizes: low clusters are much more popular.
            let c = ((k as f64) * rng.uniform().powf(1.5)) as usize % k;
            let centre = &self.centres[c * self.dim..(c + 1) * self.dim];
            let s = self.sigma[c];
            for ((x, &ci), &sp) in out.iter_mut().zip(centre).zip(&self.spectrum) {
                *x = ci + s * sp * *x;
            }
        }
        normalize(out);
    }

    fn rows(&self, lo: u64, hi: u64) -> Vec<f32> {
        let mut out = vec![0f32; (hi - lo) as usize * self.dim];
        out.par_chunks_mut(self.dim)
            .enumerate()
            .for_each(|(i, r)| self.row(lo + i as u64, r));
        out
    }
}

fn rss() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        s.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn recall(got: &[Vec<u64>], truth: &[Vec<u64>]) -> f64 {
    let mut hit = 0;
    let mut total = 0;
    for (g, t) in got.iter().zip(truth) {
        total += t.len();
        hit += t.iter().filter(|x| g.contains(x)).count();
    }
    hit as f64 / total.max(1) as f64
}

struct Args {
    n: u64,
    dim: usize,
    queries: usize,
    k: usize,
    params: HnswParams,
    sweep: Vec<usize>,
    clusters: usize,
    chunk: u64,
    churn: u64,
    out: PathBuf,
    datasets: Vec<Kind>,
    json: bool,
    seed: u64,
    ceiling_only: bool,
    dump: Option<PathBuf>,
    index_file: Option<PathBuf>,
    dump_only: bool,
    sweep_only: bool,
}

fn parse_args() -> Args {
    let mut a = Args {
        n: 1_000_000,
        dim: 512,
        queries: 1000,
        k: 10,
        params: HnswParams::default(),
        sweep: vec![32, 48, 64, 96, 128, 192, 256, 512],
        clusters: 4096,
        chunk: 100_000,
        churn: 10_000,
        out: std::env::temp_dir().join("seer-ann-bench"),
        datasets: vec![Kind::Clustered, Kind::Uniform],
        json: false,
        seed: 1,
        ceiling_only: false,
        dump: None,
        index_file: None,
        dump_only: false,
        sweep_only: false,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let flag = argv[i].as_str();
        let switch = match flag {
            "--ceiling-only" => Some(&mut a.ceiling_only),
            "--json" => Some(&mut a.json),
            "--dump-only" => Some(&mut a.dump_only),
            "--sweep-only" => Some(&mut a.sweep_only),
            _ => None,
        };
        if let Some(on) = switch {
            *on = true;
            i += 1;
            continue;
        }
        let val = argv
            .get(i + 1)
            .unwrap_or_else(|| panic!("{flag} needs a value"))
            .clone();
        let num = || {
            val.parse::<u64>()
                .unwrap_or_else(|_| panic!("{flag}: not a number: {val}"))
        };
        match flag {
            "--n" => a.n = num(),
            "--dim" => a.dim = num() as usize,
            "--queries" => a.queries = num() as usize,
            "--k" => a.k = num() as usize,
            "--m" => a.params.m = num() as usize,
            "--ef-construction" => a.params.ef_construction = num() as usize,
            "--ef-search" => a.params.ef_search = num() as usize,
            "--ef-sweep" => {
                a.sweep = val
                    .split(',')
                    .map(|s| s.trim().parse().expect("--ef-sweep"))
                    .collect()
            }
            "--clusters" => a.clusters = num() as usize,
            "--chunk" => a.chunk = num().max(1),
            "--churn" => a.churn = num(),
            "--seed" => a.seed = num(),
            "--out" => a.out = PathBuf::from(&val),
            "--dump" => a.dump = Some(PathBuf::from(&val)),
            "--index-file" => a.index_file = Some(PathBuf::from(&val)),
            "--datasets" => {
                a.datasets = val
                    .split(',')
                    .map(|s| match s.trim() {
                        "clustered" => Kind::Clustered,
                        "uniform" => Kind::Uniform,
                        o => panic!("unknown data set {o}"),
                    })
                    .collect()
            }
            o => panic!("unknown option {o}"),
        }
        i += 2;
    }
    if !a.sweep.contains(&a.params.ef_search) {
        a.sweep.push(a.params.ef_search);
    }
    a.sweep.sort_unstable();
    a.sweep.dedup();
    if a.dump_only && a.dump.is_none() {
        panic!("--dump-only needs --dump DIR");
    }
    a
}

/// Exact top-k over rows `0..n` (optionally minus `deleted`, plus extra rows) by
/// regenerating the data chunk by chunk. With `f16`, rows are rounded to f16 first
/// (the best any f16-storing index could do).
fn ground_truth(
    ds: &Dataset,
    a: &Args,
    queries: &[f32],
    rows: std::ops::Range<u64>,
    deleted: &HashSet<u64>,
    f16: bool,
) -> Vec<Vec<u64>> {
    ground_truth_scored(ds, a, queries, rows, deleted, f16)
        .into_iter()
        .map(|b| b.into_iter().map(|x| x.0).collect())
        .collect()
}

/// [`ground_truth`] with the exact scores: `(row, dot)`, best first.
fn ground_truth_scored(
    ds: &Dataset,
    a: &Args,
    queries: &[f32],
    rows: std::ops::Range<u64>,
    deleted: &HashSet<u64>,
    f16: bool,
) -> Vec<Vec<(u64, f32)>> {
    let nq = queries.len() / a.dim;
    let extra = if deleted.is_empty() { 0 } else { 32 };
    let mut best: Vec<Vec<(u64, f32)>> = vec![Vec::new(); nq];
    let mut lo = rows.start;
    while lo < rows.end {
        let hi = (lo + a.chunk).min(rows.end);
        let mut data = ds.rows(lo, hi);
        if f16 {
            data.par_iter_mut()
                .for_each(|x| *x = half::f16::from_f32(*x).to_f32());
        }
        let res = exact_top_k_batch(&data, a.dim, queries, a.k + extra);
        for (b, r) in best.iter_mut().zip(res) {
            b.extend(
                r.into_iter()
                    .map(|(i, s)| (lo + i as u64, s))
                    .filter(|(id, _)| !deleted.contains(id)),
            );
            b.sort_by(|x, y| y.1.total_cmp(&x.1).then(x.0.cmp(&y.0)));
            b.truncate(a.k);
        }
        lo = hi;
    }
    best
}

/// A `.npy` (format 1.0) header for a C-order array of `descr` (e.g. `<f4`).
fn npy_header(descr: &str, shape: &[usize]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    // Magic (6) + version (2) + length (2) + dict + '\n', padded to 64 bytes.
    let unpadded = 10 + dict.len() + 1;
    dict.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    dict.push('\n');
    let mut h = b"\x93NUMPY\x01\x00".to_vec();
    h.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    h.extend_from_slice(dict.as_bytes());
    h
}

/// Write `DIR/<name>/{base,queries,gt_ids,gt_scores}.npy` and `meta.json`.
fn dump(
    dir: &std::path::Path,
    ds: &Dataset,
    a: &Args,
    name: &str,
    queries: &[f32],
    truth: &[Vec<(u64, f32)>],
) -> std::io::Result<()> {
    use std::io::Write;
    let dir = dir.join(name);
    std::fs::create_dir_all(&dir)?;
    let f32_bytes = |v: &[f32]| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
    let create = |file: &str| -> std::io::Result<std::io::BufWriter<std::fs::File>> {
        Ok(std::io::BufWriter::with_capacity(
            1 << 20,
            std::fs::File::create(dir.join(file))?,
        ))
    };

    let t = Instant::now();
    let mut w = create("base.npy")?;
    w.write_all(&npy_header("<f4", &[a.n as usize, a.dim]))?;
    let mut lo = 0;
    while lo < a.n {
        let hi = (lo + a.chunk).min(a.n);
        w.write_all(&f32_bytes(&ds.rows(lo, hi)))?;
        lo = hi;
    }
    w.into_inner().map_err(|e| e.into_error())?.sync_all()?;

    let nq = queries.len() / a.dim;
    let mut w = create("queries.npy")?;
    w.write_all(&npy_header("<f4", &[nq, a.dim]))?;
    w.write_all(&f32_bytes(queries))?;
    w.flush()?;

    // Every query has k results unless n < k; pad with -1 / NaN then.
    let mut w = create("gt_ids.npy")?;
    w.write_all(&npy_header("<i8", &[nq, a.k]))?;
    for t in truth {
        for j in 0..a.k {
            let id = t.get(j).map_or(-1i64, |x| x.0 as i64);
            w.write_all(&id.to_le_bytes())?;
        }
    }
    w.flush()?;
    let mut w = create("gt_scores.npy")?;
    w.write_all(&npy_header("<f4", &[nq, a.k]))?;
    for t in truth {
        for j in 0..a.k {
            let s = t.get(j).map_or(f32::NAN, |x| x.1);
            w.write_all(&s.to_le_bytes())?;
        }
    }
    w.flush()?;

    let meta = serde_json::json!({
        "dataset": name, "n": a.n, "dim": a.dim, "queries": nq, "k": a.k,
        "seed": a.seed, "clusters": a.clusters,
        "generator": "crates/seer-ann/examples/ann_bench.rs",
        "ground_truth": "exact f32 dot product over all n rows; score desc, then id asc",
    });
    std::fs::write(dir.join("meta.json"), format!("{meta:#}\n"))?;
    eprintln!(
        "[{name}] dumped to {} in {:.1} s",
        dir.display(),
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

struct SweepRow {
    /// Queries whose own recall is below 0.5 (lost in the wrong region) .
    bad: usize,
    ef: usize,
    recall: f64,
    p50: f64,
    p99: f64,
    mean: f64,
    /// Mean stored vectors compared per query (load-independent search work).
    distances: f64,
}

fn sweep(h: &Hnsw, a: &Args, queries: &[f32], truth: &[Vec<u64>], efs: &[usize]) -> Vec<SweepRow> {
    // One untimed pass first, so the first timed ef does not pay for cold caches.
    if let Some(&ef) = efs.first() {
        for q in queries.chunks(a.dim) {
            std::hint::black_box(h.search(q, a.k, Some(ef)));
        }
    }
    efs.iter()
        .map(|&ef| {
            let mut lat = Vec::with_capacity(a.queries);
            let mut got = Vec::with_capacity(a.queries);
            let mut distances = 0u64;
            for q in queries.chunks(a.dim) {
                let t = Instant::now();
                let (r, nd) = h.search_counted(q, a.k, Some(ef));
                lat.push(ms(t.elapsed()));
                distances += nd;
                got.push(r.into_iter().map(|x| x.0).collect::<Vec<u64>>());
            }
            let distances = distances as f64 / lat.len().max(1) as f64;
            let mean = lat.iter().sum::<f64>() / lat.len().max(1) as f64;
            lat.sort_by(f64::total_cmp);
            let bad = got
                .iter()
                .zip(truth)
                .filter(|(g, t)| recall(&[g.to_vec()], &[t.to_vec()]) < 0.5)
                .count();
            SweepRow {
                bad,
                ef,
                recall: recall(&got, truth),
                p50: pct(&lat, 0.5),
                p99: pct(&lat, 0.99),
                mean,
                distances,
            }
        })
        .collect()
}

fn run_dataset(kind: Kind, a: &Args) -> serde_json::Value {
    let name = if kind == Kind::Clustered {
        "clustered"
    } else {
        "uniform"
    };
    let ds = Dataset::new(kind, a.dim, a.clusters, a.seed ^ (kind as u64) << 40);
    let path = a.out.join(format!("{name}-{}x{}.hnsw", a.n, a.dim));
    std::fs::create_dir_all(&a.out).expect("create --out dir");
    let _ = std::fs::remove_file(seer_ann::log_path(&path));
    eprintln!(
        "[{name}] building {} x {} with {:?} on {} threads",
        a.n,
        a.dim,
        a.params,
        rayon::current_num_threads()
    );

    let queries: Vec<f32> = {
        let mut q = vec![0f32; a.queries * a.dim];
        q.par_chunks_mut(a.dim)
            .enumerate()
            .for_each(|(i, r)| ds.row(QUERY_STREAM + i as u64, r));
        q
    };
    if a.ceiling_only {
        let none = HashSet::new();
        let truth = ground_truth(&ds, a, &queries, 0..a.n, &none, false);
        let truth16 = ground_truth(&ds, a, &queries, 0..a.n, &none, true);
        eprintln!(
            "[{name}] f16 storage recall ceiling: {:.4}",
            recall(&truth16, &truth)
        );
        return serde_json::json!({"dataset": name, "f16_recall_ceiling": recall(&truth16, &truth)});
    }

    // Exact ground truth (before the build, so a dump needs no index).
    let t = Instant::now();
    let none = HashSet::new();
    let truth_scored = ground_truth_scored(&ds, a, &queries, 0..a.n, &none, false);
    let truth: Vec<Vec<u64>> = truth_scored
        .iter()
        .map(|b| b.iter().map(|x| x.0).collect())
        .collect();
    let truth_time = t.elapsed();
    eprintln!(
        "[{name}] exact ground truth for {} queries: {:.1} s",
        a.queries,
        truth_time.as_secs_f64()
    );
    if let Some(dir) = &a.dump {
        if let Err(e) = dump(dir, &ds, a, name, &queries, &truth_scored) {
            eprintln!("[{name}] --dump {}: {e}", dir.display());
            std::process::exit(2);
        }
        if a.dump_only {
            return serde_json::json!({"dataset": name, "dumped_to": dir.join(name)});
        }
    }

    // Build (or load the index a previous run saved with --index-file).
    let mut h = Hnsw::new(a.dim, a.params);
    let mut build = Duration::ZERO;
    let mut lo = 0;
    if let Some(p) = a.index_file.as_ref().filter(|p| p.exists()) {
        match Hnsw::load(p) {
            Ok(loaded) if loaded.len() as u64 == a.n && loaded.dim() == a.dim => {
                eprintln!("[{name}] loaded {} (build time not measured)", p.display());
                h = loaded;
                h.set_ef_search(a.params.ef_search);
                lo = a.n;
            }
            Ok(_) => eprintln!("[{name}] {} has another n or dim: rebuilding", p.display()),
            Err(e) => eprintln!("[{name}] {}: {e}: rebuilding", p.display()),
        }
    }
    let loaded = lo == a.n;
    while lo < a.n {
        let hi = (lo + a.chunk).min(a.n);
        let data = ds.rows(lo, hi);
        let items: Vec<(u64, &[f32])> = data
            .chunks(a.dim)
            .enumerate()
            .map(|(i, v)| (lo + i as u64, v))
            .collect();
        let t = Instant::now();
        h.insert_batch(&items).unwrap();
        build += t.elapsed();
        eprintln!(
            "[{name}]   {hi} inserted, build {:.1} s ({:.0} items/s)",
            build.as_secs_f64(),
            hi as f64 / build.as_secs_f64()
        );
        lo = hi;
    }
    if let (Some(p), false) = (&a.index_file, loaded) {
        if let Err(e) = h.save(p) {
            eprintln!("[{name}] --index-file {}: {e}", p.display());
        }
    }
    let (rss_build, hwm_build) = rss();
    eprintln!(
        "[{name}] RSS after build {:.0} MiB (peak so far {:.0} MiB); index estimate {:.0} MiB",
        mib(rss_build),
        mib(hwm_build),
        mib(h.memory_bytes() as u64)
    );

    let truth16 = ground_truth(&ds, a, &queries, 0..a.n, &none, true);
    let f16_ceiling = recall(&truth16, &truth);
    eprintln!("[{name}] f16 storage recall ceiling: {f16_ceiling:.4}");

    // Exact single-query latency on one chunk (for the exact/approximate threshold).
    let exact_chunk = {
        let rows = a.chunk.min(a.n);
        let data = ds.rows(0, rows);
        let mut lat: Vec<f64> = queries
            .chunks(a.dim)
            .take(30)
            .map(|q| {
                let t = Instant::now();
                std::hint::black_box(exact_top_k(&data, a.dim, q, a.k));
                ms(t.elapsed())
            })
            .collect();
        lat.sort_by(f64::total_cmp);
        (rows, pct(&lat, 0.5))
    };

    // Uniform data needs far larger ef for any recall: show how far.
    let mut efs = a.sweep.clone();
    if kind == Kind::Uniform {
        efs.extend([1024, 2048, 4096]);
        efs.sort_unstable();
        efs.dedup();
    }
    let rows = sweep(&h, a, &queries, &truth, &efs);
    let default_row = rows.iter().find(|r| r.ef == a.params.ef_search).unwrap();
    eprintln!("[{name}] ef sweep:");
    for r in &rows {
        eprintln!(
            "[{name}]   ef {:4}  recall@{} {:.4}  p50 {:.3} ms  p99 {:.3} ms  mean {:.3} ms  distances/query {:.0}  queries with recall<0.5: {}",
            r.ef, a.k, r.recall, r.p50, r.p99, r.mean, r.distances, r.bad
        );
    }

    let sweep_json: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| serde_json::json!({"ef": r.ef, "recall": r.recall, "p50_ms": r.p50, "p99_ms": r.p99, "mean_ms": r.mean, "distances": r.distances, "queries_below_half_recall": r.bad}))
        .collect();
    // What every report holds; the full run adds persistence and churn.
    let mut report = serde_json::json!({
        "dataset": name,
        "n": a.n, "dim": a.dim, "queries": a.queries, "k": a.k,
        "threads": rayon::current_num_threads(),
        "kernel": seer_ann::simd::kernel_name(),
        "params": a.params,
        "build_s": if loaded { f64::NAN } else { build.as_secs_f64() },
        "index_loaded": loaded,
        "build_items_per_s": a.n as f64 / build.as_secs_f64(),
        "recall_at_k": default_row.recall,
        "p50_ms": default_row.p50,
        "p99_ms": default_row.p99,
        "mean_ms": default_row.mean,
        "f16_recall_ceiling": f16_ceiling,
        "ef_sweep": sweep_json,
        "rss_after_build_mib": mib(rss_build),
        "exact_truth_s": truth_time.as_secs_f64(),
        "exact_single_query_ms": {"rows": exact_chunk.0, "p50_ms": exact_chunk.1},
    });
    let mut add = |more: serde_json::Value| {
        if let (Some(r), serde_json::Value::Object(m)) = (report.as_object_mut(), more) {
            r.extend(m);
        }
    };
    if a.sweep_only {
        let (rss_now, hwm) = rss();
        add(serde_json::json!({
            "index_memory_estimate_mib": mib(h.memory_bytes() as u64),
            "rss_now_mib": mib(rss_now),
            "vm_hwm_mib": mib(hwm),
        }));
        return report;
    }

    // Persistence: full save, load.
    let before: Vec<Vec<(u64, f32)>> = queries
        .chunks(a.dim)
        .take(100)
        .map(|q| h.search(q, a.k, None))
        .collect();
    let t = Instant::now();
    let kind1 = h.save_with_kind(&path).unwrap();
    let save_full = t.elapsed();
    let file_size = std::fs::metadata(&path).unwrap().len();
    let mem_est = h.memory_bytes();
    drop(h);
    let (rss_dropped, _) = rss();
    let t = Instant::now();
    let mut h = Hnsw::load(&path).unwrap();
    let load_full = t.elapsed();
    let (rss_loaded, _) = rss();
    eprintln!(
        "[{name}] RSS after drop + load {:.0} MiB (before load {:.0} MiB)",
        mib(rss_loaded),
        mib(rss_dropped)
    );
    let after: Vec<Vec<(u64, f32)>> = queries
        .chunks(a.dim)
        .take(100)
        .map(|q| h.search(q, a.k, None))
        .collect();
    let identical = before == after;
    eprintln!(
        "[{name}] save ({kind1:?}) {:.2} s, {:.1} MiB; load {:.2} s; identical results after load: {identical}",
        save_full.as_secs_f64(),
        mib(file_size),
        load_full.as_secs_f64()
    );

    // Churn: insert `churn` new items, delete `churn` existing ones, save incrementally.
    let churn = a.churn.min(a.n);
    let new_rows = ds.rows(a.n, a.n + churn);
    let new_items: Vec<(u64, &[f32])> = new_rows
        .chunks(a.dim)
        .enumerate()
        .map(|(i, v)| (a.n + i as u64, v))
        .collect();
    let mut deleted = HashSet::new();
    let mut rng = Rng::new(a.seed ^ 0xDE1);
    while (deleted.len() as u64) < churn {
        deleted.insert(rng.next_u64() % a.n);
    }
    let t = Instant::now();
    h.insert_batch(&new_items).unwrap();
    let insert_time = t.elapsed();
    let t = Instant::now();
    for &id in &deleted {
        assert!(h.remove(id));
    }
    let delete_time = t.elapsed();
    let t = Instant::now();
    let kind2 = h.save_with_kind(&path).unwrap();
    let save_delta = t.elapsed();
    let log_size = std::fs::metadata(seer_ann::log_path(&path))
        .map(|m| m.len())
        .unwrap_or(0);
    let before: Vec<Vec<(u64, f32)>> = queries
        .chunks(a.dim)
        .take(100)
        .map(|q| h.search(q, a.k, None))
        .collect();
    let t = Instant::now();
    let h2 = Hnsw::load(&path).unwrap();
    let load_delta = t.elapsed();
    let after: Vec<Vec<(u64, f32)>> = queries
        .chunks(a.dim)
        .take(100)
        .map(|q| h2.search(q, a.k, None))
        .collect();
    let identical_delta = before == after;
    drop(h2);
    eprintln!(
        "[{name}] churn: insert {churn} {:.2} s, delete {churn} {:.3} s, save ({kind2:?}) {:.2} s, log {:.1} MiB, load base+log {:.2} s, identical: {identical_delta}",
        insert_time.as_secs_f64(),
        delete_time.as_secs_f64(),
        save_delta.as_secs_f64(),
        mib(log_size),
        load_delta.as_secs_f64()
    );

    // Recall after churn (tombstones), then after consolidation.
    let truth2 = {
        let mut t1 = ground_truth(&ds, a, &queries, 0..a.n + churn, &deleted, false);
        t1.iter_mut().for_each(|t| t.truncate(a.k));
        t1
    };
    let churn_rows = sweep(&h, a, &queries, &truth2, &[a.params.ef_search]);
    let returned_deleted = queries
        .chunks(a.dim)
        .flat_map(|q| h.search(q, a.k, None))
        .filter(|(id, _)| deleted.contains(id))
        .count();
    let t = Instant::now();
    h.consolidate();
    let consolidate_time = t.elapsed();
    let cons_rows = sweep(&h, a, &queries, &truth2, &[a.params.ef_search]);
    let t = Instant::now();
    let kind3 = h.save_with_kind(&path).unwrap();
    let save_cons = t.elapsed();
    eprintln!(
        "[{name}] after churn: recall {:.4} (deleted ids returned: {returned_deleted}); consolidate {:.2} s -> recall {:.4}; save ({kind3:?}) {:.2} s",
        churn_rows[0].recall,
        consolidate_time.as_secs_f64(),
        cons_rows[0].recall,
        save_cons.as_secs_f64()
    );
    let (_, hwm) = rss();

    add(serde_json::json!({
        "rss_after_load_mib": mib(rss_loaded),
        "rss_before_load_mib": mib(rss_dropped),
        "index_memory_estimate_mib": mib(mem_est as u64),
        "vm_hwm_mib": mib(hwm),
        "file_mib": mib(file_size),
        "save_full_s": save_full.as_secs_f64(),
        "load_s": load_full.as_secs_f64(),
        "identical_after_load": identical,
        "churn": {
            "items": churn,
            "insert_s": insert_time.as_secs_f64(),
            "delete_s": delete_time.as_secs_f64(),
            "save_kind": format!("{kind2:?}"),
            "save_s": save_delta.as_secs_f64(),
            "log_mib": mib(log_size),
            "load_base_plus_log_s": load_delta.as_secs_f64(),
            "identical_after_load": identical_delta,
            "recall_with_tombstones": churn_rows[0].recall,
            "p50_ms_with_tombstones": churn_rows[0].p50,
            "deleted_ids_returned": returned_deleted,
            "consolidate_s": consolidate_time.as_secs_f64(),
            "recall_after_consolidate": cons_rows[0].recall,
            "save_after_consolidate_kind": format!("{kind3:?}"),
            "save_after_consolidate_s": save_cons.as_secs_f64(),
        }
    }));
    report
}

fn main() {
    let a = parse_args();
    let results: Vec<serde_json::Value> = a.datasets.iter().map(|&k| run_dataset(k, &a)).collect();
    if a.dump_only {
        println!("{}", serde_json::json!({ "results": results }));
        return;
    }
    let f =
        |v: &serde_json::Value, p: &str| v.pointer(p).and_then(|x| x.as_f64()).unwrap_or(f64::NAN);
    println!(
        "\nseer-ann HNSW benchmark: n={} dim={} queries={} k={} params={:?} threads={} kernel={}",
        a.n,
        a.dim,
        a.queries,
        a.k,
        a.params,
        rayon::current_num_threads(),
        seer_ann::simd::kernel_name()
    );
    type Column<'a> = (&'a str, Box<dyn Fn(&serde_json::Value) -> String>);
    let cols: Vec<Column> = vec![
        (
            "recall@k (ef_search)",
            Box::new(move |v| format!("{:.4}", f(v, "/recall_at_k"))),
        ),
        (
            "f16 storage recall ceiling",
            Box::new(move |v| format!("{:.4}", f(v, "/f16_recall_ceiling"))),
        ),
        (
            "query p50 / p99 (ms)",
            Box::new(move |v| format!("{:.2} / {:.2}", f(v, "/p50_ms"), f(v, "/p99_ms"))),
        ),
        (
            "build time (s)",
            Box::new(move |v| format!("{:.0}", f(v, "/build_s"))),
        ),
        (
            "RSS after build / after load (MiB)",
            Box::new(move |v| {
                format!(
                    "{:.0} / {:.0}",
                    f(v, "/rss_after_build_mib"),
                    f(v, "/rss_after_load_mib")
                )
            }),
        ),
        (
            "peak RSS, whole run (MiB)",
            Box::new(move |v| format!("{:.0}", f(v, "/vm_hwm_mib"))),
        ),
        (
            "index file (MiB)",
            Box::new(move |v| format!("{:.0}", f(v, "/file_mib"))),
        ),
        (
            "full save / load (s)",
            Box::new(move |v| format!("{:.2} / {:.2}", f(v, "/save_full_s"), f(v, "/load_s"))),
        ),
        (
            "+churn insert / delete (s)",
            Box::new(move |v| {
                format!(
                    "{:.2} / {:.3}",
                    f(v, "/churn/insert_s"),
                    f(v, "/churn/delete_s")
                )
            }),
        ),
        (
            "churn re-save (s) / log (MiB)",
            Box::new(move |v| {
                format!(
                    "{:.2} / {:.1}",
                    f(v, "/churn/save_s"),
                    f(v, "/churn/log_mib")
                )
            }),
        ),
        (
            "load base+log (s)",
            Box::new(move |v| format!("{:.2}", f(v, "/churn/load_base_plus_log_s"))),
        ),
        (
            "recall after churn / consolidate",
            Box::new(move |v| {
                format!(
                    "{:.4} / {:.4}",
                    f(v, "/churn/recall_with_tombstones"),
                    f(v, "/churn/recall_after_consolidate")
                )
            }),
        ),
        (
            "consolidate (s)",
            Box::new(move |v| format!("{:.2}", f(v, "/churn/consolidate_s"))),
        ),
        (
            "exact query p50 per chunk (ms)",
            Box::new(move |v| {
                format!(
                    "{:.2} @{}",
                    f(v, "/exact_single_query_ms/p50_ms"),
                    f(v, "/exact_single_query_ms/rows")
                )
            }),
        ),
    ];
    print!("{:<36}", "");
    for r in &results {
        print!("{:>22}", r["dataset"].as_str().unwrap_or("?"));
    }
    println!();
    for (label, fmt) in &cols {
        print!("{label:<36}");
        for r in &results {
            print!("{:>22}", fmt(r));
        }
        println!();
    }
    for r in &results {
        println!("\n{} ef sweep:", r["dataset"].as_str().unwrap_or("?"));
        for s in r["ef_sweep"].as_array().into_iter().flatten() {
            println!(
                "  ef {:>5}  recall {:.4}  p50 {:>7.3} ms  p99 {:>7.3} ms",
                s["ef"].as_u64().unwrap_or(0),
                s["recall"].as_f64().unwrap_or(0.0),
                s["p50_ms"].as_f64().unwrap_or(0.0),
                s["p99_ms"].as_f64().unwrap_or(0.0)
            );
        }
    }
    if a.json {
        println!("{}", serde_json::json!({ "results": results }));
    }
}
