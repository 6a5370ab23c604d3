//! The portable micro-kernels: any CPU, and the peers the SIMD ones are tested against.

use super::*;

pub const MR: usize = 4;

/// # Safety
/// The micro-kernel contract (see [`super::MicroF32`]).
#[allow(clippy::too_many_arguments)]
pub unsafe fn micro_f32(
    kc: usize,
    a: *const u32,
    b: *const u8,
    c: *mut f32,
    ldc: usize,
    rows: usize,
    cols: usize,
    _ahead: Ahead,
) {
    // SAFETY: by the contract, `kc` steps of MR packed f32 rows and of NR
    // f32 weights; packed buffers are u32/f32 vectors, so aligned for f32.
    let (a, b) = unsafe {
        (
            std::slice::from_raw_parts(a.cast::<f32>(), kc * MR),
            std::slice::from_raw_parts(b.cast::<f32>(), kc * NR),
        )
    };
    let mut acc = [[0f32; NR]; MR];
    for (ak, bk) in a.chunks_exact(MR).zip(b.chunks_exact(NR)) {
        for r in 0..MR {
            for j in 0..NR {
                acc[r][j] += ak[r] * bk[j];
            }
        }
    }
    // SAFETY: the C tile is valid and ours by the contract.
    unsafe { add_tile(&acc, c, ldc, rows, cols, false) };
}

/// # Safety
/// The int8 micro-kernel contract (see [`super::MicroInt8`]).
#[allow(clippy::too_many_arguments)]
pub unsafe fn micro_int8(
    kc: usize,
    a: *const u32,
    b: *const u8,
    c: *mut f32,
    ldc: usize,
    rows: usize,
    cols: usize,
    d: &Dequant,
) {
    let groups = kc.div_ceil(4);
    // SAFETY: by the contract, `groups` steps of MR packed u32 words and of
    // 4 × NR int8 weights.
    let (a, b) = unsafe {
        (
            std::slice::from_raw_parts(a, groups * MR),
            std::slice::from_raw_parts(b.cast::<i8>(), groups * 4 * NR),
        )
    };
    let mut acc = [[0i32; NR]; MR];
    for (ag, bg) in a.chunks_exact(MR).zip(b.chunks_exact(4 * NR)) {
        for r in 0..MR {
            let av = ag[r].to_le_bytes();
            for j in 0..NR {
                acc[r][j] += (0..4)
                    .map(|t| av[t] as i32 * bg[4 * j + t] as i32)
                    .sum::<i32>();
            }
        }
    }
    let mut out = [[0f32; NR]; MR];
    for (r, (o, a)) in out.iter_mut().zip(&acc).take(rows).enumerate() {
        let rs = d.row_scales[r];
        for ((o, &a), &cs) in o.iter_mut().zip(a).zip(d.col_scales) {
            *o = a as f32 * (rs * cs);
        }
        if let Some(first) = &d.first {
            for (j, o) in o.iter_mut().enumerate() {
                *o += first.offset(r, j);
            }
        }
    }
    let overwrite = d.first.as_ref().is_some_and(|f| f.overwrite);
    // SAFETY: the C tile is valid and ours by the contract.
    unsafe {
        add_tile(&out, c, ldc, rows, cols, overwrite);
        d.activate(c, ldc, rows, cols);
    }
}
