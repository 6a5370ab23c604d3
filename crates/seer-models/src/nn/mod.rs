//! Layers every family builds on: LayerNorm, linear, attention and the
//! transformer block, on candle ([`layers`]) and on seer's packed CPU kernels
//! ([`cpu`]), plus the CUDA epilogues. No weight files here (see [`crate::io`]) and
//! no family (see [`crate::models`]).

pub mod candle_threads;
pub mod config;
pub mod cpu;
#[cfg(feature = "cuda")]
pub mod cuda_ops;
pub mod gather_rows;
pub mod layers;
pub mod split_batch;
pub(crate) mod train_attention;
#[cfg(feature = "cuda")]
pub(crate) mod train_cuda;
pub(crate) mod train_linear;
pub(crate) mod train_ops;
