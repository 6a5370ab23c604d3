//! AdamW's step for parameters on a GPU: one kernel per parameter (compiled by
//! NVRTC at first use) that updates the weights and both moments in place, with
//! `seer_kernels::train::adamw_step`'s arithmetic rounding for rounding (each
//! operation correctly rounded, no fused multiply-adds). Through tensor ops the
//! same step was 14 candle kernels a parameter, each allocating its output:
//! 12-25 ms a step for the CIFAR-10 model on an H200.

use std::sync::{Mutex, OnceLock};

use candle_core::cuda_backend::cudarc::driver::{CudaSlice, LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::{CudaDevice, WrapErr};
use candle_core::{bail, CpuStorage, CudaStorage, DType, Device, InplaceOp2, Layout, Tensor};
use seer_kernels::train::AdamWStep;

const SOURCE: &str = r#"
extern "C" __global__ void seer_adamw(float *w, const float *g, float *m, float *v, unsigned int n,
                                      float decay, float lerp_weight, float beta2, float sq_weight,
                                      float bc2, float eps, float step_size) {
    for (unsigned int i = blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += blockDim.x * gridDim.x) {
        const float gi = g[i];
        const float wi = __fmul_rn(w[i], decay);
        const float ea = __fadd_rn(m[i], __fmul_rn(lerp_weight, __fsub_rn(gi, m[i])));
        const float eas = __fadd_rn(__fmul_rn(v[i], beta2), __fmul_rn(__fmul_rn(sq_weight, gi), gi));
        const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(eas), bc2), eps);
        w[i] = __fadd_rn(wi, __fdiv_rn(__fmul_rn(-step_size, ea), denom));
        m[i] = ea;
        v[i] = eas;
    }
}
"#;

const MODULE: &str = "seer_train_cuda_ops";

fn ptx() -> candle_core::Result<&'static str> {
    static PTX: OnceLock<Result<String, String>> = OnceLock::new();
    seer_models::nn::cuda_ops::compiled_ptx(&PTX, SOURCE, "seer's AdamW kernel")
}

/// One parameter's moments in GPU memory.
pub(crate) struct CudaMoments {
    dev: CudaDevice,
    exp_avg: CudaSlice<f32>,
    exp_avg_sq: CudaSlice<f32>,
}

impl CudaMoments {
    /// The device of `w` when the kernel can update it in place: a contiguous
    /// f32 tensor on a GPU.
    pub fn device_of(w: &Tensor) -> Option<CudaDevice> {
        match w.device() {
            Device::Cuda(dev) if w.dtype() == DType::F32 && w.is_contiguous() => Some(dev.clone()),
            _ => None,
        }
    }

    pub fn from_host(
        dev: &CudaDevice,
        exp_avg: &[f32],
        exp_avg_sq: &[f32],
    ) -> candle_core::Result<Self> {
        Ok(Self {
            dev: dev.clone(),
            exp_avg: dev.clone_htod(exp_avg)?,
            exp_avg_sq: dev.clone_htod(exp_avg_sq)?,
        })
    }

    pub fn to_host(&self) -> candle_core::Result<(Vec<f32>, Vec<f32>)> {
        Ok((
            self.dev.clone_dtoh(&self.exp_avg)?,
            self.dev.clone_dtoh(&self.exp_avg_sq)?,
        ))
    }

    /// One step on `w` (in place) for the gradient `g`, which must be a
    /// contiguous f32 tensor on the same GPU.
    pub fn update(&mut self, step: AdamWStep, w: &Tensor, g: &Tensor) -> candle_core::Result<()> {
        w.inplace_op2(
            g,
            &Step {
                step,
                moments: Mutex::new(self),
            },
        )
    }
}

struct Step<'m> {
    step: AdamWStep,
    /// The op's methods take `&self`; only `cuda_fwd` locks it, once.
    moments: Mutex<&'m mut CudaMoments>,
}

impl InplaceOp2 for Step<'_> {
    fn name(&self) -> &'static str {
        "seer-adamw-cuda"
    }

    fn cpu_fwd(
        &self,
        _: &mut CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> candle_core::Result<()> {
        bail!("the CUDA AdamW step runs on CUDA only")
    }

    fn cuda_fwd(
        &self,
        w: &mut CudaStorage,
        wl: &Layout,
        g: &CudaStorage,
        gl: &Layout,
    ) -> candle_core::Result<()> {
        let (Some((w0, w1)), Some((g0, g1))) = (wl.contiguous_offsets(), gl.contiguous_offsets())
        else {
            bail!("adamw: contiguous tensors only")
        };
        let mut m = self
            .moments
            .lock()
            .map_err(|_| candle_core::Error::Msg("adamw: moments lock poisoned".into()))?;
        let n = w1 - w0;
        if g1 - g0 != n || m.exp_avg.len() != n || n > u32::MAX as usize {
            bail!(
                "adamw: {n} weights, {} gradients, {} moments",
                g1 - g0,
                m.exp_avg.len()
            )
        }
        let func = w
            .device
            .get_or_load_custom_func("seer_adamw", MODULE, ptx()?)?;
        let grad = g.as_cuda_slice::<f32>()?.slice(g0..g1);
        let mut weights = w.as_cuda_slice_mut::<f32>()?.slice_mut(w0..w1);
        let CudaMoments {
            exp_avg,
            exp_avg_sq,
            ..
        } = &mut **m;
        let s = self.step;
        let n32 = n as u32;
        let mut builder = func.builder();
        builder.arg(&mut weights);
        builder.arg(&grad);
        builder.arg(exp_avg);
        builder.arg(exp_avg_sq);
        builder.arg(&n32);
        for x in [
            &s.decay,
            &s.lerp_weight,
            &s.beta2,
            &s.sq_weight,
            &s.bias_correction2_sqrt,
            &s.eps,
            &s.step_size,
        ] {
            builder.arg(x);
        }
        // SAFETY: the kernel reads and writes n elements of the weights and both
        // moments and reads n of the gradient; all hold n (checked above).
        unsafe { builder.launch(LaunchConfig::for_num_elems(n32)) }.w()?;
        Ok(())
    }
}
