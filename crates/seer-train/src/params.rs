//! The trainable parameters of a CLIP model, kept by their transformers
//! (`CLIPModel`) names so that checkpoints and the exported model need no
//! renaming.
//!
//! The list of parameters is learnt from the model itself: the model is built
//! once against a [`ParamSource`] that creates (from scratch) or loads
//! (fine-tuning) each tensor its constructor asks for. The model definition in
//! seer-models is thus the one description of the architecture, for inference
//! and training alike.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use candle_core::{DType, Device, Tensor, Var};
use seer_models::models::clip::config::{ClipConfig, Layout, VisionConfig, VitConfig};
use seer_models::{ClipModel, ModelError, ParamSource, Weights};
use serde_json::Value;

use crate::error::{file_error, io_error, save_error, Result, TrainError};
use crate::init::{clip_init, initial_logit_scale, initial_tensor};

/// Which part of the model a parameter belongs to (what `--lock-*` freezes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tower {
    Image,
    Text,
    /// `logit_scale` and SigLIP's `logit_bias`: used by the loss, not the towers.
    Loss,
}

pub struct Param {
    pub name: String,
    pub tower: Tower,
    /// Weight decay applies (AdamW's decoupled decay).
    pub decay: bool,
    value: Var,
    trainable: bool,
}

impl Param {
    pub fn trainable(&self) -> bool {
        self.trainable
    }

    /// The current value (a variable: ops on it are recorded for backprop).
    pub fn var(&self) -> &Var {
        &self.value
    }

    pub fn dims(&self) -> &[usize] {
        self.value.dims()
    }
}

/// No decay for gains, biases, embedding tables and the loss temperature/bias, as
/// open_clip excludes them (`ndim < 2`, plus the embeddings named by the issue).
fn decays(name: &str, dims: &[usize]) -> bool {
    !(dims.len() < 2
        || name.ends_with("token_embedding.weight")
        || name.ends_with("position_embedding.weight")
        || name == "logit_scale"
        || name == "logit_bias")
}

fn tower_of(name: &str) -> Tower {
    if name.starts_with("vision_model.") || name.starts_with("visual_projection") {
        Tower::Image
    } else if name.starts_with("text_model.") || name.starts_with("text_projection") {
        Tower::Text
    } else {
        Tower::Loss
    }
}

/// Where parameters come from while the model is built to list them.
enum Origin {
    /// transformers' initialisation rules ([`crate::init`]), seeded.
    Scratch {
        config: Box<ClipConfig>,
        vit: Box<VitConfig>,
        seed: u64,
    },
    /// A checkpoint's tensors, with the shapes the model expects.
    Checkpoint(Weights),
}

/// Creates a `Var` for each tensor the model's constructor asks for, and keeps
/// it under its full name.
struct Recorder {
    origin: Origin,
    device: Device,
    made: Mutex<BTreeMap<String, Var>>,
}

impl ParamSource for Recorder {
    fn param(&self, name: &str, shape: &[usize]) -> seer_models::Result<Tensor> {
        // Held while the tensor is made, so a name asked for twice (tied
        // weights) is one parameter even when the towers load in parallel. A
        // poisoned lock only means another thread failed, and its error is
        // reported.
        let mut made = self.made.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = made.get(name) {
            return Ok(v.as_tensor().clone());
        }
        let value = match &self.origin {
            Origin::Scratch { config, vit, seed } => {
                let init = clip_init(name, config, vit).ok_or_else(|| {
                    ModelError::Unsupported(format!(
                        "no initialisation rule for the parameter {name}; training from scratch does not know this architecture"
                    ))
                })?;
                initial_tensor(init, *seed, name, shape, &self.device)?
            }
            // A scalar such as `logit_scale` may be stored as `[1]`: any
            // one-element tensor is accepted, and kept with transformers' `[]`.
            Origin::Checkpoint(weights) if shape.is_empty() => {
                Tensor::new(weights.get_scalar(name)?, &self.device)?
            }
            Origin::Checkpoint(weights) => weights.get(name, shape)?,
        };
        let var = Var::from_tensor(&value.to_dtype(DType::F32)?)?;
        let tensor = var.as_tensor().clone();
        made.insert(name.to_string(), var);
        Ok(tensor)
    }

    fn contains(&self, name: &str) -> bool {
        match &self.origin {
            Origin::Scratch { .. } => true,
            Origin::Checkpoint(weights) => weights.contains(name),
        }
    }
}

/// The parameters of one model being trained.
pub struct ParamStore {
    config: ClipConfig,
    /// The transformers `config.json` the model was described by, written again on export.
    config_json: Value,
    params: Vec<Param>,
    device: Device,
    /// The model the training steps run, built on first use (see
    /// [`ParamStore::training_model`]).
    training: OnceLock<ClipModel>,
}

fn vit_config(cfg: &ClipConfig) -> Result<&VitConfig> {
    if cfg.layout != Layout::Transformers {
        return Err(TrainError::Unsupported(
            "training needs a model in the transformers (CLIPModel) layout".into(),
        ));
    }
    match &cfg.vision {
        VisionConfig::Vit(v) if !v.transformer.layer_scale => Ok(v),
        _ => Err(TrainError::Unsupported(
            "training supports ViT image towers (transformers CLIPModel); ResNet towers are not trainable".into(),
        )),
    }
}

impl ParamStore {
    /// A freshly initialised model described by a transformers `config.json`.
    pub fn from_scratch(config_path: &Path, seed: u64, device: &Device) -> Result<Self> {
        let (config, config_json) = read_config(config_path)?;
        let origin = Origin::Scratch {
            vit: Box::new(vit_config(&config)?.clone()),
            config: Box::new(config.clone()),
            seed,
        };
        Self::build(config, config_json, origin, device)
    }

    /// The weights of a transformers model folder (`config.json` + weights file).
    pub fn from_model_dir(dir: &Path, device: &Device) -> Result<Self> {
        let files = seer_models::ModelFiles::from_dir(dir)?;
        if files.layout != Layout::Transformers {
            return Err(TrainError::Unsupported(format!(
                "{}: training needs the transformers layout (config.json + model.safetensors); this folder is in the open_clip layout",
                dir.display()
            )));
        }
        let (config, config_json) = read_config(&files.config)?;
        vit_config(&config)?;
        let weights = Weights::open(&files.weights, device)?;
        Self::build(config, config_json, Origin::Checkpoint(weights), device)
    }

    /// Builds the model once against `origin`: the tensors it asks for are the
    /// parameters.
    fn build(
        config: ClipConfig,
        config_json: Value,
        origin: Origin,
        device: &Device,
    ) -> Result<Self> {
        let recorder = Arc::new(Recorder {
            origin,
            device: device.clone(),
            made: Mutex::new(BTreeMap::new()),
        });
        ClipModel::from_weights(
            config.clone(),
            &Weights::from_params(recorder.clone(), device),
        )?;
        let made = std::mem::take(&mut *recorder.made.lock().unwrap_or_else(|e| e.into_inner()));
        // Sorted by name (BTreeMap): the order does not depend on the threads
        // that built the towers.
        let params = made
            .into_iter()
            .map(|(name, var)| Param::from_var(name, var))
            .collect();
        let mut store = Self {
            config,
            config_json,
            params,
            device: device.clone(),
            training: OnceLock::new(),
        };
        // The model falls back to CLIP's initial temperature when a checkpoint
        // has none; the loss still needs it as a parameter.
        store.ensure_param("logit_scale", initial_logit_scale())?;
        Ok(store)
    }

    pub fn config(&self) -> &ClipConfig {
        &self.config
    }

    pub fn config_json(&self) -> &Value {
        &self.config_json
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn params(&self) -> &[Param] {
        &self.params
    }

    pub fn get(&self, name: &str) -> Option<&Param> {
        self.params.iter().find(|p| p.name == name)
    }

    /// Freezes towers (LiT): frozen parameters get no gradients and no optimizer state.
    pub fn lock(&mut self, image: bool, text: bool) {
        for p in &mut self.params {
            p.trainable = match p.tower {
                Tower::Image => !image,
                Tower::Text => !text,
                Tower::Loss => true,
            };
        }
        // The training model detaches frozen parameters when it is built.
        self.training = OnceLock::new();
    }

    pub fn tower_trainable(&self, tower: Tower) -> bool {
        self.params.iter().any(|p| p.tower == tower && p.trainable)
    }

    /// Adds SigLIP's learnable bias (if missing) with the given initial value.
    pub fn ensure_logit_bias(&mut self, init: f32) -> Result<()> {
        self.ensure_param("logit_bias", init)
    }

    /// Adds a scalar parameter of the loss (if missing) with the given value.
    fn ensure_param(&mut self, name: &str, init: f32) -> Result<()> {
        if self.get(name).is_none() {
            let t = Tensor::new(init, &self.device)?;
            self.params.push(Param::new(name.into(), t)?);
        }
        Ok(())
    }

    /// Sets a scalar parameter such as `logit_scale`.
    pub fn set_scalar(&self, name: &str, value: f32) -> Result<()> {
        let p = self
            .params
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| TrainError::Invalid(format!("no parameter {name}")))?;
        p.value.set(&Tensor::new(value, &self.device)?)?;
        Ok(())
    }

    pub fn scalar(&self, name: &str) -> Result<Option<f32>> {
        match self.get(name) {
            Some(p) => Ok(Some(p.value.flatten_all()?.to_vec1::<f32>()?[0])),
            None => Ok(None),
        }
    }

    /// The model the training steps run: its trainable parameters record
    /// operations for backprop, frozen ones are detached.
    ///
    /// Built once (again only after [`ParamStore::lock`]) and reused by every
    /// step: its layers hold views of the parameters' storage, and both the
    /// optimiser and [`ParamStore::load_values`] write new values into that
    /// storage (`Var::set` copies in place), so the model always computes with
    /// the current values. Layers that would need a copy of a parameter stack it
    /// at each forward instead (seer-models' q/k/v projection). The model's own
    /// `logit_scale()` is the value at build time: the loss reads the parameter.
    pub fn training_model(&self) -> Result<&ClipModel> {
        if let Some(model) = self.training.get() {
            return Ok(model);
        }
        let tensors = self
            .params
            .iter()
            .map(|p| {
                let t = if p.trainable {
                    p.value.as_tensor().clone()
                } else {
                    p.value.as_tensor().detach()
                };
                (p.name.clone(), t)
            })
            .collect();
        let model = ClipModel::from_weights(
            self.config.clone(),
            &Weights::trainable(tensors, &self.device),
        )?;
        Ok(self.training.get_or_init(|| model))
    }

    /// A snapshot of the current weights for evaluation (fused inference kernels).
    pub fn inference_model(&self) -> Result<ClipModel> {
        Ok(ClipModel::from_weights(
            self.config.clone(),
            &Weights::from_tensors(self.snapshot()?, &self.device),
        )?)
    }

    /// Copies of every parameter, detached from the graph.
    pub fn snapshot(&self) -> Result<HashMap<String, Tensor>> {
        self.params
            .iter()
            .map(|p| Ok((p.name.clone(), p.value.as_tensor().detach().copy()?)))
            .collect()
    }

    /// Replaces values by those in a safetensors file (a checkpoint), checking
    /// that every parameter is present with its shape.
    pub fn load_values(&mut self, path: &Path) -> Result<()> {
        let tensors =
            candle_core::safetensors::load(path, &self.device).map_err(|e| file_error(path, e))?;
        if let Some(t) = tensors.get("logit_bias") {
            self.ensure_logit_bias(t.flatten_all()?.to_vec1::<f32>()?[0])?;
        }
        for p in &self.params {
            let t = tensors
                .get(&p.name)
                .ok_or_else(|| file_error(path, format!("missing tensor {}", p.name)))?;
            if t.dims() != p.dims() {
                return Err(file_error(
                    path,
                    format!(
                        "{} has shape {:?}, expected {:?}",
                        p.name,
                        t.dims(),
                        p.dims()
                    ),
                ));
            }
            p.value.set(&t.to_dtype(DType::F32)?)?;
        }
        Ok(())
    }

    /// Writes every parameter to a safetensors file (transformers names).
    pub fn save(&self, path: &Path) -> Result<()> {
        let tensors = self.snapshot()?;
        candle_core::safetensors::save(&tensors, path).map_err(|e| save_error(path, e))
    }
}

impl Param {
    fn new(name: String, tensor: Tensor) -> Result<Self> {
        Ok(Self::from_var(
            name,
            Var::from_tensor(&tensor.to_dtype(DType::F32)?)?,
        ))
    }

    fn from_var(name: String, value: Var) -> Self {
        Self {
            tower: tower_of(&name),
            decay: decays(&name, value.dims()),
            name,
            value,
            trainable: true,
        }
    }
}

fn read_config(path: &Path) -> Result<(ClipConfig, Value)> {
    let text = std::fs::read_to_string(path).map_err(|e| io_error(path, e))?;
    let json: Value =
        serde_json::from_str(&text).map_err(|e| file_error(path, format!("invalid JSON: {e}")))?;
    let config = ClipConfig::from_transformers_json(&text, path)?;
    Ok((config, json))
}
