//! CUDA versions of the fused training ops of [`crate::nn::train_ops`]
//! (LayerNorm, softmax over rows, quick-GELU, forward and backward), compiled
//! with NVRTC on first use.
//!
//! Without them a GPU trained on candle's composite forms: LayerNorm alone is
//! seven broadcast and reduction kernels forward and about fifteen backward,
//! each a pass over the activations. At batch 1024 on the CIFAR-10 demo model
//! (H200, Nsight Compute) broadcast adds, multiplies, divides, subtracts,
//! sums and copies were 70% of a training step's GPU time. Each op here is one
//! pass (LayerNorm's backward three: rows, then the parameter gradients summed
//! over blocks of rows, then over the blocks, in a fixed order).

use std::sync::OnceLock;

use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::WrapErr;
use candle_core::{bail, CudaStorage, Layout, Result, Shape};

const SOURCE: &str = r#"
/* Sum and max over a warp, every lane getting the result. */
__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* One warp per row: y = (x - mean) / sqrt(var + eps) * gamma + beta (biased variance). */
extern "C" __global__ void seer_layer_norm(const float *x, const float *gamma, const float *beta,
                                           float *y, unsigned int rows, unsigned int width,
                                           float eps) {
    const unsigned int lane = threadIdx.x % 32;
    const size_t warps = (size_t)gridDim.x * (blockDim.x / 32);
    for (size_t r = (size_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32; r < rows;
         r += warps) {
        const float *xr = x + r * width;
        float s = 0.0f;
        for (unsigned int c = lane; c < width; c += 32) s += xr[c];
        const float mean = warp_sum(s) / width;
        float v = 0.0f;
        for (unsigned int c = lane; c < width; c += 32) {
            const float d = xr[c] - mean;
            v += d * d;
        }
        const float rstd = rsqrtf(warp_sum(v) / width + eps);
        float *yr = y + r * width;
        for (unsigned int c = lane; c < width; c += 32)
            yr[c] = (xr[c] - mean) * rstd * gamma[c] + beta[c];
    }
}

/* One warp per row: dx = (gg - mean(gg) - xh * mean(gg * xh)) * rstd with gg = g * gamma and
   xh = (x - mean) * rstd; the row's mean and rstd go to stats for the parameter gradients. */
extern "C" __global__ void seer_layer_norm_grad_rows(const float *x, const float *gamma,
                                                     const float *g, float *dx, float *stats,
                                                     unsigned int rows, unsigned int width,
                                                     float eps) {
    const unsigned int lane = threadIdx.x % 32;
    const size_t warps = (size_t)gridDim.x * (blockDim.x / 32);
    for (size_t r = (size_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32; r < rows;
         r += warps) {
        const float *xr = x + r * width, *gr = g + r * width;
        float s = 0.0f;
        for (unsigned int c = lane; c < width; c += 32) s += xr[c];
        const float mean = warp_sum(s) / width;
        float v = 0.0f;
        for (unsigned int c = lane; c < width; c += 32) {
            const float d = xr[c] - mean;
            v += d * d;
        }
        const float rstd = rsqrtf(warp_sum(v) / width + eps);
        float sg = 0.0f, sgx = 0.0f;
        for (unsigned int c = lane; c < width; c += 32) {
            const float gg = gr[c] * gamma[c];
            sg += gg;
            sgx += gg * (xr[c] - mean) * rstd;
        }
        const float mg = warp_sum(sg) / width, mgx = warp_sum(sgx) / width;
        float *dr = dx + r * width;
        for (unsigned int c = lane; c < width; c += 32) {
            const float xh = (xr[c] - mean) * rstd;
            dr[c] = (gr[c] * gamma[c] - mg - xh * mgx) * rstd;
        }
        if (lane == 0) {
            stats[2 * r] = mean;
            stats[2 * r + 1] = rstd;
        }
    }
}

/* Block (blockIdx.y) of `chunk` rows, one thread per column: partial sums of g * xh
   (dgamma) and g (dbeta) into partial[block][0 or 1][column]. */
extern "C" __global__ void seer_layer_norm_grad_params(const float *x, const float *g,
                                                       const float *stats, float *partial,
                                                       unsigned int rows, unsigned int width,
                                                       unsigned int chunk) {
    const unsigned int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= width) return;
    const size_t r0 = (size_t)blockIdx.y * chunk;
    const size_t r1 = r0 + chunk < rows ? r0 + chunk : rows;
    float dg = 0.0f, db = 0.0f;
    for (size_t r = r0; r < r1; ++r) {
        const float gv = g[r * width + c];
        dg += gv * (x[r * width + c] - stats[2 * r]) * stats[2 * r + 1];
        db += gv;
    }
    partial[(size_t)blockIdx.y * 2 * width + c] = dg;
    partial[(size_t)blockIdx.y * 2 * width + width + c] = db;
}

/* out[0][c] = sum over blocks of partial[block][0][c], out[1][c] of partial[block][1][c]. */
extern "C" __global__ void seer_layer_norm_grad_sum(const float *partial, float *out,
                                                    unsigned int blocks, unsigned int width) {
    const unsigned int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= 2 * width) return;
    float s = 0.0f;
    for (unsigned int b = 0; b < blocks; ++b) s += partial[(size_t)b * 2 * width + i];
    out[i] = s;
}

/* One warp per row: y = exp(x - max) / sum. */
extern "C" __global__ void seer_softmax_rows(const float *x, float *y, unsigned int rows,
                                             unsigned int width) {
    const unsigned int lane = threadIdx.x % 32;
    const size_t warps = (size_t)gridDim.x * (blockDim.x / 32);
    for (size_t r = (size_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32; r < rows;
         r += warps) {
        const float *xr = x + r * width;
        float m = __int_as_float(0xff800000); /* -inf */
        for (unsigned int c = lane; c < width; c += 32) m = fmaxf(m, xr[c]);
        m = warp_max(m);
        float *yr = y + r * width;
        float s = 0.0f;
        for (unsigned int c = lane; c < width; c += 32) {
            const float e = expf(xr[c] - m);
            yr[c] = e;
            s += e;
        }
        const float inv = 1.0f / warp_sum(s);
        for (unsigned int c = lane; c < width; c += 32) yr[c] *= inv;
    }
}

/* One warp per row: dx = y * (g - sum(g * y)). */
extern "C" __global__ void seer_softmax_rows_grad(const float *y, const float *g, float *dx,
                                                  unsigned int rows, unsigned int width) {
    const unsigned int lane = threadIdx.x % 32;
    const size_t warps = (size_t)gridDim.x * (blockDim.x / 32);
    for (size_t r = (size_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32; r < rows;
         r += warps) {
        const float *yr = y + r * width, *gr = g + r * width;
        float s = 0.0f;
        for (unsigned int c = lane; c < width; c += 32) s += yr[c] * gr[c];
        const float dot = warp_sum(s);
        float *dr = dx + r * width;
        for (unsigned int c = lane; c < width; c += 32) dr[c] = yr[c] * (gr[c] - dot);
    }
}

/* y = x * sigmoid(1.702 x). */
extern "C" __global__ void seer_quick_gelu(const float *x, float *y, size_t n) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)blockDim.x * gridDim.x) {
        const float v = x[i];
        y[i] = v / (1.0f + expf(-1.702f * v));
    }
}

/* dx = g * (s + 1.702 x s (1 - s)) with s = sigmoid(1.702 x). */
extern "C" __global__ void seer_quick_gelu_grad(const float *x, const float *g, float *dx,
                                                size_t n) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)blockDim.x * gridDim.x) {
        const float v = x[i];
        const float s = 1.0f / (1.0f + expf(-1.702f * v));
        dx[i] = g[i] * (s + 1.702f * v * s * (1.0f - s));
    }
}
"#;

const MODULE: &str = "seer_train_ops";
/// Threads per block of the row kernels: 8 warps, a row each.
const ROW_THREADS: u32 = 256;
/// Rows per block of LayerNorm's parameter-gradient partial sums.
const PARAM_CHUNK: usize = 256;

fn ptx() -> Result<&'static str> {
    static PTX: OnceLock<std::result::Result<String, String>> = OnceLock::new();
    crate::nn::cuda_ops::compiled_ptx(&PTX, SOURCE, "seer's CUDA training kernels")
}

/// A contiguous f32 tensor's values and its (rows, width) as a row kernel sees it.
fn rows_of<'a>(s: &'a CudaStorage, l: &Layout, op: &str) -> Result<(View<'a>, u32, u32)> {
    let Some((o0, o1)) = l.contiguous_offsets() else {
        bail!("{op}: the input must be contiguous")
    };
    let width = l.dims().last().copied().unwrap_or(1).max(1);
    let rows = (o1 - o0) / width;
    if rows > u32::MAX as usize || width > u32::MAX as usize {
        bail!("{op}: {rows} rows of {width} are too many for one launch")
    }
    Ok((
        s.as_cuda_slice::<f32>()?.slice(o0..o1),
        rows as u32,
        width as u32,
    ))
}

/// One warp per row, as many blocks as the rows need (the kernels loop past that).
fn row_launch(rows: u32) -> LaunchConfig {
    let warps = ROW_THREADS / 32;
    LaunchConfig {
        grid_dim: (rows.div_ceil(warps).clamp(1, 65_535), 1, 1),
        block_dim: (ROW_THREADS, 1, 1),
        shared_mem_bytes: 0,
    }
}

type View<'a> = candle_core::cuda_backend::cudarc::driver::CudaView<'a, f32>;

/// A gradient op's two row inputs, the forward's saved tensor and the
/// gradient (as `train_ops::saved_and_gradient` on the CPU): their views, and
/// the rows and width they share.
fn saved_and_gradient<'a>(
    op: &str,
    (s, l): (&'a CudaStorage, &Layout),
    (g, gl): (&'a CudaStorage, &Layout),
) -> Result<(View<'a>, View<'a>, u32, u32)> {
    let (sv, rows, width) = rows_of(s, l, op)?;
    let (gv, grad_rows, _) = rows_of(g, gl, op)?;
    if grad_rows != rows {
        bail!("{op}: {rows} rows, {grad_rows} gradient rows")
    }
    Ok((sv, gv, rows, width))
}

/// A `width`-wide parameter's values.
fn parameter<'a>(s: &'a CudaStorage, l: &Layout, width: u32, op: &str) -> Result<View<'a>> {
    match l.contiguous_offsets() {
        Some((o0, o1)) if o1 - o0 == width as usize => Ok(s.as_cuda_slice::<f32>()?.slice(o0..o1)),
        _ => bail!(
            "{op}: a parameter of {width} contiguous values expected, got {:?}",
            l.shape()
        ),
    }
}

pub(crate) fn layer_norm(
    (x, xl): (&CudaStorage, &Layout),
    (gamma, gl): (&CudaStorage, &Layout),
    (beta, bl): (&CudaStorage, &Layout),
    eps: f32,
) -> Result<(CudaStorage, Shape)> {
    let op = "seer-layer-norm";
    let (xv, rows, width) = rows_of(x, xl, op)?;
    let (gv, bv) = (
        parameter(gamma, gl, width, op)?,
        parameter(beta, bl, width, op)?,
    );
    let dev = &x.device;
    // SAFETY: the kernel writes every element of every row.
    let y = unsafe { dev.alloc::<f32>(rows as usize * width as usize)? };
    if rows > 0 {
        let func = dev.get_or_load_custom_func("seer_layer_norm", MODULE, ptx()?)?;
        let mut b = func.builder();
        b.arg(&xv);
        b.arg(&gv);
        b.arg(&bv);
        b.arg(&y);
        b.arg(&rows);
        b.arg(&width);
        b.arg(&eps);
        // SAFETY: reads rows·width of x and width of gamma and beta, writes rows·width of y.
        unsafe { b.launch(row_launch(rows)) }.w()?;
    }
    Ok((
        CudaStorage::wrap_cuda_slice(y, dev.clone()),
        xl.shape().clone(),
    ))
}

/// `(rows + 2, width)`: dx's rows, then dγ and dβ, as the CPU op returns them.
pub(crate) fn layer_norm_grad(
    (x, xl): (&CudaStorage, &Layout),
    (gamma, gl): (&CudaStorage, &Layout),
    (g, gradl): (&CudaStorage, &Layout),
    eps: f32,
) -> Result<(CudaStorage, Shape)> {
    let op = "seer-layer-norm-grad";
    let (xv, gv, rows, width) = saved_and_gradient(op, (x, xl), (g, gradl))?;
    let gamma = parameter(gamma, gl, width, op)?;
    let dev = &x.device;
    let (n, w) = (rows as usize, width as usize);
    // SAFETY: the three kernels write every element (dx rows, then the two
    // parameter rows; stats and partial sums before they are read).
    let mut out = unsafe { dev.alloc::<f32>((n + 2) * w)? };
    if rows > 0 {
        let blocks = n.div_ceil(PARAM_CHUNK);
        // SAFETY: written by the first and second kernels before being read.
        let (stats, partial) =
            unsafe { (dev.alloc::<f32>(2 * n)?, dev.alloc::<f32>(blocks * 2 * w)?) };
        let mut dx = out.slice_mut(0..n * w);
        let func = dev.get_or_load_custom_func("seer_layer_norm_grad_rows", MODULE, ptx()?)?;
        let mut b = func.builder();
        b.arg(&xv);
        b.arg(&gamma);
        b.arg(&gv);
        b.arg(&mut dx);
        b.arg(&stats);
        b.arg(&rows);
        b.arg(&width);
        b.arg(&eps);
        // SAFETY: reads rows·width of x and g, width of gamma; writes rows·width
        // of dx and 2·rows of stats.
        unsafe { b.launch(row_launch(rows)) }.w()?;

        let func = dev.get_or_load_custom_func("seer_layer_norm_grad_params", MODULE, ptx()?)?;
        let chunk = PARAM_CHUNK as u32;
        let mut b = func.builder();
        b.arg(&xv);
        b.arg(&gv);
        b.arg(&stats);
        b.arg(&partial);
        b.arg(&rows);
        b.arg(&width);
        b.arg(&chunk);
        let cfg = LaunchConfig {
            grid_dim: (width.div_ceil(128), blocks as u32, 1),
            block_dim: (128, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: block (x, y) reads rows y·chunk.. of x, g and stats at its
        // columns and writes its two partial sums per column; all in bounds.
        unsafe { b.launch(cfg) }.w()?;

        let func = dev.get_or_load_custom_func("seer_layer_norm_grad_sum", MODULE, ptx()?)?;
        let mut params = out.slice_mut(n * w..(n + 2) * w);
        let blocks32 = blocks as u32;
        let mut b = func.builder();
        b.arg(&partial);
        b.arg(&mut params);
        b.arg(&blocks32);
        b.arg(&width);
        // SAFETY: reads blocks·2·width partial sums, writes 2·width values.
        unsafe { b.launch(LaunchConfig::for_num_elems(2 * width)) }.w()?;
    }
    Ok((
        CudaStorage::wrap_cuda_slice(out, dev.clone()),
        Shape::from((n + 2, w)),
    ))
}

pub(crate) fn softmax_rows(x: &CudaStorage, l: &Layout) -> Result<(CudaStorage, Shape)> {
    let (xv, rows, width) = rows_of(x, l, "seer-softmax-rows")?;
    let dev = &x.device;
    // SAFETY: the kernel writes every element of every row.
    let y = unsafe { dev.alloc::<f32>(rows as usize * width as usize)? };
    if rows > 0 {
        let func = dev.get_or_load_custom_func("seer_softmax_rows", MODULE, ptx()?)?;
        let mut b = func.builder();
        b.arg(&xv);
        b.arg(&y);
        b.arg(&rows);
        b.arg(&width);
        // SAFETY: reads and writes rows·width values.
        unsafe { b.launch(row_launch(rows)) }.w()?;
    }
    Ok((
        CudaStorage::wrap_cuda_slice(y, dev.clone()),
        l.shape().clone(),
    ))
}

pub(crate) fn softmax_rows_grad(
    (y, yl): (&CudaStorage, &Layout),
    (g, gl): (&CudaStorage, &Layout),
) -> Result<(CudaStorage, Shape)> {
    let (yv, gv, rows, width) = saved_and_gradient("seer-softmax-rows-grad", (y, yl), (g, gl))?;
    let dev = &y.device;
    // SAFETY: the kernel writes every element of every row.
    let dx = unsafe { dev.alloc::<f32>(rows as usize * width as usize)? };
    if rows > 0 {
        let func = dev.get_or_load_custom_func("seer_softmax_rows_grad", MODULE, ptx()?)?;
        let mut b = func.builder();
        b.arg(&yv);
        b.arg(&gv);
        b.arg(&dx);
        b.arg(&rows);
        b.arg(&width);
        // SAFETY: reads rows·width of y and g, writes rows·width of dx.
        unsafe { b.launch(row_launch(rows)) }.w()?;
    }
    Ok((
        CudaStorage::wrap_cuda_slice(dx, dev.clone()),
        yl.shape().clone(),
    ))
}

/// quick-GELU forward (`grad` None) or backward.
pub(crate) fn quick_gelu(
    (x, xl): (&CudaStorage, &Layout),
    grad: Option<(&CudaStorage, &Layout)>,
) -> Result<(CudaStorage, Shape)> {
    let op = "seer-quick-gelu";
    let Some((o0, o1)) = xl.contiguous_offsets() else {
        bail!("{op}: the input must be contiguous")
    };
    let n = o1 - o0;
    let dev = &x.device;
    let xv = x.as_cuda_slice::<f32>()?.slice(o0..o1);
    // SAFETY: the kernel writes every element.
    let out = unsafe { dev.alloc::<f32>(n)? };
    if n > 0 {
        let cfg = LaunchConfig::for_num_elems(n.min(u32::MAX as usize) as u32);
        match grad {
            None => {
                let func = dev.get_or_load_custom_func("seer_quick_gelu", MODULE, ptx()?)?;
                let mut b = func.builder();
                b.arg(&xv);
                b.arg(&out);
                b.arg(&n);
                // SAFETY: reads and writes n values.
                unsafe { b.launch(cfg) }.w()?;
            }
            Some((g, gl)) => {
                let gv = match gl.contiguous_offsets() {
                    Some((g0, g1)) if g1 - g0 == n => g.as_cuda_slice::<f32>()?.slice(g0..g1),
                    _ => bail!("{op}: {n} values and a gradient of {:?}", gl.shape()),
                };
                let func = dev.get_or_load_custom_func("seer_quick_gelu_grad", MODULE, ptx()?)?;
                let mut b = func.builder();
                b.arg(&xv);
                b.arg(&gv);
                b.arg(&out);
                b.arg(&n);
                // SAFETY: reads n values of x and g, writes n of out.
                unsafe { b.launch(cfg) }.w()?;
            }
        }
    }
    Ok((
        CudaStorage::wrap_cuda_slice(out, dev.clone()),
        xl.shape().clone(),
    ))
}
