//! Intel AMX (Sapphire Rapids and later): bf16 and int8 products on the tile
//! registers, `asm!` because Rust stable has no AMX intrinsics.
//!
//! A tile holds 16 rows of 64 bytes. `tdpbf16ps` multiplies a 16 × 32 bf16 tile
//! of A by a 16 × 16 tile of B stored as pairs along K (`[k/2][n][2]`) into a
//! 16 × 16 f32 tile of C; `tdpbusd` does u8 × i8 in groups of four
//! (`[k/4][n][4]`) into i32. Those are exactly the weight panels' layouts (see
//! the module notes of [`super`]): a panel row of 32 columns is 128 bytes, so
//! each half-panel is a B tile read in place at stride 128. A is read in place
//! too, from rows converted once per product (bf16 rounding, or the int8
//! quantisation), K padded with zeros to whole tiles and the rows to whole
//! 32-row blocks: no per-block packing.
//!
//! Each call computes a 32 × 32 block of C over all of K in four accumulator
//! tiles (two A tiles × two B tiles per 32- or 64-deep step), stores it to a
//! buffer and finishes it there like the int8 kernels' first block: scale,
//! bias, residual, activation in one pass while the block is in L1.
//!
//! f32 weights run on the tiles too ([`Dot::Bf16x3`]), split as cuBLAS's
//! bf16×9 emulation of f32 does: each f32 value `x` is `hi + mid + lo`, three
//! bf16 values exactly ([`super::split_to_bf16`]), and `a·b` is the six of
//! the nine part products down to `2⁻¹⁶` of `hi·hi`: `hi·(hi + mid + lo) +
//! mid·(hi + mid) + lo·hi`. The three left out are below `2⁻²⁴` of it, as
//! far down as an f32 product's own rounding; bf16 products are exact in the
//! f32 sums. So the sums differ from f32 FMA's by their rounding, about as
//! far from the exact product as FMA's are (see the tests). A tile product
//! does sixteen times the multiply-adds of an AVX-512 core's FMAs in the same
//! time, so six of them still come out ahead: the products ran 1.2-1.5× the
//! AVX-512 f32 kernels' GFLOP/s on the Intel Xeon with AMX (2 cores,
//! `gemm_speed`), at 1.5× their weight memory (6 bytes a value).
//!
//! Linux hands out the tile registers' 8 KiB of state only on request
//! (`arch_prctl(ARCH_REQ_XCOMP_PERM)`, once per process); [`available`] makes
//! it. Each task loads the tile configuration itself: it is per thread.

use std::arch::asm;
use std::arch::x86_64::*;
use std::sync::OnceLock;

pub(crate) mod attention;
pub(crate) mod probe;
mod spare_lines;

use super::{Init, PackedWeights, Panels, RowQuant, Tile, NR};
use crate::gemm::Activation;
use crate::SendPtr;

/// Rows of C per call (two A tiles).
pub const MR: usize = 32;
/// K per step of a bf16 tile (32 values = 64 bytes per row); int8 goes 64 deep.
pub const BF16_STEP: usize = 32;
pub const INT8_STEP: usize = 64;
/// Bytes one step advances in a weight panel: 16 tile rows of 128 bytes.
const B_STEP_BYTES: usize = 16 * 4 * NR;
/// Steps per depth block: the block's slice of a weight panel (16 KiB) stays
/// in L1 while every row block's A tiles pass it. The split's slice is three
/// times that, past L1, yet 4 steps ran ViT-B/32 images 5-15% slower (2
/// steps between; the Intel Xeon with AMX, 4 alternations).
const BLOCK_STEPS: usize = 8;
// `run_block`'s write prefetches (two rows of C a step) cover a block's rows in
// whole depth blocks.
const _: () = assert!(MR.is_multiple_of(2 * BLOCK_STEPS) && BLOCK_STEPS.is_multiple_of(2));
/// Steps ahead [`dot_block`] fetches A into L1.
const A_AHEAD: usize = 2;
/// Bytes of A rows one task block keeps in L2 while every weight panel passes.
const A_BLOCK_BYTES: usize = 1 << 20;

/// Steps of depth per chunk of a split product's depth (768 values): see
/// [`depth_chunk`].
const SPLIT_CHUNK_STEPS: usize = 24;

/// Which tile product `w` takes.
fn dot_for(w: &PackedWeights) -> Dot {
    match w.panels {
        Panels::Int8(_) => Dot::Int8,
        Panels::Bf16x3(_) => Dot::Bf16x3,
        _ => Dot::Bf16,
    }
}

/// Steps of depth `run_block` takes at a time over its rows: all of them,
/// but a split product's in equal chunks of at most [`SPLIT_CHUNK_STEPS`],
/// their sums added into C. Its rows are three times as wide, so at ViT's
/// MLP depth of 3072 only 32 of them fit [`A_BLOCK_BYTES`] and every weight
/// slice passed one row tile (fc2 at 1600 rows ran 10% slower than f32
/// FMA's); chunks of 768 keep 224 rows.
fn depth_chunk(dot: Dot, steps: usize) -> usize {
    match dot {
        Dot::Bf16x3 => steps.div_ceil(steps.div_ceil(SPLIT_CHUNK_STEPS).max(1)),
        _ => steps,
    }
    .max(1)
}

/// Rows of A per task block for `w`: as many whole [`MR`] blocks as fit
/// [`A_BLOCK_BYTES`] at the width of a row's [`depth_chunk`], so the weights
/// stream from memory once per that many rows.
pub(super) fn row_block(w: &PackedWeights) -> usize {
    let dot = dot_for(w);
    let row_bytes = 64 * dot.parts() * depth_chunk(dot, w.k_padded / dot.step_depth());
    (A_BLOCK_BYTES / row_bytes / MR).max(1) * MR
}

/// Which tile dot product.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dot {
    /// `tdpbf16ps`: bf16 pairs into f32.
    Bf16,
    /// `tdpbusd`: u8 × i8 groups of four into i32.
    Int8,
    /// `tdpbf16ps` on f32 values split into three bf16 parts (see the module
    /// notes): six products a step, each part 32 deep.
    Bf16x3,
}

impl Dot {
    /// Tile steps of A and of B per step of depth: the split parts.
    fn parts(self) -> usize {
        match self {
            Dot::Bf16x3 => super::SPLIT_PARTS,
            _ => 1,
        }
    }

    /// Depth of a tile step (of each part).
    fn step_depth(self) -> usize {
        match self {
            Dot::Int8 => INT8_STEP,
            _ => BF16_STEP,
        }
    }
}

/// Whether this CPU has AMX-BF16 and AMX-INT8 and the kernel let this process
/// use the tiles. Asks Linux for the tile state on the first call. The code
/// around the tiles rounds to bf16 with AVX512-BF16 and shuffles words with
/// AVX-512BW, which every AMX CPU so far has (Sapphire Rapids and later);
/// one without them takes the other kernels.
pub fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        cpu_has_amx()
            && std::arch::is_x86_feature_detected!("avx512bf16")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && request_tile_state()
    })
}

/// CPUID leaf 7: AMX-BF16 (EDX bit 22), AMX-TILE (24), AMX-INT8 (25).
pub(crate) fn cpu_has_amx() -> bool {
    // Leaf 7 is valid when leaf 0 reports it.
    if __cpuid(0).eax < 7 {
        return false;
    }
    let edx = __cpuid_count(7, 0).edx;
    [22, 24, 25].iter().all(|bit| edx & (1 << bit) != 0)
}

#[cfg(target_os = "linux")]
fn request_tile_state() -> bool {
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_long = 18;
    // SAFETY: arch_prctl with this request only changes which extended state
    // the kernel lets this process enable; it reads and writes no memory.
    unsafe {
        libc::syscall(
            libc::SYS_arch_prctl,
            ARCH_REQ_XCOMP_PERM,
            XFEATURE_XTILEDATA,
        ) == 0
    }
}

/// Other systems: not tried (Windows enables the tiles without a request, but
/// this has only been run on Linux).
#[cfg(not(target_os = "linux"))]
fn request_tile_state() -> bool {
    false
}

/// The 64-byte `ldtilecfg` operand: palette 1, all eight tiles 16 rows × 64 bytes.
#[repr(C, align(64))]
struct TileConfig([u8; 64]);

const CONFIG: TileConfig = {
    let mut cfg = [0u8; 64];
    cfg[0] = 1;
    let mut t = 0;
    while t < 8 {
        cfg[16 + 2 * t] = 64; // bytes per row (u16, little endian)
        cfg[48 + t] = 16; // rows
        t += 1;
    }
    TileConfig(cfg)
};

/// The tiles configured on this thread for as long as it lives; released on drop.
struct Tiles;

impl Tiles {
    /// # Safety
    /// [`available`] returned true on this process.
    unsafe fn configure() -> Tiles {
        // SAFETY: the CPU has AMX and Linux granted the tile state (the
        // caller's contract); CONFIG is a valid 64-byte palette-1 config.
        unsafe { asm!("ldtilecfg [{}]", in(reg) &CONFIG.0, options(nostack, readonly)) };
        Tiles
    }
}

impl Drop for Tiles {
    fn drop(&mut self) {
        // SAFETY: the tiles were configured (a `Tiles` exists only then);
        // releasing them only returns the tile state to its initial one.
        unsafe { asm!("tilerelease", options(nostack, nomem)) };
    }
}

/// Where [`dot_block`] sends its write prefetches: two rows of 128 bytes a
/// step, from `first` at `stride` bytes a row.
#[derive(Clone, Copy)]
struct Prefetch {
    first: *const u8,
    stride: usize,
}

/// The 32 × 32 block of sums at `out` (row-major, 32 × 4 bytes per row):
/// `Σ_k A[r][k]·B[k][j]` over `steps` tile steps, added to what `out` holds
/// with `accumulate`, else replacing it. Each step also prefetches two rows
/// of `prefetch` for writing (none: the lines of `out` again, which are in L1),
/// and A's lines [`A_AHEAD`] steps on, past the end from `a_next` (the A of
/// the caller's next call).
///
/// # Safety
/// Tiles are configured on this thread ([`Tiles`]); `a` is valid for reads of
/// `steps` steps of 32 lines ([`Rows`]); `b` for `steps` steps of
/// [`B_STEP_BYTES`] (a weight panel, 128 bytes a row); with [`Dot::Bf16x3`]
/// both three times as many (`Dot::parts`); `out` for reads and
/// writes of 32 × 32 four-byte values. (A prefetch reads nothing and cannot
/// fault, so `prefetch` and `a_next` need no contract.)
#[allow(clippy::too_many_arguments)]
unsafe fn dot_block(
    dot: Dot,
    accumulate: bool,
    steps: usize,
    a: *const u8,
    b: *const u8,
    out: *mut u8,
    prefetch: Option<Prefetch>,
    a_next: *const u8,
) {
    let Prefetch {
        first: pf,
        stride: pf_stride,
    } = prefetch.unwrap_or(Prefetch {
        first: out,
        stride: 0,
    });
    // A from L2 two steps ahead into L1, the last steps' the next call's:
    // with the tiles not renamed, a tile load waits for the products reading
    // its register, and its lines' trip from L2 came on top of every step
    // (ViT-B/32's products at batch 8 on the Intel Xeon with AMX: 15-25%
    // faster; one step or four ahead were slower).
    let step_bytes = 64 * MR * dot.parts();
    let pa = if steps > A_AHEAD {
        a.wrapping_add(A_AHEAD * step_bytes)
    } else {
        a_next.wrapping_add((A_AHEAD - steps) * step_bytes)
    };
    // tmm0..3: C (rows 0-15 × cols 0-15, 0-15 × 16-31, 16-31 × 0-15, 16-31 × 16-31);
    // tmm4, 5: A rows 0-15, 16-31; tmm6, 7: B columns 0-15, 16-31.
    //
    // The loop over `steps` steps of `$parts` tile steps of A and of B each:
    // the step's loads and products (`$body`), then prefetches and the next
    // step, C's four tiles set first by `$init`.
    macro_rules! tile_loop {
        ($parts:expr, $init:expr, $($body:expr),+) => {
            // SAFETY: the function's contract: every tile load stays inside the
            // A rows and weight steps, the stores inside `out`.
            unsafe {
                asm!(
                    $init,
                    "test {steps}, {steps}",
                    "jz 3f",
                    "2:",
                    $($body,)+
                    // The lines of the step A_AHEAD on.
                    ".set line, 0",
                    ".rept {lines}",
                    "prefetcht0 [{pa} + line]",
                    ".set line, line + 64",
                    ".endr",
                    "prefetchw [{pf}]",
                    "prefetchw [{pf} + 64]",
                    "prefetchw [{pf} + {pfs}]",
                    "prefetchw [{pf} + {pfs} + 64]",
                    "lea {pf}, [{pf} + {pfs}*2]",
                    "add {a}, {astep}",
                    "add {b}, {bstep}",
                    "add {pa}, {astep}",
                    "cmp {steps}, {ahead} + 1",
                    "cmove {pa}, {an}",
                    "dec {steps}",
                    "jnz 2b",
                    "3:",
                    "tilestored [{out} + {ldo}*1], tmm0",
                    "tilestored [{out} + {ldo}*1 + 64], tmm1",
                    "tilestored [{out} + {ldo}*1 + 2048], tmm2",
                    "tilestored [{out} + {ldo}*1 + 2112], tmm3",
                    steps = inout(reg) steps => _,
                    a = inout(reg) a => _,
                    b = inout(reg) b => _,
                    lda = in(reg) 64usize,
                    lines = const $parts * MR,
                    astep = const $parts * 64 * MR,
                    ldb = in(reg) 4 * NR,
                    bstep = const $parts * B_STEP_BYTES,
                    out = in(reg) out,
                    ldo = in(reg) 4 * MR,
                    pf = inout(reg) pf => _,
                    pa = inout(reg) pa => _,
                    an = in(reg) a_next,
                    ahead = const A_AHEAD,
                    pfs = in(reg) pf_stride,
                    options(nostack),
                )
            }
        };
    }
    // C's tiles zeroed, or loaded from `out`.
    macro_rules! zeroed {
        () => {
            "tilezero tmm0\ntilezero tmm1\ntilezero tmm2\ntilezero tmm3"
        };
    }
    macro_rules! loaded {
        () => {
            concat!(
                "tileloadd tmm0, [{out} + {ldo}*1]\n",
                "tileloadd tmm1, [{out} + {ldo}*1 + 64]\n",
                "tileloadd tmm2, [{out} + {ldo}*1 + 2048]\n",
                "tileloadd tmm3, [{out} + {ldo}*1 + 2112]"
            )
        };
    }
    // Tile step `$at` (0, 1 or 2) of A, of B: loads into tmm4, 5 or 6, 7.
    macro_rules! load_a {
        ($at:literal) => {
            concat!(
                "tileloadd tmm4, [{a} + {lda}*1 + ",
                $at,
                " * 2048]\n",
                "tileloadd tmm5, [{a} + {lda}*1 + ",
                $at,
                " * 2048 + 1024]"
            )
        };
    }
    macro_rules! load_b {
        ($at:literal) => {
            concat!(
                "tileloadd tmm6, [{b} + {ldb}*1 + ",
                $at,
                " * 2048]\n",
                "tileloadd tmm7, [{b} + {ldb}*1 + ",
                $at,
                " * 2048 + 64]"
            )
        };
    }
    // C's four tiles += the loaded A tiles × B tiles.
    macro_rules! products {
        ($dp:literal) => {
            concat!(
                $dp,
                " tmm0, tmm4, tmm6\n",
                $dp,
                " tmm1, tmm4, tmm7\n",
                $dp,
                " tmm2, tmm5, tmm6\n",
                $dp,
                " tmm3, tmm5, tmm7"
            )
        };
    }
    // One tile step; the split's three (see `Dot::Bf16x3`), in the order that
    // keeps a part in its tiles for the next products: A hi against B hi,
    // mid, lo; A mid against B mid, hi; A lo against the B hi still loaded.
    // (The plain step loads A and B alternately, as before the split came:
    // both A tiles first ran bf16 at 400 rows 3-7% slower, 3 alternations.)
    macro_rules! plain {
        ($init:expr, $dp:literal) => {
            tile_loop!(
                1,
                $init,
                "tileloadd tmm4, [{a} + {lda}*1]",
                "tileloadd tmm6, [{b} + {ldb}*1]",
                "tileloadd tmm5, [{a} + {lda}*1 + 1024]",
                "tileloadd tmm7, [{b} + {ldb}*1 + 64]",
                products!($dp)
            )
        };
    }
    macro_rules! split {
        ($init:expr) => {
            tile_loop!(
                super::SPLIT_PARTS,
                $init,
                load_a!(0),
                load_b!(0),
                products!("tdpbf16ps"),
                load_b!(1),
                products!("tdpbf16ps"),
                load_b!(2),
                products!("tdpbf16ps"),
                load_a!(1),
                load_b!(1),
                products!("tdpbf16ps"),
                load_b!(0),
                products!("tdpbf16ps"),
                load_a!(2),
                products!("tdpbf16ps")
            )
        };
    }
    match (dot, accumulate) {
        (Dot::Bf16, false) => plain!(zeroed!(), "tdpbf16ps"),
        (Dot::Bf16, true) => plain!(loaded!(), "tdpbf16ps"),
        (Dot::Int8, false) => plain!(zeroed!(), "tdpbusd"),
        (Dot::Int8, true) => plain!(loaded!(), "tdpbusd"),
        (Dot::Bf16x3, false) => split!(zeroed!()),
        (Dot::Bf16x3, true) => split!(loaded!()),
    }
}

/// One 64-byte tile row.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
pub(super) struct Line([u8; 64]);

/// A's rows as the tiles read them: each 32-row block's steps one after the
/// other, each step its 32 rows' 64 bytes (bf16 values or quantised bytes)
/// for that depth, so a step's two A tiles are 2 KiB in one piece and a block
/// is one forward stream. K is padded with zeros to whole steps, the rows to
/// whole blocks.
pub(super) struct Rows<'a> {
    lines: Vec<Line>,
    /// Steps per row (the weights' padded K over the step depth).
    steps: usize,
    /// The int8 quantisation the bytes come from.
    quant: Option<&'a RowQuant>,
}

impl Drop for Rows<'_> {
    fn drop(&mut self) {
        spare_lines::give_back(std::mem::take(&mut self.lines));
    }
}

impl<'a> Rows<'a> {
    /// `a` (m × k) rounded to bf16 for weights padded to `k_padded`.
    pub(super) fn bf16(a: &[f32], m: usize, k: usize, k_padded: usize, parallel: bool) -> Self {
        use rayon::prelude::*;
        let steps = k_padded / BF16_STEP;
        let mut lines = Vec::with_capacity(m.div_ceil(MR) * steps * MR);
        let block = |(b, lines): (usize, &mut [std::mem::MaybeUninit<Line>])| {
            let rows = MR.min(m - b * MR);
            // SAFETY: AVX-512F and AVX512-BF16 (`available`); block b's `rows` rows of k
            // floats are inside `a` (m × k), k <= k_padded = 32 · steps, and
            // `lines` is the block's steps × 32 lines of 32 u16 values, all of
            // which it writes.
            unsafe {
                super::x86::round_block_to_tile_lines(
                    a[b * MR * k..].as_ptr(),
                    k,
                    rows,
                    steps,
                    lines.as_mut_ptr().cast(),
                )
            };
        };
        let spare = &mut lines.spare_capacity_mut()[..m.div_ceil(MR) * steps * MR];
        if steps > 0 {
            if parallel {
                spare.par_chunks_mut(steps * MR).enumerate().for_each(block);
            } else {
                spare.chunks_mut(steps * MR).enumerate().for_each(block);
            }
        }
        // SAFETY: every block's lines were written above (none without steps).
        unsafe { lines.set_len(m.div_ceil(MR) * steps * MR) };
        Rows {
            lines,
            steps,
            quant: None,
        }
    }

    /// `m` rows of `k` values, row `r` written by `fill(r, row)` into an f32
    /// buffer and rounded to bf16 from there (`split`: split into three bf16
    /// parts, see [`Rows::bf16x3`]), for weights padded to `k_padded`: a
    /// row-wise op (LayerNorm) straight into the tiles' lines, without its
    /// f32 output through memory and a second pass to round it.
    pub(super) fn bf16_from_fn(
        m: usize,
        k: usize,
        k_padded: usize,
        split: bool,
        parallel: bool,
        fill: impl Fn(usize, &mut [f32]) + Sync,
    ) -> Self {
        Rows::row_by_row(m, k, k_padded, split, parallel, |r, buffer, write| {
            fill(r, buffer);
            write(buffer)
        })
    }

    /// `a` (m × k) split into bf16 parts for f32 weights on the tiles
    /// ([`Dot::Bf16x3`]), padded to `k_padded`: per step of depth three tile
    /// steps, the parts hi, mid, lo.
    pub(super) fn bf16x3(a: &[f32], m: usize, k: usize, k_padded: usize, parallel: bool) -> Self {
        Rows::row_by_row(m, 0, k_padded, true, parallel, |r, _, write| {
            write(&a[r * k..][..k])
        })
    }

    /// The lines of `m` rows for weights padded to `k_padded`, a block of
    /// [`MR`] rows per task: `row(r, buffer, write)` hands row r (at most
    /// `k_padded` values, made in `buffer` of `buffer_len` floats or not) to
    /// `write`, which rounds it to bf16 or `split`s it into three parts; a
    /// block's padding rows go zero.
    fn row_by_row(
        m: usize,
        buffer_len: usize,
        k_padded: usize,
        split: bool,
        parallel: bool,
        row: impl Fn(usize, &mut [f32], &mut dyn FnMut(&[f32])) + Sync,
    ) -> Self {
        use rayon::prelude::*;
        let steps = k_padded / BF16_STEP;
        let parts = if split { super::SPLIT_PARTS } else { 1 };
        let blocks = m.div_ceil(MR);
        // SAFETY: every line is written below (each block's 32 rows, padding
        // rows zero) before the rows are read.
        let (rows, start) = unsafe { Rows::unwritten(m, parts * steps) };
        let block = |b: usize| {
            let mut buffer = vec![0f32; buffer_len];
            for r in b * MR..(b + 1) * MR {
                let first =
                    start
                        .get()
                        .cast::<Line>()
                        .wrapping_add(line_index(parts * steps, r, 0));
                let write = |values: Option<&[f32]>| {
                    assert!(values.is_none_or(|v| v.len() <= k_padded));
                    // SAFETY: AVX-512F and AVX512-BF16 (`available`); the row is at most
                    // 32 · steps values (asserted); its lines (row r, each of
                    // the parts · steps steps) are inside the m.div_ceil(MR)
                    // blocks, written by this task alone (block b).
                    unsafe {
                        if split {
                            super::x86::split_row_to_tile_lines(values, steps, first.cast())
                        } else {
                            super::x86::round_row_to_tile_lines(values, steps, first.cast())
                        }
                    }
                };
                if r < m {
                    // Every line must be written (`unwritten`'s contract).
                    let mut written = false;
                    row(r, &mut buffer, &mut |values| {
                        write(Some(values));
                        written = true;
                    });
                    assert!(written, "row {r} was not handed over");
                } else {
                    write(None);
                }
            }
        };
        if steps > 0 {
            if parallel {
                (0..blocks).into_par_iter().for_each(block);
            } else {
                (0..blocks).for_each(block);
            }
        }
        rows
    }

    /// The quantised rows of `q` (m of them, at the weights' padded K).
    pub(super) fn int8(q: &'a RowQuant, m: usize, parallel: bool) -> Self {
        let steps = q.stride / INT8_STEP;
        let bytes = q.bytes();
        let lines = blocked(m, steps, parallel, |r, row| {
            let src = &bytes[r * q.stride..][..q.stride];
            for (line, src) in row.iter_mut().zip(src.chunks_exact(INT8_STEP)) {
                line.0.copy_from_slice(src);
            }
        });
        Rows {
            lines,
            steps,
            quant: Some(q),
        }
    }

    /// Block `b`'s first line at step `s`.
    fn step(&self, b: usize, s: usize) -> *const u8 {
        self.lines[line_index(self.steps, b * MR, s)..]
            .as_ptr()
            .cast()
    }

    /// Room for `m` rows of `steps` steps, for a product to write as its
    /// output ([`Output::Lines`]), and where they start.
    ///
    /// # Safety
    /// The lines are not initialised: every one must be written before the
    /// rows are read or dropped (a product writing `Output::Lines` with one
    /// panel a step, over all `m` rows, writes each once).
    pub(super) unsafe fn unwritten(m: usize, steps: usize) -> (Self, SendPtr) {
        let len = m.div_ceil(MR) * steps * MR;
        let mut lines = spare_lines::with_capacity(len);
        let start = SendPtr(lines.as_mut_ptr().cast());
        // SAFETY: the capacity holds `len` lines; `Line` is plain bytes, and
        // the caller writes every one before anything reads them.
        unsafe { lines.set_len(len) };
        (
            Rows {
                lines,
                steps,
                quant: None,
            },
            start,
        )
    }

    /// The first line (see the layout above).
    pub(super) fn start(&self) -> *const u8 {
        self.lines.as_ptr().cast()
    }

    /// Steps per row.
    pub(super) fn steps(&self) -> usize {
        self.steps
    }
}

/// Where [`run_block`] puts a product's values.
#[derive(Clone, Copy)]
pub(super) enum Output {
    /// Into the row-major f32 output (`m × w.n`).
    F32(SendPtr),
    /// Rounded to bf16 into [`Rows`] lines starting here, one step per weight
    /// panel (`steps` of them: the panels, NR = 32 columns = one step): the
    /// next product's input without an f32 round trip. Row block `b`'s panel
    /// `p` is then the 2 KiB of lines `(b · steps + p) · 32 ..`. `split`:
    /// each value as its three bf16 parts instead, three steps per panel
    /// (`steps` is three times the panels), as [`Rows::bf16x3`] splits.
    Lines {
        start: SendPtr,
        steps: usize,
        split: bool,
    },
}

/// Lines for `m` rows (rounded up to whole blocks) of `steps` steps: row r
/// (< m) written whole by `fill(r, its steps lines)` into a buffer, then
/// dealt out to its place in each step; the padding rows zero. (Filling line
/// by line cost a call per 64 bytes.)
fn blocked(
    m: usize,
    steps: usize,
    parallel: bool,
    fill: impl Fn(usize, &mut [Line]) + Sync,
) -> Vec<Line> {
    use rayon::prelude::*;
    let blocks = m.div_ceil(MR);
    let mut lines = vec![Line([0; 64]); blocks * steps * MR];
    let block = |(b, lines): (usize, &mut [Line])| {
        let mut row = vec![Line([0; 64]); steps];
        for r in 0..MR.min(m - b * MR) {
            fill(b * MR + r, &mut row);
            for (s, line) in row.iter().enumerate() {
                lines[s * MR + r] = *line;
            }
        }
    };
    if steps == 0 {
        return lines;
    }
    if parallel {
        lines.par_chunks_mut(steps * MR).enumerate().for_each(block);
    } else {
        lines.chunks_mut(steps * MR).enumerate().for_each(block);
    }
    lines
}

/// C's rows `rows` × weight panels `panels` through the tiles, all of K.
///
/// # Safety
/// [`available`] returned true; `c` points to the row-major `m × w.n` output
/// (`m >= rows.end`), valid for writes, with no one else touching the
/// `rows × panels` block meanwhile; `rows.start` is a multiple of [`MR`];
/// `panels.end <= w.n.div_ceil(NR)`; `src` holds `rows.end` rows rounded up to
/// whole [`MR`] blocks, at the stride the weights' precision steps through.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn run_block(
    src: &Rows,
    w: &PackedWeights,
    out: Output,
    rows: std::ops::Range<usize>,
    panels: std::ops::Range<usize>,
    init: Init,
    act: Option<Activation>,
) {
    let n = w.n;
    if rows.is_empty() || panels.is_empty() {
        return;
    }
    let dot = dot_for(w);
    assert_eq!(
        dot == Dot::Int8,
        src.quant.is_some(),
        "AMX runs bf16 rows on bf16 weights, int8 on int8, split on split"
    );
    // Steps of depth; a split one is three tile steps of A and B.
    let (parts, block_steps_max) = (dot.parts(), BLOCK_STEPS);
    let steps = src.steps / parts;
    // Tile lines hold bf16 values, split for split products: the sums of
    // all of K at once round or split to them.
    let chunk = match out {
        Output::F32(_) => depth_chunk(dot, steps),
        Output::Lines { split, .. } => {
            assert!(
                dot != Dot::Int8 && split == (dot == Dot::Bf16x3),
                "bf16 products write bf16 lines, split ones split lines, int8 f32"
            );
            steps.max(1)
        }
    };
    // SAFETY: AMX is available (the caller's contract).
    let _tiles = unsafe { Tiles::configure() };
    let bias = |p: usize| {
        w.bias.as_ref().map(|b| {
            <&[f32; NR]>::try_from(&b[p * NR..(p + 1) * NR])
                .expect("the bias is padded to whole panels")
        })
    };
    let overwrite = init == Init::Bias;
    SUMS.with_borrow_mut(|sums| {
        // Per row block and panel: the depth blocks outermost, so each one's
        // slice of the panel stays in L1 while the block's A tiles (in L2, see
        // `row_block`) pass it; the sums wait in a buffer between them.
        let mc = row_block(w);
        // Depth chunks outermost: the first sets C (bias, or onto the
        // residual), the others add to it, the last activates.
        for c0 in (0..steps.max(1)).step_by(chunk) {
            let c_end = (c0 + chunk).min(steps);
            let (first, last) = (c0 == 0, c_end == steps);
            let bias = |p: usize| bias(p).filter(|_| first);
            let overwrite = overwrite && first;
            let act = act.filter(|_| last);
            for m0 in rows.clone().step_by(mc) {
                let m_end = (m0 + mc).min(rows.end);
                let tiles = (m_end - m0).div_ceil(MR);
                sums.resize_with(tiles, || Sums([[0; MR]; MR]));
                for p in panels.clone() {
                    let b: *const u8 = match &w.panels {
                        Panels::Bf16(d) | Panels::Bf16x3(d) => {
                            d[w.panel_offset(p, 0)..].as_ptr().cast()
                        }
                        Panels::Int8(q) => q.data[w.panel_offset(p, 0)..].as_ptr().cast(),
                        Panels::F32(_) => unreachable!("checked above"),
                    };
                    // Without depth one empty step still zeroes the sums.
                    for s0 in (c0..c_end.max(c0 + 1)).step_by(block_steps_max) {
                        let block_steps = block_steps_max.min(c_end - s0);
                        for (t, sum) in sums[..tiles].iter_mut().enumerate() {
                            let r0 = m0 + t * MR;
                            let a = src.step(r0 / MR, s0 * parts);
                            // The next call's: the next tile's, else the first
                            // tile's at the next depth block (or panel).
                            let a_next = if t + 1 < tiles {
                                src.step(r0 / MR + 1, s0 * parts)
                            } else {
                                let s_next = s0 + block_steps_max;
                                let s_next = if s_next < c_end { s_next } else { c0 };
                                src.step(m0 / MR, s_next * parts)
                            };
                            // The block's first 16 steps claim its 32 rows of C
                            // for writing, two a step, so the finishing stores
                            // find them in cache: C is written once, and without
                            // this its lines arrived only with the stores (ViT-B/32
                            // images, medians of runs alternating in one process on
                            // the Intel Xeon with AMX: bf16 4-8% slower at batch 8
                            // and 32, int8 at batch 32 too). Whole blocks of C only:
                            // a prefetch needs no valid address, but the pointer
                            // arithmetic stays inside C. Tile lines: the block's
                            // 2 KiB, four lines a step over the first depth block.
                            let prefetch = match out {
                                Output::F32(c) => {
                                    (2 * (s0 - c0) < MR && r0 + MR <= rows.end).then(|| {
                                        let s0 = s0 - c0;
                                        Prefetch {
                                            // SAFETY: rows r0 + 2·s0 .. r0 + 2·(s0 + block_steps)
                                            // are inside this block (2·(s0 + block_steps_max)
                                            // <= MR: it divides MR / 2),
                                            // the column p·NR inside C.
                                            first: unsafe {
                                                c.get().add((r0 + 2 * s0) * n + p * NR)
                                            }
                                            .cast(),
                                            stride: 4 * n,
                                        }
                                    })
                                }
                                Output::Lines { start, steps, .. } => {
                                    (s0 == 0).then(|| Prefetch {
                                        // SAFETY: block r0 / MR's lines at step
                                        // p · parts are inside the output rows
                                        // (see `Output::Lines`).
                                        first: unsafe { lines_of(start, steps, r0, p * parts) }
                                            .cast(),
                                        stride: 128,
                                    })
                                }
                            };
                            // SAFETY: `src` holds whole 32-row blocks of `steps`
                            // 64-byte tile widths (the caller's contract), the panel
                            // `steps` steps of B_STEP_BYTES; `sum` is 32 × 32 four-byte
                            // values; the tiles are configured (`_tiles`).
                            unsafe {
                                dot_block(
                                    dot,
                                    s0 > c0,
                                    block_steps,
                                    a,
                                    b.add(B_STEP_BYTES * parts * s0),
                                    sum.0.as_mut_ptr().cast(),
                                    prefetch,
                                    a_next,
                                )
                            };
                        }
                    }
                    for (t, sum) in sums[..tiles].iter().enumerate() {
                        let r0 = m0 + t * MR;
                        let (rows, cols) = (MR.min(rows.end - r0), NR.min(n - p * NR));
                        let c = match out {
                            Output::F32(c) => c,
                            Output::Lines {
                                start,
                                steps,
                                split,
                            } => {
                                // SAFETY: the block's lines at steps p · parts
                                // .. (p + 1) · parts are inside the output rows,
                                // written by this task alone (its rows and
                                // panels); the CPU has AVX-512F and AVX512-BF16
                                // (`available`).
                                unsafe {
                                    finish_lines(
                                        sum,
                                        rows,
                                        cols,
                                        bias(p),
                                        act,
                                        split,
                                        lines_of(start, steps, r0, p * parts),
                                    )
                                };
                                continue;
                            }
                        };
                        let tile = Tile {
                            // SAFETY: r0 < rows.end <= m and p * NR < n: inside C.
                            c: unsafe { c.get().add(r0 * n + p * NR) },
                            ldc: n,
                            rows,
                            cols,
                        };
                        // SAFETY: the tile is inside C and this call's block (the
                        // caller's contract); the CPU has AVX-512F (every AMX CPU does).
                        unsafe {
                            match (&w.panels, src.quant) {
                                (Panels::Bf16(_) | Panels::Bf16x3(_), _) => {
                                    finish_f32(sum, &tile, bias(p), overwrite, act)
                                }
                                (Panels::Int8(q), Some(rq)) => {
                                    let col = p * NR..(p + 1) * NR;
                                    let scales = Int8Scales {
                                        row_scales: &rq.scale[r0..r0 + tile.rows],
                                        row_mins: &rq.min[r0..r0 + tile.rows],
                                        col_scales: q.scales[col.clone()]
                                            .try_into()
                                            .expect("padded"),
                                        col_sums: q.sums[col].try_into().expect("padded"),
                                    };
                                    finish_int8(sum, &tile, &scales, bias(p), overwrite, act)
                                }
                                _ => unreachable!("checked above"),
                            }
                        };
                    }
                }
            }
        }
    });
}

thread_local! {
    /// [`run_block`]'s sums of one row block against one panel, reused.
    static SUMS: std::cell::RefCell<Vec<Sums>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A 32 × 32 block of f32 (bf16 products) or i32 (int8) sums, 64-byte aligned
/// for the tile stores.
#[repr(C, align(64))]
struct Sums([[u32; MR]; MR]);

/// The int8 dequantisation of one block (see the module notes of [`super`]):
/// `C = acc·s_row·s_col + min_row·(s_w·Σq_w)_col + bias`.
struct Int8Scales<'a> {
    row_scales: &'a [f32],
    row_mins: &'a [f32],
    col_scales: &'a [f32; NR],
    col_sums: &'a [f32; NR],
}

/// Stores (or adds) f32 sums plus the bias into the tile, then applies `act`.
///
/// # Safety
/// The tile contract of [`Tile`]; the CPU has AVX-512F.
#[target_feature(enable = "avx512f")]
unsafe fn finish_f32(
    sums: &Sums,
    tile: &Tile,
    bias: Option<&[f32; NR]>,
    overwrite: bool,
    act: Option<Activation>,
) {
    let (m0, m1) = super::x86::tail_masks(tile.cols);
    let bias = halves(bias);
    for (r, row) in sums.0.iter().enumerate().take(tile.rows) {
        let o = f32_row_plus(row, bias);
        // SAFETY: row r < rows of the tile, the masks keep C's loads and
        // stores to its first `cols` floats (the tile contract).
        unsafe { super::x86::store_row_512(tile.c.add(r * tile.ldc), (m0, m1), o, overwrite, act) };
    }
}

/// A panel's 32 floats (bias, scales, sums) as two 16-lane halves; zeros
/// without them.
#[inline]
#[target_feature(enable = "avx512f")]
fn halves(v: Option<&[f32; NR]>) -> (__m512, __m512) {
    match v {
        // SAFETY: NR = 32 floats: two unaligned 16-float loads.
        Some(v) => unsafe {
            (
                _mm512_loadu_ps(v.as_ptr()),
                _mm512_loadu_ps(v.as_ptr().add(16)),
            )
        },
        None => (_mm512_setzero_ps(), _mm512_setzero_ps()),
    }
}

/// A row of f32 sums (bf16 products) plus the bias halves.
#[inline]
#[target_feature(enable = "avx512f")]
fn f32_row_plus(row: &[u32; MR], (b0, b1): (__m512, __m512)) -> (__m512, __m512) {
    // SAFETY: `row` is 32 values: two unaligned 16-float loads.
    unsafe {
        let s = row.as_ptr().cast::<f32>();
        (
            _mm512_add_ps(_mm512_loadu_ps(s), b0),
            _mm512_add_ps(_mm512_loadu_ps(s.add(16)), b1),
        )
    }
}

/// The first of the 32 lines that hold rows `r0 .. r0 + 32` (`r0` a multiple
/// of [`MR`]) at step `p` of [`Output::Lines`] starting at `start`.
///
/// # Safety
/// Those lines are inside the output rows.
unsafe fn lines_of(start: SendPtr, steps: usize, r0: usize, p: usize) -> *mut Line {
    // SAFETY: the function's contract.
    unsafe { start.get().cast::<Line>().add(line_index(steps, r0, p)) }
}

/// Which line of [`Rows`] (`steps` steps a row) holds row `row` at step
/// `step`: each 32-row block's steps one after the other, each step its 32
/// rows' lines.
pub(super) fn line_index(steps: usize, row: usize, step: usize) -> usize {
    (row / MR * steps + step) * MR + row % MR
}

/// Sums plus the bias, then `act`, rounded to bf16 as the 32 tile lines at
/// `lines`: row r's `cols` values in line r, zero past them and in the lines
/// past `rows` (the next product's padding). The same values the f32 output
/// and [`Rows::bf16`]'s rounding would give, without the f32 round trip: both
/// round by `vcvtne2ps2bf16` ([`super::x86::bf16_line_native`]), which cost
/// a quarter of the instructions of the integer rounding it replaced here
/// (DINOv2 ViT-S/14 bf16 +10%, CLIP texts +6-10%, with the attention's
/// numerators; AMX Xeon, 2026-12-05).
/// `split`: their three bf16 parts instead, as [`Rows::bf16x3`] splits, in
/// the three steps' lines from `lines` (32 lines apart).
///
/// # Safety
/// The CPU has AVX-512F and AVX512-BF16; `lines` is valid for writes of 32
/// lines, 96 when `split`.
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn finish_lines(
    sums: &Sums,
    rows: usize,
    cols: usize,
    bias: Option<&[f32; NR]>,
    act: Option<Activation>,
    split: bool,
    lines: *mut Line,
) {
    let (m0, m1) = super::x86::tail_masks(cols);
    let bias = halves(bias);
    for (r, row) in sums.0.iter().enumerate() {
        let v = if r < rows {
            let mut v = f32_row_plus(row, bias);
            if let Some(act) = act {
                // As the f32 output's store activates: the same values.
                // SAFETY: the CPU has AVX-512F (enabled here).
                v = unsafe { super::x86::activate_512(v, act) };
            }
            (_mm512_maskz_mov_ps(m0, v.0), _mm512_maskz_mov_ps(m1, v.1))
        } else {
            (_mm512_setzero_ps(), _mm512_setzero_ps())
        };
        // SAFETY: line r (and, split, lines r + 32 and r + 64) is inside
        // `lines` (the function's contract).
        unsafe {
            if split {
                for (part, line) in super::x86::split_lines_native(v).into_iter().enumerate() {
                    _mm512_storeu_si512(lines.add(part * MR + r).cast(), line);
                }
            } else {
                _mm512_storeu_si512(lines.add(r).cast(), super::x86::bf16_line_native(v.0, v.1));
            }
        }
    }
}

/// Stores (or adds) dequantised int8 sums into the tile, then applies `act`.
///
/// # Safety
/// The tile contract of [`Tile`]; the CPU has AVX-512F; the scales cover the
/// tile's rows.
#[target_feature(enable = "avx512f")]
unsafe fn finish_int8(
    sums: &Sums,
    tile: &Tile,
    s: &Int8Scales,
    bias: Option<&[f32; NR]>,
    overwrite: bool,
    act: Option<Activation>,
) {
    let (m0, m1) = super::x86::tail_masks(tile.cols);
    let ((cs0, cs1), (ws0, ws1), (b0, b1)) = (
        halves(Some(s.col_scales)),
        halves(Some(s.col_sums)),
        halves(bias),
    );
    for (r, row) in sums.0.iter().enumerate().take(tile.rows) {
        let rs = _mm512_set1_ps(s.row_scales[r]);
        let min = _mm512_set1_ps(s.row_mins[r]);
        // SAFETY: as in `finish_f32`.
        unsafe {
            let acc = row.as_ptr().cast::<__m512i>();
            let o0 = _mm512_fmadd_ps(min, ws0, b0);
            let o1 = _mm512_fmadd_ps(min, ws1, b1);
            let o0 = _mm512_fmadd_ps(
                _mm512_cvtepi32_ps(_mm512_loadu_si512(acc)),
                _mm512_mul_ps(cs0, rs),
                o0,
            );
            let o1 = _mm512_fmadd_ps(
                _mm512_cvtepi32_ps(_mm512_loadu_si512(acc.add(1))),
                _mm512_mul_ps(cs1, rs),
                o1,
            );
            super::x86::store_row_512(tile.c.add(r * tile.ldc), (m0, m1), (o0, o1), overwrite, act);
        }
    }
}
