//! Helpers shared by the kernel tests.

/// Deterministic values in [-1, 1) from an LCG.
pub fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// `softmax(scores)` in f64, straight from the definition (the max subtracted
/// first), for the attention references.
#[allow(dead_code)] // not every test binary checks attention
pub fn softmax(scores: &[f64]) -> Vec<f64> {
    let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
    let total: f64 = e.iter().sum();
    e.iter().map(|x| x / total).collect()
}

/// Caps the kernels at `ceiling` for this test binary (`Isa::limit` is
/// process-wide, so each capped set of checks is its own binary).
#[allow(dead_code)] // the gemm tests pick kernels per call instead
pub fn cap(ceiling: Option<seer_kernels::Isa>) {
    if let Some(isa) = ceiling {
        seer_kernels::Isa::limit(isa);
    }
}
