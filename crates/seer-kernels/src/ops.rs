//! The non-matmul parts of a transformer block, on row-major f32 slices. Each is
//! split across rayon's threads and compiled for the CPU's vector width.

use rayon::prelude::*;

use crate::gemm::Activation;
use crate::math;

/// Defines `fn $name(args)` whose body is compiled three times (AVX-512, AVX2,
/// baseline) and picked by [`crate::Isa::detected`]: the bodies are plain loops
/// that LLVM vectorises for whichever width it is allowed.
macro_rules! multiversion {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $body:block) => {
        $(#[$m])* $vis fn $name($($arg: $ty),*) {
            #[inline(always)]
            fn inner($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")]
                unsafe fn wide($($arg: $ty),*) { inner($($arg),*) }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn narrow($($arg: $ty),*) { inner($($arg),*) }
                match $crate::isa::Isa::detected() {
                    // SAFETY: the CPU supports the features (checked at detection).
                    $crate::isa::Isa::Avx512 => return unsafe { wide($($arg),*) },
                    $crate::isa::Isa::Avx2 => return unsafe { narrow($($arg),*) },
                    $crate::isa::Isa::Portable => {}
                }
            }
            inner($($arg),*)
        }
    };
}

/// Below this many elements an op runs on the calling thread.
const PARALLEL_MIN_ELEMS: usize = 1 << 14;

multiversion! {
    /// Applies `act` in place.
    pub fn apply_activation(x: &mut [f32], act: Activation) {
        match act {
            Activation::QuickGelu => x.iter_mut().for_each(|v| *v = math::quick_gelu(*v)),
            Activation::Gelu => x.iter_mut().for_each(|v| *v = math::gelu(*v)),
        }
    }
}

multiversion! {
    fn layer_norm_row(x: &[f32], gamma: &[f32], beta: &[f32], eps: f32, out: &mut [f32]) {
        let n = x.len() as f32;
        let mean = sum(x) / n;
        let mut sq = [0f32; 16];
        for chunk in x.chunks(16) {
            for (s, &v) in sq.iter_mut().zip(chunk) {
                *s += (v - mean) * (v - mean);
            }
        }
        let inv = 1.0 / (sq.iter().sum::<f32>() / n + eps).sqrt();
        for (((o, &v), &g), &b) in out.iter_mut().zip(x).zip(gamma).zip(beta) {
            *o = (v - mean) * inv * g + b;
        }
    }
}

/// Sum with 16 independent lanes (vectorises, and is more accurate than a chain).
#[inline(always)]
fn sum(x: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    for chunk in x.chunks(16) {
        for (s, &v) in acc.iter_mut().zip(chunk) {
            *s += v;
        }
    }
    acc.iter().sum()
}

/// LayerNorm over the last dimension (`c`) of `x`, biased variance, eps inside
/// the root, as `nn.LayerNorm`.
pub fn layer_norm(x: &[f32], c: usize, gamma: &[f32], beta: &[f32], eps: f32, out: &mut [f32]) {
    assert!(
        gamma.len() == c && beta.len() == c && x.len() == out.len() && x.len().is_multiple_of(c)
    );
    let rows_per_task = (PARALLEL_MIN_ELEMS / c).max(1);
    out.par_chunks_mut(rows_per_task * c)
        .zip(x.par_chunks(rows_per_task * c))
        .for_each(|(o, xi)| {
            for (orow, xrow) in o.chunks_exact_mut(c).zip(xi.chunks_exact(c)) {
                layer_norm_row(xrow, gamma, beta, eps, orow);
            }
        });
}

/// Layout of a fused attention input: sequences of possibly different lengths
/// stored back to back (row `start..start + len` each), so a batch of short
/// prompts needs no padding at all.
#[derive(Clone, Copy, Debug)]
pub struct AttentionShape<'a> {
    /// `(first row, tokens)` of each sequence.
    pub sequences: &'a [(usize, usize)],
    /// Model width (heads × head_dim).
    pub width: usize,
    pub heads: usize,
    /// Each token attends only to itself and earlier tokens (text towers).
    pub causal: bool,
}

/// Multi-head self-attention core: `qkv` holds rows `[q | k | v]` of width `3c`
/// per token (q already multiplied by 1/√head_dim); writes `softmax(q·kᵀ)·v` per
/// head into `out` (rows of width `c`, heads side by side, ready for out_proj).
/// Tokens attend only within their own sequence.
pub fn attention(qkv: &[f32], shape: AttentionShape, out: &mut [f32]) {
    let AttentionShape { width, heads, .. } = shape;
    assert!(heads > 0 && width % heads == 0);
    let rows = out.len() / width;
    assert_eq!(qkv.len(), rows * 3 * width);
    assert!(shape.sequences.iter().all(|&(s, n)| s + n <= rows));
    let out_ptr = OutPtr(out.as_mut_ptr());
    (0..shape.sequences.len() * heads)
        .into_par_iter()
        .for_each(|task| {
            let (start, len) = shape.sequences[task / heads];
            // SAFETY: task (sequence, head) writes only its head's columns of its
            // own rows; sequences do not overlap.
            unsafe { attention_head(qkv, &shape, start, len, task % heads, out_ptr.get()) }
        });
}

#[derive(Clone, Copy)]
struct OutPtr(*mut f32);

impl OutPtr {
    /// A method, so closures capture the Send wrapper rather than its field.
    fn get(self) -> *mut f32 {
        self.0
    }
}
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

unsafe fn attention_head(
    qkv: &[f32],
    s: &AttentionShape,
    start: usize,
    t: usize,
    h: usize,
    out: *mut f32,
) {
    let d = s.width / s.heads;
    let row = 3 * s.width;
    let base = start * row;
    // Keys transposed (d × t) and values gathered (t × d): the score loop then
    // runs along keys with no horizontal sums, and both stay in L1.
    let mut keys_t = vec![0f32; d * t];
    let mut values = vec![0f32; t * d];
    for j in 0..t {
        let k = &qkv[base + j * row + s.width + h * d..][..d];
        for (x, &kv) in k.iter().enumerate() {
            keys_t[x * t + j] = kv;
        }
        values[j * d..(j + 1) * d]
            .copy_from_slice(&qkv[base + j * row + 2 * s.width + h * d..][..d]);
    }
    let mut scores = vec![0f32; t];
    for i in 0..t {
        let q = &qkv[base + i * row + h * d..][..d];
        let visible = if s.causal { i + 1 } else { t };
        let dst = std::slice::from_raw_parts_mut(out.add((start + i) * s.width + h * d), d);
        attend_row(q, &keys_t, &values, t, &mut scores[..visible], dst);
    }
}

multiversion! {
    /// One query row: `dst = softmax(q·Kᵀ)·V` over the first `scores.len()` keys.
    fn attend_row(q: &[f32], keys_t: &[f32], values: &[f32], t: usize, scores: &mut [f32], dst: &mut [f32]) {
        let d = q.len();
        let visible = scores.len();
        scores.fill(0.0);
        for (x, &qx) in q.iter().enumerate() {
            for (s, &k) in scores.iter_mut().zip(&keys_t[x * t..x * t + visible]) {
                *s += qx * k;
            }
        }
        let max = scores.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        for s in scores.iter_mut() {
            *s = math::exp(*s - max);
        }
        let inv = 1.0 / sum(scores);
        dst.fill(0.0);
        for (j, &p) in scores.iter().enumerate() {
            for (o, &v) in dst.iter_mut().zip(&values[j * d..(j + 1) * d]) {
                *o += p * v;
            }
        }
        for o in dst.iter_mut() {
            *o *= inv;
        }
    }
}

/// `x += gamma ⊙ y` row-wise (open_clip's LayerScale on a residual branch).
pub fn add_scaled(x: &mut [f32], y: &[f32], gamma: &[f32]) {
    let c = gamma.len();
    x.par_chunks_mut(c * 64)
        .zip(y.par_chunks(c * 64))
        .for_each(|(xs, ys)| {
            for (xr, yr) in xs.chunks_exact_mut(c).zip(ys.chunks_exact(c)) {
                for ((xv, &yv), &g) in xr.iter_mut().zip(yr).zip(gamma) {
                    *xv += g * yv;
                }
            }
        });
}
