//! `aᵀ·b` summed over rows, on the matmul's register-tile micro-kernels: a
//! linear layer's weight gradient `dyᵀ·x`, whose depth is the batch's tokens.
//!
//! Both operands are row-major with the depth as rows, so a tile's packed A
//! step (`mr` output rows) is `mr` consecutive floats of a row of `a`, and a
//! weight panel's step `NR` consecutive floats of a row of `b`: packing a
//! depth block is copying pieces of rows, no transpose. The micro-kernels are
//! the forward product's (14 × 32 on AVX-512, 6 × 32 on AVX2), where a
//! separate auto-vectorised 8 × 32 tile ran at 65–80% of the forward
//! product's rate; these ran 1.1–1.3× as fast as that on the CLIP demo's
//! shapes (Intel AMX VM, alternating in one process).

use super::*;

/// `out` (n × k) = aᵀ·b for row-major `a` (rows × n) and `b` (rows × k), on
/// `isa`'s f32 kernels, output rows split across rayon's threads.
///
/// Each output element sums its depth in the same order whatever the tile or
/// task it falls in (per block of KC steps: from zero in a register, then
/// added onto `out`), so the result does not depend on the thread count.
pub(crate) fn transposed_product(
    isa: Isa,
    a: &[f32],
    n: usize,
    b: &[f32],
    k: usize,
    depth: usize,
    out: &mut [f32],
) {
    // The micro-kernels' target features are only sound on a CPU that has them.
    assert!(
        isa <= Isa::best_supported(),
        "{} kernels on a CPU without them",
        isa.name()
    );
    assert!(
        a.len() == depth * n && b.len() == depth * k && out.len() == n * k,
        "transposed product: {} and {} values for {depth} rows of {n} and {k}, {} out",
        a.len(),
        b.len(),
        out.len()
    );
    out.fill(0.0);
    if n == 0 || k == 0 || depth == 0 {
        return;
    }
    let kernel = Kernel::select(isa, Precision::F32);
    let Micro::Float(micro) = kernel.micro else {
        unreachable!("f32 products have float kernels")
    };
    // Each task copies all of `b` per depth block, so one task a thread:
    // alternating in one process (Intel AMX VM, the CLIP demo's shapes), two
    // a thread ran at 0.8–0.9× the speed of one.
    let mr = kernel.mr;
    let tiles = n.div_ceil(mr);
    let tasks = rayon::current_num_threads().clamp(1, tiles);
    let out_ptr = SendPtr(out.as_mut_ptr());
    (0..tasks).into_par_iter().with_max_len(1).for_each(|t| {
        let tiles = split(tiles, tasks, t);
        let rows = tiles.start * mr..(tiles.end * mr).min(n);
        // SAFETY: the tasks' row ranges are disjoint and inside `out` (n rows
        // of k), which is borrowed mutably for this whole call.
        let out = unsafe {
            std::slice::from_raw_parts_mut(out_ptr.get().add(rows.start * k), rows.len() * k)
        };
        // SAFETY: `kernel` was selected for `isa`, which the CPU supports
        // (asserted); `out` is the product's rows `rows`, whole rows of k.
        unsafe { product_rows(&kernel, micro, a, n, b, k, depth, rows.start, out) }
    });
}

/// Rows `first..` of aᵀ·b added onto `out` (whole rows of `k`).
///
/// Per block of KC depth steps, this task's columns of `a` are copied tile by
/// tile and `b` panel by panel, each step's values consecutive: the layouts
/// the micro-kernels read. Zero padding past the last tile's rows and the last
/// panel's columns is written once (the copies never reach it).
///
/// # Safety
/// The CPU has the target features of `kernel` and `micro` (its full-tile
/// kernel); `a` and `b` hold `depth` rows of `n` and `k` floats (`k > 0`),
/// `out` holds whole rows of `k`, and `first + out.len() / k <= n`.
#[allow(clippy::too_many_arguments)]
unsafe fn product_rows(
    kernel: &Kernel,
    micro: MicroF32,
    a: &[f32],
    n: usize,
    b: &[f32],
    k: usize,
    depth: usize,
    first: usize,
    out: &mut [f32],
) {
    let mr = kernel.mr;
    let count = out.len() / k;
    let tiles = count.div_ceil(mr);
    let panels = k.div_ceil(NR);
    let block = KC.min(depth);
    // Strides padded off multiples of 4 KiB: the copies write a line of
    // every tile and panel per step, and 4 KiB apart those fall in one set.
    let a_stride = block * mr + 16;
    let b_stride = block * NR + 16;
    let mut a_tiles = vec![0f32; a_stride * tiles];
    let mut b_panels = vec![0f32; b_stride * panels];
    let source = Operands { a, n, b, k };
    for p0 in (0..depth).step_by(KC) {
        let steps = (depth - p0).min(KC);
        copy_block(
            &source,
            first..first + count,
            p0..p0 + steps,
            mr,
            &mut a_tiles,
            a_stride,
            &mut b_panels,
            b_stride,
        );
        for t in 0..tiles {
            let rows = (count - t * mr).min(mr);
            // A partial tile on the few-row kernel: the same multiply-adds per
            // element, without multiplying the padding.
            let tile_kernel = kernel.few.get(rows - 1).copied().unwrap_or(micro);
            let a_tile = a_tiles[t * a_stride..].as_ptr().cast::<u32>();
            for j in 0..panels {
                let cols = (k - j * NR).min(NR);
                let panel = b_panels[j * b_stride..].as_ptr().cast::<u8>();
                // SAFETY: the tile and panel hold `steps` steps of `mr` and NR
                // floats (strides ≥ block · mr, block · NR); rows ≤ mr and
                // cols ≤ NR of `out` from row t·mr, column j·NR are inside it
                // (row stride k) and this task's alone; the CPU has the
                // kernel's features (the caller's contract).
                unsafe {
                    tile_kernel(
                        steps,
                        a_tile,
                        panel,
                        out.as_mut_ptr().add(t * mr * k + j * NR),
                        k,
                        rows,
                        cols,
                        Ahead::NONE,
                    )
                };
            }
        }
    }
}

/// The operands of [`transposed_product`]: `a` rows of `n`, `b` rows of `k`.
struct Operands<'s> {
    a: &'s [f32],
    n: usize,
    b: &'s [f32],
    k: usize,
}

multiversion! {
    /// Copies depth steps `steps` of the columns `cols` of `a`, in tiles of
    /// `mr` at `a_stride`, and of all of `b`, in panels of NR at `b_stride`;
    /// step s of a tile (panel) at `s · mr` (`s · NR`) from the block's start.
    ///
    /// Compiled per instruction set, and per tile height below, so that each
    /// piece is a few inline vector moves: at the baseline target LLVM called
    /// `memcpy` for every 14 or 32 floats, 4% of a training step's samples.
    #[allow(clippy::too_many_arguments)]
    fn copy_block(src: &Operands, cols: std::ops::Range<usize>, steps: std::ops::Range<usize>, mr: usize, a_tiles: &mut [f32], a_stride: usize, b_panels: &mut [f32], b_stride: usize) {
        match mr {
            #[cfg(target_arch = "x86_64")]
            x86::MR_512 => copy_steps::<{ x86::MR_512 }>(src, cols, steps, mr, a_tiles, a_stride, b_panels, b_stride),
            #[cfg(target_arch = "x86_64")]
            x86::MR_256 => copy_steps::<{ x86::MR_256 }>(src, cols, steps, mr, a_tiles, a_stride, b_panels, b_stride),
            portable::MR => copy_steps::<{ portable::MR }>(src, cols, steps, mr, a_tiles, a_stride, b_panels, b_stride),
            _ => copy_steps::<0>(src, cols, steps, mr, a_tiles, a_stride, b_panels, b_stride),
        }
    }
}

/// [`copy_block`] with whole tiles of `MR` rows copied by a constant length
/// (any `mr` when `MR` is 0).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn copy_steps<const MR: usize>(
    src: &Operands,
    cols: std::ops::Range<usize>,
    steps: std::ops::Range<usize>,
    mr: usize,
    a_tiles: &mut [f32],
    a_stride: usize,
    b_panels: &mut [f32],
    b_stride: usize,
) {
    for (s, p) in steps.enumerate() {
        copy_pieces::<MR>(
            &src.a[p * src.n..][cols.clone()],
            mr,
            &mut a_tiles[s * mr..],
            a_stride,
        );
        copy_pieces::<NR>(
            &src.b[p * src.k..][..src.k],
            NR,
            &mut b_panels[s * NR..],
            b_stride,
        );
    }
}

/// `row` cut into pieces of `len` (`N` when not 0), piece i copied to
/// `dst[i · stride..]`. Whole pieces by a constant length first and the last
/// part apart: one copy call site for both let LLVM merge them into a
/// `memcpy` call of a selected length.
#[inline(always)]
fn copy_pieces<const N: usize>(row: &[f32], len: usize, dst: &mut [f32], stride: usize) {
    let whole = row.len().checked_div(N).map_or(0, |pieces| pieces * N);
    for (i, piece) in row[..whole].chunks_exact(N.max(1)).enumerate() {
        dst[i * stride..][..N].copy_from_slice(piece);
    }
    let first = whole / len;
    for (i, piece) in row[whole..].chunks(len).enumerate() {
        dst[(first + i) * stride..][..piece.len()].copy_from_slice(piece);
    }
}
