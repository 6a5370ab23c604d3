//! AdamW with decoupled weight decay, the learning-rate schedule and gradient
//! clipping, following PyTorch's `torch.optim.AdamW` (single-tensor path) and
//! open_clip's `cosine_lr` step for step.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{CpuStorage, DType, Device, InplaceOp2, Layout, Tensor};
use seer_kernels::train::{adamw_step, AdamWStep};

use crate::error::{file_error, Result};
use crate::params::ParamStore;

#[derive(Clone, Copy, Debug, serde::Serialize, serde::Deserialize)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    /// open_clip's defaults for ViT training.
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.98,
            eps: 1e-6,
            weight_decay: 0.2,
        }
    }
}

/// First and second moments of one parameter.
struct Moments {
    exp_avg: Vec<f32>,
    exp_avg_sq: Vec<f32>,
}

impl Moments {
    /// One step of PyTorch's single-tensor AdamW on the weights `w` and these
    /// moments, for the gradient `g`.
    fn update(&mut self, step: AdamWStep, w: &mut [f32], g: &[f32]) {
        adamw_step(step, w, g, &mut self.exp_avg, &mut self.exp_avg_sq);
    }
}

/// Whether [`UpdateInPlace`] can run on `t`: a contiguous CPU f32 tensor.
fn in_place(t: &Tensor) -> bool {
    t.device().is_cpu() && t.dtype() == DType::F32 && t.is_contiguous()
}

/// [`Moments::update`] on a parameter's own storage, with the gradient as the argument:
/// through host copies (the gradient and the weights out, the weights back
/// in) a step copied every parameter three times, 75 MB for the CIFAR-10
/// demo's token embedding alone.
struct UpdateInPlace<'m> {
    step: AdamWStep,
    /// The op's methods take `&self`; only `cpu_fwd` locks it, once.
    moments: std::sync::Mutex<&'m mut Moments>,
}

impl InplaceOp2 for UpdateInPlace<'_> {
    fn name(&self) -> &'static str {
        "seer-adamw"
    }

    fn cpu_fwd(
        &self,
        w: &mut CpuStorage,
        wl: &Layout,
        g: &CpuStorage,
        gl: &Layout,
    ) -> candle_core::Result<()> {
        let (CpuStorage::F32(w), CpuStorage::F32(g)) = (w, g) else {
            candle_core::bail!("adamw: f32 parameters only")
        };
        let (Some((w0, w1)), Some((g0, g1))) = (wl.contiguous_offsets(), gl.contiguous_offsets())
        else {
            candle_core::bail!("adamw: contiguous tensors only")
        };
        let mut m = self
            .moments
            .lock()
            .map_err(|_| candle_core::Error::Msg("adamw: moments lock poisoned".into()))?;
        let (w, g) = (&mut w[w0..w1], &g[g0..g1]);
        if w.len() != g.len() || m.exp_avg.len() != w.len() {
            candle_core::bail!(
                "adamw: {} weights, {} gradients, {} moments",
                w.len(),
                g.len(),
                m.exp_avg.len()
            )
        }
        m.update(self.step, w, g);
        Ok(())
    }
}

pub struct AdamW {
    pub config: AdamWConfig,
    /// Updates taken so far (PyTorch's per-parameter `step`, equal for all).
    pub step: u64,
    state: HashMap<String, Moments>,
}

impl AdamW {
    pub fn new(config: AdamWConfig) -> Self {
        Self {
            config,
            step: 0,
            state: HashMap::new(),
        }
    }

    /// One update of every trainable parameter that has a gradient; parameters
    /// without one are left alone, as PyTorch skips `grad is None`.
    pub fn update(
        &mut self,
        store: &ParamStore,
        grads: &HashMap<String, Tensor>,
        lr: f64,
    ) -> Result<()> {
        self.step += 1;
        let c = self.config;
        let bias_correction1 = 1.0 - c.beta1.powi(self.step as i32);
        let bias_correction2_sqrt = (1.0 - c.beta2.powi(self.step as i32)).sqrt();
        for p in store.params().iter().filter(|p| p.trainable()) {
            let Some(g) = grads.get(&p.name) else {
                continue;
            };
            let m = self.state.entry(p.name.clone()).or_insert_with(|| Moments {
                exp_avg: vec![0.0; g.elem_count()],
                exp_avg_sq: vec![0.0; g.elem_count()],
            });
            let step = AdamWStep {
                decay: if p.decay {
                    (1.0 - lr * c.weight_decay) as f32
                } else {
                    1.0
                },
                lerp_weight: (1.0 - c.beta1) as f32,
                beta2: c.beta2 as f32,
                sq_weight: (1.0 - c.beta2) as f32,
                bias_correction2_sqrt: bias_correction2_sqrt as f32,
                eps: c.eps as f32,
                step_size: (lr / bias_correction1) as f32,
            };
            let var = p.var().as_tensor();
            if in_place(var) && in_place(g) {
                let op = UpdateInPlace {
                    step,
                    moments: std::sync::Mutex::new(m),
                };
                var.inplace_op2(g, &op)?;
            } else {
                // Other devices and dtypes: through host copies.
                let g: Vec<f32> = g.flatten_all()?.to_vec1()?;
                let mut w: Vec<f32> = var.flatten_all()?.to_vec1()?;
                m.update(step, &mut w, &g);
                p.var()
                    .set(&Tensor::from_vec(w, p.dims(), store.device())?)?;
            }
        }
        Ok(())
    }

    /// Moments as tensors named `exp_avg.<param>` / `exp_avg_sq.<param>`.
    pub fn save(&self, store: &ParamStore, path: &Path) -> Result<()> {
        let mut tensors = HashMap::new();
        for p in store.params() {
            if let Some(m) = self.state.get(&p.name) {
                let dev = store.device();
                tensors.insert(
                    format!("exp_avg.{}", p.name),
                    Tensor::from_slice(&m.exp_avg, p.dims(), dev)?,
                );
                tensors.insert(
                    format!("exp_avg_sq.{}", p.name),
                    Tensor::from_slice(&m.exp_avg_sq, p.dims(), dev)?,
                );
            }
        }
        candle_core::safetensors::save(&tensors, path).map_err(|e| file_error(path, e))
    }

    pub fn load(&mut self, store: &ParamStore, path: &Path, step: u64) -> Result<()> {
        let tensors =
            candle_core::safetensors::load(path, &Device::Cpu).map_err(|e| file_error(path, e))?;
        self.state.clear();
        for p in store.params().iter().filter(|p| p.trainable()) {
            let get = |kind: &str| -> Result<Option<Vec<f32>>> {
                match tensors.get(&format!("{kind}.{}", p.name)) {
                    Some(t) if t.dims() == p.dims() => Ok(Some(t.flatten_all()?.to_vec1()?)),
                    Some(t) => Err(file_error(
                        path,
                        format!(
                            "{kind}.{} has shape {:?}, expected {:?}",
                            p.name,
                            t.dims(),
                            p.dims()
                        ),
                    )),
                    None => Ok(None),
                }
            };
            if let (Some(exp_avg), Some(exp_avg_sq)) = (get("exp_avg")?, get("exp_avg_sq")?) {
                self.state.insert(
                    p.name.clone(),
                    Moments {
                        exp_avg,
                        exp_avg_sq,
                    },
                );
            }
        }
        self.step = step;
        Ok(())
    }
}

/// Scales all gradients so their global L2 norm is at most `max_norm` (as
/// `torch.nn.utils.clip_grad_norm_`). Returns the norm before clipping.
pub fn clip_grad_norm(grads: &mut HashMap<String, Tensor>, max_norm: f64) -> Result<f64> {
    let mut total = 0f64;
    for g in grads.values() {
        total += g
            .sqr()?
            .sum_all()?
            .to_dtype(candle_core::DType::F64)?
            .to_scalar::<f64>()?;
    }
    let norm = total.sqrt();
    let coef = max_norm / (norm + 1e-6);
    if max_norm > 0.0 && coef < 1.0 {
        for g in grads.values_mut() {
            *g = (&*g * coef)?;
        }
    }
    Ok(norm)
}

/// Linear warm-up then cosine decay to zero, as open_clip's `cosine_lr`.
#[derive(Clone, Copy, Debug, serde::Serialize, serde::Deserialize)]
pub struct Schedule {
    pub base_lr: f64,
    pub warmup: u64,
    pub steps: u64,
}

impl Schedule {
    /// Learning rate of update `step` (0-based).
    pub fn lr(&self, step: u64) -> f64 {
        if step < self.warmup {
            self.base_lr * (step + 1) as f64 / self.warmup as f64
        } else {
            let e = (step - self.warmup) as f64;
            let es = self.steps.saturating_sub(self.warmup).max(1) as f64;
            0.5 * (1.0 + (std::f64::consts::PI * e / es).cos()) * self.base_lr
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_warms_up_then_decays_to_zero() {
        let s = Schedule {
            base_lr: 1.0,
            warmup: 10,
            steps: 110,
        };
        assert!((s.lr(0) - 0.1).abs() < 1e-12);
        assert!((s.lr(9) - 1.0).abs() < 1e-12);
        assert!((s.lr(10) - 1.0).abs() < 1e-12);
        assert!((s.lr(60) - 0.5).abs() < 1e-12);
        assert!(s.lr(109) < 1e-3);
    }
}
