//! Row kernels written with AVX-512 intrinsics where LLVM's vectorised loops
//! over [`crate::math`] lose on time. The softmax numerators: a row's tail (50
//! keys are three vectors and 2 lanes) became a masked store that later scalar
//! loads could not take from the store buffer, a sixth of the loops' time
//! (perf, AMX Xeon). Here the tail is a masked load and store and the lanes
//! stay in registers.
//!
//! [`exp`] repeats [`crate::math::exp`] instruction for instruction, so the
//! softmax here is bit for bit the loops' one.

#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;

use crate::gemm::Activation;
use crate::math::{
    ERF_DENOMINATOR, ERF_NUMERATOR, EXP_MAX, EXP_MIN, EXP_POLY, LN2_HI, LN2_LO, LOG2E, ROUND_MAGIC,
    SQRT_2_OVER_PI,
};

/// The mask of the first `n` of 16 lanes (all 16 from `n >= 16`).
#[inline(always)]
pub(crate) fn first_lanes(n: usize) -> __mmask16 {
    ((1u32 << n.min(16)) - 1) as u16
}

/// [`crate::math::exp`] on 16 lanes, the same operations in the same order
/// (equal bits; NaN stays NaN).
///
/// # Safety
/// The CPU has AVX-512F (inlined into functions that enable it).
#[inline(always)]
pub(crate) unsafe fn exp(x: __m512) -> __m512 {
    // SAFETY: register-only intrinsics; AVX-512F by the contract.
    unsafe {
        // f32::clamp keeps NaN: `max_ps`/`min_ps` return their second operand
        // when either is NaN.
        let x = _mm512_min_ps(
            _mm512_set1_ps(EXP_MAX),
            _mm512_max_ps(_mm512_set1_ps(EXP_MIN), x),
        );
        let magic = _mm512_set1_ps(ROUND_MAGIC);
        let shifted = _mm512_add_ps(_mm512_mul_ps(x, _mm512_set1_ps(LOG2E)), magic);
        let n = _mm512_sub_ps(shifted, magic);
        let n_int = _mm512_sub_epi32(_mm512_castps_si512(shifted), _mm512_castps_si512(magic));
        let r = _mm512_sub_ps(
            _mm512_sub_ps(x, _mm512_mul_ps(n, _mm512_set1_ps(LN2_HI))),
            _mm512_mul_ps(n, _mm512_set1_ps(LN2_LO)),
        );
        let mut p = _mm512_set1_ps(EXP_POLY[0]);
        for &c in &EXP_POLY[1..] {
            p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
        }
        let y = _mm512_add_ps(
            _mm512_fmadd_ps(_mm512_mul_ps(p, r), r, r),
            _mm512_set1_ps(1.0),
        );
        let scale = _mm512_slli_epi32::<23>(_mm512_add_epi32(n_int, _mm512_set1_epi32(127)));
        _mm512_mul_ps(y, _mm512_castsi512_ps(scale))
    }
}

/// `2^f` on `[-0.5, 0.5]`: a degree-5 fit of the relative error (Lawson's
/// weighted least squares, 2026-12-05), 2.1e-7 at most evaluated in f32.
const EXP2_POLY: [f32; 6] = [
    1.000_000_1,
    0.693_146_94,
    0.240_221_2,
    0.055_507_13,
    0.009_675_541,
    0.001_327_647_1,
];

/// `e^x` within 2.5e-7 relative wherever the result is normal (below about
/// -87 it underflows through the subnormals to zero), in 11 instructions
/// where [`exp`] takes 20: `2^(x·log₂e)` as `n + f`, `n` whole, the
/// fraction `f` from two fused multiply-adds (log₂e in two parts), `2^f` a
/// polynomial and `vscalefps` the `2^n`, which needs no clamp on top and no
/// integer work. Not [`exp`]'s bits: for values rounded to bf16 next (the
/// AMX attention's numerators), where matching the scalar softmax buys
/// nothing. There the attention's share of DINOv2 ViT-S/14's bf16 time went
/// from 22.2% to 19.6% (perf, AMX Xeon, 2026-12-05).
///
/// # Safety
/// The CPU has AVX-512F (inlined into functions that enable it).
#[inline(always)]
pub(crate) unsafe fn exp_by_scalef(x: __m512) -> __m512 {
    const LOG2E_LO: f32 = (std::f64::consts::LOG2_E - LOG2E as f64) as f32;
    // SAFETY: register-only intrinsics; AVX-512F by the contract.
    unsafe {
        // e^-104 is below the smallest subnormal: the clamp keeps `x·log₂e`
        // (and -∞) from rounding `n` past where `f` stays exact. NaN stays
        // NaN (`max_ps` returns its second operand when either is NaN).
        let x = _mm512_max_ps(_mm512_set1_ps(-104.0), x);
        let magic = _mm512_set1_ps(ROUND_MAGIC);
        let n = _mm512_sub_ps(_mm512_fmadd_ps(x, _mm512_set1_ps(LOG2E), magic), magic);
        let f = _mm512_fmadd_ps(
            x,
            _mm512_set1_ps(LOG2E_LO),
            _mm512_fmsub_ps(x, _mm512_set1_ps(LOG2E), n),
        );
        let mut p = _mm512_set1_ps(EXP2_POLY[5]);
        for &c in EXP2_POLY[..5].iter().rev() {
            p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(c));
        }
        _mm512_scalef_ps(p, n)
    }
}

/// `1 / d` to about an ulp: `vrcp14ps`'s 14 bits and one Newton step
/// (`r + r·(1 − d·r)`), for `d` normal and finite.
///
/// # Safety
/// The CPU has AVX-512F (inlined into functions that enable it).
#[inline(always)]
unsafe fn reciprocal(d: __m512) -> __m512 {
    // SAFETY: register-only intrinsics; AVX-512F by the contract.
    unsafe {
        let r = _mm512_rcp14_ps(d);
        _mm512_fmadd_ps(r, _mm512_fnmadd_ps(d, r, _mm512_set1_ps(1.0)), r)
    }
}

/// `x / (1 + e^z)`: `x·σ(−z)`. `z` is clamped to 80 first, so `1 + e^z`
/// stays normal and finite for [`reciprocal`] (there `x·σ(−z)` is below
/// `1e-34·|x|` either way).
///
/// # Safety
/// The CPU has AVX-512F (inlined into functions that enable it).
#[inline(always)]
unsafe fn over_one_plus_exp(x: __m512, z: __m512) -> __m512 {
    // SAFETY: register-only intrinsics; AVX-512F by the contract.
    unsafe {
        let e = exp_by_scalef(_mm512_min_ps(z, _mm512_set1_ps(80.0)));
        _mm512_mul_ps(x, reciprocal(_mm512_add_ps(_mm512_set1_ps(1.0), e)))
    }
}

/// `act` on 16 lanes: [`crate::math`]'s activations within a few ulp (see
/// the test), not their bits. The AMX products' finishing steps apply it,
/// and on AVX-512 CPUs `ops::apply_activation` and the f32 kernels' tiles
/// ([`activate_rows`]).
///
/// Why not LLVM's loops over the scalar functions, as before: each has a
/// division (the sigmoid's, or erf's `P / Q`), and `vdivps` on 16 lanes
/// takes the divider about as long as the rest of the activation's
/// instructions together; here a reciprocal and a Newton step, and
/// `e^x` by [`exp_by_scalef`]. Alone on one thread over 32 × 3072 values
/// (ViT-B/32's MLP width), old and new alternating, best of 200 (AMX Xeon,
/// family 6 model 207, 2026-12-06): QuickGELU 0.45–0.66 → 0.31–0.46 ns a
/// value (1.44–1.45×, 3 runs), tanh GELU 1.46–1.54×, erf GELU the same
/// (its twelve-term fit, not the division, is most of its work).
///
/// # Safety
/// The CPU has AVX-512F (inlined into functions that enable it).
#[inline(always)]
pub(crate) unsafe fn activate(x: __m512, act: Activation) -> __m512 {
    // SAFETY: register-only intrinsics; AVX-512F by the contract.
    unsafe {
        match act {
            // x / (1 + e^(−1.702x))
            Activation::QuickGelu => over_one_plus_exp(x, _mm512_mul_ps(x, _mm512_set1_ps(-1.702))),
            // x / (1 + e^(−2u)), u = √(2/π)·x·(1 + 0.044715·x²)
            Activation::GeluTanh => {
                let inner = _mm512_fmadd_ps(
                    _mm512_mul_ps(x, x),
                    _mm512_set1_ps(0.044_715),
                    _mm512_set1_ps(1.0),
                );
                let z = _mm512_mul_ps(
                    _mm512_mul_ps(x, _mm512_set1_ps(-2.0 * SQRT_2_OVER_PI)),
                    inner,
                );
                over_one_plus_exp(x, z)
            }
            // 0.5·x·(1 + erf(x/√2)), erf as `crate::math::erf`'s fit.
            Activation::Gelu => {
                let t = _mm512_min_ps(
                    _mm512_set1_ps(4.0),
                    _mm512_max_ps(
                        _mm512_set1_ps(-4.0),
                        _mm512_mul_ps(x, _mm512_set1_ps(std::f32::consts::FRAC_1_SQRT_2)),
                    ),
                );
                let t2 = _mm512_mul_ps(t, t);
                let horner = |coefficients: &[f32]| {
                    let mut p = _mm512_set1_ps(coefficients[0]);
                    for &c in &coefficients[1..] {
                        p = _mm512_fmadd_ps(p, t2, _mm512_set1_ps(c));
                    }
                    p
                };
                let erf = _mm512_mul_ps(
                    _mm512_mul_ps(t, horner(&ERF_NUMERATOR)),
                    reciprocal(horner(&ERF_DENOMINATOR)),
                );
                _mm512_mul_ps(
                    _mm512_mul_ps(_mm512_set1_ps(0.5), x),
                    _mm512_add_ps(_mm512_set1_ps(1.0), erf),
                )
            }
        }
    }
}

/// [`activate`] in place on `rows × cols` floats at `c` with row stride
/// `ldc`, 16 lanes at a time, each row's tail masked.
///
/// # Safety
/// The CPU has AVX-512F; for each `r < rows`, the `cols` floats at
/// `c + r * ldc` are valid for reads and writes and no one else's during the
/// call.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn activate_rows(
    c: *mut f32,
    ldc: usize,
    rows: usize,
    cols: usize,
    act: Activation,
) {
    for r in 0..rows {
        for i in (0..cols).step_by(16) {
            let m = first_lanes(cols - i);
            // SAFETY: the lanes below `cols - i` of row r, inside it (the
            // contract); AVX-512F enabled here.
            unsafe {
                let p = c.add(r * ldc + i);
                _mm512_mask_storeu_ps(p, m, activate(_mm512_maskz_loadu_ps(m, p), act));
            }
        }
    }
}

/// The softmax's numerators over `row[..visible]` in place, `exp(v − max)`,
/// with `norm` = 1 / their sum, and zeros after (masked keys): the same
/// values, bits and order of additions as `ops::exp_prefix`'s loops (16
/// lanes, element `i` into lane `i % 16`, then the lanes in order).
///
/// # Safety
/// The CPU has AVX-512F.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn exp_prefix(row: &mut [f32], visible: usize, norm: &mut f32) {
    let visible = visible.min(row.len());
    let p = row.as_mut_ptr();
    // SAFETY: every access is at `p + i` for i < visible <= row.len(),
    // masked to the lanes below `visible`.
    unsafe {
        let mut lanes = _mm512_set1_ps(f32::NEG_INFINITY);
        for i in (0..visible).step_by(16) {
            let v = _mm512_mask_loadu_ps(lanes, first_lanes(visible - i), p.add(i));
            // `v > m ? v : m`: a NaN in v keeps m, as the loops skip NaNs.
            lanes = _mm512_max_ps(v, lanes);
        }
        // No NaN in `lanes`, so the order of the comparisons does not matter.
        let max = _mm512_set1_ps(_mm512_reduce_max_ps(lanes));
        let mut acc = _mm512_setzero_ps();
        for i in (0..visible).step_by(16) {
            let m = first_lanes(visible - i);
            let e = exp(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, p.add(i)), max));
            _mm512_mask_storeu_ps(p.add(i), m, e);
            acc = _mm512_mask_add_ps(acc, m, acc, e);
        }
        let mut sums = [0f32; 16];
        _mm512_storeu_ps(sums.as_mut_ptr(), acc);
        *norm = 1.0 / sums.iter().sum::<f32>();
    }
    row[visible..].fill(0.0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::math;

    fn avx512() -> bool {
        std::arch::is_x86_feature_detected!("avx512f")
    }

    /// Values across exp's range and past both clamps, NaN and infinities.
    fn inputs() -> Vec<f32> {
        let mut v: Vec<f32> = (-2000..=2000).map(|i| i as f32 * 0.0473).collect();
        v.extend([
            0.0,
            -0.0,
            1e-30,
            -1e-30,
            88.29,
            88.31,
            -87.29,
            -87.31,
            500.0,
            -500.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            f32::MAX,
            f32::MIN,
        ]);
        while !v.len().is_multiple_of(16) {
            v.push(1.0);
        }
        v
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn map(x: &[f32], f: impl Fn(__m512) -> __m512) -> Vec<f32> {
        let mut out = vec![0f32; x.len()];
        for (src, dst) in x.chunks_exact(16).zip(out.chunks_exact_mut(16)) {
            // SAFETY: 16 floats each side; AVX-512F enabled here.
            unsafe { _mm512_storeu_ps(dst.as_mut_ptr(), f(_mm512_loadu_ps(src.as_ptr()))) }
        }
        out
    }

    #[test]
    fn exp_has_the_bits_of_the_scalar_exp() {
        if !avx512() {
            return;
        }
        let x = inputs();
        // SAFETY: AVX-512F checked above.
        let got = unsafe { map(&x, |v| exp(v)) };
        for (&x, g) in x.iter().zip(got) {
            let want = math::exp(x);
            assert!(
                g.to_bits() == want.to_bits() || (g.is_nan() && want.is_nan()),
                "exp({x}) = {g}, scalar {want}"
            );
        }
    }

    #[test]
    fn exp_by_scalef_is_within_its_bound() {
        if !avx512() {
            return;
        }
        let mut x: Vec<f32> = (0..=2_000_000).map(|i| i as f32 * -5.3e-5).collect();
        x.extend([
            -87.0,
            -87.3,
            -88.0,
            -100.0,
            -104.0,
            -1e6,
            f32::NEG_INFINITY,
            1.5,
            30.0,
        ]);
        x.extend([f32::NAN, 0.0, -0.0, 1e-30, -1e-30]);
        while !x.len().is_multiple_of(16) {
            x.push(0.0);
        }
        // SAFETY: AVX-512F checked above.
        let got = unsafe { map(&x, |v| exp_by_scalef(v)) };
        for (&x, g) in x.iter().zip(got) {
            let want = (x as f64).exp();
            if x.is_nan() {
                assert!(g.is_nan(), "exp({x}) = {g}");
            } else if want >= f32::MIN_POSITIVE as f64 {
                let error = (g as f64 - want).abs() / want;
                assert!(error < 2.5e-7, "exp({x}) = {g}, want {want}: {error:e}");
            } else {
                // Subnormal: the bound at the smallest normal, plus the
                // subnormals' rounding (steps of 1.4e-45).
                let bound = 2.5e-7 * f32::MIN_POSITIVE as f64 + 1.5e-45;
                assert!(
                    (g as f64 - want).abs() <= bound,
                    "exp({x}) = {g}, want {want}"
                );
            }
        }
    }

    /// Within `4e-7·|x|` (a few ulp of results no larger than `|x|`) of the
    /// scalar activations, and as them at ±∞ and NaN.
    #[test]
    fn activations_are_the_scalar_ones_within_a_few_ulp() {
        if !avx512() {
            return;
        }
        let mut x = inputs();
        x.extend((-4000..4000).map(|i| i as f32 * 1.37e-3));
        x.extend([f32::MIN_POSITIVE, 1e6, -1e6, 1e13, -1e13]);
        while !x.len().is_multiple_of(16) {
            x.push(0.5);
        }
        for (act, scalar) in [
            (Activation::QuickGelu, math::quick_gelu as fn(f32) -> f32),
            (Activation::Gelu, math::gelu),
            (Activation::GeluTanh, math::gelu_tanh),
        ] {
            // SAFETY: AVX-512F checked above.
            let got = unsafe { map(&x, |v| activate(v, act)) };
            for (&x, g) in x.iter().zip(got) {
                let want = scalar(x);
                if want.is_nan() || want.is_infinite() {
                    assert!(
                        g.to_bits() == want.to_bits() || (g.is_nan() && want.is_nan()),
                        "{act:?}({x}) = {g}, scalar {want}"
                    );
                } else {
                    let error = (g - want).abs();
                    assert!(
                        error <= 4e-7 * x.abs().min(f32::MAX / 2.0) + 1e-37,
                        "{act:?}({x}) = {g}, scalar {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn softmax_numerators_have_the_bits_of_the_loops() {
        if !avx512() {
            return;
        }
        for (len, visible) in [
            (1, 1),
            (2, 1),
            (16, 16),
            (50, 50),
            (50, 37),
            (77, 9),
            (77, 77),
            (33, 0),
        ] {
            let row: Vec<f32> = (0..len)
                .map(|i| ((i * 37 % 23) as f32 - 11.0) * 0.71)
                .collect();
            let mut want = row.clone();
            let mut want_norm = 0.0;
            crate::ops::exp_prefix_loops(&mut want, visible, &mut want_norm);
            let mut got = row.clone();
            let mut got_norm = 0.0;
            // SAFETY: AVX-512F checked above.
            unsafe { exp_prefix(&mut got, visible, &mut got_norm) };
            assert_eq!(
                got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                want.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                "{len} keys, {visible} visible"
            );
            assert_eq!(got_norm.to_bits(), want_norm.to_bits());
        }
    }
}
