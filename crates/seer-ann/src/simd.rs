//! Dot-product kernels. On x86-64 with AVX2+FMA(+F16C) detected at run time we use
//! hand-written `std::arch` kernels; everywhere else a portable version with
//! independent lane accumulators that LLVM vectorises for the baseline target.
//!
//! Vectors held by the HNSW index are stored as IEEE half floats (raw `u16` bits):
//! half the memory traffic of f32 during graph walks, with a dot-product error
//! (~1e-4 for unit vectors) far below the gaps that ranking depends on.

use std::sync::OnceLock;

type DotF32 = fn(&[f32], &[f32]) -> f32;
type DotF32F16 = fn(&[f32], &[u16]) -> f32;
type DotF16F16 = fn(&[u16], &[u16]) -> f32;
type Dot4F32 = fn(&[f32], [&[f32]; 4]) -> [f32; 4];

struct Kernels {
    dot_f32: DotF32,
    dot_f32_f16: DotF32F16,
    dot_f16_f16: DotF16F16,
    dot4_f32: Dot4F32,
    name: &'static str,
}

static PORTABLE_ONLY: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Uses the portable kernels for the rest of the process (the CLI's
/// `$SEER_ANN_NO_SIMD`); takes effect only before the first dot product.
pub fn force_portable() {
    PORTABLE_ONLY.store(true, std::sync::atomic::Ordering::Relaxed);
}

fn kernels() -> &'static Kernels {
    static K: OnceLock<Kernels> = OnceLock::new();
    K.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            if !PORTABLE_ONLY.load(std::sync::atomic::Ordering::Relaxed)
                && is_x86_feature_detected!("avx2")
                && is_x86_feature_detected!("fma")
                && is_x86_feature_detected!("f16c")
            {
                return Kernels {
                    dot_f32: x86::dot_f32,
                    dot_f32_f16: x86::dot_f32_f16,
                    dot_f16_f16: x86::dot_f16_f16,
                    dot4_f32: x86::dot4_f32,
                    name: "avx2+fma+f16c",
                };
            }
        }
        Kernels {
            dot_f32: portable::dot_f32,
            dot_f32_f16: portable::dot_f32_f16,
            dot_f16_f16: portable::dot_f16_f16,
            dot4_f32: portable::dot4_f32,
            name: "portable",
        }
    })
}

/// Name of the kernel set in use ("avx2+fma+f16c" or "portable").
pub fn kernel_name() -> &'static str {
    kernels().name
}

/// Dot product of two f32 slices of equal length.
#[inline]
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    (kernels().dot_f32)(a, b)
}

/// Dot products of one query against four rows (amortises query loads).
#[inline]
pub fn dot4_f32(q: &[f32], rows: [&[f32]; 4]) -> [f32; 4] {
    (kernels().dot4_f32)(q, rows)
}

#[inline]
pub(crate) fn dot_f32_f16(a: &[f32], b: &[u16]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    (kernels().dot_f32_f16)(a, b)
}

#[inline]
pub(crate) fn dot_f16_f16(a: &[u16], b: &[u16]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    (kernels().dot_f16_f16)(a, b)
}

#[inline]
pub(crate) fn f32_to_f16(x: f32) -> u16 {
    half::f16::from_f32(x).to_bits()
}

#[inline]
pub(crate) fn f16_to_f32(x: u16) -> f32 {
    half::f16::from_bits(x).to_f32()
}

/// Hint the CPU to start fetching the first cache lines of `data`.
#[inline(always)]
pub(crate) fn prefetch<T>(data: &[T]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let p = data.as_ptr() as *const i8;
        let bytes = std::mem::size_of_val(data);
        // SAFETY: prefetch never faults, even on invalid addresses; SSE is baseline on x86-64.
        unsafe {
            let mut off = 0;
            while off < bytes {
                _mm_prefetch(p.wrapping_add(off), _MM_HINT_T0);
                off += 64;
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = data;
}

mod portable {
    use super::f16_to_f32;

    const LANES: usize = 16;

    #[inline]
    fn hsum(acc: [f32; LANES]) -> f32 {
        acc.iter().sum()
    }

    pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (a, b) = (&a[..n], &b[..n]);
        let mut acc = [0f32; LANES];
        let mut ca = a.chunks_exact(LANES);
        let mut cb = b.chunks_exact(LANES);
        for (x, y) in (&mut ca).zip(&mut cb) {
            for i in 0..LANES {
                acc[i] += x[i] * y[i];
            }
        }
        let tail: f32 = ca
            .remainder()
            .iter()
            .zip(cb.remainder())
            .map(|(x, y)| x * y)
            .sum();
        hsum(acc) + tail
    }

    pub fn dot4_f32(q: &[f32], rows: [&[f32]; 4]) -> [f32; 4] {
        rows.map(|r| dot_f32(q, r))
    }

    pub fn dot_f32_f16(a: &[f32], b: &[u16]) -> f32 {
        let mut acc = [0f32; LANES];
        let mut ca = a.chunks_exact(LANES);
        let mut cb = b.chunks_exact(LANES);
        for (x, y) in (&mut ca).zip(&mut cb) {
            for i in 0..LANES {
                acc[i] += x[i] * f16_to_f32(y[i]);
            }
        }
        let tail: f32 = ca
            .remainder()
            .iter()
            .zip(cb.remainder())
            .map(|(x, y)| x * f16_to_f32(*y))
            .sum();
        hsum(acc) + tail
    }

    pub fn dot_f16_f16(a: &[u16], b: &[u16]) -> f32 {
        let mut acc = [0f32; LANES];
        let mut ca = a.chunks_exact(LANES);
        let mut cb = b.chunks_exact(LANES);
        for (x, y) in (&mut ca).zip(&mut cb) {
            for i in 0..LANES {
                acc[i] += f16_to_f32(x[i]) * f16_to_f32(y[i]);
            }
        }
        let tail: f32 = ca
            .remainder()
            .iter()
            .zip(cb.remainder())
            .map(|(x, y)| f16_to_f32(*x) * f16_to_f32(*y))
            .sum();
        hsum(acc) + tail
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! Safe wrappers: only installed in the kernel table after run-time detection
    //! of AVX2, FMA and F16C, which is what makes the inner `unsafe` calls sound.
    use std::arch::x86_64::*;

    pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: features verified before this function is made reachable.
        unsafe { dot_f32_impl(a, b) }
    }
    pub fn dot4_f32(q: &[f32], rows: [&[f32]; 4]) -> [f32; 4] {
        // SAFETY: as above.
        unsafe { dot4_f32_impl(q, rows) }
    }
    pub fn dot_f32_f16(a: &[f32], b: &[u16]) -> f32 {
        // SAFETY: as above.
        unsafe { dot_f32_f16_impl(a, b) }
    }
    pub fn dot_f16_f16(a: &[u16], b: &[u16]) -> f32 {
        // SAFETY: as above.
        unsafe { dot_f16_f16_impl(a, b) }
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn hsum256(v: __m256) -> f32 {
        let lo = _mm256_castps256_ps128(v);
        let hi = _mm256_extractf128_ps(v, 1);
        let s = _mm_add_ps(lo, hi);
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }

    /// # Safety
    /// The CPU has the enabled features (the caller checked at detection).
    #[target_feature(enable = "avx2,fma")]
    unsafe fn dot_f32_impl(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: every load reads 8 floats at i (+8, +16, +24) with i + 8 (or 32) <= n, and the
        // scalar tail reads i < n, where n is the shorter slice's length.
        unsafe {
            let n = a.len().min(b.len());
            let (pa, pb) = (a.as_ptr(), b.as_ptr());
            let mut acc0 = _mm256_setzero_ps();
            let mut acc1 = _mm256_setzero_ps();
            let mut acc2 = _mm256_setzero_ps();
            let mut acc3 = _mm256_setzero_ps();
            let mut i = 0;
            while i + 32 <= n {
                acc0 =
                    _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), acc0);
                acc1 = _mm256_fmadd_ps(
                    _mm256_loadu_ps(pa.add(i + 8)),
                    _mm256_loadu_ps(pb.add(i + 8)),
                    acc1,
                );
                acc2 = _mm256_fmadd_ps(
                    _mm256_loadu_ps(pa.add(i + 16)),
                    _mm256_loadu_ps(pb.add(i + 16)),
                    acc2,
                );
                acc3 = _mm256_fmadd_ps(
                    _mm256_loadu_ps(pa.add(i + 24)),
                    _mm256_loadu_ps(pb.add(i + 24)),
                    acc3,
                );
                i += 32;
            }
            while i + 8 <= n {
                acc0 =
                    _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), acc0);
                i += 8;
            }
            let mut s = hsum256(_mm256_add_ps(
                _mm256_add_ps(acc0, acc1),
                _mm256_add_ps(acc2, acc3),
            ));
            while i < n {
                s += *pa.add(i) * *pb.add(i);
                i += 1;
            }
            s
        }
    }

    /// # Safety
    /// The CPU has the enabled features (the caller checked at detection).
    #[target_feature(enable = "avx2,fma")]
    unsafe fn dot4_f32_impl(q: &[f32], rows: [&[f32]; 4]) -> [f32; 4] {
        // SAFETY: every load reads 8 floats at i with i + 8 <= n and the tail reads i < n,
        // where n is the shortest of `q` and the four rows.
        unsafe {
            let n = rows.iter().fold(q.len(), |m, r| m.min(r.len()));
            let pq = q.as_ptr();
            let p = rows.map(|r| r.as_ptr());
            let mut acc = [_mm256_setzero_ps(); 4];
            let mut i = 0;
            while i + 8 <= n {
                let qv = _mm256_loadu_ps(pq.add(i));
                acc[0] = _mm256_fmadd_ps(qv, _mm256_loadu_ps(p[0].add(i)), acc[0]);
                acc[1] = _mm256_fmadd_ps(qv, _mm256_loadu_ps(p[1].add(i)), acc[1]);
                acc[2] = _mm256_fmadd_ps(qv, _mm256_loadu_ps(p[2].add(i)), acc[2]);
                acc[3] = _mm256_fmadd_ps(qv, _mm256_loadu_ps(p[3].add(i)), acc[3]);
                i += 8;
            }
            let mut out = [
                hsum256(acc[0]),
                hsum256(acc[1]),
                hsum256(acc[2]),
                hsum256(acc[3]),
            ];
            while i < n {
                let qv = *pq.add(i);
                for (o, pr) in out.iter_mut().zip(p) {
                    *o += qv * *pr.add(i);
                }
                i += 1;
            }
            out
        }
    }

    /// # Safety
    /// 8 `u16`s at `p` are readable (no alignment needed).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn load_f16(p: *const u16) -> __m256 {
        // SAFETY: the caller's contract: 16 readable bytes at `p`.
        _mm256_cvtph_ps(unsafe { _mm_loadu_si128(p as *const __m128i) })
    }

    /// # Safety
    /// The CPU has the enabled features (the caller checked at detection).
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn dot_f32_f16_impl(a: &[f32], b: &[u16]) -> f32 {
        // SAFETY: every load (f32 or f16) reads 8 values at i (+8, +16, +24) with i + 8 (or
        // 32) <= n, and the tail reads i < n, n being the shorter slice's length.
        unsafe {
            let n = a.len().min(b.len());
            let (pa, pb) = (a.as_ptr(), b.as_ptr());
            let mut acc0 = _mm256_setzero_ps();
            let mut acc1 = _mm256_setzero_ps();
            let mut acc2 = _mm256_setzero_ps();
            let mut acc3 = _mm256_setzero_ps();
            let mut i = 0;
            while i + 32 <= n {
                acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), load_f16(pb.add(i)), acc0);
                acc1 = _mm256_fmadd_ps(
                    _mm256_loadu_ps(pa.add(i + 8)),
                    load_f16(pb.add(i + 8)),
                    acc1,
                );
                acc2 = _mm256_fmadd_ps(
                    _mm256_loadu_ps(pa.add(i + 16)),
                    load_f16(pb.add(i + 16)),
                    acc2,
                );
                acc3 = _mm256_fmadd_ps(
                    _mm256_loadu_ps(pa.add(i + 24)),
                    load_f16(pb.add(i + 24)),
                    acc3,
                );
                i += 32;
            }
            while i + 8 <= n {
                acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), load_f16(pb.add(i)), acc0);
                i += 8;
            }
            let mut s = hsum256(_mm256_add_ps(
                _mm256_add_ps(acc0, acc1),
                _mm256_add_ps(acc2, acc3),
            ));
            while i < n {
                s += *pa.add(i) * super::f16_to_f32(*pb.add(i));
                i += 1;
            }
            s
        }
    }

    /// # Safety
    /// The CPU has the enabled features (the caller checked at detection).
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn dot_f16_f16_impl(a: &[u16], b: &[u16]) -> f32 {
        // SAFETY: every `load_f16` reads 8 values at i (+8) with i + 8 (or 16) <= n, and
        // the tail reads i < n, n being the shorter slice's length.
        unsafe {
            let n = a.len().min(b.len());
            let (pa, pb) = (a.as_ptr(), b.as_ptr());
            let mut acc0 = _mm256_setzero_ps();
            let mut acc1 = _mm256_setzero_ps();
            let mut i = 0;
            while i + 16 <= n {
                acc0 = _mm256_fmadd_ps(load_f16(pa.add(i)), load_f16(pb.add(i)), acc0);
                acc1 = _mm256_fmadd_ps(load_f16(pa.add(i + 8)), load_f16(pb.add(i + 8)), acc1);
                i += 16;
            }
            while i + 8 <= n {
                acc0 = _mm256_fmadd_ps(load_f16(pa.add(i)), load_f16(pb.add(i)), acc0);
                i += 8;
            }
            let mut s = hsum256(_mm256_add_ps(acc0, acc1));
            while i < n {
                s += super::f16_to_f32(*pa.add(i)) * super::f16_to_f32(*pb.add(i));
                i += 1;
            }
            s
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn kernels_match_naive_for_all_lengths() {
        for n in 0..100 {
            let a: Vec<f32> = (0..n).map(|i| ((i * 7 % 13) as f32 - 6.0) / 8.0).collect();
            let b: Vec<f32> = (0..n).map(|i| ((i * 5 % 11) as f32 - 5.0) / 4.0).collect();
            let bh: Vec<u16> = b.iter().map(|&x| f32_to_f16(x)).collect();
            let ah: Vec<u16> = a.iter().map(|&x| f32_to_f16(x)).collect();
            let want = naive(&a, &b);
            // These inputs are exact in f16, so all kernels agree up to summation order.
            assert!((dot_f32(&a, &b) - want).abs() < 1e-4, "n={n}");
            assert!((dot_f32_f16(&a, &bh) - want).abs() < 1e-4, "n={n}");
            assert!((dot_f16_f16(&ah, &bh) - want).abs() < 1e-4, "n={n}");
            assert!((portable::dot_f32(&a, &b) - want).abs() < 1e-4);
            assert!((portable::dot_f32_f16(&a, &bh) - want).abs() < 1e-4);
            assert!((portable::dot_f16_f16(&ah, &bh) - want).abs() < 1e-4);
            let d4 = dot4_f32(&a, [&b, &a, &b, &a]);
            assert!((d4[0] - want).abs() < 1e-4 && (d4[2] - want).abs() < 1e-4);
            assert!((d4[1] - naive(&a, &a)).abs() < 1e-4);
        }
    }
}
