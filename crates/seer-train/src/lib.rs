//! Contrastive training of CLIP models: the CLIP and SigLIP losses, gradient
//! caching for large batches on small memory, AdamW with open_clip's parameter
//! groups and schedule, locked towers (LiT), resumable checkpoints, evaluation
//! during training and export in the transformers layout.

pub mod checkpoint;
pub mod epochs;
pub mod error;
pub mod evaluate;
pub mod export;
mod init;
pub mod loss;
pub mod optim;
#[cfg(feature = "cuda")]
mod optim_cuda;
pub mod outdir;
pub mod params;
pub mod settings;
pub mod step;
pub mod trainer;
pub mod validate;

pub use error::{Result, TrainError};
pub use loss::{contrastive_loss, LossKind, Positives};
pub use optim::{clip_grad_norm, AdamW, AdamWConfig, Schedule};
pub use params::{ParamStore, Tower};
pub use step::{compute_gradients, StepResult, TrainBatch};
