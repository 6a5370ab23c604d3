//! Fused CUDA kernels for GPU inference, compiled with NVRTC on first use (no
//! CUDA compiler is needed to build seer):
//!
//! - `y = act(y + bias)` in place after a linear's matmul. candle runs a bias add
//!   as a general broadcast kernel and quick-GELU as three more passes; on
//!   ViT-B/32 at batch 256 those took a fifth of the GPU's time (Nsight Compute).
//!   At bf16 an MLP's hidden layer is written straight in bf16 for fc2.
//! - `y = residual + (y + bias)` in place: a block's residual add in the same pass.
//! - multi-head attention for short sequences, straight from the fused q/k/v
//!   matmul output: one kernel instead of three gathers into contiguous q/k/v, a
//!   scale, two batched matmuls, a softmax and a transpose copy.
//! - the bf16 matmul of `--precision bf16` with an f32 product (cuBLAS, not NVRTC).
//! - [`crate::nn::gather_rows`]'s row gather and its backward, a grouped sum of
//!   gradient rows (used in training and inference alike).

use std::sync::OnceLock;

use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::cudarc::nvrtc;
use candle_core::cuda_backend::WrapErr;
use candle_core::{
    bail, CpuStorage, CudaStorage, CustomOp1, CustomOp2, InplaceOp2, InplaceOp3, Layout, Result,
    Shape, Tensor,
};

use crate::nn::config::Activation;

const SOURCE: &str = r#"
__device__ __forceinline__ float seer_activate(float v, int act) {
    if (act == 1) {
        v = v / (1.0f + expf(-1.702f * v));                  /* x * sigmoid(1.702 x) */
    } else if (act == 2) {
        v = 0.5f * v * (1.0f + erff(v * 0.7071067811865476f)); /* exact GELU */
    } else if (act == 3) {
        float u = 0.7978845608f * (v + 0.044715f * v * v * v);
        v = v / (1.0f + expf(-2.0f * u));                     /* tanh GELU */
    }
    return v;
}

/* y = act(y + bias), plus residual when add_residual (only then is residual read). */
extern "C" __global__ void seer_epilogue(float *y, const float *bias, const float *residual,
                                         unsigned int total, unsigned int n, int act,
                                         int add_residual) {
    for (unsigned int i = blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += blockDim.x * gridDim.x) {
        float v = seer_activate(y[i] + bias[i % n], act);
        if (add_residual) v += residual[i];
        y[i] = v;
    }
}

/* The same four floats at a time (16-byte loads and stores, one index
   division per four), for widths and offsets that are multiples of 4. */
extern "C" __global__ void seer_epilogue4(float4 *y, const float4 *bias, const float4 *residual,
                                          unsigned int total4, unsigned int n4, int act,
                                          int add_residual) {
    for (unsigned int i = blockIdx.x * blockDim.x + threadIdx.x; i < total4;
         i += blockDim.x * gridDim.x) {
        float4 v = y[i];
        const float4 b = bias[i % n4];
        v.x = seer_activate(v.x + b.x, act);
        v.y = seer_activate(v.y + b.y, act);
        v.z = seer_activate(v.z + b.z, act);
        v.w = seer_activate(v.w + b.w, act);
        if (add_residual) {
            const float4 r = residual[i];
            v.x += r.x; v.y += r.y; v.z += r.z; v.w += r.w;
        }
        y[i] = v;
    }
}

/* f32 -> bf16, rounding to nearest even (as a cast would); NaN stays NaN. */
__device__ __forceinline__ unsigned int seer_bf16_bits(float v) {
    unsigned int u = __float_as_uint(v);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (u >> 16) | 0x40u;
    return (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
}

/* out = bf16(act(y + bias)), four at a time: the hidden layer of an MLP whose
   next matmul takes bf16, written once in the type it is read in. */
extern "C" __global__ void seer_epilogue4_bf16(const float4 *y, const float4 *bias, uint2 *out,
                                               unsigned int total4, unsigned int n4, int act) {
    for (unsigned int i = blockIdx.x * blockDim.x + threadIdx.x; i < total4;
         i += blockDim.x * gridDim.x) {
        const float4 v = y[i], b = bias[i % n4];
        const unsigned int x = seer_bf16_bits(seer_activate(v.x + b.x, act));
        const unsigned int yy = seer_bf16_bits(seer_activate(v.y + b.y, act));
        const unsigned int z = seer_bf16_bits(seer_activate(v.z + b.z, act));
        const unsigned int w = seer_bf16_bits(seer_activate(v.w + b.w, act));
        out[i] = make_uint2(x | (yy << 16), z | (w << 16));
    }
}

/* out[r][c] = table[ids[r]][c]. */
extern "C" __global__ void seer_gather_rows(const float *table, const unsigned int *ids,
                                            float *out, unsigned int rows, unsigned int width) {
    const size_t total = (size_t)rows * width;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (size_t)blockDim.x * gridDim.x) {
        out[i] = table[(size_t)ids[i / width] * width + i % width];
    }
}

/* out[picked[u]][c] = sum of grad[order[k]][c] for k in starts[u]..starts[u+1],
   in that order (out starts zeroed; rows never picked stay zero). */
extern "C" __global__ void seer_scatter_rows(const float *grad, const unsigned int *picked,
                                             const unsigned int *starts,
                                             const unsigned int *order, float *out,
                                             unsigned int n_picked, unsigned int width) {
    const size_t total = (size_t)n_picked * width;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (size_t)blockDim.x * gridDim.x) {
        const size_t u = i / width, c = i % width;
        float sum = 0.0f;
        for (unsigned int k = starts[u]; k < starts[u + 1]; ++k) {
            sum += grad[(size_t)order[k] * width + c];
        }
        out[(size_t)picked[u] * width + c] = sum;
    }
}

/* One block per (sequence, head); one warp per query row at a time. qkv is
   (batch, t, 3c) with rows [q | k | v], heads side by side; out is (batch, t, c).
   K and V rows are padded to d + 1 floats so lanes reading different keys hit
   different shared-memory banks. */
extern "C" __global__ void seer_attention(const float *qkv, float *out, int t, int heads,
                                          int d, float scale, int causal) {
    extern __shared__ float sm[];
    const int dp = d + 1, warps = blockDim.x / 32;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int b = blockIdx.x / heads, h = blockIdx.x % heads;
    const int c = heads * d, row = 3 * c;
    const float *base = qkv + (size_t)b * t * row;
    float *K = sm, *V = sm + t * dp, *P = sm + 2 * t * dp + warp * t;
    float *Q = sm + 2 * t * dp + warps * t + warp * d;
    for (int i = threadIdx.x; i < t * d; i += blockDim.x) {
        int j = i / d, x = i % d;
        K[j * dp + x] = base[(size_t)j * row + c + h * d + x];
        V[j * dp + x] = base[(size_t)j * row + 2 * c + h * d + x];
    }
    __syncthreads();
    for (int i = warp; i < t; i += warps) {
        for (int x = lane; x < d; x += 32) Q[x] = base[(size_t)i * row + h * d + x];
        __syncwarp();
        const int keys = causal ? i + 1 : t;
        float mx = __int_as_float(0xff800000); /* -inf */
        for (int j = lane; j < keys; j += 32) {
            float s = 0.0f;
            for (int x = 0; x < d; ++x) s += Q[x] * K[j * dp + x];
            s *= scale;
            P[j] = s;
            mx = fmaxf(mx, s);
        }
        for (int o = 16; o > 0; o /= 2) mx = fmaxf(mx, __shfl_xor_sync(0xffffffff, mx, o));
        float sum = 0.0f;
        for (int j = lane; j < keys; j += 32) {
            float e = expf(P[j] - mx);
            P[j] = e;
            sum += e;
        }
        for (int o = 16; o > 0; o /= 2) sum += __shfl_xor_sync(0xffffffff, sum, o);
        __syncwarp();
        const float inv = 1.0f / sum;
        for (int x = lane; x < d; x += 32) {
            float acc = 0.0f;
            for (int j = 0; j < keys; ++j) acc += P[j] * V[j * dp + x];
            out[((size_t)b * t + i) * c + h * d + x] = acc * inv;
        }
        __syncwarp();
    }
}
"#;

const MODULE: &str = "seer_cuda_ops";
const ATTENTION_THREADS: u32 = 128;
/// Shared memory a block may take without opting in to more.
const SHARED_LIMIT: usize = 48 * 1024;

/// A kernel source's PTX, compiled by NVRTC on first use and kept in `cell`
/// (a failure too, so it is reported alike each time); `what` names the
/// kernels in the error.
pub fn compiled_ptx(
    cell: &'static OnceLock<std::result::Result<String, String>>,
    source: &str,
    what: &str,
) -> Result<&'static str> {
    cell.get_or_init(|| {
        nvrtc::compile_ptx(source)
            .map(|p| p.to_src())
            .map_err(|e| format!("NVRTC could not compile {what}: {e}"))
    })
    .as_deref()
    .map_err(|e| candle_core::Error::Msg(e.clone()))
}

fn ptx() -> Result<&'static str> {
    static PTX: OnceLock<std::result::Result<String, String>> = OnceLock::new();
    compiled_ptx(&PTX, SOURCE, "seer's CUDA kernels")
}

fn activation_code(act: Option<Activation>) -> i32 {
    match act {
        None => 0,
        Some(Activation::QuickGelu) => 1,
        Some(Activation::Gelu) => 2,
        Some(Activation::GeluTanh) => 3,
    }
}

/// `y = act(y + bias)` in place on a contiguous `(rows, n)` f32 CUDA tensor.
pub(crate) fn bias_activation(y: &Tensor, bias: &Tensor, act: Option<Activation>) -> Result<()> {
    y.inplace_op2(bias, &BiasAct(activation_code(act)))
}

/// `bf16(act(y + bias))` as a new tensor of `y`'s shape, for a result that only
/// feeds a bf16 matmul: one pass that writes 2 bytes an element instead of an
/// f32 epilogue (4) and a cast (reading 4, writing 2).
pub(crate) fn bias_activation_bf16(
    y: &Tensor,
    bias: &Tensor,
    act: Option<Activation>,
) -> Result<Tensor> {
    if !fits_bf16_epilogue(y.layout(), bias.layout()) {
        bias_activation(y, bias, act)?;
        return y.to_dtype(candle_core::DType::BF16);
    }
    y.apply_op2_no_bwd(bias, &BiasActBf16(activation_code(act)))
}

/// Whether `seer_epilogue4_bf16` takes this output and bias: contiguous, and
/// offsets and widths whole float4s.
fn fits_bf16_epilogue(yl: &Layout, bl: &Layout) -> bool {
    match (yl.contiguous_offsets(), bl.contiguous_offsets()) {
        (Some((y0, y1)), Some((b0, b1))) => by_four(&[y0, b0, y1 - y0, b1 - b0]),
        _ => false,
    }
}

/// Whether every offset and width is a multiple of 4 elements: the float4
/// kernels' 16-byte loads and stores (candle's allocations start aligned).
fn by_four(offsets_and_widths: &[usize]) -> bool {
    offsets_and_widths.iter().all(|v| v % 4 == 0)
}

fn contiguous_range(l: &Layout) -> Result<(usize, usize)> {
    l.contiguous_offsets().ok_or_else(|| {
        candle_core::Error::Msg("the fused epilogue needs contiguous tensors".into())
    })
}

/// The element ranges of an epilogue's output and bias: contiguous, and the
/// output a whole number of bias-wide rows.
fn epilogue_ranges(yl: &Layout, bl: &Layout) -> Result<((usize, usize), (usize, usize))> {
    let ((y0, y1), (b0, b1)) = (contiguous_range(yl)?, contiguous_range(bl)?);
    let (total, n) = (y1 - y0, b1 - b0);
    if n == 0 || total % n != 0 {
        bail!("the fused epilogue got {total} outputs for a bias of {n}")
    }
    Ok(((y0, y1), (b0, b1)))
}

/// `y = residual + (y + bias)` in place (a block's residual add in the output
/// projection's epilogue); all three contiguous f32 CUDA tensors.
pub(crate) fn bias_residual(y: &Tensor, bias: &Tensor, residual: &Tensor) -> Result<()> {
    y.inplace_op3(bias, residual, &BiasResidual)
}

struct BiasAct(i32);

impl InplaceOp2 for BiasAct {
    fn name(&self) -> &'static str {
        "seer-bias-activation"
    }

    fn cpu_fwd(&self, _: &mut CpuStorage, _: &Layout, _: &CpuStorage, _: &Layout) -> Result<()> {
        bail!("the fused bias epilogue runs on CUDA only")
    }

    fn cuda_fwd(
        &self,
        y: &mut CudaStorage,
        yl: &Layout,
        b: &CudaStorage,
        bl: &Layout,
    ) -> Result<()> {
        launch_epilogue(y, yl, b, bl, None, self.0)
    }
}

/// Runs `seer_epilogue` over `y` (in place) with `bias` and an optional residual.
fn launch_epilogue(
    y: &mut CudaStorage,
    yl: &Layout,
    b: &CudaStorage,
    bl: &Layout,
    residual: Option<(&CudaStorage, &Layout)>,
    act: i32,
) -> Result<()> {
    let ((y0, y1), (b0, b1)) = epilogue_ranges(yl, bl)?;
    let (total, n) = (y1 - y0, b1 - b0);
    let residual_range = residual.map(|(_, rl)| contiguous_range(rl)).transpose()?;
    if total > u32::MAX as usize || residual_range.is_some_and(|(r0, r1)| r1 - r0 != total) {
        bail!("the fused epilogue got {total} outputs and residual {residual_range:?}")
    }
    let by_four = by_four(&[y0, b0, residual_range.map_or(0, |r| r.0), total, n]);
    let name = if by_four {
        "seer_epilogue4"
    } else {
        "seer_epilogue"
    };
    let func = y.device.get_or_load_custom_func(name, MODULE, ptx()?)?;
    let bias = b.as_cuda_slice::<f32>()?.slice(b0..b1);
    // Without a residual the kernel never reads that pointer: pass the bias.
    let residual = match (residual, residual_range) {
        (Some((r, _)), Some((r0, r1))) => r.as_cuda_slice::<f32>()?.slice(r0..r1),
        _ => b.as_cuda_slice::<f32>()?.slice(b0..b1),
    };
    let mut out = y.as_cuda_slice_mut::<f32>()?.slice_mut(y0..y1);
    let add_residual = i32::from(residual_range.is_some());
    let step = if by_four { 4 } else { 1 };
    let (total, n) = ((total / step) as u32, (n / step) as u32);
    let mut builder = func.builder();
    builder.arg(&mut out);
    builder.arg(&bias);
    builder.arg(&residual);
    builder.arg(&total);
    builder.arg(&n);
    builder.arg(&act);
    builder.arg(&add_residual);
    // SAFETY: reads `total` elements (floats or float4s, in bounds and 16-byte
    // aligned for the latter) of y and the residual, and `n` of bias.
    unsafe { builder.launch(LaunchConfig::for_num_elems(total)) }.w()?;
    Ok(())
}

struct BiasActBf16(i32);

impl CustomOp2 for BiasActBf16 {
    fn name(&self) -> &'static str {
        "seer-bias-activation-bf16"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        bail!("the fused bf16 epilogue runs on CUDA only")
    }

    fn cuda_fwd(
        &self,
        ys: &CudaStorage,
        yl: &Layout,
        bs: &CudaStorage,
        bl: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        let ((y0, y1), (b0, b1)) = epilogue_ranges(yl, bl)?;
        let (total, n) = (y1 - y0, b1 - b0);
        if !fits_bf16_epilogue(yl, bl) || total / 4 > u32::MAX as usize {
            bail!("the fused bf16 epilogue got {total} outputs for a bias of {n} at offsets {y0} and {b0}")
        }
        let dev = &ys.device;
        let func = dev.get_or_load_custom_func("seer_epilogue4_bf16", MODULE, ptx()?)?;
        let y = ys.as_cuda_slice::<f32>()?.slice(y0..y1);
        let bias = bs.as_cuda_slice::<f32>()?.slice(b0..b1);
        // SAFETY: the kernel writes every element, four per thread step.
        let out = unsafe { dev.alloc::<half::bf16>(total)? };
        let (total4, n4) = ((total / 4) as u32, (n / 4) as u32);
        let act = self.0;
        let mut builder = func.builder();
        builder.arg(&y);
        builder.arg(&bias);
        builder.arg(&out);
        builder.arg(&total4);
        builder.arg(&n4);
        builder.arg(&act);
        // SAFETY: reads total4 float4s of y and n4 of bias, writes total4 groups
        // of four bf16 of out; all in bounds, every start 16-byte aligned (offsets
        // checked above, fresh allocations aligned) and out's 8-byte stores too.
        unsafe { builder.launch(LaunchConfig::for_num_elems(total4)) }.w()?;
        Ok((
            CudaStorage::wrap_cuda_slice(out, dev.clone()),
            yl.shape().clone(),
        ))
    }
}

fn attention_shared_bytes(t: usize, d: usize) -> usize {
    let warps = ATTENTION_THREADS as usize / 32;
    4 * (2 * t * (d + 1) + warps * (t + d))
}

/// Whether [`attention`] takes sequences of `t` tokens at head dim `d` (its
/// keys and values must fit in a block's shared memory: ViT-B/32's 50 tokens and
/// the text tower's 77 do, ViT-B/16's 197 take candle's path).
pub(crate) fn attention_fits(t: usize, d: usize) -> bool {
    attention_shared_bytes(t, d) <= SHARED_LIMIT
}

/// `softmax(q kᵀ · scale) v` per head from a `(batch, t, 3c)` q/k/v tensor;
/// returns `(batch, t, c)` with the heads side by side.
pub(crate) fn attention(qkv: &Tensor, heads: usize, causal: bool) -> Result<Tensor> {
    qkv.apply_op1_no_bwd(&Attention { heads, causal })
}

struct Attention {
    heads: usize,
    causal: bool,
}

impl CustomOp1 for Attention {
    fn name(&self) -> &'static str {
        "seer-attention"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        bail!("the fused attention kernel runs on CUDA only")
    }

    fn cuda_fwd(&self, s: &CudaStorage, l: &Layout) -> Result<(CudaStorage, Shape)> {
        let (batch, t, c3) = l.shape().dims3()?;
        let (c, heads) = (c3 / 3, self.heads);
        let Some((o0, o1)) = l.contiguous_offsets() else {
            bail!("the fused attention kernel needs a contiguous q/k/v tensor")
        };
        if heads == 0 || c3 % 3 != 0 || c % heads != 0 || !attention_fits(t, c / heads) {
            bail!("the fused attention kernel cannot take {t} tokens of width {c} in {heads} heads")
        }
        let d = c / heads;
        let dev = &s.device;
        let func = dev.get_or_load_custom_func("seer_attention", MODULE, ptx()?)?;
        let input = s.as_cuda_slice::<f32>()?.slice(o0..o1);
        // SAFETY: the kernel writes every element (each row, head and column).
        let out = unsafe { dev.alloc::<f32>(batch * t * c)? };
        let (t32, h32, d32) = (t as i32, heads as i32, d as i32);
        let scale = 1.0 / (d as f32).sqrt();
        let causal = i32::from(self.causal);
        let cfg = LaunchConfig {
            grid_dim: ((batch * heads) as u32, 1, 1),
            block_dim: (ATTENTION_THREADS, 1, 1),
            shared_mem_bytes: attention_shared_bytes(t, d) as u32,
        };
        let mut builder = func.builder();
        builder.arg(&input);
        builder.arg(&out);
        builder.arg(&t32);
        builder.arg(&h32);
        builder.arg(&d32);
        builder.arg(&scale);
        builder.arg(&causal);
        // SAFETY: reads batch·t·3c inputs, writes batch·t·c outputs, both in bounds.
        unsafe { builder.launch(cfg) }.w()?;
        Ok((
            CudaStorage::wrap_cuda_slice(out, dev.clone()),
            Shape::from((batch, t, c)),
        ))
    }
}

struct BiasResidual;

impl InplaceOp3 for BiasResidual {
    fn name(&self) -> &'static str {
        "seer-bias-residual"
    }

    fn cpu_fwd(
        &self,
        _: &mut CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<()> {
        bail!("the fused residual epilogue runs on CUDA only")
    }

    fn cuda_fwd(
        &self,
        y: &mut CudaStorage,
        yl: &Layout,
        b: &CudaStorage,
        bl: &Layout,
        r: &CudaStorage,
        rl: &Layout,
    ) -> Result<()> {
        launch_epilogue(y, yl, b, bl, Some((r, rl)), 0)
    }
}

/// [`crate::nn::gather_rows`]'s forward: rows `ids` of a contiguous f32
/// `(rows, width)` table (the ids checked against its rows by the caller).
pub(crate) fn gather_rows(
    s: &CudaStorage,
    l: &Layout,
    ids: &[u32],
) -> Result<(CudaStorage, Shape)> {
    let (Some((o0, o1)), Ok((_, width))) = (l.contiguous_offsets(), l.shape().dims2()) else {
        bail!(
            "gather_rows needs a contiguous 2-D table, got {:?}",
            l.shape()
        )
    };
    let total = ids.len() * width;
    let dev = &s.device;
    let out = dev.alloc_zeros::<f32>(total)?;
    if total > 0 {
        let func = dev.get_or_load_custom_func("seer_gather_rows", MODULE, ptx()?)?;
        let table = s.as_cuda_slice::<f32>()?.slice(o0..o1);
        let on_gpu = dev.clone_htod(ids)?;
        let (rows, width32) = (ids.len() as u32, width as u32);
        let mut builder = func.builder();
        builder.arg(&table);
        builder.arg(&on_gpu);
        builder.arg(&out);
        builder.arg(&rows);
        builder.arg(&width32);
        // SAFETY: writes rows·width outputs; reads ids (each below the table's
        // rows, checked by the caller) and those rows of the table.
        unsafe {
            builder.launch(LaunchConfig::for_num_elems(
                total.min(u32::MAX as usize) as u32
            ))
        }
        .w()?;
    }
    Ok((
        CudaStorage::wrap_cuda_slice(out, dev.clone()),
        Shape::from((ids.len(), width)),
    ))
}

/// [`crate::nn::gather_rows`]'s backward on a contiguous f32 gradient.
pub(crate) fn scatter_rows(
    s: &CudaStorage,
    l: &Layout,
    scatter: &crate::nn::gather_rows::RowScatter,
) -> Result<(CudaStorage, Shape)> {
    let (Some((o0, o1)), Ok((n, width))) = (l.contiguous_offsets(), l.shape().dims2()) else {
        bail!(
            "scatter_rows needs a contiguous 2-D gradient, got {:?}",
            l.shape()
        )
    };
    if n != scatter.order.len() {
        bail!(
            "scatter_rows got {n} gradient rows for {} picked",
            scatter.order.len()
        )
    }
    let dev = &s.device;
    let out = dev.alloc_zeros::<f32>(scatter.rows * width)?;
    let total = scatter.picked.len() * width;
    if total > 0 {
        let func = dev.get_or_load_custom_func("seer_scatter_rows", MODULE, ptx()?)?;
        let grad = s.as_cuda_slice::<f32>()?.slice(o0..o1);
        let picked = dev.clone_htod(scatter.picked.as_slice())?;
        let starts = dev.clone_htod(scatter.starts.as_slice())?;
        let order = dev.clone_htod(scatter.order.as_slice())?;
        let (n_picked, width32) = (scatter.picked.len() as u32, width as u32);
        let mut builder = func.builder();
        builder.arg(&grad);
        builder.arg(&picked);
        builder.arg(&starts);
        builder.arg(&order);
        builder.arg(&out);
        builder.arg(&n_picked);
        builder.arg(&width32);
        // SAFETY: `picked` are rows of out, `order` rows of grad and `starts`
        // bounds into `order` (RowScatter::new builds them so).
        unsafe {
            builder.launch(LaunchConfig::for_num_elems(
                total.min(u32::MAX as usize) as u32
            ))
        }
        .w()?;
    }
    Ok((
        CudaStorage::wrap_cuda_slice(out, dev.clone()),
        Shape::from((scatter.rows, width)),
    ))
}

/// `x wᵀ` for a bf16 `(rows, k)` `x` and a bf16 `(n, k)` `w`, both contiguous,
/// as an f32 `(rows, n)` tensor: cuBLAS on the tensor cores, accumulating and
/// writing f32. (candle's bf16 matmul writes bf16: the product rounded to 8
/// bits of mantissa, then another pass to widen it for the f32 epilogues.)
pub(crate) fn matmul_bf16_f32(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    x.apply_op2_no_bwd(w, &MatmulBf16F32)
}

struct MatmulBf16F32;

impl CustomOp2 for MatmulBf16F32 {
    fn name(&self) -> &'static str {
        "seer-matmul-bf16-f32"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        bail!("the bf16 matmul with f32 output runs on CUDA only")
    }

    fn cuda_fwd(
        &self,
        xs: &CudaStorage,
        xl: &Layout,
        ws: &CudaStorage,
        wl: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        use candle_core::cuda_backend::cudarc::cublas::{result::gemm_ex, sys};
        use candle_core::cuda_backend::cudarc::driver::{DevicePtr, DevicePtrMut};

        let ((rows, k), (n, wk)) = (xl.shape().dims2()?, wl.shape().dims2()?);
        let (Some((x0, x1)), Some((w0, w1))) = (xl.contiguous_offsets(), wl.contiguous_offsets())
        else {
            bail!("the bf16 matmul needs contiguous operands")
        };
        let too_big = [rows, n, k].iter().any(|&d| d > i32::MAX as usize);
        if k != wk || too_big {
            bail!("the bf16 matmul cannot multiply ({rows}, {k}) by ({n}, {wk})ᵀ")
        }
        let dev = &xs.device;
        let x = xs.as_cuda_slice::<half::bf16>()?.slice(x0..x1);
        let w = ws.as_cuda_slice::<half::bf16>()?.slice(w0..w1);
        // SAFETY: cuBLAS writes every element (beta is 0).
        let mut y = unsafe { dev.alloc::<f32>(rows * n)? };
        let blas = dev.cublas_handle();
        let stream = dev.cuda_stream();
        {
            let (xp, _x_guard) = x.device_ptr(&stream);
            let (wp, _w_guard) = w.device_ptr(&stream);
            let (yp, _y_guard) = y.device_ptr_mut(&stream);
            let (alpha, beta) = (1f32, 0f32);
            let (m, n32, k32) = (n as i32, rows as i32, k as i32);
            // Column-major view: yᵀ (n × rows) = w (n × k, stored as k × n) ᵀ · xᵀ (k × rows).
            // SAFETY: the pointers hold k·n, k·rows and n·rows elements of the
            // types named, on the handle's stream; alpha and beta are f32 as
            // CUBLAS_COMPUTE_32F requires.
            unsafe {
                gemm_ex(
                    *blas.handle(),
                    sys::cublasOperation_t::CUBLAS_OP_T,
                    sys::cublasOperation_t::CUBLAS_OP_N,
                    m,
                    n32,
                    k32,
                    (&alpha as *const f32).cast(),
                    wp as *const _,
                    sys::cudaDataType_t::CUDA_R_16BF,
                    k32,
                    xp as *const _,
                    sys::cudaDataType_t::CUDA_R_16BF,
                    k32,
                    (&beta as *const f32).cast(),
                    yp as *mut _,
                    sys::cudaDataType_t::CUDA_R_32F,
                    m,
                    sys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
                    sys::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT_TENSOR_OP,
                )
            }
            .map_err(|e| candle_core::Error::Msg(format!("cuBLAS bf16 matmul: {e:?}")))?;
        }
        Ok((
            CudaStorage::wrap_cuda_slice(y, dev.clone()),
            Shape::from((rows, n)),
        ))
    }
}
