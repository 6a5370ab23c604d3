//! The x86 micro-kernels: AVX2 + FMA, AVX-512F, AVX-512 BF16 and VNNI.

use super::{Activation, Ahead, Onto, NR};
use crate::avx512::first_lanes;
use std::arch::x86_64::*;

/// 14 rows × 32 columns: 28 zmm accumulators, 2 for weights, 1 broadcast.
pub const MR_512: usize = 14;
/// 6 rows × 16 columns per half-panel: 12 ymm accumulators.
pub const MR_256: usize = 6;

#[inline(always)]
pub(super) fn tail_masks(cols: usize) -> (__mmask16, __mmask16) {
    (first_lanes(cols), first_lanes(cols.saturating_sub(16)))
}

/// Adds the accumulators onto C's tile or onto a bias and stores them into
/// the tile, masked to `cols`.
///
/// # Safety
/// The CPU has AVX-512F; the `rows × cols` floats at `c` (row stride `ldc`,
/// `cols <= 32`) are valid for reads and writes and ours alone; a non-null
/// bias holds `cols` floats.
#[inline(always)]
unsafe fn store_512(
    acc: &[__m512; 2 * MR_512],
    c: *mut f32,
    ldc: usize,
    rows: usize,
    cols: usize,
    onto: Onto,
) {
    let (m0, m1) = tail_masks(cols);
    // SAFETY: the masks keep the loads to the bias's first `cols` values,
    // which a non-null bias holds (the caller's contract); AVX-512F as below.
    let bias = unsafe {
        match onto {
            Onto::Bias(b) | Onto::OutputAndBias(b) | Onto::BiasActivated(b, _) if !b.is_null() => {
                Some((
                    _mm512_maskz_loadu_ps(m0, b),
                    _mm512_maskz_loadu_ps(m1, b.add(16)),
                ))
            }
            Onto::Bias(_) | Onto::BiasActivated(..) => {
                Some((_mm512_setzero_ps(), _mm512_setzero_ps()))
            }
            Onto::Output | Onto::OutputAndBias(_) => None,
        }
    };
    let reads_c = !matches!(onto, Onto::Bias(_) | Onto::BiasActivated(..));
    let act = match onto {
        Onto::BiasActivated(_, act) => Some(act),
        _ => None,
    };
    for r in 0..MR_512 {
        if r < rows {
            // SAFETY: row r < rows of the tile; the masks keep loads and
            // stores to its first `cols` floats (masked-off lanes are not
            // accessed), and the CPU has AVX-512F (the caller's contract).
            unsafe {
                let p = c.add(r * ldc);
                let p1 = p.add(16);
                let (base0, base1) = match (reads_c, bias) {
                    (false, Some(bias)) => bias,
                    (true, Some((b0, b1))) => (
                        _mm512_add_ps(_mm512_maskz_loadu_ps(m0, p), b0),
                        _mm512_add_ps(_mm512_maskz_loadu_ps(m1, p1), b1),
                    ),
                    (_, None) => (_mm512_maskz_loadu_ps(m0, p), _mm512_maskz_loadu_ps(m1, p1)),
                };
                let mut v0 = _mm512_add_ps(base0, acc[2 * r]);
                let mut v1 = _mm512_add_ps(base1, acc[2 * r + 1]);
                // Not a closure: one would not inherit the target features,
                // and its intrinsics would become calls.
                if let Some(act) = act {
                    v0 = crate::avx512::activate(v0, act);
                    v1 = crate::avx512::activate(v1, act);
                }
                _mm512_mask_storeu_ps(p, m0, v0);
                _mm512_mask_storeu_ps(p1, m1, v1);
            }
        }
    }
}

/// The sums of `kc` depth steps of the first `R` rows of a tile (all
/// MR_512 for a full one): a step is MR_512 packed A values, of which the
/// first `R` are read, and NR = 32 weights. Accumulators past row `R` stay
/// zero. Each sum gets the same multiply-adds in the same order whatever `R`.
///
/// # Safety
/// The CPU has AVX-512F; `a` and `b` hold `kc` steps (the micro-kernel
/// contract, see [`super::MicroF32`]); `R <= MR_512`.
#[inline(always)]
unsafe fn sums_512<const R: usize>(
    kc: usize,
    a: *const u32,
    b: *const u8,
    ahead: Ahead,
) -> [__m512; 2 * MR_512] {
    let mut a = a.cast::<f32>();
    let mut b = b.cast::<f32>();
    // SAFETY: the CPU has AVX-512F (the contract).
    let mut acc = [unsafe { _mm512_setzero_ps() }; 2 * MR_512];
    let mut ahead = ahead.over(kc);
    for _ in 0..kc {
        ahead.tick();
        // SAFETY: each of the `kc` steps reads R <= MR_512 floats of the A
        // panel and NR = 32 of the weight panel, both inside by the contract,
        // and moves past them; unaligned loads need no alignment.
        unsafe {
            fma_step_512::<R>(&mut acc, a, _mm512_loadu_ps(b), _mm512_loadu_ps(b.add(16)));
            a = a.add(MR_512);
            b = b.add(NR);
        }
    }
    acc
}

/// One depth step of an AVX-512 f32 tile's first `R` rows: each row's A value
/// at `a[r]` times the step's weights `(b0, b1)`, added to its accumulators.
///
/// # Safety
/// The CPU has AVX-512F; `a` holds `R <= MR_512` floats.
#[inline(always)]
unsafe fn fma_step_512<const R: usize>(
    acc: &mut [__m512; 2 * MR_512],
    a: *const f32,
    b0: __m512,
    b1: __m512,
) {
    for r in 0..R {
        // SAFETY: r < R floats at `a`; AVX-512F (the contract).
        unsafe {
            let av = _mm512_set1_ps(*a.add(r));
            acc[2 * r] = _mm512_fmadd_ps(av, b0, acc[2 * r]);
            acc[2 * r + 1] = _mm512_fmadd_ps(av, b1, acc[2 * r + 1]);
        }
    }
}

/// A full-tile AVX-512 micro-kernel and its first-depth-block twin from a
/// function of the tile's sums: `$micro` adds them onto C (the
/// [`super::MicroF32`] contract), `$first::<false>` writes C = sums + bias
/// without reading C and `$first::<true>` adds bias and sums onto C
/// ([`super::MicroF32First`]: `bias` null or the tile's `cols` values).
macro_rules! micro_512_pair {
    ($features:literal, $sums:expr, $(#[$doc:meta])* $micro:ident, $first:ident) => {
        $(#[$doc])*
        ///
        /// # Safety
        /// The micro-kernel contract (see [`super::MicroF32`]).
        #[target_feature(enable = $features)]
        #[allow(clippy::too_many_arguments)]
        pub unsafe fn $micro(
            kc: usize,
            a: *const u32,
            b: *const u8,
            c: *mut f32,
            ldc: usize,
            rows: usize,
            cols: usize,
            ahead: Ahead,
        ) {
            // SAFETY: the target features are enabled here; the panels hold
            // `kc` depths and the C tile is valid and ours (the contract).
            unsafe { store_512(&($sums)(kc, a, b, ahead), c, ldc, rows, cols, Onto::Output) };
        }

        #[doc = concat!("[`", stringify!($micro), "`] for a tile's first depth block, with its bias: C = sums + bias, written without reading C; or with `ONTO_C`, C = (C + bias) + sums, what `Tile::init` then the kernel would add (a residual).")]
        ///
        /// # Safety
        /// The micro-kernel contract (see [`super::MicroF32First`]): `bias`
        /// is null or holds the tile's `cols` bias values.
        #[target_feature(enable = $features)]
        #[allow(clippy::too_many_arguments)]
        pub unsafe fn $first<const ONTO_C: bool>(
            kc: usize,
            a: *const u32,
            b: *const u8,
            c: *mut f32,
            ldc: usize,
            rows: usize,
            cols: usize,
            bias: *const f32,
            ahead: Ahead,
        ) {
            let onto = Onto::first_block::<ONTO_C>(bias);
            // SAFETY: as for the kernel above; the bias is null or `cols` long.
            unsafe { store_512(&($sums)(kc, a, b, ahead), c, ldc, rows, cols, onto) };
        }
    };
}

/// `$rows::<R>`, a kernel for tiles of `R < MR_512` rows from a function of
/// the sums of a tile's first `R` rows, and `$few`, those kernels for 1 to
/// 13 rows (`[r - 1]`).
macro_rules! micro_512_rows {
    ($features:literal, $sums:ident, $(#[$doc:meta])* $rows:ident, $few:ident) => {
        $(#[$doc])*
        ///
        /// # Safety
        /// The micro-kernel contract (see [`super::MicroF32`]), with `rows == R`.
        #[target_feature(enable = $features)]
        #[allow(clippy::too_many_arguments)]
        pub unsafe fn $rows<const R: usize>(
            kc: usize,
            a: *const u32,
            b: *const u8,
            c: *mut f32,
            ldc: usize,
            rows: usize,
            cols: usize,
            ahead: Ahead,
        ) {
            debug_assert!(R < MR_512 && rows == R);
            // SAFETY: the target features are enabled here; the panels hold
            // `kc` steps, R < MR_512, and the C tile is valid and ours (the
            // contract).
            unsafe { store_512(&$sums::<R>(kc, a, b, ahead), c, ldc, rows, cols, Onto::Output) };
        }

        #[doc = concat!("The few-row kernels [`", stringify!($rows), "`], `[r - 1]` for `r` rows.")]
        pub const $few: [super::MicroF32; MR_512 - 1] = [
            $rows::<1>, $rows::<2>, $rows::<3>, $rows::<4>, $rows::<5>, $rows::<6>, $rows::<7>,
            $rows::<8>, $rows::<9>, $rows::<10>, $rows::<11>, $rows::<12>, $rows::<13>,
        ];
    };
}

micro_512_pair!(
    "avx512f",
    sums_512::<MR_512>,
    /// The f32 14×32 kernel.
    micro_f32_avx512,
    micro_f32_avx512_first
);

/// [`micro_f32_avx512_first`]`::<false>` (C = sums + bias, C unread) that
/// also applies `act` to the tile in its registers before the one store: a
/// one-depth-block product with an activation (an MLP's first layer) then
/// never reads its tile back. As a pass over the stored tile, the activation
/// waited on those loads: most of its samples were on the first use of the
/// loaded value (ViT-B's MLP rows are 12 KiB apart, so a tile's 14 rows share
/// a set of the 12-way L1; `perf annotate`, Intel Xeon of family 6 model
/// 207). The same values: the activation of the same sums.
pub fn micro_f32_avx512_first_activated(act: Activation) -> super::MicroF32First {
    match act {
        Activation::QuickGelu => first_activated::<0>,
        Activation::Gelu => first_activated::<1>,
        Activation::GeluTanh => first_activated::<2>,
    }
}

/// [`micro_f32_avx512_first_activated`]'s kernel for activation `ACT`
/// (an index into `ACTIVATIONS`, so that the activation is known where it is
/// compiled).
///
/// # Safety
/// The micro-kernel contract (see [`super::MicroF32First`]): `bias` is null
/// or holds the tile's `cols` bias values.
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn first_activated<const ACT: usize>(
    kc: usize,
    a: *const u32,
    b: *const u8,
    c: *mut f32,
    ldc: usize,
    rows: usize,
    cols: usize,
    bias: *const f32,
    ahead: Ahead,
) {
    const ACTIVATIONS: [Activation; 3] = [
        Activation::QuickGelu,
        Activation::Gelu,
        Activation::GeluTanh,
    ];
    let onto = Onto::BiasActivated(bias, ACTIVATIONS[ACT]);
    // SAFETY: the target feature is enabled here; the panels hold `kc`
    // depths, the C tile is valid and ours and the bias null or `cols` long
    // (the contract).
    unsafe {
        store_512(
            &sums_512::<MR_512>(kc, a, b, ahead),
            c,
            ldc,
            rows,
            cols,
            onto,
        )
    };
}

micro_512_rows!(
    "avx512f",
    sums_512,
    /// [`micro_f32_avx512`] for a tile of `R < MR_512` rows (a decoding step's
    /// one row per sequence, a batch's last tile): it reads only the `R` live rows
    /// of each packed step instead of multiplying the zero padding, 14× less work
    /// for one row. Each output element gets the same multiply-adds in the same
    /// order as in the full kernel, so a row's result does not depend on the rows
    /// batched with it.
    micro_f32_avx512_rows,
    FEW_F32_AVX512
);

/// The sums of `kc` depths (`kc / 2` bf16 pairs) of the first `R` rows of a
/// tile on `vdpbf16ps`: a step is MR_512 packed pairs of A, of which the first
/// `R` are read, and 2 × NR bf16 weights. As in [`sums_512`], each sum gets the
/// same products in the same order whatever `R`.
///
/// # Safety
/// The CPU has AVX-512F and AVX512-BF16; `a` and `b` hold the steps (the
/// micro-kernel contract, see [`super::MicroF32`]); `R <= MR_512`.
#[inline(always)]
unsafe fn sums_bf16_512<const R: usize>(
    kc: usize,
    a: *const u32,
    b: *const u8,
    ahead: Ahead,
) -> [__m512; 2 * MR_512] {
    let mut a = a;
    let mut b = b.cast::<u16>();
    // SAFETY: the CPU has AVX-512F (the contract).
    let mut acc = [unsafe { _mm512_setzero_ps() }; 2 * MR_512];
    let mut ahead = ahead.over(kc.div_ceil(2));
    for _ in 0..kc.div_ceil(2) {
        ahead.tick();
        // SAFETY: each step (a pair of depths) reads MR_512 u32 words of the A
        // panel and 2 × NR = 64 bf16 of the weight panel, inside by the
        // contract. The transmutes reinterpret 512 bits of packed bf16 pairs
        // as `__m512bh`, which is what they hold.
        unsafe {
            let b0: __m512bh = std::mem::transmute(_mm512_loadu_si512(b.cast()));
            let b1: __m512bh = std::mem::transmute(_mm512_loadu_si512(b.add(32).cast()));
            for r in 0..R {
                let av: __m512bh = std::mem::transmute(_mm512_set1_epi32(*a.add(r) as i32));
                acc[2 * r] = _mm512_dpbf16_ps(acc[2 * r], av, b0);
                acc[2 * r + 1] = _mm512_dpbf16_ps(acc[2 * r + 1], av, b1);
            }
            a = a.add(MR_512);
            b = b.add(2 * NR);
        }
    }
    acc
}

micro_512_pair!(
    "avx512f,avx512bf16",
    sums_bf16_512::<MR_512>,
    /// The bf16 14×32 kernel on `vdpbf16ps` (activations in bf16 pairs).
    micro_bf16_avx512,
    micro_bf16_avx512_first
);

micro_512_rows!(
    "avx512f,avx512bf16",
    sums_bf16_512,
    /// [`micro_bf16_avx512`] for a tile of `R < MR_512` rows: a batch's last
    /// tile costs its rows, not a full tile's (ViT-B/32 at batch 8: 28 tiles
    /// of 14 rows and one of 8, which two threads share 14 and 15 as whole
    /// tiles).
    micro_bf16_avx512_rows,
    FEW_BF16_AVX512
);

/// [`super::quantise_row`] with AVX-512 (LLVM leaves its saturating casts
/// scalar, which cost a quarter of the int8 product).
///
/// # Safety
/// The CPU has AVX-512F.
#[target_feature(enable = "avx512f")]
pub unsafe fn quantise_row_avx512(row: &[f32], out: &mut [u8], top: f32) -> (f32, f32) {
    assert!(out.len() >= row.len());
    let body = row.len() / 64 * 64;
    // Four minima and maxima in flight: one pair waited on its own latency
    // every 16 values.
    let mut lo = [_mm512_set1_ps(f32::INFINITY); 4];
    let mut hi = [_mm512_set1_ps(f32::NEG_INFINITY); 4];
    for i in (0..body).step_by(64) {
        for j in 0..4 {
            // SAFETY: i + 64 <= body <= row.len().
            let v = unsafe { _mm512_loadu_ps(row.as_ptr().add(i + 16 * j)) };
            // min/max return the second operand when either is NaN: NaNs skipped.
            lo[j] = _mm512_min_ps(v, lo[j]);
            hi[j] = _mm512_max_ps(v, hi[j]);
        }
    }
    for i in (body..row.len()).step_by(16) {
        let m = first_lanes(row.len() - i);
        // SAFETY: the mask keeps the load inside `row` (lanes i..i+16 ∩ len).
        let v = unsafe { _mm512_maskz_loadu_ps(m, row.as_ptr().add(i)) };
        lo[0] = _mm512_mask_min_ps(lo[0], m, v, lo[0]);
        hi[0] = _mm512_mask_max_ps(hi[0], m, v, hi[0]);
    }
    let lo = _mm512_min_ps(_mm512_min_ps(lo[0], lo[1]), _mm512_min_ps(lo[2], lo[3]));
    let hi = _mm512_max_ps(_mm512_max_ps(hi[0], hi[1]), _mm512_max_ps(hi[2], hi[3]));
    let (min, s) = super::quant_range(_mm512_reduce_min_ps(lo), _mm512_reduce_max_ps(hi), top);
    let (vmin, inv) = (_mm512_set1_ps(min), _mm512_set1_ps(1.0 / s));
    let (half, zero, top_v) = (
        _mm512_set1_ps(0.5),
        _mm512_setzero_ps(),
        _mm512_set1_ps(top),
    );
    // In 0..=top up to rounding, as the scalar `quantise_row` computes it; the
    // max takes NaN to 0.
    let levels = |v: __m512| {
        let q = _mm512_add_ps(_mm512_mul_ps(_mm512_sub_ps(v, vmin), inv), half);
        _mm512_cvttps_epi32(_mm512_min_ps(_mm512_max_ps(q, zero), top_v))
    };
    // 64 values to 64 bytes narrowed in registers and stored at once: a
    // narrowing store per 16 values was the slow part of this loop (AMD).
    for i in (0..body).step_by(64) {
        // SAFETY: i + 64 <= body: inside `row`, and inside `out`, at least as
        // long (asserted).
        unsafe {
            let q = |j: usize| {
                _mm512_cvtepi32_epi8(levels(_mm512_loadu_ps(row.as_ptr().add(i + 16 * j))))
            };
            let bytes = _mm512_castsi128_si512(q(0));
            let bytes = _mm512_inserti32x4::<1>(bytes, q(1));
            let bytes = _mm512_inserti32x4::<2>(bytes, q(2));
            let bytes = _mm512_inserti32x4::<3>(bytes, q(3));
            _mm512_storeu_si512(out.as_mut_ptr().add(i).cast(), bytes);
        }
    }
    for i in (body..row.len()).step_by(16) {
        let m = first_lanes(row.len() - i);
        // SAFETY: as above; the store writes the same lanes of `out`, which is
        // at least as long as `row` (asserted).
        unsafe {
            let q = levels(_mm512_maskz_loadu_ps(m, row.as_ptr().add(i)));
            _mm512_mask_cvtepi32_storeu_epi8(out.as_mut_ptr().add(i).cast(), m, q);
        }
    }
    (min, s)
}

/// # Safety
/// The int8 micro-kernel contract (see [`super::MicroInt8`]).
#[target_feature(enable = "avx512f,avx512vnni")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn micro_int8_avx512(
    kc: usize,
    a: *const u32,
    b: *const u8,
    c: *mut f32,
    ldc: usize,
    rows: usize,
    cols: usize,
    d: &super::Dequant,
) {
    let mut a = a;
    let mut b = b;
    let mut acc = [_mm512_setzero_si512(); 2 * MR_512];
    for _ in 0..kc.div_ceil(4) {
        // SAFETY: each step (a group of four depths) reads MR_512 u32 words of
        // the A panel and 4 × NR = 128 bytes of the weight panel, inside by
        // the contract; unaligned loads need no alignment.
        unsafe {
            let b0 = _mm512_loadu_si512(b.cast());
            let b1 = _mm512_loadu_si512(b.add(64).cast());
            for r in 0..MR_512 {
                let av = _mm512_set1_epi32(*a.add(r) as i32);
                acc[2 * r] = _mm512_dpbusd_epi32(acc[2 * r], av, b0);
                acc[2 * r + 1] = _mm512_dpbusd_epi32(acc[2 * r + 1], av, b1);
            }
            a = a.add(MR_512);
            b = b.add(4 * NR);
        }
    }
    // Scale the integer sums into floats and add them into C (see
    // [`super::Dequant`]), row by row with literal rows, so that the sums
    // stay in registers: a loop indexing `acc` by a run-time row kept them on
    // the stack, zeroed by a memset per call (4% of an int8 forward), and a
    // closure called per row (LLVM kept it out of line) spilled them all
    // and cost a call a row: 12% of the bare int8 products' samples, AMD
    // EPYC Zen 4 (family 25 model 17).
    let halves = |v: &[f32]| {
        let v: &[f32; NR] = v[..NR].try_into().expect("NR column values");
        // SAFETY: `v` holds NR = 32 floats: two unaligned 16-float loads.
        unsafe {
            (
                _mm512_loadu_ps(v.as_ptr()),
                _mm512_loadu_ps(v.as_ptr().add(16)),
            )
        }
    };
    let tile = Int8TileStore {
        c,
        ldc,
        rows,
        masks: tail_masks(cols),
        scales: halves(d.col_scales),
        row_scales: d.row_scales,
        first: d
            .first
            .as_ref()
            .map(|f| (f.mins, halves(f.sums), halves(f.bias))),
        overwrite: d.first.as_ref().is_some_and(|f| f.overwrite),
        act: d.act,
    };
    macro_rules! rows {
        ($($r:literal)*) => {
            // SAFETY: the contract: the tile's rows and columns are ours.
            $(unsafe { tile.row($r, (acc[2 * $r], acc[2 * $r + 1])) };)*
        };
    }
    const _: () = assert!(MR_512 == 14, "the rows are written out");
    rows!(0 1 2 3 4 5 6 7 8 9 10 11 12 13);
}

/// A row's 32 floats as two zmm.
type Halves = (__m512, __m512);

/// What [`micro_int8_avx512`] needs to turn a row's integer sums into C.
struct Int8TileStore<'a> {
    c: *mut f32,
    ldc: usize,
    rows: usize,
    masks: (__mmask16, __mmask16),
    scales: Halves,
    row_scales: &'a [f32],
    /// On the first depth block: each row's activation minimum, and the
    /// weight columns' sums and bias (see [`super::FirstBlock`]).
    first: Option<(&'a [f32], Halves, Halves)>,
    overwrite: bool,
    act: Option<Activation>,
}

impl Int8TileStore<'_> {
    /// Row `r`'s sums scaled into C (see [`super::Dequant`]), inlined into
    /// each of the kernel's 14 rows.
    ///
    /// # Safety
    /// The CPU has AVX-512F; row `r` of the tile is valid and ours.
    #[inline(always)]
    unsafe fn row(&self, r: usize, (s0, s1): (__m512i, __m512i)) {
        if r >= self.rows {
            return;
        }
        let (cs0, cs1) = self.scales;
        // SAFETY: the CPU has AVX-512F (the contract).
        unsafe {
            let rs = _mm512_set1_ps(self.row_scales[r]);
            let (mut o0, mut o1) = match self.first {
                Some((mins, (u0, u1), (b0, b1))) => {
                    let m = _mm512_set1_ps(mins[r]);
                    (_mm512_fmadd_ps(m, u0, b0), _mm512_fmadd_ps(m, u1, b1))
                }
                None => (_mm512_setzero_ps(), _mm512_setzero_ps()),
            };
            o0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s0), _mm512_mul_ps(cs0, rs), o0);
            o1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s1), _mm512_mul_ps(cs1, rs), o1);
            // SAFETY: row r < rows of the tile; the masks keep loads and
            // stores to its first `cols` floats, valid and ours.
            store_row_512(
                self.c.add(r * self.ldc),
                self.masks,
                (o0, o1),
                self.overwrite,
                self.act,
            )
        }
    }
}

/// One 32-column row of C at `p` = (or, without `overwrite`, +=) the two
/// halves, masked to the row's columns, then `act` applied to the row: the
/// int8 kernels' store, VNNI's and AMX's.
///
/// Why the activation here and not in a pass over the finished tile: that
/// pass reloaded each row right after its masked store, which the CPU cannot
/// forward to a load; the wait was most of the activation's time (11% of a
/// bf16 text forward on AMX, Intel Xeon).
///
/// # Safety
/// The CPU has AVX-512F; the floats of `p` and `p + 16` the masks select are
/// valid for reads and writes and no one else's.
#[inline(always)]
pub(super) unsafe fn store_row_512(
    p: *mut f32,
    (m0, m1): (__mmask16, __mmask16),
    (o0, o1): (__m512, __m512),
    overwrite: bool,
    act: Option<Activation>,
) {
    // SAFETY: the function's contract.
    unsafe {
        let p1 = p.add(16);
        let (mut v0, mut v1) = if overwrite {
            (o0, o1)
        } else {
            (
                _mm512_add_ps(_mm512_maskz_loadu_ps(m0, p), o0),
                _mm512_add_ps(_mm512_maskz_loadu_ps(m1, p1), o1),
            )
        };
        if let Some(act) = act {
            (v0, v1) = activate_512((v0, v1), act);
        }
        _mm512_mask_storeu_ps(p, m0, v0);
        _mm512_mask_storeu_ps(p1, m1, v1);
    }
}

/// `act` applied to a row of 32 floats in two registers: the AMX finishing
/// steps' activation, whether the row goes to C or to bf16 tile lines, so
/// both routes give the same values ([`crate::avx512::activate`]).
///
/// # Safety
/// The CPU has AVX-512F (inlined, like [`store_row_512`], into functions
/// that enable it).
#[inline(always)]
pub(super) unsafe fn activate_512((v0, v1): (__m512, __m512), act: Activation) -> (__m512, __m512) {
    // SAFETY: AVX-512F by the contract.
    unsafe {
        (
            crate::avx512::activate(v0, act),
            crate::avx512::activate(v1, act),
        )
    }
}

/// Adds one 16-column half of an AVX2 tile (two ymm per row) onto C's tile or
/// onto the tile's bias ([`Onto`], as [`store_512`]) and stores it there.
///
/// # Safety
/// The CPU has AVX; `half` is 0 or 1 with `half * 16 < cols`, `cols <= 32`, the
/// `rows × cols` floats at `c` (row stride `ldc`) are valid for reads and
/// writes and ours alone, and a non-null bias holds `cols` floats.
#[inline(always)]
unsafe fn add_half_256(
    acc: &[__m256],
    c: *mut f32,
    ldc: usize,
    rows: usize,
    cols: usize,
    half: usize,
    onto: Onto,
) {
    let half_cols = (cols - half * 16).min(16);
    // This half's bias, zero past `cols` (those lanes are never stored).
    let bias = match onto {
        Onto::Bias(b) | Onto::OutputAndBias(b) if !b.is_null() => {
            let mut v = [0f32; 16];
            // SAFETY: a non-null bias holds `cols` values and
            // half * 16 + half_cols <= cols (the contract).
            unsafe { std::ptr::copy_nonoverlapping(b.add(half * 16), v.as_mut_ptr(), half_cols) };
            Some(v)
        }
        Onto::Bias(_) => Some([0f32; 16]),
        Onto::Output | Onto::OutputAndBias(_) => None,
        Onto::BiasActivated(..) => unreachable!("only the AVX-512 f32 kernel activates its tile"),
    };
    let reads_c = !matches!(onto, Onto::Bias(_));
    // SAFETY: `v` is 16 local floats: two unaligned 8-float loads.
    let bias_vectors = bias.map(|v| unsafe {
        (
            _mm256_loadu_ps(v.as_ptr()),
            _mm256_loadu_ps(v.as_ptr().add(8)),
        )
    });
    for (r, pair) in acc.chunks_exact(2).enumerate().take(rows) {
        // SAFETY: r < rows and half * 16 + half_cols <= cols: the floats touched
        // are in row r of the C tile, valid and ours by the contract; `tmp` is
        // 16 local floats.
        unsafe {
            let p = c.add(r * ldc + half * 16);
            if half_cols == 16 {
                let p1 = p.add(8);
                let (base0, base1) = match (reads_c, bias_vectors) {
                    (false, Some(b)) => b,
                    (true, Some((b0, b1))) => (
                        _mm256_add_ps(_mm256_loadu_ps(p), b0),
                        _mm256_add_ps(_mm256_loadu_ps(p1), b1),
                    ),
                    (_, None) => (_mm256_loadu_ps(p), _mm256_loadu_ps(p1)),
                };
                _mm256_storeu_ps(p, _mm256_add_ps(base0, pair[0]));
                _mm256_storeu_ps(p1, _mm256_add_ps(base1, pair[1]));
            } else {
                let mut tmp = [0f32; 16];
                _mm256_storeu_ps(tmp.as_mut_ptr(), pair[0]);
                _mm256_storeu_ps(tmp.as_mut_ptr().add(8), pair[1]);
                for (j, &v) in tmp.iter().enumerate().take(half_cols) {
                    let base = match (reads_c, &bias) {
                        (false, Some(b)) => b[j],
                        (true, Some(b)) => *p.add(j) + b[j],
                        (_, None) => *p.add(j),
                    };
                    *p.add(j) = base + v;
                }
            }
        }
    }
}

/// The sums of `kc` depth steps of one 16-column half of an AVX2 f32 tile,
/// first `R` rows (all MR_256 for a full tile): a step is MR_256 packed A
/// values, of which the first `R` are read, and this half's 16 of the
/// panel's NR weights (`b` starts at the half). Accumulators past row `R`
/// stay zero; each sum gets the same multiply-adds in the same order whatever
/// `R`.
///
/// # Safety
/// The CPU has AVX2 and FMA; the A panel at `a` and the weight panel at `b`
/// hold `kc` steps (the micro-kernel contract, see [`super::MicroF32`]);
/// `R <= MR_256`.
#[inline(always)]
unsafe fn sums_half_256<const R: usize>(
    kc: usize,
    a: *const f32,
    b: *const f32,
    ahead: Ahead,
) -> [__m256; 2 * MR_256] {
    // SAFETY: the CPU has AVX (the contract).
    let mut acc = [unsafe { _mm256_setzero_ps() }; 2 * MR_256];
    let (mut ap, mut bp) = (a, b);
    let mut ahead = ahead.over(kc);
    // Four steps a turn of the loop, so its counter, branches and the
    // pacer's check cost a quarter as many slots: on Intel cores they issue
    // to the ports the 256-bit FMAs use (0 and 1), and at one step a turn
    // (12 FMAs) the products ran at 83–90% of the FMA peak. Four a turn,
    // alternating in one process (Intel Xeon of family 6 model 207 capped at
    // AVX2, 2026-12-07): products +7.5–13%, the image and text towers +5–7%.
    // The AVX-512 loop (28 FMAs a step) gained nothing from two a turn.
    for _ in 0..kc / UNROLL_256 {
        ahead.ticks(UNROLL_256);
        for _ in 0..UNROLL_256 {
            // SAFETY: each of the `kc` steps is inside the panels (the
            // contract).
            unsafe { half_step_256::<R>(&mut acc, &mut ap, &mut bp) };
        }
    }
    for _ in 0..kc % UNROLL_256 {
        ahead.tick();
        // SAFETY: as above, for the last `kc % UNROLL_256` steps.
        unsafe { half_step_256::<R>(&mut acc, &mut ap, &mut bp) };
    }
    acc
}

/// One depth step of [`sums_half_256`] at `ap` and `bp`, which it moves
/// past the step.
///
/// # Safety
/// The CPU has AVX and FMA; `ap` holds R <= MR_256 floats and `bp` 16.
#[inline(always)]
unsafe fn half_step_256<const R: usize>(
    acc: &mut [__m256; 2 * MR_256],
    ap: &mut *const f32,
    bp: &mut *const f32,
) {
    // SAFETY: R floats of the A panel and 16 of this half of the weight
    // panel's NR (the contract); unaligned loads need no alignment.
    unsafe {
        fma_step_256::<R>(acc, *ap, _mm256_loadu_ps(*bp), _mm256_loadu_ps(bp.add(8)));
        *ap = ap.add(MR_256);
        *bp = bp.add(NR);
    }
}

/// Depth steps per turn of the AVX2 f32 sums' loop.
const UNROLL_256: usize = 4;

/// [`fma_step_512`] for one 16-column half of an AVX2 f32 tile.
///
/// # Safety
/// The CPU has AVX and FMA; `a` holds `R <= MR_256` floats.
#[inline(always)]
unsafe fn fma_step_256<const R: usize>(
    acc: &mut [__m256; 2 * MR_256],
    a: *const f32,
    b0: __m256,
    b1: __m256,
) {
    for r in 0..R {
        // SAFETY: r < R floats at `a`; AVX and FMA (the contract).
        unsafe {
            let av = _mm256_broadcast_ss(&*a.add(r));
            acc[2 * r] = _mm256_fmadd_ps(av, b0, acc[2 * r]);
            acc[2 * r + 1] = _mm256_fmadd_ps(av, b1, acc[2 * r + 1]);
        }
    }
}

/// The AVX2 f32 kernel over the first `R` rows of a tile, onto `onto`: a
/// 32-wide panel is two 16-wide halves, 12 accumulators each in the 16 ymm.
///
/// # Safety
/// The micro-kernel contract (see [`super::MicroF32`]), `rows <= R <= MR_256`,
/// and a non-null bias in `onto` holds `cols` floats; inlined into functions
/// that enable AVX2 and FMA.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn micro_f32_256<const R: usize>(
    kc: usize,
    a: *const u32,
    b: *const u8,
    c: *mut f32,
    ldc: usize,
    rows: usize,
    cols: usize,
    onto: Onto,
    ahead: Ahead,
) {
    for half in 0..2 {
        if half * 16 >= cols {
            break;
        }
        let ahead = ahead.part(half, 2);
        // SAFETY: half * 16 < NR: inside the weight panel's first step; the
        // panels hold `kc` steps, the C tile is ours and the bias `cols` long
        // (the contract).
        unsafe {
            let acc = sums_half_256::<R>(kc, a.cast(), b.cast::<f32>().add(half * 16), ahead);
            add_half_256(&acc, c, ldc, rows, cols, half, onto);
        }
    }
}

/// A full-tile AVX2 micro-kernel and its first-depth-block twin from a
/// kernel body that adds onto an [`Onto`], as [`micro_512_pair`] makes them
/// for AVX-512.
macro_rules! micro_256_pair {
    ($body:expr, $(#[$doc:meta])* $micro:ident, $first:ident) => {
        $(#[$doc])*
        ///
        /// # Safety
        /// The micro-kernel contract (see [`super::MicroF32`]).
        #[target_feature(enable = "avx2,fma")]
        #[allow(clippy::too_many_arguments)]
        pub unsafe fn $micro(
            kc: usize,
            a: *const u32,
            b: *const u8,
            c: *mut f32,
            ldc: usize,
            rows: usize,
            cols: usize,
            ahead: Ahead,
        ) {
            // SAFETY: AVX2 and FMA are enabled here; the rest is the contract.
            unsafe { ($body)(kc, a, b, c, ldc, rows, cols, Onto::Output, ahead) };
        }

        #[doc = concat!("[`", stringify!($micro), "`] for a tile's first depth block, with its bias: C = sums + bias, written without reading C; or with `ONTO_C`, C = (C + bias) + sums, what `Tile::init` then the kernel would add (a residual).")]
        ///
        /// # Safety
        /// The micro-kernel contract (see [`super::MicroF32First`]): `bias`
        /// is null or holds the tile's `cols` bias values.
        #[target_feature(enable = "avx2,fma")]
        #[allow(clippy::too_many_arguments)]
        pub unsafe fn $first<const ONTO_C: bool>(
            kc: usize,
            a: *const u32,
            b: *const u8,
            c: *mut f32,
            ldc: usize,
            rows: usize,
            cols: usize,
            bias: *const f32,
            ahead: Ahead,
        ) {
            let onto = Onto::first_block::<ONTO_C>(bias);
            // SAFETY: AVX2 and FMA are enabled here; the rest is the contract.
            unsafe { ($body)(kc, a, b, c, ldc, rows, cols, onto, ahead) };
        }
    };
}

micro_256_pair!(
    micro_f32_256::<MR_256>,
    /// The f32 6×16 kernel, twice per 32-column panel.
    micro_f32_avx2,
    micro_f32_avx2_first
);

/// [`micro_f32_avx2`] for a tile of `R < MR_256` rows; see
/// [`micro_f32_avx512_rows`] (same order of multiply-adds as the full kernel).
///
/// # Safety
/// The micro-kernel contract (see [`super::MicroF32`]), with `rows == R`.
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn micro_f32_avx2_rows<const R: usize>(
    kc: usize,
    a: *const u32,
    b: *const u8,
    c: *mut f32,
    ldc: usize,
    rows: usize,
    cols: usize,
    ahead: Ahead,
) {
    debug_assert!(R < MR_256 && rows == R);
    // SAFETY: AVX2 and FMA are enabled here; rows == R; the rest is the
    // contract.
    unsafe { micro_f32_256::<R>(kc, a, b, c, ldc, rows, cols, Onto::Output, ahead) };
}

/// The few-row AVX2 f32 kernels, `[r - 1]` for `r` rows.
pub const FEW_F32_AVX2: [super::MicroF32; MR_256 - 1] = [
    micro_f32_avx2_rows::<1>,
    micro_f32_avx2_rows::<2>,
    micro_f32_avx2_rows::<3>,
    micro_f32_avx2_rows::<4>,
    micro_f32_avx2_rows::<5>,
];

/// [`micro_f32_avx512`] on bf16 weight pairs (`[k/2][NR][2]`, what
/// `Panels::Bf16` holds) that also writes them, widened, into the f32 panel
/// `widened` (`[k][NR]`) the block's other row tiles then read with the f32
/// kernels (`Micro::WidenedBf16`). The first tile of a block does the
/// widening inside its sums: the stores use ports the FMAs leave idle, and
/// the weights' arrival overlaps the tile's arithmetic, where a separate
/// pass over the block cost 3-5% of the product (AMX Xeon capped at AVX-512,
/// 1600 rows). Each output gets [`micro_f32_avx512`]'s multiply-adds in its
/// order, so the tile matches the other tiles bit for bit. `onto` is what
/// the sums are stored onto: [`Onto::Output`], or on a first depth block
/// what the f32 tiles' first-block kernel stores (bias, activation).
///
/// # Safety
/// The micro-kernel contract (see [`super::MicroWidening`]): that of
/// [`super::MicroF32`], with `b` holding `kc.div_ceil(2)` steps of NR bf16
/// pairs, `widened` valid for writes of `kc.next_multiple_of(2) × NR` floats
/// that no one else reads or writes meanwhile, and a bias in `onto` null or
/// holding the tile's `cols` values.
#[target_feature(enable = "avx512f,avx512bw")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn micro_f32_avx512_widening(
    kc: usize,
    a: *const u32,
    b: *const u8,
    widened: *mut f32,
    c: *mut f32,
    ldc: usize,
    rows: usize,
    cols: usize,
    onto: Onto,
    ahead: Ahead,
) {
    // SAFETY: the contract, passed on; AVX-512F and BW are enabled here.
    unsafe {
        let acc = widening_sums_512(kc, a, b, widened, ahead);
        store_512(&acc, c, ldc, rows, cols, onto)
    };
}

/// [`micro_f32_avx512_widening`]'s sums, and its widened panel written.
///
/// Not inlined: with the store's kind known only at run time, its loop over
/// the tile's rows stayed a loop indexing the accumulators, so they lived on
/// the stack through the whole sum (the widening tile ran 2.3× slower, perf,
/// Intel Xeon of family 6 model 207). Returned, they pass through memory
/// once per tile.
///
/// # Safety
/// As [`micro_f32_avx512_widening`].
#[target_feature(enable = "avx512f,avx512bw")]
#[inline(never)]
unsafe fn widening_sums_512(
    kc: usize,
    a: *const u32,
    b: *const u8,
    widened: *mut f32,
    ahead: Ahead,
) -> [__m512; 2 * MR_512] {
    let mut a = a.cast::<f32>();
    let mut b = b.cast::<u32>();
    let mut out = widened;
    let mut acc = [_mm512_setzero_ps(); 2 * MR_512];
    let mut ahead = ahead.over(kc.div_ceil(2));
    for pair in 0..kc.div_ceil(2) {
        ahead.tick();
        // SAFETY: each pair step reads MR_512 floats of the A panel per depth
        // (two depths unless `kc` is odd and this is the last pair, whose
        // second depth A does not hold and is not summed) and NR = 32 packed
        // pairs of the weight panel, and writes 2 × NR floats of `widened`,
        // all inside by the contract. A bf16 is the top half of its f32: the
        // pair's first value sits in the low 16 bits, shifted up; the second
        // is loaded with its word's low 16 bits masked to zero.
        unsafe {
            let w0 = _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_loadu_si512(b.cast())));
            let w1 = _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_loadu_si512(
                b.add(16).cast(),
            )));
            _mm512_storeu_ps(out, w0);
            _mm512_storeu_ps(out.add(16), w1);
            fma_step_512::<MR_512>(&mut acc, a, w0, w1);
            a = a.add(MR_512);
            const HIGH: __mmask32 = 0xaaaa_aaaa;
            let x0 = _mm512_castsi512_ps(_mm512_maskz_loadu_epi16(HIGH, b.cast()));
            let x1 = _mm512_castsi512_ps(_mm512_maskz_loadu_epi16(HIGH, b.add(16).cast()));
            _mm512_storeu_ps(out.add(NR), x0);
            _mm512_storeu_ps(out.add(NR + 16), x1);
            if 2 * pair + 1 < kc {
                fma_step_512::<MR_512>(&mut acc, a, x0, x1);
                a = a.add(MR_512);
            }
            b = b.add(NR);
            out = out.add(2 * NR);
        }
    }
    acc
}

/// [`micro_f32_avx512_widening`] for AVX2: [`micro_f32_avx2`] on bf16 weight
/// pairs, writing them widened for the block's other tiles. Per 16-column
/// half: 12 accumulators, two weight vectors, a broadcast and the mask that
/// keeps a pair's second value fill the 16 ymm.
///
/// # Safety
/// As [`micro_f32_avx512_widening`], on a CPU with AVX2 and FMA, and `onto`
/// never [`Onto::BiasActivated`] (no AVX2 kernel activates its tile).
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn micro_f32_avx2_widening(
    kc: usize,
    a: *const u32,
    b: *const u8,
    widened: *mut f32,
    c: *mut f32,
    ldc: usize,
    rows: usize,
    cols: usize,
    onto: Onto,
    ahead: Ahead,
) {
    for half in 0..2 {
        // The f32 kernels skip a half past `cols` too: no tile reads it.
        if half * 16 >= cols {
            break;
        }
        // SAFETY: the contract, passed on; AVX2 and FMA are enabled here;
        // half * 16 < cols.
        unsafe {
            let acc = widening_half_sums_256(kc, a, b, widened, half, ahead);
            add_half_256(&acc, c, ldc, rows, cols, half, onto)
        };
    }
}

/// One 16-column half's sums of [`micro_f32_avx2_widening`], and that half of
/// its widened panel written. Not inlined, as [`widening_sums_512`].
///
/// # Safety
/// As [`micro_f32_avx2_widening`], with `half` 0 or 1.
#[target_feature(enable = "avx2,fma")]
#[inline(never)]
unsafe fn widening_half_sums_256(
    kc: usize,
    a: *const u32,
    b: *const u8,
    widened: *mut f32,
    half: usize,
    ahead: Ahead,
) -> [__m256; 2 * MR_256] {
    let high = _mm256_set1_epi32(0xffff_0000_u32 as i32);
    let mut ap = a.cast::<f32>();
    // SAFETY: half * 16 < NR: inside the first pair step of the panel and
    // of `widened`'s first step.
    let (mut bp, mut out) = unsafe { (b.cast::<u32>().add(half * 16), widened.add(half * 16)) };
    let mut acc = [_mm256_setzero_ps(); 2 * MR_256];
    let mut ahead = ahead.part(half, 2).over(kc.div_ceil(2));
    // Two pairs a turn of the loop, for the reason the f32 sums take four
    // steps a turn (`sums_half_256`); the last pair, and one whose second
    // depth is past `kc`, after. With one pair a turn, widened bf16 ran
    // 0.988× f32 at batch 8 once the f32 loop took four (`clip_precision_ab`
    // capped at AVX2, faster in 7 of 30 rounds, Intel Xeon of family 6 model
    // 207); with two, 0.999× (14 of 30), and 1.005× at batch 32.
    let whole_pairs = kc / 2;
    for _ in 0..whole_pairs / 2 {
        ahead.ticks(2);
        // SAFETY: two whole pairs, inside the panels (as below).
        unsafe {
            widen_pair_256(&mut acc, &mut ap, &mut bp, &mut out, high, true);
            widen_pair_256(&mut acc, &mut ap, &mut bp, &mut out, high, true);
        }
    }
    for pair in 2 * (whole_pairs / 2)..kc.div_ceil(2) {
        ahead.tick();
        // SAFETY: as in `widening_sums_512`, for this half's 16 of the NR
        // pairs and widened columns; the pair's second depth is summed only
        // where A holds it.
        unsafe {
            widen_pair_256(
                &mut acc,
                &mut ap,
                &mut bp,
                &mut out,
                high,
                2 * pair + 1 < kc,
            )
        };
    }
    acc
}

/// One pair step of [`widening_half_sums_256`] at `ap`, `bp` and `out`,
/// which it moves past the step: the pair's two depths widened into `out`
/// and summed (the second only with `second`: A holds it).
///
/// # Safety
/// The CPU has AVX2 and FMA; `ap` holds MR_256 floats a summed depth, `bp`
/// 16 packed pairs and `out` room for two widened steps of NR floats from
/// this half's column; `high` has the top 16 bits of each lane set.
#[inline(always)]
unsafe fn widen_pair_256(
    acc: &mut [__m256; 2 * MR_256],
    ap: &mut *const f32,
    bp: &mut *const u32,
    out: &mut *mut f32,
    high: __m256i,
    second: bool,
) {
    // SAFETY: the contract. A bf16 is the top half of its f32: the pair's
    // first value sits in the low 16 bits, shifted up; the second keeps the
    // word's top bits.
    unsafe {
        let (b, o) = (*bp, *out);
        let w0 = _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_loadu_si256(b.cast())));
        let w1 = _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_loadu_si256(b.add(8).cast())));
        _mm256_storeu_ps(o, w0);
        _mm256_storeu_ps(o.add(8), w1);
        fma_step_256::<MR_256>(acc, *ap, w0, w1);
        *ap = ap.add(MR_256);
        let x0 = _mm256_castsi256_ps(_mm256_and_si256(_mm256_loadu_si256(b.cast()), high));
        let x1 = _mm256_castsi256_ps(_mm256_and_si256(_mm256_loadu_si256(b.add(8).cast()), high));
        _mm256_storeu_ps(o.add(NR), x0);
        _mm256_storeu_ps(o.add(NR + 8), x1);
        if second {
            fma_step_256::<MR_256>(acc, *ap, x0, x1);
            *ap = ap.add(MR_256);
        }
        *bp = b.add(NR);
        *out = o.add(2 * NR);
    }
}

/// Rows of the AVX2 int8 kernels: 6 accumulators beside the paired kernel's
/// 4 weight vectors, the ones, two activation words and their products fit
/// the 16 ymm. At 4 rows one accumulator spilled to the stack every step:
/// images 3–7% slower (AMX Xeon capped at AVX2, 3 of 3 pairs, 2026-12-05).
pub const MR_256_INT8: usize = 3;

/// int8 without VNNI: `vpmaddubsw` multiplies each activation byte by its
/// weight byte and adds neighbouring pairs into i16, `vpmaddwd` by ones adds
/// those pairs into i32: the four-product sums of `vpdpbusd`, two multiply
/// instructions per 32 products. The i16 pair sums saturate unless the
/// activations stop at 127 ([`super::ActivationLevels::U7`]; 2 · 127 · 127 <
/// 32767), so this kernel's rows are quantised to 128 levels, not 256. The
/// kernel it replaced widened both sides to i16 and took 256 levels at one
/// `vpmaddwd` per 16 products, plus the shifts that sign-extended the weights:
/// 1.2–1.4× seer's f32 against 1.7× here for the micro-kernel alone (AMX
/// Xeon capped at AVX2). Weights and activations keep the VNNI layout (four
/// i8 per column word, four u8 per row word). The CPUs that run this kernel
/// pack ±63 weights, which [`micro_int8_avx2_paired`] multiplies instead;
/// this one serves ±127 weights (packed where another kernel was chosen).
///
/// # Safety
/// The int8 micro-kernel contract (see [`super::MicroInt8`]); the activation
/// bytes are at most 127.
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn micro_int8_avx2(
    kc: usize,
    a: *const u32,
    b: *const u8,
    c: *mut f32,
    ldc: usize,
    rows: usize,
    cols: usize,
    d: &super::Dequant,
) {
    // SAFETY: the contract; AVX2 is enabled here.
    unsafe { int8_tile_256::<MR_256_INT8>(kc, a, b, c, ldc, rows, cols, d, dot_maddubs) };
}

/// An AVX2 int8 tile of `MR` rows, one 16-column half at a time: its sums
/// through `dot` ([`int8_sums_half_256`]), then dequantised onto C
/// ([`store_int8_half_256`]).
///
/// # Safety
/// The int8 micro-kernel contract (see [`super::MicroInt8`]); the CPU has
/// AVX2, FMA and what `dot` needs (inlined into functions that enable them).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn int8_tile_256<const MR: usize>(
    kc: usize,
    a: *const u32,
    b: *const u8,
    c: *mut f32,
    ldc: usize,
    rows: usize,
    cols: usize,
    d: &super::Dequant,
    dot: impl Fn(__m256i, __m256i, __m256i) -> __m256i + Copy,
) {
    for half in 0..2 {
        if half * 16 >= cols {
            break;
        }
        // SAFETY: half * 16 < NR: inside the first group step of the panel;
        // the panels hold `kc` depths (the contract).
        let acc = unsafe { int8_sums_half_256::<MR>(kc.div_ceil(4), a, b.add(half * 64), dot) };
        // SAFETY: as above; the C tile is ours (the contract).
        unsafe { store_int8_half_256(&acc, c, ldc, rows, cols, half, d) };
    }
    // SAFETY: the C tile is ours (the contract). Over the whole tile, not
    // per half: 16-column rows left LLVM's activation loops in their scalar
    // remainder (the int8 image tower 8% slower capped at AVX2).
    unsafe { d.activate(c, ldc, rows, cols) };
}

/// The i32 sums of `groups` group steps (four depths each) of one 16-column
/// half of an AVX2 int8 tile of `MR` rows: a step is MR activation words and
/// this half's 16 of the panel's NR column words (`b` starts at the half),
/// each word pair summed into its accumulator by `dot(acc, x, w)`.
///
/// # Safety
/// The CPU has AVX2 and what `dot` needs; the panels hold the steps.
#[inline(always)]
unsafe fn int8_sums_half_256<const MR: usize>(
    groups: usize,
    a: *const u32,
    b: *const u8,
    dot: impl Fn(__m256i, __m256i, __m256i) -> __m256i,
) -> [[__m256i; 2]; MR] {
    // SAFETY: AVX by the contract.
    let mut acc = [[unsafe { _mm256_setzero_si256() }; 2]; MR];
    let (mut ap, mut bp) = (a, b);
    for _ in 0..groups {
        // SAFETY: each group step reads MR u32 words of the A panel and 16
        // of this half's NR four-byte column words, inside by the contract.
        unsafe {
            let w0 = _mm256_loadu_si256(bp.cast());
            let w1 = _mm256_loadu_si256(bp.add(32).cast());
            for (r, [s0, s1]) in acc.iter_mut().enumerate() {
                let x = _mm256_set1_epi32(*ap.add(r) as i32);
                *s0 = dot(*s0, x, w0);
                *s1 = dot(*s1, x, w1);
            }
            ap = ap.add(MR);
            bp = bp.add(4 * NR);
        }
    }
    acc
}

/// `acc` plus the four-product sums of u8 `x` by i8 `w` per i32 lane, through
/// `vpmaddubsw`'s saturating i16 pair sums (exact while `x` stays at most
/// 127) and `vpmaddwd` by ones.
#[inline(always)]
fn dot_maddubs(acc: __m256i, x: __m256i, w: __m256i) -> __m256i {
    // SAFETY: inlined only into functions that enable AVX2 (the int8 AVX2
    // kernels below).
    unsafe {
        let ones = _mm256_set1_epi16(1);
        _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(x, w), ones))
    }
}

/// [`micro_int8_avx2`] for weights of at most ±63 ([`super::WeightLevels::I7`]):
/// two group steps' `vpmaddubsw` pair sums (each at most 2 · 127 · 63 in
/// magnitude) add in i16 without saturating, so one `vpmaddwd` by ones and
/// one i32 add serve eight products where [`micro_int8_avx2`] needs them for
/// four: 10 instructions per row and two steps against 12, 6 of them on the
/// two multiply ports against 8.
///
/// # Safety
/// The int8 micro-kernel contract (see [`super::MicroInt8`]); the activation
/// bytes are at most 127 and the weights at most 63 in magnitude.
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn micro_int8_avx2_paired(
    kc: usize,
    a: *const u32,
    b: *const u8,
    c: *mut f32,
    ldc: usize,
    rows: usize,
    cols: usize,
    d: &super::Dequant,
) {
    const MR: usize = MR_256_INT8;
    let groups = kc.div_ceil(4);
    let ones = _mm256_set1_epi16(1);
    for half in 0..2 {
        if half * 16 >= cols {
            break;
        }
        let mut acc = [[_mm256_setzero_si256(); 2]; MR];
        let mut ap = a;
        // SAFETY: half * 16 < NR: inside the first group step of the panel.
        let mut bp = unsafe { b.add(half * 64) };
        for _ in 0..groups / 2 {
            // SAFETY: each pair of group steps reads 2 × MR u32 words of the
            // A panel and twice 16 of this half's NR column words, inside by
            // the contract.
            unsafe {
                let (w0, w1) = (bp, bp.add(32));
                let (v0, v1) = (bp.add(4 * NR), bp.add(4 * NR + 32));
                for (r, [acc0, acc1]) in acc.iter_mut().enumerate() {
                    let x = _mm256_set1_epi32(*ap.add(r) as i32);
                    let y = _mm256_set1_epi32(*ap.add(MR + r) as i32);
                    let s0 = _mm256_add_epi16(
                        _mm256_maddubs_epi16(x, _mm256_loadu_si256(w0.cast())),
                        _mm256_maddubs_epi16(y, _mm256_loadu_si256(v0.cast())),
                    );
                    let s1 = _mm256_add_epi16(
                        _mm256_maddubs_epi16(x, _mm256_loadu_si256(w1.cast())),
                        _mm256_maddubs_epi16(y, _mm256_loadu_si256(v1.cast())),
                    );
                    *acc0 = _mm256_add_epi32(*acc0, _mm256_madd_epi16(s0, ones));
                    *acc1 = _mm256_add_epi32(*acc1, _mm256_madd_epi16(s1, ones));
                }
                ap = ap.add(2 * MR);
                bp = bp.add(8 * NR);
            }
        }
        if groups % 2 == 1 {
            // SAFETY: the last group step, inside by the contract.
            let last = unsafe { int8_sums_half_256::<MR>(1, ap, bp, dot_maddubs) };
            for (sum, l) in acc.as_flattened_mut().iter_mut().zip(last.as_flattened()) {
                *sum = _mm256_add_epi32(*sum, *l);
            }
        }
        // SAFETY: AVX2 is enabled here; half * 16 < cols; the C tile is ours.
        unsafe { store_int8_half_256(&acc, c, ldc, rows, cols, half, d) };
    }
    // SAFETY: the C tile is ours (the contract); over the whole tile, as in
    // `int8_tile_256`.
    unsafe { d.activate(c, ldc, rows, cols) };
}

/// Rows of the AVX-VNNI int8 kernel: 12 accumulators, 2 weight vectors and
/// a broadcast in the 16 ymm (the AVX2 f32 kernel's tile).
pub const MR_256_VNNI: usize = MR_256;
// `store_int8_half_256` holds up to MR_256_VNNI rows of either kernel.
const _: () = assert!(MR_256_INT8 <= MR_256_VNNI);

/// int8 on AVX-VNNI's `vpdpbusd` on ymm (Intel Alder Lake and later cores,
/// Sierra Forest; CPUs without AVX-512 that have it): the four-product sums
/// in one instruction, summed in i32, so activations take 256 levels and
/// weights ±127 as on AVX-512 VNNI.
///
/// # Safety
/// The int8 micro-kernel contract (see [`super::MicroInt8`]) on a CPU with
/// AVX2, FMA and AVX-VNNI.
#[target_feature(enable = "avx2,fma,avxvnni")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn micro_int8_avxvnni(
    kc: usize,
    a: *const u32,
    b: *const u8,
    c: *mut f32,
    ldc: usize,
    rows: usize,
    cols: usize,
    d: &super::Dequant,
) {
    let dot = |acc, x, w| _mm256_dpbusd_avx_epi32(acc, x, w);
    // SAFETY: the contract; AVX2, FMA and AVX-VNNI are enabled here.
    unsafe { int8_tile_256::<MR_256_VNNI>(kc, a, b, c, ldc, rows, cols, d, dot) };
}

/// An AVX2 int8 tile half's i32 sums scaled back to floats and added onto C
/// (or, on a first depth block, the activations' offset term and the bias
/// with them; see [`super::Dequant`]).
///
/// # Safety
/// The CPU has AVX2 and FMA; `half` is 0 or 1 with `half * 16 < cols`; the C
/// tile is valid and ours (the int8 micro-kernel contract).
#[inline(always)]
unsafe fn store_int8_half_256(
    acc: &[[__m256i; 2]],
    c: *mut f32,
    ldc: usize,
    rows: usize,
    cols: usize,
    half: usize,
    d: &super::Dequant,
) {
    let col = half * 16;
    let load8 = |v: &[f32], at: usize| {
        let v: &[f32; 8] = v[at..at + 8].try_into().expect("8 column values");
        // SAFETY: `v` holds 8 floats: one unaligned load; AVX by the contract.
        unsafe { _mm256_loadu_ps(v.as_ptr()) }
    };
    let cs = [load8(d.col_scales, col), load8(d.col_scales, col + 8)];
    let first = d.first.as_ref().map(|f| {
        (
            f.mins,
            [load8(f.sums, col), load8(f.sums, col + 8)],
            [load8(f.bias, col), load8(f.bias, col + 8)],
        )
    });
    let overwrite = d.first.as_ref().is_some_and(|f| f.overwrite);
    // SAFETY: AVX by the contract.
    let mut out = [unsafe { _mm256_setzero_ps() }; 2 * MR_256_VNNI];
    for (r, acc) in acc.iter().enumerate().take(rows) {
        // SAFETY: AVX2 and FMA by the contract.
        unsafe {
            let rs = _mm256_set1_ps(d.row_scales[r]);
            for h in 0..2 {
                let o = match first {
                    Some((mins, s, b)) => _mm256_fmadd_ps(_mm256_set1_ps(mins[r]), s[h], b[h]),
                    None => _mm256_setzero_ps(),
                };
                let scale = _mm256_mul_ps(cs[h], rs);
                out[2 * r + h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc[h]), scale, o);
            }
        }
    }
    // The bias is already in `out`: overwriting adds it onto zeros.
    let onto = if overwrite {
        Onto::Bias(std::ptr::null())
    } else {
        Onto::Output
    };
    // SAFETY: AVX; half * 16 < cols; the C tile is ours (the contract).
    unsafe { add_half_256(&out[..2 * acc.len()], c, ldc, rows, cols, half, onto) };
}

/// [`super::quantise_row`] with AVX2: the same values, eight at a time.
///
/// # Safety
/// The CPU has AVX2.
#[target_feature(enable = "avx2")]
pub unsafe fn quantise_row_avx2(row: &[f32], out: &mut [u8], top: f32) -> (f32, f32) {
    assert!(out.len() >= row.len());
    let body = row.len() / 8 * 8;
    let (mut lo, mut hi) = (
        _mm256_set1_ps(f32::INFINITY),
        _mm256_set1_ps(f32::NEG_INFINITY),
    );
    for i in (0..body).step_by(8) {
        // SAFETY: i + 8 <= body <= row.len().
        let v = unsafe { _mm256_loadu_ps(row.as_ptr().add(i)) };
        // min/max return the second operand when either is NaN: NaNs skipped.
        lo = _mm256_min_ps(v, lo);
        hi = _mm256_max_ps(v, hi);
    }
    let mut lanes = ([0f32; 8], [0f32; 8]);
    // SAFETY: two local arrays of 8 floats.
    unsafe {
        _mm256_storeu_ps(lanes.0.as_mut_ptr(), lo);
        _mm256_storeu_ps(lanes.1.as_mut_ptr(), hi);
    }
    let tail = &row[body..];
    let lo = lanes
        .0
        .iter()
        .chain(tail)
        .fold(f32::INFINITY, |m, &x| m.min(x));
    let hi = lanes
        .1
        .iter()
        .chain(tail)
        .fold(f32::NEG_INFINITY, |m, &x| m.max(x));
    let (min, s) = super::quant_range(lo, hi, top);
    let inv = 1.0 / s;
    let (vmin, vinv) = (_mm256_set1_ps(min), _mm256_set1_ps(inv));
    let (half, zero, top_v) = (
        _mm256_set1_ps(0.5),
        _mm256_setzero_ps(),
        _mm256_set1_ps(top),
    );
    for i in (0..body).step_by(8) {
        // SAFETY: i + 8 <= body: inside `row`, and inside `out` (at least as
        // long, asserted), which takes 8 bytes as two 4-byte writes.
        unsafe {
            let v = _mm256_loadu_ps(row.as_ptr().add(i));
            let q = _mm256_add_ps(_mm256_mul_ps(_mm256_sub_ps(v, vmin), vinv), half);
            // max returns `zero` for NaN, as the scalar cast does.
            let q = _mm256_min_ps(_mm256_max_ps(q, zero), top_v);
            let q = _mm256_cvttps_epi32(q);
            // 0..=top in every i32 lane: two packs leave lane l's four bytes at
            // the bottom of 128-bit half l.
            let q = _mm256_packus_epi32(q, q);
            let q = _mm256_packus_epi16(q, q);
            let lo4 = _mm_cvtsi128_si32(_mm256_castsi256_si128(q));
            let hi4 = _mm_cvtsi128_si32(_mm256_extracti128_si256::<1>(q));
            out.as_mut_ptr().add(i).cast::<i32>().write_unaligned(lo4);
            out.as_mut_ptr()
                .add(i + 4)
                .cast::<i32>()
                .write_unaligned(hi4);
        }
    }
    for (o, &x) in out[body..].iter_mut().zip(tail) {
        *o = ((x - min) * inv + 0.5).clamp(0.0, top) as u8;
    }
    (min, s)
}

/// [`super::f32_to_bf16`] on 16 values at a time (the same integer rounding,
/// not `vcvtneps2bf16`, which flushes subnormals), the rest one by one.
///
/// # Safety
/// The CPU has AVX-512F.
#[target_feature(enable = "avx512f")]
pub unsafe fn round_to_bf16_avx512(src: &[f32], dst: &mut [u16]) {
    let n = src.len().min(dst.len());
    let body = n / 16 * 16;
    for i in (0..body).step_by(16) {
        // SAFETY: i + 16 <= body <= both lengths.
        unsafe {
            let x = _mm512_loadu_ps(src.as_ptr().add(i));
            let out = _mm512_cvtepi32_epi16(bf16_bits_512(x));
            _mm256_storeu_si256(dst.as_mut_ptr().add(i).cast(), out);
        }
    }
    for (d, &x) in dst[body..n].iter_mut().zip(&src[body..n]) {
        *d = super::f32_to_bf16(x);
    }
}

/// Each lane's f32 rounded to bf16 in the low 16 bits of its 32, the high
/// bits zero, as [`super::f32_to_bf16`] rounds: to nearest even, NaN to
/// 0x7fc0, subnormals kept (AVX-512 BF16's own conversion flushes them, so it
/// is not used).
#[inline]
#[target_feature(enable = "avx512f")]
pub(super) fn bf16_bits_512(x: __m512) -> __m512i {
    let bits = _mm512_castps_si512(x);
    let lsb = _mm512_and_si512(_mm512_srli_epi32::<16>(bits), _mm512_set1_epi32(1));
    let bias = _mm512_add_epi32(_mm512_set1_epi32(0x7fff), lsb);
    let rounded = _mm512_srli_epi32::<16>(_mm512_add_epi32(bits, bias));
    let is_nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(x, x);
    _mm512_mask_mov_epi32(rounded, is_nan, _mm512_set1_epi32(0x7fc0))
}

/// Stores the first R (<= 8) floats of `v` at `dst`, and nothing past them.
///
/// # Safety
/// The CPU has AVX; `dst` is valid for writes of R floats.
#[inline]
#[target_feature(enable = "avx")]
unsafe fn store_first<const R: usize>(dst: *mut f32, v: __m256) {
    let (low, high) = (_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    // SAFETY: each arm writes exactly R floats from `dst` (the contract).
    unsafe {
        match R {
            8 => _mm256_storeu_ps(dst, v),
            4..=7 => {
                _mm_storeu_ps(dst, low);
                match R - 4 {
                    1 => _mm_store_ss(dst.add(4), high),
                    2 => _mm_storel_epi64(dst.add(4).cast(), _mm_castps_si128(high)),
                    3 => {
                        _mm_storel_epi64(dst.add(4).cast(), _mm_castps_si128(high));
                        _mm_store_ss(dst.add(6), _mm_movehl_ps(high, high));
                    }
                    _ => {}
                }
            }
            _ => {
                let mut lanes = [0f32; 4];
                _mm_storeu_ps(lanes.as_mut_ptr(), low);
                std::ptr::copy_nonoverlapping(lanes.as_ptr(), dst, R.min(4));
            }
        }
    }
}

/// [`pack_f32_panel_avx512`] for the AVX2 kernels' panels of R <= 8 rows (6
/// for f32, 5 for widened bf16): eight steps at a time through an 8×8 register
/// transpose (rows past R are zeros), each step's R values stored exactly.
///
/// # Safety
/// The CPU has AVX; rows `0..R` at stride `lda` hold `kc` floats each from `a`,
/// and `out` has room for `kc · R` floats.
#[target_feature(enable = "avx")]
pub unsafe fn pack_f32_panel_avx2<const R: usize>(
    a: *const f32,
    lda: usize,
    kc: usize,
    out: *mut f32,
) {
    let mut s = 0;
    while s + 8 <= kc {
        // SAFETY: rows < R and steps s..s+8 <= kc are inside `a`; steps s..s+8
        // of the panel (R floats each) are inside `out` (the caller's contract).
        unsafe {
            let mut r = [_mm256_setzero_ps(); 8];
            for (i, reg) in r.iter_mut().enumerate().take(R) {
                *reg = _mm256_loadu_ps(a.add(i * lda + s));
            }
            let t: [__m256; 8] = [
                _mm256_unpacklo_ps(r[0], r[1]),
                _mm256_unpackhi_ps(r[0], r[1]),
                _mm256_unpacklo_ps(r[2], r[3]),
                _mm256_unpackhi_ps(r[2], r[3]),
                _mm256_unpacklo_ps(r[4], r[5]),
                _mm256_unpackhi_ps(r[4], r[5]),
                _mm256_unpacklo_ps(r[6], r[7]),
                _mm256_unpackhi_ps(r[6], r[7]),
            ];
            let u: [__m256; 8] = [
                _mm256_shuffle_ps::<0x44>(t[0], t[2]),
                _mm256_shuffle_ps::<0xEE>(t[0], t[2]),
                _mm256_shuffle_ps::<0x44>(t[1], t[3]),
                _mm256_shuffle_ps::<0xEE>(t[1], t[3]),
                _mm256_shuffle_ps::<0x44>(t[4], t[6]),
                _mm256_shuffle_ps::<0xEE>(t[4], t[6]),
                _mm256_shuffle_ps::<0x44>(t[5], t[7]),
                _mm256_shuffle_ps::<0xEE>(t[5], t[7]),
            ];
            // Column j: rows 0-3 from u[j % 4], rows 4-7 from u[4 + j % 4], the
            // lower 128-bit lane for j < 4 and the upper one after.
            let columns: [__m256; 8] = [
                _mm256_permute2f128_ps::<0x20>(u[0], u[4]),
                _mm256_permute2f128_ps::<0x20>(u[1], u[5]),
                _mm256_permute2f128_ps::<0x20>(u[2], u[6]),
                _mm256_permute2f128_ps::<0x20>(u[3], u[7]),
                _mm256_permute2f128_ps::<0x31>(u[0], u[4]),
                _mm256_permute2f128_ps::<0x31>(u[1], u[5]),
                _mm256_permute2f128_ps::<0x31>(u[2], u[6]),
                _mm256_permute2f128_ps::<0x31>(u[3], u[7]),
            ];
            for (j, col) in columns.iter().enumerate() {
                store_first::<R>(out.add((s + j) * R), *col);
            }
        }
        s += 8;
    }
    for step in s..kc {
        for i in 0..R {
            // SAFETY: as above, step < kc.
            unsafe { *out.add(step * R + i) = *a.add(i * lda + step) };
        }
    }
}

/// Transposes 16 rows of 16 floats in registers: afterwards `r[j]` holds
/// column `j` (element `i` from row `i`). Unpack pairs of rows, then pairs of
/// pairs, then 128-bit lanes twice: 64 shuffles for 256 floats.
/// (A safe function: callers without AVX-512F cannot call it outside `unsafe`.)
#[inline]
#[target_feature(enable = "avx512f")]
pub(super) fn transpose_16x16(r: &mut [__m512; 16]) {
    let mut t = [_mm512_setzero_ps(); 16];
    for i in 0..8 {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    // u[4g + j]: rows 4g..4g+4 at columns j, j+4, j+8, j+12 (one per lane).
    let mut u = [_mm512_setzero_ps(); 16];
    for g in 0..4 {
        let (a, b) = (_mm512_castps_pd(t[4 * g]), _mm512_castps_pd(t[4 * g + 2]));
        let (c, d) = (
            _mm512_castps_pd(t[4 * g + 1]),
            _mm512_castps_pd(t[4 * g + 3]),
        );
        u[4 * g] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, b));
        u[4 * g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, b));
        u[4 * g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(c, d));
        u[4 * g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(c, d));
    }
    for j in 0..4 {
        // [col j | col j+8] of row groups 0, 1, then of groups 2, 3; and
        // the same for columns j+4 and j+12.
        let v0 = _mm512_shuffle_f32x4::<0x88>(u[j], u[4 + j]);
        let v1 = _mm512_shuffle_f32x4::<0xdd>(u[j], u[4 + j]);
        let v2 = _mm512_shuffle_f32x4::<0x88>(u[8 + j], u[12 + j]);
        let v3 = _mm512_shuffle_f32x4::<0xdd>(u[8 + j], u[12 + j]);
        r[j] = _mm512_shuffle_f32x4::<0x88>(v0, v2);
        r[j + 8] = _mm512_shuffle_f32x4::<0xdd>(v0, v2);
        r[j + 4] = _mm512_shuffle_f32x4::<0x88>(v1, v3);
        r[j + 12] = _mm512_shuffle_f32x4::<0xdd>(v1, v3);
    }
}

/// Transposes the 16 rows of 16 values in `r` into 16 steps and stores each
/// step's first R values, one step every R floats from `out`: the packers'
/// panel layout.
///
/// # Safety
/// The CPU has AVX-512F (callers are AVX-512 functions, into which this is
/// inlined); `out` is valid for writes of 16 · R floats; R <= 16.
#[inline(always)]
unsafe fn store_transposed<const R: usize>(r: &mut [__m512; 16], out: *mut f32) {
    // SAFETY: AVX-512F and room for 16 steps of R floats (the contract).
    unsafe {
        transpose_16x16(r);
        for (j, reg) in r.iter().enumerate() {
            _mm512_mask_storeu_ps(out.add(j * R), ((1u32 << R) - 1) as u16, *reg);
        }
    }
}

/// One full R-row f32 A panel (R <= 16: 14 for the f32 kernel, 12 for the
/// widened bf16 one), step-major (`out[step · R + r] = row r's element step`),
/// 16 steps at a time through a register transpose: the scalar walk cost about
/// two cycles per float, a tenth of SAM's decoder.
///
/// # Safety
/// The CPU has AVX-512F; `a` is valid for reads of R rows of `kc` floats at
/// row stride `lda`; `out` is valid for writes of `R · kc` floats.
#[target_feature(enable = "avx512f")]
pub unsafe fn pack_f32_panel_avx512<const R: usize>(
    a: *const f32,
    lda: usize,
    kc: usize,
    out: *mut f32,
) {
    let mut s = 0;
    while s + 16 <= kc {
        let mut r = [_mm512_setzero_ps(); 16];
        // SAFETY: rows < R and steps s..s+16 <= kc are inside `a`; the R
        // stored lanes of each step are inside `out` (the caller's contract).
        unsafe {
            for (i, reg) in r.iter_mut().enumerate().take(R) {
                *reg = _mm512_loadu_ps(a.add(i * lda + s));
            }
            store_transposed::<R>(&mut r, out.add(s * R));
        }
        s += 16;
    }
    for step in s..kc {
        for i in 0..R {
            // SAFETY: as above, step < kc.
            unsafe { *out.add(step * R + i) = *a.add(i * lda + step) };
        }
    }
}

/// 32 floats from `src` rounded to bf16 as 16 little-endian pair words
/// (`bf16(x[2j]) | bf16(x[2j+1]) << 16`), rounding as [`super::f32_to_bf16`]
/// does: to nearest even, NaN to 0x7fc0, subnormals kept (AVX-512 BF16's own
/// conversion flushes them, so it is not used).
///
/// # Safety
/// The CPU has AVX-512F; `src` is valid for reads of 32 floats.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn bf16_pairs_512(src: *const f32) -> __m512i {
    // SAFETY: 32 floats at `src` (the caller's contract).
    unsafe { bf16_line_512(_mm512_loadu_ps(src), _mm512_loadu_ps(src.add(16))) }
}

/// [`bf16_pairs_512`] of 32 floats in two registers.
#[inline]
#[target_feature(enable = "avx512f")]
pub(super) fn bf16_line_512(lo: __m512, hi: __m512) -> __m512i {
    // Each float's rounded bf16 narrowed to 16 u16s: in order, they are 8
    // pair words.
    let round = |x: __m512| _mm512_cvtepi32_epi16(bf16_bits_512(x));
    _mm512_inserti64x4::<1>(_mm512_castsi256_si512(round(lo)), round(hi))
}

/// 16 floats rounded to bf16 by AVX512-BF16's `vcvtneps2bf16`, in order: one
/// instruction where [`bf16_bits_512`] and the narrowing take nine. To
/// nearest even as [`super::f32_to_bf16`], except that subnormal inputs and
/// results are zero and NaNs keep their sign and payload's top bits. Only for
/// values the AMX tiles multiply, which read subnormal bf16 as zero anyway:
/// the products differ only where an input below 2⁻¹²⁶ would have rounded
/// up to 2⁻¹²⁶.
#[inline]
#[target_feature(enable = "avx512f,avx512bf16")]
pub(super) fn bf16_native_256(x: __m512) -> __m256i {
    // SAFETY: 16 bf16 are 32 bytes either way.
    unsafe { std::mem::transmute::<__m256bh, __m256i>(_mm512_cvtneps_pbh(x)) }
}

/// [`bf16_line_512`] by `vcvtne2ps2bf16` (rounding as [`bf16_native_256`]):
/// `lo`'s 16 bf16, then `hi`'s.
#[inline]
#[target_feature(enable = "avx512f,avx512bf16")]
pub(super) fn bf16_line_native(lo: __m512, hi: __m512) -> __m512i {
    // SAFETY: 32 bf16 are 64 bytes either way.
    unsafe { std::mem::transmute::<__m512bh, __m512i>(_mm512_cvtne2ps_pbh(hi, lo)) }
}

/// Pair words of two rows by `vcvtne2ps2bf16` (rounding as
/// [`bf16_native_256`]): lane `l` is `bf16(lo[l]) | bf16(hi[l]) << 16`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
pub(super) fn bf16_pairs_native(lo: __m512, hi: __m512) -> __m512i {
    pairs_of_line(bf16_line_native(lo, hi))
}

/// A line of two rows' 16 bf16 each (`lo`'s, then `hi`'s) as their pair
/// words: lane `l` is `lo[l] | hi[l] << 16`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
pub(super) fn pairs_of_line(line: __m512i) -> __m512i {
    // Word 2l from word l, word 2l + 1 from word 16 + l.
    let interleave = _mm512_set_epi16(
        31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6, 21, 5, 20, 4,
        19, 3, 18, 2, 17, 1, 16, 0,
    );
    _mm512_permutexvar_epi16(interleave, line)
}

/// 16 bf16 widened to the f32 values they are.
#[inline]
#[target_feature(enable = "avx512f")]
pub(super) fn bf16_widen_512(words: __m256i) -> __m512 {
    _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(words)))
}

/// AMX's A tiles for one block of 32 rows (see `amx::Rows`): for each of
/// `steps` steps, each row's 32 depths of that step rounded to bf16 as one
/// 64-byte line, `out[(step · 32 + r) · 32 ..]`; rows past `rows` and depths
/// past `k` zero. One pass from the f32 rows, without a call per line.
///
/// # Safety
/// The CPU has AVX-512F and AVX512-BF16; `a` is valid for reads of `rows`
/// (<= 32) rows of `k` floats at stride `k`, `k <= 32 · steps`; `out` for
/// writes of `steps · 32 · 32` u16 values.
#[target_feature(enable = "avx512f,avx512bf16")]
pub unsafe fn round_block_to_tile_lines(
    a: *const f32,
    k: usize,
    rows: usize,
    steps: usize,
    out: *mut u16,
) {
    for r in 0..32 {
        // SAFETY: row r < rows is inside `a`; its lines, 32 lines apart from
        // line r, are inside `out` (the contract).
        unsafe {
            let row = (r < rows).then(|| std::slice::from_raw_parts(a.add(r * k), k));
            round_row_to_tile_lines(row, steps, out.add(r * 32))
        }
    }
}

/// One row's lines of an `amx::Rows` block: for each of `steps` steps its 32
/// depths rounded to bf16 ([`bf16_line_native`]: the tiles read them) as one
/// 64-byte line at `out[step · 32 · 32 ..]` (the block's other rows' lines
/// between), depths past the row zero; no row: zero lines (a block's padding
/// rows).
///
/// # Safety
/// The CPU has AVX-512F and AVX512-BF16; `row.len() <= 32 · steps`; `out` is
/// valid for writes of the 32 u16 values at each `step · 1024`, `step < steps`.
#[target_feature(enable = "avx512f,avx512bf16")]
pub unsafe fn round_row_to_tile_lines(row: Option<&[f32]>, steps: usize, out: *mut u16) {
    let row = row.unwrap_or(&[]);
    let full = row.len() / 32;
    // SAFETY: 32 floats from `src`: two unaligned loads.
    let line = |src: *const f32| unsafe {
        bf16_line_native(_mm512_loadu_ps(src), _mm512_loadu_ps(src.add(16)))
    };
    for s in 0..steps {
        let line = if s < full {
            // Depths s·32..s·32+32 are inside the row.
            line(row[s * 32..].as_ptr())
        } else if s == full && !row.len().is_multiple_of(32) {
            let mut tail = [0f32; 32];
            tail[..row.len() - s * 32].copy_from_slice(&row[s * 32..]);
            line(tail.as_ptr())
        } else {
            _mm512_setzero_si512()
        };
        // SAFETY: line `s` of this row is inside `out` (the contract).
        unsafe { _mm512_storeu_si512(out.add(s * 32 * 32).cast(), line) };
    }
}

/// [`round_row_to_tile_lines`] for the tiles' f32 products: each of `steps`
/// steps of the row as three lines, its values' three bf16 parts
/// ([`super::split_to_bf16`]) at `out[(3 · step + part) · 32 · 32 ..]`.
///
/// # Safety
/// The CPU has AVX-512F and AVX512-BF16; `row.len() <= 32 · steps`; `out` is
/// valid for writes of the 32 u16 values at each `part · 1024`, `part < 3 ·
/// steps`.
#[target_feature(enable = "avx512f,avx512bf16")]
pub unsafe fn split_row_to_tile_lines(row: Option<&[f32]>, steps: usize, out: *mut u16) {
    let row = row.unwrap_or(&[]);
    for s in 0..steps {
        let mut tail = [0f32; 32];
        let values = match row.get(s * 32..) {
            Some(rest) if rest.len() >= 32 => &rest[..32],
            rest => {
                let rest = rest.unwrap_or(&[]);
                tail[..rest.len()].copy_from_slice(rest);
                &tail[..]
            }
        };
        // SAFETY: `values` is 32 floats.
        let halves = unsafe {
            (
                _mm512_loadu_ps(values.as_ptr()),
                _mm512_loadu_ps(values.as_ptr().add(16)),
            )
        };
        for (part, line) in split_lines_native(halves).into_iter().enumerate() {
            // SAFETY: line 3·s + part of this row is inside `out` (the contract).
            unsafe { _mm512_storeu_si512(out.add((3 * s + part) * 32 * 32).cast(), line) };
        }
    }
}

/// 32 floats in two registers as the three tile lines of their bf16 parts
/// ([`super::split_to_bf16`]): each the nearest bf16 to what the parts before
/// it left, rounded by `vcvtne2ps2bf16` as [`bf16_line_native`] rounds (the
/// tiles read these lines). Half the instructions of rounding with
/// [`bf16_bits_512`]: this and [`split_row_to_tile_lines`] went from 8.1% to
/// 6.5% of DINOv2 ViT-S/14's f32 time on the tiles (perf, AMX Xeon,
/// 2026-12-05; the images/s moved within their noise).
#[inline]
#[target_feature(enable = "avx512f,avx512bf16")]
pub(super) fn split_lines_native((first, second): (__m512, __m512)) -> [__m512i; 3] {
    // The line of both halves' nearest bf16, and what each half leaves.
    let part = |first: __m512, second: __m512| {
        let line = bf16_line_native(first, second);
        let back = bf16_widen_512;
        let first_left = _mm512_sub_ps(first, back(_mm512_castsi512_si256(line)));
        let second_left = _mm512_sub_ps(second, back(_mm512_extracti64x4_epi64::<1>(line)));
        (line, first_left, second_left)
    };
    let (hi, first, second) = part(first, second);
    let (mid, first, second) = part(first, second);
    [hi, mid, bf16_line_native(first, second)]
}

/// [`split_lines_native`] for 16 floats: their three bf16 parts, 16 each in
/// order.
#[inline]
#[target_feature(enable = "avx512f,avx512bf16")]
pub(super) fn split_native_256(x: __m512) -> [__m256i; 3] {
    let hi = bf16_native_256(x);
    let x = _mm512_sub_ps(x, bf16_widen_512(hi));
    let mid = bf16_native_256(x);
    let x = _mm512_sub_ps(x, bf16_widen_512(mid));
    [hi, mid, bf16_native_256(x)]
}

/// [`super::split_to_bf16`] of 16 floats: their three bf16 parts, each in
/// the low half of a 32-bit lane.
#[inline]
#[target_feature(enable = "avx512f")]
fn split_bits_512(x: __m512) -> [__m512i; 3] {
    let rest = |x: __m512, bits: __m512i| {
        _mm512_sub_ps(x, _mm512_castsi512_ps(_mm512_slli_epi32::<16>(bits)))
    };
    let hi = bf16_bits_512(x);
    let x = rest(x, hi);
    let mid = bf16_bits_512(x);
    [hi, mid, bf16_bits_512(rest(x, mid))]
}

/// Two consecutive depths of an f32 weight panel (`NR` = 32 columns each) as
/// the split panel's pairs: for each part (hi, mid, lo) the 32 columns'
/// `[depth 0, depth 1]` bf16 pairs, 64 values, into `out[part]`.
///
/// # Safety
/// The CPU has AVX-512F.
#[target_feature(enable = "avx512f")]
pub unsafe fn split_pair_rows(rows: &[f32; 64], out: [&mut [u16; 64]; 3]) {
    for half in 0..2 {
        // SAFETY: columns half·16 .. +16 of both depths are inside `rows`.
        let (d0, d1) = unsafe {
            (
                _mm512_loadu_ps(rows.as_ptr().add(16 * half)),
                _mm512_loadu_ps(rows.as_ptr().add(32 + 16 * half)),
            )
        };
        let (p0, p1) = (split_bits_512(d0), split_bits_512(d1));
        for (part, out) in out.iter().enumerate() {
            // Column c's pair as one 32-bit lane: depth 0 low, depth 1 high.
            let pairs = _mm512_or_si512(p0[part], _mm512_slli_epi32::<16>(p1[part]));
            // SAFETY: this half's 16 pairs are inside the part's 64 values,
            // which `out` borrows mutably.
            unsafe { _mm512_storeu_si512(out.as_ptr().add(32 * half).cast_mut().cast(), pairs) };
        }
    }
}

/// One full R-row panel of bf16 pair words (R <= 16: the 14-row dot kernel),
/// step-major (`out[step · R + r]` = row r's pair `step`), rounding and packing
/// in one pass: 32 depths of each row become 16 words, then the 16×16 register
/// transpose. Rounding whole rows first and packing their words one at a time
/// cost a second pass over the block and a scalar walk.
///
/// # Safety
/// The CPU has AVX-512F; `a` is valid for reads of R rows of `kc` floats at row
/// stride `lda`; `out` is valid for writes of `R · kc.div_ceil(2)` words.
#[target_feature(enable = "avx512f")]
pub unsafe fn pack_bf16_pairs_panel_avx512<const R: usize>(
    a: *const f32,
    lda: usize,
    kc: usize,
    out: *mut u32,
) {
    let mut s = 0;
    while s + 32 <= kc {
        let mut r = [_mm512_setzero_ps(); 16];
        // SAFETY: rows < R and depths s..s+32 <= kc are inside `a`; words
        // s/2..s/2+16 of the R rows are inside `out` (the caller's contract).
        unsafe {
            for (i, reg) in r.iter_mut().enumerate().take(R) {
                *reg = _mm512_castsi512_ps(bf16_pairs_512(a.add(i * lda + s)));
            }
            store_transposed::<R>(&mut r, out.add(s / 2 * R).cast());
        }
        s += 32;
    }
    for step in s / 2..kc.div_ceil(2) {
        for i in 0..R {
            // SAFETY: as above: depth 2·step < kc, and 2·step + 1 is read only
            // when it is below kc.
            unsafe {
                let row = a.add(i * lda);
                let lo = super::f32_to_bf16(*row.add(2 * step)) as u32;
                let hi = if 2 * step + 1 < kc {
                    super::f32_to_bf16(*row.add(2 * step + 1)) as u32
                } else {
                    0
                };
                *out.add(step * R + i) = lo | hi << 16;
            }
        }
    }
}
