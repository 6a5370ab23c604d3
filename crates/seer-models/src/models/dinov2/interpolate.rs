//! Resizing the trained position-embedding grid to another patch grid, exactly
//! as the two reference classes call `F.interpolate(..., size=(h, w))`:
//!
//! - `Dinov2Model`: plain bicubic (`mode="bicubic", align_corners=False`): four
//!   taps at `floor(src) - 1 .. floor(src) + 2`, indices clamped to the edge,
//!   Keys' cubic with A = -0.75, and no widening when shrinking.
//! - `Dinov2WithRegistersModel`: the same call with `antialias=True`
//!   (`_upsample_bicubic2d_aa`): a PIL-style filter with A = -0.5, stretched by
//!   the scale when shrinking, weights normalised to sum 1, no clamping.
//!
//! Both are separable, so each axis gets a list of (source index, weight) taps.
//! Weights and sums are computed in f64; torch works in f32, which differs by
//! rounding only (about 1e-7 on these tables).

/// The resampling rule of the reference class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PosResample {
    /// `F.interpolate(mode="bicubic", align_corners=False)`.
    Bicubic,
    /// The same with `antialias=True`.
    BicubicAntialias,
}

/// Keys' cubic convolution kernel with parameter `a`.
fn cubic(x: f64, a: f64) -> f64 {
    let x = x.abs();
    if x <= 1.0 {
        ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * a
    } else {
        0.0
    }
}

/// For each of `out` positions, the source taps and weights along one axis of
/// length `input`.
fn axis_taps(input: usize, out: usize, mode: PosResample) -> Vec<Vec<(usize, f64)>> {
    let scale = input as f64 / out as f64;
    (0..out)
        .map(|i| match mode {
            PosResample::Bicubic => {
                // area_pixel_compute_source_index(..., cubic=true): not clamped at 0.
                let src = (i as f64 + 0.5) * scale - 0.5;
                let x0 = src.floor();
                let t = src - x0;
                let weights = [
                    cubic(t + 1.0, -0.75),
                    cubic(t, -0.75),
                    cubic(1.0 - t, -0.75),
                    cubic(2.0 - t, -0.75),
                ];
                let last = input as i64 - 1;
                weights
                    .iter()
                    .enumerate()
                    .map(|(k, &w)| ((x0 as i64 - 1 + k as i64).clamp(0, last) as usize, w))
                    .collect()
            }
            PosResample::BicubicAntialias => {
                let stretch = scale.max(1.0);
                let support = 2.0 * stretch;
                let center = scale * (i as f64 + 0.5);
                // torch truncates toward zero (int64 casts), then clamps.
                let xmin = ((center - support + 0.5) as i64).max(0) as usize;
                let xmax = ((center + support + 0.5) as i64).min(input as i64).max(0) as usize;
                let taps: Vec<(usize, f64)> = (xmin..xmax)
                    .map(|j| (j, cubic((j as f64 - center + 0.5) / stretch, -0.5)))
                    .collect();
                let total: f64 = taps.iter().map(|&(_, w)| w).sum();
                let norm = if total != 0.0 { 1.0 / total } else { 0.0 };
                taps.into_iter().map(|(j, w)| (j, w * norm)).collect()
            }
        })
        .collect()
}

/// Resizes a `(in_h, in_w, dim)` row-major grid (channels last, one position
/// embedding per cell) to `(out_h, out_w, dim)`.
pub fn resize_grid(
    grid: &[f32],
    (in_h, in_w): (usize, usize),
    dim: usize,
    (out_h, out_w): (usize, usize),
    mode: PosResample,
) -> Vec<f32> {
    assert_eq!(
        grid.len(),
        in_h * in_w * dim,
        "grid is not {in_h}x{in_w}x{dim}"
    );
    let (rows, cols) = (axis_taps(in_h, out_h, mode), axis_taps(in_w, out_w, mode));
    // Columns first, then rows (the order torch's separable kernels use).
    let mut wide = vec![0f64; in_h * out_w * dim];
    for y in 0..in_h {
        for (ox, taps) in cols.iter().enumerate() {
            let out = &mut wide[(y * out_w + ox) * dim..][..dim];
            for &(x, w) in taps {
                let src = &grid[(y * in_w + x) * dim..][..dim];
                out.iter_mut()
                    .zip(src)
                    .for_each(|(o, &s)| *o += w * s as f64);
            }
        }
    }
    let mut result = vec![0f64; out_h * out_w * dim];
    for (oy, taps) in rows.iter().enumerate() {
        let out = &mut result[oy * out_w * dim..][..out_w * dim];
        for &(y, w) in taps {
            let src = &wide[y * out_w * dim..][..out_w * dim];
            out.iter_mut().zip(src).for_each(|(o, &s)| *o += w * s);
        }
    }
    result.into_iter().map(|v| v as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::weights::Weights;
    use candle_core::Device;
    use seer_testkit::{matrix, max_abs_diff, read_json, repo_root};

    #[test]
    fn same_size_plain_bicubic_is_the_identity() {
        let grid: Vec<f32> = (0..5 * 7 * 3).map(|i| (i as f32 * 0.37).sin()).collect();
        let out = resize_grid(&grid, (5, 7), 3, (5, 7), PosResample::Bicubic);
        assert!(out.iter().zip(&grid).all(|(a, b)| (a - b).abs() < 1e-6));
    }

    #[test]
    fn constant_grids_stay_constant_under_both_rules() {
        let grid = vec![1.5f32; 37 * 37 * 2];
        for mode in [PosResample::Bicubic, PosResample::BicubicAntialias] {
            for size in [(16, 16), (8, 11), (50, 60), (1, 1)] {
                let out = resize_grid(&grid, (37, 37), 2, size, mode);
                assert!(
                    out.iter().all(|v| (v - 1.5).abs() < 1e-5),
                    "{mode:?} {size:?}"
                );
            }
        }
    }

    /// The fixture's `interpolate_pos_encoding` output for a 112×154 input (an
    /// 8×11 grid from 37×37, CLS row first) against `resize_grid` on the same table.
    fn check_fixture(folder: &str, mode: PosResample) -> f32 {
        let dir = repo_root().join("fixtures/families").join(folder);
        let reference = read_json(&dir.join("reference.json"));
        let expected = matrix(&reference["interpolated_position_embeddings"]["sizes"]["112x154"]);
        let dim = expected[0].len();
        let w = Weights::open(&dir.join("model.safetensors"), &Device::Cpu).unwrap();
        let table = w
            .get_vec("embeddings.position_embeddings", &[1, 1 + 37 * 37, dim])
            .unwrap();
        let resized = resize_grid(&table[dim..], (37, 37), dim, (8, 11), mode);
        let mut got = vec![table[..dim].to_vec()];
        got.extend(resized.chunks(dim).map(<[f32]>::to_vec));
        max_abs_diff(&got, &expected)
    }

    #[test]
    fn matches_dinov2_plain_bicubic() {
        for folder in ["dinov2-tiny", "dinov2-swiglu-tiny"] {
            let diff = check_fixture(folder, PosResample::Bicubic);
            assert!(diff < 1e-5, "{folder}: {diff}");
        }
    }

    #[test]
    fn matches_registers_antialiased_bicubic() {
        let diff = check_fixture("dinov2-registers-tiny", PosResample::BicubicAntialias);
        assert!(diff < 1e-5, "{diff}");
        // The other rule is far off on the same table: the test tells them apart.
        assert!(check_fixture("dinov2-registers-tiny", PosResample::Bicubic) > 1e-2);
    }
}
