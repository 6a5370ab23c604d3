//! Read-only access to a checkpoint's tensors, whatever the file format.
//!
//! safetensors files are memory-mapped; PyTorch `.bin`/`.pt` zip archives are read
//! through candle's pickle reader, which only interprets the pickle opcodes that
//! describe tensors and never imports or runs Python code.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Tensor};

use crate::error::{ModelError, Result};

enum Source {
    Safetensors(MmapedSafetensors),
    /// Tensors already in memory: a PyTorch file read through the pickle reader, or
    /// a trainer's parameters.
    Tensors(HashMap<String, Tensor>),
    /// Random values for any name and shape: benchmarks of an architecture need no
    /// checkpoint.
    Random,
}

/// A checkpoint plus a name prefix; `pp` descends into a sub-module like `VarBuilder`.
#[derive(Clone)]
pub struct Weights {
    source: Arc<Source>,
    path: Arc<PathBuf>,
    device: Device,
    prefix: String,
    /// Build layers from autograd-friendly ops (see [`Weights::trainable`]).
    differentiable: bool,
}

impl Weights {
    pub fn open(path: &Path, device: &Device) -> Result<Self> {
        let fail = |message: String| ModelError::Weights {
            path: path.to_path_buf(),
            message,
        };
        let is_safetensors = path.extension().is_some_and(|e| e == "safetensors");
        let source = if is_safetensors {
            // SAFETY: the file is mapped read-only; like every mmap user we rely on it
            // not being truncated while the model is loaded.
            let st = unsafe { MmapedSafetensors::new(path) }.map_err(|e| fail(e.to_string()))?;
            Source::Safetensors(st)
        } else {
            Source::Tensors(read_pickle_state_dict(path).map_err(fail)?)
        };
        Ok(Self {
            source: Arc::new(source),
            path: Arc::new(path.to_path_buf()),
            device: device.clone(),
            prefix: String::new(),
            differentiable: false,
        })
    }

    /// In-memory tensors (for example a trainer's parameters, some of them
    /// `candle_core::Var`s). Models built from these use composite ops that candle
    /// can differentiate instead of the fused inference kernels, which have no
    /// backward pass; the results agree to float rounding.
    pub fn trainable(tensors: HashMap<String, Tensor>, device: &Device) -> Self {
        Self {
            source: Arc::new(Source::Tensors(tensors)),
            path: Arc::new(PathBuf::from("<training parameters>")),
            device: device.clone(),
            prefix: String::new(),
            differentiable: true,
        }
    }

    /// In-memory tensors for inference (fused kernels, no autograd).
    pub fn from_tensors(tensors: HashMap<String, Tensor>, device: &Device) -> Self {
        Self {
            differentiable: false,
            ..Self::trainable(tensors, device)
        }
    }

    /// Whether layers built from these weights must support backpropagation.
    pub fn differentiable(&self) -> bool {
        self.differentiable
    }

    /// A checkpoint that answers every tensor with small random values (for
    /// benchmarking an architecture; outputs are meaningless).
    pub fn random(device: &Device) -> Self {
        Self {
            source: Arc::new(Source::Random),
            path: Arc::new(PathBuf::from("<random weights>")),
            device: device.clone(),
            prefix: String::new(),
            differentiable: false,
        }
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The same checkpoint, looking below `name`.
    pub fn pp(&self, name: impl std::fmt::Display) -> Self {
        let mut w = self.clone();
        w.prefix = self.full_name(&name.to_string());
        w
    }

    fn full_name(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        }
    }

    pub fn contains(&self, name: &str) -> bool {
        let full = self.full_name(name);
        match &*self.source {
            Source::Safetensors(st) => st.get(&full).is_ok(),
            Source::Tensors(map) => map.contains_key(&full),
            Source::Random => true,
        }
    }

    /// Tensor `name` as f32 on the model's device, with its shape checked.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        if let Source::Random = &*self.source {
            return Ok((Tensor::randn(0f32, 1.0, shape, &self.device)? * 0.02)?);
        }
        let t = self.get_unchecked(name)?;
        if t.dims() != shape {
            return Err(ModelError::Shape {
                path: self.path.to_path_buf(),
                name: self.full_name(name),
                expected: shape.to_vec(),
                found: t.dims().to_vec(),
            });
        }
        Ok(t)
    }

    /// Tensor `name` as f32 on the model's device, any shape.
    pub fn get_unchecked(&self, name: &str) -> Result<Tensor> {
        let full = self.full_name(name);
        let missing = || ModelError::MissingTensor {
            path: self.path.to_path_buf(),
            name: full.clone(),
        };
        let t = match &*self.source {
            Source::Safetensors(st) => {
                if st.get(&full).is_err() {
                    return Err(missing());
                }
                st.load(&full, &self.device)?
            }
            Source::Tensors(map) => map
                .get(&full)
                .ok_or_else(missing)?
                .to_device(&self.device)?,
            Source::Random => Tensor::new(&[(1.0f32 / 0.07).ln()], &self.device)?,
        };
        Ok(t.to_dtype(DType::F32)?)
    }

    /// Dimensions of tensor `name`, used to infer hyper-parameters a config leaves out.
    pub fn dims(&self, name: &str) -> Result<Vec<usize>> {
        let full = self.full_name(name);
        match &*self.source {
            Source::Safetensors(st) => {
                st.get(&full)
                    .map(|v| v.shape().to_vec())
                    .map_err(|_| ModelError::MissingTensor {
                        path: self.path.to_path_buf(),
                        name: full,
                    })
            }
            Source::Tensors(map) => {
                map.get(&full)
                    .map(|t| t.dims().to_vec())
                    .ok_or_else(|| ModelError::MissingTensor {
                        path: self.path.to_path_buf(),
                        name: full,
                    })
            }
            Source::Random => Err(ModelError::Unsupported("shapes of random weights".into())),
        }
    }
}

/// Reads a PyTorch state dict, also when it is nested under `state_dict` (training
/// checkpoints) or its keys carry DataParallel's `module.` prefix.
fn read_pickle_state_dict(path: &Path) -> std::result::Result<HashMap<String, Tensor>, String> {
    let mut tensors =
        candle_core::pickle::read_all_with_key(path, None).map_err(|e| e.to_string())?;
    if tensors.is_empty() {
        tensors = candle_core::pickle::read_all_with_key(path, Some("state_dict"))
            .map_err(|e| e.to_string())?;
    }
    if tensors.is_empty() {
        return Err("no tensors found in the PyTorch file".into());
    }
    Ok(tensors
        .into_iter()
        .map(|(k, v)| {
            (
                k.strip_prefix("module.").map(str::to_string).unwrap_or(k),
                v,
            )
        })
        .collect())
}
