//! The trainable parameters of a CLIP model, kept by their transformers
//! (`CLIPModel`) names so that checkpoints and the exported model need no
//! renaming, and turned into a [`ClipModel`] for each forward pass.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use seer_models::models::clip::config::{ClipConfig, Layout, VisionConfig, VitConfig};
use seer_models::{ClipModel, Weights};
use serde_json::Value;

use crate::error::{file_error, io_error, Result, TrainError};

/// Which part of the model a parameter belongs to (what `--lock-*` freezes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tower {
    Image,
    Text,
    /// `logit_scale` and SigLIP's `logit_bias`: used by the loss, not the towers.
    Loss,
}

/// How a parameter starts when training from scratch (transformers' CLIP init).
#[derive(Clone, Copy, Debug)]
enum Init {
    Normal(f64),
    Zeros,
    Ones,
    Constant(f32),
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

/// Every parameter of a transformers `CLIPModel` with a ViT image tower, with its
/// shape and transformers' `_init_weights` rule (initializer_factor 1).
fn layout(cfg: &ClipConfig, vit: &VitConfig) -> Vec<(String, Vec<usize>, Init)> {
    let mut out: Vec<(String, Vec<usize>, Init)> = Vec::new();
    let mut push = |name: String, dims: Vec<usize>, init: Init| out.push((name, dims, init));
    let encoder = |push: &mut dyn FnMut(String, Vec<usize>, Init),
                   prefix: &str,
                   t: &seer_models::nn::config::TransformerConfig| {
        let c = t.width;
        let in_std = (c as f64).powf(-0.5) * ((2 * t.layers) as f64).powf(-0.5);
        let out_std = (c as f64).powf(-0.5);
        let fc_std = ((2 * c) as f64).powf(-0.5);
        for i in 0..t.layers {
            let l = format!("{prefix}.encoder.layers.{i}");
            for p in ["q_proj", "k_proj", "v_proj", "out_proj"] {
                let std = if p == "out_proj" { out_std } else { in_std };
                push(
                    format!("{l}.self_attn.{p}.weight"),
                    vec![c, c],
                    Init::Normal(std),
                );
                push(format!("{l}.self_attn.{p}.bias"), vec![c], Init::Zeros);
            }
            for n in ["layer_norm1", "layer_norm2"] {
                push(format!("{l}.{n}.weight"), vec![c], Init::Ones);
                push(format!("{l}.{n}.bias"), vec![c], Init::Zeros);
            }
            let m = t.mlp_width;
            push(
                format!("{l}.mlp.fc1.weight"),
                vec![m, c],
                Init::Normal(fc_std),
            );
            push(format!("{l}.mlp.fc1.bias"), vec![m], Init::Zeros);
            push(
                format!("{l}.mlp.fc2.weight"),
                vec![c, m],
                Init::Normal(in_std),
            );
            push(format!("{l}.mlp.fc2.bias"), vec![c], Init::Zeros);
        }
    };
    let t = &cfg.text;
    let tc = t.transformer.width;
    push(
        "text_model.embeddings.token_embedding.weight".into(),
        vec![t.vocab_size, tc],
        Init::Normal(0.02),
    );
    push(
        "text_model.embeddings.position_embedding.weight".into(),
        vec![t.context_length, tc],
        Init::Normal(0.02),
    );
    encoder(&mut push, "text_model", &t.transformer);
    push(
        "text_model.final_layer_norm.weight".into(),
        vec![tc],
        Init::Ones,
    );
    push(
        "text_model.final_layer_norm.bias".into(),
        vec![tc],
        Init::Zeros,
    );

    let vc = vit.transformer.width;
    let p = vit.patch_size;
    let tokens = (vit.image_size / p).pow(2) + 1;
    push(
        "vision_model.embeddings.class_embedding".into(),
        vec![vc],
        Init::Normal((vc as f64).powf(-0.5)),
    );
    push(
        "vision_model.embeddings.patch_embedding.weight".into(),
        vec![vc, 3, p, p],
        Init::Normal(0.02),
    );
    push(
        "vision_model.embeddings.position_embedding.weight".into(),
        vec![tokens, vc],
        Init::Normal(0.02),
    );
    push(
        "vision_model.pre_layrnorm.weight".into(),
        vec![vc],
        Init::Ones,
    );
    push(
        "vision_model.pre_layrnorm.bias".into(),
        vec![vc],
        Init::Zeros,
    );
    encoder(&mut push, "vision_model", &vit.transformer);
    push(
        "vision_model.post_layernorm.weight".into(),
        vec![vc],
        Init::Ones,
    );
    push(
        "vision_model.post_layernorm.bias".into(),
        vec![vc],
        Init::Zeros,
    );
    let e = cfg.embed_dim;
    push(
        "visual_projection.weight".into(),
        vec![e, vc],
        Init::Normal((vc as f64).powf(-0.5)),
    );
    push(
        "text_projection.weight".into(),
        vec![e, tc],
        Init::Normal((tc as f64).powf(-0.5)),
    );
    push(
        "logit_scale".into(),
        vec![],
        Init::Constant((1.0f32 / 0.07).ln()),
    );
    out
}

/// The parameters of one model being trained.
pub struct ParamStore {
    config: ClipConfig,
    /// The transformers `config.json` the model was described by, written again on export.
    config_json: Value,
    params: Vec<Param>,
    device: Device,
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
        let vit = vit_config(&config)?;
        // The offset keeps the initial weights of recorded runs (README) reproducible.
        let mut rng = seer_data::Rng::from_state(seed ^ 0x5EE5_C11F_0000_0001);
        let params = layout(&config, vit)
            .into_iter()
            .map(|(name, dims, init)| {
                let n: usize = dims.iter().product();
                let values: Vec<f32> = match init {
                    Init::Normal(std) => (0..n).map(|_| (rng.normal() * std) as f32).collect(),
                    Init::Zeros => vec![0.0; n],
                    Init::Ones => vec![1.0; n],
                    Init::Constant(v) => vec![v; n],
                };
                let tensor = Tensor::from_vec(values, dims.as_slice(), device)?;
                Param::new(name, tensor)
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            config,
            config_json,
            params,
            device: device.clone(),
        })
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
        let vit = vit_config(&config)?;
        let weights = Weights::open(&files.weights, device)?;
        let params = layout(&config, vit)
            .into_iter()
            .map(|(name, dims, _)| {
                let tensor = weights.get_unchecked(&name)?;
                if tensor.elem_count() != dims.iter().product::<usize>() {
                    return Err(file_error(
                        &files.weights,
                        format!("{name} has shape {:?}, expected {dims:?}", tensor.dims()),
                    ));
                }
                Param::new(name, tensor.reshape(dims.as_slice())?)
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            config,
            config_json,
            params,
            device: device.clone(),
        })
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
    }

    pub fn tower_trainable(&self, tower: Tower) -> bool {
        self.params.iter().any(|p| p.tower == tower && p.trainable)
    }

    /// Adds SigLIP's learnable bias (if missing) with the given initial value.
    pub fn ensure_logit_bias(&mut self, init: f32) -> Result<()> {
        if self.get("logit_bias").is_none() {
            let t = Tensor::new(init, &self.device)?;
            self.params.push(Param::new("logit_bias".into(), t)?);
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

    /// A model whose trainable parameters record operations for backprop.
    pub fn training_model(&self) -> Result<ClipModel> {
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
        Ok(ClipModel::from_weights(
            self.config.clone(),
            &Weights::trainable(tensors, &self.device),
        )?)
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
        candle_core::safetensors::save(&tensors, path).map_err(|e| file_error(path, e))
    }
}

impl Param {
    fn new(name: String, tensor: Tensor) -> Result<Self> {
        let tower = tower_of(&name);
        let decay = decays(&name, tensor.dims());
        Ok(Self {
            name,
            tower,
            decay,
            value: Var::from_tensor(&tensor.to_dtype(DType::F32)?)?,
            trainable: true,
        })
    }
}

fn read_config(path: &Path) -> Result<(ClipConfig, Value)> {
    let text = std::fs::read_to_string(path).map_err(|e| io_error(path, e))?;
    let json: Value =
        serde_json::from_str(&text).map_err(|e| file_error(path, format!("invalid JSON: {e}")))?;
    let config = ClipConfig::from_transformers_json(&text, path)?;
    Ok((config, json))
}
