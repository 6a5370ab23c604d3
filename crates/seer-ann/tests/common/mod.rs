#![allow(dead_code)]
//! Small deterministic data generators for the tests.

/// The shared splitmix64 stream, with the tests' own uniform (centred in its
/// bucket, never 0) so the generated data stays what the tests were tuned on.
pub struct Rng(seer_util::Rng);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seer_util::Rng::from_state(seed ^ 0x1234_5678_9ABC_DEF0))
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }
    pub fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    pub fn gauss(&mut self) -> f32 {
        let (u, v) = (self.uniform(), self.uniform());
        ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

pub fn normalize(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= n);
}

/// `n` unit vectors around `clusters` random centres (row-major). The centres depend
/// only on (`dim`, `clusters`), so calls with different seeds draw from the same
/// mixture (use a different seed for queries than for the indexed set).
pub fn clustered(n: usize, dim: usize, clusters: usize, noise: f32, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(0xC3A7_0000 ^ (dim as u64) << 32 ^ clusters as u64);
    let mut centres = vec![0f32; clusters * dim];
    for c in centres.chunks_mut(dim) {
        c.iter_mut().for_each(|x| *x = rng.gauss());
        normalize(c);
    }
    let mut rng = Rng::new(seed);
    let mut out = vec![0f32; n * dim];
    let scale = noise / (dim as f32).sqrt();
    for v in out.chunks_mut(dim) {
        let c = &centres[rng.below(clusters) * dim..][..dim];
        for (x, &cx) in v.iter_mut().zip(c) {
            *x = cx + scale * rng.gauss();
        }
        normalize(v);
    }
    out
}

pub fn uniform_sphere(n: usize, dim: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    let mut out: Vec<f32> = (0..n * dim).map(|_| rng.gauss()).collect();
    out.chunks_mut(dim).for_each(normalize);
    out
}

/// Mean fraction of `truth` ids found in `got` (per query, top-k).
pub fn recall(got: &[Vec<u64>], truth: &[Vec<u64>]) -> f64 {
    let mut hit = 0usize;
    let mut total = 0usize;
    for (g, t) in got.iter().zip(truth) {
        total += t.len();
        hit += t.iter().filter(|id| g.contains(id)).count();
    }
    if total == 0 {
        1.0
    } else {
        hit as f64 / total as f64
    }
}
