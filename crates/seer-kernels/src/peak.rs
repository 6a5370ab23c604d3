//! The machine's measured f32 arithmetic peak, to state how close a benchmark
//! comes to the hardware limit.

/// GFLOP/s of register-only FMA chains on every rayon thread (AVX-512 or AVX2,
/// whichever the kernels use); None on other CPUs.
pub fn f32_gflops() -> Option<f64> {
    use rayon::prelude::*;
    #[cfg(target_arch = "x86_64")]
    {
        let isa = crate::Isa::detected();
        if isa == crate::Isa::Portable {
            return None;
        }
        let threads = rayon::current_num_threads();
        let iters = 5_000_000;
        let lanes = if isa >= crate::Isa::Avx512 { 16 } else { 8 };
        let best = (0..3)
            .map(|_| {
                let t = std::time::Instant::now();
                let s: f32 = (0..threads)
                    .into_par_iter()
                    // SAFETY: `isa` is the detected level, so the CPU has the
                    // features of the chain it picks (AVX-512F, or AVX2 + FMA).
                    .map(|_| unsafe {
                        if isa >= crate::Isa::Avx512 {
                            x86::chains_512(iters)
                        } else {
                            x86::chains_256(iters)
                        }
                    })
                    .sum();
                std::hint::black_box(s);
                t.elapsed().as_secs_f64()
            })
            .fold(f64::INFINITY, f64::min);
        let chains = if isa >= crate::Isa::Avx512 {
            x86::CHAINS_512
        } else {
            x86::CHAINS_256
        };
        Some((threads * iters * chains * lanes * 2) as f64 / best / 1e9)
    }
    #[cfg(not(target_arch = "x86_64"))]
    None
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// Independent accumulators: more than FMA latency × FMA units (4 × 2), and
    /// with the two constants no more than the registers (32 zmm, 16 ymm): 16
    /// ymm chains spilled to memory and read as half the peak (AMD Zen 4).
    pub const CHAINS_512: usize = 16;
    pub const CHAINS_256: usize = 12;

    /// # Safety
    /// The CPU must have AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn chains_512(iters: usize) -> f32 {
        let mut acc = [_mm512_set1_ps(0.0); CHAINS_512];
        let (a, b) = (_mm512_set1_ps(0.999_999), _mm512_set1_ps(1e-7));
        for _ in 0..iters {
            for v in acc.iter_mut() {
                *v = _mm512_fmadd_ps(*v, a, b);
            }
        }
        acc.iter().map(|v| _mm512_reduce_add_ps(*v)).sum()
    }

    /// # Safety
    /// The CPU must have AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn chains_256(iters: usize) -> f32 {
        let mut acc = [_mm256_set1_ps(0.0); CHAINS_256];
        let (a, b) = (_mm256_set1_ps(0.999_999), _mm256_set1_ps(1e-7));
        for _ in 0..iters {
            for v in acc.iter_mut() {
                *v = _mm256_fmadd_ps(*v, a, b);
            }
        }
        let mut out = [0f32; 8];
        acc.iter()
            .map(|v| {
                // SAFETY: `out` is 8 local floats, one ymm register's worth.
                unsafe { _mm256_storeu_ps(out.as_mut_ptr(), *v) };
                out.iter().sum::<f32>()
            })
            .sum()
    }
}
