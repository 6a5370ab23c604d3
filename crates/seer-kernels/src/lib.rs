//! CPU inference kernels for transformer towers.
//!
//! candle's CPU backend runs every op as its own pass, mostly on one thread, and
//! its matrix multiply does not reach this machine's peak. These kernels work on
//! plain `f32` slices so a whole transformer block runs with weights packed once
//! at load time, fused epilogues (bias, residual, activation) and both cores busy.
//!
//! - [`gemm`]: `C = A·Wᵀ` against pre-packed weights, f32, bf16 or int8, AVX-512 (VNNI) /
//!   AVX2 / portable micro-kernels chosen at run time.
//! - [`ops`]: LayerNorm, multi-head attention, activations.
//! - [`train`]: the backward passes (and recomputing forwards) training needs.
//! - [`math`]: vectorisable `exp` and `erf`.
//! - `avx512`: row kernels hand-written with AVX-512 intrinsics where the
//!   vectorised loops stalled (the softmax numerators).
//! - [`alloc`]: zeroed buffers on transparent huge pages (fast model loading).
//! - [`peak`]: the measured f32 FMA peak, for benchmarks to report against.

#[macro_use]
mod multiversion;

pub mod alloc;
mod avx512;
pub mod denormals;
pub mod gemm;
pub mod isa;
pub mod math;
pub mod ops;
pub mod peak;
pub mod train;

pub use gemm::{
    gemm, gemm_bf16_rows, gemm_bf16_rows_to_bf16_rows, gemm_new, gemm_to_bf16_rows, Activation,
    Bf16Rows, Init, PackedWeights, Precision,
};
pub use isa::Isa;

/// Runs `op` on one of rayon's worker threads (at once if this is one), for a
/// sequence of many short parallel kernels: each one's work then starts and
/// ends on a worker, with the other workers stealing, where called from an
/// outside thread each kernel handed its work to the pool and that thread
/// slept until woken at the end, a sleep and a wake-up per kernel. ViT-B/32
/// bf16 images at batch 8, 12 layers of about 10 kernels each: 5-7% faster
/// on the Intel Xeon with AMX (2 threads, alternating builds and in one
/// process).
pub fn on_worker<R: Send>(op: impl FnOnce() -> R + Send) -> R {
    if rayon::current_thread_index().is_some() {
        op()
    } else {
        rayon::scope(|_| op())
    }
}

/// An output pointer handed to rayon tasks that write disjoint parts of it.
#[derive(Clone, Copy)]
pub(crate) struct SendPtr(pub(crate) *mut f32);

impl SendPtr {
    /// A method, so closures capture the Send wrapper rather than its field.
    pub(crate) fn get(self) -> *mut f32 {
        self.0
    }
}
// SAFETY: a raw pointer is not Send only as a lint against sharing by accident;
// every user hands each concurrent task a disjoint set of elements to write
// (see the SAFETY comments at `gemm_with_isa` and `attention`), so moving the
// pointer to another thread creates no data race.
unsafe impl Send for SendPtr {}
// SAFETY: as for Send: tasks sharing the pointer write disjoint elements.
unsafe impl Sync for SendPtr {}
