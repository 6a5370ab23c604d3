//! Rows of a matrix picked by index (a token embedding's lookup, the pooled
//! token of each sequence), differentiable, with a gradient that runs wide on
//! a GPU.
//!
//! candle's `index_select` is differentiable through `index_add`, whose CUDA
//! kernel gives one thread to each column and walks it through every index in
//! turn. A training batch of 1024 captions has about 14 thousand tokens: the
//! token embedding's gradient ran on 512 threads, and a step's five such
//! gradients took 9 of its 21 ms of GPU time (Nsight Compute, H200, CIFAR-10
//! demo model). Here the indices are on the host when the rows are picked, so
//! the gradient groups them by row there (a CSR list) and sums each picked
//! row's gradients in index order: one thread per (row, column), no atomics,
//! the same bits on every run and on the CPU.

use std::sync::Arc;

use candle_core::{bail, CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor};

use crate::nn::train_ops::contiguous_f32;

/// Rows `ids` of the 2-D `table`: `(ids.len(), width)`. Like
/// `table.index_select(ids, 0)`, with the grouped sum above as the backward
/// pass for f32 tables on the CPU or CUDA (other dtypes and devices take
/// candle's op).
pub fn gather_rows(table: &Tensor, ids: &[u32]) -> Result<Tensor> {
    let (rows, _) = table.dims2()?;
    if let Some(&bad) = ids.iter().find(|&&i| i as usize >= rows) {
        bail!("row {bad} picked from a table of {rows} rows")
    }
    let ours = table.dtype() == DType::F32 && (table.device().is_cpu() || table.device().is_cuda());
    if !ours {
        return table.index_select(&Tensor::from_slice(ids, ids.len(), table.device())?, 0);
    }
    table.contiguous()?.apply_op1(RowGather {
        ids: Arc::from(ids),
    })
}

struct RowGather {
    ids: Arc<[u32]>,
}

impl CustomOp1 for RowGather {
    fn name(&self) -> &'static str {
        "seer-gather-rows"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (table, width) = contiguous_rows(s, l, self.name())?;
        let mut out = Vec::with_capacity(self.ids.len() * width);
        for &id in self.ids.iter() {
            let start = id as usize * width;
            out.extend_from_slice(&table[start..start + width]);
        }
        Ok((CpuStorage::F32(out), Shape::from((self.ids.len(), width))))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s: &candle_core::CudaStorage,
        l: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        crate::nn::cuda_ops::gather_rows(s, l, &self.ids)
    }

    fn bwd(&self, table: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let (rows, _) = table.dims2()?;
        let scatter = RowScatter::new(&self.ids, rows);
        Ok(Some(grad.contiguous()?.apply_op1_no_bwd(&scatter)?))
    }
}

/// The f32 values of a contiguous 2-D tensor and its row width.
fn contiguous_rows<'a>(s: &'a CpuStorage, l: &Layout, op: &str) -> Result<(&'a [f32], usize)> {
    let (_, width) = l.shape().dims2()?;
    Ok((contiguous_f32(s, l, op)?, width))
}

/// The gradient of [`gather_rows`]: a `(rows, width)` matrix, zero but for the
/// picked rows, each the sum of the gradient rows that picked it.
pub(crate) struct RowScatter {
    /// Rows of the table (of the output).
    pub(crate) rows: usize,
    /// Each row picked at least once, ascending.
    pub(crate) picked: Vec<u32>,
    /// `picked[u]`'s gradient rows are `order[starts[u]..starts[u + 1]]`.
    pub(crate) starts: Vec<u32>,
    /// Gradient rows grouped by the row they picked, in index order within.
    pub(crate) order: Vec<u32>,
}

impl RowScatter {
    fn new(ids: &[u32], rows: usize) -> Self {
        let mut order: Vec<u32> = (0..ids.len() as u32).collect();
        // Stable: a row's gradients keep their index order.
        order.sort_by_key(|&k| ids[k as usize]);
        let mut picked = Vec::new();
        let mut starts = Vec::new();
        for (k, &i) in order.iter().enumerate() {
            let id = ids[i as usize];
            if picked.last() != Some(&id) {
                picked.push(id);
                starts.push(k as u32);
            }
        }
        starts.push(order.len() as u32);
        Self {
            rows,
            picked,
            starts,
            order,
        }
    }

    /// The gradient rows that picked `picked[u]`.
    fn sources(&self, u: usize) -> &[u32] {
        &self.order[self.starts[u] as usize..self.starts[u + 1] as usize]
    }
}

impl CustomOp1 for RowScatter {
    fn name(&self) -> &'static str {
        "seer-scatter-rows"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (grad, width) = contiguous_rows(s, l, self.name())?;
        if grad.len() != self.order.len() * width {
            bail!(
                "{}: {} gradient values for {} rows",
                self.name(),
                grad.len(),
                self.order.len()
            )
        }
        let mut out = vec![0f32; self.rows * width];
        for (u, &row) in self.picked.iter().enumerate() {
            let out = &mut out[row as usize * width..(row as usize + 1) * width];
            for &k in self.sources(u) {
                let g = &grad[k as usize * width..(k as usize + 1) * width];
                for (o, &g) in out.iter_mut().zip(g) {
                    *o += g;
                }
            }
        }
        Ok((CpuStorage::F32(out), Shape::from((self.rows, width))))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s: &candle_core::CudaStorage,
        l: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        crate::nn::cuda_ops::scatter_rows(s, l, self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};
    use seer_testkit::test_device;

    fn values(n: usize, seed: f32) -> Vec<f32> {
        (0..n)
            .map(|i| (i as f32 * 0.37 + seed).sin() * 3.0)
            .collect()
    }

    /// Forward and gradient against `index_select` on the CPU: repeated and
    /// unsorted indices, a row never picked, none at all.
    #[test]
    fn gather_rows_matches_index_select_and_its_gradient() {
        let device = test_device();
        let (rows, width) = (9, 37);
        let table = values(rows * width, 0.5);
        for ids in [vec![3u32, 0, 7, 3, 3, 8, 0, 1, 2, 4, 5, 6], vec![5], vec![]] {
            let upstream = values(ids.len() * width, 1.5);
            let grad_of = |device: &Device, ours: bool| {
                let t = Var::from_vec(table.clone(), (rows, width), device).unwrap();
                let y = if ours {
                    gather_rows(t.as_tensor(), &ids).unwrap()
                } else {
                    let index = Tensor::from_slice(&ids, ids.len(), device).unwrap();
                    t.as_tensor().index_select(&index, 0).unwrap()
                };
                let up = Tensor::from_slice(&upstream, (ids.len(), width), device).unwrap();
                let grads = (&y * &up).unwrap().sum_all().unwrap().backward().unwrap();
                let on_host = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                (on_host(&y), on_host(grads.get(t.as_tensor()).unwrap()))
            };
            let (want_y, want_g) = grad_of(&Device::Cpu, false);
            let (got_y, got_g) = grad_of(&device, true);
            assert_eq!(got_y, want_y, "rows {ids:?}");
            assert_eq!(got_g.len(), want_g.len());
            for (k, (g, w)) in got_g.iter().zip(&want_g).enumerate() {
                assert!(
                    (g - w).abs() <= 1e-5 * w.abs().max(1.0),
                    "{ids:?} [{k}]: {g} vs {w}"
                );
            }
            // Summed in index order on every device: the same bits as the CPU.
            assert_eq!(got_g, grad_of(&Device::Cpu, true).1, "rows {ids:?}");
        }
    }

    #[test]
    fn a_row_outside_the_table_is_an_error() {
        let table = Tensor::zeros((4, 3), DType::F32, &Device::Cpu).unwrap();
        let err = gather_rows(&table, &[1, 4]).unwrap_err().to_string();
        assert!(err.contains("row 4") && err.contains("4 rows"), "{err}");
    }
}
